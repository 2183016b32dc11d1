//! Delivery: broadcast, unicast, the offline queue, retain-last, relay, order under concurrent senders, receive timeouts and the end of a subscription.

use super::ctx::*;
use super::*;

async fn broadcast_to(cx: &Ctx, n: usize) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let mut clients = Vec::new();
    for _ in 0..n {
        clients.push(cx.connect().await?);
    }
    for i in 0..5 {
        server.broadcast(&cx.data(i))?;
    }
    for c in &clients {
        for i in 0..5 {
            cx.expect_n(c, i).await?;
        }
    }
    ensure!(server.stats().queued == 0, "broadcasts with clients connected went to the offline queue");
    cx.stop(&server).await?;
    Ok(())
}

pub(super) async fn broadcast_one_client(cx: &Ctx) -> CaseResult {
    broadcast_to(cx, 1).await
}

pub(super) async fn broadcast_three_clients(cx: &Ctx) -> CaseResult {
    broadcast_to(cx, 3).await
}

/// Frames of very different sizes (a few bytes to several times a read buffer) broadcast
/// to several clients: every client gets every message whole and in order, and a large
/// relayed message reaches the others unchanged.
pub(super) async fn broadcast_large_and_small_frames_in_order(cx: &Ctx) -> CaseResult {
    let server = cx.started(|o| o.relay = true).await?;
    let clients = [cx.connect().await?, cx.connect().await?, cx.connect().await?];
    let size = |n: u64| [20_000, 3_000, 10, 2_048, 64][n as usize % 5];
    let msgs: Vec<SocketMessage> = (0..51)
        .map(|n: u64| {
            let blob: Vec<u8> = (0..size(n)).map(|i| (i as u64 + n) as u8).collect();
            SocketMessage::data(cx.event(), Data::new().with("n", n).with("blob", blob))
        })
        .collect();
    for m in &msgs[..50] {
        server.broadcast(m)?;
    }
    for (i, c) in clients.iter().enumerate() {
        for (n, m) in msgs[..50].iter().enumerate() {
            let got = cx.expect_message(c, &format!("client {i}, message {n}")).await?;
            ensure!(
                got == *m,
                "client {i}: message {n} ({} bytes of blob) arrived changed or out of order",
                size(n as u64)
            );
        }
    }
    let big = &msgs[50];
    cx.send(&clients[0], big).await?;
    for (i, c) in clients.iter().enumerate().skip(1) {
        let got = cx.expect_message(c, "the relayed large message").await?;
        ensure!(got == *big, "client {i} got the relayed large message changed");
    }
    cx.expect_nothing(&clients[0], "relay echoed the large message to its sender").await?;
    cx.stop(&server).await?;
    Ok(())
}

pub(super) async fn unicast(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let a = cx.connect().await?;
    let b = cx.connect().await?;
    let id: ClientId = a.client_id().ok_or_else(|| Failure::new("client has no id after welcome"))?.parse()?;
    ensure!(server.clients().iter().any(|c| c.id == id), "server does not list client {id}");
    server.send_to(id, &cx.data(7))?;
    cx.expect_n(&a, 7).await?;
    cx.expect_nothing(&b, "unicast reached another client").await?;
    cx.stop(&server).await?;
    Ok(())
}

pub(super) async fn unicast_unknown_id(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let err = server.send_to(ClientId(999_999), &cx.data(1));
    match err {
        Err(e) if e.kind() == ErrorKind::Validation => {
            ensure!(e.to_string().contains("c999999"), "error does not name the id: {e}");
        }
        other => return Err(Failure::new(format!("unicast to an unknown id: expected Validation, got {other:?}"))),
    }
    ensure!(server.queue_len() == 0 && server.stats().queued == 0, "unicast to an unknown id was queued");
    // A client that connects later must not get it.
    let c = cx.connect().await?;
    cx.expect_nothing(&c, "unicast to an unknown id was delivered later").await?;
    cx.stop(&server).await?;
    Ok(())
}

pub(super) async fn offline_queue_order_overflow_and_drain(cx: &Ctx) -> CaseResult {
    let server = cx.started(|o| o.message_queue_size = 5).await?;
    for i in 0..8 {
        server.broadcast(&cx.data(i))?;
    }
    let s = server.stats();
    ensure!(s.queued == 8 && s.dropped == 3, "expected queued 8 / dropped 3, got {s:?}");
    ensure!(server.queue_len() == 5, "queue holds {} messages, expected 5", server.queue_len());
    let first = cx.connect().await?;
    for i in 3..8 {
        cx.expect_n(&first, i).await?;
    }
    ensure!(server.queue_len() == 0, "queue not empty after the first client");
    let second = cx.connect().await?;
    cx.expect_nothing(&second, "the offline queue was replayed to a second client").await?;
    server.broadcast(&cx.data(100))?;
    cx.expect_n(&first, 100).await?;
    cx.expect_n(&second, 100).await?;
    cx.stop(&server).await?;
    Ok(())
}

