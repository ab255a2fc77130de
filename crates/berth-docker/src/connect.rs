//! Reaching a Docker Engine the way the docker CLI does: the configuration, endpoint resolution
//! (`DOCKER_HOST`, `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`), TLS, and API version negotiation.

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use berth_runtime::RuntimeError;
use bollard::errors::Error as BollardError;
use bollard::{ClientVersion, Docker};

use crate::error::{EngineRef, Subject, classify, unavailable};

/// The oldest Docker Engine API berth speaks (Docker 20.10).
pub(crate) const MIN_API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// Where the docker CLI looks when `DOCKER_HOST` is unset.
pub const DEFAULT_ENDPOINT: &str = "unix:///var/run/docker.sock";

/// The most the connection handshake may take, whatever `call_timeout` says: starting against an
/// unreachable engine must fail in seconds.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach one Docker Engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerConfig {
    /// The engine's name in berth, recorded on each sandbox.
    pub name: String,
    /// `unix:///path/to/docker.sock` or `tcp://host:port`. `None`: `DOCKER_HOST`, else
    /// [`DEFAULT_ENDPOINT`].
    pub endpoint: Option<String>,
    /// Client TLS for a `tcp://` endpoint. `None`: from `DOCKER_TLS_VERIFY` + `DOCKER_CERT_PATH`
    /// (default `~/.docker`) when `DOCKER_TLS_VERIFY` is set, else plain TCP.
    pub tls: Option<TlsPaths>,
    /// The host address container ports are published on.
    pub publish_host_ip: String,
    /// Sandboxes join berth's own bridge with inter-container traffic off, unless the engine's
    /// default bridge already has it off; `false`: the engine's default bridge as it is.
    pub isolate_sandboxes: bool,
    /// The firewall rules that keep sandboxes on berth's networks from the engine host and from
    /// link-local and private ranges.
    pub host_guard: crate::guard::HostGuardConfig,
    /// Deadline of each engine call (inspect, create, start, remove, list...).
    pub call_timeout: Duration,
    /// Deadline of an image pull, which may legitimately take minutes.
    pub pull_timeout: Duration,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            name: "local".into(),
            endpoint: None,
            tls: None,
            publish_host_ip: "127.0.0.1".into(),
            isolate_sandboxes: false,
            host_guard: crate::guard::HostGuardConfig::default(),
            call_timeout: Duration::from_secs(30),
            pull_timeout: Duration::from_secs(600),
        }
    }
}

/// Client certificate files for a TLS engine, as `docker --tlsverify` uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsPaths {
    /// `ca.pem`, `cert.pem` and `key.pem` in `dir`, the layout of `DOCKER_CERT_PATH`.
    pub fn in_dir(dir: &Path) -> Self {
        TlsPaths {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}

/// A resolved endpoint: how to open connections, and how to name it in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// e.g. `unix:///var/run/docker.sock`, `tcp://10.0.0.5:2376`.
    pub display: String,
    pub transport: Transport,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Transport {
    Unix { path: String },
    Tcp { addr: String, tls: Option<TlsPaths> },
}

/// Picks the endpoint as the docker CLI would. `env` looks up an environment variable (a
/// parameter so that tests need not touch the process environment).
pub(crate) fn resolve_endpoint(
    config: &DockerConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Endpoint, (String, String)> {
    let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let raw = config
        .endpoint
        .clone()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| non_empty(env("DOCKER_HOST")))
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
    let raw = raw.trim().to_owned();
    let fail = |detail: String| Err((raw.clone(), detail));

    if let Some(path) = raw.strip_prefix("unix://") {
        if config.tls.is_some() {
            return fail("TLS applies only to tcp:// endpoints".into());
        }
        let path = if path.is_empty() { "/var/run/docker.sock" } else { path };
        if !path.starts_with('/') {
            return fail(format!(
                "`{path}` is not an absolute socket path: use unix:///path/to/docker.sock"
            ));
        }
        return Ok(Endpoint {
            display: format!("unix://{path}"),
            transport: Transport::Unix { path: path.to_owned() },
        });
    }

    if let Some(rest) = raw.strip_prefix("tcp://") {
        let host_port = rest.trim_end_matches('/');
        if host_port.is_empty() || host_port.contains('/') {
            return fail("use tcp://host:port".into());
        }
        let tls = match &config.tls {
            Some(tls) => Some(tls.clone()),
            None if non_empty(env("DOCKER_TLS_VERIFY")).is_some() => {
                let dir = non_empty(env("DOCKER_CERT_PATH"))
                    .map(PathBuf::from)
                    .or_else(|| non_empty(env("HOME")).map(|home| Path::new(&home).join(".docker")));
                match dir {
                    Some(dir) => Some(TlsPaths::in_dir(&dir)),
                    None => {
                        return fail("DOCKER_TLS_VERIFY is set but neither DOCKER_CERT_PATH nor HOME is".into());
                    }
                }
            }
            None => None,
        };
        let has_port = match host_port.rsplit_once(':') {
            Some((host, port)) => !host.ends_with(':') && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()),
            None => false,
        };
        let addr = if has_port {
            host_port.to_owned()
        } else {
            // The docker CLI's defaults: 2376 for TLS, 2375 for plain TCP.
            format!("{host_port}:{}", if tls.is_some() { 2376 } else { 2375 })
        };
        return Ok(Endpoint {
            display: format!("tcp://{addr}"),
            transport: Transport::Tcp { addr, tls },
        });
    }

    fail("unsupported endpoint: use unix:///path/to/docker.sock or tcp://host:port".into())
}

