//! Egress policy through the real server and engine: a sandbox with `network.egress: deny`
//! reaches no outside host and no other sealed sandbox, while berth still reaches it (readiness
//! probe, proxy, exec) and an `allow` sandbox reaches the same outside host. "The outside" is a
//! container this test starts on the engine's default bridge; traffic goes only to containers
//! this test created.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use berth_e2e::{TestServer, answered_from, docker, docker_inspect, field_named, run_in};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A container standing for a host outside berth, removed when dropped.
struct OutsideHost {
    container: String,
    ip: String,
}

impl OutsideHost {
    /// Serves HTTP on port 80 from the engine's default bridge, where open sandboxes live too.
    fn start() -> Self {
        let label = format!("berth.test.egress={}", berth_e2e::unique("outside"));
        let container = docker(&[
            "run",
            "-d",
            "--label",
            &label,
            "--network",
            "bridge",
            berth_e2e::TEST_IMAGE,
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/etc",
        ])
        .unwrap()
        .trim()
        .to_owned();
        let inspected = docker_inspect(&container).unwrap();
        let ip = inspected["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
            .as_str()
            .unwrap()
            .to_owned();
        OutsideHost { container, ip }
    }
}

impl Drop for OutsideHost {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.container]);
    }
}

/// As [`berth_e2e::web_server`], checking the policy shows on the sandbox.
async fn web_server(server: &TestServer, egress: &str) -> Value {
    let sandbox = berth_e2e::web_server(server, egress).await;
    assert_eq!(sandbox["network"]["egress"], egress, "{sandbox}");
    sandbox
}

