//! Templates: a named, tagged sandbox spec that creates refer to instead of repeating it, with an
//! optional warm pool of ready sandboxes. The request form, its validation, and the record.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::field::{FieldError, NumberOrString, ValidationErrors};
use crate::spec::{SandboxRequest, SandboxSpec, SpecPolicy};
use crate::units;

/// The tag of a template named without one.
pub const DEFAULT_TAG: &str = "latest";
/// Most ready sandboxes one pool may keep.
pub const MAX_POOL_SIZE: u32 = 256;
/// How long an idle pooled sandbox is kept before it is replaced by a fresh one, by default.
pub const DEFAULT_MAX_IDLE_AGE: Duration = Duration::from_secs(3600);

/// `name` or `name:tag`, as a create's `template` field names a template.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TemplateRef {
    pub name: String,
    pub tag: String,
}

impl TemplateRef {
    /// Parses `name` (tag `latest`) or `name:tag`; the message says what a valid reference is.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, tag) = match text.split_once(':') {
            Some((name, tag)) => (name, tag),
            None => (text, DEFAULT_TAG),
        };
        validate_name(name).map_err(|message| format!("`{text}`: the name {message}"))?;
        validate_tag(tag).map_err(|message| format!("`{text}`: the tag {message}"))?;
        Ok(TemplateRef {
            name: name.to_owned(),
            tag: tag.to_owned(),
        })
    }
}

impl std::fmt::Display for TemplateRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

/// A warm pool: how many ready sandboxes to keep, and how long one may wait for a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSpec {
    pub min_ready: u32,
    #[serde(with = "crate::units::duration_secs")]
    pub max_idle_age: Duration,
}

/// A stored template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub name: String,
    pub tag: String,
    /// What each sandbox made from it runs; its `ttl` is the default time to live of a create.
    pub spec: SandboxSpec,
    pub pool: Option<PoolSpec>,
    /// Why the template cannot provide sandboxes right now (its image is missing, say), set by the
    /// pool when it fails to fill and cleared once it succeeds.
    #[serde(default)]
    pub error: Option<String>,
    /// The AEnvironment Env document this template was registered from (`POST /env/`), kept
    /// as given so the registry surface returns it whole; `None` for native templates.
    #[serde(default)]
    pub env_document: Option<serde_json::Value>,
    /// The snapshot its sandboxes start from, when it was made from one: its spec is that
    /// snapshot's sandbox's spec under the request's fields, its image the snapshot's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Template {
    pub fn reference(&self) -> TemplateRef {
        TemplateRef {
            name: self.name.clone(),
            tag: self.tag.clone(),
        }
    }
}

/// The body of `POST /v1/templates` and `PUT /v1/templates/{name}`: a sandbox spec plus a name,
/// a tag and a pool.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TemplateRequest {
    /// Lowercase letters, digits and `-`, 1-63 characters, e.g. `python-3-12`.
    pub name: Option<String>,
    /// `latest` when omitted. Letters, digits, `.`, `_` and `-`, up to 128 characters.
    pub tag: Option<String>,
    pub image: Option<String>,
    /// A snapshot (`GET /v1/snapshots`) its sandboxes start from, pooled ones too: the
    /// snapshot's sandbox's spec with this request's fields laid over it. Leave `image` out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub ports: Vec<u16>,
    pub cpu: Option<NumberOrString>,
    pub memory: Option<NumberOrString>,
    /// Most a sandbox of the template may write to its filesystem (as a sandbox's `disk`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<NumberOrString>,
    /// Default time to live of a sandbox created from it (counted from its create or claim).
    pub ttl: Option<NumberOrString>,
    /// The longest a sandbox made from it may live, renewals included (as a sandbox's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lifetime: Option<NumberOrString>,
    /// Paused after this long without a request that needs it (as a sandbox's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<NumberOrString>,
    /// Stopped, its filesystem kept, after sleeping this long (as a sandbox's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hibernate_after: Option<NumberOrString>,
    /// Whether time asleep counts against the TTL (as a sandbox's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_counts_idle: Option<bool>,
    pub pool: Option<PoolRequest>,
    /// A check every sandbox made from it must pass before it is `Running` (pooled ones too).
    pub readiness: Option<crate::readiness::ReadinessRequest>,
    /// The OCI runtime its sandboxes run under (pooled ones too); the engine's default when
    /// omitted.
    pub runtime: Option<String>,
    /// Opt-in confinement of its sandboxes: a read-only root filesystem, no capabilities.
    pub hardening: Option<crate::hardening::Hardening>,
    /// The egress policy of its sandboxes (pooled ones too), as a sandbox's `network`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::network::NetworkRequest>,
    /// Whether its sandboxes' failed main processes are restarted, as a sandbox's `restart`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub restart: Option<serde_json::Value>,
}

