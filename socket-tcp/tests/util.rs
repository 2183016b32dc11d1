//! Helpers: per-test port ranges, watchdogs, error checks.

use std::error::Error as StdError;
use std::future::Future;
use std::time::Duration;

use futures_lite::future;
use socket_core::{Config, EventName};

pub(crate) type TestResult<T = ()> = Result<T, Box<dyn StdError + Send + Sync>>;

/// The deadline of every async test body.
pub(crate) const WATCHDOG: Duration = Duration::from_secs(10);

/// Runs `fut` on this thread; fails instead of hanging after [`WATCHDOG`].
pub(crate) fn run<T>(fut: impl Future<Output = TestResult<T>>) -> TestResult<T> {
    async_io::block_on(future::or(fut, async {
        async_io::Timer::after(WATCHDOG).await;
        Err(format!("watchdog: not done within {WATCHDOG:?}").into())
    }))
}

pub(crate) fn event(name: &str) -> EventName {
    EventName::new(name).expect("test event names are valid")
}

pub(crate) use socket_tests::util::assert_err;

/// A block of `len` consecutive free ports, never handed to another test of this process
/// ([`socket_tests::util::free_ports`]).
pub(crate) fn free_ports(len: u16) -> TestResult<(u16, u16)> {
    Ok(socket_tests::util::free_ports(len)?)
}

/// A config discovering in `start..=end`.
pub(crate) fn range_config(start: u16, end: u16) -> Config {
    let mut config = Config::default();
    config.socket.tcp.port_range_start = start;
    config.socket.tcp.port_range_end = end;
    config
}

/// A config with a fixed free port.
pub(crate) fn port_config() -> TestResult<(Config, u16)> {
    let (port, _) = free_ports(1)?;
    let mut config = Config::default();
    config.socket.tcp.port = Some(port);
    Ok((config, port))
}

/// Sockets of local port `port` in TCP state `state` (hex code of /proc/net/tcp: 06 TIME_WAIT,
/// 08 CLOSE_WAIT), IPv4 and IPv6.
pub(crate) fn sockets_in_state(port: u16, state: &str) -> TestResult<usize> {
    let mut count = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(st)) = (fields.get(1), fields.get(3)) else { continue };
            let local_port = local.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) && *st == state {
                count += 1;
            }
        }
    }
    Ok(count)
}

/// Polls `check` until it is true or `limit` passes (for kernel state that has no event to wait on).
pub(crate) fn eventually(limit: Duration, mut check: impl FnMut() -> TestResult<bool>) -> TestResult<bool> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if check()? {
            return Ok(true);
        }
        if std::time::Instant::now() > deadline {
            return Ok(false);
        }
        std::thread::yield_now();
    }
}
