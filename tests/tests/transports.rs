//! Every conformance case on the real transports, Unix and TCP, through both API faces.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

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
static NEXT_RANGE: AtomicU16 = AtomicU16::new(21000);

fn tcp_harness(mode: Mode) -> Harness {
    Harness::new(Arc::new(socket_tcp::TcpTransport), || {
        let start = NEXT_RANGE.fetch_add(8, Ordering::Relaxed);
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
