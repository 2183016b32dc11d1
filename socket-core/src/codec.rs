//! The wire codec: 4-byte big-endian length frames around MessagePack maps
//! (see `docs/protocol.md`).
//!
//! * [`encode_frame`] (and [`encode_frame_with`], which also checks the
//!   nesting limit) turns a [`SocketMessage`] into a complete [`Frame`]:
//!   header and body, string keys only, every value in its smallest
//!   encoding, byte for byte what msgpack-python's `packb` writes.
//! * [`decode_body`] turns one frame body back into a message with a small
//!   strict MessagePack reader: string keys everywhere, valid UTF-8, no ext
//!   types, no repeated keys, nesting at most [`Limits::max_depth`], the five
//!   fields with their types, at most [`MAX_UNKNOWN_KEYS`] ignored extra
//!   keys, no trailing bytes. Declared lengths are checked against the bytes
//!   left before anything is allocated; errors name the field or path.
//! * [`FrameDecoder`] cuts an arbitrarily chunked byte stream into frame
//!   bodies, checking each length header before the body is buffered; bytes
//!   can be copied in ([`FrameDecoder::feed`]) or read in place
//!   ([`FrameDecoder::spare`], [`FrameDecoder::commit`]).

use std::fmt;
use std::sync::Arc;

use snafu::Snafu;

use crate::control::ErrorCode;
use crate::error::{Error, ErrorKind};
use crate::message::{EventName, MessageType, SocketMessage};

mod reader;
mod writer;

/// Length of the frame header.
pub const HEADER_LEN: usize = 4;
/// Default largest frame body, in bytes (1 MiB).
pub const DEFAULT_MAX_FRAME_LEN: usize = 1 << 20;
/// Hard ceiling for the configurable frame limit (64 MiB).
pub const MAX_FRAME_LEN_CEILING: usize = 64 << 20;
/// Default deepest nesting of MessagePack containers accepted.
pub const DEFAULT_MAX_DEPTH: usize = 64;
/// Hard ceiling for the nesting limit, the one limit of SPEC §4 shared by the
/// encoder and the decoder: a larger [`Limits::max_depth`] is treated as this
/// value, so nothing the encoder writes is too deep for a default decoder.
pub const MAX_DEPTH_CEILING: usize = DEFAULT_MAX_DEPTH;
/// Most unknown top-level keys a message may carry before it is malformed.
pub const MAX_UNKNOWN_KEYS: usize = reader::MAX_UNKNOWN_KEYS;

/// Limits applied by the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame body accepted, in bytes.
    pub max_frame_len: usize,
    /// Deepest nesting of containers accepted (the top-level map counts as
    /// 1, `data` as 2); values above [`MAX_DEPTH_CEILING`] count as the ceiling.
    pub max_depth: usize,
}

impl Limits {
    fn depth(&self) -> usize {
        self.max_depth.min(MAX_DEPTH_CEILING)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_frame_len: DEFAULT_MAX_FRAME_LEN, max_depth: DEFAULT_MAX_DEPTH }
    }
}

