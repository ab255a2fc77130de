//! `berth exec`: runs a command in a sandbox and exits with its exit code.
//!
//! Without `-t` the output streams as server-sent events, stdout to stdout and stderr to stderr
//! as they arrive (`-i` sends all of stdin first). With `-t` the command gets a terminal over a
//! WebSocket: with `-i` and a terminal on stdin, the local terminal is in raw mode (restored on
//! every way out) and keys, window size changes and output flow both ways. `-d` starts the
//! command in the background and prints its process id.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow};
use berth_api::{ExecExit, ExecRequest, NumberOrString};
use berth_client::{BerthClient, ExecEvent, ExecMessage, ExecSocketRequest, ExecWriter};
use bytes::Bytes;
use clap::Args;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::{parse_key_value, report};
use crate::output::emit_line;
use crate::terminal::{self, RawMode};

/// How long a finished session waits for its close frame to be sent.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// End of transmission: what a terminal sends for ctrl-d, i.e. end-of-file to the reader.
const EOT: u8 = 0x04;

#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// Send stdin to the command (without -t: all of it, read before the command starts)
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the command a terminal (combine with -i for an interactive session)
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set an environment variable for the command (repeatable)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User to run as: name, uid, name:group or uid:gid
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,
    /// Kill the command after this long: 30s, 5m, 1h30m
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout, conflicts_with = "tty")]
    pub timeout: Option<String>,
    /// Start the command in the background and print its process id
    #[arg(short = 'd', long, conflicts_with_all = ["interactive", "tty"])]
    pub detach: bool,
    /// Sandbox id
    #[arg(value_name = "ID")]
    pub id: String,
    /// The command and its arguments (after `--` if they have flags of their own)
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

/// A timeout as the server reads it; checked here so a typo is a usage error.
fn parse_timeout(text: &str) -> Result<String, String> {
    berth_core::units::parse_duration(&NumberOrString::String(text.to_owned()))?;
    Ok(text.to_owned())
}

/// The exec request `args` stand for (without stdin).
pub fn build_request(args: &ExecArgs) -> ExecRequest {
    ExecRequest {
        cmd: args.command.clone(),
        env: args.env.iter().cloned().collect(),
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        stdin: None,
        timeout: args.timeout.clone().map(NumberOrString::String),
        detach: args.detach,
    }
}

/// Runs the command; the exit code is the command's (1 for a failure on berth's side, which
/// the caller reports).
pub async fn run(client: &BerthClient, args: &ExecArgs) -> anyhow::Result<ExitCode> {
    if args.detach {
        let process = client.exec_detached(&args.id, &build_request(args)).await?;
        emit_line(&process.id)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.tty {
        return run_terminal(client, args).await;
    }
    run_streamed(client, args).await
}

/// The exit status of the process as this process's exit code: 0-255 as is; anything else
/// (which no Unix process can produce) as 1, so that a failure never reads as success.
pub fn exit_code(code: i64) -> ExitCode {
    u8::try_from(code).map_or(ExitCode::FAILURE, ExitCode::from)
}

fn report_exit(exit: &ExecExit) -> ExitCode {
    if exit.timed_out {
        report(&format_args!(
            "the command timed out after {} and was killed",
            human_millis(exit.duration_ms)
        ));
    }
    exit_code(exit.exit_code)
}

fn human_millis(millis: u64) -> String {
    if millis < 1000 {
        format!("{millis}ms")
    } else {
        format!("{:.1}s", millis as f64 / 1000.0)
    }
}

async fn run_streamed(client: &BerthClient, args: &ExecArgs) -> anyhow::Result<ExitCode> {
    let mut request = build_request(args);
    if args.interactive {
        request.stdin = Some(read_stdin_text().await?);
    }
    let mut events = client.exec_stream(&args.id, &request).await?;
    let mut stdout = Output::new(tokio::io::stdout());
    let mut stderr = Output::new(tokio::io::stderr());
    while let Some(event) = events.next().await {
        match event? {
            ExecEvent::Stdout(text) => stdout.write(text.as_bytes()).await?,
            ExecEvent::Stderr(text) => stderr.write(text.as_bytes()).await?,
            ExecEvent::Exit(exit) => return Ok(report_exit(&exit)),
        }
    }
    Err(anyhow!("the exec stream ended before the command's exit status"))
}

/// All of stdin, which must be UTF-8 text: the one-shot exec API carries stdin as a string.
async fn read_stdin_text() -> anyhow::Result<String> {
    let bytes = tokio::task::spawn_blocking(|| {
        let mut bytes = Vec::new();
        std::io::stdin().lock().read_to_end(&mut bytes).map(|_| bytes)
    })
    .await
    .context("reading stdin")?
    .context("cannot read stdin")?;
    String::from_utf8(bytes).map_err(|error| {
        anyhow!(
            "stdin is not UTF-8 text (invalid byte at offset {}); send binary data with `berth cp` or `berth exec -it`",
            error.utf8_error().valid_up_to()
        )
    })
}

/// A local output stream; once its reader has gone (`| head`), output is dropped silently
/// while the command runs on to its exit code.
struct Output<W> {
    writer: W,
    closed: bool,
}

impl<W: tokio::io::AsyncWrite + Unpin> Output<W> {
    fn new(writer: W) -> Self {
        Output { writer, closed: false }
    }

    async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        if self.closed {
            return Ok(());
        }
        let written = async {
            self.writer.write_all(bytes).await?;
            self.writer.flush().await
        };
        match written.await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(error) => Err(anyhow!("cannot write the command's output: {error}")),
        }
    }
}

