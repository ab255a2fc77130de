//! `berth pause`: freezes every process of sandboxes, printing each paused id. A paused sandbox
//! still expires on time.

use berth_client::BerthClient;
use clap::Args;

use super::for_each_id;

#[derive(Debug, Clone, Args)]
pub struct PauseArgs {
    /// Sandbox ids
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<String>,
}

/// Pauses each id in turn, going on after a failure; exits 1 if any failed.
pub async fn run(client: &BerthClient, args: &PauseArgs) -> anyhow::Result<()> {
    for_each_id(&args.ids, |id| async move { client.pause(&id).await }).await
}
