//! An in-memory [`Runtime`] for unit-testing the layers above the engine seam. Never the proof
//! that a feature works on a real engine.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use berth_core::{PortBinding, SandboxId};
use chrono::Utc;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::broadcast;

use crate::{
    BuildEvent, BuildRequest, ByteStream, ContainerRequest, ContainerState, EngineByteStream, EngineInfo,
    EngineSecurity, EventKind, ExecSession, ExecSpec, ExecState, GuardState, ImageState, LogOptions, OutputChunk,
    PathStat, ResourceStats, RunState, Runtime, RuntimeError, RuntimeEvent, StackObjects, VolumeState,
};

/// Containers kept in a map; events on a broadcast channel; failures injectable.
pub struct FakeRuntime {
    containers: Mutex<BTreeMap<String, ContainerState>>,
    events: broadcast::Sender<RuntimeEvent>,
    next_id: Mutex<u64>,
    /// Images that "exist"; any other image fails with `ImageNotFound`. Empty means all exist.
    images: Mutex<Vec<String>>,
    unavailable: Mutex<bool>,
    /// Every build asked for, in order.
    builds: Mutex<Vec<BuildRequest>>,
    /// When set, builds fail with this message (as a broken Dockerfile would).
    build_failure: Mutex<Option<String>>,
    /// The compose stacks created, by sandbox (their other services are not modelled).
    stacks: Mutex<BTreeMap<SandboxId, StackObjects>>,
    /// When set, `start` fails with this message.
    start_failure: Mutex<Option<String>>,
    /// The OCI runtimes the fake engine offers (`runc` alone unless a test registers more).
    runtimes: Mutex<Vec<String>>,
    /// The volumes that exist, by engine name.
    volumes: Mutex<BTreeMap<String, VolumeState>>,
    /// The engine names of the volumes each container mounts.
    mounts: Mutex<BTreeMap<String, Vec<String>>>,
    /// Committed images, by reference.
    committed: Mutex<BTreeMap<String, ImageState>>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        FakeRuntime {
            containers: Mutex::default(),
            events: broadcast::channel(1024).0,
            next_id: Mutex::new(0),
            images: Mutex::default(),
            unavailable: Mutex::new(false),
            builds: Mutex::default(),
            build_failure: Mutex::default(),
            stacks: Mutex::default(),
            start_failure: Mutex::default(),
            runtimes: Mutex::new(vec!["runc".to_owned()]),
            volumes: Mutex::default(),
            mounts: Mutex::default(),
            committed: Mutex::default(),
        }
    }
}

impl FakeRuntime {
    /// Restricts the images that exist to `images`.
    pub fn with_images(images: &[&str]) -> Self {
        let fake = FakeRuntime::default();
        *lock(&fake.images) = images.iter().map(|image| image.to_string()).collect();
        fake
    }

    /// Makes every call fail with `Unavailable` until called again with `false`.
    pub fn set_unavailable(&self, unavailable: bool) {
        *lock(&self.unavailable) = unavailable;
    }

    /// Makes every build fail with `message` (its stream's last item), or succeed again with `None`.
    pub fn fail_builds_with(&self, message: Option<&str>) {
        *lock(&self.build_failure) = message.map(str::to_owned);
    }

    /// The builds asked for so far.
    pub fn builds(&self) -> Vec<BuildRequest> {
        lock(&self.builds).clone()
    }

    pub fn container(&self, container_id: &str) -> Option<ContainerState> {
        lock(&self.containers).get(container_id).cloned()
    }

    pub fn container_ids(&self) -> Vec<String> {
        lock(&self.containers).keys().cloned().collect()
    }

    /// Simulates the main process ending on its own.
    pub fn exit(&self, container_id: &str, exit_code: i64, oom_killed: bool) {
        let sandbox_id = {
            let mut containers = lock(&self.containers);
            let Some(container) = containers.get_mut(container_id) else {
                return;
            };
            container.state = RunState::Exited;
            container.exit_code = Some(exit_code);
            container.oom_killed = oom_killed;
            container.finished_at = Some(Utc::now());
            container.sandbox_id.clone()
        };
        self.emit(
            container_id,
            sandbox_id,
            EventKind::Die {
                exit_code: Some(exit_code),
            },
        );
    }

