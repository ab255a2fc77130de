//! The engine seam: the [`Runtime`] trait that Docker (and later Kubernetes) implement, the
//! container facts it reports, its classified errors, and a `FakeRuntime` for tests.

use std::collections::BTreeMap;

use async_trait::async_trait;
use berth_core::{PortBinding, SandboxId, SandboxSpec};
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;

pub mod build;
pub mod deferred;
#[cfg(any(test, feature = "test-util"))]
pub mod fake;
pub mod work;

pub use build::{BuildEvent, BuildRequest, DEFAULT_DOCKERFILE};
pub use deferred::DeferredRuntime;
pub use work::{
    ByteStream, EngineByteStream, ExecSession, ExecSpec, ExecState, LogOptions, OutputChunk, PathStat, ResourceStats,
};

/// What the engine is asked to run for one sandbox.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerRequest {
    pub sandbox_id: SandboxId,
    pub spec: SandboxSpec,
    /// The full label set: the user's plus `berth.managed`, `berth.sandbox`, `berth.owner`.
    pub labels: BTreeMap<String, String>,
}

/// The engine's run state of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
    Dead,
    Removing,
}

/// Facts about one container as the engine reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerState {
    pub container_id: String,
    /// From the `berth.sandbox` label; `None` if the label is missing or malformed.
    pub sandbox_id: Option<SandboxId>,
    pub labels: BTreeMap<String, String>,
    pub state: RunState,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub ip: Option<String>,
    pub ports: Vec<PortBinding>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// How many times the engine restarted it under its restart policy (0 from a list).
    pub restart_count: u32,
}

/// What is left on an engine of one compose stack, found by its network (the first object of a
/// stack created and the last removed).
#[derive(Debug, Clone, PartialEq)]
pub struct StackObjects {
    pub sandbox_id: SandboxId,
    /// The network's labels (`berth.cluster` says which deployment owns the stack).
    pub labels: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
}

/// A persistent volume as the engine keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeState {
    /// The engine's name of it (see `berth_core::volume::engine_name`).
    pub engine_name: String,
    /// Its labels: `berth.volume` (the owner's name of it), `berth.owner`, `berth.cluster`.
    pub labels: BTreeMap<String, String>,
    /// When the engine made it; `None` where the engine does not say.
    pub created_at: Option<DateTime<Utc>>,
}

/// An image the engine keeps, as berth reads it (a snapshot is one).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageState {
    /// The engine's id, `sha256:…`.
    pub id: String,
    pub labels: BTreeMap<String, String>,
    /// Its size on the engine, in bytes (its own layers and the ones it shares).
    pub size_bytes: u64,
    pub created_at: Option<DateTime<Utc>>,
}

/// A change the engine reports on a berth-managed container.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeEvent {
    pub container_id: String,
    pub sandbox_id: Option<SandboxId>,
    pub kind: EventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Start,
    /// The main process ended; the engine's exit code when it gave one.
    Die {
        exit_code: Option<i64>,
    },
    Oom,
    Destroy,
    Pause,
    Unpause,
}

/// Which engine berth talks to, as reported at start and by `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineInfo {
    /// The engine's name in berth (`local` by default).
    pub name: String,
    /// Where it is reached, e.g. `unix:///var/run/docker.sock`.
    pub endpoint: String,
    /// The engine's own version, e.g. `20.10.24`.
    pub version: String,
    /// The API version berth negotiated, e.g. `1.41`.
    pub api_version: String,
}

/// What the engine offers to confine a sandbox, read from it (Docker: `GET /info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSecurity {
    /// The OCI runtimes a sandbox may ask for (`runc`, `runsc` for gVisor, `crun`, ...), sorted.
    pub runtimes: Vec<String>,
    /// The one a sandbox that names none runs under.
    pub default_runtime: String,
    /// Whether the engine maps container root to an unprivileged host user (`userns-remap`).
    pub user_namespaces_remapped: bool,
    /// Whether the engine applies a seccomp profile (its default one, as berth never asks for
    /// `unconfined`).
    pub seccomp: bool,
    /// Whether a sandbox's writable layer can be given a size limit: `Err` says why not (the
    /// storage driver and what it would need).
    pub disk_limit: Result<(), String>,
    /// Whether the engine host's firewall keeps sandboxes on berth's networks from the host and
    /// from link-local and private ranges.
    pub host_guard: GuardState,
}

