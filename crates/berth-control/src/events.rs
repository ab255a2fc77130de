//! The lifecycle events of sandboxes (`GET /v1/events`): derived from every change of a record in
//! the index — this process's writes and, through `follow_store`, those of every other process
//! sharing the store — kept in a bounded history and fanned out to subscribers.
//!
//! Event ids increase by one per event on this process, from 1; a subscriber resumes after the
//! last id it saw while that id is still in the history, and is told plainly when it is not.
//! Sandboxes waiting in a warm pool are berth's, not anyone's yet: they have no events until
//! claimed (`sandbox.claimed`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use berth_core::{Reason, Sandbox, SandboxId, Status};
use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

/// How many events the history keeps for subscribers that resume.
pub const HISTORY: usize = 10_000;
/// How far a live subscriber may fall behind before it is resumed from the history.
const FAN_OUT: usize = 1024;

/// What happened to a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    Created,
    /// Taken from a warm pool by a create: from now on an ordinary sandbox of its owner.
    Claimed,
    /// Any other status change (creating, running, failed, exited…), with its reason.
    Status,
    Paused,
    Resumed,
    /// Its deadline moved.
    Renewed,
    /// Its egress policy changed while it ran.
    Network,
    /// Its main process failed and the engine restarted it (`restart: {"on_failure": N}`).
    Restarted,
    /// A snapshot of it was taken (by itself or for a fork); the event names the snapshot.
    Snapshot,
    /// Ended (or ending) because a client deleted it.
    Deleted,
    /// Ended because its time ran out.
    Expired,
}

impl EventKind {
    pub const ALL: [EventKind; 11] = [
        EventKind::Created,
        EventKind::Claimed,
        EventKind::Status,
        EventKind::Paused,
        EventKind::Resumed,
        EventKind::Renewed,
        EventKind::Network,
        EventKind::Restarted,
        EventKind::Snapshot,
        EventKind::Deleted,
        EventKind::Expired,
    ];

    /// The SSE `event:` name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "sandbox.created",
            EventKind::Claimed => "sandbox.claimed",
            EventKind::Status => "sandbox.status",
            EventKind::Paused => "sandbox.paused",
            EventKind::Resumed => "sandbox.resumed",
            EventKind::Renewed => "sandbox.renewed",
            EventKind::Network => "sandbox.network",
            EventKind::Restarted => "sandbox.restarted",
            EventKind::Snapshot => "sandbox.snapshot",
            EventKind::Deleted => "sandbox.deleted",
            EventKind::Expired => "sandbox.expired",
        }
    }

    /// `sandbox.deleted` or just `deleted`.
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.strip_prefix("sandbox.").unwrap_or(name);
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str().strip_prefix("sandbox.") == Some(name))
    }
}

/// One event, as subscribers get it.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxEvent {
    pub id: u64,
    pub kind: EventKind,
    pub time: DateTime<Utc>,
    pub sandbox: SandboxId,
    pub owner: String,
    pub labels: BTreeMap<String, String>,
    /// The status after the change, with its reason and message.
    pub status: Status,
    pub reason: Option<Reason>,
    pub message: Option<String>,
    pub expires_at: DateTime<Utc>,
    /// The snapshot a `sandbox.snapshot` event is about.
    pub snapshot: Option<String>,
}

/// The kinds of event one change of a record stands for (none for a record nobody sees yet).
pub fn kinds_of_change(previous: Option<&Sandbox>, current: &Sandbox) -> Vec<EventKind> {
    if current.pool.is_some() {
        return Vec::new();
    }
    let Some(previous) = previous else {
        return vec![EventKind::Created];
    };
    if previous.pool.is_some() {
        return vec![EventKind::Claimed];
    }
    let mut kinds = Vec::new();
    if previous.status != current.status {
        kinds.push(match (previous.status, current.status, &current.status_reason) {
            (Status::Running, Status::Paused, _) => EventKind::Paused,
            (Status::Paused, Status::Running, _) => EventKind::Resumed,
            // A delete shows as `Stopping` first; its `Terminated` that follows is a status.
            (from, _, Some(Reason::Deleted)) if from != Status::Stopping => EventKind::Deleted,
            (_, _, Some(Reason::Expired)) if current.status.is_ended() || current.status == Status::Stopping => {
                if previous.status == Status::Stopping && previous.status_reason == Some(Reason::Expired) {
                    EventKind::Status
                } else {
                    EventKind::Expired
                }
            }
            _ => EventKind::Status,
        });
    }
    if previous.spec.network != current.spec.network {
        kinds.push(EventKind::Network);
    }
    if current.restarts > previous.restarts {
        kinds.push(EventKind::Restarted);
    }
    if current.last_snapshot.is_some() && current.last_snapshot != previous.last_snapshot {
        kinds.push(EventKind::Snapshot);
    }
    if previous.expires_at != current.expires_at && !current.status.is_ended() && previous.status == current.status {
        kinds.push(EventKind::Renewed);
    }
    kinds
}

