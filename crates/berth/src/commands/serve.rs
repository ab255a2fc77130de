//! `berth serve`: resolves the settings, prepares the data directory, connects the Docker
//! engine and the store (SQLite, or PostgreSQL shared by replicas), binds the listener, announces itself and runs the server until
//! ctrl-c or SIGTERM.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use berth_docker::{DEFAULT_ENDPOINT, DockerConfig, DockerRuntime, GuardMode, HostGuardConfig};
use berth_runtime::{DeferredRuntime, EngineInfo, Runtime, RuntimeError};
use berth_server::settings::{self, AuthSetting, CliLayer, GuardModeSetting, LogFormat, ServeArgs, ServeConfig};
use berth_server::{AuthMode, ServerConfig};
use berth_store::{PostgresStore, SqliteStore, Store};
use clap::ArgMatches;
use tokio::net::TcpListener;

use crate::output::emit;

/// The file inside the data directory that keeps this deployment's cluster id.
pub const CLUSTER_ID_FILE: &str = "cluster-id";
/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "berth.db";
/// Longest wait for one engine call that is not a stream.
const ENGINE_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// `matches` are those of the `serve` subcommand; they tell flags from environment variables.
pub async fn run(args: &ServeArgs, matches: Option<&ArgMatches>) -> anyhow::Result<()> {
    let explicit_file = args
        .config
        .as_deref()
        .map(|path| (path, settings::origin_in(matches, "config")));
    let file = settings::load_file(explicit_file)?;
    let config = settings::resolve(&CliLayer::from_args(args, matches), file.as_ref(), &|name| {
        std::env::var(name).ok()
    })?;
    init_tracing(&config.log, config.log_format);
    if let Some(path) = &config.config_file {
        tracing::info!(path = %path.display(), "read settings file");
    }

    create_data_dir(&config.data_dir)?;

    let cluster = match &config.cluster {
        Some(cluster) => cluster.clone(),
        None => cluster_id(&config.data_dir)?,
    };
    let (runtime, engine_line) = connect_engine(&config, &cluster).await?;

    let store = open_store(&config).await?;
    let tls = match &config.tls {
        Some((cert, key)) => Some(berth_server::tls::server_config(cert, key)?),
        None => None,
    };

    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|error| anyhow!("cannot listen on {}: {error}", config.listen))?;
    let address = listener.local_addr().context("cannot read the bound address")?;
    let gateway_listener = match &config.gateway_listen {
        Some(gateway_address) => Some(TcpListener::bind(gateway_address).await.map_err(|error| {
            anyhow!(
                "cannot listen on {gateway_address} for the MCP gateway: {error} (set --gateway-listen to another \
                 address, or to \"\" to run without the gateway)"
            )
        })?),
        None => None,
    };
    let gateway_address = gateway_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()
        .context("cannot read the gateway's bound address")?;

    if config.auth == AuthSetting::Keys {
        berth_server::bootstrap_admin_key(&store, &config.data_dir.join(ADMIN_KEY_FILE)).await?;
    } else {
        tracing::warn!(
            %address,
            "serving WITHOUT authentication (--auth none): every caller acts as an admin"
        );
    }

    let scheme = if tls.is_some() { "https" } else { "http" };
    emit(&banner(
        scheme,
        address,
        gateway_address,
        &engine_line,
        &store.describe(),
    ))?;
    tracing::info!(%address, engine = %engine_line, "berth is serving");

    let server_config = ServerConfig {
        policy: config.policy.clone(),
        resync_interval: config.resync_interval,
        orphan_grace: config.orphan_grace,
        retention: config.retention,
        cluster,
        exec_output_limit: config.exec_output_limit,
        max_file_size: config.max_file_size,
        shutdown_grace: config.shutdown_grace,
        service_host: config.service_host,
        auth: match config.auth {
            AuthSetting::Keys => AuthMode::Keys,
            AuthSetting::None => AuthMode::None,
        },
        default_quota: config.default_quota.clone(),
        audit_log: config.audit_log.clone(),
        open_metrics: config.open_metrics,
        rate_limit: config.rate_limit,
        gateway_anonymous: config.gateway_anonymous,
        presigner: berth_server::Presigner::from_file(&config.url_signing_key_file, true).map_err(|error| {
            anyhow!(
                "cannot read or make the URL-signing secret {}: {error}",
                config.url_signing_key_file.display()
            )
        })?,
    };
    berth_server::serve_with_gateway(
        listener,
        gateway_listener,
        tls,
        server_config,
        runtime,
        store,
        shutdown_signal()?,
    )
    .await?;
    tracing::info!("berth stopped");
    Ok(())
}

