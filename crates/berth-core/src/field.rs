//! The vocabulary every request type validates with: quantities as clients send them
//! ([`NumberOrString`]), one rejected field ([`FieldError`]) and every problem found in a request
//! ([`ValidationErrors`]). A leaf: it imports no other module of the crate.

use serde::{Deserialize, Serialize};

/// A number or a string, as clients send quantities: `2`, `0.5`, `"500m"`, `"1C"`, `"30m"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum NumberOrString {
    Number(f64),
    String(String),
}

impl std::fmt::Display for NumberOrString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NumberOrString::Number(n) => write!(f, "{n}"),
            NumberOrString::String(s) => f.write_str(s),
        }
    }
}

/// One rejected field: which, what was sent, and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// JSON path of the field, e.g. `memory` or `labels.team`.
    pub field: String,
    /// What was wrong and what is allowed.
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: String) -> Self {
        FieldError {
            field: field.to_owned(),
            message,
        }
    }
}

/// Every problem found in a request, not just the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
pub struct ValidationErrors(pub Vec<FieldError>);
