//! Conformance suite for `socket` transports, plus an example in-memory
//! transport written like any third-party plug-in, and a seeded
//! fault-injecting network ([`faulty`]) for simulation tests.
//!
//! # Running the suite against a transport
//!
//! A transport crate (in-tree or third-party) adds `socket-tests` as a
//! dev-dependency and, in its single integration-test binary, builds a
//! [`conformance::Harness`] from its transport and a function producing a
//! fresh [`socket_core::Config`] per case (its own temp dir, port or
//! namespace), then either runs everything at once or gets one `#[test]` per
//! case from the [`conformance_tests!`] macro:
//!
//! ```no_run
//! use std::sync::Arc;
//! use socket_core::Config;
//! use socket_tests::conformance::{self, Harness, Mode};
//! use socket_tests::memory::{self, MemoryTransport};
//!
//! fn harness(mode: Mode) -> Harness {
//!     Harness::new(Arc::new(MemoryTransport::new()), || {
//!         let mut config = Config::default();
//!         memory::set_option(&mut config, "namespace", conformance::unique_name("ns"));
//!         config
//!     })
//!     .mode(mode)
//! }
//!
//! // One #[test] per case, named after the case:
//! mod async_api {
//!     socket_tests::conformance_tests!(super::harness(socket_tests::conformance::Mode::Async));
//! }
//!
//! // Or everything in one go:
//! # fn main() -> Result<(), conformance::Failures> {
//! let report = conformance::run_all(&harness(Mode::Blocking))?;
//! assert_eq!(report.passed.len(), conformance::cases().len());
//! # Ok(()) }
//! ```
//!
//! Each case runs on its own thread under a watchdog
//! ([`Harness::case_timeout`](conformance::Harness::case_timeout), 60 s by default): a hung case fails instead of
//! hanging the test run. [`Mode::Async`](conformance::Mode::Async) drives the `_async` API,
//! [`Mode::Blocking`](conformance::Mode::Blocking) the blocking wrappers.
//!
//! If the fixture of a configuration must live as long as the case (a
//! `tempfile::TempDir`), use [`Harness::with_fixture`](conformance::Harness::with_fixture).

pub mod conformance;
pub mod faulty;
pub mod memory;
pub mod nats_server;
pub mod util;
