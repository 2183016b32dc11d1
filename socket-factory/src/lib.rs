//! Real-time event passing between processes: the facade of `socket`.
//!
//! A *server* is bound per event name (`wallpaper_change`, `system_status`, ...) and broadcasts
//! messages to every connected *client*, or sends to one client by id; clients reconnect by
//! themselves, and while no client is connected broadcasts wait in a bounded offline queue. This
//! crate re-exports the whole public API of `socket-core` and builds servers and clients from a
//! [`Config`] through a [`TransportRegistry`], so the transport is chosen at run time
//! (`socket.transport`).
//!
//! # Where to start
//!
//! * [`default_registry`] gives the compiled-in transports; [`create_server`] and
//!   [`create_client`] build a [`Server`] and a connected [`Client`] from a [`Config`]
//!   ([`Config::load`] reads the settings file and the `SOCKET__*` environment variables);
//!   [`create_server_for`] and [`create_client_for`] name the transport explicitly.
//! * [`Server`]: [`start`](Server::start), [`broadcast`](Server::broadcast),
//!   [`send_to`](Server::send_to) one client, [`events`](Server::events) (connects, disconnects,
//!   messages from clients), [`stats`](Server::stats), [`stop`](Server::stop).
//! * [`Client`]: [`receive`](Client::receive) with a timeout, the blocking iterator
//!   [`iter`](Client::iter), the async [`stream`](Client::stream), [`send`](Client::send),
//!   [`state_changes`](Client::state_changes) (connected, reconnecting, closed).
//! * Messages are [`SocketMessage`]s: an [`EventName`], a [`MessageType`] and a [`Data`] map
//!   (build it key by key, or from any serde type with [`SocketMessage::from_serialize`]).
//! * Every error is an [`Error`] with a [`kind`](Error::kind) to match on ([`ErrorKind`]).
//! * Every blocking call has an `_async` twin; the engines run on their own background executor,
//!   so the async API works under smol, tokio or any other runtime.
//!
//! The runnable programs in `socket-factory/examples` (`cargo xtask examples`) show a broadcast,
//! unicast over TCP, a relay broker, a status-bar feeder and a plug-in transport; `cargo xtask
//! demo` runs the guided tour.
//!
//! # Features
//!
//! Transports are compiled in by feature, none by default:
//!
//! | feature | scheme | crate |
//! |---|---|---|
//! | `unix` | `"unix"` | `socket-unix`: Unix domain sockets in `socket.socket_dir` |
//! | `tcp` | `"tcp"` | `socket-tcp`: TCP, loopback by default, ports discovered by event name |
//!
//! [`default_registry`] holds exactly the compiled-in transports. Asking for one that is not
//! compiled in is an [`ErrorKind::Config`] error that lists the available schemes and names the
//! feature to enable. A plug-in transport (any crate implementing [`Transport`]) is added with
//! [`TransportRegistry::register`] and reads its settings from its own `[socket.<scheme>]` table
//! (see `docs/transport-plugins.md`).
//!
//! # Examples
//!
//! A server and a client of one event (with `features = ["unix"]`):
//!
//! ```
//! # #[cfg(feature = "unix")] {
//! use std::time::Duration;
//! use socket_factory::{Config, Data, EventName, SocketMessage};
//!
//! let registry = socket_factory::default_registry();
//! let mut config = Config::default(); // socket.transport = "unix"
//! let dir = tempfile::tempdir()?;
//! config.socket.socket_dir = dir.path().into(); // instead of /tmp/sockets
//!
//! let server = socket_factory::create_server(&registry, &config, "wallpaper_change")?;
//! server.start()?;
//!
//! let client = socket_factory::create_client(&registry, &config, "wallpaper_change")?;
//! let event = EventName::new("wallpaper_change")?;
//! server.broadcast(&SocketMessage::data(event, Data::new().with("path", "/tmp/wall.png")))?;
//! let message = client.receive(Some(Duration::from_secs(5)))?.ok_or("no message within 5 s")?;
//! assert_eq!(message.data.get_str("path"), Some("/tmp/wall.png"));
//! server.stop()?;
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A transport that is not available says what to do:
//!
//! ```
//! use socket_factory::{Config, ErrorKind};
//!
//! let registry = socket_factory::default_registry();
//! let err = socket_factory::create_server_for(&registry, "carrier-pigeon", "ev", &Config::default()).unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::Config);
//! assert!(err.to_string().contains("unknown transport \"carrier-pigeon\""));
//! ```
// The README's examples are doctests of this crate (compiled and run, not rendered here).
#![cfg_attr(all(doctest, feature = "unix"), doc = include_str!("../../README.md"))]

