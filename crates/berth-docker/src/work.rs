//! Pure translations of the engine's exec, archive, log and stats answers into berth's types:
//! output chunks, path stats (Go `os.FileMode` bits) and resource samples (docker CLI arithmetic).

use berth_runtime::{OutputChunk, PathStat, ResourceStats};
use bollard::container::{LogOutput, PathStatResponse};
use bollard::models::{ContainerCpuStats, ContainerMemoryStats, ContainerStatsResponse};
use bytes::Bytes;
use chrono::{DateTime, Utc};

/// Go `os.ModeDir`.
pub(crate) const MODE_DIR: u32 = 1 << 31;
/// Go `os.ModeSymlink`.
pub(crate) const MODE_SYMLINK: u32 = 1 << 27;

/// One frame of an attached or logged stream as berth output. A terminal's unsplit output
/// (`Console`) is stdout; echoed stdin frames (never sent by the engine for exec) are dropped.
pub(crate) fn output_chunk(frame: LogOutput) -> Option<OutputChunk> {
    match frame {
        LogOutput::StdOut { message } | LogOutput::Console { message } => Some(OutputChunk::Stdout(message)),
        LogOutput::StdErr { message } => Some(OutputChunk::Stderr(message)),
        LogOutput::StdIn { .. } => None,
    }
}

/// A log frame read with timestamps, kept when it was logged at or after `since` (with its
/// timestamp only if `keep_timestamp`). A frame without a readable timestamp is kept whole.
pub(crate) fn log_line_since(chunk: OutputChunk, since: DateTime<Utc>, keep_timestamp: bool) -> Option<OutputChunk> {
    let (bytes, rebuild): (_, fn(Bytes) -> OutputChunk) = match chunk {
        OutputChunk::Stdout(bytes) => (bytes, OutputChunk::Stdout),
        OutputChunk::Stderr(bytes) => (bytes, OutputChunk::Stderr),
    };
    let stamped = bytes.iter().position(|b| *b == b' ').and_then(|space| {
        let stamp = std::str::from_utf8(&bytes[..space]).ok()?;
        let at = DateTime::parse_from_rfc3339(stamp).ok()?.with_timezone(&Utc);
        Some((at, space))
    });
    match stamped {
        Some((at, _)) if at < since => None,
        Some((_, space)) if !keep_timestamp => Some(rebuild(bytes.slice(space + 1..))),
        _ => Some(rebuild(bytes)),
    }
}

/// The engine's `X-Docker-Container-Path-Stat` (already decoded from base64 JSON) as a
/// [`PathStat`].
pub(crate) fn path_stat(stat: PathStatResponse) -> PathStat {
    let modified_at = stat
        .modification_time
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        // Go's zero time: the engine had none.
        .filter(|t| t.timestamp() > 0);
    let is_symlink = stat.file_mode & MODE_SYMLINK != 0;
    PathStat {
        name: stat.name,
        size: u64::try_from(stat.size).unwrap_or(0),
        mode: stat.file_mode,
        is_dir: stat.file_mode & MODE_DIR != 0,
        modified_at,
        link_target: (is_symlink || !stat.link_target.is_empty()).then_some(stat.link_target),
    }
}

/// One stats answer as a [`ResourceStats`] sample, computed as the docker CLI does.
pub(crate) fn resource_stats(stats: &ContainerStatsResponse) -> ResourceStats {
    let memory = stats.memory_stats.as_ref();
    let (network_rx_bytes, network_tx_bytes) =
        stats
            .networks
            .iter()
            .flat_map(|networks| networks.values())
            .fold((0u64, 0u64), |(rx, tx), n| {
                (
                    rx.saturating_add(n.rx_bytes.unwrap_or(0)),
                    tx.saturating_add(n.tx_bytes.unwrap_or(0)),
                )
            });
    let (block_read_bytes, block_write_bytes) = stats
        .blkio_stats
        .as_ref()
        .and_then(|b| b.io_service_bytes_recursive.as_ref())
        .into_iter()
        .flatten()
        .fold((0u64, 0u64), |(read, write), entry| {
            let value = entry.value.unwrap_or(0);
            match entry.op.as_deref().and_then(|op| op.bytes().next()) {
                Some(b'r' | b'R') => (read.saturating_add(value), write),
                Some(b'w' | b'W') => (read, write.saturating_add(value)),
                _ => (read, write),
            }
        });
    ResourceStats {
        read_at: stats.read.filter(|t| t.timestamp() > 0).unwrap_or_else(Utc::now),
        cpu_percent: cpu_percent(stats.cpu_stats.as_ref(), stats.precpu_stats.as_ref()),
        memory_used_bytes: memory.map(memory_used).unwrap_or(0),
        memory_limit_bytes: memory.and_then(|m| m.limit).unwrap_or(0),
        pids: stats.pids_stats.as_ref().and_then(|p| p.current).unwrap_or(0),
        network_rx_bytes,
        network_tx_bytes,
        block_read_bytes,
        block_write_bytes,
    }
}

