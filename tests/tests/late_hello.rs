//! Open item 7 of docs/reliability.md: a `hello` held by the network past
//! `hello_grace`. The server serves the connection as a legacy client's
//! until the `hello` arrives (offline replay, broadcasts), then answers
//! `welcome` behind what it already sent; the client keeps the messages that
//! came before `welcome` and delivers them first. The faulty transport holds
//! the connection (no chunk faults), so the `hello` is late for certain.

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use futures_lite::future;
use socket_core::runtime::block_on;
use socket_core::{
    Client, ClientInfo, ClientOptions, Config, ConnectionState, Data, ErrorKind, EventName, Server, ServerEvent,
    SocketMessage, Transport,
};
use socket_tests::conformance::unique_name;
use socket_tests::faulty::{self, ChunkFaults, FaultyTransport};

/// Watchdog for every wait in this file.
const DEADLINE: Duration = Duration::from_secs(10);

type TestResult<T = ()> = Result<T, String>;

struct Fixture {
    net: FaultyTransport,
    transport: Arc<dyn Transport>,
    config: Config,
    event: EventName,
    server: Server,
    events: socket_core::ServerEvents,
}

fn fixture(seed: u64) -> TestResult<Fixture> {
    let net = FaultyTransport::with_chunk_faults(seed, ChunkFaults::NONE);
    let transport: Arc<dyn Transport> = Arc::new(net.clone());
    let mut config = Config::default();
    config.socket.transport = faulty::SCHEME.to_owned();
    faulty::set_option(&mut config, "namespace", unique_name("late"));
    config.socket.hello_grace = 0.05;
    let event = EventName::new(unique_name("late")).map_err(|e| e.to_string())?;
    let server = Server::new(transport.clone(), event.clone(), &config).map_err(|e| e.to_string())?;
    let events = server.events();
    server.start().map_err(|e| e.to_string())?;
    Ok(Fixture { net, transport, config, event, server, events })
}

impl Fixture {
    fn msg(&self, n: u64) -> SocketMessage {
        SocketMessage::data(self.event.clone(), Data::new().with("n", n))
    }

    fn broadcast(&self, range: std::ops::Range<u64>) -> TestResult {
        for n in range {
            self.server.broadcast(&self.msg(n)).map_err(|e| format!("broadcast #{n}: {e}"))?;
        }
        Ok(())
    }

    /// The next server event, within the watchdog.
    fn next_event(&self, what: &str) -> TestResult<ServerEvent> {
        block_on(future::or(async { self.events.recv().await.map_err(|e| format!("{what}: {e}")) }, async {
            async_io::Timer::after(DEADLINE).await;
            Err(format!("{what}: no server event within {DEADLINE:?}"))
        }))
    }

    /// Connects a client named `late` while the network holds every byte:
    /// its `hello` cannot arrive within `hello_grace`. Once the server has
    /// served the connection as a legacy client's (its `Connected` event),
    /// `while_legacy` runs, then the network forwards again. Returns the
    /// connect's outcome and the `Connected` info.
    fn connect_late(
        &self,
        receive_buffer_size: usize,
        while_legacy: impl FnOnce() -> TestResult,
    ) -> TestResult<(socket_core::Result<Client>, ClientInfo)> {
        let mut options = ClientOptions::from_config(&self.config).map_err(|e| e.to_string())?;
        options.client_name = Some("late".to_owned());
        options.auto_reconnect = false;
        options.receive_buffer_size = receive_buffer_size;
        self.net.hold();
        let (tx, rx) = mpsc::channel();
        let (transport, event, config) = (self.transport.clone(), self.event.clone(), self.config.clone());
        std::thread::spawn(move || {
            let _ = tx.send(Client::connect_with(transport, event, config, options));
        });
        let connected = self.next_event("the held connection's Connected");
        let legacy = match connected {
            Ok(ServerEvent::Connected(info)) if !info.handshaken => Ok(info),
            Ok(other) => Err(format!("expected Connected of a legacy-served connection, got {other:?}")),
            Err(e) => Err(e),
        };
        let ran = legacy.as_ref().map_err(Clone::clone).and_then(|_| while_legacy());
        self.net.release();
        let outcome = rx.recv_timeout(DEADLINE).map_err(|_| format!("connect did not return within {DEADLINE:?}"))?;
        ran?;
        Ok((outcome, legacy?))
    }
}

