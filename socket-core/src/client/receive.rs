//! The receive side: the supervisor's reader fills the receive buffer
//! ([`Inbox`](super::inbox::Inbox)) one read at a time, answers `ping`,
//! settles receipts, and notes `shutdown`; data frames stay raw until the
//! consumer decodes them ([`Inner::open`]).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_lite::future;

use super::link::{Link, Sent};
use super::Inner;
use crate::codec::{decode_body, decode_body_for, encode_frame};
use crate::control::{Control, ErrorCode};
use crate::message::SocketMessage;
use crate::transport::{BlockingRead, BoxRead};
use crate::wire::{Fill, FrameReader};

/// One entry of the receive buffer.
///
/// Data frames stay raw and are decoded by the consumer, on its own thread
/// (decoding runs in parallel with the reader, and the message is allocated
/// and freed on one thread). Frames that may be protocol control or errors
/// are decoded by the reader, which must act on them.
#[derive(Debug)]
pub(super) enum Incoming {
    Raw(Body),
    Decoded(SocketMessage),
}

/// An undecoded frame body: a slice of the chunk that holds every raw body
/// of one read (one allocation per read, not per frame; the chunk is freed
/// with the last body taken from it).
#[derive(Debug)]
pub(super) struct Body {
    pub(super) chunk: Arc<Vec<u8>>,
    pub(super) start: usize,
    pub(super) end: usize,
}

impl Body {
    pub(super) fn bytes(&self) -> &[u8] {
        &self.chunk[self.start..self.end]
    }
}

/// Largest first allocation of a [`ReadBatch`] chunk (the engine's largest read).
pub(super) const CHUNK_HINT_MAX: usize = 64 << 10;

/// The frames of one read on their way to the receive buffer, in order: raw
/// bodies are copied into one chunk, shared once the read is handed over.
#[derive(Debug, Default)]
pub(super) struct ReadBatch {
    chunk: Vec<u8>,
    items: Vec<Pending>,
}

/// An entry of a [`ReadBatch`] before its chunk is shared.
#[derive(Debug)]
enum Pending {
    /// A raw body: `chunk[start..end]`.
    Raw(usize, usize),
    Decoded(SocketMessage),
}

impl ReadBatch {
    /// Copies `body` into the chunk; `capacity_hint` (the bytes buffered by
    /// the read, at most [`CHUNK_HINT_MAX`] used) sizes a new chunk.
    pub(super) fn raw(&mut self, body: &[u8], capacity_hint: usize) {
        if self.chunk.capacity() == 0 {
            self.chunk.reserve(capacity_hint.min(CHUNK_HINT_MAX).max(body.len()));
        }
        let start = self.chunk.len();
        self.chunk.extend_from_slice(body);
        self.items.push(Pending::Raw(start, self.chunk.len()));
    }

    pub(super) fn decoded(&mut self, msg: SocketMessage) {
        self.items.push(Pending::Decoded(msg));
    }

    /// Appends the batch, if not empty, to `steps` as one [`Step::Deliver`]; leaves it empty.
    fn deliver_into(&mut self, steps: &mut Vec<Step>) {
        if self.items.is_empty() {
            return;
        }
        let mut out = VecDeque::with_capacity(self.items.len());
        self.drain_into(&mut out);
        steps.push(Step::Deliver(out));
    }

    /// Appends the batch to `out` as receive-buffer entries; leaves it empty.
    pub(super) fn drain_into(&mut self, out: &mut VecDeque<Incoming>) {
        if self.items.is_empty() {
            return;
        }
        // A chunk lives as long as its last unread body: no room kept beyond
        // what the bodies need (a hint can overshoot when a large frame is
        // still being read).
        if self.chunk.capacity() > 2 * self.chunk.len() + 4096 {
            self.chunk.shrink_to_fit();
        }
        let chunk = Arc::new(std::mem::take(&mut self.chunk));
        out.extend(self.items.drain(..).map(|item| match item {
            Pending::Raw(start, end) => Incoming::Raw(Body { chunk: Arc::clone(&chunk), start, end }),
            Pending::Decoded(msg) => Incoming::Decoded(msg),
        }));
    }
}

/// True if `body` may carry `message_type` `control` or `error` (anything a
/// shallow scan does not show to be `data`; a false positive only means the
/// frame is decoded on the reader side).
pub(super) fn may_be_protocol(body: &[u8]) -> bool {
    !crate::codec::is_data_body(body)
}

/// The reading side of an installed connection: the supervisor's, or a blocking
/// receiver's while it reads (`client/lead.rs`).
pub(super) struct LinkReader {
    pub(super) reader: BoxRead,
    pub(super) fr: FrameReader,
    /// Messages read before `welcome` and not yet in the receive buffer.
    pub(super) early: VecDeque<Incoming>,
    pub(super) link: Link,
    /// The transport's blocking view of the same stream, when it gives one: a blocking
    /// `receive` may then read on its own thread (`client/lead.rs`).
    pub(super) blocking: Option<Arc<dyn BlockingRead>>,
}

