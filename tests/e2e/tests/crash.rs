//! Crash safety under load: bursts of creates cut by `kill -9` at points spread over the burst,
//! each followed by a restart on the same data directory and one resync, after which records and
//! engine agree exactly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use berth_client::{BerthClient, CreateOptions, ListQuery};
use berth_e2e::{ServerOptions, TestServer, docker, eventually, sleeper};

/// Creates sent at once in each round.
const BURST: usize = 40;
/// How long after the burst starts each round's server is killed: before the first create can
/// reach the engine, in the middle of the burst, and after most have started.
const KILL_POINTS: [Duration; 5] = [
    Duration::from_millis(40),
    Duration::from_millis(150),
    Duration::from_millis(400),
    Duration::from_millis(900),
    Duration::from_millis(2000),
];
const RESYNC: &str = "2s";

/// What the engine holds for one cluster: sandbox id → (container id, whether it runs).
fn engine_view(cluster: &str) -> BTreeMap<String, (String, bool)> {
    let out = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=berth.cluster={cluster}"),
        "--filter",
        "label=berth.managed=true",
        "--format",
        "{{.ID}} {{.State}} {{.Label \"berth.sandbox\"}}",
    ])
    .unwrap_or_default();
    out.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (container, state, sandbox) = (fields.next()?, fields.next()?, fields.next()?);
            Some((sandbox.to_owned(), (container.to_owned(), state == "running")))
        })
        .collect()
}

/// Every way records and engine disagree, in words; empty when they agree.
async fn disagreements(client: &BerthClient, cluster: &str, answered: &BTreeSet<String>) -> Vec<String> {
    let records = match client
        .list_all(&ListQuery {
            all: true,
            ..Default::default()
        })
        .await
    {
        Ok(records) => records,
        Err(error) => return vec![format!("cannot list: {error}")],
    };
    let engine = engine_view(cluster);
    let mut problems = Vec::new();
    let live: BTreeMap<_, _> = records
        .iter()
        .filter(|record| !matches!(record.status.as_str(), "Terminated" | "Failed"))
        .map(|record| (record.id.clone(), record))
        .collect();
    for (id, record) in &live {
        match (record.status.as_str(), engine.get(id)) {
            ("Running", Some((container, true)))
                if record
                    .container_id
                    .as_deref()
                    .is_some_and(|c| c.starts_with(container.as_str())) => {}
            (status, found) => problems.push(format!("record {id} is {status} over container {found:?}")),
        }
    }
    for (sandbox, (container, _)) in &engine {
        if !live.contains_key(sandbox) {
            problems.push(format!("container {container} of {sandbox} has no live record"));
        }
    }
    for id in answered {
        if live.get(id).is_none_or(|record| record.status != "Running") {
            let found = records
                .iter()
                .find(|record| &record.id == id)
                .map(|record| &record.status);
            problems.push(format!("{id} answered 201 and is now {found:?}"));
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread")]
async fn bursts_cut_by_kill_9_leave_records_and_engine_in_agreement() {
    let data_dir = tempfile::tempdir().unwrap();
    let cluster = berth_e2e::unique("crash");
    let start = || {
        TestServer::start_with(ServerOptions {
            data_dir: Some(data_dir.path().to_path_buf()),
            cluster: Some(cluster.clone()),
            args: vec!["--resync-interval".into(), RESYNC.into()],
        })
    };
    let mut server = start().await.unwrap();
    let mut answered = BTreeSet::new();
    let mut failures = Vec::new();
    for (round, kill_after) in KILL_POINTS.iter().enumerate() {
        let client = server.client();
        let creates: Vec<_> = (0..BURST)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { client.create(&sleeper(), CreateOptions::default()).await })
            })
            .collect();
        tokio::time::sleep(*kill_after).await;
        server.crash();
        let mut created_this_round = 0;
        for create in creates {
            if let Ok(Ok(sandbox)) = create.await {
                answered.insert(sandbox.id);
                created_this_round += 1;
            }
        }
        server = start().await.unwrap();
        let client = server.client();
        // The first resync runs at start and takes each record in turn (starting the containers
        // a kill left unstarted one by one: under the full suite a start can take a second or
        // more, and a burst leaves up to 40): allow it, the next one, and the removals they start.
        let agreed = eventually(Duration::from_secs(60), || async {
            disagreements(&client, &cluster, &answered)
                .await
                .is_empty()
                .then_some(())
        })
        .await;
        if agreed.is_none() {
            let problems = disagreements(&client, &cluster, &answered).await;
            failures.push(format!(
                "round {round} (kill after {kill_after:?}, {created_this_round} answered 201): {} disagreement(s):\n    {}",
                problems.len(),
                problems.join("\n    ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every sandbox of the rounds is still manageable.
    let client = server.client();
    for id in &answered {
        client.delete(id).await.unwrap();
    }
    berth_e2e::remove_cluster_containers(&cluster);
}