/// What the session sends to the server.
#[derive(Debug)]
enum Outgoing {
    Stdin(Bytes),
    Resize(u16, u16),
    /// Stdin ended.
    Eof,
    Close,
}

async fn run_terminal(client: &BerthClient, args: &ExecArgs) -> anyhow::Result<ExitCode> {
    let request = ExecSocketRequest {
        cmd: args.command.clone(),
        tty: true,
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        env: args.env.clone(),
        size: terminal::size(),
    };
    let (writer, mut reader) = client.exec_socket(&args.id, &request).await?.split();
    let stdin_is_terminal = std::io::stdin().is_terminal();

    let (outgoing, outgoing_rx) = mpsc::channel(64);
    let sender = tokio::spawn(send_outgoing(writer, outgoing_rx));
    if let Some((cols, rows)) = terminal::size() {
        let _ = outgoing.send(Outgoing::Resize(cols, rows)).await;
    }
    let resizes = tokio::spawn(forward_resizes(outgoing.clone()));
    if args.interactive {
        read_stdin_into(outgoing.clone(), stdin_is_terminal);
    }

    // Raw mode only for a person at a terminal; restored when `_raw` drops, whichever way
    // this function is left (the panic hook covers panics).
    let _raw = if args.interactive && stdin_is_terminal {
        Some(RawMode::enable().context("cannot put the terminal in raw mode")?)
    } else {
        None
    };

    let outcome = relay_output(&mut reader).await;

    resizes.abort();
    let _ = outgoing.send(Outgoing::Close).await;
    drop(outgoing);
    let _ = tokio::time::timeout(CLOSE_GRACE, sender).await;
    outcome
}

/// Writes the session's output to stdout until the exit status; stops early (as an error) on a
/// termination signal.
async fn relay_output(reader: &mut berth_client::ExecReader) -> anyhow::Result<ExitCode> {
    let mut stop = StopSignals::new()?;
    let mut stdout = Output::new(tokio::io::stdout());
    loop {
        let message = tokio::select! {
            message = reader.next() => message,
            name = stop.recv() => return Err(anyhow!("stopped by {name}; the command is ended with the session")),
        };
        match message {
            Some(Ok(ExecMessage::Output(bytes))) => stdout.write(&bytes).await?,
            Some(Ok(ExecMessage::Exit(exit))) => return Ok(report_exit(&exit)),
            Some(Err(error)) => return Err(error.into()),
            None => return Err(anyhow!("the exec session closed before the command's exit status")),
        }
    }
}

/// Sends what the session produces, in order, until told to close.
async fn send_outgoing(mut writer: ExecWriter, mut outgoing: mpsc::Receiver<Outgoing>) {
    while let Some(message) = outgoing.recv().await {
        let sent = match message {
            Outgoing::Stdin(bytes) => writer.stdin(bytes).await,
            Outgoing::Resize(cols, rows) => writer.resize(cols, rows).await,
            Outgoing::Eof => writer.stdin(Bytes::from_static(&[EOT])).await,
            Outgoing::Close => break,
        };
        // A failed send means the socket is gone; the reader reports why.
        if sent.is_err() {
            return;
        }
    }
    let _ = writer.close().await;
}