/// Percent of one CPU over the interval between `pre` and `cpu`: container CPU time delta over
/// host CPU time delta, times the online CPUs, times 100. Zero without a previous sample.
pub(crate) fn cpu_percent(cpu: Option<&ContainerCpuStats>, pre: Option<&ContainerCpuStats>) -> f64 {
    let (Some(cpu), Some(pre)) = (cpu, pre) else {
        return 0.0;
    };
    let total = |s: &ContainerCpuStats| s.cpu_usage.as_ref().and_then(|u| u.total_usage).unwrap_or(0);
    let (Some(system), Some(pre_system)) = (cpu.system_cpu_usage, pre.system_cpu_usage) else {
        return 0.0;
    };
    // No previous sample: the engine sends zeros.
    if pre_system == 0 || system <= pre_system {
        return 0.0;
    }
    let cpu_delta = total(cpu).saturating_sub(total(pre));
    if cpu_delta == 0 {
        return 0.0;
    }
    let online = match cpu.online_cpus {
        Some(n) if n > 0 => f64::from(n),
        _ => cpu
            .cpu_usage
            .as_ref()
            .and_then(|u| u.percpu_usage.as_ref())
            .map_or(1.0, |per| per.len().max(1) as f64),
    };
    cpu_delta as f64 / (system - pre_system) as f64 * online * 100.0
}

