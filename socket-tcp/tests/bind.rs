//! Binding: host policy, port discovery, rebinding (T1, T3, T4).

use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use socket_core::{ErrorKind, Listener, Transport};
use socket_tcp::{preferred_port, probe_sequence, TcpTransport};

use crate::util::*;

/// T1: a wildcard or LAN address without `allow_remote` is refused, naming the key; loopback
/// addresses need no opt-in.
#[test]
fn non_loopback_bind_needs_allow_remote() -> TestResult {
    let (mut config, port) = port_config()?;
    for host in ["0.0.0.0", "::", "192.168.1.10", "[::]", "example.invalid"] {
        config.socket.tcp.host = host.to_owned();
        let result = async_io::block_on(TcpTransport.bind(&event("t1"), &config)).map(|l| l.address());
        assert_err(result, ErrorKind::Config, &["socket.tcp.allow_remote", host.trim_matches(['[', ']'])])?;
    }
    for host in ["127.0.0.1", "localhost", "127.0.0.2"] {
        config.socket.tcp.host = host.to_owned();
        let listener = async_io::block_on(TcpTransport.bind(&event("t1"), &config))?;
        assert!(listener.address().ends_with(&format!(":{port}")), "{}", listener.address());
        listener.close()?;
    }
    // The opt-in lets a wildcard bind (reached here through loopback only).
    config.socket.tcp.host = "0.0.0.0".to_owned();
    config.socket.tcp.allow_remote = true;
    let listener = async_io::block_on(TcpTransport.bind_listener(&event("t1"), &config))?;
    assert_eq!(listener.local_addr().to_string(), format!("0.0.0.0:{port}"));
    listener.close()?;
    Ok(())
}

/// IPv6 loopback works when the machine has it.
#[test]
fn ipv6_loopback() -> TestResult {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("ipv6: no ::1 on this machine; checked nothing");
        return Ok(());
    }
    let (mut config, port) = port_config()?;
    config.socket.tcp.host = "::1".to_owned();
    let endpoints = TcpTransport.endpoints(&event("six"), &config)?;
    assert_eq!(endpoints[0].address, format!("[::1]:{port}"));
    let listener = async_io::block_on(TcpTransport.bind(&event("six"), &config))?;
    assert_eq!(listener.address(), format!("[::1]:{port}"));
    run(async {
        let (client, server) =
            futures_lite::future::zip(TcpTransport.connect(&endpoints[0], &config), listener.accept()).await;
        assert_eq!(client?.peer.address, format!("[::1]:{port}"));
        assert!(server?.peer.address.starts_with("[::1]:"));
        Ok(())
    })?;
    listener.close()?;
    Ok(())
}

/// The first server of an event gets its preferred port; T3: a second one gets EADDRINUSE there
/// (no SO_REUSEPORT sharing) and binds the next port of the sequence, wrapping around.
#[test]
fn second_server_takes_the_next_port() -> TestResult {
    let (start, end) = free_ports(3)?;
    let config = range_config(start, end);
    let ev = event("t3_event");
    let seq = probe_sequence(&ev, start, end);
    assert_eq!(seq[0], preferred_port(&ev, start, end));

    let bind = || async_io::block_on(TcpTransport.bind_listener(&ev, &config));
    let first = bind()?;
    let second = bind()?;
    let third = bind()?;
    let ports: Vec<u16> = [&first, &second, &third].iter().map(|l| l.local_addr().port()).collect();
    assert_eq!(ports, seq);
    assert_err(bind().map(|l| l.local_addr()), ErrorKind::AddrInUse, &["no free port", "\"t3_event\""])?;

    // A port held by some other program is skipped too.
    second.close()?;
    let other = std::net::TcpListener::bind(("127.0.0.1", seq[1]))?;
    assert_err(bind().map(|l| l.local_addr()), ErrorKind::AddrInUse, &["every port"])?;
    drop(other);
    let again = bind()?;
    assert_eq!(again.local_addr().port(), seq[1]);
    Ok(())
}

/// An explicit port in use is AddrInUse naming the port and the key, without probing further.
#[test]
fn explicit_port_in_use() -> TestResult {
    let (config, port) = port_config()?;
    let first = async_io::block_on(TcpTransport.bind(&event("fixed"), &config))?;
    let second = async_io::block_on(TcpTransport.bind(&event("other"), &config)).map(|l| l.address());
    assert_err(second, ErrorKind::AddrInUse, &[&format!("port {port}"), "socket.tcp.port"])?;
    first.close()?;
    Ok(())
}

/// T4: a restart right after stop rebinds the same port although a connection of the old
/// server is in TIME_WAIT on it.
#[test]
fn rebind_while_time_wait_succeeds() -> TestResult {
    let (config, port) = port_config()?;
    let ev = event("t4");
    let endpoint = TcpTransport.endpoints(&ev, &config)?.remove(0);
    let listener = async_io::block_on(TcpTransport.bind(&ev, &config))?;
    run(async {
        let (client, server) =
            futures_lite::future::zip(TcpTransport.connect(&endpoint, &config), listener.accept()).await;
        let (mut client, mut server) = (client?, server?);
        server.writer.write_all(b"bye").await?;
        // The server closes first, so its side of the connection goes to TIME_WAIT.
        drop(server);
        let mut got = Vec::new();
        client.reader.read_to_end(&mut got).await?;
        assert_eq!(got, b"bye");
        Ok(())
    })?;
    assert!(
        eventually(Duration::from_secs(5), || Ok(sockets_in_state(port, "06")? > 0))?,
        "no TIME_WAIT connection on port {port}: the test would prove nothing"
    );
    listener.close()?;
    let again = async_io::block_on(TcpTransport.bind(&ev, &config))?;
    assert_eq!(again.address(), format!("127.0.0.1:{port}"));
    again.close()?;
    Ok(())
}

