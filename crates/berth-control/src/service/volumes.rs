//! Persistent volumes: made, listed and deleted per owner (the engine keeps them, labelled with
//! their owner and deployment), refused for deletion while a live sandbox mounts them, and
//! checked at every create that mounts one, so that a sandbox only ever mounts its own owner's.

use std::collections::BTreeMap;

use berth_core::sandbox::label_keys;
use berth_core::{Sandbox, SandboxSpec, volume};
use berth_runtime::{RuntimeError, VolumeState};
use chrono::{DateTime, Utc};
use tracing::info;

use super::{NotFoundKind, SandboxService, ServiceError};

/// The label holding a volume's name among its owner's.
pub const VOLUME_LABEL: &str = "berth.volume";

/// Most volumes one owner may keep.
pub const MAX_VOLUMES_PER_OWNER: usize = 256;

/// A volume as berth reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub name: String,
    pub owner: String,
    pub created_at: Option<DateTime<Utc>>,
    /// The live sandboxes mounting it, in list order.
    pub mounted_by: Vec<String>,
}

fn volume_not_found(owner: &str, name: &str) -> ServiceError {
    ServiceError::not_found(
        NotFoundKind::Volume,
        format!("owner `{owner}` has no volume `{name}`: see GET /v1/volumes"),
    )
}

fn mounts(sandbox: &Sandbox, owner: &str, name: &str) -> bool {
    !sandbox.status.is_ended() && sandbox.owner == owner && sandbox.spec.volumes.iter().any(|mount| mount.name == name)
}

