//! Changing the egress policy of a running sandbox (`PUT /v1/sandboxes/{id}/network`): the engine
//! moves its container between networks without stopping it, and the record keeps the policy in
//! force, so that a restarted berth (or another process on the store) knows it.

use berth_core::sandbox::label_keys;
use berth_core::{FieldError, NetworkPolicy, NetworkRequest, Sandbox, SandboxId, Status, ValidationErrors};
use berth_runtime::ContainerRequest;
use tracing::info;

use super::{SandboxService, ServiceError};

impl SandboxService {
    /// Puts `request`'s policy in force on a `Running` sandbox and answers the sandbox with it
    /// (and its new address). The same policy again is a no-op; a compose stack's policy is fixed
    /// when it is created (409), as is that of a sandbox not running.
    pub async fn change_network(&self, id: &str, request: &NetworkRequest) -> Result<Sandbox, ServiceError> {
        let id = SandboxId::parse(id).ok_or_else(|| ServiceError::sandbox_not_found(id))?;
        if request.egress.is_none() {
            return Err(invalid("is required: \"allow\" or \"deny\""));
        }
        let policy = NetworkRequest::validate(Some(request), self.config.policy.default_egress)
            .map_err(|error| invalid(&error.message))?;
        let _guard = self.locks.lock(&id).await;
        self.fresh(&id).await;
        let mut sandbox = self.live_record(&id)?;
        if sandbox.spec.network == policy {
            return Ok(sandbox);
        }
        if sandbox.spec.stack.is_some() {
            return Err(ServiceError::InvalidState(format!(
                "sandbox {id} is a compose stack, whose egress policy is fixed when it is created"
            )));
        }
        let container_id = match (&sandbox.container_id, sandbox.status) {
            (Some(container_id), Status::Running) => container_id.clone(),
            _ => {
                return Err(ServiceError::InvalidState(format!(
                    "sandbox {id} is {} and its egress policy can change only while it runs",
                    sandbox.status
                )));
            }
        };
        let before = sandbox.spec.network;
        let request = self.egress_request(&sandbox, policy);
        let state = self
            .runtime
            .change_egress(&request, &container_id)
            .await
            .map_err(|error| ServiceError::Engine {
                error,
                sandbox_id: Some(id.clone()),
            })?;
        sandbox.spec.network = policy;
        sandbox.ip = state.ip;
        sandbox.ports = state.ports;
        self.persist(&mut sandbox).await?;
        info!(sandbox = %id, from = before.egress.as_str(), to = policy.egress.as_str(), "egress policy changed");
        Ok(sandbox)
    }

    fn egress_request(&self, sandbox: &Sandbox, policy: NetworkPolicy) -> ContainerRequest {
        let mut labels = sandbox.engine_labels();
        labels.insert(label_keys::CLUSTER.into(), self.config.cluster.clone());
        let mut spec = sandbox.spec.clone();
        spec.network = policy;
        ContainerRequest {
            sandbox_id: sandbox.id.clone(),
            spec,
            labels,
        }
    }
}

fn invalid(message: &str) -> ServiceError {
    ServiceError::InvalidRequest(ValidationErrors(vec![FieldError {
        field: "egress".to_owned(),
        message: message.to_owned(),
    }]))
}