/// Why bytes could not be turned into a message.
///
/// Frame-level errors ([`EmptyFrame`](DecodeError::EmptyFrame),
/// [`FrameTooLarge`](DecodeError::FrameTooLarge)) are fatal: the stream
/// cannot be trusted any more and the connection must be closed. Every other
/// variant describes one well-framed but malformed body: the frame is
/// dropped and the connection kept. Body errors name the field or the path
/// of the offending value (`data.items[3]`); they never include payload
/// values, only (shortened) key names.
#[derive(Debug, Snafu, Clone, PartialEq, Eq)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum DecodeError {
    /// A frame header announced length 0.
    #[snafu(display("frame length is 0: an empty frame is a protocol error"))]
    EmptyFrame,
    /// A frame header announced more than the limit.
    #[snafu(display("frame length {len} exceeds the limit of {max} bytes (max_message_size)"))]
    FrameTooLarge {
        /// Announced length.
        len: u64,
        /// Configured limit.
        max: usize,
    },
    /// The body is not a valid message (generic form; the decoder reports
    /// the specific variants below).
    #[snafu(display("malformed message: {reason}"))]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// The body ends inside a value.
    #[snafu(display("malformed message: the body ends inside a value at byte {offset} ({})", at(path)))]
    UnexpectedEnd {
        /// Offset in the body where more bytes were needed.
        offset: usize,
        /// Path of the value being read.
        path: String,
    },
    /// A string, binary, array or map declares more elements or bytes than
    /// the body has left (checked before anything is allocated).
    #[snafu(display(
        "malformed message: {kind} of length {len} at {} does not fit in the {remaining} bytes left in the body",
        at(path)
    ))]
    LengthExceedsBody {
        /// `"string"`, `"binary"`, `"array"` or `"map"`.
        kind: &'static str,
        /// Declared length.
        len: u64,
        /// Bytes left in the body after the header of the value.
        remaining: usize,
        /// Path of the value.
        path: String,
    },
    /// A byte that is not a MessagePack marker (`0xc1`).
    #[snafu(display(
        "malformed message: byte {byte:#04x} at offset {offset} is not valid MessagePack ({})",
        at(path)
    ))]
    InvalidMarker {
        /// The byte.
        byte: u8,
        /// Its offset in the body.
        offset: usize,
        /// Path of the value being read.
        path: String,
    },
    /// Containers are nested deeper than [`Limits::max_depth`].
    #[snafu(display("malformed message: nesting deeper than {max} levels at {}", at(path)))]
    DepthLimitExceeded {
        /// The limit.
        max: usize,
        /// Path of the container that went too deep.
        path: String,
    },
    /// A map key is not a string.
    #[snafu(display("malformed message: a map key is {found}, not a string, in the map at {}", at(path)))]
    NonStringKey {
        /// What the key is, e.g. `"an integer"`.
        found: &'static str,
        /// Path of the map.
        path: String,
    },
    /// A string (value or key) is not valid UTF-8.
    #[snafu(display("malformed message: invalid UTF-8 in a string at {}", at(path)))]
    InvalidUtf8 {
        /// Path of the string (for a key: of its map).
        path: String,
    },
    /// An ext value (any type, including the timestamp ext -1): refused.
    #[snafu(display("malformed message: ext type {type_id} at {} is not supported", at(path)))]
    ExtType {
        /// The ext type id.
        type_id: i8,
        /// Path of the value (for a key: of its map).
        path: String,
    },
    /// A map repeats a key.
    #[snafu(display("malformed message: key {key:?} appears twice in the map at {}", at(path)))]
    DuplicateKey {
        /// The repeated key (shortened to 32 characters).
        key: String,
        /// Path of the map.
        path: String,
    },
    /// Bytes follow the message map inside the frame.
    #[snafu(display("malformed message: {count} trailing bytes after the message map"))]
    TrailingBytes {
        /// Number of extra bytes.
        count: usize,
    },
    /// The body is a valid value but not a map.
    #[snafu(display("malformed message: the top level is {found}, not a map"))]
    NotAMap {
        /// What the top level is, e.g. `"an array"`.
        found: &'static str,
    },
    /// A required top-level field is missing.
    #[snafu(display("malformed message: missing field {field}"))]
    MissingField {
        /// The field name.
        field: &'static str,
    },
    /// A top-level field has the wrong type.
    #[snafu(display("malformed message: field {field} is {found}, expected {expected}"))]
    WrongType {
        /// The field name.
        field: &'static str,
        /// The type the field must have.
        expected: &'static str,
        /// The type found.
        found: &'static str,
    },
    /// A top-level field has the right type but an invalid value.
    #[snafu(display("malformed message: field {field}: {reason}"))]
    InvalidField {
        /// The field name.
        field: &'static str,
        /// What is wrong with the value.
        reason: String,
    },
    /// More unknown top-level keys than allowed.
    #[snafu(display("malformed message: more than {max} unknown top-level keys"))]
    TooManyUnknownKeys {
        /// The limit.
        max: usize,
    },
}

