//! Soak test (RELIABILITY.md K1, shortened): `cargo xtask soak --minutes N`.
//!
//! Per transport (Unix and TCP at once, or one with `--transport`): one server in this process,
//! restarted every `--restart-secs` (default 120); a publisher at a steady rate stamping
//! `{"seq": n}` (one publisher, so one sequence); clients in this process joining and leaving
//! every ~100 ms; client processes (this binary with `--role client`) randomly SIGKILLed,
//! SIGSTOPped for a while (the server drops them as slow consumers) or asked to leave.
//!
//! Every client checks the sequence-accounting invariant: sequence numbers strictly increase,
//! and a gap is allowed only across a lost connection (a disconnect, a server restart, a
//! slow-consumer verdict) or a drop the server counted. Every 10 s the process prints its RSS,
//! open descriptors, threads, the servers' counters and the invariant's tally; at the end it
//! checks that the socket directory holds only live sockets and locks, and exits non-zero on any
//! violation.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket_factory::{
    Client, ClientOptions, Config, ConnectionState, Data, ErrorKind, EventName, Server, SocketMessage,
};

type Res<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const EVENT: &str = "soak";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match run(&args) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("socket-soak: error: {e}");
            2
        }
    };
    std::process::exit(code);
}

fn opt(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn run(args: &[String]) -> Res<bool> {
    if opt(args, "--role").as_deref() == Some("client") {
        return child_client(args).map(|()| true);
    }
    // Every option takes a value; an unknown one is an error, never ignored.
    for pair in args.chunks(2) {
        let known = ["--minutes", "--restart-secs", "--rate", "--transport"];
        if !known.contains(&pair[0].as_str()) || pair.len() < 2 {
            return Err(format!(
                "unknown option or missing value: {:?} (options: --minutes N, --restart-secs N, --rate N, --transport unix|tcp|both)",
                pair[0]
            )
            .into());
        }
    }
    let minutes: f64 = opt(args, "--minutes").unwrap_or_else(|| "10".into()).parse()?;
    let restart = Duration::from_secs(opt(args, "--restart-secs").unwrap_or_else(|| "120".into()).parse()?);
    let rate: u64 = opt(args, "--rate").unwrap_or_else(|| "500".into()).parse()?;
    let transports: Vec<String> = match opt(args, "--transport").as_deref() {
        None | Some("both") => vec!["unix".into(), "tcp".into()],
        Some(t) => vec![t.to_owned()],
    };
    let duration = Duration::from_secs_f64(minutes * 60.0);
    println!(
        "socket-soak: {minutes} min, transports {transports:?}, publisher {rate} msg/s, server restart every {restart:?}"
    );
    let tally = Arc::new(Tally::default());
    let start = Instant::now();
    let soaks: Vec<_> = transports
        .into_iter()
        .map(|t| {
            let tally = tally.clone();
            std::thread::spawn(move || soak(&t, duration, restart, rate, &tally))
        })
        .collect();
    let mut samples: Vec<(f64, u64, usize)> = Vec::new();
    while soaks.iter().any(|s| !s.is_finished()) {
        std::thread::sleep(Duration::from_secs(10).min(duration));
        let (rss, fds, threads) = (rss_kib(), open_fds(), threads());
        let t = start.elapsed().as_secs_f64();
        samples.push((t, rss, fds));
        println!("t={t:6.0}s rss={rss} KiB fds={fds} threads={threads} | {}", tally.line());
    }
    let mut ok = true;
    for s in soaks {
        match s.join() {
            Ok(Ok(line)) => println!("{line}"),
            Ok(Err(e)) => {
                println!("soak failed: {e}");
                ok = false;
            }
            Err(_) => {
                println!("soak thread panicked");
                ok = false;
            }
        }
    }
    // RSS slope after the first minute of warm-up (least squares, KiB per hour).
    let warm: Vec<&(f64, u64, usize)> = samples.iter().filter(|s| s.0 >= 60.0).collect();
    if warm.len() >= 3 {
        let n = warm.len() as f64;
        let mx = warm.iter().map(|s| s.0).sum::<f64>() / n;
        let my = warm.iter().map(|s| s.1 as f64).sum::<f64>() / n;
        let sxy: f64 = warm.iter().map(|s| (s.0 - mx) * (s.1 as f64 - my)).sum();
        let sxx: f64 = warm.iter().map(|s| (s.0 - mx).powi(2)).sum();
        let slope = if sxx > 0.0 { sxy / sxx * 3600.0 } else { 0.0 };
        let (fmin, fmax) = warm.iter().fold((usize::MAX, 0), |(a, b), s| (a.min(s.2), b.max(s.2)));
        let (rmin, rmax) = warm.iter().fold((u64::MAX, 0), |(a, b), s| (a.min(s.1), b.max(s.1)));
        println!("after warm-up: RSS {rmin}..{rmax} KiB, slope {slope:.0} KiB/h; fds {fmin}..{fmax}");
    }
    let violations = tally.violations.load(Ordering::Relaxed);
    println!("summary: {} | {}", if ok && violations == 0 { "PASS" } else { "FAIL" }, tally.line());
    Ok(ok && violations == 0)
}

/// Totals over every client of every transport.
#[derive(Default)]
struct Tally {
    received: AtomicU64,
    gaps_across_reconnects: AtomicU64,
    missing_across_reconnects: AtomicU64,
    violations: AtomicU64,
    joins: AtomicU64,
    kills: AtomicU64,
    stops: AtomicU64,
    restarts: AtomicU64,
    child_reports: AtomicU64,
}

impl Tally {
    fn line(&self) -> String {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "received={} gaps(across reconnects)={} missing={} violations={} joins={} kills={} sigstops={} restarts={} child-reports={}",
            l(&self.received),
            l(&self.gaps_across_reconnects),
            l(&self.missing_across_reconnects),
            l(&self.violations),
            l(&self.joins),
            l(&self.kills),
            l(&self.stops),
            l(&self.restarts),
            l(&self.child_reports)
        )
    }
}

