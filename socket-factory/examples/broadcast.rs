//! Broadcast: one server publishes typed messages, every subscriber receives each of them.
//!
//! A wallpaper daemon (the server of event `wallpaper_change`) tells two subscribers (a bar and
//! a notifier) about each new wallpaper. The payload is a plain serde struct; the subscribers
//! read with the blocking iterator `Client::iter`, which ends with the reason once the server
//! shuts down (reconnecting is turned off here, so a shutdown ends the subscription).
//!
//! ```sh
//! cargo run -p socket-factory --features unix --example broadcast
//! ```

use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use socket_factory::{Client, ClientOptions, Config, EventName, ServerEvent, SocketMessage};

type Result<T = (), E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

/// The payload of one `wallpaper_change` message.
#[derive(Debug, Serialize, Deserialize)]
struct Wallpaper {
    path: String,
    monitor: String,
}

const TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> Result {
    let dir = tempfile::tempdir()?; // a private socket directory (the default is /tmp/sockets)
    let mut config = Config::default();
    config.socket.transport = "unix".to_owned();
    config.socket.socket_dir = dir.path().to_owned();
    config.socket.auto_reconnect = false; // a server shutdown ends the subscription
    let registry = socket_factory::default_registry();
    let event = EventName::new("wallpaper_change")?;

    let server = socket_factory::create_server(&registry, &config, &event)?;
    let events = server.events();
    server.start()?;
    println!("server: listening on {}", server.address().unwrap_or_default());

    // Two subscribers, each on its own thread, each reading until the server shuts down.
    let (done_tx, done_rx) = mpsc::channel();
    for name in ["bar", "notifier"] {
        let transport = socket_factory::transport(&registry, "unix")?;
        let mut options = ClientOptions::from_config(&config)?;
        options.client_name = Some(name.to_owned());
        let client = Client::connect_with(transport, event.clone(), config.clone(), options)?;
        let done_tx = done_tx.clone();
        std::thread::spawn(move || {
            let mut received = 0;
            for message in client.iter() {
                match message {
                    Ok(message) => match message.deserialize_data::<Wallpaper>() {
                        Ok(w) => {
                            received += 1;
                            println!("{name}: wallpaper of {} is now {}", w.monitor, w.path);
                        }
                        Err(e) => println!("{name}: unexpected payload: {e}"),
                    },
                    Err(end) => println!("{name}: subscription ended: {end}"),
                }
            }
            let _ = done_tx.send((name, received));
        });
    }

    // Wait until the server has seen both subscribers (a deadline, not a sleep).
    let deadline = Instant::now() + TIMEOUT;
    let mut connected = 0;
    while connected < 2 {
        match next_event(&events, deadline) {
            Some(ServerEvent::Connected(info)) => {
                connected += 1;
                println!("server: {} subscribed as {}", info.client_name.unwrap_or_default(), info.id);
            }
            Some(_) => {}
            None => return Err("the subscribers did not connect in time".into()),
        }
    }

    for (path, monitor) in
        [("~/walls/dunes.png", "DP-1"), ("~/walls/fjord.jpg", "DP-1"), ("~/walls/moss.png", "HDMI-A-1")]
    {
        let wallpaper = Wallpaper { path: path.to_owned(), monitor: monitor.to_owned() };
        server.broadcast(&SocketMessage::from_serialize(event.clone(), &wallpaper)?)?;
        println!("server: broadcast {path} for {monitor}");
    }
    // `stop` flushes what is queued, sends `shutdown` and closes every connection.
    server.stop()?;
    println!("server: stopped");

    drop(done_tx);
    for _ in 0..2 {
        let (name, received) = done_rx.recv_timeout(TIMEOUT).map_err(|_| "a subscriber did not finish in time")?;
        if received != 3 {
            return Err(format!("{name} received {received} messages, expected 3").into());
        }
    }
    println!("both subscribers received all 3 wallpapers");
    Ok(())
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
