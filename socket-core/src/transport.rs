//! The transport plug-in interface and the registry keyed by scheme name.
//!
//! A transport only binds, accepts and connects; everything above the byte
//! stream (framing, handshake, queues, broadcast, reconnect) is written once
//! in this crate's engines.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use async_trait::async_trait;
use futures_lite::{AsyncRead, AsyncWrite};

use crate::config::{check_transport_table, Config, KeySpec};
use crate::error::{Error, ErrorKind, Result};
use crate::message::EventName;

/// The read half of a connection.
pub type BoxRead = Box<dyn AsyncRead + Send + Unpin + 'static>;
/// The write half of a connection.
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin + 'static>;

/// What a transport knows about the other end of a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// Printable address of the peer (socket path, `host:port`, ...).
    pub address: String,
    /// Process id of the peer, where the transport knows it.
    pub pid: Option<u32>,
    /// User id of the peer, where the transport knows it.
    pub uid: Option<u32>,
}

/// An established byte stream, split into halves that can be used from
/// two tasks at once. Dropping both halves closes the connection.
pub struct Connection {
    /// Bytes from the peer.
    pub reader: BoxRead,
    /// Bytes to the peer.
    pub writer: BoxWrite,
    /// The other end.
    pub peer: PeerInfo,
}

impl Connection {
    /// A connection whose halves are two handles of one stream (`async-net`'s sockets, whose
    /// clones share the socket): `stream.clone()` reads and `stream` writes.
    pub fn shared<S>(stream: S, peer: PeerInfo) -> Connection
    where
        S: AsyncRead + AsyncWrite + Clone + Send + Unpin + 'static,
    {
        Connection { reader: Box::new(stream.clone()), writer: Box::new(stream), peer }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection").field("peer", &self.peer).finish_non_exhaustive()
    }
}

/// One address a client may try, in the order the transport gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Printable, transport-specific address (socket path, `host:port`, ...).
    pub address: String,
    /// True when the address was given explicitly (a fixed port or path), false
    /// when it is one candidate of a discovery sequence. A client accepts a
    /// discovered endpoint only when the server's `welcome` names the event.
    pub explicit: bool,
}

/// A bound, listening server address.
#[async_trait]
pub trait Listener: Send + Sync + fmt::Debug {
    /// The printable address clients connect to (socket path or `host:port`).
    fn address(&self) -> String;

    /// Waits for the next connection.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Connection`] on an accept failure; the engine logs it and
    /// keeps accepting, after a short pause if the error repeats.
    async fn accept(&self) -> Result<Connection>;

    /// Waits for the next connection like [`accept`](Self::accept) and, where the transport
    /// can, also gives a blocking view of its read half ([`BlockingRead`]). The server
    /// engine then lets a thread that waits in `ServerEvents::recv_blocking` read the
    /// connection itself while it is the server's only one, instead of handing every request
    /// from the reactor's thread to the application's. The default gives none: every read
    /// goes through the reactor.
    ///
    /// # Errors
    ///
    /// As [`accept`](Self::accept).
    async fn accept_blocking(&self) -> Result<(Connection, Option<Arc<dyn BlockingRead>>)> {
        Ok((self.accept().await?, None))
    }

    /// Stops listening and releases the address (removes a socket file the
    /// listener created, if configured to). Idempotent.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Connection`] if releasing the address failed.
    fn close(&self) -> Result<()>;
}

