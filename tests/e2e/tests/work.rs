//! Working inside sandboxes through the real server and engine: exec (one-shot, streamed,
//! interactive over a WebSocket, background), files both ways, logs, stats, pause and resume.
//! Talks HTTP with reqwest (and tokio-tungstenite) directly, so the wire format itself is checked.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::io;
use std::time::{Duration, Instant};

use berth_e2e::{TestServer, docker_inspect, eventually, field_named};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_tungstenite::tungstenite::Message;

/// reqwest against one test server, with the sandbox routes as helpers.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(server: &TestServer) -> Self {
        Api {
            http: server.http(),
            base: server.url.clone(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Creates a sandbox of the test image running `command`; answers its id.
    async fn sandbox_running(&self, command: &[&str], ttl: &str) -> String {
        let body = json!({ "image": berth_e2e::TEST_IMAGE, "command": command, "ttl": ttl });
        let response = self
            .http
            .post(self.url("/v1/sandboxes"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let sandbox: Value = response.json().await.unwrap();
        assert_eq!(sandbox["status"], "Running", "{sandbox}");
        sandbox["id"].as_str().unwrap().to_owned()
    }

    async fn sleeper(&self) -> String {
        self.sandbox_running(&["sleep", "3600"], "10m").await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self.http.post(self.url(path)).json(&body).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn exec(&self, id: &str, body: Value) -> (StatusCode, Value) {
        self.post(&format!("/v1/sandboxes/{id}/exec"), body).await
    }

    /// Runs a shell line; asserts it answered 200 and returns the result.
    async fn sh(&self, id: &str, line: &str) -> Value {
        let (status, result) = self.exec(id, json!({ "cmd": ["sh", "-c", line] })).await;
        assert_eq!(status, StatusCode::OK, "{line}: {result}");
        result
    }

    async fn put_file(
        &self,
        id: &str,
        query: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let response = self
            .http
            .put(self.url(&format!("/v1/sandboxes/{id}/files?{query}")))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// Asserts a problem answer: its status, its `type` suffix, and (when given) text in its detail.
fn assert_problem(status: StatusCode, body: &Value, expected: StatusCode, kind: &str, detail: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["type"], format!("urn:berth:problem:{kind}"), "{body}");
    assert!(
        body["detail"].as_str().unwrap_or_default().contains(detail),
        "detail should mention `{detail}`: {body}"
    );
}

/// Server-sent events read as they arrive.
struct Sse {
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    async fn next(&mut self) -> Option<(String, String)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(name) = line.strip_prefix("event:") {
                        event = Some(name.trim().to_owned());
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.strip_prefix(' ').unwrap_or(value));
                    }
                }
                match event {
                    Some(event) => return Some((event, data)),
                    None => continue, // a keep-alive comment
                }
            }
            let chunk = self.response.chunk().await.ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// A deterministic pseudo-random byte stream of `total` bytes, in 1 MiB chunks, never all in memory.
fn pseudo_random(total: usize, seed: u64) -> impl futures::Stream<Item = Result<Bytes, io::Error>> {
    const CHUNK: usize = 1024 * 1024;
    futures::stream::unfold((0usize, seed | 1), move |(sent, mut state)| async move {
        if sent >= total {
            return None;
        }
        let len = CHUNK.min(total - sent);
        let mut chunk = Vec::with_capacity(len + 8);
        while chunk.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.extend_from_slice(&state.to_le_bytes());
        }
        chunk.truncate(len);
        Some((Ok(Bytes::from(chunk)), (sent + len, state)))
    })
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Peak resident memory of a process, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

/// A raw tar entry, bypassing the `tar` builder's own path checks (as a hostile client would).
fn raw_entry(builder: &mut tar::Builder<Vec<u8>>, path: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_700_000_000);
    {
        let old = header.as_old_mut();
        old.name[..path.len()].copy_from_slice(path.as_bytes());
        if let Some(link) = link {
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
    }
    header.set_cksum();
    builder.append(&header, data).unwrap();
}

fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    build(&mut builder);
    builder.into_inner().unwrap()
}

/// Whether a process whose command line contains `needle` still runs (zombies, shown as
/// `[name]`, do not count: they are dead and only wait to be reaped).
/// Reads a WebSocket exec until its exit frame: the output it carried and the exit JSON.
async fn read_until_exit<S>(socket: &mut S) -> (String, Value)
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut output = String::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(15), socket.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Binary(bytes))) => output.push_str(&String::from_utf8_lossy(&bytes)),
            Some(Ok(Message::Text(text))) => return (output, serde_json::from_str(text.as_str()).unwrap()),
            Some(Ok(_)) => {}
            other => panic!("no exit frame: {other:?}; output {output:?}"),
        }
    }
}

/// Waits up to `within` for no process matching `needle` to run in the sandbox; true if so.
async fn process_gone(api: &Api, id: &str, needle: &str, within: Duration) -> bool {
    eventually(within, || async {
        (!process_alive(api, id, needle).await).then_some(())
    })
    .await
    .is_some()
}

