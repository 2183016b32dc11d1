//! The `hello` grace period and late `hello`s (open item 7 in docs/reliability.md), with raw
//! peers that speak the protocol by hand, on both transports.
//!
//! A connection that sent nothing within `hello_grace` is served as a legacy client's. A valid
//! `hello` that is its first frame still upgrades it: `welcome` comes behind whatever the server
//! had sent it, and it is handshaken from then on. A `hello` after another frame, or a second
//! `hello`, is ignored as before.

use std::time::Duration;

use socket_factory::control::{Control, ErrorCode};
use socket_factory::{ClientInfo, Server, ServerEvent};

use super::harness::*;

const S5: Duration = Duration::from_secs(5);

/// Waits for the `Connected` event of a connection the server serves as a legacy client's: once
/// it came, `hello_grace` is over for that connection.
fn legacy_connected(events: &async_channel::Receiver<ServerEvent>) -> TestResult<ClientInfo> {
    match expect_event(events, S5, "Connected", |e| matches!(e, ServerEvent::Connected(_)))? {
        ServerEvent::Connected(info) if !info.handshaken => Ok(info),
        other => Err(format!("expected a legacy client's Connected, got {other:?}").into()),
    }
}

/// The only registered client.
fn only_client(server: &Server) -> TestResult<ClientInfo> {
    match server.clients().as_slice() {
        [c] => Ok(c.clone()),
        other => Err(format!("expected one client, got {other:?}").into()),
    }
}

/// Expects DATA messages with `seq` in `range`, in order, and nothing in between.
fn expect_seqs(raw: &mut Raw, range: std::ops::Range<u64>, what: &str) -> TestResult {
    for n in range {
        let m = raw.expect_msg(S5, &format!("{what} #{n}"))?;
        ensure!(seq(&m) == Some(n), "{what}: expected #{n}, got {m:?}");
    }
    Ok(())
}

on_both!(late_hello_upgrades_a_legacy_connection, late_hello);

/// `hello` sent after `hello_grace` as the connection's first frame: the offline queue and the
/// broadcast the connection got as a legacy client come first, then `welcome` (with its id);
/// the server reports it handshaken with its name, and `stop` sends it `shutdown`.
fn late_hello(net: Net, _name: &str) -> TestResult {
    watchdog(20, move || {
        let fx = Fx::new(net)?;
        let server = fx.server()?;
        let events = server.events();
        for n in 0..3 {
            server.broadcast(&fx.data(n, 0))?;
        }
        let mut raw = fx.raw()?;
        let info = legacy_connected(&events)?;
        server.broadcast(&fx.data(3, 0))?;
        // The grace period is over (the Connected event above says so): the hello is late.
        raw.send(&hello_frame(&fx.event, 1, Some("late")))?;
        expect_seqs(&mut raw, 0..4, "offline queue and live broadcast before welcome")?;
        let m = raw.expect_msg(S5, "welcome after the late hello")?;
        match Control::parse(&m) {
            Some(Ok(Control::Welcome { client_id, event_name, .. })) => {
                ensure!(client_id == info.id.to_string(), "welcome id {client_id}, Connected id {}", info.id);
                ensure!(event_name == fx.event.as_str(), "welcome for {event_name}");
            }
            _ => return Err(format!("expected welcome, got {m:?}").into()),
        }
        let c = only_client(&server)?;
        ensure!(c.handshaken && c.client_name.as_deref() == Some("late"), "not upgraded: {c:?}");
        server.broadcast(&fx.data(4, 0))?;
        expect_seqs(&mut raw, 4..5, "broadcast after welcome")?;
        server.stop()?;
        let m = raw.expect_msg(S5, "shutdown for a handshaken client")?;
        ensure!(matches!(Control::parse(&m), Some(Ok(Control::Shutdown { .. }))), "expected shutdown, got {m:?}");
        raw.expect_eof(S5)?;
        Ok(())
    })
}

on_both!(legacy_client_without_hello_unchanged, legacy_unchanged);

