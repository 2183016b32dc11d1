//! A seeded, fault-injecting in-memory network, written as a transport
//! plug-in (RELIABILITY.md R5).
//!
//! [`FaultyTransport`] carries connections over bounded in-process pipes,
//! like [`crate::memory`], and wraps both ends of every connection so the
//! network between client and server can misbehave:
//!
//! - **Chunk faults** ([`ChunkFaults`], on by default): a read or a write may
//!   be cut to a random shorter length (frames arrive split at any byte), and
//!   after a chunk is read the next read may wait a random pause (delay).
//! - **Hold** ([`FaultyTransport::hold`] … [`release`](FaultyTransport::release)):
//!   nothing is forwarded either way; writes still fill the bounded pipe
//!   (like a socket's send buffer), then stall. On release everything
//!   written arrives, in order.
//! - **Partition** ([`FaultyTransport::partition`] … [`heal`](FaultyTransport::heal)):
//!   every open connection is reset both ways (each end's next read or write
//!   fails with `ConnectionReset`, data in flight is lost), and connects are
//!   refused until healed.
//!
//! [`Schedule::generate`] turns a seed into a fault timeline; the random
//! choices of the chunk faults come from the transport's seed and the
//! connection's number. Threads still interleave as the operating system
//! decides, so a seed replays the same faults, not the same interleaving.
//!
//! Its table `[socket.faulty]` has the keys of the memory transport:
//! `namespace`, `pipe_capacity` and `max_connections`.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use socket_tests::faulty::{FaultyTransport, Schedule};
//!
//! let net = FaultyTransport::new(7);
//! let schedule = Schedule::generate(7, Duration::from_secs(1));
//! assert_eq!(schedule, Schedule::generate(7, Duration::from_secs(1)));
//! net.partition();
//! assert!(net.is_partitioned());
//! net.heal();
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use async_channel::{Receiver, Sender};
use async_trait::async_trait;
use futures_lite::{AsyncRead, AsyncWrite};
use socket_core::config::Config;
use socket_core::{Connection, Endpoint, Error, ErrorKind, EventName, Listener, PeerInfo, Result, Transport};

/// The scheme this transport registers under.
pub const SCHEME: &str = "faulty";
/// Default bytes buffered in each direction of a connection.
pub const DEFAULT_PIPE_CAPACITY: usize = 64 * 1024;
/// Connections waiting to be accepted before `connect` is refused.
const BACKLOG: usize = 128;

/// Sets `[socket.faulty] key = value` in `config`.
pub fn set_option(config: &mut Config, key: &str, value: impl Into<toml::Value>) {
    config.socket.plugins.entry(SCHEME.to_owned()).or_default().insert(key.to_owned(), value.into());
}

/// Faults applied to every chunk of bytes while the network is not calm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChunkFaults {
    /// Probability that a read or a write is cut to a random shorter length.
    pub split_probability: f64,
    /// Probability that, after a chunk is read, the next read waits a pause.
    pub delay_probability: f64,
    /// Longest such pause (each is uniform in `[0, max_delay]`).
    pub max_delay: Duration,
}

impl ChunkFaults {
    /// No chunk faults: bytes flow as they would over the memory transport.
    pub const NONE: ChunkFaults =
        ChunkFaults { split_probability: 0.0, delay_probability: 0.0, max_delay: Duration::ZERO };
}

impl Default for ChunkFaults {
    /// A third of the reads and writes split, one read in twenty followed by a pause of up to 5 ms.
    fn default() -> Self {
        ChunkFaults { split_probability: 0.3, delay_probability: 0.05, max_delay: Duration::from_millis(5) }
    }
}

/// What the network did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Connections opened.
    pub connects: u64,
    /// Connects refused because the network was partitioned.
    pub refused: u64,
    /// Partitions started.
    pub partitions: u64,
    /// Connections reset by a partition.
    pub resets: u64,
    /// Holds started.
    pub holds: u64,
}

