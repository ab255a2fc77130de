//! `berth resume`: unfreezes paused sandboxes, printing each resumed id.

use berth_client::BerthClient;
use clap::Args;

use super::for_each_id;

#[derive(Debug, Clone, Args)]
pub struct ResumeArgs {
    /// Sandbox ids
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<String>,
}

/// Resumes each id in turn, going on after a failure; exits 1 if any failed.
pub async fn run(client: &BerthClient, args: &ResumeArgs) -> anyhow::Result<()> {
    for_each_id(&args.ids, |id| async move { client.resume(&id).await }).await
}
