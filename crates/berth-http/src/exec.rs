//! Exec routes: one-shot (`POST …/exec`, JSON or server-sent events), interactive over a
//! WebSocket (`GET …/exec/ws`), and background processes (`detach`, `…/processes`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use berth_api::work::StdinEof;
use berth_api::{
    ExecRequest, ExecResult, Problem, ProblemKind, ProcessOutput, ProcessView, ResizeMessage, SignalRequest,
};
use berth_runtime::OutputChunk;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio_stream::wrappers::ReceiverStream;
use tracing::debug;

use crate::error::ApiError;
use crate::json::ApiJson;
use crate::sandboxes::{QueryParams, parse_bool};
use berth_control::output::Utf8Decoder;
use berth_control::service::{NotFoundKind, SandboxService, ServiceError};
use berth_work::exec::{self, ExecEvent, Interactive};

const EXEC_DESCRIPTION: &str = "Runs a command in a `Running` sandbox (409 when it is paused or has ended) and \
answers its exit code and output (each stream capped at the server's `--exec-output-limit`, `truncated` when cut). \
The exit code is the engine's: a program that cannot be run gives 126/127 with the reason on stderr.\n\n\
With `Accept: text/event-stream` the output streams as it comes: `event: stdout` / `event: stderr` with a JSON \
string as `data`, then one `event: exit` with an `ExecExit`.\n\n\
`timeout` (`\"30s\"` or integer seconds) kills the process and its children when it passes (`timed_out: true`, \
exit code 137). `detach: true` starts it in the background and answers 202 with a `ProcessView` at once. A \
timeout, `detach` and signals need `/bin/sh` (with its `kill` builtin) in the image: berth starts the command \
through it to learn its pid, and answers 422 when it is missing. A streamed exec whose client goes away is killed \
when it has a timeout; a one-shot exec without one runs to its end.";

const WS_DESCRIPTION: &str = "An interactive exec over a WebSocket (HTTP/1.1 upgrade or HTTP/2 extended CONNECT). \
Query: `cmd` (repeat for each argument), `tty` (default false), `workdir`, `user`, `env=K=V` (repeat). Client → \
server: binary frames are stdin; text frames `{\"resize\":{\"cols\":80,\"rows\":24}}` resize the terminal, \
`{\"eof\":true}` closes stdin. Server → client: binary frames are the output (stdout and stderr together), then \
one text frame with an `ExecExit` and a close. Closing the socket kills the process (and its children) when the \
image has `/bin/sh`; otherwise it only closes its stdin.";

/// Run a command: one-shot JSON, streamed events, or detached.
#[utoipa::path(
    post,
    path = "/v1/sandboxes/{id}/exec",
    tag = "exec",
    description = EXEC_DESCRIPTION,
    params(
        ("id" = String, Path, description = "Sandbox id"),
        ("Accept" = Option<String>, Header, description = "`text/event-stream` streams the output as server-sent events"),
    ),
    request_body = ExecRequest,
    responses(
        (status = 200, description = "The process ended (or, streamed, is running)", content(
            (ExecResult = "application/json"),
            (String = "text/event-stream"),
        )),
        (status = 202, description = "`detach: true`: running in the background", body = ProcessView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The sandbox is not running (paused, ended, …)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid values, or the image lacks `/bin/sh` for a timeout or detach", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn exec(
    State(service): State<Arc<SandboxService>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<ExecRequest>,
) -> Result<Response, ApiError> {
    if request.detach {
        let process = exec::detach(&service, &id, &request).await?;
        let mut response = (StatusCode::ACCEPTED, Json(process.clone())).into_response();
        if let Ok(location) = HeaderValue::from_str(&format!("/v1/sandboxes/{id}/processes/{}", process.id)) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        return Ok(response);
    }
    if wants_event_stream(&headers) {
        let events = exec::stream(&service, &id, &request).await?;
        return Ok(exec_events(events).into_response());
    }
    let result: ExecResult = exec::run(&service, &id, &request).await?;
    Ok(Json(result).into_response())
}

/// Whether the client asked for server-sent events.
pub fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|kind| kind.split(';').next().unwrap_or_default().trim() == "text/event-stream")
}

/// One SSE event carrying text as a JSON string.
pub fn text_event(name: &str, text: &str) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(text).unwrap_or_default())
}

