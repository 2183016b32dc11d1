//! Arbitrary chunking of a byte stream through `FrameDecoder` (with `feed`
//! and with `spare`/`commit`): the frames must be exactly those of feeding
//! the stream at once, and nothing is yielded after an error.
//!
//! Input layout: byte 0 = n, then n chunk sizes (one byte each, 0 read as
//! 1), then the stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use socket_core::codec::{decode_body, DecodeError, FrameDecoder, Limits};

/// Frames (or the error) of `stream` fed in chunks of `sizes`.
fn run(stream: &[u8], sizes: &[u8], limits: Limits, direct: bool) -> (Vec<Vec<u8>>, Option<DecodeError>) {
    let mut dec = FrameDecoder::new(limits);
    let mut out = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    let mut failed: Option<DecodeError> = None;
    let mut largest = 0;
    while !rest.is_empty() {
        let n = match sizes.get(i % sizes.len().max(1)) {
            Some(&s) => usize::from(s).max(1),
            None => rest.len(),
        }
        .min(rest.len());
        i += 1;
        // One header, one maximal body and the largest chunk (the caller
        // drains; the capacity reached for a large chunk is kept).
        largest = largest.max(n);
        let bound = 4 + limits.max_frame_len + largest;
        if direct {
            dec.spare(n).copy_from_slice(&rest[..n]);
            dec.commit(n);
        } else {
            dec.feed(&rest[..n]);
        }
        rest = &rest[n..];
        assert!(dec.capacity() <= bound, "buffer grew to {} (bound {bound})", dec.capacity());
        loop {
            match dec.next_frame() {
                Ok(Some(body)) => {
                    assert!(failed.is_none(), "a frame after an error");
                    out.push(body.to_vec());
                }
                Ok(None) => break,
                Err(e) => {
                    if let Some(prev) = &failed {
                        assert_eq!(prev, &e, "a different error after the first");
                    }
                    failed = Some(e);
                    break;
                }
            }
        }
    }
    (out, failed)
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else { return };
    let n = usize::from(n).min(rest.len());
    let (sizes, stream) = rest.split_at(n);
    // A small frame limit so that chunking around the limit is explored.
    let limits = Limits { max_frame_len: 1024, ..Limits::default() };
    let whole = run(stream, &[], limits, false);
    let fed = run(stream, sizes, limits, false);
    let direct = run(stream, sizes, limits, true);
    assert_eq!(fed, whole, "feed in chunks differs from feeding at once");
    assert_eq!(direct, whole, "spare/commit differs from feeding at once");
    for body in &whole.0 {
        let _ = decode_body(body, &limits);
    }
});
