//! Harness for black-box tests: starts the real `berth` binary against the real Docker Engine,
//! talks to it over HTTP, and inspects the engine through the `docker` CLI as an outside witness.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub mod api;

use anyhow::{Context, Result, bail};
use berth_client::BerthClient;
use serde_json::Value;

/// The image every test runs: `FROM scratch` plus busybox, built by `scripts/build-test-images.sh`.
pub const TEST_IMAGE: &str = "berth-test/busybox:latest";

/// How late after its deadline an e2e test lets an expiry end a sandbox. Only the timers end a
/// sandbox at its deadline (the resync never does), so a test that sees the expiry at all has
/// seen the timer fire; how late it ended is the engine's removal under whatever else the shared
/// machine runs (up to 6.7 s seen under the full suite), and is a benchmark's figure
/// (`berth-bench --only expiry`, docs/benchmarks.md), not a test's.
pub const EXPIRY_SLACK: chrono::Duration = chrono::Duration::seconds(10);

/// The `berth` binary under test: `$BERTH_BIN`, else the one beside this test's build.
pub fn berth_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BERTH_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> → target/<profile>/berth
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    profile_dir.join("berth")
}

/// A unique id for names and labels, so parallel tests never touch each other's objects.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{prefix}-{}-{:x}", std::process::id(), nanos & 0xffff_ffff)
}

/// Options for one server process.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Reuse a data directory (for restart tests); a fresh temporary one otherwise.
    pub data_dir: Option<PathBuf>,
    /// The deployment id; a unique one per server otherwise.
    pub cluster: Option<String>,
    /// Extra `berth serve` arguments, e.g. `["--resync-interval", "1s"]`.
    pub args: Vec<String>,
}

/// A running `berth serve`. Dropping it kills the process and removes every container of its
/// cluster (and only those).
pub struct TestServer {
    child: Child,
    pub url: String,
    /// The MCP gateway's `http://ADDR`, when the server was started with `--gateway-listen`
    /// (servers run without a gateway otherwise, so parallel tests do not fight over :8081).
    pub gateway_url: Option<String>,
    pub data_dir: PathBuf,
    pub cluster: String,
    /// The admin key the server wrote to `<data_dir>/admin.key` on its first start (`None` for a
    /// server run with `--auth none`).
    pub admin_key: Option<String>,
    /// Whether dropping it removes its cluster's containers (not after [`TestServer::crash`]).
    sweep_on_drop: bool,
    _temp: Option<tempfile::TempDir>,
}

impl TestServer {
    pub async fn start() -> Result<Self> {
        Self::start_with(ServerOptions::default()).await
    }

