//! Who reads the live connection: the supervisor task, or a blocking `receive` on the
//! application's own thread (leader/follower).
//!
//! When the transport gives a blocking view of the stream ([`BlockingRead`](crate::BlockingRead)), a blocking
//! `receive` that finds the receive buffer empty asks for the read side
//! ([`ReadSlot::claim`]). The supervisor hands it over at a point where everything it read
//! is delivered (its pending read is cancel-safe), and from then on the receiving threads
//! read: one at a time (the leader holds the [`LinkReader`]; the others wait on the receive
//! buffer as followers), decoding and acting on protocol frames exactly as the supervisor
//! does (`Inner::take_frames`). A message then costs the receiving thread a `poll` and a
//! `read`, and no thread wake-up in between, where the reactor path costs a reactor round
//! on another thread and a wake-up of the receiver.
//!
//! The supervisor takes the read side back when the receivers go quiet: a leader that
//! read nothing for [`LEASE`] hands it back, and while the side lies unused (the application
//! is busy between two `receive` calls) the supervisor takes it after [`LEASE`]. So pings
//! are answered, end-of-stream is noticed and the receive buffer fills while nobody
//! receives, as before. A leader looks at the connection's death switch every [`SLICE`], so
//! `disconnect` or a failed write reaches it that fast.
//!
//! Order and bounds: only one party reads at a time and frames are taken in wire order, so
//! the receive buffer sees the stream's order. A leader reads only when the buffer is empty
//! and pushes what one read brought (`Inbox::push_now`), so the buffer holds at most its
//! capacity plus one read.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use event_listener::{Event, EventListener};
use futures_lite::future;

use super::link::Link;
use super::receive::{read_failed, LinkReader, Step, SERVER_CLOSED, WRITE_FAILED};
use super::Inner;
use crate::runtime;
use crate::sync::{AtomicBool, Mutex, MutexGuard};
use crate::wire::Fill;

/// How long the read side stays with the receiving threads after they last read.
pub(super) const LEASE: Duration = Duration::from_millis(50);
/// Longest single wait of a leader before it looks at the death switch again.
const SLICE: Duration = Duration::from_millis(10);

/// What the slot needs of the read side it passes around: [`LinkReader`] in the engine, a
/// token in the model checks (`client/models.rs`).
pub(super) trait Side {
    /// Throws the connection's death switch: the connection ended under a leader.
    fn kill(&self);
}

impl Side for LinkReader {
    fn kill(&self) {
        self.link.kill();
    }
}

/// The read side of the live connection while the supervisor is not reading it.
///
/// The whole hand-off lives here, free of I/O and of the clock (the time is an argument):
/// [`Inner::hand_over`], [`Inner::take_back`] and [`Inner::lead`] wrap these transitions
/// around the reading itself, and the model checks run them as they are.
#[derive(Debug)]
pub(super) struct ReadSlot<R = LinkReader> {
    st: Mutex<SlotState<R>>,
    /// Notified when the read side comes back to the slot for the supervisor (a leader went
    /// quiet, or the connection ended under it).
    back: Event,
    /// A blocking `receive` asks the supervisor for the read side.
    want: AtomicBool,
    wanted: Event,
}

impl<R> Default for ReadSlot<R> {
    fn default() -> Self {
        ReadSlot {
            st: Mutex::new(SlotState::default()),
            back: Event::new(),
            want: AtomicBool::new(false),
            wanted: Event::new(),
        }
    }
}

#[derive(Debug)]
struct SlotState<R> {
    /// The read side, while parked here (neither the supervisor nor a leader reads it).
    side: Option<R>,
    /// The receiving threads hold the read side (it is here or with a leader).
    callers: bool,
    /// The live connection's transport gives a blocking view of its stream.
    shared: bool,
    /// When a receiving thread last read.
    last: Option<Instant>,
    /// Why the connection ended under a leader, for the supervisor.
    ended: Option<String>,
}

impl<R> Default for SlotState<R> {
    fn default() -> Self {
        SlotState { side: None, callers: false, shared: false, last: None, ended: None }
    }
}

/// What [`Inner::lead`] did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Led {
    /// The calling thread read: entries are in the receive buffer.
    Delivered,
    /// The caller's deadline passed while it read.
    TimedOut,
    /// Another party reads: wait on the receive buffer.
    Follow,
}

/// How a leader's reading ended.
enum Here {
    Delivered,
    TimedOut,
    /// Nothing came for [`LEASE`]: the side goes back to the supervisor.
    Quiet,
    /// The death switch is thrown (closed, or a failed write): the supervisor takes over.
    Dead,
    /// The connection ended: why.
    Ended(String),
}

