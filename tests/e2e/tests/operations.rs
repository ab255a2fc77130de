//! Running berth as an operator does: `/health`, `berth healthcheck`, JSON logs, and a graceful
//! shutdown on SIGTERM that leaves sandboxes running for the next start to adopt.

use std::process::Command;
use std::time::Duration;

use berth_client::CreateOptions;
use berth_e2e::{ServerOptions, TestServer, berth_binary, docker_inspect, sleeper};
use serde_json::Value;

#[tokio::test]
async fn health_reports_status_version_uptime_and_checks() {
    let server = TestServer::start().await.unwrap();
    let response = reqwest::get(format!("{}/health", server.url)).await.unwrap();
    assert_eq!(response.status(), 200);
    let health: Value = response.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert!(health["uptime_seconds"].as_u64().is_some());
    let timestamp = chrono::DateTime::parse_from_rfc3339(health["timestamp"].as_str().unwrap()).unwrap();
    assert!(
        (chrono::Utc::now() - timestamp.with_timezone(&chrono::Utc))
            .num_seconds()
            .abs()
            < 60
    );
    assert_eq!(health["checks"]["store"], "ok");
    assert_eq!(health["checks"]["engines"]["local"], "ok");
}

#[tokio::test]
async fn healthcheck_exits_0_for_a_ready_server_and_1_otherwise() {
    let server = TestServer::start().await.unwrap();
    let ready = Command::new(berth_binary())
        .args(["--server", &server.url, "healthcheck"])
        .output()
        .unwrap();
    assert_eq!(
        ready.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ready.stderr)
    );
    let nobody = Command::new(berth_binary())
        .args(["--server", "http://127.0.0.1:1", "healthcheck"])
        .output()
        .unwrap();
    assert_eq!(nobody.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&nobody.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("berth: "), "{stderr}");
}

#[tokio::test]
async fn sigterm_stops_the_server_with_exit_0_and_sandboxes_keep_running() {
    let mut server = TestServer::start_with(ServerOptions {
        args: vec!["--log-format".into(), "json".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let sandbox = server
        .client()
        .create(&sleeper(), CreateOptions::default())
        .await
        .unwrap();
    let status = server.terminate(Duration::from_secs(10)).expect("exited after SIGTERM");
    assert_eq!(status.code(), Some(0));
    let container = docker_inspect(sandbox.container_id.as_deref().unwrap()).expect("container kept");
    assert_eq!(container["State"]["Running"], true, "sandboxes outlive the server");
    // Every log line is one JSON object.
    let log = server.log();
    assert!(log.lines().count() > 3, "{log}");
    for line in log.lines() {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"));
        assert!(entry["level"].is_string() && entry["timestamp"].is_string(), "{line}");
    }
}
