//! Malformed input at the codec level: RELIABILITY.md M1-M10.

use std::time::{Duration, Instant};

use socket_core::codec::{
    decode_body, encode_frame, DecodeError, FrameDecoder, Limits, DEFAULT_MAX_FRAME_LEN, HEADER_LEN, MAX_UNKNOWN_KEYS,
};
use socket_core::control::ErrorCode;

use crate::codec::golden_messages;
use crate::util::{body_of, body_with_data, frame, mp_str, run_with_stack, scalar_fields};

fn limits() -> Limits {
    Limits::default()
}

fn decode(body: &[u8]) -> Result<socket_core::SocketMessage, DecodeError> {
    decode_body(body, &limits())
}

/// Asserts a body error: not fatal, answered with `malformed`.
fn body_error(body: &[u8]) -> DecodeError {
    let err = decode(body).expect_err("the body must be rejected");
    assert!(!err.is_fatal(), "{err}");
    assert_eq!(err.error_code(), ErrorCode::Malformed, "{err}");
    err
}

// ---- M1: oversize lengths ----

#[test]
fn oversize_lengths_fail_on_the_header_with_little_heap() {
    for len in [DEFAULT_MAX_FRAME_LEN as u64 + 1, 1 << 31, u32::MAX as u64] {
        let mut dec = FrameDecoder::new(limits());
        let mut result = None;
        let info = allocation_counter::measure(|| {
            // The header and a first chunk of body, as a reader would deliver them.
            let buf = dec.spare(4096);
            buf[..4].copy_from_slice(&(len as u32).to_be_bytes());
            dec.commit(4 + 100);
            result = Some(dec.next_frame().map(|f| f.map(<[u8]>::len)));
        });
        let err = result.unwrap().expect_err("oversize frame");
        assert_eq!(err, DecodeError::FrameTooLarge { len, max: DEFAULT_MAX_FRAME_LEN });
        assert!(err.is_fatal());
        assert_eq!(err.error_code(), ErrorCode::MessageTooLarge);
        assert!(err.to_string().contains(&len.to_string()), "{err}");
        assert!(info.bytes_max < 64 << 10, "peak heap {} bytes for length {len}", info.bytes_max);
        // The stream stays failed.
        assert_eq!(dec.next_frame().unwrap_err(), err);
    }
}

#[test]
fn the_limit_itself_is_accepted() {
    let mut dec = FrameDecoder::new(Limits { max_frame_len: 100, ..limits() });
    let mut bytes = frame(&[0xc0; 100]);
    bytes.extend_from_slice(&frame(&[0xc0; 101]));
    dec.feed(&bytes);
    assert_eq!(dec.next_frame().unwrap().map(<[u8]>::len), Some(100));
    assert_eq!(dec.next_frame().unwrap_err(), DecodeError::FrameTooLarge { len: 101, max: 100 });
}

#[test]
fn error_comes_before_any_body_byte() {
    let mut dec = FrameDecoder::new(limits());
    dec.feed(&(u32::MAX).to_be_bytes());
    assert!(matches!(dec.next_frame(), Err(DecodeError::FrameTooLarge { .. })));
}

#[test]
fn http_request_read_as_a_length() {
    // "GET " is 0x47455420 = 1,195,725,856 bytes.
    let mut dec = FrameDecoder::new(limits());
    dec.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let err = dec.next_frame().unwrap_err();
    assert_eq!(err, DecodeError::FrameTooLarge { len: 0x4745_5420, max: DEFAULT_MAX_FRAME_LEN });
    assert_eq!(err.error_code(), ErrorCode::MessageTooLarge);
}

// ---- M2: zero length ----

#[test]
fn zero_length_is_a_fatal_protocol_error() {
    let mut dec = FrameDecoder::new(limits());
    dec.feed(&[0, 0, 0, 0]);
    dec.feed(encode_frame(&golden_messages()[0].1, 1 << 20).unwrap().as_bytes());
    let err = dec.next_frame().unwrap_err();
    assert_eq!(err, DecodeError::EmptyFrame);
    assert!(err.is_fatal());
    assert_eq!(err.error_code(), ErrorCode::Protocol);
    // Never a message after the error, even though a valid frame follows.
    assert_eq!(dec.next_frame().unwrap_err(), DecodeError::EmptyFrame);
    assert_eq!(decode(&[]).unwrap_err(), DecodeError::UnexpectedEnd { offset: 0, path: String::new() });
}

