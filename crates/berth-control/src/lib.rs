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
pub mod events;
pub mod expiry;
pub mod identity;
pub mod index;
pub mod locks;
pub mod metrics;
pub mod output;
pub mod presign;
pub mod probe;
pub mod processes;
pub mod reconciler;
pub mod service;

pub use config::{AuthMode, DEFAULT_EXEC_OUTPUT_LIMIT, DEFAULT_MAX_FILE_SIZE, ServerConfig};
pub use reconciler::LeaderLoop;
pub use service::SandboxService;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot load sandbox records: {0}")]
    Load(#[from] StoreError),
    #[error("cannot open the audit log {}: {source}", path.display())]
    AuditLog {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Builds the service over `runtime` and `store` (both wrapped to be metered), loads every
/// record into the index (arming the expiry timers) and starts the reconciler's loops, with
/// `leader_loops` run beside them while this process leads. The loops stop when the returned
/// set drops.
pub async fn start(
    config: ServerConfig,
    runtime: Arc<dyn Runtime>,
    store: Arc<dyn Store>,
    leader_loops: Vec<LeaderLoop>,
) -> Result<(Arc<SandboxService>, tokio::task::JoinSet<()>), StartError> {
    let (timers, expired) = expiry::ExpiryTimers::start();
    let metrics = Arc::new(metrics::Metrics::new());
    let runtime: Arc<dyn Runtime> = Arc::new(metrics::MeteredRuntime::new(runtime, Arc::clone(&metrics)));
    let store: Arc<dyn Store> = Arc::new(metrics::MeteredStore::new(store, Arc::clone(&metrics)));
    let audit_log = config.audit_log.clone();
    let service = Arc::new(SandboxService::new(runtime, store, config, timers, metrics));
    if let Some(path) = audit_log {
        service
            .identity()
            .open_audit_log(&path)
            .map_err(|source| StartError::AuditLog { path, source })?;
    }
    let loaded = service.load().await?;
    info!(records = loaded, "sandbox records loaded");
    let background = reconciler::start(Arc::clone(&service), expired, leader_loops);
    Ok((service, background))
}
