//! Watching and freezing a sandbox: logs of the main process (streamed text or server-sent
//! events), resource stats (one sample or NDJSON), pause and resume.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use berth_api::{NumberOrString, Problem, ProblemKind, SandboxView, StatsView};
use berth_core::units;
use berth_runtime::{LogOptions, OutputChunk, ResourceStats, RuntimeError};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;

use crate::error::ApiError;
use crate::exec::{text_event, wants_event_stream};
use crate::sandboxes::{QueryParams, parse_bool};
use berth_control::output::Utf8Decoder;
use berth_control::service::{SandboxService, ServiceError};

/// Reads `since`: an RFC 3339 time, or a duration back from now (`10m`, `1h30m`, seconds).
pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    units::parse_duration(&NumberOrString::String(text.to_owned()))
        .ok()
        .and_then(|duration| chrono::Duration::from_std(duration).ok())
        .and_then(|duration| now.checked_sub_signed(duration))
        .ok_or_else(|| {
            ApiError::field(
                ProblemKind::Validation,
                "since",
                format!("`{text}` is neither an RFC 3339 time (2026-01-02T15:04:05Z) nor a duration such as 10m"),
            )
        })
}

fn log_options(query: Option<&str>) -> Result<LogOptions, ApiError> {
    let params = QueryParams::parse(query, &["follow", "tail", "since", "timestamps"])?;
    let flag = |name: &str| params.single(name).map(|value| parse_bool(name, value)).transpose();
    let tail = match params.single("tail") {
        None | Some("all") => None,
        Some(value) => Some(value.parse::<u64>().map_err(|_| {
            ApiError::field(
                ProblemKind::Validation,
                "tail",
                format!("`{value}` must be a number of lines or `all`"),
            )
        })?),
    };
    Ok(LogOptions {
        follow: flag("follow")?.unwrap_or(false),
        tail,
        since: params
            .single("since")
            .map(|since| parse_since(since, Utc::now()))
            .transpose()?,
        timestamps: flag("timestamps")?.unwrap_or(false),
    })
}

/// The main process's output.
#[utoipa::path(
    get,
    path = "/v1/sandboxes/{id}/logs",
    tag = "observe",
    description = "The main process's stdout and stderr, interleaved as they come, streamed as `text/plain` (never \
buffered); with `Accept: text/event-stream`, `event: stdout` / `event: stderr` with a JSON string as `data`. \
`follow=true` keeps the stream open for new output until the client disconnects or the sandbox ends.",
    params(
        ("id" = String, Path, description = "Sandbox id"),
        ("follow" = Option<bool>, Query, description = "Keep streaming new output"),
        ("tail" = Option<String>, Query, description = "Only the last N lines (or `all`, the default)"),
        ("since" = Option<String>, Query, description = "Only output after this RFC 3339 time, or this long ago (`10m`)"),
        ("timestamps" = Option<bool>, Query, description = "Prefix each line with its RFC 3339 time"),
        ("Accept" = Option<String>, Header, description = "`text/event-stream` for server-sent events"),
    ),
    responses(
        (status = 200, content(
            (String = "text/plain"),
            (String = "text/event-stream"),
        )),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn logs(
    State(service): State<Arc<SandboxService>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let options = log_options(query.as_deref())?;
    let output = service.logs(&id, &options).await?;
    if wants_event_stream(&headers) {
        let mut stdout = Utf8Decoder::default();
        let mut stderr = Utf8Decoder::default();
        let events = output
            .take_while(|item| futures::future::ready(item.is_ok()))
            .filter_map(move |item| {
                let event = match item {
                    Ok(OutputChunk::Stdout(bytes)) => Some(("stdout", stdout.decode(&bytes))),
                    Ok(OutputChunk::Stderr(bytes)) => Some(("stderr", stderr.decode(&bytes))),
                    Err(_) => None,
                };
                futures::future::ready(
                    event
                        .filter(|(_, text)| !text.is_empty())
                        .map(|(name, text)| Ok::<_, Infallible>(text_event(name, &text))),
                )
            });
        return Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response());
    }
    let body = output.map(|item| {
        item.map(|chunk| match chunk {
            OutputChunk::Stdout(bytes) | OutputChunk::Stderr(bytes) => bytes,
        })
        .map_err(std::io::Error::other)
    });
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    Ok(response)
}

