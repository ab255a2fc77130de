//! RFC 9457 problem details: the one error body of the native API, with a stable `type` per kind.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::FieldError;

/// Every kind of error the native API reports. The `type` URIs are stable: clients match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The body is not valid JSON, has unknown fields or wrong types.
    InvalidBody,
    /// A value is well-typed but not acceptable (see `errors`).
    Validation,
    BodyTooLarge,
    UnsupportedMediaType,
    NotFound,
    Conflict,
    /// The requested image is neither on the engine nor pullable.
    ImageNotFound,
    /// The operation needs a sandbox in another status (e.g. renewing an ended one).
    InvalidState,
    EngineUnavailable,
    EngineTimeout,
    StoreUnavailable,
    /// A server inside the sandbox could not be reached through the proxy (502).
    UpstreamUnavailable,
    /// No API key, or one that is unknown, malformed, revoked or expired (401).
    Unauthorized,
    /// The key's role may not do this (403).
    Forbidden,
    /// A create would take its owner past a quota (429).
    QuotaExceeded,
    /// The key sent more requests than its rate allows (429, with `Retry-After`).
    RateLimited,
    Internal,
}

impl ProblemKind {
    pub fn type_uri(self) -> &'static str {
        match self {
            ProblemKind::InvalidBody => "urn:berth:problem:invalid-body",
            ProblemKind::Validation => "urn:berth:problem:validation",
            ProblemKind::BodyTooLarge => "urn:berth:problem:body-too-large",
            ProblemKind::UnsupportedMediaType => "urn:berth:problem:unsupported-media-type",
            ProblemKind::NotFound => "urn:berth:problem:not-found",
            ProblemKind::Conflict => "urn:berth:problem:conflict",
            ProblemKind::ImageNotFound => "urn:berth:problem:image-not-found",
            ProblemKind::InvalidState => "urn:berth:problem:invalid-state",
            ProblemKind::EngineUnavailable => "urn:berth:problem:engine-unavailable",
            ProblemKind::EngineTimeout => "urn:berth:problem:engine-timeout",
            ProblemKind::StoreUnavailable => "urn:berth:problem:store-unavailable",
            ProblemKind::UpstreamUnavailable => "urn:berth:problem:upstream-unavailable",
            ProblemKind::Unauthorized => "urn:berth:problem:unauthorized",
            ProblemKind::Forbidden => "urn:berth:problem:forbidden",
            ProblemKind::QuotaExceeded => "urn:berth:problem:quota-exceeded",
            ProblemKind::RateLimited => "urn:berth:problem:rate-limited",
            ProblemKind::Internal => "urn:berth:problem:internal",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            ProblemKind::InvalidBody => 400,
            ProblemKind::Validation | ProblemKind::ImageNotFound => 422,
            ProblemKind::BodyTooLarge => 413,
            ProblemKind::UnsupportedMediaType => 415,
            ProblemKind::NotFound => 404,
            ProblemKind::Conflict | ProblemKind::InvalidState => 409,
            ProblemKind::EngineUnavailable | ProblemKind::StoreUnavailable => 503,
            ProblemKind::EngineTimeout => 504,
            ProblemKind::UpstreamUnavailable => 502,
            ProblemKind::Unauthorized => 401,
            ProblemKind::Forbidden => 403,
            ProblemKind::QuotaExceeded | ProblemKind::RateLimited => 429,
            ProblemKind::Internal => 500,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            ProblemKind::InvalidBody => "The request body could not be read",
            ProblemKind::Validation => "The request has invalid values",
            ProblemKind::BodyTooLarge => "The request body is too large",
            ProblemKind::UnsupportedMediaType => "The request body must be JSON",
            ProblemKind::NotFound => "Not found",
            ProblemKind::Conflict => "Conflict",
            ProblemKind::ImageNotFound => "The image is not available",
            ProblemKind::InvalidState => "The sandbox is not in a state that allows this",
            ProblemKind::EngineUnavailable => "The container engine is unavailable",
            ProblemKind::EngineTimeout => "The container engine did not answer in time",
            ProblemKind::StoreUnavailable => "The store is unavailable",
            ProblemKind::UpstreamUnavailable => "The server inside the sandbox could not be reached",
            ProblemKind::Unauthorized => "A valid API key is required",
            ProblemKind::Forbidden => "The API key's role may not do this",
            ProblemKind::QuotaExceeded => "The owner's quota would be exceeded",
            ProblemKind::RateLimited => "Too many requests for this API key",
            ProblemKind::Internal => "Internal error",
        }
    }
}

/// An `application/problem+json` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What went wrong and how to fix it, in one sentence.
    pub detail: String,
    /// Per-field errors, for validation problems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// The sandbox concerned, when there is one (e.g. a create that failed after it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_id: Option<String>,
}

impl Problem {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Problem {
            kind: kind.type_uri().to_owned(),
            title: kind.title().to_owned(),
            status: kind.status(),
            detail: detail.into(),
            errors: Vec::new(),
            sandbox_id: None,
        }
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    pub fn with_sandbox(mut self, id: impl Into<String>) -> Self {
        self.sandbox_id = Some(id.into());
        self
    }
}
