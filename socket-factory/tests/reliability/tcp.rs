//! TCP-specific rows, RELIABILITY.md §7.8: T2 (self-connect) and T5 (latency). T1, T3, T4 and
//! T7 are covered by socket-tcp's own tests; T6 (toxiproxy-style proxy) is not covered here.

use std::time::{Duration, Instant};

use socket_factory::{ErrorKind, ServerEvent};

use super::harness::*;

/// A client reconnecting to a port of the ephemeral range where nobody listens (the setting in
/// which a TCP socket can connect to itself) is never reported connected; the self-connect case
/// itself is simulated deterministically by an echoing peer in
/// `abuse::self_connect_simulation_rejected` and detected below the engine by socket-tcp.
#[cfg(feature = "tcp")]
#[test]
fn never_connected_to_itself() -> TestResult {
    watchdog(30, || {
        let fx = Fx::new(Net::Tcp)?;
        // `fx.port` came from the kernel's ephemeral range and nobody listens on it now.
        let t = Instant::now();
        let res = fx.client_with(|o| {
            o.wait_for_server = true;
            o.wait_timeout = Some(Duration::from_millis(1500));
            o.reconnect_initial_delay = Duration::from_millis(10);
            o.reconnect_max_delay = Duration::from_millis(40);
        });
        let err = match res {
            Ok(c) => return Err(format!("connected to nobody ({:?})", c.server_address()).into()),
            Err(e) => e,
        };
        measured(&format!("Tcp T2: gave up after {:?}: {err}", t.elapsed()));
        ensure!(err.kind() == ErrorKind::Timeout, "{err}");
        Ok(())
    })
}

/// T5 (and the same over Unix sockets for comparison): 1,000 request/response round trips
/// (client `send`, the application answers with `send_to`): p99 far below the 40 ms of a Nagle
/// / delayed-ACK stall.
fn request_response_latency(net: Net, _name: &str) -> TestResult {
    watchdog(60, move || {
        let fx = Fx::new(net)?;
        let server = fx.server()?;
        let events = server.events();
        let s2 = server.clone();
        let echo = std::thread::spawn(move || {
            while let Ok(ev) = events.recv_blocking() {
                if let ServerEvent::Message { from, message } = ev {
                    if s2.send_to(from, &message).is_err() {
                        return;
                    }
                }
            }
        });
        let c = fx.client()?;
        let mut rtts = Vec::with_capacity(1000);
        for i in 0..1050u64 {
            let t = Instant::now();
            c.send(&fx.data(i, 32))?;
            let m = c.receive(Some(Duration::from_secs(5)))?.ok_or("no answer")?;
            ensure!(seq(&m) == Some(i), "answer {:?} to {i}", seq(&m));
            if i >= 50 {
                rtts.push(t.elapsed());
            }
        }
        rtts.sort();
        let p50 = rtts[rtts.len() / 2];
        let p99 = rtts[rtts.len() * 99 / 100];
        measured(&format!("{net:?} T5: 1000 round trips, p50 {p50:?}, p99 {p99:?}, max {:?}", rtts[rtts.len() - 1]));
        ensure!(p99 < Duration::from_millis(20), "p99 {p99:?}");
        server.stop()?;
        drop(echo);
        Ok(())
    })
}

on_both!(request_response_latency);
