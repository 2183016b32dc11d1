//! The accept loop and one task per connection (a reader and a writer raced).

use std::future::pending;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender, TrySendError};
use event_listener::Event;
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use tracing::Instrument;

use super::lead::Reading;
use super::outlet::OutletWrite;
use super::registry::CHUNK;
use super::{ClientId, ClientInfo, Closing, ConnShared, Inner, ServerEvent, CLOSE_LINGER, STOP_FLUSH};
use crate::codec::{check_body_for, decode_body_for, encode_frame, DecodeError, Frame, HEADER_LEN};
use crate::control::{Control, ErrorCode};
use crate::handoff::ReadSlot;
use crate::message::{EventName, MessageType, SocketMessage};
use crate::runtime;
use crate::transport::{BlockingRead, BoxRead, Connection, Listener};
use crate::wire::{write_all, Fill, FrameReader, StallTimer, WriteFail};
use crate::{PROTOCOL_VERSION, SERVER_NAME};

/// How long the reading side goes on without a new frame once the writing side has
/// stopped (see `Conn::race`).
const DRAIN_QUIET: Duration = Duration::from_millis(200);
/// Time a refused connection gets to read its ERROR frame.
const REFUSE_LINGER: Duration = Duration::from_millis(500);

/// Accepts connections until cancelled (by `stop`).
pub(super) async fn accept_loop(
    inner: Arc<Inner>,
    listener: Arc<dyn Listener>,
    abort_rx: Receiver<()>,
    alive_tx: Sender<()>,
) {
    let mut failures: u32 = 0;
    loop {
        match listener.accept_blocking().await {
            Ok((conn, blocking)) => {
                failures = 0;
                inner.admit(conn, blocking, &abort_rx, &alive_tx);
            }
            Err(e) => {
                if !inner.running.load(Ordering::Acquire) {
                    return;
                }
                failures = failures.saturating_add(1);
                tracing::warn!(event = %inner.event, error = %e, failures, "accept failed");
                // Back off on repeated failures (e.g. out of file descriptors).
                runtime::sleep(Duration::from_millis(5u64 << failures.min(8))).await;
            }
        }
    }
}

/// Sends the `max_connections` ERROR to a refused connection, then closes it.
pub(super) async fn refuse(conn: Connection, frame: Frame) {
    let Connection { mut reader, mut writer, .. } = conn;
    let mut st = StallTimer::new();
    let _ = runtime::timeout(REFUSE_LINGER, async {
        if write_all(&mut writer, frame.as_bytes(), REFUSE_LINGER, &mut st, pending()).await.is_ok() {
            let _ = writer.close().await;
            // Read until the peer closes, so closing with unread bytes (its
            // `hello`) cannot reset the connection before it read the error.
            let mut sink = [0u8; 512];
            while let Ok(1..) = reader.read(&mut sink).await {}
        }
    })
    .await;
}

/// How the writing side of a connection ended.
pub(super) struct WriterEnd {
    /// Why, in words.
    reason: String,
    /// Only the writing side is done: the reader goes on to end-of-stream.
    read_on: bool,
}

impl WriterEnd {
    fn read_on(reason: String) -> Self {
        WriterEnd { reason, read_on: true }
    }
    fn last(reason: String) -> Self {
        WriterEnd { reason, read_on: false }
    }
}

/// Why [`Conn::write_batch`] stopped short.
enum Halt {
    /// The connection is killed: the rest of the frames in flight are staged, the final
    /// frame follows ([`Conn::finish`]).
    Finish,
    /// The writing side is done.
    End(WriterEnd),
}

/// Which side ended a connection first.
enum Ended {
    Read(String),
    Write(WriterEnd),
}

