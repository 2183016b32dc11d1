//! The synchronisation facade of the server's registry.
//!
//! `server::registry` and the client's read slot (`client::lead`) take their
//! mutex and atomics from here and nowhere else, so the model checkers can
//! swap them: the standard library's in a normal build, loom's under
//! `--cfg socket_loom` (`cargo xtask loom`), shuttle's under `--cfg shuttle`
//! (`cargo xtask shuttle`). Only the code that the models in
//! `server/models.rs` and `client/models.rs` run may use this module (today:
//! `server/registry.rs` and `client/lead.rs`); the rest of the engine
//! (connection tasks, lifecycle) keeps `std::sync`, because a loom or shuttle
//! primitive panics when it is used outside a model.
//!
//! The cfg is `socket_loom`, not the customary `loom`: a global `--cfg loom`
//! also switches concurrent-queue to loom's atomics, and async-executor then
//! fails to compile. The per-client queue is the registry's own (a mutex from
//! here); only the events (`event-listener`: the one that wakes its writer,
//! the read slot's `back` and `wanted`) run with their real atomics inside
//! the models, where a notification is one indivisible step (the server's
//! models poll; the client's wake their actors through the listeners' wakers).

#[cfg(socket_loom)]
pub(crate) use loom::sync::{atomic::AtomicBool, Mutex, MutexGuard};

#[cfg(all(shuttle, not(socket_loom)))]
pub(crate) use shuttle::sync::{atomic::AtomicBool, Mutex, MutexGuard};

#[cfg(not(any(socket_loom, shuttle)))]
pub(crate) use std::sync::{atomic::AtomicBool, Mutex, MutexGuard};

/// The shuttle models' schedules (`server/models.rs`, `client/models.rs`): the per-PR budget
/// from a fixed seed, changed with `SOCKET_SHUTTLE_ITERATIONS` and `SOCKET_SHUTTLE_SEED` (e.g.
/// for a nightly run).
#[cfg(all(test, shuttle, not(socket_loom)))]
pub(crate) mod schedules {
    /// Schedules per scheduler: 1,000, or `SOCKET_SHUTTLE_ITERATIONS`.
    pub(crate) fn iterations() -> usize {
        std::env::var("SOCKET_SHUTTLE_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
    }

    /// The seed of both schedulers, or `SOCKET_SHUTTLE_SEED`.
    fn seed() -> u64 {
        std::env::var("SOCKET_SHUTTLE_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x0050_c3e7)
    }

    /// `model` under shuttle's random scheduler.
    pub(crate) fn random(model: fn()) {
        shuttle::check_random_with_seed(model, seed(), iterations());
    }

    /// `model` under shuttle's PCT scheduler (depth 3).
    pub(crate) fn pct(model: fn()) {
        let scheduler = shuttle::scheduler::PctScheduler::new_from_seed(seed(), 3, iterations());
        shuttle::Runner::new(scheduler, shuttle::Config::default()).run(model);
    }

    /// Runs `check` (one scheduler over a model whose schedules add to `coverage`, a
    /// thread-local: shuttle runs them on the test's own thread) from a fresh `coverage`; fails
    /// unless every schedule counted itself (`schedules_of`) and, with 100 schedules or more,
    /// unless they covered `enough`.
    pub(crate) fn covered<C: Default + std::fmt::Debug>(
        coverage: &'static std::thread::LocalKey<std::cell::RefCell<C>>,
        name: &str,
        check: impl FnOnce(),
        schedules_of: impl Fn(&C) -> usize,
        enough: impl Fn(&C) -> bool,
    ) {
        coverage.with_borrow_mut(|c| *c = C::default());
        check();
        let c = coverage.take();
        let schedules = schedules_of(&c);
        assert_eq!(schedules, iterations(), "{name}: not every schedule ran: {c:?}");
        assert!(schedules < 100 || enough(&c), "{name}: too little covered: {c:?}");
    }
}
