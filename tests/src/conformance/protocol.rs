//! The wire protocol: the handshake, legacy peers on both sides, ping/pong, malformed and unfinished frames, connect errors, a wrong protocol version.

use super::ctx::*;
use super::*;

pub(super) async fn welcome_is_first_frame(cx: &Ctx) -> CaseResult {
    let server = cx.started(|o| o.retain_last = true).await?;
    for i in 0..3 {
        server.broadcast(&cx.data(i))?;
    }
    let mut raw = cx.raw().await?;
    let hello = control(&cx.event(), &Control::Hello { protocol: 1, client_name: None });
    raw.send_msg(&hello).await?;
    match raw.next(SOON).await? {
        RawEvent::Message(m) => match Control::parse(&m) {
            Some(Ok(Control::Welcome { protocol, client_id, allow_client_send, event_name, server: name, relay })) => {
                ensure!(protocol == 1, "welcome protocol {protocol}");
                ensure!(client_id.parse::<ClientId>().is_ok(), "welcome client_id {client_id:?}");
                ensure!(allow_client_send, "welcome says no client send");
                ensure!(event_name == "conformance", "welcome event_name {event_name}");
                ensure!(!name.is_empty(), "welcome has no server name");
                ensure!(!relay, "welcome says relay on a server started without it");
            }
            _ => return Err(Failure::new(format!("first frame is not welcome: {m:?}"))),
        },
        other => return Err(Failure::new(format!("no welcome: {other:?}"))),
    }
    for i in 0..3 {
        match raw.next(SOON).await? {
            RawEvent::Message(m) if num(&m) == Some(i) => {}
            other => return Err(Failure::new(format!("expected queued message {i}, got {other:?}"))),
        }
    }
    match raw.next(QUIET).await? {
        RawEvent::Timeout => {}
        other => return Err(Failure::new(format!("unexpected frame after the replay: {other:?}"))),
    }
    // A handshaken client gets `shutdown` before end-of-stream.
    cx.stop(&server).await?;
    match raw.next(SOON).await? {
        RawEvent::Message(m) if matches!(Control::parse(&m), Some(Ok(Control::Shutdown { .. }))) => {}
        other => return Err(Failure::new(format!("expected shutdown, got {other:?}"))),
    }
    raw.expect_eof("after shutdown").await
}

pub(super) async fn legacy_client_served(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let events = server.events();
    let mut raw = cx.raw().await?;
    // Broadcast during the grace period: it waits in the client's queue.
    server.broadcast(&cx.data(1))?;
    match raw.next(SOON).await? {
        RawEvent::Message(m) if num(&m) == Some(1) => {}
        other => return Err(Failure::new(format!("legacy client: expected message 1 first, got {other:?}"))),
    }
    let ev = expect_event(&events, SOON, "legacy client connected", |e| matches!(e, ServerEvent::Connected(_))).await?;
    ensure!(
        matches!(&ev, ServerEvent::Connected(info) if !info.handshaken),
        "legacy client reported handshaken: {ev:?}"
    );
    // It may send (legacy path), and it is never closed for silence.
    raw.send_msg(&cx.data(2)).await?;
    expect_event(
        &events,
        SOON,
        "message from the legacy client",
        |e| matches!(e, ServerEvent::Message { message, .. } if num(message) == Some(2)),
    )
    .await?;
    server.broadcast(&cx.data(3))?;
    match raw.next(SOON).await? {
        RawEvent::Message(m) if num(&m) == Some(3) => {}
        other => return Err(Failure::new(format!("legacy client: expected message 3, got {other:?}"))),
    }
    // No shutdown frame for a legacy client, just end-of-stream.
    cx.stop(&server).await?;
    raw.expect_eof("legacy client after stop").await
}