/// Where the reader of a connection stands in the handshake phase, and who reads.
pub(super) struct Phase<'a> {
    /// Hands the writer `welcome` (or `None`: legacy, nothing to send first).
    pub(super) hs_tx: &'a Sender<Option<Frame>>,
    /// The reader decided between `hello` and legacy.
    pub(super) decided: bool,
    /// The client sent a frame (valid or not).
    pub(super) spoke: bool,
    /// A thread waiting for events reads (`server/lead.rs`): an event never waits for room
    /// in the buffer, it is held here instead.
    pub(super) leader: bool,
    pub(super) held: Option<ServerEvent>,
    /// A leader's first event while no event is queued: it goes to the leader's caller
    /// without the round through the buffer.
    pub(super) direct: Option<ServerEvent>,
}

/// One connection's task state.
pub(super) struct Conn {
    pub(super) inner: Arc<Inner>,
    pub(super) id: u64,
    pub(super) info: ClientInfo,
    pub(super) shared: Arc<ConnShared>,
    pub(super) abort_rx: Receiver<()>,
    /// The writing side has ended and the reader goes on alone.
    pub(super) write_done: AtomicBool,
    /// Frames read so far (the drain after the writing side stopped watches it).
    pub(super) frames_read: AtomicU64,
    /// The read side while a thread waiting for events may read it (`server/lead.rs`).
    /// (Boxed: the slot and the reader's future each hold a pointer, not the whole side.)
    pub(super) reads: ReadSlot<Box<Reading>>,
    /// Notified when the task hands the read side to the waiting threads.
    pub(super) handed: Event,
    /// This is the server's only connection and may be led (`Sole`).
    pub(super) published: AtomicBool,
    /// Thrown when the connection ended under a leader.
    pub(super) ended: Arc<AtomicBool>,
}

impl Conn {
    /// Serves `conn` (`blocking`: the transport's blocking view of its stream); `alive` is
    /// held until the task ends: `stop` waits for all of them to drop.
    pub(super) async fn run(
        self: Arc<Self>,
        conn: Connection,
        blocking: Option<Arc<dyn BlockingRead>>,
        alive: Sender<()>,
    ) {
        let span = tracing::debug_span!(
            "connection",
            event = %self.inner.event,
            transport = self.inner.transport.scheme(),
            peer = %conn.peer.address,
            client = %self.info.id,
        );
        self.serve(conn, blocking).instrument(span).await;
        drop(alive);
    }

    async fn serve(self: &Arc<Self>, conn: Connection, blocking: Option<Arc<dyn BlockingRead>>) {
        let Connection { mut reader, writer, .. } = conn;
        // The write half is shared with direct writers (`send_to`, outlet.rs).
        self.shared.outlet.install(writer);
        let (hs_tx, hs_rx) = async_channel::bounded::<Option<Frame>>(1);
        tracing::debug!("client connected");
        self.reads.reset(blocking.is_some());
        let reason = self.race(&mut reader, &hs_tx, &hs_rx, blocking).await;
        // Nobody leads it any more; a leader drops the read side when it lets it go.
        self.inner.sole.removed(self);
        drop(self.reads.retire());
        // Both halves go now: the peer sees end-of-stream at once.
        self.shared.outlet.retire();
        drop(reader);
        drop(self.shared.outlet.take());
        self.shared.close_queue();
        self.inner.remove(self.id, &self.shared, reason);
    }

