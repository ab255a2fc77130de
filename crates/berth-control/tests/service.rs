//! The service and reconciler rules, on the in-memory fake engine and a real SQLite store:
//! write-through, events, resync (adoption, lost containers, orphans), expiry and restarts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use berth_control::service::{NotFoundKind, SandboxService, ServiceError};
use berth_control::{ServerConfig, start};
use berth_core::sandbox::label_keys;
use berth_core::spec::NumberOrString;
use berth_core::{Reason, SandboxRequest, Status};
use berth_runtime::Runtime;
use berth_runtime::fake::FakeRuntime;
use berth_store::{SandboxFilter, SqliteStore, Store};

struct Harness {
    service: Arc<SandboxService>,
    runtime: Arc<FakeRuntime>,
    store: Arc<SqliteStore>,
    _background: tokio::task::JoinSet<()>,
    dir: tempfile::TempDir,
}

fn config() -> ServerConfig {
    ServerConfig {
        resync_interval: Duration::from_secs(3600),
        orphan_grace: Duration::from_secs(60),
        cluster: "test".into(),
        ..ServerConfig::default()
    }
}

async fn harness_with(runtime: Arc<FakeRuntime>, dir: tempfile::TempDir, config: ServerConfig) -> Harness {
    let store = Arc::new(SqliteStore::open(&dir.path().join("berth.db")).await.unwrap());
    let (service, background) = start(config, runtime.clone(), store.clone(), Vec::new()).await.unwrap();
    Harness {
        service,
        runtime,
        store,
        _background: background,
        dir,
    }
}

async fn harness() -> Harness {
    harness_with(Arc::new(FakeRuntime::default()), tempfile::tempdir().unwrap(), config()).await
}

fn request() -> SandboxRequest {
    SandboxRequest {
        image: Some("busybox".into()),
        ..SandboxRequest::default()
    }
}

async fn wait_for(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn create_records_before_the_engine_and_writes_through() {
    let h = harness().await;
    let created = h.service.create(request(), None, true).await.unwrap().sandbox;
    assert_eq!(created.status, Status::Running);
    let stored = h.store.get(&created.id).await.unwrap().unwrap();
    assert_eq!(stored, created, "store and index agree");
    let container = h.runtime.container(created.container_id.as_deref().unwrap()).unwrap();
    assert_eq!(container.labels[label_keys::CLUSTER], "test");
    assert_eq!(container.labels[label_keys::SANDBOX], created.id.as_str());
    assert_eq!(container.labels[label_keys::MANAGED], "true");
}

#[tokio::test]
async fn a_missing_image_fails_the_record_and_names_the_image() {
    let h = harness_with(
        Arc::new(FakeRuntime::with_images(&["busybox"])),
        tempfile::tempdir().unwrap(),
        config(),
    )
    .await;
    let mut bad = request();
    bad.image = Some("nothing:here".into());
    let error = h.service.create(bad, None, true).await.unwrap_err();
    let ServiceError::Engine {
        sandbox_id: Some(id),
        error,
    } = error
    else {
        panic!("{error:?}")
    };
    assert!(error.to_string().contains("nothing:here"));
    let record = h.store.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, Status::Failed);
    assert_eq!(
        record.status_reason.as_ref().map(Reason::as_str),
        Some("image_not_found")
    );
    // The stored record keeps the engine's words for a client that did not wait for the create.
    assert_eq!(record.status_message.as_deref(), Some(error.to_string().as_str()));
    assert!(h.runtime.container_ids().is_empty());
}

#[tokio::test]
async fn an_unavailable_engine_fails_the_create_without_leaving_anything() {
    let h = harness().await;
    h.runtime.set_unavailable(true);
    let error = h.service.create(request(), None, true).await.unwrap_err();
    assert!(matches!(
        error,
        ServiceError::Engine {
            error: berth_runtime::RuntimeError::Unavailable { .. },
            ..
        }
    ));
    h.runtime.set_unavailable(false);
    assert!(h.runtime.container_ids().is_empty());
}

