//! The AEnvironment compatibility surface, served next to `/v1` on the main listener (the server
//! merges [`routes`] into the native router, so the same layers guard both): the Env
//! registry (`/env/…`, an Env being a berth template), Env instances (`/env-instance…`,
//! an instance being a berth sandbox) and Env services (`/env-service…`, replicas behind a
//! balancer), with AEnvironment's envelope and field names. Not part
//! of the v1 OpenAPI document. `Authorization: Bearer <key>` (AEnvironment's SDK sends its
//! `AENV_API_KEY` so) is checked by the same gate as the native API's key.

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use berth_control::service::SandboxService;

pub mod env_services;
pub mod envelope;
pub mod envs;
pub mod instances;
pub mod services;

/// This surface's answer for an instance or service that does not exist, which the gate also
/// gives for another owner's (so the two cannot be told apart).
pub fn not_found(resource: berth_http::auth::Resource, id: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    match resource {
        berth_http::auth::Resource::Sandbox => instances::instance_not_found(id).into_response(),
        berth_http::auth::Resource::EnvService => services::service_not_found(id).into_response(),
    }
}

/// The routes of the surface, for the main router to merge.
pub fn routes(service: Arc<SandboxService>) -> Router {
    // AEnvironment's clients write `/env/` with the slash; without it is accepted too.
    let registry = || post(envs::create_env).get(envs::list_envs);
    let create_instance = || post(instances::create_instance);
    let create_service = || post(services::create_service);
    Router::new()
        .route("/env", registry())
        .route("/env/", registry())
        .route(
            "/env/{name}/{version}",
            get(envs::get_env).put(envs::put_env).delete(envs::delete_env),
        )
        .route("/env/{name}/{version}/exists", get(envs::env_exists))
        .route("/env-instance", create_instance())
        .route("/env-instance/", create_instance())
        .route(
            "/env-instance/{id}",
            get(instances::get_instance).delete(instances::delete_instance),
        )
        .route("/env-instance/{id}/list", get(instances::list_instances))
        .route("/env-instance/{id}/presign-url", post(instances::presign_url))
        .route("/env-service", create_service())
        .route("/env-service/", create_service())
        .route(
            "/env-service/{id}",
            get(services::get_service)
                .put(services::update_service)
                .delete(services::delete_service),
        )
        .route("/env-service/{id}/list", get(services::list_services))
        .with_state(service)
}
