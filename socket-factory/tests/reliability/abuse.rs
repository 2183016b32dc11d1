//! Connection-level abuse, RELIABILITY.md §7.2 (F1-F9), on both transports.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket_factory::control::{Control, ErrorCode};
use socket_factory::{ErrorKind, Server, ServerEvent};

use super::harness::*;

const S5: Duration = Duration::from_secs(5);

/// The body of a frame whose header promises `len` bytes, plus `have` of them.
fn partial_frame(len: u32, have: usize) -> Vec<u8> {
    let mut v = len.to_be_bytes().to_vec();
    v.extend(std::iter::repeat_n(0x80u8, have));
    v
}

// silent connection is a legacy subscriber (RELIABILITY.md F1) ---------------------------------

on_both!(silent_connection_is_a_legacy_subscriber);

/// A connection that never sends a byte is a legacy subscriber: served, never closed for
/// silence (well past `hello_grace` and `frame_timeout`), and counted against `max_connections`.
fn silent_connection_is_a_legacy_subscriber(net: Net, _name: &str) -> TestResult {
    watchdog(30, move || {
        let fx = Fx::new(net)?;
        let server = fx.server_with(|o| o.max_connections = 2)?;
        let events = server.events();
        let mut silent = fx.raw()?;
        let ev =
            expect_event(&events, S5, "the silent client's Connected", |e| matches!(e, ServerEvent::Connected(_)))?;
        let ServerEvent::Connected(info) = ev else { return Err("not a Connected event".into()) };
        ensure!(!info.handshaken, "a client that sent nothing is legacy (no hello): {info:?}");
        // Time is under test: silence lasting longer than every deadline closes nothing.
        std::thread::sleep(Duration::from_millis(1300));
        server.broadcast(&fx.data(1, 0))?;
        let m = silent.expect_msg(S5, "the broadcast (legacy clients get no welcome)")?;
        ensure!(seq(&m) == Some(1), "expected seq 1, got {m:?}");
        // It holds one of the two slots.
        let second = fx.client()?;
        let third = fx.client();
        ensure!(
            matches!(&third, Err(e) if e.kind() == ErrorKind::MaxConnections),
            "the third client must be refused with max-connections: {third:?}"
        );
        ensure!(server.client_count() == 2, "count {}", server.client_count());
        ensure!(server.stats().rejected == 1, "rejected {}", server.stats().rejected);
        server.broadcast(&fx.data(2, 0))?;
        let m = silent.expect_msg(S5, "the second broadcast")?;
        ensure!(seq(&m) == Some(2), "silent client: {m:?}");
        let m = second.receive(Some(S5))?.ok_or("second client got nothing")?;
        ensure!(seq(&m) == Some(2), "second client: {m:?}");
        server.stop()?;
        Ok(())
    })
}

// hundred connections at once (RELIABILITY.md F2) ----------------------------------------------

on_both!(hundred_connections_at_once);

/// What one of the 100 connections saw.
#[derive(Debug)]
enum Seen {
    Refused,
    ClosedAtFrameDeadline(Duration),
    Served,
    Other(String),
}

