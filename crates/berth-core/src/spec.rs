//! What a client asks for ([`SandboxRequest`]), the server's defaults and maxima ([`SpecPolicy`]),
//! and the validated result ([`SandboxSpec`]) that every layer below the API works with.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

// Re-exported here too: other crates name them `berth_core::spec::…`.
pub use crate::field::{FieldError, NumberOrString, ValidationErrors};
use crate::hardening::{Hardening, check_runtime_name};
use crate::network::{Egress, NetworkPolicy, NetworkRequest};
use crate::readiness::{ReadinessProbe, ReadinessRequest};
use crate::{labels, units};

/// A sandbox as a client describes it: every field but `image` optional, values unparsed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SandboxRequest {
    /// Image reference, e.g. `busybox:latest`. Required.
    pub image: Option<String>,
    /// Argv to run instead of the image's default command.
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Absolute working directory inside the sandbox.
    pub workdir: Option<String>,
    /// `user`, `uid`, `user:group` or `uid:gid`.
    pub user: Option<String>,
    /// Kubernetes-syntax labels; the `berth.` prefix is reserved.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Container TCP ports to publish.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// CPUs: `2`, `0.5`, `"500m"` (half a CPU) or `"1C"`.
    pub cpu: Option<NumberOrString>,
    /// Memory: `"512Mi"`, `"1Gi"`, `"512M"`, `"256m"`, `"256mb"` (binary units) or bytes.
    pub memory: Option<NumberOrString>,
    /// Most the sandbox may write to its root filesystem, in the units of `memory` (`"10Gi"`);
    /// unlimited when omitted. Only where the engine's storage driver can enforce it: elsewhere a
    /// 422 that says why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<NumberOrString>,
    /// Time to live: `"90s"`, `"30m"`, `"1h30m"` or integer seconds.
    pub ttl: Option<NumberOrString>,
    /// The longest the sandbox may live from its creation (or its claim from a pool), renewals
    /// included: a renewal past it is refused. At most the server's `--max-lifetime`, which
    /// applies when this is omitted; no limit when neither is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lifetime: Option<NumberOrString>,
    /// Paused (frozen, memory kept) after this long with no exec, file, proxy, gateway or log
    /// request; the next such request wakes it. At least 1s; never paused when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<NumberOrString>,
    /// Stopped (its filesystem kept, its memory freed) once it has slept this long after its
    /// `idle_timeout`; the next request starts it again, its main process anew. Needs
    /// `idle_timeout`; at least 1s; never stopped for being idle when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hibernate_after: Option<NumberOrString>,
    /// Whether time asleep (paused or hibernated for being idle) counts against the TTL. By
    /// default it does not: the deadline moves on by the time slept when the sandbox wakes. The
    /// `max_lifetime` holds either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_counts_idle: Option<bool>,
    /// Who the sandbox belongs to; `anonymous` when omitted. Not part of the validated spec.
    pub owner: Option<String>,
    /// Create from this template (`name` or `name:tag`): its spec is the base, and the fields
    /// given here override it (`image` may then be omitted).
    pub template: Option<String>,
    /// A check that must pass before the sandbox counts as `Running`; a template's applies unless
    /// this sets another.
    pub readiness: Option<ReadinessRequest>,
    /// The engine's OCI runtime to run under: `runc` (the engine's usual default), `runsc`
    /// (gVisor), `crun`, or another the engine registers; the engine's default when omitted.
    pub runtime: Option<String>,
    /// Opt-in confinement beyond berth's baseline: a read-only root filesystem, no capabilities.
    pub hardening: Option<Hardening>,
    /// What the sandbox may reach beyond itself (`{"egress": "deny"}`); the server's default
    /// policy when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkRequest>,
    /// `"never"` (the default) or `{"on_failure": N}`: a main process that exits non-zero is
    /// restarted in the same container (filesystem kept), up to N times (1–100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>, example = json!({"on_failure": 3})))]
    pub restart: Option<serde_json::Value>,
    /// The caller's persistent volumes to mount (`POST /v1/volumes` makes them): they outlive
    /// the sandbox and are never another owner's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<crate::volume::VolumeMount>,
    /// Create from this snapshot (its id, `POST /v1/sandboxes/{id}/snapshots`): its filesystem
    /// and its sandbox's spec are the base, the fields given here override it (`image` must then
    /// be omitted). Not with `template`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

/// What happens when a sandbox's main process exits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Restart {
    /// The sandbox ends with the exit.
    #[default]
    Never,
    /// An exit with a non-zero code restarts it, at most this many times.
    OnFailure(u32),
}

impl Restart {
    pub const MAX_RETRIES: u32 = 100;

    pub fn is_never(&self) -> bool {
        *self == Restart::Never
    }

