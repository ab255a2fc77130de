//! The one [`Store`] implementation both backends share: every read runs on the pool a
//! [`Backend`] reads from, every write in a transaction it opens (`write.rs`), so a backend
//! only says how it connects, opens a write, describes itself and elects a leader.

use async_trait::async_trait;
use berth_core::{ApiKey, AuditEntry, EnvService, EnvServiceId, KeyId, Quota, Sandbox, SandboxId, Template};
use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Encode, Executor, FromRow, IntoArguments, Pool, Transaction, Type};

use crate::identity::{self, KeyColumns};
use crate::sql::{self, Dialect, Statement};
use crate::write::Writes;
use crate::{Cursor, Lease, Page, SandboxFilter, Store, StoreError};

/// What a backend supplies to the shared [`Store`] implementation.
#[async_trait]
pub(crate) trait Backend: Send + Sync + 'static {
    type Db: Dialect;

    /// Whether other processes may write the same store at the same time.
    const SHARED: bool;

    /// The pool every read runs on.
    fn read_pool(&self) -> &Pool<Self::Db>;

    /// Opens the transaction of one write.
    async fn begin_write(&self) -> Result<Transaction<'static, Self::Db>, StoreError>;

    /// Where the records live, without secrets, for [`Store::describe`].
    fn description(&self) -> String;

    /// One attempt, without waiting, at leadership of deployment `cluster`, for [`Store::try_lead`].
    async fn take_lead(&self, cluster: &str) -> Result<Option<Lease>, StoreError>;

    /// For [`Store::sandbox_changes`]: nothing, unless the backend announces writes.
    async fn change_feed(&self) -> Option<tokio::sync::mpsc::Receiver<crate::SandboxChange>> {
        None
    }
}

