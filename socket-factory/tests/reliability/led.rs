//! Caller-driven reads on the server (`socket-core/src/server/lead.rs`): threads waiting in
//! `ServerEvents::recv_blocking` read the server's only connection themselves. The hand-off
//! between the connection's task and the waiting threads (leader/follower) is where such a
//! design loses, duplicates or reorders messages, or keeps a second client waiting; these
//! tests drive it over the real transports, with a small event buffer so that a leader finds
//! it full again and again, and each checks that the threads did read
//! (`ServerStats::frames_read_by_callers`), so that none of them passes on the engine's path.

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use socket_factory::control::ErrorCode;
use socket_factory::{Data, Server, ServerEvent, ServerEvents, SocketMessage};

use super::harness::*;

/// Messages each sending thread sends.
const PER_SENDER: u64 = 5_000;
/// Sending threads on the one client handle.
const SENDERS: u64 = 2;
/// Threads waiting in `recv_blocking` on clones of one `ServerEvents`.
const RECEIVERS: usize = 4;

on_both!(many_threads_in_recv_blocking_take_every_message_once_in_order);
on_both!(a_second_client_is_heard_while_the_first_is_led);
on_both!(a_led_connection_still_ends_on_a_protocol_error);
on_both!(stop_ends_a_thread_that_leads);
on_both!(a_client_that_leaves_while_led_is_reported_with_its_reason);

/// A raw client after its handshake, asking with numbered messages that this thread takes
/// with `recv_blocking` (each in order) until the thread has read the connection itself
/// (`frames_read_by_callers` grew); returns it with the next number to send.
fn led_raw_client(fx: &Fx, server: &Server, events: &ServerEvents) -> TestResult<(Raw, u64)> {
    let mut raw = fx.raw()?;
    raw.hello(None)?;
    expect_event(events, Duration::from_secs(5), "the connect", |e| matches!(e, ServerEvent::Connected(_)))?;
    let before = server.stats().frames_read_by_callers;
    let t = Instant::now();
    let mut i = 0u64;
    while server.stats().frames_read_by_callers == before {
        ensure!(t.elapsed() < Duration::from_secs(10), "the thread never read the connection itself");
        raw.send(&frame_of(&fx.data(i, 0)))?;
        match events.recv_blocking()? {
            ServerEvent::Message { message, .. } => ensure!(seq(&message) == Some(i), "message {i}: {message:?}"),
            other => return Err(format!("expected message {i}, got {other:?}").into()),
        }
        i += 1;
    }
    Ok((raw, i))
}

/// `(from, i)` of a numbered message (`data = {from, i}`), or `None` for an end marker.
fn numbered(m: &SocketMessage) -> Option<(u64, u64)> {
    Some((m.data.get("from")?.as_u64()?, m.data.get("i")?.as_u64()?))
}

/// Takes events on this thread with `recv_blocking` until an end marker (a message with `end`);
/// returns the numbered messages in the order they came.
fn receive_until_end(events: &ServerEvents) -> TestResult<Vec<(u64, u64)>> {
    let mut got = Vec::new();
    loop {
        match events.recv_blocking().map_err(|_| "the events ended before an end marker")? {
            ServerEvent::Message { message, .. } => match numbered(&message) {
                Some(n) => got.push(n),
                None if message.data.get("end").is_some() => return Ok(got),
                None => return Err(format!("an unexpected message: {message:?}").into()),
            },
            ServerEvent::Disconnected { reason, .. } => return Err(format!("the client left: {reason}").into()),
            _ => {}
        }
    }
}

