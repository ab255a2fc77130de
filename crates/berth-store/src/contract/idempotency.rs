//! The contract of idempotency keys: unique per owner, found by owner and key, one winner
//! among racing inserts.

use std::sync::Arc;

use crate::{SandboxFilter, Store, StoreError};

use super::fixtures::*;

/// An owner cannot use one idempotency key twice; another owner can use the same key; records
/// without a key never clash.
pub async fn idempotency_key_is_unique_per_owner(store: Arc<dyn Store>) {
    let mut first = sample("alice", at(0));
    first.idempotency_key = Some("key-1".into());
    store.insert(&first).await.expect("insert");

    let mut again = sample("alice", at(1));
    again.idempotency_key = Some("key-1".into());
    match store.insert(&again).await {
        Err(StoreError::DuplicateIdempotencyKey { owner, key }) => {
            assert_eq!((owner.as_str(), key.as_str()), ("alice", "key-1"));
        }
        other => panic!("expected DuplicateIdempotencyKey, got {other:?}"),
    }
    assert_eq!(store.get(&again.id).await.expect("get"), None, "nothing was written");

    let mut other_owner = sample("bob", at(2));
    other_owner.idempotency_key = Some("key-1".into());
    store.insert(&other_owner).await.expect("same key, other owner");

    let mut other_key = sample("alice", at(3));
    other_key.idempotency_key = Some("key-2".into());
    store.insert(&other_key).await.expect("same owner, other key");

    for offset in 4..7 {
        store
            .insert(&sample("alice", at(offset)))
            .await
            .expect("records without a key never clash");
    }
    let all = store.list(&SandboxFilter::default(), None, 100).await.expect("list");
    assert_eq!(all.items.len(), 6);
}

pub async fn find_by_idempotency_key_matches_owner_and_key(store: Arc<dyn Store>) {
    let mut alice = sample("alice", at(0));
    alice.idempotency_key = Some("k".into());
    let mut bob = sample("bob", at(1));
    bob.idempotency_key = Some("k".into());
    let unkeyed = sample("carol", at(2));
    insert_all(&*store, &[alice.clone(), bob.clone(), unkeyed]).await;

    assert_eq!(
        store.find_by_idempotency_key("alice", "k").await.expect("find"),
        Some(alice)
    );
    assert_eq!(
        store.find_by_idempotency_key("bob", "k").await.expect("find"),
        Some(bob)
    );
    assert_eq!(store.find_by_idempotency_key("alice", "K").await.expect("find"), None);
    assert_eq!(
        store.find_by_idempotency_key("alice", "other").await.expect("find"),
        None
    );
    assert_eq!(store.find_by_idempotency_key("carol", "k").await.expect("find"), None);
    assert_eq!(store.find_by_idempotency_key("carol", "").await.expect("find"), None);
}

/// Racing inserts that share an owner and idempotency key: exactly one wins, the rest are told
/// the key is taken.
pub async fn concurrent_inserts_admit_one_per_idempotency_key(store: Arc<dyn Store>) {
    let mut racers = Vec::new();
    for task in 0..20_i64 {
        let store = Arc::clone(&store);
        racers.push(tokio::spawn(async move {
            let mut sandbox = sample("alice", at(task));
            sandbox.idempotency_key = Some("same".into());
            store.insert(&sandbox).await.map(|()| sandbox)
        }));
    }
    let mut winners = Vec::new();
    for racer in racers {
        match racer.await.expect("racer task") {
            Ok(sandbox) => winners.push(sandbox),
            Err(StoreError::DuplicateIdempotencyKey { owner, key }) => {
                assert_eq!((owner.as_str(), key.as_str()), ("alice", "same"));
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one insert wins");
    assert_eq!(
        store.find_by_idempotency_key("alice", "same").await.expect("find"),
        winners.pop()
    );
}
