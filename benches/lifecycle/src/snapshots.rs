//! Snapshots and forks ([L1]): the time to snapshot a sandbox holding 16 MiB of its own files,
//! a create from that snapshot against a cold create from the image in the same rounds, and a
//! fork into 8 children (wall time until every child runs) against one cold create. The target:
//! a fork of 8 takes at most 2× one cold create.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::berth::Berth;
use crate::report::{Bound, Figure, percentile_ms};

/// Children per fork, as the issue measures it.
const FORK_CHILDREN: u32 = 8;
/// "Fork of 8 ≤ 2× one cold create".
const FORK_TARGET_RATIO: f64 = 2.0;

pub async fn run(berth: &Berth, image: &str, rounds: usize, forks: usize) -> Result<Vec<Figure>> {
    let sleeper = json!({"image": image, "command": ["sleep", "3600"]});
    let parent = berth.create_with(&sleeper).await?;
    let filled = berth
        .exec(
            &parent,
            &[
                "sh",
                "-c",
                "dd if=/dev/urandom of=/state bs=1M count=16 2>/dev/null && echo ok",
            ],
        )
        .await?;
    if filled["stdout"] != "ok\n" {
        bail!("writing the parent's files answered {filled}");
    }
    eprintln!(
        "snapshots: {rounds} rounds of: snapshot, create from it, cold create; then {forks} forks of {FORK_CHILDREN}"
    );
    let mut snapshot_times = Vec::with_capacity(rounds);
    let mut from_snapshot = Vec::with_capacity(rounds);
    let mut cold = Vec::with_capacity(rounds);
    let mut sandboxes = Vec::new();
    let mut snapshots = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        let snapshot = berth
            .post(
                &format!("/v1/sandboxes/{parent}/snapshots"),
                &json!({}),
                StatusCode::CREATED,
            )
            .await?;
        snapshot_times.push(started.elapsed());
        let snapshot_id = id_of(&snapshot)?;
        snapshots.push(snapshot_id.clone());

        let started = Instant::now();
        let child = berth.create_with(&json!({"snapshot": snapshot_id})).await?;
        from_snapshot.push(started.elapsed());
        let size = berth.exec(&child, &["sh", "-c", "wc -c < /state"]).await?;
        if size["stdout"].as_str().map(str::trim) != Some("16777216") {
            bail!("the sandbox from snapshot {snapshot_id} does not have the parent's files: {size}");
        }
        sandboxes.push(child);

        let started = Instant::now();
        sandboxes.push(berth.create_with(&sleeper).await?);
        cold.push(started.elapsed());
    }

    let mut fork_times = Vec::with_capacity(forks);
    for _ in 0..forks {
        let started = Instant::now();
        let forked = berth
            .post(
                &format!("/v1/sandboxes/{parent}/fork"),
                &json!({"count": FORK_CHILDREN}),
                StatusCode::CREATED,
            )
            .await?;
        fork_times.push(started.elapsed());
        let children = forked["sandboxes"]
            .as_array()
            .context("a fork answered without sandboxes")?;
        if children.len() != FORK_CHILDREN as usize || children.iter().any(|child| child["status"] != "Running") {
            bail!("a fork of {FORK_CHILDREN} did not answer with {FORK_CHILDREN} running children: {forked}");
        }
        for child in children {
            sandboxes.push(id_of(child)?);
        }
        snapshots.push(id_of(&forked["snapshot"])?);
    }

    for sandbox in sandboxes.iter().chain([&parent]) {
        berth.delete(sandbox).await?;
    }
    for snapshot in &snapshots {
        berth.delete_snapshot(snapshot).await?;
    }
    Ok(figures(&snapshot_times, &from_snapshot, &cold, &fork_times))
}

fn id_of(value: &Value) -> Result<String> {
    Ok(value["id"].as_str().context("an answer without an id")?.to_owned())
}

fn figures(snapshot: &[Duration], from_snapshot: &[Duration], cold: &[Duration], fork: &[Duration]) -> Vec<Figure> {
    let p50 = |samples: &[Duration]| percentile_ms(samples, 0.50);
    let p99 = |samples: &[Duration]| percentile_ms(samples, 0.99);
    let cold_p50 = p50(cold);
    let mut figures = vec![
        Figure {
            name: "snapshot p50".to_owned(),
            value: p50(snapshot),
            unit: "ms",
            bound: Bound::Measured,
            details: format!(
                "16 MiB written in the sandbox; p99 {:.1} ms, {} rounds",
                p99(snapshot),
                snapshot.len()
            ),
        },
        Figure {
            name: "create from snapshot p50".to_owned(),
            value: p50(from_snapshot),
            unit: "ms",
            bound: Bound::Measured,
            details: format!(
                "p99 {:.1} ms; cold create from the image p50 {cold_p50:.1} / p99 {:.1} ms in the same rounds",
                p99(from_snapshot),
                p99(cold)
            ),
        },
    ];
    if !fork.is_empty() {
        let fork_p50 = p50(fork);
        figures.push(Figure {
            name: format!("fork of {FORK_CHILDREN} / cold create"),
            value: fork_p50 / cold_p50.max(f64::MIN_POSITIVE),
            unit: "x",
            bound: Bound::AtMost(FORK_TARGET_RATIO),
            details: format!(
                "fork of {FORK_CHILDREN} until all run p50 {fork_p50:.1} / p99 {:.1} ms over {} forks; cold create p50 {cold_p50:.1} ms",
                p99(fork),
                fork.len()
            ),
        });
    }
    figures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fork_figure_is_its_median_over_a_cold_creates() {
        let ms = |values: &[u64]| values.iter().map(|v| Duration::from_millis(*v)).collect::<Vec<_>>();
        let figures = figures(
            &ms(&[30, 40]),
            &ms(&[100, 120]),
            &ms(&[200, 220, 240]),
            &ms(&[300, 500, 700]),
        );
        let fork = figures.last().unwrap();
        assert_eq!(fork.value, 500.0 / 220.0);
        assert!(matches!(fork.bound, Bound::AtMost(limit) if limit == 2.0));
        assert_eq!(figures.len(), 3);
        assert_eq!(super::figures(&[], &[], &ms(&[1]), &[]).len(), 2);
    }
}
