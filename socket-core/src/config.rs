//! Configuration: defaults < TOML file < environment < code.
//!
//! The keys live under `[socket]`, `[socket.unix]` and `[socket.tcp]`; a
//! plug-in transport reads its own table `[socket.<scheme>]` (kept raw in
//! [`SocketSettings::plugins`] and validated by that transport). Every key,
//! its type, default, environment variable and rule is listed in one table,
//! [`KEYS`]: the loader, [`Config::validate`] and the generated reference
//! `docs/configuration.md` ([`reference_markdown`]) all read it.
//!
//! # Layers
//!
//! 1. the defaults ([`Config::default`]);
//! 2. a TOML file: the one given explicitly ([`ConfigLoader::file`], the
//!    CLI's `--config`), else the one named by `SOCKET_CONFIG`, else
//!    `$XDG_CONFIG_HOME/socket/settings.toml` (or
//!    `~/.config/socket/settings.toml`) when it exists;
//! 3. environment variables: key `socket.a.b` is `SOCKET__A__B`
//!    (`SOCKET__SOCKET_DIR`, `SOCKET__UNIX__MAX_CONNECTIONS`); values are
//!    parsed to the key's type; an empty variable counts as unset;
//! 4. values set in code or on the command line ([`ConfigLoader::set`]).
//!
//! # Examples
//!
//! ```
//! use socket_core::config::ConfigLoader;
//!
//! let config = ConfigLoader::new()
//!     .env([("SOCKET__UNIX__MAX_CONNECTIONS", "20")]) // instead of the process environment
//!     .set("socket.tcp.port", 9001)
//!     .load()?;
//! assert_eq!(config.socket.unix.max_connections, 20);
//! assert_eq!(config.socket.tcp.port, Some(9001));
//! # Ok::<(), socket_core::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use snafu::Snafu;

use crate::codec::{Limits, MAX_DEPTH_CEILING, MAX_FRAME_LEN_CEILING};
use crate::error::{Error, ErrorKind, Result};

/// The whole configuration.
///
/// [`Config::default`] holds the documented defaults; [`Config::load`]
/// layers the settings file and the environment on top (see the
/// [module documentation](self)). Fields can be changed in code before the
/// configuration is handed to a server or client.
///
/// # Examples
///
/// ```
/// use socket_core::Config;
///
/// let mut config = Config::default();
/// assert_eq!(config.socket.transport, "unix");
/// assert_eq!(config.socket.socket_dir, std::path::Path::new("/tmp/sockets"));
/// assert_eq!(config.socket.unix.max_connections, 10);
/// assert_eq!(config.socket.tcp.port_range_start, 9000);
///
/// config.socket.retain_last = true;
/// config.socket.tcp.port = Some(9001);
/// config.validate()?;
/// # Ok::<(), socket_core::Error>(())
/// ```
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
    /// Bytes read per system call on each connection (grows up to 64 KiB while reads fill it).
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
    /// The `[socket.nats]` table: the multi-host bridge (`socket-nats`, `socketctl bridge`).
    pub nats: NatsSettings,
    /// Tables of plug-in transports, `[socket.<scheme>]`, kept raw and
    /// validated by their transport. Written out beside `unix` and `tcp`.
    #[serde(flatten, skip_deserializing)]
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
            nats: NatsSettings::default(),
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

/// The `[socket.nats]` table: settings of the NATS bridge (`socket-nats`,
/// `socketctl bridge`). Secrets are never values here: the token and the
/// credentials live in files named by these keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// NATS server URLs (`nats://host:port`, `tls://host:port`, or `host:port`).
    pub url: Vec<String>,
    /// First part of every subject: `{subject_prefix}.{event_name}`.
    pub subject_prefix: String,
    /// A `.creds` file (NKey seed and user JWT).
    pub credentials_file: Option<PathBuf>,
    /// A file holding the authentication token.
    pub token_file: Option<PathBuf>,
    /// A PEM file of CA certificates that sign the NATS servers' certificates.
    pub tls_ca_file: Option<PathBuf>,
    /// Keep the last message of each subject in JetStream and deliver it first to late joiners.
    pub retain: bool,
    /// Outbound messages kept while NATS is unreachable; the oldest are dropped beyond it.
    pub outbound_buffer: usize,
}

impl Default for NatsSettings {
    fn default() -> Self {
        NatsSettings {
            url: vec!["nats://127.0.0.1:4222".to_owned()],
            subject_prefix: "socket".to_owned(),
            credentials_file: None,
            token_file: None,
            tls_ca_file: None,
            retain: false,
            outbound_buffer: 1024,
        }
    }
}

/// Largest `socket.nats.outbound_buffer`.
pub const MAX_NATS_OUTBOUND_BUFFER: usize = 1 << 20;

/// Checks one NATS server URL: `nats://`, `tls://` (also `ws://`, `wss://`)
/// or no scheme, a non-empty host, an optional port in `1..=65535`, nothing
/// after the port but an optional `/`.
///
/// Returns what is wrong, in words.
///
/// # Examples
///
/// ```
/// use socket_core::config::check_nats_url;
///
/// assert!(check_nats_url("nats://127.0.0.1:4222").is_ok());
/// assert!(check_nats_url("tls://nats.example.org").is_ok());
/// assert!(check_nats_url("http://x:1").is_err());
/// assert!(check_nats_url("nats://host:99999").is_err());
/// ```
pub fn check_nats_url(url: &str) -> std::result::Result<(), String> {
    let url = url.trim();
    let rest = match url.split_once("://") {
        Some((scheme, rest)) => {
            if !["nats", "tls", "ws", "wss"].contains(&scheme.to_ascii_lowercase().as_str()) {
                return Err(format!("unknown scheme {scheme:?}: use nats://, tls://, ws:// or wss://"));
            }
            rest
        }
        None => url,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    if hostport.is_empty() || hostport.contains(['/', '?', '#', ' ']) {
        return Err("expected host[:port] after the scheme".to_owned());
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, "")) => (h, None),
            Some((h, p)) => (h, Some(p.strip_prefix(':').ok_or("expected :port after ]")?)),
            None => return Err("unclosed [ in an IPv6 address".to_owned()),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("empty host".to_owned());
    }
    if let Some(p) = port {
        if !p.parse::<u16>().is_ok_and(|p| p > 0) {
            return Err(format!("invalid port {p:?}: expected 1..=65535"));
        }
    }
    Ok(())
}

/// Checks a NATS subject prefix: dot-separated tokens of printable
/// characters without spaces, `*` or `>`, at most 128 bytes.
///
/// # Examples
///
/// ```
/// use socket_core::config::is_valid_subject_prefix;
///
/// assert!(is_valid_subject_prefix("socket"));
/// assert!(is_valid_subject_prefix("home.desk"));
/// assert!(!is_valid_subject_prefix("a..b"));
/// assert!(!is_valid_subject_prefix("a.>"));
/// ```
pub fn is_valid_subject_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= 128
        && prefix.split('.').all(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_graphic() && c != '*' && c != '>'))
}

/// Turns a number of seconds from the configuration into a `Duration`.
pub fn secs(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::MAX)
}

