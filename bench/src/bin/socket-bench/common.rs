//! Shared pieces: the message and its checks, the publisher's loop, latency
//! statistics, CPU pinning, addresses.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use socket_core::codec::Limits;
use socket_core::{Data, EventName, MessageType, SocketMessage};

/// Event name used by every contender.
pub(crate) const EVENT: &str = "bench";

/// Largest frame accepted or produced (the library default, 1 MiB).
pub(crate) const MAX_FRAME: usize = 1 << 20;

/// Every network wait in the bench gives up after this long: a cell must fail, not hang.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// A bench failure, in words.
pub(crate) type BenchResult<T> = std::result::Result<T, String>;

/// Turns any displayable error into a bench failure with context.
pub(crate) fn ctx<E: fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e}")
}

/// The two transports under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Net {
    /// Unix domain sockets (`ipc://` for libzmq).
    Unix,
    /// TCP over loopback.
    Tcp,
}

impl Net {
    /// Lower-case name, also the library's transport scheme.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Net::Unix => "unix",
            Net::Tcp => "tcp",
        }
    }

    /// Parses [`Net::name`].
    pub(crate) fn parse(s: &str) -> BenchResult<Net> {
        match s {
            "unix" => Ok(Net::Unix),
            "tcp" => Ok(Net::Tcp),
            other => Err(format!("unknown transport {other:?}: expected unix or tcp")),
        }
    }
}

/// The event name as a validated [`EventName`].
pub(crate) fn event_name() -> EventName {
    EventName::new(EVENT).unwrap_or_else(|e| panic!("constant event name is valid: {e}"))
}

/// The publisher's loop of the zmq and library contenders: messages `0..n`
/// (see [`make_message`]), sent as fast as `send` takes them; no window (the
/// ceiling blocks in `write`, libzmq runs with high-water marks 0, the
/// library's outbound queue holds the whole run). `send` publishes one message.
/// Stops at the first failed send. Returns the instant of the first send.
pub(crate) fn publish(
    n: u64,
    payload: usize,
    mut send: impl FnMut(&SocketMessage) -> BenchResult<()>,
) -> BenchResult<Instant> {
    let mut msg = make_message(payload);
    let start = Instant::now();
    for seq in 0..n {
        set_seq(&mut msg, seq);
        send(&msg).map_err(|e| format!("publisher at seq {seq}: {e}"))?;
    }
    Ok(start)
}

/// The message every contender sends: `data = {"seq": <n>, "payload": <binary of `payload` bytes>}`.
///
/// It is stamped once; the publisher only rewrites `seq` before each send, so
/// every contender pays the same application cost per message.
pub(crate) fn make_message(payload: usize) -> SocketMessage {
    let data = Data::new().with("seq", 0u64).with("payload", payload_bytes(payload));
    SocketMessage::data(event_name(), data)
}

/// The payload of every contender's message: `len` bytes of 0xA5.
pub(crate) fn payload_bytes(len: usize) -> Vec<u8> {
    vec![0xA5u8; len]
}

/// Rewrites the sequence number of a message made by [`make_message`].
pub(crate) fn set_seq(msg: &mut SocketMessage, seq: u64) {
    msg.data.insert("seq", seq);
}

/// Checks that `msg` is the bench message number `want` with a payload of
/// `payload` bytes: a DATA message of event [`EVENT`] (the harness's checks).
pub(crate) fn check_message(msg: &SocketMessage, want: u64, payload: usize) -> BenchResult<()> {
    let got = msg.data.get("seq").and_then(|v| v.as_u64());
    if got != Some(want) {
        return Err(format!("out of order: expected seq {want}, got {got:?}"));
    }
    let len = msg.data.get("payload").and_then(|v| v.as_slice()).map(<[u8]>::len);
    if len != Some(payload) {
        return Err(format!("payload of seq {want} has {len:?} bytes, expected {payload}"));
    }
    if msg.message_type != MessageType::Data || msg.event_name.as_str() != EVENT {
        return Err(format!(
            "seq {want}: unexpected message type {} or event {:?}",
            msg.message_type,
            msg.event_name.as_str()
        ));
    }
    Ok(())
}

/// Decoder limits used by the plain-socket and libzmq contenders (the library defaults).
pub(crate) fn limits() -> Limits {
    Limits::default()
}

