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
use socket_core::BlockingRead;

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