/// One kind of network fault of a [`Schedule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Reset every connection both ways and refuse connects, for the step's duration.
    Partition,
    /// Forward nothing either way for the step's duration, then resume.
    Hold,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::Partition => "partition",
            Fault::Hold => "hold",
        })
    }
}

/// One step of a [`Schedule`]: a calm time, then a fault that lasts `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Calm time before the fault starts.
    pub after: Duration,
    /// The fault.
    pub fault: Fault,
    /// How long the fault lasts.
    pub duration: Duration,
}

/// A seeded timeline of partitions and holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The seed the steps were drawn from.
    pub seed: u64,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

impl Schedule {
    /// Draws steps from `seed` until their calm times and faults cover `span`.
    ///
    /// Calm times are 10–120 ms. Four steps in ten are partitions of
    /// 30–250 ms, the others holds: of 20–500 ms, or of 0.9–1.3 s in one
    /// step in eight (long enough to reach one-second write-stall and frame
    /// deadlines).
    pub fn generate(seed: u64, span: Duration) -> Schedule {
        let mut rng = Rng::new(seed ^ 0x5eed_5c4e_d01e);
        let mut steps = Vec::new();
        let mut total = Duration::ZERO;
        while total < span {
            let after = rng.between(ms(10), ms(120));
            let (fault, duration) = match rng.below(40) {
                0..=15 => (Fault::Partition, rng.between(ms(30), ms(250))),
                16..=34 => (Fault::Hold, rng.between(ms(20), ms(500))),
                _ => (Fault::Hold, rng.between(ms(900), ms(1300))),
            };
            total += after + duration;
            steps.push(Step { after, fault, duration });
        }
        Schedule { seed, steps }
    }

    /// Number of steps with `fault`.
    pub fn count(&self, fault: Fault) -> usize {
        self.steps.iter().filter(|s| s.fault == fault).count()
    }

    /// Calm times plus faults.
    pub fn total(&self) -> Duration {
        self.steps.iter().map(|s| s.after + s.duration).sum()
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seed {}:", self.seed)?;
        for s in &self.steps {
            write!(f, " +{}ms {} {}ms;", s.after.as_millis(), s.fault, s.duration.as_millis())?;
        }
        Ok(())
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// SplitMix64: small, seedable, and stable across versions (so a seed always
/// means the same faults).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_micros();
        lo + Duration::from_micros(self.below(u64::try_from(span).unwrap_or(u64::MAX).saturating_add(1)))
    }

    /// The length of the next read or write of at most `len` bytes.
    fn split(&mut self, len: usize, p: f64) -> usize {
        if len <= 1 || !self.chance(p) {
            return len;
        }
        let len64 = len as u64;
        let cut = if self.chance(0.5) { 1 + self.below(len64.min(8)) } else { 1 + self.below(len64) };
        usize::try_from(cut).unwrap_or(len)
    }
}

/// The fault-injecting transport. Clones share the same network and listeners.
#[derive(Clone)]
pub struct FaultyTransport {
    net: Arc<Net>,
}

struct Net {
    seed: u64,
    next: AtomicU64,
    held: AtomicBool,
    chunk_faults_on: AtomicBool,
    chunk: ChunkFaults,
    state: Mutex<NetState>,
    listeners: Mutex<HashMap<String, Entry>>,
}

#[derive(Default)]
struct NetState {
    partitioned: bool,
    links: Vec<Weak<Link>>,
    stats: FaultStats,
}

struct Entry {
    id: u64,
    tx: Sender<Connection>,
}

