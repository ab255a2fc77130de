//! The SQLite backend: [`SqliteStore`], one file in WAL mode with a single-connection writer
//! pool (writes serialize, `BEGIN IMMEDIATE`) and a reader pool, schema from `migrations/sqlite`;
//! leadership is an exclusive lock on a file `<database>.leader.<cluster>` beside it.

use std::ffi::OsString;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Sqlite;
use sqlx::error::DatabaseError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::backend::Backend;
use crate::sql::{self, Dialect};
use crate::{Lease, StoreError};

/// How long a connection waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a caller waits for a pooled connection (writers queue here, one at a time).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
const READER_CONNECTIONS: u32 = 4;

/// Sandboxes in one SQLite file. Cheap to clone: clones share the pools.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    path: PathBuf,
    /// Exactly one connection: every write transaction runs on it, so writers in this process
    /// queue in the pool instead of racing for SQLite's lock.
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path` and applies pending migrations.
    /// The directory must exist.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);

        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(|e| open_error(path, e))?;
        sqlx::migrate!("migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|e| migrate_error(path, e))?;

        // Opened after the migrations, so readers never see a half-built schema.
        let reader = SqlitePoolOptions::new()
            .max_connections(READER_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| open_error(path, e))?;

        tracing::debug!(path = %path.display(), "opened sqlite store");
        Ok(SqliteStore {
            path: path.to_owned(),
            writer,
            reader,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes every connection, waiting for in-flight queries (the last close checkpoints the
    /// WAL into the main file). Later calls fail with `Unavailable`.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// The file whose exclusive lock is leadership of deployment `cluster`, beside the
    /// database: `<database>.leader.<cluster>`, the id percent-encoded down to `[A-Za-z0-9_-]`
    /// (or hashed, when that would make an overlong file name).
    pub fn leader_lock_path(&self, cluster: &str) -> PathBuf {
        let mut name = OsString::from(self.path.as_os_str());
        name.push(".leader.");
        name.push(lock_file_suffix(cluster));
        PathBuf::from(name)
    }
}

impl Dialect for Sqlite {
    const NEXT_POOLED: &'static str = sql::NEXT_POOLED;
    const LOCK_OWNER: Option<&'static str> = None;

    fn map_error(error: sqlx::Error) -> StoreError {
        map_error(error)
    }

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}

/// Longest encoded cluster id used as is in a lock file name; file names end at 255 bytes.
const MAX_LOCK_SUFFIX: usize = 100;

/// `cluster` as a file name part, so distinct ids get distinct lock files (overlong ones by a
/// 64-bit hash, which makes a clash practically impossible rather than impossible).
fn lock_file_suffix(cluster: &str) -> String {
    let mut encoded = String::with_capacity(cluster.len());
    for byte in cluster.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    if encoded.len() <= MAX_LOCK_SUFFIX {
        return encoded;
    }
    // FNV-1a: stable across builds and platforms, unlike std's hasher. `#` never appears in
    // the encoded form, so hashed names cannot collide with encoded ones.
    let hash = cluster.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("#{hash:016x}")
}

/// Takes the lock on `path` (creating the file) if no other open file holds it.
fn try_lock_leader_file(path: &Path) -> Result<Option<File>, StoreError> {
    let unavailable = |e: std::io::Error| StoreError::Unavailable(format!("cannot lock {}: {e}", path.display()));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(unavailable)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(unavailable(e)),
    }
}

#[async_trait]
impl Backend for SqliteStore {
    type Db = Sqlite;

    /// Another process could open the file too, but berth runs one process per SQLite file:
    /// the file lives on one machine's disk and its writers queue on SQLite's single lock.
    const SHARED: bool = false;

    fn read_pool(&self) -> &SqlitePool {
        &self.reader
    }

    /// On the single writer connection, holding SQLite's write lock from the first statement,
    /// so a transaction can never fail to upgrade a read lock midway (which SQLite reports as
    /// busy at once, without waiting out the busy timeout). That lock also makes a pool claim
    /// safe: no other claim, from this process or another on the same file, can take the same
    /// row between the select and the write.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Sqlite>, StoreError> {
        self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_error)
    }

    fn description(&self) -> String {
        format!("sqlite {}", self.path.display())
    }

    /// The lock is taken on its own open file, so it conflicts with every other lease on the
    /// same database, this process's included, and goes away with the file when the lease is
    /// dropped or the process dies. It cannot be lost while held.
    async fn take_lead(&self, cluster: &str) -> Result<Option<Lease>, StoreError> {
        // Opening and locking a local file is quick (the lock does not wait), so this runs
        // on the async thread.
        let file = try_lock_leader_file(&self.leader_lock_path(cluster))?;
        Ok(file.map(|file| Lease::held(Box::new(file), None)))
    }
}

/// SQLite primary result codes (the low byte of extended codes) that mean the database is
/// out of reach rather than the request being wrong.
mod codes {
    pub const BUSY: i32 = 5;
    pub const LOCKED: i32 = 6;
    pub const NOMEM: i32 = 7;
    pub const READONLY: i32 = 8;
    pub const IOERR: i32 = 10;
    pub const CORRUPT: i32 = 11;
    pub const FULL: i32 = 13;
    pub const CANTOPEN: i32 = 14;
    pub const PROTOCOL: i32 = 15;
    pub const NOTADB: i32 = 26;
}

fn map_error(error: sqlx::Error) -> StoreError {
    sql::map_error(error, classify_database_error)
}

