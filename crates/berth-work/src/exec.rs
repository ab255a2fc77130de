//! Exec inside a sandbox through the engine: request validation, starting a process (plain, or
//! through the `/bin/sh` wrapper that reports its pid so it can be killed), the driver task that
//! pumps its output, enforces the timeout and reads the real exit code, and signals.
//!
//! Docker has no "kill this exec" call. When berth must be able to end a process (a `timeout`,
//! `detach`, an interactive session whose client hangs up, a signal), it runs the command as
//! `/bin/sh -c 'echo "berth-pid:$$" >&2; exec "$@"' berth-exec CMD…`: the shell prints its pid
//! (the first line of stderr, or of the terminal) and replaces itself with the command, which
//! keeps that pid. The engine starts every exec as a session and process-group leader, so a
//! second exec, `kill -s SIG -PID`, reaches the command and every child it started. The pid line
//! is taken out of the output before anyone sees it.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_api::{ExecExit, ExecRequest, ExecResult, ProcessView};
use berth_core::units;
use berth_runtime::{ExecSpec, OutputChunk, Runtime, RuntimeError};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::debug;

use berth_control::output::{HeadBuffer, PidSniffer, Sniffed, relocate_start_error};
use berth_control::processes::Process;
use berth_control::service::{NotFoundKind, RunningSandbox, SandboxService, ServiceError};

/// The shell the wrapper and the signal execs run.
pub const SHELL: &str = "/bin/sh";
/// Prints the shell's pid, then becomes the user's command (same pid, same process group).
const WRAPPER: &str = r#"echo "berth-pid:$$" >&2; exec "$@""#;
/// `$0` of the wrapper shell (what its own error messages start with).
const WRAPPER_NAME: &str = "berth-exec";
/// [`WRAPPER`] that first sizes the terminal to `$1` columns and `$2` rows (quietly skipped when
/// the image has no `stty`).
const SIZED_WRAPPER: &str = r#"stty cols "$1" rows "$2" 2>/dev/null; shift 2; echo "berth-pid:$$" >&2; exec "$@""#;
/// Signals a process group, in the syntaxes of busybox/bash (`-PID`) and dash (`-- -PID`), then
/// the process alone.
const SIGNAL_SCRIPT: &str =
    r#"kill -s "$1" -"$2" 2>/dev/null || kill -s "$1" -- -"$2" 2>/dev/null || kill -s "$1" "$2""#;
/// What the image needs for the features that must be able to end a process.
pub const SHELL_REQUIREMENT: &str = "a `timeout`, `detach: true`, a signal, or ending an interactive exec by closing \
     the socket needs `/bin/sh` (with its `kill` builtin) in the sandbox's image";
/// Longest wait for the wrapper's pid line.
const PID_WAIT: Duration = Duration::from_secs(30);
/// After a timeout's SIGKILL, how long the output may still take to end.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// Exit code reported for a process killed by a timeout (128 + SIGKILL).
pub const KILLED_EXIT_CODE: i64 = 137;
/// Exit code reported when the engine could not tell (the sandbox went away meanwhile).
pub const UNKNOWN_EXIT_CODE: i64 = -1;

/// Signals a client may send to a background process: name and Linux number.
pub const SIGNALS: &[(&str, u8)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("KILL", 9),
    ("USR1", 10),
    ("USR2", 12),
    ("ALRM", 14),
    ("TERM", 15),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("WINCH", 28),
];

/// A validated exec request.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecPlan {
    pub spec: ExecSpec,
    pub stdin: Option<Bytes>,
    pub timeout: Option<Duration>,
}

/// Checks an exec request and turns it into what the engine is asked to run.
pub fn plan(request: &ExecRequest) -> Result<ExecPlan, ServiceError> {
    let spec = exec_spec(
        &request.cmd,
        &request.env,
        request.workdir.as_deref(),
        request.user.as_deref(),
        false,
        request.stdin.is_some(),
    )?;
    let timeout = match &request.timeout {
        None => None,
        Some(timeout) => {
            Some(units::parse_duration(timeout).map_err(|message| ServiceError::invalid("timeout", message))?)
        }
    };
    Ok(ExecPlan {
        spec,
        stdin: request.stdin.clone().map(Bytes::from),
        timeout,
    })
}

