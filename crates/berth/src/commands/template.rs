//! `berth template`: creates (from flags or a JSON/YAML file), lists, inspects, deletes and
//! builds (`build.rs`) the templates that `berth run --template` starts sandboxes from.

mod build;

use std::path::{Path, PathBuf};

use anyhow::Context;
use berth_api::{NumberOrString, PoolRequest, TemplateRequest, TemplateView};
use berth_client::BerthClient;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use tokio::io::AsyncReadExt;

use super::{for_each_id, inspect_each, parse_key_value, shorten};
use crate::output::{self, DocFormat, ListFormat, emit, emit_line, human_duration, render_table};

/// Longest error shown in the `template ls` table; `inspect` shows it whole.
const MAX_ERROR_CELL: usize = 40;

#[derive(Debug, Clone, Subcommand)]
pub enum TemplateCommand {
    /// Create a template from flags or a file and print its NAME:TAG
    Create(Box<CreateArgs>),
    /// List templates
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show templates in full (JSON or YAML)
    Inspect(InspectArgs),
    /// Delete templates (sandboxes made from them keep running)
    Rm(RmArgs),
    /// Build a template's image from a directory with a Dockerfile and print the image
    Build(build::BuildArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// Read the whole template request from this JSON or YAML file (`-` for stdin) instead of flags
    #[arg(
        short = 'f',
        long,
        value_name = "FILE",
        conflicts_with_all = [
            "name", "image", "snapshot", "tag", "env", "labels", "cpu", "memory", "ttl", "ports", "workdir", "user",
            "runtime", "pool_min_ready", "pool_max_idle_age", "command",
        ]
    )]
    pub file: Option<PathBuf>,
    /// Create it, or replace the template of that NAME:TAG if there is one
    #[arg(long)]
    pub replace: bool,
    /// Template name: lowercase letters, digits and `-`, e.g. python-3
    #[arg(required_unless_present = "file")]
    pub name: Option<String>,
    /// Image its sandboxes run, e.g. busybox:latest
    #[arg(long, value_name = "IMAGE", required_unless_present_any = ["file", "snapshot"], conflicts_with = "snapshot")]
    pub image: Option<String>,
    /// Start its sandboxes (pooled ones too) from this snapshot, with the snapshot's spec under these flags
    #[arg(long, value_name = "SNAPSHOT")]
    pub snapshot: Option<String>,
    /// Tag [default: latest]
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Set an environment variable in its sandboxes (repeatable)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,
    /// Set a label on its sandboxes (repeatable)
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub labels: Vec<(String, String)>,
    /// CPUs: 2, 0.5, 500m [default: the server's]
    #[arg(long, value_name = "CPUS")]
    pub cpu: Option<String>,
    /// Memory: 512Mi, 1Gi [default: the server's]
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Most each sandbox may write to its filesystem: 10Gi [default: unlimited]
    #[arg(long, value_name = "SIZE")]
    pub disk: Option<String>,
    /// What its sandboxes may reach: allow, or deny (no way out) [default: the server's]
    #[arg(long, value_name = "POLICY", value_parser = |value: &str| value.parse::<berth_api::Egress>())]
    pub egress: Option<berth_api::Egress>,
    /// Default time to live of its sandboxes: 90s, 30m, 1h30m [default: the server's]
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// Longest its sandboxes may live, renewals included: 8h [default: the server's limit, if any]
    #[arg(long, value_name = "DURATION")]
    pub max_lifetime: Option<String>,
    /// Pause its sandboxes after this long without exec, file, proxy or log requests
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// Stop its sandboxes (files kept, memory freed) after sleeping this long; the next request starts them again
    #[arg(long, value_name = "DURATION", requires = "idle_timeout")]
    pub hibernate_after: Option<String>,
    /// Let time asleep count against the TTL [default: it does not; the deadline moves on]
    #[arg(long)]
    pub ttl_counts_idle: bool,
    /// Publish a container TCP port on the host (repeatable)
    #[arg(short = 'p', long = "publish", value_name = "PORT")]
    pub ports: Vec<u16>,
    /// Working directory inside its sandboxes
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User to run as: name, uid, name:group or uid:gid
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,
    /// OCI runtime its sandboxes run under: runc, runsc (gVisor), crun... [default: the engine's]
    #[arg(long, value_name = "NAME")]
    pub runtime: Option<String>,
    /// Keep this many sandboxes started and ready to claim (a warm pool)
    #[arg(long, value_name = "N")]
    pub pool_min_ready: Option<u32>,
    /// Replace a pooled sandbox idle for this long: 30m, 1h [default: 1h]
    #[arg(long, value_name = "DURATION")]
    pub pool_max_idle_age: Option<String>,
    /// Command to run instead of the image's default (after `--`)
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    /// Print only the references (NAME:TAG)
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = ListFormat::Table)]
    pub output: ListFormat,
}

