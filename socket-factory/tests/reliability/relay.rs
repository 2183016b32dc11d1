//! Relay delivery from producers that close while the server is writing to them.
//!
//! The broker use case: a relay server, a subscriber that reads everything, a long-lived client
//! that publishes in bursts, and short-lived producers that send a batch and close. The server
//! relays the long-lived client's burst toward each producer, which never reads it; the
//! producer's close then used to lose frames it had written (a TCP reset discards what the
//! server had not read; on a Unix socket the server's failed write tore the connection down
//! before its reader reached end-of-stream). Every round here must deliver every frame.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use socket_factory::{Client, Data, SocketMessage};

use super::harness::{ensure, on_both, watchdog, Fx, Net, TestResult};

/// Rounds per scenario (the issue asks for at least 100).
const ROUNDS: u32 = 100;
/// Messages per producer and round.
const BURST: u64 = 500;

/// A DATA message `{"src": src, "round": round, "seq": seq}`.
fn tagged(fx: &Fx, src: &str, round: u32, seq: u64) -> SocketMessage {
    SocketMessage::data(fx.event.clone(), Data::new().with("src", src).with("round", u64::from(round)).with("seq", seq))
}

/// How a producer ends its session.
#[derive(Debug, Clone, Copy)]
enum End {
    Disconnect,
    Drop,
}

/// Reads the subscriber until every source in `want` delivered `BURST` messages of `round`, in
/// order and without duplicates; fails at the deadline with what is missing.
fn collect_round(sub: &Client, round: u32, want: &[String], slow: bool) -> TestResult {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut next: HashMap<&str, u64> = want.iter().map(|s| (s.as_str(), 0)).collect();
    let mut read = 0u64;
    while next.values().any(|&n| n < BURST) {
        let left = deadline.saturating_duration_since(Instant::now());
        ensure!(!left.is_zero(), "round {round}: delivered so far {next:?} of {BURST} each");
        let Some(m) = sub.receive(Some(left))? else { continue };
        if m.data.get("round").and_then(|v| v.as_u64()) != Some(u64::from(round)) {
            return Err(format!("round {round}: a message of another round arrived: {:?}", m.data).into());
        }
        let src = m.data.get_str("src").unwrap_or_default().to_owned();
        let seq = m.data.get("seq").and_then(|v| v.as_u64()).ok_or("a message without seq")?;
        let Some(expected) = next.get_mut(src.as_str()) else {
            return Err(format!("round {round}: a message from an unknown source {src:?}").into());
        };
        ensure!(seq == *expected, "round {round}: {src} delivered seq {seq} where {expected} was next");
        *expected += 1;
        read += 1;
        if slow && read % 64 == 0 {
            // A subscriber that is slower than the producers (not a synchronisation).
            thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(())
}

/// One scenario: `producers` short-lived producers per round beside one long-lived publisher.
fn rounds(net: Net, producers: usize, slow: bool) -> TestResult {
    let fx = Arc::new(Fx::new(net)?);
    let server = fx.server_with(|o| {
        o.relay = true;
        // Room for a whole round in the subscriber's queue: this scenario is about closing
        // producers, not about slow consumers.
        o.outbound_queue_size = 8192;
        o.outbound_queue_bytes = 64 << 20;
    })?;
    let sub = fx.client_with(|o| o.receive_buffer_size = 8192)?;
    let long = Arc::new(fx.client()?);
    for round in 0..ROUNDS {
        let publisher = {
            let (fx, long) = (fx.clone(), long.clone());
            thread::spawn(move || -> TestResult {
                for seq in 0..BURST {
                    long.send(&tagged(&fx, "long", round, seq))?;
                }
                Ok(())
            })
        };
        let mut handles = Vec::new();
        let mut want = vec!["long".to_owned()];
        for p in 0..producers {
            let name = format!("p{p}");
            want.push(name.clone());
            let fx = fx.clone();
            let end = if (round as usize + p) % 2 == 0 { End::Disconnect } else { End::Drop };
            handles.push(thread::spawn(move || -> TestResult {
                let client = fx.client()?;
                for seq in 0..BURST {
                    client.send(&tagged(&fx, &name, round, seq))?;
                }
                match end {
                    End::Disconnect => client.disconnect(),
                    End::Drop => drop(client),
                }
                Ok(())
            }));
        }
        collect_round(&sub, round, &want, slow)?;
        // The publisher never reads: what the server relayed to it is thrown away here, so its
        // receive buffer never fills up over the rounds.
        long.clear_buffer();
        publisher.join().map_err(|_| "the publisher panicked")??;
        for h in handles {
            h.join().map_err(|_| "a producer panicked")??;
        }
    }
    let stats = server.stats();
    ensure!(stats.slow_consumers == 0, "no slow consumer expected: {stats:?}");
    server.stop()?;
    Ok(())
}

fn one_producer(net: Net, _name: &str) -> TestResult {
    watchdog(240, move || rounds(net, 1, false))
}
on_both!(closing_producer_loses_nothing_while_relayed_to, one_producer);

fn two_producers(net: Net, _name: &str) -> TestResult {
    watchdog(240, move || rounds(net, 2, false))
}
on_both!(two_closing_producers_at_once_lose_nothing, two_producers);

fn slow_subscriber(net: Net, _name: &str) -> TestResult {
    watchdog(240, move || rounds(net, 1, true))
}
on_both!(closing_producer_loses_nothing_with_a_slow_subscriber, slow_subscriber);
