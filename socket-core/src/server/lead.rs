//! Who reads a connection: its task on the background executor, or a thread of the
//! application waiting in [`ServerEvents::recv_blocking`](super::ServerEvents::recv_blocking)
//! (leader/follower).
//!
//! While a server has exactly one connection, and its transport gives a blocking view of
//! the accepted stream ([`Listener::accept_blocking`](crate::Listener::accept_blocking)), a
//! `recv_blocking` that finds no event asks the connection's task for the read side
//! ([`ReadSlot`]). The task hands it over where everything it read is delivered (its
//! pending read is cancel-safe), and the waiting thread then reads and takes the frames
//! apart itself, with the task's own `on_frame`, one thread at a time (the leader; other
//! threads in `recv_blocking` wait on the events as followers). A request then costs the
//! application's thread a `poll` and a `read`, where the reactor path costs a reactor round
//! on the executor's thread and a wake-up of the application's (SPEC section 7: the
//! caller's thread drives the socket).
//!
//! The task takes the read side back when the callers go quiet ([`LEASE`]), so pings are
//! answered and end-of-stream is noticed while the application does other work. A leader
//! looks at the server every [`SLICE`] and gives the side back when the connection is no
//! longer the only one (a second client was admitted: its events must not wait for this
//! one's reads), when the connection is being closed (slow consumer, protocol error, a
//! failed write) or when the server stops.
//!
//! Order and bounds: one party reads at a time and frames are taken in wire order, so the
//! events keep the stream's order. A leader takes frames only while the event buffer has
//! room and never waits for room itself (it is the one that would make room): an event
//! that finds the buffer full is held in the read side and queued first next time, by the
//! leader or by the task. The first event of a leader's read, when none is queued before it,
//! goes straight to the leader's caller instead of through the buffer.
//!
//! Not led: relay servers (the frames go on to the other clients: their reader stays the
//! task), connections still in the handshake phase, and transports without a blocking view
//! (the in-memory test transport).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use async_channel::{Receiver, RecvError, Sender, TryRecvError, TrySendError};
use futures_lite::future;

use super::conn::{Conn, Phase};
use super::ServerEvent;
use crate::codec::Frame;
use crate::handoff::{Release, Side, LEASE, SLICE};
use crate::runtime;
use crate::transport::BlockingRead;
use crate::wire::{Fill, FrameReader};

/// A connection's read side: what its reader keeps between two reads, whoever reads.
pub(super) struct Reading {
    pub(super) fr: FrameReader,
    /// The transport's blocking view of the stream, if it gives one.
    pub(super) blocking: Option<Arc<dyn BlockingRead>>,
    /// The handshake hand-off to the writer (the `Phase` of a leader, which never uses it:
    /// it leads only after the handshake phase).
    pub(super) hs_tx: Sender<Option<Frame>>,
    /// An event a leader could not queue (the buffer was full): it goes first.
    pub(super) held: Option<ServerEvent>,
    /// Thrown when the connection ended under a leader.
    ended: Arc<AtomicBool>,
}

impl Reading {
    pub(super) fn new(
        fr: FrameReader,
        blocking: Option<Arc<dyn BlockingRead>>,
        hs_tx: Sender<Option<Frame>>,
        ended: Arc<AtomicBool>,
    ) -> Self {
        Reading { fr, blocking, hs_tx, held: None, ended }
    }
}

impl Side for Reading {
    fn kill(&self) {
        self.ended.store(true, Ordering::Release);
    }
}

/// The connection a `recv_blocking` may lead: the server's only one, once it offered itself.
#[derive(Default)]
pub(super) struct Sole {
    conn: Mutex<Option<Weak<Conn>>>,
    /// Connections admitted and not yet removed.
    clients: AtomicUsize,
}

impl fmt::Debug for Sole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sole").field("clients", &self.clients.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

impl Sole {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Weak<Conn>>> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection was admitted: the one led so far, if any, is not the only one any more.
    pub(super) fn admitted(&self) {
        // Counted before the look under the lock: a connection that offers itself after
        // this look sees the new count.
        self.clients.fetch_add(1, Ordering::SeqCst);
        let was = self.lock().take();
        if let Some(conn) = was.and_then(|w| w.upgrade()) {
            conn.published.store(false, Ordering::Release);
        }
    }

