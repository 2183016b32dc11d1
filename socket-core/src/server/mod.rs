//! The server engine.
//!
//! A [`Server`] serves one event name over one [`Transport`]. Its tasks run
//! on the background executor of [`crate::runtime`], never on the caller's
//! runtime, so the async API works under smol, tokio or no runtime at all,
//! and every blocking method is a thin wrapper over its `_async` twin.
//!
//! # Design
//!
//! * One registry (`registry.rs`) behind a mutex, held only for short
//!   sections (never across an `.await` or I/O): the connected clients with
//!   their bounded outbound queues, the offline queue and the last
//!   broadcast. Its mutex and atomics come from `crate::sync`, so loom and
//!   shuttle check this very code (`models.rs`, `cargo xtask loom`).
//! * [`Server::broadcast`] encodes a message **once** and pushes the same
//!   shared [`Frame`] into every client's queue without
//!   waiting. A client whose queue is full (frames or bytes) is a slow
//!   consumer: it is sent `slow_consumer` (best effort) and disconnected;
//!   nobody else notices.
//! * One task per connection races a reader and a writer: when either ends,
//!   both halves of the stream are dropped and the peer sees end-of-stream.
//!   The writer batches queued frames into one write of up to 64 KiB.
//! * [`Server::stop`] queues `shutdown` to every handshaken client, lets the
//!   writers flush for at most 250 ms, then drops every connection and
//!   releases the address; it returns within one second.
//!
//! # Semantics worth knowing
//!
//! * The offline queue (`message_queue_size` messages and
//!   `message_queue_bytes` bytes, oldest dropped first and counted in
//!   [`ServerStats::dropped`]) is handed to the **first** client that
//!   connects, in order and before any live message, and is then empty. It
//!   survives a `stop` / `start` of the same handle. A broadcast that finds
//!   only clients already disconnecting goes to the offline queue too, and
//!   the next client to connect takes it.
//! * With `retain_last`, a new client first gets the last broadcast, unless
//!   it just got it from the offline queue. Relayed messages count as
//!   broadcasts.
//! * Broadcasting is never blocked by a client. A publisher that can
//!   outrun its subscribers should pace itself (or raise
//!   `outbound_queue_size`): a client whose queue overflows is disconnected
//!   and reconnects by itself.
//! * Client messages reach [`Server::events`] only while the application
//!   holds a receiver from it; otherwise they are counted and dropped.

mod conn;
#[cfg(all(test, any(socket_loom, shuttle)))]
mod models;
mod outlet;
mod registry;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_channel::{Receiver, Sender, TrySendError};
use async_executor::Task;

use crate::codec::{encode_frame, encode_frame_with, Frame, Limits};
use crate::config::{secs, Config};
use crate::control::ErrorCode;
use crate::error::{Error, ErrorKind, Result};
use crate::message::{EventName, SocketMessage};
use crate::runtime;
use crate::transport::{Connection, Listener, Transport};
use outlet::Direct;
use registry::{Admission, Bounds, Closing, ConnShared, Entry, Registry, Unicast};

/// A client id, unique for the server's lifetime, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "c{}", self.0)
    }
}

impl std::str::FromStr for ClientId {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        s.strip_prefix('c').and_then(|n| n.parse().ok()).map(ClientId).ok_or_else(|| {
            crate::Error::new(
                crate::ErrorKind::Validation,
                format!("invalid client id {s:?}: expected c<number>, e.g. c1"),
            )
        })
    }
}

/// What the server knows about a connected client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client's id.
    pub id: ClientId,
    /// When it connected, Unix epoch milliseconds.
    pub connected_at_ms: u64,
    /// Peer address as the transport prints it.
    pub address: String,
    /// Peer process id, where the transport knows it.
    pub pid: Option<u32>,
    /// Peer user id, where the transport knows it.
    pub uid: Option<u32>,
    /// `client_name` from `hello`, if any.
    pub client_name: Option<String>,
    /// True once the client sent `hello` (false for legacy clients).
    pub handshaken: bool,
}

