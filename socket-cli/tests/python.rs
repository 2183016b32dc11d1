//! Interop with an independent Python client (`tests/python/client.py`, only the `msgpack`
//! package, written from the protocol documentation) over the Unix socket of
//! `socketctl serve`.

use std::path::PathBuf;
use std::process::Command;

use serde_json::json;

use crate::util::{check_wire_keys, data, fail, Proc, TestEnv, TestResult};

fn python() -> TestResult<&'static str> {
    let ok =
        Command::new("python3").args(["-c", "import msgpack"]).output().map(|o| o.status.success()).unwrap_or(false);
    if ok {
        Ok("python3")
    } else {
        Err(fail(
            "the Python interop test needs python3 with the msgpack package: run `pip install msgpack` (this test fails rather than skips)",
        ))
    }
}

fn client_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("python").join("client.py")
}

#[test]
fn python_client_interoperates() -> TestResult {
    let python = python()?;
    let env = TestEnv::new()?;
    let event = "py_interop";
    // Two slots: the Python client and one `socketctl listen`; a third connection is refused.
    let mut serve = env.spawn(&["serve", event, "--relay", "--max-connections", "2"])?;
    serve.expect_event("listening")?;

    let mut cmd = Command::new(python);
    cmd.arg(client_script()).arg(env.socket_path(event)).arg(event);
    let mut py = Proc::spawn(cmd, "client.py".to_owned())?;

    // hello -> welcome, as the first frame.
    let welcome = py.json()?;
    assert_eq!(welcome["step"], "welcome", "{welcome}");
    let py_id = welcome["client_id"].clone();
    let connected = serve.expect_connected(py.pid())?;
    assert_eq!(connected["client_id"], py_id, "welcome names the id serve reports");
    assert_eq!(connected["client_name"], "python-interop");

    // A broadcast from serve's stdin reaches the Python client.
    serve.write_line(r#"{"from": "serve", "n": 1, "raw": {"$binary": "AAE="}}"#)?;
    py.write_line("broadcast")?;
    let got = py.json()?;
    assert_eq!(got["step"], "broadcast", "{got}");
    assert_eq!(got["event_name"], event);
    assert_eq!(got["n"], 1);
    assert_eq!(got["raw_hex"], "0001", "{{\"$binary\"}} arrives as MessagePack bin");

    // A message sent by the Python client is relayed to a `socketctl listen`.
    let mut listen = env.spawn(&["listen", event, "--timeout", "10"])?;
    serve.expect_connected(listen.pid())?;
    py.write_line("relay")?;
    assert_eq!(py.json()?["step"], "relay");
    let relayed = listen.json()?;
    check_wire_keys(&relayed, event, "data")?;
    assert_eq!(data(&relayed), &json!({"from": "python", "n": 2}));
    let message = serve.expect_event("message")?;
    assert_eq!(message["client_id"], py_id);

    // Both slots are taken: a third connection gets the max_connections error frame, then EOF.
    py.write_line("overflow")?;
    let overflow = py.json()?;
    assert_eq!(overflow["step"], "max_connections", "{overflow}");

    py.write_line("quit")?;
    assert_eq!(py.json()?["step"], "done");
    assert_eq!(py.wait()?, 0, "client.py stderr: {:?}", py.stderr_all()?);
    Ok(())
}
