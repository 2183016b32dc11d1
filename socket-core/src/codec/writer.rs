//! The MessagePack writer: the smallest encoding of every value, as
//! msgpack-python's `packb` writes it (so golden bytes match byte for byte),
//! refusing what the reader would refuse.

use rmpv::Value;
use snafu::Snafu;

use super::reader::{prepend, PathSegment};
use crate::message::SocketMessage;

/// Why a message could not be encoded.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(super)))]
pub(super) enum EncodeError {
    /// A map inside `data` has a key that is not a string.
    #[snafu(display("a map key is not a string at {} (peers accept string keys only)", at(path)))]
    NonStringKey { path: String },
    /// A string value holds bytes that are not UTF-8.
    #[snafu(display("a string is not valid UTF-8 at {}", at(path)))]
    InvalidUtf8 { path: String },
    /// An ext value (refused by every receiver).
    #[snafu(display("ext values are not supported by the protocol (found one at {})", at(path)))]
    Ext { path: String },
    /// Nesting deeper than the ceiling.
    #[snafu(display("values are nested deeper than {max} levels at {}", at(path)))]
    TooDeep { max: usize, path: String },
    /// A string, binary, array or map longer than MessagePack can express.
    #[snafu(display("{kind} of {len} elements or bytes at {} is longer than MessagePack allows", at(path)))]
    TooLong { kind: &'static str, len: usize, path: String },
}

fn at(path: &str) -> String {
    if path.is_empty() {
        "the top level".to_owned()
    } else {
        format!("`{path}`")
    }
}

impl EncodeError {
    fn under(mut self, segment: PathSegment<'_>) -> Self {
        match &mut self {
            EncodeError::NonStringKey { path }
            | EncodeError::InvalidUtf8 { path }
            | EncodeError::Ext { path }
            | EncodeError::TooDeep { path, .. }
            | EncodeError::TooLong { path, .. } => prepend(path, segment),
        }
        self
    }
}

/// Writes the body of `msg`: a map of the five wire keys, in a fixed order.
pub(super) fn write_message(out: &mut Vec<u8>, msg: &SocketMessage, max_depth: usize) -> Result<(), EncodeError> {
    out.push(0x85);
    write_str(out, "event_name")?;
    write_str(out, msg.event_name.as_str())?;
    write_str(out, "timestamp_ms")?;
    write_uint(out, msg.timestamp_ms);
    write_str(out, "timestamp_iso")?;
    write_str(out, &msg.timestamp_iso)?;
    write_str(out, "message_type")?;
    write_str(out, msg.message_type.as_str())?;
    write_str(out, "data")?;
    // The top-level map is depth 1, `data` depth 2.
    if max_depth < 2 {
        return Err(EncodeError::TooDeep { max: max_depth, path: "data".to_owned() });
    }
    write_len(out, msg.data.len(), [0x80, 0xde, 0xdf], 0x0f, "map").map_err(|e| e.under(PathSegment::Key("data")))?;
    for (key, value) in msg.data.iter() {
        write_str(out, key).map_err(|e| e.under(PathSegment::Key("data")))?;
        write_value(out, value, 2, max_depth)
            .map_err(|e| e.under(PathSegment::Key(key)).under(PathSegment::Key("data")))?;
    }
    Ok(())
}

/// Writes a container or string length: `markers` are the fix marker, the
/// 16-bit marker and the 32-bit marker; `fix_max` the largest fix length.
fn write_len(
    out: &mut Vec<u8>,
    len: usize,
    markers: [u8; 3],
    fix_max: usize,
    kind: &'static str,
) -> Result<(), EncodeError> {
    if len <= fix_max {
        out.push(markers[0] | len as u8);
    } else if let Ok(n) = u16::try_from(len) {
        out.push(markers[1]);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = u32::try_from(len) {
        out.push(markers[2]);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        return Err(EncodeError::TooLong { kind, len, path: String::new() });
    }
    Ok(())
}

fn write_str(out: &mut Vec<u8>, s: &str) -> Result<(), EncodeError> {
    let len = s.len();
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if let Ok(n) = u8::try_from(len) {
        out.extend_from_slice(&[0xd9, n]);
    } else {
        write_len(out, len, [0, 0xda, 0xdb], 0, "string")?;
    }
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn write_bin(out: &mut Vec<u8>, b: &[u8]) -> Result<(), EncodeError> {
    let len = b.len();
    if let Ok(n) = u8::try_from(len) {
        out.extend_from_slice(&[0xc4, n]);
    } else if let Ok(n) = u16::try_from(len) {
        out.push(0xc5);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = u32::try_from(len) {
        out.push(0xc6);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        return Err(EncodeError::TooLong { kind: "binary", len, path: String::new() });
    }
    out.extend_from_slice(b);
    Ok(())
}

fn write_uint(out: &mut Vec<u8>, n: u64) {
    if n <= 0x7f {
        out.push(n as u8);
    } else if let Ok(n) = u8::try_from(n) {
        out.extend_from_slice(&[0xcc, n]);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(0xcd);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = u32::try_from(n) {
        out.push(0xce);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Writes a negative integer (non-negative ones go through [`write_uint`]).
fn write_neg(out: &mut Vec<u8>, n: i64) {
    if n >= -32 {
        out.push(n as u8);
    } else if let Ok(n) = i8::try_from(n) {
        out.extend_from_slice(&[0xd0, n as u8]);
    } else if let Ok(n) = i16::try_from(n) {
        out.push(0xd1);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = i32::try_from(n) {
        out.push(0xd2);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Writes any value; `depth` is the depth of the container holding it.
fn write_value(out: &mut Vec<u8>, value: &Value, depth: usize, max_depth: usize) -> Result<(), EncodeError> {
    match value {
        Value::Nil => out.push(0xc0),
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => write_uint(out, u),
            (None, Some(i)) => write_neg(out, i),
            // An rmpv integer is always a u64 or an i64.
            (None, None) => out.push(0xc0),
        },
        Value::F32(f) => {
            out.push(0xca);
            out.extend_from_slice(&f.to_be_bytes());
        }
        Value::F64(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_be_bytes());
        }
        Value::String(s) => match s.as_str() {
            Some(s) => write_str(out, s)?,
            None => return Err(EncodeError::InvalidUtf8 { path: String::new() }),
        },
        Value::Binary(b) => write_bin(out, b)?,
        Value::Ext(..) => return Err(EncodeError::Ext { path: String::new() }),
        Value::Array(items) => {
            let depth = enter(depth, max_depth)?;
            write_len(out, items.len(), [0x90, 0xdc, 0xdd], 0x0f, "array")?;
            for (i, item) in items.iter().enumerate() {
                write_value(out, item, depth, max_depth).map_err(|e| e.under(PathSegment::Index(i)))?;
            }
        }
        Value::Map(entries) => {
            let depth = enter(depth, max_depth)?;
            write_len(out, entries.len(), [0x80, 0xde, 0xdf], 0x0f, "map")?;
            for (key, value) in entries {
                let key = match key {
                    Value::String(s) => s.as_str().ok_or(EncodeError::NonStringKey { path: String::new() })?,
                    _ => return Err(EncodeError::NonStringKey { path: String::new() }),
                };
                write_str(out, key)?;
                write_value(out, value, depth, max_depth).map_err(|e| e.under(PathSegment::Key(key)))?;
            }
        }
    }
    Ok(())
}

fn enter(depth: usize, max_depth: usize) -> Result<usize, EncodeError> {
    let depth = depth + 1;
    if depth > max_depth {
        return Err(EncodeError::TooDeep { max: max_depth, path: String::new() });
    }
    Ok(depth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_lengths_take_the_smallest_header() -> Result<(), EncodeError> {
        for (len, header) in
            [(200usize, vec![0xc4, 200]), (300, vec![0xc5, 0x01, 0x2c]), (70_000, vec![0xc6, 0, 1, 0x11, 0x70])]
        {
            let mut out = Vec::new();
            write_bin(&mut out, &vec![7u8; len])?;
            assert_eq!(out[..header.len()], header[..], "binary of {len} bytes");
            assert_eq!(out.len(), header.len() + len);
        }
        Ok(())
    }
}
