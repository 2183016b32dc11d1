//! Slow consumers and bounded memory, RELIABILITY.md §7.6 (Q1, Q3-Q8), on both transports.
//!
//! Q2 (`DropOldest` / `DropNewest`) does not apply: SPEC.md §5 fixes the slow-consumer policy to
//! disconnect, so no other policy exists to test.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket_factory::control::ErrorCode;
use socket_factory::{Client, Data, ServerEvent, ServerOptions, SocketMessage};

use super::harness::*;

const S5: Duration = Duration::from_secs(5);

/// RELIABILITY.md §6 worst-case server heap: offline queue + per client (outbound queue, one
/// maximal read buffer, a per-connection constant) + connections still in their handshake.
fn heap_bound(o: &ServerOptions, clients: usize) -> usize {
    let c = 64 << 10;
    o.message_queue_bytes + clients * (o.outbound_queue_bytes + o.limits.max_frame_len + c) + 8 * c
}

/// Receives everything into a vector of `seq` numbers (ERROR codes are recorded as `u64::MAX`).
fn collector(client: Client) -> Arc<Mutex<Vec<u64>>> {
    let got: Arc<Mutex<Vec<u64>>> = Arc::default();
    let g = got.clone();
    std::thread::spawn(move || loop {
        match client.receive(Some(Duration::from_millis(200))) {
            Ok(Some(m)) => {
                let n = seq(&m).unwrap_or(u64::MAX);
                if let Ok(mut g) = g.lock() {
                    g.push(n);
                }
            }
            Ok(None) => {}
            Err(_) => return,
        }
    });
    got
}

fn count(v: &Arc<Mutex<Vec<u64>>>) -> usize {
    v.lock().map(|v| v.len()).unwrap_or(0)
}

// one client never reads (RELIABILITY.md Q1) ---------------------------------------------------

on_both!(one_client_never_reads);

