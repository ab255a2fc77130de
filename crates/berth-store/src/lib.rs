//! The record of intent: the [`Store`] trait, its SQLite and PostgreSQL backends, the
//! leadership [`Lease`] a store hands out, and the contract suite that every backend must pass
//! unchanged.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use berth_core::{ApiKey, AuditEntry, EnvService, EnvServiceId, KeyId, Quota, Sandbox, SandboxId, Status, Template};
use chrono::{DateTime, Utc};
use tokio::sync::watch;

mod backend;
#[cfg(any(test, feature = "contract"))]
pub mod contract;
mod identity;
pub mod postgres;
mod sql;
pub mod sqlite;
mod write;

pub use postgres::PostgresStore;
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
    /// `Some(true)`: only sandboxes waiting in a warm pool (`pool` set); `Some(false)`: only the
    /// others; `None`: both.
    pub pooled: Option<bool>,
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
            && self.pooled.is_none_or(|pooled| pooled == sandbox.pool.is_some())
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
    #[error("template {name}:{tag} already exists")]
    TemplateExists { name: String, tag: String },
    #[error("template {name}:{tag} not found")]
    TemplateNotFound { name: String, tag: String },
    #[error("store is unavailable: {0}")]
    Unavailable(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("store error: {0}")]
    Other(String),
    /// A quota-checked write refused: the owner's live sandboxes would pass a limit.
    #[error("{0}")]
    QuotaExceeded(berth_core::QuotaExceeded),
}

/// Leadership of one deployment among every process sharing a store, held until dropped.
/// Dropping it gives leadership up promptly, so another process can take it.
pub struct Lease {
    /// Whatever holds leadership (a locked file, the handle of the task keeping a database
    /// session); dropping it releases leadership.
    _holder: Box<dyn Any + Send + Sync>,
    /// Set to the reason when leadership is lost; `None` for a lease that cannot be lost.
    lost: Option<watch::Receiver<Option<String>>>,
}

impl Lease {
    /// A lease held by `holder`; `lost` receives the reason if leadership is lost while held.
    pub(crate) fn held(holder: Box<dyn Any + Send + Sync>, lost: Option<watch::Receiver<Option<String>>>) -> Self {
        Lease { _holder: holder, lost }
    }

    /// Completes when leadership is lost, with the reason. Pending forever for a lease that
    /// cannot be lost. Cancel-safe, and answers again (with the same reason) once lost.
    pub async fn lost(&mut self) -> String {
        let Some(lost) = &mut self.lost else {
            return std::future::pending().await;
        };
        match lost.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            // The keeper went away without a word (its runtime shut down): whatever it held
            // died with it.
            Err(_) => "the lease keeper stopped".to_owned(),
        }
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("can_be_lost", &self.lost.is_some())
            .finish_non_exhaustive()
    }
}

/// One committed write of a sandbox record, as another process's store announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxChange {
    pub id: SandboxId,
    /// The written record's `updated_at`: a copy at least this new needs no re-read.
    pub updated_at: DateTime<Utc>,
}

