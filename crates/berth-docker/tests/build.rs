//! Integration tests of image builds against the real Docker Engine (no mocks): a build from an
//! in-memory context streams its output and ends with the image's id; a failing RUN ends the
//! stream with the build's error; a context with no Dockerfile is refused before any output.
//! Every image a test builds is removed when it ends.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::process::Command;

use berth_core::SandboxId;
use berth_runtime::{BuildEvent, BuildRequest, ByteStream, Runtime, RuntimeError};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream;

use common::{TEST_IMAGE, ensure_test_image, runtime};

/// Removes, when dropped (also on panic), the images tagged by the test: its own and nothing else.
struct RemoveImages(Vec<String>);

impl Drop for RemoveImages {
    fn drop(&mut self) {
        for tag in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", tag]).output();
        }
    }
}

/// A tag no other test (or run) uses.
fn unique_tag(what: &str) -> String {
    format!("berth-test/build-{what}-{}:latest", SandboxId::generate())
}

/// A tar build context holding `files` (name, content), sent in small chunks as a client would.
fn context(files: &[(&str, &str)]) -> ByteStream {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, name, content.as_bytes())
            .expect("append to the in-memory tar");
    }
    let tar = builder.into_inner().expect("finish the in-memory tar");
    let chunks: Vec<Result<Bytes, std::io::Error>> = tar.chunks(700).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    stream::iter(chunks).boxed()
}

fn request(tag: &str) -> BuildRequest {
    BuildRequest {
        labels: BTreeMap::from([("berth.template".to_owned(), "build-test:latest".to_owned())]),
        ..BuildRequest::new(tag)
    }
}

/// Every event of a build, in order.
async fn events(
    mut build: futures::stream::BoxStream<'static, Result<BuildEvent, RuntimeError>>,
) -> Vec<Result<BuildEvent, RuntimeError>> {
    let mut all = Vec::new();
    while let Some(event) = build.next().await {
        all.push(event);
    }
    all
}

fn log_lines(events: &[Result<BuildEvent, RuntimeError>]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|event| match event {
            Ok(BuildEvent::Log(line)) => Some(line.as_str()),
            _ => None,
        })
        .collect()
}

fn docker(args: &[&str]) -> String {
    let output = Command::new("docker").args(args).output().expect("docker runs");
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test]
async fn build_streams_its_output_and_tags_the_image() {
    ensure_test_image();
    let runtime = runtime().await;
    let tag = unique_tag("ok");
    let _cleanup = RemoveImages(vec![tag.clone()]);
    let dockerfile =
        format!("FROM {TEST_IMAGE}\nARG GREETING=hi\nRUN echo $GREETING > /hello\nCMD [\"sleep\",\"3600\"]\n");
    let mut build_request = request(&tag);
    // A value of its own: the build runs the step instead of taking it from the cache.
    let greeting = SandboxId::generate().to_string();
    build_request.build_args = BTreeMap::from([("GREETING".to_owned(), greeting.clone())]);
    let build = runtime
        .build_image(&build_request, context(&[("Dockerfile", &dockerfile)]))
        .await
        .expect("the engine takes the build");
    let events = events(build).await;
    let lines = log_lines(&events);
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("Step 1/") && line.contains("FROM")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|line| line.contains("RUN echo $GREETING > /hello")),
        "{lines:?}"
    );
    let Some(Ok(BuildEvent::Done { image_id })) = events.last() else {
        panic!("the build did not end with Done: {events:?}");
    };
    assert!(image_id.starts_with("sha256:"), "{image_id}");
    assert_eq!(docker(&["image", "inspect", "--format", "{{.Id}}", &tag]), *image_id);
    assert_eq!(
        docker(&[
            "image",
            "inspect",
            "--format",
            "{{index .Config.Labels \"berth.template\"}}",
            &tag
        ]),
        "build-test:latest"
    );
    assert_eq!(docker(&["run", "--rm", &tag, "cat", "/hello"]), greeting);
    // `forcerm`: no intermediate container of the build is left behind.
    assert_eq!(docker(&["ps", "-aq", "--filter", &format!("ancestor={image_id}")]), "");
}

#[tokio::test]
async fn a_failing_build_ends_with_its_error_naming_the_command() {
    ensure_test_image();
    let runtime = runtime().await;
    let tag = unique_tag("broken");
    let _cleanup = RemoveImages(vec![tag.clone()]);
    // One RUN that prints, then fails: no intermediate image is committed (and none is left).
    let dockerfile = format!("FROM {TEST_IMAGE}\nRUN echo before && exit 3\nCMD [\"true\"]\n");
    let build = runtime
        .build_image(&request(&tag), context(&[("Dockerfile", &dockerfile)]))
        .await
        .expect("the engine takes the build");
    let events = events(build).await;
    let lines = log_lines(&events);
    assert!(lines.contains(&"before"), "the RUN output streams: {lines:?}");
    match events.last() {
        Some(Err(RuntimeError::Invalid(message))) => {
            assert!(message.contains("echo before && exit 3"), "{message}");
            assert!(message.contains("non-zero code: 3"), "{message}");
        }
        other => panic!("expected the build's error last, got {other:?}"),
    }
    assert!(
        events[..events.len() - 1].iter().all(Result::is_ok),
        "one error, at the end: {events:?}"
    );
    let missing = Command::new("docker")
        .args(["image", "inspect", &tag])
        .output()
        .expect("docker runs");
    assert!(!missing.status.success(), "a failed build tags nothing");
}

#[tokio::test]
async fn a_context_without_the_named_dockerfile_is_refused_before_any_output() {
    ensure_test_image();
    let runtime = runtime().await;
    let tag = unique_tag("nofile");
    let _cleanup = RemoveImages(vec![tag.clone()]);
    let mut build_request = request(&tag);
    build_request.dockerfile = "build/Dockerfile".to_owned();
    let refused = runtime
        .build_image(&build_request, context(&[("Dockerfile", "FROM scratch\n")]))
        .await;
    match refused {
        Err(RuntimeError::Invalid(message)) => assert!(message.contains("Dockerfile"), "{message}"),
        Err(other) => panic!("expected Invalid, got {other:?}"),
        Ok(_) => panic!("a build without its Dockerfile started"),
    }
}
