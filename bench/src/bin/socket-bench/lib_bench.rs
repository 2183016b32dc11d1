//! Our library through its public API: `socket_core::{Server, Client}` over the
//! transports of `socket_factory::default_registry()` (features `unix`, `tcp`),
//! once through the async API and once through the blocking API.
//!
//! The publisher is the application's main thread calling `Server::broadcast`
//! (a synchronous, non-blocking call in both APIs) in this process. Each
//! subscriber is a library `Client` in a child process of its own
//! (`__lib_sub`, this binary run again, `child.rs`), as the harness runs them:
//! with the async API it connects with `connect_async` and waits in
//! `receive_async` under `futures_lite::future::block_on`; with the blocking
//! API it calls `connect` and `Client::receive`. Each checks type, event name,
//! seq order and payload length of every message and says `done` at the n-th.
//! The server sees every subscriber connect before the first broadcast.
//!
//! The round trip's server is a child process too (`__lib_echo`, started with
//! `start_async` or `start`), its application thread answering every
//! `ServerEvent::Message` with `send_to`; the measuring client stays here. In
//! the pinned cells this process is pinned before the child is spawned, so the
//! child (and every thread it starts) inherits the same CPU.
//!
//! The publisher is not paced: `Server::broadcast` never blocks, and a client
//! whose outbound queue overflows is disconnected as a slow consumer. So, like
//! libzmq with high-water marks 0 and like the independent harness's `project`
//! contender, the throughput cells raise the server's per-client outbound queue
//! (`socket.outbound_queue_size` / `_bytes`) to hold the whole run; everything
//! else is the default configuration. A slow-consumer disconnect or a dropped
//! message still fails the cell (the server's statistics are checked after it).

use std::path::Path;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use socket_core::config::{MAX_QUEUE_BYTES, MAX_QUEUE_LEN};
use socket_core::server::ServerEvent;
use socket_core::{Client, Config, Server, Transport};

use crate::child::{arg, say, Children};
use crate::common::{
    check_message, event_name, free_port, make_message, publish, rate, rtt_stats, set_seq, temp_dir, BenchResult, Net,
    Rtt, RttPlan, IO_TIMEOUT,
};

/// Which public API drives the library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    /// `start_async`, `connect_async`, `receive_async`, `send_async`.
    Async,
    /// `start`, `connect`, `receive`, `send`.
    Blocking,
}

impl Api {
    /// Command-line key of a child process.
    fn key(self) -> &'static str {
        match self {
            Api::Async => "async",
            Api::Blocking => "blocking",
        }
    }

    fn parse(s: &str) -> BenchResult<Api> {
        match s {
            "async" => Ok(Api::Async),
            "blocking" => Ok(Api::Blocking),
            other => Err(format!("unknown API {other:?}: expected async or blocking")),
        }
    }
}

fn err(what: &'static str) -> impl Fn(socket_core::Error) -> String {
    move |e| format!("{what}: {e} ({:?})", e.kind())
}

/// The transport of `net` from the facade's registry.
fn transport(net: Net) -> BenchResult<Arc<dyn Transport>> {
    crate::serve::registry().get(net.name()).map_err(err("transport"))
}

/// A fresh address of one cell (see [`config`]): a socket directory (a new temp dir,
/// which must outlive the cell) or a free TCP port.
fn fresh_address(net: Net) -> BenchResult<(String, Option<tempfile::TempDir>)> {
    match net {
        Net::Unix => {
            let dir = temp_dir()?;
            Ok((dir.path().display().to_string(), Some(dir)))
        }
        Net::Tcp => Ok((free_port()?.to_string(), None)),
    }
}

/// The configuration of a cell's clients, in whichever process: the defaults, except the
/// transport and its address `addr` (the socket directory for Unix, the port for TCP), and no
/// reconnect.
fn config(net: Net, addr: &str) -> BenchResult<Config> {
    let mut cfg = Config::default();
    cfg.socket.transport = net.name().to_owned();
    match net {
        Net::Unix => cfg.socket.socket_dir = addr.into(),
        Net::Tcp => cfg.socket.tcp.port = Some(arg(addr, "port")?),
    }
    // As in the harness: a lost connection fails the cell instead of being papered over by a
    // reconnect.
    cfg.socket.auto_reconnect = false;
    Ok(cfg)
}

/// The configuration of a cell's server: [`config`] with room for `max_connections` clients.
fn server_config(net: Net, addr: &str, max_connections: usize) -> BenchResult<Config> {
    let mut cfg = config(net, addr)?;
    cfg.socket.unix.max_connections = max_connections;
    cfg.socket.tcp.max_connections = max_connections;
    Ok(cfg)
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
/// in the throughput test), passing on one `()` per connected client.
fn connections(server: &Server) -> Receiver<()> {
    let (tx, rx) = mpsc::channel();
    let events = server.events();
    thread::spawn(move || {
        while let Ok(ev) = events.recv_blocking() {
            if matches!(ev, ServerEvent::Connected(_)) {
                let _ = tx.send(());
            }
        }
    });
    rx
}

/// Waits (at most [`IO_TIMEOUT`]) until the server has seen `n` clients connect.
fn wait_connected(connected: &Receiver<()>, n: usize) -> BenchResult<()> {
    let deadline = Instant::now() + IO_TIMEOUT;
    for have in 0..n {
        connected
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|_| format!("server saw {have} of {n} clients"))?;
    }
    Ok(())
}