    /// Simulates the engine's `oom` event, which may arrive after the container's exit and even
    /// after its removal.
    pub fn report_oom(&self, container_id: &str, sandbox_id: &SandboxId) {
        self.emit(container_id, Some(sandbox_id.clone()), EventKind::Oom);
    }

    /// Puts a container back in the state a create leaves before its start: made, never run,
    /// as a server killed between the two engine calls leaves it.
    pub fn unstart(&self, container_id: &str) {
        if let Some(container) = lock(&self.containers).get_mut(container_id) {
            container.state = RunState::Created;
            container.started_at = None;
            container.ip = None;
        }
    }

    /// Makes every `start` fail with `message`, or succeed again with `None`.
    pub fn fail_starts_with(&self, message: Option<&str>) {
        *lock(&self.start_failure) = message.map(str::to_owned);
    }

    /// Registers one more OCI runtime, as an operator reloading the engine's configuration would.
    pub fn register_runtime(&self, name: &str) {
        let mut runtimes = lock(&self.runtimes);
        runtimes.push(name.to_owned());
        runtimes.sort();
    }

    /// Simulates `docker rm -f` behind berth's back.
    pub fn remove_behind_back(&self, container_id: &str) {
        let removed = lock(&self.containers).remove(container_id);
        lock(&self.mounts).remove(container_id);
        if let Some(container) = removed {
            self.emit(container_id, container.sandbox_id, EventKind::Destroy);
        }
    }

    /// Plants a managed container with no berth record, as a crash between create and record would.
    pub fn plant(&self, labels: BTreeMap<String, String>, created_at: chrono::DateTime<Utc>) -> String {
        let container_id = self.next_container_id();
        let sandbox_id = labels
            .get(berth_core::sandbox::label_keys::SANDBOX)
            .and_then(|id| SandboxId::parse(id));
        let state = ContainerState {
            container_id: container_id.clone(),
            sandbox_id,
            labels,
            state: RunState::Running,
            exit_code: None,
            oom_killed: false,
            ip: Some("10.0.0.9".into()),
            ports: Vec::new(),
            created_at,
            started_at: Some(created_at),
            finished_at: None,
            restart_count: 0,
        };
        lock(&self.containers).insert(container_id.clone(), state);
        container_id
    }

    fn next_container_id(&self) -> String {
        let mut next = lock(&self.next_id);
        *next += 1;
        format!("fake{:060}", *next)
    }

    fn emit(&self, container_id: &str, sandbox_id: Option<SandboxId>, kind: EventKind) {
        // No subscriber is fine: nobody is listening yet.
        let _ = self.events.send(RuntimeEvent {
            container_id: container_id.to_owned(),
            sandbox_id,
            kind,
        });
    }

    fn check_available(&self) -> Result<(), RuntimeError> {
        if *lock(&self.unavailable) {
            return Err(RuntimeError::Unavailable {
                engine: "fake".into(),
                endpoint: "memory://fake".into(),
                detail: "switched off by the test".into(),
            });
        }
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait]
impl Runtime for FakeRuntime {
    fn name(&self) -> &str {
        "fake"
    }

    async fn info(&self) -> Result<EngineInfo, RuntimeError> {
        self.check_available()?;
        Ok(EngineInfo {
            name: "fake".into(),
            endpoint: "memory://fake".into(),
            version: "0".into(),
            api_version: "1.41".into(),
        })
    }

    async fn security(&self) -> Result<EngineSecurity, RuntimeError> {
        self.check_available()?;
        Ok(EngineSecurity {
            runtimes: lock(&self.runtimes).clone(),
            default_runtime: "runc".to_owned(),
            user_namespaces_remapped: false,
            seccomp: true,
            disk_limit: Err("the fake runtime's storage limits nothing".to_owned()),
            host_guard: GuardState::Off,
        })
    }

