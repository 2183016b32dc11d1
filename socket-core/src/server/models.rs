//! Model checks of the registry (`registry.rs`), the production code itself
//! running on [`crate::sync`]'s loom or shuttle primitives.
//!
//! * loom (`cargo xtask loom`: `--cfg socket_loom`, `LOOM_MAX_PREEMPTIONS=2`):
//!   RELIABILITY.md C1 (fan-out, bounded queues, slow consumers, removal,
//!   2–3 actors) and C2 (the offline-queue handoff at the first connect),
//!   every interleaving within the preemption bound.
//! * shuttle (`cargo xtask shuttle`: `--cfg shuttle`): C3, the registry's
//!   whole client state machine with six actors (joins, leaves, slow
//!   consumers, stop and start, broadcasts, unicasts), 1,000 random
//!   schedules and 1,000 PCT schedules from fixed seeds.
//!
//! Actors play the roles of production callers: the broadcaster is
//! `Server::broadcast` (`Inner::fan_out`), a client's writer is the
//! `write_loop` of `conn.rs` (take a chunk of frames, [`ConnShared::take`]), its
//! reader's replies are `push_own` ([`ConnShared::push_unmetered`]), a
//! leaving client is the end of `Conn::serve` (close the queue, then
//! [`Registry::remove`]), and a stop is `Inner::begin_stop`
//! ([`Registry::shut`]). Each broadcast frame's one-byte body is its
//! sequence number.

use std::sync::Arc;

#[cfg(socket_loom)]
use super::registry::Admitted;
use super::registry::{Admission, Bounds, Closing, ConnShared, FanOut, Registry};
use super::ClientInfo;
use crate::codec::{Frame, HEADER_LEN};

#[cfg(socket_loom)]
use loom::thread;
#[cfg(all(shuttle, not(socket_loom)))]
use shuttle::thread;

fn frame(seq: u8) -> Frame {
    Frame::from_body(&[seq], 64).expect("a one-byte body is a valid frame")
}

fn info(id: u64) -> ClientInfo {
    ClientInfo::bare(id)
}

#[cfg(socket_loom)]
fn bounds(outbound_frames: usize) -> Bounds {
    Bounds {
        max_clients: 3,
        outbound_frames,
        outbound_bytes: 1 << 20,
        offline_frames: 8,
        offline_bytes: 1 << 20,
        retain_last: false,
    }
}

#[cfg(socket_loom)]
fn open_registry(b: Bounds) -> Arc<Registry> {
    let reg = Arc::new(Registry::new(b));
    reg.open();
    reg
}

#[cfg(socket_loom)]
fn admit(reg: &Registry) -> Admitted {
    match reg.admit(info) {
        Admission::Admitted(a) => a,
        other => panic!("expected an admission, got {other:?}"),
    }
}

/// The writer's side: takes one chunk of the queue, as `conn.rs`'s writer
/// does, and returns the sequence numbers of its frames.
fn take_one(shared: &ConnShared) -> Vec<u8> {
    let mut buf = Vec::new();
    let taken = shared.take(&mut buf);
    let seqs: Vec<u8> = buf.chunks(HEADER_LEN + 1).map(|f| f[HEADER_LEN]).collect();
    assert_eq!(seqs.len(), taken.frames, "a chunk holds whole one-byte frames only");
    seqs
}

/// Takes every queued frame.
fn drain(shared: &ConnShared) -> Vec<u8> {
    let mut got = Vec::new();
    loop {
        let seqs = take_one(shared);
        if seqs.is_empty() {
            return got;
        }
        got.extend(seqs);
    }
}

/// The caller's side of a slow consumer (`Inner::drop_slow`).
fn close_slow(out: &FanOut) {
    for (c, _) in &out.slow {
        c.shared.close(Closing::SlowConsumer(frame(0)));
    }
}

fn assert_increasing(what: &str, got: &[u8]) {
    assert!(got.windows(2).all(|w| w[0] < w[1]), "{what} got {got:?}: out of order or duplicated");
}

fn assert_drained(what: &str, shared: &ConnShared) {
    assert_eq!(shared.queued_frames(), 0, "{what}: frame count not back to 0 after draining");
    assert_eq!(shared.queued_bytes(), 0, "{what}: byte count not back to 0 after draining");
}

