//! Wire types of `/v1/templates` and `/v1/pools`: templates as clients read them back, with the
//! state of their warm pools.

use std::collections::BTreeMap;

use berth_core::Template;
use berth_core::units::{format_cpu, format_duration, format_memory};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ResourcesView;

/// A template's pool: what it should keep and what it has now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolView {
    /// `name:tag` of the template.
    pub template: String,
    pub min_ready: u32,
    /// Idle sandboxes are replaced after this long, e.g. `"1h"`.
    pub max_idle_age: String,
    /// Sandboxes ready to be claimed.
    pub ready: usize,
    /// Sandboxes being created to refill it.
    pub refilling: usize,
    /// Sandboxes claimed from it since this server started.
    pub claimed: u64,
    /// Why the pool cannot fill, when it cannot (e.g. the image is missing).
    pub error: Option<String>,
}

/// A template as the API reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TemplateView {
    pub name: String,
    pub tag: String,
    pub image: String,
    /// The snapshot its sandboxes start from, when it was made from one (`image` is its image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    pub command: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<u16>,
    pub resources: ResourcesView,
    /// Default time to live of a sandbox made from it, e.g. `"30m"`.
    pub ttl: String,
    /// The check its sandboxes must pass before they are `Running`, when it has one.
    #[serde(default)]
    pub readiness: Option<berth_core::ReadinessRequest>,
    /// The OCI runtime its sandboxes run under; absent: the engine's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// Confinement of its sandboxes beyond berth's baseline; absent: none.
    #[serde(default, skip_serializing_if = "berth_core::Hardening::is_baseline")]
    pub hardening: berth_core::Hardening,
    /// The egress policy of its sandboxes.
    #[serde(default)]
    pub network: berth_core::NetworkPolicy,
    /// The warm pool, when the template has one.
    pub pool: Option<PoolView>,
    /// Why the template cannot provide sandboxes right now, if it cannot.
    pub error: Option<String>,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
}

impl TemplateView {
    /// The view of `template`, with its pool's current state when it has a pool.
    pub fn new(template: &Template, pool: Option<PoolView>) -> Self {
        TemplateView {
            name: template.name.clone(),
            tag: template.tag.clone(),
            image: template.spec.image.clone(),
            snapshot: template.snapshot.clone(),
            command: template.spec.command.clone(),
            env: template.spec.env.clone(),
            workdir: template.spec.workdir.clone(),
            user: template.spec.user.clone(),
            labels: template.spec.labels.clone(),
            ports: template.spec.ports.clone(),
            resources: ResourcesView {
                cpu: format_cpu(template.spec.resources.cpu_millis),
                memory: format_memory(template.spec.resources.memory_bytes),
                disk: template.spec.resources.disk_bytes.map(format_memory),
            },
            ttl: format_duration(template.spec.ttl),
            readiness: template
                .spec
                .readiness
                .as_ref()
                .map(berth_core::ReadinessProbe::to_request),
            runtime: template.spec.runtime.clone(),
            hardening: template.spec.hardening,
            network: template.spec.network,
            pool,
            error: template.error.clone(),
            created_at: template.created_at,
            updated_at: template.updated_at,
        }
    }
}

/// Every template, ordered by name and tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TemplateList {
    pub items: Vec<TemplateView>,
}

/// The pools of every template that has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PoolList {
    pub items: Vec<PoolView>,
}

/// One line of the NDJSON answer of `POST /v1/templates/{reference}/build`: `{"log": "…"}` per
/// line of build output as it comes, then `{"done": {…}}` or `{"error": "…"}` last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BuildLine {
    /// A line of build output, e.g. `Step 2/5 : RUN make`.
    Log(String),
    /// The build succeeded, and the template now runs the image.
    Done(BuildDone),
    /// The build failed: the build's own message, e.g. which command returned which code.
    Error(String),
}

/// What a successful template build produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BuildDone {
    /// The reference the image is tagged with; the template's `image` from now on.
    pub image: String,
    /// The engine's id of the image, `sha256:…`.
    pub image_id: String,
}
