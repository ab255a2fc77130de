//! Wire types of persistent volumes: the request that makes one, and a volume as listed, with
//! the live sandboxes that mount it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/volumes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeRequest {
    /// The volume's name among its owner's: 1-63 letters, digits, `_ . -`, starting with a
    /// letter or digit.
    #[schema(
        example = "datasets",
        pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
        min_length = 1,
        max_length = 63
    )]
    pub name: String,
    /// Whose volume it is: only an admin may name another owner than its own key's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// A volume: it outlives the sandboxes that mount it until it is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VolumeView {
    pub name: String,
    pub owner: String,
    /// When the engine made it, where the engine says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    /// The live sandboxes that mount it, by id: while any does, it cannot be deleted.
    pub mounted_by: Vec<String>,
}

/// `GET /v1/volumes`, by owner then name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VolumeList {
    pub volumes: Vec<VolumeView>,
}