// ---------------------------------------------------------------------------
// The key table
// ---------------------------------------------------------------------------

/// The type of a configuration value, as written in TOML (environment
/// variables are strings parsed to this type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValueType {
    /// `true` or `false` (environment: `true`, `false`, `1`, `0`).
    Boolean,
    /// A non-negative integer.
    Integer,
    /// A non-negative integer of at most 32 bits, or absent.
    OptionalInteger,
    /// A number of seconds (integer or float).
    Seconds,
    /// A string.
    String,
    /// A file system path (a string).
    Path,
    /// A TCP port number.
    Port,
    /// A TCP port number, or absent.
    OptionalPort,
    /// A list of 32-bit integers (environment: comma-separated).
    IntegerList,
    /// A list of strings (environment: comma-separated).
    StringList,
    /// A file system path, or absent.
    OptionalPath,
}

impl ValueType {
    /// How the type is named in the documentation.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::Boolean => "boolean",
            ValueType::Integer => "integer",
            ValueType::OptionalInteger => "integer, optional",
            ValueType::Seconds => "seconds (number)",
            ValueType::String => "string",
            ValueType::Path => "path",
            ValueType::Port => "port",
            ValueType::OptionalPort => "port, optional",
            ValueType::IntegerList => "list of integers",
            ValueType::StringList => "list of strings",
            ValueType::OptionalPath => "path, optional",
        }
    }
}

/// One configuration key: its name, type, rule and description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyInfo {
    /// Full dotted name, e.g. `"socket.tcp.port"`.
    pub key: &'static str,
    /// Type of the value.
    pub ty: ValueType,
    /// What a valid value is, e.g. `"a number of seconds > 0"`; quoted by
    /// every error about this key.
    pub rule: &'static str,
    /// What the key does.
    pub description: &'static str,
}

impl KeyInfo {
    /// The environment variable of this key: `socket.a.b` is `SOCKET__A__B`.
    pub fn env_var(&self) -> String {
        self.key.split('.').map(str::to_ascii_uppercase).collect::<Vec<_>>().join("__")
    }

    /// The default value, written as TOML (`None` for an optional key that
    /// is absent by default).
    pub fn default_toml(&self) -> Option<String> {
        let defaults = Config::default().to_table().ok()?;
        lookup(&defaults, self.key).map(render_toml)
    }
}

/// Upper bound of every duration key (and of `socketctl`'s duration options):
/// one year, in seconds. Anything longer is a mistake, and every bound value
/// fits a `Duration` and a deadline from now.
pub const MAX_SECONDS: f64 = 31_536_000.0;
/// Upper bound of every `max_connections` key.
pub const MAX_CONNECTIONS: usize = 65_536;
/// Upper bound of every queue or buffer length counted in messages or frames.
pub const MAX_QUEUE_LEN: usize = 1_000_000;
/// Upper bound of every queue size counted in bytes (1 GiB).
pub const MAX_QUEUE_BYTES: usize = 1 << 30;
/// Upper bound of `buffer_size` (1 MiB; reads never ask for more).
pub const MAX_BUFFER_SIZE: usize = 1 << 20;

const SECONDS: &str = "a number of seconds > 0, at most 31536000 (one year)";
const QUEUE_LEN: &str = "an integer in 1..=1000000";
const QUEUE_BYTES: &str = "an integer in 1..=1073741824 (1 GiB)";
const CONNECTIONS: &str = "an integer in 1..=65536";
const BOOLEAN: &str = "true or false";

const fn key(key: &'static str, ty: ValueType, rule: &'static str, description: &'static str) -> KeyInfo {
    KeyInfo { key, ty, rule, description }
}

