//! `Server::send_to` to an idle connection writes from the caller's thread
//! (`socket-core/src/server/outlet.rs`), beside the connection's writer task.
//! These tests drive both writers into one connection at once and check what
//! the client relies on: every frame arrives whole, once, and in the order
//! the server application sent it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::Receiver;
use futures_lite::future;
use socket_core::runtime::block_on;
use socket_core::{
    Client, ClientId, Config, Data, EventName, Server, ServerEvent, ServerOptions, SocketMessage, Transport,
};
use socket_tests::conformance::unique_name;
use socket_tests::memory::{self, MemoryTransport};

use crate::suite::memory_config;

/// Watchdog for every wait in this file.
const DEADLINE: Duration = Duration::from_secs(20);

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "{what}: not reached within {DEADLINE:?}");
        std::thread::yield_now();
    }
}

/// The next server event, failing the test after [`DEADLINE`].
fn next_event(events: &Receiver<ServerEvent>) -> ServerEvent {
    block_on(future::or(async { events.recv().await.expect("server events open") }, async {
        async_io::Timer::after(DEADLINE).await;
        panic!("no server event within {DEADLINE:?}")
    }))
}

struct Setup {
    server: Server,
    client: Client,
    id: ClientId,
    event: EventName,
}

/// A server and one connected client over memory pipes of `pipe` bytes.
fn setup(pipe: i64) -> Setup {
    let transport: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
    let mut config: Config = memory_config();
    memory::set_option(&mut config, "pipe_capacity", pipe);
    let event = EventName::new(unique_name("direct")).expect("valid event name");
    let mut options = ServerOptions::from_config(&config, transport.as_ref()).expect("server options");
    // Room for everything the test sends: the slow-consumer policy is not under test here.
    options.outbound_queue_size = 100_000;
    options.outbound_queue_bytes = 1 << 30;
    let server =
        Server::with_options(transport.clone(), event.clone(), config.clone(), options).expect("server created");
    server.start().expect("server started");
    let events = server.events();
    let client = Client::connect(transport, event.clone(), &config).expect("client connected");
    let id = loop {
        if let ServerEvent::Connected(info) = next_event(&events) {
            break info.id;
        }
    };
    Setup { server, client, id, event }
}

fn msg(event: &EventName, n: u64, pad: usize) -> SocketMessage {
    SocketMessage::data(event.clone(), Data::new().with("n", n).with("pad", "x".repeat(pad)))
}

/// Receives `count` messages and checks they are 0, 1, 2, ... with the right padding.
fn receive_in_order(client: &Client, count: u64, pad: impl Fn(u64) -> usize) {
    for want in 0..count {
        let m = client
            .receive(Some(DEADLINE))
            .expect("client open")
            .unwrap_or_else(|| panic!("message {want} not received within {DEADLINE:?}"));
        let n = m.data.get("n").and_then(|v| v.as_u64());
        assert_eq!(n, Some(want), "out of order or lost");
        let len = m.data.get("pad").and_then(|v| v.as_str()).map(str::len);
        assert_eq!(len, Some(pad(want)), "message {want} arrived damaged");
    }
}

/// Replies (`send_to`, written directly when the connection is idle) and
/// broadcasts (queued) interleave on one connection through a 64-byte pipe,
/// so most direct writes are partial and leave their rest to the writer task.
#[test]
fn replies_and_broadcasts_stay_whole_and_in_order_through_a_small_pipe() {
    const N: u64 = 3_000;
    let pad = |n: u64| (n as usize * 37) % 300;
    let s = setup(64);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for n in 0..N {
                let m = msg(&s.event, n, pad(n));
                if n % 3 == 0 {
                    s.server.broadcast(&m).expect("broadcast");
                } else {
                    s.server.send_to(s.id, &m).expect("send_to");
                }
            }
        });
        receive_in_order(&s.client, N, pad);
    });
    assert_eq!(s.client.receive(Some(Duration::ZERO)).expect("client open"), None, "a message arrived twice");
    // Every frame is counted once, whichever writer sent it (plus `welcome`).
    wait_until("messages_sent counts every frame", || s.server.stats().messages_sent == N + 1);
    assert_eq!(s.server.stats().slow_consumers, 0);
}

/// Request and reply, one at a time: the case the direct write is for. Each
/// reply goes out while the connection is idle; all arrive, in order.
#[test]
fn replies_to_an_idle_connection_arrive_in_order() {
    const N: u64 = 500;
    let s = setup(64 * 1024);
    let events = s.server.events();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for _ in 0..N {
                let (from, request) = loop {
                    if let ServerEvent::Message { from, message } = next_event(&events) {
                        break (from, message);
                    }
                };
                let n = request.data.get("n").and_then(|v| v.as_u64()).expect("request number");
                s.server.send_to(from, &msg(&s.event, n, 10)).expect("reply");
            }
        });
        for n in 0..N {
            s.client.send(&msg(&s.event, n, 0)).expect("request sent");
            let reply = s.client.receive(Some(DEADLINE)).expect("client open").expect("reply within the deadline");
            assert_eq!(reply.data.get("n").and_then(|v| v.as_u64()), Some(n));
        }
    });
    wait_until("messages_sent counts every reply", || s.server.stats().messages_sent == N + 1);
}
