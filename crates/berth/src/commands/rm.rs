//! `berth rm`: deletes sandboxes, printing each removed id; unknown ids are errors.

use berth_client::BerthClient;
use clap::Args;

use super::for_each_id;

#[derive(Debug, Clone, Args)]
pub struct RmArgs {
    /// Sandbox ids
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<String>,
}

/// Deletes each id in turn, going on after a failure; exits 1 if any failed.
pub async fn run(client: &BerthClient, args: &RmArgs) -> anyhow::Result<()> {
    for_each_id(&args.ids, |id| async move { client.delete(&id).await }).await
}