/// Broadcast throughput: messages/s delivered to every one of `subs` subscribers, each
/// a child process (`__lib_sub`) using `api`; the end is when the last of them said its
/// n-th message came.
pub(crate) fn throughput(api: Api, net: Net, payload: usize, subs: usize, n: u64) -> BenchResult<f64> {
    let (addr, _dir) = fresh_address(net)?;
    let mut cfg = server_config(net, &addr, subs + 8)?;
    queue_whole_run(&mut cfg, n, payload);
    let server = Server::new(transport(net)?, event_name(), &cfg).map_err(err("server"))?;
    let connected = connections(&server);
    let result = (|| {
        match api {
            Api::Blocking => server.start(),
            Api::Async => futures_lite::future::block_on(server.start_async()),
        }
        .map_err(err("server start"))?;
        let mut kids = Children::spawn("library subscriber", "__lib_sub", subs, |idx| {
            let args = [api.key(), net.name(), &addr, &n.to_string(), &payload.to_string(), &idx.to_string()];
            args.map(str::to_owned).to_vec()
        })?;
        kids.wait_all("ready")?;
        // A client that said `ready` has its `welcome`; the server must count it too, so
        // that no broadcast misses a subscriber.
        wait_connected(&connected, subs)?;
        let start = publish(n, payload, |msg| server.broadcast(msg).map_err(err("broadcast")))?;
        let done = kids.wait_all("done").and_then(|done| kids.finish().map(|()| done));
        // The server's view tells a slow-consumer disconnect from a lost message;
        // either fails the cell even when every subscriber got its messages.
        let st = server.stats();
        let done = match done {
            Ok(_) if st.slow_consumers > 0 || st.dropped > 0 => Err("the server lost messages".to_owned()),
            other => other,
        };
        let done = done.map_err(|e| {
            format!(
                "{e} (server: {} slow consumers, {} dropped, {} sent)",
                st.slow_consumers, st.dropped, st.messages_sent
            )
        })?;
        let lasts: Vec<Instant> = done.into_iter().map(|(_, at)| at).collect();
        Ok(rate(n, start, &lasts))
    })();
    let _ = server.stop();
    result
}

/// `__lib_sub API NET ADDR N PAYLOAD IDX`: one subscriber of the throughput cell in a
/// process of its own, as the harness runs its subscribers: connects through `API`
/// (`receive_async` under `block_on` for the async one), says `ready`, receives and
/// checks `N` messages, says `done`, fails if one more arrives within 50 ms, disconnects.
pub(crate) fn subscriber_child(args: &[String]) -> BenchResult<()> {
    let [api, net, addr, n, payload, idx] = args else {
        return Err("usage: __lib_sub async|blocking NET ADDR N PAYLOAD IDX".to_owned());
    };
    let (api, net) = (Api::parse(api)?, Net::parse(net)?);
    let (n, payload, idx): (u64, usize, usize) = (arg(n, "N")?, arg(payload, "PAYLOAD")?, arg(idx, "IDX")?);
    let (cfg, t) = (config(net, addr)?, transport(net)?);
    match api {
        Api::Blocking => {
            let c = Client::connect(t, event_name(), &cfg).map_err(err("connect"))?;
            say("ready");
            let r = subscribe_blocking(&c, idx, n, payload);
            c.disconnect();
            r
        }
        Api::Async => futures_lite::future::block_on(async {
            let c = Client::connect_async(t, event_name(), &cfg).await.map_err(err("connect"))?;
            say("ready");
            let r = subscribe_async(&c, idx, n, payload).await;
            c.disconnect_async().await;
            r
        }),
    }
}

fn subscribe_blocking(c: &Client, idx: usize, n: u64, payload: usize) -> BenchResult<()> {
    for next in 0..n {
        let msg = c
            .receive(Some(IO_TIMEOUT))
            .map_err(|e| format!("subscriber {idx} after {next} messages: {e}"))?
            .ok_or_else(|| format!("subscriber {idx} timed out after {next} of {n} messages"))?;
        check_message(&msg, next, payload)?;
    }
    say("done");
    match c.receive(Some(Duration::from_millis(50))) {
        Ok(Some(_)) => Err(format!("subscriber {idx} got more than {n} messages")),
        _ => Ok(()),
    }
}

