//! AEnvironment env-services through the real server and engine: a service of a registered Env
//! created with one replica, reached through its `service_url` (berth's balancer), scaled to
//! three replicas that all answer through it and back to one, a replica killed behind berth's
//! back and replaced, then deleted: every replica ended, no container left, the port closed.
//! Also the bad-input envelopes. The replicas run `berth-test/aenv-server`
//! (scripts/build-test-images.sh), which answers `GET /hostname` with the replica's hostname.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::collections::BTreeSet;
use std::time::Duration;

use berth_e2e::api::{data, failure, http, send};
use berth_e2e::{TestServer, docker, docker_ids, eventually, unique};
use serde_json::{Value, json};

const AENV_IMAGE: &str = "berth-test/aenv-server:latest";
/// Long enough for a replica to be created and start on a loaded machine.
const SETTLE: Duration = Duration::from_secs(90);

async fn get_service(server: &TestServer, id: &str) -> Value {
    data(send(server, reqwest::Method::GET, &format!("/env-service/{id}"), None).await)
}

/// Waits until the service is `Running` with `replicas` available, and returns it.
async fn settled(server: &TestServer, id: &str, replicas: u64) -> Value {
    let found = eventually(SETTLE, || async {
        let service = get_service(server, id).await;
        (service["status"] == "Running" && service["available_replicas"] == replicas && service["replicas"] == replicas)
            .then_some(service)
    })
    .await;
    match found {
        Some(service) => service,
        None => panic!(
            "service {id} did not settle at {replicas} replicas: {}\nserver log:\n{}",
            get_service(server, id).await,
            server.log()
        ),
    }
}

/// The running containers of the service's replicas (the engine as witness).
fn replica_containers(id: &str) -> Vec<String> {
    docker_ids(&["ps", "-q", "--filter", &format!("label=berth.env-service={id}")])
}

/// The containers of the service's replicas, running or not.
fn all_replica_containers(id: &str) -> Vec<String> {
    docker_ids(&["ps", "-aq", "--filter", &format!("label=berth.env-service={id}")])
}

fn sandbox_of(container: &str) -> String {
    docker(&[
        "inspect",
        "--format",
        "{{ index .Config.Labels \"berth.sandbox\" }}",
        container,
    ])
    .expect("the container exists")
    .trim()
    .to_owned()
}

