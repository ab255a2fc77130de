//! Get throughput: `wrk` against `GET /v1/sandboxes/{id}` of one sandbox at a fixed concurrency;
//! requests per second and latency percentiles read from its `--latency` report. There is no raw
//! side: wrk cannot speak to the engine's unix socket, and the target is absolute.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::process::Command;

use crate::berth::Berth;
use crate::report::{Bound, Figure};

/// wrk's threads and open connections (the concurrency), and how long it runs.
const THREADS: usize = 2;
const CONNECTIONS: usize = 16;
const SECONDS: u64 = 5;
const TARGET_RPS: f64 = 10_000.0;

/// Fails, saying what to install, unless `wrk` runs. Checked before anything else starts.
pub fn check_wrk() -> Result<()> {
    match std::process::Command::new("wrk").arg("--version").output() {
        Ok(_) => Ok(()),
        Err(e) => bail!(
            "cannot run wrk ({e}), which the throughput part needs: install it (Debian/Ubuntu: apt-get install wrk; scripts/bench does so when run as root on Debian) or leave the part out with --only"
        ),
    }
}

/// Creates one sandbox, loads its get with wrk, deletes it; the throughput figure.
pub async fn run(berth: &Berth, image: &str) -> Result<Figure> {
    let sandbox = berth.create(image, &[], true).await?;
    let outcome = measure(berth, &sandbox).await;
    let deleted = berth.delete(&sandbox).await;
    let figure = outcome?;
    deleted?;
    Ok(figure)
}

async fn measure(berth: &Berth, sandbox: &str) -> Result<Figure> {
    let url = berth.sandbox_url(sandbox);
    eprintln!("throughput: wrk -t{THREADS} -c{CONNECTIONS} --latency {url}: 1 s warm-up, then {SECONDS} s");
    let authorization = berth.authorization();
    wrk(&url, &authorization, 1).await?;
    let report = wrk(&url, &authorization, SECONDS).await?;
    let mut details = format!(
        "p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms; {} requests in {:.2} s (wrk -t{THREADS} -c{CONNECTIONS} -d{SECONDS}s)",
        report.p50.as_secs_f64() * 1e3,
        report.p90.as_secs_f64() * 1e3,
        report.p99.as_secs_f64() * 1e3,
        report.requests,
        report.elapsed.as_secs_f64(),
    );
    if let Some(errors) = &report.socket_errors {
        details.push_str(&format!("; socket errors: {errors}"));
    }
    Ok(Figure {
        name: format!("get throughput (c={CONNECTIONS})"),
        value: report.requests_per_sec,
        unit: "req/s",
        bound: Bound::AtLeast(TARGET_RPS),
        details,
    })
}

/// Runs wrk for `seconds` against `url`; its parsed report. Fails on any non-2xx answer: a
/// throughput made of errors would mean nothing.
async fn wrk(url: &str, authorization: &str, seconds: u64) -> Result<WrkReport> {
    let output = Command::new("wrk")
        .arg("-H")
        .arg(format!("Authorization: {authorization}"))
        .arg(format!("-t{THREADS}"))
        .arg(format!("-c{CONNECTIONS}"))
        .arg(format!("-d{seconds}s"))
        .arg("--latency")
        .arg(url)
        .kill_on_drop(true)
        .output()
        .await
        .context("cannot run wrk")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk exited with {}: {}{}",
            output.status,
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let report = parse(&stdout).with_context(|| format!("cannot read wrk's report:\n{stdout}"))?;
    if report.non_2xx > 0 {
        bail!(
            "{} of wrk's {} requests to {url} were not answered 2xx",
            report.non_2xx,
            report.requests
        );
    }
    Ok(report)
}

/// What the benchmark takes from wrk's report.
#[derive(Debug, PartialEq)]
struct WrkReport {
    requests_per_sec: f64,
    requests: u64,
    elapsed: Duration,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    non_2xx: u64,
    /// wrk's `Socket errors:` line, when it printed one.
    socket_errors: Option<String>,
}

