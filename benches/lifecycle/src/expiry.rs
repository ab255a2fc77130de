//! Expiry lateness: sandboxes created with a 3 s TTL and left alone until berth's expiry timers
//! end them; how long after its deadline (`expires_at`) each one ended (`ended_at`, stamped once
//! its container is gone), against DESIGN.md's promise that a sandbox is gone within 1 s of it.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt, stream};
use serde_json::Value;

use crate::berth::Berth;
use crate::engine::Engine;
use crate::report::{Bound, Figure, percentile_ms};

/// Long enough that a create answered once running (a few hundred ms here) is done well before
/// its deadline, short enough that the part takes seconds.
const TTL: &str = "3s";
/// Creates in flight at once.
const CREATE_CONCURRENCY: usize = 4;
/// How long after the last create answered the sandboxes may take to end before the part fails.
const GIVE_UP: Duration = Duration::from_secs(60);
/// Between two rounds of gets. The figure does not depend on it: both instants are berth's own.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// "A sandbox is gone within 1 s of its deadline" (DESIGN.md), judged on every sandbox.
const PROMISE_MS: f64 = 1000.0;

/// Creates `count` sandboxes of `sleep 3600` in `image` with a TTL of [`TTL`], waits for each
/// to end by expiry, checks their containers are gone; the lateness figures. What a failure
/// leaves running is the final cleanup's (every container of the bench's cluster).
pub async fn run(berth: &Berth, engine: &Engine, image: &str, count: usize) -> Result<Vec<Figure>> {
    eprintln!("expiry: creating {count} sandboxes with ttl {TTL}, {CREATE_CONCURRENCY} at a time");
    let ids: Vec<String> = stream::iter(0..count)
        .map(|_| berth.create_expiring(image, TTL))
        .buffer_unordered(CREATE_CONCURRENCY)
        .try_collect()
        .await?;
    eprintln!(
        "expiry: created; waiting for berth to end them (at most {} s)",
        GIVE_UP.as_secs()
    );
    let lateness = wait_expired(berth, &ids).await?;

    let early: Vec<String> = lateness
        .iter()
        .filter(|(_, nanos)| *nanos < 0)
        .map(|(id, nanos)| format!("{id}: {:.3} ms before its deadline", -*nanos as f64 / 1e6))
        .collect();
    if !early.is_empty() {
        bail!(
            "{} of {count} sandboxes ended before their expires_at, which an expiry must never do:\n{}",
            early.len(),
            early.join("\n")
        );
    }
    // `ended_at` is stamped after the engine removed the container; this checks the figure means
    // what it says, gone, and not merely marked so.
    for (id, _) in &lateness {
        let left = engine.ids_with_label(&format!("berth.sandbox={id}")).await?;
        if !left.is_empty() {
            bail!("sandbox {id} ended by expiry, but its containers {left:?} are still on the engine");
        }
    }

    let samples: Vec<Duration> = lateness
        .iter()
        .map(|(_, nanos)| Duration::from_nanos(u64::try_from(*nanos).unwrap_or_default()))
        .collect();
    let (latest, latest_nanos) = lateness
        .iter()
        .max_by_key(|(_, nanos)| *nanos)
        .context("no sandbox was created")?;
    let earliest_nanos = lateness.iter().map(|(_, nanos)| *nanos).min().unwrap_or_default();
    let p50 = percentile_ms(&samples, 0.50);
    let p99 = percentile_ms(&samples, 0.99);
    let (earliest, max) = (earliest_nanos as f64 / 1e6, *latest_nanos as f64 / 1e6);
    eprintln!("expiry: all {count} ended by expiry; lateness p50 {p50:.1} ms, max {max:.1} ms");
    Ok(vec![
        Figure {
            name: "expiry lateness p50".to_owned(),
            value: p50,
            unit: "ms",
            bound: Bound::AtMost(PROMISE_MS),
            details: format!(
                "p99 {p99:.1} ms, min {earliest:.1} ms: ended_at - expires_at of {count} sandboxes (ttl {TTL}, created {CREATE_CONCURRENCY} at a time)"
            ),
        },
        Figure {
            name: "expiry lateness max".to_owned(),
            value: max,
            unit: "ms",
            bound: Bound::AtMost(PROMISE_MS),
            details: format!("sandbox {latest}; the promise: gone within 1 s of the deadline, every one"),
        },
    ])
}

