//! The contract of templates: kept whole, unique per (name, tag), replaced whole, listed by name
//! and tag, deleted.

use std::sync::Arc;
use std::time::Duration;

use berth_core::{PoolSpec, Template};

use crate::{Store, StoreError};

use super::fixtures::*;

/// Insert then get returns the identical template: every field, sub-second times, the pool
/// and the error, set and unset; list returns the same records.
pub async fn template_round_trip_preserves_every_field(store: Arc<dyn Store>) {
    let full = fully_populated_template();
    let minimal = sample_template("minimal", "latest", at(5));
    store.insert_template(&full).await.expect("insert full template");
    store.insert_template(&minimal).await.expect("insert minimal template");

    let read = store
        .get_template(&full.name, &full.tag)
        .await
        .expect("get_template")
        .expect("full template exists");
    assert_eq!(read, full);
    assert_eq!(
        read.updated_at.timestamp_subsec_nanos(),
        123_456_796,
        "nanoseconds survive"
    );
    assert_eq!(
        store.get_template("minimal", "latest").await.expect("get_template"),
        Some(minimal.clone())
    );
    assert_eq!(
        store.get_template("minimal", "other").await.expect("get_template"),
        None
    );
    assert_eq!(
        store.get_template("unknown", "latest").await.expect("get_template"),
        None
    );
    assert_eq!(
        store.list_templates().await.expect("list_templates"),
        vec![minimal, full]
    );
}

/// A second insert of a (name, tag) fails and keeps the first; another tag of the same name,
/// or the same tag of another name, is a different template.
pub async fn insert_of_existing_template_is_template_exists(store: Arc<dyn Store>) {
    let first = sample_template("py", "3.12", at(0));
    store.insert_template(&first).await.expect("insert");
    let mut clash = sample_template("py", "3.12", at(9));
    clash.error = Some("a different record".into());
    for attempt in [&first, &clash] {
        match store.insert_template(attempt).await {
            Err(StoreError::TemplateExists { name, tag }) => assert_eq!((name.as_str(), tag.as_str()), ("py", "3.12")),
            other => panic!("expected TemplateExists, got {other:?}"),
        }
    }
    assert_eq!(
        store.get_template("py", "3.12").await.expect("get_template"),
        Some(first.clone())
    );
    let other_tag = sample_template("py", "3.13", at(1));
    store.insert_template(&other_tag).await.expect("same name, other tag");
    let other_name = sample_template("ruby", "3.12", at(2));
    store.insert_template(&other_name).await.expect("same tag, other name");
    assert_eq!(
        store.list_templates().await.expect("list_templates"),
        vec![first, other_tag, other_name]
    );
}

/// An update replaces every field of the template it names; updating one that does not exist
/// fails and creates nothing.
pub async fn update_template_replaces_it_whole_and_a_missing_one_is_not_found(store: Arc<dyn Store>) {
    let mut template = sample_template("py", "latest", at(0));
    store.insert_template(&template).await.expect("insert");
    template.spec = fully_populated().spec;
    template.pool = Some(PoolSpec {
        min_ready: 2,
        max_idle_age: Duration::from_secs(60),
    });
    template.error = Some("image missing".into());
    template.updated_at = at_secs(5);
    store.update_template(&template).await.expect("update");
    assert_eq!(
        store.get_template("py", "latest").await.expect("get_template"),
        Some(template.clone())
    );
    // And back: optional fields can be cleared.
    template.pool = None;
    template.error = None;
    template.updated_at = at_secs(6);
    store.update_template(&template).await.expect("update");
    assert_eq!(
        store.get_template("py", "latest").await.expect("get_template"),
        Some(template.clone())
    );

    let missing = sample_template("py", "other", at(0));
    match store.update_template(&missing).await {
        Err(StoreError::TemplateNotFound { name, tag }) => assert_eq!((name.as_str(), tag.as_str()), ("py", "other")),
        other => panic!("expected TemplateNotFound, got {other:?}"),
    }
    assert_eq!(store.get_template("py", "other").await.expect("get_template"), None);
    assert_eq!(store.list_templates().await.expect("list_templates"), vec![template]);
}

/// Templates list by (name, tag), comparing bytes: `10` before `2`, `Latest` before `latest`,
/// whatever the database's locale.
pub async fn list_templates_orders_by_name_then_tag(store: Arc<dyn Store>) {
    assert!(store.list_templates().await.expect("list_templates").is_empty());
    let keys = [
        ("b", "1"),
        ("a", "2"),
        ("a-b", "x"),
        ("a", "10"),
        ("ab", "latest"),
        ("a", "latest"),
        ("a", "Latest"),
        ("a", "_"),
    ];
    let templates: Vec<Template> = keys
        .iter()
        .zip(0_i64..)
        .map(|((name, tag), offset)| sample_template(name, tag, at_secs(offset)))
        .collect();
    for template in &templates {
        store.insert_template(template).await.expect("insert");
    }
    let mut expected = templates;
    expected.sort_by(|a, b| (&a.name, &a.tag).cmp(&(&b.name, &b.tag)));
    let listed = store.list_templates().await.expect("list_templates");
    let order = |list: &[Template]| -> Vec<String> { list.iter().map(|t| format!("{}:{}", t.name, t.tag)).collect() };
    assert_eq!(order(&listed), order(&expected));
    assert_eq!(listed, expected);
}

/// Delete answers whether the template existed, touches no other, and frees its (name, tag).
pub async fn delete_template_reports_whether_it_existed(store: Arc<dyn Store>) {
    let latest = sample_template("py", "latest", at(0));
    let pinned = sample_template("py", "3.12", at(1));
    store.insert_template(&latest).await.expect("insert");
    store.insert_template(&pinned).await.expect("insert");

    assert!(store.delete_template("py", "latest").await.expect("delete"));
    assert!(!store.delete_template("py", "latest").await.expect("delete again"));
    assert!(
        !store
            .delete_template("unknown", "latest")
            .await
            .expect("delete unknown")
    );
    assert_eq!(store.get_template("py", "latest").await.expect("get_template"), None);
    assert_eq!(
        store.list_templates().await.expect("list_templates"),
        vec![pinned.clone()]
    );
    store
        .insert_template(&latest)
        .await
        .expect("a deleted name:tag is free");
    assert_eq!(
        store.list_templates().await.expect("list_templates"),
        vec![pinned, latest]
    );
}
