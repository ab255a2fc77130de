//! The sandbox lifecycle through the real server and engine: create, read, limits, renew,
//! delete, exits, OOM, expiry and concurrent creates.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::time::Duration;

use berth_api::{NumberOrString, SandboxRequest};
use berth_client::{CreateOptions, ListQuery};
use berth_e2e::{TEST_IMAGE, TestServer, docker, docker_inspect, eventually, sleeper};
use serde_json::{Value, json};

#[tokio::test]
async fn full_lifecycle_create_read_renew_delete() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let mut request = sleeper();
    request.labels.insert("team".into(), "ml".into());
    request.ports = vec![8080];
    let created = client.create(&request, CreateOptions::default()).await.unwrap();
    assert_eq!(created.status, "Running");
    assert_eq!(created.image, TEST_IMAGE);
    assert_eq!(
        created.owner, "admin",
        "the owner of the server's first key, which the client uses"
    );
    assert_eq!(created.resources.cpu, "1");
    assert_eq!(created.resources.memory, "512Mi");
    let container_id = created.container_id.clone().expect("container id reported");
    assert!(
        created.ip.as_deref().is_some_and(|ip| !ip.is_empty()),
        "ip reported: {created:?}"
    );
    assert_eq!(created.ports.len(), 1);
    assert_eq!(created.ports[0].container_port, 8080);
    assert_eq!(created.ports[0].host_ip, "127.0.0.1");
    assert_ne!(created.ports[0].host_port, 0);
    assert!(created.started_at.is_some());
    let ttl = created.expires_at - created.created_at;
    assert_eq!(ttl.num_seconds(), 30 * 60, "default ttl is 30m");

    let fetched = client.get(&created.id).await.unwrap();
    assert_eq!(fetched.id, created.id);
    assert_eq!(fetched.status, "Running");

    let listed = client
        .list(&ListQuery {
            labels: vec![("team".into(), "ml".into())],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        listed.items.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        vec![created.id.as_str()]
    );

    let renewed = client
        .renew_ttl(&created.id, NumberOrString::String("2h".into()))
        .await
        .unwrap();
    let remaining = renewed.expires_at - chrono::Utc::now();
    assert!(
        remaining > chrono::Duration::minutes(119) && remaining <= chrono::Duration::hours(2),
        "{remaining}"
    );
    assert_eq!(client.get(&created.id).await.unwrap().expires_at, renewed.expires_at);

    client.delete(&created.id).await.unwrap();
    let ended = client.get(&created.id).await.unwrap();
    assert_eq!(ended.status, "Terminated");
    assert_eq!(ended.status_reason.as_deref(), Some("deleted"));
    assert!(ended.ended_at.is_some());
    assert!(
        docker_inspect(&container_id).is_none(),
        "container removed from the engine"
    );
    // Deleting an ended sandbox is still a success.
    client.delete(&created.id).await.unwrap();
    // Ended sandboxes are listed only with `all`.
    let live = client.list(&ListQuery::default()).await.unwrap();
    assert!(live.items.iter().all(|s| s.id != created.id));
    let all = client
        .list(&ListQuery {
            all: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(all.items.iter().any(|s| s.id == created.id));
}

#[tokio::test]
async fn limits_and_hardening_are_applied_to_the_container() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let mut request = sleeper();
    request.cpu = Some(NumberOrString::String("500m".into()));
    request.memory = Some(NumberOrString::String("64Mi".into()));
    request.ports = vec![80];
    let sandbox = client.create(&request, CreateOptions::default()).await.unwrap();
    let info = docker_inspect(sandbox.container_id.as_deref().unwrap()).unwrap();
    let host = &info["HostConfig"];
    assert_eq!(host["NanoCpus"], 500_000_000, "500m is half a CPU");
    assert_eq!(host["Memory"], 64 * 1024 * 1024);
    assert_eq!(host["MemorySwap"], 64 * 1024 * 1024, "no swap beyond memory");
    assert_eq!(host["PidsLimit"], 1024);
    assert_eq!(host["Privileged"], false);
    assert_eq!(host["Init"], true, "an init reaps killed processes");
    assert!(
        host["SecurityOpt"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "no-new-privileges"),
        "{host}"
    );
    assert!(
        host["CapDrop"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str().unwrap().ends_with("NET_RAW")),
        "{host}"
    );
    assert!(host["CapAdd"].is_null() || host["CapAdd"].as_array().unwrap().is_empty());
    let network_mode = host["NetworkMode"].as_str().unwrap();
    assert!(network_mode != "host", "{network_mode}");
    assert!(!host["PidMode"].as_str().unwrap_or_default().starts_with("host"));
    assert!(!host["IpcMode"].as_str().unwrap_or_default().starts_with("host"));
    assert!(host["Binds"].is_null() || host["Binds"].as_array().unwrap().is_empty());
    assert!(info["Mounts"].as_array().unwrap().is_empty());
    assert!(host["Devices"].is_null() || host["Devices"].as_array().unwrap().is_empty());
    let binding = &host["PortBindings"]["80/tcp"][0];
    assert_eq!(binding["HostIp"], "127.0.0.1");
    // The capability really is gone: NET_RAW is bit 13 of the bounding set.
    let status = docker(&[
        "exec",
        sandbox.container_id.as_deref().unwrap(),
        "cat",
        "/proc/1/status",
    ])
    .unwrap();
    let bounding = status.lines().find_map(|l| l.strip_prefix("CapBnd:")).unwrap().trim();
    let caps = u64::from_str_radix(bounding, 16).unwrap();
    assert_eq!(caps & (1 << 13), 0, "NET_RAW still in the bounding set {bounding}");
    let no_new_privs = status
        .lines()
        .find_map(|l| l.strip_prefix("NoNewPrivs:"))
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(no_new_privs, "1");
}

#[tokio::test]
async fn env_command_workdir_user_and_labels_reach_the_container() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let mut request = sleeper();
    request.env.insert("GREETING".into(), "hello world".into());
    request.labels.insert("example.com/suite".into(), "e2e".into());
    request.workdir = Some("/tmp".into());
    request.user = Some("1000:1000".into());
    request.owner = Some("alice".into());
    request.command = Some(vec![
        "sh".into(),
        "-c".into(),
        "echo \"$GREETING from $(pwd)\"; sleep 3600".into(),
    ]);
    let sandbox = client.create(&request, CreateOptions::default()).await.unwrap();
    let container = sandbox.container_id.as_deref().unwrap();
    let info = docker_inspect(container).unwrap();
    let config = &info["Config"];
    assert!(
        config["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "GREETING=hello world")
    );
    assert_eq!(config["Cmd"][0], "sh");
    assert_eq!(config["WorkingDir"], "/tmp");
    assert_eq!(config["User"], "1000:1000");
    let labels = &config["Labels"];
    assert_eq!(labels["example.com/suite"], "e2e");
    assert_eq!(labels["berth.managed"], "true");
    assert_eq!(labels["berth.sandbox"], sandbox.id.as_str());
    assert_eq!(labels["berth.owner"], "alice");
    assert_eq!(sandbox.owner, "alice");
    let written = eventually(Duration::from_secs(5), || async {
        docker(&["logs", container]).ok().filter(|out| !out.is_empty())
    })
    .await;
    assert_eq!(
        written.as_deref(),
        Some("hello world from /tmp\n"),
        "the command ran with the env"
    );
    let id = docker(&["exec", container, "id", "-u"]).unwrap();
    assert_eq!(id.trim(), "1000");
}

#[tokio::test]
async fn exits_and_oom_are_reported_and_leave_nothing_behind() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let run = |script: &str, memory: Option<&str>| {
        let mut request = sleeper();
        request.command = Some(vec!["sh".into(), "-c".into(), script.into()]);
        request.memory = memory.map(|m| NumberOrString::String(m.into()));
        request
    };
    let failing = client
        .create(&run("sleep 0.5; exit 3", None), CreateOptions::default())
        .await
        .unwrap();
    let clean = client
        .create(&run("sleep 0.5; exit 0", None), CreateOptions::default())
        .await
        .unwrap();
    let hog = client
        .create(
            &run("sleep 0.5; x=a; while true; do x=$x$x$x$x; done", Some("16Mi")),
            CreateOptions::default(),
        )
        .await
        .unwrap();

    let ended = |id: String| {
        let client = client.clone();
        async move {
            eventually(Duration::from_secs(20), || {
                let client = client.clone();
                let id = id.clone();
                async move { client.get(&id).await.ok().filter(|s| s.ended_at.is_some()) }
            })
            .await
            .expect("sandbox ended")
        }
    };
    let failing = ended(failing.id).await;
    assert_eq!((failing.status.as_str(), failing.exit_code), ("Failed", Some(3)));
    assert_eq!(failing.status_reason.as_deref(), Some("exited"));
    let clean = ended(clean.id).await;
    assert_eq!((clean.status.as_str(), clean.exit_code), ("Terminated", Some(0)));
    let hog_id = hog.id;
    ended(hog_id.clone()).await;
    // Under load the engine may report the OOM kill after the exit; berth then corrects the
    // reason, so give that event its moment before reading.
    let _ = eventually(Duration::from_secs(10), || async {
        client.get(&hog_id).await.ok().filter(|s| s.oom_killed)
    })
    .await;
    let hog = client.get(&hog_id).await.unwrap();
    assert_eq!(hog.status, "Failed");
    assert!(hog.oom_killed, "{hog:?}");
    assert_eq!(hog.status_reason.as_deref(), Some("oom_killed"));
    assert_eq!(hog.exit_code, Some(137));

    for sandbox in [failing, clean, hog] {
        let container = sandbox.container_id.unwrap();
        let gone = eventually(Duration::from_secs(10), || async {
            docker_inspect(&container).is_none().then_some(())
        })
        .await;
        assert!(gone.is_some(), "exited container {container} was removed");
    }
}

