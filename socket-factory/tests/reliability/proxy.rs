//! A toxiproxy-style TCP proxy for the T6 tests (RELIABILITY.md T6, after Shopify/toxiproxy),
//! built on std threads and `std::net` only.
//!
//! [`Proxy::start`] listens on a free port of 127.0.0.1 and forwards every accepted connection
//! (a *link*) to an upstream address. Each link has two pumps, one thread per direction
//! ([`Dir::Up`]: client to server, [`Dir::Down`]: server to client). Toxics are added to and
//! removed from the whole proxy at any time and apply to every link, the live ones and the
//! later ones; a pump looks at the current toxics of its direction for every chunk it reads.
//! Toxics that count bytes ([`Toxic::LimitData`], [`Toxic::Timeout`]) count, per pump, the bytes
//! it read after it first saw the toxic.
//!
//! Every blocking call has a short timeout (10 ms), so pumps notice a stop, a reset or a toxic
//! change promptly; the proxy joins all its threads when dropped.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest a pump blocks in one call before looking at its flags and toxics again.
const TICK: Duration = Duration::from_millis(10);
/// A pump stops reading while this many bytes wait in its queue (back-pressure).
const QUEUE_CAP: usize = 256 * 1024;

/// The direction of a pump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Dir {
    /// From the client (downstream side) to the server (upstream).
    Up,
    /// From the server to the client.
    Down,
}

impl Dir {
    fn index(self) -> usize {
        match self {
            Dir::Up => 0,
            Dir::Down => 1,
        }
    }
}

/// A fault injected into one direction of every link.
#[derive(Debug, Clone)]
pub(crate) enum Toxic {
    /// Each chunk is forwarded `latency` plus a random `[0, jitter]` after it was read (order kept).
    Latency { latency: Duration, jitter: Duration },
    /// At most `bytes_per_sec` bytes per second.
    Bandwidth { bytes_per_sec: u64 },
    /// Every chunk is split into random pieces of `1..=max_piece` bytes, each written on its own
    /// after a random delay in `[0, max_delay]` (random numbers from the proxy's seed).
    Slicer { max_piece: usize, max_delay: Duration },
    /// After `bytes` bytes the connection is closed (FIN to both peers, data before the limit
    /// forwarded first).
    LimitData { bytes: u64 },
    /// `timeout` after the pump first sees it, the connection is reset: TCP RST to both peers
    /// (`SO_LINGER` 0), whatever is queued is lost.
    ResetPeer { timeout: Duration },
    /// toxiproxy's `timeout` with a timeout of 0: after `after_bytes` bytes nothing more is
    /// forwarded and nothing more read (the peers' writes back up into the kernel), and the
    /// connection is held open, until the toxic is removed; then the held bytes go on.
    Timeout { after_bytes: u64 },
}

/// The handle of an added toxic, to remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ToxicId(u64);

#[derive(Debug, Default)]
struct Shared {
    toxics: Mutex<Vec<(ToxicId, Dir, Toxic)>>,
    next_id: AtomicU64,
    stop: AtomicBool,
    links: AtomicU64,
    forwarded: [AtomicU64; 2],
    pieces: [AtomicU64; 2],
    resets: AtomicU64,
    limits: AtomicU64,
}

impl Shared {
    fn toxics(&self, dir: Dir) -> Vec<(ToxicId, Toxic)> {
        let toxics = self.toxics.lock().unwrap_or_else(|e| e.into_inner());
        toxics.iter().filter(|(_, d, _)| *d == dir).map(|(id, _, t)| (*id, t.clone())).collect()
    }
}

