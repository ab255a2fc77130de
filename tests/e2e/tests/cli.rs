//! The `berth` command line against a real server and engine: the sandbox verbs (run, ls,
//! inspect, ttl, rm), their error and usage exits, working inside a sandbox (exec, cp, logs,
//! stats, pause, resume), and templates and pools. Each test runs the real binary with `--server`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use berth_e2e::{TEST_IMAGE, TestServer, berth_binary, eventually, unique};
use serde_json::Value;

/// A run of the binary: exit code, stdout, stderr.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Asserts exit 0 and returns stdout.
    fn ok(self) -> String {
        assert_eq!(self.code, Some(0), "{self:?}");
        self.stdout
    }

    /// Asserts a berth-side failure: exit 1 and exactly one `berth: …` line on stderr.
    fn failed(self) -> String {
        assert_eq!(self.code, Some(1), "{self:?}");
        assert_one_error_line(&self.stderr);
        self.stderr
    }
}

fn assert_one_error_line(stderr: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr:?}");
    assert!(lines[0].starts_with("berth: "), "{stderr:?}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr:?}"
    );
}

/// The `berth` client of one server.
struct Cli {
    url: String,
    /// Where the server wrote its admin key: the CLI finds it there, as on a user's machine.
    data_dir: std::path::PathBuf,
}

