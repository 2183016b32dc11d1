//! Relay mode through the binary: `serve --relay` as a broker, short-lived `send` producers
//! beside a long-lived one, producers killed mid-stream, and a `serve` whose stdout nobody
//! reads.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::util::{fail, free_port_range, Proc, TestEnv, TestResult};

/// Rounds of the reproduction (the issue asks for at least 100 per transport).
const ROUNDS: u64 = 100;
/// Lines per producer and round.
const BURST: u64 = 500;

/// The global options of one transport: Unix sockets in the test's directory, or TCP on a
/// port of the test's own.
fn transport_args(tcp: bool) -> TestResult<Vec<String>> {
    Ok(if tcp {
        let port = free_port_range(1)?;
        vec!["--transport".into(), "tcp".into(), "--port".into(), port.to_string()]
    } else {
        Vec::new()
    })
}

fn spawn(env: &TestEnv, net: &[String], args: &[&str]) -> TestResult<Proc> {
    let mut all: Vec<&str> = net.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    env.spawn(&all)
}

/// `count` stdin lines `{"src": src, "round": round, "seq": i}`.
fn lines(src: &str, round: u64, count: u64) -> String {
    (0..count).map(|seq| format!("{{\"src\":\"{src}\",\"round\":{round},\"seq\":{seq}}}\n")).collect()
}

/// Per-source sequence accounting of what a listener printed.
#[derive(Debug, Default)]
struct Seqs {
    next: HashMap<String, u64>,
}

impl Seqs {
    /// Takes one `listen` line; fails on a gap, a duplicate or a reordering.
    fn take(&mut self, line: &str) -> TestResult<(String, u64, u64)> {
        let msg: Json = serde_json::from_str(line).map_err(|e| fail(format!("listen printed {line:?}: {e}")))?;
        let data = &msg["data"];
        let src = data["src"].as_str().ok_or_else(|| fail(format!("no src in {line}")))?.to_owned();
        let round = data["round"].as_u64().ok_or_else(|| fail(format!("no round in {line}")))?;
        let seq = data["seq"].as_u64().ok_or_else(|| fail(format!("no seq in {line}")))?;
        let key = format!("{src}/{round}");
        let next = self.next.entry(key.clone()).or_default();
        if seq != *next {
            return Err(fail(format!("{key}: seq {seq} arrived where {next} was next")));
        }
        *next += 1;
        Ok((src, round, seq))
    }

    fn got(&self, src: &str, round: u64) -> u64 {
        self.next.get(&format!("{src}/{round}")).copied().unwrap_or(0)
    }
}

/// The reproduction: each round, a long-lived `send` publishes a burst while a short-lived
/// `send` publishes its own and exits; the subscriber must get all of both, every round.
fn short_lived_producers_lose_nothing(tcp: bool) -> TestResult {
    let env = TestEnv::new()?;
    let net = transport_args(tcp)?;
    let mut serve = spawn(&env, &net, &["serve", "relay_ev", "--relay"])?;
    serve.expect_event("listening")?;
    let mut listen = spawn(&env, &net, &["listen", "relay_ev"])?;
    serve.expect_event("connected")?;
    let mut long = spawn(&env, &net, &["send", "relay_ev"])?;
    serve.expect_event("connected")?;
    let mut seqs = Seqs::default();
    for round in 0..ROUNDS {
        let mut short = spawn(&env, &net, &["send", "relay_ev"])?;
        long.write_all(&lines("long", round, BURST))?;
        short.write_all(&lines("short", round, BURST))?;
        short.close_stdin();
        let deadline = Instant::now() + Duration::from_secs(20);
        while seqs.got("long", round) < BURST || seqs.got("short", round) < BURST {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = listen.line_within(left).map_err(|e| {
                fail(format!(
                    "round {round}: long {} short {} of {BURST}: {e}",
                    seqs.got("long", round),
                    seqs.got("short", round)
                ))
            })?;
            seqs.take(&line)?;
        }
        let code = short.wait()?;
        if code != 0 {
            return Err(fail(format!("round {round}: send exited {code}: {:?}", short.stderr_all()?)));
        }
    }
    long.close_stdin();
    if long.wait()? != 0 {
        return Err(fail(format!("the long-lived send failed: {:?}", long.stderr_all()?)));
    }
    Ok(())
}

