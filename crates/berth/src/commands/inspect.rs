//! `berth inspect`: prints sandboxes as a JSON (or YAML) array, like `docker inspect`.

use berth_client::BerthClient;
use clap::Args;

use super::inspect_each;
use crate::output::DocFormat;

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
    inspect_each(&args.ids, args.output, |id| async move { client.get(&id).await }).await
}