impl Cli {
    fn new(server: &TestServer) -> Cli {
        Cli {
            url: server.url.clone(),
            data_dir: server.data_dir.clone(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(berth_binary());
        // `--server` first: after `--` it would be part of the sandbox's command.
        command
            .args(["--server", &self.url])
            .args(args)
            .env_remove("BERTH_SERVER")
            .env_remove("BERTH_API_KEY")
            .env("BERTH_DATA_DIR", &self.data_dir)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn run(&self, args: &[&str]) -> Run {
        let output = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .expect("the berth binary runs (build it with `cargo build -p berth`)");
        Run::from(output)
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut child = self.command(args).stdin(Stdio::piped()).spawn().expect("berth runs");
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let input = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
        let output = child.wait_with_output().expect("berth ends");
        writer.join().expect("the stdin writer ends");
        Run::from(output)
    }

    /// `berth run` of the test image; returns the new id.
    fn sandbox(&self, command: &[&str]) -> String {
        let mut args = vec!["run", "--ttl", "10m", TEST_IMAGE, "--"];
        args.extend_from_slice(command);
        let id = self.run(&args).ok();
        let id = id.trim().to_owned();
        assert_eq!(id.len(), 16, "an id: {id:?}");
        id
    }

    /// The sandbox as `berth inspect` prints it (an array of one, like `docker inspect`).
    fn inspect(&self, id: &str) -> Value {
        let mut list: Vec<Value> = serde_json::from_str(&self.run(&["inspect", id]).ok()).expect("inspect prints JSON");
        assert_eq!(list.len(), 1);
        list.remove(0)
    }

    /// stdout of a successful `exec ID -- sh -c LINE`.
    fn sh(&self, id: &str, line: &str) -> String {
        self.run(&["exec", id, "--", "sh", "-c", line]).ok()
    }
}

#[tokio::test]
async fn the_sandbox_verbs_work_end_to_end() {
    let server = TestServer::start().await.unwrap();
    let cli = Cli::new(&server);

    let run = cli.run(&[
        "run",
        "--ttl",
        "10m",
        "-l",
        "suite=cli",
        TEST_IMAGE,
        "--",
        "sleep",
        "3600",
    ]);
    assert!(run.stderr.is_empty(), "{run:?}");
    let id = run.ok().trim().to_owned();
    assert_eq!(id.len(), 16, "{id:?}");

    let table = cli.run(&["ls"]).ok();
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        ["ID", "IMAGE", "STATUS", "AGE", "EXPIRES IN", "PORTS"],
        "{table}"
    );
    let row = lines
        .find(|line| line.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} listed: {table}"));
    assert!(row.contains(TEST_IMAGE) && row.contains("Running"), "{row}");

    assert!(cli.run(&["ls", "-q"]).ok().lines().any(|line| line == id));

    let json: Value = serde_json::from_str(&cli.run(&["ls", "-l", "suite=cli", "-o", "json"]).ok()).unwrap();
    let listed = json.as_array().expect("a JSON array");
    assert_eq!(listed.len(), 1, "{json}");
    assert_eq!(listed[0]["id"], id.as_str());

    let inspected = cli.inspect(&id);
    assert_eq!(inspected["id"], id.as_str());
    assert_eq!(inspected["status"], "Running");
    assert_eq!(inspected["labels"]["suite"], "cli");

    let expires = cli.run(&["ttl", &id, "2h"]).ok();
    let expires = chrono::DateTime::parse_from_rfc3339(expires.trim()).expect("ttl prints the new expiry");
    let left = expires.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(left > chrono::TimeDelta::minutes(119), "{left}");
    assert_eq!(
        cli.inspect(&id)["expires_at"],
        expires.to_utc().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    );

    assert_eq!(cli.run(&["rm", &id]).ok(), format!("{id}\n"));
    let ended = cli.inspect(&id);
    assert_eq!(ended["status"], "Terminated", "{ended}");
    assert_eq!(ended["status_reason"], "deleted");
}

#[tokio::test]
async fn errors_exit_1_with_one_line_and_usage_errors_exit_2() {
    let server = TestServer::start().await.unwrap();
    let cli = Cli::new(&server);

    for args in [
        &["inspect", "0123456789abcdef"][..],
        &["rm", "0123456789abcdef"],
        &["ttl", "0123456789abcdef", "1h"],
        &["exec", "0123456789abcdef", "--", "true"],
        &["logs", "0123456789abcdef"],
        &["stats", "--no-stream", "0123456789abcdef"],
        &["pause", "0123456789abcdef"],
    ] {
        let stderr = cli.run(args).failed();
        assert!(stderr.contains("0123456789abcdef"), "{args:?}: {stderr}");
    }

    // A server that is not there.
    let gone = Cli {
        url: "http://127.0.0.1:9".to_owned(),
        data_dir: server.data_dir.clone(),
    };
    let stderr = gone.run(&["ls"]).failed();
    assert!(stderr.contains("cannot reach berth at http://127.0.0.1:9"), "{stderr}");

    for args in [
        &["run", "-e", "NOEQUALS", TEST_IMAGE][..],
        &["run", "-p", "http", TEST_IMAGE],
        &["exec", "0123456789abcdef"],
        &["logs", "--tail", "x", "0123456789abcdef"],
        &["cp", "a", "b"],
        &["cp", "0123456789abcdef:relative", "out"],
        &["frobnicate"],
    ] {
        let run = cli.run(args);
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(!run.stderr.contains("panicked"), "{run:?}");
    }
}

#[test]
fn serve_with_a_malformed_engine_endpoint_exits_1_naming_it() {
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(berth_binary())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--docker-host",
            "ftp://engine.invalid:2375",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .args(["--cluster", &unique("cli")])
        .current_dir(data.path())
        .env_remove("BERTH_CONFIG")
        .env_remove("BERTH_LOG")
        .env_remove("BERTH_DOCKER_HOST")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let run = Run::from(output);
    assert!(run.stdout.is_empty(), "{run:?}");
    let stderr = run.failed();
    assert!(stderr.contains("ftp://engine.invalid:2375"), "{stderr}");
    assert!(
        stderr.contains("unix://") && stderr.contains("tcp://"),
        "says which forms work: {stderr}"
    );
}

#[tokio::test]
async fn exec_propagates_exit_codes_and_keeps_stdout_and_stderr_apart() {
    let server = TestServer::start().await.unwrap();
    let cli = Cli::new(&server);
    let id = cli.sandbox(&["sleep", "3600"]);
    // The test image is busybox on scratch: no /tmp until one is made.
    cli.sh(&id, "mkdir -p /tmp");

    let run = cli.run(&["exec", &id, "--", "sh", "-c", "exit 7"]);
    assert_eq!(run.code, Some(7), "{run:?}");
    assert!(run.stderr.is_empty(), "{run:?}");

    let run = cli.run(&["exec", &id, "--", "sh", "-c", "echo out; echo err >&2; echo out2"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, "out\nout2\n");
    assert_eq!(run.stderr, "err\n");

    // Flags of berth, then the command's own after `--`.
    let out = cli.run(&[
        "exec",
        "-e",
        "GREETING=hi there",
        "-w",
        "/tmp",
        &id,
        "--",
        "sh",
        "-c",
        "echo \"$GREETING\" $(pwd)",
    ]);
    assert_eq!(out.ok(), "hi there /tmp\n");

    // A program that does not exist: 126/127 with the reason on stderr, not a berth error.
    let run = cli.run(&["exec", &id, "--", "/no/such/program"]);
    assert!(matches!(run.code, Some(126 | 127)), "{run:?}");
    assert!(!run.stderr.is_empty(), "{run:?}");

    // Piped stdin with -i.
    let run = cli.run_with_stdin(
        &["exec", "-i", &id, "--", "sh", "-c", "cat; echo done"],
        b"hello\nworld\n",
    );
    assert_eq!(run.ok(), "hello\nworld\ndone\n");

    // A timeout kills the command and says so.
    let run = cli.run(&["exec", "--timeout", "1s", &id, "--", "sleep", "30"]);
    assert_ne!(run.code, Some(0), "{run:?}");
    assert!(run.stderr.contains("timed out"), "{run:?}");

    // Detached: prints a process id the API knows.
    let pid = cli.run(&["exec", "-d", &id, "--", "sleep", "30"]).ok();
    let pid = pid.trim();
    assert!(!pid.is_empty());
    let process = server.client().process(&id, pid).await.unwrap();
    assert_eq!(process.cmd, ["sleep", "30"]);
    assert!(process.running, "{process:?}");
}

#[tokio::test]
async fn exec_with_a_terminal_works_without_one_on_this_side() {
    let server = TestServer::start().await.unwrap();
    let cli = Cli::new(&server);
    let id = cli.sandbox(&["sleep", "3600"]);

    // -t alone: the command has a terminal; output comes back with its line endings.
    let run = cli.run(&[
        "exec",
        "-t",
        &id,
        "--",
        "sh",
        "-c",
        "test -t 0 && test -t 1 && echo tty; exit 3",
    ]);
    assert_eq!(run.code, Some(3), "{run:?}");
    assert_eq!(run.stdout, "tty\r\n", "{run:?}");

    // -it with stdin a pipe: no raw mode here, the input reaches the command and the end of
    // the input ends it.
    let run = cli.run_with_stdin(&["exec", "-it", &id, "--", "cat"], b"abc\n");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.matches("abc").count() >= 1, "{run:?}");
    let run = cli.run_with_stdin(&["exec", "-it", &id, "--", "sh"], b"echo $((6 * 7))\nexit 5\n");
    assert_eq!(run.code, Some(5), "{run:?}");
    assert!(run.stdout.contains("42"), "{run:?}");

    // `shell` is `exec -it ID -- /bin/sh`.
    let run = cli.run_with_stdin(&["shell", &id], b"exit 4\n");
    assert_eq!(run.code, Some(4), "{run:?}");
}

/// Runs `line` with `sh` inside a fresh pseudo-terminal (`script(1)`) in `dir`.
fn in_pseudo_terminal(line: &str, dir: &Path) -> Run {
    let mut child = Command::new("script")
        .args(["-qec", line, "/dev/null"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Keep script's stdin open while it runs: at its end script would type into the terminal.
    let _stdin = child.stdin.take();
    Run::from(child.wait_with_output().unwrap())
}

/// A real terminal through `script(1)`: raw mode, the initial window size, a resize (SIGWINCH),
/// the exit code, and the terminal settings restored afterwards, also when berth is stopped by
/// a signal mid-session.
#[tokio::test]
async fn exec_in_a_pseudo_terminal_follows_the_window_size_and_restores_the_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: script(1) is not installed");
        return;
    }
    let server = TestServer::start().await.unwrap();
    let cli = Cli::new(&server);
    let id = cli.sandbox(&["sleep", "3600"]);
    let berth = format!(
        "{} --server {} --api-key {}",
        berth_binary().display(),
        server.url,
        server.admin_key.as_deref().unwrap_or_default()
    );
    let dir = tempfile::tempdir().unwrap();

    // The window is resized (from a background job: its stdin is not the terminal) while the
    // command runs; the first `stty size` sees the initial size, the second the new one. The
    // sleeps leave the initial resize time to arrive: the exec starts with the socket.
    let line = format!(
        "stty cols 123 rows 45; stty -g > before; \
         (sleep 2; stty cols 99 rows 33 < /dev/tty) & \
         {berth} exec -it {id} -- sh -c 'sleep 1; stty size; sleep 2; stty size; exit 3'; \
         code=$?; stty -g > after; exit $code"
    );
    let run = in_pseudo_terminal(&line, dir.path());
    assert_eq!(run.code, Some(3), "{run:?}");
    assert_eq!(run.stdout, "45 123\r\n33 99\r\n", "{run:?}");
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    assert_eq!(read("before"), read("after"), "the terminal settings are restored");

    // Stopped by SIGTERM mid-session: one error line, exit 1, the terminal restored.
    let line = format!(
        "stty -g > before; (sleep 2; kill -TERM $(cat pid)) & \
         sh -c 'echo $$ > pid; exec {berth} exec -it {id} -- sleep 30'; \
         code=$?; stty -g > after; exit $code"
    );
    let run = in_pseudo_terminal(&line, dir.path());
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.contains("berth: stopped by SIGTERM"), "{run:?}");
    assert_eq!(read("before"), read("after"), "the terminal settings are restored");
}

fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn write(path: &Path, contents: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

#[tokio::test]
async fn cp_copies_files_and_directories_both_ways() {
    let server = TestServer::start().await.unwrap();
    let cli = Cli::new(&server);
    let id = cli.sandbox(&["sleep", "3600"]);
    // The test image is busybox on scratch: no /tmp until one is made.
    cli.sh(&id, "mkdir -p /tmp");
    let local = tempfile::tempdir().unwrap();
    let root = local.path();

    // A file in (into an existing directory) and out again: the same bytes.
    let data = pseudo_random_bytes(3 * 1024 * 1024 + 17, 7);
    write(&root.join("blob.bin"), &data);
    let source = root.join("blob.bin");
    cli.run(&["cp", source.to_str().unwrap(), &format!("{id}:/tmp")]).ok();
    assert_eq!(cli.sh(&id, "wc -c < /tmp/blob.bin").trim(), data.len().to_string());
    let back = root.join("back.bin");
    cli.run(&["cp", &format!("{id}:/tmp/blob.bin"), back.to_str().unwrap()])
        .ok();
    assert!(std::fs::read(&back).unwrap() == data, "the same bytes came back");

    // A file to a new name, with its mode; and out into a directory.
    write(&root.join("run.sh"), b"#!/bin/sh\necho ran\n");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
    }
    cli.run(&[
        "cp",
        root.join("run.sh").to_str().unwrap(),
        &format!("{id}:/opt/tools/go.sh"),
    ])
    .ok();
    assert_eq!(cli.sh(&id, "/opt/tools/go.sh"), "ran\n");
    let into = root.join("into");
    std::fs::create_dir(&into).unwrap();
    cli.run(&["cp", &format!("{id}:/opt/tools/go.sh"), into.to_str().unwrap()])
        .ok();
    assert_eq!(std::fs::read(into.join("go.sh")).unwrap(), b"#!/bin/sh\necho ran\n");

    // A file to stdout.
    assert_eq!(
        cli.run(&["cp", &format!("{id}:/opt/tools/go.sh"), "-"]).ok(),
        "#!/bin/sh\necho ran\n"
    );

    // A directory into an existing directory: it lands under its own name.
    let tree = root.join("tree");
    write(&tree.join("a.txt"), b"alpha\n");
    write(&tree.join("sub/b.txt"), b"beta\n");
    #[cfg(unix)]
    std::os::unix::fs::symlink("a.txt", tree.join("link")).unwrap();
    cli.run(&["cp", tree.to_str().unwrap(), &format!("{id}:/tmp")]).ok();
    assert_eq!(
        cli.sh(&id, "cat /tmp/tree/a.txt /tmp/tree/sub/b.txt /tmp/tree/link"),
        "alpha\nbeta\nalpha\n"
    );
    // To a path that does not exist: it becomes that directory.
    cli.run(&["cp", tree.to_str().unwrap(), &format!("{id}:/tmp/renamed")])
        .ok();
    assert_eq!(cli.sh(&id, "cat /tmp/renamed/sub/b.txt"), "beta\n");

    // A directory out to a new path, and into an existing directory.
    let out = root.join("out");
    cli.run(&["cp", &format!("{id}:/tmp/tree"), out.to_str().unwrap()]).ok();
    assert_eq!(std::fs::read_to_string(out.join("sub/b.txt")).unwrap(), "beta\n");
    assert_eq!(std::fs::read_to_string(out.join("a.txt")).unwrap(), "alpha\n");
    #[cfg(unix)]
    assert_eq!(std::fs::read_link(out.join("link")).unwrap(), Path::new("a.txt"));
    let existing = root.join("existing");
    std::fs::create_dir(&existing).unwrap();
    cli.run(&["cp", &format!("{id}:/tmp/tree"), existing.to_str().unwrap()])
        .ok();
    assert_eq!(std::fs::read_to_string(existing.join("tree/a.txt")).unwrap(), "alpha\n");
    // No staging directory is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".berth-cp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Errors: a missing sandbox path, a missing local file, a directory onto a file.
    let stderr = cli
        .run(&["cp", &format!("{id}:/no/such/file"), root.join("x").to_str().unwrap()])
        .failed();
    assert!(stderr.contains("/no/such/file"), "{stderr}");
    assert!(!root.join("x").exists());
    cli.run(&["cp", root.join("missing").to_str().unwrap(), &format!("{id}:/tmp")])
        .failed();
    let stderr = cli
        .run(&["cp", tree.to_str().unwrap(), &format!("{id}:/tmp/blob.bin")])
        .failed();
    assert!(stderr.contains("onto the file"), "{stderr}");
}

#[tokio::test]
async fn logs_stats_pause_and_resume() {
    let server = TestServer::start().await.unwrap();
    let cli = Cli::new(&server);
    let id = cli.sandbox(&["sh", "-c", "echo booted; echo warned >&2; sleep 3600"]);

    let logs = eventually(Duration::from_secs(10), || async {
        let logs = cli.run(&["logs", &id]).ok();
        logs.contains("warned").then_some(logs)
    })
    .await
    .expect("the boot output is logged");
    assert!(logs.contains("booted\n"), "{logs}");
    assert_eq!(cli.run(&["logs", "--tail", "1", &id]).ok().lines().count(), 1);
    let stamped = cli.run(&["logs", "-t", "--since", "1h", &id]).ok();
    assert!(stamped.lines().all(|line| line.starts_with("20")), "{stamped}");

    let table = cli.run(&["stats", "--no-stream", &id]).ok();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[0].starts_with("CPU %") && lines[0].contains("MEM USAGE / LIMIT") && lines[0].ends_with("PIDS"),
        "{table}"
    );
    assert!(lines[1].contains("MiB") && lines[1].contains('%'), "{table}");

