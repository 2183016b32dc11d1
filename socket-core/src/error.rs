//! The public error type: opaque, with a [`kind`](Error::kind).

use std::fmt;

/// What went wrong, in categories a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No server, a lost connection, a refused or reset connection, an I/O failure.
    Connection,
    /// A message could not be encoded or decoded, or is too large.
    Message,
    /// An argument failed validation (event name, path length, unknown client id, ...).
    Validation,
    /// An operation did not finish in time.
    Timeout,
    /// The server refused the connection because it serves its maximum number of clients.
    MaxConnections,
    /// The server does not accept messages from clients, or this client is receive-only.
    SendNotAllowed,
    /// The configuration is invalid (unknown key, invalid value, unknown transport).
    Config,
    /// Another live server already owns the address (socket path or port).
    AddrInUse,
    /// The handle was closed (client disconnected for good, server stopped).
    Closed,
}

impl ErrorKind {
    /// A short lower-case name of the kind, e.g. `"max-connections"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connection => "connection",
            ErrorKind::Message => "message",
            ErrorKind::Validation => "validation",
            ErrorKind::Timeout => "timeout",
            ErrorKind::MaxConnections => "max-connections",
            ErrorKind::SendNotAllowed => "send-not-allowed",
            ErrorKind::Config => "config",
            ErrorKind::AddrInUse => "addr-in-use",
            ErrorKind::Closed => "closed",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error type of every public operation of `socket`.
///
/// It is opaque: match on [`Error::kind`], read the message with `Display`,
/// and reach the underlying cause (an `std::io::Error`, a codec error, ...)
/// through [`std::error::Error::source`].
///
/// # Examples
///
/// ```
/// use socket_core::{EventName, ErrorKind};
///
/// let err = EventName::new("bad name!").unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Validation);
/// assert!(err.to_string().contains("invalid characters"));
/// ```
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// `Result` with [`Error`] as its error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Creates an error of `kind` with a human-readable `message`.
    ///
    /// Messages are lower case, say what happened and, where it helps, what to do.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), source: None }
    }

    /// Attaches the underlying cause.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The category of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the cause chain.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|s| &**s as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_source_show_the_cause() {
        let e = Error::new(ErrorKind::Connection, "cannot connect").with_source(std::io::Error::other("refused"));
        let debug = format!("{e:?}");
        assert!(debug.contains("Connection") && debug.contains("refused"), "{debug}");
        assert!(std::error::Error::source(&e).is_some_and(|s| s.to_string() == "refused"));
    }
}
