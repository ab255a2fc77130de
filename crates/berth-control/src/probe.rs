//! Readiness probes against a sandbox being created: an HTTP `GET` that must answer 2xx, or a TCP
//! connect, tried about every 200 ms until it passes, the sandbox is no longer wanted, or the
//! probe's timeout runs out.

use std::net::SocketAddr;
use std::time::Duration;

use berth_core::{ProbeCheck, ReadinessProbe};
use tokio::time::Instant;

use berth_core::error_chain::describe;

/// Pause between two attempts.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Longest one attempt may take (less when the probe's deadline is nearer).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// How waiting for a probe ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    Passed,
    /// The timeout ran out; the last attempt's failure.
    TimedOut(String),
    /// `still_wanted` said no: the sandbox was deleted, expired or ended meanwhile.
    Abandoned,
}

/// Tries `probe` against `address` until it passes or `probe.timeout` has passed; checks
/// `still_wanted` before every attempt.
pub async fn wait_until_ready(
    probe: &ReadinessProbe,
    address: SocketAddr,
    still_wanted: impl Fn() -> bool,
) -> ProbeOutcome {
    let deadline = Instant::now() + probe.timeout;
    let mut last_failure = String::from("no attempt was made");
    loop {
        if !still_wanted() {
            return ProbeOutcome::Abandoned;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return ProbeOutcome::TimedOut(last_failure);
        }
        match attempt(&probe.check, address, left.min(ATTEMPT_TIMEOUT)).await {
            Ok(()) => return ProbeOutcome::Passed,
            Err(failure) => last_failure = failure,
        }
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(POLL_INTERVAL.min(left)).await;
    }
}

/// The probes' HTTP client: never a proxy from the environment, never a redirect followed
/// (either could take a probe outside the sandbox).
fn probe_client() -> Result<&'static reqwest::Client, String> {
    static CLIENT: std::sync::OnceLock<Result<reqwest::Client, String>> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            // reqwest's TLS needs a process-wide rustls provider; installing fails only if one is set.
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(ATTEMPT_TIMEOUT)
                .build()
                .map_err(|error| format!("cannot set up the probes' HTTP client: {}", describe(&error)))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// One try; `Err` says what answered (or did not).
async fn attempt(check: &ProbeCheck, address: SocketAddr, within: Duration) -> Result<(), String> {
    match check {
        ProbeCheck::Tcp { .. } => match tokio::time::timeout(within, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(_connection)) => Ok(()),
            Ok(Err(error)) => Err(format!("tcp {address}: {error}")),
            Err(_) => Err(format!("tcp {address}: no answer within {within:?}")),
        },
        ProbeCheck::Http { path, .. } => {
            let url = format!("http://{address}{path}");
            let answer = probe_client()?
                .get(&url)
                .timeout(within)
                .send()
                .await
                .map_err(|error| format!("GET {url}: {}", describe(&error)))?;
            if answer.status().is_success() {
                Ok(())
            } else {
                Err(format!("GET {url}: answered {}", answer.status()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(check: ProbeCheck, timeout: Duration) -> ReadinessProbe {
        ReadinessProbe { check, timeout }
    }

    /// A local HTTP server answering every request with `status`.
    async fn http_server(status: u16) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut connection, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buffer = [0u8; 1024];
                    let _ = connection.read(&mut buffer).await;
                    let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    let _ = connection.write_all(answer.as_bytes()).await;
                });
            }
        });
        address
    }

    #[tokio::test]
    async fn an_http_probe_passes_on_2xx_only() {
        let ok = http_server(204).await;
        let check = ProbeCheck::Http {
            port: ok.port(),
            path: "/health".into(),
        };
        assert_eq!(
            wait_until_ready(&probe(check.clone(), Duration::from_secs(5)), ok, || true).await,
            ProbeOutcome::Passed
        );
        let failing = http_server(503).await;
        let outcome = wait_until_ready(&probe(check, Duration::from_millis(500)), failing, || true).await;
        assert!(
            matches!(&outcome, ProbeOutcome::TimedOut(why) if why.contains("503")),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn a_tcp_probe_passes_once_the_port_accepts() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        let check = ProbeCheck::Tcp { port: open.port() };
        assert_eq!(
            wait_until_ready(&probe(check.clone(), Duration::from_secs(5)), open, || true).await,
            ProbeOutcome::Passed
        );
        drop(listener);
        let started = Instant::now();
        let outcome = wait_until_ready(&probe(check, Duration::from_millis(600)), open, || true).await;
        assert!(matches!(outcome, ProbeOutcome::TimedOut(_)), "{outcome:?}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(600) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn a_sandbox_no_longer_wanted_stops_the_probe() {
        let check = ProbeCheck::Tcp { port: 9 };
        let outcome = wait_until_ready(
            &probe(check, Duration::from_secs(60)),
            "127.0.0.1:9".parse().unwrap(),
            || false,
        )
        .await;
        assert_eq!(outcome, ProbeOutcome::Abandoned);
    }
}
