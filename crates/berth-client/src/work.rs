//! Working inside a sandbox: exec (one-shot, streamed as server-sent events, detached),
//! background processes, files (streamed both ways), logs, stats, pause and resume.

use berth_api::{
    DirListing, ExecExit, ExecRequest, ExecResult, FileStat, ProcessOutput, ProcessView, SandboxView, SignalRequest,
    StatsView,
};
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use reqwest::{Response, Url};
use serde::Deserialize;

use crate::sse::{SseEvent, SseParser};
use crate::{BerthClient, ClientError, error_from_answer, join_segments};

/// The media type of a directory in transit: a tar stream.
pub const TAR_CONTENT_TYPE: &str = "application/x-tar";
/// The media type of a streamed exec.
pub const EVENT_STREAM_CONTENT_TYPE: &str = "text/event-stream";

/// A streamed body coming from the server.
pub type ByteStream = BoxStream<'static, Result<Bytes, ClientError>>;
/// The events of a streamed exec; the stream ends after [`ExecEvent::Exit`].
pub type ExecEventStream = BoxStream<'static, Result<ExecEvent, ClientError>>;
/// Resource samples, one about every second.
pub type StatsStream = BoxStream<'static, Result<StatsView, ClientError>>;

/// What `GET /v1/events` sends, line by line.
#[derive(Debug, Clone, PartialEq)]
pub enum EventLine {
    Event(berth_api::SandboxEventView),
    /// The server could not resume where asked (the id fell out of its history, or is not one of
    /// its own): some changes were missed. The stream goes on.
    Gap(String),
}

/// The filters and resume point of `GET /v1/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventsQuery {
    /// `key=value`, all of which must hold.
    pub labels: Vec<String>,
    pub owner: Option<String>,
    pub ids: Vec<String>,
    /// `sandbox.deleted` or `deleted`…
    pub types: Vec<String>,
    /// Resume after this event id.
    pub since: Option<u64>,
}

/// One event of a streamed exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    Stdout(String),
    Stderr(String),
    /// The process ended; always the last event.
    Exit(ExecExit),
}

impl ExecEvent {
    /// The exec event an SSE event stands for; `None` for event types this client does not know.
    pub fn from_sse(event: &SseEvent) -> Result<Option<ExecEvent>, ClientError> {
        let decode_error = |error: serde_json::Error| {
            ClientError::Decode(format!(
                "the exec stream's `{}` event is not as expected: {error}",
                event.event
            ))
        };
        Ok(Some(match event.event.as_str() {
            "stdout" => ExecEvent::Stdout(serde_json::from_str(&event.data).map_err(decode_error)?),
            "stderr" => ExecEvent::Stderr(serde_json::from_str(&event.data).map_err(decode_error)?),
            "exit" => ExecEvent::Exit(serde_json::from_str(&event.data).map_err(decode_error)?),
            // A problem after the stream started (the engine went away mid-exec).
            "error" => {
                return Err(match serde_json::from_str(&event.data) {
                    Ok(problem) => ClientError::Problem(Box::new(problem)),
                    Err(_) => ClientError::Decode(format!("the exec failed: {}", event.data)),
                });
            }
            _ => return Ok(None),
        }))
    }
}

/// What a download is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadKind {
    /// The raw bytes of one file.
    File,
    /// A tar stream of a directory.
    Tar,
}

/// A download in progress: what it is, its length when the server said, and the bytes.
pub struct Download {
    pub kind: DownloadKind,
    pub content_length: Option<u64>,
    pub body: ByteStream,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("kind", &self.kind)
            .field("content_length", &self.content_length)
            .finish_non_exhaustive()
    }
}

/// Which logs to read (`GET /v1/sandboxes/{id}/logs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogsQuery {
    /// Keep streaming new output until the sandbox ends or the client hangs up.
    pub follow: bool,
    /// Only the last N lines.
    pub tail: Option<u64>,
    /// Only output since this instant (RFC 3339), as the server accepts it.
    pub since: Option<String>,
    /// Prefix each line with its time.
    pub timestamps: bool,
}