/// Validates the parts of an exec every route shares (JSON body or WebSocket query).
pub fn exec_spec(
    cmd: &[String],
    env: &BTreeMap<String, String>,
    workdir: Option<&str>,
    user: Option<&str>,
    tty: bool,
    attach_stdin: bool,
) -> Result<ExecSpec, ServiceError> {
    let mut errors = Vec::new();
    let mut reject = |field: String, message: String| errors.push(berth_core::FieldError { field, message });
    match cmd.first() {
        None => reject(
            "cmd".into(),
            "must name a program, e.g. [\"sh\", \"-c\", \"echo hi\"]".into(),
        ),
        Some(program) if program.is_empty() => reject("cmd[0]".into(), "the program must not be empty".into()),
        Some(_) => {}
    }
    if let Some(index) = cmd.iter().position(|arg| arg.contains('\0')) {
        reject(format!("cmd[{index}]"), "arguments must not contain NUL bytes".into());
    }
    for (key, value) in env {
        if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
            reject(
                format!("env.{key}"),
                "names must be non-empty without `=` or NUL; values without NUL".into(),
            );
        }
    }
    if let Some(workdir) = workdir
        && (!workdir.starts_with('/') || workdir.contains('\0'))
    {
        reject(
            "workdir".into(),
            format!("`{workdir}` must be an absolute path such as /work"),
        );
    }
    if let Some(user) = user
        && !user_is_valid(user)
    {
        reject(
            "user".into(),
            format!("`{user}` is not a user: use name, uid, name:group or uid:gid"),
        );
    }
    if !errors.is_empty() {
        return Err(ServiceError::InvalidRequest(berth_core::ValidationErrors(errors)));
    }
    Ok(ExecSpec {
        cmd: cmd.to_vec(),
        env: env.clone(),
        workdir: workdir.map(str::to_owned),
        user: user.map(str::to_owned),
        tty,
        attach_stdin,
    })
}

fn user_is_valid(user: &str) -> bool {
    let part_ok = |part: &str| {
        !part.is_empty() && part.len() <= 32 && part.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    };
    let mut parts = user.splitn(2, ':');
    part_ok(parts.next().unwrap_or_default()) && parts.next().is_none_or(part_ok)
}

/// `TERM`, `SIGTERM`, `term` or `15` → `TERM`.
pub fn parse_signal(text: &str) -> Result<&'static str, ServiceError> {
    let upper = text.trim().to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let found = match name.parse::<u8>() {
        Ok(number) => SIGNALS.iter().find(|(_, n)| *n == number),
        Err(_) => SIGNALS.iter().find(|(known, _)| *known == name),
    };
    found.map(|(name, _)| *name).ok_or_else(|| {
        ServiceError::invalid(
            "signal",
            format!(
                "`{text}` is not a signal berth sends: use one of {} (with or without SIG) or its number",
                SIGNALS.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
            ),
        )
    })
}