    /// Runs the reader and the writer until the connection ends; returns why.
    ///
    /// The first to end decides, except when only the writing side stopped
    /// (a failed or stalled write, a slow consumer): then the reader goes on
    /// to end-of-stream, so that every frame the client wrote before it
    /// closed is processed: until end-of-stream, or until no frame came for
    /// `DRAIN_QUIET`, for at most `write_stall_timeout`.
    async fn race(
        self: &Arc<Self>,
        reader: &mut BoxRead,
        hs_tx: &Sender<Option<Frame>>,
        hs_rx: &Receiver<Option<Frame>>,
        blocking: Option<Arc<dyn BlockingRead>>,
    ) -> String {
        let read = self.read_loop(reader, hs_tx, blocking);
        let mut read = std::pin::pin!(read);
        let abort = async {
            let _ = self.abort_rx.recv().await;
            "server stopped".to_owned()
        };
        let mut abort = std::pin::pin!(abort);
        let first = future::or(
            future::or(async { Ended::Read(read.as_mut().await) }, async {
                Ended::Write(self.write_loop(hs_rx).await)
            }),
            async { Ended::Read(abort.as_mut().await) },
        )
        .await;
        match first {
            Ended::Read(reason) | Ended::Write(WriterEnd { reason, read_on: false }) => reason,
            Ended::Write(WriterEnd { reason, read_on: true }) => {
                // Only the writing side stopped: every frame the client wrote before
                // end-of-stream is still read and processed.
                self.write_done.store(true, Ordering::Release);
                self.shared.outlet.retire();
                self.shared.close_queue();
                if let Some(mut w) = self.shared.outlet.take() {
                    // End-of-stream toward the client, after its final ERROR frame.
                    let _ = runtime::timeout(CLOSE_LINGER, w.close()).await;
                }
                // Until end-of-stream, or until the client goes quiet (a client that is not
                // reading may not notice our end-of-stream either), at most write_stall_timeout.
                let bound = self.inner.opts.write_stall_timeout;
                let until = Instant::now() + bound;
                let mut seen = self.frames_read.load(Ordering::Relaxed);
                loop {
                    match runtime::timeout(DRAIN_QUIET, future::or(read.as_mut(), abort.as_mut())).await {
                        Some(end) => break format!("{reason}; then {end}"),
                        None => {
                            let now = self.frames_read.load(Ordering::Relaxed);
                            if now == seen {
                                break format!("{reason}; nothing more came from the client within {DRAIN_QUIET:?}");
                            }
                            if Instant::now() >= until {
                                break format!(
                                    "{reason}; the client did not stop sending within {bound:?} (write_stall_timeout)"
                                );
                            }
                            seen = now;
                        }
                    }
                }
            }
        }
    }

    fn killed(&self) -> bool {
        matches!(self.shared.closing.get(), Some(Closing::SlowConsumer(_) | Closing::Fatal(..)))
    }

    async fn kill_signal(&self) {
        let _ = self.shared.kill_rx.recv().await;
    }

    async fn write_loop(&self, hs_rx: &Receiver<Option<Frame>>) -> WriterEnd {
        let inner = &*self.inner;
        let outlet = &self.shared.outlet;
        let w = &mut outlet.writer();
        let mut st = StallTimer::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut frames = 0u64;
        if let Some(welcome) = self.wait_handshake(hs_rx).await {
            buf.extend_from_slice(welcome.as_bytes());
            frames += 1;
        }
        let mut rest: Vec<u8> = Vec::new();
        loop {
            // Bytes of `buf` that a direct write left (counted as sent there).
            let mut carried = 0;
            let mut flush = false;
            if buf.is_empty() {
                future::or(runtime::wait_until(&self.shared.ready, || self.shared.has_work()), outlet.kicked()).await;
                // Busy before a frame is taken off the queue: no direct write overtakes it.
                let begun = outlet.begin();
                carried = begun.carry.len();
                flush = begun.flush;
                // `buf` is empty here: keep its storage (a chunk's, reused through the
                // queue's spare) rather than replace it, which freed a chunk per batch.
                buf.extend_from_slice(&begun.carry);
            }
            // One chunk of the queue, behind what is in `buf`.
            let taken = self.shared.take(&mut buf);
            frames += taken.frames as u64;
            if self.killed() {
                // Finish the frame a direct write began so the final ERROR stays frame-aligned.
                rest.extend_from_slice(&buf[..carried]);
                break;
            }
            let bytes = match self.write_batch(w, &buf, flush, &mut st, &mut rest).await {
                Ok(bytes) => bytes,
                Err(Halt::Finish) => return self.finish(w, rest, &mut st).await,
                Err(Halt::End(end)) => return end,
            };
            inner.counters.messages_sent.fetch_add(frames, Ordering::Relaxed);
            inner.counters.bytes_sent.fetch_add(bytes.saturating_sub(carried) as u64, Ordering::Relaxed);
            frames = 0;
            buf.clear();
            if buf.capacity() > 2 * CHUNK {
                // A frame larger than a chunk went out: do not keep its storage.
                buf = Vec::new();
            }
            if taken.closed {
                break;
            }
            outlet.end();
        }
        self.finish(w, rest, &mut st).await
    }

