//! Integration tests of `socket-core`'s codec, message model, configuration
//! and errors: one test binary (see the `mod` list) for a single link.
//!
//! Heap measurements use the `allocation-counter` crate, whose
//! `#[global_allocator]` counts the bytes allocated by the current thread.
//! It is linked into this test binary only; `unsafe_code` is forbidden in
//! every crate of the workspace (tests included), so the counting allocator
//! comes from that dev-dependency rather than being written here.

mod codec;
mod config;
mod docs;
mod errors;
mod interop;
mod model;
mod util;