    pub async fn start_with(options: ServerOptions) -> Result<Self> {
        ensure_test_image()?;
        let (temp, data_dir) = match &options.data_dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let temp = tempfile::Builder::new().prefix("berth-e2e-").tempdir()?;
                let dir = temp.path().to_path_buf();
                (Some(temp), dir)
            }
        };
        let cluster = options.cluster.clone().unwrap_or_else(|| unique("e2e"));
        let binary = berth_binary();
        if !binary.exists() {
            bail!(
                "{} does not exist: build it first with `cargo build -p berth` (scripts/test does)",
                binary.display()
            );
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("server.log"))?;
        let wants_gateway = options.args.iter().any(|arg| arg == "--gateway-listen");
        let no_gateway: &[&str] = if wants_gateway { &[] } else { &["--gateway-listen", ""] };
        let mut child = Command::new(&binary)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--cluster", &cluster])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(no_gateway)
            .args(&options.args)
            .env("BERTH_LOG", "debug")
            .env_remove("BERTH_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (line_tx, line_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining stdout for the life of the process.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = line_tx.send(line);
            }
        });
        let first = line_rx.recv_timeout(Duration::from_secs(30));
        let url = match first {
            Ok(line) => match line.strip_prefix("berth listening on ") {
                Some(url) => url.trim().to_owned(),
                None => bail!("unexpected first line from berth serve: {line}"),
            },
            Err(_) => {
                let _ = child.kill();
                let log = std::fs::read_to_string(data_dir.join("server.log")).unwrap_or_default();
                bail!("berth serve did not report its address; log:\n{log}");
            }
        };
        let gateway_url = match wants_gateway {
            false => None,
            true => match line_rx.recv_timeout(Duration::from_secs(10)) {
                Ok(line) => match line.strip_prefix("gateway listening on ") {
                    Some(url) => Some(url.trim().to_owned()),
                    None => bail!("expected the gateway's address on the second line of berth serve, got: {line}"),
                },
                Err(_) => bail!("berth serve did not report its gateway's address"),
            },
        };
        let admin_key = std::fs::read_to_string(data_dir.join("admin.key"))
            .ok()
            .map(|text| text.trim().to_owned());
        Ok(TestServer {
            child,
            url,
            gateway_url,
            data_dir,
            cluster,
            admin_key,
            sweep_on_drop: true,
            _temp: temp,
        })
    }

    /// A client acting as the server's admin.
    pub fn client(&self) -> BerthClient {
        self.client_as(self.admin_key.as_deref())
    }

    /// A client sending `api_key` (none: an anonymous caller).
    pub fn client_as(&self, api_key: Option<&str>) -> BerthClient {
        BerthClient::with_api_key(&self.url, api_key).expect("client for a valid url")
    }

    /// An HTTP client that sends the admin key on every request (see [`http`]).
    pub fn http(&self) -> reqwest::Client {
        http_as(self.admin_key.as_deref())
    }

    /// POSTs `body` as JSON to `path` as the admin; the status and the JSON answer (`Null` when
    /// the answer is not JSON).
    pub async fn post_json(&self, path: &str, body: &Value) -> (reqwest::StatusCode, Value) {
        let response = self
            .http()
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .expect("the server answers");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// GETs `path` as the admin; the JSON answer.
    pub async fn get_json(&self, path: &str) -> Value {
        self.http()
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("the server answers")
            .json()
            .await
            .expect("a JSON answer")
    }

    /// `url` carrying the admin key as the `access_token` query parameter, the way a browser
    /// client, which cannot set headers on a WebSocket, sends it.
    pub fn with_key(&self, url: &str) -> String {
        let separator = if url.contains('?') { '&' } else { '?' };
        match &self.admin_key {
            Some(key) => format!("{url}{separator}access_token={key}"),
            None => url.to_owned(),
        }
    }

    /// Sets `owner`'s quota to at most `sandboxes` live sandboxes (CPU and memory unlimited).
    pub async fn limit_sandboxes(&self, owner: &str, sandboxes: u64) {
        let quota = berth_api::identity::QuotaRequest {
            sandboxes: Some(sandboxes),
            ..Default::default()
        };
        self.client().set_quota(owner, &quota).await.expect("the quota is set");
    }

    /// Makes a key of `role` for `owner` through the API and returns its secret.
    pub async fn key_for(&self, owner: &str, role: &str) -> String {
        let request = berth_api::identity::KeyRequest {
            owner: owner.to_owned(),
            role: Some(role.to_owned()),
            expires: None,
        };
        self.client().create_key(&request).await.expect("a key").secret
    }

    /// The server's process id (e.g. to read its memory use from `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (up to `within`) for the process to exit; `None` if it did not.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// `kill -9`: no chance to clean up, as in a crash.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `kill -9`, leaving the sandboxes and records for a successor on the same data directory
    /// and cluster: nothing is swept when it drops.
    pub fn crash(mut self) {
        self.kill9();
        self.sweep_on_drop = false;
    }

    /// Detaches the data directory from this server so a successor can reuse it.
    pub fn keep_data_dir(&mut self) -> PathBuf {
        if let Some(temp) = self._temp.take() {
            let _ = temp.keep();
        }
        self.data_dir.clone()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
        if !self.sweep_on_drop {
            return;
        }
        remove_cluster_containers(&self.cluster);
        remove_host_guard_table(&self.cluster);
        // A create the killed server had already sent still completes on the engine after the
        // first sweep (a test that ends right after `wait: false` creates, a pool refill): sweep
        // again once such a call has had time to land.
        std::thread::sleep(Duration::from_secs(1));
        remove_cluster_containers(&self.cluster);
    }
}

