//! The bridge thread: one current-thread tokio runtime running the NATS
//! client, the local readers and the publisher.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{HeaderMap, ServerAddr};
use bytes::Bytes;
use futures_lite::StreamExt;
use socket_core::codec::Limits;
use socket_core::config::{check_nats_url, is_valid_subject_prefix, MAX_NATS_OUTBOUND_BUFFER};
use socket_core::control::Control as ProtocolControl;
use socket_core::{Client, ClientOptions, EventName, Server, ServerEvent, ServerOptions, SocketMessage};
use tokio::sync::watch;

use crate::inbound::{inbound, Sink};
use crate::nats::{connect_nats, setup_retain, stream_name, watch_nats};
use crate::outbox::{origin_name, wire_size, Outbox, Outgoing, PUBLISH_BATCH};
use crate::{
    new_shared, random_id, Bridge, BridgeBuilder, BridgeEvent, Counters, Error, ErrorKind, Mode, Result, Secret, Shared,
};

/// How the handles reach the bridge thread.
#[derive(Debug)]
pub(crate) struct Control {
    pub(crate) stop_tx: async_channel::Sender<()>,
    pub(crate) done_rx: async_channel::Receiver<()>,
}

impl Drop for Control {
    fn drop(&mut self) {
        // The last handle is gone: the bridge stops by itself.
        self.stop_tx.close();
    }
}

/// Time allowed for the first connection attempt to each NATS URL.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest pause between reconnect attempts.
pub(crate) const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// Time `stop` gives the outbound buffer to drain while NATS is connected.
const STOP_DRAIN: Duration = Duration::from_secs(1);

/// What the thread needs, validated.
pub(crate) struct Setup {
    pub(crate) b: BridgeBuilder,
    pub(crate) token: Option<Secret>,
    pub(crate) servers: Vec<ServerAddr>,
}

pub(crate) async fn start(mut b: BridgeBuilder) -> Result<Bridge> {
    let mut seen = Vec::new();
    b.events.retain(|e| {
        let new = !seen.contains(e);
        seen.push(e.clone());
        new
    });
    if b.events.is_empty() {
        return Err(Error::new(ErrorKind::Config, "no event to bridge: name at least one event"));
    }
    if b.urls.is_empty() {
        return Err(Error::new(ErrorKind::Config, "no NATS URL: give at least one (socket.nats.url, --nats)"));
    }
    let mut servers = Vec::new();
    for url in &b.urls {
        let url = url.trim();
        check_nats_url(url).map_err(|why| Error::new(ErrorKind::Config, format!("invalid NATS URL {url:?}: {why}")))?;
        let addr: ServerAddr = url
            .parse()
            .map_err(|e| Error::new(ErrorKind::Config, format!("invalid NATS URL {url:?}: {e}")).with_source(e))?;
        servers.push(addr);
    }
    if !is_valid_subject_prefix(&b.subject_prefix) {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "invalid subject prefix {:?}: expected dot-separated tokens without spaces, '*' or '>', at most 128 bytes",
                b.subject_prefix
            ),
        ));
    }
    if !(1..=MAX_NATS_OUTBOUND_BUFFER).contains(&b.outbound_buffer) {
        return Err(Error::new(
            ErrorKind::Config,
            format!("invalid outbound buffer {}: expected 1..={MAX_NATS_OUTBOUND_BUFFER}", b.outbound_buffer),
        ));
    }
    let token = match (&b.token_file, &b.token) {
        (Some(path), _) => Some(read_token(path)?),
        (None, token) => token.clone(),
    };
    for (what, path) in [("credentials file", &b.credentials_file), ("TLS CA file", &b.tls_ca_file)] {
        if let Some(path) = path {
            std::fs::metadata(path).map_err(|e| {
                Error::new(ErrorKind::Config, format!("cannot read the NATS {what} {}: {e}", path.display()))
            })?;
        }
    }
    let id = b.id.clone().unwrap_or_else(random_id);
    let shared = new_shared(id);
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    let (done_tx, done_rx) = async_channel::bounded::<()>(1);
    let (ready_tx, ready_rx) = async_channel::bounded(1);
    let setup = Setup { b, token, servers };
    let thread_shared = shared.clone();
    std::thread::Builder::new()
        .name("socket-nats".to_owned())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.try_send(Err(Error::new(
                        ErrorKind::Runtime,
                        format!("cannot start the bridge's runtime: {e}"),
                    )));
                    return;
                }
            };
            rt.block_on(bridge_main(setup, thread_shared, stop_rx, ready_tx));
            drop(done_tx);
        })
        .map_err(|e| Error::new(ErrorKind::Runtime, format!("cannot start the bridge thread: {e}")))?;
    let modes = ready_rx
        .recv()
        .await
        .map_err(|_| Error::new(ErrorKind::Runtime, "the bridge thread ended before it started"))??;
    Ok(Bridge { shared, modes: Arc::new(modes), control: Arc::new(Control { stop_tx, done_rx }) })
}

