//! Integration tests of the work inside a container against the real Docker Engine (no mocks):
//! exec sessions, tar upload and download, path stats, logs, stats, pause and unpause.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_docker::{DockerConfig, DockerRuntime};
use berth_runtime::{ByteStream, EngineByteStream, ExecSpec, LogOptions, OutputChunk, RunState, Runtime, RuntimeError};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use common::{Cleanup, ensure_test_image, one_line, request, runtime};

/// The container's memory limit in `common::request`.
const MEMORY_LIMIT: u64 = 64 << 20;

/// Starts a container running `command` for this test; it is removed when `cleanup` drops.
async fn start(runtime: &DockerRuntime, cleanup: &mut Cleanup, command: &[&str]) -> String {
    ensure_test_image();
    let req = request(command);
    cleanup.track(&req);
    runtime.create(&req).await.expect("create").container_id
}

fn cmd(args: &[&str]) -> ExecSpec {
    ExecSpec {
        cmd: args.iter().map(|s| (*s).to_owned()).collect(),
        ..ExecSpec::default()
    }
}

struct Ran {
    stdout: String,
    stderr: String,
    exit_code: Option<i64>,
}

/// Runs `spec` to its end: its whole output and its exit code.
async fn run(runtime: &DockerRuntime, container_id: &str, spec: &ExecSpec) -> Ran {
    let session = runtime.exec(container_id, spec).await.expect("exec");
    let (stdout, stderr) = collect(session.output).await;
    let state = runtime.exec_state(&session.exec_id).await.expect("exec state");
    assert!(!state.running, "the output ended but the exec still runs");
    Ran {
        stdout,
        stderr,
        exit_code: state.exit_code,
    }
}

