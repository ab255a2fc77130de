//! The baseline: raw Docker Engine API calls (`/v1.41/...`) over the engine's unix socket, with
//! the same container settings berth applies to a sandbox.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{Value, json};

/// The label every container this benchmark creates itself carries: `berth.bench=<run id>`.
pub const BENCH_LABEL: &str = "berth.bench";

/// Berth's defaults for a sandbox that asks for nothing: 1 CPU, 512 MiB without swap, 1024 pids.
const NANO_CPUS: i64 = 1_000_000_000;
const MEMORY: i64 = 512 << 20;
const PIDS_LIMIT: i64 = 1024;

pub struct Engine {
    http: Client,
    base: String,
}

impl Engine {
    pub fn new(socket: &Path) -> Result<Self> {
        // reqwest's TLS needs a process-wide rustls provider; installing fails only if one is set.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = Client::builder()
            .unix_socket(socket)
            .timeout(Duration::from_secs(120))
            .build()
            .context("cannot build the engine client")?;
        Ok(Engine {
            http,
            base: "http://docker/v1.41".to_owned(),
        })
    }

    /// `Version` and `ApiVersion` of the engine, and whether `image` is present.
    pub async fn check(&self, image: &str) -> Result<String> {
        let version: Value = serde_json::from_slice(
            &self
                .send(self.http.get(self.url("/version")), StatusCode::OK)
                .await
                .context("no Docker Engine answers: run scripts/ensure-docker.sh")?,
        )?;
        self.send(
            self.http.get(self.url(&format!("/images/{image}/json"))),
            StatusCode::OK,
        )
        .await
        .with_context(|| format!("image {image} is missing: run scripts/build-test-images.sh"))?;
        Ok(format!(
            "Docker {} (API {})",
            version["Version"].as_str().unwrap_or("?"),
            version["ApiVersion"].as_str().unwrap_or("?")
        ))
    }

    /// `POST /containers/create` + `POST /containers/{id}/start`; the container id.
    pub async fn create_and_start(&self, image: &str, name: &str, labels: &[(&str, &str)]) -> Result<String> {
        let labels: serde_json::Map<String, Value> =
            labels.iter().map(|(k, v)| ((*k).to_owned(), Value::from(*v))).collect();
        let body = json!({
            "Image": image,
            "Cmd": ["sleep", "3600"],
            "Labels": labels,
            "Tty": false,
            "OpenStdin": false,
            "HostConfig": {
                "NanoCpus": NANO_CPUS,
                "Memory": MEMORY,
                "MemorySwap": MEMORY,
                "PidsLimit": PIDS_LIMIT,
                "SecurityOpt": ["no-new-privileges"],
                "Privileged": false,
                "CapDrop": ["NET_RAW"],
            },
        });
        let url = self.url("/containers/create");
        let created = self
            .send(
                self.http.post(url).query(&[("name", name)]).json(&body),
                StatusCode::CREATED,
            )
            .await?;
        let created: Value = serde_json::from_slice(&created)?;
        let id = created["Id"]
            .as_str()
            .context("create answered without an Id")?
            .to_owned();
        let start = self.url(&format!("/containers/{id}/start"));
        self.send(self.http.post(start), StatusCode::NO_CONTENT).await?;
        Ok(id)
    }

    /// `GET /containers/{id}/json`.
    pub async fn inspect(&self, id: &str) -> Result<Bytes> {
        let url = self.url(&format!("/containers/{id}/json"));
        self.send(self.http.get(url), StatusCode::OK).await
    }

    /// `GET /containers/json?filters={"label":[label, run]}`: running containers with that label
    /// among this run's (berth copies sandbox labels onto its containers: without `run`, the
    /// engine would answer berth's too).
    pub async fn list_label(&self, label: &str, run: &str) -> Result<Bytes> {
        let filters = json!({ "label": [label, run] }).to_string();
        let request = self
            .http
            .get(self.url("/containers/json"))
            .query(&[("filters", filters)]);
        self.send(request, StatusCode::OK).await
    }

    /// `DELETE /containers/{id}?force=true&v=true`, the flags berth uses.
    pub async fn remove(&self, id: &str) -> Result<()> {
        let request = self
            .http
            .delete(self.url(&format!("/containers/{id}")))
            .query(&[("force", "true"), ("v", "true")]);
        self.send(request, StatusCode::NO_CONTENT).await.map(drop)
    }

