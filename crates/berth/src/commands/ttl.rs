//! `berth ttl`: sets a sandbox's time to live from now and prints the new expiry.

use berth_api::{NumberOrString, format_time};
use berth_client::BerthClient;
use clap::Args;

use crate::output::emit_line;

#[derive(Debug, Clone, Args)]
pub struct TtlArgs {
    /// Sandbox id
    pub id: String,
    /// New time to live, counted from now: 90s, 30m, 1h30m
    pub duration: String,
}

pub async fn run(client: &BerthClient, args: &TtlArgs) -> anyhow::Result<()> {
    let renewed = client
        .renew_ttl(&args.id, NumberOrString::String(args.duration.clone()))
        .await?;
    emit_line(&format_time(&renewed.expires_at))?;
    Ok(())
}
