//! `socketctl serve EVENT`: run a server until SIGINT, SIGTERM or SIGHUP.
//!
//! Stdout gets one JSON line per server event (`listening`, `connected`, `disconnected`,
//! `message`); each stdin line that is a JSON object is broadcast as the `data` of a DATA
//! message.

use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value as Json};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use socket_factory::{EventName, Server, ServerEvent, SocketMessage};

use crate::args::{GlobalArgs, ServeArgs};
use crate::exit::{describe, CliError, Exit};
use crate::json::{message_to_json, parse_data};
use crate::lines::{BoundedLines, Line};
use crate::output::{print_error, print_json, print_line};
use crate::settings::{load_config, Overrides};
use crate::stdout_queue::{Lines, Next};
use crate::transports::{create_server, event_name, transport_for};

/// How long `serve` waits, after stopping, for the last server events to be printed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// The configuration overrides of the `serve` options.
pub(crate) fn overrides(args: &ServeArgs) -> Overrides {
    let mut o = Overrides::new();
    if args.relay {
        o.set("socket.relay", true);
    }
    if args.retain_last {
        o.set("socket.retain_last", true);
    }
    if args.no_client_send {
        o.set("socket.allow_client_send", false);
    }
    if let Some(n) = args.max_connections {
        o.set("socket.unix.max_connections", i64::from(n));
        o.set("socket.tcp.max_connections", i64::from(n));
    }
    if let Some(n) = args.queue_size {
        o.set("socket.message_queue_size", i64::from(n));
    }
    // serve drives the server from this thread; start() must return once bound.
    o.set("socket.blocking_mode", false);
    o
}

/// Runs `serve`.
///
/// # Errors
///
/// Exit 2 for an invalid event name or configuration; the library's exit code when the
/// server cannot start (e.g. exit 1 when another server already runs for the event).
pub(crate) fn run(global: &GlobalArgs, args: &ServeArgs) -> Result<Exit, CliError> {
    let event = event_name(&args.event)?;
    let config = load_config(global, &overrides(args))?;
    let transport = transport_for(&config)?;
    let tz = config.time_zone().map_err(|e| CliError::usage(describe(&e)))?;

    // Install the handlers before binding, so that a signal sent as soon as the
    // `listening` line appears is never lost.
    // SIGHUP too (the terminal went away): stopping cleanly beats leaving a stale socket.
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| CliError::runtime(format!("cannot install the SIGINT/SIGTERM/SIGHUP handlers: {e}")))?;

    let server = create_server(&config, &event)?;
    let events = server.events();
    let events_closer = events.clone();
    server.start()?;

    let address = server.address().unwrap_or_default();
    print_json(&json!({
        "event": "listening",
        "address": address,
        "transport": transport.scheme(),
        "event_name": event.as_str(),
    }))?;

    // Printing is a side channel: the event thread never waits for stdout. Lines wait in a
    // bounded queue; when stdout does not move, the oldest are dropped and reported
    // (`events_dropped`) once it moves again.
    let lines = Lines::default();
    let printer_lines = lines.clone();
    let (drained_tx, drained_rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("serve-stdout".into())
        .spawn(move || {
            while let Next::Line(line) = printer_lines.next() {
                if let Err(e) = print_line(&line) {
                    // The server stays useful without stdout (stdin keeps broadcasting).
                    tracing::debug!("dropping a server event line: {e}");
                }
            }
            let _ = drained_tx.send(());
        })
        .map_err(|e| CliError::runtime(format!("cannot start the stdout thread: {e}")))?;
    let event_lines = lines.clone();
    std::thread::Builder::new()
        .name("serve-events".into())
        .spawn(move || {
            while let Ok(ev) = events.recv_blocking() {
                match ev {
                    ServerEvent::EventsDropped { count } => event_lines.lost(count),
                    ev => {
                        if let Some(line) = event_json(&ev) {
                            event_lines.push(line.to_string());
                        }
                    }
                }
            }
            event_lines.close();
        })
        .map_err(|e| CliError::runtime(format!("cannot start the event thread: {e}")))?;

    let stdin_server = server.clone();
    let max_line = config.socket.max_message_size;
    std::thread::Builder::new()
        .name("serve-stdin".into())
        .spawn(move || broadcast_stdin(&stdin_server, &event, &tz, max_line))
        .map_err(|e| CliError::runtime(format!("cannot start the stdin thread: {e}")))?;

    let signal = signals.forever().next();
    tracing::debug!(?signal, "stopping the server");
    server.stop()?;
    // The server has stopped: close the event stream so that the event thread prints what
    // is left (the last `disconnected` lines) and ends; wait for that, bounded.
    events_closer.close();
    let _ = drained_rx.recv_timeout(DRAIN_TIMEOUT);
    Ok(Exit::Ok)
}

/// One stdout line for a server event, or `None` for an event `serve` does not print.
fn event_json(ev: &ServerEvent) -> Option<Json> {
    Some(match ev {
        ServerEvent::Connected(info) => json!({
            "event": "connected",
            "client_id": info.id.to_string(),
            "address": info.address,
            "pid": info.pid,
            "uid": info.uid,
            "client_name": info.client_name,
            "connected_at_ms": info.connected_at_ms,
        }),
        ServerEvent::Disconnected { id, reason } => json!({
            "event": "disconnected",
            "client_id": id.to_string(),
            "reason": reason,
        }),
        ServerEvent::Message { from, message } => json!({
            "event": "message",
            "client_id": from.to_string(),
            "message": message_to_json(message),
        }),
        // ServerEvent is non-exhaustive: newer events are not part of the output contract.
        _ => return None,
    })
}

/// Broadcasts each stdin line that is a JSON object; skips the others with one stderr
/// line each: not UTF-8, not a JSON object, longer than `max_line` bytes (never held whole),
/// or a message the library cannot send (too deep, too large). Returns at end of stdin (the
/// server keeps running).
fn broadcast_stdin(server: &Server, event: &EventName, tz: &jiff::tz::TimeZone, max_line: usize) {
    let mut input = BoundedLines::new(std::io::stdin().lock(), max_line);
    let mut line_no = 0u64;
    loop {
        let buf = match input.next_line() {
            Ok(None) => break,
            Ok(Some(Line::Text(buf))) => buf,
            Ok(Some(Line::TooLong(len))) => {
                line_no += 1;
                print_error(&too_long(line_no, len, max_line));
                continue;
            }
            Err(e) => {
                print_error(&format!("cannot read stdin: {e}; no more messages are read from stdin"));
                break;
            }
        };
        line_no += 1;
        let Ok(text) = std::str::from_utf8(&buf) else {
            print_error(&format!("stdin line {line_no} skipped: not valid UTF-8"));
            continue;
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match parse_data(text) {
            Ok(data) => {
                let msg = SocketMessage::new_in(event.clone(), socket_factory::MessageType::Data, data, tz);
                if let Err(e) = server.broadcast(&msg) {
                    print_error(&format!("stdin line {line_no} not broadcast: {}", describe(&e)));
                }
            }
            Err(e) => print_error(&format!("stdin line {line_no} skipped: {e}")),
        }
    }
    tracing::debug!("end of stdin; serving until SIGINT or SIGTERM");
}

/// The one-line error for a stdin line over the bound.
pub(crate) fn too_long(line_no: u64, len: u64, max_line: usize) -> String {
    format!(
        "stdin line {line_no} skipped: {len} bytes is longer than socket.max_message_size ({max_line} bytes); \
         it was not read into memory"
    )
}
