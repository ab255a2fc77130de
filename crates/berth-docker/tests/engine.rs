//! Integration tests of `DockerRuntime` against the real Docker Engine (no mocks): connection,
//! create settings, exit and OOM reporting, cleanup on failure, remove, list and events.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth_docker::{DockerConfig, DockerRuntime};
use berth_runtime::{EventKind, RunState, Runtime, RuntimeError, RuntimeEvent};
use bollard::query_parameters::InspectContainerOptions;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{Cleanup, containers_of, ensure_test_image, one_line, request, runtime, wait_until_ended};

#[tokio::test]
async fn connect_reports_the_engine_and_a_supported_api_version() {
    let runtime = runtime().await;
    let info = runtime.info().await.expect("info");
    assert_eq!(info.name, "local");
    assert!(
        info.endpoint.starts_with("unix://") || info.endpoint.starts_with("tcp://"),
        "{}",
        info.endpoint
    );
    assert!(!info.version.is_empty() && info.version != "unknown");
    let (major, minor) = info.api_version.split_once('.').expect("major.minor");
    let version: (u32, u32) = (major.parse().expect("major"), minor.parse().expect("minor"));
    assert!(version >= (1, 41), "negotiated {}", info.api_version);
    assert_eq!(&info, runtime.engine_info());
}

#[tokio::test]
async fn connect_to_unreachable_endpoints_fails_fast_and_names_them() {
    for endpoint in ["unix:///nonexistent.sock", "tcp://127.0.0.1:1"] {
        let config = DockerConfig {
            endpoint: Some(endpoint.into()),
            ..DockerConfig::default()
        };
        let started = Instant::now();
        let err = DockerRuntime::connect(config).await.expect_err(endpoint);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{endpoint} took {:?}",
            started.elapsed()
        );
        match &err {
            RuntimeError::Unavailable {
                engine,
                endpoint: named,
                detail,
            } => {
                assert_eq!(engine, "local");
                assert_eq!(named, endpoint);
                assert!(!detail.is_empty());
            }
            other => panic!("{endpoint}: expected Unavailable, got {other:?}"),
        }
        let line = one_line(&err);
        assert!(line.contains(endpoint), "{line}");
        eprintln!("{line}");
    }
}

#[tokio::test]
async fn connect_to_an_engine_that_never_answers_fails_at_the_deadline() {
    // Accepts connections and holds them without a word: a hung daemon.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let endpoint = format!("tcp://{addr}");
    let config = DockerConfig {
        endpoint: Some(endpoint.clone()),
        call_timeout: Duration::from_secs(1),
        ..DockerConfig::default()
    };
    let started = Instant::now();
    let err = DockerRuntime::connect(config).await.expect_err("hung engine");
    let elapsed = started.elapsed();
    holder.abort();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert!(
        matches!(&err, RuntimeError::Unavailable { endpoint: named, .. } if *named == endpoint),
        "{err:?}"
    );
    eprintln!("{}", one_line(&err));
}