impl fmt::Debug for FaultyTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyTransport")
            .field("seed", &self.net.seed)
            .field("held", &self.is_held())
            .field("partitioned", &self.is_partitioned())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FaultyTransport {
    /// A network with its own listeners, default [`ChunkFaults`], and `seed` for their random choices.
    pub fn new(seed: u64) -> Self {
        Self::with_chunk_faults(seed, ChunkFaults::default())
    }

    /// A network with the given chunk faults.
    pub fn with_chunk_faults(seed: u64, chunk: ChunkFaults) -> Self {
        FaultyTransport {
            net: Arc::new(Net {
                seed,
                next: AtomicU64::new(0),
                held: AtomicBool::new(false),
                chunk_faults_on: AtomicBool::new(true),
                chunk,
                state: Mutex::new(NetState::default()),
                listeners: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The seed of the chunk faults.
    pub fn seed(&self) -> u64 {
        self.net.seed
    }

    /// Resets every open connection both ways and refuses connects until [`heal`](Self::heal).
    pub fn partition(&self) {
        let links: Vec<Arc<Link>> = {
            let mut st = lock(&self.net.state);
            st.partitioned = true;
            st.stats.partitions += 1;
            let links: Vec<Arc<Link>> = st.links.drain(..).filter_map(|l| l.upgrade()).collect();
            st.stats.resets += links.len() as u64;
            links
        };
        for link in links {
            link.wake(true);
        }
    }

    /// Accepts connects again (connections reset by the partition stay reset).
    pub fn heal(&self) {
        lock(&self.net.state).partitioned = false;
    }

    /// Stops forwarding bytes either way until [`release`](Self::release).
    pub fn hold(&self) {
        lock(&self.net.state).stats.holds += 1;
        self.net.held.store(true, Ordering::SeqCst);
    }

    /// Forwards again everything held, in order.
    pub fn release(&self) {
        self.net.held.store(false, Ordering::SeqCst);
        let links: Vec<Arc<Link>> = {
            let mut st = lock(&self.net.state);
            st.links.retain(|l| l.strong_count() > 0);
            st.links.iter().filter_map(Weak::upgrade).collect()
        };
        for link in links {
            link.wake(false);
        }
    }

    /// Ends every fault: heals, releases, and turns the chunk faults off.
    pub fn calm(&self) {
        self.net.chunk_faults_on.store(false, Ordering::SeqCst);
        self.heal();
        self.release();
    }

    /// True between [`partition`](Self::partition) and [`heal`](Self::heal).
    pub fn is_partitioned(&self) -> bool {
        lock(&self.net.state).partitioned
    }

    /// True between [`hold`](Self::hold) and [`release`](Self::release).
    pub fn is_held(&self) -> bool {
        self.net.held.load(Ordering::SeqCst)
    }

    /// What the network did so far.
    pub fn stats(&self) -> FaultStats {
        lock(&self.net.state).stats
    }

    fn table<'a>(&self, config: &'a Config) -> Option<&'a toml::Table> {
        config.socket.plugins.get(SCHEME)
    }

    fn address(&self, event: &EventName, config: &Config) -> String {
        let ns = self.table(config).and_then(|t| t.get("namespace")).and_then(toml::Value::as_str);
        format!("faulty://{}/{}", ns.unwrap_or("default"), event)
    }

    fn pipe_capacity(&self, config: &Config) -> usize {
        self.table(config)
            .and_then(|t| t.get("pipe_capacity"))
            .and_then(toml::Value::as_integer)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(DEFAULT_PIPE_CAPACITY)
    }

    /// Registers a new link, unless the network is partitioned; returns it and its number.
    fn open_link(&self) -> Option<(Arc<Link>, u64)> {
        let mut st = lock(&self.net.state);
        if st.partitioned {
            st.stats.refused += 1;
            return None;
        }
        st.stats.connects += 1;
        let link = Arc::new(Link::default());
        st.links.retain(|l| l.strong_count() > 0);
        st.links.push(Arc::downgrade(&link));
        Some((link, self.net.next.fetch_add(1, Ordering::Relaxed)))
    }

    fn rng(&self, n: u64, slot: usize) -> Rng {
        let mut mix = Rng::new(self.net.seed ^ n.wrapping_mul(4).wrapping_add(slot as u64).wrapping_mul(0x2545_f491));
        Rng::new(mix.next_u64())
    }

    fn reader(&self, inner: piper::Reader, link: &Arc<Link>, n: u64, slot: usize) -> FaultyRead {
        FaultyRead {
            inner: Some(inner),
            link: link.clone(),
            net: self.net.clone(),
            slot,
            rng: self.rng(n, slot),
            pause: None,
        }
    }

    fn writer(&self, inner: piper::Writer, link: &Arc<Link>, n: u64, slot: usize) -> FaultyWrite {
        FaultyWrite { inner: Some(inner), link: link.clone(), net: self.net.clone(), slot, rng: self.rng(n, slot) }
    }
}

impl Net {
    /// The chunk faults in force, if any.
    fn chunk(&self) -> Option<ChunkFaults> {
        self.chunk_faults_on.load(Ordering::Relaxed).then_some(self.chunk)
    }
}

#[async_trait]
impl Transport for FaultyTransport {
    fn scheme(&self) -> &str {
        SCHEME
    }

    fn validate(&self, config: &Config) -> Result<()> {
        crate::memory::validate_table(SCHEME, self.table(config))
    }

    async fn bind(&self, event: &EventName, config: &Config) -> Result<Box<dyn Listener>> {
        self.validate(config)?;
        let address = self.address(event, config);
        let mut map = lock(&self.net.listeners);
        if map.get(&address).is_some_and(|e| !e.tx.is_closed()) {
            return Err(Error::new(
                ErrorKind::AddrInUse,
                format!("{address} is in use by a live server: stop it first or use another event name"),
            ));
        }
        let id = self.net.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = async_channel::bounded(BACKLOG);
        map.insert(address.clone(), Entry { id, tx });
        Ok(Box::new(FaultyListener { net: self.net.clone(), id, address, rx }))
    }

    fn endpoints(&self, event: &EventName, config: &Config) -> Result<Vec<Endpoint>> {
        self.validate(config)?;
        Ok(vec![Endpoint { address: self.address(event, config), explicit: true }])
    }

    async fn connect(&self, endpoint: &Endpoint, config: &Config) -> Result<Connection> {
        let refused =
            |why: &str| Error::new(ErrorKind::Connection, format!("connection refused: {why} at {}", endpoint.address));
        let tx = lock(&self.net.listeners)
            .get(&endpoint.address)
            .map(|e| e.tx.clone())
            .ok_or_else(|| refused("no server listens"))?;
        let (link, n) = self.open_link().ok_or_else(|| refused("the network is partitioned (simulated)"))?;
        let cap = self.pipe_capacity(config);
        let (to_server_r, to_server_w) = piper::pipe(cap);
        let (to_client_r, to_client_w) = piper::pipe(cap);
        let server_side = Connection {
            reader: Box::new(self.reader(to_server_r, &link, n, SERVER_READ)),
            writer: Box::new(self.writer(to_client_w, &link, n, SERVER_WRITE)),
            peer: PeerInfo { address: format!("faulty-peer-{n}"), pid: Some(std::process::id()), uid: None },
        };
        tx.try_send(server_side).map_err(|_| refused("no server listens"))?;
        Ok(Connection {
            reader: Box::new(self.reader(to_client_r, &link, n, CLIENT_READ)),
            writer: Box::new(self.writer(to_server_w, &link, n, CLIENT_WRITE)),
            peer: PeerInfo { address: endpoint.address.clone(), pid: Some(std::process::id()), uid: None },
        })
    }
}

/// A bound address of the faulty network.
struct FaultyListener {
    net: Arc<Net>,
    id: u64,
    address: String,
    rx: Receiver<Connection>,
}

impl fmt::Debug for FaultyListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyListener").field("address", &self.address).finish()
    }
}

