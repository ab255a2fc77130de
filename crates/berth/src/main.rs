//! The `berth` binary: command-line parsing, dispatch to one module per verb, and the exit
//! contract (0 success, 1 error as one `berth: <message>` line, 2 usage error).

mod commands;
mod output;
mod progress;
mod terminal;

use std::process::ExitCode;

use berth_client::{BerthClient, ClientOptions};
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

use commands::{
    AlreadyReported, UsageError, access, cp, egress, env, events, exec, fork, healthcheck, inspect, logs, ls, pause,
    pool, report, resume, rm, run, serve, shell, snapshot, stats, template, ttl, volume,
};

/// Short-lived container sandboxes on a Docker Engine.
#[derive(Debug, Parser)]
#[command(name = "berth", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    /// Address of the berth server (client commands)
    #[arg(
        long,
        global = true,
        env = "BERTH_SERVER",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    server: String,

    /// API key of the caller (client commands) [default: the server's admin.key in this
    /// machine's data directory, when readable]
    #[arg(
        long,
        global = true,
        env = "BERTH_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    api_key: Option<String>,

    /// PEM certificate(s) to trust for an https:// server, instead of the system's roots
    #[arg(long, global = true, env = "BERTH_CACERT", value_name = "PATH")]
    cacert: Option<std::path::PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the berth server
    Serve(Box<berth_server::settings::ServeArgs>),
    /// Create a sandbox and print its id
    Run(Box<run::RunArgs>),
    /// List sandboxes
    #[command(visible_alias = "ps")]
    Ls(ls::LsArgs),
    /// Show sandboxes in full (JSON or YAML)
    Inspect(inspect::InspectArgs),
    /// Delete sandboxes
    Rm(rm::RmArgs),
    /// Set a sandbox's time to live, counted from now
    Ttl(ttl::TtlArgs),
    /// Run a command in a sandbox; exits with the command's exit code
    Exec(exec::ExecArgs),
    /// Open an interactive shell in a sandbox
    Shell(shell::ShellArgs),
    /// Copy files or directories between here and a sandbox (ID:/path)
    Cp(cp::CpArgs),
    /// Print the output of a sandbox's main process
    Logs(logs::LogsArgs),
    /// Show a sandbox's CPU, memory, network, disk and process usage
    Stats(stats::StatsArgs),
    /// Show a sandbox's egress policy, or change it while it runs: `berth egress ID deny`
    Egress(egress::EgressArgs),
    /// Print the lifecycle events of sandboxes as they happen
    Events(events::EventsArgs),
    /// Freeze every process of sandboxes
    Pause(pause::PauseArgs),
    /// Unfreeze paused sandboxes
    Resume(resume::ResumeArgs),
    /// Manage templates: named sandbox specs that `run --template` starts from
    #[command(subcommand)]
    Template(template::TemplateCommand),
    /// Show the warm pools of templates
    #[command(subcommand)]
    Pool(pool::PoolCommand),
    /// Manage persistent volumes, which sandboxes mount with `run -v NAME:/path`
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// Manage snapshots of sandboxes, which `run --snapshot ID` and templates start from
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Make new sandboxes from one snapshot of a sandbox and print their ids
    Fork(fork::ForkArgs),
    /// Manage AEnvironment Envs (the registry its SDK and CLI create instances from)
    #[command(subcommand)]
    Env(env::EnvCommand),
    /// Exit 0 when the server is ready, 1 otherwise (for container health checks)
    Healthcheck(healthcheck::HealthcheckArgs),
    /// Manage API keys (admin)
    #[command(subcommand)]
    Key(access::KeyCommand),
    /// Show the owner and role of the API key in use
    Whoami,
    /// Manage per-owner quotas (admin)
    #[command(subcommand)]
    Quota(access::QuotaCommand),
    /// Show recent audit entries (admin)
    Audit(access::AuditArgs),
}

