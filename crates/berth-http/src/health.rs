//! Probes and observability: `/healthz` (the process answers), `/readyz` (store and engine
//! reachable), `/health` (the whole picture) and `/metrics` (Prometheus).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use berth_api::{EngineConfinement, Health, HealthChecks, Readiness};

use berth_control::service::SandboxService;
use berth_core::Caller;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "The process answers")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// The store and the engine answer.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, body = Readiness),
        (status = 503, description = "A dependency does not answer", body = Readiness),
    )
)]
pub async fn readyz(
    State(service): State<Arc<SandboxService>>,
    caller: Option<Extension<Caller>>,
) -> (StatusCode, Json<Readiness>) {
    let detailed = shows_detail(caller.as_ref());
    let dependencies = service.check_dependencies().await;
    let mut checks = BTreeMap::new();
    checks.insert("store".to_owned(), describe(&dependencies.store, detailed));
    checks.insert("engine".to_owned(), describe(&dependencies.engine, detailed));
    let ready = dependencies.all_ok();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let readiness = Readiness {
        status: if ready { "ready" } else { "unavailable" }.to_owned(),
        checks,
    };
    (status, Json(readiness))
}

/// The server's state: status, time, version, uptime and each dependency's check.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    responses(
        (status = 200, description = "Every check passes", body = Health),
        (status = 503, description = "A dependency does not answer", body = Health),
    )
)]
pub async fn health(
    State(service): State<Arc<SandboxService>>,
    caller: Option<Extension<Caller>>,
) -> (StatusCode, Json<Health>) {
    let detailed = shows_detail(caller.as_ref());
    let dependencies = service.check_dependencies().await;
    let healthy = dependencies.all_ok();
    let health = Health {
        status: if healthy { "ok" } else { "degraded" }.to_owned(),
        timestamp: chrono::Utc::now(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_seconds: service.uptime().as_secs(),
        leader: service.is_leading(),
        checks: HealthChecks {
            store: describe(&dependencies.store, detailed),
            engines: BTreeMap::from([(
                dependencies.engine_name.clone(),
                describe(&dependencies.engine, detailed),
            )]),
        },
        confinement: match (detailed, &dependencies.engine) {
            (true, Ok(())) => service
                .engine_security()
                .await
                .map(|security| {
                    BTreeMap::from([(
                        dependencies.engine_name.clone(),
                        EngineConfinement {
                            runtimes: security.runtimes,
                            default_runtime: security.default_runtime,
                            user_namespaces_remapped: security.user_namespaces_remapped,
                            seccomp: security.seccomp,
                            disk_limit_unavailable: security.disk_limit.err(),
                            host_guard: security.host_guard.describe(),
                        },
                    )])
                })
                .unwrap_or_default(),
            _ => BTreeMap::new(),
        },
        store: if detailed {
            dependencies.store_description
        } else {
            // Where the records live is for admins: `sqlite` or `postgres`, no path or host.
            dependencies
                .store_description
                .split(' ')
                .next()
                .unwrap_or_default()
                .to_owned()
        },
    };
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health))
}

/// A check as the probes show it: `ok`, or the reason it failed — to an admin's key (or a
/// server without authentication); anyone else reads `unavailable`, since the reasons name
/// hosts, paths and ports.
fn describe(check: &Result<(), String>, detailed: bool) -> String {
    match check {
        Ok(()) => "ok".to_owned(),
        Err(reason) if detailed => reason.clone(),
        Err(_) => "unavailable".to_owned(),
    }
}

/// Whether the probes' answer may carry reasons and locations.
fn shows_detail(caller: Option<&Extension<Caller>>) -> bool {
    caller.is_some_and(|Extension(caller)| caller.is_admin())
}

/// Prometheus metrics in the OpenMetrics text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses((status = 200, description = "Every series berth exports", content_type = "application/openmetrics-text", body = String))
)]
pub async fn metrics(State(service): State<Arc<SandboxService>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, berth_control::metrics::CONTENT_TYPE)],
        service.render_metrics(),
    )
}
