//! `GET /v1/events`: the lifecycle events of sandboxes as server-sent events (or NDJSON), filtered,
//! owner-scoped, and resumable from the process's bounded history (`Last-Event-ID` or `since`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use berth_api::{ProblemKind, SandboxEventView};
use berth_control::events::{EventKind, Missed, SandboxEvent};
use berth_control::service::SandboxService;
use berth_core::Caller;
use futures::stream::{self, Stream, StreamExt};
use tokio::sync::broadcast;

use crate::error::ApiError;
use crate::sandboxes::QueryParams;

const NDJSON: &str = "application/x-ndjson";

/// Which events a subscriber asked for (and may see).
#[derive(Debug, Clone, Default)]
struct EventFilter {
    labels: BTreeMap<String, String>,
    owner: Option<String>,
    ids: BTreeSet<String>,
    kinds: BTreeSet<EventKind>,
}

impl EventFilter {
    fn admits(&self, event: &SandboxEvent) -> bool {
        self.owner.as_ref().is_none_or(|owner| *owner == event.owner)
            && (self.ids.is_empty() || self.ids.contains(event.sandbox.as_str()))
            && (self.kinds.is_empty() || self.kinds.contains(&event.kind))
            && self
                .labels
                .iter()
                .all(|(key, value)| event.labels.get(key) == Some(value))
    }
}

/// The lifecycle events of sandboxes, live.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "sandboxes",
    description = "One event per lifecycle change of a sandbox — `sandbox.created`, `sandbox.claimed` (from a warm \
pool), `sandbox.status` (with `reason` and `message`), `sandbox.paused`, `sandbox.resumed`, `sandbox.renewed`, \
`sandbox.network`, `sandbox.restarted`, `sandbox.deleted`, `sandbox.expired` — made on this server process or on any other sharing its \
store, in order per sandbox. Server-sent events (`event:` the type, `id:` the event id, `data:` the event as JSON), \
or one JSON object per line with `Accept: application/x-ndjson`. A member sees its own owner's sandboxes only. \
Resumes after the id in `Last-Event-ID` (or `since`) from this process's history of the last 10 000 events; an id \
it cannot resume from (too old, or another process's) gets one `error` event saying so, then the events it still \
has. Ids are this process's own: a client that reconnects to another process starts again from there.",
    params(
        ("label" = Option<Vec<String>>, Query, description = "`key=value`; repeat to AND several"),
        ("owner" = Option<String>, Query, description = "Only this owner's sandboxes (a member's are always its own)"),
        ("id" = Option<Vec<String>>, Query, description = "Only these sandboxes; repeat or comma-separate"),
        ("type" = Option<Vec<String>>, Query, description = "Only these types (`sandbox.deleted` or `deleted`); repeat or comma-separate"),
        ("since" = Option<u64>, Query, description = "Resume after this event id (as `Last-Event-ID`)"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event id"),
    ),
    responses(
        (status = 200, description = "The events, as they come (`text/event-stream`, or `application/x-ndjson` when asked for)", body = SandboxEventView, content_type = "text/event-stream"),
        (status = 400, body = berth_api::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn events(
    State(service): State<Arc<SandboxService>>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(query.as_deref(), &["label", "owner", "id", "type", "since"])?;
    let mut filter = EventFilter {
        labels: params.labels()?,
        ..EventFilter::default()
    };
    filter.owner = params.single("owner").map(str::to_owned);
    if !caller.is_admin() {
        filter.owner = Some(caller.owner.clone());
    }
    filter.ids = comma_separated(params.all("id")).map(str::to_owned).collect();
    for name in comma_separated(params.all("type")) {
        let kind = EventKind::parse(name).ok_or_else(|| {
            let known: Vec<&str> = EventKind::ALL.iter().map(|kind| kind.as_str()).collect();
            ApiError::field(
                ProblemKind::InvalidBody,
                "type",
                format!("`{name}` is not an event type; expected one of {}", known.join(", ")),
            )
        })?;
        filter.kinds.insert(kind);
    }
    let resume_from = match params.single("since") {
        Some(since) => Some(("since", since.to_owned())),
        None => headers
            .get("last-event-id")
            .and_then(|value| value.to_str().ok())
            .map(|value| ("Last-Event-ID", value.trim().to_owned())),
    };
    let after = resume_from
        .map(|(name, value)| {
            value.parse::<u64>().map_err(|_| {
                ApiError::field(
                    ProblemKind::InvalidBody,
                    name,
                    format!("`{value}` is not an event id (a number)"),
                )
            })
        })
        .transpose()?;

    let events = subscribe(service, filter, after);
    let wants_ndjson = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|kind| kind.split(';').next().unwrap_or_default().trim() == NDJSON);
    if wants_ndjson {
        let lines = events.map(|item| {
            let mut line = match item {
                Item::Event(event) => serde_json::to_vec(&view(&event)).unwrap_or_default(),
                Item::Error(message) => {
                    serde_json::to_vec(&serde_json::json!({"type": "error", "message": message})).unwrap_or_default()
                }
            };
            line.push(b'\n');
            Ok::<_, Infallible>(line)
        });
        let mut response = Body::from_stream(lines).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
        return Ok(response);
    }
    let sse = events.map(|item| {
        Ok::<_, Infallible>(match item {
            Item::Event(event) => Event::default()
                .event(event.kind.as_str())
                .id(event.id.to_string())
                .data(serde_json::to_string(&view(&event)).unwrap_or_default()),
            Item::Error(message) => Event::default()
                .event("error")
                .data(serde_json::json!({"type": "error", "message": message}).to_string()),
        })
    });
    Ok(Sse::new(sse).keep_alive(KeepAlive::default()).into_response())
}

fn comma_separated<'a>(values: impl Iterator<Item = &'a str>) -> impl Iterator<Item = &'a str> {
    values
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|value| !value.is_empty())
}

