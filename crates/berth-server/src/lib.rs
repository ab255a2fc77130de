//! berth's server: the HTTP API over the sandbox service, the reconciler loops and expiry
//! timers, wired together by [`serve`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use berth_core::SpecPolicy;
use berth_runtime::Runtime;
use berth_store::{Store, StoreError};
use tokio::net::TcpListener;
use tracing::{info, warn};

pub mod aenv;
pub mod api;
pub mod balancer;
pub mod env_services;
pub mod exec;
pub mod expiry;
pub mod files;
pub mod gateway;
pub mod index;
pub mod locks;
pub mod metrics;
pub mod output;
pub mod probe;
pub mod processes;
pub mod reconciler;
pub mod service;

pub use service::SandboxService;

/// The server's settings (the binary fills them from flags, environment and `berth.toml`).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub policy: SpecPolicy,
    /// Period of the full resync that backs up engine events.
    pub resync_interval: Duration,
    /// Age after which a managed container with no record is removed.
    pub orphan_grace: Duration,
    /// How long ended sandboxes stay readable.
    pub retention: Duration,
    /// This deployment's id, put on every container as `berth.cluster`; containers of other
    /// deployments sharing the engine are never touched.
    pub cluster: String,
    /// Bytes kept per stream (stdout, stderr) of a one-shot exec or a background process.
    pub exec_output_limit: usize,
    /// Largest file (or tar stream) an upload may carry.
    pub max_file_size: u64,
    /// How long a shutdown waits for requests in flight before closing them.
    pub shutdown_grace: Duration,
    /// Address the env-services' balancers listen on, and the host of their `service_url`.
    pub service_host: std::net::IpAddr,
}

/// Default of [`ServerConfig::exec_output_limit`]: 1 MiB per stream.
pub const DEFAULT_EXEC_OUTPUT_LIMIT: usize = 1024 * 1024;
/// Default of [`ServerConfig::max_file_size`]: 4 GiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 4 * 1024 * 1024 * 1024;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            policy: SpecPolicy::default(),
            resync_interval: Duration::from_secs(30),
            orphan_grace: Duration::from_secs(60),
            retention: Duration::from_secs(24 * 3600),
            cluster: "default".into(),
            exec_output_limit: DEFAULT_EXEC_OUTPUT_LIMIT,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            shutdown_grace: Duration::from_secs(20),
            service_host: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot load sandbox records: {0}")]
    Load(#[from] StoreError),
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Builds the service, loads the records, starts the reconciler and serves the API on
/// `listener` until `shutdown` completes. Sandboxes keep running after it returns.
pub async fn serve(
    listener: TcpListener,
    config: ServerConfig,
    runtime: Arc<dyn Runtime>,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_with_gateway(listener, None, config, runtime, store, shutdown).await
}

/// [`serve`], plus the MCP gateway (see [`gateway`]) on `gateway_listener` when there is one; the
/// gateway stops accepting on the same `shutdown` and shares the grace period.
pub async fn serve_with_gateway(
    listener: TcpListener,
    gateway_listener: Option<TcpListener>,
    config: ServerConfig,
    runtime: Arc<dyn Runtime>,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let grace = config.shutdown_grace;
    let (service, background) = start(config, runtime, store).await?;
    let app = api::router(Arc::clone(&service));
    let (stopping_tx, stopping) = tokio::sync::oneshot::channel::<()>();
    let (closing_tx, mut closing) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        info!(grace = ?grace, "no longer accepting; finishing requests in flight");
        let _ = closing_tx.send(true);
        let _ = stopping_tx.send(());
    });
    let gateway_server = async move {
        let Some(gateway_listener) = gateway_listener else {
            return Ok(());
        };
        gateway::serve(gateway_listener, service, async move {
            let _ = closing.wait_for(|closing| *closing).await;
        })
        .await
    };
    tokio::select! {
        served = async { tokio::try_join!(std::future::IntoFuture::into_future(server), gateway_server) } => {
            served?;
        }
        // Streams (logs -f, stats, exec sessions) may never end on their own: cut them after the grace.
        () = async {
            if stopping.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => warn!("grace period over; closing the requests still in flight"),
    }
    drop(background);
    info!("server stopped; sandboxes keep running and the next start adopts them");
    Ok(())
}

/// Builds the service and starts its background loops. The loops stop when the returned set drops.
pub async fn start(
    config: ServerConfig,
    runtime: Arc<dyn Runtime>,
    store: Arc<dyn Store>,
) -> Result<(Arc<SandboxService>, tokio::task::JoinSet<()>), ServeError> {
    let (timers, expired) = expiry::ExpiryTimers::start();
    let metrics = Arc::new(metrics::Metrics::new());
    let runtime: Arc<dyn Runtime> = Arc::new(metrics::MeteredRuntime::new(runtime, Arc::clone(&metrics)));
    let store: Arc<dyn Store> = Arc::new(metrics::MeteredStore::new(store, Arc::clone(&metrics)));
    let service = Arc::new(SandboxService::new(runtime, store, config, timers, metrics));
    let loaded = service.load().await?;
    info!(records = loaded, "sandbox records loaded");
    let background = reconciler::start(Arc::clone(&service), expired);
    Ok((service, background))
}
