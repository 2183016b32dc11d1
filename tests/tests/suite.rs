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
    assert_eq!(names.len(), 35, "update conformance_tests! and this count together: {names:?}");
}

/// A transport that cannot bind or connect: every case must fail, and say so.
#[derive(Debug)]
struct Broken;

#[async_trait::async_trait]
impl socket_core::Transport for Broken {
    fn scheme(&self) -> &str {
        "broken"
    }
    async fn bind(
        &self,
        _: &socket_core::EventName,
        _: &Config,
    ) -> socket_core::Result<Box<dyn socket_core::Listener>> {
        Err(socket_core::Error::new(socket_core::ErrorKind::Connection, "broken transport cannot bind"))
    }
    fn endpoints(&self, _: &socket_core::EventName, _: &Config) -> socket_core::Result<Vec<socket_core::Endpoint>> {
        Ok(vec![socket_core::Endpoint { address: "broken://x".to_owned(), explicit: true }])
    }
    async fn connect(&self, _: &socket_core::Endpoint, _: &Config) -> socket_core::Result<socket_core::Connection> {
        Err(socket_core::Error::new(socket_core::ErrorKind::Connection, "broken transport cannot connect"))
    }
}

#[test]
fn run_suite_reports_every_failed_case() {
    let err = conformance::run_suite(Arc::new(Broken), Config::default).unwrap_err();
    assert_eq!(err.0.len(), 2 * conformance::cases().len(), "{err}");
    let names: std::collections::HashSet<&str> = err.0.iter().map(|f| f.case.as_str()).collect();
    assert_eq!(names.len(), conformance::cases().len());
    assert!(err.to_string().contains("conformance case start_stop_idempotent failed"), "{err}");
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
