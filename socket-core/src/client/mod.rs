//! The client engine.
//!
//! A [`Client`] connects to the server of one event, completes the `hello` /
//! `welcome` handshake (messages a server sends before `welcome`, because our
//! `hello` reached it after its `hello_grace`, are kept and delivered first)
//! and then runs a supervisor task on the background
//! executor of [`crate::runtime`]: it reads frames into a bounded receive
//! buffer (when the buffer is full it stops reading, so back-pressure
//! reaches the server; nothing is dropped), answers `ping`, and on
//! end-of-stream reconnects with exponential backoff and jitter.
//!
//! # Reconnect backoff
//!
//! Attempt `k` (from 0) waits a random delay in `[initial / 2, min(initial * 2^k, max)]`
//! ("full jitter" above a floor of half `reconnect_initial_delay`, so no attempt
//! comes faster than the floor and even the first retries of the clients of one
//! crashed server are spread). The delay resets only after a completed
//! handshake, so a server that accepts and closes at once (connection limit,
//! crash loop) never causes a hot loop. A server that answers a reconnect in
//! another protocol version closes the client for good (retrying cannot help):
//! `receive` and `send` then fail with [`crate::ErrorKind::Closed`] and the
//! reason names the server's version.
//!
//! # Waiting for a server
//!
//! With [`ClientOptions::wait_for_server`], `connect` keeps trying with the
//! same backoff until a server answers, for at most
//! [`ClientOptions::wait_timeout`] (`None`: without limit). A refusal
//! (`max_connections`, a protocol mismatch) is returned at once.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_channel::{Receiver, Sender};
use async_executor::Task;
use event_listener::EventListener;
use futures_lite::Stream;

use self::inbox::{Inbox, Pop};
use self::lead::Led;
use self::link::{Link, Sent, WriterSlot};

use crate::codec::{encode_frame, encode_frame_with};
use crate::config::Config;
use crate::control::Control;
use crate::error::{Error, ErrorKind, Result};
use crate::message::{EventName, SocketMessage};
use crate::runtime;
use crate::transport::Transport;

mod connect;
mod inbox;
mod lead;
mod link;
#[cfg(all(test, any(socket_loom, shuttle)))]
mod models;
mod options;
mod receive;
mod reconnect;

pub use self::options::ClientOptions;

/// The state of a client's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// Connecting for the first time.
    Connecting,
    /// A live connection exists.
    Connected,
    /// The connection was lost; reconnecting with backoff.
    Reconnecting,
    /// Closed for good (disconnected, or reconnecting gave up).
    Closed,
}

/// A client of one event's server. Cheap to clone; clones share the connection.
///
/// Dropping the last handle closes the client (like [`disconnect`](Self::disconnect)).
///
/// # Examples
///
/// ```no_run
/// # fn demo(transport: std::sync::Arc<dyn socket_core::Transport>) -> socket_core::Result<()> {
/// use std::time::Duration;
/// use socket_core::{Client, Config, EventName};
///
/// let client = Client::connect(transport, EventName::new("system_status")?, &Config::default())?;
/// if let Some(msg) = client.receive(Some(Duration::from_secs(1)))? {
///     println!("{:?}", msg.data);
/// }
/// client.disconnect();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
    _guard: Arc<CloseOnDrop>,
}

#[derive(Debug)]
struct CloseOnDrop(Arc<Inner>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        // The same lingering close as `disconnect`, on the background executor: dropping
        // never blocks. A process that exits right after dropping its last handle may end
        // it early; `disconnect` (or `close`) waits for it.
        let inner = self.0.clone();
        runtime::spawn(async move {
            let _ = inner.close_lingering("the client was dropped".to_owned()).await;
        })
        .detach();
    }
}

impl Client {
    /// Connects to the server of `event` and completes the handshake.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Connection`] (no server), [`crate::ErrorKind::MaxConnections`],
    /// [`crate::ErrorKind::Timeout`].
    pub async fn connect_async(transport: Arc<dyn Transport>, event: EventName, config: &Config) -> Result<Client> {
        let options = ClientOptions::from_config(config)?;
        Self::connect_with_async(transport, event, config.clone(), options).await
    }

    /// Blocking [`connect_async`](Self::connect_async).
    ///
    /// # Blocking
    ///
    /// Blocks until connected or failed (at most `default_timeout`, unless
    /// waiting for a server).
    ///
    /// # Errors
    ///
    /// See [`connect_async`](Self::connect_async).
    pub fn connect(transport: Arc<dyn Transport>, event: EventName, config: &Config) -> Result<Client> {
        runtime::block_on(Self::connect_async(transport, event, config))
    }

