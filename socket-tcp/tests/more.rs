//! Fixed ports, host names and the `allow_remote` guard.

use socket_core::{ErrorKind, Transport};
use socket_tcp::TcpTransport;

use crate::util::*;

/// A fixed port is the only endpoint; a second server on it gets AddrInUse naming the port.
#[test]
fn explicit_port_is_used_and_a_second_bind_is_refused() -> TestResult {
    let (config, port) = port_config()?;
    let ev = event("fixed");
    let endpoints = TcpTransport.endpoints(&ev, &config)?;
    assert_eq!(endpoints.len(), 1);
    assert!(endpoints[0].explicit, "a configured port is explicit");
    assert_eq!(endpoints[0].address, format!("127.0.0.1:{port}"));
    let listener = async_io::block_on(TcpTransport.bind(&ev, &config))?;
    assert_eq!(listener.address(), format!("127.0.0.1:{port}"));
    let second = async_io::block_on(TcpTransport.bind(&event("other"), &config)).map(|l| l.address());
    assert_err(second, ErrorKind::AddrInUse, &[&port.to_string()])?;
    listener.close()?;
    Ok(())
}

/// `host = "localhost"` binds the loopback and clients reach it through the `localhost:port` endpoint.
#[test]
fn localhost_host_name_binds_and_connects() -> TestResult {
    let (mut config, port) = port_config()?;
    config.socket.tcp.host = "localhost".to_owned();
    let ev = event("named");
    let endpoints = TcpTransport.endpoints(&ev, &config)?;
    assert_eq!(endpoints[0].address, format!("localhost:{port}"));
    let listener = async_io::block_on(TcpTransport.bind(&ev, &config))?;
    run(async {
        let (client, server) =
            futures_lite::future::zip(TcpTransport.connect(&endpoints[0], &config), listener.accept()).await;
        let (client, server) = (client?, server?);
        assert!(client.peer.address.ends_with(&format!(":{port}")), "{}", client.peer.address);
        assert!(server.peer.address.starts_with("127.0.0.1:"), "{}", server.peer.address);
        Ok(())
    })?;
    listener.close()?;
    Ok(())
}

/// A host name other than localhost needs `allow_remote`; the error says which setting to change.
#[test]
fn other_host_names_need_allow_remote() -> TestResult {
    let (mut config, _port) = port_config()?;
    config.socket.tcp.host = "example.invalid".to_owned();
    let result = async_io::block_on(TcpTransport.bind(&event("remote"), &config)).map(|l| l.address());
    assert_err(result, ErrorKind::Config, &["allow_remote"])?;
    Ok(())
}

/// With `allow_remote`, a host name that does not resolve is a config error naming the host.
#[test]
fn unresolvable_host_with_allow_remote_is_a_config_error() -> TestResult {
    let (mut config, _port) = port_config()?;
    config.socket.tcp.host = "no-such-host.invalid".to_owned();
    config.socket.tcp.allow_remote = true;
    let result = async_io::block_on(TcpTransport.bind(&event("remote"), &config)).map(|l| l.address());
    assert_err(result, ErrorKind::Config, &["no-such-host.invalid"])?;
    Ok(())
}

/// With `allow_remote`, an address that is not on this machine cannot be bound: a connection
/// error naming the address as `host:port` (brackets around IPv6).
#[test]
fn an_address_not_on_this_machine_cannot_be_bound() -> TestResult {
    for (host, shown) in [("192.0.2.1", "192.0.2.1"), ("[2001:db8::1]", "[2001:db8::1]")] {
        let (mut config, port) = port_config()?;
        config.socket.tcp.host = host.to_owned();
        config.socket.tcp.allow_remote = true;
        let result = async_io::block_on(TcpTransport.bind(&event("elsewhere"), &config)).map(|l| l.address());
        assert_err(result, ErrorKind::Connection, &[&format!("cannot bind {shown}:{port}")])?;
    }
    Ok(())
}

/// `localhost:port` with no server: both loopbacks are tried and the error names the endpoint.
#[test]
fn localhost_endpoint_without_server_is_a_connection_error() -> TestResult {
    let (mut config, port) = port_config()?;
    config.socket.tcp.host = "localhost".to_owned();
    let endpoint = TcpTransport.endpoints(&event("nobody"), &config)?.remove(0);
    let result = run(async { Ok(TcpTransport.connect(&endpoint, &config).await.map(|c| c.peer)) })?;
    assert_err(result, ErrorKind::Connection, &[&format!("localhost:{port}")])?;
    Ok(())
}

/// A blocking client over TCP: a receive with a deadline ends empty when nothing comes, and
/// returns what the server broadcasts.
#[test]
fn blocking_receive_over_tcp_waits_until_its_deadline_or_a_message() -> TestResult {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use socket_core::{Client, Data, Server, SocketMessage};

    let (config, _port) = port_config()?;
    let ev = event("blocking_rx");
    let server = Server::new(Arc::new(TcpTransport), ev.clone(), &config)?;
    server.start()?;
    let client = Client::connect(Arc::new(TcpTransport), ev.clone(), &config)?;
    let wait = Duration::from_millis(100);
    let t = Instant::now();
    assert_eq!(client.receive(Some(wait))?, None);
    assert!(t.elapsed() >= wait, "the receive ended early: {:?}", t.elapsed());
    let message = SocketMessage::data(ev.clone(), Data::new().with("n", 7u64));
    // A broadcast reaches the clients already connected: wait until the server counts it.
    let deadline = Instant::now() + WATCHDOG;
    while server.clients().is_empty() {
        assert!(Instant::now() < deadline, "the server never saw the client");
        std::thread::yield_now();
    }
    server.broadcast(&message)?;
    assert_eq!(client.receive(Some(WATCHDOG))?, Some(message));
    client.disconnect();
    server.stop()?;
    Ok(())
}
