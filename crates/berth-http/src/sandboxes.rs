//! `/v1/sandboxes` handlers: create, get, list, delete and renew, answered from the service.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use berth_api::{
    IDEMPOTENCY_KEY_HEADER, Problem, ProblemKind, RenewTtlRequest, RenewTtlResponse, SandboxList, SandboxRequest,
    SandboxView,
};
use berth_core::{Caller, Status};
use berth_store::{Cursor, SandboxFilter};

use crate::error::ApiError;
use crate::json::ApiJson;
use berth_control::service::SandboxService;

pub const DEFAULT_PAGE: usize = 100;

/// The owner a create by `caller` records: an admin's choice (else its own), a member's own —
/// a member naming another owner is refused.
pub fn owner_for(caller: &Caller, asked: Option<String>) -> Result<String, ApiError> {
    match asked {
        Some(owner) if owner != caller.owner && !caller.is_admin() => Err(ApiError::field(
            ProblemKind::Forbidden,
            "owner",
            format!(
                "a member creates in its own name (`{}`): leave `owner` out, or ask an admin",
                caller.owner
            ),
        )),
        Some(owner) => Ok(owner),
        None => Ok(caller.owner.clone()),
    }
}
/// Response header of a create: `pooled` when the sandbox was claimed from a warm pool, else `cold`.
pub const CREATE_PATH_HEADER: &str = "berth-create-path";
pub const MAX_PAGE: usize = 1000;

/// Create a sandbox. Answers 201 once it runs, or 202 at once with `?wait=false`.
#[utoipa::path(
    post,
    path = "/v1/sandboxes",
    tag = "sandboxes",
    params(
        ("wait" = Option<bool>, Query, description = "Wait until the sandbox runs (default true); false answers 202 at once"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retried create with the same key returns the first sandbox"),
    ),
    request_body = SandboxRequest,
    responses(
        (status = 201, description = "The sandbox runs", body = SandboxView),
        (status = 202, description = "Recorded; being created", body = SandboxView),
        (status = 400, description = "Malformed body, unknown field or wrong type", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid value, or the image is not available", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Engine or store unavailable; retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_sandbox(
    State(service): State<Arc<SandboxService>>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ApiJson(mut request): ApiJson<SandboxRequest>,
) -> Result<Response, ApiError> {
    request.owner = Some(owner_for(&caller, request.owner.take())?);
    let params = QueryParams::parse(query.as_deref(), &["wait"])?;
    let wait = match params.single("wait") {
        None => true,
        Some(value) => parse_bool("wait", value)?,
    };
    let idempotency_key = match headers.get(IDEMPOTENCY_KEY_HEADER) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::field(ProblemKind::Validation, "Idempotency-Key", "must be printable ASCII"))?
                .to_owned(),
        ),
    };
    let created = service.create(request, idempotency_key, wait).await?;
    let status = if created.replayed || wait {
        StatusCode::CREATED
    } else {
        StatusCode::ACCEPTED
    };
    let mut response = (status, Json(SandboxView::from(&created.sandbox))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/sandboxes/{}", created.sandbox.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if created.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    // Which way the sandbox came, for clients and benchmarks that care about latency.
    response.headers_mut().insert(
        CREATE_PATH_HEADER,
        HeaderValue::from_static(if created.claimed { "pooled" } else { "cold" }),
    );
    Ok(response)
}

