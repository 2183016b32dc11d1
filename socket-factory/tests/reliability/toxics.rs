//! T6 (RELIABILITY.md §7.8): the engines over TCP through an in-process toxiproxy-style proxy
//! ([`super::proxy`]) with the toxics `latency`, `bandwidth`, `slicer`, `limit_data`,
//! `reset_peer` and `timeout(0)`.
//!
//! Each test starts a real server on its own port, a proxy in front of it, and a client that
//! connects to the proxy's port explicitly (`socket.tcp.port`); a second client connects to the
//! server directly where "others unaffected" is checked. Toxics are added once the handshake is
//! done unless the test says otherwise. Latency and bandwidth are time under test: the
//! assertions compare measured times with the injected ones.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_channel::Receiver;
use socket_factory::control::ErrorCode;
use socket_factory::{Client, ClientId, ClientOptions, ConnectionState, Data, Server, ServerEvent, SocketMessage};

use super::harness::*;
use super::proxy::{Dir, Proxy, Toxic};

const S5: Duration = Duration::from_secs(5);
/// A peer dropped mid-frame must be gone this fast (L-1 asks for 100 ms; slack for a busy CI).
const PROMPT: Duration = Duration::from_millis(500);

/// A server, its event stream, and a proxy in front of it.
struct Setup {
    fx: Fx,
    server: Server,
    events: socket_factory::ServerEvents,
    proxy: Proxy,
}

fn setup(seed: u64) -> TestResult<Setup> {
    let fx = Fx::new(Net::Tcp)?;
    let server = fx.server()?;
    let events = server.events();
    let proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], fx.port)), seed)?;
    Ok(Setup { fx, server, events, proxy })
}

impl Setup {
    /// A client named `name` connected through the proxy; returns it with its server-side id.
    fn proxied(&self, name: &str) -> TestResult<(Client, ClientId)> {
        let mut config = self.fx.config.clone();
        config.socket.tcp.port = Some(self.proxy.port());
        let mut o = ClientOptions::from_config(&config)?;
        o.client_name = Some(name.to_owned());
        let c = Client::connect_with(self.fx.transport()?, self.fx.event.clone(), config, o)?;
        let id = self.connected(name)?;
        Ok((c, id))
    }

    /// A client named `name` connected to the server directly; returns it with its id.
    fn direct(&self, name: &str) -> TestResult<(Client, ClientId)> {
        let c = self.fx.client_with(|o| o.client_name = Some(name.to_owned()))?;
        let id = self.connected(name)?;
        Ok((c, id))
    }

    /// The id of the next client named `name` to connect.
    fn connected(&self, name: &str) -> TestResult<ClientId> {
        let ev = expect_event(
            &self.events,
            S5,
            &format!("{name} connected"),
            |e| matches!(e, ServerEvent::Connected(info) if info.client_name.as_deref() == Some(name)),
        )?;
        match ev {
            ServerEvent::Connected(info) => Ok(info.id),
            other => Err(format!("unexpected {other:?}").into()),
        }
    }

    /// Waits for `id`'s disconnect; fails if a message from `id` arrives first (nothing partial
    /// may be delivered). Returns the reason and how long it took.
    fn dropped(&self, id: ClientId, timeout: Duration) -> TestResult<(String, Duration)> {
        let t = Instant::now();
        let mut delivered = None;
        let ev = expect_event(&self.events, timeout, "the proxied client's disconnect", |e| match e {
            ServerEvent::Message { from, message } if *from == id => {
                delivered = Some(message.clone());
                true
            }
            ServerEvent::Disconnected { id: gone, .. } => *gone == id,
            _ => false,
        })?;
        let took = t.elapsed();
        ensure!(delivered.is_none(), "a message of the cut client was delivered: {delivered:?}");
        match ev {
            ServerEvent::Disconnected { reason, .. } => Ok((reason, took)),
            other => Err(format!("unexpected {other:?}").into()),
        }
    }

    /// The next message from `id` (skipping other events).
    fn message_from(&self, id: ClientId, timeout: Duration) -> TestResult<SocketMessage> {
        let ev = expect_event(
            &self.events,
            timeout,
            "a message",
            |e| matches!(e, ServerEvent::Message { from, .. } if *from == id),
        )?;
        match ev {
            ServerEvent::Message { message, .. } => Ok(message),
            other => Err(format!("unexpected {other:?}").into()),
        }
    }

