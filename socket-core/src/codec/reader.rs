//! A small, strict MessagePack reader over one frame body.
//!
//! It replaces a general-purpose decoder because the wire format needs
//! guarantees such a decoder does not give:
//!
//! * every declared length (container, string, binary) is checked against
//!   the bytes left in the body **before** anything is allocated, and no
//!   container pre-allocates more than [`PREALLOC_CAP`] slots, so a header
//!   claiming 2^32-1 elements costs nothing and a chain of nested headers
//!   cannot multiply allocations;
//! * nesting is limited (the top-level map is depth 1), and the recursion is
//!   bounded by that limit, never by the input;
//! * map keys are strings everywhere, strings are valid UTF-8, ext types are
//!   refused, a map never repeats a key;
//! * the top-level map is read straight into a [`SocketMessage`]: the five
//!   known keys are compared as bytes, without allocating.
//!
//! Errors carry the path of the offending value (`data.items[3]`), built
//! only while an error unwinds.

use std::collections::HashSet;

use rmpv::Value;

use super::{Checked, DecodeError};
use crate::message::{Data, EventName, MessageType, SocketMessage};

/// Most slots a container pre-allocates before its elements are read.
const PREALLOC_CAP: usize = 64;

/// Maps with more entries than this check repeated keys with a hash set.
const LINEAR_DUP_CHECK: usize = 16;

/// Most unknown top-level keys a message may carry.
pub(super) const MAX_UNKNOWN_KEYS: usize = 16;

/// Longest path kept in an error, in bytes.
const MAX_PATH_LEN: usize = 160;

/// A value header: the marker and, for variable-length types, the length.
#[derive(Debug, Clone, Copy)]
enum Head {
    Nil,
    Bool(bool),
    UInt(u64),
    Int(i64),
    F32(f32),
    F64(f64),
    Str(usize),
    Bin(usize),
    Array(usize),
    Map(usize),
    /// An ext value with its type id (refused).
    Ext(i8),
}

impl Head {
    fn type_name(self) -> &'static str {
        match self {
            Head::Nil => "nil",
            Head::Bool(_) => "a boolean",
            Head::UInt(_) | Head::Int(_) => "an integer",
            Head::F32(_) | Head::F64(_) => "a float",
            Head::Str(_) => "a string",
            Head::Bin(_) => "binary data",
            Head::Array(_) => "an array",
            Head::Map(_) => "a map",
            Head::Ext(_) => "an ext value",
        }
    }
}

/// Decodes one frame body into a message.
pub(super) fn decode_message(
    body: &[u8],
    max_depth: usize,
    known: Option<&EventName>,
) -> Result<SocketMessage, DecodeError> {
    let mut rd = Reader { buf: body, pos: 0, max_depth, known };
    let msg = rd.message()?;
    if rd.pos != body.len() {
        return Err(DecodeError::TrailingBytes { count: body.len() - rd.pos });
    }
    Ok(msg)
}

/// Checks one frame body exactly as [`decode_message`] decodes it (every input gets the same
/// `Ok` or the same error) without building the message. Nothing is allocated unless the
/// body is refused or it names an event other than `known` (`tests::check_agrees_with_decode`).
pub(super) fn check_message(body: &[u8], max_depth: usize, known: Option<&EventName>) -> Result<Checked, DecodeError> {
    let mut rd = Reader { buf: body, pos: 0, max_depth, known };
    let checked = rd.check()?;
    if rd.pos != body.len() {
        return Err(DecodeError::TrailingBytes { count: body.len() - rd.pos });
    }
    Ok(checked)
}

/// The raw `message_type` value of `body`, found by a shallow scan of the
/// top-level map that stops at the first container value; `None` when the
/// scan cannot tell (nothing is validated or allocated: the caller decodes
/// the body properly later).
///
/// The client's reader runs this on every frame, so it is a small scanner of
/// its own (`Option`s, no [`DecodeError`]s): it accepts exactly what a scan
/// with [`Reader::head`] would (`tests::peek_matches_the_reader_based_scan`).
pub(super) fn peek_message_type(body: &[u8]) -> Option<&[u8]> {
    let mut p = Peek { buf: body, pos: 0 };
    let marker = p.byte()?;
    let len = match marker {
        0x80..=0x8f => usize::from(marker & 0x0f),
        0xde => p.uint(2)?,
        0xdf => p.uint(4)?,
        _ => return None,
    };
    // As the decoder: a map cannot announce more entries than 2 bytes each could hold.
    if len.saturating_mul(2) > body.len() - p.pos {
        return None;
    }
    for _ in 0..len {
        let key = match p.byte()? {
            m @ 0xa0..=0xbf => p.take(usize::from(m & 0x1f))?,
            0xd9 => p.sized(1)?,
            0xda => p.sized(2)?,
            0xdb => p.sized(4)?,
            _ => return None,
        };
        let value = p.value()?;
        if key == b"message_type" {
            return value;
        }
    }
    None
}

