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

pub mod client;
pub mod codec;
pub mod config;
pub mod control;
mod error;
pub mod message;
pub mod runtime;
pub mod server;
pub mod transport;

pub use client::{Client, ClientOptions, ConnectionState};
pub use config::Config;
pub use error::{Error, ErrorKind, Result};
pub use message::{Data, EventName, MessageType, SocketMessage};
pub use server::{ClientId, ClientInfo, Server, ServerEvent, ServerOptions, ServerStats};
pub use transport::{Connection, Endpoint, Listener, PeerInfo, Transport, TransportRegistry};

/// Wire protocol version spoken by this crate (`hello.protocol`).
pub const PROTOCOL_VERSION: u64 = 1;

/// Name and version of this implementation, sent as `welcome.server`.
pub const SERVER_NAME: &str = concat!("socket-rs/", env!("CARGO_PKG_VERSION"));