/// Close stops listening at once, even while an accept is waiting: connects are refused and a
/// new server (SO_REUSEADDR) binds the port while that accept has not yet returned. Once it has,
/// the socket is closed and even a socket without SO_REUSEADDR can bind the port.
#[test]
fn close_frees_the_port() -> TestResult {
    let (config, port) = port_config()?;
    let ev = event("free");
    let listener = async_io::block_on(TcpTransport.bind_listener(&ev, &config))?;
    let strict_bind = || -> TestResult {
        let strict = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        strict.set_reuse_address(false)?;
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        strict.bind(&addr.into())?;
        strict.listen(1)?;
        Ok(())
    };
    run(async {
        // `zip` polls the accept first, so it is parked, holding the socket, while close runs.
        let (accepted, after_close) = futures_lite::future::zip(listener.accept_stream(), async {
            listener.close()?;
            let refused = std::net::TcpStream::connect(("127.0.0.1", port));
            assert_eq!(refused.err().map(|e| e.kind()), Some(std::io::ErrorKind::ConnectionRefused));
            let successor = TcpTransport.bind_listener(&ev, &config).await?;
            assert_eq!(successor.local_addr().port(), port);
            successor.close()?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .await;
        after_close?;
        assert_err(accepted.map(|(_, peer)| peer), ErrorKind::Closed, &["closed"])?;
        Ok(())
    })?;
    strict_bind()?;
    assert_err(async_io::block_on(listener.accept_stream()).map(|(_, p)| p), ErrorKind::Closed, &["closed"])?;
    listener.close()?;
    Ok(())
}

#[test]
fn settings_are_validated() -> TestResult {
    let ok = range_config(9000, 9100);
    TcpTransport.validate(&ok)?;
    let mut config = ok.clone();
    config.socket.tcp.port_range_start = 9200;
    assert_err(TcpTransport.validate(&config), ErrorKind::Config, &["socket.tcp.port_range_start", "9200"])?;
    let mut config = ok.clone();
    config.socket.tcp.port_range_start = 80;
    assert_err(TcpTransport.validate(&config), ErrorKind::Config, &["socket.tcp.port_range_start", "1024..=65535"])?;
    let mut config = ok.clone();
    config.socket.tcp.port = Some(22);
    assert_err(TcpTransport.validate(&config), ErrorKind::Config, &["socket.tcp.port", "22"])?;
    let mut config = ok.clone();
    config.socket.tcp.host = " ".to_owned();
    assert_err(TcpTransport.validate(&config), ErrorKind::Config, &["socket.tcp.host"])?;
    // Validation is about form: a remote host is fine for clients, only binding needs the opt-in.
    let mut config = ok;
    config.socket.tcp.host = "0.0.0.0".to_owned();
    TcpTransport.validate(&config)?;
    Ok(())
}

#[test]
fn declared_keys_match_the_core_key_table() {
    // Until the core stops typing [socket.tcp] itself, its key table and the transport's
    // declaration describe the same keys: same type, rule, help text and default.
    let core: Vec<_> = socket_core::config::KEYS.iter().filter(|k| k.key.starts_with("socket.tcp.")).collect();
    assert_eq!(core.len(), socket_tcp::SETTINGS.len());
    for spec in socket_tcp::SETTINGS {
        let key = spec.key("tcp");
        let info = socket_core::config::key_info(&key).unwrap_or_else(|| panic!("{key} not in KEYS"));
        assert_eq!((info.ty, info.rule, info.description), (spec.ty, spec.rule, spec.description), "{key}");
        assert_eq!(info.default_toml(), spec.default_value().map(|v| v.to_string()), "{key}");
        assert_eq!(info.env_var(), spec.env_var("tcp"));
    }
}

/// Bind and endpoints check the settings themselves, without a prior validation: each invalid
/// value is a configuration error naming its key and rule, and nothing is bound.
#[test]
fn bind_and_endpoints_refuse_invalid_settings_without_validation() -> TestResult {
    let ok = range_config(9000, 9100);
    let mut cases = Vec::new();
    for host in [" ", "a b", "host/path", "[]"] {
        let mut config = ok.clone();
        config.socket.tcp.host = host.to_owned();
        cases.push((config, vec!["socket.tcp.host", "must be an IP address or a host name"]));
    }
    let mut config = ok.clone();
    config.socket.tcp.port_range_start = 80;
    cases.push((config, vec!["invalid value 80 for key socket.tcp.port_range_start", "1024..=65535"]));
    let mut config = ok.clone();
    config.socket.tcp.port_range_end = 1000;
    cases.push((config, vec!["invalid value 1000 for key socket.tcp.port_range_end", "1024..=65535"]));
    let mut config = ok.clone();
    config.socket.tcp.port_range_start = 9200;
    cases.push((config, vec!["socket.tcp.port_range_start", "must not be above socket.tcp.port_range_end (9100)"]));
    let mut config = ok;
    config.socket.tcp.port = Some(22);
    cases.push((config, vec!["invalid value 22 for key socket.tcp.port", "1024..=65535"]));
    let ev = event("unchecked");
    for (config, needles) in cases {
        assert_err(TcpTransport.endpoints(&ev, &config), ErrorKind::Config, &needles)?;
        let bound = async_io::block_on(TcpTransport.bind(&ev, &config)).map(|l| l.address());
        assert_err(bound, ErrorKind::Config, &needles)?;
    }
    Ok(())
}