/// How a leader gives the read side back to the slot ([`ReadSlot::release`]).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Release {
    /// It stays with the receiving threads (the leader delivered, or its caller's deadline
    /// passed).
    Keep,
    /// Nothing came for [`LEASE`]: back to the supervisor.
    Quiet,
    /// The death switch is thrown: back to the supervisor.
    Dead,
    /// The connection ended under the leader (why): the side kills it and goes back.
    Ended(String),
}

/// What the supervisor found in the slot ([`ReadSlot::try_take_back`]).
#[derive(Debug)]
pub(super) enum Back<R> {
    /// The side is the supervisor's again.
    Side(R),
    /// The connection died: why, with the side.
    Dead(String, R),
    /// Not yet: look again by this instant, or when [`ReadSlot::back`] is notified or the
    /// connection dies.
    Wait(Instant),
}

impl<R> ReadSlot<R> {
    fn lock(&self) -> MutexGuard<'_, SlotState<R>> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new connection, read by the supervisor; `shared` when its transport gives a
    /// blocking view of the stream.
    pub(super) fn reset(&self, shared: bool) {
        let mut st = self.lock();
        *st = SlotState { shared, ..SlotState::default() };
        self.want.store(false, Ordering::Release);
    }

    /// True when a blocking `receive` asked for the read side.
    pub(super) fn wanted(&self) -> bool {
        self.want.load(Ordering::Acquire)
    }

    /// Waits until a blocking `receive` asks for the read side.
    pub(super) async fn wait_wanted(&self) {
        // Looked at under the slot's lock, where `claim` asks: a request is seen here or its
        // notification reaches the listener (the order of the lock, not only
        // `event_listener`'s fences, which the model checkers cannot see).
        runtime::wait_until(&self.wanted, || {
            let _st = self.lock();
            self.wanted()
        })
        .await;
    }

    /// The supervisor parks the read side here for the receiving threads, at `now`.
    pub(super) fn hand_over(&self, side: R, now: Instant) {
        let mut st = self.lock();
        st.side = Some(side);
        st.callers = true;
        st.last = Some(now);
        self.want.store(false, Ordering::Release);
    }

    /// A receiving thread claims the read side to lead: `Some` when it is free for the
    /// receiving threads; `None` when another party reads (follow), after asking the
    /// supervisor for it if the supervisor holds it.
    pub(super) fn claim(&self) -> Option<R> {
        let mut st = self.lock();
        if !st.shared {
            return None;
        }
        if !st.callers {
            // Ask the supervisor for the read side (once: it may be asked already).
            let first = !self.want.swap(true, Ordering::AcqRel);
            drop(st);
            if first {
                self.wanted.notify(usize::MAX);
            }
            return None;
        }
        st.side.take()
    }

    /// A leader parks the read side again after reading, at `now`; wakes the supervisor
    /// when the side goes back to it.
    pub(super) fn release(&self, side: R, now: Instant, how: Release)
    where
        R: Side,
    {
        let mut st = self.lock();
        st.last = Some(now);
        let back = match how {
            Release::Keep => false,
            Release::Quiet => {
                st.callers = false;
                true
            }
            Release::Dead => true,
            Release::Ended(reason) => {
                st.ended = Some(reason);
                side.kill();
                true
            }
        };
        st.side = Some(side);
        drop(st);
        if back {
            self.back.notify(usize::MAX);
        }
    }

    /// One look of the supervisor at the slot, at `now`: the side is its own again once it
    /// is parked here and a leader handed it back, it lay unused for [`LEASE`], or the
    /// connection is `dead`.
    pub(super) fn try_take_back(&self, now: Instant, dead: impl FnOnce() -> bool) -> Back<R> {
        let mut st = self.lock();
        let idle = st.last.is_none_or(|t| now.saturating_duration_since(t) >= LEASE);
        let dead = dead();
        if !st.callers || idle || dead {
            if let Some(side) = st.side.take() {
                st.callers = false;
                let ended = st.ended.take();
                drop(st);
                if dead {
                    return Back::Dead(ended.unwrap_or_else(|| WRITE_FAILED.to_owned()), side);
                }
                return Back::Side(side);
            }
        }
        // Look again when the lease runs out: a leader gives the side back without a word
        // after a delivery, and the side may then lie unused.
        let from = if st.side.is_some() { st.last } else { None };
        Back::Wait(from.unwrap_or(now) + LEASE)
    }

