//! Stdout carries data only: one JSON value per line, flushed after every line so that
//! status bars reading line by line see each event at once.

use std::io::Write;

use serde_json::Value as Json;

use crate::exit::CliError;

/// Writes `value` as one line to stdout and flushes.
///
/// The stdout lock is held for the whole line, so lines written from several threads
/// never interleave.
///
/// # Errors
///
/// A runtime error (exit 1) when stdout is closed (e.g. the reader went away).
pub(crate) fn print_json(value: &Json) -> Result<(), CliError> {
    print_line(&value.to_string())
}

/// Writes one line of text to stdout and flushes.
///
/// # Errors
///
/// See [`print_json`].
pub(crate) fn print_line(line: &str) -> Result<(), CliError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    out.write_all(line.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(|e| CliError::runtime(format!("cannot write to stdout: {e}")))
}

/// Writes one error line to stderr: `socketctl: <message>`.
pub(crate) fn print_error(message: &str) {
    let one_line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    // Nothing sensible is left to do if stderr itself is gone.
    let _ = writeln!(err, "socketctl: {one_line}").and_then(|()| err.flush());
}