/// Removes the containers a test's server made (labelled with its cluster id), then its volumes,
/// networks and snapshot images; nothing else.
pub fn remove_cluster_containers(cluster: &str) {
    let filter = format!("label=berth.cluster={cluster}");
    for (list, remove) in [
        (["ps", "-aq"], ["rm", "-f"]),
        (["volume", "ls"], ["volume", "rm"]),
        (["network", "ls"], ["network", "rm"]),
    ] {
        let mut query = list.to_vec();
        if list[0] != "ps" {
            query.push("-q");
        }
        query.extend(["--filter", filter.as_str()]);
        let ids = docker_ids(&query);
        if !ids.is_empty() {
            let mut args = remove.to_vec();
            args.extend(ids.iter().map(String::as_str));
            let _ = docker(&args);
        }
    }
    // Its snapshots: images labelled with its cluster and a snapshot id.
    let snapshots = docker_ids(&[
        "image",
        "ls",
        "-q",
        "--filter",
        &filter,
        "--filter",
        "label=berth.snapshot",
    ]);
    if !snapshots.is_empty() {
        let mut args = vec!["rmi", "-f"];
        args.extend(snapshots.iter().map(String::as_str));
        let _ = docker(&args);
    }
}

/// Removes the host guard's table the server wrote into this machine's netfilter for its cluster
/// (`inet berth_<first six hex digits of sha256(cluster)>`), where it wrote one.
pub fn remove_host_guard_table(cluster: &str) {
    use sha2::Digest;
    let tag: String = sha2::Sha256::digest(cluster.as_bytes())
        .iter()
        .take(3)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let _ = Command::new("nft")
        .args(["delete", "table", "inet", &format!("berth_{tag}")])
        .stderr(std::process::Stdio::null())
        .status();
}

/// Runs the docker CLI; returns stdout, or an error with stderr.
pub fn docker(args: &[&str]) -> Result<String> {
    let output = Command::new("docker")
        .args(args)
        .output()
        .context("cannot run the docker CLI")?;
    if !output.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

pub fn docker_ids(args: &[&str]) -> Vec<String> {
    docker(args)
        .map(|out| out.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// `docker inspect` of one container, or `None` when it does not exist.
pub fn docker_inspect(container: &str) -> Option<Value> {
    let out = docker(&["inspect", container]).ok()?;
    let mut list: Vec<Value> = serde_json::from_str(&out).ok()?;
    if list.is_empty() { None } else { Some(list.remove(0)) }
}

pub fn ensure_test_image() -> Result<()> {
    if docker(&["image", "inspect", TEST_IMAGE]).is_err() {
        bail!("the test image {TEST_IMAGE} is missing: run scripts/build-test-images.sh (scripts/test does)");
    }
    Ok(())
}

/// Polls `check` every 50 ms until it yields `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A minimal sandbox request for the test image.
pub fn sleeper() -> berth_api::SandboxRequest {
    berth_api::SandboxRequest {
        image: Some(TEST_IMAGE.into()),
        command: Some(vec!["sleep".into(), "3600".into()]),
        ..Default::default()
    }
}

/// Whether a problem body lists a per-field error for `field`.
pub fn field_named(problem: &Value, field: &str) -> bool {
    problem["errors"]
        .as_array()
        .is_some_and(|errors| errors.iter().any(|error| error["field"] == field))
}

/// A unix-socket proxy in front of the real engine that the test can cut.
pub struct EngineProxy {
    path: std::path::PathBuf,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl EngineProxy {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.sock");
        let task = Self::serve(&path);
        EngineProxy { path, task, _dir: dir }
    }

    /// An endpoint where nothing answers until [`EngineProxy::restore`]: an engine that comes up
    /// after berth.
    pub fn planned() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.sock");
        EngineProxy {
            path,
            task: tokio::spawn(async {}),
            _dir: dir,
        }
    }

    fn serve(path: &std::path::Path) -> tokio::task::JoinHandle<()> {
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::UnixStream::connect("/var/run/docker.sock").await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        })
    }

    /// The engine is back, at the same address.
    pub fn restore(&mut self) {
        self.task = Self::serve(&self.path);
    }

    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Drops the listener and every open connection: the engine is gone for berth.
    pub fn cut(&self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// An HTTP client that never goes through a proxy from the environment (every address here is
/// local) and gives up on an answer after two minutes instead of hanging the test run.
pub fn http() -> reqwest::Client {
    http_as(None)
}

/// [`http`], sending `Authorization: Bearer <api_key>` on every request when a key is given.
pub fn http_as(api_key: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = api_key {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {key}").parse().expect("a header value"),
        );
    }
    // reqwest's TLS needs a process-wide rustls provider; installing fails only if one is set.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .default_headers(headers)
        .timeout(Duration::from_secs(120))
        .build()
        .expect("an HTTP client")
}

/// An open `GET /v1/events` stream, read line by line (NDJSON) or event by event (SSE).
pub struct EventStream {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
    sse: bool,
}

impl EventStream {
    /// Opens `/v1/events?query` as `key` (the admin's when `None`), as NDJSON or as SSE, with
    /// `Last-Event-ID` when given.
    pub async fn open(
        server: &TestServer,
        query: &str,
        key: Option<&str>,
        sse: bool,
        last_event_id: Option<&str>,
    ) -> Self {
        use futures::StreamExt;
        let key = key.or(server.admin_key.as_deref());
        let accept = if sse {
            "text/event-stream"
        } else {
            "application/x-ndjson"
        };
        let mut request = http_as(key)
            .get(format!("{}/v1/events?{query}", server.url))
            .header(reqwest::header::ACCEPT, accept);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.expect("the events stream opens");
        assert_eq!(response.status(), reqwest::StatusCode::OK, "GET /v1/events?{query}");
        EventStream {
            body: response.bytes_stream().boxed(),
            buffer: Vec::new(),
            sse,
        }
    }

    /// The next event (NDJSON: the JSON line; SSE: `{"event", "id", "data"}` with `data` parsed),
    /// or `None` when none came within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Value> {
        use futures::StreamExt;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let separator: &[u8] = if self.sse { b"\n\n" } else { b"\n" };
            if let Some(end) = self
                .buffer
                .windows(separator.len())
                .position(|window| window == separator)
            {
                let record: Vec<u8> = self.buffer.drain(..end + separator.len()).collect();
                let text = String::from_utf8_lossy(&record[..end]).into_owned();
                if text.trim().is_empty() || text.starts_with(':') {
                    continue;
                }
                if !self.sse {
                    return Some(serde_json::from_str(&text).expect("an NDJSON event"));
                }
                let mut event = serde_json::Map::new();
                for line in text.lines() {
                    if let Some((field, value)) = line.split_once(':') {
                        let value = value.strip_prefix(' ').unwrap_or(value);
                        let value = if field == "data" {
                            serde_json::from_str(value).expect("JSON data")
                        } else {
                            Value::String(value.to_owned())
                        };
                        event.insert(field.to_owned(), value);
                    }
                }
                if event.is_empty() {
                    continue;
                }
                return Some(Value::Object(event));
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next()).await.ok()??;
            self.buffer.extend_from_slice(&chunk.ok()?);
        }
    }

    /// Events until one matches `done` (included), or `within` passed.
    pub async fn until(&mut self, within: Duration, done: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + within;
        let mut seen = Vec::new();
        while let Some(event) = self
            .next(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await
        {
            let finished = done(&event);
            seen.push(event);
            if finished {
                break;
            }
        }
        seen
    }
}