fn stats_view(stats: ResourceStats) -> StatsView {
    StatsView {
        read_at: stats.read_at,
        cpu_percent: stats.cpu_percent,
        memory_used_bytes: stats.memory_used_bytes,
        memory_limit_bytes: stats.memory_limit_bytes,
        pids: stats.pids,
        network_rx_bytes: stats.network_rx_bytes,
        network_tx_bytes: stats.network_tx_bytes,
        block_read_bytes: stats.block_read_bytes,
        block_write_bytes: stats.block_write_bytes,
    }
}

/// Resource usage: one sample, or a stream of them.
#[utoipa::path(
    get,
    path = "/v1/sandboxes/{id}/stats",
    tag = "observe",
    description = "CPU (percent of one CPU), memory used and limit, pids, network and block I/O. `stream=true` \
answers `application/x-ndjson`: one `StatsView` per line, about every second, until the client disconnects.",
    params(
        ("id" = String, Path, description = "Sandbox id"),
        ("stream" = Option<bool>, Query, description = "Stream a sample about every second"),
    ),
    responses(
        (status = 200, content(
            (StatsView = "application/json"),
            (StatsView = "application/x-ndjson"),
        )),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn stats(
    State(service): State<Arc<SandboxService>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(query.as_deref(), &["stream"])?;
    let stream = params
        .single("stream")
        .map(|value| parse_bool("stream", value))
        .transpose()?
        .unwrap_or(false);
    let mut samples = service.stats(&id, stream).await?;
    if !stream {
        let sample = match samples.next().await {
            Some(Ok(sample)) => sample,
            Some(Err(error)) => return Err(engine(&id, error)),
            None => return Err(engine(&id, RuntimeError::Other("the engine sent no stats".into()))),
        };
        return Ok(Json(stats_view(sample)).into_response());
    }
    let lines = samples.map(|item| {
        item.map(|sample| {
            let mut line = serde_json::to_vec(&stats_view(sample)).unwrap_or_default();
            line.push(b'\n');
            Bytes::from(line)
        })
        .map_err(std::io::Error::other)
    });
    let mut response = Body::from_stream(lines).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    Ok(response)
}

fn engine(id: &str, error: RuntimeError) -> ApiError {
    ApiError::from(ServiceError::Engine {
        error,
        sandbox_id: berth_core::SandboxId::parse(id),
    })
}

/// Freeze every process of a sandbox.
#[utoipa::path(
    post,
    path = "/v1/sandboxes/{id}/pause",
    tag = "sandboxes",
    description = "`Running` → `Paused`; pausing a paused sandbox is a no-op. Exec, files, logs and stats answer \
409 while paused. A paused sandbox still expires on time (it is removed as it is).",
    params(("id" = String, Path, description = "Sandbox id")),
    responses(
        (status = 200, body = SandboxView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The sandbox has ended or is not running", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn pause(
    State(service): State<Arc<SandboxService>>,
    Path(id): Path<String>,
) -> Result<Json<SandboxView>, ApiError> {
    Ok(Json(SandboxView::from(&service.pause(&id).await?)))
}

/// Thaw a paused sandbox.
#[utoipa::path(
    post,
    path = "/v1/sandboxes/{id}/resume",
    tag = "sandboxes",
    description = "`Paused` → `Running`; resuming a running sandbox is a no-op.",
    params(("id" = String, Path, description = "Sandbox id")),
    responses(
        (status = 200, body = SandboxView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The sandbox has ended", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn resume(
    State(service): State<Arc<SandboxService>>,
    Path(id): Path<String>,
) -> Result<Json<SandboxView>, ApiError> {
    Ok(Json(SandboxView::from(&service.resume(&id).await?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_time_or_a_duration_back() {
        let now = DateTime::parse_from_rfc3339("2026-01-02T15:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_since("2026-01-02T14:00:00+01:00", now).unwrap(),
            DateTime::parse_from_rfc3339("2026-01-02T13:00:00Z").unwrap()
        );
        assert_eq!(parse_since("10m", now).unwrap(), now - chrono::Duration::minutes(10));
        assert_eq!(parse_since("90", now).unwrap(), now - chrono::Duration::seconds(90));
        assert!(parse_since("yesterday", now).is_err());
    }

    #[test]
    fn log_options_are_read_from_the_query() {
        let options = log_options(Some("follow=true&tail=100&timestamps=1")).unwrap();
        assert!(options.follow && options.timestamps);
        assert_eq!(options.tail, Some(100));
        assert_eq!(log_options(Some("tail=all")).unwrap().tail, None);
        assert!(log_options(Some("tail=-1")).is_err());
        assert!(log_options(Some("bogus=1")).is_err());
    }
}
