//! Runs the backend-independent store contract against [`PostgresStore`], each test on its own
//! throwaway database on the server `BERTH_TEST_DATABASE_URL` names (see
//! `scripts/ensure-postgres.sh`); the tests fail, not skip, without one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

mod common;

use std::sync::Arc;

use berth_store::{PostgresStore, Store};
use common::TestDatabase;

async fn fresh() -> (Arc<dyn Store>, TestDatabase) {
    let database = TestDatabase::create().await;
    let store = reopen(&database).await;
    (store, database)
}

/// A second store on the same database, as another process would connect.
async fn reopen(database: &TestDatabase) -> Arc<dyn Store> {
    let store = PostgresStore::connect(database.url()).await.expect("connect store");
    Arc::new(store)
}

berth_store::store_contract_tests!(fresh, reopen);