/// A started exec.
pub struct Started {
    pub exec_id: String,
    /// The process's pid in the container (its process group too); `Some` when started through
    /// the wrapper.
    pub pid: Option<u32>,
    pub output: BoxStream<'static, Result<OutputChunk, RuntimeError>>,
    pub stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    pub began: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Engine(#[from] RuntimeError),
    /// The wrapper shell did not run; the engine's words.
    #[error("{SHELL_REQUIREMENT}; the engine said: {0}")]
    NoShell(String),
}

impl StartError {
    pub fn into_service(self, sandbox: &RunningSandbox) -> ServiceError {
        match self {
            StartError::Engine(error) => ServiceError::Engine {
                error,
                sandbox_id: Some(sandbox.id.clone()),
            },
            no_shell @ StartError::NoShell(_) => ServiceError::Unsupported(no_shell.to_string()),
        }
    }
}

/// Starts `spec` in the container; `tracked` runs it through the pid-reporting wrapper.
pub async fn start(
    runtime: &Arc<dyn Runtime>,
    container_id: &str,
    spec: &ExecSpec,
    tracked: bool,
) -> Result<Started, StartError> {
    start_sized(runtime, container_id, spec, tracked, None).await
}

/// Like [`start`], with the terminal's initial `(cols, rows)`: a tracked TTY exec sets it from
/// inside (`stty`) before the program runs, since the engine can only resize a running exec.
pub async fn start_sized(
    runtime: &Arc<dyn Runtime>,
    container_id: &str,
    spec: &ExecSpec,
    tracked: bool,
    initial_size: Option<(u16, u16)>,
) -> Result<Started, StartError> {
    let began = Instant::now();
    if !tracked {
        let session = runtime.exec(container_id, spec).await?;
        let mut first = !spec.tty;
        let output = session
            .output
            .map(move |item| {
                if std::mem::take(&mut first) {
                    item.map(relocate_start_error)
                } else {
                    item
                }
            })
            .boxed();
        return Ok(Started {
            exec_id: session.exec_id,
            pid: None,
            output,
            stdin: session.stdin,
            began,
        });
    }

    let mut wrapped = spec.clone();
    wrapped.cmd = match initial_size.filter(|_| spec.tty) {
        // The size travels as positional parameters, never inside the script text.
        Some((cols, rows)) => [SHELL, "-c", SIZED_WRAPPER, WRAPPER_NAME]
            .into_iter()
            .map(str::to_owned)
            .chain([cols.to_string(), rows.to_string()])
            .chain(spec.cmd.iter().cloned())
            .collect(),
        None => [SHELL, "-c", WRAPPER, WRAPPER_NAME]
            .into_iter()
            .map(str::to_owned)
            .chain(spec.cmd.iter().cloned())
            .collect(),
    };
    let session = runtime.exec(container_id, &wrapped).await?;
    let mut output = session.output;
    let mut sniffer = PidSniffer::new(spec.tty);
    let mut early = Vec::new();
    let deadline = Instant::now() + PID_WAIT;
    let ended = loop {
        match tokio::time::timeout_at(deadline, output.next()).await {
            Ok(Some(Ok(chunk))) => {
                early.extend(sniffer.feed(chunk));
                if sniffer.state() != Sniffed::Undecided {
                    break false;
                }
            }
            Ok(Some(Err(error))) => return Err(error.into()),
            Ok(None) => {
                early.extend(sniffer.finish());
                break true;
            }
            Err(_) => {
                early.extend(sniffer.finish());
                break false;
            }
        }
    };
    match sniffer.state() {
        Sniffed::Pid(pid) => Ok(Started {
            exec_id: session.exec_id,
            pid: Some(pid),
            output: futures::stream::iter(early.into_iter().map(Ok)).chain(output).boxed(),
            stdin: session.stdin,
            began,
        }),
        _ => {
            let said: String = early
                .iter()
                .map(|chunk| match chunk {
                    OutputChunk::Stdout(bytes) | OutputChunk::Stderr(bytes) => String::from_utf8_lossy(bytes),
                })
                .collect();
            let said = said.trim();
            let said = if said.is_empty() {
                if ended {
                    "the process ended without output"
                } else {
                    "no pid line from the shell"
                }
            } else {
                said
            };
            Err(StartError::NoShell(said.to_owned()))
        }
    }
}

/// Sends `signal` (a name from [`SIGNALS`]) to the process group `pid` through a second exec,
/// as root. Answers whether the shell's `kill` succeeded.
pub async fn signal(
    runtime: &Arc<dyn Runtime>,
    container_id: &str,
    pid: u32,
    signal: &str,
) -> Result<bool, StartError> {
    let spec = ExecSpec {
        cmd: [SHELL, "-c", SIGNAL_SCRIPT, "berth-signal", signal, &pid.to_string()]
            .into_iter()
            .map(str::to_owned)
            .collect(),
        user: Some("0".into()),
        ..ExecSpec::default()
    };
    let started = start(runtime, container_id, &spec, false).await?;
    let mut output = started.output;
    let mut said = HeadBuffer::new(4096);
    while let Some(item) = output.next().await {
        match item {
            Ok(OutputChunk::Stdout(bytes) | OutputChunk::Stderr(bytes)) => said.push(&bytes),
            Err(error) => return Err(error.into()),
        }
    }
    let code = wait_exit(runtime, &started.exec_id, Some(Duration::from_secs(10))).await;
    if matches!(code, Some(126 | 127)) {
        return Err(StartError::NoShell(said.text().trim().to_owned()));
    }
    debug!(pid, signal, ?code, said = %said.text().trim(), "signal sent");
    Ok(code == Some(0))
}

/// SIGKILL to a process group, best effort (logged, never failing the caller).
pub async fn kill(runtime: &Arc<dyn Runtime>, container_id: &str, pid: u32) {
    match signal(runtime, container_id, pid, "KILL").await {
        Ok(true) => debug!(container = %container_id, pid, "killed an exec"),
        Ok(false) => debug!(container = %container_id, pid, "an exec to kill had already ended"),
        Err(error) => debug!(container = %container_id, pid, %error, "could not kill an exec"),
    }
}

/// Polls the engine until the exec has ended; its exit code (`None` if the engine cannot tell,
/// or `patience` ran out).
pub async fn wait_exit(runtime: &Arc<dyn Runtime>, exec_id: &str, patience: Option<Duration>) -> Option<i64> {
    let deadline = patience.map(|patience| Instant::now() + patience);
    let mut delay = Duration::from_millis(2);
    loop {
        match runtime.exec_state(exec_id).await {
            Ok(state) if !state.running => return state.exit_code,
            Ok(_) => {}
            Err(error) => {
                debug!(exec = %exec_id, %error, "cannot read an exec's state");
                return None;
            }
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return None;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(250));
    }
}

/// What a driven exec produces for a streaming consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    Output(OutputChunk),
    Exit(ExecExit),
}

