//! The background executor the engines run on.
//!
//! Engines spawn their tasks here, not on the caller's runtime, so the
//! async API works from smol, tokio or any other executor, and the blocking
//! API works from plain threads. The executor starts lazily with
//! [`worker_threads`] threads: the engines are I/O-bound and every hop between
//! two of their threads costs a wake-up, while the application's own threads
//! (publishers, consumers) need the other cores.

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use async_executor::{Executor, Task};
use futures_lite::future;

mod deadline;
pub(crate) use deadline::Deadline;

static EXECUTOR: OnceLock<&'static Executor<'static>> = OnceLock::new();

fn executor() -> &'static Executor<'static> {
    EXECUTOR.get_or_init(|| {
        let ex: &'static Executor<'static> = Box::leak(Box::new(Executor::new()));
        for i in 0..worker_threads() {
            std::thread::Builder::new()
                .name(format!("socket-rt-{i}"))
                .spawn(move || async_io::block_on(ex.run(std::future::pending::<()>())))
                .expect("cannot spawn the socket runtime thread");
        }
        ex
    })
}

/// The number of threads of the background executor: half the available
/// cores, at least one (so one on a 2-core machine).
///
/// One worker on two cores halved the context switches per round trip and
/// raised throughput in `cargo xtask bench` (docs/benchmarks.md); the
/// executor never blocks in a task, so one thread serves any number of
/// connections.
pub fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get() / 2).max(1)
}

/// Spawns `future` on the background executor.
///
/// Dropping the returned [`Task`] cancels it; call [`Task::detach`] to let it run on.
pub fn spawn<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> Task<T> {
    executor().spawn(future)
}

/// Runs `future` to completion on the current thread (the blocking API's bridge).
///
/// # Blocking
///
/// Blocks the calling thread until `future` completes. Do not call it from
/// inside an async task; use the `_async` function instead.
pub fn block_on<T>(future: impl Future<Output = T>) -> T {
    // Parks the thread; the executor's workers drive the I/O reactor.
    // (`async_io::block_on` would wake async-io's helper thread on every
    // return: one futex wake and one context switch per blocking call.)
    future::block_on(future)
}

/// Waits until `ready()` holds, woken by `event` (whoever makes `ready()`
/// true notifies it afterwards). `ready` is looked at again after the
/// listener is registered, so a notification between the two is not lost.
pub(crate) async fn wait_until(event: &event_listener::Event, ready: impl Fn() -> bool) {
    loop {
        if ready() {
            return;
        }
        let listener = event.listen();
        if ready() {
            return;
        }
        listener.await;
    }
}

/// `now + d`, or `None` when that instant cannot be represented (an "infinite" timeout).
pub(crate) fn deadline_after(d: Duration) -> Option<Instant> {
    Instant::now().checked_add(d)
}

/// Runs `fut` until `deadline` (none: no limit); `None` if the deadline passed first.
pub(crate) async fn until<T>(deadline: Option<Instant>, fut: impl Future<Output = T>) -> Option<T> {
    match deadline {
        None => Some(fut.await),
        Some(at) => {
            future::or(async { Some(fut.await) }, async {
                Deadline::at(at).await;
                None
            })
            .await
        }
    }
}

/// Runs `fut` for at most `d`; `None` if the time ran out first.
pub(crate) async fn timeout<T>(d: Duration, fut: impl Future<Output = T>) -> Option<T> {
    until(deadline_after(d), fut).await
}

/// Sleeps for `d` (a `Duration` too large to represent sleeps forever).
pub(crate) async fn sleep(d: Duration) {
    match deadline_after(d) {
        Some(at) => Deadline::at(at).await,
        None => future::pending::<()>().await,
    }
}
