//! What runs inside a sandbox through the engine, with no agent in the image: exec sessions,
//! archive (tar) transfers, logs, resource stats.

use std::collections::BTreeMap;
use std::pin::Pin;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use tokio::io::AsyncWrite;

use crate::RuntimeError;

/// A process to run in a sandbox's container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecSpec {
    pub cmd: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    /// Allocate a terminal: output arrives as [`OutputChunk::Stdout`] only, unsplit.
    pub tty: bool,
    /// Attach stdin: the session's `stdin` writer is `Some`; shutting it down sends EOF.
    pub attach_stdin: bool,
}

/// A piece of a process's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputChunk {
    Stdout(Bytes),
    Stderr(Bytes),
}

/// A started exec: its id, its output stream (ends when the process ends) and its stdin.
pub struct ExecSession {
    pub exec_id: String,
    pub output: BoxStream<'static, Result<OutputChunk, RuntimeError>>,
    pub stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
}

/// An exec's state as the engine reports it. The engine reports success for an exec whose
/// program could not start; only `exit_code` (126/127) tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecState {
    pub running: bool,
    pub exit_code: Option<i64>,
}

/// Facts about a path in a container (from the engine's archive API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStat {
    pub name: String,
    pub size: u64,
    /// Unix permission bits plus the file type, as the engine reports them (Go `os.FileMode`).
    pub mode: u32,
    pub is_dir: bool,
    pub modified_at: Option<DateTime<Utc>>,
    /// Set for a symbolic link.
    pub link_target: Option<String>,
}

/// Which part of the main process's output to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    /// Only the last N lines.
    pub tail: Option<u64>,
    pub since: Option<DateTime<Utc>>,
    /// Prefix each line with its RFC 3339 time, as the engine records it.
    pub timestamps: bool,
}

/// One resource-usage sample of a container.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceStats {
    pub read_at: DateTime<Utc>,
    /// Percent of one CPU (200 = two CPUs busy), over the interval since the previous sample.
    pub cpu_percent: f64,
    pub memory_used_bytes: u64,
    pub memory_limit_bytes: u64,
    pub pids: u64,
    pub network_rx_bytes: u64,
    pub network_tx_bytes: u64,
    pub block_read_bytes: u64,
    pub block_write_bytes: u64,
}

/// A byte stream going to the engine (an upload body).
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;
/// A byte stream coming from the engine (a download).
pub type EngineByteStream = BoxStream<'static, Result<Bytes, RuntimeError>>;