#[derive(Debug)]
struct History {
    next_id: u64,
    events: VecDeque<Arc<SandboxEvent>>,
}

/// The events of this process: a bounded history and a live fan-out.
#[derive(Debug)]
pub struct EventHub {
    history: Mutex<History>,
    live: broadcast::Sender<Arc<SandboxEvent>>,
    capacity: usize,
    /// Set once the server stops: streams end at once rather than hold the shutdown's grace.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self::with_capacity(HISTORY)
    }
}

/// What a subscriber gets: the events after the id it gave (from the history), then the live
/// ones. `missed` when that id is not one whose successors the history still holds: the events
/// the history has are replayed (none, for an id newer than any here).
pub struct Subscription {
    /// The newest event id when it subscribed: the live events come after it.
    pub last_id: u64,
    pub replay: Vec<Arc<SandboxEvent>>,
    pub missed: Option<Missed>,
    pub live: broadcast::Receiver<Arc<SandboxEvent>>,
}

/// A resume point older than the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missed {
    pub asked_after: u64,
    /// The oldest event still kept (0 when none is).
    pub oldest: u64,
}

impl EventHub {
    pub fn with_capacity(capacity: usize) -> Self {
        let (live, _) = broadcast::channel(FAN_OUT);
        EventHub {
            history: Mutex::new(History {
                next_id: 1,
                events: VecDeque::new(),
            }),
            live,
            capacity: capacity.max(1),
            closing: tokio::sync::watch::channel(false).0,
        }
    }

    /// Ends every subscriber's stream (the server is stopping).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Changes to `true` when the server stops.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Records the events one change of a record stands for.
    pub fn record(&self, previous: Option<&Sandbox>, current: &Sandbox) {
        let kinds = kinds_of_change(previous, current);
        if kinds.is_empty() {
            return;
        }
        let mut history = self.history.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for kind in kinds {
            let event = Arc::new(SandboxEvent {
                id: history.next_id,
                kind,
                time: Utc::now(),
                sandbox: current.id.clone(),
                owner: current.owner.clone(),
                labels: current.spec.labels.clone(),
                status: current.status,
                reason: current.status_reason.clone(),
                message: current.status_message.clone(),
                expires_at: current.expires_at,
                snapshot: (kind == EventKind::Snapshot)
                    .then(|| current.last_snapshot.clone())
                    .flatten(),
            });
            history.next_id += 1;
            if history.events.len() == self.capacity {
                history.events.pop_front();
            }
            history.events.push_back(Arc::clone(&event));
            // No subscriber is not an error.
            let _ = self.live.send(event);
        }
    }

    /// The newest event id so far (0 before the first).
    pub fn last_id(&self) -> u64 {
        self.history.lock().map(|history| history.next_id - 1).unwrap_or(0)
    }

