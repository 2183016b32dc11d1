//! Regression tests named after the defects of the Python origin (ORIGIN.md),
//! on the memory transport.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_lite::AsyncWriteExt;
use socket_core::transport::{Connection, Endpoint, Listener};
use socket_core::{
    Client, ClientId, ClientOptions, Config, ConnectionState, Data, ErrorKind, EventName, Server, ServerEvent,
    ServerOptions, SocketMessage, Transport,
};
use socket_tests::conformance::{self, Mode};
use socket_tests::memory::{self, MemoryTransport};

use crate::suite::{harness, memory_config};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Runs `f` on its own thread and fails the test if it takes longer than `secs`.
fn watchdog(secs: u64, f: impl FnOnce() -> TestResult + Send + 'static) -> TestResult {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(r) => r,
        Err(_) => Err(format!("watchdog: the test did not finish within {secs} s").into()),
    }
}

fn event() -> EventName {
    EventName::new("origin").expect("valid event name")
}

fn data(n: u64) -> SocketMessage {
    SocketMessage::data(event(), Data::new().with("n", n))
}

fn num(m: &SocketMessage) -> Option<u64> {
    m.data.get("n").and_then(|v| v.as_u64())
}

struct Setup {
    transport: Arc<dyn Transport>,
    config: Config,
}

impl Setup {
    fn new() -> Self {
        Setup { transport: Arc::new(MemoryTransport::new()), config: memory_config() }
    }

    fn server(&self, f: impl FnOnce(&mut ServerOptions)) -> Result<Server, socket_core::Error> {
        let mut o = ServerOptions::from_config(&self.config, self.transport.as_ref())?;
        f(&mut o);
        let s = Server::with_options(self.transport.clone(), event(), self.config.clone(), o)?;
        s.start()?;
        Ok(s)
    }

    fn client(&self, f: impl FnOnce(&mut ClientOptions)) -> Result<Client, socket_core::Error> {
        let mut o = ClientOptions::from_config(&self.config)?;
        o.reconnect_initial_delay = Duration::from_millis(20);
        o.reconnect_max_delay = Duration::from_millis(200);
        f(&mut o);
        Client::connect_with(self.transport.clone(), event(), self.config.clone(), o)
    }

    fn raw(&self) -> Result<Connection, socket_core::Error> {
        let ep = self.transport.endpoints(&event(), &self.config)?.remove(0);
        socket_core::runtime::block_on(self.transport.connect(&ep, &self.config))
    }
}

fn expect_n(c: &Client, n: u64) -> TestResult {
    let m = c.receive(Some(Duration::from_secs(5)))?.ok_or_else(|| format!("no message n = {n}"))?;
    if num(&m) != Some(n) {
        return Err(format!("expected n = {n}, got {:?}", num(&m)).into());
    }
    Ok(())
}

#[test]
fn origin_defect_01_no_deadlock_on_write_error() -> TestResult {
    watchdog(30, || {
        let s = Setup::new();
        let server = s.server(|_| {})?;
        let keep: Vec<Client> = (0..3).map(|_| s.client(|_| {})).collect::<Result<_, _>>()?;
        let mut doomed: Vec<Connection> = (0..3).map(|_| s.raw()).collect::<Result<_, _>>()?;
        let mut slowest = Duration::ZERO;
        for n in 0..300 {
            if n % 100 == 50 {
                // A peer vanishes in the middle of the broadcasts: the server's writes to it fail.
                drop(doomed.pop());
            }
            let t0 = Instant::now();
            server.broadcast(&data(n))?;
            let _ = server.clients();
            slowest = slowest.max(t0.elapsed());
        }
        // Generous for loaded CI machines; the origin blocked forever.
        if slowest > Duration::from_millis(500) {
            return Err(format!("a broadcast took {slowest:?}").into());
        }
        for c in &keep {
            for n in 0..300 {
                expect_n(c, n)?;
            }
        }
        server.stop()?;
        Ok(())
    })
}