/// Reads wrk 4's `--latency` report:
///
/// ```text
///   Latency Distribution
///      50%  491.00us
///      ...
///   90755 requests in 5.01s, 13.67MB read
///   Socket errors: connect 0, read 1, write 0, timeout 0
///   Non-2xx or 3xx responses: 12
/// Requests/sec:  18112.73
/// ```
fn parse(text: &str) -> Result<WrkReport> {
    let mut rps = None;
    let mut totals = None;
    let (mut p50, mut p90, mut p99) = (None, None, None);
    let mut non_2xx = 0;
    let mut socket_errors = None;
    for line in text.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("Requests/sec:") {
            rps = Some(value.trim().parse::<f64>()?);
        } else if let Some(value) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = value.trim().parse()?;
        } else if let Some(value) = line.strip_prefix("Socket errors:") {
            socket_errors = Some(value.trim().to_owned());
        } else if let Some((count, rest)) = line.split_once(" requests in ") {
            let elapsed = rest.split(',').next().unwrap_or_default();
            totals = Some((count.parse::<u64>()?, time(elapsed)?));
        } else if let Some((percent, value)) = line.split_once("%") {
            let slot = match percent {
                "50" => &mut p50,
                "90" => &mut p90,
                "99" => &mut p99,
                _ => continue,
            };
            *slot = Some(time(value.trim())?);
        }
    }
    let (requests, elapsed) = totals.context("no `N requests in T` line")?;
    Ok(WrkReport {
        requests_per_sec: rps.context("no Requests/sec line")?,
        requests,
        elapsed,
        p50: p50.context("no 50% line: was --latency given?")?,
        p90: p90.context("no 90% line")?,
        p99: p99.context("no 99% line")?,
        non_2xx,
        socket_errors,
    })
}

/// One of wrk's times: a number and `us`, `ms`, `s`, `m` or `h`.
fn time(text: &str) -> Result<Duration> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("`{text}` has no unit"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .trim()
        .parse()
        .with_context(|| format!("`{text}` is not a time"))?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => bail!("`{text}` has an unknown unit"),
    };
    // Rounded to the nanosecond: `5.01` is not exact in binary, and truncating would print 5.009999999 s.
    Ok(Duration::from_nanos((seconds * 1e9).round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 5s test @ http://127.0.0.1:40000/v1/sandboxes/abc
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   635.91us    0.89ms  12.92ms   93.69%
    Req/Sec     9.11k     1.03k   12.36k    72.00%
  Latency Distribution
     50%  491.00us
     75%  650.00us
     90%  885.00us
     99%    4.02ms
  90755 requests in 5.01s, 13.67MB read
Requests/sec:  18112.73
Transfer/sec:      2.73MB
";

    #[test]
    fn reads_wrks_latency_report() {
        let report = parse(REPORT).unwrap();
        assert_eq!(report.requests_per_sec, 18112.73);
        assert_eq!(report.requests, 90755);
        assert_eq!(report.elapsed, Duration::from_millis(5010));
        assert_eq!(report.p50, Duration::from_micros(491));
        assert_eq!(report.p90, Duration::from_micros(885));
        assert_eq!(report.p99, Duration::from_micros(4020));
        assert_eq!(report.non_2xx, 0);
        assert_eq!(report.socket_errors, None);
    }

    #[test]
    fn reads_errors_and_refuses_a_report_without_percentiles() {
        let errors = REPORT.replace(
            "Requests/sec:",
            "  Socket errors: connect 0, read 2, write 0, timeout 0\n  Non-2xx or 3xx responses: 7\nRequests/sec:",
        );
        let report = parse(&errors).unwrap();
        assert_eq!(report.non_2xx, 7);
        assert_eq!(
            report.socket_errors.as_deref(),
            Some("connect 0, read 2, write 0, timeout 0")
        );
        let without = REPORT.replace("     50%  491.00us\n", "");
        assert!(parse(&without).is_err());
        assert_eq!(time("1.50m").unwrap(), Duration::from_secs(90));
        assert!(time("12").is_err());
    }
}
