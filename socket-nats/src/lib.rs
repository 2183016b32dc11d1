//! A bridge from this host's `socket` event servers to a NATS deployment,
//! so that events reach other hosts (SPEC section 8, `docs/multi-host.md`).
//!
//! One [`Bridge`] serves one or more events. For each event it either
//! **hosts** the local server itself (relay on), when no live server exists
//! for the event, or **attaches** as a client to the live server an
//! application runs ([`Mode`]). Every DATA, ERROR and application CONTROL
//! message broadcast on the local server is published once on the subject
//! `{subject_prefix}.{event_name}`, its payload the MessagePack body exactly
//! as on the local wire and its header `Socket-Origin` the bridge id; every
//! message published by another host is broadcast to the local clients. The
//! NATS connection uses `no_echo` and the bridge never republishes what came
//! from NATS, so nothing loops or arrives twice, however many hosts there are.
//!
//! The crate is written on the public API of `socket-core` only. The official
//! `async-nats` client needs tokio: it runs on the bridge's own thread (one
//! current-thread runtime), and the application talks to it over channels.
//! The application never needs tokio.
//!
//! # Examples
//!
//! ```no_run
//! # fn demo(transport: std::sync::Arc<dyn socket_core::Transport>) -> socket_nats::Result<()> {
//! use socket_core::{Config, EventName};
//! use socket_nats::{Bridge, BridgeEvent};
//!
//! let config = Config::load()?;
//! let bridge = Bridge::builder(transport, config)
//!     .event(EventName::new("system_status")?)
//!     .urls(["nats://10.0.0.2:4222", "nats://10.0.0.3:4222"])
//!     .start()?; // returns once the local side is up; NATS may still be unreachable
//! let events = bridge.events();
//! while let Ok(event) = events.recv_blocking() {
//!     if let BridgeEvent::NatsConnected { server } = &event {
//!         println!("across hosts through {server}");
//!     }
//! #   break;
//! }
//! bridge.stop();
//! println!("{:?}", bridge.stats());
//! # Ok(()) }
//! ```

mod error;
mod inbound;
mod nats;
mod outbox;
mod run;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use socket_core::{Config, EventName, Transport};

pub use error::{Error, ErrorKind, Result};

/// Name of the header that carries the id of the bridge that published a message.
pub const ORIGIN_HEADER: &str = "Socket-Origin";

/// Environment variable read by [`BridgeBuilder::secrets_from_env`] for the token.
pub const TOKEN_ENV: &str = "SOCKET_NATS_TOKEN";
/// Environment variable read by [`BridgeBuilder::secrets_from_env`] for the user name.
pub const USER_ENV: &str = "SOCKET_NATS_USER";
/// Environment variable read by [`BridgeBuilder::secrets_from_env`] for the password.
pub const PASSWORD_ENV: &str = "SOCKET_NATS_PASSWORD";

/// How the bridge serves one event on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No live server existed: the bridge hosts it (relay on).
    Host,
    /// An application's live server exists: the bridge is one of its clients.
    Attach {
        /// The server relays client messages (`welcome.relay`) and accepts them:
        /// messages from other hosts are injected. When false the bridge is
        /// outbound only for this event.
        relay: bool,
    },
}

impl Mode {
    /// `"host"` or `"attach"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Host => "host",
            Mode::Attach { .. } => "attach",
        }
    }

    /// True if messages from other hosts cannot be delivered to this event's local clients.
    pub fn outbound_only(self) -> bool {
        matches!(self, Mode::Attach { relay: false })
    }
}

