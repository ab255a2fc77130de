//! Readiness probes: what must answer inside a sandbox before it counts as `Running` — an HTTP
//! endpoint answering 2xx, or a TCP port accepting connections — and how long to wait for it.
//! The request form ([`ReadinessRequest`]), its validation, and the checked [`ReadinessProbe`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::field::{FieldError, NumberOrString};
use crate::units;

/// How long a probe may take to pass when the request names no `timeout`.
pub const DEFAULT_READINESS_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest `timeout` accepted: a sandbox stays `Creating` (and its create request open) that long.
pub const MAX_READINESS_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Longest `readiness.http.path`.
const MAX_PATH_LEN: usize = 2048;

/// The `readiness` of a create or template request: exactly one of `http` or `tcp`, and a `timeout`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReadinessRequest {
    /// Ready once `GET http://<sandbox ip>:<port><path>` answers with a 2xx status.
    pub http: Option<HttpProbeRequest>,
    /// Ready once `<sandbox ip>:<port>` accepts a TCP connection.
    pub tcp: Option<TcpProbeRequest>,
    /// How long the probe may take to pass before the sandbox fails with `readiness_timeout`:
    /// `"60s"` (the default), `"2m"` or seconds; 1s to 30m.
    pub timeout: Option<NumberOrString>,
}

/// An HTTP readiness check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HttpProbeRequest {
    /// The container port, 1-65535. Required.
    pub port: Option<u16>,
    /// The path (and query) to `GET`; `/` when omitted.
    pub path: Option<String>,
}

/// A TCP readiness check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TcpProbeRequest {
    /// The container port, 1-65535. Required.
    pub port: Option<u16>,
}

/// A checked readiness probe, part of a sandbox spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessProbe {
    pub check: ProbeCheck,
    #[serde(with = "crate::units::duration_secs")]
    pub timeout: Duration,
}

/// What a probe tries against the sandbox's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeCheck {
    Http { port: u16, path: String },
    Tcp { port: u16 },
}

impl ProbeCheck {
    /// The container port the probe connects to.
    pub fn port(&self) -> u16 {
        match self {
            ProbeCheck::Http { port, .. } | ProbeCheck::Tcp { port } => *port,
        }
    }
}

impl ReadinessRequest {
    /// Checks every field, collecting all errors (named `readiness.http.port`, `readiness.timeout`…).
    pub fn validate(&self) -> Result<ReadinessProbe, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut reject = |field: &str, message: String| {
            errors.push(FieldError {
                field: format!("readiness.{field}"),
                message,
            })
        };
        let check = match (&self.http, &self.tcp) {
            (Some(http), None) => {
                let port = checked_port(http.port, "http.port", &mut reject);
                let path = http.path.clone().unwrap_or_else(|| "/".to_owned());
                if let Err(message) = check_path(&path) {
                    reject("http.path", message);
                }
                port.map(|port| ProbeCheck::Http { port, path })
            }
            (None, Some(tcp)) => checked_port(tcp.port, "tcp.port", &mut reject).map(|port| ProbeCheck::Tcp { port }),
            (Some(_), Some(_)) => {
                reject("tcp", "give one check, `http` or `tcp`, not both".into());
                None
            }
            (None, None) => {
                reject(
                    "http",
                    "name a check: {\"http\": {\"port\": 8081, \"path\": \"/health\"}} or {\"tcp\": {\"port\": 5432}}"
                        .into(),
                );
                None
            }
        };
        let timeout = match &self.timeout {
            None => DEFAULT_READINESS_TIMEOUT,
            Some(input) => match units::parse_duration(input) {
                Ok(timeout) if (Duration::from_secs(1)..=MAX_READINESS_TIMEOUT).contains(&timeout) => timeout,
                Ok(_) => {
                    reject(
                        "timeout",
                        format!(
                            "`{input}` is out of range: use 1s to {}",
                            units::format_duration(MAX_READINESS_TIMEOUT)
                        ),
                    );
                    DEFAULT_READINESS_TIMEOUT
                }
                Err(message) => {
                    reject("timeout", message);
                    DEFAULT_READINESS_TIMEOUT
                }
            },
        };
        match check {
            Some(check) if errors.is_empty() => Ok(ReadinessProbe { check, timeout }),
            _ => Err(errors),
        }
    }
}

