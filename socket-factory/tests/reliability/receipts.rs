//! Receipts and closing: `Client::flush` (a `ping` whose `pong` says the server took every
//! frame before it), `Client::close` (the lingering close), and the relay server's event
//! stream, which never holds up delivery.

use std::time::{Duration, Instant};

use socket_factory::{ErrorKind, ServerEvent};

use super::harness::{ensure, on_both, watchdog, Fake, FakeServer, Fx, Net, TestResult};

/// A receipt comes only once the server processed every frame sent before it.
fn flush_after_processing(net: Net, _name: &str) -> TestResult {
    watchdog(60, move || {
        let fx = Fx::new(net)?;
        let server = fx.server()?;
        let events = server.events();
        let client = fx.client()?;
        // Batches below inbound_queue_size (256): the server hands each message to the
        // application's event stream, which this test drains only between batches.
        for round in 1..=20u64 {
            for seq in 0..200 {
                client.send(&fx.data(seq, 0))?;
            }
            client.flush()?;
            // Counted before the pong was queued: no frame of the batch is still unread.
            let received = server.stats().messages_received;
            ensure!(received == round * 200, "round {round}: the receipt came with {received} messages taken");
            // ... and the application already has every one of them.
            ensure!(events.len() >= 200, "round {round}: only {} message events", events.len());
            while events.try_recv().is_ok() {}
        }
        client.close()?;
        Ok(())
    })
}
on_both!(flush_returns_after_the_server_took_everything, flush_after_processing);

/// A server that never answers `ping`: `flush` fails with a timeout within `default_timeout`.
fn flush_without_pong(net: Net, _name: &str) -> TestResult {
    watchdog(30, move || {
        let mut fx = Fx::new(net)?;
        fx.config.socket.default_timeout = 1.0;
        let fake = FakeServer::start(
            &fx.addr(),
            fx.event.clone(),
            Fake::Welcome { protocol: 1, event: fx.event.to_string() },
        )?;
        let client = fx.client()?;
        client.send(&fx.data(1, 0))?;
        let t = Instant::now();
        let err = client.flush().err().ok_or("flush succeeded without a pong")?;
        ensure!(err.kind() == ErrorKind::Timeout, "expected a timeout, got {err}");
        ensure!(err.to_string().contains("did not confirm"), "unexpected message: {err}");
        ensure!(t.elapsed() < Duration::from_secs(3), "flush took {:?}", t.elapsed());
        fake.stop();
        Ok(())
    })
}
on_both!(flush_times_out_when_the_server_never_answers_ping, flush_without_pong);

/// Messages written on a connection that was lost since cannot be confirmed by a receipt on
/// the next one: `flush` says so once, then confirms again.
fn flush_across_reconnect(net: Net, _name: &str) -> TestResult {
    watchdog(60, move || {
        let fx = Fx::new(net)?;
        let server = fx.server()?;
        let client = fx.client()?;
        let states = client.state_changes();
        client.send(&fx.data(1, 0))?;
        server.stop()?;
        let again = fx.server()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        // Wait for Reconnecting, then Connected again.
        let mut saw_reconnecting = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            ensure!(!left.is_zero(), "the client did not reconnect");
            match states.recv_blocking() {
                Ok(socket_factory::ConnectionState::Reconnecting) => saw_reconnecting = true,
                Ok(socket_factory::ConnectionState::Connected) if saw_reconnecting => break,
                Ok(_) => {}
                Err(_) => return Err("state stream ended".into()),
            }
        }
        let err = client.flush().err().ok_or("flush confirmed a message sent on the lost connection")?;
        ensure!(err.kind() == ErrorKind::Connection, "expected a connection error, got {err}");
        ensure!(err.to_string().contains("lost since"), "unexpected message: {err}");
        client.send(&fx.data(2, 0))?;
        client.flush()?;
        again.stop()?;
        Ok(())
    })
}
on_both!(flush_does_not_confirm_messages_of_a_lost_connection, flush_across_reconnect);