/// A connected engine: the client at the negotiated API version, and what the engine said it is.
pub(crate) struct Connected {
    pub docker: Docker,
    pub endpoint: Endpoint,
    pub engine_version: String,
    pub api_version: ClientVersion,
}

/// Resolves the endpoint, opens a client, negotiates the API version and checks the floor.
pub(crate) async fn connect(config: &DockerConfig) -> Result<Connected, RuntimeError> {
    // A malformed endpoint is a mistake in the settings, not an engine that is down: retrying
    // cannot mend it.
    let endpoint = resolve_endpoint(config, |key| std::env::var(key).ok())
        .map_err(|(raw, detail)| RuntimeError::Invalid(format!("engine endpoint `{raw}`: {detail}")))?;
    let engine = EngineRef {
        name: &config.name,
        endpoint: &endpoint.display,
    };
    let handshake = config.call_timeout.min(HANDSHAKE_TIMEOUT);
    // bollard's own timeout (whole seconds, headers only) sits behind ours, never before it.
    let bollard_timeout = config.call_timeout.max(config.pull_timeout).as_secs() + 5;

    let build = |version: &ClientVersion| -> Result<Docker, RuntimeError> {
        open_client(&endpoint, bollard_timeout, version).map_err(|err| match err {
            BollardError::SocketNotFoundError(_) => unavailable(engine, "no such file (is dockerd running?)".into()),
            other => unavailable(engine, other.to_string()),
        })
    };
    // bollard's negotiate_version asks `/v<newest>/version`. Engines older than bollard's default
    // (Docker 20.10 answers 1.41) refuse that with 400 "client version 1.53 is too new. Maximum
    // supported API version is 1.41": take the maximum from that answer and try again there.
    let first = build(bollard::API_DEFAULT_VERSION)?;
    let docker = match within(handshake, engine, "version negotiation", first.negotiate_version()).await? {
        Ok(docker) => docker,
        Err(BollardError::DockerResponseServerError {
            status_code: 400,
            message,
        }) => match parse_max_version(&message) {
            Some(max) => build(&max)?,
            None => {
                return Err(unavailable(
                    engine,
                    format!("API version negotiation failed: {message}"),
                ));
            }
        },
        Err(err) => return Err(connect_error(&err, engine)),
    };
    let api_version = docker.client_version();
    if api_version < MIN_API_VERSION {
        return Err(unavailable(
            engine,
            format!(
                "it speaks Docker Engine API {api_version}; berth needs {MIN_API_VERSION} or newer (Docker 20.10+)"
            ),
        ));
    }
    let version = within(handshake, engine, "the version request", docker.version())
        .await?
        .map_err(|err| connect_error(&err, engine))?;
    Ok(Connected {
        docker,
        engine_version: version.version.unwrap_or_else(|| "unknown".into()),
        api_version,
        endpoint: endpoint.clone(),
    })
}

