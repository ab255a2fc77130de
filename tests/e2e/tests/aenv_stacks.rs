//! Compose stacks through the AEnvironment surface, on the real engine: a three-service stack
//! (one service waits for another's health, one reaches another by its service name, two share
//! a named volume) created, used, listed, expired and deleted with nothing left behind; a stack
//! whose dependency never gets healthy fails cleanly; refused compose files name their keys; a
//! restart adopts a running stack, and a stack left without a record is collected.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::time::Duration;

use berth_e2e::api::{data, delete, get, post};
use berth_e2e::{ServerOptions, TEST_IMAGE, TestServer, docker, docker_ids, docker_inspect, eventually, unique};
use serde_json::{Value, json};

/// `db` becomes healthy only after writing a greeting into the shared volume, then answers
/// `pong` on port 5000; `app` (the main service, declared second) waits for that health and
/// copies the greeting at its start; `cache` just runs.
fn three_services() -> String {
    format!(
        r#"
services:
  db:
    image: {TEST_IMAGE}
    command: ["sh", "-c", "sleep 2; echo hello-from-db > /data/greeting; touch /ready; exec nc -ll -p 5000 -e echo pong"]
    volumes:
      - data:/data
    healthcheck:
      test: ["CMD-SHELL", "test -f /ready"]
      interval: 1s
      timeout: 2s
      retries: 60
  app:
    image: {TEST_IMAGE}
    labels:
      aenv.main: "true"
    depends_on:
      db:
        condition: service_healthy
      cache:
        condition: service_started
    command: ["sh", "-c", "cat /data/greeting > /at-start; exec sleep 3600"]
    environment:
      GREETING: ${{GREETING:-hi}}
      MODE: ${{MODE:-plain}}
    volumes:
      - data:/data:ro
    deploy:
      resources:
        limits:
          memory: 48M
  cache:
    image: {TEST_IMAGE}
    command: ["sleep", "3600"]
    restart: unless-stopped
volumes:
  data:
"#
    )
}

fn register(name: &str, compose: &str) -> Value {
    json!({
        "name": name,
        "version": "1",
        "artifacts": [],
        "deployConfig": {"composeFile": compose, "cpu": "500m", "memory": "64Mi", "ttl": "10m"}
    })
}

/// Polls the instance until `Running` with an ip; fails on `Failed`.
async fn running(server: &TestServer, id: &str) -> Value {
    eventually(Duration::from_secs(90), || async {
        let (_, body) = get(server, &format!("/env-instance/{id}")).await;
        let instance = body["data"].clone();
        assert_ne!(instance["status"], "Failed", "{body}");
        (instance["status"] == "Running").then_some(instance)
    })
    .await
    .unwrap_or_else(|| panic!("stack {id} never ran"))
}

async fn exec(server: &TestServer, id: &str, script: &str) -> String {
    let (status, result) = post(
        server,
        &format!("/v1/sandboxes/{id}/exec"),
        json!({"cmd": ["sh", "-c", script]}),
    )
    .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["exit_code"], 0, "{result}");
    result["stdout"].as_str().unwrap_or_default().trim().to_owned()
}

/// Every container, volume and network labelled as the stack of `id`.
fn stack_objects(id: &str) -> Vec<String> {
    let filter = format!("label=berth.stack={id}");
    let mut objects = docker_ids(&["ps", "-aq", "--filter", &filter]);
    objects.extend(docker_ids(&["volume", "ls", "-q", "--filter", &filter]));
    objects.extend(docker_ids(&["network", "ls", "-q", "--filter", &filter]));
    objects
}

