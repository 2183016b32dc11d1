//! The NATS side: connect options (credentials, TLS), the first connection, the connection
//! state, and the JetStream stream of `--retain`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions};
use tokio::sync::watch;

use crate::{BridgeEvent, Error, ErrorKind, Result, Shared};

use crate::run::{Setup, CONNECT_TIMEOUT, MAX_RECONNECT_DELAY};

pub(crate) fn connect_options(
    setup: &Setup,
    events: tokio::sync::mpsc::UnboundedSender<async_nats::Event>,
) -> ConnectOptions {
    let b = &setup.b;
    let mut o = ConnectOptions::new()
        .no_echo()
        .name("socket-nats")
        .connection_timeout(CONNECT_TIMEOUT)
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            // 0 for the first attempt, then 100 ms doubling, at most MAX_RECONNECT_DELAY, with jitter.
            if attempts <= 1 {
                return Duration::ZERO;
            }
            let base = Duration::from_millis(100).saturating_mul(1 << attempts.min(8) as u32).min(MAX_RECONNECT_DELAY);
            base.mul_f64(0.75 + fastrand::f64() / 2.0)
        })
        .event_callback(move |event| {
            let events = events.clone();
            async move {
                let _ = events.send(event);
            }
        });
    if let Some(token) = &setup.token {
        o = o.token(token.0.clone());
    }
    if let Some((user, password)) = &b.user_password {
        o = o.user_and_password(user.clone(), password.0.clone());
    }
    if let Some(ca) = &b.tls_ca_file {
        o = o.add_root_certificates(ca.clone()).require_tls(true);
    }
    o
}

pub(crate) async fn with_credentials(setup: &Setup, o: ConnectOptions) -> Result<ConnectOptions> {
    match &setup.b.credentials_file {
        Some(path) => o.credentials_file(path).await.map_err(|e| {
            Error::new(ErrorKind::Config, format!("cannot use the NATS credentials file {}: {e}", path.display()))
        }),
        None => Ok(o),
    }
}

/// Connects to NATS. A refused authentication and a failed TLS handshake
/// are errors; an unreachable NATS gives a client that keeps trying, with
/// the reason.
pub(crate) async fn connect_nats(
    setup: &Setup,
    events: tokio::sync::mpsc::UnboundedSender<async_nats::Event>,
) -> Result<(async_nats::Client, Option<String>)> {
    let urls = setup.b.urls.join(",");
    let first = with_credentials(setup, connect_options(setup, events.clone())).await?;
    match first.connect(setup.servers.clone()).await {
        Ok(client) => Ok((client, None)),
        Err(e) => match e.kind() {
            ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => Err(Error::new(
                ErrorKind::Auth,
                format!("NATS at {urls} refused the authentication: {e}: check the credentials, token or password"),
            )
            .with_source(e)),
            _ if e.kind() == ConnectErrorKind::Tls || is_tls_failure(&e) => Err(Error::new(
                ErrorKind::Tls,
                format!("TLS with NATS at {urls} failed: {e}: check --tls-ca (socket.nats.tls_ca_file) and the server's certificate"),
            )
            .with_source(e)),
            ConnectErrorKind::ServerParse => {
                Err(Error::new(ErrorKind::Config, format!("invalid NATS URL in {urls}: {e}")).with_source(e))
            }
            _ => {
                let reason = format!("NATS at {urls} is unreachable ({e}): waiting for it, local delivery goes on");
                let retry = with_credentials(setup, connect_options(setup, events)).await?.retry_on_initial_connect();
                let client = retry.connect(setup.servers.clone()).await.map_err(|e| {
                    Error::new(ErrorKind::Runtime, format!("cannot start the NATS client: {e}")).with_source(e)
                })?;
                Ok((client, Some(reason)))
            }
        },
    }
}

/// True if `e` comes from a failed TLS handshake (the client reports a rejected
/// certificate as an I/O error carrying a rustls error).
pub(crate) fn is_tls_failure(e: &async_nats::ConnectError) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if err.downcast_ref::<async_nats::rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.get_ref().is_some_and(|inner| inner.downcast_ref::<async_nats::rustls::Error>().is_some()) {
                return true;
            }
        }
        next = err.source();
    }
    let text = e.to_string();
    text.contains("invalid peer certificate") || text.contains("tls handshake")
}

/// Name of the JetStream stream that retains the last message of each subject under `prefix`.
pub(crate) fn stream_name(prefix: &str) -> String {
    let clean: String =
        prefix.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("SOCKET_RETAIN_{clean}")
}

pub(crate) async fn watch_nats(
    client: async_nats::Client,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<async_nats::Event>,
    shared: Arc<Shared>,
    connected: watch::Sender<bool>,
) {
    use async_nats::Event;
    while let Some(event) = rx.recv().await {
        match event {
            Event::Connected => {
                let info = client.server_info();
                let mut server = format!("{}:{}", info.host, info.port);
                if !info.server_name.is_empty() {
                    server = format!("{server} ({})", info.server_name);
                }
                tracing::info!(server = %server, "connected to NATS");
                shared.nats_connected.store(true, Ordering::Release);
                let _ = connected.send(true);
                shared.emit(BridgeEvent::NatsConnected { server });
            }
            Event::Disconnected => {
                tracing::warn!("disconnected from NATS: reconnecting; local delivery goes on");
                shared.nats_connected.store(false, Ordering::Release);
                let _ = connected.send(false);
                shared.emit(BridgeEvent::NatsDisconnected {
                    reason: "connection to NATS lost: reconnecting, local delivery goes on".to_owned(),
                });
            }
            Event::ServerError(e) => {
                tracing::warn!(error = %e, "NATS server error");
                shared.emit(BridgeEvent::Warning { message: format!("NATS server error: {e}") });
            }
            Event::ClientError(e) => {
                tracing::warn!(error = %e, "NATS client error");
                shared.emit(BridgeEvent::Warning { message: format!("NATS client error: {e}") });
            }
            Event::SlowConsumer(sid) => {
                tracing::warn!(sid, "NATS subscription is a slow consumer: messages were dropped by the client");
                shared.emit(BridgeEvent::Warning {
                    message: "a NATS subscription fell behind and the client dropped messages".to_owned(),
                });
            }
            other => tracing::info!(event = %other, "NATS event"),
        }
    }
}

pub(crate) async fn setup_retain(client: &async_nats::Client, prefix: &str, shared: &Shared) {
    use async_nats::jetstream::stream;
    let js = async_nats::jetstream::new(client.clone());
    let config = stream::Config {
        name: stream_name(prefix),
        subjects: vec![format!("{prefix}.>")],
        max_messages_per_subject: 1,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::Old,
        ..Default::default()
    };
    match tokio::time::timeout(Duration::from_secs(5), js.get_or_create_stream(config)).await {
        Ok(Ok(_)) => tracing::debug!(stream = %stream_name(prefix), "retain stream ready"),
        Ok(Err(e)) => warn_retain(shared, format!("cannot create the JetStream stream {}: {e}", stream_name(prefix))),
        Err(_) => warn_retain(shared, "JetStream did not answer within 5 s".to_owned()),
    }
}

pub(crate) fn warn_retain(shared: &Shared, why: String) {
    let message = format!("--retain does not work: {why} (is JetStream enabled on the NATS servers?)");
    tracing::warn!("{message}");
    shared.emit(BridgeEvent::Warning { message });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_have_no_dots() {
        assert_eq!(stream_name("home.desk-1"), "SOCKET_RETAIN_HOME_DESK_1");
    }
}
