//! The AEnvironment compatibility surface through the real server and engine: the Env registry
//! (`/env/…`) round trip, instances created the SDK's way and inline, their variables,
//! arguments, labels and limits inside the engine, list filters, deletes, not-found envelopes,
//! TTL expiry, and the `berth env` verbs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::process::Command;
use std::time::Duration;

use berth_e2e::api::{data, failure, send_as};
use berth_e2e::{TEST_IMAGE, TestServer, berth_binary, docker_inspect, eventually, unique};
use serde_json::{Value, json};

/// The SDK sends its API key as a bearer token; these calls send the admin's, as a platform
/// team's tooling would.
async fn post(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    send_as(
        server,
        server.admin_key.as_deref(),
        reqwest::Method::POST,
        path,
        Some(body),
    )
    .await
}

async fn put(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    send_as(
        server,
        server.admin_key.as_deref(),
        reqwest::Method::PUT,
        path,
        Some(body),
    )
    .await
}

async fn get(server: &TestServer, path: &str) -> (u16, Value) {
    send_as(server, server.admin_key.as_deref(), reqwest::Method::GET, path, None).await
}

async fn delete(server: &TestServer, path: &str) -> (u16, Value) {
    send_as(server, server.admin_key.as_deref(), reqwest::Method::DELETE, path, None).await
}

/// An Env document as `aenv` registers it (camelCase keys), running the test image with
/// `command` (berth's `deployConfig.command` extension: the test image has no CMD).
fn env_document(name: &str, version: &str, command: &[&str]) -> Value {
    json!({
        "name": name,
        "version": version,
        "description": "an env for the e2e tests",
        "tags": ["e2e", "busybox"],
        "codeUrl": "oss://bucket/code.tgz",
        "status": 6,
        "artifacts": [{"id": "img-1", "type": "image", "content": TEST_IMAGE}],
        "buildConfig": {"dockerfile": "Dockerfile"},
        "testConfig": {"script": "pytest"},
        "deployConfig": {
            "cpu": "500m",
            "memory": "64Mi",
            "ttl": "10m",
            "command": command,
            "environment_variables": {"FROM_ENV": "env-value"}
        }
    })
}

const SLEEP: &[&str] = &["sleep", "3600"];

/// Polls `GET /env-instance/{id}` until the instance is `Running` with an address.
async fn running(server: &TestServer, id: &str) -> Value {
    eventually(Duration::from_secs(60), || async {
        let (_, body) = get(server, &format!("/env-instance/{id}")).await;
        let instance = body["data"].clone();
        assert_ne!(instance["status"], "Failed", "{body}");
        (instance["status"] == "Running" && instance["ip"].as_str().is_some_and(|ip| !ip.is_empty()))
            .then_some(instance)
    })
    .await
    .unwrap_or_else(|| panic!("instance {id} never ran with an ip"))
}

/// Runs `cmd` in the instance through berth's v1 exec; returns its stdout.
async fn exec(server: &TestServer, id: &str, cmd: &[&str]) -> String {
    let (status, result) = post(server, &format!("/v1/sandboxes/{id}/exec"), json!({"cmd": cmd})).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["exit_code"], 0, "{result}");
    result["stdout"].as_str().unwrap_or_default().to_owned()
}

fn without_server_fields(mut env: Value) -> Value {
    let object = env.as_object_mut().expect("an Env object");
    for key in ["id", "created_at", "updated_at"] {
        object.remove(key);
    }
    env
}

