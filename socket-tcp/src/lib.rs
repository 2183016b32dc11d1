//! TCP transport for `socket`.
//!
//! Register it under the scheme `"tcp"` with [`register`]; the `socket-factory` crate does so when
//! its `tcp` feature is on.
//!
//! # Addresses
//!
//! * **Host** (`socket.tcp.host`, default `127.0.0.1`; IPv6 literals such as `::1` work). v1 of the
//!   protocol has no authentication, so a server binds a non-loopback address (`0.0.0.0`, a LAN
//!   address, a host name other than `localhost`) only with `socket.tcp.allow_remote = true`;
//!   otherwise binding fails with an [`ErrorKind::Config`] error naming that key. Clients may
//!   connect anywhere.
//! * **Port**: `socket.tcp.port` when set. Otherwise the server of event `E` tries
//!   [`preferred_port`]`(E, start, end)` of the range `socket.tcp.port_range_start..=port_range_end`
//!   first and probes upward with wrap-around ([`probe_sequence`]), binding the first free port.
//!   A client without an explicit port gets the same sequence as discovery endpoints
//!   (`explicit = false`), and the engine accepts a server there only if its `welcome` names the
//!   event. A range that overlaps the system's ephemeral ports is logged as a warning.
//!
//! # Socket options
//!
//! `SO_REUSEADDR` on (a restarted server rebinds while old connections are in `TIME_WAIT`),
//! `SO_REUSEPORT` off (a second server never shares a port), `TCP_NODELAY` on both ends, and
//! keepalive (idle 30 s, interval 10 s, 3 probes) as a backstop only. A client drops a socket that
//! connected to itself (local address = peer address), which can happen when the port is in the
//! ephemeral range and nobody listens.
//!
//! # Connections
//!
//! An accepted connection's [`PeerInfo`] has the peer's `ip:port` as `address` (no pid or uid).
//! After [`Listener::close`](socket_core::Listener::close) (idempotent), `accept` fails with
//! [`ErrorKind::Closed`], also an `accept` that was already waiting; new connects are refused and
//! the port can be bound again at once.
//!
//! # Examples
//!
//! ```
//! use socket_core::{Config, EventName, Transport, TransportRegistry};
//!
//! let registry = TransportRegistry::new();
//! socket_tcp::register(&registry);
//! let tcp = registry.get("tcp")?;
//!
//! let config = Config::default(); // 127.0.0.1, ports 9000..=9100
//! let endpoints = tcp.endpoints(&EventName::new("wallpaper_change")?, &config)?;
//! assert_eq!(endpoints.len(), 101);
//! assert_eq!(endpoints[0].address, "127.0.0.1:9084");
//! assert!(!endpoints[0].explicit);
//! # Ok::<(), socket_core::Error>(())
//! ```
//!
//! A server and a client over this transport, with `socket-core` alone (applications usually go
//! through `socket-factory`, which does the same from `socket.transport = "tcp"`):
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use socket_core::{Client, Config, Data, EventName, Server, SocketMessage};
//!
//! let mut config = Config::default();
//! // An explicit port (here one the kernel says is free); without it, the port comes from the
//! // event name within socket.tcp.port_range_start..=port_range_end.
//! config.socket.tcp.port = Some(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port());
//! let event = EventName::new("color-scheme-update")?;
//! let tcp = Arc::new(socket_tcp::TcpTransport);
//!
//! let server = Server::new(tcp.clone(), event.clone(), &config)?;
//! server.start()?;
//! let client = Client::connect(tcp, event.clone(), &config)?;
//! assert_eq!(client.server_address(), server.address()); // "127.0.0.1:<port>"
//!
//! server.broadcast(&SocketMessage::data(event, Data::new().with("scheme", "gruvbox")))?;
//! let message = client.receive(Some(Duration::from_secs(5)))?.ok_or("no message")?;
//! assert_eq!(message.data.get_str("scheme"), Some("gruvbox"));
//! server.stop()?; // the port is free again at once
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(unix)]
mod blocking;
mod listener;
mod port;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use socket2::{SockRef, TcpKeepalive};
use socket_core::config::{check_transport_table, KeySpec, ValueType, MAX_CONNECTIONS};
use socket_core::{Config, Connection, Endpoint, Error, ErrorKind, EventName, PeerInfo, Result, Transport};

