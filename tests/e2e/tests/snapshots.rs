//! Snapshots and forks through the real server and engine: a snapshot keeps a running sandbox's
//! files (the sandbox runs on), a create from it sees them with the original's spec, a fork makes
//! independent children, another owner can neither see nor use it, a memory snapshot is refused
//! where the engine cannot checkpoint, and a snapshot is deleted only once nothing runs from it,
//! or collected when its retention ends. The `berth snapshot` and `berth fork` verbs drive the
//! same through the real binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::process::{Command, Stdio};
use std::time::Duration;

use berth_e2e::{
    ServerOptions, TEST_IMAGE, TestServer, berth_binary, docker, eventually, field_named, http_as, unique,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn send(
    http: &reqwest::Client,
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = http.request(method, format!("{}{path}", server.url));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn run(http: &reqwest::Client, server: &TestServer, id: &str, line: &str) -> String {
    let (status, result) = send(
        http,
        server,
        reqwest::Method::POST,
        &format!("/v1/sandboxes/{id}/exec"),
        Some(json!({"cmd": ["sh", "-c", line], "timeout": "20s"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    result["stdout"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_snapshot_keeps_files_for_creates_and_forks_and_stays_its_owners() {
    let server = TestServer::start().await.unwrap();
    let owner = http_as(Some(&server.key_for("team-a", "member").await));
    let stranger = http_as(Some(&server.key_for("team-b", "member").await));
    use reqwest::Method;

    let (status, parent) = send(
        &owner,
        &server,
        Method::POST,
        "/v1/sandboxes",
        Some(json!({"image": TEST_IMAGE, "command": ["sleep", "600"], "env": {"FROM_PARENT": "yes"}, "labels": {"app": "rl"}, "ttl": "10m"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{parent}");
    let parent_id = parent["id"].as_str().unwrap().to_owned();
    run(&owner, &server, &parent_id, "echo step-1 > /state").await;

    // memory: refused here with the reason; bad values name their field.
    let path = format!("/v1/sandboxes/{parent_id}/snapshots");
    let (status, problem) = send(&owner, &server, Method::POST, &path, Some(json!({"mode": "memory"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(
        field_named(&problem, "mode") && problem.to_string().contains("checkpoint"),
        "{problem}"
    );
    let (status, problem) = send(&owner, &server, Method::POST, &path, Some(json!({"ttl": "0s"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(field_named(&problem, "ttl"), "{problem}");

    let (status, snapshot) = send(
        &owner,
        &server,
        Method::POST,
        &path,
        Some(json!({"labels": {"step": "1"}})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{snapshot}");
    let snapshot_id = snapshot["id"].as_str().unwrap().to_owned();
    assert_eq!(snapshot["sandbox_id"], parent_id.as_str(), "{snapshot}");
    assert_eq!(snapshot["owner"], "team-a", "{snapshot}");
    assert_eq!(snapshot["mode"], "filesystem", "{snapshot}");
    assert_eq!(snapshot["labels"], json!({"step": "1"}), "{snapshot}");
    assert!(snapshot["size_bytes"].as_u64().unwrap() > 0, "{snapshot}");
    // The parent runs on, and changes after the snapshot are not in it.
    run(&owner, &server, &parent_id, "echo step-2 > /state").await;
    let (_, listed) = send(&owner, &server, Method::GET, "/v1/snapshots", None).await;
    assert_eq!(listed["snapshots"][0]["id"], snapshot_id.as_str(), "{listed}");

    // A create from it: the snapshot's files, the parent's spec, overrides on top.
    let (status, child) = send(
        &owner,
        &server,
        Method::POST,
        "/v1/sandboxes",
        Some(json!({"snapshot": snapshot_id, "labels": {"child": "1"}})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{child}");
    let child_id = child["id"].as_str().unwrap().to_owned();
    assert_eq!(child["command"], json!(["sleep", "600"]), "{child}");
    assert_eq!(child["labels"], json!({"app": "rl", "child": "1"}), "{child}");
    assert_eq!(
        run(&owner, &server, &child_id, "cat /state; echo $FROM_PARENT").await,
        "step-1\nyes\n"
    );
    let (status, problem) = send(
        &owner,
        &server,
        Method::POST,
        "/v1/sandboxes",
        Some(json!({"snapshot": snapshot_id, "image": TEST_IMAGE})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(field_named(&problem, "image"), "{problem}");

    // Another owner: the snapshot does not exist for it.
    let (status, _) = send(
        &stranger,
        &server,
        Method::GET,
        &format!("/v1/snapshots/{snapshot_id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, listed) = send(&stranger, &server, Method::GET, "/v1/snapshots", None).await;
    assert_eq!(listed["snapshots"], json!([]), "{listed}");
    let (status, problem) = send(
        &stranger,
        &server,
        Method::POST,
        "/v1/sandboxes",
        Some(json!({"snapshot": snapshot_id})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(field_named(&problem, "snapshot"), "{problem}");
    let (status, _) = send(
        &stranger,
        &server,
        Method::DELETE,
        &format!("/v1/snapshots/{snapshot_id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = send(
        &stranger,
        &server,
        Method::POST,
        &format!("/v1/sandboxes/{parent_id}/fork"),
        Some(json!({"count": 2})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // In use by the child: not deleted; once the child is gone, it is.
    let (status, problem) = send(
        &owner,
        &server,
        Method::DELETE,
        &format!("/v1/snapshots/{snapshot_id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    let (status, _) = send(
        &owner,
        &server,
        Method::DELETE,
        &format!("/v1/sandboxes/{child_id}?wait=true"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, answer) = send(
        &owner,
        &server,
        Method::DELETE,
        &format!("/v1/snapshots/{snapshot_id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    let (status, _) = send(
        &owner,
        &server,
        Method::GET,
        &format!("/v1/snapshots/{snapshot_id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A fork of 4: each child has the parent's files as they are now, and its own from then on.
    let fork_path = format!("/v1/sandboxes/{parent_id}/fork");
    let (status, problem) = send(&owner, &server, Method::POST, &fork_path, Some(json!({"count": 0}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(field_named(&problem, "count"), "{problem}");
    let (status, forked) = send(&owner, &server, Method::POST, &fork_path, Some(json!({"count": 4}))).await;
    assert_eq!(status, StatusCode::CREATED, "{forked}");
    assert_eq!(forked["errors"], json!([]), "{forked}");
    let children: Vec<String> = forked["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|child| child["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(children.len(), 4, "{forked}");
    for (index, child) in children.iter().enumerate() {
        assert_eq!(run(&owner, &server, child, "cat /state").await, "step-2\n");
        run(&owner, &server, child, &format!("echo child-{index} > /mine")).await;
    }
    for (index, child) in children.iter().enumerate() {
        assert_eq!(
            run(&owner, &server, child, "cat /mine").await,
            format!("child-{index}\n")
        );
    }
    assert_eq!(
        run(&owner, &server, &parent_id, "cat /mine 2>&1 || echo none")
            .await
            .lines()
            .last(),
        Some("none")
    );
    let (_, parent_now) = send(
        &owner,
        &server,
        Method::GET,
        &format!("/v1/sandboxes/{parent_id}"),
        None,
    )
    .await;
    assert_eq!(parent_now["status"], "Running", "{parent_now}");
}

#[tokio::test]
async fn a_snapshot_is_collected_when_its_retention_ends() {
    let server = TestServer::start_with(ServerOptions {
        args: vec!["--resync-interval".into(), "1s".into()],
        ..ServerOptions::default()
    })
    .await
    .unwrap();
    let (status, sandbox) = server
        .post_json(
            "/v1/sandboxes",
            &json!({"image": TEST_IMAGE, "command": ["sleep", "600"], "ttl": "10m"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sandbox}");
    let id = sandbox["id"].as_str().unwrap();
    let (status, snapshot) = server
        .post_json(&format!("/v1/sandboxes/{id}/snapshots"), &json!({"ttl": "2s"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{snapshot}");
    let image = snapshot["image"].as_str().unwrap().to_owned();
    assert!(docker(&["image", "inspect", &image]).is_ok());
    // The engine untags an image first and deletes its layers after (seconds, when loaded):
    // collected means gone from the engine and from the listing.
    let collected = eventually(Duration::from_secs(30), || async {
        let listed = server.get_json("/v1/snapshots").await;
        (docker(&["image", "inspect", &image]).is_err() && listed["snapshots"] == json!([])).then_some(())
    })
    .await;
    assert!(
        collected.is_some(),
        "{image} outlived its retention: {}\n{}",
        server.get_json("/v1/snapshots").await,
        server.log()
    );
}

#[tokio::test]
async fn a_template_from_a_snapshot_fills_its_pool_from_it_and_keeps_the_snapshot() {
    use berth_e2e::api::{delete, get, post};
    let server = TestServer::start_with(ServerOptions {
        args: vec!["--resync-interval".into(), "1s".into()],
        ..ServerOptions::default()
    })
    .await
    .unwrap();
    let (status, source) = server
        .post_json(
            "/v1/sandboxes",
            &json!({"image": TEST_IMAGE, "command": ["sleep", "600"], "env": {"FROM": "source"}, "ttl": "10m"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{source}");
    let source_id = source["id"].as_str().unwrap();
    let mut events = berth_e2e::EventStream::open(&server, &format!("id={source_id}"), None, false, None).await;
    run(&server.http(), &server, source_id, "echo warm > /state").await;
    let (status, snapshot) = server
        .post_json(&format!("/v1/sandboxes/{source_id}/snapshots"), &json!({"ttl": "3s"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{snapshot}");
    let snapshot_id = snapshot["id"].as_str().unwrap().to_owned();
    let seen = events
        .until(Duration::from_secs(10), |event| event["type"] == "sandbox.snapshot")
        .await;
    let taken = seen.last().filter(|event| event["type"] == "sandbox.snapshot");
    assert_eq!(
        taken.map(|event| &event["snapshot_id"]),
        Some(&json!(snapshot_id)),
        "no sandbox.snapshot event naming it: {seen:?}"
    );

    // A template names an image or a snapshot, and only a snapshot there is.
    let name = unique("snap");
    let (status, problem) = post(
        &server,
        "/v1/templates",
        json!({"name": name, "image": TEST_IMAGE, "snapshot": snapshot_id}),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert!(field_named(&problem, "image"), "{problem}");
    let (status, problem) = post(
        &server,
        "/v1/templates",
        json!({"name": name, "snapshot": "0123456789abcdef"}),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert!(field_named(&problem, "snapshot"), "{problem}");

    // Its pool is filled from the snapshot, with the source's spec under the template's fields.
    let (status, template) = post(
        &server,
        "/v1/templates",
        json!({"name": name, "snapshot": snapshot_id, "env": {"TEMPLATE": "yes"}, "pool": {"min_ready": 1}}),
    )
    .await;
    assert_eq!(status, 201, "{template}");
    assert_eq!(template["snapshot"], snapshot_id.as_str(), "{template}");
    assert_eq!(template["image"], snapshot["image"], "{template}");
    let ready = eventually(Duration::from_secs(60), || async {
        let (_, template) = get(&server, &format!("/v1/templates/{name}")).await;
        (template["pool"]["ready"] == 1).then_some(())
    })
    .await;
    assert!(ready.is_some(), "the pool never filled\n{}", server.log());
    let (status, claimed) = server.post_json("/v1/sandboxes", &json!({"template": name})).await;
    assert_eq!(status, StatusCode::CREATED, "{claimed}");
    let claimed_id = claimed["id"].as_str().unwrap();
    let (_, template) = get(&server, &format!("/v1/templates/{name}")).await;
    assert_eq!(template["pool"]["claimed"], 1, "not claimed from the pool: {template}");
    assert_eq!(
        run(&server.http(), &server, claimed_id, "cat /state; echo $FROM $TEMPLATE").await,
        "warm\nsource yes\n"
    );

    // The snapshot stays while the template points at it, past its retention too, and goes
    // once the template has.
    let retained_until = chrono::DateTime::parse_from_rfc3339(snapshot["expires_at"].as_str().unwrap()).unwrap();
    let past = retained_until.with_timezone(&chrono::Utc) + chrono::Duration::seconds(3) - chrono::Utc::now();
    tokio::time::sleep(past.to_std().unwrap_or_default()).await;
    let (status, kept) = get(&server, &format!("/v1/snapshots/{snapshot_id}")).await;
    assert_eq!(status, 200, "collected while a template points at it: {kept}");
    let (status, problem) = delete(&server, &format!("/v1/snapshots/{snapshot_id}")).await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap_or_default().contains(&name),
        "the refusal names the template: {problem}"
    );
    assert_eq!(delete(&server, &format!("/v1/templates/{name}")).await.0, 204);
    assert_eq!(delete(&server, &format!("/v1/sandboxes/{claimed_id}")).await.0, 202);
    let deleted = eventually(Duration::from_secs(30), || async {
        let (status, _) = delete(&server, &format!("/v1/snapshots/{snapshot_id}")).await;
        (status == 204 || status == 404).then_some(())
    })
    .await;
    assert!(deleted.is_some(), "the snapshot could not be deleted\n{}", server.log());
}

/// One run of the `berth` binary against `server` with `api_key`: exit code, stdout, stderr.
fn berth(server: &TestServer, api_key: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(berth_binary())
        // `--server` first: after `--` it would be part of the sandbox's command.
        .args(["--server", &server.url])
        .args(args)
        .env_remove("BERTH_SERVER")
        .env("BERTH_API_KEY", api_key)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("the berth binary runs (build it with `cargo build -p berth`)");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `berth ARGS` that must succeed; its stdout.
fn berth_ok(server: &TestServer, api_key: &str, args: &[&str]) -> String {
    let (code, stdout, stderr) = berth(server, api_key, args);
    assert_eq!(code, Some(0), "berth {args:?}\nstdout: {stdout}\nstderr: {stderr}");
    stdout
}

fn is_id(text: &str) -> bool {
    text.len() == 16 && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

#[tokio::test]
async fn the_cli_snapshots_lists_runs_from_deletes_and_forks() {
    let server = TestServer::start().await.unwrap();
    let key = server.key_for("team-cli", "member").await;
    let suite = format!("suite={}", unique("snapcli"));

    let parent = berth_ok(
        &server,
        &key,
        &["run", "--ttl", "10m", "-l", &suite, TEST_IMAGE, "--", "sleep", "600"],
    );
    let parent = parent.trim().to_owned();
    berth_ok(
        &server,
        &key,
        &["exec", &parent, "--", "sh", "-c", "echo before > /state"],
    );

    // Like `docker commit`: the id alone on stdout.
    let snapshot = berth_ok(
        &server,
        &key,
        &["snapshot", "create", "--ttl", "2h", "-l", "step=1", &parent],
    );
    let snapshot = snapshot.trim().to_owned();
    assert!(is_id(&snapshot), "{snapshot:?}");
    berth_ok(
        &server,
        &key,
        &["exec", &parent, "--", "sh", "-c", "echo after > /state"],
    );

    let table = berth_ok(&server, &key, &["snapshot", "ls"]);
    let lines: Vec<&str> = table.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "SANDBOX", "MODE", "SIZE", "CREATED", "EXPIRES"],
        "{table}"
    );
    let row = lines
        .iter()
        .find(|line| line.starts_with(&snapshot))
        .unwrap_or_else(|| panic!("{snapshot} in {table}"));
    assert!(
        row.contains(&parent) && row.contains("filesystem") && row.trim_end().ends_with("in 1h"),
        "{table}"
    );
    let listed: serde_json::Value =
        serde_json::from_str(&berth_ok(&server, &key, &["snapshot", "ls", "--json"])).unwrap();
    assert_eq!(listed[0]["id"], snapshot.as_str(), "{listed}");
    assert_eq!(listed[0]["labels"], json!({"step": "1"}), "{listed}");
    let inspected: serde_json::Value =
        serde_json::from_str(&berth_ok(&server, &key, &["snapshot", "inspect", &snapshot])).unwrap();
    assert_eq!(inspected[0]["sandbox_id"], parent.as_str(), "{inspected}");
    assert_eq!(inspected[0]["owner"], "team-cli", "{inspected}");

    // A sandbox from it has the file as it was at the snapshot, and runs the parent's command.
    let child = berth_ok(&server, &key, &["run", "--snapshot", &snapshot]);
    let child = child.trim().to_owned();
    assert!(is_id(&child), "{child:?}");
    assert_eq!(
        berth_ok(&server, &key, &["exec", &child, "--", "cat", "/state"]),
        "before\n"
    );
    let (code, _, stderr) = berth(&server, &key, &["snapshot", "rm", &snapshot]);
    assert_eq!(code, Some(1), "in use by {child}: {stderr}");
    assert!(stderr.starts_with("berth: ") && stderr.contains("in use"), "{stderr}");
    berth_ok(&server, &key, &["rm", &child]);
    assert_eq!(
        berth_ok(&server, &key, &["snapshot", "rm", &snapshot]),
        format!("{snapshot}\n")
    );
    let ids = berth_ok(&server, &key, &["snapshot", "ls", "-q"]);
    assert!(!ids.contains(&snapshot), "{ids}");
    let (code, _, stderr) = berth(&server, &key, &["snapshot", "inspect", &snapshot]);
    assert_eq!(code, Some(1), "{stderr}");

    // A fork prints one id per child, each with the parent's files as they are now.
    let forked = berth_ok(&server, &key, &["fork", "-n", "2", &parent]);
    let children: Vec<&str> = forked.lines().collect();
    assert_eq!(children.len(), 2, "{forked}");
    for child in &children {
        assert!(is_id(child), "{forked}");
        assert_eq!(
            berth_ok(&server, &key, &["exec", child, "--", "cat", "/state"]),
            "after\n"
        );
    }
    assert_ne!(children[0], children[1]);

    // With room for one more: the child that fits is printed, the other is a line on stderr.
    server.limit_sandboxes("team-cli", 4).await;
    let (code, stdout, stderr) = berth(&server, &key, &["fork", "-n", "2", &parent]);
    assert_eq!(code, Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stdout.lines().filter(|line| is_id(line)).count(), 1, "{stdout}");
    let errors: Vec<&str> = stderr.lines().collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].starts_with("berth: ") && errors[0].contains("quota"),
        "{stderr}"
    );
    let (code, _, stderr) = berth(&server, &key, &["fork", "-n", "0", &parent]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("count"), "{stderr}");
}