/// The cursor of [`peek_message_type`].
struct Peek<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Peek<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let bytes = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(bytes)
    }

    /// A big-endian unsigned integer of `n` bytes.
    fn uint(&mut self, n: usize) -> Option<usize> {
        let bytes = self.take(n)?;
        Some(bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b)))
    }

    /// Bytes preceded by an `n`-byte length.
    fn sized(&mut self, n: usize) -> Option<&'a [u8]> {
        let len = self.uint(n)?;
        self.take(len)
    }

    /// A top-level value: `Some(Some(bytes))` for a string or binary,
    /// `Some(None)` for any other scalar (skipped), `None` for a container,
    /// an extension, an invalid marker or a truncated body (the scan stops).
    fn value(&mut self) -> Option<Option<&'a [u8]>> {
        let marker = self.byte()?;
        let skip = match marker {
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => 0,
            0xa0..=0xbf => return self.take(usize::from(marker & 0x1f)).map(Some),
            0xc4 | 0xd9 => return self.sized(1).map(Some),
            0xc5 | 0xda => return self.sized(2).map(Some),
            0xc6 | 0xdb => return self.sized(4).map(Some),
            0xcc | 0xd0 => 1,
            0xcd | 0xd1 => 2,
            0xca | 0xce | 0xd2 => 4,
            0xcb | 0xcf | 0xd3 => 8,
            // Containers, extensions, 0xc1.
            _ => return None,
        };
        self.take(skip)?;
        Some(None)
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    max_depth: usize,
    /// An event name to share (no allocation, no validation) when the bytes match.
    known: Option<&'a EventName>,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn end(&self) -> DecodeError {
        DecodeError::UnexpectedEnd { offset: self.pos, path: String::new() }
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or_else(|| self.end())?;
        self.pos += 1;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.buf.get(self.pos..self.pos + N).ok_or_else(|| self.end())?;
        self.pos += N;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        // Callers already checked `n` against the remaining bytes (see `head`).
        let bytes = self.buf.get(self.pos..self.pos + n).ok_or_else(|| self.end())?;
        self.pos += n;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<usize, DecodeError> {
        Ok(usize::from(self.byte()?))
    }

    fn u16(&mut self) -> Result<usize, DecodeError> {
        Ok(usize::from(u16::from_be_bytes(self.array()?)))
    }

    fn u32(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from(u32::from_be_bytes(self.array()?)))
    }

    /// Checks a declared length against the bytes left (`min_size` bytes per
    /// element at least) before anything is allocated for it.
    fn checked_len(&self, kind: &'static str, len: u64, min_size: u64) -> Result<usize, DecodeError> {
        let remaining = self.remaining();
        if len.saturating_mul(min_size) > remaining as u64 {
            return Err(DecodeError::LengthExceedsBody { kind, len, remaining, path: String::new() });
        }
        // `len <= remaining`, so it fits in usize.
        Ok(len as usize)
    }

    fn str_len(&self, len: u64) -> Result<Head, DecodeError> {
        Ok(Head::Str(self.checked_len("string", len, 1)?))
    }

    fn bin_len(&self, len: u64) -> Result<Head, DecodeError> {
        Ok(Head::Bin(self.checked_len("binary", len, 1)?))
    }

    fn array_len(&self, len: u64) -> Result<Head, DecodeError> {
        Ok(Head::Array(self.checked_len("array", len, 1)?))
    }

    fn map_len(&self, len: u64) -> Result<Head, DecodeError> {
        Ok(Head::Map(self.checked_len("map", len, 2)?))
    }

    fn ext(&mut self, len: u64) -> Result<Head, DecodeError> {
        let type_id = self.byte()? as i8;
        // Refused anyway; the length only matters for the error's accuracy.
        let _ = len;
        Ok(Head::Ext(type_id))
    }

    /// Reads a marker and its length bytes; lengths are checked, payloads not read yet.
    fn head(&mut self) -> Result<Head, DecodeError> {
        let start = self.pos;
        let marker = self.byte()?;
        Ok(match marker {
            0x00..=0x7f => Head::UInt(u64::from(marker)),
            0x80..=0x8f => self.map_len(u64::from(marker & 0x0f))?,
            0x90..=0x9f => self.array_len(u64::from(marker & 0x0f))?,
            0xa0..=0xbf => self.str_len(u64::from(marker & 0x1f))?,
            0xc0 => Head::Nil,
            0xc1 => return Err(DecodeError::InvalidMarker { byte: marker, offset: start, path: String::new() }),
            0xc2 => Head::Bool(false),
            0xc3 => Head::Bool(true),
            0xc4 => {
                let n = self.u8()?;
                self.bin_len(n as u64)?
            }
            0xc5 => {
                let n = self.u16()?;
                self.bin_len(n as u64)?
            }
            0xc6 => {
                let n = self.u32()?;
                self.bin_len(n)?
            }
            0xc7 => {
                let n = self.u8()?;
                self.ext(n as u64)?
            }
            0xc8 => {
                let n = self.u16()?;
                self.ext(n as u64)?
            }
            0xc9 => {
                let n = self.u32()?;
                self.ext(n)?
            }
            0xca => Head::F32(f32::from_be_bytes(self.array()?)),
            0xcb => Head::F64(f64::from_be_bytes(self.array()?)),
            0xcc => Head::UInt(u64::from(self.byte()?)),
            0xcd => Head::UInt(u64::from(u16::from_be_bytes(self.array()?))),
            0xce => Head::UInt(u64::from(u32::from_be_bytes(self.array()?))),
            0xcf => Head::UInt(u64::from_be_bytes(self.array()?)),
            0xd0 => Head::Int(i64::from(self.byte()? as i8)),
            0xd1 => Head::Int(i64::from(i16::from_be_bytes(self.array()?))),
            0xd2 => Head::Int(i64::from(i32::from_be_bytes(self.array()?))),
            0xd3 => Head::Int(i64::from_be_bytes(self.array()?)),
            0xd4..=0xd8 => self.ext(1 << (marker - 0xd4))?,
            0xd9 => {
                let n = self.u8()?;
                self.str_len(n as u64)?
            }
            0xda => {
                let n = self.u16()?;
                self.str_len(n as u64)?
            }
            0xdb => {
                let n = self.u32()?;
                self.str_len(n)?
            }
            0xdc => {
                let n = self.u16()?;
                self.array_len(n as u64)?
            }
            0xdd => {
                let n = self.u32()?;
                self.array_len(n)?
            }
            0xde => {
                let n = self.u16()?;
                self.map_len(n as u64)?
            }
            0xdf => {
                let n = self.u32()?;
                self.map_len(n)?
            }
            0xe0..=0xff => Head::Int(i64::from(marker as i8)),
        })
    }

    /// The fast path of the commonest header: a whole fixstr (up to 31 bytes,
    /// every key of the wire format) at the position, taken; `None` for
    /// anything else, including a truncated fixstr, which the general path
    /// ([`head`](Self::head)) then reads and reports.
    fn fixstr(&mut self) -> Option<&'a [u8]> {
        let marker = *self.buf.get(self.pos)?;
        if !(0xa0..=0xbf).contains(&marker) {
            return None;
        }
        let start = self.pos + 1;
        let bytes = self.buf.get(start..start + usize::from(marker & 0x1f))?;
        self.pos = start + bytes.len();
        Some(bytes)
    }

    fn str_body(&mut self, len: usize) -> Result<&'a str, DecodeError> {
        let bytes = self.take(len)?;
        utf8(bytes)
    }

    /// Reads a map key: a string, or an error naming what was found.
    fn key(&mut self) -> Result<&'a str, DecodeError> {
        let bytes = self.key_bytes()?;
        utf8(bytes)
    }

    /// Reads a map key's bytes, not yet checked as UTF-8 (a known key is
    /// compared as bytes: ASCII bytes that match are valid).
    fn key_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        if let Some(bytes) = self.fixstr() {
            return Ok(bytes);
        }
        match self.head()? {
            Head::Str(len) => self.take(len),
            Head::Ext(type_id) => Err(DecodeError::ExtType { type_id, path: String::new() }),
            other => Err(DecodeError::NonStringKey { found: other.type_name(), path: String::new() }),
        }
    }

    fn enter(&self, depth: usize) -> Result<usize, DecodeError> {
        let depth = depth + 1;
        if depth > self.max_depth {
            return Err(DecodeError::DepthLimitExceeded { max: self.max_depth, path: String::new() });
        }
        Ok(depth)
    }

    /// Reads any value; `depth` is the depth of the container holding it. With `BUILD` false
    /// the value is only checked (the same errors in the same order) and `Nil` stands for it:
    /// nothing is allocated.
    fn value<const BUILD: bool>(&mut self, depth: usize) -> Result<Value, DecodeError> {
        let head = self.head()?;
        self.value_from::<BUILD>(head, depth)
    }

    fn value_from<const BUILD: bool>(&mut self, head: Head, depth: usize) -> Result<Value, DecodeError> {
        // Without `BUILD`, the containers stay empty (`Vec::new` allocates nothing).
        let cap = |len: usize| if BUILD { len.min(PREALLOC_CAP) } else { 0 };
        Ok(match head {
            Head::Nil => Value::Nil,
            Head::Bool(b) => Value::Boolean(b),
            Head::UInt(n) => Value::from(n),
            Head::Int(n) => Value::from(n),
            Head::F32(f) => Value::F32(f),
            Head::F64(f) => Value::F64(f),
            Head::Str(len) => {
                let s = self.str_body(len)?;
                if BUILD {
                    Value::from(s)
                } else {
                    Value::Nil
                }
            }
            Head::Bin(len) => {
                let b = self.take(len)?;
                if BUILD {
                    Value::Binary(b.to_vec())
                } else {
                    Value::Nil
                }
            }
            Head::Ext(type_id) => return Err(DecodeError::ExtType { type_id, path: String::new() }),
            Head::Array(len) => {
                let depth = self.enter(depth)?;
                let mut items = Vec::with_capacity(cap(len));
                for i in 0..len {
                    let item = self.value::<BUILD>(depth).map_err(|e| e.under_index(i))?;
                    if BUILD {
                        items.push(item);
                    }
                }
                Value::Array(items)
            }
            Head::Map(len) => {
                let depth = self.enter(depth)?;
                let mut entries: Vec<(Value, Value)> = Vec::with_capacity(cap(len));
                self.entries::<BUILD>(len, depth, |key, value| entries.push((Value::from(key), value)))?;
                Value::Map(entries)
            }
        })
    }

    /// The `len` entries of a map whose values sit at `depth`: string keys, none repeated, the
    /// values read; with `BUILD`, each entry goes to `keep`. The keys a linear duplicate check
    /// compares with stay on the stack.
    fn entries<const BUILD: bool>(
        &mut self,
        len: usize,
        depth: usize,
        mut keep: impl FnMut(&'a str, Value),
    ) -> Result<(), DecodeError> {
        let mut keys = [""; LINEAR_DUP_CHECK];
        let mut seen = Seen::new(len);
        for i in 0..len {
            let key = self.key()?;
            // Linear only while `len <= LINEAR_DUP_CHECK`, so `i` indexes `keys`.
            seen.check(key, || keys[..i.min(LINEAR_DUP_CHECK)].iter().copied())?;
            let value = self.value::<BUILD>(depth).map_err(|e| e.under_key(key))?;
            if let Some(slot) = keys.get_mut(i) {
                *slot = key;
            }
            if BUILD {
                keep(key, value);
            }
        }
        Ok(())
    }

    /// Reads the `data` map (depth 2) straight into a [`Data`] (left empty without `BUILD`).
    fn data<const BUILD: bool>(&mut self, len: usize) -> Result<Data, DecodeError> {
        let depth = self.enter(1)?;
        let mut entries: Vec<(String, Value)> = Vec::with_capacity(if BUILD { len.min(PREALLOC_CAP) } else { 0 });
        self.entries::<BUILD>(len, depth, |key, value| entries.push((key.to_owned(), value)))?;
        Ok(Data::from_unique_entries(entries))
    }

    /// Reads a top-level field that must be a string.
    fn str_field(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let bytes = self.str_field_bytes(field)?;
        utf8(bytes).map_err(|e| e.under_key(field))
    }

    /// Reads a top-level field that must be a string, without checking its
    /// bytes as UTF-8 (the caller compares them first, or checks them).
    fn str_field_bytes(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if let Some(bytes) = self.fixstr() {
            return Ok(bytes);
        }
        match self.field_head(field)? {
            Head::Str(len) => self.take(len).map_err(|e| e.under_key(field)),
            other => Err(DecodeError::WrongType { field, expected: "a string", found: other.type_name() }),
        }
    }

    /// Reads the header of a top-level field's value; errors name the field.
    fn field_head(&mut self, field: &'static str) -> Result<Head, DecodeError> {
        self.head().map_err(|e| e.under_key(field))
    }

    fn message(&mut self) -> Result<SocketMessage, DecodeError> {
        let f = self.fields::<true>()?;
        Ok(SocketMessage {
            // Always built with `BUILD`.
            event_name: f.event_name.ok_or(DecodeError::MissingField { field: "event_name" })?,
            timestamp_ms: f.timestamp_ms,
            timestamp_iso: f.timestamp_iso,
            message_type: f.message_type,
            data: f.data,
        })
    }

    /// [`message`](Self::message), checking only.
    fn check(&mut self) -> Result<Checked, DecodeError> {
        let f = self.fields::<false>()?;
        Ok(Checked { message_type: f.message_type, names_event: f.names_event })
    }

    /// The top-level map and its five wire fields; without `BUILD` only checked (the same
    /// errors in the same order): `event_name` is then `None`, `timestamp_iso` and `data` empty.
    fn fields<const BUILD: bool>(&mut self) -> Result<Fields, DecodeError> {
        let len = match self.head()? {
            Head::Map(len) => len,
            other => return Err(DecodeError::NotAMap { found: other.type_name() }),
        };
        self.enter(0)?;
        let mut event_name = None;
        let mut timestamp_ms = None;
        let mut timestamp_iso = None;
        let mut message_type = None;
        let mut data = None;
        let mut unknown = Unknown { keys: [""; MAX_UNKNOWN_KEYS], len: 0 };
        for _ in 0..len {
            // The five known keys are matched as bytes; only another key is checked as UTF-8.
            let key = self.key_bytes()?;
            // A repeated key is an error before its value is read.
            match key {
                b"event_name" => {
                    let slot = vacant(&mut event_name, "event_name")?;
                    *slot = Some(self.event_name_field::<BUILD>()?);
                }
                b"timestamp_ms" => {
                    let slot = vacant(&mut timestamp_ms, "timestamp_ms")?;
                    *slot = Some(self.timestamp_ms_field()?);
                }
                b"timestamp_iso" => {
                    let slot = vacant(&mut timestamp_iso, "timestamp_iso")?;
                    let iso = self.str_field("timestamp_iso")?;
                    *slot = Some(if BUILD { iso.to_owned() } else { String::new() });
                }
                b"message_type" => {
                    let slot = vacant(&mut message_type, "message_type")?;
                    *slot = Some(self.message_type_field()?);
                }
                b"data" => {
                    let slot = vacant(&mut data, "data")?;
                    *slot = Some(self.data_field::<BUILD>()?);
                }
                _ => {
                    let key = utf8(key)?;
                    unknown.add(key)?;
                    // Validated like any value, then ignored: never built.
                    self.value::<false>(1).map_err(|e| e.under_key(key))?;
                }
            }
        }
        let missing = |field| DecodeError::MissingField { field };
        let (event_name, names_event) = event_name.ok_or_else(|| missing("event_name"))?;
        Ok(Fields {
            event_name,
            names_event,
            timestamp_ms: timestamp_ms.ok_or_else(|| missing("timestamp_ms"))?,
            timestamp_iso: timestamp_iso.ok_or_else(|| missing("timestamp_iso"))?,
            message_type: message_type.ok_or_else(|| missing("message_type"))?,
            data: data.ok_or_else(|| missing("data"))?,
        })
    }

    /// The value of `event_name`: a valid event name (the expected one is shared, not copied;
    /// without `BUILD` none is made), and whether it is the expected one.
    fn event_name_field<const BUILD: bool>(&mut self) -> Result<(Option<EventName>, bool), DecodeError> {
        let bytes = self.str_field_bytes("event_name")?;
        match self.known {
            // The known name is valid UTF-8, so equal bytes are too.
            Some(k) if k.as_str().as_bytes() == bytes => Ok((BUILD.then(|| k.clone()), true)),
            _ => {
                let s = utf8(bytes).map_err(|e| e.under_key("event_name"))?;
                let invalid =
                    |e: crate::Error| DecodeError::InvalidField { field: "event_name", reason: e.message().to_owned() };
                if BUILD {
                    EventName::new(s).map(|name| (Some(name), false)).map_err(invalid)
                } else {
                    crate::message::validate_event_name(s).map(|()| (None, false)).map_err(invalid)
                }
            }
        }
    }

    /// The value of `timestamp_ms`: milliseconds since the Unix epoch, not negative.
    fn timestamp_ms_field(&mut self) -> Result<u64, DecodeError> {
        match self.field_head("timestamp_ms")? {
            Head::UInt(n) => Ok(n),
            Head::Int(n) => u64::try_from(n).map_err(|_| DecodeError::InvalidField {
                field: "timestamp_ms",
                reason: format!("{n} is negative: expected milliseconds since the Unix epoch"),
            }),
            other => Err(DecodeError::WrongType {
                field: "timestamp_ms",
                expected: "an unsigned integer",
                found: other.type_name(),
            }),
        }
    }

    /// The value of `message_type`: `"data"`, `"error"` or `"control"`.
    fn message_type_field(&mut self) -> Result<MessageType, DecodeError> {
        match self.str_field_bytes("message_type")? {
            b"data" => Ok(MessageType::Data),
            b"error" => Ok(MessageType::Error),
            b"control" => Ok(MessageType::Control),
            other => {
                let other = utf8(other).map_err(|e| e.under_key("message_type"))?;
                Err(DecodeError::InvalidField {
                    field: "message_type",
                    reason: format!("unknown value {}: expected \"data\", \"error\" or \"control\"", quote(other)),
                })
            }
        }
    }

    /// The value of `data`: a map.
    fn data_field<const BUILD: bool>(&mut self) -> Result<Data, DecodeError> {
        match self.field_head("data")? {
            Head::Map(len) => self.data::<BUILD>(len).map_err(|e| e.under_key("data")),
            other => Err(DecodeError::WrongType { field: "data", expected: "a map", found: other.type_name() }),
        }
    }
}