fn at(path: &str) -> String {
    if path.is_empty() {
        "the top level".to_owned()
    } else {
        format!("`{path}`")
    }
}

/// The `path` of the [`DecodeError`] variants that have one (`&` or `&mut`, as `$e` is).
macro_rules! path_of {
    ($e:expr) => {
        match $e {
            DecodeError::UnexpectedEnd { path, .. }
            | DecodeError::LengthExceedsBody { path, .. }
            | DecodeError::InvalidMarker { path, .. }
            | DecodeError::DepthLimitExceeded { path, .. }
            | DecodeError::NonStringKey { path, .. }
            | DecodeError::InvalidUtf8 { path }
            | DecodeError::ExtType { path, .. }
            | DecodeError::DuplicateKey { path, .. } => Some(path),
            _ => None,
        }
    };
}

impl DecodeError {
    /// The ERROR code a server answers this error with: `protocol` for an
    /// empty frame, `message_too_large` for an oversized one, `malformed`
    /// for any body error.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            DecodeError::EmptyFrame => ErrorCode::Protocol,
            DecodeError::FrameTooLarge { .. } => ErrorCode::MessageTooLarge,
            _ => ErrorCode::Malformed,
        }
    }

    /// True if the connection must be closed (the stream cannot be trusted
    /// any more): only for frame-level errors. A malformed body is dropped
    /// and the connection kept.
    pub fn is_fatal(&self) -> bool {
        matches!(self, DecodeError::EmptyFrame | DecodeError::FrameTooLarge { .. })
    }

    /// The top-level field this error is about, if any (`"event_name"`,
    /// `"data"`, ...). For errors inside `data`, `"data"`.
    pub fn field(&self) -> Option<&str> {
        match self {
            DecodeError::MissingField { field }
            | DecodeError::WrongType { field, .. }
            | DecodeError::InvalidField { field, .. } => Some(field),
            _ => self.path().filter(|p| !p.is_empty()).map(|p| {
                let end = p.find(['.', '[']).unwrap_or(p.len());
                &p[..end]
            }),
        }
    }

    /// The path of the offending value (`""` for the top level), for errors
    /// that have one.
    pub fn path(&self) -> Option<&str> {
        path_of!(self).map(String::as_str)
    }

    fn path_mut(&mut self) -> Option<&mut String> {
        path_of!(self)
    }

    /// Adds `key` in front of the path while the error unwinds out of a map.
    pub(crate) fn under_key(mut self, key: &str) -> Self {
        if let Some(path) = self.path_mut() {
            reader::prepend(path, reader::PathSegment::Key(key));
        }
        self
    }

    /// Adds `[index]` in front of the path while the error unwinds out of an array.
    pub(crate) fn under_index(mut self, index: usize) -> Self {
        if let Some(path) = self.path_mut() {
            reader::prepend(path, reader::PathSegment::Index(index));
        }
        self
    }
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        Error::new(ErrorKind::Message, "cannot decode message").with_source(e)
    }
}

impl From<writer::EncodeError> for Error {
    fn from(e: writer::EncodeError) -> Self {
        Error::new(ErrorKind::Message, "cannot encode message").with_source(e)
    }
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

    /// A frame holding a copy of `frame` (header included, already checked).
    pub(crate) fn copy_of(frame: &[u8]) -> Frame {
        Frame(Arc::from(frame))
    }