/// Runs `f` under loom; fails if it explored suspiciously few interleavings
/// (`LOOM_LOG=info` makes loom log how many).
#[cfg(socket_loom)]
fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
    // Each model but the smallest has 144 or more at bound 2: far fewer means it stopped exploring.
    model_at_least(name, 100, f);
}

/// [`model`], failing below `least` interleavings at preemption bound 2.
#[cfg(socket_loom)]
fn model_at_least(name: &str, least: usize, f: impl Fn() + Sync + Send + 'static) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut builder = loom::model::Builder::new();
    // `LOOM_MAX_PREEMPTIONS` sets it; 2 unless told otherwise.
    let bound = *builder.preemption_bound.get_or_insert(2);
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    let n = runs.load(Ordering::Relaxed);
    assert!(bound < 2 || n >= least, "{name}: only {n} interleavings explored at preemption bound {bound}");
}

#[cfg(socket_loom)]
mod loom_models {
    use super::*;

    /// C1: a broadcaster, a client leaving, a client joining. Every
    /// broadcast reaches the joiner exactly once and in order unless the
    /// leaver took it; nothing is lost (a broadcast only the leaving client
    /// saw goes to the offline queue and then to the joiner); the counters
    /// return to zero.
    #[test]
    fn broadcast_while_one_client_leaves_and_one_joins() {
        model("broadcast_while_one_client_leaves_and_one_joins", || {
            let reg = open_registry(bounds(4));
            let a = admit(&reg);
            let a_id = a.id;
            let a_shared = a.shared.clone();

            let r = reg.clone();
            let broadcaster = thread::spawn(move || {
                for s in 1..=2 {
                    let out = r.fan_out(frame(s).as_bytes(), None);
                    assert!(out.slow.is_empty(), "no queue can be full here");
                }
            });
            let r = reg.clone();
            let leaver = thread::spawn(move || {
                // Its writer takes what is there, then the connection ends.
                let mut got: Vec<u8> = take_one(&a.shared).into_iter().collect();
                a.shared.close_queue();
                assert!(r.remove(a.id).is_some(), "the leaving client was registered");
                got.extend(drain(&a.shared));
                got
            });
            let r = reg.clone();
            let joiner = thread::spawn(move || {
                let b = admit(&r);
                let got: Vec<u8> = take_one(&b.shared).into_iter().collect();
                (b, got)
            });
            broadcaster.join().expect("broadcaster");
            let a_got = leaver.join().expect("leaver");
            let (b, mut b_got) = joiner.join().expect("joiner");
            b_got.extend(drain(&b.shared));

            assert_increasing("leaving client", &a_got);
            assert_increasing("joining client", &b_got);
            assert_eq!(
                reg.offline_len(),
                0,
                "the joiner is the first open client: it must have taken the offline queue"
            );
            for s in 1..=2 {
                assert!(a_got.contains(&s) || b_got.contains(&s), "broadcast {s} lost: a {a_got:?}, b {b_got:?}");
            }
            // Registered until the end: once it got one, it got every later one.
            if let Some(&first) = b_got.first() {
                assert_eq!(b_got, (first..=2).collect::<Vec<_>>(), "joining client missed a broadcast");
            }
            assert!(reg.remove(a_id).is_none(), "the leaving client is gone");
            assert!(take_one(&a_shared).is_empty(), "the removed client got a frame after its removal");
            assert_drained("leaving client", &a_shared);
            assert_drained("joining client", &b.shared);
            assert_eq!(reg.len(), 1);
        });
    }

