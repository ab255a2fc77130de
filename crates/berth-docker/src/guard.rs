//! The host guard: firewall rules in the engine host's own netfilter that keep every sandbox on a
//! network berth made from the host itself, from link-local addresses and from private ranges.
//!
//! The engine filters what it forwards between networks, not what the host accepts: without this,
//! a sandbox reaches any listener of the engine host at its network's gateway address (or the
//! host's other addresses), whatever its egress policy. berth cannot write a remote engine host's
//! firewall itself, so the engine does it for berth: a one-shot container in the host's network
//! namespace with `NET_ADMIN` (and no other capability) runs `nft` with the ruleset below, from an
//! image berth builds on each engine out of the `nft` program of its own machine and the libraries
//! it loads (no registry needed). Sandboxes never get `NET_ADMIN`, and the rules live in the host's
//! namespace, out of their reach.
//!
//! Every bridge berth makes is named `b<scope tag>…` (the tag is six hex digits of the cluster's
//! name), and the ruleset of a scope matches only its own bridges, so that two deployments on one
//! engine keep their own private ranges. The ruleset replaces the scope's table in one transaction:
//! applying it again (each start, each re-subscription to a restarted engine) is harmless.
//!
//! What the rules say, for packets arriving from one of the scope's bridges:
//! - to the host itself (the `input` hook): only replies to connections the host opened, so that
//!   berth's proxy, gateway and readiness probes keep working; nothing new is accepted;
//! - forwarded beyond berth's bridges (the `forward` hook): nothing to link-local addresses or the
//!   private ranges, and no IPv6 at all (berth's networks have none; the rule closes it anyway).
//!   Traffic between containers of one berth network stays the engine's business (a stack's
//!   services talk; `enable_icc=false` keeps sandboxes apart).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_core::Cidr;
use sha2::{Digest, Sha256};

/// Whether berth writes the host guard's rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GuardMode {
    /// Never; sandboxes reach the engine host's listeners. The library's default (a program
    /// embedding the runtime writes no firewall it did not ask for); `berth serve`'s is `Auto`.
    #[default]
    Off,
    /// Writes them when the engine lets berth (a rootful engine that grants `NET_ADMIN` to a
    /// container in the host's network namespace) and reports on `/health` why not otherwise.
    Auto,
    /// As `Auto`, but berth does not start against an engine where the rules cannot be written.
    Required,
}

/// The host guard's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostGuardConfig {
    pub mode: GuardMode,
    /// What the scope tag is made from: the cluster's name.
    pub scope: String,
    /// The ranges a guarded sandbox does not reach (link-local ones are never reached whatever
    /// this says).
    pub private_ranges: Vec<Cidr>,
    /// The `nft` program to build the guard's image from; `None`: the first `nft` on `PATH`,
    /// else `/usr/sbin/nft`.
    pub nft: Option<PathBuf>,
}

impl Default for HostGuardConfig {
    fn default() -> Self {
        HostGuardConfig {
            mode: GuardMode::Off,
            scope: "berth".to_owned(),
            private_ranges: default_private_ranges(),
            nft: None,
        }
    }
}

/// [`Cidr::DEFAULT_PRIVATE`], parsed.
pub fn default_private_ranges() -> Vec<Cidr> {
    Cidr::DEFAULT_PRIVATE
        .iter()
        .filter_map(|range| range.parse().ok())
        .collect()
}

/// Six hex digits naming a scope in bridge and table names (an interface name holds 15 bytes;
/// 24 bits keep the few deployments of one engine apart).
pub fn scope_tag(scope: &str) -> String {
    let digest = Sha256::digest(scope.as_bytes());
    digest.iter().take(3).map(|byte| format!("{byte:02x}")).collect()
}

/// The bridge name of one of the scope's networks: `b`, the tag, then eight characters of `key`
/// (a sandbox id's first eight hex digits are random enough to keep bridges apart).
pub(crate) fn bridge_name(tag: &str, key: &str) -> String {
    let key: String = key.chars().filter(char::is_ascii_alphanumeric).take(8).collect();
    format!("b{tag}{key}")
}

