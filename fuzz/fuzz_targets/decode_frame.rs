//! A whole input as a byte stream through `FrameDecoder` and `decode_body`
//! with the real default limits (1 MiB frames, depth 64).
//!
//! Invariants: no panic; `check_body` gives every body the verdict `decode_body` gives (the
//! same type, or the same error); every accepted message encodes again, and that
//! encoding survives a decode/encode round trip byte for byte; nothing is returned after a fatal frame error.

#![no_main]

use libfuzzer_sys::fuzz_target;
use socket_core::codec::{check_body, decode_body, encode_frame_with, FrameDecoder, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let mut dec = FrameDecoder::new(limits);
    dec.feed(data);
    loop {
        match dec.next_frame() {
            Ok(Some(body)) => {
                assert!(!body.is_empty() && body.len() <= limits.max_frame_len);
                let decoded = decode_body(body, &limits);
                let verdict = decoded.as_ref().map(|m| m.message_type).map_err(Clone::clone);
                let checked = check_body(body, &limits).map(|c| c.message_type);
                assert_eq!(checked, verdict, "check_body disagrees with decode_body");
                if let Ok(msg) = decoded {
                    let frame = encode_frame_with(&msg, &limits).expect("an accepted message encodes");
                    let again = decode_body(frame.body(), &limits).expect("our encoding decodes");
                    // Compared as bytes: a NaN float is never equal to itself.
                    let frame2 = encode_frame_with(&again, &limits).expect("it encodes again");
                    assert!(frame2.as_bytes() == frame.as_bytes(), "round trip changed the message");
                }
            }
            Ok(None) => break,
            Err(e) => {
                assert!(e.is_fatal(), "frame errors are fatal: {e}");
                assert!(dec.next_frame().is_err(), "no frame after an error");
                break;
            }
        }
    }
});
