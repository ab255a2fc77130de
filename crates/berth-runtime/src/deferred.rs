//! [`DeferredRuntime`]: an engine connected in the background. berth starts, answers its
//! probes and serves reads while the engine is down (an engine that boots after berth, or
//! restarts); every engine call fails `Unavailable` with the last connect error until the engine
//! answers, and from then on goes straight to it.

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use berth_core::SandboxId;
use futures::stream::BoxStream;

use crate::{
    BuildEvent, BuildRequest, ByteStream, ContainerRequest, ContainerState, EngineByteStream, EngineInfo,
    EngineSecurity, ExecSession, ExecSpec, ExecState, ImageState, LogOptions, OutputChunk, PathStat, ResourceStats,
    Runtime, RuntimeError, RuntimeEvent, StackObjects, VolumeState,
};
use std::collections::BTreeMap;

/// First wait between two connect attempts; it doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// A [`Runtime`] whose engine is connected by a background task that retries with backoff.
pub struct DeferredRuntime {
    name: String,
    endpoint: String,
    engine: OnceLock<Arc<dyn Runtime>>,
    /// Why the last connect attempt failed, for the `Unavailable` answers until one succeeds.
    last_error: Mutex<String>,
}

impl DeferredRuntime {
    /// Starts connecting with `connect` (on the current tokio runtime) until it succeeds. `name`
    /// and `endpoint` describe the engine until then.
    pub fn connect_in_background<C, F>(name: &str, endpoint: &str, first_error: &RuntimeError, connect: C) -> Arc<Self>
    where
        C: Fn() -> F + Send + 'static,
        F: Future<Output = Result<Arc<dyn Runtime>, RuntimeError>> + Send,
    {
        let deferred = Arc::new(DeferredRuntime {
            name: name.to_owned(),
            endpoint: endpoint.to_owned(),
            engine: OnceLock::new(),
            last_error: Mutex::new(first_error.to_string()),
        });
        let connecting = Arc::clone(&deferred);
        tokio::spawn(async move {
            let mut wait = FIRST_RETRY;
            loop {
                tokio::time::sleep(wait).await;
                match connect().await {
                    Ok(engine) => {
                        tracing::info!(engine = %connecting.name, endpoint = %connecting.endpoint, "the engine answers now");
                        let _ = connecting.engine.set(engine);
                        return;
                    }
                    Err(error) => {
                        tracing::debug!(engine = %connecting.name, %error, retry_in = ?wait, "the engine still does not answer");
                        *connecting.lock_error() = error.to_string();
                    }
                }
                wait = (wait * 2).min(MAX_RETRY);
            }
        });
        deferred
    }

    /// Whether the engine has answered.
    pub fn is_connected(&self) -> bool {
        self.engine.get().is_some()
    }

    fn lock_error(&self) -> std::sync::MutexGuard<'_, String> {
        self.last_error.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn engine(&self) -> Result<&Arc<dyn Runtime>, RuntimeError> {
        self.engine.get().ok_or_else(|| RuntimeError::Unavailable {
            engine: self.name.clone(),
            endpoint: self.endpoint.clone(),
            detail: format!("not reached since berth started ({}); retrying", self.lock_error()),
        })
    }
}

#[async_trait]
impl Runtime for DeferredRuntime {
    fn name(&self) -> &str {
        &self.name
    }

    async fn info(&self) -> Result<EngineInfo, RuntimeError> {
        self.engine()?.info().await
    }

    async fn security(&self) -> Result<EngineSecurity, RuntimeError> {
        self.engine()?.security().await
    }

    async fn create(&self, request: &ContainerRequest) -> Result<ContainerState, RuntimeError> {
        self.engine()?.create(request).await
    }

    async fn remove_stack(&self, sandbox_id: &SandboxId) -> Result<(), RuntimeError> {
        self.engine()?.remove_stack(sandbox_id).await
    }

    async fn list_stacks(&self) -> Result<Vec<StackObjects>, RuntimeError> {
        self.engine()?.list_stacks().await
    }

    async fn remove(&self, container_id: &str) -> Result<(), RuntimeError> {
        self.engine()?.remove(container_id).await
    }

    async fn inspect(&self, container_id: &str) -> Result<ContainerState, RuntimeError> {
        self.engine()?.inspect(container_id).await
    }

    async fn list_managed(&self) -> Result<Vec<ContainerState>, RuntimeError> {
        self.engine()?.list_managed().await
    }

