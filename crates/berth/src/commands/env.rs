//! `berth env`: registers, lists, inspects and deletes AEnvironment Envs (`/env/…`), the
//! registry that AEnvironment's SDK and `aenv` CLI create instances from. An Env is a berth
//! template named `name`, tagged `version`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use berth_api::aenv::{Env, env_status_name};
use berth_client::BerthClient;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde_json::Value;
use tokio::io::AsyncReadExt;

use super::{UsageError, for_each_id, inspect_each};
use crate::output::{self, DocFormat, ListFormat, emit, human_duration, render_table};

#[derive(Debug, Clone, Subcommand)]
pub enum EnvCommand {
    /// Register an Env from an AEnvironment Env document (JSON or YAML) and print NAME@VERSION
    Create(CreateArgs),
    /// List Envs
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show Envs in full (JSON or YAML)
    Inspect(InspectArgs),
    /// Delete Envs (instances made from them keep running)
    Rm(RmArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// The Env document: `name`, `version`, `artifacts`, `deployConfig`… (`-` for stdin)
    #[arg(short = 'f', long, value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    /// Print only NAME@VERSION
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = ListFormat::Table)]
    pub output: ListFormat,
}

#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// Envs: NAME@VERSION
    #[arg(required = true, value_name = "NAME@VERSION")]
    pub references: Vec<String>,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = DocFormat::Json)]
    pub output: DocFormat,
}

#[derive(Debug, Clone, Args)]
pub struct RmArgs {
    /// Envs: NAME@VERSION
    #[arg(required = true, value_name = "NAME@VERSION")]
    pub references: Vec<String>,
}

pub async fn run(client: &BerthClient, command: &EnvCommand) -> anyhow::Result<()> {
    match command {
        EnvCommand::Create(args) => create(client, args).await,
        EnvCommand::Ls(args) => list(client, args).await,
        EnvCommand::Inspect(args) => inspect(client, args).await,
        EnvCommand::Rm(args) => {
            // Checked up front: a malformed reference is a usage error, not a failed delete.
            for reference in &args.references {
                split_reference(reference)?;
            }
            for_each_id(&args.references, |reference| async move {
                let (name, version) = split_reference(&reference).unwrap_or_default();
                client.delete_env(name, version).await
            })
            .await
        }
    }
}

/// `NAME@VERSION` split in two; anything else is a usage error.
pub fn split_reference(reference: &str) -> Result<(&str, &str), UsageError> {
    match reference.split_once('@') {
        Some((name, version)) if !name.is_empty() && !version.is_empty() && !version.contains('@') => {
            Ok((name, version))
        }
        _ => Err(UsageError(format!(
            "`{reference}` is not NAME@VERSION (e.g. swe-env@1.0.0)"
        ))),
    }
}

/// An Env document read from JSON (text starting with `{`) or YAML; `source` names it in errors.
pub fn parse_document(text: &str, source: &str) -> anyhow::Result<Value> {
    let document: Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).with_context(|| format!("{source} is not a JSON document"))?
    } else {
        serde_norway::from_str(text).with_context(|| format!("{source} is not a YAML document"))?
    };
    if !document.is_object() {
        anyhow::bail!("{source} is not an Env document: expected an object with name, version, deployConfig…");
    }
    Ok(document)
}

async fn read_document(file: &Path) -> anyhow::Result<Value> {
    if file == Path::new("-") {
        let mut text = String::new();
        tokio::io::stdin()
            .read_to_string(&mut text)
            .await
            .context("cannot read the Env document from stdin")?;
        return parse_document(&text, "stdin");
    }
    let text = tokio::fs::read_to_string(file)
        .await
        .with_context(|| format!("cannot read {}", file.display()))?;
    parse_document(&text, &file.display().to_string())
}

async fn create(client: &BerthClient, args: &CreateArgs) -> anyhow::Result<()> {
    let document = read_document(&args.file).await?;
    client.create_env(&document).await?;
    let text = |key: &str| document.get(key).and_then(Value::as_str).unwrap_or_default();
    output::emit_line(&format!("{}@{}", text("name"), text("version")))?;
    Ok(())
}

async fn list(client: &BerthClient, args: &LsArgs) -> anyhow::Result<()> {
    let envs = client.list_envs().await?;
    let text = if args.quiet {
        envs.iter().map(|env| format!("{}\n", env.reference())).collect()
    } else {
        match args.output {
            ListFormat::Table => env_table(&envs, Utc::now()),
            ListFormat::Json => output::document(&envs, DocFormat::Json)?,
            ListFormat::Yaml => output::document(&envs, DocFormat::Yaml)?,
        }
    };
    emit(&text)?;
    Ok(())
}