/// 100 connections at once, every tenth starting a frame it never finishes: 10 served, 90
/// refused with `max_connections`, the served unfinished ones closed at the frame deadline, and
/// every descriptor released afterwards.
fn hundred_connections_at_once(net: Net, name: &str) -> TestResult {
    isolated(name, 90, || {
        watchdog(60, move || {
            let fx = Fx::new(net)?;
            // Warm-up: the runtime's threads and reactor exist before the fd baseline.
            fx.server()?.stop()?;
            let fds0 = open_fds();
            let frame_timeout = Duration::from_millis(500);
            let server = fx.server_with(|o| {
                o.max_connections = 10;
                o.frame_timeout = frame_timeout;
            })?;
            let start = Instant::now();
            let mut conns = Vec::new();
            for i in 0..100 {
                let mut r = fx.raw()?;
                if i % 10 == 3 {
                    // Ignore failures: a refused connection may already be closed.
                    let _ = r.send(&partial_frame(100, 10));
                }
                conns.push((i % 10 == 3, r));
            }
            let seen: Vec<_> = conns
                .into_iter()
                .map(|(partial, mut r)| {
                    std::thread::spawn(move || {
                        let s = match r.next(Duration::from_secs(3)) {
                            Ok(RawEvent::Msg(m)) => match ErrorCode::parse(&m) {
                                Some((ErrorCode::MaxConnections, _)) => match r.expect_eof(Duration::from_secs(2)) {
                                    Ok(_) => Seen::Refused,
                                    Err(e) => Seen::Other(format!("refused but not closed: {e}")),
                                },
                                Some((ErrorCode::Protocol, _)) => match r.expect_eof(Duration::from_secs(2)) {
                                    Ok(_) => Seen::ClosedAtFrameDeadline(start.elapsed()),
                                    Err(e) => Seen::Other(format!("protocol error but not closed: {e}")),
                                },
                                _ => Seen::Other(format!("{m:?}")),
                            },
                            Ok(RawEvent::Timeout) => Seen::Served,
                            Ok(RawEvent::Eof) => Seen::Other("closed without a word".to_owned()),
                            Err(e) => Seen::Other(e.to_string()),
                        };
                        (partial, s, r)
                    })
                })
                .collect();
            let mut refused = 0;
            let mut served = Vec::new();
            let mut closed = 0;
            for t in seen {
                let (partial, s, r) = t.join().map_err(|_| "reader thread panicked")?;
                match s {
                    Seen::Refused => refused += 1,
                    Seen::Served => {
                        ensure!(!partial, "a connection with an unfinished frame was still open after 3 s");
                        served.push(r);
                    }
                    Seen::ClosedAtFrameDeadline(at) => {
                        ensure!(partial, "a connection without a partial frame was closed");
                        ensure!(
                            at >= frame_timeout && at < frame_timeout + Duration::from_secs(2),
                            "closed {at:?} after the burst (frame_timeout {frame_timeout:?})"
                        );
                        closed += 1;
                    }
                    Seen::Other(what) => return Err(format!("unexpected outcome: {what}").into()),
                }
            }
            measured(&format!(
                "{net:?} F2: {refused} refused, {} served, {closed} closed at the frame deadline",
                served.len()
            ));
            ensure!(refused == 90, "{refused} refused, expected 90");
            ensure!(served.len() + closed == 10, "{} served + {closed} closed, expected 10", served.len());
            ensure!(closed >= 1, "the first ten connections include one with an unfinished frame");
            wait_until(S5, "the closed clients to leave the registry", || server.client_count() == served.len())?;
            // Freed slots are usable at once.
            let c = fx.client()?;
            c.disconnect();
            drop(served);
            server.stop()?;
            drop(server);
            wait_until(S5, "file descriptors back to the baseline", || open_fds() <= fds0)?;
            Ok(())
        })
    })
}

// slow loris closed at frame deadline (RELIABILITY.md F3) --------------------------------------

on_both!(slow_loris_closed_at_frame_deadline);

