//! The engine calls for snapshot images: committing a container's filesystem (paused for the
//! instant of the commit) under berth's labels, listing such images and removing one.

use std::collections::{BTreeMap, HashMap};

use berth_runtime::{ImageState, RuntimeError};
use bollard::models::ContainerConfig;
use bollard::query_parameters::{CommitContainerOptionsBuilder, ListImagesOptionsBuilder, RemoveImageOptionsBuilder};

use super::DockerRuntime;
use crate::error::Subject;

impl DockerRuntime {
    pub(super) async fn commit_impl(
        &self,
        container_id: &str,
        reference: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<ImageState, RuntimeError> {
        let (repo, tag) = reference
            .rsplit_once(':')
            .ok_or_else(|| RuntimeError::Invalid(format!("`{reference}` names no tag")))?;
        let options = CommitContainerOptionsBuilder::new()
            .container(container_id)
            .repo(repo)
            .tag(tag)
            .pause(true)
            .build();
        // The engine merges the container's own labels under these.
        let config = ContainerConfig {
            labels: Some(labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            ..Default::default()
        };
        self.call(
            "container commit",
            Subject::Container(container_id),
            self.docker.commit_container(options, config),
        )
        .await?;
        let image = self
            .call(
                "image inspect",
                Subject::Image(reference),
                self.docker.inspect_image(reference),
            )
            .await?;
        Ok(ImageState {
            id: image.id.unwrap_or_default(),
            labels: image
                .config
                .and_then(|config| config.labels)
                .unwrap_or_default()
                .into_iter()
                .collect(),
            size_bytes: image.size.and_then(|size| u64::try_from(size).ok()).unwrap_or_default(),
            created_at: image.created,
        })
    }

    pub(super) async fn list_images_impl(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<ImageState>, RuntimeError> {
        let wanted: Vec<String> = labels.iter().map(|(key, value)| format!("{key}={value}")).collect();
        let filters = HashMap::from([("label", wanted)]);
        let options = ListImagesOptionsBuilder::new().filters(&filters).build();
        let images = self
            .call("image list", Subject::Engine, self.docker.list_images(Some(options)))
            .await?;
        Ok(images
            .into_iter()
            .map(|image| ImageState {
                id: image.id,
                labels: image.labels.into_iter().collect(),
                size_bytes: u64::try_from(image.size).unwrap_or_default(),
                created_at: chrono::DateTime::from_timestamp(image.created, 0),
            })
            .collect())
    }

    pub(super) async fn remove_image_impl(&self, reference: &str) -> Result<(), RuntimeError> {
        let options = RemoveImageOptionsBuilder::new().force(false).build();
        match self
            .call(
                "image remove",
                Subject::Container(reference),
                self.docker.remove_image(reference, Some(options), None),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(error) => Err(error),
        }
    }
}
