//! Configuration: defaults < TOML file < environment < code.
//!
//! The keys live under `[socket]`, `[socket.unix]` and `[socket.tcp]`; a
//! plug-in transport reads its own table `[socket.<scheme>]` (kept as written
//! in [`SocketSettings::plugins`]). Every core key, its type, default,
//! environment variable and rule is listed in one table, [`KEYS`]: the loader,
//! [`Config::validate`] and the generated reference `docs/configuration.md`
//! ([`reference_markdown`]) all read it. A transport declares the keys of its
//! table as [`KeySpec`]s ([`Transport::settings`](crate::Transport::settings)),
//! checked by [`check_transport_table`] with the same [`ConfigError`] and
//! wording, and listed by [`reference_markdown_with`].
//!
//! The module is split by stage: `load` (the file, the environment, values set
//! in code), `layer` (the merged tree checked key by key and typed), `validate`
//! (the rules of the core keys), `keys` (the key table), `spec` (transport key
//! declarations), `error`, `nats` (the bridge's table) and `docs` (the reference).
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

mod docs;
mod error;
mod keys;
mod layer;
mod load;
mod nats;
mod spec;
mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::codec::Limits;
use crate::error::{Error, Result};

pub use docs::{reference_markdown, reference_markdown_with};
pub use error::ConfigError;
pub use keys::{
    key_info, KeyInfo, ValueType, DEFAULT_SEND_BUFFER, KEYS, MAX_BUFFER_SIZE, MAX_CONNECTIONS, MAX_QUEUE_BYTES,
    MAX_QUEUE_LEN, MAX_SECONDS, SEND_BUFFER_DOC, SEND_BUFFER_RANGE, SEND_BUFFER_RULE,
};
pub use load::{ConfigLoader, MAX_CONFIG_FILE_LEN};
pub use nats::{check_nats_url, is_valid_subject_prefix, NatsSettings, MAX_NATS_OUTBOUND_BUFFER};
pub use spec::{check_table, check_transport_table, KeyCheck, KeySpec, Origins};
pub use validate::is_valid_scheme;

use error::{invalid, show_str};

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
    /// Tables of plug-in transports, `[socket.<scheme>]`, kept as written and
    /// validated by their transport (against its declared [`KeySpec`]s). Written out beside `unix` and `tcp`.
    #[serde(flatten, skip_deserializing)]
    pub plugins: BTreeMap<String, toml::Table>,
    /// Where the values of the plug-in tables came from, for error messages (filled by the
    /// loader; not serialized, ignored by equality).
    #[serde(skip)]
    pub plugin_origins: Origins,
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
            plugin_origins: Origins::default(),
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
    /// Kernel send buffer (`SO_SNDBUF`) of every connection the server accepts, in bytes.
    pub send_buffer_bytes: usize,
}

impl Default for UnixSettings {
    fn default() -> Self {
        UnixSettings {
            max_connections: 10,
            socket_permissions: "0600".to_owned(),
            auto_remove_socket: true,
            allowed_uids: Vec::new(),
            send_buffer_bytes: DEFAULT_SEND_BUFFER,
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
    /// Loads the configuration from every layer (see the [module docs](self)),
    /// reading the process environment.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) naming the file, key, value and rule at fault.
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
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) naming the first invalid key, its value and the rule.
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
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) if `socket.timezone` is not a known IANA zone.
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
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) if a value cannot be represented in TOML (a
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
