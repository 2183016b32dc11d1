//! What the application hears: [`ServerEvent`], the [`ServerEvents`] stream, and the
//! bounded event buffer behind it ([`EventQueue`]; lossy in relay mode).

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use async_channel::{Receiver, Sender, TrySendError};

use super::{ClientId, ClientInfo, Inner};
use crate::message::SocketMessage;
use crate::runtime;

/// Something that happened on a server.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A client connected: sent once its `hello` arrived or `hello_grace`
    /// ended. A `hello` arriving later (as the connection's first frame)
    /// still gets `welcome`; [`Server::clients`](super::Server::clients) then shows the client
    /// handshaken, but no second event is sent.
    Connected(ClientInfo),
    /// A client disconnected.
    Disconnected {
        /// Who.
        id: ClientId,
        /// Why, in words.
        reason: String,
    },
    /// A client sent a message (never protocol control).
    Message {
        /// Who sent it.
        from: ClientId,
        /// The message.
        message: SocketMessage,
    },
    /// `count` events were dropped before this one because the application did
    /// not take them in time (relay mode only: there, delivery to the other
    /// clients never waits for the event stream; the oldest events go first).
    /// Also counted in [`ServerStats::events_dropped`](super::ServerStats::events_dropped).
    EventsDropped {
        /// Events dropped since the last `EventsDropped`.
        count: u64,
    },
}

/// The events of one server (see [`Server::events`](super::Server::events)): an async [`Stream`](futures_lite::Stream)
/// of [`ServerEvent`]s that is [`Unpin`], and, through [`Deref`](std::ops::Deref), the
/// [`async_channel::Receiver`] it wraps (`recv`, `recv_blocking`, `try_recv`, `len`, ...).
///
/// `async_channel::Receiver` itself is `!Unpin`, so `next()` on it needs pinning first; this
/// wrapper keeps the receiver pinned on the heap so that user code never has to. Clones are
/// further receivers of the same events: each event goes to one of them.
///
/// # Examples
///
/// ```
/// # async fn demo(server: &socket_core::Server) {
/// use futures_lite::StreamExt;
/// use socket_core::ServerEvent;
///
/// let mut events = server.events();
/// while let Some(event) = events.next().await {
///     if let ServerEvent::Connected(info) = event {
///         println!("{} connected", info.id);
///     }
/// }
/// // Or blocking, from a thread, through the receiver's own methods:
/// let events = server.events();
/// while let Ok(event) = events.recv_blocking() {
///     println!("{event:?}");
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ServerEvents {
    receiver: std::pin::Pin<Box<Receiver<ServerEvent>>>,
    /// The engine, for [`recv_blocking`](Self::recv_blocking) to read on the caller's thread.
    server: Weak<Inner>,
}

impl ServerEvents {
    pub(super) fn new(receiver: Receiver<ServerEvent>, server: Weak<Inner>) -> Self {
        ServerEvents { receiver: Box::pin(receiver), server }
    }

    /// Waits for the next event, blocking the calling thread; `Err` once the server is gone
    /// and every event was taken. The same as the receiver's own
    /// [`recv_blocking`](async_channel::Receiver::recv_blocking), and faster for a request
    /// and its answer: while the server has one connection (and its transport gives a
    /// blocking view of it, as the Unix and TCP transports do), the calling thread reads
    /// that connection itself instead of waiting for the engine's thread to read it and
    /// wake this one (`docs/architecture.md`, caller-driven reads).
    ///
    /// # Errors
    ///
    /// [`RecvError`](async_channel::RecvError) when the channel is closed and empty.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn demo(server: &socket_core::Server) {
    /// let events = server.events();
    /// while let Ok(event) = events.recv_blocking() {
    ///     println!("{event:?}");
    /// }
    /// # }
    /// ```
    pub fn recv_blocking(&self) -> Result<ServerEvent, async_channel::RecvError> {
        super::lead::recv_blocking(&self.receiver, &self.server)
    }

    /// The channel receiver, for code that stores or passes an
    /// `async_channel::Receiver<ServerEvent>` (what [`Server::events`](super::Server::events) returned before it
    /// returned this type). It receives the same events.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn demo(server: &socket_core::Server) {
    /// let receiver: async_channel::Receiver<socket_core::ServerEvent> = server.events().into_receiver();
    /// assert!(!receiver.is_closed());
    /// # }
    /// ```
    pub fn into_receiver(self) -> Receiver<ServerEvent> {
        // A clone is one more receiver of the channel; dropping `self` removes one.
        Receiver::clone(&self.receiver)
    }
}

