//! The contract of lists and queries: `(created_at, id)` order, pages and cursors, the status,
//! owner and label filters, `list_live` and `updated_since`.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_core::{Reason, Sandbox, SandboxId, Status};
use chrono::{DateTime, Utc};

use crate::{Cursor, SandboxFilter, Store};

use super::fixtures::*;

/// Lists come in `(created_at, id)` order whatever the insert order, down to the nanosecond,
/// with ids breaking ties.
pub async fn list_orders_by_created_at_then_id(store: Arc<dyn Store>) {
    let offsets = [5_000, 1, 0, 5_000, 2, 5_000, 1_000_000_000, -1, 0, 3, 1];
    let sandboxes: Vec<Sandbox> = offsets.iter().map(|offset| sample("alice", at(*offset))).collect();
    insert_all(&*store, &sandboxes).await;

    let page = store.list(&SandboxFilter::default(), None, 100).await.expect("list");
    assert_eq!(page.next, None);
    assert_eq!(ids(&page.items), ids(&in_list_order(sandboxes.clone())));
    let times: Vec<i64> = page
        .items
        .iter()
        .map(|s| s.created_at.timestamp_nanos_opt().unwrap_or_default() - BASE_NANOS)
        .collect();
    assert_eq!(times, vec![-1, 0, 0, 1, 1, 2, 3, 5_000, 5_000, 5_000, 1_000_000_000]);
    assert_eq!(store.list_live().await.expect("list_live"), page.items);
}

/// Walking the pages visits every record once, for page sizes that divide the total and ones
/// that do not; a last page that is exactly full has no `next`.
pub async fn list_pages_cover_everything_exactly_once(store: Arc<dyn Store>) {
    // Records share created_at in threes, so pages end in the middle of ties.
    let sandboxes: Vec<Sandbox> = (0..24).map(|i| sample("alice", at(i / 3))).collect();
    insert_all(&*store, &sandboxes).await;
    let expected = ids(&in_list_order(sandboxes));

    for page_size in [1, 2, 5, 6, 7, 23, 24, 25, usize::MAX] {
        let all = list_all_pages(&*store, &SandboxFilter::default(), page_size).await;
        assert_eq!(ids(&all), expected, "page size {page_size}");
    }

    let exact = store.list(&SandboxFilter::default(), None, 24).await.expect("list");
    assert_eq!((exact.items.len(), exact.next), (24, None));
    let last = store
        .list(&SandboxFilter::default(), Some(&Cursor::after(&exact.items[17])), 6)
        .await
        .expect("list");
    assert_eq!(ids(&last.items), expected[18..].to_vec());
    assert_eq!(last.next, None, "an exactly full last page has no next");
    let beyond = store
        .list(&SandboxFilter::default(), Some(&Cursor::after(&exact.items[23])), 6)
        .await
        .expect("list");
    assert_eq!((beyond.items.len(), beyond.next), (0, None));
}

/// A cursor is a position, not a record: records added before it stay behind, records added
/// after it (including at the same instant with a larger id) show up, and it keeps working
/// after its own record is gone. It survives the text encoding clients carry.
pub async fn cursor_is_stable_when_records_are_added(store: Arc<dyn Store>) {
    let id = |text: &str| SandboxId::parse(text).expect("valid id");
    let mut sandboxes: Vec<Sandbox> = (0..10).map(|i| sample("alice", at_secs(i))).collect();
    sandboxes[3].id = id("8000000000000000");
    insert_all(&*store, &sandboxes).await;

    let first = store.list(&SandboxFilter::default(), None, 4).await.expect("list");
    assert_eq!(ids(&first.items), ids(&sandboxes[..4]));
    let cursor = first.next.clone().expect("more pages");
    assert_eq!(cursor.id, id("8000000000000000"));
    let cursor = Cursor::decode(&cursor.encode()).expect("cursor text round-trips");

    let mut before = sample("alice", at_secs(1));
    before.id = id("0000000000000001");
    let mut tie_before = sample("alice", at_secs(3));
    tie_before.id = id("0000000000000002");
    let mut tie_after = sample("alice", at_secs(3));
    tie_after.id = id("ffffffffffffffff");
    let later = sample("alice", at_secs(100));
    insert_all(&*store, &[before, tie_before, tie_after.clone(), later.clone()]).await;

    let mut expected = vec![tie_after.id.clone()];
    expected.extend(ids(&sandboxes[4..]));
    expected.push(later.id.clone());

    let rest = store
        .list(&SandboxFilter::default(), Some(&cursor), 100)
        .await
        .expect("list");
    assert_eq!(ids(&rest.items), expected);

    // The cursor's own record ends and is purged; the position still holds.
    let mut gone = sandboxes[3].clone();
    gone.end(Status::Terminated, Reason::Deleted, at_secs(50));
    store.update(&gone).await.expect("end");
    assert_eq!(store.purge_ended_before(at_secs(51)).await.expect("purge"), 1);
    let after_purge = store
        .list(&SandboxFilter::default(), Some(&cursor), 100)
        .await
        .expect("list");
    assert_eq!(ids(&after_purge.items), expected);
}

