//! Peer identity (P1, P2, P3). Switching user needs root; without it these tests only check what
//! they can and say so.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener as StdListener, UnixStream as StdStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use socket_core::{Config, ErrorKind, Listener, PeerInfo, Transport};
use socket_unix::UnixTransport;

use crate::util::*;

/// Lets another user reach the socket through the file system: directory 0711, socket 0666.
/// The listener's policy was fixed at bind time from the configured mode.
fn open_up(path: &Path) -> TestResult {
    let dir = path.parent().ok_or("socket path has no parent")?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(())
}

/// Connects as `OTHER_UID` and reports "connected", then what it read: `Ok(n)` bytes before end
/// of stream, or the error kind.
fn foreign_client(
    path: PathBuf,
) -> (mpsc::Receiver<()>, mpsc::Receiver<TestResult<Result<usize, std::io::ErrorKind>>>) {
    let (connected_tx, connected_rx) = mpsc::channel();
    let done = as_other_user(move || {
        let mut stream = StdStream::connect(&path)?;
        connected_tx.send(())?;
        stream.set_read_timeout(Some(WATCHDOG))?;
        let mut buf = Vec::new();
        Ok(stream.read_to_end(&mut buf).map(|_| buf.len()).map_err(|e| e.kind()))
    });
    (connected_rx, done)
}

/// Accepts the next connection the listener hands out, while a same-user client connects.
fn accept_next(listener: &dyn Listener) -> TestResult<PeerInfo> {
    let path = listener.address();
    run(async {
        let (accepted, own) =
            futures_lite::future::zip(listener.accept(), async_net::unix::UnixStream::connect(&path)).await;
        let _own = own?;
        Ok(accepted?.peer)
    })
}

fn bound(config: &Config, name: &str) -> TestResult<(Box<dyn Listener>, PathBuf)> {
    let listener = bind(&event(name), config)?;
    let path = PathBuf::from(listener.address());
    open_up(&path)?;
    Ok((listener, path))
}

/// P1: a peer of another uid that gets through the file permissions is closed after the
/// credential check, never handed to the engine; the next same-user peer is served.
#[test]
fn other_uid_refused_by_server() -> TestResult {
    if !is_root() {
        eprintln!("p1: not root, cannot switch user; checked nothing");
        return Ok(());
    }
    let (_tmp, config) = fresh()?;
    let (listener, path) = bound(&config, "p1")?;
    let (connected, done) = foreign_client(path);
    connected.recv_timeout(WATCHDOG)?;
    let served = accept_next(&*listener)?;
    assert_eq!(
        (served.pid, served.uid),
        (Some(std::process::id()), Some(0)),
        "the first connection handed out is ours"
    );
    let read = recv(&done)?;
    assert!(matches!(read, Ok(0) | Err(std::io::ErrorKind::ConnectionReset)), "foreign client read {read:?}");
    listener.close()?;
    Ok(())
}

/// P3: the same, with the uid in `allowed_uids`: served, with its uid reported.
#[test]
fn allowed_uid_served() -> TestResult {
    if !is_root() {
        eprintln!("p3: not root, cannot switch user; checked nothing");
        return Ok(());
    }
    let (_tmp, mut config) = fresh()?;
    config.socket.unix.allowed_uids = vec![OTHER_UID];
    let (listener, path) = bound(&config, "p3")?;
    let (connected, done) = foreign_client(path);
    connected.recv_timeout(WATCHDOG)?;
    let peer = run(async { Ok(listener.accept().await?.peer) })?;
    assert_eq!(peer.uid, Some(OTHER_UID));
    drop(listener);
    assert_eq!(recv(&done)?, Ok(0));
    Ok(())
}

/// A socket mode that grants others write access leaves the decision to the file mode: served.
#[test]
fn open_socket_mode_serves_other_users() -> TestResult {
    if !is_root() {
        eprintln!("open mode: not root, cannot switch user; checked nothing");
        return Ok(());
    }
    let (_tmp, mut config) = fresh()?;
    config.socket.unix.socket_permissions = "0666".to_owned();
    let (listener, path) = bound(&config, "open")?;
    let (connected, done) = foreign_client(path);
    connected.recv_timeout(WATCHDOG)?;
    let conn = run(async { Ok(listener.accept().await?) })?;
    assert_eq!(conn.peer.uid, Some(OTHER_UID));
    drop(conn);
    assert_eq!(recv(&done)?, Ok(0));
    listener.close()?;
    Ok(())
}

/// P2: another user binds the path first; our client refuses it before sending a byte, unless
/// that uid is allowed.
#[test]
fn squatter_refused_by_client() -> TestResult {
    if !is_root() {
        eprintln!("p2: not root, cannot switch user; checked nothing");
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("shared");
    std::fs::create_dir(&dir)?;
    std::os::unix::fs::chown(&dir, Some(OTHER_UID), Some(OTHER_UID))?;
    let config = config_in(&dir);
    let ev = event("squatted");
    let endpoint = UnixTransport.endpoints(&ev, &config)?.remove(0);

    let (bound_tx, bound_rx) = mpsc::channel();
    let path = PathBuf::from(&endpoint.address);
    let squatter = as_other_user(move || {
        let listener = StdListener::bind(&path)?;
        bound_tx.send(())?;
        let mut got = Vec::new();
        for _ in 0..2 {
            let (mut conn, _) = listener.accept()?;
            conn.set_read_timeout(Some(WATCHDOG))?;
            let mut buf = Vec::new();
            conn.read_to_end(&mut buf)?;
            got.push(buf.len());
        }
        Ok(got)
    });
    bound_rx.recv_timeout(WATCHDOG)?;

    let refused = run(async { Ok(UnixTransport.connect(&endpoint, &config).await.map(|c| c.peer)) })?;
    assert_err(refused, ErrorKind::Connection, &[&format!("uid {OTHER_UID}"), "socket.unix.allowed_uids"])?;

    let mut trusting = config.clone();
    trusting.socket.unix.allowed_uids = vec![OTHER_UID];
    let peer = run(async { Ok(UnixTransport.connect(&endpoint, &trusting).await?.peer) })?;
    assert_eq!(peer.uid, Some(OTHER_UID));

    assert_eq!(recv(&squatter)?, [0, 0], "the client sent no data to the squatter");
    Ok(())
}
