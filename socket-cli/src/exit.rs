//! Exit codes and the error type of `socketctl`.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | other runtime error (lost connection, I/O, address in use, ...) |
//! | 2 | usage or validation error: bad arguments, invalid event name, invalid JSON, invalid config |
//! | 3 | no server for the event |
//! | 4 | refused by the server: sending not allowed, connection limit reached |
//! | 5 | timeout |

use std::fmt;

use socket_factory::ErrorKind;

/// A process exit code of `socketctl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// 0: success.
    Ok = 0,
    /// 1: any runtime error that has no code of its own.
    Runtime = 1,
    /// 2: usage or validation error.
    Usage = 2,
    /// 3: no server.
    NoServer = 3,
    /// 4: refused by the server.
    Refused = 4,
    /// 5: timeout.
    Timeout = 5,
}

impl Exit {
    /// The numeric code.
    pub(crate) fn code(self) -> u8 {
        self as u8
    }
}

/// Where an error came from, when the kind alone cannot say which exit code fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Establishing a connection (connect + handshake): a connection error means "no server".
    Connect,
    /// Anything else: a connection error is a lost connection or an I/O failure.
    Other,
}

/// Maps a library error kind to an exit code. The one place that decides exit codes for
/// library errors.
///
/// `ErrorKind::Connection` covers both "nothing listens at the address" and "a live
/// connection was lost". The kind is not fine enough to tell them apart, so the phase
/// decides: during [`Phase::Connect`] every connection error means there is no (reachable)
/// server, exit 3; afterwards it is exit 1.
pub(crate) fn exit_for(kind: ErrorKind, phase: Phase) -> Exit {
    match kind {
        ErrorKind::Connection if phase == Phase::Connect => Exit::NoServer,
        ErrorKind::Connection | ErrorKind::AddrInUse | ErrorKind::Closed => Exit::Runtime,
        ErrorKind::Validation | ErrorKind::Config | ErrorKind::Message => Exit::Usage,
        ErrorKind::MaxConnections | ErrorKind::SendNotAllowed => Exit::Refused,
        ErrorKind::Timeout => Exit::Timeout,
        // ErrorKind is non-exhaustive: a kind added later is a runtime error until mapped.
        _ => Exit::Runtime,
    }
}

/// An error that ends `socketctl`: an exit code and a one-line message for stderr.
#[derive(Debug)]
pub(crate) struct CliError {
    /// The exit code.
    pub(crate) exit: Exit,
    /// What happened, lower case, one line.
    pub(crate) message: String,
}

impl CliError {
    /// An error with an explicit exit code.
    pub(crate) fn new(exit: Exit, message: impl Into<String>) -> Self {
        CliError { exit, message: message.into() }
    }

    /// A usage or validation error (exit 2).
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }

    /// A runtime error (exit 1).
    pub(crate) fn runtime(message: impl Into<String>) -> Self {
        Self::new(Exit::Runtime, message)
    }

    /// A library error raised in `phase`, with its exit code from [`exit_for`].
    pub(crate) fn from_core(err: &socket_factory::Error, phase: Phase) -> Self {
        let exit = exit_for(err.kind(), phase);
        let text = describe(err);
        let message =
            if exit == Exit::NoServer && !text.contains("no server") { format!("no server: {text}") } else { text };
        Self::new(exit, message)
    }

    /// A library error from connecting (see [`Phase::Connect`]).
    pub(crate) fn connect(err: &socket_factory::Error) -> Self {
        Self::from_core(err, Phase::Connect)
    }

    /// The message as one line, newlines folded into spaces.
    pub(crate) fn one_line(&self) -> String {
        self.message.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// The error's own message, plus its root cause (e.g. the OS error) when the message does not
/// already include it. The causes in between usually repeat the message in other words.
///
/// For a configuration error whose first cause already contains the root cause and adds
/// context to it ("cannot read configuration file /abs/path: duplicate key ..."), the first
/// cause is kept whole instead, so the file is not lost.
pub(crate) fn describe(err: &socket_factory::Error) -> String {
    let mut text = err.message().to_owned();
    let first: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    let mut root = first;
    while let Some(next) = root.and_then(std::error::Error::source) {
        root = Some(next);
    }
    if let (Some(first), Some(root)) = (first, root) {
        let cause = root.to_string();
        let first_text = first.to_string();
        let config = err.kind() == ErrorKind::Config;
        let shown = if config && first_text.contains(&cause) { first_text } else { cause };
        if !text.contains(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
    }
    text
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl From<socket_factory::Error> for CliError {
    fn from(err: socket_factory::Error) -> Self {
        CliError::from_core(&err, Phase::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_documented_codes() {
        use ErrorKind::*;
        let cases = [
            (Connection, Phase::Connect, 3),
            (Connection, Phase::Other, 1),
            (MaxConnections, Phase::Connect, 4),
            (SendNotAllowed, Phase::Other, 4),
            (Timeout, Phase::Connect, 5),
            (Timeout, Phase::Other, 5),
            (Validation, Phase::Other, 2),
            (Config, Phase::Connect, 2),
            (Message, Phase::Other, 2),
            (AddrInUse, Phase::Other, 1),
            (Closed, Phase::Other, 1),
            (Closed, Phase::Connect, 1),
        ];
        for (kind, phase, code) in cases {
            assert_eq!(exit_for(kind, phase).code(), code, "{kind:?} in {phase:?}");
        }
    }

    #[test]
    fn no_server_message_says_so() {
        let err = socket_factory::Error::new(ErrorKind::Connection, "cannot connect to /tmp/x/a.sock");
        let cli = CliError::connect(&err);
        assert_eq!(cli.exit, Exit::NoServer);
        assert_eq!(cli.message, "no server: cannot connect to /tmp/x/a.sock");
        let cli = CliError::from(err);
        assert_eq!(cli.exit, Exit::Runtime);
        assert_eq!(cli.message, "cannot connect to /tmp/x/a.sock");
    }

    #[test]
    fn describe_keeps_the_message_and_the_root_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let middle = socket_factory::Error::new(ErrorKind::Connection, "nothing at /x.sock, start one").with_source(io);
        let top = socket_factory::Error::new(ErrorKind::Connection, "no server for event x").with_source(middle);
        assert_eq!(describe(&top), "no server for event x: no such file");
        let plain = socket_factory::Error::new(ErrorKind::Validation, "bad name");
        assert_eq!(describe(&plain), "bad name");
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let says_it = socket_factory::Error::new(ErrorKind::Connection, "read failed: gone").with_source(io);
        assert_eq!(describe(&says_it), "read failed: gone");
        // A first cause that wraps the root with context (the file) is kept whole.
        let root = std::io::Error::new(std::io::ErrorKind::InvalidData, "duplicate key `a`");
        let wraps = std::io::Error::other(WithContext(root));
        let top = socket_factory::Error::new(ErrorKind::Config, "invalid configuration").with_source(wraps);
        assert_eq!(describe(&top), "invalid configuration: in /abs/settings.toml: duplicate key `a`");
    }

    #[derive(Debug)]
    struct WithContext(std::io::Error);

    impl fmt::Display for WithContext {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "in /abs/settings.toml: {}", self.0)
        }
    }

    impl std::error::Error for WithContext {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn one_line_folds_newlines() {
        let err = CliError::usage("first\nsecond\n  third");
        assert_eq!(err.one_line(), "first second third");
    }
}