#[test]
fn short_lived_send_loses_nothing_through_a_relay_unix() -> TestResult {
    short_lived_producers_lose_nothing(false)
}

#[test]
fn short_lived_send_loses_nothing_through_a_relay_tcp() -> TestResult {
    short_lived_producers_lose_nothing(true)
}

/// Producers killed with SIGKILL while sending: the subscriber gets a prefix of each one's
/// messages, in order, never a gap in the middle.
fn killed_producers_leave_a_prefix(tcp: bool) -> TestResult {
    let env = TestEnv::new()?;
    let net = transport_args(tcp)?;
    let mut serve = spawn(&env, &net, &["serve", "kill_ev", "--relay"])?;
    serve.expect_event("listening")?;
    let mut listen = spawn(&env, &net, &["listen", "kill_ev"])?;
    serve.expect_event("connected")?;
    let mut long = spawn(&env, &net, &["send", "kill_ev"])?;
    serve.expect_event("connected")?;
    let mut seqs = Seqs::default();
    for round in 0..20u64 {
        let mut victim = spawn(&env, &net, &["send", "kill_ev"])?;
        let victim_id = serve.expect_event("connected")?["client_id"].clone();
        // Traffic toward the victim while it sends, so the kill lands on a busy connection.
        // Rates stay below what `serve` prints, so that its `disconnected` line is not among
        // the lines a lossy stdout may drop.
        long.write_all(&lines("long", round, 100))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let chunk = |from: u64| -> String {
            (from..from + 50).map(|seq| format!("{{\"src\":\"victim\",\"round\":{round},\"seq\":{seq}}}\n")).collect()
        };
        victim.write_all(&chunk(0))?;
        while seqs.got("victim", round) < 50 {
            let left = deadline.saturating_duration_since(Instant::now());
            seqs.take(&listen.line_within(left)?)?;
        }
        // Killed while a fresh chunk is in flight.
        victim.write_all(&chunk(50))?;
        victim.signal(rustix::process::Signal::KILL)?;
        // Once the server has processed the victim's end, a marker broadcast by `serve`
        // reaches the subscriber after everything the victim's connection delivered.
        serve
            .expect_match("the victim's disconnect", |j| j["event"] == "disconnected" && j["client_id"] == victim_id)?;
        serve.write_line(&format!("{{\"src\":\"marker\",\"round\":{round},\"seq\":0}}"))?;
        while seqs.got("marker", round) == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            seqs.take(&listen.line_within(left)?)?;
        }
        // `Seqs::take` already refused any gap; the victim's count is a prefix by construction.
        let got = seqs.got("victim", round);
        if !(50..=100).contains(&got) {
            return Err(fail(format!("round {round}: {got} victim messages")));
        }
    }
    Ok(())
}

#[test]
fn killed_producer_leaves_an_ordered_prefix_unix() -> TestResult {
    killed_producers_leave_a_prefix(false)
}

#[test]
fn killed_producer_leaves_an_ordered_prefix_tcp() -> TestResult {
    killed_producers_leave_a_prefix(true)
}

