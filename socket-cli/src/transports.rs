//! Everything `socketctl` builds, built through `socket-factory` like any user does: the
//! registry of compiled-in transports, the configured transport with its settings checked,
//! servers and clients.

use std::sync::Arc;

use socket_factory::config::Config;
use socket_factory::{Client, ClientOptions, EventName, Server, Transport, TransportRegistry};

use crate::exit::{describe, CliError};

/// The registry of every transport `socketctl` is built with (`unix`, `tcp`).
pub(crate) fn registry() -> TransportRegistry {
    socket_factory::default_registry()
}

/// The transport named by `socket.transport`, with the configuration checked against the
/// registry ([`socket_factory::validate_config`]).
///
/// # Errors
///
/// Exit 2 for an unknown transport (the message lists the available ones) or invalid
/// transport settings.
pub(crate) fn transport_for(config: &Config) -> Result<Arc<dyn Transport>, CliError> {
    let registry = registry();
    socket_factory::validate_config(&registry, config).map_err(|e| CliError::usage(describe(&e)))?;
    socket_factory::transport(&registry, &config.socket.transport).map_err(|e| CliError::usage(describe(&e)))
}

/// Validates an event name from the command line.
///
/// # Errors
///
/// Exit 2 with the library's message (empty, too long, invalid characters).
pub(crate) fn event_name(name: &str) -> Result<EventName, CliError> {
    EventName::new(name).map_err(|e| CliError::usage(describe(&e)))
}

/// A server for `event` over the transport named by `socket.transport`
/// ([`socket_factory::create_server`]; not started).
///
/// # Errors
///
/// The errors of [`socket_factory::create_server`].
pub(crate) fn create_server(config: &Config, event: &EventName) -> socket_factory::Result<Server> {
    socket_factory::create_server(&registry(), config, event.as_str())
}

/// Connects a client named `client_name` (shown by servers in `connected` events) over the
/// transport named by `socket.transport` ([`socket_factory::create_client_with_async`]: the
/// name and `receive_only` are per command, set on [`ClientOptions::from_config`]).
///
/// # Errors
///
/// The errors of [`socket_factory::create_client_with_async`].
pub(crate) async fn connect_client(
    registry: &TransportRegistry,
    event: &EventName,
    config: &Config,
    client_name: &str,
    receive_only: bool,
) -> socket_factory::Result<Client> {
    let mut options = ClientOptions::from_config(config)?;
    options.client_name = Some(client_name.to_owned());
    options.receive_only = receive_only;
    socket_factory::create_client_with_async(registry, config, event.as_str(), options).await
}
