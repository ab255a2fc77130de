//! The warm-pool benchmark: a template with a pool, waited on until full, then a burst of creates
//! from it at a fixed concurrency, each answer timed and sorted by the path it took (claimed from
//! the pool, or created cold because the pool was empty), each sandbox deleted again right after;
//! at the end the template goes and every container it made is waited out.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::{StreamExt, TryStreamExt, stream};

use crate::berth::Berth;
use crate::engine::Engine;
use crate::report::{Row, Target};
use crate::timing::timed;

/// How long the pool may take to fill, and its sandboxes to go after the template is deleted.
const SETTLE: Duration = Duration::from_secs(120);

/// What the burst looks like.
pub struct Burst {
    pub claims: usize,
    pub concurrency: usize,
    pub min_ready: usize,
}

/// Runs the burst against a fresh template named `bench-<run id>`; its rows. `cluster` is the
/// bench server's, whose containers are waited on.
pub async fn run(
    berth: &Berth,
    engine: &Engine,
    image: &str,
    run_id: &str,
    cluster: &str,
    burst: &Burst,
) -> Result<Vec<Row>> {
    let label = format!("berth.cluster={cluster}");
    // Other parts may have left sandboxes running: only the containers that appear from here on
    // are this part's to wait out.
    let before: HashSet<String> = engine.ids_with_label(&label).await?.into_iter().collect();
    let template = format!("bench-{run_id}");
    berth.create_template(&template, image, burst.min_ready).await?;
    let outcome = measure(berth, &template, burst).await;
    // Whatever happened, the template and all it made go before the next part runs.
    let removed = remove(berth, engine, &template, &label, &before).await;
    let rows = outcome?;
    removed?;
    Ok(rows)
}

async fn measure(berth: &Berth, template: &str, burst: &Burst) -> Result<Vec<Row>> {
    let Burst {
        claims,
        concurrency,
        min_ready,
    } = *burst;
    eprintln!("pools: template {template}, waiting for a full pool ({min_ready} ready, none refilling)");
    let filled = wait_full(berth, template, min_ready).await?;
    eprintln!(
        "pools: full after {:.1} s; {claims} creates from the template, {concurrency} at a time",
        filled.as_secs_f64()
    );
    let samples: Vec<(Duration, bool)> = stream::iter(0..claims)
        .map(|_| async move {
            let (elapsed, created) = timed(berth.create_from_template(template)).await;
            let (id, pooled) = created?;
            // Untimed, and the 202 form: the next create waits for this call only, not for the
            // container's removal, as a client that is done with a sandbox would.
            berth.delete_in_background(&id).await?;
            anyhow::Ok((elapsed, pooled))
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;

    let mut pooled = Row::new(
        "pooled create (claims)",
        Target::Percentiles {
            p50_ms: 15.0,
            p99_ms: 60.0,
        },
    );
    let mut cold = Row::new("template create (cold)", Target::Informative);
    let mut all = Row::new("template create (all)", Target::Informative);
    for (elapsed, from_pool) in samples {
        if from_pool {
            pooled.berth.push(elapsed);
        } else {
            cold.berth.push(elapsed);
        }
        all.berth.push(elapsed);
    }
    let share = format!("{}/{claims} from the pool", pooled.berth.len());
    eprintln!("pools: {share}");
    all.note = format!("{share}; pool of {min_ready} filled in {:.1} s", filled.as_secs_f64());
    cold.note = "the empty-pool fallback".to_owned();
    let mut rows = vec![pooled];
    if !cold.berth.is_empty() {
        rows.push(cold);
    }
    rows.push(all);
    Ok(rows)
}

/// Polls the template until its pool has `min_ready` ready and none refilling; how long it took.
async fn wait_full(berth: &Berth, template: &str, min_ready: usize) -> Result<Duration> {
    let start = Instant::now();
    loop {
        let view = berth.template(template).await?;
        let pool = &view["pool"];
        let (ready, refilling) = (pool["ready"].as_u64(), pool["refilling"].as_u64());
        if ready == Some(min_ready as u64) && refilling == Some(0) {
            return Ok(start.elapsed());
        }
        if let Some(error) = pool["error"].as_str().or(view["error"].as_str()) {
            bail!("the pool of template {template} cannot fill: {error}");
        }
        if start.elapsed() > SETTLE {
            bail!(
                "the pool of template {template} had {ready:?} ready and {refilling:?} refilling after {} s, expected {min_ready} and 0",
                SETTLE.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Deletes the template, then waits until every container of the cluster that was not there
/// `before` is gone: the claimed sandboxes (removed in the background) and the idle pool.
async fn remove(berth: &Berth, engine: &Engine, template: &str, label: &str, before: &HashSet<String>) -> Result<()> {
    berth.delete_template(template).await?;
    let start = Instant::now();
    let mut announced = false;
    loop {
        let left = engine
            .ids_with_label(label)
            .await?
            .into_iter()
            .filter(|id| !before.contains(id))
            .count();
        if left == 0 {
            eprintln!(
                "pools: template deleted, its sandboxes gone after {:.1} s",
                start.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if start.elapsed() > SETTLE {
            bail!(
                "{left} containers made during the pool benchmark were still there {} s after template {template} was deleted",
                SETTLE.as_secs()
            );
        }
        if !announced {
            eprintln!("pools: template deleted, waiting for {left} containers to go");
            announced = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