#[async_trait]
impl<B> Store for B
where
    B: Backend,
    for<'c> &'c mut <B::Db as sqlx::Database>::Connection: Executor<'c, Database = B::Db>,
    <B::Db as sqlx::Database>::Arguments: IntoArguments<B::Db>,
    for<'a, 'q> &'a str: Encode<'q, B::Db>,
    for<'a> &'a str: Type<B::Db>,
    String: for<'q> Encode<'q, B::Db> + Type<B::Db>,
    Option<String>: for<'q> Encode<'q, B::Db> + Type<B::Db>,
    i64: for<'q> Encode<'q, B::Db> + Type<B::Db>,
    Option<i64>: for<'q> Encode<'q, B::Db> + Type<B::Db>,
    (String, String): for<'r> FromRow<'r, <B::Db as sqlx::Database>::Row>,
    (String, String, String): for<'r> FromRow<'r, <B::Db as sqlx::Database>::Row>,
    KeyColumns: for<'r> FromRow<'r, <B::Db as sqlx::Database>::Row>,
{
    async fn insert(&self, sandbox: &Sandbox) -> Result<(), StoreError> {
        writes(self).await?.insert(sandbox, &Quota::default()).await
    }

    async fn insert_within(&self, sandbox: &Sandbox, quota: &Quota) -> Result<(), StoreError> {
        writes(self).await?.insert(sandbox, quota).await
    }

    async fn update(&self, sandbox: &Sandbox) -> Result<(), StoreError> {
        writes(self).await?.update(sandbox).await
    }

    async fn update_if_unchanged(&self, sandbox: &Sandbox, read_at: DateTime<Utc>) -> Result<bool, StoreError> {
        writes(self).await?.update_if_unchanged(sandbox, read_at).await
    }

    async fn get(&self, id: &SandboxId) -> Result<Option<Sandbox>, StoreError> {
        fetch_one_record(self.read_pool(), sql::GET_SANDBOX, &[id.as_str()]).await
    }

    async fn find_by_idempotency_key(&self, owner: &str, key: &str) -> Result<Option<Sandbox>, StoreError> {
        fetch_one_record(self.read_pool(), sql::FIND_BY_IDEMPOTENCY_KEY, &[owner, key]).await
    }

    async fn list(&self, filter: &SandboxFilter, after: Option<&Cursor>, limit: usize) -> Result<Page, StoreError> {
        if limit == 0 {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        }
        let statement = sql::list(filter, after, Some(sql::fetch_limit(limit)));
        let items = fetch_records(self.read_pool(), statement).await?;
        Ok(sql::into_page(items, limit))
    }

    async fn list_live(&self) -> Result<Vec<Sandbox>, StoreError> {
        fetch_records(self.read_pool(), sql::list(&SandboxFilter::default(), None, None)).await
    }

    async fn purge_ended_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        writes(self).await?.purge_ended_before(cutoff).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(self.read_pool())
            .await
            .map_err(B::Db::map_error)?;
        Ok(())
    }

    async fn updated_since(&self, since: DateTime<Utc>) -> Result<Vec<Sandbox>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(sql::UPDATED_SINCE)
            .bind(sql::nanos(since))
            .fetch_all(self.read_pool())
            .await
            .map_err(B::Db::map_error)?;
        sql::decode_all(&rows)
    }

    /// Safe against concurrent claims through the backend's dialect: SQLite's write
    /// transaction holds the database's write lock from the select on; PostgreSQL's select
    /// locks the row it returns and passes over rows other claims have locked.
    async fn claim_pooled(
        &self,
        pool: &str,
        claim: &(dyn Fn(Sandbox) -> Sandbox + Send + Sync),
    ) -> Result<Option<Sandbox>, StoreError> {
        writes(self).await?.claim(pool, claim, &Quota::default()).await
    }

    async fn claim_pooled_within(
        &self,
        pool: &str,
        claim: &(dyn Fn(Sandbox) -> Sandbox + Send + Sync),
        quota: &Quota,
    ) -> Result<Option<Sandbox>, StoreError> {
        writes(self).await?.claim(pool, claim, quota).await
    }

    async fn insert_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        writes(self).await?.insert_key(key).await
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        identity::fetch_key(self.read_pool(), identity::KEY_BY_HASH, hash).await
    }

    async fn get_key(&self, id: &KeyId) -> Result<Option<ApiKey>, StoreError> {
        identity::fetch_key(self.read_pool(), identity::KEY_BY_ID, id.as_str()).await
    }

    async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let rows: Vec<KeyColumns> = sqlx::query_as(identity::LIST_KEYS)
            .fetch_all(self.read_pool())
            .await
            .map_err(B::Db::map_error)?;
        rows.into_iter().map(identity::decode_key).collect()
    }

    async fn revoke_key(&self, id: &KeyId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        writes(self).await?.revoke_key(id, at).await
    }

    async fn touch_key(&self, id: &KeyId, at: DateTime<Utc>) -> Result<(), StoreError> {
        writes(self).await?.touch_key(id, at).await
    }

    async fn set_quota(&self, owner: &str, quota: &Quota) -> Result<(), StoreError> {
        writes(self).await?.set_quota(owner, quota).await
    }

    async fn get_quota(&self, owner: &str) -> Result<Option<Quota>, StoreError> {
        let row: Option<(String, String)> = sqlx::query_as(identity::GET_QUOTA)
            .bind(owner)
            .fetch_optional(self.read_pool())
            .await
            .map_err(B::Db::map_error)?;
        Ok(row.map(identity::decode_quota).transpose()?.map(|(_, quota)| quota))
    }

    async fn list_quotas(&self) -> Result<Vec<(String, Quota)>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(identity::LIST_QUOTAS)
            .fetch_all(self.read_pool())
            .await
            .map_err(B::Db::map_error)?;
        rows.into_iter().map(identity::decode_quota).collect()
    }

    async fn delete_quota(&self, owner: &str) -> Result<bool, StoreError> {
        writes(self).await?.delete_quota(owner).await
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        writes(self).await?.append_audit(entry).await
    }

    async fn list_audit(
        &self,
        since: DateTime<Utc>,
        owner: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let statement = identity::audit_since(since, owner, limit);
        let rows: Vec<(String, String)> =
            sqlx::query_as_with(AssertSqlSafe(statement.sql), sql::arguments::<B::Db>(statement.binds)?)
                .fetch_all(self.read_pool())
                .await
                .map_err(B::Db::map_error)?;
        rows.iter().map(|(_, record)| identity::decode_audit(record)).collect()
    }

    async fn insert_template(&self, template: &Template) -> Result<(), StoreError> {
        writes(self).await?.insert_template(template).await
    }

    async fn update_template(&self, template: &Template) -> Result<(), StoreError> {
        writes(self).await?.update_template(template).await
    }

    async fn get_template(&self, name: &str, tag: &str) -> Result<Option<Template>, StoreError> {
        let row: Option<(String, String, String)> = sqlx::query_as(sql::GET_TEMPLATE)
            .bind(name)
            .bind(tag)
            .fetch_optional(self.read_pool())
            .await
            .map_err(B::Db::map_error)?;
        row.map(|(name, tag, record)| sql::decode_template(&name, &tag, &record))
            .transpose()
    }

    async fn list_templates(&self) -> Result<Vec<Template>, StoreError> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(sql::LIST_TEMPLATES)
            .fetch_all(self.read_pool())
            .await
            .map_err(B::Db::map_error)?;
        sql::decode_templates(&rows)
    }

    async fn delete_template(&self, name: &str, tag: &str) -> Result<bool, StoreError> {
        writes(self).await?.delete_template(name, tag).await
    }

    async fn insert_service(&self, service: &EnvService) -> Result<(), StoreError> {
        writes(self).await?.insert_service(service).await
    }

    async fn update_service(&self, service: &EnvService) -> Result<bool, StoreError> {
        writes(self).await?.update_service(service).await
    }

    async fn get_service(&self, id: &EnvServiceId) -> Result<Option<EnvService>, StoreError> {
        let row: Option<(String, String)> = sqlx::query_as(sql::GET_SERVICE)
            .bind(id.as_str())
            .fetch_optional(self.read_pool())
            .await
            .map_err(B::Db::map_error)?;
        row.map(|(id, record)| sql::decode_service(&id, &record)).transpose()
    }

    async fn list_services(&self) -> Result<Vec<EnvService>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(sql::LIST_SERVICES)
            .fetch_all(self.read_pool())
            .await
            .map_err(B::Db::map_error)?;
        sql::decode_services(&rows)
    }

    async fn delete_service(&self, id: &EnvServiceId) -> Result<bool, StoreError> {
        writes(self).await?.delete_service(id).await
    }

    fn is_shared(&self) -> bool {
        B::SHARED
    }

    fn describe(&self) -> String {
        self.description()
    }

    async fn sandbox_changes(&self) -> Option<tokio::sync::mpsc::Receiver<crate::SandboxChange>> {
        self.change_feed().await
    }

    async fn try_lead(&self, cluster: &str) -> Result<Option<Lease>, StoreError> {
        self.take_lead(cluster).await
    }
}

