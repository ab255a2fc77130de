//! The contract of env-services: kept whole, unique ids, updates only at the revision read,
//! listed by creation, deleted.

use std::sync::Arc;

use berth_core::ServiceStatus;

use crate::{Store, StoreError};

use super::fixtures::*;

/// Every field of a service survives a write and a read, nanoseconds included.
pub async fn service_round_trip_preserves_every_field(store: Arc<dyn Store>) {
    let full = fully_populated_service();
    let minimal = sample_service("0000000000000001", at(5));
    store.insert_service(&full).await.expect("insert full service");
    store.insert_service(&minimal).await.expect("insert minimal service");
    assert_eq!(
        store.get_service(&full.id).await.expect("get_service"),
        Some(full.clone())
    );
    assert_eq!(
        store.get_service(&minimal.id).await.expect("get_service"),
        Some(minimal)
    );
    assert_eq!(
        store
            .get_service(&service_id("0000000000000002"))
            .await
            .expect("get_service"),
        None
    );
}

/// A second insert of an id fails and keeps the first.
pub async fn insert_of_an_existing_service_fails_and_keeps_the_first(store: Arc<dyn Store>) {
    let first = sample_service("00000000000000aa", at(0));
    store.insert_service(&first).await.expect("insert");
    let mut clash = first.clone();
    clash.replicas = 9;
    assert!(matches!(store.insert_service(&clash).await, Err(StoreError::Other(_))));
    assert_eq!(store.get_service(&first.id).await.expect("get_service"), Some(first));
}

/// An update replaces the record whole when the stored one is at the revision before its own;
/// a stale writer (or an unknown id) writes nothing and learns it.
pub async fn update_service_replaces_only_the_revision_it_read(store: Arc<dyn Store>) {
    let stored = sample_service("00000000000000bb", at(0));
    store.insert_service(&stored).await.expect("insert");

    let mut scaled = stored.clone();
    scaled.replicas = 3;
    scaled.revision = 2;
    scaled.updated_at = at(10);
    assert!(store.update_service(&scaled).await.expect("update"));
    assert_eq!(
        store.get_service(&stored.id).await.expect("get_service"),
        Some(scaled.clone())
    );

    // A writer that read revision 1 lost the race: nothing changes.
    let mut stale = stored.clone();
    stale.status = ServiceStatus::Running;
    stale.revision = 2;
    assert!(!store.update_service(&stale).await.expect("stale update"));
    assert_eq!(store.get_service(&stored.id).await.expect("get_service"), Some(scaled));

    let mut unknown = sample_service("00000000000000cc", at(0));
    unknown.revision = 2;
    assert!(!store.update_service(&unknown).await.expect("update unknown"));
    assert_eq!(store.get_service(&unknown.id).await.expect("get_service"), None);
}

/// Services list in creation order; a delete says whether there was one to delete.
pub async fn list_services_orders_by_creation_and_delete_reports_whether_it_existed(store: Arc<dyn Store>) {
    let later = sample_service("0000000000000001", at(20));
    let earlier = sample_service("00000000000000ff", at(10));
    assert_eq!(store.list_services().await.expect("list_services"), vec![]);
    store.insert_service(&later).await.expect("insert");
    store.insert_service(&earlier).await.expect("insert");
    assert_eq!(
        store.list_services().await.expect("list_services"),
        vec![earlier.clone(), later.clone()]
    );
    assert!(store.delete_service(&earlier.id).await.expect("delete"));
    assert!(!store.delete_service(&earlier.id).await.expect("delete again"));
    assert_eq!(store.list_services().await.expect("list_services"), vec![later]);
}
