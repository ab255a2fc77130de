//! The server's settings: the `berth serve` flags, `BERTH_*` environment variables and an
//! optional TOML file, resolved with precedence flag > env > file > default into a checked
//! [`ServeConfig`].

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_core::spec::NumberOrString;
use berth_core::{Egress, SpecPolicy, units};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args};
use serde::Deserialize;

/// The settings file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "berth.toml";

/// Flags of `berth serve`. Each also reads `BERTH_<NAME>` and the TOML key `<name>`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML settings file [default: ./berth.toml if it exists]
    #[arg(long, env = "BERTH_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "BERTH_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Address of the MCP gateway (AEnvironment's :8081); an empty value disables it
    /// [default: 127.0.0.1:8081]
    #[arg(long, env = "BERTH_GATEWAY_LISTEN", value_name = "HOST:PORT")]
    pub gateway_listen: Option<String>,
    /// IP address the env-services' balancers listen on, and the host of their service_url
    /// [default: 127.0.0.1]
    #[arg(long, env = "BERTH_SERVICE_HOST", value_name = "IP")]
    pub service_host: Option<String>,
    /// Directory of the database [default: $XDG_DATA_HOME/berth or ~/.local/share/berth]
    #[arg(long, env = "BERTH_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<String>,
    /// PostgreSQL store shared by several berth processes, e.g. postgres://user:pass@host/berth
    /// [default: none, SQLite in the data directory]
    #[arg(long, env = "BERTH_DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Docker Engine endpoint, e.g. unix:///var/run/docker.sock [default: $DOCKER_HOST, else the local socket]
    #[arg(long, env = "BERTH_DOCKER_HOST", value_name = "URL")]
    pub docker_host: Option<String>,
    /// The engine's name in berth [default: local]
    #[arg(long, env = "BERTH_ENGINE_NAME", value_name = "NAME")]
    pub engine_name: Option<String>,
    /// This deployment's id, labelled on its containers; servers sharing an engine need
    /// different ones [default: default]
    #[arg(long, env = "BERTH_CLUSTER", value_name = "ID")]
    pub cluster: Option<String>,
    /// Host address that sandbox ports are published on [default: 127.0.0.1]
    #[arg(long, env = "BERTH_PUBLISH_HOST_IP", value_name = "IP")]
    pub publish_host_ip: Option<String>,
    /// CPUs of a sandbox that asks for none [default: 1]
    #[arg(long, env = "BERTH_DEFAULT_CPU", value_name = "CPUS")]
    pub default_cpu: Option<String>,
    /// Memory of a sandbox that asks for none [default: 512Mi]
    #[arg(long, env = "BERTH_DEFAULT_MEMORY", value_name = "SIZE")]
    pub default_memory: Option<String>,
    /// Time to live of a sandbox that asks for none [default: 30m]
    #[arg(long, env = "BERTH_DEFAULT_TTL", value_name = "DURATION")]
    pub default_ttl: Option<String>,
    /// Most CPUs a sandbox may ask for [default: 16]
    #[arg(long, env = "BERTH_MAX_CPU", value_name = "CPUS")]
    pub max_cpu: Option<String>,
    /// Most memory a sandbox may ask for [default: 64Gi]
    #[arg(long, env = "BERTH_MAX_MEMORY", value_name = "SIZE")]
    pub max_memory: Option<String>,
    /// Longest time to live a sandbox may ask for [default: 168h]
    #[arg(long, env = "BERTH_MAX_TTL", value_name = "DURATION")]
    pub max_ttl: Option<String>,
    /// Longest a sandbox may live from its creation, renewals included; a sandbox may ask for
    /// less with `max_lifetime` [default: no limit]
    #[arg(long, env = "BERTH_MAX_LIFETIME", value_name = "DURATION")]
    pub max_lifetime: Option<String>,
    /// Most processes in one sandbox [default: 1024]
    #[arg(long, env = "BERTH_PIDS_LIMIT", value_name = "N")]
    pub pids_limit: Option<String>,
    /// Most labels one sandbox may carry [default: 64]
    #[arg(long, env = "BERTH_MAX_LABELS", value_name = "N")]
    pub max_labels: Option<String>,
    /// Most bytes the labels, env and command of one sandbox may hold together [default: 256Ki]
    #[arg(long, env = "BERTH_MAX_SPEC_SIZE", value_name = "SIZE")]
    pub max_spec_size: Option<String>,
    /// How often the engine is compared with the store [default: 30s]
    #[arg(long, env = "BERTH_RESYNC_INTERVAL", value_name = "DURATION")]
    pub resync_interval: Option<String>,
    /// How old an unrecorded container must be before it is collected [default: 60s]
    #[arg(long, env = "BERTH_ORPHAN_GRACE", value_name = "DURATION")]
    pub orphan_grace: Option<String>,
    /// How long ended sandboxes stay listed [default: 24h]
    #[arg(long, env = "BERTH_RETENTION", value_name = "DURATION")]
    pub retention: Option<String>,
    /// Most output a one-shot exec returns per stream; the rest is cut [default: 1Mi]
    #[arg(long, env = "BERTH_EXEC_OUTPUT_LIMIT", value_name = "SIZE")]
    pub exec_output_limit: Option<String>,
    /// Largest file (or tar stream) that may be uploaded [default: 4Gi]
    #[arg(long, env = "BERTH_MAX_FILE_SIZE", value_name = "SIZE")]
    pub max_file_size: Option<String>,
    /// Log filter, RUST_LOG syntax, e.g. `info,berth_server=debug` [default: info]
    #[arg(long, env = "BERTH_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// Log lines as `text` or `json` (one object per line) [default: text]
    #[arg(long, env = "BERTH_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// How long a shutdown waits for requests in flight [default: 20s]
    #[arg(long, env = "BERTH_SHUTDOWN_GRACE", value_name = "DURATION")]
    pub shutdown_grace: Option<String>,
    /// `keys`: every route but the probes needs an API key; `none`: no key is asked for (only
    /// with the API on loopback) [default: keys]
    #[arg(long, env = "BERTH_AUTH", value_name = "MODE")]
    pub auth: Option<String>,
    /// File every mutating request and refused authentication is appended to, one JSON line each
    /// [default: none, the store and the metric only]
    #[arg(long, env = "BERTH_AUDIT_LOG", value_name = "PATH")]
    pub audit_log: Option<String>,
    /// File holding the secret presigned URLs are signed with (64 hex digits; made when missing).
    /// Give every process of a deployment the same file, or each honours only its own URLs
    /// [default: <data-dir>/url-signing.key]
    #[arg(long, env = "BERTH_URL_SIGNING_KEY_FILE", value_name = "PATH")]
    pub url_signing_key_file: Option<String>,
    /// `open`: /metrics answers without a key; `key`: it needs an admin key [default: open]
    #[arg(long, env = "BERTH_METRICS_AUTH", value_name = "MODE")]
    pub metrics_auth: Option<String>,
    /// `engine`: sandboxes join the engine's default bridge (kept apart only when the engine runs
    /// with --icc=false); `isolated`: berth's own bridge, where no sandbox reaches another
    /// [default: engine]
    #[arg(long, env = "BERTH_SANDBOX_NETWORK", value_name = "MODE")]
    pub sandbox_network: Option<String>,
    /// `auto`: the engine host's firewall keeps sandboxes on berth's networks from the host
    /// itself and from link-local and private ranges, where the engine lets berth write it;
    /// `required`: the same, and berth does not start where it cannot; `off` [default: auto]
    #[arg(long, env = "BERTH_HOST_GUARD", value_name = "MODE")]
    pub host_guard: Option<String>,
    /// The ranges a guarded sandbox does not reach, comma-separated CIDRs, or `none`
    /// (link-local ranges are closed whatever this says)
    /// [default: 10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,fc00::/7]
    #[arg(long, env = "BERTH_PRIVATE_RANGES", value_name = "CIDRS")]
    pub private_ranges: Option<String>,
    /// The `nft` program the host guard's image is built from [default: `nft` on PATH]
    #[arg(long, env = "BERTH_HOST_GUARD_NFT", value_name = "PATH")]
    pub host_guard_nft: Option<String>,
    /// The egress policy of a sandbox (or template) that names none: `allow` or `deny` (no way
    /// out; only what berth initiates reaches it) [default: allow]
    #[arg(long, env = "BERTH_DEFAULT_EGRESS", value_name = "POLICY")]
    pub default_egress: Option<String>,
    /// PEM certificate chain: with --tls-key, the API and the gateway serve HTTPS only
    #[arg(long, env = "BERTH_TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<String>,
    /// PEM private key of --tls-cert
    #[arg(long, env = "BERTH_TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<String>,
    /// Whether the MCP gateway forwards requests without an API key (AEnvironment's SDK sends
    /// none): `loopback` (only while it listens on loopback), `always` or `never` [default: loopback]
    #[arg(long, env = "BERTH_GATEWAY_ANONYMOUS", value_name = "WHEN")]
    pub gateway_anonymous: Option<String>,
    /// Requests per second one key may make (a burst of as many) [default: unlimited]
    #[arg(long, env = "BERTH_RATE_LIMIT", value_name = "PER_SECOND")]
    pub rate_limit: Option<String>,
    /// Live sandboxes an owner without a quota of its own may hold [default: unlimited]
    #[arg(long, env = "BERTH_DEFAULT_QUOTA_SANDBOXES", value_name = "COUNT")]
    pub default_quota_sandboxes: Option<String>,
    /// CPUs an owner without a quota of its own may hold [default: unlimited]
    #[arg(long, env = "BERTH_DEFAULT_QUOTA_CPU", value_name = "CPUS")]
    pub default_quota_cpu: Option<String>,
    /// Memory an owner without a quota of its own may hold [default: unlimited]
    #[arg(long, env = "BERTH_DEFAULT_QUOTA_MEMORY", value_name = "SIZE")]
    pub default_quota_memory: Option<String>,
}

