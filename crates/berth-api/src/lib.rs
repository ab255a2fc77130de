//! berth's native v1 wire types: sandbox objects, requests, lists and RFC 9457 problem details,
//! each with its OpenAPI schema. Shared by the server, the client and the tests.

use std::collections::BTreeMap;

use berth_core::Sandbox;
use berth_core::units::{format_cpu, format_memory};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use berth_core::hardening::Hardening;
pub use berth_core::network::{Egress, NetworkPolicy, NetworkRequest};
pub use berth_core::spec::{FieldError, NumberOrString, SandboxRequest};
pub use berth_core::template::{PoolRequest, TemplateRequest};

pub mod aenv;
pub mod identity;
pub mod problem;
pub mod snapshots;
pub mod templates;
pub mod volumes;
pub mod work;

pub use problem::{Problem, ProblemKind};
pub use snapshots::{ForkRequest, ForkResponse, SnapshotList, SnapshotRequest, SnapshotView};
pub use templates::{BuildDone, BuildLine, PoolList, PoolView, TemplateList, TemplateView};
pub use volumes::{VolumeList, VolumeRequest, VolumeView};
pub use work::{
    DirListing, ExecExit, ExecRequest, ExecResult, FileStat, ProcessOutput, ProcessView, ResizeMessage, SignalRequest,
    StatsView, TerminalSize,
};

/// The media type of error bodies.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";
/// Largest request body the API reads.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The header that makes a retried create return the first sandbox instead of a second one.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// Resource limits as clients read them back: CPUs (`"0.5"`) and memory (`"512Mi"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResourcesView {
    pub cpu: String,
    pub memory: String,
    /// The writable layer's size limit; absent when unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PortView {
    pub container_port: u16,
    pub host_ip: String,
    pub host_port: u16,
}

/// A sandbox as the API reports it. Times are RFC 3339 in UTC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SandboxView {
    pub id: String,
    /// One of Pending, Creating, Running, Paused, Stopping, Terminated, Failed.
    pub status: String,
    /// Why the sandbox is in its status: `expired`, `deleted`, `exited`, `oom_killed`,
    /// `container_lost`, `image_not_found`, `create_failed`, `create_interrupted`.
    pub status_reason: Option<String>,
    /// What went wrong, in words: the engine's error for `create_failed` and
    /// `image_not_found`, the last probe failure for `readiness_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub image: String,
    pub command: Option<Vec<String>>,
    pub labels: BTreeMap<String, String>,
    pub owner: String,
    pub resources: ResourcesView,
    pub ports: Vec<PortView>,
    pub ip: Option<String>,
    pub engine: String,
    pub container_id: Option<String>,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[serde(with = "rfc3339_option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: DateTime<Utc>,
    #[serde(with = "rfc3339_option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<DateTime<Utc>>,
    /// The deadline no renewal can pass: `max_lifetime` after its creation (or claim from a
    /// pool); absent: no limit.
    #[serde(default, with = "rfc3339_option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub lifetime_ends_at: Option<DateTime<Utc>>,
    /// Paused (status reason `idle`) after this long without a request that needs it, and woken
    /// by the next: `"5m"`; absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    /// Stopped (status `Hibernated`, reason `idle`; its files kept, its memory freed) after
    /// sleeping this long, and started again by the next request: `"1h"`; absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hibernate_after: Option<String>,
    /// Whether time asleep counts against the TTL; false (omitted): the deadline moves on by
    /// the time slept when it wakes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ttl_counts_idle: bool,
    /// Since when it sleeps for being idle (or was last renewed asleep); absent while awake.
    #[serde(default, with = "rfc3339_option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub asleep_since: Option<DateTime<Utc>>,
    /// The template it was made from (`name:tag`), if any.
    #[serde(default)]
    pub template: Option<String>,
    /// The OCI runtime it runs under; absent: the engine's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// Confinement it asked for beyond berth's baseline; absent: none.
    #[serde(default, skip_serializing_if = "Hardening::is_baseline")]
    pub hardening: Hardening,
    /// The egress policy in force.
    #[serde(default)]
    pub network: NetworkPolicy,
    /// Whether a failed main process is restarted: `{"on_failure": N}`; absent: never.
    #[serde(default, skip_serializing_if = "berth_core::Restart::is_never")]
    pub restart: berth_core::Restart,
    /// How many times its main process was restarted (then `exit_code`, `oom_killed` and
    /// `status_message` tell of the last exit).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restarts: u32,
    /// The owner's volumes mounted into it; absent: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<berth_core::VolumeMount>,
}

fn is_zero(count: &u32) -> bool {
    *count == 0
}

impl From<&Sandbox> for SandboxView {
    fn from(sandbox: &Sandbox) -> Self {
        SandboxView {
            id: sandbox.id.to_string(),
            status: sandbox.status.to_string(),
            status_reason: sandbox.status_reason.as_ref().map(|reason| reason.to_string()),
            status_message: sandbox.status_message.clone(),
            exit_code: sandbox.exit_code,
            oom_killed: sandbox.oom_killed,
            image: sandbox.spec.image.clone(),
            command: sandbox.spec.command.clone(),
            labels: sandbox.spec.labels.clone(),
            owner: sandbox.owner.clone(),
            resources: ResourcesView {
                cpu: format_cpu(sandbox.spec.resources.cpu_millis),
                memory: format_memory(sandbox.spec.resources.memory_bytes),
                disk: sandbox.spec.resources.disk_bytes.map(format_memory),
            },
            ports: sandbox
                .ports
                .iter()
                .map(|port| PortView {
                    container_port: port.container_port,
                    host_ip: port.host_ip.clone(),
                    host_port: port.host_port,
                })
                .collect(),
            ip: sandbox.ip.clone(),
            engine: sandbox.engine.clone(),
            container_id: sandbox.container_id.clone(),
            created_at: sandbox.created_at,
            started_at: sandbox.started_at,
            expires_at: sandbox.expires_at,
            ended_at: sandbox.ended_at,
            lifetime_ends_at: sandbox.lifetime_ends_at(),
            idle_timeout: sandbox.spec.idle_timeout.map(berth_core::units::format_duration),
            hibernate_after: sandbox.spec.hibernate_after.map(berth_core::units::format_duration),
            ttl_counts_idle: sandbox.spec.ttl_counts_idle,
            asleep_since: sandbox.asleep_since,
            template: sandbox.template.clone(),
            runtime: sandbox.spec.runtime.clone(),
            hardening: sandbox.spec.hardening,
            network: sandbox.spec.network,
            restart: sandbox.spec.restart,
            restarts: sandbox.restarts,
            volumes: sandbox.spec.volumes.clone(),
        }
    }
}

/// The scheme the server answers on (`http`, or `https` with TLS), for the links it hands out;
/// put on every request by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServedScheme(pub &'static str);

/// One page of sandboxes in creation order; `next_cursor` fetches the next page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SandboxList {
    pub items: Vec<SandboxView>,
    pub next_cursor: Option<String>,
}