/// The process list: a JSON array, or an object with `items`.
#[derive(Deserialize)]
#[serde(untagged)]
enum ProcessList {
    Plain(Vec<ProcessView>),
    Wrapped { items: Vec<ProcessView> },
}

impl BerthClient {
    /// `POST /v1/sandboxes/{id}/exec`: runs the command and answers once it ended.
    pub async fn exec(&self, id: &str, request: &ExecRequest) -> Result<ExecResult, ClientError> {
        let request = ExecRequest {
            detach: false,
            ..request.clone()
        };
        self.send_json(self.http.post(sandbox_path(&self.base, id, &["exec"])).json(&request))
            .await
    }

    /// `POST /v1/sandboxes/{id}/exec` with `detach: true`: starts a background process.
    pub async fn exec_detached(&self, id: &str, request: &ExecRequest) -> Result<ProcessView, ClientError> {
        let request = ExecRequest {
            detach: true,
            ..request.clone()
        };
        self.send_json(self.http.post(sandbox_path(&self.base, id, &["exec"])).json(&request))
            .await
    }

    /// `POST /v1/sandboxes/{id}/exec` as server-sent events: output as it happens, then the exit.
    pub async fn exec_stream(&self, id: &str, request: &ExecRequest) -> Result<ExecEventStream, ClientError> {
        let request = ExecRequest {
            detach: false,
            ..request.clone()
        };
        let builder = self
            .http
            .post(sandbox_path(&self.base, id, &["exec"]))
            .header(ACCEPT, EVENT_STREAM_CONTENT_TYPE)
            .json(&request);
        let response = self.open(builder).await?;
        Ok(exec_events(self.body_stream(response)))
    }

    /// `GET /v1/sandboxes/{id}/processes`.
    pub async fn processes(&self, id: &str) -> Result<Vec<ProcessView>, ClientError> {
        let list: ProcessList = self
            .send_json(self.http.get(sandbox_path(&self.base, id, &["processes"])))
            .await?;
        Ok(match list {
            ProcessList::Plain(items) | ProcessList::Wrapped { items } => items,
        })
    }

    /// `GET /v1/sandboxes/{id}/processes/{pid}`.
    pub async fn process(&self, id: &str, pid: &str) -> Result<ProcessView, ClientError> {
        self.send_json(self.http.get(sandbox_path(&self.base, id, &["processes", pid])))
            .await
    }

    /// `GET /v1/sandboxes/{id}/processes/{pid}/output`.
    pub async fn process_output(&self, id: &str, pid: &str) -> Result<ProcessOutput, ClientError> {
        self.send_json(
            self.http
                .get(sandbox_path(&self.base, id, &["processes", pid, "output"])),
        )
        .await
    }

    /// `POST /v1/sandboxes/{id}/processes/{pid}/signal`: `TERM`, `KILL`, `INT`, … or a number.
    pub async fn signal_process(&self, id: &str, pid: &str, signal: &str) -> Result<(), ClientError> {
        let body = SignalRequest {
            signal: signal.to_owned(),
        };
        self.send(
            self.http
                .post(sandbox_path(&self.base, id, &["processes", pid, "signal"]))
                .json(&body),
        )
        .await
        .map(drop)
    }

