//! Wire types for working inside a sandbox: exec (one-shot, streamed, background), files, logs
//! and stats. Routes live under `/v1/sandboxes/{id}/`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::NumberOrString;

/// Body of `POST /v1/sandboxes/{id}/exec`. With `Accept: text/event-stream` the output streams as
/// server-sent events (`stdout`, `stderr`: a JSON string each; `exit`: an [`ExecExit`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// Argv of the process, e.g. `["sh", "-c", "echo hi"]`.
    pub cmd: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Absolute working directory.
    pub workdir: Option<String>,
    /// `name`, `uid`, `name:group` or `uid:gid`.
    pub user: Option<String>,
    /// Text written to the process's stdin, followed by end-of-file.
    pub stdin: Option<String>,
    /// Kill the process after this long: `"30s"` or integer seconds.
    pub timeout: Option<NumberOrString>,
    /// Start in the background and answer at once with a [`ProcessView`].
    #[serde(default)]
    pub detach: bool,
}

/// Answer of a one-shot exec. Output beyond the server's cap is cut (`truncated`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecResult {
    /// The process's exit code; 126/127 when the program could not be run; 137 when killed
    /// (e.g. by the timeout); -1 when the engine could not tell (the sandbox ended meanwhile).
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
    pub duration_ms: u64,
    pub timed_out: bool,
    pub truncated: bool,
}

/// The final event of a streamed exec (`event: exit`), and the last text frame of a WebSocket exec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecExit {
    pub exit_code: i64,
    pub duration_ms: u64,
    pub timed_out: bool,
}

/// A text frame a WebSocket exec client sends to resize the terminal: `{"resize":{"cols":80,"rows":24}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResizeMessage {
    pub resize: TerminalSize,
}

/// A text frame a WebSocket exec client sends to close the process's stdin (end of input, e.g.
/// after piping a file into a process without a terminal): `{"eof":true}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StdinEof {
    pub eof: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TerminalSize {
    pub cols: u16,
    pub rows: u16,
}

/// A background process started with `detach: true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProcessView {
    /// Process id within berth (not a Unix pid).
    pub id: String,
    pub cmd: Vec<String>,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// Output a background process has written so far (capped; `truncated` when older output was dropped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProcessOutput {
    pub stdout: String,
    pub stderr: String,
    pub truncated: bool,
    pub running: bool,
    pub exit_code: Option<i64>,
}

/// Body of `POST /v1/sandboxes/{id}/processes/{pid}/signal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalRequest {
    /// `TERM`, `KILL`, `INT`, `HUP`, `USR1`, `USR2`, `QUIT`, `STOP`, `CONT`, `ALRM`, `TSTP`,
    /// `WINCH` (with or without `SIG`, any case), or its Linux number. Delivered to the process's
    /// process group (the process and the children it started).
    pub signal: String,
}

/// A file, directory or link in a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileStat {
    /// Absolute path.
    pub path: String,
    pub name: String,
    pub size: u64,
    /// Permission bits in octal, e.g. `"0644"`.
    pub mode: String,
    /// `file`, `dir`, `symlink` or `other`.
    pub kind: String,
    pub modified_at: Option<DateTime<Utc>>,
    pub link_target: Option<String>,
}

/// Answer of `GET /v1/sandboxes/{id}/files/list?path=DIR`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DirListing {
    pub path: String,
    pub entries: Vec<FileStat>,
}

/// One resource sample of a sandbox (`GET /v1/sandboxes/{id}/stats`; `?stream=true` sends one
/// JSON object per line about every second).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatsView {
    pub read_at: DateTime<Utc>,
    /// Percent of one CPU (200 = two CPUs busy).
    pub cpu_percent: f64,
    pub memory_used_bytes: u64,
    pub memory_limit_bytes: u64,
    pub pids: u64,
    pub network_rx_bytes: u64,
    pub network_tx_bytes: u64,
    pub block_read_bytes: u64,
    pub block_write_bytes: u64,
}
