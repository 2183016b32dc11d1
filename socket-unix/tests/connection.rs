//! Connections through the traits: halves, peer credentials, errors.

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use socket_core::{Endpoint, ErrorKind, Transport};
use socket_unix::UnixTransport;

use crate::util::*;

/// Both ends see each other's pid and uid; the halves carry bytes both ways at once; dropping a
/// connection is end of stream for the other side.
#[test]
fn connect_accept_exchange_and_peer_creds() -> TestResult {
    let (_tmp, config) = fresh()?;
    let ev = event("creds");
    let listener = bind(&ev, &config)?;
    let endpoint = UnixTransport.endpoints(&ev, &config)?.remove(0);
    let me = std::process::id();
    let uid = rustix::process::geteuid().as_raw();
    run(async {
        let (client, server) =
            futures_lite::future::zip(UnixTransport.connect(&endpoint, &config), listener.accept()).await;
        let (mut client, mut server) = (client?, server?);
        assert_eq!(server.peer.pid, Some(me));
        assert_eq!(server.peer.uid, Some(uid));
        assert_eq!(server.peer.address, listener.address());
        assert_eq!(client.peer.pid, Some(me));
        assert_eq!(client.peer.uid, Some(uid));
        assert_eq!(client.peer.address, endpoint.address);

        let payload = vec![7u8; 256 * 1024];
        let send = async {
            client.writer.write_all(&payload).await?;
            client.writer.flush().await?;
            Ok::<_, std::io::Error>(())
        };
        let echo = async {
            let mut got = vec![0u8; payload.len()];
            server.reader.read_exact(&mut got).await?;
            server.writer.write_all(&got[..4]).await?;
            Ok::<_, std::io::Error>(got)
        };
        let (sent, got) = futures_lite::future::zip(send, echo).await;
        sent?;
        assert!(got? == payload);
        let mut four = [0u8; 4];
        client.reader.read_exact(&mut four).await?;
        assert_eq!(four, [7; 4]);

        drop(server);
        let mut rest = Vec::new();
        client.reader.read_to_end(&mut rest).await?;
        assert!(rest.is_empty());
        Ok(())
    })?;
    listener.close()?;
    Ok(())
}

/// No server: a connection error naming the event and the path, and how to start a server.
#[test]
fn connect_without_server_is_a_connection_error() -> TestResult {
    let (tmp, config) = fresh()?;
    let ev = event("nobody");
    let endpoint = UnixTransport.endpoints(&ev, &config)?.remove(0);
    let result = run(async { Ok(UnixTransport.connect(&endpoint, &config).await.map(|c| c.peer)) })?;
    assert_err(
        result,
        ErrorKind::Connection,
        &["no server for event \"nobody\"", &endpoint.address, "socketctl serve"],
    )?;

    // A stale socket refuses: same error.
    std::fs::create_dir_all(tmp.path().join("sockets"))?;
    drop(std::os::unix::net::UnixListener::bind(&endpoint.address)?);
    let result = run(async { Ok(UnixTransport.connect(&endpoint, &config).await.map(|c| c.peer)) })?;
    assert_err(result, ErrorKind::Connection, &["no server for event \"nobody\""])?;

    let bogus = Endpoint { address: tmp.path().join("nothing/x.sock").display().to_string(), explicit: true };
    let result = run(async { Ok(UnixTransport.connect(&bogus, &config).await.map(|c| c.peer)) })?;
    assert_err(result, ErrorKind::Connection, &["no server for event \"x\""])?;
    Ok(())
}

/// What is at a socket path, without following symlinks: nothing, something that is not a
/// socket (file, directory, symlink), or a socket that is live or stale.
#[test]
fn socket_state_tells_missing_other_files_live_and_stale_apart() -> TestResult {
    use socket_unix::{socket_state, SocketState};

    let tmp = tempfile::tempdir()?;
    let at = |name: &str| tmp.path().join(name);
    assert_eq!(socket_state(&at("missing.sock"))?, SocketState::Missing);
    std::fs::write(at("file.sock"), b"")?;
    std::fs::create_dir(at("dir.sock"))?;
    let live = std::os::unix::net::UnixListener::bind(at("live.sock"))?;
    std::os::unix::fs::symlink(at("live.sock"), at("link.sock"))?;
    drop(std::os::unix::net::UnixListener::bind(at("stale.sock"))?);
    for name in ["file.sock", "dir.sock", "link.sock"] {
        assert_eq!(socket_state(&at(name))?, SocketState::NotASocket, "{name}");
    }
    assert_eq!(socket_state(&at("live.sock"))?, SocketState::Live);
    assert_eq!(socket_state(&at("stale.sock"))?, SocketState::Stale);
    drop(live);
    assert_eq!(socket_state(&at("live.sock"))?, SocketState::Stale, "the listener is gone, its file stays");
    Ok(())
}

/// A connect that fails otherwise than "no server" (here a symlink loop at the socket path)
/// is a connection error naming the path.
#[test]
fn other_connect_failures_name_the_path() -> TestResult {
    let (tmp, config) = fresh()?;
    let dir = tmp.path().join("sockets");
    std::fs::create_dir(&dir)?;
    let ev = event("looped");
    let endpoint = UnixTransport.endpoints(&ev, &config)?.remove(0);
    std::os::unix::fs::symlink(&endpoint.address, &endpoint.address)?;
    let result = run(async { Ok(UnixTransport.connect(&endpoint, &config).await.map(|c| c.peer)) })?;
    let expected = format!("cannot connect to {}", endpoint.address);
    assert_err(result, ErrorKind::Connection, &[&expected])?;
    Ok(())
}

/// Bytes the server's half takes, without the client reading, before it would block.
fn writable_before_blocking(config: &socket_core::Config, name: &str) -> TestResult<usize> {
    use futures_lite::AsyncWrite;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    let ev = event(name);
    let listener = bind(&ev, config)?;
    let endpoint = UnixTransport.endpoints(&ev, config)?.remove(0);
    let taken = run(async {
        let (client, server) =
            futures_lite::future::zip(UnixTransport.connect(&endpoint, config), listener.accept()).await;
        let (_client, mut server) = (client?, server?);
        let chunk = [0u8; 4096];
        let mut cx = Context::from_waker(Waker::noop());
        let mut taken = 0usize;
        // Bounded: no kernel buffer holds 64 MiB.
        while taken < 64 << 20 {
            match Pin::new(&mut server.writer).poll_write(&mut cx, &chunk) {
                Poll::Ready(Ok(n)) if n > 0 => taken += n,
                Poll::Pending => break,
                other => return Err(format!("write failed: {other:?}").into()),
            }
        }
        Ok(taken)
    })?;
    listener.close()?;
    Ok(taken)
}

/// `socket.unix.send_buffer_bytes` is applied to every accepted connection: at its minimum the
/// server's half stops taking bytes far earlier than with the default (1 MiB, or the kernel's
/// cap `net.core.wmem_max`, which is at least 208 KiB).
#[test]
fn the_send_buffer_of_accepted_connections_follows_the_setting() -> TestResult {
    let (_tmp, mut config) = fresh()?;
    let default = writable_before_blocking(&config, "sndbuf-default")?;
    config.socket.unix.send_buffer_bytes = 4096;
    let small = writable_before_blocking(&config, "sndbuf-small")?;
    assert!(small > 0, "a 4 KiB send buffer took nothing");
    assert!(small < 64 * 1024, "a 4 KiB send buffer took {small} bytes before blocking");
    assert!(default >= 4 * small, "the default send buffer took only {default} bytes (the 4 KiB one {small})");
    Ok(())
}