// ---- M3: truncation ----

#[test]
fn truncated_frames_never_yield_a_message() {
    for (name, msg) in golden_messages() {
        let frame = encode_frame(&msg, 1 << 20).unwrap();
        let bytes = frame.as_bytes();
        for cut in 0..bytes.len() {
            let mut dec = FrameDecoder::new(limits());
            dec.feed(&bytes[..cut]);
            assert_eq!(dec.next_frame().unwrap(), None, "{name} cut at {cut}");
            assert_eq!(dec.in_frame(), cut > 0, "{name} cut at {cut}");
            assert_eq!(dec.buffered(), cut);
        }
        // The body cut at every offset (as if a shorter length had been announced).
        let body = frame.body();
        for cut in 0..body.len() {
            let err = decode(&body[..cut]).expect_err("truncated body");
            assert!(!err.is_fatal());
            assert!(
                matches!(err, DecodeError::UnexpectedEnd { .. } | DecodeError::LengthExceedsBody { .. }),
                "{name} cut at {cut}: {err}"
            );
        }
    }
}

#[test]
fn half_a_header_is_in_frame_but_no_message() {
    let mut dec = FrameDecoder::new(limits());
    dec.feed(&[0, 0]);
    assert_eq!(dec.next_frame().unwrap(), None);
    assert!(dec.in_frame());
    assert_eq!(dec.needed(), Some(2));
}

// ---- M4: not MessagePack, not a map ----

#[test]
fn reserved_byte_is_malformed_and_the_stream_stays_in_sync() {
    let good = encode_frame(&golden_messages()[0].1, 1 << 20).unwrap();
    let mut bytes = frame(&[0xc1]);
    bytes.extend_from_slice(good.as_bytes());
    let mut dec = FrameDecoder::new(limits());
    dec.feed(&bytes);
    let bad = dec.next_frame().unwrap().unwrap().to_vec();
    let err = body_error(&bad);
    assert_eq!(err, DecodeError::InvalidMarker { byte: 0xc1, offset: 0, path: String::new() });
    assert_eq!(err.to_string(), "malformed message: byte 0xc1 at offset 0 is not valid MessagePack (the top level)");
    let next = dec.next_frame().unwrap().expect("the next frame is intact");
    assert_eq!(decode(next).unwrap(), golden_messages()[0].1);
}

#[test]
fn reserved_byte_inside_data_names_the_path() {
    let err = body_error(&body_with_data(&[0x81, 0xa1, b'k', 0x91, 0xc1], &[]));
    assert_eq!(err.path(), Some("data.k[0]"));
    assert_eq!(err.field(), Some("data"));
}

#[test]
fn top_level_not_a_map() {
    for (body, found) in [
        (vec![0xc0], "nil"),
        (vec![0x01], "an integer"),
        (vec![0x90], "an array"),
        (mp_str("hello"), "a string"),
        (vec![0xc4, 0x00], "binary data"),
        (vec![0xcb, 0, 0, 0, 0, 0, 0, 0, 0], "a float"),
        (vec![0xc3], "a boolean"),
    ] {
        let err = body_error(&body);
        assert_eq!(err, DecodeError::NotAMap { found }, "{body:02x?}");
        assert!(err.to_string().contains("not a map"));
    }
}

// ---- M5: huge declared lengths ----

/// Runs `f` a few times and returns the fastest run: timing in a shared CI
/// box is noisy, the best of three is what the code costs.
fn fastest<T>(mut f: impl FnMut() -> T) -> (T, Duration) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..3 {
        let start = Instant::now();
        let v = f();
        best = best.min(start.elapsed());
        out = Some(v);
    }
    (out.unwrap(), best)
}

