//! Network isolation through the real server and engine (`--sandbox-network isolated`): two
//! sandboxes cannot open connections to each other, whichever of them listens, while berth itself still reaches both from the host
//! (readiness probe, proxy, exec). Traffic goes only between the containers this test created.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use berth_e2e::{TestServer, answered_from, docker_inspect};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn sandboxes_cannot_reach_each_other_and_berth_still_reaches_them() {
    let server = TestServer::start_with(berth_e2e::ServerOptions {
        args: vec!["--sandbox-network".into(), "isolated".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let first = berth_e2e::web_server(&server, "allow").await;
    let second = berth_e2e::web_server(&server, "allow").await;
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
    assert!(answered_from(&server, first_id, first_ip, 8080).await);
    assert!(answered_from(&server, second_id, second_ip, 8080).await);
    assert!(
        !answered_from(&server, first_id, second_ip, 8080).await,
        "the first sandbox reached the second"
    );
    assert!(
        !answered_from(&server, second_id, first_ip, 8080).await,
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