    /// Connects with explicit `options` (`config` is still handed to the transport).
    ///
    /// # Errors
    ///
    /// See [`connect_async`](Self::connect_async).
    pub async fn connect_with_async(
        transport: Arc<dyn Transport>,
        event: EventName,
        config: Config,
        options: ClientOptions,
    ) -> Result<Client> {
        transport.validate(&config)?;
        let inbox = Inbox::new(options.receive_buffer_size);
        let inner = Arc::new(Inner {
            can_send: AtomicBool::new(!options.receive_only),
            server_relays: AtomicBool::new(false),
            transport,
            event,
            config,
            opts: options,
            connected: AtomicBool::new(false),
            shared: Mutex::new(Shared {
                state: ConnectionState::Connecting,
                client_id: None,
                address: None,
                close_reason: None,
                shutdown_reason: None,
                watchers: Vec::new(),
                supervisor: None,
                link: None,
                receipts: Vec::new(),
                drained: None,
            }),
            writer: async_lock::Mutex::new(None),
            inbox,
            reads: crate::handoff::ReadSlot::default(),
            lingering: AtomicBool::new(false),
            next_nonce: AtomicU64::new(1),
            unconfirmed: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        });
        let first = inner.clone();
        let link = runtime::spawn(async move {
            let est = first.first_connect().await?;
            first.install(est).await
        })
        .await?;
        // No await from here on: the supervisor is owned before anything can cancel us.
        let client = Client { _guard: Arc::new(CloseOnDrop(inner.clone())), inner: inner.clone() };
        let task = runtime::spawn(inner.clone().supervise(link));
        inner.lock().supervisor = Some(task);
        Ok(client)
    }

    /// Blocking [`connect_with_async`](Self::connect_with_async).
    ///
    /// # Blocking
    ///
    /// See [`connect`](Self::connect).
    ///
    /// # Errors
    ///
    /// See [`connect_async`](Self::connect_async).
    pub fn connect_with(
        transport: Arc<dyn Transport>,
        event: EventName,
        config: Config,
        options: ClientOptions,
    ) -> Result<Client> {
        runtime::block_on(Self::connect_with_async(transport, event, config, options))
    }

    /// Sends one message to the server.
    ///
    /// The frame is written whole under a lock, so concurrent senders never
    /// interleave and each sender's order is kept. If this future is dropped
    /// in the middle of a write, the connection is reset (it would be out of
    /// sync) and the client reconnects.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::SendNotAllowed`] in receive-only mode (at once, nothing is written),
    /// [`crate::ErrorKind::Connection`] when not connected, [`crate::ErrorKind::Timeout`] when
    /// the server stopped reading for `send_timeout`, [`crate::ErrorKind::Message`] if the
    /// message cannot be encoded, [`crate::ErrorKind::Closed`] once closed.
    pub async fn send_async(&self, message: &SocketMessage) -> Result<()> {
        self.inner.check_can_send()?;
        let frame = encode_frame_with(message, &self.inner.opts.limits)?;
        self.inner.write_frame(&frame, Sent::Message).await.map(drop)
    }