    /// `PUT /v1/sandboxes/{id}/files?path=…`: writes one file (parents are created). `length`
    /// becomes the `Content-Length` (the body must then be exactly that long); `mode` is the
    /// permission bits, e.g. `0o644`.
    pub async fn upload_file(
        &self,
        id: &str,
        path: &str,
        mode: Option<u32>,
        length: Option<u64>,
        body: reqwest::Body,
    ) -> Result<(), ClientError> {
        let mut builder = self
            .http
            .put(files_url(&self.base, id, None, path, mode))
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body);
        if let Some(length) = length {
            builder = builder.header(CONTENT_LENGTH, HeaderValue::from(length));
        }
        self.send(builder).await.map(drop)
    }

    /// `PUT /v1/sandboxes/{id}/files?path=DIR` with a tar body: extracted into the directory `dir`.
    pub async fn upload_tar(&self, id: &str, dir: &str, body: reqwest::Body) -> Result<(), ClientError> {
        let builder = self
            .http
            .put(files_url(&self.base, id, None, dir, None))
            .header(CONTENT_TYPE, TAR_CONTENT_TYPE)
            .body(body);
        self.send(builder).await.map(drop)
    }

    /// `GET /v1/sandboxes/{id}/files?path=…`: a file's bytes, or a directory as a tar stream.
    pub async fn download(&self, id: &str, path: &str) -> Result<Download, ClientError> {
        let response = self
            .open(self.http.get(files_url(&self.base, id, None, path, None)))
            .await?;
        let kind = download_kind(
            response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|value| value.to_str().ok()),
        );
        let content_length = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok());
        Ok(Download {
            kind,
            content_length,
            body: self.body_stream(response),
        })
    }

    /// `GET /v1/sandboxes/{id}/files/stat?path=…`.
    pub async fn stat(&self, id: &str, path: &str) -> Result<FileStat, ClientError> {
        self.send_json(self.http.get(files_url(&self.base, id, Some("stat"), path, None)))
            .await
    }

    /// `GET /v1/sandboxes/{id}/files/list?path=…`.
    pub async fn list_dir(&self, id: &str, path: &str) -> Result<DirListing, ClientError> {
        self.send_json(self.http.get(files_url(&self.base, id, Some("list"), path, None)))
            .await
    }

    /// `GET /v1/sandboxes/{id}/logs`: the main process's output, streamed.
    pub async fn logs(&self, id: &str, query: &LogsQuery) -> Result<ByteStream, ClientError> {
        let response = self.open(self.http.get(logs_url(&self.base, id, query))).await?;
        Ok(self.body_stream(response))
    }

    /// `GET /v1/sandboxes/{id}/stats`: one sample.
    pub async fn stats(&self, id: &str) -> Result<StatsView, ClientError> {
        self.send_json(self.http.get(stats_url(&self.base, id, false))).await
    }

    /// `GET /v1/sandboxes/{id}/stats?stream=true`: a sample about every second, until dropped.
    pub async fn stats_stream(&self, id: &str) -> Result<StatsStream, ClientError> {
        let response = self.open(self.http.get(stats_url(&self.base, id, true))).await?;
        Ok(json_lines(self.body_stream(response)))
    }

    /// `GET /v1/events` as NDJSON: the lifecycle events of sandboxes, as they come, until dropped.
    pub async fn events(
        &self,
        query: &EventsQuery,
    ) -> Result<BoxStream<'static, Result<EventLine, ClientError>>, ClientError> {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        pairs.extend(query.labels.iter().map(|label| ("label", label.clone())));
        pairs.extend(query.owner.iter().map(|owner| ("owner", owner.clone())));
        pairs.extend(query.ids.iter().map(|id| ("id", id.clone())));
        pairs.extend(query.types.iter().map(|kind| ("type", kind.clone())));
        pairs.extend(query.since.iter().map(|since| ("since", since.to_string())));
        let mut url = join_segments(&self.base, &["v1", "events"]);
        if !pairs.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(pairs.iter().map(|(name, value)| (*name, value.as_str())));
        }
        let request = self.http.get(url).header(ACCEPT, "application/x-ndjson");
        let response = self.open(request).await?;
        let lines = json_lines::<serde_json::Value>(self.body_stream(response));
        Ok(lines
            .map(|line| {
                let line = line?;
                if line["type"] == "error" {
                    return Ok(EventLine::Gap(line["message"].as_str().unwrap_or_default().to_owned()));
                }
                serde_json::from_value(line)
                    .map(EventLine::Event)
                    .map_err(|error| ClientError::Decode(format!("an event is not as expected: {error}")))
            })
            .boxed())
    }

    /// `POST /v1/sandboxes/{id}/pause`: freezes every process of the sandbox.
    pub async fn pause(&self, id: &str) -> Result<SandboxView, ClientError> {
        self.send_json(self.http.post(sandbox_path(&self.base, id, &["pause"])))
            .await
    }

    /// `GET /v1/sandboxes/{id}/network`: the egress policy in force.
    pub async fn network(&self, id: &str) -> Result<berth_api::NetworkPolicy, ClientError> {
        self.send_json(self.http.get(sandbox_path(&self.base, id, &["network"])))
            .await
    }

    /// `PUT /v1/sandboxes/{id}/network`: puts `egress` in force on the running sandbox.
    pub async fn set_egress(
        &self,
        id: &str,
        egress: berth_api::Egress,
    ) -> Result<berth_api::NetworkPolicy, ClientError> {
        let body = serde_json::json!({ "egress": egress.as_str() });
        self.send_json(self.http.put(sandbox_path(&self.base, id, &["network"])).json(&body))
            .await
    }

    /// `POST /v1/sandboxes/{id}/resume`.
    pub async fn resume(&self, id: &str) -> Result<SandboxView, ClientError> {
        self.send_json(self.http.post(sandbox_path(&self.base, id, &["resume"])))
            .await
    }

    /// Sends the request and returns a 2xx response unread, or the error its answer stands for.
    pub(crate) async fn open(&self, builder: reqwest::RequestBuilder) -> Result<Response, ClientError> {
        let response = builder.send().await.map_err(|error| self.transport(error))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(response);
        }
        let body = response.bytes().await.map_err(|error| self.transport(error))?;
        Err(error_from_answer(status, &body))
    }

    pub(crate) fn body_stream(&self, response: Response) -> ByteStream {
        let client = self.clone();
        response
            .bytes_stream()
            .map(move |chunk| chunk.map_err(|error| client.transport(error)))
            .boxed()
    }
}

