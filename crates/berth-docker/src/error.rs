//! Classification of bollard errors into berth's [`RuntimeError`]: one function, one table.

use std::error::Error as StdError;
use std::io;

use berth_runtime::RuntimeError;
use bollard::errors::Error as BollardError;

/// Which engine a call went to, for `Unavailable` and `ImageNotFound`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EngineRef<'a> {
    pub name: &'a str,
    pub endpoint: &'a str,
}

/// What a call was about, so a 404 can name the right thing.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Subject<'a> {
    /// A container, by id or name: 404 → `NotFound`.
    Container(&'a str),
    /// An image reference: 404 → `ImageNotFound`.
    Image(&'a str),
    /// An exec instance by id: 404 → `NotFound("exec <id>")`.
    Exec(&'a str),
    /// A path in a container (archive calls): 404 → `NotFound(container)` when the container is
    /// missing, else `NotFound("<container>:<path>")`.
    Path { container: &'a str, path: &'a str },
    /// Anything else: 404 → `Other`.
    Engine,
}

/// An owned [`EngineRef`], for streams that outlive the call that opened them.
#[derive(Debug, Clone)]
pub(crate) struct OwnedEngine {
    pub name: String,
    pub endpoint: String,
}

impl OwnedEngine {
    pub(crate) fn classify(&self, err: &BollardError, subject: Subject<'_>) -> RuntimeError {
        classify(
            err,
            EngineRef {
                name: &self.name,
                endpoint: &self.endpoint,
            },
            subject,
        )
    }
}

/// Maps one bollard error to a classified [`RuntimeError`]. Engine text is kept as `detail`, but
/// always under a class the API can answer correctly.
pub(crate) fn classify(err: &BollardError, engine: EngineRef<'_>, subject: Subject<'_>) -> RuntimeError {
    match err {
        BollardError::DockerResponseServerError { status_code, message } => {
            classify_status(*status_code, message, engine, subject)
        }
        BollardError::RequestTimeoutError => RuntimeError::Timeout(format!(
            "engine `{}` at {} did not answer in time",
            engine.name, engine.endpoint
        )),
        BollardError::SocketNotFoundError(_) => unavailable(engine, "no such file (is dockerd running?)".into()),
        BollardError::IOError { .. }
        | BollardError::HyperResponseError { .. }
        | BollardError::HyperLegacyError { .. }
        | BollardError::HttpClientError { .. } => match tls_failure(err) {
            // Not an engine that is down: one berth must not trust (or that refuses berth's
            // certificate). Retrying cannot help; the settings must change.
            Some(failure) => RuntimeError::Invalid(format!(
                "engine `{}` at {}: the TLS handshake failed: {failure} (check DOCKER_CERT_PATH and the CA \
                 that signed the engine's certificate)",
                engine.name, engine.endpoint
            )),
            None => unavailable(engine, transport_detail(err)),
        },
        BollardError::DockerStreamError { error } => match subject {
            Subject::Image(image) => image_not_found(image, engine, error.clone()),
            _ => RuntimeError::Other(error.clone()),
        },
        BollardError::JsonDataError { message, .. } => {
            RuntimeError::Other(format!("engine answered with JSON berth cannot read: {message}"))
        }
        other => RuntimeError::Other(other.to_string()),
    }
}

fn classify_status(status: u16, message: &str, engine: EngineRef<'_>, subject: Subject<'_>) -> RuntimeError {
    let message = message.trim().to_owned();
    match status {
        404 => match subject {
            Subject::Container(id) => RuntimeError::NotFound(id.to_owned()),
            Subject::Image(image) => image_not_found(image, engine, message),
            Subject::Exec(id) => RuntimeError::NotFound(format!("exec {id}")),
            Subject::Path { container, .. } if message.starts_with("No such container") => {
                RuntimeError::NotFound(container.to_owned())
            }
            Subject::Path { container, path } => RuntimeError::NotFound(format!("{container}:{path}")),
            Subject::Engine => RuntimeError::Other(message),
        },
        409 => RuntimeError::Conflict(message),
        400 | 403 | 422 => RuntimeError::Invalid(message),
        502..=504 => unavailable(engine, format!("status {status}: {message}")),
        _ if message.is_empty() => RuntimeError::Other(format!("status {status}")),
        _ => RuntimeError::Other(message),
    }
}

pub(crate) fn unavailable(engine: EngineRef<'_>, detail: String) -> RuntimeError {
    RuntimeError::Unavailable {
        engine: engine.name.to_owned(),
        endpoint: engine.endpoint.to_owned(),
        detail,
    }
}

pub(crate) fn image_not_found(image: &str, engine: EngineRef<'_>, detail: String) -> RuntimeError {
    RuntimeError::ImageNotFound {
        image: image.to_owned(),
        engine: engine.name.to_owned(),
        detail,
    }
}

/// A short human reason for a transport failure: the IO error's kind when there is one, with a
/// hint, else the innermost message of the error chain.
fn transport_detail(err: &BollardError) -> String {
    if let Some(io_err) = find_io_error(err) {
        let hint = match io_err.kind() {
            io::ErrorKind::NotFound => Some("no such file (is dockerd running?)"),
            io::ErrorKind::ConnectionRefused => Some("connection refused (is dockerd running and listening there?)"),
            io::ErrorKind::PermissionDenied => {
                Some("permission denied (can this user open the socket, e.g. is it in the docker group?)")
            }
            io::ErrorKind::TimedOut => Some("connection timed out"),
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof => {
                Some("the engine closed the connection")
            }
            _ => None,
        };
        if let Some(hint) = hint {
            return hint.to_owned();
        }
    }
    innermost_message(err)
}

/// The TLS error in `err`'s chain, if the transport failed in a handshake.
fn tls_failure(err: &BollardError) -> Option<String> {
    // bollard's I/O error is transparent: its chain starts below the `io::Error` it holds.
    let start: &(dyn StdError + 'static) = match err {
        BollardError::IOError { err } => err,
        other => other,
    };
    berth_core::error_chain::causes(start).find_map(|e| {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // An `io::Error` wrapping another error does not report it as its source.
        if let Some(tls) = e
            .downcast_ref::<io::Error>()
            .and_then(|io_err| io_err.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls.to_string());
        }
        // The transport may carry rustls' error only as text (a connector's own error type).
        let text = e.to_string();
        (text.contains("invalid peer certificate") || text.contains("certificate verify failed")).then_some(text)
    })
}

fn find_io_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a io::Error> {
    berth_core::error_chain::causes(err).find_map(|e| e.downcast_ref::<io::Error>())
}

fn innermost_message(err: &(dyn StdError + 'static)) -> String {
    berth_core::error_chain::causes(err)
        .last()
        .map_or_else(|| err.to_string(), ToString::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENGINE: EngineRef<'static> = EngineRef {
        name: "local",
        endpoint: "unix:///var/run/docker.sock",
    };

    fn server(status_code: u16, message: &str) -> BollardError {
        BollardError::DockerResponseServerError {
            status_code,
            message: message.into(),
        }
    }

    #[test]
    fn not_found_names_the_container_or_the_image() {
        assert_eq!(
            classify(
                &server(404, "No such container: abc"),
                ENGINE,
                Subject::Container("abc")
            ),
            RuntimeError::NotFound("abc".into())
        );
        assert_eq!(
            classify(&server(404, "No such image: x:1"), ENGINE, Subject::Image("x:1")),
            RuntimeError::ImageNotFound {
                image: "x:1".into(),
                engine: "local".into(),
                detail: "No such image: x:1".into()
            }
        );
        assert!(matches!(
            classify(&server(404, "page not found"), ENGINE, Subject::Engine),
            RuntimeError::Other(_)
        ));
    }

    #[test]
    fn status_codes_map_to_classes() {
        let c = |status, msg| classify(&server(status, msg), ENGINE, Subject::Container("abc"));
        assert_eq!(c(409, "name in use"), RuntimeError::Conflict("name in use".into()));
        assert_eq!(c(400, "bad memory"), RuntimeError::Invalid("bad memory".into()));
        assert_eq!(c(403, "forbidden"), RuntimeError::Invalid("forbidden".into()));
        assert_eq!(c(500, "boom"), RuntimeError::Other("boom".into()));
        assert_eq!(c(500, ""), RuntimeError::Other("status 500".into()));
        assert!(matches!(c(503, "busy"), RuntimeError::Unavailable { .. }));
    }

    #[test]
    fn archive_and_exec_not_found_name_what_is_missing() {
        let path = Subject::Path {
            container: "abc",
            path: "/nope",
        };
        assert_eq!(
            classify(&server(404, "No such container: abc"), ENGINE, path),
            RuntimeError::NotFound("abc".into())
        );
        assert_eq!(
            classify(
                &server(404, "Could not find the file /nope in container abc"),
                ENGINE,
                path
            ),
            RuntimeError::NotFound("abc:/nope".into())
        );
        assert_eq!(
            classify(&server(404, "No such exec instance: e1"), ENGINE, Subject::Exec("e1")),
            RuntimeError::NotFound("exec e1".into())
        );
    }

    #[test]
    fn timeouts_are_timeouts() {
        let err = classify(&BollardError::RequestTimeoutError, ENGINE, Subject::Engine);
        assert!(matches!(err, RuntimeError::Timeout(_)));
        assert!(err.is_transient());
    }

    #[test]
    fn an_untrusted_engine_certificate_is_invalid_settings_not_an_engine_that_is_down() {
        let untrusted = BollardError::IOError {
            err: io::Error::new(
                io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            ),
        };
        match classify(&untrusted, ENGINE, Subject::Engine) {
            RuntimeError::Invalid(detail) => {
                assert!(detail.contains("TLS handshake failed"), "{detail}");
                assert!(detail.contains("UnknownIssuer"), "{detail}");
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
        assert!(!classify(&untrusted, ENGINE, Subject::Engine).is_transient());
        // A connector that keeps only the text of rustls' error is recognised too.
        let as_text = BollardError::IOError {
            err: io::Error::other("invalid peer certificate: UnknownIssuer"),
        };
        assert!(matches!(
            classify(&as_text, ENGINE, Subject::Engine),
            RuntimeError::Invalid(_)
        ));
    }

    #[test]
    fn io_errors_are_unavailable_with_a_hint() {
        let refused = BollardError::IOError {
            err: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        match classify(&refused, ENGINE, Subject::Container("abc")) {
            RuntimeError::Unavailable {
                engine,
                endpoint,
                detail,
            } => {
                assert_eq!(engine, "local");
                assert_eq!(endpoint, "unix:///var/run/docker.sock");
                assert!(detail.starts_with("connection refused"), "{detail}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        let missing = BollardError::SocketNotFoundError("/nonexistent.sock".into());
        match classify(&missing, ENGINE, Subject::Engine) {
            RuntimeError::Unavailable { detail, .. } => {
                assert!(detail.starts_with("no such file"), "{detail}")
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        let other = BollardError::IOError {
            err: io::Error::other("tls handshake eof"),
        };
        match classify(&other, ENGINE, Subject::Engine) {
            RuntimeError::Unavailable { detail, .. } => assert_eq!(detail, "tls handshake eof"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[test]
    fn pull_stream_errors_are_image_not_found() {
        let err = BollardError::DockerStreamError {
            error: "manifest unknown".into(),
        };
        assert!(matches!(
            classify(&err, ENGINE, Subject::Image("x:1")),
            RuntimeError::ImageNotFound { ref image, .. } if image == "x:1"
        ));
    }
}
