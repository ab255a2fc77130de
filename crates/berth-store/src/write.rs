//! The write transactions of both backends — a new record, a whole-record update and a pool
//! claim, each with its labels, the purge of ended records, and the template and env-service
//! writes — generic over sqlx's `Database`, so SQLite and PostgreSQL differ only in how they
//! open the transaction and in their [`Dialect`].

use berth_core::{ApiKey, AuditEntry, EnvService, EnvServiceId, KeyId, Quota, Sandbox, Template};
use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Encode, Executor, FromRow, IntoArguments, Transaction, Type};

use crate::StoreError;
use crate::identity::{self, KeyRow};
use crate::sql::{self, Dialect, Row, ServiceRow, TemplateRow};

/// One write transaction of backend `DB`; each operation consumes it and ends it (committed on
/// success, rolled back otherwise).
pub(crate) struct Writes<DB: Dialect> {
    tx: Transaction<'static, DB>,
}

impl<DB: Dialect> Writes<DB> {
    pub fn new(tx: Transaction<'static, DB>) -> Self {
        Writes { tx }
    }
}

impl<DB> Writes<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'a, 'q> &'a str: Encode<'q, DB>,
    for<'a> &'a str: Type<DB>,
    String: for<'q> Encode<'q, DB> + Type<DB>,
    Option<String>: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    Option<i64>: for<'q> Encode<'q, DB> + Type<DB>,
    (String, String): for<'r> FromRow<'r, DB::Row>,
{
    /// Writes a new record if it fits in its owner's `quota`. Fails with `AlreadyExists`,
    /// `DuplicateIdempotencyKey` or `QuotaExceeded`.
    pub async fn insert(mut self, sandbox: &Sandbox, quota: &Quota) -> Result<(), StoreError> {
        let row = Row::of(sandbox)?;
        self.admit(sandbox, quota).await?;
        // Checked first so a record that clashes on both id and idempotency key is reported as
        // existing, whichever unique index the database happens to check first. A concurrent
        // insert of the same id still loses on the primary key, reported the same way.
        let exists = sqlx::query(sql::SANDBOX_EXISTS)
            .bind(sandbox.id.as_str())
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(DB::map_error)?;
        if exists.is_some() {
            return Err(StoreError::AlreadyExists(sandbox.id.clone()));
        }
        sql::bind_row(sqlx::query(sql::INSERT_SANDBOX), row)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| sql::write_error(sandbox, e, DB::map_error))?;
        self.insert_labels(sandbox).await?;
        self.tx.commit().await.map_err(DB::map_error)
    }

    /// Replaces an existing record whole. Fails with `NotFound`.
    pub async fn update(mut self, sandbox: &Sandbox) -> Result<(), StoreError> {
        let row = Row::of(sandbox)?;
        self.update_row(sandbox, row).await?;
        self.tx.commit().await.map_err(DB::map_error)
    }

    /// Replaces the record if the stored one is still the write of `read_at`; `false`, writing
    /// nothing, when another write came between (or the record is gone).
    pub async fn update_if_unchanged(mut self, sandbox: &Sandbox, read_at: DateTime<Utc>) -> Result<bool, StoreError> {
        let row = Row::of(sandbox)?;
        let updated = sql::bind_row(sqlx::query(sql::UPDATE_SANDBOX_IF_UNCHANGED), row)
            .bind(sql::nanos(read_at))
            .execute(&mut *self.tx)
            .await
            .map_err(|e| sql::write_error(sandbox, e, DB::map_error))?;
        if DB::rows_affected(&updated) == 0 {
            self.tx.rollback().await.map_err(DB::map_error)?;
            return Ok(false);
        }
        sqlx::query(sql::DELETE_LABELS)
            .bind(sandbox.id.as_str())
            .execute(&mut *self.tx)
            .await
            .map_err(DB::map_error)?;
        self.insert_labels(sandbox).await?;
        self.tx.commit().await.map_err(DB::map_error)?;
        Ok(true)
    }

    /// Takes the oldest claimable sandbox of `pool` and writes what `claim` makes of it. Ended
    /// here on every path, not by the drop: a dropped transaction only ends when its connection
    /// is next used, and until then it holds its locks (SQLite's write lock; on PostgreSQL a row
    /// lock that makes every other claim pass the sandbox over, as if the pool were empty).
    pub async fn claim(
        mut self,
        pool: &str,
        claim: &(dyn Fn(Sandbox) -> Sandbox + Send + Sync),
        quota: &Quota,
    ) -> Result<Option<Sandbox>, StoreError> {
        match self.take_pooled(pool, claim, quota).await {
            Ok(Some(claimed)) => {
                self.tx.commit().await.map_err(DB::map_error)?;
                Ok(Some(claimed))
            }
            Ok(None) => {
                self.tx.rollback().await.map_err(DB::map_error)?;
                Ok(None)
            }
            Err(error) => {
                if let Err(rollback) = self.tx.rollback().await {
                    tracing::debug!(%rollback, "rolling back a failed claim failed");
                }
                Err(error)
            }
        }
    }

    async fn take_pooled(
        &mut self,
        pool: &str,
        claim: &(dyn Fn(Sandbox) -> Sandbox + Send + Sync),
        quota: &Quota,
    ) -> Result<Option<Sandbox>, StoreError> {
        let candidate: Option<(String, String)> = sqlx::query_as(DB::NEXT_POOLED)
            .bind(pool)
            .bind(sql::CLAIMABLE_STATUS.as_str())
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(DB::map_error)?;
        let Some((id, record)) = candidate else {
            return Ok(None);
        };
        let taken = sql::decode(&id, &record)?;
        let claimed = claim(taken.clone());
        sql::check_claimed(pool, &taken, &claimed)?;
        self.admit(&claimed, quota).await?;
        let row = Row::of(&claimed)?;
        self.update_row(&claimed, row).await?;
        Ok(Some(claimed))
    }

    /// Replaces the row of `sandbox` (whose values are `row`) and its labels. Fails with
    /// `NotFound` when there is no such row. The UPDATE locks the row until commit, so
    /// concurrent updates of one sandbox (from any process) apply one after the other.
    async fn update_row(&mut self, sandbox: &Sandbox, row: Row) -> Result<(), StoreError> {
        let updated = sql::bind_row(sqlx::query(sql::UPDATE_SANDBOX), row)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| sql::write_error(sandbox, e, DB::map_error))?;
        if DB::rows_affected(&updated) == 0 {
            return Err(StoreError::NotFound(sandbox.id.clone()));
        }
        sqlx::query(sql::DELETE_LABELS)
            .bind(sandbox.id.as_str())
            .execute(&mut *self.tx)
            .await
            .map_err(DB::map_error)?;
        self.insert_labels(sandbox).await
    }

    /// Deletes ended records whose `ended_at` is before `cutoff`; returns how many.
    pub async fn purge_ended_before(mut self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let statement = sql::purge_ended_before(cutoff);
        let deleted = sqlx::query_with(AssertSqlSafe(statement.sql), sql::arguments::<DB>(statement.binds)?)
            .execute(&mut *self.tx)
            .await
            .map_err(DB::map_error)?;
        self.tx.commit().await.map_err(DB::map_error)?;
        Ok(DB::rows_affected(&deleted))
    }

    /// Writes a new template. Fails with `TemplateExists` when (name, tag) is taken.
    pub async fn insert_template(mut self, template: &Template) -> Result<(), StoreError> {
        let row = TemplateRow::of(template)?;
        let inserted = sql::bind_template_row(sqlx::query(sql::INSERT_TEMPLATE), row)
            .execute(&mut *self.tx)
            .await
            .map_err(DB::map_error)?;
        if DB::rows_affected(&inserted) == 0 {
            return Err(sql::template_exists(template));
        }
        self.tx.commit().await.map_err(DB::map_error)
    }

    /// Replaces an existing template whole. Fails with `TemplateNotFound`.
    pub async fn update_template(mut self, template: &Template) -> Result<(), StoreError> {
        let row = TemplateRow::of(template)?;
        let updated = sql::bind_template_row(sqlx::query(sql::UPDATE_TEMPLATE), row)
            .execute(&mut *self.tx)
            .await
            .map_err(DB::map_error)?;
        if DB::rows_affected(&updated) == 0 {
            return Err(sql::template_not_found(template));
        }
        self.tx.commit().await.map_err(DB::map_error)
    }

    /// Deletes the template; returns whether it existed.
    pub async fn delete_template(mut self, name: &str, tag: &str) -> Result<bool, StoreError> {
        let deleted = sqlx::query(sql::DELETE_TEMPLATE)
            .bind(name)
            .bind(tag)
            .execute(&mut *self.tx)
            .await
            .map_err(DB::map_error)?;
        self.tx.commit().await.map_err(DB::map_error)?;
        Ok(DB::rows_affected(&deleted) > 0)
    }

    /// Writes a new service. Fails with `Other` when its id is taken.
    pub async fn insert_service(mut self, service: &EnvService) -> Result<(), StoreError> {
        let row = ServiceRow::of(service)?;
        let inserted = sqlx::query(sql::INSERT_SERVICE)
            .bind(row.id)
            .bind(row.revision)
            .bind(row.created_at)
            .bind(row.updated_at)
            .bind(row.record)
            .execute(&mut *self.tx)
            .await
            .map_err(DB::map_error)?;
        if DB::rows_affected(&inserted) == 0 {
            return Err(StoreError::Other(format!("service {} already exists", service.id)));
        }
        self.tx.commit().await.map_err(DB::map_error)
    }

    /// Replaces the service if the stored one is at `service.revision - 1`; false (nothing
    /// written) when it is missing or was written by someone else since it was read.
    pub async fn update_service(mut self, service: &EnvService) -> Result<bool, StoreError> {
        let row = ServiceRow::of(service)?;
        let Some(previous) = row.revision.checked_sub(1) else {
            return Ok(false);
        };
        let updated = sqlx::query(sql::UPDATE_SERVICE)
            .bind(row.id)
            .bind(row.revision)
            .bind(row.created_at)
            .bind(row.updated_at)
            .bind(row.record)
            .bind(previous)
            .execute(&mut *self.tx)
            .await
            .map_err(DB::map_error)?;
        self.tx.commit().await.map_err(DB::map_error)?;
        Ok(DB::rows_affected(&updated) > 0)
    }

    /// Deletes the service; returns whether it existed.
    pub async fn delete_service(mut self, id: &EnvServiceId) -> Result<bool, StoreError> {
        let deleted = sqlx::query(sql::DELETE_SERVICE)
            .bind(id.as_str())
            .execute(&mut *self.tx)
            .await
            .map_err(DB::map_error)?;
        self.tx.commit().await.map_err(DB::map_error)?;
        Ok(DB::rows_affected(&deleted) > 0)
    }

    /// Checks `sandbox` against its owner's `quota` inside this transaction, after taking the
    /// owner's write turn where the backend needs one. Nothing to do for an unlimited quota.
    async fn admit(&mut self, sandbox: &Sandbox, quota: &Quota) -> Result<(), StoreError> {
        if quota.is_unlimited() {
            return Ok(());
        }
        if let Some(lock) = DB::LOCK_OWNER {
            sqlx::query(lock)
                .bind(sandbox.owner.as_str())
                .execute(&mut *self.tx)
                .await
                .map_err(DB::map_error)?;
        }
        let statement = identity::live_of_owner(&sandbox.owner);
        let rows: Vec<(String, String)> =
            sqlx::query_as_with(AssertSqlSafe(statement.sql), sql::arguments::<DB>(statement.binds)?)
                .fetch_all(&mut *self.tx)
                .await
                .map_err(DB::map_error)?;
        identity::admit(quota, &sql::decode_all(&rows)?, sandbox)
    }

    /// Writes a new API key. Fails with `Other` when its id or hash is taken.
    pub async fn insert_key(mut self, key: &ApiKey) -> Result<(), StoreError> {
        let row = KeyRow::of(key)?;
        let inserted = sqlx::query(identity::INSERT_KEY)
            .bind(row.id)
            .bind(row.hash)
            .bind(row.owner)
            .bind(row.created_at)
            .bind(row.record)
            .execute(&mut *self.tx)
            .await
            .map_err(DB::map_error)?;
        if DB::rows_affected(&inserted) == 0 {
            return Err(StoreError::Other(format!(
                "key {} (or its secret) already exists",
                key.id
            )));
        }
        self.tx.commit().await.map_err(DB::map_error)
    }

    /// Revokes the key at `at` unless it already was; returns whether the key exists.
    pub async fn revoke_key(mut self, id: &KeyId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        sqlx::query(identity::REVOKE_KEY)
            .bind(id.as_str())
            .bind(sql::nanos(at))
            .execute(&mut *self.tx)
            .await
            .map_err(DB::map_error)?;
        let exists = sqlx::query(identity::KEY_EXISTS)
            .bind(id.as_str())
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(DB::map_error)?;
        self.tx.commit().await.map_err(DB::map_error)?;
        Ok(exists.is_some())
    }

    pub async fn touch_key(mut self, id: &KeyId, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(identity::TOUCH_KEY)
            .bind(id.as_str())
            .bind(sql::nanos(at))
            .execute(&mut *self.tx)
            .await
            .map_err(DB::map_error)?;
        self.tx.commit().await.map_err(DB::map_error)
    }

    pub async fn set_quota(mut self, owner: &str, quota: &Quota) -> Result<(), StoreError> {
        sqlx::query(identity::UPSERT_QUOTA)
            .bind(owner)
            .bind(identity::encode_quota(owner, quota)?)
            .execute(&mut *self.tx)
            .await
            .map_err(DB::map_error)?;
        self.tx.commit().await.map_err(DB::map_error)
    }

    pub async fn delete_quota(mut self, owner: &str) -> Result<bool, StoreError> {
        let deleted = sqlx::query(identity::DELETE_QUOTA)
            .bind(owner)
            .execute(&mut *self.tx)
            .await
            .map_err(DB::map_error)?;
        self.tx.commit().await.map_err(DB::map_error)?;
        Ok(DB::rows_affected(&deleted) > 0)
    }

    pub async fn append_audit(mut self, entry: &AuditEntry) -> Result<(), StoreError> {
        sqlx::query(identity::APPEND_AUDIT)
            .bind(sql::nanos(entry.time))
            .bind(entry.owner.clone())
            .bind(identity::encode_audit(entry)?)
            .execute(&mut *self.tx)
            .await
            .map_err(DB::map_error)?;
        self.tx.commit().await.map_err(DB::map_error)
    }

    async fn insert_labels(&mut self, sandbox: &Sandbox) -> Result<(), StoreError> {
        for (key, value) in &sandbox.spec.labels {
            sqlx::query(sql::INSERT_LABEL)
                .bind(sandbox.id.as_str())
                .bind(key.as_str())
                .bind(value.as_str())
                .execute(&mut *self.tx)
                .await
                .map_err(DB::map_error)?;
        }
        Ok(())
    }
}