/// Where a driven exec's output goes.
pub enum Sink {
    /// A request that reads it (one-shot or streamed): when it goes away, a tracked process is killed.
    Channel(mpsc::Sender<ExecEvent>),
    /// A background process's buffers.
    Process(Arc<Process>),
}

/// Runs an exec to its end in its own task: writes `stdin` then EOF, pumps the output into
/// `sink`, kills the process when `timeout` passes (or a channel consumer goes away), and
/// finishes with the real exit code from the engine.
pub fn drive(
    runtime: Arc<dyn Runtime>,
    container_id: String,
    started: Started,
    stdin: Option<Bytes>,
    timeout: Option<Duration>,
    sink: Sink,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run_driver(runtime, container_id, started, stdin, timeout, sink))
}

async fn run_driver(
    runtime: Arc<dyn Runtime>,
    container_id: String,
    started: Started,
    stdin: Option<Bytes>,
    timeout: Option<Duration>,
    sink: Sink,
) {
    let Started {
        exec_id,
        pid,
        mut output,
        stdin: writer,
        began,
    } = started;
    if let Some(writer) = writer {
        feed_stdin(writer, stdin);
    }
    let target = Target {
        runtime,
        container_id,
        exec_id,
        pid,
    };
    let timed_out = Arc::new(AtomicBool::new(false));
    let (gave_up_tx, mut gave_up) = oneshot::channel::<()>();
    let killer = timeout.map(|timeout| target.kill_at(began + timeout, Arc::clone(&timed_out), gave_up_tx));
    let has_deadline = killer.is_some();

    let consumer_gone = pump(&mut output, &sink, &mut gave_up, has_deadline, &target.exec_id).await;
    drop(output);
    if consumer_gone {
        target.abandon(killer).await;
        return;
    }
    let Some(code) = target.exit_code(timed_out.load(Ordering::SeqCst), &sink).await else {
        target.abandon(killer).await;
        return;
    };
    if let Some(killer) = killer {
        killer.abort();
    }
    let exit = ExecExit {
        exit_code: code.unwrap_or(UNKNOWN_EXIT_CODE),
        duration_ms: u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
        timed_out: timed_out.load(Ordering::SeqCst),
    };
    match sink {
        Sink::Channel(events) => {
            let _ = events.send(ExecEvent::Exit(exit)).await;
        }
        Sink::Process(process) => process.finish(exit),
    }
}