use std::sync::Arc;

// Every re-export below carries an example of its own; rustdoc shows it on the item's page,
// before the item's documentation from socket-core.

/// The client engine: [`Client`], its options, states and message streams.
///
/// # Examples
///
/// ```
/// use socket_factory::client::{ClientOptions, ConnectionState};
///
/// let options = ClientOptions::from_config(&socket_factory::Config::default())?;
/// assert!(options.auto_reconnect);
/// assert_ne!(ConnectionState::Connected, ConnectionState::Closed);
/// # Ok::<(), socket_factory::Error>(())
/// ```
pub use socket_core::client;
/// Framing and MessagePack: what travels on the wire (`docs/protocol.md`).
///
/// # Examples
///
/// ```
/// use socket_factory::codec::{decode_body, encode_frame, Limits};
/// use socket_factory::{Data, EventName, SocketMessage};
///
/// let msg = SocketMessage::data(EventName::new("demo")?, Data::new().with("n", 1));
/// let frame = encode_frame(&msg, 1 << 20)?;
/// let back = decode_body(frame.body(), &Limits::default()).map_err(|e| e.to_string())?;
/// assert_eq!(back, msg);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub use socket_core::codec;
/// Configuration: defaults, then `settings.toml`, then `SOCKET__*` variables, then code.
///
/// # Examples
///
/// ```
/// let config = socket_factory::config::Config::loader()
///     .no_file_discovery()
///     .env([("SOCKET__SOCKET_DIR", "/run/user/1000/sockets")])
///     .load()?;
/// assert_eq!(config.socket.socket_dir, std::path::PathBuf::from("/run/user/1000/sockets"));
/// # Ok::<(), socket_factory::Error>(())
/// ```
pub use socket_core::config;
/// Protocol control messages (`hello`, `welcome`, `ping`, `pong`, `shutdown`) and error codes.
///
/// # Examples
///
/// ```
/// use socket_factory::control::Control;
/// use socket_factory::EventName;
///
/// let ping = Control::Ping { nonce: 7 }.to_message(&EventName::new("demo")?, &jiff::tz::TimeZone::UTC);
/// assert!(matches!(Control::parse(&ping), Some(Ok(Control::Ping { nonce: 7 }))));
/// # Ok::<(), socket_factory::Error>(())
/// ```
pub use socket_core::control;
/// Messages: event names, `data` maps and the five wire fields.
///
/// # Examples
///
/// ```
/// use socket_factory::message::{validate_event_name, MessageType};
///
/// assert!(validate_event_name("wallpaper_change").is_ok());
/// assert!(validate_event_name("no spaces").is_err());
/// assert_eq!(MessageType::Error.as_str(), "error");
/// ```
pub use socket_core::message;
/// The background executor the engines run on, and `block_on` for the blocking API.
///
/// # Examples
///
/// ```
/// let task = socket_factory::runtime::spawn(async { 6 * 7 });
/// assert_eq!(socket_factory::runtime::block_on(task), 42);
/// ```
pub use socket_core::runtime;
/// The server engine: [`Server`], its options, events and counters.
///
/// # Examples
///
/// ```
/// use socket_factory::server::ClientId;
///
/// assert_eq!("c3".parse::<ClientId>()?, ClientId(3));
/// # Ok::<(), socket_factory::Error>(())
/// ```
pub use socket_core::server;
/// The transport interface ([`Transport`], [`Listener`], [`Connection`]) and the registry.
///
/// # Examples
///
/// ```
/// let registry = socket_factory::transport::TransportRegistry::new();
/// assert!(registry.schemes().is_empty(), "a new registry has no transports");
/// ```
pub use socket_core::transport;

