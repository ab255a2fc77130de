//! Idle sandboxes through the real server and engine: a sandbox with an `idle_timeout` is paused
//! (frozen on the engine, reason `idle`) once nothing needed it for that long, and an exec or a
//! proxied request wakes it and is answered as if it had never slept; a client's own pause is
//! not undone by a request.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::time::Duration;

use berth_e2e::{TEST_IMAGE, TestServer, docker_inspect, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Waits until the sandbox is paused for being idle, and checks the engine froze it.
async fn asleep(server: &TestServer, id: &str) -> Value {
    let sandbox = eventually(Duration::from_secs(20), || async {
        let sandbox = server.get_json(&format!("/v1/sandboxes/{id}")).await;
        (sandbox["status"] == "Paused").then_some(sandbox)
    })
    .await
    .unwrap_or_else(|| panic!("sandbox {id} was never paused for being idle\n{}", server.log()));
    assert_eq!(sandbox["status_reason"], "idle", "{sandbox}");
    let container = docker_inspect(sandbox["container_id"].as_str().unwrap()).unwrap();
    assert_eq!(container["State"]["Paused"], true, "the engine did not freeze it");
    sandbox
}

async fn exec(server: &TestServer, id: &str, line: &str) -> (StatusCode, Value) {
    server
        .post_json(&format!("/v1/sandboxes/{id}/exec"), &json!({"cmd": ["sh", "-c", line]}))
        .await
}

#[tokio::test]
async fn an_idle_sandbox_is_paused_and_woken_by_the_next_exec_or_proxied_request() {
    let server = TestServer::start().await.unwrap();
    let (status, problem) = server
        .post_json("/v1/sandboxes", &json!({"image": TEST_IMAGE, "idle_timeout": "500ms"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(berth_e2e::field_named(&problem, "idle_timeout"), "{problem}");

    let (status, sandbox) = server
        .post_json(
            "/v1/sandboxes",
            &json!({
                "image": TEST_IMAGE,
                "command": ["httpd", "-f", "-p", "8080", "-h", "/etc"],
                "ports": [8080],
                "readiness": {"http": {"port": 8080, "path": "/hostname"}, "timeout": "30s"},
                "idle_timeout": "2s",
                "ttl": "10m",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sandbox}");
    assert_eq!(sandbox["idle_timeout"], "2s", "{sandbox}");
    let id = sandbox["id"].as_str().unwrap().to_owned();
    let (status, written) = exec(&server, &id, "echo before > /state").await;
    assert_eq!(status, StatusCode::OK, "{written}");

    // Asleep; an exec wakes it and is answered, its files and processes as they were.
    asleep(&server, &id).await;
    let (status, result) = exec(&server, &id, "cat /state").await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["stdout"], "before\n", "{result}");
    let awake = server.get_json(&format!("/v1/sandboxes/{id}")).await;
    assert_eq!(awake["status"], "Running", "{awake}");
    assert!(awake["status_reason"].is_null(), "{awake}");

    // Asleep again; a request through the proxy wakes it.
    asleep(&server, &id).await;
    let proxied = server
        .http()
        .get(format!("{}/v1/sandboxes/{id}/proxy/8080/hostname", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        proxied.status(),
        StatusCode::OK,
        "the proxied request to a sleeping sandbox"
    );
    assert_eq!(
        server.get_json(&format!("/v1/sandboxes/{id}")).await["status"],
        "Running"
    );

    // Asleep again, then paused by its client: that pause holds against requests.
    asleep(&server, &id).await;
    server.client().pause(&id).await.unwrap();
    let paused = server.get_json(&format!("/v1/sandboxes/{id}")).await;
    assert_eq!(paused["status"], "Paused");
    assert!(paused["status_reason"].is_null(), "{paused}");
    let (status, refused) = exec(&server, &id, "true").await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    server.client().resume(&id).await.unwrap();

    // The wakes are measured.
    let metrics = berth_e2e::metrics_of(&server).await;
    let wakes: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("berth_wake_duration_seconds_count "))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or_default();
    assert!(wakes >= 2.0, "{metrics}");
    assert!(metrics.contains("berth_idle_pauses_total"), "{metrics}");
}
