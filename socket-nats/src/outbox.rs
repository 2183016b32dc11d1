//! The bounded outbound buffer between the local readers and the NATS publisher, with its
//! counted drops (SPEC section 8), and the size of a message on the NATS wire.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_nats::HeaderName;
use bytes::Bytes;
use tokio::sync::{watch, Notify};

use crate::{Shared, ORIGIN_HEADER};

/// One outbound message.
pub(crate) struct Outgoing {
    pub(crate) subject: async_nats::Subject,
    pub(crate) payload: Bytes,
}

/// The bounded outbound buffer: the oldest message is dropped when it is full.
///
/// While NATS is connected, a full buffer is a burst that the publisher has not caught up
/// with yet: the local reader waits for room ([`Outbox::push_all_waiting`], at most
/// [`OUTBOX_FULL_WAIT`]), so a healthy but busy link loses nothing. While NATS is down (or
/// the publisher makes no progress for that long), the oldest message is dropped at once
/// and counted, so local delivery is never held up for long by NATS.
pub(crate) struct Outbox {
    pub(crate) queue: Mutex<VecDeque<Outgoing>>,
    pub(crate) capacity: usize,
    /// A message was pushed (wakes the publisher).
    pub(crate) notify: Notify,
    /// A message was taken (wakes readers waiting for room).
    pub(crate) room: Notify,
    /// A wait for room timed out and the buffer has not drained to half since.
    pub(crate) stalled: AtomicBool,
    /// Messages the publisher has taken and not yet handed to the NATS client (changed under
    /// the queue's lock when taken or put back, so that "empty and none in flight" is exact).
    pub(crate) in_flight: AtomicUsize,
}

/// Longest time a local reader waits for room in a full outbound buffer while NATS is
/// connected, before the oldest message is dropped. After such a timeout the buffer is
/// stalled: pushes drop at once until the publisher has emptied half of it.
pub(crate) const OUTBOX_FULL_WAIT: Duration = Duration::from_secs(1);

/// Most messages the publisher takes from the outbound buffer at once, and most events a
/// local reader moves into it at once.
pub(crate) const PUBLISH_BATCH: usize = 128;

/// [`ORIGIN_HEADER`] as a header name, without an allocation.
pub(crate) fn origin_name() -> HeaderName {
    HeaderName::from_static(ORIGIN_HEADER)
}

/// Counts `n` outbound messages dropped from a full buffer (logged at 1, 2, 4, 8 … drops).
pub(crate) fn count_dropped(shared: &Shared, capacity: usize, n: u64) {
    let before = shared.counters.dropped.fetch_add(n, Ordering::Relaxed);
    if (before + 1..=before + n).any(u64::is_power_of_two) {
        tracing::warn!(dropped = before + n, capacity, "outbound buffer full: oldest message dropped");
    }
}

/// The size NATS counts for a message with our header: the header block plus the payload.
pub(crate) fn wire_size(id: &str, payload: usize) -> usize {
    // "NATS/1.0\r\n" + "Socket-Origin: <id>\r\n" + "\r\n"
    10 + ORIGIN_HEADER.len() + 2 + id.len() + 2 + 2 + payload
}

impl Outbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Outbox {
            queue: Mutex::new(VecDeque::new()),
            capacity,
            notify: Notify::new(),
            room: Notify::new(),
            stalled: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Pushes `item` alone (see [`push_all_waiting`](Self::push_all_waiting)).
    #[cfg(test)]
    pub(crate) async fn push_waiting(&self, shared: &Shared, item: Outgoing, connected: &watch::Receiver<bool>) {
        let mut one = VecDeque::from([item]);
        self.push_all_waiting(shared, &mut one, connected).await;
    }