/// A header for a 1 MiB frame, then one byte every 100 ms: closed with `protocol` at the frame
/// deadline (1 s here), holding at most one frame's buffer meanwhile; the heap returns to its
/// baseline afterwards.
fn slow_loris_closed_at_frame_deadline(net: Net, name: &str) -> TestResult {
    isolated(name, 60, || {
        watchdog(40, move || {
            let fx = Fx::new(net)?;
            let server = fx.server()?;
            let base = heap_baseline(&fx, &server)?;
            let mut r = fx.raw()?;
            let mut w = r.s.try_clone()?;
            let stop = Arc::new(AtomicBool::new(false));
            let stop2 = stop.clone();
            let started = Instant::now();
            w.write_all(&(1u32 << 20).to_be_bytes())?;
            let dribbler = std::thread::spawn(move || {
                while !stop2.load(Ordering::Acquire) {
                    if w.write_all(&[0x80]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
            let text = r.expect_error(ErrorCode::Protocol, S5)?;
            r.expect_eof(Duration::from_secs(2))?;
            let took = started.elapsed();
            stop.store(true, Ordering::Release);
            let _ = dribbler.join();
            ensure!(text.contains("frame_timeout"), "the error names the deadline: {text}");
            ensure!(
                took >= Duration::from_millis(900) && took < Duration::from_secs(3),
                "closed after {took:?}, frame_timeout is 1 s"
            );
            let peak = HEAP.peak_usage().saturating_sub(base);
            wait_until(S5, "the slow-loris client to leave", || server.client_count() == 0)?;
            drop(r);
            let after = wait_until(S5, "the heap back to its baseline", || heap_now() <= base + (256 << 10));
            measured(&format!("{net:?} F3: closed after {took:?}; peak heap +{} KiB", peak >> 10));
            ensure!(peak <= (1 << 20) + (512 << 10), "peak heap grew by {peak} bytes (one 1 MiB frame allowed)");
            after?;
            server.stop()?;
            Ok(())
        })
    })
}

// http request rejected without allocating (RELIABILITY.md F4) ---------------------------------

on_both!(http_request_rejected_without_allocating);

/// `GET / HTTP/1.1` read as a length is about 1.19 GB: `message_too_large`, close, and no
/// allocation of that size (peak heap grows by less than 256 KiB).
fn http_request_rejected_without_allocating(net: Net, name: &str) -> TestResult {
    isolated(name, 60, || {
        watchdog(30, move || {
            let fx = Fx::new(net)?;
            let server = fx.server()?;
            let base = heap_baseline(&fx, &server)?;
            let mut r = fx.raw()?;
            r.send(b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n")?;
            let text = r.expect_error(ErrorCode::MessageTooLarge, S5)?;
            r.expect_eof(Duration::from_secs(2))?;
            let peak = HEAP.peak_usage().saturating_sub(base);
            measured(&format!("{net:?} F4: peak heap +{} KiB; error: {text}", peak >> 10));
            ensure!(text.contains("1195725856"), "the error names the length read: {text}");
            ensure!(peak < 256 << 10, "peak heap grew by {peak} bytes");
            // The server is unharmed.
            let c = fx.client()?;
            server.broadcast(&fx.data(7, 0))?;
            ensure!(c.receive(Some(S5))?.as_ref().and_then(seq) == Some(7), "the next client is served");
            server.stop()?;
            Ok(())
        })
    })
}

// client eleven refused and backs off (RELIABILITY.md F5) --------------------------------------

on_both!(client_eleven_refused_and_backs_off);

/// Client 11 of 10 gets `MaxConnections` (not a success). A client whose reconnects meet a full
/// server backs off: at most one attempt per backoff step, never a hot loop, and it gets in once
/// a server has room.
fn client_eleven_refused_and_backs_off(net: Net, _name: &str) -> TestResult {
    watchdog(40, move || {
        let fx = Fx::new(net)?;
        let server = fx.server_with(|o| o.max_connections = 10)?;
        let mut clients = Vec::new();
        for _ in 0..10 {
            clients.push(fx.client()?);
        }
        let err = match fx.client() {
            Ok(_) => return Err("client 11 connected although max_connections is 10".into()),
            Err(e) => e,
        };
        ensure!(err.kind() == ErrorKind::MaxConnections, "kind {:?}: {err}", err.kind());
        ensure!(err.to_string().contains("max_connections"), "message: {err}");
        ensure!(server.stats().rejected == 1, "rejected {}", server.stats().rejected);
        // Now one connected client meets a full server on every reconnect.
        let me = fx.client_with(|o| o.client_name = Some("f5".to_owned()));
        ensure!(me.is_err(), "still full");
        let keep = clients.pop().ok_or("no client")?;
        drop(clients);
        wait_until(S5, "nine clients to leave", || server.client_count() == 1)?;
        let me = fx.client_with(|o| o.client_name = Some("f5".to_owned()))?;
        drop(keep);
        server.stop()?;
        let fake = FakeServer::start(&fx.addr(), fx.event.clone(), Fake::Refuse)?;
        let window = Duration::from_millis(2500);
        std::thread::sleep(window);
        let attempts: Vec<Instant> = fake.by_client().remove("f5").unwrap_or_default();
        fake.stop();
        let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
        measured(&format!("{net:?} F5: {} refused attempts in {window:?}, gaps {gaps:?}", attempts.len()));
        ensure!(attempts.len() >= 2, "the client kept trying: {} attempts", attempts.len());
        // 50 ms doubling to 500 ms, each delay jittered down to a 25 ms floor: about 8 attempts
        // in 2.5 s; a hot loop makes thousands.
        ensure!(attempts.len() <= 20, "{} attempts in {window:?}: no backoff", attempts.len());
        ensure!(gaps.iter().all(|g| *g >= Duration::from_millis(20)), "an attempt came faster than the 25 ms floor");
        ensure!(me.state() == socket_factory::ConnectionState::Reconnecting, "state {:?}", me.state());
        // Room again: it gets in.
        let server = fx.server()?;
        let states = me.state_changes();
        wait_until(S5, "the refused client to get in", || me.is_connected())?;
        drop(states);
        server.stop()?;
        Ok(())
    })
}

// blasting client without send right (RELIABILITY.md F6) ---------------------------------------

on_both!(blasting_client_without_send_right);

/// `allow_client_send = false`: every data frame is answered with `send_not_allowed` and
/// dropped, the application never sees one, and the server's heap stays flat while a client
/// blasts 20,000 frames.
fn blasting_client_without_send_right(net: Net, name: &str) -> TestResult {
    isolated(name, 90, || {
        watchdog(60, move || {
            let fx = Fx::new(net)?;
            let server = fx.server_with(|o| o.allow_client_send = false)?;
            let events = server.events();
            // Our own client learns the mode and refuses at once.
            let c = fx.client()?;
            ensure!(!c.can_send(), "welcome said allow_client_send = false");
            let e = c.send(&fx.data(0, 0)).err().ok_or("send succeeded")?;
            ensure!(e.kind() == ErrorKind::SendNotAllowed, "{e}");
            c.disconnect();
            drop(c);
            let mut r = fx.raw()?;
            r.hello(Some("blaster"))?;
            let mut w = r.s.try_clone()?;
            let errors = Arc::new(AtomicU64::new(0));
            let e2 = errors.clone();
            let reader = std::thread::spawn(move || -> TestResult<Raw> {
                loop {
                    match r.next(Duration::from_secs(3))? {
                        RawEvent::Msg(m) => match ErrorCode::parse(&m) {
                            Some((ErrorCode::SendNotAllowed, _)) => {
                                e2.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => match Control::parse(&m) {
                                Some(Ok(Control::Pong { nonce: 77 })) => return Ok(r),
                                _ => return Err(format!("unexpected {m:?}").into()),
                            },
                        },
                        other => return Err(format!("blaster connection: {other:?}").into()),
                    }
                }
            });
            let frame = frame_of(&fx.data(1, 100));
            let batch: Vec<u8> = frame.iter().copied().cycle().take(frame.len() * 100).collect();
            for _ in 0..20 {
                w.write_all(&batch)?;
            }
            let base = heap_now();
            HEAP.reset_peak_usage();
            for _ in 20..200 {
                w.write_all(&batch)?;
            }
            wait_until(S5, "every frame counted", || server.stats().messages_received == 20_000)?;
            let peak = HEAP.peak_usage().saturating_sub(base);
            // Let the answers drain (a full queue drops them), then a ping is still answered.
            let mut last = u64::MAX;
            wait_until(S5, "the answers to drain", || {
                let now = errors.load(Ordering::Relaxed);
                let still = now == last;
                last = now;
                std::thread::sleep(Duration::from_millis(100));
                still
            })?;
            let ping = Control::Ping { nonce: 77 }.to_message(&fx.event, &jiff::tz::TimeZone::UTC);
            w.write_all(&frame_of(&ping))?;
            let r = reader.join().map_err(|_| "reader panicked")??;
            measured(&format!(
                "{net:?} F6: 20000 frames, {} send_not_allowed answers read, peak heap +{} KiB while blasting",
                errors.load(Ordering::Relaxed),
                peak >> 10
            ));
            ensure!(errors.load(Ordering::Relaxed) > 0, "no send_not_allowed answer");
            ensure!(peak < 2 << 20, "heap grew by {peak} bytes while blasting");
            while let Ok(ev) = events.try_recv() {
                ensure!(!matches!(ev, ServerEvent::Message { .. }), "a refused frame reached the application");
            }
            drop(r);
            server.stop()?;
            Ok(())
        })
    })
}

// flooding client is back pressured (RELIABILITY.md F7) ----------------------------------------

on_both!(flooding_client_is_back_pressured);

/// `allow_client_send = true`, the application reads slower than a client sends: the server
/// stops reading that client (its sends block), other clients' broadcasts flow, the application
/// gets every frame in order once it reads, and the heap stays bounded.
fn flooding_client_is_back_pressured(net: Net, name: &str) -> TestResult {
    isolated(name, 120, || {
        watchdog(90, move || {
            const N: u64 = 4000;
            const PAD: usize = 16 << 10;
            let fx = Fx::new(net)?;
            let server = fx.server_with(|o| o.inbound_queue_size = 8)?;
            let events = server.events();
            let other = fx.client_with(|o| o.receive_only = true)?;
            let flooder = fx.client_with(|o| o.send_timeout = Duration::from_secs(60))?;
            let base = heap_now();
            HEAP.reset_peak_usage();
            let sent = Arc::new(AtomicU64::new(0));
            let sent2 = sent.clone();
            let msgs: Vec<_> = (0..N).map(|i| fx.data(i, PAD)).collect();
            let f2 = flooder.clone();
            let flood = std::thread::spawn(move || -> TestResult {
                for m in &msgs {
                    f2.send(m)?;
                    sent2.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            });
            // The flooder stalls: the server stopped reading it.
            let mut last = u64::MAX;
            wait_until(Duration::from_secs(20), "the flooder to be held back", || {
                let now = sent.load(Ordering::Relaxed);
                let still = now == last;
                last = now;
                if !still {
                    std::thread::sleep(Duration::from_millis(300));
                }
                still
            })?;
            let held = sent.load(Ordering::Relaxed);
            ensure!(held < N, "the flooder sent all {N} frames: no back-pressure");
            // Other clients are served meanwhile.
            for i in 0..100 {
                server.broadcast(&fx.data(i, 0))?;
            }
            for i in 0..100 {
                let m = other.receive(Some(S5))?.ok_or("broadcast not received while the flooder is held")?;
                ensure!(seq(&m) == Some(i), "expected {i}, got {m:?}");
            }
            // The application reads now: every frame, in order.
            let mut next = 0u64;
            while next < N {
                match expect_event(&events, Duration::from_secs(20), "the flooder's frames", |e| {
                    matches!(e, ServerEvent::Message { .. })
                })? {
                    ServerEvent::Message { message, .. } => {
                        ensure!(seq(&message) == Some(next), "expected {next}, got {:?}", seq(&message));
                        next += 1;
                    }
                    _ => unreachable!(),
                }
            }
            flood.join().map_err(|_| "flooder panicked")??;
            let peak = HEAP.peak_usage().saturating_sub(base);
            measured(&format!(
                "{net:?} F7: flooder held after {held} of {N} frames of {} KiB; peak heap +{} KiB",
                PAD >> 10,
                peak >> 10
            ));
            // Frames in flight: the events buffer (8), one read buffer, the test's own copies.
            let own = (N as usize) * (PAD + 256);
            ensure!(peak < own + (8 << 20), "heap grew by {peak} bytes (test's own messages {own})");
            server.stop()?;
            Ok(())
        })
    })
}

// wrong protocol version rejected by server (RELIABILITY.md F8) --------------------------------

on_both!(wrong_protocol_version_rejected_by_server);

/// A `hello` with protocol 2: ERROR `protocol` naming the versions, then close.
fn wrong_protocol_version_rejected_by_server(net: Net, _name: &str) -> TestResult {
    watchdog(20, move || {
        let fx = Fx::new(net)?;
        let server = fx.server()?;
        let mut r = fx.raw()?;
        r.send(&hello_frame(&fx.event, 2, None))?;
        let text = r.expect_error(ErrorCode::Protocol, S5)?;
        ensure!(text.contains("protocol version 2") && text.contains('1'), "{text}");
        r.expect_eof(S5)?;
        server.stop()?;
        Ok(())
    })
}

/// Open item 6 of docs/reliability.md: replies the server queues for one client only
/// (`send_not_allowed` here) are dropped when that client's outbound queue is full, and each
/// drop is counted in `ServerStats::replies_dropped`. A raw client blasts frames it may not send
/// and never reads the answers; over a Unix socket the kernel holds only a few hundred of them,
/// so with a queue of 4 frames most of 5,000 answers are dropped before the write stall (1 s)
/// disconnects the client. (TCP loopback would absorb ~4 MiB of answers first: Unix only.)
#[cfg(feature = "unix")]
#[test]
fn dropped_replies_are_counted() -> TestResult {
    watchdog(30, || {
        let fx = Fx::new(Net::Unix)?;
        let server = fx.server_with(|o| {
            o.allow_client_send = false;
            o.outbound_queue_size = 4;
        })?;
        ensure!(server.stats().replies_dropped == 0, "{:?}", server.stats());
        let mut r = fx.raw()?;
        r.hello(Some("never-reads"))?;
        let frame = frame_of(&fx.data(1, 0));
        let batch: Vec<u8> = frame.iter().copied().cycle().take(frame.len() * 500).collect();
        let mut w = r.s.try_clone()?;
        // The writes end with an error once the server drops the client (slow consumer).
        let blaster = std::thread::spawn(move || {
            for _ in 0..10 {
                if w.write_all(&batch).is_err() {
                    break;
                }
            }
        });
        wait_until(S5, "dropped replies counted", || server.stats().replies_dropped > 0)?;
        let stats = server.stats();
        measured(&format!("F6: replies dropped {} of {} answers", stats.replies_dropped, stats.messages_received));
        ensure!(stats.replies_dropped <= stats.messages_received, "{stats:?}");
        server.stop()?;
        let _ = blaster.join();
        drop(r);
        Ok(())
    })
}

on_both!(wrong_protocol_version_rejected_by_client);

/// A server answering with protocol 2: `connect` fails (typed, at once); a reconnecting client
/// meeting it closes after that one attempt (no loop; the close itself is tested by
/// `reconnect::protocol_mismatch_on_reconnect_closes_the_client`).
fn wrong_protocol_version_rejected_by_client(net: Net, _name: &str) -> TestResult {
    watchdog(30, move || {
        let fx = Fx::new(net)?;
        let fake = FakeServer::start(
            &fx.addr(),
            fx.event.clone(),
            Fake::Welcome { protocol: 2, event: fx.event.to_string() },
        )?;
        let t = Instant::now();
        let err = fx.client().err().ok_or("connected to a protocol 2 server")?;
        ensure!(t.elapsed() < Duration::from_secs(2), "rejection took {:?}", t.elapsed());
        ensure!(err.kind() == ErrorKind::Connection, "kind {:?}", err.kind());
        ensure!(err.to_string().contains("speaks protocol 2"), "{err}");
        fake.stop();
        // Reconnecting into a protocol 2 server: one attempt, then closed.
        let server = fx.server()?;
        let c = fx.client_with(|o| o.client_name = Some("f8".to_owned()))?;
        server.stop()?;
        drop(server);
        let fake = FakeServer::start(
            &fx.addr(),
            fx.event.clone(),
            Fake::Welcome { protocol: 2, event: fx.event.to_string() },
        )?;
        std::thread::sleep(Duration::from_secs(2));
        let n = fake.by_client().remove("f8").map_or(0, |v| v.len());
        fake.stop();
        measured(&format!("{net:?} F8: {n} reconnect attempts into a protocol 2 server in 2 s"));
        ensure!(n == 1, "{n} attempts in 2 s: the client retried a protocol 2 server");
        ensure!(!c.is_connected(), "never connected to a protocol 2 server");
        ensure!(c.state() == socket_factory::ConnectionState::Closed, "state {:?}", c.state());
        Ok(())
    })
}

on_both!(welcome_for_another_event_rejected_by_client);

/// A server whose `welcome` names another event is refused, also at an explicit address (a
/// fixed port or path): the client would otherwise deliver foreign events (L9).
fn welcome_for_another_event_rejected_by_client(net: Net, _name: &str) -> TestResult {
    watchdog(20, move || {
        let fx = Fx::new(net)?;
        let fake = FakeServer::start(
            &fx.addr(),
            fx.event.clone(),
            Fake::Welcome { protocol: 1, event: "other_event".to_owned() },
        )?;
        let res = fx.client();
        fake.stop();
        let err = res.err().ok_or("the client accepted a welcome for event other_event")?;
        ensure!(err.kind() == ErrorKind::Connection, "kind {:?}: {err}", err.kind());
        ensure!(err.to_string().contains("other_event"), "{err}");
        Ok(())
    })
}

on_both!(hello_for_another_event_rejected_by_server);

/// A `hello` stamped with another event's name is refused by the server (ERROR `protocol`,
/// close): that client reached the wrong server (L9, "typed rejection on both sides").
fn hello_for_another_event_rejected_by_server(net: Net, _name: &str) -> TestResult {
    watchdog(20, move || {
        let fx = Fx::new(net)?;
        let server = fx.server()?;
        let mut r = fx.raw()?;
        r.send(&hello_frame(&socket_factory::EventName::new("other_event")?, 1, None))?;
        let m = r.expect_msg(S5, "an answer to a hello for another event")?;
        let refused = matches!(ErrorCode::parse(&m), Some((ErrorCode::Protocol, _)));
        server.stop()?;
        ensure!(refused, "the server answered a hello for event other_event with {m:?}");
        Ok(())
    })
}

on_both!(self_connect_simulation_rejected);

/// A peer that echoes (what a self-connected TCP socket does): the client reads its own `hello`
/// back instead of `welcome` and refuses, typed and at once.
fn self_connect_simulation_rejected(net: Net, _name: &str) -> TestResult {
    watchdog(20, move || {
        let fx = Fx::new(net)?;
        let fake = FakeServer::start(&fx.addr(), fx.event.clone(), Fake::Echo)?;
        let t = Instant::now();
        let res = fx.client();
        fake.stop();
        let err = res.err().ok_or("a client connected to an echo of itself")?;
        ensure!(t.elapsed() < Duration::from_secs(2), "took {:?}", t.elapsed());
        ensure!(err.kind() == ErrorKind::Connection, "kind {:?}: {err}", err.kind());
        ensure!(err.to_string().contains("welcome"), "{err}");
        Ok(())
    })
}

// burst does not starve others (RELIABILITY.md F9) ---------------------------------------------

on_both!(burst_does_not_starve_others);

/// One client sends tiny frames as fast as it can; meanwhile another client's 50 messages all
/// reach the application, and a subscriber gets all 100 broadcasts, while the burst still runs.
fn burst_does_not_starve_others(net: Net, _name: &str) -> TestResult {
    watchdog(60, move || {
        let fx = Fx::new(net)?;
        let server = fx.server()?;
        let events = server.events();
        let burster = fx.client_with(|o| o.client_name = Some("burst".to_owned()))?;
        let quiet = fx.client_with(|o| o.client_name = Some("quiet".to_owned()))?;
        let sub = fx.client_with(|o| o.receive_only = true)?;
        let burst_id = burster.client_id().ok_or("no id")?;
        let quiet_id = quiet.client_id().ok_or("no id")?;
        // The application: records each sender's sequence numbers.
        let seen: Arc<Mutex<HashMap<String, Vec<u64>>>> = Arc::default();
        let seen2 = seen.clone();
        let app = std::thread::spawn(move || {
            while let Ok(ev) = events.recv_blocking() {
                if let ServerEvent::Message { from, message } = ev {
                    if let (Ok(mut s), Some(n)) = (seen2.lock(), seq(&message)) {
                        s.entry(from.to_string()).or_default().push(n);
                    }
                }
            }
        });
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let b = burster.clone();
        let ev = fx.event.clone();
        let burst = std::thread::spawn(move || -> TestResult<u64> {
            let mut n = 0u64;
            while !stop2.load(Ordering::Acquire) && n < 1_000_000 {
                b.send(&socket_factory::SocketMessage::data(ev.clone(), socket_factory::Data::new().with("seq", n)))?;
                n += 1;
            }
            Ok(n)
        });
        wait_until(S5, "the burst to start", || seen.lock().map(|s| s.contains_key(&burst_id)).unwrap_or(false))?;
        for i in 0..50u64 {
            quiet.send(&fx.data(i, 0))?;
            server.broadcast(&fx.data(i, 0))?;
            server.broadcast(&fx.data(1000 + i, 0))?;
            std::thread::sleep(Duration::from_millis(5));
        }
        let waited = wait_until(Duration::from_secs(20), "the quiet client's 50 messages", || {
            seen.lock().map(|s| s.get(&quiet_id).map_or(0, Vec::len) == 50).unwrap_or(false)
        })?;
        let burst_running = !burst.is_finished();
        let mut got = Vec::new();
        while got.len() < 100 {
            let m = sub.receive(Some(Duration::from_secs(10)))?.ok_or("a broadcast did not arrive during the burst")?;
            got.push(seq(&m).ok_or("no seq")?);
        }
        stop.store(true, Ordering::Release);
        let sent = burst.join().map_err(|_| "burster panicked")??;
        ensure!(burst_running, "the burst ended before the quiet client got through");
        let expect: Vec<u64> = (0..50).flat_map(|i| [i, 1000 + i]).collect();
        ensure!(got == expect, "the subscriber's broadcasts: {got:?}");
        wait_until(Duration::from_secs(30), "the whole burst at the application", || {
            seen.lock().map(|s| s.get(&burst_id).map_or(0, Vec::len) as u64 == sent).unwrap_or(false)
        })?;
        let s = seen.lock().map_err(|_| "poisoned")?;
        let q = s.get(&quiet_id).cloned().unwrap_or_default();
        ensure!(q == (0..50).collect::<Vec<u64>>(), "quiet client's order: {q:?}");
        let bseq = s.get(&burst_id).cloned().unwrap_or_default();
        ensure!(bseq.iter().copied().eq(0..sent), "the burst arrived out of order or with gaps");
        measured(&format!("{net:?} F9: quiet client through in {waited:?} during a burst of {sent} frames"));
        drop(s);
        server.stop()?;
        drop(app);
        Ok(())
    })
}

/// Warms the server up with one client that connects and leaves (first-use allocations are
/// not counted against an attack), then returns the heap in use and resets the peak.
fn heap_baseline(fx: &Fx, server: &Server) -> TestResult<usize> {
    let warm = fx.client()?;
    warm.disconnect();
    drop(warm);
    wait_until(S5, "the warm-up client to leave", || server.client_count() == 0)?;
    let base = heap_now();
    HEAP.reset_peak_usage();
    Ok(base)
}
