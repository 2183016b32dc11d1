//! Property tests (M11): round trips, chunking invariance, and arbitrary
//! bytes never panicking nor allocating more than the frame limit.

use proptest::collection::vec;
use proptest::prelude::*;
use rmpv::Value;
use socket_core::codec::{decode_body, encode_frame, FrameDecoder, Limits, DEFAULT_MAX_FRAME_LEN};
use socket_core::{Data, EventName, MessageType, SocketMessage};

fn key() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z_]{1,12}", "\\PC{0,24}",]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Boolean),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (0u64..300).prop_map(Value::from),
        (-300i64..0).prop_map(Value::from),
        // Not NaN: NaN != NaN would break the equality check, not the codec.
        any::<f64>().prop_filter("not NaN", |f| !f.is_nan()).prop_map(Value::F64),
        any::<f32>().prop_filter("not NaN", |f| !f.is_nan()).prop_map(Value::F32),
        "\\PC{0,40}".prop_map(|s: String| Value::from(s)),
        vec(any::<u8>(), 0..300).prop_map(Value::Binary),
    ]
}

/// Any value with string map keys and distinct keys per map, nested a few levels.
fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map(key(), inner, 0..8)
                .prop_map(|m| Value::Map(m.into_iter().map(|(k, v)| (Value::from(k), v)).collect())),
        ]
    })
}

fn message() -> impl Strategy<Value = SocketMessage> {
    (
        "[a-zA-Z0-9_-]{1,64}",
        any::<u64>(),
        "\\PC{0,40}",
        prop_oneof![Just(MessageType::Data), Just(MessageType::Error), Just(MessageType::Control)],
        proptest::collection::btree_map(key(), value(), 0..6),
    )
        .prop_map(|(event, timestamp_ms, timestamp_iso, message_type, data)| SocketMessage {
            event_name: EventName::new(event).expect("generated names are valid"),
            timestamp_ms,
            timestamp_iso,
            message_type,
            data: Data::from_entries(data),
        })
}

