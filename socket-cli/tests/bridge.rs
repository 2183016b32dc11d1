//! `socketctl bridge`: hosts simulated by separate socket directories, joined through real
//! `nats-server` processes (a single node, or a routed cluster on loopback) started by the
//! tests on free ports and killed by PID when a test ends (also when it fails).
//!
//! Nothing sleeps to synchronise: every wait is for a line (a message, a `nats_connected`,
//! a log line of nats-server) under a deadline. "Nobody received anything twice" is
//! checked after a sentinel message from every origin has arrived: order is kept per
//! origin, so every copy of an earlier message would have come before it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};
use socket_tests::nats_server::{Cluster, NatsServer, NodeOptions};
use socket_tests::util::free_port;

use crate::util::{fail, Proc, TestEnv, TestResult};

const EVENT: &str = "bridge_ev";

/// Messages per direction in the two-host test, one direction at a time (issue 13).
const N: usize = 10_000;

/// One simulated host: its own socket directory.
struct Host {
    name: &'static str,
    env: TestEnv,
}

impl Host {
    fn new(name: &'static str) -> TestResult<Host> {
        let mut env = TestEnv::new()?;
        // Bursts of thousands of messages: local clients may fall that far behind.
        env.set_env("SOCKET__OUTBOUND_QUEUE_SIZE", "65536");
        env.set_env("SOCKET__OUTBOUND_QUEUE_BYTES", "67108864");
        Ok(Host { name, env })
    }

    /// Starts `socketctl bridge EVENT... --nats URLS EXTRA...` and waits for its `bridging` lines.
    fn bridge(&self, events: &[&str], urls: &str, extra: &[&str]) -> TestResult<(Proc, Vec<Json>)> {
        let mut args = vec!["bridge"];
        args.extend_from_slice(events);
        args.extend_from_slice(&["--nats", urls]);
        args.extend_from_slice(extra);
        let mut proc = self.env.spawn(&args)?;
        let mut lines = Vec::new();
        for _ in events {
            lines.push(proc.expect_event("bridging")?);
        }
        Ok((proc, lines))
    }

    /// `socketctl listen EVENT` (runs until killed).
    fn listen(&self) -> TestResult<Listener> {
        Ok(Listener { proc: self.env.spawn(&["listen", EVENT, "--wait", "--timeout", "120"])?, got: Vec::new() })
    }

    /// `socketctl send EVENT` with one message per line; it must exit 0.
    fn send(&self, lines: &[String]) -> TestResult {
        let mut send = self.env.spawn(&["send", EVENT])?;
        for line in lines {
            send.write_line(line)?;
        }
        let out = send.finish()?;
        if out.code != 0 {
            return Err(fail(format!("send on {} failed: {out:?}", self.name)));
        }
        Ok(())
    }

    fn send_one(&self, kind: &str, seq: usize) -> TestResult {
        self.send(&[payload(self.name, kind, seq)])
    }
}

fn payload(origin: &str, kind: &str, seq: usize) -> String {
    json!({"origin": origin, "kind": kind, "seq": seq, "pad": "x".repeat(seq % 64)}).to_string()
}

/// A running `listen` and every message it printed so far.
struct Listener {
    proc: Proc,
    got: Vec<Json>,
}

