//! The served OpenAPI document is snapshot-tested, so the handlers and the spec cannot drift.
//! Run with `UPDATE_SNAPSHOTS=1` to accept a deliberate API change, and review the diff.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::sync::Arc;

use berth_control::{ServerConfig, start};
use berth_runtime::fake::FakeRuntime;
use berth_store::SqliteStore;

#[tokio::test]
async fn openapi_document_matches_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("berth.db")).await.unwrap());
    let (service, _background) = start(
        ServerConfig::default(),
        Arc::new(FakeRuntime::default()),
        store,
        Vec::new(),
    )
    .await
    .unwrap();
    let actual = berth_http::openapi_json(service) + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "the OpenAPI document changed; if intended, run `UPDATE_SNAPSHOTS=1 cargo test -p berth-http --test openapi` and commit {}",
        path.display()
    );
    let spec: serde_json::Value = serde_json::from_str(&actual).unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/v1/sandboxes",
        "/v1/sandboxes/{id}",
        "/v1/sandboxes/{id}/ttl",
        "/v1/sandboxes/{id}/pause",
        "/v1/sandboxes/{id}/resume",
        "/v1/sandboxes/{id}/exec",
        "/v1/sandboxes/{id}/exec/ws",
        "/v1/sandboxes/{id}/processes",
        "/v1/sandboxes/{id}/processes/{pid}",
        "/v1/sandboxes/{id}/processes/{pid}/output",
        "/v1/sandboxes/{id}/processes/{pid}/signal",
        "/v1/sandboxes/{id}/files",
        "/v1/sandboxes/{id}/files/stat",
        "/v1/sandboxes/{id}/files/list",
        "/v1/sandboxes/{id}/logs",
        "/v1/sandboxes/{id}/stats",
        "/healthz",
        "/readyz",
    ] {
        assert!(spec["paths"].get(path).is_some(), "{path} documented");
    }
}
