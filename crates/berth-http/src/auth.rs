//! The one gate every HTTP surface passes: who is calling (an API key from the `Authorization`
//! or `X-API-Key` header, or — for browsers, which cannot set headers on WebSockets and event
//! streams — the `access_token` query parameter or a `berth.bearer.<key>` WebSocket
//! subprotocol), whether its role may use the route, whether the sandbox or env-service the
//! route names is its owner's (a foreign one is answered exactly as a missing one), the
//! per-key rate, and the audit entry of every mutating request and refused authentication.
//! The credential is taken out of the request here, so no handler, proxy or gateway behind
//! the gate can pass it on into a sandbox.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::RequestPartsExt;
use axum::extract::{ConnectInfo, MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_api::ProblemKind;
use berth_control::AuthMode;
use berth_control::identity::{AuthFailure, Identity};
use berth_control::service::{DEFAULT_OWNER, SandboxService};
use berth_core::{AuditEntry, Caller, KeyId};
use chrono::Utc;

use crate::error::ApiError;

pub use berth_gateway::credential::{API_KEY_HEADER, KEY_QUERY_PARAMETER, KEY_SUBPROTOCOL_PREFIX, take_credential};

/// What a route needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Probes and the API description: no key.
    Open,
    /// Any valid key; the handler scopes what it returns to the caller.
    AnyKey,
    /// The admin role.
    Admin,
    /// Any key, and the sandbox in the `id` parameter must be the caller's owner's.
    OwnSandbox,
    /// Any key, and the env-service in the `id` parameter must be the caller's owner's.
    OwnEnvService,
}

/// What a route (its method and matched template) needs. Routes not named here need a key;
/// every route under a sandbox (`/v1/sandboxes/{id}…`, `/env-instance/{id}`) is owner-checked by
/// its template, so a new sandbox route cannot be left open.
pub fn access(method: &Method, route: &str, open_metrics: bool) -> Access {
    let reads = method == Method::GET || method == Method::HEAD;
    match route {
        // The dashboard's files hold no secret; the page sends its key with each call it makes.
        "/healthz" | "/readyz" | "/health" | "/v1/openapi.json" | "/ui" | "/ui/" | "/ui/{*path}" => Access::Open,
        "/metrics" if open_metrics => Access::Open,
        // A presigned URL's token is its credential, checked by its handler.
        _ if route.starts_with("/p/{token}") => Access::Open,
        "/metrics" => Access::Admin,
        "/v1/whoami" => Access::AnyKey,
        _ if route.starts_with("/v1/keys") || route.starts_with("/v1/quotas") || route.starts_with("/v1/audit") => {
            Access::Admin
        }
        _ if route.starts_with("/v1/sandboxes/{id}")
            || route == "/env-instance/{id}"
            || route == "/env-instance/{id}/presign-url" =>
        {
            Access::OwnSandbox
        }
        "/env-service/{id}" => Access::OwnEnvService,
        // Templates and Envs are the platform's catalogue: everyone reads and uses them,
        // admins publish them.
        _ if route.starts_with("/v1/templates")
            || route == "/env"
            || route == "/env/"
            || route.starts_with("/env/{") =>
        {
            if reads {
                Access::AnyKey
            } else {
                Access::Admin
            }
        }
        _ => Access::AnyKey,
    }
}

/// How a surface answers for a resource that does not exist (or is not the caller's: the two
/// must look the same): the native API's problem, or the AEnvironment surface's envelope.
pub type NotFoundAnswer = fn(Resource, &str) -> Response;

/// What an owner-checked route names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Sandbox,
    EnvService,
}

/// The native API's answer for a missing resource, exactly as its handlers give it.
pub fn native_not_found(resource: Resource, id: &str) -> Response {
    match resource {
        Resource::Sandbox => {
            ApiError::from(berth_control::service::ServiceError::sandbox_not_found(id)).into_response()
        }
        Resource::EnvService => ApiError::new(ProblemKind::NotFound, format!("no env-service `{id}`")).into_response(),
    }
}

