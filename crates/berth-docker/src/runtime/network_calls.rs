//! The networks sandboxes join. By default the engine's default bridge, as a plain `docker run`
//! uses it; with `isolate_sandboxes` (`berth serve --sandbox-network isolated`) one bridge per
//! engine with inter-container traffic off, so that no sandbox can open a connection to another,
//! whatever it tries.
//!
//! The engine enforces it (its own firewall rules for the bridge), so it holds on a remote engine
//! as on a local one, and code in a sandbox cannot undo it (no sandbox gets `NET_ADMIN`). berth,
//! on the host side, still reaches every sandbox: the proxy, the gateway, readiness probes and the
//! env-service balancers connect from the host, which the rule does not cover. A compose stack
//! keeps a network of its own, so its services talk to each other and to nothing else.
//!
//! A sandbox whose egress policy is `deny` gets a network of its own, as a stack does: an
//! internal bridge (the engine routes nothing from it to anywhere else) with no IPv6 and nobody
//! else on it, labelled as a stack's objects are, so that it is removed with the sandbox and
//! collected like a stack when a create was cut short. The host still reaches it, as above. Its
//! name lookups are pointed at the sandbox's own loopback (see `spec::container_body`), so no
//! query leaves it either. One network per sandbox rather than one shared by every sealed
//! sandbox: on Docker 20.10 (before 20.10.27) a container joining a network while the network's
//! last other container leaves can deadlock the engine's network controller (moby/moby#46661),
//! and a network nobody else joins cannot meet that race.
//!
//! Every network berth makes carries a bridge name of its host guard's scope (`crate::guard`), so
//! that the guard's rules keep its sandboxes from the engine host and from link-local and private
//! ranges. The shared network is one per scope (`berth-sandboxes-<tag>`), labelled with the
//! cluster. An engine whose default bridge already has inter-container traffic off
//! (`dockerd --icc=false`) needs no network of berth's while the guard is off: sandboxes join that
//! bridge, which costs nothing; with the guard in force they join berth's, which it covers. Joining a
//! user-defined bridge costs every container start about 25 ms on Docker 20.10, and under heavy
//! parallel load its container removals lag (docs/benchmarks.md): why it is not the default yet.

use std::collections::HashMap;

use berth_core::Egress;
use berth_runtime::{ContainerRequest, ContainerState, Runtime, RuntimeError};
use bollard::models::{Network, NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest};

use super::DockerRuntime;
use crate::error::Subject;
use crate::spec;

/// The network's name on the engine, before the scope's tag.
pub const SANDBOX_NETWORK: &str = "berth-sandboxes";
/// The bridge driver's option naming the bridge on the host.
pub(crate) const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";
/// The label that marks it as berth's, whichever berth process created it.
pub const SANDBOX_NETWORK_LABEL: &str = "berth.sandbox-network";
/// The bridge driver's option that stops traffic between its containers.
const INTER_CONTAINER_OPTION: &str = "com.docker.network.bridge.enable_icc";
/// The engine's default bridge, as a container's network mode names it.
const DEFAULT_BRIDGE: &str = "bridge";

impl DockerRuntime {
    /// The id of the sandbox network, creating it when the engine has none. Kept once found; a
    /// network removed behind berth's back is found missing by the create that needs it
    /// ([`Self::forget_sandbox_network`]).
    pub(super) async fn sandbox_network(&self) -> Result<String, RuntimeError> {
        let mut cached = self.sandbox_network.lock().await;
        if let Some(id) = cached.as_ref() {
            return Ok(id.clone());
        }
        if !self.config.isolate_sandboxes || (!self.guard_active() && self.default_bridge_isolates().await?) {
            *cached = Some(DEFAULT_BRIDGE.to_owned());
            return Ok(DEFAULT_BRIDGE.to_owned());
        }
        let id = match self.find_sandbox_network().await? {
            Some(id) => id,
            None => {
                self.create_sandbox_network().await?;
                // Two berth processes may have created one each at the same moment (engines of
                // API 1.41 accept a duplicate name): all of them settle on the same one.
                self.find_sandbox_network().await?.ok_or_else(|| {
                    RuntimeError::Other(format!(
                        "the network `{}` was created but the engine does not list it",
                        self.sandbox_network_name()
                    ))
                })?
            }
        };
        *cached = Some(id.clone());
        Ok(id)
    }

    pub(super) async fn forget_sandbox_network(&self) {
        *self.sandbox_network.lock().await = None;
    }

    /// Whether the network berth has been using is still there.
    pub(super) async fn sandbox_network_exists(&self, id: &str) -> Result<bool, RuntimeError> {
        if id == DEFAULT_BRIDGE {
            return Ok(true);
        }
        let filters = HashMap::from([("id", vec![id.to_owned()])]);
        Ok(self
            .networks_matching(&filters)
            .await?
            .iter()
            .any(|network| network.id.as_deref() == Some(id)))
    }