    /// A direct writer's loan (`Outlet::try_flush`: `lend`, and `settle` with nothing
    /// written when the stream refuses) beside a broadcast and the writer task's wait
    /// (`runtime::wait_until(ready, has_work)`: look, listen, look again). A writer that
    /// found nothing to take while the frames were lent is woken; the frames leave once
    /// and in order.
    #[test]
    fn a_loan_given_back_wakes_a_writer_that_looked_during_it() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        // Interleavings in which the writer looked while the frames were lent.
        static WAITED: AtomicUsize = AtomicUsize::new(0);
        // 35 interleavings at bound 2: three small actors.
        model_at_least("a_loan_given_back_wakes_a_writer_that_looked_during_it", 30, || {
            let shared = ConnShared::new(8, 1 << 20);
            shared.push_shared(&frame(1)).expect("room");
            let q = shared.clone();
            let direct = thread::spawn(move || {
                if let Some(lent) = q.lend() {
                    // The stream took nothing.
                    q.settle(lent, 0);
                }
            });
            let q = shared.clone();
            let broadcaster = thread::spawn(move || {
                q.push_shared(&frame(2)).expect("room");
            });
            // The writer task.
            let waiting = if shared.has_work() {
                None
            } else {
                let listener = shared.ready.listen();
                (!shared.has_work()).then_some(listener)
            };
            direct.join().expect("direct writer");
            broadcaster.join().expect("broadcaster");
            if let Some(mut listener) = waiting {
                WAITED.fetch_add(1, Ordering::Relaxed);
                let woken = futures_lite::future::block_on(futures_lite::future::poll_once(&mut listener)).is_some();
                assert!(woken, "the writer waits while frames are queued: a lost wake-up");
            }
            assert_eq!(drain(&shared), vec![1, 2], "the frames left once and in order");
            assert_drained("after the loan", &shared);
        });
        assert!(WAITED.load(Ordering::Relaxed) > 0, "no interleaving had the writer look during the loan");
    }

    /// The server's read-side hand-off (`server/lead.rs`) at the end of a connection: the
    /// task retires the slot (`ReadSlot::retire`, the end of `Conn::serve`) while a thread
    /// waiting for events claims the side, reads and gives it back (`Conn::lead`), twice. The
    /// side is dropped exactly once, by whoever holds it last, and nobody leads after the
    /// retirement.
    #[test]
    fn a_read_side_is_dropped_once_when_its_connection_ends_under_a_leader() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::time::Instant;

        use crate::handoff::{ReadSlot, Release, Side};

        /// The read side: counts its drops.
        struct Token(Arc<AtomicUsize>);
        impl Side for Token {
            fn kill(&self) {}
        }
        impl Drop for Token {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        model_at_least("a_read_side_is_dropped_once_when_its_connection_ends_under_a_leader", 10, || {
            let drops = Arc::new(AtomicUsize::new(0));
            let slot = Arc::new(ReadSlot::<Token>::default());
            slot.reset(true);
            slot.hand_over(Token(drops.clone()), Instant::now());
            let s = slot.clone();
            let leader = thread::spawn(move || {
                for _ in 0..2 {
                    if let Some(side) = s.claim() {
                        s.release(side, Instant::now(), Release::Keep);
                    }
                }
            });
            // The task's end.
            drop(slot.retire());
            assert!(slot.claim().is_none(), "a retired slot was led");
            leader.join().expect("leader");
            assert!(slot.claim().is_none(), "a retired slot was led");
            assert!(slot.retire().is_none(), "a read side was left in a retired slot");
            assert_eq!(drops.load(Ordering::SeqCst), 1, "the read side was not dropped exactly once");
        });
    }

    /// C1: the frame bound is exact with concurrent pushers. A broadcast
    /// (under the registry lock) and the client's own reply (outside it)
    /// race for the last slot while the writer takes frames; the queue never
    /// holds more than `outbound_frames`, and a broadcast that finds it full
    /// removes the client as a slow consumer and never reaches it again.
    #[test]
    fn bound_holds_between_broadcast_reply_and_writer() {
        model("bound_holds_between_broadcast_reply_and_writer", || {
            let reg = open_registry(bounds(1));
            let a = admit(&reg);
            let shared = a.shared.clone();

            let r = reg.clone();
            let broadcaster = thread::spawn(move || {
                let mut slow = 0;
                for s in 1..=2 {
                    let out = r.fan_out(frame(s).as_bytes(), None);
                    close_slow(&out);
                    slow += out.slow.len();
                }
                slow
            });
            let s2 = shared.clone();
            let reader = thread::spawn(move || {
                let _ = s2.push_unmetered(frame(9).as_bytes());
                assert!(s2.queued_frames() <= 1, "queue over its bound of 1 frame");
            });
            let s3 = shared.clone();
            let writer = thread::spawn(move || {
                let got = take_one(&s3);
                assert!(s3.queued_frames() <= 1, "queue over its bound of 1 frame");
                got
            });
            let slow = broadcaster.join().expect("broadcaster");
            reader.join().expect("reader");
            let first = writer.join().expect("writer");

            assert!(shared.queued_frames() <= 1);
            let mut got: Vec<u8> = first.into_iter().collect();
            got.extend(drain(&shared));
            let live: Vec<u8> = got.iter().copied().filter(|&s| s != 9).collect();
            assert_increasing("client", &live);
            if slow == 1 {
                assert!(reg.remove(a.id).is_none(), "a slow consumer stays registered");
                // Slow at 1: 2 found nobody and went offline. Slow at 2: it is lost with the client.
                let expected_offline = if live.is_empty() { 1 } else { 0 };
                assert!(live.is_empty() || live == [1], "frame after the slow removal: {got:?}");
                assert_eq!(reg.offline_len(), expected_offline, "client got {got:?}");
            } else {
                assert_eq!(live, [1, 2], "no slow consumer, yet a broadcast is missing: {got:?}");
                assert_eq!(reg.offline_len(), 0);
            }
            assert_drained("client", &shared);
        });
    }

    /// C1: a slow consumer removed by one broadcaster gets nothing from a
    /// second broadcaster; a client joining meanwhile gets each broadcast
    /// at most once and in each broadcaster's order.
    #[test]
    fn slow_consumer_removed_while_another_broadcaster_and_a_joiner_run() {
        model("slow_consumer_removed_while_another_broadcaster_and_a_joiner_run", || {
            let reg = open_registry(bounds(1));
            let a = admit(&reg);
            let a_shared = a.shared.clone();
            let r = reg.clone();
            // Each broadcaster returns the broadcasts a slow consumer refused (lost with it).
            let first = thread::spawn(move || {
                let mut refused = Vec::new();
                for s in 1..=2 {
                    let out = r.fan_out(frame(s).as_bytes(), None);
                    close_slow(&out);
                    refused.extend(out.slow.iter().map(|(c, _)| (s, c.id)));
                }
                refused
            });
            let r = reg.clone();
            let second = thread::spawn(move || {
                let out = r.fan_out(frame(3).as_bytes(), None);
                close_slow(&out);
                out.slow.iter().map(|(c, _)| (3, c.id)).collect::<Vec<_>>()
            });
            let r = reg.clone();
            let joiner = thread::spawn(move || {
                let b = admit(&r);
                let got = take_one(&b.shared);
                (b, got)
            });
            let mut refused = first.join().expect("first broadcaster");
            refused.extend(second.join().expect("second broadcaster"));
            // A never reads, so it is slow at its second broadcast; B (reading one frame) may be too.
            let mut slow_ids: Vec<u64> = refused.iter().map(|&(_, id)| id).collect();
            slow_ids.sort_unstable();
            slow_ids.dedup();
            assert_eq!(slow_ids.len(), refused.len(), "a slow consumer was removed twice: {refused:?}");
            assert!(slow_ids.contains(&a.id), "the client that never reads was not found slow");
            let (b, got) = joiner.join().expect("joiner");
            let mut b_got: Vec<u8> = got.into_iter().collect();
            b_got.extend(drain(&b.shared));

            // A never reads: its queue of 1 holds the first frame it got, then it is slow.
            assert_eq!(a_shared.queued_frames(), 1, "the slow consumer's queue holds exactly its bound");
            assert!(a_shared.is_closed(), "the slow consumer was closed");
            assert!(reg.remove(a.id).is_none(), "the slow consumer is not registered");
            let a_got = drain(&a_shared);
            let b_first: Vec<u8> = b_got.iter().copied().filter(|&s| s != 3).collect();
            assert_increasing("joining client (first broadcaster)", &b_first);
            let mut all = b_got.clone();
            all.sort_unstable();
            all.dedup();
            assert_eq!(all.len(), b_got.len(), "joining client got a duplicate: {b_got:?}");
            for &(s, id) in &refused {
                let got = if id == a.id { &a_got } else { &b_got };
                assert!(!got.contains(&s), "slow consumer c{id} got broadcast {s}, which it refused");
            }
            let offline = reg.offline_len();
            let missing: Vec<u8> = (1..=3)
                .filter(|s| !a_got.contains(s) && !b_got.contains(s) && !refused.iter().any(|r| r.0 == *s))
                .collect();
            assert!(missing.len() <= offline, "broadcasts {missing:?} lost: a {a_got:?}, b {b_got:?}");
            assert_drained("joining client", &b.shared);
        });
    }

    /// C1: `stop` (`Registry::shut`) while a client joins and a broadcast
    /// runs. Every client admitted before the stop is closed by it, none is
    /// admitted after it, and the broadcast either reached an open queue or
    /// went to the offline queue (which survives a stop), never both.
    #[test]
    fn stop_while_a_client_joins_and_a_broadcast_runs() {
        model("stop_while_a_client_joins_and_a_broadcast_runs", || {
            let reg = open_registry(bounds(4));
            let a = admit(&reg);
            let r = reg.clone();
            let stopper = thread::spawn(move || r.shut());
            let r = reg.clone();
            let joiner = thread::spawn(move || match r.admit(info) {
                Admission::Admitted(b) => Some(b),
                Admission::Stopped => None,
                Admission::Full => panic!("3 clients allowed, 2 at most here"),
            });
            let r = reg.clone();
            let broadcaster = thread::spawn(move || r.fan_out(frame(1).as_bytes(), None).offline);
            stopper.join().expect("stopper");
            let b = joiner.join().expect("joiner");
            let offline = broadcaster.join().expect("broadcaster");

            assert!(matches!(reg.admit(info), Admission::Stopped), "a stopped registry admitted a client");
            assert!(a.shared.is_closed(), "stop left a client open");
            let mut delivered = drain(&a.shared).len();
            if let Some(b) = &b {
                assert!(b.shared.is_closed(), "a client admitted before the stop was left open");
                delivered += drain(&b.shared).len();
                assert_drained("joining client", &b.shared);
            }
            assert_drained("client", &a.shared);
            assert_eq!(reg.offline_len(), usize::from(offline));
            assert!(offline != (delivered > 0), "broadcast delivered {delivered} times, offline: {offline}");
            if delivered == 2 {
                assert!(b.is_some());
            }
        });
    }

    /// C2 (origin bug 9): two frames wait offline; a broadcaster publishes
    /// two more while two clients connect. The first client admitted gets
    /// all four exactly once and in order (offline before live); the other
    /// gets a suffix of the live ones; the offline queue ends empty.
    #[test]
    fn offline_handoff_while_publishing_and_two_clients_connect() {
        model("offline_handoff_while_publishing_and_two_clients_connect", || {
            let reg = open_registry(bounds(8));
            for s in 1..=2 {
                assert!(reg.fan_out(frame(s).as_bytes(), None).offline);
            }
            let r = reg.clone();
            let broadcaster = thread::spawn(move || {
                for s in 3..=4 {
                    r.fan_out(frame(s).as_bytes(), None);
                }
            });
            let joiners: Vec<_> = (0..2)
                .map(|_| {
                    let r = reg.clone();
                    thread::spawn(move || {
                        let c = admit(&r);
                        let got: Vec<u8> = take_one(&c.shared).into_iter().collect();
                        (c, got)
                    })
                })
                .collect();
            broadcaster.join().expect("broadcaster");
            let mut clients: Vec<(Admitted, Vec<u8>)> =
                joiners.into_iter().map(|j| j.join().expect("joiner")).collect();
            clients.sort_by_key(|(c, _)| c.id);
            for (c, got) in &mut clients {
                got.extend(drain(&c.shared));
                assert_drained("client", &c.shared);
            }
            let (first, second) = (&clients[0], &clients[1]);
            assert!(first.0.replayed >= 2, "the first client takes the offline queue");
            assert_eq!(second.0.replayed, 0, "only the first client takes the offline queue");
            assert_eq!(first.1, [1, 2, 3, 4], "first client: offline then live, each once, in order");
            let tail = &second.1;
            assert!(tail.is_empty() || tail == &[4] || tail == &[3, 4], "second client got {tail:?}");
            assert_eq!(reg.offline_len(), 0);
        });
    }

    /// C2: the only client leaves while broadcasts are published and a new
    /// client connects. A broadcast that found only the leaving (closed)
    /// client goes offline and the newcomer takes it first: nothing is lost,
    /// duplicated or reordered.
    #[test]
    fn handoff_when_the_only_client_leaves_during_a_broadcast() {
        model("handoff_when_the_only_client_leaves_during_a_broadcast", || {
            let reg = open_registry(bounds(8));
            let a = admit(&reg);
            let r = reg.clone();
            let broadcaster = thread::spawn(move || {
                for s in 1..=2 {
                    r.fan_out(frame(s).as_bytes(), None);
                }
            });
            let r = reg.clone();
            let leaver = thread::spawn(move || {
                a.shared.close_queue();
                r.remove(a.id);
                let got = drain(&a.shared);
                assert_drained("leaving client", &a.shared);
                got
            });
            let r = reg.clone();
            let joiner = thread::spawn(move || admit(&r));
            broadcaster.join().expect("broadcaster");
            let a_got = leaver.join().expect("leaver");
            let b = joiner.join().expect("joiner");
            let b_got = drain(&b.shared);
            assert_increasing("new client", &b_got);
            for s in 1..=2 {
                assert!(a_got.contains(&s) || b_got.contains(&s), "broadcast {s} lost: a {a_got:?}, b {b_got:?}");
            }
            assert_eq!(reg.offline_len(), 0);
            assert_drained("new client", &b.shared);
        });
    }
}

