//! Model checks of the client's leader/follower hand-off of the read side (`lead.rs`): the
//! production [`ReadSlot`] itself, its mutex and `want` flag on [`crate::sync`]'s loom or
//! shuttle primitives, passing a token instead of the connection's `LinkReader`.
//!
//! * loom (`cargo xtask loom`: `--cfg socket_loom`, `LOOM_MAX_PREEMPTIONS=2`): five small
//!   scenes (two receivers taking turns, a quiet leader asking again, the lease running out
//!   while a receiver claims, the connection ending under a leader, a failed write while a
//!   leader reads), every interleaving within the preemption bound.
//! * shuttle (`cargo xtask shuttle`: `--cfg shuttle`): three receivers whose leaders end
//!   their turns at random (deliver, quiet, time out, end of stream), a clock that lets
//!   leases run out at random points and, in an eighth of the schedules, a write that fails
//!   at any time; 1,000 random and 1,000 PCT schedules from fixed seeds.
//!
//! Actors play the production callers, running the slot's production code: the supervisor
//! is `Inner::serve_link` (it reads while nobody asks — at most `budget` frames each time it
//! holds the side, then its read pends and only a request, the death switch or the end of
//! the scene moves it: [`ReadSlot::wanted`], [`ReadSlot::wait_wanted`]; then
//! [`ReadSlot::hand_over`] and [`ReadSlot::take_back`]); a receiver is `Client::receive`
//! (pop the receive buffer, else `Inner::lead`: [`ReadSlot::claim`], read one frame,
//! [`ReadSlot::release`]; a follower parks until the buffer changes or a hand-over wakes
//! it). The token carries the index of the next frame on the wire; whoever holds it reads
//! by pushing that index to the receive buffer and incrementing it. The clock is an input:
//! every party's `now` is a fixed instant plus a number of leases that a clock actor (or the
//! end of the scene, when every receiver is done) advances, so a lease runs out exactly
//! where the scheduler puts the tick, never by sleeping. The production async waits
//! (`wait_wanted`, `take_back`) are polled on their actor's thread, which parks while they
//! pend; their waker unparks it (right after the notifying call returns: [`Switch::flush`]);
//! the take-back's timer is the model's clock.
//!
//! Checked in every interleaving:
//! * one reader: whoever obtains the side (supervisor, or a leader from `claim`) finds
//!   nobody else holding it and the slot empty (Rust's ownership of the side makes two
//!   holders impossible; the model checks that the slot never hands it out while lost);
//! * the side is never lost: at the end the supervisor holds it and the slot is empty, and
//!   while receivers go quiet it always gets it back (a scene ends only when it has);
//! * no lost wake-up: a request wakes the supervisor's `wait_wanted`, a leader's hand-back
//!   wakes its `take_back` with the clock stopped (only the notification can), a hand-over
//!   wakes parked receivers; a lost one leaves every actor parked, which loom and shuttle
//!   report as a deadlock;
//! * order: the frames read are exactly 0, 1, 2, … in read order, every frame read reaches
//!   exactly one receiver, and each receiver gets them in increasing order; a connection
//!   ending under a leader reaches the supervisor with its reason.
//!
//! And that the scenes do what they are for: each loom scene reaches its point (a leader
//! read, a second hand-over, the end of the stream or the failed write) in at least one
//! interleaving, and the shuttle runs count schedules with leader reads, second hand-overs,
//! end of stream and failed writes (between about a hundred and nine hundred of the 1,000
//! each).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex as StdMutex, MutexGuard as StdGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use event_listener::EventListener;
use futures_lite::future;

use super::receive::{SERVER_CLOSED, WRITE_FAILED};
use crate::handoff::{Back, ReadSlot, Release, Side, LEASE};
use crate::sync::AtomicBool;

#[cfg(socket_loom)]
use loom::{sync::atomic::AtomicU32, thread};
#[cfg(all(shuttle, not(socket_loom)))]
use shuttle::{sync::atomic::AtomicU32, thread};

/// Leases the clock jumps when every receiver is done.
const QUIET: u32 = 1_000;