impl ReadinessProbe {
    /// The request form of this probe: what a create from a template inherits unless it sets its own.
    pub fn to_request(&self) -> ReadinessRequest {
        let timeout = Some(NumberOrString::String(units::format_duration(self.timeout)));
        match &self.check {
            ProbeCheck::Http { port, path } => ReadinessRequest {
                http: Some(HttpProbeRequest {
                    port: Some(*port),
                    path: Some(path.clone()),
                }),
                tcp: None,
                timeout,
            },
            ProbeCheck::Tcp { port } => ReadinessRequest {
                http: None,
                tcp: Some(TcpProbeRequest { port: Some(*port) }),
                timeout,
            },
        }
    }
}

fn checked_port(port: Option<u16>, field: &str, reject: &mut impl FnMut(&str, String)) -> Option<u16> {
    match port {
        Some(0) => {
            reject(field, "0 is not a port: use 1-65535".into());
            None
        }
        Some(port) => Some(port),
        None => {
            reject(field, "is required: the container port to probe, e.g. 8081".into());
            None
        }
    }
}

/// An origin-form request target: it goes on the request line as it is.
fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("`{path}` must start with `/`, e.g. /health"));
    }
    if path.len() > MAX_PATH_LEN || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "`{path}` must be at most {MAX_PATH_LEN} visible ASCII characters (percent-encode the rest)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> ReadinessRequest {
        serde_json::from_value(json).expect("a well-formed readiness request")
    }

    fn fields(json: serde_json::Value) -> Vec<String> {
        request(json)
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|error| error.field)
            .collect()
    }

    #[test]
    fn an_http_probe_defaults_its_path_and_timeout() {
        let probe = request(serde_json::json!({"http": {"port": 8081}})).validate().unwrap();
        assert_eq!(
            probe,
            ReadinessProbe {
                check: ProbeCheck::Http {
                    port: 8081,
                    path: "/".into()
                },
                timeout: DEFAULT_READINESS_TIMEOUT,
            }
        );
        let tcp = request(serde_json::json!({"tcp": {"port": 5432}, "timeout": "5s"}))
            .validate()
            .unwrap();
        assert_eq!(tcp.check, ProbeCheck::Tcp { port: 5432 });
        assert_eq!(tcp.timeout, Duration::from_secs(5));
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(fields(serde_json::json!({})), ["readiness.http"]);
        assert_eq!(
            fields(serde_json::json!({"http": {"port": 1}, "tcp": {"port": 2}})),
            ["readiness.tcp"]
        );
        assert_eq!(
            fields(serde_json::json!({"http": {"path": "health"}, "timeout": "0s"})),
            ["readiness.http.port", "readiness.http.path", "readiness.timeout"]
        );
        assert_eq!(fields(serde_json::json!({"tcp": {"port": 0}})), ["readiness.tcp.port"]);
        assert_eq!(
            fields(serde_json::json!({"tcp": {"port": 1}, "timeout": "2h"})),
            ["readiness.timeout"]
        );
        assert_eq!(
            fields(serde_json::json!({"http": {"port": 1, "path": "/a b"}})),
            ["readiness.http.path"]
        );
    }

    #[test]
    fn a_probe_round_trips_through_its_request_form() {
        for json in [
            serde_json::json!({"http": {"port": 8081, "path": "/health?deep=1"}, "timeout": "90s"}),
            serde_json::json!({"tcp": {"port": 5432}}),
        ] {
            let probe = request(json).validate().unwrap();
            assert_eq!(probe.to_request().validate().unwrap(), probe);
        }
    }

    #[test]
    fn the_stored_form_is_stable() {
        let probe = request(serde_json::json!({"http": {"port": 8081, "path": "/health"}}))
            .validate()
            .unwrap();
        let stored = serde_json::to_value(&probe).unwrap();
        assert_eq!(
            stored,
            serde_json::json!({"check": {"http": {"port": 8081, "path": "/health"}}, "timeout": 60.0})
        );
        assert_eq!(serde_json::from_value::<ReadinessProbe>(stored).unwrap(), probe);
    }
}