    /// Waits until the reader decided between `hello` and legacy: nothing goes out before.
    /// `welcome` is the first frame to send; without one, direct writes may go from now on.
    async fn wait_handshake(&self, hs_rx: &Receiver<Option<Frame>>) -> Option<Frame> {
        let welcome = future::or(async { hs_rx.recv().await.ok().flatten() }, async {
            self.kill_signal().await;
            None
        })
        .await;
        if welcome.is_none() {
            self.shared.outlet.end();
        }
        welcome
    }

    /// Writes the batch `buf` (or only flushes what direct writes left, with `flush`); returns
    /// the bytes written.
    async fn write_batch(
        &self,
        w: &mut OutletWrite<'_>,
        buf: &[u8],
        flush: bool,
        st: &mut StallTimer,
        rest: &mut Vec<u8>,
    ) -> Result<usize, Halt> {
        let stall = self.inner.opts.write_stall_timeout;
        if buf.is_empty() && !flush {
            return Ok(0);
        }
        match write_all(w, buf, stall, st, self.kill_signal()).await {
            Ok(()) => Ok(buf.len()),
            Err(WriteFail::Interrupted { written }) => {
                // Finish the frame in flight so the final ERROR stays frame-aligned.
                rest.extend_from_slice(&buf[written..]);
                Err(Halt::Finish)
            }
            Err(WriteFail::Stalled) => {
                self.inner.counters.slow_consumers.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(?stall, "write stalled: disconnecting slow consumer");
                let why = format!("slow consumer: no write progress for {stall:?}");
                Err(Halt::End(WriterEnd::read_on(why)))
            }
            Err(e @ WriteFail::Io(_)) => Err(Halt::End(WriterEnd::read_on(e.to_string()))),
        }
    }

    /// The end of the writer: `shutdown` after a clean drain, or the final
    /// ERROR frame (best effort, briefly) when the connection is killed.
    async fn finish(&self, w: &mut OutletWrite<'_>, mut rest: Vec<u8>, st: &mut StallTimer) -> WriterEnd {
        let inner = &*self.inner;
        // The rest of a frame a direct write began goes before the final frame.
        rest.extend_from_slice(&self.shared.outlet.retire());
        let (last, linger, end) = match self.shared.closing.get() {
            Some(Closing::SlowConsumer(frame)) => (
                Some(frame.clone()),
                CLOSE_LINGER,
                WriterEnd::read_on("slow consumer: outbound queue overflow".to_owned()),
            ),
            Some(Closing::Fatal(frame, reason)) => (Some(frame.clone()), CLOSE_LINGER, WriterEnd::last(reason.clone())),
            Some(Closing::Shutdown) | None => {
                let shutdown = self.shared.handshaken.load(Ordering::Acquire).then(|| {
                    Control::Shutdown { reason: "server stopped".to_owned() }
                        .to_message(&inner.event, &inner.opts.timezone)
                });
                let frame = shutdown.and_then(|msg| encode_frame(&msg, usize::MAX).ok());
                (frame, STOP_FLUSH, WriterEnd::last("server stopped".to_owned()))
            }
        };
        if let Some(frame) = last {
            rest.extend_from_slice(frame.as_bytes());
        }
        if !rest.is_empty() {
            let _ = runtime::timeout(linger, write_all(w, &rest, linger, st, pending())).await;
        }
        end
    }

