//! `berth snapshot`: takes, lists, inspects and deletes snapshots of sandboxes, which `berth run
//! --snapshot ID` and templates (`berth template create --snapshot ID`) start from.

use berth_api::{NumberOrString, SnapshotRequest, SnapshotView};
use berth_client::BerthClient;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};

use super::stats::decimal_size;
use super::{for_each_id, inspect_each, parse_key_value};
use crate::output::{self, DocFormat, ListFormat, emit, emit_line, human_duration, render_table};

#[derive(Debug, Clone, Subcommand)]
pub enum SnapshotCommand {
    /// Commit a sandbox's filesystem (and record its spec) as a snapshot and print its id
    Create(CreateArgs),
    /// List snapshots (yours; an admin's key: everyone's, or --owner's), newest first
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show snapshots in full (JSON or YAML)
    Inspect(InspectArgs),
    /// Delete snapshots (refused while a sandbox or a template still needs one)
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// How long the snapshot is kept before it is collected: 2h, 30m [default: 24h, at most 720h]
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// Set a label on the snapshot (repeatable)
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub labels: Vec<(String, String)>,
    /// The sandbox to snapshot (Running or Paused; it runs on)
    pub sandbox: String,
}

#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    /// Only this owner's (admins)
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    /// Print only the ids
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Print JSON (the same as `-o json`)
    #[arg(long, conflicts_with_all = ["output", "quiet"])]
    pub json: bool,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = ListFormat::Table)]
    pub output: ListFormat,
}

#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// Snapshot ids
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<String>,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = DocFormat::Json)]
    pub output: DocFormat,
}

#[derive(Debug, Clone, Args)]
pub struct RmArgs {
    /// Snapshot ids
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<String>,
}

pub async fn run(client: &BerthClient, command: &SnapshotCommand) -> anyhow::Result<()> {
    match command {
        SnapshotCommand::Create(args) => {
            let snapshot = client.create_snapshot(&args.sandbox, &build_request(args)).await?;
            emit_line(&snapshot.id)?;
        }
        SnapshotCommand::Ls(args) => {
            let snapshots = client.list_snapshots(args.owner.as_deref()).await?;
            let format = if args.json { ListFormat::Json } else { args.output };
            let text = match format {
                _ if args.quiet => snapshots.iter().map(|snapshot| format!("{}\n", snapshot.id)).collect(),
                ListFormat::Table => snapshot_table(&snapshots, Utc::now()),
                ListFormat::Json => output::document(&snapshots, DocFormat::Json)?,
                ListFormat::Yaml => output::document(&snapshots, DocFormat::Yaml)?,
            };
            emit(&text)?;
        }
        SnapshotCommand::Inspect(args) => {
            inspect_each(
                &args.ids,
                args.output,
                |id| async move { client.get_snapshot(&id).await },
            )
            .await?;
        }
        SnapshotCommand::Rm(args) => {
            for_each_id(&args.ids, |id| async move { client.delete_snapshot(&id).await }).await?;
        }
    }
    Ok(())
}

/// The snapshot request the flags stand for; the server parses the duration.
pub fn build_request(args: &CreateArgs) -> SnapshotRequest {
    SnapshotRequest {
        mode: None,
        labels: args.labels.iter().cloned().collect(),
        ttl: args.ttl.clone().map(NumberOrString::String),
    }
}

/// `3m ago`; empty when the engine did not say.
fn created_cell(created_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    created_at
        .map(|at| format!("{} ago", human_duration(now - at)))
        .unwrap_or_default()
}

/// `in 23h`, or `expired` once its retention is over (collection follows within a resync).
fn expires_cell(expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match expires_at {
        None => "-".to_owned(),
        Some(at) if at <= now => "expired".to_owned(),
        Some(at) => format!("in {}", human_duration(at - now)),
    }
}

/// The `berth snapshot ls` table; sizes in decimal units, as `docker image ls` shows them.
pub fn snapshot_table(snapshots: &[SnapshotView], now: DateTime<Utc>) -> String {
    let rows: Vec<Vec<String>> = snapshots
        .iter()
        .map(|snapshot| {
            vec![
                snapshot.id.clone(),
                snapshot.sandbox_id.clone(),
                snapshot.mode.clone(),
                decimal_size(snapshot.size_bytes),
                created_cell(snapshot.created_at, now),
                expires_cell(snapshot.expires_at, now),
            ]
        })
        .collect();
    render_table(&["ID", "SANDBOX", "MODE", "SIZE", "CREATED", "EXPIRES"], &rows)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        snapshot: SnapshotCommand,
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn create_takes_a_ttl_and_repeated_labels() {
        let cli =
            TestCli::try_parse_from(["t", "create", "--ttl", "2h", "-l", "a=1", "--label", "b=2", "box"]).unwrap();
        let SnapshotCommand::Create(args) = cli.snapshot else {
            panic!("create")
        };
        assert_eq!(args.sandbox, "box");
        let request = build_request(&args);
        assert_eq!(request.ttl, Some(NumberOrString::String("2h".into())));
        assert_eq!(
            request.labels,
            BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())])
        );
        assert!(TestCli::try_parse_from(["t", "create"]).is_err());
        assert!(TestCli::try_parse_from(["t", "rm"]).is_err());
        assert!(TestCli::try_parse_from(["t", "inspect"]).is_err());
        assert!(TestCli::try_parse_from(["t", "ls", "--json", "-o", "yaml"]).is_err());
    }

    #[test]
    fn the_table_shows_source_size_age_and_expiry() {
        let now = at("2026-01-01T12:00:00Z");
        let snapshot = |id: &str, expires: &str| SnapshotView {
            id: id.into(),
            sandbox_id: "0123456789abcdef".into(),
            owner: "team-a".into(),
            mode: "filesystem".into(),
            labels: BTreeMap::new(),
            size_bytes: 1_450_000,
            created_at: Some(at("2026-01-01T11:57:00Z")),
            expires_at: Some(at(expires)),
            image: "berth-snapshot-abcdef:x".into(),
        };
        let table = snapshot_table(
            &[
                snapshot("aaaaaaaaaaaaaaaa", "2026-01-02T11:00:00Z"),
                snapshot("bbbbbbbbbbbbbbbb", "2026-01-01T11:59:00Z"),
            ],
            now,
        );
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("ID") && lines[0].ends_with("EXPIRES"), "{table}");
        for cell in [
            "aaaaaaaaaaaaaaaa",
            "0123456789abcdef",
            "filesystem",
            "1.45MB",
            "3m ago",
            "in 23h",
        ] {
            assert!(lines[1].contains(cell), "{cell} in {table}");
        }
        assert!(lines[2].ends_with("expired"), "{table}");
    }
}