#[tokio::test]
async fn expiry_removes_the_sandbox_at_its_deadline() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let mut request = sleeper();
    request.ttl = Some(NumberOrString::String("2s".into()));
    let sandbox = client.create(&request, CreateOptions::default()).await.unwrap();
    // From the create's answer: how long the create itself took on a busy engine is not the
    // expiry's business (the deadline counts from the request, so it only comes sooner).
    let started = tokio::time::Instant::now();
    let container = sandbox.container_id.clone().unwrap();
    assert_eq!((sandbox.expires_at - sandbox.created_at).num_milliseconds(), 2000);

    let ended = eventually(Duration::from_secs(20), || async {
        client.get(&sandbox.id).await.ok().filter(|s| s.status == "Terminated")
    })
    .await
    .expect("sandbox expired");
    let elapsed = started.elapsed();
    assert_eq!(ended.status_reason.as_deref(), Some("expired"));
    assert!(docker_inspect(&container).is_none(), "container removed");
    assert!(
        elapsed <= Duration::from_secs(2) + berth_e2e::EXPIRY_SLACK.to_std().unwrap(),
        "gone {elapsed:?} after the create answered; deadline was 2 s after the request"
    );
    let ended_at = ended.ended_at.unwrap();
    assert!(ended_at >= sandbox.expires_at, "not before the deadline");
    assert!(
        ended_at - sandbox.expires_at <= berth_e2e::EXPIRY_SLACK,
        "ended {} after the deadline",
        ended_at - sandbox.expires_at
    );
}