/// Messages/s delivered to every subscriber: `n` over the time from the first
/// send to the last receipt at the slowest subscriber.
pub(crate) fn rate(n: u64, start: Instant, last_receipts: &[Instant]) -> f64 {
    let end = last_receipts.iter().max().copied().unwrap_or(start);
    let secs = end.saturating_duration_since(start).as_secs_f64().max(1e-9);
    n as f64 / secs
}

/// Round-trip statistics in microseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rtt {
    /// Median.
    pub(crate) p50: f64,
    /// 99th percentile.
    pub(crate) p99: f64,
}

/// p50 and p99 of latencies in nanoseconds.
pub(crate) fn rtt_stats(mut samples: Vec<u64>) -> BenchResult<Rtt> {
    if samples.is_empty() {
        return Err("no round trip measured".into());
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let idx = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[idx.min(samples.len() - 1)] as f64 / 1000.0
    };
    Ok(Rtt { p50: at(0.50), p99: at(0.99) })
}

/// How many round trips to time, and for how long at most.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RttPlan {
    /// Untimed round trips first.
    pub(crate) warmup: u64,
    /// Timed round trips, at most.
    pub(crate) count: u64,
    /// Stop timing after this long (with at least `min_count` samples).
    pub(crate) budget: Duration,
    /// Least number of timed round trips.
    pub(crate) min_count: u64,
}

impl RttPlan {
    /// True when the timed loop may stop after `done` samples started at `start`.
    pub(crate) fn done(&self, done: u64, start: Instant) -> bool {
        done >= self.count || (done >= self.min_count && start.elapsed() >= self.budget)
    }

    /// The bookkeeping of one round-trip loop, the same for every contender, sync or async:
    /// `while let Some(seq) = run.begin() { let t = Instant::now(); ...; run.record(t); }`.
    pub(crate) fn start(&self) -> RttRun<'_> {
        RttRun {
            plan: self,
            seq: 0,
            timed_start: Instant::now(),
            samples: Vec::with_capacity(usize::try_from(self.count).unwrap_or(0)),
        }
    }
}

/// A round-trip loop under way (see [`RttPlan::start`]).
pub(crate) struct RttRun<'p> {
    plan: &'p RttPlan,
    seq: u64,
    timed_start: Instant,
    samples: Vec<u64>,
}

impl RttRun<'_> {
    /// The sequence number of the next round trip, or `None` when the plan is done (the
    /// warm-up's round trips are untimed, and the clock of the budget starts after them).
    pub(crate) fn begin(&mut self) -> Option<u64> {
        let p = self.plan;
        if self.seq == p.warmup {
            self.timed_start = Instant::now();
        }
        if self.seq >= p.warmup && p.done(self.seq - p.warmup, self.timed_start) {
            return None;
        }
        Some(self.seq)
    }

    /// The round trip begun at `started` has its decoded reply: a sample after the warm-up.
    pub(crate) fn record(&mut self, started: Instant) {
        if self.seq >= self.plan.warmup {
            self.samples.push(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
        }
        self.seq += 1;
    }

    /// The timed round trips' durations in nanoseconds.
    pub(crate) fn samples(self) -> Vec<u64> {
        self.samples
    }
}

/// The affinity mask the process started with.
fn original_mask() -> &'static rustix::thread::CpuSet {
    static MASK: OnceLock<rustix::thread::CpuSet> = OnceLock::new();
    MASK.get_or_init(|| rustix::thread::sched_getaffinity(None).unwrap_or_else(|_| all_cpus()))
}

fn all_cpus() -> rustix::thread::CpuSet {
    let mut set = rustix::thread::CpuSet::new();
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    for i in 0..n {
        set.set(i);
    }
    set
}

/// The first CPU this process may run on (the one "pinned" cells use).
pub(crate) fn first_cpu() -> usize {
    (0..rustix::thread::CpuSet::MAX_CPU).find(|&c| original_mask().is_set(c)).unwrap_or(0)
}

/// Records the starting affinity mask (call once, early).
pub(crate) fn remember_affinity() {
    let _ = original_mask();
}

