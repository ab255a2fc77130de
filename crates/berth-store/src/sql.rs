//! Backend-neutral SQL and the plumbing both backends share: statement text in the dialect
//! SQLite and PostgreSQL share (`$n` placeholders), the [`Dialect`] items where they differ, the
//! column values derived from a [`Sandbox`] or [`Template`], the dynamic list query, argument
//! binding, paging, the checks of a pool claim, and error classification.

use berth_core::{EnvService, Sandbox, Status, Template};
use chrono::{DateTime, Utc};
use sqlx::error::DatabaseError;
use sqlx::query::Query;
use sqlx::{Arguments, Database, Encode, Type};

use crate::{Cursor, Page, SandboxFilter, StoreError};

/// What a backend's SQL dialect adds to sqlx's `Database` for the statements both run.
pub(crate) trait Dialect: Database {
    /// The select of the next claimable sandbox of a pool (PostgreSQL's also locks it).
    const NEXT_POOLED: &'static str;

    /// Serializes quota-checked writes of one owner (bound to the owner) until the transaction
    /// ends, across every process sharing the store; `None` where a write transaction already
    /// excludes every other (SQLite's).
    const LOCK_OWNER: Option<&'static str>;

    /// The backend's classification of sqlx errors.
    fn map_error(error: sqlx::Error) -> StoreError;

    /// Rows a statement changed (sqlx has no backend-neutral accessor).
    fn rows_affected(result: &Self::QueryResult) -> u64;
}

pub(crate) const INSERT_SANDBOX: &str = "INSERT INTO sandboxes \
     (id, status, owner, idempotency_key, created_at, updated_at, expires_at, ended_at, record, pool) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

pub(crate) const UPDATE_SANDBOX: &str = "UPDATE sandboxes SET \
     status = $2, owner = $3, idempotency_key = $4, created_at = $5, updated_at = $6, \
     expires_at = $7, ended_at = $8, record = $9, pool = $10 \
     WHERE id = $1";

/// [`UPDATE_SANDBOX`] only while the stored record is still the write the caller read (`$11`:
/// its `updated_at`): a compare-and-set on the record's version.
pub(crate) const UPDATE_SANDBOX_IF_UNCHANGED: &str = "UPDATE sandboxes SET \
     status = $2, owner = $3, idempotency_key = $4, created_at = $5, updated_at = $6, \
     expires_at = $7, ended_at = $8, record = $9, pool = $10 \
     WHERE id = $1 AND updated_at = $11";

pub(crate) const INSERT_LABEL: &str = "INSERT INTO sandbox_labels (sandbox_id, key, value) VALUES ($1, $2, $3)";

pub(crate) const DELETE_LABELS: &str = "DELETE FROM sandbox_labels WHERE sandbox_id = $1";

pub(crate) const SANDBOX_EXISTS: &str = "SELECT 1 FROM sandboxes WHERE id = $1";

pub(crate) const GET_SANDBOX: &str = "SELECT id, record FROM sandboxes WHERE id = $1";

pub(crate) const FIND_BY_IDEMPOTENCY_KEY: &str =
    "SELECT id, record FROM sandboxes WHERE owner = $1 AND idempotency_key = $2";

/// Bound to [`nanos`] of the instant.
pub(crate) const UPDATED_SINCE: &str = "SELECT id, record FROM sandboxes WHERE updated_at >= $1";

/// The text of [`NEXT_POOLED`], a macro so PostgreSQL's locking form can extend it with `concat!`.
macro_rules! next_pooled {
    () => {
        "SELECT id, record FROM sandboxes WHERE pool = $1 AND status = $2 ORDER BY created_at, id LIMIT 1"
    };
}

/// The oldest sandbox waiting in pool `$1` with status `$2` (bound to [`CLAIMABLE_STATUS`]).
pub(crate) const NEXT_POOLED: &str = next_pooled!();

