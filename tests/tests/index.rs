//! The conformance suite against the in-memory transport (async and
//! blocking API), a second-runtime check, regression tests for the
//! defects of the Python origin, and the seeded network-fault simulation
//! (RELIABILITY.md R5).

mod client_api;
mod direct_write;
mod late_hello;
mod origin;
mod sim;
mod streams;
mod suite;
mod tokio_runtime;
mod transports;