#[async_trait]
impl Listener for FaultyListener {
    fn address(&self) -> String {
        self.address.clone()
    }

    async fn accept(&self) -> Result<Connection> {
        self.rx.recv().await.map_err(|_| Error::new(ErrorKind::Closed, format!("listener {} is closed", self.address)))
    }

    fn close(&self) -> Result<()> {
        let mut map = lock(&self.net.listeners);
        if map.get(&self.address).is_some_and(|e| e.id == self.id) {
            map.remove(&self.address);
        }
        drop(map);
        // Connections not yet accepted are dropped: their clients see end-of-stream.
        self.rx.close();
        while self.rx.try_recv().is_ok() {}
        Ok(())
    }
}

impl Drop for FaultyListener {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

const CLIENT_READ: usize = 0;
const CLIENT_WRITE: usize = 1;
const SERVER_READ: usize = 2;
const SERVER_WRITE: usize = 3;

/// The shared fate of one connection's four halves.
#[derive(Default)]
struct Link {
    state: Mutex<LinkState>,
}

#[derive(Default)]
struct LinkState {
    reset: bool,
    wakers: [Option<Waker>; 4],
}

impl Link {
    /// Remembers the waker of half `slot`; true if the link was reset.
    fn register(&self, slot: usize, waker: &Waker) -> bool {
        let mut st = lock(&self.state);
        match &mut st.wakers[slot] {
            Some(w) if w.will_wake(waker) => {}
            other => *other = Some(waker.clone()),
        }
        st.reset
    }

