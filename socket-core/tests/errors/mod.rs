//! The public error: kind and Display of every internal error once converted.

use std::error::Error as _;

use socket_core::codec::{decode_body, encode_frame, DecodeError, Frame, Limits};
use socket_core::config::{ConfigError, ConfigLoader};
use socket_core::control::ErrorCode;
use socket_core::{Config, Data, Error, ErrorKind, EventName, SocketMessage};

fn source_text(e: &Error) -> String {
    e.source().map(ToString::to_string).unwrap_or_default()
}

#[test]
fn every_decode_error_is_a_message_error() {
    let errors = vec![
        (DecodeError::EmptyFrame, "frame length is 0: an empty frame is a protocol error", ErrorCode::Protocol, true),
        (
            DecodeError::FrameTooLarge { len: 2_000_000, max: 1 << 20 },
            "frame length 2000000 exceeds the limit of 1048576 bytes (max_message_size)",
            ErrorCode::MessageTooLarge,
            true,
        ),
        (DecodeError::Malformed { reason: "x".into() }, "malformed message: x", ErrorCode::Malformed, false),
        (
            DecodeError::UnexpectedEnd { offset: 3, path: "data.a".into() },
            "malformed message: the body ends inside a value at byte 3 (`data.a`)",
            ErrorCode::Malformed,
            false,
        ),
        (
            DecodeError::LengthExceedsBody { kind: "array", len: 9, remaining: 2, path: String::new() },
            "malformed message: array of length 9 at the top level does not fit in the 2 bytes left in the body",
            ErrorCode::Malformed,
            false,
        ),
        (
            DecodeError::InvalidMarker { byte: 0xc1, offset: 7, path: "data".into() },
            "malformed message: byte 0xc1 at offset 7 is not valid MessagePack (`data`)",
            ErrorCode::Malformed,
            false,
        ),
        (
            DecodeError::DepthLimitExceeded { max: 64, path: "data.x".into() },
            "malformed message: nesting deeper than 64 levels at `data.x`",
            ErrorCode::Malformed,
            false,
        ),
        (
            DecodeError::NonStringKey { found: "an integer", path: "data".into() },
            "malformed message: a map key is an integer, not a string, in the map at `data`",
            ErrorCode::Malformed,
            false,
        ),
        (
            DecodeError::InvalidUtf8 { path: "data.s".into() },
            "malformed message: invalid UTF-8 in a string at `data.s`",
            ErrorCode::Malformed,
            false,
        ),
        (
            DecodeError::ExtType { type_id: -1, path: "data.t".into() },
            "malformed message: ext type -1 at `data.t` is not supported",
            ErrorCode::Malformed,
            false,
        ),
        (
            DecodeError::DuplicateKey { key: "k".into(), path: String::new() },
            "malformed message: key \"k\" appears twice in the map at the top level",
            ErrorCode::Malformed,
            false,
        ),
        (
            DecodeError::TrailingBytes { count: 2 },
            "malformed message: 2 trailing bytes after the message map",
            ErrorCode::Malformed,
            false,
        ),
        (
            DecodeError::NotAMap { found: "an array" },
            "malformed message: the top level is an array, not a map",
            ErrorCode::Malformed,
            false,
        ),
        (
            DecodeError::MissingField { field: "data" },
            "malformed message: missing field data",
            ErrorCode::Malformed,
            false,
        ),
        (
            DecodeError::WrongType { field: "data", expected: "a map", found: "nil" },
            "malformed message: field data is nil, expected a map",
            ErrorCode::Malformed,
            false,
        ),
        (
            DecodeError::InvalidField { field: "message_type", reason: "unknown value \"ping\"".into() },
            "malformed message: field message_type: unknown value \"ping\"",
            ErrorCode::Malformed,
            false,
        ),
        (
            DecodeError::TooManyUnknownKeys { max: 16 },
            "malformed message: more than 16 unknown top-level keys",
            ErrorCode::Malformed,
            false,
        ),
    ];
    for (e, text, code, fatal) in errors {
        assert_eq!(e.to_string(), text);
        assert_eq!(e.error_code(), code, "{text}");
        assert_eq!(e.is_fatal(), fatal, "{text}");
        let public = Error::from(e.clone());
        assert_eq!(public.kind(), ErrorKind::Message);
        assert_eq!(public.to_string(), format!("cannot decode message: {text}"));
        let inner =
            public.source().and_then(|s| s.downcast_ref::<DecodeError>()).expect("the decode error is the source");
        assert_eq!(inner, &e);
    }
}

#[test]
fn field_and_path_accessors() {
    let e = DecodeError::NonStringKey { found: "nil", path: "data.a[2].b".into() };
    assert_eq!(e.field(), Some("data"));
    assert_eq!(e.path(), Some("data.a[2].b"));
    assert_eq!(DecodeError::MissingField { field: "event_name" }.field(), Some("event_name"));
    assert_eq!(DecodeError::TrailingBytes { count: 1 }.field(), None);
    assert_eq!(DecodeError::NonStringKey { found: "nil", path: String::new() }.field(), None);
}