fn one_of_each_status() -> Vec<Sandbox> {
    Status::ALL
        .iter()
        .enumerate()
        .flat_map(|(index, status)| {
            let offset = i64::try_from(index).unwrap_or_default() * 10;
            [
                in_status(sample("alice", at_secs(offset)), *status),
                in_status(sample("bob", at_secs(offset + 1)), *status),
            ]
        })
        .collect()
}

/// `statuses` matches any of them and overrides `include_ended`; with no statuses, ended
/// records are listed only when `include_ended` is set.
pub async fn list_filters_by_status(store: Arc<dyn Store>) {
    let sandboxes = one_of_each_status();
    insert_all(&*store, &sandboxes).await;
    let with = |statuses: &[Status]| {
        sandboxes
            .iter()
            .filter(|s| statuses.contains(&s.status))
            .map(|s| s.id.clone())
            .collect::<Vec<_>>()
    };

    let cases = [
        (
            vec![Status::Running, Status::Paused],
            false,
            with(&[Status::Running, Status::Paused]),
        ),
        (vec![Status::Failed], false, with(&[Status::Failed])),
        (vec![Status::Terminated], true, with(&[Status::Terminated])),
        (
            vec![],
            false,
            with(&[
                Status::Pending,
                Status::Creating,
                Status::Running,
                Status::Paused,
                Status::Hibernated,
                Status::Stopping,
            ]),
        ),
        (vec![], true, ids(&sandboxes)),
    ];
    for (statuses, include_ended, expected) in cases {
        let filter = SandboxFilter {
            statuses: statuses.clone(),
            include_ended,
            ..SandboxFilter::default()
        };
        let page = store.list(&filter, None, 100).await.expect("list");
        assert_eq!(
            ids(&page.items),
            expected,
            "statuses {statuses:?}, include_ended {include_ended}"
        );
        assert!(page.items.iter().all(|s| filter.matches(s)));
    }
}

pub async fn list_filters_by_owner(store: Arc<dyn Store>) {
    let sandboxes = one_of_each_status();
    insert_all(&*store, &sandboxes).await;

    for (owner, include_ended) in [("alice", false), ("alice", true), ("bob", true)] {
        let filter = SandboxFilter {
            owner: Some(owner.into()),
            include_ended,
            ..SandboxFilter::default()
        };
        let expected: Vec<SandboxId> = sandboxes
            .iter()
            .filter(|s| s.owner == owner && (include_ended || !s.status.is_ended()))
            .map(|s| s.id.clone())
            .collect();
        assert!(!expected.is_empty());
        let page = store.list(&filter, None, 100).await.expect("list");
        assert_eq!(
            ids(&page.items),
            expected,
            "owner {owner}, include_ended {include_ended}"
        );
    }
    for owner in ["nobody", "Alice", "alice ", ""] {
        let filter = SandboxFilter {
            owner: Some(owner.into()),
            include_ended: true,
            ..SandboxFilter::default()
        };
        let page = store.list(&filter, None, 100).await.expect("list");
        assert!(page.items.is_empty(), "owner {owner:?} matched {page:?}");
    }
}

