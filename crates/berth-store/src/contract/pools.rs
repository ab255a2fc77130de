//! The contract of warm pools: the `pooled` filter and the atomic claim (oldest first, nothing
//! written when refused, each sandbox handed out once across handles).

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_core::{Sandbox, SandboxId, Status};

use crate::{SandboxFilter, Store, StoreError};

use super::fixtures::*;

/// `pooled` picks the records waiting in a pool (whatever their status) or the others,
/// records made from a template but claimed included among the others.
pub async fn list_filters_by_pooled(store: Arc<dyn Store>) {
    let waiting = pooled(sample("alice", at(0)), "py:latest");
    let waiting_creating = in_status(pooled(sample("alice", at(1)), "ruby:3"), Status::Creating);
    let plain = sample("alice", at(2));
    let mut claimed = sample("bob", at(3));
    claimed.template = Some("py:latest".into());
    let waiting_ended = in_status(pooled(sample("bob", at(4)), "py:latest"), Status::Failed);
    insert_all(
        &*store,
        &[
            waiting.clone(),
            waiting_creating.clone(),
            plain.clone(),
            claimed.clone(),
            waiting_ended.clone(),
        ],
    )
    .await;
    let list = |pooled: Option<bool>, include_ended: bool| {
        let store = Arc::clone(&store);
        async move {
            let filter = SandboxFilter {
                pooled,
                include_ended,
                ..SandboxFilter::default()
            };
            ids(&store.list(&filter, None, 100).await.expect("list").items)
        }
    };
    assert_eq!(
        list(Some(true), false).await,
        ids(&[waiting.clone(), waiting_creating.clone()])
    );
    assert_eq!(
        list(Some(true), true).await,
        ids(&[waiting.clone(), waiting_creating.clone(), waiting_ended.clone()])
    );
    assert_eq!(list(Some(false), true).await, ids(&[plain.clone(), claimed.clone()]));
    assert_eq!(
        list(None, true).await,
        ids(&[waiting, waiting_creating, plain, claimed, waiting_ended])
    );
}

/// What a claim in these tests makes of a pooled record: out of the pool, owned by `owner`,
/// labelled `claimed=<owner>` instead of its pool labels, updated at `at_secs(100)`.
fn claim_for(owner: &str) -> impl Fn(Sandbox) -> Sandbox + Send + Sync + 'static {
    let owner = owner.to_owned();
    move |mut sandbox: Sandbox| {
        sandbox.pool = None;
        sandbox.owner = owner.clone();
        sandbox.spec.labels = BTreeMap::from([("claimed".to_owned(), owner.clone())]);
        sandbox.updated_at = at_secs(100);
        sandbox
    }
}

/// A claim the closure must never see: there is nothing to claim.
fn no_claim(_: Sandbox) -> Sandbox {
    panic!("claimed from a pool that has nothing to claim")
}

/// Nothing to claim: an empty store, an unknown pool, a pool named like another's prefix.
pub async fn claim_from_an_empty_or_unknown_pool_is_none(store: Arc<dyn Store>) {
    assert_eq!(store.claim_pooled("py:latest", &no_claim).await.expect("claim"), None);
    let waiting = pooled(sample("pool", at(0)), "py:latest");
    let plain = sample("alice", at(1));
    insert_all(&*store, &[waiting.clone(), plain.clone()]).await;
    for pool in ["ruby:latest", "py", "py:", "", "PY:LATEST"] {
        assert_eq!(
            store.claim_pooled(pool, &no_claim).await.expect("claim"),
            None,
            "{pool:?}"
        );
    }
    assert_eq!(store.get(&waiting.id).await.expect("get"), Some(waiting));
    assert_eq!(store.get(&plain.id).await.expect("get"), Some(plain));
}

/// Claims take the pool's `Running` records oldest first (ties by id), write what the closure
/// made of each (labels included) and return it; records of the pool in any other status and
/// records of other pools are never taken.
pub async fn claim_takes_the_oldest_running_pooled_record(store: Arc<dyn Store>) {
    let pool = "py:latest";
    let pool_labels: Labels<'_> = &[("pool", "py")];
    let pending = in_status(pooled(sample("pool", at_secs(0)), pool), Status::Pending);
    let creating = in_status(pooled(sample("pool", at_secs(1)), pool), Status::Creating);
    let paused = in_status(pooled(sample("pool", at_secs(2)), pool), Status::Paused);
    let ended = in_status(pooled(sample("pool", at_secs(3)), pool), Status::Terminated);
    let oldest = labelled(pooled(sample("pool", at_secs(5)), pool), pool_labels);
    let tied = labelled(pooled(sample("pool", at_secs(5)), pool), pool_labels);
    let newest = labelled(pooled(sample("pool", at_secs(6)), pool), pool_labels);
    let other_pool = pooled(sample("pool", at_secs(-2)), "py:3.12");
    let unpooled = sample("pool", at_secs(-1));
    let untouched = [pending, creating, paused, ended, other_pool, unpooled];
    // Inserted newest first, so the order cannot come from insertion.
    insert_all(&*store, &[newest.clone(), tied.clone(), oldest.clone()]).await;
    insert_all(&*store, &untouched).await;
    let claimable = in_list_order(vec![oldest, tied, newest]);

    for (waiting, owner) in claimable.iter().zip(["alice", "bob", "carol"]) {
        let claimed = store
            .claim_pooled(pool, &claim_for(owner))
            .await
            .expect("claim")
            .expect("the pool has a running sandbox");
        assert_eq!(claimed, claim_for(owner)(waiting.clone()), "the oldest left is taken");
        assert_eq!(claimed.pool, None);
        assert_eq!(store.get(&claimed.id).await.expect("get"), Some(claimed.clone()));
        let by_new_label = store
            .list(&label_filter(&[("claimed", owner)]), None, 10)
            .await
            .expect("list");
        assert_eq!(by_new_label.items, vec![claimed.clone()], "labels were rewritten");
    }
    let by_pool_label = store.list(&label_filter(pool_labels), None, 10).await.expect("list");
    assert!(by_pool_label.items.is_empty(), "old labels are gone: {by_pool_label:?}");
    assert_eq!(store.claim_pooled(pool, &no_claim).await.expect("claim"), None);
    for sandbox in &untouched {
        assert_eq!(store.get(&sandbox.id).await.expect("get").as_ref(), Some(sandbox));
    }
    let still_waiting = store
        .list(
            &SandboxFilter {
                pooled: Some(true),
                include_ended: true,
                ..SandboxFilter::default()
            },
            None,
            100,
        )
        .await
        .expect("list");
    assert_eq!(still_waiting.items.len(), 5, "only the claimed left the pool");
}

