//! The Python client of `docs/examples/client.py` (about 40 lines, written from
//! `docs/protocol.md` only) against `socketctl serve`: handshake, subscribe, send, over the
//! Unix socket and over TCP.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value as Json};

use crate::util::{check_wire_keys, data, fail, free_port_range, Proc, TestEnv, TestResult};

/// `python3 docs/examples/client.py ARGS...` under the watchdog.
fn example(args: &[&str]) -> TestResult<Proc> {
    let ok =
        Command::new("python3").args(["-c", "import msgpack"]).output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        return Err(fail(
            "the Python example needs python3 with the msgpack package: run `pip install msgpack` (`cargo xtask test` does)",
        ));
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/client.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).args(args);
    Proc::spawn(cmd, format!("client.py {}", args.get(2).unwrap_or(&"")))
}

/// The first line of the example: the `welcome` it got in answer to `hello`.
fn expect_welcome(py: &mut Proc, event: &str) -> TestResult<Json> {
    let line = py.json()?;
    let welcome = &line["welcome"];
    assert_eq!(welcome["control"], "welcome", "{line}");
    assert_eq!(welcome["event_name"], event, "{line}");
    assert_eq!(welcome["protocol"], 1, "{line}");
    assert!(welcome["client_id"].is_string(), "{line}");
    Ok(welcome.clone())
}

/// Subscribe, send and handshake against a `serve --relay` reached at `address`.
fn round_trip(env: &TestEnv, serve: &mut Proc, address: &str, event: &str, transport: &[&str]) -> TestResult {
    // Subscribe: the example prints two messages, then exits 0.
    let mut sub = example(&[address, event, "listen", "2"])?;
    let welcome = expect_welcome(&mut sub, event)?;
    // TCP has no peer pid: tell the clients apart by the name from their hello.
    let connected = serve.expect_match("python-example connected", |j| {
        j["event"] == "connected" && j["client_name"] == "python-example"
    })?;
    assert_eq!(connected["client_id"], welcome["client_id"], "welcome names the id serve reports");
    serve.write_line(r#"{"from": "serve", "raw": {"$binary": "AAE="}}"#)?;
    let first = sub.json()?;
    check_wire_keys(&first, event, "data")?;
    assert_eq!(data(&first), &json!({"from": "serve", "raw": {"$binary": "AAE="}}));

    // Send: a message from the example reaches the server, the relay, and a socketctl listener.
    let mut args = vec!["listen", event, "--count", "1", "--timeout", "20"];
    args.extend_from_slice(transport);
    let mut listen = env.spawn(&args)?;
    serve.expect_match("socketctl listen connected", |j| {
        j["event"] == "connected" && j["client_name"] == "socketctl listen"
    })?;
    let mut send = example(&[address, event, "send", r#"{"from": "python", "n": 2}"#])?;
    let sender = expect_welcome(&mut send, event)?;
    assert_eq!(sender["allow_client_send"], true);
    let receipt = send.json()?;
    assert_eq!(receipt["receipt"], json!({"control": "pong", "nonce": 7}), "{receipt}");
    assert_eq!(send.wait()?, 0, "client.py send: {:?}", send.stderr_all()?);
    let message = serve.expect_event("message")?;
    assert_eq!(message["client_id"], sender["client_id"]);
    check_wire_keys(&message["message"], event, "data")?;
    assert_eq!(data(&message["message"]), &json!({"from": "python", "n": 2}));

    let relayed = listen.json()?;
    check_wire_keys(&relayed, event, "data")?;
    assert_eq!(data(&relayed), &json!({"from": "python", "n": 2}));
    assert_eq!(listen.wait()?, 0);
    let second = sub.json()?;
    assert_eq!(data(&second), &json!({"from": "python", "n": 2}));
    assert_eq!(sub.wait()?, 0, "client.py listen: {:?}", sub.stderr_all()?);
    Ok(())
}

#[test]
fn python_example_client_over_unix() -> TestResult {
    let env = TestEnv::new()?;
    let event = "py_example";
    let mut serve = env.spawn(&["serve", event, "--relay"])?;
    let listening = serve.expect_event("listening")?;
    let address = listening["address"].as_str().ok_or("no address")?.to_owned();
    round_trip(&env, &mut serve, &address, event, &[])
}

#[test]
fn python_example_client_over_tcp() -> TestResult {
    let mut env = TestEnv::new()?;
    let start = free_port_range(4)?;
    env.set_env("SOCKET__TCP__PORT_RANGE_START", &start.to_string());
    env.set_env("SOCKET__TCP__PORT_RANGE_END", &(start + 3).to_string());
    let event = "py_example_tcp";
    let mut serve = env.spawn(&["--transport", "tcp", "serve", event, "--relay"])?;
    let listening = serve.expect_event("listening")?;
    let address = listening["address"].as_str().ok_or("no address")?.to_owned();
    round_trip(&env, &mut serve, &address, event, &["--transport", "tcp"])
}

#[test]
fn python_example_client_reports_a_refused_send() -> TestResult {
    let env = TestEnv::new()?;
    let event = "py_example_quiet";
    let mut serve = env.spawn(&["serve", event, "--no-client-send"])?;
    let listening = serve.expect_event("listening")?;
    let address = listening["address"].as_str().ok_or("no address")?.to_owned();
    let mut send = example(&[&address, event, "send", r#"{"n": 1}"#])?;
    let welcome = expect_welcome(&mut send, event)?;
    assert_eq!(welcome["allow_client_send"], false);
    assert_eq!(send.wait()?, 1);
    let stderr = send.stderr_all()?;
    assert!(stderr.iter().any(|l| l.contains("refused by the server") && l.contains("send_not_allowed")), "{stderr:?}");
    Ok(())
}
