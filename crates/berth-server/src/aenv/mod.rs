//! The AEnvironment compatibility surface, served next to `/v1` on the main listener: the Env
//! registry (`/env/…`, an Env being a berth template) and Env instances (`/env-instance…`,
//! an instance being a berth sandbox), with AEnvironment's envelope and field names. Not part
//! of the v1 OpenAPI document. `Authorization: Bearer …` is accepted and ignored, as
//! AEnvironment does with its token auth off.

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::service::SandboxService;

pub mod envelope;
pub mod envs;
pub mod instances;

/// The routes of the surface, for the main router to merge.
pub fn routes(service: Arc<SandboxService>) -> Router {
    // AEnvironment's clients write `/env/` with the slash; without it is accepted too.
    let registry = || post(envs::create_env).get(envs::list_envs);
    let create_instance = || post(instances::create_instance);
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
        .with_state(service)
}