/// Every configuration key, in documentation order. The loader, the
/// validation messages and `docs/configuration.md` all come from this table.
pub static KEYS: &[KeyInfo] = &[
    key(
        "socket.transport",
        ValueType::String,
        "a transport name: 1 to 32 characters from a-z, 0-9, '_' and '-'",
        "Transport used by the factory and `socketctl`: `\"unix\"`, `\"tcp\"` or the scheme of a plug-in transport.",
    ),
    key(
        "socket.socket_dir",
        ValueType::Path,
        "a non-empty path",
        "Directory of the Unix socket files (`{socket_dir}/{event}.sock`); created with mode 0700 if missing, and refused if it is a symlink, owned by another user, or writable by group or others.",
    ),
    key(
        "socket.default_timeout",
        ValueType::Seconds,
        SECONDS,
        "Seconds a client waits to connect and for `welcome`; the default receive timeout of `socketctl`.",
    ),
    key("socket.buffer_size", ValueType::Integer, "an integer in 1..=1048576 (1 MiB)", "Bytes read per system call on each connection. A connection whose reads keep filling it (a busy stream) doubles it up to 64 KiB, and halves it back when reads come back small."),
    key(
        "socket.timezone",
        ValueType::String,
        "an IANA time zone name such as \"UTC\" or \"Europe/Berlin\"",
        "Time zone of `timestamp_iso` in the messages this process creates.",
    ),
    key(
        "socket.message_queue_size",
        ValueType::Integer,
        QUEUE_LEN,
        "Offline queue length: broadcasts kept while no client is connected; on overflow the oldest is dropped (and counted). The first client to connect receives the queue, which is then empty.",
    ),
    key("socket.message_queue_bytes", ValueType::Integer, QUEUE_BYTES, "Offline queue size limit in bytes."),
    key("socket.blocking_mode", ValueType::Boolean, BOOLEAN, "`Server::start` blocks the calling thread until the server is stopped."),
    key(
        "socket.allow_client_send",
        ValueType::Boolean,
        BOOLEAN,
        "Servers accept DATA, ERROR and application CONTROL messages from clients; when false such a frame is answered with `send_not_allowed` and dropped.",
    ),
    key(
        "socket.max_message_size",
        ValueType::Integer,
        "an integer in 64..=67108864 (64 bytes to 64 MiB)",
        "Largest frame body in bytes, both directions; a longer frame is answered with `message_too_large` and the connection closed.",
    ),
    key(
        "socket.max_nesting_depth",
        ValueType::Integer,
        "an integer in 2..=64",
        "Deepest MessagePack nesting accepted (the top-level map is level 1, `data` level 2); a deeper message is `malformed`.",
    ),
    key(
        "socket.hello_grace",
        ValueType::Seconds,
        SECONDS,
        "Seconds a new connection has to send `hello` before it is served as a legacy client.",
    ),
    key(
        "socket.frame_timeout",
        ValueType::Seconds,
        SECONDS,
        "Seconds allowed from the first byte of a frame to its last; on expiry the connection is closed.",
    ),
    key(
        "socket.write_stall_timeout",
        ValueType::Seconds,
        SECONDS,
        "Seconds a write to a client may make no progress before the client is disconnected as a slow consumer.",
    ),
    key("socket.outbound_queue_size", ValueType::Integer, QUEUE_LEN, "Frames queued per client before it is a slow consumer."),
    key("socket.outbound_queue_bytes", ValueType::Integer, QUEUE_BYTES, "Bytes queued per client before it is a slow consumer."),
    key(
        "socket.receive_buffer_size",
        ValueType::Integer,
        QUEUE_LEN,
        "Received messages a client buffers; when full the client stops reading (back-pressure), it never drops.",
    ),
    key(
        "socket.inbound_queue_size",
        ValueType::Integer,
        QUEUE_LEN,
        "Server events buffered for the application before the server stops reading from clients.",
    ),
    key(
        "socket.retain_last",
        ValueType::Boolean,
        BOOLEAN,
        "Every newly connected client first receives the last broadcast message (unless it got it from the offline queue).",
    ),
    key(
        "socket.relay",
        ValueType::Boolean,
        BOOLEAN,
        "Messages that clients send are re-broadcast to the other clients (a small broker). With no other client they go to the offline queue, which the next client to connect receives.",
    ),
    key("socket.auto_reconnect", ValueType::Boolean, BOOLEAN, "Clients reconnect by themselves, with exponential backoff and jitter."),
    key(
        "socket.reconnect_initial_delay",
        ValueType::Seconds,
        "a number of seconds > 0, at most socket.reconnect_max_delay and at most 31536000 (one year)",
        "Base delay before the first reconnect attempt; doubled after each failed attempt. Each delay is jittered between half this value and the current delay.",
    ),
    key(
        "socket.reconnect_max_delay",
        ValueType::Seconds,
        "a number of seconds > 0, at most 31536000 (one year), at least socket.reconnect_initial_delay",
        "Largest delay between reconnect attempts.",
    ),
    key(
        "socket.reconnect_max_retries",
        ValueType::OptionalInteger,
        "an integer in 0..=4294967295, or absent for unlimited",
        "Reconnect attempts before the client gives up; absent means unlimited.",
    ),
    key(
        "socket.wait_for_server",
        ValueType::Boolean,
        BOOLEAN,
        "`connect` waits for a server that is not up yet instead of failing at once.",
    ),
    key(
        "socket.legacy_server",
        ValueType::Boolean,
        BOOLEAN,
        "The server is a legacy (Python-origin) server: the client sends no `hello` and expects no `welcome`.",
    ),
    key(
        "socket.unix.max_connections",
        ValueType::Integer,
        CONNECTIONS,
        "Clients a Unix-socket server serves at once; one more receives a `max_connections` error and is closed.",
    ),
    key(
        "socket.unix.socket_permissions",
        ValueType::String,
        "an octal file mode such as \"0600\" (1 to 4 digits 0-7, at most 0777) that lets the owner read and write (0600 to 0777)",
        "Mode of the socket file, applied before `listen()`. Granting group or others access also lets other users connect.",
    ),
    key("socket.unix.auto_remove_socket", ValueType::Boolean, BOOLEAN, "Remove the socket file when the server stops."),
    key(
        "socket.unix.allowed_uids",
        ValueType::IntegerList,
        "a list of user ids (integers in 0..=4294967295)",
        "Extra user ids allowed to connect, besides the server's own user and root.",
    ),
    key(
        "socket.tcp.host",
        ValueType::String,
        "a non-empty host name or IP address",
        "Address to bind or connect to; binding a non-loopback address needs `allow_remote`.",
    ),
    key(
        "socket.tcp.port",
        ValueType::OptionalPort,
        "a port in 1024..=65535, or absent",
        "Fixed port; absent means discovery: the port `start + fnv1a_32(event) % (end - start + 1)` first, then upward with wrap-around.",
    ),
    key(
        "socket.tcp.port_range_start",
        ValueType::Port,
        "a port in 1024..=65535, at most socket.tcp.port_range_end",
        "First port of the discovery range.",
    ),
    key(
        "socket.tcp.port_range_end",
        ValueType::Port,
        "a port in 1024..=65535, at least socket.tcp.port_range_start",
        "Last port of the discovery range.",
    ),
    key(
        "socket.tcp.max_connections",
        ValueType::Integer,
        CONNECTIONS,
        "Clients a TCP server serves at once; one more receives a `max_connections` error and is closed.",
    ),
    key(
        "socket.tcp.allow_remote",
        ValueType::Boolean,
        BOOLEAN,
        "Allow binding a non-loopback address (protocol v1 has no authentication).",
    ),
    key(
        "socket.nats.url",
        ValueType::StringList,
        "a non-empty list of NATS URLs: nats://host[:port], tls://host[:port] or host[:port] (port 1..=65535)",
        "NATS servers the bridge connects to; it also reconnects to the servers the cluster advertises. A password belongs in `SOCKET_NATS_PASSWORD`, never in a URL given on a command line.",
    ),
    key(
        "socket.nats.subject_prefix",
        ValueType::String,
        "dot-separated tokens without spaces, '*' or '>', at most 128 bytes",
        "Subjects are `{subject_prefix}.{event_name}`.",
    ),
    key(
        "socket.nats.credentials_file",
        ValueType::OptionalPath,
        "a non-empty path, or absent",
        "A NATS `.creds` file (user JWT and NKey seed).",
    ),
    key(
        "socket.nats.token_file",
        ValueType::OptionalPath,
        "a non-empty path, or absent",
        "A file whose first line is the NATS authentication token (`SOCKET_NATS_TOKEN` in the environment is the other way to give it).",
    ),
    key(
        "socket.nats.tls_ca_file",
        ValueType::OptionalPath,
        "a non-empty path, or absent",
        "PEM file of the CA certificates that sign the NATS servers' certificates; setting it requires TLS.",
    ),
    key(
        "socket.nats.retain",
        ValueType::Boolean,
        BOOLEAN,
        "Keep the last message of each subject in a JetStream stream (`max_msgs_per_subject = 1`); a bridge or local client that joins later receives it first.",
    ),
    key(
        "socket.nats.outbound_buffer",
        ValueType::Integer,
        "an integer in 1..=1048576",
        "Outbound messages kept while NATS is unreachable; beyond it the oldest are dropped and counted.",
    ),
];

/// The entry of `key` in [`KEYS`].
pub fn key_info(key: &str) -> Option<&'static KeyInfo> {
    KEYS.iter().find(|k| k.key == key)
}

fn rule_of(key: &str) -> &'static str {
    key_info(key).map_or("a valid value", |k| k.rule)
}

