//! The env-service controller (AEnvironment's `/env-service` on berth): run by the leader only,
//! about every second and whenever the API changes a service, it keeps each service's replica
//! sandboxes (created through `create_labelled` with the `berth.env-service*` labels) at the
//! desired count and generation — one replica at a time, restarting those that end — renews
//! their TTLs, keeps each service's [`Balancer`] listening and pointed at the live replicas, and
//! writes the service's status. The decisions are the pure functions [`next_step`] and
//! [`status_after`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use berth_core::Reason;
use berth_core::env_service::service_labels;
use berth_core::spec::NumberOrString;
use berth_core::{
    EnvService, EnvServiceId, Sandbox, SandboxId, SandboxRequest, ServiceStatus, Status, Template, units,
};
use berth_store::SandboxFilter;
use chrono::{DateTime, Utc};
use tracing::{debug, info, warn};

use berth_control::service::{DEFAULT_OWNER, SandboxService, ServiceError};
use berth_gateway::balancer::Balancer;

/// Period of the controller when nothing wakes it sooner.
const TICK: Duration = Duration::from_secs(1);
/// Replicas in a row that fail to become `Running` before the service is `Failed`.
pub const MAX_CONSECUTIVE_FAILURES: u32 = 3;

/// Asks the controller to look at the services now rather than at its next tick.
pub fn wake(service: &SandboxService) {
    service.env_services_changed().notify_waiters();
}

/// Where a replica is in its life, for the controller's decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Recorded, being created or probed.
    Starting,
    /// Serving.
    Running,
}

/// One live replica (not ended, not stopping), as [`next_step`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub id: SandboxId,
    pub generation: u64,
    pub phase: Phase,
}

/// What the controller does next for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create one replica of the current generation.
    Create,
    /// Remove this replica.
    Remove(SandboxId),
    /// A replica of the current generation is starting: nothing more until it runs or fails.
    Wait,
    /// Exactly the desired replicas of the current generation run.
    Settled,
}

/// The next step towards `desired` running replicas of `generation`, one replica at a time:
/// old-generation replicas that do not serve go first; surplus of the current generation is
/// removed (starting ones before running ones, newest first); then one new replica is created
/// and waited for before an old one is removed (a rollout never drops below the desired count
/// of serving replicas when it can help it). `replicas` are the live ones, oldest first.
pub fn next_step(desired: u32, generation: u64, replicas: &[Replica]) -> Step {
    let desired = desired as usize;
    let (current, old): (Vec<&Replica>, Vec<&Replica>) =
        replicas.iter().partition(|replica| replica.generation == generation);
    if let Some(idle) = old.iter().find(|replica| replica.phase != Phase::Running) {
        return Step::Remove(idle.id.clone());
    }
    let starting: Vec<&&Replica> = current
        .iter()
        .filter(|replica| replica.phase == Phase::Starting)
        .collect();
    let running = current.len() - starting.len();
    if current.len() > desired {
        let surplus = starting
            .last()
            .map(|replica| &replica.id)
            .or_else(|| current.last().map(|replica| &replica.id))
            .cloned();
        if let Some(id) = surplus {
            return Step::Remove(id);
        }
    }
    if !starting.is_empty() {
        return Step::Wait;
    }
    if running + old.len() > desired
        && let Some(oldest) = old.first()
    {
        return Step::Remove(oldest.id.clone());
    }
    if running < desired {
        return Step::Create;
    }
    Step::Settled
}

/// The service's status once `step` was decided: `Failed` while replicas keep failing, `Running`
/// when settled, else `Creating` until the service first ran and `Updating` after.
pub fn status_after(previous: ServiceStatus, step: &Step, failing: bool) -> ServiceStatus {
    if failing {
        return ServiceStatus::Failed;
    }
    match (step, previous) {
        (Step::Settled, _) => ServiceStatus::Running,
        (_, ServiceStatus::Pending | ServiceStatus::Creating) => ServiceStatus::Creating,
        _ => ServiceStatus::Updating,
    }
}