/// The gate's state: the service it asks, the other surface's not-found answer, and the rate
/// buckets.
pub struct Gate {
    service: Arc<SandboxService>,
    beside_not_found: NotFoundAnswer,
    buckets: Mutex<HashMap<KeyId, Bucket>>,
}

impl Gate {
    pub fn new(service: Arc<SandboxService>, beside_not_found: NotFoundAnswer) -> Self {
        Gate {
            service,
            beside_not_found,
            buckets: Mutex::default(),
        }
    }

    fn not_found(&self, route: &str, resource: Resource, id: &str) -> Response {
        if route.starts_with("/v1/") {
            native_not_found(resource, id)
        } else {
            (self.beside_not_found)(resource, id)
        }
    }

    /// Takes one token of the key's bucket; `false` when it is empty.
    fn take_token(&self, key: &KeyId, per_second: u32) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let capacity = f64::from(per_second.max(1));
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: capacity,
            refilled: Instant::now(),
        });
        let now = Instant::now();
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.refilled).as_secs_f64() * capacity).min(capacity);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// The middleware: authenticate, authorize, limit, serve, audit.
pub async fn gate(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|matched| matched.as_str().to_owned())
        .unwrap_or_default();
    let method = request.method().clone();
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.to_string());
    let config = gate.service.config();
    let needs = access(&method, &route, config.open_metrics);
    let (mut parts, body) = request.into_parts();
    if needs == Access::Open {
        // Open routes refuse no one; a valid key only earns the detail an admin may see.
        let identity = gate.service.identity();
        let secret = take_credential(&mut parts.headers, &mut parts.uri);
        if config.auth == AuthMode::None {
            parts.extensions.insert(Caller::unauthenticated(DEFAULT_OWNER));
        } else if let Some(secret) = secret
            && let Ok(caller) = identity.check_quietly(&secret).await
        {
            parts.extensions.insert(caller);
        }
        return next.run(Request::from_parts(parts, body)).await;
    }
    let credential = take_credential(&mut parts.headers, &mut parts.uri);
    let identity = gate.service.identity();
    let caller = match (config.auth, credential) {
        (AuthMode::None, _) => Caller::unauthenticated(DEFAULT_OWNER),
        (AuthMode::Keys, None) => return refused(identity, AuthFailure::Missing, client, &method, &route).await,
        (AuthMode::Keys, Some(secret)) => match identity.authenticate(&secret).await {
            Ok(caller) => caller,
            Err(AuthFailure::Unavailable(detail)) => {
                return ApiError::new(
                    ProblemKind::StoreUnavailable,
                    format!("API keys cannot be checked now: {detail}"),
                )
                .into_response();
            }
            Err(failure) => return refused(identity, failure, client, &method, &route).await,
        },
    };
    let target = parts
        .extract::<RawPathParams>()
        .await
        .ok()
        .and_then(|params| target_of(&params));
    let response = match refusal(&gate, &caller, needs, &route, target.as_deref()).await {
        Some(refused) => refused,
        None => {
            parts.extensions.insert(caller.clone());
            next.run(Request::from_parts(parts, body)).await
        }
    };
    // Refused ones too: a member probing others' sandboxes is what an audit is for.
    if is_mutating(&method) {
        identity
            .audit(AuditEntry {
                time: Utc::now(),
                key_id: caller.key_id.clone(),
                owner: Some(caller.owner.clone()),
                role: Some(caller.role),
                action: format!("{method} {route}"),
                target,
                status: response.status().as_u16(),
                client,
            })
            .await;
    }
    response
}