/// # Examples
///
/// ```
/// # fn demo(client: &socket_factory::Client) -> socket_factory::Result<()> {
/// use std::time::Duration;
///
/// if let Some(message) = client.receive(Some(Duration::from_secs(1)))? {
///     println!("{}: {:?}", message.event_name, message.data.get("cpu"));
/// }
/// # Ok(()) }
/// ```
pub use socket_core::Client;
/// # Examples
///
/// ```
/// use socket_factory::ClientId;
///
/// let id: ClientId = "c12".parse()?;
/// assert_eq!((id, id.to_string()), (ClientId(12), "c12".to_owned()));
/// assert!("12".parse::<ClientId>().is_err());
/// # Ok::<(), socket_factory::Error>(())
/// ```
pub use socket_core::ClientId;
/// # Examples
///
/// ```
/// # fn demo(server: &socket_factory::Server) {
/// for info in server.clients() {
///     println!("{} from {} (pid {:?}), named {:?}", info.id, info.address, info.pid, info.client_name);
/// }
/// # }
/// ```
pub use socket_core::ClientInfo;
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let mut options = socket_factory::ClientOptions::from_config(&socket_factory::Config::default())?;
/// options.client_name = Some("status-bar".to_owned());
/// options.connect_timeout = Duration::from_secs(2);
/// assert!(options.auto_reconnect, "the default configuration reconnects");
/// # Ok::<(), socket_factory::Error>(())
/// ```
pub use socket_core::ClientOptions;
/// # Examples
///
/// ```
/// let config = socket_factory::Config::default();
/// assert_eq!(config.socket.transport, "unix");
/// assert_eq!(config.socket.socket_dir, std::path::PathBuf::from("/tmp/sockets"));
/// ```
pub use socket_core::Config;
/// # Examples
///
/// ```
/// # async fn demo(listener: &dyn socket_factory::Listener) -> socket_factory::Result<()> {
/// let connection: socket_factory::Connection = listener.accept().await?;
/// println!("a connection from {}", connection.peer.address);
/// # Ok(()) }
/// ```
pub use socket_core::Connection;
/// # Examples
///
/// ```
/// use socket_factory::ConnectionState;
///
/// # fn demo(client: &socket_factory::Client) {
/// let states = client.state_changes();
/// while let Ok(state) = states.recv_blocking() {
///     if state == ConnectionState::Reconnecting {
///         eprintln!("the server went away; reconnecting");
///     }
/// }
/// # }
/// ```
pub use socket_core::ConnectionState;
/// # Examples
///
/// ```
/// use socket_factory::Data;
///
/// let data = Data::new().with("path", "/walls/a.png").with("width", 1920);
/// assert_eq!(data.get_str("path"), Some("/walls/a.png"));
/// ```
pub use socket_core::Data;
/// # Examples
///
/// ```
/// let endpoint = socket_factory::Endpoint { address: "/tmp/sockets/demo.sock".to_owned(), explicit: true };
/// assert!(endpoint.explicit, "a socket path is given, not discovered");
/// ```
pub use socket_core::Endpoint;
/// # Examples
///
/// ```
/// use socket_factory::{Error, ErrorKind};
///
/// let err = Error::new(ErrorKind::Timeout, "no answer within 5 s");
/// assert_eq!(err.kind(), ErrorKind::Timeout);
/// ```
pub use socket_core::Error;
/// # Examples
///
/// ```
/// use socket_factory::{ErrorKind, EventName};
///
/// let err = EventName::new("bad name").unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Validation);
/// assert_eq!(ErrorKind::Validation.as_str(), "validation");
/// ```
pub use socket_core::ErrorKind;
/// # Examples
///
/// ```
/// let event = socket_factory::EventName::new("color-scheme-update")?;
/// assert_eq!(event.as_str(), "color-scheme-update");
/// # Ok::<(), socket_factory::Error>(())
/// ```
pub use socket_core::EventName;
/// # Examples
///
/// ```
/// # async fn demo(listener: Box<dyn socket_factory::Listener>) -> socket_factory::Result<()> {
/// println!("listening on {}", listener.address());
/// let connection = listener.accept().await?;
/// println!("accepted {}", connection.peer.address);
/// listener.close()?;
/// # Ok(()) }
/// ```
pub use socket_core::Listener;
/// # Examples
///
/// ```
/// use socket_factory::MessageType;
///
/// assert_eq!("control".parse::<MessageType>()?, MessageType::Control);
/// assert_eq!(MessageType::Data.as_str(), "data");
/// # Ok::<(), socket_factory::Error>(())
/// ```
pub use socket_core::MessageType;
/// # Examples
///
/// ```
/// let peer = socket_factory::PeerInfo { address: "127.0.0.1:50123".to_owned(), pid: None, uid: None };
/// assert!(peer.pid.is_none(), "TCP does not know the peer's process");
/// ```
pub use socket_core::PeerInfo;
/// # Examples
///
/// ```
/// fn event(name: &str) -> socket_factory::Result<socket_factory::EventName> {
///     socket_factory::EventName::new(name)
/// }
/// assert!(event("ok").is_ok() && event("").is_err());
/// ```
pub use socket_core::Result;
/// # Examples
///
/// ```
/// # fn demo(server: &socket_factory::Server) -> socket_factory::Result<()> {
/// use socket_factory::{Data, SocketMessage};
///
/// server.broadcast(&SocketMessage::data(server.event().clone(), Data::new().with("cpu", 12)))?;
/// println!("{} clients", server.client_count());
/// # Ok(()) }
/// ```
pub use socket_core::Server;
/// # Examples
///
/// ```
/// use socket_factory::ServerEvent;
///
/// # fn demo(server: &socket_factory::Server) {
/// while let Ok(event) = server.events().recv_blocking() {
///     match event {
///         ServerEvent::Connected(info) => println!("{} connected", info.id),
///         ServerEvent::Disconnected { id, reason } => println!("{id} left: {reason}"),
///         ServerEvent::Message { from, message } => println!("{from}: {:?}", message.data),
///         _ => {}
///     }
/// }
/// # }
/// ```
pub use socket_core::ServerEvent;
/// # Examples
///
/// ```
/// # async fn demo(server: &socket_factory::Server) {
/// use futures_lite::StreamExt;
///
/// let mut events: socket_factory::ServerEvents = server.events();
/// while let Some(event) = events.next().await {
///     println!("{event:?}");
/// }
/// # }
/// ```
pub use socket_core::ServerEvents;
/// # Examples
///
/// ```
/// # fn demo(transport: &dyn socket_factory::Transport) -> socket_factory::Result<()> {
/// let mut config = socket_factory::Config::default();
/// config.socket.relay = true;
/// let options = socket_factory::ServerOptions::from_config(&config, transport)?;
/// assert!(options.relay);
/// # Ok(()) }
/// ```
pub use socket_core::ServerOptions;
/// # Examples
///
/// ```
/// # fn demo(server: &socket_factory::Server) {
/// let stats = server.stats();
/// println!("{} sent, {} received, {} malformed", stats.messages_sent, stats.messages_received, stats.malformed);
/// # }
/// ```
pub use socket_core::ServerStats;
/// # Examples
///
/// ```
/// use socket_factory::{Data, EventName, MessageType, SocketMessage};
///
/// let msg = SocketMessage::data(EventName::new("system_status")?, Data::new().with("cpu", 12));
/// assert_eq!(msg.message_type, MessageType::Data);
/// assert!(msg.timestamp_iso.ends_with("+00:00"));
/// # Ok::<(), socket_factory::Error>(())
/// ```
pub use socket_core::SocketMessage;
/// # Examples
///
/// ```
/// let registry = socket_factory::default_registry();
/// for scheme in registry.schemes() {
///     let transport: std::sync::Arc<dyn socket_factory::Transport> = registry.get(&scheme)?;
///     assert_eq!(transport.scheme(), scheme);
/// }
/// # Ok::<(), socket_factory::Error>(())
/// ```
pub use socket_core::Transport;
/// # Examples
///
/// ```
/// let registry = socket_factory::TransportRegistry::new();
/// assert!(!registry.contains("unix"));
/// assert!(registry.get("unix").is_err(), "an empty registry names what is available: nothing");
/// ```
pub use socket_core::TransportRegistry;
/// # Examples
///
/// ```
/// // The version sent in `hello` and `welcome`.
/// assert_eq!(socket_factory::PROTOCOL_VERSION, 1);
/// ```
pub use socket_core::PROTOCOL_VERSION;
/// # Examples
///
/// ```
/// // What `welcome.server` says: name/version.
/// assert!(socket_factory::SERVER_NAME.starts_with("socket-rs/"));
/// ```
pub use socket_core::SERVER_NAME;

