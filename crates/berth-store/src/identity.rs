//! The store's side of who may call berth: API key rows (the secret's hash, never the secret),
//! per-owner quotas, the audit log, and the owner's live usage a quota-checked create or claim
//! is admitted against — statements, row codecs and the generic reads.

use berth_core::{ApiKey, AuditEntry, Quota, Sandbox};
use chrono::{DateTime, Utc};
use sqlx::{Encode, Executor, FromRow, IntoArguments, Pool, Type};

use crate::StoreError;
use crate::sql::{self, Bind, Dialect, Statement, nanos};

/// Fails on a conflict (id or hash taken) instead of raising it: no row written.
pub(crate) const INSERT_KEY: &str = "INSERT INTO api_keys (id, hash, owner, created_at, record) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";

pub(crate) const KEY_BY_HASH: &str = "SELECT record, revoked_at, last_used_at FROM api_keys WHERE hash = $1";

pub(crate) const KEY_BY_ID: &str = "SELECT record, revoked_at, last_used_at FROM api_keys WHERE id = $1";

pub(crate) const LIST_KEYS: &str = "SELECT record, revoked_at, last_used_at FROM api_keys ORDER BY created_at, id";

/// Only the first revocation counts, so the recorded time is when the key stopped working.
pub(crate) const REVOKE_KEY: &str = "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";

pub(crate) const KEY_EXISTS: &str = "SELECT 1 FROM api_keys WHERE id = $1";

/// Never moves the time back, whichever process writes last.
pub(crate) const TOUCH_KEY: &str =
    "UPDATE api_keys SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)";

pub(crate) const UPSERT_QUOTA: &str = "INSERT INTO quotas (owner, record) VALUES ($1, $2) \
     ON CONFLICT (owner) DO UPDATE SET record = excluded.record";

pub(crate) const GET_QUOTA: &str = "SELECT owner, record FROM quotas WHERE owner = $1";

pub(crate) const LIST_QUOTAS: &str = "SELECT owner, record FROM quotas ORDER BY owner";

pub(crate) const DELETE_QUOTA: &str = "DELETE FROM quotas WHERE owner = $1";

pub(crate) const APPEND_AUDIT: &str = "INSERT INTO audit_log (at, owner, record) VALUES ($1, $2, $3)";

/// The columns of an `api_keys` read: the record, `revoked_at`, `last_used_at`.
pub(crate) type KeyColumns = (String, Option<i64>, Option<i64>);

/// The values of a new `api_keys` row, in the order of [`INSERT_KEY`]'s placeholders. The
/// record holds the fields that never change; revocation and last use live in their columns.
pub(crate) struct KeyRow {
    pub id: String,
    pub hash: String,
    pub owner: String,
    pub created_at: i64,
    pub record: String,
}

impl KeyRow {
    pub fn of(key: &ApiKey) -> Result<Self, StoreError> {
        let immutable = ApiKey {
            revoked_at: None,
            last_used_at: None,
            ..key.clone()
        };
        let record = serde_json::to_string(&immutable)
            .map_err(|e| StoreError::Other(format!("cannot encode key {}: {e}", key.id)))?;
        Ok(KeyRow {
            id: key.id.as_str().to_owned(),
            hash: key.hash.clone(),
            owner: key.owner.clone(),
            created_at: nanos(key.created_at),
            record,
        })
    }
}

fn time_of(nanos: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(nanos)
}

pub(crate) fn decode_key((record, revoked_at, last_used_at): KeyColumns) -> Result<ApiKey, StoreError> {
    let mut key: ApiKey = serde_json::from_str(&record)
        .map_err(|e| StoreError::Corrupt(format!("an api_keys record does not decode: {e}")))?;
    key.revoked_at = revoked_at.map(time_of);
    key.last_used_at = last_used_at.map(time_of);
    Ok(key)
}

pub(crate) fn encode_quota(owner: &str, quota: &Quota) -> Result<String, StoreError> {
    serde_json::to_string(quota).map_err(|e| StoreError::Other(format!("cannot encode the quota of {owner}: {e}")))
}

pub(crate) fn decode_quota((owner, record): (String, String)) -> Result<(String, Quota), StoreError> {
    let quota = serde_json::from_str(&record)
        .map_err(|e| StoreError::Corrupt(format!("the quota of {owner} does not decode: {e}")))?;
    Ok((owner, quota))
}

pub(crate) fn encode_audit(entry: &AuditEntry) -> Result<String, StoreError> {
    serde_json::to_string(entry).map_err(|e| StoreError::Other(format!("cannot encode an audit entry: {e}")))
}

pub(crate) fn decode_audit(record: &str) -> Result<AuditEntry, StoreError> {
    serde_json::from_str(record).map_err(|e| StoreError::Corrupt(format!("an audit entry does not decode: {e}")))
}

/// The owner's live records, whose usage a quota-checked write adds to.
pub(crate) fn live_of_owner(owner: &str) -> Statement {
    let mut statement = Statement::new("SELECT id, record FROM sandboxes WHERE owner = ");
    statement.bind(Bind::Text(owner.to_owned()));
    statement.push(" AND status NOT IN ");
    statement.bind_list(sql::ended_statuses());
    statement
}

/// Up to `limit` audit entries at or after `since`, of `owner` when given, oldest first.
pub(crate) fn audit_since(since: DateTime<Utc>, owner: Option<&str>, limit: usize) -> Statement {
    let mut statement = Statement::new("SELECT CAST(seq AS TEXT), record FROM audit_log WHERE at >= ");
    statement.bind(Bind::Int(nanos(since)));
    if let Some(owner) = owner {
        statement.push(" AND owner = ");
        statement.bind(Bind::Text(owner.to_owned()));
    }
    statement.push(" ORDER BY seq LIMIT ");
    statement.bind(Bind::Int(i64::try_from(limit).unwrap_or(i64::MAX)));
    statement
}

/// Whether `sandbox` fits in `owner`'s `quota` beside `live`, the owner's live records.
pub(crate) fn admit(quota: &Quota, live: &[Sandbox], sandbox: &Sandbox) -> Result<(), StoreError> {
    let used = berth_core::Usage::of_live(live.iter().filter(|record| record.id != sandbox.id));
    quota
        .admit(&used, &berth_core::Usage::of(sandbox))
        .map_err(StoreError::QuotaExceeded)
}

/// The one key row `query` selects by `value`.
pub(crate) async fn fetch_key<DB>(
    pool: &Pool<DB>,
    query: &'static str,
    value: &str,
) -> Result<Option<ApiKey>, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'a, 'q> &'a str: Encode<'q, DB>,
    for<'a> &'a str: Type<DB>,
    KeyColumns: for<'r> FromRow<'r, DB::Row>,
{
    let row: Option<KeyColumns> = sqlx::query_as(query)
        .bind(value)
        .fetch_optional(pool)
        .await
        .map_err(DB::map_error)?;
    row.map(decode_key).transpose()
}
