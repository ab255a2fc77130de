//! Idle sandboxes: one with an `idle_timeout` and no exec, file, proxy, gateway or log request for
//! that long is paused (frozen, its memory kept) with the reason `idle`; the next request that
//! needs it wakes it first and then goes on, as if it had never slept.
//!
//! Requests are remembered per process (the last one's time per sandbox) and the leader decides
//! on its own memory: with several processes, a sandbox used only through another one may be
//! paused, and is then woken by the next request there. Time asleep counts against the TTL: a
//! paused sandbox still expires on its deadline, as one paused by a client does.

use std::collections::HashMap;
use std::sync::Mutex;

use berth_core::{Reason, Sandbox, SandboxId, Status};
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

    /// Pauses every running sandbox idle past its `idle_timeout` (the leader, each second).
    pub async fn pause_idle(&self) -> usize {
        let now = Utc::now();
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
        if !self.is_idle(&sandbox, Utc::now()) {
            return Ok(false);
        }
        self.runtime
            .pause(&container_id)
            .await
            .map_err(|error| ServiceError::Engine {
                error,
                sandbox_id: Some(id.clone()),
            })?;
        sandbox.status = Status::Paused;
        sandbox.status_reason = Some(Reason::Idle);
        self.persist(&mut sandbox).await?;
        self.metrics.count_idle_pause();
        info!(sandbox = %id, "idle sandbox paused");
        Ok(true)
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
        if current.status != Status::Paused || current.status_reason != Some(Reason::Idle) {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let _guard = self.locks.lock(id).await;
        self.fresh(id).await;
        let mut sandbox = self.live_record(id)?;
        if sandbox.status != Status::Paused || sandbox.status_reason != Some(Reason::Idle) {
            // Woken meanwhile by another request, or paused by a client since.
            return Ok(());
        }
        let Some(container_id) = sandbox.container_id.clone() else {
            return Ok(());
        };
        self.runtime
            .unpause(&container_id)
            .await
            .map_err(|error| ServiceError::Engine {
                error,
                sandbox_id: Some(id.clone()),
            })?;
        sandbox.status = Status::Running;
        sandbox.status_reason = None;
        self.persist(&mut sandbox).await?;
        self.metrics.observe_wake(started.elapsed());
        debug!(sandbox = %id, took = ?started.elapsed(), "idle sandbox woken by a request");
        Ok(())
    }
}
