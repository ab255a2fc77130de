//! The MCP gateway (AEnvironment's `:8081`) on a listener of its own: each request is forwarded to
//! the sandbox server its `AEnvCore-MCPProxy-URL` header names — method, path, query and body
//! unchanged, the answer streamed back as it comes (SSE, chunked, streamable-HTTP MCP). It is not an
//! open proxy: only an address of one of berth's own `Running` sandboxes is reached, as the
//! [`SandboxLookup`] the server wires in says.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::debug;

use crate::SandboxLookup;

/// The header naming the sandbox server a gateway request is for, e.g. `http://172.17.0.5:8081`.
pub const ROUTING_HEADER: &str = "AEnvCore-MCPProxy-URL";
/// Sent beside the routing header by AEnvironment's SDK; only logged.
const INSTANCE_HEADER: &str = "AEnvCore-EnvInstance-ID";

/// Serves the gateway on `listener` until `shutdown` completes, then finishes the requests in
/// flight (the caller bounds how long, as for the API). `anonymous`: whether a request without
/// an API key is forwarded (AEnvironment's SDK sends none to the gateway).
pub async fn serve<L>(
    listener: L,
    lookup: Arc<dyn SandboxLookup>,
    anonymous: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, router(lookup, anonymous))
        .with_graceful_shutdown(shutdown)
        .await
}

/// What the gateway's requests share.
#[derive(Clone)]
struct Gateway {
    lookup: Arc<dyn SandboxLookup>,
    anonymous: bool,
}

/// Every path and method goes to [`route`]: the gateway has no routes of its own but `/health`.
pub fn router(lookup: Arc<dyn SandboxLookup>, anonymous: bool) -> Router {
    Router::new().fallback(route).with_state(Gateway { lookup, anonymous })
}

/// The 403 for an address the caller may not reach: the same whether it is no sandbox at all
/// or another owner's, so the gateway tells nothing about others' sandboxes.
fn not_reachable(address: SocketAddr, server: &str) -> Response {
    gateway_error(
        StatusCode::FORBIDDEN,
        json!({
            "error": format!(
                "{address} is not a running sandbox of this berth: the gateway only forwards to berth's own \
                 Running sandboxes ({ROUTING_HEADER}: http://<sandbox ip>:<port>)"
            ),
            "server": server,
        }),
    )
}

async fn route(State(gateway): State<Gateway>, mut request: Request) -> Response {
    let lookup = &gateway.lookup;
    // Taken out before anything else: a berth key never goes on into the sandbox (the sandbox
    // server's own tokens do).
    let (headers, uri) = {
        let mut uri = request.uri().clone();
        let secret = crate::credential::take_berth_key(request.headers_mut(), &mut uri);
        (secret, uri)
    };
    *request.uri_mut() = uri;
    let secret = headers;
    let Some(target) = request.headers().get(ROUTING_HEADER) else {
        if request.uri().path() == "/health" {
            return (
                StatusCode::OK,
                axum::Json(json!({"status": "healthy", "message": "MCP Gateway is running"})),
            )
                .into_response();
        }
        return gateway_error(
            StatusCode::BAD_REQUEST,
            json!({"error": format!(
                "the {ROUTING_HEADER} header is required: set it to the sandbox's server, e.g. http://<sandbox ip>:8081"
            )}),
        );
    };
    let server = String::from_utf8_lossy(target.as_bytes()).into_owned();
    let address = match parse_target(&server) {
        Ok(address) => address,
        Err((status, message)) => return gateway_error(status, json!({"error": message, "server": server})),
    };
    let caller = match &secret {
        Some(secret) => match lookup.authenticate(secret).await {
            Ok(caller) => Some(caller),
            Err(reason) => return gateway_error(StatusCode::UNAUTHORIZED, json!({"error": reason, "server": server})),
        },
        None if gateway.anonymous => None,
        None => {
            return gateway_error(
                StatusCode::UNAUTHORIZED,
                json!({
                    "error": "this gateway needs an API key: send `Authorization: Bearer <key>` (it serves requests \
                              without one only on loopback, or with --gateway-anonymous always)",
                    "server": server,
                }),
            );
        }
    };
    match lookup.owner_at(address) {
        Some(owner) if caller.as_ref().is_none_or(|caller| caller.may_access(&owner)) => {}
        _ => return not_reachable(address, &server),
    }
    let (mut parts, body) = request.into_parts();
    debug!(
        %address,
        method = %parts.method,
        path = parts.uri.path(),
        instance = ?parts.headers.get(INSTANCE_HEADER),
        "gateway request"
    );
    parts.headers.remove(ROUTING_HEADER);
    if parts.method == Method::GET && parts.uri.path() == "/sse" {
        parts
            .headers
            .insert(header::ACCEPT, HeaderValue::from_static("text/event-stream"));
    }
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |path| path.as_str().to_owned());
    match crate::forward::forward(address, &path_and_query, parts, body).await {
        Ok(response) => response,
        Err(details) => gateway_error(
            StatusCode::BAD_GATEWAY,
            json!({"error": "Failed to forward request to MCP server", "details": details, "server": server}),
        ),
    }
}

/// The gateway answers errors as AEnvironment's does: a small JSON object with `error`.
fn gateway_error(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Reads the routing header: `http://<ip>[:port]`. A malformed value is a 400; a host that is not
/// an IP address cannot be one of berth's sandboxes (and is never resolved): 403.
fn parse_target(text: &str) -> Result<SocketAddr, (StatusCode, String)> {
    let text = text.trim();
    let uri: Uri = text.parse().map_err(|_| {
        (
            StatusCode::BAD_REQUEST,
            format!("{ROUTING_HEADER} `{text}` is not a URL such as http://172.17.0.5:8081"),
        )
    })?;
    if uri.scheme_str() != Some("http") {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("{ROUTING_HEADER} `{text}` must be an http:// URL such as http://172.17.0.5:8081"),
        ));
    }
    let host = uri.host().unwrap_or_default();
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| {
            (
                StatusCode::FORBIDDEN,
                format!("{ROUTING_HEADER} `{text}`: the host must be the IP address of one of berth's sandboxes"),
            )
        })?;
    Ok(SocketAddr::new(ip, uri.port_u16().unwrap_or(80)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_http_urls_with_an_ip_host() {
        assert_eq!(
            parse_target("http://172.17.0.5:8081"),
            Ok("172.17.0.5:8081".parse().unwrap())
        );
        assert_eq!(parse_target(" http://10.0.0.1 "), Ok("10.0.0.1:80".parse().unwrap()));
        assert_eq!(parse_target("http://[::1]:9000/mcp"), Ok("[::1]:9000".parse().unwrap()));
        for malformed in [
            "",
            "not a url",
            "https://10.0.0.1:8081",
            "10.0.0.1:8081",
            "ftp://10.0.0.1",
        ] {
            assert_eq!(
                parse_target(malformed).map_err(|(status, _)| status),
                Err(StatusCode::BAD_REQUEST),
                "{malformed}"
            );
        }
        for named in ["http://localhost:8081", "http://example.com"] {
            assert_eq!(
                parse_target(named).map_err(|(status, _)| status),
                Err(StatusCode::FORBIDDEN),
                "{named}"
            );
        }
    }
}
