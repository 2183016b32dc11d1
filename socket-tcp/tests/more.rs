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
