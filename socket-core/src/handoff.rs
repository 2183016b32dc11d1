//! The read side of one connection, passed between the engine's background task and the
//! application's blocking calls (leader/follower): [`ReadSlot`].
//!
//! Both engines read a connection on the background executor until a blocking call of the
//! application finds nothing to take and asks for the read side ([`ReadSlot::claim`]). The
//! task hands it over at a point where everything it read is delivered (its pending read is
//! cancel-safe); from then on the calling threads read, one at a time (the leader), and the
//! task takes the side back when they go quiet ([`LEASE`]) or the connection ends. The
//! client's blocking `receive` (`client/lead.rs`) and the server's blocking event receiver
//! (`server/lead.rs`) wrap these transitions around their own reading.
//!
//! The hand-off itself is free of I/O and of the clock (the time is an argument), on
//! [`crate::sync`]'s mutex and flag, so the model checks (`client/models.rs`,
//! `server/models.rs`) run it as it is.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use event_listener::{Event, EventListener};

use crate::runtime;
use crate::sync::{AtomicBool, Mutex, MutexGuard};

/// How long the read side stays with the calling threads after they last read.
pub(crate) const LEASE: Duration = Duration::from_millis(50);
/// Longest single wait of a leader before it looks at its connection's state again.
pub(crate) const SLICE: Duration = Duration::from_millis(10);

/// What the slot needs of the read side it passes around: the engine's reader of a
/// connection, or a token in the model checks.
pub(crate) trait Side {
    /// Throws the connection's death switch: the connection ended under a leader.
    fn kill(&self);
}

impl<T: Side + ?Sized> Side for Box<T> {
    fn kill(&self) {
        (**self).kill();
    }
}

/// The read side of one connection while its task is not reading it.
///
/// The whole hand-off lives here, free of I/O and of the clock (the time is an argument):
/// the engines wrap these transitions around the reading itself, and the model checks run
/// them as they are.
#[derive(Debug)]
pub(crate) struct ReadSlot<R> {
    st: Mutex<SlotState<R>>,
    /// Notified when the read side comes back to the slot for the task (a leader went
    /// quiet, or the connection ended under it).
    back: Event,
    /// A blocking call asks the task for the read side.
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
    /// The read side, while parked here (neither the task nor a leader reads it).
    side: Option<R>,
    /// The calling threads hold the read side (it is here or with a leader).
    callers: bool,
    /// The live connection's transport gives a blocking view of its stream.
    shared: bool,
    /// When a calling thread last read.
    last: Option<Instant>,
    /// Why the connection ended under a leader, for the task.
    ended: Option<String>,
}

impl<R> Default for SlotState<R> {
    fn default() -> Self {
        SlotState { side: None, callers: false, shared: false, last: None, ended: None }
    }
}

/// How a leader gives the read side back to the slot ([`ReadSlot::release`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Release {
    /// It stays with the calling threads (the leader delivered, or its caller's deadline
    /// passed).
    Keep,
    /// Nothing came for [`LEASE`]: back to the task.
    Quiet,
    /// The death switch is thrown: back to the task.
    Dead,
    /// The connection ended under the leader (why): the side kills it and goes back.
    Ended(String),
}

/// What the task found in the slot ([`ReadSlot::try_take_back`]).
#[derive(Debug)]
pub(crate) enum Back<R> {
    /// The side is the task's again.
    Side(R),
    /// The connection died: why, if a leader saw it end, with the side.
    Dead(Option<String>, R),
    /// Not yet: look again by this instant, or when [`ReadSlot::back`] is notified or the
    /// connection dies.
    Wait(Instant),
}

impl<R> ReadSlot<R> {
    fn lock(&self) -> MutexGuard<'_, SlotState<R>> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new connection, read by the task; `shared` when its transport gives a
    /// blocking view of the stream.
    pub(crate) fn reset(&self, shared: bool) {
        let mut st = self.lock();
        *st = SlotState { shared, ..SlotState::default() };
        self.want.store(false, Ordering::Release);
    }

