//! Template builds through the real server, CLI and engine: `berth template build` turns a
//! template whose image is missing into one whose pool fills from the built image; a failing
//! Dockerfile exits 1 with the build's error on one line; refusals come before any output.
//! Every image a test builds is removed when it ends.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use berth_e2e::api::{self, post};
use berth_e2e::{TEST_IMAGE, TestServer, berth_binary, docker, eventually, unique};
use serde_json::{Value, json};

/// Removes the image when dropped (also on panic). Declared before the server, so that the
/// server's containers are gone first.
struct RemoveImage(String);

impl Drop for RemoveImage {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.0]);
    }
}

/// The body of a `GET`, whatever its status.
async fn get(server: &TestServer, path: &str) -> Value {
    api::get(server, path).await.1
}

/// A template with a pool of one whose image (unique to the test) does not exist yet.
async fn template_with_missing_image(server: &TestServer, name: &str, image: &str) {
    let (status, created) = post(
        server,
        "/v1/templates",
        json!({"name": name, "image": image, "command": ["sleep", "3600"], "pool": {"min_ready": 1}}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let reported = eventually(Duration::from_secs(30), || async {
        let template = get(server, &format!("/v1/templates/{name}")).await;
        template["error"].as_str().map(str::to_owned)
    })
    .await
    .expect("the missing image is reported on the template");
    assert!(reported.contains(image), "{reported}");
}

fn context_dir(dockerfile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).expect("write the Dockerfile");
    std::fs::write(dir.path().join("payload.txt"), "from the context\n").expect("write a context file");
    dir
}

/// `berth template build NAME DIR` against the server, run to its end (stderr is not a terminal:
/// plain lines).
async fn cli_build(server: &TestServer, name: &str, dir: &Path) -> Output {
    let mut command = Command::new(berth_binary());
    command
        .args(["--server", &server.url, "template", "build", name])
        .arg(dir)
        .env_remove("BERTH_SERVER")
        .env("BERTH_DATA_DIR", &server.data_dir);
    tokio::task::spawn_blocking(move || command.output().expect("berth runs"))
        .await
        .expect("the CLI finished")
}

#[tokio::test]
async fn a_build_fills_the_pool_of_a_template_whose_image_was_missing() {
    let name = unique("built");
    let image = format!("berth-test/{name}:latest");
    let _image = RemoveImage(image.clone());
    let server = TestServer::start().await.unwrap();
    template_with_missing_image(&server, &name, &image).await;

    let dir = context_dir(&format!(
        "FROM {TEST_IMAGE}\nCOPY payload.txt /payload.txt\nRUN echo built > /built\n"
    ));
    let built = cli_build(&server, &name, dir.path()).await;
    let stdout = String::from_utf8_lossy(&built.stdout);
    let stderr = String::from_utf8_lossy(&built.stderr);
    assert!(
        built.status.success(),
        "exit {:?}; stderr:\n{stderr}",
        built.status.code()
    );
    assert_eq!(stdout.trim(), image, "the image is printed");
    assert!(
        stderr
            .lines()
            .any(|line| line.starts_with("Step 1/") && line.contains(": FROM")),
        "the build's lines stream: {stderr}"
    );
    assert!(stderr.contains("RUN echo built > /built"), "{stderr}");
    assert_eq!(
        docker(&[
            "image",
            "inspect",
            "--format",
            "{{index .Config.Labels \"berth.template\"}}",
            &image
        ])
        .unwrap()
        .trim(),
        format!("{name}:latest")
    );

    // The template keeps its image name; its error clears and its pool fills from the image.
    let template = eventually(Duration::from_secs(60), || async {
        let template = get(&server, &format!("/v1/templates/{name}")).await;
        (template["pool"]["ready"] == 1 && template["error"].is_null()).then_some(template)
    })
    .await
    .unwrap_or_else(|| panic!("the pool never filled; log:\n{}", server.log()));
    assert_eq!(template["image"], image.as_str());

    let (status, sandbox) = post(&server, "/v1/sandboxes", json!({"template": name})).await;
    assert_eq!(status, 201, "{sandbox}");
    let id = sandbox["id"].as_str().unwrap();
    let (status, ran) = post(
        &server,
        &format!("/v1/sandboxes/{id}/exec"),
        json!({"cmd": ["cat", "/built", "/payload.txt"]}),
    )
    .await;
    assert_eq!(status, 200, "{ran}");
    assert_eq!(ran["exit_code"], 0, "{ran}");
    assert_eq!(ran["stdout"], "built\nfrom the context\n");
}

#[tokio::test]
async fn a_failing_build_exits_1_with_the_builds_error_on_one_line() {
    let name = unique("broken");
    let image = format!("berth-test/{name}:latest");
    let _image = RemoveImage(image.clone());
    let server = TestServer::start().await.unwrap();
    template_with_missing_image(&server, &name, &image).await;

    let dir = context_dir(&format!("FROM {TEST_IMAGE}\nRUN echo about to fail && exit 3\n"));
    let failed = cli_build(&server, &name, dir.path()).await;
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(failed.stdout.is_empty(), "no image is printed");
    assert!(stderr.contains("about to fail"), "the RUN's output is shown: {stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("berth: build failed: "), "{stderr}");
    assert!(
        last.contains("echo about to fail && exit 3") && last.contains("non-zero code: 3"),
        "{last}"
    );
    assert!(docker(&["image", "inspect", &image]).is_err(), "nothing was tagged");
    let template = get(&server, &format!("/v1/templates/{name}")).await;
    assert_eq!(template["image"], image.as_str());
    assert!(template["error"].is_string(), "{template}");
}

#[tokio::test]
async fn build_refusals_are_problems_and_a_started_build_streams_ndjson() {
    let name = unique("refusals");
    let image = format!("berth-test/{name}:latest");
    let _image = RemoveImage(image.clone());
    let server = TestServer::start().await.unwrap();
    let (status, _) = post(&server, "/v1/templates", json!({"name": name, "image": image})).await;
    assert_eq!(status, 201);
    let client = server.http();
    let build = |reference: &str, content_type: &str, body: Vec<u8>| {
        client
            .post(format!("{}/v1/templates/{reference}/build", server.url))
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    let missing = build("no-such-template", "application/x-tar", Vec::new())
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    let not_tar = build(&name, "application/gzip", vec![0; 10]).await.unwrap();
    assert_eq!(not_tar.status().as_u16(), 415);
    assert_eq!(
        not_tar.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );

    let mut tar = tar::Builder::new(Vec::new());
    let dockerfile = format!("FROM {TEST_IMAGE}\nRUN true\n");
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())
        .unwrap();
    let tar = tar.into_inner().unwrap();

    // No Dockerfile at the named path: the engine refuses the context before any output.
    let response = client
        .post(format!(
            "{}/v1/templates/{name}/build?dockerfile=other/Dockerfile",
            server.url
        ))
        .header("content-type", "application/x-tar")
        .body(tar.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);

    let response = build(&name, "application/x-tar", tar).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/x-ndjson"
    );
    let text = response.text().await.unwrap();
    let lines: Vec<Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert!(lines.iter().any(|line| line["log"].is_string()), "{text}");
    let last = lines.last().unwrap();
    assert_eq!(last["done"]["image"], image.as_str(), "{text}");
    assert!(
        last["done"]["image_id"].as_str().unwrap().starts_with("sha256:"),
        "{text}"
    );
}
