//! The bridge's public error type.

use std::fmt;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Invalid settings: a NATS URL, a subject prefix, an unreadable token
    /// or credentials file, no event to bridge (a usage error).
    Config,
    /// The NATS server refused the authentication (its reason is in the message).
    Auth,
    /// The TLS handshake with NATS failed (for instance a wrong CA).
    Tls,
    /// The local side failed (the socket server or client), with its kind.
    Local(socket_core::ErrorKind),
    /// Anything else (the bridge thread could not start, ...).
    Runtime,
}

/// An error of the bridge: a kind and a message that says what to do.
///
/// # Examples
///
/// ```
/// use socket_nats::{Error, ErrorKind};
///
/// let err = Error::new(ErrorKind::Config, "no event to bridge");
/// assert_eq!(err.kind(), ErrorKind::Config);
/// assert_eq!(err.to_string(), "no event to bridge");
/// ```
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into(), source: None }
    }

    /// The same error with a source.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        self.source = Some(Box::new(source));
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<socket_core::Error> for Error {
    fn from(e: socket_core::Error) -> Error {
        Error { kind: ErrorKind::Local(e.kind()), message: e.to_string(), source: Some(Box::new(e)) }
    }
}

/// A result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
