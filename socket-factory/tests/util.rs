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

pub(crate) use socket_tests::util::assert_err;