/// One sandbox.
#[utoipa::path(
    get,
    path = "/v1/sandboxes/{id}",
    tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id")),
    responses(
        (status = 200, body = SandboxView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_sandbox(
    State(service): State<Arc<SandboxService>>,
    Path(id): Path<String>,
) -> Result<Json<SandboxView>, ApiError> {
    Ok(Json(SandboxView::from(&service.get_latest(&id).await?)))
}

/// Sandboxes in creation order, filtered, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/sandboxes",
    tag = "sandboxes",
    params(
        ("label" = Option<Vec<String>>, Query, description = "`key=value`; repeat to AND several"),
        ("status" = Option<String>, Query, description = "Only these statuses, comma-separated (e.g. `Running,Paused`)"),
        ("owner" = Option<String>, Query, description = "Only this owner's sandboxes"),
        ("all" = Option<bool>, Query, description = "Include ended sandboxes (default false)"),
        ("pooled" = Option<bool>, Query, description = "List the sandboxes waiting unclaimed in warm pools instead (default false: they are not listed)"),
        ("limit" = Option<usize>, Query, description = "Page size, 1-1000 (default 100)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, body = SandboxList),
        (status = 400, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_sandboxes(
    State(service): State<Arc<SandboxService>>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Json<SandboxList>, ApiError> {
    let params = QueryParams::parse(
        query.as_deref(),
        &["label", "status", "owner", "all", "pooled", "limit", "cursor"],
    )?;
    let mut filter = SandboxFilter {
        labels: params.labels()?,
        ..SandboxFilter::default()
    };
    for statuses in params.all("status") {
        for status in statuses.split(',').filter(|status| !status.is_empty()) {
            let status: Status = status
                .parse()
                .map_err(|message: String| ApiError::field(ProblemKind::InvalidBody, "status", message))?;
            filter.statuses.push(status);
        }
    }
    filter.owner = params.single("owner").map(str::to_owned);
    if !caller.is_admin() {
        // A member's list is its own owner's, whatever it asks for.
        filter.owner = Some(caller.owner.clone());
    }
    filter.include_ended = match params.single("all") {
        None => false,
        Some(value) => parse_bool("all", value)?,
    };
    filter.pooled = Some(match params.single("pooled") {
        None => false,
        Some(value) => parse_bool("pooled", value)?,
    });
    let limit = match params.single("limit") {
        None => DEFAULT_PAGE,
        Some(value) => value
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=MAX_PAGE).contains(limit))
            .ok_or_else(|| {
                ApiError::field(
                    ProblemKind::InvalidBody,
                    "limit",
                    format!("`{value}` must be a number from 1 to {MAX_PAGE}"),
                )
            })?,
    };
    let cursor = match params.single("cursor") {
        None => None,
        Some(text) => Some(Cursor::decode(text).ok_or_else(|| {
            ApiError::field(
                ProblemKind::InvalidBody,
                "cursor",
                "is not a cursor this server issued: pass `next_cursor` unchanged",
            )
        })?),
    };
    let page = service.list(&filter, cursor.as_ref(), limit);
    Ok(Json(SandboxList {
        items: page.items.iter().map(SandboxView::from).collect(),
        next_cursor: page.next.map(|cursor| cursor.encode()),
    }))
}

/// Stop and remove a sandbox. By default the sandbox is marked `Stopping` and the answer comes at
/// once (`202`, the sandbox as it now is) while the removal runs in the background; with
/// `?wait=true` the answer (`204`) comes once the container is gone. Deleting an ended sandbox is
/// a no-op (`204`).
#[utoipa::path(
    delete,
    path = "/v1/sandboxes/{id}",
    tag = "sandboxes",
    params(
        ("id" = String, Path, description = "Sandbox id"),
        ("wait" = Option<bool>, Query, description = "Answer once the container is gone (204) instead of at once (202); default false"),
    ),
    responses(
        (status = 202, description = "Marked `Stopping`; the removal runs in the background", body = SandboxView),
        (status = 204, description = "Removed (with `wait=true`), or had already ended"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_sandbox(
    State(service): State<Arc<SandboxService>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(query.as_deref(), &["wait"])?;
    let wait = match params.single("wait") {
        None => false,
        Some(value) => parse_bool("wait", value)?,
    };
    if wait {
        service.delete(&id).await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let sandbox = service.delete_in_background(&id).await?;
    if sandbox.status.is_ended() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok((StatusCode::ACCEPTED, Json(SandboxView::from(&sandbox))).into_response())
}

/// Renew: the sandbox now expires `ttl` from now.
#[utoipa::path(
    post,
    path = "/v1/sandboxes/{id}/ttl",
    tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id")),
    request_body = RenewTtlRequest,
    responses(
        (status = 200, body = RenewTtlResponse),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The sandbox has ended or is stopping", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn renew_ttl(
    State(service): State<Arc<SandboxService>>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<RenewTtlRequest>,
) -> Result<Json<RenewTtlResponse>, ApiError> {
    let sandbox = service.renew(&id, &request.ttl).await?;
    Ok(Json(RenewTtlResponse {
        id: sandbox.id.to_string(),
        expires_at: sandbox.expires_at,
    }))
}

/// The egress policy in force on a sandbox.
#[utoipa::path(
    get,
    path = "/v1/sandboxes/{id}/network",
    tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id")),
    responses(
        (status = 200, body = berth_core::NetworkPolicy),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_network(
    State(service): State<Arc<SandboxService>>,
    Path(id): Path<String>,
) -> Result<Json<berth_core::NetworkPolicy>, ApiError> {
    Ok(Json(service.get_latest(&id).await?.spec.network))
}

/// Change the egress policy of a running sandbox, without restarting it.
#[utoipa::path(
    put,
    path = "/v1/sandboxes/{id}/network",
    tag = "sandboxes",
    description = "`{\"egress\": \"deny\"}` moves the sandbox onto a network of its own that routes nowhere \
(only what berth initiates reaches it); `{\"egress\": \"allow\"}` back onto the sandbox network. The \
sandbox keeps running (its processes, files and memory), its address changes, and the record keeps the \
policy through restarts. A name resolver is fixed when a container is created: a sandbox created \
`deny` resolves no names once opened. The same policy again is a no-op.",
    params(("id" = String, Path, description = "Sandbox id")),
    request_body = berth_core::NetworkRequest,
    responses(
        (status = 200, description = "The policy now in force", body = berth_core::NetworkPolicy),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The sandbox is not running, or is a compose stack", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`egress` missing or not a policy berth enforces", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_network(
    State(service): State<Arc<SandboxService>>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<berth_core::NetworkRequest>,
) -> Result<Json<berth_core::NetworkPolicy>, ApiError> {
    Ok(Json(service.change_network(&id, &request).await?.spec.network))
}

/// Query parameters, with repeats kept and unknown names refused.
pub(crate) struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    pub(crate) fn parse(query: Option<&str>, known: &[&str]) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
        if let Some((name, _)) = pairs.iter().find(|(name, _)| !known.contains(&name.as_str())) {
            return Err(ApiError::field(
                ProblemKind::InvalidBody,
                name,
                format!("unknown query parameter; expected one of {}", known.join(", ")),
            ));
        }
        Ok(QueryParams(pairs))
    }

    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub(crate) fn single<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.all(name).last()
    }

    /// Every `label=key=value`, all of which must hold.
    pub(crate) fn labels(&self) -> Result<BTreeMap<String, String>, ApiError> {
        let mut labels = BTreeMap::new();
        for label in self.all("label") {
            let (key, value) = label.split_once('=').ok_or_else(|| {
                ApiError::field(
                    ProblemKind::InvalidBody,
                    "label",
                    format!("`{label}` must be key=value"),
                )
            })?;
            labels.insert(key.to_owned(), value.to_owned());
        }
        Ok(labels)
    }
}

pub(crate) fn parse_bool(name: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(ApiError::field(
            ProblemKind::InvalidBody,
            name,
            format!("`{other}` must be true or false"),
        )),
    }
}