/// The five wire fields of a message as [`Reader::fields`] read them.
struct Fields {
    event_name: Option<EventName>,
    names_event: bool,
    timestamp_ms: u64,
    timestamp_iso: String,
    message_type: MessageType,
    data: Data,
}

/// `bytes` as a string; invalid UTF-8 is an error (its path added by the caller).
fn utf8(bytes: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8 { path: String::new() })
}

/// `slot` while it is empty; a repeated `key` is an error.
fn vacant<'s, T>(slot: &'s mut Option<T>, key: &str) -> Result<&'s mut Option<T>, DecodeError> {
    match slot {
        Some(_) => Err(DecodeError::DuplicateKey { key: truncate(key), path: String::new() }),
        None => Ok(slot),
    }
}

/// The unknown top-level keys of one message, at most [`MAX_UNKNOWN_KEYS`].
struct Unknown<'a> {
    keys: [&'a str; MAX_UNKNOWN_KEYS],
    len: usize,
}

impl<'a> Unknown<'a> {
    /// Notes `key`: a repeated one, or one too many, is an error.
    fn add(&mut self, key: &'a str) -> Result<(), DecodeError> {
        if self.keys[..self.len].contains(&key) {
            return Err(DecodeError::DuplicateKey { key: truncate(key), path: String::new() });
        }
        if self.len == MAX_UNKNOWN_KEYS {
            return Err(DecodeError::TooManyUnknownKeys { max: MAX_UNKNOWN_KEYS });
        }
        self.keys[self.len] = key;
        self.len += 1;
        Ok(())
    }
}