    /// Pushes every item of `items` in order (it is left empty), each as if pushed alone:
    /// while NATS is connected and the buffer is full, it waits for room, at most
    /// [`OUTBOX_FULL_WAIT`] without progress, then drops the oldest. Takes the lock and wakes
    /// the publisher once per run of items that fit, not once per item.
    pub(crate) async fn push_all_waiting(
        &self,
        shared: &Shared,
        items: &mut VecDeque<Outgoing>,
        connected: &watch::Receiver<bool>,
    ) {
        let mut deadline = tokio::time::Instant::now() + OUTBOX_FULL_WAIT;
        while !items.is_empty() {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let moved = {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                if !*connected.borrow() || self.stalled.load(Ordering::Acquire) {
                    let n = items.len();
                    for item in items.drain(..) {
                        self.push_locked(&mut q, shared, item);
                    }
                    n
                } else {
                    let n = self.capacity.saturating_sub(q.len()).min(items.len());
                    q.extend(items.drain(..n));
                    n
                }
            };
            if moved > 0 {
                self.notify.notify_one();
                deadline = tokio::time::Instant::now() + OUTBOX_FULL_WAIT;
            }
            if items.is_empty() {
                break;
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                self.stalled.store(true, Ordering::Release);
                tracing::warn!(
                    capacity = self.capacity,
                    "NATS publishing makes no progress: outbound messages are dropped until it catches up"
                );
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn push(&self, shared: &Shared, item: Outgoing) {
        {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            self.push_locked(&mut q, shared, item);
        }
        self.notify.notify_one();
    }

    /// Appends `item`, dropping (and counting) the oldest message if the buffer is full.
    pub(crate) fn push_locked(&self, q: &mut VecDeque<Outgoing>, shared: &Shared, item: Outgoing) {
        if q.len() >= self.capacity {
            q.pop_front();
            count_dropped(shared, self.capacity, 1);
        }
        q.push_back(item);
    }

    #[cfg(test)]
    pub(crate) fn pop(&self) -> Option<Outgoing> {
        let mut one = Vec::with_capacity(1);
        self.pop_into(&mut one, 1);
        one.pop()
    }

    /// Moves up to `max` of the oldest messages into `out`, in order, under one lock, and
    /// wakes the readers waiting for room once. Returns how many.
    pub(crate) fn pop_into(&self, out: &mut Vec<Outgoing>, max: usize) -> usize {
        let (n, left) = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            let n = q.len().min(max);
            out.extend(q.drain(..n));
            self.in_flight.fetch_add(n, Ordering::AcqRel);
            (n, q.len())
        };
        if n > 0 {
            if left <= self.capacity / 2 {
                self.stalled.store(false, Ordering::Release);
            }
            self.room.notify_waiters();
        }
        n
    }

    /// Puts back `rest` (taken by [`pop_into`](Self::pop_into) but not published), in order,
    /// before what the buffer holds; if that overfills it, the oldest are dropped and counted.
    pub(crate) fn unpop(&self, shared: &Shared, rest: Vec<Outgoing>) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        self.in_flight.fetch_sub(rest.len(), Ordering::AcqRel);
        for item in rest.into_iter().rev() {
            q.push_front(item);
        }
        let over = q.len().saturating_sub(self.capacity);
        if over > 0 {
            q.drain(..over);
            count_dropped(shared, self.capacity, over as u64);
        }
    }

    /// The publisher handed one message it had taken to the NATS client (or gave up on it).
    pub(crate) fn handed(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Nothing buffered and nothing taken by the publisher but not yet handed on.
    pub(crate) fn is_drained(&self) -> bool {
        let q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.is_empty() && self.in_flight.load(Ordering::Acquire) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::new_shared;
    use std::sync::Arc;

    #[test]
    fn header_size_is_counted_against_max_payload() {
        let id = "0123456789abcdef";
        assert_eq!(wire_size(id, 0), "NATS/1.0\r\nSocket-Origin: 0123456789abcdef\r\n\r\n".len());
    }

    #[test]
    fn a_full_outbound_buffer_drops_the_oldest_and_counts_each() {
        let shared = new_shared("x".to_owned());
        let outbox = Outbox::new(2);
        for n in 0u8..5 {
            outbox.push(&shared, Outgoing { subject: "s".into(), payload: Bytes::from(vec![n]) });
        }
        assert_eq!(shared.counters.snapshot().dropped, 3);
        let left: Vec<u8> = std::iter::from_fn(|| outbox.pop()).map(|o| o.payload[0]).collect();
        assert_eq!(left, [3, 4], "the newest are kept, in order");
    }

    fn item(n: u8) -> Outgoing {
        Outgoing { subject: "s".into(), payload: Bytes::from(vec![n]) }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_buffer_waits_for_the_publisher_while_nats_is_connected() {
        let shared = new_shared("x".to_owned());
        let outbox = Arc::new(Outbox::new(2));
        let (_tx, connected) = watch::channel(true);
        outbox.push_waiting(&shared, item(0), &connected).await;
        outbox.push_waiting(&shared, item(1), &connected).await;
        // The third waits until the publisher takes one: nothing is dropped.
        let taker = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                outbox.pop().map(|o| o.payload[0])
            })
        };
        outbox.push_waiting(&shared, item(2), &connected).await;
        assert_eq!(taker.await.ok().flatten(), Some(0));
        assert_eq!(shared.counters.snapshot().dropped, 0);
        let left: Vec<u8> = std::iter::from_fn(|| outbox.pop()).map(|o| o.payload[0]).collect();
        assert_eq!(left, [1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_buffer_that_stays_full_drops_after_the_wait_and_then_at_once() {
        let shared = new_shared("x".to_owned());
        let outbox = Outbox::new(2);
        let (_tx, connected) = watch::channel(true);
        for n in 0..2 {
            outbox.push_waiting(&shared, item(n), &connected).await;
        }
        let started = tokio::time::Instant::now();
        outbox.push_waiting(&shared, item(2), &connected).await;
        assert_eq!(started.elapsed(), OUTBOX_FULL_WAIT, "one wait, bounded");
        // Stalled: the next pushes drop at once.
        let started = tokio::time::Instant::now();
        outbox.push_waiting(&shared, item(3), &connected).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(shared.counters.snapshot().dropped, 2);
        // Drained to half: waiting again.
        assert!(outbox.pop().is_some());
        assert!(!outbox.stalled.load(Ordering::Acquire));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_buffer_drops_at_once_while_nats_is_down() {
        let shared = new_shared("x".to_owned());
        let outbox = Outbox::new(1);
        let (_tx, connected) = watch::channel(false);
        let started = tokio::time::Instant::now();
        for n in 0..3 {
            outbox.push_waiting(&shared, item(n), &connected).await;
        }
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(shared.counters.snapshot().dropped, 2);
    }

    fn payloads(items: impl IntoIterator<Item = Outgoing>) -> Vec<u8> {
        items.into_iter().map(|o| o.payload[0]).collect()
    }

    #[test]
    fn a_batch_is_taken_in_order_and_what_is_put_back_comes_first() {
        let shared = new_shared("x".to_owned());
        let outbox = Outbox::new(4);
        for n in 0..4 {
            outbox.push(&shared, item(n));
        }
        let mut batch = Vec::new();
        assert_eq!(outbox.pop_into(&mut batch, 3), 3);
        assert_eq!(payloads(batch.drain(..)), [0, 1, 2]);
        // Not published (NATS lost): 1 and 2 go back before 3, and newer ones after it.
        outbox.push(&shared, item(4));
        outbox.unpop(&shared, vec![item(1), item(2)]);
        assert_eq!(shared.counters.snapshot().dropped, 0);
        assert_eq!(outbox.pop_into(&mut batch, 10), 4);
        assert_eq!(payloads(batch.drain(..)), [1, 2, 3, 4]);
    }

    #[test]
    fn a_taken_batch_counts_as_not_drained_until_each_is_handed_on_or_put_back() {
        let shared = new_shared("x".to_owned());
        let outbox = Outbox::new(4);
        for n in 0..3 {
            outbox.push(&shared, item(n));
        }
        let mut batch = Vec::new();
        outbox.pop_into(&mut batch, 10);
        assert!(!outbox.is_drained(), "the publisher still holds 3");
        outbox.handed();
        outbox.unpop(&shared, batch.split_off(1));
        assert!(!outbox.is_drained(), "2 are back in the buffer");
        outbox.pop_into(&mut batch, 10);
        outbox.handed();
        assert!(!outbox.is_drained(), "one is still held");
        outbox.handed();
        assert!(outbox.is_drained());
    }

    #[test]
    fn putting_back_into_a_full_buffer_drops_the_oldest_and_counts_them() {
        let shared = new_shared("x".to_owned());
        let outbox = Outbox::new(3);
        for n in 3..6 {
            outbox.push(&shared, item(n));
        }
        outbox.unpop(&shared, vec![item(0), item(1), item(2)]);
        assert_eq!(shared.counters.snapshot().dropped, 3);
        let mut batch = Vec::new();
        outbox.pop_into(&mut batch, 10);
        assert_eq!(payloads(batch), [3, 4, 5], "the newest are kept, in order");
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_larger_than_the_room_waits_for_the_publisher_and_loses_nothing() {
        let shared = new_shared("x".to_owned());
        let outbox = Arc::new(Outbox::new(3));
        let (_tx, connected) = watch::channel(true);
        let publisher = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                while got.len() < 10 {
                    let notified = outbox.notify.notified();
                    let mut batch = Vec::new();
                    if outbox.pop_into(&mut batch, 2) == 0 {
                        notified.await;
                    }
                    got.extend(payloads(batch));
                    // A slow publisher: slower than one wait per item, never stalled for long.
                    tokio::time::sleep(OUTBOX_FULL_WAIT / 4).await;
                }
                got
            })
        };
        let mut items: VecDeque<Outgoing> = (0..10).map(item).collect();
        outbox.push_all_waiting(&shared, &mut items, &connected).await;
        assert!(items.is_empty());
        assert_eq!(publisher.await.ok(), Some((0..10).collect::<Vec<u8>>()));
        assert_eq!(shared.counters.snapshot().dropped, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_into_a_buffer_that_stays_full_drops_the_oldest_after_one_wait() {
        let shared = new_shared("x".to_owned());
        let outbox = Outbox::new(2);
        let (_tx, connected) = watch::channel(true);
        let started = tokio::time::Instant::now();
        let mut items: VecDeque<Outgoing> = (0..5).map(item).collect();
        outbox.push_all_waiting(&shared, &mut items, &connected).await;
        assert_eq!(started.elapsed(), OUTBOX_FULL_WAIT, "one wait, bounded");
        assert_eq!(shared.counters.snapshot().dropped, 3);
        assert!(outbox.stalled.load(Ordering::Acquire));
        let mut batch = Vec::new();
        outbox.pop_into(&mut batch, 10);
        assert_eq!(payloads(batch), [3, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_drops_at_once_while_nats_is_down() {
        let shared = new_shared("x".to_owned());
        let outbox = Outbox::new(2);
        let (_tx, connected) = watch::channel(false);
        let started = tokio::time::Instant::now();
        let mut items: VecDeque<Outgoing> = (0..5).map(item).collect();
        outbox.push_all_waiting(&shared, &mut items, &connected).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(shared.counters.snapshot().dropped, 3);
        let mut batch = Vec::new();
        outbox.pop_into(&mut batch, 10);
        assert_eq!(payloads(batch), [3, 4]);
    }
}
