//! berth's server: wiring only. It builds the control plane over the runtime and the store,
//! adds the AEnvironment env-service controller to the leader's loops, serves the native API
//! with the AEnvironment surface beside it and, on a listener of its own, the MCP gateway, and
//! shuts all of it down gracefully. It holds no rules of its own. Its settings (flags, `BERTH_*`
//! environment variables, `berth.toml`) are resolved in [`settings`].

pub mod settings;
pub mod tls;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt;
use berth_control::LeaderLoop;
use berth_core::Caller;
use berth_gateway::SandboxLookup;
use berth_runtime::Runtime;
use berth_store::Store;
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tracing::{info, warn};

pub use berth_control::presign::Presigner;
pub use berth_control::{AuthMode, DEFAULT_EXEC_OUTPUT_LIMIT, DEFAULT_MAX_FILE_SIZE, SandboxService, ServerConfig};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Start(#[from] berth_control::StartError),
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
    serve_with_gateway(listener, None, None, config, runtime, store, shutdown).await
}

/// [`serve`], plus the MCP gateway (see [`berth_gateway::mcp`]) on `gateway_listener` when there is one; the
/// gateway stops accepting on the same `shutdown` and shares the grace period. With `tls`, both
/// listeners speak HTTPS only.
pub async fn serve_with_gateway(
    listener: TcpListener,
    gateway_listener: Option<TcpListener>,
    tls: Option<Arc<rustls::ServerConfig>>,
    config: ServerConfig,
    runtime: Arc<dyn Runtime>,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let grace = config.shutdown_grace;
    let (service, background) = start(config, runtime, store).await?;
    let scheme = berth_http::ServedScheme(if tls.is_some() { "https" } else { "http" });
    let app = router(Arc::clone(&service)).layer(axum::Extension(scheme));
    let (stopping_tx, stopping) = tokio::sync::oneshot::channel::<()>();
    let (closing_tx, mut closing) = tokio::sync::watch::channel(false);
    let events = Arc::clone(&service);
    let stopped = async move {
        shutdown.await;
        info!(grace = ?grace, "no longer accepting; finishing requests in flight");
        // Event streams never end on their own and are cheap to resume: end them now.
        events.events().close();
        let _ = closing_tx.send(true);
        let _ = stopping_tx.send(());
    };
    // The peer address goes into audit entries.
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let server: BoxFuture<'static, std::io::Result<()>> = match tls.clone() {
        Some(tls) => Box::pin(
            // `tap_io` (doing nothing) is what gives axum the peer address of a custom listener.
            axum::serve(tls::TlsListener::new(listener, tls).tap_io(|_| {}), app)
                .with_graceful_shutdown(stopped)
                .into_future(),
        ),
        None => Box::pin(axum::serve(listener, app).with_graceful_shutdown(stopped).into_future()),
    };
    let gateway_server = async move {
        let Some(gateway_listener) = gateway_listener else {
            return Ok(());
        };
        let on_loopback = gateway_listener
            .local_addr()
            .is_ok_and(|address| address.ip().is_loopback());
        let anonymous =
            service.config().auth == AuthMode::None || service.config().gateway_anonymous.unwrap_or(on_loopback);
        if !anonymous {
            info!("the MCP gateway asks every request for an API key");
        }
        let closed = async move {
            let _ = closing.wait_for(|closing| *closing).await;
        };
        match tls {
            Some(tls) => {
                let listener = tls::TlsListener::new(gateway_listener, tls);
                berth_gateway::mcp::serve(listener, lookup(service), anonymous, closed).await
            }
            None => berth_gateway::mcp::serve(gateway_listener, lookup(service), anonymous, closed).await,
        }
    };
    tokio::select! {
        served = async { tokio::try_join!(server, gateway_server) } => {
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

/// On a store without keys, makes the first admin key (owner `admin`) and writes its secret to
/// `path` (mode 0600), where the CLI on this machine finds it. Logs the path, never the secret.
pub async fn bootstrap_admin_key(
    store: &Arc<dyn Store>,
    path: &std::path::Path,
) -> Result<(), berth_control::identity::BootstrapError> {
    let metrics = Arc::new(berth_control::metrics::Metrics::new());
    let identity = berth_control::identity::Identity::new(Arc::clone(store), metrics, berth_core::Quota::default());
    if let Some((key, path)) = identity.bootstrap_admin_key(path).await? {
        info!(key = %key.id, path = %path.display(), "no API key existed: made an admin key and wrote it to the file");
    }
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
    berth_http::router(service, aenv, berth_aenv::not_found)
}

/// What forwarding may know of the sandboxes: whether an address is a `Running` one's.
pub fn lookup(service: Arc<SandboxService>) -> Arc<dyn SandboxLookup> {
    Arc::new(RunningSandboxes(service))
}

struct RunningSandboxes(Arc<SandboxService>);

impl SandboxLookup for RunningSandboxes {
    fn owner_at(&self, address: SocketAddr) -> Option<String> {
        self.0.serving_at(address).map(|sandbox| sandbox.owner)
    }

    fn authenticate<'a>(&'a self, secret: &'a str) -> BoxFuture<'a, Result<Caller, String>> {
        Box::pin(async move {
            if self.0.config().auth == AuthMode::None {
                return Ok(Caller::unauthenticated(berth_control::service::DEFAULT_OWNER));
            }
            self.0
                .identity()
                .authenticate(secret)
                .await
                .map_err(|failure| failure.to_string())
        })
    }
}
