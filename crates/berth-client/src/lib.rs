//! Typed async HTTP client for berth's native v1 API: URL building, requests, and the mapping of
//! answers (problem+json, other statuses, unreachable servers) to [`ClientError`]. Work inside a
//! sandbox (exec, files, logs, stats) is in [`work`], the interactive exec socket in [`ws`],
//! templates and warm pools in [`templates`], snapshots and forks in [`snapshots`], the
//! AEnvironment Env registry in [`aenv`].

use std::time::Duration;

use berth_api::{
    IDEMPOTENCY_KEY_HEADER, NumberOrString, Problem, Readiness, RenewTtlRequest, RenewTtlResponse, SandboxList,
    SandboxRequest, SandboxView,
};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

pub mod aenv;
pub mod identity;
pub mod snapshots;
pub mod sse;
pub mod templates;
pub mod volumes;
pub mod work;
pub mod ws;

pub use work::{
    ByteStream, Download, DownloadKind, EVENT_STREAM_CONTENT_TYPE, EventLine, EventsQuery, ExecEvent, ExecEventStream,
    LogsQuery, StatsStream, TAR_CONTENT_TYPE,
};
pub use ws::{ExecMessage, ExecReader, ExecSocket, ExecSocketRequest, ExecWriter};

/// How long the client waits for a TCP connection before reporting the server unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest piece of a non-problem error body quoted in an error message.
const MAX_QUOTED_BODY: usize = 512;

/// Everything that can go wrong talking to a berth server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an RFC 9457 problem (boxed: it is the largest variant).
    #[error("{}", problem_message(.0))]
    Problem(Box<Problem>),
    /// The server answered with a non-2xx status and a body that is not a problem.
    #[error("{}", status_message(*.status, .body))]
    Status { status: u16, body: String },
    /// The server could not be reached (refused, DNS, timeout, reset).
    #[error("cannot reach berth at {url}: {detail} (is `berth serve` running?)")]
    Connect { url: String, detail: String },
    /// A 2xx answer whose body is not what the API promises.
    #[error("unexpected answer from berth: {0}")]
    Decode(String),
    /// The server address is not a usable URL.
    #[error("invalid server URL `{url}`: {detail}")]
    InvalidUrl { url: String, detail: String },
}

impl ClientError {
    /// The HTTP status of an API error, if the server answered at all.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Problem(problem) => Some(problem.status),
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the server said the thing asked for does not exist (404).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Whether the server was not reached at all (so retrying other ids is pointless).
    pub fn is_connect(&self) -> bool {
        matches!(self, ClientError::Connect { .. })
    }
}

/// The problem's detail, followed by those field errors it does not already spell out.
fn problem_message(problem: &Problem) -> String {
    let fields: Vec<String> = problem
        .errors
        .iter()
        .map(|error| format!("{}: {}", error.field, error.message))
        .filter(|field| !problem.detail.contains(field.as_str()))
        .collect();
    if fields.is_empty() {
        return problem.detail.clone();
    }
    let detail = problem.detail.trim_end_matches('.');
    if detail.is_empty() {
        fields.join("; ")
    } else {
        format!("{detail}: {}", fields.join("; "))
    }
}

fn status_message(status: u16, body: &str) -> String {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
        .unwrap_or("");
    let head = format!("server answered HTTP {status} {reason}");
    let body = body.trim();
    if body.is_empty() {
        head.trim_end().to_owned()
    } else {
        format!("{}: {body}", head.trim_end())
    }
}

/// Options of [`BerthClient::create`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOptions {
    /// Wait until the sandbox runs (201) instead of returning once it is recorded (202).
    pub wait: bool,
    /// Makes a retried create return the first sandbox instead of making a second one.
    pub idempotency_key: Option<String>,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            wait: true,
            idempotency_key: None,
        }
    }
}

/// Filters and paging of [`BerthClient::list`]. Empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// All of these labels must match.
    pub labels: Vec<(String, String)>,
    pub status: Option<String>,
    pub owner: Option<String>,
    /// Page size; the server's default when `None`.
    pub limit: Option<usize>,
    /// Where the page starts: a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Include ended (Terminated and Failed) sandboxes.
    pub all: bool,
}