#[tokio::test]
async fn the_env_registry_round_trips_envs() {
    let server = TestServer::start().await.unwrap();
    let name = unique("env");
    let document = env_document(&name, "1.0.0", SLEEP);

    assert_eq!(data(post(&server, "/env/", document.clone()).await), true);
    let duplicate = failure(post(&server, "/env/", document.clone()).await, 409);
    assert!(duplicate.contains("already exists"), "{duplicate}");

    // What was posted comes back under the registry's snake_case names, plus id and times.
    let env = data(get(&server, &format!("/env/{name}/1.0.0")).await);
    assert_eq!(env["id"], format!("{name}-1.0.0"));
    for key in ["created_at", "updated_at"] {
        let text = env[key].as_str().unwrap();
        chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|_| panic!("{key} `{text}` is not RFC 3339"));
    }
    assert_eq!(
        without_server_fields(env.clone()),
        json!({
            "name": name,
            "version": "1.0.0",
            "description": "an env for the e2e tests",
            "tags": ["e2e", "busybox"],
            "code_url": "oss://bucket/code.tgz",
            "status": 6,
            "artifacts": [{"id": "img-1", "type": "image", "content": TEST_IMAGE}],
            "build_config": {"dockerfile": "Dockerfile"},
            "test_config": {"script": "pytest"},
            "deploy_config": document["deployConfig"],
        })
    );

    // One store table, two surfaces: the Env is the template name:version.
    let (status, template) = get(&server, &format!("/v1/templates/{name}:1.0.0")).await;
    assert_eq!(status, 200, "{template}");
    assert_eq!(template["image"], TEST_IMAGE);
    assert_eq!(template["resources"]["cpu"], "0.5");

    assert_eq!(
        data(get(&server, &format!("/env/{name}/1.0.0/exists")).await),
        json!({"exists": true, "status": 6})
    );
    assert_eq!(
        data(get(&server, &format!("/env/{name}/9.9.9/exists")).await),
        json!({"exists": false, "status": 0})
    );
    let listed = data(get(&server, "/env/").await);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|item| item["id"] == format!("{name}-1.0.0")),
        "{listed}"
    );

    // PUT replaces the fields it names and keeps the rest.
    let changed = json!({"description": "changed", "deployConfig": {"imageName": TEST_IMAGE, "command": SLEEP, "memory": "128Mi"}});
    assert_eq!(data(put(&server, &format!("/env/{name}/1.0.0"), changed).await), true);
    let env = data(get(&server, &format!("/env/{name}/1.0.0")).await);
    assert_eq!(env["description"], "changed");
    assert_eq!(env["tags"], json!(["e2e", "busybox"]));
    assert_eq!(env["deploy_config"]["memory"], "128Mi");
    let (_, template) = get(&server, &format!("/v1/templates/{name}:1.0.0")).await;
    assert_eq!(template["resources"]["memory"], "128Mi");

    // A released Env is frozen.
    assert_eq!(
        data(put(&server, &format!("/env/{name}/1.0.0"), json!({"status": 7})).await),
        true
    );
    let frozen = failure(
        put(&server, &format!("/env/{name}/1.0.0"), json!({"description": "x"})).await,
        403,
    );
    assert!(frozen.contains("released"), "{frozen}");

    assert_eq!(data(delete(&server, &format!("/env/{name}/1.0.0")).await), true);
    let missing = failure(get(&server, &format!("/env/{name}/1.0.0")).await, 404);
    assert!(missing.starts_with("Environment not found"), "{missing}");
    failure(delete(&server, &format!("/env/{name}/1.0.0")).await, 404);
    failure(put(&server, &format!("/env/{name}/1.0.0"), json!({})).await, 404);

    // Bad Envs get a 400 naming the field.
    let bad_name = failure(post(&server, "/env/", env_document("Bad_Name", "1", SLEEP)).await, 400);
    assert!(
        bad_name.contains("name: `Bad_Name`") && bad_name.contains("DNS labels"),
        "{bad_name}"
    );
    let no_image = failure(
        post(&server, "/env/", json!({"name": unique("noimg"), "version": "1"})).await,
        400,
    );
    assert!(no_image.contains("artifacts: no image"), "{no_image}");
    let bad_cpu = failure(
        post(
            &server,
            "/env/",
            json!({"name": unique("cpu"), "version": "1", "deployConfig": {"imageName": TEST_IMAGE, "cpu": "many"}}),
        )
        .await,
        400,
    );
    assert!(bad_cpu.contains("deployConfig.cpu"), "{bad_cpu}");
    failure(get(&server, "/env/Bad_Name/1").await, 400);
}