impl Listener {
    /// Reads lines until `done` holds for a received message (those received before
    /// included), within `within`. `done` sees each message once.
    fn wait_until(&mut self, what: &str, within: Duration, mut done: impl FnMut(&Json) -> bool) -> TestResult {
        let mut hit = false;
        for m in &self.got {
            hit |= done(m);
        }
        let deadline = Instant::now() + within;
        while !hit {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(fail(format!("listener: {what} did not happen; got {}", self.summary())));
            }
            match self.proc.line_within(left) {
                Ok(line) => {
                    let m: Json = serde_json::from_str(&line)?;
                    hit = done(&m);
                    self.got.push(m);
                }
                Err(e) => return Err(fail(format!("listener: waiting for {what}: {e}; got {}", self.summary()))),
            }
        }
        Ok(())
    }

    /// Messages per (origin, kind), and the last sequence number of each.
    fn summary(&self) -> String {
        let mut m: BTreeMap<(String, String), (usize, u64)> = BTreeMap::new();
        for j in &self.got {
            let e = m.entry((j["data"]["origin"].to_string(), j["data"]["kind"].to_string())).or_default();
            e.0 += 1;
            e.1 = j["data"]["seq"].as_u64().unwrap_or(0);
        }
        format!("{m:?}")
    }

    /// Waits for the sentinel of every origin in `origins`.
    fn wait_sentinels(&mut self, origins: &[&str], round: usize) -> TestResult {
        let mut missing: Vec<String> = origins.iter().map(|s| (*s).to_owned()).collect();
        self.wait_until(&format!("sentinels {origins:?} of round {round}"), Duration::from_secs(60), |m| {
            missing.retain(|o| !(is(m, o, "sentinel") && m["data"]["seq"] == round));
            missing.is_empty()
        })
    }

    /// Sequence numbers of the messages of `origin` and `kind`, in arrival order.
    fn seqs(&self, origin: &str, kind: &str) -> Vec<usize> {
        self.got
            .iter()
            .filter(|m| is(m, origin, kind))
            .filter_map(|m| m["data"]["seq"].as_u64())
            .map(|n| n as usize)
            .collect()
    }

    /// The messages of `origin` and `kind`, by sequence number.
    fn by_seq(&self, origin: &str, kind: &str) -> BTreeMap<usize, Json> {
        self.got
            .iter()
            .filter(|m| is(m, origin, kind))
            .filter_map(|m| Some((m["data"]["seq"].as_u64()? as usize, m.clone())))
            .collect()
    }

    /// Reads for `period` after everything expected has come: nothing may arrive (a late
    /// duplicate, a message that looped). What does is kept for the duplicate check.
    fn quiet(&mut self, who: &str, period: Duration) -> TestResult {
        let late = self.proc.lines_for(period)?;
        for line in &late {
            self.got.push(serde_json::from_str(line)?);
        }
        if late.is_empty() {
            Ok(())
        } else {
            Err(fail(format!("{who}: {} message(s) arrived in the quiet period: {late:?}", late.len())))
        }
    }

    /// Fails if any message (origin, kind, seq) arrived twice.
    fn check_no_duplicates(&self, who: &str) -> TestResult {
        let mut seen = BTreeSet::new();
        for m in &self.got {
            let key = (m["data"]["origin"].to_string(), m["data"]["kind"].to_string(), m["data"]["seq"].to_string());
            if !seen.insert(key.clone()) {
                return Err(fail(format!("{who} received {key:?} twice")));
            }
        }
        Ok(())
    }
}

fn is(m: &Json, origin: &str, kind: &str) -> bool {
    m["data"]["origin"] == origin && m["data"]["kind"] == kind
}

/// Sends warm-up messages from `from` until each listener has one: the bridges are
/// connected, the NATS interest has spread over the routes, and the listeners are
/// connected. Warm-ups are counted like everything else in the duplicate checks. Returns
/// how many warm-ups it sent.
fn warm_up(from: &Host, listeners: &mut [&mut Listener]) -> TestResult<usize> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    for sent in 1..=60 {
        from.send_one("warmup", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))?;
        let mut all = true;
        for l in listeners.iter_mut() {
            let name = from.name;
            let r = l.wait_until("a warm-up", Duration::from_millis(300), |m| is(m, name, "warmup"));
            all &= r.is_ok();
        }
        if all {
            return Ok(sent);
        }
    }
    Err(fail(format!("no warm-up message from {} crossed within 60 tries", from.name)))
}

fn burst(host: &Host, kind: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| payload(host.name, kind, i)).collect()
}

fn stop_bridge(mut proc: Proc) -> TestResult<Json> {
    proc.signal(rustix::process::Signal::TERM)?;
    let stopped = proc.expect_event("stopped")?;
    let code = proc.wait()?;
    if code != 0 {
        return Err(fail(format!("bridge exited {code}")));
    }
    Ok(stopped["counters"].clone())
}

/// Messages per direction when both hosts send at once: ten times a client's receive
/// buffer (1024), so a `socketctl send` on a hosted (relay) server receives far more from
/// the other host than it could hold while it sends, and closes while the server still
/// writes to it (the loss of issue 18 before its fix).
const CONCURRENT: usize = 10_000;

/// How long the listeners must stay silent after the last round: several NATS round trips
/// on loopback (a duplicate or a looped message would come within one or two).
const QUIET: Duration = Duration::from_secs(1);

/// One round: `na` messages from a and `nb` from b (at once when both are non-zero), then
/// a sentinel from each; both listeners must have everything, complete, in order, and
/// identical in the five wire keys on both hosts.
#[allow(clippy::too_many_arguments)]
fn round(
    a: &Host,
    b: &Host,
    la: &mut Listener,
    lb: &mut Listener,
    kind: &str,
    na: usize,
    nb: usize,
    no: usize,
) -> TestResult {
    let (burst_a, burst_b) = (burst(a, kind, na), burst(b, kind, nb));
    std::thread::scope(|s| -> TestResult {
        let ta = s.spawn(|| if na > 0 { a.send(&burst_a).map_err(|e| e.to_string()) } else { Ok(()) });
        let tb = s.spawn(|| if nb > 0 { b.send(&burst_b).map_err(|e| e.to_string()) } else { Ok(()) });
        ta.join().map_err(|_| fail("sender a panicked"))?.map_err(fail)?;
        tb.join().map_err(|_| fail("sender b panicked"))?.map_err(fail)?;
        Ok(())
    })?;
    a.send_one("sentinel", no)?;
    b.send_one("sentinel", no)?;
    la.wait_sentinels(&["a", "b"], no)?;
    lb.wait_sentinels(&["a", "b"], no)?;
    for (who, l) in [("a", &*la), ("b", &*lb)] {
        assert_eq!(l.seqs("a", kind), (0..na).collect::<Vec<_>>(), "{who}: round {kind}: messages from a");
        assert_eq!(l.seqs("b", kind), (0..nb).collect::<Vec<_>>(), "{who}: round {kind}: messages from b");
    }
    for origin in ["a", "b"] {
        let (on_a, on_b) = (la.by_seq(origin, kind), lb.by_seq(origin, kind));
        for (i, m) in &on_a {
            assert_eq!(
                Some(&five_keys(m)),
                on_b.get(i).map(five_keys).as_ref(),
                "message {i} from {origin} differs across hosts"
            );
        }
    }
    Ok(())
}

