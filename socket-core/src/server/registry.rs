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
//!   to zero once the writer took every frame ([`ConnShared::take`]).
//! * Each broadcast reaches each client registered and open at that moment
//!   exactly once, in broadcast order, and never reaches a removed client.
//! * A broadcast that no open client took goes to the offline queue (unless
//!   a slow consumer refused it); the offline queue is handed, in order and
//!   before any live message, to the next client admitted while no open
//!   client is registered, and is then empty.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use async_channel::{Receiver, Sender};
use event_listener::Event;

use super::outlet::Outlet;
use super::ClientInfo;
use crate::codec::Frame;
use crate::sync::{AtomicBool, Mutex, MutexGuard};

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

/// Largest chunk of the outbound queue (a frame larger than this is a chunk
/// of its own): the writer takes one chunk and writes it with one call.
pub(super) const CHUNK: usize = 64 * 1024;

/// Smallest frame a broadcast to more than one client shares between their
/// queues instead of copying it into each (see [`ConnShared`]).
pub(super) const SHARE_MIN: usize = 1024;

/// State shared by a connection task and the registry: the bounded
/// outbound queue and how the connection ends.
///
/// The queue holds the frames' bytes, back to back, in chunks of at most
/// [`CHUNK`] bytes: a push copies the frame into the last chunk, and the
/// writer takes the first chunk whole ([`ConnShared::take`]) and writes it
/// with one call. Nothing is allocated per frame, and a chunk's storage is
/// kept for reuse.
///
/// A frame of at least [`SHARE_MIN`] bytes that a broadcast sends to more
/// than one client is instead one shared [`Frame`] that every queue holds
/// as a chunk of its own ([`ConnShared::push_shared`]): k subscribers cost
/// one copy of it, not k, while it waits. The writer copies shared frames
/// into its own buffer, as many as fit in a chunk, and writes them with one
/// call. Each queue still counts the frame's full size against its bounds.
#[derive(Debug)]
pub(super) struct ConnShared {
    queue: Mutex<Queue>,
    /// Notified when the queue gets its first frame, and when it is closed
    /// (the writer waits on it until [`has_work`](Self::has_work)).
    pub(super) ready: Event,
    max_frames: usize,
    max_bytes: usize,
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

#[derive(Debug, Default)]
struct Queue {
    chunks: VecDeque<Chunk>,
    /// Frames queued and not yet taken by the writer.
    frames: usize,
    /// Bytes queued and not yet taken by the writer.
    bytes: usize,
    /// No more pushes: the writer drains what is queued and ends.
    closed: bool,
    /// Storage of a chunk the writer is done with, for the next chunk.
    spare: Vec<u8>,
    /// Bytes of the shared frames at the back that the writer will take as one
    /// batch (at most [`CHUNK`]); 0 when the back is a copied chunk.
    run: usize,
}

/// What [`Queue::pop_batch`] moved into the caller's buffer.
struct Batch {
    frames: usize,
    len: usize,
    /// The first chunk's storage (or the caller's, swapped out), for reuse.
    storage: Vec<u8>,
}

impl Queue {
    /// Moves the first chunk into `buf` (a copied chunk is swapped in when `buf` is empty,
    /// anything else appended), then the shared frames after it while `buf` stays within a
    /// [`CHUNK`]: the batch one write sends. It still counts as queued.
    fn pop_batch(&mut self, buf: &mut Vec<u8>) -> Option<Batch> {
        let first = self.chunks.pop_front()?;
        let mut batch = Batch { frames: first.frames(), len: first.bytes().len(), storage: Vec::new() };
        match first {
            Chunk::Copied { mut bytes, .. } if buf.is_empty() => {
                std::mem::swap(buf, &mut bytes);
                batch.storage = bytes;
            }
            chunk => {
                buf.extend_from_slice(chunk.bytes());
                batch.storage = chunk.into_storage();
            }
        }
        while let Some(Chunk::Shared(next)) = self.chunks.front() {
            if buf.len() + next.len() > CHUNK {
                break;
            }
            buf.extend_from_slice(next.as_bytes());
            batch.frames += 1;
            batch.len += next.len();
            self.chunks.pop_front();
        }
        if self.chunks.is_empty() {
            self.run = 0;
        }
        Some(batch)
    }

