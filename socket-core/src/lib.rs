//! Transport-neutral core of `socket`.
//!
//! This crate owns everything above the byte stream: the message model
//! ([`SocketMessage`], [`EventName`]), the wire codec ([`codec`]), the
//! protocol control messages ([`control`]), configuration ([`config`]), the
//! public [`Error`] type, the [`transport`] traits and registry, and the
//! server and client engines ([`server`], [`client`]) with their blocking
//! wrappers.
//!
//! It holds no platform-specific code: transports live in their own crates
//! (`socket-unix`, `socket-tcp`) and register themselves in a
//! [`TransportRegistry`].
//!
//! Applications usually depend on the `socket-factory` facade, which
//! re-exports this crate and adds the transports by feature; transport
//! plug-ins depend on this crate alone (see `docs/transport-plugins.md`).
//!
//! # Examples
//!
//! A message, encoded as a wire frame and decoded again (no transport
//! needed):
//!
//! ```
//! use socket_core::codec::{decode_body, encode_frame, Limits};
//! use socket_core::{Data, EventName, MessageType, SocketMessage};
//!
//! let event = EventName::new("system_status")?;
//! let message = SocketMessage::data(event, Data::new().with("cpu", 12).with("host", "desk"));
//!
//! let frame = encode_frame(&message, 1 << 20)?; // 4-byte big-endian length + MessagePack map
//! let decoded = decode_body(frame.body(), &Limits::default())?;
//! assert_eq!(decoded, message);
//! assert_eq!(decoded.message_type, MessageType::Data);
//! assert_eq!(decoded.data.get_str("host"), Some("desk"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A server and a client of one event over any [`Transport`] (the factory
//! picks the transport from the configuration instead):
//!
//! ```no_run
//! # fn demo(transport: std::sync::Arc<dyn socket_core::Transport>) -> socket_core::Result<()> {
//! use std::time::Duration;
//! use socket_core::{Client, Config, Data, EventName, Server, SocketMessage};
//!
//! let config = Config::load()?; // defaults < settings.toml < SOCKET__* environment
//! let event = EventName::new("system_status")?;
//! let server = Server::new(transport.clone(), event.clone(), &config)?;
//! server.start()?;
//! let client = Client::connect(transport, event.clone(), &config)?;
//! server.broadcast(&SocketMessage::data(event, Data::new().with("cpu", 12)))?;
//! let message = client.receive(Some(Duration::from_secs(1)))?;
//! assert!(message.is_some());
//! server.stop()?;
//! # Ok(()) }
//! ```

pub mod client;
pub mod codec;
pub mod config;
pub mod control;
mod error;
mod handoff;
pub mod message;
pub mod runtime;
pub mod server;
mod sync;
pub mod transport;
mod wire;

pub use client::{Client, ClientOptions, ConnectionState};
pub use config::Config;
pub use error::{Error, ErrorKind, Result};
pub use message::{Data, EventName, MessageType, SocketMessage};
pub use server::{ClientId, ClientInfo, Server, ServerEvent, ServerEvents, ServerOptions, ServerStats};
pub use transport::{BlockingRead, Connection, Endpoint, Listener, PeerInfo, Transport, TransportRegistry};

/// Wire protocol version spoken by this crate (`hello.protocol`).
pub const PROTOCOL_VERSION: u64 = 1;

/// Name and version of this implementation, sent as `welcome.server`.
pub const SERVER_NAME: &str = concat!("socket-rs/", env!("CARGO_PKG_VERSION"));
