//! The reconcile rules: how an engine event or a resync changes a record so that stored intent
//! and engine fact agree — adoption, exits and OOM kills, containers lost or never started,
//! interrupted creates, orphans collected, old records purged. `reconciler.rs` runs them in its
//! loops; every change goes through the service's one write path (`persist`).

use std::collections::HashMap;
use std::sync::Arc;

use berth_core::Reason;
use berth_core::sandbox::label_keys;
use berth_core::{Sandbox, SandboxId, Status};
use berth_runtime::{ContainerState, EventKind, RunState, RuntimeError, RuntimeEvent};
use chrono::{DateTime, Utc};
use tracing::{debug, info, warn};

use super::{SandboxService, end_with_exit, ended_by_an_unexplained_kill};
use crate::metrics::Correction;

/// What one resync changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResyncReport {
    pub adopted: usize,
    pub lost: usize,
    pub collected: usize,
    pub purged: u64,
}

impl SandboxService {
    /// Takes the container's facts into the record: id, address, ports and run state.
    pub(super) async fn adopt_container(&self, sandbox: &mut Sandbox, container: &ContainerState) {
        sandbox.container_id = Some(container.container_id.clone());
        if container.ip.is_some() {
            sandbox.ip = container.ip.clone();
        }
        if !container.ports.is_empty() {
            sandbox.ports = container.ports.clone();
        }
        sandbox.started_at = sandbox.started_at.or(container.started_at).or(Some(Utc::now()));
        if sandbox.status == Status::Hibernated && container.state != RunState::Removing {
            // Stopped by berth (or still stopping, under its lock): its wake starts it, whatever
            // state the container was listed in a moment ago.
            return;
        }
        match container.state {
            // Made but never started: it is not running, so the record does not say so. The
            // resync starts it first (`start_interrupted`); nothing else adopts such a container.
            RunState::Created => {}
            RunState::Running | RunState::Restarting => {
                if sandbox.status != Status::Running && sandbox.status != Status::Stopping {
                    sandbox.status = Status::Running;
                }
            }
            RunState::Paused => {
                if sandbox.status != Status::Stopping {
                    sandbox.status = Status::Paused;
                }
            }
            RunState::Removing => {
                // Being removed, and not by us (our own removals go through `Stopping`).
                sandbox.end(Status::Failed, Reason::ContainerLost, Utc::now());
            }
            RunState::Exited | RunState::Dead => {
                let finished = self.finished_facts(container).await;
                end_with_exit(sandbox, finished.exit_code, finished.oom_killed, finished.finished_at);
            }
        }
    }

    /// Exit facts from a fresh inspect: list data may carry an exit code and time but never the
    /// OOM flag, so a resync that sees the exit before its event must still ask.
    async fn finished_facts(&self, container: &ContainerState) -> ContainerState {
        self.runtime
            .inspect(&container.container_id)
            .await
            .unwrap_or_else(|_| container.clone())
    }

