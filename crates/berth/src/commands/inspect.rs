//! `berth inspect`: prints sandboxes as a JSON (or YAML) array, like `docker inspect`.

use berth_client::BerthClient;
use clap::Args;

use super::{AlreadyReported, report};
use crate::output::{self, DocFormat, emit};

#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// Sandbox ids
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<String>,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = DocFormat::Json)]
    pub output: DocFormat,
}

/// Prints every sandbox found, then one error line per id that was not; exits 1 if any failed.
pub async fn run(client: &BerthClient, args: &InspectArgs) -> anyhow::Result<()> {
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for id in &args.ids {
        match client.get(id).await {
            Ok(sandbox) => found.push(sandbox),
            // Unreachable server: every other id would fail the same way.
            Err(error) if error.is_connect() => return Err(error.into()),
            Err(error) => failures.push(error),
        }
    }
    emit(&output::document(&found, args.output)?)?;
    if failures.is_empty() {
        return Ok(());
    }
    for failure in &failures {
        report(failure);
    }
    Err(AlreadyReported {
        failed: failures.len(),
        total: args.ids.len(),
    }
    .into())
}