pub use listener::TcpListener;
pub use port::{fnv1a_32, preferred_port, probe_sequence};

/// The scheme this transport registers under.
pub const SCHEME: &str = "tcp";

/// Lowest port a configuration may name.
pub const MIN_PORT: u16 = 1024;

/// Keepalive: first probe after 30 s idle, then every 10 s, give up after 3.
pub(crate) const KEEPALIVE: TcpKeepalive =
    TcpKeepalive::new().with_time(Duration::from_secs(30)).with_interval(Duration::from_secs(10)).with_retries(3);

/// The TCP transport (scheme `"tcp"`).
///
/// # Examples
///
/// See the [crate documentation](crate).
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpTransport;

/// Registers [`TcpTransport`] in `registry` under `"tcp"`.
pub fn register(registry: &socket_core::TransportRegistry) {
    registry.register(TcpTransport);
}

/// The keys of `[socket.tcp]`, as [`TcpTransport`] declares them ([`Transport::settings`]):
/// the default of each, its type and bounds, checked with the core's errors. The rule that the
/// range is not reversed spans two keys and is checked by [`Transport::validate`].
pub static SETTINGS: &[KeySpec] = &[
    KeySpec::new(
        "host",
        ValueType::String,
        "a non-empty host name or IP address",
        "Address to bind or connect to; binding a non-loopback address needs `allow_remote`.",
    )
    .with_default("\"127.0.0.1\"")
    .with_check(non_blank),
    KeySpec::new(
        "port",
        ValueType::OptionalPort,
        "a port in 1024..=65535, or absent",
        "Fixed port; absent means discovery: the port `start + fnv1a_32(event) % (end - start + 1)` first, then upward with wrap-around.",
    )
    .with_bounds(MIN_PORT as i64, u16::MAX as i64),
    KeySpec::new(
        "port_range_start",
        ValueType::Port,
        "a port in 1024..=65535, at most socket.tcp.port_range_end",
        "First port of the discovery range.",
    )
    .with_default("9000")
    .with_bounds(MIN_PORT as i64, u16::MAX as i64),
    KeySpec::new(
        "port_range_end",
        ValueType::Port,
        "a port in 1024..=65535, at least socket.tcp.port_range_start",
        "Last port of the discovery range.",
    )
    .with_default("9100")
    .with_bounds(MIN_PORT as i64, u16::MAX as i64),
    KeySpec::new(
        "max_connections",
        ValueType::Integer,
        "an integer in 1..=65536",
        "Clients a TCP server serves at once; one more receives a `max_connections` error and is closed.",
    )
    .with_default("10")
    .with_bounds(1, MAX_CONNECTIONS as i64),
    KeySpec::new(
        "allow_remote",
        ValueType::Boolean,
        "true or false",
        "Allow binding a non-loopback address (protocol v1 has no authentication).",
    )
    .with_default("false"),
];

fn non_blank(value: &toml::Value) -> std::result::Result<(), String> {
    match value.as_str() {
        Some(s) if s.trim().is_empty() => Err("blank".to_owned()),
        _ => Ok(()),
    }
}

/// The checked `[socket.tcp]` settings.
#[derive(Debug, Clone)]
struct Settings {
    host: String,
    port: Option<u16>,
    start: u16,
    end: u16,
    allow_remote: bool,
}

