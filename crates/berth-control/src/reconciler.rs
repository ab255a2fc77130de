//! The reconciler's loops. Every process follows the store (other processes' writes) and keeps
//! its expiry timers; only the leader of the deployment — one process at a time, elected
//! through the store — follows engine events, resyncs, expires sandboxes, keeps the pools and
//! runs the [`LeaderLoop`]s the server adds (the AEnvironment env-service controller).

use std::sync::Arc;
use std::time::Duration;

use berth_core::SandboxId;
use chrono::Utc;
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::service::SandboxService;

const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Expiries handled at once; more wait their turn so a burst cannot flood the engine.
const EXPIRY_CONCURRENCY: usize = 32;
/// How often a process that does not lead tries to take the leadership: a dead leader is
/// replaced within about this long after the store notices.
const LEADERSHIP_POLL: Duration = Duration::from_secs(1);
/// How often other processes' writes are read from a shared store.
const STORE_POLL: Duration = Duration::from_secs(1);
/// Each store poll re-reads this far back: writes from transactions that committed late, or
/// stamped by a process whose clock lags, are still seen.
const STORE_POLL_OVERLAP: Duration = Duration::from_secs(10);
/// Period of the pool keeper when nothing wakes it sooner.
const POOL_TICK: Duration = Duration::from_secs(1);
/// Store polls between two sweeps of long-ended records out of the index.
const POLLS_PER_SWEEP: u32 = 30;

/// A loop that runs on the leader only, beside the reconciler's own (the env-service controller
/// of the AEnvironment surface is one): started when this process takes the leadership, aborted
/// when it loses it.
pub type LeaderLoop = Arc<dyn Fn(Arc<SandboxService>) -> BoxFuture<'static, ()> + Send + Sync>;

/// Starts the loops; they run until the returned set is dropped or aborted.
pub fn start(
    service: Arc<SandboxService>,
    expired: mpsc::UnboundedReceiver<SandboxId>,
    leader_loops: Vec<LeaderLoop>,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    tasks.spawn(lead_when_elected(Arc::clone(&service), leader_loops));
    tasks.spawn(follow_store(Arc::clone(&service)));
    tasks.spawn(expire(service, expired));
    tasks
}

/// Waits for the leadership, runs the leader's loops while it lasts, and starts over when it is lost.
async fn lead_when_elected(service: Arc<SandboxService>, leader_loops: Vec<LeaderLoop>) {
    let cluster = service.config().cluster.clone();
    let mut waiting_logged = false;
    loop {
        let mut lease = match service.store().try_lead(&cluster).await {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                if !waiting_logged {
                    info!(%cluster, "another process leads this deployment; serving the API and standing by");
                    waiting_logged = true;
                }
                tokio::time::sleep(LEADERSHIP_POLL).await;
                continue;
            }
            Err(error) => {
                service.metrics().count_error("leadership");
                warn!(%error, "cannot ask the store for the leadership; retrying");
                tokio::time::sleep(LEADERSHIP_POLL).await;
                continue;
            }
        };
        waiting_logged = false;
        if service.store().is_shared() {
            // Catch up on everything the previous leader and the other processes wrote.
            if let Err(error) = service.refresh_from_store(chrono::DateTime::UNIX_EPOCH).await {
                warn!(%error, "cannot read the records before leading; giving the leadership back");
                drop(lease);
                tokio::time::sleep(LEADERSHIP_POLL).await;
                continue;
            }
        }
        service.set_leading(true);
        service.arm_all_timers();
        info!(%cluster, "leading this deployment: following the engine, resyncing and expiring sandboxes");

        let resync_now = Arc::new(Notify::new());
        let mut loops = JoinSet::new();
        loops.spawn(follow_events(Arc::clone(&service), Arc::clone(&resync_now)));
        loops.spawn(resync_periodically(Arc::clone(&service), resync_now));
        loops.spawn(keep_pools(Arc::clone(&service)));
        loops.spawn(pause_idle_sandboxes(Arc::clone(&service)));
        for leader_loop in &leader_loops {
            loops.spawn(leader_loop(Arc::clone(&service)));
        }
        let reason = lease.lost().await;
        loops.abort_all();
        service.set_leading(false);
        service.metrics().count_error("leadership");
        warn!(%reason, "lost the leadership; standing by");
    }
}