/// Why `caller` may not go on: over its rate, or refused by [`authorize`].
async fn refusal(gate: &Gate, caller: &Caller, needs: Access, route: &str, target: Option<&str>) -> Option<Response> {
    let rate_limit = gate.service.config().rate_limit;
    if let (Some(per_second), Some(key)) = (rate_limit, &caller.key_id)
        && !gate.take_token(key, per_second)
    {
        let mut response = ApiError::new(
            ProblemKind::RateLimited,
            format!("this key may make {per_second} requests per second; retry after the Retry-After delay"),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Some(response);
    }
    authorize(gate, caller, needs, route, target).await
}

/// The refusal `needs` gives `caller` on `route` naming `target`, if any.
async fn authorize(gate: &Gate, caller: &Caller, needs: Access, route: &str, target: Option<&str>) -> Option<Response> {
    let resource = match needs {
        Access::Open | Access::AnyKey => return None,
        Access::Admin if caller.is_admin() => return None,
        Access::Admin => {
            return Some(
                ApiError::new(
                    ProblemKind::Forbidden,
                    format!(
                        "this needs the admin role; the key of `{}` has the member role",
                        caller.owner
                    ),
                )
                .into_response(),
            );
        }
        Access::OwnSandbox => Resource::Sandbox,
        Access::OwnEnvService => Resource::EnvService,
    };
    if caller.is_admin() {
        return None;
    }
    let id = target.unwrap_or_default();
    let owner = match resource {
        Resource::Sandbox => gate.service.owner_of(id).await,
        Resource::EnvService => gate.service.env_service_owner(id).await,
    };
    // Unknown ids go on to the handler, which answers them the same way.
    match owner {
        Some(owner) if !caller.may_access(&owner) => Some(gate.not_found(route, resource, id)),
        _ => None,
    }
}

/// What the route names: its `{id}` (the sandbox or env-service the owner check is about),
/// else its first parameter (a key id, an owner, a template). By name, never by position: a
/// sandbox route's other parameters (a process, a port) must not stand in for the sandbox.
fn target_of(params: &RawPathParams) -> Option<String> {
    params
        .iter()
        .find(|(name, _)| *name == "id")
        .or_else(|| params.iter().next())
        .map(|(_, value)| value.to_owned())
}

fn is_mutating(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A 401, counted and audited: `application/problem+json` with `WWW-Authenticate: Bearer`.
async fn refused(
    identity: &Identity,
    failure: AuthFailure,
    client: Option<String>,
    method: &Method,
    route: &str,
) -> Response {
    identity
        .audit(AuditEntry {
            time: Utc::now(),
            key_id: None,
            owner: None,
            role: None,
            action: "authenticate".into(),
            target: Some(format!("{method} {route}")),
            status: 401,
            client,
        })
        .await;
    let mut response = ApiError::new(ProblemKind::Unauthorized, failure.to_string()).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"berth\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_what_their_template_says() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(access(&get, "/healthz", true), Access::Open);
        assert_eq!(access(&get, "/metrics", true), Access::Open);
        assert_eq!(access(&get, "/metrics", false), Access::Admin);
        assert_eq!(access(&get, "/v1/sandboxes", true), Access::AnyKey);
        assert_eq!(access(&get, "/v1/sandboxes/{id}/files", true), Access::OwnSandbox);
        assert_eq!(
            access(&post, "/v1/sandboxes/{id}/proxy/{port}/{*path}", true),
            Access::OwnSandbox
        );
        assert_eq!(access(&get, "/v1/templates/{name}/{tag}", true), Access::AnyKey);
        assert_eq!(access(&Method::PUT, "/v1/templates/{name}/{tag}", true), Access::Admin);
        assert_eq!(access(&post, "/env/", true), Access::Admin);
        assert_eq!(access(&get, "/env/{name}/{version}", true), Access::AnyKey);
        assert_eq!(access(&Method::DELETE, "/env-instance/{id}", true), Access::OwnSandbox);
        assert_eq!(access(&get, "/env-service/{id}", true), Access::OwnEnvService);
        assert_eq!(access(&get, "/v1/keys", true), Access::Admin);
        assert_eq!(access(&get, "/v1/whoami", true), Access::AnyKey);
        assert_eq!(access(&get, "/ui/{*path}", true), Access::Open);
        assert_eq!(access(&get, "", true), Access::AnyKey, "unknown routes need a key too");
    }
}