/// Ten clients, one never reads, the publisher goes at about 2,000 messages/s: the silent one
/// is disconnected as a slow consumer, the nine others lose nothing, and the heap stays within
/// the §6 bound (plus what the nine in-process clients buffer).
fn one_client_never_reads(net: Net, name: &str) -> TestResult {
    isolated(name, 120, || {
        watchdog(90, move || {
            const N: u64 = 4000;
            let fx = Fx::new(net)?;
            let server = fx.server()?;
            let events = server.events();
            let good: Vec<_> = (0..9).map(|_| fx.client().map(collector)).collect::<Result<_, _>>()?;
            let mut stuck = fx.raw()?;
            let stuck_id = stuck.hello(Some("never-reads"))?;
            let base = heap_now();
            HEAP.reset_peak_usage();
            let t = Instant::now();
            for n in 0..N {
                server.broadcast(&fx.data(n, 2048))?;
                if n % 2 == 1 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            let ev = expect_event(
                &events,
                Duration::from_secs(15),
                "the slow consumer's Disconnected",
                |e| matches!(e, ServerEvent::Disconnected { id, .. } if id.to_string() == stuck_id),
            )?;
            let took = t.elapsed();
            for g in &good {
                wait_until(Duration::from_secs(30), "all messages at the nine readers", || count(g) == N as usize)?;
                ensure!(g.lock().map_err(|_| "poisoned")?.iter().copied().eq(0..N), "a reader lost messages");
            }
            let peak = HEAP.peak_usage().saturating_sub(base);
            let o = server.options().clone();
            let clients_side = 9 * o.outbound_queue_size * 4096;
            let bound = heap_bound(&o, 10) + clients_side;
            measured(&format!(
                "{net:?} Q1: slow client dropped within {took:?} ({ev:?}); peak heap +{} KiB (bound {} KiB)",
                peak >> 10,
                bound >> 10
            ));
            ensure!(server.stats().slow_consumers == 1, "{:?}", server.stats());
            ensure!(peak <= bound, "peak heap +{peak} over the bound {bound}");
            drop(stuck);
            server.stop()?;
            Ok(())
        })
    })
}

// no premature disconnect (RELIABILITY.md Q3) --------------------------------------------------

on_both!(no_premature_disconnect);

/// A reader that keeps up on average but pauses for 60 % of the write-stall deadline at a time
/// (its socket full meanwhile) is never disconnected; once it stops for good it is, within the
/// deadline plus 3 s (plus what the kernel buffers absorb).
fn no_premature_disconnect(net: Net, _name: &str) -> TestResult {
    watchdog(60, move || {
        let stall = Duration::from_millis(500);
        let fx = Fx::new(net)?;
        let server = fx.server_with(|o| o.write_stall_timeout = stall)?;
        let events = server.events();
        let mut r = fx.raw()?;
        let id = r.hello(Some("pausing"))?;
        let stop = Arc::new(AtomicBool::new(false));
        // Once the reader stops for good the publisher speeds up (32 MiB/s), so the kernel
        // buffers of a TCP connection (tens of MiB once autotuned) fill quickly.
        let fast = Arc::new(AtomicBool::new(false));
        let (stop2, fast2, s2, ev) = (stop.clone(), fast.clone(), server.clone(), fx.event.clone());
        let publisher = std::thread::spawn(move || -> TestResult {
            let pad = "z".repeat(32 << 10);
            let mut n = 0u64;
            while !stop2.load(Ordering::Acquire) {
                s2.broadcast(&SocketMessage::data(ev.clone(), Data::new().with("seq", n).with("pad", pad.as_str())))?;
                n += 1;
                std::thread::sleep(Duration::from_millis(if fast2.load(Ordering::Acquire) { 1 } else { 10 }));
            }
            Ok(())
        });
        let t = Instant::now();
        let mut next = 0u64;
        while t.elapsed() < Duration::from_millis(2500) {
            std::thread::sleep(stall * 6 / 10);
            // Drain what is there. The publisher keeps sending every 10 ms, so a drain that waits for
            // a quiet gap may never end: bound it, then pause again.
            let drain = Instant::now();
            while drain.elapsed() < stall * 4 / 10 {
                match r.next(Duration::from_millis(20))? {
                    RawEvent::Msg(m) => {
                        let n = seq(&m).ok_or_else(|| format!("unexpected {m:?}"))?;
                        ensure!(n == next, "gap: expected {next}, got {n}");
                        next += 1;
                    }
                    RawEvent::Timeout => break,
                    RawEvent::Eof => {
                        return Err(format!("disconnected after {:?} although it kept up", t.elapsed()).into())
                    }
                }
            }
        }
        ensure!(server.stats().slow_consumers == 0, "disconnected prematurely: {:?}", server.stats());
        let stopped = Instant::now();
        fast.store(true, Ordering::Release);
        let res = expect_event(
            &events,
            Duration::from_secs(10),
            "the stalled reader's Disconnected",
            |e| matches!(e, ServerEvent::Disconnected { id: i, .. } if i.to_string() == id),
        );
        let took = stopped.elapsed();
        stop.store(true, Ordering::Release);
        publisher.join().map_err(|_| "publisher panicked")??;
        res?;
        measured(&format!(
            "{net:?} Q3: {next} messages read while pausing; disconnected {took:?} after it stopped reading"
        ));
        // Deadline + 3 s, plus the time to fill the kernel buffers (Q8).
        ensure!(took < stall + Duration::from_secs(3) + Duration::from_secs(4), "took {took:?}");
        server.stop()?;
        Ok(())
    })
}

// adversarial worst case heap (RELIABILITY.md Q4) ----------------------------------------------

on_both!(adversarial_worst_case_heap);

/// Offline queue full (8 MiB), then ten clients that each send a maximal frame header and stall
/// and never read, then broadcasts of 64 KiB: the peak heap stays within the §6 bound, and it
/// comes back to within 1 MiB of the baseline once everybody is gone.
fn adversarial_worst_case_heap(net: Net, name: &str) -> TestResult {
    isolated(name, 90, || {
        watchdog(60, move || {
            let fx = Fx::new(net)?;
            let server = fx.server_with(|o| {
                o.max_connections = 10;
                o.frame_timeout = Duration::from_secs(3);
            })?;
            let events = server.events();
            let warm = fx.client()?;
            warm.disconnect();
            drop(warm);
            wait_until(S5, "the warm-up client gone", || server.client_count() == 0)?;
            let base = heap_now();
            HEAP.reset_peak_usage();
            let big = "q".repeat(80 << 10);
            for n in 0..120u64 {
                server.broadcast(&SocketMessage::data(
                    fx.event.clone(),
                    Data::new().with("seq", n).with("pad", big.as_str()),
                ))?;
            }
            let o = server.options().clone();
            ensure!(server.queue_len() < 120, "the offline byte cap applies");
            let mut raws = Vec::new();
            for _ in 0..10 {
                let mut r = fx.raw()?;
                r.hello(None)?;
                let mut header = ((o.limits.max_frame_len) as u32).to_be_bytes().to_vec();
                header.extend([0x80u8; 100]);
                r.send(&header)?;
                raws.push(r);
            }
            let big = "w".repeat(64 << 10);
            for n in 0..100u64 {
                server.broadcast(&SocketMessage::data(
                    fx.event.clone(),
                    Data::new().with("seq", n).with("pad", big.as_str()),
                ))?;
            }
            drop(big);
            wait_until(Duration::from_secs(15), "every adversarial client closed", || server.client_count() == 0)?;
            let peak = HEAP.peak_usage().saturating_sub(base);
            drop(raws);
            while events.try_recv().is_ok() {}
            // Broadcasts that found no client left went to the offline queue: that is kept data.
            let kept = server.clear_queue();
            let bound = heap_bound(&o, 10);
            let settled = wait_until(S5, "the heap back near the baseline", || heap_now() <= base + (1 << 20));
            measured(&format!(
                "{net:?} Q4: peak heap +{} KiB (bound {} KiB); now +{} KiB ({kept} offline messages cleared); {:?}",
                peak >> 10,
                bound >> 10,
                heap_now().saturating_sub(base) >> 10,
                server.stats()
            ));
            ensure!(peak <= bound, "peak heap +{peak} over the bound {bound}");
            settled?;
            server.stop()?;
            Ok(())
        })
    })
}

// ten thousand publishes without clients (RELIABILITY.md Q5) -----------------------------------

on_both!(ten_thousand_publishes_without_clients);

/// 10,000 broadcasts with no client: the offline queue holds the last 100, 9,900 drops are
/// counted, the first client gets those 100 in order before live messages, and the queue is
/// then empty (the next client gets none of them).
fn ten_thousand_publishes_without_clients(net: Net, _name: &str) -> TestResult {
    watchdog(60, move || {
        let fx = Fx::new(net)?;
        let server = fx.server()?;
        for n in 0..10_000 {
            server.broadcast(&fx.data(n, 0))?;
        }
        ensure!(server.queue_len() == 100, "queue holds {}", server.queue_len());
        let st = server.stats();
        ensure!(st.queued == 10_000 && st.dropped == 9_900, "{st:?}");
        let first = fx.client()?;
        ensure!(server.queue_len() == 0, "the queue drains into the first client");
        server.broadcast(&fx.data(10_000, 0))?;
        for n in 9_900..=10_000 {
            let m = first.receive(Some(S5))?.ok_or("missing message")?;
            ensure!(seq(&m) == Some(n), "expected {n}, got {:?}", seq(&m));
        }
        let second = fx.client()?;
        server.broadcast(&fx.data(10_001, 0))?;
        let m = second.receive(Some(S5))?.ok_or("missing live message")?;
        ensure!(seq(&m) == Some(10_001), "the second client got {:?}", seq(&m));
        server.stop()?;
        Ok(())
    })
}

// client buffer full back pressure (RELIABILITY.md Q6) -----------------------------------------

on_both!(client_buffer_full_back_pressure);

/// The application never calls `receive`: the client fills its buffer (32) and stops reading,
/// the server's slow-consumer rule then drops it; nothing is dropped silently on the client:
/// the application finds an unbroken run from the first message, then the server's verdict.
fn client_buffer_full_back_pressure(net: Net, _name: &str) -> TestResult {
    watchdog(60, move || {
        let fx = Fx::new(net)?;
        let server = fx.server_with(|o| o.outbound_queue_size = 64)?;
        let events = server.events();
        let c = fx.client_with(|o| {
            o.receive_buffer_size = 32;
            // One connection's story: no reconnect after the verdict.
            o.auto_reconnect = false;
        })?;
        let id = c.client_id().ok_or("no id")?;
        let mut published = 0u64;
        let t = Instant::now();
        let gone = loop {
            server.broadcast(&fx.data(published, 1024))?;
            published += 1;
            if published % 10 == 0 {
                std::thread::sleep(Duration::from_millis(1));
                let mut found = false;
                while let Ok(ev) = events.try_recv() {
                    if matches!(&ev, ServerEvent::Disconnected { id: i, .. } if i.to_string() == id) {
                        found = true;
                    }
                }
                if found {
                    break true;
                }
            }
            if t.elapsed() > Duration::from_secs(20) {
                break false;
            }
        };
        ensure!(gone, "the full client was never disconnected");
        ensure!(c.buffered() == 32, "the receive buffer holds {} (bound 32)", c.buffered());
        let mut got = Vec::new();
        let mut verdict = None;
        while let Some(m) = match c.receive(Some(Duration::from_millis(500))) {
            Err(e) if e.kind() == socket_factory::ErrorKind::Closed => None,
            other => other?,
        } {
            match (seq(&m), ErrorCode::parse(&m)) {
                (Some(n), _) => {
                    ensure!(verdict.is_none(), "data after the slow_consumer error");
                    got.push(n);
                }
                (None, Some((code, _))) => verdict = Some(code),
                _ => return Err(format!("unexpected {m:?}").into()),
            }
            if got.len() as u64 >= published {
                break;
            }
        }
        measured(&format!(
            "{net:?} Q6: {published} published, {} received in an unbroken run, verdict frame {verdict:?}",
            got.len()
        ));
        ensure!(got.iter().copied().eq(0..got.len() as u64), "not an unbroken run from 0");
        ensure!(got.len() >= 32, "fewer than the buffered 32");
        ensure!(matches!(verdict, None | Some(ErrorCode::SlowConsumer)), "verdict {verdict:?}");
        ensure!(server.stats().slow_consumers == 1, "{:?}", server.stats());
        server.stop()?;
        Ok(())
    })
}

// concurrent broadcasts while clients churn (RELIABILITY.md Q7) --------------------------------

on_both!(concurrent_broadcasts_while_clients_churn);

/// Eight threads broadcast at once while clients join and leave: every frame every client gets
/// decodes (no interleaving) and each thread's order is kept per client; the two clients there
/// for the whole run get everything.
fn concurrent_broadcasts_while_clients_churn(net: Net, _name: &str) -> TestResult {
    watchdog(60, move || {
        const PER: u64 = 500;
        let fx = Arc::new(Fx::new(net)?);
        let server = fx.server_with(|o| o.max_connections = 20)?;
        let check = |mut r: Raw, until_all: bool| -> TestResult<_> {
            r.hello(None)?;
            Ok(std::thread::spawn(move || -> TestResult<usize> {
                let mut last = [None::<u64>; 8];
                let mut total = 0usize;
                loop {
                    let m = match r.next(Duration::from_millis(if until_all { 10_000 } else { 40 }))? {
                        RawEvent::Msg(m) => m,
                        _ if until_all => return Err("a steady client ran dry".into()),
                        _ => return Ok(total),
                    };
                    let t = m
                        .data
                        .get("t")
                        .and_then(|v| v.as_u64())
                        .ok_or_else(|| format!("not ours: {m:?} {:?}", m.data.get("code")))?
                        as usize;
                    let n = seq(&m).ok_or("no seq")?;
                    if let Some(l) = last[t] {
                        ensure!(n > l, "thread {t}: {n} after {l}");
                        if until_all {
                            ensure!(n == l + 1, "thread {t}: gap {l} -> {n}");
                        }
                    }
                    last[t] = Some(n);
                    total += 1;
                    if until_all && total as u64 == 8 * PER {
                        return Ok(total);
                    }
                }
            }))
        };
        let steady = vec![check(fx.raw()?, true)?, check(fx.raw()?, true)?];
        wait_until(S5, "two steady clients", || server.client_count() == 2)?;
        let go = Arc::new(std::sync::Barrier::new(8));
        let pubs: Vec<_> = (0..8u64)
            .map(|t| {
                let (s, ev, go) = (server.clone(), fx.event.clone(), go.clone());
                std::thread::spawn(move || -> TestResult {
                    go.wait();
                    for n in 0..PER {
                        s.broadcast(&SocketMessage::data(ev.clone(), Data::new().with("t", t).with("seq", n)))?;
                        if n % 2 == 0 {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        let mut churn = Vec::new();
        for _ in 0..12 {
            churn.push(check(fx.raw()?, false)?);
            std::thread::sleep(Duration::from_millis(10));
        }
        for p in pubs {
            p.join().map_err(|_| "publisher panicked")??;
        }
        for c in churn {
            c.join().map_err(|_| "churn client panicked")??;
        }
        for s in steady {
            let n = s.join().map_err(|_| "steady client panicked")??;
            ensure!(n as u64 == 8 * PER, "a steady client got {n}");
        }
        server.stop()?;
        Ok(())
    })
}

// kernel buffer absorption (RELIABILITY.md Q8) -------------------------------------------------

on_both!(kernel_buffer_absorption);

/// How many frames a connected socket whose reader never reads absorbs before a write would
/// block (the slack in front of the outbound queue). Documented in docs/reliability.md.
fn kernel_buffer_absorption(net: Net, _name: &str) -> TestResult {
    watchdog(30, move || {
        for size in [64usize, 1024, 32 << 10] {
            let (mut w, _r) = pair(net)?;
            w.set_nonblocking(true)?;
            let frame = vec![0u8; size];
            let mut frames = 0usize;
            let t = Instant::now();
            // TCP may grow its buffers while we write: stop once writes block for 50 ms.
            let mut blocked_since: Option<Instant> = None;
            while t.elapsed() < Duration::from_secs(5) {
                match w.write(&frame) {
                    Ok(n) if n == size => {
                        frames += 1;
                        blocked_since = None;
                    }
                    Ok(_) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        let since = *blocked_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_millis(50) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            measured(&format!(
                "{net:?} Q8: a never-reading peer absorbs {frames} frames of {size} B ({} KiB)",
                (frames * size) >> 10
            ));
            ensure!(frames > 0, "nothing absorbed");
        }
        Ok(())
    })
}

/// A connected pair: (writer side, reader side that never reads).
fn pair(net: Net) -> TestResult<(Stream, Stream)> {
    Ok(match net {
        Net::Unix => {
            let (a, b) = UnixStream::pair()?;
            (Stream::Unix(a), Stream::Unix(b))
        }
        Net::Tcp => {
            let l = TcpListener::bind("127.0.0.1:0")?;
            let a = TcpStream::connect(l.local_addr()?)?;
            let (b, _) = l.accept()?;
            (Stream::Tcp(a), Stream::Tcp(b))
        }
    })
}

// Capacities -----------------------------------------------------------------------------------

on_both!(huge_capacities_allocate_nothing_up_front, huge_capacities);

/// Every queue at the largest configurable length (SPEC §5: no queue allocates its whole
/// capacity up front): starting the server, connecting a client and passing messages both ways
/// costs a few hundred KiB of heap, not the millions of slots the capacities allow.
fn huge_capacities(net: Net, name: &str) -> TestResult {
    use socket_factory::config::MAX_QUEUE_LEN;
    isolated(name, 60, || {
        watchdog(45, move || {
            let fx = Fx::new(net)?;
            let base = heap_now();
            HEAP.reset_peak_usage();
            let server = fx.server_with(|o| {
                o.inbound_queue_size = MAX_QUEUE_LEN;
                o.outbound_queue_size = MAX_QUEUE_LEN;
                o.message_queue_size = MAX_QUEUE_LEN;
            })?;
            let events = server.events();
            let client = fx.client_with(|o| o.receive_buffer_size = MAX_QUEUE_LEN)?;
            client.send(&fx.data(1, 0))?;
            expect_event(&events, S5, "the client's message", |e| matches!(e, ServerEvent::Message { .. }))?;
            server.broadcast(&fx.data(2, 0))?;
            let got = client.receive(Some(S5))?.ok_or("no broadcast within 5 s")?;
            ensure!(seq(&got) == Some(2), "{got:?}");
            let peak = HEAP.peak_usage().saturating_sub(base);
            measured(&format!("{net:?} capacities of {MAX_QUEUE_LEN}: peak heap +{} KiB", peak >> 10));
            ensure!(peak < 8 << 20, "peak heap +{peak} bytes: a queue allocated its capacity up front");
            client.disconnect();
            server.stop()?;
            Ok(())
        })
    })
}
