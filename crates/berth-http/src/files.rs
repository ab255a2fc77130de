//! File routes: upload (a raw file or a tar stream), download (a file's bytes or a directory's
//! tar), stat and list. Bodies stream both ways; this is the one route without the 1 MiB limit.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_api::{DirListing, FileStat, Problem, ProblemKind};
use berth_runtime::ByteStream;
use futures::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::ApiError;
use crate::sandboxes::QueryParams;
use berth_control::service::SandboxService;
use berth_work::files::{self, DEFAULT_FILE_MODE, Download};

/// The media type of tar streams.
pub const TAR: &str = "application/x-tar";
/// After an upload was refused part-way (too large, sandbox not running…), at most this much more
/// of the body is read and dropped, so that the client (still sending) reads the answer instead of
/// a reset connection. A client sending more should use `Expect: 100-continue`.
const DRAIN_LIMIT: u64 = 32 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(10);

const UPLOAD_DESCRIPTION: &str = "Writes the body to the file `path` (replacing a file; a directory there is \
refused with 422) with permission bits `mode` (default 0644), owned by root; missing parent directories are \
created (root, 0755). With `Content-Type: application/x-tar` the body is a tar stream extracted into the directory \
`path` (created when missing): every entry is checked first and the whole archive is refused with 400 (nothing \
written) when an entry has an absolute path or a `..` component, a link points outside the directory, or it is a \
device or fifo. The body streams to the engine; without `Content-Length` a raw file is spooled to a temporary file \
first. Larger than the server's `--max-file-size`: 413.";

fn required_path(params: &QueryParams) -> Result<String, ApiError> {
    params.single("path").map(str::to_owned).ok_or_else(|| {
        ApiError::field(
            ProblemKind::Validation,
            "path",
            "is required, e.g. ?path=/work/file.txt",
        )
    })
}

pub(super) fn is_tar(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(TAR))
}

/// Upload a file, or a tar stream into a directory.
#[utoipa::path(
    put,
    path = "/v1/sandboxes/{id}/files",
    tag = "files",
    description = UPLOAD_DESCRIPTION,
    params(
        ("id" = String, Path, description = "Sandbox id"),
        ("path" = String, Query, description = "Absolute path: the file to write, or (tar) the directory to extract into"),
        ("mode" = Option<String>, Query, description = "Octal permission bits of a raw file, e.g. `0755` (default `0644`)"),
    ),
    request_body(content(
        (String = "application/octet-stream"),
        (String = "application/x-tar"),
    )),
    responses(
        (status = 204, description = "Written"),
        (status = 400, description = "An unsafe or malformed tar, or a body shorter than its Content-Length", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Over the server's file size limit", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`path` not absolute, with `..`, or a parent is not a directory", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn upload(
    State(service): State<Arc<SandboxService>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    // First, so that every refusal below still lets the client read its answer.
    let stream = relay(body);
    let params = QueryParams::parse(query.as_deref(), &["path", "mode"])?;
    let path = required_path(&params)?;
    if is_tar(&headers) {
        if params.single("mode").is_some() {
            return Err(ApiError::field(
                ProblemKind::Validation,
                "mode",
                "applies to a raw file; a tar carries each entry's mode",
            ));
        }
        files::upload_archive(&service, &id, &path, stream).await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    let mode = match params.single("mode") {
        None => DEFAULT_FILE_MODE,
        Some(mode) => files::parse_mode(mode)?,
    };
    let length = content_length(&headers)?;
    files::upload_file(&service, &id, &path, mode, stream, length).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The declared body length, if any: streamed bodies are checked against it as they come.
pub(super) fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::CONTENT_LENGTH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| ApiError::new(ProblemKind::InvalidBody, "Content-Length is not a number"))
}

/// Hands the request body on as a stream; once the consumer stops early (the upload was refused),
/// drains what the client still sends, within [`DRAIN_LIMIT`] and [`DRAIN_TIME`].
pub(super) fn relay(body: Body) -> ByteStream {
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(8);
    tokio::spawn(async move {
        let mut data = body.into_data_stream();
        while let Some(item) = data.next().await {
            let failed = item.is_err();
            if sender.send(item.map_err(std::io::Error::other)).await.is_err() {
                break;
            }
            if failed {
                return;
            }
        }
        let drain = async {
            let mut drained = 0u64;
            while let Some(Ok(chunk)) = data.next().await {
                drained += chunk.len() as u64;
                if drained > DRAIN_LIMIT {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
    });
    ReceiverStream::new(receiver).boxed()
}

/// Download a file (its bytes) or a directory (a tar stream).
#[utoipa::path(
    get,
    path = "/v1/sandboxes/{id}/files",
    tag = "files",
    description = "A file answers its bytes (`application/octet-stream`, with `Content-Length`); a directory a tar \
stream (`application/x-tar`) whose entries are named `<directory name>/…`. A symbolic link is followed. Streamed.",
    params(
        ("id" = String, Path, description = "Sandbox id"),
        ("path" = String, Query, description = "Absolute path of a file or directory"),
    ),
    responses(
        (status = 200, content(
            (String = "application/octet-stream"),
            (String = "application/x-tar"),
        )),
        (status = 404, description = "No such sandbox or path", body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn download(
    State(service): State<Arc<SandboxService>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(query.as_deref(), &["path"])?;
    let path = required_path(&params)?;
    let response = match files::download(&service, &id, &path).await? {
        Download::File { size, body } => {
            let mut response = Body::from_stream(body).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            response
        }
        Download::Directory { body } => {
            let body = body.map(|item| item.map_err(std::io::Error::other));
            let mut response = Body::from_stream(body).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(TAR));
            response
        }
    };
    Ok(response)
}

/// Facts about a path (a symbolic link is reported as one).
#[utoipa::path(
    get,
    path = "/v1/sandboxes/{id}/files/stat",
    tag = "files",
    params(
        ("id" = String, Path, description = "Sandbox id"),
        ("path" = String, Query, description = "Absolute path"),
    ),
    responses(
        (status = 200, body = FileStat),
        (status = 404, description = "No such sandbox or path", body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn stat(
    State(service): State<Arc<SandboxService>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<FileStat>, ApiError> {
    let params = QueryParams::parse(query.as_deref(), &["path"])?;
    let path = required_path(&params)?;
    Ok(Json(files::stat(&service, &id, &path).await?))
}

/// The direct children of a directory.
#[utoipa::path(
    get,
    path = "/v1/sandboxes/{id}/files/list",
    tag = "files",
    description = "Read from the headers of the engine's tar stream of the directory: the engine walks the whole \
tree below it, so listing a large tree takes as long as reading it.",
    params(
        ("id" = String, Path, description = "Sandbox id"),
        ("path" = String, Query, description = "Absolute path of a directory"),
    ),
    responses(
        (status = 200, body = DirListing),
        (status = 404, description = "No such sandbox or path", body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a directory", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(service): State<Arc<SandboxService>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<DirListing>, ApiError> {
    let params = QueryParams::parse(query.as_deref(), &["path"])?;
    let path = required_path(&params)?;
    Ok(Json(files::list(&service, &id, &path).await?))
}