fn five_keys(m: &Json) -> Json {
    let keys = ["event_name", "timestamp_ms", "timestamp_iso", "message_type", "data"];
    Json::Object(keys.iter().map(|k| ((*k).to_owned(), m[*k].clone())).collect())
}

#[test]
fn two_hosts_exchange_messages_both_ways_complete_in_order_and_once() -> TestResult {
    let cluster = Cluster::start(2)?;
    let (a, b) = (Host::new("a")?, Host::new("b")?);
    let (bridge_a, lines) = a.bridge(&[EVENT], &cluster.nodes[0].url(), &[])?;
    assert_eq!(lines[0]["mode"], "host", "{}", lines[0]);
    assert_eq!(lines[0]["subject"], format!("socket.{EVENT}"));
    assert_eq!(lines[0]["outbound_only"], false);
    let (bridge_b, _) = b.bridge(&[EVENT], &cluster.nodes[1].url(), &[])?;
    let (mut la, mut lb) = (a.listen()?, b.listen()?);
    warm_up(&a, &mut [&mut la, &mut lb])?;
    warm_up(&b, &mut [&mut la, &mut lb])?;

    // One direction at a time, N each; then both directions at once (CONCURRENT each). Each round ends with a sentinel from both hosts.
    round(&a, &b, &mut la, &mut lb, "ab", N, 0, 1)?;
    round(&a, &b, &mut la, &mut lb, "ba", 0, N, 2)?;
    round(&a, &b, &mut la, &mut lb, "both", CONCURRENT, CONCURRENT, 3)?;
    // Then a quiet period: nothing more may come (a duplicate would arrive late).
    la.quiet("a", QUIET)?;
    lb.quiet("b", QUIET)?;
    la.check_no_duplicates("a")?;
    lb.check_no_duplicates("b")?;
    let ca = stop_bridge(bridge_a)?;
    let cb = stop_bridge(bridge_b)?;
    for (who, c) in [("a", &ca), ("b", &cb)] {
        for key in ["dropped", "oversize", "publish_failed", "bad_payload", "inbound_dropped"] {
            assert_eq!(c[key], 0, "{who}: {key} in {c}");
        }
    }
    // Every local message went out (warm-ups sent before the interest had spread over the
    // route are published but reach nobody: at most once), and every remote one came in.
    let count = |c: &Json, k: &str| c[k].as_u64().unwrap_or(0);
    for (c, l, remote) in [(&ca, &la, "b"), (&cb, &lb, "a")] {
        assert!(count(c, "published") >= (N + CONCURRENT + 3) as u64, "{c}");
        let remote_seen = l.got.iter().filter(|m| m["data"]["origin"] == remote).count() as u64;
        assert!(
            count(c, "received") >= remote_seen && remote_seen >= (N + CONCURRENT + 3) as u64,
            "{c}: {remote_seen}"
        );
    }
    Ok(())
}

/// Waits for `nats_connected` and returns its `server`.
fn connected(proc: &mut Proc) -> TestResult<String> {
    let line = proc.expect_event("nats_connected")?;
    Ok(line["server"].as_str().unwrap_or_default().to_owned())
}