/// Reads other processes' writes into the index: each as it commits where the store announces
/// writes (PostgreSQL), and in a poll under that, which also catches what an announcement
/// missed. Needless for the leader of a store only it writes (SQLite), so it skips those polls.
async fn follow_store(service: Arc<SandboxService>) {
    let mut since = Utc::now() - STORE_POLL_OVERLAP;
    let mut polls: u32 = 0;
    let mut changes = service.store().sandbox_changes().await;
    loop {
        let poll = tokio::time::sleep(STORE_POLL);
        tokio::pin!(poll);
        loop {
            let announced = match &mut changes {
                Some(feed) => tokio::select! {
                    () = &mut poll => break,
                    change = feed.recv() => change,
                },
                None => {
                    poll.as_mut().await;
                    break;
                }
            };
            let Some(first) = announced else {
                changes = None; // the feed ended; the polls carry on alone
                continue;
            };
            let mut batch = vec![first];
            while let Some(Ok(change)) = changes.as_mut().map(|feed| feed.try_recv()) {
                batch.push(change);
            }
            service.take_announced(batch).await;
        }
        if !service.store().is_shared() && service.is_leading() {
            continue;
        }
        let poll_started = Utc::now();
        match service.refresh_from_store(since).await {
            Ok(changed) => {
                if changed > 0 {
                    debug!(changed, "took other processes' writes from the store");
                }
                since = poll_started - STORE_POLL_OVERLAP;
            }
            Err(error) => {
                service.metrics().count_error("store_poll");
                warn!(%error, "cannot read other processes' writes; retrying");
            }
        }
        polls = polls.wrapping_add(1);
        if polls.is_multiple_of(POLLS_PER_SWEEP) && !service.is_leading() {
            service.forget_old_records();
        }
    }
}

async fn follow_events(service: Arc<SandboxService>, resync_now: Arc<Notify>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match service.runtime().events().await {
            Ok(mut events) => {
                info!("following engine events");
                backoff = Duration::from_millis(200);
                // Anything that happened while we were not listening is caught by a resync.
                resync_now.notify_one();
                while let Some(event) = events.next().await {
                    match event {
                        Ok(event) => {
                            debug!(?event, "engine event");
                            service.apply_event(event).await;
                        }
                        Err(error) => {
                            service.metrics().count_error("engine_events");
                            warn!(%error, "engine event stream failed");
                            break;
                        }
                    }
                }
                warn!("engine event stream ended; reconnecting");
            }
            Err(error) => {
                service.metrics().count_error("engine_events");
                warn!(%error, retry_in = ?backoff, "cannot follow engine events");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn resync_periodically(service: Arc<SandboxService>, resync_now: Arc<Notify>) {
    let interval = service.config().resync_interval;
    loop {
        let started = std::time::Instant::now();
        match service.resync().await {
            Ok(report) => debug!(?report, "resync done"),
            Err(error) => {
                service.metrics().count_error("resync");
                warn!(%error, "resync failed");
            }
        }
        service.collect_expired_snapshots().await;
        service.metrics().observe_loop("resync", started.elapsed());
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = resync_now.notified() => {}
        }
    }
}

/// The leader pauses sandboxes idle past their `idle_timeout`, checking each second.
async fn pause_idle_sandboxes(service: Arc<SandboxService>) {
    loop {
        let started = std::time::Instant::now();
        let paused = service.pause_idle().await;
        if paused > 0 {
            debug!(paused, "idle sandboxes paused");
        }
        service.metrics().observe_loop("idle", started.elapsed());
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// The leader keeps every template's warm pool filled, each second and whenever a claim or a
/// template change wakes it.
async fn keep_pools(service: Arc<SandboxService>) {
    loop {
        if let Err(error) = service.keep_pools().await {
            service.metrics().count_error("pools");
            warn!(%error, "cannot read the templates to keep the pools");
        }
        tokio::select! {
            () = tokio::time::sleep(POOL_TICK) => {}
            () = service.pools().woken() => {}
        }
    }
}

async fn expire(service: Arc<SandboxService>, mut expired: mpsc::UnboundedReceiver<SandboxId>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(EXPIRY_CONCURRENCY));
    while let Some(id) = expired.recv().await {
        if !service.is_leading() {
            // The leader's own timer expires it; this one is re-armed if this process leads.
            continue;
        }
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let service = Arc::clone(&service);
        tokio::spawn(async move {
            if let Err(error) = service.expire(&id).await {
                service.metrics().count_error("expiry");
                // The record stays `Stopping` (or untouched) and the resync finishes the job.
                warn!(sandbox = %id, %error, "expiry failed; the resync will retry");
            }
            drop(permit);
        });
    }
}
