//! `socketctl serve`: output lines, stdin broadcast, relay through to listeners.

use serde_json::json;

use crate::util::{check_wire_keys, data, fail, TestEnv, TestResult};

#[test]
fn relay_reaches_all_three_listeners() -> TestResult {
    let env = TestEnv::new()?;
    let mut serve = env.spawn(&["serve", "relay_ev", "--relay"])?;
    let listening = serve.expect_event("listening")?;
    assert_eq!(listening["transport"], "unix");
    assert_eq!(listening["address"], env.socket_path("relay_ev").to_string_lossy().as_ref());

    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(env.spawn(&["listen", "relay_ev", "--count", "1", "--timeout", "10"])?);
    }
    let mut ids = Vec::new();
    for listen in &listeners {
        let connected = serve.expect_connected(listen.pid())?;
        assert_eq!(connected["client_name"], "socketctl listen", "{connected}");
        let id = connected["client_id"].as_str().ok_or_else(|| fail(format!("no client_id: {connected}")))?;
        ids.push(id.to_owned());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "client ids are unique: {ids:?}");

    let out = env.run(&["send", "relay_ev", "--data", r#"{"msg":"hi","n":1,"nested":{"ok":true}}"#])?;
    assert_eq!((out.code, out.stdout.len(), out.stderr.len()), (0, 0, 0), "{out:?}");

    for mut listen in listeners {
        let msg = listen.json()?;
        check_wire_keys(&msg, "relay_ev", "data")?;
        assert_eq!(data(&msg), &json!({"msg": "hi", "n": 1, "nested": {"ok": true}}));
        assert_eq!(listen.wait()?, 0);
    }

    // serve reports the sender and its message.
    let sender = serve.expect_event("connected")?;
    assert_eq!(sender["client_name"], "socketctl send", "{sender}");
    let message = serve.expect_event("message")?;
    assert_eq!(message["client_id"], sender["client_id"], "{message}");
    check_wire_keys(&message["message"], "relay_ev", "data")?;
    assert_eq!(data(&message["message"])["msg"], "hi");
    let disconnected = serve.expect_event("disconnected")?;
    assert!(disconnected["client_id"].is_string(), "{disconnected}");
    Ok(())
}

#[test]
fn stdin_lines_are_broadcast_and_bad_lines_skipped() -> TestResult {
    let env = TestEnv::new()?;
    let mut serve = env.spawn(&["serve", "stdin_ev"])?;
    serve.expect_event("listening")?;
    let mut listen = env.spawn(&["listen", "stdin_ev", "--count", "3"])?;
    serve.expect_connected(listen.pid())?;

    serve.write_line("this is not json")?;
    let err = serve.expect_stderr("socketctl: ")?;
    assert!(err.starts_with("socketctl: stdin line 1 skipped: invalid JSON"), "{err}");
    serve.write_line("[1, 2, 3]")?;
    let err = serve.expect_stderr("socketctl: ")?;
    assert_eq!(err, "socketctl: stdin line 2 skipped: invalid JSON: expected an object, got an array");
    serve.write_line(r#"{"percent": 42, "file": "a.png"}"#)?;
    serve.write_line(r#"{"raw": {"$binary": "AAEC/w=="}, "f": 1.5, "neg": -3, "none": null, "list": [1, "x"]}"#)?;
    serve.write_line(r#"{"last": true}"#)?;

    let first = listen.json()?;
    check_wire_keys(&first, "stdin_ev", "data")?;
    assert_eq!(data(&first), &json!({"percent": 42, "file": "a.png"}));
    let second = listen.json()?;
    assert_eq!(
        data(&second),
        &json!({"raw": {"$binary": "AAEC/w=="}, "f": 1.5, "neg": -3, "none": null, "list": [1, "x"]})
    );
    assert_eq!(data(&listen.json()?), &json!({"last": true}));
    assert_eq!(listen.wait()?, 0);

    // At end of stdin the server keeps running: a new listener still gets served.
    serve.close_stdin();
    let mut late = env.spawn(&["listen", "stdin_ev", "--timeout", "0.5"])?;
    serve.expect_connected(late.pid())?;
    assert_eq!(late.wait()?, 5, "no message arrives, so the late listener times out");
    assert!(env.socket_path("stdin_ev").exists());
    Ok(())
}

#[test]
fn serve_refuses_a_second_server_for_the_same_event() -> TestResult {
    let env = TestEnv::new()?;
    let mut first = env.spawn(&["serve", "dup_ev"])?;
    first.expect_event("listening")?;
    env.run(&["serve", "dup_ev"])?.expect_error(1, "already")?;
    // The first server is untouched.
    let mut listen = env.spawn(&["listen", "dup_ev", "--count", "1"])?;
    first.expect_connected(listen.pid())?;
    first.write_line(r#"{"still": "here"}"#)?;
    assert_eq!(data(&listen.json()?), &json!({"still": "here"}));
    Ok(())
}

#[test]
fn queued_and_retained_messages_reach_new_listeners() -> TestResult {
    let env = TestEnv::new()?;
    let mut serve = env.spawn(&["serve", "retain_ev", "--retain-last", "--queue-size", "2"])?;
    serve.expect_event("listening")?;
    // No client: the offline queue keeps the last two.
    for n in 1..=3 {
        serve.write_line(&format!(r#"{{"n": {n}}}"#))?;
    }
    // Lines are handled in order, so the error for a bad fourth line proves the first three
    // were broadcast (into the queue) before any listener connects.
    // (The overflow itself is logged as a warning on stderr.)
    serve.write_line("sync")?;
    serve.expect_stderr("socketctl: stdin line 4 skipped")?;

    let mut first = env.spawn(&["listen", "retain_ev", "--count", "2"])?;
    assert_eq!(data(&first.json()?), &json!({"n": 2}));
    assert_eq!(data(&first.json()?), &json!({"n": 3}));
    assert_eq!(first.wait()?, 0);
    // retain_last: the next client gets the last broadcast again.
    let mut second = env.spawn(&["listen", "retain_ev", "--count", "1"])?;
    assert_eq!(data(&second.json()?), &json!({"n": 3}));
    assert_eq!(second.wait()?, 0);
    Ok(())
}
