//! Starting and stopping a server, and admitting and removing connections.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_channel::{Receiver, Sender};
use event_listener::Event;

use super::registry::{Admission, ConnShared};
use super::{conn, ClientId, ClientInfo, Inner, Run, ServerEvent, STOP_ABORT, STOP_FLUSH};
use crate::control::ErrorCode;
use crate::error::Result;
use crate::handoff::ReadSlot;
use crate::runtime;
use crate::transport::{BlockingRead, Connection, Listener};

impl Inner {
    pub(super) async fn start(self: Arc<Self>) -> Result<()> {
        let _life = self.lifecycle.lock().await;
        if self.life().run.is_some() {
            return Ok(());
        }
        let listener: Arc<dyn Listener> = Arc::from(self.transport.bind(&self.event, &self.config).await?);
        let address = listener.address();
        let (abort_tx, abort_rx) = async_channel::bounded(1);
        let (alive_tx, alive_rx) = async_channel::bounded(1);
        let (stopped_tx, stopped_rx) = async_channel::bounded(1);
        // Open before the first accept, so no connection finds it closed.
        self.registry.open();
        let accept =
            runtime::spawn(conn::accept_loop(self.clone(), listener.clone(), abort_rx.clone(), alive_tx.clone()));
        tracing::info!(event = %self.event, transport = self.transport.scheme(), %address, "server listening");
        let mut life = self.life();
        life.run = Some(Run { listener, address, accept, abort_tx, abort_rx, alive_tx, alive_rx, stopped_tx });
        life.stopped_rx = Some(stopped_rx);
        self.running.store(true, Ordering::Release);
        Ok(())
    }

    /// The synchronous half of `stop`: no new clients, no more accepts, the
    /// address released, every connection told to flush and close.
    pub(super) fn begin_stop(&self) -> Option<Run> {
        let run = self.life().run.take()?;
        self.running.store(false, Ordering::Release);
        // The accept task may still run until `finish_stop` cancels it, but
        // the registry admits nobody any more.
        self.registry.shut();
        Some(run)
    }

    pub(super) async fn finish_stop(&self, run: Run) -> Result<()> {
        let Run { listener, address, accept, abort_tx, abort_rx, alive_tx, alive_rx, stopped_tx } = run;
        accept.cancel().await;
        let closed = listener.close();
        drop(alive_tx);
        drop(abort_rx);
        // Writers flush their queues and send `shutdown`.
        let _ = runtime::timeout(STOP_FLUSH, alive_rx.recv()).await;
        // Whatever is still running is cut off now: peers see end-of-stream.
        drop(abort_tx);
        if runtime::timeout(STOP_ABORT, alive_rx.recv()).await.is_none() {
            tracing::warn!(event = %self.event, "some connection tasks did not end in time");
        }
        drop(stopped_tx);
        tracing::info!(event = %self.event, %address, "server stopped");
        closed
    }

    pub(super) async fn stop(self: Arc<Self>) -> Result<()> {
        let _life = self.lifecycle.lock().await;
        match self.begin_stop() {
            Some(run) => self.finish_stop(run).await,
            None => Ok(()),
        }
    }

    /// Registers a new connection, or refuses it over the limit.
    pub(super) fn admit(
        self: &Arc<Self>,
        conn: Connection,
        blocking: Option<Arc<dyn BlockingRead>>,
        abort_rx: &Receiver<()>,
        alive_tx: &Sender<()>,
    ) {
        let peer = &conn.peer;
        let admission = self.registry.admit(|id| ClientInfo {
            id: ClientId(id),
            connected_at_ms: jiff::Timestamp::now().as_millisecond().try_into().unwrap_or(0),
            address: peer.address.clone(),
            pid: peer.pid,
            uid: peer.uid,
            client_name: None,
            handshaken: false,
        });
        let a = match admission {
            Admission::Admitted(a) => a,
            Admission::Stopped => return,
            Admission::Full => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    event = %self.event,
                    peer = %conn.peer.address,
                    max = self.opts.max_connections,
                    "connection refused: max_connections reached"
                );
                let text = format!(
                    "server for event {} serves its maximum of {} clients (max_connections): try again later",
                    self.event, self.opts.max_connections
                );
                if let Some(frame) = self.error_frame(ErrorCode::MaxConnections, &text) {
                    runtime::spawn(conn::refuse(conn, frame)).detach();
                }
                return;
            }
        };
        // The connection led so far, if any, is not the only one any more.
        self.sole.admitted();
        if a.replayed > 0 || a.dropped > 0 {
            tracing::debug!(
                event = %self.event,
                client = %a.info.id,
                messages = a.replayed,
                dropped = a.dropped,
                "replaying the offline queue"
            );
            self.count_offline_drops(a.dropped);
        }
        let task = Arc::new(conn::Conn {
            inner: self.clone(),
            id: a.id,
            info: a.info,
            shared: a.shared,
            abort_rx: abort_rx.clone(),
            write_done: AtomicBool::new(false),
            frames_read: AtomicU64::new(0),
            reads: ReadSlot::default(),
            handed: Event::new(),
            published: AtomicBool::new(false),
            ended: Arc::new(AtomicBool::new(false)),
        });
        runtime::spawn(task.run(conn, blocking, alive_tx.clone())).detach();
    }

    /// Removes client `id` from the registry (if still there) and reports it.
    pub(super) fn remove(&self, id: u64, shared: &ConnShared, reason: String) {
        self.registry.remove(id);
        tracing::debug!(event = %self.event, client = %ClientId(id), %reason, "client disconnected");
        if shared.announced.load(Ordering::Acquire) {
            self.emit(ServerEvent::Disconnected { id: ClientId(id), reason });
        }
    }
}