/// Reads stdin on a thread of its own (a blocked read must not hold up the runtime's
/// shutdown) and forwards it. When piped stdin ends, the terminal gets ctrl-d, which is
/// end-of-file to the program reading it.
fn read_stdin_into(outgoing: mpsc::Sender<Outgoing>, stdin_is_terminal: bool) {
    let spawned = std::thread::Builder::new().name("stdin".into()).spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buffer = vec![0u8; 16 * 1024];
        let mut last = None;
        loop {
            match stdin.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => {
                    last = buffer[..read].last().copied();
                    if outgoing
                        .blocking_send(Outgoing::Stdin(Bytes::copy_from_slice(&buffer[..read])))
                        .is_err()
                    {
                        return;
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if !stdin_is_terminal {
            // A first ctrl-d only ends a partial line; a second one then ends the input.
            if last.is_some_and(|byte| byte != b'\n') {
                let _ = outgoing.blocking_send(Outgoing::Eof);
            }
            let _ = outgoing.blocking_send(Outgoing::Eof);
        }
    });
    if let Err(error) = spawned {
        report(&format_args!("cannot read stdin: {error}"));
    }
}

/// Sends the new window size whenever it changes (SIGWINCH).
async fn forward_resizes(outgoing: mpsc::Sender<Outgoing>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut changes) = signal(SignalKind::window_change()) else {
            return;
        };
        let mut last = terminal::size();
        while changes.recv().await.is_some() {
            let size = terminal::size();
            if size != last
                && let Some((cols, rows)) = size
            {
                if outgoing.send(Outgoing::Resize(cols, rows)).await.is_err() {
                    return;
                }
                last = size;
            }
        }
    }
    #[cfg(not(unix))]
    drop(outgoing);
}

/// SIGTERM, SIGHUP and SIGINT: in raw mode ctrl-c is a key for the sandbox, so these only come
/// from elsewhere; they end the session so the terminal is restored.
struct StopSignals {
    #[cfg(unix)]
    signals: Vec<(tokio::signal::unix::Signal, &'static str)>,
}

impl StopSignals {
    fn new() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut signals = Vec::new();
            for (kind, name) in [
                (SignalKind::terminate(), "SIGTERM"),
                (SignalKind::hangup(), "SIGHUP"),
                (SignalKind::interrupt(), "SIGINT"),
            ] {
                signals.push((signal(kind).with_context(|| format!("cannot handle {name}"))?, name));
            }
            Ok(StopSignals { signals })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            let waits = self.signals.iter_mut().map(|(signal, name)| {
                Box::pin(async move {
                    signal.recv().await;
                    *name
                })
            });
            futures::future::select_all(waits).await.0
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "ctrl-c"
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        exec: ExecArgs,
    }

    fn parse(args: &[&str]) -> Result<ExecArgs, clap::Error> {
        TestCli::try_parse_from(std::iter::once("exec").chain(args.iter().copied())).map(|cli| cli.exec)
    }

    #[test]
    fn every_flag_lands_in_the_request() {
        let args = parse(&[
            "-e",
            "A=1",
            "-e",
            "B=x=y",
            "-w",
            "/w",
            "-u",
            "1000",
            "--timeout",
            "30s",
            "abc",
            "--",
            "sh",
            "-c",
            "exit 7",
        ])
        .unwrap();
        assert!(!args.interactive && !args.tty && !args.detach);
        assert_eq!(args.id, "abc");
        assert_eq!(
            build_request(&args),
            ExecRequest {
                cmd: vec!["sh".into(), "-c".into(), "exit 7".into()],
                env: BTreeMap::from([("A".into(), "1".into()), ("B".into(), "x=y".into())]),
                workdir: Some("/w".into()),
                user: Some("1000".into()),
                stdin: None,
                timeout: Some(NumberOrString::String("30s".into())),
                detach: false,
            }
        );
    }

    #[test]
    fn flags_combine_like_docker() {
        let args = parse(&["-it", "abc", "sh"]).unwrap();
        assert!(args.interactive && args.tty);
        assert_eq!(args.command, ["sh"]);
        let args = parse(&["-d", "abc", "sleep", "10"]).unwrap();
        assert!(build_request(&args).detach);
        // The command's own flags are not berth's.
        let args = parse(&["abc", "ls", "-la"]).unwrap();
        assert_eq!(args.command, ["ls", "-la"]);
    }

    #[test]
    fn usage_errors_exit_2() {
        for args in [
            &["abc"][..],
            &["-e", "NOEQUALS", "abc", "true"],
            &["--timeout", "soon", "abc", "true"],
            &["-d", "-i", "abc", "true"],
            &["-t", "--timeout", "5s", "abc", "sh"],
        ] {
            let error = parse(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn exit_codes_map_onto_a_byte_without_faking_success() {
        assert_eq!(exit_code(0), ExitCode::SUCCESS);
        assert_eq!(exit_code(7), ExitCode::from(7));
        assert_eq!(exit_code(255), ExitCode::from(255));
        assert_eq!(exit_code(256), ExitCode::FAILURE);
        assert_eq!(exit_code(-1), ExitCode::FAILURE);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_millis(12), "12ms");
        assert_eq!(human_millis(5_000), "5.0s");
    }
}
