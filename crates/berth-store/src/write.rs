//! The write transactions of both backends — a new record, a whole-record update and a pool
//! claim, each with its labels, the purge of ended records, and the template and env-service
//! writes — generic over sqlx's `Database`, so SQLite and PostgreSQL differ only in how they
//! open the transaction and in their [`Dialect`].

use berth_core::{EnvService, EnvServiceId, Sandbox, Template};
use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Encode, Executor, FromRow, IntoArguments, Transaction, Type};

use crate::StoreError;
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
    /// Writes a new record. Fails with `AlreadyExists` or `DuplicateIdempotencyKey`.
    pub async fn insert(mut self, sandbox: &Sandbox) -> Result<(), StoreError> {
        let row = Row::of(sandbox)?;
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

    /// Takes the oldest claimable sandbox of `pool` and writes what `claim` makes of it. Ended
    /// here on every path, not by the drop: a dropped transaction only ends when its connection
    /// is next used, and until then it holds its locks (SQLite's write lock; on PostgreSQL a row
    /// lock that makes every other claim pass the sandbox over, as if the pool were empty).
    pub async fn claim(
        mut self,
        pool: &str,
        claim: &(dyn Fn(Sandbox) -> Sandbox + Send + Sync),
    ) -> Result<Option<Sandbox>, StoreError> {
        match self.take_pooled(pool, claim).await {
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
