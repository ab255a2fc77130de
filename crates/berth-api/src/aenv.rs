//! AEnvironment's wire types, as its Python SDK and `aenv` CLI put them on the wire: the
//! `{success, code, message, data}` envelope, the registry's Env, the EnvInstance and the body
//! of `POST /env-instance`, and the EnvService with the bodies of `POST` and `PUT /env-service`.
//! Field names and JSON types follow AEnvironment exactly; they are not part of berth's v1 API or
//! its OpenAPI document.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::NumberOrString;

/// The port an AEnvironment image serves MCP, health, functions and reward on, by convention.
pub const AENV_PORT: u16 = 8081;

/// Container labels of an instance (AEnvironment's Docker mode), besides berth's own.
pub mod labels {
    pub const ENV_NAME: &str = "aenv.env_name";
    pub const VERSION: &str = "aenv.version";
    pub const OWNER: &str = "aenv.owner";
    pub const TTL: &str = "aenv.ttl";
    pub const CREATED_AT: &str = "aenv.created_at";
    /// Keys starting with this are set by berth for the AEnvironment surface.
    pub const PREFIX: &str = "aenv.";
}

/// A time as AEnvironment writes it: RFC 3339 in UTC, whole seconds (`2026-01-01T12:00:00Z`).
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// AEnvironment's answer: `success` with `code` 0 and `data`, or an error whose `code` is the
/// HTTP status and whose text is in `message` (`data` null).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub success: bool,
    pub code: u16,
    #[serde(default)]
    pub message: String,
    pub data: Option<T>,
}

impl<T> Envelope<T> {
    pub fn ok(data: T) -> Self {
        Envelope {
            success: true,
            code: 0,
            message: String::new(),
            data: Some(data),
        }
    }

    pub fn error(code: u16, message: impl Into<String>) -> Self {
        Envelope {
            success: false,
            code,
            message: message.into(),
            data: None,
        }
    }
}

/// The lifecycle states of an Env in AEnvironment's registry (`status`, an integer).
pub const ENV_STATUS_NAMES: [&str; 9] = [
    "Init", "Pending", "Creating", "Created", "Testing", "Verified", "Ready", "Released", "Failed",
];
/// `Ready`: what berth reports for an Env it made up from a native template.
pub const ENV_STATUS_READY: i64 = 6;
/// `Released`: such an Env may no longer be changed (`PUT` answers 403).
pub const ENV_STATUS_RELEASED: i64 = 7;

/// The name of an Env status, or the number itself when AEnvironment defines none.
pub fn env_status_name(status: i64) -> String {
    usize::try_from(status)
        .ok()
        .and_then(|index| ENV_STATUS_NAMES.get(index))
        .map_or_else(|| status.to_string(), |name| (*name).to_owned())
}

/// One artifact of an Env; the image is the first of `type` `image`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Artifact {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub content: String,
}

/// An Env as AEnvironment's registry returns it (`envhub/models/env.go`, snake_case): every
/// field present, so the SDK's model accepts it whole. Times are RFC 3339.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Env {
    /// `<name>-<version>`.
    pub id: String,
    pub name: String,
    pub description: String,
    pub version: String,
    pub tags: Vec<String>,
    pub code_url: String,
    /// 0 Init … 6 Ready, 7 Released, 8 Failed ([`ENV_STATUS_NAMES`]).
    pub status: i64,
    pub artifacts: Vec<Artifact>,
    pub build_config: Map<String, Value>,
    pub test_config: Map<String, Value>,
    pub deploy_config: Map<String, Value>,
    pub created_at: String,
    pub updated_at: String,
}

impl Env {
    /// `name@version`, as `envName` names it.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// The image its instances run: `deploy_config.imageName`, else the content of the first
    /// artifact whose type is `image` (any case), as AEnvironment's registry reads it.
    pub fn image(&self) -> Option<&str> {
        let from_deploy_config = self
            .deploy_config
            .get("imageName")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|image| !image.is_empty());
        from_deploy_config.or_else(|| {
            self.artifacts
                .iter()
                .find(|artifact| artifact.kind.eq_ignore_ascii_case("image"))
                .map(|artifact| artifact.content.trim())
                .filter(|image| !image.is_empty())
        })
    }

    /// The compose file of a multi-container env (`deploy_config.composeFile`), if it has one.
    pub fn compose_file(&self) -> Option<&str> {
        self.deploy_config
            .get("composeFile")
            .and_then(Value::as_str)
            .filter(|file| !file.trim().is_empty())
    }
}

/// `GET /env/{name}/{version}/exists`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvExists {
    pub exists: bool,
    pub status: i64,
}

/// A running (or starting, or ended) instance of an Env: a berth sandbox as AEnvironment's SDK
/// reads it. `created_at` and `updated_at` are always present; `ip` is "" until it is known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvInstance {
    /// The sandbox id: berth's v1 API (`/v1/sandboxes/{id}`) takes it too.
    pub id: String,
    /// The complete Env it was made from, or null.
    pub env: Option<Env>,
    /// `Pending`, `Creating`, `Running`, `Paused`, `Failed` or `Terminated`.
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    pub ip: String,
    pub ttl: String,
    pub owner: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The body of `POST /env-instance` as the SDK sends it. Unknown fields are tolerated; an
