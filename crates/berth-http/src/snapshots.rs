//! Snapshot and fork handlers: `POST /v1/sandboxes/{id}/snapshots` and `…/fork` (the gate has
//! checked that the sandbox is the caller's owner's), and `/v1/snapshots`, scoped to the caller's
//! owner unless it is an admin.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use berth_api::{ForkRequest, ForkResponse, Problem, SandboxView, SnapshotList, SnapshotRequest, SnapshotView};
use berth_control::service::{SandboxService, SnapshotInfo};
use berth_core::Caller;

use crate::error::ApiError;
use crate::json::ApiJson;
use crate::sandboxes::QueryParams;

fn view(snapshot: SnapshotInfo) -> SnapshotView {
    SnapshotView {
        id: snapshot.id,
        sandbox_id: snapshot.sandbox_id,
        owner: snapshot.owner,
        mode: snapshot.mode,
        labels: snapshot.labels,
        size_bytes: snapshot.size_bytes,
        created_at: snapshot.created_at,
        expires_at: snapshot.expires_at,
        image: snapshot.image,
    }
}

/// Whose snapshots a caller sees: an admin every owner's, a member its own.
fn scope(caller: &Caller) -> Option<&str> {
    (!caller.is_admin()).then_some(caller.owner.as_str())
}

/// Take a snapshot of a sandbox's filesystem. The sandbox keeps running (paused for the instant
/// of the commit); create from it with `{"snapshot": ID}`.
#[utoipa::path(
    post,
    path = "/v1/sandboxes/{id}/snapshots",
    tag = "snapshots",
    params(("id" = String, Path, description = "Sandbox id")),
    request_body = SnapshotRequest,
    responses(
        (status = 201, description = "Taken", body = SnapshotView),
        (status = 400, description = "Malformed body or unknown field", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The sandbox is neither Running nor Paused", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid mode, labels or ttl; `memory` where the engine cannot checkpoint; a compose stack", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_snapshot(
    State(service): State<Arc<SandboxService>>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<SnapshotRequest>,
) -> Result<Response, ApiError> {
    let retention = match &request.ttl {
        None => None,
        Some(ttl) => Some(
            berth_core::units::parse_duration(ttl)
                .map_err(|message| ApiError::field(berth_api::ProblemKind::Validation, "ttl", message))?,
        ),
    };
    let snapshot = service
        .snapshot(&id, request.mode.as_deref(), request.labels, retention)
        .await?;
    let location = format!("/v1/snapshots/{}", snapshot.id);
    let mut response = (StatusCode::CREATED, Json(view(snapshot))).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Fork a sandbox into `count` new ones: one snapshot of it, then each child made from it on
/// its own (the answer lists the children and a problem per failure); the parent runs on.
#[utoipa::path(
    post,
    path = "/v1/sandboxes/{id}/fork",
    tag = "snapshots",
    params(("id" = String, Path, description = "Sandbox id")),
    request_body = ForkRequest,
    responses(
        (status = 201, description = "The snapshot, the children that run, the problems of the others", body = ForkResponse),
        (status = 400, description = "Malformed body or unknown field", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The sandbox is neither Running nor Paused", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`count` outside 1-64, or a compose stack", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn fork(
    State(service): State<Arc<SandboxService>>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<ForkRequest>,
) -> Result<(StatusCode, Json<ForkResponse>), ApiError> {
    // The children are the parent's owner's, whoever (admin or that owner) asks.
    let owner = service.get_latest(&id).await?.owner;
    let forked = service.fork(&id, request.count, &owner).await?;
    Ok((
        StatusCode::CREATED,
        Json(ForkResponse {
            snapshot: view(forked.snapshot),
            sandboxes: forked.sandboxes.iter().map(SandboxView::from).collect(),
            errors: forked
                .errors
                .into_iter()
                .map(|error| *ApiError::from(error).0)
                .collect(),
        }),
    ))
}

/// The caller's snapshots (an admin's: every owner's), newest first.
#[utoipa::path(
    get,
    path = "/v1/snapshots",
    tag = "snapshots",
    params(("owner" = Option<String>, Query, description = "Only this owner's (admins); a member always gets its own")),
    responses(
        (status = 200, body = SnapshotList),
        (status = 400, description = "Unknown query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_snapshots(
    State(service): State<Arc<SandboxService>>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Json<SnapshotList>, ApiError> {
    let params = QueryParams::parse(query.as_deref(), &["owner"])?;
    let owner = match scope(&caller) {
        Some(own) => Some(own.to_owned()),
        None => params.single("owner").map(str::to_owned),
    };
    let snapshots = service.list_snapshots(owner.as_deref()).await?;
    Ok(Json(SnapshotList {
        snapshots: snapshots.into_iter().map(view).collect(),
    }))
}

/// One snapshot (another owner's is a 404).
#[utoipa::path(
    get,
    path = "/v1/snapshots/{id}",
    tag = "snapshots",
    params(("id" = String, Path, description = "Snapshot id")),
    responses(
        (status = 200, body = SnapshotView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_snapshot(
    State(service): State<Arc<SandboxService>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<SnapshotView>, ApiError> {
    Ok(Json(view(service.get_snapshot(&id, scope(&caller)).await?)))
}

/// Delete a snapshot; refused (409) while a sandbox made from it still has its container.
#[utoipa::path(
    delete,
    path = "/v1/snapshots/{id}",
    tag = "snapshots",
    params(("id" = String, Path, description = "Snapshot id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A sandbox made from it still runs", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_snapshot(
    State(service): State<Arc<SandboxService>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    service.delete_snapshot(&id, scope(&caller)).await?;
    Ok(StatusCode::NO_CONTENT)
}
