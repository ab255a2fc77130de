//! `berth-bench`: berth's benchmarks. Starts `berth serve`, then times create, get, delete and
//! list (F1) and exec (F3) through berth's v1 API and through the raw Docker Engine API,
//! interleaved, same image; file uploads and downloads (F3) through berth against `docker cp`;
//! creates from a template's warm pool; get throughput under `wrk`; how late after their deadline
//! sandboxes with a short TTL end by expiry; and the server's memory with many sandboxes. Prints
//! the figures against the targets and removes everything it created.

mod berth;
mod engine;
mod expiry;
mod pools;
mod report;
mod rss;
mod snapshots;
mod throughput;
mod timing;
mod transfer;
mod wake;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use futures::{StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};

use crate::berth::{Berth, Server};
use crate::engine::{BENCH_LABEL, Engine};
use crate::report::{Figure, Row, Target, Transfer};
use crate::timing::{interleaved, timed};

/// Parallel creates and removes while filling or emptying the list population.
const FILL_CONCURRENCY: usize = 4;
/// Parallel removes in the final cleanup, which may face the RSS part's 1,000 containers.
const CLEANUP_CONCURRENCY: usize = 8;
/// The label that marks the sandboxes and containers the list calls select.
const GROUP_LABEL: (&str, &str) = ("bench-group", "ten");
/// How many of the population carry it.
const GROUP_SIZE: usize = 10;

/// The parts of the benchmark `--only` can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    /// F1: create, get, list, delete.
    Lifecycle,
    /// F3: `echo hi` in one sandbox, berth's exec against the engine's.
    Exec,
    /// F3: upload and download of one file, berth against `docker cp`.
    Files,
    /// Creates from a template's warm pool: a burst of claims, pooled and cold fallbacks.
    Pools,
    /// Gets per second of one sandbox under `wrk` at concurrency 16.
    Throughput,
    /// How late sandboxes with a 3 s TTL end by expiry: `ended_at - expires_at`.
    Expiry,
    /// An exec on a sandbox paused for being idle against one on an awake sandbox; an exec on a
    /// hibernated one.
    Wake,
    /// Snapshot time, a create from a snapshot against a cold create, a fork of 8.
    Snapshots,
    /// The server's RSS with many sandboxes (1,000 containers: heavy).
    Rss,
}