#[test]
fn three_hosts_all_bridged_each_message_reaches_every_other_host_once() -> TestResult {
    let cluster = Cluster::start(3)?;
    let hosts = [Host::new("a")?, Host::new("b")?, Host::new("c")?];
    let mut bridges = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let (mut proc, _) = h.bridge(&[EVENT], &cluster.nodes[i].url(), &[])?;
        connected(&mut proc)?;
        bridges.push(proc);
    }
    let mut ls = hosts.iter().map(Host::listen).collect::<TestResult<Vec<_>>>()?;
    for h in &hosts {
        let mut refs: Vec<&mut Listener> = ls.iter_mut().collect();
        warm_up(h, &mut refs)?;
    }
    const M: usize = 300;
    for h in &hosts {
        h.send(&burst(h, "data", M))?;
        h.send_one("sentinel", 1)?;
    }
    for (l, h) in ls.iter_mut().zip(&hosts) {
        l.wait_sentinels(&["a", "b", "c"], 1)?;
        for o in ["a", "b", "c"] {
            assert_eq!(l.seqs(o, "data"), (0..M).collect::<Vec<_>>(), "host {}: messages from {o}", h.name);
        }
        l.check_no_duplicates(h.name)?;
    }
    for proc in bridges {
        let c = stop_bridge(proc)?;
        assert_eq!((c["dropped"].as_u64(), c["bad_payload"].as_u64()), (Some(0), Some(0)), "{c}");
    }
    Ok(())
}

#[test]
fn attach_mode_beside_an_application_server_with_and_without_relay() -> TestResult {
    let nats = NatsServer::start(&NodeOptions::default())?;
    let (app, plain, remote) = (Host::new("app")?, Host::new("plain")?, Host::new("remote")?);
    // The applications' own servers: one relays client messages, one does not.
    let mut serve_app = app.env.spawn(&["serve", EVENT, "--relay"])?;
    serve_app.expect_event("listening")?;
    let mut serve_plain = plain.env.spawn(&["serve", EVENT])?;
    serve_plain.expect_event("listening")?;

    let (mut bridge_app, l) = app.bridge(&[EVENT], &nats.url(), &[])?;
    assert_eq!((l[0]["mode"].as_str(), l[0]["outbound_only"].as_bool()), (Some("attach"), Some(false)), "{}", l[0]);
    let (mut bridge_plain, l) = plain.bridge(&[EVENT], &nats.url(), &[])?;
    assert_eq!((l[0]["mode"].as_str(), l[0]["outbound_only"].as_bool()), (Some("attach"), Some(true)), "{}", l[0]);
    let (mut bridge_remote, l) = remote.bridge(&[EVENT], &nats.url(), &[])?;
    assert_eq!(l[0]["mode"], "host", "{}", l[0]);
    for b in [&mut bridge_app, &mut bridge_plain, &mut bridge_remote] {
        connected(b)?;
    }
    let (mut l_app, mut l_plain, mut l_remote) = (app.listen()?, plain.listen()?, remote.listen()?);

    // Outbound from both attached servers: what the application broadcasts goes across.
    for (serve, name, l) in [(&mut serve_app, "app", &mut l_app), (&mut serve_plain, "plain", &mut l_plain)] {
        let (mut remote_ok, mut local_ok) = (false, false);
        for k in 0.. {
            if k > 60 {
                return Err(fail(format!("warm-ups from {name} did not arrive")));
            }
            serve.write_line(&payload(name, "warmup", k))?;
            let short = Duration::from_millis(300);
            remote_ok = remote_ok || l_remote.wait_until("a warm-up", short, |m| is(m, name, "warmup")).is_ok();
            local_ok = local_ok || l.wait_until("a warm-up", short, |m| is(m, name, "warmup")).is_ok();
            if remote_ok && local_ok {
                break;
            }
        }
        for i in 0..50 {
            serve.write_line(&payload(name, "data", i))?;
        }
        serve.write_line(&payload(name, "sentinel", 1))?;
    }
    l_remote.wait_sentinels(&["app", "plain"], 1)?;
    for o in ["app", "plain"] {
        assert_eq!(l_remote.seqs(o, "data"), (0..50).collect::<Vec<_>>(), "from {o}");
    }
    // Inbound: the relaying server gets what the remote host sends (through the bridge, a
    // client of it); the server without relay cannot, and the bridge does not try.
    remote.send(&burst(&remote, "data", 50))?;
    remote.send_one("sentinel", 2)?;
    l_app.wait_sentinels(&["remote"], 2)?;
    assert_eq!(l_app.seqs("remote", "data"), (0..50).collect::<Vec<_>>());
    l_app.check_no_duplicates("app")?;
    l_remote.check_no_duplicates("remote")?;
    let c = stop_bridge(bridge_plain)?;
    assert_eq!(c["received"], 0, "an outbound-only bridge delivered messages: {c}");
    assert!(c["published"].as_u64() >= Some(51), "{c}");
    assert!(l_plain.seqs("remote", "data").is_empty());
    let c = stop_bridge(bridge_app)?;
    assert!(c["received"].as_u64() >= Some(51), "{c}");
    Ok(())
}

