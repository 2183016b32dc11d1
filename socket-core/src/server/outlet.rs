//! The write half of a server connection, shared by the connection's writer
//! task and by direct writers ([`Server::send_to`](super::Server::send_to)).
//!
//! A reply to an idle connection is written by the thread that calls
//! `send_to`, without waking the engine: one non-blocking write attempt on
//! the caller's thread ([`Outlet::try_direct`]). A broadcast that completed
//! a chunk of the connection's queue writes that chunk the same way
//! ([`Outlet::try_flush`]). Everything else goes through the queue and the
//! connection's writer task.
//!
//! Rules that keep the byte stream whole and in order:
//!
//! * A direct write happens only while the writer task holds no bytes it has
//!   not written (`busy` is false), and it writes either a frame while the
//!   queue is empty (the caller's `idle` check) or the queue's first chunk.
//!   The writer task sets `busy` *before* it takes a chunk off the queue,
//!   so a frame queued earlier is never overtaken.
//! * A direct write that the stream takes only in part leaves the rest in
//!   `carry` and sets `busy`; the writer task writes the carry before
//!   anything else (it is woken through `kick`). The stall deadline applies
//!   to it there as to every write.
//! * A direct write never waits: `Pending` with nothing written declines, and
//!   the caller queues the frame as usual.
//! * Once the writer task is finishing (`retire`), no direct write happens.
//!
//! The stream is polled from the writer task and from direct writers, never
//! at once (one mutex, held for one poll).

use std::io;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use event_listener::Event;
use futures_lite::AsyncWrite;

use super::registry::ConnShared;
use crate::runtime;
use crate::transport::BoxWrite;

/// See the module documentation.
#[derive(Default)]
pub(super) struct Outlet {
    state: Mutex<State>,
    /// Notified when a carry or a flush is left for the writer task.
    kick: Event,
}

impl std::fmt::Debug for Outlet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("Outlet")
            .field("installed", &st.w.is_some())
            .field("busy", &st.busy)
            .field("retired", &st.retired)
            .field("carry", &st.carry.len())
            .finish()
    }
}

struct State {
    w: Option<BoxWrite>,
    /// The writer task holds unwritten bytes, or a carry is waiting for it.
    busy: bool,
    /// The writer task is finishing: no more direct writes.
    retired: bool,
    /// The unwritten end of a frame a direct write began.
    carry: Vec<u8>,
    /// A direct write wrote everything but its flush did not complete.
    flush_owed: bool,
}

impl State {
    /// One non-blocking write attempt of `data`: returns the bytes that went
    /// out (0: nothing, the caller queues or keeps the data). A rest, or a
    /// flush that did not complete, is left to the writer task (kicked).
    fn write_now(&mut self, data: &[u8], kick: &Event) -> usize {
        let Some(w) = self.w.as_mut() else { return 0 };
        let mut cx = Context::from_waker(Waker::noop());
        let mut written = 0;
        let mut failed = false;
        while written < data.len() {
            match Pin::new(&mut *w).poll_write(&mut cx, &data[written..]) {
                Poll::Ready(Ok(0)) => {
                    failed = true;
                    break;
                }
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(_)) => {
                    failed = true;
                    break;
                }
                Poll::Pending => break,
            }
        }
        if written == 0 {
            if failed {
                // The writer task meets the same error on the queued data and ends the connection.
                self.retired = true;
            }
            return 0;
        }
        if written < data.len() {
            self.carry.extend_from_slice(&data[written..]);
        } else {
            match Pin::new(&mut *w).poll_flush(&mut cx) {
                Poll::Ready(Ok(())) => return written,
                // Pending or failed: the writer task flushes (and meets the error, if any).
                _ => self.flush_owed = true,
            }
        }
        self.busy = true;
        kick.notify(1);
        written
    }
}

impl Default for State {
    fn default() -> Self {
        // Busy until the writer task has sent what goes first (`welcome`).
        State { w: None, busy: true, retired: false, carry: Vec::new(), flush_owed: false }
    }
}

/// What a direct write did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Direct {
    /// Not attempted or nothing went out: queue the frame as usual.
    Declined,
    /// The frame is written (or its rest is left to the writer task).
    Written,
}

