//! `berth shell`: an interactive shell in a sandbox, i.e. `berth exec -it ID -- /bin/sh`.

use std::process::ExitCode;

use berth_client::BerthClient;
use clap::Args;

use super::exec::{self, ExecArgs};
use super::parse_key_value;

#[derive(Debug, Clone, Args)]
pub struct ShellArgs {
    /// Set an environment variable in the shell (repeatable)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User to run as: name, uid, name:group or uid:gid
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,
    /// The shell to run
    #[arg(long, default_value = "/bin/sh", value_name = "PATH")]
    pub shell: String,
    /// Sandbox id
    #[arg(value_name = "ID")]
    pub id: String,
}

/// The `exec` this shell stands for.
pub fn exec_args(args: &ShellArgs) -> ExecArgs {
    ExecArgs {
        interactive: true,
        tty: true,
        env: args.env.clone(),
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        timeout: None,
        detach: false,
        id: args.id.clone(),
        command: vec![args.shell.clone()],
    }
}

pub async fn run(client: &BerthClient, args: &ShellArgs) -> anyhow::Result<ExitCode> {
    exec::run(client, &exec_args(args)).await
}
