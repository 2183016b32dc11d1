//! The conformance cases, the harness that runs them, and the helpers they use.
//!
//! See the crate documentation for how to run the suite against a transport.

use std::any::Any;
use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::Receiver;
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use socket_core::codec::{decode_body, encode_frame, FrameDecoder, Limits};
use socket_core::control::{Control, ErrorCode};
use socket_core::transport::{BoxRead, BoxWrite};
use socket_core::{
    Client, ClientId, ClientOptions, Config, ConnectionState, Data, ErrorKind, EventName, MessageType, Server,
    ServerEvent, ServerOptions, SocketMessage, Transport,
};

/// Which face of the API the cases drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The `_async` functions, awaited.
    Async,
    /// The blocking wrappers, called from plain threads.
    Blocking,
}

type Fixture = Box<dyn Any + Send>;
type MakeConfig = Arc<dyn Fn() -> (Config, Fixture) + Send + Sync>;

/// What the suite runs against: a transport and fresh configurations.
#[derive(Clone)]
pub struct Harness {
    transport: Arc<dyn Transport>,
    make_config: MakeConfig,
    mode: Mode,
    case_timeout: Duration,
}

impl fmt::Debug for Harness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Harness")
            .field("transport", &self.transport.scheme())
            .field("mode", &self.mode)
            .field("case_timeout", &self.case_timeout)
            .finish()
    }
}

impl Harness {
    /// A harness over `transport`; `make_config` gives each case a fresh
    /// configuration (its own socket dir, port or namespace).
    pub fn new(transport: Arc<dyn Transport>, make_config: impl Fn() -> Config + Send + Sync + 'static) -> Self {
        Self::with_fixture(transport, move || (make_config(), Box::new(()) as Fixture))
    }

    /// Like [`new`](Self::new), but `make_config` also returns a value kept
    /// alive until the case ends (e.g. the `TempDir` holding the sockets).
    pub fn with_fixture<F: Any + Send>(
        transport: Arc<dyn Transport>,
        make_config: impl Fn() -> (Config, F) + Send + Sync + 'static,
    ) -> Self {
        Harness {
            transport,
            make_config: Arc::new(move || {
                let (config, fixture) = make_config();
                (config, Box::new(fixture) as Fixture)
            }),
            mode: Mode::Async,
            case_timeout: Duration::from_secs(60),
        }
    }

    /// Selects the API face the cases drive (default [`Mode::Async`]).
    #[must_use]
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The watchdog deadline of one case (default 60 s).
    #[must_use]
    pub fn case_timeout(mut self, timeout: Duration) -> Self {
        self.case_timeout = timeout;
        self
    }

    /// The transport under test.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }
}

/// A failed case: which one and why.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The case name.
    pub case: String,
    /// What went wrong.
    pub message: String,
}

impl Failure {
    /// A failure with `message` (the runner fills in the case name).
    pub fn new(message: impl Into<String>) -> Self {
        Failure { case: String::new(), message: message.into() }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conformance case {} failed: {}", self.case, self.message)
    }
}

impl std::error::Error for Failure {}

impl From<socket_core::Error> for Failure {
    fn from(e: socket_core::Error) -> Self {
        Failure::new(format!("unexpected error ({}): {e}", e.kind()))
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::new(format!("unexpected I/O error: {e}"))
    }
}

/// Every failure of a [`run_all`].
#[derive(Debug, Clone)]
pub struct Failures(pub Vec<Failure>);

impl fmt::Display for Failures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} conformance case(s) failed:", self.0.len())?;
        for failure in &self.0 {
            writeln!(f, "  {failure}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failures {}

/// The result of one case.
pub type CaseResult = Result<(), Failure>;

type CaseFuture<'a> = Pin<Box<dyn Future<Output = CaseResult> + 'a>>;

/// One named case.
#[derive(Clone, Copy)]
pub struct Case {
    /// The case name (also the test name made by [`crate::conformance_tests!`]).
    pub name: &'static str,
    run: for<'a> fn(&'a Ctx) -> CaseFuture<'a>,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case").field("name", &self.name).finish()
    }
}

/// What [`run_all`] did.
#[derive(Debug, Clone)]
pub struct Report {
    /// Names of the cases that passed.
    pub passed: Vec<&'static str>,
    /// Time taken.
    pub elapsed: Duration,
}

macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(Failure::new(format!($($arg)+)));
        }
    };
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        /// Every case of the suite, in a stable order.
        pub fn cases() -> &'static [Case] {
            &[$(Case { name: stringify!($name), run: |cx| Box::pin($name(cx)) }),*]
        }
    };
}