/// The in-process proxy; stops and joins its threads when dropped.
pub(crate) struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    pumps: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("port", &self.port).finish_non_exhaustive()
    }
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards each connection to `upstream`; random
    /// choices (slicing, jitter) come from `seed` (each pump gets its own stream from it).
    pub(crate) fn start(upstream: SocketAddr, seed: u64) -> io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared::default());
        let pumps: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (sh, pu) = (shared.clone(), pumps.clone());
        let accept = std::thread::spawn(move || {
            while !sh.stop.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let n = sh.links.fetch_add(1, Ordering::AcqRel);
                        if let Ok(handles) = open_link(client, upstream, &sh, seed, n) {
                            pu.lock().unwrap_or_else(|e| e.into_inner()).extend(handles);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(2)),
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Ok(Proxy { port, shared, accept: Some(accept), pumps })
    }

    /// The port clients connect to.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Adds `toxic` to direction `dir` of every link (live and later ones).
    pub(crate) fn add(&self, dir: Dir, toxic: Toxic) -> ToxicId {
        let id = ToxicId(self.shared.next_id.fetch_add(1, Ordering::AcqRel));
        self.shared.toxics.lock().unwrap_or_else(|e| e.into_inner()).push((id, dir, toxic));
        id
    }

    /// Removes a toxic (held bytes of a [`Toxic::Timeout`] then go on).
    pub(crate) fn remove(&self, id: ToxicId) {
        self.shared.toxics.lock().unwrap_or_else(|e| e.into_inner()).retain(|(i, _, _)| *i != id);
    }

    /// Connections accepted so far.
    pub(crate) fn links(&self) -> u64 {
        self.shared.links.load(Ordering::Acquire)
    }

    /// Bytes written so far in direction `dir` (all links).
    pub(crate) fn forwarded(&self, dir: Dir) -> u64 {
        self.shared.forwarded[dir.index()].load(Ordering::Acquire)
    }

    /// Separate writes so far in direction `dir` (all links).
    pub(crate) fn pieces(&self, dir: Dir) -> u64 {
        self.shared.pieces[dir.index()].load(Ordering::Acquire)
    }

    /// Links reset by [`Toxic::ResetPeer`] so far.
    pub(crate) fn resets(&self) -> u64 {
        self.shared.resets.load(Ordering::Acquire)
    }

    /// Links closed by [`Toxic::LimitData`] so far.
    pub(crate) fn limited(&self) -> u64 {
        self.shared.limits.load(Ordering::Acquire)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let pumps = std::mem::take(&mut *self.pumps.lock().unwrap_or_else(|e| e.into_inner()));
        for p in pumps {
            let _ = p.join();
        }
    }
}

/// One proxied connection: both sockets (their last descriptor closes when both pumps end).
struct Link {
    client: TcpStream,
    server: TcpStream,
    dead: AtomicBool,
}

impl Link {
    /// Ends the link with a FIN to both peers.
    fn close(&self) {
        self.dead.store(true, Ordering::Release);
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }

    /// Ends the link with an RST to both peers: `SO_LINGER` 0, then the pumps drop the
    /// descriptors (the kernel resets when the last one closes).
    fn reset(&self) {
        for s in [&self.client, &self.server] {
            let _ = rustix::net::sockopt::set_socket_linger(s, Some(Duration::ZERO));
        }
        self.dead.store(true, Ordering::Release);
    }
}

fn open_link(
    client: TcpStream,
    upstream: SocketAddr,
    sh: &Arc<Shared>,
    seed: u64,
    n: u64,
) -> io::Result<Vec<JoinHandle<()>>> {
    client.set_nonblocking(false)?;
    let server = TcpStream::connect_timeout(&upstream, Duration::from_secs(2))?;
    for s in [&client, &server] {
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(TICK))?;
        s.set_write_timeout(Some(TICK))?;
    }
    let link =
        Arc::new(Link { client: client.try_clone()?, server: server.try_clone()?, dead: AtomicBool::new(false) });
    let mut handles = Vec::new();
    for (dir, src, dst) in [(Dir::Up, client.try_clone()?, server.try_clone()?), (Dir::Down, server, client)] {
        let rng = fastrand::Rng::with_seed(seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ dir.index() as u64);
        let pump = Pump::new(dir, src, dst, link.clone(), sh.clone(), rng);
        handles.push(std::thread::spawn(move || pump.run()));
    }
    Ok(handles)
}

