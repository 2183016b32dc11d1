//! libzmq through the `zmq` crate: PUB/SUB for throughput, REQ/REP for the
//! round trip, with high-water marks that lose nothing (0 = unlimited; the
//! publisher is not paced, it queues as much as the subscribers lag).
//!
//! zmq frames messages itself, so each zmq message is the MessagePack body
//! (what follows the 4-byte header in our protocol), encoded with the same
//! `encode_frame` and decoded with the same `decode_body`.
//!
//! As in the harness, each SUB subscriber is a child process (`__zmq_sub`,
//! this binary run again, `child.rs`) that says `ready` when the first probe
//! of the publisher reaches it, and the REP side of the round trip is a child
//! process too (`__zmq_echo`, spawned after the pinned cells pin this process,
//! so it inherits the CPU); the PUB publisher and the REQ client stay here.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use socket_core::codec::{decode_body, encode_frame};

use crate::child::{arg, say, Children};
use crate::common::{
    check_message, ctx, limits, make_message, publish, rate, rtt_stats, set_seq, sock_path, temp_dir, BenchResult, Net,
    Rtt, RttPlan, IO_TIMEOUT, MAX_FRAME,
};

/// A probe message sent until every subscriber is connected (the slow-joiner problem).
const PROBE: &[u8] = b"P";
/// Tells the REP side to stop.
const QUIT: &[u8] = b"Q";

