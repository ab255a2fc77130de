//! `berth pool`: shows the warm pools of templates (ready, refilling and claimed sandboxes).

use berth_api::PoolView;
use berth_client::BerthClient;
use clap::{Args, Subcommand};

use super::shorten;
use crate::output::{self, DocFormat, ListFormat, emit, render_table};

/// Longest error shown in the `pool ls` table; `-o json` shows it whole.
const MAX_ERROR_CELL: usize = 60;

#[derive(Debug, Clone, Subcommand)]
pub enum PoolCommand {
    /// List the pools of every template that has one
    #[command(visible_alias = "list")]
    Ls(LsArgs),
}

#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = ListFormat::Table)]
    pub output: ListFormat,
}

pub async fn run(client: &BerthClient, command: &PoolCommand) -> anyhow::Result<()> {
    match command {
        PoolCommand::Ls(args) => {
            let pools = client.list_pools().await?;
            let text = match args.output {
                ListFormat::Table => pool_table(&pools),
                ListFormat::Json => output::document(&pools, DocFormat::Json)?,
                ListFormat::Yaml => output::document(&pools, DocFormat::Yaml)?,
            };
            emit(&text)?;
            Ok(())
        }
    }
}

/// The `berth pool ls` table.
pub fn pool_table(pools: &[PoolView]) -> String {
    let rows: Vec<Vec<String>> = pools
        .iter()
        .map(|pool| {
            vec![
                pool.template.clone(),
                pool.ready.to_string(),
                pool.min_ready.to_string(),
                pool.refilling.to_string(),
                pool.claimed.to_string(),
                pool.max_idle_age.clone(),
                pool.error
                    .as_deref()
                    .map(|error| shorten(error, MAX_ERROR_CELL))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    render_table(
        &["TEMPLATE", "READY", "MIN", "REFILLING", "CLAIMED", "MAX IDLE", "ERROR"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        pool: PoolCommand,
    }

    #[test]
    fn ls_parses_its_output_format() {
        let PoolCommand::Ls(args) = TestCli::try_parse_from(["pool", "list", "-o", "json"]).unwrap().pool;
        assert_eq!(args.output, ListFormat::Json);
        let PoolCommand::Ls(args) = TestCli::try_parse_from(["pool", "ls"]).unwrap().pool;
        assert_eq!(args.output, ListFormat::Table);
        assert_eq!(TestCli::try_parse_from(["pool"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn the_table_has_one_row_per_pool() {
        let pools = [
            PoolView {
                template: "py:latest".to_owned(),
                min_ready: 4,
                max_idle_age: "1h".to_owned(),
                ready: 3,
                refilling: 1,
                claimed: 12,
                error: None,
            },
            PoolView {
                template: "gone:v1".to_owned(),
                min_ready: 1,
                max_idle_age: "10m".to_owned(),
                ready: 0,
                refilling: 0,
                claimed: 0,
                error: Some("image gone is missing\n(pull it first)".to_owned()),
            },
        ];
        let expected = "\
TEMPLATE    READY   MIN   REFILLING   CLAIMED   MAX IDLE   ERROR
py:latest   3       4     1           12        1h
gone:v1     0       1     0           0         10m        image gone is missing (pull it first)
";
        assert_eq!(pool_table(&pools), expected);
    }
}
