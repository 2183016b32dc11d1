//! The wire codec: 4-byte big-endian length frames around MessagePack maps.
//!
//! * [`encode_frame`] turns a [`SocketMessage`] into a complete [`Frame`]
//!   (header and body), written with string keys only.
//! * [`decode_body`] turns one frame body back into a message, enforcing the
//!   schema of SPEC §4 (string keys everywhere, known `message_type`, `data`
//!   a map, nesting at most [`Limits::max_depth`], no trailing bytes).
//! * [`FrameDecoder`] cuts an arbitrarily chunked byte stream into frame
//!   bodies, checking each length header before any allocation.

use std::fmt;
use std::sync::Arc;

use rmpv::Value;
use snafu::Snafu;

use crate::control::ErrorCode;
use crate::error::{Error, ErrorKind};
use crate::message::{check_string_keys, Data, EventName, MessageType, SocketMessage};

/// Length of the frame header.
pub const HEADER_LEN: usize = 4;
/// Default largest frame body, in bytes (1 MiB).
pub const DEFAULT_MAX_FRAME_LEN: usize = 1 << 20;
/// Hard ceiling for the configurable frame limit (64 MiB).
pub const MAX_FRAME_LEN_CEILING: usize = 64 << 20;
/// Default deepest nesting of MessagePack containers accepted.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Limits applied by the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame body accepted, in bytes.
    pub max_frame_len: usize,
    /// Deepest nesting of containers accepted (the top-level map counts as 1).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_frame_len: DEFAULT_MAX_FRAME_LEN, max_depth: DEFAULT_MAX_DEPTH }
    }
}

/// Why bytes could not be turned into a message.
#[derive(Debug, Snafu, Clone, PartialEq, Eq)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum DecodeError {
    /// A frame header announced length 0.
    #[snafu(display("frame length is 0: an empty frame is a protocol error"))]
    EmptyFrame,
    /// A frame header announced more than the limit.
    #[snafu(display("frame length {len} exceeds the limit of {max} bytes"))]
    FrameTooLarge {
        /// Announced length.
        len: u64,
        /// Configured limit.
        max: usize,
    },
    /// The body is not a valid message.
    #[snafu(display("malformed message: {reason}"))]
    Malformed {
        /// What is wrong, e.g. `"trailing bytes after the map"`.
        reason: String,
    },
}

impl DecodeError {
    /// The ERROR code a server answers this error with.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            DecodeError::EmptyFrame => ErrorCode::Protocol,
            DecodeError::FrameTooLarge { .. } => ErrorCode::MessageTooLarge,
            DecodeError::Malformed { .. } => ErrorCode::Malformed,
        }
    }

    /// True if the connection must be closed (the stream cannot be trusted any more).
    pub fn is_fatal(&self) -> bool {
        !matches!(self, DecodeError::Malformed { .. })
    }
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        Error::new(ErrorKind::Message, "cannot decode message").with_source(e)
    }
}

fn malformed(reason: impl Into<String>) -> DecodeError {
    DecodeError::Malformed { reason: reason.into() }
}

/// A complete encoded frame (header and body), cheap to clone and share
/// between many connections: a broadcast is encoded once.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame(Arc<[u8]>);

impl Frame {
    /// The whole frame, header included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The body, without the 4-byte header.
    pub fn body(&self) -> &[u8] {
        &self.0[HEADER_LEN..]
    }

    /// Total length in bytes, header included.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a frame has at least a header and a one-byte body.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Wraps a body already encoded, adding the header.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Message`] if the body is empty or larger than `max_frame_len`.
    pub fn from_body(body: &[u8], max_frame_len: usize) -> Result<Frame, Error> {
        check_len(body.len(), max_frame_len)?;
        let mut buf = Vec::with_capacity(HEADER_LEN + body.len());
        buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
        buf.extend_from_slice(body);
        Ok(Frame(buf.into()))
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Frame({} bytes)", self.0.len())
    }
}

