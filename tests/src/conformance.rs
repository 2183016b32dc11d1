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

/// The context of one running case: fresh configuration and API helpers
/// that drive the async or the blocking face according to the mode.
pub struct Ctx {
    h: Harness,
    config: Config,
    _fixture: Fixture,
}

impl fmt::Debug for Ctx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx").field("harness", &self.h).finish_non_exhaustive()
    }
}

/// A generous bound for things that should happen "at once".
const SOON: Duration = Duration::from_secs(5);
/// How long to watch for something that must not happen.
const QUIET: Duration = Duration::from_millis(300);

impl Ctx {
    /// The mode of this run.
    pub fn mode(&self) -> Mode {
        self.h.mode
    }

    /// The event every case uses (the configuration keeps cases apart).
    pub fn event(&self) -> EventName {
        EventName::new("conformance").expect("valid event name")
    }

    /// The case's configuration.
    pub fn config(&self) -> Config {
        self.config.clone()
    }

    /// A DATA message with `data = {"n": n}`.
    pub fn data(&self, n: u64) -> SocketMessage {
        SocketMessage::data(self.event(), Data::new().with("n", n))
    }

    /// A server (not started) with options adjusted by `f`.
    ///
    /// # Errors
    ///
    /// If the server cannot be created.
    pub fn server(&self, f: impl FnOnce(&mut ServerOptions)) -> Result<Server, Failure> {
        let mut opts = ServerOptions::from_config(&self.config, self.h.transport.as_ref())?;
        f(&mut opts);
        Ok(Server::with_options(self.h.transport.clone(), self.event(), self.config.clone(), opts)?)
    }

    /// A started server with options adjusted by `f`.
    ///
    /// # Errors
    ///
    /// If the server cannot be created or started.
    pub async fn started(&self, f: impl FnOnce(&mut ServerOptions)) -> Result<Server, Failure> {
        let server = self.server(f)?;
        self.start(&server).await?;
        Ok(server)
    }

    /// Starts `server` through the API of the mode.
    ///
    /// # Errors
    ///
    /// As [`Server::start`].
    pub async fn start(&self, server: &Server) -> socket_core::Result<()> {
        match self.mode() {
            Mode::Async => server.start_async().await,
            Mode::Blocking => server.start(),
        }
    }

    /// Stops `server` through the API of the mode.
    ///
    /// # Errors
    ///
    /// As [`Server::stop`].
    pub async fn stop(&self, server: &Server) -> socket_core::Result<()> {
        match self.mode() {
            Mode::Async => server.stop_async().await,
            Mode::Blocking => server.stop(),
        }
    }

    /// Client options for this case: fast reconnects so cases stay short.
    ///
    /// # Errors
    ///
    /// If the configuration is invalid.
    pub fn client_options(&self) -> Result<ClientOptions, Failure> {
        let mut o = ClientOptions::from_config(&self.config)?;
        o.reconnect_initial_delay = Duration::from_millis(20);
        o.reconnect_max_delay = Duration::from_millis(200);
        Ok(o)
    }

    /// Connects a client with options adjusted by `f`, through the API of the mode.
    ///
    /// # Errors
    ///
    /// As [`Client::connect`].
    pub async fn connect_with(
        &self,
        f: impl FnOnce(&mut ClientOptions),
    ) -> Result<socket_core::Result<Client>, Failure> {
        let mut o = self.client_options()?;
        f(&mut o);
        let (t, e, c) = (self.h.transport.clone(), self.event(), self.config.clone());
        Ok(match self.mode() {
            Mode::Async => Client::connect_with_async(t, e, c, o).await,
            Mode::Blocking => Client::connect_with(t, e, c, o),
        })
    }

    /// Connects a client with the case's options.
    ///
    /// # Errors
    ///
    /// If connecting fails.
    pub async fn connect(&self) -> Result<Client, Failure> {
        Ok(self.connect_with(|_| {}).await??)
    }

    /// Sends through the API of the mode.
    ///
    /// # Errors
    ///
    /// As [`Client::send`].
    pub async fn send(&self, client: &Client, msg: &SocketMessage) -> socket_core::Result<()> {
        match self.mode() {
            Mode::Async => client.send_async(msg).await,
            Mode::Blocking => client.send(msg),
        }
    }

    /// Receives through the API of the mode.
    ///
    /// # Errors
    ///
    /// As [`Client::receive`].
    pub async fn receive(&self, client: &Client, timeout: Duration) -> socket_core::Result<Option<SocketMessage>> {
        match self.mode() {
            Mode::Async => client.receive_async(Some(timeout)).await,
            Mode::Blocking => client.receive(Some(timeout)),
        }
    }

    /// Receives one message or fails after 5 s.
    ///
    /// # Errors
    ///
    /// If nothing arrives in time or the client closed.
    pub async fn expect_message(&self, client: &Client, what: &str) -> Result<SocketMessage, Failure> {
        match self.receive(client, SOON).await {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(Failure::new(format!("no message within {SOON:?} ({what})"))),
            Err(e) => Err(Failure::new(format!("receive failed ({what}): {e}"))),
        }
    }

    /// Receives the DATA message `{"n": n}` or fails.
    ///
    /// # Errors
    ///
    /// If another message, none, or an error comes.
    pub async fn expect_n(&self, client: &Client, n: u64) -> CaseResult {
        let m = self.expect_message(client, &format!("waiting for n = {n}")).await?;
        ensure!(num(&m) == Some(n), "expected the message n = {n}, got n = {:?} ({:?})", num(&m), m);
        Ok(())
    }

    /// Checks that no message arrives for a short while.
    ///
    /// # Errors
    ///
    /// If a message arrives.
    pub async fn expect_nothing(&self, client: &Client, what: &str) -> CaseResult {
        match self.receive(client, QUIET).await {
            Ok(None) => Ok(()),
            Ok(Some(m)) => Err(Failure::new(format!("unexpected message ({what}): n = {:?} {m:?}", num(&m)))),
            Err(e) => Err(Failure::new(format!("unexpected error ({what}): {e}"))),
        }
    }

    /// Disconnects through the API of the mode.
    pub async fn disconnect(&self, client: &Client) {
        match self.mode() {
            Mode::Async => client.disconnect_async().await,
            Mode::Blocking => client.disconnect(),
        }
    }

    /// A raw byte-stream connection to the server, speaking no protocol by itself.
    ///
    /// # Errors
    ///
    /// If the transport cannot connect.
    pub async fn raw(&self) -> Result<Raw, Failure> {
        let endpoints = self.h.transport.endpoints(&self.event(), &self.config)?;
        let ep = endpoints.first().ok_or_else(|| Failure::new("the transport gave no endpoint"))?;
        let conn = self.h.transport.connect(ep, &self.config).await?;
        Ok(Raw {
            reader: conn.reader,
            writer: conn.writer,
            dec: FrameDecoder::new(Limits::default()),
            event: self.event(),
        })
    }
}

/// `data.n` of a message.
pub fn num(m: &SocketMessage) -> Option<u64> {
    m.data.get("n").and_then(|v| v.as_u64())
}

