//! Templates and their warm pools: template rules (create, replace, read, delete), creates that
//! name a template (claiming a ready sandbox when the request allows it, else a cold create from
//! the template's spec), and the leader's pool keeping — refills with bounded concurrency,
//! recycling of idle and outdated sandboxes, and the template's error when it cannot fill.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::{PoolView, TemplateView};
use berth_core::Reason;
use berth_core::spec::NumberOrString;
use berth_core::{Sandbox, SandboxRequest, SandboxSpec, Status, Template, TemplateRef, TemplateRequest, units};
use berth_runtime::RuntimeError;
use berth_store::StoreError;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::{NotFoundKind, SandboxService, ServiceError};
use crate::metrics::{CreatePath, Operation};

/// Owner of a sandbox while it waits in a pool; the claim makes the claimer its owner.
pub const POOL_OWNER: &str = "berth-pool";
/// Pool sandboxes being created at once, over every pool.
const REFILL_CONCURRENCY: usize = 4;
/// How long a pool whose refill failed waits before trying again.
const REFILL_BACKOFF: Duration = Duration::from_secs(30);

/// What the pools are doing, in this process.
pub struct PoolBook {
    inner: Mutex<HashMap<String, PoolActivity>>,
    refills: Arc<tokio::sync::Semaphore>,
    /// Wakes the pool keeper early: a claim emptied a slot, or a template changed.
    wake: Notify,
}

#[derive(Default, Clone)]
struct PoolActivity {
    refilling: usize,
    claimed: u64,
    retry_after: Option<tokio::time::Instant>,
}

impl Default for PoolBook {
    fn default() -> Self {
        PoolBook {
            inner: Mutex::default(),
            refills: Arc::new(tokio::sync::Semaphore::new(REFILL_CONCURRENCY)),
            wake: Notify::new(),
        }
    }
}

impl PoolBook {
    fn with<T>(&self, key: &str, change: impl FnOnce(&mut PoolActivity) -> T) -> T {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        change(inner.entry(key.to_owned()).or_default())
    }

    fn activity(&self, key: &str) -> PoolActivity {
        self.with(key, |activity| activity.clone())
    }

    /// Resolves when the pools should be looked at again before the next tick.
    pub async fn woken(&self) {
        self.wake.notified().await;
    }
}

/// Whether a pooled sandbox can serve `request` as it is: a claim takes the owner, labels and
/// time to live; anything that shapes the container (image, command, env, workdir, user, ports,
/// resources) needs a cold create.
pub fn claimable(template: &Template, request: &SandboxRequest) -> bool {
    template.pool.is_some_and(|pool| pool.min_ready > 0)
        && request.image.is_none()
        && request.command.is_none()
        && request.env.is_empty()
        && request.workdir.is_none()
        && request.user.is_none()
        && request.ports.is_empty()
        && request.cpu.is_none()
        && request.memory.is_none()
        && request.disk.is_none()
        // A pooled sandbox passed the template's probe, not the one this create asks for.
        && request.readiness.is_none()
        // ... and runs under the template's runtime and confinement.
        && request.runtime.is_none()
        && request.hardening.is_none()
        && request.network.is_none()
        // Volumes belong to an owner, and a waiting pool sandbox to none yet.
        && request.volumes.is_empty()
        && template.spec.volumes.is_empty()
}