#[test]
fn origin_defect_02_slow_consumer_does_not_freeze_server() -> TestResult {
    conformance::run_case(&harness(Mode::Blocking), "slow_consumer_disconnected")?;
    watchdog(30, || {
        let s = Setup::new();
        let server = s.server(|o| o.outbound_queue_size = 64)?;
        // A legacy peer that never reads a byte.
        let _frozen = s.raw()?;
        let reader = s.client(|_| {})?;
        let mut slowest = Duration::ZERO;
        let mut n = 0;
        while server.stats().slow_consumers == 0 {
            if n > 100_000 {
                return Err("the frozen client was never disconnected".into());
            }
            for _ in 0..50 {
                let t0 = Instant::now();
                server
                    .broadcast(&SocketMessage::data(event(), Data::new().with("n", n).with("pad", "x".repeat(512))))?;
                slowest = slowest.max(t0.elapsed());
                n += 1;
            }
            for k in n - 50..n {
                expect_n(&reader, k)?;
            }
        }
        if slowest > Duration::from_millis(500) {
            return Err(format!("a broadcast blocked for {slowest:?}").into());
        }
        server.stop()?;
        Ok(())
    })
}

#[test]
fn origin_defect_03_stop_disconnects_clients_and_frees_address() -> TestResult {
    watchdog(30, || {
        let s = Setup::new();
        let server = s.server(|_| {})?;
        let clients: Vec<Client> = (0..10).map(|_| s.client(|o| o.auto_reconnect = false)).collect::<Result<_, _>>()?;
        let t0 = Instant::now();
        server.stop()?;
        if t0.elapsed() > Duration::from_secs(1) {
            return Err(format!("stop took {:?}", t0.elapsed()).into());
        }
        for c in &clients {
            match c.receive(Some(Duration::from_secs(1))) {
                Err(e) if e.kind() == ErrorKind::Closed => {}
                other => return Err(format!("client did not see end-of-stream: {other:?}").into()),
            }
        }
        if t0.elapsed() > Duration::from_millis(1500) {
            return Err(format!("end-of-stream seen only after {:?}", t0.elapsed()).into());
        }
        // No more accepts, and the address can be bound again at once.
        match s.client(|o| o.auto_reconnect = false) {
            Err(e) if e.kind() == ErrorKind::Connection => {}
            other => return Err(format!("connect to a stopped server: {other:?}").into()),
        }
        let again = s.server(|_| {})?;
        again.stop()?;
        Ok(())
    })
}

#[test]
fn origin_defect_04_client_notices_dead_server() -> TestResult {
    watchdog(30, || {
        let s = Setup::new();
        let server = s.server(|_| {})?;
        let client = s.client(|_| {})?;
        let changes = client.state_changes();
        drop(server);
        let t0 = Instant::now();
        while changes.recv_blocking().map_err(|e| e.to_string())? != ConnectionState::Reconnecting {}
        if t0.elapsed() > Duration::from_secs(1) {
            return Err(format!("client noticed the dead server only after {:?}", t0.elapsed()).into());
        }
        if client.is_connected() {
            return Err("is_connected() still true".into());
        }
        // A receive loop waits instead of spinning.
        let t0 = Instant::now();
        let mut loops = 0;
        while t0.elapsed() < Duration::from_millis(300) {
            if client.receive(Some(Duration::from_millis(50)))?.is_some() {
                return Err("message from a dead server".into());
            }
            loops += 1;
        }
        if loops > 8 {
            return Err(format!("receive returned {loops} times in 300 ms: it spins").into());
        }
        Ok(())
    })
}

/// Counts connection attempts of the wrapped transport.
#[derive(Debug)]
struct Counting {
    inner: MemoryTransport,
    connects: Arc<AtomicUsize>,
}

