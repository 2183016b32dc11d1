//! The key table: every core key with its type, rule and description.

use super::docs::{lookup, render_toml};
use super::Config;

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
/// Default of `socket.unix.send_buffer_bytes` (1 MiB; see its description).
pub const DEFAULT_SEND_BUFFER: usize = 1 << 20;
/// Bounds of `socket.unix.send_buffer_bytes` (4 KiB to 16 MiB).
pub const SEND_BUFFER_RANGE: std::ops::RangeInclusive<usize> = 4096..=16 << 20;
/// The rule of `socket.unix.send_buffer_bytes`.
pub const SEND_BUFFER_RULE: &str = "an integer in 4096..=16777216 (16 MiB)";

const SECONDS: &str = "a number of seconds > 0, at most 31536000 (one year)";
const QUEUE_LEN: &str = "an integer in 1..=1000000";
const QUEUE_BYTES: &str = "an integer in 1..=1073741824 (1 GiB)";
const CONNECTIONS: &str = "an integer in 1..=65536";
const BOOLEAN: &str = "true or false";
/// The description of `socket.unix.send_buffer_bytes` (the transport's declaration shares it).
pub const SEND_BUFFER_DOC: &str = "Kernel send buffer (`SO_SNDBUF`) of each connection a Unix-socket server accepts. \
     A broadcast that outruns a subscriber queues in the server; a larger kernel buffer lets the subscriber read on \
     while the server's writer is not yet scheduled. Linux caps it at `net.core.wmem_max`. TCP keeps the kernel's \
     own tuning.";

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
    key("socket.unix.send_buffer_bytes", ValueType::Integer, SEND_BUFFER_RULE, SEND_BUFFER_DOC),
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

pub(super) fn rule_of(key: &str) -> &'static str {
    key_info(key).map_or("a valid value", |k| k.rule)
}

/// Sub-tables of `[socket]` owned by the core (every other table is a plug-in's).
pub(super) const CORE_TABLES: [&str; 3] = ["unix", "tcp", "nats"];
