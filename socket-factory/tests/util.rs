//! Helpers shared by the test modules.

use std::error::Error as StdError;
use std::time::Duration;

pub(crate) type TestResult<T = ()> = Result<T, Box<dyn StdError + Send + Sync>>;

/// How long an end-to-end test may run before it fails.
pub(crate) const WATCHDOG: Duration = Duration::from_secs(20);

/// Runs `f` on its own thread and fails if it does not finish within [`WATCHDOG`] (or panics).
pub(crate) fn with_watchdog<T: Send + 'static>(f: impl FnOnce() -> TestResult<T> + Send + 'static) -> TestResult<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(result) => result,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            Err(format!("watchdog: not done within {WATCHDOG:?}").into())
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err("the test thread panicked".into()),
    }
}

/// Asserts `result` is an error of `kind` whose message contains every one of `needles`.
pub(crate) fn assert_err<T>(
    result: socket_factory::Result<T>,
    kind: socket_factory::ErrorKind,
    needles: &[&str],
) -> TestResult {
    let err = match result {
        Ok(_) => return Err(format!("expected a {kind} error, got Ok").into()),
        Err(e) => e,
    };
    if err.kind() != kind {
        return Err(format!("expected a {kind} error, got {:?}: {err}", err.kind()).into());
    }
    let text = err.to_string();
    for needle in needles {
        if !text.contains(needle) {
            return Err(format!("error {text:?} does not mention {needle:?}").into());
        }
    }
    Ok(())
}