#[test]
fn huge_declared_lengths_fail_fast_without_allocating() {
    let max = u32::MAX.to_be_bytes();
    let headers: Vec<(&str, Vec<u8>)> = vec![
        ("array", [&[0xdd][..], &max].concat()),
        ("map", [&[0xdf][..], &max].concat()),
        ("string", [&[0xdb][..], &max].concat()),
        ("binary", [&[0xc6][..], &max].concat()),
        ("array", vec![0xdc, 0xff, 0xff]),
        ("map", vec![0xde, 0xff, 0xff]),
        ("string", vec![0xda, 0xff, 0xff]),
        ("binary", vec![0xc5, 0xff, 0xff]),
    ];
    for (kind, header) in headers {
        // In `data`, inside a frame padded with trailing nils: to 1 MiB for
        // the 32-bit lengths, to 1,000 bytes for the 16-bit ones.
        let size = if header.len() == 5 { DEFAULT_MAX_FRAME_LEN } else { 1000 };
        let mut body = body_with_data(&[&[0x81, 0xa1, b'v'][..], &header].concat(), &[]);
        body.resize(size, 0xc0);
        let ((err, info), took) = fastest(|| {
            let mut err = None;
            let info = allocation_counter::measure(|| err = Some(decode(&body).unwrap_err()));
            (err.unwrap(), info)
        });
        assert!(matches!(&err, DecodeError::LengthExceedsBody { kind: k, .. } if *k == kind), "{kind}: {err}");
        assert_eq!(err.path(), Some("data.v"));
        assert!(took < Duration::from_millis(10), "{kind}: took {took:?}");
        assert!(info.bytes_max < 64 << 10, "{kind}: peak heap {} bytes", info.bytes_max);

        // And as the top level itself.
        let mut body = header.clone();
        body.resize(1000, 0xc0);
        assert!(matches!(
            decode(&body).unwrap_err(),
            DecodeError::LengthExceedsBody { .. } | DecodeError::NotAMap { .. }
        ));
    }
}

#[test]
fn nested_array16_chains_are_cheap() {
    // 60 nested arrays each claiming 65,535 elements, in a 1 MiB frame whose
    // innermost array starts with a string filling the frame: every claim
    // fits the bytes left, so each level is entered, then the data runs out.
    let mut value = Vec::new();
    for _ in 0..60 {
        value.extend_from_slice(&[0xdc, 0xff, 0xff]);
    }
    let prefix = body_with_data(&[&[0x81, 0xa1, b'v'][..], &value].concat(), &[]);
    let str_len = DEFAULT_MAX_FRAME_LEN - prefix.len() - 5;
    let mut body = prefix;
    body.push(0xdb);
    body.extend_from_slice(&(str_len as u32).to_be_bytes());
    body.resize(DEFAULT_MAX_FRAME_LEN, b'a');
    let ((err, info), took) = fastest(|| {
        let mut err = None;
        let info = allocation_counter::measure(|| err = Some(decode(&body).unwrap_err()));
        (err.unwrap(), info)
    });
    assert!(matches!(err, DecodeError::UnexpectedEnd { .. }), "{err}");
    assert!(took < Duration::from_millis(10), "took {took:?}");
    // The one string (the frame's size) plus small pre-allocations per level.
    let bound = DEFAULT_MAX_FRAME_LEN + (1 << 20);
    assert!(info.bytes_max <= bound as u64, "peak heap {} bytes", info.bytes_max);
}

#[test]
fn map_length_counts_two_bytes_per_entry() {
    // A map of 3 entries needs at least 6 bytes: 5 are not enough.
    let err = body_error(&body_with_data(&[0x83, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0], &[]));
    assert_eq!(err, DecodeError::LengthExceedsBody { kind: "map", len: 3, remaining: 5, path: "data".to_owned() });
    assert_eq!(
        err.to_string(),
        "malformed message: map of length 3 at `data` does not fit in the 5 bytes left in the body"
    );
}

// ---- M6: depth ----

/// A body whose `data.v` holds arrays nested so that the deepest container
/// is at `depth` (the top-level map is 1, `data` 2).
fn nested_body(depth: usize) -> Vec<u8> {
    let arrays = depth - 2;
    let mut value = vec![0x91; arrays - 1];
    value.push(0x90);
    body_with_data(&[&[0x81, 0xa1, b'v'][..], &value].concat(), &[])
}

#[test]
fn depth_limits_on_a_2_mib_stack() {
    run_with_stack(2 << 20, Duration::from_secs(60), || {
        let msg = decode(&nested_body(64)).expect("depth 64 is accepted");
        // Re-encoding the accepted message works too.
        encode_frame(&msg, 1 << 20).expect("depth 64 encodes");
        for depth in [65, 1024, 100_000] {
            let err = decode(&nested_body(depth)).expect_err("too deep");
            assert!(matches!(err, DecodeError::DepthLimitExceeded { max: 64, .. }), "{depth}: {err}");
            assert_eq!(err.field(), Some("data"));
            assert!(!err.is_fatal());
        }
        // 100,000 levels of 0x91 as the whole body: not a map, no recursion.
        let err = decode(&vec![0x91; 100_000]).unwrap_err();
        assert_eq!(err, DecodeError::NotAMap { found: "an array" });
        // The same nesting under an unknown top-level key is rejected too.
        let mut deep = vec![0x91; 100_000];
        deep.push(0xc0);
        let mut fields = scalar_fields();
        fields.push((mp_str("data"), vec![0x80]));
        fields.push((mp_str("unknown"), deep));
        let err = decode(&body_of(&fields)).unwrap_err();
        assert!(matches!(err, DecodeError::DepthLimitExceeded { .. }), "{err}");
        assert_eq!(err.field(), Some("unknown"));
    });
}

