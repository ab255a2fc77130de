//! The HTTP middleware that reports every answered request to the control plane's metrics, and
//! the response extension through which an error names its kind for `berth_errors_total`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use berth_control::metrics::Metrics;

/// The kind of an API error, put on error responses so [`track_http`] can count it.
#[derive(Debug, Clone)]
pub struct ErrorKind(pub String);

/// Axum middleware: counts and times every request by its route template.
pub async fn track_http(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    metrics.observe_http(&method, &route, response.status().as_u16(), started.elapsed());
    if let Some(ErrorKind(kind)) = response.extensions().get::<ErrorKind>() {
        metrics.count_error(kind);
    }
    response
}