/// Who holds the read side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Party {
    Supervisor,
    Receiver(usize),
}

/// An actor thread, as the others wake it. `woken` and `parked` are plain atomics (no
/// scheduling points): an actor is unparked only while it parks in [`wait_for`], never
/// while it is blocked on the slot's mutex.
#[derive(Debug)]
struct Actor {
    thread: thread::Thread,
    /// The supervisor: woken only by what it waits for (its futures' wakers, the death
    /// switch, the end of the scene, the clock while it waits in `take_back`), never by the
    /// receivers' traffic, which would re-poll its waits and hide a lost notification.
    supervisor: bool,
    /// The supervisor waits in `take_back`, whose timer is the clock.
    on_clock: std::sync::atomic::AtomicBool,
    woken: std::sync::atomic::AtomicBool,
    parked: std::sync::atomic::AtomicBool,
}

impl Actor {
    fn wake(&self) {
        self.woken.store(true, Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) {
            self.thread.unpark();
        }
    }
}

/// The connection's death switch (`Link`), and the actors to wake when anything changes.
#[derive(Debug)]
struct Switch {
    dead: AtomicBool,
    actors: StdMutex<Vec<Arc<Actor>>>,
    /// Actors whose production future was woken (a listener notified), to unpark once the
    /// notifying call has returned ([`Switch::flush`]).
    notified: StdMutex<Vec<Arc<Actor>>>,
}

impl Switch {
    fn kill(&self) {
        self.dead.store(true, Ordering::Release);
        self.touch(|_| true);
    }

    /// Something that the actors `concerned` may wait for changed: they look again.
    fn touch(&self, concerned: impl Fn(&Actor) -> bool) {
        let actors = self.actors.lock().expect("actors").clone();
        for a in actors.iter().filter(|a| concerned(a)) {
            a.wake();
        }
    }

    /// The receive buffer changed (a push, `wake_sleepers`, the client closed): the
    /// receivers look again.
    fn touch_receivers(&self) {
        self.touch(|a| !a.supervisor);
    }

    /// Unparks the actors that a notification woke. A waker runs inside `Event::notify`,
    /// under `event_listener`'s own (real) lock, and a shuttle unpark is a scheduling point:
    /// switching threads there would block the next `listen` for real. So the waker only
    /// marks its actor ([`Unpark`]), and whoever called the notifying slot method
    /// (`claim`, `release`) unparks it right after.
    fn flush(&self) {
        let woken = std::mem::take(&mut *self.notified.lock().expect("notified"));
        for a in woken {
            a.wake();
        }
    }
}

/// The read side in the models: the index of the next frame on the wire.
#[derive(Debug)]
struct Token {
    next: u32,
    switch: Arc<Switch>,
}

impl Side for Token {
    fn kill(&self) {
        self.switch.kill();
    }
}

/// How a leader's turn ends (`Inner::read_here`'s outcomes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    /// Reads one frame (quiet if the wire has none; dead if the switch is thrown).
    Deliver,
    /// Nothing came for a lease: the side goes back to the supervisor.
    Quiet,
    /// The caller's deadline passed: the side stays, other receivers are woken.
    TimeOut,
    /// Reads one frame, then end-of-stream.
    End,
}

/// The model's bookkeeping around the slot: the receive buffer, who holds the side, the
/// clock. A plain mutex with no model operation inside, so it adds no interleavings of its
/// own: the models explore the slot's.
#[derive(Debug, Default)]
struct Books {
    holder: Option<Party>,
    /// Frames read, in read order.
    read: Vec<u32>,
    /// The receive buffer.
    inbox: VecDeque<u32>,
    consumed: u32,
    /// Bumped by every push to the receive buffer and every `wake_sleepers`: a parked
    /// receiver wakes when it changes.
    epoch: u64,
    /// The client is closed (the connection ended): receivers stop once the buffer is empty.
    closed: bool,
    receivers_left: usize,
    /// Looks at the clock since every receiver is done.
    quiet_looks: u32,
    /// Hand-overs to the receiving threads, and frames their leaders read (coverage).
    hand_overs: u32,
    leader_reads: u32,
}