#[test]
fn configured_depth_and_the_ceiling() {
    run_with_stack(2 << 20, Duration::from_secs(60), || {
        // The ceiling is the one limit of SPEC §4 (64), shared with the encoder: a limit
        // above it counts as the ceiling.
        let deep = Limits { max_depth: 128, ..Limits::default() };
        assert!(decode_body(&nested_body(64), &deep).is_ok());
        assert!(matches!(decode_body(&nested_body(65), &deep), Err(DecodeError::DepthLimitExceeded { max: 64, .. })));
        let huge = Limits { max_depth: usize::MAX, ..Limits::default() };
        assert!(matches!(
            decode_body(&nested_body(100_000), &huge),
            Err(DecodeError::DepthLimitExceeded { max: 64, .. })
        ));
        let shallow = Limits { max_depth: 2, ..Limits::default() };
        assert!(decode_body(&body_with_data(&[0x81, 0xa1, b'v', 0x01], &[]), &shallow).is_ok());
        assert!(decode_body(&nested_body(3), &shallow).is_err());
    });
}

#[test]
fn error_path_is_bounded() {
    let err = decode(&nested_body(100_000)).unwrap_err();
    let path = err.path().unwrap();
    assert!(path.starts_with("data.v[0][0]"), "{path}");
    assert!(path.len() <= 200, "{} bytes", path.len());
    assert_eq!(err.to_string().len(), err.to_string().chars().map(char::len_utf8).sum::<usize>(), "valid text");
}

// ---- M7: non-string keys ----

#[test]
fn non_string_key_at_the_top_level() {
    let mut fields = scalar_fields();
    fields.push((mp_str("data"), vec![0x80]));
    fields.push((vec![0x01], vec![0xc0]));
    let err = body_error(&body_of(&fields));
    assert_eq!(err, DecodeError::NonStringKey { found: "an integer", path: String::new() });
    assert_eq!(
        err.to_string(),
        "malformed message: a map key is an integer, not a string, in the map at the top level"
    );
}

#[test]
fn non_string_keys_inside_data() {
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (vec![0x81, 0x01, 0xc0], "an integer", "data"),
        (vec![0x81, 0xc0, 0xc0], "nil", "data"),
        (vec![0x81, 0xc4, 0x01, b'k', 0xc0], "binary data", "data"),
        (vec![0x81, 0x90, 0xc0], "an array", "data"),
        (vec![0x81, 0xa1, b'a', 0x81, 0xa1, b'b', 0x81, 0xff, 0xc0], "an integer", "data.a.b"),
        (vec![0x81, 0xa1, b'a', 0x92, 0xc0, 0x81, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0xc0], "a float", "data.a[1]"),
    ];
    for (data, found, path) in cases {
        let err = body_error(&body_with_data(&data, &[]));
        assert_eq!(err, DecodeError::NonStringKey { found, path: path.to_owned() }, "{data:02x?}");
        assert_eq!(err.field(), Some("data"));
    }
}

#[test]
fn key_names_in_paths_are_quoted_when_unusual() {
    let err = body_error(&body_with_data(&[0x81, 0xa3, b'a', b'.', b'b', 0x81, 0x01, 0xc0], &[]));
    assert_eq!(err.path(), Some("data[\"a.b\"]"));
}

// ---- M8: schema ----

#[test]
fn each_missing_field_is_named() {
    for skip in ["event_name", "timestamp_ms", "timestamp_iso", "message_type", "data"] {
        let mut fields = scalar_fields();
        fields.push((mp_str("data"), vec![0x80]));
        fields.retain(|(k, _)| *k != mp_str(skip));
        let err = body_error(&body_of(&fields));
        assert_eq!(err, DecodeError::MissingField { field: skip });
        assert_eq!(err.field(), Some(skip));
        assert_eq!(err.to_string(), format!("malformed message: missing field {skip}"));
    }
}