#[async_trait]
impl Transport for Counting {
    fn scheme(&self) -> &str {
        "memory"
    }
    async fn bind(&self, event: &EventName, config: &Config) -> socket_core::Result<Box<dyn Listener>> {
        self.inner.bind(event, config).await
    }
    fn endpoints(&self, event: &EventName, config: &Config) -> socket_core::Result<Vec<Endpoint>> {
        self.inner.endpoints(event, config)
    }
    async fn connect(&self, endpoint: &Endpoint, config: &Config) -> socket_core::Result<Connection> {
        self.connects.fetch_add(1, Ordering::Relaxed);
        self.inner.connect(endpoint, config).await
    }
}

#[test]
fn origin_defect_05_reconnect_works_with_backoff() -> TestResult {
    watchdog(30, || {
        let connects = Arc::new(AtomicUsize::new(0));
        let s = Setup {
            transport: Arc::new(Counting { inner: MemoryTransport::new(), connects: connects.clone() }),
            config: memory_config(),
        };
        let server = s.server(|_| {})?;
        let client = s.client(|o| {
            o.reconnect_initial_delay = Duration::from_millis(50);
            o.reconnect_max_delay = Duration::from_millis(200);
        })?;
        let changes = client.state_changes();
        server.stop()?;
        let before = connects.load(Ordering::Relaxed);
        // Time itself is under test here: count the attempts made in one second.
        std::thread::sleep(Duration::from_secs(1));
        let attempts = connects.load(Ordering::Relaxed) - before;
        // Delays are drawn from [50 ms, min(50 ms * 2^k, 200 ms)]: between 5 and 20 fit in a second.
        if !(3..=20).contains(&attempts) {
            return Err(format!("{attempts} reconnect attempts in 1 s: backoff not applied").into());
        }
        if client.state() != ConnectionState::Reconnecting {
            return Err(format!("state {:?} while the server is down", client.state()).into());
        }
        let server = s.server(|_| {})?;
        let t0 = Instant::now();
        while changes.recv_blocking().map_err(|e| e.to_string())? != ConnectionState::Connected {}
        if t0.elapsed() > Duration::from_secs(1) {
            return Err(format!("reconnected only after {:?}", t0.elapsed()).into());
        }
        server.broadcast(&data(1))?;
        expect_n(&client, 1)?;
        // Retries are bounded when asked, and the client then closes with a reason.
        let bounded = s.client(|o| o.reconnect_max_retries = Some(2))?;
        server.stop()?;
        match bounded.receive(Some(Duration::from_secs(5))) {
            Err(e) if e.kind() == ErrorKind::Closed && e.to_string().contains("gave up") => {}
            other => return Err(format!("bounded retries: expected Closed with 'gave up', got {other:?}").into()),
        }
        Ok(())
    })
}

#[test]
fn origin_defect_06_no_desync_after_receive_timeout() -> TestResult {
    watchdog(30, || {
        let mut s = Setup::new();
        // Tiny pipes: every frame arrives in many pieces.
        memory::set_option(&mut s.config, "pipe_capacity", 1024);
        let server = s.server(|_| {})?;
        let client = s.client(|o| o.receive_buffer_size = 2)?;
        let sent: Vec<SocketMessage> = (0..40)
            .map(|n| SocketMessage::data(event(), Data::new().with("n", n).with("blob", vec![n as u8; 20_000])))
            .collect();
        for m in &sent {
            server.broadcast(m)?;
        }
        // Phase 1: a burst, received with short timeouts while frames arrive in pieces.
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while got.len() < sent.len() && Instant::now() < deadline {
            if let Some(m) = client.receive(Some(Duration::from_micros(200)))? {
                got.push(m);
            }
        }
        if got != sent {
            return Err(format!("burst: received {} of {} messages intact", got.len(), sent.len()).into());
        }
        // Phase 2: one message at a time, each preceded by a receive that must
        // time out (nothing is in flight), so timeouts are certainly exercised.
        let mut got = Vec::new();
        for m in &sent {
            if client.receive(Some(Duration::from_micros(200)))?.is_some() {
                return Err("a message arrived that was never sent".into());
            }
            server.broadcast(m)?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match client.receive(Some(Duration::from_micros(200)))? {
                    Some(r) => break got.push(r),
                    None if Instant::now() < deadline => {}
                    None => return Err(format!("paced: message {} not received", got.len()).into()),
                }
            }
        }
        if got != sent {
            return Err(format!("paced: received {} of {} messages intact", got.len(), sent.len()).into());
        }
        server.stop()?;
        Ok(())
    })
}

