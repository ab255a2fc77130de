//! The engine calls for compose stacks: creating one (network, volumes, then each service in
//! start order once its dependencies reached their `depends_on` condition), removing every object
//! of one, and finding the stacks left on the engine.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use berth_core::SandboxId;
use berth_core::sandbox::label_keys;
use berth_core::stack::{Condition, Dependency, StackPlan};
use berth_runtime::{ContainerRequest, ContainerState, Runtime, RuntimeError, StackObjects};
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerStateStatusEnum, HealthStatusEnum, Network, NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveVolumeOptionsBuilder, StartContainerOptions,
};
use futures::stream::{self, StreamExt};

use super::DockerRuntime;
use crate::error::Subject;
use crate::stack;

/// How long a service waits for one dependency to become healthy or complete. Generous: a
/// database's first start can take a minute on a loaded machine; a dependency that fails or
/// reports unhealthy ends the wait at once.
const DEPENDENCY_TIMEOUT: Duration = Duration::from_secs(300);

/// How often a dependency's state is read while waiting on it.
const DEPENDENCY_POLL: Duration = Duration::from_millis(250);

/// How many containers of a stack are removed at once.
const REMOVAL_CONCURRENCY: usize = 8;

impl DockerRuntime {
    /// Creates the whole stack and reports its main service's container; on any failure removes
    /// everything of it that was made.
    pub(super) async fn create_stack(
        &self,
        request: &ContainerRequest,
        plan: &StackPlan,
    ) -> Result<ContainerState, RuntimeError> {
        for service in &plan.services {
            self.ensure_image(&service.image).await?;
        }
        let created = self.create_stack_objects(request, plan).await;
        if let Err(error) = &created {
            tracing::warn!(sandbox = %request.sandbox_id, %error, "stack create failed; removing what was made");
            if let Err(cleanup) = self.remove_stack_objects(&request.sandbox_id).await {
                tracing::warn!(sandbox = %request.sandbox_id, error = %cleanup, "could not remove a half-created stack; the resync will");
            }
        }
        created
    }

    async fn create_stack_objects(
        &self,
        request: &ContainerRequest,
        plan: &StackPlan,
    ) -> Result<ContainerState, RuntimeError> {
        let labels = stack::object_labels(request);
        self.create_stack_network(request).await?;
        for volume in &plan.volumes {
            let volume = VolumeCreateRequest {
                name: Some(stack::volume_name(&request.sandbox_id, volume)),
                labels: Some(labels.clone()),
                ..Default::default()
            };
            self.call("volume create", Subject::Engine, self.docker.create_volume(volume))
                .await?;
        }

        let mut started: HashMap<&str, String> = HashMap::new();
        for service in &plan.services {
            for dependency in &service.depends_on {
                let container_id = started.get(dependency.service.as_str()).ok_or_else(|| {
                    RuntimeError::Invalid(format!(
                        "service `{}` depends on `{}`, which was not started before it",
                        service.name, dependency.service
                    ))
                })?;
                self.await_dependency(&service.name, dependency, container_id).await?;
            }
            let body = stack::service_body(request, plan, service, &self.config.publish_host_ip)?;
            let name = stack::container_name(request, plan, service);
            let options = CreateContainerOptionsBuilder::new().name(&name).build();
            let created = self
                .call(
                    "container create",
                    Subject::Image(&service.image),
                    self.docker.create_container(Some(options), body),
                )
                .await?;
            self.call(
                "container start",
                Subject::Container(&created.id),
                self.docker.start_container(&created.id, None::<StartContainerOptions>),
            )
            .await
            .map_err(|error| RuntimeError::Invalid(format!("service `{}` did not start: {error}", service.name)))?;
            started.insert(service.name.as_str(), created.id);
        }
        let main = started.get(plan.main_service.as_str()).ok_or_else(|| {
            RuntimeError::Invalid(format!("the stack has no service `{}` to report", plan.main_service))
        })?;
        self.inspect(main).await
    }

