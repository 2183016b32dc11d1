//! One client handle shared by many threads and tasks at once: concurrent receivers take every
//! message exactly once and each in the order of the stream, while concurrent senders on the
//! same handle keep their own order and lose nothing. This is where a receive path handed from
//! one reader to the next (leader/follower) loses or reorders messages, so it runs through both
//! API faces (blocking `receive`, async `receive_async` and `stream`) and a small receive
//! buffer, so that the buffer fills, the reader stops and starts again many times.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use futures_lite::StreamExt;
use socket_factory::{Client, Data, ServerEvent, SocketMessage};

use super::harness::*;

/// Broadcast data messages.
const N: u64 = 20_000;
/// Receiving threads on the one handle.
const RECEIVERS: usize = 6;
/// Sending threads on the one handle, and messages each sends.
const SENDERS: u64 = 4;
const PER_SENDER: u64 = 2_000;
/// A generous bound for one message to arrive while the stream runs.
const GAP: Duration = Duration::from_secs(10);

on_both!(one_handle_many_receivers_and_senders);

/// The server broadcasts `N` numbered messages and then one end marker per receiver; six
/// threads receive on one shared client handle (two blocking `receive`, two `receive_async`,
/// two `stream`), while four more threads send numbered messages on the same handle (two
/// blocking, two async). Every broadcast is received exactly once over all receivers, each
/// receiver sees its share in increasing order, each takes exactly one end marker, and the
/// server gets every sent message once, each sender's in order.
fn one_handle_many_receivers_and_senders(net: Net, _name: &str) -> TestResult {
    watchdog(120, move || {
        let fx = Fx::new(net)?;
        let server = fx.server_with(|o| {
            // The whole run fits the client's queue: the test is about the client's hand-off,
            // not about slow consumers.
            o.outbound_queue_size = N as usize + RECEIVERS + 16;
            o.outbound_queue_bytes = 64 << 20;
            o.inbound_queue_size = 64;
        })?;
        let events = server.events();
        let client = fx.client_with(|o| o.receive_buffer_size = 8)?;
        wait_until(Duration::from_secs(5), "the client counted by the server", || server.client_count() == 1)?;

        let go = Arc::new(Barrier::new(RECEIVERS + SENDERS as usize + 1));
        let taken = Arc::new(AtomicU64::new(0));
        let receivers: Vec<_> = (0..RECEIVERS)
            .map(|r| {
                let (client, go, taken) = (client.clone(), go.clone(), taken.clone());
                std::thread::spawn(move || -> TestResult<Vec<u64>> {
                    go.wait();
                    receive_share(&client, r, &taken)
                })
            })
            .collect();
        let senders: Vec<_> = (0..SENDERS)
            .map(|s| {
                let (client, go, event) = (client.clone(), go.clone(), fx.event.clone());
                std::thread::spawn(move || -> TestResult {
                    go.wait();
                    for i in 0..PER_SENDER {
                        let msg = SocketMessage::data(event.clone(), Data::new().with("from", s).with("i", i));
                        if s % 2 == 0 {
                            client.send(&msg)?;
                        } else {
                            socket_factory::runtime::block_on(client.send_async(&msg))?;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        go.wait();
        for seq in 0..N {
            server.broadcast(&fx.data(seq, 0))?;
        }
        for _ in 0..RECEIVERS {
            server.broadcast(&SocketMessage::data(fx.event.clone(), Data::new().with("end", true)))?;
        }

        // The server's side: every sent message once, each sender's in order.
        let mut next: HashMap<u64, u64> = HashMap::new();
        let mut got = 0u64;
        while got < SENDERS * PER_SENDER {
            let ev = recv_within(&events, GAP)
                .ok_or_else(|| format!("the server received {got} of {} messages", SENDERS * PER_SENDER))?;
            let ServerEvent::Message { message, .. } = ev else { continue };
            let from = message.data.get("from").and_then(|v| v.as_u64()).ok_or("no sender")?;
            let i = message.data.get("i").and_then(|v| v.as_u64()).ok_or("no index")?;
            let want = next.entry(from).or_insert(0);
            ensure!(i == *want, "sender {from}: message {i} arrived where {want} was due");
            *want += 1;
            got += 1;
        }
        for s in senders {
            s.join().map_err(|_| "a sender panicked")??;
        }

        // The client's side: the receivers' shares make up 0..N exactly once.
        let mut seen = vec![false; N as usize];
        for (r, h) in receivers.into_iter().enumerate() {
            let share = h.join().map_err(|_| "a receiver panicked")??;
            ensure!(share.windows(2).all(|w| w[0] < w[1]), "receiver {r} saw its messages out of order");
            for seq in share {
                let slot = seen.get_mut(seq as usize).ok_or_else(|| format!("seq {seq} was never sent"))?;
                ensure!(!*slot, "seq {seq} was received twice");
                *slot = true;
            }
        }
        let missing = seen.iter().filter(|s| !**s).count();
        ensure!(missing == 0, "{missing} of {N} broadcasts were never received");
        ensure!(taken.load(Ordering::Relaxed) == N, "the receivers' count disagrees with their shares");
        ensure!(server.stats().slow_consumers == 0, "the client was cut off as a slow consumer");
        client.disconnect();
        server.stop()?;
        Ok(())
    })
}

/// Receives on `client` until an end marker; returns the sequence numbers taken, in the
/// order they came. Receiver `r` uses the blocking call (`r % 3 == 0`), `receive_async`
/// (`r % 3 == 1`) or the stream (`r % 3 == 2`).
fn receive_share(client: &Client, r: usize, taken: &AtomicU64) -> TestResult<Vec<u64>> {
    let mut share = Vec::new();
    let mut stream = client.stream();
    loop {
        let msg = match r % 3 {
            0 => client.receive(Some(GAP))?,
            1 => socket_factory::runtime::block_on(client.receive_async(Some(GAP)))?,
            _ => socket_factory::runtime::block_on(async {
                futures_lite::future::or(async { stream.next().await.transpose() }, async {
                    async_io::Timer::after(GAP).await;
                    Ok(None)
                })
                .await
            })?,
        };
        let msg = msg.ok_or_else(|| format!("receiver {r}: nothing within {GAP:?} after {} messages", share.len()))?;
        if msg.data.get("end").is_some() {
            return Ok(share);
        }
        let seq = msg.data.get("seq").and_then(|v| v.as_u64()).ok_or("a broadcast without seq")?;
        share.push(seq);
        taken.fetch_add(1, Ordering::Relaxed);
    }
}

on_both!(disconnect_ends_a_receive_reading_on_its_thread);

/// A thread blocks in `receive(None)` while it reads the socket itself (it received before, so
/// it holds the read side); `disconnect` from another thread ends that receive with `Closed`
/// at once, not after some timeout.
fn disconnect_ends_a_receive_reading_on_its_thread(net: Net, _name: &str) -> TestResult {
    watchdog(30, move || {
        let (fx, server, client) = connected(net)?;
        server.broadcast(&fx.data(0, 0))?;
        ensure!(client.receive(Some(GAP))?.is_some(), "the first broadcast did not arrive");
        let (tx, rx) = std::sync::mpsc::channel();
        let waiting = client.clone();
        let receiver = std::thread::spawn(move || {
            let _ = tx.send(());
            waiting.receive(None)
        });
        rx.recv()?;
        let t = std::time::Instant::now();
        client.disconnect();
        let ended = receiver.join().map_err(|_| "the receiver panicked")?;
        let took = t.elapsed();
        ensure!(
            ended.as_ref().is_err_and(|e| e.kind() == socket_factory::ErrorKind::Closed),
            "receive ended with {ended:?}, not Closed"
        );
        ensure!(took < Duration::from_secs(2), "receive ended {took:?} after disconnect");
        server.stop()?;
        Ok(())
    })
}

on_both!(end_of_stream_noticed_after_the_receivers_go_quiet);

/// Blocking receives read the socket on their own thread; once the application stops
/// receiving, the engine reads again by itself: a server that goes away is noticed
/// (`is_connected` false, the client reconnecting) without any `receive`.
fn end_of_stream_noticed_after_the_receivers_go_quiet(net: Net, _name: &str) -> TestResult {
    watchdog(30, move || {
        let (fx, server, client) = connected(net)?;
        for seq in 0..100 {
            server.broadcast(&fx.data(seq, 0))?;
            ensure!(client.receive(Some(GAP))?.is_some(), "broadcast {seq} did not arrive");
        }
        server.stop()?;
        wait_until(Duration::from_secs(5), "the client to notice the server is gone", || !client.is_connected())?;
        Ok(())
    })
}

/// A started server and one client that the server counts.
fn connected(net: Net) -> TestResult<(Fx, socket_factory::Server, Client)> {
    let fx = Fx::new(net)?;
    let server = fx.server()?;
    let client = fx.client()?;
    wait_until(Duration::from_secs(5), "the client counted by the server", || server.client_count() == 1)?;
    Ok((fx, server, client))
}