fn check_len(len: usize, max: usize) -> Result<(), Error> {
    if len == 0 {
        return Err(DecodeError::EmptyFrame.into());
    }
    if len > max {
        return Err(Error::new(
            ErrorKind::Message,
            format!("message of {len} bytes exceeds the limit of {max} bytes (max_message_size)"),
        ));
    }
    Ok(())
}

/// Encodes the body of `msg` (MessagePack, string keys, named fields).
///
/// # Errors
///
/// [`ErrorKind::Message`] if `data` holds a map with a non-string key.
pub fn encode_body(msg: &SocketMessage, out: &mut Vec<u8>) -> Result<(), Error> {
    for (_, v) in msg.data.iter() {
        check_string_keys(v)?;
    }
    let io = |e: std::io::Error| Error::new(ErrorKind::Message, "cannot encode message").with_source(e);
    rmp::encode::write_map_len(out, 5).map_err(|e| io(e.into()))?;
    rmp::encode::write_str(out, "event_name").map_err(|e| io(e.into()))?;
    rmp::encode::write_str(out, msg.event_name.as_str()).map_err(|e| io(e.into()))?;
    rmp::encode::write_str(out, "timestamp_ms").map_err(|e| io(e.into()))?;
    rmp::encode::write_uint(out, msg.timestamp_ms).map_err(|e| io(e.into()))?;
    rmp::encode::write_str(out, "timestamp_iso").map_err(|e| io(e.into()))?;
    rmp::encode::write_str(out, &msg.timestamp_iso).map_err(|e| io(e.into()))?;
    rmp::encode::write_str(out, "message_type").map_err(|e| io(e.into()))?;
    rmp::encode::write_str(out, msg.message_type.as_str()).map_err(|e| io(e.into()))?;
    rmp::encode::write_str(out, "data").map_err(|e| io(e.into()))?;
    rmp::encode::write_map_len(out, msg.data.len() as u32).map_err(|e| io(e.into()))?;
    for (k, v) in msg.data.iter() {
        rmp::encode::write_str(out, k).map_err(|e| io(e.into()))?;
        rmpv::encode::write_value(out, v).map_err(|e| io(e.into()))?;
    }
    Ok(())
}

