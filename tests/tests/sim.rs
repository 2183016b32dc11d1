//! RELIABILITY.md R5: seeded network faults between clients and a server.
//!
//! turmoil cannot drive these engines (they run on `socket-core`'s own
//! executor threads with `async-io` timers; see docs/reliability.md), so the
//! real engines run over [`FaultyTransport`], a transport plug-in whose
//! network holds, delays, splits and partitions on a seeded schedule. Each
//! seed runs one server, three clients and one fault schedule of about a
//! second; the waits inside the schedule are the time under test.
//!
//! What is asserted, per seed (see the `check_*` functions):
//!
//! - **Server to clients** (a numbered broadcast): each client receives
//!   strictly increasing numbers over its whole life (no duplicate, no
//!   reorder, within and across connections); gaps only where a connection
//!   was lost (at most one per reconnect). With `retain_last` (every third
//!   seed) a new connection may first repeat the newest number the client
//!   already has (SPEC.md §5: every new client gets the last broadcast), at
//!   most once per reconnect, never an older one. Every third seed (seed
//!   % 3 == 1) sends each number with `send_to` to every connected client
//!   instead of broadcasting it, so replies written directly by the caller
//!   (`server/outlet.rs`), split and held by the network, are checked the
//!   same way.
//! - **Clients to server** (each client sends its own numbered sequence): per
//!   connection (server-side client id), the numbers are contiguous and
//!   strictly increasing and all come from one client; per client, its
//!   connections carry disjoint, increasing ranges; no number is received
//!   twice.
//! - **Never stuck**: state changes only go Connected ⇄ Reconnecting, and
//!   Closed comes only after `disconnect()`; during a partition (connects
//!   refused) no client keeps reporting Connected on its reset connection;
//!   once the faults stop every client is Connected again and messages sent
//!   after the faults get through.
//!
//! Replay one seed: `SOCKET_SIM_SEED=7 cargo test -p socket-tests --test index sim::`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use async_io::Timer;
use futures_lite::{future, StreamExt};
use socket_core::runtime::{self, block_on};
use socket_core::{
    Client, ClientId, ClientOptions, Config, ConnectionState, Data, ErrorKind, EventName, Server, ServerEvent,
    SocketMessage, Transport,
};
use socket_tests::conformance::unique_name;
use socket_tests::faulty::{self, ChunkFaults, Fault, FaultyTransport, Schedule};

/// Seeds run per direction (1..=SEEDS), unless `SOCKET_SIM_SEED` names one.
const SEEDS: u64 = 20;
/// Seeds run at once.
const PARALLEL: usize = 4;
/// Watchdog: the longest wait for the next seed to finish.
const SEED_WATCHDOG: Duration = Duration::from_secs(40);
/// Clients per seed.
const CLIENTS: usize = 3;
/// The span of each fault schedule.
const FAULT_SPAN: Duration = Duration::from_millis(1000);
/// Time allowed for a client to leave Connected once a partition reset its connection.
const NOTICE: Duration = Duration::from_secs(3);
/// Time allowed, after the last fault, to be connected and delivering again.
const RECOVERY: Duration = Duration::from_secs(10);
/// Publishing and sending pace.
const TICK: Duration = Duration::from_millis(1);

type Outcome = Result<String, String>;

fn seeds() -> Vec<u64> {
    match std::env::var("SOCKET_SIM_SEED") {
        Ok(s) => vec![s.trim().parse().unwrap_or_else(|_| panic!("SOCKET_SIM_SEED={s:?} is not a number"))],
        Err(_) => (1..=SEEDS).collect(),
    }
}