/// Every case name of the suite, in a stable order, handed to `$callback!` after `$prefix`: the
/// one list behind [`cases`] and [`conformance_tests!`](crate::conformance_tests).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_case_names {
    ([$($callback:tt)*] $($prefix:tt)*) => {
        $($callback)*!($($prefix)*
            start_stop_idempotent,
            stop_wakes_clients_and_frees_address,
            drop_stops_server,
            broadcast_one_client,
            broadcast_three_clients,
            broadcast_large_and_small_frames_in_order,
            unicast,
            unicast_unknown_id,
            offline_queue_order_overflow_and_drain,
            offline_queue_byte_limit,
            retain_last_without_duplicates,
            relay,
            client_send_not_allowed,
            max_connections,
            client_ids_unique_under_burst,
            events_report_connects_and_disconnects,
            reconnect_after_server_restart,
            end_of_stream_detected_at_once,
            receive_timeout,
            concurrent_sends_keep_order,
            slow_consumer_disconnected,
            welcome_is_first_frame,
            legacy_client_served,
            ping_answered_with_pong,
            malformed_frame_keeps_connection,
            bad_frame_headers_close_connection,
            unfinished_frame_closes_connection,
            blocking_mode_start,
            stream_and_iterator_end_with_reason,
            legacy_server_mode,
            receive_only_client,
            connect_errors_and_wait_for_server,
            write_stall_disconnects,
            inbound_backpressure,
            hello_with_wrong_protocol_refused,
        );
    };
}

mod ctx;
mod delivery;
mod lifecycle;
mod limits;
mod protocol;

pub use self::ctx::{control, expect_event, expect_state, num, Ctx, Raw, RawEvent};
use self::delivery::*;
use self::lifecycle::*;
use self::limits::*;
use self::protocol::*;

crate::__conformance_case_names!([cases]);

/// Runs the case called `name`.
///
/// # Errors
///
/// The case's [`Failure`], or one saying no case has that name.
pub fn run_case(harness: &Harness, name: &str) -> CaseResult {
    let case = cases()
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| Failure { case: name.to_owned(), message: "no conformance case has this name".to_owned() })?;
    run(harness, case)
}

/// Runs every case against `transport` through both API faces (async, then blocking).
///
/// The simplest entry point: `make_config` gives each case a fresh
/// configuration (own socket dir, port or namespace).
///
/// # Errors
///
/// Every failed case of either run.
pub fn run_suite(
    transport: Arc<dyn Transport>,
    make_config: impl Fn() -> Config + Send + Sync + 'static,
) -> Result<Report, Failures> {
    let started = Instant::now();
    let h = Harness::new(transport, make_config);
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    for mode in [Mode::Async, Mode::Blocking] {
        match run_all(&h.clone().mode(mode)) {
            Ok(r) => passed.extend(r.passed),
            Err(Failures(f)) => failed.extend(f),
        }
    }
    if failed.is_empty() {
        Ok(Report { passed, elapsed: started.elapsed() })
    } else {
        Err(Failures(failed))
    }
}

/// Runs every case, one after the other.
///
/// # Errors
///
/// Every failed case.
pub fn run_all(harness: &Harness) -> Result<Report, Failures> {
    let started = Instant::now();
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    for case in cases() {
        match run(harness, case) {
            Ok(()) => passed.push(case.name),
            Err(f) => failed.push(f),
        }
    }
    if failed.is_empty() {
        Ok(Report { passed, elapsed: started.elapsed() })
    } else {
        Err(Failures(failed))
    }
}

fn run(harness: &Harness, case: &Case) -> CaseResult {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = harness.clone();
    let case = *case;
    let name = case.name;
    std::thread::Builder::new()
        .name(format!("case-{name}"))
        .spawn(move || {
            let (config, fixture) = (h.make_config)();
            let cx = Ctx { h, config, _fixture: fixture };
            let result = async_io::block_on((case.run)(&cx));
            let _ = tx.send(result);
        })
        .map_err(|e| Failure { case: name.to_owned(), message: format!("cannot spawn the case thread: {e}") })?;
    let result = match rx.recv_timeout(harness.case_timeout) {
        Ok(result) => result,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            Err(Failure::new(format!("watchdog: the case did not finish within {:?} (it hangs)", harness.case_timeout)))
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(Failure::new("the case panicked")),
    };
    result.map_err(|mut f| {
        f.case = name.to_owned();
        f
    })
}

/// A name unique in this process, e.g. for a memory namespace: `{prefix}-{n}`.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Defines one `#[test]` per conformance case, named after it, that runs
/// the case against the [`Harness`](crate::conformance::Harness) built by `$harness`
/// (an expression evaluated once per test). See the crate documentation
/// for an example.
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::__conformance_case_names!([$crate::conformance_tests] @cases $harness;);
    };
    (@cases $harness:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() -> ::std::result::Result<(), $crate::conformance::Failure> {
                $crate::conformance::run_case(&$harness, stringify!($name))
            }
        )*
    };
}