#[test]
fn encode_errors_are_message_errors() {
    let event = EventName::new("e").unwrap();
    let cases: Vec<(rmpv::Value, &str)> = vec![
        (
            rmpv::Value::Map(vec![(rmpv::Value::from(1), rmpv::Value::Nil)]),
            "a map key is not a string at `data.v` (peers accept string keys only)",
        ),
        (rmpv::Value::Ext(-1, vec![0; 4]), "ext values are not supported by the protocol (found one at `data.v`)"),
        (
            // rmpv keeps invalid UTF-8 it decoded: build such a string that way.
            rmpv::Value::Array(vec![rmpv::decode::read_value(&mut &[0xa1, 0xff][..]).unwrap()]),
            "a string is not valid UTF-8 at `data.v[0]`",
        ),
    ];
    for (value, text) in cases {
        let msg = SocketMessage::data(event.clone(), Data::new().with("v", value));
        let err = encode_frame(&msg, 1 << 20).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Message);
        assert_eq!(err.to_string(), format!("cannot encode message: {text}"));
    }
    // Too deep for the one limit the decoder applies too (SPEC §4): refused by both encoders.
    let mut v = rmpv::Value::Nil;
    for _ in 0..70 {
        v = rmpv::Value::Array(vec![v]);
    }
    let msg = SocketMessage::data(event.clone(), Data::new().with("v", v));
    for err in [
        encode_frame(&msg, 1 << 20).unwrap_err(),
        socket_core::codec::encode_frame_with(&msg, &Limits::default()).unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Message);
        assert!(
            err.to_string().starts_with("cannot encode message: values are nested deeper than 64 levels at `data.v[0]"),
            "{err}"
        );
    }
    // Too large.
    let msg = SocketMessage::data(event, Data::new().with("v", "x".repeat(100)));
    let err = encode_frame(&msg, 64).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Message);
    assert!(err.to_string().contains("exceeds the limit of 64 bytes"), "{err}");
    assert!(err.to_string().contains("max_message_size"), "{err}");
    // An empty body.
    let err = Frame::from_body(&[], 64).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Message);
    assert!(decode_body(&[0xc0], &Limits::default()).is_err());
}

#[test]
fn every_config_error_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[socket\n").unwrap();
    let missing = dir.path().join("missing.toml");
    let mut invalid = Config::default();
    invalid.socket.buffer_size = 0;
    let errors: Vec<(Error, &str)> = vec![
        (
            ConfigLoader::new().env([("SOCKET__NOPE", "1")]).no_file_discovery().load().unwrap_err(),
            "unknown key socket.nope",
        ),
        (
            invalid.validate().unwrap_err(),
            "invalid value 0 for key socket.buffer_size: expected an integer in 1..=1048576 (1 MiB)",
        ),
        (ConfigLoader::new().file(&missing).env([("X", "")]).load().unwrap_err(), "does not exist (given explicitly)"),
        (ConfigLoader::new().file(&bad).env([("X", "")]).load().unwrap_err(), "cannot read configuration file"),
        (
            ConfigLoader::new().env([("X", "")]).no_file_discovery().set("socket..x", 1).load().unwrap_err(),
            "unknown key socket..x (set in code or on the command line)",
        ),
    ];
    for (err, text) in errors {
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(err.to_string().starts_with("invalid configuration: "), "{err}");
        assert!(source_text(&err).contains(text), "{err}");
        assert!(err.source().and_then(|s| s.downcast_ref::<ConfigError>()).is_some());
    }
}

#[test]
fn error_kinds_have_stable_names() {
    let kinds = [
        (ErrorKind::Connection, "connection"),
        (ErrorKind::Message, "message"),
        (ErrorKind::Validation, "validation"),
        (ErrorKind::Timeout, "timeout"),
        (ErrorKind::MaxConnections, "max-connections"),
        (ErrorKind::SendNotAllowed, "send-not-allowed"),
        (ErrorKind::Config, "config"),
        (ErrorKind::AddrInUse, "addr-in-use"),
        (ErrorKind::Closed, "closed"),
    ];
    for (kind, name) in kinds {
        assert_eq!(kind.to_string(), name);
        let e = Error::new(kind, "what happened");
        assert_eq!(e.kind(), kind);
        assert_eq!(e.to_string(), "what happened");
        assert_eq!(e.message(), "what happened");
    }
}

#[test]
fn debug_never_prints_payloads() {
    let msg = SocketMessage::data(EventName::new("e").unwrap(), Data::new().with("secret_key", "hunter2"));
    let debug = format!("{msg:?}");
    assert!(debug.contains("secret_key") && !debug.contains("hunter2"), "{debug}");
    let frame = encode_frame(&msg, 1 << 20).unwrap();
    assert!(!format!("{frame:?}").contains("hunter2"));
}
