//! From NATS to the local side: every payload checked whole, delivered to the hosted server
//! or the attached client, bad payloads counted and logged, retained messages first.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use futures_lite::StreamExt;
use socket_core::codec::{check_body_for, decode_body_for, Frame, Limits};
use socket_core::control::Control as ProtocolControl;
use socket_core::{Client, EventName, MessageType, Server, SocketMessage};
use tokio::sync::watch;

use crate::outbox::origin_name;
use crate::{BridgeEvent, Counters, Shared, ORIGIN_HEADER};

/// Where messages from other hosts go.
pub(crate) enum Sink {
    Host(Server),
    Attach(Client),
}

/// Checks a payload from NATS: a valid message of `event`, not protocol control. Checking is
/// enough for data and error messages (`None`: nothing is built); a control message is
/// decoded to tell protocol control from the application's, and returned.
pub(crate) fn check_payload(
    payload: &[u8],
    event: &EventName,
    limits: &Limits,
) -> std::result::Result<Option<SocketMessage>, String> {
    if payload.is_empty() || payload.len() > limits.max_frame_len {
        return Err(format!("{} bytes, outside 1..={} (max_message_size)", payload.len(), limits.max_frame_len));
    }
    let checked = check_body_for(payload, limits, event).map_err(|e| e.to_string())?;
    if !checked.names_event || checked.message_type == MessageType::Control {
        let msg = decode_body_for(payload, limits, event).map_err(|e| e.to_string())?;
        if msg.event_name != *event {
            return Err(format!("it names event {:?}", msg.event_name.as_str()));
        }
        if ProtocolControl::is_protocol(&msg) {
            return Err("it is protocol control, which never crosses hosts".to_owned());
        }
        return Ok(Some(msg));
    }
    Ok(None)
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn inbound(
    client: async_nats::Client,
    event: EventName,
    subject: String,
    sink: Sink,
    limits: Limits,
    shared: Arc<Shared>,
    retain_stream: Option<String>,
    mut retain_ready: watch::Receiver<bool>,
) {
    let mut sub = match client.subscribe(subject.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(subject = %subject, error = %e, "cannot subscribe");
            shared.emit(BridgeEvent::Warning { message: format!("cannot subscribe to {subject}: {e}") });
            return;
        }
    };
    // With --retain: the last message kept in JetStream comes first.
    let mut retained: Option<Bytes> = None;
    if let Some(stream) = retain_stream {
        while !*retain_ready.borrow_and_update() {
            if retain_ready.changed().await.is_err() {
                break;
            }
        }
        retained = fetch_retained(&client, &stream, &subject, &shared).await;
        if let Some(payload) = &retained {
            match check_payload(payload, &event, &limits) {
                Ok(msg) => {
                    sink.deliver(payload, msg, &event, &limits, &shared).await;
                    Counters::add(&shared.counters.retained);
                }
                Err(why) => bad_payload(&shared, &subject, &why),
            }
        }
    }
    let mut first = true;
    while let Some(message) = sub.next().await {
        let origin = message.headers.as_ref().and_then(|h| h.get(origin_name()));
        if origin.is_some_and(|v| v.as_str() == shared.id) {
            continue; // Never ours (no_echo); a second guard against loops.
        }
        if std::mem::take(&mut first) && retained.as_ref() == Some(&message.payload) {
            continue; // Published between our subscribe and the fetch: already delivered as retained.
        }
        match check_payload(&message.payload, &event, &limits) {
            Ok(msg) => sink.deliver(&message.payload, msg, &event, &limits, &shared).await,
            Err(why) => bad_payload(&shared, &subject, &why),
        }
    }
}

pub(crate) fn bad_payload(shared: &Shared, subject: &str, why: &str) {
    let n = shared.counters.bad_payload.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::warn!(subject, bad_payloads = n, "message from NATS is not a valid message of its event: dropped ({why})");
}

pub(crate) async fn fetch_retained(
    client: &async_nats::Client,
    stream: &str,
    subject: &str,
    shared: &Shared,
) -> Option<Bytes> {
    let js = async_nats::jetstream::new(client.clone());
    let stream = match js.get_stream_no_info(stream).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "no retain stream");
            return None;
        }
    };
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(m) => {
            let origin = m.headers.get(ORIGIN_HEADER).map(|v| v.as_str().to_owned());
            if origin.as_deref() == Some(shared.id.as_str()) {
                return None;
            }
            Some(m.payload)
        }
        Err(e) => {
            if !matches!(e.kind(), async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound) {
                tracing::warn!(subject, error = %e, "cannot read the retained message");
            }
            None
        }
    }
}

impl Sink {
    /// Delivers a checked payload (`msg`: decoded already, or not needed yet).
    pub(crate) async fn deliver(
        &self,
        payload: &[u8],
        msg: Option<SocketMessage>,
        event: &EventName,
        limits: &Limits,
        shared: &Shared,
    ) {
        let result = match self {
            // The exact bytes that came, once checked.
            Sink::Host(server) => Frame::from_body(payload, usize::MAX).and_then(|f| server.broadcast_frame(f)),
            Sink::Attach(client) => match msg.map_or_else(|| decode_body_for(payload, limits, event), Ok) {
                Ok(msg) => client.send_async(&msg).await,
                Err(e) => Err(e.into()),
            },
        };
        match result {
            Ok(()) => Counters::add(&shared.counters.received),
            Err(e) => {
                Counters::add(&shared.counters.inbound_dropped);
                tracing::warn!(event = %event, error = %e, "a message from another host could not be delivered locally");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket_core::codec::encode_frame;
    #[test]
    fn payloads_from_nats_are_checked_whole() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let event = EventName::new("t")?;
        let limits = Limits::default();
        let good = SocketMessage::data(event.clone(), socket_core::Data::new().with("n", 1u64));
        let body = encode_frame(&good, usize::MAX)?.body().to_vec();
        // A data message is checked, not built.
        assert_eq!(check_payload(&body, &event, &limits)?, None);
        let control = SocketMessage::new(
            event.clone(),
            socket_core::MessageType::Control,
            socket_core::Data::new().with("app", "reload"),
        );
        let control_body = encode_frame(&control, usize::MAX)?.body().to_vec();
        assert_eq!(check_payload(&control_body, &event, &limits)?, Some(control));
        assert!(check_payload(b"not msgpack", &event, &limits).is_err());
        assert!(check_payload(&body[..body.len() - 1], &event, &limits).is_err());
        assert!(check_payload(&[], &event, &limits).is_err());
        let other = SocketMessage::data(EventName::new("u")?, socket_core::Data::new());
        let body = encode_frame(&other, usize::MAX)?.body().to_vec();
        assert!(check_payload(&body, &event, &limits).unwrap_err().contains("names event"));
        let ping = SocketMessage::new(
            event.clone(),
            socket_core::MessageType::Control,
            ProtocolControl::Ping { nonce: 1 }.to_data(),
        );
        let body = encode_frame(&ping, usize::MAX)?.body().to_vec();
        assert!(check_payload(&body, &event, &limits).unwrap_err().contains("protocol control"));
        Ok(())
    }
}