    assert_eq!(cli.run(&["pause", &id]).ok(), format!("{id}\n"));
    assert_eq!(cli.inspect(&id)["status"], "Paused");
    let stderr = cli.run(&["exec", &id, "--", "true"]).failed();
    assert!(stderr.to_lowercase().contains("paused"), "{stderr}");
    assert_eq!(cli.run(&["resume", &id]).ok(), format!("{id}\n"));
    assert_eq!(cli.inspect(&id)["status"], "Running");
    assert_eq!(cli.sh(&id, "echo back"), "back\n");
}

/// The column names of a table (they are separated by at least three spaces, and may contain one).
fn table_header(table: &str) -> Vec<&str> {
    let first = table.lines().next().unwrap_or_default();
    first
        .split("   ")
        .map(str::trim)
        .filter(|cell| !cell.is_empty())
        .collect()
}

/// The cells of the table row whose first column is `first`, split at the column gaps.
fn table_row(table: &str, first: &str) -> Option<Vec<String>> {
    table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|cells| cells.first().map(String::as_str) == Some(first))
}

#[tokio::test]
async fn templates_are_created_listed_run_inspected_and_removed() {
    let server = TestServer::start().await.unwrap();
    let cli = Cli::new(&server);
    let name = unique("tpl");
    let reference = format!("{name}:latest");

    let created = cli.run(&[
        "template",
        "create",
        &name,
        "--image",
        TEST_IMAGE,
        "--ttl",
        "10m",
        "-l",
        "suite=tpl",
        "-e",
        "GREETING=hi",
        "--",
        "sleep",
        "3600",
    ]);
    assert!(created.stderr.is_empty(), "{created:?}");
    assert_eq!(created.ok(), format!("{reference}\n"));
    // The same NAME:TAG again is refused (`--replace`, below, overwrites it).
    let stderr = cli.run(&["template", "create", &name, "--image", TEST_IMAGE]).failed();
    assert!(stderr.contains(&name), "{stderr}");

    let table = cli.run(&["template", "ls"]).ok();
    let header = table_header(&table);
    assert_eq!(
        header,
        [
            "NAME", "TAG", "IMAGE", "CPU", "MEMORY", "TTL", "POOL", "ERROR", "CREATED"
        ],
        "{table}"
    );
    let row = table_row(&table, &name).unwrap_or_else(|| panic!("{name} listed: {table}"));
    assert_eq!(row[1..3], ["latest", TEST_IMAGE], "{table}");
    assert_eq!(row[5..7], ["10m", "-"], "{table}");
    assert!(
        cli.run(&["template", "list", "-q"])
            .ok()
            .lines()
            .any(|line| line == reference)
    );
    let listed: Value = serde_json::from_str(&cli.run(&["template", "ls", "-o", "json"]).ok()).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|item| item["name"] == name.as_str()),
        "{listed}"
    );

    // The template's spec is the base: its command, labels and env.
    let id = cli.run(&["run", "--template", &name]).ok().trim().to_owned();
    assert_eq!(id.len(), 16, "an id: {id:?}");
    let sandbox = cli.inspect(&id);
    assert_eq!(sandbox["status"], "Running", "{sandbox}");
    assert_eq!(sandbox["image"], TEST_IMAGE);
    assert_eq!(sandbox["labels"]["suite"], "tpl");
    assert_eq!(sandbox["template"], reference.as_str(), "{sandbox}");
    assert_eq!(cli.sh(&id, "echo $GREETING"), "hi\n");
    // Flags override it; every positional is the command.
    let id = cli
        .run(&["run", "--template", &name, "-e", "GREETING=yo", "--", "sleep", "1234"])
        .ok()
        .trim()
        .to_owned();
    let sandbox = cli.inspect(&id);
    assert_eq!(sandbox["command"], serde_json::json!(["sleep", "1234"]), "{sandbox}");
    assert_eq!(cli.sh(&id, "echo $GREETING"), "yo\n");
    let run = cli.run(&["run", "--ttl", "1m"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("--template"), "{run:?}");

    let inspected: Value = serde_json::from_str(&cli.run(&["template", "inspect", &name]).ok()).unwrap();
    let template = &inspected.as_array().expect("a JSON array")[0];
    assert_eq!(template["name"], name.as_str());
    assert_eq!(template["tag"], "latest");
    assert_eq!(template["image"], TEST_IMAGE);
    assert_eq!(template["command"], serde_json::json!(["sleep", "3600"]));
    assert_eq!(template["env"]["GREETING"], "hi");
    assert_eq!(template["pool"], Value::Null);
    let yaml = cli.run(&["template", "inspect", "-o", "yaml", &reference]).ok();
    assert!(yaml.starts_with(&format!("- name: {name}\n")), "{yaml}");

    // Replace it from a YAML file on stdin.
    let body = format!("name: {name}\nimage: {TEST_IMAGE}\nttl: 5m\ncommand: [sleep, '60']\n");
    let replaced = cli.run_with_stdin(&["template", "create", "--replace", "-f", "-"], body.as_bytes());
    assert_eq!(replaced.ok(), format!("{reference}\n"));
    let inspected: Value = serde_json::from_str(&cli.run(&["template", "inspect", &reference]).ok()).unwrap();
    assert_eq!(inspected[0]["ttl"], "5m", "{inspected}");
    assert_eq!(inspected[0]["command"], serde_json::json!(["sleep", "60"]));

    assert_eq!(cli.run(&["template", "rm", &name]).ok(), format!("{name}\n"));
    let stderr = cli.run(&["template", "inspect", &name]).failed();
    assert!(stderr.contains(&name), "{stderr}");
    cli.run(&["template", "rm", &reference]).failed();
    // Sandboxes made from it keep running.
    assert_eq!(cli.inspect(&id)["status"], "Running");
}

