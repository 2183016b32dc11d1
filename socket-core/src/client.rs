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

use std::future::pending;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use std::collections::VecDeque;

use async_channel::{Receiver, Sender};
use async_executor::Task;
use event_listener::EventListener;
use futures_lite::{future, Stream};

use self::inbox::{Inbox, Pop};

use crate::codec::{decode_body, decode_body_for, encode_frame, encode_frame_with, Frame, Limits};
use crate::config::{secs, Config};
use crate::control::{Control, ErrorCode};
use crate::error::{Error, ErrorKind, Result};
use crate::message::{EventName, SocketMessage};
use crate::runtime;
use crate::transport::{BoxRead, BoxWrite, Endpoint, Transport};
use crate::wire::{write_all, Fill, FrameReader, StallTimer, WriteFail};
use crate::PROTOCOL_VERSION;

mod inbox;

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

/// Client settings, usually taken from a [`Config`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Time allowed to connect and receive `welcome`.
    pub connect_timeout: Duration,
    /// Reconnect after a lost connection.
    pub auto_reconnect: bool,
    /// First reconnect delay.
    pub reconnect_initial_delay: Duration,
    /// Largest reconnect delay.
    pub reconnect_max_delay: Duration,
    /// Attempts before giving up; `None` is unlimited.
    pub reconnect_max_retries: Option<u32>,
    /// Received messages buffered before the client stops reading.
    pub receive_buffer_size: usize,
    /// Wait for a server that is not up yet.
    pub wait_for_server: bool,
    /// Talk to a legacy server: no `hello`, no `welcome`.
    pub legacy_server: bool,
    /// Name sent in `hello`.
    pub client_name: Option<String>,
    /// Read buffer size.
    pub buffer_size: usize,
    /// Frame and nesting limits.
    pub limits: Limits,
    /// Time allowed from a frame's first byte to its last.
    pub frame_timeout: Duration,
    /// Zone of `timestamp_iso` in messages the client creates.
    pub timezone: jiff::tz::TimeZone,
    /// With `wait_for_server`: how long `connect` waits for a server (`None`: no limit).
    pub wait_timeout: Option<Duration>,
    /// Never send: `send` fails at once with [`crate::ErrorKind::SendNotAllowed`].
    pub receive_only: bool,
    /// Time a `send` may make no progress before it fails (the connection is then reset).
    pub send_timeout: Duration,
}