/// With a legacy server there is no receipt by `ping`: `flush` is refused and `close` (the
/// server read to end-of-stream and closed) is the receipt.
fn legacy_receipt(net: Net, _name: &str) -> TestResult {
    watchdog(30, move || {
        let fx = Fx::new(net)?;
        let server = fx.server()?;
        let client = fx.client_with(|o| o.legacy_server = true)?;
        for seq in 0..200 {
            client.send(&fx.data(seq, 0))?;
        }
        let err = client.flush().err().ok_or("flush worked against a legacy server")?;
        ensure!(err.kind() == ErrorKind::Validation, "expected a validation error, got {err}");
        client.close()?;
        // The server closed only after reading our end-of-stream: it had read all 200.
        let received = server.stats().messages_received;
        ensure!(received == 200, "close returned with {received} of 200 messages taken");
        Ok(())
    })
}
on_both!(close_is_the_receipt_of_a_legacy_server, legacy_receipt);

/// A server that never closes the connection: `close` gives up after `default_timeout` and
/// says so.
fn close_without_server_close(net: Net, _name: &str) -> TestResult {
    watchdog(30, move || {
        let mut fx = Fx::new(net)?;
        fx.config.socket.default_timeout = 1.0;
        let fake = FakeServer::start(&fx.addr(), fx.event.clone(), Fake::NeverClose)?;
        let client = fx.client_with(|o| o.legacy_server = true)?;
        client.send(&fx.data(1, 0))?;
        let t = Instant::now();
        let err = client.close().err().ok_or("close succeeded although the server never closed")?;
        ensure!(err.kind() == ErrorKind::Timeout, "expected a timeout, got {err}");
        ensure!(t.elapsed() < Duration::from_secs(3), "close took {:?}", t.elapsed());
        // Closed for good all the same.
        ensure!(client.send(&fx.data(2, 0)).is_err(), "a closed client could still send");
        fake.stop();
        Ok(())
    })
}
on_both!(close_times_out_when_the_server_never_closes, close_without_server_close);

/// A relay server whose application holds the event stream but never reads it: relayed
/// messages still reach the subscriber at once, and the events that did not fit are counted
/// and reported in the stream.
fn relay_events_side_channel(net: Net, _name: &str) -> TestResult {
    watchdog(60, move || {
        const N: u64 = 5_000;
        let fx = Fx::new(net)?;
        let server = fx.server_with(|o| {
            o.relay = true;
            o.inbound_queue_size = 64;
            o.outbound_queue_size = 8192;
            o.outbound_queue_bytes = 64 << 20;
        })?;
        let events = server.events();
        let sub = fx.client_with(|o| o.receive_buffer_size = 8192)?;
        let producer = fx.client()?;
        for seq in 0..N {
            producer.send(&fx.data(seq, 0))?;
        }
        producer.flush()?;
        for seq in 0..N {
            let m = sub.receive(Some(Duration::from_secs(10)))?.ok_or("the subscriber stopped receiving")?;
            ensure!(super::harness::seq(&m) == Some(seq), "expected seq {seq}, got {:?}", m.data);
        }
        let stats = server.stats();
        ensure!(stats.events_dropped > 0, "no event was dropped: {stats:?}");
        let (mut messages, mut reported) = (0u64, 0u64);
        while let Ok(ev) = events.try_recv() {
            match ev {
                ServerEvent::Message { .. } => messages += 1,
                ServerEvent::EventsDropped { count } => reported += count,
                _ => {}
            }
        }
        ensure!(messages <= 64, "{messages} message events kept in a buffer of 64");
        ensure!(reported == stats.events_dropped, "reported {reported}, counted {}", stats.events_dropped);
        // Every event is either kept or reported: N messages plus two connects.
        ensure!(messages + reported >= N, "kept {messages} + reported {reported} < {N}");
        ensure!(messages + reported <= N + 2, "kept {messages} + reported {reported} > {N} + 2");
        Ok(())
    })
}
on_both!(relay_delivery_never_waits_for_the_event_stream, relay_events_side_channel);
