//! Convergence of records and engine: adoption after `kill -9`, orphan collection, containers
//! removed behind berth's back, and an engine that goes away.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::time::Duration;

use berth_api::NumberOrString;
use berth_client::{ClientError, CreateOptions};
use berth_e2e::{
    EngineProxy, ServerOptions, TEST_IMAGE, TestServer, docker, docker_inspect, eventually, sleeper, unique,
};

#[tokio::test]
async fn a_restart_after_kill_9_adopts_running_sandboxes_and_still_expires_them() {
    let mut first = TestServer::start().await.unwrap();
    let client = first.client();
    let long = client.create(&sleeper(), CreateOptions::default()).await.unwrap();
    let mut short_request = sleeper();
    short_request.ttl = Some(NumberOrString::String("6s".into()));
    let short = client.create(&short_request, CreateOptions::default()).await.unwrap();
    let cluster = first.cluster.clone();
    let data_dir = first.keep_data_dir();
    first.kill9();

    // Sandboxes keep running while no server is up.
    assert!(
        docker_inspect(long.container_id.as_deref().unwrap()).unwrap()["State"]["Running"]
            .as_bool()
            .unwrap()
    );

    let second = TestServer::start_with(ServerOptions {
        data_dir: Some(data_dir),
        cluster: Some(cluster),
        args: vec![],
    })
    .await
    .unwrap();
    let client = second.client();
    let adopted = client.get(&long.id).await.unwrap();
    assert_eq!(adopted.status, "Running");
    assert_eq!(adopted.container_id, long.container_id);
    assert_eq!(adopted.expires_at, long.expires_at);

    let expired = eventually(Duration::from_secs(25), || async {
        client.get(&short.id).await.ok().filter(|s| s.status == "Terminated")
    })
    .await
    .expect("the short sandbox still expired after the restart");
    assert_eq!(expired.status_reason.as_deref(), Some("expired"));
    let late = expired.ended_at.unwrap() - short.expires_at;
    assert!(late >= chrono::Duration::zero(), "expired {late} before its deadline");
    assert!(late <= berth_e2e::EXPIRY_SLACK, "expired {late} after its deadline");
    assert!(docker_inspect(short.container_id.as_deref().unwrap()).is_none());

    // And the adopted sandbox is fully manageable.
    client.delete(&long.id).await.unwrap();
    assert!(docker_inspect(long.container_id.as_deref().unwrap()).is_none());
}

#[tokio::test]
async fn orphans_of_this_cluster_are_collected_and_other_clusters_are_left_alone() {
    let server = TestServer::start_with(ServerOptions {
        args: vec![
            "--orphan-grace".into(),
            "2s".into(),
            "--resync-interval".into(),
            "1s".into(),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let plant = |cluster: &str| {
        let name = unique("orphan");
        docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            "berth.managed=true",
            "--label",
            &format!("berth.cluster={cluster}"),
            "--label",
            "berth.sandbox=00000000deadbeef",
            TEST_IMAGE,
            "sleep",
            "3600",
        ])
        .unwrap()
        .trim()
        .to_owned()
    };
    let ours = plant(&server.cluster);
    let foreign_cluster = unique("other");
    let theirs = plant(&foreign_cluster);

    let collected = eventually(Duration::from_secs(10), || async {
        docker_inspect(&ours).is_none().then_some(())
    })
    .await;
    assert!(
        collected.is_some(),
        "orphan of this cluster collected after the grace period"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let foreign_alive = docker_inspect(&theirs).is_some();
    let _ = docker(&["rm", "-f", &theirs]);
    assert!(foreign_alive, "a container of another deployment must never be touched");
}

#[tokio::test]
async fn a_container_removed_behind_berths_back_fails_the_sandbox() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let sandbox = client.create(&sleeper(), CreateOptions::default()).await.unwrap();
    docker(&["rm", "-f", sandbox.container_id.as_deref().unwrap()]).unwrap();
    let lost = eventually(Duration::from_secs(5), || async {
        client.get(&sandbox.id).await.ok().filter(|s| s.status == "Failed")
    })
    .await
    .expect("sandbox marked failed");
    assert_eq!(lost.status_reason.as_deref(), Some("container_lost"));
}

#[tokio::test]
async fn a_missing_image_is_a_422_naming_image_and_engine_and_leaves_nothing() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let image = format!("berth-test/{}:absent", unique("no-such-image"));
    let request = berth_api::SandboxRequest {
        image: Some(image.clone()),
        ..Default::default()
    };
    let error = client.create(&request, CreateOptions::default()).await.unwrap_err();
    let ClientError::Problem(problem) = error else {
        panic!("expected a problem, got {error:?}")
    };
    assert_eq!(problem.status, 422);
    assert_eq!(problem.kind, "urn:berth:problem:image-not-found");
    assert!(problem.detail.contains(&image), "{}", problem.detail);
    assert!(problem.detail.contains("local"), "names the engine: {}", problem.detail);
    let id = problem.sandbox_id.expect("the failed sandbox is named");
    let record = client.get(&id).await.unwrap();
    assert_eq!(record.status, "Failed");
    assert_eq!(record.status_reason.as_deref(), Some("image_not_found"));
    let left = berth_e2e::docker_ids(&["ps", "-aq", "--filter", &format!("label=berth.sandbox={id}")]);
    assert!(left.is_empty(), "nothing left behind: {left:?}");
}