/// Something that happened on a server.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A client connected: sent once its `hello` arrived or `hello_grace`
    /// ended. A `hello` arriving later (as the connection's first frame)
    /// still gets `welcome`; [`Server::clients`] then shows the client
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
    /// Also counted in [`ServerStats::events_dropped`].
    EventsDropped {
        /// Events dropped since the last `EventsDropped`.
        count: u64,
    },
}

/// Counters of a server since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Message deliveries written to clients (a broadcast to 3 clients counts 3).
    pub messages_sent: u64,
    /// Bytes written to clients.
    pub bytes_sent: u64,
    /// Messages received from clients.
    pub messages_received: u64,
    /// Broadcasts put in the offline queue.
    pub queued: u64,
    /// Broadcasts dropped from the offline queue on overflow.
    pub dropped: u64,
    /// Malformed frames received and dropped.
    pub malformed: u64,
    /// Connections refused (connection limit, peer credentials).
    pub rejected: u64,
    /// Clients disconnected as slow consumers.
    pub slow_consumers: u64,
    /// Replies to one client (ERROR `malformed` or `send_not_allowed`, `pong`, the `welcome` to a
    /// late `hello`) dropped because that client's outbound queue was full.
    pub replies_dropped: u64,
    /// Server events dropped because the application did not take them from
    /// [`Server::events`] in time (relay mode; see [`ServerEvent::EventsDropped`]).
    pub events_dropped: u64,
}

/// Server settings, usually taken from a [`Config`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Clients served at once.
    pub max_connections: usize,
    /// Offline queue length.
    pub message_queue_size: usize,
    /// Offline queue bytes.
    pub message_queue_bytes: usize,
    /// Accept messages from clients.
    pub allow_client_send: bool,
    /// New clients first get the last broadcast.
    pub retain_last: bool,
    /// Re-broadcast client messages to the other clients.
    pub relay: bool,
    /// Time a new connection has to send `hello`.
    pub hello_grace: Duration,
    /// Time allowed from a frame's first byte to its last.
    pub frame_timeout: Duration,
    /// Time a write may stall before the client is a slow consumer.
    pub write_stall_timeout: Duration,
    /// Frames queued per client.
    pub outbound_queue_size: usize,
    /// Bytes queued per client.
    pub outbound_queue_bytes: usize,
    /// Server events buffered for the application.
    pub inbound_queue_size: usize,
    /// Relay mode only: a full event buffer holds up reading from clients (`true`) instead
    /// of dropping its oldest events with a counted [`ServerEvent::EventsDropped`] (`false`,
    /// the default, so that an application that does not read its events never holds up
    /// relaying). Set it when the event stream is itself a delivery path whose reader
    /// never blocks for long, as the NATS bridge's is: messages then wait instead of being
    /// dropped. Not a configuration key.
    pub relay_events_backpressure: bool,
    /// Read buffer size.
    pub buffer_size: usize,
    /// Frame and nesting limits.
    pub limits: Limits,
    /// Zone of `timestamp_iso` in messages the server creates.
    pub timezone: jiff::tz::TimeZone,
    /// `start()` blocks until stopped.
    pub blocking_mode: bool,
}

impl ServerOptions {
    /// Options from `config`, with `max_connections` from `transport`'s table.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] if the time zone is unknown.
    pub fn from_config(config: &Config, transport: &dyn Transport) -> Result<Self> {
        let s = &config.socket;
        Ok(ServerOptions {
            max_connections: transport.max_connections(config),
            message_queue_size: s.message_queue_size,
            message_queue_bytes: s.message_queue_bytes,
            allow_client_send: s.allow_client_send,
            retain_last: s.retain_last,
            relay: s.relay,
            hello_grace: secs(s.hello_grace),
            frame_timeout: secs(s.frame_timeout),
            write_stall_timeout: secs(s.write_stall_timeout),
            outbound_queue_size: s.outbound_queue_size,
            outbound_queue_bytes: s.outbound_queue_bytes,
            inbound_queue_size: s.inbound_queue_size,
            relay_events_backpressure: false,
            buffer_size: s.buffer_size,
            limits: Limits { max_frame_len: s.max_message_size, max_depth: s.max_nesting_depth },
            timezone: config.time_zone()?,
            blocking_mode: s.blocking_mode,
        })
    }
}