/// Every label in the filter must be present with exactly that value.
pub async fn list_filters_by_labels_all_must_match(store: Arc<dyn Store>) {
    let both = labelled(sample("alice", at(0)), &[("team", "red"), ("env", "prod")]);
    let team_only = labelled(sample("alice", at(1)), &[("team", "red")]);
    let other_env = labelled(sample("alice", at(2)), &[("team", "red"), ("env", "dev")]);
    let env_only = labelled(sample("alice", at(3)), &[("env", "prod")]);
    let superset = labelled(
        sample("bob", at(4)),
        &[("team", "red"), ("env", "prod"), ("extra", "x")],
    );
    let none = sample("alice", at(5));
    let swapped = labelled(sample("alice", at(6)), &[("red", "team"), ("prod", "env")]);
    let tricky = labelled(sample("alice", at(7)), &[("q", "' OR '1'='1"), ("team", "red%")]);
    let ended = in_status(
        labelled(sample("alice", at(8)), &[("team", "red"), ("env", "prod")]),
        Status::Failed,
    );
    let all = [
        both.clone(),
        team_only.clone(),
        other_env.clone(),
        env_only.clone(),
        superset.clone(),
        none,
        swapped,
        tricky.clone(),
        ended.clone(),
    ];
    insert_all(&*store, &all).await;

    let cases: Vec<(Labels<'_>, Vec<&Sandbox>)> = vec![
        (&[("team", "red"), ("env", "prod")], vec![&both, &superset, &ended]),
        (
            &[("team", "red")],
            vec![&both, &team_only, &other_env, &superset, &ended],
        ),
        (&[("env", "dev")], vec![&other_env]),
        (&[("team", "red"), ("env", "prod"), ("extra", "x")], vec![&superset]),
        (&[("team", "RED")], vec![]),
        (&[("team", "re")], vec![]),
        (&[("team", "red"), ("nope", "x")], vec![]),
        (&[("q", "' OR '1'='1")], vec![&tricky]),
        (&[("team", "red%")], vec![&tricky]),
    ];
    for (labels, expected) in cases {
        let page = store.list(&label_filter(labels), None, 100).await.expect("list");
        let expected: Vec<SandboxId> = expected.iter().map(|s| s.id.clone()).collect();
        assert_eq!(ids(&page.items), expected, "labels {labels:?}");
    }

    // Labels combine with the other filters and with paging.
    let filter = SandboxFilter {
        owner: Some("alice".into()),
        include_ended: false,
        ..label_filter(&[("team", "red"), ("env", "prod")])
    };
    let page = store.list(&filter, None, 100).await.expect("list");
    assert_eq!(ids(&page.items), vec![both.id.clone()]);
    let paged = list_all_pages(&*store, &label_filter(&[("team", "red")]), 2).await;
    assert_eq!(
        ids(&paged),
        vec![both.id, team_only.id, other_env.id, superset.id, ended.id]
    );
}

/// Whatever the filter and page size, walking the pages yields exactly the records that
/// [`SandboxFilter::matches`] accepts, in list order.
pub async fn list_agrees_with_filter_matches(store: Arc<dyn Store>) {
    let owners = ["alice", "bob", "carol"];
    let sandboxes: Vec<Sandbox> = (0..42_usize)
        .map(|i| {
            let offset = i64::try_from(i / 4).unwrap_or_default();
            let mut labels = vec![("team", if i % 2 == 0 { "red" } else { "blue" })];
            if i % 3 == 0 {
                labels.push(("env", "prod"));
            }
            if i % 5 == 0 {
                labels.push(("tier", "gold"));
            }
            let mut sandbox = labelled(sample(owners[i % 3], at_secs(offset)), &labels);
            if i % 4 == 1 {
                sandbox = pooled(sandbox, "py:latest");
            }
            in_status(sandbox, Status::ALL[i % Status::ALL.len()])
        })
        .collect();
    insert_all(&*store, &sandboxes).await;
    let sorted = in_list_order(sandboxes);

    let label = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    };
    let filters = [
        SandboxFilter::default(),
        SandboxFilter {
            include_ended: true,
            ..SandboxFilter::default()
        },
        SandboxFilter {
            owner: Some("bob".into()),
            ..SandboxFilter::default()
        },
        SandboxFilter {
            statuses: vec![Status::Pending, Status::Failed],
            ..SandboxFilter::default()
        },
        SandboxFilter {
            labels: label(&[("team", "red")]),
            ..SandboxFilter::default()
        },
        SandboxFilter {
            labels: label(&[("team", "red"), ("env", "prod")]),
            include_ended: true,
            ..SandboxFilter::default()
        },
        SandboxFilter {
            statuses: vec![Status::Running, Status::Terminated, Status::Creating],
            owner: Some("alice".into()),
            labels: label(&[("env", "prod")]),
            include_ended: false,
            pooled: Some(false),
        },
        SandboxFilter {
            pooled: Some(true),
            include_ended: true,
            ..SandboxFilter::default()
        },
        SandboxFilter {
            pooled: Some(false),
            labels: label(&[("team", "red")]),
            ..SandboxFilter::default()
        },
        SandboxFilter {
            labels: label(&[("tier", "gold"), ("team", "blue")]),
            include_ended: true,
            ..SandboxFilter::default()
        },
    ];
    for filter in &filters {
        let expected: Vec<SandboxId> = sorted
            .iter()
            .filter(|s| filter.matches(s))
            .map(|s| s.id.clone())
            .collect();
        for page_size in [3, 100] {
            let listed = list_all_pages(&*store, filter, page_size).await;
            assert_eq!(ids(&listed), expected, "{filter:?}, page size {page_size}");
        }
    }
}