/// A small xorshift generator (no dependency needed for a soak).
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn config(transport: &str, dir: &Path, port: u16) -> Config {
    let mut c = Config::default();
    c.socket.transport = transport.to_owned();
    c.socket.socket_dir = dir.join("s");
    c.socket.tcp.port = Some(port);
    c.socket.write_stall_timeout = 1.0;
    c.socket.frame_timeout = 2.0;
    c.socket.reconnect_initial_delay = 0.05;
    c.socket.reconnect_max_delay = 1.0;
    c.socket.unix.max_connections = 64;
    c.socket.tcp.max_connections = 64;
    c
}

fn free_port() -> Res<u16> {
    Ok(socket_tests::util::free_port()?)
}

/// Checks one client's stream: strictly increasing, gaps only across a lost connection.
///
/// Each lost connection licenses one gap (messages of one connection are contiguous): messages
/// of the old connection still buffered may be read after the loss was seen, so the license is
/// kept until a gap uses it.
struct Checker {
    last: Option<u64>,
    licenses: u64,
    received: u64,
    gaps: u64,
    missing: u64,
    violations: u64,
}

impl Checker {
    fn new() -> Self {
        Checker { last: None, licenses: 0, received: 0, gaps: 0, missing: 0, violations: 0 }
    }

    fn lost(&mut self) {
        self.licenses += 1;
    }

    fn message(&mut self, n: u64) {
        self.received += 1;
        if let Some(l) = self.last {
            if n <= l {
                self.violations += 1;
                eprintln!("violation: {n} after {l} (duplicate or reorder)");
            } else if n != l + 1 {
                if self.licenses > 0 {
                    self.licenses -= 1;
                    self.gaps += 1;
                    self.missing += n - l - 1;
                } else {
                    self.violations += 1;
                    eprintln!("violation: gap {l} -> {n} without a lost connection");
                }
            }
        }
        self.last = Some(n);
    }
}

/// Reads `client` until `stop`; returns its checker.
fn check_client(client: &Client, stop: &AtomicBool) -> Checker {
    let states = client.state_changes();
    let mut ck = Checker::new();
    while !stop.load(Ordering::Acquire) {
        let got = client.receive(Some(Duration::from_millis(100)));
        while let Ok(s) = states.try_recv() {
            if s == ConnectionState::Reconnecting {
                ck.lost();
            }
        }
        match got {
            Ok(Some(m)) => {
                if let Some(n) = m.data.get("seq").and_then(|v| v.as_u64()) {
                    ck.message(n);
                }
            }
            Ok(None) => {}
            Err(_) => break,
        }
    }
    ck
}

fn connect(transport: &str, cfg: &Config, name: &str) -> Res<Client> {
    let registry = socket_factory::default_registry();
    let t = socket_factory::transport(&registry, transport)?;
    let mut o = ClientOptions::from_config(cfg)?;
    o.client_name = Some(name.to_owned());
    o.wait_for_server = true;
    o.wait_timeout = Some(Duration::from_secs(10));
    Ok(Client::connect_with(t, EventName::new(EVENT)?, cfg.clone(), o)?)
}

