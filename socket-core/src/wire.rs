//! Frame I/O shared by the server and the client engines: a zero-copy frame
//! reader with a frame-completion deadline, and a write loop with a stall
//! deadline that can be interrupted.
//!
//! It sits beside `codec`, not inside it: the codec is pure (bytes in,
//! values out, no I/O and no clock), while this module drives an
//! `AsyncRead`/`AsyncWrite` against the runtime's deadlines.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_lite::future::poll_fn;
use futures_lite::{AsyncRead, AsyncWrite};

use crate::codec::{DecodeError, FrameDecoder, Limits, HEADER_LEN};
use crate::runtime::Deadline;
use crate::transport::BlockingRead;

/// Largest read size a busy stream grows to (unless `buffer_size` is larger).
const MAX_READ: usize = 64 << 10;

/// Reads frames from an async stream into a [`FrameDecoder`] (directly into
/// its buffer, no copy) and tracks the frame-completion deadline.
///
/// The framing itself (length checks before allocating, the bounded buffer)
/// is the codec's: there is one frame reader in the codebase.
#[derive(Debug)]
pub(crate) struct FrameReader {
    dec: FrameDecoder,
    /// Bytes asked for per read at first and when traffic is light (`buffer_size`).
    read_size: usize,
    /// Bytes asked for per read now: doubles while reads fill it (a busy
    /// stream), up to [`MAX_READ`], and halves back when they come back small.
    cur_read: usize,
    frame_started: Option<Instant>,
    /// The deadline of the pending read, kept between reads.
    deadline: Option<Deadline>,
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
        FrameReader {
            dec: FrameDecoder::new(limits),
            read_size: buffer_size.clamp(64, 1 << 20),
            cur_read: buffer_size.clamp(64, 1 << 20),
            frame_started: None,
            deadline: None,
        }
    }

    /// Bytes buffered and not yet returned as frames.
    pub(crate) fn buffered(&self) -> usize {
        self.dec.buffered()
    }

    /// True while part of a frame is buffered.
    pub(crate) fn in_frame(&self) -> bool {
        self.dec.in_frame()
    }

    /// The next complete frame body, if one is buffered.
    ///
    /// The slice stays valid until the next `&mut self` call.
    pub(crate) fn next_frame(&mut self) -> Result<Option<&[u8]>, DecodeError> {
        Ok(self.next_whole_frame()?.map(|frame| &frame[HEADER_LEN..]))
    }

    /// The next complete frame with its length header (see [`next_frame`](Self::next_frame)).
    pub(crate) fn next_whole_frame(&mut self) -> Result<Option<&[u8]>, DecodeError> {
        let frame = self.dec.next_whole_frame()?;
        if frame.is_some() {
            self.frame_started = None;
        }
        Ok(frame)
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

    /// Adjusts the read size after a read of `n` of `want` bytes.
    fn adapt(&mut self, n: usize, want: usize) {
        let max = self.read_size.max(MAX_READ);
        if n >= want && self.cur_read < max {
            self.cur_read = (self.cur_read * 2).min(max);
        } else if n < self.cur_read / 4 && self.cur_read > self.read_size {
            self.cur_read = (self.cur_read / 2).max(self.read_size);
        }
    }

    /// Reads once from `r`; gives up with [`Fill::Deadline`] at `deadline` (if any).
    pub(crate) async fn fill<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        r: &mut R,
        deadline: Option<Instant>,
    ) -> io::Result<Fill> {
        // Read at least the rest of the frame in progress when it is larger than one read.
        // (`needed` is bounded by the frame limit: the header was checked before it counts.)
        let want = self.dec.needed().unwrap_or(0).max(self.cur_read);
        let FrameReader { dec, deadline: dl, .. } = self;
        let target = dec.spare(want);
        let res = poll_fn(|cx| loop {
            match Pin::new(&mut *r).poll_read(cx, target) {
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Poll::Ready(res) => return Poll::Ready(res.map(Some)),
                Poll::Pending => {
                    match deadline {
                        Some(at) => {
                            let d = dl.get_or_insert_with(|| Deadline::at(at));
                            d.set_at(at);
                            if Pin::new(d).poll(cx).is_ready() {
                                *dl = None;
                                return Poll::Ready(Ok(None));
                            }
                        }
                        None => *dl = None,
                    }
                    return Poll::Pending;
                }
            }
        })
        .await;
        self.settle(res, want)
    }

    /// Commits what a read of at most `want` bytes got (`Ok(None)`: nothing before the
    /// deadline) and says what it was.
    fn settle(&mut self, res: io::Result<Option<usize>>, want: usize) -> io::Result<Fill> {
        let n = match res {
            Ok(Some(n)) => n,
            Ok(None) | Err(_) => 0,
        };
        self.dec.commit(n);
        Ok(match res? {
            None => Fill::Deadline,
            Some(0) => Fill::Eof,
            Some(n) => {
                self.adapt(n, want);
                Fill::Data
            }
        })
    }

    /// [`fill`](Self::fill) on a blocking read half, waiting on the calling thread.
    pub(crate) fn fill_blocking(&mut self, r: &dyn BlockingRead, deadline: Option<Instant>) -> io::Result<Fill> {
        let want = self.dec.needed().unwrap_or(0).max(self.cur_read);
        let res = loop {
            match r.read_until(self.dec.spare(want), deadline) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                res => break res,
            }
        };
        self.settle(res, want)
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
    /// `None` while armed: the stall timeout cannot be represented (no limit).
    deadline: Option<Deadline>,
    armed: bool,
}

