//! `socketctl list`: the Unix sockets in the socket directory, live or stale.
//!
//! A socket is `live` when a connection to it succeeds (the Unix transport's probe: a
//! non-blocking connect, closed at once; a running `serve` may print it as a short-lived
//! client) and `stale` when it is refused.
//! Only files named `{event}.sock` with a valid event name that are sockets are listed,
//! sorted by event name. A missing directory lists nothing.

use std::path::{Path, PathBuf};

use serde_json::json;
use socket_factory::message::validate_event_name;
use socket_factory::unix::{socket_state, SocketState};

use crate::args::{GlobalArgs, ListArgs};
use crate::exit::{CliError, Exit};
use crate::output::{print_json, print_line};
use crate::settings::{load_config, Overrides};

/// One socket file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The event name (the file name without `.sock`).
    pub(crate) event_name: String,
    /// Full path of the socket file.
    pub(crate) path: PathBuf,
    /// True when something accepts connections on it.
    pub(crate) live: bool,
}

impl Entry {
    fn state(&self) -> &'static str {
        if self.live {
            "live"
        } else {
            "stale"
        }
    }
}

/// Runs `list`.
///
/// # Errors
///
/// Exit 2 for an invalid configuration, exit 2 when the directory cannot be read.
pub(crate) fn run(global: &GlobalArgs, args: &ListArgs) -> Result<Exit, CliError> {
    let config = load_config(global, &Overrides::new())?;
    let entries = scan(&config.socket.socket_dir)?;
    if args.json {
        for e in &entries {
            print_json(&json!({"event_name": e.event_name, "path": e.path.to_string_lossy(), "state": e.state()}))?;
        }
    } else {
        let width = entries.iter().map(|e| e.event_name.len()).max().unwrap_or(5).max(5);
        if !entries.is_empty() {
            print_line(&format!("{:<width$}  {:<5}  PATH", "EVENT", "STATE"))?;
        }
        for e in &entries {
            print_line(&format!("{:<width$}  {:<5}  {}", e.event_name, e.state(), e.path.display()))?;
        }
    }
    Ok(Exit::Ok)
}

/// The socket files of `dir`, sorted by event name.
///
/// # Errors
///
/// Exit 2 when `dir` exists but cannot be read (not a directory, no permission): the same
/// code `serve` gives for a socket directory it cannot use.
pub(crate) fn scan(dir: &Path) -> Result<Vec<Entry>, CliError> {
    let read = match std::fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(CliError::usage(format!(
                "cannot read socket directory {}: {e}; check socket.socket_dir",
                dir.display()
            )))
        }
    };
    let mut entries = Vec::new();
    for item in read {
        let item = item.map_err(|e| CliError::usage(format!("cannot read socket directory {}: {e}", dir.display())))?;
        let name = item.file_name();
        let Some(event) = name.to_str().and_then(|n| n.strip_suffix(".sock")) else { continue };
        if validate_event_name(event).is_err() {
            continue;
        }
        let path = item.path();
        let live = match socket_state(&path) {
            Ok(SocketState::Live) => true,
            Ok(SocketState::Stale) => false,
            Ok(_) => {
                tracing::debug!(path = %path.display(), "skipping a .sock entry that is not a socket");
                continue;
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "skipping a socket that cannot be probed: {e}");
                continue;
            }
        };
        entries.push(Entry { event_name: event.to_owned(), path, live });
    }
    entries.sort_by(|a, b| a.event_name.cmp(&b.event_name));
    Ok(entries)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn live_stale_and_ignored_files() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let _live = UnixListener::bind(dir.path().join("b_live.sock"))?;
        drop(UnixListener::bind(dir.path().join("a_stale.sock"))?);
        std::fs::write(dir.path().join("regular.sock"), b"not a socket")?;
        let _bad_name = UnixListener::bind(dir.path().join("bad name.sock"))?;
        let _other = UnixListener::bind(dir.path().join("other.socket"))?;
        std::fs::write(dir.path().join("b_live.lock"), b"")?;

        let entries = scan(dir.path())?;
        let got: Vec<_> = entries.iter().map(|e| (e.event_name.as_str(), e.state())).collect();
        assert_eq!(got, [("a_stale", "stale"), ("b_live", "live")]);
        assert_eq!(entries[1].path, dir.path().join("b_live.sock"));
        Ok(())
    }

    #[test]
    fn missing_directory_lists_nothing() -> Result<(), CliError> {
        assert!(scan(Path::new("/nonexistent/socketctl-test-dir"))?.is_empty());
        Ok(())
    }
}
