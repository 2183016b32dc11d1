//! The client's receive buffer: frames handed from the reader task to the
//! application a whole read at a time.
//!
//! One lock and at most one wake-up per read of the socket, not per frame
//! (a burst of small messages arrives in one read). A blocking consumer
//! parks its own thread (`std::thread::park_timeout`: one futex wait, woken
//! by one futex wake), so a blocking `receive` with a timeout arms no
//! reactor timer; async consumers wait on an [`Event`].

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread::{self, Thread};
use std::time::Instant;

use event_listener::{Event, EventListener};

use super::receive::Incoming;
use crate::runtime;

/// A bounded FIFO between the reader (one producer) and any number of consumers.
#[derive(Debug)]
pub(super) struct Inbox {
    state: Mutex<State>,
    cap: usize,
    /// Notified when items arrive or the inbox closes.
    readable: Event,
    /// Notified when room is made or the inbox closes.
    writable: Event,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Incoming>,
    closed: bool,
    /// Blocking consumers parked until items arrive or the inbox closes.
    sleepers: Vec<Thread>,
}

/// What [`Inbox::try_pop`] found.
#[derive(Debug)]
pub(super) enum Pop {
    Item(Incoming),
    Empty,
    /// Closed and drained.
    Closed,
}

/// The inbox is closed: nothing more can be pushed.
#[derive(Debug)]
pub(super) struct Closed;

