//! AEnvironment SDK 0.1.7's additions through the real server and engine: `mount_points` on an
//! instance create mount the caller's own berth volumes, and `presign-url` hands out a link to
//! one port of one sandbox that works without a key until it expires, dies with its key, and
//! reaches nothing else.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::time::Duration;

use berth_e2e::api::{data, failure, send_as};
use berth_e2e::{TEST_IMAGE, TestServer, http, unique};
use reqwest::Method;
use serde_json::{Value, json};

/// An Env serving `/etc` over HTTP on 8080 (its `hostname` file names the container).
fn web_env(name: &str) -> Value {
    json!({
        "name": name,
        "version": "1.0.0",
        "artifacts": [{"id": "img-1", "type": "image", "content": TEST_IMAGE}],
        "deployConfig": {"ttl": "10m", "command": ["httpd", "-f", "-p", "8080", "-h", "/etc"]}
    })
}

async fn running(server: &TestServer, key: &str, id: &str) -> Value {
    berth_e2e::eventually(Duration::from_secs(60), || async {
        let (_, body) = send_as(server, Some(key), Method::GET, &format!("/env-instance/{id}"), None).await;
        let instance = body["data"].clone();
        assert_ne!(instance["status"], "Failed", "{body}");
        (instance["status"] == "Running").then_some(instance)
    })
    .await
    .unwrap_or_else(|| panic!("instance {id} never ran\n{}", server.log()))
}

/// A GET of `url` without any key: its status and body.
async fn fetch(url: &str) -> (u16, String) {
    let response = http().get(url).send().await.expect("the server answers");
    (response.status().as_u16(), response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn mount_points_mount_the_callers_volumes_and_presigned_urls_reach_one_port_until_they_expire() {
    let server = TestServer::start().await.unwrap();
    let created = server
        .client()
        .create_key(&berth_api::identity::KeyRequest {
            owner: "team-a".into(),
            role: Some("member".into()),
            expires: None,
        })
        .await
        .unwrap();
    let key = created.secret.clone();
    let other = server.key_for("team-b", "member").await;
    let name = unique("web");
    assert_eq!(
        data(
            send_as(
                &server,
                server.admin_key.as_deref(),
                Method::POST,
                "/env/",
                Some(web_env(&name))
            )
            .await
        ),
        true
    );
    let (status, _) = send_as(
        &server,
        Some(&key),
        Method::POST,
        "/v1/volumes",
        Some(json!({"name": "OSS_data"})),
    )
    .await;
    assert_eq!(status, 201);

    // mount_points: the caller's volume, whole; a subdirectory or a volume it lacks is a 400.
    let create =
        |mount_points: Value| json!({"envName": format!("{name}@1.0.0"), "ttl": "10m", "mount_points": mount_points});
    let message = failure(
        send_as(
            &server,
            Some(&key),
            Method::POST,
            "/env-instance",
            Some(create(json!([
                {"id": "OSS_data", "remote_dir": "/sub", "local_dir": "/workspace"}
            ]))),
        )
        .await,
        400,
    );
    assert!(message.contains("mount_points[0].remote_dir"), "{message}");
    let message = failure(
        send_as(
            &server,
            Some(&key),
            Method::POST,
            "/env-instance",
            Some(create(json!([
                {"id": "OSS_nope", "remote_dir": "/", "local_dir": "/workspace"}
            ]))),
        )
        .await,
        400,
    );
    assert!(message.contains("mount_points[0].id"), "{message}");
    let instance = data(
        send_as(
            &server,
            Some(&key),
            Method::POST,
            "/env-instance",
            Some(create(json!([
                {"id": "OSS_data", "remote_dir": "/", "local_dir": "/workspace"}
            ]))),
        )
        .await,
    );
    let id = instance["id"].as_str().unwrap().to_owned();
    running(&server, &key, &id).await;
    let (status, result) = send_as(
        &server,
        Some(&key),
        Method::POST,
        &format!("/v1/sandboxes/{id}/exec"),
        Some(json!({"cmd": ["sh", "-c", "echo mounted > /workspace/f && cat /workspace/f && hostname"]})),
    )
    .await;
    assert_eq!(status, 200, "{result}");
    let stdout = result["stdout"].as_str().unwrap().to_owned();
    let hostname = stdout.lines().nth(1).unwrap().to_owned();
    assert_eq!(stdout.lines().next(), Some("mounted"), "{result}");
    // team-b has no volume of that name: its create is refused the same way.
    let message = failure(
        send_as(
            &server,
            Some(&other),
            Method::POST,
            "/env-instance",
            Some(create(json!([
                {"id": "OSS_data", "local_dir": "/workspace"}
            ]))),
        )
        .await,
        400,
    );
    assert!(message.contains("mount_points[0].id"), "{message}");

    // presign-url: a link that answers without a key, for that port only.
    let presign = |port: Value, minutes: Value| json!({"port": port, "expiration_time_in_minutes": minutes});
    let path = format!("/env-instance/{id}/presign-url");
    let link = data(
        send_as(
            &server,
            Some(&key),
            Method::POST,
            &path,
            Some(presign(json!(8080), json!(10))),
        )
        .await,
    );
    let url = link["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{}/p/", server.url)), "{url}");
    assert!(!url.contains(&key), "{url}");
    assert_eq!(fetch(&format!("{url}hostname")).await, (200, format!("{hostname}\n")));
    // The key-less request the link stands for is refused on the plain proxy route.
    let (status, _) = fetch(&format!("{}/v1/sandboxes/{id}/proxy/8080/hostname", server.url)).await;
    assert_eq!(status, 401);
    // A link changed to another port (or a made-up one) is refused; so is a stranger's ask.
    let (token, rest) = url.split_once("/p/").unwrap().1.split_once('/').unwrap();
    assert_eq!(rest, "");
    let other_port = token.replacen(".8080.", ".8081.", 1);
    assert_eq!(fetch(&format!("{}/p/{other_port}/hostname", server.url)).await.0, 403);
    assert_eq!(fetch(&format!("{}/p/not-a-token/hostname", server.url)).await.0, 403);
    failure(
        send_as(
            &server,
            Some(&other),
            Method::POST,
            &path,
            Some(presign(json!(8080), json!(5))),
        )
        .await,
        404,
    );
    // Bad asks name their field.
    let message = failure(
        send_as(
            &server,
            Some(&key),
            Method::POST,
            &path,
            Some(json!({"expiration_time_in_minutes": 5})),
        )
        .await,
        400,
    );
    assert!(message.contains("port"), "{message}");
    let message = failure(
        send_as(
            &server,
            Some(&key),
            Method::POST,
            &path,
            Some(presign(json!(8080), json!(0))),
        )
        .await,
        400,
    );
    assert!(message.contains("expiration_time_in_minutes"), "{message}");

    // A short link expires; a long one dies with the key that made it.
    let short = data(
        send_as(
            &server,
            Some(&key),
            Method::POST,
            &path,
            Some(presign(json!(8080), json!(0.05))),
        )
        .await,
    );
    let short = short["url"].as_str().unwrap().to_owned();
    assert_eq!(fetch(&format!("{short}hostname")).await.0, 200);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, body) = fetch(&format!("{short}hostname")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("expired"), "{body}");
    server.client().revoke_key(&created.key.id).await.unwrap();
    let revoked = berth_e2e::eventually(Duration::from_secs(5), || async {
        (fetch(&format!("{url}hostname")).await.0 == 403).then_some(())
    })
    .await;
    assert!(revoked.is_some(), "a link outlived the revocation of its key");
}