    /// Applies one engine event to the sandbox it concerns, if it is one of ours.
    pub async fn apply_event(&self, event: RuntimeEvent) {
        let Some(id) = event.sandbox_id.clone() else { return };
        if self.index.get(&id).is_none() {
            return;
        }
        let _guard = self.locks.lock(&id).await;
        let Some(current) = self.fresh(&id).await else { return };
        if current.container_id.as_deref() != Some(event.container_id.as_str()) {
            return;
        }
        if current.status.is_ended() {
            if event.kind == EventKind::Oom && ended_by_an_unexplained_kill(&current) {
                self.record_late_oom(&current).await;
            }
            return;
        }
        let mut sandbox = Sandbox::clone(&current);
        let now = Utc::now();
        match event.kind {
            EventKind::Start => return,
            EventKind::Oom => {
                sandbox.oom_killed = true;
            }
            // The engine also pauses a container for the instant of a snapshot's commit (whose
            // events come once the commit, holding the lock, is done): the container's state
            // now, not the event, says whether it is paused.
            EventKind::Pause | EventKind::Unpause => {
                let paused = match self.runtime.inspect(&event.container_id).await {
                    Ok(container) => container.state == RunState::Paused,
                    Err(_) => event.kind == EventKind::Pause,
                };
                match (paused, sandbox.status) {
                    (true, Status::Running) => sandbox.status = Status::Paused,
                    (false, Status::Paused) => sandbox.status = Status::Running,
                    _ => return,
                }
            }
            EventKind::Die { exit_code } => {
                if matches!(sandbox.status, Status::Stopping | Status::Hibernated) {
                    return; // our own removal or hibernation
                }
                let inspected = self.runtime.inspect(&event.container_id).await;
                let removed_behind_our_back = match &inspected {
                    Err(RuntimeError::NotFound(_)) => true,
                    Ok(facts) => facts.state == RunState::Removing,
                    Err(error) => {
                        debug!(sandbox = %id, %error, "cannot inspect an exited container; using the event's exit code");
                        false
                    }
                };
                let facts = inspected.ok();
                if removed_behind_our_back {
                    // `docker rm -f` kills first: the death is the removal, not an exit.
                    sandbox.end(Status::Failed, Reason::ContainerLost, now);
                    return self.finish_event(sandbox).await;
                }
                let exit_code = facts.as_ref().and_then(|facts| facts.exit_code).or(exit_code);
                let oom_killed = sandbox.oom_killed || facts.as_ref().is_some_and(|facts| facts.oom_killed);
                if let (berth_core::Restart::OnFailure(retries), Some(facts)) = (sandbox.spec.restart, &facts)
                    && exit_code.unwrap_or_default() != 0
                    && matches!(facts.state, RunState::Restarting | RunState::Running)
                {
                    // The engine restarts it (or already has): the sandbox lives on. One exit,
                    // one restart; never more than the engine counts, since a late event's
                    // inspect may already include the restarts of exits whose events follow.
                    let counted = sandbox.restarts + 1;
                    sandbox.restarts = if facts.restart_count > 0 {
                        counted.min(facts.restart_count)
                    } else {
                        counted
                    };
                    sandbox.exit_code = exit_code;
                    sandbox.oom_killed = oom_killed;
                    let why = if oom_killed {
                        "killed for exceeding its memory limit".to_owned()
                    } else {
                        format!("exited with {}", exit_code.unwrap_or_default())
                    };
                    sandbox.status_message = Some(format!(
                        "restarted after its main process {why} ({} of at most {retries} restarts)",
                        sandbox.restarts
                    ));
                    info!(sandbox = %id, restarts = sandbox.restarts, "main process restarted by the engine");
                    return self.finish_event(sandbox).await;
                }
                end_with_exit(
                    &mut sandbox,
                    exit_code,
                    oom_killed,
                    facts.and_then(|facts| facts.finished_at),
                );
            }
            EventKind::Destroy => {
                if sandbox.status == Status::Stopping {
                    let reason = sandbox.status_reason.clone().unwrap_or(Reason::Deleted);
                    sandbox.end(Status::Terminated, reason, now);
                } else {
                    sandbox.end(Status::Failed, Reason::ContainerLost, now);
                }
            }
        }
        self.finish_event(sandbox).await;
    }

    /// The engine learns of an OOM kill and of the exit it causes on separate paths, and under
    /// load reports the kill after the exit: the sandbox already ended as a plain `exited` 137.
    /// Its reason is corrected so the user reads why it died.
    async fn record_late_oom(&self, current: &Sandbox) {
        let mut sandbox = Sandbox::clone(current);
        sandbox.oom_killed = true;
        sandbox.status_reason = Some(Reason::OomKilled);
        match self.persist(&mut sandbox).await {
            Ok(()) => info!(sandbox = %sandbox.id, "the engine reported the exit's OOM kill late; reason corrected"),
            Err(error) => warn!(sandbox = %sandbox.id, %error, "could not record a late OOM kill"),
        }
    }

    async fn finish_event(&self, mut sandbox: Sandbox) {
        if let Err(error) = self.persist(&mut sandbox).await {
            warn!(sandbox = %sandbox.id, %error, "could not record an engine event; the resync will retry");
            return;
        }
        if sandbox.status.is_ended() {
            info!(sandbox = %sandbox.id, status = %sandbox.status, reason = ?sandbox.status_reason, "sandbox ended on the engine");
            self.after_end(&sandbox);
        }
    }

