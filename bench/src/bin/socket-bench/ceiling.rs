//! The ceiling: plain std sockets, one blocking thread per connection, the
//! same 4-byte framing and MessagePack encoding as the library.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Instant;

use socket_core::codec::{decode_body, encode_frame, FrameDecoder};

use crate::common::{
    check_seq, ctx, limits, make_message, publish, rate, rtt_stats, set_seq, sock_path, temp_dir, BenchResult, Net,
    Pacer, Rtt, RttPlan, IO_TIMEOUT, MAX_FRAME, READ_BUF,
};

/// A connected stream of either kind.
#[derive(Debug)]
pub(crate) enum Stream {
    /// Unix domain socket.
    Unix(UnixStream),
    /// TCP with `TCP_NODELAY`.
    Tcp(TcpStream),
}

impl Stream {
    /// Connects to `addr` (a socket path or `host:port`).
    pub(crate) fn connect(net: Net, addr: &str) -> BenchResult<Stream> {
        let s = match net {
            Net::Unix => Stream::Unix(UnixStream::connect(addr).map_err(ctx("unix connect"))?),
            Net::Tcp => {
                let s = TcpStream::connect(addr).map_err(ctx("tcp connect"))?;
                s.set_nodelay(true).map_err(ctx("TCP_NODELAY"))?;
                Stream::Tcp(s)
            }
        };
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        Ok(s)
    }

    fn set_read_timeout(&self, t: Option<std::time::Duration>) -> BenchResult<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tcp(s) => s.set_read_timeout(t),
        }
        .map_err(ctx("SO_RCVTIMEO"))
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A listening socket of either kind.
#[derive(Debug)]
pub(crate) enum Listener {
    /// Unix domain socket.
    Unix(UnixListener),
    /// TCP.
    Tcp(TcpListener),
}

impl Listener {
    /// Binds `addr` (a socket path, or `host:port`, port 0 for any).
    pub(crate) fn bind(net: Net, addr: &str) -> BenchResult<Listener> {
        Ok(match net {
            Net::Unix => Listener::Unix(UnixListener::bind(addr).map_err(ctx("unix bind"))?),
            Net::Tcp => Listener::Tcp(TcpListener::bind(addr).map_err(ctx("tcp bind"))?),
        })
    }

    /// The address clients connect to.
    pub(crate) fn address(&self) -> BenchResult<String> {
        match self {
            Listener::Unix(l) => {
                let a = l.local_addr().map_err(ctx("local_addr"))?;
                a.as_pathname().map(|p| p.display().to_string()).ok_or_else(|| "unnamed unix socket".to_owned())
            }
            Listener::Tcp(l) => Ok(l.local_addr().map_err(ctx("local_addr"))?.to_string()),
        }
    }

    /// Accepts one connection.
    pub(crate) fn accept(&self) -> BenchResult<Stream> {
        Ok(match self {
            Listener::Unix(l) => Stream::Unix(l.accept().map_err(ctx("unix accept"))?.0),
            Listener::Tcp(l) => {
                let s = l.accept().map_err(ctx("tcp accept"))?.0;
                s.set_nodelay(true).map_err(ctx("TCP_NODELAY"))?;
                Stream::Tcp(s)
            }
        })
    }
}

/// A listener on a fresh address; the temp dir must outlive it.
fn listen(net: Net) -> BenchResult<(Listener, String, Option<tempfile::TempDir>)> {
    match net {
        Net::Unix => {
            let dir = temp_dir()?;
            let path = sock_path(&dir, "ceiling.sock");
            let l = Listener::bind(net, &path.display().to_string())?;
            let addr = l.address()?;
            Ok((l, addr, Some(dir)))
        }
        Net::Tcp => {
            let l = Listener::bind(net, "127.0.0.1:0")?;
            let addr = l.address()?;
            Ok((l, addr, None))
        }
    }
}

/// Reads frames from `s` until `n` messages arrived in order; returns the time of the last receipt.
/// Then reads on until end of stream and fails on any extra frame.
fn subscriber(mut s: Stream, idx: usize, n: u64, payload: usize, pacer: &Pacer) -> BenchResult<Instant> {
    let lim = limits();
    let mut dec = FrameDecoder::new(lim);
    let mut next = 0u64;
    let mut last = None;
    loop {
        let k = s.read(dec.spare(READ_BUF)).map_err(ctx("subscriber read"))?;
        if k == 0 {
            break;
        }
        dec.commit(k);
        while let Some(body) = dec.next_frame().map_err(ctx("subscriber framing"))? {
            let msg = decode_body(body, &lim).map_err(ctx("subscriber decode"))?;
            if next >= n {
                return Err(format!("subscriber {idx} got more than {n} messages"));
            }
            check_seq(&msg, next, payload)?;
            next += 1;
            pacer.delivered(idx, next);
            if next == n {
                last = Some(Instant::now());
            }
        }
    }
    last.ok_or_else(|| format!("subscriber {idx} got {next} of {n} messages before end of stream"))
}

/// The bytes waiting for one server-side connection thread.
///
/// The publisher appends each encoded frame to every connection's outbox; the
/// connection thread takes the whole outbox at once and writes it with one
/// `write_all`, so writes batch themselves whenever the socket is the
/// bottleneck. The publisher wakes a parked connection thread only once
/// [`KICK_BYTES`] are waiting, or before it stops to wait for subscribers.
#[derive(Debug, Default)]
struct Outbox {
    state: Mutex<OutboxState>,
    ready: Condvar,
}