    /// `"never"` or `{"on_failure": N}` with N from 1 to [`Self::MAX_RETRIES`].
    pub fn from_request(value: &serde_json::Value) -> Result<Self, String> {
        let expected = "expected \"never\" or {\"on_failure\": N} with N from 1 to 100";
        match value {
            serde_json::Value::String(mode) if mode == "never" => Ok(Restart::Never),
            serde_json::Value::Object(fields) if fields.len() == 1 => match fields.get("on_failure") {
                Some(count) => match count.as_u64() {
                    Some(count @ 1..=100) => Ok(Restart::OnFailure(count as u32)),
                    _ => Err(format!(
                        "on_failure must be a number of restarts from 1 to 100, got {count}"
                    )),
                },
                None => Err(format!("{expected}, got {value}")),
            },
            other => Err(format!("{expected}, got {other}")),
        }
    }

    /// The request that validates back to this policy.
    pub fn to_request(self) -> serde_json::Value {
        match self {
            Restart::Never => serde_json::json!("never"),
            Restart::OnFailure(count) => serde_json::json!({ "on_failure": count }),
        }
    }
}

/// Resource limits, resolved to engine units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Thousandths of a CPU: 500 is half a CPU.
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub pids_limit: i64,
    /// The writable layer's size limit; `None`: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<u64>,
}

/// A validated sandbox spec: every value parsed, defaulted and within the server's maxima.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub image: String,
    pub command: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<u16>,
    pub resources: Resources,
    #[serde(with = "crate::units::duration_secs")]
    pub ttl: Duration,
    /// How long it may live from its creation (or claim), renewals included; `None`: no limit.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::units::optional_duration_secs"
    )]
    pub max_lifetime: Option<Duration>,
    /// Paused after this long without a request that needs it; `None`: never.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::units::optional_duration_secs"
    )]
    pub idle_timeout: Option<Duration>,
    /// Stopped, its filesystem kept, after sleeping this long; `None`: never.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::units::optional_duration_secs"
    )]
    pub hibernate_after: Option<Duration>,
    /// Whether time asleep counts against the TTL (records without the field: it does not).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ttl_counts_idle: bool,
    /// Must pass before the sandbox counts as `Running` (absent in records older than probes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<ReadinessProbe>,
    /// A compose stack: its main service is the sandbox's container (whose `image`, `command`
    /// and `env` the fields above repeat), the other services run beside it on the stack's
    /// private network. `None` for a single-container sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<crate::stack::StackPlan>,
    /// The OCI runtime asked for; `None`: the engine's default (and records older than the field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(default, skip_serializing_if = "Hardening::is_baseline")]
    pub hardening: Hardening,
    /// The egress policy in force; records without the field are open (`allow`).
    #[serde(default, skip_serializing_if = "NetworkPolicy::is_open")]
    pub network: NetworkPolicy,
    /// Whether a failed main process is restarted; records without the field never are.
    #[serde(default, skip_serializing_if = "Restart::is_never")]
    pub restart: Restart,
    /// The owner's volumes mounted into it; records without the field mount none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<crate::volume::VolumeMount>,
}

/// The server's defaults for omitted values and the maxima it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecPolicy {
    pub default_cpu_millis: u64,
    pub default_memory_bytes: u64,
    pub default_ttl: Duration,
    pub max_cpu_millis: u64,
    pub max_memory_bytes: u64,
    pub max_ttl: Duration,
    /// The longest any sandbox may live, renewals included (`--max-lifetime`); `None`: no limit.
    pub max_lifetime: Option<Duration>,
    pub pids_limit: i64,
    /// Most labels one sandbox may carry (each becomes an engine label).
    pub max_labels: usize,
    /// Most bytes the labels, env and command of one sandbox may hold together.
    pub max_spec_bytes: u64,
    /// The egress policy of a sandbox whose request names none.
    pub default_egress: Egress,
}

/// Default of [`SpecPolicy::max_labels`].
pub const DEFAULT_MAX_LABELS: usize = 64;
/// Default of [`SpecPolicy::max_spec_bytes`]: 256 KiB.
pub const DEFAULT_MAX_SPEC_BYTES: u64 = 256 * 1024;

impl Default for SpecPolicy {
    fn default() -> Self {
        SpecPolicy {
            default_cpu_millis: 1000,
            default_memory_bytes: 512 * units::MIB,
            default_ttl: Duration::from_secs(30 * 60),
            max_cpu_millis: 16_000,
            max_memory_bytes: 64 * units::GIB,
            max_ttl: Duration::from_secs(7 * 24 * 3600),
            max_lifetime: None,
            pids_limit: 1024,
            max_labels: DEFAULT_MAX_LABELS,
            max_spec_bytes: DEFAULT_MAX_SPEC_BYTES,
            default_egress: Egress::Allow,
        }
    }
}

