//! The MCP gateway (AEnvironment's `:8081`) on a listener of its own: each request is forwarded to
//! the sandbox server its `AEnvCore-MCPProxy-URL` header names — method, path, query and body
//! unchanged, the answer streamed back as it comes (SSE, chunked, streamable-HTTP MCP). It is not an
//! open proxy: only an address of one of berth's own `Running` sandboxes is reached. Also home of
//! the streaming forwarder and the one upstream connection pool that the native proxy route
//! (`api/proxy.rs`) and the readiness probes share.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header, request};
use axum::response::{IntoResponse, Response};
use berth_core::Sandbox;
use serde_json::json;
use tokio::net::TcpListener;
use tracing::debug;

use crate::service::SandboxService;

/// The header naming the sandbox server a gateway request is for, e.g. `http://172.17.0.5:8081`.
pub const ROUTING_HEADER: &str = "AEnvCore-MCPProxy-URL";
/// Sent beside the routing header by AEnvironment's SDK; only logged.
const INSTANCE_HEADER: &str = "AEnvCore-EnvInstance-ID";

/// Longest wait for a sandbox's server to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle upstream connections kept per sandbox server (AEnvironment keeps 10 too).
const IDLE_CONNECTIONS_PER_SERVER: usize = 10;
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(90);

/// Serves the gateway on `listener` until `shutdown` completes, then finishes the requests in
/// flight (the caller bounds how long, as for the API).
pub async fn serve(
    listener: TcpListener,
    service: Arc<SandboxService>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(service))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Every path and method goes to [`route`]: the gateway has no routes of its own but `/health`.
pub fn router(service: Arc<SandboxService>) -> Router {
    Router::new().fallback(route).with_state(service)
}