/// The template's spec with the request's fields laid over it (env and labels merged, the rest
/// replaced), as a request to validate like any other.
pub fn merged_request(template: &Template, request: &SandboxRequest) -> SandboxRequest {
    let spec = &template.spec;
    let mut env = spec.env.clone();
    env.extend(request.env.clone());
    let mut labels = spec.labels.clone();
    labels.extend(request.labels.clone());
    SandboxRequest {
        image: request.image.clone().or_else(|| Some(spec.image.clone())),
        command: request.command.clone().or_else(|| spec.command.clone()),
        env,
        workdir: request.workdir.clone().or_else(|| spec.workdir.clone()),
        user: request.user.clone().or_else(|| spec.user.clone()),
        labels,
        ports: if request.ports.is_empty() {
            spec.ports.clone()
        } else {
            request.ports.clone()
        },
        cpu: request
            .cpu
            .clone()
            .or_else(|| Some(NumberOrString::String(format!("{}m", spec.resources.cpu_millis)))),
        memory: request
            .memory
            .clone()
            .or_else(|| Some(NumberOrString::String(spec.resources.memory_bytes.to_string()))),
        disk: request.disk.clone().or_else(|| {
            spec.resources
                .disk_bytes
                .map(|bytes| NumberOrString::String(bytes.to_string()))
        }),
        ttl: request
            .ttl
            .clone()
            .or_else(|| Some(NumberOrString::String(units::format_duration(spec.ttl)))),
        max_lifetime: request.max_lifetime.clone().or_else(|| {
            spec.max_lifetime
                .map(|limit| NumberOrString::String(units::format_duration(limit)))
        }),
        idle_timeout: request.idle_timeout.clone().or_else(|| {
            spec.idle_timeout
                .map(|timeout| NumberOrString::String(units::format_duration(timeout)))
        }),
        hibernate_after: request.hibernate_after.clone().or_else(|| {
            spec.hibernate_after
                .map(|after| NumberOrString::String(units::format_duration(after)))
        }),
        ttl_counts_idle: request.ttl_counts_idle.or(Some(spec.ttl_counts_idle)),
        owner: request.owner.clone(),
        template: None,
        readiness: request
            .readiness
            .clone()
            .or_else(|| spec.readiness.as_ref().map(berth_core::ReadinessProbe::to_request)),
        runtime: request.runtime.clone().or_else(|| spec.runtime.clone()),
        hardening: request.hardening.or(Some(spec.hardening)),
        network: request.network.clone().or_else(|| Some(spec.network.to_request())),
        restart: request.restart.clone().or_else(|| Some(spec.restart.to_request())),
        volumes: if request.volumes.is_empty() {
            spec.volumes.clone()
        } else {
            request.volumes.clone()
        },
        snapshot: None,
    }
}

fn not_found(reference: &TemplateRef) -> ServiceError {
    ServiceError::not_found(
        NotFoundKind::Template,
        format!("no template `{reference}`: see GET /v1/templates"),
    )
}

fn parse_reference(reference: &str) -> Result<TemplateRef, ServiceError> {
    TemplateRef::parse(reference).map_err(|message| ServiceError::invalid("template", message))
}

impl SandboxService {
    /// The template a create names; a missing one is a 422 on the `template` field.
    pub(super) async fn template_for_create(&self, reference: &str) -> Result<Template, ServiceError> {
        let parsed = TemplateRef::parse(reference).map_err(|message| ServiceError::field("template", message))?;
        self.store
            .get_template(&parsed.name, &parsed.tag)
            .await?
            .ok_or_else(|| {
                ServiceError::field(
                    "template",
                    format!("no template `{parsed}`: create it first (POST /v1/templates)"),
                )
            })
    }

    /// Takes a ready sandbox from the template's pool for `owner`: its labels and time to live
    /// become the request's, and its TTL starts now. `None` when the pool is empty.
    pub(super) async fn claim(
        &self,
        template: &Template,
        spec: &SandboxSpec,
        owner: &str,
        idempotency_key: Option<&str>,
        requested_at: DateTime<Utc>,
    ) -> Result<Option<Sandbox>, ServiceError> {
        let key = template.reference().to_string();
        let labels = spec.labels.clone();
        let ttl = spec.ttl;
        let owner = owner.to_owned();
        let owner_of_claim = owner.clone();
        let idempotency_key = idempotency_key.map(str::to_owned);
        let claim = move |mut sandbox: Sandbox| {
            let now = Utc::now();
            sandbox.pool = None;
            sandbox.owner = owner.clone();
            sandbox.spec.labels = labels.clone();
            sandbox.spec.ttl = ttl;
            sandbox.idempotency_key = idempotency_key.clone();
            sandbox.created_at = now;
            sandbox.updated_at = now;
            sandbox.expires_at = chrono::Duration::from_std(ttl)
                .ok()
                .and_then(|ttl| now.checked_add_signed(ttl))
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            sandbox
        };
        let quota = self.identity.quota_of(&owner_of_claim).await?;
        let claimed = self
            .store
            .claim_pooled_within(&key, &claim, &quota)
            .await
            .map_err(|error| match error {
                StoreError::QuotaExceeded(exceeded) => ServiceError::QuotaExceeded {
                    owner: owner_of_claim.clone(),
                    exceeded,
                },
                other => other.into(),
            })?;
        let Some(claimed) = claimed else {
            debug!(template = %key, "pool empty; creating cold");
            return Ok(None);
        };
        self.index.put(claimed.clone());
        self.timers.schedule(claimed.id.clone(), claimed.expires_at);
        self.pools.with(&key, |activity| activity.claimed += 1);
        self.pools.wake.notify_one();
        self.metrics.count_operation(Operation::Claim);
        self.metrics.observe_create(
            CreatePath::Pooled,
            (Utc::now() - requested_at).to_std().unwrap_or_default(),
        );
        info!(sandbox = %claimed.id, template = %key, owner = %claimed.owner, "sandbox claimed from the pool");
        Ok(Some(claimed))
    }