impl Settings {
    fn from_config(config: &Config) -> Result<Settings> {
        let tcp = &config.socket.tcp;
        let invalid = |key: &str, value: String, rule: &str| {
            Error::new(ErrorKind::Config, format!("invalid value {value} for key socket.tcp.{key}: {rule}"))
        };
        let host = tcp.host.trim();
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if host.is_empty() || host.contains(char::is_whitespace) || host.contains('/') {
            return Err(invalid("host", format!("{:?}", tcp.host), "must be an IP address or a host name"));
        }
        for (key, port) in [("port_range_start", tcp.port_range_start), ("port_range_end", tcp.port_range_end)] {
            if port < MIN_PORT {
                return Err(invalid(key, port.to_string(), "must be in 1024..=65535"));
            }
        }
        if tcp.port_range_start > tcp.port_range_end {
            return Err(invalid(
                "port_range_start",
                tcp.port_range_start.to_string(),
                &format!("must not be above socket.tcp.port_range_end ({})", tcp.port_range_end),
            ));
        }
        if let Some(port) = tcp.port.filter(|p| *p < MIN_PORT) {
            return Err(invalid("port", port.to_string(), "must be in 1024..=65535"));
        }
        Ok(Settings {
            host: host.to_owned(),
            port: tcp.port,
            start: tcp.port_range_start,
            end: tcp.port_range_end,
            allow_remote: tcp.allow_remote,
        })
    }

    /// The ports a server tries, in order.
    fn ports(&self, event: &EventName) -> Vec<u16> {
        match self.port {
            Some(port) => vec![port],
            None => probe_sequence(event, self.start, self.end),
        }
    }

    /// `host:port`, with brackets around IPv6 literals.
    fn address(&self, port: u16) -> String {
        if self.host.contains(':') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }

    /// The address to bind, refusing non-loopback ones without `allow_remote`.
    async fn bind_ip(&self) -> Result<IpAddr> {
        let ip = if self.host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else if let Ok(ip) = self.host.parse::<IpAddr>() {
            ip
        } else {
            if !self.allow_remote {
                return Err(self.remote_error("a host name other than localhost"));
            }
            let resolved = async_net::resolve((self.host.as_str(), 0)).await.map_err(|e| {
                Error::new(ErrorKind::Config, format!("cannot resolve socket.tcp.host {:?}", self.host)).with_source(e)
            })?;
            resolved.first().map(SocketAddr::ip).ok_or_else(|| {
                Error::new(ErrorKind::Config, format!("socket.tcp.host {:?} resolves to no address", self.host))
            })?
        };
        if !is_loopback(ip) && !self.allow_remote {
            return Err(self.remote_error("not a loopback address"));
        }
        Ok(ip)
    }

    fn remote_error(&self, what: &str) -> Error {
        Error::new(
            ErrorKind::Config,
            format!(
                "refusing to bind socket.tcp.host {:?} ({what}): the protocol has no authentication, so anyone who \
                 can reach the port could read and send events; use 127.0.0.1, or set socket.tcp.allow_remote = true \
                 to accept that",
                self.host
            ),
        )
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// Sets `TCP_NODELAY` and keepalive on a connected or accepted stream (failures are logged).
pub(crate) fn configure_stream(stream: &async_net::TcpStream) {
    let sock = SockRef::from(stream);
    if let Err(e) = sock.set_tcp_nodelay(true).and_then(|()| sock.set_tcp_keepalive(&KEEPALIVE)) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY or keepalive");
    }
}

/// True if `stream` is connected to itself: a connect to a port of the ephemeral range on which
/// nobody listens can pick that very port as its own and "succeed".
///
/// # Errors
///
/// When the local or peer address cannot be read (the socket is not connected).
pub fn is_self_connected(stream: &std::net::TcpStream) -> io::Result<bool> {
    Ok(stream.local_addr()? == stream.peer_addr()?)
}

impl TcpTransport {
    /// Binds a listener for `event` and returns the concrete type (see [`Transport::bind`]).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] for invalid settings or a non-loopback host without `allow_remote`;
    /// [`ErrorKind::AddrInUse`] when the port (or every port of the range) is taken;
    /// [`ErrorKind::Connection`] for other socket errors.
    pub async fn bind_listener(&self, event: &EventName, config: &Config) -> Result<TcpListener> {
        let settings = Settings::from_config(config)?;
        let ip = settings.bind_ip().await?;
        if settings.port.is_none() {
            if let Some(ephemeral) =
                port::ephemeral_range().filter(|r| port::overlaps(*r, (settings.start, settings.end)))
            {
                tracing::warn!(
                    start = settings.start,
                    end = settings.end,
                    ephemeral_start = ephemeral.0,
                    ephemeral_end = ephemeral.1,
                    "the tcp port range overlaps the system's ephemeral ports; clients may connect to themselves"
                );
            }
        }
        for port in settings.ports(event) {
            let addr = SocketAddr::new(ip, port);
            match listener::listen_on(addr) {
                Ok(std) => {
                    let listener = TcpListener::new(std).map_err(|e| {
                        Error::new(ErrorKind::Connection, format!("cannot register {addr} with the reactor"))
                            .with_source(e)
                    })?;
                    tracing::debug!(address = %addr, event = event.as_str(), "tcp listener bound");
                    return Ok(listener);
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    tracing::debug!(address = %addr, "port in use, trying the next");
                    if settings.port.is_some() {
                        return Err(Error::new(
                            ErrorKind::AddrInUse,
                            format!(
                                "port {port} on {} is in use (another server?): stop it or choose another \
                                 socket.tcp.port",
                                settings.host
                            ),
                        )
                        .with_source(e));
                    }
                }
                Err(e) => {
                    return Err(Error::new(ErrorKind::Connection, format!("cannot bind {}", settings.address(port)))
                        .with_source(e))
                }
            }
        }
        Err(Error::new(
            ErrorKind::AddrInUse,
            format!(
                "no free port for event {:?} on {}: every port of the range {}..={} is in use; widen it \
                 with socket.tcp.port_range_start and socket.tcp.port_range_end, or set socket.tcp.port",
                event.as_str(),
                settings.host,
                settings.start,
                settings.end
            ),
        ))
    }

