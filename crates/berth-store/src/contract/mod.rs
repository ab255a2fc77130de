//! The backend-independent contract of [`Store`](crate::Store): one `pub async fn` per behaviour, each taking
//! a fresh, empty store (leadership and cross-process ones also a second handle on the same
//! database, as another process would hold), and
//! [`store_contract_tests!`](crate::store_contract_tests) to run them all as separate tests
//! against a backend.
//!
//! A backend's test file runs the whole suite with:
//!
//! ```ignore
//! /// An empty store + whatever keeps its database alive (a temp dir, a throwaway database).
//! async fn fresh() -> (Arc<dyn Store>, Guard) { /* ... */ }
//! /// Another handle on the database `guard` keeps, as a second process would open it.
//! async fn reopen(guard: &Guard) -> Arc<dyn Store> { /* ... */ }
//! berth_store::store_contract_tests!(fresh, reopen);
//! ```
//!
//! The behaviours are grouped by aspect, one module each, over the shared [`fixtures`]; every
//! contract function and fixture is re-exported here, where the macro and other crates' tests
//! name them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test suite: a panic is a failed contract with its message"
)]

pub mod fixtures;
pub mod idempotency;
pub mod identity;
pub mod pools;
pub mod processes;
pub mod queries;
pub mod records;
pub mod services;
pub mod templates;

pub use fixtures::*;
pub use idempotency::*;
pub use identity::*;
pub use pools::*;
pub use processes::*;
pub use queries::*;
pub use records::*;
pub use services::*;
pub use templates::*;

/// Generates one `#[tokio::test]` per contract function. `$fresh` is an async fn (or closure)
/// returning `(Arc<dyn Store>, guard)`: an empty store, and anything that must live as long as
/// it (a temp dir, a throwaway database). `$reopen` is an async fn taking `&guard` and
/// returning another `Arc<dyn Store>` on the same database, opened the way a second process
/// would. The calling crate needs `tokio` as a dev-dependency.
#[macro_export]
macro_rules! store_contract_tests {
    ($fresh:expr, $reopen:expr) => {
        $crate::store_contract_tests!(@each $fresh;
            round_trip_preserves_every_field,
            get_of_unknown_id_is_none,
            insert_of_existing_id_is_already_exists,
            idempotency_key_is_unique_per_owner,
            find_by_idempotency_key_matches_owner_and_key,
            update_replaces_the_whole_record,
            update_of_unknown_id_is_not_found,
            failed_update_changes_nothing,
            list_orders_by_created_at_then_id,
            list_pages_cover_everything_exactly_once,
            cursor_is_stable_when_records_are_added,
            list_filters_by_status,
            list_filters_by_owner,
            list_filters_by_labels_all_must_match,
            list_agrees_with_filter_matches,
            list_with_zero_limit_is_empty,
            list_live_returns_every_unended_record,
            purge_deletes_only_records_ended_before_cutoff,
            concurrent_writers_all_succeed,
            concurrent_inserts_admit_one_per_idempotency_key,
            ping_answers,
            updated_since_returns_records_written_at_or_after_the_instant,
            describe_names_the_backend,
            template_round_trip_preserves_every_field,
            insert_of_existing_template_is_template_exists,
            update_template_replaces_it_whole_and_a_missing_one_is_not_found,
            list_templates_orders_by_name_then_tag,
            delete_template_reports_whether_it_existed,
            list_filters_by_pooled,
            claim_from_an_empty_or_unknown_pool_is_none,
            claim_takes_the_oldest_running_pooled_record,
            a_refused_claim_writes_nothing,
            service_round_trip_preserves_every_field,
            insert_of_an_existing_service_fails_and_keeps_the_first,
            update_service_replaces_only_the_revision_it_read,
            list_services_orders_by_creation_and_delete_reports_whether_it_existed,
            keys_are_found_by_hash_and_id_and_unique,
            quotas_are_set_replaced_listed_and_removed,
            insert_within_counts_only_the_owners_live_records,
            a_claim_past_the_claimers_quota_leaves_the_sandbox_pooled,
            the_audit_log_reads_back_in_order_by_time_and_owner,
        );
        $crate::store_contract_tests!(@pair $fresh, $reopen;
            leadership_is_exclusive_per_cluster,
            a_dropped_lease_frees_leadership,
            handles_on_one_database_see_each_others_writes,
            concurrent_claims_through_two_handles_hand_out_each_sandbox_once,
            a_revocation_is_seen_by_every_handle_and_kept_once,
            concurrent_inserts_through_two_handles_admit_exactly_the_quota,
            updates_if_unchanged_through_two_handles_let_one_writer_win,
        );
    };
    (@each $fresh:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let (store, _guard) = ($fresh)().await;
                $crate::contract::$name(store).await;
            }
        )*
    };
    (@pair $fresh:expr, $reopen:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let (store, guard) = ($fresh)().await;
                let other = ($reopen)(&guard).await;
                $crate::contract::$name(store, other).await;
            }
        )*
    };
}
