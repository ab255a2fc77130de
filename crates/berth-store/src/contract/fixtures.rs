//! The contract suite's fixtures: fixed instants, sample and fully populated records,
//! templates and env-services, and the helpers the behaviour modules share.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_core::{
    EnvService, EnvServiceId, PoolSpec, PortBinding, Reason, Resources, Sandbox, SandboxId, SandboxSpec, ServiceStatus,
    Status, Template,
};
use chrono::{DateTime, Utc};

use crate::{Cursor, SandboxFilter, Store};

/// 2025-06-15T15:06:40.123456789Z: sub-second, so any precision loss shows.
pub(super) const BASE_NANOS: i64 = 1_750_000_000_123_456_789;

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
        restarts: 0,
        last_snapshot: None,
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
                disk_bytes: None,
            },
            ttl,
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
        asleep_since: None,
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
        snapshot: None,
        created_at,
        updated_at: created_at,
    }
}

/// A template with every optional field set: the spec of [`fully_populated`], a pool, an error,
/// an AEnvironment Env document, a snapshot.
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
        snapshot: Some("0123456789abcdef".into()),
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
        sandbox.status_reason = Some(Reason::Exited);
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
        status_reason: Some(Reason::OomKilled),
        status_message: Some("the engine said: \"no\" — ünïcödé".into()),
        exit_code: Some(-9),
        oom_killed: true,
        restarts: 2,
        last_snapshot: Some("fedcba9876543210".into()),
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
                disk_bytes: Some(10 << 30),
            },
            runtime: Some("runsc".into()),
            hardening: berth_core::Hardening {
                read_only_rootfs: true,
                drop_all_capabilities: true,
            },
            network: berth_core::NetworkPolicy {
                egress: berth_core::Egress::Deny,
            },
            ttl: Duration::from_millis(90_500),
            max_lifetime: Some(std::time::Duration::from_secs(7200)),
            idle_timeout: Some(std::time::Duration::from_secs(300)),
            hibernate_after: None,
            ttl_counts_idle: false,
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
            restart: berth_core::Restart::OnFailure(3),
            volumes: vec![
                berth_core::VolumeMount {
                    name: "OSS_data.v1".into(),
                    path: "/mnt/data set".into(),
                    read_only: true,
                },
                berth_core::VolumeMount {
                    name: "cache".into(),
                    path: "/cache".into(),
                    read_only: false,
                },
            ],
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
        asleep_since: None,
    }
}

/// Sorted the way every list answers: `(created_at, id)`.
pub fn in_list_order(mut sandboxes: Vec<Sandbox>) -> Vec<Sandbox> {
    sandboxes.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    sandboxes
}

/// Label pairs as tests write them.
pub(super) type Labels<'a> = &'a [(&'a str, &'a str)];

pub(super) fn ids(sandboxes: &[Sandbox]) -> Vec<SandboxId> {
    sandboxes.iter().map(|sandbox| sandbox.id.clone()).collect()
}

pub(super) async fn insert_all(store: &dyn Store, sandboxes: &[Sandbox]) {
    for sandbox in sandboxes {
        store.insert(sandbox).await.expect("insert");
    }
}

pub(super) fn label_filter(labels: &[(&str, &str)]) -> SandboxFilter {
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

/// The env-service id `text`, which the fixtures write well-formed.
pub fn service_id(text: &str) -> EnvServiceId {
    EnvServiceId::parse(text).expect("a fixture's env-service id is well-formed")
}

/// A minimal env-service `id`, created at `created_at`, at revision 1.
pub fn sample_service(id: &str, created_at: DateTime<Utc>) -> EnvService {
    EnvService {
        id: service_id(id),
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
