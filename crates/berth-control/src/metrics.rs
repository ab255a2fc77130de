//! berth's Prometheus metrics: the registry and every series the server exports on `/metrics`,
//! and the engine and store wrappers that time calls (the HTTP layer reports its requests here).
//!
//! Series names are a contract with dashboards (docs/deploy.md, "Metrics contract"): rename none.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use berth_core::{ApiKey, AuditEntry, EnvService, EnvServiceId, KeyId, Quota, Sandbox, SandboxId, Status, Template};
use berth_runtime::{
    BuildEvent, BuildRequest, ByteStream, ContainerRequest, ContainerState, EngineByteStream, EngineInfo,
    EngineSecurity, ExecSession, ExecSpec, ExecState, LogOptions, OutputChunk, PathStat, ResourceStats, Runtime,
    RuntimeError, RuntimeEvent, StackObjects,
};
use berth_store::{Cursor, Lease, Page, SandboxFilter, Store, StoreError};
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The content type of the text exposition `/metrics` answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SandboxLabels {
    status: String,
    engine: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuditLabels {
    action: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthFailureLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CorrectionLabels {
    correction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabels {
    path: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TemplateLabels {
    template: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoopLabels {
    name: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// Sandbox operations counted by `berth_sandbox_operations_total{operation}`.
#[derive(Debug, Clone, Copy)]
pub enum Operation {
    Create,
    Claim,
    Delete,
    Expire,
    CreateFailed,
}

impl Operation {
    fn label(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Claim => "claim",
            Operation::Delete => "delete",
            Operation::Expire => "expire",
            Operation::CreateFailed => "create_failed",
        }
    }
}

/// A difference between a record and the engine that a resync corrected, counted by
/// `berth_resync_corrections_total{correction}`.
#[derive(Debug, Clone, Copy)]
pub enum Correction {
    /// A `Pending`/`Creating` record whose container the engine has: it takes the container's facts.
    Adopted,
    /// A container made but never started (a stop between create and start): started now.
    Started,
    /// Such a container that would not start: its sandbox ended `start_failed`.
    StartFailed,
    /// A `Pending`/`Creating` record whose create never reached the engine.
    CreateInterrupted,
    /// A live record whose container is gone.
    ContainerLost,
    /// A live record whose status the container contradicts (it exited, or was paused).
    Status,
    /// A container or compose stack of this cluster with no live record, removed.
    Collected,
}

impl Correction {
    fn label(self) -> &'static str {
        match self {
            Correction::Adopted => "adopted",
            Correction::Started => "started",
            Correction::StartFailed => "start_failed",
            Correction::CreateInterrupted => "create_interrupted",
            Correction::ContainerLost => "container_lost",
            Correction::Status => "status",
            Correction::Collected => "collected",
        }
    }
}

/// How a create was served: a new container, or a claimed warm one.
#[derive(Debug, Clone, Copy)]
pub enum CreatePath {
    Cold,
    Pooled,
}

/// Every series berth exports, registered once. Cheap to share behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    /// Scrapes rebuild the sandbox gauges; two at once must not interleave.
    render_lock: Mutex<()>,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram>,
    sandboxes: Family<SandboxLabels, Gauge>,
    operations: Family<OperationLabels, Counter>,
    corrections: Family<CorrectionLabels, Counter>,
    audit: Family<AuditLabels, Counter>,
    auth_failures: Family<AuthFailureLabels, Counter>,
    create_duration: Family<PathLabels, Histogram>,
    idle_pauses: Counter,
    wake_duration: Histogram,
    hibernations: Counter,
    hibernation_wake_duration: Histogram,
    pool_ready: Family<TemplateLabels, Gauge>,
    errors: Family<KindLabels, Counter>,
    loop_duration: Family<LoopLabels, Histogram>,
    engine_calls: Family<OperationLabels, Histogram>,
    engine_errors: Family<OperationLabels, Counter>,
    store_calls: Family<OperationLabels, Histogram>,
    store_errors: Family<OperationLabels, Counter>,
    leader: Gauge,
}

/// Latency buckets from 1 ms to about 33 s: sandbox creates, engine and store calls and HTTP
/// requests all fall in this range.
fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 16,
    ))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration = Family::<RouteLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        let sandboxes = Family::<SandboxLabels, Gauge>::default();
        let operations = Family::<OperationLabels, Counter>::default();
        let corrections = Family::<CorrectionLabels, Counter>::default();
        let audit = Family::<AuditLabels, Counter>::default();
        let auth_failures = Family::<AuthFailureLabels, Counter>::default();
        let create_duration = Family::<PathLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        let idle_pauses = Counter::default();
        let wake_duration = latency_histogram();
        let hibernations = Counter::default();
        let hibernation_wake_duration = latency_histogram();
        let pool_ready = Family::<TemplateLabels, Gauge>::default();
        let errors = Family::<KindLabels, Counter>::default();
        let loop_duration = Family::<LoopLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        let engine_calls = Family::<OperationLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        let engine_errors = Family::<OperationLabels, Counter>::default();
        let store_calls = Family::<OperationLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        let store_errors = Family::<OperationLabels, Counter>::default();
        let leader = Gauge::default();
        let build_info = Family::<VersionLabels, Gauge>::default();
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);

        registry.register(
            "berth_http_requests",
            "HTTP requests answered, by method, route and status",
            http_requests.clone(),
        );
        registry.register(
            "berth_http_request_duration_seconds",
            "Time to the response head, by method and route",
            http_duration.clone(),
        );
        registry.register(
            "berth_sandboxes",
            "Sandbox records by status and engine",
            sandboxes.clone(),
        );
        registry.register(
            "berth_sandbox_operations",
            "Sandbox creates, claims, deletes, expiries and failed creates",
            operations.clone(),
        );
        registry.register(
            "berth_resync_corrections",
            "Differences between records and the engine that a resync corrected, by kind",
            corrections.clone(),
        );
        registry.register(
            "berth_audit_events",
            "Audited requests (mutating ones and refused authentications), by action and outcome",
            audit.clone(),
        );
        registry.register(
            "berth_auth_failures",
            "Requests refused for want of a valid API key, by reason",
            auth_failures.clone(),
        );
        registry.register(
            "berth_create_duration_seconds",
            "Create request to Running, by path (cold: a new container; pooled: a warm one claimed)",
            create_duration.clone(),
        );
        registry.register(
            "berth_idle_pauses",
            "Sandboxes paused after their idle_timeout without a request that needs them",
            idle_pauses.clone(),
        );
        registry.register(
            "berth_wake_duration_seconds",
            "A request's wait for an idle-paused sandbox it needed to run again (its count: the wakes)",
            wake_duration.clone(),
        );
        registry.register(
            "berth_hibernations",
            "Idle-paused sandboxes stopped (files kept, memory freed) after their hibernate_after",
            hibernations.clone(),
        );
        registry.register(
            "berth_hibernation_wake_duration_seconds",
            "A request's wait for a hibernated sandbox it needed to start and run again (its count: the wakes)",
            hibernation_wake_duration.clone(),
        );
        registry.register(
            "berth_pool_ready",
            "Warm sandboxes ready to claim, by template",
            pool_ready.clone(),
        );
        registry.register(
            "berth_errors",
            "Errors: API problems by their type, and background failures",
            errors.clone(),
        );
        registry.register(
            "berth_reconciler_loop_duration_seconds",
            "Duration of one pass of a reconciler loop",
            loop_duration.clone(),
        );
        registry.register(
            "berth_engine_call_duration_seconds",
            "Container engine calls, by operation",
            engine_calls.clone(),
        );
        registry.register(
            "berth_engine_errors",
            "Failed container engine calls, by operation",
            engine_errors.clone(),
        );
        registry.register(
            "berth_store_call_duration_seconds",
            "Store calls, by operation",
            store_calls.clone(),
        );
        registry.register(
            "berth_store_errors",
            "Failed store calls, by operation",
            store_errors.clone(),
        );
        registry.register(
            "berth_leader",
            "1 while this process runs the reconciler, expiries and pools of its deployment",
            leader.clone(),
        );
        registry.register("berth_build_info", "The running berth version", build_info);

        Metrics {
            registry,
            render_lock: Mutex::new(()),
            http_requests,
            http_duration,
            sandboxes,
            operations,
            corrections,
            audit,
            auth_failures,
            create_duration,
            idle_pauses,
            wake_duration,
            hibernations,
            hibernation_wake_duration,
            pool_ready,
            errors,
            loop_duration,
            engine_calls,
            engine_errors,
            store_calls,
            store_errors,
            leader,
        }
    }

    pub fn count_operation(&self, operation: Operation) {
        self.operations
            .get_or_create(&OperationLabels {
                operation: operation.label(),
            })
            .inc();
    }

    /// Counts and times one answered HTTP request by its route template (never the raw path,
    /// which would give each sandbox id its own series).
    pub fn observe_http(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.http_duration
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(took.as_secs_f64());
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
    }

    /// One audited request; `outcome` is `ok`, `denied` (401/403/404/429) or `failed`.
    pub fn count_audit(&self, action: &str, outcome: &'static str) {
        self.audit
            .get_or_create(&AuditLabels {
                action: action.to_owned(),
                outcome,
            })
            .inc();
    }

    /// One request refused for want of a valid key (`missing`, `malformed`, `unknown`,
    /// `revoked`, `expired`).
    pub fn count_auth_failure(&self, reason: &'static str) {
        self.auth_failures.get_or_create(&AuthFailureLabels { reason }).inc();
    }

    pub fn count_correction(&self, correction: Correction) {
        self.corrections
            .get_or_create(&CorrectionLabels {
                correction: correction.label(),
            })
            .inc();
    }

    pub fn observe_create(&self, path: CreatePath, took: Duration) {
        let path = match path {
            CreatePath::Cold => "cold",
            CreatePath::Pooled => "pooled",
        };
        self.create_duration
            .get_or_create(&PathLabels { path })
            .observe(took.as_secs_f64());
    }

    pub fn count_idle_pause(&self) {
        self.idle_pauses.inc();
    }

    pub fn observe_wake(&self, took: Duration) {
        self.wake_duration.observe(took.as_secs_f64());
    }

    pub fn count_hibernation(&self) {
        self.hibernations.inc();
    }

    pub fn observe_hibernation_wake(&self, took: Duration) {
        self.hibernation_wake_duration.observe(took.as_secs_f64());
    }

    pub fn set_pool_ready(&self, template: &str, ready: usize) {
        self.pool_ready
            .get_or_create(&TemplateLabels {
                template: template.to_owned(),
            })
            .set(i64::try_from(ready).unwrap_or(i64::MAX));
    }

    /// Counts an error of `kind`: an API problem type (`not-found`) or a background failure
    /// (`expiry`, `resync`, `engine_events`).
    pub fn count_error(&self, kind: &str) {
        self.errors.get_or_create(&KindLabels { kind: kind.to_owned() }).inc();
    }

    pub fn observe_loop(&self, name: &'static str, took: Duration) {
        self.loop_duration
            .get_or_create(&LoopLabels { name })
            .observe(took.as_secs_f64());
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    fn observe_call<T, E>(
        calls: &Family<OperationLabels, Histogram>,
        errors: &Family<OperationLabels, Counter>,
        operation: &'static str,
        started: Instant,
        outcome: &Result<T, E>,
    ) {
        let labels = OperationLabels { operation };
        calls.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
        if outcome.is_err() {
            errors.get_or_create(&labels).inc();
        }
    }

    /// The text exposition, with the sandbox gauges computed from `records` at this moment.
    pub fn render<'a>(&self, records: impl IntoIterator<Item = &'a Sandbox>) -> String {
        let _rendering = self.render_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut counts: std::collections::BTreeMap<(Status, &str), i64> = std::collections::BTreeMap::new();
        for record in records {
            *counts.entry((record.status, record.engine.as_str())).or_default() += 1;
        }
        // Statuses that emptied must drop to zero, not keep their last value.
        self.sandboxes.clear();
        for ((status, engine), count) in counts {
            self.sandboxes
                .get_or_create(&SandboxLabels {
                    status: status.to_string(),
                    engine: engine.to_owned(),
                })
                .set(count);
        }
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(%error, "cannot encode metrics");
        }
        text
    }
}