impl ClientOptions {
    /// Options from `config`.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] if the time zone is unknown.
    pub fn from_config(config: &Config) -> Result<Self> {
        let s = &config.socket;
        Ok(ClientOptions {
            connect_timeout: secs(s.default_timeout),
            auto_reconnect: s.auto_reconnect,
            reconnect_initial_delay: secs(s.reconnect_initial_delay),
            reconnect_max_delay: secs(s.reconnect_max_delay),
            reconnect_max_retries: s.reconnect_max_retries,
            receive_buffer_size: s.receive_buffer_size,
            wait_for_server: s.wait_for_server,
            legacy_server: s.legacy_server,
            client_name: None,
            buffer_size: s.buffer_size,
            limits: Limits { max_frame_len: s.max_message_size, max_depth: s.max_nesting_depth },
            frame_timeout: secs(s.frame_timeout),
            timezone: config.time_zone()?,
            wait_timeout: None,
            receive_only: false,
            send_timeout: secs(s.write_stall_timeout),
        })
    }
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
    /// The calling thread parks itself; no executor or timer is involved.
    ///
    /// # Errors
    ///
    /// See [`receive_async`](Self::receive_async).
    pub fn receive(&self, timeout: Option<Duration>) -> Result<Option<SocketMessage>> {
        let mut deadline = None;
        loop {
            let item = match self.inner.inbox.try_pop() {
                Pop::Item(item) => item,
                Pop::Closed => return Err(self.inner.closed_error()),
                Pop::Empty => {
                    let at = timeout.and_then(|t| *deadline.get_or_insert_with(|| runtime::deadline_after(t)));
                    match self.inner.inbox.pop_blocking(at) {
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

/// What [`Inner::write_frame`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// An application message: a receipt must cover it.
    Message,
    /// The `ping` of a receipt.
    Receipt,
    /// Anything else (`pong`).
    Other,
}

/// One entry of the receive buffer.
///
/// Data frames stay raw and are decoded by the consumer, on its own thread
/// (decoding runs in parallel with the reader, and the message is allocated
/// and freed on one thread). Frames that may be protocol control or errors
/// are decoded by the reader, which must act on them.
#[derive(Debug)]
enum Incoming {
    Raw(Body),
    Decoded(SocketMessage),
}

/// An undecoded frame body: a slice of the chunk that holds every raw body
/// of one read (one allocation per read, not per frame; the chunk is freed
/// with the last body taken from it).
#[derive(Debug)]
struct Body {
    chunk: Arc<Vec<u8>>,
    start: usize,
    end: usize,
}

impl Body {
    fn bytes(&self) -> &[u8] {
        &self.chunk[self.start..self.end]
    }
}

/// Largest first allocation of a [`ReadBatch`] chunk (the engine's largest read).
const CHUNK_HINT_MAX: usize = 64 << 10;

/// The frames of one read on their way to the receive buffer, in order: raw
/// bodies are copied into one chunk, shared once the read is handed over.
#[derive(Debug, Default)]
struct ReadBatch {
    chunk: Vec<u8>,
    items: Vec<Pending>,
}

/// An entry of a [`ReadBatch`] before its chunk is shared.
#[derive(Debug)]
enum Pending {
    /// A raw body: `chunk[start..end]`.
    Raw(usize, usize),
    Decoded(SocketMessage),
}

impl ReadBatch {
    /// Copies `body` into the chunk; `capacity_hint` (the bytes buffered by
    /// the read, at most [`CHUNK_HINT_MAX`] used) sizes a new chunk.
    fn raw(&mut self, body: &[u8], capacity_hint: usize) {
        if self.chunk.capacity() == 0 {
            self.chunk.reserve(capacity_hint.min(CHUNK_HINT_MAX).max(body.len()));
        }
        let start = self.chunk.len();
        self.chunk.extend_from_slice(body);
        self.items.push(Pending::Raw(start, self.chunk.len()));
    }

    fn decoded(&mut self, msg: SocketMessage) {
        self.items.push(Pending::Decoded(msg));
    }

    /// Appends the batch to `out` as receive-buffer entries; leaves it empty.
    fn drain_into(&mut self, out: &mut VecDeque<Incoming>) {
        if self.items.is_empty() {
            return;
        }
        // A chunk lives as long as its last unread body: no room kept beyond
        // what the bodies need (a hint can overshoot when a large frame is
        // still being read).
        if self.chunk.capacity() > 2 * self.chunk.len() + 4096 {
            self.chunk.shrink_to_fit();
        }
        let chunk = Arc::new(std::mem::take(&mut self.chunk));
        out.extend(self.items.drain(..).map(|item| match item {
            Pending::Raw(start, end) => Incoming::Raw(Body { chunk: Arc::clone(&chunk), start, end }),
            Pending::Decoded(msg) => Incoming::Decoded(msg),
        }));
    }
}

/// True if `body` may carry `message_type` `control` or `error` (anything a
/// shallow scan does not show to be `data`; a false positive only means the
/// frame is decoded on the reader side).
fn may_be_protocol(body: &[u8]) -> bool {
    !crate::codec::is_data_body(body)
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

/// The death switch of one connection: whoever notices first (reader or a
/// sender) closes it, and everybody else waiting on it stops.
#[derive(Debug, Clone)]
struct Link {
    tx: Sender<()>,
    rx: Receiver<()>,
}

impl Link {
    fn new() -> Self {
        let (tx, rx) = async_channel::bounded(1);
        Link { tx, rx }
    }
    fn kill(&self) {
        self.tx.close();
    }
    fn is_dead(&self) -> bool {
        self.tx.is_closed()
    }
    async fn dead(&self) {
        let _ = self.rx.recv().await;
    }
}

struct WriterSlot {
    w: BoxWrite,
    link: Link,
    st: StallTimer,
    /// The connection's generation.
    generation: u64,
}

impl std::fmt::Debug for WriterSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterSlot").field("link", &self.link).finish_non_exhaustive()
    }
}

/// Kills the link if a write is abandoned half-way (the stream would be out of sync).
struct KillOnDrop<'a>(Option<&'a Link>);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(link) = self.0 {
            link.kill();
        }
    }
}

/// A connection that completed its handshake.
struct Established {
    reader: BoxRead,
    writer: BoxWrite,
    fr: FrameReader,
    /// Messages the server sent before `welcome`, delivered first.
    early: VecDeque<Incoming>,
    welcome: Option<(String, bool, bool)>,
    address: String,
}

/// The reading side of an installed connection, owned by the supervisor.
struct LinkReader {
    reader: BoxRead,
    fr: FrameReader,
    /// Messages read before `welcome` and not yet in the receive buffer.
    early: VecDeque<Incoming>,
    link: Link,
}

/// How long a discovered endpoint (one port of a range) has to connect and answer `welcome`
/// before the client moves on to the next port (SPEC §5, TCP transport).
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// The outcome of one endpoint in [`Inner::establish`].
enum Attempt {
    /// Connected (boxed: the connection state is large), or an error that ends the connect.
    Done(Result<Box<Established>>),
    /// Not our server (nothing there, another event, another protocol): try the next one.
    Next(Error),
    /// Silent until the probe deadline: try the next one, and this one again at the end.
    Silent(Error),
}

/// How one endpoint's handshake failed.
enum HsError {
    /// Try the next endpoint.
    Next(Error),
    /// Give up.
    Fatal(Error),
}

impl Inner {
    /// The message of a receive-buffer entry; `None` (logged) for a malformed frame.
    fn open(&self, item: Incoming) -> Option<SocketMessage> {
        match item {
            Incoming::Decoded(m) => Some(m),
            Incoming::Raw(body) => match decode_body_for(body.bytes(), &self.opts.limits, &self.event) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::warn!(event = %self.event, error = %e, "malformed frame from the server dropped");
                    None
                }
            },
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn closed_error(&self) -> Error {
        let reason = self.lock().close_reason.clone().unwrap_or_else(|| "closed".to_owned());
        Error::new(ErrorKind::Closed, format!("client for event {} is closed: {reason}", self.event))
    }

