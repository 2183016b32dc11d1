//! An in-memory transport, written against `socket-core` alone like any
//! third-party plug-in.
//!
//! Each connection is a pair of bounded in-process pipes ([`piper`]), so a
//! reader that stops reading pushes back on the writer exactly like a socket
//! buffer. Servers bind a name `memory://{namespace}/{event}` in the hub of
//! the transport instance; [`MemoryTransport::global`] shares one hub per
//! process.
//!
//! Its table `[socket.memory]` has three keys:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `namespace` | `"default"` | separates servers of the same event (one per test) |
//! | `pipe_capacity` | 65536 | bytes buffered in each direction of a connection |
//! | `max_connections` | 10 | clients served at once |
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
use socket_core::config::Config;
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

/// Checks a `[socket.<scheme>]` table of the in-process test transports
/// (`memory`, `faulty`): `namespace`, `pipe_capacity`, `max_connections`.
pub(crate) fn validate_table(scheme: &str, table: Option<&toml::Table>) -> Result<()> {
    let Some(t) = table else { return Ok(()) };
    for (key, value) in t {
        let ok = match key.as_str() {
            "namespace" => value.as_str().is_some_and(|s| !s.is_empty()),
            "pipe_capacity" | "max_connections" => value.as_integer().is_some_and(|n| n > 0),
            _ => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "unknown key socket.{scheme}.{key}: the {scheme} transport knows namespace, pipe_capacity and max_connections"
                    ),
                ))
            }
        };
        if !ok {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "invalid value {value} for key socket.{scheme}.{key}: namespace must be a non-empty string, sizes positive integers"
                ),
            ));
        }
    }
    Ok(())
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

    fn validate(&self, config: &Config) -> Result<()> {
        validate_table(SCHEME, table(config))
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
