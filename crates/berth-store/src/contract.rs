//! The backend-independent contract of [`Store`]: one `pub async fn` per behaviour, each taking
//! a fresh, empty store (leadership and cross-process ones also a second handle on the same
//! database, as another process would hold), and
//! [`store_contract_tests!`](crate::store_contract_tests) to run them all as separate tests
//! against a backend.
//!
//! A backend's test file runs the whole suite with:
//!
//! ```ignore
//! /// An empty store + whatever keeps its database alive (a temp dir, a throwaway database).
//! async fn fresh() -> (Arc<dyn Store>, Guard) { /* ... */ }
//! /// Another handle on the database `guard` keeps, as a second process would open it.
//! async fn reopen(guard: &Guard) -> Arc<dyn Store> { /* ... */ }
//! berth_store::store_contract_tests!(fresh, reopen);
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use berth_core::{
    EnvService, PoolSpec, PortBinding, Resources, Sandbox, SandboxId, SandboxSpec, ServiceStatus, Status, Template,
};
use chrono::{DateTime, Utc};

use crate::{Cursor, Lease, SandboxFilter, Store, StoreError};

/// Generates one `#[tokio::test]` per contract function. `$fresh` is an async fn (or closure)
/// returning `(Arc<dyn Store>, guard)`: an empty store, and anything that must live as long as
/// it (a temp dir, a throwaway database). `$reopen` is an async fn taking `&guard` and
/// returning another `Arc<dyn Store>` on the same database, opened the way a second process
/// would. The calling crate needs `tokio` as a dev-dependency.
#[macro_export]
macro_rules! store_contract_tests {
    ($fresh:expr, $reopen:expr) => {
        $crate::store_contract_tests!(@each $fresh;
            round_trip_preserves_every_field,
            get_of_unknown_id_is_none,
            insert_of_existing_id_is_already_exists,
            idempotency_key_is_unique_per_owner,
            find_by_idempotency_key_matches_owner_and_key,
            update_replaces_the_whole_record,
            update_of_unknown_id_is_not_found,
            failed_update_changes_nothing,
            list_orders_by_created_at_then_id,
            list_pages_cover_everything_exactly_once,
            cursor_is_stable_when_records_are_added,
            list_filters_by_status,
            list_filters_by_owner,
            list_filters_by_labels_all_must_match,
            list_agrees_with_filter_matches,
            list_with_zero_limit_is_empty,
            list_live_returns_every_unended_record,
            purge_deletes_only_records_ended_before_cutoff,
            concurrent_writers_all_succeed,
            concurrent_inserts_admit_one_per_idempotency_key,
            ping_answers,
            updated_since_returns_records_written_at_or_after_the_instant,
            describe_names_the_backend,
            template_round_trip_preserves_every_field,
            insert_of_existing_template_is_template_exists,
            update_template_replaces_it_whole_and_a_missing_one_is_not_found,
            list_templates_orders_by_name_then_tag,
            delete_template_reports_whether_it_existed,
            list_filters_by_pooled,
            claim_from_an_empty_or_unknown_pool_is_none,
            claim_takes_the_oldest_running_pooled_record,
            a_refused_claim_writes_nothing,
            service_round_trip_preserves_every_field,
            insert_of_an_existing_service_fails_and_keeps_the_first,
            update_service_replaces_only_the_revision_it_read,
            list_services_orders_by_creation_and_delete_reports_whether_it_existed,
        );
        $crate::store_contract_tests!(@pair $fresh, $reopen;
            leadership_is_exclusive_per_cluster,
            a_dropped_lease_frees_leadership,
            handles_on_one_database_see_each_others_writes,
            concurrent_claims_through_two_handles_hand_out_each_sandbox_once,
        );
    };
    (@each $fresh:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let (store, _guard) = ($fresh)().await;
                $crate::contract::$name(store).await;
            }
        )*
    };
    (@pair $fresh:expr, $reopen:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let (store, guard) = ($fresh)().await;
                let other = ($reopen)(&guard).await;
                $crate::contract::$name(store, other).await;
            }
        )*
    };
}

/// 2025-06-15T15:06:40.123456789Z: sub-second, so any precision loss shows.
const BASE_NANOS: i64 = 1_750_000_000_123_456_789;

/// A time `offset_nanos` after the suite's base time.
pub fn at(offset_nanos: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(BASE_NANOS + offset_nanos)
}

/// `seconds` after the base time.
pub fn at_secs(seconds: i64) -> DateTime<Utc> {
    at(seconds * 1_000_000_000)
}

/// A plain running sandbox of `owner`, created at `created_at`, with no labels.
pub fn sample(owner: &str, created_at: DateTime<Utc>) -> Sandbox {
    let ttl = Duration::from_secs(1800);
    Sandbox {
        id: SandboxId::generate(),
        status: Status::Running,
        status_reason: None,
        status_message: None,
        exit_code: None,
        oom_killed: false,
        owner: owner.to_owned(),
        engine: "local".into(),
        spec: SandboxSpec {
            image: "busybox:latest".into(),
            command: None,
            env: BTreeMap::new(),
            workdir: None,
            user: None,
            labels: BTreeMap::new(),
            ports: Vec::new(),
            resources: Resources {
                cpu_millis: 1000,
                memory_bytes: 512 << 20,
                pids_limit: 1024,
            },
            ttl,
            readiness: None,
            stack: None,
        },
        container_id: None,
        ip: None,
        ports: Vec::new(),
        idempotency_key: None,
        created_at,
        updated_at: created_at,
        started_at: None,
        expires_at: created_at + chrono::Duration::seconds(1800),
        ended_at: None,
        template: None,
        pool: None,
    }
}

/// `sandbox` made from template `pool` (`name:tag`) and waiting, ready, in its warm pool.
pub fn pooled(mut sandbox: Sandbox, pool: &str) -> Sandbox {
    sandbox.template = Some(pool.to_owned());
    sandbox.pool = Some(pool.to_owned());
    sandbox
}

/// A template `name:tag` with a plain spec and no pool, created (and last updated) at
/// `created_at`.
pub fn sample_template(name: &str, tag: &str, created_at: DateTime<Utc>) -> Template {
    Template {
        name: name.to_owned(),
        tag: tag.to_owned(),
        spec: sample("template", created_at).spec,
        pool: None,
        error: None,
        env_document: None,
        created_at,
        updated_at: created_at,
    }
}

/// A template with every optional field set: the spec of [`fully_populated`], a pool, an error,
/// an AEnvironment Env document.
pub fn fully_populated_template() -> Template {
    Template {
        name: "python-3".into(),
        tag: "3.12.1_rc-2".into(),
        spec: fully_populated().spec,
        pool: Some(PoolSpec {
            min_ready: 7,
            max_idle_age: Duration::from_millis(1_234_500),
        }),
        error: Some("image \"python:3.12\" not found ✓".into()),
        env_document: Some(serde_json::json!({
            "name": "python-3",
            "version": "3.12.1_rc-2",
            "status": 6,
            "artifacts": [{"id": "a1", "type": "image", "content": "python:3.12"}],
            "deploy_config": {"cpu": "500m", "composeFile": "services: {}\n"},
        })),
        created_at: at(1),
        updated_at: at(2_000_000_007),
    }
}

/// `sandbox` with exactly these labels.
pub fn labelled(mut sandbox: Sandbox, labels: &[(&str, &str)]) -> Sandbox {
    sandbox.spec.labels = labels
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    sandbox
}

/// `sandbox` moved to `status`; ended statuses get a reason and `ended_at` one second after
/// creation.
pub fn in_status(mut sandbox: Sandbox, status: Status) -> Sandbox {
    sandbox.status = status;
    if status.is_ended() {
        sandbox.status_reason = Some("exited".into());
        sandbox.ended_at = Some(sandbox.created_at + chrono::Duration::seconds(1));
    }
    sandbox
}

