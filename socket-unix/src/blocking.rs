//! The blocking view of a connection's read half ([`BlockingRead`]): a blocking `receive`
//! of the client engine reads the socket on its own thread with `poll` and `read`, instead
//! of through the reactor.

use std::fmt;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use std::sync::Arc;

use socket_core::{BlockingRead, Connection, PeerInfo};

/// A connection over `stream` with its blocking view (`connect_blocking`, `accept_blocking`).
pub(crate) fn viewed(
    stream: async_net::unix::UnixStream,
    peer: PeerInfo,
) -> (Connection, Option<Arc<dyn BlockingRead>>) {
    let blocking: Arc<dyn BlockingRead> = Arc::new(FdReader::new(stream.clone()));
    (Connection::shared(stream, peer), Some(blocking))
}

/// Longest single `poll`.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// Reads a non-blocking socket on the calling thread, waiting in `poll`.
pub(crate) struct FdReader<S> {
    stream: S,
    /// The last read filled its buffer: more is probably waiting, so the next read goes
    /// first (one system call); otherwise `poll` goes first (no failed read).
    busy: AtomicBool,
}

impl<S> FdReader<S> {
    pub(crate) fn new(stream: S) -> Self {
        FdReader { stream, busy: AtomicBool::new(false) }
    }
}

impl<S> fmt::Debug for FdReader<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FdReader").finish_non_exhaustive()
    }
}

impl<S: AsFd + Send + Sync> BlockingRead for FdReader<S> {
    fn read_until(&self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<Option<usize>> {
        let fd = self.stream.as_fd();
        let mut try_read = self.busy.load(Ordering::Relaxed);
        loop {
            if try_read {
                match rustix::io::read(fd, &mut *buf) {
                    Ok(n) => {
                        self.busy.store(n == buf.len(), Ordering::Relaxed);
                        return Ok(Some(n));
                    }
                    Err(Errno::AGAIN | Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let timeout = match deadline {
                None => None,
                Some(at) => match at.checked_duration_since(Instant::now()) {
                    // At most an hour per wait (the loop waits again): always representable.
                    Some(left) if !left.is_zero() => Timespec::try_from(left.min(MAX_WAIT)).ok(),
                    // The time is up: one last look before saying so.
                    _ if !try_read => {
                        try_read = true;
                        continue;
                    }
                    _ => return Ok(None),
                },
            };
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            match poll(&mut fds, timeout.as_ref()) {
                // Readable, closed or failed: the read says which.
                Ok(1..) => try_read = true,
                Ok(0) | Err(Errno::INTR) => try_read = false,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use super::*;

    /// A connected pair: the reading end non-blocking (as the async runtime leaves it).
    fn pair() -> (impl AsFd + Send + Sync, impl Write + Send + 'static) {
        let (a, b) = std_pair();
        a.set_nonblocking(true).expect("non-blocking");
        (a, b)
    }

    #[test]
    fn waits_for_data_until_the_deadline_then_reads_it_and_sees_the_end() {
        let (a, mut b) = pair();
        let r = FdReader::new(a);
        let mut buf = [0u8; 16];
        let t = Instant::now();
        assert_eq!(r.read_until(&mut buf, Some(t + Duration::from_millis(30))).expect("read"), None);
        assert!(t.elapsed() >= Duration::from_millis(30), "returned before the deadline");
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            b.write_all(b"hello").expect("write");
            b
        });
        // No deadline: waits for the bytes.
        assert_eq!(r.read_until(&mut buf, None).expect("read"), Some(5));
        assert_eq!(&buf[..5], b"hello");
        drop(writer.join().expect("writer"));
        assert_eq!(r.read_until(&mut buf, Some(Instant::now() + Duration::from_secs(5))).expect("read"), Some(0));
    }

    #[test]
    fn a_deadline_already_passed_still_takes_what_is_there() {
        let (a, mut b) = pair();
        b.write_all(b"ready").expect("write");
        // The bytes are there (a deadline, not a sleep) before the reader is asked with no time left.
        let five = Timespec { tv_sec: 5, tv_nsec: 0 };
        assert_eq!(poll(&mut [PollFd::new(&a, PollFlags::IN)], Some(&five)).expect("poll"), 1);
        let r = FdReader::new(a);
        let mut buf = [0u8; 16];
        assert_eq!(r.read_until(&mut buf, Some(Instant::now())).expect("read"), Some(5));
        assert_eq!(r.read_until(&mut buf, Some(Instant::now())).expect("read"), None);
    }

    fn std_pair() -> (std::os::unix::net::UnixStream, std::os::unix::net::UnixStream) {
        std::os::unix::net::UnixStream::pair().expect("socket pair")
    }
}
