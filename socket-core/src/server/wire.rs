//! Frame I/O shared by the server and the client engines: a zero-copy frame
//! reader with a frame-completion deadline, and a write loop with a stall
//! deadline that can be interrupted.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::{Duration, Instant};

use async_io::Timer;
use futures_lite::future::poll_fn;
use futures_lite::{AsyncRead, AsyncWrite};

use crate::codec::{DecodeError, Limits, HEADER_LEN};

/// Reads frames straight into one growable buffer and hands out frame
/// bodies as slices of it: no copy between the socket and the decoder.
///
/// The length header is checked before the buffer grows, so the buffer never
/// holds more than one maximal frame plus one read.
#[derive(Debug)]
pub(crate) struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    base: usize,
    limits: Limits,
    frame_started: Option<Instant>,
    timer: Timer,
    armed: Option<Instant>,
}

/// What [`FrameReader::fill`] got.
#[derive(Debug)]
pub(crate) enum Fill {
    /// More bytes are buffered.
    Data,
    /// The peer closed its end.
    Eof,
    /// The deadline passed before any byte arrived.
    Deadline,
}

impl FrameReader {
    pub(crate) fn new(buffer_size: usize, limits: Limits) -> Self {
        let base = buffer_size.clamp(64, 1 << 20);
        FrameReader {
            buf: vec![0; base],
            start: 0,
            end: 0,
            base,
            limits,
            frame_started: None,
            timer: Timer::never(),
            armed: None,
        }
    }

    /// True while part of a frame is buffered.
    pub(crate) fn in_frame(&self) -> bool {
        self.end > self.start
    }

    /// The next complete frame body, if one is buffered.
    ///
    /// The slice stays valid until the next `&mut self` call.
    pub(crate) fn next_frame(&mut self) -> Result<Option<&[u8]>, DecodeError> {
        let avail = self.end - self.start;
        if avail < HEADER_LEN {
            return Ok(None);
        }
        let len = self.header_len()?;
        if avail < HEADER_LEN + len {
            return Ok(None);
        }
        let body = self.start + HEADER_LEN;
        self.start = body + len;
        self.frame_started = None;
        if self.start == self.end {
            // The bytes stay in place until the next read; only the cursors move.
            self.start = 0;
            self.end = 0;
        }
        Ok(Some(&self.buf[body..body + len]))
    }

    fn header_len(&self) -> Result<usize, DecodeError> {
        let h = &self.buf[self.start..self.start + HEADER_LEN];
        let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len == 0 {
            return Err(DecodeError::EmptyFrame);
        }
        if len > self.limits.max_frame_len {
            return Err(DecodeError::FrameTooLarge { len: len as u64, max: self.limits.max_frame_len });
        }
        Ok(len)
    }

    /// The instant the current partial frame must be complete by, if one is buffered.
    pub(crate) fn frame_deadline(&mut self, frame_timeout: Duration) -> Option<Instant> {
        if !self.in_frame() {
            self.frame_started = None;
            return None;
        }
        let started = *self.frame_started.get_or_insert_with(Instant::now);
        started.checked_add(frame_timeout)
    }

    /// Makes room for the rest of the current frame (or at least one header).
    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > 4 * self.base {
                // Give back the memory of an earlier large frame.
                self.buf.truncate(self.base);
                self.buf.shrink_to_fit();
            }
        }
        let avail = self.end - self.start;
        let need = if avail >= HEADER_LEN {
            // Checked by `next_frame` already; an error here leaves the room as is.
            HEADER_LEN + self.header_len().unwrap_or(0)
        } else {
            HEADER_LEN
        };
        let free_tail = self.buf.len() - self.end;
        if self.start > 0 && (self.buf.len() - self.start < need || free_tail < self.base / 4) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end = avail;
            self.start = 0;
        }
        if self.buf.len() - self.start < need {
            self.buf.resize(self.start + need, 0);
        }
        if self.end == self.buf.len() {
            // Full but no complete frame can be in it: grow by one read.
            let grow = self.base;
            self.buf.resize(self.buf.len() + grow, 0);
        }
    }

    /// Reads once from `r`; gives up with [`Fill::Deadline`] at `deadline` (if any).
    pub(crate) async fn fill<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        r: &mut R,
        deadline: Option<Instant>,
    ) -> io::Result<Fill> {
        self.make_room();
        let FrameReader { buf, end, timer, armed, .. } = self;
        let target = &mut buf[*end..];
        let res = poll_fn(|cx| loop {
            match Pin::new(&mut *r).poll_read(cx, target) {
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Poll::Ready(res) => return Poll::Ready(res.map(Some)),
                Poll::Pending => {
                    if let Some(at) = deadline {
                        if *armed != Some(at) {
                            timer.set_at(at);
                            *armed = Some(at);
                        }
                        if Pin::new(&mut *timer).poll(cx).is_ready() {
                            *armed = None;
                            return Poll::Ready(Ok(None));
                        }
                    }
                    return Poll::Pending;
                }
            }
        })
        .await?;
        Ok(match res {
            None => Fill::Deadline,
            Some(0) => Fill::Eof,
            Some(n) => {
                *end += n;
                Fill::Data
            }
        })
    }
}