#[test]
fn each_wrong_type_is_named() {
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("event_name", vec![0x01], "a string", "an integer"),
        ("timestamp_ms", mp_str("1"), "an unsigned integer", "a string"),
        ("timestamp_ms", vec![0xcb, 0, 0, 0, 0, 0, 0, 0, 0], "an unsigned integer", "a float"),
        ("timestamp_iso", vec![0xc0], "a string", "nil"),
        ("message_type", vec![0x90], "a string", "an array"),
        ("data", vec![0x90], "a map", "an array"),
        ("data", mp_str("x"), "a map", "a string"),
        ("data", vec![0xc0], "a map", "nil"),
    ];
    for (field, value, expected, found) in cases {
        let mut fields = scalar_fields();
        fields.push((mp_str("data"), vec![0x80]));
        for (k, v) in &mut fields {
            if *k == mp_str(field) {
                *v = value.clone();
            }
        }
        let err = body_error(&body_of(&fields));
        assert_eq!(err, DecodeError::WrongType { field, expected, found });
        assert_eq!(err.to_string(), format!("malformed message: field {field} is {found}, expected {expected}"));
    }
}

#[test]
fn message_type_must_be_exact() {
    for bad in ["ping", "DATA", "Data", "", "data "] {
        let mut fields = scalar_fields();
        fields[3].1 = mp_str(bad);
        fields.push((mp_str("data"), vec![0x80]));
        let err = body_error(&body_of(&fields));
        assert!(matches!(err, DecodeError::InvalidField { field: "message_type", .. }), "{bad}: {err}");
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
    }
    for good in ["data", "error", "control"] {
        let mut fields = scalar_fields();
        fields[3].1 = mp_str(good);
        fields.push((mp_str("data"), vec![0x80]));
        assert_eq!(decode(&body_of(&fields)).unwrap().message_type.as_str(), good);
    }
}

#[test]
fn invalid_event_name_and_negative_timestamp() {
    let mut fields = scalar_fields();
    fields[0].1 = mp_str("../etc/passwd");
    fields.push((mp_str("data"), vec![0x80]));
    let err = body_error(&body_of(&fields));
    assert!(matches!(err, DecodeError::InvalidField { field: "event_name", .. }), "{err}");
    assert!(err.to_string().contains("invalid characters"), "{err}");

    let mut fields = scalar_fields();
    fields[1].1 = vec![0xff];
    fields.push((mp_str("data"), vec![0x80]));
    let err = body_error(&body_of(&fields));
    assert!(matches!(err, DecodeError::InvalidField { field: "timestamp_ms", .. }), "{err}");

    // A non-negative signed integer is accepted as a timestamp.
    let mut fields = scalar_fields();
    fields[1].1 = vec![0xd3, 0, 0, 0, 0, 0, 0, 0x10, 0];
    fields.push((mp_str("data"), vec![0x80]));
    assert_eq!(decode(&body_of(&fields)).unwrap().timestamp_ms, 4096);
}

#[test]
fn unknown_keys_are_ignored_up_to_the_cap() {
    let mut fields = scalar_fields();
    fields.push((mp_str("data"), vec![0x80]));
    for i in 0..MAX_UNKNOWN_KEYS {
        fields.push((mp_str(&format!("extra{i}")), vec![0x92, 0x01, 0xa1, b'x']));
    }
    let msg = decode(&body_of(&fields)).expect("16 unknown keys are fine");
    assert!(msg.data.is_empty());
    fields.push((mp_str("one_too_many"), vec![0xc0]));
    assert_eq!(body_error(&body_of(&fields)), DecodeError::TooManyUnknownKeys { max: 16 });
}

// ---- M9: trailing bytes ----

#[test]
fn trailing_bytes_are_rejected() {
    let body = encode_frame(&golden_messages()[0].1, 1 << 20).unwrap().body().to_vec();
    for extra in [&[0xc0][..], &[0x00, 0x00], &body[..]] {
        let err = body_error(&[&body[..], extra].concat());
        assert_eq!(err, DecodeError::TrailingBytes { count: extra.len() });
    }
}

// ---- M10: UTF-8, ext types, duplicate keys ----

