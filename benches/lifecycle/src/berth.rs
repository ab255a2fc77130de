//! The measured side: a `berth serve` process this benchmark starts and kills, and raw HTTP
//! calls to its v1 API over loopback.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Body, Client, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{Child, Command};
use tokio_util::io::ReaderStream;

/// The create's response header that says whether the sandbox came from a warm pool.
const CREATE_PATH_HEADER: &str = "berth-create-path";

/// A running `berth serve` on 127.0.0.1, with a fresh data directory of its own.
pub struct Server {
    child: Child,
    pub url: String,
    /// The admin key the server wrote on its first start: every measured call carries it, as a
    /// real client's would.
    pub api_key: String,
    data_dir: tempfile::TempDir,
}

impl Server {
    /// Starts `binary serve` and waits for its first stdout line, `berth listening on URL`.
    pub async fn start(binary: &Path, docker_socket: &Path, cluster: &str, extra_args: &[String]) -> Result<Self> {
        if !binary.exists() {
            bail!(
                "{} does not exist: build it with `cargo build --release -p berth` (scripts/bench does)",
                binary.display()
            );
        }
        let data_dir = tempfile::Builder::new().prefix("berth-bench-").tempdir()?;
        let log = std::fs::File::create(data_dir.path().join("server.log"))?;
        let mut command = Command::new(binary.canonicalize()?);
        // berth's defaults (1 CPU, 512Mi, ...) are what the raw side mirrors: no settings from
        // the caller's environment, bar the log filter.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("BERTH_") && name != "BERTH_LOG" {
                command.env_remove(name);
            }
        }
        let mut child = command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--cluster", cluster])
            // No MCP gateway: the benchmark never uses it, and port 8081 may be taken.
            .args(["--gateway-listen", ""])
            .arg("--data-dir")
            .arg(data_dir.path().join("data"))
            .arg("--docker-host")
            .arg(format!("unix://{}", docker_socket.display()))
            .args(extra_args)
            // Not the caller's directory: a `./berth.toml` there would be read.
            .current_dir(data_dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
        let mut server = Server {
            child,
            url: String::new(),
            api_key: String::new(),
            data_dir,
        };
        match first {
            Ok(Ok(Some(line))) if line.starts_with("berth listening on ") => {
                server.url = line["berth listening on ".len()..].trim().to_owned();
            }
            other => {
                let log = server.stop().await;
                bail!("berth serve did not announce its address ({other:?}); its log:\n{log}");
            }
        }
        // A berth from before API keys (a `--berth-bin` of an older commit, to compare) writes
        // none and asks for none: its calls carry an empty bearer, which it ignores.
        server.api_key = match std::fs::read_to_string(server.data_dir.path().join("data/admin.key")) {
            Ok(key) => key.trim().to_owned(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => return Err(error).context("cannot read the admin.key berth serve wrote"),
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(server)
    }

    /// The process id of `berth serve`, to read its memory from `/proc`.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills the process; its log.
    pub async fn stop(mut self) -> String {
        let _ = self.child.kill().await;
        std::fs::read_to_string(self.data_dir.path().join("server.log")).unwrap_or_default()
    }
}

/// Raw HTTP calls to berth's v1 API, each with the API key.
pub struct Berth {
    http: Client,
    url: String,
    api_key: String,
}

impl Berth {
    pub fn new(url: &str, api_key: &str) -> Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {api_key}")
                .parse()
                .context("the API key is no header value")?,
        );
        // reqwest's TLS needs a process-wide rustls provider; installing fails only if one is set.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = Client::builder()
            .timeout(Duration::from_secs(600))
            .default_headers(headers)
            .build()
            .context("cannot build the berth client")?;
        Ok(Berth {
            http,
            url: url.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
        })
    }

    /// The `Authorization` header value every call carries (for tools such as wrk).
    pub fn authorization(&self) -> String {
        format!("Bearer {}", self.api_key)
    }

    /// Polls `/readyz` until it answers 200 (30 s at most).
    pub async fn wait_ready(&self) -> Result<()> {
        for _ in 0..300 {
            let answer = self.http.get(format!("{}/readyz", self.url)).send().await;
            if answer.is_ok_and(|r| r.status() == StatusCode::OK) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("berth at {} did not become ready within 30 s", self.url)
    }

    /// `POST /v1/sandboxes` running `sleep 3600` in `image`; the sandbox id. `wait` = 201 once it runs.
    pub async fn create(&self, image: &str, labels: &[(&str, &str)], wait: bool) -> Result<String> {
        let labels: serde_json::Map<String, Value> =
            labels.iter().map(|(k, v)| ((*k).to_owned(), Value::from(*v))).collect();
        let body = json!({ "image": image, "command": ["sleep", "3600"], "labels": labels });
        self.create_sandbox(&body, wait).await
    }

    /// `POST /v1/sandboxes` running `sleep 3600` in `image` with `"ttl": ttl` (e.g. `"3s"`);
    /// answered 201 once it runs; the sandbox id.
    pub async fn create_expiring(&self, image: &str, ttl: &str) -> Result<String> {
        let body = json!({ "image": image, "command": ["sleep", "3600"], "ttl": ttl });
        self.create_sandbox(&body, true).await
    }

    /// `POST /v1/sandboxes` with `body`, answered 201 once it runs; the sandbox id.
    pub async fn create_with(&self, body: &Value) -> Result<String> {
        self.create_sandbox(body, true).await
    }

    /// `POST /v1/sandboxes` with `body`; the sandbox id. `wait` = 201 once it runs, else 202.
    async fn create_sandbox(&self, body: &Value, wait: bool) -> Result<String> {
        let request = self
            .http
            .post(format!("{}/v1/sandboxes", self.url))
            .query(&[("wait", wait)])
            .json(body);
        let expect = if wait {
            StatusCode::CREATED
        } else {
            StatusCode::ACCEPTED
        };
        let sandbox: Value = serde_json::from_slice(&self.send(request, expect).await?)?;
        Ok(sandbox["id"]
            .as_str()
            .context("create answered without an id")?
            .to_owned())
    }

    /// `POST /v1/sandboxes` with `{"template": name}`; the sandbox id and whether it was claimed
    /// from the warm pool (`berth-create-path: pooled`) rather than created cold.
    pub async fn create_from_template(&self, template: &str) -> Result<(String, bool)> {
        let request = self
            .http
            .post(format!("{}/v1/sandboxes", self.url))
            .json(&json!({ "template": template }));
        let response = request.send().await.context("berth request failed")?;
        let status = response.status();
        let path = response
            .headers()
            .get(CREATE_PATH_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.bytes().await.context("reading a berth answer")?;
        if status != StatusCode::CREATED {
            bail!(
                "berth answered {status} to a create from template {template}: {}",
                String::from_utf8_lossy(&body).trim()
            );
        }
        let pooled = match path.as_str() {
            "pooled" => true,
            "cold" => false,
            other => bail!("a create answered {CREATE_PATH_HEADER}: {other:?}, expected pooled or cold"),
        };
        let sandbox: Value = serde_json::from_slice(&body)?;
        let id = sandbox["id"].as_str().context("create answered without an id")?;
        Ok((id.to_owned(), pooled))
    }

    /// `POST /v1/templates`: `sleep 3600` in `image`, with a warm pool of `min_ready`.
    pub async fn create_template(&self, name: &str, image: &str, min_ready: usize) -> Result<()> {
        let body = json!({
            "name": name,
            "image": image,
            "command": ["sleep", "3600"],
            "pool": { "min_ready": min_ready },
        });
        let request = self.http.post(format!("{}/v1/templates", self.url)).json(&body);
        self.send(request, StatusCode::CREATED).await.map(drop)
    }

    /// `GET /v1/templates/{name}`.
    pub async fn template(&self, name: &str) -> Result<Value> {
        let request = self.http.get(format!("{}/v1/templates/{name}", self.url));
        Ok(serde_json::from_slice(&self.send(request, StatusCode::OK).await?)?)
    }

    /// `DELETE /v1/templates/{name}`: the template and its idle pool go.
    pub async fn delete_template(&self, name: &str) -> Result<()> {
        let request = self.http.delete(format!("{}/v1/templates/{name}", self.url));
        self.send(request, StatusCode::NO_CONTENT).await.map(drop)
    }

    /// `POST {path}` with `body`, answered `expect`; the answer's JSON.
    pub async fn post(&self, path: &str, body: &Value, expect: StatusCode) -> Result<Value> {
        let request = self.http.post(format!("{}{path}", self.url)).json(body);
        Ok(serde_json::from_slice(&self.send(request, expect).await?)?)
    }

    /// `DELETE /v1/snapshots/{id}`, retried while a sandbox made from it still has its container
    /// (the engine removes those after the delete has answered).
    pub async fn delete_snapshot(&self, id: &str) -> Result<()> {
        for _ in 0..100 {
            let response = self
                .http
                .delete(format!("{}/v1/snapshots/{id}", self.url))
                .send()
                .await
                .context("berth request failed")?;
            match response.status() {
                StatusCode::NO_CONTENT | StatusCode::NOT_FOUND => return Ok(()),
                StatusCode::CONFLICT => tokio::time::sleep(Duration::from_millis(200)).await,
                status => bail!("berth answered {status} to the delete of snapshot {id}"),
            }
        }
        bail!("snapshot {id} stayed in use for 20 s after its sandboxes were deleted")
    }

    /// `GET /v1/sandboxes/{id}`.
    pub async fn get(&self, id: &str) -> Result<Bytes> {
        let request = self.http.get(format!("{}/v1/sandboxes/{id}", self.url));
        self.send(request, StatusCode::OK).await
    }

    /// `GET /v1/sandboxes?label=key=value`.
    pub async fn list_label(&self, label: &str) -> Result<Bytes> {
        let request = self
            .http
            .get(format!("{}/v1/sandboxes", self.url))
            .query(&[("label", label)]);
        self.send(request, StatusCode::OK).await
    }

    /// The address of `GET /v1/sandboxes/{id}`, for a load tool.
    pub fn sandbox_url(&self, id: &str) -> String {
        format!("{}/v1/sandboxes/{id}", self.url)
    }

    /// `DELETE /v1/sandboxes/{id}?wait=true`: returns once the container is gone.
    pub async fn delete(&self, id: &str) -> Result<()> {
        let request = self
            .http
            .delete(format!("{}/v1/sandboxes/{id}", self.url))
            .query(&[("wait", "true")]);
        self.send(request, StatusCode::NO_CONTENT).await.map(drop)
    }

    /// `DELETE /v1/sandboxes/{id}`: returns once the sandbox is marked `Stopping`.
    pub async fn delete_in_background(&self, id: &str) -> Result<()> {
        let request = self.http.delete(format!("{}/v1/sandboxes/{id}", self.url));
        self.send(request, StatusCode::ACCEPTED).await.map(drop)
    }

    /// `POST /v1/sandboxes/{id}/exec` with `{"cmd": cmd}`; the JSON result.
    pub async fn exec(&self, id: &str, cmd: &[&str]) -> Result<Value> {
        let request = self
            .http
            .post(format!("{}/v1/sandboxes/{id}/exec", self.url))
            .json(&json!({ "cmd": cmd }));
        Ok(serde_json::from_slice(&self.send(request, StatusCode::OK).await?)?)
    }

    /// `PUT /v1/sandboxes/{id}/files?path=…`, the body streamed from the local file `from`.
    pub async fn upload(&self, id: &str, path: &str, from: &Path) -> Result<()> {
        let file = tokio::fs::File::open(from).await?;
        let length = file.metadata().await?.len();
        let request = self
            .http
            .put(format!("{}/v1/sandboxes/{id}/files", self.url))
            .query(&[("path", path)])
            .header(CONTENT_LENGTH, length)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(Body::wrap_stream(ReaderStream::with_capacity(file, 256 << 10)));
        self.send(request, StatusCode::NO_CONTENT).await.map(drop)
    }

    /// `GET /v1/sandboxes/{id}/files?path=…`, streamed into the local file `to`; its size.
    pub async fn download(&self, id: &str, path: &str, to: &Path) -> Result<u64> {
        let response = self
            .http
            .get(format!("{}/v1/sandboxes/{id}/files", self.url))
            .query(&[("path", path)])
            .send()
            .await
            .context("berth request failed")?;
        let status = response.status();
        if status != StatusCode::OK {
            let body = response.text().await.unwrap_or_default();
            bail!("berth answered {status} to a download: {}", body.trim());
        }
        // Buffered: hyper hands out chunks of a few KiB, and each tokio::fs write is a trip to
        // the blocking pool.
        let mut file = BufWriter::with_capacity(1 << 20, tokio::fs::File::create(to).await?);
        let mut body = response.bytes_stream();
        let mut size = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.context("reading a download")?;
            size += chunk.len() as u64;
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        Ok(size)
    }

    /// `GET /v1/sandboxes/{id}/files/stat?path=…`: the file's size.
    pub async fn size(&self, id: &str, path: &str) -> Result<u64> {
        let request = self
            .http
            .get(format!("{}/v1/sandboxes/{id}/files/stat", self.url))
            .query(&[("path", path)]);
        let stat: Value = serde_json::from_slice(&self.send(request, StatusCode::OK).await?)?;
        stat["size"].as_u64().context("stat answered without a size")
    }

    async fn send(&self, request: RequestBuilder, expect: StatusCode) -> Result<Bytes> {
        let response = request.send().await.context("berth request failed")?;
        let status = response.status();
        let body = response.bytes().await.context("reading a berth answer")?;
        if status != expect {
            bail!(
                "berth answered {status} (expected {expect}): {}",
                String::from_utf8_lossy(&body).trim()
            );
        }
        Ok(body)
    }
}