    pub async fn create_template(&self, request: &TemplateRequest) -> Result<Template, ServiceError> {
        let template = self.validated_template(request, None).await?;
        self.check_runtime_offered(template.spec.runtime.as_deref()).await?;
        self.check_disk_limit_offered(template.spec.resources.disk_bytes)
            .await?;
        match self.insert_template(&template).await {
            Ok(()) => {}
            Err(ServiceError::Store(StoreError::TemplateExists { name, tag })) => {
                return Err(ServiceError::InvalidState(format!(
                    "template `{name}:{tag}` already exists: replace it with PUT /v1/templates/{name}:{tag}"
                )));
            }
            Err(error) => return Err(error),
        }
        info!(template = %template.reference(), image = %template.spec.image, "template created");
        Ok(template)
    }

    /// The one way a template is first written (natively or as an AEnvironment Env): stored,
    /// then the pool keeper is woken to fill its pool. `Store(TemplateExists)` when it exists.
    pub async fn insert_template(&self, template: &Template) -> Result<(), ServiceError> {
        self.store.insert_template(template).await?;
        self.pools.wake.notify_one();
        Ok(())
    }

    /// The one way a stored template is replaced: written, then the pool keeper is woken so its
    /// idle sandboxes made from the old spec are replaced at once. `Store(TemplateNotFound)`
    /// when there is none.
    pub async fn replace_template(&self, template: &Template) -> Result<(), ServiceError> {
        self.store.update_template(template).await?;
        self.pools.wake.notify_one();
        Ok(())
    }

    /// The template `name:tag`, if there is one.
    pub async fn find_template(&self, name: &str, tag: &str) -> Result<Option<Template>, ServiceError> {
        Ok(self.store.get_template(name, tag).await?)
    }

    /// Creates or replaces the template `reference` names. Idle pooled sandboxes made from the
    /// old spec are replaced by the pool keeper.
    pub async fn put_template(&self, reference: &str, request: &TemplateRequest) -> Result<Template, ServiceError> {
        let parsed = parse_reference(reference)?;
        let mut request = request.clone();
        // The tag comes from the path unless the body names one; both must then agree.
        match (&request.tag, reference.contains(':')) {
            (Some(tag), true) if *tag != parsed.tag => {
                return Err(ServiceError::field(
                    "tag",
                    format!("`{tag}` differs from `{}` in the path", parsed.tag),
                ));
            }
            (None, _) => request.tag = Some(parsed.tag.clone()),
            _ => {}
        }
        let mut template = self.validated_template(&request, Some(&parsed.name)).await?;
        self.check_runtime_offered(template.spec.runtime.as_deref()).await?;
        self.check_disk_limit_offered(template.spec.resources.disk_bytes)
            .await?;
        match self.find_template(&template.name, &template.tag).await? {
            Some(existing) => {
                template.created_at = existing.created_at;
                self.replace_template(&template).await?;
            }
            None => self.insert_template(&template).await?,
        }
        info!(template = %template.reference(), "template saved");
        Ok(template)
    }