/// Writes `stdin` to the process, then EOF, in a task of its own: a process that reads its
/// input slowly (or never) must not hold its output back.
fn feed_stdin(mut writer: Pin<Box<dyn AsyncWrite + Send>>, stdin: Option<Bytes>) {
    tokio::spawn(async move {
        if let Some(data) = stdin
            && let Err(error) = writer.write_all(&data).await
        {
            debug!(%error, "the process did not read all of its stdin");
        }
        let _ = writer.shutdown().await;
    });
}

/// Moves the output into `sink` until it ends, the deadline's grace has run out, or the
/// consumer goes away; answers whether the consumer went away.
async fn pump(
    output: &mut BoxStream<'static, Result<OutputChunk, RuntimeError>>,
    sink: &Sink,
    gave_up: &mut oneshot::Receiver<()>,
    has_deadline: bool,
    exec_id: &str,
) -> bool {
    // A consumer that hangs up is noticed at once, not at the process's next output.
    let hung_up = async {
        match sink {
            Sink::Channel(events) => events.closed().await,
            Sink::Process(_) => std::future::pending().await,
        }
    };
    let mut hung_up = Box::pin(hung_up);
    loop {
        tokio::select! {
            _ = &mut *gave_up, if has_deadline => return false,
            () = &mut hung_up => return true,
            item = output.next() => match item {
                Some(Ok(chunk)) => match sink {
                    Sink::Process(process) => process.push(&chunk),
                    Sink::Channel(events) => {
                        let sent = tokio::select! {
                            sent = events.send(ExecEvent::Output(chunk)) => sent.is_ok(),
                            _ = &mut *gave_up, if has_deadline => return false,
                        };
                        if !sent {
                            return true;
                        }
                    }
                },
                Some(Err(error)) => {
                    debug!(exec = %exec_id, %error, "exec output ended with an error");
                    return false;
                }
                None => return false,
            },
        }
    }
}

/// The process a driver is responsible for.
struct Target {
    runtime: Arc<dyn Runtime>,
    container_id: String,
    exec_id: String,
    /// Set when it was started through the wrapper, so it can be killed.
    pid: Option<u32>,
}

impl Target {
    /// A task that kills the process at `deadline`, marks `timed_out`, and after the grace
    /// tells the driver through `gave_up` to stop waiting for the output's end.
    fn kill_at(
        &self,
        deadline: Instant,
        timed_out: Arc<AtomicBool>,
        gave_up: oneshot::Sender<()>,
    ) -> tokio::task::JoinHandle<()> {
        let runtime = Arc::clone(&self.runtime);
        let container_id = self.container_id.clone();
        let pid = self.pid;
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            timed_out.store(true, Ordering::SeqCst);
            if let Some(pid) = pid {
                kill(&runtime, &container_id, pid).await;
            }
            tokio::time::sleep(KILL_GRACE).await;
            let _ = gave_up.send(());
        })
    }

    /// The exit code once the process has ended (`Some(None)` when the engine cannot tell);
    /// `None` when a channel consumer went away first.
    async fn exit_code(&self, timed_out: bool, sink: &Sink) -> Option<Option<i64>> {
        if timed_out {
            return Some(Some(
                wait_exit(&self.runtime, &self.exec_id, Some(Duration::from_secs(2)))
                    .await
                    .unwrap_or(KILLED_EXIT_CODE),
            ));
        }
        match sink {
            Sink::Process(_) => Some(wait_exit(&self.runtime, &self.exec_id, None).await),
            Sink::Channel(events) => tokio::select! {
                code = wait_exit(&self.runtime, &self.exec_id, None) => Some(code),
                () = events.closed() => None,
            },
        }
    }

    /// Nobody reads the process any more: it is killed (when it can be) and the timeout
    /// disarmed.
    async fn abandon(&self, killer: Option<tokio::task::JoinHandle<()>>) {
        if let Some(pid) = self.pid {
            kill(&self.runtime, &self.container_id, pid).await;
        }
        if let Some(killer) = killer {
            killer.abort();
        }
    }
}