/// Waits for a server event matching `pred`, skipping others.
///
/// # Errors
///
/// If none comes within `timeout`.
pub async fn expect_event(
    events: &Receiver<ServerEvent>,
    timeout: Duration,
    what: &str,
    mut pred: impl FnMut(&ServerEvent) -> bool,
) -> Result<ServerEvent, Failure> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = future::or(async { events.recv().await.ok() }, async {
            async_io::Timer::after(left).await;
            None
        })
        .await
        .ok_or_else(|| Failure::new(format!("no server event within {timeout:?}: {what}")))?;
        if pred(&ev) {
            return Ok(ev);
        }
    }
}

/// Waits until `client` reaches `state`.
///
/// # Errors
///
/// If it does not within `timeout`.
pub async fn expect_state(
    changes: &Receiver<ConnectionState>,
    state: ConnectionState,
    timeout: Duration,
) -> Result<(), Failure> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let got = future::or(async { changes.recv().await.ok() }, async {
            async_io::Timer::after(left).await;
            None
        })
        .await;
        match got {
            Some(s) if s == state => return Ok(()),
            Some(_) => {}
            None => return Err(Failure::new(format!("client did not reach state {state:?} within {timeout:?}"))),
        }
    }
}

/// What a [`Raw`] connection read.
#[derive(Debug)]
pub enum RawEvent {
    /// A decoded message.
    Message(SocketMessage),
    /// The server closed the connection.
    Eof,
    /// Nothing within the timeout.
    Timeout,
}

/// A raw connection for protocol-level cases (legacy clients, bad frames).
pub struct Raw {
    reader: BoxRead,
    writer: BoxWrite,
    dec: FrameDecoder,
    event: EventName,
}

impl fmt::Debug for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Raw").finish_non_exhaustive()
    }
}

impl Raw {
    /// Writes bytes as they are.
    ///
    /// # Errors
    ///
    /// On a write failure.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await?;
        self.writer.flush().await
    }

    /// Writes one message frame.
    ///
    /// # Errors
    ///
    /// On an encoding or write failure.
    pub async fn send_msg(&mut self, msg: &SocketMessage) -> CaseResult {
        let frame = encode_frame(msg, 1 << 20)?;
        Ok(self.send_bytes(frame.as_bytes()).await?)
    }

    /// Sends `hello` and expects `welcome`; returns the client id.
    ///
    /// # Errors
    ///
    /// If no `welcome` comes first.
    pub async fn hello(&mut self) -> Result<String, Failure> {
        let hello = control(&self.event, &Control::Hello { protocol: 1, client_name: Some("raw".to_owned()) });
        self.send_msg(&hello).await?;
        match self.next(SOON).await? {
            RawEvent::Message(m) => match Control::parse(&m) {
                Some(Ok(Control::Welcome { client_id, .. })) => Ok(client_id),
                _ => Err(Failure::new(format!("first frame after hello is not welcome: {m:?}"))),
            },
            other => Err(Failure::new(format!("no welcome after hello: {other:?}"))),
        }
    }

    /// The next message, end-of-stream, or timeout.
    ///
    /// # Errors
    ///
    /// On a read error other than a reset, or an undecodable frame.
    pub async fn next(&mut self, timeout: Duration) -> Result<RawEvent, Failure> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.dec.next_frame() {
                Ok(Some(body)) => {
                    let m = decode_body(body, &Limits::default())
                        .map_err(|e| Failure::new(format!("server sent a malformed frame: {e}")))?;
                    return Ok(RawEvent::Message(m));
                }
                Ok(None) => {}
                Err(e) => return Err(Failure::new(format!("server sent a bad frame header: {e}"))),
            }
            let mut buf = [0u8; 4096];
            let left = deadline.saturating_duration_since(Instant::now());
            let read = future::or(async { Some(self.reader.read(&mut buf).await) }, async {
                async_io::Timer::after(left).await;
                None
            })
            .await;
            match read {
                None => return Ok(RawEvent::Timeout),
                Some(Ok(0)) => return Ok(RawEvent::Eof),
                Some(Ok(n)) => self.dec.feed(&buf[..n]),
                Some(Err(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::BrokenPipe
                            | std::io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    return Ok(RawEvent::Eof)
                }
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Expects an ERROR message with `code`.
    ///
    /// # Errors
    ///
    /// If anything else comes.
    pub async fn expect_error(&mut self, code: ErrorCode) -> CaseResult {
        match self.next(SOON).await? {
            RawEvent::Message(m) => {
                let got = ErrorCode::parse(&m);
                ensure!(got.as_ref().map(|g| g.0) == Some(code), "expected ERROR {code}, got {m:?} ({got:?})");
                Ok(())
            }
            other => Err(Failure::new(format!("expected ERROR {code}, got {other:?}"))),
        }
    }

    /// Expects end-of-stream, skipping nothing.
    ///
    /// # Errors
    ///
    /// If a message comes or the stream stays open.
    pub async fn expect_eof(&mut self, what: &str) -> CaseResult {
        match self.next(SOON).await? {
            RawEvent::Eof => Ok(()),
            other => Err(Failure::new(format!("expected end-of-stream ({what}), got {other:?}"))),
        }
    }
}

/// A protocol control message for `event` (stamped now, UTC).
pub fn control(event: &EventName, c: &Control) -> SocketMessage {
    SocketMessage::new(event.clone(), MessageType::Control, c.to_data())
}

// ---------------------------------------------------------------- cases --

async fn start_stop_idempotent(cx: &Ctx) -> CaseResult {
    let server = cx.server(|_| {})?;
    ensure!(!server.is_running(), "a new server runs before start()");
    ensure!(server.address().is_none(), "a new server has an address before start()");
    cx.start(&server).await?;
    cx.start(&server).await?;
    ensure!(server.is_running(), "server not running after start()");
    ensure!(server.address().is_some(), "running server has no address");
    cx.stop(&server).await?;
    cx.stop(&server).await?;
    ensure!(!server.is_running(), "server still running after stop()");
    ensure!(server.address().is_none(), "stopped server still has an address");
    match server.broadcast(&cx.data(1)) {
        Err(e) if e.kind() == ErrorKind::Closed => {}
        other => return Err(Failure::new(format!("broadcast on a stopped server: expected Closed, got {other:?}"))),
    }
    // The same handle starts again.
    cx.start(&server).await?;
    let client = cx.connect().await?;
    server.broadcast(&cx.data(2))?;
    cx.expect_n(&client, 2).await?;
    cx.stop(&server).await?;
    Ok(())
}

async fn stop_wakes_clients_and_frees_address(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(cx.connect_with(|o| o.auto_reconnect = false).await??);
    }
    let t0 = Instant::now();
    cx.stop(&server).await?;
    let took = t0.elapsed();
    ensure!(took < Duration::from_secs(1), "stop() took {took:?}, more than 1 s");
    for c in &clients {
        match cx.receive(c, Duration::from_secs(2)).await {
            Err(e) if e.kind() == ErrorKind::Closed => {
                ensure!(e.to_string().contains("shut down"), "close reason does not mention the shutdown: {e}");
            }
            other => return Err(Failure::new(format!("client not closed after stop: {other:?}"))),
        }
        ensure!(!c.is_connected(), "client still connected after stop");
    }
    let seen = t0.elapsed();
    ensure!(seen < Duration::from_millis(1500), "clients saw end-of-stream only after {seen:?}");
    // The address is free at once.
    let again = cx.server(|_| {})?;
    cx.start(&again).await?;
    cx.stop(&again).await?;
    Ok(())
}

