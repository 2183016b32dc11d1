//! Integration tests: the real `socketctl` binary run as a subprocess, each test with its
//! own temp socket directory (and TCP port range), every wait under a deadline.

mod util;

#[cfg(feature = "nats")]
mod bridge;
mod config;
mod errors;
mod help;
mod list;
mod listen;
mod listen_many;
mod man;
mod python;
mod python_example;
mod recipes;
mod relay;
mod serve;
mod signals;
mod tcp;