#[test]
fn a_killed_nats_node_fails_over_and_the_flow_resumes() -> TestResult {
    let mut cluster = Cluster::start(2)?;
    let (a, b) = (Host::new("a")?, Host::new("b")?);
    // Both bridges are given node 1 only: node 2 is known from what the cluster advertises.
    let (mut bridge_a, _) = a.bridge(&[EVENT], &cluster.nodes[0].url(), &[])?;
    let (mut bridge_b, _) = b.bridge(&[EVENT], &cluster.nodes[0].url(), &[])?;
    for p in [&mut bridge_a, &mut bridge_b] {
        connected(p)?;
    }
    let (mut la, mut lb) = (a.listen()?, b.listen()?);
    warm_up(&a, &mut [&mut la, &mut lb])?;
    warm_up(&b, &mut [&mut la, &mut lb])?;
    round(&a, &b, &mut la, &mut lb, "before", 500, 0, 1)?;

    cluster.nodes[0].kill();
    let node2 = format!(":{}", cluster.nodes[1].port());
    for p in [&mut bridge_a, &mut bridge_b] {
        p.expect_event("nats_disconnected")?;
        let server = connected(p)?;
        assert!(server.contains(&node2), "reconnected to {server}, not to node 2 ({node2})");
    }
    // Local delivery never stopped; across hosts it resumes by itself.
    a.send_one("local", 0)?;
    la.wait_until("a local message during fail-over", Duration::from_secs(10), |m| is(m, "a", "local"))?;
    warm_up(&a, &mut [&mut la, &mut lb])?;
    round(&a, &b, &mut la, &mut lb, "after", 500, 0, 2)?;
    la.check_no_duplicates("a")?;
    lb.check_no_duplicates("b")?;
    let ca = stop_bridge(bridge_a)?;
    // The node died between bursts: nothing was left to drop, and every message crossed.
    assert_eq!(ca["dropped"], 0, "{ca}");
    stop_bridge(bridge_b)?;
    Ok(())
}

/// Most messages of the mid-stream test's stream: below the listeners' outbound queue
/// (65,536, set by [`Host::new`]), so a local listener can never be that far behind and be
/// disconnected as a slow consumer, whatever the speeds.
const STREAM_MAX: usize = 60_000;

/// The outbound buffer of both bridges in the mid-stream test: small, so that an outage of
/// a few milliseconds already overflows it and the drop counter is exercised.
const SMALL_BUFFER: &str = "16";

/// Sends on its channel when dropped (a thread's "I am done", also when it fails).
struct DoneOnDrop(std::sync::mpsc::Sender<()>);

impl Drop for DoneOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

