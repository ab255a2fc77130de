//! `/v1/whoami`, `/v1/keys`, `/v1/quotas` and `/v1/audit`: who the caller is, and the admin's
//! handling of keys (the secret shown once), quotas (limits and use) and the audit log. The gate
//! ([`crate::auth`]) lets only admins past every route here but `whoami`.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use berth_api::identity::{
    Amounts, AuditList, CreatedKey, KeyList, KeyRequest, KeyView, QuotaList, QuotaRequest, QuotaView, WhoAmI,
};
use berth_api::{Problem, ProblemKind};
use berth_control::service::{SandboxService, validate_owner};
use berth_core::units::{parse_cpu_millis, parse_duration, parse_memory_bytes};
use berth_core::{Caller, KeyId, Quota, Role};
use chrono::{DateTime, Utc};

use crate::error::ApiError;
use crate::json::ApiJson;
use crate::sandboxes::QueryParams;

/// Who the presented key stands for.
#[utoipa::path(
    get,
    path = "/v1/whoami",
    tag = "identity",
    responses(
        (status = 200, body = WhoAmI),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn whoami(Extension(caller): Extension<Caller>) -> Json<WhoAmI> {
    Json(WhoAmI {
        key_id: caller.key_id.map(|id| id.to_string()),
        owner: caller.owner,
        role: caller.role,
    })
}

/// Make an API key (admin). The answer holds the secret; berth keeps only its hash.
#[utoipa::path(
    post,
    path = "/v1/keys",
    tag = "identity",
    request_body = KeyRequest,
    responses(
        (status = 201, body = CreatedKey),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_key(
    State(service): State<Arc<SandboxService>>,
    ApiJson(request): ApiJson<KeyRequest>,
) -> Result<Response, ApiError> {
    validate_owner(&request.owner)?;
    let role = match request.role.as_deref() {
        None => Role::Member,
        Some(role) => role
            .parse()
            .map_err(|message: String| ApiError::field(ProblemKind::Validation, "role", message))?,
    };
    let expires_in = match &request.expires {
        None => None,
        Some(expires) => Some(
            parse_duration(expires).map_err(|message| ApiError::field(ProblemKind::Validation, "expires", message))?,
        ),
    };
    let new = service.identity().create_key(&request.owner, role, expires_in).await?;
    let created = CreatedKey {
        key: KeyView::from(&new.key),
        secret: new.secret,
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Every key, revoked ones included (admin). Never a secret.
#[utoipa::path(
    get,
    path = "/v1/keys",
    tag = "identity",
    responses((status = 200, body = KeyList), (status = 403, body = Problem, content_type = "application/problem+json"))
)]
pub async fn list_keys(State(service): State<Arc<SandboxService>>) -> Result<Json<KeyList>, ApiError> {
    let keys = service.identity().list_keys().await?;
    Ok(Json(KeyList {
        items: keys.iter().map(KeyView::from).collect(),
    }))
}

fn key_id(id: &str) -> Result<KeyId, ApiError> {
    KeyId::parse(id).ok_or_else(|| no_key(id))
}

fn no_key(id: &str) -> ApiError {
    ApiError::new(
        ProblemKind::NotFound,
        format!("no key with id `{id}`: see GET /v1/keys"),
    )
}

/// One key (admin).
#[utoipa::path(
    get,
    path = "/v1/keys/{id}",
    tag = "identity",
    params(("id" = String, Path, description = "Key id")),
    responses((status = 200, body = KeyView), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
pub async fn get_key(
    State(service): State<Arc<SandboxService>>,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    let key = service
        .identity()
        .get_key(&key_id(&id)?)
        .await?
        .ok_or_else(|| no_key(&id))?;
    Ok(Json(KeyView::from(&key)))
}

/// Revoke a key (admin): every process stops accepting it within a second.
#[utoipa::path(
    delete,
    path = "/v1/keys/{id}",
    tag = "identity",
    params(("id" = String, Path, description = "Key id")),
    responses((status = 204, description = "Revoked"), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
pub async fn revoke_key(
    State(service): State<Arc<SandboxService>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if service.identity().revoke_key(&key_id(&id)?).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_key(&id))
    }
}

async fn quota_view(service: &SandboxService, owner: &str, own: Option<Quota>) -> QuotaView {
    let default = own.is_none();
    let limits = own.unwrap_or_else(|| service.identity().default_quota().clone());
    QuotaView {
        owner: owner.to_owned(),
        default,
        limits: Amounts::of_quota(&limits),
        used: Amounts::of_usage(&service.usage_of(owner)),
    }
}

/// Every owner with a quota of its own or a live sandbox: limits and use (admin).
#[utoipa::path(
    get,
    path = "/v1/quotas",
    tag = "identity",
    responses((status = 200, body = QuotaList), (status = 403, body = Problem, content_type = "application/problem+json"))
)]
pub async fn list_quotas(State(service): State<Arc<SandboxService>>) -> Result<Json<QuotaList>, ApiError> {
    let own: std::collections::BTreeMap<String, Quota> = service.identity().list_quotas().await?.into_iter().collect();
    let mut owners = service.live_owners();
    owners.extend(own.keys().cloned());
    let mut items = Vec::new();
    for owner in owners {
        items.push(quota_view(&service, &owner, own.get(&owner).cloned()).await);
    }
    Ok(Json(QuotaList { items }))
}