/// A closure that keeps the record in the pool or changes its id fails the claim with `Other`
/// and writes nothing: the record still waits, labels and all, and a proper claim takes it.
pub async fn a_refused_claim_writes_nothing(store: Arc<dyn Store>) {
    let pool = "py:latest";
    let waiting = labelled(pooled(sample("pool", at(0)), pool), &[("pool", "py")]);
    store.insert(&waiting).await.expect("insert");

    let stays_pooled = |mut sandbox: Sandbox| {
        sandbox.owner = "alice".into();
        sandbox.spec.labels.clear();
        sandbox
    };
    let new_id = SandboxId::generate();
    let changes_id = {
        let new_id = new_id.clone();
        move |mut sandbox: Sandbox| {
            sandbox.id = new_id.clone();
            claim_for("alice")(sandbox)
        }
    };
    match store.claim_pooled(pool, &stays_pooled).await {
        Err(StoreError::Other(_)) => {}
        other => panic!("expected Other for a record left in the pool, got {other:?}"),
    }
    match store.claim_pooled(pool, &changes_id).await {
        Err(StoreError::Other(_)) => {}
        other => panic!("expected Other for a record with another id, got {other:?}"),
    }
    assert_eq!(store.get(&waiting.id).await.expect("get"), Some(waiting.clone()));
    assert_eq!(store.get(&new_id).await.expect("get"), None);
    let by_label = store
        .list(&label_filter(&[("pool", "py")]), None, 10)
        .await
        .expect("list");
    assert_eq!(by_label.items, vec![waiting.clone()]);

    let claimed = store
        .claim_pooled(pool, &claim_for("bob"))
        .await
        .expect("claim")
        .expect("still claimable");
    assert_eq!(claimed, claim_for("bob")(waiting));
}

/// 50 claims race for a pool of 8 through two handles (two processes): exactly 8 succeed,
/// each with a different sandbox, each written as its claimer made it; the pool's records that
/// are not running stay.
pub async fn concurrent_claims_through_two_handles_hand_out_each_sandbox_once(
    store: Arc<dyn Store>,
    other: Arc<dyn Store>,
) {
    const POOL_SIZE: i64 = 8;
    const CLAIMERS: usize = 50;
    let pool = "py:latest";
    let waiting: Vec<Sandbox> = (0..POOL_SIZE)
        .map(|offset| labelled(pooled(sample("pool", at_secs(offset)), pool), &[("pool", "py")]))
        .collect();
    let starting: Vec<Sandbox> = (0..2)
        .map(|offset| in_status(pooled(sample("pool", at_secs(offset)), pool), Status::Creating))
        .collect();
    insert_all(&*store, &waiting).await;
    insert_all(&*other, &starting).await;

    let mut claimers = Vec::new();
    for task in 0..CLAIMERS {
        let handle = Arc::clone(if task % 2 == 0 { &store } else { &other });
        claimers.push(tokio::spawn(async move {
            let owner = format!("claimer-{task}");
            handle.claim_pooled(pool, &claim_for(&owner)).await
        }));
    }
    let mut winners = Vec::new();
    for (task, claimer) in claimers.into_iter().enumerate() {
        match claimer.await.expect("claimer task") {
            Ok(Some(claimed)) => winners.push(claimed),
            Ok(None) => {}
            Err(error) => panic!("claimer {task} failed: {error}"),
        }
    }
    assert_eq!(winners.len(), waiting.len(), "exactly the pool's size succeed");
    let mut claimed_ids = ids(&winners);
    claimed_ids.sort();
    claimed_ids.dedup();
    let mut waiting_ids = ids(&waiting);
    waiting_ids.sort();
    assert_eq!(claimed_ids, waiting_ids, "each sandbox handed out once");
    for claimed in &winners {
        assert_eq!(store.get(&claimed.id).await.expect("get").as_ref(), Some(claimed));
        assert_eq!(other.get(&claimed.id).await.expect("get").as_ref(), Some(claimed));
    }
    assert_eq!(store.claim_pooled(pool, &no_claim).await.expect("claim"), None);
    assert_eq!(other.claim_pooled(pool, &no_claim).await.expect("claim"), None);
    let still_waiting = store
        .list(
            &SandboxFilter {
                pooled: Some(true),
                ..SandboxFilter::default()
            },
            None,
            100,
        )
        .await
        .expect("list");
    assert_eq!(ids(&still_waiting.items), ids(&in_list_order(starting)));
}
