//! `berth rm`: deletes sandboxes, printing each removed id; unknown ids are errors.

use berth_client::BerthClient;
use clap::Args;

use super::{AlreadyReported, report};
use crate::output::emit_line;

#[derive(Debug, Clone, Args)]
pub struct RmArgs {
    /// Sandbox ids
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<String>,
}

/// Deletes each id in turn, going on after a failure; exits 1 if any failed.
pub async fn run(client: &BerthClient, args: &RmArgs) -> anyhow::Result<()> {
    let mut failed = 0;
    for id in &args.ids {
        match client.delete(id).await {
            Ok(()) => emit_line(id)?,
            // Unreachable server: every other id would fail the same way.
            Err(error) if error.is_connect() => return Err(error.into()),
            Err(error) => {
                report(&error);
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(AlreadyReported {
            failed,
            total: args.ids.len(),
        }
        .into());
    }
    Ok(())
}