#[tokio::test]
async fn engine_events_end_sandboxes_with_the_right_status() {
    let h = harness().await;
    let failing = h.service.create(request(), None, true).await.unwrap().sandbox;
    let clean = h.service.create(request(), None, true).await.unwrap().sandbox;
    let oom = h.service.create(request(), None, true).await.unwrap().sandbox;
    let lost = h.service.create(request(), None, true).await.unwrap().sandbox;
    h.runtime.exit(failing.container_id.as_deref().unwrap(), 3, false);
    h.runtime.exit(clean.container_id.as_deref().unwrap(), 0, false);
    h.runtime.exit(oom.container_id.as_deref().unwrap(), 137, true);
    h.runtime.remove_behind_back(lost.container_id.as_deref().unwrap());
    let service = h.service.clone();
    let status_of = move |id: &berth_core::SandboxId| service.get(id.as_str()).unwrap();
    assert!(
        wait_for(|| [&failing, &clean, &oom, &lost]
            .iter()
            .all(|s| status_of(&s.id).status.is_ended()))
        .await
    );
    let check = |id: &berth_core::SandboxId, status: Status, reason: &str, code: Option<i64>| {
        let sandbox = h.service.get(id.as_str()).unwrap();
        assert_eq!(
            (
                sandbox.status,
                sandbox.status_reason.as_ref().map(Reason::as_str),
                sandbox.exit_code
            ),
            (status, Some(reason), code)
        );
    };
    check(&failing.id, Status::Failed, "exited", Some(3));
    check(&clean.id, Status::Terminated, "exited", Some(0));
    check(&oom.id, Status::Failed, "oom_killed", Some(137));
    check(&lost.id, Status::Failed, "container_lost", None);
    // Exited containers are removed: nothing is left on the engine.
    assert!(
        wait_for(|| h.runtime.container_ids().is_empty()).await,
        "{:?}",
        h.runtime.container_ids()
    );
}

#[tokio::test]
async fn an_oom_reported_after_the_exit_still_names_the_cause() {
    let h = harness().await;
    let late = h.service.create(request(), None, true).await.unwrap().sandbox;
    let killed = h.service.create(request(), None, true).await.unwrap().sandbox;
    let failing = h.service.create(request(), None, true).await.unwrap().sandbox;
    let late_container = late.container_id.clone().unwrap();
    h.runtime.exit(&late_container, 137, false);
    h.runtime.exit(killed.container_id.as_deref().unwrap(), 137, false);
    h.runtime.exit(failing.container_id.as_deref().unwrap(), 3, false);
    let service = h.service.clone();
    let ended = move |id: &berth_core::SandboxId| service.get(id.as_str()).unwrap().status.is_ended();
    assert!(wait_for(|| [&late, &killed, &failing].iter().all(|s| ended(&s.id))).await);
    assert!(wait_for(|| h.runtime.container_ids().is_empty()).await);

    let exited = h.service.get(late.id.as_str()).unwrap();
    assert_eq!(
        (exited.status_reason.as_ref().map(Reason::as_str), exited.oom_killed),
        (Some("exited"), false)
    );
    // Events are applied in order: once the last one shows, the first has been seen.
    h.runtime
        .report_oom(failing.container_id.as_deref().unwrap(), &failing.id);
    h.runtime.report_oom(&late_container, &late.id);
    let service = h.service.clone();
    let late_id = late.id.clone();
    assert!(wait_for(move || service.get(late_id.as_str()).unwrap().oom_killed).await);
    let corrected = h.service.get(late.id.as_str()).unwrap();
    assert_eq!(
        (
            corrected.status,
            corrected.status_reason.as_ref().map(Reason::as_str),
            corrected.exit_code
        ),
        (Status::Failed, Some("oom_killed"), Some(137))
    );
    assert_eq!(corrected.ended_at, exited.ended_at);
    // A kill with no oom event stays a plain exit, and an exit code other than SIGKILL's is
    // never rewritten by a stray event.
    let plain = h.service.get(killed.id.as_str()).unwrap();
    assert_eq!(
        (plain.status_reason.as_ref().map(Reason::as_str), plain.oom_killed),
        (Some("exited"), false)
    );
    let other = h.service.get(failing.id.as_str()).unwrap();
    assert_eq!(
        (other.status_reason.as_ref().map(Reason::as_str), other.oom_killed),
        (Some("exited"), false)
    );
}

