//! What only the PostgreSQL backend promises: migrations re-applied harmlessly (also by
//! processes starting at once), no password in any message, a fast failure on an unreachable
//! server, racing writers on separate handles, leadership lost with its connection (whether
//! the server ends the session or the leader vanishes), and writes announced to other handles.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_core::Status;
use berth_store::contract::{at, labelled, sample};
use berth_store::postgres::LEADER_APPLICATION_NAME;
use berth_store::{PostgresStore, SandboxFilter, Store, StoreError};
use common::{TestDatabase, admin_url, with_database};
use sqlx::{Connection, PgConnection};

/// Number of files in migrations/postgres: every one must be recorded as applied.
fn migration_files() -> i64 {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
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

/// `url` with `password` set (a trust-auth test server ignores it).
fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (user_info, host) = rest.split_once('@').expect("a user in the test URL");
    let user = user_info.split_once(':').map_or(user_info, |(user, _)| user);
    format!("{scheme}://{user}:{password}@{host}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_rerun_harmlessly_also_from_processes_starting_at_once() {
    let database = TestDatabase::create().await;
    let connects: Vec<_> = (0..4)
        .map(|_| {
            let url = database.url().to_owned();
            tokio::spawn(async move { PostgresStore::connect(&url).await })
        })
        .collect();
    for connect in connects {
        connect
            .await
            .expect("connect task")
            .expect("concurrent first connects all migrate or wait their turn");
    }
    let sandbox = labelled(sample("alice", at(0)), &[("team", "red")]);
    let store = PostgresStore::connect(database.url()).await.expect("connect");
    store.insert(&sandbox).await.expect("insert");
    store.close().await;

    let store = PostgresStore::connect(database.url()).await.expect("connect again");
    assert_eq!(store.get(&sandbox.id).await.expect("get"), Some(sandbox));
    let mut conn = PgConnection::connect(database.url()).await.expect("raw connection");
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await
        .expect("count migrations");
    assert_eq!(applied, migration_files(), "each migration recorded once");
}

#[tokio::test]
async fn the_password_never_shows() {
    const PASSWORD: &str = "hunter2-very-secret";
    let database = TestDatabase::create().await;

    let store = PostgresStore::connect(&with_password(database.url(), PASSWORD))
        .await
        .expect("trust auth ignores the password");
    let description = store.describe();
    assert_eq!(
        description,
        format!("postgres 127.0.0.1:{}/{}", port_of(database.url()), database.name()),
        "host:port/db"
    );
    assert!(!format!("{store:?}").contains(PASSWORD), "{store:?}");
    let lease = store.try_lead("c").await.expect("try_lead").expect("leads");
    assert!(!format!("{lease:?}").contains(PASSWORD));

    let failing_urls = [
        "postgres://berth:hunter2-very-secret@127.0.0.1:1/berth".to_owned(),
        with_database(&with_password(database.url(), PASSWORD), "no_such_database"),
        "postgres://berth:hunter2-very-secret@127.0.0.1:notaport/berth".to_owned(),
        "postgres://berth:hunter2-very-secret@127.0.0.1/db?sslmode=sideways".to_owned(),
    ];
    for url in failing_urls {
        let error = PostgresStore::connect(&url).await.expect_err("cannot connect");
        let message = format!("{error} {error:?}");
        assert!(!message.contains(PASSWORD), "{message}");
    }
}

fn port_of(url: &str) -> u16 {
    let options: sqlx::postgres::PgConnectOptions = url.parse().expect("valid URL");
    options.get_port()
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_fast() {
    let started = Instant::now();
    match PostgresStore::connect("postgres://berth:pw@127.0.0.1:1/berth").await {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("127.0.0.1:1/berth"), "names where: {message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    // A server that accepts the connection but never speaks: the connect deadline ends it.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("listener");
    let address = silent.local_addr().expect("address");
    let started = Instant::now();
    match PostgresStore::connect(&format!("postgres://berth:pw@{address}/berth")).await {
        Err(StoreError::Unavailable(message)) => assert!(message.contains("no answer"), "{message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(7), "{:?}", started.elapsed());
    drop(silent);
}

/// Racing inserts of one record through two handles (as two processes): exactly one wins, every
/// other is told it exists, whether it lost the existence check or the primary key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_inserts_through_two_handles_admit_one() {
    let database = TestDatabase::create().await;
    let stores: [Arc<dyn Store>; 2] = [
        Arc::new(PostgresStore::connect(database.url()).await.expect("connect")),
        Arc::new(PostgresStore::connect(database.url()).await.expect("connect")),
    ];
    for round in 0..5_i64 {
        let mut sandbox = labelled(sample("alice", at(round)), &[("round", &round.to_string())]);
        sandbox.idempotency_key = Some(format!("key-{round}"));
        let racers: Vec<_> = (0..16)
            .map(|racer| {
                let store = Arc::clone(&stores[racer % 2]);
                let sandbox = sandbox.clone();
                tokio::spawn(async move { store.insert(&sandbox).await })
            })
            .collect();
        let mut winners = 0;
        for racer in racers {
            match racer.await.expect("racer") {
                Ok(()) => winners += 1,
                Err(StoreError::AlreadyExists(id)) => assert_eq!(id, sandbox.id),
                Err(other) => panic!("unexpected error: {other}"),
            }
        }
        assert_eq!(winners, 1, "round {round}");
        assert_eq!(stores[1].get(&sandbox.id).await.expect("get"), Some(sandbox));
    }
    let filter = SandboxFilter {
        statuses: vec![Status::Running],
        ..SandboxFilter::default()
    };
    assert_eq!(stores[0].list(&filter, None, 100).await.expect("list").items.len(), 5);
}

/// Ends the leader sessions of `database` from the server side, as an operator or a failover
/// would; returns how many there were.
async fn terminate_leader_sessions(database: &TestDatabase) -> i64 {
    let mut admin = database.admin().await;
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND datname = $2) AS terminated",
    )
    .bind(LEADER_APPLICATION_NAME)
    .bind(database.name())
    .fetch_one(&mut admin)
    .await
    .expect("terminate leader sessions")
}

async fn lead_within(store: &PostgresStore, cluster: &str, patience: Duration) -> Option<berth_store::Lease> {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(lease) = store.try_lead(cluster).await.expect("try_lead") {
            return Some(lease);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_leader_session_is_reported_lost_and_frees_leadership() {
    let database = TestDatabase::create().await;
    let leader = PostgresStore::connect(database.url()).await.expect("connect");
    let other = PostgresStore::connect(database.url()).await.expect("connect");
    let mut lease = leader.try_lead("prod").await.expect("try_lead").expect("leads");
    assert!(other.try_lead("prod").await.expect("try_lead").is_none());

    assert_eq!(terminate_leader_sessions(&database).await, 1, "one leader connection");
    let reason = tokio::time::timeout(Duration::from_secs(10), lease.lost())
        .await
        .expect("the loss is reported within the check interval and timeout");
    assert!(reason.starts_with("lost the database connection"), "{reason}");
    assert_eq!(lease.lost().await, reason, "asked again, the same answer");

    let taken = lead_within(&other, "prod", Duration::from_secs(5)).await;
    assert!(taken.is_some(), "another handle takes leadership");
    // The store itself is unharmed: only the lease's own connection was cut.
    leader.ping().await.expect("ping");
}

/// A leader whose process dies without closing anything (here: its runtime torn down, so its
/// socket is closed unannounced, as the kernel does for a killed process) frees leadership.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_vanishes_frees_leadership() {
    let database = TestDatabase::create().await;
    let url = database.url().to_owned();
    let leader = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let lease = runtime.block_on(async {
            let store = PostgresStore::connect(&url).await.expect("connect");
            store.try_lead("prod").await.expect("try_lead").expect("leads")
        });
        // Tears down the keeper task and its connection without a goodbye to the server.
        runtime.shutdown_background();
        std::mem::forget(lease);
    });
    leader.join().expect("leader thread");

    let other = PostgresStore::connect(database.url()).await.expect("connect");
    assert!(
        lead_within(&other, "prod", Duration::from_secs(5)).await.is_some(),
        "the server released the vanished leader's lock"
    );
}

/// The tests create and drop databases: the URL must name a superuser (or at least a role
/// allowed to), which `scripts/ensure-postgres.sh` provides.
#[tokio::test]
async fn the_test_server_url_names_a_superuser() {
    let mut conn = PgConnection::connect(&admin_url())
        .await
        .expect("the admin URL answers");
    let superuser: bool = sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        .fetch_one(&mut conn)
        .await
        .expect("role");
    assert!(superuser, "the tests create and drop databases");
}

/// The next announcement on `changes` for sandbox `id`, skipping others; `None` after `patience`.
async fn announced(
    changes: &mut tokio::sync::mpsc::Receiver<berth_store::SandboxChange>,
    id: &berth_core::SandboxId,
    patience: Duration,
) -> Option<berth_store::SandboxChange> {
    tokio::time::timeout(patience, async {
        loop {
            let change = changes.recv().await?;
            if change.id == *id {
                return Some(change);
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// Writes through one handle (one process) are announced to another as they commit, with the
/// record's `updated_at`; after the listening session is cut by the server, announcements resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_announced_to_other_handles_also_after_a_cut_session() {
    let database = TestDatabase::create().await;
    let writer = PostgresStore::connect(database.url()).await.expect("connect");
    let follower = PostgresStore::connect(database.url()).await.expect("connect");
    let mut changes = follower.sandbox_changes().await.expect("postgres announces changes");
    // The listener connects in the background; a write before it listens is simply not
    // announced (followers poll as well), so write until one is.
    let mut sandbox = sample("alice", at(1));
    writer.insert(&sandbox).await.expect("insert");
    let mut written = vec![sandbox.updated_at];
    let mut first = None;
    for round in 0..50_i64 {
        sandbox.updated_at = at(10 + round);
        writer.update(&sandbox).await.expect("update");
        written.push(sandbox.updated_at);
        first = announced(&mut changes, &sandbox.id, Duration::from_millis(200)).await;
        if first.is_some() {
            break;
        }
    }
    let first = first.expect("a write was announced within 10 s");
    // One of the writes (an announcement may arrive after its round gave up on it).
    assert!(
        written.contains(&first.updated_at),
        "the announcement carries the write's updated_at: {first:?}"
    );

    let mut admin = database.admin().await;
    let cut: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND query LIKE 'LISTEN %') AS cut",
    )
    .bind(database.name())
    .fetch_one(&mut admin)
    .await
    .expect("cut the listening session");
    assert_eq!(cut, 1, "one session listened");

    let mut resumed = None;
    for round in 0..50_i64 {
        sandbox.updated_at = at(100 + round);
        writer.update(&sandbox).await.expect("update");
        resumed = announced(&mut changes, &sandbox.id, Duration::from_millis(200)).await;
        if resumed.is_some() {
            break;
        }
    }
    assert!(resumed.is_some(), "announcements resumed after the session was cut");
}