impl std::fmt::Debug for LinkReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkReader")
            .field("link", &self.link)
            .field("shared", &self.blocking.is_some())
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// The message of a receive-buffer entry; `None` (logged) for a malformed frame.
    pub(super) fn open(&self, item: Incoming) -> Option<SocketMessage> {
        match item {
            Incoming::Decoded(m) => Some(m),
            Incoming::Raw(body) => match decode_body_for(body.bytes(), &self.opts.limits, &self.event) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::warn!(event = %self.event, error = %e, "malformed frame from the server dropped");
                    None
                }
            },
        }
    }

    /// Takes every complete frame buffered in `lr` apart, in wire order, into `steps`: data
    /// bodies stay raw (the bodies of one read share one chunk), frames that may be protocol
    /// are decoded here because the reader acts on them. What came before a protocol frame is
    /// delivered before it is acted on. `Err` when the server sent an invalid frame (what came
    /// before it is still in `steps`).
    pub(super) fn take_frames(&self, lr: &mut LinkReader, steps: &mut Vec<Step>) -> Result<(), String> {
        // Every raw body of this read fits in what is buffered now.
        let hint = lr.fr.buffered();
        let mut read = ReadBatch::default();
        let result = loop {
            let body = match lr.fr.next_frame() {
                Ok(Some(body)) => body,
                Ok(None) => break Ok(()),
                Err(e) => break Err(format!("the server sent an invalid frame: {e}")),
            };
            if !may_be_protocol(body) {
                read.raw(body, hint);
                continue;
            }
            let msg = match decode_body(body, &self.opts.limits) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(event = %self.event, error = %e, "malformed frame from the server dropped");
                    continue;
                }
            };
            let step = match Control::parse(&msg) {
                Some(Ok(Control::Ping { nonce })) => Step::Ping(nonce),
                Some(Ok(Control::Pong { nonce })) => Step::Pong(nonce),
                Some(Ok(Control::Shutdown { reason })) => Step::Shutdown(reason),
                Some(_) => continue,
                None => {
                    if let Some((ErrorCode::SendNotAllowed, _)) = ErrorCode::parse(&msg) {
                        self.can_send.store(false, Ordering::Release);
                    }
                    read.decoded(msg);
                    continue;
                }
            };
            read.deliver_into(steps);
            steps.push(step);
        };
        read.deliver_into(steps);
        result
    }

    /// Acts on a protocol step (not [`Step::Deliver`]); a `ping` is answered with `pong`.
    pub(super) async fn act(&self, step: Step) {
        match step {
            Step::Deliver(_) => {}
            Step::Ping(nonce) => {
                let pong = Control::Pong { nonce }.to_message(&self.event, &self.opts.timezone);
                if let Ok(f) = encode_frame(&pong, usize::MAX) {
                    let _ = self.write_frame(&f, Sent::Other).await;
                }
            }
            Step::Pong(nonce) => {
                // A receipt: everything sent before its `ping` was taken.
                let mut sh = self.lock();
                if let Some(i) = sh.receipts.iter().position(|(n, _)| *n == nonce) {
                    let (_, tx) = sh.receipts.swap_remove(i);
                    let _ = tx.try_send(());
                }
            }
            Step::Shutdown(reason) => self.lock().shutdown_reason = Some(reason),
        }
    }

    /// Reads frames into the receive buffer until the connection ends, or until a blocking
    /// `receive` asks to read on its own thread (only at a point where everything read is
    /// delivered: see `client/lead.rs`).
    pub(super) async fn read_frames(&self, lr: &mut LinkReader) -> ReadEnd {
        const CLOSED: &str = "the client was closed";
        let mut steps = Vec::new();
        // First the messages read before `welcome`.
        let early = std::mem::take(&mut lr.early);
        if !early.is_empty() {
            steps.push(Step::Deliver(early));
        }
        loop {
            let taken = self.take_frames(lr, &mut steps);
            for step in steps.drain(..) {
                match step {
                    Step::Deliver(mut batch) => {
                        if self.inbox.push_all(&mut batch).await.is_err() {
                            return ReadEnd::Ended(CLOSED.to_owned());
                        }
                    }
                    other => self.act(other).await,
                }
            }
            if let Err(reason) = taken {
                return ReadEnd::Ended(reason);
            }
            let shared = lr.blocking.is_some();
            if shared && self.reads.wanted() {
                return ReadEnd::Handover;
            }
            let deadline = lr.fr.frame_deadline(self.opts.frame_timeout);
            let fill = lr.fr.fill(&mut lr.reader, deadline);
            let filled = if shared {
                match future::or(async { Some(fill.await) }, async {
                    self.reads.wait_wanted().await;
                    None
                })
                .await
                {
                    Some(filled) => filled,
                    // Nothing is half-read: the frame reader keeps what it has.
                    None => return ReadEnd::Handover,
                }
            } else {
                fill.await
            };
            match filled {
                Ok(Fill::Data) => {}
                Ok(Fill::Eof) => return ReadEnd::Ended(SERVER_CLOSED.to_owned()),
                // The only deadline here is the frame's.
                Ok(Fill::Deadline) => return ReadEnd::Ended(self.frame_unfinished()),
                Err(e) => return ReadEnd::Ended(read_failed(&e)),
            }
        }
    }
}

