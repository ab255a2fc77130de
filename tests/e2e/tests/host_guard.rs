//! The host guard through the real server and engine: a sandbox on one of berth's networks reaches
//! no port of the engine host (whatever address it tries), no link-local address, and no private
//! range unless the server's `--private-ranges` leaves it out — while berth still reaches it
//! (readiness probe, proxy, exec), and the rules outlive a `kill -9` of berth.
//!
//! "The outside" is this machine only: a listener this test opens on 0.0.0.0, and a network
//! namespace it creates (`ip netns`) with a private and a link-local address, each serving HTTP.
//! A sandbox of a server in `engine` mode (the engine's default bridge, which the guard does not
//! cover) is the control that shows each of them answers a container at all.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::io::{Read, Write};
use std::process::Command;

use berth_e2e::{ServerOptions, TestServer, answered_from, docker_inspect, web_server};
use reqwest::StatusCode;
use serde_json::Value;

/// An HTTP listener on 0.0.0.0 of this host, answering `host` to every request.
struct HostListener {
    port: u16,
}

impl HostListener {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut request = [0_u8; 512];
                let _ = stream.read(&mut request);
                let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhost\n");
            }
        });
        HostListener { port }
    }
}

/// A network namespace standing for hosts beyond the engine, reached through a veth pair from
/// the host: `private_ip` (in 10.0.0.0/8) and `link_local_ip` (in 169.254.0.0/16), both serving
/// HTTP on port 80 with busybox. Removed when dropped.
struct OutsideNamespace {
    name: String,
    host_side: String,
    private_ip: String,
    link_local_ip: String,
}

fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .expect("the `ip` program (iproute2)");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl OutsideNamespace {
    fn start() -> Self {
        let routes = String::from_utf8(Command::new("ip").args(["-4", "route"]).output().unwrap().stdout).unwrap();
        // A /24 of 10.213.0.0/16 that nothing on this machine routes yet.
        let seed = random_u32();
        let subnet = (0..250_u32)
            .map(|step| (seed.wrapping_add(step) % 250 + 2) as u8)
            .find(|third| !routes.contains(&format!("10.213.{third}.")))
            .expect("a free 10.213.x.0/24");
        let tag = format!("{:06x}", random_u32() & 0xff_ffff);
        let name = format!("berth-t-{tag}");
        let host_side = format!("btt{tag}h");
        let inner_side = format!("btt{tag}n");
        ip(&["netns", "add", &name]);
        let outside = OutsideNamespace {
            name: name.clone(),
            host_side: host_side.clone(),
            private_ip: format!("10.213.{subnet}.2"),
            link_local_ip: format!("169.254.{subnet}.2"),
        };
        ip(&["link", "add", &host_side, "type", "veth", "peer", "name", &inner_side]);
        ip(&["link", "set", &inner_side, "netns", &name]);
        ip(&["addr", "add", &format!("10.213.{subnet}.1/24"), "dev", &host_side]);
        ip(&["addr", "add", &format!("169.254.{subnet}.1/24"), "dev", &host_side]);
        ip(&["link", "set", &host_side, "up"]);
        let inside = |args: &[&str]| {
            let mut full = vec!["netns", "exec", name.as_str(), "ip"];
            full.extend_from_slice(args);
            ip(&full);
        };
        inside(&["addr", "add", &format!("{}/24", outside.private_ip), "dev", &inner_side]);
        inside(&[
            "addr",
            "add",
            &format!("{}/24", outside.link_local_ip),
            "dev",
            &inner_side,
        ]);
        inside(&["link", "set", &inner_side, "up"]);
        inside(&["link", "set", "lo", "up"]);
        let served = Command::new("ip")
            .args(["netns", "exec", &name, "busybox", "httpd", "-p", "80", "-h", "/etc"])
            .status()
            .unwrap();
        assert!(served.success(), "busybox httpd in {name}");
        outside
    }
}

fn random_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    nanos ^ std::process::id().rotate_left(13)
}

impl Drop for OutsideNamespace {
    fn drop(&mut self) {
        // The namespace's httpd dies with it; the host side of the pair goes with its peer.
        let _ = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|pids| {
                for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                    let _ = Command::new("kill").arg(pid).status();
                }
            });
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        let _ = Command::new("ip").args(["link", "del", &self.host_side]).status();
    }
}

/// The gateway address of the one network the sandbox's container is on: the engine host, as the
/// sandbox sees it.
fn gateway_of(sandbox: &Value) -> String {
    let container = docker_inspect(sandbox["container_id"].as_str().unwrap()).unwrap();
    let networks = container["NetworkSettings"]["Networks"].as_object().unwrap();
    assert_eq!(networks.len(), 1, "{networks:?}");
    networks.values().next().unwrap()["Gateway"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The host's IPv4 addresses on interfaces that are not loopback nor a container bridge.
fn host_addresses() -> Vec<String> {
    let output = Command::new("ip").args(["-4", "-o", "addr", "show"]).output().unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let interface = *words.get(1)?;
            let address = words.get(3)?.split('/').next()?;
            let bridge = std::path::Path::new(&format!("/sys/class/net/{interface}/bridge")).exists();
            (interface != "lo" && !bridge).then(|| address.to_owned())
        })
        .collect()
}