/// The sandbox request of one replica of `service`, made from its Env's `template`: the Env's
/// spec with the service's image, variables and limits laid over it, the replica port included,
/// the server's longest TTL (the controller renews it) and the Env's readiness probe.
pub fn replica_request(service: &EnvService, template: &Template, max_ttl: Duration) -> SandboxRequest {
    let spec = &template.spec;
    let mut env = spec.env.clone();
    env.extend(service.environment_variables.clone());
    let mut ports = spec.ports.clone();
    if !ports.contains(&service.port) {
        ports.push(service.port);
    }
    let cpu_millis = service.cpu_millis.unwrap_or(spec.resources.cpu_millis);
    let memory_bytes = service.memory_bytes.unwrap_or(spec.resources.memory_bytes);
    SandboxRequest {
        image: Some(service.image.clone().unwrap_or_else(|| spec.image.clone())),
        command: spec.command.clone(),
        env,
        workdir: spec.workdir.clone(),
        user: spec.user.clone(),
        labels: spec.labels.clone(),
        ports,
        cpu: Some(NumberOrString::String(format!("{cpu_millis}m"))),
        memory: Some(NumberOrString::String(memory_bytes.to_string())),
        disk: spec
            .resources
            .disk_bytes
            .map(|bytes| NumberOrString::String(bytes.to_string())),
        ttl: Some(NumberOrString::String(units::format_duration(max_ttl))),
        max_lifetime: None,
        idle_timeout: None,
        hibernate_after: None,
        ttl_counts_idle: None,
        owner: Some(replica_owner(service)),
        template: None,
        readiness: spec.readiness.as_ref().map(berth_core::ReadinessProbe::to_request),
        runtime: spec.runtime.clone(),
        hardening: Some(spec.hardening),
        network: Some(spec.network.to_request()),
        restart: Some(spec.restart.to_request()),
        volumes: spec.volumes.clone(),
        snapshot: None,
    }
}

/// The owner of a service's replica sandboxes: the service's, or berth's default.
pub fn replica_owner(service: &EnvService) -> String {
    if service.owner.is_empty() {
        DEFAULT_OWNER.to_owned()
    } else {
        service.owner.clone()
    }
}

/// The system labels of a replica of `service`'s current generation.
pub fn replica_labels(service: &EnvService) -> BTreeMap<String, String> {
    BTreeMap::from([
        (service_labels::SERVICE.to_owned(), service.id.to_string()),
        (service_labels::GENERATION.to_owned(), service.generation.to_string()),
    ])
}

/// The live (not ended, not stopping) replica sandboxes of every service, by service id,
/// oldest first.
pub fn live_replicas(service: &SandboxService) -> HashMap<String, Vec<Sandbox>> {
    let mut by_service: HashMap<String, Vec<Sandbox>> = HashMap::new();
    for sandbox in service.list(&SandboxFilter::default(), None, usize::MAX).items {
        if sandbox.status == Status::Stopping {
            continue;
        }
        if let Some(id) = sandbox.spec.labels.get(service_labels::SERVICE) {
            by_service.entry(id.clone()).or_default().push(sandbox);
        }
    }
    by_service
}

/// How many replicas of service `id` run now.
pub fn available_replicas(service: &SandboxService, id: &EnvServiceId) -> u32 {
    let filter = SandboxFilter {
        statuses: vec![Status::Running],
        labels: BTreeMap::from([(service_labels::SERVICE.to_owned(), id.to_string())]),
        ..SandboxFilter::default()
    };
    u32::try_from(service.list(&filter, None, usize::MAX).items.len()).unwrap_or(u32::MAX)
}

fn as_replica(sandbox: &Sandbox) -> Replica {
    let generation = sandbox
        .spec
        .labels
        .get(service_labels::GENERATION)
        .and_then(|text| text.parse().ok())
        .unwrap_or(0);
    let phase = if serving(sandbox) {
        Phase::Running
    } else {
        Phase::Starting
    };
    Replica {
        id: sandbox.id.clone(),
        generation,
        phase,
    }
}

