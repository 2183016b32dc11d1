//! Limits and refusals: who may send, connection limits, unique ids under a burst, slow consumers, stalled writes, inbound back-pressure, receive-only clients.

use super::ctx::*;
use super::*;

pub(super) async fn client_send_not_allowed(cx: &Ctx) -> CaseResult {
    let server = cx.started(|o| o.allow_client_send = false).await?;
    let events = server.events();
    let client = cx.connect().await?;
    ensure!(!client.can_send(), "welcome did not tell the client it may not send");
    let t0 = Instant::now();
    match cx.send(&client, &cx.data(1)).await {
        Err(e) if e.kind() == ErrorKind::SendNotAllowed => {
            ensure!(e.to_string().contains("allow_client_send"), "error does not explain: {e}");
        }
        other => {
            return Err(Failure::new(format!("send in receive-only mode: expected SendNotAllowed, got {other:?}")))
        }
    }
    ensure!(t0.elapsed() < Duration::from_millis(500), "refused send took {:?}", t0.elapsed());
    // A legacy sender that ignores the rule gets an ERROR and stays connected.
    let mut raw = cx.raw().await?;
    raw.send_msg(&cx.data(2)).await?;
    raw.expect_error(ErrorCode::SendNotAllowed).await?;
    server.broadcast(&cx.data(3))?;
    match raw.next(SOON).await? {
        RawEvent::Message(m) if num(&m) == Some(3) => {}
        other => return Err(Failure::new(format!("legacy sender not served after send_not_allowed: {other:?}"))),
    }
    cx.expect_n(&client, 3).await?;
    // The application never saw a message.
    let seen = expect_event(&events, QUIET, "", |e| matches!(e, ServerEvent::Message { .. })).await;
    ensure!(seen.is_err(), "a refused message reached the application: {seen:?}");
    cx.stop(&server).await?;
    Ok(())
}

pub(super) async fn max_connections(cx: &Ctx) -> CaseResult {
    let server = cx.started(|o| o.max_connections = 10).await?;
    let events = server.events();
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(cx.connect().await?);
    }
    match cx.connect_with(|o| o.auto_reconnect = false).await? {
        Err(e) if e.kind() == ErrorKind::MaxConnections => {
            ensure!(e.to_string().contains("max_connections"), "error does not name the limit: {e}");
        }
        Ok(_) => return Err(Failure::new("client 11 connected although max_connections is 10")),
        Err(e) => return Err(Failure::new(format!("client 11: expected MaxConnections, got {} ({e})", e.kind()))),
    }
    ensure!(server.stats().rejected >= 1, "rejection not counted");
    // A raw (legacy) client over the limit gets the ERROR frame, then end-of-stream.
    let mut raw = cx.raw().await?;
    raw.expect_error(ErrorCode::MaxConnections).await?;
    raw.expect_eof("refused connection").await?;
    ensure!(server.client_count() == 10, "server serves {} clients", server.client_count());
    // A freed slot can be used again.
    let leaving = clients.pop().ok_or_else(|| Failure::new("no client"))?;
    cx.disconnect(&leaving).await;
    expect_event(&events, SOON, "a client disconnects", |e| matches!(e, ServerEvent::Disconnected { .. })).await?;
    clients.push(cx.connect().await?);
    cx.stop(&server).await?;
    Ok(())
}

