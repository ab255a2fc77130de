//! AEnvironment's answers: `{success, code, message, data}` with HTTP 200 on success, and on
//! failure the HTTP status as `code` with the text in `message` — berth's own errors (problems)
//! translated, field names included, never a 500 for what is the client's mistake.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_api::FieldError;
use berth_api::aenv::Envelope;
use serde::Serialize;

use berth_control::service::ServiceError;
use berth_http::error::ApiError;
use berth_http::http_metrics::ErrorKind;

/// A successful answer: HTTP 200, `success: true`, `code: 0`, `data`.
pub struct Success<T>(pub T);

impl<T: Serialize> IntoResponse for Success<T> {
    fn into_response(self) -> Response {
        (StatusCode::OK, Json(Envelope::ok(self.0))).into_response()
    }
}

/// A failed answer: HTTP status = `code`, `success: false`, the text in `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AenvError {
    pub status: StatusCode,
    pub message: String,
    /// What the HTTP metrics count it as (the v1 API's problem kinds).
    kind: String,
}

pub type AenvResult<T> = Result<Success<T>, AenvError>;

impl AenvError {
    fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> Self {
        AenvError {
            status,
            message: message.into(),
            kind: kind.to_owned(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        AenvError::new(StatusCode::BAD_REQUEST, "validation", message)
    }

    /// Bad values, each named by its field, in one message.
    pub fn invalid_fields(errors: &[FieldError]) -> Self {
        let listed: Vec<String> = errors
            .iter()
            .map(|error| format!("{}: {}", error.field, error.message))
            .collect();
        AenvError::bad_request(format!("Invalid request parameters: {}", listed.join("; ")))
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        AenvError::new(StatusCode::NOT_FOUND, "not-found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        AenvError::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        AenvError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_implemented(message: impl Into<String>) -> Self {
        AenvError::new(StatusCode::NOT_IMPLEMENTED, "not-implemented", message)
    }
}

impl IntoResponse for AenvError {
    fn into_response(self) -> Response {
        let envelope = Envelope::<()>::error(self.status.as_u16(), self.message);
        let mut response = (self.status, Json(envelope)).into_response();
        response.extensions_mut().insert(ErrorKind(self.kind));
        response
    }
}

/// berth's classification of the failure, kept (an unavailable engine stays a 503); invalid
/// values become AEnvironment's 400 `Invalid request parameters`, naming each field.
impl From<ServiceError> for AenvError {
    fn from(error: ServiceError) -> Self {
        if let ServiceError::Validation(errors) | ServiceError::InvalidRequest(errors) = &error {
            return AenvError::invalid_fields(&errors.0);
        }
        let ApiError(problem) = ApiError::from(error);
        let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let kind = problem.kind.rsplit(':').next().unwrap_or("unknown");
        AenvError::new(status, kind, problem.detail.clone())
    }
}

#[cfg(test)]
mod tests {
    use berth_core::ValidationErrors;

    use super::*;

    async fn body_of(response: Response) -> (StatusCode, serde_json::Value) {
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn success_is_http_200_with_code_0() {
        let (status, body) = body_of(Success(vec!["a"]).into_response()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            serde_json::json!({"success": true, "code": 0, "message": "", "data": ["a"]})
        );
    }

    #[tokio::test]
    async fn errors_put_the_status_in_code_and_the_text_in_message() {
        let (status, body) = body_of(AenvError::not_found("Environment not found").into_response()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            body,
            serde_json::json!({"success": false, "code": 404, "message": "Environment not found", "data": null})
        );
    }

    #[test]
    fn service_errors_keep_their_class_and_name_their_fields() {
        let invalid = AenvError::from(ServiceError::Validation(ValidationErrors(vec![
            FieldError {
                field: "ttl".into(),
                message: "`1d` is not a duration".into(),
            },
            FieldError {
                field: "owner".into(),
                message: "bad".into(),
            },
        ])));
        assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            invalid.message,
            "Invalid request parameters: ttl: `1d` is not a duration; owner: bad"
        );
        let missing = AenvError::from(ServiceError::sandbox_not_found("abc"));
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert!(missing.message.contains("abc"), "{}", missing.message);
        let busy = AenvError::from(ServiceError::InvalidState("stopping".into()));
        assert_eq!(busy.status, StatusCode::CONFLICT);
    }
}