/// The host guard's state on one engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardState {
    /// Not asked for (`--host-guard off`).
    Off,
    /// The rules are written.
    Active,
    /// Asked for, but the rules could not be written: why.
    Unavailable(String),
}

impl GuardState {
    /// `active`, `off`, or the reason it is unavailable.
    pub fn describe(&self) -> String {
        match self {
            GuardState::Off => "off".to_owned(),
            GuardState::Active => "active".to_owned(),
            GuardState::Unavailable(reason) => format!("unavailable: {reason}"),
        }
    }
}

/// Engine failures, classified so that the API can answer each kind correctly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    #[error("container {0} not found")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("image `{image}` is not available on engine `{engine}` and could not be pulled: {detail}")]
    ImageNotFound {
        image: String,
        engine: String,
        detail: String,
    },
    #[error("engine `{engine}` at {endpoint} is unavailable: {detail}")]
    Unavailable {
        engine: String,
        endpoint: String,
        detail: String,
    },
    #[error("engine call timed out: {0}")]
    Timeout(String),
    #[error("engine refused the request: {0}")]
    Invalid(String),
    #[error("engine error: {0}")]
    Other(String),
}

impl RuntimeError {
    /// Worth retrying: the engine may answer differently in a moment.
    pub fn is_transient(&self) -> bool {
        matches!(self, RuntimeError::Unavailable { .. } | RuntimeError::Timeout(_))
    }
}

