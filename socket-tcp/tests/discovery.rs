//! Discovery past ports that hold something else, host resolution and a full range
//! (SPEC §5, TCP transport).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket_core::{Client, ErrorKind, Server};
use socket_tcp::{probe_sequence, TcpTransport};

use crate::util::*;

/// A silent listener on the preferred port and a different protocol on the next one: the
/// client reaches the real server on the third port of the sequence in well under the
/// `default_timeout` (each squatter costs one short probe).
#[test]
fn discovery_skips_a_silent_port_and_another_protocol() -> TestResult {
    let (start, end) = free_ports(8)?;
    let mut config = range_config(start, end);
    config.socket.default_timeout = 5.0;
    let ev = event("squatted");
    let seq = probe_sequence(ev.as_str(), start, end);
    // Silent: the kernel completes the TCP handshake into the backlog, nobody ever answers.
    let _silent = std::net::TcpListener::bind(("127.0.0.1", seq[0]))?;
    // Another protocol: answers every connection with a banner and keeps it open.
    let talker = std::net::TcpListener::bind(("127.0.0.1", seq[1]))?;
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut stream in talker.incoming().flatten() {
            let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\n");
            held.push(stream);
        }
    });
    let server = Server::new(Arc::new(TcpTransport), ev.clone(), &config)?;
    server.start()?;
    assert_eq!(server.address(), Some(format!("127.0.0.1:{}", seq[2])), "the server binds past the squatters");

    for _ in 0..3 {
        let t = Instant::now();
        let client = Client::connect(Arc::new(TcpTransport), ev.clone(), &config)?;
        let took = t.elapsed();
        eprintln!("measured: discovery past a silent port and an SSH banner took {took:?}");
        assert!(client.is_connected());
        assert!(
            took < Duration::from_millis(1500),
            "discovery took {took:?}, the squatters cost more than a probe each"
        );
        client.disconnect();
    }
    server.stop()?;
    Ok(())
}

/// Every port of a short range silent and no server: the connect ends within
/// `default_timeout` (plus scheduling slack) as a timeout, never hangs.
#[test]
fn a_range_of_silent_ports_times_out_within_default_timeout() -> TestResult {
    let (start, end) = free_ports(3)?;
    let mut config = range_config(start, end);
    config.socket.default_timeout = 1.0;
    config.socket.auto_reconnect = false;
    let _squatters: Vec<_> =
        (start..=end).map(|p| std::net::TcpListener::bind(("127.0.0.1", p))).collect::<Result<_, _>>()?;
    let t = Instant::now();
    let result = Client::connect(Arc::new(TcpTransport), event("nobody"), &config).map(drop);
    let took = t.elapsed();
    assert_err(result, ErrorKind::Timeout, &["did not answer hello within 1s"])?;
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3), "took {took:?}");
    Ok(())
}

/// A host name that does not resolve is its own error, at once, not a timeout.
#[test]
fn an_unresolvable_host_is_a_clear_error() -> TestResult {
    let (start, end) = free_ports(4)?;
    let mut config = range_config(start, end);
    config.socket.tcp.host = "no-such-host.invalid".to_owned();
    config.socket.auto_reconnect = false;
    let result = Client::connect(Arc::new(TcpTransport), event("unresolved"), &config).map(drop);
    assert_err(result, ErrorKind::Config, &["cannot resolve host \"no-such-host.invalid\"", "socket.tcp.host"])?;
    Ok(())
}

/// A server whose whole range is taken names the range and both keys.
#[test]
fn a_full_range_names_the_range_and_the_keys() -> TestResult {
    let (start, end) = free_ports(2)?;
    let config = range_config(start, end);
    let _taken: Vec<_> =
        (start..=end).map(|p| std::net::TcpListener::bind(("127.0.0.1", p))).collect::<Result<_, _>>()?;
    let result = Server::new(Arc::new(TcpTransport), event("crowded"), &config).and_then(|s| s.start());
    assert_err(
        result,
        ErrorKind::AddrInUse,
        &[&format!("{start}..={end}"), "socket.tcp.port_range_start", "socket.tcp.port_range_end"],
    )?;
    Ok(())
}