async fn process_alive(api: &Api, id: &str, needle: &str) -> bool {
    let ps = api.sh(id, "ps -o pid,stat,args").await;
    ps["stdout"]
        .as_str()
        .unwrap()
        .lines()
        .any(|line| line.contains(needle) && !line.contains("ps -o"))
}

#[tokio::test]
async fn exec_reports_real_exit_codes_output_stdin_and_caps() {
    let server = TestServer::start().await.unwrap();
    let api = Api::new(&server);
    let id = api.sleeper().await;

    let result = api.sh(&id, "echo out; echo err >&2; exit 3").await;
    assert_eq!(result["exit_code"], 3);
    assert_eq!(result["stdout"], "out\n");
    assert_eq!(result["stderr"], "err\n");
    assert_eq!(result["timed_out"], false);
    assert_eq!(result["truncated"], false);
    assert!(result["duration_ms"].is_u64());

    // stdin is written, then end-of-file.
    let (status, result) = api
        .exec(
            &id,
            json!({ "cmd": ["sh", "-c", "cat; echo done"], "stdin": "hello\nworld\n" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(result["stdout"], "hello\nworld\ndone\n");

    // env, workdir and user reach the process.
    let (_, result) = api
        .exec(
            &id,
            json!({ "cmd": ["sh", "-c", "echo $GREETING; pwd; id -u"], "env": {"GREETING": "hi"},
                    "workdir": "/etc", "user": "1000" }),
        )
        .await;
    assert_eq!(result["stdout"], "hi\n/etc\n1000\n", "{result}");

    // A program that does not exist: the engine's 126/127 with its reason on stderr, not a 500.
    let (status, result) = api.exec(&id, json!({ "cmd": ["no-such-program"] })).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    let code = result["exit_code"].as_i64().unwrap();
    assert!(code == 126 || code == 127, "{result}");
    assert!(
        result["stderr"].as_str().unwrap().contains("no-such-program"),
        "{result}"
    );
    assert_eq!(result["stdout"], "", "{result}");
    // The same through the pid-reporting wrapper (a timeout): the shell's 127, and no pid line leaks.
    let (_, result) = api
        .exec(&id, json!({ "cmd": ["no-such-program"], "timeout": "30s" }))
        .await;
    assert_eq!(result["exit_code"], 127, "{result}");
    assert!(
        result["stderr"].as_str().unwrap().contains("no-such-program"),
        "{result}"
    );
    let (_, result) = api
        .exec(
            &id,
            json!({ "cmd": ["sh", "-c", "echo hi; echo oops >&2"], "timeout": 30 }),
        )
        .await;
    assert_eq!(result["stdout"], "hi\n", "{result}");
    assert_eq!(
        result["stderr"], "oops\n",
        "the wrapper's pid line never reaches the user: {result}"
    );
    assert_eq!(result["exit_code"], 0);

    // Output beyond the cap (1 MiB per stream by default) is cut and flagged.
    let result = api
        .sh(&id, "head -c 3000000 /dev/zero | tr '\\0' a; echo tail >&2")
        .await;
    assert_eq!(result["stdout"].as_str().unwrap().len(), 1024 * 1024);
    assert_eq!(result["truncated"], true);
    assert_eq!(result["stderr"], "tail\n");
    assert_eq!(result["exit_code"], 0);

    // Bad requests name the field.
    let (status, problem) = api.exec(&id, json!({ "cmd": [] })).await;
    assert_problem(status, &problem, StatusCode::UNPROCESSABLE_ENTITY, "validation", "cmd");
    assert!(field_named(&problem, "cmd"));
    let (status, problem) = api.exec(&id, json!({ "cmd": ["true"], "timeout": "soon" })).await;
    assert_problem(
        status,
        &problem,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
        "timeout",
    );
    let (status, problem) = api.exec(&id, json!({ "cmd": ["true"], "bogus": 1 })).await;
    assert_problem(status, &problem, StatusCode::BAD_REQUEST, "invalid-body", "bogus");
    let (status, problem) = api.exec("0123456789abcdef", json!({ "cmd": ["true"] })).await;
    assert_problem(status, &problem, StatusCode::NOT_FOUND, "not-found", "0123456789abcdef");
}

#[tokio::test]
async fn streamed_exec_delivers_the_first_output_before_the_process_ends() {
    let server = TestServer::start().await.unwrap();
    let api = Api::new(&server);
    let id = api.sleeper().await;
    let started = Instant::now();
    let response = api
        .http
        .post(api.url(&format!("/v1/sandboxes/{id}/exec")))
        .header("accept", "text/event-stream")
        .json(&json!({ "cmd": ["sh", "-c", "echo first; sleep 3; echo warn >&2; echo second"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut events = Sse {
        response,
        buffer: String::new(),
    };
    let (event, data) = events.next().await.unwrap();
    assert_eq!((event.as_str(), data.as_str()), ("stdout", "\"first\\n\""));
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "the first output arrived after {:?}: it was buffered",
        started.elapsed()
    );
    let mut seen = vec![(event, data)];
    while let Some(event) = events.next().await {
        seen.push(event);
    }
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(seen.contains(&("stderr".into(), "\"warn\\n\"".into())), "{seen:?}");
    assert!(seen.contains(&("stdout".into(), "\"second\\n\"".into())), "{seen:?}");
    let (event, data) = seen.last().unwrap();
    assert_eq!(event, "exit");
    let exit: Value = serde_json::from_str(data).unwrap();
    assert_eq!(exit["exit_code"], 0);
    assert_eq!(exit["timed_out"], false);
}

#[tokio::test]
async fn websocket_exec_starts_with_the_terminal_size_given_in_the_query() {
    let server = TestServer::start().await.unwrap();
    let api = Api::new(&server);
    let id = api.sleeper().await;
    let ws_base = server.url.replacen("http://", "ws://", 1);
    // No resize frame: the program reads its size at once and must see the query's.
    let url = format!("{ws_base}/v1/sandboxes/{id}/exec/ws?cmd=stty&cmd=size&tty=true&cols=77&rows=22");
    let (mut socket, _) = tokio_tungstenite::connect_async(server.with_key(&url)).await.unwrap();
    let (screen, exit) = read_until_exit(&mut socket).await;
    assert_eq!(screen.trim(), "22 77");
    assert_eq!(exit["exit_code"], 0);
}

#[tokio::test]
async fn websocket_exec_carries_stdin_resizes_the_terminal_and_reports_the_exit() {
    let server = TestServer::start().await.unwrap();
    let api = Api::new(&server);
    let id = api.sleeper().await;
    let ws_base = server.url.replacen("http://", "ws://", 1);

    // A terminal: a resize frame is seen inside by `stty size`; `exit 7` is reported.
    let url = format!("{ws_base}/v1/sandboxes/{id}/exec/ws?cmd=sh&tty=true");
    let (mut socket, _) = tokio_tungstenite::connect_async(server.with_key(&url)).await.unwrap();
    socket
        .send(Message::Text(r#"{"resize":{"cols":123,"rows":45}}"#.into()))
        .await
        .unwrap();
    socket
        .send(Message::Binary(Bytes::from_static(b"stty size\n")))
        .await
        .unwrap();
    let mut screen = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !screen.contains("45 123") {
        assert!(Instant::now() < deadline, "no `45 123` in: {screen:?}");
        match tokio::time::timeout(Duration::from_secs(15), socket.next()).await {
            Ok(Some(Ok(Message::Binary(bytes)))) => screen.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(Some(Ok(_))) => {}
            other => panic!("socket ended early ({other:?}); screen: {screen:?}"),
        }
    }
    assert!(
        !screen.contains("berth-pid"),
        "the wrapper's pid line leaked: {screen:?}"
    );
    socket
        .send(Message::Binary(Bytes::from_static(b"exit 7\n")))
        .await
        .unwrap();
    let (_, exit) = read_until_exit(&mut socket).await;
    assert_eq!(exit["exit_code"], 7, "{exit}");

    // Without a terminal: stdin, `{"eof":true}` ends it, the output comes back.
    let url =
        format!("{ws_base}/v1/sandboxes/{id}/exec/ws?cmd=sh&cmd=-c&cmd=tr%20a-z%20A-Z%3B%20echo%20%24X&env=X=done");
    let (mut socket, _) = tokio_tungstenite::connect_async(server.with_key(&url)).await.unwrap();
    socket
        .send(Message::Binary(Bytes::from_static(b"shout\n")))
        .await
        .unwrap();
    socket.send(Message::Text(r#"{"eof":true}"#.into())).await.unwrap();
    let (output, exit) = read_until_exit(&mut socket).await;
    assert_eq!(output, "SHOUT\ndone\n");
    assert_eq!(exit["exit_code"], 0);

    // Closing the socket ends the process (and its children).
    let url = format!("{ws_base}/v1/sandboxes/{id}/exec/ws?cmd=sh&cmd=-c&cmd=sleep%204321%3B%20true");
    let (mut socket, _) = tokio_tungstenite::connect_async(server.with_key(&url)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            process_alive(&api, &id, "sleep 4321").await.then_some(())
        })
        .await
        .is_some()
    );
    socket.close(None).await.unwrap();
    drop(socket);
    assert!(
        process_gone(&api, &id, "sleep 4321", Duration::from_secs(10)).await,
        "the process outlived its socket"
    );

    // Not a WebSocket request, or a bad query: a problem.
    let (status, problem) = api.get(&format!("/v1/sandboxes/{id}/exec/ws?cmd=sh")).await;
    assert_problem(status, &problem, StatusCode::BAD_REQUEST, "invalid-body", "WebSocket");
    let (status, problem) = api.get(&format!("/v1/sandboxes/{id}/exec/ws")).await;
    assert_problem(status, &problem, StatusCode::UNPROCESSABLE_ENTITY, "validation", "cmd");
}

#[tokio::test]
async fn a_200_mib_file_goes_up_and_down_intact_and_the_server_memory_stays_flat() {
    const SIZE: usize = 200 * 1024 * 1024;
    let server = TestServer::start().await.unwrap();
    let api = Api::new(&server);
    let id = api.sleeper().await;

    let mut expected = Sha256::new();
    let mut generated = pseudo_random(SIZE, 42).boxed();
    while let Some(chunk) = generated.next().await {
        expected.update(chunk.unwrap());
    }
    let expected = hex(&expected.finalize());

    // Up, with Content-Length (streamed straight to the engine), into directories that do not exist yet.
    let started = Instant::now();
    let response = api
        .http
        .put(api.url(&format!("/v1/sandboxes/{id}/files?path=/data/nested/big.bin&mode=0640")))
        .header("content-type", "application/octet-stream")
        .header("content-length", SIZE.to_string())
        .body(reqwest::Body::wrap_stream(pseudo_random(SIZE, 42)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "{:?}", response.text().await);
    let upload_time = started.elapsed();

    let inside = api.sh(&id, "sha256sum /data/nested/big.bin").await;
    assert_eq!(
        inside["stdout"].as_str().unwrap().split_whitespace().next(),
        Some(expected.as_str()),
        "the file inside has the uploaded bytes"
    );
    let (status, stat) = api
        .get(&format!("/v1/sandboxes/{id}/files/stat?path=/data/nested/big.bin"))
        .await;
    assert_eq!(status, StatusCode::OK, "{stat}");
    assert_eq!(stat["size"], SIZE as u64);
    assert_eq!(stat["mode"], "0640");
    assert_eq!(stat["kind"], "file");
    assert_eq!(stat["name"], "big.bin");

    // Down: the raw bytes, with their length.
    let started = Instant::now();
    let mut response = api
        .http
        .get(api.url(&format!("/v1/sandboxes/{id}/files?path=/data/nested/big.bin")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/octet-stream");
    assert_eq!(response.content_length(), Some(SIZE as u64));
    let mut downloaded = Sha256::new();
    let mut length = 0;
    while let Some(chunk) = response.chunk().await.unwrap() {
        length += chunk.len();
        downloaded.update(&chunk);
    }
    let download_time = started.elapsed();
    assert_eq!(length, SIZE);
    assert_eq!(hex(&downloaded.finalize()), expected);

    // Without Content-Length the body is spooled to a temporary file, not kept in memory.
    let response = api
        .http
        .put(api.url(&format!("/v1/sandboxes/{id}/files?path=/data/chunked.bin")))
        .body(reqwest::Body::wrap_stream(pseudo_random(16 * 1024 * 1024, 7)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let mut chunked = Sha256::new();
    let mut generated = pseudo_random(16 * 1024 * 1024, 7).boxed();
    while let Some(chunk) = generated.next().await {
        chunked.update(chunk.unwrap());
    }
    let inside = api.sh(&id, "sha256sum /data/chunked.bin").await;
    assert_eq!(
        inside["stdout"].as_str().unwrap().split_whitespace().next(),
        Some(hex(&chunked.finalize()).as_str())
    );

    let peak = peak_rss(server.pid());
    eprintln!(
        "200 MiB: up {upload_time:?}, down {download_time:?}; server peak RSS {} MiB",
        peak / (1024 * 1024)
    );
    assert!(
        peak < 150 * 1024 * 1024,
        "the server's peak memory ({} MiB) grew with the transfer",
        peak / (1024 * 1024)
    );
}

#[tokio::test]
async fn the_output_cap_and_the_upload_limit_are_configurable() {
    let server = TestServer::start_with(berth_e2e::ServerOptions {
        args: ["--exec-output-limit", "10", "--max-file-size", "1Mi"]
            .map(str::to_owned)
            .to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    let api = Api::new(&server);
    let id = api.sleeper().await;

    let result = api.sh(&id, "echo 0123456789abcdef; echo short >&2").await;
    assert_eq!(result["stdout"], "0123456789");
    assert_eq!(result["stderr"], "short\n");
    assert_eq!(result["truncated"], true);

    // Over the limit: 413 whether the size is announced, streamed without it, or a tar.
    const OVER: usize = 1024 * 1024 + 1;
    let (status, problem) = api
        .put_file(&id, "path=/big.bin", "application/octet-stream", vec![b'x'; OVER])
        .await;
    assert_problem(
        status,
        &problem,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        "limit",
    );
    let (status, problem) = api
        .put_file(
            &id,
            "path=/big.bin",
            "application/octet-stream",
            reqwest::Body::wrap_stream(pseudo_random(OVER, 3)),
        )
        .await;
    assert_problem(
        status,
        &problem,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        "limit",
    );
    let archive = tar_of(|b| raw_entry(b, "big.bin", tar::EntryType::Regular, None, &vec![b'x'; OVER]));
    let (status, problem) = api.put_file(&id, "path=/dir", "application/x-tar", archive).await;
    assert_problem(
        status,
        &problem,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        "limit",
    );
    let look = api.sh(&id, "test -e /big.bin || echo A; test -e /dir || echo B").await;
    assert_eq!(look["stdout"], "A\nB\n", "nothing was written");
    // At the limit: fine.
    let (status, _) = api
        .put_file(&id, "path=/ok.bin", "application/octet-stream", vec![b'x'; OVER - 1])
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn files_are_listed_stat_ed_and_moved_as_tar_and_traversal_is_refused() {
    let server = TestServer::start().await.unwrap();
    let api = Api::new(&server);
    let id = api.sleeper().await;

    // Path traversal in the path itself: 422 naming `path`, nothing read or written.
    for bad in ["../../etc/passwd", "/tmp/../etc/passwd", "relative/file"] {
        let (status, problem) = api
            .put_file(&id, &format!("path={bad}"), "application/octet-stream", "x")
            .await;
        assert_problem(status, &problem, StatusCode::UNPROCESSABLE_ENTITY, "validation", "path");
        assert!(field_named(&problem, "path"), "{problem}");
    }
    let passwd = api.sh(&id, "cat /etc/passwd").await;
    assert_ne!(passwd["stdout"], "x", "nothing was written");

    // Hostile archives are refused whole: nothing of them is written, not even the destination.
    let hostile = [
        (
            "dot-dot",
            tar_of(|b| raw_entry(b, "../evil", tar::EntryType::Regular, None, b"pwned")),
        ),
        (
            "absolute",
            tar_of(|b| raw_entry(b, "/evil-abs", tar::EntryType::Regular, None, b"pwned")),
        ),
        (
            "symlink",
            tar_of(|b| raw_entry(b, "escape", tar::EntryType::Symlink, Some("/etc"), b"")),
        ),
        (
            "relative symlink",
            tar_of(|b| raw_entry(b, "up", tar::EntryType::Symlink, Some("../../.."), b"")),
        ),
        (
            "good then bad",
            tar_of(|b| {
                raw_entry(b, "ok.txt", tar::EntryType::Regular, None, b"fine");
                raw_entry(b, "sub/../../evil-late", tar::EntryType::Regular, None, b"pwned");
            }),
        ),
        (
            "device",
            tar_of(|b| raw_entry(b, "null", tar::EntryType::Char, None, b"")),
        ),
    ];
    for (name, archive) in hostile {
        let (status, problem) = api
            .put_file(&id, "path=/upload/dest", "application/x-tar", archive)
            .await;
        assert_problem(status, &problem, StatusCode::BAD_REQUEST, "invalid-body", "");
        assert!(
            problem["detail"].as_str().unwrap().contains("refused"),
            "{name}: {problem}"
        );
    }
    let look = api
        .sh(
            &id,
            "ls -la /upload /evil /evil-abs /upload/evil-late /evil-late 2>&1; true",
        )
        .await;
    let listing = look["stdout"].as_str().unwrap();
    assert_eq!(
        listing.matches("No such file or directory").count(),
        5,
        "nothing was written: {listing}"
    );

    // A good archive is extracted into a directory that did not exist, links inside work.
    let good = tar_of(|b| {
        raw_entry(b, "dir/", tar::EntryType::Directory, None, b"");
        raw_entry(b, "dir/a.txt", tar::EntryType::Regular, None, b"alpha\n");
        raw_entry(b, "dir/link", tar::EntryType::Symlink, Some("a.txt"), b"");
        raw_entry(b, "top.txt", tar::EntryType::Regular, None, b"top\n");
    });
    let (status, body) = api.put_file(&id, "path=/upload/dest", "application/x-tar", good).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        api.sh(&id, "cat /upload/dest/dir/link /upload/dest/top.txt").await["stdout"],
        "alpha\ntop\n"
    );

    // List and stat.
    let (status, listing) = api
        .get(&format!("/v1/sandboxes/{id}/files/list?path=/upload/dest"))
        .await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    let names: Vec<(&str, &str)> = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| (entry["name"].as_str().unwrap(), entry["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("dir", "dir"), ("top.txt", "file")]);
    assert_eq!(listing["entries"][1]["path"], "/upload/dest/top.txt");
    let (_, stat) = api
        .get(&format!("/v1/sandboxes/{id}/files/stat?path=/upload/dest/dir/link"))
        .await;
    assert_eq!(stat["kind"], "symlink", "{stat}");
    api.sh(&id, "mkdir /shared && chmod 1777 /shared").await;
    let (_, stat) = api.get(&format!("/v1/sandboxes/{id}/files/stat?path=/shared")).await;
    assert_eq!(
        (stat["kind"].as_str(), stat["mode"].as_str()),
        (Some("dir"), Some("1777")),
        "{stat}"
    );

    // A missing path is a 404 that names it.
    let (status, problem) = api
        .get(&format!("/v1/sandboxes/{id}/files/stat?path=/no/such/file"))
        .await;
    assert_problem(status, &problem, StatusCode::NOT_FOUND, "not-found", "/no/such/file");
    let response = api
        .http
        .get(api.url(&format!("/v1/sandboxes/{id}/files?path=/no/such/file")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // A directory downloads as a tar; a file through a symlink as its bytes.
    let response = api
        .http
        .get(api.url(&format!("/v1/sandboxes/{id}/files?path=/upload/dest")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/x-tar");
    let tar = response.bytes().await.unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    let mut names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|entry| {
            entry
                .unwrap()
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_owned()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["dest", "dest/dir", "dest/dir/a.txt", "dest/dir/link", "dest/top.txt"]
    );
    let response = api
        .http
        .get(api.url(&format!("/v1/sandboxes/{id}/files?path=/upload/dest/dir/link")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.bytes().await.unwrap(), "alpha\n");

    // Replacing a file, and a mode that is not octal.
    let (status, _) = api
        .put_file(&id, "path=/upload/dest/top.txt", "application/octet-stream", "new\n")
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(api.sh(&id, "cat /upload/dest/top.txt").await["stdout"], "new\n");
    let (status, problem) = api
        .put_file(&id, "path=/upload/dest/dir", "application/octet-stream", "x")
        .await;
    assert_problem(
        status,
        &problem,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
        "is a directory",
    );
    assert_eq!(
        api.sh(&id, "cat /upload/dest/dir/a.txt").await["stdout"],
        "alpha\n",
        "the directory is intact"
    );
    let (status, problem) = api
        .put_file(&id, "path=/upload/x&mode=999", "application/octet-stream", "x")
        .await;
    assert_problem(status, &problem, StatusCode::UNPROCESSABLE_ENTITY, "validation", "mode");
    let (status, problem) = api
        .put_file(&id, "path=/upload/dest/top.txt/below", "application/octet-stream", "x")
        .await;
    assert_problem(
        status,
        &problem,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
        "not a directory",
    );
}

#[tokio::test]
async fn ten_concurrent_execs_in_one_sandbox_each_get_their_own_answer() {
    let server = TestServer::start().await.unwrap();
    let api = Api::new(&server);
    let id = api.sleeper().await;
    let started = Instant::now();
    let results = futures::future::join_all((0..10).map(|n| {
        let api = &api;
        let id = &id;
        async move {
            let result = api.sh(id, &format!("sleep 1; echo exec-{n}; exit {n}")).await;
            (n, result)
        }
    }))
    .await;
    for (n, result) in results {
        assert_eq!(result["exit_code"], n, "{result}");
        assert_eq!(result["stdout"], format!("exec-{n}\n"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "ten 1 s execs took {:?}: they did not run concurrently",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_exec_timeout_kills_the_process_and_its_children() {
    let server = TestServer::start().await.unwrap();
    let api = Api::new(&server);
    let id = api.sleeper().await;
    let started = Instant::now();
    let (status, result) = api
        .exec(
            &id,
            json!({ "cmd": ["sh", "-c", "echo before; sleep 4242 & sleep 4243; echo never"], "timeout": "1s" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["timed_out"], true, "{result}");
    assert_eq!(result["exit_code"], 137, "{result}");
    assert_eq!(result["stdout"], "before\n");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    for sleeper in ["sleep 4242", "sleep 4243"] {
        assert!(
            process_gone(&api, &id, sleeper, Duration::from_secs(5)).await,
            "`{sleeper}` still runs after the timeout"
        );
    }
}

#[tokio::test]
async fn a_streamed_exec_with_a_timeout_is_killed_when_its_client_hangs_up() {
    let server = TestServer::start().await.unwrap();
    let api = Api::new(&server);
    let id = api.sleeper().await;
    let response = api
        .http
        .post(api.url(&format!("/v1/sandboxes/{id}/exec")))
        .header("accept", "text/event-stream")
        .json(&json!({ "cmd": ["sh", "-c", "echo go; sleep 6161; true"], "timeout": "10m" }))
        .send()
        .await
        .unwrap();
    let mut events = Sse {
        response,
        buffer: String::new(),
    };
    assert_eq!(events.next().await.unwrap().0, "stdout");
    assert!(process_alive(&api, &id, "sleep 6161").await);
    drop(events);
    assert!(
        process_gone(&api, &id, "sleep 6161", Duration::from_secs(5)).await,
        "the process outlived its client"
    );
}

#[tokio::test]
async fn logs_follow_receives_a_line_written_after_the_request_started() {
    let server = TestServer::start().await.unwrap();
    let api = Api::new(&server);
    let script = "echo booted; while true; do if [ -f /go ]; then rm /go; echo late-line; echo late-err >&2; fi; sleep 0.2; done";
    let id = api.sandbox_running(&["sh", "-c", script], "10m").await;

    let mut response = api
        .http
        .get(api.url(&format!("/v1/sandboxes/{id}/logs?follow=true")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let mut seen = String::new();
    let mut wrote = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(seen.contains("late-line") && seen.contains("late-err")) {
        assert!(Instant::now() < deadline, "no late line in {seen:?}");
        if seen.contains("booted") && !wrote {
            api.sh(&id, "touch /go").await;
            wrote = true;
        }
        match tokio::time::timeout(Duration::from_secs(20), response.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("the log stream ended: {other:?}; seen {seen:?}"),
        }
    }
    drop(response);

    // Not following: the stream ends; tail and timestamps apply.
    let text = api
        .http
        .get(api.url(&format!("/v1/sandboxes/{id}/logs?tail=1&timestamps=true")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text.lines().count(), 1, "{text:?}");
    assert!(text.starts_with("20"), "an RFC 3339 timestamp first: {text:?}");

    // Server-sent events, stdout and stderr apart.
    let response = api
        .http
        .get(api.url(&format!("/v1/sandboxes/{id}/logs?since=1h")))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut events = Sse {
        response,
        buffer: String::new(),
    };
    let mut kinds = Vec::new();
    while let Some((event, data)) = events.next().await {
        kinds.push((event, serde_json::from_str::<String>(&data).unwrap()));
    }
    assert!(kinds.contains(&("stdout".into(), "booted\n".into())), "{kinds:?}");
    assert!(
        kinds
            .iter()
            .any(|(event, text)| event == "stderr" && text.contains("late-err")),
        "{kinds:?}"
    );

    let (status, problem) = api.get(&format!("/v1/sandboxes/{id}/logs?since=yesterday")).await;
    assert_problem(
        status,
        &problem,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
        "since",
    );
}

#[tokio::test]
async fn stats_report_usage_once_or_as_a_stream() {
    let server = TestServer::start().await.unwrap();
    let api = Api::new(&server);
    let id = api.sleeper().await;
    let (status, stats) = api.get(&format!("/v1/sandboxes/{id}/stats")).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["memory_limit_bytes"], 512 * 1024 * 1024_u64);
    assert!(stats["memory_used_bytes"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["pids"].as_u64().unwrap() >= 1, "{stats}");

    let mut response = api
        .http
        .get(api.url(&format!("/v1/sandboxes/{id}/stats?stream=true")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let mut text = String::new();
    while text.lines().count() < 2 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    for line in text.lines().take(2) {
        let sample: Value = serde_json::from_str(line).unwrap();
        assert!(sample["read_at"].is_string(), "{sample}");
    }
}

#[tokio::test]
async fn pause_blocks_exec_and_resume_allows_it() {
    let server = TestServer::start().await.unwrap();
    let api = Api::new(&server);
    let id = api.sleeper().await;

    let (status, paused) = api.post(&format!("/v1/sandboxes/{id}/pause"), Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(paused["status"], "Paused");
    let container = paused["container_id"].as_str().unwrap().to_owned();
    let engine = docker_inspect(&container).unwrap();
    assert_eq!(engine["State"]["Paused"], true, "the engine froze it");
    let (status, again) = api.post(&format!("/v1/sandboxes/{id}/pause"), Value::Null).await;
    assert_eq!((status, again["status"].as_str()), (StatusCode::OK, Some("Paused")));

    let (status, problem) = api.exec(&id, json!({ "cmd": ["true"] })).await;
    assert_problem(status, &problem, StatusCode::CONFLICT, "invalid-state", "paused");
    let (status, problem) = api.get(&format!("/v1/sandboxes/{id}/files/stat?path=/etc")).await;
    assert_problem(
        status,
        &problem,
        StatusCode::CONFLICT,
        "invalid-state",
        "resume it first",
    );
    let (status, problem) = api.get(&format!("/v1/sandboxes/{id}/stats")).await;
    assert_problem(status, &problem, StatusCode::CONFLICT, "invalid-state", "paused");

    let (status, resumed) = api.post(&format!("/v1/sandboxes/{id}/resume"), Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(resumed["status"], "Running");
    assert_eq!(docker_inspect(&container).unwrap()["State"]["Paused"], false);
    assert_eq!(api.sh(&id, "echo awake").await["stdout"], "awake\n");

    // Ended: 409 for pause, resume and exec, with the reason.
    let response = api
        .http
        .delete(api.url(&format!("/v1/sandboxes/{id}?wait=true")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for route in ["pause", "resume", "exec"] {
        let (status, problem) = api
            .post(&format!("/v1/sandboxes/{id}/{route}"), json!({ "cmd": ["true"] }))
            .await;
        assert_problem(
            status,
            &problem,
            StatusCode::CONFLICT,
            "invalid-state",
            "has ended (Terminated: deleted)",
        );
    }
}

#[tokio::test]
async fn a_paused_sandbox_still_expires_on_time() {
    let server = TestServer::start().await.unwrap();
    let api = Api::new(&server);
    // Long enough that a loaded engine's create and readiness still leave it running to pause.
    let id = api.sandbox_running(&["sleep", "3600"], "8s").await;
    let (status, paused) = api.post(&format!("/v1/sandboxes/{id}/pause"), Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let container = paused["container_id"].as_str().unwrap().to_owned();
    let expires_at: chrono::DateTime<chrono::Utc> = paused["expires_at"].as_str().unwrap().parse().unwrap();
    let ended = eventually(Duration::from_secs(30), || async {
        let (_, sandbox) = api.get(&format!("/v1/sandboxes/{id}")).await;
        (sandbox["status"] == "Terminated").then_some(sandbox)
    })
    .await
    .expect("the paused sandbox expired");
    assert_eq!(ended["status_reason"], "expired");
    let ended_at: chrono::DateTime<chrono::Utc> = ended["ended_at"].as_str().unwrap().parse().unwrap();
    assert!(
        ended_at >= expires_at && ended_at - expires_at <= berth_e2e::EXPIRY_SLACK,
        "ended {ended_at}, due {expires_at}"
    );
    assert!(docker_inspect(&container).is_none(), "the paused container was removed");
}

#[tokio::test]
async fn a_detached_process_runs_in_the_background_keeps_its_output_and_takes_signals() {
    let server = TestServer::start().await.unwrap();
    let api = Api::new(&server);
    let id = api.sleeper().await;

    let script = "echo started; trap 'echo got-term; exit 5' TERM; while true; do sleep 0.1; done";
    let response = api
        .http
        .post(api.url(&format!("/v1/sandboxes/{id}/exec")))
        .json(&json!({ "cmd": ["sh", "-c", script], "detach": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let process: Value = response.json().await.unwrap();
    let pid = process["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/sandboxes/{id}/processes/{pid}"));
    assert_eq!(process["running"], true);

    let output_path = format!("/v1/sandboxes/{id}/processes/{pid}/output");
    let output = eventually(Duration::from_secs(10), || async {
        let (_, output) = api.get(&output_path).await;
        (output["stdout"] == "started\n").then_some(output)
    })
    .await
    .expect("the background output is kept");
    assert_eq!(output["running"], true);
    let (_, list) = api.get(&format!("/v1/sandboxes/{id}/processes")).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], pid.as_str());

    let signal_path = format!("/v1/sandboxes/{id}/processes/{pid}/signal");
    let (status, problem) = api.post(&signal_path, json!({ "signal": "BOGUS" })).await;
    assert_problem(
        status,
        &problem,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
        "signal",
    );
    let (status, _) = api.post(&signal_path, json!({ "signal": "SIGTERM" })).await;
    assert_eq!(status, StatusCode::OK);
    let ended = eventually(Duration::from_secs(10), || async {
        let (_, process) = api.get(&location).await;
        (process["running"] == false).then_some(process)
    })
    .await
    .expect("the process ended on TERM");
    assert_eq!(ended["exit_code"], 5, "{ended}");
    assert!(ended["ended_at"].is_string());
    let (_, output) = api.get(&output_path).await;
    assert_eq!(output["stdout"], "started\ngot-term\n");
    let (status, problem) = api.post(&signal_path, json!({ "signal": "TERM" })).await;
    assert_problem(status, &problem, StatusCode::CONFLICT, "invalid-state", "has ended");
    let (status, problem) = api.get(&format!("/v1/sandboxes/{id}/processes/p-nope")).await;
    assert_problem(status, &problem, StatusCode::NOT_FOUND, "not-found", "p-nope");

    // A background process with a timeout is killed when it passes.
    let (status, process) = api
        .exec(
            &id,
            json!({ "cmd": ["sleep", "4444"], "detach": true, "timeout": "1s" }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let path = format!("/v1/sandboxes/{id}/processes/{}", process["id"].as_str().unwrap());
    let ended = eventually(Duration::from_secs(10), || async {
        let (_, process) = api.get(&path).await;
        (process["running"] == false).then_some(process)
    })
    .await
    .expect("the timeout ended the background process");
    assert_eq!(ended["exit_code"], 137);
    assert!(!process_alive(&api, &id, "sleep 4444").await);
}

/// An image with busybox at `/busybox` and nothing else: no `/bin/sh`. Built once, like the test image.
fn ensure_shell_less_image() -> &'static str {
    const IMAGE: &str = "berth-test/no-shell:latest";
    if berth_e2e::docker(&["image", "inspect", IMAGE]).is_ok() {
        return IMAGE;
    }
    let context = tempfile::tempdir().unwrap();
    let name = berth_e2e::unique("no-shell-src");
    berth_e2e::docker(&["create", "--name", &name, berth_e2e::TEST_IMAGE, "true"]).unwrap();
    let copied = berth_e2e::docker(&[
        "cp",
        &format!("{name}:/bin/busybox"),
        context.path().join("busybox").to_str().unwrap(),
    ]);
    let _ = berth_e2e::docker(&["rm", &name]);
    copied.unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /busybox\n",
    )
    .unwrap();
    let built = std::process::Command::new("docker")
        .args(["build", "--quiet", "--tag", IMAGE])
        .arg(context.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    IMAGE
}

#[tokio::test]
async fn an_image_without_a_shell_runs_plain_execs_and_explains_what_needs_one() {
    let image = ensure_shell_less_image();
    let server = TestServer::start().await.unwrap();
    let api = Api::new(&server);
    let (status, sandbox) = api
        .post(
            "/v1/sandboxes",
            json!({ "image": image, "command": ["/busybox", "sleep", "3600"], "ttl": "10m" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sandbox}");
    let id = sandbox["id"].as_str().unwrap().to_owned();

    let (status, result) = api.exec(&id, json!({ "cmd": ["/busybox", "echo", "plain"] })).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["stdout"], "plain\n");
    for body in [
        json!({ "cmd": ["/busybox", "echo", "x"], "timeout": "5s" }),
        json!({ "cmd": ["/busybox", "sleep", "5"], "detach": true }),
    ] {
        let (status, problem) = api.exec(&id, body).await;
        assert_problem(
            status,
            &problem,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "/bin/sh",
        );
    }

    // Interactive exec still works; only a hang-up cannot kill it.
    let url = format!(
        "{}/v1/sandboxes/{id}/exec/ws?cmd=/busybox&cmd=echo&cmd=still-works",
        server.url.replacen("http://", "ws://", 1)
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(server.with_key(&url)).await.unwrap();
    let (output, exit) = read_until_exit(&mut socket).await;
    assert_eq!(output, "still-works\n");
    assert_eq!(exit["exit_code"], 0);
}
