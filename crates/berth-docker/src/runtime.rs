//! [`DockerRuntime`]: the engine calls behind berth's `Runtime` trait, each under its own
//! deadline, with cleanup of half-created containers.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use berth_core::SandboxId;
use berth_core::sandbox::label_keys;
use berth_runtime::{
    BuildEvent, BuildRequest, ByteStream, ContainerRequest, ContainerState, EngineByteStream, EngineInfo,
    EngineSecurity, ExecSession, ExecSpec, ExecState, GuardState, LogOptions, OutputChunk, PathStat, ResourceStats,
    RunState, Runtime, RuntimeError, RuntimeEvent, StackObjects,
};
use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder, InspectContainerOptions,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, StartContainerOptions,
};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};

use crate::connect::{self, DockerConfig};
use crate::error::{EngineRef, Subject, classify, image_not_found};
use crate::{spec, state};

mod build_calls;
mod guard_calls;
mod image_calls;
mod network_calls;
mod stack_calls;
mod volume_calls;
mod work_calls;

/// How many containers `list_managed` inspects at once (only ended ones are inspected).
const LIST_INSPECT_CONCURRENCY: usize = 8;

/// The engine actions berth follows; the engine drops the others before sending.
const FOLLOWED_ACTIONS: [&str; 6] = ["start", "die", "oom", "destroy", "pause", "unpause"];

/// One Docker Engine, reached over bollard at the negotiated API version.
#[derive(Clone)]
pub struct DockerRuntime {
    docker: Docker,
    config: DockerConfig,
    info: EngineInfo,
    /// The id of the network sandboxes join, once found or made (shared by the clones).
    sandbox_network: std::sync::Arc<tokio::sync::Mutex<Option<String>>>,
    /// The host guard's scope in bridge and table names (see `crate::guard`).
    guard_tag: String,
    /// Whether the host guard's rules are written (shared by the clones).
    guard: std::sync::Arc<std::sync::Mutex<GuardState>>,
    /// How many times the engine's events were subscribed to: every one after the first follows
    /// a broken stream, maybe a restarted engine host, whose firewall starts empty.
    event_subscriptions: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for DockerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerRuntime")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl DockerRuntime {
    /// Connects as the docker CLI would (see [`DockerConfig`]), negotiates the API version and
    /// refuses engines older than API 1.41. Fails within seconds, with one line naming the
    /// endpoint, when the engine cannot be reached.
    pub async fn connect(config: DockerConfig) -> Result<Self, RuntimeError> {
        let connected = connect::connect(&config).await?;
        let info = EngineInfo {
            name: config.name.clone(),
            endpoint: connected.endpoint.display.clone(),
            version: connected.engine_version,
            api_version: connected.api_version.to_string(),
        };
        tracing::info!(engine = %info.name, endpoint = %info.endpoint, version = %info.version,
            api_version = %info.api_version, "connected to Docker Engine");
        let guard_tag = crate::guard::scope_tag(&config.host_guard.scope);
        let runtime = DockerRuntime {
            docker: connected.docker,
            config,
            info,
            sandbox_network: std::sync::Arc::default(),
            guard_tag,
            guard: std::sync::Arc::new(std::sync::Mutex::new(GuardState::Off)),
            event_subscriptions: std::sync::Arc::default(),
        };
        // Before the sandbox network: whether the guard is in force decides which network that is.
        runtime.apply_host_guard().await?;
        // Found (or made) now, so that no create waits for it; a failure here is retried by the
        // first create that needs the network.
        if let Err(error) = runtime.sandbox_network().await {
            tracing::warn!(engine = %runtime.info.name, %error, "could not prepare the sandbox network yet");
        }
        Ok(runtime)
    }

