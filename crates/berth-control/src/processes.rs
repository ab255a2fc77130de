//! The registry of background processes (`detach: true`), per sandbox, in memory: each keeps the
//! newest `exec_output_limit` bytes of stdout and stderr and its exit once it ends. Forgotten when
//! the sandbox ends; a server restart forgets them too (the processes keep running).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use berth_api::{ExecExit, ProcessOutput, ProcessView};
use berth_core::SandboxId;
use berth_runtime::OutputChunk;
use chrono::{DateTime, Utc};

use crate::output::TailBuffer;

/// Most background processes one sandbox keeps; ended ones are evicted first.
pub const MAX_PROCESSES_PER_SANDBOX: usize = 64;

/// One background process.
#[derive(Debug)]
pub struct Process {
    pub id: String,
    pub cmd: Vec<String>,
    /// Its pid inside the container (also its process group).
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    state: Mutex<ProcessState>,
}

#[derive(Debug)]
struct ProcessState {
    stdout: TailBuffer,
    stderr: TailBuffer,
    exit: Option<ExecExit>,
    ended_at: Option<DateTime<Utc>>,
}

impl Process {
    pub fn new(cmd: Vec<String>, pid: u32, output_limit: usize) -> Self {
        Process {
            id: format!("p-{:016x}", rand::random::<u64>()),
            cmd,
            pid,
            started_at: Utc::now(),
            state: Mutex::new(ProcessState {
                stdout: TailBuffer::new(output_limit),
                stderr: TailBuffer::new(output_limit),
                exit: None,
                ended_at: None,
            }),
        }
    }

    pub fn push(&self, chunk: &OutputChunk) {
        let mut state = self.lock();
        match chunk {
            OutputChunk::Stdout(bytes) => state.stdout.push(bytes),
            OutputChunk::Stderr(bytes) => state.stderr.push(bytes),
        }
    }

    pub fn finish(&self, exit: ExecExit) {
        let mut state = self.lock();
        state.exit = Some(exit);
        state.ended_at = Some(Utc::now());
    }

    pub fn running(&self) -> bool {
        self.lock().exit.is_none()
    }

    pub fn view(&self) -> ProcessView {
        let state = self.lock();
        ProcessView {
            id: self.id.clone(),
            cmd: self.cmd.clone(),
            running: state.exit.is_none(),
            exit_code: state.exit.as_ref().map(|exit| exit.exit_code),
            started_at: self.started_at,
            ended_at: state.ended_at,
        }
    }

    pub fn output(&self) -> ProcessOutput {
        let state = self.lock();
        ProcessOutput {
            stdout: state.stdout.text(),
            stderr: state.stderr.text(),
            truncated: state.stdout.truncated() || state.stderr.truncated(),
            running: state.exit.is_none(),
            exit_code: state.exit.as_ref().map(|exit| exit.exit_code),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ProcessState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("sandbox {sandbox} already has {MAX_PROCESSES_PER_SANDBOX} background processes running")]
pub struct TooManyProcesses {
    pub sandbox: SandboxId,
}

/// Background processes by sandbox, in start order.
#[derive(Debug, Default)]
pub struct ProcessRegistry {
    processes: Mutex<HashMap<SandboxId, Vec<Arc<Process>>>>,
}

impl ProcessRegistry {
    /// Makes room (evicting the oldest ended process when full) and registers `process`.
    pub fn insert(&self, sandbox: &SandboxId, process: Arc<Process>) -> Result<(), TooManyProcesses> {
        let mut processes = self.lock();
        let list = processes.entry(sandbox.clone()).or_default();
        if list.len() >= MAX_PROCESSES_PER_SANDBOX {
            match list.iter().position(|process| !process.running()) {
                Some(oldest_ended) => {
                    list.remove(oldest_ended);
                }
                None => {
                    return Err(TooManyProcesses {
                        sandbox: sandbox.clone(),
                    });
                }
            }
        }
        list.push(process);
        Ok(())
    }

    /// Whether a sandbox could take one more process now (checked before starting one).
    pub fn has_room(&self, sandbox: &SandboxId) -> bool {
        self.lock()
            .get(sandbox)
            .is_none_or(|list| list.len() < MAX_PROCESSES_PER_SANDBOX || list.iter().any(|process| !process.running()))
    }

    pub fn get(&self, sandbox: &SandboxId, id: &str) -> Option<Arc<Process>> {
        self.lock()
            .get(sandbox)
            .and_then(|list| list.iter().find(|process| process.id == id).cloned())
    }

    pub fn list(&self, sandbox: &SandboxId) -> Vec<Arc<Process>> {
        self.lock().get(sandbox).cloned().unwrap_or_default()
    }

    /// Drops a sandbox's processes (it ended).
    pub fn forget(&self, sandbox: &SandboxId) {
        self.lock().remove(sandbox);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SandboxId, Vec<Arc<Process>>>> {
        self.processes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn sandbox() -> SandboxId {
        SandboxId::generate()
    }

    fn exit(code: i64) -> ExecExit {
        ExecExit {
            exit_code: code,
            duration_ms: 1,
            timed_out: false,
        }
    }

    #[test]
    fn a_process_keeps_its_newest_output_and_its_exit() {
        let process = Process::new(vec!["sh".into()], 7, 4);
        process.push(&OutputChunk::Stdout(Bytes::from_static(b"abcdef")));
        process.push(&OutputChunk::Stderr(Bytes::from_static(b"e")));
        let output = process.output();
        assert_eq!(output.stdout, "cdef");
        assert_eq!(output.stderr, "e");
        assert!(output.truncated);
        assert!(output.running);
        process.finish(exit(3));
        let view = process.view();
        assert!(!view.running);
        assert_eq!(view.exit_code, Some(3));
        assert!(view.ended_at.is_some());
        assert!(view.id.starts_with("p-"));
    }

    #[test]
    fn the_registry_evicts_ended_processes_first_and_refuses_when_all_run() {
        let registry = ProcessRegistry::default();
        let id = sandbox();
        let mut first = None;
        for _ in 0..MAX_PROCESSES_PER_SANDBOX {
            let process = Arc::new(Process::new(vec!["true".into()], 1, 16));
            first.get_or_insert_with(|| Arc::clone(&process));
            registry.insert(&id, process).unwrap();
        }
        assert!(!registry.has_room(&id));
        assert!(registry.insert(&id, Arc::new(Process::new(vec![], 1, 16))).is_err());
        let first = first.unwrap();
        first.finish(exit(0));
        assert!(registry.has_room(&id));
        let newest = Arc::new(Process::new(vec![], 2, 16));
        registry.insert(&id, Arc::clone(&newest)).unwrap();
        assert!(registry.get(&id, &first.id).is_none(), "the ended one was evicted");
        assert!(registry.get(&id, &newest.id).is_some());
        assert_eq!(registry.list(&id).len(), MAX_PROCESSES_PER_SANDBOX);
        registry.forget(&id);
        assert!(registry.list(&id).is_empty());
    }
}
