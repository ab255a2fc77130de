//! A compose stack as berth creates it: services, their start order, named volumes and the
//! main service, engine-neutral. `berth-compose` plans one from a compose file; an engine
//! creates it; a sandbox record keeps it (its `spec.stack`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A whole stack, ready to be created: services in a start order that honours `depends_on`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackPlan {
    /// Every service, each after the services it depends on (declaration order among equals).
    pub services: Vec<ServicePlan>,
    /// The named volumes the stack creates, in declaration order.
    pub volumes: Vec<String>,
    /// The service labelled `aenv.main=true`, else the first one declared.
    pub main_service: String,
}

/// One service: one container berth creates on the stack's network, reachable by `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePlan {
    pub name: String,
    pub image: String,
    /// Replaces the image's command; `None` keeps it.
    pub command: Option<Vec<String>>,
    /// Replaces the image's entrypoint; `None` keeps it.
    pub entrypoint: Option<Vec<String>>,
    pub environment: BTreeMap<String, String>,
    /// Container ports to publish (deduplicated, in declaration order); berth picks host ports.
    pub ports: Vec<u16>,
    pub volumes: Vec<VolumeMount>,
    pub depends_on: Vec<Dependency>,
    pub healthcheck: Option<Healthcheck>,
    pub labels: BTreeMap<String, String>,
    /// From `deploy.resources.limits.cpus`, in thousandths of a CPU.
    pub cpu_millis: Option<u64>,
    /// From `deploy.resources.limits.memory`, binary units (`512M` is 512 MiB).
    pub memory_bytes: Option<u64>,
    pub restart: Option<RestartPolicy>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// A named volume of the stack mounted into a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMount {
    pub volume: String,
    pub container_path: String,
    pub read_only: bool,
}

/// One `depends_on` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    pub service: String,
    pub condition: Condition,
}

/// What a dependency must reach before the dependent service starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    /// `service_started` (and the short list form).
    Started,
    /// `service_healthy`.
    Healthy,
    /// `service_completed_successfully`.
    CompletedSuccessfully,
}

/// A service's healthcheck; `None` fields keep the engine's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthcheck {
    /// The engine's form: `["CMD", …]`, `["CMD-SHELL", "…"]` or `["NONE"]`; a compose string
    /// becomes `["CMD-SHELL", string]`.
    pub test: Vec<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub retries: Option<u32>,
    pub start_period: Option<Duration>,
}

/// The `restart` policy of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    No,
    Always,
    /// `on-failure` with an optional maximum number of retries (`on-failure:3`).
    OnFailure(Option<u32>),
    UnlessStopped,
}

impl StackPlan {
    /// The main service's plan.
    pub fn main(&self) -> Option<&ServicePlan> {
        self.services.iter().find(|service| service.name == self.main_service)
    }
}