/// Encodes `msg` as a complete frame.
///
/// # Errors
///
/// [`ErrorKind::Message`] if the body would exceed `max_frame_len`, or
/// `data` holds a map with a non-string key.
pub fn encode_frame(msg: &SocketMessage, max_frame_len: usize) -> Result<Frame, Error> {
    let mut buf = Vec::with_capacity(128);
    buf.extend_from_slice(&[0; HEADER_LEN]);
    encode_body(msg, &mut buf)?;
    let len = buf.len() - HEADER_LEN;
    check_len(len, max_frame_len)?;
    buf[..HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(Frame(buf.into()))
}

/// Decodes one frame body into a message.
///
/// # Errors
///
/// [`DecodeError::Malformed`] for anything but a valid message: not
/// MessagePack, trailing bytes, nesting deeper than `limits.max_depth`, a
/// non-string key anywhere, invalid UTF-8, a missing or mistyped field, an
/// unknown `message_type`, `data` not a map.
pub fn decode_body(body: &[u8], limits: &Limits) -> Result<SocketMessage, DecodeError> {
    let mut rd = body;
    let value = rmpv::decode::read_value_with_max_depth(&mut rd, limits.max_depth)
        .map_err(|e| malformed(format!("not a valid MessagePack value ({e})")))?;
    if !rd.is_empty() {
        return Err(malformed(format!("{} trailing bytes after the message map", rd.len())));
    }
    message_from_value(value)
}

fn message_from_value(value: Value) -> Result<SocketMessage, DecodeError> {
    let Value::Map(entries) = value else {
        return Err(malformed("top level is not a map"));
    };
    let mut event_name = None;
    let mut timestamp_ms = None;
    let mut timestamp_iso = None;
    let mut message_type = None;
    let mut data = None;
    for (k, v) in entries {
        let Value::String(k) = k else {
            return Err(malformed("top-level map has a non-string key"));
        };
        let Some(k) = k.as_str() else {
            return Err(malformed("top-level key is not valid UTF-8"));
        };
        match k {
            "event_name" => {
                let s = v.as_str().ok_or_else(|| malformed("field event_name is not a UTF-8 string"))?;
                event_name = Some(EventName::new(s).map_err(|e| malformed(format!("field event_name: {e}")))?);
            }
            "timestamp_ms" => {
                timestamp_ms =
                    Some(v.as_u64().ok_or_else(|| malformed("field timestamp_ms is not an unsigned integer"))?);
            }
            "timestamp_iso" => {
                timestamp_iso =
                    Some(v.as_str().ok_or_else(|| malformed("field timestamp_iso is not a UTF-8 string"))?.to_owned());
            }
            "message_type" => {
                let s = v.as_str().ok_or_else(|| malformed("field message_type is not a UTF-8 string"))?;
                message_type =
                    Some(s.parse::<MessageType>().map_err(|_| malformed(format!("unknown message_type {s:?}")))?);
            }
            "data" => {
                data = Some(Data::try_from_value(v).map_err(|e| malformed(format!("field data: {}", e.message())))?);
            }
            _ => check_string_keys(&v).map_err(|_| malformed("a map key is not a string"))?,
        }
    }
    Ok(SocketMessage {
        event_name: event_name.ok_or_else(|| malformed("missing field event_name"))?,
        timestamp_ms: timestamp_ms.ok_or_else(|| malformed("missing field timestamp_ms"))?,
        timestamp_iso: timestamp_iso.ok_or_else(|| malformed("missing field timestamp_iso"))?,
        message_type: message_type.ok_or_else(|| malformed("missing field message_type"))?,
        data: data.ok_or_else(|| malformed("missing field data"))?,
    })
}

/// Cuts a byte stream, fed in chunks of any size, into frame bodies.
///
/// Each length header is checked before its body is buffered: a zero length
/// or a length over the limit is an error at once, and the buffer never
/// grows past one header plus one maximal body plus one read.
///
/// # Examples
///
/// ```
/// use socket_core::codec::{encode_frame, FrameDecoder, Limits, decode_body};
/// use socket_core::{Data, EventName, SocketMessage};
///
/// let msg = SocketMessage::data(EventName::new("demo")?, Data::new().with("n", 1));
/// let frame = encode_frame(&msg, 1 << 20)?;
/// let mut dec = FrameDecoder::new(Limits::default());
/// for byte in frame.as_bytes() {
///     dec.feed(std::slice::from_ref(byte));
/// }
/// let body = dec.next_frame()?.expect("one complete frame");
/// assert_eq!(decode_body(body, &Limits::default())?, msg);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct FrameDecoder {
    limits: Limits,
    buf: Vec<u8>,
    /// Start of unconsumed bytes in `buf`.
    pos: usize,
    /// Set once an error was returned: the stream is out of sync for good.
    failed: bool,
}

impl FrameDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        FrameDecoder { limits, buf: Vec::new(), pos: 0, failed: false }
    }

    /// Appends bytes read from the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// True while part of a frame (a header byte or more) is buffered.
    pub fn in_frame(&self) -> bool {
        self.buffered() > 0
    }

    /// The next complete frame body, if one is buffered.
    ///
    /// The slice is valid until the next call on this decoder.
    ///
    /// # Errors
    ///
    /// [`DecodeError::EmptyFrame`] or [`DecodeError::FrameTooLarge`] from the
    /// header; after an error every later call fails the same way.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, DecodeError> {
        if self.failed {
            return Err(malformed("stream is out of sync after an earlier error"));
        }
        // Compact before a new frame so the buffer stays bounded.
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len == 0 {
            self.failed = true;
            return Err(DecodeError::EmptyFrame);
        }
        if len > self.limits.max_frame_len {
            self.failed = true;
            return Err(DecodeError::FrameTooLarge { len: len as u64, max: self.limits.max_frame_len });
        }
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        self.pos = HEADER_LEN + len;
        Ok(Some(&self.buf[HEADER_LEN..HEADER_LEN + len]))
    }
}