/// Runs one handshake step under its deadline; no answer in time means unavailable.
async fn within<T>(
    deadline: Duration,
    engine: EngineRef<'_>,
    what: &str,
    fut: impl Future<Output = T>,
) -> Result<T, RuntimeError> {
    tokio::time::timeout(deadline, fut).await.map_err(|_| {
        unavailable(
            engine,
            format!("no answer to {what} within {}s", deadline.as_secs_f32()),
        )
    })
}

/// During the handshake every failure means "this engine cannot be used": report it as
/// `Unavailable` so the one line names the endpoint — except settings that cannot work (an
/// engine certificate berth does not trust), which stay `Invalid`: retrying cannot help.
fn connect_error(err: &BollardError, engine: EngineRef<'_>) -> RuntimeError {
    match classify(err, engine, Subject::Engine) {
        unavailable @ RuntimeError::Unavailable { .. } => unavailable,
        invalid @ RuntimeError::Invalid(_) => invalid,
        RuntimeError::Timeout(_) => crate::error::unavailable(engine, "no answer in time".into()),
        other => crate::error::unavailable(engine, other.to_string()),
    }
}

fn open_client(endpoint: &Endpoint, timeout_secs: u64, version: &ClientVersion) -> Result<Docker, BollardError> {
    match &endpoint.transport {
        Transport::Unix { path } => Docker::connect_with_unix(path, timeout_secs, version),
        Transport::Tcp { addr, tls: None } => Docker::connect_with_http(addr, timeout_secs, version),
        Transport::Tcp { addr, tls: Some(tls) } => {
            install_crypto_provider();
            for file in [&tls.ca, &tls.cert, &tls.key] {
                if !file.is_file() {
                    return Err(BollardError::CertPathError { path: file.clone() });
                }
            }
            Docker::connect_with_ssl(addr, &tls.key, &tls.cert, &tls.ca, timeout_secs, version)
        }
    }
}