/// `Running` with an address berth can reach.
fn serving(sandbox: &Sandbox) -> bool {
    sandbox.status == Status::Running && (sandbox.ip.is_some() || !sandbox.ports.is_empty())
}

/// What the controller remembers of one service between ticks (lost on restart, which only
/// means a `Failed` service gets fresh attempts).
#[derive(Default)]
struct Memory {
    /// Replicas it created that have not been seen serving yet.
    starting: HashSet<SandboxId>,
    failures: u32,
    last_failure: Option<String>,
    /// The spec the failures were counted against: a change starts the count over.
    counted_for: (u64, u32),
}

struct Controller {
    service: Arc<SandboxService>,
    balancers: HashMap<EnvServiceId, Balancer>,
    memory: HashMap<EnvServiceId, Memory>,
}

/// The controller's loop, run by the leader next to the pool keeper; aborted (listeners
/// closed with it) when the leadership is lost.
pub async fn run(service: Arc<SandboxService>) {
    let mut controller = Controller {
        service,
        balancers: HashMap::new(),
        memory: HashMap::new(),
    };
    loop {
        let changed = Arc::clone(&controller.service);
        let woken = changed.env_services_changed().notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let started = std::time::Instant::now();
        if let Err(error) = controller.tick().await {
            controller.service.metrics().count_error("env_services");
            warn!(%error, "cannot read the env-services to keep them");
        }
        controller
            .service
            .metrics()
            .observe_loop("env_services", started.elapsed());
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            () = woken => {}
        }
    }
}

impl Controller {
    async fn tick(&mut self) -> Result<(), ServiceError> {
        let services = self.service.list_env_services().await?;
        let mut replicas = live_replicas(&self.service);
        let known: HashSet<&str> = services
            .iter()
            .filter(|service| service.status != ServiceStatus::Terminated)
            .map(|service| service.id.as_str())
            .collect();
        // Replicas of deleted services (a delete interrupted half-way, or a create that raced it).
        for (id, sandboxes) in &replicas {
            if !known.contains(id.as_str()) {
                for sandbox in sandboxes {
                    self.remove(id, &sandbox.id).await;
                }
            }
        }
        self.balancers.retain(|id, _| known.contains(id.as_str()));
        self.memory.retain(|id, _| known.contains(id.as_str()));
        for record in services {
            let live = replicas.remove(record.id.as_str()).unwrap_or_default();
            if record.status == ServiceStatus::Terminated {
                self.finish_delete(&record, &live).await;
                continue;
            }
            if let Err(error) = self.keep(record, live).await {
                warn!(%error, "could not keep an env-service; retrying");
            }
        }
        Ok(())
    }

    /// `service_id` as its replicas' label names it.
    async fn remove(&self, service_id: &str, replica: &SandboxId) {
        match self.service.delete_in_background(replica.as_str()).await {
            Ok(_) => info!(service = %service_id, sandbox = %replica, "env-service replica removed"),
            Err(error) => warn!(service = %service_id, sandbox = %replica, %error, "could not remove a replica"),
        }
    }

    /// A service marked `Terminated` by a delete that did not finish: its replicas go, then it.
    async fn finish_delete(&self, record: &EnvService, live: &[Sandbox]) {
        for sandbox in live {
            self.remove(record.id.as_str(), &sandbox.id).await;
        }
        if let Err(error) = self.service.delete_env_service(&record.id).await {
            warn!(service = %record.id, %error, "could not forget a deleted env-service");
        }
    }

