//! The receive side: the supervisor's reader fills the receive buffer
//! ([`Inbox`](super::inbox::Inbox)) one read at a time, answers `ping`,
//! settles receipts, and notes `shutdown`; data frames stay raw until the
//! consumer decodes them ([`Inner::open`]).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::link::{Link, Sent};
use super::Inner;
use crate::codec::{decode_body, decode_body_for, encode_frame};
use crate::control::{Control, ErrorCode};
use crate::message::SocketMessage;
use crate::transport::BoxRead;
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

/// The reading side of an installed connection, owned by the supervisor.
pub(super) struct LinkReader {
    pub(super) reader: BoxRead,
    pub(super) fr: FrameReader,
    /// Messages read before `welcome` and not yet in the receive buffer.
    pub(super) early: VecDeque<Incoming>,
    pub(super) link: Link,
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

    /// Reads frames into the receive buffer until the connection ends; returns why.
    pub(super) async fn read_frames(&self, lr: &mut LinkReader) -> String {
        const CLOSED: &str = "the client was closed";
        // Data frames of one read, handed to the inbox together; first those read before `welcome`.
        let mut batch: VecDeque<Incoming> = std::mem::take(&mut lr.early);
        let mut read = ReadBatch::default();
        loop {
            // Every raw body of this read fits in what is buffered now.
            let hint = lr.fr.buffered();
            loop {
                let body = match lr.fr.next_frame() {
                    Ok(Some(body)) => body,
                    Ok(None) => break,
                    Err(e) => return format!("the server sent an invalid frame: {e}"),
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
                // What came before this frame is delivered before it is acted on.
                read.drain_into(&mut batch);
                if self.inbox.push_all(&mut batch).await.is_err() {
                    return CLOSED.to_owned();
                }
                match Control::parse(&msg) {
                    Some(Ok(Control::Ping { nonce })) => {
                        let pong = Control::Pong { nonce }.to_message(&self.event, &self.opts.timezone);
                        if let Ok(f) = encode_frame(&pong, usize::MAX) {
                            let _ = self.write_frame(&f, Sent::Other).await;
                        }
                        continue;
                    }
                    Some(Ok(Control::Pong { nonce })) => {
                        // A receipt: everything sent before its `ping` was taken.
                        let mut sh = self.lock();
                        if let Some(i) = sh.receipts.iter().position(|(n, _)| *n == nonce) {
                            let (_, tx) = sh.receipts.swap_remove(i);
                            let _ = tx.try_send(());
                        }
                        continue;
                    }
                    Some(Ok(Control::Shutdown { reason })) => {
                        self.lock().shutdown_reason = Some(reason);
                        continue;
                    }
                    Some(_) => continue,
                    None => {}
                }
                if let Some((ErrorCode::SendNotAllowed, _)) = ErrorCode::parse(&msg) {
                    self.can_send.store(false, Ordering::Release);
                }
                read.decoded(msg);
            }
            read.drain_into(&mut batch);
            if self.inbox.push_all(&mut batch).await.is_err() {
                return CLOSED.to_owned();
            }
            let deadline = lr.fr.frame_deadline(self.opts.frame_timeout);
            match lr.fr.fill(&mut lr.reader, deadline).await {
                Ok(Fill::Data) => {}
                Ok(Fill::Eof) => return "the server closed the connection".to_owned(),
                Ok(Fill::Deadline) => {
                    return format!("the server did not complete a frame within {:?}", self.opts.frame_timeout)
                }
                Err(e) => return format!("read failed: {e}"),
            }
        }
    }
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