    /// Converges the records with the engine: adopts, fails lost sandboxes, finishes stops,
    /// collects orphans and purges old records. The safety net under events and timers.
    pub async fn resync(self: &Arc<Self>) -> Result<ResyncReport, RuntimeError> {
        let snapshot_at = Utc::now();
        let containers = self.cluster_containers().await?;
        let mut by_sandbox: HashMap<SandboxId, &ContainerState> = HashMap::new();
        for container in &containers {
            if let Some(id) = &container.sandbox_id {
                by_sandbox.entry(id.clone()).or_insert(container);
            }
        }
        let grace = chrono::Duration::from_std(self.config.orphan_grace).unwrap_or(chrono::Duration::MAX);
        let mut pass = ResyncPass {
            by_sandbox,
            snapshot_at,
            grace,
            report: ResyncReport::default(),
            reprobe: Vec::new(),
        };
        for record in self.index.snapshot() {
            self.resync_record(&record, &mut pass).await;
        }
        let ResyncPass {
            mut report, reprobe, ..
        } = pass;
        for id in reprobe {
            self.probe_again(id);
        }

        report.collected += self.collect_orphan_containers(&containers, snapshot_at, grace).await;
        report.collected += self.collect_stacks(snapshot_at, grace).await;
        report.purged = self.purge(snapshot_at).await;
        Ok(report)
    }

    /// The engine's containers of this cluster, as the resync's snapshot.
    async fn cluster_containers(&self) -> Result<Vec<ContainerState>, RuntimeError> {
        Ok(self
            .runtime
            .list_managed()
            .await?
            .into_iter()
            .filter(|container| container.labels.get(label_keys::CLUSTER) == Some(&self.config.cluster))
            .collect())
    }

    /// Converges one live record with its container in the snapshot, under the sandbox's lock.
    async fn resync_record(self: &Arc<Self>, record: &Sandbox, pass: &mut ResyncPass<'_>) {
        let (snapshot_at, grace) = (pass.snapshot_at, pass.grace);
        if record.status.is_ended() || self.lock_provisioning().contains(&record.id) {
            return;
        }
        let _guard = self.locks.lock(&record.id).await;
        let Some(current) = self.fresh(&record.id).await else {
            return;
        };
        if current.status.is_ended() || current.updated_at > snapshot_at {
            return; // changed since the container list was taken
        }
        let mut sandbox = Sandbox::clone(&current);
        let mut container = pass.by_sandbox.get(&sandbox.id).copied();
        let now = Utc::now();
        let started;
        if let Some(unstarted) = container.filter(|container| container.state == RunState::Created)
            && sandbox.status != Status::Stopping
        {
            let creating = matches!(sandbox.status, Status::Pending | Status::Creating);
            if creating && self.store.is_shared() && sandbox.updated_at + grace > now {
                return; // another process sharing the store may be between its create and start
            }
            match self.start_interrupted(&mut sandbox, unstarted).await {
                Some(facts) => {
                    started = facts;
                    container = Some(&started);
                }
                None => {
                    self.finish_correction(sandbox).await;
                    return;
                }
            }
        }
        if self.correct(&mut sandbox, &current, container, now, pass).await {
            self.finish_correction(sandbox).await;
        }
    }

    /// The correction one live record needs, given its container in the snapshot (`None`: the
    /// engine has none), applied to `sandbox`; `false` when there is nothing to record now.
    async fn correct(
        &self,
        sandbox: &mut Sandbox,
        current: &Sandbox,
        container: Option<&ContainerState>,
        now: DateTime<Utc>,
        pass: &mut ResyncPass<'_>,
    ) -> bool {
        let grace = pass.grace;
        match (sandbox.status, container) {
            (Status::Stopping, container) => {
                if (container.is_some() || sandbox.spec.stack.is_some())
                    && let Err(error) = self.remove_engine_objects(sandbox).await
                {
                    warn!(sandbox = %sandbox.id, %error, "could not finish a stop");
                    return false;
                }
                let reason = sandbox.status_reason.clone().unwrap_or(Reason::Deleted);
                sandbox.end(Status::Terminated, reason, now);
                true
            }
            (Status::Pending | Status::Creating, Some(container)) => {
                self.adopt_creating(sandbox, current, container, now, pass).await
            }
            (Status::Pending | Status::Creating, None) => {
                // With a shared store, another process may be creating it right now.
                if self.store.is_shared() && sandbox.updated_at + grace > now {
                    return false;
                }
                sandbox.end(Status::Failed, Reason::CreateInterrupted, now);
                self.metrics.count_correction(Correction::CreateInterrupted);
                true
            }
            (_, None) => {
                sandbox.end(Status::Failed, Reason::ContainerLost, now);
                self.metrics.count_correction(Correction::ContainerLost);
                pass.report.lost += 1;
                true
            }
            (_, Some(container)) => self.readopt(sandbox, container, pass).await,
        }
    }

