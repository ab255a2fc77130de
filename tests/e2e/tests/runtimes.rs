//! Runtimes and hardening through the real server and engine: a sandbox under gVisor (`runsc`,
//! checked from inside) with exec, files and logs working; one under `crun`; a runtime the engine
//! lacks refused with the ones it has; a read-only root with a writable `/tmp`; every capability
//! dropped; `/health` telling an admin what the engine can confine. The engine must offer `runsc`
//! and `crun` (scripts/ensure-runtimes.sh, which scripts/test runs).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use berth_e2e::{TestServer, docker_inspect, field_named};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Creates a running sandbox of the test image with `extra` fields; its view.
async fn running(server: &TestServer, command: &[&str], extra: Value) -> Value {
    let mut body = json!({ "image": berth_e2e::TEST_IMAGE, "command": command, "ttl": "10m" });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let (status, sandbox) = server.post_json("/v1/sandboxes", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{sandbox}");
    assert_eq!(sandbox["status"], "Running", "{sandbox}\n{}", server.log());
    sandbox
}

/// Runs a shell line in the sandbox; its exit code and stdout.
async fn sh(server: &TestServer, id: &str, line: &str) -> (i64, String) {
    let (status, result) = server
        .post_json(
            &format!("/v1/sandboxes/{id}/exec"),
            &json!({ "cmd": ["sh", "-c", line] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{line}: {result}");
    (
        result["exit_code"].as_i64().unwrap(),
        result["stdout"].as_str().unwrap_or_default().to_owned(),
    )
}

/// POSTs `body` to `path`, which must answer 422 naming `field`; the problem.
async fn refused_on(server: &TestServer, path: &str, body: &Value, field: &str) -> Value {
    let (status, problem) = server.post_json(path, body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(field_named(&problem, field), "{problem}");
    problem
}

fn engine_runtime(sandbox: &Value) -> String {
    let container = sandbox["container_id"].as_str().unwrap();
    docker_inspect(container).expect("the container exists")["HostConfig"]["Runtime"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_sandbox_under_gvisor_works_as_any_other() {
    let server = TestServer::start().await.unwrap();
    let sandbox = running(
        &server,
        &["sh", "-c", "echo booted under gvisor; sleep 3600"],
        json!({"runtime": "runsc"}),
    )
    .await;
    let id = sandbox["id"].as_str().unwrap();
    assert_eq!(
        sandbox["runtime"], "runsc",
        "the sandbox object says which runtime: {sandbox}"
    );
    assert_eq!(engine_runtime(&sandbox), "runsc");

    // gVisor's own kernel answers from inside: its boot log is not the host's.
    let (code, kernel_log) = sh(&server, id, "dmesg").await;
    assert_eq!(code, 0);
    assert!(kernel_log.contains("Starting gVisor"), "{kernel_log}");

    // Files both ways. gVisor keeps /tmp inside its sandbox (a tmpfs the engine cannot see), so
    // the files API works on the rest of the filesystem.
    let http = server.http();
    let put = http
        .put(format!("{}/v1/sandboxes/{id}/files?path=/data/note.txt", server.url))
        .header("content-type", "application/octet-stream")
        .body("written by berth")
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{:?}", put.text().await);
    assert_eq!(sh(&server, id, "cat /data/note.txt").await.1, "written by berth");
    sh(&server, id, "echo from inside > /data/out.txt").await;
    let got = http
        .get(format!("{}/v1/sandboxes/{id}/files?path=/data/out.txt", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.text().await.unwrap(), "from inside\n");

    let logs = http
        .get(format!("{}/v1/sandboxes/{id}/logs", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(logs.contains("booted under gvisor"), "{logs}");

    let deleted = http
        .delete(format!("{}/v1/sandboxes/{id}?wait=true", server.url))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
}

#[tokio::test]
async fn runtimes_are_chosen_from_what_the_engine_offers() {
    let server = TestServer::start().await.unwrap();
    let problem = refused_on(
        &server,
        "/v1/sandboxes",
        &json!({"image": berth_e2e::TEST_IMAGE, "runtime": "no-such-runtime"}),
        "runtime",
    )
    .await;
    let text = problem.to_string();
    for offered in ["runc", "runsc", "crun"] {
        assert!(text.contains(offered), "lists `{offered}`: {problem}");
    }
    refused_on(
        &server,
        "/v1/sandboxes",
        &json!({"image": berth_e2e::TEST_IMAGE, "runtime": "../runc"}),
        "runtime",
    )
    .await;

    let crun = running(&server, &["sleep", "3600"], json!({"runtime": "crun"})).await;
    assert_eq!(engine_runtime(&crun), "crun");
    let id = crun["id"].as_str().unwrap();
    assert_eq!(sh(&server, id, "echo hi").await, (0, "hi\n".to_owned()));

    let default = running(&server, &["sleep", "3600"], json!({})).await;
    assert!(default.get("runtime").is_none(), "no runtime named: {default}");
    assert_eq!(engine_runtime(&default), "runc", "the engine's default");

    // What the engine can confine is the admin's to read; strangers learn nothing of it.
    let health = server.get_json("/health").await;
    let confinement = &health["confinement"]["local"];
    assert!(
        confinement["runtimes"].as_array().unwrap().contains(&json!("runsc")),
        "{health}"
    );
    assert_eq!(confinement["default_runtime"], "runc", "{health}");
    assert!(confinement["user_namespaces_remapped"].is_boolean(), "{health}");
    assert_eq!(confinement["seccomp"], true, "{health}");
    let anonymous: Value = berth_e2e::api::http()
        .get(format!("{}/health", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(anonymous.get("confinement").is_none(), "{anonymous}");
}

#[tokio::test]
async fn hardening_makes_the_root_read_only_and_drops_every_capability() {
    let server = TestServer::start().await.unwrap();
    let baseline = running(&server, &["sleep", "3600"], json!({})).await;
    let baseline_id = baseline["id"].as_str().unwrap();
    let (_, baseline_caps) = sh(&server, baseline_id, "grep CapEff /proc/self/status").await;
    assert!(!baseline_caps.contains("0000000000000000"), "{baseline_caps}");
    assert_eq!(sh(&server, baseline_id, "touch /written").await.0, 0);

    let strict = running(
        &server,
        &["sleep", "3600"],
        json!({"hardening": {"read_only_rootfs": true, "drop_all_capabilities": true}}),
    )
    .await;
    assert_eq!(
        strict["hardening"],
        json!({"read_only_rootfs": true, "drop_all_capabilities": true}),
        "the sandbox object shows it: {strict}"
    );
    let id = strict["id"].as_str().unwrap();
    let (code, _) = sh(&server, id, "touch /written").await;
    assert_ne!(code, 0, "the root filesystem is read-only");
    assert_eq!(
        sh(&server, id, "touch /tmp/scratch && echo ok").await,
        (0, "ok\n".to_owned())
    );
    let (_, caps) = sh(&server, id, "grep CapEff /proc/self/status").await;
    assert!(caps.contains("0000000000000000"), "no capability left: {caps}");
    let (code, _) = sh(&server, id, "chown 1234 /tmp/scratch").await;
    assert_ne!(code, 0, "root without CAP_CHOWN cannot chown");

    // The engine's archive API writes into no read-only container: the upload is refused, saying
    // why, and nothing is half-written.
    let put = server
        .http()
        .put(format!("{}/v1/sandboxes/{id}/files?path=/tmp/uploaded.txt", server.url))
        .header("content-type", "application/octet-stream")
        .body("x")
        .send()
        .await
        .unwrap();
    let status = put.status();
    let problem = put.text().await.unwrap();
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(
        problem.contains("read-only root filesystem") && problem.contains("exec"),
        "{problem}"
    );

    let (status, problem) = server
        .post_json(
            "/v1/sandboxes",
            &json!({"image": berth_e2e::TEST_IMAGE, "hardening": {"read_only": true}}),
        )
        .await;
    assert!(status.is_client_error(), "{problem}");
    assert!(problem.to_string().contains("read_only"), "{problem}");
}

/// A disk limit reaches the engine where its storage driver enforces one, and is a 422 on the
/// field `disk` saying why where it does not (this machine's overlay2 on ext4 is such an engine;
/// `/health` tells an admin which it is), for sandboxes and templates alike.
#[tokio::test]
async fn a_disk_limit_is_applied_where_the_storage_can_and_refused_with_the_reason_where_not() {
    let server = TestServer::start().await.unwrap();
    refused_on(
        &server,
        "/v1/sandboxes",
        &json!({"image": berth_e2e::TEST_IMAGE, "disk": "lots"}),
        "disk",
    )
    .await;

    let health = server.get_json("/health").await;
    let unavailable = health["confinement"]["local"]["disk_limit_unavailable"].as_str();
    let request = json!({"image": berth_e2e::TEST_IMAGE, "command": ["sleep", "600"], "disk": "1Gi"});
    let template = json!({
        "name": berth_e2e::unique("disk"), "image": berth_e2e::TEST_IMAGE, "disk": "1Gi",
    });
    match unavailable {
        Some(why) => {
            let problem = refused_on(&server, "/v1/sandboxes", &request, "disk").await;
            assert!(problem.to_string().contains(why), "the reason /health gives: {problem}");
            refused_on(&server, "/v1/templates", &template, "disk").await;
            // Nothing was recorded by the refused create.
            let listed = server.client().list(&Default::default()).await.unwrap();
            assert!(listed.items.is_empty(), "{:?}", listed.items);
        }
        None => {
            let (status, sandbox) = server.post_json("/v1/sandboxes", &request).await;
            assert_eq!(status, StatusCode::CREATED, "{sandbox}");
            assert_eq!(sandbox["resources"]["disk"], "1Gi", "{sandbox}");
            let container = docker_inspect(sandbox["container_id"].as_str().unwrap()).unwrap();
            assert_eq!(
                container["HostConfig"]["StorageOpt"]["size"],
                (1u64 << 30).to_string(),
                "{container}"
            );
        }
    }
}
