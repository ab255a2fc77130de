//! [`ServerConfig`]: the settings the control plane runs by (the binary fills them from flags,
//! environment and `berth.toml`).

use std::time::Duration;

use std::path::PathBuf;

use berth_core::{Quota, SpecPolicy};

/// The server's settings.
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
    /// Whether requests must carry an API key.
    pub auth: AuthMode,
    /// The quota of owners that have none of their own.
    pub default_quota: Quota,
    /// File every audit entry is appended to, besides the store.
    pub audit_log: Option<PathBuf>,
    /// Whether `/metrics` answers without a key.
    pub open_metrics: bool,
    /// Requests per second one key may make (a token bucket holding a second's worth);
    /// `None`: unlimited.
    pub rate_limit: Option<u32>,
    /// Whether the MCP gateway forwards requests that carry no key; `None`: only while it
    /// listens on loopback.
    pub gateway_anonymous: Option<bool>,
    /// Signs and checks presigned URLs (`--url-signing-key-file`; every process of a deployment
    /// must share it for one's URLs to work on another).
    pub presigner: crate::presign::Presigner,
}

/// Whether berth asks who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Every route but the probes and the OpenAPI document needs a valid API key.
    Keys,
    /// No key is asked for: every caller acts as an admin. Only for an API on loopback.
    None,
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
            auth: AuthMode::Keys,
            default_quota: Quota::default(),
            audit_log: None,
            open_metrics: true,
            rate_limit: None,
            gateway_anonymous: None,
            presigner: crate::presign::Presigner::random(),
        }
    }
}
