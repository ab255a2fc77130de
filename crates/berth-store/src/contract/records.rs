//! The contract of single records: what an insert keeps, what an update replaces, what fails
//! and leaves everything as it was, the purge of ended records, concurrent writers, `ping` and
//! `describe`.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_core::{Reason, Sandbox, SandboxId, Status};
use chrono::{DateTime, Utc};

use crate::{SandboxFilter, Store, StoreError};

use super::fixtures::*;

/// Insert then get returns the identical record: every field, sub-second timestamps, labels,
/// ports, env, optional fields both set and unset.
pub async fn round_trip_preserves_every_field(store: Arc<dyn Store>) {
    let full = fully_populated();
    let minimal = sample("bob", at(5));
    store.insert(&full).await.expect("insert full record");
    store.insert(&minimal).await.expect("insert minimal record");

    let read = store.get(&full.id).await.expect("get").expect("full record exists");
    assert_eq!(read, full);
    assert_eq!(
        read.created_at.timestamp_subsec_nanos(),
        123_456_790,
        "nanoseconds survive"
    );
    assert_eq!(store.get(&minimal.id).await.expect("get"), Some(minimal.clone()));

    // The same records come back whole through every read path.
    let listed = store
        .list(
            &SandboxFilter {
                include_ended: true,
                ..SandboxFilter::default()
            },
            None,
            10,
        )
        .await
        .expect("list");
    assert_eq!(listed.items, vec![full.clone(), minimal.clone()]);
    let found = store
        .find_by_idempotency_key(&full.owner, "req-42")
        .await
        .expect("find");
    assert_eq!(found, Some(full));
    assert_eq!(store.list_live().await.expect("list_live"), vec![minimal]);
}

pub async fn get_of_unknown_id_is_none(store: Arc<dyn Store>) {
    store.insert(&sample("alice", at(0))).await.expect("insert");
    assert_eq!(store.get(&SandboxId::generate()).await.expect("get"), None);
}