    pub async fn get_template(&self, reference: &str) -> Result<Template, ServiceError> {
        let parsed = parse_reference(reference)?;
        self.store
            .get_template(&parsed.name, &parsed.tag)
            .await?
            .ok_or_else(|| not_found(&parsed))
    }

    pub async fn list_templates(&self) -> Result<Vec<Template>, ServiceError> {
        Ok(self.store.list_templates().await?)
    }

    /// Deletes the template; its idle pooled sandboxes are removed by the pool keeper. Sandboxes
    /// already made from it keep running.
    pub async fn delete_template(&self, reference: &str) -> Result<(), ServiceError> {
        let parsed = parse_reference(reference)?;
        if !self.store.delete_template(&parsed.name, &parsed.tag).await? {
            return Err(not_found(&parsed));
        }
        info!(template = %parsed, "template deleted");
        self.pools.wake.notify_one();
        Ok(())
    }

    /// The template as the API shows it, with its pool's state.
    pub fn template_view(&self, template: &Template) -> TemplateView {
        TemplateView::new(template, self.pool_view(template))
    }

    pub fn pool_view(&self, template: &Template) -> Option<PoolView> {
        let pool = template.pool?;
        let key = template.reference().to_string();
        let (ready, _) = self.pool_members(&key);
        let activity = self.pools.activity(&key);
        Some(PoolView {
            template: key,
            min_ready: pool.min_ready,
            max_idle_age: units::format_duration(pool.max_idle_age),
            ready: ready.len(),
            refilling: activity.refilling,
            claimed: activity.claimed,
            error: template.error.clone(),
        })
    }

    /// The live sandboxes waiting in pool `key`: ready ones, and ones still being created.
    fn pool_members(&self, key: &str) -> (Vec<Arc<Sandbox>>, Vec<Arc<Sandbox>>) {
        self.index
            .snapshot()
            .into_iter()
            .filter(|sandbox| sandbox.pool.as_deref() == Some(key) && !sandbox.status.is_ended())
            .partition(|sandbox| sandbox.status == Status::Running)
    }

    /// One pass of the leader's pool keeping over every template.
    pub async fn keep_pools(self: &Arc<Self>) -> Result<(), StoreError> {
        let templates = self.store.list_templates().await?;
        let mut pooled_keys: BTreeMap<String, Template> = BTreeMap::new();
        for template in templates {
            if template.pool.is_some() {
                pooled_keys.insert(template.reference().to_string(), template);
            }
        }
        // Sandboxes waiting in a pool whose template is gone (or has no pool any more).
        for sandbox in self.index.snapshot() {
            if let Some(key) = &sandbox.pool
                && !sandbox.status.is_ended()
                && !pooled_keys.contains_key(key)
            {
                self.recycle(&sandbox, "its template has no pool any more");
            }
        }
        for (key, template) in &pooled_keys {
            self.keep_pool(key, template);
        }
        Ok(())
    }

    fn keep_pool(self: &Arc<Self>, key: &str, template: &Template) {
        let Some(pool) = template.pool else { return };
        let (ready, creating) = self.pool_members(key);
        let max_idle = chrono::Duration::from_std(pool.max_idle_age).unwrap_or(chrono::Duration::MAX);
        let now = Utc::now();
        let mut kept = 0usize;
        for sandbox in &ready {
            let idle_since = sandbox.started_at.unwrap_or(sandbox.created_at);
            if sandbox.spec != template.spec {
                self.recycle(sandbox, "its template changed");
            } else if idle_since + max_idle <= now {
                self.recycle(sandbox, "it was idle for longer than max_idle_age");
            } else if kept >= pool.min_ready as usize {
                self.recycle(sandbox, "the pool holds more than min_ready");
            } else {
                kept += 1;
            }
        }
        self.metrics.set_pool_ready(key, kept);
        let activity = self.pools.activity(key);
        if activity
            .retry_after
            .is_some_and(|retry| tokio::time::Instant::now() < retry)
        {
            return;
        }
        let wanted = (pool.min_ready as usize).saturating_sub(kept + creating.len().max(activity.refilling));
        for _ in 0..wanted {
            self.pools.with(key, |activity| activity.refilling += 1);
            let service = Arc::clone(self);
            let template = template.clone();
            let key = key.to_owned();
            tokio::spawn(async move {
                let outcome = match Arc::clone(&service.pools.refills).acquire_owned().await {
                    Ok(_permit) => service.create_pooled(&template).await,
                    Err(_) => return,
                };
                service.pools.with(&key, |activity| activity.refilling -= 1);
                service.after_refill(&template, outcome).await;
            });
        }
    }

