//! TCP: discovery by event name in a per-test port range, and an explicit port.

use serde_json::json;

use crate::util::{check_wire_keys, data, fail, free_port_range, TestEnv, TestResult};

const RANGE: u16 = 8;

fn tcp_env() -> TestResult<(TestEnv, u16)> {
    let mut env = TestEnv::new()?;
    let start = free_port_range(RANGE)?;
    env.set_env("SOCKET__TCP__PORT_RANGE_START", &start.to_string());
    env.set_env("SOCKET__TCP__PORT_RANGE_END", &(start + RANGE - 1).to_string());
    Ok((env, start))
}

#[test]
fn tcp_discovery_by_event_name() -> TestResult {
    let (env, start) = tcp_env()?;
    let mut serve = env.spawn(&["--transport", "tcp", "serve", "tcp_ev", "--relay"])?;
    let listening = serve.expect_event("listening")?;
    assert_eq!(listening["transport"], "tcp");
    let address = listening["address"].as_str().ok_or("no address")?;
    let port: u16 = address
        .strip_prefix("127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| fail(format!("unexpected address {address}")))?;
    assert!((start..start + RANGE).contains(&port), "port {port} outside {start}..{}", start + RANGE);

    // No --port: the client finds the server from the event name alone.
    let mut listen = env.spawn(&["listen", "tcp_ev", "--transport", "tcp", "--count", "2", "--timeout", "10"])?;
    serve.expect_event("connected")?;
    let out = env.run(&["send", "tcp_ev", "--transport", "tcp", "--data", r#"{"via": "discovery"}"#])?;
    assert_eq!((out.code, out.stderr.len()), (0, 0), "{out:?}");
    let msg = listen.json()?;
    check_wire_keys(&msg, "tcp_ev", "data")?;
    assert_eq!(data(&msg), &json!({"via": "discovery"}));

    // An explicit --port works too.
    let port = port.to_string();
    let out = env.run(&["send", "tcp_ev", "--transport", "tcp", "--port", &port, "--data", r#"{"via": "port"}"#])?;
    assert_eq!((out.code, out.stderr.len()), (0, 0), "{out:?}");
    assert_eq!(data(&listen.json()?), &json!({"via": "port"}));
    assert_eq!(listen.wait()?, 0);
    Ok(())
}

#[test]
fn tcp_discovery_skips_another_events_server() -> TestResult {
    let (env, _) = tcp_env()?;
    // Two servers in one small range: each client must find its own event's server.
    let mut first = env.spawn(&["--transport", "tcp", "serve", "tcp_one"])?;
    first.expect_event("listening")?;
    let mut second = env.spawn(&["--transport", "tcp", "serve", "tcp_two"])?;
    second.expect_event("listening")?;
    let mut listen = env.spawn(&["--transport", "tcp", "listen", "tcp_two", "--count", "1"])?;
    second.expect_event("connected")?;
    second.write_line(r#"{"from": "two"}"#)?;
    let msg = listen.json()?;
    check_wire_keys(&msg, "tcp_two", "data")?;
    assert_eq!(listen.wait()?, 0);
    Ok(())
}

#[test]
fn tcp_no_server_exits_3() -> TestResult {
    let (env, _) = tcp_env()?;
    env.run(&["--transport", "tcp", "send", "tcp_none", "--data", "{}"])?.expect_error(3, "no server")?;
    Ok(())
}
