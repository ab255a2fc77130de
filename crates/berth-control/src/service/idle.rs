//! Idle sandboxes: one with an `idle_timeout` and no exec, file, proxy, gateway or log request for
//! that long is paused (frozen, its memory kept) with the reason `idle`; one that has slept its
//! `hibernate_after` too is stopped (`Hibernated`: its filesystem kept, its memory freed). The
//! next request that needs it wakes it first — unpaused, or started again and probed ready — and
//! then goes on.
//!
//! Requests are remembered per process (the last one's time per sandbox) and the leader decides
//! on its own memory: with several processes, a sandbox used only through another one may be
//! paused, and is then woken by the next request there. Time asleep does not count against the
//! TTL unless the spec says `ttl_counts_idle`: while asleep only its `max_lifetime` can end it,
//! and its wake moves the deadline on by the time slept (`Sandbox::wake`). A client's own pause
//! counts, as before.

use std::collections::HashMap;
use std::sync::Mutex;

use std::time::Duration;

use berth_core::{Reason, Sandbox, SandboxId, Status};
use berth_runtime::{RunState, RuntimeError};
use chrono::{DateTime, Utc};
use tracing::{debug, info, warn};

use super::{SandboxService, ServiceError};

/// The time of the last request that needed each sandbox, on this process.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    last: Mutex<HashMap<SandboxId, DateTime<Utc>>>,
}

impl Activity {
    pub(crate) fn touch(&self, id: &SandboxId) {
        self.lock().insert(id.clone(), Utc::now());
    }

    pub(crate) fn forget(&self, id: &SandboxId) {
        self.lock().remove(id);
    }