#[tokio::test]
async fn pool_ls_shows_a_pool_filling() {
    let server = TestServer::start().await.unwrap();
    let cli = Cli::new(&server);
    let name = unique("pooled");
    let reference = format!("{name}:latest");
    cli.run(&[
        "template",
        "create",
        &name,
        "--image",
        TEST_IMAGE,
        "--ttl",
        "10m",
        "--pool-min-ready",
        "1",
        "--pool-max-idle-age",
        "30m",
        "--",
        "sleep",
        "3600",
    ])
    .ok();

    let row = eventually(Duration::from_secs(60), || async {
        let table = cli.run(&["pool", "ls"]).ok();
        let header = table_header(&table);
        assert_eq!(
            header,
            ["TEMPLATE", "READY", "MIN", "REFILLING", "CLAIMED", "MAX IDLE", "ERROR"],
            "{table}"
        );
        table_row(&table, &reference).filter(|row| row[1] == "1" && row[3] == "0")
    })
    .await
    .unwrap_or_else(|| panic!("the pool of {reference} never held a ready sandbox"));
    assert_eq!(row[2..6], ["1", "0", "0", "30m"], "{row:?}");

    let pools: Value = serde_json::from_str(&cli.run(&["pool", "ls", "-o", "json"]).ok()).unwrap();
    let pool = pools
        .as_array()
        .unwrap()
        .iter()
        .find(|pool| pool["template"] == reference.as_str())
        .unwrap_or_else(|| panic!("{reference} in {pools}"));
    assert_eq!(pool["min_ready"], 1);
    let table = cli.run(&["template", "ls"]).ok();
    assert!(
        table_row(&table, &name).unwrap().join(" ").contains("1/1 ready"),
        "{table}"
    );

    assert_eq!(cli.run(&["template", "rm", &reference]).ok(), format!("{reference}\n"));
    let table = cli.run(&["pool", "ls"]).ok();
    assert!(table_row(&table, &reference).is_none(), "{table}");
}