/// Body of `POST /v1/sandboxes/{id}/ttl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewTtlRequest {
    /// New time to live counted from now: `"30m"`, `"1h30m"` or integer seconds.
    pub ttl: NumberOrString,
}

/// One lifecycle event of `GET /v1/events` (the `data` of an SSE event, or one NDJSON line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SandboxEventView {
    /// Increases by one per event on the server process that sent it.
    pub id: u64,
    /// `sandbox.created`, `sandbox.claimed`, `sandbox.status`, `sandbox.paused`,
    /// `sandbox.resumed`, `sandbox.renewed`, `sandbox.network`, `sandbox.restarted`,
    /// `sandbox.snapshot`, `sandbox.deleted`, `sandbox.expired`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub time: DateTime<Utc>,
    pub sandbox_id: String,
    pub owner: String,
    pub labels: BTreeMap<String, String>,
    /// The status after the change.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: DateTime<Utc>,
    /// The snapshot taken, on a `sandbox.snapshot` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
}

/// Answer to a renew: the new deadline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RenewTtlResponse {
    pub id: String,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: DateTime<Utc>,
}

/// Answer of `/readyz`: each dependency's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    pub status: String,
    /// Dependency name (`store`, `engine`) → `ok` or the reason it is not.
    pub checks: BTreeMap<String, String>,
}

/// Answer of `/health`: the server's state for people and dashboards (probes use `/healthz`
/// and `/readyz`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` when every check passes, else `degraded`.
    pub status: String,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: DateTime<Utc>,
    /// berth's version.
    pub version: String,
    pub uptime_seconds: u64,
    /// Whether this process leads its deployment (runs the reconciler, expiries and pools);
    /// every process serves the API.
    #[serde(default)]
    pub leader: bool,
    /// Where the records live, without secrets: `sqlite /path/berth.db` or `postgres host:port/db`.
    #[serde(default)]
    pub store: String,
    /// `store` and `engines` (each engine by name) → `ok` or the reason it is not.
    pub checks: HealthChecks,
    /// How each engine (by name) can confine a sandbox; shown to an admin's key only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub confinement: BTreeMap<String, EngineConfinement>,
}

/// What an engine offers to confine sandboxes, as `/health` reports it to an admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EngineConfinement {
    /// The OCI runtimes a sandbox or template may name in `runtime`.
    pub runtimes: Vec<String>,
    /// The runtime of a sandbox that names none.
    pub default_runtime: String,
    /// Whether the engine maps container root to an unprivileged host user (`userns-remap`);
    /// without it, root in a sandbox is root on the host should it escape the runtime.
    pub user_namespaces_remapped: bool,
    /// Whether the engine applies its seccomp profile (berth never asks for `unconfined`).
    pub seccomp: bool,
    /// Why a sandbox may not ask for `disk` on this engine; absent when it may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_limit_unavailable: Option<String>,
    /// Whether the engine host's firewall keeps sandboxes on berth's networks from the host and
    /// from link-local and private ranges: `active`, `off`, or `unavailable: <why>`.
    #[serde(default)]
    pub host_guard: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthChecks {
    pub store: String,
    pub engines: BTreeMap<String, String>,
}

/// Formats a time as the API does: RFC 3339, UTC, `Z`, with the precision the value has.
pub fn format_time(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

pub(crate) mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_time(time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|time| time.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

pub(crate) mod rfc3339_option {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
        match time {
            Some(time) => serializer.serialize_some(&super::format_time(time)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| {
                DateTime::parse_from_rfc3339(&text)
                    .map(|time| time.with_timezone(&Utc))
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
    }
}
