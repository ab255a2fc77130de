//! berth's native HTTP API (`/v1`): thin routers that parse, call the control plane or the data
//! path, and render; routes registered together with their OpenAPI description (so the two
//! cannot drift), the body limit, problem answers for unknown routes, health and metrics.
//!
//! Handlers hold no rules and never reach the store or the runtime: they call operations of
//! [`berth_control::SandboxService`] or [`berth_work`]. The router is the one place where every
//! surface merged into it (the AEnvironment one too) passes the same layers, so authentication
//! and authorization belong here, not in handlers.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get};
use axum::{Json, Router};
use berth_api::{MAX_BODY_BYTES, ProblemKind};
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use berth_control::service::SandboxService;
use proxy::DistinctOperationIds;

pub mod auth;
pub mod error;
pub mod events;
pub mod exec;
pub mod files;
pub mod health;
pub mod http_metrics;
pub mod identity;
pub mod json;
pub mod observe;
pub mod proxy;
pub mod sandboxes;
pub mod snapshots;
pub mod templates;
pub mod ui;

pub use berth_api::ServedScheme;
pub mod volumes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "berth",
        description = "Short-lived container sandboxes on demand: create, inspect, renew and remove them; run \
commands in them, move files in and out, read their logs and stats, pause and resume them.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    tags(
        (name = "sandboxes", description = "Sandbox lifecycle"),
        (name = "templates", description = "Templates and their warm pools"),
        (name = "exec", description = "Commands inside a sandbox: one-shot, streamed, interactive, background"),
        (name = "files", description = "Files in and out of a sandbox, streamed"),
        (name = "observe", description = "Logs and resource stats of a sandbox"),
        (name = "health", description = "Liveness and readiness probes, health and metrics"),
        (name = "proxy", description = "HTTP and WebSocket requests to servers inside a sandbox"),
        (name = "snapshots", description = "Snapshots of sandboxes, creates from them, and forks"),
        (name = "volumes", description = "Persistent volumes an owner's sandboxes mount"),
        (name = "identity", description = "API keys, the caller's identity, quotas and the audit log"),
        (name = "ui", description = "The web dashboard"),
    ),
    // Routed by hand in `router_and_spec` (its `{*path}` wildcard is not an OpenAPI path).
    paths(proxy::proxy),
    modifiers(&DistinctOperationIds)
)]
struct ApiDoc;

/// The routes and the OpenAPI document that describes them.
pub fn router_and_spec(service: Arc<SandboxService>) -> (Router, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(sandboxes::create_sandbox, sandboxes::list_sandboxes))
        .routes(routes!(sandboxes::get_sandbox, sandboxes::delete_sandbox))
        .routes(routes!(sandboxes::renew_ttl))
        .routes(routes!(events::events))
        .routes(routes!(sandboxes::get_network, sandboxes::put_network))
        .routes(routes!(observe::pause))
        .routes(routes!(observe::resume))
        .routes(routes!(exec::exec))
        .routes(websocket(routes!(exec::exec_ws), any(exec::exec_ws)))
        .routes(routes!(exec::list_processes))
        .routes(routes!(exec::get_process))
        .routes(routes!(exec::process_output))
        .routes(routes!(exec::signal_process))
        // Uploads stream any size (the service enforces `max_file_size`): no 1 MiB limit here.
        .routes(routes!(files::upload, files::download).layer(DefaultBodyLimit::disable()))
        .routes(routes!(files::stat))
        .routes(routes!(files::list))
        .routes(routes!(observe::logs))
        .routes(routes!(observe::stats))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::health))
        .routes(routes!(health::metrics))
        .routes(routes!(templates::create_template, templates::list_templates))
        .routes(routes!(
            templates::get_template,
            templates::put_template,
            templates::delete_template
        ))
        // Build contexts stream any size (the service enforces `max_file_size`): no 1 MiB limit.
        .routes(routes!(templates::build_template).layer(DefaultBodyLimit::disable()))
        .routes(routes!(templates::list_pools))
        .routes(routes!(snapshots::create_snapshot))
        .routes(routes!(snapshots::fork))
        .routes(routes!(snapshots::list_snapshots))
        .routes(routes!(snapshots::get_snapshot, snapshots::delete_snapshot))
        .routes(routes!(volumes::create_volume, volumes::list_volumes))
        .routes(routes!(volumes::get_volume, volumes::delete_volume))
        .routes(routes!(identity::whoami))
        .routes(routes!(identity::create_key, identity::list_keys))
        .routes(routes!(identity::get_key, identity::revoke_key))
        .routes(routes!(identity::list_quotas))
        .routes(routes!(
            identity::get_quota,
            identity::put_quota,
            identity::delete_quota
        ))
        .routes(routes!(identity::list_audit))
        .routes(routes!(ui::page))
        // The page's assets, and its own routes (`/ui/sandboxes/…`) reloaded: not API paths.
        .route("/ui/", get(ui::page))
        .route("/ui/{*path}", get(ui::asset))
        // Any method, WebSocket upgrades included; the bare `{port}` and `{port}/` forms reach `/`.
        .route("/v1/sandboxes/{id}/proxy/{port}/{*path}", any(proxy::proxy))
        .route("/v1/sandboxes/{id}/proxy/{port}/", any(proxy::proxy))
        .route("/v1/sandboxes/{id}/proxy/{port}", any(proxy::proxy))
        // Presigned URLs: the token in the path is the credential (the gate lets them through).
        .route("/p/{token}/{*path}", any(proxy::presigned))
        .route("/p/{token}/", any(proxy::presigned))
        .route("/p/{token}", any(proxy::presigned))
        .with_state(service)
        .split_for_parts()
}

/// Keeps a route's OpenAPI entry but serves it with `method_router`: WebSocket routes answer any
/// method (`any`), so HTTP/2 WebSockets (extended CONNECT) work too.
fn websocket<S>(
    documented: utoipa_axum::router::UtoipaMethodRouter<S>,
    method_router: axum::routing::MethodRouter<S>,
) -> utoipa_axum::router::UtoipaMethodRouter<S> {
    let (schemas, paths, _) = documented;
    (schemas, paths, method_router)
}

/// The complete application: API routes, `/v1/openapi.json`, limits and fallbacks, with
/// `beside` (another surface's routes, outside the OpenAPI document) under the same layers —
/// the gate of [`auth`] among them; `beside_not_found` is how that surface says "no such
/// sandbox or env-service", which the gate says for the ones a caller may not see.
pub fn router(service: Arc<SandboxService>, beside: Router, beside_not_found: auth::NotFoundAnswer) -> Router {
    let metrics = Arc::clone(service.metrics());
    let gate = Arc::new(auth::Gate::new(Arc::clone(&service), beside_not_found));
    let (router, spec) = router_and_spec(service);
    let spec = Arc::new(spec);
    router
        .merge(beside)
        .route(
            "/v1/openapi.json",
            get(move || async move { Json(spec.as_ref().clone()) }),
        )
        .fallback(|| async { error::ApiError::new(ProblemKind::NotFound, "no such route: see /v1/openapi.json") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // `Router::layer` wraps each route, so both middlewares see the matched route template;
        // the gate is inside the metrics, so refused requests are counted too.
        .layer(axum::middleware::from_fn_with_state(gate, auth::gate))
        .layer(axum::middleware::from_fn_with_state(metrics, http_metrics::track_http))
}

/// The OpenAPI document as served, pretty-printed (for the snapshot test and docs).
pub fn openapi_json(service: Arc<SandboxService>) -> String {
    let (_, spec) = router_and_spec(service);
    spec.to_pretty_json().unwrap_or_default()
}