    /// Adopts the container of a record still being created (its create stopped before it
    /// recorded the container, or another process is still at it); `false` when there is
    /// nothing to record now.
    async fn adopt_creating(
        &self,
        sandbox: &mut Sandbox,
        current: &Sandbox,
        container: &ContainerState,
        now: DateTime<Utc>,
        pass: &mut ResyncPass<'_>,
    ) -> bool {
        let grace = pass.grace;
        self.adopt_container(sandbox, container).await;
        self.metrics.count_correction(Correction::Adopted);
        pass.report.adopted += 1;
        if let Some(probe) = &sandbox.spec.readiness
            && sandbox.status == Status::Running
        {
            // Its probe never passed here (the process probing it died, or another
            // process sharing the store probes it now): it stays `Creating`, and if
            // nobody else can be probing it any more, it is probed again.
            sandbox.status = Status::Creating;
            let probe_window = chrono::Duration::from_std(probe.timeout).unwrap_or(chrono::Duration::MAX);
            let elsewhere = self.store.is_shared() && sandbox.updated_at + grace.max(probe_window) > now;
            if !elsewhere {
                pass.reprobe.push(sandbox.id.clone());
            }
            if *sandbox == *current {
                return false;
            }
        }
        true
    }

    /// Takes the container's facts into a running or paused record again, counting the status
    /// corrections the engine forces; `false` when nothing changed.
    async fn readopt(&self, sandbox: &mut Sandbox, container: &ContainerState, pass: &mut ResyncPass<'_>) -> bool {
        if sandbox.container_id.as_deref() != Some(container.container_id.as_str()) || sandbox.ip.is_none() {
            pass.report.adopted += 1;
        }
        let before = sandbox.clone();
        self.adopt_container(sandbox, container).await;
        if before == *sandbox {
            return false;
        }
        if before.status != sandbox.status {
            info!(sandbox = %sandbox.id, was = %before.status, now = %sandbox.status, container = %container.container_id,
                "resync corrected a status the engine contradicts");
            self.metrics.count_correction(Correction::Status);
        }
        true
    }

    /// Removes the containers of the snapshot that no live record owns (ended, replaced, or
    /// unknown for longer than the grace); answers how many went.
    async fn collect_orphan_containers(
        &self,
        containers: &[ContainerState],
        snapshot_at: DateTime<Utc>,
        grace: chrono::Duration,
    ) -> usize {
        let mut collected = 0;
        for container in containers {
            let record = container.sandbox_id.as_ref().and_then(|id| self.index.get(id));
            let collect = match &record {
                Some(record) if record.status.is_ended() => true,
                Some(record) => record
                    .container_id
                    .as_deref()
                    .is_some_and(|id| id != container.container_id),
                None => container.created_at + grace <= snapshot_at,
            };
            if collect {
                let removal = match (&container.sandbox_id, container.labels.contains_key(label_keys::STACK)) {
                    (Some(sandbox_id), true) => self.runtime.remove_stack(sandbox_id).await,
                    _ => self.runtime.remove(&container.container_id).await,
                };
                match removal {
                    Ok(()) => {
                        info!(container = %container.container_id, sandbox = ?container.sandbox_id, "collected a container with no live record");
                        self.metrics.count_correction(Correction::Collected);
                        collected += 1;
                    }
                    Err(error) => warn!(container = %container.container_id, %error, "could not collect a container"),
                }
            }
        }
        collected
    }

