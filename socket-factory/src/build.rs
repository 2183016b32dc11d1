//! Building servers and clients from a configuration and a registry.

use std::sync::Arc;

use socket_core::{Client, ClientOptions, Config, EventName, Result, Server, Transport, TransportRegistry};

use crate::settings::validate_for;

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
/// [`ErrorKind::Validation`](crate::ErrorKind::Validation) for an invalid event name (checked before anything else);
/// [`ErrorKind::Config`](crate::ErrorKind::Config) for an unknown or not compiled-in transport or invalid settings.
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
/// [`ErrorKind::Validation`](crate::ErrorKind::Validation) for an invalid event name; [`ErrorKind::Config`](crate::ErrorKind::Config) for an unknown or
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

/// Connects a client with explicit `options` (a name servers show, `receive_only`, a wait
/// limit, ...) over the transport named by `socket.transport`: [`create_client_async`] with
/// [`Client::connect_with_async`]'s options. Start from [`ClientOptions::from_config`] and
/// change what differs.
///
/// # Errors
///
/// See [`create_client`].
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "unix")] {
/// use socket_factory::{ClientOptions, Config, ErrorKind, SocketMessage, EventName, Data};
///
/// let registry = socket_factory::default_registry();
/// let mut config = Config::default();
/// let dir = tempfile::tempdir()?;
/// config.socket.socket_dir = dir.path().into();
/// let server = socket_factory::create_server(&registry, &config, "system_status")?;
/// server.start()?;
///
/// let mut options = ClientOptions::from_config(&config)?;
/// options.client_name = Some("status-bar".to_owned());
/// options.receive_only = true;
/// let client = socket_factory::runtime::block_on(socket_factory::create_client_with_async(
///     &registry, &config, "system_status", options,
/// ))?;
/// let msg = SocketMessage::data(EventName::new("system_status")?, Data::new());
/// assert_eq!(client.send(&msg).unwrap_err().kind(), ErrorKind::SendNotAllowed);
/// server.stop()?;
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub async fn create_client_with_async(
    registry: &TransportRegistry,
    config: &Config,
    event: impl AsRef<str>,
    options: ClientOptions,
) -> Result<Client> {
    let (transport, event) = prepare(registry, &config.socket.transport, event.as_ref(), config)?;
    Client::connect_with_async(transport, event, config.clone(), options).await
}

/// Blocking [`create_client_with_async`].
///
/// # Blocking
///
/// Blocks the calling thread until connected (see [`create_client`]).
///
/// # Errors
///
/// See [`create_client`].
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "unix")] {
/// use socket_factory::{ClientOptions, Config};
///
/// let registry = socket_factory::default_registry();
/// let mut config = Config::default();
/// let dir = tempfile::tempdir()?;
/// config.socket.socket_dir = dir.path().into();
/// let server = socket_factory::create_server(&registry, &config, "system_status")?;
/// server.start()?;
///
/// let mut options = ClientOptions::from_config(&config)?;
/// options.client_name = Some("status-bar".to_owned());
/// let client = socket_factory::create_client_with(&registry, &config, "system_status", options)?;
/// assert!(client.is_connected());
/// server.stop()?;
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn create_client_with(
    registry: &TransportRegistry,
    config: &Config,
    event: impl AsRef<str>,
    options: ClientOptions,
) -> Result<Client> {
    socket_core::runtime::block_on(create_client_with_async(registry, config, event, options))
}
