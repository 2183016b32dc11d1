//! Binding a socket file safely, accepting with a peer-credential check, and cleaning up.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures_lite::future;
use rustix::fs::Mode;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use socket_core::{BlockingRead, Connection, Error, ErrorKind, EventName, Listener, PeerInfo, Result};

use crate::blocking::viewed;
use crate::lock::LockFile;
use crate::peer::{peer_creds, PeerPolicy};
use crate::{dir, socket_state_of, FileId, Settings, SocketState};

/// Backlog of the listening socket: large enough that a burst of connects (1,000 at once in the
/// reliability tests) waits in the kernel instead of overflowing; the kernel caps it at somaxconn.
const BACKLOG: i32 = 4096;

/// Binds the socket of `event` following the safe sequence (see the crate docs).
pub(crate) fn bind(event: &EventName, settings: &Settings) -> Result<UnixSocketListener> {
    let path = settings.socket_path(event)?;
    dir::ensure_socket_dir(&settings.dir)?;
    let lock = LockFile::acquire(&settings.lock_path(event), event)?;
    clear_path(&path, event)?;
    let (fd, id) = create_socket(&path, settings.permissions, event)?;
    let listener = std::os::unix::net::UnixListener::from(fd);
    let listener = listener
        .set_nonblocking(true)
        .and_then(|()| async_net::unix::UnixListener::try_from(listener))
        .map_err(|e| {
            remove_if_ours(&path, id).ok();
            io_error(format!("cannot register socket {} with the reactor", path.display()), e)
        })?;
    tracing::debug!(path = %path.display(), event = event.as_str(), "unix listener bound");
    let (closed_tx, closed_rx) = async_channel::bounded(1);
    Ok(UnixSocketListener {
        address: path.display().to_string(),
        policy: PeerPolicy {
            own: crate::euid(),
            open: settings.permissions & 0o022 != 0,
            allowed: settings.allowed_uids.clone(),
        },
        send_buffer: settings.send_buffer,
        listener: Mutex::new(Some(listener)),
        cleanup: Mutex::new(Some(Cleanup { socket: settings.auto_remove.then(|| (path.clone(), id)), lock })),
        path,
        closed_tx,
        closed_rx,
    })
}

/// Makes the socket path free, under the lock: absent is fine, a stale socket is removed, a live
/// one or anything that is not a socket is refused and left untouched.
fn clear_path(path: &Path, event: &EventName) -> Result<()> {
    let shown = path.display();
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(format!("cannot inspect {shown}"), e)),
    };
    match socket_state_of(path, &meta).map_err(|e| io_error(format!("cannot probe {shown}"), e))? {
        SocketState::Missing => Ok(()),
        SocketState::NotASocket => Err(Error::new(
            ErrorKind::Config,
            format!(
                "{shown} exists and is not a socket: refusing to touch it; remove it yourself or choose another \
                 socket.socket_dir"
            ),
        )),
        SocketState::Live => Err(Error::new(
            ErrorKind::AddrInUse,
            format!(
                "a server for event {:?} is already running at {shown}: stop it first or use another event name",
                event.as_str()
            ),
        )),
        SocketState::Stale => {
            use std::os::unix::fs::MetadataExt;
            if meta.uid() != crate::euid() {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "stale socket {shown} belongs to uid {}, not to you: refusing to remove it; remove it \
                         yourself or choose another socket.socket_dir",
                        meta.uid()
                    ),
                ));
            }
            match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    Err(io_error(format!("cannot remove stale socket {shown}"), e))
                }
                _ => {
                    tracing::info!(path = %shown, "removed stale socket (connection refused)");
                    Ok(())
                }
            }
        }
    }
}

/// socket, fchmod, bind, chmod, listen: the file has its final mode before anyone can connect.
///
/// `fchmod` on the socket before `bind` makes Linux create the file with that mode (less the
/// umask), so even a narrower mode is never visible; `chmod` after `bind` then applies the exact
/// mode whatever the umask. A connect before `listen` is refused.
fn create_socket(path: &Path, permissions: u32, event: &EventName) -> Result<(OwnedFd, FileId)> {
    let shown = path.display();
    let fd = rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None)
        .map_err(|e| io_error("cannot create a unix socket".to_owned(), e.into()))?;
    if let Err(e) = rustix::fs::fchmod(&fd, Mode::from_raw_mode(permissions)) {
        tracing::debug!(error = %e, "fchmod on the socket is not supported here; relying on chmod before listen");
    }
    let addr = SocketAddrUnix::new(path).map_err(|e| io_error(format!("invalid socket path {shown}"), e.into()))?;
    match rustix::net::bind(&fd, &addr) {
        Ok(()) => {}
        Err(rustix::io::Errno::ADDRINUSE) => {
            return Err(Error::new(
                ErrorKind::AddrInUse,
                format!(
                    "{shown} appeared while binding (a server for event {:?} without our lock?): stop it first",
                    event.as_str()
                ),
            ))
        }
        Err(e) => return Err(io_error(format!("cannot bind {shown}"), e.into())),
    }
    let id = fs::symlink_metadata(path)
        .map(|meta| FileId::of(&meta))
        .map_err(|e| io_error(format!("cannot inspect the new socket {shown}"), e))?;
    let finish = || -> io::Result<()> {
        rustix::fs::chmod(path, Mode::from_raw_mode(permissions))?;
        rustix::net::listen(&fd, BACKLOG)?;
        Ok(())
    };
    if let Err(e) = finish() {
        remove_if_ours(path, id).ok();
        return Err(io_error(format!("cannot set the mode of {shown} or listen on it"), e));
    }
    Ok((fd, id))
}

