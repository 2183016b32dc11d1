//! The client's public API over the memory transport: buffer accessors,
//! state reporting, the end of `iter`/`stream`, timeouts, send refusals and
//! disconnecting during backoff. Only public behaviour is checked, so these
//! tests hold whatever the engine's internals look like.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{future, StreamExt};
use socket_core::runtime::block_on;
use socket_core::{
    Client, ClientOptions, Config, ConnectionState, Data, ErrorKind, EventName, Server, ServerEvent, ServerOptions,
    SocketMessage, Transport,
};
use socket_tests::conformance::unique_name;
use socket_tests::memory::MemoryTransport;

use crate::suite::memory_config;

/// Watchdog for every wait in this file.
const DEADLINE: Duration = Duration::from_secs(10);

/// Runs `fut`, failing the test if it takes longer than [`DEADLINE`].
fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    block_on(future::or(fut, async {
        async_io::Timer::after(DEADLINE).await;
        panic!("{what}: not done within {DEADLINE:?}")
    }))
}

/// Waits (with the watchdog) until `cond` holds; `cond` reads public state only.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "{what}: not reached within {DEADLINE:?}");
        std::thread::yield_now();
    }
}

struct Fixture {
    transport: Arc<dyn Transport>,
    config: Config,
    event: EventName,
    server: Server,
}

fn fixture(set: impl FnOnce(&mut ServerOptions)) -> Fixture {
    let transport: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
    let config = memory_config();
    let event = EventName::new(unique_name("api")).expect("valid event name");
    let mut options = ServerOptions::from_config(&config, transport.as_ref()).expect("server options");
    set(&mut options);
    let server =
        Server::with_options(transport.clone(), event.clone(), config.clone(), options).expect("server created");
    server.start().expect("server started");
    Fixture { transport, config, event, server }
}

impl Fixture {
    fn options(&self) -> ClientOptions {
        ClientOptions::from_config(&self.config).expect("client options")
    }

    fn connect_with(&self, options: ClientOptions) -> Client {
        let events = self.server.events();
        let client = Client::connect_with(self.transport.clone(), self.event.clone(), self.config.clone(), options)
            .expect("client connected");
        within("server sees the client", async {
            loop {
                match events.recv().await.expect("server events open") {
                    ServerEvent::Connected(_) => break,
                    _ => continue,
                }
            }
        });
        client
    }

    fn msg(&self, n: i64) -> SocketMessage {
        SocketMessage::data(self.event.clone(), Data::new().with("n", n))
    }
}

fn num(m: &SocketMessage) -> Option<i64> {
    m.data.get("n").and_then(|v| v.as_i64())
}

#[test]
fn buffered_messages_can_be_counted_taken_and_cleared() {
    let fx = fixture(|_| {});
    let client = fx.connect_with(fx.options());
    assert_eq!(client.buffered(), 0);
    assert!(client.try_receive().expect("open client").is_none(), "nothing has arrived yet");
    for n in 0..3 {
        fx.server.broadcast(&fx.msg(n)).expect("broadcast");
    }
    wait_until("three messages buffered", || client.buffered() == 3);
    let first = client.try_receive().expect("open client").expect("a buffered message");
    assert_eq!(num(&first), Some(0), "messages come in order");
    assert_eq!(client.buffered(), 2);
    assert_eq!(client.clear_buffer(), 2);
    assert_eq!(client.buffered(), 0);
    assert_eq!(client.clear_buffer(), 0);
    assert!(client.try_receive().expect("open client").is_none());
    client.disconnect();
}

#[test]
fn receive_times_out_with_none_and_then_gets_a_later_message() {
    let fx = fixture(|_| {});
    let client = fx.connect_with(fx.options());
    let start = Instant::now();
    let got = client.receive(Some(Duration::from_millis(50))).expect("open client");
    assert!(got.is_none(), "no message was sent");
    assert!(start.elapsed() >= Duration::from_millis(50), "the timeout is honoured");
    fx.server.broadcast(&fx.msg(7)).expect("broadcast");
    let got = client.receive(Some(DEADLINE)).expect("open client").expect("the broadcast arrives");
    assert_eq!(num(&got), Some(7));
}