    /// What the engine reported when berth connected.
    pub fn engine_info(&self) -> &EngineInfo {
        &self.info
    }

    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// The bollard client at the negotiated version, for this crate's tests and tools. Code
    /// outside berth-docker goes through [`Runtime`].
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    fn engine(&self) -> EngineRef<'_> {
        EngineRef {
            name: &self.config.name,
            endpoint: &self.info.endpoint,
        }
    }

    /// Runs one engine call under `call_timeout`, classifying its error.
    async fn call<T>(
        &self,
        what: &str,
        subject: Subject<'_>,
        fut: impl Future<Output = Result<T, BollardError>>,
    ) -> Result<T, RuntimeError> {
        self.call_within(self.config.call_timeout, what, subject, fut).await
    }

    async fn call_within<T>(
        &self,
        deadline: Duration,
        what: &str,
        subject: Subject<'_>,
        fut: impl Future<Output = Result<T, BollardError>>,
    ) -> Result<T, RuntimeError> {
        match tokio::time::timeout(deadline, fut).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(classify(&err, self.engine(), subject)),
            Err(_) => Err(self.timed_out(what, deadline)),
        }
    }

    /// Creates the container of a single-container sandbox, joined to the sandbox network.
    async fn create_on_sandbox_network(
        &self,
        request: &ContainerRequest,
        name: &str,
    ) -> Result<bollard::models::ContainerCreateResponse, RuntimeError> {
        let network = self.sandbox_network().await?;
        self.create_container_on(request, name, &network).await
    }

    /// Creates (not starts) the container of a single-container sandbox named `name`, joined to
    /// `network`, logging what the engine warned of.
    async fn create_container_on(
        &self,
        request: &ContainerRequest,
        name: &str,
        network: &str,
    ) -> Result<bollard::models::ContainerCreateResponse, RuntimeError> {
        let body = spec::container_body(request, &self.config.publish_host_ip, network)?;
        self.check_mounted_volumes(request).await?;
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        // A 404 here means the image (or the network) vanished since the check; a 409 means a
        // container of this name exists already: it is not ours to remove.
        let created = self
            .call(
                "container create",
                Subject::Image(&request.spec.image),
                self.docker.create_container(Some(options), body),
            )
            .await?;
        for warning in created.warnings.iter().filter(|w| !w.is_empty()) {
            tracing::warn!(container = %name, %warning, "engine warning on create");
        }
        Ok(created)
    }

    /// After a create answered "not found": whether it was the sandbox network that is gone
    /// (then forgotten, so that the next call makes it again).
    async fn sandbox_network_went_away(&self) -> bool {
        let Some(id) = self.sandbox_network.lock().await.clone() else {
            return false;
        };
        match self.sandbox_network_exists(&id).await {
            Ok(true) | Err(_) => false,
            Ok(false) => {
                tracing::warn!(network = %id, "the sandbox network was removed behind berth's back; making it again");
                self.forget_sandbox_network().await;
                true
            }
        }
    }

    /// Makes sure `image` is on the engine: inspect, and pull when it is missing.
    async fn ensure_image(&self, image: &str) -> Result<(), RuntimeError> {
        match self
            .call("image inspect", Subject::Image(image), self.docker.inspect_image(image))
            .await
        {
            Ok(_) => return Ok(()),
            Err(RuntimeError::ImageNotFound { .. }) => {}
            Err(err) => return Err(err),
        }
        let (from_image, tag) = spec::pull_reference(image);
        let mut options = CreateImageOptionsBuilder::new().from_image(&from_image);
        if let Some(tag) = &tag {
            options = options.tag(tag);
        }
        let pull = self
            .docker
            .create_image(Some(options.build()), None, None)
            .try_for_each(|_| async { Ok(()) });
        match self
            .call_within(self.config.pull_timeout, "image pull", Subject::Image(image), pull)
            .await
        {
            Ok(()) => {}
            Err(RuntimeError::ImageNotFound { detail, .. }) => {
                return Err(image_not_found(
                    image,
                    self.engine(),
                    format!("not on the engine, and the pull failed: {detail}"),
                ));
            }
            Err(err @ (RuntimeError::Unavailable { .. } | RuntimeError::Timeout(_))) => {
                return Err(err);
            }
            Err(other) => {
                return Err(image_not_found(
                    image,
                    self.engine(),
                    format!("not on the engine, and the pull failed: {other}"),
                ));
            }
        }
        // A pull that "succeeded" must have left the image behind.
        self.call("image inspect", Subject::Image(image), self.docker.inspect_image(image))
            .await
            .map(|_| ())
    }

    /// Force-removes a container this call created, logging (not returning) a failure: the
    /// caller reports the original error, and the reconciler collects anything left.
    async fn discard(&self, container_id: &str) {
        if let Err(err) = self.remove(container_id).await {
            tracing::warn!(container_id, error = %err, "could not remove a half-created container");
        }
    }

    async fn start_and_inspect(&self, container_id: &str) -> Result<ContainerState, RuntimeError> {
        self.call(
            "container start",
            Subject::Container(container_id),
            self.docker.start_container(container_id, None::<StartContainerOptions>),
        )
        .await?;
        self.inspect(container_id).await
    }

    /// The engine's whole answer on a container (health included, which `ContainerState` leaves out).
    pub(super) async fn inspect_raw(&self, container_id: &str) -> Result<ContainerInspectResponse, RuntimeError> {
        if !is_container_ref(container_id) {
            return Err(RuntimeError::NotFound(container_id.to_owned()));
        }
        self.call(
            "container inspect",
            Subject::Container(container_id),
            self.docker
                .inspect_container(container_id, None::<InspectContainerOptions>),
        )
        .await
    }

    /// The engine's current time, so an event subscription starts exactly "now" on its clock.
    async fn engine_now(&self) -> Result<String, RuntimeError> {
        let info = self.call("system info", Subject::Engine, self.docker.info()).await?;
        let now = info
            .system_time
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_else(chrono::Utc::now);
        Ok(format!("{}.{:09}", now.timestamp(), now.timestamp_subsec_nanos()))
    }
}