    fn last(&self, id: &SandboxId) -> Option<DateTime<Utc>> {
        self.lock().get(id).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SandboxId, DateTime<Utc>>> {
        self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How long a hibernating sandbox's processes get between SIGTERM and SIGKILL.
const HIBERNATE_GRACE: Duration = Duration::from_secs(3);
/// The longest a request waits for a sleeping sandbox to run again before a 503.
const WAKE_BOUND: Duration = Duration::from_secs(60);

/// Whether it sleeps for being idle: paused or hibernated by berth, not by a client.
fn asleep(sandbox: &Sandbox) -> bool {
    matches!(sandbox.status, Status::Paused | Status::Hibernated) && sandbox.status_reason == Some(Reason::Idle)
}

impl SandboxService {
    /// When `sandbox` was last needed: its last request here, else when it started running.
    fn last_needed(&self, sandbox: &Sandbox) -> DateTime<Utc> {
        let started = sandbox.started_at.unwrap_or(sandbox.created_at);
        self.activity
            .last(&sandbox.id)
            .map_or(started, |last| last.max(started))
    }

    /// Whether `sandbox` is running and has been idle for its whole `idle_timeout` at `now`.
    fn is_idle(&self, sandbox: &Sandbox, now: DateTime<Utc>) -> bool {
        let Some(timeout) = sandbox.spec.idle_timeout else {
            return false;
        };
        let timeout = chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
        sandbox.status == Status::Running
            && sandbox.pool.is_none()
            && sandbox.spec.stack.is_none()
            && now - self.last_needed(sandbox) >= timeout
    }

    /// Whether `sandbox` has slept its whole `hibernate_after` at `now`.
    fn is_due_to_hibernate(sandbox: &Sandbox, now: DateTime<Utc>) -> bool {
        let (Some(after), Some(since)) = (sandbox.spec.hibernate_after, sandbox.asleep_since) else {
            return false;
        };
        let after = chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
        sandbox.status == Status::Paused && sandbox.status_reason == Some(Reason::Idle) && now - since >= after
    }

    /// Pauses every running sandbox idle past its `idle_timeout`, and hibernates every one that
    /// slept past its `hibernate_after` (the leader, each second). Answers how many it paused.
    pub async fn pause_idle(&self) -> usize {
        let now = Utc::now();
        let sleepy: Vec<SandboxId> = self
            .index
            .snapshot()
            .into_iter()
            .filter(|sandbox| Self::is_due_to_hibernate(sandbox, now))
            .map(|sandbox| sandbox.id.clone())
            .collect();
        for id in sleepy {
            if let Err(error) = self.hibernate_if_asleep(&id).await {
                warn!(sandbox = %id, %error, "could not hibernate an idle sandbox; trying again next second");
            }
        }
        let idle: Vec<SandboxId> = self
            .index
            .snapshot()
            .into_iter()
            .filter(|sandbox| self.is_idle(sandbox, now))
            .map(|sandbox| sandbox.id.clone())
            .collect();
        let mut paused = 0;
        for id in idle {
            match self.pause_if_idle(&id).await {
                Ok(true) => paused += 1,
                Ok(false) => {}
                Err(error) => warn!(sandbox = %id, %error, "could not pause an idle sandbox; trying again next second"),
            }
        }
        paused
    }

    /// Under the sandbox's lock, and only if it is still running and idle.
    async fn pause_if_idle(&self, id: &SandboxId) -> Result<bool, ServiceError> {
        let _guard = self.locks.lock(id).await;
        self.fresh(id).await;
        let mut sandbox = self.live_record(id)?;
        let Some(container_id) = sandbox.container_id.clone() else {
            return Ok(false);
        };
        let now = Utc::now();
        if !self.is_idle(&sandbox, now) {
            return Ok(false);
        }
        self.runtime
            .pause(&container_id)
            .await
            .map_err(ServiceError::engine_for(id))?;
        sandbox.status = Status::Paused;
        sandbox.status_reason = Some(Reason::Idle);
        sandbox.asleep_since = Some(now);
        self.persist(&mut sandbox).await?;
        self.timers.schedule(id.clone(), sandbox.expiry_deadline());
        self.metrics.count_idle_pause();
        info!(sandbox = %id, "idle sandbox paused");
        Ok(true)
    }

    /// Under the sandbox's lock, and only if it still sleeps past its `hibernate_after`: the
    /// record says `Hibernated` before the engine stops the container, so the exit's event reads
    /// as berth's own; a stop that fails leaves the record as the container is.
    async fn hibernate_if_asleep(&self, id: &SandboxId) -> Result<(), ServiceError> {
        let _guard = self.locks.lock(id).await;
        self.fresh(id).await;
        let mut sandbox = self.live_record(id)?;
        let Some(container_id) = sandbox.container_id.clone() else {
            return Ok(());
        };
        if !Self::is_due_to_hibernate(&sandbox, Utc::now()) {
            return Ok(());
        }
        sandbox.status = Status::Hibernated;
        self.persist(&mut sandbox).await?;
        // A frozen process cannot act on SIGTERM: thaw it for its grace period.
        let stopped = match self.runtime.unpause(&container_id).await {
            Ok(()) | Err(RuntimeError::Conflict(_)) => self.runtime.stop(&container_id, HIBERNATE_GRACE).await,
            Err(error) => Err(error),
        };
        if let Err(error) = stopped {
            let state = self
                .runtime
                .inspect(&container_id)
                .await
                .map(|container| container.state);
            sandbox.status = match state {
                Ok(RunState::Paused) => Status::Paused,
                Ok(RunState::Running | RunState::Restarting) => {
                    sandbox.wake(Utc::now());
                    sandbox.status_reason = None;
                    Status::Running
                }
                _ => Status::Hibernated,
            };
            self.persist(&mut sandbox).await?;
            self.timers.schedule(id.clone(), sandbox.expiry_deadline());
            return Err(ServiceError::engine_for(id)(error));
        }
        self.metrics.count_hibernation();
        info!(sandbox = %id, "idle sandbox hibernated: stopped with its filesystem kept");
        Ok(())
    }

    /// Records that a request needs `id`, waking it first when it sleeps for being idle.
    pub(crate) async fn needed(&self, id: &SandboxId) -> Result<(), ServiceError> {
        let Some(current) = self.index.get(id) else {
            return Ok(());
        };
        // Only what an idle pause reads is remembered: no entry for a sandbox without an
        // `idle_timeout`, nor for an ended one (whose entry `after_end` already dropped).
        if current.spec.idle_timeout.is_none() || current.status.is_ended() {
            return Ok(());
        }
        self.activity.touch(id);
        if !asleep(&current) {
            return Ok(());
        }
        match tokio::time::timeout(WAKE_BOUND, self.wake(id)).await {
            // A wake longer than the idle timeout (a slow start, a readiness probe) must not
            // leave the request that asked for it to find the sandbox asleep again.
            Ok(Ok(())) => {
                self.activity.touch(id);
                Ok(())
            }
            Ok(woken) => woken,
            Err(_) => Err(ServiceError::Unavailable(format!(
                "sandbox {id} did not wake within {}s: retry after the Retry-After delay",
                WAKE_BOUND.as_secs()
            ))),
        }
    }

    /// Under the sandbox's lock: unpauses an idle-paused sandbox, or starts a hibernated one
    /// again (its address may change) and waits for its readiness probe, if it has one.
    async fn wake(&self, id: &SandboxId) -> Result<(), ServiceError> {
        let started = std::time::Instant::now();
        let _guard = self.locks.lock(id).await;
        self.fresh(id).await;
        let mut sandbox = self.live_record(id)?;
        if !asleep(&sandbox) {
            // Woken meanwhile by another request, or paused by a client since.
            return Ok(());
        }
        let Some(container_id) = sandbox.container_id.clone() else {
            return Ok(());
        };
        let hibernated = sandbox.status == Status::Hibernated;
        if hibernated {
            let container = self
                .runtime
                .start(&container_id)
                .await
                .map_err(ServiceError::engine_for(id))?;
            if container.ip.is_some() {
                sandbox.ip = container.ip;
            }
            if !container.ports.is_empty() {
                sandbox.ports = container.ports;
            }
            if let Some(probe) = sandbox.spec.readiness.clone() {
                self.probe_woken(&sandbox, &probe).await?;
            }
        } else {
            self.runtime
                .unpause(&container_id)
                .await
                .map_err(ServiceError::engine_for(id))?;
        }
        sandbox.status = Status::Running;
        sandbox.status_reason = None;
        sandbox.wake(Utc::now());
        self.persist(&mut sandbox).await?;
        self.timers.schedule(id.clone(), sandbox.expiry_deadline());
        if hibernated {
            self.metrics.observe_hibernation_wake(started.elapsed());
        } else {
            self.metrics.observe_wake(started.elapsed());
        }
        debug!(sandbox = %id, hibernated, took = ?started.elapsed(), "idle sandbox woken by a request");
        Ok(())
    }

    /// A hibernated sandbox's main process starts anew: the request waits until it is ready.
    async fn probe_woken(&self, sandbox: &Sandbox, probe: &berth_core::ReadinessProbe) -> Result<(), ServiceError> {
        let outcome = match crate::address::sandbox_address(sandbox, probe.check.port()) {
            Some(address) => crate::probe::wait_until_ready(probe, address, || true).await,
            None => crate::probe::ProbeOutcome::TimedOut("the sandbox has no address to probe".into()),
        };
        if outcome == crate::probe::ProbeOutcome::Passed {
            return Ok(());
        }
        Err(ServiceError::Unavailable(format!(
            "sandbox {} was started again but its readiness probe did not pass ({outcome:?}): retry later",
            sandbox.id
        )))
    }
}
