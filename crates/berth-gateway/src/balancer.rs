//! The TCP balancer of an env-service: one listener on the server's service host per service,
//! handing each accepted connection to the next live replica (round robin) and copying bytes
//! both ways. Owned by the leader's env-service controller; dropping a [`Balancer`] closes its
//! listener.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::debug;

/// How long a connection to one replica may take before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where connections go: the addresses of the live replicas, and whose turn is next.
#[derive(Default)]
struct Targets {
    addresses: Mutex<Vec<SocketAddr>>,
    next: AtomicUsize,
}

impl Targets {
    /// The replicas in the order to try them for one connection: starting at the next turn.
    fn turn(&self) -> Vec<SocketAddr> {
        let addresses = self
            .addresses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if addresses.is_empty() {
            return addresses;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % addresses.len();
        addresses[start..].iter().chain(&addresses[..start]).copied().collect()
    }
}

/// A service's listener and the task accepting on it; dropped, it stops accepting (connections
/// already handed to a replica finish on their own).
pub struct Balancer {
    address: SocketAddr,
    targets: Arc<Targets>,
    accepting: JoinHandle<()>,
}

impl Balancer {
    /// Listens on `host:port` (`port` 0: any free port) and starts accepting.
    pub async fn bind(host: IpAddr, port: u16) -> std::io::Result<Balancer> {
        let listener = TcpListener::bind(SocketAddr::new(host, port)).await?;
        let address = listener.local_addr()?;
        let targets = Arc::new(Targets::default());
        let accepting = tokio::spawn(accept(listener, Arc::clone(&targets)));
        Ok(Balancer {
            address,
            targets,
            accepting,
        })
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Replaces the replicas connections go to; an empty list closes new connections at once.
    pub fn set_targets(&self, mut addresses: Vec<SocketAddr>) {
        addresses.sort_unstable();
        *self
            .targets
            .addresses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = addresses;
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// A free port on `host`, chosen by the OS: what a new service is given before its balancer
/// listens (on the leader, which may be another process).
pub async fn free_port(host: IpAddr) -> std::io::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::new(host, 0)).await?;
    Ok(listener.local_addr()?.port())
}

async fn accept(listener: TcpListener, targets: Arc<Targets>) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                debug!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let order = targets.turn();
        tokio::spawn(async move {
            // No live replica: the connection is closed (dropped) at once.
            for target in order {
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
                    Ok(Ok(upstream)) => {
                        relay(client, upstream, peer, target).await;
                        return;
                    }
                    Ok(Err(error)) => debug!(%target, %error, "replica refused a connection; trying the next"),
                    Err(_) => debug!(%target, "replica did not accept in time; trying the next"),
                }
            }
        });
    }
}

async fn relay(mut client: TcpStream, mut upstream: TcpStream, peer: SocketAddr, target: SocketAddr) {
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        debug!(%peer, %target, %error, "service connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// A server that answers every connection with `name` and closes.
    async fn named_server(name: &'static str) -> SocketAddr {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let _ = stream.write_all(name.as_bytes()).await;
            }
        });
        address
    }

    async fn read_through(port: u16) -> String {
        let mut stream = TcpStream::connect((LOCALHOST, port)).await.unwrap();
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text).await;
        text
    }

    #[tokio::test]
    async fn connections_go_round_robin_and_none_without_replicas() {
        let balancer = Balancer::bind(LOCALHOST, 0).await.unwrap();
        assert_eq!(read_through(balancer.port()).await, "", "no replica: closed at once");
        balancer.set_targets(vec![named_server("a").await, named_server("b").await]);
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(read_through(balancer.port()).await);
        }
        seen.sort();
        assert_eq!(seen, ["a", "a", "b", "b"]);
    }

    #[tokio::test]
    async fn a_dead_replica_is_skipped_and_a_dropped_balancer_stops_listening() {
        let dead = {
            let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
            listener.local_addr().unwrap()
        };
        let balancer = Balancer::bind(LOCALHOST, 0).await.unwrap();
        balancer.set_targets(vec![dead, named_server("alive").await]);
        for _ in 0..3 {
            assert_eq!(read_through(balancer.port()).await, "alive");
        }
        let port = balancer.port();
        drop(balancer);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(TcpStream::connect((LOCALHOST, port)).await.is_err());
        let again = Balancer::bind(LOCALHOST, port)
            .await
            .expect("the port can be bound again");
        assert_eq!(again.port(), port);
    }
}