/// The engine, and the banner's line about it. An engine that does not answer yet (it boots
/// after berth, or restarts) does not keep berth down: berth serves, reports the engine in
/// `/readyz` and answers engine calls with 503 while it connects in the background. An engine
/// that answers but cannot be used (too old, refused TLS) is an error at once.
async fn connect_engine(config: &ServeConfig, cluster: &str) -> anyhow::Result<(Arc<dyn Runtime>, String)> {
    let first_attempt = async {
        let runtime = DockerRuntime::connect(docker_config(config, cluster)).await?;
        let info = runtime.info().await?;
        Ok::<_, RuntimeError>((runtime, info))
    };
    match first_attempt.await {
        Ok((runtime, info)) => Ok((Arc::new(runtime), engine_line(&info))),
        Err(error) if error.is_transient() => {
            let endpoint = expected_endpoint(config);
            let described = describe_engine_error(&config.engine_name, &endpoint, &error);
            tracing::warn!(error = %described, "the engine does not answer yet; serving and retrying in the background");
            let docker = docker_config(config, cluster);
            let deferred = DeferredRuntime::connect_in_background(&config.engine_name, &endpoint, &error, move || {
                let docker = docker.clone();
                async move {
                    let runtime = DockerRuntime::connect(docker).await?;
                    Ok(Arc::new(runtime) as Arc<dyn Runtime>)
                }
            });
            let line = format!(
                "engine {}: not answering yet at {endpoint}, retrying",
                config.engine_name
            );
            Ok((deferred, line))
        }
        Err(error) => Err(engine_error(config, error)),
    }
}

/// The file in the data directory holding the first admin key's secret.
pub const ADMIN_KEY_FILE: &str = "admin.key";

/// PostgreSQL when a database URL is set (shared by every replica), else SQLite in the data directory.
async fn open_store(config: &ServeConfig) -> anyhow::Result<Arc<dyn Store>> {
    match &config.database_url {
        Some(url) => {
            let store = PostgresStore::connect(url)
                .await
                .map_err(|error| anyhow!("cannot open the PostgreSQL store: {error}"))?;
            Ok(Arc::new(store))
        }
        None => {
            let database = config.data_dir.join(DATABASE_FILE);
            let store = SqliteStore::open(&database)
                .await
                .map_err(|error| anyhow!("cannot open the store at {}: {error}", database.display()))?;
            Ok(Arc::new(store))
        }
    }
}

fn docker_config(config: &ServeConfig, cluster: &str) -> DockerConfig {
    DockerConfig {
        name: config.engine_name.clone(),
        endpoint: config.docker_host.clone(),
        tls: None,
        publish_host_ip: config.publish_host_ip.clone(),
        isolate_sandboxes: config.isolate_sandboxes,
        host_guard: HostGuardConfig {
            mode: match config.host_guard.mode {
                GuardModeSetting::Off => GuardMode::Off,
                GuardModeSetting::Auto => GuardMode::Auto,
                GuardModeSetting::Required => GuardMode::Required,
            },
            scope: cluster.to_owned(),
            private_ranges: config.host_guard.private_ranges.clone(),
            nft: config.host_guard.nft.clone(),
        },
        call_timeout: ENGINE_CALL_TIMEOUT,
        ..DockerConfig::default()
    }
}

/// The lines `berth serve` prints once it listens; tests read the first (the API's address) and,
/// when there is a gateway, the second (the gateway's). The last says where the dashboard is.
pub fn banner(scheme: &str, address: SocketAddr, gateway: Option<SocketAddr>, engine: &str, store: &str) -> String {
    let gateway = gateway
        .map(|gateway| format!("gateway listening on {scheme}://{gateway}\n"))
        .unwrap_or_default();
    format!(
        "berth listening on {scheme}://{address}\n{gateway}{engine}\nstore: {store}\ndashboard: {scheme}://{address}/ui\n"
    )
}

/// The banner's line about an engine that answered.
pub fn engine_line(info: &EngineInfo) -> String {
    format!(
        "engine {}: docker {} (API {}) at {}",
        info.name, info.version, info.api_version, info.endpoint
    )
}

