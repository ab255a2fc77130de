//! The sandbox service: the one place for the lifecycle rules. Every change is written to the
//! store before the engine is touched, then mirrored into the in-memory index that reads use.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::Reason;
use berth_core::sandbox::label_keys;
use berth_core::spec::NumberOrString;
use berth_core::{Sandbox, SandboxId, SandboxRequest, SandboxSpec, Status, Template, ValidationErrors, units};
use berth_runtime::{ContainerRequest, LogOptions, OutputChunk, ResourceStats, Runtime, RuntimeError};
use berth_store::{Cursor, Page, SandboxFilter, Store, StoreError};
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use tracing::{debug, info, warn};

use crate::config::ServerConfig;
use crate::expiry::ExpiryTimers;
use crate::identity::Identity;
use crate::index::SandboxIndex;
use crate::locks::SandboxLocks;
use crate::metrics::{CreatePath, Metrics, Operation};
use crate::processes::ProcessRegistry;

mod build;
mod egress;
mod env_service_records;
mod idle;
mod pools;
mod presigned;
mod reconcile;
mod runtimes;
mod snapshots;
mod volumes;
pub use build::{BuildOptions, build_tag};
pub use pools::PoolBook;
pub use reconcile::ResyncReport;
pub use snapshots::{Forked, SnapshotInfo};
pub use volumes::VolumeInfo;

/// Owner recorded when a create names none.
pub const DEFAULT_OWNER: &str = "anonymous";

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Validation(ValidationErrors),
    /// Invalid values in a request other than a sandbox spec (exec, files, logs…).
    #[error("{0}")]
    InvalidRequest(ValidationErrors),
    /// Something the request named does not exist; `detail` says what, in the words the
    /// client reads.
    #[error("{detail}")]
    NotFound { kind: NotFoundKind, detail: String },
    #[error("{0}")]
    InvalidState(String),
    #[error("{error}")]
    Engine {
        error: RuntimeError,
        sandbox_id: Option<SandboxId>,
    },
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A request the sandbox's image cannot serve (e.g. a timeout needs `/bin/sh`).
    #[error("{0}")]
    Unsupported(String),
    /// A create that would take its owner past a quota; nothing was created.
    #[error("owner `{owner}`: {exceeded}")]
    QuotaExceeded {
        owner: String,
        exceeded: berth_core::QuotaExceeded,
    },
    /// An upload over the size limit.
    #[error("{0}")]
    TooLarge(String),
    /// A malformed or unsafe request body (e.g. a tar entry escaping its directory).
    #[error("{0}")]
    BadBody(String),
    /// Not now, perhaps in a moment (a sleeping sandbox that did not wake in time): a 503.
    #[error("{0}")]
    Unavailable(String),
}

/// What kind of thing a request named that does not exist, for callers that answer one kind
/// in their own words (the AEnvironment surface) or tolerate one (a file that may be absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotFoundKind {
    Sandbox,
    Template,
    /// A background process of a sandbox.
    Process,
    /// A path inside a sandbox.
    File,
    /// A persistent volume of an owner.
    Volume,
    /// A snapshot of a sandbox.
    Snapshot,
}

impl ServiceError {
    /// No sandbox `id` (unknown, or not an id at all).
    pub fn sandbox_not_found(id: impl std::fmt::Display) -> Self {
        ServiceError::not_found(NotFoundKind::Sandbox, format!("no sandbox with id `{id}`"))
    }

    pub fn not_found(kind: NotFoundKind, detail: String) -> Self {
        ServiceError::NotFound { kind, detail }
    }

    /// An engine failure not tied to one sandbox (images, volumes).
    pub(crate) fn engine(error: RuntimeError) -> Self {
        ServiceError::Engine {
            error,
            sandbox_id: None,
        }
    }

    /// An engine failure while acting on sandbox `id`, for `map_err`.
    pub(crate) fn engine_for(id: &SandboxId) -> impl FnOnce(RuntimeError) -> Self + '_ {
        move |error| ServiceError::Engine {
            error,
            sandbox_id: Some(id.clone()),
        }
    }

    /// One invalid value of a request (exec, files, logs…), named by its field.
    pub fn invalid(field: &str, message: String) -> Self {
        ServiceError::InvalidRequest(one_field_error(field, message))
    }

    /// One invalid value of a sandbox spec (create or renew), named by its field.
    fn field(field: &str, message: String) -> Self {
        ServiceError::Validation(one_field_error(field, message))
    }
}

fn one_field_error(field: &str, message: String) -> ValidationErrors {
    ValidationErrors(vec![berth_core::FieldError {
        field: field.into(),
        message,
    }])
}

/// Removals of deleted sandboxes running at once; more wait their turn.
pub const REMOVAL_CONCURRENCY: usize = 16;
/// Decisions on one record a compare-and-set write may lose to other processes in a row
/// before the caller is told to retry.
const MAX_WRITE_ATTEMPTS: u32 = 8;

/// What a create produced; `replayed` when an idempotency key matched an earlier create.
#[derive(Debug)]
pub struct Created {
    pub sandbox: Sandbox,
    pub replayed: bool,
    /// Taken ready from a template's warm pool rather than created.
    pub claimed: bool,
}

pub struct SandboxService {
    runtime: Arc<dyn Runtime>,
    store: Arc<dyn Store>,
    config: ServerConfig,
    index: SandboxIndex,
    locks: SandboxLocks,
    timers: ExpiryTimers,
    /// Sandboxes whose container is being created right now; the resync leaves them alone.
    provisioning: Mutex<HashSet<SandboxId>>,
    processes: ProcessRegistry,
    /// The last request that needed each sandbox (for `idle_timeout`).
    activity: idle::Activity,
    metrics: Arc<Metrics>,
    /// Whether this process runs the reconciler and expiries of its deployment (see `reconciler`).
    leading: AtomicBool,
    /// Background removals of deleted sandboxes, bounded so a mass delete cannot flood the engine.
    removals: Arc<tokio::sync::Semaphore>,
    /// What the warm pools are doing: refills in flight, claims, backoffs.
    pools: PoolBook,
    /// Wakes the env-service controller when a service was created, changed or deleted.
    env_services_changed: tokio::sync::Notify,
    started: tokio::time::Instant,
    /// Keys, quotas and the audit log.
    identity: Identity,
    /// The OCI runtimes the engine offers, for the check of a spec's `runtime`.
    offered_runtimes: runtimes::OfferedRuntimes,
    /// Orders the volume calls of this process: a delete never interleaves with a create's
    /// count and make.
    volume_lock: tokio::sync::Mutex<()>,
}