fn read_token(path: &Path) -> Result<Secret> {
    let meta = std::fs::metadata(path).map_err(|e| {
        Error::new(ErrorKind::Config, format!("cannot read the NATS token file {}: {e}", path.display()))
    })?;
    if meta.len() > 64 << 10 {
        return Err(Error::new(
            ErrorKind::Config,
            format!("the NATS token file {} is larger than 64 KiB: it should hold one token", path.display()),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::new(ErrorKind::Config, format!("cannot read the NATS token file {}: {e}", path.display()))
    })?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(Error::new(
            ErrorKind::Config,
            format!("the NATS token file {} is empty: its first line must be the token", path.display()),
        ));
    }
    Ok(Secret(token.to_owned()))
}

/// The local side of one event.
enum Local {
    Host(Server),
    Attach(Client),
}

struct Link {
    event: EventName,
    subject: String,
    mode: Mode,
    local: Local,
}

async fn open_local(b: &BridgeBuilder, id: &str, event: &EventName) -> Result<Local> {
    let mut opts = ClientOptions::from_config(&b.config)?;
    opts.wait_for_server = false;
    opts.auto_reconnect = true;
    opts.reconnect_max_retries = None;
    opts.client_name = Some(format!("socket-nats {id}"));
    let probe = Client::connect_with_async(b.transport.clone(), event.clone(), b.config.clone(), opts.clone()).await;
    match probe {
        Ok(client) => return Ok(Local::Attach(client)),
        Err(e) if matches!(e.kind(), socket_core::ErrorKind::Connection | socket_core::ErrorKind::Timeout) => {
            tracing::debug!(event = %event, error = %e, "no live server: hosting it");
        }
        Err(e) => return Err(e.into()),
    }
    let mut so = ServerOptions::from_config(&b.config, b.transport.as_ref())?;
    so.relay = true;
    so.allow_client_send = true;
    so.retain_last = so.retain_last || b.retain;
    so.blocking_mode = false;
    // The event stream is how local messages reach NATS: they wait for the bridge's reader
    // (which only moves them into the bounded outbound buffer, never blocking) instead of
    // being dropped from the event stream in a burst.
    so.relay_events_backpressure = true;
    let server = Server::with_options(b.transport.clone(), event.clone(), b.config.clone(), so)?;
    match server.start_async().await {
        Ok(()) => Ok(Local::Host(server)),
        Err(e) if e.kind() == socket_core::ErrorKind::AddrInUse => {
            // A server came up between the probe and the bind: attach to it.
            let client = Client::connect_with_async(b.transport.clone(), event.clone(), b.config.clone(), opts).await?;
            Ok(Local::Attach(client))
        }
        Err(e) => Err(e.into()),
    }
}

async fn close_links(links: &[Link]) {
    for link in links {
        match &link.local {
            Local::Host(server) => {
                if let Err(e) = server.stop_async().await {
                    tracing::warn!(event = %link.event, error = %e, "stopping the hosted server failed");
                }
            }
            Local::Attach(client) => client.disconnect_async().await,
        }
    }
}

async fn bridge_main(
    setup: Setup,
    shared: Arc<Shared>,
    stop_rx: async_channel::Receiver<()>,
    ready_tx: async_channel::Sender<Result<Vec<(EventName, Mode, String)>>>,
) {
    let links = match open_links(&setup.b, &shared).await {
        Ok(links) => links,
        Err(e) => {
            let _ = ready_tx.send(Err(e)).await;
            return;
        }
    };
    let (nats_events_tx, nats_events_rx) = tokio::sync::mpsc::unbounded_channel();
    let (client, waiting) = match connect_nats(&setup, nats_events_tx).await {
        Ok(c) => c,
        Err(e) => {
            close_links(&links).await;
            let _ = ready_tx.send(Err(e)).await;
            return;
        }
    };
    announce(&links, &shared, waiting);
    let modes = links.iter().map(|l| (l.event.clone(), l.mode, l.subject.clone())).collect();
    if ready_tx.send(Ok(modes)).await.is_err() {
        close_links(&links).await;
        return;
    }
    let (connected_tx, connected_rx) = watch::channel(false);
    let outbox = Arc::new(Outbox::new(setup.b.outbound_buffer));
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(watch_nats(client.clone(), nats_events_rx, shared.clone(), connected_tx));
    spawn_links(&mut tasks, &setup.b, &links, &client, &outbox, &shared, &connected_rx);
    let _ = stop_rx.recv().await;
    shut_down(&links, &outbox, &client, &connected_rx, tasks).await;
    drop(client);
    shared.nats_connected.store(false, Ordering::Release);
    shared.emit(BridgeEvent::Stopped { stats: shared.counters.snapshot() });
}

