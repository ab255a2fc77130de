//! berth's server: wiring only. It builds the control plane over the runtime and the store,
//! adds the AEnvironment env-service controller to the leader's loops, serves the native API
//! with the AEnvironment surface beside it and, on a listener of its own, the MCP gateway, and
//! shuts all of it down gracefully. It holds no rules of its own. Its settings (flags, `BERTH_*`
//! environment variables, `berth.toml`) are resolved in [`settings`].

pub mod settings;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use berth_control::LeaderLoop;
use berth_gateway::SandboxLookup;
use berth_runtime::Runtime;
use berth_store::{Store, StoreError};
use tokio::net::TcpListener;
use tracing::{info, warn};

pub use berth_control::{DEFAULT_EXEC_OUTPUT_LIMIT, DEFAULT_MAX_FILE_SIZE, SandboxService, ServerConfig};

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

/// [`serve`], plus the MCP gateway (see [`berth_gateway::mcp`]) on `gateway_listener` when there is one; the
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
    let app = router(Arc::clone(&service));
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
        berth_gateway::mcp::serve(gateway_listener, lookup(service), async move {
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

/// Builds the service and starts its background loops, the AEnvironment env-service controller
/// among the leader's. The loops stop when the returned set drops.
pub async fn start(
    config: ServerConfig,
    runtime: Arc<dyn Runtime>,
    store: Arc<dyn Store>,
) -> Result<(Arc<SandboxService>, tokio::task::JoinSet<()>), ServeError> {
    let env_services: LeaderLoop = Arc::new(|service| Box::pin(berth_aenv::env_services::run(service)));
    Ok(berth_control::start(config, runtime, store, vec![env_services]).await?)
}

/// The whole application on the main listener: the native API and, beside it (outside its
/// OpenAPI document), the AEnvironment surface.
pub fn router(service: Arc<SandboxService>) -> axum::Router {
    let aenv = berth_aenv::routes(Arc::clone(&service));
    berth_http::router(service, aenv)
}

/// What forwarding may know of the sandboxes: whether an address is a `Running` one's.
pub fn lookup(service: Arc<SandboxService>) -> Arc<dyn SandboxLookup> {
    Arc::new(RunningSandboxes(service))
}

struct RunningSandboxes(Arc<SandboxService>);

impl SandboxLookup for RunningSandboxes {
    fn is_running_sandbox(&self, address: SocketAddr) -> bool {
        self.0.running_at(address).is_some()
    }
}