/// Gets every sandbox in rounds until each has ended by expiry; each id with its lateness
/// (`ended_at - expires_at`) in nanoseconds. Fails on any other ending, and after [`GIVE_UP`]
/// naming the sandboxes still not ended.
async fn wait_expired(berth: &Berth, ids: &[String]) -> Result<Vec<(String, i128)>> {
    let start = Instant::now();
    let mut pending: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut ended = Vec::with_capacity(ids.len());
    loop {
        let mut still_pending = Vec::new();
        for id in pending {
            let view: Value = serde_json::from_slice(&berth.get(id).await?)?;
            match expiry_lateness(id, &view)? {
                Some(nanos) => ended.push((id.to_owned(), nanos)),
                None => still_pending.push((id, view["status"].as_str().unwrap_or("?").to_owned())),
            }
        }
        if still_pending.is_empty() {
            return Ok(ended);
        }
        if start.elapsed() > GIVE_UP {
            let named: Vec<String> = still_pending
                .iter()
                .map(|(id, status)| format!("sandbox {id} is still {status}"))
                .collect();
            bail!(
                "{} of {} sandboxes with ttl {TTL} had not ended {} s after the last create:\n{}",
                named.len(),
                ids.len(),
                GIVE_UP.as_secs(),
                named.join("\n")
            );
        }
        pending = still_pending.into_iter().map(|(id, _)| id).collect();
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// `None` while the sandbox has not ended; its lateness in nanoseconds once it is `Terminated`
/// with reason `expired`; an error for any other ending, which would mean something but the
/// expiry timer ended it.
fn expiry_lateness(id: &str, view: &Value) -> Result<Option<i128>> {
    let status = view["status"].as_str().unwrap_or_default();
    if !matches!(status, "Terminated" | "Failed") {
        return Ok(None);
    }
    let reason = view["status_reason"].as_str();
    if status != "Terminated" || reason != Some("expired") {
        bail!(
            "sandbox {id} ended {status} with reason {reason:?} (message {:?}), not Terminated by expiry",
            view["status_message"].as_str().unwrap_or_default()
        );
    }
    let instant = |field: &str| {
        let text = view[field]
            .as_str()
            .with_context(|| format!("sandbox {id} ended without {field}"))?;
        unix_nanos(text).with_context(|| format!("sandbox {id} has {field} {text:?}, which is not RFC 3339"))
    };
    Ok(Some(instant("ended_at")? - instant("expires_at")?))
}

/// Nanoseconds since the Unix epoch of an RFC 3339 timestamp; `None` if it is not one.
fn unix_nanos(text: &str) -> Option<i128> {
    let instant = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    Some(i128::from(instant.timestamp()) * 1_000_000_000 + i128::from(instant.timestamp_subsec_nanos()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SECOND: i128 = 1_000_000_000;

    #[test]
    fn reads_rfc3339_as_berth_writes_it() {
        assert_eq!(
            unix_nanos("2026-12-07T10:00:03.123456789Z"),
            Some(1_796_637_603 * SECOND + 123_456_789)
        );
        assert_eq!(unix_nanos("2026-12-07T11:30:03+01:30"), Some(1_796_637_603 * SECOND));
        assert_eq!(unix_nanos("2026-12-07"), None);
    }

    #[test]
    fn lateness_counts_only_an_ending_by_expiry() {
        let running = json!({ "status": "Running", "expires_at": "2026-12-07T10:00:03Z", "ended_at": null });
        assert_eq!(expiry_lateness("a", &running).unwrap(), None);
        let expired = json!({
            "status": "Terminated",
            "status_reason": "expired",
            "expires_at": "2026-12-07T10:00:03Z",
            "ended_at": "2026-12-07T10:00:03.25Z",
        });
        assert_eq!(expiry_lateness("a", &expired).unwrap(), Some(SECOND / 4));
        let early = json!({
            "status": "Terminated",
            "status_reason": "expired",
            "expires_at": "2026-12-07T10:00:03Z",
            "ended_at": "2026-12-07T10:00:02.5Z",
        });
        assert_eq!(expiry_lateness("a", &early).unwrap(), Some(-SECOND / 2));
        let deleted = json!({ "status": "Terminated", "status_reason": "deleted" });
        let error = expiry_lateness("a", &deleted).unwrap_err().to_string();
        assert!(error.contains("sandbox a") && error.contains("deleted"), "{error}");
        let failed = json!({ "status": "Failed", "status_reason": "container_lost" });
        assert!(expiry_lateness("a", &failed).is_err());
    }
}
