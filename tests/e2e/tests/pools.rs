//! Templates and warm pools through the real server and engine: template rules, claims that
//! never hand one sandbox out twice, the fall-back to cold creates, adoption of an idle pool
//! after a restart, and a template whose image is missing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::collections::HashSet;
use std::time::Duration;

use berth_e2e::api::{delete, get, post, put};
use berth_e2e::{ServerOptions, TEST_IMAGE, TestServer, docker_ids, eventually, field_named, unique};
use serde_json::{Value, json};

fn pooled_template(name: &str, min_ready: u32) -> Value {
    json!({
        "name": name,
        "image": TEST_IMAGE,
        "command": ["sleep", "3600"],
        "ttl": "10m",
        "labels": {"kind": "pooled"},
        "pool": {"min_ready": min_ready}
    })
}

/// Waits until the template's pool holds `ready` sandboxes and nothing is being made.
async fn pool_filled(server: &TestServer, name: &str, ready: usize) -> Value {
    eventually(Duration::from_secs(60), || async {
        let (_, template) = get(server, &format!("/v1/templates/{name}")).await;
        let pool = &template["pool"];
        (pool["ready"] == ready && pool["refilling"] == 0).then(|| template.clone())
    })
    .await
    .unwrap_or_else(|| panic!("the pool of {name} never held {ready} ready sandboxes"))
}

/// The ids of the sandboxes waiting in pools.
async fn idle_ids(server: &TestServer) -> HashSet<String> {
    let (_, list) = get(server, "/v1/sandboxes?pooled=true&limit=1000").await;
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

#[tokio::test]
async fn templates_are_created_read_replaced_listed_and_deleted() {
    let server = TestServer::start().await.unwrap();
    let name = unique("tpl");
    let (status, created) = post(
        &server,
        "/v1/templates",
        json!({"name": name, "image": TEST_IMAGE, "cpu": "500m", "memory": "128Mi", "ttl": "90s", "env": {"A": "1"}}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["tag"], "latest");
    assert_eq!(created["resources"]["cpu"], "0.5");
    assert_eq!(created["resources"]["memory"], "128Mi");
    assert_eq!(created["ttl"], "1m30s");
    assert_eq!(created["pool"], Value::Null);

    let (status, problem) = post(&server, "/v1/templates", json!({"name": name, "image": TEST_IMAGE})).await;
    assert_eq!(status, 409, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("PUT"), "{problem}");

    let (status, replaced) = put(
        &server,
        &format!("/v1/templates/{name}"),
        json!({"image": TEST_IMAGE, "ttl": "5m"}),
    )
    .await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["ttl"], "5m");
    assert_eq!(
        replaced["created_at"], created["created_at"],
        "a replace keeps the creation time"
    );

    let (_, fetched) = get(&server, &format!("/v1/templates/{name}:latest")).await;
    assert_eq!(fetched, replaced);
    let (_, list) = get(&server, "/v1/templates").await;
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|item| item["name"] == name)
    );

    // A sandbox from it takes its spec; request fields override.
    let (status, sandbox) = post(
        &server,
        "/v1/sandboxes",
        json!({"template": name, "command": ["sleep", "60"]}),
    )
    .await;
    assert_eq!(status, 201, "{sandbox}");
    assert_eq!(sandbox["image"], TEST_IMAGE);
    assert_eq!(sandbox["template"], format!("{name}:latest"));
    assert_eq!(sandbox["command"], json!(["sleep", "60"]));

    let (status, _) = delete(&server, &format!("/v1/templates/{name}")).await;
    assert_eq!(status, 204);
    let (status, _) = get(&server, &format!("/v1/templates/{name}")).await;
    assert_eq!(status, 404);

    // Bad input names each field; an unknown template is a 422 on `template`.
    let (status, problem) = post(
        &server,
        "/v1/templates",
        json!({"name": "Bad Name", "memory": "lots", "pool": {"min_ready": 9999}}),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    for field in ["name", "image", "memory", "pool.min_ready"] {
        assert!(field_named(&problem, field), "{field} not named: {problem}");
    }
    let (status, problem) = post(&server, "/v1/sandboxes", json!({"template": name})).await;
    assert_eq!(status, 422, "{problem}");
    assert!(field_named(&problem, "template"), "{problem}");
}