    /// Starts the container of a live record that was made but never started (the server stopped
    /// between the engine's create and start) and answers its facts; or, when that cannot be
    /// done, ends the record with the reason and answers `None`. A compose stack is not started
    /// piecemeal: its other services may be missing, so it ends as `create_interrupted`.
    async fn start_interrupted(&self, sandbox: &mut Sandbox, container: &ContainerState) -> Option<ContainerState> {
        let now = Utc::now();
        if sandbox.spec.stack.is_some() {
            warn!(sandbox = %sandbox.id, container = %container.container_id, "resync found a compose stack whose create was interrupted");
            sandbox.end(Status::Failed, Reason::CreateInterrupted, now);
            self.metrics.count_correction(Correction::CreateInterrupted);
            return None;
        }
        match self.runtime.start(&container.container_id).await {
            Ok(facts) => {
                info!(sandbox = %sandbox.id, container = %container.container_id, status = %sandbox.status,
                    "resync started a container whose start was interrupted");
                self.metrics.count_correction(Correction::Started);
                Some(facts)
            }
            Err(error) => {
                warn!(sandbox = %sandbox.id, container = %container.container_id, %error,
                    "resync could not start a container whose start was interrupted");
                sandbox.container_id = Some(container.container_id.clone());
                sandbox.end(Status::Failed, Reason::StartFailed, now);
                sandbox.status_message = Some(error.to_string());
                self.metrics.count_correction(Correction::StartFailed);
                None
            }
        }
    }

    /// Records what a resync changed on one sandbox and, when it ended, cleans up after it.
    async fn finish_correction(&self, mut sandbox: Sandbox) {
        if let Err(error) = self.persist(&mut sandbox).await {
            warn!(sandbox = %sandbox.id, %error, "could not record a resync change");
            return;
        }
        if sandbox.status.is_ended() {
            info!(sandbox = %sandbox.id, status = %sandbox.status, reason = ?sandbox.status_reason, "resync ended a sandbox");
            self.after_end(&sandbox);
        }
    }

    /// Removes the compose stacks of this cluster whose sandbox has ended or has no record: what
    /// a create interrupted half-way, or a removal that failed, left on the engine.
    async fn collect_stacks(&self, snapshot_at: DateTime<Utc>, grace: chrono::Duration) -> usize {
        let stacks = match self.runtime.list_stacks().await {
            Ok(stacks) => stacks,
            Err(error) => {
                warn!(%error, "could not list the compose stacks on the engine");
                return 0;
            }
        };
        let mut collected = 0;
        for stack in stacks {
            if stack.labels.get(label_keys::CLUSTER) != Some(&self.config.cluster) {
                continue;
            }
            let collect = match self.index.get(&stack.sandbox_id) {
                Some(record) => record.status.is_ended(),
                None => stack.created_at + grace <= snapshot_at,
            };
            if !collect || self.lock_provisioning().contains(&stack.sandbox_id) {
                continue;
            }
            match self.runtime.remove_stack(&stack.sandbox_id).await {
                Ok(()) => {
                    info!(sandbox = %stack.sandbox_id, "collected a compose stack with no live record");
                    self.metrics.count_correction(Correction::Collected);
                    collected += 1;
                }
                Err(error) => warn!(sandbox = %stack.sandbox_id, %error, "could not collect a compose stack"),
            }
        }
        collected
    }

    /// Forgets ended records older than the retention period, in the store and the index.
    async fn purge(&self, now: DateTime<Utc>) -> u64 {
        let cutoff = now - chrono::Duration::from_std(self.config.retention).unwrap_or(chrono::Duration::MAX);
        let purged = match self.store.purge_ended_before(cutoff).await {
            Ok(purged) => purged,
            Err(error) => {
                warn!(%error, "could not purge old records");
                return 0;
            }
        };
        self.forget_ended_before(cutoff);
        purged
    }

    /// Drops ended records older than the retention period from the index only: what a process
    /// that does not lead does, since the leader purges the store.
    pub fn forget_old_records(&self) {
        let cutoff = Utc::now() - chrono::Duration::from_std(self.config.retention).unwrap_or(chrono::Duration::MAX);
        self.forget_ended_before(cutoff);
    }

    fn forget_ended_before(&self, cutoff: DateTime<Utc>) {
        for record in self.index.snapshot() {
            if record.ended_at.is_some_and(|ended_at| ended_at < cutoff) {
                self.index.remove(&record.id);
            }
        }
    }
}

/// What one resync carries from record to record.
struct ResyncPass<'snapshot> {
    /// The snapshot's container of each sandbox (the first listed when there are several).
    by_sandbox: HashMap<SandboxId, &'snapshot ContainerState>,
    /// When the snapshot was taken: a record changed after it is left for the next resync.
    snapshot_at: DateTime<Utc>,
    grace: chrono::Duration,
    report: ResyncReport,
    /// Adopted sandboxes whose readiness probe must run again.
    reprobe: Vec<SandboxId>,
}