fn exec_events(
    events: tokio::sync::mpsc::Receiver<ExecEvent>,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let mut stdout = Utf8Decoder::default();
    let mut stderr = Utf8Decoder::default();
    let stream = ReceiverStream::new(events).flat_map(move |event| {
        let mut out = Vec::new();
        let mut push = |name: &str, text: String| {
            if !text.is_empty() {
                out.push(text_event(name, &text));
            }
        };
        match event {
            ExecEvent::Output(OutputChunk::Stdout(bytes)) => push("stdout", stdout.decode(&bytes)),
            ExecEvent::Output(OutputChunk::Stderr(bytes)) => push("stderr", stderr.decode(&bytes)),
            ExecEvent::Exit(exit) => {
                push("stdout", stdout.finish());
                push("stderr", stderr.finish());
                out.push(
                    Event::default()
                        .event("exit")
                        .data(serde_json::to_string(&exit).unwrap_or_default()),
                );
            }
        }
        futures::stream::iter(out.into_iter().map(Ok))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Interactive exec over a WebSocket.
#[utoipa::path(
    get,
    path = "/v1/sandboxes/{id}/exec/ws",
    tag = "exec",
    description = WS_DESCRIPTION,
    params(
        ("id" = String, Path, description = "Sandbox id"),
        ("cmd" = Vec<String>, Query, description = "The argv, one `cmd` per argument"),
        ("tty" = Option<bool>, Query, description = "Allocate a terminal (default false)"),
        ("workdir" = Option<String>, Query, description = "Absolute working directory"),
        ("user" = Option<String>, Query, description = "`name`, `uid`, `name:group` or `uid:gid`"),
        ("env" = Option<Vec<String>>, Query, description = "`K=V`; repeat for several"),
        ("cols" = Option<u16>, Query, description = "Initial terminal width (with `rows` and `tty=true`)"),
        ("rows" = Option<u16>, Query, description = "Initial terminal height (with `cols` and `tty=true`)"),
    ),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket request, or a malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn exec_ws(
    State(service): State<Arc<SandboxService>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(
        query.as_deref(),
        &["cmd", "tty", "workdir", "user", "env", "cols", "rows"],
    )?;
    let initial_size = match (params.single("cols"), params.single("rows")) {
        (None, None) => None,
        (Some(cols), Some(rows)) => Some((parse_dimension("cols", cols)?, parse_dimension("rows", rows)?)),
        _ => {
            return Err(ApiError::field(
                ProblemKind::Validation,
                "cols",
                "give both `cols` and `rows`, or neither",
            ));
        }
    };
    let cmd: Vec<String> = params.all("cmd").map(str::to_owned).collect();
    let tty = match params.single("tty") {
        None => false,
        Some(value) => parse_bool("tty", value)?,
    };
    let mut env = BTreeMap::new();
    for pair in params.all("env") {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| ApiError::field(ProblemKind::Validation, "env", format!("`{pair}` must be K=V")))?;
        env.insert(key.to_owned(), value.to_owned());
    }
    let spec = exec::exec_spec(&cmd, &env, params.single("workdir"), params.single("user"), tty, true)?;
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::new(
            ProblemKind::InvalidBody,
            format!("this route speaks WebSocket only: {rejection}"),
        )
    })?;
    let session = exec::interactive(&service, &id, &spec, initial_size).await?;
    // A browser that sent its key as a `berth.bearer.<key>` subprotocol offers `berth` beside it
    // and needs it chosen, or it drops the connection.
    Ok(upgrade
        .protocols(["berth"])
        .on_upgrade(move |socket| ws_session(socket, session))
        .into_response())
}

/// A text frame from the client.
#[derive(Deserialize)]
#[serde(untagged)]
enum ClientFrame {
    Resize(ResizeMessage),
    Eof(StdinEof),
}

async fn ws_session(socket: WebSocket, session: Interactive) {
    let (mut to_client, mut from_client) = socket.split();
    let Interactive {
        mut output,
        input,
        control,
    } = session;
    let (gone_tx, mut gone) = tokio::sync::oneshot::channel::<()>();
    // Client → process, in its own task so a process that does not read its stdin never stalls
    // its output.
    let input = tokio::spawn(async move {
        let mut input = input;
        while let Some(message) = from_client.next().await {
            match message {
                Ok(Message::Binary(bytes)) => input.write(&bytes).await,
                Ok(Message::Text(text)) => match serde_json::from_str::<ClientFrame>(text.as_str()) {
                    Ok(ClientFrame::Resize(ResizeMessage { resize })) => input.resize(resize.cols, resize.rows).await,
                    Ok(ClientFrame::Eof(StdinEof { eof: true })) => input.close_stdin().await,
                    Ok(ClientFrame::Eof(_)) => {}
                    Err(error) => debug!(exec = %input.exec_id(), %error, "ignored an unknown text frame"),
                },
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = gone_tx.send(());
    });

    let mut client_gone = false;
    loop {
        tokio::select! {
            item = output.next() => match item {
                Some(Ok(OutputChunk::Stdout(bytes) | OutputChunk::Stderr(bytes))) => {
                    if to_client.send(Message::Binary(bytes)).await.is_err() {
                        client_gone = true;
                        break;
                    }
                }
                Some(Err(error)) => {
                    debug!(exec = %control.exec_id(), %error, "exec output ended with an error");
                    break;
                }
                None => break,
            },
            _ = &mut gone => {
                client_gone = true;
                break;
            }
        }
    }
    drop(output);
    if client_gone {
        input.abort();
        control.abandon().await;
        return;
    }
    let exit = control.finish().await;
    let _ = to_client
        .send(Message::Text(serde_json::to_string(&exit).unwrap_or_default().into()))
        .await;
    let _ = to_client
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "process exited".into(),
        })))
        .await;
    input.abort();
}

