//! The JSON body extractor: content type, size limit and strict decoding, each failure a 4xx
//! problem that names the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use berth_api::{MAX_BODY_BYTES, ProblemKind};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Request fields that ask for host access; refused with a reason rather than "unknown field".
const HOST_ACCESS_FIELDS: &[&str] = &[
    "mounts",
    "volumes",
    "binds",
    "devices",
    "privileged",
    "network_mode",
    "pid_mode",
    "ipc_mode",
    "cap_add",
    "security_opt",
    "host_config",
];

/// Like `axum::Json`, with problem+json rejections that name the offending field.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(ApiError::new(
                ProblemKind::UnsupportedMediaType,
                format!("the body must be JSON: send `Content-Type: application/json` (got `{content_type}`)"),
            ));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    ProblemKind::BodyTooLarge,
                    format!("the body is larger than {MAX_BODY_BYTES} bytes (1 MiB)"),
                )
            } else {
                ApiError::new(
                    ProblemKind::InvalidBody,
                    format!("the body could not be read: {rejection}"),
                )
            }
        })?;
        decode(&bytes).map(ApiJson)
    }
}

/// Decodes strictly, reporting the JSON path of the first bad field.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                ApiError::new(ProblemKind::InvalidBody, format!("the body is not valid JSON: {inner}"))
            }
            _ => field_error(&path, &inner),
        }
    })?;
    deserializer
        .end()
        .map_err(|error| ApiError::new(ProblemKind::InvalidBody, format!("the body is not valid JSON: {error}")))?;
    Ok(value)
}

fn field_error(path: &str, error: &serde_json::Error) -> ApiError {
    let message = error.to_string();
    let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
    if let Some(unknown) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
    {
        let field = if path == "." {
            unknown.to_owned()
        } else {
            path.to_owned() // serde_path_to_error already ends the path with the field
        };
        if HOST_ACCESS_FIELDS.contains(&unknown) {
            return ApiError::field(
                ProblemKind::InvalidBody,
                &field,
                "berth sandboxes never get host mounts, devices, privileges or host namespaces; remove this field",
            );
        }
        let expected = message
            .split_once(", expected ")
            .map(|(_, rest)| rest)
            .unwrap_or("a documented field");
        return ApiError::field(
            ProblemKind::InvalidBody,
            &field,
            format!("unknown field; expected {expected}"),
        );
    }
    let field = if path == "." {
        "body".to_owned()
    } else {
        path.to_owned()
    };
    ApiError::field(ProblemKind::InvalidBody, &field, message)
}