/// `serve --relay` whose stdout is a pipe nobody reads: delivery to subscribers goes on at
/// full rate, and the event lines that could not be printed are reported once stdout moves.
#[test]
fn serve_with_an_unread_stdout_keeps_delivering() -> TestResult {
    const N: u64 = 100_000;
    let env = TestEnv::new()?;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_socketctl"));
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(|k| k.starts_with("SOCKET_")) {
            cmd.env_remove(key);
        }
    }
    cmd.args(["serve", "mute_ev", "--relay", "--socket-dir"]).arg(env.socket_dir());
    cmd.env("XDG_CONFIG_HOME", env.path("")).env_remove("RUST_LOG");
    // Room for the whole burst toward the subscriber: what is under test is serve's stdout,
    // not whether `listen` prints as fast as `send` parses.
    cmd.env("SOCKET__OUTBOUND_QUEUE_SIZE", "131072").env("SOCKET__OUTBOUND_QUEUE_BYTES", "67108864");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn()?;
    // Held and never read until the end: the pipe fills after a few hundred lines.
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let guard = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env.socket_path("mute_ev").exists() {
        if Instant::now() > deadline {
            return Err(fail("serve did not bind within 10 s"));
        }
        std::thread::yield_now();
    }
    let mut listen = env.spawn(&["listen", "mute_ev", "--count", &N.to_string(), "--wait"])?;
    // The subscriber must be connected before the burst: wait for its first message.
    let mut probe = env.spawn(&["send", "mute_ev", "--data", r#"{"src":"probe","round":0,"seq":0}"#])?;
    if probe.wait()? != 0 {
        return Err(fail(format!("probe send failed: {:?}", probe.stderr_all()?)));
    }
    let mut seqs = Seqs::default();
    seqs.take(&listen.line()?)?;
    let started = Instant::now();
    let mut send = env.spawn(&["send", "mute_ev"])?;
    send.write_all(&lines("burst", 0, N - 1))?;
    send.close_stdin();
    while seqs.got("burst", 0) < N - 1 {
        seqs.take(&listen.line_within(Duration::from_secs(30))?)?;
    }
    let took = started.elapsed();
    if send.wait()? != 0 {
        return Err(fail(format!("send failed: {:?}", send.stderr_all()?)));
    }
    eprintln!("measured: {} messages through a relay with a blocked stdout in {took:?}", N - 1);
    // Now stdout moves: it holds a prefix of the event lines, then `events_dropped`.
    let mut out = std::io::BufReader::new(stdout);
    let mut printed_messages = 0u64;
    let mut dropped = 0u64;
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Every message event is either printed or counted as dropped (connects and disconnects
    // may be among the dropped lines too).
    while printed_messages + dropped < N && Instant::now() < deadline {
        line.clear();
        if std::io::BufRead::read_line(&mut out, &mut line)? == 0 {
            break;
        }
        let j: Json = serde_json::from_str(line.trim())?;
        match j["event"].as_str() {
            Some("message") => printed_messages += 1,
            Some("events_dropped") => dropped += j["count"].as_u64().ok_or("events_dropped without count")?,
            _ => {}
        }
    }
    drop(guard);
    if dropped == 0 || printed_messages + dropped < N {
        return Err(fail(format!("printed {printed_messages} message lines and reported {dropped} dropped, of {N}")));
    }
    Ok(())
}

/// Kills a child process when dropped (also when the test fails).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A raw legacy server on the test's socket path: counts the frames it reads, and after the
/// client's end-of-stream either closes (`close_at_eof`) or keeps the connection open.
fn legacy_server(env: &TestEnv, event: &str, close_at_eof: bool) -> TestResult<std::sync::mpsc::Receiver<u64>> {
    use std::io::Read;
    let listener = std::os::unix::net::UnixListener::bind(env.socket_path(event))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else { return };
        let mut bytes = Vec::new();
        let _ = s.read_to_end(&mut bytes);
        let (mut frames, mut at) = (0u64, 0usize);
        while at + 4 <= bytes.len() {
            let len = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
            at += 4 + len;
            frames += 1;
        }
        let _ = tx.send(frames);
        if !close_at_eof {
            // Held open until the test ends (the receiver goes away).
            let (_hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
            let _ = hold_rx.recv_timeout(Duration::from_secs(30));
            drop(s);
        }
    });
    Ok(rx)
}

#[test]
fn send_legacy_exits_0_once_the_server_read_everything_and_closed() -> TestResult {
    let env = TestEnv::new()?;
    let frames = legacy_server(&env, "legacy_ev", true)?;
    let mut send = env.spawn(&["--legacy", "send", "legacy_ev"])?;
    send.write_all(&lines("legacy", 0, 300))?;
    send.close_stdin();
    let code = send.wait()?;
    if code != 0 {
        return Err(fail(format!("send --legacy exited {code}: {:?}", send.stderr_all()?)));
    }
    let got = frames.recv_timeout(Duration::from_secs(10))?;
    if got != 300 {
        return Err(fail(format!("the legacy server read {got} frames of 300")));
    }
    Ok(())
}

#[test]
fn send_legacy_fails_when_the_server_never_closes() -> TestResult {
    let mut env = TestEnv::new()?;
    env.set_env("SOCKET__DEFAULT_TIMEOUT", "1");
    let _frames = legacy_server(&env, "deaf_ev", false)?;
    let started = Instant::now();
    let out = env.run(&["--legacy", "send", "deaf_ev", "--data", r#"{"n": 1}"#])?;
    out.expect_error(5, "not confirmed by the server")?;
    if started.elapsed() > Duration::from_secs(5) {
        return Err(fail(format!("send took {:?} with a 1 s default_timeout", started.elapsed())));
    }
    Ok(())
}