/// `DownloadKind` from a `Content-Type`: tar for `application/x-tar` (and `application/tar`).
pub fn download_kind(content_type: Option<&str>) -> DownloadKind {
    let essence = content_type
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/x-tar" | "application/tar") => DownloadKind::Tar,
        _ => DownloadKind::File,
    }
}

/// Parses a body of server-sent events into exec events; ends after the exit event, and fails
/// if the body ends without one.
pub fn exec_events(body: ByteStream) -> ExecEventStream {
    struct State {
        body: Option<ByteStream>,
        parser: SseParser,
        ready: std::collections::VecDeque<Result<ExecEvent, ClientError>>,
    }
    let state = State {
        body: Some(body),
        parser: SseParser::new(),
        ready: Default::default(),
    };
    stream::unfold(state, |mut state| async move {
        loop {
            if let Some(item) = state.ready.pop_front() {
                // Nothing follows the exit event or an error.
                if matches!(item, Ok(ExecEvent::Exit(_)) | Err(_)) {
                    state.body = None;
                    state.ready.clear();
                }
                return Some((item, state));
            }
            let body = state.body.as_mut()?;
            let events = match body.next().await {
                Some(Ok(chunk)) => state.parser.push(&chunk),
                Some(Err(error)) => {
                    state.body = None;
                    return Some((Err(error), state));
                }
                None => {
                    state.body = None;
                    let last = state.parser.finish();
                    let mut events: Vec<SseEvent> = last.into_iter().collect();
                    let ended = events
                        .iter()
                        .any(|event| event.event == "exit" || event.event == "error");
                    for event in events.drain(..) {
                        push_event(&mut state.ready, &event);
                    }
                    if !ended {
                        state.ready.push_back(Err(ClientError::Decode(
                            "the exec stream ended before the process's exit status".to_owned(),
                        )));
                    }
                    continue;
                }
            };
            for event in &events {
                push_event(&mut state.ready, event);
            }
        }
    })
    .boxed()
}

fn push_event(ready: &mut std::collections::VecDeque<Result<ExecEvent, ClientError>>, event: &SseEvent) {
    match ExecEvent::from_sse(event) {
        Ok(Some(event)) => ready.push_back(Ok(event)),
        Ok(None) => {}
        Err(error) => ready.push_back(Err(error)),
    }
}