fn n_of(m: &SocketMessage) -> Option<u64> {
    m.data.get("n").and_then(|v| v.as_u64())
}

/// The regression test of open item 7: the offline queue and the broadcasts
/// written while the server took the connection for a legacy client's
/// arrive exactly once, in order, before anything sent after `welcome`;
/// the client ends handshaken on both sides, and `stop` sends it `shutdown`.
#[test]
fn late_hello_gets_welcome_and_the_offline_queue_exactly_once() -> TestResult {
    let fx = fixture(71)?;
    fx.broadcast(0..5)?;
    let queued = fx.server.stats().queued;
    if queued != 5 {
        return Err(format!("5 broadcasts without a client: {queued} queued offline"));
    }
    // Live broadcasts while the connection is served as legacy go to it before `welcome`.
    let (outcome, info) = fx.connect_late(1024, || fx.broadcast(5..7))?;
    let client = outcome.map_err(|e| format!("a hello held past hello_grace must still connect: {e}"))?;
    if client.client_id() != Some(info.id.to_string()) {
        return Err(format!("client id {:?}, server id {}", client.client_id(), info.id));
    }
    let clients = fx.server.clients();
    match clients.as_slice() {
        [c] if c.id == info.id && c.handshaken && c.client_name.as_deref() == Some("late") => {}
        other => return Err(format!("the late hello did not upgrade the connection: {other:?}")),
    }
    fx.broadcast(7..8)?;
    let mut got = Vec::new();
    while got.len() < 8 {
        match client.receive(Some(DEADLINE)) {
            Ok(Some(m)) => got.push(n_of(&m).ok_or_else(|| format!("a message without n: {m:?}"))?),
            other => return Err(format!("after {got:?}: {other:?}")),
        }
    }
    if got != (0..8).collect::<Vec<u64>>() {
        return Err(format!("expected 0..8 once each, in order: {got:?}"));
    }
    if client.buffered() != 0 {
        return Err(format!("{} messages more than were broadcast", client.buffered()));
    }
    // One connection: the client never gave it up.
    while let Ok(ev) = fx.events.try_recv() {
        if matches!(ev, ServerEvent::Connected(_) | ServerEvent::Disconnected { .. }) {
            return Err(format!("one connection expected, then {ev:?}"));
        }
    }
    let stats = fx.server.stats();
    if (stats.dropped, stats.replies_dropped) != (0, 0) {
        return Err(format!("nothing may be dropped: {stats:?}"));
    }
    fx.server.stop().map_err(|e| e.to_string())?;
    // A handshaken connection is sent `shutdown` on stop (a legacy one only sees end-of-stream).
    let start = Instant::now();
    while client.state() != ConnectionState::Closed {
        if start.elapsed() > DEADLINE {
            return Err("the client did not close after the server stopped".to_owned());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let reason = client.close_reason().unwrap_or_default();
    if !reason.contains("the server shut down") {
        return Err(format!("no shutdown frame before the end: {reason}"));
    }
    Ok(())
}

/// What the client keeps before `welcome` is bounded by its receive buffer:
/// beyond it the handshake fails as it did before the fix.
#[test]
fn more_messages_before_welcome_than_the_receive_buffer_fail_the_handshake() -> TestResult {
    let fx = fixture(72)?;
    fx.broadcast(0..5)?;
    let (outcome, _) = fx.connect_late(3, || Ok(()))?;
    match outcome {
        Err(e) if e.kind() == ErrorKind::Connection && e.message().contains("did not answer hello with welcome") => {}
        other => return Err(format!("expected the handshake to fail: {:?}", other.map(|c| c.client_id()))),
    }
    fx.server.stop().map_err(|e| e.to_string())
}