/// Removes `path` if it is still the file `id`; never another server's socket.
pub(crate) fn remove_if_ours(path: &Path, id: FileId) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(meta) if FileId::of(&meta) == id => match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        },
        Ok(_) => {
            tracing::warn!(path = %path.display(), "socket path was replaced by another file; leaving it in place");
            Ok(false)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// What to undo when the listener closes.
#[derive(Debug)]
struct Cleanup {
    /// The socket file we created, to remove (when `auto_remove_socket`).
    socket: Option<(PathBuf, FileId)>,
    lock: LockFile,
}

/// A bound Unix socket. Closing or dropping it removes its socket file (if configured) and lock file.
#[derive(Debug)]
pub(crate) struct UnixSocketListener {
    path: PathBuf,
    address: String,
    policy: PeerPolicy,
    /// `SO_SNDBUF` of every accepted connection (`socket.unix.send_buffer_bytes`).
    send_buffer: usize,
    listener: Mutex<Option<async_net::unix::UnixListener>>,
    cleanup: Mutex<Option<Cleanup>>,
    closed_tx: async_channel::Sender<()>,
    closed_rx: async_channel::Receiver<()>,
}

impl UnixSocketListener {
    fn current(&self) -> Result<async_net::unix::UnixListener> {
        self.listener.lock().unwrap_or_else(|e| e.into_inner()).clone().ok_or_else(|| self.closed_error())
    }

    fn closed_error(&self) -> Error {
        Error::new(ErrorKind::Closed, format!("listener on {} is closed", self.address))
    }

    fn release(&self) -> Result<()> {
        self.closed_tx.close();
        if let Some(listener) = self.listener.lock().unwrap_or_else(|e| e.into_inner()).take() {
            // An accept still running holds a handle until it sees the close; shutting the socket
            // down now refuses new connections at once.
            if let Err(e) = rustix::net::shutdown(&listener, rustix::net::Shutdown::Both) {
                tracing::debug!(error = %e, path = %self.path.display(), "shutdown of the listening socket failed");
            }
        }
        let Some(cleanup) = self.cleanup.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Ok(());
        };
        let mut result = Ok(());
        if let Some((path, id)) = &cleanup.socket {
            if let Err(e) = remove_if_ours(path, *id) {
                result = Err(io_error(format!("cannot remove socket {}", path.display()), e));
            }
        }
        if let Err(e) = cleanup.lock.release() {
            tracing::warn!(error = %e, path = %self.path.display(), "cannot remove the lock file");
        }
        tracing::debug!(path = %self.path.display(), "unix listener closed");
        result
    }

    /// Waits for the next connection of a peer the policy allows, with its send buffer set.
    async fn accept_stream(&self) -> Result<(async_net::unix::UnixStream, PeerInfo)> {
        loop {
            let listener = self.current()?;
            let closed = async {
                let _ = self.closed_rx.recv().await;
                None
            };
            let Some(accepted) = future::or(async { Some(listener.accept().await) }, closed).await else {
                return Err(self.closed_error());
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => return Err(io_error(format!("accept on {} failed", self.address), e)),
            };
            let creds = match peer_creds(&stream) {
                Ok(creds) => creds,
                Err(e) => {
                    tracing::warn!(error = %e, path = %self.address, "cannot read peer credentials; closing connection");
                    continue;
                }
            };
            if let Some(creds) = creds {
                if !self.policy.allows(creds.uid) {
                    tracing::warn!(
                        uid = creds.uid,
                        pid = creds.pid,
                        path = %self.address,
                        "refused a peer of another user (add its uid to socket.unix.allowed_uids to allow it)"
                    );
                    continue;
                }
            }
            // The kernel caps the size at net.core.wmem_max: a smaller buffer than asked is not an error.
            if let Err(e) = rustix::net::sockopt::set_socket_send_buffer_size(&stream, self.send_buffer) {
                tracing::warn!(error = %e, path = %self.address, "cannot set the send buffer of a connection; keeping the default");
            }
            let peer =
                PeerInfo { address: self.address.clone(), pid: creds.and_then(|c| c.pid), uid: creds.map(|c| c.uid) };
            return Ok((stream, peer));
        }
    }
}

#[async_trait]
impl Listener for UnixSocketListener {
    fn address(&self) -> String {
        self.address.clone()
    }

    async fn accept(&self) -> Result<Connection> {
        let (stream, peer) = self.accept_stream().await?;
        Ok(Connection::shared(stream, peer))
    }

    async fn accept_blocking(&self) -> Result<(Connection, Option<Arc<dyn BlockingRead>>)> {
        let (stream, peer) = self.accept_stream().await?;
        Ok(viewed(stream, peer))
    }

    fn close(&self) -> Result<()> {
        self.release()
    }
}

impl Drop for UnixSocketListener {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            tracing::warn!(error = %e, "cleanup of a dropped unix listener failed");
        }
    }
}

/// An I/O error while binding or serving. One that says the socket directory itself is not
/// usable (not writable, not searchable, read-only file system, part of its path is a file) is
/// a configuration error, like the directory checks of `dir.rs`: the same cause gets the same
/// kind (and so the same `socketctl` exit code) wherever it shows up.
fn io_error(message: String, e: io::Error) -> Error {
    if crate::dir_unusable(&e) {
        return Error::new(
            ErrorKind::Config,
            format!(
                "{message}: the socket directory is not usable (read-only, not searchable or not a directory); \
                 choose a writable socket.socket_dir"
            ),
        )
        .with_source(e);
    }
    Error::new(ErrorKind::Connection, message).with_source(e)
}
