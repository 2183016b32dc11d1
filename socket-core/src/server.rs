//! The server engine. (API shell: the engine is being written.)

use std::sync::Arc;
use std::time::Duration;

use crate::codec::Limits;
use crate::config::{secs, Config};
use crate::error::Result;
use crate::message::{EventName, SocketMessage};
use crate::transport::Transport;

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
    /// A client connected.
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
            buffer_size: s.buffer_size,
            limits: Limits { max_frame_len: s.max_message_size, max_depth: s.max_nesting_depth },
            timezone: config.time_zone()?,
            blocking_mode: s.blocking_mode,
        })
    }
}

/// A server bound to one event name. Cheap to clone; clones share the server.
#[derive(Debug, Clone)]
pub struct Server {
    #[allow(dead_code)]
    inner: Arc<()>,
}

#[allow(clippy::unused_async, unused_variables)]
impl Server {
    /// A server for `event` over `transport`, configured by `config` (not started).
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] for invalid settings.
    pub fn new(transport: Arc<dyn Transport>, event: EventName, config: &Config) -> Result<Server> {
        unimplemented!("engine shell")
    }
    /// Binds and starts serving; returns once bound. Idempotent.
    ///
    /// # Errors
    ///
    /// See [`Transport::bind`].
    pub async fn start_async(&self) -> Result<()> {
        unimplemented!("engine shell")
    }
    /// Blocking [`start_async`](Self::start_async); with `blocking_mode` it blocks until stopped.
    ///
    /// # Errors
    ///
    /// See [`Transport::bind`].
    pub fn start(&self) -> Result<()> {
        unimplemented!("engine shell")
    }
    /// Sends `shutdown`, closes every connection, releases the address. Idempotent.
    ///
    /// # Errors
    ///
    /// If releasing the address failed.
    pub async fn stop_async(&self) -> Result<()> {
        unimplemented!("engine shell")
    }
    /// Blocking [`stop_async`](Self::stop_async).
    ///
    /// # Errors
    ///
    /// If releasing the address failed.
    pub fn stop(&self) -> Result<()> {
        unimplemented!("engine shell")
    }
    /// Broadcasts `message` to every client, or queues it while none is connected.
    ///
    /// # Errors
    ///
    /// If the message cannot be encoded or the server is not running.
    pub fn broadcast(&self, message: &SocketMessage) -> Result<()> {
        unimplemented!("engine shell")
    }
    /// Sends `message` to client `id` only.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Validation`] if no client has that id.
    pub fn send_to(&self, id: ClientId, message: &SocketMessage) -> Result<()> {
        unimplemented!("engine shell")
    }
    /// Connected clients.
    pub fn clients(&self) -> Vec<ClientInfo> {
        unimplemented!("engine shell")
    }
    /// Events (connects, disconnects, messages) as an async stream / blocking iterator.
    pub fn events(&self) -> async_channel::Receiver<ServerEvent> {
        unimplemented!("engine shell")
    }
    /// True between `start` and `stop`.
    pub fn is_running(&self) -> bool {
        unimplemented!("engine shell")
    }
    /// The bound address, while running.
    pub fn address(&self) -> Option<String> {
        unimplemented!("engine shell")
    }
    /// Counters.
    pub fn stats(&self) -> ServerStats {
        unimplemented!("engine shell")
    }
}