async fn drop_stops_server(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let clone = server.clone();
    let client = cx.connect_with(|o| o.auto_reconnect = false).await??;
    drop(server);
    ensure!(clone.is_running(), "dropping one of two handles stopped the server");
    drop(clone);
    match cx.receive(&client, Duration::from_secs(2)).await {
        Err(e) if e.kind() == ErrorKind::Closed => {}
        other => return Err(Failure::new(format!("client not closed after the server was dropped: {other:?}"))),
    }
    // Address free again (the drop released it synchronously).
    let again = cx.server(|_| {})?;
    cx.start(&again).await?;
    cx.stop(&again).await?;
    Ok(())
}

async fn broadcast_to(cx: &Ctx, n: usize) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let mut clients = Vec::new();
    for _ in 0..n {
        clients.push(cx.connect().await?);
    }
    for i in 0..5 {
        server.broadcast(&cx.data(i))?;
    }
    for c in &clients {
        for i in 0..5 {
            cx.expect_n(c, i).await?;
        }
    }
    ensure!(server.stats().queued == 0, "broadcasts with clients connected went to the offline queue");
    cx.stop(&server).await?;
    Ok(())
}

async fn broadcast_one_client(cx: &Ctx) -> CaseResult {
    broadcast_to(cx, 1).await
}

async fn broadcast_three_clients(cx: &Ctx) -> CaseResult {
    broadcast_to(cx, 3).await
}

async fn unicast(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let a = cx.connect().await?;
    let b = cx.connect().await?;
    let id: ClientId = a.client_id().ok_or_else(|| Failure::new("client has no id after welcome"))?.parse()?;
    ensure!(server.clients().iter().any(|c| c.id == id), "server does not list client {id}");
    server.send_to(id, &cx.data(7))?;
    cx.expect_n(&a, 7).await?;
    cx.expect_nothing(&b, "unicast reached another client").await?;
    cx.stop(&server).await?;
    Ok(())
}

async fn unicast_unknown_id(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let err = server.send_to(ClientId(999_999), &cx.data(1));
    match err {
        Err(e) if e.kind() == ErrorKind::Validation => {
            ensure!(e.to_string().contains("c999999"), "error does not name the id: {e}");
        }
        other => return Err(Failure::new(format!("unicast to an unknown id: expected Validation, got {other:?}"))),
    }
    ensure!(server.queue_len() == 0 && server.stats().queued == 0, "unicast to an unknown id was queued");
    // A client that connects later must not get it.
    let c = cx.connect().await?;
    cx.expect_nothing(&c, "unicast to an unknown id was delivered later").await?;
    cx.stop(&server).await?;
    Ok(())
}

async fn offline_queue_order_overflow_and_drain(cx: &Ctx) -> CaseResult {
    let server = cx.started(|o| o.message_queue_size = 5).await?;
    for i in 0..8 {
        server.broadcast(&cx.data(i))?;
    }
    let s = server.stats();
    ensure!(s.queued == 8 && s.dropped == 3, "expected queued 8 / dropped 3, got {s:?}");
    ensure!(server.queue_len() == 5, "queue holds {} messages, expected 5", server.queue_len());
    let first = cx.connect().await?;
    for i in 3..8 {
        cx.expect_n(&first, i).await?;
    }
    ensure!(server.queue_len() == 0, "queue not empty after the first client");
    let second = cx.connect().await?;
    cx.expect_nothing(&second, "the offline queue was replayed to a second client").await?;
    server.broadcast(&cx.data(100))?;
    cx.expect_n(&first, 100).await?;
    cx.expect_n(&second, 100).await?;
    cx.stop(&server).await?;
    Ok(())
}

async fn offline_queue_byte_limit(cx: &Ctx) -> CaseResult {
    let frame_len = encode_frame(&cx.data(1), 1 << 20)?.len();
    let server = cx
        .started(|o| {
            o.message_queue_size = 100;
            o.message_queue_bytes = frame_len * 3;
        })
        .await?;
    for i in 0..10 {
        server.broadcast(&cx.data(i))?;
    }
    ensure!(server.queue_len() == 3, "byte-bounded queue holds {}, expected 3", server.queue_len());
    ensure!(server.stats().dropped == 7, "dropped {} expected 7", server.stats().dropped);
    let c = cx.connect().await?;
    for i in 7..10 {
        cx.expect_n(&c, i).await?;
    }
    cx.stop(&server).await?;
    Ok(())
}

async fn retain_last_without_duplicates(cx: &Ctx) -> CaseResult {
    let server = cx
        .started(|o| {
            o.retain_last = true;
            o.message_queue_size = 10;
        })
        .await?;
    for i in 0..3 {
        server.broadcast(&cx.data(i))?;
    }
    let a = cx.connect().await?;
    for i in 0..3 {
        cx.expect_n(&a, i).await?;
    }
    cx.expect_nothing(&a, "retained message duplicated after the queue replay").await?;
    let b = cx.connect().await?;
    cx.expect_n(&b, 2).await?;
    cx.expect_nothing(&b, "more than the retained message").await?;
    server.broadcast(&cx.data(3))?;
    cx.expect_n(&a, 3).await?;
    cx.expect_n(&b, 3).await?;
    let c = cx.connect().await?;
    cx.expect_n(&c, 3).await?;
    cx.stop(&server).await?;
    Ok(())
}