/// [`NEXT_POOLED`], locking the row it returns and passing over rows other transactions have
/// locked, so concurrent claims each take a different sandbox instead of queueing on one.
pub(crate) const NEXT_POOLED_FOR_UPDATE: &str = concat!(next_pooled!(), " FOR UPDATE SKIP LOCKED");

/// The status a pooled sandbox must have to be claimed, as the `status` column stores it.
pub(crate) const CLAIMABLE_STATUS: Status = Status::Running;

/// Fails on a conflict instead of raising it, so a taken (name, tag) shows as no row written:
/// one statement, no transaction, and no unique-violation message to parse.
pub(crate) const INSERT_TEMPLATE: &str = "INSERT INTO templates (name, tag, created_at, updated_at, record) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name, tag) DO NOTHING";

pub(crate) const UPDATE_TEMPLATE: &str =
    "UPDATE templates SET created_at = $3, updated_at = $4, record = $5 WHERE name = $1 AND tag = $2";

pub(crate) const GET_TEMPLATE: &str = "SELECT name, tag, record FROM templates WHERE name = $1 AND tag = $2";

pub(crate) const LIST_TEMPLATES: &str = "SELECT name, tag, record FROM templates ORDER BY name, tag";

pub(crate) const DELETE_TEMPLATE: &str = "DELETE FROM templates WHERE name = $1 AND tag = $2";

/// Fails on a conflict instead of raising it, like [`INSERT_TEMPLATE`].
pub(crate) const INSERT_SERVICE: &str = "INSERT INTO services (id, revision, created_at, updated_at, record) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING";

/// Replaces the service only if it is still at the revision before the new one (`$6`).
pub(crate) const UPDATE_SERVICE: &str = "UPDATE services SET revision = $2, created_at = $3, updated_at = $4, \
     record = $5 WHERE id = $1 AND revision = $6";

pub(crate) const GET_SERVICE: &str = "SELECT id, record FROM services WHERE id = $1";

pub(crate) const LIST_SERVICES: &str = "SELECT id, record FROM services ORDER BY created_at, id";

pub(crate) const DELETE_SERVICE: &str = "DELETE FROM services WHERE id = $1";

/// A value bound to a placeholder of a dynamically built statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
}

/// A dynamically built statement: its text and one bind per placeholder, `$1` first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Statement {
    pub sql: String,
    pub binds: Vec<Bind>,
}

impl Statement {
    pub(crate) fn new(sql: &str) -> Self {
        Statement {
            sql: sql.to_owned(),
            binds: Vec::new(),
        }
    }

    /// Appends the next placeholder to the text and records its value.
    pub(crate) fn bind(&mut self, value: Bind) -> &mut Self {
        self.binds.push(value);
        self.sql.push_str(&format!("${}", self.binds.len()));
        self
    }

    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.sql.push_str(text);
        self
    }

    /// `(v1, v2, ...)`, one placeholder per value.
    pub(crate) fn bind_list(&mut self, values: impl IntoIterator<Item = Bind>) -> &mut Self {
        self.push("(");
        for (index, value) in values.into_iter().enumerate() {
            if index > 0 {
                self.push(", ");
            }
            self.bind(value);
        }
        self.push(")")
    }
}

/// The statuses that count as ended, as stored.
pub(crate) fn ended_statuses() -> impl Iterator<Item = Bind> {
    Status::ALL
        .into_iter()
        .filter(|status| status.is_ended())
        .map(|status| Bind::Text(status.as_str().to_owned()))
}