/// A legacy client (never sends `hello`) is served as before: the offline queue, broadcasts, its
/// own messages reach the application, no `welcome`, no `shutdown`, reported as not handshaken.
fn legacy_unchanged(net: Net, _name: &str) -> TestResult {
    watchdog(20, move || {
        let fx = Fx::new(net)?;
        let server = fx.server()?;
        let events = server.events();
        for n in 0..2 {
            server.broadcast(&fx.data(n, 0))?;
        }
        let mut raw = fx.raw()?;
        let info = legacy_connected(&events)?;
        expect_seqs(&mut raw, 0..2, "offline queue, no welcome")?;
        server.broadcast(&fx.data(2, 0))?;
        expect_seqs(&mut raw, 2..3, "live broadcast")?;
        raw.send(&frame_of(&fx.data(10, 0)))?;
        let ev =
            expect_event(&events, S5, "the legacy client's message", |e| matches!(e, ServerEvent::Message { .. }))?;
        ensure!(
            matches!(&ev, ServerEvent::Message { from, message } if *from == info.id && seq(message) == Some(10)),
            "{ev:?}"
        );
        let c = only_client(&server)?;
        ensure!(!c.handshaken && c.client_name.is_none(), "a legacy client reported as handshaken: {c:?}");
        server.stop()?;
        raw.expect_eof(S5)?;
        Ok(())
    })
}

on_both!(hello_after_another_frame_is_ignored, hello_after_frame);

/// A `hello` that is not the connection's first frame is ignored, as before the late-hello
/// fix: no `welcome`, still legacy (no `shutdown` on stop).
fn hello_after_frame(net: Net, _name: &str) -> TestResult {
    watchdog(20, move || {
        let fx = Fx::new(net)?;
        let server = fx.server()?;
        let events = server.events();
        let mut raw = fx.raw()?;
        raw.send(&frame_of(&fx.data(10, 0)))?;
        legacy_connected(&events)?;
        expect_event(&events, S5, "the first frame's message", |e| matches!(e, ServerEvent::Message { .. }))?;
        raw.send(&hello_frame(&fx.event, 1, Some("too-late")))?;
        // Another frame after the hello: once the server handled it, the hello was handled too.
        raw.send(&frame_of(&fx.data(11, 0)))?;
        expect_event(&events, S5, "the frame after the hello", |e| matches!(e, ServerEvent::Message { .. }))?;
        server.broadcast(&fx.data(0, 0))?;
        let m = raw.expect_msg(S5, "the broadcast")?;
        ensure!(seq(&m) == Some(0), "expected the broadcast and no welcome, got {m:?}");
        let c = only_client(&server)?;
        ensure!(!c.handshaken && c.client_name.is_none(), "a hello after another frame upgraded: {c:?}");
        server.stop()?;
        raw.expect_eof(S5)?;
        Ok(())
    })
}

on_both!(second_hello_is_ignored, second_hello);

/// A second `hello` gets no second `welcome` and changes nothing.
fn second_hello(net: Net, _name: &str) -> TestResult {
    watchdog(20, move || {
        let fx = Fx::new(net)?;
        let server = fx.server()?;
        let mut raw = fx.raw()?;
        raw.hello(Some("first"))?;
        raw.send(&hello_frame(&fx.event, 1, Some("second")))?;
        // A ping after it: its pong proves the second hello was read (and answered with nothing).
        let ping = Control::Ping { nonce: 7 }.to_message(&fx.event, &jiff::tz::TimeZone::UTC);
        raw.send(&frame_of(&ping))?;
        let m = raw.expect_msg(S5, "pong")?;
        ensure!(matches!(Control::parse(&m), Some(Ok(Control::Pong { nonce: 7 }))), "expected pong, got {m:?}");
        let c = only_client(&server)?;
        ensure!(c.handshaken && c.client_name.as_deref() == Some("first"), "{c:?}");
        server.stop()?;
        let m = raw.expect_msg(S5, "shutdown")?;
        ensure!(matches!(Control::parse(&m), Some(Ok(Control::Shutdown { .. }))), "expected shutdown, got {m:?}");
        raw.expect_eof(S5)?;
        Ok(())
    })
}

on_both!(late_hello_in_another_protocol_refused, late_hello_bad_version);

/// A late `hello` is checked like one within the grace period: another protocol version is
/// answered with ERROR `protocol` and the connection is closed.
fn late_hello_bad_version(net: Net, _name: &str) -> TestResult {
    watchdog(20, move || {
        let fx = Fx::new(net)?;
        let server = fx.server()?;
        let events = server.events();
        let mut raw = fx.raw()?;
        legacy_connected(&events)?;
        raw.send(&hello_frame(&fx.event, 2, None))?;
        let text = raw.expect_error(ErrorCode::Protocol, S5)?;
        ensure!(text.contains("protocol version 2"), "{text}");
        raw.expect_eof(S5)?;
        server.stop()?;
        Ok(())
    })
}
