//! The native proxy into a sandbox: `/v1/sandboxes/{id}/proxy/{port}/{*path}` forwards any method
//! to a server inside a `Running` sandbox (its container IP and `port`), path and query passed on,
//! bodies streamed both ways; WebSocket upgrades are proxied frame by frame.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Response};
use berth_api::{Problem, ProblemKind};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};
use tracing::debug;

use crate::error::ApiError;
use berth_control::address::sandbox_address;
use berth_control::service::SandboxService;
use berth_core::error_chain::describe;
use berth_gateway::forward::{forward, strip_hop_by_hop};

/// Longest wait for the sandbox's server to accept a WebSocket.
const WEBSOCKET_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const DESCRIPTION: &str = "Forwards the request — any method, the rest of the path and the query, every header but \
the hop-by-hop ones, the body streamed — to `port` on the sandbox's container IP, and streams the answer back as it \
comes (server-sent events and chunked answers are never buffered). A WebSocket upgrade is proxied too, frame by \
frame. The sandbox must be `Running` (409 otherwise); a server that cannot be reached is a 502.";

/// The path parameters. The rest of the path is read raw from the URI (see [`upstream_path`]):
/// the `{*path}` parameter would arrive percent-decoded.
#[derive(Debug, Deserialize)]
pub struct ProxyTarget {
    id: String,
    port: String,
}

/// A request for a server inside a sandbox.
#[utoipa::path(
    method(get, post, put, patch, delete, head, options),
    path = "/v1/sandboxes/{id}/proxy/{port}/{path}",
    tag = "proxy",
    description = DESCRIPTION,
    params(
        ("id" = String, Path, description = "Sandbox id"),
        ("port" = u16, Path, description = "The container port the server listens on, 1-65535"),
        ("path" = String, Path, description = "The rest of the path (it may contain `/`), passed on with the query"),
    ),
    responses(
        (status = 200, description = "Whatever the sandbox's server answers (any status), streamed"),
        (status = 101, description = "Switching to the WebSocket protocol, proxied to the sandbox's server"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The sandbox is not Running", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`port` is not a port", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The sandbox's server could not be reached", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn proxy(
    State(service): State<Arc<SandboxService>>,
    Path(target): Path<ProxyTarget>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let port = match target.port.parse::<u16>() {
        Ok(port) if port > 0 => port,
        _ => {
            return Err(ApiError::field(
                ProblemKind::Validation,
                "port",
                format!("`{}` is not a port: use 1-65535", target.port),
            ));
        }
    };
    proxy_to(
        &service,
        &target.id,
        port,
        upstream_path(request.uri()),
        upgrade,
        request,
    )
    .await
}

/// A request through a presigned URL (`/p/{token}/…`): the token, not a key, says which port of
/// which sandbox it may reach, and until when.
pub async fn presigned(
    State(service): State<Arc<SandboxService>>,
    Path(params): Path<std::collections::HashMap<String, String>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let token = params.get("token").map(String::as_str).unwrap_or_default();
    let grant = service
        .config()
        .presigner
        .verify(token, chrono::Utc::now())
        .map_err(|refusal| ApiError::new(ProblemKind::Forbidden, refusal.to_string()))?;
    service
        .honours(&grant)
        .await
        .map_err(|refusal| ApiError::new(ProblemKind::Forbidden, refusal))?;
    // "", "p", token, rest
    let rest = request.uri().path().splitn(4, '/').nth(3).unwrap_or_default();
    let path_and_query = match request.uri().query() {
        Some(query) => format!("/{rest}?{query}"),
        None => format!("/{rest}"),
    };
    proxy_to(
        &service,
        grant.sandbox_id.as_str(),
        grant.port,
        path_and_query,
        upgrade,
        request,
    )
    .await
}

async fn proxy_to(
    service: &SandboxService,
    id: &str,
    port: u16,
    path_and_query: String,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let running = service.running_container(id).await?;
    let sandbox = service.get(running.id.as_str())?;
    let address = sandbox_address(&sandbox, port).ok_or_else(|| {
        ApiError::new(
            ProblemKind::InvalidState,
            format!("sandbox {} has no network address to reach port {port} at", sandbox.id),
        )
    })?;
    debug!(sandbox = %sandbox.id, %address, method = %request.method(), path = %path_and_query, "proxy request");
    if let Ok(upgrade) = upgrade {
        return websocket(upgrade, address, &path_and_query, request.headers()).await;
    }
    let (parts, body) = request.into_parts();
    forward(address, &path_and_query, parts, body).await.map_err(|details| {
        ApiError::new(
            ProblemKind::UpstreamUnavailable,
            format!(
                "cannot reach port {port} of sandbox {} at {address}: {details}",
                sandbox.id
            ),
        )
    })
}

/// The documented path of [`proxy`].
const PROXY_PATH: &str = "/v1/sandboxes/{id}/proxy/{port}/{path}";

/// Gives each method of the proxy route its own `operationId` (`proxy_get`, `proxy_post`…):
/// OpenAPI wants them unique, and one handler serving every method would repeat `proxy`.
pub struct DistinctOperationIds;

impl utoipa::Modify for DistinctOperationIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(item) = openapi.paths.paths.get_mut(PROXY_PATH) else {
            return;
        };
        for (method, operation) in [
            ("get", &mut item.get),
            ("post", &mut item.post),
            ("put", &mut item.put),
            ("patch", &mut item.patch),
            ("delete", &mut item.delete),
            ("head", &mut item.head),
            ("options", &mut item.options),
        ] {
            if let Some(operation) = operation {
                operation.operation_id = Some(format!("proxy_{method}"));
            }
        }
    }
}

