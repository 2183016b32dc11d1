//! The live connection as senders see it: the writer slot and its death
//! switch, the connection state and its watchers, installing a new
//! connection, writing one frame, and closing (at once or lingering).

use std::sync::atomic::Ordering;
use std::sync::MutexGuard;
use std::time::Instant;

use async_channel::{Receiver, Sender};

use super::connect::Established;
use super::receive::LinkReader;
use super::{ConnectionState, Inner, Shared};
use crate::codec::Frame;
use crate::error::{Error, ErrorKind, Result};
use crate::runtime;
use crate::transport::BoxWrite;
use crate::wire::{write_all, StallTimer, WriteFail};

/// What [`Inner::write_frame`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    /// An application message: a receipt must cover it.
    Message,
    /// The `ping` of a receipt.
    Receipt,
    /// Anything else (`pong`).
    Other,
}

/// The death switch of one connection: whoever notices first (reader or a
/// sender) closes it, and everybody else waiting on it stops.
#[derive(Debug, Clone)]
pub(super) struct Link {
    pub(super) tx: Sender<()>,
    pub(super) rx: Receiver<()>,
}

impl Link {
    pub(super) fn new() -> Self {
        let (tx, rx) = async_channel::bounded(1);
        Link { tx, rx }
    }
    pub(super) fn kill(&self) {
        self.tx.close();
    }
    pub(super) fn is_dead(&self) -> bool {
        self.tx.is_closed()
    }
    pub(super) async fn dead(&self) {
        let _ = self.rx.recv().await;
    }
}

pub(super) struct WriterSlot {
    pub(super) w: BoxWrite,
    pub(super) link: Link,
    pub(super) st: StallTimer,
    /// The connection's generation.
    pub(super) generation: u64,
}

impl std::fmt::Debug for WriterSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterSlot").field("link", &self.link).finish_non_exhaustive()
    }
}

/// Kills the link if a write is abandoned half-way (the stream would be out of sync).
struct KillOnDrop<'a>(Option<&'a Link>);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(link) = self.0 {
            link.kill();
        }
    }
}

impl Inner {
    pub(super) fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn closed_error(&self) -> Error {
        let reason = self.lock().close_reason.clone().unwrap_or_else(|| "closed".to_owned());
        Error::new(ErrorKind::Closed, format!("client for event {} is closed: {reason}", self.event))
    }

    pub(super) fn not_connected(&self) -> Error {
        if self.lock().state == ConnectionState::Closed {
            return self.closed_error();
        }
        Error::new(
            ErrorKind::Connection,
            format!("not connected to the server for event {} (reconnecting): try again later", self.event),
        )
    }

    pub(super) fn check_can_send(&self) -> Result<()> {
        if self.can_send.load(Ordering::Acquire) {
            return Ok(());
        }
        let text = if self.opts.receive_only {
            format!("client for event {} is receive-only: sending is disabled (receive_only)", self.event)
        } else {
            format!(
                "the server for event {} does not accept messages from clients (allow_client_send = false)",
                self.event
            )
        };
        Err(Error::new(ErrorKind::SendNotAllowed, text))
    }

    pub(super) fn set_state(&self, sh: &mut Shared, state: ConnectionState) {
        if sh.state == state || sh.state == ConnectionState::Closed {
            return;
        }
        sh.state = state;
        sh.watchers.retain(|w| w.try_send(state).is_ok());
        if state == ConnectionState::Closed {
            sh.watchers.clear();
        }
    }

    /// Closed for good: receive ends (after the buffer), send fails.
    pub(super) fn close(&self, reason: String) {
        self.connected.store(false, Ordering::Release);
        {
            let mut sh = self.lock();
            if sh.state == ConnectionState::Closed {
                return;
            }
            tracing::debug!(event = %self.event, %reason, "client closed");
            sh.close_reason = Some(reason);
            self.set_state(&mut sh, ConnectionState::Closed);
            // Interrupts a blocked sender and the reader of the live connection.
            if let Some(link) = sh.link.take() {
                link.kill();
            }
        }
        self.inbox.close();
        if let Some(mut slot) = self.writer.try_lock() {
            slot.take();
        }
    }

    /// Stops waiting for the receipt `nonce`.
    pub(super) fn forget_receipt(&self, nonce: u64) {
        self.lock().receipts.retain(|(n, _)| *n != nonce);
    }

