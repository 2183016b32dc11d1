//! An in-memory transport, written against `socket-core` alone like any
//! third-party plug-in.
//!
//! Each connection is a pair of bounded in-process pipes ([`piper`]), so a
//! reader that stops reading pushes back on the writer exactly like a socket
//! buffer. Servers bind a name `memory://{namespace}/{event}` in the hub of
//! the transport instance; [`MemoryTransport::global`] shares one hub per
//! process.
//!
//! Its table `[socket.memory]` has three keys, declared in [`SETTINGS`]
//! ([`Transport::settings`]) and so checked with the core's errors, from a file
//! and from the environment (`SOCKET__MEMORY__MAX_CONNECTIONS`) alike:
//!
//! | key | default | valid values | meaning |
//! |---|---|---|---|
//! | `namespace` | `"default"` | a non-empty string | separates servers of the same event (one per test) |
//! | `pipe_capacity` | 65536 | 1..=1073741824 | bytes buffered in each direction of a connection |
//! | `max_connections` | 10 | 1..=65536 | clients served at once |
//!
//! # Examples
//!
//! ```
//! use socket_core::TransportRegistry;
//!
//! let registry = TransportRegistry::new();
//! socket_tests::memory::register(&registry);
//! assert!(registry.contains("memory"));
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_channel::{Receiver, Sender};
use async_trait::async_trait;
use socket_core::config::{check_table, Config, KeySpec, Origins, ValueType, MAX_CONNECTIONS, MAX_QUEUE_BYTES};
use socket_core::{Connection, Endpoint, Error, ErrorKind, EventName, Listener, PeerInfo, Result, Transport};

/// The scheme this transport registers under.
pub const SCHEME: &str = "memory";
/// Default bytes buffered in each direction of a connection.
pub const DEFAULT_PIPE_CAPACITY: usize = 64 * 1024;
/// Connections waiting to be accepted before `connect` is refused.
const BACKLOG: usize = 128;

/// Registers the process-global [`MemoryTransport`] in `registry`.
pub fn register(registry: &socket_core::TransportRegistry) {
    registry.register(MemoryTransport::global());
}

/// Sets `[socket.memory] key = value` in `config`.
pub fn set_option(config: &mut Config, key: &str, value: impl Into<toml::Value>) {
    config.socket.plugins.entry(SCHEME.to_owned()).or_default().insert(key.to_owned(), value.into());
}

/// The in-memory transport. Clones share the same hub of listeners.
#[derive(Clone, Default)]
pub struct MemoryTransport {
    hub: Arc<Hub>,
}

#[derive(Default)]
struct Hub {
    listeners: Mutex<HashMap<String, Entry>>,
    next: AtomicU64,
}

struct Entry {
    id: u64,
    tx: Sender<Connection>,
}

impl fmt::Debug for MemoryTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.hub.listeners.lock().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("MemoryTransport").field("listeners", &n).finish()
    }
}

impl MemoryTransport {
    /// A transport with its own, empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-global transport (one hub shared by every clone).
    pub fn global() -> Self {
        static GLOBAL: OnceLock<MemoryTransport> = OnceLock::new();
        GLOBAL.get_or_init(MemoryTransport::new).clone()
    }

    /// Number of servers currently bound in this hub.
    pub fn bound(&self) -> usize {
        self.hub.lock().len()
    }
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn table(config: &Config) -> Option<&toml::Table> {
    config.socket.plugins.get(SCHEME)
}

/// The keys of `[socket.memory]` (and of `[socket.faulty]`), declared like a built-in
/// transport's: checked with the core's errors and listed with their types and bounds.
pub static SETTINGS: &[KeySpec] = &[
    KeySpec::new(
        "namespace",
        ValueType::String,
        "a non-empty string",
        "Separates servers of the same event (one namespace per test).",
    )
    .with_default("\"default\"")
    .with_check(non_empty),
    KeySpec::new(
        "pipe_capacity",
        ValueType::Integer,
        "an integer in 1..=1073741824 (1 GiB)",
        "Bytes buffered in each direction of a connection.",
    )
    .with_default("65536")
    .with_bounds(1, MAX_QUEUE_BYTES as i64),
    KeySpec::new(
        "max_connections",
        ValueType::Integer,
        "an integer in 1..=65536",
        "Clients a server of this transport serves at once.",
    )
    .with_default("10")
    .with_bounds(1, MAX_CONNECTIONS as i64),
];

fn non_empty(value: &toml::Value) -> std::result::Result<(), String> {
    match value.as_str() {
        Some("") => Err("empty".to_owned()),
        _ => Ok(()),
    }
}

/// Checks a `[socket.<scheme>]` table of the in-process test transports
/// (`memory`, `faulty`) against [`SETTINGS`].
pub(crate) fn validate_table(scheme: &str, table: Option<&toml::Table>) -> Result<()> {
    let Some(t) = table else { return Ok(()) };
    check_table(scheme, SETTINGS, t, &Origins::default()).map_err(Error::from)
}

fn namespace(config: &Config) -> &str {
    table(config).and_then(|t| t.get("namespace")).and_then(toml::Value::as_str).unwrap_or("default")
}

fn pipe_capacity(config: &Config) -> usize {
    table(config)
        .and_then(|t| t.get("pipe_capacity"))
        .and_then(toml::Value::as_integer)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(DEFAULT_PIPE_CAPACITY)
}

fn address(event: &EventName, config: &Config) -> String {
    format!("memory://{}/{}", namespace(config), event)
}

#[async_trait]
impl Transport for MemoryTransport {
    fn scheme(&self) -> &str {
        SCHEME
    }