impl Inbox {
    pub(super) fn new(cap: usize) -> Self {
        Inbox { state: Mutex::default(), cap: cap.max(1), readable: Event::new(), writable: Event::new() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The oldest item, without waiting. Items pushed before `close` are still returned.
    pub(super) fn try_pop(&self) -> Pop {
        self.pop_with(|_| ())
    }

    /// [`try_pop`](Self::try_pop), running `if_empty` under the same lock
    /// when there is nothing to take (and the inbox is open).
    fn pop_with(&self, if_empty: impl FnOnce(&mut State)) -> Pop {
        let mut st = self.lock();
        let was_full = st.items.len() >= self.cap;
        match st.items.pop_front() {
            Some(item) => {
                drop(st);
                if was_full {
                    self.writable.notify(usize::MAX);
                }
                Pop::Item(item)
            }
            None if st.closed => Pop::Closed,
            None => {
                if_empty(&mut st);
                Pop::Empty
            }
        }
    }

    /// Waits for an item until `deadline` (none: no limit), parking the thread.
    /// `Ok(None)`: the deadline passed.
    #[cfg(test)]
    pub(super) fn pop_blocking(&self, deadline: Option<Instant>) -> Result<Option<Incoming>, Closed> {
        loop {
            match self.pop_or_register() {
                Pop::Item(item) => {
                    self.unregister();
                    return Ok(Some(item));
                }
                Pop::Closed => return Err(Closed),
                Pop::Empty => {}
            }
            if !self.park_until(deadline) {
                return Ok(None);
            }
        }
    }

    /// Waits for an item until `deadline` (none: no limit). `Ok(None)`: the deadline passed.
    pub(super) async fn pop(&self, deadline: Option<Instant>) -> Result<Option<Incoming>, Closed> {
        loop {
            let listener = match self.try_pop() {
                Pop::Item(item) => return Ok(Some(item)),
                Pop::Closed => return Err(Closed),
                Pop::Empty => self.readable.listen(),
            };
            match self.try_pop() {
                Pop::Item(item) => return Ok(Some(item)),
                Pop::Closed => return Err(Closed),
                Pop::Empty => {}
            }
            if runtime::until(deadline, listener).await.is_none() {
                return Ok(None);
            }
        }
    }

    /// The stream form of [`pop`](Self::pop): `listener` is the caller's parked wait.
    pub(super) fn poll_pop(
        &self,
        listener: &mut Option<EventListener>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Incoming>> {
        loop {
            match self.try_pop() {
                Pop::Item(item) => {
                    *listener = None;
                    return Poll::Ready(Some(item));
                }
                Pop::Closed => {
                    *listener = None;
                    return Poll::Ready(None);
                }
                Pop::Empty => {}
            }
            match listener {
                None => *listener = Some(self.readable.listen()),
                Some(l) => match Pin::new(l).poll(cx) {
                    Poll::Ready(()) => *listener = None,
                    Poll::Pending => return Poll::Pending,
                },
            }
        }
    }

    /// Appends every item of `batch` in order (leaving it empty), waiting for
    /// room while the inbox is full: the reader stops reading, so back-pressure
    /// reaches the server and nothing is dropped.
    pub(super) async fn push_all(&self, batch: &mut VecDeque<Incoming>) -> Result<(), Closed> {
        while !batch.is_empty() {
            if let Some(listener) = self.put(batch, true)? {
                // Room made between our check and `listen` was notified to
                // this listener only if it existed: look once more first.
                if self.lock().items.len() >= self.cap {
                    listener.await;
                }
            }
        }
        Ok(())
    }

    /// Moves what fits of `batch` (all of it unless `bounded`) into the inbox, in order, and
    /// wakes the consumers; returns a listener for room when some of `batch` is left.
    fn put(&self, batch: &mut VecDeque<Incoming>, bounded: bool) -> Result<Option<EventListener>, Closed> {
        let mut st = self.lock();
        if st.closed {
            batch.clear();
            return Err(Closed);
        }
        let room = if bounded { self.cap.saturating_sub(st.items.len()).min(batch.len()) } else { batch.len() };
        st.items.extend(batch.drain(..room));
        let listener = (!batch.is_empty()).then(|| self.writable.listen());
        let sleepers = if room > 0 { std::mem::take(&mut st.sleepers) } else { Vec::new() };
        drop(st);
        if room > 0 {
            wake(sleepers);
            self.readable.notify(usize::MAX);
        }
        Ok(listener)
    }

    /// [`try_pop`](Self::try_pop) for a blocking consumer about to wait: when there is
    /// nothing to take, the calling thread is registered as a sleeper under the same lock, so
    /// a push or a [`wake_sleepers`](Self::wake_sleepers) after this call unparks it.
    pub(super) fn pop_or_register(&self) -> Pop {
        let me = thread::current();
        self.pop_with(|st| {
            if !st.sleepers.iter().any(|t| t.id() == me.id()) {
                st.sleepers.push(me);
            }
        })
    }

    /// Parks the calling thread (registered by [`pop_or_register`](Self::pop_or_register))
    /// until it is unparked or `deadline` passes; false once the deadline has passed, and
    /// the thread is then no longer registered.
    pub(super) fn park_until(&self, deadline: Option<Instant>) -> bool {
        match deadline {
            None => thread::park(),
            Some(at) => {
                let now = Instant::now();
                if now >= at {
                    self.unregister();
                    return false;
                }
                thread::park_timeout(at - now);
            }
        }
        true
    }

    /// Takes the calling thread off the sleepers.
    pub(super) fn unregister(&self) {
        let me = thread::current().id();
        self.lock().sleepers.retain(|t| t.id() != me);
    }

    /// Unparks every blocking consumer that waits (they look again: the read side changed
    /// hands, see `client/lead.rs`).
    pub(super) fn wake_sleepers(&self) {
        let sleepers = std::mem::take(&mut self.lock().sleepers);
        wake(sleepers);
    }

    /// Appends every item of `batch` in order without waiting for room: the one read a
    /// receiving thread made on its own because the buffer was empty (so the buffer holds at
    /// most its capacity plus one read). `Err` once closed.
    pub(super) fn push_now(&self, batch: &mut VecDeque<Incoming>) -> Result<(), Closed> {
        self.put(batch, false).map(drop)
    }

    /// Items waiting.
    pub(super) fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Drops every waiting item; returns how many there were.
    pub(super) fn clear(&self) -> usize {
        let n = std::mem::take(&mut self.lock().items).len();
        self.writable.notify(usize::MAX);
        n
    }

    /// No more pushes; consumers drain what is left, then see the end.
    pub(super) fn close(&self) {
        let sleepers = {
            let mut st = self.lock();
            st.closed = true;
            std::mem::take(&mut st.sleepers)
        };
        wake(sleepers);
        self.readable.notify(usize::MAX);
        self.writable.notify(usize::MAX);
    }
}

fn wake(sleepers: Vec<Thread>) {
    for t in sleepers {
        t.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::receive::Body;
    use std::sync::Arc;
    use std::time::Duration;

    fn item(n: u8) -> Incoming {
        Incoming::Raw(Body { chunk: Arc::new(vec![n]), start: 0, end: 1 })
    }

    fn byte(i: Incoming) -> u8 {
        match i {
            Incoming::Raw(b) => b.bytes()[0],
            Incoming::Decoded(_) => u8::MAX,
        }
    }

    #[test]
    fn full_inbox_holds_the_producer_until_room_is_made_and_keeps_order() {
        let inbox = Arc::new(Inbox::new(3));
        let producer = {
            let inbox = inbox.clone();
            std::thread::spawn(move || {
                let mut batch: VecDeque<Incoming> = (0..10).map(item).collect();
                futures_lite::future::block_on(inbox.push_all(&mut batch)).is_ok()
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while got.len() < 10 {
            match inbox.pop_blocking(Some(deadline)) {
                Ok(Some(i)) => got.push(byte(i)),
                other => panic!("inbox ended early: {other:?} after {got:?}"),
            }
            assert!(inbox.len() <= 3, "the bound was exceeded");
        }
        assert_eq!(got, (0..10).collect::<Vec<u8>>());
        assert!(producer.join().is_ok_and(|ok| ok));
    }

    #[test]
    fn close_wakes_a_waiting_consumer_after_the_rest_is_drained() {
        let inbox = Arc::new(Inbox::new(4));
        futures_lite::future::block_on(inbox.push_all(&mut VecDeque::from([item(7)]))).ok();
        let closer = {
            let inbox = inbox.clone();
            std::thread::spawn(move || inbox.close())
        };
        assert_eq!(inbox.pop_blocking(None).ok().flatten().map(byte), Some(7));
        // Blocks until `close` runs, then reports the end.
        assert!(matches!(inbox.pop_blocking(None), Err(Closed)));
        assert!(closer.join().is_ok());
        assert!(futures_lite::future::block_on(inbox.push_all(&mut VecDeque::from([item(1)]))).is_err());
    }

    #[test]
    fn async_waiters_wake_on_a_push_and_see_the_end_after_close() {
        let inbox = Arc::new(Inbox::new(4));
        let pusher = {
            let inbox = inbox.clone();
            std::thread::spawn(move || {
                let pushed = futures_lite::future::block_on(inbox.push_all(&mut VecDeque::from([item(1), item(2)])));
                inbox.close();
                pushed.is_ok()
            })
        };
        let at = Some(Instant::now() + Duration::from_secs(10));
        let first = futures_lite::future::block_on(inbox.pop(at)).ok().flatten().map(byte);
        // The stream form: a parked listener, woken by the push or the close.
        let mut listener = None;
        let mut rest = Vec::new();
        futures_lite::future::block_on(futures_lite::future::poll_fn(|cx| loop {
            match inbox.poll_pop(&mut listener, cx) {
                Poll::Ready(Some(i)) => rest.push(byte(i)),
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }));
        assert!(pusher.join().is_ok_and(|ok| ok));
        assert_eq!(first, Some(1));
        assert_eq!(rest, vec![2]);
        assert!(listener.is_none());
        assert!(matches!(futures_lite::future::block_on(inbox.pop(None)), Err(Closed)));
        assert!(matches!(inbox.try_pop(), Pop::Closed));
    }

    #[test]
    fn an_empty_inbox_times_out_at_the_deadline() {
        let inbox = Inbox::new(1);
        let at = Instant::now() + Duration::from_millis(20);
        assert!(matches!(inbox.pop_blocking(Some(at)), Ok(None)));
        assert!(Instant::now() >= at);
        assert!(matches!(futures_lite::future::block_on(inbox.pop(Some(at))), Ok(None)));
        assert_eq!(inbox.clear(), 0);
    }
}