/// The `pool` of a template request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PoolRequest {
    /// Ready sandboxes to keep, 0-256.
    pub min_ready: Option<u32>,
    /// Replace an idle sandbox after this long: `"1h"`, `"30m"` or seconds. Default 1h.
    pub max_idle_age: Option<NumberOrString>,
}

impl TemplateRequest {
    /// The sandbox request this template's spec is validated as.
    pub fn sandbox_request(&self) -> SandboxRequest {
        SandboxRequest {
            image: self.image.clone(),
            command: self.command.clone(),
            env: self.env.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            labels: self.labels.clone(),
            ports: self.ports.clone(),
            cpu: self.cpu.clone(),
            memory: self.memory.clone(),
            disk: self.disk.clone(),
            ttl: self.ttl.clone(),
            max_lifetime: self.max_lifetime.clone(),
            idle_timeout: self.idle_timeout.clone(),
            hibernate_after: self.hibernate_after.clone(),
            ttl_counts_idle: self.ttl_counts_idle,
            readiness: self.readiness.clone(),
            runtime: self.runtime.clone(),
            hardening: self.hardening,
            network: self.network.clone(),
            restart: self.restart.clone(),
            ..SandboxRequest::default()
        }
    }

    /// Checks every field, collecting all errors; `name_in_path` is the name a `PUT` addresses
    /// (the body may then omit it, or must repeat it exactly).
    pub fn validate(
        &self,
        policy: &SpecPolicy,
        name_in_path: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Template, ValidationErrors> {
        self.validate_with_spec(self.sandbox_request(), policy, name_in_path, now)
    }

    /// As [`validate`](Self::validate), the spec validated from `spec_request` (this request's
    /// fields laid over a snapshot's spec, say) rather than from this request alone.
    pub fn validate_with_spec(
        &self,
        spec_request: SandboxRequest,
        policy: &SpecPolicy,
        name_in_path: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Template, ValidationErrors> {
        let mut errors = Vec::new();
        let mut reject = |field: &str, message: String| {
            errors.push(FieldError {
                field: field.to_owned(),
                message,
            })
        };
        let name = match (self.name.as_deref(), name_in_path) {
            (Some(body), Some(path)) if body != path => {
                reject(
                    "name",
                    format!("`{body}` differs from `{path}` in the path: omit it or repeat it"),
                );
                path.to_owned()
            }
            (_, Some(path)) => path.to_owned(),
            (Some(body), None) => body.to_owned(),
            (None, None) => {
                reject("name", "is required, e.g. \"python-3-12\"".into());
                String::new()
            }
        };
        if !name.is_empty()
            && let Err(message) = validate_name(&name)
        {
            reject("name", format!("`{name}` {message}"));
        }
        let tag = self.tag.clone().unwrap_or_else(|| DEFAULT_TAG.to_owned());
        if let Err(message) = validate_tag(&tag) {
            reject("tag", format!("`{tag}` {message}"));
        }
        let pool = match &self.pool {
            None => None,
            Some(pool) => {
                let min_ready = pool.min_ready.unwrap_or(0);
                if min_ready > MAX_POOL_SIZE {
                    reject(
                        "pool.min_ready",
                        format!("{min_ready} is more than the most a pool keeps, {MAX_POOL_SIZE}"),
                    );
                }
                let max_idle_age = match &pool.max_idle_age {
                    None => DEFAULT_MAX_IDLE_AGE,
                    Some(value) => match units::parse_duration(value) {
                        Ok(age) if age >= Duration::from_secs(10) => age,
                        Ok(_) => {
                            reject("pool.max_idle_age", "must be at least 10s".into());
                            DEFAULT_MAX_IDLE_AGE
                        }
                        Err(message) => {
                            reject("pool.max_idle_age", message);
                            DEFAULT_MAX_IDLE_AGE
                        }
                    },
                };
                Some(PoolSpec {
                    min_ready,
                    max_idle_age,
                })
            }
        };
        let spec = match spec_request.validate(policy) {
            Ok(spec) => Some(spec),
            Err(ValidationErrors(spec_errors)) => {
                errors.extend(spec_errors);
                None
            }
        };
        match spec {
            Some(spec) if errors.is_empty() => Ok(Template {
                name,
                tag,
                spec,
                pool,
                error: None,
                env_document: None,
                snapshot: self.snapshot.clone(),
                created_at: now,
                updated_at: now,
            }),
            _ => Err(ValidationErrors(errors)),
        }
    }
}

/// A DNS label: what Kubernetes and compose accept as a name, so templates map onto both.
pub fn validate_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err("must be 1-63 lowercase letters, digits and `-`, starting and ending with a letter or digit".into())
    }
}