    fn settings(&self) -> &'static [KeySpec] {
        SETTINGS
    }

    async fn bind(&self, event: &EventName, config: &Config) -> Result<Box<dyn Listener>> {
        self.validate(config)?;
        let address = address(event, config);
        let mut map = self.hub.lock();
        if map.get(&address).is_some_and(|e| !e.tx.is_closed()) {
            return Err(Error::new(
                ErrorKind::AddrInUse,
                format!("{address} is in use by a live server: stop it first or use another event name"),
            ));
        }
        let id = self.hub.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = async_channel::bounded(BACKLOG);
        map.insert(address.clone(), Entry { id, tx });
        Ok(Box::new(MemoryListener { hub: self.hub.clone(), id, address, rx }))
    }

    fn endpoints(&self, event: &EventName, config: &Config) -> Result<Vec<Endpoint>> {
        self.validate(config)?;
        Ok(vec![Endpoint { address: address(event, config), explicit: true }])
    }

    async fn connect(&self, endpoint: &Endpoint, config: &Config) -> Result<Connection> {
        let cap = pipe_capacity(config);
        let n = self.hub.next.fetch_add(1, Ordering::Relaxed);
        let (to_server_r, to_server_w) = piper::pipe(cap);
        let (to_client_r, to_client_w) = piper::pipe(cap);
        let server_side = Connection {
            reader: Box::new(to_server_r),
            writer: Box::new(to_client_w),
            peer: PeerInfo { address: format!("memory-peer-{n}"), pid: Some(std::process::id()), uid: None },
        };
        let refused = || {
            Error::new(ErrorKind::Connection, format!("connection refused: no server listens at {}", endpoint.address))
        };
        let tx = self.hub.lock().get(&endpoint.address).map(|e| e.tx.clone()).ok_or_else(refused)?;
        tx.try_send(server_side).map_err(|_| refused())?;
        Ok(Connection {
            reader: Box::new(to_client_r),
            writer: Box::new(to_server_w),
            peer: PeerInfo { address: endpoint.address.clone(), pid: Some(std::process::id()), uid: None },
        })
    }
}

/// A bound in-memory address.
struct MemoryListener {
    hub: Arc<Hub>,
    id: u64,
    address: String,
    rx: Receiver<Connection>,
}

impl fmt::Debug for MemoryListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryListener").field("address", &self.address).finish()
    }
}

#[async_trait]
impl Listener for MemoryListener {
    fn address(&self) -> String {
        self.address.clone()
    }

    async fn accept(&self) -> Result<Connection> {
        self.rx
            .recv()
            .await
            .map_err(|_| Error::new(ErrorKind::Connection, format!("listener {} is closed", self.address)))
    }

    fn close(&self) -> Result<()> {
        let mut map = self.hub.lock();
        if map.get(&self.address).is_some_and(|e| e.id == self.id) {
            map.remove(&self.address);
        }
        drop(map);
        // Connections not yet accepted are dropped: their clients see end-of-stream.
        self.rx.close();
        while self.rx.try_recv().is_ok() {}
        Ok(())
    }
}

impl Drop for MemoryListener {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

#[cfg(test)]
mod tests {
    use socket_core::config::{key_info, ConfigError, ConfigLoader};

    use super::*;

    /// The key, value, rule and origin of a configuration error, and its message.
    fn parts(err: &Error) -> (Option<String>, String) {
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        let source = std::error::Error::source(err).and_then(|s| s.downcast_ref::<ConfigError>());
        let source = source.unwrap_or_else(|| panic!("no ConfigError behind {err}"));
        assert!(matches!(source, ConfigError::InvalidValue { .. }), "{source:?}");
        (source.key().map(str::to_owned), err.to_string())
    }

    fn memory_rule(name: &str) -> &'static str {
        SETTINGS.iter().find(|k| k.name == name).map(|k| k.rule).unwrap_or_default()
    }