/// A client process: `--role client --transport T --dir D --port P`. Reports its tally on
/// stdout every 2 s and when its stdin closes (the parent asks it to leave).
fn child_client(args: &[String]) -> Res {
    let transport = opt(args, "--transport").ok_or("--transport")?;
    let dir = PathBuf::from(opt(args, "--dir").ok_or("--dir")?);
    let port: u16 = opt(args, "--port").ok_or("--port")?.parse()?;
    let cfg = config(&transport, &dir, port);
    let client = connect(&transport, &cfg, "child")?;
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        s2.store(true, Ordering::Release);
    });
    let ck = check_client(&client, &stop);
    let mut out = std::io::stdout().lock();
    writeln!(out, "REPORT {} {} {} {}", ck.received, ck.gaps, ck.missing, ck.violations)?;
    out.flush()?;
    Ok(())
}

struct ChildClient {
    child: Child,
    stopped_until: Option<Instant>,
    report: Arc<Mutex<Option<String>>>,
}

fn spawn_child(transport: &str, dir: &Path, port: u16) -> Res<ChildClient> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--role", "client", "--transport", transport, "--dir"])
        .arg(dir)
        .args(["--port", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let report: Arc<Mutex<Option<String>>> = Arc::default();
    if let Some(out) = child.stdout.take() {
        let r = report.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(mut r) = r.lock() {
                    *r = Some(line);
                }
            }
        });
    }
    Ok(ChildClient { child, stopped_until: None, report })
}

fn signal(child: &Child, sig: rustix::process::Signal) {
    let _ = rustix::process::kill_process(rustix::process::Pid::from_child(child), sig);
}

