//! Starting, stopping and dropping a server; connects and disconnects as the application sees them; reconnecting.

use super::ctx::*;
use super::*;

pub(super) async fn start_stop_idempotent(cx: &Ctx) -> CaseResult {
    let server = cx.server(|_| {})?;
    ensure!(!server.is_running(), "a new server runs before start()");
    ensure!(server.address().is_none(), "a new server has an address before start()");
    cx.start(&server).await?;
    cx.start(&server).await?;
    ensure!(server.is_running(), "server not running after start()");
    ensure!(server.address().is_some(), "running server has no address");
    cx.stop(&server).await?;
    cx.stop(&server).await?;
    ensure!(!server.is_running(), "server still running after stop()");
    ensure!(server.address().is_none(), "stopped server still has an address");
    match server.broadcast(&cx.data(1)) {
        Err(e) if e.kind() == ErrorKind::Closed => {}
        other => return Err(Failure::new(format!("broadcast on a stopped server: expected Closed, got {other:?}"))),
    }
    // The same handle starts again.
    cx.start(&server).await?;
    let client = cx.connect().await?;
    server.broadcast(&cx.data(2))?;
    cx.expect_n(&client, 2).await?;
    cx.stop(&server).await?;
    Ok(())
}

pub(super) async fn stop_wakes_clients_and_frees_address(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(cx.connect_with(|o| o.auto_reconnect = false).await??);
    }
    let t0 = Instant::now();
    cx.stop(&server).await?;
    let took = t0.elapsed();
    ensure!(took < Duration::from_secs(1), "stop() took {took:?}, more than 1 s");
    for c in &clients {
        match cx.receive(c, Duration::from_secs(2)).await {
            Err(e) if e.kind() == ErrorKind::Closed => {
                ensure!(e.to_string().contains("shut down"), "close reason does not mention the shutdown: {e}");
            }
            other => return Err(Failure::new(format!("client not closed after stop: {other:?}"))),
        }
        ensure!(!c.is_connected(), "client still connected after stop");
    }
    let seen = t0.elapsed();
    ensure!(seen < Duration::from_millis(1500), "clients saw end-of-stream only after {seen:?}");
    // The address is free at once.
    let again = cx.server(|_| {})?;
    cx.start(&again).await?;
    cx.stop(&again).await?;
    Ok(())
}

pub(super) async fn drop_stops_server(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let clone = server.clone();
    let client = cx.connect_with(|o| o.auto_reconnect = false).await??;
    drop(server);
    ensure!(clone.is_running(), "dropping one of two handles stopped the server");
    drop(clone);
    match cx.receive(&client, Duration::from_secs(2)).await {
        Err(e) if e.kind() == ErrorKind::Closed => {}
        other => return Err(Failure::new(format!("client not closed after the server was dropped: {other:?}"))),
    }
    // Address free again (the drop released it synchronously).
    let again = cx.server(|_| {})?;
    cx.start(&again).await?;
    cx.stop(&again).await?;
    Ok(())
}

pub(super) async fn blocking_mode_start(cx: &Ctx) -> CaseResult {
    let server = cx.server(|o| o.blocking_mode = true)?;
    match cx.mode() {
        Mode::Async => {
            // The async start never blocks, whatever blocking_mode says.
            future::or(async { server.start_async().await.map_err(Failure::from) }, async {
                async_io::Timer::after(SOON).await;
                Err(Failure::new("start_async blocked in blocking_mode"))
            })
            .await?;
            let client = cx.connect().await?;
            let waiter = server.clone();
            let stopped = socket_core::runtime::spawn(async move { waiter.wait_stopped().await });
            cx.stop(&server).await?;
            future::or(
                async {
                    stopped.await;
                    Some(())
                },
                async {
                    async_io::Timer::after(SOON).await;
                    None
                },
            )
            .await
            .ok_or_else(|| Failure::new("wait_stopped did not return after stop"))?;
            drop(client);
        }
        Mode::Blocking => {
            let runner = server.clone();
            let (tx, rx) = async_channel::bounded(1);
            std::thread::spawn(move || {
                let r = runner.start();
                let _ = tx.send_blocking(r);
            });
            // Connect (waiting for the server to come up) proves it runs; start() must not return meanwhile.
            let mut o = cx.client_options()?;
            o.wait_for_server = true;
            o.wait_timeout = Some(SOON);
            let connecting = socket_core::runtime::spawn(Client::connect_with_async(
                cx.h.transport.clone(),
                cx.event(),
                cx.config(),
                o,
            ));
            let client = future::or(async { connecting.await.map_err(Failure::from) }, async {
                let r = rx.recv().await;
                Err(Failure::new(format!("start() returned while the server should run: {r:?}")))
            })
            .await?;
            server.stop()?;
            let t0 = Instant::now();
            let r = rx.recv_blocking().map_err(|_| Failure::new("start thread died"))?;
            r?;
            ensure!(t0.elapsed() < Duration::from_secs(1), "blocking start() returned {:?} after stop", t0.elapsed());
            drop(client);
        }
    }
    Ok(())
}

