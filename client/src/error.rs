//! Errors of the client library, split by blame.

use std::path::PathBuf;

/// What went wrong talking to a netserver. Each variant names one party to
/// blame and one thing to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The socket could not be opened: no server there, or no permission.
    #[error("cannot connect to the netserver socket {}: {source}; {hint}", path.display())]
    Connect {
        path: PathBuf,
        source: std::io::Error,
        /// What to check, for the person reading the message.
        hint: &'static str,
    },

    /// The server understood the request and refused it; `message` is the
    /// server's own text (a syntax error with its position, a limit, a bad
    /// frame index, …).
    #[error("the server refused the request: {message}")]
    Refused { message: String },

    /// A tag or capability from an earlier run of the server.
    #[error("{message} (the tag or capability was issued before the server restarted; install the filter again)")]
    Stale { message: String },

    /// The server does not offer this operation (e.g. `inject` on a backend
    /// that is not `emulated`, or a method an older server lacks).
    #[error("the server does not support this: {message}")]
    Unsupported { message: String },

    /// The connection is gone.
    #[error("the server closed the connection (restarted or exited)")]
    Disconnected,

    /// The caller passed something the library can tell is wrong without
    /// asking the server.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Shared mode could not be set up here (no memfd, the side socket
    /// unreachable, the region refused); emulated mode still works.
    #[error("shared mode: {0}")]
    Shared(String),

    /// The server sent something that breaks the protocol (a frame it did not
    /// hold, a slot the client did not name, …). A bug on the server side.
    #[error("protocol violation by the server: {0} (please report this as a netserver bug)")]
    Protocol(String),
}

impl Error {
    /// Whether the caller (not the server, not the connection) was at fault.
    pub fn is_caller_error(&self) -> bool {
        matches!(
            self,
            Error::Refused { .. } | Error::InvalidArgument(_) | Error::Stale { .. }
        )
    }
}

const REMOTE_PREFIX: &str = "remote exception: ";

impl From<capnp::Error> for Error {
    fn from(error: capnp::Error) -> Self {
        use capnp::ErrorKind;
        let message = error
            .extra
            .strip_prefix(REMOTE_PREFIX)
            .unwrap_or(&error.extra)
            .trim()
            .to_string();
        match error.kind {
            ErrorKind::Disconnected => Error::Disconnected,
            ErrorKind::Unimplemented => Error::Unsupported { message },
            _ if message.to_ascii_lowercase().starts_with("stale") => Error::Stale { message },
            // A reply the library cannot decode is the server's fault, not a
            // refusal: capnp's own decoding errors are not "remote".
            _ if !error.extra.starts_with(REMOTE_PREFIX) && !error.extra.is_empty() => {
                if is_disconnect_text(&message) {
                    Error::Disconnected
                } else {
                    Error::Protocol(message)
                }
            }
            _ => Error::Refused { message },
        }
    }
}

impl From<capnp::NotInSchema> for Error {
    fn from(error: capnp::NotInSchema) -> Self {
        Error::Protocol(format!(
            "the server sent a value this client does not know: {error}"
        ))
    }
}

impl From<std::str::Utf8Error> for Error {
    fn from(error: std::str::Utf8Error) -> Self {
        Error::Protocol(format!("the server sent text that is not UTF-8: {error}"))
    }
}

/// capnp-rpc reports some local connection failures as `Failed` errors.
fn is_disconnect_text(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    [
        "disconnected",
        "connection reset",
        "broken pipe",
        "no connection",
        "shut down",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_failure_is_a_refusal_with_the_server_text() {
        let e = Error::from(capnp::Error::failed(
            "remote exception: syntax error at position 4: expected a port number".into(),
        ));
        match &e {
            Error::Refused { message } => {
                assert_eq!(
                    message,
                    "syntax error at position 4: expected a port number"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().contains("position 4"));
        assert!(e.is_caller_error());
    }

    #[test]
    fn stale_is_recognised() {
        let e = Error::from(capnp::Error::failed(
            "remote exception: stale: the server restarted".into(),
        ));
        assert!(matches!(e, Error::Stale { .. }), "{e:?}");
        assert!(e.to_string().starts_with("stale: the server restarted"));
    }

    #[test]
    fn disconnects_are_the_connection_not_the_caller() {
        let e = Error::from(capnp::Error::disconnected("Peer disconnected.".into()));
        assert!(matches!(e, Error::Disconnected));
        assert_eq!(
            e.to_string(),
            "the server closed the connection (restarted or exited)"
        );
        let e = Error::from(capnp::Error::failed("no connection".into()));
        assert!(matches!(e, Error::Disconnected), "{e:?}");
        assert!(!e.is_caller_error());
    }

    #[test]
    fn local_decode_errors_blame_the_server() {
        let e = Error::from(capnp::Error::failed("message too deeply nested".into()));
        assert!(matches!(e, Error::Protocol(_)), "{e:?}");
    }
}
