//! Reaching servers inside sandboxes through the real server and engine: readiness probes that
//! gate `Running` (and fail a sandbox that never gets ready), the MCP gateway (forwarding by
//! header, streaming, refusing anything that is not one of berth's running sandboxes) and the
//! native proxy route. The sandboxes run `berth-test/aenv-server` (scripts/build-test-images.sh).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::time::{Duration, Instant};

use berth_e2e::api::{get, http, json_of, post};
use berth_e2e::{ServerOptions, TEST_IMAGE, TestServer, docker, docker_ids, eventually, field_named, unique};
use futures::StreamExt;
use serde_json::{Value, json};

/// AEnvironment's in-sandbox contract on :8081, served by busybox (see scripts/build-test-images.sh).
const AENV_IMAGE: &str = "berth-test/aenv-server:latest";
const ROUTING_HEADER: &str = "AEnvCore-MCPProxy-URL";

async fn gateway_server() -> TestServer {
    if docker(&["image", "inspect", AENV_IMAGE]).is_err() {
        panic!("the test image {AENV_IMAGE} is missing: run scripts/build-test-images.sh (scripts/test does)");
    }
    TestServer::start_with(ServerOptions {
        args: vec!["--gateway-listen".into(), "127.0.0.1:0".into()],
        ..ServerOptions::default()
    })
    .await
    .expect("berth serve starts with a gateway")
}

fn gateway_url(server: &TestServer) -> &str {
    server.gateway_url.as_deref().expect("the server runs a gateway")
}

/// A request to the gateway routed to `target` (`http://ip:port`).
fn through_gateway(server: &TestServer, method: reqwest::Method, path: &str, target: &str) -> reqwest::RequestBuilder {
    http()
        .request(method, format!("{}{path}", gateway_url(server)))
        .header(ROUTING_HEADER, target)
}

/// Creates an aenv-server sandbox that is Running (its probe passed) and returns it.
async fn running_aenv_sandbox(server: &TestServer) -> Value {
    let (status, sandbox) = post(
        server,
        "/v1/sandboxes",
        json!({
            "image": AENV_IMAGE,
            "ttl": "10m",
            "readiness": {"http": {"port": 8081, "path": "/health"}, "timeout": "30s"},
        }),
    )
    .await;
    assert_eq!(status, 201, "{sandbox}");
    assert_eq!(sandbox["status"], "Running", "{sandbox}");
    sandbox
}

/// The arrival time of each of the five SSE events of `/sse`, from the moment the request was sent.
async fn sse_arrivals(request: reqwest::RequestBuilder) -> Vec<Duration> {
    let sent = Instant::now();
    let response = request.send().await.expect("the stream opens");
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    let mut arrivals = Vec::new();
    while let Some(chunk) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.expect("the stream goes on")));
        while arrivals.len() < 5 && text.contains(&format!("data: {{\"n\":{}}}", arrivals.len() + 1)) {
            arrivals.push(sent.elapsed());
        }
    }
    assert_eq!(arrivals.len(), 5, "five events in {text:?}");
    arrivals
}

fn assert_streamed(arrivals: &[Duration]) {
    let spread = arrivals[4] - arrivals[0];
    assert!(
        spread >= Duration::from_secs(1),
        "the events arrived together (buffered), not 300 ms apart: {arrivals:?}"
    );
    assert!(
        arrivals[0] < Duration::from_millis(900),
        "the first event waited for the others: {arrivals:?}"
    );
}

