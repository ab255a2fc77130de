//! The contract between processes sharing one database: one leader per cluster, a dropped lease
//! freeing leadership, each handle seeing the others' writes, and compare-and-set writes that
//! let one of several racing writers win.

use std::sync::Arc;
use std::time::Duration;

use berth_core::Status;

use crate::{Lease, Store, StoreError};

use super::fixtures::*;

/// Tries to lead `cluster` every 100 ms for up to `patience`.
async fn lead_within(store: &dyn Store, cluster: &str, patience: Duration) -> Option<Lease> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if let Some(lease) = store.try_lead(cluster).await.expect("try_lead") {
            return Some(lease);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One leader per cluster among every handle on the database, the leader's own included;
/// clusters do not conflict; a held lease is not reported lost.
pub async fn leadership_is_exclusive_per_cluster(store: Arc<dyn Store>, other: Arc<dyn Store>) {
    let mut lease = store
        .try_lead("alpha")
        .await
        .expect("try_lead")
        .expect("a fresh store leads");
    assert!(
        other.try_lead("alpha").await.expect("try_lead").is_none(),
        "another handle"
    );
    assert!(
        store.try_lead("alpha").await.expect("try_lead").is_none(),
        "the same handle again"
    );

    let beta = other
        .try_lead("beta")
        .await
        .expect("try_lead")
        .expect("another cluster is free");
    assert!(store.try_lead("beta").await.expect("try_lead").is_none());
    for cluster in ["alpha/", "Alpha", "alpha beta", ""] {
        let lease = other.try_lead(cluster).await.expect("try_lead");
        assert!(lease.is_some(), "cluster {cluster:?} is not alpha's");
    }

    // Held leases are kept, and not reported lost, through a few seconds of keeping.
    assert!(
        tokio::time::timeout(Duration::from_millis(2_500), lease.lost())
            .await
            .is_err(),
        "a held lease is not lost"
    );
    assert!(other.try_lead("alpha").await.expect("try_lead").is_none());
    drop(beta);
}

/// Dropping a lease lets another handle lead within a few seconds, and leadership can pass
/// back and forth.
pub async fn a_dropped_lease_frees_leadership(store: Arc<dyn Store>, other: Arc<dyn Store>) {
    let patience = Duration::from_secs(5);
    let first = store.try_lead("main").await.expect("try_lead").expect("leads");
    assert!(other.try_lead("main").await.expect("try_lead").is_none());
    drop(first);
    let second = lead_within(&*other, "main", patience)
        .await
        .expect("the other handle takes over");
    assert!(store.try_lead("main").await.expect("try_lead").is_none());
    drop(second);
    let third = lead_within(&*store, "main", patience).await;
    assert!(third.is_some(), "leadership comes back");
}

/// Two handles on one database are one store: each sees the other's writes at once.
pub async fn handles_on_one_database_see_each_others_writes(store: Arc<dyn Store>, other: Arc<dyn Store>) {
    let mut sandbox = labelled(sample("alice", at(0)), &[("team", "red")]);
    sandbox.idempotency_key = Some("k".into());
    store.insert(&sandbox).await.expect("insert");
    assert_eq!(other.get(&sandbox.id).await.expect("get"), Some(sandbox.clone()));
    match other.insert(&sandbox).await {
        Err(StoreError::AlreadyExists(id)) => assert_eq!(id, sandbox.id),
        result => panic!("expected AlreadyExists, got {result:?}"),
    }
    sandbox.status = Status::Paused;
    sandbox.updated_at = at_secs(9);
    other.update(&sandbox).await.expect("update through the other handle");
    assert_eq!(store.get(&sandbox.id).await.expect("get"), Some(sandbox.clone()));
    assert_eq!(
        store.updated_since(at_secs(9)).await.expect("updated_since"),
        vec![sandbox]
    );
}

/// A compare-and-set write replaces only the copy it read: of many writers (through two handles,
/// as two processes) that read one copy, exactly one wins, the others write nothing and are
/// told; a writer that read a copy since replaced, or a record that is gone, is refused too.
pub async fn updates_if_unchanged_through_two_handles_let_one_writer_win(store: Arc<dyn Store>, other: Arc<dyn Store>) {
    let original = labelled(sample("alice", at(0)), &[("team", "red")]);
    store.insert(&original).await.expect("insert");
    let read_at = original.updated_at;
    let writers: Vec<_> = (0..16_i64)
        .map(|writer| {
            let handle = if writer % 2 == 0 {
                Arc::clone(&store)
            } else {
                Arc::clone(&other)
            };
            let mut sandbox = labelled(original.clone(), &[("writer", &writer.to_string())]);
            sandbox.updated_at = at_secs(100 + writer);
            tokio::spawn(async move { (handle.update_if_unchanged(&sandbox, read_at).await, sandbox) })
        })
        .collect();
    let mut winners = Vec::new();
    for writer in writers {
        let (outcome, sandbox) = writer.await.expect("writer");
        if outcome.expect("a compare-and-set write") {
            winners.push(sandbox);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer of the same copy wins");
    let stored = other.get(&original.id).await.expect("get").expect("the record");
    assert_eq!(stored, winners[0], "the winner's write, whole (labels included)");

    let mut stale = original.clone();
    stale.status = Status::Stopping;
    stale.updated_at = at_secs(200);
    assert!(
        !store.update_if_unchanged(&stale, read_at).await.expect("a stale write"),
        "a copy replaced since is refused"
    );
    assert_eq!(store.get(&original.id).await.expect("get"), Some(stored.clone()));

    let unknown = sample("bob", at(5));
    assert!(
        !store
            .update_if_unchanged(&unknown, unknown.updated_at)
            .await
            .expect("a write of nothing")
    );
    assert_eq!(store.get(&unknown.id).await.expect("get"), None);
}