/// A client of one berth server.
#[derive(Debug, Clone)]
pub struct BerthClient {
    http: reqwest::Client,
    base: Url,
    /// The address as the user gave it, for error messages.
    display: String,
    /// The API key every request carries, if any.
    api_key: Option<String>,
    /// PEM roots for an `https://` server (and its `wss://` sockets), instead of the defaults.
    ca_certificate: Option<Vec<u8>>,
}

/// How a client authenticates itself and the server.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    pub api_key: Option<String>,
    /// PEM certificate(s) an `https://` server's certificate must chain to.
    pub ca_certificate: Option<Vec<u8>>,
}

impl BerthClient {
    /// [`new`](Self::new), sending `api_key` as `Authorization: Bearer` on every request.
    pub fn with_api_key(base_url: &str, api_key: Option<&str>) -> Result<Self, ClientError> {
        Self::with_options(
            base_url,
            &ClientOptions {
                api_key: api_key.map(str::to_owned),
                ca_certificate: None,
            },
        )
    }

    /// A client for the server at `base_url` with `options`: its key, and for an `https://`
    /// server the PEM certificate(s) to trust instead of the system's roots.
    pub fn with_options(base_url: &str, options: &ClientOptions) -> Result<Self, ClientError> {
        let mut client = Self::new(base_url)?;
        let invalid = |detail: String| ClientError::InvalidUrl {
            url: base_url.to_owned(),
            detail,
        };
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = &options.api_key {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| invalid("the API key holds characters a header cannot carry".to_owned()))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .default_headers(headers);
        if let Some(pem) = &options.ca_certificate {
            let certificates = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|error| invalid(format!("the CA certificate is not PEM: {error}")))?;
            builder = builder.tls_certs_only(certificates);
        }
        client.http = builder.build().map_err(|error| invalid(error.to_string()))?;
        client.api_key = options.api_key.clone();
        client.ca_certificate = options.ca_certificate.clone();
        Ok(client)
    }

    /// The key the client sends, for connections it makes itself (WebSockets).
    pub(crate) fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
    }

    pub(crate) fn ca_certificate(&self) -> Option<&[u8]> {
        self.ca_certificate.as_deref()
    }

    /// A client for the server at `base_url` (e.g. `http://127.0.0.1:8080`). Proxies are
    /// ignored: berth is reached directly.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        // reqwest's TLS needs a process-wide rustls provider; installing fails only if one is set.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base = parse_base_url(base_url)?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|error| ClientError::InvalidUrl {
                url: base_url.to_owned(),
                detail: error.to_string(),
            })?;
        Ok(BerthClient {
            http,
            base,
            display: base_url.trim_end_matches('/').to_owned(),
            api_key: None,
            ca_certificate: None,
        })
    }

    /// The server address as given.
    pub fn base_url(&self) -> &str {
        &self.display
    }

    /// `POST /v1/sandboxes`: creates a sandbox; answers once it runs unless `wait` is false.
    pub async fn create(&self, request: &SandboxRequest, options: CreateOptions) -> Result<SandboxView, ClientError> {
        let url = create_url(&self.base, options.wait);
        let mut builder = self.http.request(Method::POST, url).json(request);
        if let Some(key) = &options.idempotency_key {
            builder = builder.header(IDEMPOTENCY_KEY_HEADER, key);
        }
        self.send_json(builder).await
    }

    /// `GET /v1/sandboxes/{id}`.
    pub async fn get(&self, id: &str) -> Result<SandboxView, ClientError> {
        self.send_json(self.http.get(sandbox_url(&self.base, id, None))).await
    }

    /// `GET /v1/sandboxes`: one page.
    pub async fn list(&self, query: &ListQuery) -> Result<SandboxList, ClientError> {
        self.send_json(self.http.get(list_url(&self.base, query))).await
    }

    /// Every sandbox matching `query`, following `next_cursor` from `query.cursor` on.
    pub async fn list_all(&self, query: &ListQuery) -> Result<Vec<SandboxView>, ClientError> {
        let mut query = query.clone();
        let mut items = Vec::new();
        loop {
            let page = self.list(&query).await?;
            items.extend(page.items);
            match page.next_cursor {
                None => return Ok(items),
                Some(next) if query.cursor.as_deref() == Some(next.as_str()) => {
                    return Err(ClientError::Decode(format!(
                        "the list cursor `{next}` does not advance"
                    )));
                }
                Some(next) => query.cursor = Some(next),
            }
        }
    }

    /// `DELETE /v1/sandboxes/{id}?wait=true`: stops and removes the sandbox, returning once its
    /// container is gone.
    pub async fn delete(&self, id: &str) -> Result<(), ClientError> {
        let mut url = sandbox_url(&self.base, id, None);
        url.query_pairs_mut().append_pair("wait", "true");
        self.send(self.http.delete(url)).await.map(drop)
    }

    /// `DELETE /v1/sandboxes/{id}`: marks the sandbox `Stopping` and returns at once while the
    /// server removes it in the background. `None` when it had already ended.
    pub async fn delete_in_background(&self, id: &str) -> Result<Option<SandboxView>, ClientError> {
        let body = self.send(self.http.delete(sandbox_url(&self.base, id, None))).await?;
        if body.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|error| ClientError::Decode(format!("delete answer is not a sandbox: {error}")))
    }

    /// `POST /v1/sandboxes/{id}/ttl`: sets the deadline to now + `ttl`.
    pub async fn renew_ttl(&self, id: &str, ttl: NumberOrString) -> Result<RenewTtlResponse, ClientError> {
        let body = RenewTtlRequest { ttl };
        self.send_json(self.http.post(sandbox_url(&self.base, id, Some("ttl"))).json(&body))
            .await
    }

    /// `GET /readyz`: the readiness report, whether the server is ready (200) or not (503).
    pub async fn readyz(&self) -> Result<Readiness, ClientError> {
        let response = self
            .http
            .get(root_url(&self.base, "readyz"))
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.transport(e))?;
        if status == StatusCode::SERVICE_UNAVAILABLE
            && let Ok(readiness) = serde_json::from_slice::<Readiness>(&body)
        {
            return Ok(readiness);
        }
        decode_answer(status.as_u16(), &body)
    }

    /// `GET /healthz`: whether the server process answers.
    pub async fn healthz(&self) -> Result<(), ClientError> {
        self.send(self.http.get(root_url(&self.base, "healthz")))
            .await
            .map(drop)
    }

    async fn send_json<T: DeserializeOwned>(&self, builder: reqwest::RequestBuilder) -> Result<T, ClientError> {
        let (status, body) = self.exchange(builder).await?;
        decode_answer(status, &body)
    }

    /// Sends and accepts any 2xx answer, returning its body.
    async fn send(&self, builder: reqwest::RequestBuilder) -> Result<Vec<u8>, ClientError> {
        let (status, body) = self.exchange(builder).await?;
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(error_from_answer(status, &body))
        }
    }

    async fn exchange(&self, builder: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), ClientError> {
        let response = builder.send().await.map_err(|error| self.transport(error))?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|error| self.transport(error))?;
        Ok((status, body.to_vec()))
    }

    fn transport(&self, error: reqwest::Error) -> ClientError {
        if error.is_decode() {
            return ClientError::Decode(describe_error_chain(&error));
        }
        ClientError::Connect {
            url: self.display.clone(),
            detail: describe_error_chain(&error),
        }
    }
}