async fn route(State(service): State<Arc<SandboxService>>, request: Request) -> Response {
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
    if service.running_at(address).is_none() {
        return gateway_error(
            StatusCode::FORBIDDEN,
            json!({
                "error": format!(
                    "{address} is not a running sandbox of this berth: the gateway only forwards to berth's own \
                     Running sandboxes ({ROUTING_HEADER}: http://<sandbox ip>:<port>)"
                ),
                "server": server,
            }),
        );
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
    match forward(address, &path_and_query, parts, body).await {
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

/// Whether `address` is `sandbox`'s: its container IP (any port: the sandbox's own network), or a
/// host port it publishes.
pub(crate) fn reaches(sandbox: &Sandbox, address: SocketAddr) -> bool {
    let ip = address.ip();
    if sandbox.ip.as_deref().and_then(|text| text.parse::<IpAddr>().ok()) == Some(ip) {
        return true;
    }
    sandbox.ports.iter().any(|binding| {
        binding.host_port == address.port()
            && binding
                .host_ip
                .parse::<IpAddr>()
                .is_ok_and(|host_ip| host_ip == ip || (host_ip.is_unspecified() && ip.is_loopback()))
    })
}

/// Where berth reaches `container_port` of `sandbox`: its container IP, else the host port it is
/// published on.
pub(crate) fn sandbox_address(sandbox: &Sandbox, container_port: u16) -> Option<SocketAddr> {
    if let Some(ip) = sandbox.ip.as_deref().and_then(|text| text.parse::<IpAddr>().ok()) {
        return Some(SocketAddr::new(ip, container_port));
    }
    sandbox
        .ports
        .iter()
        .find(|binding| binding.container_port == container_port)
        .and_then(|binding| {
            let ip: IpAddr = binding.host_ip.parse().ok()?;
            let ip = if ip.is_unspecified() {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                ip
            };
            Some(SocketAddr::new(ip, binding.host_port))
        })
}

/// The one HTTP client (and connection pool) for servers inside sandboxes. Never a proxy from
/// the environment, never a redirect followed: either could take a request outside the sandbox.
pub(crate) fn upstream_client() -> Result<&'static reqwest::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(CONNECT_TIMEOUT)
                .pool_max_idle_per_host(IDLE_CONNECTIONS_PER_SERVER)
                .pool_idle_timeout(IDLE_CONNECTION_TIMEOUT)
                .tcp_nodelay(true)
                .build()
                .map_err(|error| format!("cannot set up the HTTP client: {}", describe(&error)))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Sends the request to `address` as `path_and_query`, streaming the body there and the answer
/// back chunk by chunk (never buffered). Hop-by-hop headers stay behind; the rest go as they
/// came. `Err` says why the server could not be reached.
pub(crate) async fn forward(
    address: SocketAddr,
    path_and_query: &str,
    parts: request::Parts,
    body: Body,
) -> Result<Response, String> {
    let client = upstream_client()?;
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    let mut upstream = client
        .request(parts.method, format!("http://{address}{path_and_query}"))
        .headers(headers);
    // A request without a body goes without one (not as an empty chunked stream, which some
    // servers refuse); the rest stream, with their `Content-Length` when they came with one.
    if !body.is_end_stream() {
        upstream = upstream.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    }
    let answer = upstream.send().await.map_err(|error| describe(&error))?;
    let status = answer.status();
    let mut headers = answer.headers().clone();
    strip_hop_by_hop(&mut headers);
    let mut response = Response::new(Body::from_stream(answer.bytes_stream()));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

/// Removes the headers that concern one connection only (RFC 9110 §7.6.1), including those the
/// `Connection` header lists.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
}

/// An error with its causes, in one line: "error sending request…: connection refused".
pub(crate) fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::{PortBinding, SandboxRequest, SpecPolicy};
    use chrono::Utc;

    fn sandbox(ip: Option<&str>, ports: Vec<PortBinding>) -> Sandbox {
        let spec = SandboxRequest {
            image: Some("busybox".into()),
            ..SandboxRequest::default()
        }
        .validate(&SpecPolicy::default())
        .expect("a valid spec");
        let mut sandbox = Sandbox::new_pending(spec, "me".into(), "local".into(), None, Utc::now());
        sandbox.ip = ip.map(str::to_owned);
        sandbox.ports = ports;
        sandbox
    }

    fn binding(host_ip: &str, host_port: u16) -> PortBinding {
        PortBinding {
            container_port: 8081,
            host_ip: host_ip.into(),
            host_port,
        }
    }

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

    #[test]
    fn a_sandbox_is_reached_at_its_ip_or_its_published_ports_only() {
        let published = sandbox(Some("172.17.0.5"), vec![binding("127.0.0.1", 41000)]);
        assert!(reaches(&published, "172.17.0.5:8081".parse().unwrap()));
        assert!(reaches(&published, "172.17.0.5:9".parse().unwrap()));
        assert!(reaches(&published, "127.0.0.1:41000".parse().unwrap()));
        assert!(!reaches(&published, "127.0.0.1:41001".parse().unwrap()));
        assert!(!reaches(&published, "172.17.0.6:8081".parse().unwrap()));
        assert!(!reaches(&published, "1.1.1.1:8081".parse().unwrap()));
        let everywhere = sandbox(None, vec![binding("0.0.0.0", 41000)]);
        assert!(reaches(&everywhere, "127.0.0.1:41000".parse().unwrap()));
        assert!(!reaches(&sandbox(Some(""), Vec::new()), "0.0.0.0:80".parse().unwrap()));
    }

    #[test]
    fn the_container_ip_is_preferred_to_a_published_port() {
        let published = sandbox(Some("172.17.0.5"), vec![binding("0.0.0.0", 41000)]);
        assert_eq!(
            sandbox_address(&published, 8081),
            Some("172.17.0.5:8081".parse().unwrap())
        );
        let no_ip = sandbox(None, vec![binding("0.0.0.0", 41000)]);
        assert_eq!(sandbox_address(&no_ip, 8081), Some("127.0.0.1:41000".parse().unwrap()));
        assert_eq!(sandbox_address(&no_ip, 22), None);
    }

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("mcp-session-id", "abc"),
            ("authorization", "Bearer t"),
            ("content-type", "application/json"),
        ] {
            headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["authorization", "content-type", "mcp-session-id"]);
    }
}
