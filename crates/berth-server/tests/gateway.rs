//! Reaching sandboxes, on the in-memory fake engine and a real SQLite store: what the MCP gateway
//! answers without a routing header, that it refuses every target that is not a running sandbox
//! of this server, and readiness probes that fail a sandbox (`readiness_timeout`, container
//! removed) or give way to a delete. Forwarding itself needs real containers: tests/e2e.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use berth_core::readiness::HttpProbeRequest;
use berth_core::spec::NumberOrString;
use berth_core::{ReadinessRequest, Reason, SandboxRequest, Status};
use berth_gateway::mcp as gateway;
use berth_runtime::fake::FakeRuntime;
use berth_server::SandboxService;
use berth_server::{ServerConfig, lookup, start};
use berth_store::SqliteStore;
use tower::ServiceExt;

struct Harness {
    service: Arc<SandboxService>,
    runtime: Arc<FakeRuntime>,
    _background: tokio::task::JoinSet<()>,
    _dir: tempfile::TempDir,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Arc::new(FakeRuntime::default());
    let store = Arc::new(SqliteStore::open(&dir.path().join("berth.db")).await.unwrap());
    let config = ServerConfig {
        resync_interval: Duration::from_secs(3600),
        cluster: "test".into(),
        ..ServerConfig::default()
    };
    let (service, background) = start(config, runtime.clone(), store).await.unwrap();
    Harness {
        service,
        runtime,
        _background: background,
        _dir: dir,
    }
}

/// A request whose probe never passes: the fake engine's containers get an address no berth
/// sandbox serves (an HTTP probe, since some networks accept any TCP connection and answer 404).
fn never_ready(timeout: &str) -> SandboxRequest {
    SandboxRequest {
        image: Some("busybox".into()),
        ports: vec![8081],
        readiness: Some(ReadinessRequest {
            http: Some(HttpProbeRequest {
                port: Some(8081),
                path: Some("/berth-test-never-ready".into()),
            }),
            timeout: Some(NumberOrString::String(timeout.into())),
            ..ReadinessRequest::default()
        }),
        ..SandboxRequest::default()
    }
}