async fn collect(
    mut output: futures::stream::BoxStream<'static, Result<OutputChunk, RuntimeError>>,
) -> (String, String) {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    while let Some(chunk) = output.next().await {
        match chunk.expect("output chunk") {
            OutputChunk::Stdout(bytes) => stdout.extend_from_slice(&bytes),
            OutputChunk::Stderr(bytes) => stderr.extend_from_slice(&bytes),
        }
    }
    (
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

async fn sh(runtime: &DockerRuntime, container_id: &str, script: &str) -> Ran {
    run(runtime, container_id, &cmd(&["sh", "-c", script])).await
}

#[tokio::test]
async fn exec_reports_output_and_exit_codes() {
    let runtime = runtime().await;
    let mut cleanup = Cleanup::default();
    let id = start(&runtime, &mut cleanup, &["sleep", "300"]).await;

    let ok = sh(&runtime, &id, "true").await;
    assert_eq!(ok.exit_code, Some(0));
    assert_eq!((ok.stdout.as_str(), ok.stderr.as_str()), ("", ""));

    let three = sh(&runtime, &id, "echo out; echo err >&2; exit 3").await;
    assert_eq!(three.exit_code, Some(3));
    assert_eq!(three.stdout, "out\n");
    assert_eq!(three.stderr, "err\n");

    let spec = ExecSpec {
        env: BTreeMap::from([("GREETING".to_owned(), "hello there".to_owned())]),
        workdir: Some("/etc".into()),
        user: Some("1234:5678".into()),
        ..cmd(&["sh", "-c", "echo \"$GREETING\"; pwd; id -u; id -g"])
    };
    let ran = run(&runtime, &id, &spec).await;
    assert_eq!(ran.exit_code, Some(0), "{}", ran.stderr);
    assert_eq!(ran.stdout, "hello there\n/etc\n1234\n5678\n");
}

#[tokio::test]
async fn exec_of_a_missing_program_starts_and_reports_126_or_127() {
    let runtime = runtime().await;
    let mut cleanup = Cleanup::default();
    let id = start(&runtime, &mut cleanup, &["sleep", "300"]).await;

    let ran = run(&runtime, &id, &cmd(&["/no/such/program"])).await;
    assert!(matches!(ran.exit_code, Some(126 | 127)), "{:?}", ran.exit_code);
    eprintln!("engine said: {}{}", ran.stdout.trim(), ran.stderr.trim());
}

#[tokio::test]
async fn exec_is_refused_on_unknown_and_stopped_containers() {
    let runtime = runtime().await;
    let mut cleanup = Cleanup::default();

    let missing = format!("berth-missing-{}", common::test_run_id());
    let err = runtime
        .exec(&missing, &cmd(&["true"]))
        .await
        .err()
        .expect("unknown container");
    assert_eq!(err, RuntimeError::NotFound(missing));

    let id = start(&runtime, &mut cleanup, &["sh", "-c", "exit 0"]).await;
    common::wait_until_ended(&runtime, &id, Duration::from_secs(10)).await;
    let err = runtime
        .exec(&id, &cmd(&["true"]))
        .await
        .err()
        .expect("stopped container");
    assert!(
        matches!(&err, RuntimeError::Conflict(message) if message.contains("not running")),
        "{err:?}"
    );
    eprintln!("{}", one_line(&err));

    let err = runtime.exec_state("no-such-exec").await.expect_err("unknown exec");
    assert!(matches!(err, RuntimeError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn exec_stdin_round_trips_through_cat_and_eof_ends_it() {
    let runtime = runtime().await;
    let mut cleanup = Cleanup::default();
    let id = start(&runtime, &mut cleanup, &["sleep", "300"]).await;

    let spec = ExecSpec {
        attach_stdin: true,
        ..cmd(&["cat"])
    };
    let session = runtime.exec(&id, &spec).await.expect("exec");
    let mut stdin = session.stdin.expect("stdin attached");
    let reader = tokio::spawn(collect(session.output));
    let input = "hello\nworld, with no newline at the end";
    stdin.write_all(input.as_bytes()).await.expect("write");
    stdin.flush().await.expect("flush");
    stdin.shutdown().await.expect("shutdown sends EOF");
    let (stdout, stderr) = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("cat ends after EOF")
        .expect("reader");
    assert_eq!(stdout, input);
    assert_eq!(stderr, "");
    let state = runtime.exec_state(&session.exec_id).await.expect("state");
    assert_eq!((state.running, state.exit_code), (false, Some(0)));

    // Dropping stdin (without a shutdown) while reading the output is an EOF too.
    let session = runtime.exec(&id, &spec).await.expect("exec");
    let mut stdin = session.stdin.expect("stdin attached");
    stdin.write_all(b"dropped\n").await.expect("write");
    stdin.flush().await.expect("flush");
    drop(stdin);
    let (stdout, _) = tokio::time::timeout(Duration::from_secs(10), collect(session.output))
        .await
        .expect("cat ends when stdin is dropped");
    assert_eq!(stdout, "dropped\n");

    // Without stdin attached, `cat` reads an immediate EOF rather than waiting.
    let started = Instant::now();
    let session = runtime.exec(&id, &cmd(&["cat"])).await.expect("exec");
    assert!(session.stdin.is_none());
    let (stdout, _) = tokio::time::timeout(Duration::from_secs(10), collect(session.output))
        .await
        .expect("cat without stdin ends at once");
    assert_eq!(stdout, "");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn exec_output_streams_before_the_process_ends() {
    let runtime = runtime().await;
    let mut cleanup = Cleanup::default();
    let id = start(&runtime, &mut cleanup, &["sleep", "300"]).await;

    let started = Instant::now();
    let mut session = runtime
        .exec(&id, &cmd(&["sh", "-c", "echo first; sleep 2; echo second"]))
        .await
        .expect("exec");
    let first = session.output.next().await.expect("a chunk").expect("ok");
    let first_at = started.elapsed();
    assert_eq!(first, OutputChunk::Stdout(Bytes::from_static(b"first\n")));
    let (rest, _) = collect(session.output).await;
    let ended_at = started.elapsed();
    assert_eq!(rest, "second\n");
    assert!(
        ended_at >= Duration::from_secs(2) && ended_at - first_at >= Duration::from_millis(1500),
        "first after {first_at:?}, end after {ended_at:?}"
    );
}

#[tokio::test]
async fn tty_exec_is_resized() {
    let runtime = runtime().await;
    let mut cleanup = Cleanup::default();
    let id = start(&runtime, &mut cleanup, &["sleep", "300"]).await;

    let spec = ExecSpec {
        tty: true,
        attach_stdin: true,
        ..cmd(&["sh", "-c", "read line; stty size"])
    };
    let session = runtime.exec(&id, &spec).await.expect("exec");
    runtime.exec_resize(&session.exec_id, 100, 30).await.expect("resize");
    let mut stdin = session.stdin.expect("stdin");
    let reader = tokio::spawn(collect(session.output));
    stdin.write_all(b"go\n").await.expect("write");
    stdin.flush().await.expect("flush");
    let (stdout, stderr) = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("ends")
        .expect("reader");
    assert_eq!(stderr, "", "a terminal's output is all stdout");
    assert!(stdout.contains("30 100"), "{stdout:?}");

    // The output ends a moment before the engine records the exec as finished.
    let mut state = runtime.exec_state(&session.exec_id).await.expect("state");
    for _ in 0..50 {
        if !state.running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        state = runtime.exec_state(&session.exec_id).await.expect("state");
    }
    assert_eq!((state.running, state.exit_code), (false, Some(0)));
    let err = runtime
        .exec_resize(&session.exec_id, 80, 24)
        .await
        .expect_err("ended exec");
    assert!(matches!(err, RuntimeError::Conflict(_)), "{err:?}");
    let err = runtime
        .exec_resize("no-such-exec", 80, 24)
        .await
        .expect_err("unknown exec");
    assert!(matches!(err, RuntimeError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn ten_concurrent_execs_in_one_container() {
    let runtime = runtime().await;
    let mut cleanup = Cleanup::default();
    let id = start(&runtime, &mut cleanup, &["sleep", "300"]).await;

    let runs = (0..10).map(|i| {
        let (runtime, id) = (&runtime, &id);
        async move {
            let n = i.to_string();
            let spec = cmd(&["sh", "-c", "sleep 0.5; echo out-$1; echo err-$1 >&2; exit $1", "sh", &n]);
            (i, run(runtime, id, &spec).await)
        }
    });
    for (i, ran) in futures::future::join_all(runs).await {
        assert_eq!(ran.exit_code, Some(i64::from(i)));
        assert_eq!(ran.stdout, format!("out-{i}\n"));
        assert_eq!(ran.stderr, format!("err-{i}\n"));
    }
}

/// A tar of `(path, contents)` files, built in memory.
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(contents.len() as u64);
        header.set_mode(0o640);
        header.set_mtime(1_700_000_000);
        builder.append_data(&mut header, path, *contents).expect("append");
    }
    builder.into_inner().expect("tar")
}

fn body_of(bytes: Vec<u8>) -> ByteStream {
    stream::iter(
        bytes
            .chunks(1000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    )
    .boxed()
}

/// Reads a downloaded tar as it streams: each regular file's path, size and SHA-256.
async fn entries_of(download: EngineByteStream) -> Vec<(String, u64, String)> {
    let reader = tokio_util::io::StreamReader::new(download.map(|item| item.map_err(std::io::Error::other)));
    let bridge = tokio_util::io::SyncIoBridge::new(reader);
    tokio::task::spawn_blocking(move || {
        let mut archive = tar::Archive::new(bridge);
        let mut found = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let path = entry.path().expect("path").display().to_string();
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 64 * 1024];
            let mut size = 0u64;
            loop {
                let n = entry.read(&mut buf).expect("read");
                if n == 0 {
                    break;
                }
                size += n as u64;
                hasher.update(&buf[..n]);
            }
            found.push((path, size, hex(&hasher.finalize())));
        }
        found
    })
    .await
    .expect("tar reader")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[tokio::test]
async fn upload_then_download_gives_the_same_files() {
    let runtime = runtime().await;
    let mut cleanup = Cleanup::default();
    let id = start(&runtime, &mut cleanup, &["sleep", "300"]).await;
    assert_eq!(sh(&runtime, &id, "mkdir -p /data").await.exit_code, Some(0));

    let notes: &[u8] = b"first line\nsecond line\n";
    let blob: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let tar = tar_of(&[("notes.txt", notes), ("sub/blob.bin", &blob)]);
    runtime.upload_tar(&id, "/data", body_of(tar)).await.expect("upload");

    let ran = sh(&runtime, &id, "cat /data/notes.txt; stat -c %a /data/sub/blob.bin").await;
    assert_eq!(ran.stdout, "first line\nsecond line\n640\n");

    let download = runtime.download_tar(&id, "/data").await.expect("download");
    let mut entries = entries_of(download).await;
    entries.sort();
    assert_eq!(
        entries,
        vec![
            ("data/notes.txt".to_owned(), notes.len() as u64, sha256(notes)),
            ("data/sub/blob.bin".to_owned(), blob.len() as u64, sha256(&blob)),
        ]
    );
}

/// A deterministic pseudo-random 64 KiB block (xorshift), different for each `index`.
fn block(index: u64) -> Vec<u8> {
    let mut state = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(BLOCK);
    while out.len() < BLOCK {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out
}

const BLOCK: usize = 64 * 1024;
const BIG_BLOCKS: u64 = 800; // 50 MiB

#[tokio::test]
async fn fifty_mib_stream_both_ways_with_the_same_checksum() {
    let runtime = runtime().await;
    let mut cleanup = Cleanup::default();
    let id = start(&runtime, &mut cleanup, &["sleep", "300"]).await;
    assert_eq!(sh(&runtime, &id, "mkdir -p /data").await.exit_code, Some(0));

    let size = BIG_BLOCKS * BLOCK as u64;
    let mut hasher = Sha256::new();
    for i in 0..BIG_BLOCKS {
        hasher.update(block(i));
    }
    let expected = hex(&hasher.finalize());

    // Header, data generated block by block as the engine reads, then the end-of-archive blocks
    // (50 MiB is a multiple of 512: no padding).
    let mut header = tar::Header::new_ustar();
    header.set_path("big.bin").expect("path");
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(1_700_000_000);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let head = stream::once(async move { Ok(Bytes::copy_from_slice(header.as_bytes())) });
    let data = stream::iter(0..BIG_BLOCKS).map(|i| Ok(Bytes::from(block(i))));
    let tail = stream::once(async { Ok(Bytes::from(vec![0u8; 1024])) });
    let body: ByteStream = head.chain(data).chain(tail).boxed();

    let started = Instant::now();
    runtime.upload_tar(&id, "/data", body).await.expect("upload");
    eprintln!("uploaded 50 MiB in {:?}", started.elapsed());

    let inside = sh(&runtime, &id, "sha256sum /data/big.bin").await;
    assert_eq!(inside.stdout.split_whitespace().next(), Some(expected.as_str()));

    let started = Instant::now();
    let download = runtime.download_tar(&id, "/data/big.bin").await.expect("download");
    let entries = entries_of(download).await;
    eprintln!("downloaded 50 MiB in {:?}", started.elapsed());
    assert_eq!(entries, vec![("big.bin".to_owned(), size, expected)]);
}

#[tokio::test]
async fn archive_refusals_are_classified() {
    let runtime = runtime().await;
    let mut cleanup = Cleanup::default();
    let id = start(&runtime, &mut cleanup, &["sleep", "300"]).await;
    let tar = || body_of(tar_of(&[("x.txt", b"x")]));

    let err = runtime
        .upload_tar(&id, "/no/such/dir", tar())
        .await
        .expect_err("missing dir");
    assert_eq!(err, RuntimeError::NotFound(format!("{id}:/no/such/dir")));
    eprintln!("{}", one_line(&err));

    let err = runtime
        .upload_tar(&id, "/bin/busybox", tar())
        .await
        .expect_err("a file");
    assert!(matches!(err, RuntimeError::Invalid(_)), "{err:?}");
    eprintln!("{}", one_line(&err));

    let garbage = body_of((0..4096u32).map(|i| (i * 7 % 256) as u8 | 1).collect());
    let err = runtime.upload_tar(&id, "/etc", garbage).await.expect_err("not a tar");
    assert!(matches!(err, RuntimeError::Invalid(_)), "{err:?}");
    eprintln!("{}", one_line(&err));

    let failing: ByteStream = stream::iter(vec![
        Ok(Bytes::from(vec![0u8; 512])),
        Err(std::io::Error::other("client went away")),
    ])
    .boxed();
    let err = runtime.upload_tar(&id, "/etc", failing).await.expect_err("body fails");
    assert!(
        matches!(&err, RuntimeError::Invalid(message) if message.contains("client went away")),
        "{err:?}"
    );

    let err = runtime
        .download_tar(&id, "/no/such/file")
        .await
        .err()
        .expect("missing path");
    assert_eq!(err, RuntimeError::NotFound(format!("{id}:/no/such/file")));

    let missing = format!("berth-missing-{}", common::test_run_id());
    let err = runtime
        .download_tar(&missing, "/etc")
        .await
        .err()
        .expect("missing container");
    assert_eq!(err, RuntimeError::NotFound(missing.clone()));
    let err = runtime
        .upload_tar(&missing, "/etc", tar())
        .await
        .expect_err("missing container");
    assert_eq!(err, RuntimeError::NotFound(missing));
}

#[tokio::test]
async fn upload_to_a_read_only_root_is_a_conflict() {
    ensure_test_image();
    let runtime = runtime().await;
    let mut cleanup = Cleanup::default();
    let req = request(&["sleep", "300"]);
    cleanup.track(&req);
    let mut args = vec!["run".to_owned(), "-d".to_owned(), "--read-only".to_owned()];
    for (key, value) in &req.labels {
        args.push("--label".to_owned());
        args.push(format!("{key}={value}"));
    }
    args.extend([common::TEST_IMAGE.to_owned(), "sleep".to_owned(), "300".to_owned()]);
    let out = Command::new("docker").args(&args).output().expect("docker run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();

    let err = runtime
        .upload_tar(&id, "/etc", body_of(tar_of(&[("x.txt", b"x")])))
        .await
        .expect_err("read-only");
    assert!(
        matches!(&err, RuntimeError::Conflict(message) if message.contains("read-only")),
        "{err:?}"
    );
}

#[tokio::test]
async fn stat_reports_files_directories_and_links() {
    let runtime = runtime().await;
    let mut cleanup = Cleanup::default();
    let id = start(&runtime, &mut cleanup, &["sleep", "300"]).await;
    let setup = sh(
        &runtime,
        &id,
        "mkdir -p /data/dir && printf 12345 > /data/file && chmod 600 /data/file && ln -s /data/file /data/link",
    )
    .await;
    assert_eq!(setup.exit_code, Some(0), "{}", setup.stderr);

    let file = runtime.stat_path(&id, "/data/file").await.expect("file");
    assert_eq!(file.name, "file");
    assert_eq!(file.size, 5);
    assert_eq!(file.mode, 0o600);
    assert!(!file.is_dir);
    assert_eq!(file.link_target, None);
    let age = chrono::Utc::now() - file.modified_at.expect("mtime");
    assert!(age < chrono::Duration::minutes(5), "{age:?}");

    let dir = runtime.stat_path(&id, "/data/dir").await.expect("dir");
    assert_eq!(dir.name, "dir");
    assert!(dir.is_dir);
    assert_eq!(dir.mode & 0o777, 0o755);
    assert_eq!(dir.mode & (1 << 31), 1 << 31);

    let link = runtime.stat_path(&id, "/data/link").await.expect("link");
    assert_eq!(link.name, "link");
    assert!(!link.is_dir);
    assert_eq!(link.mode & (1 << 27), 1 << 27);
    assert_eq!(link.link_target.as_deref(), Some("/data/file"));

    let err = runtime.stat_path(&id, "/data/missing").await.expect_err("missing");
    assert_eq!(err, RuntimeError::NotFound(format!("{id}:/data/missing")));
    eprintln!("{}", one_line(&err));

    let missing = format!("berth-missing-{}", common::test_run_id());
    let err = runtime.stat_path(&missing, "/").await.expect_err("no container");
    assert_eq!(err, RuntimeError::NotFound(missing));
}

/// All of the logs as text, stdout and stderr apart.
async fn read_logs(runtime: &DockerRuntime, id: &str, options: &LogOptions) -> (String, String) {
    collect(runtime.logs(id, options).await.expect("logs")).await
}

#[tokio::test]
async fn logs_with_tail_timestamps_and_follow() {
    let runtime = runtime().await;
    let mut cleanup = Cleanup::default();
    // The pause orders the streams in the log (each stream is copied on its own).
    let script = "for i in 1 2 3 4 5; do echo line$i; done; sleep 0.5; echo oops >&2; \
                  while :; do if [ -f /go ]; then echo late; rm /go; fi; sleep 0.1; done";
    let id = start(&runtime, &mut cleanup, &["sh", "-c", script]).await;

    // Wait for the first lines to be logged.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (stdout, stderr) = read_logs(&runtime, &id, &LogOptions::default()).await;
        if stdout.contains("line5") && stderr.contains("oops") {
            assert_eq!(stdout, "line1\nline2\nline3\nline4\nline5\n");
            assert_eq!(stderr, "oops\n");
            break;
        }
        assert!(Instant::now() < deadline, "logs so far: {stdout:?} {stderr:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let tail = LogOptions {
        tail: Some(3),
        ..LogOptions::default()
    };
    let (stdout, stderr) = read_logs(&runtime, &id, &tail).await;
    assert_eq!(stdout, "line4\nline5\n");
    assert_eq!(stderr, "oops\n");

    let stamped = LogOptions {
        tail: Some(1),
        timestamps: true,
        ..LogOptions::default()
    };
    let (_, stderr) = read_logs(&runtime, &id, &stamped).await;
    let (stamp, line) = stderr.split_once(' ').expect("a timestamp");
    chrono::DateTime::parse_from_rfc3339(stamp).expect("RFC 3339");
    assert_eq!(line, "oops\n");

    // `since` to the nanosecond (the engine itself takes whole seconds).
    let since_oops = LogOptions {
        since: Some(
            chrono::DateTime::parse_from_rfc3339(stamp)
                .expect("stamp")
                .with_timezone(&chrono::Utc),
        ),
        ..LogOptions::default()
    };
    assert_eq!(
        read_logs(&runtime, &id, &since_oops).await,
        (String::new(), "oops\n".to_owned())
    );

    let future = LogOptions {
        since: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
        ..LogOptions::default()
    };
    assert_eq!(read_logs(&runtime, &id, &future).await, (String::new(), String::new()));

    let follow = LogOptions {
        follow: true,
        tail: Some(0),
        ..LogOptions::default()
    };
    let started = Instant::now();
    let mut logs = runtime.logs(&id, &follow).await.expect("follow");
    assert!(started.elapsed() < Duration::from_secs(5), "follow waited for a line");
    assert_eq!(sh(&runtime, &id, "touch /go").await.exit_code, Some(0));
    let chunk = tokio::time::timeout(Duration::from_secs(10), logs.next())
        .await
        .expect("a line after the follow began")
        .expect("not ended")
        .expect("ok");
    assert_eq!(chunk, OutputChunk::Stdout(Bytes::from_static(b"late\n")));

    let missing = format!("berth-missing-{}", common::test_run_id());
    for options in [LogOptions::default(), follow] {
        let err = runtime.logs(&missing, &options).await.err().expect("no container");
        assert_eq!(err, RuntimeError::NotFound(missing.clone()));
    }
}

#[tokio::test]
async fn stats_are_plausible() {
    let runtime = runtime().await;
    let mut cleanup = Cleanup::default();
    // Busy: about half a CPU under the 500m limit.
    let id = start(&runtime, &mut cleanup, &["sh", "-c", "while :; do :; done"]).await;

    let started = Instant::now();
    let mut one = runtime.stats(&id, false).await.expect("stats");
    let sample = one.next().await.expect("one sample").expect("ok");
    assert!(one.next().await.is_none(), "one sample only");
    eprintln!("one sample in {:?}: {sample:?}", started.elapsed());
    assert_eq!(sample.memory_limit_bytes, MEMORY_LIMIT);
    assert!(sample.memory_used_bytes > 0 && sample.memory_used_bytes < MEMORY_LIMIT);
    assert!(sample.pids >= 1);
    assert!(
        sample.cpu_percent > 5.0 && sample.cpu_percent < 100.0,
        "cpu {}",
        sample.cpu_percent
    );
    let age = chrono::Utc::now() - sample.read_at;
    assert!(age < chrono::Duration::seconds(30), "{age:?}");

    let mut samples = runtime.stats(&id, true).await.expect("stats stream");
    let first = samples.next().await.expect("first").expect("ok");
    let second = tokio::time::timeout(Duration::from_secs(10), samples.next())
        .await
        .expect("a second sample")
        .expect("more")
        .expect("ok");
    drop(samples);
    assert!(second.read_at > first.read_at);
    assert_eq!(second.memory_limit_bytes, MEMORY_LIMIT);
    assert!(second.cpu_percent > 5.0, "cpu {}", second.cpu_percent);

    let missing = format!("berth-missing-{}", common::test_run_id());
    for stream in [false, true] {
        let err = runtime.stats(&missing, stream).await.err().expect("no container");
        assert_eq!(err, RuntimeError::NotFound(missing.clone()));
    }
}

#[tokio::test]
async fn pause_refuses_exec_until_unpaused_and_paused_containers_can_be_removed() {
    let runtime = runtime().await;
    let mut cleanup = Cleanup::default();
    let id = start(&runtime, &mut cleanup, &["sleep", "300"]).await;

    runtime.pause(&id).await.expect("pause");
    assert_eq!(runtime.inspect(&id).await.expect("inspect").state, RunState::Paused);
    let err = runtime.exec(&id, &cmd(&["true"])).await.err().expect("paused");
    assert!(
        matches!(&err, RuntimeError::Conflict(message) if message.contains("paused")),
        "{err:?}"
    );
    eprintln!("{}", one_line(&err));
    let err = runtime.pause(&id).await.expect_err("paused twice");
    assert!(matches!(err, RuntimeError::Conflict(_)), "{err:?}");

    runtime.unpause(&id).await.expect("unpause");
    assert_eq!(sh(&runtime, &id, "echo back").await.stdout, "back\n");
    let err = runtime.unpause(&id).await.expect_err("not paused");
    assert!(matches!(err, RuntimeError::Conflict(_)), "{err:?}");
    eprintln!("{}", one_line(&err));

    runtime.pause(&id).await.expect("pause again");
    runtime.remove(&id).await.expect("remove a paused container");
    assert!(matches!(runtime.inspect(&id).await, Err(RuntimeError::NotFound(_))));

    let missing = format!("berth-missing-{}", common::test_run_id());
    assert_eq!(
        runtime.pause(&missing).await,
        Err(RuntimeError::NotFound(missing.clone()))
    );
    assert_eq!(runtime.unpause(&missing).await, Err(RuntimeError::NotFound(missing)));
}

#[tokio::test]
async fn streams_outlive_the_per_call_deadline() {
    ensure_test_image();
    let runtime = DockerRuntime::connect(DockerConfig {
        call_timeout: Duration::from_secs(1),
        ..DockerConfig::default()
    })
    .await
    .expect("connect");
    let mut cleanup = Cleanup::default();
    let script = "echo start; sleep 2; echo later; sleep 300";
    // Created with the normal deadline: a busy machine may take over a second to start it.
    let id = start(&common::runtime().await, &mut cleanup, &["sh", "-c", script]).await;

    let follow = LogOptions {
        follow: true,
        ..LogOptions::default()
    };
    let logs = runtime.logs(&id, &follow).await.expect("follow");
    let session = runtime
        .exec(&id, &cmd(&["sh", "-c", "sleep 2; echo done"]))
        .await
        .expect("exec");
    let state = runtime.exec_state(&session.exec_id).await.expect("state");
    assert_eq!((state.running, state.exit_code), (true, None));
    let stats_opened = Instant::now();
    let mut stats = runtime.stats(&id, true).await.expect("stats stream");

    let (stdout, _) = collect(session.output).await;
    assert_eq!(stdout, "done\n");
    let lines: Vec<_> = logs.take(2).collect().await;
    assert_eq!(
        lines.into_iter().map(|l| l.expect("line")).collect::<Vec<_>>(),
        vec![
            OutputChunk::Stdout(Bytes::from_static(b"start\n")),
            OutputChunk::Stdout(Bytes::from_static(b"later\n"))
        ]
    );
    // About one sample a second, well past the deadline.
    let mut last = None;
    for _ in 0..5 {
        let sample = stats.next().await.expect("a sample").expect("ok");
        assert!(last < Some(sample.read_at));
        last = Some(sample.read_at);
    }
    assert!(
        stats_opened.elapsed() > Duration::from_secs(3),
        "{:?}",
        stats_opened.elapsed()
    );
}
