//! `berth ls`: lists sandboxes as a `docker ps`-like table, ids, JSON or YAML.

use berth_client::{BerthClient, ListQuery};
use clap::Args;

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