/// Records matching `filter` strictly after `after` in `(created_at, id)` order, at most `limit`
/// of them (all when `None`). Selects `id, record`.
pub(crate) fn list(filter: &SandboxFilter, after: Option<&Cursor>, limit: Option<i64>) -> Statement {
    let mut statement = Statement::new("SELECT s.id, s.record FROM sandboxes s WHERE 1 = 1");
    if !filter.statuses.is_empty() {
        statement.push(" AND s.status IN ").bind_list(
            filter
                .statuses
                .iter()
                .map(|status| Bind::Text(status.as_str().to_owned())),
        );
    } else if !filter.include_ended {
        statement.push(" AND s.status NOT IN ").bind_list(ended_statuses());
    }
    if let Some(owner) = &filter.owner {
        statement.push(" AND s.owner = ").bind(Bind::Text(owner.clone()));
    }
    match filter.pooled {
        Some(true) => {
            statement.push(" AND s.pool IS NOT NULL");
        }
        Some(false) => {
            statement.push(" AND s.pool IS NULL");
        }
        None => {}
    }
    for (key, value) in &filter.labels {
        statement
            .push(" AND EXISTS (SELECT 1 FROM sandbox_labels l WHERE l.sandbox_id = s.id AND l.key = ")
            .bind(Bind::Text(key.clone()))
            .push(" AND l.value = ")
            .bind(Bind::Text(value.clone()))
            .push(")");
    }
    if let Some(cursor) = after {
        let created_at = nanos(cursor.created_at);
        statement
            .push(" AND (s.created_at > ")
            .bind(Bind::Int(created_at))
            .push(" OR (s.created_at = ")
            .bind(Bind::Int(created_at))
            .push(" AND s.id > ")
            .bind(Bind::Text(cursor.id.as_str().to_owned()))
            .push("))");
    }
    statement.push(" ORDER BY s.created_at, s.id");
    if let Some(limit) = limit {
        statement.push(" LIMIT ").bind(Bind::Int(limit));
    }
    statement
}

/// Deletes ended records whose `ended_at` is before `cutoff`.
pub(crate) fn purge_ended_before(cutoff: DateTime<Utc>) -> Statement {
    let mut statement = Statement::new("DELETE FROM sandboxes WHERE ended_at IS NOT NULL AND ended_at < ");
    statement
        .bind(Bind::Int(nanos(cutoff)))
        .push(" AND status IN ")
        .bind_list(ended_statuses());
    statement
}

/// A time as stored: unix nanoseconds, saturating outside the years 1677..2262 (the order of
/// stored values stays right; the exact value lives in the JSON record).
pub(crate) fn nanos(time: DateTime<Utc>) -> i64 {
    time.timestamp_nanos_opt()
        .unwrap_or(if time.timestamp() < 0 { i64::MIN } else { i64::MAX })
}

/// The values of a `sandboxes` row, in the order of [`INSERT_SANDBOX`]'s placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub id: String,
    pub status: &'static str,
    pub owner: String,
    pub idempotency_key: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: i64,
    pub ended_at: Option<i64>,
    pub record: String,
    pub pool: Option<String>,
}

impl Row {
    pub fn of(sandbox: &Sandbox) -> Result<Self, StoreError> {
        let record = serde_json::to_string(sandbox)
            .map_err(|e| StoreError::Other(format!("cannot encode sandbox {}: {e}", sandbox.id)))?;
        Ok(Row {
            id: sandbox.id.as_str().to_owned(),
            status: sandbox.status.as_str(),
            owner: sandbox.owner.clone(),
            idempotency_key: sandbox.idempotency_key.clone(),
            created_at: nanos(sandbox.created_at),
            updated_at: nanos(sandbox.updated_at),
            expires_at: nanos(sandbox.expires_at),
            ended_at: sandbox.ended_at.map(nanos),
            record,
            pool: sandbox.pool.clone(),
        })
    }
}

/// Decodes a stored record, checking it belongs to the row it was read from.
pub(crate) fn decode(id: &str, record: &str) -> Result<Sandbox, StoreError> {
    let sandbox: Sandbox = serde_json::from_str(record)
        .map_err(|e| StoreError::Corrupt(format!("record of sandbox {id} does not decode: {e}")))?;
    if sandbox.id.as_str() != id {
        return Err(StoreError::Corrupt(format!(
            "row {id} holds the record of sandbox {}",
            sandbox.id
        )));
    }
    Ok(sandbox)
}

