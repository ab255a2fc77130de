//! The engine calls that write the host guard's rules (see `crate::guard`): the guard's image,
//! built once per engine and `nft` version, then a one-shot container in the host's network
//! namespace that applies the ruleset and is removed.

use std::collections::HashMap;

use berth_runtime::{GuardState, RuntimeError};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, BuilderVersion, CreateContainerOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, StartContainerOptions,
};
use futures::StreamExt;

use super::DockerRuntime;
use crate::error::Subject;
use crate::guard::{self, GuardMode};

/// The label on the guard's image and its one-shot containers (the value is the scope's tag).
pub const GUARD_LABEL: &str = "berth.host-guard";

impl DockerRuntime {
    /// Writes the scope's rules on the engine host and records the outcome for `/health`.
    /// `Err` only when the mode is `Required` and the rules could not be written.
    pub(super) async fn apply_host_guard(&self) -> Result<(), RuntimeError> {
        let settings = &self.config.host_guard;
        if settings.mode == GuardMode::Off {
            self.set_guard_state(GuardState::Off);
            return Ok(());
        }
        match self.write_guard_rules().await {
            Ok(()) => {
                tracing::info!(engine = %self.info.name, tag = %self.guard_tag, "host guard rules written: sandboxes on berth's networks reach neither the engine host nor link-local or private ranges");
                self.set_guard_state(GuardState::Active);
                Ok(())
            }
            Err(reason) => {
                self.set_guard_state(GuardState::Unavailable(reason.clone()));
                if settings.mode == GuardMode::Required {
                    return Err(RuntimeError::Other(format!(
                        "the host guard is required but could not be written on engine `{}`: {reason}",
                        self.info.name
                    )));
                }
                tracing::warn!(engine = %self.info.name, %reason, "host guard unavailable: sandboxes can reach the engine host's listeners");
                Ok(())
            }
        }
    }

    pub(super) fn guard_state(&self) -> GuardState {
        self.guard.lock().map(|state| state.clone()).unwrap_or(GuardState::Off)
    }

    /// Whether the rules are in force, so that the sandbox network must be one of berth's own
    /// bridges (the engine's default bridge is not berth's to guard).
    pub(super) fn guard_active(&self) -> bool {
        self.guard_state() == GuardState::Active
    }

    fn set_guard_state(&self, state: GuardState) {
        if let Ok(mut guard) = self.guard.lock() {
            *guard = state;
        }
    }

    async fn write_guard_rules(&self) -> Result<(), String> {
        let settings = &self.config.host_guard;
        let image = guard::guard_image(settings.nft.as_deref())?;
        self.ensure_guard_image(&image).await?;
        self.remove_leftover_guards().await;
        let script = guard::ruleset(&self.guard_tag, &settings.private_ranges);
        self.run_guard(&image.tag, script).await
    }

    async fn ensure_guard_image(&self, image: &guard::GuardImage) -> Result<(), String> {
        if self.docker.inspect_image(&image.tag).await.is_ok() {
            return Ok(());
        }
        let labels = HashMap::from([(GUARD_LABEL, "true")]);
        let options = BuildImageOptionsBuilder::new()
            .t(&image.tag)
            .rm(true)
            .forcerm(true)
            .labels(&labels)
            .version(BuilderVersion::BuilderV1)
            .build();
        let body = bollard::body_full(image.context.clone().into());
        let mut messages = self.docker.build_image(options, None, Some(body));
        let build = async {
            while let Some(message) = messages.next().await {
                let message = message.map_err(|error| format!("building {}: {error}", image.tag))?;
                if let Some(error) = message.error_detail.and_then(|detail| detail.message) {
                    return Err(format!("building {}: {error}", image.tag));
                }
            }
            Ok(())
        };
        tokio::time::timeout(self.config.call_timeout, build)
            .await
            .map_err(|_| format!("building {} took over {:?}", image.tag, self.config.call_timeout))?
    }

    /// Guard containers a berth process left behind when it died mid-apply.
    async fn remove_leftover_guards(&self) {
        let filters = HashMap::from([("label", vec![format!("{GUARD_LABEL}={}", self.guard_tag)])]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let Ok(Ok(leftovers)) =
            tokio::time::timeout(self.config.call_timeout, self.docker.list_containers(Some(options))).await
        else {
            return;
        };
        for container in leftovers {
            let exited = container
                .state
                .as_ref()
                .is_some_and(|state| state.to_string() == "exited");
            if let (Some(id), true) = (container.id, exited) {
                let _ = self.remove_guard_container(&id).await;
            }
        }
    }

    async fn run_guard(&self, image: &str, script: String) -> Result<(), String> {
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            cmd: Some(vec![script]),
            labels: Some(HashMap::from([(GUARD_LABEL.to_owned(), self.guard_tag.clone())])),
            host_config: Some(HostConfig {
                network_mode: Some("host".to_owned()),
                cap_drop: Some(vec!["ALL".to_owned()]),
                cap_add: Some(vec!["NET_ADMIN".to_owned()]),
                security_opt: Some(vec!["no-new-privileges".to_owned()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = format!("berth-host-guard-{}-{:08x}", self.guard_tag, rand_suffix());
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let created = self
            .call(
                "container create",
                Subject::Image(image),
                self.docker.create_container(Some(options), body),
            )
            .await
            .map_err(|error| error.to_string())?;
        let outcome = self.start_and_wait_guard(&created.id).await;
        if let Err(error) = self.remove_guard_container(&created.id).await {
            tracing::warn!(container = %created.id, %error, "could not remove the host guard's container");
        }
        outcome
    }

    async fn start_and_wait_guard(&self, id: &str) -> Result<(), String> {
        self.call(
            "container start",
            Subject::Container(id),
            self.docker.start_container(id, None::<StartContainerOptions>),
        )
        .await
        .map_err(|error| format!("the engine would not start the guard's container (it needs NET_ADMIN in the host's network namespace): {error}"))?;
        let mut wait = self.docker.wait_container(id, None);
        let code = match tokio::time::timeout(self.config.call_timeout, wait.next()).await {
            Err(_) => return Err(format!("nft did not finish within {:?}", self.config.call_timeout)),
            Ok(Some(Ok(response))) => response.status_code,
            Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => code,
            Ok(Some(Err(error))) => return Err(format!("waiting for nft: {error}")),
            Ok(None) => return Err("the engine ended the wait for nft without an exit code".to_owned()),
        };
        if code == 0 {
            return Ok(());
        }
        let options = LogsOptionsBuilder::new().stdout(true).stderr(true).build();
        let mut output = String::new();
        let mut logs = self.docker.logs(id, Some(options));
        while let Ok(Some(Ok(chunk))) = tokio::time::timeout(self.config.call_timeout, logs.next()).await {
            output.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        Err(format!("nft exited with {code}: {}", output.trim()))
    }

    async fn remove_guard_container(&self, id: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptionsBuilder::new().force(true).build();
        self.call(
            "container remove",
            Subject::Container(id),
            self.docker.remove_container(id, Some(options)),
        )
        .await
    }
}

fn rand_suffix() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    nanos ^ std::process::id().rotate_left(16)
}