#[test]
fn a_nats_node_killed_mid_stream_every_message_is_delivered_locally_or_accounted_for() -> TestResult {
    let started = Instant::now();
    let mut cluster = Cluster::start(2)?;
    let (mut a, mut b) = (Host::new("a")?, Host::new("b")?);
    for h in [&mut a, &mut b] {
        h.env.set_env("SOCKET__NATS__OUTBOUND_BUFFER", SMALL_BUFFER);
    }
    // Both bridges on node 1: both must fail over to node 2 (known from what node 1 advertised).
    let (mut bridge_a, _) = a.bridge(&[EVENT], &cluster.nodes[0].url(), &[])?;
    let (mut bridge_b, _) = b.bridge(&[EVENT], &cluster.nodes[0].url(), &[])?;
    for p in [&mut bridge_a, &mut bridge_b] {
        connected(p)?;
    }
    let (mut la, mut lb) = (a.listen()?, b.listen()?);
    // Every local message of each host, to check the bridges' conservation at the end.
    let mut local_a = warm_up(&a, &mut [&mut la, &mut lb])?;
    let mut local_b = warm_up(&b, &mut [&mut la, &mut lb])?;

    // Host a streams (one `socketctl send`, fed line by line from a thread) until told to stop.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let sent = std::sync::atomic::AtomicUsize::new(0);
    let node2 = format!(":{}", cluster.nodes[1].port());
    let send_pid = std::sync::atomic::AtomicU32::new(0);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let (first_after, k0, total) = std::thread::scope(|s| -> TestResult<_> {
        let (a, stop, sent, send_pid) = (&a, &stop, &sent, &send_pid);
        let sender = s.spawn(move || -> Result<usize, String> {
            let _done = DoneOnDrop(done_tx);
            let mut send = a.env.spawn(&["send", EVENT]).map_err(|e| e.to_string())?;
            send_pid.store(send.pid(), std::sync::atomic::Ordering::Release);
            let mut i = 0;
            while i < STREAM_MAX && !stop.load(std::sync::atomic::Ordering::Acquire) {
                send.write_line(&payload("a", "stream", i)).map_err(|e| e.to_string())?;
                i += 1;
                sent.store(i, std::sync::atomic::Ordering::Release);
            }
            let out = send.finish().map_err(|e| e.to_string())?;
            if out.code != 0 {
                return Err(format!("the streaming send on a failed: {out:?}"));
            }
            Ok(i)
        });
        let steps = (|| -> TestResult<_> {
            // The kill comes when b has seen part of the stream (an observed event, no timer).
            let mut k0 = 0;
            lb.wait_until("300 messages of the stream on b", Duration::from_secs(30), |m| {
                if is(m, "a", "stream") {
                    k0 = k0.max(m["data"]["seq"].as_u64().unwrap_or(0) as usize);
                }
                k0 >= 300
            })?;
            cluster.nodes[0].kill();
            let killed_at = sent.load(std::sync::atomic::Ordering::Acquire);
            // During the outage b's local side goes on untouched.
            b.send(&burst(&b, "outage", 200))?;
            lb.wait_until("b's local messages during the outage", Duration::from_secs(10), |m| {
                is(m, "b", "outage") && m["data"]["seq"] == 199
            })?;
            for p in [&mut bridge_a, &mut bridge_b] {
                p.expect_event("nats_disconnected")?;
                let server = connected(p)?;
                assert!(server.contains(&node2), "reconnected to {server}, not to node 2 ({node2})");
            }
            // Both are back: b gets a message that a sent after that, and the stream ends.
            let sent_at_reconnect = sent.load(std::sync::atomic::Ordering::Acquire);
            if sent_at_reconnect >= STREAM_MAX {
                return Err(fail(format!("the stream ended ({STREAM_MAX}) before both bridges reconnected")));
            }
            let mut first_after = None;
            lb.wait_until("a message of the stream sent after both reconnected", Duration::from_secs(30), |m| {
                let seq = m["data"]["seq"].as_u64().unwrap_or(0) as usize;
                if first_after.is_none() && is(m, "a", "stream") && seq >= sent_at_reconnect {
                    first_after = Some(seq);
                }
                first_after.is_some()
            })?;
            eprintln!(
                "mid-stream: b had seen {k0} when node 1 was killed (a had sent {killed_at}); \
                 both reconnected when a had sent {sent_at_reconnect}"
            );
            Ok((first_after.unwrap_or(usize::MAX), k0))
        })();
        stop.store(true, std::sync::atomic::Ordering::Release);
        // Watchdog: a sender stuck in a write to a `send` that no longer reads is ended by
        // killing that process (ours, by its pid), which fails the write.
        if done_rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let pid = send_pid.load(std::sync::atomic::Ordering::Acquire);
            if let Some(pid) = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap_or(0)) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        let total = sender.join().map_err(|_| fail("the sender panicked"))?.map_err(fail);
        let (first_after, k0) = steps?;
        Ok((first_after, k0, total?))
    })?;
    local_a += total;
    local_b += 200;
    if first_after >= STREAM_MAX {
        return Err(fail("the stream reached its maximum before it crossed again"));
    }
    // After the fail-over the flow crosses completely both ways, without a restart; the
    // sentinels also close the stream (order per origin: what crosses of it came before).
    round(&a, &b, &mut la, &mut lb, "after", 500, 500, 1)?;
    local_a += 500 + 1;
    local_b += 500 + 1;
    la.check_no_duplicates("a")?;
    lb.check_no_duplicates("b")?;

    // (a) Local delivery never missed a message, on either host.
    assert_eq!(la.seqs("a", "stream"), (0..total).collect::<Vec<_>>(), "a's own stream on a");
    assert_eq!(lb.seqs("b", "outage"), (0..200).collect::<Vec<_>>(), "b's own messages on b during the outage");
    // (b) Across: an ordered subset without duplicates; everything before the kill point and
    // everything from the first message that crossed after the reconnect.
    let on_b = lb.seqs("a", "stream");
    assert!(on_b.windows(2).all(|w| w[0] < w[1]), "a's stream on b is out of order or duplicated");
    assert!(on_b.last().is_some_and(|&l| l < total));
    let crossed: BTreeSet<usize> = on_b.iter().copied().collect();
    let missing: Vec<usize> = (0..total).filter(|i| !crossed.contains(i)).collect();
    assert!(missing.iter().all(|&i| i > k0 && i < first_after), "lost outside the outage: {missing:?}");
    let on_a = la.seqs("b", "outage");
    assert!(on_a.windows(2).all(|w| w[0] < w[1]) && on_a.iter().all(|&i| i < 200), "{on_a:?}");

    // (c) The counters. Each local message ends in exactly one of published, dropped,
    // oversize, publish_failed; what was published may still be lost on the way (at most once:
    // the dying node's buffers, and node 2 before the other bridge's subscription is back).
    let ca = stop_bridge(bridge_a)?;
    let cb = stop_bridge(bridge_b)?;
    let n = |c: &Json, k: &str| c[k].as_u64().unwrap_or(u64::MAX);
    for (who, c, local) in [("a", &ca, local_a), ("b", &cb, local_b)] {
        assert_eq!((n(c, "oversize"), n(c, "publish_failed"), n(c, "bad_payload")), (0, 0, 0), "{who}: {c}");
        assert_eq!(
            n(c, "published") + n(c, "dropped"),
            local as u64,
            "{who}: every local message is counted once: {c}"
        );
    }
    let dropped = n(&ca, "dropped");
    assert!(dropped <= missing.len() as u64, "a counted {dropped} drops but only {} are missing on b", missing.len());
    let lost = missing.len() as u64 - dropped;
    let dropped_b = n(&cb, "dropped");
    assert!(dropped_b <= 200 - on_a.len() as u64, "b counted {dropped_b} drops, {}/200 crossed", on_a.len());
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for &i in &missing {
        match ranges.last_mut() {
            Some(r) if r.1 + 1 == i => r.1 = i,
            _ => ranges.push((i, i)),
        }
    }
    eprintln!(
        "mid-stream: sent {total}, crossed {}, dropped (counted) {dropped}, lost (published, not delivered) \
         {lost}, missing on b {ranges:?}; b's outage messages on a {}/200; {:.1?}\n  a: {ca}\n  b: {cb}",
        on_b.len(),
        on_a.len(),
        started.elapsed()
    );
    Ok(())
}

