//! JSON over HTTP to a test server, and the assertions on AEnvironment's response envelope: the
//! tests that speak the wire format directly (not through berth's client) share these.

use serde_json::Value;

use crate::TestServer;

pub use crate::{http, http_as};

/// One exchange with the server as its admin: the status and the body as JSON (a string when
/// it is not JSON).
pub async fn send(server: &TestServer, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    send_as(server, server.admin_key.as_deref(), method, path, body).await
}

/// [`send`], with `Authorization: Bearer <token>` when a token is given (as AEnvironment's SDK
/// sends its API key), and without any credential otherwise.
pub async fn send_as(
    server: &TestServer,
    token: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http().request(method, format!("{}{path}", server.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    json_of(request.send().await.expect("the server answers")).await
}

/// The status and the body as JSON (a string when it is not JSON).
pub async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

pub async fn get(server: &TestServer, path: &str) -> (u16, Value) {
    send(server, reqwest::Method::GET, path, None).await
}

pub async fn post(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    send(server, reqwest::Method::POST, path, Some(body)).await
}

pub async fn put(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    send(server, reqwest::Method::PUT, path, Some(body)).await
}

pub async fn delete(server: &TestServer, path: &str) -> (u16, Value) {
    send(server, reqwest::Method::DELETE, path, None).await
}

/// Asserts AEnvironment's success envelope (HTTP 200, `success`, code 0, empty message) and
/// returns its `data`.
pub fn data(answer: (u16, Value)) -> Value {
    let (status, body) = answer;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["message"], "", "{body}");
    body["data"].clone()
}

/// Asserts AEnvironment's error envelope, with `expected` as both the HTTP status and the code
/// and no data, and returns its message.
pub fn failure(answer: (u16, Value), expected: u16) -> String {
    let (status, body) = answer;
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["code"], expected, "{body}");
    assert_eq!(body["data"], Value::Null, "{body}");
    body["message"].as_str().unwrap_or_default().to_owned()
}