impl SandboxService {
    fn volume_labels(&self, owner: Option<&str>) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            (label_keys::MANAGED.to_owned(), "true".to_owned()),
            (label_keys::CLUSTER.to_owned(), self.config.cluster.clone()),
        ]);
        if let Some(owner) = owner {
            labels.insert(label_keys::OWNER.to_owned(), owner.to_owned());
        }
        labels
    }

    fn volume_info(&self, state: &VolumeState) -> Option<VolumeInfo> {
        let name = state.labels.get(VOLUME_LABEL)?.clone();
        let owner = state.labels.get(label_keys::OWNER)?.clone();
        let mounted_by = self
            .index
            .snapshot()
            .iter()
            .filter(|sandbox| mounts(sandbox, &owner, &name))
            .map(|sandbox| sandbox.id.to_string())
            .collect();
        Some(VolumeInfo {
            name,
            owner,
            created_at: state.created_at,
            mounted_by,
        })
    }

    /// Makes `owner`'s volume `name`; a 409 when the owner has one of that name.
    pub async fn create_volume(&self, owner: &str, name: &str) -> Result<VolumeInfo, ServiceError> {
        super::validate_owner(owner)?;
        volume::validate_name(name).map_err(|message| ServiceError::invalid("name", message))?;
        let engine_name = volume::engine_name(&self.config.cluster, owner, name);
        let _serialised = self.volume_lock.lock().await;
        let owned = self
            .runtime
            .list_volumes(&self.volume_labels(Some(owner)))
            .await
            .map_err(ServiceError::engine)?;
        if owned.len() >= MAX_VOLUMES_PER_OWNER {
            return Err(ServiceError::InvalidState(format!(
                "owner `{owner}` keeps {} volumes, the most this server allows: delete one first",
                owned.len()
            )));
        }
        let mut labels = self.volume_labels(Some(owner));
        labels.insert(VOLUME_LABEL.to_owned(), name.to_owned());
        let state = match self.runtime.create_volume(&engine_name, &labels).await {
            Ok(state) => state,
            Err(RuntimeError::Conflict(_)) => {
                return Err(ServiceError::InvalidState(format!(
                    "owner `{owner}` has a volume `{name}` already"
                )));
            }
            Err(error) => return Err(ServiceError::engine(error)),
        };
        info!(volume = %name, owner = %owner, "volume created");
        self.volume_info(&state)
            .ok_or_else(|| ServiceError::InvalidState(format!("volume `{name}` was made without its labels")))
    }

    /// The volumes of `owner`, or of every owner; by owner, then name.
    pub async fn list_volumes(&self, owner: Option<&str>) -> Result<Vec<VolumeInfo>, ServiceError> {
        let states = self
            .runtime
            .list_volumes(&self.volume_labels(owner))
            .await
            .map_err(ServiceError::engine)?;
        let mut volumes: Vec<VolumeInfo> = states.iter().filter_map(|state| self.volume_info(state)).collect();
        volumes.sort_by(|a, b| (&a.owner, &a.name).cmp(&(&b.owner, &b.name)));
        Ok(volumes)
    }

    /// `owner`'s volume `name`.
    pub async fn get_volume(&self, owner: &str, name: &str) -> Result<VolumeInfo, ServiceError> {
        volume::validate_name(name).map_err(|message| ServiceError::invalid("name", message))?;
        let engine_name = volume::engine_name(&self.config.cluster, owner, name);
        match self.runtime.inspect_volume(&engine_name).await {
            Ok(state) => self.volume_info(&state).ok_or_else(|| volume_not_found(owner, name)),
            Err(RuntimeError::NotFound(_)) => Err(volume_not_found(owner, name)),
            Err(error) => Err(ServiceError::engine(error)),
        }
    }

    /// Deletes `owner`'s volume `name` and its data; a 409 while a sandbox mounts it.
    pub async fn delete_volume(&self, owner: &str, name: &str) -> Result<(), ServiceError> {
        let _serialised = self.volume_lock.lock().await;
        let volume = self.get_volume(owner, name).await?;
        if !volume.mounted_by.is_empty() {
            return Err(ServiceError::InvalidState(format!(
                "volume `{name}` is mounted by sandbox {}: delete {} first",
                volume.mounted_by.join(", "),
                if volume.mounted_by.len() == 1 { "it" } else { "them" }
            )));
        }
        let engine_name = volume::engine_name(&self.config.cluster, owner, name);
        match self.runtime.remove_volume(&engine_name).await {
            Ok(()) => {
                info!(volume = %name, owner = %owner, "volume deleted");
                Ok(())
            }
            Err(RuntimeError::NotFound(_)) => Err(volume_not_found(owner, name)),
            // A sandbox that ended but whose container the engine still holds.
            Err(RuntimeError::Conflict(detail)) => Err(ServiceError::InvalidState(format!(
                "volume `{name}` is still in use by a container being removed; retry in a moment ({detail})"
            ))),
            Err(error) => Err(ServiceError::engine(error)),
        }
    }

    /// Refuses a create whose spec mounts a volume its owner does not have (each error names
    /// its `volumes[i].name`), or that mounts volumes into a compose stack.
    pub(super) async fn check_volumes(&self, owner: &str, spec: &SandboxSpec) -> Result<(), ServiceError> {
        if spec.volumes.is_empty() {
            return Ok(());
        }
        if spec.stack.is_some() {
            return Err(ServiceError::field(
                "volumes",
                "a compose stack mounts the volumes its compose file names, not berth volumes".into(),
            ));
        }
        let mut errors = Vec::new();
        for (index, mount) in spec.volumes.iter().enumerate() {
            let engine_name = volume::engine_name(&self.config.cluster, owner, &mount.name);
            match self.runtime.inspect_volume(&engine_name).await {
                Ok(_) => {}
                Err(RuntimeError::NotFound(_)) => errors.push(berth_core::FieldError::new(
                    &format!("volumes[{index}].name"),
                    format!(
                        "owner `{owner}` has no volume `{}`: create it first (POST /v1/volumes)",
                        mount.name
                    ),
                )),
                Err(error) => return Err(ServiceError::engine(error)),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::Validation(berth_core::ValidationErrors(errors)))
        }
    }
}
