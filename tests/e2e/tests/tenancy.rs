//! Who may call berth, against a real server and engine: every route of the OpenAPI document
//! (read from the server, so a new route cannot be forgotten) without a key, with another
//! member's key, with a member key on admin routes, and with the owner's key; the AEnvironment
//! surface and the browser key forms the same way; quotas exact under concurrent creates;
//! revoked and expired keys refused at once; the secret in no log, audit line or answer; the
//! credential stripped before the proxy forwards a request into a sandbox.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed assertion with its message"
)]

use std::time::Duration;

use berth_e2e::api::{http, http_as, json_of, send_as};
use berth_e2e::{TestServer, sleeper};
use serde_json::{Value, json};

/// The routes no key is asked for.
const OPEN: &[&str] = &["/healthz", "/readyz", "/health", "/metrics", "/v1/openapi.json", "/ui"];

/// Routes only an admin may call (with this method).
fn admin_only(method: &str, path: &str) -> bool {
    path.starts_with("/v1/keys")
        || path.starts_with("/v1/quotas")
        || path.starts_with("/v1/audit")
        || (path.starts_with("/v1/templates") && method != "get")
}

/// `path` with its parameters filled for the sandbox `id` of owner `owner`.
fn concrete(path: &str, id: &str, owner: &str) -> String {
    path.replace("{id}", id)
        .replace("{owner}", owner)
        .replace("{port}", "8080")
        .replace("{process_id}", "p0000000000000000")
        .replace("{name}", "nope")
        .replace("{tag}", "latest")
        .replace("{reference}", "nope:latest")
        .replace("{path}", "index.html")
}