/// Whether `berth serve` asks for API keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthSetting {
    Keys,
    None,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Everything `berth serve` needs, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    pub listen: String,
    /// Where the MCP gateway listens; `None`: no gateway.
    pub gateway_listen: Option<String>,
    /// Where env-service balancers listen (and the host of `service_url`).
    pub service_host: IpAddr,
    pub data_dir: PathBuf,
    /// A PostgreSQL URL; `None`: SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// `None`: the Docker runtime reads `DOCKER_HOST` itself.
    pub docker_host: Option<String>,
    pub engine_name: String,
    /// The `berth.cluster` label value: servers act only on their own cluster's containers.
    /// `None`: the id kept in the data directory (generated on first start).
    pub cluster: Option<String>,
    pub publish_host_ip: String,
    pub policy: SpecPolicy,
    pub resync_interval: Duration,
    pub orphan_grace: Duration,
    pub retention: Duration,
    /// Most bytes of stdout (and of stderr) a one-shot exec returns.
    pub exec_output_limit: usize,
    /// Largest upload, in bytes.
    pub max_file_size: u64,
    pub log: String,
    pub log_format: LogFormat,
    pub shutdown_grace: Duration,
    pub auth: AuthSetting,
    pub audit_log: Option<PathBuf>,
    /// The presigned URLs' secret (`<data_dir>/url-signing.key` unless given).
    pub url_signing_key_file: PathBuf,
    pub open_metrics: bool,
    /// Sandboxes join berth's own bridge, where none reaches another.
    pub isolate_sandboxes: bool,
    pub host_guard: HostGuardSetting,
    pub rate_limit: Option<u32>,
    /// `None`: only while the gateway listens on loopback.
    pub gateway_anonymous: Option<bool>,
    /// The certificate chain and key files; `None`: plain HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub default_quota: berth_core::Quota,
    /// The settings file that was read, if any.
    pub config_file: Option<PathBuf>,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Flag,
    Env,
    File(PathBuf),
    Default,
}

/// A setting's origin, printable: `flag --max-ttl`, `env BERTH_MAX_TTL`, `berth.toml key max_ttl`.
struct Described<'a> {
    key: &'a str,
    origin: &'a Origin,
}

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.origin {
            Origin::Flag => write!(f, "flag --{}", self.key.replace('_', "-")),
            Origin::Env => write!(f, "env BERTH_{}", self.key.to_ascii_uppercase()),
            Origin::File(path) => write!(f, "{} key {}", path.display(), self.key),
            Origin::Default => f.write_str("default"),
        }
    }
}

fn describe(key: &str, origin: &Origin) -> String {
    Described { key, origin }.to_string()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("invalid {key} `{value}` (from {source_desc}): {message}")]
    Invalid {
        key: &'static str,
        value: String,
        source_desc: String,
        message: String,
    },
    #[error("config file {path} (from {source_desc}) does not exist")]
    FileMissing { path: PathBuf, source_desc: String },
    #[error("cannot read config file {path}: {detail}")]
    FileUnreadable { path: PathBuf, detail: String },
    #[error("config file {path}: {detail}")]
    FileInvalid { path: PathBuf, detail: String },
    #[error(
        "database_url needs cluster too (--cluster, BERTH_CLUSTER): every berth process sharing the database must name the same deployment"
    )]
    ClusterNeeded,
}

/// The TOML settings file. Keys are the flag names with `_` for `-`; quantities and durations
/// may be strings or numbers.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub listen: Option<String>,
    pub gateway_listen: Option<String>,
    pub service_host: Option<String>,
    pub data_dir: Option<String>,
    pub database_url: Option<String>,
    pub docker_host: Option<String>,
    pub engine_name: Option<String>,
    pub cluster: Option<String>,
    pub publish_host_ip: Option<String>,
    pub default_cpu: Option<NumberOrString>,
    pub default_memory: Option<NumberOrString>,
    pub default_ttl: Option<NumberOrString>,
    pub max_cpu: Option<NumberOrString>,
    pub max_memory: Option<NumberOrString>,
    pub max_ttl: Option<NumberOrString>,
    pub max_lifetime: Option<NumberOrString>,
    pub pids_limit: Option<NumberOrString>,
    pub max_labels: Option<NumberOrString>,
    pub max_spec_size: Option<NumberOrString>,
    pub resync_interval: Option<NumberOrString>,
    pub orphan_grace: Option<NumberOrString>,
    pub retention: Option<NumberOrString>,
    pub exec_output_limit: Option<NumberOrString>,
    pub max_file_size: Option<NumberOrString>,
    pub log: Option<String>,
    pub log_format: Option<String>,
    pub shutdown_grace: Option<NumberOrString>,
    pub auth: Option<String>,
    pub audit_log: Option<String>,
    pub url_signing_key_file: Option<String>,
    pub metrics_auth: Option<String>,
    pub sandbox_network: Option<String>,
    pub host_guard: Option<String>,
    pub private_ranges: Option<String>,
    pub host_guard_nft: Option<String>,
    pub default_egress: Option<String>,
    pub gateway_anonymous: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub rate_limit: Option<NumberOrString>,
    pub default_quota_sandboxes: Option<NumberOrString>,
    pub default_quota_cpu: Option<NumberOrString>,
    pub default_quota_memory: Option<NumberOrString>,
}