enum Item {
    Event(Arc<SandboxEvent>),
    Error(String),
}

/// What a stream still has to send before it listens again.
struct Cursor {
    service: Arc<SandboxService>,
    filter: EventFilter,
    pending: VecDeque<Item>,
    live: broadcast::Receiver<Arc<SandboxEvent>>,
    last_sent: u64,
    closing: tokio::sync::watch::Receiver<bool>,
}

fn subscribe(service: Arc<SandboxService>, filter: EventFilter, after: Option<u64>) -> impl Stream<Item = Item> {
    let subscription = service.events().subscribe(after);
    let mut pending = VecDeque::new();
    if let Some(missed) = subscription.missed {
        pending.push_back(Item::Error(missed_message(missed, subscription.last_id)));
    }
    let last_sent = subscription.last_id;
    pending.extend(
        subscription
            .replay
            .into_iter()
            .filter(|event| filter.admits(event))
            .map(Item::Event),
    );
    let closing = service.events().closing();
    let cursor = Cursor {
        closing,
        service,
        filter,
        pending,
        live: subscription.live,
        last_sent,
    };
    stream::unfold(cursor, |mut cursor| async move {
        loop {
            if let Some(item) = cursor.pending.pop_front() {
                return Some((item, cursor));
            }
            let received = tokio::select! {
                received = cursor.live.recv() => received,
                _ = cursor.closing.wait_for(|closing| *closing) => return None,
            };
            match received {
                Ok(event) => {
                    if event.id <= cursor.last_sent {
                        continue;
                    }
                    cursor.last_sent = event.id;
                    if cursor.filter.admits(&event) {
                        return Some((Item::Event(event), cursor));
                    }
                }
                // Fell behind the fan-out: the history still has what was skipped, unless the
                // subscriber is slower than the history is long.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let resumed = cursor.service.events().subscribe(Some(cursor.last_sent));
                    if let Some(missed) = resumed.missed {
                        cursor
                            .pending
                            .push_back(Item::Error(missed_message(missed, resumed.last_id)));
                    }
                    for event in resumed.replay {
                        cursor.last_sent = event.id;
                        if cursor.filter.admits(&event) {
                            cursor.pending.push_back(Item::Event(event));
                        }
                    }
                    cursor.live = resumed.live;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

fn missed_message(missed: Missed, last: u64) -> String {
    if missed.asked_after > last {
        format!(
            "event {} is not one of this server's (its newest is {last}): what happened since cannot be told; streaming from here",
            missed.asked_after
        )
    } else {
        format!(
            "the events after {} fell out of this server's history (it keeps the last {} from {}): some changes were missed; streaming what it has",
            missed.asked_after,
            berth_control::events::HISTORY,
            missed.oldest
        )
    }
}

fn view(event: &SandboxEvent) -> SandboxEventView {
    SandboxEventView {
        id: event.id,
        kind: event.kind.as_str().to_owned(),
        time: event.time,
        sandbox_id: event.sandbox.to_string(),
        owner: event.owner.clone(),
        labels: event.labels.clone(),
        status: event.status.to_string(),
        reason: event.reason.as_ref().map(|reason| reason.as_str().to_owned()),
        message: event.message.clone(),
        expires_at: event.expires_at,
        snapshot_id: event.snapshot.clone(),
    }
}