/// rustls needs one process-wide provider; berth uses ring. Someone else may have installed it.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means a provider is already installed, which is what we want.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Reads `1.41` out of "client version 1.53 is too new. Maximum supported API version is 1.41".
pub(crate) fn parse_max_version(message: &str) -> Option<ClientVersion> {
    const MARKER: &str = "Maximum supported API version is ";
    let start = message.find(MARKER)? + MARKER.len();
    let text: String = message[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let (major, minor) = text.trim_end_matches('.').split_once('.')?;
    Some(ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve(config: &DockerConfig, env: &[(&str, &str)]) -> Result<Endpoint, (String, String)> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        resolve_endpoint(config, |key| env.get(key).cloned())
    }

    #[test]
    fn defaults_to_the_local_socket() {
        let endpoint = resolve(&DockerConfig::default(), &[]).expect("resolves");
        assert_eq!(endpoint.display, "unix:///var/run/docker.sock");
        assert_eq!(
            endpoint.transport,
            Transport::Unix {
                path: "/var/run/docker.sock".into()
            }
        );
        let empty = resolve(&DockerConfig::default(), &[("DOCKER_HOST", "")]).expect("resolves");
        assert_eq!(empty.display, "unix:///var/run/docker.sock");
    }

    #[test]
    fn docker_host_is_honoured_and_config_wins() {
        let from_env = resolve(&DockerConfig::default(), &[("DOCKER_HOST", "tcp://10.0.0.5:2375")]).expect("resolves");
        assert_eq!(
            from_env.transport,
            Transport::Tcp {
                addr: "10.0.0.5:2375".into(),
                tls: None
            }
        );
        let config = DockerConfig {
            endpoint: Some("unix:///run/other.sock".into()),
            ..DockerConfig::default()
        };
        let explicit = resolve(&config, &[("DOCKER_HOST", "tcp://10.0.0.5:2375")]).expect("resolves");
        assert_eq!(explicit.display, "unix:///run/other.sock");
    }

    #[test]
    fn tls_comes_from_docker_tls_verify_and_cert_path() {
        let endpoint = resolve(
            &DockerConfig::default(),
            &[
                ("DOCKER_HOST", "tcp://engine.example:2376"),
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CERT_PATH", "/certs"),
            ],
        )
        .expect("resolves");
        assert_eq!(
            endpoint.transport,
            Transport::Tcp {
                addr: "engine.example:2376".into(),
                tls: Some(TlsPaths::in_dir(Path::new("/certs")))
            }
        );
        let home = resolve(
            &DockerConfig::default(),
            &[
                ("DOCKER_HOST", "tcp://engine.example"),
                ("DOCKER_TLS_VERIFY", "1"),
                ("HOME", "/root"),
            ],
        )
        .expect("resolves");
        assert_eq!(
            home.transport,
            Transport::Tcp {
                addr: "engine.example:2376".into(),
                tls: Some(TlsPaths::in_dir(Path::new("/root/.docker")))
            }
        );
    }

    #[test]
    fn tcp_without_port_gets_the_cli_default() {
        let endpoint = resolve(&DockerConfig::default(), &[("DOCKER_HOST", "tcp://127.0.0.1")]).expect("resolves");
        assert_eq!(endpoint.display, "tcp://127.0.0.1:2375");
        let v6 = resolve(&DockerConfig::default(), &[("DOCKER_HOST", "tcp://[::1]")]).expect("resolves");
        assert_eq!(v6.display, "tcp://[::1]:2375");
        let v6_port = resolve(&DockerConfig::default(), &[("DOCKER_HOST", "tcp://[::1]:1234/")]).expect("resolves");
        assert_eq!(v6_port.display, "tcp://[::1]:1234");
    }

    #[test]
    fn unsupported_endpoints_are_refused_with_the_reason() {
        for raw in ["ssh://user@host", "http//x", "unix://relative.sock", "tcp://"] {
            let config = DockerConfig {
                endpoint: Some(raw.into()),
                ..DockerConfig::default()
            };
            let (named, detail) = resolve(&config, &[]).expect_err(raw);
            assert_eq!(named, raw);
            assert!(!detail.is_empty());
        }
    }

    /// Answers every HTTP request on a loopback port with `status` and `body`, like an engine
    /// that refuses the client's API version.
    async fn refusing_engine(status: &'static str, body: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        format!("tcp://{addr}")
    }

    #[tokio::test]
    async fn engines_older_than_api_1_41_are_refused() {
        let endpoint = refusing_engine(
            "400 Bad Request",
            r#"{"message":"client version 1.53 is too new. Maximum supported API version is 1.40"}"#,
        )
        .await;
        let config = DockerConfig {
            endpoint: Some(endpoint.clone()),
            ..DockerConfig::default()
        };
        let err = connect(&config).await.err().expect("refused");
        match err {
            RuntimeError::Unavailable {
                endpoint: named,
                detail,
                ..
            } => {
                assert_eq!(named, endpoint);
                assert!(
                    detail.contains("API 1.40") && detail.contains("1.41 or newer"),
                    "{detail}"
                );
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_unexplained_refusal_is_reported_as_such() {
        let endpoint = refusing_engine("400 Bad Request", r#"{"message":"go away"}"#).await;
        let config = DockerConfig {
            endpoint: Some(endpoint),
            ..DockerConfig::default()
        };
        match connect(&config).await.err().expect("refused") {
            RuntimeError::Unavailable { detail, .. } => assert!(detail.contains("go away"), "{detail}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[test]
    fn reads_the_maximum_version_from_the_engines_refusal() {
        let parsed = parse_max_version("client version 1.53 is too new. Maximum supported API version is 1.41");
        assert_eq!(
            parsed,
            Some(ClientVersion {
                major_version: 1,
                minor_version: 41
            })
        );
        assert_eq!(parse_max_version("something else"), None);
    }
}