    /// The network of the stack (or of the sealed sandbox) of `request`, labelled as its other
    /// objects are; returns its name. Internal under egress `deny`: its containers still reach
    /// each other, and nothing else.
    pub(super) async fn create_stack_network(&self, request: &ContainerRequest) -> Result<String, RuntimeError> {
        let name = stack::network_name(&request.sandbox_id);
        let network = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            internal: Some(request.spec.network.egress == berth_core::Egress::Deny),
            // No IPv6: the engine's rules for an internal bridge are IPv4 ones.
            enable_ipv6: Some(false),
            // Within the host guard's scope: its rules cover the stack too.
            options: Some(HashMap::from([(
                super::network_calls::BRIDGE_NAME_OPTION.to_owned(),
                self.bridge_name(request.sandbox_id.as_str()),
            )])),
            labels: Some(stack::object_labels(request)),
            ..Default::default()
        };
        self.call("network create", Subject::Engine, self.docker.create_network(network))
            .await?;
        Ok(name)
    }

    /// Waits until the container of `dependency` reached its condition; fails at once when it
    /// cannot any more (unhealthy, exited, failed).
    async fn await_dependency(
        &self,
        dependent: &str,
        dependency: &Dependency,
        container_id: &str,
    ) -> Result<(), RuntimeError> {
        if dependency.condition == Condition::Started {
            return Ok(());
        }
        let refuse = |what: String| {
            RuntimeError::Invalid(format!(
                "service `{dependent}` waits for `{}`, which {what}",
                dependency.service
            ))
        };
        let deadline = tokio::time::Instant::now() + DEPENDENCY_TIMEOUT;
        loop {
            let inspect = self.inspect_raw(container_id).await?;
            let state = inspect.state.unwrap_or_default();
            let exited = matches!(
                state.status,
                Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD)
            );
            let exit_code = state.exit_code.unwrap_or_default();
            match dependency.condition {
                Condition::Started => return Ok(()),
                Condition::Healthy => {
                    let health = state.health.as_ref();
                    match health.and_then(|health| health.status) {
                        Some(HealthStatusEnum::HEALTHY) => return Ok(()),
                        Some(HealthStatusEnum::UNHEALTHY) => {
                            let last_output = health
                                .and_then(|health| health.log.as_ref())
                                .and_then(|log| log.last())
                                .and_then(|result| result.output.clone())
                                .unwrap_or_default();
                            return Err(refuse(format!("is unhealthy: {}", last_output.trim())));
                        }
                        None | Some(HealthStatusEnum::NONE | HealthStatusEnum::EMPTY) => {
                            return Err(refuse(
                                "has no healthcheck: give it one, or wait for `service_started`".into(),
                            ));
                        }
                        Some(HealthStatusEnum::STARTING) if exited => {
                            return Err(refuse(format!("exited with code {exit_code} before it was healthy")));
                        }
                        Some(HealthStatusEnum::STARTING) => {}
                    }
                }
                Condition::CompletedSuccessfully => {
                    if exited && exit_code == 0 {
                        return Ok(());
                    }
                    if exited {
                        return Err(refuse(format!("exited with code {exit_code}")));
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RuntimeError::Timeout(format!(
                    "service `{dependent}` waited {}s for `{}` in vain",
                    DEPENDENCY_TIMEOUT.as_secs(),
                    dependency.service
                )));
            }
            tokio::time::sleep(DEPENDENCY_POLL).await;
        }
    }

    /// Removes every container of the stack, then its volumes, then its network.
    pub(super) async fn remove_stack_objects(&self, sandbox_id: &SandboxId) -> Result<(), RuntimeError> {
        let filters = stack::stack_filter(sandbox_id);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let containers = self
            .call(
                "container list",
                Subject::Engine,
                self.docker.list_containers(Some(options)),
            )
            .await?;
        let removals: Vec<Result<(), RuntimeError>> = stream::iter(containers.into_iter().filter_map(|c| c.id))
            .map(|container_id| async move { self.remove(&container_id).await })
            .buffer_unordered(REMOVAL_CONCURRENCY)
            .collect()
            .await;
        removals.into_iter().collect::<Result<(), _>>()?;

        let options = ListVolumesOptionsBuilder::new().filters(&filters).build();
        let volumes = self
            .call("volume list", Subject::Engine, self.docker.list_volumes(Some(options)))
            .await?
            .volumes
            .unwrap_or_default();
        for volume in volumes {
            let options = RemoveVolumeOptionsBuilder::new().force(true).build();
            self.remove_if_present(
                "volume remove",
                &volume.name,
                self.docker.remove_volume(&volume.name, Some(options)),
            )
            .await?;
        }

        for network in self.networks_matching(&filters).await? {
            let Some(network_id) = network.id else { continue };
            self.remove_if_present("network remove", &network_id, self.docker.remove_network(&network_id))
                .await?;
        }
        Ok(())
    }

    /// One removal call, where an object already gone counts as removed.
    async fn remove_if_present(
        &self,
        what: &str,
        name: &str,
        removal: impl Future<Output = Result<(), BollardError>>,
    ) -> Result<(), RuntimeError> {
        match self.call(what, Subject::Container(name), removal).await {
            Ok(()) | Err(RuntimeError::NotFound(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }

    pub(super) async fn networks_matching(
        &self,
        filters: &HashMap<&str, Vec<String>>,
    ) -> Result<Vec<Network>, RuntimeError> {
        let options = ListNetworksOptionsBuilder::new().filters(filters).build();
        self.call(
            "network list",
            Subject::Engine,
            self.docker.list_networks(Some(options)),
        )
        .await
    }

    /// Every stack's network labelled `berth.stack`.
    pub(super) async fn stack_networks(&self) -> Result<Vec<StackObjects>, RuntimeError> {
        let filters = HashMap::from([("label", vec![label_keys::STACK.to_owned()])]);
        Ok(self
            .networks_matching(&filters)
            .await?
            .into_iter()
            .filter_map(|network| {
                let labels = network.labels.unwrap_or_default();
                let sandbox_id = labels.get(label_keys::STACK).and_then(|id| SandboxId::parse(id))?;
                Some(StackObjects {
                    sandbox_id,
                    labels: labels.into_iter().collect(),
                    created_at: network.created.unwrap_or(chrono::DateTime::UNIX_EPOCH),
                })
            })
            .collect())
    }
}
