//! `Server::send_to` to an idle connection writes from the caller's thread
//! (`socket-core/src/server/outlet.rs`), beside the connection's writer task.
//! These tests drive both writers into one connection at once and check what
//! the client relies on: every frame arrives whole, once, and in the order
//! the server application sent it.

use std::sync::atomic::{AtomicU64, Ordering};
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

/// Receives messages `from..to` and checks they come in that order with the right padding.
fn receive_in_order(client: &Client, from: u64, to: u64, pad: impl Fn(u64) -> usize) {
    for want in from..to {
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
        receive_in_order(&s.client, 0, N, pad);
    });
    assert_eq!(s.client.receive(Some(Duration::ZERO)).expect("client open"), None, "a message arrived twice");
    // Every frame is counted once, whichever writer sent it (plus `welcome`).
    wait_until("messages_sent counts every frame", || s.server.stats().messages_sent == N + 1);
    assert_eq!(s.server.stats().slow_consumers, 0);
}

/// Each round starts on an idle connection (the client has everything sent
/// so far), so its first `send_to` is written directly; its 300-byte frame
/// does not fit the 64-byte pipe, so the writer task must finish it, and the
/// broadcast and reply sent right behind it queue after that rest.
#[test]
fn a_partial_direct_write_is_finished_before_what_is_queued_behind_it() {
    const ROUNDS: u64 = 300;
    const PER_ROUND: u64 = 3;
    let pad = |n: u64| match n % PER_ROUND {
        0 => 300,
        1 => 20,
        _ => 150,
    };
    let s = setup(64);
    let received = AtomicU64::new(0);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for round in 0..ROUNDS {
                let first = round * PER_ROUND;
                wait_until("the client has every earlier message", || received.load(Ordering::Acquire) == first);
                s.server.send_to(s.id, &msg(&s.event, first, pad(first))).expect("send_to");
                s.server.broadcast(&msg(&s.event, first + 1, pad(first + 1))).expect("broadcast");
                s.server.send_to(s.id, &msg(&s.event, first + 2, pad(first + 2))).expect("send_to");
            }
        });
        for want in 0..ROUNDS * PER_ROUND {
            receive_in_order(&s.client, want, want + 1, pad);
            received.store(want + 1, Ordering::Release);
        }
    });
    assert_eq!(s.client.receive(Some(Duration::ZERO)).expect("client open"), None, "a message arrived twice");
    wait_until("messages_sent counts every frame", || s.server.stats().messages_sent == ROUNDS * PER_ROUND + 1);
}

/// Request and reply, one at a time: the case the direct write is for. Each
/// reply goes out while the connection is idle; it is larger than the pipe,
/// so only the writer task, woken for the rest, can finish it.
#[test]
fn replies_to_an_idle_connection_arrive_in_order() {
    const N: u64 = 500;
    let s = setup(64);
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
                s.server.send_to(from, &msg(&s.event, n, 300)).expect("reply");
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
