//! Network isolation through the real server and engine (`--sandbox-network isolated`): two
//! sandboxes cannot open connections to each other, whichever of them listens, while berth itself still reaches both from the host
//! (readiness probe, proxy, exec). Traffic goes only between the containers this test created.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use berth_e2e::{TestServer, docker_inspect};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A running sandbox serving HTTP on 8080, ready only once berth's probe has reached it.
async fn web_server(server: &TestServer) -> Value {
    let (status, sandbox) = server
        .post_json(
            "/v1/sandboxes",
            &json!({
                "image": berth_e2e::TEST_IMAGE,
                "command": ["httpd", "-f", "-p", "8080", "-h", "/etc"],
                "ports": [8080],
                "readiness": {"http": {"port": 8080, "path": "/hostname"}, "timeout": "30s"},
                "ttl": "10m",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sandbox}\n{}", server.log());
    assert_eq!(sandbox["status"], "Running", "{sandbox}");
    sandbox
}

/// Whether an HTTP GET of `/hostname` on `ip:8080` from inside sandbox `id` is answered 200
/// within 3 s (busybox's `nc`: the image's static `wget` cannot run).
async fn answered_from(server: &TestServer, id: &str, ip: &str) -> bool {
    let line = format!("printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} 8080");
    let (status, result) = server
        .post_json(
            &format!("/v1/sandboxes/{id}/exec"),
            &json!({ "cmd": ["sh", "-c", line], "timeout": "10s" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    result["stdout"]
        .as_str()
        .unwrap_or_default()
        .starts_with("HTTP/1.1 200")
}

#[tokio::test]
async fn sandboxes_cannot_reach_each_other_and_berth_still_reaches_them() {
    let server = TestServer::start_with(berth_e2e::ServerOptions {
        args: vec!["--sandbox-network".into(), "isolated".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let first = web_server(&server).await;
    let second = web_server(&server).await;
    let (first_id, second_id) = (first["id"].as_str().unwrap(), second["id"].as_str().unwrap());
    let first_ip = first["ip"].as_str().expect("a sandbox has an address");
    let second_ip = second["ip"].as_str().expect("a sandbox has an address");

    // Both joined one network that keeps its members apart: berth's own, or the engine's default
    // bridge when the engine runs with inter-container traffic off.
    for sandbox in [&first, &second] {
        let container = docker_inspect(sandbox["container_id"].as_str().unwrap()).unwrap();
        let networks: Vec<String> = container["NetworkSettings"]["Networks"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(networks.len(), 1, "{networks:?}");
        let network = berth_e2e::docker(&["network", "inspect", &networks[0]]).unwrap();
        let network: Value = serde_json::from_str(&network).unwrap();
        assert_eq!(
            network[0]["Options"]["com.docker.network.bridge.enable_icc"], "false",
            "{network}"
        );
    }

    // Each reaches its own server (so the probe and the server work), neither the other's.
    assert!(answered_from(&server, first_id, first_ip).await);
    assert!(answered_from(&server, second_id, second_ip).await);
    assert!(
        !answered_from(&server, first_id, second_ip).await,
        "the first sandbox reached the second"
    );
    assert!(
        !answered_from(&server, second_id, first_ip).await,
        "the second sandbox reached the first"
    );

    // berth, from the host side, still reaches both through its proxy.
    for id in [first_id, second_id] {
        let response = server
            .http()
            .get(format!("{}/v1/sandboxes/{id}/proxy/8080/hostname", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{id}");
    }
}