    /// Other clients are unaffected: a broadcast reaches `other`, and `other`'s message reaches
    /// the server.
    fn others_unaffected(&self, other: &Client, other_id: ClientId, seq_no: u64) -> TestResult {
        self.server.broadcast(&self.fx.data(seq_no, 0))?;
        let m = other.receive(Some(S5))?.ok_or("the other client got no broadcast")?;
        ensure!(seq(&m) == Some(seq_no), "the other client got {m:?}");
        other.send(&self.fx.data(seq_no + 1, 0))?;
        let m = self.message_from(other_id, S5)?;
        ensure!(seq(&m) == Some(seq_no + 1), "the server got {m:?} from the other client");
        Ok(())
    }
}

/// A message whose padding depends on `n` (size and content), to check content end to end.
fn patterned(fx: &Fx, n: u64, len: usize) -> SocketMessage {
    let pad: String = (0..len).map(|i| char::from(b'a' + ((n as usize * 7 + i) % 26) as u8)).collect();
    SocketMessage::data(fx.event.clone(), Data::new().with("seq", n).with("pad", pad))
}

/// Receives `n` messages and checks they are `expected(0..n)`, in order and intact.
fn receive_exactly(c: &Client, n: u64, expected: impl Fn(u64) -> SocketMessage) -> TestResult {
    for i in 0..n {
        let m = c.receive(Some(S5))?.ok_or_else(|| format!("message {i} of {n} did not arrive"))?;
        let want = expected(i);
        ensure!(
            m.data == want.data,
            "message {i}: got seq {:?}, content differs: in order and intact expected",
            seq(&m)
        );
    }
    Ok(())
}

/// Waits until the state changes seen on `states` include `want`; returns all states seen.
fn wait_state(states: &Receiver<ConnectionState>, want: ConnectionState, timeout: Duration) -> TestResult<()> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        ensure!(!left.is_zero(), "no {want:?} within {timeout:?}; states {seen:?}");
        let s = recv_within(states, left);
        match s {
            Some(s) if s == want => return Ok(()),
            Some(s) => seen.push(s),
            None => return Err(format!("no {want:?} within {timeout:?}; states {seen:?}").into()),
        }
    }
}

/// A big message (about 1 KiB) and half its frame length: a proxy cut after `half` bytes of it
/// leaves the server inside that frame (after the hello of a reconnect, which is shorter).
fn big(fx: &Fx, n: u64) -> (SocketMessage, u64) {
    let m = patterned(fx, n, 1000);
    let half = (frame_of(&m).len() / 2) as u64;
    (m, half)
}

/// After a cut: the client notices, reconnects (through the proxy, toxics removed) and its next
/// message arrives intact.
fn reconnects_and_delivers(s: &Setup, c: &Client, states: &Receiver<ConnectionState>, name: &str) -> TestResult {
    wait_state(states, ConnectionState::Reconnecting, S5)?;
    wait_state(states, ConnectionState::Connected, S5)?;
    let id = s.connected(name)?;
    ensure!(s.proxy.links() >= 2, "the client came back without a new connection through the proxy");
    let (m, _) = big(&s.fx, 99);
    c.send(&m)?;
    let got = s.message_from(id, S5)?;
    ensure!(got.data == m.data, "after the reconnect the message arrived changed: seq {:?}", seq(&got));
    Ok(())
}

// latency --------------------------------------------------------------------------------------

/// `latency` 40 ms (+ up to 10 ms jitter) in both directions: every request/response round
/// trip takes at least the injected 80 ms, and 100 broadcasts arrive complete and in order.
#[cfg(feature = "tcp")]
#[test]
fn latency_delays_round_trips_and_keeps_order() -> TestResult {
    watchdog(30, || {
        let s = setup(1)?;
        let (c, id) = s.proxied("slow-link")?;
        let latency = Duration::from_millis(40);
        for dir in [Dir::Up, Dir::Down] {
            s.proxy.add(dir, Toxic::Latency { latency, jitter: Duration::from_millis(10) });
        }
        let mut rtts = Vec::new();
        for i in 0..10u64 {
            let t = Instant::now();
            c.send(&s.fx.data(i, 0))?;
            let req = s.message_from(id, S5)?;
            ensure!(seq(&req) == Some(i), "request {i} arrived as {req:?}");
            s.server.send_to(id, &s.fx.data(1000 + i, 0))?;
            let resp = c.receive(Some(S5))?.ok_or("no response")?;
            rtts.push(t.elapsed());
            ensure!(seq(&resp) == Some(1000 + i), "response {i} arrived as {resp:?}");
        }
        let min = rtts.iter().min().copied().unwrap_or_default();
        let max = rtts.iter().max().copied().unwrap_or_default();
        measured(&format!("T6 latency 2 x 40 ms (+0..10 ms): round trips {min:?} .. {max:?}"));
        ensure!(min >= latency * 2, "a round trip took {min:?}, less than the injected {:?}", latency * 2);
        for i in 0..100 {
            s.server.broadcast(&patterned(&s.fx, i, (i as usize * 13) % 300))?;
        }
        receive_exactly(&c, 100, |i| patterned(&s.fx, i, (i as usize * 13) % 300))?;
        s.server.stop()?;
        Ok(())
    })
}

