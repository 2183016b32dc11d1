//! Who reads the live connection: the supervisor task, or a blocking `receive` on the
//! application's own thread (leader/follower).
//!
//! When the transport gives a blocking view of the stream ([`BlockingRead`](crate::BlockingRead)), a blocking
//! `receive` that finds the receive buffer empty asks for the read side
//! ([`ReadSlot::claim`](crate::handoff::ReadSlot::claim)). The supervisor hands it over at a point where everything it read
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

use std::time::Instant;

use futures_lite::future;

use super::link::Link;
use super::receive::{read_failed, LinkReader, Step, SERVER_CLOSED, WRITE_FAILED};
use super::Inner;
use crate::handoff::{Release, Side, LEASE, SLICE};
use crate::runtime;
use crate::wire::Fill;

impl Side for LinkReader {
    fn kill(&self) {
        self.link.kill();
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
        let back = self.reads.take_back(Instant::now, || switch.is_dead(), wait).await;
        back.map_err(|(reason, side)| (reason.unwrap_or_else(|| WRITE_FAILED.to_owned()), side))
    }

    /// A blocking `receive` found the receive buffer empty: read on this thread if the read
    /// side is free for the receiving threads, ask the supervisor for it otherwise.
    pub(super) fn lead(&self, deadline: Option<Instant>) -> Led {
        let Some(mut lr) = self.reads.claim() else { return Led::Follow };
        let mut last = Instant::now();
        let (led, how) = match self.read_here(&mut lr, deadline, &mut last) {
            Here::Delivered => (Led::Delivered, Release::Keep),
            Here::TimedOut => (Led::TimedOut, Release::Keep),
            Here::Quiet => (Led::Follow, Release::Quiet),
            Here::Dead => (Led::Follow, Release::Dead),
            Here::Ended(reason) => (Led::Follow, Release::Ended(reason)),
        };
        self.reads.release(lr, last, how);
        if led == Led::TimedOut {
            // Someone else may still wait with a later deadline: one of them reads next.
            self.inbox.wake_sleepers();
        }
        led
    }

    /// Reads on this thread until something is delivered, the deadline passes, nothing
    /// comes for [`LEASE`], or the connection ends.
    ///
    /// `last` is when it began, and is set to when it last read (the lease counts from then):
    /// one look at the clock per read and per wait.
    fn read_here(&self, lr: &mut LinkReader, deadline: Option<Instant>, last: &mut Instant) -> Here {
        let Some(blocking) = lr.blocking.clone() else { return Here::Quiet };
        // When the current wait began (a wait lasts at most a slice).
        let mut from = *last;
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
            let quiet_at = *last + LEASE;
            // Quiet only between frames: a frame in progress waits for its own deadline.
            let quiet = (!lr.fr.in_frame()).then_some(quiet_at);
            let until = [deadline, frame_at, quiet, Some(from + SLICE)].into_iter().flatten().min();
            match lr.fr.fill_blocking(&*blocking, until) {
                Ok(Fill::Data) => {
                    *last = Instant::now();
                    from = *last;
                }
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
                    from = now;
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
