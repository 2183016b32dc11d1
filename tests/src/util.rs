//! Small helpers shared by the test suites of the workspace (and usable by a third-party
//! transport's tests): free loopback ports and an assertion on a library error.

use std::error::Error as StdError;
use std::io;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::OnceLock;

use socket_core::ErrorKind;

/// The result of a test body: any error fails the test with its message.
pub type TestResult<T = ()> = Result<T, Box<dyn StdError + Send + Sync>>;

/// A TCP port free on 127.0.0.1 right now (the kernel picks it; it may be taken again before
/// use, which is rare enough for tests).
///
/// # Errors
///
/// When no socket can be bound on 127.0.0.1.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A block of `len` consecutive ports, free right now on 127.0.0.1 and never handed to another
/// caller of this process: `(first, last)`. Blocks come from 20000..32000, below Linux's
/// ephemeral range, starting at a random place so that concurrent test processes rarely meet.
///
/// # Errors
///
/// When 200 tries find no free block.
pub fn free_ports(len: u16) -> io::Result<(u16, u16)> {
    static NEXT: OnceLock<AtomicU16> = OnceLock::new();
    let next = NEXT.get_or_init(|| AtomicU16::new(20_000 + fastrand::u16(..10_000)));
    for _ in 0..200 {
        let mut start = next.fetch_add(len, Ordering::Relaxed);
        if start > 32_000 - len {
            next.store(20_000, Ordering::Relaxed);
            start = next.fetch_add(len, Ordering::Relaxed);
        }
        let end = start + len - 1;
        if (start..=end).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return Ok((start, end));
        }
    }
    Err(io::Error::new(io::ErrorKind::AddrNotAvailable, format!("no free block of {len} ports")))
}

/// Asserts `result` is an error of `kind` whose message contains every one of `needles`.
///
/// # Errors
///
/// Describes the mismatch: an `Ok`, another kind, or a missing needle.
pub fn assert_err<T: std::fmt::Debug>(result: socket_core::Result<T>, kind: ErrorKind, needles: &[&str]) -> TestResult {
    let err = match result {
        Ok(v) => return Err(format!("expected a {kind} error, got Ok({v:?})").into()),
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
