//! Every conformance case on the real transports, Unix and TCP, through both API faces.

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

/// A block of 8 ports per case, free when the case starts, so discovery has room to probe
/// ([`socket_tests::util::free_ports`]: below the ephemeral range, never handed to another case
/// of this process, from a random start so that cases in other processes, as under
/// cargo-nextest, rarely meet).
fn tcp_harness(mode: Mode) -> Harness {
    Harness::new(Arc::new(socket_tcp::TcpTransport), || {
        let (start, end) = socket_tests::util::free_ports(8).expect("a free block of 8 ports");
        let mut config = Config::default();
        config.socket.transport = "tcp".to_owned();
        config.socket.tcp.port_range_start = start;
        config.socket.tcp.port_range_end = end;
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