/// A way to bind and connect: Unix sockets, TCP, or a plug-in.
///
/// # Examples
///
/// See `docs/transport-plugins.md` and the in-memory transport of the
/// `socket-tests` crate.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug + 'static {
    /// The scheme this transport registers under (`"unix"`, `"tcp"`, ...).
    fn scheme(&self) -> &str;

    /// The keys of this transport's table `[socket.<scheme>]`: name, type, default, bounds
    /// and help text. They are checked by the default [`validate`](Self::validate) with the
    /// errors and wording of the core keys, and listed in the configuration reference. The
    /// default declares none (the transport then checks its table itself, if it has one).
    fn settings(&self) -> &'static [KeySpec] {
        &[]
    }

    /// Checks this transport's settings in `config` (its `[socket.<scheme>]` table). The
    /// default checks the table against [`settings`](Self::settings)
    /// ([`check_transport_table`]); a transport that overrides this to check more should
    /// call that too.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] naming the key, the value and the rule.
    fn validate(&self, config: &Config) -> Result<()> {
        check_transport_table(self.scheme(), self.settings(), config).map_err(Error::from)
    }

    /// The connection limit for servers of this transport (`max_connections` of its table).
    fn max_connections(&self, config: &Config) -> usize {
        config.max_connections(self.scheme())
    }

    /// Binds a listener for `event`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::AddrInUse`] when a live server owns the address;
    /// [`ErrorKind::Validation`] or [`ErrorKind::Config`] for bad settings;
    /// [`ErrorKind::Connection`] for other I/O failures.
    async fn bind(&self, event: &EventName, config: &Config) -> Result<Box<dyn Listener>>;

    /// The addresses a client for `event` tries, in order.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Validation`] or [`ErrorKind::Config`] for bad settings.
    fn endpoints(&self, event: &EventName, config: &Config) -> Result<Vec<Endpoint>>;

    /// The endpoints of one connect attempt: [`endpoints`](Self::endpoints) with any name
    /// lookup done once for all of them (the client calls this once per connect, then
    /// [`connect`](Self::connect) for each endpoint). The default needs no lookup.
    ///
    /// # Errors
    ///
    /// As [`endpoints`](Self::endpoints); a transport that resolves names returns
    /// [`ErrorKind::Config`] saying "cannot resolve host ..." for a name that does not resolve.
    async fn resolve_endpoints(&self, event: &EventName, config: &Config) -> Result<Vec<Endpoint>> {
        self.endpoints(event, config)
    }

    /// Connects to one endpoint.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Connection`] when nothing listens there or the connect fails.
    async fn connect(&self, endpoint: &Endpoint, config: &Config) -> Result<Connection>;

    /// Connects like [`connect`](Self::connect) and, where the transport can, also gives a
    /// blocking view of the connection's read half ([`BlockingRead`]). The client engine then
    /// reads on the thread of a blocking `receive` while the application keeps receiving,
    /// instead of handing every read from the reactor's thread to the application's (a
    /// system call or two per wait instead of the reactor's round, and one thread wake-up
    /// instead of two). The default gives none: every read goes through the reactor.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    async fn connect_blocking(
        &self,
        endpoint: &Endpoint,
        config: &Config,
    ) -> Result<(Connection, Option<Arc<dyn BlockingRead>>)> {
        Ok((self.connect(endpoint, config).await?, None))
    }
}

/// A blocking view of one connection's read half, given by
/// [`Transport::connect_blocking`] or [`Listener::accept_blocking`]. It reads the same
/// stream as the connection's [`BoxRead`]; the engines never use both at once.
pub trait BlockingRead: Send + Sync + fmt::Debug {
    /// Reads what the stream holds into `buf`, waiting for data at most until `deadline`
    /// (`None`: no limit). `Ok(Some(0))` is end of stream, `Ok(None)` means the deadline
    /// passed with nothing to read.
    ///
    /// # Errors
    ///
    /// The stream's read error.
    fn read_until(&self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<Option<usize>>;
}

/// Transports keyed by scheme name. Cheap to clone; clones share the map.
///
/// # Examples
///
/// ```
/// use socket_core::TransportRegistry;
///
/// let registry = TransportRegistry::new();
/// let err = registry.get("carrier-pigeon").unwrap_err();
/// assert!(err.to_string().contains("unknown transport"));
/// ```
#[derive(Clone, Default)]
pub struct TransportRegistry {
    map: Arc<RwLock<BTreeMap<String, Arc<dyn Transport>>>>,
}

impl TransportRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `transport` under its scheme (case-insensitive), replacing an earlier one.
    pub fn register(&self, transport: impl Transport) {
        self.register_arc(Arc::new(transport));
    }

    /// Registers a shared transport under its scheme.
    pub fn register_arc(&self, transport: Arc<dyn Transport>) {
        let scheme = transport.scheme().to_ascii_lowercase();
        self.map.write().unwrap_or_else(|e| e.into_inner()).insert(scheme, transport);
    }

    /// The registered schemes, sorted.
    pub fn schemes(&self) -> Vec<String> {
        self.map.read().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect()
    }

    /// True if `scheme` is registered.
    pub fn contains(&self, scheme: &str) -> bool {
        self.map.read().unwrap_or_else(|e| e.into_inner()).contains_key(&scheme.to_ascii_lowercase())
    }

    /// The transport for `scheme` (case-insensitive).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] naming the unknown scheme and listing the available ones.
    pub fn get(&self, scheme: &str) -> Result<Arc<dyn Transport>> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.get(&scheme.to_ascii_lowercase()).cloned().ok_or_else(|| {
            let available: Vec<&str> = map.keys().map(String::as_str).collect();
            let available = if available.is_empty() { "none".to_owned() } else { available.join(", ") };
            Error::new(ErrorKind::Config, format!("unknown transport {scheme:?}; available: {available}"))
        })
    }
}

impl fmt::Debug for TransportRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportRegistry").field("schemes", &self.schemes()).finish()
    }
}