fn table_name(tag: &str) -> String {
    format!("berth_{tag}")
}

/// The nft script that (re)writes the scope's table in one transaction.
pub(crate) fn ruleset(tag: &str, private_ranges: &[Cidr]) -> String {
    let table = table_name(tag);
    let bridges = format!("\"b{tag}*\"");
    let link_local: Vec<Cidr> = Cidr::LINK_LOCAL.iter().filter_map(|range| range.parse().ok()).collect();
    let blocked_v4: Vec<String> = link_local
        .iter()
        .chain(private_ranges)
        .filter(|range| range.is_ipv4())
        .map(Cidr::to_string)
        .collect();
    let mut script = format!(
        "table inet {table}\n\
         delete table inet {table}\n\
         table inet {table} {{\n\
         chain input {{\n\
         type filter hook input priority -5; policy accept;\n\
         iifname {bridges} ct state established,related accept\n\
         iifname {bridges} counter drop comment \"a sandbox opening a connection to the engine host\"\n\
         }}\n\
         chain forward {{\n\
         type filter hook forward priority -5; policy accept;\n\
         iifname {bridges} ct state established,related accept\n\
         iifname {bridges} meta nfproto ipv6 counter drop comment \"IPv6 from a sandbox\"\n"
    );
    if !blocked_v4.is_empty() {
        script.push_str(&format!(
            "iifname {bridges} oifname != {bridges} ip daddr {{ {} }} counter drop comment \"a sandbox reaching a link-local or private address\"\n",
            blocked_v4.join(", ")
        ));
    }
    script.push_str("}\n}\n");
    script
}

/// The guard's image: its tag (named by what is in it) and its build context.
pub(crate) struct GuardImage {
    pub tag: String,
    pub context: Vec<u8>,
}

/// Where berth's own container image lists the files of the guard's image (`nft` and the
/// libraries it loads, at their paths in that image), written by `deploy/docker/assemble-rootfs.sh`:
/// the image has no `ldd` to ask.
pub(crate) const PACKED_GUARD_MANIFEST: &str = "/usr/lib/berth/host-guard.files";

/// Builds the context of the guard's image: `nft` and every library it loads, at their own paths
/// in a scratch image. The files are `nft` (given, else as [`PACKED_GUARD_MANIFEST`] lists them,
/// else the first on `PATH`) and what `ldd` says it loads.
pub(crate) fn guard_image(nft: Option<&Path>) -> Result<GuardImage, String> {
    let paths = match nft {
        Some(path) => with_libraries(path)?,
        None => match std::fs::read_to_string(PACKED_GUARD_MANIFEST) {
            Ok(manifest) => manifest
                .lines()
                .filter(|line| !line.trim().is_empty())
                .map(str::to_owned)
                .collect(),
            Err(_) => with_libraries(
                &find_nft().ok_or("no `nft` program on this machine (install nftables, or give --host-guard-nft)")?,
            )?,
        },
    };
    let mut files = BTreeMap::new();
    for (index, path) in paths.iter().enumerate() {
        // The first is the program, which the image runs as /usr/sbin/nft wherever it came from.
        let at = if index == 0 {
            "usr/sbin/nft"
        } else {
            path.trim_start_matches('/')
        };
        files.insert(at.to_owned(), read(Path::new(path))?);
    }
    let dockerfile = "FROM scratch\nCOPY rootfs/ /\nENTRYPOINT [\"/usr/sbin/nft\"]\n";
    let mut digest = Sha256::new();
    digest.update(dockerfile.as_bytes());
    let mut archive = tar::Builder::new(Vec::new());
    append(&mut archive, "Dockerfile", dockerfile.as_bytes(), 0o644)?;
    for (path, contents) in &files {
        digest.update(path.as_bytes());
        digest.update(contents);
        append(&mut archive, &format!("rootfs/{path}"), contents, 0o755)?;
    }
    let context = archive
        .into_inner()
        .map_err(|error| format!("cannot pack the host guard's image: {error}"))?;
    let digest = digest.finalize();
    let tag: String = digest.iter().take(6).map(|byte| format!("{byte:02x}")).collect();
    Ok(GuardImage {
        tag: format!("berth/host-guard:{tag}"),
        context,
    })
}