/// Background processes of a sandbox, oldest first.
#[utoipa::path(
    get,
    path = "/v1/sandboxes/{id}/processes",
    tag = "exec",
    params(("id" = String, Path, description = "Sandbox id")),
    responses(
        (status = 200, body = Vec<ProcessView>),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_processes(
    State(service): State<Arc<SandboxService>>,
    Path(id): Path<String>,
) -> Result<Json<Vec<ProcessView>>, ApiError> {
    let sandbox = service.get(&id)?;
    Ok(Json(
        service
            .processes()
            .list(&sandbox.id)
            .iter()
            .map(|process| process.view())
            .collect(),
    ))
}

fn process(
    service: &SandboxService,
    id: &str,
    process_id: &str,
) -> Result<Arc<berth_control::processes::Process>, ServiceError> {
    let sandbox = service.get(id)?;
    service.processes().get(&sandbox.id, process_id).ok_or_else(|| {
        ServiceError::not_found(
            NotFoundKind::Process,
            format!("sandbox {id} has no background process `{process_id}`"),
        )
    })
}

/// One background process: running, or its exit code.
#[utoipa::path(
    get,
    path = "/v1/sandboxes/{id}/processes/{pid}",
    tag = "exec",
    params(
        ("id" = String, Path, description = "Sandbox id"),
        ("pid" = String, Path, description = "Process id from the detach answer"),
    ),
    responses(
        (status = 200, body = ProcessView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_process(
    State(service): State<Arc<SandboxService>>,
    Path((id, pid)): Path<(String, String)>,
) -> Result<Json<ProcessView>, ApiError> {
    Ok(Json(process(&service, &id, &pid)?.view()))
}

/// A background process's output so far (the newest bytes of each stream, capped).
#[utoipa::path(
    get,
    path = "/v1/sandboxes/{id}/processes/{pid}/output",
    tag = "exec",
    params(
        ("id" = String, Path, description = "Sandbox id"),
        ("pid" = String, Path, description = "Process id"),
    ),
    responses(
        (status = 200, body = ProcessOutput),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn process_output(
    State(service): State<Arc<SandboxService>>,
    Path((id, pid)): Path<(String, String)>,
) -> Result<Json<ProcessOutput>, ApiError> {
    Ok(Json(process(&service, &id, &pid)?.output()))
}

/// Send a signal to a background process (and the children it started).
#[utoipa::path(
    post,
    path = "/v1/sandboxes/{id}/processes/{pid}/signal",
    tag = "exec",
    description = "Delivered with `kill` through `/bin/sh` in the sandbox, to the process's process group.",
    params(
        ("id" = String, Path, description = "Sandbox id"),
        ("pid" = String, Path, description = "Process id"),
    ),
    request_body = SignalRequest,
    responses(
        (status = 200, description = "Sent; the process as it is now", body = ProcessView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The process has ended, or the sandbox is not running", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a signal berth sends", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn signal_process(
    State(service): State<Arc<SandboxService>>,
    Path((id, pid)): Path<(String, String)>,
    ApiJson(request): ApiJson<SignalRequest>,
) -> Result<Json<ProcessView>, ApiError> {
    Ok(Json(exec::signal_process(&service, &id, &pid, &request.signal).await?))
}

fn parse_dimension(field: &str, value: &str) -> Result<u16, ApiError> {
    value.parse::<u16>().ok().filter(|size| *size > 0).ok_or_else(|| {
        ApiError::field(
            ProblemKind::Validation,
            field,
            format!("`{value}` must be a number from 1 to 65535"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_stream_is_negotiated_from_accept() {
        let mut headers = HeaderMap::new();
        assert!(!wants_event_stream(&headers));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!wants_event_stream(&headers));
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream;q=0.9"),
        );
        assert!(wants_event_stream(&headers));
    }

    #[test]
    fn client_text_frames_are_resize_or_eof() {
        assert!(matches!(
            serde_json::from_str::<ClientFrame>(r#"{"resize":{"cols":100,"rows":30}}"#),
            Ok(ClientFrame::Resize(ResizeMessage { resize })) if resize.cols == 100 && resize.rows == 30
        ));
        assert!(matches!(
            serde_json::from_str::<ClientFrame>(r#"{"eof":true}"#),
            Ok(ClientFrame::Eof(StdinEof { eof: true }))
        ));
        assert!(serde_json::from_str::<ClientFrame>(r#"{"bogus":1}"#).is_err());
    }
}
