//! `berth fork`: makes N new sandboxes from one snapshot of a running one and prints their ids;
//! each child that could not be made is one line on stderr, and then the exit is 1.

use berth_client::{BerthClient, ClientError};
use clap::Args;

use super::{AlreadyReported, report};
use crate::output::emit_line;

#[derive(Debug, Clone, Args)]
pub struct ForkArgs {
    /// How many children to make: 1-64
    #[arg(short = 'n', long = "count", value_name = "N", default_value_t = 1)]
    pub count: u32,
    /// The sandbox to fork (Running or Paused; it runs on)
    pub sandbox: String,
}

pub async fn run(client: &BerthClient, args: &ForkArgs) -> anyhow::Result<()> {
    let forked = client.fork(&args.sandbox, args.count).await?;
    for child in &forked.sandboxes {
        emit_line(&child.id)?;
    }
    if forked.errors.is_empty() {
        return Ok(());
    }
    // Worded as any other answer of the server, so a failed child reads like a failed `berth run`.
    for problem in forked.errors.iter().cloned() {
        report(&ClientError::Problem(Box::new(problem)));
    }
    Err(AlreadyReported {
        failed: forked.errors.len(),
        total: forked.sandboxes.len() + forked.errors.len(),
    }
    .into())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        fork: ForkArgs,
    }

    #[test]
    fn one_child_unless_told_how_many() {
        assert_eq!(TestCli::try_parse_from(["t", "box"]).unwrap().fork.count, 1);
        let cli = TestCli::try_parse_from(["t", "-n", "3", "box"]).unwrap();
        assert_eq!((cli.fork.count, cli.fork.sandbox.as_str()), (3, "box"));
        assert!(TestCli::try_parse_from(["t"]).is_err());
        assert!(TestCli::try_parse_from(["t", "-n", "x", "box"]).is_err());
    }
}