#[test]
fn origin_defect_07_client_ids_unique() -> TestResult {
    watchdog(30, || {
        let s = Setup::new();
        let server = s.server(|_| {})?;
        let clients: Vec<Client> = (0..5).map(|_| s.client(|_| {})).collect::<Result<_, _>>()?;
        let ids: HashSet<String> = clients.iter().filter_map(Client::client_id).collect();
        if ids.len() != 5 {
            return Err(format!("5 fast connects gave {} distinct ids", ids.len()).into());
        }
        // Never reused: a client connecting after others left gets a new id.
        let max = ids.iter().filter_map(|i| i.parse::<ClientId>().ok()).max().ok_or("no ids")?;
        drop(clients);
        let late = s.client(|_| {})?;
        let id: ClientId = late.client_id().ok_or("no id")?.parse()?;
        if id <= max || ids.contains(&id.to_string()) {
            return Err(format!("id {id} reused (largest earlier id {max})").into());
        }
        server.stop()?;
        Ok(())
    })?;
    conformance::run_case(&harness(Mode::Blocking), "client_ids_unique_under_burst")?;
    Ok(())
}

#[test]
fn origin_defect_08_queue_drains_once_and_unknown_unicast_fails() -> TestResult {
    watchdog(30, || {
        let s = Setup::new();
        let server = s.server(|_| {})?;
        for n in 0..10_000 {
            server.broadcast(&data(n))?;
        }
        let st = server.stats();
        if server.queue_len() != 100 || st.dropped != 9_900 || st.queued != 10_000 {
            return Err(format!("queue {} stats {st:?}: expected 100 kept, 9900 dropped", server.queue_len()).into());
        }
        let first = s.client(|_| {})?;
        for n in 9_900..10_000 {
            expect_n(&first, n)?;
        }
        let second = s.client(|_| {})?;
        if second.receive(Some(Duration::from_millis(300)))?.is_some() {
            return Err("the offline queue was replayed to a second client".into());
        }
        match server.send_to(ClientId(424_242), &data(1)) {
            Err(e) if e.kind() == ErrorKind::Validation => {}
            other => return Err(format!("unicast to an unknown id: {other:?}").into()),
        }
        if server.queue_len() != 0 {
            return Err("unicast to an unknown id was queued".into());
        }
        server.stop()?;
        Ok(())
    })
}

