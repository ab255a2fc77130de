//! `berth healthcheck`: exits 0 when the server at `--server` is ready (`/readyz`), else 1 with
//! the reason — for container health checks in images without curl.

use berth_client::BerthClient;
use clap::Args;

use crate::output::emit_line;

#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {}

pub async fn run(client: &BerthClient, _args: &HealthcheckArgs) -> anyhow::Result<()> {
    let readiness = client.readyz().await?;
    if readiness.status != "ready" {
        let reasons: Vec<String> = readiness
            .checks
            .iter()
            .filter(|(_, state)| state.as_str() != "ok")
            .map(|(name, state)| format!("{name}: {state}"))
            .collect();
        anyhow::bail!("not ready: {}", reasons.join("; "));
    }
    emit_line("ready")?;
    Ok(())
}
