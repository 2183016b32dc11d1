//! Reconnect behaviour, RELIABILITY.md §7.7 (R1-R4, R6). R5 (turmoil simulation) is not
//! covered: see docs/reliability.md.
//!
//! Attempts are observed from the server side: a fake server records the time of each
//! connection and the `client_name` of its `hello`, so each client's attempts are known.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use socket_factory::{Client, ConnectionState, Data, ErrorKind, EventName, Server, SocketMessage};

use super::harness::*;

const S5: Duration = Duration::from_secs(5);

/// Connects `n` named clients to a fake server that welcomes each once, cuts them all off at
/// once and then hangs up on every reconnect (`hello` read, no answer) for `window`; returns
/// every client's attempt times and the instant of the cut (the clients stay alive).
fn attempts_against(
    fx: &Fx,
    n: usize,
    prefix: &str,
    window: Duration,
    initial: Duration,
    max: Duration,
) -> TestResult<Observed> {
    let fake = FakeServer::start(&fx.addr(), fx.event.clone(), Fake::WelcomeFirst)?;
    let clients: Vec<Client> = (0..n)
        .map(|i| {
            fx.client_with(|o| {
                o.client_name = Some(format!("{prefix}{i}"));
                o.reconnect_initial_delay = initial;
                o.reconnect_max_delay = max;
            })
        })
        .collect::<Result<_, _>>()?;
    ensure!(fake.welcomed() == n, "{} of {n} clients welcomed", fake.welcomed());
    let lost = fake.release();
    std::thread::sleep(window);
    let by = fake.by_client();
    fake.stop();
    Ok((by, lost, clients))
}

/// Attempt times per client name, the instant of the cut, and the (still alive) clients.
type Observed = (HashMap<String, Vec<Instant>>, Instant, Vec<Client>);

