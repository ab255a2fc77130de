//! Interactive exec over a WebSocket (`GET /v1/sandboxes/{id}/exec/ws`): binary frames carry
//! stdin (to the server) and output (from it), text frames carry resizes (to the server) and the
//! exit status (from it, last, before the close).

use std::time::Duration;

use berth_api::{ExecExit, Problem, ResizeMessage, TerminalSize};
use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use reqwest::Url;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::work::sandbox_path;
use crate::{BerthClient, ClientError, error_from_answer};

/// Longest wait for the server to accept the WebSocket.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What to run over the WebSocket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecSocketRequest {
    pub cmd: Vec<String>,
    /// Allocate a terminal (output then comes unsplit, with the terminal's line endings).
    pub tty: bool,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub env: Vec<(String, String)>,
    /// The terminal's initial `(cols, rows)`, applied before the process can read it.
    pub size: Option<(u16, u16)>,
}

/// A message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecMessage {
    /// Output of the process (stdout and stderr, unsplit).
    Output(Bytes),
    /// The process ended; nothing but the close follows.
    Exit(ExecExit),
}

/// A connected interactive exec. [`ExecSocket::split`] gives a writer and a reader that can be
/// used from two tasks at once.
#[derive(Debug)]
pub struct ExecSocket {
    socket: Socket,
}

/// The sending half: stdin bytes, resizes, close.
#[derive(Debug)]
pub struct ExecWriter {
    sink: SplitSink<Socket, Message>,
}

/// The receiving half: output, then the exit status.
#[derive(Debug)]
pub struct ExecReader {
    stream: SplitStream<Socket>,
}

impl BerthClient {
    /// The TLS configuration of a `wss://` socket: the client's CA certificate(s), else the
    /// public roots.
    fn tls_roots(&self) -> Result<std::sync::Arc<rustls::ClientConfig>, ClientError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let invalid = |detail: String| ClientError::InvalidUrl {
            url: self.display.clone(),
            detail,
        };
        let mut roots = rustls::RootCertStore::empty();
        match self.ca_certificate() {
            Some(pem) => {
                for certificate in CertificateDer::pem_slice_iter(pem) {
                    let certificate =
                        certificate.map_err(|error| invalid(format!("the CA certificate is not PEM: {error}")))?;
                    roots
                        .add(certificate)
                        .map_err(|error| invalid(format!("the CA certificate is unusable: {error}")))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(std::sync::Arc::new(config))
    }

    /// Opens an interactive exec. Refusals before the upgrade (unknown sandbox, paused, bad
    /// command) come back as the server's problem.
    pub async fn exec_socket(&self, id: &str, request: &ExecSocketRequest) -> Result<ExecSocket, ClientError> {
        let url = exec_socket_url(&self.base, id, request)?;
        let mut handshake =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url.as_str())
                .map_err(|error| self.socket_error(error))?;
        if let Some(key) = self.api_key()
            && let Ok(value) = format!("Bearer {key}").parse()
        {
            handshake.headers_mut().insert("authorization", value);
        }
        let connector = match url.scheme() {
            "wss" => Some(tokio_tungstenite::Connector::Rustls(self.tls_roots()?)),
            _ => None,
        };
        let connect = tokio_tungstenite::connect_async_tls_with_config(handshake, None, false, connector);
        let (socket, _response) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connect).await {
            Ok(Ok(connected)) => connected,
            Ok(Err(error)) => return Err(self.socket_error(error)),
            Err(_) => {
                return Err(ClientError::Connect {
                    url: self.display.clone(),
                    detail: "the WebSocket handshake timed out".to_owned(),
                });
            }
        };
        Ok(ExecSocket { socket })
    }

    fn socket_error(&self, error: tungstenite::Error) -> ClientError {
        match error {
            tungstenite::Error::Http(response) => {
                let body = response.body().as_deref().unwrap_or_default();
                error_from_answer(response.status().as_u16(), body)
            }
            tungstenite::Error::Io(io) => ClientError::Connect {
                url: self.display.clone(),
                detail: crate::describe_error_chain(&io),
            },
            other => ClientError::Connect {
                url: self.display.clone(),
                detail: other.to_string(),
            },
        }
    }
}

impl ExecSocket {
    pub fn split(self) -> (ExecWriter, ExecReader) {
        let (sink, stream) = self.socket.split();
        (ExecWriter { sink }, ExecReader { stream })
    }
}

