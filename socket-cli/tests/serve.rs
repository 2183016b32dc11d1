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

/// VmHWM (peak resident set) of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> TestResult<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).ok_or("no VmHWM in /proc/PID/status")?;
    Ok(line.split_whitespace().nth(1).ok_or("VmHWM without a value")?.parse()?)
}

fn nested_json(depth: usize) -> String {
    format!("{{\"deep\": {}1{}}}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn overlong_and_undeliverable_stdin_lines_are_skipped_and_the_next_one_works() -> TestResult {
    let mut env = TestEnv::new()?;
    env.set_env("SOCKET__MAX_MESSAGE_SIZE", "65536");
    let mut serve = env.spawn(&["serve", "bound_ev"])?;
    serve.expect_event("listening")?;
    let mut listen = env.spawn(&["listen", "bound_ev", "--count", "2"])?;
    serve.expect_connected(listen.pid())?;
    let before = peak_rss_kib(serve.pid())?;

    // 64 MiB in one line: refused without being held (the peak RSS barely moves).
    let long = format!("{{\"x\": \"{}\"}}", "x".repeat(64 << 20));
    serve.write_line(&long)?;
    let err = serve.expect_stderr("socketctl: ")?;
    assert!(
        err.starts_with(
            "socketctl: stdin line 1 skipped: 67108873 bytes is longer than socket.max_message_size (65536 bytes)"
        ),
        "{err}"
    );
    let peak = peak_rss_kib(serve.pid())?;
    assert!(peak < before + 16 * 1024, "peak RSS {peak} KiB after a 64 MiB line, {before} KiB before");

    // Deeper than the one nesting limit: an error for that line, nothing sent.
    serve.write_line(&nested_json(70))?;
    let err = serve.expect_stderr("socketctl: ")?;
    assert!(
        err.starts_with(
            "socketctl: stdin line 2 not broadcast: cannot encode message: values are nested deeper than 64"
        ),
        "{err}"
    );
    // An integer that does not fit 64 bits is refused, not rounded.
    serve.write_line(r#"{"n": 18446744073709551616}"#)?;
    let err = serve.expect_stderr("socketctl: ")?;
    assert!(
        err.starts_with("socketctl: stdin line 3 skipped: invalid JSON: the integer 18446744073709551616"),
        "{err}"
    );

    serve.write_line(&nested_json(60))?;
    serve.write_line(r#"{"n": 18446744073709551615, "m": -9223372036854775808}"#)?;
    let deep = listen.json()?;
    assert_eq!(data(&deep)["deep"].to_string(), format!("{}1{}", "[".repeat(60), "]".repeat(60)));
    assert_eq!(data(&listen.json()?), &json!({"n": 18446744073709551615u64, "m": -9223372036854775808i64}));
    assert_eq!(listen.wait()?, 0);
    Ok(())
}

#[test]
fn send_skips_overlong_and_undeliverable_lines_and_sends_the_rest() -> TestResult {
    let mut env = TestEnv::new()?;
    env.set_env("SOCKET__MAX_MESSAGE_SIZE", "4096");
    let mut serve = env.spawn(&["serve", "sendb_ev", "--relay"])?;
    serve.expect_event("listening")?;
    let mut listen = env.spawn(&["listen", "sendb_ev", "--count", "1"])?;
    serve.expect_connected(listen.pid())?;
    let mut send = env.spawn(&["send", "sendb_ev"])?;
    send.write_line(&format!("{{\"x\": \"{}\"}}", "x".repeat(1 << 20)))?;
    send.write_line(&nested_json(70))?;
    send.write_line(r#"{"ok": 1}"#)?;
    let out = send.finish()?;
    assert_eq!(out.code, 2, "skipped lines make the exit code 2: {out:?}");
    assert_eq!(out.stderr.len(), 2, "{out:?}");
    assert!(
        out.stderr[0].starts_with(
            "socketctl: stdin line 1 skipped: 1048585 bytes is longer than socket.max_message_size (4096 bytes)"
        ),
        "{out:?}"
    );
    assert!(
        out.stderr[1]
            .starts_with("socketctl: stdin line 2 not sent: cannot encode message: values are nested deeper than 64"),
        "{out:?}"
    );
    assert_eq!(data(&listen.json()?), &json!({"ok": 1}));
    assert_eq!(listen.wait()?, 0);
    Ok(())
}
