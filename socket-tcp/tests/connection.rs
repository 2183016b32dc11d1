//! Connections: endpoints, socket options on both ends, errors, no CLOSE_WAIT (T7).

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use socket2::SockRef;
use socket_core::{Endpoint, ErrorKind, Listener, Transport};
use socket_tcp::{probe_sequence, TcpTransport};

use crate::util::*;

#[test]
fn endpoints_explicit_port_or_discovery_sequence() -> TestResult {
    let ev = event("wallpaper_change");
    let config = range_config(9000, 9100);
    let endpoints = TcpTransport.endpoints(&ev, &config)?;
    let expected: Vec<Endpoint> = probe_sequence(&ev, 9000, 9100)
        .into_iter()
        .map(|port| Endpoint { address: format!("127.0.0.1:{port}"), explicit: false })
        .collect();
    assert_eq!(endpoints, expected);
    assert_eq!(endpoints[0].address, "127.0.0.1:9084");

    let mut fixed = config;
    fixed.socket.tcp.port = Some(9500);
    fixed.socket.tcp.host = "localhost".to_owned();
    assert_eq!(
        TcpTransport.endpoints(&ev, &fixed)?,
        [Endpoint { address: "localhost:9500".to_owned(), explicit: true }]
    );
    assert_eq!(TcpTransport.scheme(), "tcp");
    Ok(())
}

fn check_options(sock: SockRef<'_>) -> TestResult {
    assert!(sock.tcp_nodelay()?, "TCP_NODELAY is off");
    assert!(sock.keepalive()?, "SO_KEEPALIVE is off");
    assert_eq!(sock.tcp_keepalive_time()?.as_secs(), 30);
    assert_eq!(sock.tcp_keepalive_interval()?.as_secs(), 10);
    assert_eq!(sock.tcp_keepalive_retries()?, 3);
    Ok(())
}

/// TCP_NODELAY and keepalive on accepted and connected sockets; bytes flow both ways; peers are
/// `host:port`; a name such as `localhost` resolves.
#[test]
fn options_on_both_ends_and_exchange() -> TestResult {
    let (mut config, port) = port_config()?;
    config.socket.tcp.host = "localhost".to_owned();
    let ev = event("opts");
    let listener = async_io::block_on(TcpTransport.bind_listener(&ev, &config))?;
    let endpoint = TcpTransport.endpoints(&ev, &config)?.remove(0);
    run(async {
        let (client, server) =
            futures_lite::future::zip(TcpTransport.connect_stream(&endpoint), listener.accept_stream()).await;
        let ((mut client, client_peer), (mut server, server_peer)) = (client?, server?);
        check_options(SockRef::from(&client))?;
        check_options(SockRef::from(&server))?;
        assert_eq!(client_peer.address, format!("localhost:{port}"));
        assert_eq!(server_peer.address, client.local_addr()?.to_string());
        assert_eq!((server_peer.pid, server_peer.uid), (None, None));

        client.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await?;
        server.write_all(b"pong").await?;
        client.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"pong");
        Ok(())
    })?;
    listener.close()?;
    Ok(())
}

#[test]
fn connect_without_server_is_a_connection_error() -> TestResult {
    let (config, port) = port_config()?;
    let endpoint = TcpTransport.endpoints(&event("none"), &config)?.remove(0);
    let result = run(async { Ok(TcpTransport.connect(&endpoint, &config).await.map(|c| c.peer)) })?;
    assert_err(result, ErrorKind::Connection, &["no server at", &format!("127.0.0.1:{port}")])?;
    let bogus = Endpoint { address: "no-such-host.invalid:9000".to_owned(), explicit: true };
    let result = run(async { Ok(TcpTransport.connect(&bogus, &config).await.map(|c| c.peer)) })?;
    assert_err(result, ErrorKind::Connection, &["no-such-host.invalid:9000"])?;
    Ok(())
}

/// T7: thousands of connect/close cycles through the traits leave no CLOSE_WAIT on the server's
/// port: dropping a `Connection` (both halves) closes the socket.
#[test]
fn no_close_wait_after_many_connect_cycles() -> TestResult {
    let (config, port) = port_config()?;
    let ev = event("t7");
    let listener = async_io::block_on(TcpTransport.bind(&ev, &config))?;
    let endpoint = TcpTransport.endpoints(&ev, &config)?.remove(0);
    run(async {
        for i in 0..2000 {
            let (client, server) =
                futures_lite::future::zip(TcpTransport.connect(&endpoint, &config), listener.accept()).await;
            let (client, mut server) = (client?, server?);
            if i % 2 == 0 {
                // Client leaves first; the server sees end of stream, then drops its connection.
                drop(client);
                let mut rest = Vec::new();
                server.reader.read_to_end(&mut rest).await?;
            } else {
                // The server drops its connection without reading.
                drop(server);
                drop(client);
            }
        }
        Ok(())
    })?;
    let close_wait = sockets_in_state(port, "08")?;
    assert_eq!(close_wait, 0, "{close_wait} sockets in CLOSE_WAIT on port {port}");
    listener.close()?;
    Ok(())
}
