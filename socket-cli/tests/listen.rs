//! `socketctl listen`: --count, --timeout, --wait and message types.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::{check_wire_keys, data, TestEnv, TestResult};

#[test]
fn count_exits_0_after_n_messages() -> TestResult {
    let env = TestEnv::new()?;
    let mut serve = env.spawn(&["serve", "count_ev"])?;
    serve.expect_event("listening")?;
    let listen = env.spawn(&["listen", "count_ev", "--count", "2"])?;
    serve.expect_event("connected")?;
    for n in 1..=3 {
        serve.write_line(&format!(r#"{{"n": {n}}}"#))?;
    }
    let out = listen.finish()?;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.len(), 2, "exactly --count lines: {out:?}");
    let first: serde_json::Value = serde_json::from_str(&out.stdout[0])?;
    check_wire_keys(&first, "count_ev", "data")?;
    assert_eq!(data(&first), &json!({"n": 1}));
    Ok(())
}

#[test]
fn timeout_before_count_exits_5() -> TestResult {
    let env = TestEnv::new()?;
    let mut serve = env.spawn(&["serve", "timeout_ev"])?;
    serve.expect_event("listening")?;

    // No message at all: exit 5 once the time is up, not before.
    let started = Instant::now();
    let out = env.run(&["listen", "timeout_ev", "--timeout", "0.5"])?;
    let took = started.elapsed();
    out.expect_error(5, "timed out")?;
    assert!(took >= Duration::from_millis(500), "left after {took:?}");

    // One message of the three asked for: it is printed, then exit 5.
    let mut listen = env.spawn(&["listen", "timeout_ev", "--count", "3", "--timeout", "1.5"])?;
    // This listener's own `connected` (the first listener's is also on serve's stdout).
    serve.expect_connected(listen.pid())?;
    serve.write_line(r#"{"only": 1}"#)?;
    assert_eq!(data(&listen.json()?), &json!({"only": 1}));
    assert_eq!(listen.wait()?, 5);
    let stderr = listen.stderr_all()?;
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(stderr[0].contains("timed out") && stderr[0].contains("1 of 3"), "{stderr:?}");
    Ok(())
}

#[test]
fn wait_waits_for_the_server_to_appear() -> TestResult {
    let env = TestEnv::new()?;
    let mut listen = env.spawn(&["listen", "wait_ev", "--wait", "--count", "1", "--timeout", "10"])?;
    // The listener is waiting (no server yet); the server appears later.
    let mut serve = env.spawn(&["serve", "wait_ev"])?;
    serve.expect_event("listening")?;
    serve.expect_event("connected")?;
    serve.write_line(r#"{"hello": "late"}"#)?;
    assert_eq!(data(&listen.json()?), &json!({"hello": "late"}));
    assert_eq!(listen.wait()?, 0);
    Ok(())
}

#[test]
fn wait_with_timeout_and_no_server_exits_5() -> TestResult {
    let env = TestEnv::new()?;
    env.run(&["listen", "nobody_ev", "--wait", "--timeout", "0.5"])?.expect_error(5, "timed out")?;
    Ok(())
}

#[test]
fn error_and_application_control_messages_are_printed() -> TestResult {
    let env = TestEnv::new()?;
    let mut serve = env.spawn(&["serve", "types_ev", "--relay"])?;
    serve.expect_event("listening")?;
    let mut listen = env.spawn(&["listen", "types_ev", "--count", "2"])?;
    serve.expect_event("connected")?;
    let out =
        env.run(&["send", "types_ev", "--type", "error", "--data", r#"{"code": "disk_full", "error": "no space"}"#])?;
    assert_eq!(out.code, 0, "{out:?}");
    let out = env.run(&["send", "types_ev", "--type", "control", "--data", r#"{"action": "reload"}"#])?;
    assert_eq!(out.code, 0, "{out:?}");
    let first = listen.json()?;
    check_wire_keys(&first, "types_ev", "error")?;
    assert_eq!(data(&first), &json!({"code": "disk_full", "error": "no space"}));
    let second = listen.json()?;
    check_wire_keys(&second, "types_ev", "control")?;
    assert_eq!(data(&second), &json!({"action": "reload"}));
    assert_eq!(listen.wait()?, 0);
    Ok(())
}

#[test]
fn send_reads_one_message_per_stdin_line() -> TestResult {
    let env = TestEnv::new()?;
    let mut serve = env.spawn(&["serve", "lines_ev", "--relay"])?;
    serve.expect_event("listening")?;
    let mut listen = env.spawn(&["listen", "lines_ev", "--count", "2"])?;
    serve.expect_event("connected")?;
    let mut send = env.spawn(&["send", "lines_ev"])?;
    send.write_line(r#"{"line": 1}"#)?;
    send.write_line("")?;
    send.write_line(r#"{"line": 2}"#)?;
    let out = send.finish()?;
    assert_eq!((out.code, out.stdout.len(), out.stderr.len()), (0, 0, 0), "{out:?}");
    assert_eq!(data(&listen.json()?), &json!({"line": 1}));
    assert_eq!(data(&listen.json()?), &json!({"line": 2}));
    assert_eq!(listen.wait()?, 0);

    // A bad line is skipped with one stderr line, the others are sent, and the exit is 2.
    let mut listen = env.spawn(&["listen", "lines_ev", "--count", "1"])?;
    serve.expect_connected(listen.pid())?;
    let mut send = env.spawn(&["send", "lines_ev"])?;
    send.write_line("{broken")?;
    send.write_line(r#"{"line": 3}"#)?;
    let out = send.finish()?;
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(out.stderr.len(), 1, "{out:?}");
    assert!(out.stderr[0].starts_with("socketctl: stdin line 1 skipped: invalid JSON"), "{out:?}");
    assert_eq!(data(&listen.json()?), &json!({"line": 3}));
    Ok(())
}

#[test]
fn legacy_mode_skips_the_handshake() -> TestResult {
    let env = TestEnv::new()?;
    let mut serve = env.spawn(&["serve", "legacy_ev"])?;
    serve.expect_event("listening")?;
    let mut listen = env.spawn(&["listen", "legacy_ev", "--legacy", "--count", "1"])?;
    // No hello: the server serves it as a legacy client, without a name.
    let connected = serve.expect_connected(listen.pid())?;
    assert_eq!(connected["client_name"], serde_json::Value::Null, "{connected}");
    serve.write_line(r#"{"plain": "old protocol"}"#)?;
    assert_eq!(data(&listen.json()?), &json!({"plain": "old protocol"}));
    assert_eq!(listen.wait()?, 0);
    Ok(())
}
