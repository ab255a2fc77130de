//! AEnvironment env-services: the record of a long-running service (N replica sandboxes of one
//! Env behind one stable address), its status, and the rules of its spec. No IO.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::sandbox::SandboxId;

/// System labels on every replica sandbox of a service.
pub mod service_labels {
    /// The id of the service the sandbox is a replica of.
    pub const SERVICE: &str = "berth.env-service";
    /// The spec generation of the service the replica was made for.
    pub const GENERATION: &str = "berth.env-service.generation";
}

/// Most replicas one service may ask for.
pub const MAX_REPLICAS: u32 = 64;
/// The container port replicas serve on when neither the request nor the Env names one.
pub const DEFAULT_SERVICE_PORT: u16 = 8081;

/// A service's lifecycle, as AEnvironment reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServiceStatus {
    /// Recorded; no replica asked for yet.
    Pending,
    /// Until the desired number of replicas first runs.
    Creating,
    /// Every desired replica of the current generation runs, and nothing else.
    Running,
    /// A scale, a rollout or a replacement is under way.
    Updating,
    /// Replicas keep failing to start (see `status_reason`); an update starts over.
    Failed,
    /// Deleted: its replicas are being removed.
    Terminated,
}

impl ServiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceStatus::Pending => "Pending",
            ServiceStatus::Creating => "Creating",
            ServiceStatus::Running => "Running",
            ServiceStatus::Updating => "Updating",
            ServiceStatus::Failed => "Failed",
            ServiceStatus::Terminated => "Terminated",
        }
    }
}

impl std::fmt::Display for ServiceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An env-service id: 16 lowercase hex characters, random (the form of a [`SandboxId`]). Unique
/// per store; kept and reported as the plain string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EnvServiceId(String);

impl EnvServiceId {
    pub fn generate() -> Self {
        EnvServiceId(SandboxId::generate().to_string())
    }

    /// Accepts exactly the form [`EnvServiceId::generate`] produces.
    pub fn parse(text: &str) -> Option<Self> {
        SandboxId::parse(text).map(|id| EnvServiceId(id.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for EnvServiceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One env-service, as the store keeps it whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvService {
    pub id: EnvServiceId,
    /// The Env its replicas run: `env_name@env_version`.
    pub env_name: String,
    pub env_version: String,
    /// AEnvironment's `service_name` (free text, kept and reported).
    pub service_name: String,
    /// Desired replicas.
    pub replicas: u32,
    /// Replaces the Env's image when set (`PUT` `image`).
    pub image: Option<String>,
    /// Added to the Env's variables.
    pub environment_variables: BTreeMap<String, String>,
    pub owner: String,
    /// The replicas' container port the balancer forwards to.
    pub port: u16,
    /// Limits of each replica (`cpu_limit`, `memory_limit`); the Env's when absent.
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
    /// Fields AEnvironment accepts and berth records without acting on them (`cpu_request`,
    /// `memory_request`, `ephemeral_storage_*`, `mount_path`), by their request names.
    pub accepted: BTreeMap<String, String>,
    /// AEnvironment's `pvc_name`, reported back; berth makes no volume for it.
    pub pvc_name: String,
    pub status: ServiceStatus,
    pub status_reason: Option<String>,
    /// Host port of the service's balancer (on the server's service host).
    pub listen_port: Option<u16>,
    /// Spec generation: bumped by each change of what a replica runs (image, variables), so
    /// replicas of an older generation are replaced.
    pub generation: u64,
    /// Bumped by every write; the store only replaces the record it was read as.
    pub revision: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl EnvService {
    /// `name@version` of its Env.
    pub fn env_reference(&self) -> String {
        format!("{}@{}", self.env_name, self.env_version)
    }

    /// Prepares the record read from the store as its next write: the store replaces the stored
    /// record with it only if nobody wrote in between.
    pub fn next_revision(&mut self, now: DateTime<Utc>) {
        self.revision += 1;
        self.updated_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_sandbox_id_form() {
        let id = EnvServiceId::generate();
        assert_eq!(EnvServiceId::parse(id.as_str()), Some(id.clone()));
        assert!(SandboxId::parse(id.as_str()).is_some(), "{id}");
        assert_eq!(EnvServiceId::parse("list"), None);
        assert_eq!(EnvServiceId::parse("*"), None);
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            format!("\"{id}\""),
            "a plain string"
        );
    }

    #[test]
    fn statuses_are_aenvironments_words() {
        let all = [
            ServiceStatus::Pending,
            ServiceStatus::Creating,
            ServiceStatus::Running,
            ServiceStatus::Updating,
            ServiceStatus::Failed,
            ServiceStatus::Terminated,
        ];
        let words: Vec<&str> = all.iter().map(|status| status.as_str()).collect();
        assert_eq!(
            words,
            ["Pending", "Creating", "Running", "Updating", "Failed", "Terminated"]
        );
        for status in all {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{status}\""));
        }
    }
}