/// `GET http://<service_url><path>` through the balancer.
async fn through(service_url: &str, path: &str) -> Option<Value> {
    let response = http()
        .get(format!("http://{service_url}{path}"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    if response.status() != 200 {
        return None;
    }
    response.json().await.ok()
}

#[tokio::test]
async fn aenv_services_scale_one_three_one_replace_a_killed_replica_fail_a_bad_image_and_delete_cleanly() {
    if docker(&["image", "inspect", AENV_IMAGE]).is_err() {
        panic!("the test image {AENV_IMAGE} is missing: run scripts/build-test-images.sh (scripts/test does)");
    }
    let server = TestServer::start().await.expect("berth serve starts");
    let name = unique("svc");
    let registered = send(
        &server,
        reqwest::Method::POST,
        "/env/",
        Some(json!({
            "name": name,
            "version": "1.0.0",
            "artifacts": [{"id": "img", "type": "image", "content": AENV_IMAGE}],
            "deployConfig": {"cpu": "250m", "memory": "64Mi", "port": 8081, "environment_variables": {"FROM_ENV": "1"}},
        })),
    )
    .await;
    assert_eq!(data(registered), true);

    // Bad input: each answer names the field and the way out.
    let post = |body: Value| send(&server, reqwest::Method::POST, "/env-service", Some(body));
    let message = failure(post(json!({"replicas": 1})).await, 400);
    assert!(message.contains("envName"), "{message}");
    let message = failure(post(json!({"envName": "nope-env@9"})).await, 404);
    assert!(message.contains("nope-env@9"), "{message}");
    let message = failure(
        post(json!({"envName": format!("{name}@1.0.0"), "storage_size": "10Gi"})).await,
        400,
    );
    assert!(
        message.contains("storage_size") && message.contains("persistent volumes"),
        "{message}"
    );
    let message = failure(
        post(json!({"envName": format!("{name}@1.0.0"), "replicas": -1})).await,
        400,
    );
    assert!(message.contains("replicas"), "{message}");
    let message = failure(
        post(json!({"envName": format!("{name}@1.0.0"), "cpu_limit": "lots"})).await,
        400,
    );
    assert!(message.contains("cpu_limit"), "{message}");
    let message = failure(
        send(&server, reqwest::Method::GET, "/env-service/0123456789abcdef", None).await,
        404,
    );
    assert!(message.contains("0123456789abcdef"), "{message}");

    // Create: one replica behind a stable host:port.
    let created = data(
        post(json!({
            "envName": format!("{name}@1.0.0"),
            "service_name": "web",
            "replicas": 1,
            "environment_variables": {"FROM_SERVICE": "2"},
            "owner": "e2e",
            "pvc_name": "",
            "cpu_limit": "500m",
            "memory_limit": "64Mi",
            "cpu_request": "100m",
        }))
        .await,
    );
    let mut keys: Vec<&str> = created.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "available_replicas",
            "created_at",
            "env",
            "environment_variables",
            "id",
            "owner",
            "pvc_name",
            "replicas",
            "service_url",
            "status",
            "updated_at"
        ]
    );
    assert_eq!(created["env"]["name"], name.as_str(), "{created}");
    assert_eq!(created["replicas"], 1);
    assert_eq!(created["owner"], "e2e");
    let id = created["id"].as_str().expect("an id").to_owned();
    let service_url = created["service_url"].as_str().expect("a service_url").to_owned();
    assert!(service_url.starts_with("127.0.0.1:"), "{service_url}");

    let running = settled(&server, &id, 1).await;
    assert_eq!(running["service_url"], service_url.as_str(), "the address is stable");
    assert_eq!(replica_containers(&id).len(), 1);
    let health = eventually(SETTLE, || through(&service_url, "/health")).await;
    let health = health.expect("GET /health through the service_url answers");
    assert_eq!(health["success"], true, "{health}");
    // The replica runs the Env's variables plus the service's.
    let container = &replica_containers(&id)[0];
    let env = docker(&["inspect", "--format", "{{ json .Config.Env }}", container]).unwrap();
    assert!(env.contains("FROM_ENV=1") && env.contains("FROM_SERVICE=2"), "{env}");

    // Lists: the service shows under `*` and its Env's name; its replicas are no instances.
    let listed = data(send(&server, reqwest::Method::GET, "/env-service/*/list", None).await);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|service| service["id"] == id.as_str())
    );
    let by_name = data(
        send(
            &server,
            reqwest::Method::GET,
            &format!("/env-service/{name}/list"),
            None,
        )
        .await,
    );
    assert_eq!(by_name.as_array().unwrap().len(), 1, "{by_name}");
    let other = data(send(&server, reqwest::Method::GET, "/env-service/other-env/list", None).await);
    assert_eq!(other, json!([]));
    let instances = data(send(&server, reqwest::Method::GET, "/env-instance/*/list", None).await);
    assert_eq!(instances, json!([]), "replicas are not env instances");

    // Scale 1 → 3: Updating, then Running with three distinct replicas, all reached.
    let scaling = data(
        send(
            &server,
            reqwest::Method::PUT,
            &format!("/env-service/{id}"),
            Some(json!({"replicas": 3})),
        )
        .await,
    );
    assert_eq!(scaling["status"], "Updating", "{scaling}");
    assert_eq!(scaling["replicas"], 3);
    settled(&server, &id, 3).await;
    let containers = replica_containers(&id);
    assert_eq!(containers.len(), 3, "{containers:?}");
    let sandboxes: BTreeSet<String> = containers.iter().map(|container| sandbox_of(container)).collect();
    assert_eq!(sandboxes.len(), 3, "three distinct replica sandboxes: {sandboxes:?}");
    let mut hostnames = BTreeSet::new();
    for _ in 0..12 {
        if let Some(answer) = through(&service_url, "/hostname").await {
            hostnames.insert(answer["data"]["hostname"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert!(
        hostnames.len() > 1,
        "requests through the service_url reach more than one replica: {hostnames:?}"
    );
    let mut seen_sandboxes = sandboxes;

    // Scale 3 → 1.
    data(
        send(
            &server,
            reqwest::Method::PUT,
            &format!("/env-service/{id}"),
            Some(json!({"replicas": 1})),
        )
        .await,
    );
    settled(&server, &id, 1).await;
    let left = eventually(SETTLE, || async {
        let containers = replica_containers(&id);
        (containers.len() == 1).then_some(containers)
    })
    .await
    .expect("one replica container is left");
    assert!(through(&service_url, "/health").await.is_some());

    // A replica removed behind berth's back is replaced.
    let killed = left[0].clone();
    docker(&["rm", "-f", &killed]).expect("docker rm -f");
    let replacement = eventually(SETTLE, || async {
        let containers = replica_containers(&id);
        (containers.len() == 1 && containers[0] != killed).then(|| containers[0].clone())
    })
    .await
    .unwrap_or_else(|| panic!("the killed replica was not replaced; log:\n{}", server.log()));
    seen_sandboxes.insert(sandbox_of(&replacement));
    settled(&server, &id, 1).await;
    assert!(
        eventually(SETTLE, || through(&service_url, "/health")).await.is_some(),
        "the replacement serves through the same service_url"
    );

    // An update to an image that does not exist: its replicas never run, so the service turns
    // `Failed` — and the rollout never removed the replica still serving.
    let missing = format!("berth-test/missing-{}:none", name);
    let updating = data(
        send(
            &server,
            reqwest::Method::PUT,
            &format!("/env-service/{id}"),
            Some(json!({"image": missing})),
        )
        .await,
    );
    assert_eq!(updating["status"], "Updating", "{updating}");
    let failed = eventually(Duration::from_secs(90), || async {
        let (_, body) = send(&server, reqwest::Method::GET, &format!("/env-service/{id}"), None).await;
        (body["data"]["status"] == "Failed").then_some(body["data"].clone())
    })
    .await
    .unwrap_or_else(|| panic!("an update to a missing image never failed; log:\n{}", server.log()));
    assert_eq!(failed["available_replicas"], 1, "{failed}");
    assert_eq!(
        replica_containers(&id),
        vec![replacement.clone()],
        "the serving replica was kept"
    );
    assert!(
        through(&service_url, "/health").await.is_some(),
        "the old replica still serves while the update fails"
    );

    // Delete: every replica ended, no container left, the port closed, the service gone.
    let deleted = data(
        send(
            &server,
            reqwest::Method::DELETE,
            &format!("/env-service/{id}?deleteStorage=true"),
            None,
        )
        .await,
    );
    assert_eq!(deleted, "Deleted successfully");
    failure(
        send(&server, reqwest::Method::GET, &format!("/env-service/{id}"), None).await,
        404,
    );
    assert!(
        eventually(SETTLE, || async {
            all_replica_containers(&id).is_empty().then_some(())
        })
        .await
        .is_some(),
        "containers left: {:?}",
        all_replica_containers(&id)
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(&service_url)
                .await
                .is_err()
                .then_some(())
        })
        .await
        .is_some(),
        "the balancer's port {service_url} still accepts"
    );
    for sandbox in &seen_sandboxes {
        let (status, record) = send(&server, reqwest::Method::GET, &format!("/v1/sandboxes/{sandbox}"), None).await;
        assert_eq!(status, 200, "{record}");
        let ended = record["status"] == "Terminated" || record["status"] == "Failed";
        assert!(ended, "replica {sandbox} ended: {record}");
    }
    let listed = data(send(&server, reqwest::Method::GET, "/env-service/*/list", None).await);
    assert_eq!(listed, json!([]));
}
