//! `FrameDecoder`: chunking, buffer bounds, compaction, direct reads.

use std::time::{Duration, Instant};

use socket_core::codec::{decode_body, encode_frame, DecodeError, FrameDecoder, Limits, HEADER_LEN};

use crate::codec::golden_messages;
use crate::util::frame;

fn golden_stream() -> (Vec<u8>, usize) {
    let mut bytes = Vec::new();
    let msgs = golden_messages();
    for (_, msg) in &msgs {
        bytes.extend_from_slice(encode_frame(msg, 1 << 20).unwrap().as_bytes());
    }
    (bytes, msgs.len())
}

fn drain(dec: &mut FrameDecoder, out: &mut Vec<Vec<u8>>) -> Result<(), DecodeError> {
    while let Some(body) = dec.next_frame()? {
        out.push(body.to_vec());
    }
    Ok(())
}

#[test]
fn every_split_point_gives_the_same_frames() {
    let (bytes, n) = golden_stream();
    for split in 0..=bytes.len() {
        let mut dec = FrameDecoder::new(Limits::default());
        let mut out = Vec::new();
        dec.feed(&bytes[..split]);
        drain(&mut dec, &mut out).unwrap();
        dec.feed(&bytes[split..]);
        drain(&mut dec, &mut out).unwrap();
        assert_eq!(out.len(), n, "split at {split}");
        for (body, (_, msg)) in out.iter().zip(golden_messages()) {
            assert_eq!(decode_body(body, &Limits::default()).unwrap(), msg);
        }
        assert!(!dec.in_frame());
    }
}

#[test]
fn spare_and_commit_read_in_place() {
    let (bytes, n) = golden_stream();
    for chunk in [1, 3, 7, 64, 4096] {
        let mut dec = FrameDecoder::new(Limits::default());
        let mut out = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let buf = dec.spare(chunk);
            assert_eq!(buf.len(), chunk);
            let k = chunk.min(rest.len());
            buf[..k].copy_from_slice(&rest[..k]);
            dec.commit(k);
            rest = &rest[k..];
            drain(&mut dec, &mut out).unwrap();
        }
        assert_eq!(out.len(), n, "chunk {chunk}");
        assert_eq!(dec.buffered(), 0);
    }
}

#[test]
fn commit_zero_is_end_of_nothing() {
    let mut dec = FrameDecoder::new(Limits::default());
    dec.spare(16);
    dec.commit(0);
    assert_eq!(dec.buffered(), 0);
    assert_eq!(dec.next_frame().unwrap(), None);
}

#[test]
fn feed_and_spare_mix() {
    let (bytes, n) = golden_stream();
    let mut dec = FrameDecoder::new(Limits::default());
    let mut out = Vec::new();
    let (a, b) = bytes.split_at(bytes.len() / 2);
    dec.feed(a);
    let buf = dec.spare(b.len());
    buf.copy_from_slice(b);
    dec.commit(b.len());
    drain(&mut dec, &mut out).unwrap();
    assert_eq!(out.len(), n);
}

#[test]
fn many_frames_in_one_chunk_cost_linear_time() {
    // 200,000 one-byte-body frames fed at once: draining them must not move
    // the rest of the buffer for every frame.
    let count = 200_000;
    let mut bytes = Vec::with_capacity(count * 5);
    for _ in 0..count {
        bytes.extend_from_slice(&frame(&[0xc0]));
    }
    let mut dec = FrameDecoder::new(Limits::default());
    let start = Instant::now();
    dec.feed(&bytes);
    let mut seen = 0;
    while let Some(body) = dec.next_frame().unwrap() {
        assert_eq!(body, [0xc0]);
        seen += 1;
    }
    assert_eq!(seen, count);
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
}