/// A [`Runtime`] that times every call into `berth_engine_call_duration_seconds` and counts
/// failures. Streams are timed until they are opened, not while they flow.
pub struct MeteredRuntime {
    inner: Arc<dyn Runtime>,
    metrics: Arc<Metrics>,
}

impl MeteredRuntime {
    pub fn new(inner: Arc<dyn Runtime>, metrics: Arc<Metrics>) -> Self {
        MeteredRuntime { inner, metrics }
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, RuntimeError>>,
    ) -> Result<T, RuntimeError> {
        let started = Instant::now();
        let outcome = call.await;
        Metrics::observe_call(
            &self.metrics.engine_calls,
            &self.metrics.engine_errors,
            operation,
            started,
            &outcome,
        );
        outcome
    }
}

#[async_trait]
impl Runtime for MeteredRuntime {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn info(&self) -> Result<EngineInfo, RuntimeError> {
        self.timed("info", self.inner.info()).await
    }

    async fn security(&self) -> Result<EngineSecurity, RuntimeError> {
        self.timed("security", self.inner.security()).await
    }

    async fn create(&self, request: &ContainerRequest) -> Result<ContainerState, RuntimeError> {
        self.timed("create", self.inner.create(request)).await
    }

    async fn start(&self, container_id: &str) -> Result<ContainerState, RuntimeError> {
        self.timed("start", self.inner.start(container_id)).await
    }