async fn subscribe_async(c: &Client, idx: usize, n: u64, payload: usize) -> BenchResult<()> {
    for next in 0..n {
        let msg = c
            .receive_async(Some(IO_TIMEOUT))
            .await
            .map_err(|e| format!("subscriber {idx} after {next} messages: {e}"))?
            .ok_or_else(|| format!("subscriber {idx} timed out after {next} of {n} messages"))?;
        check_message(&msg, next, payload)?;
    }
    say("done");
    match c.receive_async(Some(Duration::from_millis(50))).await {
        Ok(Some(_)) => Err(format!("subscriber {idx} got more than {n} messages")),
        _ => Ok(()),
    }
}

/// Ping-pong: the client (here) sends, the server (a child process, `__lib_echo`) gets
/// `ServerEvent::Message` and answers with `send_to` (unicast) to that client.
pub(crate) fn round_trip(api: Api, net: Net, payload: usize, plan: RttPlan) -> BenchResult<Rtt> {
    let (addr, _dir) = fresh_address(net)?;
    let mut peer = Children::spawn("library echo server", "__lib_echo", 1, |_| {
        [api.key(), net.name(), &addr].map(str::to_owned).to_vec()
    })?;
    peer.wait_all("ready")?;
    let (cfg, t) = (config(net, &addr)?, transport(net)?);
    let mut msg = make_message(payload);
    let mut run = plan.start();
    let result = match api {
        Api::Blocking => {
            let c = Client::connect(t, event_name(), &cfg).map_err(err("connect"))?;
            let r = (|| -> BenchResult<()> {
                while let Some(seq) = run.begin() {
                    let t = Instant::now();
                    set_seq(&mut msg, seq);
                    c.send(&msg).map_err(err("send"))?;
                    let reply = c.receive(Some(IO_TIMEOUT)).map_err(err("receive"))?.ok_or("no reply in time")?;
                    run.record(t);
                    check_message(&reply, seq, payload)?;
                }
                Ok(())
            })();
            c.disconnect();
            r
        }
        Api::Async => futures_lite::future::block_on(async {
            let c = Client::connect_async(t, event_name(), &cfg).await.map_err(err("connect"))?;
            let r = async {
                while let Some(seq) = run.begin() {
                    let t = Instant::now();
                    set_seq(&mut msg, seq);
                    c.send_async(&msg).await.map_err(err("send"))?;
                    let reply =
                        c.receive_async(Some(IO_TIMEOUT)).await.map_err(err("receive"))?.ok_or("no reply in time")?;
                    run.record(t);
                    check_message(&reply, seq, payload)?;
                }
                Ok::<(), String>(())
            }
            .await;
            c.disconnect_async().await;
            r
        }),
    };
    // Its client gone, the echo server ends; its own failure explains the client's.
    peer.finish()?;
    result?;
    rtt_stats(run.samples())
}

/// `__lib_echo API NET ADDR`: the round trip's server in a process of its own, as in the
/// harness: starts through `API`, says `ready`, and its application thread answers every
/// `ServerEvent::Message` with `send_to` until its client disconnects.
pub(crate) fn echo_child(args: &[String]) -> BenchResult<()> {
    let [api, net, addr] = args else {
        return Err("usage: __lib_echo async|blocking NET ADDR".to_owned());
    };
    let (api, net) = (Api::parse(api)?, Net::parse(net)?);
    let server = Server::new(transport(net)?, event_name(), &server_config(net, addr, 8)?).map_err(err("server"))?;
    let events = server.events();
    let served = (|| -> BenchResult<()> {
        // `Ok(false)` once the client is gone.
        let handle = |ev: ServerEvent| -> BenchResult<bool> {
            match ev {
                ServerEvent::Message { from, message } => {
                    server.send_to(from, &message).map_err(err("send_to"))?;
                    Ok(true)
                }
                ServerEvent::Disconnected { .. } => Ok(false),
                _ => Ok(true),
            }
        };
        let client_left = match api {
            Api::Blocking => {
                server.start().map_err(err("server start"))?;
                say("ready");
                let mut left = false;
                while let Ok(ev) = events.recv_blocking() {
                    if !handle(ev)? {
                        left = true;
                        break;
                    }
                }
                left
            }
            Api::Async => futures_lite::future::block_on(async {
                server.start_async().await.map_err(err("server start"))?;
                say("ready");
                while let Ok(ev) = events.recv().await {
                    if !handle(ev)? {
                        return Ok(true);
                    }
                }
                Ok::<bool, String>(false)
            })?,
        };
        if client_left {
            Ok(())
        } else {
            Err("the server's event stream ended before its client left".to_owned())
        }
    })();
    let _ = server.stop();
    served
}

/// One idle client of the memory test, connected to `address` (socket path or `host:port`).
pub(crate) fn idle_client(net: Net, address: &str) -> BenchResult<Client> {
    let addr = match net {
        Net::Unix => Path::new(address).parent().ok_or("socket path has no directory")?.display().to_string(),
        Net::Tcp => address.rsplit(':').next().ok_or("address has no port")?.to_owned(),
    };
    Client::connect(transport(net)?, event_name(), &config(net, &addr)?).map_err(err("connect"))
}
