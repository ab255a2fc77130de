//! Where berth reaches a sandbox: the address of one of its ports, and whether an address is
//! one of its own. Pure functions of a [`Sandbox`], used by the readiness probes, the
//! env-service balancers and (through the lookup the server wires) the gateway and the proxy.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use berth_core::Sandbox;

/// Whether `address` is `sandbox`'s: its container IP (any port: the sandbox's own network), or a
/// host port it publishes.
pub fn reaches(sandbox: &Sandbox, address: SocketAddr) -> bool {
    let ip = address.ip();
    if sandbox.ip.as_deref().and_then(|text| text.parse::<IpAddr>().ok()) == Some(ip) {
        return true;
    }
    sandbox.ports.iter().any(|binding| {
        binding.host_port == address.port()
            && binding
                .host_ip
                .parse::<IpAddr>()
                .is_ok_and(|host_ip| host_ip == ip || (host_ip.is_unspecified() && ip.is_loopback()))
    })
}

/// Where berth reaches `container_port` of `sandbox`: its container IP, else the host port it is
/// published on.
pub fn sandbox_address(sandbox: &Sandbox, container_port: u16) -> Option<SocketAddr> {
    if let Some(ip) = sandbox.ip.as_deref().and_then(|text| text.parse::<IpAddr>().ok()) {
        return Some(SocketAddr::new(ip, container_port));
    }
    sandbox
        .ports
        .iter()
        .find(|binding| binding.container_port == container_port)
        .and_then(|binding| {
            let ip: IpAddr = binding.host_ip.parse().ok()?;
            let ip = if ip.is_unspecified() {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                ip
            };
            Some(SocketAddr::new(ip, binding.host_port))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::{PortBinding, SandboxRequest, SpecPolicy};
    use chrono::Utc;

    fn sandbox(ip: Option<&str>, ports: Vec<PortBinding>) -> Sandbox {
        let spec = SandboxRequest {
            image: Some("busybox".into()),
            ..SandboxRequest::default()
        }
        .validate(&SpecPolicy::default())
        .expect("a valid spec");
        let mut sandbox = Sandbox::new_pending(spec, "me".into(), "local".into(), None, Utc::now());
        sandbox.ip = ip.map(str::to_owned);
        sandbox.ports = ports;
        sandbox
    }

    fn binding(host_ip: &str, host_port: u16) -> PortBinding {
        PortBinding {
            container_port: 8081,
            host_ip: host_ip.into(),
            host_port,
        }
    }

    #[test]
    fn a_sandbox_is_reached_at_its_ip_or_its_published_ports_only() {
        let published = sandbox(Some("172.17.0.5"), vec![binding("127.0.0.1", 41000)]);
        assert!(reaches(&published, "172.17.0.5:8081".parse().unwrap()));
        assert!(reaches(&published, "172.17.0.5:9".parse().unwrap()));
        assert!(reaches(&published, "127.0.0.1:41000".parse().unwrap()));
        assert!(!reaches(&published, "127.0.0.1:41001".parse().unwrap()));
        assert!(!reaches(&published, "172.17.0.6:8081".parse().unwrap()));
        assert!(!reaches(&published, "1.1.1.1:8081".parse().unwrap()));
        let everywhere = sandbox(None, vec![binding("0.0.0.0", 41000)]);
        assert!(reaches(&everywhere, "127.0.0.1:41000".parse().unwrap()));
        assert!(!reaches(&sandbox(Some(""), Vec::new()), "0.0.0.0:80".parse().unwrap()));
    }

    #[test]
    fn the_container_ip_is_preferred_to_a_published_port() {
        let published = sandbox(Some("172.17.0.5"), vec![binding("0.0.0.0", 41000)]);
        assert_eq!(
            sandbox_address(&published, 8081),
            Some("172.17.0.5:8081".parse().unwrap())
        );
        let no_ip = sandbox(None, vec![binding("0.0.0.0", 41000)]);
        assert_eq!(sandbox_address(&no_ip, 8081), Some("127.0.0.1:41000".parse().unwrap()));
        assert_eq!(sandbox_address(&no_ip, 22), None);
    }
}