#[cfg(all(shuttle, not(socket_loom)))]
mod shuttle_models {
    use crate::sync::schedules;
    use std::sync::Mutex;

    use super::*;
    use crate::server::registry::Unicast;

    /// Broadcasts in the C3 model (sequence numbers 1..=BROADCASTS).
    const BROADCASTS: u8 = 6;
    /// Sequence number of a reply a client's reader queues for itself.
    const REPLY: u8 = 200;
    /// First sequence number of unicasts.
    const UNICAST: u8 = 100;
    const OUTBOUND: usize = 2;

    /// What one connection (one admission) saw.
    #[derive(Debug)]
    struct Session {
        id: u64,
        replayed: usize,
        dropped: u64,
        got: Vec<u8>,
    }

    #[derive(Debug, Default)]
    struct Log {
        sessions: Vec<Session>,
        /// Broadcasts that went offline, and old ones dropped from there.
        offline_pushes: u64,
        offline_drops: u64,
        /// Broadcasts refused by a slow consumer and taken by nobody else.
        refused: Vec<u8>,
    }

    fn check_bound(shared: &ConnShared) {
        let n = shared.queued_frames();
        assert!(n <= OUTBOUND, "a client's queue holds {n} frames, bound {OUTBOUND}");
    }

    /// One client: `sessions` connections in a row. A connection reads
    /// (or not, when `slow`), queues a reply now and then, and ends when
    /// its queue is closed (slow consumer, stop) or after a few steps; like
    /// `Conn::serve` it then closes its queue and leaves the registry.
    fn client(reg: &Registry, log: &Mutex<Log>, slow: bool, sessions: usize) {
        for session in 0..sessions {
            let mut admitted = None;
            for _ in 0..6 {
                match reg.admit(info) {
                    Admission::Admitted(a) => {
                        admitted = Some(a);
                        break;
                    }
                    Admission::Stopped | Admission::Full => thread::yield_now(),
                }
            }
            let Some(a) = admitted else { continue };
            assert!(reg.len() <= 3, "more clients registered than max_clients");
            let mut got = Vec::new();
            for step in 0..4 {
                if a.shared.is_closed() {
                    break;
                }
                if step == 1 {
                    let _ = a.shared.push_unmetered(frame(REPLY).as_bytes());
                }
                check_bound(&a.shared);
                if !(slow && session == 0) {
                    got.extend(take_one(&a.shared));
                }
                thread::yield_now();
            }
            a.shared.close_queue();
            reg.remove(a.id);
            got.extend(drain(&a.shared));
            assert_drained("client", &a.shared);
            let got = got.into_iter().filter(|&s| s != REPLY).collect();
            let mut log = log.lock().expect("log");
            log.sessions.push(Session { id: a.id, replayed: a.replayed, dropped: a.dropped, got });
        }
    }

