//! berth's control plane: the sandbox service and its rules (create, claim, renew, pause,
//! delete, expire), the reconciler that converges stored intent with engine facts, the expiry
//! timers, templates with their warm pools and builds, readiness probes, background-process
//! bookkeeping and the metrics registry.
//!
//! It speaks the `Runtime` and `Store` traits and must know nothing of HTTP: no axum, hyper or
//! tower, no status codes. Its errors are domain errors ([`service::ServiceError`]) that each
//! HTTP surface maps to its own answers.

use std::sync::Arc;

use berth_runtime::Runtime;
use berth_store::{Store, StoreError};
use tracing::info;

pub mod address;
pub mod body;
pub mod config;
pub mod expiry;
pub mod index;
pub mod locks;
pub mod metrics;
pub mod output;
pub mod probe;
pub mod processes;
pub mod reconciler;
pub mod service;

pub use config::{DEFAULT_EXEC_OUTPUT_LIMIT, DEFAULT_MAX_FILE_SIZE, ServerConfig};
pub use reconciler::LeaderLoop;
pub use service::SandboxService;

/// Builds the service over `runtime` and `store` (both wrapped to be metered), loads every
/// record into the index (arming the expiry timers) and starts the reconciler's loops, with
/// `leader_loops` run beside them while this process leads. The loops stop when the returned
/// set drops.
pub async fn start(
    config: ServerConfig,
    runtime: Arc<dyn Runtime>,
    store: Arc<dyn Store>,
    leader_loops: Vec<LeaderLoop>,
) -> Result<(Arc<SandboxService>, tokio::task::JoinSet<()>), StoreError> {
    let (timers, expired) = expiry::ExpiryTimers::start();
    let metrics = Arc::new(metrics::Metrics::new());
    let runtime: Arc<dyn Runtime> = Arc::new(metrics::MeteredRuntime::new(runtime, Arc::clone(&metrics)));
    let store: Arc<dyn Store> = Arc::new(metrics::MeteredStore::new(store, Arc::clone(&metrics)));
    let service = Arc::new(SandboxService::new(runtime, store, config, timers, metrics));
    let loaded = service.load().await?;
    info!(records = loaded, "sandbox records loaded");
    let background = reconciler::start(Arc::clone(&service), expired, leader_loops);
    Ok((service, background))
}