    /// Waits until the server has taken every message sent so far on this
    /// handle and its clones: a `ping` goes out behind them, and the server
    /// answers it with `pong` only after it processed the frames before it
    /// (relayed them, queued them offline, or handed them to the
    /// application). The receipt comes within `default_timeout` or not at all.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Timeout`] when no receipt came within `default_timeout`;
    /// [`crate::ErrorKind::Connection`] when the connection was lost before the receipt, or when
    /// messages were sent on an earlier connection that was lost since (they may not have
    /// arrived); [`crate::ErrorKind::Validation`] with a legacy server (`legacy_server`), which
    /// never answers `ping`: [`close_async`](Self::close_async) is its receipt.
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn demo(client: &socket_core::Client, msg: &socket_core::SocketMessage) -> socket_core::Result<()> {
    /// client.send_async(msg).await?;
    /// client.flush_async().await?; // the server has taken `msg`
    /// # Ok(()) }
    /// ```
    pub async fn flush_async(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.opts.legacy_server {
            return Err(Error::new(
                ErrorKind::Validation,
                format!(
                    "the server for event {} is a legacy server (legacy_server = true): it sends no receipts; \
                     close the client with `close`, which waits until the server has read everything",
                    inner.event
                ),
            ));
        }
        let nonce = inner.next_nonce.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = async_channel::bounded(1);
        inner.lock().receipts.push((nonce, tx));
        let ping = Control::Ping { nonce }.to_message(&inner.event, &inner.opts.timezone);
        let frame = encode_frame(&ping, usize::MAX)?;
        let (generation, earlier) = match inner.write_frame(&frame, Sent::Receipt).await {
            Ok(sent) => sent,
            Err(e) => {
                inner.forget_receipt(nonce);
                return Err(e);
            }
        };
        let waited = inner.opts.connect_timeout;
        match runtime::timeout(waited, rx.recv()).await {
            Some(Ok(())) if earlier == 0 || earlier == generation => Ok(()),
            Some(Ok(())) => Err(Error::new(
                ErrorKind::Connection,
                format!(
                    "messages to the server for event {} were sent on a connection that was lost since: \
                     the server confirmed only what was sent after the reconnect",
                    inner.event
                ),
            )),
            Some(Err(_)) => Err(Error::new(
                ErrorKind::Connection,
                format!(
                    "the connection to the server for event {} was lost before it confirmed the messages sent",
                    inner.event
                ),
            )),
            None => {
                inner.forget_receipt(nonce);
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "the server for event {} did not confirm the messages sent within {waited:?} (default_timeout)",
                        inner.event
                    ),
                ))
            }
        }
    }

    /// Blocking [`flush_async`](Self::flush_async).
    ///
    /// # Blocking
    ///
    /// Blocks until the receipt comes, at most `default_timeout`.
    ///
    /// # Errors
    ///
    /// See [`flush_async`](Self::flush_async).
    pub fn flush(&self) -> Result<()> {
        runtime::block_on(self.flush_async())
    }

    /// Blocking [`send_async`](Self::send_async).
    ///
    /// # Blocking
    ///
    /// Blocks until the frame is handed to the operating system (at most `send_timeout`).
    ///
    /// # Errors
    ///
    /// See [`send_async`](Self::send_async).
    pub fn send(&self, message: &SocketMessage) -> Result<()> {
        runtime::block_on(self.send_async(message))
    }

    /// Next message, waiting at most `timeout` (`None`: no limit). `Ok(None)` on timeout.
    ///
    /// Messages buffered before the client closed are still returned.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Closed`] once the client is closed, with the reason.
    pub async fn receive_async(&self, timeout: Option<Duration>) -> Result<Option<SocketMessage>> {
        // The deadline (and a timer) only when the buffer is empty.
        let mut deadline = None;
        loop {
            let item = match self.inner.inbox.try_pop() {
                Pop::Item(item) => item,
                Pop::Closed => return Err(self.inner.closed_error()),
                Pop::Empty => {
                    let at = timeout.and_then(|t| *deadline.get_or_insert_with(|| runtime::deadline_after(t)));
                    match self.inner.inbox.pop(at).await {
                        Ok(Some(item)) => item,
                        Ok(None) => return Ok(None),
                        Err(_) => return Err(self.inner.closed_error()),
                    }
                }
            };
            if let Some(m) = self.inner.open(item) {
                return Ok(Some(m));
            }
        }
    }

    /// Blocking [`receive_async`](Self::receive_async).
    ///
    /// # Blocking
    ///
    /// Blocks for at most `timeout` (`None`: until a message arrives or the client closes).
    /// No executor or timer is involved: when the receive buffer is empty and the transport
    /// gives a blocking view of the stream (the Unix and TCP transports do), the calling
    /// thread reads the socket itself, one receiving thread at a time, and decodes what it
    /// read (the others, and every thread when the transport gives none, park until the
    /// buffer has something). Messages and their order are the same either way.
    ///
    /// # Errors
    ///
    /// See [`receive_async`](Self::receive_async).
    pub fn receive(&self, timeout: Option<Duration>) -> Result<Option<SocketMessage>> {
        let inner = &*self.inner;
        let mut deadline = None;
        let mut registered = false;
        loop {
            let item = match inner.inbox.pop_or_register() {
                Pop::Item(item) => item,
                Pop::Closed => return Err(inner.closed_error()),
                Pop::Empty => {
                    registered = true;
                    let at = timeout.and_then(|t| *deadline.get_or_insert_with(|| runtime::deadline_after(t)));
                    // Registered as a sleeper: a push or a hand-over after this unparks us.
                    match inner.lead(at) {
                        Led::Delivered => {}
                        Led::TimedOut => {
                            inner.inbox.unregister();
                            return Ok(None);
                        }
                        Led::Follow => {
                            if !inner.inbox.park_until(at) {
                                return Ok(None);
                            }
                        }
                    }
                    continue;
                }
            };
            if std::mem::take(&mut registered) {
                inner.inbox.unregister();
            }
            if let Some(m) = inner.open(item) {
                return Ok(Some(m));
            }
        }
    }

    /// A buffered message, without waiting.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Closed`] once the client is closed and the buffer is empty.
    pub fn try_receive(&self) -> Result<Option<SocketMessage>> {
        loop {
            match self.inner.inbox.try_pop() {
                Pop::Item(item) => {
                    if let Some(m) = self.inner.open(item) {
                        return Ok(Some(m));
                    }
                }
                Pop::Empty => return Ok(None),
                Pop::Closed => return Err(self.inner.closed_error()),
            }
        }
    }

    /// Number of received messages waiting in the buffer.
    pub fn buffered(&self) -> usize {
        self.inner.inbox.len()
    }

    /// Drops every buffered message; returns how many there were.
    pub fn clear_buffer(&self) -> usize {
        self.inner.inbox.clear()
    }

    /// A blocking iterator over received messages.
    ///
    /// It ends after yielding one [`crate::ErrorKind::Closed`] error (with the
    /// reason) once the client is closed and the buffer is drained.
    ///
    /// # Blocking
    ///
    /// `next()` blocks until a message arrives or the client closes.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn demo(client: &socket_core::Client) {
    /// for message in client.iter() {
    ///     match message {
    ///         Ok(message) => println!("{:?}", message.data.get_str("path")),
    ///         Err(closed) => eprintln!("subscription ended: {closed}"),
    ///     }
    /// }
    /// # }
    /// ```
    pub fn iter(&self) -> Messages {
        Messages { client: self.clone(), done: false }
    }

    /// Received messages as an async [`Stream`]; same end as [`iter`](Self::iter).
    ///
    /// The stream is [`Unpin`] (and `Send`): `next()` from `futures-lite`'s or `futures`'
    /// `StreamExt` works on it directly, with no pinning, under any executor.
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn demo(client: &socket_core::Client) {
    /// use futures_lite::StreamExt;
    ///
    /// let mut messages = client.stream();
    /// while let Some(message) = messages.next().await {
    ///     match message {
    ///         Ok(message) => println!("{:?}", message.data.get_str("path")),
    ///         Err(closed) => eprintln!("subscription ended: {closed}"),
    ///     }
    /// }
    /// # }
    /// ```
    pub fn stream(&self) -> MessageStream {
        MessageStream { listener: None, client: self.clone(), done: false }
    }

    /// True only while a live connection exists.
    ///
    /// End-of-stream is noticed at once while the client reads; while the
    /// receive buffer is full the client does not read (back-pressure), so a
    /// lost connection is noticed once the application takes messages again.
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire)
    }

    /// The current connection state.
    pub fn state(&self) -> ConnectionState {
        self.inner.lock().state
    }

    /// State changes, starting with the current state; the channel ends after `Closed`.
    pub fn state_changes(&self) -> Receiver<ConnectionState> {
        let (tx, rx) = async_channel::unbounded();
        let mut sh = self.inner.lock();
        let _ = tx.try_send(sh.state);
        if sh.state != ConnectionState::Closed {
            sh.watchers.push(tx);
        }
        rx
    }

    /// Why the client closed, once it is closed.
    pub fn close_reason(&self) -> Option<String> {
        self.inner.lock().close_reason.clone()
    }

    /// True if the server accepts messages from this client (from `welcome`).
    pub fn can_send(&self) -> bool {
        self.inner.can_send.load(Ordering::Acquire)
    }

    /// True if the server re-broadcasts this client's messages to its other
    /// clients (`relay`, from `welcome`).
    ///
    /// False when the server said it does not, and for servers that did not
    /// say (legacy servers, or servers older than the `relay` key).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn demo(client: &socket_core::Client) {
    /// if !client.server_relays() {
    ///     eprintln!("messages sent here reach the server's application only");
    /// }
    /// # }
    /// ```
    pub fn server_relays(&self) -> bool {
        self.inner.server_relays.load(Ordering::Acquire)
    }

    /// The id the server gave this client, if it said (not for legacy servers).
    pub fn client_id(&self) -> Option<String> {
        self.inner.lock().client_id.clone()
    }

    /// The address of the server currently (or last) connected to.
    pub fn server_address(&self) -> Option<String> {
        self.inner.lock().address.clone()
    }

    /// The event this client follows.
    pub fn event(&self) -> &EventName {
        &self.inner.event
    }

    /// The options in force.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    /// Closes the connection for good and stops reconnecting: a lingering
    /// close. Sends in progress finish, the write side is shut down (the
    /// server reads end-of-stream after the last frame), and what the server
    /// still sends is read and discarded until it closes the connection, at
    /// most `default_timeout`. So no frame already sent is lost to a TCP
    /// reset or a half-read Unix socket. Without a live connection (during
    /// backoff, for instance) it returns at once.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Timeout`] when the server did not close the connection within
    /// `default_timeout`; [`crate::ErrorKind::Connection`] when the connection failed while
    /// closing. With a legacy server, `Ok` is the only receipt there is: the server read
    /// everything up to end-of-stream and closed.
    pub async fn close_async(&self) -> Result<()> {
        self.inner.close_lingering("disconnected by the application".to_owned()).await
    }

    /// Blocking [`close_async`](Self::close_async).
    ///
    /// # Blocking
    ///
    /// Blocks until the server closed the connection, at most `default_timeout`.
    ///
    /// # Errors
    ///
    /// See [`close_async`](Self::close_async).
    pub fn close(&self) -> Result<()> {
        runtime::block_on(self.close_async())
    }

    /// [`close_async`](Self::close_async) without its result.
    pub async fn disconnect_async(&self) {
        let _ = self.close_async().await;
    }

    /// Blocking [`disconnect_async`](Self::disconnect_async).
    ///
    /// # Blocking
    ///
    /// See [`close`](Self::close): at most `default_timeout`, immediately in practice.
    pub fn disconnect(&self) {
        runtime::block_on(self.disconnect_async());
    }
}