    /// How many holders share this frame's bytes.
    #[cfg(all(test, not(any(socket_loom, shuttle))))]
    pub(crate) fn strong_count(&self) -> usize {
        Arc::strong_count(&self.0)
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

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

fn check_len(len: usize, max: usize) -> Result<(), Error> {
    if len == 0 {
        return Err(DecodeError::EmptyFrame.into());
    }
    let max = max.min(u32::MAX as usize);
    if len > max {
        return Err(Error::new(
            ErrorKind::Message,
            format!(
                "message of {len} bytes exceeds the limit of {max} bytes: send less data or raise max_message_size on both ends"
            ),
        ));
    }
    Ok(())
}

/// Encodes the body of `msg` (MessagePack, string keys, named fields) with
/// the nesting ceiling [`MAX_DEPTH_CEILING`].
///
/// The encoding is the smallest for every value, the one msgpack-python's
/// `packb` writes: the five keys in the order `event_name`, `timestamp_ms`,
/// `timestamp_iso`, `message_type`, `data`.
///
/// # Errors
///
/// [`ErrorKind::Message`] if `data` holds a map with a non-string key, a
/// string that is not UTF-8, an ext value, or nesting deeper than the ceiling.
pub fn encode_body(msg: &SocketMessage, out: &mut Vec<u8>) -> Result<(), Error> {
    writer::write_message(out, msg, MAX_DEPTH_CEILING).map_err(Error::from)
}

/// Encodes `msg` as a complete frame, refusing a body larger than
/// `max_frame_len` (nesting is checked against [`MAX_DEPTH_CEILING`]; see
/// [`encode_frame_with`] to check the configured depth too).
///
/// # Errors
///
/// [`ErrorKind::Message`] if the body would exceed `max_frame_len`, or
/// `data` cannot be encoded (see [`encode_body`]).
///
/// # Examples
///
/// ```
/// use socket_core::codec::encode_frame;
/// use socket_core::{Data, EventName, SocketMessage};
///
/// let msg = SocketMessage::data(EventName::new("demo")?, Data::new().with("n", 1));
/// let frame = encode_frame(&msg, 1 << 20)?;
/// assert_eq!(&frame.as_bytes()[..4], &(frame.body().len() as u32).to_be_bytes());
/// # Ok::<(), socket_core::Error>(())
/// ```
pub fn encode_frame(msg: &SocketMessage, max_frame_len: usize) -> Result<Frame, Error> {
    encode_frame_with(msg, &Limits { max_frame_len, max_depth: MAX_DEPTH_CEILING })
}

/// Encodes `msg` as a complete frame, checking both `limits`: what this
/// function accepts, [`decode_body`] with the same limits accepts too.
///
/// # Errors
///
/// [`ErrorKind::Message`] if the body would exceed `limits.max_frame_len`,
/// values are nested deeper than `limits.max_depth`, or `data` cannot be
/// encoded (see [`encode_body`]).
pub fn encode_frame_with(msg: &SocketMessage, limits: &Limits) -> Result<Frame, Error> {
    let mut buf = Vec::with_capacity(128);
    encode_frame_into(msg, limits, &mut buf)?;
    Ok(Frame(buf.into()))
}

/// [`encode_frame_with`] into `buf` (cleared first), so that a caller that
/// keeps `buf` encodes without allocating (the server's broadcast).
pub(crate) fn encode_frame_into(msg: &SocketMessage, limits: &Limits, buf: &mut Vec<u8>) -> Result<(), Error> {
    buf.clear();
    buf.extend_from_slice(&[0; HEADER_LEN]);
    writer::write_message(buf, msg, limits.depth())?;
    let len = buf.len() - HEADER_LEN;
    check_len(len, limits.max_frame_len)?;
    buf[..HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// Decodes one frame body into a message.
///
/// The body must be exactly one MessagePack map with string keys holding
/// the five wire fields; up to [`MAX_UNKNOWN_KEYS`] other top-level keys are
/// validated and ignored. Maps (anywhere) must not repeat a key, strings
/// must be UTF-8, ext values are refused, and containers may nest at most
/// `limits.max_depth` levels (the top-level map is level 1). Every declared
/// length is checked against the bytes left before anything is allocated.
///
/// # Errors
///
/// A body error of [`DecodeError`] (never [`EmptyFrame`](DecodeError::EmptyFrame)
/// or [`FrameTooLarge`](DecodeError::FrameTooLarge)): not MessagePack,
/// trailing bytes, nesting too deep, a non-string key, invalid UTF-8, an
/// ext value, a repeated key, a missing or mistyped field, an unknown
/// `message_type`, `data` not a map, too many unknown keys.
///
/// # Examples
///
/// ```
/// use socket_core::codec::{decode_body, DecodeError, Limits};
///
/// // A map with one integer key: refused, naming the problem.
/// let err = decode_body(&[0x81, 0x01, 0xc0], &Limits::default()).unwrap_err();
/// assert!(matches!(err, DecodeError::NonStringKey { .. }));
/// assert!(!err.is_fatal());
/// ```
pub fn decode_body(body: &[u8], limits: &Limits) -> Result<SocketMessage, DecodeError> {
    reader::decode_message(body, limits.depth(), None)
}

/// [`decode_body`] for a connection that expects messages of `event`: when the
/// body names `event`, the message shares that name (no allocation, no
/// second validation). The result is the same as [`decode_body`]'s.
///
/// # Errors
///
/// See [`decode_body`].
pub fn decode_body_for(body: &[u8], limits: &Limits, event: &EventName) -> Result<SocketMessage, DecodeError> {
    reader::decode_message(body, limits.depth(), Some(event))
}

/// What [`check_body_for`] found in a valid body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Checked {
    /// The message's `message_type`.
    pub message_type: MessageType,
    /// Its `event_name` is the expected event (never with [`check_body`], which expects none).
    pub names_event: bool,
}

/// Checks one frame body exactly as [`decode_body_for`] decodes it, without building the
/// message: every body that one accepts, this accepts, and every body that one refuses, this
/// refuses with the same error. For a caller that needs to know that a message is valid, and
/// its type, but not its content (a relay passing the bytes on as they came). Nothing is
/// allocated for an accepted body that names `event`.
///
/// # Errors
///
/// See [`decode_body`].
///
/// # Examples
///
/// ```
/// use socket_core::codec::{check_body_for, decode_body_for, encode_frame, Limits};
/// use socket_core::{Data, EventName, MessageType, SocketMessage};
///
/// let event = EventName::new("status")?;
/// let frame = encode_frame(&SocketMessage::data(event.clone(), Data::new().with("cpu", 12)), 1 << 20)?;
/// let checked = check_body_for(frame.body(), &Limits::default(), &event)?;
/// assert_eq!((checked.message_type, checked.names_event), (MessageType::Data, true));
///
/// // Cut short: refused, with the error decoding gives.
/// let cut = &frame.body()[..frame.body().len() - 1];
/// let err = check_body_for(cut, &Limits::default(), &event).unwrap_err();
/// assert_eq!(Err(err), decode_body_for(cut, &Limits::default(), &event).map(|_| ()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn check_body_for(body: &[u8], limits: &Limits, event: &EventName) -> Result<Checked, DecodeError> {
    reader::check_message(body, limits.depth(), Some(event))
}

/// [`check_body_for`] without an expected event: [`decode_body`], checking only.
///
/// # Errors
///
/// See [`decode_body`].
pub fn check_body(body: &[u8], limits: &Limits) -> Result<Checked, DecodeError> {
    reader::check_message(body, limits.depth(), None)
}

/// True if `body` is certainly a `data` message by a shallow scan of its
/// top-level keys up to `message_type` (no allocation). A `false` body may
/// still be data (or malformed): decode it to know.
pub(crate) fn is_data_body(body: &[u8]) -> bool {
    reader::peek_message_type(body) == Some(b"data")
}

/// Capacity above which an emptied buffer is released rather than kept.
const KEEP_CAPACITY: usize = 64 << 10;

/// Cuts a byte stream, fed in chunks of any size, into frame bodies.
///
/// Each length header is checked before its body is buffered: a zero length
/// or a length over the limit is an error at once. As long as the caller
/// takes every complete frame ([`next_frame`](Self::next_frame) until it
/// returns `None`) before it feeds more bytes, the buffer never holds more
/// than one header, one maximal body and one fed chunk. Consumed bytes are
/// dropped lazily, when bytes are next added, and a partial frame is moved at
/// most once: many frames in one chunk cost no repeated copying. After a
/// large frame the memory is released once the buffer is empty again.
///
/// Bytes can be fed by copying ([`feed`](Self::feed)) or read straight into
/// the buffer ([`spare`](Self::spare) then [`commit`](Self::commit)).
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
    /// Initialised storage; `buf[pos..filled]` holds the unconsumed bytes.
    buf: Vec<u8>,
    /// Start of unconsumed bytes in `buf`.
    pos: usize,
    /// End of the bytes received; `buf[filled..]` is spare room.
    filled: usize,
    /// Length of the slice last handed out by `spare`.
    spare_len: usize,
    /// Set once an error was returned: the stream is out of sync for good.
    failed: Option<DecodeError>,
}

impl FrameDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        FrameDecoder { limits, buf: Vec::new(), pos: 0, filled: 0, spare_len: 0, failed: None }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Drops consumed bytes: resets an emptied buffer (releasing a large
    /// one), or moves the unconsumed tail (at most one partial frame when
    /// the caller drained the complete ones) to the front.
    fn compact(&mut self) {
        if self.pos == 0 {
            return;
        }
        if self.pos == self.filled {
            if self.buf.len() > KEEP_CAPACITY {
                self.buf = Vec::new();
            }
        } else {
            self.buf.copy_within(self.pos..self.filled, 0);
        }
        self.filled -= self.pos;
        self.pos = 0;
    }

    /// Makes room for `n` more bytes after `filled`: capacity grows by
    /// doubling (amortised), but never past one header, one maximal body and
    /// this chunk, unless the caller left more than that unconsumed.
    fn reserve(&mut self, n: usize) {
        let needed = self.filled + n;
        if needed <= self.buf.capacity() {
            return;
        }
        let bound = (HEADER_LEN + self.limits.max_frame_len).saturating_add(n).max(needed);
        let target = needed.max(self.buf.capacity().saturating_mul(2)).min(bound);
        self.buf.truncate(self.filled);
        self.buf.reserve_exact(target - self.filled);
    }

    /// Appends bytes read from the stream. After an error the stream is
    /// dead: bytes are dropped, never buffered.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        self.compact();
        self.reserve(bytes.len());
        self.buf.truncate(self.filled);
        self.buf.extend_from_slice(bytes);
        self.filled = self.buf.len();
        self.spare_len = 0;
    }