    async fn create(&self, request: &ContainerRequest) -> Result<ContainerState, RuntimeError> {
        self.check_available()?;
        let images = lock(&self.images).clone();
        if !images.is_empty() && !images.contains(&request.spec.image) {
            return Err(RuntimeError::ImageNotFound {
                image: request.spec.image.clone(),
                engine: "fake".into(),
                detail: "no such image".into(),
            });
        }
        let label = |key: &str| request.labels.get(key).map(String::as_str).unwrap_or_default();
        let mounted: Vec<String> = request
            .spec
            .volumes
            .iter()
            .map(|mount| {
                berth_core::volume::engine_name(
                    label(berth_core::sandbox::label_keys::CLUSTER),
                    label(berth_core::sandbox::label_keys::OWNER),
                    &mount.name,
                )
            })
            .collect();
        if let Some(missing) = mounted.iter().find(|name| !lock(&self.volumes).contains_key(*name)) {
            return Err(RuntimeError::Invalid(format!("no such volume {missing}")));
        }
        let container_id = self.next_container_id();
        lock(&self.mounts).insert(container_id.clone(), mounted);
        let now = Utc::now();
        let state = ContainerState {
            container_id: container_id.clone(),
            sandbox_id: Some(request.sandbox_id.clone()),
            labels: request.labels.clone(),
            state: RunState::Running,
            exit_code: None,
            oom_killed: false,
            ip: Some("10.0.0.2".into()),
            ports: request
                .spec
                .ports
                .iter()
                .enumerate()
                .map(|(index, port)| PortBinding {
                    container_port: *port,
                    host_ip: "127.0.0.1".into(),
                    host_port: 40000 + index as u16,
                })
                .collect(),
            created_at: now,
            started_at: Some(now),
            finished_at: None,
            restart_count: 0,
        };
        lock(&self.containers).insert(container_id.clone(), state.clone());
        if request.spec.stack.is_some() {
            lock(&self.stacks).insert(
                request.sandbox_id.clone(),
                StackObjects {
                    sandbox_id: request.sandbox_id.clone(),
                    labels: request.labels.clone(),
                    created_at: now,
                },
            );
        }
        self.emit(&container_id, Some(request.sandbox_id.clone()), EventKind::Start);
        Ok(state)
    }

    async fn start(&self, container_id: &str) -> Result<ContainerState, RuntimeError> {
        self.check_available()?;
        if let Some(message) = lock(&self.start_failure).clone() {
            return Err(RuntimeError::Invalid(message));
        }
        let started = {
            let mut containers = lock(&self.containers);
            let container = containers
                .get_mut(container_id)
                .ok_or_else(|| RuntimeError::NotFound(container_id.to_owned()))?;
            if matches!(container.state, RunState::Created | RunState::Exited) {
                container.state = RunState::Running;
                container.started_at = Some(Utc::now());
                container.ip = Some("10.0.0.2".into());
            }
            container.clone()
        };
        self.emit(container_id, started.sandbox_id.clone(), EventKind::Start);
        Ok(started)
    }

    async fn remove_stack(&self, sandbox_id: &SandboxId) -> Result<(), RuntimeError> {
        self.check_available()?;
        lock(&self.stacks).remove(sandbox_id);
        let removed: Vec<String> = lock(&self.containers)
            .values()
            .filter(|container| container.sandbox_id.as_ref() == Some(sandbox_id))
            .map(|container| container.container_id.clone())
            .collect();
        for container_id in removed {
            self.remove(&container_id).await?;
        }
        Ok(())
    }

    async fn list_stacks(&self) -> Result<Vec<StackObjects>, RuntimeError> {
        self.check_available()?;
        Ok(lock(&self.stacks).values().cloned().collect())
    }

    async fn remove(&self, container_id: &str) -> Result<(), RuntimeError> {
        self.check_available()?;
        let removed = lock(&self.containers).remove(container_id);
        if let Some(container) = removed {
            self.emit(container_id, container.sandbox_id, EventKind::Destroy);
        }
        Ok(())
    }

    async fn inspect(&self, container_id: &str) -> Result<ContainerState, RuntimeError> {
        self.check_available()?;
        self.container(container_id)
            .ok_or_else(|| RuntimeError::NotFound(container_id.to_owned()))
    }