#[tokio::test]
async fn a_template_probe_keeps_a_sandbox_creating_until_its_server_answers() {
    let server = gateway_server().await;
    let template = unique("aenv");
    let (status, created) = post(
        &server,
        "/v1/templates",
        json!({
            "name": template,
            "image": AENV_IMAGE,
            // The server starts listening 2 s after the container does.
            "env": {"AENV_START_DELAY": "2"},
            "readiness": {"http": {"port": 8081, "path": "/health"}},
        }),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["readiness"]["http"],
        json!({"port": 8081, "path": "/health"}),
        "{created}"
    );

    let started = Instant::now();
    let (status, sandbox) = post(&server, "/v1/sandboxes?wait=false", json!({"template": template})).await;
    assert_eq!(status, 202, "{sandbox}");
    let id = sandbox["id"].as_str().unwrap().to_owned();
    let mut saw_creating_with_container = false;
    let running = loop {
        let (_, current) = get(&server, &format!("/v1/sandboxes/{id}")).await;
        if current["status"] == "Running" {
            break current;
        }
        assert!(
            ["Pending", "Creating"].contains(&current["status"].as_str().unwrap_or_default()),
            "{current}"
        );
        saw_creating_with_container |= current["status"] == "Creating" && current["container_id"].is_string();
        assert!(started.elapsed() < Duration::from_secs(30), "never Running: {current}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "Running after {took:?}, before the server listened"
    );
    assert!(
        saw_creating_with_container,
        "the container ran while the sandbox stayed Creating"
    );

    // Running means ready: the first request is answered.
    let ip = running["ip"].as_str().expect("a Running sandbox has an ip");
    let (status, health) = json_of(
        through_gateway(&server, reqwest::Method::GET, "/health", &format!("http://{ip}:8081"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, &health["data"]["status"]),
        (200, &json!("success")),
        "{health}"
    );
}

#[tokio::test]
async fn the_gateway_forwards_by_header_streams_and_strips_the_header() {
    let server = gateway_server().await;
    let sandbox = running_aenv_sandbox(&server).await;
    let target = format!("http://{}:8081", sandbox["ip"].as_str().unwrap());

    let (status, health) = json_of(
        through_gateway(&server, reqwest::Method::GET, "/health", &target)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["success"], true);
    assert_eq!(health["data"]["status"], "success");

    let (status, called) = json_of(
        through_gateway(&server, reqwest::Method::POST, "/functions/grade?attempt=2", &target)
            .header("AEnvCore-EnvInstance-ID", sandbox["id"].as_str().unwrap())
            .header("mcp-session-id", "session-7")
            .header("authorization", "Bearer token-1")
            // A berth key the caller sends beside the server's own token never reaches it.
            .header("x-api-key", server.admin_key.as_deref().unwrap())
            .json(&json!({"answer": 42}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{called}");
    let data = &called["data"];
    assert_eq!(data["function"], "grade");
    assert_eq!(data["body"], json!({"answer": 42}));
    assert_eq!(data["query"], "attempt=2");
    let headers = &data["headers"];
    assert_eq!(headers["mcp-session-id"], "session-7", "{headers}");
    assert_eq!(headers["authorization"], "Bearer token-1", "{headers}");
    assert!(
        headers.get("x-api-key").is_none(),
        "a berth key reached the sandbox: {headers}"
    );
    assert_eq!(headers["content-type"], "application/json", "{headers}");
    assert!(
        headers.get("aenvcore-mcpproxy-url").is_none(),
        "the routing header reached the sandbox: {headers}"
    );

    let (status, reward) = json_of(
        through_gateway(&server, reqwest::Method::POST, "/task/reward", &target)
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, &reward["data"]["reward"]), (200, &json!(1)), "{reward}");
    let (status, functions) = json_of(
        through_gateway(&server, reqwest::Method::GET, "/functions/list", &target)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, &functions["success"]), (200, &json!(true)), "{functions}");

    // An upstream 404 is passed on as it is.
    let missing = through_gateway(&server, reqwest::Method::GET, "/nope", &target)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let arrivals = sse_arrivals(through_gateway(&server, reqwest::Method::GET, "/sse", &target)).await;
    assert_streamed(&arrivals);
}

#[tokio::test]
async fn the_gateway_reaches_only_berths_running_sandboxes() {
    let server = gateway_server().await;
    let gateway = gateway_url(&server).to_owned();

    let (status, health) = json_of(http().get(format!("{gateway}/health")).send().await.unwrap()).await;
    assert_eq!(
        (status, health),
        (200, json!({"status": "healthy", "message": "MCP Gateway is running"}))
    );
    let (status, error) = json_of(http().post(format!("{gateway}/mcp")).send().await.unwrap()).await;
    assert_eq!(status, 400, "{error}");
    assert!(error["error"].as_str().unwrap().contains(ROUTING_HEADER), "{error}");

    // berth's own API, the internet, names and garbage: never forwarded.
    for target in [
        server.url.as_str(),
        "http://1.1.1.1:8081",
        "http://localhost:8081",
        "http://169.254.169.254:80",
    ] {
        let response = through_gateway(&server, reqwest::Method::GET, "/v1/sandboxes", target)
            .send()
            .await
            .unwrap();
        let (status, error) = json_of(response).await;
        assert_eq!(status, 403, "{target}: {error}");
        assert!(error["error"].is_string(), "{error}");
    }
    for malformed in ["not a url", "https://10.0.0.1:8081"] {
        let response = through_gateway(&server, reqwest::Method::GET, "/health", malformed)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{malformed}");
    }

    // A sandbox's address is refused once it has ended, and a closed port is a 502.
    let sandbox = running_aenv_sandbox(&server).await;
    let ip = sandbox["ip"].as_str().unwrap().to_owned();
    let (status, error) = json_of(
        through_gateway(&server, reqwest::Method::GET, "/health", &format!("http://{ip}:9"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 502, "{error}");
    assert_eq!(error["error"], "Failed to forward request to MCP server", "{error}");
    assert_eq!(error["server"], format!("http://{ip}:9"));
    assert!(error["details"].is_string(), "{error}");

    let id = sandbox["id"].as_str().unwrap();
    server.client().delete(id).await.expect("deleted");
    let response = through_gateway(&server, reqwest::Method::GET, "/health", &format!("http://{ip}:8081"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        403,
        "an ended sandbox's address is no longer reachable"
    );
}

#[tokio::test]
async fn the_native_proxy_serves_the_same_endpoints() {
    let server = gateway_server().await;
    let sandbox = running_aenv_sandbox(&server).await;
    let id = sandbox["id"].as_str().unwrap();
    let base = format!("{}/v1/sandboxes/{id}/proxy/8081", server.url);

    let (status, health) = json_of(server.http().get(format!("{base}/health")).send().await.unwrap()).await;
    assert_eq!(
        (status, &health["data"]["status"]),
        (200, &json!("success")),
        "{health}"
    );
    let (status, called) = json_of(
        server
            .http()
            .post(format!("{base}/functions/echo%2Dme?x=1"))
            .json(&json!({"k": "v"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{called}");
    assert_eq!(called["data"]["function"], "echo%2Dme", "the path goes on as it came");
    assert_eq!(called["data"]["body"], json!({"k": "v"}));
    assert_eq!(called["data"]["query"], "x=1");
    let (status, reward) = json_of(server.http().post(format!("{base}/task/reward")).send().await.unwrap()).await;
    assert_eq!((status, &reward["data"]["reward"]), (200, &json!(1)), "{reward}");
    assert_streamed(&sse_arrivals(server.http().get(format!("{base}/sse"))).await);

    // A WebSocket upgrade is tried on the sandbox's server; this one speaks none: 502.
    let ws_url = format!("{}/ws", base.replace("http://", "ws://"));
    match tokio_tungstenite::connect_async(server.with_key(&ws_url)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 502),
        other => panic!("expected a 502 to the upgrade, got {other:?}"),
    }

    let (status, problem) = get(&server, &format!("/v1/sandboxes/{id}/proxy/http/health")).await;
    assert_eq!(status, 422, "{problem}");
    assert!(field_named(&problem, "port"), "{problem}");
    let (status, _) = get(&server, "/v1/sandboxes/0123456789abcdef/proxy/8081/health").await;
    assert_eq!(status, 404);
    let (status, problem) = get(&server, &format!("/v1/sandboxes/{id}/proxy/9/health")).await;
    assert_eq!(status, 502, "{problem}");
    assert_eq!(problem["type"], "urn:berth:problem:upstream-unavailable");

    server.client().delete(id).await.expect("deleted");
    let (status, problem) = get(&server, &format!("/v1/sandboxes/{id}/proxy/8081/health")).await;
    assert_eq!(status, 409, "an ended sandbox cannot be proxied to: {problem}");
}

#[tokio::test]
async fn a_probe_that_never_passes_fails_the_sandbox_and_leaves_no_container() {
    let server = gateway_server().await;
    let started = Instant::now();
    let (status, sandbox) = post(
        &server,
        "/v1/sandboxes",
        json!({
            "image": TEST_IMAGE,
            "command": ["sleep", "3600"],
            "readiness": {"tcp": {"port": 5432}, "timeout": "2s"},
        }),
    )
    .await;
    assert_eq!(status, 201, "{sandbox}");
    assert_eq!(sandbox["status"], "Failed", "{sandbox}");
    assert_eq!(sandbox["status_reason"], "readiness_timeout", "{sandbox}");
    let message = sandbox["status_message"].as_str().unwrap_or_default();
    assert!(
        message.contains("readiness probe") && message.contains(":5432"),
        "the last probe attempt is reported: {sandbox}"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(20),
        "{took:?}"
    );
    let id = sandbox["id"].as_str().unwrap();
    let filter = format!("label=berth.sandbox={id}");
    assert!(
        docker_ids(&["ps", "-aq", "--filter", &filter]).is_empty(),
        "the container of a sandbox that never got ready is removed"
    );

    // Bad probes are refused naming the field.
    let (status, problem) = post(
        &server,
        "/v1/sandboxes",
        json!({"image": TEST_IMAGE, "readiness": {"http": {"path": "health"}, "timeout": "forever"}}),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    for field in ["readiness.http.port", "readiness.http.path", "readiness.timeout"] {
        assert!(field_named(&problem, field), "{field}: {problem}");
    }
}

#[tokio::test]
async fn a_delete_is_not_held_up_by_a_probe() {
    let server = gateway_server().await;
    let (status, sandbox) = post(
        &server,
        "/v1/sandboxes?wait=false",
        json!({
            "image": TEST_IMAGE,
            "command": ["sleep", "3600"],
            "readiness": {"http": {"port": 8081, "path": "/health"}, "timeout": "5m"},
        }),
    )
    .await;
    assert_eq!(status, 202, "{sandbox}");
    let id = sandbox["id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(30), || async {
        let (_, current) = get(&server, &format!("/v1/sandboxes/{id}")).await;
        (current["status"] == "Creating" && current["container_id"].is_string()).then_some(())
    })
    .await
    .expect("the container runs while the probe waits");
    let (status, _) = get(&server, &format!("/v1/sandboxes/{id}/proxy/8081/health")).await;
    assert_eq!(status, 409, "a sandbox that is not ready cannot be proxied to");

    let started = Instant::now();
    server.client().delete(&id).await.expect("deleted");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    let (_, ended) = get(&server, &format!("/v1/sandboxes/{id}")).await;
    assert_eq!(
        (&ended["status"], &ended["status_reason"]),
        (&json!("Terminated"), &json!("deleted")),
        "{ended}"
    );
    let filter = format!("label=berth.sandbox={id}");
    assert!(docker_ids(&["ps", "-aq", "--filter", &filter]).is_empty());
}

#[tokio::test]
async fn a_restart_during_a_probe_probes_again_instead_of_calling_the_sandbox_ready() {
    let mut first = TestServer::start().await.unwrap();
    let (status, sandbox) = post(
        &first,
        "/v1/sandboxes?wait=false",
        json!({
            "image": TEST_IMAGE,
            "command": ["sleep", "3600"],
            "readiness": {"tcp": {"port": 5432}, "timeout": "4s"},
        }),
    )
    .await;
    assert_eq!(status, 202, "{sandbox}");
    let id = sandbox["id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(30), || async {
        let (_, current) = get(&first, &format!("/v1/sandboxes/{id}")).await;
        (current["status"] == "Creating" && current["container_id"].is_string()).then_some(())
    })
    .await
    .expect("the container runs while the probe waits");

    first.kill9();
    let cluster = first.cluster.clone();
    let data_dir = first.keep_data_dir();
    let second = TestServer::start_with(ServerOptions {
        data_dir: Some(data_dir),
        cluster: Some(cluster),
        ..ServerOptions::default()
    })
    .await
    .unwrap();
    // The adopted container runs, but nothing listens on the probed port: never `Running`.
    let ended = eventually(Duration::from_secs(40), || async {
        let (_, current) = get(&second, &format!("/v1/sandboxes/{id}")).await;
        assert_ne!(
            current["status"], "Running",
            "adopted as ready without a probe: {current}"
        );
        (current["status"] == "Failed").then_some(current)
    })
    .await
    .expect("the probe ran again and timed out");
    assert_eq!(ended["status_reason"], "readiness_timeout", "{ended}");
    let filter = format!("label=berth.sandbox={id}");
    assert!(docker_ids(&["ps", "-aq", "--filter", &filter]).is_empty());
    drop(first);
}