/// Durable sandbox records. Every method is one atomic transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Writes a new record. Fails with `AlreadyExists` or `DuplicateIdempotencyKey`.
    async fn insert(&self, sandbox: &Sandbox) -> Result<(), StoreError>;

    /// Replaces an existing record whole. Fails with `NotFound`.
    async fn update(&self, sandbox: &Sandbox) -> Result<(), StoreError>;

    /// Replaces the record whole if the stored one is still the write whose `updated_at` is
    /// `read_at` (the copy the caller decided on); `false`, writing nothing, when another write
    /// came between, from any process, or the record is gone. Exact under concurrency: of two
    /// writers that read the same copy, one wins.
    async fn update_if_unchanged(&self, sandbox: &Sandbox, read_at: DateTime<Utc>) -> Result<bool, StoreError>;

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

    /// Records inserted or updated with `updated_at >= since` (the record's own `updated_at`),
    /// ended ones included, in any order.
    async fn updated_since(&self, since: DateTime<Utc>) -> Result<Vec<Sandbox>, StoreError>;

    /// Atomically takes one sandbox waiting in pool `pool` (its `pool` field equals it and its status is
    /// `Running`), oldest first: `claim` turns the record into the claimed one (it must clear `pool`),
    /// and that record is written in the same transaction and returned. `None` when the pool is empty.
    /// Two claims, from any processes sharing the store, never get the same sandbox. A claimed
    /// record that changes the id or keeps `pool` set fails with `Other`, writing nothing.
    async fn claim_pooled(
        &self,
        pool: &str,
        claim: &(dyn Fn(Sandbox) -> Sandbox + Send + Sync),
    ) -> Result<Option<Sandbox>, StoreError>;

    /// Writes a new template. Fails with `TemplateExists` when (name, tag) is taken.
    async fn insert_template(&self, template: &Template) -> Result<(), StoreError>;

    /// Replaces an existing template whole. Fails with `TemplateNotFound`.
    async fn update_template(&self, template: &Template) -> Result<(), StoreError>;

    async fn get_template(&self, name: &str, tag: &str) -> Result<Option<Template>, StoreError>;

    /// Every template, ordered by (name, tag).
    async fn list_templates(&self) -> Result<Vec<Template>, StoreError>;

    /// Deletes it; returns whether it existed.
    async fn delete_template(&self, name: &str, tag: &str) -> Result<bool, StoreError>;

    /// Writes a new env-service. Fails with `Other` when its id is taken.
    async fn insert_service(&self, service: &EnvService) -> Result<(), StoreError>;

    /// Replaces an env-service whole if the stored record is at `service.revision - 1` (the
    /// caller read it, then bumped `revision`). `false`, writing nothing, when it is missing or
    /// was changed since: read it again and retry.
    async fn update_service(&self, service: &EnvService) -> Result<bool, StoreError>;

    async fn get_service(&self, id: &EnvServiceId) -> Result<Option<EnvService>, StoreError>;

    /// Every env-service, ordered by (created_at, id).
    async fn list_services(&self) -> Result<Vec<EnvService>, StoreError>;

    /// Deletes it; returns whether it existed.
    async fn delete_service(&self, id: &EnvServiceId) -> Result<bool, StoreError>;

    /// [`insert`](Store::insert), admitted against the owner's `quota`: in the same transaction
    /// the owner's live records are summed, and a record that would pass a limit fails with
    /// `QuotaExceeded`, writing nothing. Exact under concurrency from any processes sharing the
    /// store: quota-checked writes of one owner take turns.
    async fn insert_within(&self, sandbox: &Sandbox, quota: &Quota) -> Result<(), StoreError>;

    /// [`claim_pooled`](Store::claim_pooled), admitted against `quota`, the quota of the owner
    /// the claim gives the sandbox to (as [`insert_within`](Store::insert_within) does). A
    /// refused claim leaves the sandbox in its pool.
    async fn claim_pooled_within(
        &self,
        pool: &str,
        claim: &(dyn Fn(Sandbox) -> Sandbox + Send + Sync),
        quota: &Quota,
    ) -> Result<Option<Sandbox>, StoreError>;

    /// Writes a new API key. Fails with `Other` when its id or hash is taken.
    async fn insert_key(&self, key: &ApiKey) -> Result<(), StoreError>;

    /// The key whose secret hashes to `hash`, revoked and expired ones included.
    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError>;

    async fn get_key(&self, id: &KeyId) -> Result<Option<ApiKey>, StoreError>;

    /// Every key, revoked ones included, by creation.
    async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError>;

    /// Revokes the key at `at`, once: a second revocation keeps the first time. Returns whether
    /// the key exists.
    async fn revoke_key(&self, id: &KeyId, at: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Records a use of the key at `at` (never moving its last use back).
    async fn touch_key(&self, id: &KeyId, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Sets (or replaces) the quota of `owner`.
    async fn set_quota(&self, owner: &str, quota: &Quota) -> Result<(), StoreError>;

    async fn get_quota(&self, owner: &str) -> Result<Option<Quota>, StoreError>;

    /// Every owner's own quota, by owner.
    async fn list_quotas(&self) -> Result<Vec<(String, Quota)>, StoreError>;

    /// Removes the quota of `owner` (the default applies again); returns whether it had one.
    async fn delete_quota(&self, owner: &str) -> Result<bool, StoreError>;

    /// Appends one entry to the audit log.
    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;

    /// Up to `limit` entries at or after `since`, only `owner`'s when given, oldest first.
    async fn list_audit(
        &self,
        since: DateTime<Utc>,
        owner: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError>;

    /// Whether other processes may write this store at the same time (PostgreSQL: true;
    /// SQLite: false).
    fn is_shared(&self) -> bool;

    /// The sandbox writes of every process sharing this store (this one's included), as they
    /// commit, so a process can take them at once instead of at its next poll. `None` for a
    /// store that announces nothing (SQLite, which no other process writes). Best effort: a
    /// change can be missed (a lost connection, a full buffer), so followers keep polling
    /// [`updated_since`](Store::updated_since) too. The feed ends when the receiver is dropped.
    async fn sandbox_changes(&self) -> Option<tokio::sync::mpsc::Receiver<SandboxChange>>;

    /// Where the records live, for logs and /health, without secrets:
    /// `sqlite /path/berth.db` or `postgres host:port/db`.
    fn describe(&self) -> String;

    /// Tries once, without waiting, to become the single leader of deployment `cluster` among
    /// all processes sharing this store. `Ok(None)` when another process leads.
    async fn try_lead(&self, cluster: &str) -> Result<Option<Lease>, StoreError>;
}