    async fn remove(&self, container_id: &str) -> Result<(), RuntimeError> {
        self.timed("remove", self.inner.remove(container_id)).await
    }

    async fn remove_stack(&self, sandbox_id: &SandboxId) -> Result<(), RuntimeError> {
        self.timed("remove_stack", self.inner.remove_stack(sandbox_id)).await
    }

    async fn list_stacks(&self) -> Result<Vec<StackObjects>, RuntimeError> {
        self.timed("list_stacks", self.inner.list_stacks()).await
    }

    async fn inspect(&self, container_id: &str) -> Result<ContainerState, RuntimeError> {
        self.timed("inspect", self.inner.inspect(container_id)).await
    }

    async fn list_managed(&self) -> Result<Vec<ContainerState>, RuntimeError> {
        self.timed("list", self.inner.list_managed()).await
    }

    async fn events(&self) -> Result<BoxStream<'static, Result<RuntimeEvent, RuntimeError>>, RuntimeError> {
        self.timed("events", self.inner.events()).await
    }

    async fn exec(&self, container_id: &str, spec: &ExecSpec) -> Result<ExecSession, RuntimeError> {
        self.timed("exec", self.inner.exec(container_id, spec)).await
    }

    async fn exec_state(&self, exec_id: &str) -> Result<ExecState, RuntimeError> {
        self.timed("exec_state", self.inner.exec_state(exec_id)).await
    }

    async fn exec_resize(&self, exec_id: &str, cols: u16, rows: u16) -> Result<(), RuntimeError> {
        self.timed("exec_resize", self.inner.exec_resize(exec_id, cols, rows))
            .await
    }

    async fn upload_tar(&self, container_id: &str, dir: &str, tar: ByteStream) -> Result<(), RuntimeError> {
        self.timed("upload", self.inner.upload_tar(container_id, dir, tar))
            .await
    }

    async fn download_tar(&self, container_id: &str, path: &str) -> Result<EngineByteStream, RuntimeError> {
        self.timed("download", self.inner.download_tar(container_id, path))
            .await
    }

    async fn stat_path(&self, container_id: &str, path: &str) -> Result<PathStat, RuntimeError> {
        self.timed("stat", self.inner.stat_path(container_id, path)).await
    }

    async fn logs(
        &self,
        container_id: &str,
        options: &LogOptions,
    ) -> Result<BoxStream<'static, Result<OutputChunk, RuntimeError>>, RuntimeError> {
        self.timed("logs", self.inner.logs(container_id, options)).await
    }

    async fn stats(
        &self,
        container_id: &str,
        stream: bool,
    ) -> Result<BoxStream<'static, Result<ResourceStats, RuntimeError>>, RuntimeError> {
        self.timed("stats", self.inner.stats(container_id, stream)).await
    }

    async fn pause(&self, container_id: &str) -> Result<(), RuntimeError> {
        self.timed("pause", self.inner.pause(container_id)).await
    }

    async fn stop(&self, container_id: &str, grace: Duration) -> Result<(), RuntimeError> {
        self.timed("stop", self.inner.stop(container_id, grace)).await
    }

    async fn change_egress(
        &self,
        request: &ContainerRequest,
        container_id: &str,
    ) -> Result<ContainerState, RuntimeError> {
        self.timed("change_egress", self.inner.change_egress(request, container_id))
            .await
    }

    async fn unpause(&self, container_id: &str) -> Result<(), RuntimeError> {
        self.timed("unpause", self.inner.unpause(container_id)).await
    }

    async fn create_volume(
        &self,
        engine_name: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<berth_runtime::VolumeState, RuntimeError> {
        self.timed("volume_create", self.inner.create_volume(engine_name, labels))
            .await
    }

    async fn inspect_volume(&self, engine_name: &str) -> Result<berth_runtime::VolumeState, RuntimeError> {
        self.timed("volume_inspect", self.inner.inspect_volume(engine_name))
            .await
    }

    async fn list_volumes(
        &self,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<Vec<berth_runtime::VolumeState>, RuntimeError> {
        self.timed("volume_list", self.inner.list_volumes(labels)).await
    }

    async fn remove_volume(&self, engine_name: &str) -> Result<(), RuntimeError> {
        self.timed("volume_remove", self.inner.remove_volume(engine_name)).await
    }

    async fn commit(
        &self,
        container_id: &str,
        reference: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<berth_runtime::ImageState, RuntimeError> {
        self.timed("commit", self.inner.commit(container_id, reference, labels))
            .await
    }

    async fn list_images(
        &self,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<Vec<berth_runtime::ImageState>, RuntimeError> {
        self.timed("image_list", self.inner.list_images(labels)).await
    }

    async fn remove_image(&self, reference: &str) -> Result<(), RuntimeError> {
        self.timed("image_remove", self.inner.remove_image(reference)).await
    }

    /// Timed until the engine has taken the context and the build's output starts.
    async fn build_image(
        &self,
        request: &BuildRequest,
        context: ByteStream,
    ) -> Result<BoxStream<'static, Result<BuildEvent, RuntimeError>>, RuntimeError> {
        self.timed("build_image", self.inner.build_image(request, context))
            .await
    }
}

/// A [`Store`] that times every call into `berth_store_call_duration_seconds` and counts failures.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        MeteredStore { inner, metrics }
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let outcome = call.await;
        Metrics::observe_call(
            &self.metrics.store_calls,
            &self.metrics.store_errors,
            operation,
            started,
            &outcome,
        );
        outcome
    }
}