/// A second insert with an existing id fails and leaves the first record, labels included.
/// Re-inserting the very same record (same id and idempotency key) is also `AlreadyExists`.
pub async fn insert_of_existing_id_is_already_exists(store: Arc<dyn Store>) {
    let mut first = labelled(sample("alice", at(0)), &[("team", "red")]);
    first.idempotency_key = Some("key".into());
    store.insert(&first).await.expect("insert");
    match store.insert(&first).await {
        Err(StoreError::AlreadyExists(id)) => assert_eq!(id, first.id),
        other => panic!("expected AlreadyExists for a repeated insert, got {other:?}"),
    }

    let mut clash = labelled(sample("bob", at(7)), &[("team", "blue")]);
    clash.id = first.id.clone();
    match store.insert(&clash).await {
        Err(StoreError::AlreadyExists(id)) => assert_eq!(id, first.id),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(store.get(&first.id).await.expect("get"), Some(first.clone()));
    let blue = store
        .list(&label_filter(&[("team", "blue")]), None, 10)
        .await
        .expect("list");
    assert!(
        blue.items.is_empty(),
        "the refused record's labels were not written: {blue:?}"
    );
    let red = store
        .list(&label_filter(&[("team", "red")]), None, 10)
        .await
        .expect("list");
    assert_eq!(ids(&red.items), vec![first.id]);
}

/// Update replaces every field, and every index follows: labels, owner, idempotency key,
/// status, order.
pub async fn update_replaces_the_whole_record(store: Arc<dyn Store>) {
    let mut original = labelled(sample("alice", at_secs(10)), &[("team", "red"), ("tier", "gold")]);
    original.status = Status::Pending;
    original.idempotency_key = Some("old-key".into());
    let neighbour = sample("alice", at_secs(5));
    insert_all(&*store, &[original.clone(), neighbour.clone()]).await;

    let mut updated = fully_populated();
    updated.id = original.id.clone();
    updated.status = Status::Running;
    updated.status_reason = None;
    updated.ended_at = None;
    updated.owner = "bob".into();
    updated.idempotency_key = Some("new-key".into());
    updated.created_at = at_secs(1);
    updated.spec.labels = BTreeMap::from([("team".into(), "blue".into()), ("env".into(), "prod".into())]);
    store.update(&updated).await.expect("update");

    assert_eq!(store.get(&original.id).await.expect("get"), Some(updated.clone()));
    for (labels, expected) in [
        (&[("team", "red")][..], vec![]),
        (&[("tier", "gold")][..], vec![]),
        (&[("team", "blue")][..], vec![updated.id.clone()]),
        (&[("team", "blue"), ("env", "prod")][..], vec![updated.id.clone()]),
    ] {
        let page = store.list(&label_filter(labels), None, 10).await.expect("list");
        assert_eq!(ids(&page.items), expected, "labels {labels:?}");
    }
    let by_owner = |owner: &str| SandboxFilter {
        owner: Some(owner.into()),
        ..SandboxFilter::default()
    };
    let alice = store.list(&by_owner("alice"), None, 10).await.expect("list");
    assert_eq!(ids(&alice.items), vec![neighbour.id.clone()]);
    let bob = store.list(&by_owner("bob"), None, 10).await.expect("list");
    assert_eq!(ids(&bob.items), vec![updated.id.clone()]);
    assert_eq!(
        store.find_by_idempotency_key("alice", "old-key").await.expect("find"),
        None
    );
    assert_eq!(
        store.find_by_idempotency_key("bob", "new-key").await.expect("find"),
        Some(updated.clone())
    );
    let running = SandboxFilter {
        statuses: vec![Status::Running],
        ..SandboxFilter::default()
    };
    let running = store.list(&running, None, 10).await.expect("list");
    assert_eq!(
        ids(&running.items),
        vec![updated.id.clone(), neighbour.id.clone()],
        "new created_at orders it first"
    );

    // The key the record gave up is free again.
    let mut reuse = sample("alice", at_secs(20));
    reuse.idempotency_key = Some("old-key".into());
    store.insert(&reuse).await.expect("released key is reusable");

    // Ending it through update takes it out of the live set.
    let mut ended = updated.clone();
    ended.end(Status::Terminated, Reason::Deleted, at_secs(30));
    store.update(&ended).await.expect("update to ended");
    let live = store.list_live().await.expect("list_live");
    assert_eq!(ids(&live), vec![neighbour.id, reuse.id]);
}

pub async fn update_of_unknown_id_is_not_found(store: Arc<dyn Store>) {
    store.insert(&sample("alice", at(0))).await.expect("insert");
    let ghost = labelled(sample("alice", at(1)), &[("team", "red")]);
    match store.update(&ghost).await {
        Err(StoreError::NotFound(id)) => assert_eq!(id, ghost.id),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(store.get(&ghost.id).await.expect("get"), None, "update does not insert");
    let red = store
        .list(&label_filter(&[("team", "red")]), None, 10)
        .await
        .expect("list");
    assert!(red.items.is_empty(), "no labels written for a missing record: {red:?}");
}

/// An update that would take another record's idempotency key fails as a whole: neither the
/// row nor its labels change.
pub async fn failed_update_changes_nothing(store: Arc<dyn Store>) {
    let mut first = sample("alice", at(0));
    first.idempotency_key = Some("k1".into());
    let mut second = labelled(sample("alice", at(1)), &[("team", "red")]);
    second.idempotency_key = Some("k2".into());
    insert_all(&*store, &[first.clone(), second.clone()]).await;

    let mut thief = labelled(second.clone(), &[("team", "blue")]);
    thief.idempotency_key = Some("k1".into());
    thief.status = Status::Paused;
    match store.update(&thief).await {
        Err(StoreError::DuplicateIdempotencyKey { owner, key }) => {
            assert_eq!((owner.as_str(), key.as_str()), ("alice", "k1"));
        }
        other => panic!("expected DuplicateIdempotencyKey, got {other:?}"),
    }
    assert_eq!(store.get(&second.id).await.expect("get"), Some(second.clone()));
    assert_eq!(
        store.find_by_idempotency_key("alice", "k1").await.expect("find"),
        Some(first)
    );
    let blue = store
        .list(&label_filter(&[("team", "blue")]), None, 10)
        .await
        .expect("list");
    assert!(blue.items.is_empty(), "labels rolled back: {blue:?}");
    let red = store
        .list(&label_filter(&[("team", "red")]), None, 10)
        .await
        .expect("list");
    assert_eq!(ids(&red.items), vec![second.id]);
}

/// Purge deletes ended records whose `ended_at` is strictly before the cutoff, nothing else,
/// and frees their ids, idempotency keys and labels.
pub async fn purge_deletes_only_records_ended_before_cutoff(store: Arc<dyn Store>) {
    let cutoff = at_secs(100);
    let ended_at = |mut sandbox: Sandbox, status: Status, when: DateTime<Utc>| {
        sandbox.end(status, Reason::Exited, when);
        sandbox
    };
    let mut old_terminated = ended_at(
        labelled(sample("alice", at_secs(0)), &[("team", "red")]),
        Status::Terminated,
        at_secs(50),
    );
    old_terminated.idempotency_key = Some("k".into());
    let old_failed = ended_at(
        sample("bob", at_secs(1)),
        Status::Failed,
        cutoff - chrono::Duration::nanoseconds(1),
    );
    let at_cutoff = ended_at(sample("alice", at_secs(2)), Status::Failed, cutoff);
    let recent = ended_at(sample("alice", at_secs(3)), Status::Terminated, at_secs(150));
    let live = labelled(sample("alice", at_secs(4)), &[("team", "red")]);
    // Inconsistent but possible: a live status with an ended_at. Only ended records go.
    let mut live_with_ended_at = sample("alice", at_secs(5));
    live_with_ended_at.ended_at = Some(at_secs(10));
    insert_all(
        &*store,
        &[
            old_terminated.clone(),
            old_failed.clone(),
            at_cutoff.clone(),
            recent.clone(),
            live.clone(),
            live_with_ended_at.clone(),
        ],
    )
    .await;

    assert_eq!(store.purge_ended_before(cutoff).await.expect("purge"), 2);
    assert_eq!(store.get(&old_terminated.id).await.expect("get"), None);
    assert_eq!(store.get(&old_failed.id).await.expect("get"), None);
    let everything = store
        .list(
            &SandboxFilter {
                include_ended: true,
                ..SandboxFilter::default()
            },
            None,
            100,
        )
        .await
        .expect("list");
    assert_eq!(
        ids(&everything.items),
        vec![
            at_cutoff.id.clone(),
            recent.id.clone(),
            live.id.clone(),
            live_with_ended_at.id.clone()
        ]
    );
    assert_eq!(store.purge_ended_before(cutoff).await.expect("purge again"), 0);

    let red = store
        .list(&label_filter(&[("team", "red")]), None, 100)
        .await
        .expect("list");
    assert_eq!(ids(&red.items), vec![live.id.clone()]);
    assert_eq!(store.find_by_idempotency_key("alice", "k").await.expect("find"), None);

    // The purged id and key can be used again.
    let mut reborn = sample("alice", at_secs(200));
    reborn.id = old_terminated.id.clone();
    reborn.idempotency_key = Some("k".into());
    store.insert(&reborn).await.expect("purged id and key are free");

    assert_eq!(store.purge_ended_before(at_secs(1_000)).await.expect("purge"), 2);
    assert_eq!(
        ids(&store
            .list(
                &SandboxFilter {
                    include_ended: true,
                    ..SandboxFilter::default()
                },
                None,
                100
            )
            .await
            .expect("list")
            .items),
        vec![live.id, live_with_ended_at.id, reborn.id]
    );
}

/// 50 tasks insert and update at once, with readers listing meanwhile; every write succeeds
/// (no "database is locked") and the final state is every task's last write.
pub async fn concurrent_writers_all_succeed(store: Arc<dyn Store>) {
    const TASKS: usize = 50;
    let mut writers = Vec::new();
    for task in 0..TASKS {
        let store = Arc::clone(&store);
        writers.push(tokio::spawn(async move {
            let offset = i64::try_from(task).unwrap_or_default();
            let task_label = task.to_string();
            let mut sandbox = labelled(
                sample(&format!("owner-{}", task % 5), at(offset)),
                &[("task", &task_label)],
            );
            sandbox.status = Status::Pending;
            sandbox.idempotency_key = Some(format!("key-{task}"));
            store.insert(&sandbox).await?;
            sandbox.status = Status::Creating;
            store.update(&sandbox).await?;
            sandbox.status = Status::Running;
            sandbox.container_id = Some(format!("container-{task}"));
            sandbox.spec.labels.insert("phase".into(), "running".into());
            store.update(&sandbox).await?;
            if task % 2 == 0 {
                sandbox.end(Status::Terminated, Reason::Deleted, at_secs(10));
                store.update(&sandbox).await?;
            }
            Ok::<Sandbox, StoreError>(sandbox)
        }));
    }
    let mut readers = Vec::new();
    for _ in 0..4 {
        let store = Arc::clone(&store);
        readers.push(tokio::spawn(async move {
            for _ in 0..20 {
                store.list(&SandboxFilter::default(), None, 10).await?;
                store.list_live().await?;
            }
            Ok::<(), StoreError>(())
        }));
    }

    let mut written = Vec::new();
    for (task, writer) in writers.into_iter().enumerate() {
        match writer.await.expect("writer task") {
            Ok(sandbox) => written.push(sandbox),
            Err(error) => panic!("writer {task} failed: {error}"),
        }
    }
    for reader in readers {
        reader.await.expect("reader task").expect("concurrent reads succeed");
    }

    for sandbox in &written {
        assert_eq!(store.get(&sandbox.id).await.expect("get").as_ref(), Some(sandbox));
    }
    let everything = list_all_pages(
        &*store,
        &SandboxFilter {
            include_ended: true,
            ..SandboxFilter::default()
        },
        7,
    )
    .await;
    assert_eq!(ids(&everything), ids(&in_list_order(written.clone())));
    let live = store.list_live().await.expect("list_live");
    assert_eq!(live.len(), TASKS / 2);
    assert!(live.iter().all(|s| s.status == Status::Running));
    let running = store
        .list(&label_filter(&[("phase", "running")]), None, 100)
        .await
        .expect("list");
    assert_eq!(running.items.len(), TASKS, "every task's label rewrite landed");
}

pub async fn ping_answers(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");
}

/// `describe` names the backend first and never carries a password.
pub async fn describe_names_the_backend(store: Arc<dyn Store>) {
    let description = store.describe();
    let backend = description.split_whitespace().next().unwrap_or_default();
    assert!(
        matches!(backend, "sqlite" | "postgres"),
        "unknown backend in {description:?}"
    );
    assert!(description.len() > backend.len() + 1, "no location in {description:?}");
    assert_eq!(store.is_shared(), backend == "postgres", "{description}");
}