/// The runtimes and confinement in the engine's `GET /info`: `SecurityOptions` lists
/// `name=seccomp,profile=...` and `name=userns` when they are on.
fn engine_security(info: &bollard::models::SystemInfo) -> EngineSecurity {
    let mut runtimes: Vec<String> = info.runtimes.iter().flatten().map(|(name, _)| name.clone()).collect();
    runtimes.sort();
    let options = info.security_options.as_deref().unwrap_or_default();
    let has = |name: &str| {
        options
            .iter()
            .any(|option| option.split(',').any(|part| part == format!("name={name}")))
    };
    EngineSecurity {
        runtimes,
        default_runtime: info.default_runtime.clone().unwrap_or_else(|| "runc".to_owned()),
        user_namespaces_remapped: has("userns"),
        seccomp: has("seccomp"),
        disk_limit: disk_limit(info),
        host_guard: GuardState::Off,
    }
}

/// Whether the engine's storage driver enforces `--storage-opt size` on a container's writable
/// layer. overlay2 does only on xfs mounted with `pquota`, which `/info` does not show: an xfs
/// without it is refused by the engine at create, with its own words.
fn disk_limit(info: &bollard::models::SystemInfo) -> Result<(), String> {
    let driver = info.driver.as_deref().unwrap_or("unknown");
    let backing = info
        .driver_status
        .iter()
        .flatten()
        .find(|pair| pair.first().map(String::as_str) == Some("Backing Filesystem"))
        .and_then(|pair| pair.get(1))
        .map(String::as_str);
    match (driver, backing) {
        ("btrfs" | "zfs" | "devicemapper" | "windowsfilter", _) | ("overlay2", Some("xfs")) => Ok(()),
        ("overlay2", backing) => Err(format!(
            "its storage driver is overlay2 on {}, and overlay2 limits a container's size only on xfs \
             mounted with `pquota`",
            backing.unwrap_or("an unknown filesystem")
        )),
        (driver, _) => Err(format!(
            "its storage driver `{driver}` cannot limit a container's size (overlay2 on xfs with \
             `pquota`, btrfs, zfs and devicemapper can)"
        )),
    }
}

/// Docker accepts names and ids matching `[a-zA-Z0-9][a-zA-Z0-9_.-]*`. Anything else cannot name
/// a container, and must never reach a URL path (`../images/x` would address another endpoint).
fn is_container_ref(text: &str) -> bool {
    let mut bytes = text.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && text.len() <= 256
}

