//! `socketctl bridge EVENT... --nats URL[,URL...]`: bridge this host's events to NATS
//! until SIGINT, SIGTERM or SIGHUP (SPEC §8, `docs/multi-host.md`).
//!
//! Stdout gets one JSON line per bridge event: `bridging` (one per event, with its mode
//! and subject), `nats_connected`, `nats_disconnected` and, last, `stopped` with the
//! counters. Secrets never come from the command line: the token from `--token-file` or
//! `SOCKET_NATS_TOKEN`, user and password from `SOCKET_NATS_USER` and
//! `SOCKET_NATS_PASSWORD`, NKey/JWT from a `.creds` file.

use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value as Json};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use socket_nats::{Bridge, BridgeEvent, BridgeStats, ErrorKind};

use crate::args::{BridgeArgs, GlobalArgs};
use crate::exit::{exit_for, CliError, Exit, Phase};
use crate::output::print_json;
use crate::settings::{load_config, Overrides};
use crate::transports::{event_name, transport_for};

/// How long `bridge` waits, after stopping, for the `stopped` line to be printed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// The configuration overrides of the `bridge` options.
fn overrides(args: &BridgeArgs) -> Result<Overrides, CliError> {
    let mut o = Overrides::new();
    if let Some(urls) = &args.nats {
        let list: Vec<String> = urls.split(',').map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()).collect();
        if list.is_empty() {
            return Err(CliError::usage("--nats needs at least one URL (nats://host:port)"));
        }
        for url in &list {
            if has_password(url) {
                return Err(CliError::usage(format!(
                    "the NATS URL {} carries a password: never put a secret on the command line; use SOCKET_NATS_USER and SOCKET_NATS_PASSWORD, --token-file or --creds",
                    redact(url)
                )));
            }
        }
        o.set("socket.nats.url", toml::Value::Array(list.into_iter().map(toml::Value::String).collect()));
    }
    if let Some(p) = &args.subject_prefix {
        o.set("socket.nats.subject_prefix", p.as_str());
    }
    if let Some(p) = &args.creds {
        o.set("socket.nats.credentials_file", p.to_string_lossy().into_owned());
    }
    if let Some(p) = &args.token_file {
        o.set("socket.nats.token_file", p.to_string_lossy().into_owned());
    }
    if let Some(p) = &args.tls_ca {
        o.set("socket.nats.tls_ca_file", p.to_string_lossy().into_owned());
    }
    if args.retain {
        o.set("socket.nats.retain", true);
    }
    o.set("socket.blocking_mode", false);
    Ok(o)
}

/// True if `url` has `user:password@` before its host.
fn has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.rsplit_once('@').is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// `url` with its userinfo replaced by `***`.
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").map_or(("", url), |(s, r)| (s, r));
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    if scheme.is_empty() {
        format!("***@{host}")
    } else {
        format!("{scheme}://***@{host}")
    }
}

/// The exit code of a bridge error: invalid settings 2, refused authentication 4.
fn exit_of(kind: ErrorKind) -> Exit {
    match kind {
        ErrorKind::Config => Exit::Usage,
        ErrorKind::Auth => Exit::Refused,
        ErrorKind::Local(kind) => exit_for(kind, Phase::Other),
        _ => Exit::Runtime,
    }
}

/// Runs `bridge`.
///
/// # Errors
///
/// Exit 2 for an invalid event name, URL or configuration; 4 when NATS refuses the
/// authentication (with its reason); 1 for a failed TLS handshake or a local server that
/// cannot be hosted. An unreachable NATS is not an error: `nats_disconnected` says so and
/// the bridge waits.
pub(crate) fn run(global: &GlobalArgs, args: &BridgeArgs) -> Result<Exit, CliError> {
    let events = args.events.iter().map(|e| event_name(e)).collect::<Result<Vec<_>, _>>()?;
    let config = load_config(global, &overrides(args)?)?;
    let transport = transport_for(&config)?;

    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| CliError::runtime(format!("cannot install the SIGINT/SIGTERM/SIGHUP handlers: {e}")))?;

    let bridge = Bridge::builder(transport, config)
        .events(events)
        .secrets_from_env(std::env::vars())
        .start()
        .map_err(|e| CliError::new(exit_of(e.kind()), e.to_string()))?;

    let (done_tx, done_rx) = mpsc::channel::<()>();
    let printer = bridge.clone();
    std::thread::Builder::new()
        .name("bridge-events".into())
        .spawn(move || {
            let rx = printer.events();
            let id = printer.id().to_owned();
            drop(printer);
            while let Ok(ev) = rx.recv_blocking() {
                let stopped = matches!(ev, BridgeEvent::Stopped { .. });
                if let Some(line) = event_json(&ev, &id) {
                    if let Err(e) = print_json(&line) {
                        tracing::debug!("dropping a bridge event line: {e}");
                    }
                }
                if stopped {
                    break;
                }
            }
            let _ = done_tx.send(());
        })
        .map_err(|e| CliError::runtime(format!("cannot start the event thread: {e}")))?;

    let signal = signals.forever().next();
    tracing::debug!(?signal, "stopping the bridge");
    bridge.stop();
    let _ = done_rx.recv_timeout(DRAIN_TIMEOUT);
    Ok(Exit::Ok)
}

fn counters(s: &BridgeStats) -> Json {
    json!({
        "published": s.published,
        "received": s.received,
        "dropped": s.dropped,
        "oversize": s.oversize,
        "publish_failed": s.publish_failed,
        "bad_payload": s.bad_payload,
        "inbound_dropped": s.inbound_dropped,
        "retained": s.retained,
    })
}

/// One stdout line for a bridge event, or `None` for one that goes to stderr only.
fn event_json(ev: &BridgeEvent, id: &str) -> Option<Json> {
    Some(match ev {
        BridgeEvent::Bridging { event, mode, subject } => json!({
            "event": "bridging",
            "event_name": event.as_str(),
            "mode": mode.as_str(),
            "subject": subject,
            "outbound_only": mode.outbound_only(),
            "bridge_id": id,
        }),
        BridgeEvent::NatsConnected { server } => json!({"event": "nats_connected", "server": server}),
        BridgeEvent::NatsDisconnected { reason } => json!({"event": "nats_disconnected", "reason": reason}),
        BridgeEvent::Stopped { stats } => json!({"event": "stopped", "counters": counters(stats)}),
        // Warnings are logged on stderr by the library.
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_found_and_redacted() {
        assert!(has_password("nats://u:p@h:4222"));
        assert!(has_password("u:p@h"));
        assert!(!has_password("nats://token@h:4222") && !has_password("nats://h:4222"));
        assert_eq!(redact("nats://u:p@h:4222"), "nats://***@h:4222");
    }

    #[test]
    fn error_kinds_map_to_the_documented_exit_codes() {
        assert_eq!(exit_of(ErrorKind::Config).code(), 2);
        assert_eq!(exit_of(ErrorKind::Auth).code(), 4);
        assert_eq!(exit_of(ErrorKind::Tls).code(), 1);
        assert_eq!(exit_of(ErrorKind::Local(socket_factory::ErrorKind::AddrInUse)).code(), 1);
    }
}
