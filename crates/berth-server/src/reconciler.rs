//! The reconciler's loops: engine events applied as they come (reconnecting with backoff),
//! a periodic full resync as the safety net, and expiries handed over by the timer queue.

use std::sync::Arc;
use std::time::Duration;

use berth_core::SandboxId;
use futures::StreamExt;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::service::SandboxService;

const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Expiries handled at once; more wait their turn so a burst cannot flood the engine.
const EXPIRY_CONCURRENCY: usize = 32;

/// Starts the loops; they run until the returned set is dropped or aborted.
pub fn start(service: Arc<SandboxService>, expired: mpsc::UnboundedReceiver<SandboxId>) -> JoinSet<()> {
    let resync_now = Arc::new(Notify::new());
    let mut tasks = JoinSet::new();
    tasks.spawn(follow_events(Arc::clone(&service), Arc::clone(&resync_now)));
    tasks.spawn(resync_periodically(Arc::clone(&service), resync_now));
    tasks.spawn(expire(service, expired));
    tasks
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
                            warn!(%error, "engine event stream failed");
                            break;
                        }
                    }
                }
                warn!("engine event stream ended; reconnecting");
            }
            Err(error) => warn!(%error, retry_in = ?backoff, "cannot follow engine events"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn resync_periodically(service: Arc<SandboxService>, resync_now: Arc<Notify>) {
    let interval = service.config().resync_interval;
    loop {
        match service.resync().await {
            Ok(report) => debug!(?report, "resync done"),
            Err(error) => warn!(%error, "resync failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = resync_now.notified() => {}
        }
    }
}

async fn expire(service: Arc<SandboxService>, mut expired: mpsc::UnboundedReceiver<SandboxId>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(EXPIRY_CONCURRENCY));
    while let Some(id) = expired.recv().await {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let service = Arc::clone(&service);
        tokio::spawn(async move {
            if let Err(error) = service.expire(&id).await {
                // The record stays `Stopping` (or untouched) and the resync finishes the job.
                warn!(sandbox = %id, %error, "expiry failed; the resync will retry");
            }
            drop(permit);
        });
    }
}