    fn not_connected(&self) -> Error {
        if self.lock().state == ConnectionState::Closed {
            return self.closed_error();
        }
        Error::new(
            ErrorKind::Connection,
            format!("not connected to the server for event {} (reconnecting): try again later", self.event),
        )
    }

    fn check_can_send(&self) -> Result<()> {
        if self.can_send.load(Ordering::Acquire) {
            return Ok(());
        }
        let text = if self.opts.receive_only {
            format!("client for event {} is receive-only: sending is disabled (receive_only)", self.event)
        } else {
            format!(
                "the server for event {} does not accept messages from clients (allow_client_send = false)",
                self.event
            )
        };
        Err(Error::new(ErrorKind::SendNotAllowed, text))
    }

    fn set_state(&self, sh: &mut Shared, state: ConnectionState) {
        if sh.state == state || sh.state == ConnectionState::Closed {
            return;
        }
        sh.state = state;
        sh.watchers.retain(|w| w.try_send(state).is_ok());
        if state == ConnectionState::Closed {
            sh.watchers.clear();
        }
    }

    /// Closed for good: receive ends (after the buffer), send fails.
    fn close(&self, reason: String) {
        self.connected.store(false, Ordering::Release);
        {
            let mut sh = self.lock();
            if sh.state == ConnectionState::Closed {
                return;
            }
            tracing::debug!(event = %self.event, %reason, "client closed");
            sh.close_reason = Some(reason);
            self.set_state(&mut sh, ConnectionState::Closed);
            // Interrupts a blocked sender and the reader of the live connection.
            if let Some(link) = sh.link.take() {
                link.kill();
            }
        }
        self.inbox.close();
        if let Some(mut slot) = self.writer.try_lock() {
            slot.take();
        }
    }

    /// Stops waiting for the receipt `nonce`.
    fn forget_receipt(&self, nonce: u64) {
        self.lock().receipts.retain(|(n, _)| *n != nonce);
    }