/// Sub-tables of `[socket]` owned by the core (every other table is a plug-in's).
const CORE_TABLES: [&str; 3] = ["unix", "tcp", "nats"];

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a configuration could not be loaded or is invalid.
///
/// Reached through [`std::error::Error::source`] of an [`Error`] of kind
/// [`ErrorKind::Config`].
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum ConfigError {
    /// A key that does not exist.
    #[snafu(display("unknown key {key}{origin}: check its spelling against docs/configuration.md, or remove it"))]
    UnknownKey {
        /// The full dotted key.
        key: String,
        /// Where it was set, e.g. ` (from environment variable SOCKET__FOO)`.
        origin: String,
    },
    /// A value of the wrong type or outside its rule.
    #[snafu(display("invalid value {value} for key {key}{origin}: expected {rule}"))]
    InvalidValue {
        /// The full dotted key.
        key: String,
        /// The value as given.
        value: String,
        /// What a valid value is.
        rule: String,
        /// Where it was set.
        origin: String,
    },
    /// A configuration file that was asked for does not exist.
    #[snafu(display("configuration file {} does not exist{origin}: create it or point to another file", path.display()))]
    FileNotFound {
        /// The path.
        path: PathBuf,
        /// Who named it, e.g. ` (named by SOCKET_CONFIG)`.
        origin: String,
    },
    /// The file is not valid TOML (a key given twice included).
    #[snafu(display("cannot read configuration file {}: {source}", path.display()))]
    ReadFile {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: config::ConfigError,
    },
    /// The file could not be read (a directory, no permission, an I/O error).
    #[snafu(display("cannot read configuration file {}: {source}", path.display()))]
    ReadIo {
        /// The path, absolute.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is longer than [`MAX_CONFIG_FILE_LEN`].
    #[snafu(display(
        "cannot read configuration file {}: it is longer than {limit} bytes, the limit for a configuration file",
        path.display()
    ))]
    FileTooLarge {
        /// The path, absolute.
        path: PathBuf,
        /// The limit in bytes.
        limit: usize,
    },
    /// The layers could not be merged (e.g. an override key that is not a valid path).
    #[snafu(display("cannot build the configuration: {source}"))]
    Build {
        /// The underlying error.
        source: config::ConfigError,
    },
    /// The configuration could not be written as TOML.
    #[snafu(display("cannot write the configuration as TOML: {source}"))]
    Serialize {
        /// The underlying error.
        source: toml::ser::Error,
    },
}

impl ConfigError {
    /// The key this error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. } | ConfigError::InvalidValue { key, .. } => Some(key),
            _ => None,
        }
    }

    fn with_origin(mut self, origins: &BTreeMap<String, String>) -> Self {
        if let ConfigError::InvalidValue { key, origin, .. } = &mut self {
            if origin.is_empty() {
                if let Some(o) = origins.get(key.as_str()) {
                    origin.clone_from(o);
                }
            }
        }
        self
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::new(ErrorKind::Config, "invalid configuration").with_source(e)
    }
}

fn invalid(key: &str, value: impl fmt::Display) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_owned(),
        value: value.to_string(),
        rule: rule_of(key).to_owned(),
        origin: String::new(),
    }
}

/// `value` as written in a message: strings quoted.
fn show_str(value: &str) -> String {
    format!("{value:?}")
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

fn ensure(ok: bool, key: &str, value: impl fmt::Display) -> std::result::Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(invalid(key, value))
    }
}

fn positive_secs(key: &str, v: f64) -> std::result::Result<(), ConfigError> {
    ensure(v.is_finite() && v > 0.0 && v <= MAX_SECONDS, key, v)
}

fn in_range(key: &str, v: usize, max: usize) -> std::result::Result<(), ConfigError> {
    ensure((1..=max).contains(&v), key, v)
}

fn port_ok(p: u16) -> bool {
    p >= 1024
}

/// Parses an octal mode string such as `"0600"`, `"600"` or `"0o600"`: 1 to 4
/// octal digits, at most `0o777`, and letting the owner read and write (a
/// server must be able to use its own socket). `None` when it is not one;
/// [`check_permissions`] says why.
pub fn parse_permissions(s: &str) -> Option<u32> {
    check_permissions(s).ok()
}

/// The one rule for `socket.unix.socket_permissions`, applied by configuration
/// validation and by the Unix transport when it binds (so a value that
/// validates also binds): the mode, or the rule it breaks, as a phrase that
/// fits "invalid value ... for key socket.unix.socket_permissions: {rule}".
///
/// # Errors
///
/// The rule the value breaks: not octal, above `0777`, or not letting the
/// owner read and write.
///
/// # Examples
///
/// ```
/// use socket_core::config::check_permissions;
/// assert_eq!(check_permissions("0660"), Ok(0o660));
/// assert!(check_permissions("0400").unwrap_err().contains("owner read and write"));
/// ```
pub fn check_permissions(s: &str) -> std::result::Result<u32, &'static str> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err("must be an octal mode such as \"0600\"");
    }
    let mode = u32::from_str_radix(digits, 8).map_err(|_| "must be an octal mode such as \"0600\"")?;
    if mode > 0o777 {
        return Err("must be at most \"0777\" (no setuid, setgid or sticky bits)");
    }
    if mode & 0o600 != 0o600 {
        return Err("must let the owner read and write, e.g. \"0600\"");
    }
    Ok(mode)
}