/// Parses a body of newline-delimited JSON into values; blank lines are skipped.
pub fn json_lines<T: serde::de::DeserializeOwned + Send + 'static>(
    body: ByteStream,
) -> BoxStream<'static, Result<T, ClientError>> {
    struct State {
        body: Option<ByteStream>,
        buffer: Vec<u8>,
    }
    fn take_line(buffer: &mut Vec<u8>, at_end: bool) -> Option<Vec<u8>> {
        if let Some(end) = buffer.iter().position(|&byte| byte == b'\n') {
            let mut line: Vec<u8> = buffer.drain(..=end).collect();
            line.pop();
            return Some(line);
        }
        (at_end && !buffer.is_empty()).then(|| std::mem::take(buffer))
    }
    let state = State {
        body: Some(body),
        buffer: Vec::new(),
    };
    stream::unfold(state, |mut state| async move {
        loop {
            let at_end = state.body.is_none();
            if let Some(line) = take_line(&mut state.buffer, at_end) {
                let text = String::from_utf8_lossy(&line);
                if text.trim().is_empty() {
                    continue;
                }
                let item = serde_json::from_str(text.trim())
                    .map_err(|error| ClientError::Decode(format!("a streamed line is not as expected: {error}")));
                return Some((item, state));
            }
            let body = state.body.as_mut()?;
            match body.next().await {
                Some(Ok(chunk)) => state.buffer.extend_from_slice(&chunk),
                Some(Err(error)) => {
                    state.body = None;
                    state.buffer.clear();
                    return Some((Err(error), state));
                }
                None => state.body = None,
            }
        }
    })
    .boxed()
}

/// `…/v1/sandboxes/{id}/<segments…>`, each segment percent-encoded.
pub(crate) fn sandbox_path(base: &Url, id: &str, segments: &[&str]) -> Url {
    let mut all = vec!["v1", "sandboxes", id];
    all.extend_from_slice(segments);
    join_segments(base, &all)
}

/// `…/files[/action]?path=…[&mode=0644]`.
fn files_url(base: &Url, id: &str, action: Option<&str>, path: &str, mode: Option<u32>) -> Url {
    let mut url = match action {
        None => sandbox_path(base, id, &["files"]),
        Some(action) => sandbox_path(base, id, &["files", action]),
    };
    {
        let mut pairs = url.query_pairs_mut();
        pairs.append_pair("path", path);
        if let Some(mode) = mode {
            pairs.append_pair("mode", &format!("{:04o}", mode & 0o7777));
        }
    }
    url
}

