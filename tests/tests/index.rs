//! The conformance suite against the in-memory transport (async and
//! blocking API), a second-runtime check, and regression tests for the
//! defects of the Python origin.

mod client_api;
mod origin;
mod suite;
mod tokio_runtime;
mod transports;
