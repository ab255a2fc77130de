//! The HTTP surface: routes registered together with their OpenAPI description (so the two
//! cannot drift), the body limit, and problem answers for unknown routes.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{Json, Router};
use berth_api::{MAX_BODY_BYTES, ProblemKind};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::service::SandboxService;

pub mod error;
pub mod health;
pub mod json;
pub mod sandboxes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "berth",
        description = "Short-lived container sandboxes on demand: create, inspect, renew and remove them.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    tags(
        (name = "sandboxes", description = "Sandbox lifecycle"),
        (name = "health", description = "Liveness and readiness probes"),
    )
)]
struct ApiDoc;

/// The routes and the OpenAPI document that describes them.
pub fn router_and_spec(service: Arc<SandboxService>) -> (Router, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(sandboxes::create_sandbox, sandboxes::list_sandboxes))
        .routes(routes!(sandboxes::get_sandbox, sandboxes::delete_sandbox))
        .routes(routes!(sandboxes::renew_ttl))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .with_state(service)
        .split_for_parts()
}

/// The complete application: API routes, `/v1/openapi.json`, limits and fallbacks.
pub fn router(service: Arc<SandboxService>) -> Router {
    let (router, spec) = router_and_spec(service);
    let spec = Arc::new(spec);
    router
        .route(
            "/v1/openapi.json",
            get(move || async move { Json(spec.as_ref().clone()) }),
        )
        .fallback(|| async { error::ApiError::new(ProblemKind::NotFound, "no such route: see /v1/openapi.json") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// The OpenAPI document as served, pretty-printed (for the snapshot test and docs).
pub fn openapi_json(service: Arc<SandboxService>) -> String {
    let (_, spec) = router_and_spec(service);
    spec.to_pretty_json().unwrap_or_default()
}