impl SandboxRequest {
    /// Parses, defaults and checks every field against `policy`, collecting all errors.
    pub fn validate(&self, policy: &SpecPolicy) -> Result<SandboxSpec, ValidationErrors> {
        let mut errors = Vec::new();
        // The checks run in this order so that the errors a client reads follow the fields.
        let image = self.validated_image(&mut errors);
        self.check_command(&mut errors);
        self.check_env(&mut errors);
        self.check_workdir_and_user(&mut errors);
        self.check_labels(policy, &mut errors);
        self.check_spec_size(policy, &mut errors);
        self.check_ports(&mut errors);
        // A refused quantity comes back as zero, never used: no spec is built once anything is refused.
        let cpu_millis = self.validated_cpu_millis(policy, &mut errors);
        let memory_bytes = self.validated_memory_bytes(policy, &mut errors);
        let disk_bytes = self.validated_disk_bytes(&mut errors);
        let ttl = self.validated_ttl(policy, &mut errors);
        let max_lifetime = self.validated_max_lifetime(policy, ttl, &mut errors);
        let idle_timeout = self.validated_idle_timeout(&mut errors);
        let hibernate_after = self.validated_hibernate_after(&mut errors);
        let readiness = self.validated_readiness(&mut errors);
        self.check_runtime(&mut errors);
        let network = NetworkRequest::validate(self.network.as_ref(), policy.default_egress)
            .map_err(|error| errors.push(error))
            .unwrap_or_default();
        let restart = match &self.restart {
            None => Restart::Never,
            Some(value) => Restart::from_request(value)
                .map_err(|message| reject(&mut errors, "restart", message))
                .unwrap_or_default(),
        };

        crate::volume::check_mounts(&self.volumes, &mut errors);
        if !errors.is_empty() {
            return Err(ValidationErrors(errors));
        }
        Ok(SandboxSpec {
            image,
            command: self.command.clone(),
            env: self.env.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            labels: self.labels.clone(),
            ports: self.ports.clone(),
            resources: Resources {
                cpu_millis,
                memory_bytes,
                pids_limit: policy.pids_limit,
                disk_bytes,
            },
            ttl,
            max_lifetime,
            idle_timeout,
            hibernate_after,
            ttl_counts_idle: self.ttl_counts_idle.unwrap_or(false),
            readiness,
            stack: None,
            runtime: self.runtime.clone(),
            hardening: self.hardening.unwrap_or_default(),
            network,
            restart,
            volumes: self.volumes.clone(),
        })
    }

    fn validated_image(&self, errors: &mut Vec<FieldError>) -> String {
        match self.image.as_deref().map(str::trim) {
            None | Some("") => {
                reject(
                    errors,
                    "image",
                    "is required: name the image to run, e.g. \"busybox:latest\"".into(),
                );
                String::new()
            }
            Some(image) => {
                if let Err(message) = validate_image_reference(image) {
                    reject(errors, "image", message);
                }
                image.to_owned()
            }
        }
    }

    fn check_command(&self, errors: &mut Vec<FieldError>) {
        if let Some(command) = &self.command {
            if command.is_empty() {
                reject(
                    errors,
                    "command",
                    "must not be an empty list: omit it to run the image's default command".into(),
                );
            } else if command[0].is_empty() {
                reject(errors, "command[0]", "the program to run must not be empty".into());
            }
            if command.iter().any(|arg| arg.contains('\0')) {
                reject(errors, "command", "arguments must not contain NUL bytes".into());
            }
        }
    }