/// A zero limit answers an empty page without claiming more follow.
pub async fn list_with_zero_limit_is_empty(store: Arc<dyn Store>) {
    store.insert(&sample("alice", at(0))).await.expect("insert");
    let page = store.list(&SandboxFilter::default(), None, 0).await.expect("list");
    assert_eq!((page.items.len(), page.next), (0, None));
}

/// Every record that has not ended, of every owner, in list order.
pub async fn list_live_returns_every_unended_record(store: Arc<dyn Store>) {
    assert!(store.list_live().await.expect("list_live").is_empty());
    let sandboxes = one_of_each_status();
    insert_all(&*store, &sandboxes).await;
    let live = store.list_live().await.expect("list_live");
    let expected: Vec<SandboxId> = in_list_order(sandboxes)
        .iter()
        .filter(|s| !s.status.is_ended())
        .map(|s| s.id.clone())
        .collect();
    assert_eq!(expected.len(), 12);
    assert_eq!(ids(&live), expected);
}

/// The records `store` says were written at or after `since`, sorted by id for comparison.
async fn updated_since_by_id(store: &dyn Store, since: DateTime<Utc>) -> Vec<Sandbox> {
    let mut records = store.updated_since(since).await.expect("updated_since");
    records.sort_by(|a, b| a.id.cmp(&b.id));
    records
}

fn sorted_by_id(records: &[&Sandbox]) -> Vec<Sandbox> {
    let mut records: Vec<Sandbox> = records.iter().map(|s| (*s).clone()).collect();
    records.sort_by(|a, b| a.id.cmp(&b.id));
    records
}

/// `updated_since` answers by each record's own `updated_at`, bound included, to the
/// nanosecond: inserted and updated records, ended ones too; an update moving `updated_at`
/// back moves the record out; purged records are gone.
pub async fn updated_since_returns_records_written_at_or_after_the_instant(store: Arc<dyn Store>) {
    assert!(updated_since_by_id(&*store, at(0)).await.is_empty());
    let stamped = |mut sandbox: Sandbox, updated_at: DateTime<Utc>| {
        sandbox.updated_at = updated_at;
        sandbox
    };
    let old = stamped(sample("alice", at_secs(0)), at_secs(10));
    let middle = stamped(labelled(sample("bob", at_secs(1)), &[("team", "red")]), at_secs(20));
    let ended = stamped(in_status(sample("alice", at_secs(2)), Status::Terminated), at_secs(30));
    insert_all(&*store, &[old.clone(), middle.clone(), ended.clone()]).await;

    assert_eq!(
        updated_since_by_id(&*store, at_secs(0)).await,
        sorted_by_id(&[&old, &middle, &ended])
    );
    assert_eq!(
        updated_since_by_id(&*store, at_secs(20)).await,
        sorted_by_id(&[&middle, &ended]),
        "the bound is included"
    );
    assert_eq!(
        updated_since_by_id(&*store, at_secs(20) + chrono::Duration::nanoseconds(1)).await,
        sorted_by_id(&[&ended]),
        "one nanosecond later excludes it"
    );
    assert!(updated_since_by_id(&*store, at_secs(31)).await.is_empty());

    // An update is found by its new `updated_at`, whole.
    let mut touched = old.clone();
    touched.status = Status::Paused;
    touched.updated_at = at_secs(40);
    store.update(&touched).await.expect("update");
    assert_eq!(updated_since_by_id(&*store, at_secs(35)).await, vec![touched.clone()]);
    // The record's own time counts, not when the write happened.
    let mut backdated = middle.clone();
    backdated.updated_at = at_secs(5);
    store.update(&backdated).await.expect("update");
    assert_eq!(
        updated_since_by_id(&*store, at_secs(20)).await,
        sorted_by_id(&[&ended, &touched])
    );

    assert_eq!(store.purge_ended_before(at_secs(1_000)).await.expect("purge"), 1);
    assert_eq!(
        updated_since_by_id(&*store, at_secs(0)).await,
        sorted_by_id(&[&touched, &backdated])
    );
}
