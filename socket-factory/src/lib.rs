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

mod build;
mod registry;
mod settings;

pub use build::{
    create_client, create_client_async, create_client_for, create_client_for_async, create_client_with,
    create_client_with_async, create_server, create_server_for,
};
pub use registry::{default_registry, transport};
pub use settings::{check_settings, reference_markdown, validate_config, with_declared_defaults};