    /// Connects to `endpoint` and returns the stream itself (with `TCP_NODELAY` and keepalive set)
    /// and the peer (see [`Transport::connect`]).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Connection`] when nothing listens there, the address does not resolve, or the
    /// socket connected to itself.
    pub async fn connect_stream(&self, endpoint: &Endpoint) -> Result<(async_net::TcpStream, PeerInfo)> {
        let address = endpoint.address.as_str();
        let localhost_port = address
            .rsplit_once(':')
            .filter(|(host, _)| host.eq_ignore_ascii_case("localhost"))
            .and_then(|(_, port)| port.parse::<u16>().ok());
        let targets = match (address.parse::<SocketAddr>(), localhost_port) {
            (Ok(addr), _) => vec![addr],
            // A server on "localhost" binds 127.0.0.1: try that first, without a resolver.
            (Err(_), Some(port)) => {
                vec![(Ipv4Addr::LOCALHOST, port).into(), (std::net::Ipv6Addr::LOCALHOST, port).into()]
            }
            (Err(_), None) => async_net::resolve(address).await.map_err(|e| {
                Error::new(ErrorKind::Connection, format!("cannot resolve {address}: check socket.tcp.host"))
                    .with_source(e)
            })?,
        };
        let mut last = None;
        for target in targets {
            match async_net::TcpStream::connect(target).await {
                Ok(stream) => {
                    let local = stream.local_addr().ok();
                    if local.is_some() && local == stream.peer_addr().ok() {
                        tracing::debug!(address = %target, "dropped a self-connected socket");
                        last = Some(Error::new(
                            ErrorKind::Connection,
                            format!("no server at {address}: the socket connected to itself; dropped it"),
                        ));
                        continue;
                    }
                    configure_stream(&stream);
                    return Ok((stream, PeerInfo { address: endpoint.address.clone(), pid: None, uid: None }));
                }
                Err(e) => last = Some(connect_error(address, e)),
            }
        }
        Err(last.unwrap_or_else(|| {
            Error::new(ErrorKind::Connection, format!("{address} resolves to no address: check socket.tcp.host"))
        }))
    }
}

fn connect_error(address: &str, e: io::Error) -> Error {
    let message = match e.kind() {
        io::ErrorKind::ConnectionRefused => {
            format!("no server at {address} (connection refused): start one first, or check socket.tcp.host and port")
        }
        _ => format!("cannot connect to {address}"),
    };
    Error::new(ErrorKind::Connection, message).with_source(e)
}

#[async_trait]
impl Transport for TcpTransport {
    fn scheme(&self) -> &str {
        SCHEME
    }