async fn call(
    router: &axum::Router,
    method: &str,
    path: &str,
    target: Option<&str>,
) -> (StatusCode, serde_json::Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(target) = target {
        request = request.header(gateway::ROUTING_HEADER, target);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

#[tokio::test]
async fn the_gateway_answers_its_health_and_refuses_anything_but_a_running_sandbox() {
    let h = harness().await;
    let router = gateway::router(lookup(Arc::clone(&h.service)), true);
    let (status, health) = call(&router, "GET", "/health", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        health,
        serde_json::json!({"status": "healthy", "message": "MCP Gateway is running"})
    );
    let (status, error) = call(&router, "POST", "/mcp", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error["error"].as_str().unwrap().contains(gateway::ROUTING_HEADER),
        "{error}"
    );

    let sandbox = h
        .service
        .create(
            SandboxRequest {
                image: Some("busybox".into()),
                ports: vec![8081],
                ..SandboxRequest::default()
            },
            None,
            true,
        )
        .await
        .unwrap()
        .sandbox;
    let ip = sandbox.ip.clone().expect("the fake engine gives an address");
    let published = &sandbox.ports[0];
    assert!(h.service.running_at(format!("{ip}:8081").parse().unwrap()).is_some());
    assert!(
        h.service
            .running_at(
                format!("{}:{}", published.host_ip, published.host_port)
                    .parse()
                    .unwrap()
            )
            .is_some()
    );
    for (target, expected) in [
        ("http://10.255.0.1:8081", StatusCode::FORBIDDEN),
        ("http://127.0.0.1:1", StatusCode::FORBIDDEN),
        ("http://localhost:8081", StatusCode::FORBIDDEN),
        ("http://metadata.internal", StatusCode::FORBIDDEN),
        ("https://10.0.0.2:8081", StatusCode::BAD_REQUEST),
        ("10.0.0.2:8081", StatusCode::BAD_REQUEST),
    ] {
        let (status, error) = call(&router, "GET", "/health", Some(target)).await;
        assert_eq!(status, expected, "{target}: {error}");
        assert!(error["error"].is_string(), "{error}");
    }

    // A gateway that asks for keys: none is a 401; another owner's key finds the sandbox exactly
    // as unreachable as no sandbox at all; the owner's key passes on to the sandbox's server.
    let guarded = gateway::router(lookup(Arc::clone(&h.service)), false);
    let target = format!("http://{ip}:8081");
    let (status, error) = call(&guarded, "GET", "/health", Some(&target)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{error}");
    let identity = h.service.identity();
    let owners = identity
        .create_key(&sandbox.owner, berth_core::Role::Member, None)
        .await
        .unwrap();
    let strangers = identity
        .create_key("stranger", berth_core::Role::Member, None)
        .await
        .unwrap();
    let with_key = |key: &str, target: &str| {
        Request::builder()
            .uri("/health")
            .header(gateway::ROUTING_HEADER, target)
            .header("authorization", format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap()
    };
    let answer = |request: Request<Body>| {
        let router = guarded.clone();
        async move {
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        }
    };
    let (status, foreign) = answer(with_key(&strangers.secret, &target)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{foreign}");
    let (_, nothing) = answer(with_key(&strangers.secret, "http://10.255.0.1:8081")).await;
    assert_eq!(
        foreign.replace(&ip, "IP"),
        nothing.replace("10.255.0.1", "IP"),
        "another owner's sandbox looks like no sandbox"
    );
    let (status, passed) = answer(with_key(&owners.secret, &target)).await;
    assert!(
        status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED,
        "{status} {passed}"
    );

    h.service.delete(sandbox.id.as_str()).await.unwrap();
    assert!(h.service.running_at(format!("{ip}:8081").parse().unwrap()).is_none());
    let (status, _) = call(&router, "GET", "/health", Some(&format!("http://{ip}:8081"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "an ended sandbox is no longer a target");
}

#[tokio::test]
async fn a_probe_that_never_passes_fails_the_sandbox_and_removes_its_container() {
    let h = harness().await;
    let started = tokio::time::Instant::now();
    let sandbox = h.service.create(never_ready("1s"), None, true).await.unwrap().sandbox;
    assert!(started.elapsed() >= Duration::from_secs(1), "{:?}", started.elapsed());
    assert_eq!(sandbox.status, Status::Failed);
    assert_eq!(
        sandbox.status_reason.as_ref().map(Reason::as_str),
        Some("readiness_timeout")
    );
    let container = sandbox.container_id.as_deref().expect("the container was made");
    assert!(h.runtime.container(container).is_none(), "its container is removed");
    assert!(
        h.service
            .running_at(format!("{}:8081", sandbox.ip.unwrap()).parse().unwrap())
            .is_none()
    );
}

#[tokio::test]
async fn a_sandbox_being_probed_is_creating_and_can_be_deleted_at_once() {
    let h = harness().await;
    let created = h.service.create(never_ready("5m"), None, false).await.unwrap().sandbox;
    let id = created.id.to_string();
    let mut creating = None;
    for _ in 0..100 {
        let current = h.service.get(&id).unwrap();
        if current.status == Status::Creating && current.container_id.is_some() {
            creating = Some(current);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let creating = creating.expect("Creating with its container while the probe waits");
    assert!(
        h.service.running_container(&id).await.is_err(),
        "not Running before it is ready"
    );

    let deleted = tokio::time::timeout(Duration::from_secs(5), h.service.delete(&id))
        .await
        .expect("a delete does not wait for the probe")
        .unwrap();
    assert_eq!(deleted.status, Status::Terminated);
    assert_eq!(deleted.status_reason.as_ref().map(Reason::as_str), Some("deleted"));
    assert!(h.runtime.container(creating.container_id.as_deref().unwrap()).is_none());
    // The abandoned probe leaves the outcome of the delete as it is.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.service.get(&id).unwrap().status, Status::Terminated);
}