#[async_trait]
impl Store for MeteredStore {
    async fn insert(&self, sandbox: &Sandbox) -> Result<(), StoreError> {
        self.timed("insert", self.inner.insert(sandbox)).await
    }

    async fn update(&self, sandbox: &Sandbox) -> Result<(), StoreError> {
        self.timed("update", self.inner.update(sandbox)).await
    }

    async fn update_if_unchanged(&self, sandbox: &Sandbox, read_at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.timed("update_if_unchanged", self.inner.update_if_unchanged(sandbox, read_at))
            .await
    }

    async fn get(&self, id: &SandboxId) -> Result<Option<Sandbox>, StoreError> {
        self.timed("get", self.inner.get(id)).await
    }

    async fn find_by_idempotency_key(&self, owner: &str, key: &str) -> Result<Option<Sandbox>, StoreError> {
        self.timed(
            "find_by_idempotency_key",
            self.inner.find_by_idempotency_key(owner, key),
        )
        .await
    }

    async fn list(&self, filter: &SandboxFilter, after: Option<&Cursor>, limit: usize) -> Result<Page, StoreError> {
        self.timed("list", self.inner.list(filter, after, limit)).await
    }

    async fn list_live(&self) -> Result<Vec<Sandbox>, StoreError> {
        self.timed("list_live", self.inner.list_live()).await
    }