/// Where the engine is expected, for messages about it before it answered.
fn expected_endpoint(config: &ServeConfig) -> String {
    config
        .docker_host
        .clone()
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|host| !host.is_empty()))
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned())
}

/// One readable line about an engine that could not be used at start.
fn engine_error(config: &ServeConfig, error: RuntimeError) -> anyhow::Error {
    anyhow!(describe_engine_error(
        &config.engine_name,
        &expected_endpoint(config),
        &error
    ))
}

pub fn describe_engine_error(name: &str, endpoint: &str, error: &RuntimeError) -> String {
    match error {
        RuntimeError::Unavailable {
            engine,
            endpoint,
            detail,
        } => {
            format!("engine \"{engine}\" at {endpoint} is unavailable: {detail}")
        }
        other => format!("engine \"{name}\" at {endpoint} cannot be used: {other}"),
    }
}

fn init_tracing(filter: &str, format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal: log files and collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter);
    // A second initialisation (only possible in tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Creates the data directory (and its parents) readable by the owner only.
fn create_data_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|error| anyhow!("cannot create the data directory {}: {error}", dir.display()))
}

/// Resolves on the first ctrl-c or SIGTERM. The handlers are installed before it returns.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        Ok(async move {
            let name = tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            };
            tracing::info!(signal = name, "shutting down");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            tracing::info!("shutting down");
        })
    }
}

/// The deployment id kept in `<data_dir>/cluster-id`, generated on first start, so a restarted
/// server recognises its own containers and never touches another deployment's.
fn cluster_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(CLUSTER_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(anyhow!("cannot read {}: {error}", path.display())),
    }
    let id = format!("berth-{}", berth_core::SandboxId::generate());
    std::fs::write(&path, format!("{id}\n")).map_err(|error| anyhow!("cannot write {}: {error}", path.display()))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_id_is_generated_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = cluster_id(dir.path()).unwrap();
        assert!(
            first.starts_with("berth-") && first.len() == "berth-".len() + 16,
            "{first}"
        );
        assert_eq!(cluster_id(dir.path()).unwrap(), first);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(
            cluster_id(other.path()).unwrap(),
            first,
            "each data directory is its own deployment"
        );
    }

    #[test]
    fn the_banner_starts_with_the_listen_line() {
        let info = EngineInfo {
            name: "local".into(),
            endpoint: "unix:///var/run/docker.sock".into(),
            version: "20.10.24".into(),
            api_version: "1.41".into(),
        };
        let info = engine_line(&info);
        let banner = banner(
            "http",
            "127.0.0.1:41234".parse().unwrap(),
            None,
            &info,
            "sqlite /d/berth.db",
        );
        assert_eq!(
            banner,
            "berth listening on http://127.0.0.1:41234\n\
             engine local: docker 20.10.24 (API 1.41) at unix:///var/run/docker.sock\n\
             store: sqlite /d/berth.db\n\
             dashboard: http://127.0.0.1:41234/ui\n"
        );
        let with_gateway = super::banner(
            "http",
            "127.0.0.1:41234".parse().unwrap(),
            Some("127.0.0.1:8081".parse().unwrap()),
            &info,
            "x",
        );
        assert!(
            with_gateway
                .starts_with("berth listening on http://127.0.0.1:41234\ngateway listening on http://127.0.0.1:8081\n"),
            "{with_gateway}"
        );
        let v6 = super::banner("https", "[::1]:80".parse().unwrap(), None, &info, "x");
        assert!(v6.starts_with("berth listening on https://[::1]:80\n"), "{v6}");
    }

    #[test]
    fn engine_errors_are_one_readable_line() {
        let unavailable = RuntimeError::Unavailable {
            engine: "local".into(),
            endpoint: "unix:///var/run/docker.sock".into(),
            detail: "connection refused".into(),
        };
        assert_eq!(
            describe_engine_error("local", "unix:///x.sock", &unavailable),
            "engine \"local\" at unix:///var/run/docker.sock is unavailable: connection refused"
        );
        let invalid = RuntimeError::Invalid("API 1.24 is older than 1.41".into());
        assert_eq!(
            describe_engine_error("edge", "tcp://h:2375", &invalid),
            "engine \"edge\" at tcp://h:2375 cannot be used: engine refused the request: API 1.24 is older than 1.41"
        );
    }

    #[test]
    fn the_data_dir_is_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_data_dir(&dir).unwrap();
        create_data_dir(&dir).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
    }
}
