//! The synchronisation core of the server engine: the registry of clients,
//! the broadcast fan-out into bounded per-client queues, slow-consumer
//! removal, client removal and the offline-queue handoff to the first client.
//!
//! Everything here is synchronous and short: it never awaits and never does
//! I/O. Its mutex and atomics come from [`crate::sync`], so the same code runs
//! under loom (`cargo xtask loom`, RELIABILITY.md C1 and C2) and shuttle
//! (`cargo xtask shuttle`, C3); the models are in `server/models.rs`. The
//! connection tasks (`conn.rs`) and the lifecycle (`mod.rs`) call in here
//! and do the logging, counting and I/O around it.
//!
//! Invariants the models check:
//!
//! * A client's queue never holds more than `outbound_frames` frames, and
//!   never more than `outbound_bytes` bytes through [`ConnShared::push`]
//!   (a single larger frame is let into an empty queue); the counters return
//!   to zero once the writer took every frame ([`ConnShared::taken`]).
//! * Each broadcast reaches each client registered and open at that moment
//!   exactly once, in broadcast order, and never reaches a removed client.
//! * A broadcast that no open client took goes to the offline queue (unless
//!   a slow consumer refused it); the offline queue is handed, in order and
//!   before any live message, to the next client admitted while no open
//!   client is registered, and is then empty.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use async_channel::{Receiver, Sender};

use super::outlet::Outlet;
use super::ClientInfo;
use crate::codec::Frame;
use crate::sync::{AtomicBool, AtomicUsize, Mutex, MutexGuard, Ordering};

/// The bounds the registry enforces (from [`super::ServerOptions`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    /// Clients registered at once.
    pub(super) max_clients: usize,
    /// Frames queued per client.
    pub(super) outbound_frames: usize,
    /// Bytes queued per client.
    pub(super) outbound_bytes: usize,
    /// Offline queue length.
    pub(super) offline_frames: usize,
    /// Offline queue bytes.
    pub(super) offline_bytes: usize,
    /// New clients first get the last broadcast.
    pub(super) retain_last: bool,
}

/// Why a connection is being closed.
#[derive(Debug)]
pub(super) enum Closing {
    /// Clean stop: flush the queue, then `shutdown` to handshaken clients.
    Shutdown,
    /// Slow consumer: drop the queue, send `slow_consumer` best effort.
    SlowConsumer(Frame),
    /// Protocol violation: drop the queue, send this ERROR frame best effort.
    Fatal(Frame, String),
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// The frame or byte bound was reached: the client is a slow consumer.
    Full(&'static str),
    /// The connection is closing.
    Closed,
}

/// State shared by a connection task and the registry: the bounded
/// outbound queue (its sending half) and how the connection ends.
#[derive(Debug)]
pub(super) struct ConnShared {
    tx: Sender<Frame>,
    max_frames: usize,
    max_bytes: usize,
    /// Frames pushed and not yet taken by the writer (reserved before the push).
    queued_frames: AtomicUsize,
    /// Bytes pushed and not yet taken by the writer (reserved before the push).
    queued_bytes: AtomicUsize,
    pub(super) closing: OnceLock<Closing>,
    /// Closed to interrupt the writer.
    kill_tx: Sender<()>,
    pub(super) kill_rx: Receiver<()>,
    pub(super) handshaken: AtomicBool,
    /// `Connected` was emitted (so `Disconnected` must be).
    pub(super) announced: AtomicBool,
    /// The connection's write half, for direct writes (`outlet.rs`). The
    /// registry only holds it; it never writes.
    pub(super) outlet: Outlet,
}

impl ConnShared {
    /// A new connection's shared state and the receiving half of its queue.
    pub(super) fn new(max_frames: usize, max_bytes: usize) -> (Arc<Self>, Receiver<Frame>) {
        // Unbounded, so no slot is allocated before a frame is queued (a
        // bounded channel preallocates all of them); `push` keeps the bound.
        let (tx, rx) = async_channel::unbounded();
        let (kill_tx, kill_rx) = async_channel::bounded(1);
        let shared = ConnShared {
            tx,
            max_frames: max_frames.max(1),
            max_bytes,
            queued_frames: AtomicUsize::new(0),
            queued_bytes: AtomicUsize::new(0),
            closing: OnceLock::new(),
            kill_tx,
            kill_rx,
            handshaken: AtomicBool::new(false),
            announced: AtomicBool::new(false),
            outlet: Outlet::default(),
        };
        (Arc::new(shared), rx)
    }