#[tokio::test]
async fn an_sdk_instance_runs_with_its_variables_arguments_labels_and_limits() {
    let server = TestServer::start().await.unwrap();
    let name = unique("sdk");
    let command = ["sh", "-c", "echo \"$@\" > /args.txt; exec sleep 3600", "aenv"];
    assert_eq!(
        data(post(&server, "/env/", env_document(&name, "1.0.0", &command)).await),
        true
    );
    let registered = data(get(&server, &format!("/env/{name}/1.0.0")).await);

    // The body the SDK sends, with a field it may add some day.
    let created = data(
        post(
            &server,
            "/env-instance",
            json!({
                "envName": format!("{name}@1.0.0"),
                "datasource": "",
                "ttl": "10m",
                "environment_variables": {"envNAME": name, "envversion": "1.0.0", "GREETING": "hi there"},
                "arguments": ["alpha", "beta gamma"],
                "owner": "alice@example.com",
                "labels": {"team": "rl"},
                "field_from_the_future": true
            }),
        )
        .await,
    );
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(
        ["Pending", "Creating", "Running"].contains(&created["status"].as_str().unwrap()),
        "{created}"
    );
    assert_eq!(created["env"], registered, "the complete Env, never a partial one");
    assert!(
        created["created_at"].is_string() && created["updated_at"].is_string(),
        "{created}"
    );
    assert_eq!(created["ttl"], "10m");
    assert_eq!(created["owner"], "alice@example.com");

    let instance = running(&server, &id).await;
    assert_eq!(instance["env"], registered);
    assert_eq!(instance["labels"]["team"], "rl");

    // Variables (the SDK's envNAME/envversion too) and arguments reach the process.
    let environment = exec(&server, &id, &["env"]).await;
    for line in [
        format!("envNAME={name}"),
        "envversion=1.0.0".to_owned(),
        "GREETING=hi there".to_owned(),
        "FROM_ENV=env-value".to_owned(),
    ] {
        assert!(
            environment.lines().any(|l| l == line),
            "{line} missing from:\n{environment}"
        );
    }
    assert_eq!(exec(&server, &id, &["cat", "/args.txt"]).await, "alpha beta gamma\n");

    // The container carries AEnvironment's labels beside berth's, and `500m` is half a CPU.
    let (_, sandbox) = get(&server, &format!("/v1/sandboxes/{id}")).await;
    let container = docker_inspect(sandbox["container_id"].as_str().unwrap()).expect("the container exists");
    let labels = &container["Config"]["Labels"];
    assert_eq!(labels["aenv.env_name"], name.as_str());
    assert_eq!(labels["aenv.version"], "1.0.0");
    assert_eq!(labels["aenv.owner"], "alice@example.com");
    assert_eq!(labels["aenv.ttl"], "10m");
    chrono::DateTime::parse_from_rfc3339(labels["aenv.created_at"].as_str().unwrap()).expect("RFC 3339");
    assert_eq!(labels["berth.sandbox"], id.as_str());
    assert_eq!(container["HostConfig"]["NanoCpus"], 500_000_000);
    assert_eq!(container["HostConfig"]["Memory"], 64 * 1024 * 1024);

    assert_eq!(
        data(delete(&server, &format!("/env-instance/{id}")).await),
        "Deleted successfully"
    );
    eventually(Duration::from_secs(30), || async {
        (get(&server, &format!("/env-instance/{id}")).await.0 == 404).then_some(())
    })
    .await
    .expect("a deleted instance is gone");
    let gone = failure(get(&server, &format!("/env-instance/{id}")).await, 404);
    assert!(gone.contains(&id), "{gone}");
    failure(delete(&server, &format!("/env-instance/{id}")).await, 404);
}

