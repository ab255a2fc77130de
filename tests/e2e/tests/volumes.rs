//! Persistent volumes through the real server and engine: an owner's volume outlives the
//! sandboxes that mount it, is shared by that owner's sandboxes (read-only where asked), is
//! never reachable from another owner (whose volume of the same name is another volume), and
//! cannot be deleted while a sandbox mounts it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use berth_e2e::{TEST_IMAGE, TestServer, docker, docker_inspect, field_named, http_as};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// One owner's view of the server: its key's HTTP client.
struct Tenant<'a> {
    server: &'a TestServer,
    http: reqwest::Client,
}

impl Tenant<'_> {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.server.url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    /// A running sandbox with `volumes`; its id.
    async fn sandbox_with(&self, volumes: Value) -> String {
        let (status, sandbox) = self
            .post(
                "/v1/sandboxes",
                json!({"image": TEST_IMAGE, "command": ["sleep", "600"], "ttl": "10m", "volumes": volumes}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{sandbox}\n{}", self.server.log());
        assert_eq!(sandbox["status"], "Running", "{sandbox}");
        sandbox["id"].as_str().unwrap().to_owned()
    }

    /// `sh -c line` in sandbox `id`: its exit code and stdout.
    async fn run(&self, id: &str, line: &str) -> (i64, String) {
        let (status, result) = self
            .post(
                &format!("/v1/sandboxes/{id}/exec"),
                json!({"cmd": ["sh", "-c", line], "timeout": "20s"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{result}");
        (
            result["exit_code"].as_i64().unwrap(),
            result["stdout"].as_str().unwrap_or_default().to_owned(),
        )
    }

    async fn remove(&self, id: &str) {
        let (status, answer) = self.delete(&format!("/v1/sandboxes/{id}?wait=true")).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    }
}

#[tokio::test]
async fn a_volume_outlives_its_sandboxes_is_shared_by_its_owner_and_never_reached_by_another() {
    let server = TestServer::start().await.unwrap();
    let team_a = Tenant {
        server: &server,
        http: http_as(Some(&server.key_for("team-a", "member").await)),
    };
    let team_b = Tenant {
        server: &server,
        http: http_as(Some(&server.key_for("team-b", "member").await)),
    };

    // Made once; a second of the same name, a bad name and another owner's name are refused.
    let (status, volume) = team_a.post("/v1/volumes", json!({"name": "data"})).await;
    assert_eq!(status, StatusCode::CREATED, "{volume}");
    assert_eq!(volume["owner"], "team-a", "{volume}");
    assert_eq!(volume["mounted_by"], json!([]), "{volume}");
    let (status, problem) = team_a.post("/v1/volumes", json!({"name": "data"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    let (status, problem) = team_a.post("/v1/volumes", json!({"name": "no/such"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(field_named(&problem, "name"), "{problem}");
    let (status, problem) = team_a
        .post("/v1/volumes", json!({"name": "x", "owner": "team-b"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");

    // Mount errors name their field; a volume the owner lacks is refused before anything runs.
    let (status, problem) = team_a
        .post(
            "/v1/sandboxes",
            json!({"image": TEST_IMAGE, "volumes": [{"name": "data", "path": "/"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(field_named(&problem, "volumes[0].path"), "{problem}");
    let (status, problem) = team_a
        .post(
            "/v1/sandboxes",
            json!({"image": TEST_IMAGE, "volumes": [{"name": "nope", "path": "/n"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(field_named(&problem, "volumes[0].name"), "{problem}");
    assert!(problem.to_string().contains("POST /v1/volumes"), "{problem}");

    // Written by one sandbox, read by another of the owner (read-only: its writes fail).
    let writer = team_a.sandbox_with(json!([{"name": "data", "path": "/data"}])).await;
    assert_eq!(
        team_a.run(&writer, "echo kept > /data/note && echo ok").await,
        (0, "ok\n".into())
    );
    let reader = team_a
        .sandbox_with(json!([{"name": "data", "path": "/in", "read_only": true}]))
        .await;
    assert_eq!(team_a.run(&reader, "cat /in/note").await, (0, "kept\n".into()));
    let (code, _) = team_a.run(&reader, "echo no > /in/other").await;
    assert_ne!(code, 0, "a read-only mount took a write");
    let (_, shown) = team_a.get(&format!("/v1/sandboxes/{reader}")).await;
    assert_eq!(
        shown["volumes"],
        json!([{"name": "data", "path": "/in", "read_only": true}]),
        "{shown}"
    );

    // On the engine: a volume of its own name, labelled with its owner, mounted as asked.
    let container = docker_inspect(&format!("berth-{reader}")).unwrap();
    let mount = &container["Mounts"][0];
    assert_eq!(mount["Type"], "volume", "{mount}");
    assert_eq!(mount["RW"], false, "{mount}");
    let engine_name = mount["Name"].as_str().unwrap().to_owned();
    assert!(engine_name.starts_with("berth-vol-"), "{engine_name}");
    let labels = docker(&["volume", "inspect", "--format", "{{json .Labels}}", &engine_name]).unwrap();
    let labels: Value = serde_json::from_str(labels.trim()).unwrap();
    assert_eq!(labels["berth.owner"], "team-a", "{labels}");
    assert_eq!(labels["berth.volume"], "data", "{labels}");

    // Another owner: cannot mount it, sees none of it, and its own `data` is another volume.
    let (status, problem) = team_b
        .post(
            "/v1/sandboxes",
            json!({"image": TEST_IMAGE, "volumes": [{"name": "data", "path": "/data"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(field_named(&problem, "volumes[0].name"), "{problem}");
    // A member's list is its own, whatever it asks for; naming another owner is refused.
    for path in ["/v1/volumes", "/v1/volumes?owner=team-a"] {
        let (status, listed) = team_b.get(path).await;
        assert_eq!(status, StatusCode::OK, "{listed}");
        assert_eq!(listed["volumes"], json!([]), "{path}: {listed}");
    }
    let (status, problem) = team_b.get("/v1/volumes/data?owner=team-a").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    let (status, problem) = team_b.delete("/v1/volumes/data?owner=team-a").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    let (status, problem) = team_b.get("/v1/volumes/data").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    let (status, _) = team_b.post("/v1/volumes", json!({"name": "data"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let other = team_b.sandbox_with(json!([{"name": "data", "path": "/data"}])).await;
    assert_eq!(team_b.run(&other, "ls -A /data").await, (0, String::new()));

    // Deleting a mounted volume is refused, naming who mounts it; the admin sees both owners'.
    let (_, volume) = team_a.get("/v1/volumes/data").await;
    let mut mounted_by: Vec<String> = serde_json::from_value(volume["mounted_by"].clone()).unwrap();
    mounted_by.sort();
    let mut expected = vec![writer.clone(), reader.clone()];
    expected.sort();
    assert_eq!(mounted_by, expected, "{volume}");
    let (status, problem) = team_a.delete("/v1/volumes/data").await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(problem.to_string().contains(&writer), "{problem}");
    let all = server.get_json("/v1/volumes").await;
    let owners: Vec<&str> = all["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|volume| volume["owner"].as_str().unwrap())
        .collect();
    assert_eq!(owners, ["team-a", "team-b"], "{all}");

    // The sandboxes go; the data stays for the next one.
    team_a.remove(&writer).await;
    team_a.remove(&reader).await;
    let later = team_a.sandbox_with(json!([{"name": "data", "path": "/data"}])).await;
    assert_eq!(team_a.run(&later, "cat /data/note").await, (0, "kept\n".into()));
    team_a.remove(&later).await;

    // Unmounted, it can be deleted, and is gone from the engine.
    let (status, answer) = team_a.delete("/v1/volumes/data").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    let (status, _) = team_a.get("/v1/volumes/data").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        docker(&["volume", "inspect", &engine_name]).is_err(),
        "the engine still has {engine_name}"
    );
    // team-b's volume of the same name is untouched.
    assert_eq!(
        team_b.run(&other, "echo still > /data/x && cat /data/x").await,
        (0, "still\n".into())
    );
}
