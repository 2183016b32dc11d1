//! Unicast over TCP: the server answers each client privately, by client id.
//!
//! Two clients ask a small "theme" service for a colour scheme. The server learns who is
//! connected from its event stream (`Server::events`), reads each request
//! (`ServerEvent::Message` carries the sender's id) and replies to that client only with
//! `Server::send_to`. Unicast to an id that is not connected is an error, never queued.
//!
//! The server listens on 127.0.0.1 at an explicit port chosen by the kernel (so two runs never
//! collide); without `socket.tcp.port`, server and clients would find each other in the port range
//! `9000..=9100` from the event name.
//!
//! ```sh
//! cargo run -p socket-factory --features tcp --example unicast
//! ```

use std::time::{Duration, Instant};

use socket_factory::{Client, ClientId, ClientOptions, Config, Data, ErrorKind, EventName, ServerEvent, SocketMessage};

type Result<T = (), E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

const TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> Result {
    let mut config = Config::default();
    config.socket.transport = "tcp".to_owned();
    config.socket.tcp.port = Some(free_port()?);
    let registry = socket_factory::default_registry();
    let event = EventName::new("color-scheme-update")?;

    let server = socket_factory::create_server(&registry, &config, &event)?;
    let events = server.events();
    server.start()?;
    println!("server: listening on {}", server.address().unwrap_or_default());

    // Two named clients; each asks for the scheme of its own application.
    let mut clients = Vec::new();
    for (name, app) in [("terminal", "foot"), ("editor", "helix")] {
        let transport = socket_factory::transport(&registry, "tcp")?;
        let mut options = ClientOptions::from_config(&config)?;
        options.client_name = Some(name.to_owned());
        let client = Client::connect_with(transport, event.clone(), config.clone(), options)?;
        println!("{name}: connected as {}", client.client_id().unwrap_or_default());
        client.send(&SocketMessage::data(event.clone(), Data::new().with("app", app)))?;
        clients.push((name, client));
    }

    // The server answers each request to its sender only.
    let deadline = Instant::now() + TIMEOUT;
    let mut answered = 0;
    while answered < clients.len() {
        match next_event(&events, deadline).ok_or("the requests did not arrive in time")? {
            ServerEvent::Connected(info) => {
                println!("server: {} connected from {}", info.id, info.address);
            }
            ServerEvent::Message { from, message } => {
                let app = message.data.get_str("app").unwrap_or("unknown").to_owned();
                let scheme = if app == "foot" { "gruvbox-dark" } else { "solarized-light" };
                println!("server: {from} asks for the scheme of {app}; answering {from} only");
                let reply = Data::new().with("app", app).with("scheme", scheme);
                server.send_to(from, &SocketMessage::data(event.clone(), reply))?;
                answered += 1;
            }
            _ => {}
        }
    }

    for (name, client) in &clients {
        let reply = client.receive(Some(TIMEOUT))?.ok_or_else(|| format!("{name} got no reply"))?;
        let (app, scheme) = (reply.data.get_str("app"), reply.data.get_str("scheme"));
        println!("{name}: received scheme {} for {}", scheme.unwrap_or("?"), app.unwrap_or("?"));
        let expected = if *name == "terminal" { "foot" } else { "helix" };
        if app != Some(expected) {
            return Err(format!("{name} received the reply meant for {app:?}").into());
        }
    }

    // Nobody has id c99: an error, not a message queued for later.
    match server.send_to(ClientId(99), &SocketMessage::data(event.clone(), Data::new())) {
        Err(e) if e.kind() == ErrorKind::Validation => println!("server: unicast to c99 failed: {e}"),
        other => return Err(format!("unicast to an unknown id should fail, got {other:?}").into()),
    }

    for (_, client) in &clients {
        client.disconnect();
    }
    server.stop()?;
    println!("server: stopped");
    Ok(())
}

/// A port on 127.0.0.1 that is free right now (the kernel's pick for port 0).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The next server event, or `None` once `deadline` has passed (or the server is gone).
fn next_event(events: &async_channel::Receiver<ServerEvent>, deadline: Instant) -> Option<ServerEvent> {
    let next = async { events.recv().await.ok() };
    let timeout = async {
        async_io::Timer::at(deadline).await;
        None
    };
    socket_factory::runtime::block_on(futures_lite::future::or(next, timeout))
}