    /// What the schedules covered: a run whose schedules never hit a slow
    /// consumer or an offline replay checked less than it claims, and fails.
    #[derive(Debug, Default)]
    struct Coverage {
        schedules: usize,
        with_slow_consumer: usize,
        with_offline_replay: usize,
        connections: usize,
    }

    thread_local! {
        // Shuttle runs a test's schedules on the test's own thread.
        static COVERAGE: std::cell::RefCell<Coverage> = std::cell::RefCell::default();
    }

    fn run(name: &str, check: impl FnOnce()) {
        // Most schedules have both (about 80 % and 90 % at the per-PR budget).
        let enough =
            |c: &Coverage| c.with_slow_consumer > 0 && c.with_offline_replay > 0 && c.connections >= c.schedules;
        schedules::covered(&COVERAGE, name, check, |c| c.schedules, enough);
    }

    /// C3: three clients (one slow in its first connection) joining and
    /// leaving twice each, a broadcaster, a unicaster, and a stop/start.
    fn registry_model() {
        let reg = Arc::new(Registry::new(Bounds {
            max_clients: 3,
            outbound_frames: OUTBOUND,
            outbound_bytes: 1 << 20,
            offline_frames: 4,
            offline_bytes: 1 << 20,
            retain_last: false,
        }));
        reg.open();
        let log = Arc::new(Mutex::new(Log::default()));
        let mut actors = Vec::new();
        for slow in [false, false, true] {
            let (r, l) = (reg.clone(), log.clone());
            actors.push(thread::spawn(move || client(&r, &l, slow, 2)));
        }
        let (r, l) = (reg.clone(), log.clone());
        actors.push(thread::spawn(move || {
            for s in 1..=BROADCASTS {
                let out = r.fan_out(frame(s).as_bytes(), None);
                close_slow(&out);
                let mut log = l.lock().expect("log");
                if out.offline {
                    log.offline_pushes += 1;
                    log.offline_drops += out.dropped;
                }
                if !out.slow.is_empty() {
                    log.refused.push(s);
                }
                drop(log);
                thread::yield_now();
            }
        }));
        let r = reg.clone();
        actors.push(thread::spawn(move || {
            for (k, id) in (1..=4).enumerate() {
                match r.unicast(id, &frame(UNICAST + k as u8)) {
                    Ok(()) | Err(Unicast::NoClient) => {}
                    Err(Unicast::Slow(c, _)) => c.shared.close(Closing::SlowConsumer(frame(0))),
                }
                thread::yield_now();
            }
        }));
        let r = reg.clone();
        actors.push(thread::spawn(move || {
            thread::yield_now();
            r.shut();
            assert!(matches!(r.admit(info), Admission::Stopped), "a stopped registry admitted a client");
            thread::yield_now();
            r.open();
        }));
        for a in actors {
            a.join().expect("actor");
        }

        let log = log.lock().expect("log");
        let mut ids: Vec<u64> = log.sessions.iter().map(|s| s.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), log.sessions.len(), "a client id was reused");
        let mut received = Vec::new();
        for s in &log.sessions {
            let broadcasts: Vec<u8> = s.got.iter().copied().filter(|&x| x < UNICAST).collect();
            assert_increasing("connection", &broadcasts);
            received.extend(broadcasts);
        }
        let replayed: u64 = log.sessions.iter().map(|s| s.replayed as u64).sum();
        let replay_drops: u64 = log.sessions.iter().map(|s| s.dropped).sum();
        let left = reg.offline_len() as u64;
        assert_eq!(
            log.offline_pushes,
            replayed + replay_drops + log.offline_drops + left,
            "offline queue accounting: {log:?}, {left} left"
        );
        let missing: Vec<u8> = (1..=BROADCASTS).filter(|s| !received.contains(s) && !log.refused.contains(s)).collect();
        assert!(
            missing.len() as u64 <= left + log.offline_drops + replay_drops,
            "broadcasts {missing:?} lost: {log:?}, {left} still offline"
        );
        assert_eq!(reg.len(), 0, "every client left");
        COVERAGE.with_borrow_mut(|c| {
            c.schedules += 1;
            c.with_slow_consumer += usize::from(!log.refused.is_empty());
            c.with_offline_replay += usize::from(replayed > 0);
            c.connections += log.sessions.len();
        });
    }

    /// C3 with shuttle's random scheduler: 1,000 schedules from a fixed seed.
    #[test]
    fn registry_state_machine_random() {
        run("random", || schedules::random(registry_model));
    }

    /// C3 with shuttle's PCT scheduler (depth 3): 1,000 schedules from a fixed seed.
    #[test]
    fn registry_state_machine_pct() {
        run("pct", || schedules::pct(registry_model));
    }
}