/// A record with every optional field set and every collection non-empty.
pub fn fully_populated() -> Sandbox {
    let created_at = at(1);
    Sandbox {
        id: SandboxId::generate(),
        status: Status::Failed,
        status_reason: Some("oom_killed".into()),
        status_message: Some("the engine said: \"no\" — ünïcödé".into()),
        exit_code: Some(-9),
        oom_killed: true,
        owner: "team-α \"quoted\" 'single'".into(),
        engine: "engine-2".into(),
        spec: SandboxSpec {
            image: "registry.local:5000/tools/python@sha256:0123abcd".into(),
            command: Some(vec!["sh".into(), "-c".into(), "echo 'hi' && sleep 1; exit 3".into()]),
            env: BTreeMap::from([
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("EMPTY".into(), String::new()),
                ("UNICODE".into(), "ünïcödé ✓ \n newline".into()),
            ]),
            workdir: Some("/work dir".into()),
            user: Some("1000:1000".into()),
            labels: BTreeMap::from([
                ("team".into(), "red".into()),
                ("example.com/tier".into(), "gold".into()),
                ("empty".into(), String::new()),
            ]),
            ports: vec![8080, 9090],
            resources: Resources {
                cpu_millis: 2500,
                memory_bytes: 3 << 30,
                pids_limit: 77,
            },
            ttl: Duration::from_millis(90_500),
            readiness: Some(berth_core::ReadinessProbe {
                check: berth_core::ProbeCheck::Http {
                    port: 8081,
                    path: "/health?deep=1".into(),
                },
                timeout: Duration::from_millis(2_500),
            }),
            stack: Some(berth_core::stack::StackPlan {
                services: vec![berth_core::stack::ServicePlan {
                    name: "db".into(),
                    image: "postgres:16".into(),
                    command: None,
                    entrypoint: Some(vec!["docker-entrypoint.sh".into()]),
                    environment: BTreeMap::from([("POSTGRES_PASSWORD".into(), "ünï".into())]),
                    ports: vec![5432],
                    volumes: vec![berth_core::stack::VolumeMount {
                        volume: "data".into(),
                        container_path: "/var/lib/postgresql/data".into(),
                        read_only: false,
                    }],
                    depends_on: Vec::new(),
                    healthcheck: Some(berth_core::stack::Healthcheck {
                        test: vec!["CMD-SHELL".into(), "pg_isready".into()],
                        interval: Some(Duration::from_millis(1_500)),
                        timeout: None,
                        retries: Some(5),
                        start_period: None,
                    }),
                    labels: BTreeMap::from([("aenv.main".into(), "true".into())]),
                    cpu_millis: Some(500),
                    memory_bytes: None,
                    restart: Some(berth_core::stack::RestartPolicy::OnFailure(Some(3))),
                    working_dir: None,
                    user: Some("999".into()),
                }],
                volumes: vec!["data".into()],
                main_service: "db".into(),
            }),
        },
        container_id: Some("4f2a".repeat(16)),
        ip: Some("172.17.0.5".into()),
        ports: vec![
            PortBinding {
                container_port: 8080,
                host_ip: "127.0.0.1".into(),
                host_port: 49_153,
            },
            PortBinding {
                container_port: 9090,
                host_ip: "::1".into(),
                host_port: 65_535,
            },
        ],
        idempotency_key: Some("req-42".into()),
        created_at,
        updated_at: at(2_000_000_007),
        started_at: Some(at(1_000_000_003)),
        expires_at: at(1_800_000_000_001),
        ended_at: Some(at(3_000_000_009)),
        template: Some("python-3:3.12".into()),
        pool: Some("python-3:3.12".into()),
    }
}

/// Sorted the way every list answers: `(created_at, id)`.
pub fn in_list_order(mut sandboxes: Vec<Sandbox>) -> Vec<Sandbox> {
    sandboxes.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    sandboxes
}

/// Label pairs as tests write them.
type Labels<'a> = &'a [(&'a str, &'a str)];

fn ids(sandboxes: &[Sandbox]) -> Vec<SandboxId> {
    sandboxes.iter().map(|sandbox| sandbox.id.clone()).collect()
}

async fn insert_all(store: &dyn Store, sandboxes: &[Sandbox]) {
    for sandbox in sandboxes {
        store.insert(sandbox).await.expect("insert");
    }
}

fn label_filter(labels: &[(&str, &str)]) -> SandboxFilter {
    SandboxFilter {
        labels: labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect(),
        include_ended: true,
        ..SandboxFilter::default()
    }
}

/// Every record `filter` matches, fetched `page_size` at a time, checking each page's shape:
/// a page with a `next` cursor is full and its cursor is its last item.
pub async fn list_all_pages(store: &dyn Store, filter: &SandboxFilter, page_size: usize) -> Vec<Sandbox> {
    let mut all = Vec::new();
    let mut after: Option<Cursor> = None;
    for _ in 0..10_000 {
        let page = store.list(filter, after.as_ref(), page_size).await.expect("list");
        assert!(
            page.items.len() <= page_size,
            "page of {} over limit {page_size}",
            page.items.len()
        );
        match page.next {
            Some(next) => {
                assert_eq!(page.items.len(), page_size, "a page followed by more is full");
                assert_eq!(
                    page.items.last().map(Cursor::after),
                    Some(next.clone()),
                    "next is the last item"
                );
                all.extend(page.items);
                after = Some(next);
            }
            None => {
                all.extend(page.items);
                return all;
            }
        }
    }
    panic!("pagination never ended");
}

/// Insert then get returns the identical record: every field, sub-second timestamps, labels,
/// ports, env, optional fields both set and unset.
pub async fn round_trip_preserves_every_field(store: Arc<dyn Store>) {
    let full = fully_populated();
    let minimal = sample("bob", at(5));
    store.insert(&full).await.expect("insert full record");
    store.insert(&minimal).await.expect("insert minimal record");

    let read = store.get(&full.id).await.expect("get").expect("full record exists");
    assert_eq!(read, full);
    assert_eq!(
        read.created_at.timestamp_subsec_nanos(),
        123_456_790,
        "nanoseconds survive"
    );
    assert_eq!(store.get(&minimal.id).await.expect("get"), Some(minimal.clone()));

    // The same records come back whole through every read path.
    let listed = store
        .list(
            &SandboxFilter {
                include_ended: true,
                ..SandboxFilter::default()
            },
            None,
            10,
        )
        .await
        .expect("list");
    assert_eq!(listed.items, vec![full.clone(), minimal.clone()]);
    let found = store
        .find_by_idempotency_key(&full.owner, "req-42")
        .await
        .expect("find");
    assert_eq!(found, Some(full));
    assert_eq!(store.list_live().await.expect("list_live"), vec![minimal]);
}

pub async fn get_of_unknown_id_is_none(store: Arc<dyn Store>) {
    store.insert(&sample("alice", at(0))).await.expect("insert");
    assert_eq!(store.get(&SandboxId::generate()).await.expect("get"), None);
}

