//! Every conformance case on the memory transport, through both API faces.

use std::sync::Arc;

use socket_core::Config;
use socket_tests::conformance::{self, Harness, Mode};
use socket_tests::memory::{self, MemoryTransport};

/// A harness over a fresh memory transport; each case gets its own namespace.
pub(crate) fn harness(mode: Mode) -> Harness {
    Harness::new(Arc::new(MemoryTransport::new()), memory_config).mode(mode)
}

pub(crate) fn memory_config() -> Config {
    let mut config = Config::default();
    config.socket.transport = memory::SCHEME.to_owned();
    memory::set_option(&mut config, "namespace", conformance::unique_name("ns"));
    config
}

mod async_api {
    socket_tests::conformance_tests!(super::harness(socket_tests::conformance::Mode::Async));
}

mod blocking_api {
    socket_tests::conformance_tests!(super::harness(socket_tests::conformance::Mode::Blocking));
}

#[test]
fn every_case_has_a_test() {
    // The macro's list must match the suite's: a case missing from the macro would never run per-test.
    let names: Vec<&str> = conformance::cases().iter().map(|c| c.name).collect();
    assert_eq!(names.len(), 31, "update conformance_tests! and this count together: {names:?}");
}

#[test]
fn unknown_case_is_an_error() {
    let err = conformance::run_case(&harness(Mode::Async), "no_such_case").unwrap_err();
    assert!(err.message.contains("no conformance case"), "{err}");
}

#[test]
fn registry_plugin_registration() -> Result<(), socket_core::Error> {
    let registry = socket_core::TransportRegistry::new();
    memory::register(&registry);
    let t = registry.get("MEMORY")?;
    assert_eq!(t.scheme(), "memory");
    let mut bad = Config::default();
    memory::set_option(&mut bad, "colour", "blue");
    let err = t.validate(&bad).unwrap_err();
    assert_eq!(err.kind(), socket_core::ErrorKind::Config);
    assert!(err.to_string().contains("socket.memory.colour"), "{err}");
    Ok(())
}