#[tokio::test]
async fn fifty_concurrent_claims_on_a_pool_of_eight_never_share_a_sandbox() {
    let server = TestServer::start().await.unwrap();
    let name = unique("pool");
    let (status, body) = post(&server, "/v1/templates", pooled_template(&name, 8)).await;
    assert_eq!(status, 201, "{body}");
    pool_filled(&server, &name, 8).await;
    let idle_before = idle_ids(&server).await;
    assert_eq!(idle_before.len(), 8);
    let (_, hidden) = get(&server, "/v1/sandboxes").await;
    assert_eq!(
        hidden["items"],
        json!([]),
        "waiting pool sandboxes are not listed as anyone's"
    );

    let run = unique("run");
    let creates = (0..50).map(|n| {
        let server = &server;
        let body = json!({"template": name, "owner": "alice", "ttl": "5m", "labels": {"run": run, "n": n.to_string()}});
        async move { post(server, "/v1/sandboxes", body).await }
    });
    let answers = futures::future::join_all(creates).await;
    let mut ids = HashSet::new();
    let mut containers = HashSet::new();
    let mut claimed = 0;
    for (status, sandbox) in &answers {
        assert_eq!(*status, 201, "{sandbox}");
        assert_eq!(sandbox["status"], "Running", "{sandbox}");
        assert_eq!(sandbox["owner"], "alice");
        assert_eq!(sandbox["labels"]["run"], run.as_str());
        assert_eq!(sandbox["labels"]["kind"], "pooled", "the template's labels stay");
        assert!(
            ids.insert(sandbox["id"].as_str().unwrap().to_owned()),
            "id handed out twice: {sandbox}"
        );
        assert!(
            containers.insert(sandbox["container_id"].as_str().unwrap().to_owned()),
            "container handed out twice: {sandbox}"
        );
        if idle_before.contains(sandbox["id"].as_str().unwrap()) {
            claimed += 1;
            // The TTL starts at the claim, not when the pool made it.
            let created = chrono::DateTime::parse_from_rfc3339(sandbox["created_at"].as_str().unwrap()).unwrap();
            let expires = chrono::DateTime::parse_from_rfc3339(sandbox["expires_at"].as_str().unwrap()).unwrap();
            assert_eq!((expires - created).num_seconds(), 300, "{sandbox}");
        }
    }
    assert_eq!(ids.len(), 50);
    assert_eq!(
        claimed, 8,
        "every ready sandbox is claimed exactly once; the rest are cold creates"
    );

    // The claimed ones are the claimer's now: listed by their label, no longer in the pool.
    let (_, mine) = get(&server, &format!("/v1/sandboxes?label=run={run}&limit=100")).await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 50);
    // Refills that finish during the burst may serve its last requests too.
    let (_, metrics) = get_text(&server, "/metrics").await;
    let claims = metric(&metrics, r#"berth_sandbox_operations_total{operation="claim"}"#);
    assert!(claims >= 8.0, "{claims} claims");
    assert_eq!(
        metric(&metrics, r#"berth_create_duration_seconds_count{path="pooled"}"#),
        claims
    );

    // And the pool refills with fresh sandboxes.
    pool_filled(&server, &name, 8).await;
    let idle_after = idle_ids(&server).await;
    assert!(idle_after.is_disjoint(&ids), "a claimed sandbox went back to the pool");
}

async fn get_text(server: &TestServer, path: &str) -> (u16, String) {
    let response = server.http().get(format!("{}{path}", server.url)).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn overrides_a_pooled_sandbox_cannot_honour_make_a_cold_create() {
    let server = TestServer::start().await.unwrap();
    let name = unique("cold");
    post(&server, "/v1/templates", pooled_template(&name, 2)).await;
    pool_filled(&server, &name, 2).await;
    let idle = idle_ids(&server).await;

    let (status, sandbox) = post(
        &server,
        "/v1/sandboxes",
        json!({"template": name, "env": {"ONLY_HERE": "yes"}}),
    )
    .await;
    assert_eq!(status, 201, "{sandbox}");
    assert!(
        !idle.contains(sandbox["id"].as_str().unwrap()),
        "env needs a new container: {sandbox}"
    );
    let (_, exec) = post(
        &server,
        &format!("/v1/sandboxes/{}/exec", sandbox["id"].as_str().unwrap()),
        json!({"cmd": ["sh", "-c", "echo $ONLY_HERE"]}),
    )
    .await;
    assert_eq!(exec["stdout"], "yes\n", "{exec}");
    assert_eq!(idle_ids(&server).await, idle, "the pool was left alone");
}

#[tokio::test]
async fn a_restarted_server_adopts_its_idle_pool_instead_of_recreating_it() {
    let mut first = TestServer::start().await.unwrap();
    let name = unique("adopt");
    post(&first, "/v1/templates", pooled_template(&name, 3)).await;
    pool_filled(&first, &name, 3).await;
    let idle = idle_ids(&first).await;
    let cluster = first.cluster.clone();
    let containers_before = docker_ids(&["ps", "-q", "--filter", &format!("label=berth.cluster={cluster}")]);
    assert_eq!(containers_before.len(), 3);

    first.kill9();
    let data_dir = first.keep_data_dir();
    let second = TestServer::start_with(ServerOptions {
        data_dir: Some(data_dir),
        cluster: Some(cluster.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    // Several passes of the pool keeper go by: nothing is recreated.
    tokio::time::sleep(Duration::from_secs(3)).await;
    pool_filled(&second, &name, 3).await;
    assert_eq!(idle_ids(&second).await, idle, "the same sandboxes wait in the pool");
    let containers_after = docker_ids(&["ps", "-q", "--filter", &format!("label=berth.cluster={cluster}")]);
    assert_eq!(
        containers_after.iter().collect::<HashSet<_>>(),
        containers_before.iter().collect::<HashSet<_>>()
    );
    drop(first);
}

#[tokio::test]
async fn a_template_whose_image_is_missing_reports_it_instead_of_looping() {
    let server = TestServer::start().await.unwrap();
    let name = unique("noimage");
    let (status, body) = post(
        &server,
        "/v1/templates",
        json!({"name": name, "image": "berth-test/absent:nope", "pool": {"min_ready": 2}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let template = eventually(Duration::from_secs(30), || async {
        let (_, template) = get(&server, &format!("/v1/templates/{name}")).await;
        template["error"].is_string().then_some(template)
    })
    .await
    .expect("the template reports why its pool cannot fill");
    let error = template["error"].as_str().unwrap();
    assert!(error.contains("berth-test/absent:nope"), "{error}");
    assert_eq!(template["pool"]["error"], template["error"]);
    assert_eq!(template["pool"]["ready"], 0);
    // It backs off instead of retrying in a loop: a few seconds later, few attempts were made.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, metrics) = get_text(&server, "/metrics").await;
    let failures = metric(&metrics, r#"berth_errors_total{kind="pool_refill"}"#);
    assert!((1.0..=4.0).contains(&failures), "{failures} refill failures");
    let (status, health) = get(&server, "/readyz").await;
    assert_eq!(status, 200, "{health}");
}

#[tokio::test]
async fn an_idle_pooled_sandbox_is_recycled_after_max_idle_age() {
    let server = TestServer::start().await.unwrap();
    let name = unique("idle");
    let mut template = pooled_template(&name, 1);
    template["pool"]["max_idle_age"] = json!("10s");
    let (status, body) = post(&server, "/v1/templates", template).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["pool"]["max_idle_age"], "10s");
    pool_filled(&server, &name, 1).await;
    let first = idle_ids(&server).await.into_iter().next().unwrap();

    // Waiting sandboxes never expire; an old one is replaced by a fresh one instead.
    let replaced = eventually(Duration::from_secs(40), || async {
        let idle = idle_ids(&server).await;
        (idle.len() == 1 && !idle.contains(&first)).then_some(idle)
    })
    .await
    .expect("the idle sandbox was replaced");
    assert_eq!(replaced.len(), 1);
    let (_, old) = get(&server, &format!("/v1/sandboxes/{first}")).await;
    assert_eq!(old["status"], "Terminated", "{old}");
    assert_eq!(old["status_reason"], "recycled", "{old}");
}
