//! The engine calls for persistent volumes: making, reading, listing and removing them, and the
//! check that every volume a sandbox mounts exists before its container is made (the engine
//! would otherwise make a missing one silently, unlabelled and owned by nobody).

use std::collections::{BTreeMap, HashMap};

use berth_runtime::{ContainerRequest, RuntimeError, VolumeState};
use bollard::models::{Volume, VolumeCreateRequest};
use bollard::query_parameters::{ListVolumesOptionsBuilder, RemoveVolumeOptionsBuilder};

use super::DockerRuntime;
use crate::error::Subject;
use crate::spec;

fn volume_state(volume: Volume) -> VolumeState {
    VolumeState {
        engine_name: volume.name,
        labels: volume.labels.into_iter().collect(),
        created_at: volume.created_at,
    }
}

impl DockerRuntime {
    pub(super) async fn create_volume_impl(
        &self,
        engine_name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<VolumeState, RuntimeError> {
        // The engine answers an existing name with that volume instead of refusing it.
        match self.inspect_volume_impl(engine_name).await {
            Ok(_) => return Err(RuntimeError::Conflict(format!("volume {engine_name} exists"))),
            Err(RuntimeError::NotFound(_)) => {}
            Err(error) => return Err(error),
        }
        let request = VolumeCreateRequest {
            name: Some(engine_name.to_owned()),
            labels: Some(labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            ..Default::default()
        };
        let volume = self
            .call("volume create", Subject::Engine, self.docker.create_volume(request))
            .await?;
        Ok(volume_state(volume))
    }

    pub(super) async fn inspect_volume_impl(&self, engine_name: &str) -> Result<VolumeState, RuntimeError> {
        let volume = self
            .call(
                "volume inspect",
                Subject::Container(engine_name),
                self.docker.inspect_volume(engine_name),
            )
            .await?;
        Ok(volume_state(volume))
    }

    pub(super) async fn list_volumes_impl(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<VolumeState>, RuntimeError> {
        let wanted: Vec<String> = labels.iter().map(|(key, value)| format!("{key}={value}")).collect();
        let filters = HashMap::from([("label", wanted)]);
        let options = ListVolumesOptionsBuilder::new().filters(&filters).build();
        let volumes = self
            .call("volume list", Subject::Engine, self.docker.list_volumes(Some(options)))
            .await?
            .volumes
            .unwrap_or_default();
        Ok(volumes.into_iter().map(volume_state).collect())
    }

    pub(super) async fn remove_volume_impl(&self, engine_name: &str) -> Result<(), RuntimeError> {
        let options = RemoveVolumeOptionsBuilder::new().force(false).build();
        self.call(
            "volume remove",
            Subject::Container(engine_name),
            self.docker.remove_volume(engine_name, Some(options)),
        )
        .await
    }

    /// Refuses a request that mounts a volume the engine does not have.
    pub(super) async fn check_mounted_volumes(&self, request: &ContainerRequest) -> Result<(), RuntimeError> {
        for source in spec::volume_sources(request) {
            match self.inspect_volume_impl(&source).await {
                Ok(_) => {}
                Err(RuntimeError::NotFound(_)) => {
                    return Err(RuntimeError::Invalid(format!(
                        "volume {source} does not exist on engine `{}`",
                        self.info.name
                    )));
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}