/// What the writer task takes over when it starts a batch.
#[derive(Debug, Default)]
pub(super) struct Begun {
    /// The rest of a frame a direct write began: it goes first.
    pub(super) carry: Vec<u8>,
    /// The stream must be flushed.
    pub(super) flush: bool,
}

impl Outlet {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands the connection's write half over.
    pub(super) fn install(&self, w: BoxWrite) {
        self.lock().w = Some(w);
    }

    /// Takes the write half away (dropping it closes that direction).
    pub(super) fn take(&self) -> Option<BoxWrite> {
        self.lock().w.take()
    }

    /// Writes `data` (one whole frame) now, from the caller's thread, if the
    /// connection is idle: the writer task holds nothing and `idle()` (the
    /// queue is empty and the connection open) holds.
    pub(super) fn try_direct(&self, data: &[u8], idle: impl FnOnce() -> bool) -> Direct {
        // The writer task polling right now means it is busy anyway.
        let Ok(mut st) = self.state.try_lock() else { return Direct::Declined };
        if st.busy || st.retired || !idle() {
            return Direct::Declined;
        }
        match st.write_now(data, &self.kick) {
            0 => Direct::Declined,
            _ => Direct::Written,
        }
    }

    /// Writes the first chunk of `queue` now, from the caller's thread, if the
    /// writer task holds nothing (a broadcast that filled a chunk calls this,
    /// as a `BufWriter` writes a full buffer). Returns the frames and bytes
    /// that went out (a rest left to the writer task included); `None` leaves
    /// everything to the writer task.
    ///
    /// The writer task takes from the queue only between [`begin`](Self::begin)
    /// and [`end`](Self::end), and this holds the state lock from the check
    /// of `busy` to the end, so the chunk is the first thing written.
    pub(super) fn try_flush(&self, queue: &ConnShared) -> Option<(usize, usize)> {
        let Ok(mut st) = self.state.try_lock() else { return None };
        if st.busy || st.retired || st.w.is_none() {
            return None;
        }
        let lent = queue.lend()?;
        let len = lent.bytes().len();
        let written = st.write_now(lent.bytes(), &self.kick);
        // A rest left in the carry counts as sent here, as with `try_direct`.
        match queue.settle(lent, written) {
            0 => None,
            frames => Some((frames, len)),
        }
    }

    /// The writer task starts a batch: no direct write until [`end`](Self::end).
    /// Returns what a direct write left for it.
    pub(super) fn begin(&self) -> Begun {
        let mut st = self.lock();
        st.busy = true;
        Begun { carry: std::mem::take(&mut st.carry), flush: std::mem::take(&mut st.flush_owed) }
    }

    /// The writer task wrote everything it held: direct writes may go again.
    pub(super) fn end(&self) {
        self.lock().busy = false;
    }

    /// The writer task is finishing: no direct write from now on. Returns what
    /// a direct write left for it (written before the final frame).
    pub(super) fn retire(&self) -> Vec<u8> {
        let mut st = self.lock();
        st.retired = true;
        st.busy = true;
        st.flush_owed = false;
        std::mem::take(&mut st.carry)
    }

    /// Waits until a direct write leaves a carry or a flush for the writer task.
    pub(super) async fn kicked(&self) {
        runtime::wait_until(&self.kick, || self.owed()).await;
    }

    fn owed(&self) -> bool {
        let st = self.lock();
        !st.carry.is_empty() || st.flush_owed
    }

    /// The writer task's handle on the stream (locks it for each poll).
    pub(super) fn writer(&self) -> OutletWrite<'_> {
        OutletWrite(self)
    }
}

/// [`AsyncWrite`] over the shared write half; fails with `NotConnected` once taken.
pub(super) struct OutletWrite<'a>(&'a Outlet);

impl OutletWrite<'_> {
    fn poll_with<T>(&self, f: impl FnOnce(Pin<&mut BoxWrite>) -> Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match self.0.lock().w.as_mut() {
            Some(w) => f(Pin::new(w)),
            None => Poll::Ready(Err(io::Error::from(io::ErrorKind::NotConnected))),
        }
    }
}