/// Memory in use without the reclaimable page cache, as the docker CLI (20.10 and later) counts
/// it: cgroup v1 `usage - total_inactive_file`, cgroup v2 `usage - inactive_file`.
pub(crate) fn memory_used(memory: &ContainerMemoryStats) -> u64 {
    let usage = memory.usage.unwrap_or(0);
    let stat = |key: &str| memory.stats.as_ref().and_then(|s| s.get(key).copied());
    if let Some(inactive) = stat("total_inactive_file")
        && inactive < usage
    {
        return usage - inactive;
    }
    match stat("inactive_file") {
        Some(inactive) if inactive < usage => usage - inactive,
        _ => usage,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use bollard::models::{ContainerBlkioStatEntry, ContainerBlkioStats, ContainerCpuUsage, ContainerNetworkStats};

    use super::*;

    /// Decodes an `X-Docker-Container-Path-Stat` value as bollard does: base64, then JSON.
    fn decode_header(value: &str) -> PathStat {
        let json = STANDARD.decode(value).expect("base64");
        path_stat(serde_json::from_slice(&json).expect("json"))
    }

    fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn path_stat_headers_decode_for_directories_files_and_links() {
        // Captured from Docker 20.10 (API 1.41): HEAD /containers/{id}/archive?path=/data
        let dir = decode_header(
            "eyJuYW1lIjoiZGF0YSIsInNpemUiOjQwOTYsIm1vZGUiOjIxNDc0ODQxNDEsIm10aW1lIjoiMjAyNi0xMS0yMlQwNjo1Mjo0Ny44NzUyMDYzNzZaIiwibGlua1RhcmdldCI6IiJ9",
        );
        assert_eq!(
            dir,
            PathStat {
                name: "data".into(),
                size: 4096,
                mode: MODE_DIR | 0o755,
                is_dir: true,
                modified_at: Some(time("2026-11-22T06:52:47.875206376Z")),
                link_target: None,
            }
        );

        let file = decode_header(
            "eyJuYW1lIjoibm90ZXMudHh0Iiwic2l6ZSI6MjMsIm1vZGUiOjQxNiwibXRpbWUiOiIyMDI2LTExLTIyVDA2OjUyOjQ3Ljg3NTIwNjM3NloiLCJsaW5rVGFyZ2V0IjoiIn0=",
        );
        assert_eq!((file.name.as_str(), file.size, file.mode), ("notes.txt", 23, 0o640));
        assert!(!file.is_dir);
        assert_eq!(file.link_target, None);

        // A symbolic link: mode 134218239 = ModeSymlink | 0777.
        let link = decode_header(
            "eyJuYW1lIjoibGluayIsInNpemUiOjEyLCJtb2RlIjoxMzQyMTgyMzksIm10aW1lIjoiMjAyNi0xMS0yMlQwNjo1Mjo0Ny44NzUyMDYzNzZaIiwibGlua1RhcmdldCI6Ii9iaW4vYnVzeWJveCJ9",
        );
        assert_eq!(link.mode, MODE_SYMLINK | 0o777);
        assert!(!link.is_dir);
        assert_eq!(link.link_target.as_deref(), Some("/bin/busybox"));
    }

    #[test]
    fn mode_bits_are_go_file_mode_bits() {
        assert_eq!(MODE_DIR, 2_147_483_648);
        assert_eq!(MODE_SYMLINK, 134_217_728);
        let stat = |mode: u32, mtime: Option<&str>, size: i64| {
            path_stat(PathStatResponse {
                name: "x".into(),
                size,
                file_mode: mode,
                modification_time: mtime.map(str::to_owned),
                link_target: String::new(),
            })
        };
        assert!(stat(MODE_DIR | 0o700, None, 0).is_dir);
        assert!(!stat(0o4755, None, 0).is_dir);
        // A symlink whose target the engine left empty still says it is a link.
        assert_eq!(stat(MODE_SYMLINK | 0o777, None, 0).link_target.as_deref(), Some(""));
        // Go's zero time and a nonsense size are not passed on as facts.
        let zero = stat(0o644, Some("0001-01-01T00:00:00Z"), -1);
        assert_eq!((zero.modified_at, zero.size), (None, 0));
    }

    #[test]
    fn output_frames_map_to_chunks() {
        let bytes = Bytes::from_static(b"hi\n");
        assert_eq!(
            output_chunk(LogOutput::StdOut { message: bytes.clone() }),
            Some(OutputChunk::Stdout(bytes.clone()))
        );
        assert_eq!(
            output_chunk(LogOutput::Console { message: bytes.clone() }),
            Some(OutputChunk::Stdout(bytes.clone()))
        );
        assert_eq!(
            output_chunk(LogOutput::StdErr { message: bytes.clone() }),
            Some(OutputChunk::Stderr(bytes.clone()))
        );
        assert_eq!(output_chunk(LogOutput::StdIn { message: bytes }), None);
    }

    #[test]
    fn log_lines_before_a_precise_since_are_dropped() {
        let since = time("2026-11-22T06:52:47.5Z");
        let line = |text: &'static str| OutputChunk::Stderr(Bytes::from_static(text.as_bytes()));
        assert_eq!(
            log_line_since(line("2026-11-22T06:52:47.400000000Z early\n"), since, false),
            None
        );
        assert_eq!(
            log_line_since(line("2026-11-22T06:52:47.500000000Z exact\n"), since, false),
            Some(line("exact\n"))
        );
        assert_eq!(
            log_line_since(line("2026-11-22T06:52:48.000000000Z later\n"), since, true),
            Some(line("2026-11-22T06:52:48.000000000Z later\n"))
        );
        assert_eq!(
            log_line_since(line("no timestamp here\n"), since, false),
            Some(line("no timestamp here\n"))
        );
    }

    /// A sample captured from Docker 20.10 (cgroup v1, 2 CPUs) of a busy loop limited to half a
    /// CPU and 64 MiB, read with `stream=false&one-shot=false`.
    fn captured() -> ContainerStatsResponse {
        serde_json::from_str(include_str!("../tests/data/stats-cgroup-v1.json")).expect("sample")
    }

    #[test]
    fn a_captured_sample_computes_as_the_docker_cli_does() {
        let stats = resource_stats(&captured());
        // (1582416538 - 1072745801) / (5211480000000 - 5209440000000) * 2 * 100
        let expected_cpu = 509_670_737.0 / 2_040_000_000.0 * 2.0 * 100.0;
        assert!((stats.cpu_percent - expected_cpu).abs() < 1e-9, "{}", stats.cpu_percent);
        assert!((stats.cpu_percent - 49.97).abs() < 0.01);
        // usage 557056 - total_inactive_file 102400
        assert_eq!(stats.memory_used_bytes, 454_656);
        assert_eq!(stats.memory_limit_bytes, 64 << 20);
        assert_eq!(stats.pids, 1);
        assert_eq!((stats.network_rx_bytes, stats.network_tx_bytes), (736, 0));
        assert_eq!((stats.block_read_bytes, stats.block_write_bytes), (0, 0));
        assert_eq!(stats.read_at, time("2026-11-22T06:56:02.025056399Z"));
    }

    #[test]
    fn cpu_is_zero_without_a_previous_sample() {
        let sample = captured();
        let mut first = sample.clone();
        // What a one-shot or first streamed sample carries: an empty precpu.
        first.precpu_stats = Some(ContainerCpuStats {
            cpu_usage: Some(ContainerCpuUsage {
                total_usage: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(resource_stats(&first).cpu_percent, 0.0);
        first.precpu_stats = None;
        assert_eq!(resource_stats(&first).cpu_percent, 0.0);
        // Without online_cpus the per-CPU list counts them (older engines).
        let mut older = sample;
        if let Some(cpu) = older.cpu_stats.as_mut() {
            cpu.online_cpus = None;
        }
        let expected_cpu = 509_670_737.0 / 2_040_000_000.0 * 2.0 * 100.0;
        assert!((resource_stats(&older).cpu_percent - expected_cpu).abs() < 1e-9);
    }

    #[test]
    fn memory_excludes_inactive_file_on_cgroup_v1_and_v2() {
        let memory = |usage: u64, stats: &[(&str, u64)]| ContainerMemoryStats {
            usage: Some(usage),
            stats: Some(
                stats
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), *v))
                    .collect::<HashMap<_, _>>(),
            ),
            ..Default::default()
        };
        // v1: total_inactive_file wins over inactive_file and cache.
        assert_eq!(
            memory_used(&memory(
                1000,
                &[("total_inactive_file", 300), ("inactive_file", 100), ("cache", 900)]
            )),
            700
        );
        // v2: only inactive_file.
        assert_eq!(
            memory_used(&memory(1000, &[("inactive_file", 250), ("file", 600)])),
            750
        );
        // Never below zero; no stats at all is the raw usage.
        assert_eq!(memory_used(&memory(100, &[("inactive_file", 250)])), 100);
        assert_eq!(memory_used(&ContainerMemoryStats::default()), 0);
    }

    #[test]
    fn networks_and_block_io_are_summed() {
        let net = |rx, tx| ContainerNetworkStats {
            rx_bytes: Some(rx),
            tx_bytes: Some(tx),
            ..Default::default()
        };
        let io = |op: &str, value| ContainerBlkioStatEntry {
            major: Some(8),
            minor: Some(0),
            op: Some(op.to_owned()),
            value: Some(value),
        };
        let mut sample = captured();
        sample.networks = Some(HashMap::from([
            ("eth0".to_owned(), net(10, 20)),
            ("eth1".to_owned(), net(1, 2)),
        ]));
        sample.blkio_stats = Some(ContainerBlkioStats {
            // cgroup v1 spells the ops capitalised, v2 in lower case.
            io_service_bytes_recursive: Some(vec![
                io("Read", 4096),
                io("Write", 100),
                io("Sync", 7),
                io("Total", 4196),
                io("read", 1),
                io("write", 2),
            ]),
            ..Default::default()
        });
        let stats = resource_stats(&sample);
        assert_eq!((stats.network_rx_bytes, stats.network_tx_bytes), (11, 22));
        assert_eq!((stats.block_read_bytes, stats.block_write_bytes), (4097, 102));
    }
}