impl ExecWriter {
    /// Sends bytes to the process's stdin.
    pub async fn stdin(&mut self, bytes: Bytes) -> Result<(), ClientError> {
        self.sink.send(Message::Binary(bytes)).await.map_err(frame_error)
    }

    /// Tells the server the terminal's new size.
    pub async fn resize(&mut self, cols: u16, rows: u16) -> Result<(), ClientError> {
        self.sink
            .send(Message::text(resize_frame(cols, rows)))
            .await
            .map_err(frame_error)
    }

    /// Closes the process's stdin (end of input) while the session goes on.
    pub async fn eof(&mut self) -> Result<(), ClientError> {
        self.sink.send(Message::text(EOF_FRAME)).await.map_err(frame_error)
    }

    /// Closes the socket, which ends the process if it still runs.
    pub async fn close(&mut self) -> Result<(), ClientError> {
        match self.sink.close().await {
            Ok(()) | Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => Ok(()),
            Err(error) => Err(frame_error(error)),
        }
    }
}

impl ExecReader {
    /// The next message; `None` once the server closed the socket.
    pub async fn next(&mut self) -> Option<Result<ExecMessage, ClientError>> {
        loop {
            let message = match self.stream.next().await? {
                Ok(message) => message,
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => return None,
                Err(error) => return Some(Err(frame_error(error))),
            };
            match message {
                Message::Binary(bytes) => return Some(Ok(ExecMessage::Output(bytes))),
                Message::Text(text) => return Some(text_frame(text.as_str())),
                Message::Close(_) => return None,
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }
}

/// The text frame that closes the process's stdin.
pub const EOF_FRAME: &str = r#"{"eof":true}"#;

/// `{"resize":{"cols":C,"rows":R}}`.
pub fn resize_frame(cols: u16, rows: u16) -> String {
    let message = ResizeMessage {
        resize: TerminalSize { cols, rows },
    };
    serde_json::to_string(&message).unwrap_or_default()
}

/// A text frame from the server: the exit status, or a problem.
fn text_frame(text: &str) -> Result<ExecMessage, ClientError> {
    if let Ok(exit) = serde_json::from_str::<ExecExit>(text) {
        return Ok(ExecMessage::Exit(exit));
    }
    if let Ok(problem) = serde_json::from_str::<Problem>(text) {
        return Err(ClientError::Problem(Box::new(problem)));
    }
    Err(ClientError::Decode(format!(
        "unexpected text frame from the exec socket: {}",
        text.chars().take(200).collect::<String>()
    )))
}

fn frame_error(error: tungstenite::Error) -> ClientError {
    ClientError::Decode(format!("the exec socket failed: {error}"))
}

/// `ws://…/v1/sandboxes/{id}/exec/ws?cmd=a&cmd=b&tty=true&workdir=…&user=…&env=K=V`.
fn exec_socket_url(base: &Url, id: &str, request: &ExecSocketRequest) -> Result<Url, ClientError> {
    let mut url = sandbox_path(base, id, &["exec", "ws"]);
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    url.set_scheme(scheme).map_err(|()| ClientError::InvalidUrl {
        url: base.to_string(),
        detail: "cannot make a WebSocket URL of it".to_owned(),
    })?;
    {
        let mut pairs = url.query_pairs_mut();
        for arg in &request.cmd {
            pairs.append_pair("cmd", arg);
        }
        pairs.append_pair("tty", if request.tty { "true" } else { "false" });
        if let Some(workdir) = &request.workdir {
            pairs.append_pair("workdir", workdir);
        }
        if let Some(user) = &request.user {
            pairs.append_pair("user", user);
        }
        for (key, value) in &request.env {
            pairs.append_pair("env", &format!("{key}={value}"));
        }
        if let Some((cols, rows)) = request.size {
            pairs.append_pair("cols", &cols.to_string());
            pairs.append_pair("rows", &rows.to_string());
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use berth_api::ProblemKind;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::parse_base_url;

    #[test]
    fn the_socket_url_carries_argv_in_order_and_every_option() {
        let request = ExecSocketRequest {
            cmd: vec!["sh".into(), "-c".into(), "echo a&b".into()],
            tty: true,
            workdir: Some("/w d".into()),
            user: Some("1000:1000".into()),
            env: vec![("A".into(), "1=2".into()), ("B".into(), String::new())],
            size: Some((123, 45)),
        };
        let url = exec_socket_url(&parse_base_url("http://h:1/pre").unwrap(), "abc", &request).unwrap();
        assert_eq!(
            url.as_str(),
            "ws://h:1/pre/v1/sandboxes/abc/exec/ws?cmd=sh&cmd=-c&cmd=echo+a%26b&tty=true&workdir=%2Fw+d&user=1000%3A1000&env=A%3D1%3D2&env=B%3D&cols=123&rows=45"
        );
        let plain = ExecSocketRequest {
            cmd: vec!["true".into()],
            ..Default::default()
        };
        let url = exec_socket_url(&parse_base_url("127.0.0.1:8080").unwrap(), "x", &plain).unwrap();
        assert_eq!(
            url.as_str(),
            "ws://127.0.0.1:8080/v1/sandboxes/x/exec/ws?cmd=true&tty=false"
        );
    }

    #[test]
    fn frames_in_both_directions() {
        assert_eq!(resize_frame(80, 24), r#"{"resize":{"cols":80,"rows":24}}"#);
        let eof = berth_api::work::StdinEof { eof: true };
        assert_eq!(serde_json::to_string(&eof).unwrap(), EOF_FRAME);
        assert_eq!(
            text_frame(r#"{"exit_code":3,"duration_ms":5,"timed_out":false}"#).unwrap(),
            ExecMessage::Exit(ExecExit {
                exit_code: 3,
                duration_ms: 5,
                timed_out: false
            })
        );
        let problem = serde_json::to_string(&Problem::new(ProblemKind::InvalidState, "paused")).unwrap();
        assert_eq!(text_frame(&problem).unwrap_err().to_string(), "paused");
        assert!(matches!(text_frame("hello"), Err(ClientError::Decode(_))));
    }

    #[tokio::test]
    async fn a_refused_upgrade_becomes_the_servers_problem() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buffer = vec![0u8; 4096];
            let mut request = Vec::new();
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let read = socket.read(&mut buffer).await.unwrap();
                if read == 0 {
                    return;
                }
                request.extend_from_slice(&buffer[..read]);
            }
            let body = serde_json::to_vec(&Problem::new(ProblemKind::InvalidState, "sandbox x is Paused")).unwrap();
            let head = format!(
                "HTTP/1.1 409 Conflict\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            socket.write_all(&[head.as_bytes(), &body].concat()).await.unwrap();
            socket.shutdown().await.unwrap();
        });
        let client = BerthClient::new(&format!("http://{address}")).unwrap();
        let request = ExecSocketRequest {
            cmd: vec!["sh".into()],
            tty: true,
            ..Default::default()
        };
        let error = client.exec_socket("x", &request).await.unwrap_err();
        assert_eq!(error.status(), Some(409), "{error:?}");
        assert_eq!(error.to_string(), "sandbox x is Paused");
    }

    #[tokio::test]
    async fn a_session_carries_stdin_resizes_output_and_the_exit() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut socket = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let mut seen = Vec::new();
            // A resize, then stdin; echo the stdin and end with the exit status.
            while seen.len() < 3 {
                match socket.next().await.unwrap().unwrap() {
                    Message::Text(text) => seen.push(format!("text {text}")),
                    Message::Binary(bytes) => {
                        seen.push(format!("binary {}", String::from_utf8_lossy(&bytes)));
                        socket.send(Message::Binary(bytes)).await.unwrap();
                    }
                    _ => {}
                }
            }
            let exit = r#"{"exit_code":42,"duration_ms":1,"timed_out":false}"#;
            socket.send(Message::text(exit)).await.unwrap();
            socket.close(None).await.unwrap();
            seen
        });
        let client = BerthClient::new(&format!("http://{address}")).unwrap();
        let request = ExecSocketRequest {
            cmd: vec!["cat".into()],
            tty: true,
            ..Default::default()
        };
        let (mut writer, mut reader) = client.exec_socket("x", &request).await.unwrap().split();
        writer.resize(100, 30).await.unwrap();
        writer.stdin(Bytes::from_static(b"hello")).await.unwrap();
        writer.eof().await.unwrap();
        assert_eq!(
            reader.next().await.unwrap().unwrap(),
            ExecMessage::Output(Bytes::from_static(b"hello"))
        );
        let ExecMessage::Exit(exit) = reader.next().await.unwrap().unwrap() else {
            panic!("no exit frame")
        };
        assert_eq!(exit.exit_code, 42);
        assert!(reader.next().await.is_none(), "the close ends the reader");
        writer.close().await.unwrap();
        assert_eq!(
            server.await.unwrap(),
            [
                r#"text {"resize":{"cols":100,"rows":30}}"#.to_owned(),
                "binary hello".to_owned(),
                r#"text {"eof":true}"#.to_owned()
            ]
        );
    }
}
