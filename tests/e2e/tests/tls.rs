//! HTTPS end to end: a server started with a certificate made for the test (a throwaway CA and
//! a leaf for 127.0.0.1, by `openssl`) serves the API and the gateway over TLS only; the CLI
//! reaches it with `--cacert` — a one-shot exec, and an interactive one over `wss://` — and
//! refuses it without; `curl` trusting the CA reaches the gateway.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed assertion with its message"
)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use berth_e2e::{ServerOptions, TestServer, berth_binary};

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

fn berth(server: &TestServer, cacert: Option<&Path>, args: &[&str]) -> Output {
    let mut command = Command::new(berth_binary());
    command.args(["--server", &server.url]);
    if let Some(cacert) = cacert {
        command.arg("--cacert").arg(cacert);
    }
    command
        .args(args)
        .env("BERTH_DATA_DIR", &server.data_dir)
        .env_remove("BERTH_API_KEY")
        .env_remove("BERTH_CACERT")
        .stdin(Stdio::null())
        .output()
        .expect("berth runs")
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn the_cli_reaches_a_tls_server_with_its_ca_and_refuses_it_without() {
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

    assert!(stdout(&berth(&server, Some(&ca), &["whoami"])).contains("role: admin"));
    let gateway_health = Command::new("curl")
        .args(["-fsS", "--max-time", "20", "--cacert"])
        .arg(&ca)
        .arg(format!("{gateway}/health"))
        .output()
        .expect("curl runs");
    assert!(stdout(&gateway_health).contains("MCP Gateway is running"));
    let id = stdout(&berth(
        &server,
        Some(&ca),
        &["run", berth_e2e::TEST_IMAGE, "--", "sleep", "600"],
    ))
    .trim()
    .to_owned();
    let echoed = stdout(&berth(&server, Some(&ca), &["exec", &id, "--", "echo", "over-tls"]));
    assert_eq!(echoed, "over-tls\n");

    // An interactive exec is a wss:// socket, with the same CA; `script` gives it a terminal.
    let line = format!(
        "{} --server {} --cacert {} exec -it {id} -- echo tty-over-wss",
        berth_binary().display(),
        server.url,
        ca.display()
    );
    let interactive = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("BERTH_DATA_DIR", &server.data_dir)
        .stdin(Stdio::piped())
        .output()
        .expect("script runs");
    let text = String::from_utf8_lossy(&interactive.stdout);
    assert!(text.contains("tty-over-wss"), "{text}");

    let refused = berth(&server, None, &["ls"]);
    assert_eq!(refused.status.code(), Some(1));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("certificate"), "{message}");

    // Plain HTTP to the TLS port gets no answer a client could take for the API's.
    let plain = server.url.replacen("https://", "http://", 1);
    let answered = berth_e2e::api::http()
        .get(format!("{plain}/healthz"))
        .send()
        .await
        .is_ok_and(|response| response.status() == 200);
    assert!(!answered, "the API answered plain HTTP on its TLS listener");

    stdout(&berth(&server, Some(&ca), &["rm", &id]));
}