pub(super) async fn events_report_connects_and_disconnects(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let events = server.events();
    let client = cx.connect_with(|o| o.client_name = Some("alpha".to_owned())).await??;
    let id: ClientId = client.client_id().ok_or_else(|| Failure::new("no client id"))?.parse()?;
    let ev = expect_event(&events, SOON, "connected", |e| matches!(e, ServerEvent::Connected(_))).await?;
    let ServerEvent::Connected(info) = ev else { return Err(Failure::new("not a Connected event")) };
    ensure!(info.id == id, "connected event id {} differs from the client's {id}", info.id);
    ensure!(info.client_name.as_deref() == Some("alpha"), "client_name not reported: {info:?}");
    ensure!(info.handshaken, "a hello client is reported as legacy");
    ensure!(!info.address.is_empty(), "no peer address");
    cx.send(&client, &cx.data(5)).await?;
    expect_event(
        &events,
        SOON,
        "message",
        |e| matches!(e, ServerEvent::Message { from, message } if *from == id && num(message) == Some(5)),
    )
    .await?;
    cx.disconnect(&client).await;
    expect_event(&events, SOON, "disconnected", |e| matches!(e, ServerEvent::Disconnected { id: d, .. } if *d == id))
        .await?;
    ensure!(server.client_count() == 0, "disconnected client still listed");
    cx.stop(&server).await?;
    Ok(())
}

pub(super) async fn reconnect_after_server_restart(cx: &Ctx) -> CaseResult {
    let first = cx.started(|_| {}).await?;
    let client = cx.connect().await?;
    let changes = client.state_changes();
    expect_state(&changes, ConnectionState::Connected, SOON).await?;
    cx.stop(&first).await?;
    expect_state(&changes, ConnectionState::Reconnecting, Duration::from_secs(1)).await?;
    ensure!(!client.is_connected(), "is_connected() true while reconnecting");
    match cx.send(&client, &cx.data(0)).await {
        Err(e) if e.kind() == ErrorKind::Connection => {}
        other => {
            return Err(Failure::new(format!("send while reconnecting: expected Connection error, got {other:?}")))
        }
    }
    drop(first);
    let second = cx.started(|_| {}).await?;
    expect_state(&changes, ConnectionState::Connected, SOON).await?;
    ensure!(client.is_connected(), "is_connected() false after reconnecting");
    second.broadcast(&cx.data(5))?;
    cx.expect_n(&client, 5).await?;
    cx.send(&client, &cx.data(6)).await?;
    cx.disconnect(&client).await;
    expect_state(&changes, ConnectionState::Closed, SOON).await?;
    cx.stop(&second).await?;
    Ok(())
}

pub(super) async fn end_of_stream_detected_at_once(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let client = cx.connect().await?;
    let changes = client.state_changes();
    let t0 = Instant::now();
    cx.stop(&server).await?;
    expect_state(&changes, ConnectionState::Reconnecting, Duration::from_secs(1)).await?;
    ensure!(!client.is_connected(), "is_connected() true after the server stopped");
    ensure!(t0.elapsed() < Duration::from_millis(1200), "end of stream noticed after {:?}", t0.elapsed());
    // Receiving keeps timing out (no spin, no error) while reconnecting.
    ensure!(cx.receive(&client, Duration::from_millis(50)).await?.is_none(), "message from a stopped server");
    cx.disconnect(&client).await;
    match cx.receive(&client, Duration::from_millis(50)).await {
        Err(e) if e.kind() == ErrorKind::Closed => Ok(()),
        other => Err(Failure::new(format!("receive after disconnect: expected Closed, got {other:?}"))),
    }
}