/// What follows `/v1/sandboxes/{id}/proxy/{port}` in the raw (still percent-encoded) path, with
/// the query: the request target the sandbox's server gets.
fn upstream_path(uri: &Uri) -> String {
    // "", "v1", "sandboxes", id, "proxy", port, rest
    let rest = uri.path().splitn(7, '/').nth(6).unwrap_or_default();
    match uri.query() {
        Some(query) => format!("/{rest}?{query}"),
        None => format!("/{rest}"),
    }
}

/// Opens the same WebSocket on the sandbox's server first (so a refusal is an HTTP answer the
/// client can read), then accepts the client's and relays frames both ways.
async fn websocket(
    upgrade: WebSocketUpgrade,
    address: std::net::SocketAddr,
    path_and_query: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let unreachable = |details: String| {
        ApiError::new(
            ProblemKind::UpstreamUnavailable,
            format!("cannot open a WebSocket to {address}{path_and_query}: {details}"),
        )
    };
    let mut request = format!("ws://{address}{path_and_query}")
        .into_client_request()
        .map_err(|error| unreachable(describe(&error)))?;
    // The end-to-end headers (subprotocols, cookies, authorization…) go along; the handshake's
    // own are made afresh for the second connection.
    let mut forwarded = headers.clone();
    strip_hop_by_hop(&mut forwarded);
    for name in [
        header::HOST,
        header::SEC_WEBSOCKET_KEY,
        header::SEC_WEBSOCKET_VERSION,
        header::SEC_WEBSOCKET_EXTENSIONS,
        header::SEC_WEBSOCKET_ACCEPT,
    ] {
        forwarded.remove(name);
    }
    for (name, value) in &forwarded {
        request.headers_mut().append(name, value.clone());
    }
    let (upstream, answer) =
        match tokio::time::timeout(WEBSOCKET_CONNECT_TIMEOUT, tokio_tungstenite::connect_async(request)).await {
            Ok(Ok(connected)) => connected,
            Ok(Err(error)) => return Err(unreachable(describe(&error))),
            Err(_) => return Err(unreachable(format!("no answer within {WEBSOCKET_CONNECT_TIMEOUT:?}"))),
        };
    let protocol = answer
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let upgrade = match protocol {
        Some(protocol) => upgrade.protocols([protocol]),
        None => upgrade,
    };
    Ok(upgrade
        .on_upgrade(move |socket| relay(socket, upstream))
        .into_response())
}

type UpstreamSocket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Relays data and close frames until either side closes or fails. Pings are answered by each
/// connection itself, not relayed.
async fn relay(client: WebSocket, upstream: UpstreamSocket) {
    let (mut to_client, mut from_client) = client.split();
    let (mut to_upstream, mut from_upstream) = upstream.split();
    let client_to_upstream = async {
        while let Some(Ok(message)) = from_client.next().await {
            let Some(message) = to_upstream_message(message) else {
                continue;
            };
            let closing = message.is_close();
            if to_upstream.send(message).await.is_err() || closing {
                break;
            }
        }
        let _ = to_upstream.close().await;
    };
    let upstream_to_client = async {
        while let Some(Ok(message)) = from_upstream.next().await {
            let Some(message) = to_client_message(message) else {
                continue;
            };
            let closing = matches!(message, Message::Close(_));
            if to_client.send(message).await.is_err() || closing {
                break;
            }
        }
        let _ = to_client.close().await;
    };
    tokio::select! {
        () = client_to_upstream => {}
        () = upstream_to_client => {}
    }
}

