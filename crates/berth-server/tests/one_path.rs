//! Every write of a template goes through the control plane's one path, whichever surface it
//! came from: an AEnvironment Env registered or changed through `/env/` wakes the pool keeper at
//! once, as a native template write does (on the fake engine and a real SQLite store, with no
//! background loops to take the wake-up first).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use berth_control::expiry::ExpiryTimers;
use berth_control::metrics::Metrics;
use berth_runtime::fake::FakeRuntime;
use berth_server::{SandboxService, ServerConfig};
use berth_store::SqliteStore;
use futures::FutureExt;
use tower::ServiceExt;

async fn send(service: &Arc<SandboxService>, method: &str, path: &str, body: serde_json::Value) -> StatusCode {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    berth_server::router(Arc::clone(service))
        .oneshot(request)
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn env_writes_through_the_aenvironment_surface_wake_the_pool_keeper_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("berth.db")).await.unwrap());
    let (timers, _expired) = ExpiryTimers::start();
    let service = Arc::new(SandboxService::new(
        Arc::new(FakeRuntime::default()),
        store,
        // The pool keeper is what this test watches; who may call is the gate's own tests' concern.
        ServerConfig {
            auth: berth_server::AuthMode::None,
            ..ServerConfig::default()
        },
        timers,
        Arc::new(Metrics::new()),
    ));
    let woken = |service: &Arc<SandboxService>| service.pools().woken().now_or_never().is_some();
    assert!(!woken(&service), "nothing has woken the keeper yet");

    let env = serde_json::json!({"name": "pooled-env", "version": "1.0.0", "deployConfig": {"imageName": "busybox"}});
    assert_eq!(send(&service, "POST", "/env/", env).await, StatusCode::OK);
    assert!(woken(&service), "registering an Env wakes the pool keeper");
    assert!(!woken(&service), "one wake-up per write");

    let change = serde_json::json!({"deployConfig": {"imageName": "busybox:1.36"}});
    assert_eq!(
        send(&service, "PUT", "/env/pooled-env/1.0.0", change).await,
        StatusCode::OK
    );
    assert!(
        woken(&service),
        "changing an Env wakes the pool keeper, so its pool is refreshed now"
    );
    let template = service.find_template("pooled-env", "1.0.0").await.unwrap().unwrap();
    assert_eq!(template.spec.image, "busybox:1.36");

    let native = serde_json::json!({"image": "busybox", "pool": {"min_ready": 1}});
    assert_eq!(
        send(&service, "PUT", "/v1/templates/native:1", native).await,
        StatusCode::OK
    );
    assert!(woken(&service), "a native template write wakes it the same way");
}
