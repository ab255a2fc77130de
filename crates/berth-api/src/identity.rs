//! Wire types of who may call berth: API keys (the secret appears once, in the answer to its
//! creation), the caller's own identity, per-owner quotas with their use, and audit entries.

use berth_core::spec::NumberOrString;
use berth_core::units::{format_cpu, format_memory};
use berth_core::{ApiKey, Quota, Usage};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use berth_core::{AuditEntry, Role};

/// `POST /v1/keys`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    /// Whose sandboxes the key acts for: 1-63 letters, digits and `- _ . @`.
    pub owner: String,
    /// `admin` or `member` (default `member`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// How long the key works, e.g. `30d`, `12h`, or seconds; never expires when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub expires: Option<NumberOrString>,
}

/// A key as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    pub id: String,
    pub owner: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<&ApiKey> for KeyView {
    fn from(key: &ApiKey) -> Self {
        KeyView {
            id: key.id.to_string(),
            owner: key.owner.clone(),
            role: key.role,
            created_at: key.created_at,
            expires_at: key.expires_at,
            last_used_at: key.last_used_at,
            revoked_at: key.revoked_at,
        }
    }
}

/// The answer to `POST /v1/keys`: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: KeyView,
    /// `bk_` and 64 hex digits. berth keeps only its hash: store it now.
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    pub items: Vec<KeyView>,
}

/// `GET /v1/whoami`: who the presented key stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    /// `None` when the server runs without authentication.
    pub key_id: Option<String>,
    pub owner: String,
    pub role: Role,
}

/// `PUT /v1/quotas/{owner}`: the owner's limits; an absent one is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaRequest {
    /// Live sandboxes at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandboxes: Option<u64>,
    /// CPUs of the live sandboxes together, e.g. `32` or `"500m"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub cpu: Option<NumberOrString>,
    /// Memory of the live sandboxes together, e.g. `"64Gi"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub memory: Option<NumberOrString>,
}

/// Limits or use, as clients read them: CPUs (`"0.5"`) and memory (`"512Mi"`); `None` is no limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Amounts {
    pub sandboxes: Option<u64>,
    pub cpu: Option<String>,
    pub memory: Option<String>,
}

impl Amounts {
    pub fn of_quota(quota: &Quota) -> Self {
        Amounts {
            sandboxes: quota.sandboxes,
            cpu: quota.cpu_millis.map(format_cpu),
            memory: quota.memory_bytes.map(format_memory),
        }
    }

    pub fn of_usage(usage: &Usage) -> Self {
        Amounts {
            sandboxes: Some(usage.sandboxes),
            cpu: Some(format_cpu(usage.cpu_millis)),
            memory: Some(format_memory(usage.memory_bytes)),
        }
    }
}

/// One owner's quota and what its live sandboxes hold now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotaView {
    pub owner: String,
    /// Whether the limits are the server's default (the owner has none of its own).
    pub default: bool,
    pub limits: Amounts,
    pub used: Amounts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotaList {
    pub items: Vec<QuotaView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditList {
    pub items: Vec<AuditEntry>,
}
