//! Stopping `serve` with SIGTERM / SIGINT, and what listeners do about it.

use std::time::Duration;

use rustix::process::Signal;
use serde_json::json;

use crate::util::{data, TestEnv, TestResult};

#[test]
fn sigterm_stops_cleanly_and_listeners_react() -> TestResult {
    let env = TestEnv::new()?;
    let mut serve = env.spawn(&["serve", "term_ev"])?;
    serve.expect_event("listening")?;
    let socket = env.socket_path("term_ev");
    assert!(socket.exists());

    let mut once = env.spawn(&["listen", "term_ev", "--no-reconnect"])?;
    serve.expect_connected(once.pid())?;
    let mut keeps = env.spawn(&["listen", "term_ev"])?;
    serve.expect_connected(keeps.pid())?;
    // A message both print proves both finished connecting (`connected` on the server side
    // can come before the client has read its `welcome`).
    serve.write_line(r#"{"before": "stop"}"#)?;
    assert_eq!(data(&once.json()?), &json!({"before": "stop"}));
    assert_eq!(data(&keeps.json()?), &json!({"before": "stop"}));

    serve.signal(Signal::TERM)?;
    assert_eq!(serve.wait()?, 0, "serve exits 0 on SIGTERM");
    assert!(!socket.exists(), "the socket file is removed");
    assert!(serve.stderr_all()?.is_empty(), "a clean stop prints no error");

    // --no-reconnect: the server's shutdown ends listen with 0.
    let out = once.finish()?;
    assert_eq!((out.code, out.stdout.len(), out.stderr.len()), (0, 0, 0), "{out:?}");

    // The default listener keeps reconnecting: a new server on the same event gets it back.
    let mut again = env.spawn(&["serve", "term_ev"])?;
    again.expect_event("listening")?;
    again.expect_connected(keeps.pid())?;
    again.write_line(r#"{"back": true}"#)?;
    assert_eq!(data(&keeps.json()?), &json!({"back": true}));
    Ok(())
}

#[test]
fn sigint_and_sighup_stop_cleanly() -> TestResult {
    let env = TestEnv::new()?;
    for (signal, event) in [(Signal::INT, "int_ev"), (Signal::HUP, "hup_ev")] {
        let mut serve = env.spawn(&["serve", event])?;
        serve.expect_event("listening")?;
        let mut listen = env.spawn(&["listen", event, "--no-reconnect"])?;
        serve.expect_connected(listen.pid())?;
        serve.write_line(r#"{"before": "stop"}"#)?;
        listen.json()?;
        serve.signal(signal)?;
        assert_eq!(serve.wait()?, 0, "{signal:?}");
        assert!(!env.socket_path(event).exists(), "{signal:?}");
        assert_eq!(listen.wait()?, 0, "{signal:?}");
    }
    Ok(())
}

#[test]
fn lost_connection_ends_no_reconnect_listen_with_1() -> TestResult {
    let env = TestEnv::new()?;
    let mut serve = env.spawn(&["serve", "lost_ev"])?;
    serve.expect_event("listening")?;
    let mut listen = env.spawn(&["listen", "lost_ev", "--no-reconnect"])?;
    serve.expect_connected(listen.pid())?;
    serve.write_line(r#"{"before": "kill"}"#)?;
    listen.json()?;
    // SIGKILL: no shutdown message, the connection is simply lost.
    serve.signal(Signal::KILL)?;
    assert_eq!(listen.wait()?, 1);
    let stderr = listen.stderr_all()?;
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(stderr[0].starts_with("socketctl: connection lost"), "{stderr:?}");
    Ok(())
}

#[test]
fn reconnecting_listen_keeps_running_without_a_server() -> TestResult {
    let env = TestEnv::new()?;
    let mut serve = env.spawn(&["serve", "keep_ev"])?;
    serve.expect_event("listening")?;
    let mut listen = env.spawn(&["listen", "keep_ev"])?;
    serve.expect_connected(listen.pid())?;
    serve.write_line(r#"{"before": "stop"}"#)?;
    listen.json()?;
    serve.signal(Signal::TERM)?;
    assert_eq!(serve.wait()?, 0);
    // Time itself is under test here: the listener must still be running a while later.
    assert!(listen.still_running_after(Duration::from_millis(700)), "listen exited: {:?}", listen.stderr_now());
    Ok(())
}