#[tokio::test]
async fn connect_to_a_stale_socket_is_refused() {
    let dir = std::env::temp_dir().join(format!("berth-docker-test-{}", common::test_run_id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("stale.sock");
    let _ = std::fs::remove_file(&path);
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    let endpoint = format!("unix://{}", path.display());
    let config = DockerConfig {
        endpoint: Some(endpoint.clone()),
        ..DockerConfig::default()
    };
    let err = DockerRuntime::connect(config).await.expect_err("nobody listens");
    let _ = std::fs::remove_dir_all(&dir);
    match &err {
        RuntimeError::Unavailable {
            endpoint: named,
            detail,
            ..
        } => {
            assert_eq!(named, &endpoint);
            assert!(detail.starts_with("connection refused"), "{detail}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn create_applies_resources_hardening_env_and_ports() {
    ensure_test_image();
    let runtime = runtime().await;
    let mut cleanup = Cleanup::default();
    let mut req = request(&["httpd", "-f", "-p", "8080", "-h", "/tmp"]);
    req.spec.env = BTreeMap::from([("GREETING".into(), "hello".into())]);
    req.spec.workdir = Some("/tmp".into());
    req.spec.user = Some("1000:1000".into());
    req.spec.ports = vec![8080];
    req.spec.resources.cpu_millis = 500;
    req.spec.resources.memory_bytes = 48 << 20;
    req.spec.resources.pids_limit = 77;
    req.labels.insert("team".into(), "blue".into());
    cleanup.track(&req);

    let state = runtime.create(&req).await.expect("create");
    assert_eq!(state.state, RunState::Running);
    assert_eq!(state.sandbox_id.as_ref(), Some(&req.sandbox_id));
    assert_eq!(state.labels.get("team").map(String::as_str), Some("blue"));
    let ip = state.ip.as_deref().expect("an IP on the bridge");
    assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{ip}");
    assert_eq!(state.ports.len(), 1, "{:?}", state.ports);
    let port = &state.ports[0];
    assert_eq!(port.container_port, 8080);
    assert_eq!(port.host_ip, "127.0.0.1");
    assert_ne!(port.host_port, 0);
    assert!(state.started_at.is_some());

    // What the engine actually applied.
    let inspect = runtime
        .client()
        .inspect_container(&state.container_id, None::<InspectContainerOptions>)
        .await
        .expect("bollard inspect");
    assert_eq!(
        inspect.name.as_deref(),
        Some(format!("/berth-{}", req.sandbox_id).as_str())
    );
    let host = inspect.host_config.expect("host config");
    assert_eq!(host.nano_cpus, Some(500_000_000));
    assert_eq!(host.memory, Some(48 << 20));
    assert_eq!(host.memory_swap, Some(48 << 20));
    assert_eq!(host.pids_limit, Some(77));
    assert!(
        host.security_opt
            .unwrap_or_default()
            .iter()
            .any(|o| o == "no-new-privileges")
    );
    assert!(host.cap_drop.unwrap_or_default().iter().any(|c| c == "NET_RAW"));
    assert_eq!(host.privileged, Some(false));
    assert_ne!(host.network_mode.as_deref(), Some("host"));
    for mode in [&host.pid_mode, &host.ipc_mode, &host.uts_mode] {
        assert_ne!(mode.as_deref(), Some("host"));
    }
    assert!(host.binds.unwrap_or_default().is_empty());
    assert!(host.mounts.unwrap_or_default().is_empty());
    assert!(host.devices.unwrap_or_default().is_empty());
    assert!(inspect.mounts.unwrap_or_default().is_empty());
    let config = inspect.config.expect("config");
    let labels = config.labels.expect("labels");
    for (key, value) in &req.labels {
        assert_eq!(labels.get(key), Some(value), "label {key}");
    }
    assert!(config.env.unwrap_or_default().iter().any(|e| e == "GREETING=hello"));
    assert_eq!(
        config.cmd,
        Some(vec![
            "httpd".into(),
            "-f".into(),
            "-p".into(),
            "8080".into(),
            "-h".into(),
            "/tmp".into()
        ])
    );
    assert_eq!(config.working_dir.as_deref(), Some("/tmp"));
    assert_eq!(config.user.as_deref(), Some("1000:1000"));

    // ... and what the kernel enforces on the container's processes.
    let status = std::process::Command::new("docker")
        .args(["exec", &state.container_id, "cat", "/proc/self/status"])
        .output()
        .expect("docker exec");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let status = String::from_utf8_lossy(&status.stdout);
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("{name} missing in {status}"))
            .to_owned()
    };
    assert_eq!(field("NoNewPrivs:"), "1");
    const CAP_NET_RAW: u32 = 13;
    let bounding = u64::from_str_radix(&field("CapBnd:"), 16).expect("hex CapBnd");
    assert_eq!(bounding & (1 << CAP_NET_RAW), 0, "NET_RAW still in the bounding set");

    // The published port answers on the host.
    let mut answer = String::new();
    for _ in 0..50 {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port.host_port)).await {
            stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.expect("write");
            answer.clear();
            let _ = stream.read_to_string(&mut answer).await;
            if answer.starts_with("HTTP/1.") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        answer.starts_with("HTTP/1."),
        "no HTTP answer on 127.0.0.1:{}: {answer:?}",
        port.host_port
    );

    runtime.remove(&state.container_id).await.expect("remove");
    assert!(containers_of(&req.sandbox_id).is_empty());
}

#[tokio::test]
async fn exit_code_is_reported() {
    ensure_test_image();
    let runtime = runtime().await;
    let mut cleanup = Cleanup::default();
    let req = request(&["sh", "-c", "exit 3"]);
    cleanup.track(&req);

    let created = runtime.create(&req).await.expect("create");
    let state = wait_until_ended(&runtime, &created.container_id, Duration::from_secs(20)).await;
    assert_eq!(state.state, RunState::Exited);
    assert_eq!(state.exit_code, Some(3));
    assert!(!state.oom_killed);
    assert!(state.finished_at.is_some());
    runtime.remove(&created.container_id).await.expect("remove");
}

#[tokio::test]
async fn memory_hog_is_oom_killed() {
    ensure_test_image();
    let runtime = runtime().await;
    let mut cleanup = Cleanup::default();
    let mut req = request(&["sh", "-c", r#"x=$(head -c 64000000 /dev/zero | tr "\0" a); sleep 1"#]);
    req.spec.resources.memory_bytes = 8 << 20;
    cleanup.track(&req);

    let mut events = runtime.events().await.expect("subscribe");
    let created = runtime.create(&req).await.expect("create");
    let state = wait_until_ended(&runtime, &created.container_id, Duration::from_secs(30)).await;
    assert_eq!(state.exit_code, Some(137), "{state:?}");
    runtime.remove(&created.container_id).await.expect("remove");

    // The engine learns of the kill and of the exit on two paths that race: under load the exit
    // can be recorded first, leaving `OOMKilled` false and the `oom` event after `die`. The
    // event always comes, so that is what says the sandbox was killed for its memory.
    let kinds = events_until(&mut events, &created.container_id, |kinds| {
        kinds.contains(&EventKind::Destroy) && kinds.contains(&EventKind::Oom)
    })
    .await;
    assert!(kinds.contains(&EventKind::Oom), "no oom event: {kinds:?} ({state:?})");
    assert!(kinds.contains(&EventKind::Die { exit_code: Some(137) }), "{kinds:?}");
}

#[tokio::test]
async fn missing_image_is_image_not_found_and_leaves_nothing() {
    let runtime = runtime().await;
    let mut cleanup = Cleanup::default();
    let mut req = request(&["true"]);
    let image = format!("berth-test/no-such-image-{}:latest", req.sandbox_id);
    req.spec.image = image.clone();
    cleanup.track(&req);

    let err = runtime.create(&req).await.expect_err("no such image");
    match &err {
        RuntimeError::ImageNotFound {
            image: named,
            engine,
            detail,
        } => {
            assert_eq!(named, &image);
            assert_eq!(engine, "local");
            assert!(!detail.is_empty());
        }
        other => panic!("expected ImageNotFound, got {other:?}"),
    }
    assert!(one_line(&err).contains(&image));
    assert!(containers_of(&req.sandbox_id).is_empty());
}

#[tokio::test]
async fn failed_start_removes_the_created_container() {
    ensure_test_image();
    let runtime = runtime().await;
    let mut cleanup = Cleanup::default();
    // An unknown user fails the start itself (a missing program would be reported by the
    // sandbox's init as exit code 127 instead).
    let mut req = request(&["sleep", "60"]);
    req.spec.user = Some("no-such-user".into());
    cleanup.track(&req);

    let err = runtime.create(&req).await.expect_err("start must fail");
    assert!(
        matches!(err, RuntimeError::Invalid(_) | RuntimeError::Other(_)),
        "{err:?}"
    );
    eprintln!("{}", one_line(&err));
    assert!(
        containers_of(&req.sandbox_id).is_empty(),
        "the created container was left behind"
    );
}

#[tokio::test]
async fn second_create_of_a_sandbox_conflicts_and_keeps_the_first() {
    ensure_test_image();
    let runtime = runtime().await;
    let mut cleanup = Cleanup::default();
    let req = request(&["sleep", "300"]);
    cleanup.track(&req);

    let first = runtime.create(&req).await.expect("create");
    let err = runtime.create(&req).await.expect_err("same name twice");
    assert!(matches!(err, RuntimeError::Conflict(_)), "{err:?}");
    assert_eq!(
        runtime.inspect(&first.container_id).await.expect("still there").state,
        RunState::Running
    );
    runtime.remove(&first.container_id).await.expect("remove");
}

#[tokio::test]
async fn remove_is_idempotent() {
    ensure_test_image();
    let runtime = runtime().await;
    let mut cleanup = Cleanup::default();
    let req = request(&["sleep", "300"]);
    cleanup.track(&req);

    let state = runtime.create(&req).await.expect("create");
    runtime.remove(&state.container_id).await.expect("first remove");
    runtime.remove(&state.container_id).await.expect("second remove");
    assert!(matches!(
        runtime.inspect(&state.container_id).await,
        Err(RuntimeError::NotFound(_))
    ));
    assert!(containers_of(&req.sandbox_id).is_empty());
    for unknown in ["0123456789abcdef0123", "berth-ffffffffffffffff", "../images/berth-test"] {
        runtime.remove(unknown).await.expect(unknown);
    }
}

#[tokio::test]
async fn list_managed_sees_this_tests_containers() {
    ensure_test_image();
    let runtime = runtime().await;
    let mut cleanup = Cleanup::default();
    let running = request(&["sleep", "300"]);
    let exited = request(&["sh", "-c", "exit 3"]);
    cleanup.track(&running);
    cleanup.track(&exited);

    let running_state = runtime.create(&running).await.expect("create running");
    let exited_state = runtime.create(&exited).await.expect("create exited");
    wait_until_ended(&runtime, &exited_state.container_id, Duration::from_secs(20)).await;

    let listed = runtime.list_managed().await.expect("list");
    assert!(
        listed
            .iter()
            .all(|s| s.labels.get("berth.managed").map(String::as_str) == Some("true"))
    );
    let find = |id: &str| listed.iter().find(|s| s.container_id == id).cloned();
    let r = find(&running_state.container_id).expect("running container listed");
    assert_eq!(r.state, RunState::Running);
    assert_eq!(r.sandbox_id.as_ref(), Some(&running.sandbox_id));
    assert!(r.ip.is_some());
    let e = find(&exited_state.container_id).expect("exited container listed");
    assert_eq!(e.state, RunState::Exited);
    assert_eq!(e.exit_code, Some(3));
    assert_eq!(e.sandbox_id.as_ref(), Some(&exited.sandbox_id));
    assert!(!e.oom_killed);

    runtime.remove(&running_state.container_id).await.expect("remove");
    runtime.remove(&exited_state.container_id).await.expect("remove");
}

#[tokio::test]
async fn events_deliver_start_die_and_destroy() {
    ensure_test_image();
    let runtime = runtime().await;
    let mut cleanup = Cleanup::default();
    let req = request(&["sh", "-c", "sleep 0.2; exit 4"]);
    cleanup.track(&req);

    let mut events = runtime.events().await.expect("subscribe");
    let state = runtime.create(&req).await.expect("create");
    wait_until_ended(&runtime, &state.container_id, Duration::from_secs(20)).await;
    runtime.remove(&state.container_id).await.expect("remove");

    let kinds = events_of(&mut events, &state.container_id).await;
    assert_eq!(
        kinds,
        vec![
            EventKind::Start,
            EventKind::Die { exit_code: Some(4) },
            EventKind::Destroy
        ]
    );
}

#[tokio::test]
async fn pause_and_unpause_are_reported() {
    ensure_test_image();
    let runtime = runtime().await;
    let mut cleanup = Cleanup::default();
    let req = request(&["sleep", "300"]);
    cleanup.track(&req);

    let mut events = runtime.events().await.expect("subscribe");
    let state = runtime.create(&req).await.expect("create");
    runtime
        .client()
        .pause_container(&state.container_id)
        .await
        .expect("pause");
    assert_eq!(
        runtime.inspect(&state.container_id).await.expect("inspect").state,
        RunState::Paused
    );
    let listed = runtime.list_managed().await.expect("list");
    let paused = listed
        .iter()
        .find(|s| s.container_id == state.container_id)
        .expect("listed");
    assert_eq!(paused.state, RunState::Paused);
    runtime
        .client()
        .unpause_container(&state.container_id)
        .await
        .expect("unpause");
    runtime.remove(&state.container_id).await.expect("remove");

    let kinds = events_of(&mut events, &state.container_id).await;
    assert_eq!(
        kinds[..3],
        [EventKind::Start, EventKind::Pause, EventKind::Unpause],
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&EventKind::Destroy));
}

/// The kinds of `container_id`'s events, in order, up to and including its Destroy. Other
/// tests' containers are skipped: tests run in parallel.
async fn events_of(
    events: &mut BoxStream<'static, Result<RuntimeEvent, RuntimeError>>,
    container_id: &str,
) -> Vec<EventKind> {
    events_until(events, container_id, |kinds| kinds.contains(&EventKind::Destroy)).await
}

/// The container's events until `enough` holds for them (or 20 s pass: a missing event is then
/// reported by the caller's assertion, with what did arrive).
async fn events_until(
    events: &mut BoxStream<'static, Result<RuntimeEvent, RuntimeError>>,
    container_id: &str,
    enough: impl Fn(&[EventKind]) -> bool,
) -> Vec<EventKind> {
    let mut kinds = Vec::new();
    let collect = async {
        while let Some(event) = events.next().await {
            let event = event.expect("event");
            if event.container_id != container_id {
                continue;
            }
            assert!(event.sandbox_id.is_some(), "{event:?}");
            kinds.push(event.kind);
            if enough(&kinds) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(20), collect).await;
    kinds
}
