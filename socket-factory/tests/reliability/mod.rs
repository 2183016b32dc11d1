//! Reliability and security tests over the real transports (RELIABILITY.md §7.2, §7.5-§7.8):
//! connection abuse, lifecycle faults with real processes, slow consumers and bounded memory,
//! reconnect behaviour, TCP specifics, faults injected by an in-process proxy (T6). The table mapping each row to its test is in
//! docs/reliability.md.
//!
//! Each scenario runs once per compiled-in transport (`<scenario>::unix`, `<scenario>::tcp`).
//! Scenarios that measure the whole process (heap, descriptors, threads, CPU) re-run their own
//! test in a fresh process of this binary (`harness::isolated`), and scenarios that kill or stop
//! a peer start this binary again in a role (`harness::Peer`).

#![cfg_attr(not(all(feature = "unix", feature = "tcp")), allow(dead_code, unused_imports, unused_macros))]

pub(crate) mod harness;

mod abuse;
mod handle;
mod handshake;
mod led;
mod lifecycle;
mod queues;
mod receipts;
mod reconnect;
mod relay;
mod tcp;
mod toxics;

/// The toxiproxy-style proxy of the T6 tests (`toxics`).
pub(crate) mod proxy;