/// An interactive exec (a terminal over a WebSocket, or any transport that carries input and
/// output both ways): its output, and the two handles that steer it, which may live in
/// different tasks.
pub struct Interactive {
    pub output: BoxStream<'static, Result<OutputChunk, RuntimeError>>,
    pub input: InteractiveInput,
    pub control: InteractiveControl,
}

/// Starts `spec` interactively in a running sandbox: through the wrapper so that a client that
/// hangs up ends the process; without it when the image has no `/bin/sh` (a hang-up then only
/// closes the process's stdin). A terminal is sized to `initial_size` before the client's
/// first input can arrive, so a program that reads its size at once sees the right one.
pub async fn interactive(
    service: &SandboxService,
    id: &str,
    spec: &ExecSpec,
    initial_size: Option<(u16, u16)>,
) -> Result<Interactive, ServiceError> {
    let sandbox = service.running_container(id).await?;
    let runtime = Arc::clone(&sandbox.engine);
    let started = match start_sized(&runtime, &sandbox.container_id, spec, true, initial_size).await {
        Ok(started) => started,
        Err(StartError::NoShell(_)) => start(&runtime, &sandbox.container_id, spec, false)
            .await
            .map_err(|error| error.into_service(&sandbox))?,
        Err(error) => return Err(error.into_service(&sandbox)),
    };
    let Started {
        exec_id,
        pid,
        output,
        stdin,
        began,
    } = started;
    let mut input = InteractiveInput {
        runtime: Arc::clone(&runtime),
        exec_id: exec_id.clone(),
        stdin,
    };
    if let Some((cols, rows)) = initial_size
        && spec.tty
    {
        input.resize(cols, rows).await;
    }
    Ok(Interactive {
        output,
        input,
        control: InteractiveControl {
            target: Target {
                runtime,
                container_id: sandbox.container_id,
                exec_id,
                pid,
            },
            began,
        },
    })
}

/// What goes into an interactive process: its stdin and its terminal's size.
pub struct InteractiveInput {
    runtime: Arc<dyn Runtime>,
    exec_id: String,
    stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
}

impl InteractiveInput {
    /// Writes to the process's stdin; once a write fails (the process closed it), the rest is
    /// dropped.
    pub async fn write(&mut self, bytes: &[u8]) {
        if let Some(writer) = self.stdin.as_mut()
            && (writer.write_all(bytes).await.is_err() || writer.flush().await.is_err())
        {
            self.stdin = None;
        }
    }

    /// Ends the process's stdin (the client's end of input, like Ctrl-D on a pipe).
    pub async fn close_stdin(&mut self) {
        if let Some(mut writer) = self.stdin.take() {
            let _ = writer.shutdown().await;
        }
    }

    /// Resizes the terminal, best effort (a process that has just ended cannot be resized).
    /// `&mut` only so that the future is `Send`: the stdin writer beside it is not `Sync`.
    pub async fn resize(&mut self, cols: u16, rows: u16) {
        if let Err(error) = self.runtime.exec_resize(&self.exec_id, cols, rows).await {
            debug!(exec = %self.exec_id, %error, "resize failed");
        }
    }

    pub fn exec_id(&self) -> &str {
        &self.exec_id
    }
}