impl std::ops::Deref for ServerEvents {
    type Target = Receiver<ServerEvent>;

    fn deref(&self) -> &Receiver<ServerEvent> {
        &self.receiver
    }
}

impl From<ServerEvents> for Receiver<ServerEvent> {
    fn from(events: ServerEvents) -> Self {
        events.into_receiver()
    }
}

impl futures_lite::Stream for ServerEvents {
    type Item = ServerEvent;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<ServerEvent>> {
        self.receiver.as_mut().poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.receiver.size_hint()
    }
}

// `Server::events` promises `Stream + Unpin + Send + Sync`: keep it so (a compile error here,
// not in users' code).
const _: fn() = || {
    pub(super) fn promised<T: futures_lite::Stream + Unpin + Send + Sync + 'static>() {}
    promised::<ServerEvents>();
};

/// The server's event buffer: at most `cap` events, and memory only for the events it
/// holds (an unbounded channel whose length is checked), never all of `cap` up front.
#[derive(Debug, Clone)]
pub(super) struct EventQueue {
    pub(super) tx: Sender<ServerEvent>,
    pub(super) cap: usize,
}

/// Longest pause between two looks at a full event buffer.
const EVENT_QUEUE_MAX_PAUSE: Duration = Duration::from_millis(20);

impl EventQueue {
    /// Events that fit before the buffer is full.
    pub(super) fn room(&self) -> usize {
        self.cap.saturating_sub(self.tx.len())
    }

    /// Sends `ev` now if there is room.
    pub(super) fn try_send(&self, ev: ServerEvent) -> std::result::Result<(), TrySendError<ServerEvent>> {
        if self.tx.is_closed() {
            return Err(TrySendError::Closed(ev));
        }
        if self.room() == 0 {
            return Err(TrySendError::Full(ev));
        }
        self.tx.try_send(ev)
    }

    /// Sends `ev` once there is room (back-pressure on the caller, the connection reading
    /// from one client). The channel cannot say when the application takes an event, so a
    /// full buffer is looked at again after a pause that grows from 1 ms to 20 ms; the pause
    /// only happens while the application is behind.
    pub(super) async fn send(&self, ev: ServerEvent) -> std::result::Result<(), async_channel::SendError<ServerEvent>> {
        let mut ev = ev;
        let mut pause = Duration::from_millis(1);
        loop {
            match self.try_send(ev) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(back)) => return Err(async_channel::SendError(back)),
                Err(TrySendError::Full(back)) => {
                    ev = back;
                    runtime::sleep(pause).await;
                    pause = (pause * 2).min(EVENT_QUEUE_MAX_PAUSE);
                }
            }
        }
    }
}

impl Inner {
    /// Delivers an event without ever waiting (relay mode: delivery to the
    /// other clients must not wait for the application). A full buffer loses
    /// its oldest events; an [`ServerEvent::EventsDropped`](super::ServerEvent::EventsDropped) ahead of the new
    /// event says how many.
    pub(super) fn emit_lossy(&self, ev: ServerEvent) {
        let mut unreported = self.events_unreported.lock().unwrap_or_else(|e| e.into_inner());
        let need = if *unreported > 0 { 2 } else { 1 };
        while self.events_tx.room() < need.min(self.events_tx.cap) {
            match self.events_rx.try_recv() {
                Ok(ServerEvent::EventsDropped { count }) => *unreported += count,
                Ok(_) => {
                    *unreported += 1;
                    self.counters.events_dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => break,
            }
        }
        if *unreported > 0 && self.events_tx.try_send(ServerEvent::EventsDropped { count: *unreported }).is_ok() {
            *unreported = 0;
        }
        if let Err(TrySendError::Full(_)) = self.events_tx.try_send(ev) {
            *unreported += 1;
            self.counters.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Delivers a connect/disconnect event without waiting (a full buffer
    /// hands it to a short-lived task so order is kept for the reader).
    pub(super) fn emit(&self, ev: ServerEvent) {
        if !self.wants_events() {
            return;
        }
        if self.lossy_events() {
            self.emit_lossy(ev);
            return;
        }
        match self.events_tx.try_send(ev) {
            Ok(()) => {}
            Err(TrySendError::Full(ev)) => {
                let tx = self.events_tx.clone();
                runtime::spawn(async move {
                    let _ = runtime::timeout(Duration::from_secs(10), tx.send(ev)).await;
                })
                .detach();
            }
            Err(TrySendError::Closed(_)) => {}
        }
    }
}