#[tokio::test]
async fn renewing_moves_the_deadline() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let mut request = sleeper();
    // Long enough that a create slowed by a busy machine still leaves time to renew (under the
    // full parallel suite one took over 6 s).
    request.ttl = Some(NumberOrString::Number(15.0));
    let sandbox = client.create(&request, CreateOptions::default()).await.unwrap();
    let renewed = client
        .renew_ttl(&sandbox.id, NumberOrString::String("1m".into()))
        .await
        .unwrap();
    assert!(renewed.expires_at > sandbox.expires_at);
    let past_old_deadline = (sandbox.expires_at - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(past_old_deadline + Duration::from_secs(2)).await;
    let still = client.get(&sandbox.id).await.unwrap();
    assert_eq!(still.status, "Running", "the old deadline no longer applies");
    assert!(docker_inspect(still.container_id.as_deref().unwrap()).is_some());
    // A shorter renewal brings the deadline closer and is honoured too.
    client
        .renew_ttl(&sandbox.id, NumberOrString::String("1s".into()))
        .await
        .unwrap();
    let ended = eventually(
        Duration::from_secs(1) + berth_e2e::EXPIRY_SLACK.to_std().unwrap(),
        || async { client.get(&sandbox.id).await.ok().filter(|s| s.status == "Terminated") },
    )
    .await;
    assert_eq!(ended.and_then(|s| s.status_reason).as_deref(), Some("expired"));
}