    async fn list_managed(&self) -> Result<Vec<ContainerState>, RuntimeError> {
        self.check_available()?;
        Ok(lock(&self.containers).values().cloned().collect())
    }

    async fn events(&self) -> Result<BoxStream<'static, Result<RuntimeEvent, RuntimeError>>, RuntimeError> {
        self.check_available()?;
        let receiver = self.events.subscribe();
        let stream = tokio_stream_from(receiver);
        Ok(stream.boxed())
    }

    async fn exec(&self, _container_id: &str, _spec: &ExecSpec) -> Result<ExecSession, RuntimeError> {
        Err(unsupported("exec"))
    }

    async fn exec_state(&self, _exec_id: &str) -> Result<ExecState, RuntimeError> {
        Err(unsupported("exec"))
    }

    async fn exec_resize(&self, _exec_id: &str, _cols: u16, _rows: u16) -> Result<(), RuntimeError> {
        Err(unsupported("exec"))
    }

    async fn upload_tar(&self, _container_id: &str, _dir: &str, _tar: ByteStream) -> Result<(), RuntimeError> {
        Err(unsupported("file transfer"))
    }

    async fn download_tar(&self, _container_id: &str, _path: &str) -> Result<EngineByteStream, RuntimeError> {
        Err(unsupported("file transfer"))
    }

    async fn stat_path(&self, _container_id: &str, _path: &str) -> Result<PathStat, RuntimeError> {
        Err(unsupported("file transfer"))
    }