async fn status_of(client: &reqwest::Client, method: &str, url: &str) -> (u16, String) {
    let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let response = client
        .request(method, url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    // A stream that never ends on its own (`GET /v1/events`) has said what it will by then.
    let body = tokio::time::timeout(std::time::Duration::from_secs(2), response.text()).await;
    (status, body.ok().and_then(Result::ok).unwrap_or_default())
}

#[tokio::test]
async fn every_documented_route_asks_for_a_key_and_keeps_owners_apart() {
    let server = TestServer::start().await.unwrap();
    let alice_key = server.key_for("team-a", "member").await;
    let bob_key = server.key_for("team-b", "member").await;
    let alice = server.client_as(Some(&alice_key));
    let sandbox = alice.create(&sleeper(), Default::default()).await.unwrap();
    assert_eq!(sandbox.owner, "team-a", "a member's sandbox is its owner's");
    let id = sandbox.id.clone();

    let (_, document) = json_of(
        http()
            .get(format!("{}/v1/openapi.json", server.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let paths = document["paths"].as_object().expect("the document lists its paths");
    assert!(paths.len() > 20, "the document lists berth's routes: {}", paths.len());
    let anonymous = http();
    let bob = http_as(Some(&bob_key));
    let alice_http = http_as(Some(&alice_key));
    let mut checked = 0;
    for (path, operations) in paths {
        for method in operations.as_object().unwrap().keys() {
            let url = format!("{}{}", server.url, concrete(path, &id, "team-a"));
            let open = OPEN.contains(&path.as_str());
            let (status, body) = status_of(&anonymous, method, &url).await;
            if open {
                assert_ne!(status, 401, "{method} {path} is open: {body}");
            } else {
                assert_eq!(status, 401, "{method} {path} without a key: {status} {body}");
                assert!(
                    method == "head" || body.contains("urn:berth:problem:unauthorized"),
                    "{method} {path}: {body}"
                );
            }
            let (status, body) = status_of(&bob, method, &url).await;
            if path.starts_with("/v1/sandboxes/{id}") {
                assert_eq!(status, 404, "{method} {path} with another member's key: {body}");
                assert!(
                    method == "head" || body.contains(&format!("no sandbox with id `{id}`")),
                    "{method} {path}: {body}"
                );
            } else if admin_only(method, path) {
                assert_eq!(status, 403, "{method} {path} with a member key: {body}");
                assert!(
                    method == "head" || body.contains("admin role"),
                    "{method} {path}: {body}"
                );
            }
            // The owner's key passes the gate (what the handler then says depends on the body).
            if method != "delete" || !path.starts_with("/v1/sandboxes/{id}") {
                let (status, body) = status_of(&alice_http, method, &url).await;
                assert_ne!(status, 401, "{method} {path} with the owner's key: {body}");
                if !admin_only(method, path) {
                    assert_ne!(status, 403, "{method} {path} with the owner's key: {body}");
                }
                if path.starts_with("/v1/sandboxes/{id}") {
                    assert!(
                        !body.contains("no sandbox with id"),
                        "{method} {path} with the owner's key: {body}"
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 30, "every operation was tried: {checked}");

    // A foreign sandbox is exactly a missing one: same status, same body shape.
    let (_, foreign) = status_of(&bob, "get", &format!("{}/v1/sandboxes/{id}", server.url)).await;
    let (_, missing) = status_of(&bob, "get", &format!("{}/v1/sandboxes/0123456789abcdef", server.url)).await;
    assert_eq!(foreign.replace(&id, "ID"), missing.replace("0123456789abcdef", "ID"));

    // Lists show a member only its own; an admin everything, filtered by owner when asked.
    let bob_list = server
        .client_as(Some(&bob_key))
        .list(&Default::default())
        .await
        .unwrap();
    assert!(bob_list.items.is_empty(), "{bob_list:?}");
    let (_, bob_asks) = send_as(
        &server,
        Some(&bob_key),
        reqwest::Method::GET,
        "/v1/sandboxes?owner=team-a",
        None,
    )
    .await;
    assert_eq!(bob_asks["items"], json!([]), "a member cannot list another owner's");
    let admin_list = server.client().list(&Default::default()).await.unwrap();
    assert!(admin_list.items.iter().any(|item| item.id == id));

    // A member cannot create in another owner's name; an admin can.
    let mut in_alices_name = sleeper();
    in_alices_name.owner = Some("team-a".into());
    let (status, problem) = send_as(
        &server,
        Some(&bob_key),
        reqwest::Method::POST,
        "/v1/sandboxes",
        Some(serde_json::to_value(&in_alices_name).unwrap()),
    )
    .await;
    assert_eq!(status, 403, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("owner"), "{problem}");

    // The browser forms: the key as a query parameter, or as a WebSocket subprotocol.
    let (status, _) = status_of(
        &anonymous,
        "get",
        &format!("{}/v1/sandboxes/{id}?access_token={alice_key}", server.url),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = status_of(
        &anonymous,
        "get",
        &format!("{}/v1/sandboxes/{id}?access_token={bob_key}", server.url),
    )
    .await;
    assert_eq!(status, 404);
    let ws = format!(
        "{}/v1/sandboxes/{id}/exec/ws?cmd=echo&cmd=hi",
        server.url.replacen("http://", "ws://", 1)
    );
    let with_protocol = |key: &str| {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = ws.as_str().into_client_request().unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            format!("berth, berth.bearer.{key}").parse().unwrap(),
        );
        request
    };
    let (_, response) = tokio_tungstenite::connect_async(with_protocol(&alice_key))
        .await
        .unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "berth");
    match tokio_tungstenite::connect_async(with_protocol(&bob_key)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 404),
        other => panic!("another member's WebSocket exec must be a 404, got {other:?}"),
    }
    match tokio_tungstenite::connect_async(ws.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("a WebSocket exec without a key must be a 401, got {other:?}"),
    }

    // The AEnvironment surface: another member's instance is the surface's own not-found.
    let (status, foreign) = send_as(
        &server,
        Some(&bob_key),
        reqwest::Method::GET,
        &format!("/env-instance/{id}"),
        None,
    )
    .await;
    let (_, missing) = send_as(
        &server,
        Some(&bob_key),
        reqwest::Method::GET,
        "/env-instance/0123456789abcdef",
        None,
    )
    .await;
    assert_eq!(status, 404, "{foreign}");
    assert_eq!(
        foreign.to_string().replace(&id, "ID"),
        missing.to_string().replace("0123456789abcdef", "ID")
    );
    let (status, _) = send_as(&server, None, reqwest::Method::GET, "/env-instance/*/list", None).await;
    assert_eq!(status, 401);
    let (status, _) = send_as(&server, Some(&bob_key), reqwest::Method::POST, "/env/", Some(json!({}))).await;
    assert_eq!(status, 403, "members use Envs, admins publish them");

    // The secrets appear in no log line, no audit entry and no store row.
    let mut secrets = vec![alice_key.clone(), bob_key.clone()];
    secrets.extend(server.admin_key.clone());
    let (_, audit) = send_as(
        &server,
        server.admin_key.as_deref(),
        reqwest::Method::GET,
        "/v1/audit?limit=1000",
        None,
    )
    .await;
    let audit = audit.to_string();
    assert!(audit.contains("\"status\":401") && audit.contains("team-b"), "{audit}");
    let database = std::fs::read(server.data_dir.join("berth.db")).unwrap();
    let log = server.log();
    for secret in &secrets {
        let hex = &secret[3..];
        assert!(!log.contains(hex), "a secret is in the server's log");
        assert!(!audit.contains(hex), "a secret is in the audit log");
        assert!(
            !database.windows(hex.len()).any(|window| window == hex.as_bytes()),
            "a secret is in the store"
        );
    }
}

#[tokio::test]
async fn revoked_and_expired_keys_stop_working_and_quotas_hold_under_concurrent_creates() {
    let server = TestServer::start().await.unwrap();
    let admin = server.client();
    let key = server.key_for("team-q", "member").await;
    let member = server.client_as(Some(&key));
    assert_eq!(member.whoami().await.unwrap().owner, "team-q");
    let id = admin
        .list_keys()
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|listed| listed.owner == "team-q")
        .unwrap()
        .id;
    admin.revoke_key(&id).await.unwrap();
    let refused = member.whoami().await.unwrap_err().to_string();
    assert!(refused.contains("revoked"), "{refused}");

    let short = admin
        .create_key(&berth_api::identity::KeyRequest {
            owner: "team-q".into(),
            role: None,
            expires: Some(berth_api::NumberOrString::String("1s".into())),
        })
        .await
        .unwrap();
    let expiring = server.client_as(Some(&short.secret));
    expiring.whoami().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let refused = expiring.whoami().await.unwrap_err().to_string();
    assert!(refused.contains("expired"), "{refused}");

    // 100 concurrent creates against a quota of 10 sandboxes: exactly 10 succeed, the others
    // are 429 naming the quota; nothing else is created.
    let key = server.key_for("team-r", "member").await;
    server.limit_sandboxes("team-r", 10).await;
    let mut creates = Vec::new();
    for _ in 0..100 {
        let client = http_as(Some(&key));
        let url = format!("{}/v1/sandboxes?wait=false", server.url);
        creates.push(tokio::spawn(async move {
            json_of(client.post(url).json(&sleeper()).send().await.unwrap()).await
        }));
    }
    let mut admitted = 0;
    for create in creates {
        let (status, body): (u16, Value) = create.await.unwrap();
        match status {
            202 => admitted += 1,
            429 => {
                assert_eq!(body["type"], "urn:berth:problem:quota-exceeded", "{body}");
                let detail = body["detail"].as_str().unwrap();
                assert!(detail.contains("`sandboxes` quota: limit 10, in use 10"), "{detail}");
            }
            other => panic!("a create answered {other}: {body}"),
        }
    }
    assert_eq!(admitted, 10);
    let listed = server.client_as(Some(&key)).list(&Default::default()).await.unwrap();
    assert_eq!(listed.items.len(), 10);
}

/// The probes stay open but tell only an admin where the records live; the audit file gets one
/// JSON line per audited request; a key over its rate is told when to come back.
#[tokio::test]
async fn probes_say_little_to_strangers_the_audit_file_fills_and_rates_are_limited() {
    let audit_dir = tempfile::tempdir().unwrap();
    let audit_file = audit_dir.path().join("audit.jsonl");
    let server = TestServer::start_with(berth_e2e::ServerOptions {
        args: vec![
            "--audit-log".into(),
            audit_file.display().to_string(),
            "--rate-limit".into(),
            "5".into(),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let (status, open) = json_of(http().get(format!("{}/health", server.url)).send().await.unwrap()).await;
    assert_eq!(status, 200, "{open}");
    assert_eq!(open["store"], "sqlite", "no path for a caller without a key: {open}");
    let (_, detailed) = json_of(
        server
            .http()
            .get(format!("{}/health", server.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        detailed["store"].as_str().unwrap().contains("berth.db"),
        "an admin sees where the records live: {detailed}"
    );

    let key = server.key_for("team-t", "member").await;
    let (status, _) = send_as(&server, None, reqwest::Method::POST, "/v1/sandboxes", Some(json!({}))).await;
    assert_eq!(status, 401);
    let lines = std::fs::read_to_string(&audit_file).unwrap();
    let entries: Vec<Value> = lines.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert!(
        entries
            .iter()
            .any(|entry| entry["action"] == "POST /v1/keys" && entry["status"] == 201),
        "{lines}"
    );
    assert!(
        entries
            .iter()
            .any(|entry| entry["action"] == "authenticate" && entry["status"] == 401 && entry["client"].is_string()),
        "{lines}"
    );
    assert!(!lines.contains(&key[3..]), "a secret is in the audit file");

    let member = http_as(Some(&key));
    let mut limited = None;
    for _ in 0..40 {
        let response = member.get(format!("{}/v1/sandboxes", server.url)).send().await.unwrap();
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let limited = limited.expect("40 requests at once pass a rate of 5 per second");
    assert_eq!(limited.headers()["retry-after"], "1");
    let (_, problem) = json_of(limited).await;
    assert_eq!(problem["type"], "urn:berth:problem:rate-limited", "{problem}");
}

#[tokio::test]
async fn the_proxy_never_forwards_a_berth_key_into_the_sandbox() {
    let server = TestServer::start().await.unwrap();
    let key = server.key_for("team-p", "member").await;
    let mut request = sleeper();
    // Records every request it gets, answers each with 200.
    request.command = Some(vec![
        "sh".into(),
        "-c".into(),
        "while true; do printf 'HTTP/1.0 200 OK\\r\\n\\r\\nok' | nc -l -p 8080 >> /requests; done".into(),
    ]);
    let client = server.client_as(Some(&key));
    let sandbox = client.create(&request, Default::default()).await.unwrap();
    let url = format!(
        "{}/v1/sandboxes/{}/proxy/8080/echo?keep=1&access_token={key}",
        server.url, sandbox.id
    );
    let mut answered = None;
    for _ in 0..50 {
        let response = http()
            .get(&url)
            .header("authorization", format!("Bearer {key}"))
            .header("x-api-key", &key)
            .header("x-app-header", "kept")
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            answered = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        answered.is_some(),
        "the server in the sandbox answered through the proxy"
    );
    let seen = client
        .exec(
            &sandbox.id,
            &berth_api::ExecRequest {
                cmd: vec!["cat".into(), "/requests".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .stdout;
    assert!(seen.contains("GET /echo?keep=1"), "{seen}");
    assert!(seen.to_lowercase().contains("x-app-header: kept"), "{seen}");
    assert!(!seen.contains(&key[3..]), "the key reached the sandbox: {seen}");
    assert!(!seen.to_lowercase().contains("authorization"), "{seen}");
}

#[tokio::test]
async fn another_members_env_service_is_exactly_a_missing_one() {
    let server = TestServer::start().await.unwrap();
    let alice_key = server.key_for("team-a", "member").await;
    let bob_key = server.key_for("team-b", "member").await;
    let name = berth_e2e::unique("owned-svc");
    let (status, published) = send_as(
        &server,
        server.admin_key.as_deref(),
        reqwest::Method::POST,
        "/env/",
        Some(json!({
            "name": name,
            "version": "1.0.0",
            "artifacts": [{"id": "img", "type": "image", "content": berth_e2e::TEST_IMAGE}],
        })),
    )
    .await;
    assert_eq!(status, 200, "{published}");
    // No replicas: the owner rule is about the record, and a record needs no container.
    let (status, created) = send_as(
        &server,
        Some(&alice_key),
        reqwest::Method::POST,
        "/env-service",
        Some(json!({"envName": format!("{name}@1.0.0"), "replicas": 0})),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(
        created["data"]["owner"], "team-a",
        "a member's service is its owner's: {created}"
    );
    let id = created["data"]["id"].as_str().unwrap().to_owned();
    let missing = "0123456789abcdef";

    let as_bob = |method: reqwest::Method, path: String, body: Option<Value>| {
        let (server, bob_key) = (&server, &bob_key);
        async move { send_as(server, Some(bob_key), method, &path, body).await }
    };
    for (method, body) in [
        (reqwest::Method::GET, None),
        (reqwest::Method::PUT, Some(json!({"replicas": 2}))),
        (reqwest::Method::DELETE, None),
    ] {
        let (status, foreign) = as_bob(method.clone(), format!("/env-service/{id}"), body.clone()).await;
        let (_, absent) = as_bob(method.clone(), format!("/env-service/{missing}"), body).await;
        assert_eq!(status, 404, "{method} another member's env-service: {foreign}");
        assert_eq!(
            foreign.to_string().replace(&id, "ID"),
            absent.to_string().replace(missing, "ID"),
            "{method}: a foreign env-service answers exactly as a missing one"
        );
    }
    let (_, listed) = as_bob(reqwest::Method::GET, "/env-service/*/list".into(), None).await;
    assert_eq!(listed["data"], json!([]), "a member lists only its own services");

    // Bob's attempts changed nothing: the owner still finds it as it was, and deletes it.
    let (status, own) = send_as(
        &server,
        Some(&alice_key),
        reqwest::Method::GET,
        &format!("/env-service/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(own["data"]["replicas"], 0, "{own}");
    let (_, listed) = send_as(
        &server,
        Some(&alice_key),
        reqwest::Method::GET,
        "/env-service/*/list",
        None,
    )
    .await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "{listed}");
    let (status, deleted) = send_as(
        &server,
        Some(&alice_key),
        reqwest::Method::DELETE,
        &format!("/env-service/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{deleted}");
}