    /// Queues `frame` under the frame and the byte bound (broadcasts, unicasts).
    pub(super) fn push(&self, frame: &Frame) -> Result<(), Refused> {
        self.push_with(frame.clone(), true)
    }

    /// Queues `frame` under the frame bound only (offline replay, the
    /// retained last message, the connection's own replies).
    pub(super) fn push_unmetered(&self, frame: Frame) -> Result<(), Refused> {
        self.push_with(frame, false)
    }

    fn push_with(&self, frame: Frame, check_bytes: bool) -> Result<(), Refused> {
        let len = frame.len();
        // Reserve bytes and a frame slot before pushing, each with one atomic
        // read-modify-write: concurrent pushers (the fan-out under the
        // registry lock, the connection's own replies outside it) can never
        // overshoot a bound together.
        let max_bytes = self.max_bytes;
        let bytes = self.queued_bytes.fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
            if check_bytes && q > 0 && q.saturating_add(len) > max_bytes {
                None
            } else {
                Some(q.saturating_add(len))
            }
        });
        if bytes.is_err() {
            return Err(Refused::Full("outbound queue byte limit reached"));
        }
        let max_frames = self.max_frames;
        let slot = self.queued_frames.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            if n >= max_frames {
                None
            } else {
                Some(n + 1)
            }
        });
        if slot.is_err() {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            return Err(Refused::Full("outbound queue full"));
        }
        match self.tx.try_send(frame) {
            Ok(()) => Ok(()),
            Err(_) => {
                // Closed (the queue is unbounded, so never full).
                self.release(len);
                Err(Refused::Closed)
            }
        }
    }

    /// The writer took `frame` off the queue.
    pub(super) fn taken(&self, frame: &Frame) {
        self.release(frame.len());
    }

    fn release(&self, len: usize) {
        self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
        self.queued_frames.fetch_sub(1, Ordering::AcqRel);
    }

    /// Nothing is queued and the connection is open: a direct write may go
    /// ahead of the writer task (see `outlet.rs`).
    pub(super) fn is_idle(&self) -> bool {
        self.queued_frames.load(Ordering::Acquire) == 0 && self.closing.get().is_none() && !self.tx.is_closed()
    }

    /// Frames queued and not yet taken.
    #[cfg(all(test, any(socket_loom, shuttle)))]
    pub(super) fn queued_frames(&self) -> usize {
        self.queued_frames.load(Ordering::Acquire)
    }

    /// Bytes queued and not yet taken.
    #[cfg(all(test, any(socket_loom, shuttle)))]
    pub(super) fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Acquire)
    }

    /// True once the queue is closed (the connection is ending).
    #[cfg(all(test, any(socket_loom, shuttle)))]
    pub(super) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Closes the queue only: the writer drains what is queued and ends.
    pub(super) fn close_queue(&self) {
        self.tx.close();
    }

    /// Closes the connection with `closing`; the first reason wins.
    pub(super) fn close(&self, closing: Closing) {
        let interrupt = !matches!(closing, Closing::Shutdown);
        let _ = self.closing.set(closing);
        self.tx.close();
        if interrupt {
            self.kill_tx.close();
        }
    }
}

/// A registered client.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) id: u64,
    pub(super) shared: Arc<ConnShared>,
    pub(super) info: ClientInfo,
}