impl StallTimer {
    pub(crate) fn new() -> Self {
        StallTimer { deadline: None, armed: false }
    }

    /// Progress was made: the next stall is timed from scratch.
    fn disarm(&mut self) {
        self.armed = false;
        self.deadline = None;
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
    st.disarm();
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
                if st.armed {
                    st.disarm();
                }
            }
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(WriteFail::Io(e))),
            Poll::Pending => {
                if interrupt.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(WriteFail::Interrupted { written }));
                }
                if !st.armed {
                    st.deadline = Instant::now().checked_add(stall).map(Deadline::at);
                    st.armed = true;
                }
                if let Some(d) = &mut st.deadline {
                    if Pin::new(d).poll(cx).is_ready() {
                        st.armed = false;
                        st.deadline = None;
                        return Poll::Ready(Err(WriteFail::Stalled));
                    }
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
    fn read_size_grows_on_a_busy_stream_and_shrinks_back() -> Result<(), Box<dyn std::error::Error>> {
        // A stream that always has as many bytes as asked for, then only a few.
        struct Source(usize);
        impl AsyncRead for Source {
            fn poll_read(
                self: Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                let n = buf.len().min(self.0);
                buf[..n].fill(0);
                Poll::Ready(Ok(n))
            }
        }
        let mut fr = FrameReader::new(4096, Limits::default());
        let mut busy = Source(usize::MAX);
        futures_lite::future::block_on(async {
            for _ in 0..8 {
                fr.fill(&mut busy, None).await?;
                // Drop what was read: only the read sizes matter here.
                fr.dec = FrameDecoder::new(Limits::default());
            }
            assert_eq!(fr.cur_read, MAX_READ);
            let mut trickle = Source(100);
            for _ in 0..8 {
                fr.fill(&mut trickle, None).await?;
                fr.dec = FrameDecoder::new(Limits::default());
            }
            assert_eq!(fr.cur_read, 4096);
            Ok::<_, Box<dyn std::error::Error>>(())
        })
    }

    #[test]
    fn reader_rejects_bad_headers_before_allocating() -> Result<(), Box<dyn std::error::Error>> {
        for (header, too_large) in [(u32::MAX.to_be_bytes(), true), (0u32.to_be_bytes(), false)] {
            let mut fr = FrameReader::new(64, Limits::default());
            let mut r: &[u8] = &header;
            let fill = futures_lite::future::block_on(fr.fill(&mut r, None))?;
            assert!(matches!(fill, Fill::Data));
            let err = fr.next_frame().err();
            if too_large {
                assert!(matches!(err, Some(DecodeError::FrameTooLarge { .. })), "{err:?}");
            } else {
                assert!(matches!(err, Some(DecodeError::EmptyFrame)), "{err:?}");
            }
            // Only the read buffer was allocated, never the announced body.
            assert!(fr.dec.capacity() < 1024, "capacity {}", fr.dec.capacity());
        }
        Ok(())
    }
}