/// Feeds `bytes` in chunks whose sizes cycle through `sizes` (0 means 1).
fn feed_chunked(bytes: &[u8], sizes: &[usize]) -> (Vec<Vec<u8>>, Option<socket_core::codec::DecodeError>) {
    let mut dec = FrameDecoder::new(Limits::default());
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].max(1).min(rest.len());
        i += 1;
        dec.feed(&rest[..n]);
        rest = &rest[n..];
        loop {
            match dec.next_frame() {
                Ok(Some(body)) => out.push(body.to_vec()),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

proptest! {
    // Enough cases to find codec bugs while keeping the suite fast in debug
    // builds; the fuzz targets (fuzz/) explore much further.
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn encode_then_decode_is_identity(msg in message()) {
        let frame = encode_frame(&msg, DEFAULT_MAX_FRAME_LEN).expect("valid messages encode");
        let back = decode_body(frame.body(), &Limits::default()).expect("our frames decode");
        prop_assert_eq!(&back, &msg);
        // The encoding is canonical: re-encoding gives the same bytes.
        let again = encode_frame(&back, DEFAULT_MAX_FRAME_LEN).unwrap();
        prop_assert_eq!(again.as_bytes(), frame.as_bytes());
    }

    #[test]
    fn any_split_of_a_stream_gives_the_same_messages(
        msgs in vec(message(), 1..5),
        sizes in vec(0usize..200, 1..20),
    ) {
        let mut bytes = Vec::new();
        for m in &msgs {
            bytes.extend_from_slice(encode_frame(m, DEFAULT_MAX_FRAME_LEN).unwrap().as_bytes());
        }
        let (bodies, err) = feed_chunked(&bytes, &sizes);
        prop_assert!(err.is_none());
        prop_assert_eq!(bodies.len(), msgs.len());
        for (body, msg) in bodies.iter().zip(&msgs) {
            prop_assert_eq!(&decode_body(body, &Limits::default()).unwrap(), msg);
        }
        // A single split at an arbitrary point.
        let split = sizes[0] % (bytes.len() + 1);
        let (bodies2, _) = feed_chunked(&bytes, &[split.max(1), bytes.len()]);
        prop_assert_eq!(bodies2, bodies);
    }

    #[test]
    fn arbitrary_bytes_never_panic_nor_allocate_past_the_limit(
        bytes in vec(any::<u8>(), 0..4096),
        sizes in vec(1usize..600, 1..8),
    ) {
        let mut result = None;
        let info = allocation_counter::measure(|| {
            let (bodies, err) = feed_chunked(&bytes, &sizes);
            for body in &bodies {
                let _ = decode_body(body, &Limits::default());
            }
            result = Some((bodies.len(), err));
        });
        prop_assert!(info.bytes_max <= DEFAULT_MAX_FRAME_LEN as u64, "peak heap {}", info.bytes_max);
        let (_, err) = result.unwrap();
        if let Some(e) = err {
            prop_assert!(e.is_fatal());
        }
    }

    #[test]
    fn arbitrary_bodies_never_panic_and_accepted_ones_round_trip(body in vec(any::<u8>(), 1..2048)) {
        let mut res = None;
        let info = allocation_counter::measure(|| res = Some(decode_body(&body, &Limits::default())));
        // Bounded by a small multiple of the body (rmpv values are ~40 bytes each).
        prop_assert!(info.bytes_max <= 64 * body.len() as u64 + 4096, "peak heap {}", info.bytes_max);
        if let Some(Ok(msg)) = res {
            let again = encode_frame(&msg, DEFAULT_MAX_FRAME_LEN).unwrap();
            prop_assert_eq!(decode_body(again.body(), &Limits::default()).unwrap(), msg);
        }
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        msg in message(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let frame = encode_frame(&msg, DEFAULT_MAX_FRAME_LEN).unwrap();
        let mut body = frame.body().to_vec();
        for (i, b) in flips {
            let i = i.index(body.len());
            body[i] = b;
        }
        if let Ok(m) = decode_body(&body, &Limits::default()) {
            // Whatever decodes is a valid message that encodes again.
            prop_assert!(encode_frame(&m, DEFAULT_MAX_FRAME_LEN).is_ok());
        }
    }
}

/// How many containers deep `v` is (a scalar is 0).
fn containers(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(containers).max().unwrap_or(0),
        Value::Map(entries) => 1 + entries.iter().map(|(_, v)| containers(v)).max().unwrap_or(0),
        _ => 0,
    }
}

/// A value nested exactly `depth` containers deep (arrays and maps alternating), with a
/// scalar at the bottom.
fn nested(depth: usize, leaf: Value) -> Value {
    (0..depth)
        .fold(leaf, |v, i| if i % 2 == 0 { Value::Array(vec![v]) } else { Value::Map(vec![(Value::from("k"), v)]) })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// SPEC §4: nothing the encoder accepts is dropped by the decoder. For every message the
    /// encoder takes (default limits, and the configured limits shared by both sides), the
    /// decoder returns the same message; the depth crosses the limit and the integers cover
    /// both ends of the i64 and u64 ranges.
    #[test]
    fn whatever_the_encoder_accepts_the_decoder_returns_unchanged(
        msg in message(),
        extra_depth in 0usize..80,
        leaf in prop_oneof![
            Just(Value::from(u64::MAX)),
            Just(Value::from(i64::MIN)),
            Just(Value::from(i64::MAX)),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            scalar(),
        ],
        max_depth in 2usize..=200,
    ) {
        let mut msg = msg;
        msg.data = Data::from_entries(
            msg.data.iter().map(|(k, v)| (k.to_owned(), v.clone())).chain([("deep".to_owned(), nested(extra_depth, leaf))]),
        );
        let shared = Limits { max_depth, ..Limits::default() };
        for limits in [Limits::default(), shared] {
            let encoded = if limits == Limits::default() {
                encode_frame(&msg, DEFAULT_MAX_FRAME_LEN)
            } else {
                socket_core::codec::encode_frame_with(&msg, &limits)
            };
            match encoded {
                Ok(frame) => {
                    let back = decode_body(frame.body(), &limits).map_err(|e| e.to_string());
                    prop_assert_eq!(back, Ok(msg.clone()), "accepted by the encoder, so the decoder returns it");
                }
                // Refused: then it really is beyond the limit the decoder applies.
                Err(e) => {
                    prop_assert_eq!(e.kind(), socket_core::ErrorKind::Message);
                    prop_assert!(e.to_string().contains("nested deeper than"), "{}", e);
                    let depth = 2 + msg.data.iter().map(|(_, v)| containers(v)).max().unwrap_or(0);
                    prop_assert!(depth > limits.max_depth.min(64), "{} refused at depth {}", e, depth);
                }
            }
        }
    }
}