#[tokio::test]
async fn twenty_concurrent_creates_all_succeed_and_are_cleaned_up() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let creates = (0..20).map(|_| {
        let client = client.clone();
        async move { client.create(&sleeper(), CreateOptions::default()).await }
    });
    let sandboxes: Vec<_> = futures::future::join_all(creates)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let ids: std::collections::BTreeSet<_> = sandboxes.iter().map(|s| s.id.clone()).collect();
    assert_eq!(ids.len(), 20, "distinct ids");
    assert!(sandboxes.iter().all(|s| s.status == "Running"));
    let deletes = sandboxes.iter().map(|s| client.delete(&s.id));
    for outcome in futures::future::join_all(deletes).await {
        outcome.unwrap();
    }
    for sandbox in &sandboxes {
        assert!(docker_inspect(sandbox.container_id.as_deref().unwrap()).is_none());
        assert_eq!(client.get(&sandbox.id).await.unwrap().status, "Terminated");
    }
    let remaining = berth_e2e::docker_ids(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=berth.cluster={}", server.cluster),
    ]);
    assert!(remaining.is_empty(), "left behind: {remaining:?}");
}

#[tokio::test]
async fn an_idempotency_key_makes_a_retried_create_return_the_same_sandbox() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let options = CreateOptions {
        wait: true,
        idempotency_key: Some(berth_e2e::unique("key")),
    };
    let first = client.create(&sleeper(), options.clone()).await.unwrap();
    let second = client.create(&sleeper(), options).await.unwrap();
    assert_eq!(first.id, second.id);
    let all = client.list(&ListQuery::default()).await.unwrap();
    assert_eq!(all.items.len(), 1, "only one sandbox was created");
}

#[tokio::test]
async fn no_wait_answers_before_the_sandbox_runs() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let created = client
        .create(
            &sleeper(),
            CreateOptions {
                wait: false,
                idempotency_key: None,
            },
        )
        .await
        .unwrap();
    assert!(
        ["Pending", "Creating"].contains(&created.status.as_str()),
        "{}",
        created.status
    );
    let running = eventually(Duration::from_secs(10), || async {
        client.get(&created.id).await.ok().filter(|s| s.status == "Running")
    })
    .await;
    assert!(running.is_some());
}