async fn host_guard_of(server: &TestServer) -> String {
    let health = server.get_json("/health").await;
    health["confinement"]["local"]["host_guard"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_guarded_sandbox_reaches_no_port_of_the_engine_host_and_berth_still_reaches_it() {
    let listener = HostListener::start();
    let isolated = TestServer::start_with(ServerOptions {
        args: vec!["--sandbox-network".into(), "isolated".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let open = TestServer::start().await.unwrap();
    assert_eq!(host_guard_of(&isolated).await, "active", "{}", isolated.log());

    // The control: a sandbox on the engine's default bridge, which is not berth's to guard,
    // reaches the listener at its gateway, so the listener does answer containers.
    let unguarded = web_server(&open, "allow").await;
    let unguarded_gateway = gateway_of(&unguarded);
    assert!(
        answered_from(
            &open,
            unguarded["id"].as_str().unwrap(),
            &unguarded_gateway,
            listener.port
        )
        .await,
        "the host listener does not answer a container on the default bridge at {unguarded_gateway}"
    );

    // A sandbox on berth's isolated network, and a sealed one (its own internal network), both
    // ready: berth's readiness probe reached them from the host.
    let guarded = web_server(&isolated, "allow").await;
    let sealed = web_server(&open, "deny").await;
    let mut addresses = host_addresses();
    for (server, sandbox) in [(&isolated, &guarded), (&open, &sealed)] {
        let id = sandbox["id"].as_str().unwrap();
        let gateway = gateway_of(sandbox);
        addresses.push(gateway);
        for address in &addresses {
            assert!(
                !answered_from(server, id, address, listener.port).await,
                "sandbox {id} reached the host listener at {address}:{}",
                listener.port
            );
        }
        addresses.pop();
        // berth still reaches it: exec (above), and the proxy to its port.
        let response = server
            .http()
            .get(format!("{}/v1/sandboxes/{id}/proxy/8080/hostname", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "the proxy to {id}");
        // And the sandbox still reaches itself.
        assert!(answered_from(server, id, sandbox["ip"].as_str().unwrap(), 8080).await);
    }

    // The rules are the engine host's, not berth's: they hold with berth killed.
    let container = guarded["container_id"].as_str().unwrap().to_owned();
    let gateway = gateway_of(&guarded);
    let mut isolated = isolated;
    isolated.kill9();
    let line = format!(
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {gateway} {}",
        listener.port
    );
    let after = berth_e2e::docker(&["exec", &container, "sh", "-c", &line]).unwrap_or_default();
    assert!(!after.contains(" 200 OK"), "reached the host after berth died: {after}");
}

#[tokio::test]
async fn guarded_sandboxes_reach_no_link_local_address_nor_private_ranges_the_server_names() {
    let outside = OutsideNamespace::start();
    let strict = TestServer::start_with(ServerOptions {
        args: vec!["--sandbox-network".into(), "isolated".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let relaxed = TestServer::start_with(ServerOptions {
        args: vec![
            "--sandbox-network".into(),
            "isolated".into(),
            "--private-ranges".into(),
            "192.168.0.0/16,fc00::/7".into(),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let open = TestServer::start().await.unwrap();

    // The control: from the engine's default bridge both addresses answer.
    let unguarded = web_server(&open, "allow").await;
    let unguarded_id = unguarded["id"].as_str().unwrap();
    for address in [&outside.private_ip, &outside.link_local_ip] {
        assert!(
            answered_from(&open, unguarded_id, address, 80).await,
            "the outside namespace does not answer a container at {address}"
        );
    }

    let strict_sandbox = web_server(&strict, "allow").await;
    let strict_id = strict_sandbox["id"].as_str().unwrap();
    assert!(
        !answered_from(&strict, strict_id, &outside.private_ip, 80).await,
        "a guarded sandbox reached the private {}",
        outside.private_ip
    );
    assert!(
        !answered_from(&strict, strict_id, &outside.link_local_ip, 80).await,
        "a guarded sandbox reached the link-local {}",
        outside.link_local_ip
    );

    // 10.0.0.0/8 is not private to the relaxed server: its sandboxes reach it; link-local stays
    // closed whatever the server says. Each server's rules cover its own bridges only.
    let relaxed_sandbox = web_server(&relaxed, "allow").await;
    let relaxed_id = relaxed_sandbox["id"].as_str().unwrap();
    assert!(
        answered_from(&relaxed, relaxed_id, &outside.private_ip, 80).await,
        "--private-ranges without 10/8 still kept {} closed\n{}",
        outside.private_ip,
        relaxed.log()
    );
    assert!(
        !answered_from(&relaxed, relaxed_id, &outside.link_local_ip, 80).await,
        "a guarded sandbox reached the link-local {}",
        outside.link_local_ip
    );
    assert!(
        !answered_from(&strict, strict_id, &outside.private_ip, 80).await,
        "the relaxed server's rules opened the strict server's sandbox"
    );
}

#[tokio::test]
async fn a_bad_private_range_or_guard_mode_is_refused_at_start_naming_the_setting() {
    for (args, says) in [
        (["--private-ranges", "10.0.0.1/8"], "the range is 10.0.0.0/8"),
        (["--host-guard", "sometimes"], "`auto`, `required` or `off`"),
    ] {
        let output = Command::new(berth_e2e::berth_binary())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                "/nonexistent-berth-e2e",
            ])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(
            stderr.contains(says) && stderr.contains(args[0].trim_start_matches("--")),
            "{args:?}: {stderr}"
        );
    }
}