#[test]
fn nats_down_at_start_local_delivery_works_at_once_and_crossing_starts_later() -> TestResult {
    let port = free_port()?;
    let url = format!("nats://127.0.0.1:{port}");
    let (a, b) = (Host::new("a")?, Host::new("b")?);
    let (mut bridge_a, _) = a.bridge(&[EVENT], &url, &[])?;
    let (mut bridge_b, _) = b.bridge(&[EVENT], &url, &[])?;
    for p in [&mut bridge_a, &mut bridge_b] {
        let line = p.expect_event("nats_disconnected")?;
        assert!(line["reason"].as_str().is_some_and(|r| r.contains("unreachable")), "{line}");
    }
    let (mut la, mut lb) = (a.listen()?, b.listen()?);
    a.send_one("local", 0)?;
    la.wait_until("a local message with NATS down", Duration::from_secs(10), |m| is(m, "a", "local"))?;

    let _nats = NatsServer::start(&NodeOptions { port: Some(port), ..NodeOptions::default() })?;
    for p in [&mut bridge_a, &mut bridge_b] {
        connected(p)?;
    }
    warm_up(&a, &mut [&mut la, &mut lb])?;
    warm_up(&b, &mut [&mut la, &mut lb])?;
    round(&a, &b, &mut la, &mut lb, "data", 100, 100, 1)?;
    stop_bridge(bridge_a)?;
    stop_bridge(bridge_b)?;
    Ok(())
}

#[test]
fn retain_against_nats_without_jetstream_warns_and_the_bridge_keeps_serving() -> TestResult {
    let nats = NatsServer::start(&NodeOptions { jetstream: false, ..NodeOptions::default() })?;
    let (a, b) = (Host::new("a")?, Host::new("b")?);
    let (mut bridge_a, _) = a.bridge(&[EVENT], &nats.url(), &["--retain"])?;
    let (mut bridge_b, _) = b.bridge(&[EVENT], &nats.url(), &["--retain"])?;
    for p in [&mut bridge_a, &mut bridge_b] {
        connected(p)?;
        // Said on stderr (a warning log line), not an exit: the bridge goes on without it.
        let line = p.expect_stderr_containing("--retain does not work")?;
        assert!(line.contains("JetStream"), "{line}");
    }
    let (mut la, mut lb) = (a.listen()?, b.listen()?);
    warm_up(&a, &mut [&mut la, &mut lb])?;
    warm_up(&b, &mut [&mut la, &mut lb])?;
    round(&a, &b, &mut la, &mut lb, "data", 100, 100, 1)?;
    la.check_no_duplicates("a")?;
    lb.check_no_duplicates("b")?;
    for p in [bridge_a, bridge_b] {
        let c = stop_bridge(p)?; // exit 0
        assert_eq!((c["retained"].as_u64(), c["dropped"].as_u64()), (Some(0), Some(0)), "{c}");
    }
    Ok(())
}

#[test]
fn bad_urls_and_secrets_on_the_command_line_are_usage_errors() -> TestResult {
    let h = Host::new("a")?;
    for url in ["http://127.0.0.1:4222", "nats://127.0.0.1:99999", "nats://", "nats://u:s3cr3t-pw@127.0.0.1:4222"] {
        let out = h.env.run(&["bridge", EVENT, "--nats", url])?;
        assert_eq!(out.code, 2, "{url}: {out:?}");
        assert!(out.stderr.iter().any(|l| l.starts_with("socketctl: ")), "{url}: {out:?}");
        assert!(!out.stderr.iter().any(|l| l.contains("s3cr3t-pw")), "the password was echoed: {out:?}");
    }
    let out = h.env.run(&["bridge", EVENT, "--nats", "nats://127.0.0.1:4222", "--subject-prefix", "a.>"])?;
    assert_eq!(out.code, 2, "{out:?}");
    let out = h.env.run(&["bridge", EVENT, "--nats", "nats://127.0.0.1:4222", "--token-file", "/nonexistent/token"])?;
    assert_eq!(out.code, 2, "{out:?}");
    Ok(())
}