impl AsyncWrite for OutletWrite<'_> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_with(|w| w.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_with(|w| w.poll_flush(cx))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_with(|w| w.poll_close(cx))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A stream that takes at most `room` bytes (then `Pending`), or fails.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<SinkState>>);

    #[derive(Default)]
    struct SinkState {
        room: usize,
        fail: bool,
        flush_pending: bool,
        got: Vec<u8>,
    }

    impl Sink {
        fn with_room(room: usize) -> Self {
            let s = Sink::default();
            s.0.lock().unwrap().room = room;
            s
        }
        fn got(&self) -> Vec<u8> {
            self.0.lock().unwrap().got.clone()
        }
    }

    impl AsyncWrite for Sink {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            let mut st = self.0.lock().unwrap();
            if st.fail {
                return Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe)));
            }
            let n = buf.len().min(st.room);
            if n == 0 {
                return Poll::Pending;
            }
            st.room -= n;
            st.got.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            if self.0.lock().unwrap().flush_pending {
                Poll::Pending
            } else {
                Poll::Ready(Ok(()))
            }
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn outlet(sink: &Sink) -> Outlet {
        let o = Outlet::default();
        o.install(Box::new(sink.clone()));
        o
    }

    #[test]
    fn nothing_goes_direct_before_the_writer_task_is_ready() {
        let sink = Sink::with_room(100);
        let o = outlet(&sink);
        assert_eq!(o.try_direct(b"frame", || true), Direct::Declined);
        o.end();
        assert_eq!(o.try_direct(b"frame", || false), Direct::Declined, "queue not empty");
        assert!(sink.got().is_empty());
        assert_eq!(o.try_direct(b"frame", || true), Direct::Written);
        assert_eq!(sink.got(), b"frame");
        // Still idle: the next one goes direct too.
        assert_eq!(o.try_direct(b"again", || true), Direct::Written);
        assert_eq!(sink.got(), b"frameagain");
    }

    #[test]
    fn a_partial_write_leaves_its_rest_to_the_writer_task_and_blocks_direct_writes() {
        let sink = Sink::with_room(3);
        let o = outlet(&sink);
        o.end();
        assert_eq!(o.try_direct(b"abcdef", || true), Direct::Written);
        assert_eq!(sink.got(), b"abc");
        // The rest is owed: the writer task is kicked at once.
        futures_lite::future::block_on(o.kicked());
        // Even with room again, nothing may go between the frame's two parts.
        sink.0.lock().unwrap().room = 100;
        assert_eq!(o.try_direct(b"xyz", || true), Direct::Declined, "a carry is waiting");
        assert_eq!(sink.got(), b"abc");
        let begun = o.begin();
        assert_eq!(begun.carry, b"def");
        assert!(!begun.flush);
        assert_eq!(o.try_direct(b"xyz", || true), Direct::Declined, "the writer task is busy");
        o.end();
        assert_eq!(o.try_direct(b"xyz", || true), Direct::Written);
    }

    #[test]
    fn a_blocked_stream_declines_and_a_failed_one_stops_direct_writes() {
        let sink = Sink::with_room(0);
        let o = outlet(&sink);
        o.end();
        assert_eq!(o.try_direct(b"frame", || true), Direct::Declined, "nothing went out");
        assert!(o.begin().carry.is_empty());
        o.end();
        sink.0.lock().unwrap().fail = true;
        assert_eq!(o.try_direct(b"frame", || true), Direct::Declined);
        sink.0.lock().unwrap().fail = false;
        sink.0.lock().unwrap().room = 100;
        assert_eq!(o.try_direct(b"frame", || true), Direct::Declined, "retired after the failure");
    }

    #[test]
    fn an_unfinished_flush_is_owed_to_the_writer_task() {
        let sink = Sink::with_room(100);
        sink.0.lock().unwrap().flush_pending = true;
        let o = outlet(&sink);
        o.end();
        assert_eq!(o.try_direct(b"frame", || true), Direct::Written);
        futures_lite::future::block_on(o.kicked());
        let begun = o.begin();
        assert!(begun.flush && begun.carry.is_empty());
    }

    #[test]
    fn retiring_returns_the_carry_and_ends_direct_writes() {
        let sink = Sink::with_room(2);
        let o = outlet(&sink);
        o.end();
        assert_eq!(o.try_direct(b"abcd", || true), Direct::Written);
        assert_eq!(o.retire(), b"cd");
        o.end();
        sink.0.lock().unwrap().room = 100;
        assert_eq!(o.try_direct(b"efgh", || true), Direct::Declined);
        assert!(format!("{o:?}").contains("retired: true"));
        assert!(o.take().is_some());
        assert!(o.take().is_none());
    }

    /// A connection's shared state whose outlet writes into `sink`, ready for direct writes.
    fn conn(sink: &Sink) -> Arc<ConnShared> {
        let shared = ConnShared::new(10_000, 1 << 30);
        shared.outlet.install(Box::new(sink.clone()));
        shared.outlet.end();
        shared
    }

    /// Queues frames of `len` bytes (each byte its index) until one begins a new chunk;
    /// returns the bytes queued before it (the complete first chunk).
    fn fill_a_chunk(shared: &ConnShared, len: usize) -> Vec<u8> {
        let mut first = Vec::new();
        for i in 0u8.. {
            let frame = vec![i; len];
            if shared.push(&frame).expect("room in the queue") {
                return first;
            }
            first.extend_from_slice(&frame);
        }
        unreachable!()
    }

    #[test]
    fn a_complete_chunk_goes_out_from_the_callers_thread_in_one_piece() {
        let sink = Sink::with_room(1 << 20);
        let shared = conn(&sink);
        let first = fill_a_chunk(&shared, 1000);
        assert_eq!(first.len(), 65_000, "a chunk holds whole frames, at most CHUNK bytes");
        assert_eq!(shared.outlet.try_flush(&shared), Some((65, 65_000)));
        assert_eq!(sink.got(), first);
        // The frame that began the second chunk is still queued, for the writer task.
        let mut buf = Vec::new();
        let taken = shared.take(&mut buf);
        assert_eq!((taken.frames, buf), (1, vec![65u8; 1000]));
        assert!(shared.is_idle());
    }

    #[test]
    fn a_chunk_the_stream_refuses_stays_first_in_the_queue() {
        let sink = Sink::with_room(0);
        let shared = conn(&sink);
        let first = fill_a_chunk(&shared, 1000);
        assert_eq!(shared.outlet.try_flush(&shared), None);
        let mut buf = Vec::new();
        assert_eq!(shared.take(&mut buf).frames, 65);
        assert_eq!(buf, first, "the chunk went back to the front, unchanged");
    }

    #[test]
    fn a_partly_written_chunk_leaves_its_rest_to_the_writer_task_first() {
        let sink = Sink::with_room(100);
        let shared = conn(&sink);
        let first = fill_a_chunk(&shared, 1000);
        assert_eq!(shared.outlet.try_flush(&shared), Some((65, 65_000)), "sent, its rest carried");
        assert_eq!(sink.got(), first[..100]);
        // Nothing may go between the chunk's two parts.
        sink.0.lock().unwrap().room = 1 << 20;
        assert_eq!(shared.outlet.try_flush(&shared), None, "a carry is waiting");
        assert_eq!(shared.outlet.try_direct(b"x", || true), Direct::Declined);
        futures_lite::future::block_on(shared.outlet.kicked());
        assert_eq!(shared.outlet.begin().carry, first[100..]);
    }

    #[test]
    fn no_flush_while_the_writer_task_is_busy_or_nothing_is_queued() {
        let sink = Sink::with_room(1 << 20);
        let shared = conn(&sink);
        assert_eq!(shared.outlet.try_flush(&shared), None, "nothing queued");
        fill_a_chunk(&shared, 1000);
        let _ = shared.outlet.begin();
        assert_eq!(shared.outlet.try_flush(&shared), None, "the writer task holds the stream");
        assert!(sink.got().is_empty());
        shared.outlet.end();
        assert!(shared.outlet.try_flush(&shared).is_some());
    }

    #[test]
    fn the_writer_handle_fails_once_the_stream_is_taken() {
        let sink = Sink::with_room(100);
        let o = outlet(&sink);
        let mut w = o.writer();
        futures_lite::future::block_on(async {
            use futures_lite::AsyncWriteExt;
            w.write_all(b"hi").await.unwrap();
            w.flush().await.unwrap();
            w.close().await.unwrap();
        });
        assert_eq!(sink.got(), b"hi");
        drop(o.take());
        let err =
            futures_lite::future::block_on(futures_lite::AsyncWriteExt::write(&mut o.writer(), b"x")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotConnected);
    }
}