pub(super) async fn offline_queue_byte_limit(cx: &Ctx) -> CaseResult {
    let frame_len = encode_frame(&cx.data(1), 1 << 20)?.len();
    let server = cx
        .started(|o| {
            o.message_queue_size = 100;
            o.message_queue_bytes = frame_len * 3;
        })
        .await?;
    for i in 0..10 {
        server.broadcast(&cx.data(i))?;
    }
    ensure!(server.queue_len() == 3, "byte-bounded queue holds {}, expected 3", server.queue_len());
    ensure!(server.stats().dropped == 7, "dropped {} expected 7", server.stats().dropped);
    let c = cx.connect().await?;
    for i in 7..10 {
        cx.expect_n(&c, i).await?;
    }
    cx.stop(&server).await?;
    Ok(())
}

pub(super) async fn retain_last_without_duplicates(cx: &Ctx) -> CaseResult {
    let server = cx
        .started(|o| {
            o.retain_last = true;
            o.message_queue_size = 10;
        })
        .await?;
    for i in 0..3 {
        server.broadcast(&cx.data(i))?;
    }
    let a = cx.connect().await?;
    for i in 0..3 {
        cx.expect_n(&a, i).await?;
    }
    cx.expect_nothing(&a, "retained message duplicated after the queue replay").await?;
    let b = cx.connect().await?;
    cx.expect_n(&b, 2).await?;
    cx.expect_nothing(&b, "more than the retained message").await?;
    server.broadcast(&cx.data(3))?;
    cx.expect_n(&a, 3).await?;
    cx.expect_n(&b, 3).await?;
    let c = cx.connect().await?;
    cx.expect_n(&c, 3).await?;
    cx.stop(&server).await?;
    Ok(())
}

pub(super) async fn relay(cx: &Ctx) -> CaseResult {
    let server = cx.started(|o| o.relay = true).await?;
    let events = server.events();
    let a = cx.connect().await?;
    let b = cx.connect().await?;
    let c = cx.connect().await?;
    let a_id: ClientId = a.client_id().ok_or_else(|| Failure::new("no client id"))?.parse()?;
    ensure!(a.server_relays(), "welcome of a relaying server does not say relay");
    let msg = SocketMessage::new(cx.event(), MessageType::Control, Data::new().with("app", "x").with("n", 42u64));
    cx.send(&a, &msg).await?;
    for (name, client) in [("b", &b), ("c", &c)] {
        let got = cx.expect_message(client, "relayed message").await?;
        ensure!(got == msg, "client {name} got a changed message: {got:?}");
    }
    cx.expect_nothing(&a, "relay echoed the message to its sender").await?;
    expect_event(
        &events,
        SOON,
        "message event from a",
        |e| matches!(e, ServerEvent::Message { from, message } if *from == a_id && *message == msg),
    )
    .await?;
    // Alone, a sender's relayed messages go to the offline queue.
    cx.disconnect(&b).await;
    cx.disconnect(&c).await;
    let mut gone = 0;
    while gone < 2 {
        expect_event(&events, SOON, "b and c disconnect", |e| matches!(e, ServerEvent::Disconnected { .. })).await?;
        gone += 1;
    }
    cx.send(&a, &cx.data(43)).await?;
    expect_event(
        &events,
        SOON,
        "message 43",
        |e| matches!(e, ServerEvent::Message { message, .. } if num(message) == Some(43)),
    )
    .await?;
    ensure!(server.queue_len() == 1, "relayed message without other clients not queued ({})", server.queue_len());
    // The next client to connect takes the queue, though the sender stayed
    // connected (a short-lived producer's messages reach a later subscriber).
    let d = cx.connect().await?;
    let got = cx.expect_message(&d, "queued relayed message").await?;
    ensure!(num(&got) == Some(43), "the subscriber got {got:?} instead of the queued message 43");
    ensure!(server.queue_len() == 0, "offline queue not empty after the replay ({})", server.queue_len());
    cx.send(&a, &cx.data(44)).await?;
    let got = cx.expect_message(&d, "live relayed message").await?;
    ensure!(num(&got) == Some(44), "after the replay the subscriber got {got:?}, not 44");
    cx.expect_nothing(&a, "relay echoed the message to its sender").await?;
    cx.stop(&server).await?;
    Ok(())
}

