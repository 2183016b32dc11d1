//! `socketctl listen EVENT`: print every message as one JSON line with the five wire keys.

use std::sync::Arc;
use std::time::{Duration, Instant};

use socket_core::config::Config;
use socket_core::control::Control;
use socket_core::{Client, ErrorKind, EventName, Transport};

use crate::args::{GlobalArgs, ListenArgs};
use crate::exit::{describe, CliError, Exit};
use crate::json::message_to_json;
use crate::output::print_json;
use crate::settings::{load_config, Overrides};
use crate::transports::{connect_client, event_name, transport_for};

/// Pause between connection attempts while `--wait`ing for a server.
const WAIT_RETRY: Duration = Duration::from_millis(100);

/// Runs `listen`.
///
/// # Errors
///
/// Exit 2 (invalid event name or configuration), 3 (no server, without `--wait`), 4 (the
/// server is full), 5 (`--timeout` reached), 1 (connection lost with `--no-reconnect`, or
/// stdout closed).
pub(crate) fn run(global: &GlobalArgs, args: &ListenArgs) -> Result<Exit, CliError> {
    let started = Instant::now();
    let event = event_name(&args.event)?;
    let mut o = Overrides::new();
    if args.no_reconnect {
        o.set("socket.auto_reconnect", false);
    }
    if args.wait {
        o.set("socket.wait_for_server", true);
    }
    let config = load_config(global, &o)?;
    let transport = transport_for(&config)?;
    // `Secs` is at most a year, so the deadline always exists; `None` would mean "no deadline".
    let deadline = args.timeout.and_then(|t| t.after(started));
    let timed_out = |printed: u64| {
        let wanted = args.count.map_or_else(String::new, |c| format!(" of {c}"));
        CliError::new(
            Exit::Timeout,
            format!(
                "timed out after {} s with {printed}{wanted} messages received",
                args.timeout.map_or(0.0, |t| t.value)
            ),
        )
    };

    let client = connect(transport, &event, &config, args.wait, deadline).map_err(|e| match e {
        Waited::TimedOut => timed_out(0),
        Waited::Failed(e) => e,
    })?;

    let mut printed = 0u64;
    let mut saw_shutdown = false;
    let result = loop {
        if args.count.is_some_and(|count| printed >= count) {
            break Ok(Exit::Ok);
        }
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if remaining == Some(Duration::ZERO) {
            break Err(timed_out(printed));
        }
        match client.receive(remaining) {
            Ok(Some(msg)) => {
                if let Some(control) = Control::parse(&msg) {
                    // Protocol control is never printed; note a shutdown for --no-reconnect.
                    saw_shutdown |= matches!(control, Ok(Control::Shutdown { .. }));
                    continue;
                }
                if let Err(e) = print_json(&message_to_json(&msg)) {
                    break Err(e);
                }
                printed += 1;
            }
            Ok(None) => break Err(timed_out(printed)),
            // The client closed for good. With --no-reconnect a server shutdown ends listen
            // with 0, a lost connection with 1; giving up reconnecting (reconnect_max_retries)
            // is always 1.
            Err(e) if args.no_reconnect && (saw_shutdown || is_shutdown(&e)) => break Ok(Exit::Ok),
            Err(e) => break Err(lost(&e)),
        }
    };
    client.disconnect();
    result
}

/// The error for a client that closed without a server shutdown.
fn lost(err: &socket_core::Error) -> CliError {
    match err.kind() {
        ErrorKind::Closed | ErrorKind::Connection => CliError::runtime(format!("connection lost: {}", describe(err))),
        _ => CliError::from_core(err, crate::exit::Phase::Other),
    }
}

/// True when the client closed because the server sent `shutdown`.
///
/// The error kind (`Closed`) does not say whether the server shut down cleanly or the
/// connection was lost, so this matches the engine's message: it names the shutdown.
fn is_shutdown(err: &socket_core::Error) -> bool {
    let text = err.to_string();
    err.kind() == ErrorKind::Closed && (text.contains("shutdown") || text.contains("shut down"))
}

/// Why connecting gave up.
enum Waited {
    /// The `--timeout` deadline passed first.
    TimedOut,
    /// A connection error, already mapped to its exit code.
    Failed(CliError),
}

/// Connects, bounded by `deadline`; with `wait`, retries while there is no server.
fn connect(
    transport: Arc<dyn Transport>,
    event: &EventName,
    config: &Config,
    wait: bool,
    deadline: Option<Instant>,
) -> Result<Client, Waited> {
    socket_core::runtime::block_on(async {
        let attempt = async {
            loop {
                match connect_client(transport.clone(), event.clone(), config, "socketctl listen", true).await {
                    Ok(client) => return Ok(client),
                    Err(e) if wait && matches!(e.kind(), ErrorKind::Connection | ErrorKind::Timeout) => {
                        tracing::debug!("no server yet, retrying: {e}");
                        async_io::Timer::after(WAIT_RETRY).await;
                    }
                    Err(e) => return Err(Waited::Failed(CliError::connect(&e))),
                }
            }
        };
        match deadline {
            None => attempt.await,
            Some(deadline) => {
                futures_lite::future::or(attempt, async {
                    async_io::Timer::at(deadline).await;
                    Err(Waited::TimedOut)
                })
                .await
            }
        }
    })
}