    async fn keep(&mut self, mut record: EnvService, live: Vec<Sandbox>) -> Result<(), ServiceError> {
        let mut changed = self.listen(&mut record).await;
        let max_ttl = self.service.config().policy.max_ttl;
        self.renew(&record, &live, max_ttl).await;

        let memory = self.memory.entry(record.id.clone()).or_default();
        if memory.counted_for != (record.generation, record.replicas) {
            memory.counted_for = (record.generation, record.replicas);
            memory.failures = 0;
            memory.last_failure = None;
        }
        for sandbox in &live {
            if serving(sandbox) && memory.starting.remove(&sandbox.id) {
                memory.failures = 0;
                memory.last_failure = None;
            }
        }
        let live_ids: HashSet<&SandboxId> = live.iter().map(|sandbox| &sandbox.id).collect();
        let gone: Vec<SandboxId> = memory
            .starting
            .iter()
            .filter(|id| !live_ids.contains(id))
            .cloned()
            .collect();
        for id in gone {
            memory.starting.remove(&id);
            // Ended (or stopping) without ever serving: a failed start, unless we removed it.
            let ended = self.service.get(id.as_str()).ok();
            let reason = ended.as_ref().and_then(|sandbox| sandbox.status_reason.clone());
            if reason != Some(Reason::Deleted) {
                memory.failures += 1;
                memory.last_failure = Some(format!(
                    "replica {id} did not start: {}",
                    reason.map_or_else(|| "it ended".to_owned(), |reason| reason.to_string())
                ));
            }
        }

        let views: Vec<Replica> = live.iter().map(as_replica).collect();
        let step = next_step(record.replicas, record.generation, &views);
        let failing = memory.failures >= MAX_CONSECUTIVE_FAILURES;
        match &step {
            Step::Create if !failing => match self.create_replica(&record).await {
                Ok(id) => {
                    self.memory.entry(record.id.clone()).or_default().starting.insert(id);
                }
                Err(message) => {
                    let memory = self.memory.entry(record.id.clone()).or_default();
                    memory.failures += 1;
                    memory.last_failure = Some(message);
                }
            },
            Step::Remove(id) => self.remove(record.id.as_str(), id).await,
            Step::Create | Step::Wait | Step::Settled => {}
        }
        let memory = self.memory.entry(record.id.clone()).or_default();
        let failing = memory.failures >= MAX_CONSECUTIVE_FAILURES;
        let status = status_after(record.status, &step, failing);
        let reason = match status {
            ServiceStatus::Failed => memory.last_failure.clone(),
            _ => None,
        };
        if status != record.status || reason != record.status_reason {
            info!(service = %record.id, from = %record.status, to = %status, reason = ?reason, "env-service status");
            record.status = status;
            record.status_reason = reason;
            changed = true;
        }

        if let Some(balancer) = self.balancers.get(&record.id) {
            balancer.set_targets(
                live.iter()
                    .filter(|sandbox| serving(sandbox))
                    .filter_map(|sandbox| berth_control::address::sandbox_address(sandbox, record.port))
                    .collect::<Vec<SocketAddr>>(),
            );
        }
        if changed {
            record.next_revision(Utc::now());
            if !self.service.update_env_service(&record, false).await? {
                debug!(service = %record.id, "env-service changed meanwhile; the next tick decides again");
            }
        }
        Ok(())
    }

    /// Keeps the service's balancer listening on its port; if the port is taken, on a new one
    /// (recorded). Returns whether the record changed.
    async fn listen(&mut self, record: &mut EnvService) -> bool {
        if let Some(balancer) = self.balancers.get(&record.id) {
            if Some(balancer.port()) == record.listen_port {
                return false;
            }
            record.listen_port = Some(balancer.port());
            return true;
        }
        let host = self.service.config().service_host;
        let wanted = record.listen_port.unwrap_or(0);
        let bound = match Balancer::bind(host, wanted).await {
            Ok(balancer) => Ok(balancer),
            Err(error) if wanted != 0 => {
                warn!(service = %record.id, port = wanted, %error, "the env-service's port is taken; listening on a new one");
                Balancer::bind(host, 0).await
            }
            Err(error) => Err(error),
        };
        match bound {
            Ok(balancer) => {
                info!(service = %record.id, address = %format_args!("{host}:{}", balancer.port()), "env-service listening");
                let port = balancer.port();
                self.balancers.insert(record.id.clone(), balancer);
                if record.listen_port != Some(port) {
                    record.listen_port = Some(port);
                    return true;
                }
                false
            }
            Err(error) => {
                warn!(service = %record.id, %host, %error, "cannot listen for an env-service");
                false
            }
        }
    }

