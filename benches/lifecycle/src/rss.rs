//! Server memory with many sandboxes: creates N sandboxes through berth, each answered once it
//! runs, reads `berth serve`'s resident set from `/proc/<pid>/status`, then deletes them all
//! again, on failure too.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use futures::{StreamExt, stream};

use crate::berth::Berth;
use crate::engine::Engine;
use crate::report::{Bound, Figure};

/// Creates and deletes in flight at once.
const CONCURRENCY: usize = 8;
const TARGET_MIB: f64 = 64.0;
/// A Linux bridge takes at most 1024 ports, and every sandbox is one on the engine's default
/// bridge: more than that running at once and the engine fails the start ("exchange full").
const BRIDGE_PORTS: usize = 1024;

/// Creates `count` sandboxes of `sleep 3600` in `image`, measures, deletes them; the RSS figure.
pub async fn run(berth: &Berth, engine: &Engine, image: &str, pid: u32, count: usize) -> Result<Figure> {
    let running = engine.running_count().await?;
    if running + count >= BRIDGE_PORTS {
        eprintln!(
            "rss: warning: {running} containers already run on this engine; with {count} more the default bridge may run out of its {BRIDGE_PORTS} ports"
        );
    }
    let before = memory(pid)?;
    eprintln!(
        "rss: creating {count} sandboxes, {CONCURRENCY} at a time (server RSS now {:.1} MiB)",
        before.rss_mib
    );
    let start = Instant::now();
    let mut ids = Vec::with_capacity(count);
    let mut creates = stream::iter(0..count)
        .map(|_| berth.create(image, &[], true))
        .buffer_unordered(CONCURRENCY);
    let mut failed = None;
    while let Some(created) = creates.next().await {
        match created {
            Ok(id) => ids.push(id),
            Err(e) => {
                // Stop here; creates in flight are dropped, and whatever they made is the final
                // cleanup's (it removes every container of the bench's cluster).
                failed = Some(e.context(format!("create {} of {count}", ids.len() + 1)));
                break;
            }
        }
        if ids.len() % 100 == 0 {
            eprintln!(
                "rss: {}/{count} created ({:.0} s)",
                ids.len(),
                start.elapsed().as_secs_f64()
            );
        }
    }
    drop(creates);
    let created_in = start.elapsed();
    let measured = match failed {
        Some(e) => Err(e),
        None => {
            // A moment for what follows a create in the background (engine events, the index)
            // to settle, so the figure is the steady state with `count` records.
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            memory(pid)
        }
    };
    if let Ok(memory) = &measured {
        eprintln!(
            "rss: {count} sandboxes: VmRSS {:.1} MiB, VmHWM {:.1} MiB",
            memory.rss_mib, memory.hwm_mib
        );
    }

    eprintln!("rss: deleting {} sandboxes, {CONCURRENCY} at a time", ids.len());
    let start = Instant::now();
    let total = ids.len();
    let mut done = 0;
    let mut errors = Vec::new();
    let mut deletes = stream::iter(&ids)
        .map(|id| async move { berth.delete(id).await.with_context(|| format!("deleting {id}")) })
        .buffer_unordered(CONCURRENCY);
    while let Some(deleted) = deletes.next().await {
        done += 1;
        if let Err(e) = deleted {
            errors.push(format!("{e:#}"));
        }
        if done % 100 == 0 {
            eprintln!("rss: {done}/{total} deleted ({:.0} s)", start.elapsed().as_secs_f64());
        }
    }
    let deleted_in = start.elapsed();

    let measured = measured?;
    if !errors.is_empty() {
        bail!(
            "{} of {total} deletes failed (the final cleanup removes what is left):\n{}",
            errors.len(),
            errors.join("\n")
        );
    }
    let after = memory(pid)?;
    Ok(Figure {
        name: format!("server RSS, {count} sandboxes"),
        value: measured.rss_mib,
        unit: "MiB",
        bound: Bound::AtMost(TARGET_MIB),
        details: format!(
            "VmHWM {:.1} MiB; VmRSS {:.1} MiB before the creates, {:.1} MiB after the deletes; creates took {:.0} s, deletes {:.0} s ({CONCURRENCY} at a time)",
            measured.hwm_mib,
            before.rss_mib,
            after.rss_mib,
            created_in.as_secs_f64(),
            deleted_in.as_secs_f64()
        ),
    })
}

/// A process's resident set now and at its peak, in MiB.
struct Memory {
    rss_mib: f64,
    hwm_mib: f64,
}

fn memory(pid: u32) -> Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let status =
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}: is berth serve still running?"))?;
    Ok(Memory {
        rss_mib: field_kib(&status, "VmRSS:").with_context(|| format!("no VmRSS in {path}"))? / 1024.0,
        hwm_mib: field_kib(&status, "VmHWM:").with_context(|| format!("no VmHWM in {path}"))? / 1024.0,
    })
}

/// The value of a `Name:   1234 kB` line of `/proc/<pid>/status`, in KiB.
fn field_kib(status: &str, name: &str) -> Option<f64> {
    let line = status.lines().find_map(|line| line.strip_prefix(name))?;
    line.trim().strip_suffix("kB")?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kib_fields_of_proc_status() {
        let status = "Name:\tberth\nVmHWM:\t   40960 kB\nVmRSS:\t   33280 kB\nThreads:\t9\n";
        assert_eq!(field_kib(status, "VmRSS:"), Some(33280.0));
        assert_eq!(field_kib(status, "VmHWM:"), Some(40960.0));
        assert_eq!(field_kib(status, "VmSwap:"), None);
        assert_eq!(field_kib(status, "Threads:"), None);
    }

    #[test]
    fn reads_this_process() {
        let memory = memory(std::process::id()).unwrap();
        assert!(memory.rss_mib > 0.0 && memory.hwm_mib >= memory.rss_mib);
    }
}