pub(super) async fn client_ids_unique_under_burst(cx: &Ctx) -> CaseResult {
    const N: usize = 100;
    let server = cx.started(|o| o.max_connections = N + 10).await?;
    let opts = cx.client_options()?;
    let (t, e, c) = (cx.h.transport.clone(), cx.event(), cx.config());
    let clients: Vec<Client> = match cx.mode() {
        Mode::Async => {
            let tasks: Vec<_> = (0..N)
                .map(|_| {
                    let (t, e, c, o) = (t.clone(), e.clone(), c.clone(), opts.clone());
                    socket_core::runtime::spawn(Client::connect_with_async(t, e, c, o))
                })
                .collect();
            let mut out = Vec::new();
            for task in tasks {
                out.push(task.await?);
            }
            out
        }
        Mode::Blocking => std::thread::scope(|s| {
            let handles: Vec<_> = (0..N)
                .map(|_| {
                    let (t, e, c, o) = (t.clone(), e.clone(), c.clone(), opts.clone());
                    s.spawn(move || Client::connect_with(t, e, c, o))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().map_err(|_| Failure::new("connect thread panicked"))?.map_err(Failure::from))
                .collect::<Result<Vec<_>, Failure>>()
        })?,
    };
    let ids: HashSet<String> = clients.iter().filter_map(Client::client_id).collect();
    ensure!(ids.len() == N, "{} distinct ids for {N} clients", ids.len());
    let listed: HashSet<ClientId> = server.clients().iter().map(|c| c.id).collect();
    ensure!(listed.len() == N, "server lists {} distinct clients, expected {N}", listed.len());
    cx.stop(&server).await?;
    Ok(())
}

pub(super) async fn slow_consumer_disconnected(cx: &Ctx) -> CaseResult {
    let server = cx
        .started(|o| {
            o.outbound_queue_size = 32;
            o.outbound_queue_bytes = 1 << 20;
        })
        .await?;
    let events = server.events();
    let slow = cx
        .connect_with(|o| {
            o.receive_buffer_size = 1;
            o.auto_reconnect = false;
        })
        .await??;
    let slow_id: ClientId = slow.client_id().ok_or_else(|| Failure::new("no id"))?.parse()?;
    let good = [cx.connect().await?, cx.connect().await?];
    let seen: Vec<Receiver<u64>> = good.iter().map(|c| collector(cx, c.clone())).collect();
    let pad = "x".repeat(4096);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0u64;
    while server.stats().slow_consumers == 0 {
        ensure!(Instant::now() < deadline, "no slow-consumer disconnect after {n} messages");
        for _ in 0..16 {
            server.broadcast(&SocketMessage::data(cx.event(), Data::new().with("n", n).with("pad", pad.as_str())))?;
            n += 1;
        }
        // Pace on the readers so only the slow client falls behind.
        for rx in &seen {
            loop {
                let got = future::or(async { rx.recv().await.ok() }, async {
                    async_io::Timer::after(SOON).await;
                    None
                })
                .await
                .ok_or_else(|| Failure::new("a reading client stopped receiving"))?;
                if got == n - 1 {
                    break;
                }
            }
        }
    }
    let ev = expect_event(
        &events,
        SOON,
        "slow client disconnected",
        |e| matches!(e, ServerEvent::Disconnected { id, .. } if *id == slow_id),
    )
    .await?;
    if let ServerEvent::Disconnected { reason, .. } = ev {
        ensure!(reason.contains("slow consumer"), "disconnect reason does not say slow consumer: {reason}");
    }
    // The others still get everything, in order.
    server.broadcast(&cx.data(1_000_000))?;
    for rx in &seen {
        let got = future::or(async { rx.recv().await.ok() }, async {
            async_io::Timer::after(SOON).await;
            None
        })
        .await;
        ensure!(got == Some(1_000_000), "a reading client missed a message after the disconnect: {got:?}");
    }
    ensure!(server.client_count() == 2, "server serves {} clients, expected 2", server.client_count());
    cx.stop(&server).await?;
    Ok(())
}

pub(super) async fn write_stall_disconnects(cx: &Ctx) -> CaseResult {
    // Queues large enough that only the stall deadline can act.
    let server = cx
        .started(|o| {
            o.write_stall_timeout = Duration::from_millis(300);
            o.outbound_queue_bytes = 256 << 20;
        })
        .await?;
    let events = server.events();
    let _frozen = cx.raw().await?;
    let id =
        match expect_event(&events, SOON, "raw client connected", |e| matches!(e, ServerEvent::Connected(_))).await? {
            ServerEvent::Connected(info) => info.id,
            _ => return Err(Failure::new("not a Connected event")),
        };
    let blob = "x".repeat(900_000);
    let t0 = Instant::now();
    // 18 MB: more than socket buffers hold (loopback TCP autotunes to about 10 MB): the writer stalls.
    for n in 0..20 {
        server.broadcast(&SocketMessage::data(cx.event(), Data::new().with("n", n).with("blob", blob.as_str())))?;
    }
    let ev = expect_event(
        &events,
        Duration::from_secs(10),
        "stalled client disconnected",
        |e| matches!(e, ServerEvent::Disconnected { id: d, .. } if *d == id),
    )
    .await?;
    ensure!(
        matches!(&ev, ServerEvent::Disconnected { reason, .. } if reason.contains("slow consumer")),
        "reason: {ev:?}"
    );
    ensure!(t0.elapsed() >= Duration::from_millis(250), "disconnected before the stall deadline");
    ensure!(server.stats().slow_consumers == 1, "stall not counted: {:?}", server.stats());
    cx.stop(&server).await?;
    Ok(())
}

pub(super) async fn inbound_backpressure(cx: &Ctx) -> CaseResult {
    const N: u64 = 500;
    let server = cx.started(|o| o.inbound_queue_size = 4).await?;
    let events = server.events();
    let sender = cx.connect().await?;
    let listener = cx.connect().await?;
    // The application does not read events yet: the sender is pushed back, nothing is lost.
    let sending: Pin<Box<dyn Future<Output = socket_core::Result<()>> + Send>> = match cx.mode() {
        Mode::Async => {
            let (c, event) = (sender.clone(), cx.event());
            Box::pin(socket_core::runtime::spawn(async move {
                for n in 0..N {
                    c.send_async(&SocketMessage::data(event.clone(), Data::new().with("n", n))).await?;
                }
                Ok(())
            }))
        }
        Mode::Blocking => {
            let (c, event) = (sender.clone(), cx.event());
            let (tx, rx) = async_channel::bounded(1);
            std::thread::spawn(move || {
                let r = (0..N).try_for_each(|n| c.send(&SocketMessage::data(event.clone(), Data::new().with("n", n))));
                let _ = tx.send_blocking(r);
            });
            Box::pin(async move { rx.recv().await.unwrap_or(Ok(())) })
        }
    };
    // Other clients are unaffected meanwhile.
    for n in 0..20 {
        server.broadcast(&cx.data(10_000 + n))?;
        cx.expect_n(&listener, 10_000 + n).await?;
    }
    let mut next = 0;
    while next < N {
        let ev = expect_event(&events, SOON, "sent messages", |e| matches!(e, ServerEvent::Message { .. })).await?;
        if let ServerEvent::Message { message, .. } = ev {
            ensure!(num(&message) == Some(next), "got {:?}, expected {next}", num(&message));
            next += 1;
        }
    }
    future::or(sending, async {
        async_io::Timer::after(SOON).await;
        Err(socket_core::Error::new(ErrorKind::Timeout, "sender did not finish"))
    })
    .await?;
    ensure!(server.stats().slow_consumers == 0, "back-pressure disconnected someone: {:?}", server.stats());
    cx.stop(&server).await?;
    Ok(())
}

pub(super) async fn receive_only_client(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let client = cx.connect_with(|o| o.receive_only = true).await??;
    ensure!(!client.can_send(), "receive-only client says it can send");
    match cx.send(&client, &cx.data(1)).await {
        Err(e) if e.kind() == ErrorKind::SendNotAllowed => {
            ensure!(e.to_string().contains("receive-only"), "error does not explain: {e}");
        }
        other => return Err(Failure::new(format!("receive-only send: expected SendNotAllowed, got {other:?}"))),
    }
    server.broadcast(&cx.data(2))?;
    cx.expect_n(&client, 2).await?;
    cx.stop(&server).await?;
    Ok(())
}
