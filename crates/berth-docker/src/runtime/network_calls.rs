//! The network sandboxes join. By default the engine's default bridge, as a plain `docker run`
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
//! A sandbox whose egress policy is `deny` joins another network of berth's, `berth-sealed`:
//! an internal bridge (the engine routes nothing from it to anywhere else) with
//! inter-container traffic off, so its sandboxes reach neither the outside nor each other; the
//! host still reaches them, as above. Its name lookups are pointed at the sandbox's own
//! loopback (see `spec::container_body`), so no query leaves it either.
//!
//! An engine whose default bridge already has inter-container traffic off (`dockerd --icc=false`)
//! needs no network of berth's: sandboxes join that bridge, which costs nothing. Joining a
//! user-defined bridge costs every container start about 25 ms on Docker 20.10, and under heavy
//! parallel load its container removals lag (docs/benchmarks.md): why it is not the default yet.

use std::collections::HashMap;

use berth_core::Egress;
use bollard::models::{Network, NetworkCreateRequest};

use super::DockerRuntime;
use crate::error::Subject;
use berth_runtime::RuntimeError;

/// The shared network's name on the engine.
pub const SANDBOX_NETWORK: &str = "berth-sandboxes";
/// The sealed network's name: where sandboxes whose egress is `deny` live.
pub const SEALED_NETWORK: &str = "berth-sealed";
/// The label that marks them as berth's, whichever berth process created them; its value is
/// the network's name.
pub const SANDBOX_NETWORK_LABEL: &str = "berth.sandbox-network";
/// The bridge driver's option that stops traffic between its containers.
const INTER_CONTAINER_OPTION: &str = "com.docker.network.bridge.enable_icc";
/// The engine's default bridge, as a container's network mode names it.
const DEFAULT_BRIDGE: &str = "bridge";

/// Which of berth's networks a sandbox joins, by its egress policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SandboxNetwork {
    /// Egress `allow`: the engine's default bridge, or `berth-sandboxes` when isolated.
    Shared,
    /// Egress `deny`: `berth-sealed`, internal.
    Sealed,
}

impl SandboxNetwork {
    pub(crate) fn for_egress(egress: Egress) -> Self {
        match egress {
            Egress::Allow => SandboxNetwork::Shared,
            Egress::Deny => SandboxNetwork::Sealed,
        }
    }

    fn name(self) -> &'static str {
        match self {
            SandboxNetwork::Shared => SANDBOX_NETWORK,
            SandboxNetwork::Sealed => SEALED_NETWORK,
        }
    }

    /// Whether the engine routes nothing out of it.
    fn internal(self) -> bool {
        self == SandboxNetwork::Sealed
    }
}

impl DockerRuntime {
    /// The id of the network `kind` names, creating it when the engine has none. Kept once
    /// found; a network removed behind berth's back is found missing by the create that needs it
    /// ([`Self::forget_sandbox_network`]).
    pub(super) async fn sandbox_network(&self, kind: SandboxNetwork) -> Result<String, RuntimeError> {
        let mut cached = self.network_cache(kind).lock().await;
        if let Some(id) = cached.as_ref() {
            return Ok(id.clone());
        }
        if kind == SandboxNetwork::Shared && (!self.config.isolate_sandboxes || self.default_bridge_isolates().await?) {
            *cached = Some(DEFAULT_BRIDGE.to_owned());
            return Ok(DEFAULT_BRIDGE.to_owned());
        }
        let id = match self.find_sandbox_network(kind).await? {
            Some(id) => id,
            None => {
                self.create_sandbox_network(kind).await?;
                // Two berth processes may have created one each at the same moment (engines of
                // API 1.41 accept a duplicate name): all of them settle on the same one.
                self.find_sandbox_network(kind).await?.ok_or_else(|| {
                    RuntimeError::Other(format!(
                        "the network `{}` was created but the engine does not list it",
                        kind.name()
                    ))
                })?
            }
        };
        *cached = Some(id.clone());
        Ok(id)
    }

    fn network_cache(&self, kind: SandboxNetwork) -> &tokio::sync::Mutex<Option<String>> {
        match kind {
            SandboxNetwork::Shared => &self.sandbox_network,
            SandboxNetwork::Sealed => &self.sealed_network,
        }
    }