/// The Unix domain socket transport (feature `unix`).
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "unix")] {
/// let config = socket_factory::Config::default();
/// let path = socket_factory::unix::socket_path(&config, &socket_factory::EventName::new("demo")?)?;
/// assert_eq!(path, std::path::PathBuf::from("/tmp/sockets/demo.sock"));
/// # }
/// # Ok::<(), socket_factory::Error>(())
/// ```
#[cfg(feature = "unix")]
pub use socket_unix as unix;

/// The TCP transport (feature `tcp`).
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "tcp")] {
/// // The first port a server of "wallpaper_change" tries in the default range 9000..=9100.
/// assert_eq!(socket_factory::tcp::fnv1a_32(b"wallpaper_change"), 0x845c0fd6);
/// # }
/// ```
#[cfg(feature = "tcp")]
pub use socket_tcp as tcp;

/// Transports this crate knows, each compiled in by the feature of the same name, and whether it is.
const BUILT_IN: [(&str, bool); 2] = [("unix", cfg!(feature = "unix")), ("tcp", cfg!(feature = "tcp"))];

/// A registry holding every transport compiled into this crate (see the feature table in the
/// [crate documentation](crate)).
///
/// # Examples
///
/// ```
/// let registry = socket_factory::default_registry();
/// assert_eq!(registry.contains("unix"), cfg!(feature = "unix"));
/// assert_eq!(registry.contains("tcp"), cfg!(feature = "tcp"));
/// ```
pub fn default_registry() -> TransportRegistry {
    let registry = TransportRegistry::new();
    #[cfg(feature = "unix")]
    socket_unix::register(&registry);
    #[cfg(feature = "tcp")]
    socket_tcp::register(&registry);
    registry
}

fn available(registry: &TransportRegistry) -> String {
    let schemes = registry.schemes();
    if schemes.is_empty() {
        "none".to_owned()
    } else {
        schemes.join(", ")
    }
}

/// The transport registered under `scheme` (case-insensitive).
///
/// # Errors
///
/// [`ErrorKind::Config`]: for `"unix"` or `"tcp"` when its feature is off, naming the feature to
/// enable; otherwise naming the unknown scheme. Both list the available schemes.
///
/// # Examples
///
/// ```
/// let registry = socket_factory::default_registry();
/// if !cfg!(feature = "tcp") {
///     let err = socket_factory::transport(&registry, "TCP").unwrap_err();
///     assert!(err.to_string().contains("enable the \"tcp\" feature of socket-factory"));
/// }
/// ```
pub fn transport(registry: &TransportRegistry, scheme: &str) -> Result<Arc<dyn Transport>> {
    if let Ok(transport) = registry.get(scheme) {
        return Ok(transport);
    }
    let lower = scheme.to_ascii_lowercase();
    let message = match BUILT_IN.iter().find(|(name, _)| *name == lower) {
        Some((name, false)) => format!(
            "transport {name:?} is not compiled in: enable the {name:?} feature of socket-factory (available: {})",
            available(registry)
        ),
        Some((name, _)) => format!(
            "transport {name:?} is not registered in this registry: start from socket_factory::default_registry() \
             (available: {})",
            available(registry)
        ),
        None => format!(
            "unknown transport {scheme:?}: register a plug-in transport under that scheme or set socket.transport \
             to one of the available ones (available: {})",
            available(registry)
        ),
    };
    Err(Error::new(ErrorKind::Config, message))
}

/// Checks `config` against `registry`: every plug-in table `[socket.<scheme>]` must belong to a
/// registered transport, and the transport of `socket.transport` and those of the plug-in
/// tables validate their own settings.
///
/// # Errors
///
/// [`ErrorKind::Config`] naming the offending table, key or transport.
///
/// # Examples
///
/// ```
/// let registry = socket_factory::default_registry();
/// let mut config = socket_factory::Config::default();
/// config.socket.plugins.insert("carrier-pigeon".to_owned(), Default::default());
/// let err = socket_factory::validate_config(&registry, &config).unwrap_err();
/// assert!(err.to_string().contains("unknown table [socket.carrier-pigeon]"));
/// ```
pub fn validate_config(registry: &TransportRegistry, config: &Config) -> Result<()> {
    validate_for(registry, &config.socket.transport, config).map(drop)
}

/// Checks the table `[socket.<scheme>]` of every transport in `registry` against the keys that
/// transport declares ([`Transport::settings`]), with the errors and wording of the core keys.
/// This is the part of [`validate_config`] that looks at values only (no file system, no
/// choice of transport): `socketctl config` runs it on the configuration it prints.
///
/// # Errors
///
/// [`ErrorKind::Config`] naming the first invalid key, its value and its rule.
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "unix")] {
/// let registry = socket_factory::default_registry();
/// let mut config = socket_factory::Config::default();
/// config.socket.unix.socket_permissions = "0400".to_owned();
/// let err = socket_factory::check_settings(&registry, &config).unwrap_err();
/// assert!(err.to_string().contains("socket.unix.socket_permissions"));
/// # }
/// ```
pub fn check_settings(registry: &TransportRegistry, config: &Config) -> Result<()> {
    for scheme in registry.schemes() {
        let transport = registry.get(&scheme)?;
        socket_core::config::check_transport_table(&scheme, transport.settings(), config)?;
    }
    Ok(())
}

/// The schemes of `registry` in the order of the configuration reference: the built-in
/// transports first (`unix`, `tcp`), then the others sorted.
fn reference_order(registry: &TransportRegistry) -> Vec<String> {
    let mut schemes = registry.schemes();
    schemes.sort_by_key(|s| (BUILT_IN.iter().position(|(name, _)| name == s).unwrap_or(BUILT_IN.len()), s.clone()));
    schemes
}

/// The configuration reference `docs/configuration.md`: the core keys and the keys every
/// transport of `registry` declares ([`Transport::settings`]), built-in and plug-in alike
/// (`cargo xtask doc` writes it from [`default_registry`] with both transports compiled in).
///
/// # Examples
///
/// ```
/// use socket_factory::config::{KeySpec, ValueType};
/// use socket_factory::{Config, Connection, Endpoint, EventName, Listener, Result, Transport};
///
/// #[derive(Debug)]
/// struct Pigeon;
///
/// static PIGEON: &[KeySpec] =
///     &[KeySpec::new("speed", ValueType::Integer, "an integer in 1..=120", "Birds per minute.").with_bounds(1, 120)];
///
/// #[async_trait::async_trait]
/// impl Transport for Pigeon {
///     fn scheme(&self) -> &str { "pigeon" }
///     fn settings(&self) -> &'static [KeySpec] { PIGEON }
///     async fn bind(&self, _: &EventName, _: &Config) -> Result<Box<dyn Listener>> { unimplemented!() }
///     fn endpoints(&self, _: &EventName, _: &Config) -> Result<Vec<Endpoint>> { Ok(Vec::new()) }
///     async fn connect(&self, _: &Endpoint, _: &Config) -> Result<Connection> { unimplemented!() }
/// }
///
/// let registry = socket_factory::default_registry();
/// registry.register(Pigeon);
/// let md = socket_factory::reference_markdown(&registry);
/// assert!(md.contains("## `[socket.pigeon]`"));
/// assert!(md.contains("| [`speed`](#socketpigeonspeed) | integer | absent | `SOCKET__PIGEON__SPEED` | an integer in 1..=120 |"));
/// ```
pub fn reference_markdown(registry: &TransportRegistry) -> String {
    let transports: Vec<(String, &'static [config::KeySpec])> = reference_order(registry)
        .into_iter()
        .filter_map(|scheme| {
            let settings = registry.get(&scheme).ok()?.settings();
            Some((scheme, settings))
        })
        .collect();
    let sections: Vec<(&str, &[config::KeySpec])> = transports.iter().map(|(s, k)| (s.as_str(), *k)).collect();
    config::reference_markdown_with(&sections)
}

/// `config` with the declared defaults ([`Transport::settings`]) of every plug-in transport of
/// `registry` written into its table `[socket.<scheme>]`, where the table does not set them:
/// the effective settings, as `socketctl config` prints them. The built-in tables are full
/// already.
///
/// # Examples
///
/// ```
/// let registry = socket_factory::default_registry();
/// let config = socket_factory::Config::default();
/// assert_eq!(socket_factory::with_declared_defaults(&registry, &config), config);
///
/// // A plug-in's keys are shown with their defaults, like the built-in tables'.
/// socket_tests::memory::register(&registry);
/// let shown = socket_factory::with_declared_defaults(&registry, &config);
/// assert_eq!(shown.socket.plugins["memory"]["max_connections"].as_integer(), Some(10));
/// assert!(shown.to_toml_string()?.contains("[socket.memory]"));
/// # Ok::<(), socket_factory::Error>(())
/// ```
pub fn with_declared_defaults(registry: &TransportRegistry, config: &Config) -> Config {
    let mut config = config.clone();
    for scheme in registry.schemes() {
        if BUILT_IN.iter().any(|(name, _)| *name == scheme) {
            continue;
        }
        let Ok(transport) = registry.get(&scheme) else { continue };
        let defaults: Vec<_> =
            transport.settings().iter().filter_map(|k| Some((k.name.to_owned(), k.default_value()?))).collect();
        if defaults.is_empty() {
            continue;
        }
        let table = config.socket.plugins.entry(scheme).or_default();
        for (name, value) in defaults {
            table.entry(name).or_insert(value);
        }
    }
    config
}

fn validate_for(registry: &TransportRegistry, scheme: &str, config: &Config) -> Result<Arc<dyn Transport>> {
    check_settings(registry, config)?;
    for table in config.socket.plugins.keys() {
        let lower = table.to_ascii_lowercase();
        if BUILT_IN.iter().any(|(name, _)| *name == lower) {
            continue;
        }
        match registry.get(table) {
            Ok(plugin) => plugin.validate(config)?,
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "unknown table [socket.{table}]: no transport {table:?} is registered (available: {}); \
                         remove the table or register its transport",
                        available(registry)
                    ),
                ))
            }
        }
    }
    let chosen = transport(registry, scheme)?;
    chosen.validate(config)?;
    Ok(chosen)
}

