//! Every conformance case on the real transports, Unix and TCP, through both API faces.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use socket_core::Config;
use socket_tests::conformance::{Harness, Mode};

/// Each Unix case gets its own socket directory, removed when the case ends.
fn unix_harness(mode: Mode) -> Harness {
    Harness::with_fixture(Arc::new(socket_unix::UnixTransport::new()), || {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut config = Config::default();
        config.socket.transport = "unix".to_owned();
        config.socket.socket_dir = dir.path().join("sockets");
        (config, dir)
    })
    .mode(mode)
}

/// Ports below the ephemeral range, a range of 8 per case so discovery has room to probe.
///
/// The first range is random per process: a test runner that runs each case in
/// its own process (cargo-nextest) must not give two cases running at once the
/// same ports, or a client's discovery finds the other case's server.
static NEXT_RANGE: OnceLock<AtomicU32> = OnceLock::new();

fn tcp_harness(mode: Mode) -> Harness {
    Harness::new(Arc::new(socket_tcp::TcpTransport), || {
        let next = NEXT_RANGE.get_or_init(|| AtomicU32::new(8 * fastrand::u32(..1_000)));
        // Within 21000..32000, wrapping around.
        let start = 21_000 + (next.fetch_add(8, Ordering::Relaxed) % 11_000) as u16;
        let mut config = Config::default();
        config.socket.transport = "tcp".to_owned();
        config.socket.tcp.port_range_start = start;
        config.socket.tcp.port_range_end = start + 7;
        config
    })
    .mode(mode)
}

mod unix_async {
    socket_tests::conformance_tests!(super::unix_harness(socket_tests::conformance::Mode::Async));
}

mod unix_blocking {
    socket_tests::conformance_tests!(super::unix_harness(socket_tests::conformance::Mode::Blocking));
}

mod tcp_async {
    socket_tests::conformance_tests!(super::tcp_harness(socket_tests::conformance::Mode::Async));
}

mod tcp_blocking {
    socket_tests::conformance_tests!(super::tcp_harness(socket_tests::conformance::Mode::Blocking));
}
