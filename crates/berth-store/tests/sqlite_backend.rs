//! What only the SQLite backend promises: WAL on disk, migrations re-applied harmlessly on
//! reopen (and `updated_at` filled in for records written before it existed, templates and pools
//! added to databases from before them), durability across
//! close and reopen, several stores on one file, label rows kept in step, how broken files and
//! records are reported, and leadership as a lock file beside the database.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::path::Path;
use std::sync::Arc;

use berth_core::{Reason, Status};
use std::time::Duration;

use berth_store::contract::{at, at_secs, labelled, sample, sample_template};
use berth_store::{SandboxFilter, SqliteStore, Store, StoreError};
use chrono::DateTime;
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};

/// A plain connection to the file, beside the store's own pools.
async fn raw(path: &Path) -> SqliteConnection {
    SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
        .await
        .expect("raw connection")
}

async fn count(path: &Path, query: &'static str) -> i64 {
    let mut conn = raw(path).await;
    let (n,): (i64,) = sqlx::query_as(query).fetch_one(&mut conn).await.expect("count");
    n
}

/// Number of files in migrations/sqlite: every one must be recorded as applied.
fn migration_files() -> i64 {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let files = std::fs::read_dir(dir)
        .expect("migrations dir")
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|ext| ext == "sql"))
        })
        .count();
    i64::try_from(files).expect("few files")
}

#[tokio::test]
async fn the_file_is_in_wal_mode() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("berth.db");
    let store = SqliteStore::open(&path).await.expect("open");
    assert_eq!(store.path(), path);

    // WAL is a property of the file: a connection that asks for nothing still gets it.
    let mut conn = raw(&path).await;
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .expect("pragma");
    assert_eq!(mode, "wal");
    store.insert(&sample("alice", at(0))).await.expect("insert");
    assert!(path.with_extension("db-wal").exists(), "the WAL file is in use");
}

#[tokio::test]
async fn data_survives_close_and_reopen_and_migrations_rerun_harmlessly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("berth.db");
    let first = labelled(sample("alice", at(0)), &[("team", "red")]);
    let second = sample("bob", at(1));

    let store = SqliteStore::open(&path).await.expect("open new file");
    store.insert(&first).await.expect("insert");
    store.close().await;

    let store = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(store.get(&first.id).await.expect("get"), Some(first.clone()));
    store.insert(&second).await.expect("insert after reopen");
    // Dropped without close: committed writes are durable all the same.
    drop(store);

    let store = SqliteStore::open(&path).await.expect("reopen again");
    let all = store.list(&SandboxFilter::default(), None, 10).await.expect("list");
    assert_eq!(all.items, vec![first.clone(), second]);
    let red = store
        .list(
            &SandboxFilter {
                labels: [("team".into(), "red".into())].into(),
                ..SandboxFilter::default()
            },
            None,
            10,
        )
        .await
        .expect("list");
    assert_eq!(red.items, vec![first]);
    store.close().await;

    assert_eq!(
        count(&path, "SELECT COUNT(*) FROM _sqlx_migrations WHERE success").await,
        migration_files(),
        "each migration recorded once"
    );
}