    fn check_env(&self, errors: &mut Vec<FieldError>) {
        for (key, value) in &self.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                reject(
                    errors,
                    &format!("env.{key}"),
                    format!(
                        "`{key}` is not a valid variable name: it must be non-empty and contain neither `=` nor NUL"
                    ),
                );
            }
            if value.contains('\0') {
                reject(
                    errors,
                    &format!("env.{key}"),
                    "values must not contain NUL bytes".into(),
                );
            }
        }
    }

    fn check_workdir_and_user(&self, errors: &mut Vec<FieldError>) {
        if let Some(workdir) = &self.workdir
            && (!workdir.starts_with('/') || workdir.contains('\0'))
        {
            reject(
                errors,
                "workdir",
                format!("`{workdir}` must be an absolute path such as /work"),
            );
        }

        if let Some(user) = &self.user
            && let Err(message) = validate_user(user)
        {
            reject(errors, "user", message);
        }
    }

    fn check_labels(&self, policy: &SpecPolicy, errors: &mut Vec<FieldError>) {
        for (key, value) in &self.labels {
            if let Err(message) = labels::validate_label(key, value) {
                reject(errors, &format!("labels.{key}"), message);
            }
        }
        if self.labels.len() > policy.max_labels {
            reject(
                errors,
                "labels",
                format!(
                    "has {} labels; this server allows at most {} (its max_labels setting): drop some, or keep such data inside the sandbox",
                    self.labels.len(),
                    policy.max_labels
                ),
            );
        }
    }

    /// Bounds labels, env and command together, blaming the largest of them: that is the one
    /// worth shrinking.
    fn check_spec_size(&self, policy: &SpecPolicy, errors: &mut Vec<FieldError>) {
        let pairs_bytes =
            |map: &BTreeMap<String, String>| map.iter().map(|(key, value)| key.len() + value.len()).sum::<usize>();
        let sizes = [
            ("labels", pairs_bytes(&self.labels)),
            ("env", pairs_bytes(&self.env)),
            ("command", self.command.iter().flatten().map(String::len).sum()),
        ];
        let total: usize = sizes.iter().map(|(_, size)| size).sum();
        if total as u64 > policy.max_spec_bytes
            && let Some((largest, _)) = sizes.iter().max_by_key(|(_, size)| *size)
        {
            reject(
                errors,
                largest,
                format!(
                    "labels, env and command hold {total} bytes together; this server allows at most {} (its max_spec_size setting): pass large data as a file instead",
                    policy.max_spec_bytes
                ),
            );
        }
    }

    fn check_ports(&self, errors: &mut Vec<FieldError>) {
        let mut seen_ports = std::collections::BTreeSet::new();
        for (index, port) in self.ports.iter().enumerate() {
            if *port == 0 {
                reject(
                    errors,
                    &format!("ports[{index}]"),
                    "0 is not a port: use 1-65535".into(),
                );
            } else if !seen_ports.insert(*port) {
                reject(
                    errors,
                    &format!("ports[{index}]"),
                    format!("port {port} is listed twice"),
                );
            }
        }
    }

    fn validated_cpu_millis(&self, policy: &SpecPolicy, errors: &mut Vec<FieldError>) -> u64 {
        match &self.cpu {
            None => policy.default_cpu_millis,
            Some(input) => match units::parse_cpu_millis(input) {
                Ok(millis) if millis > policy.max_cpu_millis => {
                    reject(
                        errors,
                        "cpu",
                        format!(
                            "`{input}` is more than this server's maximum of {} CPUs",
                            units::format_cpu(policy.max_cpu_millis)
                        ),
                    );
                    0
                }
                Ok(millis) => millis,
                Err(message) => {
                    reject(errors, "cpu", message);
                    0
                }
            },
        }
    }

    fn validated_memory_bytes(&self, policy: &SpecPolicy, errors: &mut Vec<FieldError>) -> u64 {
        match &self.memory {
            None => policy.default_memory_bytes,
            Some(input) => match units::parse_memory_bytes(input) {
                Ok(bytes) if bytes > policy.max_memory_bytes => {
                    reject(
                        errors,
                        "memory",
                        format!(
                            "`{input}` is more than this server's maximum of {}",
                            units::format_memory(policy.max_memory_bytes)
                        ),
                    );
                    0
                }
                Ok(bytes) => bytes,
                Err(message) => {
                    reject(errors, "memory", message);
                    0
                }
            },
        }
    }

    fn validated_disk_bytes(&self, errors: &mut Vec<FieldError>) -> Option<u64> {
        let input = self.disk.as_ref()?;
        match units::parse_memory_bytes(input) {
            Ok(bytes) => Some(bytes),
            Err(message) => {
                reject(errors, "disk", message);
                None
            }
        }
    }

    fn validated_ttl(&self, policy: &SpecPolicy, errors: &mut Vec<FieldError>) -> Duration {
        match &self.ttl {
            None => policy.default_ttl,
            Some(input) => match units::parse_duration(input) {
                Ok(ttl) if ttl > policy.max_ttl => {
                    reject(
                        errors,
                        "ttl",
                        format!(
                            "`{input}` is longer than this server's maximum of {}",
                            units::format_duration(policy.max_ttl)
                        ),
                    );
                    Duration::ZERO
                }
                Ok(ttl) => ttl,
                Err(message) => {
                    reject(errors, "ttl", message);
                    Duration::ZERO
                }
            },
        }
    }

    fn validated_idle_timeout(&self, errors: &mut Vec<FieldError>) -> Option<Duration> {
        let input = self.idle_timeout.as_ref()?;
        match units::parse_duration(input) {
            Ok(timeout) if timeout < Duration::from_secs(1) => {
                reject(errors, "idle_timeout", format!("`{input}` is under the shortest of 1s"));
                None
            }
            Ok(timeout) => Some(timeout),
            Err(message) => {
                reject(errors, "idle_timeout", message);
                None
            }
        }
    }

    fn validated_hibernate_after(&self, errors: &mut Vec<FieldError>) -> Option<Duration> {
        let input = self.hibernate_after.as_ref()?;
        match units::parse_duration(input) {
            Ok(_) if self.idle_timeout.is_none() => {
                reject(
                    errors,
                    "hibernate_after",
                    "needs an `idle_timeout`: a sandbox hibernates only after sleeping for being idle".to_owned(),
                );
                None
            }
            Ok(after) if after < Duration::from_secs(1) => {
                reject(
                    errors,
                    "hibernate_after",
                    format!("`{input}` is under the shortest of 1s"),
                );
                None
            }
            Ok(after) => Some(after),
            Err(message) => {
                reject(errors, "hibernate_after", message);
                None
            }
        }
    }

    /// The limit asked for (at most the server's), else the server's; a `ttl` longer than it is
    /// refused too, since the first deadline would already pass it.
    fn validated_max_lifetime(
        &self,
        policy: &SpecPolicy,
        ttl: Duration,
        errors: &mut Vec<FieldError>,
    ) -> Option<Duration> {
        let limit = match &self.max_lifetime {
            None => policy.max_lifetime,
            Some(input) => match units::parse_duration(input) {
                Ok(limit) if policy.max_lifetime.is_some_and(|max| limit > max) => {
                    let max = policy.max_lifetime.unwrap_or(limit);
                    reject(
                        errors,
                        "max_lifetime",
                        format!(
                            "`{input}` is longer than this server's maximum of {}",
                            units::format_duration(max)
                        ),
                    );
                    return None;
                }
                Ok(limit) if limit.is_zero() => {
                    reject(
                        errors,
                        "max_lifetime",
                        "must be longer than zero: omit it for no limit".into(),
                    );
                    return None;
                }
                Ok(limit) => Some(limit),
                Err(message) => {
                    reject(errors, "max_lifetime", message);
                    return None;
                }
            },
        };
        if let Some(limit) = limit
            && ttl > limit
        {
            let origin = if self.max_lifetime.is_some() {
                "its max_lifetime"
            } else {
                "this server's max_lifetime"
            };
            reject(
                errors,
                "ttl",
                format!(
                    "{} is longer than {origin} of {}: ask for at most that",
                    units::format_duration(ttl),
                    units::format_duration(limit)
                ),
            );
        }
        limit
    }

    fn validated_readiness(&self, errors: &mut Vec<FieldError>) -> Option<ReadinessProbe> {
        match self.readiness.as_ref().map(ReadinessRequest::validate) {
            None => None,
            Some(Ok(probe)) => Some(probe),
            Some(Err(probe_errors)) => {
                for error in probe_errors {
                    reject(errors, &error.field, error.message);
                }
                None
            }
        }
    }

    fn check_runtime(&self, errors: &mut Vec<FieldError>) {
        if let Some(Err(error)) = self.runtime.as_deref().map(check_runtime_name) {
            reject(errors, &error.field, error.message);
        }
    }
}