    async fn read_loop(
        self: &Arc<Self>,
        r: &mut BoxRead,
        hs_tx: &Sender<Option<Frame>>,
        blocking: Option<Arc<dyn BlockingRead>>,
    ) -> String {
        let opts = &self.inner.opts;
        let fr = FrameReader::new(opts.buffer_size, opts.limits);
        let mut side = Box::new(Reading::new(fr, blocking, hs_tx.clone(), self.ended.clone()));
        let grace = runtime::deadline_after(opts.hello_grace);
        let mut ph = Phase { hs_tx, decided: false, spoke: false, leader: false, held: None, direct: None };
        loop {
            if let Some(ev) = side.held.take() {
                // Held by a leader while the event buffer was full: first, with back-pressure.
                let _ = self.inner.events_tx.send(ev).await;
            }
            let fr = &mut side.fr;
            loop {
                let frame = match fr.next_whole_frame() {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(e) => return self.fatal(&ph, e.error_code(), format!("{e}: connection closed")).await,
                };
                if let Some(end) = self.on_frame(frame, &mut ph).await {
                    return end;
                }
            }
            if !ph.decided && !fr.in_frame() && grace.is_some_and(|g| Instant::now() >= g) {
                self.decide_once(&mut ph, None).await;
            }
            let deadline = match fr.frame_deadline(opts.frame_timeout) {
                Some(d) => Some(d),
                None if !ph.decided => grace,
                None => None,
            };
            let filled = if self.may_lend(&ph, &side) {
                // A thread waiting for events may ask for the read side meanwhile; a request
                // goes first (the thread then reads what is there itself).
                let fr = &mut side.fr;
                let asked = future::or(
                    async {
                        self.reads.wait_wanted().await;
                        None
                    },
                    async { Some(fr.fill(r, deadline).await) },
                );
                match asked.await {
                    Some(filled) => filled,
                    None => {
                        side = match self.lend(side).await {
                            Ok(side) => side,
                            Err(reason) => return reason,
                        };
                        continue;
                    }
                }
            } else {
                side.fr.fill(r, deadline).await
            };
            let fr = &side.fr;
            match filled {
                Ok(Fill::Data) => {}
                Ok(Fill::Eof) if fr.in_frame() => return "connection closed in the middle of a frame".to_owned(),
                Ok(Fill::Eof) => return "connection closed by the client".to_owned(),
                Ok(Fill::Deadline) if fr.in_frame() => {
                    let text = format!(
                        "frame not completed within {:?} (frame_timeout): connection closed",
                        opts.frame_timeout
                    );
                    return self.fatal(&ph, ErrorCode::Protocol, text).await;
                }
                Ok(Fill::Deadline) => {}
                Err(e) => return format!("read failed: {e}"),
            }
        }
    }

    /// One frame from the client (its length header included): the handshake, protocol
    /// control, or a message. `Some` ends the connection, with the reason.
    pub(super) async fn on_frame(&self, frame: &[u8], ph: &mut Phase<'_>) -> Option<String> {
        let inner = &*self.inner;
        let body = &frame[HEADER_LEN..];
        let first = !ph.spoke;
        ph.spoke = true;
        self.frames_read.fetch_add(1, Ordering::Relaxed);
        if !inner.wants_events() {
            // Nobody takes the message as a value (no application listens to the events): it is
            // checked as decoding would check it, not built, and a relay passes the bytes on.
            // Protocol control is decoded below, to be answered.
            match check_body_for(body, &inner.opts.limits, &inner.event).map(|c| c.message_type) {
                Ok(MessageType::Control) => {}
                Ok(_) => {
                    self.decide_once(ph, None).await;
                    self.take_message(frame, None, ph).await;
                    return None;
                }
                Err(e) => return self.malformed(ph, &e).await,
            }
        }
        let msg = match decode_body_for(body, &inner.opts.limits, &inner.event) {
            Ok(msg) => msg,
            Err(e) => return self.malformed(ph, &e).await,
        };
        let control = Control::parse(&msg);
        if first {
            if let Some(Ok(Control::Hello { protocol, client_name })) = control {
                // The same checks whether `hello` came within `hello_grace` or after it.
                if let Err(text) = self.check_hello(protocol, &msg.event_name) {
                    return Some(self.fatal(ph, ErrorCode::Protocol, text).await);
                }
                if ph.decided {
                    // Late: the connection is served as a legacy client's already.
                    self.upgrade(client_name);
                } else {
                    self.decide_once(ph, Some(client_name)).await;
                }
                return None;
            }
        }
        self.decide_once(ph, None).await;
        if let Some(control) = control {
            // Protocol control is answered here and never reaches the application.
            if let Ok(Control::Ping { nonce }) = control {
                let pong = Control::Pong { nonce }.to_message(&inner.event, &inner.opts.timezone);
                if let Ok(f) = encode_frame(&pong, usize::MAX) {
                    self.push_own(f);
                }
            }
            return None;
        }
        self.take_message(frame, Some(msg), ph).await;
        None
    }