/// A server bound to one event name. Cheap to clone; clones share the server.
///
/// Dropping the last handle stops the server.
///
/// # Examples
///
/// ```no_run
/// # fn demo(transport: std::sync::Arc<dyn socket_core::Transport>) -> socket_core::Result<()> {
/// use socket_core::{Config, Data, EventName, Server, SocketMessage};
///
/// let event = EventName::new("system_status")?;
/// let server = Server::new(transport, event.clone(), &Config::default())?;
/// server.start()?;
/// server.broadcast(&SocketMessage::data(event, Data::new().with("cpu", 12)))?;
/// server.stop()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Server {
    inner: Arc<Inner>,
    _guard: Arc<StopOnDrop>,
}

#[derive(Debug)]
struct StopOnDrop(Arc<Inner>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(run) = self.0.begin_stop() {
            // Free the address now; the rest of the stop runs in the background.
            if let Err(e) = run.listener.close() {
                tracing::warn!(error = %e, "cannot release the server address");
            }
            let inner = self.0.clone();
            runtime::spawn(async move { inner.finish_stop(run).await }).detach();
        }
    }
}

/// The events of one server (see [`Server::events`]): an async [`Stream`](futures_lite::Stream)
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
}

impl ServerEvents {
    fn new(receiver: Receiver<ServerEvent>) -> Self {
        ServerEvents { receiver: Box::pin(receiver) }
    }

    /// The channel receiver, for code that stores or passes an
    /// `async_channel::Receiver<ServerEvent>` (what [`Server::events`] returned before it
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
    fn promised<T: futures_lite::Stream + Unpin + Send + Sync + 'static>() {}
    promised::<ServerEvents>();
};