// bandwidth ------------------------------------------------------------------------------------

/// `bandwidth` 256 KiB/s towards the client: 64 broadcasts of 4 KiB take at least the time the
/// rate allows (less one piece), arrive complete and in order, and within the client's frame
/// deadline (a frame is never left unfinished for long).
#[cfg(feature = "tcp")]
#[test]
fn bandwidth_limits_throughput_without_loss() -> TestResult {
    watchdog(30, || {
        let s = setup(2)?;
        let (c, _) = s.proxied("thin-pipe")?;
        let rate = 256 * 1024u64;
        s.proxy.add(Dir::Down, Toxic::Bandwidth { bytes_per_sec: rate });
        let msgs: Vec<SocketMessage> = (0..64).map(|i| patterned(&s.fx, i, 4096)).collect();
        let bytes: u64 = msgs.iter().map(|m| frame_of(m).len() as u64).sum();
        let before = s.proxy.forwarded(Dir::Down);
        let t = Instant::now();
        for m in &msgs {
            s.server.broadcast(m)?;
        }
        receive_exactly(&c, 64, |i| patterned(&s.fx, i, 4096))?;
        let took = t.elapsed();
        // The pump counts a write after it returned: the client may have decoded it already.
        wait_until(S5, "the proxy's count", || s.proxy.forwarded(Dir::Down) - before >= bytes)?;
        let sent = s.proxy.forwarded(Dir::Down) - before;
        let floor = Duration::from_secs_f64((bytes - 16 * 1024) as f64 / rate as f64);
        measured(&format!(
            "T6 bandwidth {} KiB/s: {} KiB in {took:?} ({:.0} KiB/s)",
            rate >> 10,
            bytes >> 10,
            sent as f64 / 1024.0 / took.as_secs_f64()
        ));
        ensure!(took >= floor, "{bytes} bytes at {rate} B/s took {took:?}, less than {floor:?}");
        ensure!(c.is_connected(), "the client lost its connection");
        s.server.stop()?;
        Ok(())
    })
}

// slicer ---------------------------------------------------------------------------------------

/// `slicer` in both directions from the start (the handshake is sliced too): every chunk is
/// cut into 1..=7-byte pieces with delays up to 100 µs (seeded). 150 broadcasts and 60 client
/// messages of varying sizes arrive intact and in order, through thousands of pieces.
#[cfg(feature = "tcp")]
#[test]
fn slicer_decoders_reassemble_every_frame() -> TestResult {
    watchdog(40, || {
        let s = setup(0x5eed)?;
        for dir in [Dir::Up, Dir::Down] {
            s.proxy.add(dir, Toxic::Slicer { max_piece: 7, max_delay: Duration::from_micros(100) });
        }
        let (c, id) = s.proxied("sliced")?;
        let size = |i: u64| ((i * 37) % 400) as usize;
        let t = Instant::now();
        for i in 0..150 {
            s.server.broadcast(&patterned(&s.fx, i, size(i)))?;
        }
        receive_exactly(&c, 150, |i| patterned(&s.fx, i, size(i)))?;
        for i in 0..60 {
            c.send(&patterned(&s.fx, 500 + i, size(i)))?;
        }
        for i in 0..60 {
            let m = s.message_from(id, S5)?;
            let want = patterned(&s.fx, 500 + i, size(i));
            ensure!(m.data == want.data, "client message {i}: got seq {:?}, content differs", seq(&m));
        }
        let (up, down) = (s.proxy.pieces(Dir::Up), s.proxy.pieces(Dir::Down));
        let (bu, bd) = (s.proxy.forwarded(Dir::Up), s.proxy.forwarded(Dir::Down));
        measured(&format!(
            "T6 slicer: {bd} bytes in {down} pieces down, {bu} bytes in {up} pieces up, {:?}",
            t.elapsed()
        ));
        // Pieces average 4 bytes: far more pieces than 7-byte maxima would need.
        ensure!(down * 7 >= bd && up * 7 >= bu, "pieces larger than 7 bytes were written");
        ensure!(down > 5_000 && up > 1_000, "too few pieces: {down} down, {up} up");
        s.server.stop()?;
        Ok(())
    })
}