#[tokio::test]
async fn a_denied_sandbox_reaches_nothing_outside_and_berth_still_reaches_it() {
    let outside = OutsideHost::start();
    let server = TestServer::start().await.unwrap();
    let open = web_server(&server, "allow").await;
    let sealed = web_server(&server, "deny").await;
    let other_sealed = web_server(&server, "deny").await;
    let open_id = open["id"].as_str().unwrap();
    let sealed_id = sealed["id"].as_str().unwrap();
    let sealed_ip = sealed["ip"].as_str().expect("a sealed sandbox has an address");
    let other_sealed_ip = other_sealed["ip"].as_str().unwrap();

    // The outside host answers an open sandbox (so it is there to be reached; an engine running
    // with --icc=false would fail this, not berth)...
    assert!(
        answered_from(&server, open_id, &outside.ip, 80).await,
        "an open sandbox could not reach the outside host at {}",
        outside.ip
    );
    // ... and not the sealed one, which reaches neither the other sealed sandbox nor the open
    // one, while its own server answers it.
    assert!(
        !answered_from(&server, sealed_id, &outside.ip, 80).await,
        "the sealed sandbox reached the outside host"
    );
    assert!(
        !answered_from(&server, sealed_id, other_sealed_ip, 8080).await,
        "one sealed sandbox reached another"
    );
    assert!(
        !answered_from(&server, sealed_id, open["ip"].as_str().unwrap(), 8080).await,
        "the sealed sandbox reached an open one"
    );
    assert!(answered_from(&server, sealed_id, sealed_ip, 8080).await);

    // It sits on berth's internal network, and its name lookups go to its own loopback, not to
    // the host's resolvers.
    let container = docker_inspect(sealed["container_id"].as_str().unwrap()).unwrap();
    assert_eq!(container["HostConfig"]["Dns"], json!(["127.0.0.1"]), "{container}");
    let networks: Vec<&String> = container["NetworkSettings"]["Networks"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    // A network of its own, internal, with nobody else on it.
    let own_network = format!("berth-{sealed_id}");
    assert_eq!(networks, [&own_network]);
    let network: Value = serde_json::from_str(&docker(&["network", "inspect", &own_network]).unwrap()).unwrap();
    assert_eq!(network[0]["Internal"], true, "{network}");
    assert_eq!(
        network[0]["Containers"].as_object().map(|c| c.len()),
        Some(1),
        "{network}"
    );

    // berth reaches it from its side: the probe passed (it is Running), the proxy and exec work.
    let response = server
        .http()
        .get(format!("{}/v1/sandboxes/{sealed_id}/proxy/8080/hostname", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(run_in(&server, sealed_id, "echo still here").await, "still here\n");
    let read_back = server.get_json(&format!("/v1/sandboxes/{sealed_id}")).await;
    assert_eq!(read_back["network"], json!({"egress": "deny"}));

    // Deleting the sandbox removes its network with it.
    let (status, _) = berth_e2e::api::delete(&server, &format!("/v1/sandboxes/{sealed_id}")).await;
    assert!((200..300).contains(&status), "{status}");
    let gone = berth_e2e::eventually(std::time::Duration::from_secs(30), || async {
        docker(&["network", "inspect", &own_network]).is_err().then_some(())
    })
    .await;
    assert!(gone.is_some(), "the sealed sandbox's network outlived it");
}

#[tokio::test]
async fn the_servers_default_applies_to_a_sandbox_that_names_none_and_bad_policies_are_named() {
    let server = TestServer::start_with(berth_e2e::ServerOptions {
        args: vec!["--default-egress".into(), "deny".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let (status, sandbox) = server
        .post_json(
            "/v1/sandboxes",
            &json!({"image": berth_e2e::TEST_IMAGE, "command": ["sleep", "600"], "ttl": "5m"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sandbox}");
    assert_eq!(sandbox["network"]["egress"], "deny");
    let container = docker_inspect(sandbox["container_id"].as_str().unwrap()).unwrap();
    let sandbox_id = sandbox["id"].as_str().unwrap();
    assert!(
        container["NetworkSettings"]["Networks"][format!("berth-{sandbox_id}")].is_object(),
        "{container}"
    );

    for bad in [json!("open"), json!({"allow": ["allowed.test"]}), json!(7)] {
        let (status, problem) = server
            .post_json(
                "/v1/sandboxes",
                &json!({"image": berth_e2e::TEST_IMAGE, "network": {"egress": bad}}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {problem}");
        assert!(field_named(&problem, "network.egress"), "{bad}: {problem}");
    }
    let listed = server.get_json("/v1/sandboxes").await;
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        1,
        "nothing half-created: {listed}"
    );
}

#[tokio::test]
async fn a_denied_stack_keeps_its_services_talking_and_reaches_nothing_else() {
    use berth_e2e::api::{data, get, post};
    let outside = OutsideHost::start();
    let server = TestServer::start().await.unwrap();
    let name = berth_e2e::unique("sealed-stack");
    let compose = format!(
        r#"
services:
  web:
    image: {image}
    command: ["httpd", "-f", "-p", "5000", "-h", "/etc"]
  app:
    image: {image}
    labels:
      aenv.main: "true"
    depends_on: [web]
    command: ["sleep", "3600"]
"#,
        image = berth_e2e::TEST_IMAGE
    );
    let env = json!({
        "name": name,
        "version": "1",
        "artifacts": [],
        "deployConfig": {"composeFile": compose, "ttl": "10m", "network": {"egress": "deny"}},
    });
    assert_eq!(data(post(&server, "/env/", env).await), true);
    let instance = data(post(&server, "/env-instance", json!({"envName": format!("{name}@1")})).await);
    let id = instance["id"].as_str().unwrap().to_owned();
    let sandbox = berth_e2e::eventually(std::time::Duration::from_secs(90), || async {
        let (_, sandbox) = get(&server, &format!("/v1/sandboxes/{id}")).await;
        assert_ne!(sandbox["status"], "Failed", "{sandbox}");
        (sandbox["status"] == "Running").then_some(sandbox)
    })
    .await
    .unwrap_or_else(|| panic!("stack {id} never ran"));
    assert_eq!(sandbox["network"]["egress"], "deny", "{sandbox}");

    let network: Value =
        serde_json::from_str(&docker(&["network", "inspect", &format!("berth-{id}")]).unwrap()).unwrap();
    assert_eq!(network[0]["Internal"], true, "{network}");
    // The other service answers by its name; the outside host does not.
    assert!(
        answered_from(&server, &id, "web", 5000).await,
        "the stack's own service did not answer"
    );
    assert!(
        !answered_from(&server, &id, &outside.ip, 80).await,
        "the sealed stack reached the outside host"
    );
    let (status, _) = berth_e2e::api::delete(&server, &format!("/env-instance/{id}")).await;
    assert_eq!(status, 200);
}

/// `PUT /v1/sandboxes/{id}/network` with `body`: the status and the answer.
async fn put_network(server: &TestServer, id: &str, body: &Value) -> (StatusCode, Value) {
    let response = server
        .http()
        .put(format!("{}/v1/sandboxes/{id}/network", server.url))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_running_sandbox_is_sealed_and_opened_again_without_a_restart_and_keeps_it_through_one_of_berth() {
    let outside = OutsideHost::start();
    let mut server = TestServer::start().await.unwrap();
    let sandbox = web_server(&server, "allow").await;
    let id = sandbox["id"].as_str().unwrap().to_owned();
    let container = sandbox["container_id"].as_str().unwrap().to_owned();
    let started_at = docker_inspect(&container).unwrap()["State"]["StartedAt"].clone();
    assert_eq!(run_in(&server, &id, "echo kept > /state && cat /state").await, "kept\n");
    assert!(
        answered_from(&server, &id, &outside.ip, 80).await,
        "the control: open, it reaches {}",
        outside.ip
    );

    // Bad asks are named and change nothing.
    for bad in [
        json!({}),
        json!({"egress": "closed"}),
        json!({"egress": {"allow": ["allowed.test"]}}),
    ] {
        let (status, problem) = put_network(&server, &id, &bad).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {problem}");
        assert!(field_named(&problem, "egress"), "{bad}: {problem}");
    }
    let (status, _) = put_network(&server, "0123456789abcdef", &json!({"egress": "deny"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Sealed while it runs: no way out any more, while berth (proxy, exec) still reaches it and
    // nothing in it restarted.
    let (status, policy) = put_network(&server, &id, &json!({"egress": "deny"})).await;
    assert_eq!(
        (status, &policy),
        (StatusCode::OK, &json!({"egress": "deny"})),
        "{}",
        server.log()
    );
    assert_eq!(
        server.get_json(&format!("/v1/sandboxes/{id}/network")).await,
        json!({"egress": "deny"})
    );
    let sealed = server.get_json(&format!("/v1/sandboxes/{id}")).await;
    assert_eq!(sealed["network"], json!({"egress": "deny"}), "{sealed}");
    assert!(
        !answered_from(&server, &id, &outside.ip, 80).await,
        "sealed, it still reached {}",
        outside.ip
    );
    let proxied = server
        .http()
        .get(format!("{}/v1/sandboxes/{id}/proxy/8080/hostname", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), StatusCode::OK, "the proxy to the sealed sandbox");
    assert_eq!(run_in(&server, &id, "cat /state").await, "kept\n");
    assert_eq!(docker_inspect(&container).unwrap()["State"]["StartedAt"], started_at);
    let own_network = format!("berth-{id}");
    let networks = docker_inspect(&container).unwrap()["NetworkSettings"]["Networks"].clone();
    assert_eq!(networks.as_object().unwrap().keys().collect::<Vec<_>>(), [&own_network]);

    // The policy is the record's: a berth killed and started again on the same data keeps it.
    let data_dir = server.keep_data_dir();
    let cluster = server.cluster.clone();
    server.crash();
    let server = TestServer::start_with(berth_e2e::ServerOptions {
        data_dir: Some(data_dir),
        cluster: Some(cluster),
        ..Default::default()
    })
    .await
    .unwrap();
    let adopted = berth_e2e::eventually(std::time::Duration::from_secs(30), || async {
        let sandbox = server.get_json(&format!("/v1/sandboxes/{id}")).await;
        (sandbox["status"] == "Running").then_some(sandbox)
    })
    .await
    .expect("the sandbox is adopted as running");
    assert_eq!(adopted["network"], json!({"egress": "deny"}), "{adopted}");
    assert!(!answered_from(&server, &id, &outside.ip, 80).await);

    // Opened again: the outside answers, and its own network is gone.
    let (status, policy) = put_network(&server, &id, &json!({"egress": "allow"})).await;
    assert_eq!(
        (status, &policy),
        (StatusCode::OK, &json!({"egress": "allow"})),
        "{}",
        server.log()
    );
    assert!(
        answered_from(&server, &id, &outside.ip, 80).await,
        "opened again, it did not reach {}",
        outside.ip
    );
    assert!(
        docker(&["network", "inspect", &own_network]).is_err(),
        "{own_network} outlived the opening"
    );
    assert_eq!(docker_inspect(&container).unwrap()["State"]["StartedAt"], started_at);

    // Sealed once more and deleted: the container and its network go.
    let (status, _) = put_network(&server, &id, &json!({"egress": "deny"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = berth_e2e::api::delete(&server, &format!("/v1/sandboxes/{id}?wait=true")).await;
    assert!((200..300).contains(&status), "{status}");
    let gone = berth_e2e::eventually(std::time::Duration::from_secs(30), || async {
        (docker_inspect(&container).is_none() && docker(&["network", "inspect", &own_network]).is_err()).then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "a sandbox sealed while it ran left its container or network behind"
    );
}