/// Prints every Env found, then one error line per reference that was not; exits 1 if any
/// failed.
async fn inspect(client: &BerthClient, args: &InspectArgs) -> anyhow::Result<()> {
    // Checked up front: a malformed reference is a usage error, not a failed lookup.
    for reference in &args.references {
        split_reference(reference)?;
    }
    inspect_each(&args.references, args.output, |reference| async move {
        let (name, version) = split_reference(&reference).unwrap_or_default();
        client.get_env(name, version).await
    })
    .await
}

/// `5m ago`, or `-` when the Env's time cannot be read.
fn created_cell(env: &Env, now: DateTime<Utc>) -> String {
    DateTime::parse_from_rfc3339(&env.created_at)
        .map(|created| format!("{} ago", human_duration(now - created.with_timezone(&Utc))))
        .unwrap_or_else(|_| "-".to_owned())
}

/// The `berth env ls` table.
pub fn env_table(envs: &[Env], now: DateTime<Utc>) -> String {
    let rows: Vec<Vec<String>> = envs
        .iter()
        .map(|env| {
            vec![
                env.name.clone(),
                env.version.clone(),
                env.image().unwrap_or("-").to_owned(),
                env_status_name(env.status),
                created_cell(env, now),
            ]
        })
        .collect();
    render_table(&["NAME", "VERSION", "IMAGE", "STATUS", "CREATED"], &rows)
}

#[cfg(test)]
mod tests {
    use berth_api::aenv::Artifact;
    use clap::Parser;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        env: EnvCommand,
    }

    fn parse(args: &[&str]) -> Result<EnvCommand, clap::Error> {
        TestCli::try_parse_from(std::iter::once("env").chain(args.iter().copied())).map(|cli| cli.env)
    }

    #[test]
    fn the_verbs_parse() {
        let EnvCommand::Create(create) = parse(&["create", "-f", "env.json"]).unwrap() else {
            panic!("not a create")
        };
        assert_eq!(create.file, PathBuf::from("env.json"));
        assert!(matches!(
            parse(&["list", "-o", "yaml"]).unwrap(),
            EnvCommand::Ls(LsArgs {
                output: ListFormat::Yaml,
                ..
            })
        ));
        let EnvCommand::Inspect(inspect) = parse(&["inspect", "a@1", "b@2"]).unwrap() else {
            panic!("not an inspect")
        };
        assert_eq!(inspect.references, ["a@1", "b@2"]);
        for args in [&["create"][..], &["inspect"], &["rm"], &[]] {
            assert_eq!(parse(args).unwrap_err().exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn references_are_name_at_version() {
        assert_eq!(split_reference("swe@1.0.0").unwrap(), ("swe", "1.0.0"));
        for bad in ["swe", "swe@", "@1", "a@b@c"] {
            assert!(split_reference(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn documents_may_be_json_or_yaml() {
        let json_text = r#"{"name": "swe", "version": "1", "deployConfig": {"cpu": "1C"}}"#;
        let yaml_text = "name: swe\nversion: '1'\ndeployConfig:\n  cpu: 1C\n";
        let expected = json!({"name": "swe", "version": "1", "deployConfig": {"cpu": "1C"}});
        assert_eq!(parse_document(json_text, "env.json").unwrap(), expected);
        assert_eq!(parse_document(yaml_text, "env.yaml").unwrap(), expected);
        assert!(parse_document("[1]", "env.json").is_err());
    }

    #[test]
    fn the_table_shows_image_status_and_age() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut from_artifact = Env {
            name: "swe".into(),
            version: "1.0.0".into(),
            status: 6,
            created_at: "2026-01-01T11:55:00Z".into(),
            ..Env::default()
        };
        from_artifact.artifacts.push(Artifact {
            kind: "image".into(),
            content: "reg/swe:1".into(),
            ..Artifact::default()
        });
        let bare = Env {
            name: "bare".into(),
            version: "v2".into(),
            ..Env::default()
        };
        let expected = "\
NAME   VERSION   IMAGE       STATUS   CREATED
swe    1.0.0     reg/swe:1   Ready    5m ago
bare   v2        -           Init     -
";
        assert_eq!(env_table(&[from_artifact, bare], now), expected);
    }
}
