//! One module per command.

#[cfg(feature = "nats")]
pub(crate) mod bridge;
pub(crate) mod completions;
pub(crate) mod config;
pub(crate) mod list;
pub(crate) mod listen;
pub(crate) mod send;
pub(crate) mod serve;