async fn relay(cx: &Ctx) -> CaseResult {
    let server = cx.started(|o| o.relay = true).await?;
    let events = server.events();
    let a = cx.connect().await?;
    let b = cx.connect().await?;
    let c = cx.connect().await?;
    let a_id: ClientId = a.client_id().ok_or_else(|| Failure::new("no client id"))?.parse()?;
    ensure!(a.server_relays(), "welcome of a relaying server does not say relay");
    let msg = SocketMessage::new(cx.event(), MessageType::Control, Data::new().with("app", "x").with("n", 42u64));
    cx.send(&a, &msg).await?;
    for (name, client) in [("b", &b), ("c", &c)] {
        let got = cx.expect_message(client, "relayed message").await?;
        ensure!(got == msg, "client {name} got a changed message: {got:?}");
    }
    cx.expect_nothing(&a, "relay echoed the message to its sender").await?;
    expect_event(
        &events,
        SOON,
        "message event from a",
        |e| matches!(e, ServerEvent::Message { from, message } if *from == a_id && *message == msg),
    )
    .await?;
    // Alone, a sender's relayed messages go to the offline queue.
    cx.disconnect(&b).await;
    cx.disconnect(&c).await;
    let mut gone = 0;
    while gone < 2 {
        expect_event(&events, SOON, "b and c disconnect", |e| matches!(e, ServerEvent::Disconnected { .. })).await?;
        gone += 1;
    }
    cx.send(&a, &cx.data(43)).await?;
    expect_event(
        &events,
        SOON,
        "message 43",
        |e| matches!(e, ServerEvent::Message { message, .. } if num(message) == Some(43)),
    )
    .await?;
    ensure!(server.queue_len() == 1, "relayed message without other clients not queued ({})", server.queue_len());
    // The next client to connect takes the queue, though the sender stayed
    // connected (a short-lived producer's messages reach a later subscriber).
    let d = cx.connect().await?;
    let got = cx.expect_message(&d, "queued relayed message").await?;
    ensure!(num(&got) == Some(43), "the subscriber got {got:?} instead of the queued message 43");
    ensure!(server.queue_len() == 0, "offline queue not empty after the replay ({})", server.queue_len());
    cx.send(&a, &cx.data(44)).await?;
    let got = cx.expect_message(&d, "live relayed message").await?;
    ensure!(num(&got) == Some(44), "after the replay the subscriber got {got:?}, not 44");
    cx.expect_nothing(&a, "relay echoed the message to its sender").await?;
    cx.stop(&server).await?;
    Ok(())
}

async fn client_send_not_allowed(cx: &Ctx) -> CaseResult {
    let server = cx.started(|o| o.allow_client_send = false).await?;
    let events = server.events();
    let client = cx.connect().await?;
    ensure!(!client.can_send(), "welcome did not tell the client it may not send");
    let t0 = Instant::now();
    match cx.send(&client, &cx.data(1)).await {
        Err(e) if e.kind() == ErrorKind::SendNotAllowed => {
            ensure!(e.to_string().contains("allow_client_send"), "error does not explain: {e}");
        }
        other => {
            return Err(Failure::new(format!("send in receive-only mode: expected SendNotAllowed, got {other:?}")))
        }
    }
    ensure!(t0.elapsed() < Duration::from_millis(500), "refused send took {:?}", t0.elapsed());
    // A legacy sender that ignores the rule gets an ERROR and stays connected.
    let mut raw = cx.raw().await?;
    raw.send_msg(&cx.data(2)).await?;
    raw.expect_error(ErrorCode::SendNotAllowed).await?;
    server.broadcast(&cx.data(3))?;
    match raw.next(SOON).await? {
        RawEvent::Message(m) if num(&m) == Some(3) => {}
        other => return Err(Failure::new(format!("legacy sender not served after send_not_allowed: {other:?}"))),
    }
    cx.expect_n(&client, 3).await?;
    // The application never saw a message.
    let seen = expect_event(&events, QUIET, "", |e| matches!(e, ServerEvent::Message { .. })).await;
    ensure!(seen.is_err(), "a refused message reached the application: {seen:?}");
    cx.stop(&server).await?;
    Ok(())
}

async fn max_connections(cx: &Ctx) -> CaseResult {
    let server = cx.started(|o| o.max_connections = 10).await?;
    let events = server.events();
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(cx.connect().await?);
    }
    match cx.connect_with(|o| o.auto_reconnect = false).await? {
        Err(e) if e.kind() == ErrorKind::MaxConnections => {
            ensure!(e.to_string().contains("max_connections"), "error does not name the limit: {e}");
        }
        Ok(_) => return Err(Failure::new("client 11 connected although max_connections is 10")),
        Err(e) => return Err(Failure::new(format!("client 11: expected MaxConnections, got {} ({e})", e.kind()))),
    }
    ensure!(server.stats().rejected >= 1, "rejection not counted");
    // A raw (legacy) client over the limit gets the ERROR frame, then end-of-stream.
    let mut raw = cx.raw().await?;
    raw.expect_error(ErrorCode::MaxConnections).await?;
    raw.expect_eof("refused connection").await?;
    ensure!(server.client_count() == 10, "server serves {} clients", server.client_count());
    // A freed slot can be used again.
    let leaving = clients.pop().ok_or_else(|| Failure::new("no client"))?;
    cx.disconnect(&leaving).await;
    expect_event(&events, SOON, "a client disconnects", |e| matches!(e, ServerEvent::Disconnected { .. })).await?;
    clients.push(cx.connect().await?);
    cx.stop(&server).await?;
    Ok(())
}