/// Why a connection ended at end-of-stream.
pub(super) const SERVER_CLOSED: &str = "the server closed the connection";

/// Why a connection ended when its death switch was thrown by a failed write.
pub(super) const WRITE_FAILED: &str = "a write to the server failed";

/// Why a connection ended on a failed read.
pub(super) fn read_failed(e: &std::io::Error) -> String {
    format!("read failed: {e}")
}

impl Inner {
    /// Why a connection ended when a frame was not completed in time.
    pub(super) fn frame_unfinished(&self) -> String {
        format!("the server did not complete a frame within {:?}", self.opts.frame_timeout)
    }
}

/// What one pass over the buffered frames asks for, in wire order ([`Inner::take_frames`]).
#[derive(Debug)]
pub(super) enum Step {
    /// Entries for the receive buffer.
    Deliver(VecDeque<Incoming>),
    /// The server's `ping`: answer `pong`.
    Ping(u64),
    /// A receipt (`pong`): everything sent before its `ping` was taken.
    Pong(u64),
    /// The server announced its shutdown.
    Shutdown(String),
}

/// How the supervisor's reading of a connection ended.
#[derive(Debug)]
pub(super) enum ReadEnd {
    /// The connection ended: why.
    Ended(String),
    /// A blocking `receive` reads on its own thread from now on; everything read so far is
    /// delivered.
    Handover,
}

/// Reads and discards until end-of-stream: the end of a lingering close.
pub(super) async fn drain(reader: &mut BoxRead) -> std::result::Result<(), String> {
    let mut sink = vec![0u8; 16 << 10];
    loop {
        match futures_lite::AsyncReadExt::read(reader, &mut sink).await {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Result;
    use crate::message::EventName;
    use crate::Data;

    #[test]
    pub(super) fn a_read_batch_shares_one_chunk_and_keeps_the_frame_order() -> Result<()> {
        let event = EventName::new("t")?;
        let mut read = ReadBatch::default();
        read.raw(b"first", 100);
        read.decoded(SocketMessage::data(event.clone(), Data::new().with("n", 2)));
        read.raw(b"third", 100);
        let mut out = VecDeque::new();
        read.drain_into(&mut out);
        assert!(read.items.is_empty() && read.chunk.capacity() == 0, "the batch is left empty");
        let got: Vec<_> = out.iter().collect();
        let (Incoming::Raw(a), Incoming::Decoded(m), Incoming::Raw(c)) = (got[0], got[1], got[2]) else {
            panic!("order lost: {got:?}");
        };
        assert_eq!((a.bytes(), c.bytes()), (&b"first"[..], &b"third"[..]));
        assert_eq!(m.data.get("n").and_then(|v| v.as_u64()), Some(2));
        assert!(Arc::ptr_eq(&a.chunk, &c.chunk), "one allocation per read");
        // A hint far above what the bodies need is not kept alive with them.
        read.raw(b"small", 60_000);
        read.drain_into(&mut out);
        let Some(Incoming::Raw(small)) = out.back() else { panic!("no raw body") };
        assert!(small.chunk.capacity() < 4096 + 10, "chunk kept {} bytes", small.chunk.capacity());
        // Nothing to hand over: no entry, no allocation.
        read.drain_into(&mut out);
        assert_eq!(out.len(), 4);
        Ok(())
    }

    #[test]
    pub(super) fn only_data_frames_skip_the_reader_side_decode() -> Result<()> {
        let event = EventName::new("t")?;
        let tz = jiff::tz::TimeZone::UTC;
        let data = SocketMessage::data(event.clone(), crate::Data::new().with("message_type", "control"));
        assert!(!may_be_protocol(encode_frame(&data, usize::MAX)?.body()));
        let ping = Control::Ping { nonce: 1 }.to_message(&event, &tz);
        assert!(may_be_protocol(encode_frame(&ping, usize::MAX)?.body()));
        assert!(may_be_protocol(b"\x81"));
        assert!(may_be_protocol(b""));
        Ok(())
    }
}
