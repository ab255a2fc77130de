//! `/v1/templates` and `/v1/pools` handlers: templates created, replaced, read and deleted, and
//! the state of their warm pools.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_api::{PoolList, Problem, TemplateList, TemplateRequest, TemplateView};

use super::error::ApiError;
use super::json::ApiJson;
use crate::service::SandboxService;

/// Create a template; with a `pool`, the leader starts filling it at once.
#[utoipa::path(
    post,
    path = "/v1/templates",
    tag = "templates",
    request_body = TemplateRequest,
    responses(
        (status = 201, body = TemplateView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A template with this name and tag exists: use PUT", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_template(
    State(service): State<Arc<SandboxService>>,
    ApiJson(request): ApiJson<TemplateRequest>,
) -> Result<Response, ApiError> {
    let template = service.create_template(&request).await?;
    let mut response = (StatusCode::CREATED, Json(service.template_view(&template))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/templates/{}", template.reference())) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Every template, by name and tag.
#[utoipa::path(get, path = "/v1/templates", tag = "templates", responses((status = 200, body = TemplateList)))]
pub async fn list_templates(State(service): State<Arc<SandboxService>>) -> Result<Json<TemplateList>, ApiError> {
    let templates = service.list_templates().await?;
    Ok(Json(TemplateList {
        items: templates
            .iter()
            .map(|template| service.template_view(template))
            .collect(),
    }))
}

/// One template, with its pool's state.
#[utoipa::path(
    get,
    path = "/v1/templates/{reference}",
    tag = "templates",
    params(("reference" = String, Path, description = "`name` (tag `latest`) or `name:tag`")),
    responses(
        (status = 200, body = TemplateView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_template(
    State(service): State<Arc<SandboxService>>,
    Path(reference): Path<String>,
) -> Result<Json<TemplateView>, ApiError> {
    let template = service.get_template(&reference).await?;
    Ok(Json(service.template_view(&template)))
}

/// Create or replace a template. Idle pooled sandboxes made from an older spec are replaced.
#[utoipa::path(
    put,
    path = "/v1/templates/{reference}",
    tag = "templates",
    params(("reference" = String, Path, description = "`name` (tag `latest`, or the body's `tag`) or `name:tag`")),
    request_body = TemplateRequest,
    responses(
        (status = 200, body = TemplateView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_template(
    State(service): State<Arc<SandboxService>>,
    Path(reference): Path<String>,
    ApiJson(request): ApiJson<TemplateRequest>,
) -> Result<Json<TemplateView>, ApiError> {
    let template = service.put_template(&reference, &request).await?;
    Ok(Json(service.template_view(&template)))
}

/// Delete a template. Its idle pooled sandboxes are removed; sandboxes made from it keep running.
#[utoipa::path(
    delete,
    path = "/v1/templates/{reference}",
    tag = "templates",
    params(("reference" = String, Path, description = "`name` (tag `latest`) or `name:tag`")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_template(
    State(service): State<Arc<SandboxService>>,
    Path(reference): Path<String>,
) -> Result<StatusCode, ApiError> {
    service.delete_template(&reference).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The warm pools: ready, refilling and claimed sandboxes per template.
#[utoipa::path(get, path = "/v1/pools", tag = "templates", responses((status = 200, body = PoolList)))]
pub async fn list_pools(State(service): State<Arc<SandboxService>>) -> Result<Json<PoolList>, ApiError> {
    let templates = service.list_templates().await?;
    Ok(Json(PoolList {
        items: templates
            .iter()
            .filter_map(|template| service.pool_view(template))
            .collect(),
    }))
}