    /// A chunk of `frames` frames and `len` bytes left the queue: it no longer
    /// counts, and `storage` (its buffer, or the one swapped for it) is kept
    /// for the next chunk unless a large frame made it large. Returns `frames`.
    fn release(&mut self, frames: usize, len: usize, mut storage: Vec<u8>) -> usize {
        self.frames -= frames;
        self.bytes -= len;
        storage.clear();
        if storage.capacity() <= CHUNK && storage.capacity() > self.spare.capacity() {
            self.spare = storage;
        }
        frames
    }
}

#[derive(Debug)]
enum Chunk {
    /// Frames copied back to back.
    Copied { bytes: Vec<u8>, frames: usize },
    /// One frame that other queues hold too.
    Shared(Frame),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Copied { bytes, .. } => bytes,
            Chunk::Shared(frame) => frame.as_bytes(),
        }
    }

    fn frames(&self) -> usize {
        match self {
            Chunk::Copied { frames, .. } => *frames,
            Chunk::Shared(_) => 1,
        }
    }

    /// The storage to keep for the next chunk, if any.
    fn into_storage(self) -> Vec<u8> {
        match self {
            Chunk::Copied { bytes, .. } => bytes,
            Chunk::Shared(_) => Vec::new(),
        }
    }
}

/// A chunk lent to a direct writer ([`ConnShared::lend`]).
#[derive(Debug)]
pub(super) struct Lent(Chunk);

impl Lent {
    pub(super) fn bytes(&self) -> &[u8] {
        self.0.bytes()
    }
}

/// What [`ConnShared::take`] took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Taken {
    /// Frames taken (whole frames, in order).
    pub(super) frames: usize,
    /// The queue is closed and now empty: the writer ends.
    pub(super) closed: bool,
}