/// Removes the container if the create future is dropped between create and the end of start.
struct RemoveOnDrop {
    runtime: Option<DockerRuntime>,
    container_id: String,
}

impl RemoveOnDrop {
    fn disarm(mut self) {
        self.runtime = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let (Some(runtime), Ok(handle)) = (self.runtime.take(), tokio::runtime::Handle::try_current()) {
            let container_id = std::mem::take(&mut self.container_id);
            handle.spawn(async move { runtime.discard(&container_id).await });
        }
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn name(&self) -> &str {
        &self.config.name
    }

    async fn info(&self) -> Result<EngineInfo, RuntimeError> {
        let version = self.call("version", Subject::Engine, self.docker.version()).await?;
        Ok(EngineInfo {
            version: version.version.unwrap_or_else(|| self.info.version.clone()),
            ..self.info.clone()
        })
    }

    async fn security(&self) -> Result<EngineSecurity, RuntimeError> {
        let info = self.call("system info", Subject::Engine, self.docker.info()).await?;
        let mut security = engine_security(&info);
        security.host_guard = self.guard_state();
        Ok(security)
    }

    async fn create(&self, request: &ContainerRequest) -> Result<ContainerState, RuntimeError> {
        if let Some(plan) = &request.spec.stack {
            return self.create_stack(request, plan).await;
        }
        if request.spec.network.egress == berth_core::Egress::Deny {
            return self.create_sealed(request).await;
        }
        let image = request.spec.image.as_str();
        self.ensure_image(image).await?;
        let name = spec::container_name(request);
        let created = match self.create_on_sandbox_network(request, &name).await {
            // The network went away behind berth's back (the engine answers as for a missing
            // image): made again, and the create tried once more.
            Err(RuntimeError::ImageNotFound { .. } | RuntimeError::NotFound(_))
                if self.sandbox_network_went_away().await =>
            {
                self.create_on_sandbox_network(request, &name).await?
            }
            created => created?,
        };

        let guard = RemoveOnDrop {
            runtime: Some(self.clone()),
            container_id: created.id.clone(),
        };
        let result = self.start_and_inspect(&created.id).await;
        if result.is_err() {
            self.discard(&created.id).await;
        }
        guard.disarm();
        result
    }

    async fn start(&self, container_id: &str) -> Result<ContainerState, RuntimeError> {
        if !is_container_ref(container_id) {
            return Err(RuntimeError::NotFound(container_id.to_owned()));
        }
        self.start_and_inspect(container_id).await
    }

    async fn remove(&self, container_id: &str) -> Result<(), RuntimeError> {
        if !is_container_ref(container_id) {
            return Ok(());
        }
        let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        match self
            .call(
                "container remove",
                Subject::Container(container_id),
                self.docker.remove_container(container_id, Some(options)),
            )
            .await
        {
            Ok(()) | Err(RuntimeError::NotFound(_)) => Ok(()),
            Err(RuntimeError::Conflict(message)) if message.contains("already in progress") => Ok(()),
            Err(err) => Err(err),
        }
    }

    async fn remove_stack(&self, sandbox_id: &SandboxId) -> Result<(), RuntimeError> {
        self.remove_stack_objects(sandbox_id).await
    }

    async fn list_stacks(&self) -> Result<Vec<StackObjects>, RuntimeError> {
        self.stack_networks().await
    }

    async fn inspect(&self, container_id: &str) -> Result<ContainerState, RuntimeError> {
        Ok(state::from_inspect(&self.inspect_raw(container_id).await?))
    }

    /// One list call. Running containers are reported from the list alone (without
    /// `started_at`); ended ones are inspected for the OOM flag and finish time.
    async fn list_managed(&self) -> Result<Vec<ContainerState>, RuntimeError> {
        let filters = HashMap::from([("label", vec![format!("{}=true", label_keys::MANAGED)])]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let summaries = self
            .call(
                "container list",
                Subject::Engine,
                self.docker.list_containers(Some(options)),
            )
            .await?;
        let states: Vec<Option<ContainerState>> = stream::iter(summaries)
            .map(|summary| async move {
                let listed = state::from_summary(&summary);
                if !matches!(listed.state, RunState::Exited | RunState::Dead) {
                    return Ok(Some(listed));
                }
                match self.inspect(&listed.container_id).await {
                    Ok(inspected) => Ok(Some(inspected)),
                    // Removed between the list and the inspect: it is no longer there.
                    Err(RuntimeError::NotFound(_)) => Ok(None),
                    Err(err) => Err(err),
                }
            })
            .buffered(LIST_INSPECT_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(states.into_iter().flatten().collect())
    }

    async fn events(&self) -> Result<BoxStream<'static, Result<RuntimeEvent, RuntimeError>>, RuntimeError> {
        let since = self.engine_now().await?;
        if self
            .event_subscriptions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            > 0
        {
            // A `Required` guard that cannot be rewritten is reported on /health; the events
            // still flow, since stopping them would leave sandboxes unwatched.
            if let Err(error) = self.apply_host_guard().await {
                tracing::error!(engine = %self.info.name, %error, "the host guard could not be rewritten after the engine's events broke");
            }
        }
        let filters = HashMap::from([
            ("type", vec!["container".to_owned()]),
            ("label", vec![format!("{}=true", label_keys::MANAGED)]),
            ("event", FOLLOWED_ACTIONS.iter().map(|a| (*a).to_owned()).collect()),
        ]);
        let options = EventsOptionsBuilder::new().since(&since).filters(&filters).build();
        let name = self.config.name.clone();
        let endpoint = self.info.endpoint.clone();
        let events = self.docker.events(Some(options));
        // Yield the first error, then end: the caller re-subscribes.
        let stream = events
            .map(move |item| match item {
                Ok(message) => Ok(state::event_of(&message)),
                Err(err) => Err(classify(
                    &err,
                    EngineRef {
                        name: &name,
                        endpoint: &endpoint,
                    },
                    Subject::Engine,
                )),
            })
            .scan(false, |failed, item| {
                let next = if *failed {
                    None
                } else {
                    *failed = item.is_err();
                    Some(item)
                };
                futures::future::ready(next)
            })
            .filter_map(|item| futures::future::ready(item.transpose()));
        Ok(stream.boxed())
    }

    async fn exec(&self, container_id: &str, spec: &ExecSpec) -> Result<ExecSession, RuntimeError> {
        self.exec_impl(container_id, spec).await
    }

    async fn exec_state(&self, exec_id: &str) -> Result<ExecState, RuntimeError> {
        self.exec_state_impl(exec_id).await
    }

    async fn exec_resize(&self, exec_id: &str, cols: u16, rows: u16) -> Result<(), RuntimeError> {
        self.exec_resize_impl(exec_id, cols, rows).await
    }

    async fn upload_tar(&self, container_id: &str, dir: &str, tar: ByteStream) -> Result<(), RuntimeError> {
        self.upload_tar_impl(container_id, dir, tar).await
    }

    async fn download_tar(&self, container_id: &str, path: &str) -> Result<EngineByteStream, RuntimeError> {
        self.download_tar_impl(container_id, path).await
    }

    async fn stat_path(&self, container_id: &str, path: &str) -> Result<PathStat, RuntimeError> {
        self.stat_path_impl(container_id, path).await
    }

    async fn logs(
        &self,
        container_id: &str,
        options: &LogOptions,
    ) -> Result<BoxStream<'static, Result<OutputChunk, RuntimeError>>, RuntimeError> {
        self.logs_impl(container_id, options).await
    }

    async fn stats(
        &self,
        container_id: &str,
        stream: bool,
    ) -> Result<BoxStream<'static, Result<ResourceStats, RuntimeError>>, RuntimeError> {
        self.stats_impl(container_id, stream).await
    }

