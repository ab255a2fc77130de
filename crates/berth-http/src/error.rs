//! Errors → HTTP: every failure leaves the API as an RFC 9457 problem with a stable `type`;
//! engine and store failures are classified here, never passed through raw.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_api::{PROBLEM_CONTENT_TYPE, Problem, ProblemKind};
use berth_runtime::RuntimeError;
use berth_store::StoreError;
use tracing::error;

use crate::http_metrics::ErrorKind;
use berth_control::service::ServiceError;

/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_SECONDS: &str = "5";

/// A problem on its way to the client (boxed: errors stay small on the happy path).
#[derive(Debug)]
pub struct ApiError(pub Box<Problem>);

impl ApiError {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        ApiError(Box::new(Problem::new(kind, detail)))
    }

    pub fn field(kind: ProblemKind, field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError(Box::new(Problem::new(kind, format!("{field}: {message}")).with_errors(
            vec![berth_api::FieldError {
                field: field.to_owned(),
                message,
            }],
        )))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.0).unwrap_or_default();
        let mut response = (status, body).into_response();
        let kind = self.0.kind.rsplit(':').next().unwrap_or("unknown").to_owned();
        response.extensions_mut().insert(ErrorKind(kind));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
        }
        response
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Validation(errors) => ApiError(Box::new(
                Problem::new(ProblemKind::Validation, format!("invalid sandbox spec: {errors}")).with_errors(errors.0),
            )),
            ServiceError::InvalidRequest(errors) => ApiError(Box::new(
                Problem::new(ProblemKind::Validation, format!("invalid request: {errors}")).with_errors(errors.0),
            )),
            ServiceError::NotFound { detail, .. } => ApiError::new(ProblemKind::NotFound, detail),
            ServiceError::InvalidState(detail) => ApiError::new(ProblemKind::InvalidState, detail),
            ServiceError::Engine { error, sandbox_id } => {
                let mut problem = engine_problem(&error);
                problem.sandbox_id = sandbox_id.map(|id| id.to_string());
                ApiError(Box::new(problem))
            }
            ServiceError::Store(error) => store_error(error),
            ServiceError::QuotaExceeded { owner, exceeded } => quota_exceeded(&owner, &exceeded),
            ServiceError::Unsupported(detail) => ApiError::new(ProblemKind::Validation, detail),
            ServiceError::TooLarge(detail) => ApiError::new(ProblemKind::BodyTooLarge, detail),
            ServiceError::BadBody(detail) => ApiError::new(ProblemKind::InvalidBody, detail),
            ServiceError::Unavailable(detail) => ApiError::new(ProblemKind::EngineUnavailable, detail),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        store_error(error)
    }
}

fn engine_problem(error: &RuntimeError) -> Problem {
    let kind = match error {
        RuntimeError::ImageNotFound { .. } => ProblemKind::ImageNotFound,
        RuntimeError::Unavailable { .. } => ProblemKind::EngineUnavailable,
        RuntimeError::Timeout(_) => ProblemKind::EngineTimeout,
        RuntimeError::Invalid(_) => ProblemKind::Validation,
        RuntimeError::NotFound(_) | RuntimeError::Conflict(_) => ProblemKind::Conflict,
        RuntimeError::Other(_) => {
            error!(%error, "unclassified engine error");
            ProblemKind::Internal
        }
    };
    Problem::new(kind, error.to_string())
}

/// The 429 of a refused create, naming the quota, its limit, the use and the ask in the units
/// a user sets them in.
fn quota_exceeded(owner: &str, exceeded: &berth_core::QuotaExceeded) -> ApiError {
    use berth_core::identity::QuotaKind;
    use berth_core::units::{format_cpu, format_memory};
    let show = |value: u64| match exceeded.kind {
        QuotaKind::Sandboxes => value.to_string(),
        QuotaKind::Cpu => format_cpu(value),
        QuotaKind::Memory => format_memory(value),
    };
    ApiError::new(
        ProblemKind::QuotaExceeded,
        format!(
            "owner `{owner}` would exceed its `{}` quota: limit {}, in use {}, this request asks for {}; \
             delete sandboxes or ask an admin to raise it (berth quota set)",
            exceeded.kind.as_str(),
            show(exceeded.limit),
            show(exceeded.used),
            show(exceeded.asked)
        ),
    )
}

fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::QuotaExceeded(exceeded) => quota_exceeded("?", &exceeded),
        StoreError::Unavailable(detail) => ApiError::new(
            ProblemKind::StoreUnavailable,
            format!("the store is unavailable: {detail}"),
        ),
        other => {
            error!(error = %other, "store error");
            ApiError::new(ProblemKind::Internal, format!("store error: {other}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use berth_control::service::NotFoundKind;

    use super::*;

    #[test]
    fn whatever_is_not_found_is_a_404_with_the_services_words() {
        let ApiError(sandbox) = ApiError::from(ServiceError::sandbox_not_found("0123456789abcdef"));
        assert_eq!(sandbox.status, 404);
        assert_eq!(sandbox.detail, "no sandbox with id `0123456789abcdef`");
        let ApiError(process) = ApiError::from(ServiceError::not_found(
            NotFoundKind::Process,
            "sandbox x has no background process `7`".into(),
        ));
        assert_eq!(
            (process.status, process.kind.clone(), process.detail.as_str()),
            (404, sandbox.kind.clone(), "sandbox x has no background process `7`")
        );
    }
}
