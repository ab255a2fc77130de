//! `berth events`: the lifecycle events of sandboxes as they come (like `docker events`), one line
//! each — or one JSON object each with `-o json` — until interrupted.

use anyhow::anyhow;
use berth_api::SandboxEventView;
use berth_client::{BerthClient, EventLine, EventsQuery};
use clap::{Args, ValueEnum};
use futures::StreamExt;

use super::parse_key_value;
use crate::output::emit_line;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Only sandboxes with this label (repeatable; all must match)
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub labels: Vec<(String, String)>,
    /// Only this sandbox (repeatable)
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<String>,
    /// Only events of this type, e.g. deleted or sandbox.status (repeatable)
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
    /// Only this owner's sandboxes (admin; a member sees its own)
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    /// Resume after this event id (the server keeps its last 10 000)
    #[arg(long, value_name = "ID")]
    pub since: Option<u64>,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = EventFormat::Text)]
    pub output: EventFormat,
}

/// `key=value` as the events route takes a label filter.
pub fn label_filters(labels: &[(String, String)]) -> Vec<String> {
    labels.iter().map(|(key, value)| format!("{key}={value}")).collect()
}

pub fn query(args: &EventsArgs) -> EventsQuery {
    EventsQuery {
        labels: label_filters(&args.labels),
        owner: args.owner.clone(),
        ids: args.ids.clone(),
        types: args.types.clone(),
        since: args.since,
    }
}

pub async fn run(client: &BerthClient, args: &EventsArgs) -> anyhow::Result<()> {
    let mut events = client.events(&query(args)).await?;
    while let Some(line) = events.next().await {
        match line? {
            EventLine::Event(event) => match args.output {
                EventFormat::Text => emit_line(&text_line(&event))?,
                EventFormat::Json => emit_line(&serde_json::to_string(&event)?)?,
            },
            EventLine::Gap(message) => eprintln!("berth: {message}"),
        }
    }
    Err(anyhow!(
        "the server ended the event stream (it is stopping); resume with --since"
    ))
}

/// `TIME  ID  TYPE  SANDBOX  STATUS (REASON)`, as `docker events` prints a line per event.
pub fn text_line(event: &SandboxEventView) -> String {
    let reason = event
        .reason
        .as_ref()
        .map(|reason| format!(" ({reason})"))
        .unwrap_or_default();
    format!(
        "{}  {:>6}  {:<16}  {}  {}{reason}",
        berth_api::format_time(&event.time),
        event.id,
        event.kind,
        event.sandbox_id,
        event.status
    )
}
