//! The transports compiled into `socketctl`, looked up by the configured scheme.

use std::sync::Arc;

use socket_core::config::Config;
use socket_core::{EventName, Transport, TransportRegistry};

use crate::exit::CliError;

/// The registry of every transport `socketctl` is built with (`unix`, `tcp`).
pub(crate) fn registry() -> TransportRegistry {
    // TEMPORARY until the transports branch lands `socket_factory::default_registry()`.
    TransportRegistry::new()
}

/// The transport named by `socket.transport`, with its settings checked.
///
/// # Errors
///
/// Exit 2 for an unknown transport (the message lists the available ones) or invalid
/// transport settings.
pub(crate) fn transport_for(config: &Config) -> Result<Arc<dyn Transport>, CliError> {
    let transport = registry().get(&config.socket.transport).map_err(|e| CliError::usage(e.to_string()))?;
    transport.validate(config).map_err(|e| CliError::usage(e.to_string()))?;
    Ok(transport)
}

/// Validates an event name from the command line.
///
/// # Errors
///
/// Exit 2 with the library's message (empty, too long, invalid characters).
pub(crate) fn event_name(name: &str) -> Result<EventName, CliError> {
    EventName::new(name).map_err(|e| CliError::usage(e.to_string()))
}
