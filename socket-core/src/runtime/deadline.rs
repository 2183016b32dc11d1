//! Deadlines that cost no wake-up to set.
//!
//! Registering an `async_io::Timer` notifies the reactor (a write to its
//! eventfd that wakes whichever thread waits for I/O), and the engines set a
//! deadline for almost every wait: a receive with a timeout, a frame that
//! ends mid-read, a write that would block. Most of them never expire (the
//! message arrives first). Here every deadline is an entry in one ordered
//! map, and one service task sleeps on a single timer until the earliest
//! entry. Adding an entry wakes that task only when it is earlier than the
//! one the timer is set for; removing one wakes nobody (the timer may then
//! fire once for nothing, and is set again).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use async_io::Timer;
use futures_lite::future;

/// The shared table of pending deadlines.
#[derive(Debug, Default)]
struct Table {
    /// Pending deadlines, keyed by instant and a unique id.
    waiters: BTreeMap<(Instant, u64), Waker>,
    next_id: u64,
    /// What the service's timer is set to (`None`: no timer).
    armed: Option<Instant>,
    /// Wakes the service to set an earlier timer.
    service: Option<Waker>,
    /// The service task runs.
    started: bool,
}

fn table() -> &'static Mutex<Table> {
    static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
    TABLE.get_or_init(Mutex::default)
}

fn lock() -> MutexGuard<'static, Table> {
    table().lock().unwrap_or_else(|e| e.into_inner())
}

/// Completes at `at`. Cheap to create and to drop before it fires.
#[derive(Debug)]
pub(crate) struct Deadline {
    at: Instant,
    /// The entry in the table while registered.
    key: Option<(Instant, u64)>,
}

impl Deadline {
    pub(crate) fn at(at: Instant) -> Self {
        Deadline { at, key: None }
    }

    /// Moves the deadline (a registered entry is replaced on the next poll).
    pub(crate) fn set_at(&mut self, at: Instant) {
        if at != self.at {
            self.unregister();
            self.at = at;
        }
    }

    fn unregister(&mut self) {
        if let Some(key) = self.key.take() {
            lock().waiters.remove(&key);
        }
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            self.unregister();
            return Poll::Ready(());
        }
        let mut t = lock();
        let key = match self.key {
            Some(key) => key,
            None => {
                t.next_id += 1;
                let key = (self.at, t.next_id);
                self.key = Some(key);
                key
            }
        };
        match t.waiters.get_mut(&key) {
            Some(w) if w.will_wake(cx.waker()) => {}
            Some(w) => w.clone_from(cx.waker()),
            None => {
                t.waiters.insert(key, cx.waker().clone());
            }
        }
        if !t.started {
            t.started = true;
            drop(t);
            super::spawn(service()).detach();
        } else if t.armed.is_none_or(|armed| self.at < armed) {
            if let Some(service) = t.service.take() {
                drop(t);
                service.wake();
            }
        }
        Poll::Pending
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// The service: wakes every expired waiter, then sleeps until the earliest
/// remaining deadline or until an earlier one is registered.
async fn service() {
    let mut timer = Timer::never();
    let mut expired: Vec<Waker> = Vec::new();
    loop {
        let earliest = {
            let mut t = lock();
            let now = Instant::now();
            while let Some(entry) = t.waiters.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                expired.push(entry.remove());
            }
            let earliest = t.waiters.first_key_value().map(|(k, _)| k.0);
            t.armed = earliest;
            earliest
        };
        // Woken outside the lock: a waker may run foreign code.
        for w in expired.drain(..) {
            w.wake();
        }
        match earliest {
            Some(at) => timer.set_at(at),
            None => timer = Timer::never(),
        }
        // Until the timer fires or a registration wants an earlier one. A
        // registration wakes the stored waker; one that came before the waker
        // was stored is seen here, under the same lock.
        future::poll_fn(|cx| {
            if Pin::new(&mut timer).poll(cx).is_ready() {
                return Poll::Ready(());
            }
            let mut t = lock();
            if t.waiters.first_key_value().is_some_and(|(k, _)| earliest.is_none_or(|e| k.0 < e)) {
                return Poll::Ready(());
            }
            t.service = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn deadlines_fire_in_order_and_not_early() {
        let t0 = Instant::now();
        let far = Deadline::at(t0 + Duration::from_secs(3600));
        let results: Vec<Instant> = future::block_on(async {
            // A late deadline registered first must not delay an earlier one.
            let mut far = far;
            assert!(future::poll_once(&mut far).await.is_none());
            let mut fired = Vec::new();
            for ms in [30u64, 10, 20] {
                Deadline::at(t0 + Duration::from_millis(ms)).await;
                fired.push(Instant::now());
            }
            fired
        });
        for (got, ms) in results.iter().zip([30u64, 10, 20]) {
            assert!(*got >= t0 + Duration::from_millis(ms), "fired early");
        }
        assert!(results[2] - t0 < Duration::from_secs(10), "fired far too late");
    }

    #[test]
    fn a_dropped_deadline_leaves_no_entry() {
        let mut d = Deadline::at(Instant::now() + Duration::from_secs(3600));
        future::block_on(async { assert!(future::poll_once(&mut d).await.is_none()) });
        let key = d.key;
        assert!(key.is_some_and(|k| lock().waiters.contains_key(&k)));
        drop(d);
        assert!(key.is_some_and(|k| !lock().waiters.contains_key(&k)));
    }
}
