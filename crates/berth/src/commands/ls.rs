//! `berth ls`: lists sandboxes as a `docker ps`-like table, ids, JSON or YAML.

use std::io::IsTerminal;

use berth_client::{BerthClient, EventsQuery, ListQuery};
use clap::Args;
use futures::StreamExt;

use super::parse_key_value;
use crate::output::{self, DocFormat, ListFormat, emit};

#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    /// Include ended (Terminated and Failed) sandboxes
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only sandboxes with this label (repeatable; all must match)
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub labels: Vec<(String, String)>,
    /// Only sandboxes in this status, e.g. Running
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
    /// Only sandboxes of this owner
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    /// Print only the ids
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = ListFormat::Table)]
    pub output: ListFormat,
    /// Keep the table live: redrawn as the server's events say a sandbox changed
    #[arg(short = 'w', long)]
    pub watch: bool,
}

pub fn query(args: &LsArgs) -> ListQuery {
    ListQuery {
        labels: args.labels.clone(),
        status: args.status.clone(),
        owner: args.owner.clone(),
        limit: None,
        cursor: None,
        all: args.all,
    }
}

pub async fn run(client: &BerthClient, args: &LsArgs) -> anyhow::Result<()> {
    if args.watch {
        return watch(client, args).await;
    }
    print(client, args).await
}

/// Redraws the listing at once and after every burst of events that concerns it.
async fn watch(client: &BerthClient, args: &LsArgs) -> anyhow::Result<()> {
    let events_query = EventsQuery {
        labels: super::events::label_filters(&args.labels),
        owner: args.owner.clone(),
        ..EventsQuery::default()
    };
    // Subscribed before the first listing, so that no change falls between the two.
    let mut events = client.events(&events_query).await?;
    let redraw = std::io::stdout().is_terminal();
    loop {
        if redraw {
            // Clear the screen and go home, as `watch` does.
            emit("\x1b[2J\x1b[H")?;
        }
        print(client, args).await?;
        match events.next().await {
            Some(line) => {
                line?;
            }
            None => return Err(anyhow::anyhow!("the server ended the event stream (it is stopping)")),
        }
        // A burst (a pool refilling, a delete of many) redraws once.
        while let Ok(Some(line)) = tokio::time::timeout(std::time::Duration::from_millis(200), events.next()).await {
            line?;
        }
        if !redraw {
            emit("\n")?;
        }
    }
}

async fn print(client: &BerthClient, args: &LsArgs) -> anyhow::Result<()> {
    let sandboxes = client.list_all(&query(args)).await?;
    let text = if args.quiet {
        sandboxes.iter().map(|sandbox| format!("{}\n", sandbox.id)).collect()
    } else {
        match args.output {
            ListFormat::Table => output::sandbox_table(&sandboxes, chrono::Utc::now()),
            ListFormat::Json => output::document(&sandboxes, DocFormat::Json)?,
            ListFormat::Yaml => output::document(&sandboxes, DocFormat::Yaml)?,
        }
    };
    emit(&text)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        ls: LsArgs,
    }

    #[test]
    fn flags_become_the_list_query() {
        let cli = TestCli::try_parse_from([
            "ls", "-a", "-l", "a=1", "--label", "b=2", "--status", "Running", "--owner", "me", "-o", "json",
        ])
        .unwrap();
        assert_eq!(cli.ls.output, ListFormat::Json);
        assert_eq!(
            query(&cli.ls),
            ListQuery {
                labels: vec![("a".into(), "1".into()), ("b".into(), "2".into())],
                status: Some("Running".into()),
                owner: Some("me".into()),
                limit: None,
                cursor: None,
                all: true,
            }
        );
        let plain = TestCli::try_parse_from(["ls"]).unwrap();
        assert_eq!(plain.ls.output, ListFormat::Table);
        assert_eq!(query(&plain.ls), ListQuery::default());
        assert_eq!(
            TestCli::try_parse_from(["ls", "-l", "nolabel"])
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(TestCli::try_parse_from(["ls", "-o", "xml"]).unwrap_err().exit_code(), 2);
    }
}