    async fn events(&self) -> Result<BoxStream<'static, Result<RuntimeEvent, RuntimeError>>, RuntimeError> {
        self.engine()?.events().await
    }

    async fn exec(&self, container_id: &str, spec: &ExecSpec) -> Result<ExecSession, RuntimeError> {
        self.engine()?.exec(container_id, spec).await
    }

    async fn exec_state(&self, exec_id: &str) -> Result<ExecState, RuntimeError> {
        self.engine()?.exec_state(exec_id).await
    }

    async fn exec_resize(&self, exec_id: &str, cols: u16, rows: u16) -> Result<(), RuntimeError> {
        self.engine()?.exec_resize(exec_id, cols, rows).await
    }

    async fn upload_tar(&self, container_id: &str, dir: &str, tar: ByteStream) -> Result<(), RuntimeError> {
        self.engine()?.upload_tar(container_id, dir, tar).await
    }

    async fn download_tar(&self, container_id: &str, path: &str) -> Result<EngineByteStream, RuntimeError> {
        self.engine()?.download_tar(container_id, path).await
    }

    async fn stat_path(&self, container_id: &str, path: &str) -> Result<PathStat, RuntimeError> {
        self.engine()?.stat_path(container_id, path).await
    }

    async fn logs(
        &self,
        container_id: &str,
        options: &LogOptions,
    ) -> Result<BoxStream<'static, Result<OutputChunk, RuntimeError>>, RuntimeError> {
        self.engine()?.logs(container_id, options).await
    }

    async fn stats(
        &self,
        container_id: &str,
        stream: bool,
    ) -> Result<BoxStream<'static, Result<ResourceStats, RuntimeError>>, RuntimeError> {
        self.engine()?.stats(container_id, stream).await
    }

    async fn start(&self, container_id: &str) -> Result<ContainerState, RuntimeError> {
        self.engine()?.start(container_id).await
    }

    async fn pause(&self, container_id: &str) -> Result<(), RuntimeError> {
        self.engine()?.pause(container_id).await
    }

    async fn stop(&self, container_id: &str, grace: std::time::Duration) -> Result<(), RuntimeError> {
        self.engine()?.stop(container_id, grace).await
    }

    async fn change_egress(
        &self,
        request: &ContainerRequest,
        container_id: &str,
    ) -> Result<ContainerState, RuntimeError> {
        self.engine()?.change_egress(request, container_id).await
    }

    async fn unpause(&self, container_id: &str) -> Result<(), RuntimeError> {
        self.engine()?.unpause(container_id).await
    }

    async fn create_volume(
        &self,
        engine_name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<VolumeState, RuntimeError> {
        self.engine()?.create_volume(engine_name, labels).await
    }

    async fn inspect_volume(&self, engine_name: &str) -> Result<VolumeState, RuntimeError> {
        self.engine()?.inspect_volume(engine_name).await
    }

    async fn list_volumes(&self, labels: &BTreeMap<String, String>) -> Result<Vec<VolumeState>, RuntimeError> {
        self.engine()?.list_volumes(labels).await
    }

    async fn remove_volume(&self, engine_name: &str) -> Result<(), RuntimeError> {
        self.engine()?.remove_volume(engine_name).await
    }

    async fn commit(
        &self,
        container_id: &str,
        reference: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<ImageState, RuntimeError> {
        self.engine()?.commit(container_id, reference, labels).await
    }

    async fn list_images(&self, labels: &BTreeMap<String, String>) -> Result<Vec<ImageState>, RuntimeError> {
        self.engine()?.list_images(labels).await
    }

    async fn remove_image(&self, reference: &str) -> Result<(), RuntimeError> {
        self.engine()?.remove_image(reference).await
    }

    async fn build_image(
        &self,
        request: &BuildRequest,
        context: ByteStream,
    ) -> Result<BoxStream<'static, Result<BuildEvent, RuntimeError>>, RuntimeError> {
        self.engine()?.build_image(request, context).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::fake::FakeRuntime;

    fn refused() -> RuntimeError {
        RuntimeError::Unavailable {
            engine: "local".into(),
            endpoint: "unix:///nowhere.sock".into(),
            detail: "connection refused".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn calls_fail_unavailable_with_the_reason_until_the_engine_answers_then_reach_it() {
        let attempts = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&attempts);
        let deferred = DeferredRuntime::connect_in_background("local", "unix:///nowhere.sock", &refused(), move || {
            let attempt = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if attempt < 3 {
                    Err(refused())
                } else {
                    Ok(Arc::new(FakeRuntime::default()) as Arc<dyn Runtime>)
                }
            }
        });
        assert_eq!(deferred.name(), "local");
        let RuntimeError::Unavailable { detail, endpoint, .. } = deferred.info().await.unwrap_err() else {
            panic!("an engine not reached yet is unavailable");
        };
        assert!(detail.contains("connection refused"), "{detail}");
        assert_eq!(endpoint, "unix:///nowhere.sock");
        assert!(!deferred.is_connected());

        // 250 + 500 + 1000 + 2000 ms of backoff: the fourth attempt connects.
        tokio::time::sleep(Duration::from_millis(3800)).await;
        assert_eq!(attempts.load(Ordering::SeqCst), 4);
        assert!(deferred.is_connected());
        assert_eq!(deferred.info().await.unwrap().name, "fake");
        assert!(deferred.list_managed().await.unwrap().is_empty());
    }
}