/// Checks the record a claim's closure made of `taken`, the pooled record it was given: it must
/// be the same sandbox, out of the pool.
pub(crate) fn check_claimed(pool: &str, taken: &Sandbox, claimed: &Sandbox) -> Result<(), StoreError> {
    if claimed.id != taken.id {
        return Err(StoreError::Other(format!(
            "a claim from pool {pool} turned sandbox {} into sandbox {}",
            taken.id, claimed.id
        )));
    }
    if claimed.pool.is_some() {
        return Err(StoreError::Other(format!(
            "a claim from pool {pool} left sandbox {} in a pool",
            claimed.id
        )));
    }
    Ok(())
}

/// The values of a `templates` row, in the order of [`INSERT_TEMPLATE`]'s and
/// [`UPDATE_TEMPLATE`]'s placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateRow {
    pub name: String,
    pub tag: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub record: String,
}

impl TemplateRow {
    pub fn of(template: &Template) -> Result<Self, StoreError> {
        let record = serde_json::to_string(template).map_err(|e| {
            StoreError::Other(format!(
                "cannot encode template {}:{}: {e}",
                template.name, template.tag
            ))
        })?;
        Ok(TemplateRow {
            name: template.name.clone(),
            tag: template.tag.clone(),
            created_at: nanos(template.created_at),
            updated_at: nanos(template.updated_at),
            record,
        })
    }
}

pub(crate) fn template_exists(template: &Template) -> StoreError {
    StoreError::TemplateExists {
        name: template.name.clone(),
        tag: template.tag.clone(),
    }
}

pub(crate) fn template_not_found(template: &Template) -> StoreError {
    StoreError::TemplateNotFound {
        name: template.name.clone(),
        tag: template.tag.clone(),
    }
}

/// Binds a [`TemplateRow`] to [`INSERT_TEMPLATE`] or [`UPDATE_TEMPLATE`], in placeholder order.
pub(crate) fn bind_template_row<'q, DB>(
    query: Query<'q, DB, DB::Arguments>,
    row: TemplateRow,
) -> Query<'q, DB, DB::Arguments>
where
    DB: Database,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
{
    query
        .bind(row.name)
        .bind(row.tag)
        .bind(row.created_at)
        .bind(row.updated_at)
        .bind(row.record)
}

/// Decodes a stored template, checking it belongs to the row it was read from.
pub(crate) fn decode_template(name: &str, tag: &str, record: &str) -> Result<Template, StoreError> {
    let template: Template = serde_json::from_str(record)
        .map_err(|e| StoreError::Corrupt(format!("record of template {name}:{tag} does not decode: {e}")))?;
    if template.name != name || template.tag != tag {
        return Err(StoreError::Corrupt(format!(
            "row {name}:{tag} holds the record of template {}:{}",
            template.name, template.tag
        )));
    }
    Ok(template)
}

/// Decodes `(name, tag, record)` rows, failing on the first corrupt one.
pub(crate) fn decode_templates(rows: &[(String, String, String)]) -> Result<Vec<Template>, StoreError> {
    rows.iter()
        .map(|(name, tag, record)| decode_template(name, tag, record))
        .collect()
}

/// The values of a `services` row, in the order of [`INSERT_SERVICE`]'s placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceRow {
    pub id: String,
    pub revision: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub record: String,
}

impl ServiceRow {
    pub fn of(service: &EnvService) -> Result<Self, StoreError> {
        let record = serde_json::to_string(service)
            .map_err(|e| StoreError::Other(format!("cannot encode service {}: {e}", service.id)))?;
        Ok(ServiceRow {
            id: service.id.to_string(),
            revision: i64::try_from(service.revision).unwrap_or(i64::MAX),
            created_at: nanos(service.created_at),
            updated_at: nanos(service.updated_at),
            record,
        })
    }
}