#[tokio::test]
async fn inline_envs_list_filters_and_refusals() {
    let server = TestServer::start().await.unwrap();
    let name = unique("lst");
    for version in ["1", "2"] {
        assert_eq!(
            data(post(&server, "/env/", env_document(&name, version, SLEEP)).await),
            true
        );
    }
    let sdk = |version: &str| json!({"envName": format!("{name}@{version}"), "ttl": "10m"});
    let first = data(post(&server, "/env-instance", sdk("1")).await);
    let second = data(post(&server, "/env-instance", sdk("2")).await);

    // An inline Env: nothing registered, the instance made from its spec.
    let inline_name = unique("inl");
    let inline = data(
        post(
            &server,
            "/env-instance",
            json!({
                "name": inline_name,
                "version": "0.1",
                "owner": "bob",
                "artifacts": [{"type": "image", "content": TEST_IMAGE}],
                "deployConfig": {"cpu": "1", "memory": "32Mi", "ttl": "10m", "command": SLEEP}
            }),
        )
        .await,
    );
    assert_eq!(inline["env"]["name"], inline_name.as_str());
    assert_eq!(inline["env"]["version"], "0.1");
    assert_eq!(inline["owner"], "bob");
    failure(get(&server, &format!("/env/{inline_name}/0.1")).await, 404);
    let inline_id = inline["id"].as_str().unwrap().to_owned();
    let running_inline = running(&server, &inline_id).await;
    assert_eq!(running_inline["env"]["name"], inline_name.as_str());
    assert_eq!(running_inline["env"]["status"], 6);

    let ids = |list: Value| -> Vec<String> {
        let mut ids: Vec<String> = list
            .as_array()
            .unwrap_or_else(|| panic!("data is not an array: {list}"))
            .iter()
            .map(|item| {
                assert!(
                    item["env"]["name"].is_string() && item["env"]["version"].is_string(),
                    "{item}"
                );
                item["id"].as_str().unwrap().to_owned()
            })
            .collect();
        ids.sort();
        ids
    };
    let sorted = |mut list: Vec<&Value>| -> Vec<String> {
        list.sort_by_key(|value| value.as_str().unwrap().to_owned());
        list.iter().map(|value| value.as_str().unwrap().to_owned()).collect()
    };
    let by_name = ids(data(get(&server, &format!("/env-instance/{name}/list")).await));
    assert_eq!(by_name, sorted(vec![&first["id"], &second["id"]]));
    let by_version = ids(data(get(&server, &format!("/env-instance/{name}@2/list")).await));
    assert_eq!(by_version, sorted(vec![&second["id"]]));
    let all = ids(data(get(&server, "/env-instance/*/list").await));
    assert_eq!(all, sorted(vec![&first["id"], &second["id"], &inline["id"]]));
    let filtered = ids(data(
        get(&server, &format!("/env-instance/*/list?envName={inline_name}")).await,
    ));
    assert_eq!(filtered, sorted(vec![&inline["id"]]));
    let filtered = ids(data(
        get(&server, &format!("/env-instance/*/list?envName={name}%401")).await,
    ));
    assert_eq!(filtered, sorted(vec![&first["id"]]));
    assert_eq!(data(get(&server, "/env-instance/nothing-here/list").await), json!([]));

    // Not found is a 404 envelope, never a 500.
    failure(get(&server, "/env-instance/0123456789abcdef").await, 404);
    failure(get(&server, "/env-instance/not-an-id").await, 404);
    failure(delete(&server, "/env-instance/0123456789abcdef").await, 404);
    let unknown = failure(
        post(&server, "/env-instance", json!({"envName": "nobody@1"})).await,
        404,
    );
    assert!(unknown.starts_with("Environment not found"), "{unknown}");

    // Bad requests are 400s naming what is wrong.
    let format = failure(post(&server, "/env-instance", json!({"envName": name})).await, 400);
    assert!(format.starts_with("Invalid EnvName format"), "{format}");
    let nothing = failure(post(&server, "/env-instance", json!({"ttl": "1m"})).await, 400);
    assert!(nothing.contains("envName"), "{nothing}");
    let ttl = failure(
        post(
            &server,
            "/env-instance",
            json!({"envName": format!("{name}@1"), "ttl": "1d"}),
        )
        .await,
        400,
    );
    assert!(ttl.contains("ttl"), "{ttl}");
    let variable = failure(
        post(
            &server,
            "/env-instance",
            json!({"envName": format!("{name}@1"), "environment_variables": {"A=B": "1"}}),
        )
        .await,
        400,
    );
    assert!(variable.contains("environment_variables.A=B"), "{variable}");
    let commandless = unique("nocmd");
    let mut no_command = env_document(&commandless, "1", SLEEP);
    no_command["deployConfig"].as_object_mut().unwrap().remove("command");
    assert_eq!(data(post(&server, "/env/", no_command).await), true);
    let arguments = failure(
        post(
            &server,
            "/env-instance",
            json!({"envName": format!("{commandless}@1"), "arguments": ["--x"]}),
        )
        .await,
        400,
    );
    assert!(
        arguments.contains("arguments") && arguments.contains("deployConfig.command"),
        "{arguments}"
    );
}

