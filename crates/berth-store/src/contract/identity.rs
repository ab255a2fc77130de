//! The contract of who may call berth: API keys found by their hash and revoked once, across
//! handles; quotas set, replaced and removed; quota-checked creates and claims admitted exactly
//! under concurrency from two handles; the audit log appended and read back in order.

use std::sync::Arc;

use berth_core::{ApiKey, AuditEntry, KeyId, Quota, Role, Sandbox, Status};
use chrono::{DateTime, Utc};

use crate::{Store, StoreError};

use super::fixtures::*;

fn sample_key(owner: &str, role: Role, created_at: DateTime<Utc>) -> ApiKey {
    let id = KeyId::generate();
    ApiKey {
        hash: format!("{:0>64}", id.as_str()),
        id,
        owner: owner.to_owned(),
        role,
        created_at,
        expires_at: Some(created_at + chrono::Duration::days(30)),
        revoked_at: None,
        last_used_at: None,
    }
}

fn at_most(sandboxes: u64) -> Quota {
    Quota {
        sandboxes: Some(sandboxes),
        ..Quota::default()
    }
}

/// A key is found by its hash and by its id with every field; a second key with the same id or
/// hash is refused; the list is in creation order.
pub async fn keys_are_found_by_hash_and_id_and_unique(store: Arc<dyn Store>) {
    let admin = sample_key("platform", Role::Admin, at(0));
    let mut member = sample_key("team-a", Role::Member, at(1));
    member.expires_at = None;
    store.insert_key(&member).await.expect("insert member");
    store.insert_key(&admin).await.expect("insert admin");
    assert_eq!(
        store.key_by_hash(&admin.hash).await.expect("by hash"),
        Some(admin.clone())
    );
    assert_eq!(store.get_key(&member.id).await.expect("by id"), Some(member.clone()));
    assert_eq!(store.key_by_hash(&"f".repeat(64)).await.expect("by hash"), None);
    assert_eq!(
        store.list_keys().await.expect("list"),
        vec![admin.clone(), member.clone()]
    );

    let mut same_hash = sample_key("team-b", Role::Member, at(2));
    same_hash.hash = admin.hash.clone();
    assert!(matches!(store.insert_key(&same_hash).await, Err(StoreError::Other(_))));
    let mut same_id = sample_key("team-b", Role::Member, at(2));
    same_id.id = admin.id.clone();
    assert!(matches!(store.insert_key(&same_id).await, Err(StoreError::Other(_))));
    assert_eq!(store.list_keys().await.expect("list").len(), 2);
}

/// A revocation is seen by another handle at once and keeps its first time; last use only
/// moves forward; an unknown key is reported as such.
pub async fn a_revocation_is_seen_by_every_handle_and_kept_once(store: Arc<dyn Store>, other: Arc<dyn Store>) {
    let key = sample_key("team-a", Role::Member, at(0));
    store.insert_key(&key).await.expect("insert");
    assert!(other.revoke_key(&key.id, at_secs(10)).await.expect("revoke"));
    assert!(store.revoke_key(&key.id, at_secs(20)).await.expect("revoke again"));
    let seen = store.key_by_hash(&key.hash).await.expect("by hash").expect("the key");
    assert_eq!(seen.revoked_at, Some(at_secs(10)));
    assert!(
        !store
            .revoke_key(&KeyId::generate(), at_secs(10))
            .await
            .expect("revoke unknown")
    );

    other.touch_key(&key.id, at_secs(30)).await.expect("touch");
    store.touch_key(&key.id, at_secs(25)).await.expect("touch earlier");
    let seen = other.get_key(&key.id).await.expect("get").expect("the key");
    assert_eq!(seen.last_used_at, Some(at_secs(30)));
    assert_eq!(seen.revoked_at, Some(at_secs(10)), "a touch never undoes a revocation");
}

/// Quotas are set, replaced whole, listed by owner and removed.
pub async fn quotas_are_set_replaced_listed_and_removed(store: Arc<dyn Store>) {
    let small = Quota {
        sandboxes: Some(5),
        cpu_millis: Some(4000),
        memory_bytes: None,
    };
    store.set_quota("team-b", &small).await.expect("set");
    store.set_quota("team-a", &at_most(1)).await.expect("set");
    store.set_quota("team-a", &at_most(2)).await.expect("replace");
    assert_eq!(store.get_quota("team-a").await.expect("get"), Some(at_most(2)));
    assert_eq!(store.get_quota("nobody").await.expect("get"), None);
    assert_eq!(
        store.list_quotas().await.expect("list"),
        vec![("team-a".to_owned(), at_most(2)), ("team-b".to_owned(), small)]
    );
    assert!(store.delete_quota("team-a").await.expect("delete"));
    assert!(!store.delete_quota("team-a").await.expect("delete again"));
    assert_eq!(store.get_quota("team-a").await.expect("get"), None);
}