#[test]
fn buffer_stays_within_one_frame_plus_one_chunk() {
    let max = 64 << 10;
    let limits = Limits { max_frame_len: max, ..Limits::default() };
    // Frames of every size up to the limit, streamed in chunks of 1,000 bytes.
    let mut bytes = Vec::new();
    for len in [1, 100, 5_000, max - 1, max, 3, max, 17] {
        bytes.extend_from_slice(&frame(&vec![0xc0; len]));
    }
    for chunk in [1_000, 4_096, 70_000] {
        let mut dec = FrameDecoder::new(limits);
        let mut out = Vec::new();
        let mut peak = 0;
        for piece in bytes.chunks(chunk) {
            dec.feed(piece);
            peak = peak.max(dec.capacity());
            drain(&mut dec, &mut out).unwrap();
        }
        assert_eq!(out.len(), 8);
        assert!(peak <= HEADER_LEN + max + chunk, "chunk {chunk}: capacity reached {peak}");
        // The large buffer is released once empty.
        dec.feed(&[]);
        assert!(dec.capacity() <= 64 << 10, "capacity {} kept after draining", dec.capacity());
    }
}

#[test]
fn buffer_bound_holds_with_spare() {
    let max = 64 << 10;
    let limits = Limits { max_frame_len: max, ..Limits::default() };
    let mut bytes = Vec::new();
    for len in [max, 1, max] {
        bytes.extend_from_slice(&frame(&vec![0xc0; len]));
    }
    let chunk = 4096;
    let mut dec = FrameDecoder::new(limits);
    let mut rest = &bytes[..];
    let mut n = 0;
    let mut peak = 0;
    while !rest.is_empty() {
        let buf = dec.spare(chunk);
        let k = chunk.min(rest.len());
        buf[..k].copy_from_slice(&rest[..k]);
        dec.commit(k);
        rest = &rest[k..];
        peak = peak.max(dec.capacity());
        while dec.next_frame().unwrap().is_some() {
            n += 1;
        }
    }
    assert_eq!(n, 3);
    assert!(peak <= HEADER_LEN + max + chunk, "capacity reached {peak}");
}

#[test]
fn needed_tells_how_much_is_missing() {
    let mut dec = FrameDecoder::new(Limits::default());
    assert_eq!(dec.needed(), Some(4));
    dec.feed(&[0, 0, 0, 10, 1, 2]);
    assert_eq!(dec.needed(), Some(8));
    dec.feed(&[0; 8]);
    assert_eq!(dec.needed(), Some(0));
    assert!(dec.next_frame().unwrap().is_some());
    assert_eq!(dec.needed(), Some(4));
    dec.feed(&[0, 0, 0, 0]);
    assert!(dec.next_frame().is_err());
    assert_eq!(dec.needed(), None);
}

#[test]
fn no_frame_after_an_error_ever() {
    let good = encode_frame(&golden_messages()[0].1, 1 << 20).unwrap();
    let mut dec = FrameDecoder::new(Limits { max_frame_len: 64, ..Limits::default() });
    dec.feed(good.as_bytes());
    let err = dec.next_frame().unwrap_err();
    assert!(matches!(err, DecodeError::FrameTooLarge { max: 64, .. }));
    dec.feed(&frame(&[0xc0]));
    for _ in 0..3 {
        assert_eq!(dec.next_frame().unwrap_err(), err);
    }
}

#[test]
fn commit_beyond_spare_is_a_caller_bug() {
    let result = std::panic::catch_unwind(|| {
        let mut dec = FrameDecoder::new(Limits::default());
        dec.spare(4);
        dec.commit(5);
    });
    let msg = result.expect_err("commit past the spare slice panics");
    let text = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(text.contains("exceeds the spare slice"), "{text}");
}

#[test]
fn bytes_after_an_error_are_dropped() {
    // Found by the stream_decoder fuzz target: a dead stream kept buffering.
    let mut dec = FrameDecoder::new(Limits { max_frame_len: 1024, ..Limits::default() });
    dec.feed(&[0, 1, 0, 0]);
    assert!(dec.next_frame().is_err());
    let before = dec.capacity();
    for _ in 0..100 {
        dec.feed(&[0xc0; 1000]);
        let buf = dec.spare(1000);
        buf.fill(0xc0);
        dec.commit(1000);
        assert!(dec.next_frame().is_err());
    }
    assert!(dec.capacity() <= before + 1000, "capacity grew to {}", dec.capacity());
}
