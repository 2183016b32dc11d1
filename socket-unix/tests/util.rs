//! Helpers: configs in temp dirs, watchdogs, running code as another user.

use std::error::Error as StdError;
use std::future::Future;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use futures_lite::future;
use socket_core::{Config, EventName, Listener, Transport};
use socket_unix::UnixTransport;

pub(crate) type TestResult<T = ()> = Result<T, Box<dyn StdError + Send + Sync>>;

/// The deadline of every async test body.
pub(crate) const WATCHDOG: Duration = Duration::from_secs(10);

/// Runs `fut` on this thread; fails instead of hanging after [`WATCHDOG`].
pub(crate) fn run<T>(fut: impl Future<Output = TestResult<T>>) -> TestResult<T> {
    async_io::block_on(within(WATCHDOG, fut))
}

/// Fails when `fut` does not finish within `limit`.
pub(crate) async fn within<T>(limit: Duration, fut: impl Future<Output = TestResult<T>>) -> TestResult<T> {
    future::or(fut, async {
        async_io::Timer::after(limit).await;
        Err(format!("watchdog: not done within {limit:?}").into())
    })
    .await
}

pub(crate) fn event(name: &str) -> EventName {
    EventName::new(name).expect("test event names are valid")
}

/// A config whose socket dir is `dir`.
pub(crate) fn config_in(dir: &Path) -> Config {
    let mut config = Config::default();
    config.socket.socket_dir = dir.to_owned();
    config
}

/// A fresh temp dir plus a config whose socket dir `sockets` inside it does not exist yet.
pub(crate) fn fresh() -> TestResult<(tempfile::TempDir, Config)> {
    let tmp = tempfile::tempdir()?;
    let config = config_in(&tmp.path().join("sockets"));
    Ok((tmp, config))
}

pub(crate) fn bind(event: &EventName, config: &Config) -> socket_core::Result<Box<dyn Listener>> {
    async_io::block_on(UnixTransport.bind(event, config))
}

pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The uid and gid the peer-identity tests switch to.
pub(crate) const OTHER_UID: u32 = 65534;

/// Runs `f` on a new thread whose credentials are `OTHER_UID` (needs root). Only that thread
/// changes user: Linux credentials are per thread, and rustix calls the raw syscalls.
pub(crate) fn as_other_user<T: Send + 'static>(
    f: impl FnOnce() -> TestResult<T> + Send + 'static,
) -> mpsc::Receiver<TestResult<T>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = (|| -> TestResult<T> {
            use rustix::process::{Gid, Uid};
            let gid = Gid::from_raw(OTHER_UID);
            let uid = Uid::from_raw(OTHER_UID);
            rustix::thread::set_thread_groups(&[])?;
            rustix::thread::set_thread_res_gid(gid, gid, gid)?;
            rustix::thread::set_thread_res_uid(uid, uid, uid)?;
            f()
        })();
        let _ = tx.send(result);
    });
    rx
}

/// Waits for a message of a helper thread, with a deadline.
pub(crate) fn recv<T>(rx: &mpsc::Receiver<TestResult<T>>) -> TestResult<T> {
    rx.recv_timeout(WATCHDOG).map_err(|e| format!("helper thread: {e}"))?
}

/// Names of the entries of `dir`, sorted.
pub(crate) fn entries(dir: &Path) -> TestResult<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

pub(crate) use socket_tests::util::assert_err;