/// A second insert with an existing id fails and leaves the first record, labels included.
/// Re-inserting the very same record (same id and idempotency key) is also `AlreadyExists`.
pub async fn insert_of_existing_id_is_already_exists(store: Arc<dyn Store>) {
    let mut first = labelled(sample("alice", at(0)), &[("team", "red")]);
    first.idempotency_key = Some("key".into());
    store.insert(&first).await.expect("insert");
    match store.insert(&first).await {
        Err(StoreError::AlreadyExists(id)) => assert_eq!(id, first.id),
        other => panic!("expected AlreadyExists for a repeated insert, got {other:?}"),
    }

    let mut clash = labelled(sample("bob", at(7)), &[("team", "blue")]);
    clash.id = first.id.clone();
    match store.insert(&clash).await {
        Err(StoreError::AlreadyExists(id)) => assert_eq!(id, first.id),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(store.get(&first.id).await.expect("get"), Some(first.clone()));
    let blue = store
        .list(&label_filter(&[("team", "blue")]), None, 10)
        .await
        .expect("list");
    assert!(
        blue.items.is_empty(),
        "the refused record's labels were not written: {blue:?}"
    );
    let red = store
        .list(&label_filter(&[("team", "red")]), None, 10)
        .await
        .expect("list");
    assert_eq!(ids(&red.items), vec![first.id]);
}

/// An owner cannot use one idempotency key twice; another owner can use the same key; records
/// without a key never clash.
pub async fn idempotency_key_is_unique_per_owner(store: Arc<dyn Store>) {
    let mut first = sample("alice", at(0));
    first.idempotency_key = Some("key-1".into());
    store.insert(&first).await.expect("insert");

    let mut again = sample("alice", at(1));
    again.idempotency_key = Some("key-1".into());
    match store.insert(&again).await {
        Err(StoreError::DuplicateIdempotencyKey { owner, key }) => {
            assert_eq!((owner.as_str(), key.as_str()), ("alice", "key-1"));
        }
        other => panic!("expected DuplicateIdempotencyKey, got {other:?}"),
    }
    assert_eq!(store.get(&again.id).await.expect("get"), None, "nothing was written");

    let mut other_owner = sample("bob", at(2));
    other_owner.idempotency_key = Some("key-1".into());
    store.insert(&other_owner).await.expect("same key, other owner");

    let mut other_key = sample("alice", at(3));
    other_key.idempotency_key = Some("key-2".into());
    store.insert(&other_key).await.expect("same owner, other key");

    for offset in 4..7 {
        store
            .insert(&sample("alice", at(offset)))
            .await
            .expect("records without a key never clash");
    }
    let all = store.list(&SandboxFilter::default(), None, 100).await.expect("list");
    assert_eq!(all.items.len(), 6);
}

pub async fn find_by_idempotency_key_matches_owner_and_key(store: Arc<dyn Store>) {
    let mut alice = sample("alice", at(0));
    alice.idempotency_key = Some("k".into());
    let mut bob = sample("bob", at(1));
    bob.idempotency_key = Some("k".into());
    let unkeyed = sample("carol", at(2));
    insert_all(&*store, &[alice.clone(), bob.clone(), unkeyed]).await;

    assert_eq!(
        store.find_by_idempotency_key("alice", "k").await.expect("find"),
        Some(alice)
    );
    assert_eq!(
        store.find_by_idempotency_key("bob", "k").await.expect("find"),
        Some(bob)
    );
    assert_eq!(store.find_by_idempotency_key("alice", "K").await.expect("find"), None);
    assert_eq!(
        store.find_by_idempotency_key("alice", "other").await.expect("find"),
        None
    );
    assert_eq!(store.find_by_idempotency_key("carol", "k").await.expect("find"), None);
    assert_eq!(store.find_by_idempotency_key("carol", "").await.expect("find"), None);
}

/// Update replaces every field, and every index follows: labels, owner, idempotency key,
/// status, order.
pub async fn update_replaces_the_whole_record(store: Arc<dyn Store>) {
    let mut original = labelled(sample("alice", at_secs(10)), &[("team", "red"), ("tier", "gold")]);
    original.status = Status::Pending;
    original.idempotency_key = Some("old-key".into());
    let neighbour = sample("alice", at_secs(5));
    insert_all(&*store, &[original.clone(), neighbour.clone()]).await;

    let mut updated = fully_populated();
    updated.id = original.id.clone();
    updated.status = Status::Running;
    updated.status_reason = None;
    updated.ended_at = None;
    updated.owner = "bob".into();
    updated.idempotency_key = Some("new-key".into());
    updated.created_at = at_secs(1);
    updated.spec.labels = BTreeMap::from([("team".into(), "blue".into()), ("env".into(), "prod".into())]);
    store.update(&updated).await.expect("update");

    assert_eq!(store.get(&original.id).await.expect("get"), Some(updated.clone()));
    for (labels, expected) in [
        (&[("team", "red")][..], vec![]),
        (&[("tier", "gold")][..], vec![]),
        (&[("team", "blue")][..], vec![updated.id.clone()]),
        (&[("team", "blue"), ("env", "prod")][..], vec![updated.id.clone()]),
    ] {
        let page = store.list(&label_filter(labels), None, 10).await.expect("list");
        assert_eq!(ids(&page.items), expected, "labels {labels:?}");
    }
    let by_owner = |owner: &str| SandboxFilter {
        owner: Some(owner.into()),
        ..SandboxFilter::default()
    };
    let alice = store.list(&by_owner("alice"), None, 10).await.expect("list");
    assert_eq!(ids(&alice.items), vec![neighbour.id.clone()]);
    let bob = store.list(&by_owner("bob"), None, 10).await.expect("list");
    assert_eq!(ids(&bob.items), vec![updated.id.clone()]);
    assert_eq!(
        store.find_by_idempotency_key("alice", "old-key").await.expect("find"),
        None
    );
    assert_eq!(
        store.find_by_idempotency_key("bob", "new-key").await.expect("find"),
        Some(updated.clone())
    );
    let running = SandboxFilter {
        statuses: vec![Status::Running],
        ..SandboxFilter::default()
    };
    let running = store.list(&running, None, 10).await.expect("list");
    assert_eq!(
        ids(&running.items),
        vec![updated.id.clone(), neighbour.id.clone()],
        "new created_at orders it first"
    );

    // The key the record gave up is free again.
    let mut reuse = sample("alice", at_secs(20));
    reuse.idempotency_key = Some("old-key".into());
    store.insert(&reuse).await.expect("released key is reusable");

    // Ending it through update takes it out of the live set.
    let mut ended = updated.clone();
    ended.end(Status::Terminated, "deleted", at_secs(30));
    store.update(&ended).await.expect("update to ended");
    let live = store.list_live().await.expect("list_live");
    assert_eq!(ids(&live), vec![neighbour.id, reuse.id]);
}

pub async fn update_of_unknown_id_is_not_found(store: Arc<dyn Store>) {
    store.insert(&sample("alice", at(0))).await.expect("insert");
    let ghost = labelled(sample("alice", at(1)), &[("team", "red")]);
    match store.update(&ghost).await {
        Err(StoreError::NotFound(id)) => assert_eq!(id, ghost.id),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(store.get(&ghost.id).await.expect("get"), None, "update does not insert");
    let red = store
        .list(&label_filter(&[("team", "red")]), None, 10)
        .await
        .expect("list");
    assert!(red.items.is_empty(), "no labels written for a missing record: {red:?}");
}

/// An update that would take another record's idempotency key fails as a whole: neither the
/// row nor its labels change.
pub async fn failed_update_changes_nothing(store: Arc<dyn Store>) {
    let mut first = sample("alice", at(0));
    first.idempotency_key = Some("k1".into());
    let mut second = labelled(sample("alice", at(1)), &[("team", "red")]);
    second.idempotency_key = Some("k2".into());
    insert_all(&*store, &[first.clone(), second.clone()]).await;

    let mut thief = labelled(second.clone(), &[("team", "blue")]);
    thief.idempotency_key = Some("k1".into());
    thief.status = Status::Paused;
    match store.update(&thief).await {
        Err(StoreError::DuplicateIdempotencyKey { owner, key }) => {
            assert_eq!((owner.as_str(), key.as_str()), ("alice", "k1"));
        }
        other => panic!("expected DuplicateIdempotencyKey, got {other:?}"),
    }
    assert_eq!(store.get(&second.id).await.expect("get"), Some(second.clone()));
    assert_eq!(
        store.find_by_idempotency_key("alice", "k1").await.expect("find"),
        Some(first)
    );
    let blue = store
        .list(&label_filter(&[("team", "blue")]), None, 10)
        .await
        .expect("list");
    assert!(blue.items.is_empty(), "labels rolled back: {blue:?}");
    let red = store
        .list(&label_filter(&[("team", "red")]), None, 10)
        .await
        .expect("list");
    assert_eq!(ids(&red.items), vec![second.id]);
}

/// Lists come in `(created_at, id)` order whatever the insert order, down to the nanosecond,
/// with ids breaking ties.
pub async fn list_orders_by_created_at_then_id(store: Arc<dyn Store>) {
    let offsets = [5_000, 1, 0, 5_000, 2, 5_000, 1_000_000_000, -1, 0, 3, 1];
    let sandboxes: Vec<Sandbox> = offsets.iter().map(|offset| sample("alice", at(*offset))).collect();
    insert_all(&*store, &sandboxes).await;

    let page = store.list(&SandboxFilter::default(), None, 100).await.expect("list");
    assert_eq!(page.next, None);
    assert_eq!(ids(&page.items), ids(&in_list_order(sandboxes.clone())));
    let times: Vec<i64> = page
        .items
        .iter()
        .map(|s| s.created_at.timestamp_nanos_opt().unwrap_or_default() - BASE_NANOS)
        .collect();
    assert_eq!(times, vec![-1, 0, 0, 1, 1, 2, 3, 5_000, 5_000, 5_000, 1_000_000_000]);
    assert_eq!(store.list_live().await.expect("list_live"), page.items);
}

/// Walking the pages visits every record once, for page sizes that divide the total and ones
/// that do not; a last page that is exactly full has no `next`.
pub async fn list_pages_cover_everything_exactly_once(store: Arc<dyn Store>) {
    // Records share created_at in threes, so pages end in the middle of ties.
    let sandboxes: Vec<Sandbox> = (0..24).map(|i| sample("alice", at(i / 3))).collect();
    insert_all(&*store, &sandboxes).await;
    let expected = ids(&in_list_order(sandboxes));

    for page_size in [1, 2, 5, 6, 7, 23, 24, 25, usize::MAX] {
        let all = list_all_pages(&*store, &SandboxFilter::default(), page_size).await;
        assert_eq!(ids(&all), expected, "page size {page_size}");
    }

    let exact = store.list(&SandboxFilter::default(), None, 24).await.expect("list");
    assert_eq!((exact.items.len(), exact.next), (24, None));
    let last = store
        .list(&SandboxFilter::default(), Some(&Cursor::after(&exact.items[17])), 6)
        .await
        .expect("list");
    assert_eq!(ids(&last.items), expected[18..].to_vec());
    assert_eq!(last.next, None, "an exactly full last page has no next");
    let beyond = store
        .list(&SandboxFilter::default(), Some(&Cursor::after(&exact.items[23])), 6)
        .await
        .expect("list");
    assert_eq!((beyond.items.len(), beyond.next), (0, None));
}

/// A cursor is a position, not a record: records added before it stay behind, records added
/// after it (including at the same instant with a larger id) show up, and it keeps working
/// after its own record is gone. It survives the text encoding clients carry.
pub async fn cursor_is_stable_when_records_are_added(store: Arc<dyn Store>) {
    let id = |text: &str| SandboxId::parse(text).expect("valid id");
    let mut sandboxes: Vec<Sandbox> = (0..10).map(|i| sample("alice", at_secs(i))).collect();
    sandboxes[3].id = id("8000000000000000");
    insert_all(&*store, &sandboxes).await;

    let first = store.list(&SandboxFilter::default(), None, 4).await.expect("list");
    assert_eq!(ids(&first.items), ids(&sandboxes[..4]));
    let cursor = first.next.clone().expect("more pages");
    assert_eq!(cursor.id, id("8000000000000000"));
    let cursor = Cursor::decode(&cursor.encode()).expect("cursor text round-trips");

    let mut before = sample("alice", at_secs(1));
    before.id = id("0000000000000001");
    let mut tie_before = sample("alice", at_secs(3));
    tie_before.id = id("0000000000000002");
    let mut tie_after = sample("alice", at_secs(3));
    tie_after.id = id("ffffffffffffffff");
    let later = sample("alice", at_secs(100));
    insert_all(&*store, &[before, tie_before, tie_after.clone(), later.clone()]).await;

    let mut expected = vec![tie_after.id.clone()];
    expected.extend(ids(&sandboxes[4..]));
    expected.push(later.id.clone());

    let rest = store
        .list(&SandboxFilter::default(), Some(&cursor), 100)
        .await
        .expect("list");
    assert_eq!(ids(&rest.items), expected);

    // The cursor's own record ends and is purged; the position still holds.
    let mut gone = sandboxes[3].clone();
    gone.end(Status::Terminated, "deleted", at_secs(50));
    store.update(&gone).await.expect("end");
    assert_eq!(store.purge_ended_before(at_secs(51)).await.expect("purge"), 1);
    let after_purge = store
        .list(&SandboxFilter::default(), Some(&cursor), 100)
        .await
        .expect("list");
    assert_eq!(ids(&after_purge.items), expected);
}

fn one_of_each_status() -> Vec<Sandbox> {
    Status::ALL
        .iter()
        .enumerate()
        .flat_map(|(index, status)| {
            let offset = i64::try_from(index).unwrap_or_default() * 10;
            [
                in_status(sample("alice", at_secs(offset)), *status),
                in_status(sample("bob", at_secs(offset + 1)), *status),
            ]
        })
        .collect()
}

/// `statuses` matches any of them and overrides `include_ended`; with no statuses, ended
/// records are listed only when `include_ended` is set.
pub async fn list_filters_by_status(store: Arc<dyn Store>) {
    let sandboxes = one_of_each_status();
    insert_all(&*store, &sandboxes).await;
    let with = |statuses: &[Status]| {
        sandboxes
            .iter()
            .filter(|s| statuses.contains(&s.status))
            .map(|s| s.id.clone())
            .collect::<Vec<_>>()
    };

    let cases = [
        (
            vec![Status::Running, Status::Paused],
            false,
            with(&[Status::Running, Status::Paused]),
        ),
        (vec![Status::Failed], false, with(&[Status::Failed])),
        (vec![Status::Terminated], true, with(&[Status::Terminated])),
        (
            vec![],
            false,
            with(&[
                Status::Pending,
                Status::Creating,
                Status::Running,
                Status::Paused,
                Status::Stopping,
            ]),
        ),
        (vec![], true, ids(&sandboxes)),
    ];
    for (statuses, include_ended, expected) in cases {
        let filter = SandboxFilter {
            statuses: statuses.clone(),
            include_ended,
            ..SandboxFilter::default()
        };
        let page = store.list(&filter, None, 100).await.expect("list");
        assert_eq!(
            ids(&page.items),
            expected,
            "statuses {statuses:?}, include_ended {include_ended}"
        );
        assert!(page.items.iter().all(|s| filter.matches(s)));
    }
}

pub async fn list_filters_by_owner(store: Arc<dyn Store>) {
    let sandboxes = one_of_each_status();
    insert_all(&*store, &sandboxes).await;

    for (owner, include_ended) in [("alice", false), ("alice", true), ("bob", true)] {
        let filter = SandboxFilter {
            owner: Some(owner.into()),
            include_ended,
            ..SandboxFilter::default()
        };
        let expected: Vec<SandboxId> = sandboxes
            .iter()
            .filter(|s| s.owner == owner && (include_ended || !s.status.is_ended()))
            .map(|s| s.id.clone())
            .collect();
        assert!(!expected.is_empty());
        let page = store.list(&filter, None, 100).await.expect("list");
        assert_eq!(
            ids(&page.items),
            expected,
            "owner {owner}, include_ended {include_ended}"
        );
    }
    for owner in ["nobody", "Alice", "alice ", ""] {
        let filter = SandboxFilter {
            owner: Some(owner.into()),
            include_ended: true,
            ..SandboxFilter::default()
        };
        let page = store.list(&filter, None, 100).await.expect("list");
        assert!(page.items.is_empty(), "owner {owner:?} matched {page:?}");
    }
}

/// Every label in the filter must be present with exactly that value.
pub async fn list_filters_by_labels_all_must_match(store: Arc<dyn Store>) {
    let both = labelled(sample("alice", at(0)), &[("team", "red"), ("env", "prod")]);
    let team_only = labelled(sample("alice", at(1)), &[("team", "red")]);
    let other_env = labelled(sample("alice", at(2)), &[("team", "red"), ("env", "dev")]);
    let env_only = labelled(sample("alice", at(3)), &[("env", "prod")]);
    let superset = labelled(
        sample("bob", at(4)),
        &[("team", "red"), ("env", "prod"), ("extra", "x")],
    );
    let none = sample("alice", at(5));
    let swapped = labelled(sample("alice", at(6)), &[("red", "team"), ("prod", "env")]);
    let tricky = labelled(sample("alice", at(7)), &[("q", "' OR '1'='1"), ("team", "red%")]);
    let ended = in_status(
        labelled(sample("alice", at(8)), &[("team", "red"), ("env", "prod")]),
        Status::Failed,
    );
    let all = [
        both.clone(),
        team_only.clone(),
        other_env.clone(),
        env_only.clone(),
        superset.clone(),
        none,
        swapped,
        tricky.clone(),
        ended.clone(),
    ];
    insert_all(&*store, &all).await;

    let cases: Vec<(Labels<'_>, Vec<&Sandbox>)> = vec![
        (&[("team", "red"), ("env", "prod")], vec![&both, &superset, &ended]),
        (
            &[("team", "red")],
            vec![&both, &team_only, &other_env, &superset, &ended],
        ),
        (&[("env", "dev")], vec![&other_env]),
        (&[("team", "red"), ("env", "prod"), ("extra", "x")], vec![&superset]),
        (&[("team", "RED")], vec![]),
        (&[("team", "re")], vec![]),
        (&[("team", "red"), ("nope", "x")], vec![]),
        (&[("q", "' OR '1'='1")], vec![&tricky]),
        (&[("team", "red%")], vec![&tricky]),
    ];
    for (labels, expected) in cases {
        let page = store.list(&label_filter(labels), None, 100).await.expect("list");
        let expected: Vec<SandboxId> = expected.iter().map(|s| s.id.clone()).collect();
        assert_eq!(ids(&page.items), expected, "labels {labels:?}");
    }

    // Labels combine with the other filters and with paging.
    let filter = SandboxFilter {
        owner: Some("alice".into()),
        include_ended: false,
        ..label_filter(&[("team", "red"), ("env", "prod")])
    };
    let page = store.list(&filter, None, 100).await.expect("list");
    assert_eq!(ids(&page.items), vec![both.id.clone()]);
    let paged = list_all_pages(&*store, &label_filter(&[("team", "red")]), 2).await;
    assert_eq!(
        ids(&paged),
        vec![both.id, team_only.id, other_env.id, superset.id, ended.id]
    );
}

/// Whatever the filter and page size, walking the pages yields exactly the records that
/// [`SandboxFilter::matches`] accepts, in list order.
pub async fn list_agrees_with_filter_matches(store: Arc<dyn Store>) {
    let owners = ["alice", "bob", "carol"];
    let sandboxes: Vec<Sandbox> = (0..42_usize)
        .map(|i| {
            let offset = i64::try_from(i / 4).unwrap_or_default();
            let mut labels = vec![("team", if i % 2 == 0 { "red" } else { "blue" })];
            if i % 3 == 0 {
                labels.push(("env", "prod"));
            }
            if i % 5 == 0 {
                labels.push(("tier", "gold"));
            }
            let mut sandbox = labelled(sample(owners[i % 3], at_secs(offset)), &labels);
            if i % 4 == 1 {
                sandbox = pooled(sandbox, "py:latest");
            }
            in_status(sandbox, Status::ALL[i % Status::ALL.len()])
        })
        .collect();
    insert_all(&*store, &sandboxes).await;
    let sorted = in_list_order(sandboxes);

    let label = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    };
    let filters = [
        SandboxFilter::default(),
        SandboxFilter {
            include_ended: true,
            ..SandboxFilter::default()
        },
        SandboxFilter {
            owner: Some("bob".into()),
            ..SandboxFilter::default()
        },
        SandboxFilter {
            statuses: vec![Status::Pending, Status::Failed],
            ..SandboxFilter::default()
        },
        SandboxFilter {
            labels: label(&[("team", "red")]),
            ..SandboxFilter::default()
        },
        SandboxFilter {
            labels: label(&[("team", "red"), ("env", "prod")]),
            include_ended: true,
            ..SandboxFilter::default()
        },
        SandboxFilter {
            statuses: vec![Status::Running, Status::Terminated, Status::Creating],
            owner: Some("alice".into()),
            labels: label(&[("env", "prod")]),
            include_ended: false,
            pooled: Some(false),
        },
        SandboxFilter {
            pooled: Some(true),
            include_ended: true,
            ..SandboxFilter::default()
        },
        SandboxFilter {
            pooled: Some(false),
            labels: label(&[("team", "red")]),
            ..SandboxFilter::default()
        },
        SandboxFilter {
            labels: label(&[("tier", "gold"), ("team", "blue")]),
            include_ended: true,
            ..SandboxFilter::default()
        },
    ];
    for filter in &filters {
        let expected: Vec<SandboxId> = sorted
            .iter()
            .filter(|s| filter.matches(s))
            .map(|s| s.id.clone())
            .collect();
        for page_size in [3, 100] {
            let listed = list_all_pages(&*store, filter, page_size).await;
            assert_eq!(ids(&listed), expected, "{filter:?}, page size {page_size}");
        }
    }
}

/// A zero limit answers an empty page without claiming more follow.
pub async fn list_with_zero_limit_is_empty(store: Arc<dyn Store>) {
    store.insert(&sample("alice", at(0))).await.expect("insert");
    let page = store.list(&SandboxFilter::default(), None, 0).await.expect("list");
    assert_eq!((page.items.len(), page.next), (0, None));
}

/// Every record that has not ended, of every owner, in list order.
pub async fn list_live_returns_every_unended_record(store: Arc<dyn Store>) {
    assert!(store.list_live().await.expect("list_live").is_empty());
    let sandboxes = one_of_each_status();
    insert_all(&*store, &sandboxes).await;
    let live = store.list_live().await.expect("list_live");
    let expected: Vec<SandboxId> = in_list_order(sandboxes)
        .iter()
        .filter(|s| !s.status.is_ended())
        .map(|s| s.id.clone())
        .collect();
    assert_eq!(expected.len(), 10);
    assert_eq!(ids(&live), expected);
}

/// Purge deletes ended records whose `ended_at` is strictly before the cutoff, nothing else,
/// and frees their ids, idempotency keys and labels.
pub async fn purge_deletes_only_records_ended_before_cutoff(store: Arc<dyn Store>) {
    let cutoff = at_secs(100);
    let ended_at = |mut sandbox: Sandbox, status: Status, when: DateTime<Utc>| {
        sandbox.end(status, "exited", when);
        sandbox
    };
    let mut old_terminated = ended_at(
        labelled(sample("alice", at_secs(0)), &[("team", "red")]),
        Status::Terminated,
        at_secs(50),
    );
    old_terminated.idempotency_key = Some("k".into());
    let old_failed = ended_at(
        sample("bob", at_secs(1)),
        Status::Failed,
        cutoff - chrono::Duration::nanoseconds(1),
    );
    let at_cutoff = ended_at(sample("alice", at_secs(2)), Status::Failed, cutoff);
    let recent = ended_at(sample("alice", at_secs(3)), Status::Terminated, at_secs(150));
    let live = labelled(sample("alice", at_secs(4)), &[("team", "red")]);
    // Inconsistent but possible: a live status with an ended_at. Only ended records go.
    let mut live_with_ended_at = sample("alice", at_secs(5));
    live_with_ended_at.ended_at = Some(at_secs(10));
    insert_all(
        &*store,
        &[
            old_terminated.clone(),
            old_failed.clone(),
            at_cutoff.clone(),
            recent.clone(),
            live.clone(),
            live_with_ended_at.clone(),
        ],
    )
    .await;

    assert_eq!(store.purge_ended_before(cutoff).await.expect("purge"), 2);
    assert_eq!(store.get(&old_terminated.id).await.expect("get"), None);
    assert_eq!(store.get(&old_failed.id).await.expect("get"), None);
    let everything = store
        .list(
            &SandboxFilter {
                include_ended: true,
                ..SandboxFilter::default()
            },
            None,
            100,
        )
        .await
        .expect("list");
    assert_eq!(
        ids(&everything.items),
        vec![
            at_cutoff.id.clone(),
            recent.id.clone(),
            live.id.clone(),
            live_with_ended_at.id.clone()
        ]
    );
    assert_eq!(store.purge_ended_before(cutoff).await.expect("purge again"), 0);

    let red = store
        .list(&label_filter(&[("team", "red")]), None, 100)
        .await
        .expect("list");
    assert_eq!(ids(&red.items), vec![live.id.clone()]);
    assert_eq!(store.find_by_idempotency_key("alice", "k").await.expect("find"), None);

    // The purged id and key can be used again.
    let mut reborn = sample("alice", at_secs(200));
    reborn.id = old_terminated.id.clone();
    reborn.idempotency_key = Some("k".into());
    store.insert(&reborn).await.expect("purged id and key are free");

    assert_eq!(store.purge_ended_before(at_secs(1_000)).await.expect("purge"), 2);
    assert_eq!(
        ids(&store
            .list(
                &SandboxFilter {
                    include_ended: true,
                    ..SandboxFilter::default()
                },
                None,
                100
            )
            .await
            .expect("list")
            .items),
        vec![live.id, live_with_ended_at.id, reborn.id]
    );
}

/// 50 tasks insert and update at once, with readers listing meanwhile; every write succeeds
/// (no "database is locked") and the final state is every task's last write.
pub async fn concurrent_writers_all_succeed(store: Arc<dyn Store>) {
    const TASKS: usize = 50;
    let mut writers = Vec::new();
    for task in 0..TASKS {
        let store = Arc::clone(&store);
        writers.push(tokio::spawn(async move {
            let offset = i64::try_from(task).unwrap_or_default();
            let task_label = task.to_string();
            let mut sandbox = labelled(
                sample(&format!("owner-{}", task % 5), at(offset)),
                &[("task", &task_label)],
            );
            sandbox.status = Status::Pending;
            sandbox.idempotency_key = Some(format!("key-{task}"));
            store.insert(&sandbox).await?;
            sandbox.status = Status::Creating;
            store.update(&sandbox).await?;
            sandbox.status = Status::Running;
            sandbox.container_id = Some(format!("container-{task}"));
            sandbox.spec.labels.insert("phase".into(), "running".into());
            store.update(&sandbox).await?;
            if task % 2 == 0 {
                sandbox.end(Status::Terminated, "deleted", at_secs(10));
                store.update(&sandbox).await?;
            }
            Ok::<Sandbox, StoreError>(sandbox)
        }));
    }
    let mut readers = Vec::new();
    for _ in 0..4 {
        let store = Arc::clone(&store);
        readers.push(tokio::spawn(async move {
            for _ in 0..20 {
                store.list(&SandboxFilter::default(), None, 10).await?;
                store.list_live().await?;
            }
            Ok::<(), StoreError>(())
        }));
    }

    let mut written = Vec::new();
    for (task, writer) in writers.into_iter().enumerate() {
        match writer.await.expect("writer task") {
            Ok(sandbox) => written.push(sandbox),
            Err(error) => panic!("writer {task} failed: {error}"),
        }
    }
    for reader in readers {
        reader.await.expect("reader task").expect("concurrent reads succeed");
    }

    for sandbox in &written {
        assert_eq!(store.get(&sandbox.id).await.expect("get").as_ref(), Some(sandbox));
    }
    let everything = list_all_pages(
        &*store,
        &SandboxFilter {
            include_ended: true,
            ..SandboxFilter::default()
        },
        7,
    )
    .await;
    assert_eq!(ids(&everything), ids(&in_list_order(written.clone())));
    let live = store.list_live().await.expect("list_live");
    assert_eq!(live.len(), TASKS / 2);
    assert!(live.iter().all(|s| s.status == Status::Running));
    let running = store
        .list(&label_filter(&[("phase", "running")]), None, 100)
        .await
        .expect("list");
    assert_eq!(running.items.len(), TASKS, "every task's label rewrite landed");
}

/// Racing inserts that share an owner and idempotency key: exactly one wins, the rest are told
/// the key is taken.
pub async fn concurrent_inserts_admit_one_per_idempotency_key(store: Arc<dyn Store>) {
    let mut racers = Vec::new();
    for task in 0..20_i64 {
        let store = Arc::clone(&store);
        racers.push(tokio::spawn(async move {
            let mut sandbox = sample("alice", at(task));
            sandbox.idempotency_key = Some("same".into());
            store.insert(&sandbox).await.map(|()| sandbox)
        }));
    }
    let mut winners = Vec::new();
    for racer in racers {
        match racer.await.expect("racer task") {
            Ok(sandbox) => winners.push(sandbox),
            Err(StoreError::DuplicateIdempotencyKey { owner, key }) => {
                assert_eq!((owner.as_str(), key.as_str()), ("alice", "same"));
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one insert wins");
    assert_eq!(
        store.find_by_idempotency_key("alice", "same").await.expect("find"),
        winners.pop()
    );
}

pub async fn ping_answers(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");
}

/// The records `store` says were written at or after `since`, sorted by id for comparison.
async fn updated_since_by_id(store: &dyn Store, since: DateTime<Utc>) -> Vec<Sandbox> {
    let mut records = store.updated_since(since).await.expect("updated_since");
    records.sort_by(|a, b| a.id.cmp(&b.id));
    records
}

fn sorted_by_id(records: &[&Sandbox]) -> Vec<Sandbox> {
    let mut records: Vec<Sandbox> = records.iter().map(|s| (*s).clone()).collect();
    records.sort_by(|a, b| a.id.cmp(&b.id));
    records
}

/// `updated_since` answers by each record's own `updated_at`, bound included, to the
/// nanosecond: inserted and updated records, ended ones too; an update moving `updated_at`
/// back moves the record out; purged records are gone.
pub async fn updated_since_returns_records_written_at_or_after_the_instant(store: Arc<dyn Store>) {
    assert!(updated_since_by_id(&*store, at(0)).await.is_empty());
    let stamped = |mut sandbox: Sandbox, updated_at: DateTime<Utc>| {
        sandbox.updated_at = updated_at;
        sandbox
    };
    let old = stamped(sample("alice", at_secs(0)), at_secs(10));
    let middle = stamped(labelled(sample("bob", at_secs(1)), &[("team", "red")]), at_secs(20));
    let ended = stamped(in_status(sample("alice", at_secs(2)), Status::Terminated), at_secs(30));
    insert_all(&*store, &[old.clone(), middle.clone(), ended.clone()]).await;

    assert_eq!(
        updated_since_by_id(&*store, at_secs(0)).await,
        sorted_by_id(&[&old, &middle, &ended])
    );
    assert_eq!(
        updated_since_by_id(&*store, at_secs(20)).await,
        sorted_by_id(&[&middle, &ended]),
        "the bound is included"
    );
    assert_eq!(
        updated_since_by_id(&*store, at_secs(20) + chrono::Duration::nanoseconds(1)).await,
        sorted_by_id(&[&ended]),
        "one nanosecond later excludes it"
    );
    assert!(updated_since_by_id(&*store, at_secs(31)).await.is_empty());

    // An update is found by its new `updated_at`, whole.
    let mut touched = old.clone();
    touched.status = Status::Paused;
    touched.updated_at = at_secs(40);
    store.update(&touched).await.expect("update");
    assert_eq!(updated_since_by_id(&*store, at_secs(35)).await, vec![touched.clone()]);
    // The record's own time counts, not when the write happened.
    let mut backdated = middle.clone();
    backdated.updated_at = at_secs(5);
    store.update(&backdated).await.expect("update");
    assert_eq!(
        updated_since_by_id(&*store, at_secs(20)).await,
        sorted_by_id(&[&ended, &touched])
    );

    assert_eq!(store.purge_ended_before(at_secs(1_000)).await.expect("purge"), 1);
    assert_eq!(
        updated_since_by_id(&*store, at_secs(0)).await,
        sorted_by_id(&[&touched, &backdated])
    );
}

/// `describe` names the backend first and never carries a password.
pub async fn describe_names_the_backend(store: Arc<dyn Store>) {
    let description = store.describe();
    let backend = description.split_whitespace().next().unwrap_or_default();
    assert!(
        matches!(backend, "sqlite" | "postgres"),
        "unknown backend in {description:?}"
    );
    assert!(description.len() > backend.len() + 1, "no location in {description:?}");
    assert_eq!(store.is_shared(), backend == "postgres", "{description}");
}

/// Tries to lead `cluster` every 100 ms for up to `patience`.
async fn lead_within(store: &dyn Store, cluster: &str, patience: Duration) -> Option<Lease> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if let Some(lease) = store.try_lead(cluster).await.expect("try_lead") {
            return Some(lease);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One leader per cluster among every handle on the database, the leader's own included;
/// clusters do not conflict; a held lease is not reported lost.
pub async fn leadership_is_exclusive_per_cluster(store: Arc<dyn Store>, other: Arc<dyn Store>) {
    let mut lease = store
        .try_lead("alpha")
        .await
        .expect("try_lead")
        .expect("a fresh store leads");
    assert!(
        other.try_lead("alpha").await.expect("try_lead").is_none(),
        "another handle"
    );
    assert!(
        store.try_lead("alpha").await.expect("try_lead").is_none(),
        "the same handle again"
    );

    let beta = other
        .try_lead("beta")
        .await
        .expect("try_lead")
        .expect("another cluster is free");
    assert!(store.try_lead("beta").await.expect("try_lead").is_none());
    for cluster in ["alpha/", "Alpha", "alpha beta", ""] {
        let lease = other.try_lead(cluster).await.expect("try_lead");
        assert!(lease.is_some(), "cluster {cluster:?} is not alpha's");
    }

    // Held leases are kept, and not reported lost, through a few seconds of keeping.
    assert!(
        tokio::time::timeout(Duration::from_millis(2_500), lease.lost())
            .await
            .is_err(),
        "a held lease is not lost"
    );
    assert!(other.try_lead("alpha").await.expect("try_lead").is_none());
    drop(beta);
}

/// Dropping a lease lets another handle lead within a few seconds, and leadership can pass
/// back and forth.
pub async fn a_dropped_lease_frees_leadership(store: Arc<dyn Store>, other: Arc<dyn Store>) {
    let patience = Duration::from_secs(5);
    let first = store.try_lead("main").await.expect("try_lead").expect("leads");
    assert!(other.try_lead("main").await.expect("try_lead").is_none());
    drop(first);
    let second = lead_within(&*other, "main", patience)
        .await
        .expect("the other handle takes over");
    assert!(store.try_lead("main").await.expect("try_lead").is_none());
    drop(second);
    let third = lead_within(&*store, "main", patience).await;
    assert!(third.is_some(), "leadership comes back");
}

/// Two handles on one database are one store: each sees the other's writes at once.
pub async fn handles_on_one_database_see_each_others_writes(store: Arc<dyn Store>, other: Arc<dyn Store>) {
    let mut sandbox = labelled(sample("alice", at(0)), &[("team", "red")]);
    sandbox.idempotency_key = Some("k".into());
    store.insert(&sandbox).await.expect("insert");
    assert_eq!(other.get(&sandbox.id).await.expect("get"), Some(sandbox.clone()));
    match other.insert(&sandbox).await {
        Err(StoreError::AlreadyExists(id)) => assert_eq!(id, sandbox.id),
        result => panic!("expected AlreadyExists, got {result:?}"),
    }
    sandbox.status = Status::Paused;
    sandbox.updated_at = at_secs(9);
    other.update(&sandbox).await.expect("update through the other handle");
    assert_eq!(store.get(&sandbox.id).await.expect("get"), Some(sandbox.clone()));
    assert_eq!(
        store.updated_since(at_secs(9)).await.expect("updated_since"),
        vec![sandbox]
    );
}

/// Insert then get returns the identical template: every field, sub-second times, the pool
/// and the error, set and unset; list returns the same records.
pub async fn template_round_trip_preserves_every_field(store: Arc<dyn Store>) {
    let full = fully_populated_template();
    let minimal = sample_template("minimal", "latest", at(5));
    store.insert_template(&full).await.expect("insert full template");
    store.insert_template(&minimal).await.expect("insert minimal template");

    let read = store
        .get_template(&full.name, &full.tag)
        .await
        .expect("get_template")
        .expect("full template exists");
    assert_eq!(read, full);
    assert_eq!(
        read.updated_at.timestamp_subsec_nanos(),
        123_456_796,
        "nanoseconds survive"
    );
    assert_eq!(
        store.get_template("minimal", "latest").await.expect("get_template"),
        Some(minimal.clone())
    );
    assert_eq!(
        store.get_template("minimal", "other").await.expect("get_template"),
        None
    );
    assert_eq!(
        store.get_template("unknown", "latest").await.expect("get_template"),
        None
    );
    assert_eq!(
        store.list_templates().await.expect("list_templates"),
        vec![minimal, full]
    );
}

/// A second insert of a (name, tag) fails and keeps the first; another tag of the same name,
/// or the same tag of another name, is a different template.
pub async fn insert_of_existing_template_is_template_exists(store: Arc<dyn Store>) {
    let first = sample_template("py", "3.12", at(0));
    store.insert_template(&first).await.expect("insert");
    let mut clash = sample_template("py", "3.12", at(9));
    clash.error = Some("a different record".into());
    for attempt in [&first, &clash] {
        match store.insert_template(attempt).await {
            Err(StoreError::TemplateExists { name, tag }) => assert_eq!((name.as_str(), tag.as_str()), ("py", "3.12")),
            other => panic!("expected TemplateExists, got {other:?}"),
        }
    }
    assert_eq!(
        store.get_template("py", "3.12").await.expect("get_template"),
        Some(first.clone())
    );
    let other_tag = sample_template("py", "3.13", at(1));
    store.insert_template(&other_tag).await.expect("same name, other tag");
    let other_name = sample_template("ruby", "3.12", at(2));
    store.insert_template(&other_name).await.expect("same tag, other name");
    assert_eq!(
        store.list_templates().await.expect("list_templates"),
        vec![first, other_tag, other_name]
    );
}

/// An update replaces every field of the template it names; updating one that does not exist
/// fails and creates nothing.
pub async fn update_template_replaces_it_whole_and_a_missing_one_is_not_found(store: Arc<dyn Store>) {
    let mut template = sample_template("py", "latest", at(0));
    store.insert_template(&template).await.expect("insert");
    template.spec = fully_populated().spec;
    template.pool = Some(PoolSpec {
        min_ready: 2,
        max_idle_age: Duration::from_secs(60),
    });
    template.error = Some("image missing".into());
    template.updated_at = at_secs(5);
    store.update_template(&template).await.expect("update");
    assert_eq!(
        store.get_template("py", "latest").await.expect("get_template"),
        Some(template.clone())
    );
    // And back: optional fields can be cleared.
    template.pool = None;
    template.error = None;
    template.updated_at = at_secs(6);
    store.update_template(&template).await.expect("update");
    assert_eq!(
        store.get_template("py", "latest").await.expect("get_template"),
        Some(template.clone())
    );

    let missing = sample_template("py", "other", at(0));
    match store.update_template(&missing).await {
        Err(StoreError::TemplateNotFound { name, tag }) => assert_eq!((name.as_str(), tag.as_str()), ("py", "other")),
        other => panic!("expected TemplateNotFound, got {other:?}"),
    }
    assert_eq!(store.get_template("py", "other").await.expect("get_template"), None);
    assert_eq!(store.list_templates().await.expect("list_templates"), vec![template]);
}

/// Templates list by (name, tag), comparing bytes: `10` before `2`, `Latest` before `latest`,
/// whatever the database's locale.
pub async fn list_templates_orders_by_name_then_tag(store: Arc<dyn Store>) {
    assert!(store.list_templates().await.expect("list_templates").is_empty());
    let keys = [
        ("b", "1"),
        ("a", "2"),
        ("a-b", "x"),
        ("a", "10"),
        ("ab", "latest"),
        ("a", "latest"),
        ("a", "Latest"),
        ("a", "_"),
    ];
    let templates: Vec<Template> = keys
        .iter()
        .zip(0_i64..)
        .map(|((name, tag), offset)| sample_template(name, tag, at_secs(offset)))
        .collect();
    for template in &templates {
        store.insert_template(template).await.expect("insert");
    }
    let mut expected = templates;
    expected.sort_by(|a, b| (&a.name, &a.tag).cmp(&(&b.name, &b.tag)));
    let listed = store.list_templates().await.expect("list_templates");
    let order = |list: &[Template]| -> Vec<String> { list.iter().map(|t| format!("{}:{}", t.name, t.tag)).collect() };
    assert_eq!(order(&listed), order(&expected));
    assert_eq!(listed, expected);
}

/// Delete answers whether the template existed, touches no other, and frees its (name, tag).
pub async fn delete_template_reports_whether_it_existed(store: Arc<dyn Store>) {
    let latest = sample_template("py", "latest", at(0));
    let pinned = sample_template("py", "3.12", at(1));
    store.insert_template(&latest).await.expect("insert");
    store.insert_template(&pinned).await.expect("insert");

    assert!(store.delete_template("py", "latest").await.expect("delete"));
    assert!(!store.delete_template("py", "latest").await.expect("delete again"));
    assert!(
        !store
            .delete_template("unknown", "latest")
            .await
            .expect("delete unknown")
    );
    assert_eq!(store.get_template("py", "latest").await.expect("get_template"), None);
    assert_eq!(
        store.list_templates().await.expect("list_templates"),
        vec![pinned.clone()]
    );
    store
        .insert_template(&latest)
        .await
        .expect("a deleted name:tag is free");
    assert_eq!(
        store.list_templates().await.expect("list_templates"),
        vec![pinned, latest]
    );
}

/// `pooled` picks the records waiting in a pool (whatever their status) or the others,
/// records made from a template but claimed included among the others.
pub async fn list_filters_by_pooled(store: Arc<dyn Store>) {
    let waiting = pooled(sample("alice", at(0)), "py:latest");
    let waiting_creating = in_status(pooled(sample("alice", at(1)), "ruby:3"), Status::Creating);
    let plain = sample("alice", at(2));
    let mut claimed = sample("bob", at(3));
    claimed.template = Some("py:latest".into());
    let waiting_ended = in_status(pooled(sample("bob", at(4)), "py:latest"), Status::Failed);
    insert_all(
        &*store,
        &[
            waiting.clone(),
            waiting_creating.clone(),
            plain.clone(),
            claimed.clone(),
            waiting_ended.clone(),
        ],
    )
    .await;
    let list = |pooled: Option<bool>, include_ended: bool| {
        let store = Arc::clone(&store);
        async move {
            let filter = SandboxFilter {
                pooled,
                include_ended,
                ..SandboxFilter::default()
            };
            ids(&store.list(&filter, None, 100).await.expect("list").items)
        }
    };
    assert_eq!(
        list(Some(true), false).await,
        ids(&[waiting.clone(), waiting_creating.clone()])
    );
    assert_eq!(
        list(Some(true), true).await,
        ids(&[waiting.clone(), waiting_creating.clone(), waiting_ended.clone()])
    );
    assert_eq!(list(Some(false), true).await, ids(&[plain.clone(), claimed.clone()]));
    assert_eq!(
        list(None, true).await,
        ids(&[waiting, waiting_creating, plain, claimed, waiting_ended])
    );
}

/// What a claim in these tests makes of a pooled record: out of the pool, owned by `owner`,
/// labelled `claimed=<owner>` instead of its pool labels, updated at `at_secs(100)`.
fn claim_for(owner: &str) -> impl Fn(Sandbox) -> Sandbox + Send + Sync + 'static {
    let owner = owner.to_owned();
    move |mut sandbox: Sandbox| {
        sandbox.pool = None;
        sandbox.owner = owner.clone();
        sandbox.spec.labels = BTreeMap::from([("claimed".to_owned(), owner.clone())]);
        sandbox.updated_at = at_secs(100);
        sandbox
    }
}

/// A claim the closure must never see: there is nothing to claim.
fn no_claim(_: Sandbox) -> Sandbox {
    panic!("claimed from a pool that has nothing to claim")
}

/// Nothing to claim: an empty store, an unknown pool, a pool named like another's prefix.
pub async fn claim_from_an_empty_or_unknown_pool_is_none(store: Arc<dyn Store>) {
    assert_eq!(store.claim_pooled("py:latest", &no_claim).await.expect("claim"), None);
    let waiting = pooled(sample("pool", at(0)), "py:latest");
    let plain = sample("alice", at(1));
    insert_all(&*store, &[waiting.clone(), plain.clone()]).await;
    for pool in ["ruby:latest", "py", "py:", "", "PY:LATEST"] {
        assert_eq!(
            store.claim_pooled(pool, &no_claim).await.expect("claim"),
            None,
            "{pool:?}"
        );
    }
    assert_eq!(store.get(&waiting.id).await.expect("get"), Some(waiting));
    assert_eq!(store.get(&plain.id).await.expect("get"), Some(plain));
}

/// Claims take the pool's `Running` records oldest first (ties by id), write what the closure
/// made of each (labels included) and return it; records of the pool in any other status and
/// records of other pools are never taken.
pub async fn claim_takes_the_oldest_running_pooled_record(store: Arc<dyn Store>) {
    let pool = "py:latest";
    let pool_labels: Labels<'_> = &[("pool", "py")];
    let pending = in_status(pooled(sample("pool", at_secs(0)), pool), Status::Pending);
    let creating = in_status(pooled(sample("pool", at_secs(1)), pool), Status::Creating);
    let paused = in_status(pooled(sample("pool", at_secs(2)), pool), Status::Paused);
    let ended = in_status(pooled(sample("pool", at_secs(3)), pool), Status::Terminated);
    let oldest = labelled(pooled(sample("pool", at_secs(5)), pool), pool_labels);
    let tied = labelled(pooled(sample("pool", at_secs(5)), pool), pool_labels);
    let newest = labelled(pooled(sample("pool", at_secs(6)), pool), pool_labels);
    let other_pool = pooled(sample("pool", at_secs(-2)), "py:3.12");
    let unpooled = sample("pool", at_secs(-1));
    let untouched = [pending, creating, paused, ended, other_pool, unpooled];
    // Inserted newest first, so the order cannot come from insertion.
    insert_all(&*store, &[newest.clone(), tied.clone(), oldest.clone()]).await;
    insert_all(&*store, &untouched).await;
    let claimable = in_list_order(vec![oldest, tied, newest]);

    for (waiting, owner) in claimable.iter().zip(["alice", "bob", "carol"]) {
        let claimed = store
            .claim_pooled(pool, &claim_for(owner))
            .await
            .expect("claim")
            .expect("the pool has a running sandbox");
        assert_eq!(claimed, claim_for(owner)(waiting.clone()), "the oldest left is taken");
        assert_eq!(claimed.pool, None);
        assert_eq!(store.get(&claimed.id).await.expect("get"), Some(claimed.clone()));
        let by_new_label = store
            .list(&label_filter(&[("claimed", owner)]), None, 10)
            .await
            .expect("list");
        assert_eq!(by_new_label.items, vec![claimed.clone()], "labels were rewritten");
    }
    let by_pool_label = store.list(&label_filter(pool_labels), None, 10).await.expect("list");
    assert!(by_pool_label.items.is_empty(), "old labels are gone: {by_pool_label:?}");
    assert_eq!(store.claim_pooled(pool, &no_claim).await.expect("claim"), None);
    for sandbox in &untouched {
        assert_eq!(store.get(&sandbox.id).await.expect("get").as_ref(), Some(sandbox));
    }
    let still_waiting = store
        .list(
            &SandboxFilter {
                pooled: Some(true),
                include_ended: true,
                ..SandboxFilter::default()
            },
            None,
            100,
        )
        .await
        .expect("list");
    assert_eq!(still_waiting.items.len(), 5, "only the claimed left the pool");
}

/// A closure that keeps the record in the pool or changes its id fails the claim with `Other`
/// and writes nothing: the record still waits, labels and all, and a proper claim takes it.
pub async fn a_refused_claim_writes_nothing(store: Arc<dyn Store>) {
    let pool = "py:latest";
    let waiting = labelled(pooled(sample("pool", at(0)), pool), &[("pool", "py")]);
    store.insert(&waiting).await.expect("insert");

    let stays_pooled = |mut sandbox: Sandbox| {
        sandbox.owner = "alice".into();
        sandbox.spec.labels.clear();
        sandbox
    };
    let new_id = SandboxId::generate();
    let changes_id = {
        let new_id = new_id.clone();
        move |mut sandbox: Sandbox| {
            sandbox.id = new_id.clone();
            claim_for("alice")(sandbox)
        }
    };
    match store.claim_pooled(pool, &stays_pooled).await {
        Err(StoreError::Other(_)) => {}
        other => panic!("expected Other for a record left in the pool, got {other:?}"),
    }
    match store.claim_pooled(pool, &changes_id).await {
        Err(StoreError::Other(_)) => {}
        other => panic!("expected Other for a record with another id, got {other:?}"),
    }
    assert_eq!(store.get(&waiting.id).await.expect("get"), Some(waiting.clone()));
    assert_eq!(store.get(&new_id).await.expect("get"), None);
    let by_label = store
        .list(&label_filter(&[("pool", "py")]), None, 10)
        .await
        .expect("list");
    assert_eq!(by_label.items, vec![waiting.clone()]);

    let claimed = store
        .claim_pooled(pool, &claim_for("bob"))
        .await
        .expect("claim")
        .expect("still claimable");
    assert_eq!(claimed, claim_for("bob")(waiting));
}

/// 50 claims race for a pool of 8 through two handles (two processes): exactly 8 succeed,
/// each with a different sandbox, each written as its claimer made it; the pool's records that
/// are not running stay.
pub async fn concurrent_claims_through_two_handles_hand_out_each_sandbox_once(
    store: Arc<dyn Store>,
    other: Arc<dyn Store>,
) {
    const POOL_SIZE: i64 = 8;
    const CLAIMERS: usize = 50;
    let pool = "py:latest";
    let waiting: Vec<Sandbox> = (0..POOL_SIZE)
        .map(|offset| labelled(pooled(sample("pool", at_secs(offset)), pool), &[("pool", "py")]))
        .collect();
    let starting: Vec<Sandbox> = (0..2)
        .map(|offset| in_status(pooled(sample("pool", at_secs(offset)), pool), Status::Creating))
        .collect();
    insert_all(&*store, &waiting).await;
    insert_all(&*other, &starting).await;

    let mut claimers = Vec::new();
    for task in 0..CLAIMERS {
        let handle = Arc::clone(if task % 2 == 0 { &store } else { &other });
        claimers.push(tokio::spawn(async move {
            let owner = format!("claimer-{task}");
            handle.claim_pooled(pool, &claim_for(&owner)).await
        }));
    }
    let mut winners = Vec::new();
    for (task, claimer) in claimers.into_iter().enumerate() {
        match claimer.await.expect("claimer task") {
            Ok(Some(claimed)) => winners.push(claimed),
            Ok(None) => {}
            Err(error) => panic!("claimer {task} failed: {error}"),
        }
    }
    assert_eq!(winners.len(), waiting.len(), "exactly the pool's size succeed");
    let mut claimed_ids = ids(&winners);
    claimed_ids.sort();
    claimed_ids.dedup();
    let mut waiting_ids = ids(&waiting);
    waiting_ids.sort();
    assert_eq!(claimed_ids, waiting_ids, "each sandbox handed out once");
    for claimed in &winners {
        assert_eq!(store.get(&claimed.id).await.expect("get").as_ref(), Some(claimed));
        assert_eq!(other.get(&claimed.id).await.expect("get").as_ref(), Some(claimed));
    }
    assert_eq!(store.claim_pooled(pool, &no_claim).await.expect("claim"), None);
    assert_eq!(other.claim_pooled(pool, &no_claim).await.expect("claim"), None);
    let still_waiting = store
        .list(
            &SandboxFilter {
                pooled: Some(true),
                ..SandboxFilter::default()
            },
            None,
            100,
        )
        .await
        .expect("list");
    assert_eq!(ids(&still_waiting.items), ids(&in_list_order(starting)));
}

/// A minimal env-service `id`, created at `created_at`, at revision 1.
pub fn sample_service(id: &str, created_at: DateTime<Utc>) -> EnvService {
    EnvService {
        id: id.to_owned(),
        env_name: "swe".into(),
        env_version: "1.0".into(),
        service_name: String::new(),
        replicas: 1,
        image: None,
        environment_variables: BTreeMap::new(),
        owner: "anonymous".into(),
        port: 8081,
        cpu_millis: None,
        memory_bytes: None,
        accepted: BTreeMap::new(),
        pvc_name: String::new(),
        status: ServiceStatus::Pending,
        status_reason: None,
        listen_port: None,
        generation: 1,
        revision: 1,
        created_at,
        updated_at: created_at,
    }
}

/// An env-service with every optional field set.
pub fn fully_populated_service() -> EnvService {
    EnvService {
        service_name: "web ✓".into(),
        replicas: 3,
        image: Some("registry.example/swe:2".into()),
        environment_variables: BTreeMap::from([("A".into(), "1".into()), ("B".into(), "two words".into())]),
        owner: "bob@example.com".into(),
        port: 9000,
        cpu_millis: Some(1500),
        memory_bytes: Some(3 << 30),
        accepted: BTreeMap::from([("cpu_request".into(), "500m".into())]),
        pvc_name: "data".into(),
        status: ServiceStatus::Updating,
        status_reason: Some("scaling 1 → 3".into()),
        listen_port: Some(41_234),
        generation: 7,
        revision: 1,
        updated_at: at(7),
        ..sample_service("00000000000000ff", at(3))
    }
}

/// Every field of a service survives a write and a read, nanoseconds included.
pub async fn service_round_trip_preserves_every_field(store: Arc<dyn Store>) {
    let full = fully_populated_service();
    let minimal = sample_service("0000000000000001", at(5));
    store.insert_service(&full).await.expect("insert full service");
    store.insert_service(&minimal).await.expect("insert minimal service");
    assert_eq!(
        store.get_service(&full.id).await.expect("get_service"),
        Some(full.clone())
    );
    assert_eq!(
        store.get_service(&minimal.id).await.expect("get_service"),
        Some(minimal)
    );
    assert_eq!(store.get_service("0000000000000002").await.expect("get_service"), None);
}

/// A second insert of an id fails and keeps the first.
pub async fn insert_of_an_existing_service_fails_and_keeps_the_first(store: Arc<dyn Store>) {
    let first = sample_service("00000000000000aa", at(0));
    store.insert_service(&first).await.expect("insert");
    let mut clash = first.clone();
    clash.replicas = 9;
    assert!(matches!(store.insert_service(&clash).await, Err(StoreError::Other(_))));
    assert_eq!(store.get_service(&first.id).await.expect("get_service"), Some(first));
}

/// An update replaces the record whole when the stored one is at the revision before its own;
/// a stale writer (or an unknown id) writes nothing and learns it.
pub async fn update_service_replaces_only_the_revision_it_read(store: Arc<dyn Store>) {
    let stored = sample_service("00000000000000bb", at(0));
    store.insert_service(&stored).await.expect("insert");

    let mut scaled = stored.clone();
    scaled.replicas = 3;
    scaled.revision = 2;
    scaled.updated_at = at(10);
    assert!(store.update_service(&scaled).await.expect("update"));
    assert_eq!(
        store.get_service(&stored.id).await.expect("get_service"),
        Some(scaled.clone())
    );

    // A writer that read revision 1 lost the race: nothing changes.
    let mut stale = stored.clone();
    stale.status = ServiceStatus::Running;
    stale.revision = 2;
    assert!(!store.update_service(&stale).await.expect("stale update"));
    assert_eq!(store.get_service(&stored.id).await.expect("get_service"), Some(scaled));

    let mut unknown = sample_service("00000000000000cc", at(0));
    unknown.revision = 2;
    assert!(!store.update_service(&unknown).await.expect("update unknown"));
    assert_eq!(store.get_service(&unknown.id).await.expect("get_service"), None);
}

/// Services list in creation order; a delete says whether there was one to delete.
pub async fn list_services_orders_by_creation_and_delete_reports_whether_it_existed(store: Arc<dyn Store>) {
    let later = sample_service("0000000000000001", at(20));
    let earlier = sample_service("00000000000000ff", at(10));
    assert_eq!(store.list_services().await.expect("list_services"), vec![]);
    store.insert_service(&later).await.expect("insert");
    store.insert_service(&earlier).await.expect("insert");
    assert_eq!(
        store.list_services().await.expect("list_services"),
        vec![earlier.clone(), later.clone()]
    );
    assert!(store.delete_service(&earlier.id).await.expect("delete"));
    assert!(!store.delete_service(&earlier.id).await.expect("delete again"));
    assert_eq!(store.list_services().await.expect("list_services"), vec![later]);
}