    async fn purge_ended_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        self.timed("purge", self.inner.purge_ended_before(cutoff)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed("ping", self.inner.ping()).await
    }

    async fn updated_since(&self, since: DateTime<Utc>) -> Result<Vec<Sandbox>, StoreError> {
        self.timed("updated_since", self.inner.updated_since(since)).await
    }

    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }

    async fn sandbox_changes(&self) -> Option<tokio::sync::mpsc::Receiver<berth_store::SandboxChange>> {
        self.inner.sandbox_changes().await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn try_lead(&self, cluster: &str) -> Result<Option<Lease>, StoreError> {
        self.timed("try_lead", self.inner.try_lead(cluster)).await
    }

    async fn claim_pooled(
        &self,
        pool: &str,
        claim: &(dyn Fn(Sandbox) -> Sandbox + Send + Sync),
    ) -> Result<Option<Sandbox>, StoreError> {
        self.timed("claim_pooled", self.inner.claim_pooled(pool, claim)).await
    }

    async fn insert_within(&self, sandbox: &Sandbox, quota: &Quota) -> Result<(), StoreError> {
        self.timed("insert", self.inner.insert_within(sandbox, quota)).await
    }

    async fn claim_pooled_within(
        &self,
        pool: &str,
        claim: &(dyn Fn(Sandbox) -> Sandbox + Send + Sync),
        quota: &Quota,
    ) -> Result<Option<Sandbox>, StoreError> {
        self.timed("claim_pooled", self.inner.claim_pooled_within(pool, claim, quota))
            .await
    }

    async fn insert_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.timed("insert_key", self.inner.insert_key(key)).await
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        self.timed("key_by_hash", self.inner.key_by_hash(hash)).await
    }

    async fn get_key(&self, id: &KeyId) -> Result<Option<ApiKey>, StoreError> {
        self.timed("get_key", self.inner.get_key(id)).await
    }

    async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        self.timed("list_keys", self.inner.list_keys()).await
    }

    async fn revoke_key(&self, id: &KeyId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.timed("revoke_key", self.inner.revoke_key(id, at)).await
    }

    async fn touch_key(&self, id: &KeyId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.timed("touch_key", self.inner.touch_key(id, at)).await
    }

    async fn set_quota(&self, owner: &str, quota: &Quota) -> Result<(), StoreError> {
        self.timed("set_quota", self.inner.set_quota(owner, quota)).await
    }

    async fn get_quota(&self, owner: &str) -> Result<Option<Quota>, StoreError> {
        self.timed("get_quota", self.inner.get_quota(owner)).await
    }

    async fn list_quotas(&self) -> Result<Vec<(String, Quota)>, StoreError> {
        self.timed("list_quotas", self.inner.list_quotas()).await
    }

    async fn delete_quota(&self, owner: &str) -> Result<bool, StoreError> {
        self.timed("delete_quota", self.inner.delete_quota(owner)).await
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.timed("append_audit", self.inner.append_audit(entry)).await
    }

    async fn list_audit(
        &self,
        since: DateTime<Utc>,
        owner: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.timed("list_audit", self.inner.list_audit(since, owner, limit))
            .await
    }

    async fn insert_service(&self, service: &EnvService) -> Result<(), StoreError> {
        self.timed("insert_service", self.inner.insert_service(service)).await
    }

    async fn update_service(&self, service: &EnvService) -> Result<bool, StoreError> {
        self.timed("update_service", self.inner.update_service(service)).await
    }

    async fn get_service(&self, id: &EnvServiceId) -> Result<Option<EnvService>, StoreError> {
        self.timed("get_service", self.inner.get_service(id)).await
    }

    async fn list_services(&self) -> Result<Vec<EnvService>, StoreError> {
        self.timed("list_services", self.inner.list_services()).await
    }

    async fn delete_service(&self, id: &EnvServiceId) -> Result<bool, StoreError> {
        self.timed("delete_service", self.inner.delete_service(id)).await
    }

    async fn insert_template(&self, template: &Template) -> Result<(), StoreError> {
        self.timed("insert_template", self.inner.insert_template(template))
            .await
    }

    async fn update_template(&self, template: &Template) -> Result<(), StoreError> {
        self.timed("update_template", self.inner.update_template(template))
            .await
    }

    async fn get_template(&self, name: &str, tag: &str) -> Result<Option<Template>, StoreError> {
        self.timed("get_template", self.inner.get_template(name, tag)).await
    }

    async fn list_templates(&self) -> Result<Vec<Template>, StoreError> {
        self.timed("list_templates", self.inner.list_templates()).await
    }

    async fn delete_template(&self, name: &str, tag: &str) -> Result<bool, StoreError> {
        self.timed("delete_template", self.inner.delete_template(name, tag))
            .await
    }
}
