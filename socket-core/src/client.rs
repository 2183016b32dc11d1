//! The client engine. (API shell: the engine is being written.)

use std::sync::Arc;
use std::time::Duration;

use crate::codec::Limits;
use crate::config::{secs, Config};
use crate::error::Result;
use crate::message::{EventName, SocketMessage};
use crate::transport::Transport;

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
        })
    }
}

/// A client of one event's server. Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct Client {
    #[allow(dead_code)]
    inner: Arc<()>,
}

#[allow(clippy::unused_async, unused_variables)]
impl Client {
    /// Connects to the server of `event` and completes the handshake.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Connection`] (no server), [`crate::ErrorKind::MaxConnections`],
    /// [`crate::ErrorKind::Timeout`].
    pub async fn connect_async(transport: Arc<dyn Transport>, event: EventName, config: &Config) -> Result<Client> {
        unimplemented!("engine shell")
    }
    /// Blocking [`connect_async`](Self::connect_async).
    ///
    /// # Errors
    ///
    /// See [`connect_async`](Self::connect_async).
    pub fn connect(transport: Arc<dyn Transport>, event: EventName, config: &Config) -> Result<Client> {
        unimplemented!("engine shell")
    }
    /// Sends one message to the server.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::SendNotAllowed`] in receive-only mode, [`crate::ErrorKind::Connection`] when not connected.
    pub async fn send_async(&self, message: &SocketMessage) -> Result<()> {
        unimplemented!("engine shell")
    }
    /// Blocking [`send_async`](Self::send_async).
    ///
    /// # Errors
    ///
    /// See [`send_async`](Self::send_async).
    pub fn send(&self, message: &SocketMessage) -> Result<()> {
        unimplemented!("engine shell")
    }
    /// Next message, waiting at most `timeout` (`None`: no limit). `Ok(None)` on timeout.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Closed`] once the client is closed, with the reason.
    pub async fn receive_async(&self, timeout: Option<Duration>) -> Result<Option<SocketMessage>> {
        unimplemented!("engine shell")
    }
    /// Blocking [`receive_async`](Self::receive_async).
    ///
    /// # Errors
    ///
    /// See [`receive_async`](Self::receive_async).
    pub fn receive(&self, timeout: Option<Duration>) -> Result<Option<SocketMessage>> {
        unimplemented!("engine shell")
    }
    /// True only while a live connection exists.
    pub fn is_connected(&self) -> bool {
        unimplemented!("engine shell")
    }
    /// The current connection state.
    pub fn state(&self) -> ConnectionState {
        unimplemented!("engine shell")
    }
    /// True if the server accepts messages from this client (from `welcome`).
    pub fn can_send(&self) -> bool {
        unimplemented!("engine shell")
    }
    /// The id the server gave this client, if it said (not for legacy servers).
    pub fn client_id(&self) -> Option<String> {
        unimplemented!("engine shell")
    }
    /// Closes the connection for good and stops reconnecting.
    pub async fn disconnect_async(&self) {
        unimplemented!("engine shell")
    }
    /// Blocking [`disconnect_async`](Self::disconnect_async).
    pub fn disconnect(&self) {
        unimplemented!("engine shell")
    }
}