/// How a scene went: why the connection ended (`None`: every frame was read and the
/// receivers are done), and what the coverage checks count.
#[derive(Debug)]
struct Outcome {
    ended: Option<String>,
    hand_overs: u32,
    leader_reads: u32,
}

#[derive(Debug)]
struct World {
    slot: ReadSlot<Token>,
    frames: u32,
    t0: Instant,
    /// Leases passed (the clock actor's ticks).
    ticks: AtomicU32,
    switch: Arc<Switch>,
    books: StdMutex<Books>,
}

enum Pop {
    Item(u32),
    /// The buffer is empty; registered as a sleeper at this epoch.
    Empty(u64),
    /// Every frame was received, or the client closed.
    Over,
}

impl World {
    fn new(frames: u32, receivers: usize) -> Arc<World> {
        let slot = ReadSlot::default();
        slot.reset(true);
        Arc::new(World {
            slot,
            frames,
            t0: Instant::now(),
            ticks: AtomicU32::new(0),
            switch: Arc::new(Switch {
                dead: AtomicBool::new(false),
                actors: StdMutex::new(Vec::new()),
                notified: StdMutex::new(Vec::new()),
            }),
            books: StdMutex::new(Books {
                holder: Some(Party::Supervisor),
                receivers_left: receivers,
                ..Books::default()
            }),
        })
    }

    fn books(&self) -> StdGuard<'_, Books> {
        self.books.lock().expect("books")
    }

    fn token(&self) -> Token {
        Token { next: 0, switch: self.switch.clone() }
    }

    /// Leases pass at the clock actor's ticks; once every receiver is done, a lease passes at
    /// every look (the receivers went quiet: time runs on).
    fn now(&self) -> Instant {
        let mut b = self.books();
        let ticks = if b.receivers_left == 0 {
            b.quiet_looks += 1;
            QUIET + b.quiet_looks
        } else {
            drop(b);
            self.ticks.load(Ordering::Acquire)
        };
        self.t0 + LEASE * ticks
    }

    fn dead(&self) -> bool {
        self.switch.dead.load(Ordering::Acquire)
    }

    /// The calling thread is an actor: woken when something it waits for changes.
    fn join(&self, supervisor: bool) -> Arc<Actor> {
        let me = Arc::new(Actor {
            thread: thread::current(),
            supervisor,
            on_clock: std::sync::atomic::AtomicBool::new(false),
            woken: std::sync::atomic::AtomicBool::new(false),
            parked: std::sync::atomic::AtomicBool::new(false),
        });
        self.switch.actors.lock().expect("actors").push(me.clone());
        me
    }

    fn receivers_done(&self) -> bool {
        self.books().receivers_left == 0
    }

    /// `who` obtained the side: nobody else may hold it.
    fn take(&self, who: Party) {
        let mut b = self.books();
        assert_eq!(b.holder, None, "{who:?} got the read side while {:?} holds it", b.holder);
        b.holder = Some(who);
    }

    /// `who` gives the side to the slot.
    fn give(&self, who: Party) {
        let mut b = self.books();
        assert_eq!(b.holder, Some(who), "{who:?} gave away a read side it does not hold");
        b.holder = None;
    }

    /// `who` reads the next frame, if the wire has one: into the receive buffer.
    fn read(&self, side: &mut Token, who: Party) -> bool {
        let mut b = self.books();
        assert_eq!(b.holder, Some(who), "{who:?} reads without holding the read side");
        if side.next == self.frames {
            return false;
        }
        b.read.push(side.next);
        b.leader_reads += u32::from(who != Party::Supervisor);
        b.inbox.push_back(side.next);
        b.epoch += 1;
        side.next += 1;
        drop(b);
        self.switch.touch_receivers();
        true
    }

    fn pop(&self) -> Pop {
        let mut b = self.books();
        if let Some(i) = b.inbox.pop_front() {
            b.consumed += 1;
            return Pop::Item(i);
        }
        if b.closed || b.consumed == self.frames {
            return Pop::Over;
        }
        Pop::Empty(b.epoch)
    }

    /// `Inbox::wake_sleepers`.
    fn wake(&self) {
        self.books().epoch += 1;
        self.switch.touch_receivers();
    }

    /// A receiver parked at `epoch` may look again.
    fn woken(&self, epoch: u64) -> bool {
        let b = self.books();
        b.epoch != epoch || b.closed || b.consumed == self.frames
    }

    fn close(&self) {
        let mut b = self.books();
        b.closed = true;
        b.epoch += 1;
        drop(b);
        self.switch.touch_receivers();
    }
}

