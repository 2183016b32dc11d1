//! `socketctl send EVENT`: send one message (`--data`) or one per stdin line.

use socket_factory::control::Control;
use socket_factory::{Client, Data, EventName, MessageType, SocketMessage};

use crate::args::{GlobalArgs, SendArgs, TypeArg};
use crate::cmd::serve::too_long;
use crate::exit::{describe, CliError, Exit};
use crate::json::parse_data;
use crate::lines::{BoundedLines, Line};
use crate::output::print_error;
use crate::settings::{load_config, Overrides};
use crate::transports::{connect_client, event_name, registry, transport_for};

fn message_type(t: TypeArg) -> MessageType {
    match t {
        TypeArg::Data => MessageType::Data,
        TypeArg::Error => MessageType::Error,
        TypeArg::Control => MessageType::Control,
    }
}

/// Checks one message's data: a JSON object, and for `--type control` not protocol control.
fn data_for(text: &str, message_type: MessageType) -> Result<Data, String> {
    let data = parse_data(text)?;
    if message_type == MessageType::Control && data.get("control").is_some() {
        return Err("the key \"control\" is reserved for protocol control messages: use another key".to_owned());
    }
    Ok(data)
}

/// Runs `send`.
///
/// # Errors
///
/// Exit 2 (invalid event name, JSON or configuration), 3 (no server), 4 (the server does not
/// accept messages from clients, or is full), 5 (connect timeout, or no receipt within
/// `default_timeout`), 1 (other failures, a connection lost before the receipt among them).
/// Exit 0 only once the server confirmed it has taken every message.
pub(crate) fn run(global: &GlobalArgs, args: &SendArgs) -> Result<Exit, CliError> {
    let event = event_name(&args.event)?;
    let message_type = message_type(args.message_type);
    // Check --data before connecting: a bad argument never reaches the server.
    let data = match &args.data {
        Some(text) => Some(data_for(text, message_type).map_err(CliError::usage)?),
        None => None,
    };
    let mut o = Overrides::new();
    // A one-shot sender never reconnects.
    o.set("socket.auto_reconnect", false);
    let config = load_config(global, &o)?;
    // Unknown transport or invalid settings: exit 2 before connecting.
    transport_for(&config)?;
    let tz = config.time_zone().map_err(|e| CliError::usage(describe(&e)))?;

    let client =
        socket_factory::runtime::block_on(connect_client(&registry(), &event, &config, "socketctl send", false))
            .map_err(|e| CliError::connect(&e))?;
    // `send` shows nothing the server sends (relayed messages, for instance), but it reads
    // and discards it: a client whose receive buffer stays full is cut off as a slow
    // consumer by a relay server with traffic.
    let sink = client.clone();
    std::thread::Builder::new()
        .name("send-discard".into())
        .spawn(move || while sink.receive(None).is_ok() {})
        .map_err(|e| CliError::runtime(format!("cannot start the receive thread: {e}")))?;
    let result = send_all(&client, &event, message_type, data, &tz, config.socket.max_message_size);
    let receipt = match &result {
        Ok(_) => receipt(&client, config.socket.legacy_server),
        Err(_) => Ok(()),
    };
    // A lingering close in every case, so that nothing already sent is lost to a reset.
    client.disconnect();
    receipt?;
    result
}

/// Waits until the server has taken every message sent: the `pong` to a `ping` sent behind
/// them. A legacy server never answers `ping`: there, the receipt is that it closed the
/// connection after reading our end-of-stream (a server that reads to the end before closing
/// has read every message; it does not say whether it processed them).
fn receipt(client: &Client, legacy: bool) -> Result<(), CliError> {
    let confirmed = if legacy { client.close() } else { client.flush() };
    confirmed.map_err(|e| {
        CliError::new(
            crate::exit::exit_for(e.kind(), crate::exit::Phase::Other),
            format!("messages sent, but not confirmed by the server: {}", describe(&e)),
        )
    })
}

fn send_all(
    client: &Client,
    event: &EventName,
    message_type: MessageType,
    data: Option<Data>,
    tz: &jiff::tz::TimeZone,
    max_line: usize,
) -> Result<Exit, CliError> {
    if !client.can_send() {
        return Err(CliError::new(
            Exit::Refused,
            format!("the server of event {event} does not accept messages from clients (allow_client_send = false)"),
        ));
    }
    let send = |data: Data| {
        let msg = SocketMessage::new_in(event.clone(), message_type, data, tz);
        debug_assert!(!Control::is_protocol(&msg));
        client.send(&msg).map_err(CliError::from)
    };
    if let Some(data) = data {
        send(data)?;
        return Ok(Exit::Ok);
    }

    let mut input = BoundedLines::new(std::io::stdin().lock(), max_line);
    let mut line_no = 0u64;
    let mut skipped = 0u64;
    loop {
        let line = input.next_line().map_err(|e| CliError::runtime(format!("cannot read stdin: {e}")))?;
        line_no += 1;
        let buf = match line {
            None => break,
            Some(Line::Text(buf)) => buf,
            Some(Line::TooLong(len)) => {
                print_error(&too_long(line_no, len, max_line));
                skipped += 1;
                continue;
            }
        };
        let text = match std::str::from_utf8(&buf) {
            Ok(text) => text.trim(),
            Err(_) => {
                print_error(&format!("stdin line {line_no} skipped: not valid UTF-8"));
                skipped += 1;
                continue;
            }
        };
        if text.is_empty() {
            continue;
        }
        match data_for(text, message_type) {
            // A message the library refuses to encode (too deep, too large) is that line's
            // error; the connection is fine and the next line is sent.
            Ok(data) => match send(data) {
                Ok(()) => {}
                Err(e) if e.exit == Exit::Usage => {
                    print_error(&format!("stdin line {line_no} not sent: {}", e.message));
                    skipped += 1;
                }
                Err(e) => return Err(e),
            },
            Err(e) => {
                print_error(&format!("stdin line {line_no} skipped: {e}"));
                skipped += 1;
            }
        }
    }
    // Every valid line was sent; invalid ones were reported one by one above.
    Ok(if skipped > 0 { Exit::Usage } else { Exit::Ok })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_key_is_reserved_for_control_messages_only() {
        assert!(data_for(r#"{"control": "hello"}"#, MessageType::Data).is_ok());
        let err = data_for(r#"{"control": "hello"}"#, MessageType::Control).unwrap_err();
        assert!(err.contains("reserved for protocol control"), "{err}");
        assert!(data_for(r#"{"action": "reload"}"#, MessageType::Control).is_ok());
    }
}