/// Why [`write_all`] stopped early.
#[derive(Debug)]
pub(crate) enum WriteFail {
    /// The stream failed (or accepts no more bytes).
    Io(io::Error),
    /// No byte was accepted for the stall timeout.
    Stalled,
    /// `interrupt` completed; `written` bytes of the data went out.
    Interrupted {
        /// Bytes written before the interruption.
        written: usize,
    },
}

impl std::fmt::Display for WriteFail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteFail::Io(e) => write!(f, "write failed: {e}"),
            WriteFail::Stalled => f.write_str("write made no progress before the stall timeout"),
            WriteFail::Interrupted { .. } => f.write_str("write interrupted"),
        }
    }
}

/// A reusable stall timer for [`write_all`].
#[derive(Debug)]
pub(crate) struct StallTimer {
    timer: Timer,
    armed: bool,
}

impl StallTimer {
    pub(crate) fn new() -> Self {
        StallTimer { timer: Timer::never(), armed: false }
    }
}

/// Writes all of `data` and flushes, failing if no byte is accepted for
/// `stall`, or as soon as `interrupt` completes while the stream is blocked.
///
/// `interrupt` is polled only while the stream is not ready, so a fast write
/// costs nothing extra.
pub(crate) async fn write_all<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    data: &[u8],
    stall: Duration,
    st: &mut StallTimer,
    interrupt: impl Future<Output = ()>,
) -> Result<(), WriteFail> {
    let mut interrupt = pin!(interrupt);
    let mut written = 0usize;
    st.armed = false;
    poll_fn(|cx| loop {
        let res = if written < data.len() {
            Pin::new(&mut *w).poll_write(cx, &data[written..])
        } else {
            Pin::new(&mut *w).poll_flush(cx).map_ok(|()| 0)
        };
        match res {
            Poll::Ready(Ok(0)) if written < data.len() => {
                return Poll::Ready(Err(WriteFail::Io(io::Error::from(io::ErrorKind::WriteZero))));
            }
            Poll::Ready(Ok(n)) => {
                if written == data.len() {
                    return Poll::Ready(Ok(()));
                }
                written += n;
                st.armed = false;
            }
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(WriteFail::Io(e))),
            Poll::Pending => {
                if interrupt.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(WriteFail::Interrupted { written }));
                }
                if !st.armed {
                    match Instant::now().checked_add(stall) {
                        Some(at) => st.timer.set_at(at),
                        None => st.timer = Timer::never(),
                    }
                    st.armed = true;
                }
                if Pin::new(&mut st.timer).poll(cx).is_ready() {
                    st.armed = false;
                    return Poll::Ready(Err(WriteFail::Stalled));
                }
                return Poll::Pending;
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode_frame;
    use crate::{Data, EventName, SocketMessage};

    #[test]
    fn reader_cuts_frames_across_reads() -> Result<(), Box<dyn std::error::Error>> {
        let msg = SocketMessage::data(EventName::new("t")?, Data::new().with("k", "v".repeat(100)));
        let frame = encode_frame(&msg, 1 << 20)?;
        let mut stream = Vec::new();
        for _ in 0..50 {
            stream.extend_from_slice(frame.as_bytes());
        }
        // A reader that returns 7 bytes at a time.
        struct Chunky(Vec<u8>, usize);
        impl AsyncRead for Chunky {
            fn poll_read(
                mut self: Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                let n = buf.len().min(7).min(self.0.len() - self.1);
                let at = self.1;
                buf[..n].copy_from_slice(&self.0[at..at + n]);
                self.1 += n;
                Poll::Ready(Ok(n))
            }
        }
        let mut r = Chunky(stream, 0);
        let mut fr = FrameReader::new(64, Limits::default());
        let mut count = 0;
        futures_lite::future::block_on(async {
            loop {
                while let Some(body) = fr.next_frame()? {
                    assert_eq!(body, frame.body());
                    count += 1;
                }
                match fr.fill(&mut r, None).await? {
                    Fill::Data => {}
                    _ => break,
                }
            }
            Ok::<_, Box<dyn std::error::Error>>(())
        })?;
        assert_eq!(count, 50);
        Ok(())
    }

    #[test]
    fn reader_rejects_bad_headers_before_allocating() {
        let mut fr = FrameReader::new(64, Limits::default());
        fr.buf[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        fr.end = 4;
        assert!(matches!(fr.next_frame(), Err(DecodeError::FrameTooLarge { .. })));
        assert_eq!(fr.buf.len(), 64);
        let mut fr = FrameReader::new(64, Limits::default());
        fr.end = 4;
        assert!(matches!(fr.next_frame(), Err(DecodeError::EmptyFrame)));
    }
}
