//! Shared helpers of the integration tests: the engine connection, the test image check, requests
//! that carry unique labels, and cleanup of exactly the containers a test created.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use berth_core::{Resources, SandboxId, SandboxSpec};
use berth_docker::{DockerConfig, DockerRuntime};
use berth_runtime::{ContainerRequest, ContainerState, RunState, Runtime, RuntimeError};

pub const TEST_IMAGE: &str = "berth-test/busybox:latest";
pub const TEST_RUN_LABEL: &str = "berth.test";

/// One id per test process, on every container it creates (`berth.test=<id>`).
pub fn test_run_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| SandboxId::generate().to_string())
}

fn script_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-test-images.sh")
}

fn image_present() -> bool {
    Command::new("docker")
        .args(["image", "inspect", TEST_IMAGE])
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false)
}

/// Makes sure the test image exists, building it once with scripts/build-test-images.sh.
/// Panics with what to run when it cannot be had.
pub fn ensure_test_image() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        if image_present() {
            return Ok(());
        }
        let script = script_path();
        let output = Command::new("bash").arg(&script).output();
        if image_present() {
            return Ok(());
        }
        let detail = match output {
            Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            Err(err) => err.to_string(),
        };
        Err(format!(
            "the test image {TEST_IMAGE} is missing and could not be built ({detail}).\n\
             Run `scripts/ensure-docker.sh && scripts/build-test-images.sh` from the workspace root, then re-run the tests."
        ))
    });
    if let Err(message) = ready {
        panic!("{message}");
    }
}

/// Connects to the local engine (DOCKER_HOST or /var/run/docker.sock), with a clear failure.
pub async fn runtime() -> DockerRuntime {
    match DockerRuntime::connect(DockerConfig::default()).await {
        Ok(runtime) => runtime,
        Err(err) => panic!("{err}\nThese tests need a Docker Engine: run scripts/ensure-docker.sh"),
    }
}

/// A request for the test image with unique `berth.sandbox` and the run's `berth.test` labels.
pub fn request(command: &[&str]) -> ContainerRequest {
    let sandbox_id = SandboxId::generate();
    let labels = BTreeMap::from([
        ("berth.managed".to_owned(), "true".to_owned()),
        ("berth.sandbox".to_owned(), sandbox_id.to_string()),
        ("berth.owner".to_owned(), "berth-docker-tests".to_owned()),
        (TEST_RUN_LABEL.to_owned(), test_run_id().to_owned()),
    ]);
    ContainerRequest {
        sandbox_id,
        spec: SandboxSpec {
            image: TEST_IMAGE.to_owned(),
            command: Some(command.iter().map(|s| (*s).to_owned()).collect()),
            env: BTreeMap::new(),
            workdir: None,
            user: None,
            labels: BTreeMap::new(),
            ports: Vec::new(),
            resources: Resources {
                cpu_millis: 500,
                memory_bytes: 64 << 20,
                pids_limit: 64,
                disk_bytes: None,
            },
            ttl: Duration::from_secs(300),
            max_lifetime: None,
            idle_timeout: None,
            hibernate_after: None,
            ttl_counts_idle: false,
            readiness: None,
            stack: None,
            runtime: None,
            hardening: berth_core::Hardening::default(),
            network: berth_core::NetworkPolicy::default(),
            restart: berth_core::Restart::Never,
            volumes: Vec::new(),
        },
        labels,
    }
}

/// Ids of the containers (any state) carrying `berth.sandbox=<id>`.
pub fn containers_of(sandbox_id: &SandboxId) -> Vec<String> {
    let output = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("label=berth.sandbox={sandbox_id}"),
        ])
        .output()
        .expect("docker ps runs");
    assert!(
        output.status.success(),
        "docker ps failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect()
}

/// Removes, when dropped (also on panic), every container of the sandboxes it was given: the
/// test's own and nothing else.
#[derive(Default)]
pub struct Cleanup(Vec<SandboxId>);

impl Cleanup {
    pub fn track(&mut self, request: &ContainerRequest) {
        self.0.push(request.sandbox_id.clone());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for sandbox_id in &self.0 {
            let ids = containers_of(sandbox_id);
            if !ids.is_empty() {
                let _ = Command::new("docker").args(["rm", "-fv"]).args(&ids).output();
            }
        }
    }
}

/// Polls `inspect` until the container has ended (or `timeout` passes) and returns its state.
pub async fn wait_until_ended(runtime: &DockerRuntime, container_id: &str, timeout: Duration) -> ContainerState {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let state = runtime.inspect(container_id).await.expect("inspect");
        if matches!(state.state, RunState::Exited | RunState::Dead) {
            return state;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "container still {:?} after {timeout:?}",
            state.state
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The error as a one-line message, for assertions that it names things.
pub fn one_line(err: &RuntimeError) -> String {
    let text = err.to_string();
    assert!(!text.contains('\n'), "error spans several lines: {text}");
    text
}