    /// Whether the engine's default bridge keeps its containers apart already.
    async fn default_bridge_isolates(&self) -> Result<bool, RuntimeError> {
        let filters = HashMap::from([("name", vec![DEFAULT_BRIDGE.to_owned()])]);
        Ok(self
            .networks_matching(&filters)
            .await?
            .iter()
            .any(|network| network.name.as_deref() == Some(DEFAULT_BRIDGE) && keeps_containers_apart(network)))
    }

    async fn find_sandbox_network(&self) -> Result<Option<String>, RuntimeError> {
        let filters = HashMap::from([("label", vec![SANDBOX_NETWORK_LABEL.to_owned()])]);
        Ok(canonical(
            self.networks_matching(&filters).await?,
            &self.sandbox_network_name(),
            &self.bridge_name("sandboxes"),
        ))
    }

    fn sandbox_network_name(&self) -> String {
        format!("{SANDBOX_NETWORK}-{}", self.guard_tag)
    }

    /// The name of one of berth's bridges on the host, within the guard's scope.
    pub(super) fn bridge_name(&self, key: &str) -> String {
        crate::guard::bridge_name(&self.guard_tag, key)
    }

    /// Creates a sandbox whose egress is `deny`: its own internal network, then its container
    /// on it, both labelled `berth.stack`; on any failure both are removed (and a create cut short
    /// is collected like a stack's).
    pub(super) async fn create_sealed(&self, request: &ContainerRequest) -> Result<ContainerState, RuntimeError> {
        self.ensure_image(&request.spec.image).await?;
        let created = self.create_sealed_objects(request).await;
        if let Err(error) = &created {
            tracing::warn!(sandbox = %request.sandbox_id, %error, "sealed create failed; removing what was made");
            if let Err(cleanup) = self.remove_stack_objects(&request.sandbox_id).await {
                tracing::warn!(sandbox = %request.sandbox_id, error = %cleanup, "could not remove a half-created sealed sandbox; the resync will");
            }
        }
        created
    }

    async fn create_sealed_objects(&self, request: &ContainerRequest) -> Result<ContainerState, RuntimeError> {
        let network = self.create_stack_network(request).await?;
        let created = self
            .create_container_on(request, &spec::container_name(request), &network)
            .await?;
        self.start_and_inspect(&created.id).await
    }

    /// Moves a running container onto the networks of its request's policy: sealed, its own
    /// internal network (made now, labelled as a stack's so that it goes with the sandbox) and off
    /// every other; open, onto the sandbox network and off its own, which is then removed. Off
    /// the old networks before onto the new when sealing (nothing is left reachable meanwhile),
    /// the other way round when opening. A name resolver fixed at create stays as it was: a
    /// sandbox created sealed resolves no names once opened.
    pub(super) async fn change_egress_impl(
        &self,
        request: &ContainerRequest,
        container_id: &str,
    ) -> Result<ContainerState, RuntimeError> {
        let inspected = self.inspect_raw(container_id).await?;
        let joined: Vec<String> = inspected
            .network_settings
            .and_then(|settings| settings.networks)
            .map(|networks| networks.into_keys().collect())
            .unwrap_or_default();
        let own = crate::stack::network_name(&request.sandbox_id);
        match request.spec.network.egress {
            Egress::Deny => {
                match self.create_stack_network(request).await {
                    Ok(_) | Err(RuntimeError::Conflict(_)) => {}
                    Err(error) => return Err(error),
                }
                for network in joined.iter().filter(|network| **network != own) {
                    self.disconnect_network(network, container_id).await?;
                }
                if !joined.contains(&own) {
                    self.connect_network(&own, container_id).await?;
                }
            }
            Egress::Allow => {
                let open = self.sandbox_network().await?;
                let open_name = self.network_name_of(&open).await?;
                if !joined.contains(&open_name) {
                    self.connect_network(&open, container_id).await?;
                }
                for network in joined.iter().filter(|network| **network != open_name) {
                    self.disconnect_network(network, container_id).await?;
                }
                match self
                    .call("network remove", Subject::Engine, self.docker.remove_network(&own))
                    .await
                {
                    Ok(()) | Err(RuntimeError::NotFound(_)) => {}
                    Err(error) => {
                        tracing::warn!(network = %own, %error, "could not remove an opened sandbox's own network; it goes with the sandbox")
                    }
                }
            }
        }
        Runtime::inspect(self, container_id).await
    }

