//! The transports compiled into `socketctl`, looked up by the configured scheme.

use std::sync::Arc;

use socket_core::config::Config;
use socket_core::{Client, ClientOptions, EventName, Transport, TransportRegistry};

use crate::exit::{describe, CliError};

/// The registry of every transport `socketctl` is built with (`unix`, `tcp`).
pub(crate) fn registry() -> TransportRegistry {
    socket_factory::default_registry()
}

/// The transport named by `socket.transport`, with its settings checked.
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

/// Connects a client named `client_name` (shown by servers in `connected` events).
///
/// # Errors
///
/// The errors of [`Client::connect_with_async`].
pub(crate) async fn connect_client(
    transport: Arc<dyn Transport>,
    event: EventName,
    config: &Config,
    client_name: &str,
    receive_only: bool,
) -> socket_core::Result<Client> {
    let mut options = ClientOptions::from_config(config)?;
    options.client_name = Some(client_name.to_owned());
    options.receive_only = receive_only;
    Client::connect_with_async(transport, event, config.clone(), options).await
}