impl FileSettings {
    fn get(&self, key: &str) -> Option<NumberOrString> {
        let text = |value: &Option<String>| value.clone().map(NumberOrString::String);
        match key {
            "listen" => text(&self.listen),
            "gateway_listen" => text(&self.gateway_listen),
            "service_host" => text(&self.service_host),
            "data_dir" => text(&self.data_dir),
            "database_url" => text(&self.database_url),
            "docker_host" => text(&self.docker_host),
            "engine_name" => text(&self.engine_name),
            "cluster" => text(&self.cluster),
            "publish_host_ip" => text(&self.publish_host_ip),
            "default_cpu" => self.default_cpu.clone(),
            "default_memory" => self.default_memory.clone(),
            "default_ttl" => self.default_ttl.clone(),
            "max_cpu" => self.max_cpu.clone(),
            "max_memory" => self.max_memory.clone(),
            "max_ttl" => self.max_ttl.clone(),
            "max_lifetime" => self.max_lifetime.clone(),
            "pids_limit" => self.pids_limit.clone(),
            "max_labels" => self.max_labels.clone(),
            "max_spec_size" => self.max_spec_size.clone(),
            "resync_interval" => self.resync_interval.clone(),
            "orphan_grace" => self.orphan_grace.clone(),
            "retention" => self.retention.clone(),
            "exec_output_limit" => self.exec_output_limit.clone(),
            "max_file_size" => self.max_file_size.clone(),
            "log" => text(&self.log),
            "log_format" => text(&self.log_format),
            "shutdown_grace" => self.shutdown_grace.clone(),
            "auth" => text(&self.auth),
            "audit_log" => text(&self.audit_log),
            "url_signing_key_file" => text(&self.url_signing_key_file),
            "metrics_auth" => text(&self.metrics_auth),
            "sandbox_network" => text(&self.sandbox_network),
            "host_guard" => text(&self.host_guard),
            "private_ranges" => text(&self.private_ranges),
            "host_guard_nft" => text(&self.host_guard_nft),
            "default_egress" => text(&self.default_egress),
            "gateway_anonymous" => text(&self.gateway_anonymous),
            "tls_cert" => text(&self.tls_cert),
            "tls_key" => text(&self.tls_key),
            "rate_limit" => self.rate_limit.clone(),
            "default_quota_sandboxes" => self.default_quota_sandboxes.clone(),
            "default_quota_cpu" => self.default_quota_cpu.clone(),
            "default_quota_memory" => self.default_quota_memory.clone(),
            _ => None,
        }
    }
}

/// A settings file as read.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedFile {
    pub path: PathBuf,
    pub settings: FileSettings,
}

/// Parses the text of a settings file; errors name the file and line in one line.
pub fn parse_file(path: &Path, text: &str) -> Result<LoadedFile, ConfigError> {
    let settings = toml::from_str::<FileSettings>(text).map_err(|error| {
        let line = error
            .span()
            .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
        let message = error.message().replace('\n', " ");
        ConfigError::FileInvalid {
            path: path.to_owned(),
            detail: match line {
                Some(line) => format!("line {line}: {}", message.trim()),
                None => message.trim().to_owned(),
            },
        }
    })?;
    Ok(LoadedFile {
        path: path.to_owned(),
        settings,
    })
}

/// Finds and reads the settings file: the explicit one (which must exist), else
/// `./berth.toml` when there is one, else none.
pub fn load_file(explicit: Option<(&Path, Origin)>) -> Result<Option<LoadedFile>, ConfigError> {
    let path = match explicit {
        Some((path, origin)) => {
            if !path.exists() {
                return Err(ConfigError::FileMissing {
                    path: path.to_owned(),
                    source_desc: describe("config", &origin),
                });
            }
            path.to_owned()
        }
        None => {
            let path = PathBuf::from(DEFAULT_CONFIG_FILE);
            if !path.is_file() {
                return Ok(None);
            }
            path
        }
    };
    let text = std::fs::read_to_string(&path).map_err(|error| ConfigError::FileUnreadable {
        path: path.clone(),
        detail: error.to_string(),
    })?;
    parse_file(&path, &text).map(Some)
}

/// Values given on the command line or in the environment, with where each came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CliLayer {
    values: Vec<(&'static str, String, Origin)>,
}

impl CliLayer {
    /// The given values of `args`; `matches` tells flags from environment variables (without
    /// it every value counts as a flag).
    pub fn from_args(args: &ServeArgs, matches: Option<&ArgMatches>) -> Self {
        let given = [
            ("listen", &args.listen),
            ("gateway_listen", &args.gateway_listen),
            ("service_host", &args.service_host),
            ("data_dir", &args.data_dir),
            ("database_url", &args.database_url),
            ("docker_host", &args.docker_host),
            ("engine_name", &args.engine_name),
            ("cluster", &args.cluster),
            ("publish_host_ip", &args.publish_host_ip),
            ("default_cpu", &args.default_cpu),
            ("default_memory", &args.default_memory),
            ("default_ttl", &args.default_ttl),
            ("max_cpu", &args.max_cpu),
            ("max_memory", &args.max_memory),
            ("max_ttl", &args.max_ttl),
            ("max_lifetime", &args.max_lifetime),
            ("pids_limit", &args.pids_limit),
            ("max_labels", &args.max_labels),
            ("max_spec_size", &args.max_spec_size),
            ("resync_interval", &args.resync_interval),
            ("orphan_grace", &args.orphan_grace),
            ("retention", &args.retention),
            ("exec_output_limit", &args.exec_output_limit),
            ("max_file_size", &args.max_file_size),
            ("log", &args.log),
            ("log_format", &args.log_format),
            ("shutdown_grace", &args.shutdown_grace),
            ("auth", &args.auth),
            ("audit_log", &args.audit_log),
            ("url_signing_key_file", &args.url_signing_key_file),
            ("metrics_auth", &args.metrics_auth),
            ("sandbox_network", &args.sandbox_network),
            ("host_guard", &args.host_guard),
            ("private_ranges", &args.private_ranges),
            ("host_guard_nft", &args.host_guard_nft),
            ("default_egress", &args.default_egress),
            ("gateway_anonymous", &args.gateway_anonymous),
            ("tls_cert", &args.tls_cert),
            ("tls_key", &args.tls_key),
            ("rate_limit", &args.rate_limit),
            ("default_quota_sandboxes", &args.default_quota_sandboxes),
            ("default_quota_cpu", &args.default_quota_cpu),
            ("default_quota_memory", &args.default_quota_memory),
        ];
        let mut layer = CliLayer::default();
        for (key, value) in given {
            if let Some(value) = value {
                layer = layer.with(key, value, origin_in(matches, key));
            }
        }
        layer
    }

    pub fn with(mut self, key: &'static str, value: &str, origin: Origin) -> Self {
        self.values.retain(|(existing, _, _)| *existing != key);
        self.values.push((key, value.to_owned(), origin));
        self
    }

    fn get(&self, key: &str) -> Option<(NumberOrString, Origin)> {
        self.values
            .iter()
            .find(|(existing, _, _)| *existing == key)
            .map(|(_, value, origin)| (NumberOrString::String(value.clone()), origin.clone()))
    }
}