    /// The connection's task ends: nobody leads from now on. Gives back the side if it is
    /// parked here (a leader that holds it drops it when it releases it).
    pub(crate) fn retire(&self) -> Option<R> {
        let mut st = self.lock();
        st.shared = false;
        st.callers = false;
        st.side.take()
    }

    /// True when a blocking call asked for the read side.
    pub(crate) fn wanted(&self) -> bool {
        self.want.load(Ordering::Acquire)
    }

    /// Waits until a blocking call asks for the read side.
    pub(crate) async fn wait_wanted(&self) {
        // Looked at under the slot's lock, where `claim` asks: a request is seen here or its
        // notification reaches the listener (the order of the lock, not only
        // `event_listener`'s fences, which the model checkers cannot see).
        runtime::wait_until(&self.wanted, || {
            let _st = self.lock();
            self.wanted()
        })
        .await;
    }

    /// The task parks the read side here for the calling threads, at `now`.
    pub(crate) fn hand_over(&self, side: R, now: Instant) {
        let mut st = self.lock();
        st.side = Some(side);
        st.callers = true;
        st.last = Some(now);
        self.want.store(false, Ordering::Release);
    }

    /// True while the side lies here for the calling threads (a follower that looks after
    /// it began to listen for [`hand_over`](Self::hand_over)'s wake-up misses neither).
    pub(crate) fn parked_for_callers(&self) -> bool {
        let st = self.lock();
        st.callers && st.side.is_some()
    }

    /// A calling thread claims the read side to lead: `Some` when it is free for the
    /// calling threads; `None` when another party reads (follow), after asking the
    /// task for it if the task holds it.
    pub(crate) fn claim(&self) -> Option<R> {
        let mut st = self.lock();
        if !st.shared {
            return None;
        }
        if !st.callers {
            // Ask the task for the read side (once: it may be asked already).
            let first = !self.want.swap(true, Ordering::AcqRel);
            drop(st);
            if first {
                self.wanted.notify(usize::MAX);
            }
            return None;
        }
        st.side.take()
    }

    /// A leader parks the read side again after reading, at `now`; wakes the task
    /// when the side goes back to it.
    pub(crate) fn release(&self, side: R, now: Instant, how: Release)
    where
        R: Side,
    {
        let mut st = self.lock();
        if !st.shared {
            // The connection's task has ended (`retire`): nobody takes the side back.
            drop(st);
            drop(side);
            return;
        }
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

    /// One look of the task at the slot, at `now`: the side is its own again once it
    /// is parked here and a leader handed it back, it lay unused for [`LEASE`], or the
    /// connection is `dead`.
    pub(crate) fn try_take_back(&self, now: Instant, dead: impl FnOnce() -> bool) -> Back<R> {
        let mut st = self.lock();
        let idle = st.last.is_none_or(|t| now.saturating_duration_since(t) >= LEASE);
        let dead = dead();
        if !st.callers || idle || dead {
            if let Some(side) = st.side.take() {
                st.callers = false;
                let ended = st.ended.take();
                drop(st);
                if dead {
                    return Back::Dead(ended, side);
                }
                return Back::Side(side);
            }
        }
        // Look again when the lease runs out: a leader gives the side back without a word
        // after a delivery, and the side may then lie unused.
        let from = if st.side.is_some() { st.last } else { None };
        Back::Wait(from.unwrap_or(now) + LEASE)
    }

    /// The task waits to read again ([`try_take_back`](Self::try_take_back) until it
    /// has the side; `Err`: the connection died, why if a leader saw it end, with the side). `now` is the clock,
    /// `dead` the death switch, and `wait(until, back)` waits until `until`, `back` fires or
    /// the connection dies.
    pub(crate) async fn take_back<F: Future<Output = ()>>(
        &self,
        now: impl Fn() -> Instant,
        dead: impl Fn() -> bool,
        wait: impl Fn(Instant, EventListener) -> F,
    ) -> Result<R, (Option<String>, R)> {
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
