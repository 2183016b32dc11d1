//! The bridge thread: one current-thread tokio runtime running the NATS
//! client, the local readers and the publisher.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions, HeaderMap, HeaderName, ServerAddr};
use bytes::Bytes;
use futures_lite::StreamExt;
use socket_core::codec::{decode_body_for, Frame, Limits};
use socket_core::config::{check_nats_url, is_valid_subject_prefix, MAX_NATS_OUTBOUND_BUFFER};
use socket_core::control::Control as ProtocolControl;
use socket_core::{Client, ClientOptions, EventName, Server, ServerEvent, ServerOptions, SocketMessage};
use tokio::sync::{watch, Notify};

use crate::{
    new_shared, random_id, Bridge, BridgeBuilder, BridgeEvent, Counters, Error, ErrorKind, Mode, Result, Secret,
    Shared, ORIGIN_HEADER,
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
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest pause between reconnect attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// Time `stop` gives the outbound buffer to drain while NATS is connected.
const STOP_DRAIN: Duration = Duration::from_secs(1);

/// What the thread needs, validated.
struct Setup {
    b: BridgeBuilder,
    token: Option<Secret>,
    servers: Vec<ServerAddr>,
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

fn connect_options(setup: &Setup, events: tokio::sync::mpsc::UnboundedSender<async_nats::Event>) -> ConnectOptions {
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

async fn with_credentials(setup: &Setup, o: ConnectOptions) -> Result<ConnectOptions> {
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
async fn connect_nats(
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
fn is_tls_failure(e: &async_nats::ConnectError) -> bool {
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

/// One outbound message.
struct Outgoing {
    subject: async_nats::Subject,
    payload: Bytes,
}

/// The bounded outbound buffer: the oldest message is dropped when it is full.
///
/// While NATS is connected, a full buffer is a burst that the publisher has not caught up
/// with yet: the local reader waits for room ([`Outbox::push_all_waiting`], at most
/// [`OUTBOX_FULL_WAIT`]), so a healthy but busy link loses nothing. While NATS is down (or
/// the publisher makes no progress for that long), the oldest message is dropped at once
/// and counted, so local delivery is never held up for long by NATS.
struct Outbox {
    queue: Mutex<VecDeque<Outgoing>>,
    capacity: usize,
    /// A message was pushed (wakes the publisher).
    notify: Notify,
    /// A message was taken (wakes readers waiting for room).
    room: Notify,
    /// A wait for room timed out and the buffer has not drained to half since.
    stalled: AtomicBool,
    /// Messages the publisher has taken and not yet handed to the NATS client (changed under
    /// the queue's lock when taken or put back, so that "empty and none in flight" is exact).
    in_flight: AtomicUsize,
}

/// Longest time a local reader waits for room in a full outbound buffer while NATS is
/// connected, before the oldest message is dropped. After such a timeout the buffer is
/// stalled: pushes drop at once until the publisher has emptied half of it.
const OUTBOX_FULL_WAIT: Duration = Duration::from_secs(1);

impl Outbox {
    fn new(capacity: usize) -> Self {
        Outbox {
            queue: Mutex::new(VecDeque::new()),
            capacity,
            notify: Notify::new(),
            room: Notify::new(),
            stalled: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Pushes `item` alone (see [`push_all_waiting`](Self::push_all_waiting)).
    #[cfg(test)]
    async fn push_waiting(&self, shared: &Shared, item: Outgoing, connected: &watch::Receiver<bool>) {
        let mut one = VecDeque::from([item]);
        self.push_all_waiting(shared, &mut one, connected).await;
    }

    /// Pushes every item of `items` in order (it is left empty), each as if pushed alone:
    /// while NATS is connected and the buffer is full, it waits for room, at most
    /// [`OUTBOX_FULL_WAIT`] without progress, then drops the oldest. Takes the lock and wakes
    /// the publisher once per run of items that fit, not once per item.
    async fn push_all_waiting(
        &self,
        shared: &Shared,
        items: &mut VecDeque<Outgoing>,
        connected: &watch::Receiver<bool>,
    ) {
        let mut deadline = tokio::time::Instant::now() + OUTBOX_FULL_WAIT;
        while !items.is_empty() {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let moved = {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                if !*connected.borrow() || self.stalled.load(Ordering::Acquire) {
                    let n = items.len();
                    for item in items.drain(..) {
                        self.push_locked(&mut q, shared, item);
                    }
                    n
                } else {
                    let n = self.capacity.saturating_sub(q.len()).min(items.len());
                    q.extend(items.drain(..n));
                    n
                }
            };
            if moved > 0 {
                self.notify.notify_one();
                deadline = tokio::time::Instant::now() + OUTBOX_FULL_WAIT;
            }
            if items.is_empty() {
                break;
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                self.stalled.store(true, Ordering::Release);
                tracing::warn!(
                    capacity = self.capacity,
                    "NATS publishing makes no progress: outbound messages are dropped until it catches up"
                );
            }
        }
    }

    #[cfg(test)]
    fn push(&self, shared: &Shared, item: Outgoing) {
        {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            self.push_locked(&mut q, shared, item);
        }
        self.notify.notify_one();
    }

    /// Appends `item`, dropping (and counting) the oldest message if the buffer is full.
    fn push_locked(&self, q: &mut VecDeque<Outgoing>, shared: &Shared, item: Outgoing) {
        if q.len() >= self.capacity {
            q.pop_front();
            count_dropped(shared, self.capacity, 1);
        }
        q.push_back(item);
    }

    #[cfg(test)]
    fn pop(&self) -> Option<Outgoing> {
        let mut one = Vec::with_capacity(1);
        self.pop_into(&mut one, 1);
        one.pop()
    }

    /// Moves up to `max` of the oldest messages into `out`, in order, under one lock, and
    /// wakes the readers waiting for room once. Returns how many.
    fn pop_into(&self, out: &mut Vec<Outgoing>, max: usize) -> usize {
        let (n, left) = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            let n = q.len().min(max);
            out.extend(q.drain(..n));
            self.in_flight.fetch_add(n, Ordering::AcqRel);
            (n, q.len())
        };
        if n > 0 {
            if left <= self.capacity / 2 {
                self.stalled.store(false, Ordering::Release);
            }
            self.room.notify_waiters();
        }
        n
    }

    /// Puts back `rest` (taken by [`pop_into`](Self::pop_into) but not published), in order,
    /// before what the buffer holds; if that overfills it, the oldest are dropped and counted.
    fn unpop(&self, shared: &Shared, rest: Vec<Outgoing>) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        self.in_flight.fetch_sub(rest.len(), Ordering::AcqRel);
        for item in rest.into_iter().rev() {
            q.push_front(item);
        }
        let over = q.len().saturating_sub(self.capacity);
        if over > 0 {
            q.drain(..over);
            count_dropped(shared, self.capacity, over as u64);
        }
    }

    /// The publisher handed one message it had taken to the NATS client (or gave up on it).
    fn handed(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Nothing buffered and nothing taken by the publisher but not yet handed on.
    fn is_drained(&self) -> bool {
        let q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.is_empty() && self.in_flight.load(Ordering::Acquire) == 0
    }
}

/// Most messages the publisher takes from the outbound buffer at once, and most events a
/// local reader moves into it at once.
const PUBLISH_BATCH: usize = 128;

/// [`ORIGIN_HEADER`] as a header name, without an allocation.
fn origin_name() -> HeaderName {
    HeaderName::from_static(ORIGIN_HEADER)
}

/// Counts `n` outbound messages dropped from a full buffer (logged at 1, 2, 4, 8 … drops).
fn count_dropped(shared: &Shared, capacity: usize, n: u64) {
    let before = shared.counters.dropped.fetch_add(n, Ordering::Relaxed);
    if (before + 1..=before + n).any(u64::is_power_of_two) {
        tracing::warn!(dropped = before + n, capacity, "outbound buffer full: oldest message dropped");
    }
}

/// The size NATS counts for a message with our header: the header block plus the payload.
fn wire_size(id: &str, payload: usize) -> usize {
    // "NATS/1.0\r\n" + "Socket-Origin: <id>\r\n" + "\r\n"
    10 + ORIGIN_HEADER.len() + 2 + id.len() + 2 + 2 + payload
}

async fn bridge_main(
    setup: Setup,
    shared: Arc<Shared>,
    stop_rx: async_channel::Receiver<()>,
    ready_tx: async_channel::Sender<Result<Vec<(EventName, Mode, String)>>>,
) {
    let b = &setup.b;
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
                let _ = ready_tx.send(Err(e)).await;
                return;
            }
        }
    }
    let (nats_events_tx, nats_events_rx) = tokio::sync::mpsc::unbounded_channel();
    let (client, waiting) = match connect_nats(&setup, nats_events_tx).await {
        Ok(c) => c,
        Err(e) => {
            close_links(&links).await;
            let _ = ready_tx.send(Err(e)).await;
            return;
        }
    };
    for link in &links {
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
    let modes = links.iter().map(|l| (l.event.clone(), l.mode, l.subject.clone())).collect();
    if ready_tx.send(Ok(modes)).await.is_err() {
        close_links(&links).await;
        return;
    }

    let (connected_tx, connected_rx) = watch::channel(false);
    let (retain_tx, retain_rx) = watch::channel(!b.retain);
    let outbox = Arc::new(Outbox::new(b.outbound_buffer));
    let limits: Limits = b.config.limits();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(watch_nats(client.clone(), nats_events_rx, shared.clone(), connected_tx));
    tasks.spawn(publisher(
        client.clone(),
        outbox.clone(),
        shared.clone(),
        connected_rx.clone(),
        b.retain.then(|| b.subject_prefix.clone()),
        retain_tx,
    ));
    for link in &links {
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
        if !link.mode.outbound_only() {
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

    let _ = stop_rx.recv().await;

    // Stop: the local side first (no new outbound messages), then what the buffer holds.
    let deadline = tokio::time::Instant::now() + STOP_DRAIN;
    for link in &links {
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
    close_links(&links).await;
    drop(client);
    shared.nats_connected.store(false, Ordering::Release);
    shared.emit(BridgeEvent::Stopped { stats: shared.counters.snapshot() });
}

/// Name of the JetStream stream that retains the last message of each subject under `prefix`.
fn stream_name(prefix: &str) -> String {
    let clean: String =
        prefix.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("SOCKET_RETAIN_{clean}")
}

async fn watch_nats(
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

async fn setup_retain(client: &async_nats::Client, prefix: &str, shared: &Shared) {
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

fn warn_retain(shared: &Shared, why: String) {
    let message = format!("--retain does not work: {why} (is JetStream enabled on the NATS servers?)");
    tracing::warn!("{message}");
    shared.emit(BridgeEvent::Warning { message });
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

/// Where messages from other hosts go.
enum Sink {
    Host(Server),
    Attach(Client),
}

/// Checks a payload from NATS: a valid message of `event`, not protocol control.
fn check_payload(payload: &[u8], event: &EventName, limits: &Limits) -> std::result::Result<SocketMessage, String> {
    if payload.is_empty() || payload.len() > limits.max_frame_len {
        return Err(format!("{} bytes, outside 1..={} (max_message_size)", payload.len(), limits.max_frame_len));
    }
    let msg = decode_body_for(payload, limits, event).map_err(|e| e.to_string())?;
    if msg.event_name != *event {
        return Err(format!("it names event {:?}", msg.event_name.as_str()));
    }
    if ProtocolControl::is_protocol(&msg) {
        return Err("it is protocol control, which never crosses hosts".to_owned());
    }
    Ok(msg)
}

impl Sink {
    async fn deliver(&self, payload: &[u8], msg: &SocketMessage, shared: &Shared) {
        let result = match self {
            // The exact bytes that came, once checked.
            Sink::Host(server) => Frame::from_body(payload, usize::MAX).and_then(|f| server.broadcast_frame(f)),
            Sink::Attach(client) => client.send_async(msg).await,
        };
        match result {
            Ok(()) => Counters::add(&shared.counters.received),
            Err(e) => {
                Counters::add(&shared.counters.inbound_dropped);
                tracing::warn!(event = %msg.event_name, error = %e, "a message from another host could not be delivered locally");
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn inbound(
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
                    sink.deliver(payload, &msg, &shared).await;
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
            Ok(msg) => sink.deliver(&message.payload, &msg, &shared).await,
            Err(why) => bad_payload(&shared, &subject, &why),
        }
    }
}

fn bad_payload(shared: &Shared, subject: &str, why: &str) {
    let n = shared.counters.bad_payload.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::warn!(subject, bad_payloads = n, "message from NATS is not a valid message of its event: dropped ({why})");
}

async fn fetch_retained(client: &async_nats::Client, stream: &str, subject: &str, shared: &Shared) -> Option<Bytes> {
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
        assert_eq!(check_payload(&body, &event, &limits)?, good);
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

    #[test]
    fn header_size_is_counted_against_max_payload() {
        let id = "0123456789abcdef";
        assert_eq!(wire_size(id, 0), "NATS/1.0\r\nSocket-Origin: 0123456789abcdef\r\n\r\n".len());
    }

    #[test]
    fn a_full_outbound_buffer_drops_the_oldest_and_counts_each() {
        let shared = new_shared("x".to_owned());
        let outbox = Outbox::new(2);
        for n in 0u8..5 {
            outbox.push(&shared, Outgoing { subject: "s".into(), payload: Bytes::from(vec![n]) });
        }
        assert_eq!(shared.counters.snapshot().dropped, 3);
        let left: Vec<u8> = std::iter::from_fn(|| outbox.pop()).map(|o| o.payload[0]).collect();
        assert_eq!(left, [3, 4], "the newest are kept, in order");
    }

    fn item(n: u8) -> Outgoing {
        Outgoing { subject: "s".into(), payload: Bytes::from(vec![n]) }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_buffer_waits_for_the_publisher_while_nats_is_connected() {
        let shared = new_shared("x".to_owned());
        let outbox = Arc::new(Outbox::new(2));
        let (_tx, connected) = watch::channel(true);
        outbox.push_waiting(&shared, item(0), &connected).await;
        outbox.push_waiting(&shared, item(1), &connected).await;
        // The third waits until the publisher takes one: nothing is dropped.
        let taker = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                outbox.pop().map(|o| o.payload[0])
            })
        };
        outbox.push_waiting(&shared, item(2), &connected).await;
        assert_eq!(taker.await.ok().flatten(), Some(0));
        assert_eq!(shared.counters.snapshot().dropped, 0);
        let left: Vec<u8> = std::iter::from_fn(|| outbox.pop()).map(|o| o.payload[0]).collect();
        assert_eq!(left, [1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_buffer_that_stays_full_drops_after_the_wait_and_then_at_once() {
        let shared = new_shared("x".to_owned());
        let outbox = Outbox::new(2);
        let (_tx, connected) = watch::channel(true);
        for n in 0..2 {
            outbox.push_waiting(&shared, item(n), &connected).await;
        }
        let started = tokio::time::Instant::now();
        outbox.push_waiting(&shared, item(2), &connected).await;
        assert_eq!(started.elapsed(), OUTBOX_FULL_WAIT, "one wait, bounded");
        // Stalled: the next pushes drop at once.
        let started = tokio::time::Instant::now();
        outbox.push_waiting(&shared, item(3), &connected).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(shared.counters.snapshot().dropped, 2);
        // Drained to half: waiting again.
        assert!(outbox.pop().is_some());
        assert!(!outbox.stalled.load(Ordering::Acquire));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_buffer_drops_at_once_while_nats_is_down() {
        let shared = new_shared("x".to_owned());
        let outbox = Outbox::new(1);
        let (_tx, connected) = watch::channel(false);
        let started = tokio::time::Instant::now();
        for n in 0..3 {
            outbox.push_waiting(&shared, item(n), &connected).await;
        }
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(shared.counters.snapshot().dropped, 2);
    }

    fn payloads(items: impl IntoIterator<Item = Outgoing>) -> Vec<u8> {
        items.into_iter().map(|o| o.payload[0]).collect()
    }

    #[test]
    fn a_batch_is_taken_in_order_and_what_is_put_back_comes_first() {
        let shared = new_shared("x".to_owned());
        let outbox = Outbox::new(4);
        for n in 0..4 {
            outbox.push(&shared, item(n));
        }
        let mut batch = Vec::new();
        assert_eq!(outbox.pop_into(&mut batch, 3), 3);
        assert_eq!(payloads(batch.drain(..)), [0, 1, 2]);
        // Not published (NATS lost): 1 and 2 go back before 3, and newer ones after it.
        outbox.push(&shared, item(4));
        outbox.unpop(&shared, vec![item(1), item(2)]);
        assert_eq!(shared.counters.snapshot().dropped, 0);
        assert_eq!(outbox.pop_into(&mut batch, 10), 4);
        assert_eq!(payloads(batch.drain(..)), [1, 2, 3, 4]);
    }

    #[test]
    fn a_taken_batch_counts_as_not_drained_until_each_is_handed_on_or_put_back() {
        let shared = new_shared("x".to_owned());
        let outbox = Outbox::new(4);
        for n in 0..3 {
            outbox.push(&shared, item(n));
        }
        let mut batch = Vec::new();
        outbox.pop_into(&mut batch, 10);
        assert!(!outbox.is_drained(), "the publisher still holds 3");
        outbox.handed();
        outbox.unpop(&shared, batch.split_off(1));
        assert!(!outbox.is_drained(), "2 are back in the buffer");
        outbox.pop_into(&mut batch, 10);
        outbox.handed();
        assert!(!outbox.is_drained(), "one is still held");
        outbox.handed();
        assert!(outbox.is_drained());
    }

    #[test]
    fn putting_back_into_a_full_buffer_drops_the_oldest_and_counts_them() {
        let shared = new_shared("x".to_owned());
        let outbox = Outbox::new(3);
        for n in 3..6 {
            outbox.push(&shared, item(n));
        }
        outbox.unpop(&shared, vec![item(0), item(1), item(2)]);
        assert_eq!(shared.counters.snapshot().dropped, 3);
        let mut batch = Vec::new();
        outbox.pop_into(&mut batch, 10);
        assert_eq!(payloads(batch), [3, 4, 5], "the newest are kept, in order");
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_larger_than_the_room_waits_for_the_publisher_and_loses_nothing() {
        let shared = new_shared("x".to_owned());
        let outbox = Arc::new(Outbox::new(3));
        let (_tx, connected) = watch::channel(true);
        let publisher = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                while got.len() < 10 {
                    let notified = outbox.notify.notified();
                    let mut batch = Vec::new();
                    if outbox.pop_into(&mut batch, 2) == 0 {
                        notified.await;
                    }
                    got.extend(payloads(batch));
                    // A slow publisher: slower than one wait per item, never stalled for long.
                    tokio::time::sleep(OUTBOX_FULL_WAIT / 4).await;
                }
                got
            })
        };
        let mut items: VecDeque<Outgoing> = (0..10).map(item).collect();
        outbox.push_all_waiting(&shared, &mut items, &connected).await;
        assert!(items.is_empty());
        assert_eq!(publisher.await.ok(), Some((0..10).collect::<Vec<u8>>()));
        assert_eq!(shared.counters.snapshot().dropped, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_into_a_buffer_that_stays_full_drops_the_oldest_after_one_wait() {
        let shared = new_shared("x".to_owned());
        let outbox = Outbox::new(2);
        let (_tx, connected) = watch::channel(true);
        let started = tokio::time::Instant::now();
        let mut items: VecDeque<Outgoing> = (0..5).map(item).collect();
        outbox.push_all_waiting(&shared, &mut items, &connected).await;
        assert_eq!(started.elapsed(), OUTBOX_FULL_WAIT, "one wait, bounded");
        assert_eq!(shared.counters.snapshot().dropped, 3);
        assert!(outbox.stalled.load(Ordering::Acquire));
        let mut batch = Vec::new();
        outbox.pop_into(&mut batch, 10);
        assert_eq!(payloads(batch), [3, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_drops_at_once_while_nats_is_down() {
        let shared = new_shared("x".to_owned());
        let outbox = Outbox::new(2);
        let (_tx, connected) = watch::channel(false);
        let started = tokio::time::Instant::now();
        let mut items: VecDeque<Outgoing> = (0..5).map(item).collect();
        outbox.push_all_waiting(&shared, &mut items, &connected).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(shared.counters.snapshot().dropped, 3);
        let mut batch = Vec::new();
        outbox.pop_into(&mut batch, 10);
        assert_eq!(payloads(batch), [3, 4]);
    }

    #[test]
    fn stream_names_have_no_dots() {
        assert_eq!(stream_name("home.desk-1"), "SOCKET_RETAIN_HOME_DESK_1");
    }
}
