//! Wake from an idle pause: sandboxes with a 1 s `idle_timeout` are left until berth pauses them,
//! then one `echo hi` exec each; its time against the same exec on an awake sandbox, measured in
//! the same run. The target ([L1]): wake from pause p50 ≤ 20 ms, the difference between the two.
//! Wake from hibernation the same way: a sandbox with a 1 s `hibernate_after` left until berth
//! has stopped it, then the exec that starts it again (reported, no target).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::berth::Berth;
use crate::report::{Bound, Figure, percentile_ms};

/// How long berth waits before it pauses an idle sandbox here.
const IDLE_TIMEOUT: &str = "1s";
/// How long a sandbox may take to be paused before the part fails.
const GIVE_UP: Duration = Duration::from_secs(30);
/// "Wake from pause p50 ≤ 20 ms" (the lifecycle issue's target).
const TARGET_MS: f64 = 20.0;
/// Longer than berth's grace for a hibernating sandbox's main process, so each exec finds the
/// container stopped rather than waits for the stop to finish.
const STOPPED_AFTER: Duration = Duration::from_millis(3500);

pub async fn run(berth: &Berth, image: &str, rounds: usize, hibernations: usize) -> Result<Vec<Figure>> {
    let mut figures = vec![from_pause(berth, image, rounds).await?];
    if hibernations > 0 {
        figures.push(from_hibernation(berth, image, hibernations).await?);
    }
    Ok(figures)
}

async fn from_hibernation(berth: &Berth, image: &str, rounds: usize) -> Result<Figure> {
    let sleeper = berth
        .create_with(&json!({
            "image": image,
            "command": ["sleep", "3600"],
            "idle_timeout": IDLE_TIMEOUT,
            "hibernate_after": IDLE_TIMEOUT,
        }))
        .await?;
    eprintln!("wake: {rounds} rounds of: wait for the hibernation, exec `echo hi`");
    let mut woken = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        wait_for(berth, &sleeper, "Hibernated").await?;
        tokio::time::sleep(STOPPED_AFTER).await;
        let started = Instant::now();
        check(&berth.exec(&sleeper, &["echo", "hi"]).await?)?;
        woken.push(started.elapsed());
    }
    berth.delete(&sleeper).await?;
    let (p50, p99) = (percentile_ms(&woken, 0.50), percentile_ms(&woken, 0.99));
    eprintln!("wake: exec on a hibernated sandbox p50 {p50:.1} ms, p99 {p99:.1} ms");
    Ok(Figure {
        name: "wake from hibernation p50".to_owned(),
        value: p50,
        unit: "ms",
        bound: Bound::Measured,
        details: format!("exec echo hi that starts the stopped container: p99 {p99:.1} ms, {rounds} rounds"),
    })
}

async fn from_pause(berth: &Berth, image: &str, rounds: usize) -> Result<Figure> {
    let sleeper = berth
        .create_with(&json!({"image": image, "command": ["sleep", "3600"], "idle_timeout": IDLE_TIMEOUT}))
        .await?;
    let awake = berth
        .create_with(&json!({"image": image, "command": ["sleep", "3600"]}))
        .await?;
    eprintln!("wake: {rounds} rounds of: wait for the idle pause, exec `echo hi` (and one on an awake sandbox)");
    let mut woken = Vec::with_capacity(rounds);
    let mut plain = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        wait_for(berth, &sleeper, "Paused").await?;
        let started = Instant::now();
        check(&berth.exec(&sleeper, &["echo", "hi"]).await?)?;
        woken.push(started.elapsed());
        let started = Instant::now();
        check(&berth.exec(&awake, &["echo", "hi"]).await?)?;
        plain.push(started.elapsed());
    }
    berth.delete(&sleeper).await?;
    berth.delete(&awake).await?;
    let (woken_p50, woken_p99) = (percentile_ms(&woken, 0.50), percentile_ms(&woken, 0.99));
    let (plain_p50, plain_p99) = (percentile_ms(&plain, 0.50), percentile_ms(&plain, 0.99));
    let wake = (woken_p50 - plain_p50).max(0.0);
    eprintln!("wake: exec on a sleeping sandbox p50 {woken_p50:.1} ms, on an awake one {plain_p50:.1} ms");
    Ok(Figure {
        name: "wake from idle pause p50".to_owned(),
        value: wake,
        unit: "ms",
        bound: Bound::AtMost(TARGET_MS),
        details: format!(
            "exec echo hi: woken p50 {woken_p50:.1} / p99 {woken_p99:.1} ms, awake p50 {plain_p50:.1} / p99 {plain_p99:.1} ms, {rounds} rounds"
        ),
    })
}

/// Until sandbox `id` is in `status` for being idle.
async fn wait_for(berth: &Berth, id: &str, status: &str) -> Result<()> {
    let started = Instant::now();
    loop {
        let view: Value = serde_json::from_slice(&berth.get(id).await?)?;
        if view["status"] == status && view["status_reason"] == "idle" {
            return Ok(());
        }
        if started.elapsed() > GIVE_UP {
            bail!(
                "sandbox {id} was not {status} for being idle within {} s: {view}",
                GIVE_UP.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn check(result: &Value) -> Result<()> {
    if result["exit_code"] != 0 || result["stdout"] != "hi\n" {
        bail!("exec echo hi answered {result}");
    }
    Ok(())
}