/// SQLite's own errors by their primary result code.
fn classify_database_error(db: &dyn DatabaseError) -> StoreError {
    let primary = db
        .code()
        .and_then(|code| code.parse::<i32>().ok())
        .map(|code| code & 0xff);
    match primary {
        Some(
            codes::BUSY
            | codes::LOCKED
            | codes::NOMEM
            | codes::READONLY
            | codes::IOERR
            | codes::FULL
            | codes::CANTOPEN
            | codes::PROTOCOL,
        ) => StoreError::Unavailable(db.to_string()),
        Some(codes::CORRUPT | codes::NOTADB) => StoreError::Corrupt(db.to_string()),
        _ => StoreError::Other(db.to_string()),
    }
}

fn open_error(path: &Path, error: sqlx::Error) -> StoreError {
    match map_error(error) {
        StoreError::Unavailable(message) => {
            StoreError::Unavailable(format!("cannot open {}: {message}", path.display()))
        }
        StoreError::Corrupt(message) => StoreError::Corrupt(format!("{}: {message}", path.display())),
        StoreError::Other(message) => StoreError::Other(format!("cannot open {}: {message}", path.display())),
        other => other,
    }
}

fn migrate_error(path: &Path, error: sqlx::migrate::MigrateError) -> StoreError {
    use sqlx::migrate::MigrateError as M;
    match error {
        M::Execute(error) | M::ExecuteMigration(error, _) => open_error(path, error),
        M::VersionMissing(version) => StoreError::Other(format!(
            "{} was migrated by a newer berth (migration {version} is unknown to this one)",
            path.display()
        )),
        M::VersionMismatch(version) => StoreError::Corrupt(format!(
            "{}: applied migration {version} differs from this berth's",
            path.display()
        )),
        other => StoreError::Other(format!("cannot migrate {}: {other}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::DateTime;
    use sqlx::AssertSqlSafe;

    use super::*;
    use crate::{SandboxFilter, Store};

    async fn fresh() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("berth.db"))
            .await
            .expect("open store");
        (store, dir)
    }

    async fn pragma_text(pool: &SqlitePool, query: &'static str) -> String {
        let (value,): (String,) = sqlx::query_as(query).fetch_one(pool).await.expect("pragma answers");
        value
    }

    async fn pragma_int(pool: &SqlitePool, query: &'static str) -> i64 {
        let (value,): (i64,) = sqlx::query_as(query).fetch_one(pool).await.expect("pragma answers");
        value
    }

    #[tokio::test]
    async fn every_connection_has_the_configured_pragmas() {
        let (store, _dir) = fresh().await;
        for pool in [&store.writer, &store.reader] {
            assert_eq!(pragma_text(pool, "PRAGMA journal_mode").await, "wal");
            assert_eq!(pragma_int(pool, "PRAGMA synchronous").await, 1, "NORMAL");
            assert_eq!(pragma_int(pool, "PRAGMA foreign_keys").await, 1);
            assert_eq!(pragma_int(pool, "PRAGMA busy_timeout").await, 10_000);
        }
        assert_eq!(store.writer.options().get_max_connections(), 1);
    }

    /// The label filter must probe indexes, never scan the label table.
    #[tokio::test]
    async fn label_filters_use_indexes() {
        let (store, _dir) = fresh().await;
        let filter = SandboxFilter {
            labels: BTreeMap::from([("team".into(), "red".into()), ("env".into(), "prod".into())]),
            ..SandboxFilter::default()
        };
        let statement = sql::list(&filter, None, Some(10));
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as_with(
            AssertSqlSafe(format!("EXPLAIN QUERY PLAN {}", statement.sql)),
            sql::arguments::<Sqlite>(statement.binds).expect("binds"),
        )
        .fetch_all(&store.reader)
        .await
        .expect("plan");
        let details: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
        assert!(
            details
                .iter()
                .all(|d| !(d.starts_with("SCAN l") || d.starts_with("SCAN sandbox_labels"))),
            "{details:#?}"
        );
        assert!(details.iter().any(|d| d.starts_with("SEARCH l")), "{details:#?}");
    }

    /// A claim finds a pool's oldest sandbox through the partial pool index, never a scan of
    /// every sandbox.
    #[tokio::test]
    async fn claims_search_the_pool_index() {
        let (store, _dir) = fresh().await;
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {}", sql::NEXT_POOLED)))
                .bind("py:latest")
                .bind(sql::CLAIMABLE_STATUS.as_str())
                .fetch_all(&store.reader)
                .await
                .expect("plan");
        let details: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
        assert!(
            details
                .iter()
                .any(|d| d.starts_with("SEARCH") && d.contains("sandboxes_pool_created_at")),
            "{details:#?}"
        );
    }

    #[tokio::test]
    async fn unique_violations_are_told_apart() {
        let (store, _dir) = fresh().await;
        let mut first = crate::contract::sample("alice", DateTime::from_timestamp_nanos(1_000));
        first.idempotency_key = Some("k".into());
        store.insert(&first).await.expect("first insert");

        let mut same_key = crate::contract::sample("alice", DateTime::from_timestamp_nanos(2_000));
        same_key.idempotency_key = Some("k".into());
        match store.insert(&same_key).await {
            Err(StoreError::DuplicateIdempotencyKey { owner, key }) => {
                assert_eq!((owner.as_str(), key.as_str()), ("alice", "k"));
            }
            other => panic!("expected DuplicateIdempotencyKey, got {other:?}"),
        }
        // Same id and same key at once: the id is reported.
        match store.insert(&first).await {
            Err(StoreError::AlreadyExists(id)) => assert_eq!(id, first.id),
            other => panic!("expected AlreadyExists, got {other:?}"),
        }
    }
}