// limit_data -----------------------------------------------------------------------------------

/// `limit_data` (like L-1): the proxy forwards half of a client's frame, then closes both
/// sides. The server drops that client promptly and delivers nothing of it, a direct client is
/// unaffected, and the cut client notices, reconnects and delivers its next message.
#[cfg(feature = "tcp")]
#[test]
fn limit_data_mid_frame_drops_only_the_cut_client() -> TestResult {
    watchdog(30, || {
        let s = setup(3)?;
        let (other, other_id) = s.direct("other")?;
        let (c, id) = s.proxied("cut")?;
        let states = c.state_changes();
        let (m, half) = big(&s.fx, 1);
        let toxic = s.proxy.add(Dir::Up, Toxic::LimitData { bytes: half });
        c.send(&m)?;
        let (reason, took) = s.dropped(id, S5)?;
        measured(&format!("T6 limit_data: the server dropped the cut client {took:?} after the send ({reason})"));
        ensure!(took < PROMPT, "the server took {took:?} to drop the cut client");
        ensure!(s.proxy.limited() == 1, "the proxy closed {} links", s.proxy.limited());
        s.proxy.remove(toxic);
        s.others_unaffected(&other, other_id, 10)?;
        reconnects_and_delivers(&s, &c, &states, "cut")?;
        ensure!(s.server.stats().malformed == 0, "{:?}", s.server.stats());
        s.server.stop()?;
        Ok(())
    })
}

// reset_peer -----------------------------------------------------------------------------------

/// `reset_peer` (like L-9): the proxy holds a client's frame after half of it (`timeout(0)`
/// after N bytes), then resets the connection (RST to both peers). The server drops that
/// client promptly and delivers nothing of it, a direct client is unaffected, and the cut
/// client notices the reset, reconnects and delivers its next message.
#[cfg(feature = "tcp")]
#[test]
fn reset_peer_mid_frame_drops_only_the_cut_client() -> TestResult {
    watchdog(30, || {
        let s = setup(4)?;
        let (other, other_id) = s.direct("other")?;
        let (c, id) = s.proxied("reset")?;
        let states = c.state_changes();
        let (m, half) = big(&s.fx, 1);
        let before = s.proxy.forwarded(Dir::Up);
        let hold = s.proxy.add(Dir::Up, Toxic::Timeout { after_bytes: half });
        c.send(&m)?;
        wait_until(S5, "half of the frame at the server", || s.proxy.forwarded(Dir::Up) >= before + half)?;
        let t = Instant::now();
        let reset = s.proxy.add(Dir::Up, Toxic::ResetPeer { timeout: Duration::ZERO });
        let (reason, _) = s.dropped(id, S5)?;
        let took = t.elapsed();
        measured(&format!("T6 reset_peer: the server dropped the reset client {took:?} after the reset ({reason})"));
        ensure!(took < PROMPT, "the server took {took:?} to drop the reset client");
        ensure!(s.proxy.resets() >= 1, "the proxy reset no link");
        s.proxy.remove(reset);
        s.proxy.remove(hold);
        s.others_unaffected(&other, other_id, 10)?;
        reconnects_and_delivers(&s, &c, &states, "reset")?;
        s.server.stop()?;
        Ok(())
    })
}

// timeout(0) -----------------------------------------------------------------------------------

/// `timeout(0)` towards the server after half a frame: the proxy stops forwarding and holds the
/// connection open. The server closes it at the frame deadline (`frame_timeout`, 1 s here) with
/// ERROR `protocol` naming the deadline, which reaches the client (the other direction still
/// flows); nothing partial is delivered, a direct client is unaffected meanwhile, and once the
/// toxic is gone the client reconnects.
#[cfg(feature = "tcp")]
#[test]
fn timeout_half_frame_hits_frame_deadline() -> TestResult {
    watchdog(30, || {
        let s = setup(5)?;
        let (other, other_id) = s.direct("other")?;
        let (c, id) = s.proxied("stalled")?;
        let states = c.state_changes();
        let (m, half) = big(&s.fx, 1);
        let hold = s.proxy.add(Dir::Up, Toxic::Timeout { after_bytes: half });
        let t = Instant::now();
        c.send(&m)?;
        s.others_unaffected(&other, other_id, 10)?;
        let (reason, _) = s.dropped(id, S5)?;
        let took = t.elapsed();
        let deadline = Duration::from_secs_f64(s.fx.config.socket.frame_timeout);
        measured(&format!("T6 timeout(0): the server closed the half frame after {took:?} ({reason})"));
        ensure!(took >= deadline - Duration::from_millis(50), "closed after {took:?}, before the frame deadline");
        ensure!(took < deadline + PROMPT, "closed after {took:?}: the frame deadline is {deadline:?}");
        // The broadcast of `others_unaffected` reached this client too (downstream flows).
        let b = c.receive(Some(S5))?.ok_or("the client got no broadcast")?;
        ensure!(seq(&b) == Some(10), "expected the broadcast, got {b:?}");
        let e = c.receive(Some(S5))?.ok_or("the client got no ERROR")?;
        match ErrorCode::parse(&e) {
            Some((ErrorCode::Protocol, text)) => ensure!(text.contains("frame_timeout"), "{text}"),
            _ => return Err(format!("expected ERROR protocol, got {e:?}").into()),
        }
        s.proxy.remove(hold);
        reconnects_and_delivers(&s, &c, &states, "stalled")?;
        s.server.stop()?;
        Ok(())
    })
}