fn parse_base_url(base_url: &str) -> Result<Url, ClientError> {
    let invalid = |detail: &str| ClientError::InvalidUrl {
        url: base_url.to_owned(),
        detail: detail.to_owned(),
    };
    let trimmed = base_url.trim();
    // `host:port` alone means plain HTTP, as the default `http://127.0.0.1:8080` does.
    let text = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("http://{trimmed}")
    };
    let mut url = Url::parse(&text).map_err(|error| invalid(&format!("{error}; use e.g. http://127.0.0.1:8080")))?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(invalid(&format!(
                "scheme `{other}` is not supported; use http:// or https://"
            )));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("the URL has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("the URL must not have a query or fragment"));
    }
    // A path prefix (berth behind a reverse proxy) is kept; make it a directory.
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// `base` + the given path segments, each percent-encoded.
fn join_segments(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

fn root_url(base: &Url, name: &str) -> Url {
    join_segments(base, &[name])
}

fn create_url(base: &Url, wait: bool) -> Url {
    let mut url = join_segments(base, &["v1", "sandboxes"]);
    if !wait {
        url.query_pairs_mut().append_pair("wait", "false");
    }
    url
}

fn sandbox_url(base: &Url, id: &str, action: Option<&str>) -> Url {
    match action {
        None => join_segments(base, &["v1", "sandboxes", id]),
        Some(action) => join_segments(base, &["v1", "sandboxes", id, action]),
    }
}

fn list_url(base: &Url, query: &ListQuery) -> Url {
    let mut url = join_segments(base, &["v1", "sandboxes"]);
    {
        let mut pairs = url.query_pairs_mut();
        for (key, value) in &query.labels {
            pairs.append_pair("label", &format!("{key}={value}"));
        }
        if let Some(status) = &query.status {
            pairs.append_pair("status", status);
        }
        if let Some(owner) = &query.owner {
            pairs.append_pair("owner", owner);
        }
        if let Some(limit) = query.limit {
            pairs.append_pair("limit", &limit.to_string());
        }
        if let Some(cursor) = &query.cursor {
            pairs.append_pair("cursor", cursor);
        }
        if query.all {
            pairs.append_pair("all", "true");
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    url
}

/// A 2xx answer decoded as `T`, or the error the answer stands for.
fn decode_answer<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, ClientError> {
    if !(200..300).contains(&status) {
        return Err(error_from_answer(status, body));
    }
    serde_json::from_slice(body)
        .map_err(|error| ClientError::Decode(format!("HTTP {status} body is not as expected: {error}")))
}

/// The error a non-2xx answer stands for: its problem if the body is one, else status and body.
fn error_from_answer(status: u16, body: &[u8]) -> ClientError {
    if let Ok(problem) = serde_json::from_slice::<Problem>(body) {
        return ClientError::Problem(Box::new(problem));
    }
    let text = String::from_utf8_lossy(body);
    let mut quoted: String = text.chars().take(MAX_QUOTED_BODY).collect();
    if quoted.len() < text.len() {
        quoted.push('…');
    }
    ClientError::Status { status, body: quoted }
}

/// A short, human description of a transport failure: the innermost I/O cause when there is one.
fn describe_error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let causes = || berth_core::error_chain::causes(error);
    if let Some(text) = causes()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .find_map(|io| describe_io_kind(io.kind()))
    {
        return text.to_owned();
    }
    if error
        .downcast_ref::<reqwest::Error>()
        .is_some_and(reqwest::Error::is_timeout)
    {
        return "timed out".to_owned();
    }
    causes().last().map_or_else(|| error.to_string(), ToString::to_string)
}

fn describe_io_kind(kind: std::io::ErrorKind) -> Option<&'static str> {
    use std::io::ErrorKind;
    Some(match kind {
        ErrorKind::ConnectionRefused => "connection refused",
        ErrorKind::ConnectionReset => "connection reset",
        ErrorKind::ConnectionAborted => "connection aborted",
        ErrorKind::TimedOut => "timed out",
        ErrorKind::HostUnreachable => "host unreachable",
        ErrorKind::NetworkUnreachable => "network unreachable",
        ErrorKind::AddrNotAvailable => "address not available",
        ErrorKind::UnexpectedEof => "the connection closed before an answer",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use berth_api::{FieldError, ProblemKind};

    use super::*;

    fn base() -> Url {
        parse_base_url("http://127.0.0.1:8080").unwrap()
    }

    #[test]
    fn base_url_accepts_http_and_keeps_a_path_prefix() {
        assert_eq!(base().as_str(), "http://127.0.0.1:8080/");
        assert_eq!(
            parse_base_url("localhost:8080").unwrap().as_str(),
            "http://localhost:8080/"
        );
        let prefixed = parse_base_url("http://host/berth").unwrap();
        assert_eq!(
            sandbox_url(&prefixed, "abc", None).as_str(),
            "http://host/berth/v1/sandboxes/abc"
        );
        let trailing = parse_base_url("http://host/berth/").unwrap();
        assert_eq!(root_url(&trailing, "readyz").as_str(), "http://host/berth/readyz");
    }

    #[test]
    fn base_url_refuses_what_cannot_work() {
        for (url, needle) in [
            ("ftp://host", "scheme `ftp`"),
            ("http://", "http://127.0.0.1:8080"),
            ("not a url", "http://127.0.0.1:8080"),
            ("http://host/?x=1", "query"),
        ] {
            let error = parse_base_url(url).unwrap_err();
            assert!(matches!(error, ClientError::InvalidUrl { .. }), "{url}: {error:?}");
            assert!(error.to_string().contains(needle), "{url}: {error}");
        }
    }

    #[test]
    fn urls_for_each_call() {
        let base = base();
        assert_eq!(create_url(&base, true).as_str(), "http://127.0.0.1:8080/v1/sandboxes");
        assert_eq!(
            create_url(&base, false).as_str(),
            "http://127.0.0.1:8080/v1/sandboxes?wait=false"
        );
        assert_eq!(
            sandbox_url(&base, "0123456789abcdef", None).as_str(),
            "http://127.0.0.1:8080/v1/sandboxes/0123456789abcdef"
        );
        assert_eq!(
            sandbox_url(&base, "abc", Some("ttl")).as_str(),
            "http://127.0.0.1:8080/v1/sandboxes/abc/ttl"
        );
        assert_eq!(root_url(&base, "healthz").as_str(), "http://127.0.0.1:8080/healthz");
    }

    #[test]
    fn ids_cannot_escape_their_path_segment() {
        let url = sandbox_url(&base(), "../x?y#z", None);
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/v1/sandboxes/..%2Fx%3Fy%23z");
    }

    #[test]
    fn list_url_carries_every_filter_in_order() {
        assert_eq!(
            list_url(&base(), &ListQuery::default()).as_str(),
            "http://127.0.0.1:8080/v1/sandboxes"
        );
        let query = ListQuery {
            labels: vec![("team".into(), "a".into()), ("run".into(), "x y".into())],
            status: Some("Running".into()),
            owner: Some("me".into()),
            limit: Some(50),
            cursor: Some("123-abc".into()),
            all: true,
        };
        let url = list_url(&base(), &query);
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let expected = [
            ("label", "team=a"),
            ("label", "run=x y"),
            ("status", "Running"),
            ("owner", "me"),
            ("limit", "50"),
            ("cursor", "123-abc"),
            ("all", "true"),
        ];
        assert_eq!(pairs, expected.map(|(k, v)| (k.to_owned(), v.to_owned())));
    }

    #[test]
    fn problem_answers_become_problem_errors_showing_the_detail() {
        let problem = Problem::new(ProblemKind::NotFound, "sandbox 0123456789abcdef does not exist");
        let body = serde_json::to_vec(&problem).unwrap();
        let error = error_from_answer(404, &body);
        assert!(error.is_not_found());
        assert_eq!(error.to_string(), "sandbox 0123456789abcdef does not exist");
        assert!(matches!(error, ClientError::Problem(ref p) if **p == problem));
    }

    #[test]
    fn problem_field_errors_are_appended() {
        let problem = Problem::new(ProblemKind::Validation, "The request has 2 invalid values.").with_errors(vec![
            FieldError {
                field: "memory".into(),
                message: "`lots` is not a size".into(),
            },
            FieldError {
                field: "ttl".into(),
                message: "must be positive".into(),
            },
        ]);
        let error = error_from_answer(422, &serde_json::to_vec(&problem).unwrap());
        assert_eq!(
            error.to_string(),
            "The request has 2 invalid values: memory: `lots` is not a size; ttl: must be positive"
        );
        assert_eq!(error.status(), Some(422));

        // A detail that already spells the field errors out is not repeated.
        let spelled = Problem::new(
            ProblemKind::Validation,
            "invalid sandbox spec: ttl: must be positive; memory: bad",
        )
        .with_errors(vec![
            FieldError {
                field: "ttl".into(),
                message: "must be positive".into(),
            },
            FieldError {
                field: "memory".into(),
                message: "bad".into(),
            },
            FieldError {
                field: "cpu".into(),
                message: "too many".into(),
            },
        ]);
        let error = error_from_answer(422, &serde_json::to_vec(&spelled).unwrap());
        assert_eq!(
            error.to_string(),
            "invalid sandbox spec: ttl: must be positive; memory: bad: cpu: too many"
        );
    }

    #[test]
    fn other_answers_keep_status_and_body() {
        let error = error_from_answer(502, b"upstream down\n");
        assert!(matches!(&error, ClientError::Status { status: 502, body } if body == "upstream down\n"));
        assert_eq!(error.to_string(), "server answered HTTP 502 Bad Gateway: upstream down");
        assert_eq!(
            error_from_answer(500, b"").to_string(),
            "server answered HTTP 500 Internal Server Error"
        );
        // JSON that is not a problem is not mistaken for one.
        assert!(matches!(
            error_from_answer(400, br#"{"message":"x"}"#),
            ClientError::Status { status: 400, .. }
        ));
        let long = vec![b'x'; 10_000];
        let ClientError::Status { body, .. } = error_from_answer(500, &long) else {
            panic!("not a status error")
        };
        assert_eq!(body.chars().count(), MAX_QUOTED_BODY + 1);
    }

    #[test]
    fn success_bodies_decode_or_report_decode_errors() {
        let list: SandboxList = decode_answer(200, br#"{"items":[],"next_cursor":null}"#).unwrap();
        assert!(list.items.is_empty());
        let error = decode_answer::<SandboxList>(200, b"<html>").unwrap_err();
        assert!(matches!(error, ClientError::Decode(_)), "{error:?}");
        assert!(
            error.to_string().starts_with("unexpected answer from berth: "),
            "{error}"
        );
    }

    #[test]
    fn connect_errors_name_the_server_and_suggest_serve() {
        let error = ClientError::Connect {
            url: "http://127.0.0.1:8080".into(),
            detail: "connection refused".into(),
        };
        assert_eq!(
            error.to_string(),
            "cannot reach berth at http://127.0.0.1:8080: connection refused (is `berth serve` running?)"
        );
        assert!(error.is_connect());
        assert_eq!(error.status(), None);
    }

    #[tokio::test]
    async fn a_closed_port_is_reported_as_connection_refused() {
        // Bind then drop a listener so that the port is (almost certainly) closed.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let url = format!("http://{address}");
        let client = BerthClient::new(&url).unwrap();
        let error = client.get("0123456789abcdef").await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("cannot reach berth at {url}: connection refused (is `berth serve` running?)")
        );
    }

    #[tokio::test]
    async fn a_problem_answer_over_http_becomes_a_problem_error() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let read = socket.read(&mut buffer).await.unwrap();
                assert!(read > 0, "request ended early");
                request.extend_from_slice(&buffer[..read]);
            }
            let body = serde_json::to_vec(&Problem::new(ProblemKind::NotFound, "no sandbox nope")).unwrap();
            let head = format!(
                "HTTP/1.1 404 Not Found\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            socket.write_all(head.as_bytes()).await.unwrap();
            socket.write_all(&body).await.unwrap();
            String::from_utf8_lossy(&request).into_owned()
        });
        let client = BerthClient::new(&format!("http://{address}/")).unwrap();
        let error = client.delete("nope").await.unwrap_err();
        assert!(error.is_not_found(), "{error:?}");
        assert_eq!(error.to_string(), "no sandbox nope");
        let request = server.await.unwrap();
        assert!(
            request.starts_with("DELETE /v1/sandboxes/nope?wait=true HTTP/1.1\r\n"),
            "{request}"
        );
    }
}