/// True for a valid transport scheme: 1 to 32 characters from `[a-z0-9_-]`.
pub fn is_valid_scheme(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl Config {
    /// Loads the configuration from every layer (see the [module docs](self)),
    /// reading the process environment.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] naming the file, key, value and rule at fault.
    pub fn load() -> Result<Config> {
        ConfigLoader::new().load()
    }

    /// A loader, to choose the file, the environment and overrides.
    pub fn loader() -> ConfigLoader {
        ConfigLoader::new()
    }

    /// Checks every key against its rule (see [`KEYS`]).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] naming the first invalid key, its value and the rule.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut config = socket_core::Config::default();
    /// config.socket.tcp.port_range_start = 80;
    /// let err = config.validate().unwrap_err();
    /// assert_eq!(err.kind(), socket_core::ErrorKind::Config);
    /// assert!(err.to_string().contains("socket.tcp.port_range_start"));
    /// ```
    pub fn validate(&self) -> Result<()> {
        self.check().map_err(Error::from)
    }

    fn check(&self) -> std::result::Result<(), ConfigError> {
        let s = &self.socket;
        ensure(is_valid_scheme(&s.transport), "socket.transport", show_str(&s.transport))?;
        ensure(!s.socket_dir.as_os_str().is_empty(), "socket.socket_dir", show_str(&s.socket_dir.to_string_lossy()))?;
        positive_secs("socket.default_timeout", s.default_timeout)?;
        in_range("socket.buffer_size", s.buffer_size, MAX_BUFFER_SIZE)?;
        ensure(jiff::tz::TimeZone::get(&s.timezone).is_ok(), "socket.timezone", show_str(&s.timezone))?;
        in_range("socket.message_queue_size", s.message_queue_size, MAX_QUEUE_LEN)?;
        in_range("socket.message_queue_bytes", s.message_queue_bytes, MAX_QUEUE_BYTES)?;
        ensure(
            (64..=MAX_FRAME_LEN_CEILING).contains(&s.max_message_size),
            "socket.max_message_size",
            s.max_message_size,
        )?;
        ensure(
            (2..=MAX_DEPTH_CEILING).contains(&s.max_nesting_depth),
            "socket.max_nesting_depth",
            s.max_nesting_depth,
        )?;
        positive_secs("socket.hello_grace", s.hello_grace)?;
        positive_secs("socket.frame_timeout", s.frame_timeout)?;
        positive_secs("socket.write_stall_timeout", s.write_stall_timeout)?;
        in_range("socket.outbound_queue_size", s.outbound_queue_size, MAX_QUEUE_LEN)?;
        in_range("socket.outbound_queue_bytes", s.outbound_queue_bytes, MAX_QUEUE_BYTES)?;
        in_range("socket.receive_buffer_size", s.receive_buffer_size, MAX_QUEUE_LEN)?;
        in_range("socket.inbound_queue_size", s.inbound_queue_size, MAX_QUEUE_LEN)?;
        positive_secs("socket.reconnect_initial_delay", s.reconnect_initial_delay)?;
        positive_secs("socket.reconnect_max_delay", s.reconnect_max_delay)?;
        ensure(
            s.reconnect_initial_delay <= s.reconnect_max_delay,
            "socket.reconnect_initial_delay",
            format_args!("{} (socket.reconnect_max_delay is {})", s.reconnect_initial_delay, s.reconnect_max_delay),
        )?;
        let u = &s.unix;
        in_range("socket.unix.max_connections", u.max_connections, MAX_CONNECTIONS)?;
        ensure(
            parse_permissions(&u.socket_permissions).is_some(),
            "socket.unix.socket_permissions",
            show_str(&u.socket_permissions),
        )?;
        let t = &s.tcp;
        ensure(!t.host.trim().is_empty(), "socket.tcp.host", show_str(&t.host))?;
        if let Some(port) = t.port {
            ensure(port_ok(port), "socket.tcp.port", port)?;
        }
        ensure(port_ok(t.port_range_start), "socket.tcp.port_range_start", t.port_range_start)?;
        ensure(port_ok(t.port_range_end), "socket.tcp.port_range_end", t.port_range_end)?;
        ensure(
            t.port_range_start <= t.port_range_end,
            "socket.tcp.port_range_start",
            format_args!("{} (socket.tcp.port_range_end is {})", t.port_range_start, t.port_range_end),
        )?;
        in_range("socket.tcp.max_connections", t.max_connections, MAX_CONNECTIONS)?;
        let n = &s.nats;
        ensure(!n.url.is_empty(), "socket.nats.url", "[]")?;
        for url in &n.url {
            if let Err(why) = check_nats_url(url) {
                return Err(ConfigError::InvalidValue {
                    key: "socket.nats.url".to_owned(),
                    value: show_str(url),
                    rule: format!("{} ({why})", rule_of("socket.nats.url")),
                    origin: String::new(),
                });
            }
        }
        ensure(is_valid_subject_prefix(&n.subject_prefix), "socket.nats.subject_prefix", show_str(&n.subject_prefix))?;
        for (k, p) in [
            ("socket.nats.credentials_file", &n.credentials_file),
            ("socket.nats.token_file", &n.token_file),
            ("socket.nats.tls_ca_file", &n.tls_ca_file),
        ] {
            if let Some(p) = p {
                ensure(!p.as_os_str().is_empty(), k, "\"\"")?;
            }
        }
        ensure(
            (1..=MAX_NATS_OUTBOUND_BUFFER).contains(&n.outbound_buffer),
            "socket.nats.outbound_buffer",
            n.outbound_buffer,
        )?;
        for name in s.plugins.keys() {
            ensure(is_valid_scheme(name), &format!("socket.{name}"), "(a table)").map_err(|_| {
                ConfigError::InvalidValue {
                    key: format!("socket.{name}"),
                    value: "(a table)".to_owned(),
                    rule:
                        "a plug-in transport table named by its scheme: 1 to 32 characters from a-z, 0-9, '_' and '-'"
                            .to_owned(),
                    origin: String::new(),
                }
            })?;
        }
        Ok(())
    }

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
        jiff::tz::TimeZone::get(&self.socket.timezone)
            .map_err(|_| Error::from(invalid("socket.timezone", show_str(&self.socket.timezone))))
    }

    /// The codec limits: `max_message_size` and `max_nesting_depth`.
    pub fn limits(&self) -> Limits {
        Limits { max_frame_len: self.socket.max_message_size, max_depth: self.socket.max_nesting_depth }
    }

    /// The whole configuration as a TOML table nested like the file
    /// (`{"socket": {..., "unix": {...}, "tcp": {...}, "<plug-in>": {...}}}`),
    /// plug-in tables included; absent optional keys are left out.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] if a value cannot be represented in TOML (a
    /// `socket_dir` that is not UTF-8).
    pub fn to_table(&self) -> Result<toml::Table> {
        toml::Table::try_from(self).map_err(|source| Error::from(ConfigError::Serialize { source }))
    }

    /// The whole configuration as a TOML document, as a file would hold it.
    ///
    /// # Errors
    ///
    /// See [`to_table`](Self::to_table).
    ///
    /// # Examples
    ///
    /// ```
    /// let text = socket_core::Config::default().to_toml_string()?;
    /// assert!(text.contains("[socket.unix]"));
    /// # Ok::<(), socket_core::Error>(())
    /// ```
    pub fn to_toml_string(&self) -> Result<String> {
        toml::to_string(self).map_err(|source| Error::from(ConfigError::Serialize { source }))
    }
}

impl UnixSettings {
    /// The socket file mode from `socket_permissions`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] if it is not an octal mode (see [`parse_permissions`]).
    pub fn socket_mode(&self) -> Result<u32> {
        parse_permissions(&self.socket_permissions)
            .ok_or_else(|| invalid("socket.unix.socket_permissions", show_str(&self.socket_permissions)).into())
    }
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

/// Builds a [`Config`] from the layers: defaults < TOML file < environment <
/// values set with [`set`](Self::set).
///
/// Tests pass an environment map with [`env`](Self::env) instead of changing
/// the process environment.
#[derive(Debug, Clone, Default)]
pub struct ConfigLoader {
    file: Option<PathBuf>,
    env: Option<BTreeMap<String, String>>,
    overrides: Vec<(String, toml::Value)>,
    no_discovery: bool,
}

impl ConfigLoader {
    /// A loader reading the process environment and discovering the file.
    pub fn new() -> Self {
        ConfigLoader::default()
    }

    /// Reads this TOML file (it must exist), instead of `SOCKET_CONFIG` or the discovered one.
    #[must_use]
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// Uses these variables instead of the process environment (for
    /// `SOCKET__*`, `SOCKET_CONFIG`, `XDG_CONFIG_HOME` and `HOME`).
    #[must_use]
    pub fn env<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env = Some(vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect());
        self
    }

    /// Does not look for `settings.toml` in the user's configuration
    /// directory (an explicit file or `SOCKET_CONFIG` is still read).
    #[must_use]
    pub fn no_file_discovery(mut self) -> Self {
        self.no_discovery = true;
        self
    }

    /// Sets `key` (e.g. `"socket.tcp.port"`) to `value`, above every other
    /// layer. Strings are parsed to the key's type, like environment values.
    #[must_use]
    pub fn set(mut self, key: impl Into<String>, value: impl Into<toml::Value>) -> Self {
        self.overrides.push((key.into(), value.into()));
        self
    }

    fn var(&self, name: &str) -> Option<String> {
        let value = match &self.env {
            Some(env) => env.get(name).cloned(),
            None => std::env::var(name).ok(),
        };
        value.filter(|v| !v.is_empty())
    }