    /// The id berth has been using for `kind`, if it has one.
    pub(super) async fn cached_sandbox_network(&self, kind: SandboxNetwork) -> Option<String> {
        self.network_cache(kind).lock().await.clone()
    }

    pub(super) async fn forget_sandbox_network(&self, kind: SandboxNetwork) {
        *self.network_cache(kind).lock().await = None;
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

    async fn find_sandbox_network(&self, kind: SandboxNetwork) -> Result<Option<String>, RuntimeError> {
        let filters = HashMap::from([("label", vec![SANDBOX_NETWORK_LABEL.to_owned()])]);
        Ok(canonical(kind, self.networks_matching(&filters).await?))
    }

    async fn create_sandbox_network(&self, kind: SandboxNetwork) -> Result<(), RuntimeError> {
        let request = NetworkCreateRequest {
            name: kind.name().to_owned(),
            driver: Some("bridge".into()),
            internal: Some(kind.internal()),
            // No IPv6: the isolation rules the engine writes are IPv4 ones.
            enable_ipv6: Some(false),
            options: Some(HashMap::from([(INTER_CONTAINER_OPTION.to_owned(), "false".to_owned())])),
            labels: Some(HashMap::from([(
                SANDBOX_NETWORK_LABEL.to_owned(),
                kind.name().to_owned(),
            )])),
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

/// Of the networks listed, the one every berth process picks for `kind`: of its name, with
/// inter-container traffic off and internal exactly when `kind` is, the oldest first and the
/// smallest id between equals.
fn canonical(kind: SandboxNetwork, networks: Vec<Network>) -> Option<String> {
    networks
        .into_iter()
        .filter(|network| network.name.as_deref() == Some(kind.name()))
        .filter(keeps_containers_apart)
        .filter(|network| network.internal.unwrap_or(false) == kind.internal())
        .filter_map(|network| Some((network.created, network.id?)))
        .min()
        .map(|(_, id)| id)
}

/// Whether `network` has inter-container traffic off.
fn keeps_containers_apart(network: &Network) -> bool {
    network
        .options
        .as_ref()
        .and_then(|options| options.get(INTER_CONTAINER_OPTION))
        .is_some_and(|value| value == "false")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(id: &str, name: &str, icc: Option<&str>, created_secs: i64) -> Network {
        Network {
            id: Some(id.into()),
            name: Some(name.into()),
            created: chrono::DateTime::from_timestamp(created_secs, 0),
            options: icc.map(|value| HashMap::from([(INTER_CONTAINER_OPTION.to_owned(), value.to_owned())])),
            ..Default::default()
        }
    }

    #[test]
    fn every_process_settles_on_the_oldest_isolated_network_of_the_name() {
        let listed = vec![
            network("bbb", SANDBOX_NETWORK, Some("false"), 20),
            network("aaa", "berth-sandboxes-other", Some("false"), 1),
            network("ccc", SANDBOX_NETWORK, Some("true"), 5),
            network("ddd", SANDBOX_NETWORK, None, 5),
            network("eee", SANDBOX_NETWORK, Some("false"), 10),
            network("abc", SANDBOX_NETWORK, Some("false"), 10),
        ];
        assert_eq!(canonical(SandboxNetwork::Shared, listed).as_deref(), Some("abc"));
        assert_eq!(
            canonical(
                SandboxNetwork::Shared,
                vec![network("ccc", SANDBOX_NETWORK, Some("true"), 5)]
            ),
            None
        );
    }

    #[test]
    fn the_sealed_network_must_be_internal_and_the_shared_one_must_not() {
        let mut sealed = network("sss", SEALED_NETWORK, Some("false"), 1);
        assert_eq!(canonical(SandboxNetwork::Sealed, vec![sealed.clone()]), None);
        sealed.internal = Some(true);
        assert_eq!(
            canonical(SandboxNetwork::Sealed, vec![sealed.clone()]).as_deref(),
            Some("sss")
        );
        let mut shared = network("aaa", SANDBOX_NETWORK, Some("false"), 1);
        shared.internal = Some(true);
        assert_eq!(canonical(SandboxNetwork::Shared, vec![shared, sealed]), None);
    }
}