/// `program` (resolved) and the libraries `ldd` says it loads.
fn with_libraries(program: &Path) -> Result<Vec<String>, String> {
    let program = program
        .canonicalize()
        .map_err(|error| format!("cannot read `{}`: {error}", program.display()))?;
    let ldd = std::process::Command::new("ldd")
        .arg(&program)
        .output()
        .map_err(|error| format!("cannot run `ldd` to find what `{}` loads: {error}", program.display()))?;
    let mut paths = vec![program.display().to_string()];
    paths.extend(shared_libraries(&String::from_utf8_lossy(&ldd.stdout)));
    Ok(paths)
}

fn find_nft() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("nft"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/sbin/nft".into(), "/sbin/nft".into()])
        .find(|candidate| candidate.is_file())
}

/// The absolute paths in `ldd`'s output: `libx.so.1 => /lib/libx.so.1 (0x…)` and the loader's
/// own `/lib64/ld-linux-x86-64.so.2 (0x…)`.
fn shared_libraries(ldd_output: &str) -> Vec<String> {
    ldd_output
        .lines()
        .filter_map(|line| line.split_whitespace().find(|word| word.starts_with('/')))
        .map(str::to_owned)
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|error| format!("cannot read `{}`: {error}", path.display()))
}

fn append(archive: &mut tar::Builder<Vec<u8>>, path: &str, contents: &[u8], mode: u32) -> Result<(), String> {
    let mut header = tar::Header::new_gnu();
    header.set_size(contents.len() as u64);
    header.set_mode(mode);
    header.set_entry_type(tar::EntryType::Regular);
    archive
        .append_data(&mut header, path, contents)
        .map_err(|error| format!("cannot pack `{path}` into the host guard's image: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_names_fit_an_interface_name_and_carry_the_scope() {
        let tag = scope_tag("e2e-cluster");
        assert_eq!(tag.len(), 6);
        assert_ne!(tag, scope_tag("another-cluster"));
        for key in ["0123456789abcdef", "sandboxes"] {
            let name = bridge_name(&tag, key);
            assert!(name.len() <= 15, "{name}");
            assert!(name.starts_with(&format!("b{tag}")), "{name}");
        }
        assert_eq!(bridge_name("abcdef", "0123456789abcdef"), "babcdef01234567");
    }

    #[test]
    fn the_ruleset_replaces_its_table_and_closes_host_link_local_private_and_ipv6() {
        let private: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap(), "fc00::/7".parse().unwrap()];
        let script = ruleset("abcdef", &private);
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(lines[0], "table inet berth_abcdef");
        assert_eq!(lines[1], "delete table inet berth_abcdef");
        assert!(script.contains("hook input priority -5; policy accept;"));
        assert!(script.contains("iifname \"babcdef*\" counter drop"));
        assert!(script.contains("iifname \"babcdef*\" meta nfproto ipv6 counter drop"));
        assert!(script.contains("ip daddr { 169.254.0.0/16, 10.0.0.0/8 }"), "{script}");
        // IPv6 ranges go with the IPv6 rule (all of it is dropped).
        assert!(!script.contains("fc00::/7"));
        // No private range: link-local is still closed.
        assert!(ruleset("abcdef", &[]).contains("ip daddr { 169.254.0.0/16 }"));
    }

    #[test]
    fn ldd_output_gives_the_libraries_and_the_loader() {
        let output = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                      \tlibnftables.so.1 => /lib/x86_64-linux-gnu/libnftables.so.1 (0x00007f94)\n\
                      \t/lib64/ld-linux-x86-64.so.2 (0x00007f94)\n";
        assert_eq!(
            shared_libraries(output),
            ["/lib/x86_64-linux-gnu/libnftables.so.1", "/lib64/ld-linux-x86-64.so.2"]
        );
    }
}
