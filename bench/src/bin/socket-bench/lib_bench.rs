//! Our library through its public API: `socket_core::{Server, Client}` over the
//! transports of `socket_factory::default_registry()` (features `unix`, `tcp`),
//! once through the async API and once through the blocking API.
//!
//! The publisher is the application's main thread calling `Server::broadcast`
//! (a synchronous, non-blocking call in both APIs). Subscribers are library
//! `Client`s in this process: with the async API all of them run as tasks on
//! one application thread; with the blocking API each has its own thread
//! calling `Client::receive`.
//!
//! The publisher is not paced: `Server::broadcast` never blocks, and a client
//! whose outbound queue overflows is disconnected as a slow consumer. So, like
//! libzmq with high-water marks 0 and like the independent harness's `project`
//! contender, the throughput cells raise the server's per-client outbound queue
//! (`socket.outbound_queue_size` / `_bytes`) to hold the whole run; everything
//! else is the default configuration. A slow-consumer disconnect or a dropped
//! message still fails the cell (the server's statistics are checked after it).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use socket_core::config::{MAX_QUEUE_BYTES, MAX_QUEUE_LEN};
use socket_core::server::ServerEvent;
use socket_core::{Client, Config, MessageType, Server, SocketMessage, Transport};

use crate::common::{
    check_seq, event_name, free_port, make_message, publish, rate, rtt_stats, set_seq, temp_dir, Abort, BenchResult,
    Net, Rtt, RttPlan, IO_TIMEOUT,
};

/// Which public API drives the library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    /// `start_async`, `connect_async`, `receive_async`, `send_async`.
    Async,
    /// `start`, `connect`, `receive`, `send`.
    Blocking,
}

fn err(what: &'static str) -> impl Fn(socket_core::Error) -> String {
    move |e| format!("{what}: {e} ({:?})", e.kind())
}

/// A configuration and transport for one cell; the temp dir must outlive both.
struct Setup {
    cfg: Config,
    transport: Arc<dyn Transport>,
    _dir: tempfile::TempDir,
}

fn setup(net: Net, max_connections: usize) -> BenchResult<Setup> {
    let dir = temp_dir()?;
    let mut cfg = Config::default();
    cfg.socket.transport = net.name().to_owned();
    cfg.socket.socket_dir = dir.path().to_path_buf();
    cfg.socket.unix.max_connections = max_connections;
    cfg.socket.tcp.max_connections = max_connections;
    if net == Net::Tcp {
        cfg.socket.tcp.port = Some(free_port()?);
    }
    let transport = crate::serve::registry().get(net.name()).map_err(err("transport"))?;
    Ok(Setup { cfg, transport, _dir: dir })
}

/// Raises the per-client outbound queue to hold `n` messages of `payload` bytes
/// (as the harness's `project.rs` does), within the configuration's limits.
fn queue_whole_run(cfg: &mut Config, n: u64, payload: usize) {
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    // A frame of the bench message is the payload plus well under 512 bytes of header.
    let frame_guess = payload.saturating_add(512);
    cfg.socket.outbound_queue_size = n.saturating_add(4096).min(MAX_QUEUE_LEN);
    cfg.socket.outbound_queue_bytes = n.saturating_mul(frame_guess).saturating_add(64 << 20).min(MAX_QUEUE_BYTES);
}

/// Drains the server's event stream on a thread of its own (nobody else reads it
/// in the throughput test), counting connections.
fn drain_events(server: &Server) -> Arc<AtomicUsize> {
    let connected = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&connected);
    let events = server.events();
    thread::spawn(move || {
        while let Ok(ev) = events.recv_blocking() {
            if matches!(ev, ServerEvent::Connected(_)) {
                count.fetch_add(1, Ordering::AcqRel);
            }
        }
    });
    connected
}