    /// Records a refill's outcome on the template: the error when it failed (and a pause before
    /// the next try), nothing once it works again.
    async fn after_refill(&self, template: &Template, outcome: Result<Sandbox, ServiceError>) {
        let key = template.reference().to_string();
        let error = match outcome {
            Ok(_) => None,
            Err(error) => {
                self.metrics.count_error("pool_refill");
                warn!(template = %key, %error, retry_in = ?REFILL_BACKOFF, "cannot refill the pool");
                self.pools.with(&key, |activity| {
                    activity.retry_after = Some(tokio::time::Instant::now() + REFILL_BACKOFF);
                });
                Some(match &error {
                    ServiceError::Engine {
                        error: RuntimeError::ImageNotFound { image, engine, .. },
                        ..
                    } => format!(
                        "image `{image}` is not available on engine `{engine}`: build or load it, then the pool refills"
                    ),
                    other => format!("cannot create pool sandboxes: {other}"),
                })
            }
        };
        if error.is_none() {
            self.pools.with(&key, |activity| activity.retry_after = None);
        }
        // Re-read: the template may have changed while the sandbox was being made.
        let Ok(Some(mut current)) = self.store.get_template(&template.name, &template.tag).await else {
            return;
        };
        if current.error != error {
            current.error = error;
            current.updated_at = Utc::now();
            if let Err(store_error) = self.store.update_template(&current).await {
                warn!(template = %key, %store_error, "cannot record the pool's state on the template");
            }
        }
    }

    /// Creates one sandbox for the template's pool: it never expires while it waits.
    async fn create_pooled(&self, template: &Template) -> Result<Sandbox, ServiceError> {
        let key = template.reference().to_string();
        let mut sandbox = Sandbox::new_pending(
            template.spec.clone(),
            POOL_OWNER.to_owned(),
            self.runtime.name().to_owned(),
            None,
            Utc::now(),
        );
        sandbox.template = Some(key.clone());
        sandbox.pool = Some(key);
        sandbox.expires_at = DateTime::<Utc>::MAX_UTC;
        super::retry_store(|| self.store.insert(&sandbox)).await?;
        self.index.put(sandbox.clone());
        let id = sandbox.id.clone();
        self.lock_provisioning().insert(id.clone());
        let outcome = self.provision(&id).await;
        self.lock_provisioning().remove(&id);
        outcome
    }

    /// Removes an idle pooled sandbox in the background.
    fn recycle(self: &Arc<Self>, sandbox: &Sandbox, why: &str) {
        debug!(sandbox = %sandbox.id, pool = ?sandbox.pool, why, "recycling a pooled sandbox");
        let service = Arc::clone(self);
        let id = sandbox.id.clone();
        tokio::spawn(async move {
            let _guard = service.locks.lock(&id).await;
            // Claimed in the meantime: it is someone's sandbox now.
            if service.fresh(&id).await.is_none_or(|current| current.pool.is_none()) {
                return;
            }
            drop(_guard);
            if let Err(error) = service.stop(&id, Reason::Recycled).await {
                debug!(sandbox = %id, %error, "recycling failed; the next pass retries");
            }
        });
    }