/// Whether the argument `id` came from the environment or the command line.
pub fn origin_in(matches: Option<&ArgMatches>, id: &str) -> Origin {
    match matches.and_then(|matches| matches.value_source(id)) {
        Some(ValueSource::EnvVariable) => Origin::Env,
        _ => Origin::Flag,
    }
}

/// One setting's raw value and origin, after precedence.
struct Raw {
    key: &'static str,
    value: NumberOrString,
    origin: Origin,
}

impl Raw {
    fn invalid(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: self.key,
            value: self.value.to_string(),
            source_desc: describe(self.key, &self.origin),
            message: message.into(),
        }
    }

    fn parse<T>(&self, parse: impl FnOnce(&NumberOrString) -> Result<T, String>) -> Result<T, ConfigError> {
        parse(&self.value).map_err(|message| self.invalid(message))
    }

    fn text(&self) -> Result<String, ConfigError> {
        match &self.value {
            NumberOrString::String(text) => Ok(text.clone()),
            NumberOrString::Number(_) => Err(self.invalid("must be a string")),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} `{}` (from {})",
            self.key,
            self.value,
            describe(self.key, &self.origin)
        )
    }
}

struct Layers<'a> {
    cli: &'a CliLayer,
    file: Option<&'a LoadedFile>,
}

impl Layers<'_> {
    fn given(&self, key: &'static str) -> Option<Raw> {
        if let Some((value, origin)) = self.cli.get(key) {
            return Some(Raw { key, value, origin });
        }
        let file = self.file?;
        let value = file.settings.get(key)?;
        Some(Raw {
            key,
            value,
            origin: Origin::File(file.path.clone()),
        })
    }

    fn get(&self, key: &'static str, default: &str) -> Raw {
        self.given(key).unwrap_or_else(|| Raw {
            key,
            value: NumberOrString::String(default.to_owned()),
            origin: Origin::Default,
        })
    }
}

/// `$XDG_DATA_HOME/berth`, else `$HOME/.local/share/berth`, else `./berth-data`.
pub fn default_data_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    let set = |name: &str| env(name).filter(|value| !value.is_empty());
    if let Some(xdg) = set("XDG_DATA_HOME").filter(|value| Path::new(value).is_absolute()) {
        return Path::new(&xdg).join("berth");
    }
    if let Some(home) = set("HOME") {
        return Path::new(&home).join(".local/share/berth");
    }
    PathBuf::from("./berth-data")
}

/// Resolves every setting with precedence flag/env (`cli`) > `file` > default and checks it.
/// `env` reads the environment for the default data directory. Settings are checked in the
/// order they are listed, so the first bad one is the one reported.
pub fn resolve(
    cli: &CliLayer,
    file: Option<&LoadedFile>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ServeConfig, ConfigError> {
    let layers = Layers { cli, file };
    let listen = resolve_listen(&layers)?;
    let gateway_listen = resolve_gateway_listen(&layers)?;
    let service_host = resolve_service_host(&layers)?;
    let data_dir = resolve_data_dir(&layers, env)?;
    let database_url = resolve_database_url(&layers)?;
    let docker_host = resolve_docker_host(&layers)?;
    let engine_name = resolve_engine_name(&layers)?;
    let cluster = resolve_cluster(&layers)?;
    let publish_host_ip = resolve_publish_host_ip(&layers)?;
    let policy = resolve_policy(&layers)?;
    let resync_interval = layers.get("resync_interval", "30s").parse(units::parse_duration)?;
    let orphan_grace = layers.get("orphan_grace", "60s").parse(units::parse_duration)?;
    let retention = layers.get("retention", "24h").parse(units::parse_duration)?;
    let exec_output_limit = resolve_exec_output_limit(&layers)?;
    let max_file_size = layers.get("max_file_size", "4Gi").parse(units::parse_memory_bytes)?;
    let log = resolve_log(&layers)?;
    let log_format = resolve_log_format(&layers)?;
    let shutdown_grace = layers.get("shutdown_grace", "20s").parse(units::parse_duration)?;
    check_shared_database_names_its_cluster(database_url.as_deref(), cluster.as_deref())?;
    let auth = resolve_auth(&layers, &listen)?;
    let audit_log = layers
        .given("audit_log")
        .map(|raw| raw.text())
        .transpose()?
        .filter(|path| !path.trim().is_empty())
        .map(PathBuf::from);
    let url_signing_key_file = layers
        .given("url_signing_key_file")
        .map(|raw| raw.text())
        .transpose()?
        .filter(|path| !path.trim().is_empty())
        .map_or_else(|| data_dir.join("url-signing.key"), PathBuf::from);
    let open_metrics = resolve_open_metrics(&layers)?;
    let isolate_sandboxes = resolve_isolate_sandboxes(&layers)?;
    let host_guard = resolve_host_guard(&layers)?;
    let rate_limit = resolve_rate_limit(&layers)?;
    let gateway_anonymous = resolve_gateway_anonymous(&layers)?;
    let tls = resolve_tls(&layers)?;
    let default_quota = resolve_default_quota(&layers)?;

    Ok(ServeConfig {
        listen,
        gateway_listen,
        service_host,
        data_dir,
        database_url,
        docker_host,
        engine_name,
        cluster,
        publish_host_ip,
        policy,
        resync_interval,
        orphan_grace,
        retention,
        exec_output_limit,
        max_file_size,
        log,
        log_format,
        shutdown_grace,
        auth,
        audit_log,
        url_signing_key_file,
        open_metrics,
        isolate_sandboxes,
        host_guard,
        rate_limit,
        gateway_anonymous,
        tls,
        default_quota,
        config_file: file.map(|file| file.path.clone()),
    })
}

const IP_HINT: &str = "must be an IP address such as 127.0.0.1 or 0.0.0.0";

fn resolve_listen(layers: &Layers<'_>) -> Result<String, ConfigError> {
    let raw = layers.get("listen", "127.0.0.1:8080");
    let listen = raw.text()?;
    check_listen(&listen).map_err(|message| raw.invalid(message))?;
    Ok(listen)
}

/// `None` when the value is empty: no MCP gateway.
fn resolve_gateway_listen(layers: &Layers<'_>) -> Result<Option<String>, ConfigError> {
    let raw = layers.get("gateway_listen", "127.0.0.1:8081");
    let gateway_listen = Some(raw.text()?.trim().to_owned()).filter(|address| !address.is_empty());
    if let Some(address) = &gateway_listen {
        check_listen(address).map_err(|message| raw.invalid(message))?;
    }
    Ok(gateway_listen)
}

fn resolve_service_host(layers: &Layers<'_>) -> Result<IpAddr, ConfigError> {
    let raw = layers.get("service_host", "127.0.0.1");
    raw.text()?.trim().parse::<IpAddr>().map_err(|_| raw.invalid(IP_HINT))
}

/// The given directory, else the XDG default (see [`default_data_dir`]).
fn resolve_data_dir(layers: &Layers<'_>, env: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, ConfigError> {
    let Some(raw) = layers.given("data_dir") else {
        return Ok(default_data_dir(env));
    };
    let text = raw.text()?;
    if text.trim().is_empty() {
        return Err(raw.invalid("must not be empty"));
    }
    Ok(PathBuf::from(text))
}

/// A PostgreSQL URL, or `None` (also for an empty value) for SQLite in the data directory.
fn resolve_database_url(layers: &Layers<'_>) -> Result<Option<String>, ConfigError> {
    let Some(raw) = layers.given("database_url") else {
        return Ok(None);
    };
    let url = raw.text()?;
    let url = url.trim();
    if url.is_empty() {
        return Ok(None);
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Some(url.to_owned()));
    }
    // Never echo the value: it may hold a password.
    Err(ConfigError::Invalid {
        key: raw.key,
        value: "(hidden)".to_owned(),
        source_desc: describe(raw.key, &raw.origin),
        message: "must be a postgres:// or postgresql:// URL (or empty for SQLite in the data directory)".to_owned(),
    })
}

