//! `berth egress`: shows a sandbox's egress policy, or puts another in force while it runs, and
//! prints the policy in force.

use berth_api::Egress;
use berth_client::BerthClient;
use clap::Args;

use crate::output::emit_line;

#[derive(Debug, Clone, Args)]
pub struct EgressArgs {
    /// Sandbox id
    pub id: String,
    /// `allow` or `deny` (no way out: only what berth initiates reaches it); omitted: show it
    #[arg(value_parser = parse_egress)]
    pub policy: Option<Egress>,
}

fn parse_egress(value: &str) -> Result<Egress, String> {
    value.parse()
}

pub async fn run(client: &BerthClient, args: &EgressArgs) -> anyhow::Result<()> {
    let policy = match args.policy {
        Some(egress) => client.set_egress(&args.id, egress).await?,
        None => client.network(&args.id).await?,
    };
    emit_line(policy.egress.as_str())?;
    Ok(())
}
