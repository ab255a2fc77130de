//! Wire types of snapshots and forks: the request that takes a snapshot, a snapshot as listed,
//! and what a fork answers (its children and, for each that failed, the problem).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{NumberOrString, Problem, SandboxView};

/// `POST /v1/sandboxes/{id}/snapshots`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    /// `filesystem` (the default): the sandbox's files, committed by the engine while its
    /// processes are paused for the instant of the commit. `memory` needs the engine's
    /// checkpoint support (422 where it has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "filesystem")]
    pub mode: Option<String>,
    /// Kubernetes-syntax labels of the snapshot.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// How long it is kept: `"24h"` (the default), at most `"720h"`; then it is collected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "24h")]
    pub ttl: Option<NumberOrString>,
}

/// A snapshot: a sandbox's filesystem and spec, to create sandboxes from (`{"snapshot": ID}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SnapshotView {
    pub id: String,
    /// The sandbox it was taken of.
    pub sandbox_id: String,
    pub owner: String,
    pub mode: String,
    pub labels: BTreeMap<String, String>,
    /// Its size on the engine, in bytes, the layers it shares with its image included.
    pub size_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    /// When it is collected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The engine's image of it.
    pub image: String,
}

/// `GET /v1/snapshots`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SnapshotList {
    pub snapshots: Vec<SnapshotView>,
}

/// `POST /v1/sandboxes/{id}/fork`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForkRequest {
    /// How many children: 1-64.
    #[schema(minimum = 1, maximum = 64, example = 8)]
    pub count: u32,
}

/// What a fork made: one snapshot of the parent, then each child from it on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ForkResponse {
    pub snapshot: SnapshotView,
    /// The children that run.
    pub sandboxes: Vec<SandboxView>,
    /// One problem per child that could not be made.
    pub errors: Vec<Problem>,
}