async fn nothing_left(id: &str) {
    eventually(Duration::from_secs(30), || async {
        stack_objects(id).is_empty().then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("stack {id} left {:?}", stack_objects(id)));
}

#[tokio::test]
async fn a_three_service_stack_is_created_used_listed_expired_and_deleted() {
    let server = TestServer::start().await.unwrap();
    let name = unique("stack");
    assert_eq!(
        data(post(&server, "/env/", register(&name, &three_services())).await),
        true
    );

    let create = |ttl: &str| {
        json!({
            "envName": format!("{name}@1"),
            "ttl": ttl,
            "environment_variables": {"GREETING": "hey", "envNAME": name},
        })
    };
    let expiring = data(post(&server, "/env-instance", create("40s")).await);
    let deleted = data(post(&server, "/env-instance", create("10m")).await);
    let expiring_id = expiring["id"].as_str().unwrap().to_owned();
    let deleted_id = deleted["id"].as_str().unwrap().to_owned();

    for id in [&expiring_id, &deleted_id] {
        let instance = running(&server, id).await;
        // The main service's container is the sandbox, on the stack's private network.
        let (_, sandbox) = get(&server, &format!("/v1/sandboxes/{id}")).await;
        let main = docker_inspect(sandbox["container_id"].as_str().unwrap()).expect("the main container");
        assert_eq!(main["Config"]["Labels"]["berth.stack.service"], "app");
        let address = &main["NetworkSettings"]["Networks"][format!("berth-{id}")]["IPAddress"];
        assert_eq!(instance["ip"], *address, "the instance ip is the main service's");
        assert_eq!(main["HostConfig"]["Memory"], 48 << 20, "the service's own limit");

        // Started after db was healthy: the greeting was there at its start.
        assert_eq!(exec(&server, id, "cat /at-start").await, "hello-from-db");
        // db reached by its service name on the private network.
        assert_eq!(exec(&server, id, "nc db 5000 </dev/null").await, "pong");
        // Variables interpolated (the instance's, else the default) and passed to the main service.
        assert_eq!(
            exec(&server, id, "echo $GREETING-$MODE-$envNAME").await,
            format!("hey-plain-{name}")
        );

        let filter = format!("label=berth.stack={id}");
        assert_eq!(docker_ids(&["ps", "-q", "--filter", &filter]).len(), 3);
        assert_eq!(docker_ids(&["volume", "ls", "-q", "--filter", &filter]).len(), 1);
        assert_eq!(docker_ids(&["network", "ls", "-q", "--filter", &filter]).len(), 1);
        // Only the main service counts as a sandbox: one sandbox per stack.
        let managed = docker_ids(&["ps", "-q", "--filter", &filter, "--filter", "label=berth.managed=true"]);
        assert_eq!(managed.len(), 1);
    }

    // One id per stack in the list, whatever the number of its services.
    let listed = data(get(&server, &format!("/env-instance/{name}/list")).await);
    let mut ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut expected = vec![expiring_id.as_str(), deleted_id.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);

    assert_eq!(
        data(delete(&server, &format!("/env-instance/{deleted_id}")).await),
        "Deleted successfully"
    );
    nothing_left(&deleted_id).await;
    eventually(Duration::from_secs(10), || async {
        (get(&server, &format!("/env-instance/{deleted_id}")).await.0 == 404).then_some(())
    })
    .await
    .expect("a deleted stack is gone");

    eventually(Duration::from_secs(60), || async {
        (get(&server, &format!("/env-instance/{expiring_id}")).await.0 == 404).then_some(())
    })
    .await
    .expect("the stack expired");
    let (_, ended) = get(&server, &format!("/v1/sandboxes/{expiring_id}")).await;
    assert_eq!(ended["status_reason"], "expired");
    nothing_left(&expiring_id).await;
}

#[tokio::test]
async fn a_stack_that_cannot_start_fails_whole_and_bad_files_are_refused_by_key() {
    let server = TestServer::start().await.unwrap();
    let name = unique("sick");
    let sick = format!(
        r#"
services:
  db:
    image: {TEST_IMAGE}
    command: ["sleep", "3600"]
    healthcheck:
      test: ["CMD", "false"]
      interval: 1s
      retries: 2
  app:
    image: {TEST_IMAGE}
    command: ["sleep", "3600"]
    depends_on:
      db:
        condition: service_healthy
"#
    );
    assert_eq!(data(post(&server, "/env/", register(&name, &sick)).await), true);
    let created = data(post(&server, "/env-instance", json!({"envName": format!("{name}@1")})).await);
    let id = created["id"].as_str().unwrap().to_owned();
    let failed = eventually(Duration::from_secs(60), || async {
        let (_, body) = get(&server, &format!("/env-instance/{id}")).await;
        (body["data"]["status"] == "Failed").then_some(())
    })
    .await;
    assert!(failed.is_some(), "a stack whose dependency is unhealthy fails");
    // The native record says why, in the engine's words.
    let (_, sandbox) = get(&server, &format!("/v1/sandboxes/{id}")).await;
    assert_eq!(sandbox["status_reason"], "create_failed", "{sandbox}");
    let message = sandbox["status_message"].as_str().unwrap_or_default();
    assert!(
        message.contains("`app` waits for `db`") && message.contains("unhealthy"),
        "{sandbox}"
    );
    nothing_left(&id).await;

    // Keys berth does not implement are refused, every one named; nothing is created.
    let refused = format!(
        "services:\n  app:\n    image: {TEST_IMAGE}\n    privileged: true\n    build: .\n    volumes:\n      - /etc:/host-etc\n"
    );
    let (status, body) = post(
        &server,
        "/env-instance",
        json!({"name": unique("bad"), "version": "1", "deployConfig": {"composeFile": refused}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    for key in ["privileged", "build", "deployConfig.composeFile"] {
        assert!(message.contains(key), "`{key}` is not named in: {message}");
    }
    assert!(
        message.contains("/etc:/host-etc") || message.contains("volumes"),
        "{message}"
    );

    let (status, body) = post(
        &server,
        "/env-instance",
        json!({"name": unique("bad"), "version": "1", "deployConfig": {"composeFile": "services: ["}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("YAML"), "{body}");
}

#[tokio::test]
async fn a_restart_adopts_a_running_stack_and_leftover_stacks_are_collected() {
    let fast_resync = vec![
        "--orphan-grace".to_owned(),
        "2s".to_owned(),
        "--resync-interval".to_owned(),
        "1s".to_owned(),
    ];
    let mut first = TestServer::start_with(ServerOptions {
        args: fast_resync.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let name = unique("adopt");
    assert_eq!(
        data(post(&first, "/env/", register(&name, &three_services())).await),
        true
    );
    let created = data(post(&first, "/env-instance", json!({"envName": format!("{name}@1")})).await);
    let id = created["id"].as_str().unwrap().to_owned();
    let before = running(&first, &id).await;

    first.kill9();
    let data_dir = first.keep_data_dir();
    let cluster = first.cluster.clone();
    let second = TestServer::start_with(ServerOptions {
        data_dir: Some(data_dir),
        cluster: Some(cluster.clone()),
        args: fast_resync,
    })
    .await
    .unwrap();
    let after = running(&second, &id).await;
    assert_eq!(after["ip"], before["ip"]);
    assert_eq!(exec(&second, &id, "nc db 5000 </dev/null").await, "pong");
    let filter = format!("label=berth.stack={id}");
    assert_eq!(
        docker_ids(&["ps", "-q", "--filter", &filter]).len(),
        3,
        "no service was recreated or lost"
    );

    // A stack of this cluster with no record (as a create cut short leaves it) is collected.
    let stray = format!("{:016x}", rand_id());
    let stray_labels = [format!("berth.stack={stray}"), format!("berth.cluster={cluster}")];
    docker(&[
        "network",
        "create",
        "--label",
        &stray_labels[0],
        "--label",
        &stray_labels[1],
        &format!("berth-{stray}"),
    ])
    .unwrap();
    docker(&[
        "run",
        "-d",
        "--label",
        &stray_labels[0],
        "--label",
        &stray_labels[1],
        "--network",
        &format!("berth-{stray}"),
        TEST_IMAGE,
        "sleep",
        "3600",
    ])
    .unwrap();
    nothing_left(&stray).await;
    assert_eq!(
        docker_ids(&["ps", "-q", "--filter", &filter]).len(),
        3,
        "the live stack is left alone"
    );

    assert_eq!(
        data(delete(&second, &format!("/env-instance/{id}")).await),
        "Deleted successfully"
    );
    nothing_left(&id).await;
}

fn rand_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    (nanos as u64) ^ (u64::from(std::process::id()) << 40)
}