/// One owner's quota and use (admin).
#[utoipa::path(
    get,
    path = "/v1/quotas/{owner}",
    tag = "identity",
    params(("owner" = String, Path, description = "Owner")),
    responses((status = 200, body = QuotaView), (status = 403, body = Problem, content_type = "application/problem+json"))
)]
pub async fn get_quota(
    State(service): State<Arc<SandboxService>>,
    Path(owner): Path<String>,
) -> Result<Json<QuotaView>, ApiError> {
    validate_owner(&owner)?;
    let own = service.identity().own_quota(&owner).await?;
    Ok(Json(quota_view(&service, &owner, own).await))
}

/// Set an owner's quota (admin); limits left out are unlimited.
#[utoipa::path(
    put,
    path = "/v1/quotas/{owner}",
    tag = "identity",
    params(("owner" = String, Path, description = "Owner")),
    request_body = QuotaRequest,
    responses((status = 200, body = QuotaView), (status = 422, body = Problem, content_type = "application/problem+json"))
)]
pub async fn put_quota(
    State(service): State<Arc<SandboxService>>,
    Path(owner): Path<String>,
    ApiJson(request): ApiJson<QuotaRequest>,
) -> Result<Json<QuotaView>, ApiError> {
    validate_owner(&owner)?;
    let quota = Quota {
        sandboxes: request.sandboxes,
        cpu_millis: request
            .cpu
            .as_ref()
            .map(parse_cpu_millis)
            .transpose()
            .map_err(|message| ApiError::field(ProblemKind::Validation, "cpu", message))?,
        memory_bytes: request
            .memory
            .as_ref()
            .map(parse_memory_bytes)
            .transpose()
            .map_err(|message| ApiError::field(ProblemKind::Validation, "memory", message))?,
    };
    service.identity().set_quota(&owner, &quota).await?;
    Ok(Json(quota_view(&service, &owner, Some(quota)).await))
}

/// Remove an owner's own quota (admin): the default applies again.
#[utoipa::path(
    delete,
    path = "/v1/quotas/{owner}",
    tag = "identity",
    params(("owner" = String, Path, description = "Owner")),
    responses((status = 204, description = "Removed"), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
pub async fn delete_quota(
    State(service): State<Arc<SandboxService>>,
    Path(owner): Path<String>,
) -> Result<StatusCode, ApiError> {
    if service.identity().delete_quota(&owner).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            ProblemKind::NotFound,
            format!("owner `{owner}` has no quota of its own"),
        ))
    }
}

/// Recent audit entries, oldest first (admin).
#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "identity",
    params(
        ("since" = Option<String>, Query, description = "RFC 3339 time of the oldest entry (default: the last hour)"),
        ("owner" = Option<String>, Query, description = "Only this owner's entries"),
        ("limit" = Option<usize>, Query, description = "At most this many, 1-1000 (default 100)"),
    ),
    responses((status = 200, body = AuditList), (status = 403, body = Problem, content_type = "application/problem+json"))
)]
pub async fn list_audit(
    State(service): State<Arc<SandboxService>>,
    RawQuery(query): RawQuery,
) -> Result<Json<AuditList>, ApiError> {
    let params = QueryParams::parse(query.as_deref(), &["since", "owner", "limit"])?;
    let since = match params.single("since") {
        None => Utc::now() - chrono::Duration::hours(1),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|_| {
                ApiError::field(
                    ProblemKind::Validation,
                    "since",
                    format!("`{text}` is not an RFC 3339 time, e.g. 2026-12-04T10:00:00Z"),
                )
            })?
            .with_timezone(&Utc),
    };
    let limit = match params.single("limit") {
        None => 100,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=1000).contains(limit))
            .ok_or_else(|| ApiError::field(ProblemKind::Validation, "limit", "must be 1-1000"))?,
    };
    let items = service
        .identity()
        .list_audit(since, params.single("owner"), limit)
        .await?;
    Ok(Json(AuditList { items }))
}