/// Something that happened on a bridge (its state stream, [`Bridge::events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BridgeEvent {
    /// One event is bridged (sent once per event at start).
    Bridging {
        /// The event.
        event: EventName,
        /// How it is served here.
        mode: Mode,
        /// The NATS subject.
        subject: String,
    },
    /// The NATS connection is up (at start or after a reconnect).
    NatsConnected {
        /// The server, as `host:port` (and its name when it has one).
        server: String,
    },
    /// The NATS connection is down (or NATS was unreachable at start); the
    /// bridge reconnects by itself, and local delivery goes on.
    NatsDisconnected {
        /// Why, in words.
        reason: String,
    },
    /// Something the operator should know that does not stop the bridge
    /// (a refused re-authentication, `--retain` without JetStream, ...).
    Warning {
        /// What happened.
        message: String,
    },
    /// The bridge stopped (the last event).
    Stopped {
        /// Its counters at the end.
        stats: BridgeStats,
    },
}

/// Counters of a bridge since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BridgeStats {
    /// Local messages handed to NATS.
    pub published: u64,
    /// Messages from other hosts delivered to the local side.
    pub received: u64,
    /// Outbound messages dropped, oldest first, because the outbound buffer was full (or,
    /// hosting, because the bridge fell behind the local relay server's event stream).
    pub dropped: u64,
    /// Outbound messages not published because they exceed the NATS server's `max_payload`.
    pub oversize: u64,
    /// Outbound messages the NATS client refused (its connection closed for good).
    pub publish_failed: u64,
    /// Messages from NATS dropped because they are not a valid message of their event.
    pub bad_payload: u64,
    /// Messages from other hosts that could not be handed to the local server (attach mode).
    pub inbound_dropped: u64,
    /// Retained messages (`--retain`) delivered at start.
    pub retained: u64,
}

impl BridgeStats {
    /// Outbound messages that did not reach NATS: `dropped + oversize + publish_failed`.
    pub fn not_published(&self) -> u64 {
        self.dropped + self.oversize + self.publish_failed
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) oversize: AtomicU64,
    pub(crate) publish_failed: AtomicU64,
    pub(crate) bad_payload: AtomicU64,
    pub(crate) inbound_dropped: AtomicU64,
    pub(crate) retained: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> BridgeStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BridgeStats {
            published: l(&self.published),
            received: l(&self.received),
            dropped: l(&self.dropped),
            oversize: l(&self.oversize),
            publish_failed: l(&self.publish_failed),
            bad_payload: l(&self.bad_payload),
            inbound_dropped: l(&self.inbound_dropped),
            retained: l(&self.retained),
        }
    }
}

/// State shared by the handles and the bridge thread.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) id: String,
    pub(crate) counters: Counters,
    pub(crate) nats_connected: AtomicBool,
    pub(crate) events_tx: async_channel::Sender<BridgeEvent>,
    events_rx: async_channel::Receiver<BridgeEvent>,
}

impl Shared {
    /// Sends `event` on the state stream; when nobody reads it, the oldest event is dropped.
    pub(crate) fn emit(&self, event: BridgeEvent) {
        let _ = self.events_tx.force_send(event);
    }
}

/// Events kept on the state stream when nobody reads it.
const EVENT_BACKLOG: usize = 1024;

/// Builds and starts a [`Bridge`]. Settings start from `[socket.nats]` of the configuration.
///
/// # Examples
///
/// ```no_run
/// # fn demo(transport: std::sync::Arc<dyn socket_core::Transport>) -> socket_nats::Result<()> {
/// use socket_core::{Config, EventName};
///
/// let bridge = socket_nats::Bridge::builder(transport, Config::default())
///     .event(EventName::new("wallpaper_change")?)
///     .urls(["tls://nats.example.org:4222"])
///     .tls_ca_file("/etc/socket/nats-ca.pem")
///     .credentials_file("/etc/socket/desk.creds")
///     .retain(true)
///     .start()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct BridgeBuilder {
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) config: Config,
    pub(crate) events: Vec<EventName>,
    pub(crate) urls: Vec<String>,
    pub(crate) subject_prefix: String,
    pub(crate) credentials_file: Option<PathBuf>,
    pub(crate) token_file: Option<PathBuf>,
    pub(crate) token: Option<Secret>,
    pub(crate) user_password: Option<(String, Secret)>,
    pub(crate) tls_ca_file: Option<PathBuf>,
    pub(crate) retain: bool,
    pub(crate) outbound_buffer: usize,
    pub(crate) id: Option<String>,
}

