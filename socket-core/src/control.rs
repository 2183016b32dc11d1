//! Protocol control messages (`hello`, `welcome`, `ping`, `pong`,
//! `shutdown`) and server ERROR codes, as typed values.
//!
//! A CONTROL message whose `data` has a string key `"control"` is protocol
//! control; every other CONTROL message belongs to the application.

use std::fmt;

use rmpv::Value;

use crate::message::{Data, EventName, MessageType, SocketMessage};

/// A protocol control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Client → server, first frame: protocol version and an optional name.
    Hello {
        /// Protocol version spoken by the client.
        protocol: u64,
        /// Free-form client name, shown in `ClientInfo`.
        client_name: Option<String>,
    },
    /// Server → client, only in answer to `hello`.
    Welcome {
        /// Protocol version spoken by the server.
        protocol: u64,
        /// The id the server gave this client.
        client_id: String,
        /// Whether the server accepts messages from clients.
        allow_client_send: bool,
        /// The event the server serves.
        event_name: String,
        /// Server implementation name and version.
        server: String,
        /// Whether the server re-broadcasts client messages to the other
        /// clients (`relay`). A server that does not send the key is read as
        /// `false`.
        relay: bool,
    },
    /// Liveness probe, either way.
    Ping {
        /// Echoed in the `pong`.
        nonce: u64,
    },
    /// Answer to `ping`.
    Pong {
        /// The `ping`'s nonce.
        nonce: u64,
    },
    /// Server → all clients, just before a clean stop.
    Shutdown {
        /// Why the server stops.
        reason: String,
    },
}

impl Control {
    /// The `data.control` string of this message.
    pub fn name(&self) -> &'static str {
        match self {
            Control::Hello { .. } => "hello",
            Control::Welcome { .. } => "welcome",
            Control::Ping { .. } => "ping",
            Control::Pong { .. } => "pong",
            Control::Shutdown { .. } => "shutdown",
        }
    }

    /// The `data` map of this control message.
    pub fn to_data(&self) -> Data {
        let data = Data::new().with("control", self.name());
        match self {
            Control::Hello { protocol, client_name } => {
                let data = data.with("protocol", *protocol);
                match client_name {
                    Some(name) => data.with("client_name", name.as_str()),
                    None => data,
                }
            }
            Control::Welcome { protocol, client_id, allow_client_send, event_name, server, relay } => data
                .with("protocol", *protocol)
                .with("client_id", client_id.as_str())
                .with("allow_client_send", *allow_client_send)
                .with("event_name", event_name.as_str())
                .with("server", server.as_str())
                .with("relay", *relay),
            Control::Ping { nonce } | Control::Pong { nonce } => data.with("nonce", *nonce),
            Control::Shutdown { reason } => data.with("reason", reason.as_str()),
        }
    }

    /// A CONTROL message carrying this control, stamped now in `tz`.
    pub fn to_message(&self, event: &EventName, tz: &jiff::tz::TimeZone) -> SocketMessage {
        SocketMessage::new_in(event.clone(), MessageType::Control, self.to_data(), tz)
    }

    /// Reads a protocol control message.
    ///
    /// Returns `None` if `msg` is not protocol control (not CONTROL, or no
    /// string `control` key): it then belongs to the application.
    /// Returns `Some(Err(reason))` for protocol control that is unknown or
    /// lacks a field.
    pub fn parse(msg: &SocketMessage) -> Option<Result<Control, String>> {
        if msg.message_type != MessageType::Control {
            return None;
        }
        let name = msg.data.get_str("control")?;
        let d = &msg.data;
        let u = |k: &str| d.get(k).and_then(Value::as_u64).ok_or_else(|| format!("{name}: missing or invalid {k}"));
        let s = |k: &str| d.get_str(k).map(str::to_owned).ok_or_else(|| format!("{name}: missing or invalid {k}"));
        Some(match name {
            "hello" => u("protocol")
                .map(|protocol| Control::Hello { protocol, client_name: d.get_str("client_name").map(str::to_owned) }),
            "welcome" => (|| {
                Ok(Control::Welcome {
                    protocol: u("protocol")?,
                    client_id: s("client_id")?,
                    allow_client_send: d
                        .get("allow_client_send")
                        .and_then(Value::as_bool)
                        .ok_or("welcome: missing or invalid allow_client_send")?,
                    event_name: s("event_name")?,
                    server: s("server").unwrap_or_default(),
                    relay: d.get("relay").and_then(Value::as_bool).unwrap_or(false),
                })
            })(),
            "ping" => u("nonce").map(|nonce| Control::Ping { nonce }),
            "pong" => u("nonce").map(|nonce| Control::Pong { nonce }),
            "shutdown" => Ok(Control::Shutdown { reason: s("reason").unwrap_or_default() }),
            other => Err(format!("unknown protocol control {other:?}")),
        })
    }

    /// True if `msg` is protocol control (CONTROL with a string `control` key).
    pub fn is_protocol(msg: &SocketMessage) -> bool {
        msg.message_type == MessageType::Control && msg.data.get_str("control").is_some()
    }
}