    /// Renews the replicas with less than half of the longest TTL left.
    async fn renew(&self, record: &EnvService, live: &[Sandbox], max_ttl: Duration) {
        let half = chrono::Duration::from_std(max_ttl / 2).unwrap_or(chrono::Duration::MAX);
        let now: DateTime<Utc> = Utc::now();
        let ttl = NumberOrString::String(units::format_duration(max_ttl));
        for sandbox in live {
            if sandbox.expires_at.signed_duration_since(now) < half
                && let Err(error) = self.service.renew(sandbox.id.as_str(), &ttl).await
            {
                warn!(service = %record.id, sandbox = %sandbox.id, %error, "could not renew a replica");
            }
        }
    }

    /// Creates one replica of the current generation; the message says why it could not.
    async fn create_replica(&self, record: &EnvService) -> Result<SandboxId, String> {
        let template = self
            .service
            .find_template(&record.env_name, &record.env_version)
            .await
            .map_err(|error| format!("cannot read Env {}: {error}", record.env_reference()))?
            .ok_or_else(|| format!("Env {} is no longer registered", record.env_reference()))?;
        let request = replica_request(record, &template, self.service.config().policy.max_ttl);
        let created = self
            .service
            .create_labelled(request, replica_labels(record), None, false)
            .await
            .map_err(|error| format!("cannot create a replica: {error}"))?;
        info!(service = %record.id, sandbox = %created.sandbox.id, generation = record.generation, "env-service replica created");
        Ok(created.sandbox.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> SandboxId {
        SandboxId::parse(&format!("{n:016x}")).unwrap()
    }

    fn replica(n: u8, generation: u64, phase: Phase) -> Replica {
        Replica {
            id: id(n),
            generation,
            phase,
        }
    }

    use Phase::{Running as R, Starting as S};

    #[test]
    fn a_new_service_starts_one_replica_at_a_time() {
        assert_eq!(next_step(2, 1, &[]), Step::Create);
        assert_eq!(next_step(2, 1, &[replica(1, 1, S)]), Step::Wait);
        assert_eq!(next_step(2, 1, &[replica(1, 1, R)]), Step::Create);
        assert_eq!(next_step(2, 1, &[replica(1, 1, R), replica(2, 1, R)]), Step::Settled);
        assert_eq!(next_step(0, 1, &[]), Step::Settled);
    }

    #[test]
    fn scaling_down_removes_one_at_a_time_starting_ones_first_then_the_newest() {
        let three = [replica(1, 1, R), replica(2, 1, R), replica(3, 1, R)];
        assert_eq!(next_step(1, 1, &three), Step::Remove(id(3)));
        assert_eq!(next_step(1, 1, &three[..2]), Step::Remove(id(2)));
        assert_eq!(next_step(1, 1, &three[..1]), Step::Settled);
        let with_starting = [replica(1, 1, R), replica(2, 1, S), replica(3, 1, R)];
        assert_eq!(next_step(2, 1, &with_starting), Step::Remove(id(2)));
        assert_eq!(next_step(0, 1, &three[..1]), Step::Remove(id(1)));
    }

    #[test]
    fn a_rollout_creates_one_new_waits_for_it_then_removes_one_old() {
        let old = [replica(1, 1, R), replica(2, 1, R)];
        assert_eq!(next_step(2, 2, &old), Step::Create);
        let surged = [replica(1, 1, R), replica(2, 1, R), replica(3, 2, S)];
        assert_eq!(next_step(2, 2, &surged), Step::Wait);
        let ready = [replica(1, 1, R), replica(2, 1, R), replica(3, 2, R)];
        assert_eq!(next_step(2, 2, &ready), Step::Remove(id(1)));
        let half = [replica(2, 1, R), replica(3, 2, R)];
        assert_eq!(next_step(2, 2, &half), Step::Create);
        let almost = [replica(2, 1, R), replica(3, 2, R), replica(4, 2, R)];
        assert_eq!(next_step(2, 2, &almost), Step::Remove(id(2)));
        assert_eq!(next_step(2, 2, &[replica(3, 2, R), replica(4, 2, R)]), Step::Settled);
    }

    #[test]
    fn old_replicas_that_do_not_serve_go_first() {
        let stuck = [replica(1, 1, S), replica(2, 2, S)];
        assert_eq!(next_step(1, 2, &stuck), Step::Remove(id(1)));
    }

    #[test]
    fn an_ended_replica_is_replaced_since_it_is_no_longer_live() {
        // Replica 2 died: only replica 1 is live, so one is created.
        assert_eq!(next_step(2, 1, &[replica(1, 1, R)]), Step::Create);
    }

    #[test]
    fn status_follows_creating_running_updating_failed() {
        use ServiceStatus::*;
        assert_eq!(status_after(Pending, &Step::Create, false), Creating);
        assert_eq!(status_after(Creating, &Step::Wait, false), Creating);
        assert_eq!(status_after(Creating, &Step::Settled, false), Running);
        assert_eq!(status_after(Running, &Step::Create, false), Updating);
        assert_eq!(status_after(Updating, &Step::Remove(id(1)), false), Updating);
        assert_eq!(status_after(Updating, &Step::Settled, false), Running);
        assert_eq!(status_after(Running, &Step::Create, true), Failed);
        assert_eq!(status_after(Failed, &Step::Create, false), Updating);
    }

    #[test]
    fn a_replica_runs_the_env_with_the_services_overrides() {
        let template = berth_core::TemplateRequest {
            name: Some("swe".into()),
            tag: Some("1".into()),
            image: Some("busybox".into()),
            env: BTreeMap::from([("A".into(), "env".into()), ("B".into(), "env".into())]),
            ports: vec![8081],
            ..berth_core::TemplateRequest::default()
        }
        .validate(&berth_core::SpecPolicy::default(), None, Utc::now())
        .unwrap();
        let now = Utc::now();
        let service = EnvService {
            id: EnvServiceId::parse("00000000000000aa").unwrap(),
            env_name: "swe".into(),
            env_version: "1".into(),
            service_name: String::new(),
            replicas: 1,
            image: Some("alpine".into()),
            environment_variables: BTreeMap::from([("B".into(), "svc".into())]),
            owner: String::new(),
            port: 9000,
            cpu_millis: Some(250),
            memory_bytes: None,
            accepted: BTreeMap::new(),
            pvc_name: String::new(),
            status: ServiceStatus::Pending,
            status_reason: None,
            listen_port: None,
            generation: 1,
            revision: 1,
            created_at: now,
            updated_at: now,
        };
        let request = replica_request(&service, &template, Duration::from_secs(3600));
        assert_eq!(request.image.as_deref(), Some("alpine"));
        assert_eq!(request.env["A"], "env");
        assert_eq!(request.env["B"], "svc");
        assert_eq!(request.ports, [8081, 9000]);
        assert_eq!(request.cpu, Some(NumberOrString::String("250m".into())));
        assert_eq!(request.ttl, Some(NumberOrString::String("1h".into())));
        assert_eq!(request.owner.as_deref(), Some(DEFAULT_OWNER));
        let labels = replica_labels(&service);
        assert_eq!(labels[service_labels::SERVICE], service.id.as_str());
        assert_eq!(labels[service_labels::GENERATION], "1");
        request.validate(&berth_core::SpecPolicy::default()).unwrap();
    }
}