/// Opens the local side of every event: hosts its server or attaches to a live one.
async fn open_links(b: &BridgeBuilder, shared: &Shared) -> Result<Vec<Link>> {
    let mut links = Vec::new();
    for event in &b.events {
        match open_local(b, &shared.id, event).await {
            Ok(local) => {
                let mode = match &local {
                    Local::Host(_) => Mode::Host,
                    Local::Attach(c) => Mode::Attach { relay: c.server_relays() && c.can_send() },
                };
                let subject = format!("{}.{}", b.subject_prefix, event);
                links.push(Link { event: event.clone(), subject, mode, local });
            }
            Err(e) => {
                close_links(&links).await;
                return Err(e);
            }
        }
    }
    Ok(links)
}

/// Says what is bridged how, and whether NATS is still being waited for.
fn announce(links: &[Link], shared: &Shared, waiting: Option<String>) {
    for link in links {
        if link.mode.outbound_only() {
            tracing::warn!(event = %link.event, "the local server does not relay client messages: outbound only");
        }
        shared.emit(BridgeEvent::Bridging {
            event: link.event.clone(),
            mode: link.mode,
            subject: link.subject.clone(),
        });
    }
    if let Some(reason) = waiting {
        tracing::warn!("{reason}");
        shared.emit(BridgeEvent::NatsDisconnected { reason });
    }
}

/// Starts the publisher, and per event its local reader and (unless outbound only) its
/// inbound subscriber.
fn spawn_links(
    tasks: &mut tokio::task::JoinSet<()>,
    b: &BridgeBuilder,
    links: &[Link],
    client: &async_nats::Client,
    outbox: &Arc<Outbox>,
    shared: &Arc<Shared>,
    connected_rx: &watch::Receiver<bool>,
) {
    let (retain_tx, retain_rx) = watch::channel(!b.retain);
    let limits: Limits = b.config.limits();
    tasks.spawn(publisher(
        client.clone(),
        outbox.clone(),
        shared.clone(),
        connected_rx.clone(),
        b.retain.then(|| b.subject_prefix.clone()),
        retain_tx,
    ));
    for link in links {
        let subject: async_nats::Subject = link.subject.clone().into();
        match &link.local {
            Local::Host(server) => {
                let rx = server.events();
                tasks.spawn(host_reader(rx, subject, outbox.clone(), shared.clone(), connected_rx.clone()));
            }
            Local::Attach(c) => {
                tasks.spawn(attach_reader(c.clone(), subject, outbox.clone(), shared.clone(), connected_rx.clone()));
            }
        }
        if link.mode.outbound_only() {
            continue;
        }
        let sink = match &link.local {
            Local::Host(s) => Sink::Host(s.clone()),
            Local::Attach(c) => Sink::Attach(c.clone()),
        };
        tasks.spawn(inbound(
            client.clone(),
            link.event.clone(),
            link.subject.clone(),
            sink,
            limits,
            shared.clone(),
            b.retain.then(|| stream_name(&b.subject_prefix)),
            retain_rx.clone(),
        ));
    }
}

