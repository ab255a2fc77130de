//! Throwaway PostgreSQL databases for the PostgreSQL tests: one per test, created on the
//! server `BERTH_TEST_DATABASE_URL` names and dropped when its guard drops.

// Each test binary that includes this module uses a different part of it.
#![allow(dead_code)]

use std::hash::{BuildHasher, Hasher, RandomState};
use std::time::{Duration, SystemTime};

use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The environment variable naming a server where the tests may create databases.
pub const URL_VARIABLE: &str = "BERTH_TEST_DATABASE_URL";

/// The admin URL of the test server. Panics with what to do when it is not set: the
/// PostgreSQL tests must not pass by testing nothing.
pub fn admin_url() -> String {
    match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.trim().is_empty() => url.trim().to_owned(),
        _ => panic!(
            "{URL_VARIABLE} is not set: the PostgreSQL tests need a server where they may create databases. \
             Run `export {URL_VARIABLE}=\"$(scripts/ensure-postgres.sh)\"` from the workspace root \
             (it starts a local test cluster, or reuses one) and run the tests again."
        ),
    }
}

/// `url` with its database replaced by `database`; user, password, host, port and query kept.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |at| at + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |at| authority_start + at);
    format!("{}/{database}{query}", &base[..authority_end])
}

/// A fresh, empty database, dropped (connections and all) when this guard drops.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let admin_url = admin_url();
        let name = format!("berth_test_{:016x}", random());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {URL_VARIABLE} (run scripts/ensure-postgres.sh): {e}"));
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        admin.close().await.expect("close the admin connection");
        TestDatabase {
            url: with_database(&admin_url, &name),
            name,
            admin_url,
        }
    }

    /// The URL of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection of the admin user, for inspecting and interfering with the server.
    pub async fn admin(&self) -> PgConnection {
        PgConnection::connect(&self.admin_url).await.expect("admin connection")
    }
}

impl Drop for TestDatabase {
    /// Best effort: a database left behind (the test process killed) only costs disk space.
    /// Runs on a thread of its own with its own runtime, because `drop` cannot await and the
    /// test's runtime may be the current-thread kind, which a blocking wait would stall.
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let drop_database = async {
                    let mut admin = PgConnection::connect(&admin_url).await?;
                    sqlx::query(AssertSqlSafe(statement)).execute(&mut admin).await?;
                    admin.close().await
                };
                match tokio::time::timeout(Duration::from_secs(10), drop_database).await {
                    Ok(result) => result.map_err(|e| e.to_string()),
                    Err(_) => Err("timed out".to_owned()),
                }
            })
        });
        match dropper.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("could not drop test database {}: {error}", self.name),
            Err(_) => eprintln!("dropping test database {} panicked", self.name),
        }
    }
}

/// 64 random bits: std's hasher keys are random per process and per `RandomState`.
fn random() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.finish()
}

#[test]
fn with_database_replaces_only_the_database() {
    assert_eq!(
        with_database("postgres://berth@127.0.0.1:55432/postgres", "x"),
        "postgres://berth@127.0.0.1:55432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/db?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
}