/// Records one refusal; the checks go on after it so that one answer lists every problem.
fn reject(errors: &mut Vec<FieldError>, field: &str, message: String) {
    errors.push(FieldError {
        field: field.to_owned(),
        message,
    });
}

/// A loose check of a Docker image reference: `[registry/]path[:tag][@digest]`, with the
/// repository path in lowercase as the Engine requires (the registry host and the tag may
/// use capitals).
fn validate_image_reference(image: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-/:@".contains(c);
    if image.len() > 512 || !image.chars().all(allowed) {
        return Err(format!(
            "`{image}` is not an image reference: use [registry/]name[:tag][@digest] with letters, digits and . _ - / : @"
        ));
    }
    let name = image.split_once('@').map_or(image, |(name, _digest)| name);
    let name = match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => &name[..colon],
        _ => name,
    };
    // The first component is a registry host when it looks like one (Docker's rule).
    let path = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':']) || first == "localhost" || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            rest
        }
        _ => name,
    };
    if path.split('/').any(str::is_empty) {
        return Err(format!(
            "`{image}` is not an image reference: the repository name is missing or has an empty part; use [registry/]name[:tag][@digest]"
        ));
    }
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "`{image}` is not an image reference: repository names must be lowercase"
        ));
    }
    Ok(())
}