    /// Connection `conn` is gone.
    pub(super) fn removed(&self, conn: &Conn) {
        self.clients.fetch_sub(1, Ordering::SeqCst);
        let mut sole = self.lock();
        if sole.as_ref().is_some_and(|w| std::ptr::eq(w.as_ptr(), conn)) {
            *sole = None;
        }
        conn.published.store(false, Ordering::Release);
    }

    /// `conn` offers itself to be led: true once it is the server's only connection and
    /// published as such.
    pub(super) fn offer(&self, conn: &Arc<Conn>) -> bool {
        if conn.published.load(Ordering::Acquire) {
            return true;
        }
        if self.clients.load(Ordering::SeqCst) != 1 {
            return false;
        }
        let mut sole = self.lock();
        if self.clients.load(Ordering::SeqCst) != 1 {
            return false;
        }
        *sole = Some(Arc::downgrade(conn));
        conn.published.store(true, Ordering::Release);
        true
    }

    /// The connection to lead, if there is one.
    pub(super) fn get(&self) -> Option<Arc<Conn>> {
        self.lock().as_ref().and_then(Weak::upgrade)
    }
}

/// What [`Conn::lead`] did.
#[derive(Debug)]
pub(super) enum Led {
    /// The calling thread read: events are there (or the buffer is full), and the first
    /// one for the caller if nothing was queued before it.
    Delivered(Option<ServerEvent>),
    /// Another party reads: wait for an event.
    Follow,
}

/// How a leader's reading ended.
enum Here {
    Delivered(Option<ServerEvent>),
    /// Nothing came for [`LEASE`], or the connection may not be led any more: the side goes
    /// back to the task.
    Quiet,
    /// The connection ended: why.
    Ended(String),
}

/// `ServerEvents::recv_blocking`: the next event, read on this thread while the server's only
/// connection can be led (`server`: the engine, unless it is gone).
pub(super) fn recv_blocking(rx: &Receiver<ServerEvent>, server: &Weak<super::Inner>) -> Result<ServerEvent, RecvError> {
    loop {
        match rx.try_recv() {
            Ok(ev) => return Ok(ev),
            Err(TryRecvError::Closed) => return Err(RecvError),
            Err(TryRecvError::Empty) => {}
        }
        // Neither the engine nor the connection is held while this thread waits: a dropped
        // server closes the events as before.
        let Some(conn) = server.upgrade().and_then(|inner| inner.sole.get()) else {
            return rx.recv_blocking();
        };
        if let Led::Delivered(direct) = conn.lead() {
            match direct {
                Some(ev) => return Ok(ev),
                None => continue,
            }
        }
        // Follow: an event, or the read side handed to the waiting threads (then lead). Looked
        // at again once listening, so a hand-over since the claim is not missed.
        let handed = conn.handed.listen();
        let parked = conn.reads.parked_for_callers();
        drop(conn);
        if parked {
            continue;
        }
        let got = runtime::block_on(future::or(async { Some(rx.recv().await) }, async {
            handed.await;
            None
        }));
        if let Some(got) = got {
            return got;
        }
    }
}

impl Conn {
    /// The task may hand its read side to a waiting thread, and this one offered itself:
    /// the handshake phase is over, nothing is closing it, and it is the only connection.
    pub(super) fn may_lend(self: &Arc<Self>, ph: &Phase<'_>, side: &Reading) -> bool {
        side.blocking.is_some() && ph.decided && ph.spoke && self.leadable() && self.inner.sole.offer(self)
    }

    /// Nothing keeps a leader from reading this connection (but being the only one).
    fn leadable(&self) -> bool {
        let inner = &*self.inner;
        !inner.opts.relay
            && inner.running.load(Ordering::Acquire)
            && inner.wants_events()
            && !self.write_done.load(Ordering::Acquire)
            && self.shared.closing.get().is_none()
    }

    /// The task parks its read side for the waiting threads and waits until it is its own
    /// again: `Err` with why when the connection ended under a leader.
    pub(super) async fn lend(&self, side: Box<Reading>) -> Result<Box<Reading>, String> {
        self.reads.hand_over(side, Instant::now());
        self.handed.notify(usize::MAX);
        let wait = |until, back| async move {
            let _ = runtime::until(Some(until), back).await;
        };
        let ended = || self.ended.load(Ordering::Acquire);
        match self.reads.take_back(Instant::now, ended, wait).await {
            Ok(side) => Ok(side),
            Err((reason, side)) => {
                if let Some(ev) = side.held {
                    let _ = self.inner.events_tx.send(ev).await;
                }
                Err(reason.unwrap_or_else(|| "connection closed".to_owned()))
            }
        }
    }