/// A running sandbox serving HTTP on 8080 (busybox `httpd` over `/etc`) under `egress`, ready only
/// once berth's readiness probe reached it from the host.
pub async fn web_server(server: &TestServer, egress: &str) -> Value {
    let (status, sandbox) = server
        .post_json(
            "/v1/sandboxes",
            &serde_json::json!({
                "image": TEST_IMAGE,
                "command": ["httpd", "-f", "-p", "8080", "-h", "/etc"],
                "ports": [8080],
                "readiness": {"http": {"port": 8080, "path": "/hostname"}, "timeout": "30s"},
                "ttl": "10m",
                "network": {"egress": egress},
            }),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{sandbox}\n{}", server.log());
    assert_eq!(sandbox["status"], "Running", "{sandbox}");
    sandbox
}

/// What `sh -c line` prints inside sandbox `id` (through berth's exec).
pub async fn run_in(server: &TestServer, id: &str, line: &str) -> String {
    let (status, result) = server
        .post_json(
            &format!("/v1/sandboxes/{id}/exec"),
            &serde_json::json!({ "cmd": ["sh", "-c", line], "timeout": "20s" }),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{result}");
    result["stdout"].as_str().unwrap_or_default().to_owned()
}

/// Whether an HTTP GET of `/hostname` on `ip:port` from inside sandbox `id` is answered 200
/// within 3 s (busybox's `nc`: the image's static `wget` cannot run).
pub async fn answered_from(server: &TestServer, id: &str, ip: &str, port: u16) -> bool {
    let line = format!("printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} {port}");
    let answer = run_in(server, id, &line).await;
    answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
}

/// The server's `/metrics` text.
pub async fn metrics_of(server: &TestServer) -> String {
    server
        .http()
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("/metrics text")
}