    /// The name of the network `id` (the default bridge is `bridge` either way).
    async fn network_name_of(&self, id: &str) -> Result<String, RuntimeError> {
        if id == DEFAULT_BRIDGE {
            return Ok(DEFAULT_BRIDGE.to_owned());
        }
        let filters = HashMap::from([("id", vec![id.to_owned()])]);
        self.networks_matching(&filters)
            .await?
            .into_iter()
            .find(|network| network.id.as_deref() == Some(id))
            .and_then(|network| network.name)
            .ok_or_else(|| RuntimeError::NotFound(format!("network {id}")))
    }

    async fn connect_network(&self, network: &str, container_id: &str) -> Result<(), RuntimeError> {
        let request = NetworkConnectRequest {
            container: container_id.to_owned(),
            endpoint_config: None,
        };
        self.call(
            "network connect",
            Subject::Container(container_id),
            self.docker.connect_network(network, request),
        )
        .await
    }

    async fn disconnect_network(&self, network: &str, container_id: &str) -> Result<(), RuntimeError> {
        let request = NetworkDisconnectRequest {
            container: container_id.to_owned(),
            force: Some(true),
        };
        self.call(
            "network disconnect",
            Subject::Container(container_id),
            self.docker.disconnect_network(network, request),
        )
        .await
    }

    async fn create_sandbox_network(&self) -> Result<(), RuntimeError> {
        let request = NetworkCreateRequest {
            name: self.sandbox_network_name(),
            driver: Some("bridge".into()),
            // No IPv6: the isolation rules the engine writes are IPv4 ones.
            enable_ipv6: Some(false),
            options: Some(HashMap::from([
                (INTER_CONTAINER_OPTION.to_owned(), "false".to_owned()),
                (BRIDGE_NAME_OPTION.to_owned(), self.bridge_name("sandboxes")),
            ])),
            labels: Some(HashMap::from([
                (SANDBOX_NETWORK_LABEL.to_owned(), "true".to_owned()),
                (
                    berth_core::sandbox::label_keys::CLUSTER.to_owned(),
                    self.config.host_guard.scope.clone(),
                ),
            ])),
            ..Default::default()
        };
        match self
            .call("network create", Subject::Engine, self.docker.create_network(request))
            .await
        {
            // A newer engine refuses the duplicate another process just created.
            Ok(_) | Err(RuntimeError::Conflict(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// Of the networks listed, the one every berth process of the scope picks: named `name`, on the
/// bridge `bridge`, with inter-container traffic off, the oldest first and the smallest id
/// between equals.
fn canonical(networks: Vec<Network>, name: &str, bridge: &str) -> Option<String> {
    networks
        .into_iter()
        .filter(|network| network.name.as_deref() == Some(name))
        .filter(keeps_containers_apart)
        .filter(|network| option(network, BRIDGE_NAME_OPTION) == Some(bridge))
        .filter_map(|network| Some((network.created, network.id?)))
        .min()
        .map(|(_, id)| id)
}

/// Whether `network` has inter-container traffic off.
fn keeps_containers_apart(network: &Network) -> bool {
    option(network, INTER_CONTAINER_OPTION) == Some("false")
}

fn option<'a>(network: &'a Network, key: &str) -> Option<&'a str> {
    network
        .options
        .as_ref()
        .and_then(|options| options.get(key))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "berth-sandboxes-abcdef";
    const BRIDGE: &str = "babcdefsandboxe";

    fn network(id: &str, name: &str, icc: Option<&str>, bridge: &str, created_secs: i64) -> Network {
        let mut options = HashMap::from([(BRIDGE_NAME_OPTION.to_owned(), bridge.to_owned())]);
        if let Some(value) = icc {
            options.insert(INTER_CONTAINER_OPTION.to_owned(), value.to_owned());
        }
        Network {
            id: Some(id.into()),
            name: Some(name.into()),
            created: chrono::DateTime::from_timestamp(created_secs, 0),
            options: Some(options),
            ..Default::default()
        }
    }

    #[test]
    fn every_process_settles_on_the_oldest_isolated_network_of_the_name_and_bridge() {
        let listed = vec![
            network("bbb", NAME, Some("false"), BRIDGE, 20),
            network("aaa", "berth-sandboxes-other", Some("false"), BRIDGE, 1),
            network("ccc", NAME, Some("true"), BRIDGE, 5),
            network("ddd", NAME, None, BRIDGE, 5),
            network("fff", NAME, Some("false"), "br-0123456789", 1),
            network("eee", NAME, Some("false"), BRIDGE, 10),
            network("abc", NAME, Some("false"), BRIDGE, 10),
        ];
        assert_eq!(canonical(listed, NAME, BRIDGE).as_deref(), Some("abc"));
        assert_eq!(
            canonical(vec![network("ccc", NAME, Some("true"), BRIDGE, 5)], NAME, BRIDGE),
            None
        );
    }
}