    /// Events after `after` (`None`: only those to come), then the live ones: taken under one lock
    /// with the publisher, so none is lost or repeated between the two.
    pub fn subscribe(&self, after: Option<u64>) -> Subscription {
        let history = self.history.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let live = self.live.subscribe();
        let last = history.next_id - 1;
        let Some(after) = after else {
            return Subscription {
                last_id: last,
                replay: Vec::new(),
                missed: None,
                live,
            };
        };
        let oldest = history.events.front().map_or(history.next_id, |event| event.id);
        // Older than the history, or newer than any event here (another process's id, or one
        // from before a restart): what happened since cannot be told.
        let missed = (after > last || after + 1 < oldest).then_some(Missed {
            asked_after: after,
            oldest: history.events.front().map_or(0, |event| event.id),
        });
        let replay = history
            .events
            .iter()
            .filter(|event| event.id > after)
            .cloned()
            .collect();
        Subscription {
            last_id: last,
            replay,
            missed,
            live,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::{SandboxRequest, SpecPolicy};

    fn sandbox(status: Status) -> Sandbox {
        let spec = SandboxRequest {
            image: Some("busybox".into()),
            ..SandboxRequest::default()
        }
        .validate(&SpecPolicy::default())
        .expect("a valid spec");
        let mut sandbox = Sandbox::new_pending(spec, "team-a".into(), "local".into(), None, Utc::now());
        sandbox.status = status;
        sandbox
    }

    fn changed(previous: &Sandbox, change: impl FnOnce(&mut Sandbox)) -> Sandbox {
        let mut current = previous.clone();
        change(&mut current);
        current
    }

    #[test]
    fn each_change_of_a_record_is_named_once() {
        let running = sandbox(Status::Running);
        assert_eq!(kinds_of_change(None, &running), [EventKind::Created]);
        let paused = changed(&running, |s| s.status = Status::Paused);
        assert_eq!(kinds_of_change(Some(&running), &paused), [EventKind::Paused]);
        assert_eq!(kinds_of_change(Some(&paused), &running), [EventKind::Resumed]);
        let renewed = changed(&running, |s| s.expires_at += chrono::Duration::minutes(5));
        assert_eq!(kinds_of_change(Some(&running), &renewed), [EventKind::Renewed]);
        let stopping = changed(&running, |s| {
            s.status = Status::Stopping;
            s.status_reason = Some(Reason::Deleted);
        });
        assert_eq!(kinds_of_change(Some(&running), &stopping), [EventKind::Deleted]);
        let terminated = changed(&stopping, |s| s.status = Status::Terminated);
        assert_eq!(kinds_of_change(Some(&stopping), &terminated), [EventKind::Status]);
        let expired = changed(&running, |s| {
            s.status = Status::Terminated;
            s.status_reason = Some(Reason::Expired);
        });
        assert_eq!(kinds_of_change(Some(&running), &expired), [EventKind::Expired]);
        let exited = changed(&running, |s| {
            s.status = Status::Failed;
            s.status_reason = Some(Reason::Exited);
        });
        assert_eq!(kinds_of_change(Some(&running), &exited), [EventKind::Status]);
        let sealed = changed(&running, |s| s.spec.network.egress = berth_core::Egress::Deny);
        assert_eq!(kinds_of_change(Some(&running), &sealed), [EventKind::Network]);
        let restarted = changed(&running, |s| {
            s.restarts = 1;
            s.exit_code = Some(3);
        });
        assert_eq!(kinds_of_change(Some(&running), &restarted), [EventKind::Restarted]);
        let snapshotted = changed(&running, |s| s.last_snapshot = Some("0123456789abcdef".into()));
        assert_eq!(kinds_of_change(Some(&running), &snapshotted), [EventKind::Snapshot]);
        assert!(kinds_of_change(Some(&snapshotted), &snapshotted).is_empty());
        // Nothing seen by a client changed: no event.
        let touched = changed(&running, |s| s.updated_at += chrono::Duration::seconds(1));
        assert!(kinds_of_change(Some(&running), &touched).is_empty());
    }

    #[test]
    fn pooled_sandboxes_have_no_events_until_claimed() {
        let pooled = changed(&sandbox(Status::Running), |s| s.pool = Some("web:1".into()));
        assert!(kinds_of_change(None, &pooled).is_empty());
        let refreshed = changed(&pooled, |s| s.status = Status::Creating);
        assert!(kinds_of_change(Some(&pooled), &refreshed).is_empty());
        let claimed = changed(&pooled, |s| s.pool = None);
        assert_eq!(kinds_of_change(Some(&pooled), &claimed), [EventKind::Claimed]);
    }

    #[test]
    fn kinds_parse_with_or_without_their_prefix() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
            assert_eq!(
                EventKind::parse(kind.as_str().trim_start_matches("sandbox.")),
                Some(kind)
            );
        }
        assert_eq!(EventKind::parse("sandbox.exploded"), None);
    }

    #[tokio::test]
    async fn a_subscriber_resumes_after_an_id_and_is_told_when_it_fell_out_of_the_history() {
        let hub = EventHub::with_capacity(3);
        let first = sandbox(Status::Running);
        for _ in 0..5 {
            hub.record(None, &first);
        }
        assert_eq!(hub.last_id(), 5);
        let resumed = hub.subscribe(Some(3));
        assert_eq!(resumed.replay.iter().map(|e| e.id).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(resumed.missed, None);
        let late = hub.subscribe(Some(1));
        assert_eq!(
            late.missed,
            Some(Missed {
                asked_after: 1,
                oldest: 3
            })
        );
        assert_eq!(late.replay.iter().map(|e| e.id).collect::<Vec<_>>(), [3, 4, 5]);
        let current = hub.subscribe(Some(5));
        assert!(current.replay.is_empty() && current.missed.is_none());
        let mut live = hub.subscribe(None);
        assert!(live.replay.is_empty());
        hub.record(None, &first);
        assert_eq!(live.live.recv().await.unwrap().id, 6);
        // An id this process never gave (another process's, or from before a restart) is
        // older than its history, or newer than its events: said so either way, never silent.
        assert!(hub.subscribe(Some(0)).missed.is_some());
        let unknown = hub.subscribe(Some(99));
        assert!(unknown.replay.is_empty() && unknown.missed.is_some());
    }
}