/// A secret that `Debug` never prints.
#[derive(Clone)]
pub(crate) struct Secret(pub(crate) String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

impl BridgeBuilder {
    /// Events to bridge (added to those given before).
    pub fn events(mut self, events: impl IntoIterator<Item = EventName>) -> Self {
        self.events.extend(events);
        self
    }

    /// One event to bridge (added to those given before).
    pub fn event(mut self, event: EventName) -> Self {
        self.events.push(event);
        self
    }

    /// NATS server URLs (replacing `socket.nats.url`).
    pub fn urls<S: Into<String>>(mut self, urls: impl IntoIterator<Item = S>) -> Self {
        self.urls = urls.into_iter().map(Into::into).collect();
        self
    }

    /// Subject prefix (default `socket`): subjects are `{prefix}.{event_name}`.
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.subject_prefix = prefix.into();
        self
    }

    /// A NATS `.creds` file (user JWT and NKey seed).
    pub fn credentials_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.credentials_file = Some(path.into());
        self
    }

    /// A file whose first line is the authentication token.
    pub fn token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.token_file = Some(path.into());
        self
    }

    /// The authentication token itself (from wherever the application keeps it).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Secret(token.into()));
        self
    }

    /// User name and password.
    pub fn user_and_password(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user_password = Some((user.into(), Secret(password.into())));
        self
    }

    /// Reads [`TOKEN_ENV`], [`USER_ENV`] and [`PASSWORD_ENV`] from `vars`
    /// (pass `std::env::vars()`); an empty value counts as unset.
    pub fn secrets_from_env<K: AsRef<str>, V: Into<String>>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self {
        let (mut user, mut password) = (None, None);
        for (k, v) in vars {
            let v: String = v.into();
            if v.is_empty() {
                continue;
            }
            match k.as_ref() {
                TOKEN_ENV => self.token = Some(Secret(v)),
                USER_ENV => user = Some(v),
                PASSWORD_ENV => password = Some(v),
                _ => {}
            }
        }
        if let (Some(user), Some(password)) = (user, password) {
            self.user_password = Some((user, Secret(password)));
        }
        self
    }

    /// A PEM file of CA certificates for the servers' TLS certificates; it requires TLS.
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_ca_file = Some(path.into());
        self
    }

    /// Keep the last message of each subject in JetStream and deliver it first to late joiners.
    pub fn retain(mut self, retain: bool) -> Self {
        self.retain = retain;
        self
    }

    /// Outbound messages kept while NATS is unreachable (default 1024).
    pub fn outbound_buffer(mut self, n: usize) -> Self {
        self.outbound_buffer = n;
        self
    }

    /// The bridge id sent in `Socket-Origin` (default: random, new at each start).
    pub fn bridge_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Starts the bridge: opens the local side of every event (host or
    /// attach), then connects to NATS. Returns once the local side is up.
    ///
    /// An unreachable NATS is not an error: the bridge reports
    /// [`BridgeEvent::NatsDisconnected`] and keeps trying, and local
    /// delivery works meanwhile.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] for an invalid URL, subject prefix, unreadable
    /// token or credentials file, or no event; [`ErrorKind::Auth`] if NATS
    /// refused the authentication; [`ErrorKind::Tls`] if the TLS handshake
    /// failed; [`ErrorKind::Local`] if the local server cannot be hosted or
    /// attached to.
    pub async fn start_async(self) -> Result<Bridge> {
        run::start(self).await
    }

    /// Blocking [`start_async`](Self::start_async).
    ///
    /// # Blocking
    ///
    /// Blocks until the local side is up and the first NATS connection
    /// attempt has succeeded or failed (a few seconds at most).
    ///
    /// # Errors
    ///
    /// See [`start_async`](Self::start_async).
    pub fn start(self) -> Result<Bridge> {
        futures_lite::future::block_on(self.start_async())
    }
}

