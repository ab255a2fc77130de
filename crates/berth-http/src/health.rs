//! Probes and observability: `/healthz` (the process answers), `/readyz` (store and engine
//! reachable), `/health` (the whole picture) and `/metrics` (Prometheus).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use berth_api::{Health, HealthChecks, Readiness};

use berth_control::service::SandboxService;

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
pub async fn readyz(State(service): State<Arc<SandboxService>>) -> (StatusCode, Json<Readiness>) {
    let (store, engine) = tokio::join!(service.store().ping(), service.runtime().info());
    let mut checks = BTreeMap::new();
    checks.insert(
        "store".to_owned(),
        store
            .as_ref()
            .map(|_| "ok".to_owned())
            .unwrap_or_else(ToString::to_string),
    );
    checks.insert(
        "engine".to_owned(),
        engine
            .as_ref()
            .map(|_| "ok".to_owned())
            .unwrap_or_else(ToString::to_string),
    );
    let ready = store.is_ok() && engine.is_ok();
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
pub async fn health(State(service): State<Arc<SandboxService>>) -> (StatusCode, Json<Health>) {
    let (store, engine) = tokio::join!(service.store().ping(), service.runtime().info());
    let healthy = store.is_ok() && engine.is_ok();
    let describe = |outcome: Result<(), String>| outcome.map(|()| "ok".to_owned()).unwrap_or_else(|reason| reason);
    let health = Health {
        status: if healthy { "ok" } else { "degraded" }.to_owned(),
        timestamp: chrono::Utc::now(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_seconds: service.uptime().as_secs(),
        leader: service.is_leading(),
        store: service.store().describe(),
        checks: HealthChecks {
            store: describe(store.map_err(|error| error.to_string())),
            engines: BTreeMap::from([(
                service.runtime().name().to_owned(),
                describe(engine.map(|_| ()).map_err(|error| error.to_string())),
            )]),
        },
    };
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health))
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
