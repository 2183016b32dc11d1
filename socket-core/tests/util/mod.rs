//! Helpers shared by the test modules.

use std::sync::mpsc;
use std::time::Duration;

use socket_core::codec::HEADER_LEN;

/// Runs `f` on a thread with a `stack` byte stack and fails if it does not
/// finish within `deadline` (a watchdog: a test must fail, not hang).
pub(crate) fn run_with_stack<T: Send + 'static>(
    stack: usize,
    deadline: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .stack_size(stack)
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn a test thread");
    match rx.recv_timeout(deadline) {
        Ok(v) => {
            handle.join().expect("test thread finished");
            v
        }
        Err(e) => panic!("test thread did not finish within {deadline:?} ({e}): it panicked or hangs"),
    }
}

/// Wraps `body` in a frame header.
pub(crate) fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// MessagePack string.
pub(crate) fn mp_str(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    if b.len() < 32 {
        out.push(0xa0 | b.len() as u8);
    } else if b.len() < 256 {
        out.extend_from_slice(&[0xd9, b.len() as u8]);
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    }
    out.extend_from_slice(b);
    out
}

/// A builder of message bodies byte by byte, for malformed-input tests.
/// `fields` are written in order as a map; each value is raw MessagePack.
pub(crate) fn body(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = if fields.len() < 16 {
        vec![0x80 | fields.len() as u8]
    } else {
        let mut out = vec![0xde];
        out.extend_from_slice(&(fields.len() as u16).to_be_bytes());
        out
    };
    for (k, v) in fields {
        out.extend_from_slice(k);
        out.extend_from_slice(v);
    }
    out
}

/// The four valid scalar fields (without `data`), raw.
pub(crate) fn scalar_fields() -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        (mp_str("event_name"), mp_str("demo")),
        (mp_str("timestamp_ms"), vec![0xcf, 0, 0, 1, 0x9a, 0x2c, 0x2b, 0x2b, 0x5b]),
        (mp_str("timestamp_iso"), mp_str("2026-11-27T03:10:10.123456+00:00")),
        (mp_str("message_type"), mp_str("data")),
    ]
}

/// A valid body whose `data` value is the raw bytes `data`, plus `extra` raw fields.
pub(crate) fn body_with_data(data: &[u8], extra: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut fields = scalar_fields();
    fields.push((mp_str("data"), data.to_vec()));
    fields.extend(extra.iter().cloned());
    let refs: Vec<(&[u8], &[u8])> = fields.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
    body(&refs)
}

/// A body where the fields are given as (key, value) pairs, all raw.
pub(crate) fn body_of(fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let refs: Vec<(&[u8], &[u8])> = fields.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
    body(&refs)
}