#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// Templates: NAME (tag latest) or NAME:TAG
    #[arg(required = true, value_name = "NAME[:TAG]")]
    pub references: Vec<String>,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = DocFormat::Json)]
    pub output: DocFormat,
}

#[derive(Debug, Clone, Args)]
pub struct RmArgs {
    /// Templates: NAME (tag latest) or NAME:TAG
    #[arg(required = true, value_name = "NAME[:TAG]")]
    pub references: Vec<String>,
}

pub async fn run(client: &BerthClient, command: &TemplateCommand) -> anyhow::Result<()> {
    match command {
        TemplateCommand::Create(args) => create(client, args).await,
        TemplateCommand::Ls(args) => list(client, args).await,
        TemplateCommand::Inspect(args) => inspect(client, args).await,
        TemplateCommand::Rm(args) => {
            for_each_id(&args.references, |reference| async move {
                client.delete_template(&reference).await
            })
            .await
        }
        TemplateCommand::Build(args) => build::run(client, args).await,
    }
}

/// The template request the flags stand for. Quantities go as written; the server parses them.
pub fn build_request(args: &CreateArgs) -> TemplateRequest {
    let pool = (args.pool_min_ready.is_some() || args.pool_max_idle_age.is_some()).then(|| PoolRequest {
        min_ready: args.pool_min_ready,
        max_idle_age: args.pool_max_idle_age.clone().map(NumberOrString::String),
    });
    TemplateRequest {
        name: args.name.clone(),
        tag: args.tag.clone(),
        image: args.image.clone(),
        snapshot: args.snapshot.clone(),
        command: (!args.command.is_empty()).then(|| args.command.clone()),
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
        pool,
        // Probes and hardening come from a template file (`-f`), not from flags.
        readiness: None,
        runtime: args.runtime.clone(),
        hardening: None,
        network: args
            .egress
            .map(|egress| berth_api::NetworkPolicy { egress }.to_request()),
        restart: None,
    }
}

/// A template request read from JSON (text starting with `{`) or YAML; `source` names it in errors.
pub fn parse_request(text: &str, source: &str) -> anyhow::Result<TemplateRequest> {
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).with_context(|| format!("{source} is not a template request"))
    } else {
        serde_norway::from_str(text).with_context(|| format!("{source} is not a template request"))
    }
}

async fn read_request(file: &Path) -> anyhow::Result<TemplateRequest> {
    if file == Path::new("-") {
        let mut text = String::new();
        tokio::io::stdin()
            .read_to_string(&mut text)
            .await
            .context("cannot read the template request from stdin")?;
        return parse_request(&text, "stdin");
    }
    let text = tokio::fs::read_to_string(file)
        .await
        .with_context(|| format!("cannot read {}", file.display()))?;
    parse_request(&text, &file.display().to_string())
}

/// The path a `PUT` of `request` addresses: `name` or `name:tag`.
fn reference_of(request: &TemplateRequest) -> anyhow::Result<String> {
    let name = request
        .name
        .as_deref()
        .context("the template request has no `name`, which --replace needs")?;
    Ok(match &request.tag {
        Some(tag) => format!("{name}:{tag}"),
        None => name.to_owned(),
    })
}

async fn create(client: &BerthClient, args: &CreateArgs) -> anyhow::Result<()> {
    let request = match &args.file {
        Some(file) => read_request(file).await?,
        None => build_request(args),
    };
    let template = if args.replace {
        client.put_template(&reference_of(&request)?, &request).await?
    } else {
        client.create_template(&request).await?
    };
    emit_line(&format!("{}:{}", template.name, template.tag))?;
    Ok(())
}

async fn list(client: &BerthClient, args: &LsArgs) -> anyhow::Result<()> {
    let templates = client.list_templates().await?;
    let text = if args.quiet {
        templates
            .iter()
            .map(|template| format!("{}:{}\n", template.name, template.tag))
            .collect()
    } else {
        match args.output {
            ListFormat::Table => template_table(&templates, Utc::now()),
            ListFormat::Json => output::document(&templates, DocFormat::Json)?,
            ListFormat::Yaml => output::document(&templates, DocFormat::Yaml)?,
        }
    };
    emit(&text)?;
    Ok(())
}

/// Prints every template found, then one error line per reference that was not; exits 1 if any
/// failed.
async fn inspect(client: &BerthClient, args: &InspectArgs) -> anyhow::Result<()> {
    inspect_each(&args.references, args.output, |reference| async move {
        client.get_template(&reference).await
    })
    .await
}