/// One transport's soak; returns its closing line.
fn soak(transport: &str, duration: Duration, restart: Duration, rate: u64, tally: &Tally) -> Res<String> {
    let tmp = tempfile::tempdir()?;
    let port = free_port()?;
    let cfg = config(transport, tmp.path(), port);
    let registry = socket_factory::default_registry();
    let t = socket_factory::transport(&registry, transport)?;
    let event = EventName::new(EVENT)?;
    let new_server = || -> Res<Server> {
        let s = Server::new(t.clone(), event.clone(), &cfg)?;
        s.start()?;
        Ok(s)
    };
    let server = Arc::new(Mutex::new(new_server()?));
    let start = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    // Publisher: one sequence for the whole run.
    let published = Arc::new(AtomicU64::new(0));
    let not_published = Arc::new(AtomicU64::new(0));
    let dropped_total = Arc::new(AtomicU64::new(0));
    let publisher = {
        let (server, done, published, not_published, event) =
            (server.clone(), done.clone(), published.clone(), not_published.clone(), event.clone());
        std::thread::spawn(move || {
            let period = Duration::from_micros(1_000_000 / rate.max(1));
            let mut next = Instant::now();
            let mut n = 0u64;
            while !done.load(Ordering::Acquire) {
                let msg = SocketMessage::data(event.clone(), Data::new().with("seq", n).with("pad", "p".repeat(100)));
                let s = server.lock().map(|s| s.clone());
                match s.map(|s| s.broadcast(&msg)) {
                    Ok(Ok(())) => {
                        published.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e)) if e.kind() == ErrorKind::Closed => {
                        not_published.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        eprintln!("publisher: {other:?}");
                        not_published.fetch_add(1, Ordering::Relaxed);
                    }
                }
                n += 1;
                next += period;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        })
    };
    let mut rng = Rng::new();
    let mut inproc: Vec<(Arc<AtomicBool>, std::thread::JoinHandle<Checker>)> = Vec::new();
    let mut children: Vec<ChildClient> = Vec::new();
    let mut last_restart = Instant::now();
    let mut last_child_action = Instant::now();
    let mut counter = 0u64;
    while start.elapsed() < duration {
        std::thread::sleep(Duration::from_millis(100));
        counter += 1;
        // In-process clients join and leave every ~100 ms (3..=8 of them).
        let join = inproc.len() < 3 || (inproc.len() < 8 && rng.below(2) == 0);
        if join {
            if let Ok(c) = connect(transport, &cfg, &format!("in-{counter}")) {
                tally.joins.fetch_add(1, Ordering::Relaxed);
                let stop = Arc::new(AtomicBool::new(false));
                let s2 = stop.clone();
                inproc.push((
                    stop,
                    std::thread::spawn(move || {
                        let ck = check_client(&c, &s2);
                        c.disconnect();
                        ck
                    }),
                ));
            }
        } else if !inproc.is_empty() {
            let (stop, h) = inproc.swap_remove(rng.below(inproc.len() as u64) as usize);
            stop.store(true, Ordering::Release);
            if let Ok(ck) = h.join() {
                account(tally, &ck);
            }
        }
        // Client processes: every ~2 s spawn, kill, stop or release one.
        for c in &mut children {
            if c.stopped_until.is_some_and(|t| Instant::now() >= t) {
                signal(&c.child, rustix::process::Signal::CONT);
                c.stopped_until = None;
            }
        }
        if last_child_action.elapsed() >= Duration::from_secs(2) {
            last_child_action = Instant::now();
            let action = if children.len() < 2 {
                0
            } else if children.len() >= 4 {
                1 + rng.below(3)
            } else {
                rng.below(4)
            };
            match action {
                0 => children.push(spawn_child(transport, tmp.path(), port)?),
                1 => {
                    let mut c = children.swap_remove(rng.below(children.len() as u64) as usize);
                    let _ = c.child.kill();
                    let _ = c.child.wait();
                    tally.kills.fetch_add(1, Ordering::Relaxed);
                }
                2 => {
                    let i = rng.below(children.len() as u64) as usize;
                    if children[i].stopped_until.is_none() {
                        signal(&children[i].child, rustix::process::Signal::STOP);
                        children[i].stopped_until = Some(Instant::now() + Duration::from_millis(2500));
                        tally.stops.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => {
                    let i = rng.below(children.len() as u64) as usize;
                    if children[i].stopped_until.is_none() {
                        let c = children.swap_remove(i);
                        finish_child(c, tally);
                    }
                }
            }
        }
        // Server restarts.
        if last_restart.elapsed() >= restart {
            last_restart = Instant::now();
            let mut guard = server.lock().map_err(|_| "poisoned")?;
            dropped_total.fetch_add(guard.stats().dropped, Ordering::Relaxed);
            guard.stop()?;
            *guard = new_server()?;
            tally.restarts.fetch_add(1, Ordering::Relaxed);
        }
    }
    done.store(true, Ordering::Release);
    let _ = publisher.join();
    for (stop, h) in inproc {
        stop.store(true, Ordering::Release);
        if let Ok(ck) = h.join() {
            account(tally, &ck);
        }
    }
    for c in children.drain(..) {
        if c.stopped_until.is_some() {
            signal(&c.child, rustix::process::Signal::CONT);
        }
        finish_child(c, tally);
    }
    // Only live sockets and locks in the socket directory.
    let dir_ok = check_dir(transport, &cfg.socket.socket_dir);
    let s = server.lock().map_err(|_| "poisoned")?.clone();
    let st = s.stats();
    s.stop()?;
    let leftovers = std::fs::read_dir(&cfg.socket.socket_dir).map(|d| d.count()).unwrap_or(0);
    if !dir_ok {
        tally.violations.fetch_add(1, Ordering::Relaxed);
    }
    Ok(format!(
        "{transport}: published {} (not published while restarting: {}), offline drops {}, last server {st:?}; socket dir ok: {dir_ok}, entries after stop: {leftovers}",
        published.load(Ordering::Relaxed),
        not_published.load(Ordering::Relaxed),
        dropped_total.load(Ordering::Relaxed) + st.dropped,
    ))
}

fn finish_child(mut c: ChildClient, tally: &Tally) {
    drop(c.child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = c.child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.child.kill();
    let _ = c.child.wait();
    std::thread::sleep(Duration::from_millis(20));
    let line = c.report.lock().ok().and_then(|r| r.clone());
    if let Some(f) = line.as_deref().and_then(|l| l.strip_prefix("REPORT ")) {
        let v: Vec<u64> = f.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        if let [received, gaps, missing, violations] = v[..] {
            tally.received.fetch_add(received, Ordering::Relaxed);
            tally.gaps_across_reconnects.fetch_add(gaps, Ordering::Relaxed);
            tally.missing_across_reconnects.fetch_add(missing, Ordering::Relaxed);
            tally.violations.fetch_add(violations, Ordering::Relaxed);
            tally.child_reports.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn account(tally: &Tally, ck: &Checker) {
    tally.received.fetch_add(ck.received, Ordering::Relaxed);
    tally.gaps_across_reconnects.fetch_add(ck.gaps, Ordering::Relaxed);
    tally.missing_across_reconnects.fetch_add(ck.missing, Ordering::Relaxed);
    tally.violations.fetch_add(ck.violations, Ordering::Relaxed);
}

/// The socket directory holds only the live server's socket and lock (Unix), nothing for TCP.
fn check_dir(transport: &str, dir: &Path) -> bool {
    let names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let ok = match transport {
        "unix" => names.iter().all(|n| n == "soak.sock" || n == "soak.lock"),
        _ => names.is_empty(),
    };
    if !ok {
        println!("{transport}: unexpected entries in the socket directory: {names:?}");
    }
    ok
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}