#[test]
fn disconnect_reports_the_reason_everywhere_and_ends_iteration() {
    let fx = fixture(|_| {});
    let client = fx.connect_with(fx.options());
    assert_eq!(client.state(), ConnectionState::Connected);
    assert!(client.is_connected());
    assert!(client.close_reason().is_none(), "an open client has no close reason");
    assert_eq!(client.event(), &fx.event);
    assert!(client.server_address().is_some());
    let changes = client.state_changes();
    assert_eq!(changes.try_recv().ok(), Some(ConnectionState::Connected), "starts with the current state");

    fx.server.broadcast(&fx.msg(1)).expect("broadcast");
    wait_until("message buffered", || client.buffered() == 1);
    client.disconnect();

    assert_eq!(client.state(), ConnectionState::Closed);
    assert!(!client.is_connected());
    let reason = client.close_reason().expect("a closed client has a reason");
    assert!(reason.contains("disconnected by the application"), "{reason}");
    within("state changes end with Closed", async {
        let rest: Vec<ConnectionState> = changes.collect().await;
        assert_eq!(rest.last(), Some(&ConnectionState::Closed), "{rest:?}");
    });
    let late = client.state_changes();
    assert_eq!(late.try_recv().ok(), Some(ConnectionState::Closed));
    assert!(late.is_closed(), "a watcher subscribed after Closed gets Closed and the end");

    // The message buffered before closing is still delivered, then one Closed error, then the end.
    let items: Vec<_> = client.iter().collect();
    assert_eq!(items.len(), 2, "one message and one error: {items:?}");
    assert_eq!(items[0].as_ref().ok().and_then(num), Some(1));
    let err = items[1].as_ref().expect_err("the iterator ends with the close reason");
    assert_eq!(err.kind(), ErrorKind::Closed);
    assert!(err.message().contains("disconnected by the application"), "{err}");

    let err = client.try_receive().expect_err("closed and drained");
    assert_eq!(err.kind(), ErrorKind::Closed);
    let err = client.receive(Some(Duration::from_millis(10))).expect_err("closed and drained");
    assert_eq!(err.kind(), ErrorKind::Closed);
    let err = client.send(&fx.msg(2)).expect_err("cannot send once closed");
    assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
}

#[test]
fn stream_ends_with_one_closed_error() {
    let fx = fixture(|_| {});
    let client = fx.connect_with(fx.options());
    fx.server.broadcast(&fx.msg(5)).expect("broadcast");
    let mut stream = client.stream();
    within("stream", async {
        let first = stream.next().await.expect("an item").expect("a message");
        assert_eq!(num(&first), Some(5));
        client.disconnect_async().await;
        let end = stream.next().await.expect("an item").expect_err("the close error");
        assert_eq!(end.kind(), ErrorKind::Closed);
        assert!(stream.next().await.is_none(), "nothing after the close error");
    });
    client.disconnect(); // idempotent
    assert_eq!(client.state(), ConnectionState::Closed);
}

#[test]
fn receive_only_clients_refuse_to_send_without_writing() {
    let fx = fixture(|_| {});
    let mut options = fx.options();
    options.receive_only = true;
    let client = fx.connect_with(options);
    assert!(!client.can_send());
    let err = client.send(&fx.msg(1)).expect_err("receive-only");
    assert_eq!(err.kind(), ErrorKind::SendNotAllowed);
    assert!(err.message().contains("receive-only"), "{err}");
    assert_eq!(fx.server.stats().messages_received, 0, "nothing reached the server");
}