fn to_upstream_message(message: Message) -> Option<tungstenite::Message> {
    Some(match message {
        Message::Text(text) => tungstenite::Message::text(text.as_str()),
        Message::Binary(bytes) => tungstenite::Message::binary(bytes),
        Message::Close(frame) => tungstenite::Message::Close(frame.map(|frame| tungstenite::protocol::CloseFrame {
            code: frame.code.into(),
            reason: frame.reason.as_str().into(),
        })),
        Message::Ping(_) | Message::Pong(_) => return None,
    })
}

fn to_client_message(message: tungstenite::Message) -> Option<Message> {
    Some(match message {
        tungstenite::Message::Text(text) => Message::text(text.as_str()),
        tungstenite::Message::Binary(bytes) => Message::binary(bytes),
        tungstenite::Message::Close(frame) => Message::Close(frame.map(|frame| CloseFrame {
            code: frame.code.into(),
            reason: frame.reason.as_str().into(),
        })),
        tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) | tungstenite::Message::Frame(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_path_is_the_raw_rest_with_the_query() {
        let cases = [
            ("/v1/sandboxes/0123456789abcdef/proxy/8081/health", "/health"),
            (
                "/v1/sandboxes/0123456789abcdef/proxy/8081/functions/a%2Fb?x=1&y=2",
                "/functions/a%2Fb?x=1&y=2",
            ),
            ("/v1/sandboxes/0123456789abcdef/proxy/8081/", "/"),
            ("/v1/sandboxes/0123456789abcdef/proxy/8081/a//b/", "/a//b/"),
        ];
        for (path, expected) in cases {
            let uri: Uri = path.parse().unwrap();
            assert_eq!(upstream_path(&uri), expected, "{path}");
        }
    }

    /// A WebSocket server that echoes every data frame.
    async fn echo_server() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((connection, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut socket) = tokio_tungstenite::accept_async(connection).await else {
                        return;
                    };
                    while let Some(Ok(message)) = socket.next().await {
                        if (message.is_text() || message.is_binary()) && socket.send(message).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        address
    }

    /// berth's side: every request is proxied as a WebSocket to `upstream`.
    async fn proxy_to(upstream: std::net::SocketAddr) -> std::net::SocketAddr {
        let app = axum::Router::new().route(
            "/",
            axum::routing::any(move |upgrade: WebSocketUpgrade, headers: HeaderMap| async move {
                websocket(upgrade, upstream, "/echo?x=1", &headers).await
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        address
    }

    #[tokio::test]
    async fn websocket_frames_are_relayed_both_ways() {
        let proxy = proxy_to(echo_server().await).await;
        let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{proxy}/"))
            .await
            .expect("the proxied upgrade succeeds");
        socket.send(tungstenite::Message::text("hello")).await.unwrap();
        assert_eq!(
            socket.next().await.unwrap().unwrap(),
            tungstenite::Message::text("hello")
        );
        socket
            .send(tungstenite::Message::binary(vec![0u8, 1, 255]))
            .await
            .unwrap();
        assert_eq!(
            socket.next().await.unwrap().unwrap(),
            tungstenite::Message::binary(vec![0u8, 1, 255])
        );
        socket.close(None).await.unwrap();
    }

    #[tokio::test]
    async fn an_unreachable_websocket_server_is_a_502() {
        let closed = {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        let proxy = proxy_to(closed).await;
        match tokio_tungstenite::connect_async(format!("ws://{proxy}/")).await {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 502),
            other => panic!("expected a 502, got {other:?}"),
        }
    }

    #[test]
    fn close_frames_keep_their_code_and_reason() {
        let close = Message::Close(Some(CloseFrame {
            code: 4001,
            reason: "bye".into(),
        }));
        let upstream = to_upstream_message(close.clone()).unwrap();
        assert!(upstream.is_close());
        assert_eq!(to_client_message(upstream), Some(close));
        assert_eq!(to_upstream_message(Message::Ping(Default::default())), None);
        assert_eq!(
            to_client_message(tungstenite::Message::text("hi")),
            Some(Message::text("hi"))
        );
    }
}
