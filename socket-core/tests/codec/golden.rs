//! Golden bytes: the exact encoding of one DATA, one ERROR and one CONTROL
//! frame is pinned in `tests/golden/*.frame` (read by the Python interop
//! check and shown in `docs/protocol.md`).
//!
//! After an intended change of the encoding, rewrite the files with
//! `SOCKET_BLESS=1 cargo test -p socket-core --test index codec::golden`
//! and update the hex example in `docs/protocol.md`.

use std::path::PathBuf;

use rmpv::Value;
use socket_core::codec::{decode_body, encode_frame, Limits};
use socket_core::control::{Control, ErrorCode};
use socket_core::{Data, EventName, MessageType, SocketMessage};

pub(crate) fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("golden")
}

fn when() -> jiff::Timestamp {
    "2026-11-27T03:10:10.123456Z".parse().expect("valid timestamp")
}

/// The golden messages, by file stem.
pub(crate) fn golden_messages() -> Vec<(&'static str, SocketMessage)> {
    let utc = jiff::tz::TimeZone::UTC;
    let data = Data::new()
        .with("file", "a.png")
        .with("percent", 42)
        .with("ratio", 0.5)
        .with("delta", -7)
        .with("big", 70000)
        .with("done", false)
        .with("note", Value::Nil)
        .with("tags", Value::Array(vec![Value::from("x"), Value::from(-200)]))
        .with("size", Value::Map(vec![(Value::from("w"), Value::from(1920)), (Value::from("h"), Value::from(1080))]))
        .with("thumb", Value::Binary(vec![0, 1, 2, 255]));
    let data_msg =
        SocketMessage::at(EventName::new("wallpaper_change").unwrap(), MessageType::Data, data, when(), &utc);
    let error_msg = SocketMessage::at(
        EventName::new("wallpaper_change").unwrap(),
        MessageType::Error,
        Data::new().with("code", ErrorCode::Malformed.as_str()).with("error", "frame dropped: top level is not a map"),
        when(),
        &utc,
    );
    let hello = Control::Hello { protocol: 1, client_name: Some("status-bar".to_owned()) };
    let control_msg = SocketMessage::at(
        EventName::new("wallpaper_change").unwrap(),
        MessageType::Control,
        hello.to_data(),
        when(),
        &utc,
    );
    vec![("data", data_msg), ("error", error_msg), ("control", control_msg)]
}

/// The encoded golden frames, checked against the files.
#[test]
fn golden_frames_match_the_files() {
    let bless = std::env::var_os("SOCKET_BLESS").is_some();
    for (name, msg) in golden_messages() {
        let frame = encode_frame(&msg, 1 << 20).expect("golden message encodes");
        let path = golden_dir().join(format!("{name}.frame"));
        if bless {
            std::fs::write(&path, frame.as_bytes()).expect("write golden file");
        }
        let expected = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        assert_eq!(
            hex(frame.as_bytes()),
            hex(&expected),
            "the encoding of the {name} frame changed; if intended, run with SOCKET_BLESS=1 and update docs/protocol.md"
        );
        let decoded = decode_body(frame.body(), &Limits::default()).expect("golden frame decodes");
        assert_eq!(decoded, msg);
    }
}

/// The CONTROL frame, spelled out byte by byte (the worked example of `docs/protocol.md`).
#[test]
fn control_frame_bytes_spelled_out() {
    let msg = &golden_messages()[2].1;
    let frame = encode_frame(msg, 1 << 20).unwrap();
    let mut expected = Vec::new();
    expected.extend_from_slice(&[0x00, 0x00, 0x00, 0x00]); // length, patched below
    expected.push(0x85); // map of 5
    expected.extend_from_slice(b"\xaaevent_name");
    expected.extend_from_slice(b"\xb0wallpaper_change");
    expected.extend_from_slice(b"\xactimestamp_ms");
    expected.extend_from_slice(&[0xcf, 0x00, 0x00, 0x01, 0xa2, 0x1a, 0xfb, 0x5a, 0xcb]); // uint64 1795749010123
    expected.extend_from_slice(b"\xadtimestamp_iso");
    expected.extend_from_slice(b"\xd9\x202026-11-27T03:10:10.123456+00:00");
    expected.extend_from_slice(b"\xacmessage_type");
    expected.extend_from_slice(b"\xa7control");
    expected.extend_from_slice(b"\xa4data");
    expected.push(0x83); // map of 3, in insertion order
    expected.extend_from_slice(b"\xa7control\xa5hello");
    expected.extend_from_slice(b"\xa8protocol\x01");
    expected.extend_from_slice(b"\xabclient_name\xaastatus-bar");
    let len = (expected.len() - 4) as u32;
    expected[..4].copy_from_slice(&len.to_be_bytes());
    assert_eq!(hex(frame.as_bytes()), hex(&expected));
}