    /// Wakes every half (they look at the network again); `reset` resets the link first.
    fn wake(&self, reset: bool) {
        let wakers: Vec<Waker> = {
            let mut st = lock(&self.state);
            st.reset |= reset;
            st.wakers.iter_mut().filter_map(Option::take).collect()
        };
        for w in wakers {
            w.wake();
        }
    }
}

fn reset_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "connection reset by a simulated network partition")
}

/// One end's reading half: held, paused and split reads.
struct FaultyRead {
    inner: Option<piper::Reader>,
    link: Arc<Link>,
    net: Arc<Net>,
    slot: usize,
    rng: Rng,
    pause: Option<async_io::Timer>,
}

impl AsyncRead for FaultyRead {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.link.register(this.slot, cx.waker()) {
            this.inner = None;
        }
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(Err(reset_error())) };
        // Registered above: `release` wakes this half.
        if this.net.held.load(Ordering::SeqCst) {
            return Poll::Pending;
        }
        if let Some(pause) = this.pause.as_mut() {
            ready!(Pin::new(pause).poll(cx));
            this.pause = None;
        }
        let chunk = this.net.chunk();
        let len = chunk.map_or(buf.len(), |c| this.rng.split(buf.len(), c.split_probability));
        let n = ready!(Pin::new(inner).poll_read(cx, &mut buf[..len]))?;
        if let Some(c) = chunk {
            if n > 0 && this.rng.chance(c.delay_probability) {
                this.pause = Some(async_io::Timer::after(this.rng.between(Duration::ZERO, c.max_delay)));
            }
        }
        Poll::Ready(Ok(n))
    }
}

/// One end's writing half: split writes into the bounded pipe.
struct FaultyWrite {
    inner: Option<piper::Writer>,
    link: Arc<Link>,
    net: Arc<Net>,
    slot: usize,
    rng: Rng,
}

impl FaultyWrite {
    fn live(&mut self, cx: &Context<'_>) -> io::Result<&mut piper::Writer> {
        if self.link.register(self.slot, cx.waker()) {
            self.inner = None;
        }
        self.inner.as_mut().ok_or_else(reset_error)
    }
}

impl AsyncWrite for FaultyWrite {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let len = match this.net.chunk() {
            Some(c) => this.rng.split(buf.len(), c.split_probability),
            None => buf.len(),
        };
        let inner = this.live(cx)?;
        Pin::new(inner).poll_write(cx, &buf[..len])
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let inner = this.live(cx)?;
        Pin::new(inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.live(cx) {
            Ok(inner) => Pin::new(inner).poll_close(cx),
            // Closing a reset connection has nothing left to do.
            Err(_) => Poll::Ready(Ok(())),
        }
    }
}