/// Decodes a stored service, checking it belongs to the row it was read from.
pub(crate) fn decode_service(id: &str, record: &str) -> Result<EnvService, StoreError> {
    let service: EnvService = serde_json::from_str(record)
        .map_err(|e| StoreError::Corrupt(format!("record of service {id} does not decode: {e}")))?;
    if service.id.as_str() != id {
        return Err(StoreError::Corrupt(format!(
            "row {id} holds the record of service {}",
            service.id
        )));
    }
    Ok(service)
}

/// Decodes `(id, record)` service rows, failing on the first corrupt one.
pub(crate) fn decode_services(rows: &[(String, String)]) -> Result<Vec<EnvService>, StoreError> {
    rows.iter().map(|(id, record)| decode_service(id, record)).collect()
}

/// Binds a [`Row`] to [`INSERT_SANDBOX`] or [`UPDATE_SANDBOX`], in placeholder order.
pub(crate) fn bind_row<'q, DB>(query: Query<'q, DB, DB::Arguments>, row: Row) -> Query<'q, DB, DB::Arguments>
where
    DB: Database,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    Option<String>: for<'t> Encode<'t, DB> + Type<DB>,
    &'static str: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    Option<i64>: for<'t> Encode<'t, DB> + Type<DB>,
{
    query
        .bind(row.id)
        .bind(row.status)
        .bind(row.owner)
        .bind(row.idempotency_key)
        .bind(row.created_at)
        .bind(row.updated_at)
        .bind(row.expires_at)
        .bind(row.ended_at)
        .bind(row.record)
        .bind(row.pool)
}

/// The arguments of a dynamically built [`Statement`], for `sqlx::query_with`.
pub(crate) fn arguments<DB>(binds: Vec<Bind>) -> Result<DB::Arguments, StoreError>
where
    DB: Database,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
{
    let mut arguments = DB::Arguments::default();
    for bind in binds {
        match bind {
            Bind::Text(text) => arguments.add(text),
            Bind::Int(int) => arguments.add(int),
        }
        .map_err(|e| StoreError::Other(format!("cannot bind a query argument: {e}")))?;
    }
    Ok(arguments)
}

/// How many rows a list of `limit` fetches: one more than asked for tells whether another
/// page follows.
pub(crate) fn fetch_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1)
}

/// The page of a list of `limit` from the [`fetch_limit`] rows it fetched.
pub(crate) fn into_page(mut items: Vec<Sandbox>, limit: usize) -> Page {
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(Cursor::after)
    } else {
        None
    };
    Page { items, next }
}

/// Decodes `(id, record)` rows, failing on the first corrupt one.
pub(crate) fn decode_all(rows: &[(String, String)]) -> Result<Vec<Sandbox>, StoreError> {
    rows.iter().map(|(id, record)| decode(id, record)).collect()
}

/// A write's error, with unique violations named after the record being written; anything
/// else goes to `map_error`.
pub(crate) fn write_error(
    sandbox: &Sandbox,
    error: sqlx::Error,
    map_error: fn(sqlx::Error) -> StoreError,
) -> StoreError {
    if let sqlx::Error::Database(db) = &error
        && db.kind() == sqlx::error::ErrorKind::UniqueViolation
    {
        // SQLite names the columns ("sandboxes.owner, sandboxes.idempotency_key");
        // PostgreSQL names the index ("sandboxes_owner_idempotency_key"). The only other
        // unique index a write can hit is the primary key.
        let message = db.message();
        let constraint = db.constraint().unwrap_or_default();
        if message.contains("idempotency_key") || constraint.contains("idempotency_key") {
            return StoreError::DuplicateIdempotencyKey {
                owner: sandbox.owner.clone(),
                key: sandbox.idempotency_key.clone().unwrap_or_default(),
            };
        }
        return StoreError::AlreadyExists(sandbox.id.clone());
    }
    map_error(error)
}

