//! `berth key`, `berth whoami`, `berth quota` and `berth audit`: API keys (the secret printed
//! once, alone on stdout, so `KEY=$(berth key create …)` works), the caller's identity,
//! per-owner quotas with their use, and the audit log.

use berth_api::NumberOrString;
use berth_api::identity::{Amounts, KeyRequest, KeyView, QuotaRequest, QuotaView};
use berth_client::BerthClient;
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand};

use crate::output::{self, DocFormat, ListFormat, emit, render_table};

#[derive(Debug, Clone, Subcommand)]
pub enum KeyCommand {
    /// Make an API key and print its secret (shown this once)
    Create(KeyCreateArgs),
    /// List the keys: id, owner, role, times (never a secret)
    #[command(visible_alias = "list")]
    Ls(ListArgs),
    /// Revoke keys; every berth process stops accepting them within a second
    #[command(visible_alias = "revoke")]
    Rm(KeyRmArgs),
}

#[derive(Debug, Clone, Args)]
pub struct KeyCreateArgs {
    /// Whose sandboxes the key acts for
    #[arg(long)]
    pub owner: String,
    /// `admin` or `member`
    #[arg(long, default_value = "member")]
    pub role: String,
    /// How long the key works, e.g. 30d or 12h [default: forever]
    #[arg(long, value_name = "DURATION")]
    pub expires: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = ListFormat::Table)]
    pub output: ListFormat,
}

#[derive(Debug, Clone, Args)]
pub struct KeyRmArgs {
    /// Key ids (see `berth key ls`)
    #[arg(required = true)]
    pub ids: Vec<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum QuotaCommand {
    /// Set an owner's quota; limits left out are unlimited
    Set(QuotaSetArgs),
    /// List owners' limits and what their live sandboxes hold
    #[command(visible_alias = "list")]
    Ls(ListArgs),
}

#[derive(Debug, Clone, Args)]
pub struct QuotaSetArgs {
    pub owner: String,
    /// Live sandboxes at once
    #[arg(long)]
    pub sandboxes: Option<u64>,
    /// CPUs of the live sandboxes together, e.g. 32 or 500m
    #[arg(long)]
    pub cpu: Option<String>,
    /// Memory of the live sandboxes together, e.g. 64Gi
    #[arg(long)]
    pub memory: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Entries from this RFC 3339 time on [default: the last hour]
    #[arg(long)]
    pub since: Option<String>,
    /// Only this owner's entries
    #[arg(long)]
    pub owner: Option<String>,
    /// At most this many entries
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = ListFormat::Table)]
    pub output: ListFormat,
}

fn time(at: Option<DateTime<Utc>>) -> String {
    at.map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".to_owned())
}

pub async fn key(client: &BerthClient, command: &KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Create(args) => {
            let request = KeyRequest {
                owner: args.owner.clone(),
                role: Some(args.role.clone()),
                expires: args.expires.clone().map(NumberOrString::String),
            };
            let created = client.create_key(&request).await?;
            // The secret alone on stdout; what it is goes to stderr for a person to read.
            eprintln!(
                "key {} for owner `{}` ({}): store the secret now, it is not shown again",
                created.key.id, created.key.owner, created.key.role
            );
            Ok(emit(&format!("{}\n", created.secret))?)
        }
        KeyCommand::Ls(args) => {
            let keys = client.list_keys().await?.items;
            let text = match args.output {
                ListFormat::Table => key_table(&keys),
                ListFormat::Json => output::document(&keys, DocFormat::Json)?,
                ListFormat::Yaml => output::document(&keys, DocFormat::Yaml)?,
            };
            Ok(emit(&text)?)
        }
        KeyCommand::Rm(args) => {
            for id in &args.ids {
                client.revoke_key(id).await?;
                emit(&format!("{id}\n"))?;
            }
            Ok(())
        }
    }
}

fn key_table(keys: &[KeyView]) -> String {
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|key| {
            vec![
                key.id.clone(),
                key.owner.clone(),
                key.role.to_string(),
                time(Some(key.created_at)),
                time(key.expires_at),
                time(key.last_used_at),
                if key.revoked_at.is_some() { "revoked" } else { "active" }.to_owned(),
            ]
        })
        .collect();
    render_table(
        &["ID", "OWNER", "ROLE", "CREATED", "EXPIRES", "LAST USED", "STATE"],
        &rows,
    )
}

pub async fn whoami(client: &BerthClient) -> anyhow::Result<()> {
    let me = client.whoami().await?;
    let key = me
        .key_id
        .unwrap_or_else(|| "none (the server asks for no key)".to_owned());
    Ok(emit(&format!("owner: {}\nrole: {}\nkey: {key}\n", me.owner, me.role))?)
}

pub async fn quota(client: &BerthClient, command: &QuotaCommand) -> anyhow::Result<()> {
    match command {
        QuotaCommand::Set(args) => {
            let request = QuotaRequest {
                sandboxes: args.sandboxes,
                cpu: args.cpu.clone().map(NumberOrString::String),
                memory: args.memory.clone().map(NumberOrString::String),
            };
            let view = client.set_quota(&args.owner, &request).await?;
            Ok(emit(&quota_table(&[view]))?)
        }
        QuotaCommand::Ls(args) => {
            let quotas = client.list_quotas().await?.items;
            let text = match args.output {
                ListFormat::Table => quota_table(&quotas),
                ListFormat::Json => output::document(&quotas, DocFormat::Json)?,
                ListFormat::Yaml => output::document(&quotas, DocFormat::Yaml)?,
            };
            Ok(emit(&text)?)
        }
    }
}

fn quota_table(quotas: &[QuotaView]) -> String {
    let of = |limit: &Option<String>, used: &Option<String>| {
        format!(
            "{} / {}",
            used.as_deref().unwrap_or("0"),
            limit.as_deref().unwrap_or("unlimited")
        )
    };
    let count = |amounts: &Amounts| amounts.sandboxes.map(|count| count.to_string());
    let rows: Vec<Vec<String>> = quotas
        .iter()
        .map(|quota| {
            vec![
                quota.owner.clone(),
                of(&count(&quota.limits), &count(&quota.used)),
                of(&quota.limits.cpu, &quota.used.cpu),
                of(&quota.limits.memory, &quota.used.memory),
                if quota.default { "default" } else { "own" }.to_owned(),
            ]
        })
        .collect();
    render_table(&["OWNER", "SANDBOXES", "CPU", "MEMORY", "QUOTA"], &rows)
}

pub async fn audit(client: &BerthClient, args: &AuditArgs) -> anyhow::Result<()> {
    let entries = client
        .audit(args.since.as_deref(), args.owner.as_deref(), args.limit)
        .await?
        .items;
    let text = match args.output {
        ListFormat::Table => {
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|entry| {
                    vec![
                        time(Some(entry.time)),
                        entry.owner.clone().unwrap_or_else(|| "-".into()),
                        entry
                            .key_id
                            .as_ref()
                            .map(ToString::to_string)
                            .unwrap_or_else(|| "-".into()),
                        entry.action.clone(),
                        entry.target.clone().unwrap_or_default(),
                        entry.status.to_string(),
                        entry.client.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            render_table(&["TIME", "OWNER", "KEY", "ACTION", "TARGET", "STATUS", "CLIENT"], &rows)
        }
        ListFormat::Json => output::document(&entries, DocFormat::Json)?,
        ListFormat::Yaml => output::document(&entries, DocFormat::Yaml)?,
    };
    Ok(emit(&text)?)
}