fn gaps(times: &[Instant]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

// reconnect backoff of many clients is jittered (RELIABILITY.md R1) ---------------------------

/// Twenty clients lose their server, which stays away (a fake accepts, reads `hello` and hangs
/// up): each client's attempt gaps stay between the 50 ms floor (half the initial 100 ms) and
/// the doubling schedule capped at 800 ms (scaled down from 5 s), the first retries are spread
/// over `[50 ms, 100 ms]` (jittered too), the mean gap at the cap sits well under the cap (full
/// jitter), and attempts after the first retry show no synchronized spike.
#[cfg(feature = "unix")]
#[test]
fn backoff_schedule_and_jitter() -> TestResult {
    watchdog(60, || {
        let fx = Fx::new(Net::Unix)?;
        let initial = Duration::from_millis(100);
        let cap = Duration::from_millis(800);
        let (by, lost, clients) = attempts_against(&fx, 20, "r1-", Duration::from_secs(4), initial, cap)?;
        drop(clients);
        let slack = Duration::from_millis(120);
        let floor = initial / 2;
        let mut at_cap = Vec::new();
        let mut late = Vec::new();
        let mut firsts = Vec::new();
        for i in 0..20 {
            let times = by.get(&format!("r1-{i}")).cloned().unwrap_or_default();
            ensure!(times.len() >= 4, "client {i} made {} attempts in 4 s", times.len());
            // The first retry comes after a delay in [initial / 2, initial].
            let first = times[0] - lost;
            ensure!(
                first >= floor - Duration::from_millis(10) && first < initial + slack * 2,
                "first retry after {first:?}"
            );
            firsts.push(first);
            for (k, g) in gaps(&times).into_iter().enumerate() {
                let cur = (initial * 2u32.pow(k as u32 + 1)).min(cap);
                ensure!(g >= floor - Duration::from_millis(10), "client {i} gap {k} = {g:?}: faster than the floor");
                ensure!(g <= cur + slack, "client {i} gap {k} = {g:?} beyond the schedule ({cur:?})");
                if cur == cap {
                    at_cap.push(g);
                }
            }
            late.extend(times.iter().skip(3).map(|t| (*t - lost).as_millis() / 50));
        }
        let mean = at_cap.iter().sum::<Duration>() / at_cap.len().max(1) as u32;
        let mut bins: HashMap<u128, usize> = HashMap::new();
        for b in late {
            *bins.entry(b).or_default() += 1;
        }
        let spike = bins.values().copied().max().unwrap_or(0);
        let first_min = firsts.iter().min().copied().unwrap_or_default();
        let first_max = firsts.iter().max().copied().unwrap_or_default();
        measured(&format!(
            "R1: first retries {first_min:?}..{first_max:?}; mean gap at the cap {mean:?} over {} gaps; largest 50 ms bin {spike} attempts",
            at_cap.len()
        ));
        // Twenty uniform draws over 50 ms spread over more than 10 ms unless the first delay has no jitter.
        ensure!(
            first_max - first_min > Duration::from_millis(10),
            "first retries not spread: {first_min:?}..{first_max:?}"
        );
        ensure!(!at_cap.is_empty(), "no client reached the cap");
        ensure!(mean > Duration::from_millis(250) && mean < Duration::from_millis(650), "mean gap at the cap {mean:?}");
        ensure!(spike <= 10, "{spike} of 20 clients retried within one 50 ms bin");
        Ok(())
    })
}

// backoff not reset by a bare connect (RELIABILITY.md R2) --------------------------------------

on_both!(backoff_not_reset_by_a_bare_connect);

/// A server that accepts and closes at once (a crash loop, or a full server): the connect
/// succeeds every time, yet the delay keeps doubling; only a completed handshake resets it.
fn backoff_not_reset_by_a_bare_connect(net: Net, _name: &str) -> TestResult {
    watchdog(30, move || {
        let fx = Fx::new(net)?;
        let initial = Duration::from_millis(50);
        let (by, _, clients) =
            attempts_against(&fx, 1, "r2-", Duration::from_millis(2500), initial, Duration::from_millis(800))?;
        let times = by.get("r2-0").cloned().unwrap_or_default();
        let g = gaps(&times);
        measured(&format!("{net:?} R2: {} attempts in 2.5 s, gaps {g:?}", times.len()));
        ensure!(times.len() >= 3, "{} attempts", times.len());
        ensure!(times.len() <= 15, "{} attempts in 2.5 s: the delay was reset by the connect", times.len());
        let later: Vec<Duration> = g.iter().skip(3).copied().collect();
        let mean = later.iter().sum::<Duration>() / later.len().max(1) as u32;
        ensure!(later.is_empty() || mean >= initial * 2, "later gaps average {mean:?}: no growth");
        // After a real handshake the delay starts over: the next loss is retried after the floor.
        let server = fx.server()?;
        let c = &clients[0];
        wait_until(S5, "the client back", || c.is_connected())?;
        let t = Instant::now();
        server.stop()?;
        drop(server);
        let again = fx.server()?;
        wait_until(S5, "the client back again", || c.is_connected())?;
        ensure!(
            t.elapsed() < Duration::from_millis(600),
            "after a handshake the delay restarts at the floor: {:?}",
            t.elapsed()
        );
        again.stop()?;
        Ok(())
    })
}

// disconnect during backoff (RELIABILITY.md R3) ------------------------------------------------

on_both!(disconnect_during_backoff);

/// `disconnect()` while backing off returns at once, closes the client for good and stops
/// every further attempt.
fn disconnect_during_backoff(net: Net, _name: &str) -> TestResult {
    watchdog(30, move || {
        let fx = Fx::new(net)?;
        let server = fx.server()?;
        let c = fx.client_with(|o| o.client_name = Some("r3".to_owned()))?;
        server.stop()?;
        drop(server);
        let fake = FakeServer::start(&fx.addr(), fx.event.clone(), Fake::CloseAfterHello)?;
        wait_until(S5, "two reconnect attempts", || fake.by_client().get("r3").map_or(0, Vec::len) >= 2)?;
        let t = Instant::now();
        c.disconnect();
        let took = t.elapsed();
        let at = fake.by_client().get("r3").map_or(0, Vec::len);
        // Time is under test: nothing may happen for a while.
        std::thread::sleep(Duration::from_secs(1));
        let after = fake.by_client().get("r3").map_or(0, Vec::len);
        fake.stop();
        measured(&format!("{net:?} R3: disconnect took {took:?}; attempts {at} then {after}"));
        ensure!(took < Duration::from_millis(200), "disconnect took {took:?}");
        ensure!(c.state() == ConnectionState::Closed, "state {:?}", c.state());
        ensure!(after <= at + 1, "attempts went on after disconnect: {at} -> {after}");
        let e = c.receive(Some(Duration::from_millis(10))).err().ok_or("receive after disconnect")?;
        ensure!(e.kind() == ErrorKind::Closed, "{e}");
        Ok(())
    })
}

// receiver thread survives reconnect and can disconnect (RELIABILITY.md R4) --------------------

on_both!(receiver_thread_survives_reconnect_and_can_disconnect);

/// The origin's bug 5 shape: the thread blocked in `receive` is the one that would have to
/// reconnect. Here the background task reconnects while a thread is blocked in `receive(None)`,
/// that same call returns the first message of the new server; and a thread iterating the
/// messages can call `disconnect()` from inside its loop (no self-join).
fn receiver_thread_survives_reconnect_and_can_disconnect(net: Net, _name: &str) -> TestResult {
    watchdog(30, move || {
        let fx = Fx::new(net)?;
        let s1 = fx.server()?;
        let c = fx.client()?;
        let c2 = c.clone();
        let blocked = std::thread::spawn(move || c2.receive(None));
        s1.stop()?;
        drop(s1);
        let s2 = fx.server()?;
        wait_until(S5, "the client back", || c.is_connected())?;
        s2.broadcast(&fx.data(42, 0))?;
        let got = blocked.join().map_err(|_| "receiver panicked")??;
        ensure!(got.as_ref().and_then(seq) == Some(42), "the blocked receive got {got:?}");
        let c3 = c.clone();
        let iterating = std::thread::spawn(move || -> TestResult<usize> {
            let mut n = 0;
            for m in c3.iter() {
                match m {
                    Ok(_) => {
                        n += 1;
                        c3.disconnect();
                    }
                    Err(e) => {
                        ensure!(e.kind() == ErrorKind::Closed, "{e}");
                        break;
                    }
                }
            }
            Ok(n)
        });
        s2.broadcast(&fx.data(43, 0))?;
        let n = iterating.join().map_err(|_| "iterating thread panicked")??;
        ensure!(n == 1, "{n} messages before the disconnect ended the loop");
        ensure!(c.state() == ConnectionState::Closed, "{:?}", c.state());
        s2.stop()?;
        Ok(())
    })
}

// protocol mismatch on a reconnect (RELIABILITY.md L15) -------------------------------------------

on_both!(protocol_mismatch_on_reconnect_closes_the_client);

/// L15 (docs/reliability.md open item 4): a client whose server comes back speaking another
/// protocol version stops at the first such answer and closes, instead of retrying: the state
/// becomes `Closed`, the fake server sees exactly one attempt, and `receive` and `send` fail
/// with `ErrorKind::Closed` naming the server's version (also in `close_reason`).
fn protocol_mismatch_on_reconnect_closes_the_client(net: Net, _name: &str) -> TestResult {
    watchdog(30, move || {
        let fx = Fx::new(net)?;
        let server = fx.server()?;
        let c = fx.client_with(|o| o.client_name = Some("l15".to_owned()))?;
        let states = c.state_changes();
        server.stop()?;
        drop(server);
        let fake = FakeServer::start(
            &fx.addr(),
            fx.event.clone(),
            Fake::Welcome { protocol: 2, event: fx.event.to_string() },
        )?;
        let deadline = Instant::now() + S5;
        let mut seen = Vec::new();
        while !seen.contains(&ConnectionState::Closed) {
            let left = deadline.saturating_duration_since(Instant::now());
            ensure!(!left.is_zero(), "the client did not close within 5 s; states {seen:?}");
            let s = recv_within(&states, left);
            match s {
                Some(s) => seen.push(s),
                None => return Err(format!("no state change; states {seen:?}").into()),
            }
        }
        ensure!(seen.contains(&ConnectionState::Reconnecting), "states {seen:?}");
        ensure!(c.state() == ConnectionState::Closed, "state {:?}", c.state());
        let attempts = fake.by_client().remove("l15").map_or(0, |v| v.len());
        ensure!(attempts == 1, "{attempts} attempts into a protocol 2 server: the client retried");
        let reason = c.close_reason().unwrap_or_default();
        ensure!(reason.contains("speaks protocol 2"), "close reason {reason:?}");
        let e = c.receive(Some(Duration::from_millis(10))).err().ok_or("receive after the close")?;
        ensure!(e.kind() == ErrorKind::Closed && e.to_string().contains("speaks protocol 2"), "{e}");
        let e = c.send(&fx.data(1, 0)).err().ok_or("send after the close")?;
        ensure!(e.kind() == ErrorKind::Closed && e.to_string().contains("speaks protocol 2"), "{e}");
        fake.stop();
        Ok(())
    })
}

// foreign server on the old port (RELIABILITY.md R6) -------------------------------------------

/// TCP discovery: the event's server comes back on the next port of its sequence because its
/// old port now belongs to another event's server. The client refuses the foreign server (its
/// `welcome` names the other event), finds the right one, and never delivers a foreign event.
#[cfg(feature = "tcp")]
#[test]
fn foreign_server_on_the_old_port() -> TestResult {
    watchdog(60, || {
        let (p, q) = two_free_ports()?;
        let fx = Fx::new(Net::Tcp)?;
        let mut discovery = fx.config.clone();
        discovery.socket.tcp.port = None;
        discovery.socket.tcp.port_range_start = p.min(q);
        discovery.socket.tcp.port_range_end = p.max(q);
        let order = socket_factory::tcp::probe_sequence(fx.event.as_str(), p.min(q), p.max(q));
        let (first, second) = (order[0], order[1]);
        let transport = fx.transport()?;
        let a1 = Server::new(transport.clone(), fx.event.clone(), &discovery)?;
        a1.start()?;
        ensure!(a1.address().is_some_and(|a| a.ends_with(&format!(":{first}"))), "A binds its first port");
        let c = Client::connect(transport.clone(), fx.event.clone(), &discovery)?;
        a1.stop()?;
        drop(a1);
        // Another event's server takes the old port and talks all the time.
        let other = EventName::new("other_event")?;
        let mut at_first = fx.config.clone();
        at_first.socket.tcp.port = Some(first);
        let b = Server::new(transport.clone(), other.clone(), &at_first)?;
        b.start()?;
        let (b2, o2) = (b.clone(), other.clone());
        let chatter = std::thread::spawn(move || {
            for n in 0..300u64 {
                if b2.broadcast(&SocketMessage::data(o2.clone(), Data::new().with("seq", n))).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        // Time is under test: with only the foreign server up, the client never connects.
        std::thread::sleep(Duration::from_secs(1));
        ensure!(!c.is_connected(), "the client connected to another event's server");
        let a2 = Server::new(transport, fx.event.clone(), &discovery)?;
        a2.start()?;
        ensure!(a2.address().is_some_and(|a| a.ends_with(&format!(":{second}"))), "A moved to its second port");
        wait_until(S5, "the client on A's new port", || c.is_connected())?;
        a2.broadcast(&fx.data(1, 0))?;
        let mut got = Vec::new();
        while let Some(m) = c.receive(Some(Duration::from_millis(500)))? {
            ensure!(m.event_name == fx.event, "a foreign event was delivered: {m:?}");
            got.push(m);
        }
        ensure!(got.iter().any(|m| seq(m) == Some(1)), "A's message did not arrive");
        b.stop()?;
        let _ = chatter.join();
        a2.stop()?;
        Ok(())
    })
}

/// Two free ports next to each other.
fn two_free_ports() -> TestResult<(u16, u16)> {
    for _ in 0..50 {
        let p = 20_000 + fastrand::u16(0..20_000);
        let a = std::net::TcpListener::bind(("127.0.0.1", p));
        let b = std::net::TcpListener::bind(("127.0.0.1", p + 1));
        if a.is_ok() && b.is_ok() {
            return Ok((p, p + 1));
        }
    }
    Err("no two adjacent free ports".into())
}
