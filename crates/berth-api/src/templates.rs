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
    pub command: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<u16>,
    pub resources: ResourcesView,
    /// Default time to live of a sandbox made from it, e.g. `"30m"`.
    pub ttl: String,
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
            command: template.spec.command.clone(),
            env: template.spec.env.clone(),
            workdir: template.spec.workdir.clone(),
            user: template.spec.user.clone(),
            labels: template.spec.labels.clone(),
            ports: template.spec.ports.clone(),
            resources: ResourcesView {
                cpu: format_cpu(template.spec.resources.cpu_millis),
                memory: format_memory(template.spec.resources.memory_bytes),
            },
            ttl: format_duration(template.spec.ttl),
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