fn logs_url(base: &Url, id: &str, query: &LogsQuery) -> Url {
    let mut url = sandbox_path(base, id, &["logs"]);
    {
        let mut pairs = url.query_pairs_mut();
        if query.follow {
            pairs.append_pair("follow", "true");
        }
        if let Some(tail) = query.tail {
            pairs.append_pair("tail", &tail.to_string());
        }
        if let Some(since) = &query.since {
            pairs.append_pair("since", since);
        }
        if query.timestamps {
            pairs.append_pair("timestamps", "true");
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    url
}

fn stats_url(base: &Url, id: &str, stream: bool) -> Url {
    let mut url = sandbox_path(base, id, &["stats"]);
    if stream {
        url.query_pairs_mut().append_pair("stream", "true");
    }
    url
}

#[cfg(test)]
mod tests {
    use berth_api::{Problem, ProblemKind};
    use futures::TryStreamExt;

    use super::*;
    use crate::parse_base_url;

    fn base() -> Url {
        parse_base_url("http://127.0.0.1:8080/pre").unwrap()
    }

    fn body(chunks: &[&[u8]]) -> ByteStream {
        let chunks: Vec<Result<Bytes, ClientError>> = chunks.iter().map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        stream::iter(chunks).boxed()
    }

    #[test]
    fn urls_for_work_inside_a_sandbox() {
        let base = base();
        assert_eq!(
            sandbox_path(&base, "abc", &["exec"]).as_str(),
            "http://127.0.0.1:8080/pre/v1/sandboxes/abc/exec"
        );
        assert_eq!(
            sandbox_path(&base, "abc", &["processes", "p/1", "signal"]).as_str(),
            "http://127.0.0.1:8080/pre/v1/sandboxes/abc/processes/p%2F1/signal"
        );
        assert_eq!(
            files_url(&base, "abc", None, "/tmp/a b&c=d", Some(0o100644)).as_str(),
            "http://127.0.0.1:8080/pre/v1/sandboxes/abc/files?path=%2Ftmp%2Fa+b%26c%3Dd&mode=0644"
        );
        assert_eq!(
            files_url(&base, "abc", Some("stat"), "/", None).as_str(),
            "http://127.0.0.1:8080/pre/v1/sandboxes/abc/files/stat?path=%2F"
        );
        assert_eq!(
            files_url(&base, "abc", Some("list"), "/etc", None).as_str(),
            "http://127.0.0.1:8080/pre/v1/sandboxes/abc/files/list?path=%2Fetc"
        );
        assert_eq!(
            stats_url(&base, "abc", false).as_str(),
            "http://127.0.0.1:8080/pre/v1/sandboxes/abc/stats"
        );
        assert_eq!(
            stats_url(&base, "abc", true).as_str(),
            "http://127.0.0.1:8080/pre/v1/sandboxes/abc/stats?stream=true"
        );
    }

    #[test]
    fn logs_urls_carry_only_what_was_asked() {
        assert_eq!(
            logs_url(&base(), "abc", &LogsQuery::default()).as_str(),
            "http://127.0.0.1:8080/pre/v1/sandboxes/abc/logs"
        );
        let query = LogsQuery {
            follow: true,
            tail: Some(100),
            since: Some("2025-01-02T03:04:05Z".into()),
            timestamps: true,
        };
        assert_eq!(
            logs_url(&base(), "abc", &query).as_str(),
            "http://127.0.0.1:8080/pre/v1/sandboxes/abc/logs?follow=true&tail=100&since=2025-01-02T03%3A04%3A05Z&timestamps=true"
        );
    }

    #[test]
    fn download_kinds_follow_the_content_type() {
        assert_eq!(download_kind(Some("application/x-tar")), DownloadKind::Tar);
        assert_eq!(
            download_kind(Some("Application/X-Tar; charset=binary")),
            DownloadKind::Tar
        );
        assert_eq!(download_kind(Some("application/octet-stream")), DownloadKind::File);
        assert_eq!(download_kind(None), DownloadKind::File);
    }

    #[tokio::test]
    async fn exec_events_from_split_chunks() {
        let exit = r#"{"exit_code":7,"duration_ms":12,"timed_out":false}"#;
        let text = format!(
            "event: stdout\ndata: \"out \\u00e9\\n\"\n\n: ping\n\nevent: stderr\ndata: \"err\"\n\nevent: exit\ndata: {exit}\n\nevent: stdout\ndata: \"after\"\n\n"
        );
        let bytes = text.as_bytes();
        // Cut inside a field name, inside the `é` escape and between the two newlines.
        let chunks: Vec<&[u8]> = vec![&bytes[..9], &bytes[9..30], &bytes[30..31], &bytes[31..]];
        let events: Vec<ExecEvent> = exec_events(body(&chunks)).try_collect().await.unwrap();
        assert_eq!(
            events,
            [
                ExecEvent::Stdout("out é\n".into()),
                ExecEvent::Stderr("err".into()),
                ExecEvent::Exit(ExecExit {
                    exit_code: 7,
                    duration_ms: 12,
                    timed_out: false
                }),
            ]
        );
    }

    #[tokio::test]
    async fn an_exec_stream_without_an_exit_event_is_an_error() {
        let mut events = exec_events(body(&[b"event: stdout\ndata: \"x\"\n\n"]));
        assert_eq!(events.next().await.unwrap().unwrap(), ExecEvent::Stdout("x".into()));
        let error = events.next().await.unwrap().unwrap_err();
        assert!(error.to_string().contains("ended before"), "{error}");
        assert!(events.next().await.is_none());
    }

    #[tokio::test]
    async fn an_exit_event_without_a_final_blank_line_still_counts() {
        let events: Vec<ExecEvent> = exec_events(body(&[
            b"event: exit\ndata: {\"exit_code\":0,\"duration_ms\":1,\"timed_out\":true}",
        ]))
        .try_collect()
        .await
        .unwrap();
        assert!(matches!(&events[..], [ExecEvent::Exit(exit)] if exit.timed_out));
    }

    #[tokio::test]
    async fn bad_event_data_and_error_events_are_errors() {
        let mut events = exec_events(body(&[b"event: stdout\ndata: not json\n\n"]));
        assert!(matches!(events.next().await, Some(Err(ClientError::Decode(_)))));
        assert!(events.next().await.is_none());

        let problem = serde_json::to_string(&Problem::new(ProblemKind::NotFound, "gone")).unwrap();
        let text = format!("event: error\ndata: {problem}\n\n");
        let mut events = exec_events(body(&[text.as_bytes()]));
        let error = events.next().await.unwrap().unwrap_err();
        assert_eq!(error.to_string(), "gone");
        assert!(events.next().await.is_none());
    }

    #[tokio::test]
    async fn json_lines_across_chunks() {
        let lines: Vec<serde_json::Value> = json_lines(body(&[b"{\"a\":", b"1}\n\n{\"a\"", b":2}\n{\"a\":3}"]))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(
            lines,
            [
                serde_json::json!({"a": 1}),
                serde_json::json!({"a": 2}),
                serde_json::json!({"a": 3})
            ]
        );
        let mut bad = json_lines::<serde_json::Value>(body(&[b"{\"a\":1}\nnope\n"]));
        assert!(bad.next().await.unwrap().is_ok());
        assert!(matches!(bad.next().await, Some(Err(ClientError::Decode(_)))));
    }

    #[test]
    fn process_lists_decode_plain_or_wrapped() {
        let view = r#"{"id":"p1","cmd":["sleep","1"],"running":true,"exit_code":null,"started_at":"2025-01-01T00:00:00Z","ended_at":null}"#;
        for text in [format!("[{view}]"), format!("{{\"items\":[{view}]}}")] {
            let list: ProcessList = serde_json::from_str(&text).unwrap();
            let (ProcessList::Plain(items) | ProcessList::Wrapped { items }) = list;
            assert_eq!(items.len(), 1);
            assert_eq!(items[0].id, "p1");
        }
    }

    /// Accepts one request, answers 204, and returns the raw request (head and body).
    async fn capture_one_request(listener: tokio::net::TcpListener) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length: "))
                    .map_or(0, |value| value.trim().parse().unwrap());
                if request.len() >= end + 4 + length {
                    break;
                }
            }
            let read = socket.read(&mut buffer).await.unwrap();
            assert!(read > 0, "request ended early");
            request.extend_from_slice(&buffer[..read]);
        }
        socket
            .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8_lossy(&request).into_owned()
    }

    #[tokio::test]
    async fn a_streamed_upload_carries_its_content_length_and_mode() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(capture_one_request(listener));
        let client = BerthClient::new(&format!("http://{address}")).unwrap();
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            vec![Ok(Bytes::from_static(b"hello ")), Ok(Bytes::from_static(b"world"))];
        let body = reqwest::Body::wrap_stream(stream::iter(chunks));
        client
            .upload_file("abc", "/tmp/f", Some(0o600), Some(11), body)
            .await
            .unwrap();
        let request = server.await.unwrap();
        assert!(
            request.starts_with("PUT /v1/sandboxes/abc/files?path=%2Ftmp%2Ff&mode=0600 HTTP/1.1\r\n"),
            "{request}"
        );
        let lower = request.to_ascii_lowercase();
        assert!(lower.contains("\r\ncontent-length: 11\r\n"), "{request}");
        assert!(!lower.contains("transfer-encoding"), "{request}");
        assert!(request.ends_with("\r\n\r\nhello world"), "{request}");
    }
}