    async fn logs(
        &self,
        _container_id: &str,
        _options: &LogOptions,
    ) -> Result<BoxStream<'static, Result<OutputChunk, RuntimeError>>, RuntimeError> {
        Err(unsupported("logs"))
    }

    async fn stats(
        &self,
        _container_id: &str,
        _stream: bool,
    ) -> Result<BoxStream<'static, Result<ResourceStats, RuntimeError>>, RuntimeError> {
        Err(unsupported("stats"))
    }

    async fn pause(&self, container_id: &str) -> Result<(), RuntimeError> {
        self.set_paused(container_id, true)
    }

    async fn stop(&self, container_id: &str, _grace: std::time::Duration) -> Result<(), RuntimeError> {
        self.check_available()?;
        let sandbox_id = {
            let mut containers = lock(&self.containers);
            let container = containers
                .get_mut(container_id)
                .ok_or_else(|| RuntimeError::NotFound(container_id.to_owned()))?;
            if !matches!(container.state, RunState::Running | RunState::Paused) {
                return Ok(());
            }
            container.state = RunState::Exited;
            container.exit_code = Some(143);
            container.sandbox_id.clone()
        };
        self.emit(container_id, sandbox_id, EventKind::Die { exit_code: Some(143) });
        Ok(())
    }

    /// The fake has one network: the container stays as it is.
    async fn change_egress(
        &self,
        _request: &ContainerRequest,
        container_id: &str,
    ) -> Result<ContainerState, RuntimeError> {
        self.inspect(container_id).await
    }

    async fn unpause(&self, container_id: &str) -> Result<(), RuntimeError> {
        self.set_paused(container_id, false)
    }

    async fn create_volume(
        &self,
        engine_name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<VolumeState, RuntimeError> {
        self.check_available()?;
        let mut volumes = lock(&self.volumes);
        if volumes.contains_key(engine_name) {
            return Err(RuntimeError::Conflict(format!("volume {engine_name} exists")));
        }
        let volume = VolumeState {
            engine_name: engine_name.to_owned(),
            labels: labels.clone(),
            created_at: Some(Utc::now()),
        };
        volumes.insert(engine_name.to_owned(), volume.clone());
        Ok(volume)
    }

    async fn inspect_volume(&self, engine_name: &str) -> Result<VolumeState, RuntimeError> {
        self.check_available()?;
        lock(&self.volumes)
            .get(engine_name)
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound(engine_name.to_owned()))
    }

    async fn list_volumes(&self, labels: &BTreeMap<String, String>) -> Result<Vec<VolumeState>, RuntimeError> {
        self.check_available()?;
        Ok(lock(&self.volumes)
            .values()
            .filter(|volume| labels.iter().all(|(key, value)| volume.labels.get(key) == Some(value)))
            .cloned()
            .collect())
    }

    async fn commit(
        &self,
        container_id: &str,
        reference: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<ImageState, RuntimeError> {
        self.check_available()?;
        if self.container(container_id).is_none() {
            return Err(RuntimeError::NotFound(container_id.to_owned()));
        }
        let image = ImageState {
            id: format!("sha256:{:064x}", lock(&self.committed).len() + 1),
            labels: labels.clone(),
            size_bytes: 1024,
            created_at: Some(Utc::now()),
        };
        lock(&self.committed).insert(reference.to_owned(), image.clone());
        Ok(image)
    }

    async fn list_images(&self, labels: &BTreeMap<String, String>) -> Result<Vec<ImageState>, RuntimeError> {
        self.check_available()?;
        Ok(lock(&self.committed)
            .values()
            .filter(|image| labels.iter().all(|(key, value)| image.labels.get(key) == Some(value)))
            .cloned()
            .collect())
    }

    async fn remove_image(&self, reference: &str) -> Result<(), RuntimeError> {
        self.check_available()?;
        lock(&self.committed)
            .remove(reference)
            .map(|_| ())
            .ok_or_else(|| RuntimeError::NotFound(reference.to_owned()))
    }

    async fn remove_volume(&self, engine_name: &str) -> Result<(), RuntimeError> {
        self.check_available()?;
        if lock(&self.mounts)
            .values()
            .any(|names| names.iter().any(|name| name == engine_name))
        {
            return Err(RuntimeError::Conflict(format!("volume {engine_name} is in use")));
        }
        lock(&self.volumes)
            .remove(engine_name)
            .map(|_| ())
            .ok_or_else(|| RuntimeError::NotFound(engine_name.to_owned()))
    }

    /// Reads the whole context (as the engine takes it before it starts), records the build,
    /// then reports one log line and the result. A built image exists from then on.
    async fn build_image(
        &self,
        request: &BuildRequest,
        mut context: ByteStream,
    ) -> Result<BoxStream<'static, Result<BuildEvent, RuntimeError>>, RuntimeError> {
        self.check_available()?;
        let mut context_bytes = 0usize;
        while let Some(chunk) = context.next().await {
            let chunk = chunk
                .map_err(|error| RuntimeError::Invalid(format!("the build context could not be read: {error}")))?;
            context_bytes += chunk.len();
        }
        lock(&self.builds).push(request.clone());
        let log = Ok(BuildEvent::Log(format!(
            "fake build of {} from {context_bytes} context bytes",
            request.tag
        )));
        let outcome = match lock(&self.build_failure).clone() {
            Some(message) => Err(RuntimeError::Invalid(message)),
            None => {
                let mut images = lock(&self.images);
                if !images.is_empty() && !images.contains(&request.tag) {
                    images.push(request.tag.clone());
                }
                Ok(BuildEvent::Done {
                    image_id: format!("sha256:{:064x}", lock(&self.builds).len()),
                })
            }
        };
        Ok(futures::stream::iter([log, outcome]).boxed())
    }
}

fn tokio_stream_from(
    receiver: broadcast::Receiver<RuntimeEvent>,
) -> impl futures::Stream<Item = Result<RuntimeEvent, RuntimeError>> {
    futures::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(event) => return Some((Ok(event), receiver)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

/// The fake has no processes or files: those are proved against the real engine only.
fn unsupported(what: &str) -> RuntimeError {
    RuntimeError::Invalid(format!("the fake runtime has no {what}"))
}

impl FakeRuntime {
    fn set_paused(&self, container_id: &str, paused: bool) -> Result<(), RuntimeError> {
        self.check_available()?;
        let sandbox_id = {
            let mut containers = lock(&self.containers);
            let container = containers
                .get_mut(container_id)
                .ok_or_else(|| RuntimeError::NotFound(container_id.to_owned()))?;
            container.state = if paused { RunState::Paused } else { RunState::Running };
            container.sandbox_id.clone()
        };
        self.emit(
            container_id,
            sandbox_id,
            if paused { EventKind::Pause } else { EventKind::Unpause },
        );
        Ok(())
    }
}