fn main() -> ExitCode {
    // Only one rustls provider is compiled in; installing fails only if one is already set.
    let _ = rustls::crypto::ring::default_provider().install_default();

    // Usage errors exit 2 here, --help and --version exit 0.
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            report(&format_args!("cannot start the async runtime: {error}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli, &matches)) {
        Ok(code) => code,
        Err(error) => {
            if error.downcast_ref::<AlreadyReported>().is_some() {
                return ExitCode::FAILURE;
            }
            report(&format_args!("{error:#}"));
            if error.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Runs the verb; the exit code is 0 on success except for `exec` and `shell`, which exit with
/// the command's.
async fn dispatch(cli: Cli, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    let options = ClientOptions {
        api_key: cli.api_key.clone().or_else(local_admin_key),
        ca_certificate: match &cli.cacert {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|error| anyhow::anyhow!("cannot read --cacert {}: {error}", path.display()))?,
            ),
            None => None,
        },
    };
    let client = || BerthClient::with_options(&cli.server, &options);
    let done = |()| ExitCode::SUCCESS;
    match &cli.command {
        Command::Serve(args) => serve::run(args, matches.subcommand_matches("serve")).await.map(done),
        Command::Run(args) => run::run(&client()?, args).await.map(done),
        Command::Ls(args) => ls::run(&client()?, args).await.map(done),
        Command::Inspect(args) => inspect::run(&client()?, args).await.map(done),
        Command::Rm(args) => rm::run(&client()?, args).await.map(done),
        Command::Ttl(args) => ttl::run(&client()?, args).await.map(done),
        Command::Healthcheck(args) => healthcheck::run(&client()?, args).await.map(done),
        Command::Exec(args) => exec::run(&client()?, args).await,
        Command::Shell(args) => shell::run(&client()?, args).await,
        Command::Cp(args) => cp::run(&client()?, args).await.map(done),
        Command::Logs(args) => logs::run(&client()?, args).await.map(done),
        Command::Stats(args) => stats::run(&client()?, args).await.map(done),
        Command::Egress(args) => egress::run(&client()?, args).await.map(done),
        Command::Events(args) => events::run(&client()?, args).await.map(done),
        Command::Pause(args) => pause::run(&client()?, args).await.map(done),
        Command::Resume(args) => resume::run(&client()?, args).await.map(done),
        Command::Template(command) => template::run(&client()?, command).await.map(done),
        Command::Pool(command) => pool::run(&client()?, command).await.map(done),
        Command::Volume(command) => volume::run(&client()?, command).await.map(done),
        Command::Snapshot(command) => snapshot::run(&client()?, command).await.map(done),
        Command::Fork(args) => fork::run(&client()?, args).await.map(done),
        Command::Env(command) => env::run(&client()?, command).await.map(done),
        Command::Key(command) => access::key(&client()?, command).await.map(done),
        Command::Whoami => access::whoami(&client()?).await.map(done),
        Command::Quota(command) => access::quota(&client()?, command).await.map(done),
        Command::Audit(args) => access::audit(&client()?, args).await.map(done),
    }
}

/// The admin key a local `berth serve` wrote into its data directory (`BERTH_DATA_DIR`, else
/// the default one), when this user can read it: what keeps the quick start two commands.
fn local_admin_key() -> Option<String> {
    let env = |name: &str| std::env::var(name).ok();
    let data_dir = env("BERTH_DATA_DIR")
        .filter(|dir| !dir.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| berth_server::settings::default_data_dir(&env));
    let text = std::fs::read_to_string(data_dir.join(commands::serve::ADMIN_KEY_FILE)).ok()?;
    Some(text.trim().to_owned()).filter(|key| !key.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn server_is_global_and_defaults_to_loopback() {
        let cli = Cli::try_parse_from(["berth", "ls", "--server", "http://h:1"]).unwrap();
        assert_eq!(cli.server, "http://h:1");
        let cli = Cli::try_parse_from(["berth", "--server", "http://h:2", "rm", "x"]).unwrap();
        assert_eq!(cli.server, "http://h:2");
        assert!(matches!(cli.command, Command::Rm(_)));
    }

    #[test]
    fn verbs_need_their_arguments() {
        for args in [
            &["berth"][..],
            &["berth", "rm"],
            &["berth", "inspect"],
            &["berth", "ttl", "x"],
            &["berth", "nope"],
            &["berth", "exec", "x"],
            &["berth", "cp", "a"],
            &["berth", "logs"],
            &["berth", "stats"],
            &["berth", "pause"],
            &["berth", "resume"],
            &["berth", "shell"],
            &["berth", "run"],
            &["berth", "template"],
            &["berth", "template", "create"],
            &["berth", "template", "rm"],
            &["berth", "pool"],
            &["berth", "volume"],
            &["berth", "volume", "rm"],
            &["berth", "snapshot"],
            &["berth", "snapshot", "create"],
            &["berth", "snapshot", "rm"],
            &["berth", "fork"],
            &["berth", "env"],
            &["berth", "env", "create"],
            &["berth", "env", "rm"],
        ] {
            let error = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
    }
}