/// Waits for `ready`, parked between looks (every change unparks every actor). A lost
/// wake-up leaves every actor parked: loom and shuttle fail the scene as a deadlock.
fn wait_for(me: &Actor, mut ready: impl FnMut() -> bool) {
    while !ready() {
        // Looks again only when woken: shuttle's `park` also returns spuriously, and a look
        // then would hide a lost wake-up.
        while !me.woken.swap(false, Ordering::SeqCst) {
            me.parked.store(true, Ordering::SeqCst);
            thread::park();
            me.parked.store(false, Ordering::SeqCst);
        }
    }
}

/// Wakes an actor: the waker of the production futures it polls. Marks the actor woken (no
/// scheduling point) and leaves the unpark to [`Switch::flush`].
struct Unpark(Arc<Actor>, Arc<Switch>);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.woken.store(true, Ordering::SeqCst);
        self.1.notified.lock().expect("notified").push(self.0.clone());
    }
}

/// Runs a production future to completion on the calling actor, parked while it is pending:
/// only its own wake-ups (and the model's changes) move it.
fn block_on<F: Future>(me: &Arc<Actor>, switch: &Arc<Switch>, fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let waker = Waker::from(Arc::new(Unpark(me.clone(), switch.clone())));
    let mut cx = Context::from_waker(&waker);
    let mut out = None;
    wait_for(me, || match fut.as_mut().poll(&mut cx) {
        Poll::Ready(v) => {
            out = Some(v);
            true
        }
        Poll::Pending => false,
    });
    out.expect("completed")
}

/// A future that is ready once `ready` holds.
fn when(ready: impl Fn() -> bool) -> impl Future<Output = ()> {
    future::poll_fn(move |_| if ready() { Poll::Ready(()) } else { Poll::Pending })
}