    /// A `recv_blocking` found no event: read on this thread if the read side is free for
    /// the waiting threads, ask the task for it otherwise.
    fn lead(&self) -> Led {
        let Some(mut side) = self.reads.claim() else { return Led::Follow };
        let mut last = Instant::now();
        let (led, how) = match self.read_here(&mut side, &mut last) {
            Here::Delivered(direct) => (Led::Delivered(direct), Release::Keep),
            Here::Quiet => (Led::Follow, Release::Quiet),
            Here::Ended(reason) => (Led::Follow, Release::Ended(reason)),
        };
        self.reads.release(side, last, how);
        led
    }

    /// Reads on this thread until an event is there, nothing comes for [`LEASE`], the
    /// connection may not be led any more, or it ends.
    ///
    /// `last` is when it began, and is set to when it last read (the lease counts from then):
    /// one look at the clock per read and per wait.
    fn read_here(&self, side: &mut Reading, last: &mut Instant) -> Here {
        let inner = &*self.inner;
        let Some(blocking) = side.blocking.clone() else { return Here::Quiet };
        let hs_tx = side.hs_tx.clone();
        let mut ph = Phase { hs_tx: &hs_tx, decided: true, spoke: true, held: None, leader: true, direct: None };
        // When the current wait began (a wait lasts at most a slice).
        let mut from = *last;
        loop {
            if let Some(ev) = side.held.take() {
                match inner.events_tx.try_send(ev) {
                    Ok(()) => {}
                    Err(TrySendError::Full(ev)) => {
                        side.held = Some(ev);
                        return Here::Delivered(None);
                    }
                    Err(TrySendError::Closed(_)) => return Here::Quiet,
                }
            }
            loop {
                let frame = match side.fr.next_whole_frame() {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    // The task finds the same error and closes the connection with it (after
                    // the caller took the event this read brought, if any).
                    Err(_) => return ph.direct.take().map_or(Here::Quiet, |ev| Here::Delivered(Some(ev))),
                };
                inner.counters.frames_read_by_callers.fetch_add(1, Ordering::Relaxed);
                if let Some(end) = runtime::block_on(self.on_frame(frame, &mut ph)) {
                    // (Only a first frame ends a connection in `on_frame`, and a leader never
                    // reads one: nothing can be queued after an event held here.)
                    side.held = ph.direct.take();
                    return Here::Ended(end);
                }
                if ph.held.is_some() {
                    side.held = ph.held.take();
                    return Here::Delivered(ph.direct.take());
                }
            }
            if ph.direct.is_some() || !inner.events_rx.is_empty() {
                return Here::Delivered(ph.direct.take());
            }
            if !self.leadable() || !self.published.load(Ordering::Acquire) {
                return Here::Quiet;
            }
            let frame_at = side.fr.frame_deadline(inner.opts.frame_timeout);
            let quiet_at = *last + LEASE;
            // Quiet only between frames: a frame in progress waits for its own deadline.
            let quiet = (!side.fr.in_frame()).then_some(quiet_at);
            let until = [frame_at, quiet, Some(from + SLICE)].into_iter().flatten().min();
            match side.fr.fill_blocking(&*blocking, until) {
                Ok(Fill::Data) => {
                    *last = Instant::now();
                    from = *last;
                }
                Ok(Fill::Eof) if side.fr.in_frame() => {
                    return Here::Ended("connection closed in the middle of a frame".to_owned())
                }
                Ok(Fill::Eof) => return Here::Ended("connection closed by the client".to_owned()),
                Ok(Fill::Deadline) => {
                    let now = Instant::now();
                    // A frame past its deadline: the task's own read finds it late and
                    // closes the connection with the protocol error.
                    if frame_at.is_some_and(|at| now >= at) || (now >= quiet_at && !side.fr.in_frame()) {
                        return Here::Quiet;
                    }
                    from = now;
                }
                Err(e) => return Here::Ended(format!("read failed: {e}")),
            }
        }
    }
}