/// One container engine. Everything above this trait knows nothing of Docker or Kubernetes.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// The engine's name in berth; recorded on each sandbox.
    fn name(&self) -> &str;

    /// Reaches the engine and reports what it is.
    async fn info(&self) -> Result<EngineInfo, RuntimeError>;

    /// The runtimes and confinement the engine offers now (a runtime registered after berth
    /// started shows up here).
    async fn security(&self) -> Result<EngineSecurity, RuntimeError>;

    /// Creates and starts the sandbox's container (pulling the image when it is missing and a
    /// registry answers). On any failure nothing of it is left on the engine.
    ///
    /// With `request.spec.stack`, creates the whole compose stack — its private network, named
    /// volumes and every service in start order, waiting on the `depends_on` conditions — and
    /// reports the main service's container. Only that container carries `berth.managed` and
    /// `berth.sandbox`; every object of the stack carries `berth.stack`.
    async fn create(&self, request: &ContainerRequest) -> Result<ContainerState, RuntimeError>;

    /// Removes every object of the compose stack of `sandbox_id`: containers, then volumes,
    /// then the network (a sandbox with egress `deny` has such objects too: its container and
    /// its own network). Nothing left is `Ok`.
    async fn remove_stack(&self, sandbox_id: &SandboxId) -> Result<(), RuntimeError>;

    /// The compose stacks with objects on the engine.
    async fn list_stacks(&self) -> Result<Vec<StackObjects>, RuntimeError>;

    /// Kills and removes a container. An already absent container is `Ok`.
    async fn remove(&self, container_id: &str) -> Result<(), RuntimeError>;

    async fn inspect(&self, container_id: &str) -> Result<ContainerState, RuntimeError>;

    /// Every container labelled `berth.managed=true`, running or not.
    async fn list_managed(&self) -> Result<Vec<ContainerState>, RuntimeError>;

    /// Changes to berth-managed containers from now on. The stream ends (or yields an error)
    /// when the connection drops; the caller re-subscribes.
    async fn events(&self) -> Result<BoxStream<'static, Result<RuntimeEvent, RuntimeError>>, RuntimeError>;

    /// Starts a process in a running container, attached: output streams until it ends.
    async fn exec(&self, container_id: &str, spec: &ExecSpec) -> Result<ExecSession, RuntimeError>;

    async fn exec_state(&self, exec_id: &str) -> Result<ExecState, RuntimeError>;

    /// Resizes an exec's terminal.
    async fn exec_resize(&self, exec_id: &str, cols: u16, rows: u16) -> Result<(), RuntimeError>;

    /// Extracts a tar stream into the directory `dir` (which must exist) of the container.
    async fn upload_tar(&self, container_id: &str, dir: &str, tar: ByteStream) -> Result<(), RuntimeError>;

    /// A tar stream of `path` (a file or a directory) of the container.
    async fn download_tar(&self, container_id: &str, path: &str) -> Result<EngineByteStream, RuntimeError>;

    /// Facts about `path`; `NotFound` when it does not exist.
    async fn stat_path(&self, container_id: &str, path: &str) -> Result<PathStat, RuntimeError>;

    /// The main process's output.
    async fn logs(
        &self,
        container_id: &str,
        options: &LogOptions,
    ) -> Result<BoxStream<'static, Result<OutputChunk, RuntimeError>>, RuntimeError>;

    /// One sample, or (with `stream`) a sample about every second until the stream is dropped.
    async fn stats(
        &self,
        container_id: &str,
        stream: bool,
    ) -> Result<BoxStream<'static, Result<ResourceStats, RuntimeError>>, RuntimeError>;

    /// Starts a container that exists but does not run — made and never started, as a server
    /// stopped between create and start leaves it — and reports its facts after the start.
    async fn start(&self, container_id: &str) -> Result<ContainerState, RuntimeError>;

    /// Freezes every process of the container.
    async fn pause(&self, container_id: &str) -> Result<(), RuntimeError>;

    /// Stops a running container, keeping it and its filesystem: its processes get SIGTERM and,
    /// after `grace`, SIGKILL. A container that does not run is left as it is.
    async fn stop(&self, container_id: &str, grace: std::time::Duration) -> Result<(), RuntimeError>;

    /// Moves a running single-container sandbox onto the networks its request's egress policy
    /// asks for — `deny`: a network of its own that routes nowhere; `allow`: the sandbox network —
    /// without stopping it, and answers its state there (its address changes). Not for compose
    /// stacks.
    async fn change_egress(
        &self,
        request: &ContainerRequest,
        container_id: &str,
    ) -> Result<ContainerState, RuntimeError>;

    async fn unpause(&self, container_id: &str) -> Result<(), RuntimeError>;

    /// Makes the volume `engine_name` with `labels`; `Conflict` when it exists already.
    async fn create_volume(
        &self,
        engine_name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<VolumeState, RuntimeError>;

    /// The volume `engine_name`; `NotFound` when there is none.
    async fn inspect_volume(&self, engine_name: &str) -> Result<VolumeState, RuntimeError>;

    /// Every volume carrying all of `labels`.
    async fn list_volumes(&self, labels: &BTreeMap<String, String>) -> Result<Vec<VolumeState>, RuntimeError>;

    /// Commits the container's filesystem as the image `reference` (`repo:tag`) carrying
    /// `labels`, its processes paused for the instant of the commit.
    async fn commit(
        &self,
        container_id: &str,
        reference: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<ImageState, RuntimeError>;

    /// Every image carrying all of `labels`.
    async fn list_images(&self, labels: &BTreeMap<String, String>) -> Result<Vec<ImageState>, RuntimeError>;

    /// Removes the image `reference`; `Conflict` while a container uses it, `NotFound` when
    /// there is none.
    async fn remove_image(&self, reference: &str) -> Result<(), RuntimeError>;

    /// Removes the volume and its data; `Conflict` while a container (even a stopped one) uses
    /// it, `NotFound` when there is none.
    async fn remove_volume(&self, engine_name: &str) -> Result<(), RuntimeError>;

    /// Builds an image from the tar build `context` and tags it `request.tag`. Answers once the
    /// engine has taken the context and started; the build's output then streams with no
    /// deadline. A failed build ends the stream with an `Invalid` item carrying its message.
    async fn build_image(
        &self,
        request: &BuildRequest,
        context: ByteStream,
    ) -> Result<BoxStream<'static, Result<BuildEvent, RuntimeError>>, RuntimeError>;
}