#[tokio::test]
async fn expiry_stops_the_sandbox_at_its_deadline_and_renewal_moves_it() {
    let h = harness().await;
    let mut short = request();
    short.ttl = Some(NumberOrString::String("300ms".into()));
    let expiring = h.service.create(short.clone(), None, true).await.unwrap().sandbox;
    let renewed = h.service.create(short, None, true).await.unwrap().sandbox;
    h.service
        .renew(renewed.id.as_str(), &NumberOrString::String("1h".into()))
        .await
        .unwrap();
    let service = h.service.clone();
    assert!(wait_for(|| service.get(expiring.id.as_str()).unwrap().status == Status::Terminated).await);
    let ended = h.service.get(expiring.id.as_str()).unwrap();
    assert_eq!(ended.status_reason.as_ref().map(Reason::as_str), Some("expired"));
    assert!(ended.ended_at.unwrap() >= expiring.expires_at);
    assert!(h.runtime.container(expiring.container_id.as_deref().unwrap()).is_none());
    assert_eq!(h.service.get(renewed.id.as_str()).unwrap().status, Status::Running);
}

#[tokio::test]
async fn a_renewal_can_never_pass_the_max_lifetime() {
    let h = harness().await;
    let mut bounded = request();
    bounded.ttl = Some(NumberOrString::String("10m".into()));
    bounded.max_lifetime = Some(NumberOrString::String("1h".into()));
    let sandbox = h.service.create(bounded, None, true).await.unwrap().sandbox;
    let ends_at = sandbox.lifetime_ends_at().unwrap();
    assert_eq!(ends_at, sandbox.created_at + chrono::Duration::hours(1));
    let renewed = h
        .service
        .renew(sandbox.id.as_str(), &NumberOrString::String("50m".into()))
        .await
        .unwrap();
    assert!(renewed.expires_at <= ends_at);
    let refused = h
        .service
        .renew(sandbox.id.as_str(), &NumberOrString::String("61m".into()))
        .await
        .unwrap_err();
    let message = refused.to_string();
    assert!(
        message.contains("ttl") && message.contains("max_lifetime of 1h") && message.contains("renew for at most"),
        "{message}"
    );
    assert_eq!(
        h.service.get(sandbox.id.as_str()).unwrap().expires_at,
        renewed.expires_at,
        "a refused renewal changes nothing"
    );
}

#[tokio::test]
async fn delete_is_idempotent_and_unknown_ids_are_not_found() {
    let h = harness().await;
    let sandbox = h.service.create(request(), None, true).await.unwrap().sandbox;
    let deleted = h.service.delete(sandbox.id.as_str()).await.unwrap();
    assert_eq!(
        (deleted.status, deleted.status_reason.as_ref().map(Reason::as_str)),
        (Status::Terminated, Some("deleted"))
    );
    assert_eq!(
        h.service.delete(sandbox.id.as_str()).await.unwrap().status,
        Status::Terminated
    );
    assert!(matches!(
        h.service.delete("0123456789abcdef").await,
        Err(ServiceError::NotFound {
            kind: NotFoundKind::Sandbox,
            ..
        })
    ));
    assert!(matches!(
        h.service
            .renew(sandbox.id.as_str(), &NumberOrString::Number(60.0))
            .await,
        Err(ServiceError::InvalidState(_))
    ));
}