/// A tag: letters, digits, `.`, `_` and `-`, as image tags and AEnvironment versions are.
pub fn validate_tag(tag: &str) -> Result<(), String> {
    let valid = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err("must be 1-128 letters, digits, `.`, `_` and `-`".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> TemplateRequest {
        TemplateRequest {
            name: Some("python-3".into()),
            image: Some("busybox:latest".into()),
            ..TemplateRequest::default()
        }
    }

    #[test]
    fn references_default_to_latest_and_name_what_is_wrong() {
        assert_eq!(
            TemplateRef::parse("py").unwrap(),
            TemplateRef {
                name: "py".into(),
                tag: "latest".into()
            }
        );
        assert_eq!(TemplateRef::parse("py:3.12").unwrap().to_string(), "py:3.12");
        assert!(TemplateRef::parse("Py").unwrap_err().contains("the name"));
        assert!(TemplateRef::parse("py:").unwrap_err().contains("the tag"));
        assert!(TemplateRef::parse("py:a/b").unwrap_err().contains("the tag"));
    }

    #[test]
    fn a_minimal_request_gets_the_defaults() {
        let template = request().validate(&SpecPolicy::default(), None, Utc::now()).unwrap();
        assert_eq!((template.name.as_str(), template.tag.as_str()), ("python-3", "latest"));
        assert_eq!(template.pool, None);
        assert_eq!(template.spec.ttl, SpecPolicy::default().default_ttl);
        let pooled = TemplateRequest {
            pool: Some(PoolRequest {
                min_ready: Some(4),
                max_idle_age: None,
            }),
            ..request()
        }
        .validate(&SpecPolicy::default(), None, Utc::now())
        .unwrap();
        assert_eq!(
            pooled.pool,
            Some(PoolSpec {
                min_ready: 4,
                max_idle_age: DEFAULT_MAX_IDLE_AGE
            })
        );
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let bad = TemplateRequest {
            name: Some("Bad_Name".into()),
            tag: Some("a b".into()),
            image: None,
            memory: Some(NumberOrString::String("lots".into())),
            pool: Some(PoolRequest {
                min_ready: Some(1000),
                max_idle_age: Some(NumberOrString::String("1s".into())),
            }),
            ..TemplateRequest::default()
        };
        let ValidationErrors(errors) = bad.validate(&SpecPolicy::default(), None, Utc::now()).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|error| error.field.as_str()).collect();
        for field in ["name", "tag", "image", "memory", "pool.min_ready", "pool.max_idle_age"] {
            assert!(fields.contains(&field), "{field} not reported: {errors:?}");
        }
    }

    #[test]
    fn a_readiness_probe_reaches_the_spec_and_its_errors_name_the_field() {
        let probe = crate::readiness::ReadinessRequest {
            http: Some(crate::readiness::HttpProbeRequest {
                port: Some(8081),
                path: Some("/health".into()),
            }),
            ..Default::default()
        };
        let template = TemplateRequest {
            readiness: Some(probe),
            ..request()
        }
        .validate(&SpecPolicy::default(), None, Utc::now())
        .unwrap();
        assert_eq!(
            template.spec.readiness.map(|probe| probe.check),
            Some(crate::readiness::ProbeCheck::Http {
                port: 8081,
                path: "/health".into()
            })
        );
        let bad = TemplateRequest {
            readiness: Some(crate::readiness::ReadinessRequest {
                http: Some(crate::readiness::HttpProbeRequest::default()),
                ..Default::default()
            }),
            ..request()
        };
        let ValidationErrors(errors) = bad.validate(&SpecPolicy::default(), None, Utc::now()).unwrap_err();
        assert_eq!(errors[0].field, "readiness.http.port", "{errors:?}");
    }

    #[test]
    fn a_put_takes_the_name_from_the_path() {
        let mut body = request();
        body.name = None;
        let template = body
            .validate(&SpecPolicy::default(), Some("from-path"), Utc::now())
            .unwrap();
        assert_eq!(template.name, "from-path");
        let ValidationErrors(errors) = request()
            .validate(&SpecPolicy::default(), Some("other"), Utc::now())
            .unwrap_err();
        assert_eq!(errors[0].field, "name");
        assert!(errors[0].message.contains("differs"), "{errors:?}");
    }
}