    /// A frame that is not a valid message: counted, answered with `malformed`, dropped.
    async fn malformed(&self, ph: &mut Phase<'_>, e: &DecodeError) -> Option<String> {
        self.inner.counters.malformed.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(error = %e, "malformed frame dropped");
        self.decide_once(ph, None).await;
        self.reply(ErrorCode::Malformed, &format!("{e}: frame dropped"));
        None
    }

    /// A message from the client (`msg`: decoded already, or only checked): refused
    /// (`allow_client_send = false`), relayed, and handed to the application.
    async fn take_message(&self, frame: &[u8], msg: Option<SocketMessage>, ph: &mut Phase<'_>) {
        let inner = &*self.inner;
        inner.counters.messages_received.fetch_add(1, Ordering::Relaxed);
        if !inner.opts.allow_client_send {
            self.reply(
                ErrorCode::SendNotAllowed,
                &format!(
                    "server for event {} does not accept messages from clients (allow_client_send = false): message dropped",
                    inner.event
                ),
            );
            return;
        }
        if inner.opts.relay {
            // Re-broadcast the exact bytes received, from the read buffer (copied only
            // into the other clients' queues).
            inner.fan_out(frame, Some(self.id));
        }
        if inner.wants_events() {
            // Checked only, and the application began to listen since: decoded now (it
            // decodes, as the check passed).
            let decoded = || decode_body_for(&frame[HEADER_LEN..], &inner.opts.limits, &inner.event).ok();
            let Some(msg) = msg.or_else(decoded) else { return };
            let ev = ServerEvent::Message { from: ClientId(self.id), message: msg };
            if inner.lossy_events() {
                // Relayed already: the event stream is a side channel that never holds up reading.
                inner.emit_lossy(ev);
            } else if ph.leader {
                if ph.direct.is_none() && ph.held.is_none() && inner.events_rx.is_empty() {
                    // Nothing queued before it: the leader's caller takes it at once.
                    ph.direct = Some(ev);
                    return;
                }
                // The leader is the one that would make room: it never waits for it.
                match inner.events_tx.try_send(ev) {
                    Ok(()) | Err(TrySendError::Closed(_)) => {}
                    Err(TrySendError::Full(ev)) => ph.held = Some(ev),
                }
            } else {
                // The application is the only recipient (or, with
                // `relay_events_backpressure`, a delivery path): back-pressure, nothing lost.
                let _ = inner.events_tx.send(ev).await;
            }
        }
    }

    /// Ends the handshake phase unless it has ended already.
    async fn decide_once(&self, ph: &mut Phase<'_>, hello: Option<Option<String>>) {
        if !ph.decided {
            ph.decided = true;
            self.decide(ph.hs_tx, hello).await;
        }
    }

    /// Why a `hello` (its protocol version and the event it is stamped with) is refused, if it is.
    fn check_hello(&self, protocol: u64, event: &EventName) -> Result<(), String> {
        if protocol != PROTOCOL_VERSION {
            return Err(format!(
                "unsupported protocol version {protocol}: this server speaks version {PROTOCOL_VERSION}"
            ));
        }
        if *event != self.inner.event {
            return Err(format!(
                "hello for event {event} reached the server of event {}: connection closed",
                self.inner.event
            ));
        }
        Ok(())
    }

