//! Every kind of bad input gets a 4xx problem naming the field, and creates nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use berth_e2e::{TEST_IMAGE, TestServer, docker_ids, field_named};
use serde_json::{Value, json};

async fn post(server: &TestServer, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let response = server
        .http()
        .post(format!("{}{path}", server.url))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status >= 400 {
        assert_eq!(content_type.as_deref(), Some("application/problem+json"), "{body}");
        assert!(
            body["type"].as_str().unwrap().starts_with("urn:berth:problem:"),
            "{body}"
        );
        assert_eq!(body["status"], status);
        assert!(!body["detail"].as_str().unwrap().is_empty());
    }
    (status, body)
}

async fn create(server: &TestServer, body: Value) -> (u16, Value) {
    post(
        server,
        "/v1/sandboxes",
        "application/json",
        serde_json::to_vec(&body).unwrap(),
    )
    .await
}

#[tokio::test]
async fn bad_bodies_get_a_4xx_naming_the_field_and_nothing_is_created() {
    let server = TestServer::start().await.unwrap();

    let (status, problem) = post(&server, "/v1/sandboxes", "application/json", b"{\"image\": ".to_vec()).await;
    assert_eq!(status, 400);
    assert_eq!(problem["type"], "urn:berth:problem:invalid-body");

    let (status, problem) = post(&server, "/v1/sandboxes", "text/plain", b"{}".to_vec()).await;
    assert_eq!(status, 415, "{problem}");

    let (status, problem) = create(&server, json!({"image": TEST_IMAGE, "colour": "blue"})).await;
    assert_eq!(status, 400);
    assert!(field_named(&problem, "colour"), "{problem}");

    let (status, problem) = create(&server, json!({"image": TEST_IMAGE, "mounts": ["/:/host"]})).await;
    assert_eq!(status, 400);
    assert!(field_named(&problem, "mounts"), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("host"), "{problem}");

    let (status, problem) = create(&server, json!({"image": TEST_IMAGE, "ports": ["eighty"]})).await;
    assert_eq!(status, 400);
    assert!(field_named(&problem, "ports[0]"), "{problem}");

    let (status, problem) = create(&server, json!({"image": TEST_IMAGE, "env": {"A": 1}})).await;
    assert_eq!(status, 400);
    assert!(field_named(&problem, "env.A"), "{problem}");

    let huge = format!(
        "{{\"image\":\"{TEST_IMAGE}\",\"env\":{{\"BIG\":\"{}\"}}}}",
        "x".repeat(1024 * 1024 + 10)
    );
    let (status, problem) = post(&server, "/v1/sandboxes", "application/json", huge.into_bytes()).await;
    assert_eq!(status, 413, "{problem}");

    for (body, field, needle) in [
        (json!({}), "image", "required"),
        (json!({"image": TEST_IMAGE, "cpu": "lots"}), "cpu", "lots"),
        (json!({"image": TEST_IMAGE, "cpu": 0}), "cpu", "0"),
        (json!({"image": TEST_IMAGE, "cpu": "64"}), "cpu", "maximum"),
        (
            json!({"image": TEST_IMAGE, "memory": "12 apples"}),
            "memory",
            "12 apples",
        ),
        (json!({"image": TEST_IMAGE, "ttl": "forever"}), "ttl", "forever"),
        (json!({"image": TEST_IMAGE, "ttl": -5}), "ttl", "-5"),
        (
            json!({"image": TEST_IMAGE, "labels": {"berth.managed": "x"}}),
            "labels.berth.managed",
            "reserved",
        ),
        (
            json!({"image": TEST_IMAGE, "labels": {"bad key!": "x"}}),
            "labels.bad key!",
            "bad key!",
        ),
        (
            json!({"image": TEST_IMAGE, "workdir": "relative"}),
            "workdir",
            "absolute",
        ),
        (json!({"image": TEST_IMAGE, "ports": [0]}), "ports[0]", "1-65535"),
        (json!({"image": "Not An Image!"}), "image", "Not An Image!"),
    ] {
        let (status, problem) = create(&server, body.clone()).await;
        assert_eq!(status, 422, "{body} → {problem}");
        assert_eq!(problem["type"], "urn:berth:problem:validation");
        let error = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["field"] == field);
        let message = error.unwrap_or_else(|| panic!("{body}: no error for {field}: {problem}"))["message"]
            .as_str()
            .unwrap();
        assert!(
            message.contains(needle),
            "{body}: `{message}` should mention `{needle}`"
        );
    }

    // Several bad values are reported together.
    let (status, problem) = create(
        &server,
        json!({"image": TEST_IMAGE, "cpu": "x", "memory": "y", "ttl": "z"}),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"].as_array().unwrap().len(), 3, "{problem}");

    let (status, _) = post(
        &server,
        "/v1/sandboxes?wait=maybe",
        "application/json",
        serde_json::to_vec(&json!({"image": TEST_IMAGE})).unwrap(),
    )
    .await;
    assert_eq!(status, 400);

    // None of that created anything.
    let list: Value = server
        .http()
        .get(format!("{}/v1/sandboxes?all=true", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");
    assert!(
        docker_ids(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=berth.cluster={}", server.cluster)
        ])
        .is_empty()
    );
}

#[tokio::test]
async fn unknown_ids_routes_and_parameters_are_problems() {
    let server = TestServer::start().await.unwrap();
    let http = server.http();
    for (method, path, expected) in [
        ("GET", "/v1/sandboxes/0123456789abcdef", 404),
        ("GET", "/v1/sandboxes/not-an-id", 404),
        ("DELETE", "/v1/sandboxes/0123456789abcdef", 404),
        ("GET", "/v1/nothing-here", 404),
        ("GET", "/v1/sandboxes?limit=0", 400),
        ("GET", "/v1/sandboxes?limit=5000", 400),
        ("GET", "/v1/sandboxes?status=Sleeping", 400),
        ("GET", "/v1/sandboxes?label=novalue", 400),
        ("GET", "/v1/sandboxes?cursor=garbage", 400),
        ("GET", "/v1/sandboxes?colour=blue", 400),
    ] {
        let response = http
            .request(method.parse().unwrap(), format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), expected, "{method} {path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{method} {path}"
        );
        let problem: Value = response.json().await.unwrap();
        assert!(!problem["detail"].as_str().unwrap().is_empty());
    }
    let (status, _) = post(
        &server,
        "/v1/sandboxes/0123456789abcdef/ttl",
        "application/json",
        br#"{"ttl":"5m"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn renewing_with_bad_values_or_after_the_end_is_refused() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let sandbox = client.create(&berth_e2e::sleeper(), Default::default()).await.unwrap();
    let path = format!("/v1/sandboxes/{}/ttl", sandbox.id);
    let (status, problem) = post(&server, &path, "application/json", br#"{"ttl":"soon"}"#.to_vec()).await;
    assert_eq!(status, 422);
    assert!(field_named(&problem, "ttl"), "{problem}");
    let (status, problem) = post(
        &server,
        &path,
        "application/json",
        br#"{"ttl":"5m","extra":1}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(field_named(&problem, "extra"), "{problem}");
    let (status, _) = post(&server, &path, "application/json", br#"{"ttl":"1000h"}"#.to_vec()).await;
    assert_eq!(status, 422);
    client.delete(&sandbox.id).await.unwrap();
    let (status, problem) = post(&server, &path, "application/json", br#"{"ttl":"5m"}"#.to_vec()).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["type"], "urn:berth:problem:invalid-state");
}

#[tokio::test]
async fn what_one_request_may_store_is_bounded_and_the_bounds_are_settings() {
    let server = TestServer::start_with(berth_e2e::ServerOptions {
        args: vec!["--max-spec-size".into(), "4Ki".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let thousand_labels: serde_json::Map<String, Value> =
        (0..1000).map(|n| (format!("label-{n}"), json!("v"))).collect();
    let (status, problem) = create(&server, json!({"image": TEST_IMAGE, "labels": thousand_labels})).await;
    assert_eq!(status, 422, "{problem}");
    assert!(field_named(&problem, "labels"), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("at most 64"), "{problem}");

    let (status, problem) = create(&server, json!({"image": TEST_IMAGE, "env": {"BLOB": "x".repeat(5000)}})).await;
    assert_eq!(status, 422, "{problem}");
    assert!(field_named(&problem, "env"), "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("max_spec_size"),
        "{problem}"
    );

    let (status, problem) = create(
        &server,
        json!({"image": TEST_IMAGE, "command": ["sleep", "600"], "env": {"SMALL": "x".repeat(3000)}}),
    )
    .await;
    assert_eq!(status, 201, "within the bounds: {problem}");
    let created = docker_ids(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=berth.cluster={}", server.cluster),
    ]);
    assert_eq!(
        created.len(),
        1,
        "only the request within the bounds made a container: {created:?}"
    );
}