#[tokio::test]
async fn list_pages_are_stable_and_filters_combine() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let mut ids = Vec::new();
    for index in 0..5 {
        let mut request: SandboxRequest = sleeper();
        request.labels.insert("batch".into(), "b1".into());
        request
            .labels
            .insert("parity".into(), if index % 2 == 0 { "even" } else { "odd" }.into());
        ids.push(
            client
                .create(
                    &request,
                    CreateOptions {
                        wait: false,
                        idempotency_key: None,
                    },
                )
                .await
                .unwrap()
                .id,
        );
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = client
            .list(&ListQuery {
                labels: vec![("batch".into(), "b1".into())],
                limit: Some(2),
                cursor,
                // A loaded engine may fail a create meanwhile; paging must not depend on it.
                all: true,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|s| s.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ids, "creation order, no gaps, no repeats");
    let even = client
        .list(&ListQuery {
            labels: vec![("batch".into(), "b1".into()), ("parity".into(), "even".into())],
            all: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let even_ids: Vec<_> = even.items.iter().map(|s| (s.id.clone(), s.status.clone())).collect();
    assert_eq!(even_ids.len(), 3, "the even ones of the batch: {even_ids:?}");
}

#[tokio::test]
async fn a_delete_answers_at_once_and_the_sandbox_never_runs_again() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let sandbox = client.create(&sleeper(), CreateOptions::default()).await.unwrap();
    let container = sandbox.container_id.clone().unwrap();

    let marked = client
        .delete_in_background(&sandbox.id)
        .await
        .unwrap()
        .expect("a running sandbox is answered with its record");
    assert_eq!(marked.status, "Stopping");
    assert_eq!(marked.status_reason.as_deref(), Some("deleted"));

    // From `Stopping` it only goes on to `Terminated`, never back to `Running`.
    let ended = eventually(Duration::from_secs(20), || async {
        let view = client.get(&sandbox.id).await.unwrap();
        assert_ne!(view.status, "Running", "a deleted sandbox showed as Running");
        (view.status == "Terminated").then_some(view)
    })
    .await
    .expect("the background removal finished");
    assert_eq!(ended.status_reason.as_deref(), Some("deleted"));
    assert!(
        docker_inspect(&container).is_none(),
        "container {container} is still there"
    );

    // Deleting again, in either form, is a no-op.
    assert_eq!(client.delete_in_background(&sandbox.id).await.unwrap(), None);
    client.delete(&sandbox.id).await.unwrap();

    // `?wait=true` answers once the container is gone.
    let waited = client.create(&sleeper(), CreateOptions::default()).await.unwrap();
    client.delete(&waited.id).await.unwrap();
    assert!(docker_inspect(waited.container_id.as_deref().unwrap()).is_none());
    assert_eq!(client.get(&waited.id).await.unwrap().status, "Terminated");
}

#[tokio::test]
async fn max_lifetime_bounds_every_renewal_and_the_servers_limit_bounds_every_request() {
    let server = TestServer::start_with(berth_e2e::ServerOptions {
        args: vec!["--max-lifetime".into(), "10m".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let create = |extra: serde_json::Value| {
        let mut body = serde_json::json!({"image": TEST_IMAGE, "command": ["sleep", "3600"]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let server = &server;
        async move { server.post_json("/v1/sandboxes", &body).await }
    };

    // Past the server's limit, or a ttl past the sandbox's own: refused, naming the field.
    let (status, problem) = create(serde_json::json!({"max_lifetime": "1h"})).await;
    assert_eq!(status, reqwest::StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(berth_e2e::field_named(&problem, "max_lifetime"), "{problem}");
    let (status, problem) = create(serde_json::json!({"ttl": "5m", "max_lifetime": "1m"})).await;
    assert_eq!(status, reqwest::StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(berth_e2e::field_named(&problem, "ttl"), "{problem}");

    // A sandbox naming none gets the server's limit, counted from its creation.
    let (status, defaulted) = create(serde_json::json!({"ttl": "1m"})).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{defaulted}");
    let lifetime = |sandbox: &serde_json::Value| {
        let at = |field: &str| chrono::DateTime::parse_from_rfc3339(sandbox[field].as_str().unwrap()).unwrap();
        (at("lifetime_ends_at") - at("created_at")).num_seconds()
    };
    assert_eq!(lifetime(&defaulted), 600, "{defaulted}");

    // Its own, shorter one: a renewal within it moves the deadline, one past it is refused with
    // how long the sandbox may still be renewed for, and the deadline stays where it was.
    let (status, bounded) = create(serde_json::json!({"ttl": "30s", "max_lifetime": "2m"})).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{bounded}");
    assert_eq!(lifetime(&bounded), 120, "{bounded}");
    let id = bounded["id"].as_str().unwrap();
    let (status, renewed) = server
        .post_json(&format!("/v1/sandboxes/{id}/ttl"), &serde_json::json!({"ttl": "1m"}))
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{renewed}");
    let (status, problem) = server
        .post_json(&format!("/v1/sandboxes/{id}/ttl"), &serde_json::json!({"ttl": "5m"}))
        .await;
    assert_eq!(status, reqwest::StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(berth_e2e::field_named(&problem, "ttl"), "{problem}");
    assert!(problem.to_string().contains("renew for at most"), "{problem}");
    let after = server.get_json(&format!("/v1/sandboxes/{id}")).await;
    assert_eq!(after["expires_at"], renewed["expires_at"], "{after}");
    let at = |field: &str| chrono::DateTime::parse_from_rfc3339(after[field].as_str().unwrap()).unwrap();
    assert!(at("expires_at") <= at("lifetime_ends_at"), "{after}");
}

#[tokio::test]
async fn a_failed_main_process_is_restarted_in_the_same_container_up_to_its_limit() {
    let server = TestServer::start().await.unwrap();
    let mut restarts = berth_e2e::EventStream::open(&server, "type=restarted", None, false, None).await;
    let create = |body: serde_json::Value| {
        let server = &server;
        async move { server.post_json("/v1/sandboxes", &body).await }
    };
    for bad in [
        json!("always"),
        json!({"on_failure": 0}),
        json!({"on_failure": 101}),
        json!({"retries": 2}),
    ] {
        let (status, problem) = create(json!({"image": TEST_IMAGE, "restart": bad})).await;
        assert_eq!(status, reqwest::StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {problem}");
        assert!(berth_e2e::field_named(&problem, "restart"), "{bad}: {problem}");
    }

    // Fails twice, then stays up: restarted twice in the same container, its files kept.
    let (status, recovering) = create(json!({
        "image": TEST_IMAGE,
        "command": ["sh", "-c", "echo run >> /runs; [ $(wc -l < /runs) -ge 3 ] && exec sleep 600; exit 3"],
        "restart": {"on_failure": 5},
    }))
    .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{recovering}");
    assert_eq!(recovering["restart"], json!({"on_failure": 5}), "{recovering}");
    let id = recovering["id"].as_str().unwrap().to_owned();
    let settled = eventually(Duration::from_secs(30), || async {
        let sandbox = server.get_json(&format!("/v1/sandboxes/{id}")).await;
        (sandbox["restarts"] == 2).then_some(sandbox)
    })
    .await;
    let last_seen = server.get_json(&format!("/v1/sandboxes/{id}")).await;
    let settled = settled.unwrap_or_else(|| panic!("not restarted twice: {last_seen}"));
    assert_eq!(settled["status"], "Running", "{settled}");
    assert_eq!(settled["exit_code"], 3, "{settled}");
    assert_eq!(
        settled["container_id"], recovering["container_id"],
        "the same container"
    );
    // Between two runs the engine answers an exec with a 409 saying it restarts; the third run
    // stays up.
    let runs = eventually(Duration::from_secs(15), || async {
        let (status, runs) = server
            .post_json(&format!("/v1/sandboxes/{id}/exec"), &json!({"cmd": ["cat", "/runs"]}))
            .await;
        (status == reqwest::StatusCode::OK).then_some(runs)
    })
    .await
    .expect("an exec once the third run is up");
    assert_eq!(runs["stdout"], "run\nrun\nrun\n", "{runs}");
    let events = restarts
        .until(Duration::from_secs(10), |event| {
            event["sandbox_id"] == id.as_str() && event["message"].as_str().is_some_and(|m| m.contains("(2 of"))
        })
        .await;
    let mine: Vec<&Value> = events
        .iter()
        .filter(|event| event["sandbox_id"] == id.as_str())
        .collect();
    assert_eq!(mine.len(), 2, "one sandbox.restarted per restart: {events:?}");

    // Always fails: restarted as often as allowed, then ended by its last exit.
    let (status, failing) = create(json!({
        "image": TEST_IMAGE,
        "command": ["sh", "-c", "exit 4"],
        "restart": {"on_failure": 2},
    }))
    .await;
    assert!(status.is_success(), "{failing}");
    let failing_id = failing["id"].as_str().unwrap().to_owned();
    let ended = eventually(Duration::from_secs(30), || async {
        let sandbox = server.get_json(&format!("/v1/sandboxes/{failing_id}")).await;
        (sandbox["status"] == "Failed").then_some(sandbox)
    })
    .await
    .expect("the always-failing sandbox ended");
    assert_eq!(ended["exit_code"], 4, "{ended}");
    assert_eq!(ended["status_reason"], "exited", "{ended}");
    assert_eq!(ended["restarts"], 2, "{ended}");
}
