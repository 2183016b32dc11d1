//! The listening socket: bound with the right options, closed synchronously.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures_lite::future;
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use socket_core::{BlockingRead, Connection, Error, ErrorKind, Listener, PeerInfo, Result};

use crate::{configure_stream, KEEPALIVE};

/// Backlog of the listening socket: large enough that a burst of connects (1,000 at once in the
/// reliability tests) waits in the kernel instead of overflowing; the kernel caps it at somaxconn.
const BACKLOG: i32 = 4096;

/// Creates a listening socket on `addr`: `SO_REUSEADDR` on (rebind while old connections are in
/// `TIME_WAIT`), `SO_REUSEPORT` off (a second server never shares the port), `TCP_NODELAY` and
/// keepalive on. `EADDRINUSE` from `bind` or `listen` comes back as `AddrInUse`.
pub(crate) fn listen_on(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))))]
    socket.set_reuse_port(false)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_tcp_keepalive(&KEEPALIVE)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// A bound TCP listener. Closing or dropping it stops listening at once and frees the port.
#[derive(Debug)]
pub struct TcpListener {
    local: SocketAddr,
    address: String,
    listener: Mutex<Option<async_net::TcpListener>>,
    closed_tx: async_channel::Sender<()>,
    closed_rx: async_channel::Receiver<()>,
}

impl TcpListener {
    pub(crate) fn new(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        let local = listener.local_addr()?;
        let listener = async_net::TcpListener::try_from(listener)?;
        let (closed_tx, closed_rx) = async_channel::bounded(1);
        Ok(TcpListener {
            local,
            address: local.to_string(),
            listener: Mutex::new(Some(listener)),
            closed_tx,
            closed_rx,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Waits for the next connection and returns the stream itself (with `TCP_NODELAY` and
    /// keepalive set) and the peer.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] once the listener is closed; [`ErrorKind::Connection`] when accept fails.
    pub async fn accept_stream(&self) -> Result<(async_net::TcpStream, PeerInfo)> {
        loop {
            let listener = self.listener.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let listener = listener.ok_or_else(|| self.closed_error())?;
            let closed = async {
                let _ = self.closed_rx.recv().await;
                None
            };
            let accepted = future::or(async { Some(listener.accept().await) }, closed).await;
            let (stream, peer) = match accepted {
                None => return Err(self.closed_error()),
                Some(_) if self.closed_tx.is_closed() => return Err(self.closed_error()),
                Some(Ok(accepted)) => accepted,
                Some(Err(e)) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Some(Err(e)) => {
                    return Err(
                        Error::new(ErrorKind::Connection, format!("accept on {} failed", self.address)).with_source(e)
                    )
                }
            };
            configure_stream(&stream);
            return Ok((stream, PeerInfo { address: peer.to_string(), pid: None, uid: None }));
        }
    }

    fn closed_error(&self) -> Error {
        Error::new(ErrorKind::Closed, format!("listener on {} is closed", self.address))
    }

    fn release(&self) {
        self.closed_tx.close();
        if let Some(listener) = self.listener.lock().unwrap_or_else(|e| e.into_inner()).take() {
            // An accept still running holds a handle until it sees the close; shutting the socket
            // down now refuses new connections and lets the port be bound again at once.
            if let Err(e) = SockRef::from(&listener).shutdown(Shutdown::Both) {
                tracing::debug!(error = %e, address = %self.address, "shutdown of the listening socket failed");
            }
            tracing::debug!(address = %self.address, "tcp listener closed");
        }
    }
}

#[async_trait]
impl Listener for TcpListener {
    fn address(&self) -> String {
        self.address.clone()
    }

    async fn accept(&self) -> Result<Connection> {
        let (stream, peer) = self.accept_stream().await?;
        Ok(Connection::shared(stream, peer))
    }

    async fn accept_blocking(&self) -> Result<(Connection, Option<Arc<dyn BlockingRead>>)> {
        let (stream, peer) = self.accept_stream().await?;
        Ok(crate::viewed(stream, peer))
    }

    fn close(&self) -> Result<()> {
        self.release();
        Ok(())
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        self.release();
    }
}