/// Validates `event`, finds and checks the transport: everything builders do before any I/O.
fn prepare(
    registry: &TransportRegistry,
    scheme: &str,
    event: &str,
    config: &Config,
) -> Result<(Arc<dyn Transport>, EventName)> {
    let event = EventName::new(event)?;
    let transport = validate_for(registry, scheme, config)?;
    Ok((transport, event))
}

/// A server for `event` over the transport named by `socket.transport` (not started: call
/// [`Server::start`]).
///
/// # Errors
///
/// [`ErrorKind::Validation`] for an invalid event name (checked before anything else);
/// [`ErrorKind::Config`] for an unknown or not compiled-in transport or invalid settings.
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "unix")] {
/// use socket_factory::{Config, Data, EventName, SocketMessage};
///
/// let registry = socket_factory::default_registry();
/// let mut config = Config::default();
/// let dir = tempfile::tempdir()?;
/// config.socket.socket_dir = dir.path().into();
/// config.socket.retain_last = true; // late subscribers get the last status at once
///
/// let server = socket_factory::create_server(&registry, &config, "system_status")?;
/// server.start()?;
/// assert!(server.address().is_some_and(|a| a.ends_with("system_status.sock")));
/// server.broadcast(&SocketMessage::data(EventName::new("system_status")?, Data::new().with("cpu", 12)))?;
/// server.stop()?;
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn create_server(registry: &TransportRegistry, config: &Config, event: impl AsRef<str>) -> Result<Server> {
    create_server_for(registry, &config.socket.transport, event, config)
}

/// A server for `event` over the transport `scheme` (case-insensitive), ignoring
/// `socket.transport`.
///
/// # Errors
///
/// See [`create_server`].
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "tcp")] {
/// let registry = socket_factory::default_registry();
/// let mut config = socket_factory::Config::default(); // socket.transport is still "unix"
/// config.socket.tcp.port = Some(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port());
///
/// let server = socket_factory::create_server_for(&registry, "tcp", "system_status", &config)?;
/// server.start()?;
/// let client = socket_factory::create_client_for(&registry, "tcp", "system_status", &config)?;
/// assert_eq!(client.server_address(), server.address());
/// server.stop()?;
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn create_server_for(
    registry: &TransportRegistry,
    scheme: &str,
    event: impl AsRef<str>,
    config: &Config,
) -> Result<Server> {
    let (transport, event) = prepare(registry, scheme, event.as_ref(), config)?;
    Server::new(transport, event, config)
}

/// Connects a client to the server of `event` over the transport named by `socket.transport`.
///
/// # Blocking
///
/// Blocks the calling thread until connected (or `socket.default_timeout`); use
/// [`create_client_async`] from async code.
///
/// # Errors
///
/// [`ErrorKind::Validation`] for an invalid event name; [`ErrorKind::Config`] for an unknown or
/// not compiled-in transport or invalid settings; the errors of [`Client::connect`].
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "unix")] {
/// use std::time::Duration;
/// use socket_factory::{Config, ErrorKind};
///
/// let registry = socket_factory::default_registry();
/// let mut config = Config::default();
/// let dir = tempfile::tempdir()?;
/// config.socket.socket_dir = dir.path().into();
///
/// // No server yet: a clear error, at once.
/// let err = socket_factory::create_client(&registry, &config, "system_status").unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Connection);
///
/// let server = socket_factory::create_server(&registry, &config, "system_status")?;
/// server.start()?;
/// let client = socket_factory::create_client(&registry, &config, "system_status")?;
/// assert!(client.is_connected());
/// assert_eq!(client.receive(Some(Duration::from_millis(10)))?, None); // nothing sent yet
/// client.disconnect();
/// server.stop()?;
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn create_client(registry: &TransportRegistry, config: &Config, event: impl AsRef<str>) -> Result<Client> {
    create_client_for(registry, &config.socket.transport, event, config)
}

/// Connects a client to the server of `event` over the transport `scheme` (case-insensitive).
///
/// # Blocking
///
/// Blocks the calling thread until connected; use [`create_client_for_async`] from async code.
///
/// # Errors
///
/// See [`create_client`].
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "tcp")] {
/// # fn demo() -> socket_factory::Result<()> {
/// let registry = socket_factory::default_registry();
/// let config = socket_factory::Config::load()?;
/// // Over TCP whatever `socket.transport` says; the port is found from the event name.
/// let client = socket_factory::create_client_for(&registry, "tcp", "system_status", &config)?;
/// println!("connected to {:?}", client.server_address());
/// # Ok(()) }
/// # }
/// ```
pub fn create_client_for(
    registry: &TransportRegistry,
    scheme: &str,
    event: impl AsRef<str>,
    config: &Config,
) -> Result<Client> {
    let (transport, event) = prepare(registry, scheme, event.as_ref(), config)?;
    Client::connect(transport, event, config)
}

/// Async [`create_client`].
///
/// # Errors
///
/// See [`create_client`].
///
/// # Examples
///
/// ```
/// # async fn demo() -> socket_factory::Result<()> {
/// let registry = socket_factory::default_registry();
/// let config = socket_factory::Config::load()?;
/// let client = socket_factory::create_client_async(&registry, &config, "system_status").await?;
/// if let Some(message) = client.receive_async(None).await? {
///     println!("{:?}", message.data.get("cpu"));
/// }
/// # Ok(()) }
/// ```
pub async fn create_client_async(
    registry: &TransportRegistry,
    config: &Config,
    event: impl AsRef<str>,
) -> Result<Client> {
    create_client_for_async(registry, &config.socket.transport, event, config).await
}

/// Async [`create_client_for`].
///
/// # Errors
///
/// See [`create_client`].
///
/// # Examples
///
/// ```
/// # async fn demo() -> socket_factory::Result<()> {
/// use futures_lite::StreamExt;
///
/// let registry = socket_factory::default_registry();
/// let config = socket_factory::Config::load()?;
/// let client = socket_factory::create_client_for_async(&registry, "unix", "wallpaper_change", &config).await?;
/// let mut messages = client.stream();
/// while let Some(Ok(message)) = messages.next().await {
///     println!("{:?}", message.data.get_str("path"));
/// }
/// # Ok(()) }
/// ```
pub async fn create_client_for_async(
    registry: &TransportRegistry,
    scheme: &str,
    event: impl AsRef<str>,
    config: &Config,
) -> Result<Client> {
    let (transport, event) = prepare(registry, scheme, event.as_ref(), config)?;
    Client::connect_async(transport, event, config).await
}