/// Pins every thread of this process (and so every thread it starts later) to
/// one CPU, or restores the original mask with `None`.
///
/// # Errors
///
/// If the kernel refuses the mask for the main thread.
pub(crate) fn pin_process(cpu: Option<usize>) -> BenchResult<()> {
    let set = match cpu {
        Some(c) => {
            let mut set = rustix::thread::CpuSet::new();
            set.set(c);
            set
        }
        None => *original_mask(),
    };
    rustix::thread::sched_setaffinity(None, &set).map_err(ctx("sched_setaffinity"))?;
    let tasks = std::fs::read_dir("/proc/self/task").map_err(ctx("reading /proc/self/task"))?;
    for entry in tasks.flatten() {
        let tid = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok());
        if let Some(pid) = tid.and_then(rustix::process::Pid::from_raw) {
            // A thread may exit between the listing and the call: ignore it.
            let _ = rustix::thread::sched_setaffinity(Some(pid), &set);
        }
    }
    Ok(())
}

/// Fails unless process `pid` may run on exactly the CPUs the calling thread
/// may: a child inherits the mask of the thread that spawns it, so one spawned
/// after [`pin_process`] runs on the pinned CPU too.
pub(crate) fn check_same_cpus(pid: u32) -> BenchResult<()> {
    let child = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw).ok_or("bad child pid")?;
    let mine = rustix::thread::sched_getaffinity(None).map_err(ctx("sched_getaffinity"))?;
    let theirs = rustix::thread::sched_getaffinity(Some(child)).map_err(ctx("sched_getaffinity of a child"))?;
    if mine == theirs {
        Ok(())
    } else {
        Err("runs on other CPUs than the bench thread that spawned it".to_owned())
    }
}

/// The p50 cost of one thread wake-up, in microseconds: two threads hand a
/// token back and forth through `std::thread::park`/`unpark` (a round trip
/// is two wake-ups), pinned to one CPU or free. The floor under any design
/// that passes a message between threads: the ceiling's round trip has two
/// wake-ups, the library's four (docs/benchmarks.md).
///
/// # Errors
///
/// If pinning fails.
pub(crate) fn wake_up_us(pinned: bool) -> BenchResult<f64> {
    const ROUND_TRIPS: u64 = 20_000;
    if pinned {
        pin_process(Some(first_cpu()))?;
    }
    let turn = Arc::new(AtomicU64::new(0));
    let me = std::thread::current();
    let other = std::thread::spawn({
        let turn = turn.clone();
        move || {
            for i in 0..ROUND_TRIPS {
                while turn.load(Ordering::Acquire) != 2 * i + 1 {
                    std::thread::park();
                }
                turn.store(2 * i + 2, Ordering::Release);
                me.unpark();
            }
        }
    });
    let peer = other.thread().clone();
    let mut samples = Vec::with_capacity(ROUND_TRIPS as usize);
    for i in 0..ROUND_TRIPS {
        let t = Instant::now();
        turn.store(2 * i + 1, Ordering::Release);
        peer.unpark();
        while turn.load(Ordering::Acquire) != 2 * i + 2 {
            std::thread::park();
        }
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let joined = other.join().map_err(|_| "the wake-up peer thread panicked".to_owned());
    if pinned {
        pin_process(None)?;
    }
    joined?;
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2] / 2.0)
}

/// A fresh private directory for Unix socket files of one cell.
pub(crate) fn temp_dir() -> BenchResult<tempfile::TempDir> {
    tempfile::Builder::new().prefix("sbench").tempdir().map_err(ctx("creating a temp dir"))
}

/// Path of the socket file inside `dir`.
pub(crate) fn sock_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub(crate) fn free_port() -> BenchResult<u16> {
    socket_tests::util::free_port().map_err(ctx("binding 127.0.0.1:0"))
}

/// Resident set size of process `pid`, in KiB (`VmRSS` of `/proc/<pid>/status`).
pub(crate) fn rss_kib(pid: u32) -> BenchResult<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(ctx("reading /proc/<pid>/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS line in /proc/<pid>/status".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_is_the_harness_check() {
        let mut m = make_message(64);
        set_seq(&mut m, 7);
        check_message(&m, 7, 64).unwrap();
        assert!(check_message(&m, 8, 64).unwrap_err().contains("out of order"));
        assert!(check_message(&m, 7, 65).unwrap_err().contains("payload"));
        let mut other = m.clone();
        other.message_type = MessageType::Control;
        assert!(check_message(&other, 7, 64).is_err());
        let mut other = m.clone();
        other.event_name = EventName::new("other").unwrap();
        assert!(check_message(&other, 7, 64).is_err());
    }
}