    /// A memory key out of its bound is refused with the same error as a core key out of its
    /// bound: kind, error type, key and the message "invalid value V for key K (from ORIGIN):
    /// expected RULE", from a file and from the environment.
    #[test]
    fn an_out_of_bound_plugin_key_is_refused_like_a_core_key_from_file_and_environment() {
        let core_rule = key_info("socket.message_queue_size").map(|k| k.rule).unwrap_or_default();
        let registry = socket_core::TransportRegistry::new();
        register(&registry);
        let memory = registry.get(SCHEME).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let core_file = dir.path().join("core.toml");
        std::fs::write(&core_file, "[socket]\nmessage_queue_size = 0\n").unwrap();
        let plugin_file = dir.path().join("plugin.toml");
        std::fs::write(&plugin_file, "[socket.memory]\nmax_connections = 70000\n").unwrap();
        let load =
            |file: &std::path::Path| ConfigLoader::new().env(std::iter::empty::<(String, String)>()).file(file).load();

        let core = load(&core_file).unwrap_err();
        let from = |p: &std::path::Path| std::path::absolute(p).unwrap().display().to_string();
        assert_eq!(
            parts(&core),
            (
                Some("socket.message_queue_size".to_owned()),
                format!("invalid configuration: invalid value 0 for key socket.message_queue_size (from {}): expected {core_rule}", from(&core_file)),
            )
        );
        let config = load(&plugin_file).unwrap();
        let plugin = memory.validate(&config).unwrap_err();
        assert_eq!(
            parts(&plugin),
            (
                Some("socket.memory.max_connections".to_owned()),
                format!(
                    "invalid configuration: invalid value 70000 for key socket.memory.max_connections (from {}): expected {}",
                    from(&plugin_file),
                    memory_rule("max_connections")
                ),
            )
        );

        let env =
            |var: &str, value: &str| ConfigLoader::new().no_file_discovery().env([(var.to_owned(), value.to_owned())]);
        let core = env("SOCKET__MESSAGE_QUEUE_SIZE", "0").load().unwrap_err();
        assert_eq!(
            parts(&core).1,
            format!("invalid configuration: invalid value 0 for key socket.message_queue_size (from environment variable SOCKET__MESSAGE_QUEUE_SIZE): expected {core_rule}")
        );
        let config = env("SOCKET__MEMORY__MAX_CONNECTIONS", "0").load().unwrap();
        let plugin = memory.validate(&config).unwrap_err();
        assert_eq!(
            parts(&plugin),
            (
                Some("socket.memory.max_connections".to_owned()),
                format!(
                    "invalid configuration: invalid value 0 for key socket.memory.max_connections (from environment variable SOCKET__MEMORY__MAX_CONNECTIONS): expected {}",
                    memory_rule("max_connections")
                ),
            )
        );

        // In bounds, from either layer, the transport serves with it.
        let config = env("SOCKET__MEMORY__MAX_CONNECTIONS", "65536").load().unwrap();
        memory.validate(&config).unwrap();
        assert_eq!(memory.max_connections(&config), 65536);
    }

    #[test]
    fn memory_keys_are_listed_in_the_reference_like_built_in_keys() {
        let md = socket_core::config::reference_markdown_with(&[("memory", SETTINGS)]);
        assert!(md.contains("## `[socket.memory]`"), "{md}");
        assert!(md.contains(
            "| [`max_connections`](#socketmemorymax_connections) | integer | `10` | `SOCKET__MEMORY__MAX_CONNECTIONS` | an integer in 1..=65536 |"
        ));
        assert!(md.contains("### `socket.memory.pipe_capacity`\n\nBytes buffered in each direction of a connection."));
    }

    #[test]
    fn memory_keys_have_their_declared_types_and_an_unknown_key_is_refused() {
        let memory = MemoryTransport::new();
        for (key, value, shown) in [
            ("namespace", toml::Value::from(""), "\"\""),
            ("namespace", toml::Value::from(5), "5"),
            ("pipe_capacity", toml::Value::from(0), "0"),
            ("pipe_capacity", toml::Value::from("big"), "\"big\""),
        ] {
            let mut config = Config::default();
            set_option(&mut config, key, value);
            let err = memory.validate(&config).unwrap_err();
            let (k, message) = parts(&err);
            assert_eq!(k.as_deref(), Some(format!("socket.memory.{key}").as_str()));
            assert!(
                message.starts_with(&format!(
                    "invalid configuration: invalid value {shown} for key socket.memory.{key}: expected {}",
                    memory_rule(key)
                )),
                "{message}"
            );
        }
        let mut config = Config::default();
        set_option(&mut config, "colour", "blue");
        let err = memory.validate(&config).unwrap_err();
        assert!(err.to_string().contains("unknown key socket.memory.colour"), "{err}");
        let mut config = Config::default();
        for (key, spec) in SETTINGS.iter().map(|k| (k.name, k)) {
            set_option(&mut config, key, spec.default_value().unwrap());
        }
        memory.validate(&config).unwrap();
    }
}
