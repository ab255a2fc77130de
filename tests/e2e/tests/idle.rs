//! Idle sandboxes through the real server and engine: a sandbox with an `idle_timeout` is paused
//! (frozen on the engine, reason `idle`) once nothing needed it for that long, and an exec or a
//! proxied request wakes it and is answered as if it had never slept; a client's own pause is
//! not undone by a request. With `hibernate_after` a sleeping sandbox is stopped, its files kept,
//! and started again (probed ready) by the next exec; time asleep moves its deadline on unless
//! `ttl_counts_idle` asks otherwise.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::time::Duration;

use berth_e2e::{TEST_IMAGE, TestServer, docker_inspect, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The sandbox once its status is `status`, within `within`.
async fn once_in(server: &TestServer, id: &str, status: &str, within: Duration) -> Value {
    eventually(within, || async {
        let sandbox = server.get_json(&format!("/v1/sandboxes/{id}")).await;
        (sandbox["status"] == status).then_some(sandbox)
    })
    .await
    .unwrap_or_else(|| panic!("sandbox {id} was never {status}\n{}", server.log()))
}

/// Waits until the sandbox is paused for being idle, and checks the engine froze it.
async fn asleep(server: &TestServer, id: &str) -> Value {
    let sandbox = once_in(server, id, "Paused", Duration::from_secs(20)).await;
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

fn at(sandbox: &Value, field: &str) -> chrono::DateTime<chrono::Utc> {
    sandbox[field]
        .as_str()
        .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
        .unwrap_or_else(|| panic!("{field} of {sandbox}"))
        .with_timezone(&chrono::Utc)
}

#[tokio::test]
async fn a_sleeping_sandbox_hibernates_keeps_its_files_and_its_time_asleep_does_not_count() {
    let server = TestServer::start().await.unwrap();
    let (status, problem) = server
        .post_json("/v1/sandboxes", &json!({"image": TEST_IMAGE, "hibernate_after": "1s"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(berth_e2e::field_named(&problem, "hibernate_after"), "{problem}");

    let (status, sandbox) = server
        .post_json(
            "/v1/sandboxes",
            &json!({
                "image": TEST_IMAGE,
                "command": ["httpd", "-f", "-p", "8080", "-h", "/etc"],
                "ports": [8080],
                "readiness": {"http": {"port": 8080, "path": "/hostname"}, "timeout": "30s"},
                "idle_timeout": "1s",
                "hibernate_after": "1s",
                "ttl": "8s",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sandbox}");
    assert_eq!(sandbox["hibernate_after"], "1s", "{sandbox}");
    let id = sandbox["id"].as_str().unwrap().to_owned();
    let first_deadline = at(&sandbox, "expires_at");
    let (status, written) = exec(&server, &id, "echo before > /state").await;
    assert_eq!(status, StatusCode::OK, "{written}");

    let hibernated = once_in(&server, &id, "Hibernated", Duration::from_secs(30)).await;
    assert_eq!(hibernated["status_reason"], "idle", "{hibernated}");
    assert!(hibernated["asleep_since"].is_string(), "{hibernated}");
    // The record turns Hibernated before the engine is asked to stop the container, which
    // may take up to its grace period.
    let container_id = hibernated["container_id"].as_str().unwrap().to_owned();
    let stopped = eventually(Duration::from_secs(15), || async {
        let container = docker_inspect(&container_id).unwrap();
        (container["State"]["Running"] == false).then_some(())
    })
    .await;
    assert!(
        stopped.is_some(),
        "the engine still runs it: {:?}",
        docker_inspect(&container_id)
    );

    // Past its first deadline, asleep: time asleep does not count, so it is still there.
    let past = first_deadline + chrono::Duration::seconds(2) - chrono::Utc::now();
    tokio::time::sleep(past.to_std().unwrap_or_default()).await;
    let still = server.get_json(&format!("/v1/sandboxes/{id}")).await;
    assert_eq!(still["status"], "Hibernated", "it expired while asleep: {still}");

    // An exec starts it again: its files are as they were, its deadline moved on.
    let (status, result) = exec(&server, &id, "cat /state").await;
    assert_eq!(status, StatusCode::OK, "{result}\n{}", server.log());
    assert_eq!(result["stdout"], "before\n", "{result}");
    let awake = server.get_json(&format!("/v1/sandboxes/{id}")).await;
    assert_eq!(awake["status"], "Running", "{awake}");
    assert!(awake["asleep_since"].is_null(), "{awake}");
    assert!(
        at(&awake, "expires_at") > first_deadline,
        "the deadline did not move: {awake}"
    );
    // Its main process started anew and was probed ready before the exec ran: the proxy answers.
    let proxied = server
        .http()
        .get(format!("{}/v1/sandboxes/{id}/proxy/8080/hostname", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), StatusCode::OK, "the proxied request after the wake");

    let metrics = berth_e2e::metrics_of(&server).await;
    let count = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|count| count.trim().parse().ok())
            .unwrap_or_default()
    };
    assert!(count("berth_hibernations_total ") >= 1.0, "{metrics}");
    assert!(
        count("berth_hibernation_wake_duration_seconds_count ") >= 1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn with_ttl_counts_idle_a_sleeping_sandbox_expires_on_its_deadline() {
    let server = TestServer::start().await.unwrap();
    let (status, sandbox) = server
        .post_json(
            "/v1/sandboxes",
            &json!({
                "image": TEST_IMAGE,
                "command": ["sleep", "600"],
                "idle_timeout": "1s",
                "ttl_counts_idle": true,
                "ttl": "5s",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sandbox}");
    assert_eq!(sandbox["ttl_counts_idle"], true, "{sandbox}");
    let id = sandbox["id"].as_str().unwrap().to_owned();
    asleep(&server, &id).await;
    let ended = once_in(&server, &id, "Terminated", Duration::from_secs(20)).await;
    assert_eq!(ended["status_reason"], "expired", "{ended}");
}