/// Four threads wait in `recv_blocking` on one server's events (buffer of 4) while two
/// threads send numbered messages on one client handle, and then one end marker per
/// receiver follows. Every message arrives exactly once over all receivers; each receiver
/// sees each sender's messages in increasing order; each takes one end marker; and the
/// receiving threads read the connection themselves.
fn many_threads_in_recv_blocking_take_every_message_once_in_order(net: Net, _name: &str) -> TestResult {
    watchdog(120, move || {
        let fx = Fx::new(net)?;
        let server = fx.server_with(|o| o.inbound_queue_size = 4)?;
        let events = server.events();
        let client = fx.client()?;
        expect_event(&events, Duration::from_secs(5), "the client's connect", |e| {
            matches!(e, ServerEvent::Connected(_))
        })?;
        let go = Arc::new(Barrier::new(RECEIVERS + SENDERS as usize + 1));
        let receivers: Vec<_> = (0..RECEIVERS)
            .map(|_| {
                let (events, go) = (events.clone(), go.clone());
                std::thread::spawn(move || -> TestResult<Vec<(u64, u64)>> {
                    go.wait();
                    receive_until_end(&events)
                })
            })
            .collect();
        let senders: Vec<_> = (0..SENDERS)
            .map(|s| {
                let (client, go, event) = (client.clone(), go.clone(), fx.event.clone());
                std::thread::spawn(move || -> TestResult {
                    go.wait();
                    for i in 0..PER_SENDER {
                        client.send(&SocketMessage::data(event.clone(), Data::new().with("from", s).with("i", i)))?;
                    }
                    Ok(())
                })
            })
            .collect();
        go.wait();
        for s in senders {
            s.join().map_err(|_| "a sender panicked")??;
        }
        // Behind every numbered message on the wire: one marker for each receiver.
        for _ in 0..RECEIVERS {
            client.send(&SocketMessage::data(fx.event.clone(), Data::new().with("end", true)))?;
        }
        let mut seen: HashMap<(u64, u64), usize> = HashMap::new();
        for (r, h) in receivers.into_iter().enumerate() {
            let share = h.join().map_err(|_| "a receiver panicked")??;
            let mut last: HashMap<u64, u64> = HashMap::new();
            for (from, i) in share {
                if let Some(before) = last.insert(from, i) {
                    ensure!(i > before, "receiver {r}: message {i} of sender {from} came after {before}");
                }
                *seen.entry((from, i)).or_default() += 1;
            }
        }
        for from in 0..SENDERS {
            for i in 0..PER_SENDER {
                let n = seen.get(&(from, i)).copied().unwrap_or(0);
                ensure!(n == 1, "message {i} of sender {from} was received {n} times");
            }
        }
        let st = server.stats();
        ensure!(st.messages_received == SENDERS * PER_SENDER + RECEIVERS as u64, "the server counted {st:?}");
        ensure!(st.frames_read_by_callers > 0, "no receiving thread read the connection itself: {st:?}");
        client.disconnect();
        server.stop()?;
        Ok(())
    })
}

/// A thread in `recv_blocking` leads the only connection (client A, sending a message now
/// and then); a second client connects and sends one message. Its connect and its message
/// reach the thread while A is still connected and sending, and A's messages go on arriving
/// in order afterwards.
fn a_second_client_is_heard_while_the_first_is_led(net: Net, _name: &str) -> TestResult {
    watchdog(60, move || {
        let fx = Fx::new(net)?;
        let server = fx.server()?;
        let events = server.events();
        let a = fx.client()?;
        expect_event(&events, Duration::from_secs(5), "A's connect", |e| matches!(e, ServerEvent::Connected(_)))?;
        // A asks and the thread answers, until the thread leads A's connection.
        let mut i = 0u64;
        let ev = fx.event.clone();
        let ask = |i: u64| a.send(&SocketMessage::data(ev.clone(), Data::new().with("from", 0u64).with("i", i)));
        let led_at = Instant::now();
        loop {
            ask(i)?;
            match events.recv_blocking()? {
                ServerEvent::Message { message, .. } => {
                    ensure!(numbered(&message) == Some((0, i)), "A's {i}: {message:?}")
                }
                other => return Err(format!("expected A's message {i}, got {other:?}").into()),
            }
            i += 1;
            if server.stats().frames_read_by_callers > 0 {
                break;
            }
            ensure!(led_at.elapsed() < Duration::from_secs(10), "the thread never read A's connection itself");
        }
        // B arrives while the thread leads A (it waits in recv_blocking on A's socket).
        let b = std::thread::scope(|sc| -> TestResult<socket_factory::Client> {
            let b = sc.spawn(|| -> TestResult<socket_factory::Client> {
                let b = fx.client()?;
                b.send(&SocketMessage::data(fx.event.clone(), Data::new().with("from", 1u64).with("i", 0u64)))?;
                Ok(b)
            });
            let (mut b_connected, mut b_message) = (false, false);
            while !(b_connected && b_message) {
                match events.recv_blocking()? {
                    ServerEvent::Connected(_) => b_connected = true,
                    ServerEvent::Message { message, .. } => match numbered(&message) {
                        Some((1, 0)) => {
                            ensure!(b_connected, "B's message came before its connect");
                            b_message = true;
                        }
                        other => return Err(format!("unexpected message {other:?}").into()),
                    },
                    other => return Err(format!("unexpected event {other:?}").into()),
                }
            }
            b.join().map_err(|_| "B's thread panicked")?
        })?;
        // A goes on, in order, now beside B.
        for _ in 0..100 {
            ask(i)?;
            match events.recv_blocking()? {
                ServerEvent::Message { message, .. } => {
                    ensure!(numbered(&message) == Some((0, i)), "A's {i}: {message:?}")
                }
                other => return Err(format!("expected A's message {i}, got {other:?}").into()),
            }
            i += 1;
        }
        b.disconnect();
        a.disconnect();
        server.stop()?;
        Ok(())
    })
}

