//! The record of intent: the [`Store`] trait, its SQLite backend, and the contract suite that
//! every backend must pass unchanged.

use std::collections::BTreeMap;

use async_trait::async_trait;
use berth_core::{Sandbox, SandboxId, Status};
use chrono::{DateTime, Utc};

#[cfg(any(test, feature = "contract"))]
pub mod contract;
mod sql;
pub mod sqlite;

pub use sqlite::SqliteStore;

/// Which sandboxes a list returns. Empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxFilter {
    /// Any of these statuses.
    pub statuses: Vec<Status>,
    pub owner: Option<String>,
    /// All of these labels (ANDed).
    pub labels: BTreeMap<String, String>,
    /// Whether `Terminated` and `Failed` sandboxes are included when `statuses` is empty.
    pub include_ended: bool,
}

impl SandboxFilter {
    pub fn matches(&self, sandbox: &Sandbox) -> bool {
        let status_ok = if self.statuses.is_empty() {
            self.include_ended || !sandbox.status.is_ended()
        } else {
            self.statuses.contains(&sandbox.status)
        };
        status_ok
            && self.owner.as_ref().is_none_or(|owner| *owner == sandbox.owner)
            && self
                .labels
                .iter()
                .all(|(key, value)| sandbox.spec.labels.get(key) == Some(value))
    }
}

/// Position in the stable list order `(created_at, id)`: the last item of the previous page.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: SandboxId,
}

impl Cursor {
    pub fn after(sandbox: &Sandbox) -> Self {
        Cursor {
            created_at: sandbox.created_at,
            id: sandbox.id.clone(),
        }
    }

    /// Opaque text form for clients: `<unix nanos>-<id>`.
    pub fn encode(&self) -> String {
        format!(
            "{}-{}",
            self.created_at.timestamp_nanos_opt().unwrap_or_default(),
            self.id
        )
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (nanos, id) = text.split_once('-')?;
        let created_at = DateTime::from_timestamp_nanos(nanos.parse().ok()?);
        Some(Cursor {
            created_at,
            id: SandboxId::parse(id)?,
        })
    }
}

/// One page of a list, in `(created_at, id)` order.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Sandbox>,
    /// Set when more items follow.
    pub next: Option<Cursor>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sandbox {0} already exists")]
    AlreadyExists(SandboxId),
    #[error("idempotency key `{key}` of owner `{owner}` is already used")]
    DuplicateIdempotencyKey { owner: String, key: String },
    #[error("sandbox {0} not found")]
    NotFound(SandboxId),
    #[error("store is unavailable: {0}")]
    Unavailable(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("store error: {0}")]
    Other(String),
}

/// Durable sandbox records. Every method is one atomic transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Writes a new record. Fails with `AlreadyExists` or `DuplicateIdempotencyKey`.
    async fn insert(&self, sandbox: &Sandbox) -> Result<(), StoreError>;

    /// Replaces an existing record whole. Fails with `NotFound`.
    async fn update(&self, sandbox: &Sandbox) -> Result<(), StoreError>;

    async fn get(&self, id: &SandboxId) -> Result<Option<Sandbox>, StoreError>;

    async fn find_by_idempotency_key(&self, owner: &str, key: &str) -> Result<Option<Sandbox>, StoreError>;

    /// Up to `limit` records matching `filter` strictly after `after`, in `(created_at, id)` order.
    async fn list(&self, filter: &SandboxFilter, after: Option<&Cursor>, limit: usize) -> Result<Page, StoreError>;

    /// Every record that has not ended, for adoption at start.
    async fn list_live(&self) -> Result<Vec<Sandbox>, StoreError>;

    /// Deletes ended records whose `ended_at` is before `cutoff`; returns how many.
    async fn purge_ended_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Cheap round trip for readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;
}
