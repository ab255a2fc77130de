//! Several berth processes sharing one PostgreSQL store: all serve the API, one leads, and when
//! the leader is killed another takes over and every sandbox still expires exactly once; reads
//! follow writes from one process to another, and a renewal racing the expiry either wins or is
//! refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::process::Command;
use std::time::{Duration, Instant};

use berth_client::CreateOptions;
use berth_e2e::{ServerOptions, TestServer, docker_inspect, eventually, sleeper, unique};
use futures::StreamExt;
use serde_json::Value;

/// A throwaway database on the test PostgreSQL, dropped with the guard.
struct Database {
    admin_url: String,
    name: String,
    url: String,
}

impl Database {
    fn create() -> Database {
        let admin_url = std::env::var("BERTH_TEST_DATABASE_URL").expect(
            "BERTH_TEST_DATABASE_URL is not set: run `export BERTH_TEST_DATABASE_URL=$(scripts/ensure-postgres.sh)` \
             (scripts/test does)",
        );
        let name = unique("berth_e2e").replace('-', "_");
        psql(&admin_url, &format!("CREATE DATABASE {name}"));
        let base = admin_url
            .rsplit_once('/')
            .map(|(base, _)| base)
            .expect("a URL with a database path");
        Database {
            url: format!("{base}/{name}"),
            admin_url,
            name,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                &self.admin_url,
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

fn psql(url: &str, sql: &str) {
    let output = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qc", sql])
        .output()
        .expect("psql runs (scripts/ensure-postgres.sh installs it)");
    assert!(
        output.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn replica(database: &Database, cluster: &str) -> TestServer {
    TestServer::start_with(ServerOptions {
        cluster: Some(cluster.to_owned()),
        args: vec![
            "--database-url".into(),
            database.url.clone(),
            "--resync-interval".into(),
            "2s".into(),
        ],
        ..Default::default()
    })
    .await
    .unwrap()
}

async fn health(server: &TestServer) -> Option<Value> {
    server
        .http()
        .get(format!("{}/health", server.url))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

async fn is_leader(server: &TestServer) -> bool {
    health(server).await.is_some_and(|health| health["leader"] == true)
}

fn short_lived(ttl: &str) -> berth_api::SandboxRequest {
    let mut request = sleeper();
    request.ttl = Some(berth_api::NumberOrString::String(ttl.into()));
    request
}

/// How many times any of the logs says the sandbox ended.
fn endings(logs: &[String], id: &str) -> usize {
    logs.iter()
        .flat_map(|log| log.lines())
        .filter(|line| line.contains(id) && line.contains("sandbox ended"))
        .count()
}

#[tokio::test]
async fn a_killed_leader_is_replaced_and_every_sandbox_still_expires_once() {
    let database = Database::create();
    let cluster = unique("ha");
    let mut first = replica(&database, &cluster).await;
    eventually(Duration::from_secs(10), || async {
        is_leader(&first).await.then_some(())
    })
    .await
    .expect("the first process leads");
    let mut second = replica(&database, &cluster).await;
    // Keys live in the shared store: the first process made the admin key.
    second.admin_key = first.admin_key.clone();
    let second_health = health(&second).await.expect("the second process answers");
    assert_eq!(second_health["leader"], false, "{second_health}");
    assert_eq!(
        second_health["store"].as_str().unwrap().split(' ').next(),
        Some("postgres")
    );
    assert!(
        !second_health.to_string().contains("@"),
        "no credentials in /health: {second_health}"
    );

    // Every process serves the API, and sees what the others wrote.
    let on_follower = second
        .client()
        .create(&short_lived("12s"), CreateOptions::default())
        .await
        .unwrap();
    let on_leader = first
        .client()
        .create(&short_lived("12s"), CreateOptions::default())
        .await
        .unwrap();
    let long_lived = second
        .client()
        .create(&short_lived("10m"), CreateOptions::default())
        .await
        .unwrap();
    for sandbox in [&on_follower, &on_leader, &long_lived] {
        assert_eq!(sandbox.status, "Running");
    }
    let seen = eventually(Duration::from_secs(5), || async {
        second.client().get(&on_leader.id).await.ok()
    })
    .await;
    assert!(seen.is_some(), "the follower never saw the leader's sandbox");

    first.kill9();
    let killed = Instant::now();
    eventually(Duration::from_secs(20), || async {
        is_leader(&second).await.then_some(())
    })
    .await
    .expect("the second process took over");
    let takeover = killed.elapsed();
    eprintln!("the follower led {takeover:?} after the leader was killed");
    assert!(takeover < Duration::from_secs(10), "takeover took {takeover:?}");

    // Both short-lived sandboxes expire under the new leader, their containers gone.
    for sandbox in [&on_follower, &on_leader] {
        let ended = eventually(Duration::from_secs(40), || async {
            let view = second.client().get(&sandbox.id).await.ok()?;
            (view.status == "Terminated").then_some(view)
        })
        .await
        .unwrap_or_else(|| panic!("{} never expired", sandbox.id));
        assert_eq!(ended.status_reason.as_deref(), Some("expired"), "{ended:?}");
        let container = sandbox.container_id.as_deref().unwrap();
        let gone = eventually(Duration::from_secs(10), || async {
            docker_inspect(container).is_none().then_some(())
        })
        .await;
        assert!(
            gone.is_some(),
            "container {container} of an expired sandbox is still there"
        );
    }
    // Nothing lost: the long-lived one is untouched.
    let kept = second.client().get(&long_lived.id).await.unwrap();
    assert_eq!(kept.status, "Running");
    assert_eq!(
        docker_inspect(long_lived.container_id.as_deref().unwrap()).unwrap()["State"]["Running"],
        true
    );

    // A restarted process joins as a follower and reads the same records.
    let mut third = replica(&database, &cluster).await;
    third.admin_key = second.admin_key.clone();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!is_leader(&third).await, "two leaders at once");
    assert!(is_leader(&second).await);
    assert_eq!(third.client().get(&on_follower.id).await.unwrap().status, "Terminated");

    // Nothing done twice: each expiry was carried out by one process.
    let logs = [first.log(), second.log(), third.log()];
    for sandbox in [&on_follower, &on_leader] {
        assert_eq!(endings(&logs, &sandbox.id), 1, "{} ended more than once", sandbox.id);
    }
}

/// Two processes on one PostgreSQL: a key revoked (or expired) through one stops working on
/// the other within a second; 100 concurrent creates of one owner spread over both, against a
/// quota of 10 sandboxes, give exactly 10.
#[tokio::test]
async fn keys_and_quotas_hold_across_two_processes_sharing_postgres() {
    let database = Database::create();
    let cluster = unique("keys");
    let first = replica(&database, &cluster).await;
    let mut second = replica(&database, &cluster).await;
    second.admin_key = first.admin_key.clone();

    let key = first.key_for("team-x", "member").await;
    let on_second = second.client_as(Some(&key));
    assert_eq!(
        on_second.whoami().await.unwrap().owner,
        "team-x",
        "a key made on one works on the other"
    );
    let id = first
        .client()
        .list_keys()
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|listed| listed.owner == "team-x")
        .unwrap()
        .id;
    first.client().revoke_key(&id).await.unwrap();
    let revoked_at = std::time::Instant::now();
    let refused = eventually(Duration::from_secs(5), || async { on_second.whoami().await.err() })
        .await
        .expect("the other process refuses the revoked key");
    let took = revoked_at.elapsed();
    assert!(refused.to_string().contains("revoked"), "{refused}");
    assert!(
        took < Duration::from_secs(1),
        "the revocation took {took:?} to reach the other process"
    );

    let key = first.key_for("team-y", "member").await;
    first.limit_sandboxes("team-y", 10).await;
    let mut creates = Vec::new();
    for task in 0..100 {
        let server = if task % 2 == 0 { &first } else { &second };
        let client = berth_e2e::api::http_as(Some(&key));
        let url = format!("{}/v1/sandboxes?wait=false", server.url);
        creates.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&sleeper())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for create in creates {
        statuses.push(create.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|status| **status == 202).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|status| **status == 429).count(),
        90,
        "{statuses:?}"
    );
}

/// Sandboxes each test of read-your-writes makes, and how many go at once.
const FOLLOWED_WRITES: usize = 200;
const FOLLOWED_WRITES_AT_ONCE: usize = 4;

/// What one process answered for a sandbox the other had just created (or deleted): the gets
/// of B right after A's answers, and, for every tenth, an exec and a renewal through B.
async fn read_right_after(
    writer: &berth_client::BerthClient,
    reader_server: &TestServer,
    index: usize,
) -> Result<String, String> {
    let reader = reader_server.client();
    let created = writer
        .create(&short_lived("10m"), CreateOptions::default())
        .await
        .map_err(|error| format!("create {index}: {error}"))?;
    let seen = reader
        .get(&created.id)
        .await
        .map_err(|error| format!("get of {} right after its create: {error}", created.id))?;
    if seen.status != "Running" {
        return Err(format!(
            "{} was {} on the other process right after its create",
            created.id, seen.status
        ));
    }
    if index.is_multiple_of(10) {
        let (status, body) = berth_e2e::api::post(
            reader_server,
            &format!("/v1/sandboxes/{}/exec", created.id),
            serde_json::json!({ "cmd": ["echo", "here"] }),
        )
        .await;
        if status != 200 || body["stdout"] != "here\n" {
            return Err(format!(
                "exec on {} right after its create: {status} {body}",
                created.id
            ));
        }
        let (status, body) = berth_e2e::api::post(
            reader_server,
            &format!("/v1/sandboxes/{}/ttl", created.id),
            serde_json::json!({ "ttl": "20m" }),
        )
        .await;
        if status != 200 {
            return Err(format!(
                "renewal of {} right after its create: {status} {body}",
                created.id
            ));
        }
    }
    Ok(created.id)
}

/// Through two processes sharing PostgreSQL: every sandbox created through one is found by the
/// other the moment the create has answered (get, exec, renew), and none is `Running` there once
/// its delete has answered; lists follow soon after.
#[tokio::test(flavor = "multi_thread")]
async fn reads_on_one_process_follow_writes_answered_by_another() {
    let database = Database::create();
    let cluster = unique("ryw");
    let writer_server = replica(&database, &cluster).await;
    let mut reader_server = replica(&database, &cluster).await;
    reader_server.admin_key = writer_server.admin_key.clone();
    let writer = writer_server.client();

    let mut ids = Vec::new();
    let mut failures = Vec::new();
    let outcomes: Vec<_> = futures::stream::iter(0..FOLLOWED_WRITES)
        .map(|index| read_right_after(&writer, &reader_server, index))
        .buffer_unordered(FOLLOWED_WRITES_AT_ONCE)
        .collect()
        .await;
    for outcome in outcomes {
        match outcome {
            Ok(id) => ids.push(id),
            Err(failure) => failures.push(failure),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {FOLLOWED_WRITES} reads missed a write answered a moment before:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The reader's lists take the writes promptly (announced by the store, not only polled).
    let listed = eventually(Duration::from_secs(5), || async {
        let query = berth_client::ListQuery::default();
        let listed = reader_server.client().list_all(&query).await.ok()?;
        (listed.iter().filter(|sandbox| ids.contains(&sandbox.id)).count() == ids.len()).then_some(())
    })
    .await;
    assert!(listed.is_some(), "the reader's list does not show every sandbox");

    let reader = reader_server.client();
    let deletes: Vec<_> = futures::stream::iter(ids.iter().enumerate())
        .map(|(index, id)| {
            let (writer, reader) = (&writer, &reader);
            async move {
                // Half wait for the removal, half are answered as soon as they are marked.
                if index.is_multiple_of(2) {
                    writer
                        .delete(id)
                        .await
                        .map_err(|error| format!("delete {id}: {error}"))?;
                } else {
                    writer
                        .delete_in_background(id)
                        .await
                        .map_err(|error| format!("delete {id}: {error}"))?;
                }
                let seen = reader
                    .get(id)
                    .await
                    .map_err(|error| format!("get {id} after its delete: {error}"))?;
                match seen.status.as_str() {
                    "Running" | "Paused" | "Creating" | "Pending" => Err(format!(
                        "{id} was {} on the other process after its delete",
                        seen.status
                    )),
                    _ => Ok(()),
                }
            }
        })
        .buffer_unordered(FOLLOWED_WRITES_AT_ONCE)
        .collect()
        .await;
    let failures: Vec<String> = deletes.into_iter().filter_map(Result::err).collect();
    assert!(
        failures.is_empty(),
        "{} of {} reads missed a delete answered a moment before:\n{}",
        failures.len(),
        ids.len(),
        failures.join("\n")
    );
}

/// Sandboxes of the renewal race; when each one's stream of renewals starts, relative to its
/// deadline (spread over the range, so that some streams meet the leader's decision); how long
/// a stream lasts.
const RACED_SANDBOXES: i64 = 24;
const RACE_START_MS: (i64, i64) = (-80, 60);
const RACE_STREAM: Duration = Duration::from_millis(400);

/// What one stream of back-to-back renewals of one sandbox was answered, in order.
async fn renew_back_to_back(http: &reqwest::Client, url: &str, start_at: chrono::DateTime<chrono::Utc>) -> Vec<u16> {
    tokio::time::sleep((start_at - chrono::Utc::now()).to_std().unwrap_or_default()).await;
    let started = Instant::now();
    let mut answers = Vec::new();
    while started.elapsed() < RACE_STREAM {
        let response = http
            .post(url)
            .json(&serde_json::json!({ "ttl": "60s" }))
            .send()
            .await
            .expect("the server answers");
        answers.push(response.status().as_u16());
        if answers.last() != Some(&200) {
            break;
        }
    }
    answers
}

/// Renewals through one process streamed across the instant the leader (another process)
/// expires the sandbox: one of the two wins, whole. Once a renewal has answered 200, the sandbox
/// is never removed for its old deadline (every later renewal answers 200 and it keeps running);
/// a renewal that lost says so (409) and the sandbox ends by expiry.
#[tokio::test(flavor = "multi_thread")]
async fn renewals_racing_the_expiry_on_another_process_either_win_or_are_refused() {
    let database = Database::create();
    let cluster = unique("race");
    let leader = replica(&database, &cluster).await;
    eventually(Duration::from_secs(10), || async {
        is_leader(&leader).await.then_some(())
    })
    .await
    .expect("the first process leads");
    let mut follower = replica(&database, &cluster).await;
    follower.admin_key = leader.admin_key.clone();

    let writer = leader.client();
    let created: Vec<_> = futures::stream::iter(0..RACED_SANDBOXES)
        .map(|_| {
            let writer = &writer;
            async move {
                writer
                    .create(&short_lived("5s"), CreateOptions::default())
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;

    let http = berth_e2e::http_as(follower.admin_key.as_deref());
    let streams: Vec<_> = created
        .iter()
        .enumerate()
        .map(|(index, sandbox)| {
            let (from, to) = RACE_START_MS;
            let offset_ms = from + ((to - from) * index as i64) / (RACED_SANDBOXES - 1);
            let start_at = sandbox.expires_at + chrono::Duration::milliseconds(offset_ms);
            let url = format!("{}/v1/sandboxes/{}/ttl", follower.url, sandbox.id);
            let (http, id) = (&http, sandbox.id.clone());
            async move { (id, offset_ms, renew_back_to_back(http, &url, start_at).await) }
        })
        .collect();
    let outcomes = futures::future::join_all(streams).await;

    // Let the leader act on whatever it decided (removals take a moment on a busy engine).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let reader = leader.client();
    let (mut renewed, mut refused, mut failures) = (0, 0, Vec::new());
    for (id, offset_ms, answers) in outcomes {
        let won = answers.iter().take_while(|&&status| status == 200).count();
        let view = reader.get(&id).await.unwrap();
        if won == answers.len() {
            renewed += 1;
            let container = view.container_id.as_deref().unwrap_or_default();
            let running = docker_inspect(container).is_some_and(|c| c["State"]["Running"] == true);
            if view.status != "Running" || !running {
                failures.push(format!(
                    "{id}: {won} renewals from {offset_ms:+} ms answered 200, yet it is {} ({:?}; container running: {running})",
                    view.status, view.status_reason
                ));
            }
        } else if won > 0 {
            failures.push(format!(
                "{id}: {won} renewals from {offset_ms:+} ms answered 200, then {:?}: a renewal was undone",
                &answers[won..]
            ));
        } else if answers[0] == 409 {
            refused += 1;
            let ended = eventually(Duration::from_secs(20), || async {
                reader.get(&id).await.ok().filter(|view| view.status == "Terminated")
            })
            .await;
            if ended.as_ref().and_then(|view| view.status_reason.as_deref()) != Some("expired") {
                failures.push(format!(
                    "{id}: its renewal was refused, yet it did not end by expiry: {ended:?}"
                ));
            }
        } else {
            failures.push(format!("{id}: renewal from {offset_ms:+} ms answered {answers:?}"));
        }
    }
    eprintln!("renewal streams at the deadline: {renewed} kept the sandbox, {refused} lost to the expiry");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for sandbox in &created {
        let _ = reader.delete(&sandbox.id).await;
    }
}

#[tokio::test]
async fn a_client_of_one_process_sees_the_events_of_sandboxes_changed_through_another() {
    let database = Database::create();
    let cluster = unique("events");
    let writer_server = replica(&database, &cluster).await;
    let mut reader_server = replica(&database, &cluster).await;
    reader_server.admin_key = writer_server.admin_key.clone();
    let mut events = berth_e2e::EventStream::open(&reader_server, "", None, false, None).await;

    let writer = writer_server.client();
    let sandbox = writer.create(&sleeper(), CreateOptions::default()).await.unwrap();
    let id = sandbox.id.clone();
    let of_it = |seen: &[Value]| -> Vec<String> {
        seen.iter()
            .filter(|event| event["sandbox_id"] == id.as_str())
            .map(|event| event["type"].as_str().unwrap().to_owned())
            .collect()
    };
    let running = events
        .until(Duration::from_secs(30), |event| {
            event["sandbox_id"] == id.as_str() && event["status"] == "Running"
        })
        .await;
    assert_eq!(
        of_it(&running).first().map(String::as_str),
        Some("sandbox.created"),
        "{running:?}"
    );
    // Each change is waited for on the reader before the next is made: a change that another
    // process overwrites before this one has read it reaches its clients merged into the later
    // one (the README says so); one at a time, each is its own event.
    writer
        .renew_ttl(&id, berth_api::NumberOrString::String("30m".into()))
        .await
        .unwrap();
    let renewed = events
        .until(Duration::from_secs(30), |event| {
            event["sandbox_id"] == id.as_str() && event["type"] == "sandbox.renewed"
        })
        .await;
    assert_eq!(
        of_it(&renewed).last().map(String::as_str),
        Some("sandbox.renewed"),
        "{renewed:?}"
    );
    writer.delete(&id).await.unwrap();
    let deleted = events
        .until(Duration::from_secs(30), |event| {
            event["sandbox_id"] == id.as_str() && event["type"] == "sandbox.deleted"
        })
        .await;
    assert_eq!(
        of_it(&deleted).last().map(String::as_str),
        Some("sandbox.deleted"),
        "{deleted:?}"
    );
    let ids: Vec<u64> = running
        .iter()
        .chain(&renewed)
        .chain(&deleted)
        .map(|event| event["id"].as_u64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
}