/// A quota-checked insert counts the owner's live records only (not ended ones, not other
/// owners'), in sandboxes, CPU and memory, and a refusal writes nothing.
pub async fn insert_within_counts_only_the_owners_live_records(store: Arc<dyn Store>) {
    let quota = Quota {
        sandboxes: Some(2),
        cpu_millis: Some(2500),
        memory_bytes: None,
    };
    store
        .insert(&in_status(sample("team-a", at(0)), Status::Terminated))
        .await
        .expect("ended record");
    store.insert(&sample("team-b", at(1))).await.expect("another owner's");
    store
        .insert_within(&sample("team-a", at(2)), &quota)
        .await
        .expect("first fits");
    let mut big = sample("team-a", at(3));
    big.spec.resources.cpu_millis = 2000;
    match store.insert_within(&big, &quota).await {
        Err(StoreError::QuotaExceeded(exceeded)) => {
            assert_eq!(exceeded.kind.as_str(), "cpu");
            assert_eq!((exceeded.limit, exceeded.used, exceeded.asked), (2500, 1000, 2000));
        }
        other => panic!("expected the cpu quota to refuse, got {other:?}"),
    }
    assert_eq!(store.get(&big.id).await.expect("get"), None, "nothing written");
    store
        .insert_within(&sample("team-a", at(4)), &quota)
        .await
        .expect("second fits");
    let third = sample("team-a", at(5));
    assert!(matches!(
        store.insert_within(&third, &quota).await,
        Err(StoreError::QuotaExceeded(exceeded)) if exceeded.kind.as_str() == "sandboxes"
    ));
    store
        .insert_within(&third, &Quota::default())
        .await
        .expect("an unlimited quota admits anything");
}

/// 40 concurrent quota-checked inserts of one owner through two handles, against a quota of
/// 10 sandboxes: exactly 10 are written.
pub async fn concurrent_inserts_through_two_handles_admit_exactly_the_quota(
    store: Arc<dyn Store>,
    other: Arc<dyn Store>,
) {
    const QUOTA: u64 = 10;
    let mut creates = Vec::new();
    for task in 0..40 {
        let handle = Arc::clone(if task % 2 == 0 { &store } else { &other });
        creates.push(tokio::spawn(async move {
            let sandbox = sample("team-a", at_secs(task));
            handle.insert_within(&sandbox, &at_most(QUOTA)).await
        }));
    }
    let mut admitted = 0;
    for create in creates {
        match create.await.expect("create task") {
            Ok(()) => admitted += 1,
            Err(StoreError::QuotaExceeded(_)) => {}
            Err(error) => panic!("a create failed otherwise: {error}"),
        }
    }
    assert_eq!(admitted, QUOTA);
    assert_eq!(store.list_live().await.expect("live").len() as u64, QUOTA);
}

/// A claim that would take the claimer past its quota is refused and leaves the sandbox
/// waiting in its pool; within the quota it succeeds.
pub async fn a_claim_past_the_claimers_quota_leaves_the_sandbox_pooled(store: Arc<dyn Store>) {
    let pool = "py:latest";
    let waiting = pooled(sample("pool", at(0)), pool);
    store.insert(&waiting).await.expect("pooled");
    store.insert(&sample("team-a", at(1))).await.expect("team-a's one");
    let claim = |mut sandbox: Sandbox| {
        sandbox.pool = None;
        sandbox.owner = "team-a".into();
        sandbox
    };
    assert!(matches!(
        store.claim_pooled_within(pool, &claim, &at_most(1)).await,
        Err(StoreError::QuotaExceeded(_))
    ));
    assert_eq!(store.get(&waiting.id).await.expect("get"), Some(waiting.clone()));
    let claimed = store
        .claim_pooled_within(pool, &claim, &at_most(2))
        .await
        .expect("claim")
        .expect("a sandbox");
    assert_eq!((claimed.id, claimed.owner.as_str()), (waiting.id, "team-a"));
}

/// The audit log reads back in append order, from a time on, of one owner when asked, at most
/// `limit` entries.
pub async fn the_audit_log_reads_back_in_order_by_time_and_owner(store: Arc<dyn Store>) {
    let entry = |seconds: i64, owner: Option<&str>, action: &str| AuditEntry {
        time: at_secs(seconds),
        key_id: owner.map(|_| KeyId::generate()),
        owner: owner.map(str::to_owned),
        role: owner.map(|_| Role::Member),
        action: action.to_owned(),
        target: Some("0123456789abcdef".into()),
        status: 201,
        client: Some("127.0.0.1:5000".into()),
    };
    let entries = [
        entry(1, Some("team-a"), "POST /v1/sandboxes"),
        entry(2, None, "authenticate"),
        entry(3, Some("team-b"), "DELETE /v1/sandboxes/{id}"),
        entry(4, Some("team-a"), "DELETE /v1/sandboxes/{id}"),
    ];
    for entry in &entries {
        store.append_audit(entry).await.expect("append");
    }
    assert_eq!(store.list_audit(at(0), None, 100).await.expect("all"), entries.to_vec());
    assert_eq!(
        store.list_audit(at_secs(2), None, 2).await.expect("since, limited"),
        entries[1..3].to_vec()
    );
    assert_eq!(
        store.list_audit(at(0), Some("team-a"), 100).await.expect("of team-a"),
        vec![entries[0].clone(), entries[3].clone()]
    );
}