/// A sandbox found `Running`, with its container and the engine it runs on: what exec, files,
/// logs and stats work on.
#[derive(Clone)]
pub struct RunningSandbox {
    pub id: SandboxId,
    pub container_id: String,
    pub engine: Arc<dyn Runtime>,
}

impl std::fmt::Debug for RunningSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningSandbox")
            .field("id", &self.id)
            .field("container_id", &self.container_id)
            .field("engine", &self.engine.name())
            .finish()
    }
}

/// How the store and the engine answered a check, for the health and readiness probes.
#[derive(Debug, Clone)]
pub struct DependencyChecks {
    /// `Err` with the store's reason when it does not answer.
    pub store: Result<(), String>,
    /// `Err` with the engine's reason when it does not answer.
    pub engine: Result<(), String>,
    /// How the store describes itself (`sqlite /data/berth.db`, `postgres host/db`).
    pub store_description: String,
    /// The engine's name in berth.
    pub engine_name: String,
}

impl DependencyChecks {
    pub fn all_ok(&self) -> bool {
        self.store.is_ok() && self.engine.is_ok()
    }
}

impl SandboxService {
    pub fn new(
        runtime: Arc<dyn Runtime>,
        store: Arc<dyn Store>,
        config: ServerConfig,
        timers: ExpiryTimers,
        metrics: Arc<Metrics>,
    ) -> Self {
        let identity = Identity::new(Arc::clone(&store), Arc::clone(&metrics), config.default_quota.clone());
        SandboxService {
            identity,
            runtime,
            store,
            config,
            index: SandboxIndex::default(),
            locks: SandboxLocks::default(),
            timers,
            provisioning: Mutex::default(),
            processes: ProcessRegistry::default(),
            activity: idle::Activity::default(),
            metrics,
            leading: AtomicBool::new(false),
            removals: Arc::new(tokio::sync::Semaphore::new(REMOVAL_CONCURRENCY)),
            pools: PoolBook::default(),
            env_services_changed: tokio::sync::Notify::new(),
            started: tokio::time::Instant::now(),
            offered_runtimes: runtimes::OfferedRuntimes::default(),
            volume_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// How long this server has been up.
    /// The lifecycle events of every sandbox this process sees change.
    pub fn events(&self) -> &crate::events::EventHub {
        self.index.events()
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Background processes started with `detach`.
    pub fn processes(&self) -> &ProcessRegistry {
        &self.processes
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Who may call, and what each owner may take.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub(crate) fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Asks the store and the engine whether they answer, both at once.
    pub async fn check_dependencies(&self) -> DependencyChecks {
        let (store, engine) = tokio::join!(self.store.ping(), self.runtime.info());
        DependencyChecks {
            store: store.map_err(|error| error.to_string()),
            engine: engine.map(drop).map_err(|error| error.to_string()),
            store_description: self.store.describe(),
            engine_name: self.runtime.name().to_owned(),
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// What the env-service controller waits on between its ticks; notified by the API.
    pub fn env_services_changed(&self) -> &tokio::sync::Notify {
        &self.env_services_changed
    }

    pub fn pools(&self) -> &PoolBook {
        &self.pools
    }

    /// The `/metrics` text, with the sandbox gauges taken from the index now.
    pub fn render_metrics(&self) -> String {
        let records = self.index.snapshot();
        self.metrics.render(records.iter().map(AsRef::as_ref))
    }

    /// Loads every record from the store into the index and arms the expiry timers of the live
    /// ones. Called once at start, before the API serves.
    pub async fn load(&self) -> Result<usize, StoreError> {
        let filter = SandboxFilter {
            include_ended: true,
            ..SandboxFilter::default()
        };
        let mut after: Option<Cursor> = None;
        let mut count = 0;
        loop {
            let page = self.store.list(&filter, after.as_ref(), 1000).await?;
            for sandbox in page.items {
                if !sandbox.status.is_ended() {
                    self.timers.schedule(sandbox.id.clone(), sandbox.expiry_deadline());
                }
                self.index.load(sandbox);
                count += 1;
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(count),
            }
        }
    }

    pub fn is_leading(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::SeqCst);
        self.metrics.set_leader(leading);
    }

    /// Takes records other processes wrote since `since` into the index (never replacing a
    /// newer copy) and re-arms or disarms their timers. Returns how many changed here.
    pub async fn refresh_from_store(&self, since: DateTime<Utc>) -> Result<usize, StoreError> {
        let records = self.store.updated_since(since).await?;
        Ok(records.into_iter().filter(|record| self.merge(record.clone())).count())
    }

    /// Takes the writes the store announced: each record the index holds an older copy of (or
    /// none) is read again. This process's own writes are announced too and cost nothing here.
    pub async fn take_announced(&self, changes: Vec<berth_store::SandboxChange>) {
        let mut seen = HashSet::new();
        for change in changes {
            let current = self.index.get(&change.id);
            if current.is_some_and(|record| record.updated_at >= change.updated_at) || !seen.insert(change.id.clone()) {
                continue;
            }
            match self.store.get(&change.id).await {
                Ok(Some(record)) => {
                    self.merge(record);
                }
                Ok(None) => {}
                Err(error) => debug!(sandbox = %change.id, %error, "cannot read an announced write; the poll will"),
            }
        }
    }

    /// Puts a record read from the store into the index unless the index already holds the
    /// same or a newer write of it; keeps its timer and processes in step. Returns whether it changed.
    fn merge(&self, record: Sandbox) -> bool {
        if self
            .index
            .get(&record.id)
            .is_some_and(|current| current.updated_at >= record.updated_at)
        {
            return false;
        }
        if record.status.is_ended() {
            self.timers.cancel(record.id.clone());
            self.processes.forget(&record.id);
        } else {
            self.timers.schedule(record.id.clone(), record.expiry_deadline());
        }
        self.index.put(record);
        true
    }

    /// The latest copy of a record: with a shared store another process may have changed it, so
    /// it is read again (under the caller's sandbox lock) before any decision is taken on it.
    async fn fresh(&self, id: &SandboxId) -> Option<Arc<Sandbox>> {
        if self.store.is_shared() {
            match self.store.get(id).await {
                Ok(Some(record)) => {
                    self.merge(record);
                }
                Ok(None) => {}
                Err(error) => debug!(sandbox = %id, %error, "cannot re-read a record; using the index's copy"),
            }
        }
        self.index.get(id)
    }

    /// Arms the expiry timer of every live record: what a process does when it becomes the
    /// leader, since timers that fired while it followed were dropped.
    pub fn arm_all_timers(&self) {
        for record in self.index.snapshot() {
            if !record.status.is_ended() {
                self.timers.schedule(record.id.clone(), record.expiry_deadline());
            }
        }
    }

    pub fn get(&self, id: &str) -> Result<Sandbox, ServiceError> {
        SandboxId::parse(id)
            .and_then(|id| self.index.get(&id))
            .map(|sandbox| Sandbox::clone(&sandbox))
            .ok_or_else(|| ServiceError::sandbox_not_found(id))
    }

    /// The record of sandbox `id` as it is now: on a shared store, read again from it, so a
    /// sandbox another process created, changed or ended a moment ago is seen as it is (reads
    /// follow writes across processes); from the index otherwise.
    pub async fn get_latest(&self, id: &str) -> Result<Sandbox, ServiceError> {
        let sandbox_id = SandboxId::parse(id).ok_or_else(|| ServiceError::sandbox_not_found(id))?;
        self.fresh(&sandbox_id)
            .await
            .map(|sandbox| Sandbox::clone(&sandbox))
            .ok_or_else(|| ServiceError::sandbox_not_found(id))
    }

    /// The owner of sandbox `id`, from the index, else (on a shared store, where another
    /// process may have made it a moment ago) from the store. `None` when there is no such sandbox.
    pub async fn owner_of(&self, id: &str) -> Option<String> {
        let id = SandboxId::parse(id)?;
        if let Some(sandbox) = self.index.get(&id) {
            return Some(sandbox.owner.clone());
        }
        if self.store.is_shared()
            && let Ok(Some(record)) = self.store.get(&id).await
        {
            return Some(record.owner);
        }
        None
    }

    /// What `owner`'s live sandboxes hold now, from the index.
    pub fn usage_of(&self, owner: &str) -> berth_core::Usage {
        let records = self.index.snapshot();
        berth_core::Usage::of_live(
            records
                .iter()
                .map(AsRef::as_ref)
                .filter(|sandbox: &&Sandbox| sandbox.owner == owner && sandbox.pool.is_none()),
        )
    }

    /// Every owner with a live sandbox (waiting pool sandboxes aside).
    pub fn live_owners(&self) -> std::collections::BTreeSet<String> {
        self.index
            .snapshot()
            .iter()
            .filter(|sandbox| !sandbox.status.is_ended() && sandbox.pool.is_none())
            .map(|sandbox| sandbox.owner.clone())
            .collect()
    }

    /// The owner of env-service `id`; `None` when there is none (or the store cannot say).
    pub async fn env_service_owner(&self, id: &str) -> Option<String> {
        let id = berth_core::EnvServiceId::parse(id)?;
        match self.store.get_service(&id).await {
            Ok(service) => service.map(|service| service.owner),
            Err(error) => {
                debug!(service = %id, %error, "cannot read an env-service's owner");
                None
            }
        }
    }

    pub fn list(&self, filter: &SandboxFilter, after: Option<&Cursor>, limit: usize) -> Page {
        self.index.list(filter, after, limit)
    }

    /// Records a new sandbox and creates its container. With `wait`, returns once the container
    /// runs (or the create failed); otherwise returns the `Pending` record at once.
    pub async fn create(
        self: &Arc<Self>,
        request: SandboxRequest,
        idempotency_key: Option<String>,
        wait: bool,
    ) -> Result<Created, ServiceError> {
        self.create_labelled(request, BTreeMap::new(), idempotency_key, wait)
            .await
    }

    /// [`create`](Self::create), with `system_labels` added to the sandbox's labels once the
    /// request is valid: labels a compatibility surface sets itself (AEnvironment's `aenv.*`),
    /// whose values — RFC 3339 times, e-mail owners — need not follow the label syntax that
    /// clients' own labels must.
    pub async fn create_labelled(
        self: &Arc<Self>,
        request: SandboxRequest,
        system_labels: BTreeMap<String, String>,
        idempotency_key: Option<String>,
        wait: bool,
    ) -> Result<Created, ServiceError> {
        let extras = CreateExtras {
            system_labels,
            stack: None,
        };
        self.create_with(request, extras, idempotency_key, wait).await
    }

    /// [`create_labelled`](Self::create_labelled), optionally of a compose stack: `extras.stack`
    /// runs beside the sandbox's container (its main service, which `request` describes). A
    /// stack is always created cold, never claimed from a pool.
    pub async fn create_with(
        self: &Arc<Self>,
        request: SandboxRequest,
        extras: CreateExtras,
        idempotency_key: Option<String>,
        wait: bool,
    ) -> Result<Created, ServiceError> {
        let requested_at = Utc::now();
        let owner = request.owner.clone().unwrap_or_else(|| DEFAULT_OWNER.to_owned());
        validate_owner(&owner)?;
        let (spec, template) = self.spec_for_create(&request, extras).await?;
        self.check_volumes(&owner, &spec).await?;
        if let Some(key) = &idempotency_key {
            validate_idempotency_key(key)?;
            if let Some(replayed) = self.replay(&owner, key).await? {
                return Ok(replayed);
            }
        }
        if let Some(template) = &template
            && spec.stack.is_none()
            && pools::claimable(template, &request)
            && let Some(claimed) = self
                .claim(template, &spec, &owner, idempotency_key.as_deref(), requested_at)
                .await?
        {
            return Ok(Created {
                sandbox: claimed,
                replayed: false,
                claimed: true,
            });
        }

        let mut sandbox = Sandbox::new_pending(
            spec,
            owner.clone(),
            self.runtime.name().to_owned(),
            idempotency_key.clone(),
            requested_at,
        );
        sandbox.template = template.as_ref().map(|template| template.reference().to_string());
        if let Some(replayed) = self.record_new(&sandbox, idempotency_key).await? {
            return Ok(replayed);
        }
        self.provision_new(sandbox, wait).await
    }

    /// Starts making a newly recorded sandbox's container; with `wait`, answers once that is
    /// done (or failed), otherwise at once with the `Pending` record.
    async fn provision_new(self: &Arc<Self>, sandbox: Sandbox, wait: bool) -> Result<Created, ServiceError> {
        let id = sandbox.id.clone();
        let provision = self.start_provisioning(&id);
        if !wait {
            return Ok(Created {
                sandbox,
                replayed: false,
                claimed: false,
            });
        }
        // Awaiting the spawned task (instead of provisioning inline) means a client that hangs up
        // mid-create cannot cancel it half-way.
        match provision.await {
            Ok(outcome) => outcome.map(|sandbox| Created {
                sandbox,
                replayed: false,
                claimed: false,
            }),
            Err(join_error) => Err(ServiceError::InvalidState(format!(
                "create of {id} was interrupted: {join_error}"
            ))),
        }
    }

    /// The validated spec a create asks for (merged over its template's, when it names one),
    /// with berth's labels and the stack added, and the template.
    async fn spec_for_create(
        &self,
        request: &SandboxRequest,
        extras: CreateExtras,
    ) -> Result<(SandboxSpec, Option<Template>), ServiceError> {
        let CreateExtras { system_labels, stack } = extras;
        let (mut spec, template) = match (&request.template, &request.snapshot) {
            (_, Some(snapshot)) => {
                let owner = request.owner.as_deref().unwrap_or(DEFAULT_OWNER);
                (self.spec_from_snapshot(snapshot, owner, request).await?, None)
            }
            (None, None) => (
                request
                    .validate(&self.config.policy)
                    .map_err(ServiceError::Validation)?,
                None,
            ),
            (Some(reference), None) => {
                let template = self.template_for_create(reference).await?;
                let spec = pools::merged_request(&template, request)
                    .validate(&self.config.policy)
                    .map_err(ServiceError::Validation)?;
                if template.snapshot.is_some() {
                    Self::keeps_the_seal(&template.spec, &spec)?;
                }
                (spec, Some(template))
            }
        };
        self.check_runtime_offered(spec.runtime.as_deref()).await?;
        self.check_disk_limit_offered(spec.resources.disk_bytes).await?;
        spec.labels.extend(system_labels);
        spec.stack = stack;
        Ok((spec, template))
    }

    /// The sandbox an earlier create of `owner` with this idempotency key made, if any.
    async fn replay(&self, owner: &str, key: &str) -> Result<Option<Created>, ServiceError> {
        Ok(self
            .store
            .find_by_idempotency_key(owner, key)
            .await?
            .map(|existing| Created {
                sandbox: self.current(existing),
                replayed: true,
                claimed: false,
            }))
    }

    /// Records a new sandbox within its owner's quota, then mirrors it to the index and arms
    /// its expiry. `Some` when a concurrent create with the same idempotency key won the race:
    /// the answer is that one's sandbox.
    async fn record_new(
        &self,
        sandbox: &Sandbox,
        idempotency_key: Option<String>,
    ) -> Result<Option<Created>, ServiceError> {
        let owner = &sandbox.owner;
        let quota = self.identity.quota_of(owner).await?;
        match retry_store(|| self.store.insert_within(sandbox, &quota)).await {
            Ok(()) => {}
            Err(StoreError::QuotaExceeded(exceeded)) => {
                return Err(ServiceError::QuotaExceeded {
                    owner: owner.clone(),
                    exceeded,
                });
            }
            Err(StoreError::DuplicateIdempotencyKey { .. }) => {
                let key = idempotency_key.unwrap_or_default();
                if let Some(replayed) = self.replay(owner, &key).await? {
                    return Ok(Some(replayed));
                }
                return Err(ServiceError::InvalidState(format!("idempotency key `{key}` is in use")));
            }
            Err(error) => return Err(error.into()),
        }
        let id = &sandbox.id;
        self.index.put(sandbox.clone());
        self.timers.schedule(id.clone(), sandbox.expiry_deadline());
        info!(sandbox = %id, image = %sandbox.spec.image, owner = %owner, "sandbox recorded");
        self.metrics.count_operation(Operation::Create);
        Ok(None)
    }

    /// Makes the recorded sandbox's container in a task of its own (the resync leaves it alone
    /// meanwhile); the task answers the sandbox as provisioned.
    fn start_provisioning(self: &Arc<Self>, id: &SandboxId) -> tokio::task::JoinHandle<Result<Sandbox, ServiceError>> {
        self.lock_provisioning().insert(id.clone());
        let service = Arc::clone(self);
        let id = id.clone();
        tokio::spawn(async move {
            let outcome = service.provision(&id).await;
            service.lock_provisioning().remove(&id);
            outcome
        })
    }

    /// The index's copy of a record when it has one (it may be newer than the store's answer).
    fn current(&self, sandbox: Sandbox) -> Sandbox {
        self.index
            .get(&sandbox.id)
            .map(|current| Sandbox::clone(&current))
            .unwrap_or(sandbox)
    }

    async fn provision(&self, id: &SandboxId) -> Result<Sandbox, ServiceError> {
        let guard = self.locks.lock(id).await;
        let mut sandbox = self.live_record(id)?;
        if sandbox.status != Status::Pending {
            // Deleted or expired before its container was made.
            return Ok(sandbox);
        }
        sandbox.status = Status::Creating;
        self.persist(&mut sandbox).await?;

        let mut labels = sandbox.engine_labels();
        labels.insert(label_keys::CLUSTER.into(), self.config.cluster.clone());
        let request = ContainerRequest {
            sandbox_id: id.clone(),
            spec: sandbox.spec.clone(),
            labels,
        };
        match self.runtime.create(&request).await {
            Ok(container) => {
                debug!(sandbox = %id, container = %container.container_id, "container started");
                self.adopt_container(&mut sandbox, &container).await;
                if let Some(probe) = sandbox.spec.readiness.clone()
                    && sandbox.status == Status::Running
                {
                    // `Creating` (with the container's facts) until the probe passes.
                    sandbox.status = Status::Creating;
                    self.persist(&mut sandbox).await?;
                    return self.await_readiness(sandbox, probe, guard).await;
                }
                self.persist(&mut sandbox).await?;
                if sandbox.status == Status::Running {
                    let took = (Utc::now() - sandbox.created_at).to_std().unwrap_or_default();
                    self.metrics.observe_create(CreatePath::Cold, took);
                }
                if sandbox.status.is_ended() {
                    self.after_end(&sandbox);
                }
                Ok(sandbox)
            }
            Err(error) => {
                let reason = match error {
                    RuntimeError::ImageNotFound { .. } => Reason::ImageNotFound,
                    _ => Reason::CreateFailed,
                };
                warn!(sandbox = %id, %error, "create failed");
                self.metrics.count_operation(Operation::CreateFailed);
                sandbox.end(Status::Failed, reason, Utc::now());
                sandbox.status_message = Some(error.to_string());
                // If this write fails too, the record stays `Creating` and the resync settles it.
                if let Err(store_error) = self.persist(&mut sandbox).await {
                    warn!(sandbox = %id, %store_error, "could not record the failed create");
                }
                self.timers.cancel(id.clone());
                Err(ServiceError::Engine {
                    error,
                    sandbox_id: Some(id.clone()),
                })
            }
        }
    }

    /// Probes a sandbox whose container runs without holding its lock (a delete or an expiry is not
    /// held up for the probe's timeout), then decides under the lock on the re-read record:
    /// `Running` once the probe passed, else `Failed` (`readiness_timeout`) with its container
    /// removed. A record that changed meanwhile (deleted, expired, exited) keeps that outcome.
    async fn await_readiness(
        &self,
        sandbox: Sandbox,
        probe: berth_core::ReadinessProbe,
        guard: tokio::sync::OwnedMutexGuard<()>,
    ) -> Result<Sandbox, ServiceError> {
        drop(guard);
        let id = sandbox.id.clone();
        let unchanged =
            |current: &Sandbox| current.status == Status::Creating && current.container_id == sandbox.container_id;
        let outcome = match crate::address::sandbox_address(&sandbox, probe.check.port()) {
            Some(address) => {
                let still_wanted = || self.index.get(&id).is_some_and(|current| unchanged(current.as_ref()));
                crate::probe::wait_until_ready(&probe, address, still_wanted).await
            }
            None => crate::probe::ProbeOutcome::TimedOut("the sandbox has no address to probe".into()),
        };
        let _guard = self.locks.lock(&id).await;
        let mut current = match self.fresh(&id).await {
            Some(current) if unchanged(current.as_ref()) => Sandbox::clone(&current),
            Some(current) => return Ok(Sandbox::clone(&current)),
            None => return Err(ServiceError::sandbox_not_found(id)),
        };
        if outcome == crate::probe::ProbeOutcome::Passed {
            current.status = Status::Running;
            self.persist(&mut current).await?;
            let took = (Utc::now() - current.created_at).to_std().unwrap_or_default();
            self.metrics.observe_create(CreatePath::Cold, took);
            debug!(sandbox = %id, ?took, "readiness probe passed");
            return Ok(current);
        }
        warn!(sandbox = %id, timeout = ?probe.timeout, ?outcome, "readiness probe did not pass; removing the sandbox");
        self.metrics.count_operation(Operation::CreateFailed);
        if let Err(error) = self.remove_engine_objects(&current).await {
            // The resync collects containers of ended records.
            warn!(sandbox = %id, %error, "could not remove the container of a sandbox that never became ready");
        }
        current.end(Status::Failed, Reason::ReadinessTimeout, Utc::now());
        if let crate::probe::ProbeOutcome::TimedOut(last_failure) = &outcome {
            current.status_message = Some(format!(
                "the readiness probe did not pass within {:?}; its last attempt: {last_failure}",
                probe.timeout
            ));
        }
        self.persist(&mut current).await?;
        self.timers.cancel(id.clone());
        self.processes.forget(&id);
        Ok(current)
    }

    /// Probes a `Creating` sandbox whose container runs but whose probe no process is running
    /// (found by the resync, e.g. after a restart), in the background, as a create would.
    fn probe_again(self: &Arc<Self>, id: SandboxId) {
        if !self.lock_provisioning().insert(id.clone()) {
            return;
        }
        let service = Arc::clone(self);
        tokio::spawn(async move {
            let guard = service.locks.lock(&id).await;
            let current = service.fresh(&id).await;
            if let Some(current) = current
                && current.status == Status::Creating
                && let Some(probe) = current.spec.readiness.clone()
            {
                debug!(sandbox = %id, "probing again a sandbox whose probe was interrupted");
                if let Err(error) = service.await_readiness(Sandbox::clone(&current), probe, guard).await {
                    warn!(sandbox = %id, %error, "probing again failed");
                }
            }
            service.lock_provisioning().remove(&id);
        });
    }

    /// Stops and removes the sandbox; `Terminated` with reason `deleted`. Ended ones are left as they are.
    pub async fn delete(&self, id: &str) -> Result<Sandbox, ServiceError> {
        let id = SandboxId::parse(id).ok_or_else(|| ServiceError::sandbox_not_found(id))?;
        self.stop(&id, Reason::Deleted).await
    }

    /// Marks the sandbox `Stopping` and returns; the removal runs in the background (at most
    /// [`REMOVAL_CONCURRENCY`] at once), and the resync finishes it if this process dies first.
    /// From `Stopping` a sandbox only goes on to `Terminated`.
    pub async fn delete_in_background(self: &Arc<Self>, id: &str) -> Result<Sandbox, ServiceError> {
        let id = SandboxId::parse(id).ok_or_else(|| ServiceError::sandbox_not_found(id))?;
        let marked = {
            let _guard = self.locks.lock(&id).await;
            let mut sandbox = match self.fresh(&id).await {
                Some(sandbox) => Sandbox::clone(&sandbox),
                None => return Err(ServiceError::sandbox_not_found(id)),
            };
            if sandbox.status.is_ended() {
                return Ok(sandbox);
            }
            if sandbox.status != Status::Stopping {
                sandbox.status = Status::Stopping;
                sandbox.status_reason = Some(Reason::Deleted);
                self.persist(&mut sandbox).await?;
            }
            sandbox
        };
        let service = Arc::clone(self);
        let removals = Arc::clone(&self.removals);
        tokio::spawn(async move {
            let Ok(_permit) = removals.acquire_owned().await else {
                return;
            };
            if let Err(error) = service.stop(&id, Reason::Deleted).await {
                warn!(sandbox = %id, %error, "background removal failed; the resync will finish it");
            }
        });
        Ok(marked)
    }

    /// Called by the expiry timers. A sandbox renewed after its timer fired is left running
    /// (`stop` checks the deadline under the sandbox's lock; the renewal re-armed the timer).
    pub async fn expire(&self, id: &SandboxId) -> Result<Sandbox, ServiceError> {
        self.stop(id, Reason::Expired).await
    }

    async fn stop(&self, id: &SandboxId, reason: Reason) -> Result<Sandbox, ServiceError> {
        let _guard = self.locks.lock(id).await;
        let mut sandbox = match self.fresh(id).await {
            Some(sandbox) => Sandbox::clone(&sandbox),
            None => return Err(ServiceError::sandbox_not_found(id)),
        };
        let mut attempts = 0;
        while sandbox.status != Status::Stopping {
            if sandbox.status.is_ended() {
                return Ok(sandbox);
            }
            if reason == Reason::Expired && sandbox.expiry_deadline() > Utc::now() {
                return Ok(sandbox);
            }
            let read_at = sandbox.updated_at;
            sandbox.status = Status::Stopping;
            sandbox.status_reason = Some(reason.clone());
            if self.persist_if_unchanged(&mut sandbox, read_at, &mut attempts).await? {
                break;
            }
            // Another process wrote it since it was read (a renewal, perhaps): decide again on
            // that write, so a renewal that answered is never undone by an expiry of the old
            // deadline.
            sandbox = match self.fresh(id).await {
                Some(sandbox) => Sandbox::clone(&sandbox),
                None => return Err(ServiceError::sandbox_not_found(id)),
            };
        }
        let reason = sandbox.status_reason.clone().unwrap_or(reason);
        self.remove_engine_objects(&sandbox)
            .await
            .map_err(|error| ServiceError::Engine {
                error,
                sandbox_id: Some(id.clone()),
            })?;
        sandbox.end(Status::Terminated, reason.clone(), Utc::now());
        self.persist(&mut sandbox).await?;
        self.timers.cancel(id.clone());
        self.processes.forget(id);
        info!(sandbox = %id, %reason, "sandbox ended");
        self.metrics.count_operation(if reason == Reason::Expired {
            Operation::Expire
        } else {
            Operation::Delete
        });
        Ok(sandbox)
    }

    /// Moves the deadline to `ttl` from now.
    pub async fn renew(&self, id: &str, ttl: &NumberOrString) -> Result<Sandbox, ServiceError> {
        let ttl = units::parse_duration(ttl).map_err(|message| ServiceError::field("ttl", message))?;
        if ttl > self.config.policy.max_ttl {
            return Err(ServiceError::field(
                "ttl",
                format!(
                    "`{}` is longer than this server's maximum of {}",
                    units::format_duration(ttl),
                    units::format_duration(self.config.policy.max_ttl)
                ),
            ));
        }
        let sandbox_id = SandboxId::parse(id).ok_or_else(|| ServiceError::sandbox_not_found(id))?;
        let _guard = self.locks.lock(&sandbox_id).await;
        let mut attempts = 0;
        loop {
            self.fresh(&sandbox_id).await;
            let mut sandbox = self.live_record(&sandbox_id)?;
            if sandbox.status == Status::Stopping {
                return Err(ServiceError::InvalidState(format!(
                    "sandbox {id} is stopping and cannot be renewed"
                )));
            }
            let read_at = sandbox.updated_at;
            let now = Utc::now();
            sandbox.expires_at = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
            if sandbox.asleep_since.is_some() {
                // Asleep, the new TTL counts from its wake: the time until then is added back.
                sandbox.asleep_since = Some(now);
            }
            if let Some(ends_at) = sandbox.lifetime_ends_at()
                && sandbox.expires_at > ends_at
            {
                let left = (ends_at - now).to_std().unwrap_or_default();
                return Err(ServiceError::field(
                    "ttl",
                    format!(
                        "renewing for {} would pass the sandbox's max_lifetime of {} (it ends by {}): renew for at most {}",
                        units::format_duration(ttl),
                        units::format_duration(sandbox.spec.max_lifetime.unwrap_or_default()),
                        ends_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        units::format_duration(Duration::from_secs(left.as_secs()))
                    ),
                ));
            }
            // Set against the copy read: an expiry that another process decided in between
            // wins, and this renewal answers what that left instead of reviving it.
            if self.persist_if_unchanged(&mut sandbox, read_at, &mut attempts).await? {
                self.timers.schedule(sandbox_id, sandbox.expiry_deadline());
                return Ok(sandbox);
            }
        }
    }

    /// A record that exists and has not ended.
    fn live_record(&self, id: &SandboxId) -> Result<Sandbox, ServiceError> {
        let sandbox = self.index.get(id).ok_or_else(|| ServiceError::sandbox_not_found(id))?;
        if sandbox.status.is_ended() {
            return Err(ended(&sandbox));
        }
        Ok(Sandbox::clone(&sandbox))
    }

    /// The rule for working inside a sandbox (exec, files, logs, stats, signals): it must be
    /// `Running`. Anything else is a 409 that says why and what to do.
    /// A request needs it (exec, files, proxy, logs): an idle-paused sandbox is woken first, and
    /// the request holds off its next idle pause.
    pub async fn running_container(&self, id: &str) -> Result<RunningSandbox, ServiceError> {
        if let Some(parsed) = SandboxId::parse(id) {
            self.needed(&parsed).await?;
        }
        self.running_container_quietly(id).await
    }

    /// As [`Self::running_container`], for a look that does not count as a need (stats).
    async fn running_container_quietly(&self, id: &str) -> Result<RunningSandbox, ServiceError> {
        let mut sandbox = self.get(id);
        if self.store.is_shared() && !sandbox.as_ref().is_ok_and(|sandbox| sandbox.status == Status::Running) {
            // Perhaps created or resumed through another process a moment ago.
            sandbox = self.get_latest(id).await;
        }
        let sandbox = sandbox?;
        let container_id = match (sandbox.status, &sandbox.container_id) {
            (Status::Running, Some(container_id)) => container_id.clone(),
            (Status::Paused, _) => {
                return Err(ServiceError::InvalidState(format!(
                    "sandbox {id} is paused: resume it first (POST /v1/sandboxes/{id}/resume)"
                )));
            }
            (Status::Pending | Status::Creating, _) | (Status::Running, None) => {
                return Err(ServiceError::InvalidState(format!(
                    "sandbox {id} is not running yet ({}): wait until it is Running",
                    sandbox.status
                )));
            }
            (Status::Hibernated, _) => {
                return Err(ServiceError::InvalidState(format!(
                    "sandbox {id} is hibernated: a request that needs it (exec, files, proxy) wakes it"
                )));
            }
            (Status::Stopping, _) => {
                return Err(ServiceError::InvalidState(format!("sandbox {id} is stopping")));
            }
            (Status::Terminated | Status::Failed, _) => return Err(ended(&sandbox)),
        };
        Ok(RunningSandbox {
            id: sandbox.id,
            container_id,
            engine: Arc::clone(&self.runtime),
        })
    }

    /// The `Running` sandbox that `address` belongs to: its container IP (any port) or a host port
    /// it publishes. The only targets the MCP gateway forwards to.
    pub fn running_at(&self, address: std::net::SocketAddr) -> Option<Sandbox> {
        self.index
            .find(|sandbox| sandbox.status == Status::Running && crate::address::reaches(sandbox, address))
            .map(|sandbox| Sandbox::clone(&sandbox))
    }

    /// As [`Self::running_at`], for a request on its way to the sandbox (the MCP gateway): an
    /// idle-paused sandbox there counts too and is woken meanwhile (the engine host's kernel holds
    /// the connection until it runs), and the request holds off its next idle pause.
    pub fn serving_at(self: &Arc<Self>, address: std::net::SocketAddr) -> Option<Sandbox> {
        let sandbox = self.index.find(|sandbox| {
            let awake = sandbox.status == Status::Running;
            let asleep = matches!(sandbox.status, Status::Paused | Status::Hibernated)
                && sandbox.status_reason == Some(Reason::Idle);
            (awake || asleep) && crate::address::reaches(sandbox, address)
        })?;
        if sandbox.spec.idle_timeout.is_some() {
            self.activity.touch(&sandbox.id);
        }
        if sandbox.status != Status::Running {
            let service = Arc::clone(self);
            let id = sandbox.id.clone();
            tokio::spawn(async move {
                if let Err(error) = service.needed(&id).await {
                    warn!(sandbox = %id, %error, "could not wake an idle sandbox for the gateway");
                }
            });
        }
        Some(Sandbox::clone(&sandbox))
    }

    /// The main process's output (stdout and stderr as they come).
    pub async fn logs(
        &self,
        id: &str,
        options: &LogOptions,
    ) -> Result<BoxStream<'static, Result<OutputChunk, RuntimeError>>, ServiceError> {
        let sandbox = self.running_container(id).await?;
        self.runtime
            .logs(&sandbox.container_id, options)
            .await
            .map_err(|error| ServiceError::Engine {
                error,
                sandbox_id: Some(sandbox.id),
            })
    }

    /// One resource sample, or (with `stream`) one about every second.
    pub async fn stats(
        &self,
        id: &str,
        stream: bool,
    ) -> Result<BoxStream<'static, Result<ResourceStats, RuntimeError>>, ServiceError> {
        // Watching a sandbox's figures is not using it: no wake, no hold-off of its idle pause.
        let sandbox = self.running_container_quietly(id).await?;
        self.runtime
            .stats(&sandbox.container_id, stream)
            .await
            .map_err(|error| ServiceError::Engine {
                error,
                sandbox_id: Some(sandbox.id),
            })
    }

    /// Freezes every process of a `Running` sandbox (`Paused`). Pausing a paused sandbox is a
    /// no-op. A paused sandbox still expires on time.
    pub async fn pause(&self, id: &str) -> Result<Sandbox, ServiceError> {
        self.set_paused(id, true).await
    }

    /// Thaws a `Paused` sandbox, or starts a `Hibernated` one again (`Running`). Resuming a
    /// running sandbox is a no-op.
    pub async fn resume(&self, id: &str) -> Result<Sandbox, ServiceError> {
        if let Some(parsed) = SandboxId::parse(id)
            && self
                .index
                .get(&parsed)
                .is_some_and(|sandbox| sandbox.status == Status::Hibernated)
        {
            self.needed(&parsed).await?;
            return self.get(id);
        }
        self.set_paused(id, false).await
    }

    async fn set_paused(&self, id: &str, pause: bool) -> Result<Sandbox, ServiceError> {
        let id = SandboxId::parse(id).ok_or_else(|| ServiceError::sandbox_not_found(id))?;
        let _guard = self.locks.lock(&id).await;
        self.fresh(&id).await;
        let mut sandbox = self.live_record(&id)?;
        let (from, to) = if pause {
            (Status::Running, Status::Paused)
        } else {
            (Status::Paused, Status::Running)
        };
        if sandbox.status == to {
            if pause && sandbox.status_reason == Some(Reason::Idle) {
                // Asleep for being idle, now paused on purpose: no request wakes it any more,
                // and from now on its time paused counts, as a client's pause does.
                sandbox.status_reason = None;
                sandbox.wake(Utc::now());
                self.persist(&mut sandbox).await?;
                self.timers.schedule(id.clone(), sandbox.expiry_deadline());
            }
            return Ok(sandbox);
        }
        let verb = if pause { "paused" } else { "resumed" };
        let container_id = match (&sandbox.container_id, sandbox.status == from) {
            (Some(container_id), true) => container_id.clone(),
            _ => {
                return Err(ServiceError::InvalidState(format!(
                    "sandbox {id} is {} and cannot be {verb}",
                    sandbox.status
                )));
            }
        };
        let outcome = if pause {
            self.runtime.pause(&container_id).await
        } else {
            self.runtime.unpause(&container_id).await
        };
        outcome.map_err(|error| ServiceError::Engine {
            error,
            sandbox_id: Some(id.clone()),
        })?;
        sandbox.status = to;
        if sandbox.status_reason == Some(Reason::Idle) {
            sandbox.status_reason = None;
        }
        sandbox.wake(Utc::now());
        self.persist(&mut sandbox).await?;
        self.timers.schedule(id.clone(), sandbox.expiry_deadline());
        info!(sandbox = %id, "sandbox {verb}");
        Ok(sandbox)
    }

    /// Disarms the timer and removes an exited container in the background: an ended sandbox
    /// leaves nothing on the engine.
    fn after_end(&self, sandbox: &Sandbox) {
        self.timers.cancel(sandbox.id.clone());
        self.processes.forget(&sandbox.id);
        self.activity.forget(&sandbox.id);
        if sandbox.container_id.is_some() || sandbox.spec.stack.is_some() {
            let runtime = Arc::clone(&self.runtime);
            let sandbox = sandbox.clone();
            tokio::spawn(async move {
                if let Err(error) = remove_engine_objects(runtime.as_ref(), &sandbox).await {
                    debug!(sandbox = %sandbox.id, %error, "removal of an ended container failed; the resync will retry");
                }
            });
        }
    }

    /// Removes what the sandbox has on the engine: its container, or its whole compose stack.
    async fn remove_engine_objects(&self, sandbox: &Sandbox) -> Result<(), RuntimeError> {
        remove_engine_objects(self.runtime.as_ref(), sandbox).await
    }

    /// Writes the record to the store (retrying transient failures), then to the index.
    async fn persist(&self, sandbox: &mut Sandbox) -> Result<(), StoreError> {
        sandbox.updated_at = Utc::now();
        retry_store(|| self.store.update(sandbox)).await?;
        self.index.put(sandbox.clone());
        Ok(())
    }

    /// [`Self::persist`] as a compare-and-set on a shared store: written only if the stored
    /// record is still the copy of `read_at`; `false` when another process wrote it in between
    /// (read it again and decide again). Where no other process writes (SQLite), the sandbox's
    /// lock already orders every write, and this is `persist`. A record that keeps changing
    /// under `MAX_WRITE_ATTEMPTS` decisions in a row is reported rather than chased.
    async fn persist_if_unchanged(
        &self,
        sandbox: &mut Sandbox,
        read_at: DateTime<Utc>,
        attempts: &mut u32,
    ) -> Result<bool, ServiceError> {
        if !self.store.is_shared() {
            self.persist(sandbox).await?;
            return Ok(true);
        }
        *attempts += 1;
        if *attempts > MAX_WRITE_ATTEMPTS {
            return Err(ServiceError::Store(StoreError::Unavailable(format!(
                "sandbox {} kept changing through other processes while this one decided on it; retry",
                sandbox.id
            ))));
        }
        sandbox.updated_at = Utc::now().max(read_at + chrono::Duration::nanoseconds(1));
        let written = retry_store(|| self.store.update_if_unchanged(sandbox, read_at)).await?;
        if written {
            self.index.put(sandbox.clone());
        } else {
            debug!(sandbox = %sandbox.id, "another process wrote the record since it was read; deciding again");
        }
        Ok(written)
    }

    fn lock_provisioning(&self) -> std::sync::MutexGuard<'_, HashSet<SandboxId>> {
        self.provisioning
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn record_count(&self) -> usize {
        self.index.len()
    }
}

/// What the client is told when its streamed body was cut.
impl crate::body::BodyFault {
    pub fn into_service(self) -> ServiceError {
        match self {
            crate::body::BodyFault::TooLarge(limit) => ServiceError::TooLarge(format!(
                "the upload is larger than this server's limit of {limit} bytes"
            )),
            crate::body::BodyFault::Length { announced, got } => ServiceError::BadBody(format!(
                "the body had {got} bytes, but Content-Length announced {announced}"
            )),
            crate::body::BodyFault::Read(detail) => {
                ServiceError::BadBody(format!("the request body could not be read: {detail}"))
            }
        }
    }
}

/// Ends a sandbox whose main process exited: `Failed` on OOM or a non-zero code, else `Terminated`.
/// What a compatibility surface adds to a create beyond the native request.
#[derive(Debug, Default)]
pub struct CreateExtras {
    /// Labels set by berth itself (AEnvironment's `aenv.*`), exempt from the label syntax.
    pub system_labels: BTreeMap<String, String>,
    /// A compose stack to run around the sandbox's container.
    pub stack: Option<berth_core::stack::StackPlan>,
}

/// Removes what `sandbox` has on the engine: its container, or its whole compose stack (a
/// sandbox whose egress is `deny` has a network of its own, and goes the way of a stack).
async fn remove_engine_objects(runtime: &dyn Runtime, sandbox: &Sandbox) -> Result<(), RuntimeError> {
    if sandbox.spec.stack.is_some() || sandbox.spec.network.egress == berth_core::Egress::Deny {
        // A sandbox sealed while it ran has a container that was not made with its network's
        // labels: removed by id first, then the rest as a stack's objects.
        if let Some(container_id) = &sandbox.container_id
            && sandbox.spec.stack.is_none()
        {
            runtime.remove(container_id).await?;
        }
        return runtime.remove_stack(&sandbox.id).await;
    }
    match &sandbox.container_id {
        Some(container_id) => runtime.remove(container_id).await,
        None => Ok(()),
    }
}

/// Ended by SIGKILL (exit 137) with no other explanation recorded yet.
fn ended_by_an_unexplained_kill(sandbox: &Sandbox) -> bool {
    !sandbox.oom_killed && sandbox.exit_code == Some(137) && sandbox.status_reason == Some(Reason::Exited)
}

fn end_with_exit(sandbox: &mut Sandbox, exit_code: Option<i64>, oom_killed: bool, finished_at: Option<DateTime<Utc>>) {
    sandbox.exit_code = exit_code;
    sandbox.oom_killed = oom_killed;
    let ended_at = finished_at.unwrap_or_else(Utc::now);
    if oom_killed {
        sandbox.end(Status::Failed, Reason::OomKilled, ended_at);
    } else if exit_code != Some(0) {
        sandbox.end(Status::Failed, Reason::Exited, ended_at);
    } else {
        sandbox.end(Status::Terminated, Reason::Exited, ended_at);
    }
}

/// The 409 for an ended sandbox: `sandbox X has ended (Terminated: expired)`.
fn ended(sandbox: &Sandbox) -> ServiceError {
    ServiceError::InvalidState(format!(
        "sandbox {} has ended ({}{})",
        sandbox.id,
        sandbox.status,
        sandbox
            .status_reason
            .as_ref()
            .map(|reason| format!(": {reason}"))
            .unwrap_or_default()
    ))
}

/// Retries a store write that failed because the store was briefly unavailable.
async fn retry_store<F, Fut, T>(mut write: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut delay = Duration::from_millis(50);
    for _ in 0..3 {
        match write().await {
            Err(StoreError::Unavailable(detail)) => {
                warn!(%detail, "store unavailable; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            outcome => return outcome,
        }
    }
    write().await
}

pub fn validate_owner(owner: &str) -> Result<(), ServiceError> {
    let valid = !owner.is_empty()
        && owner.len() <= 63
        && owner.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
    if valid {
        Ok(())
    } else {
        Err(ServiceError::field(
            "owner",
            format!("`{owner}` is not an owner name: use 1-63 letters, digits and - _ . @"),
        ))
    }
}

fn validate_idempotency_key(key: &str) -> Result<(), ServiceError> {
    if key.is_empty() || key.len() > 255 || !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ServiceError::field(
            "Idempotency-Key",
            "the header must be 1-255 printable ASCII characters without spaces, e.g. a UUID".into(),
        ));
    }
    Ok(())
}