#[tokio::test]
async fn a_closed_store_is_unavailable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("berth.db")).await.expect("open");
    store.close().await;
    assert!(matches!(store.ping().await, Err(StoreError::Unavailable(_))));
    assert!(matches!(
        store.insert(&sample("alice", at(0))).await,
        Err(StoreError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_missing_directory_is_unavailable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("no-such-dir").join("berth.db");
    match SqliteStore::open(&path).await {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("no-such-dir"), "{message}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(!path.exists());
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_corrupt() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("berth.db");
    std::fs::write(&path, vec![b'x'; 8192]).expect("write junk");
    match SqliteStore::open(&path).await {
        Err(StoreError::Corrupt(message)) => assert!(message.contains("berth.db"), "{message}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn a_database_from_a_newer_berth_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("berth.db");
    SqliteStore::open(&path).await.expect("open").close().await;
    let mut conn = raw(&path).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99999999, 'from the future', TRUE, X'00', 0)",
    )
    .execute(&mut conn)
    .await
    .expect("fake a newer migration");
    conn.close().await.expect("close");

    match SqliteStore::open(&path).await {
        Err(StoreError::Other(message)) => assert!(message.contains("newer berth"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn an_undecodable_record_is_corrupt_and_spares_the_others() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("berth.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let good = sample("alice", at(0));
    let mut bad = sample("alice", at(1));
    bad.idempotency_key = Some("k".into());
    let foreign = sample("alice", at(2));
    for sandbox in [&good, &bad, &foreign] {
        store.insert(sandbox).await.expect("insert");
    }

    let mut conn = raw(&path).await;
    sqlx::query("UPDATE sandboxes SET record = '{\"id\": 1' WHERE id = $1")
        .bind(bad.id.as_str())
        .execute(&mut conn)
        .await
        .expect("break a record");
    // A valid record stored under another row's id.
    sqlx::query("UPDATE sandboxes SET record = (SELECT record FROM sandboxes WHERE id = $1) WHERE id = $2")
        .bind(good.id.as_str())
        .bind(foreign.id.as_str())
        .execute(&mut conn)
        .await
        .expect("misfile a record");

    assert!(matches!(store.get(&bad.id).await, Err(StoreError::Corrupt(m)) if m.contains(bad.id.as_str())));
    assert!(matches!(store.get(&foreign.id).await, Err(StoreError::Corrupt(_))));
    assert!(matches!(
        store.find_by_idempotency_key("alice", "k").await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store.list(&SandboxFilter::default(), None, 10).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(store.list_live().await, Err(StoreError::Corrupt(_))));
    assert_eq!(store.get(&good.id).await.expect("get"), Some(good));
}

#[tokio::test]
async fn label_rows_follow_updates_and_purges() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("berth.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let mut sandbox = labelled(sample("alice", at(0)), &[("a", "1"), ("b", "2"), ("c", "3")]);
    let other = labelled(sample("alice", at(1)), &[("a", "1")]);
    store.insert(&sandbox).await.expect("insert");
    store.insert(&other).await.expect("insert");
    assert_eq!(count(&path, "SELECT COUNT(*) FROM sandbox_labels").await, 4);

    sandbox.spec.labels = [("d".to_owned(), "4".to_owned())].into();
    store.update(&sandbox).await.expect("update");
    assert_eq!(count(&path, "SELECT COUNT(*) FROM sandbox_labels").await, 2);
    assert_eq!(
        count(
            &path,
            "SELECT COUNT(*) FROM sandbox_labels WHERE key = 'd' AND value = '4'"
        )
        .await,
        1
    );

    sandbox.end(Status::Terminated, Reason::Deleted, at_secs(1));
    store.update(&sandbox).await.expect("end");
    assert_eq!(store.purge_ended_before(at_secs(2)).await.expect("purge"), 1);
    assert_eq!(count(&path, "SELECT COUNT(*) FROM sandbox_labels").await, 1, "cascaded");
    assert_eq!(count(&path, "SELECT COUNT(*) FROM sandboxes").await, 1);
}

/// Two stores (as two processes would) on one file: their writer pools really contend for
/// SQLite's lock, and `BEGIN IMMEDIATE` plus the busy timeout make every write wait, not fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_write_concurrently() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("berth.db");
    let stores: [Arc<dyn Store>; 2] = [
        Arc::new(SqliteStore::open(&path).await.expect("open one")),
        Arc::new(SqliteStore::open(&path).await.expect("open two")),
    ];
    let mut tasks = Vec::new();
    for task in 0..60_i64 {
        let store = Arc::clone(&stores[usize::from(task % 2 == 0)]);
        tasks.push(tokio::spawn(async move {
            let mut sandbox = labelled(sample("alice", at(task)), &[("n", &task.to_string())]);
            store.insert(&sandbox).await?;
            sandbox.status = Status::Paused;
            store.update(&sandbox).await?;
            store.list(&SandboxFilter::default(), None, 5).await?;
            Ok::<_, StoreError>(sandbox)
        }));
    }
    let mut written = Vec::new();
    for task in tasks {
        written.push(task.await.expect("task").expect("every write succeeds"));
    }
    for store in &stores {
        let live = store.list_live().await.expect("list_live");
        assert_eq!(live.len(), written.len());
        assert!(live.iter().all(|s| s.status == Status::Paused));
    }
}

/// A database written by a berth from before `updated_at` was a column: opening it fills the
/// column from each record, to the nanosecond, so `updated_since` finds old records too.
#[tokio::test]
async fn migrating_fills_updated_at_from_the_records() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("berth.db");
    let options = SqliteConnectOptions::new().filename(&path).create_if_missing(true);
    let mut conn = SqliteConnection::connect_with(&options).await.expect("create file");
    let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let migrator = Migrator::new(migrations).await.expect("migrations");
    migrator.run_to(1, &mut conn).await.expect("schema v1 only");

    let mut precise = sample("alice", at(0));
    precise.updated_at = DateTime::from_timestamp_nanos(1_750_000_123_987_654_321);
    let mut whole_seconds = sample("alice", at(1));
    whole_seconds.updated_at = DateTime::from_timestamp(1_750_000_200, 0).expect("time");
    let mut milliseconds = sample("bob", at(2));
    milliseconds.updated_at = DateTime::from_timestamp_nanos(1_750_000_300_120_000_000);
    let unreadable = sample("carol", at_secs(3));
    for sandbox in [&precise, &whole_seconds, &milliseconds, &unreadable] {
        let mut record = serde_json::to_value(sandbox).expect("encode");
        if sandbox.id == unreadable.id {
            record["updated_at"] = serde_json::Value::from("yesterday");
        }
        sqlx::query(
            "INSERT INTO sandboxes (id, status, owner, created_at, expires_at, record) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(sandbox.id.as_str())
        .bind(sandbox.status.as_str())
        .bind(&sandbox.owner)
        .bind(sandbox.created_at.timestamp_nanos_opt().expect("in range"))
        .bind(sandbox.expires_at.timestamp_nanos_opt().expect("in range"))
        .bind(record.to_string())
        .execute(&mut conn)
        .await
        .expect("insert a v1 row");
    }
    conn.close().await.expect("close");

    SqliteStore::open(&path).await.expect("open migrates").close().await;
    let mut conn = raw(&path).await;
    for sandbox in [&precise, &whole_seconds, &milliseconds] {
        let (stored,): (i64,) = sqlx::query_as("SELECT updated_at FROM sandboxes WHERE id = $1")
            .bind(sandbox.id.as_str())
            .fetch_one(&mut conn)
            .await
            .expect("updated_at");
        assert_eq!(
            stored,
            sandbox.updated_at.timestamp_nanos_opt().expect("in range"),
            "{}",
            sandbox.updated_at
        );
    }
    let (fallback,): (i64,) = sqlx::query_as("SELECT updated_at FROM sandboxes WHERE id = $1")
        .bind(unreadable.id.as_str())
        .fetch_one(&mut conn)
        .await
        .expect("updated_at");
    assert_eq!(
        fallback,
        unreadable.created_at.timestamp_nanos_opt().expect("in range"),
        "an unreadable value falls back to the creation time"
    );
}

/// A database written by a berth from before templates and pools: opening it adds both, its
/// records come back unpooled, and the new table and column work at once.
#[tokio::test]
async fn migrating_adds_templates_and_leaves_old_records_unpooled() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("berth.db");
    let options = SqliteConnectOptions::new().filename(&path).create_if_missing(true);
    let mut conn = SqliteConnection::connect_with(&options).await.expect("create file");
    let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let migrator = Migrator::new(migrations).await.expect("migrations");
    migrator.run_to(2, &mut conn).await.expect("schema v2 only");
    let old = labelled(sample("alice", at(0)), &[("team", "red")]);
    // Encoded as a berth without pools wrote it: no `template` or `pool` fields at all.
    let mut record = serde_json::to_value(&old).expect("encode");
    if let Some(fields) = record.as_object_mut() {
        fields.remove("template");
        fields.remove("pool");
    }
    sqlx::query(
        "INSERT INTO sandboxes (id, status, owner, created_at, updated_at, expires_at, record) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(old.id.as_str())
    .bind(old.status.as_str())
    .bind(&old.owner)
    .bind(old.created_at.timestamp_nanos_opt().expect("in range"))
    .bind(old.updated_at.timestamp_nanos_opt().expect("in range"))
    .bind(old.expires_at.timestamp_nanos_opt().expect("in range"))
    .bind(record.to_string())
    .execute(&mut conn)
    .await
    .expect("insert a v2 row");
    conn.close().await.expect("close");

    let store = SqliteStore::open(&path).await.expect("open migrates");
    assert_eq!(store.get(&old.id).await.expect("get"), Some(old.clone()));
    let unpooled = store
        .list(
            &SandboxFilter {
                pooled: Some(false),
                ..SandboxFilter::default()
            },
            None,
            10,
        )
        .await
        .expect("list");
    assert_eq!(unpooled.items, vec![old]);
    assert_eq!(
        store
            .claim_pooled("py:latest", &|sandbox| sandbox)
            .await
            .expect("claim"),
        None
    );
    let template = sample_template("py", "latest", at(1));
    store.insert_template(&template).await.expect("insert_template");
    assert_eq!(store.list_templates().await.expect("list_templates"), vec![template]);
    store.close().await;
    assert_eq!(
        count(&path, "SELECT COUNT(*) FROM _sqlx_migrations WHERE success").await,
        migration_files()
    );
}

#[tokio::test]
async fn describe_names_the_file_and_the_store_is_not_shared() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("berth.db");
    let store = SqliteStore::open(&path).await.expect("open");
    assert_eq!(store.describe(), format!("sqlite {}", path.display()));
    assert!(!store.is_shared());
}

/// Leadership is a lock on `<database>.leader.<cluster>`: held by an open file, so it conflicts
/// with every other open of it (this process's too), cannot be lost, and ends with the file.
#[tokio::test]
async fn leadership_is_a_lock_file_beside_the_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("berth.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let lock_path = store.leader_lock_path("prod");
    assert_eq!(lock_path, dir.path().join("berth.db.leader.prod"));
    assert_eq!(
        store.leader_lock_path("a/b c"),
        dir.path().join("berth.db.leader.a%2Fb%20c"),
        "ids are encoded into one file name"
    );
    let long = store.leader_lock_path(&"x".repeat(300));
    let name = long.file_name().expect("file name").to_string_lossy().into_owned();
    assert!(name.len() < 64, "{name}");
    assert_ne!(long, store.leader_lock_path(&"x".repeat(301)));

    let mut lease = store.try_lead("prod").await.expect("try_lead").expect("leads");
    assert!(lock_path.exists());
    // Another process's view: its own open of the file cannot take the lock.
    let file = std::fs::File::open(&lock_path).expect("open the lock file");
    assert!(matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock)));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), lease.lost())
            .await
            .is_err(),
        "a file lock is never lost"
    );
    drop(lease);
    file.try_lock().expect("free once the lease is dropped");
    drop(file);
    assert!(store.try_lead("prod").await.expect("try_lead").is_some());
}

#[tokio::test]
async fn an_unwritable_lock_file_is_unavailable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("berth.db");
    let store = SqliteStore::open(&path).await.expect("open");
    // A directory where the lock file should be: it cannot be opened for writing.
    std::fs::create_dir(store.leader_lock_path("prod")).expect("block the lock path");
    match store.try_lead("prod").await {
        Err(StoreError::Unavailable(message)) => assert!(message.contains("berth.db.leader.prod"), "{message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}
