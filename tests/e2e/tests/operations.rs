//! Running berth as an operator does: `/health`, `berth healthcheck`, JSON logs, and a graceful
//! shutdown on SIGTERM that leaves sandboxes running for the next start to adopt.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::process::Command;
use std::time::Duration;

use berth_client::CreateOptions;
use berth_e2e::{ServerOptions, TestServer, berth_binary, docker_inspect, sleeper};
use serde_json::Value;

#[tokio::test]
async fn health_reports_status_version_uptime_and_checks() {
    let server = TestServer::start().await.unwrap();
    let response = server
        .http()
        .get(format!("{}/health", server.url))
        .send()
        .await
        .unwrap();
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
        .env("BERTH_DATA_DIR", &server.data_dir)
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

/// The value of the first sample of `series` (name plus exact label text) in a `/metrics` answer.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .split(' ')
            .next()?
            .parse()
            .ok()
    })
}

#[tokio::test]
async fn metrics_count_requests_sandboxes_creates_errors_and_engine_calls() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let sandbox = client.create(&sleeper(), CreateOptions::default()).await.unwrap();
    let missing = server
        .http()
        .get(format!("{}/v1/sandboxes/0000000000000000", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let response = server
        .http()
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let metrics = response.text().await.unwrap();
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");

    let value = |series: &str| sample(&metrics, series).unwrap_or_else(|| panic!("no `{series}` in:\n{metrics}"));
    assert_eq!(value(r#"berth_sandboxes{status="Running",engine="local"}"#), 1.0);
    assert_eq!(value(r#"berth_sandbox_operations_total{operation="create"}"#), 1.0);
    assert_eq!(value(r#"berth_create_duration_seconds_count{path="cold"}"#), 1.0);
    assert!(value(r#"berth_create_duration_seconds_sum{path="cold"}"#) > 0.0);
    assert_eq!(
        value(r#"berth_http_requests_total{method="POST",route="/v1/sandboxes",status="201"}"#),
        1.0
    );
    // The route template, never the id: one series for every sandbox.
    assert_eq!(
        value(r#"berth_http_requests_total{method="GET",route="/v1/sandboxes/{id}",status="404"}"#),
        1.0
    );
    assert!(!metrics.contains("0000000000000000"), "a raw path became a label");
    assert_eq!(value(r#"berth_errors_total{kind="not-found"}"#), 1.0);
    assert!(value(r#"berth_engine_call_duration_seconds_count{operation="create"}"#) >= 1.0);
    assert!(value(r#"berth_store_call_duration_seconds_count{operation="insert"}"#) >= 1.0);
    assert_eq!(value("berth_leader"), 1.0);

    client.delete(&sandbox.id).await.unwrap();
    let metrics = server
        .http()
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        sample(&metrics, r#"berth_sandboxes{status="Running",engine="local"}"#),
        None,
        "an emptied status disappears instead of keeping its last count"
    );
    assert_eq!(
        sample(&metrics, r#"berth_sandboxes{status="Terminated",engine="local"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, r#"berth_sandbox_operations_total{operation="delete"}"#),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_shutdown_finishes_requests_in_flight_and_cuts_endless_streams_after_the_grace() {
    let mut server = TestServer::start_with(ServerOptions {
        args: vec!["--shutdown-grace".into(), "3s".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let client = server.client();
    let sandbox = client.create(&sleeper(), CreateOptions::default()).await.unwrap();

    // An endless stream: logs followed from a sandbox that never ends.
    let mut logs = client
        .logs(
            &sandbox.id,
            &berth_client::LogsQuery {
                follow: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // A request that takes a while and must still be answered.
    let slow_exec = tokio::spawn({
        let client = client.clone();
        let id = sandbox.id.clone();
        async move {
            let request = berth_api::ExecRequest {
                cmd: vec!["sh".into(), "-c".into(), "sleep 1; echo finished".into()],
                ..Default::default()
            };
            client.exec(&id, &request).await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let signalled = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let status = server.terminate(Duration::from_secs(15));
        (server, status)
    });
    let exec = slow_exec.await.unwrap().expect("the request in flight was answered");
    assert_eq!((exec.exit_code, exec.stdout.as_str()), (0, "finished\n"));

    // The follow stream ends when the grace is over, not before the in-flight request is done.
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(chunk) = futures::StreamExt::next(&mut logs).await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the endless stream was never cut");
    let cut_after = signalled.elapsed();
    assert!(
        cut_after >= Duration::from_secs(2),
        "cut before the grace: {cut_after:?}"
    );

    let (_server, status) = status.await.unwrap();
    let status = status.expect("exited after the grace");
    assert_eq!(status.code(), Some(0));
}