#[test]
fn a_server_that_refuses_client_messages_is_reported_by_can_send() {
    let fx = fixture(|o| o.allow_client_send = false);
    let client = fx.connect_with(fx.options());
    assert!(!client.can_send());
    let err = client.send(&fx.msg(1)).expect_err("the server does not accept messages");
    assert_eq!(err.kind(), ErrorKind::SendNotAllowed);
    assert!(err.message().contains("allow_client_send"), "{err}");
}

#[test]
fn connecting_without_a_server_names_the_event() {
    let transport: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
    let mut config = memory_config();
    config.socket.wait_for_server = false;
    let event = EventName::new(unique_name("nobody")).expect("valid event name");
    let err = Client::connect(transport, event.clone(), &config).expect_err("no server");
    assert_eq!(err.kind(), ErrorKind::Connection);
    assert!(err.message().contains("no server for event"), "{err}");
    assert!(err.message().contains(event.as_str()), "{err}");
}

#[test]
fn losing_the_server_without_auto_reconnect_closes_with_a_reason() {
    let fx = fixture(|_| {});
    let mut options = fx.options();
    options.auto_reconnect = false;
    let client = fx.connect_with(options);
    let changes = client.state_changes();
    fx.server.stop().expect("server stopped");
    let seen: Vec<ConnectionState> = within("client closes", changes.collect());
    assert_eq!(seen.last(), Some(&ConnectionState::Closed), "{seen:?}");
    let reason = client.close_reason().expect("a reason");
    assert!(!reason.is_empty());
    let err = client.receive(None).expect_err("closed");
    assert_eq!(err.kind(), ErrorKind::Closed);
    assert!(err.message().contains(&reason), "the error carries the close reason: {err}");
}

#[test]
fn disconnect_during_backoff_stops_reconnecting_at_once() {
    let fx = fixture(|_| {});
    let mut options = fx.options();
    options.auto_reconnect = true;
    options.reconnect_initial_delay = Duration::from_secs(30);
    options.reconnect_max_delay = Duration::from_secs(30);
    options.reconnect_max_retries = None;
    let client = fx.connect_with(options);
    let changes = client.state_changes();
    fx.server.stop().expect("server stopped");
    within("client starts reconnecting", async {
        while changes.recv().await.expect("not closed yet") != ConnectionState::Reconnecting {}
    });
    assert!(!client.is_connected());
    let err = client.send(&fx.msg(1)).expect_err("not connected while reconnecting");
    assert_eq!(err.kind(), ErrorKind::Connection);
    assert!(err.message().contains("reconnecting"), "{err}");

    let start = Instant::now();
    client.disconnect();
    assert!(start.elapsed() < Duration::from_secs(5), "disconnect does not wait out the 30 s backoff");
    assert_eq!(client.state(), ConnectionState::Closed);
    let rest: Vec<ConnectionState> = within("state changes end", changes.collect());
    assert_eq!(rest, [ConnectionState::Closed]);
}

#[test]
fn reconnects_after_the_server_comes_back() {
    let fx = fixture(|_| {});
    let mut options = fx.options();
    options.auto_reconnect = true;
    options.reconnect_initial_delay = Duration::from_millis(10);
    options.reconnect_max_delay = Duration::from_millis(50);
    let client = fx.connect_with(options);
    let changes = client.state_changes();
    fx.server.stop().expect("server stopped");
    within("client starts reconnecting", async {
        while changes.recv().await.expect("not closed") != ConnectionState::Reconnecting {}
    });
    let events = fx.server.events();
    fx.server.start().expect("server restarted");
    within("client reconnects", async {
        while changes.recv().await.expect("not closed") != ConnectionState::Connected {}
    });
    within("server sees the client again", async {
        while !matches!(events.recv().await.expect("events open"), ServerEvent::Connected(_)) {}
    });
    fx.server.broadcast(&fx.msg(9)).expect("broadcast");
    let got = client.receive(Some(DEADLINE)).expect("open").expect("a message after reconnecting");
    assert_eq!(num(&got), Some(9));
}