/// inline Env (`name`, `version`, `artifacts`, `deployConfig`…) may stand in for `envName`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateInstanceRequest {
    /// `name@version` of a registered Env.
    #[serde(rename = "envName", default, skip_serializing_if = "Option::is_none")]
    pub env_name: Option<String>,
    /// AEnvironment's second-container data image; berth runs one container and ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datasource: Option<String>,
    /// Go duration, e.g. `30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<NumberOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_variables: Option<BTreeMap<String, String>>,
    /// Appended to the Env's command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// SDK 0.1.7: storage to mount, `[{id, remote_dir, local_dir}]`; berth mounts the caller's
    /// volume `id` (whole) at `local_dir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_points: Option<Vec<MountPoint>>,
}

/// One of SDK 0.1.7's `mount_points`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPoint {
    /// The storage's id: in berth, the name of one of the caller's volumes.
    #[serde(default)]
    pub id: String,
    /// The directory of the storage to mount; berth mounts a whole volume (`/` or absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_dir: Option<String>,
    /// Where it appears inside the sandbox.
    #[serde(default)]
    pub local_dir: String,
    /// berth's extension: mount it read-only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// A long-running service of an Env (`/env-service`): replicas behind one address. Exactly the
/// fields of AEnvironment's `EnvService` model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvService {
    pub id: String,
    /// The complete Env its replicas run, or null when it is no longer registered.
    pub env: Option<Env>,
    /// `Pending`, `Creating`, `Running`, `Updating`, `Failed` or `Terminated`.
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    /// Desired replicas.
    pub replicas: u32,
    /// Replicas running now.
    pub available_replicas: u32,
    /// `host:port` (no scheme) of the balancer in front of the replicas.
    pub service_url: String,
    pub owner: String,
    pub environment_variables: BTreeMap<String, String>,
    pub pvc_name: String,
}

/// The body of `POST /env-service`, as AEnvironment's CLI sends it. Unknown fields are tolerated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateServiceRequest {
    /// `name@version` of a registered Env. Required.
    #[serde(rename = "envName", skip_serializing_if = "Option::is_none")]
    pub env_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// 1 when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_variables: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pvc_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
    /// Refused by berth: it has no persistent volumes for services.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_size: Option<String>,
    /// The replicas' port the service forwards to; the Env's first port when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_request: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_limit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_request: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage_request: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage_limit: Option<String>,
}

/// The body of `PUT /env-service/{id}`: what is present changes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpdateServiceRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_variables: Option<BTreeMap<String, String>>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn envelopes_carry_data_or_a_message() {
        assert_eq!(
            serde_json::to_value(Envelope::ok(true)).unwrap(),
            json!({"success": true, "code": 0, "message": "", "data": true})
        );
        assert_eq!(
            serde_json::to_value(Envelope::<()>::error(404, "Environment not found")).unwrap(),
            json!({"success": false, "code": 404, "message": "Environment not found", "data": null})
        );
    }

    #[test]
    fn an_env_serializes_every_field_with_aenvironments_names_and_types() {
        let env = Env {
            id: "x-1".into(),
            name: "x".into(),
            version: "1".into(),
            ..Env::default()
        };
        let value = serde_json::to_value(&env).unwrap();
        let mut keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "artifacts",
                "build_config",
                "code_url",
                "created_at",
                "deploy_config",
                "description",
                "id",
                "name",
                "status",
                "tags",
                "test_config",
                "updated_at",
                "version"
            ]
        );
        assert!(value["status"].is_i64());
        assert!(value["tags"].is_array() && value["deploy_config"].is_object());
    }

    #[test]
    fn the_image_comes_from_deploy_config_else_the_first_image_artifact() {
        let mut env = Env {
            artifacts: vec![
                Artifact {
                    kind: "code".into(),
                    content: "s3://x".into(),
                    ..Artifact::default()
                },
                Artifact {
                    kind: "IMAGE".into(),
                    content: "reg/a:1".into(),
                    ..Artifact::default()
                },
            ],
            ..Env::default()
        };
        assert_eq!(env.image(), Some("reg/a:1"));
        env.deploy_config.insert("imageName".into(), json!("reg/b:2"));
        assert_eq!(env.image(), Some("reg/b:2"));
        env.deploy_config.insert("imageName".into(), json!(""));
        assert_eq!(env.image(), Some("reg/a:1"));
        assert_eq!(Env::default().image(), None);
    }

    #[test]
    fn status_names_follow_the_registry() {
        assert_eq!(env_status_name(0), "Init");
        assert_eq!(env_status_name(7), "Released");
        assert_eq!(env_status_name(42), "42");
    }

    #[test]
    fn the_sdk_body_decodes_and_tolerates_unknown_fields() {
        let request: CreateInstanceRequest = serde_json::from_value(json!({
            "envName": "swe@1.0.0",
            "datasource": "",
            "ttl": "30m",
            "environment_variables": {"envNAME": "swe", "envversion": "1.0.0"},
            "arguments": ["--fast"],
            "owner": null,
            "something_new": 1
        }))
        .unwrap();
        assert_eq!(request.env_name.as_deref(), Some("swe@1.0.0"));
        assert_eq!(request.ttl, Some(NumberOrString::String("30m".into())));
        assert_eq!(request.arguments, Some(vec!["--fast".to_owned()]));
        assert_eq!(request.owner, None);
    }
}