/// The supervisor (`Inner::serve_link`): reads at most `budget` frames each time it holds
/// the side, hands it over on request, takes it back. Returns the side and why the
/// connection ended (`None`: the scene ended with the receivers done).
fn supervisor(w: &World, budget: u32) -> (Token, Option<String>) {
    let me = Party::Supervisor;
    let actor = w.join(true);
    let mut side = w.token();
    loop {
        // `read_frames`, raced with the death switch.
        let mut left = budget;
        loop {
            if w.dead() {
                return (side, Some(WRITE_FAILED.to_owned()));
            }
            if w.slot.wanted() {
                break;
            }
            if left > 0 && w.read(&mut side, me) {
                left -= 1;
                continue;
            }
            // Its read pends: only a request (or the death switch, or the end) moves it.
            let asked = block_on(
                &actor,
                &w.switch,
                future::or(
                    async {
                        w.slot.wait_wanted().await;
                        true
                    },
                    async {
                        when(|| w.dead() || w.receivers_done()).await;
                        false
                    },
                ),
            );
            if !asked && !w.dead() {
                return (side, None);
            }
        }
        w.give(me);
        w.books().hand_overs += 1;
        w.slot.hand_over(side, w.now());
        w.wake();
        // The production wait: the hand-back, the death switch, or the lease's end on the
        // model's clock.
        let wait = |until: Instant, mut back: EventListener| {
            future::poll_fn(move |cx| {
                if w.dead() {
                    // `Link::dead` is ready at once: while a leader holds the side the
                    // production loop spins until it parks the side; let it run.
                    thread::yield_now();
                    Poll::Ready(())
                } else if Pin::new(&mut back).poll(cx).is_ready() || w.now() >= until {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
        };
        actor.on_clock.store(true, Ordering::SeqCst);
        let got = block_on(&actor, &w.switch, w.slot.take_back(|| w.now(), || w.dead(), wait));
        actor.on_clock.store(false, Ordering::SeqCst);
        w.take(me);
        match got {
            Ok(back) => side = back,
            Err((reason, back)) => return (back, Some(reason.unwrap_or_else(|| WRITE_FAILED.to_owned()))),
        }
    }
}

/// A receiving thread (`Client::receive` in a loop): pops the buffer, leads when it is
/// empty (its turns end as `script` says, then by delivering), follows otherwise. Returns
/// what it received.
fn receiver(w: &World, me: usize, script: &[Act]) -> Vec<u32> {
    let actor = w.join(false);
    let who = Party::Receiver(me);
    let mut acts = script.iter().copied();
    let mut got = Vec::new();
    loop {
        let epoch = match w.pop() {
            Pop::Item(i) => {
                got.push(i);
                continue;
            }
            Pop::Over => break,
            Pop::Empty(epoch) => epoch,
        };
        let claimed = w.slot.claim();
        w.switch.flush();
        match claimed {
            Some(mut side) => {
                w.take(who);
                let act = acts.next().unwrap_or(Act::Deliver);
                let how = match act {
                    _ if w.dead() => Release::Dead,
                    Act::Deliver if w.read(&mut side, who) => Release::Keep,
                    Act::Deliver | Act::Quiet => Release::Quiet,
                    Act::TimeOut => Release::Keep,
                    Act::End => {
                        w.read(&mut side, who);
                        Release::Ended(SERVER_CLOSED.to_owned())
                    }
                };
                // `Led::Follow`: the receiver parks on the buffer as a follower.
                let follow = matches!(how, Release::Quiet | Release::Dead | Release::Ended(_));
                w.give(who);
                w.slot.release(side, w.now(), how);
                w.switch.flush();
                if act == Act::TimeOut {
                    w.wake();
                }
                if follow {
                    wait_for(&actor, || w.woken(epoch));
                }
            }
            None => wait_for(&actor, || w.woken(epoch)),
        }
    }
    w.books().receivers_left -= 1;
    // The supervisor waits for the end of the scene.
    w.switch.touch(|a| a.supervisor);
    got
}

/// One scene: the supervisor on this thread, a receiver per script, the clock actor ticking
/// `ticks` times, and a failed write when `write_fails`. Checks the properties of the module
/// docs; returns how it went.
fn scene(frames: u32, budget: u32, scripts: Vec<Vec<Act>>, ticks: u32, write_fails: bool) -> Outcome {
    let w = World::new(frames, scripts.len());
    let receivers: Vec<_> = scripts
        .into_iter()
        .enumerate()
        .map(|(i, script)| {
            let w = w.clone();
            thread::spawn(move || receiver(&w, i, &script))
        })
        .collect();
    let clock = (ticks > 0).then(|| {
        let w = w.clone();
        thread::spawn(move || {
            for _ in 0..ticks {
                w.ticks.fetch_add(1, Ordering::AcqRel);
                w.switch.touch(|a| a.on_clock.load(Ordering::SeqCst));
                thread::yield_now();
            }
        })
    });
    let writer = write_fails.then(|| {
        let w = w.clone();
        thread::spawn(move || w.switch.kill())
    });

    let (side, ended) = supervisor(&w, budget);
    if ended.is_some() {
        // The client closes: the receivers stop once the buffer is empty.
        w.close();
    }
    let got: Vec<Vec<u32>> = receivers.into_iter().map(|r| r.join().expect("receiver")).collect();
    if let Some(clock) = clock {
        clock.join().expect("clock");
    }
    if let Some(writer) = writer {
        writer.join().expect("writer");
    }

    // The side: with the supervisor, nothing parked.
    assert_eq!(w.books().holder, Some(Party::Supervisor), "the supervisor ended without the read side");
    assert!(matches!(w.slot.try_take_back(w.now(), || true), Back::Wait(_)), "a read side was left in the slot");
    // Order: 0, 1, 2, … in read order; each frame read reached exactly one receiver, each in
    // order.
    let b = w.books();
    assert_eq!(b.read, (0..side.next).collect::<Vec<_>>(), "frames read out of order");
    assert!(b.inbox.is_empty(), "frames left in the receive buffer: {:?}", b.inbox);
    let mut all: Vec<u32> = got.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, b.read, "frames lost or duplicated on the way to the receivers: {got:?}");
    for g in &got {
        assert!(g.windows(2).all(|p| p[0] < p[1]), "a receiver got frames out of order: {got:?}");
    }
    match &ended {
        None => assert_eq!(side.next, frames, "the scene ended before every frame was read"),
        Some(reason) => assert!(w.dead(), "the connection ended ({reason}) without its death switch"),
    }
    Outcome { ended, hand_overs: b.hand_overs, leader_reads: b.leader_reads }
}

/// Runs `f` under loom; fails if it explored suspiciously few interleavings, or if the
/// scene's point (`f` returns true: e.g. the connection ended under a leader) was reached in
/// none of them (`LOOM_LOG=info` makes loom log how many).
#[cfg(socket_loom)]
fn model(name: &str, f: impl Fn() -> bool + Sync + Send + 'static) {
    use std::sync::atomic::AtomicUsize;
    let mut builder = loom::model::Builder::new();
    // `LOOM_MAX_PREEMPTIONS` sets it; 2 unless told otherwise.
    let bound = *builder.preemption_bound.get_or_insert(2);
    let runs = Arc::new(AtomicUsize::new(0));
    let reached = Arc::new(AtomicUsize::new(0));
    let (r, p) = (runs.clone(), reached.clone());
    builder.check(move || {
        r.fetch_add(1, Ordering::Relaxed);
        if f() {
            p.fetch_add(1, Ordering::Relaxed);
        }
    });
    let (n, hit) = (runs.load(Ordering::Relaxed), reached.load(Ordering::Relaxed));
    // Each model has 1,400 or more at bound 2: far fewer means it stopped exploring.
    assert!(bound < 2 || n >= 100, "{name}: only {n} interleavings explored at preemption bound {bound}");
    assert!(hit > 0, "{name}: the scene's point was reached in none of {n} interleavings");
}

#[cfg(socket_loom)]
mod loom_models {
    use super::*;
    use Act::*;

    /// Two receivers lead in turn and follow each other; the supervisor reads one frame
    /// each time it holds the side, so the receivers need the hand-over (a lost request
    /// or hand-over wake-up stalls them). The clock stands still until both are done.
    #[test]
    fn lead_two_receivers_take_turns() {
        model("lead_two_receivers_take_turns", || {
            let o = scene(3, 1, vec![vec![Deliver], vec![Deliver]], 0, false);
            assert_eq!(o.ended, None);
            o.leader_reads > 0
        });
    }

    /// A leader goes quiet (the side goes back) and its receiver asks again; with the clock
    /// standing still only the hand-back's notification wakes the supervisor's take-back,
    /// and only the request its next hand-over.
    #[test]
    fn lead_quiet_leader_hands_back_and_asks_again() {
        model("lead_quiet_leader_hands_back_and_asks_again", || {
            let o = scene(3, 1, vec![vec![Quiet, Deliver, Quiet], vec![TimeOut, Deliver]], 0, false);
            assert_eq!(o.ended, None);
            o.hand_overs >= 2
        });
    }

    /// The lease runs out (one tick, anywhere) while a receiver claims or leads: the
    /// supervisor takes the unused side back, the receiver asks again.
    #[test]
    fn lead_lease_expires_while_a_receiver_claims() {
        model("lead_lease_expires_while_a_receiver_claims", || {
            let o = scene(2, 1, vec![vec![Deliver, TimeOut], vec![Deliver]], 1, false);
            assert_eq!(o.ended, None);
            o.hand_overs >= 2
        });
    }

    /// The stream ends under a leader while another receiver follows: the supervisor gets
    /// the side with the reason, the receivers everything read before.
    #[test]
    fn lead_connection_ends_under_a_leader() {
        model("lead_connection_ends_under_a_leader", || {
            let o = scene(3, 1, vec![vec![End], vec![Deliver]], 0, false);
            let ended = o.ended.as_deref();
            assert!(
                ended.is_none() || ended == Some(SERVER_CLOSED),
                "the connection ended for another reason: {ended:?}"
            );
            ended.is_some()
        });
    }

    /// A write fails (the death switch) at any point while the side moves between the
    /// supervisor and a leader: the supervisor ends up with the side, whoever held it.
    #[test]
    fn lead_write_fails_during_the_hand_off() {
        model("lead_write_fails_during_the_hand_off", || {
            let o = scene(2, 1, vec![vec![Deliver]], 0, true);
            let ended = o.ended.as_deref();
            assert!(
                ended.is_none() || ended == Some(WRITE_FAILED),
                "the connection ended for another reason: {ended:?}"
            );
            // The write failed while the side was with the receiving threads.
            ended.is_some() && o.hand_overs > 0
        });
    }
}

#[cfg(all(shuttle, not(socket_loom)))]
mod shuttle_models {
    use crate::sync::schedules;
    use shuttle::rand::{thread_rng, Rng};

    use super::*;

    /// What the schedules of one run covered.
    #[derive(Debug, Default)]
    struct Coverage {
        schedules: usize,
        /// Schedules where a leader read, where the side went to the receiving threads more
        /// than once, where the stream ended under a leader, where a write failed.
        with_leader_reads: usize,
        with_second_hand_over: usize,
        with_end_of_stream: usize,
        with_write_failed: usize,
    }

    thread_local! {
        // Shuttle runs a test's schedules on the test's own thread.
        static COVERAGE: std::cell::RefCell<Coverage> = std::cell::RefCell::default();
    }

    fn run(name: &str, check: impl FnOnce()) {
        let enough = |c: &Coverage| {
            c.with_leader_reads > 0
                && c.with_second_hand_over > 0
                && c.with_end_of_stream > 0
                && c.with_write_failed > 0
        };
        schedules::covered(&COVERAGE, name, check, |c| c.schedules, enough);
    }

    /// Three receivers with random turns, random ticks, a write that fails in an eighth of
    /// the schedules; six frames, the supervisor reading one or two per turn. The connection
    /// ends rarely: its end wakes everybody, so it would hide a lost wake-up before it.
    fn hand_off_model() {
        let mut rng = thread_rng();
        let scripts = (0..3)
            .map(|_| {
                (0..4)
                    .map(|_| match rng.gen_range(0..20) {
                        0..=10 => Act::Deliver,
                        11..=14 => Act::Quiet,
                        15..=18 => Act::TimeOut,
                        _ => Act::End,
                    })
                    .collect()
            })
            .collect();
        let budget = rng.gen_range(1..=2);
        let ticks = rng.gen_range(0..=3);
        let write_fails = rng.gen_range(0..8) == 0;
        let o = scene(6, budget, scripts, ticks, write_fails);
        COVERAGE.with_borrow_mut(|c| {
            c.schedules += 1;
            c.with_leader_reads += usize::from(o.leader_reads > 0);
            c.with_second_hand_over += usize::from(o.hand_overs >= 2);
            c.with_end_of_stream += usize::from(o.ended.as_deref() == Some(SERVER_CLOSED));
            c.with_write_failed += usize::from(o.ended.as_deref() == Some(WRITE_FAILED));
        });
    }

    /// The hand-off with shuttle's random scheduler: 1,000 schedules from a fixed seed.
    #[test]
    fn lead_hand_off_random() {
        run("random", || schedules::random(hand_off_model));
    }

    /// The hand-off with shuttle's PCT scheduler (depth 3): 1,000 schedules from a fixed seed.
    #[test]
    fn lead_hand_off_pct() {
        run("pct", || schedules::pct(hand_off_model));
    }
}
