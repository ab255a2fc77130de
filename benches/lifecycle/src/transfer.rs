//! F3's file transfers: one file of pseudo-random bytes, generated once on disk, uploaded into and
//! downloaded from one sandbox through berth's files API and, into the same container, with
//! `docker cp` (the docker CLI, run as a subprocess), interleaved round by round.

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use tokio::process::Command;

use crate::berth::Berth;
use crate::report::Transfer;
use crate::timing::{interleaved, timed};

/// Where each side puts the file in the container.
const BERTH_PATH: &str = "/tmp/up.bin";
const RAW_PATH: &str = "/tmp/up-raw.bin";
const MIB: f64 = (1 << 20) as f64;

/// `rounds` uploads then downloads of a `size`-byte file per side; upload and download rows.
pub async fn run(
    berth: &Berth,
    docker_host: &str,
    sandbox: &str,
    container: &str,
    size: u64,
    rounds: usize,
) -> Result<Vec<Transfer>> {
    let dir = tempfile::Builder::new().prefix("berth-bench-files-").tempdir()?;
    let source = dir.path().join("up.bin");
    eprintln!("files: writing {} MiB to {}", size >> 20, source.display());
    let path = source.clone();
    tokio::task::spawn_blocking(move || write_pseudo_random(&path, size)).await??;
    let raw_dir = dir.path().join("raw");
    std::fs::create_dir(&raw_dir)?;
    let (berth_down, raw_down) = (dir.path().join("down.bin"), raw_dir.join("up-raw.bin"));
    let raw_target = format!("{container}:{RAW_PATH}");

    eprintln!("files: {rounds} uploads and downloads per side");
    let mut upload = Transfer::new("upload", 0.9);
    let mut download = Transfer::new("download", 0.9);
    for round in 0..rounds {
        let ((b, ok_b), (r, ok_r)) = interleaved(
            round,
            timed(berth.upload(sandbox, BERTH_PATH, &source)),
            timed(docker_cp(docker_host, source.as_os_str(), OsStr::new(&raw_target))),
        )
        .await;
        ok_b?;
        ok_r?;
        for path in [BERTH_PATH, RAW_PATH] {
            let found = berth.size(sandbox, path).await?;
            if found != size {
                bail!("{path} in the sandbox has {found} bytes after the upload, expected {size}");
            }
        }
        upload.berth.push(size as f64 / MIB / b.as_secs_f64());
        upload.raw.push(size as f64 / MIB / r.as_secs_f64());

        let ((b, ok_b), (r, ok_r)) = interleaved(
            round,
            timed(berth.download(sandbox, BERTH_PATH, &berth_down)),
            timed(docker_cp(docker_host, OsStr::new(&raw_target), raw_dir.as_os_str())),
        )
        .await;
        ok_b?;
        ok_r?;
        for path in [&berth_down, &raw_down] {
            let found = std::fs::metadata(path)?.len();
            if found != size {
                bail!(
                    "{} has {found} bytes after the download, expected {size}",
                    path.display()
                );
            }
        }
        download.berth.push(size as f64 / MIB / b.as_secs_f64());
        download.raw.push(size as f64 / MIB / r.as_secs_f64());

        // Bounded disk use: at most one copy of each side's file at a time.
        std::fs::remove_file(&berth_down)?;
        std::fs::remove_file(&raw_down)?;
        let removed = berth.exec(sandbox, &["rm", "-f", BERTH_PATH, RAW_PATH]).await?;
        if removed["exit_code"].as_i64() != Some(0) {
            bail!("removing the uploaded files answered {removed}");
        }
    }
    Ok(vec![upload, download])
}

/// `docker -H host cp from to`; fails with its stderr unless it exits 0.
async fn docker_cp(host: &str, from: &OsStr, to: &OsStr) -> Result<()> {
    let output = Command::new("docker")
        .args(["-H", host, "cp"])
        .arg(from)
        .arg(to)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .context("cannot run the docker CLI")?;
    if !output.status.success() {
        bail!(
            "docker cp {} {} failed ({}): {}",
            from.to_string_lossy(),
            to.to_string_lossy(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Writes `size` bytes of xorshift64 output to `path`, 1 MiB at a time.
fn write_pseudo_random(path: &Path, size: u64) -> Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}