    /// Heap bytes held by the buffer (its capacity).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Room for `n` more bytes at the end of the buffer, to read into
    /// directly (no copy); report how many were written with
    /// [`commit`](Self::commit).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Read;
    /// use socket_core::codec::{FrameDecoder, Limits};
    ///
    /// let mut stream: &[u8] = &[0, 0, 0, 1, 0xc0];
    /// let mut dec = FrameDecoder::new(Limits::default());
    /// let n = stream.read(dec.spare(4096))?;
    /// dec.commit(n);
    /// assert_eq!(dec.next_frame()?, Some(&[0xc0][..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spare(&mut self, n: usize) -> &mut [u8] {
        if self.failed.is_some() {
            // The stream is dead: hand out scratch room, keep nothing.
            self.pos = 0;
            self.filled = 0;
        }
        self.compact();
        let end = self.filled + n;
        if self.buf.len() < end {
            self.reserve(n);
            self.buf.resize(end, 0);
        }
        self.spare_len = n;
        &mut self.buf[self.filled..end]
    }

    /// Marks `n` bytes of the last [`spare`](Self::spare) slice as received.
    ///
    /// # Panics
    ///
    /// If `n` is larger than that slice (a bug in the caller, never caused by input).
    pub fn commit(&mut self, n: usize) {
        assert!(n <= self.spare_len, "FrameDecoder::commit({n}) exceeds the spare slice of {} bytes", self.spare_len);
        if self.failed.is_none() {
            self.filled += n;
        }
        self.spare_len = 0;
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.filled - self.pos
    }

    /// True while part of a frame (a header byte or more) is buffered.
    pub fn in_frame(&self) -> bool {
        self.buffered() > 0
    }

    /// Bytes still needed to complete the frame in progress (at least the
    /// rest of the header), or 0 when a whole frame is buffered. A hint for
    /// how much to read next; `None` after an error.
    pub fn needed(&self) -> Option<usize> {
        if self.failed.is_some() {
            return None;
        }
        let avail = self.buffered();
        if avail < HEADER_LEN {
            return Some(HEADER_LEN - avail);
        }
        let len = self.header_len();
        Some((HEADER_LEN + len.min(self.limits.max_frame_len)).saturating_sub(avail))
    }

    fn header_len(&self) -> usize {
        let h = &self.buf[self.pos..self.pos + HEADER_LEN];
        u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize
    }

    /// The next complete frame body, if one is buffered.
    ///
    /// The slice is valid until the next call on this decoder.
    ///
    /// # Errors
    ///
    /// [`DecodeError::EmptyFrame`] or [`DecodeError::FrameTooLarge`] from the
    /// header, as soon as the header is complete (the body is never
    /// buffered); after an error every later call fails the same way.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, DecodeError> {
        Ok(self.next_whole_frame()?.map(|frame| &frame[HEADER_LEN..]))
    }

    /// The next complete frame, its length header included (what a relay
    /// forwards unchanged), if one is buffered; errors as [`next_frame`](Self::next_frame).
    pub(crate) fn next_whole_frame(&mut self) -> Result<Option<&[u8]>, DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.buffered() < HEADER_LEN {
            return Ok(None);
        }
        let len = self.header_len();
        if len == 0 {
            return Err(self.fail(DecodeError::EmptyFrame));
        }
        if len > self.limits.max_frame_len {
            return Err(self.fail(DecodeError::FrameTooLarge { len: len as u64, max: self.limits.max_frame_len }));
        }
        if self.buffered() < HEADER_LEN + len {
            return Ok(None);
        }
        let start = self.pos;
        self.pos = start + HEADER_LEN + len;
        Ok(Some(&self.buf[start..self.pos]))
    }

    fn fail(&mut self, e: DecodeError) -> DecodeError {
        self.failed = Some(e.clone());
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A relay forwards `next_whole_frame` unchanged: it must be the frame as it came off the
    /// wire, header included, and `next_frame` its body.
    #[test]
    fn a_whole_frame_is_the_wire_bytes_and_next_frame_its_body() {
        let one = Frame::from_body(b"\x80", usize::MAX).unwrap();
        let two = Frame::from_body(b"\x81\xa1k\xa1v", usize::MAX).unwrap();
        let mut wire = one.as_bytes().to_vec();
        wire.extend_from_slice(two.as_bytes());
        wire.extend_from_slice(&[0, 0]); // half a header

        let mut dec = FrameDecoder::new(Limits::default());
        dec.feed(&wire);
        assert_eq!(dec.next_whole_frame().unwrap(), Some(one.as_bytes()));
        assert_eq!(dec.next_frame().unwrap(), Some(two.body()));
        assert_eq!(dec.next_whole_frame().unwrap(), None);
        dec.feed(&[0, 0]);
        assert!(matches!(dec.next_whole_frame(), Err(DecodeError::EmptyFrame)));
        assert!(matches!(dec.next_frame(), Err(DecodeError::EmptyFrame)), "the failure sticks");
    }
}
