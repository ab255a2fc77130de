//! Runs the backend-independent store contract against [`SqliteStore`], each test on its own
//! fresh database file in a temp dir.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::sync::Arc;

use berth_store::{SqliteStore, Store};
use tempfile::TempDir;

async fn fresh() -> (Arc<dyn Store>, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = reopen(&dir).await;
    (store, dir)
}

/// A second store on the same file, as another process would open it.
async fn reopen(dir: &TempDir) -> Arc<dyn Store> {
    let store = SqliteStore::open(&dir.path().join("berth.db"))
        .await
        .expect("open store");
    Arc::new(store)
}

berth_store::store_contract_tests!(fresh, reopen);
