//! Forwarding into sandboxes: the streaming forwarder and its one upstream connection pool, the
//! MCP gateway's listener, and the TCP balancers in front of env-service replicas.
//!
//! It owns the upstream side of every byte berth relays into a sandbox, and knows nothing of
//! the control plane: which addresses belong to berth's running sandboxes it learns through
//! [`SandboxLookup`], which the server wires to the sandbox service.

use std::net::SocketAddr;

use berth_core::Caller;
use futures::future::BoxFuture;

pub mod balancer;
pub mod credential;
pub mod forward;
pub mod mcp;

/// What forwarding needs to know of berth's sandboxes and callers.
pub trait SandboxLookup: Send + Sync + 'static {
    /// Whether `address` is one of a `Running` sandbox's: its container IP (any port), or a
    /// host port it publishes. Nothing else is ever forwarded to.
    fn is_running_sandbox(&self, address: SocketAddr) -> bool {
        self.owner_at(address).is_some()
    }

    /// The owner of the `Running` sandbox `address` belongs to (as [`is_running_sandbox`](Self::is_running_sandbox)).
    fn owner_at(&self, address: SocketAddr) -> Option<String>;

    /// The caller a presented API key stands for, or why it does not authenticate.
    fn authenticate<'a>(&'a self, secret: &'a str) -> BoxFuture<'a, Result<Caller, String>>;
}