    /// `POST /containers/{id}/exec` + `POST /exec/{eid}/start` (whole multiplexed body read) +
    /// `GET /exec/{eid}/json`: the exit code and the demultiplexed stdout, as berth's exec does.
    pub async fn exec(&self, id: &str, cmd: &[&str]) -> Result<(i64, Vec<u8>)> {
        let body = json!({ "AttachStdout": true, "AttachStderr": true, "Cmd": cmd });
        let url = self.url(&format!("/containers/{id}/exec"));
        let created: Value =
            serde_json::from_slice(&self.send(self.http.post(url).json(&body), StatusCode::CREATED).await?)?;
        let exec = created["Id"].as_str().context("exec create answered without an Id")?;
        let start = self.url(&format!("/exec/{exec}/start"));
        let output = self
            .send(
                self.http.post(start).json(&json!({ "Detach": false, "Tty": false })),
                StatusCode::OK,
            )
            .await?;
        let inspect = self.url(&format!("/exec/{exec}/json"));
        let inspect: Value = serde_json::from_slice(&self.send(self.http.get(inspect), StatusCode::OK).await?)?;
        let code = inspect["ExitCode"]
            .as_i64()
            .context("exec inspect without an ExitCode")?;
        Ok((code, demux_stdout(&output)?))
    }

    /// Ids of every container, running or not, carrying `label` (`key=value`).
    pub async fn ids_with_label(&self, label: &str) -> Result<Vec<String>> {
        let filters = json!({ "label": [label] }).to_string();
        let request = self
            .http
            .get(self.url("/containers/json"))
            .query(&[("all", "true"), ("filters", filters.as_str())]);
        let list: Vec<Value> = serde_json::from_slice(&self.send(request, StatusCode::OK).await?)?;
        Ok(list
            .iter()
            .filter_map(|c| c["Id"].as_str().map(str::to_owned))
            .collect())
    }

    /// Removes every network carrying `label` (`key=value`); how many there were.
    pub async fn remove_networks_with_label(&self, label: &str) -> Result<usize> {
        let filters = json!({ "label": [label] }).to_string();
        let request = self
            .http
            .get(self.url("/networks"))
            .query(&[("filters", filters.as_str())]);
        let list: Vec<Value> = serde_json::from_slice(&self.send(request, StatusCode::OK).await?)?;
        for id in list.iter().filter_map(|network| network["Id"].as_str()) {
            let request = self.http.delete(self.url(&format!("/networks/{id}")));
            self.send(request, StatusCode::NO_CONTENT).await?;
        }
        Ok(list.len())
    }

    /// How many containers run on the engine, whoever made them.
    pub async fn running_count(&self) -> Result<usize> {
        let request = self.http.get(self.url("/containers/json"));
        let list: Vec<Value> = serde_json::from_slice(&self.send(request, StatusCode::OK).await?)?;
        Ok(list.len())
    }

    /// The engine's address as the docker CLI's `-H` takes it.
    pub fn host(socket: &Path) -> String {
        format!("unix://{}", socket.display())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends, reads the whole body, and fails on any status but `expect`.
    async fn send(&self, request: RequestBuilder, expect: StatusCode) -> Result<Bytes> {
        let response = request.send().await.context("engine request failed")?;
        let status = response.status();
        let body = response.bytes().await.context("reading an engine answer")?;
        if status != expect {
            bail!(
                "engine answered {status} (expected {expect}): {}",
                String::from_utf8_lossy(&body).trim()
            );
        }
        Ok(body)
    }
}

/// The stdout frames of a multiplexed (non-TTY) attach stream: 8-byte headers `[stream, 0, 0, 0,
/// size (big-endian u32)]`, each followed by `size` bytes.
fn demux_stdout(mut body: &[u8]) -> Result<Vec<u8>> {
    let mut stdout = Vec::new();
    while !body.is_empty() {
        if body.len() < 8 {
            bail!("a truncated frame header in an exec stream");
        }
        let size = u32::from_be_bytes([body[4], body[5], body[6], body[7]]) as usize;
        let frame = body.get(8..8 + size).context("a truncated frame in an exec stream")?;
        if body[0] == 1 {
            stdout.extend_from_slice(frame);
        }
        body = &body[8 + size..];
    }
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demux_keeps_stdout_only() {
        let body = [&[1, 0, 0, 0, 0, 0, 0, 3][..], b"hi\n", &[2, 0, 0, 0, 0, 0, 0, 1], b"x"].concat();
        assert_eq!(demux_stdout(&body).unwrap(), b"hi\n");
        assert!(demux_stdout(&body[..5]).is_err());
    }
}