/// `3/8 ready` for a template with a pool, `-` without one.
fn pool_cell(template: &TemplateView) -> String {
    match &template.pool {
        Some(pool) => format!("{}/{} ready", pool.ready, pool.min_ready),
        None => "-".to_owned(),
    }
}

/// The template's own error, else its pool's: why it cannot provide sandboxes now.
fn error_cell(template: &TemplateView) -> String {
    let error = template
        .error
        .as_deref()
        .or_else(|| template.pool.as_ref().and_then(|pool| pool.error.as_deref()));
    error.map(|text| shorten(text, MAX_ERROR_CELL)).unwrap_or_default()
}

/// The `berth template ls` table.
pub fn template_table(templates: &[TemplateView], now: DateTime<Utc>) -> String {
    let rows: Vec<Vec<String>> = templates
        .iter()
        .map(|template| {
            vec![
                template.name.clone(),
                template.tag.clone(),
                template.image.clone(),
                template.resources.cpu.clone(),
                template.resources.memory.clone(),
                template.ttl.clone(),
                pool_cell(template),
                error_cell(template),
                format!("{} ago", human_duration(now - template.created_at)),
            ]
        })
        .collect();
    render_table(
        &[
            "NAME", "TAG", "IMAGE", "CPU", "MEMORY", "TTL", "POOL", "ERROR", "CREATED",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use berth_api::{PoolView, ResourcesView};
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        template: TemplateCommand,
    }

    fn parse(args: &[&str]) -> Result<TemplateCommand, clap::Error> {
        TestCli::try_parse_from(std::iter::once("template").chain(args.iter().copied())).map(|cli| cli.template)
    }

    fn parse_create(args: &[&str]) -> CreateArgs {
        match parse(&[&["create"], args].concat()).unwrap() {
            TemplateCommand::Create(create) => *create,
            other => panic!("not a create: {other:?}"),
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn view(name: &str, pool: Option<PoolView>) -> TemplateView {
        TemplateView {
            name: name.to_owned(),
            tag: "latest".to_owned(),
            image: "busybox:latest".to_owned(),
            snapshot: None,
            command: None,
            env: BTreeMap::new(),
            workdir: None,
            user: None,
            labels: BTreeMap::new(),
            ports: Vec::new(),
            resources: ResourcesView {
                cpu: "1".to_owned(),
                memory: "512Mi".to_owned(),
                disk: None,
            },
            ttl: "30m".to_owned(),
            readiness: None,
            runtime: None,
            hardening: Default::default(),
            network: Default::default(),
            pool,
            error: None,
            created_at: at("2026-01-01T11:57:00Z"),
            updated_at: at("2026-01-01T11:57:00Z"),
        }
    }

    #[test]
    fn every_flag_lands_in_the_request() {
        let args = parse_create(&[
            "py",
            "--image",
            "python:3.12",
            "--tag",
            "3.12",
            "-e",
            "A=1",
            "-l",
            "team=ml",
            "--cpu",
            "0.5",
            "--memory",
            "1Gi",
            "--ttl",
            "30m",
            "-p",
            "8080",
            "-w",
            "/w",
            "-u",
            "1000",
            "--pool-min-ready",
            "3",
            "--pool-max-idle-age",
            "2h",
            "--replace",
            "--",
            "python",
            "-c",
            "1",
        ]);
        assert!(args.replace);
        assert_eq!(
            build_request(&args),
            TemplateRequest {
                name: Some("py".into()),
                tag: Some("3.12".into()),
                image: Some("python:3.12".into()),
                snapshot: None,
                command: Some(vec!["python".into(), "-c".into(), "1".into()]),
                env: BTreeMap::from([("A".into(), "1".into())]),
                workdir: Some("/w".into()),
                user: Some("1000".into()),
                labels: BTreeMap::from([("team".into(), "ml".into())]),
                ports: vec![8080],
                cpu: Some(NumberOrString::String("0.5".into())),
                memory: Some(NumberOrString::String("1Gi".into())),
                disk: None,
                ttl: Some(NumberOrString::String("30m".into())),
                max_lifetime: None,
                idle_timeout: None,
                hibernate_after: None,
                ttl_counts_idle: None,
                pool: Some(PoolRequest {
                    min_ready: Some(3),
                    max_idle_age: Some(NumberOrString::String("2h".into())),
                }),
                readiness: None,
                runtime: None,
                hardening: None,
                network: None,
                restart: None,
            }
        );
    }

    #[test]
    fn a_bare_create_has_no_pool_and_no_command() {
        let args = parse_create(&["py", "--image", "busybox"]);
        assert!(!args.replace);
        let request = build_request(&args);
        assert_eq!(request.pool, None);
        assert_eq!(request.command, None);
        assert_eq!(request.tag, None);
        assert_eq!(reference_of(&request).unwrap(), "py");
        let tagged = TemplateRequest {
            tag: Some("v2".into()),
            ..request
        };
        assert_eq!(reference_of(&tagged).unwrap(), "py:v2");
        assert!(reference_of(&TemplateRequest::default()).is_err());
    }

    #[test]
    fn create_needs_a_name_and_an_image_a_snapshot_or_a_file_but_only_one() {
        for args in [
            &["create"][..],
            &["create", "py"],
            &["create", "--image", "busybox"],
            &["create", "-f", "t.yaml", "py"],
            &["create", "-f", "t.yaml", "--image", "busybox"],
            &["create", "-f", "t.yaml", "--pool-min-ready", "1"],
            &["create", "py", "--image", "busybox", "python"],
            &["create", "py", "--image", "busybox", "--pool-min-ready", "lots"],
            &["create", "py", "--image", "busybox", "--snapshot", "0123456789abcdef"],
            &["create", "-f", "t.yaml", "--snapshot", "0123456789abcdef"],
        ] {
            assert_eq!(parse(args).unwrap_err().exit_code(), 2, "{args:?}");
        }
        let from_file = parse_create(&["-f", "-", "--replace"]);
        assert_eq!(from_file.file.as_deref(), Some(Path::new("-")));
        assert!(from_file.replace);
        let from_snapshot = build_request(&parse_create(&[
            "py",
            "--snapshot",
            "0123456789abcdef",
            "--pool-min-ready",
            "1",
        ]));
        assert_eq!(
            (from_snapshot.image, from_snapshot.snapshot.as_deref()),
            (None, Some("0123456789abcdef"))
        );
    }

    #[test]
    fn the_other_verbs_parse() {
        assert!(matches!(
            parse(&["list", "-q"]).unwrap(),
            TemplateCommand::Ls(LsArgs { quiet: true, .. })
        ));
        assert!(matches!(
            parse(&["ls", "-o", "yaml"]).unwrap(),
            TemplateCommand::Ls(LsArgs {
                output: ListFormat::Yaml,
                ..
            })
        ));
        let TemplateCommand::Inspect(inspect) = parse(&["inspect", "a", "b:1", "-o", "yaml"]).unwrap() else {
            panic!("not an inspect")
        };
        assert_eq!(inspect.references, ["a", "b:1"]);
        assert_eq!(inspect.output, DocFormat::Yaml);
        for args in [&["inspect"][..], &["rm"], &[]] {
            assert_eq!(parse(args).unwrap_err().exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn files_may_be_json_or_yaml_and_unknown_fields_are_refused() {
        let expected = TemplateRequest {
            name: Some("py".into()),
            image: Some("busybox".into()),
            cpu: Some(NumberOrString::Number(2.0)),
            pool: Some(PoolRequest {
                min_ready: Some(2),
                max_idle_age: Some(NumberOrString::String("30m".into())),
            }),
            ..TemplateRequest::default()
        };
        let json = r#"{"name": "py", "image": "busybox", "cpu": 2, "pool": {"min_ready": 2, "max_idle_age": "30m"}}"#;
        assert_eq!(parse_request(json, "t.json").unwrap(), expected);
        let yaml = "name: py\nimage: busybox\ncpu: 2\npool:\n  min_ready: 2\n  max_idle_age: 30m\n";
        assert_eq!(parse_request(yaml, "t.yaml").unwrap(), expected);
        let error = parse_request("name: py\nimgae: busybox\n", "t.yaml").unwrap_err();
        let text = format!("{error:#}");
        assert!(
            text.starts_with("t.yaml is not a template request") && text.contains("imgae"),
            "{text}"
        );
    }

    #[test]
    fn the_table_shows_pools_errors_and_age() {
        let now = at("2026-01-01T12:00:00Z");
        let plain = view("plain", None);
        let mut pooled = view(
            "pooled",
            Some(PoolView {
                template: "pooled:latest".to_owned(),
                min_ready: 8,
                max_idle_age: "1h".to_owned(),
                ready: 3,
                refilling: 5,
                claimed: 0,
                error: Some("image berth-test/missing:latest is not present on the engine".to_owned()),
            }),
        );
        pooled.tag = "v2".to_owned();
        let table = template_table(&[plain, pooled], now);
        let expected = "\
NAME     TAG      IMAGE            CPU   MEMORY   TTL   POOL        ERROR                                     CREATED
plain    latest   busybox:latest   1     512Mi    30m   -                                                     3m ago
pooled   v2       busybox:latest   1     512Mi    30m   3/8 ready   image berth-test/missing:latest is not…   3m ago
";
        assert_eq!(table, expected);
    }
}
