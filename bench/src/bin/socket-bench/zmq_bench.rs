//! libzmq through the `zmq` crate: PUB/SUB for throughput, REQ/REP for the
//! round trip, with high-water marks that lose nothing (0 = unlimited; the
//! publisher is not paced, it queues as much as the subscribers lag).
//!
//! zmq frames messages itself, so each zmq message is the MessagePack body
//! (what follows the 4-byte header in our protocol), encoded with the same
//! `encode_frame` and decoded with the same `decode_body`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use socket_core::codec::{decode_body, encode_frame};

use crate::common::{
    check_seq, ctx, limits, make_message, publish, rate, rtt_stats, set_seq, sock_path, temp_dir, Abort, BenchResult,
    Net, Rtt, RttPlan, IO_TIMEOUT, MAX_FRAME,
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

fn subscriber(
    sub: zmq::Socket,
    idx: usize,
    n: u64,
    payload: usize,
    abort: &Abort,
    ready: &AtomicUsize,
) -> BenchResult<Instant> {
    let lim = limits();
    let mut msg = zmq::Message::new();
    let mut next = 0u64;
    let mut joined = false;
    while next < n {
        if abort.is_set() {
            return Err(format!("zmq subscriber {idx} stopped after {next} messages: another side failed"));
        }
        sub.recv(&mut msg, 0).map_err(|e| format!("zmq subscriber {idx} recv after {next} messages: {e}"))?;
        if &msg[..] == PROBE {
            if !joined {
                joined = true;
                ready.fetch_add(1, Ordering::AcqRel);
            }
            continue;
        }
        let m = decode_body(&msg, &lim).map_err(ctx("zmq subscriber decode"))?;
        check_seq(&m, next, payload)?;
        next += 1;
    }
    let last = Instant::now();
    // Nothing more may arrive.
    sub.set_rcvtimeo(50).map_err(ctx("ZMQ_RCVTIMEO"))?;
    match sub.recv(&mut msg, 0) {
        Err(zmq::Error::EAGAIN) => Ok(last),
        Err(e) => Err(format!("zmq subscriber {idx}: {e}")),
        Ok(()) => Err(format!("zmq subscriber {idx} got more than {n} messages")),
    }
}

/// PUB/SUB throughput: messages/s delivered to every one of `subs` subscribers.
pub(crate) fn throughput(net: Net, payload: usize, subs: usize, n: u64) -> BenchResult<f64> {
    let zctx = zmq::Context::new();
    let publ = zctx.socket(zmq::PUB).map_err(ctx("zmq socket"))?;
    publ.set_sndhwm(0).map_err(ctx("ZMQ_SNDHWM"))?;
    publ.set_linger(0).map_err(ctx("ZMQ_LINGER"))?;
    let (endpoint, _dir) = bind_endpoint(net)?;
    let endpoint = bind(&publ, &endpoint)?;
    let abort = Arc::new(Abort::default());
    let ready = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::with_capacity(subs);
    for idx in 0..subs {
        let sub = subscriber_socket(&zctx, &endpoint)?;
        let a = Arc::clone(&abort);
        let r = Arc::clone(&ready);
        readers.push(thread::spawn(move || {
            let res = subscriber(sub, idx, n, payload, &a, &r);
            if res.is_err() {
                a.set();
            }
            res
        }));
    }
    // Wait until every subscription reached the publisher.
    let deadline = Instant::now() + IO_TIMEOUT;
    while ready.load(Ordering::Acquire) < subs {
        if Instant::now() >= deadline {
            abort.set();
            return Err(format!("only {} of {subs} zmq subscribers joined", ready.load(Ordering::Acquire)));
        }
        publ.send(PROBE, 0).map_err(ctx("zmq send"))?;
        thread::sleep(Duration::from_millis(2));
    }
    let (start, failure) = publish(n, payload, &abort, |msg| {
        let frame = encode_frame(msg, MAX_FRAME).map_err(ctx("encode"))?;
        publ.send(frame.body(), 0).map_err(ctx("zmq send"))
    });
    let mut lasts = Vec::with_capacity(subs);
    for r in readers {
        lasts.push(r.join().map_err(|_| "subscriber thread panicked".to_owned())??);
    }
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(rate(n, start, &lasts))
}

/// REQ/REP ping-pong: REP decodes, re-encodes and replies.
pub(crate) fn round_trip(net: Net, payload: usize, plan: RttPlan) -> BenchResult<Rtt> {
    let zctx = zmq::Context::new();
    let rep = zctx.socket(zmq::REP).map_err(ctx("zmq socket"))?;
    rep.set_linger(0).map_err(ctx("ZMQ_LINGER"))?;
    rep.set_rcvtimeo(ms(IO_TIMEOUT)).map_err(ctx("ZMQ_RCVTIMEO"))?;
    let (endpoint, _dir) = bind_endpoint(net)?;
    let endpoint = bind(&rep, &endpoint)?;
    let server = thread::spawn(move || -> BenchResult<()> {
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
    });
    let req = zctx.socket(zmq::REQ).map_err(ctx("zmq socket"))?;
    req.set_linger(0).map_err(ctx("ZMQ_LINGER"))?;
    req.set_rcvtimeo(ms(IO_TIMEOUT)).map_err(ctx("ZMQ_RCVTIMEO"))?;
    req.connect(&endpoint).map_err(ctx("zmq connect"))?;
    let lim = limits();
    let mut reply = zmq::Message::new();
    let mut msg = make_message(payload);
    let mut samples = Vec::with_capacity(plan.count as usize);
    let mut seq = 0u64;
    let mut timed_start = Instant::now();
    let result = (|| -> BenchResult<()> {
        loop {
            if seq == plan.warmup {
                timed_start = Instant::now();
            }
            if seq >= plan.warmup && plan.done(seq - plan.warmup, timed_start) {
                return Ok(());
            }
            let t = Instant::now();
            set_seq(&mut msg, seq);
            let f = encode_frame(&msg, MAX_FRAME).map_err(ctx("encode"))?;
            req.send(f.body(), 0).map_err(ctx("zmq REQ send"))?;
            req.recv(&mut reply, 0).map_err(ctx("zmq REQ recv"))?;
            let m = decode_body(&reply, &lim).map_err(ctx("zmq REQ decode"))?;
            check_seq(&m, seq, payload)?;
            if seq >= plan.warmup {
                samples.push(t.elapsed().as_nanos() as u64);
            }
            seq += 1;
        }
    })();
    result?;
    req.send(QUIT, 0).map_err(ctx("zmq REQ send"))?;
    req.recv(&mut reply, 0).map_err(ctx("zmq REQ recv"))?;
    server.join().map_err(|_| "server thread panicked".to_owned())??;
    rtt_stats(samples)
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