/// What a fan-out did besides queueing.
#[derive(Debug, Default)]
pub(super) struct FanOut {
    /// Slow consumers removed from the registry: the caller closes them.
    pub(super) slow: Vec<(Entry, &'static str)>,
    /// The frame went to the offline queue.
    pub(super) offline: bool,
    /// Old frames dropped from the offline queue to make room.
    pub(super) dropped: u64,
}

/// The outcome of [`Registry::admit`].
#[derive(Debug)]
pub(super) enum Admission {
    /// The server is not running.
    Stopped,
    /// `max_clients` are registered.
    Full,
    /// Registered.
    Admitted(Admitted),
}

/// A newly registered client.
#[derive(Debug)]
pub(super) struct Admitted {
    pub(super) id: u64,
    pub(super) info: ClientInfo,
    pub(super) shared: Arc<ConnShared>,
    pub(super) rx: Receiver<Frame>,
    /// Offline messages handed to it.
    pub(super) replayed: usize,
    /// Offline messages that did not fit its queue (the oldest).
    pub(super) dropped: u64,
}

/// The outcome of a failed [`Registry::unicast`].
#[derive(Debug)]
pub(super) enum Unicast {
    /// No client has that id.
    NoClient,
    /// Its queue was full: removed from the registry; the caller closes it.
    Slow(Entry, &'static str),
}

/// The registry of clients and the offline queue, behind one short-held mutex.
#[derive(Debug)]
pub(super) struct Registry {
    state: Mutex<State>,
    bounds: Bounds,
}

#[derive(Debug)]
struct State {
    /// Admits clients (between `start` and `stop`).
    open: bool,
    next_id: u64,
    /// Sorted by id (ids grow).
    clients: Vec<Entry>,
    offline: VecDeque<Frame>,
    offline_bytes: usize,
    last: Option<Frame>,
}

impl Registry {
    /// An empty, closed registry.
    pub(super) fn new(bounds: Bounds) -> Self {
        let state = State {
            open: false,
            next_id: 1,
            clients: Vec::new(),
            offline: VecDeque::new(),
            offline_bytes: 0,
            last: None,
        };
        Registry { state: Mutex::new(state), bounds }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts admitting clients.
    pub(super) fn open(&self) {
        self.lock().open = true;
    }

    /// Stops admitting clients and closes every registered one with
    /// [`Closing::Shutdown`] (their writers flush what is queued).
    pub(super) fn shut(&self) {
        let mut st = self.lock();
        st.open = false;
        for c in &st.clients {
            c.shared.close(Closing::Shutdown);
        }
    }

    /// Registers a new client, handing it the offline queue if no open
    /// client is registered, then the retained last message.
    ///
    /// `info` builds its [`ClientInfo`] from the new id.
    pub(super) fn admit(&self, info: impl FnOnce(u64) -> ClientInfo) -> Admission {
        let b = &self.bounds;
        let mut st = self.lock();
        if !st.open {
            return Admission::Stopped;
        }
        if st.clients.len() >= b.max_clients {
            return Admission::Full;
        }
        let id = st.next_id;
        st.next_id += 1;
        let info = info(id);
        let (shared, rx) = ConnShared::new(b.outbound_frames, b.outbound_bytes);
        let mut replayed = 0;
        let mut dropped = 0u64;
        let mut replayed_last = false;
        // The offline queue holds broadcasts that no open client took: there
        // was none, or only leaving ones (queue closed), or, with `relay`, only
        // the sender. The next client to connect takes it, whoever else is
        // still connected.
        if !st.offline.is_empty() {
            st.offline_bytes = 0;
            let queue = std::mem::take(&mut st.offline);
            // A longer offline queue than the client's queue loses its oldest part.
            let skip = queue.len().saturating_sub(shared.max_frames);
            for (i, frame) in queue.into_iter().enumerate() {
                if i < skip {
                    dropped += 1;
                    continue;
                }
                replayed_last |= st.last.as_ref() == Some(&frame);
                match shared.push_unmetered(frame) {
                    Ok(()) => replayed += 1,
                    Err(_) => dropped += 1,
                }
            }
        }
        if b.retain_last && !replayed_last {
            if let Some(last) = st.last.clone() {
                let _ = shared.push_unmetered(last);
            }
        }
        st.clients.push(Entry { id, shared: shared.clone(), info: info.clone() });
        Admission::Admitted(Admitted { id, info, shared, rx, replayed, dropped })
    }

    /// Pushes `frame` to every registered client except `except`; to the
    /// offline queue when no open client took it and no slow consumer
    /// refused it. Slow consumers are removed and returned.
    pub(super) fn fan_out(&self, frame: &Frame, except: Option<u64>) -> FanOut {
        let mut out = FanOut::default();
        let mut st = self.lock();
        if self.bounds.retain_last {
            st.last = Some(frame.clone());
        }
        let mut taken = false;
        let mut i = 0;
        while i < st.clients.len() {
            let c = &st.clients[i];
            if Some(c.id) == except {
                i += 1;
                continue;
            }
            match c.shared.push(frame) {
                Ok(()) => {
                    taken = true;
                    i += 1;
                }
                // Leaving: it is not a recipient any more.
                Err(Refused::Closed) => i += 1,
                Err(Refused::Full(why)) => {
                    // A recipient that failed: the frame is lost with it (counted as a slow consumer).
                    taken = true;
                    out.slow.push((st.clients.remove(i), why));
                }
            }
        }
        if !taken {
            out.offline = true;
            out.dropped = self.push_offline(&mut st, frame.clone());
        }
        out
    }

    /// Appends to the offline queue, dropping the oldest over the bounds.
    fn push_offline(&self, st: &mut State, frame: Frame) -> u64 {
        let b = &self.bounds;
        st.offline_bytes += frame.len();
        st.offline.push_back(frame);
        let mut dropped = 0;
        while st.offline.len() > b.offline_frames || (st.offline_bytes > b.offline_bytes && !st.offline.is_empty()) {
            if let Some(old) = st.offline.pop_front() {
                st.offline_bytes -= old.len();
                dropped += 1;
            }
        }
        dropped
    }

    /// Pushes `frame` to client `id` only. A leaving client counts as sent.
    pub(super) fn unicast(&self, id: u64, frame: &Frame) -> Result<(), Unicast> {
        let mut st = self.lock();
        let Ok(i) = st.clients.binary_search_by_key(&id, |c| c.id) else {
            return Err(Unicast::NoClient);
        };
        match st.clients[i].shared.push(frame) {
            Ok(()) | Err(Refused::Closed) => Ok(()),
            Err(Refused::Full(why)) => Err(Unicast::Slow(st.clients.remove(i), why)),
        }
    }

    /// Client `id`'s shared state, if it is registered.
    pub(super) fn get(&self, id: u64) -> Option<Arc<ConnShared>> {
        let st = self.lock();
        let i = st.clients.binary_search_by_key(&id, |c| c.id).ok()?;
        Some(Arc::clone(&st.clients[i].shared))
    }

    /// Removes client `id` if it is still registered.
    pub(super) fn remove(&self, id: u64) -> Option<Entry> {
        let mut st = self.lock();
        let i = st.clients.binary_search_by_key(&id, |c| c.id).ok()?;
        Some(st.clients.remove(i))
    }

    /// Changes client `id`'s info; returns the new info if it is registered.
    pub(super) fn update_info(&self, id: u64, f: impl FnOnce(&mut ClientInfo)) -> Option<ClientInfo> {
        let mut st = self.lock();
        let i = st.clients.binary_search_by_key(&id, |c| c.id).ok()?;
        let info = &mut st.clients[i].info;
        f(info);
        Some(info.clone())
    }

    /// Registered clients, in order of connection.
    pub(super) fn clients(&self) -> Vec<ClientInfo> {
        self.lock().clients.iter().map(|c| c.info.clone()).collect()
    }

    /// Number of registered clients.
    pub(super) fn len(&self) -> usize {
        self.lock().clients.len()
    }

    /// Frames in the offline queue.
    pub(super) fn offline_len(&self) -> usize {
        self.lock().offline.len()
    }

    /// Empties the offline queue; returns how many frames it held.
    pub(super) fn clear_offline(&self) -> usize {
        let mut st = self.lock();
        st.offline_bytes = 0;
        let n = st.offline.len();
        st.offline.clear();
        n
    }
}