impl Server {
    /// A server for `event` over `transport`, configured by `config` (not started).
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] for invalid settings.
    pub fn new(transport: Arc<dyn Transport>, event: EventName, config: &Config) -> Result<Server> {
        let options = ServerOptions::from_config(config, transport.as_ref())?;
        Self::with_options(transport, event, config.clone(), options)
    }

    /// A server with explicit `options` (`config` is still handed to the transport for binding).
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] if the transport rejects `config`.
    pub fn with_options(
        transport: Arc<dyn Transport>,
        event: EventName,
        config: Config,
        options: ServerOptions,
    ) -> Result<Server> {
        transport.validate(&config)?;
        // Unbounded by the channel, bounded by `EventQueue` (which checks the length before
        // each send): a bounded channel would allocate all `inbound_queue_size` slots now.
        let (events_tx, events_rx) = async_channel::unbounded();
        let events_tx = EventQueue { tx: events_tx, cap: options.inbound_queue_size.max(1) };
        let registry = Registry::new(Bounds {
            max_clients: options.max_connections,
            outbound_frames: options.outbound_queue_size,
            outbound_bytes: options.outbound_queue_bytes,
            offline_frames: options.message_queue_size,
            offline_bytes: options.message_queue_bytes,
            retain_last: options.retain_last,
        });
        let inner = Arc::new(Inner {
            event,
            transport,
            config,
            opts: options,
            registry,
            life: Mutex::new(Life::default()),
            lifecycle: async_lock::Mutex::new(()),
            counters: Counters::default(),
            events_tx,
            events_rx,
            events_unreported: Mutex::new(0),
            running: AtomicBool::new(false),
        });
        Ok(Server { _guard: Arc::new(StopOnDrop(inner.clone())), inner })
    }

    /// The event this server serves.
    pub fn event(&self) -> &EventName {
        &self.inner.event
    }

    /// The options in force.
    pub fn options(&self) -> &ServerOptions {
        &self.inner.opts
    }

    /// Binds and starts serving; returns once bound. Idempotent.
    ///
    /// Never blocks, whatever `blocking_mode` says.
    ///
    /// # Errors
    ///
    /// See [`Transport::bind`].
    pub async fn start_async(&self) -> Result<()> {
        let inner = self.inner.clone();
        runtime::spawn(async move { inner.start().await }).await
    }

    /// Blocking [`start_async`](Self::start_async); with `blocking_mode` it blocks until stopped.
    ///
    /// # Blocking
    ///
    /// Blocks until the server is bound. With [`ServerOptions::blocking_mode`]
    /// it then blocks the calling thread until [`stop`](Self::stop) is called
    /// from another handle or thread.
    ///
    /// # Errors
    ///
    /// See [`Transport::bind`].
    pub fn start(&self) -> Result<()> {
        runtime::block_on(self.start_async())?;
        if self.inner.opts.blocking_mode {
            runtime::block_on(self.wait_stopped());
        }
        Ok(())
    }

    /// Waits until the server is stopped (returns at once if it is not running).
    pub async fn wait_stopped(&self) {
        let rx = self.inner.life().stopped_rx.clone();
        if let Some(rx) = rx {
            let _ = rx.recv().await;
        }
    }

    /// Sends `shutdown`, closes every connection, releases the address. Idempotent.
    ///
    /// Returns within about one second: writers get at most 250 ms to flush.
    ///
    /// # Errors
    ///
    /// If releasing the address failed.
    pub async fn stop_async(&self) -> Result<()> {
        let inner = self.inner.clone();
        runtime::spawn(async move { inner.stop().await }).await
    }

    /// Blocking [`stop_async`](Self::stop_async).
    ///
    /// # Blocking
    ///
    /// Blocks for at most about one second.
    ///
    /// # Errors
    ///
    /// If releasing the address failed.
    pub fn stop(&self) -> Result<()> {
        runtime::block_on(self.stop_async())
    }

    /// Broadcasts `message` to every client, or queues it while none is connected.
    ///
    /// The message is encoded once. Never blocks: a client whose outbound
    /// queue is full is disconnected as a slow consumer instead.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Message`] if the message cannot be encoded,
    /// [`crate::ErrorKind::Closed`] if the server is not running.
    pub fn broadcast(&self, message: &SocketMessage) -> Result<()> {
        let frame = encode_frame_with(message, &self.inner.opts.limits)?;
        self.broadcast_frame(frame)
    }

    /// Broadcasts an already encoded frame (see [`broadcast`](Self::broadcast)).
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Closed`] if the server is not running.
    pub fn broadcast_frame(&self, frame: Frame) -> Result<()> {
        self.inner.check_running()?;
        self.inner.fan_out(frame, None);
        Ok(())
    }

    /// Sends `message` to client `id` only.
    ///
    /// Ids come from [`clients`](Self::clients), from [`ServerEvent`]s, or
    /// from a client's [`Client::client_id`](crate::Client::client_id)
    /// (`"c2".parse()`).
    ///
    /// It never waits. When nothing is queued for that client, the frame is
    /// written from the calling thread with one non-blocking write (a reply
    /// then goes out without waking the engine's thread); otherwise, or when
    /// the socket takes only part of it, the connection's writer task sends
    /// it (or its rest) in order behind what was queued before.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Validation`] if no client has that id (never queued),
    /// [`crate::ErrorKind::Connection`] if the client's queue was full (it is
    /// then disconnected as a slow consumer), [`crate::ErrorKind::Message`] if
    /// the message cannot be encoded, [`crate::ErrorKind::Closed`] if the
    /// server is not running.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn demo(server: &socket_core::Server) -> socket_core::Result<()> {
    /// use socket_core::{Data, SocketMessage};
    ///
    /// for client in server.clients() {
    ///     let hello = Data::new().with("text", format!("hello {}", client.client_name.unwrap_or_default()));
    ///     server.send_to(client.id, &SocketMessage::data(server.event().clone(), hello))?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn send_to(&self, id: ClientId, message: &SocketMessage) -> Result<()> {
        self.inner.check_running()?;
        let frame = encode_frame_with(message, &self.inner.opts.limits)?;
        self.inner.unicast(id, frame)
    }

    /// Connected clients, in order of connection.
    pub fn clients(&self) -> Vec<ClientInfo> {
        self.inner.registry.clients()
    }

    /// Number of connected clients.
    pub fn client_count(&self) -> usize {
        self.inner.registry.len()
    }

    /// Events (connects, disconnects, messages) as an async stream / blocking iterator.
    ///
    /// The receiver is an async [`Stream`](futures_lite::Stream), [`Unpin`] and `Send`
    /// (`while let Some(event) = events.next().await` with `futures-lite`'s or `futures`'
    /// `StreamExt` needs no pinning), and has
    /// [`recv_blocking`](async_channel::Receiver::recv_blocking) for threads.
    /// Events are delivered only while at least one receiver obtained here is
    /// alive: a server nobody listens to counts client messages
    /// (`messages_received`) and drops them, so it never stalls. While a
    /// receiver exists but is not read, a full event buffer
    /// (`inbound_queue_size`) makes the server stop reading from the clients
    /// that send (back-pressure on those clients only).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn demo(server: &socket_core::Server) {
    /// use socket_core::ServerEvent;
    ///
    /// let events = server.events();
    /// std::thread::spawn(move || {
    ///     while let Ok(event) = events.recv_blocking() {
    ///         match event {
    ///             ServerEvent::Connected(info) => println!("{} connected from {}", info.id, info.address),
    ///             ServerEvent::Disconnected { id, reason } => println!("{id} left: {reason}"),
    ///             ServerEvent::Message { from, message } => println!("{from} sent {:?}", message.data.get_str("text")),
    ///             _ => {}
    ///         }
    ///     }
    /// });
    /// # }
    /// ```
    ///
    /// The same as a stream, from async code:
    ///
    /// ```
    /// # async fn demo(server: &socket_core::Server) {
    /// use futures_lite::StreamExt;
    /// use socket_core::ServerEvent;
    ///
    /// let mut events = server.events();
    /// while let Some(event) = events.next().await {
    ///     if let ServerEvent::Message { from, message } = event {
    ///         println!("{from} sent {:?}", message.data.get_str("text"));
    ///     }
    /// }
    /// # }
    /// ```
    pub fn events(&self) -> ServerEvents {
        ServerEvents::new(self.inner.events_rx.clone())
    }

    /// True between `start` and `stop`.
    pub fn is_running(&self) -> bool {
        self.inner.running.load(Ordering::Acquire)
    }

    /// The bound address, while running.
    pub fn address(&self) -> Option<String> {
        self.inner.life().run.as_ref().map(|r| r.address.clone())
    }

    /// Number of broadcasts waiting in the offline queue.
    pub fn queue_len(&self) -> usize {
        self.inner.registry.offline_len()
    }

    /// Empties the offline queue; returns how many messages it held.
    pub fn clear_queue(&self) -> usize {
        self.inner.registry.clear_offline()
    }

    /// Counters.
    pub fn stats(&self) -> ServerStats {
        let c = &self.inner.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ServerStats {
            messages_sent: l(&c.messages_sent),
            bytes_sent: l(&c.bytes_sent),
            messages_received: l(&c.messages_received),
            queued: l(&c.queued),
            dropped: l(&c.dropped),
            malformed: l(&c.malformed),
            rejected: l(&c.rejected),
            slow_consumers: l(&c.slow_consumers),
            replies_dropped: l(&c.replies_dropped),
            events_dropped: l(&c.events_dropped),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    messages_sent: AtomicU64,
    bytes_sent: AtomicU64,
    messages_received: AtomicU64,
    queued: AtomicU64,
    dropped: AtomicU64,
    malformed: AtomicU64,
    rejected: AtomicU64,
    slow_consumers: AtomicU64,
    replies_dropped: AtomicU64,
    events_dropped: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    event: EventName,
    transport: Arc<dyn Transport>,
    config: Config,
    opts: ServerOptions,
    /// Clients, their queues and the offline queue (the part the models check).
    registry: Registry,
    /// The current run, if any.
    life: Mutex<Life>,
    /// Serialises `start` and `stop`.
    lifecycle: async_lock::Mutex<()>,
    counters: Counters,
    events_tx: EventQueue,
    events_rx: Receiver<ServerEvent>,
    /// Events dropped and not yet reported by an [`ServerEvent::EventsDropped`]; also
    /// serialises the lossy emitters.
    events_unreported: Mutex<u64>,
    running: AtomicBool,
}

#[derive(Debug, Default)]
struct Life {
    run: Option<Run>,
    /// Closed when the current run stops (for `blocking_mode` and `wait_stopped`).
    stopped_rx: Option<Receiver<()>>,
}

/// What exists while the server runs.
#[derive(Debug)]
struct Run {
    listener: Arc<dyn Listener>,
    address: String,
    accept: Task<()>,
    /// Dropped to cancel every connection task.
    abort_tx: Sender<()>,
    abort_rx: Receiver<()>,
    /// Each connection task holds a sender; `recv` fails once all are gone.
    alive_tx: Sender<()>,
    alive_rx: Receiver<()>,
    stopped_tx: Sender<()>,
}

/// Time the writer gets to push a final ERROR frame out before the connection closes.
const CLOSE_LINGER: Duration = Duration::from_millis(200);
/// Time writers get to flush their queues on `stop`.
const STOP_FLUSH: Duration = Duration::from_millis(250);
/// Upper bound on the rest of `stop` after the flush.
const STOP_ABORT: Duration = Duration::from_millis(500);

impl Inner {
    fn life(&self) -> MutexGuard<'_, Life> {
        self.life.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_running(&self) -> Result<()> {
        if self.running.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Closed,
                format!("server for event {} is not running: call start() first", self.event),
            ))
        }
    }

    /// Relay mode without `relay_events_backpressure`: the event stream never holds up
    /// reading, it drops its oldest events instead ([`Inner::emit_lossy`]).
    pub(super) fn lossy_events(&self) -> bool {
        self.opts.relay && !self.opts.relay_events_backpressure
    }

    fn wants_events(&self) -> bool {
        // One receiver is ours; any other belongs to the application.
        self.events_tx.tx.receiver_count() > 1
    }

    async fn start(self: Arc<Self>) -> Result<()> {
        let _life = self.lifecycle.lock().await;
        if self.life().run.is_some() {
            return Ok(());
        }
        let listener: Arc<dyn Listener> = Arc::from(self.transport.bind(&self.event, &self.config).await?);
        let address = listener.address();
        let (abort_tx, abort_rx) = async_channel::bounded(1);
        let (alive_tx, alive_rx) = async_channel::bounded(1);
        let (stopped_tx, stopped_rx) = async_channel::bounded(1);
        // Open before the first accept, so no connection finds it closed.
        self.registry.open();
        let accept =
            runtime::spawn(conn::accept_loop(self.clone(), listener.clone(), abort_rx.clone(), alive_tx.clone()));
        tracing::info!(event = %self.event, transport = self.transport.scheme(), %address, "server listening");
        let mut life = self.life();
        life.run = Some(Run { listener, address, accept, abort_tx, abort_rx, alive_tx, alive_rx, stopped_tx });
        life.stopped_rx = Some(stopped_rx);
        self.running.store(true, Ordering::Release);
        Ok(())
    }

    /// The synchronous half of `stop`: no new clients, no more accepts, the
    /// address released, every connection told to flush and close.
    fn begin_stop(&self) -> Option<Run> {
        let run = self.life().run.take()?;
        self.running.store(false, Ordering::Release);
        // The accept task may still run until `finish_stop` cancels it, but
        // the registry admits nobody any more.
        self.registry.shut();
        Some(run)
    }

    async fn finish_stop(&self, run: Run) -> Result<()> {
        let Run { listener, address, accept, abort_tx, abort_rx, alive_tx, alive_rx, stopped_tx } = run;
        accept.cancel().await;
        let closed = listener.close();
        drop(alive_tx);
        drop(abort_rx);
        // Writers flush their queues and send `shutdown`.
        let _ = runtime::timeout(STOP_FLUSH, alive_rx.recv()).await;
        // Whatever is still running is cut off now: peers see end-of-stream.
        drop(abort_tx);
        if runtime::timeout(STOP_ABORT, alive_rx.recv()).await.is_none() {
            tracing::warn!(event = %self.event, "some connection tasks did not end in time");
        }
        drop(stopped_tx);
        tracing::info!(event = %self.event, %address, "server stopped");
        closed
    }

    async fn stop(self: Arc<Self>) -> Result<()> {
        let _life = self.lifecycle.lock().await;
        match self.begin_stop() {
            Some(run) => self.finish_stop(run).await,
            None => Ok(()),
        }
    }

    /// Pushes `frame` to every client except `except`, or to the offline
    /// queue when there is no such client (see [`Registry::fan_out`]).
    fn fan_out(&self, frame: Frame, except: Option<u64>) {
        let out = self.registry.fan_out(&frame, except);
        if out.offline {
            self.counters.queued.fetch_add(1, Ordering::Relaxed);
            self.count_offline_drops(out.dropped);
        }
        for (c, why) in out.slow {
            self.drop_slow(c, why);
        }
    }

    fn count_offline_drops(&self, n: u64) {
        if n == 0 {
            return;
        }
        let before = self.counters.dropped.fetch_add(n, Ordering::Relaxed);
        // Logged at 1, 2, 4, 8 … drops.
        if (before + 1..=before + n).any(u64::is_power_of_two) {
            tracing::warn!(
                event = %self.event,
                dropped = before + n,
                "offline queue full: dropped the oldest message (message_queue_size / message_queue_bytes)"
            );
        }
    }

    /// Disconnects a client removed from the registry as a slow consumer.
    fn drop_slow(&self, c: Entry, why: &str) {
        self.counters.slow_consumers.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(event = %self.event, client = %c.info.id, reason = why, "disconnecting slow consumer");
        let text = format!("client {} did not read fast enough ({why}): disconnected", c.info.id);
        let closing = match self.error_frame(ErrorCode::SlowConsumer, &text) {
            Some(f) => Closing::SlowConsumer(f),
            None => Closing::Shutdown,
        };
        c.shared.close(closing);
    }

    fn unicast(&self, id: ClientId, frame: Frame) -> Result<()> {
        // An idle connection gets the frame from this thread, without waking the engine.
        if let Some(shared) = self.registry.get(id.0) {
            if shared.outlet.try_direct(frame.as_bytes(), || shared.is_idle()) == Direct::Written {
                self.counters.messages_sent.fetch_add(1, Ordering::Relaxed);
                self.counters.bytes_sent.fetch_add(frame.len() as u64, Ordering::Relaxed);
                return Ok(());
            }
        }
        match self.registry.unicast(id.0, &frame) {
            Ok(()) => Ok(()),
            Err(Unicast::NoClient) => Err(Error::new(
                ErrorKind::Validation,
                format!("no client {id} is connected to event {}: check clients() for valid ids", self.event),
            )),
            Err(Unicast::Slow(c, why)) => {
                self.drop_slow(c, why);
                Err(Error::new(
                    ErrorKind::Connection,
                    format!("client {id} was disconnected as a slow consumer ({why})"),
                ))
            }
        }
    }

    /// An ERROR frame with `code` and `text`, stamped now.
    fn error_frame(&self, code: ErrorCode, text: &str) -> Option<Frame> {
        let msg = code.to_message(&self.event, text, &self.opts.timezone);
        match encode_frame(&msg, self.opts.limits.max_frame_len.max(4096)) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode an error frame");
                None
            }
        }
    }

    /// Registers a new connection, or refuses it over the limit.
    fn admit(self: &Arc<Self>, conn: Connection, abort_rx: &Receiver<()>, alive_tx: &Sender<()>) {
        let peer = &conn.peer;
        let admission = self.registry.admit(|id| ClientInfo {
            id: ClientId(id),
            connected_at_ms: jiff::Timestamp::now().as_millisecond().try_into().unwrap_or(0),
            address: peer.address.clone(),
            pid: peer.pid,
            uid: peer.uid,
            client_name: None,
            handshaken: false,
        });
        let a = match admission {
            Admission::Admitted(a) => a,
            Admission::Stopped => return,
            Admission::Full => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    event = %self.event,
                    peer = %conn.peer.address,
                    max = self.opts.max_connections,
                    "connection refused: max_connections reached"
                );
                let text = format!(
                    "server for event {} serves its maximum of {} clients (max_connections): try again later",
                    self.event, self.opts.max_connections
                );
                if let Some(frame) = self.error_frame(ErrorCode::MaxConnections, &text) {
                    runtime::spawn(conn::refuse(conn, frame)).detach();
                }
                return;
            }
        };
        if a.replayed > 0 || a.dropped > 0 {
            tracing::debug!(
                event = %self.event,
                client = %a.info.id,
                messages = a.replayed,
                dropped = a.dropped,
                "replaying the offline queue"
            );
            self.count_offline_drops(a.dropped);
        }
        let task = conn::Conn {
            inner: self.clone(),
            id: a.id,
            info: a.info,
            rx: a.rx,
            shared: a.shared,
            abort_rx: abort_rx.clone(),
            alive: alive_tx.clone(),
            write_done: std::sync::atomic::AtomicBool::new(false),
            frames_read: AtomicU64::new(0),
        };
        runtime::spawn(task.run(conn)).detach();
    }

    /// Removes client `id` from the registry (if still there) and reports it.
    fn remove(&self, id: u64, shared: &ConnShared, reason: String) {
        self.registry.remove(id);
        tracing::debug!(event = %self.event, client = %ClientId(id), %reason, "client disconnected");
        if shared.announced.load(Ordering::Acquire) {
            self.emit(ServerEvent::Disconnected { id: ClientId(id), reason });
        }
    }

    /// Delivers an event without ever waiting (relay mode: delivery to the
    /// other clients must not wait for the application). A full buffer loses
    /// its oldest events; an [`ServerEvent::EventsDropped`] ahead of the new
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
    fn emit(&self, ev: ServerEvent) {
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

/// The server's event buffer: at most `cap` events, and memory only for the events it
/// holds (an unbounded channel whose length is checked), never all of `cap` up front.
#[derive(Debug, Clone)]
struct EventQueue {
    tx: Sender<ServerEvent>,
    cap: usize,
}

/// Longest pause between two looks at a full event buffer.
const EVENT_QUEUE_MAX_PAUSE: Duration = Duration::from_millis(20);

impl EventQueue {
    /// Events that fit before the buffer is full.
    fn room(&self) -> usize {
        self.cap.saturating_sub(self.tx.len())
    }

    /// Sends `ev` now if there is room.
    fn try_send(&self, ev: ServerEvent) -> std::result::Result<(), TrySendError<ServerEvent>> {
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
    async fn send(&self, ev: ServerEvent) -> std::result::Result<(), async_channel::SendError<ServerEvent>> {
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