/// `None` (also for an empty value): the Docker runtime reads `DOCKER_HOST` itself.
fn resolve_docker_host(layers: &Layers<'_>) -> Result<Option<String>, ConfigError> {
    match layers.given("docker_host") {
        Some(raw) => Ok(Some(raw.text()?).filter(|host| !host.trim().is_empty())),
        None => Ok(None),
    }
}

fn resolve_engine_name(layers: &Layers<'_>) -> Result<String, ConfigError> {
    let raw = layers.get("engine_name", "local");
    let engine_name = raw.text()?;
    check_name(&engine_name).map_err(|message| raw.invalid(message))?;
    Ok(engine_name)
}

/// `None`: the id kept in the data directory, generated at the first start.
fn resolve_cluster(layers: &Layers<'_>) -> Result<Option<String>, ConfigError> {
    let Some(raw) = layers.given("cluster") else {
        return Ok(None);
    };
    let cluster = raw.text()?;
    check_name(&cluster).map_err(|message| raw.invalid(message))?;
    Ok(Some(cluster))
}

/// Kept as text (the runtime takes it so), but checked to be an IP address.
fn resolve_publish_host_ip(layers: &Layers<'_>) -> Result<String, ConfigError> {
    let raw = layers.get("publish_host_ip", "127.0.0.1");
    let publish_host_ip = raw.text()?;
    publish_host_ip.parse::<IpAddr>().map_err(|_| raw.invalid(IP_HINT))?;
    Ok(publish_host_ip)
}

/// The limits and defaults of a sandbox's spec, each default within its maximum.
fn resolve_policy(layers: &Layers<'_>) -> Result<SpecPolicy, ConfigError> {
    let default_cpu = layers.get("default_cpu", "1");
    let max_cpu = layers.get("max_cpu", "16");
    let default_memory = layers.get("default_memory", "512Mi");
    let max_memory = layers.get("max_memory", "64Gi");
    let default_ttl = layers.get("default_ttl", "30m");
    let max_ttl = layers.get("max_ttl", "168h");
    let policy = SpecPolicy {
        default_cpu_millis: default_cpu.parse(units::parse_cpu_millis)?,
        default_memory_bytes: default_memory.parse(units::parse_memory_bytes)?,
        default_ttl: default_ttl.parse(units::parse_duration)?,
        max_cpu_millis: max_cpu.parse(units::parse_cpu_millis)?,
        max_memory_bytes: max_memory.parse(units::parse_memory_bytes)?,
        max_ttl: max_ttl.parse(units::parse_duration)?,
        max_lifetime: layers
            .given("max_lifetime")
            .map(|raw| raw.parse(parse_lifetime))
            .transpose()?,
        pids_limit: layers.get("pids_limit", "1024").parse(parse_pids_limit)?,
        max_labels: layers.get("max_labels", "64").parse(parse_max_labels)?,
        max_spec_bytes: layers.get("max_spec_size", "256Ki").parse(units::parse_memory_bytes)?,
        default_egress: resolve_default_egress(layers)?,
    };
    check_within_maximum(policy.default_cpu_millis, policy.max_cpu_millis, &default_cpu, &max_cpu)?;
    check_within_maximum(
        policy.default_memory_bytes,
        policy.max_memory_bytes,
        &default_memory,
        &max_memory,
    )?;
    check_within_maximum(policy.default_ttl, policy.max_ttl, &default_ttl, &max_ttl)?;
    Ok(policy)
}

/// A default above its maximum would make every request that leaves the field out invalid.
fn check_within_maximum<T: PartialOrd>(
    default: T,
    max: T,
    default_raw: &Raw,
    max_raw: &Raw,
) -> Result<(), ConfigError> {
    if default > max {
        return Err(default_raw.invalid(format!(
            "is more than the maximum, {}; raise it or lower the default",
            max_raw.describe()
        )));
    }
    Ok(())
}

fn parse_lifetime(value: &NumberOrString) -> Result<Duration, String> {
    match units::parse_duration(value)? {
        limit if limit.is_zero() => Err("must be longer than zero: leave it unset for no limit".into()),
        limit => Ok(limit),
    }
}

fn parse_max_labels(value: &NumberOrString) -> Result<usize, String> {
    let count = parse_pids_limit(value).map_err(|_| "must be a whole number of labels, at least 1".to_owned())?;
    usize::try_from(count).map_err(|_| "is too large for this machine".to_owned())
}

/// `keys` (the default), or `none` — refused unless the API listens on loopback only, since
/// without keys anyone who reaches the port owns every sandbox.
fn resolve_auth(layers: &Layers<'_>, listen: &str) -> Result<AuthSetting, ConfigError> {
    let raw = layers.get("auth", "keys");
    match raw.text()?.as_str() {
        "keys" => Ok(AuthSetting::Keys),
        "none" => {
            let loopback = listen
                .parse::<std::net::SocketAddr>()
                .is_ok_and(|address| address.ip().is_loopback())
                || listen.starts_with("localhost:");
            if loopback {
                Ok(AuthSetting::None)
            } else {
                Err(raw.invalid(format!(
                    "`none` is refused while the API listens on {listen}, beyond loopback: anyone reaching it \
                     would own every sandbox; listen on 127.0.0.1 or keep `keys`"
                )))
            }
        }
        _ => Err(raw.invalid("must be `keys` or `none`")),
    }
}

fn resolve_open_metrics(layers: &Layers<'_>) -> Result<bool, ConfigError> {
    let raw = layers.get("metrics_auth", "open");
    match raw.text()?.as_str() {
        "open" => Ok(true),
        "key" => Ok(false),
        _ => Err(raw.invalid("must be `open` or `key`")),
    }
}

fn resolve_isolate_sandboxes(layers: &Layers<'_>) -> Result<bool, ConfigError> {
    let raw = layers.get("sandbox_network", "engine");
    match raw.text()?.as_str() {
        "engine" => Ok(false),
        "isolated" => Ok(true),
        _ => Err(raw.invalid("must be `engine` or `isolated`")),
    }
}

/// `--host-guard`, `--private-ranges` and `--host-guard-nft`, as the engine runtime takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostGuardSetting {
    pub mode: GuardModeSetting,
    pub private_ranges: Vec<berth_core::Cidr>,
    pub nft: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardModeSetting {
    Off,
    Auto,
    Required,
}

fn resolve_host_guard(layers: &Layers<'_>) -> Result<HostGuardSetting, ConfigError> {
    let raw = layers.get("host_guard", "auto");
    let mode = match raw.text()?.as_str() {
        "auto" => GuardModeSetting::Auto,
        "required" => GuardModeSetting::Required,
        "off" => GuardModeSetting::Off,
        _ => return Err(raw.invalid("must be `auto`, `required` or `off`")),
    };
    let default_ranges = berth_core::Cidr::DEFAULT_PRIVATE.join(",");
    let raw = layers.get("private_ranges", &default_ranges);
    let text = raw.text()?;
    let private_ranges = if text.trim() == "none" {
        Vec::new()
    } else {
        text.split(',')
            .filter(|range| !range.trim().is_empty())
            .map(|range| range.parse::<berth_core::Cidr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|message| raw.invalid(format!("{message} (or `none` for no private range)")))?
    };
    let nft = layers
        .given("host_guard_nft")
        .map(|raw| raw.text())
        .transpose()?
        .filter(|path| !path.trim().is_empty())
        .map(PathBuf::from);
    Ok(HostGuardSetting {
        mode,
        private_ranges,
        nft,
    })
}