    /// The lingering close of [`Client::close_async`]: sends in progress finish (they hold the
    /// writer lock), the write side is shut down, and the supervisor reads and discards until
    /// the server closes, at most `connect_timeout`.
    pub(super) async fn close_lingering(&self, reason: String) -> Result<()> {
        let linger = self.opts.connect_timeout;
        let mut slot = self.writer.lock().await;
        let (task, live) = {
            let mut sh = self.lock();
            if sh.state == ConnectionState::Closed && sh.supervisor.is_none() {
                return Ok(());
            }
            (sh.supervisor.take(), sh.link.is_some())
        };
        self.lingering.store(true, Ordering::Release);
        // Closed from here on: sends fail, receivers end after the buffer, the reader stops.
        self.close(reason);
        let writer = slot.take();
        drop(slot);
        let Some(task) = task else { return Ok(()) };
        let (Some(mut writer), true) = (writer, live) else {
            // No live connection (backoff, a reconnect in progress): nothing to linger for.
            task.cancel().await;
            return Ok(());
        };
        let started = Instant::now();
        let shut = runtime::timeout(linger, futures_lite::AsyncWriteExt::close(&mut writer.w)).await;
        let left = linger.saturating_sub(started.elapsed());
        let finished = runtime::timeout(left, task).await.is_some();
        drop(writer);
        let event = &self.event;
        match (shut, finished, self.lock().drained.take()) {
            (Some(Err(e)), ..) => Err(Error::new(
                ErrorKind::Connection,
                format!("closing the connection to the server for event {event} failed"),
            )
            .with_source(e)),
            (_, true, Some(Ok(()))) => Ok(()),
            (_, true, Some(Err(e))) => Err(Error::new(
                ErrorKind::Connection,
                format!("the connection to the server for event {event} failed while closing: {e}"),
            )),
            _ => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "the server for event {event} did not close the connection within {linger:?} (default_timeout) \
                     after this client finished sending: it may not have read everything"
                ),
            )),
        }
    }

    /// Makes an established connection the live one.
    pub(super) async fn install(&self, est: Established) -> Result<LinkReader> {
        let link = Link::new();
        let mut slot = self.writer.lock().await;
        {
            let mut sh = self.lock();
            if sh.state == ConnectionState::Closed {
                drop(sh);
                return Err(self.closed_error());
            }
            sh.address = Some(est.address.clone());
            sh.shutdown_reason = None;
            if let Some((id, allowed, relay)) = &est.welcome {
                sh.client_id = Some(id.clone());
                self.can_send.store(*allowed && !self.opts.receive_only, Ordering::Release);
                self.server_relays.store(*relay, Ordering::Release);
            } else {
                self.can_send.store(!self.opts.receive_only, Ordering::Release);
                self.server_relays.store(false, Ordering::Release);
            }
            let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
            *slot = Some(WriterSlot { w: est.writer, link: link.clone(), st: StallTimer::new(), generation });
            sh.link = Some(link.clone());
            self.connected.store(true, Ordering::Release);
            self.set_state(&mut sh, ConnectionState::Connected);
        }
        tracing::debug!(event = %self.event, address = %est.address, "connected");
        self.reads.reset(est.blocking.is_some());
        Ok(LinkReader { reader: est.reader, fr: est.fr, early: est.early, link, blocking: est.blocking })
    }

    /// Writes one frame on the live connection; returns its generation and, for a
    /// [`Sent::Receipt`], the generation of the oldest message it does not confirm yet (0:
    /// none), which it takes over.
    pub(super) async fn write_frame(&self, frame: &Frame, sent: Sent) -> Result<(u64, u64)> {
        let mut slot = self.writer.lock().await;
        let Some(s) = slot.as_mut() else {
            return Err(self.not_connected());
        };
        if s.link.is_dead() {
            *slot = None;
            return Err(self.not_connected());
        }
        let WriterSlot { w, link, st, generation } = s;
        let generation = *generation;
        let mut guard = KillOnDrop(Some(link));
        let res = write_all(w, frame.as_bytes(), self.opts.send_timeout, st, link.dead()).await;
        guard.0 = None;
        drop(guard);
        match res {
            // Under the writer lock: receipts and messages are accounted in wire order.
            Ok(()) => Ok(match sent {
                Sent::Message => {
                    let _ = self.unconfirmed.compare_exchange(0, generation, Ordering::AcqRel, Ordering::Acquire);
                    (generation, 0)
                }
                Sent::Receipt => (generation, self.unconfirmed.swap(0, Ordering::AcqRel)),
                Sent::Other => (generation, 0),
            }),
            Err(fail) => {
                link.kill();
                *slot = None;
                self.connected.store(false, Ordering::Release);
                Err(match fail {
                    WriteFail::Stalled => Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "sending to the server for event {} made no progress for {:?}: the server does not read; the connection is reset",
                            self.event, self.opts.send_timeout
                        ),
                    ),
                    WriteFail::Interrupted { .. } => Error::new(
                        ErrorKind::Connection,
                        format!("lost the connection to the server for event {} while sending", self.event),
                    ),
                    WriteFail::Io(e) => Error::new(
                        ErrorKind::Connection,
                        format!("cannot send to the server for event {}: the connection failed", self.event),
                    )
                    .with_source(e),
                })
            }
        }
    }
}