#[test]
fn a_refused_password_exits_4_with_the_servers_reason() -> TestResult {
    let nats = NatsServer::start(&NodeOptions {
        extra: "authorization { user: desk, password: right }\n".to_owned(),
        ..NodeOptions::default()
    })?;
    let mut h = Host::new("a")?;
    h.env.set_env("SOCKET_NATS_USER", "desk");
    h.env.set_env("SOCKET_NATS_PASSWORD", "wrong");
    let out = h.env.run(&["bridge", EVENT, "--nats", &nats.url()])?;
    assert_eq!(out.code, 4, "{out:?}");
    assert!(out.stderr.iter().any(|l| l.contains("authorization violation")), "{out:?}");
    assert!(!out.stderr.iter().any(|l| l.contains("wrong")), "the password was echoed: {out:?}");
    // The right password from the environment is accepted.
    let mut h = Host::new("b")?;
    h.env.set_env("SOCKET_NATS_USER", "desk");
    h.env.set_env("SOCKET_NATS_PASSWORD", "right");
    let (mut bridge, _) = h.bridge(&[EVENT], &nats.url(), &[])?;
    connected(&mut bridge)?;
    stop_bridge(bridge)?;
    Ok(())
}

/// Runs `openssl ARGS` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) -> TestResult {
    let out = std::process::Command::new("openssl").args(args).current_dir(dir).output()?;
    if !out.status.success() {
        return Err(fail(format!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr))));
    }
    Ok(())
}

/// A CA, a server certificate for 127.0.0.1 signed by it, and an unrelated CA.
fn make_certs(dir: &std::path::Path) -> TestResult {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca =
        vec!["req", "-x509", "-days", "1", "-subj", "/CN=bridge-test-ca", "-keyout", "ca.key", "-out", "ca.pem"];
    ca.extend_from_slice(&ec);
    openssl(dir, &ca)?;
    let mut other =
        vec!["req", "-x509", "-days", "1", "-subj", "/CN=other-ca", "-keyout", "other.key", "-out", "other.pem"];
    other.extend_from_slice(&ec);
    openssl(dir, &other)?;
    let mut csr = vec!["req", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr"];
    csr.extend_from_slice(&ec);
    openssl(dir, &csr)?;
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n")?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            "server.pem",
            "-extfile",
            "ext.cnf",
        ],
    )
}

#[test]
fn tls_with_the_right_ca_connects_and_a_wrong_ca_is_a_clear_error() -> TestResult {
    let certs = tempfile::tempdir()?;
    make_certs(certs.path())?;
    let p = |n: &str| certs.path().join(n).to_string_lossy().into_owned();
    let nats = NatsServer::start(&NodeOptions {
        extra: format!("tls {{ cert_file: {:?}, key_file: {:?} }}\n", p("server.pem"), p("server.key")),
        ..NodeOptions::default()
    })?;
    let url = format!("tls://127.0.0.1:{}", nats.port());
    let h = Host::new("a")?;
    let out = h.env.run(&["bridge", EVENT, "--nats", &url, "--tls-ca", &p("other.pem")])?;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.iter().any(|l| l.starts_with("socketctl: TLS with NATS") && l.contains("--tls-ca")), "{out:?}");
    let (mut bridge, _) = h.bridge(&[EVENT], &url, &["--tls-ca", &p("ca.pem")])?;
    connected(&mut bridge)?;
    stop_bridge(bridge)?;
    Ok(())
}

#[test]
fn a_token_from_a_file_is_accepted_and_a_wrong_one_exits_4() -> TestResult {
    let nats = NatsServer::start(&NodeOptions {
        extra: "authorization { token: t0k3n-right }\n".to_owned(),
        ..NodeOptions::default()
    })?;
    let h = Host::new("a")?;
    let (right, wrong) = (h.env.path("right.token"), h.env.path("wrong.token"));
    std::fs::write(&right, "t0k3n-right\n")?;
    std::fs::write(&wrong, "t0k3n-wrong\n")?;
    let out = h.env.run(&["bridge", EVENT, "--nats", &nats.url(), "--token-file", &wrong.to_string_lossy()])?;
    assert_eq!(out.code, 4, "{out:?}");
    assert!(!out.stderr.iter().any(|l| l.contains("t0k3n")), "the token was echoed: {out:?}");
    let (mut bridge, _) = h.bridge(&[EVENT], &nats.url(), &["--token-file", &right.to_string_lossy()])?;
    connected(&mut bridge)?;
    stop_bridge(bridge)?;
    Ok(())
}