/// Blocking iterator over a client's messages (see [`Client::iter`]).
#[derive(Debug)]
pub struct Messages {
    client: Client,
    done: bool,
}

impl Iterator for Messages {
    type Item = Result<SocketMessage>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.client.receive(None) {
            Ok(Some(m)) => Some(Ok(m)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Async stream of a client's messages (see [`Client::stream`]). It is [`Unpin`] and `Send`.
#[derive(Debug)]
pub struct MessageStream {
    listener: Option<EventListener>,
    client: Client,
    done: bool,
}

// `Client::stream` promises `Stream + Unpin + Send`: keep it so (a compile error here, not in users' code).
const _: fn() = || {
    fn promised<T: Stream + Unpin + Send + 'static>() {}
    promised::<MessageStream>();
};

impl Stream for MessageStream {
    type Item = Result<SocketMessage>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        loop {
            match this.client.inner.inbox.poll_pop(&mut this.listener, cx) {
                Poll::Ready(Some(item)) => {
                    if let Some(m) = this.client.inner.open(item) {
                        return Poll::Ready(Some(Ok(m)));
                    }
                }
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(this.client.inner.closed_error())));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[derive(Debug)]
struct Inner {
    transport: Arc<dyn Transport>,
    event: EventName,
    config: Config,
    opts: ClientOptions,
    connected: AtomicBool,
    can_send: AtomicBool,
    /// `welcome.relay` of the current (or last) connection.
    server_relays: AtomicBool,
    shared: Mutex<Shared>,
    writer: async_lock::Mutex<Option<WriterSlot>>,
    /// The receive buffer.
    inbox: Inbox,
    /// The read side while the supervisor does not read it (`lead.rs`).
    reads: crate::handoff::ReadSlot<receive::LinkReader>,
    /// Set when a lingering close begins: the supervisor drains instead of reconnecting.
    lingering: AtomicBool,
    /// The next `ping` nonce of a receipt.
    next_nonce: AtomicU64,
    /// The connection generation of the oldest message sent and not confirmed by a receipt
    /// (0: none). Changed only under the writer lock.
    unconfirmed: AtomicU64,
    /// Connections installed so far (the generation of the live one).
    generation: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    state: ConnectionState,
    client_id: Option<String>,
    address: Option<String>,
    close_reason: Option<String>,
    shutdown_reason: Option<String>,
    watchers: Vec<Sender<ConnectionState>>,
    supervisor: Option<Task<()>>,
    /// The live connection's death switch.
    link: Option<Link>,
    /// Receipts waited for: the `ping` nonce and who waits for its `pong`.
    receipts: Vec<(u64, Sender<()>)>,
    /// How the drain of a lingering close ended (set by the supervisor).
    drained: Option<std::result::Result<(), String>>,
}