/// Stops: the local side first (no new outbound messages), then what the buffer holds is
/// handed to NATS (at most [`STOP_DRAIN`], while connected), then every task.
async fn shut_down(
    links: &[Link],
    outbox: &Outbox,
    client: &async_nats::Client,
    connected_rx: &watch::Receiver<bool>,
    mut tasks: tokio::task::JoinSet<()>,
) {
    let deadline = tokio::time::Instant::now() + STOP_DRAIN;
    for link in links {
        if let Local::Host(server) = &link.local {
            let _ = server.stop_async().await;
        }
    }
    while !outbox.is_drained() && *connected_rx.borrow() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if *connected_rx.borrow() {
        let _ = tokio::time::timeout_at(deadline, client.flush()).await;
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    close_links(links).await;
}

async fn publisher(
    client: async_nats::Client,
    outbox: Arc<Outbox>,
    shared: Arc<Shared>,
    mut connected: watch::Receiver<bool>,
    retain_prefix: Option<String>,
    retain_ready: watch::Sender<bool>,
) {
    let mut retain_prefix = retain_prefix;
    // The same header on every message: built once, cloned.
    let mut headers = HeaderMap::new();
    headers.insert(origin_name(), shared.id.as_str());
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    loop {
        // Wait for a connection, and for a message.
        while !*connected.borrow_and_update() {
            if connected.changed().await.is_err() {
                return;
            }
        }
        if let Some(prefix) = retain_prefix.take() {
            setup_retain(&client, &prefix, &shared).await;
            let _ = retain_ready.send(true);
        }
        let notified = outbox.notify.notified();
        if outbox.pop_into(&mut batch, PUBLISH_BATCH) == 0 {
            tokio::select! {
                () = notified => {}
                r = connected.changed() => if r.is_err() { return },
            }
            continue;
        }
        // One look at the server's limit per batch (server_info copies the whole INFO).
        let max = client.server_info().max_payload;
        let mut items = batch.drain(..);
        while let Some(item) = items.next() {
            if !*connected.borrow() {
                // Lost NATS while publishing: what is left goes back, in order.
                outbox.unpop(&shared, std::iter::once(item).chain(items.by_ref()).collect());
                break;
            }
            if max > 0 && wire_size(&shared.id, item.payload.len()) > max {
                Counters::add(&shared.counters.oversize);
                tracing::warn!(
                    subject = %item.subject,
                    size = item.payload.len(),
                    max_payload = max,
                    "message larger than the NATS server's max_payload: not published"
                );
                outbox.handed();
                continue;
            }
            // No flush and no wait for the socket: the client writes what it was given as soon
            // as this task yields (at the end of the batch, or when its command channel is full).
            match client.publish_with_headers(item.subject, headers.clone(), item.payload).await {
                Ok(()) => Counters::add(&shared.counters.published),
                Err(e) => {
                    Counters::add(&shared.counters.publish_failed);
                    tracing::warn!(error = %e, "publish to NATS failed");
                }
            }
            outbox.handed();
        }
    }
}

fn encode_body(message: &SocketMessage) -> Option<Bytes> {
    // Straight into the buffer that becomes the payload (no copy of a frame).
    let mut body = Vec::with_capacity(128);
    match socket_core::codec::encode_body(message, &mut body) {
        Ok(()) => Some(Bytes::from(body)),
        Err(e) => {
            tracing::warn!(error = %e, "a local message cannot be encoded: not published");
            None
        }
    }
}

async fn host_reader(
    mut events: socket_core::ServerEvents,
    subject: async_nats::Subject,
    outbox: Arc<Outbox>,
    shared: Arc<Shared>,
    connected: watch::Receiver<bool>,
) {
    let mut batch = VecDeque::with_capacity(PUBLISH_BATCH);
    while let Some(event) = events.next().await {
        // One wake-up of this thread takes every event that is ready (up to a batch): one
        // lock of the outbound buffer and one wake-up of the publisher for all of them.
        let mut next = Some(event);
        while let Some(event) = next.take() {
            match event {
                ServerEvent::Message { message, .. } => {
                    if let Some(payload) = encode_body(&message) {
                        batch.push_back(Outgoing { subject: subject.clone(), payload });
                    }
                }
                // A relay server never waits for its event stream: when this reader fell behind,
                // the oldest local messages were dropped before they reached the outbound buffer.
                // They count as outbound drops, like those of a full buffer.
                ServerEvent::EventsDropped { count } => {
                    shared.counters.dropped.fetch_add(count, Ordering::Relaxed);
                    tracing::warn!(count, "the bridge fell behind the local server: local messages not bridged");
                }
                _ => {}
            }
            if batch.len() < PUBLISH_BATCH {
                next = events.try_recv().ok();
            }
        }
        outbox.push_all_waiting(&shared, &mut batch, &connected).await;
    }
}

async fn attach_reader(
    client: Client,
    subject: async_nats::Subject,
    outbox: Arc<Outbox>,
    shared: Arc<Shared>,
    connected: watch::Receiver<bool>,
) {
    let mut batch = VecDeque::with_capacity(PUBLISH_BATCH);
    loop {
        match client.receive_async(None).await {
            Ok(Some(message)) => {
                // And every message already buffered (up to a batch), without waiting.
                let mut next = Some(message);
                while let Some(message) = next.take() {
                    if !ProtocolControl::is_protocol(&message) {
                        if let Some(payload) = encode_body(&message) {
                            batch.push_back(Outgoing { subject: subject.clone(), payload });
                        }
                    }
                    if batch.len() < PUBLISH_BATCH {
                        // An error (closed) comes again from receive_async, after this batch.
                        next = client.try_receive().ok().flatten();
                    }
                }
                outbox.push_all_waiting(&shared, &mut batch, &connected).await;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(event = %client.event(), error = %e, "the attached local client ended");
                shared.emit(BridgeEvent::Warning {
                    message: format!("the local server of {} is gone: {e}", client.event()),
                });
                return;
            }
        }
    }
}