/// Times berth's v1 API against raw Docker Engine API calls. Loopback only; stops by itself.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The `berth` binary to start.
    #[arg(long, default_value = "target/release/berth")]
    berth_bin: PathBuf,
    /// Creates and deletes on each side.
    #[arg(long, default_value_t = 30)]
    iterations: usize,
    /// Gets on each side.
    #[arg(long, default_value_t = 500)]
    get_iterations: usize,
    /// Lists on each side.
    #[arg(long, default_value_t = 200)]
    list_iterations: usize,
    /// Sandboxes (and, separately, raw containers) present while listing.
    #[arg(long, default_value_t = 200)]
    population: usize,
    /// Execs of `echo hi` on each side.
    #[arg(long, default_value_t = 50)]
    exec_iterations: usize,
    /// Size of the transferred file, in MiB.
    #[arg(long, default_value_t = 256)]
    file_size_mib: u64,
    /// Uploads and downloads on each side.
    #[arg(long, default_value_t = 3)]
    file_rounds: usize,
    /// Creates from the template in the pools part.
    #[arg(long, default_value_t = 200)]
    pool_claims: usize,
    /// Creates in flight at once in the pools part.
    #[arg(long, default_value_t = 4)]
    pool_concurrency: usize,
    /// The pool size (`min_ready`) of the pools part's template.
    #[arg(long, default_value_t = 8)]
    pool_min_ready: usize,
    /// Sandboxes created with a 3 s TTL in the expiry part.
    #[arg(long, default_value_t = 20)]
    expiry_sandboxes: usize,
    /// Idle pauses and wakes timed in the wake part.
    #[arg(long, default_value_t = 20)]
    wake_rounds: usize,
    /// Hibernations and wakes timed in the wake part (each waits about 6 s for the hibernation).
    #[arg(long, default_value_t = 10)]
    hibernate_rounds: usize,
    /// Snapshots, creates from them and cold creates timed in the snapshots part.
    #[arg(long, default_value_t = 10)]
    snapshot_rounds: usize,
    /// Forks of 8 timed in the snapshots part.
    #[arg(long, default_value_t = 5)]
    fork_rounds: usize,
    /// Sandboxes present when the rss part reads the server's memory.
    #[arg(long, default_value_t = 1000)]
    rss_sandboxes: usize,
    /// Run only these parts (comma-separated or repeated); all of them by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
    /// The image both sides run `sleep 3600` in.
    #[arg(long, default_value = "berth-test/busybox:latest")]
    image: String,
    /// The Docker Engine's unix socket.
    #[arg(long, default_value = "/var/run/docker.sock")]
    docker_socket: PathBuf,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// An extra argument of `berth serve` (repeatable), e.g. `--serve-arg=--default-egress
    /// --serve-arg=deny` to measure sealed sandboxes.
    #[arg(long = "serve-arg", value_name = "ARG", allow_hyphen_values = true)]
    serve_args: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.runs(Part::Lifecycle) && (args.iterations == 0 || args.population < GROUP_SIZE) {
        bail!("--iterations must be at least 1 and --population at least {GROUP_SIZE}");
    }
    if args.exec_iterations == 0 || args.file_rounds == 0 || args.file_size_mib == 0 {
        bail!("--exec-iterations, --file-rounds and --file-size-mib must be at least 1");
    }
    if [
        args.pool_claims,
        args.pool_concurrency,
        args.pool_min_ready,
        args.expiry_sandboxes,
        args.rss_sandboxes,
        args.wake_rounds,
        args.snapshot_rounds,
    ]
    .contains(&0)
    {
        bail!(
            "--pool-claims, --pool-concurrency, --pool-min-ready, --expiry-sandboxes, --rss-sandboxes, --wake-rounds \
             and --snapshot-rounds must be at least 1 (--hibernate-rounds and --fork-rounds may be 0: not measured)"
        );
    }
    if args.runs(Part::Throughput) {
        // Before anything starts: finding out after the lifecycle part would waste minutes.
        throughput::check_wrk()?;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let run_id = format!("{}-{:x}", std::process::id(), nanos & 0xffff_ffff);
    let cluster = format!("bench-{run_id}");

    let engine = Engine::new(&args.docker_socket)?;
    let engine_version = engine.check(&args.image).await?;
    let server = Server::start(&args.berth_bin, &args.docker_socket, &cluster, &args.serve_args).await?;
    eprintln!("berth-bench {run_id}: berth at {}, {engine_version}", server.url);

    let outcome = tokio::select! {
        outcome = run(&args, &engine, &server, &run_id, &cluster) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let log = server.stop().await;
    if outcome.is_err() {
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        eprintln!("last lines of berth's log:\n{}", tail.join("\n"));
    }
    let removed = cleanup(&engine, &run_id, &cluster).await;
    let Results {
        rows,
        transfers,
        figures,
    } = outcome?;
    removed?;

    if args.json {
        let context = json!({
            "run_id": run_id,
            "engine": engine_version,
            "image": args.image,
            "iterations": args.iterations,
            "get_iterations": args.get_iterations,
            "list_iterations": args.list_iterations,
            "population": args.population,
            "exec_iterations": args.exec_iterations,
            "file_size_mib": args.file_size_mib,
            "file_rounds": args.file_rounds,
            "pool_claims": args.pool_claims,
            "pool_concurrency": args.pool_concurrency,
            "pool_min_ready": args.pool_min_ready,
            "expiry_sandboxes": args.expiry_sandboxes,
            "wake_rounds": args.wake_rounds,
            "hibernate_rounds": args.hibernate_rounds,
            "snapshot_rounds": args.snapshot_rounds,
            "fork_rounds": args.fork_rounds,
            "rss_sandboxes": args.rss_sandboxes,
        });
        println!("{:#}", report::json(&rows, &transfers, &figures, context));
    } else {
        if !rows.is_empty() {
            print!("{}", report::table(&rows));
        }
        if !transfers.is_empty() {
            print!("{}", report::transfer_table(&transfers, args.file_size_mib));
        }
        if !figures.is_empty() {
            print!("{}", report::figure_table(&figures));
        }
    }
    Ok(())
}

impl Args {
    fn runs(&self, part: Part) -> bool {
        self.only.is_empty() || self.only.contains(&part)
    }
}

/// Latency rows (F1, F3's exec, the pools), F3's transfers, and single figures (throughput,
/// expiry lateness, RSS).
#[derive(Default)]
struct Results {
    rows: Vec<Row>,
    transfers: Vec<Transfer>,
    figures: Vec<Figure>,
}

async fn run(args: &Args, engine: &Engine, server: &Server, run_id: &str, cluster: &str) -> Result<Results> {
    let berth = &Berth::new(&server.url, &server.api_key)?;
    berth.wait_ready().await?;
    let mut results = Results::default();
    if args.runs(Part::Lifecycle) {
        results.rows = lifecycle(args, engine, berth, run_id).await?;
    }
    if args.runs(Part::Exec) || args.runs(Part::Files) {
        let sandbox = berth.create(&args.image, &[], true).await?;
        let container = parse(&berth.get(&sandbox).await?)?["container_id"]
            .as_str()
            .context("the sandbox has no container_id")?
            .to_owned();
        // The test image has no /tmp.
        check_exec(&berth.exec(&sandbox, &["mkdir", "-p", "/tmp"]).await?, "")?;
        if args.runs(Part::Exec) {
            results
                .rows
                .push(exec(args, engine, berth, &sandbox, &container).await?);
        }
        if args.runs(Part::Files) {
            let host = Engine::host(&args.docker_socket);
            let size = args.file_size_mib << 20;
            results.transfers = transfer::run(berth, &host, &sandbox, &container, size, args.file_rounds).await?;
        }
        berth.delete(&sandbox).await?;
    }
    if args.runs(Part::Pools) {
        let burst = pools::Burst {
            claims: args.pool_claims,
            concurrency: args.pool_concurrency,
            min_ready: args.pool_min_ready,
        };
        results
            .rows
            .extend(pools::run(berth, engine, &args.image, run_id, cluster, &burst).await?);
    }
    if args.runs(Part::Throughput) {
        results.figures.push(throughput::run(berth, &args.image).await?);
    }
    // Before rss: the figure is the promise on an engine with little else to do.
    if args.runs(Part::Expiry) {
        results
            .figures
            .extend(expiry::run(berth, engine, &args.image, args.expiry_sandboxes).await?);
    }
    if args.runs(Part::Wake) {
        results
            .figures
            .extend(wake::run(berth, &args.image, args.wake_rounds, args.hibernate_rounds).await?);
    }
    if args.runs(Part::Snapshots) {
        results
            .figures
            .extend(snapshots::run(berth, &args.image, args.snapshot_rounds, args.fork_rounds).await?);
    }
    if args.runs(Part::Rss) {
        let pid = server.pid().context("berth serve has exited")?;
        results
            .figures
            .push(rss::run(berth, engine, &args.image, pid, args.rss_sandboxes).await?);
    }
    Ok(results)
}

/// F3: `echo hi` in one sandbox, through berth and through the engine's exec calls.
async fn exec(args: &Args, engine: &Engine, berth: &Berth, sandbox: &str, container: &str) -> Result<Row> {
    const ECHO: &[&str] = &["echo", "hi"];
    eprintln!("exec: 2 warm-up rounds, then {} per side", args.exec_iterations);
    let mut row = Row::new("exec echo hi", Target::RatioToRaw(1.15));
    for i in 0..args.exec_iterations + 2 {
        let ((b, ok_b), (r, ok_r)) =
            interleaved(i, timed(berth.exec(sandbox, ECHO)), timed(engine.exec(container, ECHO))).await;
        check_exec(&ok_b?, "hi\n")?;
        let (code, stdout) = ok_r?;
        if code != 0 || stdout != b"hi\n" {
            bail!(
                "the engine's exec exited {code} with stdout {:?}",
                String::from_utf8_lossy(&stdout)
            );
        }
        if i >= 2 {
            row.berth.push(b);
            row.raw.push(r);
        }
    }
    Ok(row)
}

/// Fails unless berth's exec result exited 0 with `stdout`.
fn check_exec(result: &Value, stdout: &str) -> Result<()> {
    if result["exit_code"].as_i64() != Some(0) || result["stdout"].as_str() != Some(stdout) {
        bail!("berth's exec answered {result}, expected exit_code 0 and stdout {stdout:?}");
    }
    Ok(())
}

/// F1: create, get, delete and list on both sides.
async fn lifecycle(args: &Args, engine: &Engine, berth: &Berth, run_id: &str) -> Result<Vec<Row>> {
    let image = args.image.as_str();
    let bench = [(BENCH_LABEL, run_id)];
    let name = |n: usize| format!("bench-{run_id}-{n}");
    let mut serial = 0..;
    let mut next_name = || name(serial.next().unwrap_or_default());

    eprintln!("warming up (2 unmeasured create/get/delete rounds per side)");
    for _ in 0..2 {
        let id = berth.create(image, &[], true).await?;
        berth.get(&id).await?;
        berth.delete(&id).await?;
        let id = engine.create_and_start(image, &next_name(), &bench).await?;
        engine.inspect(&id).await?;
        engine.remove(&id).await?;
    }

    eprintln!("create: {} per side", args.iterations);
    let mut create = Row::new("create->running", Target::RatioToRaw(1.1));
    let (mut sandboxes, mut containers) = (Vec::new(), Vec::new());
    for i in 0..args.iterations {
        let raw_name = next_name();
        let ((b, sandbox), (r, container)) = interleaved(
            i,
            timed(berth.create(image, &[], true)),
            timed(engine.create_and_start(image, &raw_name, &bench)),
        )
        .await;
        sandboxes.push(sandbox?);
        containers.push(container?);
        create.berth.push(b);
        create.raw.push(r);
    }

    eprintln!("get: {} per side", args.get_iterations);
    let mut get = Row::new("get", Target::Millis(1.0));
    for i in 0..args.get_iterations {
        let k = i % sandboxes.len();
        let ((b, ok_b), (r, ok_r)) = interleaved(
            i,
            timed(berth.get(&sandboxes[k])),
            timed(engine.inspect(&containers[k])),
        )
        .await;
        ok_b?;
        ok_r?;
        get.berth.push(b);
        get.raw.push(r);
    }

    eprintln!("delete: {} per side, alternating berth's two forms", args.iterations);
    // The default delete answers once the sandbox is marked `Stopping`; `?wait=true` once the
    // container is gone. Each is compared with the raw remove of a container.
    let mut delete_call = Row::new("delete (call)", Target::Millis(5.0));
    let mut delete_wait = Row::new("delete (?wait=true)", Target::RatioToRaw(1.15));
    for (i, (sandbox, container)) in sandboxes.iter().zip(&containers).enumerate() {
        let row = if i % 2 == 0 { &mut delete_call } else { &mut delete_wait };
        let berth_delete = async {
            if i % 2 == 0 {
                berth.delete_in_background(sandbox).await
            } else {
                berth.delete(sandbox).await
            }
        };
        let ((b, ok_b), (r, ok_r)) = interleaved(i / 2, timed(berth_delete), timed(engine.remove(container))).await;
        ok_b?;
        ok_r?;
        row.berth.push(b);
        row.raw.push(r);
    }

    let population = args.population;
    eprintln!(
        "list: filling {population} sandboxes and {population} raw containers ({GROUP_SIZE} each labelled bench-group=ten)"
    );
    let group_of = |n: usize| if n < GROUP_SIZE { vec![GROUP_LABEL] } else { Vec::new() };
    let population_sandboxes: Vec<String> = stream::iter(0..population)
        .map(|n| {
            let labels = group_of(n);
            async move { berth.create(image, &labels, true).await }
        })
        .buffer_unordered(FILL_CONCURRENCY)
        .try_collect()
        .await?;
    let raw_names: Vec<String> = (0..population).map(|_| next_name()).collect();
    let population_containers: Vec<String> = stream::iter(raw_names.iter().enumerate())
        .map(|(n, raw_name)| {
            let mut labels = group_of(n);
            labels.push((BENCH_LABEL, run_id));
            async move { engine.create_and_start(image, raw_name, &labels).await }
        })
        .buffer_unordered(FILL_CONCURRENCY)
        .try_collect()
        .await?;
    let selector = format!("{}={}", GROUP_LABEL.0, GROUP_LABEL.1);
    let run_label = format!("{BENCH_LABEL}={run_id}");
    let berth_found = parse(&berth.list_label(&selector).await?)?["items"]
        .as_array()
        .map_or(0, Vec::len);
    let raw_found = parse(&engine.list_label(&selector, &run_label).await?)?
        .as_array()
        .map_or(0, Vec::len);
    if berth_found != GROUP_SIZE || raw_found != GROUP_SIZE {
        bail!(
            "the lists found {berth_found} sandboxes and {raw_found} containers labelled {selector}, expected {GROUP_SIZE} each; are other containers on this engine labelled {selector}?"
        );
    }

    eprintln!("list: {} per side", args.list_iterations);
    let mut list = Row::new("list (label)", Target::Millis(3.0));
    for i in 0..args.list_iterations {
        let ((b, ok_b), (r, ok_r)) = interleaved(
            i,
            timed(berth.list_label(&selector)),
            timed(engine.list_label(&selector, &run_label)),
        )
        .await;
        ok_b?;
        ok_r?;
        list.berth.push(b);
        list.raw.push(r);
    }

    // Removed now rather than by the final cleanup: the parts that follow should not share the
    // engine (and the default bridge's 1024 ports) with 2 x population idle containers.
    eprintln!("list: removing the {population} sandboxes and {population} raw containers");
    stream::iter(&population_sandboxes)
        .map(|id| berth.delete(id))
        .buffer_unordered(FILL_CONCURRENCY)
        .try_collect::<()>()
        .await?;
    stream::iter(&population_containers)
        .map(|id| engine.remove(id))
        .buffer_unordered(FILL_CONCURRENCY)
        .try_collect::<()>()
        .await?;
    Ok(vec![create, get, list, delete_call, delete_wait])
}

fn parse(body: &[u8]) -> Result<Value> {
    Ok(serde_json::from_slice(body)?)
}

/// Removes every container labelled with this run (raw) or this run's cluster (berth's), and
/// nothing else. Called after berth is killed.
async fn cleanup(engine: &Engine, run_id: &str, cluster: &str) -> Result<()> {
    let mut ids = engine.ids_with_label(&format!("{BENCH_LABEL}={run_id}")).await?;
    ids.extend(engine.ids_with_label(&format!("berth.cluster={cluster}")).await?);
    eprintln!("cleanup: removing {} containers", ids.len());
    let failures: Vec<String> = stream::iter(&ids)
        .map(|id| async move { engine.remove(id).await.map_err(|e| format!("{id}: {e:#}")) })
        .buffer_unordered(CLEANUP_CONCURRENCY)
        .filter_map(|result| async move { result.err() })
        .collect()
        .await;
    if !failures.is_empty() {
        bail!(
            "could not remove {} containers:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    // With `--sandbox-network isolated` the cluster has a network of its own (berth-sandboxes-<tag>).
    let networks = engine
        .remove_networks_with_label(&format!("berth.cluster={cluster}"))
        .await?;
    if networks > 0 {
        eprintln!("cleanup: removed {networks} networks");
    }
    Ok(())
}
