//! Server settings: [`ServerOptions`], usually taken from a [`Config`].

use std::time::Duration;

use crate::codec::Limits;
use crate::config::{secs, Config};
use crate::error::Result;
use crate::transport::Transport;

/// Server settings, usually taken from a [`Config`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Clients served at once.
    pub max_connections: usize,
    /// Offline queue length.
    pub message_queue_size: usize,
    /// Offline queue bytes.
    pub message_queue_bytes: usize,
    /// Accept messages from clients.
    pub allow_client_send: bool,
    /// New clients first get the last broadcast.
    pub retain_last: bool,
    /// Re-broadcast client messages to the other clients.
    pub relay: bool,
    /// Time a new connection has to send `hello`.
    pub hello_grace: Duration,
    /// Time allowed from a frame's first byte to its last.
    pub frame_timeout: Duration,
    /// Time a write may stall before the client is a slow consumer.
    pub write_stall_timeout: Duration,
    /// Frames queued per client.
    pub outbound_queue_size: usize,
    /// Bytes queued per client.
    pub outbound_queue_bytes: usize,
    /// Server events buffered for the application.
    pub inbound_queue_size: usize,
    /// Relay mode only: a full event buffer holds up reading from clients (`true`) instead
    /// of dropping its oldest events with a counted [`ServerEvent::EventsDropped`](super::ServerEvent::EventsDropped) (`false`,
    /// the default, so that an application that does not read its events never holds up
    /// relaying). Set it when the event stream is itself a delivery path whose reader
    /// never blocks for long, as the NATS bridge's is: messages then wait instead of being
    /// dropped. Not a configuration key.
    pub relay_events_backpressure: bool,
    /// Read buffer size.
    pub buffer_size: usize,
    /// Frame and nesting limits.
    pub limits: Limits,
    /// Zone of `timestamp_iso` in messages the server creates.
    pub timezone: jiff::tz::TimeZone,
    /// `start()` blocks until stopped.
    pub blocking_mode: bool,
}

impl ServerOptions {
    /// Options from `config`, with `max_connections` from `transport`'s table.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] if the time zone is unknown.
    pub fn from_config(config: &Config, transport: &dyn Transport) -> Result<Self> {
        let s = &config.socket;
        Ok(ServerOptions {
            max_connections: transport.max_connections(config),
            message_queue_size: s.message_queue_size,
            message_queue_bytes: s.message_queue_bytes,
            allow_client_send: s.allow_client_send,
            retain_last: s.retain_last,
            relay: s.relay,
            hello_grace: secs(s.hello_grace),
            frame_timeout: secs(s.frame_timeout),
            write_stall_timeout: secs(s.write_stall_timeout),
            outbound_queue_size: s.outbound_queue_size,
            outbound_queue_bytes: s.outbound_queue_bytes,
            inbound_queue_size: s.inbound_queue_size,
            relay_events_backpressure: false,
            buffer_size: s.buffer_size,
            limits: Limits { max_frame_len: s.max_message_size, max_depth: s.max_nesting_depth },
            timezone: config.time_zone()?,
            blocking_mode: s.blocking_mode,
        })
    }
}