/// `name`, `uid`, `name:group` or `uid:gid`, with POSIX-ish names.
fn validate_user(user: &str) -> Result<(), String> {
    let part_ok = |part: &str| {
        !part.is_empty() && part.len() <= 32 && part.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    };
    let mut parts = user.splitn(2, ':');
    let name = parts.next().unwrap_or_default();
    let group_ok = parts.next().is_none_or(part_ok);
    if part_ok(name) && group_ok {
        Ok(())
    } else {
        Err(format!("`{user}` is not a user: use name, uid, name:group or uid:gid"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(json: serde_json::Value) -> SandboxRequest {
        serde_json::from_value(json).expect("a well-formed request")
    }

    fn errors(request: &SandboxRequest) -> Vec<FieldError> {
        request.validate(&SpecPolicy::default()).unwrap_err().0
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn omitted_values_take_the_policy_defaults() {
        let policy = SpecPolicy::default();
        let spec = request(serde_json::json!({"image": "busybox:latest"}))
            .validate(&policy)
            .unwrap();
        assert_eq!(spec.image, "busybox:latest");
        assert_eq!(
            spec.resources,
            Resources {
                cpu_millis: 1000,
                memory_bytes: 512 * units::MIB,
                pids_limit: 1024,
                disk_bytes: None,
            }
        );
        assert_eq!(spec.ttl, Duration::from_secs(1800));
        assert_eq!(spec.command, None);
        assert!(spec.labels.is_empty() && spec.env.is_empty() && spec.ports.is_empty());
    }

    #[test]
    fn max_lifetime_is_the_sandboxs_or_the_servers_and_bounds_the_ttl() {
        let unlimited = SpecPolicy::default();
        let spec = request(serde_json::json!({"image": "busybox"}))
            .validate(&unlimited)
            .unwrap();
        assert_eq!(spec.max_lifetime, None, "no limit unless asked for");
        let spec = request(serde_json::json!({"image": "busybox", "ttl": "10m", "max_lifetime": "2h"}))
            .validate(&unlimited)
            .unwrap();
        assert_eq!(spec.max_lifetime, Some(Duration::from_secs(7200)));

        let limited = SpecPolicy {
            max_lifetime: Some(Duration::from_secs(3600)),
            ..SpecPolicy::default()
        };
        let spec = request(serde_json::json!({"image": "busybox"}))
            .validate(&limited)
            .unwrap();
        assert_eq!(
            spec.max_lifetime,
            Some(Duration::from_secs(3600)),
            "the server's applies"
        );
        let spec = request(serde_json::json!({"image": "busybox", "max_lifetime": "45m"}))
            .validate(&limited)
            .unwrap();
        assert_eq!(
            spec.max_lifetime,
            Some(Duration::from_secs(2700)),
            "less may be asked for"
        );

        let refused = request(serde_json::json!({"image": "busybox", "max_lifetime": "2h"}))
            .validate(&limited)
            .unwrap_err()
            .0;
        assert_eq!(fields(&refused), ["max_lifetime"]);
        assert!(refused[0].message.contains("maximum of 1h"), "{}", refused[0].message);
        let refused = request(serde_json::json!({"image": "busybox", "ttl": "2h", "max_lifetime": "1h"}))
            .validate(&unlimited)
            .unwrap_err()
            .0;
        assert_eq!(fields(&refused), ["ttl"]);
        assert!(
            refused[0].message.contains("max_lifetime of 1h"),
            "{}",
            refused[0].message
        );
        assert_eq!(
            fields(&errors(&request(
                serde_json::json!({"image": "busybox", "max_lifetime": "soon"})
            ))),
            ["max_lifetime"]
        );
        assert_eq!(
            fields(&errors(&request(
                serde_json::json!({"image": "busybox", "max_lifetime": 0})
            ))),
            ["max_lifetime"]
        );
    }

    #[test]
    fn quantities_are_parsed_in_engine_units() {
        let spec = request(serde_json::json!({
            "image": "busybox", "cpu": "500m", "memory": "256m", "ttl": "1h30m",
        }))
        .validate(&SpecPolicy::default())
        .unwrap();
        assert_eq!(spec.resources.cpu_millis, 500, "500m is half a CPU");
        assert_eq!(spec.resources.memory_bytes, 256 * units::MIB);
        assert_eq!(spec.ttl, Duration::from_secs(5400));

        let spec = request(serde_json::json!({"image": "busybox", "cpu": 2, "memory": 1048576, "ttl": 90}))
            .validate(&SpecPolicy::default())
            .unwrap();
        assert_eq!(spec.resources.cpu_millis, 2000);
        assert_eq!(spec.resources.memory_bytes, units::MIB);
        assert_eq!(spec.ttl, Duration::from_secs(90));

        let spec = request(serde_json::json!({"image": "busybox", "cpu": 0.5, "ttl": "90"}))
            .validate(&SpecPolicy::default())
            .unwrap();
        assert_eq!(spec.resources.cpu_millis, 500);
        assert_eq!(spec.ttl, Duration::from_secs(90));
    }

    #[test]
    fn a_disk_limit_is_parsed_like_memory_and_absent_means_unlimited() {
        let policy = SpecPolicy::default();
        let spec = request(serde_json::json!({"image": "busybox", "disk": "10Gi"}))
            .validate(&policy)
            .unwrap();
        assert_eq!(spec.resources.disk_bytes, Some(10 * units::GIB));
        let spec = request(serde_json::json!({"image": "busybox"}))
            .validate(&policy)
            .unwrap();
        assert_eq!(spec.resources.disk_bytes, None);
        for bad in [serde_json::json!("lots"), serde_json::json!("0"), serde_json::json!(-1)] {
            let found = errors(&request(serde_json::json!({"image": "busybox", "disk": bad})));
            assert_eq!(fields(&found), ["disk"], "{bad}");
        }
    }

    #[test]
    fn maxima_are_enforced_and_named() {
        let found = errors(&request(serde_json::json!({
            "image": "busybox", "cpu": "16001m", "memory": "65Gi", "ttl": "169h",
        })));
        assert_eq!(fields(&found), ["cpu", "memory", "ttl"]);
        assert!(found[0].message.contains("maximum of 16 CPUs"), "{}", found[0].message);
        assert!(found[1].message.contains("maximum of 64Gi"), "{}", found[1].message);
        assert!(found[2].message.contains("maximum of 168h"), "{}", found[2].message);
    }

    #[test]
    fn values_at_the_maxima_are_accepted() {
        let spec = request(serde_json::json!({
            "image": "busybox", "cpu": 16, "memory": "64Gi", "ttl": "168h",
        }))
        .validate(&SpecPolicy::default())
        .unwrap();
        assert_eq!(spec.resources.cpu_millis, 16_000);
        assert_eq!(spec.resources.memory_bytes, 64 * units::GIB);
        assert_eq!(spec.ttl, Duration::from_secs(168 * 3600));
    }

    #[test]
    fn every_error_is_collected_with_its_field() {
        let found = errors(&request(serde_json::json!({
            "command": [],
            "env": {"A=B": "x"},
            "workdir": "relative",
            "user": "a:b:c",
            "labels": {"berth.managed": "false", "ok": "-bad"},
            "ports": [8080, 0, 8080],
            "cpu": "abc",
            "memory": "0",
            "ttl": "-1s",
        })));
        assert_eq!(
            fields(&found),
            [
                "image",
                "command",
                "env.A=B",
                "workdir",
                "user",
                "labels.berth.managed",
                "labels.ok",
                "ports[1]",
                "ports[2]",
                "cpu",
                "memory",
                "ttl",
            ]
        );
        for error in &found {
            assert!(!error.message.is_empty(), "{error:?}");
        }
        let display = ValidationErrors(found).to_string();
        assert!(display.starts_with("image: is required"), "{display}");
        assert!(display.contains("; cpu: `abc` is not a CPU amount"), "{display}");
    }

    #[test]
    fn reserved_labels_are_refused() {
        let found = errors(&request(serde_json::json!({
            "image": "busybox", "labels": {"berth.sandbox": "0123456789abcdef"},
        })));
        assert_eq!(fields(&found), ["labels.berth.sandbox"]);
        assert!(found[0].message.contains("reserved"), "{}", found[0].message);
    }

    #[test]
    fn unknown_json_fields_are_refused() {
        let error = serde_json::from_str::<SandboxRequest>(r#"{"image": "busybox", "cpus": 2}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `cpus`"), "{error}");
    }

    #[test]
    fn quantities_deserialize_from_numbers_and_strings() {
        let parsed: SandboxRequest =
            serde_json::from_str(r#"{"image": "busybox", "cpu": 2, "memory": "512Mi", "ttl": 90}"#).unwrap();
        assert_eq!(parsed.cpu, Some(NumberOrString::Number(2.0)));
        assert_eq!(parsed.memory, Some(NumberOrString::String("512Mi".into())));
        assert_eq!(parsed.ttl, Some(NumberOrString::Number(90.0)));
    }

    #[test]
    fn image_references_are_checked() {
        for image in [
            "busybox",
            "busybox:latest",
            "busybox:Latest",
            "library/busybox:1.36",
            "localhost:5000/team/tool:v1",
            "Registry.Example.com/team/tool",
            "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(validate_image_reference(image), Ok(()), "{image}");
        }
        for image in [
            "Busybox",
            "Busybox:latest",
            "team/Tool:v1",
            "busybox image",
            "a//b",
            ":latest",
            "localhost:5000/",
        ] {
            let message = validate_image_reference(image).unwrap_err();
            assert!(message.contains(&format!("`{image}`")), "{message}");
        }
        let found = errors(&request(serde_json::json!({"image": "  "})));
        assert_eq!(fields(&found), ["image"]);
        assert!(found[0].message.contains("is required"));
    }

    #[test]
    fn users_and_commands_are_checked() {
        let policy = SpecPolicy::default();
        for user in ["root", "1000", "app:app", "1000:1000"] {
            let valid = request(serde_json::json!({"image": "busybox", "user": user}));
            assert!(valid.validate(&policy).is_ok(), "{user}");
        }
        for user in ["", ":", "a:", ":b", "a b", "a:b:c"] {
            let found = errors(&request(serde_json::json!({"image": "busybox", "user": user})));
            assert_eq!(fields(&found), ["user"], "{user}");
        }
        let found = errors(&request(
            serde_json::json!({"image": "busybox", "command": ["", "x\u{0}"]}),
        ));
        assert_eq!(fields(&found), ["command[0]", "command"]);
    }

    #[test]
    fn a_validated_spec_survives_serialization() {
        let spec = request(serde_json::json!({
            "image": "busybox", "cpu": "250m", "ttl": "1.5s", "labels": {"team": "ml"}, "ports": [80],
        }))
        .validate(&SpecPolicy::default())
        .unwrap();
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<SandboxSpec>(&json).unwrap(), spec);
    }

    proptest! {
        #[test]
        fn ttls_within_the_default_maximum_survive_serialization(nanos in 1..=7 * 24 * 3600 * 1_000_000_000_u64) {
            let ttl = units::format_duration(Duration::from_nanos(nanos));
            let spec = request(serde_json::json!({"image": "busybox", "ttl": ttl}))
                .validate(&SpecPolicy::default())
                .unwrap();
            prop_assert_eq!(spec.ttl, Duration::from_nanos(nanos));
            let json = serde_json::to_string(&spec).unwrap();
            prop_assert_eq!(serde_json::from_str::<SandboxSpec>(&json).unwrap(), spec);
        }

        #[test]
        fn validate_never_panics(
            cpu in "[-0-9.a-zA-Z]{0,8}",
            memory in "[-0-9.a-zA-Z]{0,8}",
            ttl in "[-0-9.a-zµ]{0,8}",
            label in "[ -~]{0,12}",
        ) {
            let request = SandboxRequest {
                image: Some("busybox".into()),
                cpu: Some(NumberOrString::String(cpu)),
                memory: Some(NumberOrString::String(memory)),
                ttl: Some(NumberOrString::String(ttl)),
                labels: [(label.clone(), label)].into(),
                ..SandboxRequest::default()
            };
            if let Err(errors) = request.validate(&SpecPolicy::default()) {
                for error in errors.0 {
                    prop_assert!(!error.message.is_empty());
                }
            }
        }
    }

    #[test]
    fn the_policy_bounds_readiness_and_runtime_are_reported_after_the_fields_before_them() {
        let policy = SpecPolicy {
            max_labels: 1,
            max_spec_bytes: 10,
            ..SpecPolicy::default()
        };
        let found = request(serde_json::json!({
            "image": "busybox",
            "labels": {"a": "1", "b": "2"},
            "env": {"PAYLOAD": "xxxxxxxxxx"},
            "ports": [0],
            "ttl": "-1s",
            "readiness": {},
            "runtime": "",
        }))
        .validate(&policy)
        .unwrap_err()
        .0;
        let found = fields(&found);
        assert_eq!(found[..4], ["labels", "env", "ports[0]", "ttl"], "{found:?}");
        assert!(
            found[4..found.len() - 1]
                .iter()
                .all(|field| field.starts_with("readiness")),
            "{found:?}"
        );
        assert!(found.len() > 5, "{found:?}");
        assert_eq!(found.last(), Some(&"runtime"), "{found:?}");
    }

    #[test]
    fn label_count_and_the_size_of_labels_env_and_command_are_bounded_by_the_policy() {
        let policy = SpecPolicy {
            max_labels: 3,
            max_spec_bytes: 100,
            ..SpecPolicy::default()
        };
        let labelled = |count: usize| SandboxRequest {
            image: Some("busybox".into()),
            labels: (0..count).map(|n| (format!("k{n}"), "v".to_owned())).collect(),
            ..SandboxRequest::default()
        };
        assert!(labelled(3).validate(&policy).is_ok());
        let refused = labelled(4).validate(&policy).unwrap_err();
        assert_eq!(fields(&refused.0), ["labels"]);
        assert!(
            refused.0[0].message.contains("at most 3") && refused.0[0].message.contains("max_labels"),
            "{refused}"
        );

        let big_env = SandboxRequest {
            image: Some("busybox".into()),
            env: [("PAYLOAD".to_owned(), "x".repeat(90))].into(),
            command: Some(vec!["sh".into(), "-c".into(), "true".into()]),
            ..SandboxRequest::default()
        };
        let refused = big_env.validate(&policy).unwrap_err();
        assert_eq!(fields(&refused.0), ["env"], "names the largest part");
        assert!(
            refused.0[0].message.contains("105 bytes") && refused.0[0].message.contains("max_spec_size"),
            "{refused}"
        );
        let defaults = SpecPolicy::default();
        assert!(
            big_env.validate(&defaults).is_ok(),
            "the defaults are not hit by accident"
        );
        assert!(labelled(DEFAULT_MAX_LABELS + 1).validate(&defaults).is_err());
    }
}