/// A running bridge. Cheap to clone; dropping the last handle stops it.
///
/// # Examples
///
/// ```no_run
/// # fn demo(bridge: socket_nats::Bridge) {
/// for (event, mode) in bridge.modes() {
///     println!("{event}: {}{}", mode.as_str(), if mode.outbound_only() { " (outbound only)" } else { "" });
/// }
/// bridge.stop();
/// assert_eq!(bridge.stats().bad_payload, 0);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Bridge {
    pub(crate) shared: Arc<Shared>,
    pub(crate) modes: Arc<Vec<(EventName, Mode, String)>>,
    pub(crate) control: Arc<run::Control>,
}

impl Bridge {
    /// A builder for a bridge whose local side uses `transport` and `config`
    /// (its `[socket.nats]` table gives the NATS settings).
    pub fn builder(transport: Arc<dyn Transport>, config: Config) -> BridgeBuilder {
        let n = config.socket.nats.clone();
        BridgeBuilder {
            transport,
            config,
            events: Vec::new(),
            urls: n.url,
            subject_prefix: n.subject_prefix,
            credentials_file: n.credentials_file,
            token_file: n.token_file,
            token: None,
            user_password: None,
            tls_ca_file: n.tls_ca_file,
            retain: n.retain,
            outbound_buffer: n.outbound_buffer,
            id: None,
        }
    }

    /// The bridge id (the `Socket-Origin` header of what it publishes).
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Each event with its mode and NATS subject.
    pub fn modes(&self) -> Vec<(EventName, Mode)> {
        self.modes.iter().map(|(e, m, _)| (e.clone(), *m)).collect()
    }

    /// The NATS subject of `event`, if it is bridged.
    pub fn subject(&self, event: &EventName) -> Option<&str> {
        self.modes.iter().find(|(e, _, _)| e == event).map(|(_, _, s)| s.as_str())
    }

    /// The state stream: [`BridgeEvent`]s in order, an async
    /// [`Stream`](futures_lite::Stream) with `recv_blocking` for threads.
    /// Clones share one stream (each event goes to one reader). Beyond 1024
    /// unread events the oldest are dropped.
    pub fn events(&self) -> async_channel::Receiver<BridgeEvent> {
        self.shared.events_rx.clone()
    }

    /// Counters so far.
    pub fn stats(&self) -> BridgeStats {
        self.shared.counters.snapshot()
    }

    /// True while the NATS connection is up.
    pub fn is_nats_connected(&self) -> bool {
        self.shared.nats_connected.load(Ordering::Acquire)
    }

    /// True until the bridge has stopped.
    pub fn is_running(&self) -> bool {
        !self.control.done_rx.is_closed()
    }

    /// Stops the bridge: publishes what the outbound buffer still holds
    /// (for at most about one second while NATS is connected), stops the
    /// hosted servers, leaves the attached ones, closes NATS, and sends
    /// [`BridgeEvent::Stopped`]. Idempotent.
    pub async fn stop_async(&self) {
        self.control.stop_tx.close();
        while self.control.done_rx.recv().await.is_ok() {}
    }

    /// Blocking [`stop_async`](Self::stop_async).
    ///
    /// # Blocking
    ///
    /// Blocks for at most about two seconds.
    pub fn stop(&self) {
        futures_lite::future::block_on(self.stop_async());
    }

    /// Waits until the bridge has stopped (by [`stop`](Self::stop) from another handle).
    pub async fn wait_stopped(&self) {
        while self.control.done_rx.recv().await.is_ok() {}
    }
}

pub(crate) fn new_shared(id: String) -> Arc<Shared> {
    let (events_tx, events_rx) = async_channel::bounded(EVENT_BACKLOG);
    Arc::new(Shared { id, counters: Counters::default(), nats_connected: AtomicBool::new(false), events_tx, events_rx })
}

/// A random bridge id: 16 hex digits.
pub(crate) fn random_id() -> String {
    format!("{:016x}", fastrand::u64(..))
}