/// Runs `scenario` for every seed, [`PARALLEL`] at a time, and fails with every failed seed.
fn run_seeds(name: &str, scenario: fn(u64) -> Outcome) {
    let seeds = seeds();
    let queue = Arc::new(Mutex::new(seeds.clone().into_iter()));
    let running = Arc::new(Mutex::new(Vec::<u64>::new()));
    let (tx, rx) = mpsc::channel();
    for _ in 0..PARALLEL.min(seeds.len()) {
        let (queue, running, tx) = (queue.clone(), running.clone(), tx.clone());
        std::thread::spawn(move || loop {
            let Some(seed) = queue.lock().unwrap_or_else(|e| e.into_inner()).next() else { break };
            running.lock().unwrap_or_else(|e| e.into_inner()).push(seed);
            let started = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| scenario(seed))).unwrap_or_else(|panic| {
                let text = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "panicked".to_owned());
                Err(format!("panicked: {text}"))
            });
            running.lock().unwrap_or_else(|e| e.into_inner()).retain(|s| *s != seed);
            if tx.send((seed, started.elapsed(), outcome)).is_err() {
                break;
            }
        });
    }
    drop(tx);
    let mut failures = Vec::new();
    for _ in &seeds {
        match rx.recv_timeout(SEED_WATCHDOG) {
            Ok((seed, took, Ok(summary))) => println!("{name} seed {seed} ({took:.1?}): {summary}"),
            Ok((seed, took, Err(why))) => failures.push(format!("seed {seed} ({took:.1?}): {why}")),
            Err(_) => {
                let hung = running.lock().unwrap_or_else(|e| e.into_inner()).clone();
                failures.push(format!(
                    "watchdog: no seed finished within {SEED_WATCHDOG:?}; still running: seeds {hung:?}"
                ));
                break;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {} seeds failed (replay one with SOCKET_SIM_SEED=N cargo test -p socket-tests --test index sim::):\n{}",
        failures.len(),
        seeds.len(),
        failures.join("\n")
    );
}

fn sim_config(retain_last: bool) -> Config {
    let mut config = Config::default();
    config.socket.transport = faulty::SCHEME.to_owned();
    faulty::set_option(&mut config, "namespace", unique_name("sim"));
    // Scaled down like the other reliability tests: one-second deadlines, fast reconnects.
    config.socket.reconnect_initial_delay = 0.01;
    config.socket.reconnect_max_delay = 0.1;
    config.socket.default_timeout = 1.0;
    config.socket.frame_timeout = 1.0;
    config.socket.write_stall_timeout = 1.0;
    config.socket.retain_last = retain_last;
    config
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Polls `cond` until it holds; an error naming `what` after `limit`.
async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Result<(), String> {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            return Err(format!("{what}: not reached within {limit:?}"));
        }
        Timer::after(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// Runs `fut` under a watchdog of `limit`.
async fn within<T>(what: &str, limit: Duration, fut: impl std::future::Future<Output = T>) -> Result<T, String> {
    future::or(async { Ok(fut.await) }, async {
        Timer::after(limit).await;
        Err(format!("{what}: not done within {limit:?}"))
    })
    .await
}

/// Plays `schedule` on `net`. A partition ends only once no client reports
/// Connected: connects are refused meanwhile, so Connected would mean a
/// client stuck on its reset connection.
async fn drive(net: &FaultyTransport, schedule: &Schedule, clients: &[Client]) -> Result<(), String> {
    for (i, step) in schedule.steps.iter().enumerate() {
        Timer::after(step.after).await;
        match step.fault {
            Fault::Hold => {
                net.hold();
                Timer::after(step.duration).await;
                net.release();
            }
            Fault::Partition => {
                net.partition();
                Timer::after(step.duration).await;
                let what =
                    format!("step {i} (partition): every client leaves Connected after its connection was reset");
                wait_for(&what, NOTICE, || {
                    clients.iter().all(|c| c.state() != ConnectionState::Connected && !c.is_connected())
                })
                .await?;
                net.heal();
            }
        }
    }
    Ok(())
}

fn connect(
    transport: &Arc<dyn Transport>,
    event: &EventName,
    config: &Config,
    k: usize,
) -> Result<(Client, async_channel::Receiver<ConnectionState>), String> {
    let mut options = ClientOptions::from_config(config).map_err(text)?;
    options.client_name = Some(format!("sim-{k}"));
    let client = Client::connect_with(transport.clone(), event.clone(), config.clone(), options)
        .map_err(|e| format!("client {k}: first connect failed: {e}"))?;
    let changes = client.state_changes();
    Ok((client, changes))
}

/// Checks the state changes of client `k` after `disconnect()`; returns its number of connections.
fn check_states(k: usize, changes: &async_channel::Receiver<ConnectionState>) -> Result<usize, String> {
    let seen: Vec<ConnectionState> = std::iter::from_fn(|| changes.try_recv().ok()).collect();
    let bad = || format!("client {k}: invalid state changes {seen:?}");
    use ConnectionState::*;
    if seen.first() != Some(&Connected) || seen.last() != Some(&Closed) {
        return Err(bad());
    }
    for pair in seen[..seen.len() - 1].windows(2) {
        match (pair[0], pair[1]) {
            (Connected, Reconnecting) | (Reconnecting, Connected) => {}
            // Closed before `disconnect()`, Connecting after the first connect, or a repeat.
            _ => return Err(bad()),
        }
    }
    Ok(seen.iter().filter(|s| **s == Connected).count())
}

/// Server to clients: invariants on the numbers one client received (see the module doc).
fn check_received(
    k: usize,
    seqs: &[u64],
    connections: usize,
    published: u64,
    retain_last: bool,
) -> Result<(usize, usize), String> {
    let reconnects = connections.saturating_sub(1);
    let (mut gaps, mut repeats) = (0usize, 0usize);
    let mut prev: Option<u64> = None;
    for (i, &n) in seqs.iter().enumerate() {
        if n >= published {
            return Err(format!("client {k}: received #{n}, never published (published {published})"));
        }
        match prev {
            Some(p) if n == p && retain_last => repeats += 1,
            Some(p) if n <= p => {
                return Err(format!(
                    "client {k}: received #{n} after #{p} (message {i}): {}",
                    if n == p { "duplicate delivery" } else { "order broken" }
                ))
            }
            Some(p) if n > p + 1 => gaps += 1,
            None if n > 0 => gaps += 1,
            _ => {}
        }
        prev = Some(n);
    }
    if repeats > reconnects {
        return Err(format!(
            "client {k}: {repeats} repeated numbers with only {reconnects} reconnects (retain_last gives one per new connection)"
        ));
    }
    if gaps > reconnects {
        return Err(format!(
            "client {k}: {gaps} gaps in its numbers but only {reconnects} reconnects: messages lost on a live connection"
        ));
    }
    Ok((gaps, repeats))
}

fn seq_message(event: &EventName, client: Option<usize>, n: u64) -> SocketMessage {
    let mut data = Data::new().with("seq", n);
    if let Some(k) = client {
        data.insert("client", k as u64);
    }
    SocketMessage::data(event.clone(), data)
}

fn seq_of(m: &SocketMessage, key: &str) -> Option<u64> {
    m.data.get(key).and_then(|v| v.as_u64())
}

/// One seed, server to clients: a numbered broadcast every tick under the fault schedule.
fn server_to_clients(seed: u64) -> Outcome {
    let schedule = Schedule::generate(seed, FAULT_SPAN);
    let result = server_to_clients_run(seed, &schedule);
    result.map_err(|e| format!("{e}\n  schedule {schedule}"))
}

fn server_to_clients_run(seed: u64, schedule: &Schedule) -> Outcome {
    let net = FaultyTransport::new(seed);
    let transport: Arc<dyn Transport> = Arc::new(net.clone());
    let retain_last = seed % 3 == 0;
    let unicast = seed % 3 == 1;
    let config = sim_config(retain_last);
    let event = EventName::new(unique_name("r5")).map_err(text)?;
    let server = Server::new(transport.clone(), event.clone(), &config).map_err(text)?;
    server.start().map_err(text)?;
    let mut clients = Vec::new();
    let mut changes = Vec::new();
    for k in 0..CLIENTS {
        let (c, ch) = connect(&transport, &event, &config, k)?;
        clients.push(c);
        changes.push(ch);
    }
    let logs: Vec<Arc<Mutex<Vec<u64>>>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let consumers: Vec<_> = clients
        .iter()
        .zip(&logs)
        .map(|(c, log)| {
            let (c, log) = (c.clone(), log.clone());
            runtime::spawn(async move {
                // Ends once the client is closed and its buffer drained.
                while let Ok(m) = c.receive_async(None).await {
                    if let Some(n) = m.as_ref().and_then(|m| seq_of(m, "seq")) {
                        log.lock().unwrap_or_else(|e| e.into_inner()).push(n);
                    }
                }
            })
        })
        .collect();
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = runtime::spawn({
        let (server, event, next, stop) = (server.clone(), event.clone(), next.clone(), stop.clone());
        async move {
            let mut ticks = Timer::interval(TICK);
            while !stop.load(Ordering::Acquire) {
                ticks.next().await;
                let n = next.load(Ordering::Acquire);
                let msg = seq_message(&event, None, n);
                if unicast {
                    for c in server.clients() {
                        match server.send_to(c.id, &msg) {
                            // Gone meanwhile, or dropped as a slow consumer: the client checks see it.
                            Ok(()) => {}
                            Err(e) if matches!(e.kind(), ErrorKind::Validation | ErrorKind::Connection) => {}
                            Err(e) => return Err(format!("send_to {} #{n}: {e}", c.id)),
                        }
                    }
                } else {
                    server.broadcast(&msg).map_err(|e| format!("broadcast #{n}: {e}"))?;
                }
                next.store(n + 1, Ordering::Release);
            }
            Ok::<(), String>(())
        }
    });
    let last = |k: usize| logs[k].lock().unwrap_or_else(|e| e.into_inner()).last().copied();
    let run = block_on(async {
        drive(&net, schedule, &clients).await?;
        net.calm();
        let mark = next.load(Ordering::Acquire);
        wait_for(
            &format!("after the faults: every client Connected and receiving broadcasts from #{mark} on"),
            RECOVERY,
            || (0..CLIENTS).all(|k| clients[k].is_connected() && last(k).is_some_and(|n| n >= mark)),
        )
        .await
    });
    stop.store(true, Ordering::Release);
    block_on(within("publisher stops", RECOVERY, publisher))??;
    let published_n = next.load(Ordering::Acquire);
    let progress: Vec<String> =
        (0..CLIENTS).map(|k| format!("client {k}: {:?}, last #{:?}", clients[k].state(), last(k))).collect();
    run.map_err(|e| format!("{e} (published {published_n}; {})", progress.join("; ")))?;
    for c in &clients {
        c.disconnect();
    }
    block_on(within("consumers end after disconnect", RECOVERY, async {
        for task in consumers {
            task.await;
        }
    }))?;
    let stats = server.stats();
    server.stop().map_err(text)?;
    let (mut received, mut gaps, mut repeats, mut reconnects) = (0, 0, 0, 0);
    for k in 0..CLIENTS {
        let connections = check_states(k, &changes[k])?;
        let seqs = logs[k].lock().unwrap_or_else(|e| e.into_inner()).clone();
        let (g, r) = check_received(k, &seqs, connections, published_n, retain_last)?;
        received += seqs.len();
        gaps += g;
        repeats += r;
        reconnects += connections - 1;
    }
    let f = net.stats();
    Ok(format!(
        "{} partitions, {} holds{}; published {published_n}, delivered {received}, reconnects {reconnects}, gaps {gaps}, repeats {repeats}; resets {}, refused connects {}, slow consumers {}, offline queued {} dropped {}",
        schedule.count(Fault::Partition),
        schedule.count(Fault::Hold),
        if retain_last {
            ", retain_last"
        } else if unicast {
            ", send_to"
        } else {
            ""
        },
        f.resets,
        f.refused,
        stats.slow_consumers,
        stats.queued,
        stats.dropped,
    ))
}

/// What the server saw of one connection (one client id).
#[derive(Debug, Default)]
struct ConnLog {
    /// False when `hello` came after `hello_grace` (held by the network): the server serves the
    /// connection as a legacy client's until the late `hello` arrives, then answers `welcome`
    /// (`Connected` reports the state at the grace's end).
    handshaken: bool,
    /// Connected as legacy, then carried messages: upgraded by its late `hello`.
    upgraded: bool,
    client: Option<usize>,
    seqs: Vec<u64>,
    disconnected: bool,
}

/// Server events in arrival order, checked as they come.
#[derive(Debug, Default)]
struct EventLog {
    conns: std::collections::BTreeMap<ClientId, ConnLog>,
    violations: Vec<String>,
}

impl EventLog {
    fn record(&mut self, ev: ServerEvent) {
        match ev {
            ServerEvent::Connected(info) => {
                let client =
                    info.client_name.as_deref().and_then(|n| n.strip_prefix("sim-")).and_then(|k| k.parse().ok());
                if info.handshaken && client.is_none() {
                    self.violations.push(format!("{}: handshaken without a client name sim-K", info.id));
                }
                let log = ConnLog { handshaken: info.handshaken, client, ..ConnLog::default() };
                if self.conns.insert(info.id, log).is_some() {
                    self.violations.push(format!("{}: Connected twice", info.id));
                }
            }
            ServerEvent::Disconnected { id, .. } => match self.conns.get_mut(&id) {
                Some(c) if !c.disconnected => c.disconnected = true,
                _ => self.violations.push(format!("{id}: Disconnected without Connected, or twice")),
            },
            ServerEvent::Message { from, message } => {
                let (Some(k), Some(n)) = (seq_of(&message, "client"), seq_of(&message, "seq")) else {
                    self.violations.push(format!("{from}: a message without client and seq"));
                    return;
                };
                let Some(c) = self.conns.get_mut(&from).filter(|c| !c.disconnected) else {
                    self.violations.push(format!("{from}: message #{n} outside Connected .. Disconnected"));
                    return;
                };
                if !c.handshaken && !c.upgraded {
                    // Our client sends only after `welcome`: this legacy-served connection got one in
                    // answer to its late `hello` (its name is not in the `Connected` event).
                    c.upgraded = true;
                    c.client = usize::try_from(k).ok();
                }
                if c.client.map(|c| c as u64) != Some(k) {
                    self.violations
                        .push(format!("{from}: message #{n} of client {k} on a connection of {:?}", c.client));
                }
                if let Some(&p) = c.seqs.last() {
                    if n != p + 1 {
                        self.violations.push(format!(
                            "{from} (client {k}): #{n} after #{p} on one connection ({})",
                            if n <= p { "duplicate or reorder" } else { "lost on a live connection" }
                        ));
                    }
                }
                c.seqs.push(n);
            }
            _ => {}
        }
    }

    /// Connections whose `hello` came too late (the server served them as legacy clients at first).
    fn late_hellos(&self) -> usize {
        self.conns.values().filter(|c| !c.handshaken).count()
    }

    /// Of those, the ones that carried messages after their late `hello` was answered.
    fn upgraded(&self) -> usize {
        self.conns.values().filter(|c| c.upgraded).count()
    }

    /// The newest number received from client `k`, if any.
    fn newest(&self, k: usize) -> Option<u64> {
        self.conns.values().filter(|c| c.client == Some(k)).filter_map(|c| c.seqs.last()).max().copied()
    }
}

/// Clients to server: invariants per client across its connections (see the module doc).
fn check_sent(log: &EventLog, attempted: &[u64]) -> Result<usize, String> {
    if let Some(v) = log.violations.first() {
        return Err(format!("{v} ({} violations)", log.violations.len()));
    }
    let mut received = 0;
    for (k, &attempted) in attempted.iter().enumerate() {
        // Ids grow with each accepted connection, so this is connection order.
        let mut prev_max: Option<(ClientId, u64)> = None;
        for (id, c) in log.conns.iter().filter(|(_, c)| c.client == Some(k)) {
            let (Some(&first), Some(&last)) = (c.seqs.first(), c.seqs.last()) else { continue };
            if last >= attempted {
                return Err(format!("client {k}: server received #{last}, never sent (sent {attempted})"));
            }
            if let Some((pid, pmax)) = prev_max {
                if first <= pmax {
                    return Err(format!(
                        "client {k}: connection {id} starts at #{first}, earlier connection {pid} reached #{pmax}: duplicate or reorder across reconnects"
                    ));
                }
            }
            prev_max = Some((*id, last));
            received += c.seqs.len();
        }
    }
    Ok(received)
}

/// One seed, clients to server: every client sends a numbered message every tick under the fault schedule.
fn clients_to_server(seed: u64) -> Outcome {
    let schedule = Schedule::generate(seed, FAULT_SPAN);
    let result = clients_to_server_run(seed, &schedule);
    result.map_err(|e| format!("{e}\n  schedule {schedule}"))
}

fn clients_to_server_run(seed: u64, schedule: &Schedule) -> Outcome {
    let net = FaultyTransport::new(seed);
    let transport: Arc<dyn Transport> = Arc::new(net.clone());
    let config = sim_config(false);
    let event = EventName::new(unique_name("r5")).map_err(text)?;
    let server = Server::new(transport.clone(), event.clone(), &config).map_err(text)?;
    let events = server.events();
    server.start().map_err(text)?;
    let log = Arc::new(Mutex::new(EventLog::default()));
    let (stop_events, events_stopped) = async_channel::bounded::<()>(1);
    let recorder = runtime::spawn({
        let log = log.clone();
        async move {
            loop {
                let ev = future::or(async { events.recv().await.ok() }, async {
                    let _ = events_stopped.recv().await;
                    None
                })
                .await;
                match ev {
                    Some(ev) => log.lock().unwrap_or_else(|e| e.into_inner()).record(ev),
                    None => break,
                }
            }
            // Whatever was already delivered.
            while let Ok(ev) = events.try_recv() {
                log.lock().unwrap_or_else(|e| e.into_inner()).record(ev);
            }
        }
    });
    let mut clients = Vec::new();
    let mut changes = Vec::new();
    for k in 0..CLIENTS {
        let (c, ch) = connect(&transport, &event, &config, k)?;
        clients.push(c);
        changes.push(ch);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let next: Vec<Arc<AtomicU64>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let failed = Arc::new(AtomicI64::new(0));
    let senders: Vec<_> = (0..CLIENTS)
        .map(|k| {
            let (c, event, stop, next, failed) =
                (clients[k].clone(), event.clone(), stop.clone(), next[k].clone(), failed.clone());
            runtime::spawn(async move {
                let mut ticks = Timer::interval(TICK);
                while !stop.load(Ordering::Acquire) {
                    ticks.next().await;
                    let n = next.fetch_add(1, Ordering::AcqRel);
                    match c.send_async(&seq_message(&event, Some(k), n)).await {
                        Ok(()) => {}
                        // Not connected (reconnecting), or the connection failed during the write.
                        Err(e) if matches!(e.kind(), ErrorKind::Connection | ErrorKind::Timeout) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => return Err(format!("client {k}: send #{n} failed: {e}")),
                    }
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    let newest = |k: usize| log.lock().unwrap_or_else(|e| e.into_inner()).newest(k);
    let run = block_on(async {
        drive(&net, schedule, &clients).await?;
        net.calm();
        let marks: Vec<u64> = next.iter().map(|n| n.load(Ordering::Acquire)).collect();
        wait_for(
            &format!("after the faults: every client Connected and the server receiving its numbers from {marks:?} on"),
            RECOVERY,
            || (0..CLIENTS).all(|k| clients[k].is_connected() && newest(k).is_some_and(|n| n >= marks[k])),
        )
        .await
    });
    stop.store(true, Ordering::Release);
    block_on(within("senders stop", RECOVERY, async {
        let mut out = Ok(());
        for task in senders {
            out = out.and(task.await);
        }
        out
    }))??;
    let progress: Vec<String> = (0..CLIENTS)
        .map(|k| {
            format!(
                "client {k}: {:?}, sent {}, newest received #{:?}",
                clients[k].state(),
                next[k].load(Ordering::Acquire),
                newest(k)
            )
        })
        .collect();
    run.map_err(|e| format!("{e} ({})", progress.join("; ")))?;
    for c in &clients {
        c.disconnect();
    }
    block_on(wait_for("the server sees every client leave", RECOVERY, || server.client_count() == 0))?;
    stop_events.close();
    block_on(within("the event recorder ends", RECOVERY, recorder))?;
    server.stop().map_err(text)?;
    let attempted: Vec<u64> = next.iter().map(|n| n.load(Ordering::Acquire)).collect();
    let mut reconnects = 0;
    for (k, ch) in changes.iter().enumerate() {
        reconnects += check_states(k, ch)? - 1;
    }
    let log = log.lock().unwrap_or_else(|e| e.into_inner());
    let received = check_sent(&log, &attempted)?;
    let f = net.stats();
    Ok(format!(
        "{} partitions, {} holds; sent {}, failed sends {}, received {received} on {} connections ({} served as legacy at first: hello held past hello_grace; {} of them carried messages after the late hello was answered), reconnects {reconnects}; resets {}, refused connects {}",
        schedule.count(Fault::Partition),
        schedule.count(Fault::Hold),
        attempted.iter().sum::<u64>(),
        failed.load(Ordering::Relaxed),
        log.conns.len(),
        log.late_hellos(),
        log.upgraded(),
        f.resets,
        f.refused,
    ))
}

#[test]
fn server_to_clients_under_seeded_faults() {
    run_seeds("server_to_clients", server_to_clients);
}

#[test]
fn clients_to_server_under_seeded_faults() {
    run_seeds("clients_to_server", clients_to_server);
}

#[test]
fn schedule_is_a_function_of_the_seed() {
    let span = Duration::from_secs(1);
    let a = Schedule::generate(3, span);
    assert_eq!(a, Schedule::generate(3, span), "same seed, same schedule");
    assert_ne!(a, Schedule::generate(4, span), "another seed, another schedule");
    assert!(a.total() >= span, "the steps cover the span: {a}");
    // Over the default seeds, both faults occur.
    let all: Vec<Schedule> = (1..=SEEDS).map(|s| Schedule::generate(s, FAULT_SPAN)).collect();
    assert!(all.iter().map(|s| s.count(Fault::Partition)).sum::<usize>() >= SEEDS as usize / 2);
    assert!(all.iter().map(|s| s.count(Fault::Hold)).sum::<usize>() >= SEEDS as usize / 2);
}

/// A raw connection pair of `net` (server side accepted), for the transport's own tests.
fn raw_pair(net: &FaultyTransport, config: &Config) -> (socket_core::Connection, socket_core::Connection) {
    let event = EventName::new(unique_name("raw")).expect("valid event name");
    block_on(async {
        within("raw connection", Duration::from_secs(5), async {
            let listener = net.bind(&event, config).await.expect("bound");
            let endpoint = net.endpoints(&event, config).expect("endpoints").remove(0);
            let client = net.connect(&endpoint, config).await.expect("connected");
            let server = listener.accept().await.expect("accepted");
            // The listener may go: accepted connections live on.
            drop(listener);
            (client, server)
        })
        .await
        .expect("no hang")
    })
}

#[test]
fn faulty_partition_resets_both_ways_and_refuses_connects() {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let net = FaultyTransport::with_chunk_faults(1, ChunkFaults::NONE);
    let config = sim_config(false);
    let (mut client, mut server) = raw_pair(&net, &config);
    let event = EventName::new(unique_name("raw")).expect("valid event name");
    block_on(async {
        within("partition test", Duration::from_secs(5), async {
            client.writer.write_all(b"ping").await.expect("written");
            let mut buf = [0u8; 4];
            server.reader.read_exact(&mut buf).await.expect("read before the partition");
            assert_eq!(&buf, b"ping");
            // A read waiting when the partition starts is woken with a reset.
            let waiting = async { client.reader.read(&mut buf).await };
            let cut = async {
                Timer::after(Duration::from_millis(20)).await;
                net.partition();
                std::future::pending::<std::io::Result<usize>>().await
            };
            let err = future::or(waiting, cut).await.expect_err("reset");
            assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
            let err = server.reader.read(&mut buf).await.expect_err("reset on the server side too");
            assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
            let err = server.writer.write_all(b"x").await.expect_err("writes fail too");
            assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
            let listener = net.bind(&event, &config).await.expect("bound");
            let endpoint = net.endpoints(&event, &config).expect("endpoints").remove(0);
            let refused = net.connect(&endpoint, &config).await.expect_err("refused while partitioned");
            assert_eq!(refused.kind(), ErrorKind::Connection);
            assert!(refused.message().contains("partitioned"), "{refused}");
            net.heal();
            let mut again = net.connect(&endpoint, &config).await.expect("connects after heal");
            let mut accepted = listener.accept().await.expect("accepted after heal");
            again.writer.write_all(b"pong").await.expect("written");
            accepted.reader.read_exact(&mut buf).await.expect("read after heal");
            assert_eq!(&buf, b"pong");
            let stats = net.stats();
            assert_eq!((stats.partitions, stats.resets, stats.refused, stats.connects), (1, 1, 1, 2), "{stats:?}");
        })
        .await
        .expect("no hang")
    });
}

#[test]
fn faulty_hold_stops_forwarding_then_resumes_in_order() {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let net = FaultyTransport::with_chunk_faults(2, ChunkFaults::NONE);
    let config = sim_config(false);
    let (mut client, mut server) = raw_pair(&net, &config);
    block_on(async {
        within("hold test", Duration::from_secs(5), async {
            net.hold();
            // Writes go into the pipe while held; reads see nothing.
            client.writer.write_all(b"held bytes").await.expect("written while held");
            server.writer.write_all(b"other way").await.expect("written while held");
            let mut buf = [0u8; 10];
            assert!(future::poll_once(server.reader.read(&mut buf)).await.is_none(), "nothing forwarded while held");
            assert!(future::poll_once(client.reader.read(&mut buf)).await.is_none(), "nothing forwarded while held");
            // A read waiting during the hold is woken by the release.
            let waiting = async {
                server.reader.read_exact(&mut buf).await.expect("read after release");
                buf
            };
            let release = async {
                Timer::after(Duration::from_millis(20)).await;
                net.release();
                std::future::pending::<[u8; 10]>().await
            };
            assert_eq!(&future::or(waiting, release).await, b"held bytes");
            let mut other = [0u8; 9];
            client.reader.read_exact(&mut other).await.expect("read after release");
            assert_eq!(&other, b"other way");
        })
        .await
        .expect("no hang")
    });
}

#[test]
fn faulty_split_reads_and_writes_keep_every_byte_in_order() {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let faults = ChunkFaults { split_probability: 0.9, delay_probability: 0.2, max_delay: Duration::from_millis(1) };
    let net = FaultyTransport::with_chunk_faults(3, faults);
    let config = sim_config(false);
    let (mut client, mut server) = raw_pair(&net, &config);
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let got = block_on(async {
        within("split test", Duration::from_secs(10), async {
            let write = async {
                client.writer.write_all(&data).await.expect("written");
                client.writer.close().await.expect("closed");
            };
            let read = async {
                let mut got = Vec::new();
                let mut tiny = 0;
                let mut buf = [0u8; 4096];
                loop {
                    let n = server.reader.read(&mut buf).await.expect("read");
                    if n == 0 {
                        break (got, tiny);
                    }
                    if n <= 8 {
                        tiny += 1;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
            };
            future::zip(write, read).await.1
        })
        .await
        .expect("no hang")
    });
    assert_eq!(got.0, data, "every byte, in order");
    assert!(got.1 > 0, "some reads were cut to a few bytes");
}

/// The faulty network with chunk faults only (split and delayed chunks, no
/// holds or partitions) is still a correct transport: the whole conformance
/// suite passes over it.
#[test]
fn faulty_transport_with_chunk_faults_passes_the_conformance_suite() {
    use socket_tests::conformance::{self, Harness, Mode};
    let harness = Harness::new(Arc::new(FaultyTransport::new(5)), || {
        let mut config = Config::default();
        config.socket.transport = faulty::SCHEME.to_owned();
        faulty::set_option(&mut config, "namespace", unique_name("conf"));
        config
    })
    .mode(Mode::Async)
    .case_timeout(Duration::from_secs(30));
    let report = conformance::run_all(&harness).unwrap_or_else(|failures| panic!("{failures}"));
    assert_eq!(report.passed.len(), conformance::cases().len());
}