#[tokio::test]
async fn a_short_ttl_expires_the_instance() {
    let server = TestServer::start().await.unwrap();
    let name = unique("ttl");
    assert_eq!(
        data(post(&server, "/env/", env_document(&name, "1", SLEEP)).await),
        true
    );
    let created = data(
        post(
            &server,
            "/env-instance",
            json!({"envName": format!("{name}@1"), "ttl": "8s"}),
        )
        .await,
    );
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["ttl"], "8s");
    let instance = running(&server, &id).await;
    let (_, sandbox) = get(&server, &format!("/v1/sandboxes/{id}")).await;
    let container = sandbox["container_id"].as_str().unwrap().to_owned();
    assert_eq!(instance["ttl"], "8s");

    // 8 s: a create on an engine loaded by the whole suite has taken over 6 s, and the instance
    // must be seen running before it expires.
    eventually(Duration::from_secs(30), || async {
        (get(&server, &format!("/env-instance/{id}")).await.0 == 404).then_some(())
    })
    .await
    .expect("the instance expired");
    let message = failure(get(&server, &format!("/env-instance/{id}")).await, 404);
    assert!(message.contains(&id), "{message}");
    assert_eq!(
        data(get(&server, &format!("/env-instance/{name}/list")).await),
        json!([])
    );
    let (_, ended) = get(&server, &format!("/v1/sandboxes/{id}")).await;
    assert_eq!(ended["status_reason"], "expired");
    eventually(Duration::from_secs(10), || async {
        docker_inspect(&container).is_none().then_some(())
    })
    .await
    .expect("the container is removed");
}

/// `berth --server URL <args>`: exit code and stdout, stderr.
fn berth(server: &TestServer, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(berth_binary())
        .args(["--server", &server.url])
        .args(args)
        .env("BERTH_DATA_DIR", &server.data_dir)
        .env_remove("BERTH_API_KEY")
        .output()
        .expect("berth runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_env_verbs_create_list_inspect_and_remove() {
    let server = TestServer::start().await.unwrap();
    let name = unique("cli");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("env.json");
    std::fs::write(&file, env_document(&name, "1.0.0", SLEEP).to_string()).unwrap();
    let file = file.to_str().unwrap();

    let (code, out, err) = berth(&server, &["env", "create", "-f", file]);
    assert_eq!((code, out.as_str()), (0, format!("{name}@1.0.0\n").as_str()), "{err}");
    let (code, _, err) = berth(&server, &["env", "create", "-f", file]);
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");

    let (code, out, _) = berth(&server, &["env", "ls"]);
    assert_eq!(code, 0);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "VERSION", "IMAGE", "STATUS", "CREATED"]);
    let row = out
        .lines()
        .find(|line| line.starts_with(&name))
        .expect("the env is listed");
    assert!(
        row.contains("1.0.0") && row.contains(TEST_IMAGE) && row.contains("Ready"),
        "{row}"
    );
    let (_, out, _) = berth(&server, &["env", "ls", "-o", "json"]);
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|env| env["name"] == name.as_str())
    );

    let (code, out, _) = berth(&server, &["env", "inspect", &format!("{name}@1.0.0"), "-o", "yaml"]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("id: {name}-1.0.0")), "{out}");
    let (code, _, err) = berth(&server, &["env", "inspect", &format!("{name}@9")]);
    assert_eq!(code, 1);
    assert!(err.contains("Environment not found"), "{err}");
    let (code, _, err) = berth(&server, &["env", "inspect", &name]);
    assert_eq!(code, 2, "{err}");

    let (code, out, _) = berth(&server, &["env", "rm", &format!("{name}@1.0.0")]);
    assert_eq!((code, out.trim()), (0, format!("{name}@1.0.0").as_str()));
    let (code, _, _) = berth(&server, &["env", "rm", &format!("{name}@1.0.0")]);
    assert_eq!(code, 1);
}