/// How a pump's direction ends once its queue is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The source ended: half-close the destination.
    Fin,
    /// `limit_data` reached: close the whole link.
    Limit,
}

/// What [`Pump::write_due`] did.
enum Wrote {
    /// Wrote everything due.
    Ok,
    /// The proxy stopped or the link died meanwhile.
    Stopped,
    /// The destination failed.
    Failed,
}

struct Piece {
    due: Instant,
    bytes: Vec<u8>,
}

struct Pump {
    dir: Dir,
    src: TcpStream,
    dst: TcpStream,
    link: Arc<Link>,
    sh: Arc<Shared>,
    rng: fastrand::Rng,
    queue: VecDeque<Piece>,
    queued: usize,
    last_due: Instant,
    /// Bytes read and accepted for forwarding (held bytes not included).
    accepted: u64,
    /// Per toxic: `accepted` and the time when this pump first saw it.
    seen: HashMap<ToxicId, (u64, Instant)>,
    /// Read and not yet taken in: the last read, or bytes beyond a `timeout` toxic's budget
    /// (forwarded once the toxic is removed).
    held: Vec<u8>,
    end: Option<End>,
}

impl Pump {
    fn new(dir: Dir, src: TcpStream, dst: TcpStream, link: Arc<Link>, sh: Arc<Shared>, rng: fastrand::Rng) -> Pump {
        Pump {
            dir,
            src,
            dst,
            link,
            sh,
            rng,
            queue: VecDeque::new(),
            queued: 0,
            last_due: Instant::now(),
            accepted: 0,
            seen: HashMap::new(),
            held: Vec::new(),
            end: None,
        }
    }

    fn stopped(&self) -> bool {
        self.sh.stop.load(Ordering::Acquire) || self.link.dead.load(Ordering::Acquire)
    }

