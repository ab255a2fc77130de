//! `GET /v1/events` through the real server: one event per lifecycle change in order, filters,
//! owner scoping, SSE with ids and resumption by `Last-Event-ID`, and a resume point the server
//! cannot honour said plainly. (Events across processes sharing PostgreSQL: `replicas.rs`.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::time::Duration;

use berth_e2e::{EventStream, TEST_IMAGE, TestServer, unique};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

async fn create(server: &TestServer, key: Option<&str>, labels: Value) -> String {
    let response = berth_e2e::http_as(key.or(server.admin_key.as_deref()))
        .post(format!("{}/v1/sandboxes", server.url))
        .json(&json!({"image": TEST_IMAGE, "command": ["sleep", "600"], "labels": labels, "ttl": "10m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn types_of<'a>(events: &'a [Value], id: &str) -> Vec<&'a str> {
    events
        .iter()
        .filter(|event| event["sandbox_id"] == id)
        .map(|event| event["type"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn every_lifecycle_change_is_one_event_in_order_and_filters_hold() {
    let server = TestServer::start().await.unwrap();
    let run = unique("events");
    let mut watched = EventStream::open(&server, &format!("label=run={run}"), None, false, None).await;
    let mut deletions = EventStream::open(&server, "type=deleted,sandbox.expired", None, false, None).await;

    let id = create(&server, None, json!({"run": run})).await;
    let other = create(&server, None, json!({"run": "another"})).await;
    let client = server.client();
    client
        .renew_ttl(&id, berth_api::NumberOrString::String("20m".into()))
        .await
        .unwrap();
    client.pause(&id).await.unwrap();
    client.resume(&id).await.unwrap();
    client.delete(&id).await.unwrap();

    let events = watched
        .until(WAIT, |event| {
            event["sandbox_id"] == id && event["status"] == "Terminated"
        })
        .await;
    let types = types_of(&events, &id);
    assert_eq!(types.first(), Some(&"sandbox.created"), "{events:?}");
    let position = |kind: &str| {
        types
            .iter()
            .position(|t| *t == kind)
            .unwrap_or_else(|| panic!("no {kind}: {types:?}"))
    };
    assert!(position("sandbox.created") < position("sandbox.renewed"), "{types:?}");
    assert!(position("sandbox.renewed") < position("sandbox.paused"), "{types:?}");
    assert!(position("sandbox.paused") < position("sandbox.resumed"), "{types:?}");
    assert!(position("sandbox.resumed") < position("sandbox.deleted"), "{types:?}");
    // Ids increase; every event carries the sandbox's owner and labels; the other sandbox's
    // events (another label) never came.
    let ids: Vec<u64> = events.iter().map(|event| event["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    assert!(events.iter().all(|event| event["sandbox_id"] == id), "{events:?}");
    assert!(
        events
            .iter()
            .all(|event| event["owner"] == "admin" && event["labels"]["run"] == run)
    );
    let deleted = events.iter().find(|event| event["type"] == "sandbox.deleted").unwrap();
    assert_eq!(deleted["reason"], "deleted", "{deleted}");

    // Filtered by type: the deletion, and nothing of the other sandbox's life.
    let only = deletions.until(WAIT, |event| event["sandbox_id"] == id).await;
    assert_eq!(types_of(&only, &id), ["sandbox.deleted"], "{only:?}");
    assert!(types_of(&only, &other).is_empty());

    // Bad filters are named.
    for (query, field) in [
        ("type=exploded", "type"),
        ("label=nokey", "label"),
        ("since=soon", "since"),
        ("colour=red", "colour"),
    ] {
        let response = berth_e2e::http_as(server.admin_key.as_deref())
            .get(format!("{}/v1/events?{query}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        let problem: Value = response.json().await.unwrap();
        assert!(berth_e2e::field_named(&problem, field), "{query}: {problem}");
    }
}

#[tokio::test]
async fn members_see_their_own_events_and_sse_resumes_after_the_last_event_id() {
    let server = TestServer::start().await.unwrap();
    let alice = server.key_for("alice", "member").await;
    let bob = server.key_for("bob", "member").await;
    let mut alices = EventStream::open(&server, "", Some(&alice), true, None).await;

    let bobs_sandbox = create(&server, Some(&bob), json!({})).await;
    let alices_sandbox = create(&server, Some(&alice), json!({})).await;
    let seen = alices
        .until(WAIT, |event| event["data"]["sandbox_id"] == alices_sandbox.as_str())
        .await;
    assert!(
        seen.iter().all(|event| event["data"]["owner"] == "alice"),
        "alice saw another owner's events: {seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|event| event["data"]["sandbox_id"] == bobs_sandbox.as_str())
    );
    // SSE: the type is the event name, the id the event id.
    let created = seen.iter().find(|event| event["event"] == "sandbox.created").unwrap();
    assert_eq!(created["data"]["type"], "sandbox.created");
    assert_eq!(created["id"], created["data"]["id"].to_string());

    // Reconnecting with the last id seen replays what came after it, in order.
    let resume_after = created["id"].as_str().unwrap().to_owned();
    server.client().delete(&alices_sandbox).await.unwrap();
    let mut resumed = EventStream::open(&server, "", Some(&alice), true, Some(&resume_after)).await;
    let replayed = resumed.until(WAIT, |event| event["event"] == "sandbox.deleted").await;
    let first_id: u64 = replayed[0]["id"].as_str().unwrap().parse().unwrap();
    assert!(first_id > resume_after.parse().unwrap(), "{replayed:?}");
    assert!(
        replayed.iter().any(|event| event["event"] == "sandbox.deleted"),
        "{replayed:?}"
    );

    // An id this server never gave: said so first, then the stream goes on.
    let mut unknown = EventStream::open(&server, "", Some(&alice), true, Some("999999")).await;
    let first = unknown.next(WAIT).await.unwrap();
    assert_eq!(first["event"], "error", "{first}");
    assert!(first["data"]["message"].as_str().unwrap().contains("999999"), "{first}");
    let later = create(&server, Some(&alice), json!({})).await;
    let after = unknown
        .until(WAIT, |event| event["data"]["sandbox_id"] == later.as_str())
        .await;
    assert!(
        after.iter().any(|event| event["event"] == "sandbox.created"),
        "{after:?}"
    );
}