async fn client_ids_unique_under_burst(cx: &Ctx) -> CaseResult {
    const N: usize = 100;
    let server = cx.started(|o| o.max_connections = N + 10).await?;
    let opts = cx.client_options()?;
    let (t, e, c) = (cx.h.transport.clone(), cx.event(), cx.config());
    let clients: Vec<Client> = match cx.mode() {
        Mode::Async => {
            let tasks: Vec<_> = (0..N)
                .map(|_| {
                    let (t, e, c, o) = (t.clone(), e.clone(), c.clone(), opts.clone());
                    socket_core::runtime::spawn(Client::connect_with_async(t, e, c, o))
                })
                .collect();
            let mut out = Vec::new();
            for task in tasks {
                out.push(task.await?);
            }
            out
        }
        Mode::Blocking => std::thread::scope(|s| {
            let handles: Vec<_> = (0..N)
                .map(|_| {
                    let (t, e, c, o) = (t.clone(), e.clone(), c.clone(), opts.clone());
                    s.spawn(move || Client::connect_with(t, e, c, o))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().map_err(|_| Failure::new("connect thread panicked"))?.map_err(Failure::from))
                .collect::<Result<Vec<_>, Failure>>()
        })?,
    };
    let ids: HashSet<String> = clients.iter().filter_map(Client::client_id).collect();
    ensure!(ids.len() == N, "{} distinct ids for {N} clients", ids.len());
    let listed: HashSet<ClientId> = server.clients().iter().map(|c| c.id).collect();
    ensure!(listed.len() == N, "server lists {} distinct clients, expected {N}", listed.len());
    cx.stop(&server).await?;
    Ok(())
}

async fn events_report_connects_and_disconnects(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let events = server.events();
    let client = cx.connect_with(|o| o.client_name = Some("alpha".to_owned())).await??;
    let id: ClientId = client.client_id().ok_or_else(|| Failure::new("no client id"))?.parse()?;
    let ev = expect_event(&events, SOON, "connected", |e| matches!(e, ServerEvent::Connected(_))).await?;
    let ServerEvent::Connected(info) = ev else { return Err(Failure::new("not a Connected event")) };
    ensure!(info.id == id, "connected event id {} differs from the client's {id}", info.id);
    ensure!(info.client_name.as_deref() == Some("alpha"), "client_name not reported: {info:?}");
    ensure!(info.handshaken, "a hello client is reported as legacy");
    ensure!(!info.address.is_empty(), "no peer address");
    cx.send(&client, &cx.data(5)).await?;
    expect_event(
        &events,
        SOON,
        "message",
        |e| matches!(e, ServerEvent::Message { from, message } if *from == id && num(message) == Some(5)),
    )
    .await?;
    cx.disconnect(&client).await;
    expect_event(&events, SOON, "disconnected", |e| matches!(e, ServerEvent::Disconnected { id: d, .. } if *d == id))
        .await?;
    ensure!(server.client_count() == 0, "disconnected client still listed");
    cx.stop(&server).await?;
    Ok(())
}

async fn reconnect_after_server_restart(cx: &Ctx) -> CaseResult {
    let first = cx.started(|_| {}).await?;
    let client = cx.connect().await?;
    let changes = client.state_changes();
    expect_state(&changes, ConnectionState::Connected, SOON).await?;
    cx.stop(&first).await?;
    expect_state(&changes, ConnectionState::Reconnecting, Duration::from_secs(1)).await?;
    ensure!(!client.is_connected(), "is_connected() true while reconnecting");
    match cx.send(&client, &cx.data(0)).await {
        Err(e) if e.kind() == ErrorKind::Connection => {}
        other => {
            return Err(Failure::new(format!("send while reconnecting: expected Connection error, got {other:?}")))
        }
    }
    drop(first);
    let second = cx.started(|_| {}).await?;
    expect_state(&changes, ConnectionState::Connected, SOON).await?;
    ensure!(client.is_connected(), "is_connected() false after reconnecting");
    second.broadcast(&cx.data(5))?;
    cx.expect_n(&client, 5).await?;
    cx.send(&client, &cx.data(6)).await?;
    cx.disconnect(&client).await;
    expect_state(&changes, ConnectionState::Closed, SOON).await?;
    cx.stop(&second).await?;
    Ok(())
}

async fn end_of_stream_detected_at_once(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let client = cx.connect().await?;
    let changes = client.state_changes();
    let t0 = Instant::now();
    cx.stop(&server).await?;
    expect_state(&changes, ConnectionState::Reconnecting, Duration::from_secs(1)).await?;
    ensure!(!client.is_connected(), "is_connected() true after the server stopped");
    ensure!(t0.elapsed() < Duration::from_millis(1200), "end of stream noticed after {:?}", t0.elapsed());
    // Receiving keeps timing out (no spin, no error) while reconnecting.
    ensure!(cx.receive(&client, Duration::from_millis(50)).await?.is_none(), "message from a stopped server");
    cx.disconnect(&client).await;
    match cx.receive(&client, Duration::from_millis(50)).await {
        Err(e) if e.kind() == ErrorKind::Closed => Ok(()),
        other => Err(Failure::new(format!("receive after disconnect: expected Closed, got {other:?}"))),
    }
}

async fn receive_timeout(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let client = cx.connect().await?;
    let t0 = Instant::now();
    let got = cx.receive(&client, Duration::from_millis(150)).await?;
    let took = t0.elapsed();
    ensure!(got.is_none(), "unexpected message {got:?}");
    ensure!(took >= Duration::from_millis(140), "receive timed out early, after {took:?}");
    ensure!(took < Duration::from_secs(1), "receive timed out late, after {took:?}");
    ensure!(client.is_connected(), "a receive timeout disconnected the client");
    server.broadcast(&cx.data(1))?;
    cx.expect_n(&client, 1).await?;
    cx.stop(&server).await?;
    Ok(())
}

async fn concurrent_sends_keep_order(cx: &Ctx) -> CaseResult {
    const SENDERS: u64 = 8;
    const EACH: u64 = 200;
    let server = cx.started(|_| {}).await?;
    let events = server.events();
    let client = cx.connect().await?;
    let event = cx.event();
    let make = move |t: u64, seq: u64| {
        SocketMessage::data(event.clone(), Data::new().with("t", t).with("seq", seq).with("pad", "x".repeat(100)))
    };
    let sending: Box<dyn FnOnce() -> Result<(), Failure> + Send> = match cx.mode() {
        Mode::Async => {
            let tasks: Vec<_> = (0..SENDERS)
                .map(|t| {
                    let (client, make) = (client.clone(), make.clone());
                    socket_core::runtime::spawn(async move {
                        for seq in 0..EACH {
                            client.send_async(&make(t, seq)).await?;
                        }
                        Ok::<_, socket_core::Error>(())
                    })
                })
                .collect();
            Box::new(move || {
                for task in tasks {
                    async_io::block_on(task)?;
                }
                Ok(())
            })
        }
        Mode::Blocking => {
            let threads: Vec<_> = (0..SENDERS)
                .map(|t| {
                    let (client, make) = (client.clone(), make.clone());
                    std::thread::spawn(move || {
                        for seq in 0..EACH {
                            client.send(&make(t, seq))?;
                        }
                        Ok::<_, socket_core::Error>(())
                    })
                })
                .collect();
            Box::new(move || {
                for th in threads {
                    th.join().map_err(|_| Failure::new("sender thread panicked"))??;
                }
                Ok(())
            })
        }
    };
    let mut next = vec![0u64; SENDERS as usize];
    for _ in 0..SENDERS * EACH {
        let ev = expect_event(&events, SOON, "all sent messages", |e| matches!(e, ServerEvent::Message { .. })).await?;
        let ServerEvent::Message { message, .. } = ev else { continue };
        let t = message.data.get("t").and_then(|v| v.as_u64()).ok_or_else(|| Failure::new("no t"))?;
        let seq = message.data.get("seq").and_then(|v| v.as_u64()).ok_or_else(|| Failure::new("no seq"))?;
        let slot = next.get_mut(t as usize).ok_or_else(|| Failure::new("bad t"))?;
        ensure!(seq == *slot, "sender {t}: got seq {seq}, expected {}", *slot);
        *slot += 1;
    }
    sending()?;
    ensure!(server.stats().malformed == 0, "interleaved frames: {} malformed", server.stats().malformed);
    cx.stop(&server).await?;
    Ok(())
}

/// Records what a reading client receives (on a task or a thread, per mode).
fn collector(cx: &Ctx, client: Client) -> Receiver<u64> {
    let (tx, rx) = async_channel::unbounded();
    match cx.mode() {
        Mode::Async => socket_core::runtime::spawn(async move {
            while let Ok(Some(m)) = client.receive_async(None).await {
                if tx.send(num(&m).unwrap_or(u64::MAX)).await.is_err() {
                    break;
                }
            }
        })
        .detach(),
        Mode::Blocking => {
            std::thread::spawn(move || {
                while let Ok(Some(m)) = client.receive(None) {
                    if tx.send_blocking(num(&m).unwrap_or(u64::MAX)).is_err() {
                        break;
                    }
                }
            });
        }
    }
    rx
}

async fn slow_consumer_disconnected(cx: &Ctx) -> CaseResult {
    let server = cx
        .started(|o| {
            o.outbound_queue_size = 32;
            o.outbound_queue_bytes = 1 << 20;
        })
        .await?;
    let events = server.events();
    let slow = cx
        .connect_with(|o| {
            o.receive_buffer_size = 1;
            o.auto_reconnect = false;
        })
        .await??;
    let slow_id: ClientId = slow.client_id().ok_or_else(|| Failure::new("no id"))?.parse()?;
    let good = [cx.connect().await?, cx.connect().await?];
    let seen: Vec<Receiver<u64>> = good.iter().map(|c| collector(cx, c.clone())).collect();
    let pad = "x".repeat(4096);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0u64;
    while server.stats().slow_consumers == 0 {
        ensure!(Instant::now() < deadline, "no slow-consumer disconnect after {n} messages");
        for _ in 0..16 {
            server.broadcast(&SocketMessage::data(cx.event(), Data::new().with("n", n).with("pad", pad.as_str())))?;
            n += 1;
        }
        // Pace on the readers so only the slow client falls behind.
        for rx in &seen {
            loop {
                let got = future::or(async { rx.recv().await.ok() }, async {
                    async_io::Timer::after(SOON).await;
                    None
                })
                .await
                .ok_or_else(|| Failure::new("a reading client stopped receiving"))?;
                if got == n - 1 {
                    break;
                }
            }
        }
    }
    let ev = expect_event(
        &events,
        SOON,
        "slow client disconnected",
        |e| matches!(e, ServerEvent::Disconnected { id, .. } if *id == slow_id),
    )
    .await?;
    if let ServerEvent::Disconnected { reason, .. } = ev {
        ensure!(reason.contains("slow consumer"), "disconnect reason does not say slow consumer: {reason}");
    }
    // The others still get everything, in order.
    server.broadcast(&cx.data(1_000_000))?;
    for rx in &seen {
        let got = future::or(async { rx.recv().await.ok() }, async {
            async_io::Timer::after(SOON).await;
            None
        })
        .await;
        ensure!(got == Some(1_000_000), "a reading client missed a message after the disconnect: {got:?}");
    }
    ensure!(server.client_count() == 2, "server serves {} clients, expected 2", server.client_count());
    cx.stop(&server).await?;
    Ok(())
}

async fn welcome_is_first_frame(cx: &Ctx) -> CaseResult {
    let server = cx.started(|o| o.retain_last = true).await?;
    for i in 0..3 {
        server.broadcast(&cx.data(i))?;
    }
    let mut raw = cx.raw().await?;
    let hello = control(&cx.event(), &Control::Hello { protocol: 1, client_name: None });
    raw.send_msg(&hello).await?;
    match raw.next(SOON).await? {
        RawEvent::Message(m) => match Control::parse(&m) {
            Some(Ok(Control::Welcome { protocol, client_id, allow_client_send, event_name, server: name, relay })) => {
                ensure!(protocol == 1, "welcome protocol {protocol}");
                ensure!(client_id.parse::<ClientId>().is_ok(), "welcome client_id {client_id:?}");
                ensure!(allow_client_send, "welcome says no client send");
                ensure!(event_name == "conformance", "welcome event_name {event_name}");
                ensure!(!name.is_empty(), "welcome has no server name");
                ensure!(!relay, "welcome says relay on a server started without it");
            }
            _ => return Err(Failure::new(format!("first frame is not welcome: {m:?}"))),
        },
        other => return Err(Failure::new(format!("no welcome: {other:?}"))),
    }
    for i in 0..3 {
        match raw.next(SOON).await? {
            RawEvent::Message(m) if num(&m) == Some(i) => {}
            other => return Err(Failure::new(format!("expected queued message {i}, got {other:?}"))),
        }
    }
    match raw.next(QUIET).await? {
        RawEvent::Timeout => {}
        other => return Err(Failure::new(format!("unexpected frame after the replay: {other:?}"))),
    }
    // A handshaken client gets `shutdown` before end-of-stream.
    cx.stop(&server).await?;
    match raw.next(SOON).await? {
        RawEvent::Message(m) if matches!(Control::parse(&m), Some(Ok(Control::Shutdown { .. }))) => {}
        other => return Err(Failure::new(format!("expected shutdown, got {other:?}"))),
    }
    raw.expect_eof("after shutdown").await
}

async fn legacy_client_served(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let events = server.events();
    let mut raw = cx.raw().await?;
    // Broadcast during the grace period: it waits in the client's queue.
    server.broadcast(&cx.data(1))?;
    match raw.next(SOON).await? {
        RawEvent::Message(m) if num(&m) == Some(1) => {}
        other => return Err(Failure::new(format!("legacy client: expected message 1 first, got {other:?}"))),
    }
    let ev = expect_event(&events, SOON, "legacy client connected", |e| matches!(e, ServerEvent::Connected(_))).await?;
    ensure!(
        matches!(&ev, ServerEvent::Connected(info) if !info.handshaken),
        "legacy client reported handshaken: {ev:?}"
    );
    // It may send (legacy path), and it is never closed for silence.
    raw.send_msg(&cx.data(2)).await?;
    expect_event(
        &events,
        SOON,
        "message from the legacy client",
        |e| matches!(e, ServerEvent::Message { message, .. } if num(message) == Some(2)),
    )
    .await?;
    server.broadcast(&cx.data(3))?;
    match raw.next(SOON).await? {
        RawEvent::Message(m) if num(&m) == Some(3) => {}
        other => return Err(Failure::new(format!("legacy client: expected message 3, got {other:?}"))),
    }
    // No shutdown frame for a legacy client, just end-of-stream.
    cx.stop(&server).await?;
    raw.expect_eof("legacy client after stop").await
}

async fn ping_answered_with_pong(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let events = server.events();
    let mut raw = cx.raw().await?;
    raw.hello().await?;
    raw.send_msg(&control(&cx.event(), &Control::Ping { nonce: 77 })).await?;
    match raw.next(SOON).await? {
        RawEvent::Message(m) if Control::parse(&m) == Some(Ok(Control::Pong { nonce: 77 })) => {}
        other => return Err(Failure::new(format!("expected pong 77, got {other:?}"))),
    }
    let seen = expect_event(&events, QUIET, "", |e| matches!(e, ServerEvent::Message { .. })).await;
    ensure!(seen.is_err(), "protocol control reached the application: {seen:?}");
    cx.stop(&server).await?;
    Ok(())
}

async fn malformed_frame_keeps_connection(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let events = server.events();
    let good = cx.connect().await?;
    let mut raw = cx.raw().await?;
    let raw_id: ClientId = raw.hello().await?.parse()?;
    raw.send_bytes(&[0, 0, 0, 1, 0xc1]).await?;
    raw.expect_error(ErrorCode::Malformed).await?;
    raw.send_msg(&cx.data(9)).await?;
    expect_event(
        &events,
        SOON,
        "message after the malformed frame",
        |e| matches!(e, ServerEvent::Message { from, message } if *from == raw_id && num(message) == Some(9)),
    )
    .await?;
    server.broadcast(&cx.data(10))?;
    cx.expect_n(&good, 10).await?;
    match raw.next(SOON).await? {
        RawEvent::Message(m) if num(&m) == Some(10) => {}
        other => return Err(Failure::new(format!("raw client not served after a malformed frame: {other:?}"))),
    }
    ensure!(server.stats().malformed == 1, "malformed count {}", server.stats().malformed);
    cx.stop(&server).await?;
    Ok(())
}

async fn bad_frame_headers_close_connection(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let good = cx.connect().await?;
    let mut zero = cx.raw().await?;
    zero.send_bytes(&[0, 0, 0, 0]).await?;
    zero.expect_error(ErrorCode::Protocol).await?;
    zero.expect_eof("after a zero-length frame").await?;
    let mut http = cx.raw().await?;
    http.send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await?;
    http.expect_error(ErrorCode::MessageTooLarge).await?;
    http.expect_eof("after an HTTP request").await?;
    server.broadcast(&cx.data(1))?;
    cx.expect_n(&good, 1).await?;
    cx.stop(&server).await?;
    Ok(())
}

async fn unfinished_frame_closes_connection(cx: &Ctx) -> CaseResult {
    let server = cx.started(|o| o.frame_timeout = Duration::from_millis(300)).await?;
    let mut raw = cx.raw().await?;
    raw.hello().await?;
    let t0 = Instant::now();
    raw.send_bytes(&[0, 0, 0, 100, 0x85, 0xa1]).await?;
    raw.expect_error(ErrorCode::Protocol).await?;
    raw.expect_eof("after the frame deadline").await?;
    let took = t0.elapsed();
    ensure!(took >= Duration::from_millis(250), "closed before the frame deadline ({took:?})");
    ensure!(took < Duration::from_secs(3), "closed long after the frame deadline ({took:?})");
    // A silent client is never closed.
    let mut silent = cx.raw().await?;
    match silent.next(Duration::from_millis(600)).await? {
        RawEvent::Timeout => {}
        other => return Err(Failure::new(format!("silent client got {other:?}"))),
    }
    cx.stop(&server).await?;
    Ok(())
}

async fn blocking_mode_start(cx: &Ctx) -> CaseResult {
    let server = cx.server(|o| o.blocking_mode = true)?;
    match cx.mode() {
        Mode::Async => {
            // The async start never blocks, whatever blocking_mode says.
            future::or(async { server.start_async().await.map_err(Failure::from) }, async {
                async_io::Timer::after(SOON).await;
                Err(Failure::new("start_async blocked in blocking_mode"))
            })
            .await?;
            let client = cx.connect().await?;
            let waiter = server.clone();
            let stopped = socket_core::runtime::spawn(async move { waiter.wait_stopped().await });
            cx.stop(&server).await?;
            future::or(
                async {
                    stopped.await;
                    Some(())
                },
                async {
                    async_io::Timer::after(SOON).await;
                    None
                },
            )
            .await
            .ok_or_else(|| Failure::new("wait_stopped did not return after stop"))?;
            drop(client);
        }
        Mode::Blocking => {
            let runner = server.clone();
            let (tx, rx) = async_channel::bounded(1);
            std::thread::spawn(move || {
                let r = runner.start();
                let _ = tx.send_blocking(r);
            });
            // Connect (waiting for the server to come up) proves it runs; start() must not return meanwhile.
            let mut o = cx.client_options()?;
            o.wait_for_server = true;
            o.wait_timeout = Some(SOON);
            let connecting = socket_core::runtime::spawn(Client::connect_with_async(
                cx.h.transport.clone(),
                cx.event(),
                cx.config(),
                o,
            ));
            let client = future::or(async { connecting.await.map_err(Failure::from) }, async {
                let r = rx.recv().await;
                Err(Failure::new(format!("start() returned while the server should run: {r:?}")))
            })
            .await?;
            server.stop()?;
            let t0 = Instant::now();
            let r = rx.recv_blocking().map_err(|_| Failure::new("start thread died"))?;
            r?;
            ensure!(t0.elapsed() < Duration::from_secs(1), "blocking start() returned {:?} after stop", t0.elapsed());
            drop(client);
        }
    }
    Ok(())
}

async fn stream_and_iterator_end_with_reason(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let client = cx.connect_with(|o| o.auto_reconnect = false).await??;
    for i in 0..3 {
        server.broadcast(&cx.data(i))?;
    }
    // Wait for all three to be buffered, then stop: they must still be delivered.
    cx.expect_n(&client, 0).await?;
    cx.stop(&server).await?;
    let rest: Vec<socket_core::Result<SocketMessage>> = match cx.mode() {
        Mode::Async => {
            use futures_lite::StreamExt;
            let stream = client.stream();
            future::or(async { Some(stream.collect::<Vec<_>>().await) }, async {
                async_io::Timer::after(SOON).await;
                None
            })
            .await
            .ok_or_else(|| Failure::new("stream did not end after the server stopped"))?
        }
        Mode::Blocking => client.iter().collect(),
    };
    ensure!(rest.len() == 3, "expected 2 messages then the end, got {} items", rest.len());
    for (i, item) in rest.iter().take(2).enumerate() {
        ensure!(
            matches!(item, Ok(m) if num(m) == Some(i as u64 + 1)),
            "item {i}: expected message {}, got {item:?}",
            i + 1
        );
    }
    match &rest[2] {
        Err(e) if e.kind() == ErrorKind::Closed && e.to_string().contains("shut down") => Ok(()),
        other => Err(Failure::new(format!("stream must end with Closed and the reason, got {other:?}"))),
    }
}

async fn legacy_server_mode(cx: &Ctx) -> CaseResult {
    // Our server stands in for a legacy one: the client sends no hello and expects no welcome.
    let server = cx.started(|o| o.allow_client_send = false).await?;
    let events = server.events();
    let client = cx.connect_with(|o| o.legacy_server = true).await??;
    ensure!(client.client_id().is_none(), "a legacy-mode client got an id without welcome");
    ensure!(client.is_connected(), "legacy-mode client not connected");
    let ev =
        expect_event(&events, SOON, "legacy-mode client connected", |e| matches!(e, ServerEvent::Connected(_))).await?;
    ensure!(matches!(&ev, ServerEvent::Connected(i) if !i.handshaken), "legacy-mode client sent hello: {ev:?}");
    server.broadcast(&cx.data(1))?;
    cx.expect_n(&client, 1).await?;
    // Without welcome the client learns the rule from the server's ERROR.
    ensure!(client.can_send(), "legacy-mode client should try sending");
    cx.send(&client, &cx.data(2)).await?;
    let err = cx.expect_message(&client, "send_not_allowed ERROR").await?;
    ensure!(
        matches!(ErrorCode::parse(&err), Some((ErrorCode::SendNotAllowed, _))),
        "expected the send_not_allowed ERROR as a message, got {err:?}"
    );
    ensure!(!client.can_send(), "client still thinks it can send after send_not_allowed");
    match cx.send(&client, &cx.data(3)).await {
        Err(e) if e.kind() == ErrorKind::SendNotAllowed => {}
        other => return Err(Failure::new(format!("send after send_not_allowed: {other:?}"))),
    }
    cx.stop(&server).await?;
    Ok(())
}

async fn receive_only_client(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let client = cx.connect_with(|o| o.receive_only = true).await??;
    ensure!(!client.can_send(), "receive-only client says it can send");
    match cx.send(&client, &cx.data(1)).await {
        Err(e) if e.kind() == ErrorKind::SendNotAllowed => {
            ensure!(e.to_string().contains("receive-only"), "error does not explain: {e}");
        }
        other => return Err(Failure::new(format!("receive-only send: expected SendNotAllowed, got {other:?}"))),
    }
    server.broadcast(&cx.data(2))?;
    cx.expect_n(&client, 2).await?;
    cx.stop(&server).await?;
    Ok(())
}

async fn connect_errors_and_wait_for_server(cx: &Ctx) -> CaseResult {
    // No server: a clear Connection error at once.
    let t0 = Instant::now();
    match cx.connect_with(|_| {}).await? {
        Err(e) if e.kind() == ErrorKind::Connection => {
            let text = e.to_string();
            ensure!(text.contains("no server for event conformance"), "unclear no-server error: {text}");
        }
        other => return Err(Failure::new(format!("connect without a server: {other:?}"))),
    }
    ensure!(t0.elapsed() < Duration::from_secs(2), "no-server error took {:?}", t0.elapsed());
    // Waiting, bounded: a Timeout error.
    match cx
        .connect_with(|o| {
            o.wait_for_server = true;
            o.wait_timeout = Some(Duration::from_millis(300));
        })
        .await?
    {
        Err(e) if e.kind() == ErrorKind::Timeout => {}
        other => return Err(Failure::new(format!("bounded wait without a server: {other:?}"))),
    }
    // Waiting for a server that comes up later.
    let mut o = cx.client_options()?;
    o.wait_for_server = true;
    o.wait_timeout = Some(Duration::from_secs(10));
    let (t, e, c) = (cx.h.transport.clone(), cx.event(), cx.config());
    let waiting: Pin<Box<dyn Future<Output = socket_core::Result<Client>> + Send>> = match cx.mode() {
        Mode::Async => Box::pin(socket_core::runtime::spawn(Client::connect_with_async(t, e, c, o))),
        Mode::Blocking => {
            let (tx, rx) = async_channel::bounded(1);
            std::thread::spawn(move || {
                let _ = tx.send_blocking(Client::connect_with(t, e, c, o));
            });
            Box::pin(async move {
                rx.recv()
                    .await
                    .unwrap_or_else(|_| Err(socket_core::Error::new(ErrorKind::Connection, "connect thread died")))
            })
        }
    };
    let server = cx.started(|_| {}).await?;
    let client = future::or(waiting, async {
        async_io::Timer::after(SOON).await;
        Err(socket_core::Error::new(ErrorKind::Timeout, "the waiting client did not connect"))
    })
    .await?;
    server.broadcast(&cx.data(1))?;
    cx.expect_n(&client, 1).await?;
    cx.stop(&server).await?;
    Ok(())
}

async fn write_stall_disconnects(cx: &Ctx) -> CaseResult {
    // Queues large enough that only the stall deadline can act.
    let server = cx
        .started(|o| {
            o.write_stall_timeout = Duration::from_millis(300);
            o.outbound_queue_bytes = 256 << 20;
        })
        .await?;
    let events = server.events();
    let _frozen = cx.raw().await?;
    let id =
        match expect_event(&events, SOON, "raw client connected", |e| matches!(e, ServerEvent::Connected(_))).await? {
            ServerEvent::Connected(info) => info.id,
            _ => return Err(Failure::new("not a Connected event")),
        };
    let blob = "x".repeat(900_000);
    let t0 = Instant::now();
    // 18 MB: more than socket buffers hold (loopback TCP autotunes to about 10 MB): the writer stalls.
    for n in 0..20 {
        server.broadcast(&SocketMessage::data(cx.event(), Data::new().with("n", n).with("blob", blob.as_str())))?;
    }
    let ev = expect_event(
        &events,
        Duration::from_secs(10),
        "stalled client disconnected",
        |e| matches!(e, ServerEvent::Disconnected { id: d, .. } if *d == id),
    )
    .await?;
    ensure!(
        matches!(&ev, ServerEvent::Disconnected { reason, .. } if reason.contains("slow consumer")),
        "reason: {ev:?}"
    );
    ensure!(t0.elapsed() >= Duration::from_millis(250), "disconnected before the stall deadline");
    ensure!(server.stats().slow_consumers == 1, "stall not counted: {:?}", server.stats());
    cx.stop(&server).await?;
    Ok(())
}

async fn inbound_backpressure(cx: &Ctx) -> CaseResult {
    const N: u64 = 500;
    let server = cx.started(|o| o.inbound_queue_size = 4).await?;
    let events = server.events();
    let sender = cx.connect().await?;
    let listener = cx.connect().await?;
    // The application does not read events yet: the sender is pushed back, nothing is lost.
    let sending: Pin<Box<dyn Future<Output = socket_core::Result<()>> + Send>> = match cx.mode() {
        Mode::Async => {
            let (c, event) = (sender.clone(), cx.event());
            Box::pin(socket_core::runtime::spawn(async move {
                for n in 0..N {
                    c.send_async(&SocketMessage::data(event.clone(), Data::new().with("n", n))).await?;
                }
                Ok(())
            }))
        }
        Mode::Blocking => {
            let (c, event) = (sender.clone(), cx.event());
            let (tx, rx) = async_channel::bounded(1);
            std::thread::spawn(move || {
                let r = (0..N).try_for_each(|n| c.send(&SocketMessage::data(event.clone(), Data::new().with("n", n))));
                let _ = tx.send_blocking(r);
            });
            Box::pin(async move { rx.recv().await.unwrap_or(Ok(())) })
        }
    };
    // Other clients are unaffected meanwhile.
    for n in 0..20 {
        server.broadcast(&cx.data(10_000 + n))?;
        cx.expect_n(&listener, 10_000 + n).await?;
    }
    let mut next = 0;
    while next < N {
        let ev = expect_event(&events, SOON, "sent messages", |e| matches!(e, ServerEvent::Message { .. })).await?;
        if let ServerEvent::Message { message, .. } = ev {
            ensure!(num(&message) == Some(next), "got {:?}, expected {next}", num(&message));
            next += 1;
        }
    }
    future::or(sending, async {
        async_io::Timer::after(SOON).await;
        Err(socket_core::Error::new(ErrorKind::Timeout, "sender did not finish"))
    })
    .await?;
    ensure!(server.stats().slow_consumers == 0, "back-pressure disconnected someone: {:?}", server.stats());
    cx.stop(&server).await?;
    Ok(())
}

async fn hello_with_wrong_protocol_refused(cx: &Ctx) -> CaseResult {
    let server = cx.started(|_| {}).await?;
    let mut raw = cx.raw().await?;
    raw.send_msg(&control(&cx.event(), &Control::Hello { protocol: 99, client_name: None })).await?;
    raw.expect_error(ErrorCode::Protocol).await?;
    raw.expect_eof("after an unsupported protocol version").await?;
    cx.stop(&server).await?;
    Ok(())
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
