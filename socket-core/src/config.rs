//! Configuration: defaults < TOML file < environment < code.
//!
//! The keys live under `[socket]`, `[socket.unix]` and `[socket.tcp]`; a
//! plug-in transport reads its own table `[socket.<scheme>]` (kept raw in
//! [`SocketSettings::plugins`]). See `docs/configuration.md` for every key.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The `[socket]` table.
    #[serde(default)]
    pub socket: SocketSettings,
}

/// The `[socket]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SocketSettings {
    /// Transport scheme used by the factory and `socketctl` (`"unix"`, `"tcp"`, or a plug-in).
    pub transport: String,
    /// Directory of Unix socket files.
    pub socket_dir: PathBuf,
    /// Seconds a client waits to connect and for `welcome`; default receive timeout of `socketctl`.
    pub default_timeout: f64,
    /// Size in bytes of each connection's read buffer.
    pub buffer_size: usize,
    /// IANA time zone of `timestamp_iso`.
    pub timezone: String,
    /// Offline queue length (broadcasts kept while no client is connected).
    pub message_queue_size: usize,
    /// Offline queue size limit in bytes.
    pub message_queue_bytes: usize,
    /// `Server::start` blocks until the server is stopped.
    pub blocking_mode: bool,
    /// Servers accept DATA, ERROR and application CONTROL messages from clients.
    pub allow_client_send: bool,
    /// Largest frame body in bytes, both directions.
    pub max_message_size: usize,
    /// Deepest MessagePack nesting accepted.
    pub max_nesting_depth: usize,
    /// Seconds a new connection has to send `hello` before it is served as a legacy client.
    pub hello_grace: f64,
    /// Seconds allowed from the first byte of a frame to its last.
    pub frame_timeout: f64,
    /// Seconds a write may make no progress before the client is a slow consumer.
    pub write_stall_timeout: f64,
    /// Frames queued per client before it is a slow consumer.
    pub outbound_queue_size: usize,
    /// Bytes queued per client before it is a slow consumer.
    pub outbound_queue_bytes: usize,
    /// Received messages buffered by a client before it stops reading.
    pub receive_buffer_size: usize,
    /// Server events buffered for the application before the server stops reading a client.
    pub inbound_queue_size: usize,
    /// New clients first receive the last broadcast.
    pub retain_last: bool,
    /// Messages from clients are re-broadcast to the other clients.
    pub relay: bool,
    /// Clients reconnect by themselves.
    pub auto_reconnect: bool,
    /// Seconds before the first reconnect attempt (doubled each time).
    pub reconnect_initial_delay: f64,
    /// Largest delay between reconnect attempts, in seconds.
    pub reconnect_max_delay: f64,
    /// Reconnect attempts before giving up; absent means unlimited.
    pub reconnect_max_retries: Option<u32>,
    /// `connect` waits for a server that is not up yet instead of failing.
    pub wait_for_server: bool,
    /// The server is a legacy (Python-origin) server: send no `hello`, expect no `welcome`.
    pub legacy_server: bool,
    /// The `[socket.unix]` table.
    pub unix: UnixSettings,
    /// The `[socket.tcp]` table.
    pub tcp: TcpSettings,
    /// Tables of plug-in transports, `[socket.<scheme>]`, validated by their transport.
    #[serde(skip)]
    pub plugins: BTreeMap<String, toml::Table>,
}

impl Default for SocketSettings {
    fn default() -> Self {
        SocketSettings {
            transport: "unix".to_owned(),
            socket_dir: PathBuf::from("/tmp/sockets"),
            default_timeout: 5.0,
            buffer_size: 4096,
            timezone: "UTC".to_owned(),
            message_queue_size: 100,
            message_queue_bytes: 8 << 20,
            blocking_mode: false,
            allow_client_send: true,
            max_message_size: 1 << 20,
            max_nesting_depth: 64,
            hello_grace: 0.2,
            frame_timeout: 10.0,
            write_stall_timeout: 10.0,
            outbound_queue_size: 1024,
            outbound_queue_bytes: 4 << 20,
            receive_buffer_size: 1024,
            inbound_queue_size: 256,
            retain_last: false,
            relay: false,
            auto_reconnect: true,
            reconnect_initial_delay: 0.1,
            reconnect_max_delay: 5.0,
            reconnect_max_retries: None,
            wait_for_server: false,
            legacy_server: false,
            unix: UnixSettings::default(),
            tcp: TcpSettings::default(),
            plugins: BTreeMap::new(),
        }
    }
}

/// The `[socket.unix]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnixSettings {
    /// Clients served at once.
    pub max_connections: usize,
    /// Octal mode of the socket file, applied before `listen()`.
    pub socket_permissions: String,
    /// Remove our socket file on stop.
    pub auto_remove_socket: bool,
    /// Extra user ids allowed to connect besides the server's own user (and root).
    pub allowed_uids: Vec<u32>,
}

impl Default for UnixSettings {
    fn default() -> Self {
        UnixSettings {
            max_connections: 10,
            socket_permissions: "0600".to_owned(),
            auto_remove_socket: true,
            allowed_uids: Vec::new(),
        }
    }
}

/// The `[socket.tcp]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcpSettings {
    /// Address to bind or connect to.
    pub host: String,
    /// Fixed port; absent means discovery in the port range.
    pub port: Option<u16>,
    /// First port of the discovery range.
    pub port_range_start: u16,
    /// Last port of the discovery range.
    pub port_range_end: u16,
    /// Clients served at once.
    pub max_connections: usize,
    /// Allow binding a non-loopback address (v1 has no authentication).
    pub allow_remote: bool,
}

impl Default for TcpSettings {
    fn default() -> Self {
        TcpSettings {
            host: "127.0.0.1".to_owned(),
            port: None,
            port_range_start: 9000,
            port_range_end: 9100,
            max_connections: 10,
            allow_remote: false,
        }
    }
}

/// Turns a number of seconds from the configuration into a `Duration`.
pub fn secs(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::MAX)
}

impl Config {
    /// The connection limit of transport `scheme`: its table's `max_connections`, or 10.
    pub fn max_connections(&self, scheme: &str) -> usize {
        match scheme {
            "unix" => self.socket.unix.max_connections,
            "tcp" => self.socket.tcp.max_connections,
            other => self
                .socket
                .plugins
                .get(other)
                .and_then(|t| t.get("max_connections"))
                .and_then(toml::Value::as_integer)
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(10),
        }
    }

    /// The configured time zone.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] if `socket.timezone` is not a known IANA zone.
    pub fn time_zone(&self) -> Result<jiff::tz::TimeZone> {
        jiff::tz::TimeZone::get(&self.socket.timezone).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("invalid value {:?} for key socket.timezone: must be an IANA time zone name such as \"UTC\" or \"Europe/Berlin\"", self.socket.timezone),
            )
            .with_source(e)
        })
    }
}