    /// The file this loader reads, and who named it (`None` when no file is
    /// named and none is found).
    pub fn config_file(&self) -> Option<(PathBuf, &'static str)> {
        if let Some(path) = &self.file {
            return Some((path.clone(), "given explicitly"));
        }
        if let Some(path) = self.var("SOCKET_CONFIG") {
            return Some((PathBuf::from(path), "named by SOCKET_CONFIG"));
        }
        if self.no_discovery {
            return None;
        }
        let base = match self.var("XDG_CONFIG_HOME").map(PathBuf::from).filter(|p| p.is_absolute()) {
            Some(dir) => dir,
            None => PathBuf::from(self.var("HOME")?).join(".config"),
        };
        let path = base.join("socket").join("settings.toml");
        path.is_file().then_some((path, "found"))
    }

    /// Merges the layers, checks every key and value, and returns the configuration.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`]: a named file that does not exist or is not
    /// valid TOML, an unknown key, a value of the wrong type or outside its
    /// rule; the message names the key, the value, the rule and where the
    /// value came from.
    pub fn load(&self) -> Result<Config> {
        self.load_inner().map_err(Error::from)
    }

    fn load_inner(&self) -> std::result::Result<Config, ConfigError> {
        let mut builder = config::Config::builder();
        let file = self.config_file().map(|(path, why)| (std::path::absolute(&path).unwrap_or(path), why));
        if let Some((path, why)) = &file {
            tracing::debug!(path = %path.display(), why, "reading configuration file");
            builder = builder.add_source(read_file(path, why)?);
        }
        let env: config::Map<String, String> = match &self.env {
            Some(env) => env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            None => std::env::vars().collect(),
        };
        builder = builder.add_source(SocketEnv(
            config::Environment::with_prefix("SOCKET")
                .prefix_separator("__")
                .separator("__")
                .ignore_empty(true)
                .source(Some(env)),
        ));
        for (key, value) in &self.overrides {
            builder = builder
                .set_override(key.as_str(), to_config_value(value))
                .map_err(|_| ConfigError::UnknownKey { key: key.clone(), origin: OVERRIDE_ORIGIN.to_owned() })?;
        }
        let merged = builder.build().map_err(|source| match &file {
            Some((path, _)) => ConfigError::ReadFile { path: path.clone(), source },
            None => ConfigError::Build { source },
        })?;
        let root = config::Source::collect(&merged).map_err(|source| ConfigError::Build { source })?;
        let mut origins = BTreeMap::new();
        let config = from_root(root, &mut origins)?;
        config.check().map_err(|e| e.with_origin(&origins))?;
        Ok(config)
    }
}

const OVERRIDE_ORIGIN: &str = " (set in code or on the command line)";

/// The environment source with keys nested under `socket`: `SOCKET__A__B`
/// becomes `socket.a.b`.
#[derive(Debug, Clone)]
struct SocketEnv(config::Environment);

impl config::Source for SocketEnv {
    fn clone_into_box(&self) -> Box<dyn config::Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> std::result::Result<config::Map<String, config::Value>, config::ConfigError> {
        Ok(self.0.collect()?.into_iter().map(|(k, v)| (format!("socket.{k}"), v)).collect())
    }
}

/// Largest configuration file read, in bytes (1 MiB).
pub const MAX_CONFIG_FILE_LEN: usize = 1 << 20;

/// Reads and parses the TOML file at `path` (absolute): any readable file, a FIFO or
/// `/dev/stdin` included (`--config <(generate)`), read once, at most
/// [`MAX_CONFIG_FILE_LEN`] bytes. A key given twice is a TOML error. Every value remembers
/// the path, so that an error about it names the file.
fn read_file(path: &Path, why: &str) -> std::result::Result<FileSource, ConfigError> {
    use std::io::Read;
    let io = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ConfigError::FileNotFound { path: path.to_owned(), origin: format!(" ({why})") }
        } else {
            ConfigError::ReadIo { path: path.to_owned(), source }
        }
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_FILE_LEN as u64 + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() > MAX_CONFIG_FILE_LEN {
        return Err(ConfigError::FileTooLarge { path: path.to_owned(), limit: MAX_CONFIG_FILE_LEN });
    }
    let text = String::from_utf8(bytes).map_err(|e| ConfigError::ReadIo {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not UTF-8 text: {e}")),
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::ReadFile {
        path: path.to_owned(),
        source: config::ConfigError::FileParse { uri: None, cause: Box::new(e) },
    })?;
    Ok(FileSource { table, origin: path.display().to_string() })
}

/// A parsed configuration file as a layer of the loader.
#[derive(Debug, Clone)]
struct FileSource {
    table: toml::Table,
    origin: String,
}

impl config::Source for FileSource {
    fn clone_into_box(&self) -> Box<dyn config::Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> std::result::Result<config::Map<String, config::Value>, config::ConfigError> {
        Ok(self.table.iter().map(|(k, v)| (k.clone(), config_value_from(v, Some(&self.origin)))).collect())
    }
}

fn to_config_value(value: &toml::Value) -> config::Value {
    config_value_from(value, None)
}

fn config_value_from(value: &toml::Value, origin: Option<&String>) -> config::Value {
    use config::ValueKind;
    let kind = match value {
        toml::Value::String(s) => ValueKind::String(s.clone()),
        toml::Value::Integer(i) => ValueKind::I64(*i),
        toml::Value::Float(f) => ValueKind::Float(*f),
        toml::Value::Boolean(b) => ValueKind::Boolean(*b),
        toml::Value::Datetime(d) => ValueKind::String(d.to_string()),
        toml::Value::Array(items) => ValueKind::Array(items.iter().map(|v| config_value_from(v, origin)).collect()),
        toml::Value::Table(t) => {
            ValueKind::Table(t.iter().map(|(k, v)| (k.clone(), config_value_from(v, origin))).collect())
        }
    };
    config::Value::new(origin, kind)
}

/// Where a value came from, for messages.
fn origin_of(key: &str, value: &config::Value) -> String {
    // Tables made by merging have no origin of their own: use a leaf's.
    if let (None, config::ValueKind::Table(t)) = (value.origin(), &value.kind) {
        if let Some((name, child)) = t.iter().min_by(|a, b| a.0.cmp(b.0)) {
            return origin_of(&format!("{key}.{name}"), child);
        }
    }
    match value.origin() {
        Some("the environment") => {
            let var = key.split('.').map(str::to_ascii_uppercase).collect::<Vec<_>>().join("__");
            format!(" (from environment variable {var})")
        }
        Some(file) => format!(" (from {file})"),
        None => OVERRIDE_ORIGIN.to_owned(),
    }
}

/// A config value as shown in a message.
fn show(value: &config::Value) -> String {
    use config::ValueKind;
    match &value.kind {
        ValueKind::Nil => "nothing".to_owned(),
        ValueKind::Boolean(b) => b.to_string(),
        ValueKind::I64(n) => n.to_string(),
        ValueKind::I128(n) => n.to_string(),
        ValueKind::U64(n) => n.to_string(),
        ValueKind::U128(n) => n.to_string(),
        ValueKind::Float(f) => f.to_string(),
        ValueKind::String(s) => format!("{s:?}"),
        ValueKind::Table(_) => "a table".to_owned(),
        ValueKind::Array(_) => "an array".to_owned(),
    }
}

