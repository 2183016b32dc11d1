//! A small broker: a relay server, short-lived producers, long-lived subscribers.
//!
//! With `socket.relay = true` the server re-broadcasts every message a client sends (data, error
//! and application control) to the *other* clients, or keeps it in the offline queue while nobody
//! else is connected. Producers then need no server of their own: a script connects, sends one
//! message and leaves (`socketctl send wallpaper_progress --data '{"percent": 50}'` does exactly
//! that), and every subscriber gets it.
//!
//! Here a wallpaper pipeline reports its progress in three steps, each from a fresh producer
//! process (a thread here), to a desktop notifier and a terminal progress viewer.
//!
//! ```sh
//! cargo run -p socket-factory --features unix --example relay_broker
//! ```

use std::time::Duration;

use socket_factory::{Client, ClientOptions, Config, Data, EventName, MessageType, SocketMessage, TransportRegistry};

type Result<T = (), E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

const TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> Result {
    let dir = tempfile::tempdir()?; // a private socket directory (the default is /tmp/sockets)
    let mut config = Config::default();
    config.socket.transport = "unix".to_owned();
    config.socket.socket_dir = dir.path().to_owned();
    config.socket.relay = true;
    let registry = socket_factory::default_registry();
    let event = EventName::new("wallpaper_progress")?;

    // The broker: a relay server that publishes nothing itself.
    let broker = socket_factory::create_server(&registry, &config, &event)?;
    broker.start()?;
    println!("broker: relaying on {}", broker.address().unwrap_or_default());

    // Long-lived subscribers.
    let notifier = connect(&registry, &config, &event, "notifier")?;
    let viewer = connect(&registry, &config, &event, "progress-viewer")?;

    // Short-lived producers: connect, send one message, disconnect. They run at the same time.
    let producers: Vec<_> = [("resize", 33), ("blur", 66), ("apply", 100)]
        .into_iter()
        .map(|(stage, percent)| {
            let (registry, config, event) = (registry.clone(), config.clone(), event.clone());
            std::thread::spawn(move || -> Result {
                let producer = connect(&registry, &config, &event, &format!("producer-{stage}"))?;
                let data = Data::new().with("stage", stage).with("percent", percent);
                producer.send(&SocketMessage::new(event, MessageType::Data, data))?;
                producer.disconnect();
                println!("producer-{stage}: sent {percent}% and left");
                Ok(())
            })
        })
        .collect();
    for producer in producers {
        producer.join().map_err(|_| "a producer panicked")??;
    }

    // Each subscriber receives the three reports (producers raced, so in any order).
    for (name, subscriber) in [("notifier", &notifier), ("progress-viewer", &viewer)] {
        let mut percents = Vec::new();
        for _ in 0..3 {
            let message = subscriber
                .receive(Some(TIMEOUT))?
                .ok_or_else(|| format!("{name} received only {} of 3 reports", percents.len()))?;
            let stage = message.data.get_str("stage").unwrap_or("?");
            let percent = message.data.get("percent").and_then(|v| v.as_u64()).unwrap_or(0);
            println!("{name}: {stage} done, {percent}%");
            percents.push(percent);
        }
        percents.sort_unstable();
        if percents != [33, 66, 100] {
            return Err(format!("{name} received {percents:?}, expected 33, 66 and 100").into());
        }
    }

    let stats = broker.stats();
    println!("broker: relayed {} messages from producers", stats.messages_received);
    notifier.disconnect();
    viewer.disconnect();
    broker.stop()?;
    Ok(())
}

/// A client that introduces itself as `name`.
fn connect(registry: &TransportRegistry, config: &Config, event: &EventName, name: &str) -> Result<Client> {
    let transport = socket_factory::transport(registry, &config.socket.transport)?;
    let mut options = ClientOptions::from_config(config)?;
    options.client_name = Some(name.to_owned());
    let client = Client::connect_with(transport, event.clone(), config.clone(), options)?;
    println!("{name}: connected as {}", client.client_id().unwrap_or_default());
    Ok(client)
}