pub(super) async fn ping_answered_with_pong(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let events = server.events();
    let mut raw = cx.raw().await?;
    raw.hello().await?;
    raw.send_msg(&control(&cx.event(), &Control::Ping { nonce: 77 })).await?;
    match raw.next(SOON).await? {
        RawEvent::Message(m) if Control::parse(&m) == Some(Ok(Control::Pong { nonce: 77 })) => {}
        other => return Err(Failure::new(format!("expected pong 77, got {other:?}"))),
    }
    let seen = expect_event(&events, QUIET, "", |e| matches!(e, ServerEvent::Message { .. })).await;
    ensure!(seen.is_err(), "protocol control reached the application: {seen:?}");
    cx.stop(&server).await?;
    Ok(())
}

pub(super) async fn malformed_frame_keeps_connection(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let events = server.events();
    let good = cx.connect().await?;
    let mut raw = cx.raw().await?;
    let raw_id: ClientId = raw.hello().await?.parse()?;
    raw.send_bytes(&[0, 0, 0, 1, 0xc1]).await?;
    raw.expect_error(ErrorCode::Malformed).await?;
    raw.send_msg(&cx.data(9)).await?;
    expect_event(
        &events,
        SOON,
        "message after the malformed frame",
        |e| matches!(e, ServerEvent::Message { from, message } if *from == raw_id && num(message) == Some(9)),
    )
    .await?;
    server.broadcast(&cx.data(10))?;
    cx.expect_n(&good, 10).await?;
    match raw.next(SOON).await? {
        RawEvent::Message(m) if num(&m) == Some(10) => {}
        other => return Err(Failure::new(format!("raw client not served after a malformed frame: {other:?}"))),
    }
    ensure!(server.stats().malformed == 1, "malformed count {}", server.stats().malformed);
    cx.stop(&server).await?;
    Ok(())
}

pub(super) async fn bad_frame_headers_close_connection(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let good = cx.connect().await?;
    let mut zero = cx.raw().await?;
    zero.send_bytes(&[0, 0, 0, 0]).await?;
    zero.expect_error(ErrorCode::Protocol).await?;
    zero.expect_eof("after a zero-length frame").await?;
    let mut http = cx.raw().await?;
    http.send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await?;
    http.expect_error(ErrorCode::MessageTooLarge).await?;
    http.expect_eof("after an HTTP request").await?;
    server.broadcast(&cx.data(1))?;
    cx.expect_n(&good, 1).await?;
    cx.stop(&server).await?;
    Ok(())
}

pub(super) async fn unfinished_frame_closes_connection(cx: &Ctx) -> CaseResult {
    let server = cx.started(|o| o.frame_timeout = Duration::from_millis(300)).await?;
    let mut raw = cx.raw().await?;
    raw.hello().await?;
    let t0 = Instant::now();
    raw.send_bytes(&[0, 0, 0, 100, 0x85, 0xa1]).await?;
    raw.expect_error(ErrorCode::Protocol).await?;
    raw.expect_eof("after the frame deadline").await?;
    let took = t0.elapsed();
    ensure!(took >= Duration::from_millis(250), "closed before the frame deadline ({took:?})");
    ensure!(took < Duration::from_secs(3), "closed long after the frame deadline ({took:?})");
    // A silent client is never closed.
    let mut silent = cx.raw().await?;
    match silent.next(Duration::from_millis(600)).await? {
        RawEvent::Timeout => {}
        other => return Err(Failure::new(format!("silent client got {other:?}"))),
    }
    cx.stop(&server).await?;
    Ok(())
}

