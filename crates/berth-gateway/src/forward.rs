//! The streaming forwarder into servers inside sandboxes, and the one upstream connection pool
//! that the MCP gateway and the native proxy route share (no environment proxy, no redirects).

use std::sync::OnceLock;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::http::{HeaderMap, HeaderName, header, request};
use axum::response::Response;

/// Longest wait for a sandbox's server to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle upstream connections kept per sandbox server (AEnvironment keeps 10 too).
const IDLE_CONNECTIONS_PER_SERVER: usize = 10;
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(90);

/// The one HTTP client (and connection pool) for servers inside sandboxes. Never a proxy from
/// the environment, never a redirect followed: either could take a request outside the sandbox.
pub fn upstream_client() -> Result<&'static reqwest::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            // reqwest's TLS needs a process-wide rustls provider; installing fails only if one is set.
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(CONNECT_TIMEOUT)
                .pool_max_idle_per_host(IDLE_CONNECTIONS_PER_SERVER)
                .pool_idle_timeout(IDLE_CONNECTION_TIMEOUT)
                .tcp_nodelay(true)
                .build()
                .map_err(|error| {
                    format!(
                        "cannot set up the HTTP client: {}",
                        berth_core::error_chain::describe(&error)
                    )
                })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Sends the request to `address` as `path_and_query`, streaming the body there and the answer
/// back chunk by chunk (never buffered). Hop-by-hop headers stay behind; the rest go as they
/// came. `Err` says why the server could not be reached.
pub async fn forward(
    address: std::net::SocketAddr,
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
    let answer = upstream
        .send()
        .await
        .map_err(|error| berth_core::error_chain::describe(&error))?;
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
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

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
