//! Runs the backend-independent store contract against [`SqliteStore`], each test on its own
//! fresh database file in a temp dir.

use std::sync::Arc;

use berth_store::{SqliteStore, Store};

async fn fresh() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("berth.db"))
        .await
        .expect("open store");
    (Arc::new(store), dir)
}

berth_store::store_contract_tests!(fresh);