    async fn change_egress(
        &self,
        request: &ContainerRequest,
        container_id: &str,
    ) -> Result<ContainerState, RuntimeError> {
        self.change_egress_impl(request, container_id).await
    }

    async fn pause(&self, container_id: &str) -> Result<(), RuntimeError> {
        self.pause_impl(container_id).await
    }

    async fn stop(&self, container_id: &str, grace: std::time::Duration) -> Result<(), RuntimeError> {
        self.stop_impl(container_id, grace).await
    }

    async fn unpause(&self, container_id: &str) -> Result<(), RuntimeError> {
        self.unpause_impl(container_id).await
    }

    async fn create_volume(
        &self,
        engine_name: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<berth_runtime::VolumeState, RuntimeError> {
        self.create_volume_impl(engine_name, labels).await
    }

    async fn inspect_volume(&self, engine_name: &str) -> Result<berth_runtime::VolumeState, RuntimeError> {
        self.inspect_volume_impl(engine_name).await
    }

    async fn list_volumes(
        &self,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<Vec<berth_runtime::VolumeState>, RuntimeError> {
        self.list_volumes_impl(labels).await
    }

    async fn remove_volume(&self, engine_name: &str) -> Result<(), RuntimeError> {
        self.remove_volume_impl(engine_name).await
    }

    async fn commit(
        &self,
        container_id: &str,
        reference: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<berth_runtime::ImageState, RuntimeError> {
        self.commit_impl(container_id, reference, labels).await
    }

    async fn list_images(
        &self,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<Vec<berth_runtime::ImageState>, RuntimeError> {
        self.list_images_impl(labels).await
    }

    async fn remove_image(&self, reference: &str) -> Result<(), RuntimeError> {
        self.remove_image_impl(reference).await
    }

    async fn build_image(
        &self,
        request: &BuildRequest,
        context: ByteStream,
    ) -> Result<BoxStream<'static, Result<BuildEvent, RuntimeError>>, RuntimeError> {
        self.build_image_impl(request, context).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_refs_are_checked_before_they_reach_a_path() {
        assert!(is_container_ref("berth-0123456789abcdef"));
        assert!(is_container_ref("4f1e2d3c4b5a"));
        for bad in ["", "../images/busybox", "a/b", "-x", "a?force=1", "a b"] {
            assert!(!is_container_ref(bad), "{bad}");
        }
    }

    #[test]
    fn the_engines_security_facts_come_from_its_info() {
        let info: bollard::models::SystemInfo = serde_json::from_value(serde_json::json!({
            "Runtimes": {"runsc": {"path": "/usr/bin/runsc"}, "runc": {"path": "runc"}, "crun": {"path": "/usr/bin/crun"}},
            "DefaultRuntime": "runc",
            "SecurityOptions": ["name=seccomp,profile=default", "name=userns"],
        }))
        .unwrap();
        let security = engine_security(&info);
        assert_eq!(security.runtimes, ["crun", "runc", "runsc"]);
        assert_eq!(security.default_runtime, "runc");
        assert!(security.user_namespaces_remapped && security.seccomp);

        let bare: bollard::models::SystemInfo =
            serde_json::from_value(serde_json::json!({"SecurityOptions": ["name=apparmor"]})).unwrap();
        let security = engine_security(&bare);
        assert!(security.runtimes.is_empty());
        assert!(!security.user_namespaces_remapped && !security.seccomp);
    }

    #[test]
    fn a_disk_limit_is_offered_only_by_storage_drivers_that_enforce_one() {
        let info = |driver: &str, backing: &str| -> bollard::models::SystemInfo {
            serde_json::from_value(serde_json::json!({
                "Driver": driver,
                "DriverStatus": [["Backing Filesystem", backing], ["Supports d_type", "true"]],
            }))
            .unwrap()
        };
        assert_eq!(disk_limit(&info("overlay2", "xfs")), Ok(()));
        assert_eq!(disk_limit(&info("btrfs", "btrfs")), Ok(()));
        let extfs = disk_limit(&info("overlay2", "extfs")).unwrap_err();
        assert!(
            extfs.contains("overlay2 on extfs") && extfs.contains("pquota"),
            "{extfs}"
        );
        let vfs = disk_limit(&info("vfs", "extfs")).unwrap_err();
        assert!(vfs.contains("`vfs`"), "{vfs}");
    }
}