pub(super) async fn receive_timeout(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let client = cx.connect().await?;
    let t0 = Instant::now();
    let got = cx.receive(&client, Duration::from_millis(150)).await?;
    let took = t0.elapsed();
    ensure!(got.is_none(), "unexpected message {got:?}");
    ensure!(took >= Duration::from_millis(140), "receive timed out early, after {took:?}");
    ensure!(took < Duration::from_secs(1), "receive timed out late, after {took:?}");
    ensure!(client.is_connected(), "a receive timeout disconnected the client");
    server.broadcast(&cx.data(1))?;
    cx.expect_n(&client, 1).await?;
    cx.stop(&server).await?;
    Ok(())
}

pub(super) async fn concurrent_sends_keep_order(cx: &Ctx) -> CaseResult {
    const SENDERS: u64 = 8;
    const EACH: u64 = 200;
    let server = cx.started(|_| {}).await?;
    let events = server.events();
    let client = cx.connect().await?;
    let event = cx.event();
    let make = move |t: u64, seq: u64| {
        SocketMessage::data(event.clone(), Data::new().with("t", t).with("seq", seq).with("pad", "x".repeat(100)))
    };
    let sending: Box<dyn FnOnce() -> Result<(), Failure> + Send> = match cx.mode() {
        Mode::Async => {
            let tasks: Vec<_> = (0..SENDERS)
                .map(|t| {
                    let (client, make) = (client.clone(), make.clone());
                    socket_core::runtime::spawn(async move {
                        for seq in 0..EACH {
                            client.send_async(&make(t, seq)).await?;
                        }
                        Ok::<_, socket_core::Error>(())
                    })
                })
                .collect();
            Box::new(move || {
                for task in tasks {
                    async_io::block_on(task)?;
                }
                Ok(())
            })
        }
        Mode::Blocking => {
            let threads: Vec<_> = (0..SENDERS)
                .map(|t| {
                    let (client, make) = (client.clone(), make.clone());
                    std::thread::spawn(move || {
                        for seq in 0..EACH {
                            client.send(&make(t, seq))?;
                        }
                        Ok::<_, socket_core::Error>(())
                    })
                })
                .collect();
            Box::new(move || {
                for th in threads {
                    th.join().map_err(|_| Failure::new("sender thread panicked"))??;
                }
                Ok(())
            })
        }
    };
    let mut next = vec![0u64; SENDERS as usize];
    for _ in 0..SENDERS * EACH {
        let ev = expect_event(&events, SOON, "all sent messages", |e| matches!(e, ServerEvent::Message { .. })).await?;
        let ServerEvent::Message { message, .. } = ev else { continue };
        let t = message.data.get("t").and_then(|v| v.as_u64()).ok_or_else(|| Failure::new("no t"))?;
        let seq = message.data.get("seq").and_then(|v| v.as_u64()).ok_or_else(|| Failure::new("no seq"))?;
        let slot = next.get_mut(t as usize).ok_or_else(|| Failure::new("bad t"))?;
        ensure!(seq == *slot, "sender {t}: got seq {seq}, expected {}", *slot);
        *slot += 1;
    }
    sending()?;
    ensure!(server.stats().malformed == 0, "interleaved frames: {} malformed", server.stats().malformed);
    cx.stop(&server).await?;
    Ok(())
}

pub(super) async fn stream_and_iterator_end_with_reason(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let client = cx.connect_with(|o| o.auto_reconnect = false).await??;
    for i in 0..3 {
        server.broadcast(&cx.data(i))?;
    }
    // Wait for all three to be buffered, then stop: they must still be delivered.
    cx.expect_n(&client, 0).await?;
    cx.stop(&server).await?;
    let rest: Vec<socket_core::Result<SocketMessage>> = match cx.mode() {
        Mode::Async => {
            use futures_lite::StreamExt;
            let stream = client.stream();
            future::or(async { Some(stream.collect::<Vec<_>>().await) }, async {
                async_io::Timer::after(SOON).await;
                None
            })
            .await
            .ok_or_else(|| Failure::new("stream did not end after the server stopped"))?
        }
        Mode::Blocking => client.iter().collect(),
    };
    ensure!(rest.len() == 3, "expected 2 messages then the end, got {} items", rest.len());
    for (i, item) in rest.iter().take(2).enumerate() {
        ensure!(
            matches!(item, Ok(m) if num(m) == Some(i as u64 + 1)),
            "item {i}: expected message {}, got {item:?}",
            i + 1
        );
    }
    match &rest[2] {
        Err(e) if e.kind() == ErrorKind::Closed && e.to_string().contains("shut down") => Ok(()),
        other => Err(Failure::new(format!("stream must end with Closed and the reason, got {other:?}"))),
    }
}