    /// The `welcome` frame for this client.
    fn welcome_frame(&self) -> Option<Frame> {
        let inner = &*self.inner;
        let welcome = Control::Welcome {
            protocol: PROTOCOL_VERSION,
            client_id: ClientId(self.id).to_string(),
            allow_client_send: inner.opts.allow_client_send,
            event_name: inner.event.to_string(),
            server: SERVER_NAME.to_owned(),
            relay: inner.opts.relay,
        }
        .to_message(&inner.event, &inner.opts.timezone);
        encode_frame(&welcome, usize::MAX).ok()
    }

    /// Ends the handshake phase: `hello` (with its client name) or legacy.
    async fn decide(&self, hs_tx: &Sender<Option<Frame>>, hello: Option<Option<String>>) {
        let inner = &*self.inner;
        let handshaken = hello.is_some();
        let info = inner
            .registry
            .update_info(self.id, |info| {
                if let Some(name) = hello {
                    info.handshaken = true;
                    info.client_name = name;
                }
            })
            .unwrap_or_else(|| self.info.clone());
        let welcome = if handshaken {
            self.shared.handshaken.store(true, Ordering::Release);
            self.welcome_frame()
        } else {
            None
        };
        let _ = hs_tx.try_send(welcome);
        tracing::debug!(handshaken, client_name = info.client_name.as_deref(), "handshake phase over");
        if inner.wants_events() {
            let _ = inner.events_tx.send(ServerEvent::Connected(info)).await;
        }
        // Only now: a `Disconnected` is never reported for an unreported connect.
        self.shared.announced.store(true, Ordering::Release);
    }

    /// A valid `hello` as the first frame of a connection already served as a
    /// legacy client's (it came after `hello_grace`): `welcome` is queued
    /// behind what the connection was sent so far, and the connection is
    /// handshaken from now on (`shutdown` on stop, [`ClientInfo::handshaken`]).
    /// The `Connected` event already went out, with the legacy info.
    fn upgrade(&self, client_name: Option<String>) {
        let Some(welcome) = self.welcome_frame() else { return };
        match self.shared.push_unmetered(welcome.as_bytes()) {
            Ok(()) => {}
            Err(super::registry::Refused::Full(_)) => {
                // The client waits for `welcome` in vain and gives the connection up.
                self.inner.counters.replies_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("late hello left unanswered: the client's outbound queue is full");
                return;
            }
            Err(super::registry::Refused::Closed) => return,
        }
        self.shared.handshaken.store(true, Ordering::Release);
        let info = self.inner.registry.update_info(self.id, |info| {
            info.handshaken = true;
            info.client_name = client_name;
        });
        tracing::debug!(
            client_name = info.as_ref().and_then(|i| i.client_name.as_deref()),
            "late hello: legacy connection upgraded, welcome queued"
        );
    }

    /// Queues a frame for this client only; dropped (and counted in
    /// `ServerStats::replies_dropped`) if its queue is full.
    fn push_own(&self, f: Frame) {
        if let Err(super::registry::Refused::Full(_)) = self.shared.push_unmetered(f.as_bytes()) {
            self.inner.counters.replies_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("reply dropped: the client's outbound queue is full");
        }
    }

    fn reply(&self, code: ErrorCode, text: &str) {
        if let Some(f) = self.inner.error_frame(code, text) {
            self.push_own(f);
        }
    }

    /// A protocol violation: send `code` (best effort) and close. Never
    /// returns; the writer ends the connection after the ERROR frame.
    async fn fatal(&self, ph: &Phase<'_>, code: ErrorCode, text: String) -> String {
        tracing::debug!(%code, reason = %text, "closing connection on a protocol error");
        if !ph.decided {
            let _ = ph.hs_tx.try_send(None);
        }
        match self.inner.error_frame(code, &text) {
            Some(frame) => {
                self.shared.close(Closing::Fatal(frame, text.clone()));
                if self.write_done.load(Ordering::Acquire) {
                    // No writer is left to send the ERROR frame and end the connection.
                    return text;
                }
                pending().await
            }
            None => text,
        }
    }
}