    /// After the template's image was (re)built: its pool refills now rather than after a failed
    /// refill's backoff, and the sandboxes waiting in it — made from the image as it was, even
    /// when the tag is the same — are replaced.
    pub(super) fn refresh_pool_after_build(self: &Arc<Self>, template: &Template) {
        let key = template.reference().to_string();
        self.pools.with(&key, |activity| activity.retry_after = None);
        let (ready, _) = self.pool_members(&key);
        for sandbox in &ready {
            self.recycle(sandbox, "its template's image was rebuilt");
        }
        self.pools.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(pool: u32) -> Template {
        let request = TemplateRequest {
            name: Some("py".into()),
            image: Some("busybox:latest".into()),
            env: BTreeMap::from([("A".into(), "1".into())]),
            labels: BTreeMap::from([("team".into(), "ml".into())]),
            cpu: Some(NumberOrString::String("500m".into())),
            memory: Some(NumberOrString::String("256Mi".into())),
            ttl: Some(NumberOrString::String("10m".into())),
            pool: Some(berth_core::template::PoolRequest {
                min_ready: Some(pool),
                max_idle_age: None,
            }),
            ..TemplateRequest::default()
        };
        request
            .validate(&berth_core::SpecPolicy::default(), None, Utc::now())
            .unwrap()
    }

    #[test]
    fn the_template_spec_round_trips_through_the_merged_request() {
        let template = template(2);
        let spec = merged_request(&template, &SandboxRequest::default())
            .validate(&berth_core::SpecPolicy::default())
            .unwrap();
        assert_eq!(spec, template.spec);
    }

    #[test]
    fn request_fields_override_and_env_and_labels_merge() {
        let template = template(2);
        let request = SandboxRequest {
            env: BTreeMap::from([("B".into(), "2".into())]),
            labels: BTreeMap::from([("run".into(), "7".into())]),
            ttl: Some(NumberOrString::String("90s".into())),
            cpu: Some(NumberOrString::String("2".into())),
            ..SandboxRequest::default()
        };
        let spec = merged_request(&template, &request)
            .validate(&berth_core::SpecPolicy::default())
            .unwrap();
        assert_eq!(spec.env.len(), 2);
        assert_eq!(spec.labels.len(), 2);
        assert_eq!(spec.ttl, Duration::from_secs(90));
        assert_eq!(spec.resources.cpu_millis, 2000);
        assert_eq!(spec.resources.memory_bytes, 256 * 1024 * 1024);
    }

    #[test]
    fn only_owner_labels_and_ttl_keep_a_create_claimable() {
        let pooled = template(2);
        let keeps = SandboxRequest {
            labels: BTreeMap::from([("run".into(), "7".into())]),
            ttl: Some(NumberOrString::Number(60.0)),
            owner: Some("alice".into()),
            ..SandboxRequest::default()
        };
        assert!(claimable(&pooled, &keeps));
        assert!(!claimable(&template(0), &keeps), "an empty pool spec claims nothing");
        let cold = [
            SandboxRequest {
                env: BTreeMap::from([("B".into(), "2".into())]),
                ..SandboxRequest::default()
            },
            SandboxRequest {
                command: Some(vec!["true".into()]),
                ..SandboxRequest::default()
            },
            SandboxRequest {
                memory: Some(NumberOrString::String("1Gi".into())),
                ..SandboxRequest::default()
            },
            SandboxRequest {
                ports: vec![80],
                ..SandboxRequest::default()
            },
            // A pooled sandbox sits on the network of the template's policy.
            SandboxRequest {
                network: Some(berth_core::NetworkPolicy::default().to_request()),
                ..SandboxRequest::default()
            },
        ];
        for request in cold {
            assert!(!claimable(&pooled, &request), "{request:?}");
        }
    }

    #[test]
    fn a_templates_egress_policy_carries_into_its_sandboxes_unless_the_create_names_one() {
        let mut sealed = template(1);
        sealed.spec.network.egress = berth_core::Egress::Deny;
        let policy = berth_core::SpecPolicy::default();
        let inherited = merged_request(&sealed, &SandboxRequest::default())
            .validate(&policy)
            .unwrap();
        assert_eq!(inherited.network.egress, berth_core::Egress::Deny);
        let opened = SandboxRequest {
            network: Some(berth_core::NetworkPolicy::default().to_request()),
            ..SandboxRequest::default()
        };
        let overridden = merged_request(&sealed, &opened).validate(&policy).unwrap();
        assert_eq!(overridden.network.egress, berth_core::Egress::Allow);
    }
}