fn resolve_default_egress(layers: &Layers<'_>) -> Result<Egress, ConfigError> {
    let raw = layers.get("default_egress", "allow");
    raw.text()?
        .parse()
        .map_err(|_| raw.invalid("must be `allow` or `deny`"))
}

/// Both files or neither: one without the other is a mistake, not plain HTTP.
fn resolve_tls(layers: &Layers<'_>) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
    let path = |key: &'static str| -> Result<Option<(PathBuf, Raw)>, ConfigError> {
        let Some(raw) = layers.given(key) else {
            return Ok(None);
        };
        let text = raw.text()?;
        Ok((!text.trim().is_empty()).then(|| (PathBuf::from(text.trim()), raw)))
    };
    match (path("tls_cert")?, path("tls_key")?) {
        (None, None) => Ok(None),
        (Some((cert, _)), Some((key, _))) => Ok(Some((cert, key))),
        (Some((_, raw)), None) => Err(raw.invalid("needs --tls-key (BERTH_TLS_KEY, tls_key) beside it")),
        (None, Some((_, raw))) => Err(raw.invalid("needs --tls-cert (BERTH_TLS_CERT, tls_cert) beside it")),
    }
}

fn resolve_gateway_anonymous(layers: &Layers<'_>) -> Result<Option<bool>, ConfigError> {
    let raw = layers.get("gateway_anonymous", "loopback");
    match raw.text()?.as_str() {
        "loopback" => Ok(None),
        "always" => Ok(Some(true)),
        "never" => Ok(Some(false)),
        _ => Err(raw.invalid("must be `loopback`, `always` or `never`")),
    }
}

fn resolve_rate_limit(layers: &Layers<'_>) -> Result<Option<u32>, ConfigError> {
    let Some(raw) = layers.given("rate_limit") else {
        return Ok(None);
    };
    let per_second = raw.parse(|value| {
        let count = parse_pids_limit(value).map_err(|_| "must be a whole number of requests per second".to_owned())?;
        u32::try_from(count).map_err(|_| "is too large".to_owned())
    })?;
    Ok((per_second > 0).then_some(per_second))
}

fn resolve_default_quota(layers: &Layers<'_>) -> Result<berth_core::Quota, ConfigError> {
    let sandboxes = layers
        .given("default_quota_sandboxes")
        .map(|raw| {
            raw.parse(|value| {
                let count = parse_pids_limit(value).map_err(|_| "must be a whole number of sandboxes".to_owned())?;
                u64::try_from(count).map_err(|_| "must be a whole number of sandboxes".to_owned())
            })
        })
        .transpose()?;
    let cpu_millis = layers
        .given("default_quota_cpu")
        .map(|raw| raw.parse(units::parse_cpu_millis))
        .transpose()?;
    let memory_bytes = layers
        .given("default_quota_memory")
        .map(|raw| raw.parse(units::parse_memory_bytes))
        .transpose()?;
    Ok(berth_core::Quota {
        sandboxes,
        cpu_millis,
        memory_bytes,
    })
}

fn resolve_exec_output_limit(layers: &Layers<'_>) -> Result<usize, ConfigError> {
    layers.get("exec_output_limit", "1Mi").parse(|value| {
        let bytes = units::parse_memory_bytes(value)?;
        usize::try_from(bytes).map_err(|_| "is too large for this machine".to_owned())
    })
}

/// A `RUST_LOG`-style filter, checked now so a typo is a settings error, not silence.
fn resolve_log(layers: &Layers<'_>) -> Result<String, ConfigError> {
    let raw = layers.get("log", "info");
    let log = raw.text()?;
    tracing_subscriber::EnvFilter::try_new(&log).map_err(|error| {
        raw.invalid(format!(
            "{error}; use RUST_LOG syntax such as `info,berth_server=debug`"
        ))
    })?;
    Ok(log)
}

fn resolve_log_format(layers: &Layers<'_>) -> Result<LogFormat, ConfigError> {
    let raw = layers.get("log_format", "text");
    match raw.text()?.as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(raw.invalid("must be `text` or `json`")),
    }
}

/// Processes sharing one database must agree on the deployment they manage; a generated id
/// would differ per data directory.
fn check_shared_database_names_its_cluster(
    database_url: Option<&str>,
    cluster: Option<&str>,
) -> Result<(), ConfigError> {
    if database_url.is_some() && cluster.is_none() {
        return Err(ConfigError::ClusterNeeded);
    }
    Ok(())
}

/// `host:port` or `[v6]:port`, with a numeric port.
fn check_listen(listen: &str) -> Result<(), String> {
    const HINT: &str = "use host:port such as 127.0.0.1:8080, or port 0 for any free port";
    if listen.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = listen.rsplit_once(':').ok_or_else(|| format!("has no port; {HINT}"))?;
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("has no host; {HINT}"));
    }
    port.parse::<u16>()
        .map(drop)
        .map_err(|_| format!("`{port}` is not a port; {HINT}"))
}

/// A name that is also a valid label value: 1-63 of letters, digits, `-`, `_`, `.`, starting
/// and ending with a letter or digit.
fn check_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    let edges_ok =
        name.starts_with(|c: char| c.is_ascii_alphanumeric()) && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if name.len() > 63 || !edges_ok || !name.chars().all(allowed) {
        return Err("use 1-63 letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit".to_owned());
    }
    Ok(())
}

