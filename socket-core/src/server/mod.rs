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
mod delivery;
mod events;
mod info;
mod lead;
mod lifecycle;
#[cfg(all(test, any(socket_loom, shuttle)))]
mod models;
mod options;
mod outlet;
mod registry;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_channel::{Receiver, Sender};
use async_executor::Task;

use crate::codec::{encode_frame_into, encode_frame_with, Frame};
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::message::{EventName, SocketMessage};
use crate::runtime;
use crate::transport::{Listener, Transport};
use registry::{Bounds, Closing, ConnShared, Registry};

use self::events::EventQueue;
pub use self::events::ServerEvent;
pub use self::events::ServerEvents;
pub use self::info::{ClientId, ClientInfo, ServerStats};
pub use self::options::ServerOptions;

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
            sole: lead::Sole::default(),
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
        thread_local! {
            /// The calling thread's encoding buffer: a broadcast allocates nothing.
            static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
        }
        let mut buf = SCRATCH.take();
        let res = encode_frame_into(message, &self.inner.opts.limits, &mut buf).and_then(|()| {
            self.inner.check_running()?;
            self.inner.fan_out(&buf, None);
            Ok(())
        });
        if buf.capacity() > SCRATCH_KEEP {
            // A large message passed: do not keep its storage.
            buf = Vec::new();
        }
        SCRATCH.set(buf);
        res
    }

    /// Broadcasts an already encoded frame (see [`broadcast`](Self::broadcast)).
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Closed`] if the server is not running.
    pub fn broadcast_frame(&self, frame: Frame) -> Result<()> {
        self.inner.check_running()?;
        self.inner.fan_out(frame.as_bytes(), None);
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
        ServerEvents::new(self.inner.events_rx.clone(), Arc::downgrade(&self.inner))
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
            frames_read_by_callers: l(&c.frames_read_by_callers),
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
    frames_read_by_callers: AtomicU64,
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
    /// The connection a thread waiting in `ServerEvents::recv_blocking` may read itself.
    sole: lead::Sole,
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

/// Largest encoding buffer a broadcasting thread keeps between broadcasts.
const SCRATCH_KEEP: usize = 1 << 20;
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
}