    fn settings(&self) -> &'static [KeySpec] {
        SETTINGS
    }

    fn validate(&self, config: &Config) -> Result<()> {
        check_transport_table(SCHEME, SETTINGS, config)?;
        Settings::from_config(config).map(drop)
    }

    async fn bind(&self, event: &EventName, config: &Config) -> Result<Box<dyn socket_core::Listener>> {
        Ok(Box::new(self.bind_listener(event, config).await?))
    }

    fn endpoints(&self, event: &EventName, config: &Config) -> Result<Vec<Endpoint>> {
        let settings = Settings::from_config(config)?;
        let explicit = settings.port.is_some();
        Ok(settings
            .ports(event)
            .into_iter()
            .map(|port| Endpoint { address: settings.address(port), explicit })
            .collect())
    }

    /// Resolves `socket.tcp.host` once for the whole port sequence: every endpoint is then an
    /// IP address and port, so probing a range never looks the name up again.
    async fn resolve_endpoints(&self, event: &EventName, config: &Config) -> Result<Vec<Endpoint>> {
        let settings = Settings::from_config(config)?;
        let host = settings.host.as_str();
        // IP literals need no lookup; "localhost" is tried as 127.0.0.1 then ::1 by connect.
        if host.parse::<IpAddr>().is_ok() || host.eq_ignore_ascii_case("localhost") {
            return self.endpoints(event, config);
        }
        let resolved = async_net::resolve((host, 0)).await.map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("cannot resolve host {host:?} (socket.tcp.host): check the name, or use an IP address"),
            )
            .with_source(e)
        })?;
        let ip = resolved.first().map(SocketAddr::ip).ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("cannot resolve host {host:?} (socket.tcp.host): it has no address; use an IP address"),
            )
        })?;
        tracing::debug!(host, %ip, "resolved the tcp host once for this connect");
        let explicit = settings.port.is_some();
        Ok(settings
            .ports(event)
            .into_iter()
            .map(|port| Endpoint { address: SocketAddr::new(ip, port).to_string(), explicit })
            .collect())
    }

    async fn connect(&self, endpoint: &Endpoint, config: &Config) -> Result<Connection> {
        let _ = config;
        let (stream, peer) = self.connect_stream(endpoint).await?;
        Ok(Connection::shared(stream, peer))
    }

    async fn connect_blocking(
        &self,
        endpoint: &Endpoint,
        config: &Config,
    ) -> Result<(Connection, Option<std::sync::Arc<dyn socket_core::BlockingRead>>)> {
        let _ = config;
        let (stream, peer) = self.connect_stream(endpoint).await?;
        Ok(viewed(stream, peer))
    }
}

/// A connection over `stream` with its blocking view (`connect_blocking`, `accept_blocking`):
/// on Unix `poll` and `read` on the socket; elsewhere none (reads go through the reactor).
fn viewed(
    stream: async_net::TcpStream,
    peer: PeerInfo,
) -> (Connection, Option<std::sync::Arc<dyn socket_core::BlockingRead>>) {
    #[cfg(unix)]
    let blocking: Option<std::sync::Arc<dyn socket_core::BlockingRead>> =
        Some(std::sync::Arc::new(blocking::FdReader::new(stream.clone())));
    #[cfg(not(unix))]
    let blocking = None;
    (Connection::shared(stream, peer), blocking)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_connected_socket_is_detected() -> io::Result<()> {
        // Bind a socket and connect it to its own address: TCP simultaneous open with itself.
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = probe.local_addr()?;
        drop(probe);
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.connect(&addr.into())?;
        let stream: std::net::TcpStream = socket.into();
        assert!(is_self_connected(&stream)?);

        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let normal = std::net::TcpStream::connect(listener.local_addr()?)?;
        assert!(!is_self_connected(&normal)?);
        Ok(())
    }

    #[test]
    fn loopback_detection() {
        for ip in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "::ffff:10.0.0.1", "fe80::1"] {
            assert!(!is_loopback(ip.parse().unwrap()), "{ip}");
        }
    }
}