fn parse_pids_limit(input: &NumberOrString) -> Result<i64, String> {
    const HINT: &str = "must be a whole number of processes, at least 1";
    let value = match input {
        NumberOrString::String(text) => text.trim().parse::<i64>().map_err(|_| HINT.to_owned())?,
        NumberOrString::Number(number) if number.fract() == 0.0 && number.abs() < 1e15 => *number as i64,
        NumberOrString::Number(_) => return Err(HINT.to_owned()),
    };
    if value < 1 {
        return Err(HINT.to_owned());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches, Parser};

    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn file(text: &str) -> LoadedFile {
        parse_file(Path::new("/etc/berth.toml"), text).unwrap()
    }

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    /// Serve flags parsed by clap, with no `BERTH_*` variable consulted for the tested flags.
    fn flags(args: &[&str]) -> (ServeArgs, ArgMatches) {
        let matches = TestCli::command()
            .try_get_matches_from(std::iter::once("berth").chain(args.iter().copied()))
            .unwrap();
        let cli = TestCli::from_arg_matches(&matches).unwrap();
        (cli.serve, matches)
    }

    #[test]
    fn pids_limits_are_positive_whole_numbers() {
        assert_eq!(parse_pids_limit(&NumberOrString::String("64".into())), Ok(64));
        assert_eq!(parse_pids_limit(&NumberOrString::Number(64.0)), Ok(64));
        for bad in [
            NumberOrString::String("0".into()),
            NumberOrString::String("x".into()),
            NumberOrString::Number(1.5),
        ] {
            assert!(parse_pids_limit(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn listen_addresses_need_a_host_and_port() {
        for good in ["127.0.0.1:8080", "[::1]:0", "localhost:9000", "0.0.0.0:80"] {
            assert_eq!(check_listen(good), Ok(()), "{good}");
        }
        for bad in ["8080", ":8080", "localhost", "host:http", "host:70000"] {
            assert!(check_listen(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_label_values() {
        for good in ["local", "ci-7", "a", "A.b_c"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in ["", "-a", "a-", "a b", "a/b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn data_dir_defaults_follow_xdg_then_home() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            }
        };
        assert_eq!(
            default_data_dir(&env(&[("XDG_DATA_HOME", "/xdg"), ("HOME", "/home/a")])),
            PathBuf::from("/xdg/berth")
        );
        assert_eq!(
            default_data_dir(&env(&[("XDG_DATA_HOME", ""), ("HOME", "/home/a")])),
            PathBuf::from("/home/a/.local/share/berth")
        );
        assert_eq!(
            default_data_dir(&env(&[("XDG_DATA_HOME", "relative"), ("HOME", "/home/a")])),
            PathBuf::from("/home/a/.local/share/berth"),
            "XDG paths must be absolute"
        );
        assert_eq!(default_data_dir(&env(&[])), PathBuf::from("./berth-data"));
    }

    #[test]
    fn clap_tells_flags_from_env() {
        let (args, matches) = flags(&["--listen", "0.0.0.0:9000", "--max-ttl", "2h"]);
        let layer = CliLayer::from_args(&args, Some(&matches));
        assert_eq!(
            layer,
            CliLayer::default()
                .with("listen", "0.0.0.0:9000", Origin::Flag)
                .with("max_ttl", "2h", Origin::Flag)
        );
    }

    #[test]
    fn file_errors_name_the_file_and_line_on_one_line() {
        let error = parse_file(Path::new("b.toml"), "listen = \"x:1\"\nlisten_addr = 3\n").unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("config file b.toml: line 2: unknown field `listen_addr`"),
            "{text}"
        );
        assert!(!text.contains('\n'), "{text}");
        let error = parse_file(Path::new("b.toml"), "listen = 8080\n").unwrap_err();
        assert!(
            error.to_string().contains("line 1: invalid type: integer `8080`"),
            "{error}"
        );
    }

    #[test]
    fn a_missing_explicit_file_is_an_error_naming_its_source() {
        let path = Path::new("/nonexistent/berth-test/berth.toml");
        let error = load_file(Some((path, Origin::Env))).unwrap_err();
        assert_eq!(
            error.to_string(),
            "config file /nonexistent/berth-test/berth.toml (from env BERTH_CONFIG) does not exist"
        );
        let error = load_file(Some((path, Origin::Flag))).unwrap_err();
        assert!(error.to_string().contains("(from flag --config)"), "{error}");
    }

    #[test]
    fn an_explicit_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("custom.toml");
        std::fs::write(&path, "engine_name = \"edge\"\npids_limit = 99\n").unwrap();
        let loaded = load_file(Some((&path, Origin::Flag))).unwrap().unwrap();
        assert_eq!(loaded.settings.engine_name.as_deref(), Some("edge"));
        assert_eq!(loaded.settings.pids_limit, Some(NumberOrString::Number(99.0)));
    }

    #[test]
    fn a_database_url_is_postgres_needs_a_cluster_and_is_never_echoed() {
        let url = "postgres://berth:s3cret@db:5432/berth";
        let cli = CliLayer::default()
            .with("database_url", url, Origin::Env)
            .with("cluster", "prod", Origin::Flag);
        let config = resolve(&cli, None, &no_env).unwrap();
        assert_eq!(config.database_url.as_deref(), Some(url));

        let error = resolve(
            &CliLayer::default().with("database_url", url, Origin::Env),
            None,
            &no_env,
        )
        .unwrap_err();
        assert_eq!(error, ConfigError::ClusterNeeded);
        assert!(error.to_string().contains("--cluster"), "{error}");

        let bad = CliLayer::default()
            .with("database_url", "mysql://root:s3cret@db/berth", Origin::Env)
            .with("cluster", "prod", Origin::Flag);
        let error = resolve(&bad, None, &no_env).unwrap_err().to_string();
        assert!(
            error.contains("postgres://") && error.contains("BERTH_DATABASE_URL"),
            "{error}"
        );
        assert!(!error.contains("s3cret"), "the password leaked: {error}");

        let empty = CliLayer::default().with("database_url", "", Origin::Env);
        assert_eq!(
            resolve(&empty, None, &no_env).unwrap().database_url,
            None,
            "empty means SQLite"
        );
    }

    #[test]
    fn the_default_egress_is_allow_unless_set_and_a_bad_one_names_the_setting() {
        let config = resolve(&CliLayer::default(), None, &no_env).unwrap();
        assert_eq!(config.policy.default_egress, Egress::Allow);
        let sealed = CliLayer::default().with("default_egress", "deny", Origin::Flag);
        assert_eq!(
            resolve(&sealed, None, &no_env).unwrap().policy.default_egress,
            Egress::Deny
        );
        let bad = CliLayer::default().with("default_egress", "closed", Origin::Env);
        let error = resolve(&bad, None, &no_env).unwrap_err().to_string();
        assert!(
            error.contains("BERTH_DEFAULT_EGRESS") && error.contains("`deny`"),
            "{error}"
        );
    }

    #[test]
    fn text_settings_follow_flag_env_file_default() {
        let file = file(
            "listen = \"10.0.0.1:1\"\nengine_name = \"from-file\"\ncluster = \"ci-7\"\n\
             docker_host = \"tcp://file:2375\"\npublish_host_ip = \"0.0.0.0\"\n",
        );
        let cli = CliLayer::default()
            .with("listen", "10.0.0.2:2", Origin::Flag)
            .with("engine_name", "from-env", Origin::Env)
            .with("data_dir", "/srv/berth", Origin::Env);
        let config = resolve(&cli, Some(&file), &no_env).unwrap();
        assert_eq!(config.listen, "10.0.0.2:2");
        assert_eq!(config.engine_name, "from-env");
        assert_eq!(config.cluster.as_deref(), Some("ci-7"));
        assert_eq!(config.docker_host.as_deref(), Some("tcp://file:2375"));
        assert_eq!(config.publish_host_ip, "0.0.0.0");
        assert_eq!(config.data_dir, PathBuf::from("/srv/berth"));
        assert_eq!(config.config_file, Some(PathBuf::from("/etc/berth.toml")));

        let config = resolve(&CliLayer::default(), None, &|name| {
            (name == "HOME").then(|| "/home/u".to_owned())
        })
        .unwrap();
        assert_eq!(config.listen, "127.0.0.1:8080");
        assert_eq!(config.engine_name, "local");
        assert_eq!(config.cluster, None, "generated in the data directory at start");
        assert_eq!(config.docker_host, None);
        assert_eq!(config.publish_host_ip, "127.0.0.1");
        assert_eq!(config.data_dir, PathBuf::from("/home/u/.local/share/berth"));
        assert_eq!(config.log, "info");
        assert_eq!(config.config_file, None);
    }

    #[test]
    fn the_service_host_follows_flag_env_file_default_and_must_be_an_ip() {
        let host = |cli: &CliLayer, file_text: Option<&str>| {
            let file = file_text.map(file);
            resolve(cli, file.as_ref(), &no_env).map(|config| config.service_host.to_string())
        };
        let from_file = "service_host = \"10.0.0.1\"\n";
        assert_eq!(host(&CliLayer::default(), None), Ok("127.0.0.1".into()));
        assert_eq!(host(&CliLayer::default(), Some(from_file)), Ok("10.0.0.1".into()));
        let env = CliLayer::default().with("service_host", "0.0.0.0", Origin::Env);
        assert_eq!(host(&env, Some(from_file)), Ok("0.0.0.0".into()));
        let flag = env.with("service_host", "::1", Origin::Flag);
        assert_eq!(host(&flag, Some(from_file)), Ok("::1".into()));
        let bad = CliLayer::default().with("service_host", "berth.example", Origin::Flag);
        assert!(matches!(
            host(&bad, None),
            Err(ConfigError::Invalid {
                key: "service_host",
                ..
            })
        ));
    }

    #[test]
    fn the_gateway_address_follows_flag_env_file_default_and_empty_disables_it() {
        let gateway = |cli: &CliLayer, file_text: Option<&str>| {
            let file = file_text.map(file);
            resolve(cli, file.as_ref(), &no_env).map(|config| config.gateway_listen)
        };
        let from_file = "gateway_listen = \"10.0.0.1:9081\"\n";
        assert_eq!(gateway(&CliLayer::default(), None), Ok(Some("127.0.0.1:8081".into())));
        assert_eq!(
            gateway(&CliLayer::default(), Some(from_file)),
            Ok(Some("10.0.0.1:9081".into()))
        );
        let env = CliLayer::default().with("gateway_listen", "0.0.0.0:8081", Origin::Env);
        assert_eq!(gateway(&env, Some(from_file)), Ok(Some("0.0.0.0:8081".into())));
        let flag = env.with("gateway_listen", "127.0.0.1:0", Origin::Flag);
        assert_eq!(gateway(&flag, Some(from_file)), Ok(Some("127.0.0.1:0".into())));
        let disabled = CliLayer::default().with("gateway_listen", "", Origin::Flag);
        assert_eq!(gateway(&disabled, Some(from_file)), Ok(None));
        assert_eq!(gateway(&CliLayer::default(), Some("gateway_listen = \"\"\n")), Ok(None));
        let bad = CliLayer::default().with("gateway_listen", "8081", Origin::Flag);
        assert!(matches!(
            gateway(&bad, None),
            Err(ConfigError::Invalid {
                key: "gateway_listen",
                ..
            })
        ));
    }

    // The tests below go through berth-core's unit parsers.

    #[test]
    fn defaults_give_the_documented_policy() {
        let config = resolve(&CliLayer::default(), None, &no_env).unwrap();
        assert_eq!(config.policy, SpecPolicy::default());
        assert_eq!(config.resync_interval, Duration::from_secs(30));
        assert_eq!(config.orphan_grace, Duration::from_secs(60));
        assert_eq!(config.retention, Duration::from_secs(24 * 3600));
        assert_eq!(config.exec_output_limit, 1024 * 1024);
        assert_eq!(config.max_file_size, 4 * units::GIB);
    }

    #[test]
    fn transfer_limits_follow_flag_env_file_default() {
        let file = file("exec_output_limit = \"64Ki\"\nmax_file_size = 1048576\n");
        let config = resolve(&CliLayer::default(), Some(&file), &no_env).unwrap();
        assert_eq!(config.exec_output_limit, 64 * 1024);
        assert_eq!(config.max_file_size, units::MIB);
        let cli = CliLayer::default().with("exec_output_limit", "2Mi", Origin::Env).with(
            "max_file_size",
            "10Gi",
            Origin::Flag,
        );
        let config = resolve(&cli, Some(&file), &no_env).unwrap();
        assert_eq!(config.exec_output_limit, 2 * 1024 * 1024);
        assert_eq!(config.max_file_size, 10 * units::GIB);

        let (args, matches) = flags(&["--exec-output-limit", "3Mi", "--max-file-size", "1Gi"]);
        let layer = CliLayer::from_args(&args, Some(&matches));
        let config = resolve(&layer, None, &no_env).unwrap();
        assert_eq!(config.exec_output_limit, 3 * 1024 * 1024);
        assert_eq!(config.max_file_size, units::GIB);

        let cli = CliLayer::default().with("max_file_size", "huge", Origin::Env);
        let error = resolve(&cli, None, &no_env).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("invalid max_file_size `huge` (from env BERTH_MAX_FILE_SIZE): "),
            "{error}"
        );
        let cli = CliLayer::default().with("exec_output_limit", "0", Origin::Flag);
        assert!(matches!(
            resolve(&cli, None, &no_env),
            Err(ConfigError::Invalid {
                key: "exec_output_limit",
                ..
            })
        ));
    }

    #[test]
    fn quantities_follow_flag_env_file_default() {
        let file = file(
            "default_ttl = \"10m\"\nmax_ttl = 7200\ndefault_cpu = 0.5\nmax_memory = \"8Gi\"\npids_limit = 99\nretention = \"1h\"\n",
        );
        let cli = CliLayer::default()
            .with("default_ttl", "5m", Origin::Flag)
            .with("max_memory", "4Gi", Origin::Env)
            .with("orphan_grace", "2m", Origin::Env);
        let config = resolve(&cli, Some(&file), &no_env).unwrap();
        assert_eq!(config.policy.default_ttl, Duration::from_secs(300), "flag beats file");
        assert_eq!(config.policy.max_memory_bytes, 4 * units::GIB, "env beats file");
        assert_eq!(
            config.policy.max_ttl,
            Duration::from_secs(7200),
            "file number beats default"
        );
        assert_eq!(config.policy.default_cpu_millis, 500);
        assert_eq!(config.policy.pids_limit, 99);
        assert_eq!(config.policy.max_cpu_millis, 16_000, "default");
        assert_eq!(config.orphan_grace, Duration::from_secs(120));
        assert_eq!(config.retention, Duration::from_secs(3600));
    }

    #[test]
    fn bad_values_name_setting_value_and_source() {
        let cli = CliLayer::default().with("default_memory", "lots", Origin::Env);
        let error = resolve(&cli, None, &no_env).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("invalid default_memory `lots` (from env BERTH_DEFAULT_MEMORY): "),
            "{error}"
        );

        let cli = CliLayer::default().with("resync_interval", "soon", Origin::Flag);
        let error = resolve(&cli, None, &no_env).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("invalid resync_interval `soon` (from flag --resync-interval): "),
            "{error}"
        );

        let error = resolve(&CliLayer::default(), Some(&file("max_cpu = \"many\"\n")), &no_env).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("invalid max_cpu `many` (from /etc/berth.toml key max_cpu): "),
            "{error}"
        );

        let cli = CliLayer::default().with("publish_host_ip", "localhost", Origin::Flag);
        let error = resolve(&cli, None, &no_env).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid publish_host_ip `localhost` (from flag --publish-host-ip): must be an IP address such as 127.0.0.1 or 0.0.0.0"
        );

        let cli = CliLayer::default().with("log", "info,=[", Origin::Env);
        let error = resolve(&cli, None, &no_env).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("invalid log `info,=[` (from env BERTH_LOG): "),
            "{error}"
        );

        let cli = CliLayer::default().with("listen", "8080", Origin::Flag);
        assert!(matches!(
            resolve(&cli, None, &no_env),
            Err(ConfigError::Invalid { key: "listen", .. })
        ));
    }

    #[test]
    fn defaults_above_maxima_are_refused() {
        let cli = CliLayer::default().with("max_ttl", "10m", Origin::Flag);
        let error = resolve(&cli, None, &no_env).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid default_ttl `30m` (from default): is more than the maximum, max_ttl `10m` (from flag --max-ttl); raise it or lower the default"
        );
    }
}