/// While a thread leads the connection, the client sends a frame longer than
/// `max_message_size`: the client gets the `message_too_large` ERROR and end-of-stream as
/// it would without a leader, and the thread gets the disconnect.
fn a_led_connection_still_ends_on_a_protocol_error(net: Net, _name: &str) -> TestResult {
    watchdog(60, move || {
        let fx = Fx::new(net)?;
        let server = fx.server_with(|o| o.limits.max_frame_len = 1024)?;
        let events = server.events();
        let (mut raw, _) = led_raw_client(&fx, &server, &events)?;
        // The thread waits on the socket again; then a header announcing 2 KiB arrives.
        let receiver = std::thread::spawn(move || events.recv_blocking().map_err(|_| "the events ended"));
        raw.send(&2048u32.to_be_bytes())?;
        raw.expect_error(ErrorCode::MessageTooLarge, Duration::from_secs(5))?;
        raw.expect_eof(Duration::from_secs(5))?;
        match receiver.join().map_err(|_| "the receiver panicked")?? {
            ServerEvent::Disconnected { reason, .. } => {
                ensure!(reason.contains("max_message_size"), "reason: {reason}")
            }
            other => return Err(format!("expected the disconnect, got {other:?}").into()),
        }
        server.stop()?;
        Ok(())
    })
}

/// `stop` while a thread waits in `recv_blocking` on the only connection: the thread gets
/// the disconnect, the client sees the server go, and once the server is dropped the
/// thread's next `recv_blocking` ends.
fn stop_ends_a_thread_that_leads(net: Net, _name: &str) -> TestResult {
    watchdog(60, move || {
        let fx = Fx::new(net)?;
        let server = fx.server()?;
        let events = server.events();
        let (mut raw, _) = led_raw_client(&fx, &server, &events)?;
        let receiver = std::thread::spawn(move || -> TestResult {
            match events.recv_blocking().map_err(|_| "the events ended before the disconnect")? {
                ServerEvent::Disconnected { .. } => {}
                other => return Err(format!("expected the disconnect, got {other:?}").into()),
            }
            // The server is dropped after `stop`: the events end.
            ensure!(events.recv_blocking().is_err(), "an event after the disconnect");
            Ok(())
        });
        server.stop()?;
        // The shutdown notice, then end-of-stream.
        let mut saw_eof = false;
        for _ in 0..4 {
            if let RawEvent::Eof = raw.next(Duration::from_secs(5))? {
                saw_eof = true;
                break;
            }
        }
        ensure!(saw_eof, "the client never saw the server go");
        drop(server);
        receiver.join().map_err(|_| "the receiver panicked")??;
        Ok(())
    })
}

/// The client goes while a thread leads its connection: once between frames (a clean end of
/// the stream), once in the middle of a frame. The thread reads the end itself; the
/// disconnect event says which end it was, and the server serves the next client.
fn a_client_that_leaves_while_led_is_reported_with_its_reason(net: Net, _name: &str) -> TestResult {
    watchdog(60, move || {
        let fx = Fx::new(net)?;
        let server = fx.server()?;
        let events = server.events();
        for (half, want) in [(false, "connection closed by the client"), (true, "in the middle of a frame")] {
            let (mut raw, i) = led_raw_client(&fx, &server, &events)?;
            // The thread waits on the socket again; then the client goes.
            let receiver = {
                let events = events.clone();
                std::thread::spawn(move || events.recv_blocking().map_err(|_| "the events ended"))
            };
            if half {
                let frame = frame_of(&fx.data(i, 0));
                raw.send(&frame[..frame.len() / 2])?;
            }
            drop(raw);
            match receiver.join().map_err(|_| "the receiver panicked")?? {
                ServerEvent::Disconnected { reason, .. } => ensure!(reason.contains(want), "reason: {reason}"),
                other => return Err(format!("expected the disconnect, got {other:?}").into()),
            }
            wait_until(Duration::from_secs(5), "the client's removal", || server.client_count() == 0)?;
        }
        server.stop()?;
        Ok(())
    })
}