    /// The supervisor waits to read again ([`try_take_back`](Self::try_take_back) until it
    /// has the side; `Err`: the connection died, why, with the side). `now` is the clock,
    /// `dead` the death switch, and `wait(until, back)` waits until `until`, `back` fires or
    /// the connection dies.
    pub(super) async fn take_back<F: Future<Output = ()>>(
        &self,
        now: impl Fn() -> Instant,
        dead: impl Fn() -> bool,
        wait: impl Fn(Instant, EventListener) -> F,
    ) -> Result<R, (String, R)> {
        loop {
            let back = self.back.listen();
            match self.try_take_back(now(), &dead) {
                Back::Side(side) => return Ok(side),
                Back::Dead(reason, side) => return Err((reason, side)),
                Back::Wait(until) => wait(until, back).await,
            }
        }
    }
}

impl Inner {
    /// The supervisor hands the read side to the receiving threads; wakes those that wait.
    pub(super) fn hand_over(&self, lr: LinkReader) {
        self.reads.hand_over(lr, Instant::now());
        self.inbox.wake_sleepers();
    }

    /// The supervisor waits to read again: until a leader hands the side back, the side has
    /// lain unused for [`LEASE`], or the connection died (`Err`: why, with the side).
    pub(super) async fn take_back(&self, switch: &Link) -> Result<LinkReader, (String, LinkReader)> {
        let wait = |until, back| async move {
            let _ = runtime::until(Some(until), future::or(back, switch.dead())).await;
        };
        self.reads.take_back(Instant::now, || switch.is_dead(), wait).await
    }

    /// A blocking `receive` found the receive buffer empty: read on this thread if the read
    /// side is free for the receiving threads, ask the supervisor for it otherwise.
    pub(super) fn lead(&self, deadline: Option<Instant>) -> Led {
        let Some(mut lr) = self.reads.claim() else { return Led::Follow };
        let (led, how) = match self.read_here(&mut lr, deadline) {
            Here::Delivered => (Led::Delivered, Release::Keep),
            Here::TimedOut => (Led::TimedOut, Release::Keep),
            Here::Quiet => (Led::Follow, Release::Quiet),
            Here::Dead => (Led::Follow, Release::Dead),
            Here::Ended(reason) => (Led::Follow, Release::Ended(reason)),
        };
        self.reads.release(lr, Instant::now(), how);
        if led == Led::TimedOut {
            // Someone else may still wait with a later deadline: one of them reads next.
            self.inbox.wake_sleepers();
        }
        led
    }

    /// Reads on this thread until something is delivered, the deadline passes, nothing
    /// comes for [`LEASE`], or the connection ends.
    fn read_here(&self, lr: &mut LinkReader, deadline: Option<Instant>) -> Here {
        let Some(blocking) = lr.blocking.clone() else { return Here::Quiet };
        let mut quiet_at = Instant::now() + LEASE;
        let mut steps = Vec::new();
        loop {
            let taken = self.take_frames(lr, &mut steps);
            let delivered = self.act_here(&mut steps);
            if let Err(reason) = taken {
                return Here::Ended(reason);
            }
            match delivered {
                Err(()) => return Here::Dead,
                Ok(true) => return Here::Delivered,
                Ok(false) => {}
            }
            if lr.link.is_dead() {
                return Here::Dead;
            }
            let frame_at = lr.fr.frame_deadline(self.opts.frame_timeout);
            let now = Instant::now();
            // Quiet only between frames: a frame in progress waits for its own deadline.
            let quiet = (!lr.fr.in_frame()).then_some(quiet_at);
            let until = [deadline, frame_at, quiet, Some(now + SLICE)].into_iter().flatten().min();
            match lr.fr.fill_blocking(&*blocking, until) {
                Ok(Fill::Data) => quiet_at = Instant::now() + LEASE,
                Ok(Fill::Eof) => return Here::Ended(SERVER_CLOSED.to_owned()),
                Ok(Fill::Deadline) => {
                    let now = Instant::now();
                    if frame_at.is_some_and(|at| now >= at) {
                        return Here::Ended(self.frame_unfinished());
                    }
                    if deadline.is_some_and(|at| now >= at) {
                        return Here::TimedOut;
                    }
                    if now >= quiet_at && !lr.fr.in_frame() {
                        return Here::Quiet;
                    }
                }
                Err(e) => return Here::Ended(read_failed(&e)),
            }
        }
    }

    /// Runs `steps` on this thread: entries go to the receive buffer at once (it was empty),
    /// protocol steps are acted on as the supervisor would. `Ok(true)` when entries were
    /// delivered; `Err` once the receive buffer is closed.
    fn act_here(&self, steps: &mut Vec<Step>) -> Result<bool, ()> {
        let mut delivered = false;
        for step in steps.drain(..) {
            match step {
                Step::Deliver(mut batch) => {
                    delivered |= !batch.is_empty();
                    self.inbox.push_now(&mut batch).map_err(drop)?;
                }
                other => runtime::block_on(self.act(other)),
            }
        }
        Ok(delivered)
    }
}