pub(super) async fn legacy_server_mode(cx: &Ctx) -> CaseResult {
    // Our server stands in for a legacy one: the client sends no hello and expects no welcome.
    let server = cx.started(|o| o.allow_client_send = false).await?;
    let events = server.events();
    let client = cx.connect_with(|o| o.legacy_server = true).await??;
    ensure!(client.client_id().is_none(), "a legacy-mode client got an id without welcome");
    ensure!(client.is_connected(), "legacy-mode client not connected");
    let ev =
        expect_event(&events, SOON, "legacy-mode client connected", |e| matches!(e, ServerEvent::Connected(_))).await?;
    ensure!(matches!(&ev, ServerEvent::Connected(i) if !i.handshaken), "legacy-mode client sent hello: {ev:?}");
    server.broadcast(&cx.data(1))?;
    cx.expect_n(&client, 1).await?;
    // Without welcome the client learns the rule from the server's ERROR.
    ensure!(client.can_send(), "legacy-mode client should try sending");
    cx.send(&client, &cx.data(2)).await?;
    let err = cx.expect_message(&client, "send_not_allowed ERROR").await?;
    ensure!(
        matches!(ErrorCode::parse(&err), Some((ErrorCode::SendNotAllowed, _))),
        "expected the send_not_allowed ERROR as a message, got {err:?}"
    );
    ensure!(!client.can_send(), "client still thinks it can send after send_not_allowed");
    match cx.send(&client, &cx.data(3)).await {
        Err(e) if e.kind() == ErrorKind::SendNotAllowed => {}
        other => return Err(Failure::new(format!("send after send_not_allowed: {other:?}"))),
    }
    cx.stop(&server).await?;
    Ok(())
}

pub(super) async fn connect_errors_and_wait_for_server(cx: &Ctx) -> CaseResult {
    // No server: a clear Connection error at once.
    let t0 = Instant::now();
    match cx.connect_with(|_| {}).await? {
        Err(e) if e.kind() == ErrorKind::Connection => {
            let text = e.to_string();
            ensure!(text.contains("no server for event conformance"), "unclear no-server error: {text}");
        }
        other => return Err(Failure::new(format!("connect without a server: {other:?}"))),
    }
    ensure!(t0.elapsed() < Duration::from_secs(2), "no-server error took {:?}", t0.elapsed());
    // Waiting, bounded: a Timeout error.
    match cx
        .connect_with(|o| {
            o.wait_for_server = true;
            o.wait_timeout = Some(Duration::from_millis(300));
        })
        .await?
    {
        Err(e) if e.kind() == ErrorKind::Timeout => {}
        other => return Err(Failure::new(format!("bounded wait without a server: {other:?}"))),
    }
    // Waiting for a server that comes up later.
    let mut o = cx.client_options()?;
    o.wait_for_server = true;
    o.wait_timeout = Some(Duration::from_secs(10));
    let (t, e, c) = (cx.h.transport.clone(), cx.event(), cx.config());
    let waiting: Pin<Box<dyn Future<Output = socket_core::Result<Client>> + Send>> = match cx.mode() {
        Mode::Async => Box::pin(socket_core::runtime::spawn(Client::connect_with_async(t, e, c, o))),
        Mode::Blocking => {
            let (tx, rx) = async_channel::bounded(1);
            std::thread::spawn(move || {
                let _ = tx.send_blocking(Client::connect_with(t, e, c, o));
            });
            Box::pin(async move {
                rx.recv()
                    .await
                    .unwrap_or_else(|_| Err(socket_core::Error::new(ErrorKind::Connection, "connect thread died")))
            })
        }
    };
    let server = cx.started(|_| {}).await?;
    let client = future::or(waiting, async {
        async_io::Timer::after(SOON).await;
        Err(socket_core::Error::new(ErrorKind::Timeout, "the waiting client did not connect"))
    })
    .await?;
    server.broadcast(&cx.data(1))?;
    cx.expect_n(&client, 1).await?;
    cx.stop(&server).await?;
    Ok(())
}

pub(super) async fn hello_with_wrong_protocol_refused(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let mut raw = cx.raw().await?;
    raw.send_msg(&control(&cx.event(), &Control::Hello { protocol: 99, client_name: None })).await?;
    raw.expect_error(ErrorCode::Protocol).await?;
    raw.expect_eof("after an unsupported protocol version").await?;
    cx.stop(&server).await?;
    Ok(())
}