impl ConnShared {
    /// A new connection's shared state.
    pub(super) fn new(max_frames: usize, max_bytes: usize) -> Arc<Self> {
        let (kill_tx, kill_rx) = async_channel::bounded(1);
        Arc::new(ConnShared {
            // Empty: nothing is allocated before a frame is queued.
            queue: Mutex::new(Queue::default()),
            ready: Event::new(),
            max_frames: max_frames.max(1),
            max_bytes,
            closing: OnceLock::new(),
            kill_tx,
            kill_rx,
            handshaken: AtomicBool::new(false),
            announced: AtomicBool::new(false),
            outlet: Outlet::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `frame` under the frame and the byte bound (broadcasts, unicasts).
    /// Returns true when the frame began a new chunk: the one before is
    /// complete, and the caller may write it itself ([`Outlet::try_flush`]).
    pub(super) fn push(&self, frame: &[u8]) -> Result<bool, Refused> {
        self.push_with(frame, None, true)
    }

    /// [`push`](Self::push) of a frame other queues hold too: it is queued as
    /// a chunk of its own, not copied.
    pub(super) fn push_shared(&self, frame: &Frame) -> Result<bool, Refused> {
        self.push_with(frame.as_bytes(), Some(frame), true)
    }

    /// Queues `frame` under the frame bound only (offline replay, the
    /// retained last message, the connection's own replies).
    pub(super) fn push_unmetered(&self, frame: &[u8]) -> Result<(), Refused> {
        self.push_with(frame, None, false).map(drop)
    }

    fn push_with(&self, frame: &[u8], shared: Option<&Frame>, check_bytes: bool) -> Result<bool, Refused> {
        let len = frame.len();
        let mut q = self.lock();
        if q.closed {
            return Err(Refused::Closed);
        }
        // A single larger frame is let into an empty queue.
        if check_bytes && q.bytes > 0 && q.bytes.saturating_add(len) > self.max_bytes {
            return Err(Refused::Full("outbound queue byte limit reached"));
        }
        if q.frames >= self.max_frames {
            return Err(Refused::Full("outbound queue full"));
        }
        let first = q.frames == 0;
        q.frames += 1;
        q.bytes = q.bytes.saturating_add(len);
        let full = match (q.chunks.back_mut(), shared) {
            (back, Some(shared)) => {
                // Shared frames make a batch as a chunk does: complete when the next would not fit.
                let full = back.is_some() && (q.run == 0 || q.run + len > CHUNK);
                q.run = if full || q.run == 0 { len } else { q.run + len };
                q.chunks.push_back(Chunk::Shared(shared.clone()));
                full
            }
            (Some(Chunk::Copied { bytes, frames }), None) if bytes.len() + len <= CHUNK => {
                bytes.extend_from_slice(frame);
                *frames += 1;
                false
            }
            (back, None) => {
                let full = back.is_some();
                q.run = 0;
                let mut bytes = std::mem::take(&mut q.spare);
                if full {
                    // A burst fills chunks: allocate this one whole instead of growing it
                    // by doubling (each step a copy). An idle connection's first chunk stays small.
                    bytes.reserve(CHUNK.max(len));
                }
                bytes.extend_from_slice(frame);
                q.chunks.push_back(Chunk::Copied { bytes, frames: 1 });
                full
            }
        };
        drop(q);
        if first {
            // The writer looks at the queue again after it starts listening,
            // so only the first frame of a burst needs to wake it.
            self.ready.notify(1);
        }
        Ok(full)
    }

    /// The writer takes the first chunk: into `buf` when `buf` is empty (its
    /// storage comes back as the next chunk's), else appended to it. Shared
    /// frames are copied, and the ones that follow too while `buf` stays
    /// within a chunk.
    pub(super) fn take(&self, buf: &mut Vec<u8>) -> Taken {
        let mut q = self.lock();
        match q.pop_batch(buf) {
            Some(b) => Taken { frames: q.release(b.frames, b.len, b.storage), closed: false },
            None => Taken { frames: 0, closed: q.closed },
        }
    }

    /// Lends the first chunk to a direct writer ([`Outlet::try_flush`]): it
    /// stays counted as queued until [`settle`](Self::settle).
    /// Shared frames at the front are lent as one copied chunk of at most
    /// [`CHUNK`] bytes (the batch [`take`](Self::take) would write).
    pub(super) fn lend(&self) -> Option<Lent> {
        let mut q = self.lock();
        if let Chunk::Shared(_) = q.chunks.front()? {
            let mut bytes = std::mem::take(&mut q.spare);
            let batch = q.pop_batch(&mut bytes)?;
            return Some(Lent(Chunk::Copied { bytes, frames: batch.frames }));
        }
        q.chunks.pop_front().map(Lent)
    }

    /// Ends a loan: `written` bytes went out (the writer task writes the rest
    /// of a partly written chunk from the outlet's carry), or, with 0, the
    /// chunk goes back to the front of the queue. Returns the frames sent.
    pub(super) fn settle(&self, lent: Lent, written: usize) -> usize {
        let Lent(chunk) = lent;
        let mut q = self.lock();
        if written == 0 {
            q.chunks.push_front(chunk);
            drop(q);
            // The loan may have left the queue empty to a writer that looked then and now
            // waits: a push during the loan did not wake it (the frames were still counted).
            self.ready.notify(1);
            return 0;
        }
        let (len, frames) = (chunk.bytes().len(), chunk.frames());
        q.release(frames, len, chunk.into_storage())
    }

    /// A frame is queued or the queue is closed: the writer has something to do.
    pub(super) fn has_work(&self) -> bool {
        let q = self.lock();
        !q.chunks.is_empty() || q.closed
    }

    /// Nothing is queued and the connection is open: a direct write may go
    /// ahead of the writer task (see `outlet.rs`).
    pub(super) fn is_idle(&self) -> bool {
        let q = self.lock();
        q.frames == 0 && !q.closed && self.closing.get().is_none()
    }

    /// Frames queued and not yet taken.
    #[cfg(all(test, any(socket_loom, shuttle)))]
    pub(super) fn queued_frames(&self) -> usize {
        self.lock().frames
    }

    /// Bytes queued and not yet taken.
    #[cfg(all(test, any(socket_loom, shuttle)))]
    pub(super) fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// True once the queue is closed (the connection is ending).
    #[cfg(all(test, any(socket_loom, shuttle)))]
    pub(super) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Closes the queue only: the writer drains what is queued and ends.
    pub(super) fn close_queue(&self) {
        self.lock().closed = true;
        self.ready.notify(usize::MAX);
    }

    /// Closes the connection with `closing`; the first reason wins.
    pub(super) fn close(&self, closing: Closing) {
        let interrupt = !matches!(closing, Closing::Shutdown);
        let _ = self.closing.set(closing);
        self.close_queue();
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
    /// Clients whose queue has a complete chunk since this frame: the caller
    /// may write it from its own thread, outside the registry lock.
    pub(super) full: Vec<Arc<ConnShared>>,
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
        let shared = ConnShared::new(b.outbound_frames, b.outbound_bytes);
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
                match shared.push_unmetered(frame.as_bytes()) {
                    Ok(()) => replayed += 1,
                    Err(_) => dropped += 1,
                }
            }
        }
        if b.retain_last && !replayed_last {
            if let Some(last) = st.last.clone() {
                let _ = shared.push_unmetered(last.as_bytes());
            }
        }
        st.clients.push(Entry { id, shared: shared.clone(), info: info.clone() });
        Admission::Admitted(Admitted { id, info, shared, replayed, dropped })
    }

    /// Pushes `frame` to every registered client except `except`; to the
    /// offline queue when no open client took it and no slow consumer
    /// refused it. Slow consumers are removed and returned.
    pub(super) fn fan_out(&self, frame: &[u8], except: Option<u64>) -> FanOut {
        let mut out = FanOut::default();
        let mut st = self.lock();
        // Two or more recipients share a large frame instead of each copying it.
        let excluded = except.is_some_and(|id| st.clients.binary_search_by_key(&id, |c| c.id).is_ok());
        let recipients = st.clients.len() - usize::from(excluded);
        let shared = (recipients > 1 && frame.len() >= SHARE_MIN).then(|| Frame::copy_of(frame));
        if self.bounds.retain_last {
            // The same copy as the queues', when they share one.
            st.last = Some(shared.clone().unwrap_or_else(|| Frame::copy_of(frame)));
        }
        let mut taken = false;
        let mut i = 0;
        while i < st.clients.len() {
            let c = &st.clients[i];
            if Some(c.id) == except {
                i += 1;
                continue;
            }
            let pushed = match &shared {
                Some(f) => c.shared.push_shared(f),
                None => c.shared.push(frame),
            };
            match pushed {
                Ok(full) => {
                    if full {
                        out.full.push(Arc::clone(&c.shared));
                    }
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
            out.dropped = self.push_offline(&mut st, Frame::copy_of(frame));
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
        match st.clients[i].shared.push(frame.as_bytes()) {
            Ok(_) | Err(Refused::Closed) => Ok(()),
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

#[cfg(all(test, not(any(socket_loom, shuttle))))]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// One step on one connection's queue.
    #[derive(Debug, Clone)]
    enum Step {
        /// Queue a frame of this length, copied or shared.
        Push { len: usize, shared: bool },
        /// The writer task takes a batch.
        Take,
        /// A direct writer borrows the first batch; `written` 0 gives it back.
        Lend { written: usize },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (1usize..9000, any::<bool>()).prop_map(|(len, shared)| Step::Push { len, shared }),
            1 => Just(Step::Take),
            1 => (0usize..3).prop_map(|written| Step::Lend { written }),
        ]
    }

    /// Frame `n` of `len` bytes: every byte says which frame it belongs to.
    fn frame(n: usize, len: usize) -> Vec<u8> {
        vec![(n % 251) as u8; len]
    }

    proptest! {
        /// Copied and shared frames leave the queue whole, once and in order, through the writer's
        /// batches and direct writers' loans alike; a batch never exceeds a chunk unless one
        /// frame does; and the counters return to zero.
        #[test]
        fn copied_and_shared_frames_leave_in_order(steps in proptest::collection::vec(step(), 1..200)) {
            let q = ConnShared::new(usize::MAX, usize::MAX);
            let (mut sent, mut out, mut n) = (Vec::new(), Vec::new(), 0usize);
            let mut buf = Vec::new();
            for s in steps.iter().chain(std::iter::once(&Step::Take)) {
                match *s {
                    Step::Push { len, shared } => {
                        let f = frame(n, len);
                        n += 1;
                        if shared {
                            q.push_shared(&Frame::copy_of(&f)).unwrap();
                        } else {
                            q.push(&f).unwrap();
                        }
                        sent.extend_from_slice(&f);
                    }
                    Step::Take => {
                        buf.clear();
                        q.take(&mut buf);
                        prop_assert!(buf.len() <= CHUNK.max(9000), "a batch of {} bytes", buf.len());
                        out.extend_from_slice(&buf);
                    }
                    Step::Lend { written } => {
                        if let Some(lent) = q.lend() {
                            let len = lent.bytes().len();
                            prop_assert!(len <= CHUNK.max(9000), "a loan of {len} bytes");
                            if written > 0 {
                                // What the stream did not take goes out next, from the outlet's carry.
                                out.extend_from_slice(lent.bytes());
                                q.settle(lent, written.min(len));
                            } else {
                                q.settle(lent, 0);
                            }
                        }
                    }
                }
            }
            while { buf.clear(); q.take(&mut buf).frames > 0 } {
                out.extend_from_slice(&buf);
            }
            prop_assert!(out == sent, "{} bytes out, {} sent", out.len(), sent.len());
            let st = q.lock();
            prop_assert_eq!((st.frames, st.bytes), (0, 0));
        }
    }

    /// A loan that emptied the queue and comes back unwritten wakes the writer, which looked
    /// at the queue during the loan and found it empty (a lost wake-up: the harness's subscribers
    /// then waited for the last frames until their timeout).
    #[test]
    fn an_unwritten_loan_wakes_a_writer_that_found_the_queue_empty() {
        let q = ConnShared::new(100, 1 << 20);
        q.push_shared(&Frame::copy_of(&[1u8; SHARE_MIN])).unwrap();
        q.push_shared(&Frame::copy_of(&[2u8; SHARE_MIN])).unwrap();
        let lent = q.lend().expect("a loan");
        assert_eq!(lent.bytes().len(), 2 * SHARE_MIN, "both shared frames are one batch");
        // The writer looks now: nothing to take, so it listens.
        assert!(!q.has_work());
        let mut listener = q.ready.listen();
        // A push during the loan is not the first frame: it wakes nobody.
        q.push_shared(&Frame::copy_of(&[3u8; SHARE_MIN])).unwrap();
        assert!(futures_lite::future::block_on(futures_lite::future::poll_once(&mut listener)).is_none());
        q.settle(lent, 0);
        assert!(
            futures_lite::future::block_on(futures_lite::future::poll_once(&mut listener)).is_some(),
            "the writer was not woken"
        );
        let mut buf = Vec::new();
        assert_eq!(q.take(&mut buf).frames, 3);
        assert_eq!(buf, [[1u8; SHARE_MIN], [2u8; SHARE_MIN], [3u8; SHARE_MIN]].concat());
    }

    /// A large frame to several clients is one allocation that their queues share; a small
    /// one, or a large one to a single client, is copied into each queue's chunk.
    #[test]
    fn a_broadcast_shares_large_frames_between_recipients() {
        let reg = Registry::new(Bounds {
            max_clients: 3,
            outbound_frames: 100,
            outbound_bytes: 1 << 20,
            offline_frames: 8,
            offline_bytes: 1 << 20,
            retain_last: false,
        });
        reg.open();
        let mut admitted = Vec::new();
        for _ in 0..2 {
            match reg.admit(ClientInfo::bare) {
                Admission::Admitted(a) => admitted.push(a),
                other => panic!("expected an admission, got {other:?}"),
            }
        }
        let big = vec![7u8; SHARE_MIN];
        let small = vec![8u8; SHARE_MIN - 1];
        reg.fan_out(&big, None);
        reg.fan_out(&small, None);
        let shared_with = |a: &Admitted| {
            let q = a.shared.lock();
            q.chunks.iter().filter(|c| matches!(c, Chunk::Shared(_))).count()
        };
        assert_eq!(shared_with(&admitted[0]), 1);
        assert_eq!(shared_with(&admitted[1]), 1);
        // The one shared frame: two queues hold it, nothing else does.
        let strong = match admitted[0].shared.lock().chunks.front() {
            Some(Chunk::Shared(f)) => f.strong_count(),
            other => panic!("expected a shared frame first, got {other:?}"),
        };
        assert_eq!(strong, 2);
        // Sent to one client only (the other excluded): copied.
        reg.fan_out(&big, Some(admitted[1].id));
        assert_eq!(shared_with(&admitted[0]), 1, "a frame to one recipient is copied");
        for a in &admitted {
            let mut buf = Vec::new();
            while a.shared.take(&mut buf).frames > 0 {}
            let want: Vec<u8> = if a.id == admitted[0].id {
                [&big[..], &small[..], &big[..]].concat()
            } else {
                [&big[..], &small[..]].concat()
            };
            assert!(buf == want, "client {} got {} bytes", a.id, buf.len());
        }
    }
}
