//! A status-bar feeder and a waybar-style listener.
//!
//! The feeder is the server of event `system_status`: every `INTERVAL` it reads the load average
//! and memory use (from `/proc` on Linux) and broadcasts them. With `retain_last`, a bar that
//! (re)starts gets the latest status at once instead of waiting for the next tick.
//!
//! The listener is what a bar module runs: it starts *before* the feeder and waits for it
//! (`wait_for_server`), reconnects by itself, and prints one JSON object per line in the shape
//! waybar's `custom` modules read with `"return-type": "json"`:
//!
//! ```text
//! {"text":"load 0.42 · mem 37%","tooltip":"load average 0.42 0.40 0.38\nmemory 5.9 of 15.6 GiB used","class":"normal","percentage":37}
//! ```
//!
//! Without writing Rust, `socketctl listen system_status` prints each message as a JSON line
//! too (see docs/cli.md for a waybar configuration).
//!
//! ```sh
//! cargo run -p socket-factory --features unix --example status_bar_feeder -- [INTERVAL_MS] [UPDATES]
//! ```

use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use socket_factory::{Client, ClientOptions, Config, EventName, SocketMessage};

type Result<T = (), E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

/// What the feeder publishes: the `data` map of each `system_status` message.
#[derive(Debug, Serialize, Deserialize)]
struct Status {
    load: [f64; 3],
    mem_used_kib: u64,
    mem_total_kib: u64,
}

/// One line for waybar's `custom` module.
#[derive(Debug, Serialize)]
struct WaybarLine {
    text: String,
    tooltip: String,
    class: &'static str,
    percentage: u64,
}

fn main() -> Result {
    let mut args = std::env::args().skip(1);
    let interval = Duration::from_millis(args.next().map(|a| a.parse()).transpose()?.unwrap_or(200));
    let updates: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5);

    let dir = tempfile::tempdir()?; // a private socket directory (the default is /tmp/sockets)
    let mut config = Config::default();
    config.socket.transport = "unix".to_owned();
    config.socket.socket_dir = dir.path().to_owned();
    config.socket.retain_last = true;
    let registry = socket_factory::default_registry();
    let event = EventName::new("system_status")?;

    // The listener starts first and waits (at most 10 s) for the feeder to appear.
    let transport = socket_factory::transport(&registry, "unix")?;
    let mut options = ClientOptions::from_config(&config)?;
    options.wait_for_server = true;
    options.wait_timeout = Some(Duration::from_secs(10));
    options.client_name = Some("waybar".to_owned());
    let (listener_config, listener_event) = (config.clone(), event.clone());
    let (lines_tx, lines_rx) = mpsc::channel();
    let listener = std::thread::spawn(move || -> Result {
        eprintln!("listener: waiting for the feeder of {listener_event}");
        let client = Client::connect_with(transport, listener_event, listener_config, options)?;
        eprintln!("listener: connected");
        for message in client.iter().take(updates) {
            let status: Status = message?.deserialize_data()?;
            let line = serde_json::to_string(&waybar_line(&status))?;
            println!("{line}");
            let _ = lines_tx.send(line);
        }
        Ok(())
    });

    // The feeder: one broadcast per tick.
    let feeder = socket_factory::create_server(&registry, &config, &event)?;
    feeder.start()?;
    eprintln!("feeder: publishing every {interval:?} on {}", feeder.address().unwrap_or_default());
    for _ in 0..updates {
        feeder.broadcast(&SocketMessage::from_serialize(event.clone(), &read_status())?)?;
        std::thread::sleep(interval); // pacing the publisher, not synchronisation
    }

    // Every update reached the bar: either live or, before it connected, from the offline queue.
    for n in 0..updates {
        lines_rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| format!("the listener printed {n} of {updates} lines"))?;
    }
    listener.join().map_err(|_| "the listener panicked")??;
    feeder.stop()?;
    eprintln!("feeder: stopped after {updates} updates");
    Ok(())
}

fn waybar_line(s: &Status) -> WaybarLine {
    let percentage = (s.mem_used_kib * 100).checked_div(s.mem_total_kib).unwrap_or(0);
    let gib = |kib: u64| kib as f64 / (1024.0 * 1024.0);
    WaybarLine {
        text: format!("load {:.2} · mem {percentage}%", s.load[0]),
        tooltip: format!(
            "load average {:.2} {:.2} {:.2}\nmemory {:.1} of {:.1} GiB used",
            s.load[0],
            s.load[1],
            s.load[2],
            gib(s.mem_used_kib),
            gib(s.mem_total_kib)
        ),
        class: match percentage {
            0..=69 => "normal",
            70..=89 => "warning",
            _ => "critical",
        },
        percentage,
    }
}

/// The load average and memory use from `/proc` (zeros where it is not available).
fn read_status() -> Status {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut load = [0.0; 3];
    for (slot, field) in load.iter_mut().zip(loadavg.split_whitespace()) {
        *slot = field.parse().unwrap_or(0.0);
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = |key: &str| {
        meminfo
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (total, available) = (kib("MemTotal"), kib("MemAvailable"));
    Status { load, mem_used_kib: total.saturating_sub(available), mem_total_kib: total }
}
