//! HTTPS end to end: a server started with a certificate made for the test (a throwaway CA and
//! a leaf for 127.0.0.1, by `openssl`) serves the API and the gateway over TLS only; `curl`
//! trusting that CA reaches both (with the API key), refuses them without the CA, and plain HTTP
//! gets no answer from the TLS listener.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed assertion with its message"
)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use berth_e2e::{ServerOptions, TestServer};

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (scripts/test installs it)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA (`ca.pem`) and a server certificate it signed for 127.0.0.1 (`cert.pem`, `key.pem`).
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=berth-test-ca",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "1",
            "-extfile",
            "leaf.ext",
        ],
    );
}

/// `curl -fsS` of `url` trusting `ca` when given, with the admin key.
fn curl(server: &TestServer, ca: Option<&Path>, url: &str) -> Output {
    let mut command = Command::new("curl");
    command.args(["-fsS", "--max-time", "20"]);
    if let Some(ca) = ca {
        command.arg("--cacert").arg(ca);
    }
    command
        .args([
            "-H",
            &format!("Authorization: Bearer {}", server.admin_key.as_deref().unwrap()),
        ])
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("curl runs")
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn a_tls_server_answers_clients_that_trust_its_ca_and_only_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let server = TestServer::start_with(ServerOptions {
        args: vec![
            "--tls-cert".into(),
            certs.path().join("cert.pem").display().to_string(),
            "--tls-key".into(),
            certs.path().join("key.pem").display().to_string(),
            "--gateway-listen".into(),
            "127.0.0.1:0".into(),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(server.url.starts_with("https://127.0.0.1:"), "{}", server.url);
    let gateway = server.gateway_url.clone().expect("a gateway");
    assert!(gateway.starts_with("https://"), "{gateway}");
    let ca = certs.path().join("ca.pem");

    let me = stdout(&curl(&server, Some(&ca), &format!("{}/v1/whoami", server.url)));
    assert!(me.contains("\"role\":\"admin\""), "{me}");
    let health = stdout(&curl(&server, Some(&ca), &format!("{gateway}/health")));
    assert!(health.contains("MCP Gateway is running"), "{health}");

    let refused = curl(&server, None, &format!("{}/v1/whoami", server.url));
    assert!(
        !refused.status.success(),
        "a client that does not trust the CA got an answer"
    );
    let message = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(message.contains("certificate"), "{message}");

    // Plain HTTP to the TLS port gets no answer a client could take for the API's.
    let plain = server.url.replacen("https://", "http://", 1);
    let answered = berth_e2e::api::http()
        .get(format!("{plain}/healthz"))
        .send()
        .await
        .is_ok_and(|response| response.status() == 200);
    assert!(!answered, "the API answered plain HTTP on its TLS listener");
}