/// Integers take their smallest encoding, as msgpack-python's `packb` does.
#[test]
fn integers_use_the_smallest_encoding() {
    let cases: Vec<(Value, Vec<u8>)> = vec![
        (Value::from(0), vec![0x00]),
        (Value::from(127), vec![0x7f]),
        (Value::from(128), vec![0xcc, 0x80]),
        (Value::from(256), vec![0xcd, 0x01, 0x00]),
        (Value::from(65536), vec![0xce, 0x00, 0x01, 0x00, 0x00]),
        (Value::from(1u64 << 32), vec![0xcf, 0, 0, 0, 1, 0, 0, 0, 0]),
        (Value::from(-1), vec![0xff]),
        (Value::from(-32), vec![0xe0]),
        (Value::from(-33), vec![0xd0, 0xdf]),
        (Value::from(-129), vec![0xd1, 0xff, 0x7f]),
        (Value::from(-32769), vec![0xd2, 0xff, 0xff, 0x7f, 0xff]),
        (Value::from(i64::MIN), vec![0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]),
        (Value::F32(1.5), vec![0xca, 0x3f, 0xc0, 0, 0]),
        (Value::F64(1.5), vec![0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]),
        (Value::from("x".repeat(31).as_str()), [vec![0xbf], vec![b'x'; 31]].concat()),
        (Value::from("x".repeat(32).as_str()), [vec![0xd9, 32], vec![b'x'; 32]].concat()),
        (Value::from("x".repeat(256).as_str()), [vec![0xda, 1, 0], vec![b'x'; 256]].concat()),
        (Value::Binary(vec![7; 3]), vec![0xc4, 3, 7, 7, 7]),
        (Value::Binary(vec![7; 256]), [vec![0xc5, 1, 0], vec![7; 256]].concat()),
        (Value::Array(vec![Value::Nil; 16]), [vec![0xdc, 0, 16], vec![0xc0; 16]].concat()),
    ];
    for (value, bytes) in cases {
        let msg = SocketMessage::at(
            EventName::new("e").unwrap(),
            MessageType::Data,
            Data::new().with("v", value.clone()),
            when(),
            &jiff::tz::TimeZone::UTC,
        );
        let frame = encode_frame(&msg, 1 << 20).unwrap();
        let body = frame.body();
        // The value is the last thing in the body.
        assert!(body.ends_with(&bytes), "{value:?}: expected {} at the end of {}", hex(&bytes), hex(body));
        assert_eq!(decode_body(body, &Limits::default()).unwrap(), msg);
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

/// A NaN float (found by the decode_frame fuzz target: NaN != NaN broke its
/// equality check) keeps its exact bits through decode and encode.
#[test]
fn nan_keeps_its_bits() {
    let mut body = encode_frame(&golden_messages()[0].1, 1 << 20).unwrap().body().to_vec();
    let at = body.windows(9).position(|w| w == [0xcb, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0]).expect("ratio 0.5");
    body[at + 1..at + 9].copy_from_slice(&[0xff; 8]);
    let msg = decode_body(&body, &Limits::default()).unwrap();
    assert!(msg.data.get("ratio").and_then(Value::as_f64).is_some_and(f64::is_nan));
    let again = encode_frame(&msg, 1 << 20).unwrap();
    assert_eq!(again.body(), &body[..]);
}
