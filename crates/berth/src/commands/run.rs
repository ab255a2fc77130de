//! `berth run`: creates a sandbox from an image or a template and prints its id.

use berth_api::{Egress, Hardening, NetworkPolicy, NumberOrString, SandboxRequest};
use berth_client::{BerthClient, CreateOptions};
use clap::{ArgGroup, Args};

use super::parse_key_value;
use crate::output::emit_line;

#[derive(Debug, Clone, Args)]
// An image or a template, or both: with a template the positionals are the command.
#[command(group(ArgGroup::new("source").required(true).multiple(true).args(["image", "template", "snapshot"])))]
pub struct RunArgs {
    /// Set an environment variable in the sandbox (repeatable)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,
    /// Set a label on the sandbox (repeatable)
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub labels: Vec<(String, String)>,
    /// CPUs: 2, 0.5, 500m [default: the server's]
    #[arg(long, value_name = "CPUS")]
    pub cpu: Option<String>,
    /// Memory: 512Mi, 1Gi [default: the server's]
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Most the sandbox may write to its filesystem: 10Gi, 512Mi... [default: unlimited; needs a
    /// storage driver that can enforce it]
    #[arg(long, value_name = "SIZE")]
    pub disk: Option<String>,
    /// Time to live: 90s, 30m, 1h30m [default: the server's]
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// Longest it may live, renewals included: 8h [default: the server's --max-lifetime, if any]
    #[arg(long, value_name = "DURATION")]
    pub max_lifetime: Option<String>,
    /// Pause it after this long without exec, file, proxy or log requests; the next wakes it
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// Stop it (files kept, memory freed) after sleeping this long; the next request starts it again
    #[arg(long, value_name = "DURATION", requires = "idle_timeout")]
    pub hibernate_after: Option<String>,
    /// Let time asleep count against the TTL [default: it does not; the deadline moves on]
    #[arg(long)]
    pub ttl_counts_idle: bool,
    /// Restart a main process that exits non-zero: `on-failure:N` (at most N times) or `never`
    #[arg(long, value_name = "POLICY", value_parser = parse_restart)]
    pub restart: Option<berth_core::Restart>,
    /// Mount one of your volumes: NAME:/path or NAME:/path:ro (repeatable; `berth volume create`
    /// makes them)
    #[arg(short = 'v', long = "volume", value_name = "NAME:PATH[:ro]", value_parser = parse_volume)]
    pub volumes: Vec<berth_core::VolumeMount>,
    /// Publish a container TCP port on the host (repeatable)
    #[arg(short = 'p', long = "publish", value_name = "PORT")]
    pub ports: Vec<u16>,
    /// Working directory inside the sandbox
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User to run as: name, uid, name:group or uid:gid
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,
    /// OCI runtime to run under: runc, runsc (gVisor), crun... [default: the engine's]
    #[arg(long, value_name = "NAME")]
    pub runtime: Option<String>,
    /// Mount the root filesystem read-only (/tmp stays writable, as a tmpfs)
    #[arg(long)]
    pub read_only: bool,
    /// Drop capabilities: only ALL is taken (NET_RAW is dropped from every sandbox already)
    #[arg(long, value_name = "ALL", value_parser = parse_cap_drop)]
    pub cap_drop: Option<CapDrop>,
    /// What the sandbox may reach beyond itself: allow, or deny (no way out; berth's proxy,
    /// gateway, probes and exec still reach it) [default: the server's]
    #[arg(long, value_name = "POLICY", value_parser = parse_egress)]
    pub egress: Option<Egress>,
    /// Who the sandbox belongs to [default: anonymous]
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    /// Return once the sandbox is recorded instead of waiting until it runs
    #[arg(short = 'd', long = "no-wait", visible_alias = "detach")]
    pub no_wait: bool,
    /// Makes a retried run return the first sandbox instead of creating another
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Start from this template; the other flags override its values. Every positional is then
    /// the command (no IMAGE): `berth run --template py -- python -c 1`
    #[arg(long, value_name = "NAME[:TAG]")]
    pub template: Option<String>,
    /// Start from this snapshot (`berth snapshot create`): its files and spec; the other flags
    /// override it. Every positional is then the command, as with --template
    #[arg(long, value_name = "ID", conflicts_with = "template")]
    pub snapshot: Option<String>,
    /// Image to run, e.g. busybox:latest (not with --template or --snapshot)
    pub image: Option<String>,
    /// Command to run instead of the image's default (after `--` if it has flags of its own)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// What `--cap-drop` can say: berth drops every capability or keeps its baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapDrop;

fn parse_cap_drop(value: &str) -> Result<CapDrop, String> {
    if value.eq_ignore_ascii_case("all") {
        Ok(CapDrop)
    } else {
        Err(format!(
            "`{value}`: berth drops all capabilities or none beyond NET_RAW: use --cap-drop ALL"
        ))
    }
}

/// The image and command the positionals stand for: `IMAGE [CMD...]`, or only `CMD...` with a
/// template (clap cannot tell the two apart, so the first word lands in `image`).
fn image_and_command(args: &RunArgs) -> (Option<String>, Vec<String>) {
    if args.template.is_some() || args.snapshot.is_some() {
        (None, args.image.iter().chain(&args.command).cloned().collect())
    } else {
        (args.image.clone(), args.command.clone())
    }
}

/// The create request `args` stand for. Quantities go as written; the server parses them.
pub fn build_request(args: &RunArgs) -> SandboxRequest {
    let (image, command) = image_and_command(args);
    SandboxRequest {
        image,
        command: (!command.is_empty()).then_some(command),
        env: args.env.iter().cloned().collect(),
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        labels: args.labels.iter().cloned().collect(),
        ports: args.ports.clone(),
        cpu: args.cpu.clone().map(NumberOrString::String),
        memory: args.memory.clone().map(NumberOrString::String),
        disk: args.disk.clone().map(NumberOrString::String),
        ttl: args.ttl.clone().map(NumberOrString::String),
        max_lifetime: args.max_lifetime.clone().map(NumberOrString::String),
        idle_timeout: args.idle_timeout.clone().map(NumberOrString::String),
        hibernate_after: args.hibernate_after.clone().map(NumberOrString::String),
        ttl_counts_idle: args.ttl_counts_idle.then_some(true),
        owner: args.owner.clone(),
        template: args.template.clone(),
        readiness: None,
        runtime: args.runtime.clone(),
        hardening: (args.read_only || args.cap_drop.is_some()).then_some(Hardening {
            read_only_rootfs: args.read_only,
            drop_all_capabilities: args.cap_drop.is_some(),
        }),
        network: args.egress.map(|egress| NetworkPolicy { egress }.to_request()),
        restart: args.restart.map(berth_core::Restart::to_request),
        volumes: args.volumes.clone(),
        snapshot: args.snapshot.clone(),
    }
}

/// `NAME:/path` or `NAME:/path:ro`, as `docker run -v` writes a named volume.
fn parse_volume(value: &str) -> Result<berth_core::VolumeMount, String> {
    let mut parts = value.splitn(3, ':');
    let (Some(name), Some(path)) = (parts.next(), parts.next()) else {
        return Err(format!("`{value}`: write NAME:/path or NAME:/path:ro"));
    };
    let read_only = match parts.next() {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(other) => return Err(format!("`{other}`: the mode of a volume is ro or rw")),
    };
    Ok(berth_core::VolumeMount {
        name: name.to_owned(),
        path: path.to_owned(),
        read_only,
    })
}

/// `never` (or `no`), or `on-failure:N` as `docker run --restart` writes it.
fn parse_restart(value: &str) -> Result<berth_core::Restart, String> {
    match value {
        "never" | "no" => Ok(berth_core::Restart::Never),
        _ => {
            let count = value
                .strip_prefix("on-failure:")
                .and_then(|count| count.parse::<u64>().ok())
                .ok_or_else(|| format!("`{value}`: use `never` or `on-failure:N` (N from 1 to 100)"))?;
            berth_core::Restart::from_request(&serde_json::json!({ "on_failure": count }))
        }
    }
}

fn parse_egress(value: &str) -> Result<Egress, String> {
    value.parse()
}

pub async fn run(client: &BerthClient, args: &RunArgs) -> anyhow::Result<()> {
    let options = CreateOptions {
        wait: !args.no_wait,
        idempotency_key: args.idempotency_key.clone(),
    };
    let sandbox = client.create(&build_request(args), options).await?;
    emit_line(&sandbox.id)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(args: &[&str]) -> Result<RunArgs, clap::Error> {
        TestCli::try_parse_from(std::iter::once("run").chain(args.iter().copied())).map(|cli| cli.run)
    }

    #[test]
    fn every_flag_lands_in_the_request() {
        let args = parse(&[
            "-e",
            "A=1",
            "--env",
            "B=x=y",
            "-l",
            "team=ml",
            "--cpu",
            "0.5",
            "--memory",
            "1Gi",
            "--disk",
            "10Gi",
            "--ttl",
            "90",
            "-p",
            "80",
            "-p",
            "8080",
            "--workdir",
            "/w",
            "--user",
            "1000:1000",
            "--owner",
            "alice",
            "--runtime",
            "runsc",
            "--read-only",
            "--cap-drop",
            "all",
            "--egress",
            "deny",
            "-v",
            "data:/data",
            "--volume",
            "models:/models:ro",
            "-d",
            "--idempotency-key",
            "k1",
            "busybox:latest",
            "--",
            "sh",
            "-c",
            "echo hi",
        ])
        .unwrap();
        assert!(args.no_wait);
        assert_eq!(args.idempotency_key.as_deref(), Some("k1"));
        let request = build_request(&args);
        assert_eq!(
            request,
            SandboxRequest {
                image: Some("busybox:latest".into()),
                command: Some(vec!["sh".into(), "-c".into(), "echo hi".into()]),
                env: BTreeMap::from([("A".into(), "1".into()), ("B".into(), "x=y".into())]),
                workdir: Some("/w".into()),
                user: Some("1000:1000".into()),
                labels: BTreeMap::from([("team".into(), "ml".into())]),
                ports: vec![80, 8080],
                cpu: Some(NumberOrString::String("0.5".into())),
                memory: Some(NumberOrString::String("1Gi".into())),
                disk: Some(NumberOrString::String("10Gi".into())),
                ttl: Some(NumberOrString::String("90".into())),
                max_lifetime: None,
                idle_timeout: None,
                hibernate_after: None,
                ttl_counts_idle: None,
                owner: Some("alice".into()),
                template: None,
                readiness: None,
                runtime: Some("runsc".into()),
                hardening: Some(Hardening {
                    read_only_rootfs: true,
                    drop_all_capabilities: true,
                }),
                network: Some(berth_api::NetworkRequest {
                    egress: Some(serde_json::json!("deny")),
                }),
                restart: None,
                volumes: vec![
                    berth_core::VolumeMount {
                        name: "data".into(),
                        path: "/data".into(),
                        read_only: false,
                    },
                    berth_core::VolumeMount {
                        name: "models".into(),
                        path: "/models".into(),
                        read_only: true,
                    },
                ],
                snapshot: None,
            }
        );
        // Numbers go as written, in JSON strings.
        let json = serde_json::to_value(&request).unwrap();
        assert_eq!(json["cpu"], "0.5");
        assert_eq!(json["ttl"], "90");
    }

    #[test]
    fn bare_run_waits_and_runs_the_default_command() {
        let args = parse(&["busybox"]).unwrap();
        assert!(!args.no_wait);
        let request = build_request(&args);
        assert_eq!(request.command, None);
        assert_eq!(request.cpu, None);
        assert!(request.env.is_empty());
    }

    #[test]
    fn the_command_may_follow_the_image_without_dashes() {
        let args = parse(&["busybox", "sleep", "-x", "10"]).unwrap();
        assert_eq!(args.command, ["sleep", "-x", "10"]);
    }

    #[test]
    fn malformed_key_values_are_usage_errors_naming_the_flag() {
        for (flag, value) in [("-e", "NOEQUALS"), ("--env", "=1"), ("-l", "team")] {
            let error = parse(&[flag, value, "busybox"]).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{flag} {value}");
            let text = error.to_string();
            let long = if flag == "-l" { "--label" } else { "--env" };
            assert!(text.contains(long) && text.contains(value), "{text}");
        }
    }

    #[test]
    fn an_image_or_a_template_is_required_and_ports_are_numbers() {
        let error = parse(&[]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("--template"), "{error}");
        assert_eq!(parse(&["-e", "A=1"]).unwrap_err().exit_code(), 2);
        assert_eq!(parse(&["-p", "http", "busybox"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn with_a_template_every_positional_is_the_command() {
        let args = parse(&[
            "--template",
            "py:3.12",
            "--ttl",
            "5m",
            "-e",
            "A=1",
            "--",
            "python",
            "-c",
            "1",
        ])
        .unwrap();
        assert_eq!(
            build_request(&args),
            SandboxRequest {
                template: Some("py:3.12".into()),
                image: None,
                command: Some(vec!["python".into(), "-c".into(), "1".into()]),
                env: BTreeMap::from([("A".into(), "1".into())]),
                ttl: Some(NumberOrString::String("5m".into())),
                ..SandboxRequest::default()
            }
        );
        let args = parse(&["--template", "py", "sleep", "10"]).unwrap();
        assert_eq!(build_request(&args).command, Some(vec!["sleep".into(), "10".into()]));
        // No positional: the template's own command runs.
        let bare = build_request(&parse(&["--template", "py"]).unwrap());
        assert_eq!((bare.image, bare.command), (None, None));
        assert_eq!(bare.template.as_deref(), Some("py"));
    }
}