#[tokio::test]
async fn a_delete_during_an_unfinished_create_wins() {
    let h = harness().await;
    let pending = h.service.create(request(), None, false).await.unwrap().sandbox;
    h.service.delete(pending.id.as_str()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ended = h.service.get(pending.id.as_str()).unwrap();
    assert_eq!(ended.status, Status::Terminated);
    assert!(
        h.runtime.container_ids().is_empty(),
        "a deleted sandbox never gets a container"
    );
}

#[tokio::test]
async fn idempotency_keys_return_the_first_sandbox() {
    let h = harness().await;
    let first = h.service.create(request(), Some("k-1".into()), true).await.unwrap();
    let again = h.service.create(request(), Some("k-1".into()), true).await.unwrap();
    assert!(!first.replayed && again.replayed);
    assert_eq!(first.sandbox.id, again.sandbox.id);
    assert_eq!(h.runtime.container_ids().len(), 1);
    let mut other_owner = request();
    other_owner.owner = Some("bob".into());
    let bobs = h.service.create(other_owner, Some("k-1".into()), true).await.unwrap();
    assert_ne!(bobs.sandbox.id, first.sandbox.id, "keys are per owner");
}

#[tokio::test]
async fn resync_collects_orphans_of_this_cluster_only_after_the_grace() {
    let h = harness_with(
        Arc::new(FakeRuntime::default()),
        tempfile::tempdir().unwrap(),
        ServerConfig {
            orphan_grace: Duration::from_secs(60),
            ..config()
        },
    )
    .await;
    let labels = |cluster: &str| {
        BTreeMap::from([
            (label_keys::MANAGED.to_owned(), "true".to_owned()),
            (label_keys::CLUSTER.to_owned(), cluster.to_owned()),
            (label_keys::SANDBOX.to_owned(), "00000000deadbeef".to_owned()),
        ])
    };
    let old = chrono::Utc::now() - chrono::Duration::seconds(120);
    let young = h.runtime.plant(labels("test"), chrono::Utc::now());
    let orphan = h.runtime.plant(labels("test"), old);
    let foreign = h.runtime.plant(labels("someone-else"), old);
    let report = h.service.resync().await.unwrap();
    assert_eq!(report.collected, 1);
    assert!(h.runtime.container(&orphan).is_none());
    assert!(h.runtime.container(&young).is_some(), "within the grace period");
    assert!(
        h.runtime.container(&foreign).is_some(),
        "another deployment's container"
    );
}

#[tokio::test]
async fn a_restart_adopts_running_sandboxes_and_settles_interrupted_ones() {
    let runtime = Arc::new(FakeRuntime::default());
    let dir = tempfile::tempdir().unwrap();
    let first = harness_with(runtime.clone(), dir, config()).await;
    let running = first.service.create(request(), None, true).await.unwrap().sandbox;
    let vanishing = first.service.create(request(), None, true).await.unwrap().sandbox;
    // A record whose create never reached the engine, as after a crash.
    let mut interrupted = running.clone();
    interrupted.id = berth_core::SandboxId::generate();
    interrupted.status = Status::Creating;
    interrupted.container_id = None;
    interrupted.idempotency_key = None;
    first.store.insert(&interrupted).await.unwrap();
    let Harness { dir, _background, .. } = first;
    drop(_background);
    // The engine changes while no server watches.
    runtime.remove_behind_back(vanishing.container_id.as_deref().unwrap());

    let second = harness_with(runtime.clone(), dir, config()).await;
    let service = second.service.clone();
    let settled = |id: &berth_core::SandboxId| service.get(id.as_str()).unwrap();
    assert!(
        wait_for(
            || settled(&vanishing.id).status == Status::Failed && settled(&interrupted.id).status == Status::Failed
        )
        .await
    );
    assert_eq!(settled(&running.id).status, Status::Running);
    assert_eq!(
        settled(&vanishing.id).status_reason.as_ref().map(Reason::as_str),
        Some("container_lost")
    );
    assert_eq!(
        settled(&interrupted.id).status_reason.as_ref().map(Reason::as_str),
        Some("create_interrupted")
    );
    let live = second.service.list(&SandboxFilter::default(), None, 100);
    assert_eq!(live.items.iter().map(|s| &s.id).collect::<Vec<_>>(), vec![&running.id]);
    drop(second.dir);
}

#[tokio::test]
async fn a_restart_starts_containers_whose_start_was_interrupted_or_ends_them_saying_why() {
    let runtime = Arc::new(FakeRuntime::default());
    let dir = tempfile::tempdir().unwrap();
    let first = harness_with(runtime.clone(), dir, config()).await;
    // Killed between the engine's create and start: the records were left `Creating` (the
    // create had not answered) or `Running` (written by a server that took any container for
    // a running one); the containers exist and never ran.
    let mut unstarted = Vec::new();
    for status in [Status::Creating, Status::Running, Status::Creating] {
        let sandbox = first.service.create(request(), None, true).await.unwrap().sandbox;
        let container = sandbox.container_id.clone().unwrap();
        runtime.unstart(&container);
        let mut record = sandbox.clone();
        record.status = status;
        first.store.update(&record).await.unwrap();
        unstarted.push((sandbox.id, container));
    }
    let Harness { dir, _background, .. } = first;
    drop(_background);

    let second = harness_with(runtime.clone(), dir, config()).await;
    let service = second.service.clone();
    for (id, container) in &unstarted[..2] {
        let started = service.resync().await.unwrap();
        let record = service.get(id.as_str()).unwrap();
        assert_eq!(record.status, Status::Running, "{started:?}");
        let facts = runtime.container(container).unwrap();
        assert_eq!(
            facts.state,
            berth_runtime::RunState::Running,
            "the container really runs"
        );
        assert_eq!(record.container_id.as_deref(), Some(container.as_str()));
        assert!(record.ip.is_some(), "the started container's address is taken");
    }
    // Counted once per start (the background loop's resync may have done some of them).
    let metrics = service.render_metrics();
    let started: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix(r#"berth_resync_corrections_total{correction="started"} "#))
        .and_then(|count| count.parse().ok())
        .unwrap_or_default();
    assert!(started >= 2, "{metrics}");

    // One that will not start ends with the reason and the engine's words, and its container goes.
    // The second server stops first: its own resync must not start the container again while
    // this one is put back to an interrupted create.
    let (broken, container) = &unstarted[2];
    let Harness {
        dir,
        store,
        _background,
        ..
    } = second;
    drop(_background);
    runtime.unstart(container);
    let mut record = service.get(broken.as_str()).unwrap();
    record.status = Status::Creating;
    record.updated_at = chrono::Utc::now();
    store.update(&record).await.unwrap();
    runtime.fail_starts_with(Some("no such file: /bin/sleep"));
    let third = harness_with(runtime.clone(), dir, config()).await;
    third.service.resync().await.unwrap();
    let failed = third.service.get(broken.as_str()).unwrap();
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(failed.status_reason.as_ref().map(Reason::as_str), Some("start_failed"));
    assert!(
        failed
            .status_message
            .as_deref()
            .is_some_and(|m| m.contains("/bin/sleep")),
        "{failed:?}"
    );
    assert!(
        wait_for(|| runtime.container(container).is_none()).await,
        "the container is removed"
    );
    for (id, _) in &unstarted[..2] {
        assert_eq!(third.service.get(id.as_str()).unwrap().status, Status::Running);
    }
}

#[tokio::test]
async fn ended_records_are_purged_after_the_retention_period() {
    let h = harness_with(
        Arc::new(FakeRuntime::default()),
        tempfile::tempdir().unwrap(),
        ServerConfig {
            retention: Duration::from_millis(200),
            ..config()
        },
    )
    .await;
    let ended = h.service.create(request(), None, true).await.unwrap().sandbox;
    h.service.delete(ended.id.as_str()).await.unwrap();
    let live = h.service.create(request(), None, true).await.unwrap().sandbox;
    assert_eq!(
        h.service.resync().await.unwrap().purged,
        0,
        "still within the retention period"
    );
    assert!(h.service.get(ended.id.as_str()).is_ok());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.service.resync().await.unwrap().purged, 1);
    assert!(matches!(
        h.service.get(ended.id.as_str()),
        Err(ServiceError::NotFound {
            kind: NotFoundKind::Sandbox,
            ..
        })
    ));
    assert!(h.store.get(&ended.id).await.unwrap().is_none());
    assert_eq!(
        h.service.get(live.id.as_str()).unwrap().status,
        Status::Running,
        "live records are never purged"
    );
}

#[tokio::test]
async fn pause_and_resume_follow_the_status_machine_and_are_persisted() {
    let h = harness().await;
    let sandbox = h.service.create(request(), None, true).await.unwrap().sandbox;
    let id = sandbox.id.as_str();
    let container = sandbox.container_id.clone().unwrap();

    let paused = h.service.pause(id).await.unwrap();
    assert_eq!(paused.status, Status::Paused);
    assert_eq!(
        h.store.get(&sandbox.id).await.unwrap().unwrap().status,
        Status::Paused,
        "persisted"
    );
    assert_eq!(
        h.runtime.container(&container).unwrap().state,
        berth_runtime::RunState::Paused
    );
    assert_eq!(
        h.service.pause(id).await.unwrap().status,
        Status::Paused,
        "pausing again is a no-op"
    );

    // Work inside needs `Running`: a clear 409 that says what to do.
    let error = h.service.running_container(id).await.unwrap_err();
    assert!(
        matches!(&error, ServiceError::InvalidState(message) if message.contains("is paused: resume it first")),
        "{error}"
    );
    let resumed = h.service.resume(id).await.unwrap();
    assert_eq!(resumed.status, Status::Running);
    assert_eq!(h.store.get(&sandbox.id).await.unwrap().unwrap().status, Status::Running);
    assert_eq!(
        h.service.resume(id).await.unwrap().status,
        Status::Running,
        "resuming again is a no-op"
    );
    assert_eq!(h.service.running_container(id).await.unwrap().container_id, container);

    h.service.delete(id).await.unwrap();
    for outcome in [h.service.pause(id).await, h.service.resume(id).await] {
        assert!(
            matches!(&outcome, Err(ServiceError::InvalidState(message)) if message.contains("has ended (Terminated: deleted)")),
            "{outcome:?}"
        );
    }
    assert!(matches!(
        h.service.pause("0123456789abcdef").await,
        Err(ServiceError::NotFound {
            kind: NotFoundKind::Sandbox,
            ..
        })
    ));
}

#[tokio::test]
async fn a_paused_sandbox_still_expires_on_time() {
    let h = harness().await;
    let mut short = request();
    short.ttl = Some(NumberOrString::String("1s".into()));
    let sandbox = h.service.create(short, None, true).await.unwrap().sandbox;
    h.service.pause(sandbox.id.as_str()).await.unwrap();
    let service = h.service.clone();
    let id = sandbox.id.clone();
    assert!(wait_for(move || service.get(id.as_str()).unwrap().status.is_ended()).await);
    let ended = h.service.get(sandbox.id.as_str()).unwrap();
    assert_eq!(ended.status, Status::Terminated);
    assert_eq!(ended.status_reason.as_ref().map(Reason::as_str), Some("expired"));
    assert!(h.runtime.container(sandbox.container_id.as_deref().unwrap()).is_none());
}

#[tokio::test]
async fn engine_pause_events_are_mirrored() {
    let h = harness().await;
    let sandbox = h.service.create(request(), None, true).await.unwrap().sandbox;
    let container = sandbox.container_id.clone().unwrap();
    // Paused behind berth's back (`docker pause`): the event brings the record along.
    h.runtime.pause(&container).await.unwrap();
    let service = h.service.clone();
    let id = sandbox.id.clone();
    assert!(wait_for(move || service.get(id.as_str()).unwrap().status == Status::Paused).await);
    h.runtime.unpause(&container).await.unwrap();
    let service = h.service.clone();
    let id = sandbox.id.clone();
    assert!(wait_for(move || service.get(id.as_str()).unwrap().status == Status::Running).await);
}

fn context(bytes: usize) -> berth_runtime::ByteStream {
    use futures::StreamExt;
    futures::stream::iter([Ok(bytes::Bytes::from(vec![0u8; bytes]))]).boxed()
}

async fn build_lines(
    h: &Harness,
    reference: &str,
    options: berth_control::service::BuildOptions,
) -> Result<Vec<berth_api::BuildLine>, ServiceError> {
    use futures::StreamExt;
    let lines = h
        .service
        .build_template(reference, options, context(1024), None)
        .await?;
    Ok(lines.collect().await)
}

fn pooled_template(name: &str, image: &str) -> berth_core::TemplateRequest {
    berth_core::TemplateRequest {
        name: Some(name.into()),
        image: Some(image.into()),
        pool: Some(berth_core::template::PoolRequest {
            min_ready: Some(1),
            max_idle_age: None,
        }),
        ..berth_core::TemplateRequest::default()
    }
}

#[tokio::test]
async fn a_build_under_the_templates_own_image_clears_its_error_and_fills_its_pool() {
    let h = harness_with(
        Arc::new(FakeRuntime::with_images(&["busybox"])),
        tempfile::tempdir().unwrap(),
        config(),
    )
    .await;
    h.service
        .create_template(&pooled_template("built", "berth-test/built:latest"))
        .await
        .unwrap();
    // The image is missing: the pool's refill fails and says so (and then backs off).
    let store = h.store.clone();
    let mut errored = false;
    for _ in 0..100 {
        if store
            .get_template("built", "latest")
            .await
            .unwrap()
            .unwrap()
            .error
            .is_some()
        {
            errored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(errored, "the missing image is reported on the template");

    let options = berth_control::service::BuildOptions {
        dockerfile: Some("build/Dockerfile".into()),
        build_args: BTreeMap::from([("V".into(), "1".into())]),
    };
    let lines = build_lines(&h, "built", options).await.unwrap();
    let Some(berth_api::BuildLine::Done(done)) = lines.last() else {
        panic!("{lines:?}")
    };
    assert_eq!(done.image, "berth-test/built:latest");
    assert!(matches!(lines[0], berth_api::BuildLine::Log(_)), "{lines:?}");
    let builds = h.runtime.builds();
    assert_eq!(builds.len(), 1);
    assert_eq!(builds[0].tag, "berth-test/built:latest");
    assert_eq!(builds[0].dockerfile, "build/Dockerfile");
    assert_eq!(builds[0].build_args["V"], "1");
    assert_eq!(builds[0].labels["berth.template"], "built:latest");

    let template = h.store.get_template("built", "latest").await.unwrap().unwrap();
    assert_eq!(template.spec.image, "berth-test/built:latest");
    assert_eq!(template.error, None);
    // No waiting out the failed refill's backoff: the pool fills at once.
    let service = h.service.clone();
    assert!(
        wait_for(move || service.pool_view(&template).is_some_and(|pool| pool.ready == 1)).await,
        "the pool fills from the built image"
    );
}

#[tokio::test]
async fn a_build_of_a_registry_image_switches_the_template_to_its_own_repository() {
    let h = harness().await;
    h.service
        .create_template(&pooled_template("py", "registry.example.com/python:3.12"))
        .await
        .unwrap();
    let lines = build_lines(&h, "py:latest", Default::default()).await.unwrap();
    let Some(berth_api::BuildLine::Done(done)) = lines.last() else {
        panic!("{lines:?}")
    };
    assert_eq!(done.image, "berth-template/py:latest");
    assert!(done.image_id.starts_with("sha256:"));
    let template = h.store.get_template("py", "latest").await.unwrap().unwrap();
    assert_eq!(template.spec.image, "berth-template/py:latest");
}

#[tokio::test]
async fn a_failed_build_ends_with_its_message_and_leaves_the_template() {
    let h = harness().await;
    h.service
        .create_template(&pooled_template("broken", "registry.example.com/x:1"))
        .await
        .unwrap();
    h.runtime
        .fail_builds_with(Some("The command '/bin/sh -c exit 3' returned a non-zero code: 3"));
    let lines = build_lines(&h, "broken", Default::default()).await.unwrap();
    assert_eq!(
        lines.last(),
        Some(&berth_api::BuildLine::Error(
            "The command '/bin/sh -c exit 3' returned a non-zero code: 3".into()
        ))
    );
    let template = h.store.get_template("broken", "latest").await.unwrap().unwrap();
    assert_eq!(template.spec.image, "registry.example.com/x:1");
}

#[tokio::test]
async fn builds_are_refused_before_the_engine_when_they_cannot_be_right() {
    let small = ServerConfig {
        max_file_size: 100,
        ..config()
    };
    let h = harness_with(Arc::new(FakeRuntime::default()), tempfile::tempdir().unwrap(), small).await;
    let missing = build_lines(&h, "nothing", Default::default()).await.unwrap_err();
    assert!(
        matches!(
            missing,
            ServiceError::NotFound {
                kind: NotFoundKind::Template,
                ..
            }
        ),
        "{missing:?}"
    );
    h.service
        .create_template(&pooled_template("small", "busybox"))
        .await
        .unwrap();
    let outside = berth_control::service::BuildOptions {
        dockerfile: Some("../Dockerfile".into()),
        ..Default::default()
    };
    let refused = build_lines(&h, "small", outside).await.unwrap_err();
    assert!(matches!(refused, ServiceError::InvalidRequest(_)), "{refused:?}");
    // Over the limit: announced, or found while streaming.
    let announced = h
        .service
        .build_template("small", Default::default(), context(10), Some(101))
        .await
        .err()
        .unwrap();
    assert!(matches!(announced, ServiceError::TooLarge(_)), "{announced:?}");
    let streamed = build_lines(&h, "small", Default::default()).await.unwrap_err();
    assert!(matches!(streamed, ServiceError::TooLarge(_)), "{streamed:?}");
    assert!(h.runtime.builds().is_empty());
}

#[tokio::test]
async fn a_runtime_the_engine_does_not_offer_is_refused_before_anything_is_recorded() {
    let h = harness().await;
    let under = |runtime: &str| SandboxRequest {
        runtime: Some(runtime.into()),
        ..request()
    };
    let Err(ServiceError::Validation(errors)) = h.service.create(under("runsc"), None, true).await else {
        panic!("a runtime the engine lacks must be a validation error");
    };
    assert_eq!(errors.0[0].field, "runtime");
    assert!(
        errors.0[0].message.contains("no runtime `runsc`") && errors.0[0].message.contains("runc"),
        "names the asked and the offered runtimes: {}",
        errors.0[0].message
    );
    let recorded = h.store.list(&SandboxFilter::default(), None, 10).await.unwrap();
    assert!(recorded.items.is_empty(), "nothing recorded: {recorded:?}");
    assert!(h.runtime.container_ids().is_empty(), "nothing created on the engine");

    // Registered while berth runs: found without a restart.
    h.runtime.register_runtime("runsc");
    let created = h.service.create(under("runsc"), None, true).await.unwrap().sandbox;
    assert_eq!(created.spec.runtime.as_deref(), Some("runsc"));
    let stored = h.store.get(&created.id).await.unwrap().unwrap();
    assert_eq!(stored.spec.runtime.as_deref(), Some("runsc"), "kept in the store");

    // A template names its runtime once for all its sandboxes, checked the same way.
    let template = berth_core::TemplateRequest {
        name: Some("gvisor".into()),
        image: Some("busybox".into()),
        runtime: Some("kata".into()),
        ..berth_core::TemplateRequest::default()
    };
    let Err(ServiceError::Validation(errors)) = h.service.create_template(&template).await else {
        panic!("a template's runtime is checked too");
    };
    assert_eq!(errors.0[0].field, "runtime");
}