    fn run(mut self) {
        let mut buf = vec![0u8; 16 * 1024];
        while !self.stopped() {
            let now = Instant::now();
            let toxics = self.sh.toxics(self.dir);
            for (id, _) in &toxics {
                self.seen.entry(*id).or_insert((self.accepted, now));
            }
            if toxics.iter().any(|(id, t)| match t {
                Toxic::ResetPeer { timeout } => self.seen.get(id).is_some_and(|(_, at)| now >= *at + *timeout),
                _ => false,
            }) {
                self.sh.resets.fetch_add(1, Ordering::AcqRel);
                self.link.reset();
                break;
            }
            // The fewest bytes any byte-counting toxic still lets through (None: no limit).
            let mut budget: Option<(u64, bool)> = None;
            for (id, t) in &toxics {
                let (limit, is_limit) = match t {
                    Toxic::LimitData { bytes } => (*bytes, true),
                    Toxic::Timeout { after_bytes } => (*after_bytes, false),
                    _ => continue,
                };
                let base = self.seen.get(id).map_or(self.accepted, |(b, _)| *b);
                let left = limit.saturating_sub(self.accepted - base);
                if budget.is_none_or(|(b, _)| left < b) {
                    budget = Some((left, is_limit));
                }
            }
            // Bytes read (last round, or held by a `timeout`) pass the byte-counting toxics
            // as they are now.
            if self.end.is_none() && !self.held.is_empty() {
                let take = budget.map_or(self.held.len(), |(b, _)| (b as usize).min(self.held.len()));
                if take > 0 {
                    let chunk: Vec<u8> = self.held.drain(..take).collect();
                    self.accept(&chunk, &toxics, now);
                }
                if !self.held.is_empty() && matches!(budget, Some((_, true))) {
                    self.held.clear();
                    self.end = Some(End::Limit);
                }
            }
            if let (None, Some((0, true))) = (self.end, budget) {
                self.end = Some(End::Limit);
            }
            match self.write_due() {
                Wrote::Ok => {}
                Wrote::Stopped => break,
                Wrote::Failed => {
                    // The destination is gone: end the other side too.
                    self.link.close();
                    break;
                }
            }
            if self.queue.is_empty() {
                match self.end {
                    Some(End::Fin) => {
                        let _ = self.dst.shutdown(Shutdown::Write);
                        break;
                    }
                    Some(End::Limit) => {
                        self.sh.limits.fetch_add(1, Ordering::AcqRel);
                        self.link.close();
                        break;
                    }
                    None => {}
                }
            }
            let now = Instant::now();
            let wait = self.queue.front().map_or(TICK, |p| p.due.saturating_duration_since(now)).min(TICK);
            let can_read = self.end.is_none()
                && self.held.is_empty()
                && budget.is_none_or(|(b, _)| b > 0)
                && self.queued < QUEUE_CAP;
            if !can_read || wait < Duration::from_millis(1) {
                if !wait.is_zero() {
                    std::thread::sleep(wait);
                }
                continue;
            }
            let _ = self.src.set_read_timeout(Some(wait));
            match self.src.read(&mut buf) {
                Ok(0) => self.end = Some(End::Fin),
                // Taken in at the top of the loop, under the toxics of that moment.
                Ok(n) => self.held.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) if self.stopped() => break,
                Err(_) => {
                    // The source was reset: pass the reset on.
                    self.link.reset();
                    break;
                }
            }
        }
    }

    /// Queues `chunk` as pieces with due times from the latency, bandwidth and slicer toxics.
    fn accept(&mut self, chunk: &[u8], toxics: &[(ToxicId, Toxic)], now: Instant) {
        if chunk.is_empty() {
            return;
        }
        self.accepted += chunk.len() as u64;
        let mut due = now;
        let mut slicer = None;
        let mut rate = None;
        for (_, t) in toxics {
            match t {
                Toxic::Latency { latency, jitter } => {
                    due += *latency + jitter.mul_f64(self.rng.f64());
                }
                Toxic::Slicer { max_piece, max_delay } => slicer = Some(((*max_piece).max(1), *max_delay)),
                Toxic::Bandwidth { bytes_per_sec } => rate = Some((*bytes_per_sec).max(1)),
                _ => {}
            }
        }
        let mut rest = chunk;
        while !rest.is_empty() {
            let (n, delay) = match slicer {
                Some((max, d)) => (self.rng.usize(1..=max).min(rest.len()), d.mul_f64(self.rng.f64())),
                None => (rest.len(), Duration::ZERO),
            };
            let mut at = due.max(self.last_due) + delay;
            if let Some(r) = rate {
                at = at.max(self.last_due + Duration::from_secs_f64(n as f64 / r as f64));
            }
            self.last_due = at;
            self.queued += n;
            self.queue.push_back(Piece { due: at, bytes: rest[..n].to_vec() });
            rest = &rest[n..];
        }
    }

    /// Writes every piece that is due.
    fn write_due(&mut self) -> Wrote {
        while let Some(p) = self.queue.front() {
            if p.due > Instant::now() {
                return Wrote::Ok;
            }
            let Some(Piece { bytes, .. }) = self.queue.pop_front() else { break };
            self.queued -= bytes.len();
            let mut off = 0;
            while off < bytes.len() {
                if self.stopped() {
                    return Wrote::Stopped;
                }
                match self.dst.write(&bytes[off..]) {
                    Ok(0) => return Wrote::Failed,
                    Ok(n) => {
                        off += n;
                        self.sh.forwarded[self.dir.index()].fetch_add(n as u64, Ordering::AcqRel);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                        ) => {}
                    Err(_) => return Wrote::Failed,
                }
            }
            self.sh.pieces[self.dir.index()].fetch_add(1, Ordering::AcqRel);
        }
        Wrote::Ok
    }
}