/// Repeated-key detection for one map: a scan of the keys read so far for
/// small maps, a hash set (growing with the keys actually read) for large ones.
enum Seen<'a> {
    Linear,
    Hashed(HashSet<&'a str>),
}

impl<'a> Seen<'a> {
    fn new(len: usize) -> Self {
        if len <= LINEAR_DUP_CHECK {
            Seen::Linear
        } else {
            Seen::Hashed(HashSet::new())
        }
    }

    fn check<'k, I>(&mut self, key: &'a str, previous: impl FnOnce() -> I) -> Result<(), DecodeError>
    where
        I: Iterator<Item = &'k str>,
    {
        let repeated = match self {
            Seen::Linear => previous().any(|k| k == key),
            Seen::Hashed(set) => !set.insert(key),
        };
        if repeated {
            return Err(DecodeError::DuplicateKey { key: truncate(key), path: String::new() });
        }
        Ok(())
    }
}

/// A string from the input, quoted and cut to a readable length for an error.
pub(super) fn quote(s: &str) -> String {
    format!("{:?}", truncate(s))
}

fn truncate(s: &str) -> String {
    const MAX: usize = 32;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Prepends a path segment (`key` or `[index]`) to an error path.
pub(super) fn prepend(path: &mut String, segment: PathSegment<'_>) {
    let mut out = match segment {
        PathSegment::Key(key) if is_plain(key) => key.to_owned(),
        PathSegment::Key(key) => format!("[{}]", quote(key)),
        PathSegment::Index(i) => format!("[{i}]"),
    };
    if !path.is_empty() {
        if !path.starts_with('[') {
            out.push('.');
        }
        out.push_str(path);
    }
    if out.len() > MAX_PATH_LEN {
        let mut cut = MAX_PATH_LEN;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    *path = out;
}

/// One step of an error path.
#[derive(Debug, Clone, Copy)]
pub(super) enum PathSegment<'k> {
    Key(&'k str),
    Index(usize),
}

fn is_plain(key: &str) -> bool {
    !key.is_empty() && key.len() <= 32 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The scan as it was written over [`Reader::head`]: the reference.
    fn peek_with_reader(body: &[u8]) -> Option<&[u8]> {
        let mut rd = Reader { buf: body, pos: 0, max_depth: 1, known: None };
        let Ok(Head::Map(len)) = rd.head() else { return None };
        for _ in 0..len {
            let Ok(Head::Str(klen)) = rd.head() else { return None };
            let key = rd.take(klen).ok()?;
            match rd.head().ok()? {
                Head::Str(n) | Head::Bin(n) => {
                    let v = rd.take(n).ok()?;
                    if key == b"message_type" {
                        return Some(v);
                    }
                }
                Head::Array(_) | Head::Map(_) | Head::Ext(_) => return None,
                _ if key == b"message_type" => return None,
                _ => {}
            }
        }
        None
    }

    /// One top-level value, as MessagePack bytes, of every kind the scan distinguishes.
    fn value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            any::<u64>().prop_map(|n| rmp_bytes(&rmpv::Value::from(n))),
            any::<i64>().prop_map(|n| rmp_bytes(&rmpv::Value::from(n))),
            any::<f64>().prop_map(|f| rmp_bytes(&rmpv::Value::F64(f))),
            any::<f32>().prop_map(|f| rmp_bytes(&rmpv::Value::F32(f))),
            Just(vec![0xc0]),
            Just(vec![0xc3]),
            prop::sample::select(vec!["data", "control", "error", ""]).prop_map(|s| rmp_bytes(&rmpv::Value::from(s))),
            "[a-z]{0,40}".prop_map(|s| rmp_bytes(&rmpv::Value::from(s))),
            prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| rmp_bytes(&rmpv::Value::Binary(b))),
            prop::collection::vec(any::<u8>(), 0..4)
                .prop_map(|b| rmp_bytes(&rmpv::Value::Array(b.into_iter().map(rmpv::Value::from).collect()))),
            Just(rmp_bytes(&rmpv::Value::Map(vec![(rmpv::Value::from("k"), rmpv::Value::from(1))]))),
            Just(rmp_bytes(&rmpv::Value::Ext(1, vec![1, 2]))),
        ]
    }

    fn rmp_bytes(v: &rmpv::Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).expect("encodable");
        out
    }

    /// A top-level map of up to 6 entries whose keys are often `message_type`,
    /// announced with a possibly wrong length, possibly cut short.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        let key = prop_oneof![Just("message_type".to_owned()), Just("event_name".to_owned()), "[a-z_]{0,33}",];
        (prop::collection::vec((key, value()), 0..6), 0..3u8, any::<i8>(), any::<prop::sample::Index>()).prop_map(
            |(entries, header, len_delta, cut)| {
                // Mostly about right; sometimes far more entries than the body could hold.
                let n = if len_delta > 100 {
                    1_000_000
                } else {
                    (entries.len() as i64 + i64::from(len_delta % 3)).max(0) as u32
                };
                let mut out = match header {
                    0 if n < 16 => vec![0x80 | n as u8],
                    1 if n <= u32::from(u16::MAX) => {
                        let mut h = vec![0xde];
                        h.extend_from_slice(&(n as u16).to_be_bytes());
                        h
                    }
                    _ => {
                        let mut h = vec![0xdf];
                        h.extend_from_slice(&n.to_be_bytes());
                        h
                    }
                };
                for (k, v) in entries {
                    out.extend(rmp_bytes(&rmpv::Value::from(k.as_str())));
                    out.extend(v);
                }
                if len_delta < -100 {
                    out.truncate(cut.index(out.len() + 1));
                }
                out
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn peek_matches_the_reader_based_scan(body in body()) {
            prop_assert_eq!(peek_message_type(&body), peek_with_reader(&body));
        }

        #[test]
        fn peek_matches_the_reader_based_scan_on_any_bytes(body in prop::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(peek_message_type(&body), peek_with_reader(&body));
        }
    }

    /// Any MessagePack value of the kinds the decoder tells apart, nested: maps repeat keys
    /// and use non-string keys at times, strings may be invalid UTF-8 (as binary passed off as
    /// a string is not expressible here, that comes from the byte mutations below).
    fn nested() -> impl Strategy<Value = rmpv::Value> {
        use rmpv::Value as V;
        let leaf = prop_oneof![
            Just(V::Nil),
            any::<bool>().prop_map(V::Boolean),
            any::<i64>().prop_map(V::from),
            any::<u64>().prop_map(V::from),
            any::<f32>().prop_map(V::F32),
            "[a-z]{0,5}".prop_map(V::from),
            prop::collection::vec(any::<u8>(), 0..4).prop_map(V::Binary),
            Just(V::Ext(3, vec![1])),
        ];
        leaf.prop_recursive(5, 40, 4, |inner| {
            let key = prop_oneof![
                4 => prop::sample::select(vec!["a", "b", "c"]).prop_map(V::from),
                1 => any::<u8>().prop_map(V::from),
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(V::Array),
                prop::collection::vec((key, inner), 0..4).prop_map(V::Map),
            ]
        })
    }

    /// A top-level map near a valid message: each wire key present, repeated or missing, with
    /// a valid or a wrong value, and unknown keys; then the bytes cut, changed or extended
    /// at times.
    fn near_message() -> impl Strategy<Value = Vec<u8>> {
        use rmpv::Value as V;
        let entry = prop_oneof![
            prop::sample::select(vec!["ev", "other", "", "bad name!"])
                .prop_map(|n| (V::from("event_name"), V::from(n))),
            any::<i64>().prop_map(|n| (V::from("timestamp_ms"), V::from(n))),
            Just((V::from("timestamp_iso"), V::from("2026-12-07T00:00:00Z"))),
            prop::sample::select(vec!["data", "error", "control", "nope"])
                .prop_map(|t| (V::from("message_type"), V::from(t))),
            nested().prop_map(|v| (V::from("data"), v)),
            prop::collection::vec((prop::sample::select(vec!["a", "b", "c"]), nested()), 0..5)
                .prop_map(|kv| { (V::from("data"), V::Map(kv.into_iter().map(|(k, v)| (V::from(k), v)).collect())) }),
            ("[a-z_]{1,3}", nested()).prop_map(|(k, v)| (V::from(k.as_str()), v)),
            nested().prop_map(|v| (v.clone(), v)),
        ];
        let wire = || {
            vec![
                (V::from("event_name"), V::from("ev")),
                (V::from("timestamp_ms"), V::from(1u64)),
                (V::from("timestamp_iso"), V::from("2026-12-07T00:00:00Z")),
                (V::from("message_type"), V::from("data")),
                (V::from("data"), V::Map(vec![(V::from("k"), V::from(1))])),
            ]
        };
        (
            prop::collection::vec(any::<bool>(), 5),
            prop::collection::vec(entry, 0..4),
            any::<prop::sample::Index>(),
            0..5u8,
            any::<prop::sample::Index>(),
            any::<u8>(),
        )
            .prop_map(move |(keep, extra, at, mutation, pos, byte)| {
                let mut entries: Vec<(V, V)> =
                    wire().into_iter().zip(keep).filter(|(_, k)| *k).map(|(e, _)| e).collect();
                for e in extra {
                    let i = at.index(entries.len() + 1);
                    entries.insert(i, e);
                }
                let mut out = rmp_bytes(&V::Map(entries));
                match mutation {
                    0 => out.truncate(pos.index(out.len() + 1)),
                    1 => {
                        let i = pos.index(out.len());
                        out[i] = byte;
                    }
                    2 => out.push(byte),
                    _ => {}
                }
                out
            })
    }

    /// The decoder's verdict, as the checker gives it.
    fn decoded(body: &[u8], max_depth: usize, known: Option<&EventName>) -> Result<Checked, DecodeError> {
        decode_message(body, max_depth, known)
            .map(|m| Checked { message_type: m.message_type, names_event: known == Some(&m.event_name) })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(6000))]

        #[test]
        fn check_agrees_with_decode(body in near_message(), depth in 1..7usize, named in any::<bool>()) {
            let ev = EventName::new("ev").expect("valid");
            let known = named.then_some(&ev);
            prop_assert_eq!(check_message(&body, depth, known), decoded(&body, depth, known));
        }

        #[test]
        fn check_agrees_with_decode_on_any_bytes(body in prop::collection::vec(any::<u8>(), 0..48)) {
            prop_assert_eq!(check_message(&body, 64, None), decoded(&body, 64, None));
        }
    }

    #[test]
    fn check_accepts_what_is_encoded_and_names_its_type() -> Result<(), Box<dyn std::error::Error>> {
        use crate::{codec::encode_frame, Data, SocketMessage};
        let ev = EventName::new("ev")?;
        for t in [MessageType::Data, MessageType::Error, MessageType::Control] {
            let data = Data::new().with("k", 1).with("nested", rmpv::Value::Array(vec![rmpv::Value::from("x")]));
            let frame = encode_frame(&SocketMessage::new(ev.clone(), t, data), 1 << 20)?;
            assert_eq!(check_message(frame.body(), 64, Some(&ev)), Ok(Checked { message_type: t, names_event: true }));
            assert_eq!(check_message(frame.body(), 64, None), Ok(Checked { message_type: t, names_event: false }));
            let other = EventName::new("other")?;
            assert_eq!(
                check_message(frame.body(), 64, Some(&other)),
                Ok(Checked { message_type: t, names_event: false })
            );
        }
        // A data map of more keys than the linear duplicate check takes, one repeated.
        let mut entries: Vec<(rmpv::Value, rmpv::Value)> =
            (0..40).map(|i| (rmpv::Value::from(format!("k{i}")), rmpv::Value::from(i))).collect();
        entries.push((rmpv::Value::from("k7"), rmpv::Value::Nil));
        let body = rmp_bytes(&rmpv::Value::Map(vec![
            (rmpv::Value::from("event_name"), rmpv::Value::from("ev")),
            (rmpv::Value::from("timestamp_ms"), rmpv::Value::from(1)),
            (rmpv::Value::from("timestamp_iso"), rmpv::Value::from("t")),
            (rmpv::Value::from("message_type"), rmpv::Value::from("data")),
            (rmpv::Value::from("data"), rmpv::Value::Map(entries)),
        ]));
        let refused = check_message(&body, 64, Some(&ev));
        assert!(matches!(refused, Err(DecodeError::DuplicateKey { .. })), "{refused:?}");
        assert_eq!(refused, decoded(&body, 64, Some(&ev)));
        Ok(())
    }

    #[test]
    fn peek_finds_the_type_of_encoded_messages() -> Result<(), Box<dyn std::error::Error>> {
        use crate::{codec::encode_frame, Data, EventName, SocketMessage};
        let msg = SocketMessage::data(EventName::new("t")?, Data::new().with("k", 1));
        let frame = encode_frame(&msg, 1 << 20)?;
        assert_eq!(peek_message_type(frame.body()), Some(&b"data"[..]));
        Ok(())
    }
}