/// `timeout(0)` towards the client: the proxy stops reading from the server, as a client that
/// stops reading would. While the server publishes 16 KiB messages, that client becomes a
/// slow consumer (outbound queue bound or write stall, whichever first) and is dropped, counted
/// once; a direct client gets every message in order. When the toxic goes, the held client
/// finds an unbroken run of messages from the first one, then reconnects.
#[cfg(feature = "tcp")]
#[test]
fn timeout_towards_client_is_a_slow_consumer() -> TestResult {
    watchdog(60, || {
        let s = setup(6)?;
        let (other, _) = s.direct("other")?;
        let (c, id) = s.proxied("frozen")?;
        let states = c.state_changes();
        let hold = s.proxy.add(Dir::Down, Toxic::Timeout { after_bytes: 0 });
        let reader = std::thread::spawn(move || -> TestResult<u64> {
            let mut next = 0;
            loop {
                match other.receive(Some(Duration::from_secs(3)))? {
                    Some(m) if seq(&m) == Some(u64::MAX) => return Ok(next),
                    Some(m) => {
                        ensure!(seq(&m) == Some(next), "the direct client got {:?}, expected {next}", seq(&m));
                        next += 1;
                    }
                    None => return Err(format!("the direct client waited 3 s after message {next}").into()),
                }
            }
        });
        let t = Instant::now();
        let mut published = 0u64;
        // Marked a slow consumer at the broadcast that overflows its queue (or by the writer at
        // the write stall); the `Disconnected` event follows once its connection has ended.
        while s.server.stats().slow_consumers == 0 {
            ensure!(published < 1500, "the held client was not dropped after {published} messages");
            s.server.broadcast(&s.fx.data(published, 16 * 1024))?;
            published += 1;
            if published % 8 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let ev = expect_event(&s.events, S5, "a disconnect", |e| matches!(e, ServerEvent::Disconnected { .. }))?;
        let reason = match ev {
            ServerEvent::Disconnected { id: who, reason } => {
                ensure!(who == id, "client {who:?} dropped: {reason}");
                reason
            }
            other => return Err(format!("unexpected {other:?}").into()),
        };
        measured(&format!(
            "T6 timeout(0) towards the client: slow consumer after {published} messages of 16 KiB, {:?} ({reason})",
            t.elapsed()
        ));
        ensure!(reason.contains("slow consumer"), "{reason}");
        ensure!(s.server.stats().slow_consumers == 1, "{:?}", s.server.stats());
        s.server.broadcast(&s.fx.data(u64::MAX, 0))?;
        let got = reader.join().map_err(|_| "the direct reader panicked")??;
        ensure!(got == published, "the direct client got {got} of {published}");
        s.proxy.remove(hold);
        let mut next = 0u64;
        let mut error = false;
        loop {
            match c.receive(Some(Duration::from_secs(2)))? {
                Some(m) if ErrorCode::parse(&m).is_some() => {
                    ensure!(matches!(ErrorCode::parse(&m), Some((ErrorCode::SlowConsumer, _))), "{m:?}");
                    error = true;
                }
                Some(m) => {
                    ensure!(!error && seq(&m) == Some(next), "held client: got {:?} after {next}", seq(&m));
                    next += 1;
                }
                None => break,
            }
        }
        measured(&format!("T6 timeout(0): the held client then read {next} messages (error frame: {error})"));
        ensure!(next < published, "the held client got all {published} messages");
        wait_state(&states, ConnectionState::Connected, S5)?;
        s.server.stop()?;
        Ok(())
    })
}