    /// The lingering close of [`Client::close_async`]: sends in progress finish (they hold the
    /// writer lock), the write side is shut down, and the supervisor reads and discards until
    /// the server closes, at most `connect_timeout`.
    async fn close_lingering(&self, reason: String) -> Result<()> {
        let linger = self.opts.connect_timeout;
        let mut slot = self.writer.lock().await;
        let (task, live) = {
            let mut sh = self.lock();
            if sh.state == ConnectionState::Closed && sh.supervisor.is_none() {
                return Ok(());
            }
            (sh.supervisor.take(), sh.link.is_some())
        };
        self.lingering.store(true, Ordering::Release);
        // Closed from here on: sends fail, receivers end after the buffer, the reader stops.
        self.close(reason);
        let writer = slot.take();
        drop(slot);
        let Some(task) = task else { return Ok(()) };
        let (Some(mut writer), true) = (writer, live) else {
            // No live connection (backoff, a reconnect in progress): nothing to linger for.
            task.cancel().await;
            return Ok(());
        };
        let started = Instant::now();
        let shut = runtime::timeout(linger, futures_lite::AsyncWriteExt::close(&mut writer.w)).await;
        let left = linger.saturating_sub(started.elapsed());
        let finished = runtime::timeout(left, task).await.is_some();
        drop(writer);
        let event = &self.event;
        match (shut, finished, self.lock().drained.take()) {
            (Some(Err(e)), ..) => Err(Error::new(
                ErrorKind::Connection,
                format!("closing the connection to the server for event {event} failed"),
            )
            .with_source(e)),
            (_, true, Some(Ok(()))) => Ok(()),
            (_, true, Some(Err(e))) => Err(Error::new(
                ErrorKind::Connection,
                format!("the connection to the server for event {event} failed while closing: {e}"),
            )),
            _ => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "the server for event {event} did not close the connection within {linger:?} (default_timeout) \
                     after this client finished sending: it may not have read everything"
                ),
            )),
        }
    }

    fn backoff(&self, cur: Duration) -> Duration {
        backoff_delay(self.opts.reconnect_initial_delay, cur)
    }

    fn next_delay(&self, cur: Duration) -> Duration {
        cur.saturating_mul(2).min(self.opts.reconnect_max_delay.max(self.opts.reconnect_initial_delay))
    }

    async fn first_connect(&self) -> Result<Established> {
        let started = Instant::now();
        let mut delay = self.opts.reconnect_initial_delay;
        loop {
            match self.establish().await {
                Ok(est) => return Ok(est),
                Err(e)
                    if self.opts.wait_for_server && matches!(e.kind(), ErrorKind::Connection | ErrorKind::Timeout) =>
                {
                    let wait = self.backoff(delay);
                    if let Some(limit) = self.opts.wait_timeout {
                        if started.elapsed() + wait > limit {
                            return Err(Error::new(
                                ErrorKind::Timeout,
                                format!(
                                    "no server for event {} appeared within {limit:?} (wait_timeout): last error: {}",
                                    self.event,
                                    e.message()
                                ),
                            ));
                        }
                    }
                    tracing::debug!(event = %self.event, error = %e, ?wait, "waiting for a server");
                    runtime::sleep(wait).await;
                    delay = self.next_delay(delay);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Tries every endpoint in order; the first completed handshake wins.
    ///
    /// The endpoints are resolved once. A discovered endpoint (one of a port range) gets
    /// [`PROBE_TIMEOUT`] to connect and answer `welcome`: a port held by something else (a
    /// silent listener, another protocol) costs that much, not the whole `default_timeout`.
    /// Endpoints that were silent for the probe are tried once more, in order, with what is
    /// left of `default_timeout` (a real server slower than the probe is still found). The
    /// whole connect stays within `default_timeout`.
    async fn establish(&self) -> Result<Established> {
        let deadline = runtime::deadline_after(self.opts.connect_timeout);
        let endpoints =
            match runtime::until(deadline, self.transport.resolve_endpoints(&self.event, &self.config)).await {
                Some(endpoints) => endpoints?,
                None => {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "resolving the address of the server for event {} timed out after {:?}",
                            self.event, self.opts.connect_timeout
                        ),
                    ))
                }
            };
        let mut last: Option<Error> = None;
        let mut silent: Vec<&Endpoint> = Vec::new();
        for ep in &endpoints {
            let probe = if ep.explicit { deadline } else { runtime::deadline_after(PROBE_TIMEOUT) };
            let probe = match (probe, deadline) {
                (Some(p), Some(d)) => Some(p.min(d)),
                (p, d) => p.or(d),
            };
            match self.attempt(ep, probe, deadline).await {
                Attempt::Done(result) => return result.map(|est| *est),
                Attempt::Next(e) => last = Some(e),
                Attempt::Silent(e) => {
                    last = Some(e);
                    silent.push(ep);
                }
            }
        }
        for ep in silent {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            match self.attempt(ep, deadline, deadline).await {
                Attempt::Done(result) => return result.map(|est| *est),
                Attempt::Next(e) | Attempt::Silent(e) => last = Some(e),
            }
        }
        if let Some(e) = last.as_ref().filter(|e| e.kind() == ErrorKind::Timeout) {
            // Every candidate was silent until the end: the connect timed out.
            return Err(Error::new(ErrorKind::Timeout, e.message().to_owned()));
        }
        self.no_server(&endpoints, last)
    }

    /// One connect and handshake at `ep`, the probe bounded by `probe` (at most `deadline`).
    async fn attempt(&self, ep: &Endpoint, probe: Option<Instant>, deadline: Option<Instant>) -> Attempt {
        let timed_out = |ep: &Endpoint| {
            Error::new(
                ErrorKind::Timeout,
                format!(
                    "connecting to the server for event {} at {} timed out after {:?}",
                    self.event, ep.address, self.opts.connect_timeout
                ),
            )
        };
        let conn = match runtime::until(probe, self.transport.connect(ep, &self.config)).await {
            None if probe == deadline || ep.explicit => return Attempt::Done(Err(timed_out(ep))),
            None => return Attempt::Silent(timed_out(ep)),
            Some(Ok(conn)) => conn,
            Some(Err(e)) if e.kind() == ErrorKind::Connection => return Attempt::Next(e),
            Some(Err(e)) => return Attempt::Done(Err(e)),
        };
        let fr = FrameReader::new(self.opts.buffer_size, self.opts.limits);
        if self.opts.legacy_server {
            return Attempt::Done(Ok(Box::new(Established {
                reader: conn.reader,
                writer: conn.writer,
                fr,
                early: VecDeque::new(),
                welcome: None,
                address: ep.address.clone(),
            })));
        }
        match self.handshake(conn.reader, conn.writer, fr, ep, probe).await {
            Ok(est) => Attempt::Done(Ok(Box::new(est))),
            Err(HsError::Next(e)) if e.kind() == ErrorKind::Timeout && probe != deadline => Attempt::Silent(e),
            Err(HsError::Next(e)) => Attempt::Next(e),
            Err(HsError::Fatal(e)) => Attempt::Done(Err(e)),
        }
    }

    /// The error when no endpoint had our server.
    fn no_server(&self, endpoints: &[Endpoint], last: Option<Error>) -> Result<Established> {
        let addresses = match endpoints {
            [] => "no address".to_owned(),
            [one] => one.address.clone(),
            [first, .., end] if endpoints.len() > 3 => {
                format!("{} .. {} ({} addresses)", first.address, end.address, endpoints.len())
            }
            all => all.iter().map(|e| e.address.as_str()).collect::<Vec<_>>().join(", "),
        };
        let err = Error::new(
            ErrorKind::Connection,
            format!(
                "no server for event {event} at {addresses}: start one with `socketctl serve {event}`",
                event = self.event
            ),
        );
        Err(match last {
            Some(source) => err.with_source(source),
            None => err,
        })
    }

    async fn handshake(
        &self,
        mut reader: BoxRead,
        mut writer: BoxWrite,
        mut fr: FrameReader,
        ep: &Endpoint,
        deadline: Option<Instant>,
    ) -> std::result::Result<Established, HsError> {
        let event = &self.event;
        let addr = &ep.address;
        let hello = Control::Hello { protocol: PROTOCOL_VERSION, client_name: self.opts.client_name.clone() }
            .to_message(event, &self.opts.timezone);
        let frame = encode_frame(&hello, usize::MAX).map_err(HsError::Fatal)?;
        let mut st = StallTimer::new();
        // A refusing server may have closed already: its ERROR frame can
        // still be read, so a failed write is only remembered.
        let write_err = match runtime::until(
            deadline,
            write_all(&mut writer, frame.as_bytes(), self.opts.connect_timeout, &mut st, pending()),
        )
        .await
        {
            Some(Ok(())) => None,
            Some(Err(e)) => Some(e.to_string()),
            None => Some("timed out".to_owned()),
        };
        let timeout = || {
            let e = Error::new(
                ErrorKind::Timeout,
                format!(
                    "the server at {addr} did not answer hello within {:?}: if it is a legacy server, set socket.legacy_server = true (--legacy)",
                    self.opts.connect_timeout
                ),
            );
            if ep.explicit {
                HsError::Fatal(e)
            } else {
                HsError::Next(e)
            }
        };
        let no_welcome = || {
            let e = Error::new(
                ErrorKind::Connection,
                format!(
                    "the server at {addr} did not answer hello with welcome: if it is a legacy server, set socket.legacy_server = true (--legacy)"
                ),
            );
            if ep.explicit {
                HsError::Fatal(e)
            } else {
                HsError::Next(e)
            }
        };
        // A discovered endpoint may belong to another event's server: try the next one. At an
        // explicit address the wrong server is an error; its messages are never delivered.
        let wrong_event = |other: &str| {
            let e =
                Error::new(ErrorKind::Connection, format!("the server at {addr} serves event {other}, not {event}"));
            if ep.explicit {
                HsError::Fatal(e)
            } else {
                HsError::Next(e)
            }
        };
        // Messages that came before `welcome`: a server that got our `hello`
        // after its `hello_grace` served us as a legacy client until then
        // (offline replay, broadcasts) and answers `welcome` behind them.
        // Kept in order, at most `receive_buffer_size` of them.
        let mut early: VecDeque<Incoming> = VecDeque::new();
        let msg = loop {
            let body = match fr.next_frame() {
                Ok(Some(body)) => body,
                Ok(None) => {
                    let at = deadline.into_iter().chain(fr.frame_deadline(self.opts.frame_timeout)).min();
                    match fr.fill(&mut reader, at).await {
                        Ok(Fill::Data) => {}
                        // A server that sent messages but no `welcome` is a legacy server.
                        Ok(Fill::Deadline) if !early.is_empty() => return Err(no_welcome()),
                        Ok(Fill::Deadline) => return Err(timeout()),
                        Ok(Fill::Eof) | Err(_) => {
                            let why = write_err.unwrap_or_else(|| "no answer".to_owned());
                            return Err(HsError::Next(Error::new(
                                ErrorKind::Connection,
                                format!("the server at {addr} closed the connection during the handshake ({why})"),
                            )));
                        }
                    }
                    continue;
                }
                Err(e) => {
                    return Err(HsError::Next(
                        Error::new(
                            ErrorKind::Connection,
                            format!("the server at {addr} sent an invalid frame during the handshake"),
                        )
                        .with_source(e),
                    ))
                }
            };
            let msg = decode_body(body, &self.opts.limits).map_err(|e| {
                HsError::Next(
                    Error::new(
                        ErrorKind::Connection,
                        format!("the server at {addr} answered hello with a malformed frame"),
                    )
                    .with_source(e),
                )
            })?;
            if Control::parse(&msg).is_some() || ErrorCode::parse(&msg).is_some() {
                break msg;
            }
            if msg.event_name != *event {
                return Err(wrong_event(msg.event_name.as_str()));
            }
            if early.len() >= self.opts.receive_buffer_size.max(1) {
                return Err(no_welcome());
            }
            early.push_back(Incoming::Decoded(msg));
        };
        if let Some(Ok(Control::Welcome { protocol, client_id, allow_client_send, event_name, relay, .. })) =
            Control::parse(&msg)
        {
            if event_name != event.as_str() {
                return Err(wrong_event(&event_name));
            }
            if protocol != PROTOCOL_VERSION {
                return Err(HsError::Fatal(
                    Error::new(
                        ErrorKind::Connection,
                        format!(
                            "the server at {addr} speaks protocol {protocol}, this client speaks {PROTOCOL_VERSION}"
                        ),
                    )
                    .with_source(ProtocolMismatch),
                ));
            }
            return Ok(Established {
                reader,
                writer,
                fr,
                early,
                welcome: Some((client_id, allow_client_send, relay)),
                address: addr.clone(),
            });
        }
        if let Some((code, text)) = ErrorCode::parse(&msg) {
            if msg.event_name != *event {
                return Err(wrong_event(msg.event_name.as_str()));
            }
            let kind =
                if code == ErrorCode::MaxConnections { ErrorKind::MaxConnections } else { ErrorKind::Connection };
            return Err(HsError::Fatal(Error::new(
                kind,
                format!("the server for event {event} at {addr} refused the connection ({code}): {text}"),
            )));
        }
        Err(no_welcome())
    }

    /// Makes an established connection the live one.
    async fn install(&self, est: Established) -> Result<LinkReader> {
        let link = Link::new();
        let mut slot = self.writer.lock().await;
        {
            let mut sh = self.lock();
            if sh.state == ConnectionState::Closed {
                drop(sh);
                return Err(self.closed_error());
            }
            sh.address = Some(est.address.clone());
            sh.shutdown_reason = None;
            if let Some((id, allowed, relay)) = &est.welcome {
                sh.client_id = Some(id.clone());
                self.can_send.store(*allowed && !self.opts.receive_only, Ordering::Release);
                self.server_relays.store(*relay, Ordering::Release);
            } else {
                self.can_send.store(!self.opts.receive_only, Ordering::Release);
                self.server_relays.store(false, Ordering::Release);
            }
            let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
            *slot = Some(WriterSlot { w: est.writer, link: link.clone(), st: StallTimer::new(), generation });
            sh.link = Some(link.clone());
            self.connected.store(true, Ordering::Release);
            self.set_state(&mut sh, ConnectionState::Connected);
        }
        tracing::debug!(event = %self.event, address = %est.address, "connected");
        Ok(LinkReader { reader: est.reader, fr: est.fr, early: est.early, link })
    }

    /// Writes one frame on the live connection; returns its generation and, for a
    /// [`Sent::Receipt`], the generation of the oldest message it does not confirm yet (0:
    /// none), which it takes over.
    async fn write_frame(&self, frame: &Frame, sent: Sent) -> Result<(u64, u64)> {
        let mut slot = self.writer.lock().await;
        let Some(s) = slot.as_mut() else {
            return Err(self.not_connected());
        };
        if s.link.is_dead() {
            *slot = None;
            return Err(self.not_connected());
        }
        let WriterSlot { w, link, st, generation } = s;
        let generation = *generation;
        let mut guard = KillOnDrop(Some(link));
        let res = write_all(w, frame.as_bytes(), self.opts.send_timeout, st, link.dead()).await;
        guard.0 = None;
        drop(guard);
        match res {
            // Under the writer lock: receipts and messages are accounted in wire order.
            Ok(()) => Ok(match sent {
                Sent::Message => {
                    let _ = self.unconfirmed.compare_exchange(0, generation, Ordering::AcqRel, Ordering::Acquire);
                    (generation, 0)
                }
                Sent::Receipt => (generation, self.unconfirmed.swap(0, Ordering::AcqRel)),
                Sent::Other => (generation, 0),
            }),
            Err(fail) => {
                link.kill();
                *slot = None;
                self.connected.store(false, Ordering::Release);
                Err(match fail {
                    WriteFail::Stalled => Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "sending to the server for event {} made no progress for {:?}: the server does not read; the connection is reset",
                            self.event, self.opts.send_timeout
                        ),
                    ),
                    WriteFail::Interrupted { .. } => Error::new(
                        ErrorKind::Connection,
                        format!("lost the connection to the server for event {} while sending", self.event),
                    ),
                    WriteFail::Io(e) => Error::new(
                        ErrorKind::Connection,
                        format!("cannot send to the server for event {}: the connection failed", self.event),
                    )
                    .with_source(e),
                })
            }
        }
    }

    /// Runs connections and reconnects until closed.
    async fn supervise(self: Arc<Self>, mut link: LinkReader) {
        loop {
            let switch = link.link.clone();
            let reason = future::or(self.read_frames(&mut link), async {
                switch.dead().await;
                "a write to the server failed".to_owned()
            })
            .await;
            self.connected.store(false, Ordering::Release);
            link.link.kill();
            // Receipts of this connection can no longer come: their waiters fail.
            self.lock().receipts.clear();
            if self.lingering.load(Ordering::Acquire) {
                let drained = drain(&mut link.reader).await;
                self.lock().drained = Some(drained);
                return;
            }
            if let Some(s) = self.writer.lock().await.take() {
                drop(s);
            }
            let reason = match self.lock().shutdown_reason.take() {
                Some(r) if r.is_empty() => "the server shut down".to_owned(),
                Some(r) => format!("the server shut down: {r}"),
                None => reason,
            };
            if !self.opts.auto_reconnect {
                self.close(format!("connection to the server for event {} ended: {reason}", self.event));
                return;
            }
            tracing::info!(event = %self.event, %reason, "connection lost, reconnecting");
            {
                let mut sh = self.lock();
                if sh.state == ConnectionState::Closed {
                    return;
                }
                self.set_state(&mut sh, ConnectionState::Reconnecting);
            }
            let mut delay = self.opts.reconnect_initial_delay;
            let mut attempts: u32 = 0;
            let mut last = reason;
            link = loop {
                if self.opts.reconnect_max_retries.is_some_and(|max| attempts >= max) {
                    self.close(format!(
                        "gave up reconnecting to the server for event {} after {attempts} attempts: {last}",
                        self.event
                    ));
                    return;
                }
                runtime::sleep(self.backoff(delay)).await;
                attempts += 1;
                match self.establish().await {
                    Ok(est) => match self.install(est).await {
                        Ok(l) => break l,
                        Err(_) => return,
                    },
                    Err(e) if ProtocolMismatch::is_cause_of(&e) => {
                        // Retrying cannot help: the server speaks another protocol version.
                        self.close(format!("reconnecting to the server for event {} failed: {e}", self.event));
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(event = %self.event, error = %e, attempts, "reconnect attempt failed");
                        last = e.to_string();
                        delay = self.next_delay(delay);
                    }
                }
            };
        }
    }

    /// Reads frames into the receive buffer until the connection ends; returns why.
    async fn read_frames(&self, lr: &mut LinkReader) -> String {
        const CLOSED: &str = "the client was closed";
        // Data frames of one read, handed to the inbox together; first those read before `welcome`.
        let mut batch: VecDeque<Incoming> = std::mem::take(&mut lr.early);
        let mut read = ReadBatch::default();
        loop {
            // Every raw body of this read fits in what is buffered now.
            let hint = lr.fr.buffered();
            loop {
                let body = match lr.fr.next_frame() {
                    Ok(Some(body)) => body,
                    Ok(None) => break,
                    Err(e) => return format!("the server sent an invalid frame: {e}"),
                };
                if !may_be_protocol(body) {
                    read.raw(body, hint);
                    continue;
                }
                let msg = match decode_body(body, &self.opts.limits) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(event = %self.event, error = %e, "malformed frame from the server dropped");
                        continue;
                    }
                };
                // What came before this frame is delivered before it is acted on.
                read.drain_into(&mut batch);
                if self.inbox.push_all(&mut batch).await.is_err() {
                    return CLOSED.to_owned();
                }
                match Control::parse(&msg) {
                    Some(Ok(Control::Ping { nonce })) => {
                        let pong = Control::Pong { nonce }.to_message(&self.event, &self.opts.timezone);
                        if let Ok(f) = encode_frame(&pong, usize::MAX) {
                            let _ = self.write_frame(&f, Sent::Other).await;
                        }
                        continue;
                    }
                    Some(Ok(Control::Pong { nonce })) => {
                        // A receipt: everything sent before its `ping` was taken.
                        let mut sh = self.lock();
                        if let Some(i) = sh.receipts.iter().position(|(n, _)| *n == nonce) {
                            let (_, tx) = sh.receipts.swap_remove(i);
                            let _ = tx.try_send(());
                        }
                        continue;
                    }
                    Some(Ok(Control::Shutdown { reason })) => {
                        self.lock().shutdown_reason = Some(reason);
                        continue;
                    }
                    Some(_) => continue,
                    None => {}
                }
                if let Some((ErrorCode::SendNotAllowed, _)) = ErrorCode::parse(&msg) {
                    self.can_send.store(false, Ordering::Release);
                }
                read.decoded(msg);
            }
            read.drain_into(&mut batch);
            if self.inbox.push_all(&mut batch).await.is_err() {
                return CLOSED.to_owned();
            }
            let deadline = lr.fr.frame_deadline(self.opts.frame_timeout);
            match lr.fr.fill(&mut lr.reader, deadline).await {
                Ok(Fill::Data) => {}
                Ok(Fill::Eof) => return "the server closed the connection".to_owned(),
                Ok(Fill::Deadline) => {
                    return format!("the server did not complete a frame within {:?}", self.opts.frame_timeout)
                }
                Err(e) => return format!("read failed: {e}"),
            }
        }
    }
}