fn as_int(value: &config::Value) -> Option<i128> {
    use config::ValueKind;
    match &value.kind {
        ValueKind::I64(n) => Some(i128::from(*n)),
        ValueKind::I128(n) => Some(*n),
        ValueKind::U64(n) => Some(i128::from(*n)),
        ValueKind::U128(n) => i128::try_from(*n).ok(),
        ValueKind::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Converts `value` to the TOML form of `info`'s type (strings from the
/// environment parsed), or fails naming the key, value and rule.
/// `Ok(None)` leaves an optional key absent.
fn coerce(info: &KeyInfo, value: &config::Value) -> std::result::Result<Option<toml::Value>, ConfigError> {
    use config::ValueKind;
    let bad = || {
        let mut e = invalid(info.key, show(value));
        if let ConfigError::InvalidValue { origin, .. } = &mut e {
            *origin = origin_of(info.key, value);
        }
        e
    };
    let int_in = |max: i128| as_int(value).filter(|n| (0..=max).contains(n)).map(|n| toml::Value::Integer(n as i64));
    let is_blank = matches!(&value.kind, ValueKind::String(s) if s.trim().is_empty()) || value.kind == ValueKind::Nil;
    Ok(Some(match info.ty {
        ValueType::Boolean => match &value.kind {
            ValueKind::Boolean(b) => toml::Value::Boolean(*b),
            ValueKind::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => toml::Value::Boolean(true),
                "false" | "0" => toml::Value::Boolean(false),
                _ => return Err(bad()),
            },
            _ => return Err(bad()),
        },
        ValueType::Integer => int_in(i128::from(i64::MAX).min(usize::MAX as i128)).ok_or_else(bad)?,
        ValueType::OptionalInteger if is_blank => return Ok(None),
        ValueType::OptionalInteger => int_in(i128::from(u32::MAX)).ok_or_else(bad)?,
        ValueType::Port => int_in(i128::from(u16::MAX)).ok_or_else(bad)?,
        ValueType::OptionalPort if is_blank => return Ok(None),
        ValueType::OptionalPort => int_in(i128::from(u16::MAX)).ok_or_else(bad)?,
        ValueType::Seconds => {
            let f = match &value.kind {
                ValueKind::Float(f) => Some(*f),
                ValueKind::String(s) => s.trim().parse::<f64>().ok(),
                _ => as_int(value).map(|n| n as f64),
            };
            toml::Value::Float(f.filter(|f| f.is_finite()).ok_or_else(bad)?)
        }
        ValueType::OptionalPath if is_blank => return Ok(None),
        ValueType::String | ValueType::Path | ValueType::OptionalPath => match &value.kind {
            ValueKind::String(s) => toml::Value::String(s.clone()),
            _ => return Err(bad()),
        },
        ValueType::IntegerList => {
            let items: Vec<i128> = match &value.kind {
                ValueKind::Array(items) => items.iter().map(as_int).collect::<Option<_>>().ok_or_else(bad)?,
                ValueKind::String(s) if s.trim().is_empty() => Vec::new(),
                ValueKind::String(s) => {
                    s.split(',').map(|p| p.trim().parse().ok()).collect::<Option<_>>().ok_or_else(bad)?
                }
                _ => return Err(bad()),
            };
            if items.iter().any(|n| !(0..=i128::from(u32::MAX)).contains(n)) {
                return Err(bad());
            }
            toml::Value::Array(items.into_iter().map(|n| toml::Value::Integer(n as i64)).collect())
        }
        ValueType::StringList => {
            let items: Vec<String> = match &value.kind {
                ValueKind::Array(items) => items
                    .iter()
                    .map(|v| match &v.kind {
                        ValueKind::String(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect::<Option<_>>()
                    .ok_or_else(bad)?,
                ValueKind::String(s) if s.trim().is_empty() => Vec::new(),
                ValueKind::String(s) => s.split(',').map(|p| p.trim().to_owned()).collect(),
                _ => return Err(bad()),
            };
            toml::Value::Array(items.into_iter().map(toml::Value::String).collect())
        }
    }))
}

/// Plug-in tables are kept as they are (converted to TOML values).
fn to_toml(value: config::Value) -> Option<toml::Value> {
    use config::ValueKind;
    let from_env = value.origin() == Some("the environment");
    Some(match value.kind {
        ValueKind::Nil => return None,
        ValueKind::Boolean(b) => toml::Value::Boolean(b),
        ValueKind::I64(n) => toml::Value::Integer(n),
        ValueKind::I128(n) => i64::try_from(n).map_or(toml::Value::Float(n as f64), toml::Value::Integer),
        ValueKind::U64(n) => i64::try_from(n).map_or(toml::Value::Float(n as f64), toml::Value::Integer),
        ValueKind::U128(n) => i64::try_from(n).map_or(toml::Value::Float(n as f64), toml::Value::Integer),
        ValueKind::Float(f) => toml::Value::Float(f),
        // Environment variables are text: a plug-in table has no schema here, so a value from the
        // environment that reads as a TOML integer, float or boolean takes that type (as it would in a file).
        ValueKind::String(s) if from_env => env_scalar(s),
        ValueKind::String(s) => toml::Value::String(s),
        ValueKind::Table(t) => toml::Value::Table(t.into_iter().filter_map(|(k, v)| Some((k, to_toml(v)?))).collect()),
        ValueKind::Array(items) => toml::Value::Array(items.into_iter().filter_map(to_toml).collect()),
    })
}

/// An environment string as the TOML scalar it spells (`20`, `1.5`, `true`), else as a string.
fn env_scalar(s: String) -> toml::Value {
    if let Ok(n) = s.parse::<i64>() {
        toml::Value::Integer(n)
    } else if let Ok(f) = s.parse::<f64>().map_err(|_| ()).and_then(|f| if f.is_finite() { Ok(f) } else { Err(()) }) {
        toml::Value::Float(f)
    } else if let Ok(b) = s.parse::<bool>() {
        toml::Value::Boolean(b)
    } else {
        toml::Value::String(s)
    }
}

/// Walks the merged tree: every key must be in [`KEYS`] (or be a plug-in
/// table); values are converted to their type; then serde builds the structs.
fn from_root(
    root: config::Map<String, config::Value>,
    origins: &mut BTreeMap<String, String>,
) -> std::result::Result<Config, ConfigError> {
    let mut socket_out = toml::Table::new();
    let mut plugins = BTreeMap::new();
    // Sorted, so that the first error reported does not depend on hash order.
    let root: BTreeMap<_, _> = root.into_iter().collect();
    for (name, value) in root {
        if name != "socket" {
            return Err(ConfigError::UnknownKey { origin: origin_of(&name, &value), key: name });
        }
        let config::ValueKind::Table(table) = value.kind else {
            return Err(ConfigError::InvalidValue {
                origin: origin_of("socket", &value),
                key: "socket".to_owned(),
                value: show(&value),
                rule: "a table of settings".to_owned(),
            });
        };
        let table: BTreeMap<_, _> = table.into_iter().collect();
        for (name, value) in table {
            let full = format!("socket.{name}");
            if CORE_TABLES.contains(&name.as_str()) {
                let config::ValueKind::Table(sub) = value.kind else {
                    return Err(ConfigError::InvalidValue {
                        origin: origin_of(&full, &value),
                        value: show(&value),
                        rule: format!("a table of settings ([{full}])"),
                        key: full,
                    });
                };
                let mut sub_out = toml::Table::new();
                let sub: BTreeMap<_, _> = sub.into_iter().collect();
                for (name, value) in sub {
                    let full = format!("{full}.{name}");
                    put(&full, &name, value, &mut sub_out, origins)?;
                }
                socket_out.insert(name, toml::Value::Table(sub_out));
            } else if key_info(&full).is_some() {
                put(&full, &name, value, &mut socket_out, origins)?;
            } else if let config::ValueKind::Table(_) = &value.kind {
                if let Some(toml::Value::Table(t)) = to_toml(value) {
                    plugins.insert(name, t);
                }
            } else {
                return Err(ConfigError::UnknownKey { origin: origin_of(&full, &value), key: full });
            }
        }
    }
    let mut top = toml::Table::new();
    top.insert("socket".to_owned(), toml::Value::Table(socket_out));
    let mut config: Config =
        toml::Value::Table(top).try_into().map_err(|e: toml::de::Error| ConfigError::InvalidValue {
            key: "socket".to_owned(),
            value: "(the merged configuration)".to_owned(),
            rule: e.message().to_owned(),
            origin: String::new(),
        })?;
    config.socket.plugins = plugins;
    Ok(config)
}

fn put(
    full: &str,
    name: &str,
    value: config::Value,
    out: &mut toml::Table,
    origins: &mut BTreeMap<String, String>,
) -> std::result::Result<(), ConfigError> {
    let Some(info) = key_info(full) else {
        return Err(ConfigError::UnknownKey { origin: origin_of(full, &value), key: full.to_owned() });
    };
    origins.insert(full.to_owned(), origin_of(full, &value));
    if let Some(v) = coerce(info, &value)? {
        out.insert(name.to_owned(), v);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Documentation
// ---------------------------------------------------------------------------

fn lookup<'t>(table: &'t toml::Table, key: &str) -> Option<&'t toml::Value> {
    let mut parts = key.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = value.as_table()?.get(part)?;
    }
    Some(value)
}

fn render_toml(value: &toml::Value) -> String {
    match value {
        toml::Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.1}"),
        other => other.to_string(),
    }
}

const DOC_INTRO: &str = r#"# Configuration reference

<!-- Generated from the key table of socket-core/src/config.rs (`socket_core::config::reference_markdown`).
     Do not edit by hand: run `cargo xtask codegen` (or `cargo run -p socket-core --example gen_config_docs > docs/configuration.md`). -->

Every setting lives under `[socket]` (with `[socket.unix]` and `[socket.tcp]`
for the two built-in transports, and `[socket.nats]` for the NATS bridge). Values are taken, lowest to highest
priority, from:

1. the defaults below;
2. a TOML file: the one given with `--config` (or `ConfigLoader::file`), else
   the one named by the environment variable `SOCKET_CONFIG`, else
   `$XDG_CONFIG_HOME/socket/settings.toml` (or `~/.config/socket/settings.toml`
   when `XDG_CONFIG_HOME` is unset) when that file exists; a file named
   explicitly or by `SOCKET_CONFIG` must exist;
3. environment variables: key `socket.a.b` is `SOCKET__A__B`, for instance
   `SOCKET__SOCKET_DIR` or `SOCKET__UNIX__MAX_CONNECTIONS`; values are parsed
   to the key's type (booleans `true`/`false`/`1`/`0`, lists
   comma-separated); an empty variable counts as unset (which also leaves an
   optional key absent);
4. values set in code (`ConfigLoader::set("socket.tcp.port", 9001)`) or on the
   command line of `socketctl`.

An unknown key, a value of the wrong type and a value outside its rule are
errors naming the key, the value, the rule and where the value came from.
Tables `[socket.<scheme>]` other than `unix`, `tcp` and `nats` belong to plug-in
transports: the core keeps them as they are and the transport registered
under that scheme validates them (the factory refuses a table whose scheme is
not registered).

The configuration of the original design loads unchanged:

```toml
[socket]
socket_dir = "/tmp/sockets"
default_timeout = 5
buffer_size = 4096
timezone = "UTC"
message_queue_size = 100
blocking_mode = false
allow_client_send = true

[socket.unix]
max_connections = 10
socket_permissions = "0600"
auto_remove_socket = true

[socket.tcp]
host = "127.0.0.1"
port_range_start = 9000
port_range_end = 9100
max_connections = 10
```
"#;

/// Renders `docs/configuration.md`: every key of [`KEYS`] with its type,
/// default, environment variable, rule and description.
pub fn reference_markdown() -> String {
    let defaults = Config::default().to_table().unwrap_or_default();
    let mut out = String::from(DOC_INTRO);
    let sections = [
        ("socket", "`[socket]`"),
        ("socket.unix", "`[socket.unix]`"),
        ("socket.tcp", "`[socket.tcp]`"),
        ("socket.nats", "`[socket.nats]` (the multi-host bridge, `docs/multi-host.md`)"),
    ];
    for (prefix, title) in sections {
        let _ = writeln!(out, "\n## {title}\n");
        out.push_str("| Key | Type | Default | Environment variable | Valid values |\n");
        out.push_str("|---|---|---|---|---|\n");
        let keys: Vec<&KeyInfo> =
            KEYS.iter().filter(|k| k.key.rsplit_once('.').map(|(table, _)| table) == Some(prefix)).collect();
        for k in &keys {
            let name = k.key.rsplit_once('.').map_or(k.key, |(_, n)| n);
            let default =
                lookup(&defaults, k.key).map_or_else(|| "absent".to_owned(), |v| format!("`{}`", render_toml(v)));
            let _ = writeln!(
                out,
                "| [`{name}`](#{anchor}) | {} | {default} | `{}` | {} |",
                k.ty.name(),
                k.env_var(),
                k.rule.replace('|', "\\|"),
                anchor = k.key.replace('.', ""),
            );
        }
        out.push('\n');
        for k in &keys {
            let _ = writeln!(out, "### `{}`\n\n{}\n", k.key, k.description);
        }
    }
    out.push_str(
        "## Plug-in transport tables\n\n\
         `[socket.<scheme>]` (for example `[socket.memory]`) holds the settings of the plug-in transport \
         registered under `<scheme>`; a plug-in's `max_connections` key is read by the core as that transport's \
         connection limit (default 10). Environment variables reach these tables too: \
         `SOCKET__MEMORY__MAX_CONNECTIONS` sets `socket.memory.max_connections`.\n",
    );
    out
}