fn ms(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// A bind endpoint for `net` and the temp dir that must outlive it.
pub(crate) fn bind_endpoint(net: Net) -> BenchResult<(String, Option<tempfile::TempDir>)> {
    match net {
        Net::Unix => {
            let dir = temp_dir()?;
            let path = sock_path(&dir, "zmq.ipc");
            Ok((format!("ipc://{}", path.display()), Some(dir)))
        }
        Net::Tcp => Ok(("tcp://127.0.0.1:*".to_owned(), None)),
    }
}

/// Binds `socket` and returns the concrete endpoint clients connect to.
pub(crate) fn bind(socket: &zmq::Socket, endpoint: &str) -> BenchResult<String> {
    socket.bind(endpoint).map_err(ctx("zmq bind"))?;
    match socket.get_last_endpoint().map_err(ctx("zmq last endpoint"))? {
        Ok(e) => Ok(e),
        Err(_) => Err("zmq endpoint is not UTF-8".into()),
    }
}

/// A SUB socket subscribed to everything, connected to `endpoint`.
pub(crate) fn subscriber_socket(zctx: &zmq::Context, endpoint: &str) -> BenchResult<zmq::Socket> {
    let sub = zctx.socket(zmq::SUB).map_err(ctx("zmq socket"))?;
    sub.set_rcvhwm(0).map_err(ctx("ZMQ_RCVHWM"))?;
    sub.set_linger(0).map_err(ctx("ZMQ_LINGER"))?;
    sub.set_rcvtimeo(ms(IO_TIMEOUT)).map_err(ctx("ZMQ_RCVTIMEO"))?;
    sub.set_subscribe(b"").map_err(ctx("ZMQ_SUBSCRIBE"))?;
    sub.connect(endpoint).map_err(ctx("zmq connect"))?;
    Ok(sub)
}

/// `__zmq_sub ENDPOINT N PAYLOAD IDX`: one SUB subscriber of the throughput cell in a
/// process of its own, as the harness runs its subscribers: connects, says `ready` when
/// the first probe reaches it, receives and checks `N` messages, says `done`, and fails
/// if one more arrives within 50 ms.
pub(crate) fn subscriber_child(args: &[String]) -> BenchResult<()> {
    let [endpoint, n, payload, idx] = args else {
        return Err("usage: __zmq_sub ENDPOINT N PAYLOAD IDX".to_owned());
    };
    let (n, payload, idx): (u64, usize, usize) = (arg(n, "N")?, arg(payload, "PAYLOAD")?, arg(idx, "IDX")?);
    let zctx = zmq::Context::new();
    let sub = subscriber_socket(&zctx, endpoint)?;
    let lim = limits();
    let mut msg = zmq::Message::new();
    let mut next = 0u64;
    let mut joined = false;
    while next < n {
        sub.recv(&mut msg, 0).map_err(|e| format!("zmq subscriber {idx} recv after {next} messages: {e}"))?;
        if &msg[..] == PROBE {
            if !joined {
                joined = true;
                say("ready");
            }
            continue;
        }
        let m = decode_body(&msg, &lim).map_err(ctx("zmq subscriber decode"))?;
        check_message(&m, next, payload)?;
        next += 1;
    }
    say("done");
    // Nothing more may arrive.
    sub.set_rcvtimeo(50).map_err(ctx("ZMQ_RCVTIMEO"))?;
    match sub.recv(&mut msg, 0) {
        Err(zmq::Error::EAGAIN) => Ok(()),
        Err(e) => Err(format!("zmq subscriber {idx}: {e}")),
        Ok(()) => Err(format!("zmq subscriber {idx} got more than {n} messages")),
    }
}

/// PUB/SUB throughput: messages/s delivered to every one of `subs` subscribers, each a
/// child process (`__zmq_sub`); the end is when the last of them said its n-th message came.
pub(crate) fn throughput(net: Net, payload: usize, subs: usize, n: u64) -> BenchResult<f64> {
    let zctx = zmq::Context::new();
    let publ = zctx.socket(zmq::PUB).map_err(ctx("zmq socket"))?;
    publ.set_sndhwm(0).map_err(ctx("ZMQ_SNDHWM"))?;
    publ.set_linger(0).map_err(ctx("ZMQ_LINGER"))?;
    let (endpoint, _dir) = bind_endpoint(net)?;
    let endpoint = bind(&publ, &endpoint)?;
    let mut kids = Children::spawn("zmq subscriber", "__zmq_sub", subs, |idx| {
        [endpoint.as_str(), &n.to_string(), &payload.to_string(), &idx.to_string()].map(str::to_owned).to_vec()
    })?;
    // Probes until every subscription reached the publisher (the slow-joiner problem).
    kids.wait_all_ticking("ready", Duration::from_millis(2), || publ.send(PROBE, 0).map_err(ctx("zmq send")))?;
    let start = publish(n, payload, |msg| {
        let frame = encode_frame(msg, MAX_FRAME).map_err(ctx("encode"))?;
        publ.send(frame.body(), 0).map_err(ctx("zmq send"))
    })?;
    let done = kids.wait_all("done")?;
    kids.finish()?;
    let lasts: Vec<Instant> = done.into_iter().map(|(_, at)| at).collect();
    Ok(rate(n, start, &lasts))
}

/// `__zmq_echo ENDPOINT`: the REP side of the round trip in a process of its own, as in
/// the harness: binds `ENDPOINT`, says `ready <endpoint>`, then decodes, re-encodes and
/// replies to every request until [`QUIT`].
pub(crate) fn echo_child(args: &[String]) -> BenchResult<()> {
    let [endpoint] = args else {
        return Err("usage: __zmq_echo ENDPOINT".to_owned());
    };
    let zctx = zmq::Context::new();
    let rep = zctx.socket(zmq::REP).map_err(ctx("zmq socket"))?;
    rep.set_linger(0).map_err(ctx("ZMQ_LINGER"))?;
    rep.set_rcvtimeo(ms(IO_TIMEOUT)).map_err(ctx("ZMQ_RCVTIMEO"))?;
    say(&format!("ready {}", bind(&rep, endpoint)?));
    let lim = limits();
    let mut msg = zmq::Message::new();
    loop {
        rep.recv(&mut msg, 0).map_err(ctx("zmq REP recv"))?;
        if &msg[..] == QUIT {
            rep.send(QUIT, 0).map_err(ctx("zmq REP send"))?;
            return Ok(());
        }
        let m = decode_body(&msg, &lim).map_err(ctx("zmq REP decode"))?;
        let f = encode_frame(&m, MAX_FRAME).map_err(ctx("encode"))?;
        rep.send(f.body(), 0).map_err(ctx("zmq REP send"))?;
    }
}

/// REQ/REP ping-pong: the REQ side here, the REP side a child process (`__zmq_echo`).
pub(crate) fn round_trip(net: Net, payload: usize, plan: RttPlan) -> BenchResult<Rtt> {
    let (endpoint, _dir) = bind_endpoint(net)?;
    let mut peer = Children::spawn("zmq echo peer", "__zmq_echo", 1, |_| vec![endpoint.clone()])?;
    let endpoint = peer.wait_all("ready")?.remove(0).0;
    let zctx = zmq::Context::new();
    let req = zctx.socket(zmq::REQ).map_err(ctx("zmq socket"))?;
    req.set_linger(0).map_err(ctx("ZMQ_LINGER"))?;
    req.set_rcvtimeo(ms(IO_TIMEOUT)).map_err(ctx("ZMQ_RCVTIMEO"))?;
    req.connect(&endpoint).map_err(ctx("zmq connect"))?;
    let lim = limits();
    let mut reply = zmq::Message::new();
    let mut msg = make_message(payload);
    let mut run = plan.start();
    let result = (|| -> BenchResult<()> {
        while let Some(seq) = run.begin() {
            let t = Instant::now();
            set_seq(&mut msg, seq);
            let f = encode_frame(&msg, MAX_FRAME).map_err(ctx("encode"))?;
            req.send(f.body(), 0).map_err(ctx("zmq REQ send"))?;
            req.recv(&mut reply, 0).map_err(ctx("zmq REQ recv"))?;
            let m = decode_body(&reply, &lim).map_err(ctx("zmq REQ decode"))?;
            run.record(t);
            check_message(&m, seq, payload)?;
        }
        req.send(QUIT, 0).map_err(ctx("zmq REQ send"))?;
        req.recv(&mut reply, 0).map_err(ctx("zmq REQ recv"))?;
        Ok(())
    })();
    match result {
        Ok(()) => peer.finish().and_then(|()| rtt_stats(run.samples())),
        // A failed client never sends QUIT: the peer is stopped, not waited for.
        Err(e) => Err(peer.stop(e)),
    }
}

/// The idle PUB server of the memory test (child process). Returns the
/// endpoint, the socket (keep it alive) and the count of accepted connections.
pub(crate) fn serve_idle(
    net: Net,
    endpoint: &str,
) -> BenchResult<(String, zmq::Context, zmq::Socket, Arc<AtomicUsize>)> {
    let zctx = zmq::Context::new();
    let publ = zctx.socket(zmq::PUB).map_err(ctx("zmq socket"))?;
    publ.set_sndhwm(0).map_err(ctx("ZMQ_SNDHWM"))?;
    publ.set_linger(0).map_err(ctx("ZMQ_LINGER"))?;
    publ.monitor("inproc://bench-monitor", zmq::SocketEvent::ACCEPTED as i32).map_err(ctx("zmq monitor"))?;
    let mon = zctx.socket(zmq::PAIR).map_err(ctx("zmq socket"))?;
    mon.connect("inproc://bench-monitor").map_err(ctx("zmq monitor connect"))?;
    let endpoint = match net {
        Net::Unix => format!("ipc://{endpoint}"),
        Net::Tcp => format!("tcp://{endpoint}"),
    };
    let address = bind(&publ, &endpoint)?;
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    thread::spawn(move || {
        // Each event is two frames: 6 bytes (u16 event, u32 value), then the endpoint.
        while let Ok(frames) = mon.recv_multipart(0) {
            if let Some(first) = frames.first() {
                if first.len() >= 2 && u16::from_ne_bytes([first[0], first[1]]) == zmq::SocketEvent::ACCEPTED.to_raw() {
                    count.fetch_add(1, Ordering::AcqRel);
                }
            }
        }
    });
    Ok((address, zctx, publ, accepted))
}