/// A write transaction of `backend`, ready for one operation.
async fn writes<B: Backend>(backend: &B) -> Result<Writes<B::Db>, StoreError> {
    Ok(Writes::new(backend.begin_write().await?))
}

/// The `(id, record)` rows of a dynamically built `statement`, decoded.
async fn fetch_records<DB>(pool: &Pool<DB>, statement: Statement) -> Result<Vec<Sandbox>, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    String: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    (String, String): for<'r> FromRow<'r, DB::Row>,
{
    let rows: Vec<(String, String)> =
        sqlx::query_as_with(AssertSqlSafe(statement.sql), sql::arguments::<DB>(statement.binds)?)
            .fetch_all(pool)
            .await
            .map_err(DB::map_error)?;
    sql::decode_all(&rows)
}

/// The one `(id, record)` row `query` selects with `binds`, decoded.
async fn fetch_one_record<DB>(
    pool: &Pool<DB>,
    query: &'static str,
    binds: &[&str],
) -> Result<Option<Sandbox>, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'a, 'q> &'a str: Encode<'q, DB>,
    for<'a> &'a str: Type<DB>,
    (String, String): for<'r> FromRow<'r, DB::Row>,
{
    let mut query = sqlx::query_as::<_, (String, String)>(query);
    for bind in binds {
        query = query.bind(*bind);
    }
    let row = query.fetch_optional(pool).await.map_err(DB::map_error)?;
    row.map(|(id, record)| sql::decode(&id, &record)).transpose()
}