#[test]
fn origin_defect_09_replay_and_live_never_interleave() -> TestResult {
    const LAST: u64 = 3_000;
    /// Reads until LAST, checking that the stream is gap-free from its first message.
    fn check(c: Client, first_must_be_zero: bool) -> std::thread::JoinHandle<Result<(), String>> {
        std::thread::spawn(move || {
            let mut prev: Option<u64> = None;
            loop {
                let m = c.receive(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?.ok_or("client stalled")?;
                let n = num(&m).ok_or_else(|| format!("unexpected message {m:?}"))?;
                if first_must_be_zero && prev.is_none() && n != 0 {
                    return Err(format!("first client did not start with the replayed queue (got {n})"));
                }
                if prev.is_some_and(|p| n != p + 1) {
                    return Err(format!("{n} after {prev:?}"));
                }
                prev = Some(n);
                if n == LAST {
                    return Ok(());
                }
            }
        })
    }
    watchdog(30, || {
        let s = Setup::new();
        // Queues large enough for the whole burst: this test is about order, not slow consumers.
        let server = s.server(|o| {
            o.message_queue_size = 50;
            o.outbound_queue_size = 4096;
        })?;
        for n in 0..50 {
            server.broadcast(&data(n))?;
        }
        // The first client gets the queue; the others join while the publisher runs.
        let mut readers = vec![check(s.client(|_| {})?, true)];
        let publisher = {
            let server = server.clone();
            std::thread::spawn(move || -> Result<(), socket_core::Error> {
                for n in 50..LAST {
                    server.broadcast(&data(n))?;
                    if n % 32 == 0 {
                        std::thread::yield_now();
                    }
                }
                Ok(())
            })
        };
        for _ in 0..3 {
            readers.push(check(s.client(|_| {})?, false));
        }
        publisher.join().map_err(|_| "publisher panicked")??;
        // Every client is registered by now: this one reaches them all.
        server.broadcast(&data(LAST))?;
        for (i, r) in readers.into_iter().enumerate() {
            r.join().map_err(|_| "reader panicked")?.map_err(|e| format!("client {i}: {e}"))?;
        }
        if server.stats().slow_consumers != 0 {
            return Err("a reading client was disconnected".into());
        }
        server.stop()?;
        Ok(())
    })
}

#[test]
fn origin_defect_10_flags_enforced() -> TestResult {
    watchdog(30, || {
        let s = Setup::new();
        let server = s.server(|o| {
            o.allow_client_send = false;
            o.max_connections = 1;
        })?;
        let events = server.events();
        let client = s.client(|_| {})?;
        match client.send(&data(1)) {
            Err(e) if e.kind() == ErrorKind::SendNotAllowed => {}
            other => return Err(format!("send with allow_client_send = false: {other:?}").into()),
        }
        match s.client(|o| o.auto_reconnect = false) {
            Err(e) if e.kind() == ErrorKind::MaxConnections => {}
            Ok(_) => return Err("a client over the limit reported success".into()),
            Err(e) => return Err(format!("over the limit: expected MaxConnections, got {e}").into()),
        }
        // A legacy sender's frame never reaches the application.
        drop(client);
        while !matches!(events.recv_blocking(), Ok(ServerEvent::Disconnected { .. })) {}
        let mut raw = s.raw()?;
        let frame = socket_core::codec::encode_frame(&data(2), 1 << 20)?;
        socket_core::runtime::block_on(async {
            raw.writer.write_all(frame.as_bytes()).await?;
            raw.writer.flush().await
        })?;
        let got = socket_core::runtime::block_on(socket_core::runtime::spawn(async move {
            futures_lite::future::or(
                async {
                    loop {
                        match events.recv().await {
                            Ok(ServerEvent::Message { .. }) => return true,
                            Ok(_) => {}
                            Err(_) => return false,
                        }
                    }
                },
                async {
                    async_io::Timer::after(Duration::from_millis(300)).await;
                    false
                },
            )
            .await
        }));
        if got {
            return Err("a refused message reached the application".into());
        }
        server.stop()?;
        Ok(())
    })?;
    conformance::run_case(&harness(Mode::Async), "client_send_not_allowed")?;
    conformance::run_case(&harness(Mode::Async), "max_connections")?;
    Ok(())
}

#[test]
fn origin_defect_16_no_thread_per_client_and_fast_stop() -> TestResult {
    watchdog(30, || {
        let s = Setup::new();
        let server = s.server(|o| o.max_connections = 60)?;
        let clients: Vec<Client> = (0..50).map(|_| s.client(|_| {})).collect::<Result<_, _>>()?;
        #[cfg(target_os = "linux")]
        {
            // Only the fixed runtime threads exist, whatever the number of clients.
            let mut engine_threads = 0;
            for entry in std::fs::read_dir("/proc/self/task")? {
                let comm = std::fs::read_to_string(entry?.path().join("comm")).unwrap_or_default();
                if comm.starts_with("socket-") {
                    engine_threads += 1;
                }
            }
            let expected = socket_core::runtime::worker_threads();
            if engine_threads != expected {
                return Err(format!("{engine_threads} engine threads for 50 clients, expected {expected}").into());
            }
        }
        let t0 = Instant::now();
        server.stop()?;
        if t0.elapsed() > Duration::from_secs(1) {
            return Err(format!("stop with 50 clients took {:?}", t0.elapsed()).into());
        }
        drop(clients);
        Ok(())
    })
}