/// Reads and discards until end-of-stream: the end of a lingering close.
async fn drain(reader: &mut BoxRead) -> std::result::Result<(), String> {
    let mut sink = vec![0u8; 16 << 10];
    loop {
        match futures_lite::AsyncReadExt::read(reader, &mut sink).await {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The cause attached to a handshake error when the server speaks another
/// protocol version: a reconnect then closes the client instead of retrying.
#[derive(Debug)]
struct ProtocolMismatch;

impl ProtocolMismatch {
    fn is_cause_of(e: &Error) -> bool {
        std::error::Error::source(e).is_some_and(|s| s.is::<ProtocolMismatch>())
    }
}

impl std::fmt::Display for ProtocolMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("upgrade the client or the server so both speak the same version")
    }
}

impl std::error::Error for ProtocolMismatch {}

/// A random delay in `[initial / 2, cur]` (full jitter above the floor `initial / 2`).
fn backoff_delay(initial: Duration, cur: Duration) -> Duration {
    let floor = (initial / 2).min(cur);
    floor + (cur - floor).mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Data;

    #[test]
    fn a_read_batch_shares_one_chunk_and_keeps_the_frame_order() -> Result<()> {
        let event = EventName::new("t")?;
        let mut read = ReadBatch::default();
        read.raw(b"first", 100);
        read.decoded(SocketMessage::data(event.clone(), Data::new().with("n", 2)));
        read.raw(b"third", 100);
        let mut out = VecDeque::new();
        read.drain_into(&mut out);
        assert!(read.items.is_empty() && read.chunk.capacity() == 0, "the batch is left empty");
        let got: Vec<_> = out.iter().collect();
        let (Incoming::Raw(a), Incoming::Decoded(m), Incoming::Raw(c)) = (got[0], got[1], got[2]) else {
            panic!("order lost: {got:?}");
        };
        assert_eq!((a.bytes(), c.bytes()), (&b"first"[..], &b"third"[..]));
        assert_eq!(m.data.get("n").and_then(|v| v.as_u64()), Some(2));
        assert!(Arc::ptr_eq(&a.chunk, &c.chunk), "one allocation per read");
        // A hint far above what the bodies need is not kept alive with them.
        read.raw(b"small", 60_000);
        read.drain_into(&mut out);
        let Some(Incoming::Raw(small)) = out.back() else { panic!("no raw body") };
        assert!(small.chunk.capacity() < 4096 + 10, "chunk kept {} bytes", small.chunk.capacity());
        // Nothing to hand over: no entry, no allocation.
        read.drain_into(&mut out);
        assert_eq!(out.len(), 4);
        Ok(())
    }

    #[test]
    fn backoff_stays_between_floor_and_cap_and_spreads() {
        let initial = Duration::from_millis(100);
        let cap = Duration::from_secs(5);
        let mut cur = initial;
        for _ in 0..10 {
            cur = cur.saturating_mul(2).min(cap);
        }
        assert_eq!(cur, cap);
        let samples: Vec<Duration> = (0..1000).map(|_| backoff_delay(initial, cur)).collect();
        assert!(samples.iter().all(|d| *d >= initial / 2 && *d <= cap));
        let mean = samples.iter().sum::<Duration>() / 1000;
        // Full jitter: the mean sits near the middle, far from the cap (no synchronized spikes).
        assert!(mean > Duration::from_millis(2000) && mean < Duration::from_millis(3100), "mean {mean:?}");
        // The first delay is jittered too, in [initial / 2, initial].
        let first: Vec<Duration> = (0..1000).map(|_| backoff_delay(initial, initial)).collect();
        assert!(first.iter().all(|d| *d >= initial / 2 && *d <= initial));
        let spread = first.iter().max().copied().unwrap_or_default() - first.iter().min().copied().unwrap_or_default();
        assert!(spread > initial / 4, "first delays spread over {spread:?} only");
    }

    #[test]
    fn only_data_frames_skip_the_reader_side_decode() -> Result<()> {
        let event = EventName::new("t")?;
        let tz = jiff::tz::TimeZone::UTC;
        let data = SocketMessage::data(event.clone(), crate::Data::new().with("message_type", "control"));
        assert!(!may_be_protocol(encode_frame(&data, usize::MAX)?.body()));
        let ping = Control::Ping { nonce: 1 }.to_message(&event, &tz);
        assert!(may_be_protocol(encode_frame(&ping, usize::MAX)?.body()));
        assert!(may_be_protocol(b"\x81"));
        assert!(may_be_protocol(b""));
        Ok(())
    }

    #[test]
    fn options_from_config() -> Result<()> {
        let o = ClientOptions::from_config(&Config::default())?;
        assert_eq!(o.connect_timeout, Duration::from_secs(5));
        assert_eq!(o.reconnect_initial_delay, Duration::from_millis(100));
        assert_eq!(o.reconnect_max_delay, Duration::from_secs(5));
        assert_eq!(o.receive_buffer_size, 1024);
        assert!(o.auto_reconnect && !o.receive_only && o.wait_timeout.is_none());
        Ok(())
    }
}