/// The `code` of a server ERROR message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The server serves its maximum number of clients; the connection is closed.
    MaxConnections,
    /// The server does not accept messages from clients; the frame was dropped.
    SendNotAllowed,
    /// A frame exceeded the size limit; the connection is closed.
    MessageTooLarge,
    /// A frame body was not a valid message; it was dropped.
    Malformed,
    /// The client did not read fast enough; it is disconnected.
    SlowConsumer,
    /// Any other protocol violation (e.g. a zero-length frame); the connection is closed.
    Protocol,
}

impl ErrorCode {
    /// All codes.
    pub const ALL: [ErrorCode; 6] = [
        ErrorCode::MaxConnections,
        ErrorCode::SendNotAllowed,
        ErrorCode::MessageTooLarge,
        ErrorCode::Malformed,
        ErrorCode::SlowConsumer,
        ErrorCode::Protocol,
    ];

    /// The wire spelling, e.g. `"max_connections"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MaxConnections => "max_connections",
            ErrorCode::SendNotAllowed => "send_not_allowed",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::Malformed => "malformed",
            ErrorCode::SlowConsumer => "slow_consumer",
            ErrorCode::Protocol => "protocol",
        }
    }

    /// Parses the wire spelling.
    pub fn from_wire(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// An ERROR message with `data = {"code": code, "error": text}`.
    pub fn to_message(self, event: &EventName, text: &str, tz: &jiff::tz::TimeZone) -> SocketMessage {
        SocketMessage::new_in(
            event.clone(),
            MessageType::Error,
            Data::new().with("code", self.as_str()).with("error", text),
            tz,
        )
    }

    /// Reads `(code, text)` from a server ERROR message, if it is one.
    pub fn parse(msg: &SocketMessage) -> Option<(ErrorCode, String)> {
        if msg.message_type != MessageType::Error {
            return None;
        }
        let code = ErrorCode::from_wire(msg.data.get_str("code")?)?;
        Some((code, msg.data.get_str("error").unwrap_or_default().to_owned()))
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pong_round_trips_and_unknown_controls_are_errors() -> Result<(), Box<dyn std::error::Error>> {
        let event = EventName::new("t")?;
        let pong = Control::Pong { nonce: 7 }.to_message(&event, &jiff::tz::TimeZone::UTC);
        assert!(Control::is_protocol(&pong));
        assert!(matches!(Control::parse(&pong), Some(Ok(Control::Pong { nonce: 7 }))));
        let odd = SocketMessage::new(event.clone(), MessageType::Control, Data::new().with("control", "teleport"));
        assert!(matches!(Control::parse(&odd), Some(Err(e)) if e.contains("teleport")));
        let data = SocketMessage::data(event, Data::new().with("control", "ping"));
        assert!(!Control::is_protocol(&data));
        Ok(())
    }

    #[test]
    fn welcome_carries_relay_and_reads_a_missing_relay_as_false() -> Result<(), Box<dyn std::error::Error>> {
        let event = EventName::new("t")?;
        let welcome = |relay| Control::Welcome {
            protocol: 1,
            client_id: "c1".into(),
            allow_client_send: true,
            event_name: "t".into(),
            server: "x".into(),
            relay,
        };
        for relay in [true, false] {
            let msg = welcome(relay).to_message(&event, &jiff::tz::TimeZone::UTC);
            assert_eq!(msg.data.get("relay").and_then(Value::as_bool), Some(relay));
            assert_eq!(Control::parse(&msg), Some(Ok(welcome(relay))));
        }
        // An older server (or the Python origin) does not send the key.
        let old = Data::new()
            .with("control", "welcome")
            .with("protocol", 1u64)
            .with("client_id", "c1")
            .with("allow_client_send", true)
            .with("event_name", "t")
            .with("server", "x");
        let msg = SocketMessage::new(event, MessageType::Control, old);
        assert_eq!(Control::parse(&msg), Some(Ok(welcome(false))));
        Ok(())
    }
}