fn wait_connected(connected: &AtomicUsize, n: usize) -> BenchResult<()> {
    let deadline = Instant::now() + IO_TIMEOUT;
    while connected.load(Ordering::Acquire) < n {
        if Instant::now() >= deadline {
            return Err(format!("server saw {} of {n} clients", connected.load(Ordering::Acquire)));
        }
        thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

fn check_data(msg: &SocketMessage, want: u64, payload: usize) -> BenchResult<()> {
    if msg.message_type != MessageType::Data {
        return Err(format!("expected a data message, got {}", msg.message_type));
    }
    check_seq(msg, want, payload)
}

/// Broadcast throughput: messages/s delivered to every one of `subs` subscribers.
pub(crate) fn throughput(api: Api, net: Net, payload: usize, subs: usize, n: u64) -> BenchResult<f64> {
    let mut s = setup(net, subs + 8)?;
    queue_whole_run(&mut s.cfg, n, payload);
    let server = Server::new(Arc::clone(&s.transport), event_name(), &s.cfg).map_err(err("server"))?;
    let connected = drain_events(&server);
    let abort = Arc::new(Abort::default());
    let result = (|| {
        let readers: Vec<thread::JoinHandle<BenchResult<Vec<Instant>>>> = match api {
            Api::Blocking => {
                server.start().map_err(err("server start"))?;
                let mut readers = Vec::with_capacity(subs);
                for idx in 0..subs {
                    let c = Client::connect(Arc::clone(&s.transport), event_name(), &s.cfg).map_err(err("connect"))?;
                    let a = Arc::clone(&abort);
                    readers.push(thread::spawn(move || {
                        let r = subscribe_blocking(&c, idx, n, payload);
                        if r.is_err() {
                            a.set();
                        }
                        c.disconnect();
                        r.map(|t| vec![t])
                    }));
                }
                readers
            }
            Api::Async => {
                let (server2, t, cfg, p) =
                    (server.clone(), Arc::clone(&s.transport), s.cfg.clone(), Arc::clone(&abort));
                // One application thread runs every subscriber task.
                let (tx, rx) = std::sync::mpsc::channel::<BenchResult<()>>();
                let app = thread::spawn(move || {
                    let ex = async_executor::LocalExecutor::new();
                    futures_lite::future::block_on(ex.run(async {
                        let setup = async {
                            server2.start_async().await.map_err(err("server start"))?;
                            let mut clients = Vec::with_capacity(subs);
                            for _ in 0..subs {
                                let c = Client::connect_async(Arc::clone(&t), event_name(), &cfg)
                                    .await
                                    .map_err(err("connect"))?;
                                clients.push(c);
                            }
                            Ok::<_, String>(clients)
                        };
                        let clients = match setup.await {
                            Ok(c) => c,
                            Err(e) => {
                                let _ = tx.send(Err(e.clone()));
                                return Err(e);
                            }
                        };
                        let tasks: Vec<_> = clients
                            .into_iter()
                            .enumerate()
                            .map(|(idx, c)| {
                                let a = Arc::clone(&p);
                                ex.spawn(async move {
                                    let r = subscribe_async(&c, idx, n, payload).await;
                                    if r.is_err() {
                                        a.set();
                                    }
                                    c.disconnect_async().await;
                                    r
                                })
                            })
                            .collect();
                        let _ = tx.send(Ok(()));
                        let mut lasts = Vec::with_capacity(subs);
                        for t in tasks {
                            lasts.push(t.await?);
                        }
                        Ok(lasts)
                    }))
                });
                match rx.recv_timeout(IO_TIMEOUT) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(_) => return Err("async subscribers did not start".into()),
                }
                vec![app]
            }
        };
        wait_connected(&connected, subs)?;
        let (start, failure) =
            publish(n, payload, &abort, |msg| server.broadcast(msg).map_err(|e| format!("broadcast: {e}")));
        let mut lasts = Vec::with_capacity(subs);
        let mut sub_err = None;
        for r in readers {
            match r.join().map_err(|_| "subscriber thread panicked".to_owned()).and_then(|r| r) {
                Ok(l) => lasts.extend(l),
                Err(e) => {
                    sub_err.get_or_insert(e);
                }
            }
        }
        // A subscriber's own failure is the cause of the publisher's stop: it is reported first.
        let mut first_err = sub_err.or(failure);
        // The server's view tells a slow-consumer disconnect from a lost message;
        // either fails the cell even when every subscriber got its messages.
        let st = server.stats();
        if first_err.is_none() && (st.slow_consumers > 0 || st.dropped > 0) {
            first_err = Some("the server lost messages".to_owned());
        }
        if let Some(e) = first_err {
            return Err(format!(
                "{e} (server: {} slow consumers, {} dropped, {} sent)",
                st.slow_consumers, st.dropped, st.messages_sent
            ));
        }
        Ok(rate(n, start, &lasts))
    })();
    let _ = server.stop();
    result
}

fn subscribe_blocking(c: &Client, idx: usize, n: u64, payload: usize) -> BenchResult<Instant> {
    for next in 0..n {
        let msg = c
            .receive(Some(IO_TIMEOUT))
            .map_err(|e| format!("subscriber {idx} after {next} messages: {e}"))?
            .ok_or_else(|| format!("subscriber {idx} timed out after {next} of {n} messages"))?;
        check_data(&msg, next, payload)?;
    }
    let last = Instant::now();
    match c.receive(Some(Duration::from_millis(50))) {
        Ok(Some(_)) => Err(format!("subscriber {idx} got more than {n} messages")),
        _ => Ok(last),
    }
}

async fn subscribe_async(c: &Client, idx: usize, n: u64, payload: usize) -> BenchResult<Instant> {
    for next in 0..n {
        let msg = c
            .receive_async(Some(IO_TIMEOUT))
            .await
            .map_err(|e| format!("subscriber {idx} after {next} messages: {e}"))?
            .ok_or_else(|| format!("subscriber {idx} timed out after {next} of {n} messages"))?;
        check_data(&msg, next, payload)?;
    }
    let last = Instant::now();
    match c.receive_async(Some(Duration::from_millis(50))).await {
        Ok(Some(_)) => Err(format!("subscriber {idx} got more than {n} messages")),
        _ => Ok(last),
    }
}

/// Ping-pong: the client sends, the server gets `ServerEvent::Message` and
/// answers with `send_to` (unicast) to that client.
pub(crate) fn round_trip(api: Api, net: Net, payload: usize, plan: RttPlan) -> BenchResult<Rtt> {
    let s = setup(net, 8)?;
    let server = Server::new(Arc::clone(&s.transport), event_name(), &s.cfg).map_err(err("server"))?;
    let result = (|| {
        let mut msg = make_message(payload);
        let mut samples = Vec::with_capacity(plan.count as usize);
        match api {
            Api::Blocking => {
                server.start().map_err(err("server start"))?;
                spawn_echo(api, &server);
                let c = Client::connect(Arc::clone(&s.transport), event_name(), &s.cfg).map_err(err("connect"))?;
                let r = (|| -> BenchResult<()> {
                    let mut seq = 0u64;
                    let mut timed_start = Instant::now();
                    loop {
                        if seq == plan.warmup {
                            timed_start = Instant::now();
                        }
                        if seq >= plan.warmup && plan.done(seq - plan.warmup, timed_start) {
                            return Ok(());
                        }
                        let t = Instant::now();
                        set_seq(&mut msg, seq);
                        c.send(&msg).map_err(err("send"))?;
                        let reply = c.receive(Some(IO_TIMEOUT)).map_err(err("receive"))?.ok_or("no reply in time")?;
                        check_data(&reply, seq, payload)?;
                        if seq >= plan.warmup {
                            samples.push(t.elapsed().as_nanos() as u64);
                        }
                        seq += 1;
                    }
                })();
                c.disconnect();
                r?;
            }
            Api::Async => {
                futures_lite::future::block_on(server.start_async()).map_err(err("server start"))?;
                spawn_echo(api, &server);
                futures_lite::future::block_on(async {
                    let c = Client::connect_async(Arc::clone(&s.transport), event_name(), &s.cfg)
                        .await
                        .map_err(err("connect"))?;
                    let r = async {
                        let mut seq = 0u64;
                        let mut timed_start = Instant::now();
                        loop {
                            if seq == plan.warmup {
                                timed_start = Instant::now();
                            }
                            if seq >= plan.warmup && plan.done(seq - plan.warmup, timed_start) {
                                return Ok::<(), String>(());
                            }
                            let t = Instant::now();
                            set_seq(&mut msg, seq);
                            c.send_async(&msg).await.map_err(err("send"))?;
                            let reply = c
                                .receive_async(Some(IO_TIMEOUT))
                                .await
                                .map_err(err("receive"))?
                                .ok_or("no reply in time")?;
                            check_data(&reply, seq, payload)?;
                            if seq >= plan.warmup {
                                samples.push(t.elapsed().as_nanos() as u64);
                            }
                            seq += 1;
                        }
                    }
                    .await;
                    c.disconnect_async().await;
                    r
                })?;
            }
        }
        rtt_stats(samples)
    })();
    let _ = server.stop();
    result
}

/// Answers every client message with `send_to` on a thread of its own; ends when the server's event stream closes.
fn spawn_echo(api: Api, server: &Server) {
    let events = server.events();
    let server = server.clone();
    thread::spawn(move || -> BenchResult<()> {
        let handle = |ev: ServerEvent| -> BenchResult<()> {
            if let ServerEvent::Message { from, message } = ev {
                server.send_to(from, &message).map_err(err("send_to"))?;
            }
            Ok(())
        };
        match api {
            Api::Blocking => {
                while let Ok(ev) = events.recv_blocking() {
                    handle(ev)?;
                }
            }
            Api::Async => futures_lite::future::block_on(async {
                while let Ok(ev) = events.recv().await {
                    handle(ev)?;
                }
                Ok::<(), String>(())
            })?,
        }
        Ok(())
    });
}

/// One idle client of the memory test, connected to `address` (socket path or `host:port`).
pub(crate) fn idle_client(net: Net, address: &str, max: usize) -> BenchResult<Client> {
    let mut cfg = Config::default();
    cfg.socket.transport = net.name().to_owned();
    cfg.socket.unix.max_connections = max + 8;
    cfg.socket.tcp.max_connections = max + 8;
    match net {
        Net::Unix => {
            let dir = Path::new(address).parent().ok_or("socket path has no directory")?;
            cfg.socket.socket_dir = dir.to_path_buf();
        }
        Net::Tcp => {
            let port = address.rsplit(':').next().and_then(|p| p.parse().ok()).ok_or("address has no port")?;
            cfg.socket.tcp.port = Some(port);
        }
    }
    let transport = crate::serve::registry().get(net.name()).map_err(err("transport"))?;
    Client::connect(transport, event_name(), &cfg).map_err(err("connect"))
}
