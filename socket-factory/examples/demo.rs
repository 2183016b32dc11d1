//! The product demo, run by `cargo xtask demo`.
//!
//! One process plays every part over Unix domain sockets in a private temporary directory:
//!
//! 1. a server with a connection limit of 3;
//! 2. three clients connect;
//! 3. a broadcast reaches all three;
//! 4. a unicast reaches one client only;
//! 5. a fourth client is rejected by the connection limit, with its error;
//! 6. every client leaves, broadcasts wait in the offline queue, and a late joiner receives them;
//! 7. a receive-only client (server with `allow_client_send = false`) is refused when it sends;
//! 8. the server restarts and its clients reconnect by themselves.
//!
//! Every step waits for what it expects with a deadline (never a sleep) and checks it; any failed
//! expectation ends the demo with a message on stderr and exit code 1.
//!
//! ```sh
//! cargo run -p socket-factory --features unix --example demo
//! ```

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use async_io::Timer;
use futures_lite::future;
use socket_factory::{
    Client, ClientId, ClientOptions, Config, ConnectionState, Data, ErrorKind, EventName, ServerEvent, SocketMessage,
    TransportRegistry,
};

/// How long any single expectation may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the whole demo may take before the watchdog fails it.
const WATCHDOG: Duration = Duration::from_secs(60);

type DemoResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> ExitCode {
    // The demo runs on its own thread under a watchdog: it fails, it never hangs.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(run());
    });
    let outcome = match rx.recv_timeout(WATCHDOG) {
        Ok(outcome) => outcome,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!("the demo did not finish within {WATCHDOG:?}").into()),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err("the demo thread panicked".into()),
    };
    match outcome {
        Ok(()) => {
            println!("\ndemo finished: every step behaved as expected");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\ndemo FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> DemoResult {
    let tmp = tempfile::tempdir()?;
    let mut config = Config::default();
    config.socket.transport = "unix".to_owned();
    config.socket.socket_dir = tmp.path().join("sockets");
    config.socket.unix.max_connections = 3;
    let registry = socket_factory::default_registry();
    let event = EventName::new("demo_events")?;
    println!("socket demo: Unix domain sockets in a temporary directory, event {event:?}");

    step(1, "start a server (at most 3 clients)");
    let server = socket_factory::create_server(&registry, &config, &event)?;
    let events = server.events();
    server.start()?;
    println!("   listening on {}", server.address().unwrap_or_default());

    step(2, "three clients connect");
    let alice = connect(&registry, &config, &event, "alice")?;
    let bob = connect(&registry, &config, &event, "bob")?;
    let carol = connect(&registry, &config, &event, "carol")?;
    let listed: Vec<String> = server
        .clients()
        .iter()
        .map(|info| format!("{} ({})", info.id, info.client_name.as_deref().unwrap_or("no name")))
        .collect();
    println!("   the server lists {}", listed.join(", "));
    check(server.client_count() == 3, || format!("the server counts {} clients, not 3", server.client_count()))?;

    step(3, "broadcast to everyone");
    server.broadcast(&message(&event, "hello everyone"))?;
    for (name, client) in [("alice", &alice), ("bob", &bob), ("carol", &carol)] {
        expect_text(client, name, "hello everyone")?;
    }

    step(4, "unicast to bob only");
    let bob_id: ClientId = bob.client_id().ok_or("bob has no client id")?.parse()?;
    server.send_to(bob_id, &message(&event, "a secret for bob"))?;
    // A broadcast right after it shows who got what: per connection, order is kept.
    server.broadcast(&message(&event, "end of step 4"))?;
    expect_text(&bob, "bob", "a secret for bob")?;
    expect_text(&bob, "bob", "end of step 4")?;
    expect_text(&alice, "alice", "end of step 4")?;
    expect_text(&carol, "carol", "end of step 4")?;
    println!("   alice and carol got only the broadcast that followed it");

    step(5, "a fourth client is over the connection limit");
    match connect(&registry, &config, &event, "dave") {
        Ok(_) => return Err("dave was accepted although the limit is 3".into()),
        Err(e) => match e.downcast_ref::<socket_factory::Error>() {
            Some(err) if err.kind() == ErrorKind::MaxConnections => {
                println!("   dave was rejected: {err}");
            }
            _ => return Err(format!("dave failed with an unexpected error: {e}").into()),
        },
    }

    step(6, "everyone leaves; broadcasts wait in the offline queue for a late joiner");
    let mut leaving = Vec::new();
    for client in [&alice, &bob, &carol] {
        leaving.push(client.client_id().ok_or("a client has no id")?.parse()?);
        client.disconnect();
    }
    wait_for_departures(&events, &leaving)?;
    check(server.client_count() == 0, || format!("{} clients still connected", server.client_count()))?;
    println!("   no client connected");
    for n in 1..=3 {
        server.broadcast(&message(&event, &format!("queued {n}")))?;
    }
    println!("   {} broadcasts queued", server.queue_len());
    check(server.queue_len() == 3, || format!("{} messages queued, not 3", server.queue_len()))?;
    let erin = connect(&registry, &config, &event, "erin")?;
    for n in 1..=3 {
        expect_text(&erin, "erin", &format!("queued {n}"))?;
    }
    check(server.queue_len() == 0, || format!("the queue still holds {} messages", server.queue_len()))?;
    println!("   the queue is now empty");
    drop(events); // nobody reads the server's events from here on

    step(7, "a receive-only client: a server with allow_client_send = false");
    let mut read_only = config.clone();
    read_only.socket.allow_client_send = false;
    let ro_event = EventName::new("demo_read_only")?;
    let ro_server = socket_factory::create_server(&registry, &read_only, &ro_event)?;
    ro_server.start()?;
    let viewer = connect(&registry, &read_only, &ro_event, "viewer")?;
    println!("   the server's welcome told viewer whether it may send: {}", viewer.can_send());
    check(!viewer.can_send(), || "the viewer was told it may send".to_owned())?;
    match viewer.send(&message(&ro_event, "may I?")) {
        Ok(()) => return Err("the receive-only client could send".into()),
        Err(e) if e.kind() == ErrorKind::SendNotAllowed => println!("   viewer's send was refused: {e}"),
        Err(e) => return Err(format!("the viewer's send failed with an unexpected error: {e}").into()),
    }
    ro_server.broadcast(&message(&ro_event, "read-only clients still receive"))?;
    expect_text(&viewer, "viewer", "read-only clients still receive")?;
    viewer.disconnect();
    ro_server.stop()?;

    step(8, "the server restarts; its clients reconnect by themselves");
    let frank = connect(&registry, &config, &event, "frank")?;
    let clients = [("erin", &erin), ("frank", &frank)];
    let watches: Vec<_> = clients.iter().map(|(_, c)| c.state_changes()).collect();
    server.stop()?;
    println!("   server stopped");
    for ((name, _), states) in clients.iter().zip(&watches) {
        wait_for_state(states, name, ConnectionState::Reconnecting)?;
    }
    server.start()?;
    println!("   server started again on {}", server.address().unwrap_or_default());
    for ((name, _), states) in clients.iter().zip(&watches) {
        wait_for_state(states, name, ConnectionState::Connected)?;
    }
    let ids: Vec<String> = server.clients().iter().map(|info| info.id.to_string()).collect();
    println!("   the server lists {}: new ids, an id is never reused", ids.join(", "));
    server.broadcast(&message(&event, "welcome back"))?;
    for (name, client) in clients {
        expect_text(client, name, "welcome back")?;
    }

    let stats = server.stats();
    println!("\nserver counters: {} broadcasts queued, {} connection rejected", stats.queued, stats.rejected);
    erin.disconnect();
    frank.disconnect();
    server.stop()?;
    Ok(())
}

fn step(n: u32, title: &str) {
    println!("\n{n}. {title}");
}

/// A client named `name` (the server shows the name in its client list).
fn connect(registry: &TransportRegistry, config: &Config, event: &EventName, name: &str) -> DemoResult<Client> {
    let transport = socket_factory::transport(registry, &config.socket.transport)?;
    let mut options = ClientOptions::from_config(config)?;
    options.client_name = Some(name.to_owned());
    let client = Client::connect_with(transport, event.clone(), config.clone(), options)?;
    println!("   {name} connected as {}", client.client_id().unwrap_or_default());
    Ok(client)
}

fn message(event: &EventName, text: &str) -> SocketMessage {
    SocketMessage::data(event.clone(), Data::new().with("text", text))
}

/// Waits for the next message of `client` and checks its text.
fn expect_text(client: &Client, name: &str, text: &str) -> DemoResult {
    let message = client
        .receive(Some(STEP_TIMEOUT))?
        .ok_or_else(|| format!("{name} received nothing within {STEP_TIMEOUT:?} (expected {text:?})"))?;
    let got = message.data.get_str("text").unwrap_or_default();
    check(got == text, || format!("{name} received {got:?}, expected {text:?}"))?;
    println!("   {name} received {got:?}");
    Ok(())
}

fn check(ok: bool, what: impl FnOnce() -> String) -> DemoResult {
    if ok {
        Ok(())
    } else {
        Err(what().into())
    }
}

/// Runs `fut` until `deadline`; `None` when the deadline passed first.
fn until<T>(deadline: Instant, fut: impl Future<Output = T>) -> Option<T> {
    socket_factory::runtime::block_on(future::or(async { Some(fut.await) }, async {
        Timer::at(deadline).await;
        None
    }))
}

/// Waits, on the server's events, until every client of `ids` has disconnected.
fn wait_for_departures(events: &async_channel::Receiver<ServerEvent>, ids: &[ClientId]) -> DemoResult {
    let deadline = Instant::now() + STEP_TIMEOUT;
    let mut gone = Vec::new();
    while gone.len() < ids.len() {
        match until(deadline, events.recv()) {
            Some(Ok(ServerEvent::Disconnected { id, .. })) if ids.contains(&id) => gone.push(id),
            Some(Ok(_)) => {}
            Some(Err(_)) => return Err("the server's event stream ended".into()),
            None => return Err(timed_out(format!("{} clients to leave", ids.len()), format!("{} left", gone.len()))),
        }
    }
    gone.sort();
    let gone: Vec<String> = gone.iter().map(ClientId::to_string).collect();
    println!("   the server saw {} leave", gone.join(", "));
    Ok(())
}

/// Waits until `states` reports `wanted`.
fn wait_for_state(
    states: &async_channel::Receiver<ConnectionState>,
    name: &str,
    wanted: ConnectionState,
) -> DemoResult {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        match until(deadline, states.recv()) {
            Some(Ok(state)) if state == wanted => {
                println!("   {name} is {state:?}");
                return Ok(());
            }
            Some(Ok(_)) => {}
            Some(Err(_)) => return Err(format!("{name} closed instead of becoming {wanted:?}").into()),
            None => return Err(timed_out(format!("{name} to become {wanted:?}"), "another state")),
        }
    }
}

fn timed_out(what: String, got: impl Display) -> Box<dyn std::error::Error + Send + Sync> {
    format!("waited {STEP_TIMEOUT:?} for {what}, still {got}").into()
}