/// Classifies a sqlx error: the database's own errors by `classify_database` (their codes
/// differ per backend), the client-side ones the same way for every backend.
pub(crate) fn map_error(error: sqlx::Error, classify_database: fn(&dyn DatabaseError) -> StoreError) -> StoreError {
    use sqlx::Error as E;
    match error {
        E::Database(db) => classify_database(&*db),
        E::Io(_) | E::Tls(_) | E::Protocol(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => {
            StoreError::Unavailable(error.to_string())
        }
        E::ColumnDecode { .. } | E::Decode(_) | E::ColumnNotFound(_) | E::ColumnIndexOutOfBounds { .. } => {
            StoreError::Corrupt(error.to_string())
        }
        other => StoreError::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use berth_core::SandboxId;

    use super::*;

    /// Every `$n` in the text, in order of appearance.
    fn placeholders(sql: &str) -> Vec<usize> {
        let mut found = Vec::new();
        let mut rest = sql;
        while let Some(at) = rest.find('$') {
            rest = &rest[at + 1..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            found.push(digits.parse().expect("a number after $"));
        }
        found
    }

    /// Placeholders are exactly `$1..$n` with one bind each: sqlx-sqlite binds a missing
    /// placeholder as NULL without complaint, so a gap would silently break a filter.
    fn assert_binds_match(statement: &Statement) {
        let used: BTreeSet<usize> = placeholders(&statement.sql).into_iter().collect();
        let expected: BTreeSet<usize> = (1..=statement.binds.len()).collect();
        assert_eq!(used, expected, "{}", statement.sql);
    }

    fn full_filter() -> SandboxFilter {
        SandboxFilter {
            statuses: vec![Status::Running, Status::Failed],
            owner: Some("alice".into()),
            labels: BTreeMap::from([("team".into(), "red".into()), ("env".into(), "prod".into())]),
            include_ended: false,
            pooled: Some(true),
        }
    }

    #[test]
    fn list_binds_every_placeholder() {
        let cursor = Cursor {
            created_at: DateTime::from_timestamp_nanos(1_700_000_000_123_456_789),
            id: SandboxId::parse("00000000000000aa").expect("valid id"),
        };
        let filters = [
            SandboxFilter::default(),
            SandboxFilter {
                include_ended: true,
                ..SandboxFilter::default()
            },
            full_filter(),
        ];
        for filter in &filters {
            for after in [None, Some(&cursor)] {
                for limit in [None, Some(10)] {
                    assert_binds_match(&list(filter, after, limit));
                }
            }
        }
        let statement = list(&full_filter(), Some(&cursor), Some(10));
        assert_eq!(statement.binds.len(), 2 + 1 + 4 + 3 + 1);
        assert_eq!(statement.binds.last(), Some(&Bind::Int(10)));
    }

    #[test]
    fn live_filter_excludes_exactly_the_ended_statuses() {
        let statement = list(&SandboxFilter::default(), None, None);
        assert!(statement.sql.contains("s.status NOT IN ($1, $2)"), "{}", statement.sql);
        assert_eq!(
            statement.binds,
            vec![Bind::Text("Terminated".into()), Bind::Text("Failed".into())]
        );
        let all = list(
            &SandboxFilter {
                include_ended: true,
                ..SandboxFilter::default()
            },
            None,
            None,
        );
        assert!(!all.sql.contains("status"), "{}", all.sql);
    }

    #[test]
    fn the_pooled_filter_tests_the_pool_column() {
        let only = |pooled| {
            list(
                &SandboxFilter {
                    pooled,
                    ..SandboxFilter::default()
                },
                None,
                None,
            )
            .sql
        };
        assert!(only(Some(true)).contains("s.pool IS NOT NULL"));
        assert!(only(Some(false)).contains("s.pool IS NULL"));
        assert!(!only(None).contains("pool"));
    }

    #[test]
    fn a_claim_must_keep_the_id_and_leave_the_pool() {
        let mut taken = crate::contract::sample("alice", DateTime::from_timestamp_nanos(1));
        taken.pool = Some("py:latest".into());
        let mut claimed = taken.clone();
        claimed.pool = None;
        assert!(check_claimed("py:latest", &taken, &claimed).is_ok());
        assert!(matches!(
            check_claimed("py:latest", &taken, &taken),
            Err(StoreError::Other(_))
        ));
        let mut other = claimed.clone();
        other.id = SandboxId::generate();
        assert!(matches!(
            check_claimed("py:latest", &taken, &other),
            Err(StoreError::Other(_))
        ));
    }

    #[test]
    fn decode_template_refuses_a_foreign_record() {
        let template = crate::contract::sample_template("py", "3.12", DateTime::from_timestamp_nanos(1));
        let row = TemplateRow::of(&template).expect("encodes");
        assert_eq!(decode_template("py", "3.12", &row.record).expect("decodes"), template);
        assert!(matches!(
            decode_template("py", "latest", &row.record),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            decode_template("py", "3.12", "{}"),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn purge_binds_every_placeholder() {
        let statement = purge_ended_before(DateTime::from_timestamp_nanos(5));
        assert_binds_match(&statement);
        assert_eq!(statement.binds[0], Bind::Int(5));
    }

    #[test]
    fn static_statements_use_numbered_placeholders() {
        for (sql, count) in [
            (INSERT_SANDBOX, 10),
            (UPDATE_SANDBOX, 10),
            (INSERT_LABEL, 3),
            (DELETE_LABELS, 1),
            (SANDBOX_EXISTS, 1),
            (GET_SANDBOX, 1),
            (FIND_BY_IDEMPOTENCY_KEY, 2),
            (UPDATED_SINCE, 1),
            (NEXT_POOLED, 2),
            (NEXT_POOLED_FOR_UPDATE, 2),
            (INSERT_TEMPLATE, 5),
            (UPDATE_TEMPLATE, 5),
            (GET_TEMPLATE, 2),
            (LIST_TEMPLATES, 0),
            (DELETE_TEMPLATE, 2),
        ] {
            let used: BTreeSet<usize> = placeholders(sql).into_iter().collect();
            assert_eq!(used, (1..=count).collect(), "{sql}");
        }
    }

    #[test]
    fn nanos_saturate_outside_the_representable_range() {
        let early = DateTime::from_timestamp(-10_000_000_000, 0).expect("valid time");
        let late = DateTime::from_timestamp(10_000_000_000, 0).expect("valid time");
        assert_eq!(nanos(early), i64::MIN);
        assert_eq!(nanos(late), i64::MAX);
        assert_eq!(nanos(DateTime::from_timestamp_nanos(-7)), -7);
    }

    #[test]
    fn a_page_is_cut_at_the_limit_and_points_past_its_last_item() {
        assert_eq!(fetch_limit(10), 11);
        assert_eq!(fetch_limit(usize::MAX), i64::MAX);
        let items: Vec<Sandbox> = (0..3)
            .map(|offset| crate::contract::sample("alice", DateTime::from_timestamp_nanos(offset)))
            .collect();
        let page = into_page(items.clone(), 2);
        assert_eq!(page.items, items[..2]);
        assert_eq!(page.next, Some(Cursor::after(&items[1])));
        let last = into_page(items.clone(), 3);
        assert_eq!((last.items.len(), last.next), (3, None));
    }

    #[test]
    fn decode_refuses_garbage_and_foreign_records() {
        assert!(matches!(
            decode("00000000000000aa", "{not json"),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(decode("00000000000000aa", "{}"), Err(StoreError::Corrupt(_))));
    }
}