#[test]
fn invalid_utf8_is_rejected_everywhere() {
    let bad = [0xa2, 0xc3, 0x28];
    let err = body_error(&body_with_data(&[&[0x81, 0xa1, b'k'][..], &bad].concat(), &[]));
    assert_eq!(err, DecodeError::InvalidUtf8 { path: "data.k".to_owned() });
    let err = body_error(&body_with_data(&[&[0x81][..], &bad, &[0xc0]].concat(), &[]));
    assert_eq!(err, DecodeError::InvalidUtf8 { path: "data".to_owned() });
    let mut fields = scalar_fields();
    fields[0].1 = bad.to_vec();
    fields.push((mp_str("data"), vec![0x80]));
    assert_eq!(body_error(&body_of(&fields)), DecodeError::InvalidUtf8 { path: "event_name".to_owned() });
    // Overlong encodings and lone surrogates are invalid too.
    for bad in [&[0xa2, 0xc0, 0x80][..], &[0xa3, 0xed, 0xa0, 0x80]] {
        let err = body_error(&body_with_data(&[&[0x81, 0xa1, b'k'][..], bad].concat(), &[]));
        assert!(matches!(err, DecodeError::InvalidUtf8 { .. }), "{err}");
    }
}

#[test]
fn ext_types_are_rejected() {
    let cases: Vec<(Vec<u8>, i8)> = vec![
        (vec![0xd6, 0xff, 0, 0, 0, 0], -1),                       // timestamp 32
        (vec![0xd7, 0xff, 0, 0, 0, 0, 0, 0, 0, 0], -1),           // timestamp 64
        ([vec![0xc7, 12, 0xff], vec![0; 12]].concat(), -1),       // timestamp 96
        (vec![0xd4, 0x05, 0x00], 5),                              // fixext 1, unknown type
        ([vec![0xc8, 0, 3, 0x7f], vec![1, 2, 3]].concat(), 127),  // ext 16
        ([vec![0xc9, 0, 0, 0, 1, 0x80], vec![1]].concat(), -128), // ext 32
    ];
    for (ext, type_id) in cases {
        let err = body_error(&body_with_data(&[&[0x81, 0xa1, b'k'][..], &ext].concat(), &[]));
        assert_eq!(err, DecodeError::ExtType { type_id, path: "data.k".to_owned() }, "{ext:02x?}");
        assert!(err.to_string().contains(&format!("ext type {type_id}")));
    }
    // As a key.
    let err = body_error(&body_with_data(&[0x81, 0xd4, 0x01, 0x00, 0xc0], &[]));
    assert!(matches!(err, DecodeError::ExtType { type_id: 1, .. }), "{err}");
}

#[test]
fn duplicate_keys_are_rejected() {
    // In `data`.
    let err = body_error(&body_with_data(&[0x82, 0xa1, b'k', 0x01, 0xa1, b'k', 0x02], &[]));
    assert_eq!(err, DecodeError::DuplicateKey { key: "k".to_owned(), path: "data".to_owned() });
    assert_eq!(err.to_string(), "malformed message: key \"k\" appears twice in the map at `data`");
    // Nested.
    let err = body_error(&body_with_data(&[0x81, 0xa1, b'a', 0x82, 0xa1, b'b', 0xc0, 0xa1, b'b', 0xc3], &[]));
    assert_eq!(err, DecodeError::DuplicateKey { key: "b".to_owned(), path: "data.a".to_owned() });
    // A large map (hash-checked), the repeat at the end.
    let mut data = vec![0xde, 0x00, 100];
    for i in 0..99 {
        data.extend_from_slice(&mp_str(&format!("key{i}")));
        data.push(0xc0);
    }
    data.extend_from_slice(&mp_str("key42"));
    data.push(0xc0);
    let err = body_error(&body_with_data(&data, &[]));
    assert_eq!(err, DecodeError::DuplicateKey { key: "key42".to_owned(), path: "data".to_owned() });
    // Known and unknown top-level keys.
    for key in ["event_name", "data", "extra"] {
        let mut fields = scalar_fields();
        fields.push((mp_str("data"), vec![0x80]));
        fields.push((mp_str("extra"), vec![0xc0]));
        fields.push((mp_str(key), fields.iter().find(|(k, _)| *k == mp_str(key)).unwrap().1.clone()));
        let err = body_error(&body_of(&fields));
        assert_eq!(err, DecodeError::DuplicateKey { key: key.to_owned(), path: String::new() });
    }
}

#[test]
fn frame_header_len_is_four() {
    assert_eq!(HEADER_LEN, 4);
}