/// How an interactive process ends: abandoned by its client, or waited for.
pub struct InteractiveControl {
    target: Target,
    began: Instant,
}

impl InteractiveControl {
    /// The client went away: the process is killed when it was started through the wrapper;
    /// otherwise its stdin is already closed and it ends on its own terms.
    pub async fn abandon(self) {
        if self.target.pid.is_none() {
            debug!(exec = %self.target.exec_id, "client left; the process's stdin is closed");
        }
        self.target.abandon(None).await;
    }

    /// The output has ended: waits (30 s at most) for the engine's exit code.
    pub async fn finish(self) -> ExecExit {
        let exit_code = wait_exit(
            &self.target.runtime,
            &self.target.exec_id,
            Some(Duration::from_secs(30)),
        )
        .await
        .unwrap_or(UNKNOWN_EXIT_CODE);
        ExecExit {
            exit_code,
            duration_ms: u64::try_from(self.began.elapsed().as_millis()).unwrap_or(u64::MAX),
            timed_out: false,
        }
    }

    pub fn exec_id(&self) -> &str {
        &self.target.exec_id
    }
}

/// Starts an exec for a request and drives it; the events arrive on the returned channel
/// (output as it comes, then exactly one `Exit`).
pub async fn stream(
    service: &SandboxService,
    id: &str,
    request: &ExecRequest,
) -> Result<mpsc::Receiver<ExecEvent>, ServiceError> {
    let sandbox = service.running_container(id).await?;
    let plan = plan(request)?;
    let started = start(
        &sandbox.engine,
        &sandbox.container_id,
        &plan.spec,
        plan.timeout.is_some(),
    )
    .await
    .map_err(|error| error.into_service(&sandbox))?;
    let (events, receiver) = mpsc::channel(16);
    drive(
        Arc::clone(&sandbox.engine),
        sandbox.container_id,
        started,
        plan.stdin,
        plan.timeout,
        Sink::Channel(events),
    );
    Ok(receiver)
}

/// Runs a command to its end and answers its exit code and (capped) output.
pub async fn run(service: &SandboxService, id: &str, request: &ExecRequest) -> Result<ExecResult, ServiceError> {
    let mut events = stream(service, id, request).await?;
    let limit = service.config().exec_output_limit;
    let (mut stdout, mut stderr) = (HeadBuffer::new(limit), HeadBuffer::new(limit));
    let mut exit = None;
    while let Some(event) = events.recv().await {
        match event {
            ExecEvent::Output(OutputChunk::Stdout(bytes)) => stdout.push(&bytes),
            ExecEvent::Output(OutputChunk::Stderr(bytes)) => stderr.push(&bytes),
            ExecEvent::Exit(done) => exit = Some(done),
        }
    }
    let exit = exit.ok_or_else(|| ServiceError::Engine {
        error: RuntimeError::Other("the exec ended without an exit status".into()),
        sandbox_id: None,
    })?;
    Ok(ExecResult {
        exit_code: exit.exit_code,
        stdout: stdout.text(),
        stderr: stderr.text(),
        duration_ms: exit.duration_ms,
        timed_out: exit.timed_out,
        truncated: stdout.truncated() || stderr.truncated(),
    })
}

/// Starts a background process and answers at once.
pub async fn detach(service: &SandboxService, id: &str, request: &ExecRequest) -> Result<ProcessView, ServiceError> {
    let sandbox = service.running_container(id).await?;
    let plan = plan(request)?;
    if !service.processes().has_room(&sandbox.id) {
        return Err(ServiceError::InvalidState(format!(
            "sandbox {id} already has {} background processes running: wait for one to end or signal one",
            berth_control::processes::MAX_PROCESSES_PER_SANDBOX
        )));
    }
    let started = start(&sandbox.engine, &sandbox.container_id, &plan.spec, true)
        .await
        .map_err(|error| error.into_service(&sandbox))?;
    let Some(pid) = started.pid else {
        return Err(ServiceError::Unsupported(SHELL_REQUIREMENT.into()));
    };
    let process = Arc::new(Process::new(
        plan.spec.cmd.clone(),
        pid,
        service.config().exec_output_limit,
    ));
    if let Err(error) = service.processes().insert(&sandbox.id, Arc::clone(&process)) {
        kill(&sandbox.engine, &sandbox.container_id, pid).await;
        return Err(ServiceError::InvalidState(error.to_string()));
    }
    drive(
        Arc::clone(&sandbox.engine),
        sandbox.container_id,
        started,
        plan.stdin,
        plan.timeout,
        Sink::Process(Arc::clone(&process)),
    );
    Ok(process.view())
}