#[derive(Debug, Default)]
struct OutboxState {
    buf: Vec<u8>,
    parked: bool,
    closed: bool,
}

/// Bytes a parked connection thread lets accumulate before it is woken.
const KICK_BYTES: usize = 16 * 1024;

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, frame: &[u8]) {
        let mut st = self.lock();
        st.buf.extend_from_slice(frame);
        if st.parked && st.buf.len() >= KICK_BYTES {
            st.parked = false;
            self.ready.notify_one();
        }
    }

    /// Wakes the connection thread if anything waits.
    fn kick(&self) {
        let mut st = self.lock();
        if st.parked && !st.buf.is_empty() {
            st.parked = false;
            self.ready.notify_one();
        }
    }

    fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        self.ready.notify_one();
    }
}

/// One server-side connection thread: writes everything put in its outbox, in order.
fn writer(outbox: &Outbox, mut s: Stream) -> BenchResult<()> {
    let mut out = Vec::new();
    loop {
        {
            let mut st = outbox.lock();
            while st.buf.is_empty() && !st.closed {
                st.parked = true;
                st = outbox.ready.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
            st.parked = false;
            if st.buf.is_empty() && st.closed {
                return Ok(());
            }
            std::mem::swap(&mut st.buf, &mut out);
        }
        s.write_all(&out).map_err(ctx("server write"))?;
        out.clear();
    }
}

/// Broadcast throughput: messages/s delivered to every one of `subs` subscribers.
pub(crate) fn throughput(net: Net, payload: usize, subs: usize, n: u64) -> BenchResult<f64> {
    let (listener, addr, _dir) = listen(net)?;
    let pacer = Arc::new(Pacer::new(subs));
    let mut readers = Vec::with_capacity(subs);
    let mut writers = Vec::with_capacity(subs);
    let mut outboxes: Vec<Arc<Outbox>> = Vec::with_capacity(subs);
    for idx in 0..subs {
        let c = Stream::connect(net, &addr)?;
        let sc = listener.accept()?;
        let p = Arc::clone(&pacer);
        readers.push(thread::spawn(move || {
            let r = subscriber(c, idx, n, payload, &p);
            if r.is_err() {
                p.abort();
            }
            r
        }));
        let outbox = Arc::new(Outbox::default());
        outboxes.push(Arc::clone(&outbox));
        writers.push(thread::spawn(move || writer(&outbox, sc)));
    }
    let (start, failure) = publish(
        n,
        payload,
        &pacer,
        || outboxes.iter().for_each(|o| o.kick()),
        |msg| {
            let frame = encode_frame(msg, MAX_FRAME).map_err(ctx("encode"))?;
            for o in &outboxes {
                o.push(frame.as_bytes());
            }
            Ok(())
        },
    );
    outboxes.iter().for_each(|o| o.close());
    for w in writers {
        w.join().map_err(|_| "writer thread panicked".to_owned())??;
    }
    let mut lasts = Vec::with_capacity(subs);
    for r in readers {
        lasts.push(r.join().map_err(|_| "subscriber thread panicked".to_owned())??);
    }
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(rate(n, start, &lasts))
}

/// Reads one frame and decodes it.
fn read_message(s: &mut Stream, dec: &mut FrameDecoder) -> BenchResult<Option<socket_core::SocketMessage>> {
    let lim = limits();
    loop {
        if let Some(body) = dec.next_frame().map_err(ctx("framing"))? {
            return decode_body(body, &lim).map(Some).map_err(ctx("decode"));
        }
        let k = s.read(dec.spare(READ_BUF)).map_err(ctx("read"))?;
        if k == 0 {
            return Ok(None);
        }
        dec.commit(k);
    }
}

/// Ping-pong: the client sends, the server decodes, re-encodes and sends it back.
pub(crate) fn round_trip(net: Net, payload: usize, plan: RttPlan) -> BenchResult<Rtt> {
    let (listener, addr, _dir) = listen(net)?;
    let mut client = Stream::connect(net, &addr)?;
    let mut sc = listener.accept()?;
    sc.set_read_timeout(Some(IO_TIMEOUT))?;
    let server = thread::spawn(move || -> BenchResult<()> {
        let mut dec = FrameDecoder::new(limits());
        while let Some(msg) = read_message(&mut sc, &mut dec)? {
            let f = encode_frame(&msg, MAX_FRAME).map_err(ctx("encode"))?;
            sc.write_all(f.as_bytes()).map_err(ctx("server write"))?;
        }
        Ok(())
    });
    let mut dec = FrameDecoder::new(limits());
    let mut msg = make_message(payload);
    let mut samples = Vec::with_capacity(plan.count as usize);
    let mut seq = 0u64;
    let mut timed_start = Instant::now();
    loop {
        if seq == plan.warmup {
            timed_start = Instant::now();
        }
        if seq >= plan.warmup && plan.done(seq - plan.warmup, timed_start) {
            break;
        }
        let t = Instant::now();
        set_seq(&mut msg, seq);
        let f = encode_frame(&msg, MAX_FRAME).map_err(ctx("encode"))?;
        client.write_all(f.as_bytes()).map_err(ctx("client write"))?;
        let reply = read_message(&mut client, &mut dec)?.ok_or("server closed the connection")?;
        check_seq(&reply, seq, payload)?;
        if seq >= plan.warmup {
            samples.push(t.elapsed().as_nanos() as u64);
        }
        seq += 1;
    }
    drop(client);
    server.join().map_err(|_| "server thread panicked".to_owned())??;
    rtt_stats(samples)
}
