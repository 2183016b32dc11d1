//! Interop with msgpack-python, the encoder of the Python origin (M12).
//!
//! Runs `python3 tests/python/interop.py`. Python and its `msgpack` module
//! are required: the test fails (it never skips) when either is missing,
//! saying how to install it.

use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::Duration;

use rmpv::Value;
use socket_core::codec::{decode_body, FrameDecoder, Limits};
use socket_core::{MessageType, SocketMessage};

use crate::codec::golden_dir;

fn run_python(args: &[&std::path::Path]) -> Output {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/interop.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script).args(args);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(cmd.output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!(
            "cannot run python3 ({e}): the interop check needs Python 3 with msgpack: install python3, then `pip install msgpack`"
        ),
        Err(_) => panic!("python3 interop.py did not finish within 60 s"),
    }
}

fn python_frames() -> Vec<SocketMessage> {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_file = dir.path().join("python.frames");
    let out = run_python(&[&golden_dir(), &out_file]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) {
        panic!("{stderr}the interop check needs the python module msgpack: run `pip install msgpack`");
    }
    assert!(out.status.success(), "interop.py failed ({}):\n{stderr}", out.status);
    let bytes = std::fs::read(&out_file).expect("python wrote its frames");
    let limits = Limits::default();
    let mut dec = FrameDecoder::new(limits);
    dec.feed(&bytes);
    let mut msgs = Vec::new();
    while let Some(body) = dec.next_frame().expect("python frames are well framed") {
        msgs.push(decode_body(body, &limits).unwrap_or_else(|e| panic!("python frame {} rejected: {e}", msgs.len())));
    }
    assert_eq!(dec.buffered(), 0);
    msgs
}

#[test]
fn golden_frames_decode_in_python_and_python_frames_decode_here() {
    let msgs = python_frames();
    assert_eq!(msgs.len(), 5);

    let m = &msgs[0];
    assert_eq!(m.event_name.as_str(), "wallpaper_progress");
    assert_eq!(m.message_type, MessageType::Data);
    assert_eq!(m.timestamp_ms, 1_795_749_010_000);
    assert_eq!(m.timestamp_iso, "2026-11-27T03:10:10+00:00", "the origin omits a zero fraction; kept as is");
    assert_eq!(m.data.get("progress").and_then(Value::as_u64), Some(50));
    assert_eq!(m.data.get_str("file"), Some("b.png"));
    let nested = m.data.get("nested").expect("nested map");
    let list = nested.as_map().unwrap().iter().find(|(k, _)| k.as_str() == Some("list")).unwrap().1.clone();
    assert_eq!(
        list,
        Value::Array(vec![Value::from(1), Value::F64(2.5), Value::Nil, Value::Boolean(true), Value::from("ü")])
    );

    assert_eq!(msgs[1].message_type, MessageType::Error);
    assert_eq!(msgs[1].data.get_str("code"), Some("slow_consumer"));
    assert_eq!(msgs[2].message_type, MessageType::Control);
    assert_eq!(msgs[2].data.get_str("action"), Some("reload"));
    assert_eq!(msgs[3].event_name.as_str(), "reordered", "key order does not matter; extra keys are ignored");
    assert_eq!(msgs[3].data.get("x").and_then(Value::as_u64), Some(1));

    let m = &msgs[4];
    assert_eq!(m.timestamp_ms, u64::MAX);
    assert_eq!(m.data.get("neg").and_then(Value::as_i64), Some(i64::MIN));
    assert_eq!(m.data.get("max").and_then(Value::as_u64), Some(u64::MAX));
    assert_eq!(m.data.get("f").and_then(Value::as_f64), Some(-0.25));
}