// Multi-threaded: the proxy must keep answering while the harness waits for the server.
#[tokio::test(flavor = "multi_thread")]
async fn an_unavailable_engine_gives_503_with_retry_after_and_readyz_says_why() {
    let mut proxy = EngineProxy::start().await;
    let server = TestServer::start_with(ServerOptions {
        args: vec!["--docker-host".into(), proxy.endpoint()],
        ..Default::default()
    })
    .await
    .unwrap();
    let client = server.client();
    assert_eq!(client.readyz().await.unwrap().status, "ready");
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let http = server.http();
    let response = http
        .post(format!("{}/v1/sandboxes", server.url))
        .json(&sleeper())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().get("retry-after").is_some());
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:berth:problem:engine-unavailable");

    let ready = http.get(format!("{}/readyz", server.url)).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["store"], "ok");
    assert_ne!(body["checks"]["engine"], "ok");
    // Reads never touch the engine: they still answer.
    assert!(client.list(&berth_client::ListQuery::default()).await.is_ok());

    // The engine comes back: creates work again and the event stream has reconnected, so a
    // container removed behind berth's back is noticed long before the 30 s resync.
    proxy.restore();
    let ready = eventually(Duration::from_secs(10), || async {
        client.readyz().await.ok().filter(|r| r.status == "ready")
    })
    .await;
    assert!(ready.is_some(), "ready again once the engine answers");
    let sandbox = client.create(&sleeper(), CreateOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await; // past the event stream's reconnect backoff
    docker(&["rm", "-f", sandbox.container_id.as_deref().unwrap()]).unwrap();
    let lost = eventually(Duration::from_secs(5), || async {
        client.get(&sandbox.id).await.ok().filter(|s| s.status == "Failed")
    })
    .await;
    assert_eq!(lost.and_then(|s| s.status_reason).as_deref(), Some("container_lost"));
}

// Multi-threaded: the proxy must answer while the harness waits for the server.
#[tokio::test(flavor = "multi_thread")]
async fn berth_starts_before_its_engine_and_converges_once_the_engine_answers() {
    // A sandbox made by an earlier server of this deployment, and an orphan of it on the engine.
    let mut first = TestServer::start().await.unwrap();
    let kept = first
        .client()
        .create(&sleeper(), CreateOptions::default())
        .await
        .unwrap();
    let cluster = first.cluster.clone();
    let data_dir = first.keep_data_dir();
    first.kill9();
    let orphan = docker(&[
        "run",
        "-d",
        "--name",
        &unique("orphan"),
        "--label",
        "berth.managed=true",
        "--label",
        &format!("berth.cluster={cluster}"),
        "--label",
        "berth.sandbox=00000000feedface",
        TEST_IMAGE,
        "sleep",
        "3600",
    ])
    .unwrap()
    .trim()
    .to_owned();

    // The engine's endpoint answers nothing yet: berth starts all the same.
    let mut engine = EngineProxy::planned();
    let server = TestServer::start_with(ServerOptions {
        data_dir: Some(data_dir),
        cluster: Some(cluster),
        args: vec![
            "--docker-host".into(),
            engine.endpoint(),
            "--orphan-grace".into(),
            "1s".into(),
            "--resync-interval".into(),
            "1s".into(),
        ],
    })
    .await
    .unwrap();
    let client = server.client();
    let http = server.http();
    client
        .healthz()
        .await
        .expect("/healthz answers while the engine is down");
    for probe in ["readyz", "health"] {
        let answer = http.get(format!("{}/{probe}", server.url)).send().await.unwrap();
        assert_eq!(answer.status(), 503, "/{probe}");
        let body: serde_json::Value = answer.json().await.unwrap();
        let engine_check = if probe == "readyz" {
            body["checks"]["engine"].clone()
        } else {
            body["checks"]["engines"]["local"].clone()
        };
        let reason = engine_check.as_str().unwrap_or_default().to_owned();
        assert!(
            reason.contains("unavailable") && reason.contains("engine.sock"),
            "/{probe}: {body}"
        );
    }
    let refused = http
        .post(format!("{}/v1/sandboxes", server.url))
        .json(&sleeper())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().get("retry-after").is_some());
    let problem: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(problem["type"], "urn:berth:problem:engine-unavailable");
    assert_eq!(
        client.get(&kept.id).await.unwrap().status,
        "Running",
        "reads need no engine"
    );

    // The engine comes up: berth connects, resyncs, collects, and serves engine calls again.
    engine.restore();
    let ready = eventually(Duration::from_secs(20), || async {
        client.readyz().await.ok().filter(|ready| ready.status == "ready")
    })
    .await;
    assert!(ready.is_some(), "ready once the engine answers");
    let collected = eventually(Duration::from_secs(15), || async {
        docker_inspect(&orphan).is_none().then_some(())
    })
    .await;
    if collected.is_none() {
        let _ = docker(&["rm", "-f", &orphan]);
    }
    assert!(collected.is_some(), "the orphan is collected once the engine answers");
    let fresh = client.create(&sleeper(), CreateOptions::default()).await.unwrap();
    assert_eq!(fresh.status, "Running");
    let output = client
        .exec(
            &kept.id,
            &berth_api::ExecRequest {
                cmd: vec!["echo".into(), "adopted".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(output.stdout.trim(), "adopted");
    client.delete(&kept.id).await.unwrap();
    assert!(docker_inspect(kept.container_id.as_deref().unwrap()).is_none());
}