/// Sends a signal to a background process's process group.
pub async fn signal_process(
    service: &SandboxService,
    id: &str,
    process_id: &str,
    signal_name: &str,
) -> Result<ProcessView, ServiceError> {
    let name = parse_signal(signal_name)?;
    let sandbox = service.running_container(id).await?;
    let process = service.processes().get(&sandbox.id, process_id).ok_or_else(|| {
        ServiceError::not_found(
            NotFoundKind::Process,
            format!("sandbox {id} has no background process `{process_id}`"),
        )
    })?;
    if !process.running() {
        return Err(ServiceError::InvalidState(format!(
            "process {process_id} has ended (exit code {})",
            process.view().exit_code.unwrap_or(UNKNOWN_EXIT_CODE)
        )));
    }
    let delivered = signal(&sandbox.engine, &sandbox.container_id, process.pid, name)
        .await
        .map_err(|error| error.into_service(&sandbox))?;
    if !delivered {
        debug!(sandbox = %id, process = %process_id, "the process had already ended when the signal came");
    }
    Ok(process.view())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::NumberOrString;

    #[test]
    fn signals_are_read_by_name_or_number() {
        assert_eq!(parse_signal("TERM").unwrap(), "TERM");
        assert_eq!(parse_signal("sigkill").unwrap(), "KILL");
        assert_eq!(parse_signal(" 15 ").unwrap(), "TERM");
        assert_eq!(parse_signal("SIGUSR1").unwrap(), "USR1");
        for bad in ["", "SIG", "BOGUS", "0", "99", "-9", "TERM; rm -rf /"] {
            let error = parse_signal(bad).unwrap_err();
            assert!(matches!(error, ServiceError::InvalidRequest(_)), "{bad}");
            assert!(error.to_string().contains("signal"), "{error}");
        }
    }

    #[test]
    fn an_exec_request_is_validated_field_by_field() {
        let request = ExecRequest {
            cmd: vec![],
            env: BTreeMap::from([("A=B".into(), "x".into())]),
            workdir: Some("relative".into()),
            user: Some("bad user".into()),
            timeout: Some(NumberOrString::String("soon".into())),
            ..ExecRequest::default()
        };
        let ServiceError::InvalidRequest(errors) = plan(&request).unwrap_err() else {
            panic!("validation error expected");
        };
        let fields: Vec<_> = errors.0.iter().map(|error| error.field.as_str()).collect();
        assert_eq!(fields, ["cmd", "env.A=B", "workdir", "user"]);

        let request = ExecRequest {
            cmd: vec!["sh".into()],
            timeout: Some(NumberOrString::String("soon".into())),
            ..ExecRequest::default()
        };
        let ServiceError::InvalidRequest(errors) = plan(&request).unwrap_err() else {
            panic!("validation error expected");
        };
        assert_eq!(errors.0[0].field, "timeout");

        let plan = plan(&ExecRequest {
            cmd: vec!["cat".into()],
            stdin: Some("hi".into()),
            timeout: Some(NumberOrString::Number(30.0)),
            user: Some("1000:1000".into()),
            ..ExecRequest::default()
        })
        .unwrap();
        assert!(plan.spec.attach_stdin);
        assert_eq!(plan.timeout, Some(Duration::from_secs(30)));
        assert_eq!(plan.stdin.as_deref(), Some(&b"hi"[..]));
    }
}
