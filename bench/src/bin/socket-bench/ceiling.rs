//! The ceiling: "raw-std" exactly as the independent harness defines it
//! (`bench-peers`, `src/raw_std.rs` and `src/msg.rs`).
//!
//! * Blocking std sockets (`TCP_NODELAY` for TCP), each end wrapped in a
//!   `BufWriter` / `BufReader` of 64 KiB, frames with a 4-byte big-endian length
//!   prefix.
//! * The message is a typed struct, [`MsgRef`] / [`Msg`] (`event_name`,
//!   `timestamp_ms`, `timestamp_iso`, `message_type`, `data = {seq, payload}`),
//!   encoded with `rmp_serde::to_vec_named` (a MessagePack map with named
//!   fields, the shape of the library's wire format).
//! * Throughput: one publisher thread encodes each message once and writes the
//!   same bytes to every subscriber connection in turn; no window, no writer
//!   threads, one flush at the end. A full socket blocks the publisher in
//!   `write` (that is its flow control). Each subscriber reads frames with
//!   `read_exact` and decodes every one fully into the owned [`Msg`] (every
//!   string and the payload allocated), checking seq order, payload size,
//!   message type and event name.
//! * Round trip: the client encodes and sends one message and flushes; the echo
//!   peer decodes it fully, re-encodes it and sends it back; the client decodes
//!   the reply.
//!
//! The throughput cell's subscribers (`__ceiling_sub`) and the round trip's
//! echo peer (`__ceiling_echo`) are child processes, as in the harness (this
//! binary run again, `child.rs`): as threads of the publisher's process the
//! ceiling read 7-23 % below the harness's in the same hour. The publisher and
//! the pinging client stay in this process. In the pinned round-trip cells this
//! process is pinned to one CPU before the echo peer is spawned, so the peer
//! inherits that CPU, as the harness's child inherits `taskset -c 0`. And where
//! the harness counts a bad frame and goes on, a wrong, missing or extra
//! message here fails the cell.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::child::{arg, say, Children};
use crate::common::{
    ctx, payload_bytes, rate, rtt_stats, sock_path, temp_dir, BenchResult, Net, Rtt, RttPlan, EVENT, IO_TIMEOUT,
    MAX_FRAME,
};

/// Capacity of every `BufReader` and `BufWriter` (the harness's `BUF`).
const BUF: usize = 64 * 1024;

/// The harness's fixed ISO time stamp (`msg::TS_ISO`).
const TS_ISO: &str = "2026-11-27T03:10:10.123+00:00";

/// The harness's message type (`msg::MESSAGE_TYPE`).
const MESSAGE_TYPE: &str = "data";

/// `data` of the publisher's message, borrowed (no per-message payload copy).
#[derive(Serialize)]
struct DataRef<'a> {
    seq: u64,
    #[serde(with = "serde_bytes")]
    payload: &'a [u8],
}

/// The publisher's message, borrowed (the harness's `msg::MsgRef`).
#[derive(Serialize)]
struct MsgRef<'a> {
    event_name: &'a str,
    timestamp_ms: u64,
    timestamp_iso: &'a str,
    message_type: &'a str,
    data: DataRef<'a>,
}

/// `data` of a received message, owned.
#[derive(Serialize, Deserialize, Debug)]
struct Data {
    seq: u64,
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
}

/// A received message, owned: decoding allocates every string and the payload (the harness's `msg::Msg`).
#[derive(Serialize, Deserialize, Debug)]
struct Msg {
    event_name: String,
    timestamp_ms: u64,
    timestamp_iso: String,
    message_type: String,
    data: Data,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Encodes message `seq` with `payload` (the harness's `Encoder::encode`).
fn encode(seq: u64, payload: &[u8]) -> BenchResult<Vec<u8>> {
    let m = MsgRef {
        event_name: EVENT,
        timestamp_ms: now_ms(),
        timestamp_iso: TS_ISO,
        message_type: MESSAGE_TYPE,
        data: DataRef { seq, payload },
    };
    rmp_serde::to_vec_named(&m).map_err(ctx("encode"))
}

fn decode(body: &[u8]) -> BenchResult<Msg> {
    rmp_serde::from_slice(body).map_err(ctx("decode"))
}

/// The subscriber's check (the harness's `msg::Checker::feed`), failing instead of counting.
fn check(m: &Msg, want: u64, payload: usize) -> BenchResult<()> {
    if m.data.seq != want {
        return Err(format!("out of order: expected seq {want}, got {}", m.data.seq));
    }
    if m.data.payload.len() != payload {
        return Err(format!("payload of seq {want} has {} bytes, expected {payload}", m.data.payload.len()));
    }
    if m.message_type != MESSAGE_TYPE || m.event_name != EVENT {
        return Err(format!("seq {want}: unexpected message type {:?} or event {:?}", m.message_type, m.event_name));
    }
    Ok(())
}

fn write_frame<W: Write>(w: &mut W, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len()).map_err(|_| io::Error::other("frame too large"))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(body)
}

/// Reads one frame into `buf`; `false` on a clean end of stream before it.
fn read_frame<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> BenchResult<bool> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(format!("read: {e}")),
    }
    let n = u32::from_be_bytes(len) as usize;
    if n > MAX_FRAME {
        return Err(format!("frame of {n} bytes is larger than {MAX_FRAME}"));
    }
    buf.resize(n, 0);
    r.read_exact(buf).map_err(ctx("read"))?;
    Ok(true)
}

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

    fn set_read_timeout(&self, t: Option<Duration>) -> BenchResult<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tcp(s) => s.set_read_timeout(t),
        }
        .map_err(ctx("SO_RCVTIMEO"))
    }

    fn set_write_timeout(&self, t: Option<Duration>) -> BenchResult<()> {
        match self {
            Stream::Unix(s) => s.set_write_timeout(t),
            Stream::Tcp(s) => s.set_write_timeout(t),
        }
        .map_err(ctx("SO_SNDTIMEO"))
    }

    fn try_clone(&self) -> BenchResult<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone().map_err(ctx("unix try_clone"))?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone().map_err(ctx("tcp try_clone"))?),
        })
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
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
        }
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

/// A fresh address to bind (a socket path in a new temp dir, which must outlive
/// it, or `127.0.0.1:0` for any port).
fn fresh_address(net: Net) -> BenchResult<(String, Option<tempfile::TempDir>)> {
    match net {
        Net::Unix => {
            let dir = temp_dir()?;
            Ok((sock_path(&dir, "ceiling.sock").display().to_string(), Some(dir)))
        }
        Net::Tcp => Ok(("127.0.0.1:0".to_owned(), None)),
    }
}

/// A listener on a fresh address, the address clients connect to and the temp dir that must outlive it.
fn listen(net: Net) -> BenchResult<(Listener, String, Option<tempfile::TempDir>)> {
    let (addr, dir) = fresh_address(net)?;
    let l = Listener::bind(net, &addr)?;
    let addr = l.address()?;
    Ok((l, addr, dir))
}

/// Reads frames until `n` messages arrived in order, then calls `last` (the n-th receipt);
/// then reads on until end of stream and fails on any extra frame.
fn subscriber(s: Stream, idx: usize, n: u64, payload: usize, last: impl FnOnce()) -> BenchResult<()> {
    let mut r = BufReader::with_capacity(BUF, s);
    let mut buf = Vec::with_capacity(payload + 256);
    let mut next = 0u64;
    let mut last = Some(last);
    while read_frame(&mut r, &mut buf).map_err(|e| format!("subscriber {idx} after {next} messages: {e}"))? {
        if next >= n {
            return Err(format!("subscriber {idx} got more than {n} messages"));
        }
        check(&decode(&buf)?, next, payload)?;
        next += 1;
        if next == n {
            if let Some(last) = last.take() {
                last();
            }
        }
    }
    if next < n {
        return Err(format!("subscriber {idx} got {next} of {n} messages before end of stream"));
    }
    Ok(())
}

/// `__ceiling_sub NET ADDR N PAYLOAD IDX`: one subscriber of the throughput cell in a
/// process of its own, as the harness runs its subscribers: connects, says `ready`, reads
/// and checks `N` messages, says `done`, and reads on until end of stream.
pub(crate) fn subscriber_child(args: &[String]) -> BenchResult<()> {
    let [net, addr, n, payload, idx] = args else {
        return Err("usage: __ceiling_sub NET ADDR N PAYLOAD IDX".to_owned());
    };
    let s = Stream::connect(Net::parse(net)?, addr)?;
    say("ready");
    subscriber(s, arg(idx, "IDX")?, arg(n, "N")?, arg(payload, "PAYLOAD")?, || say("done"))
}

/// `__ceiling_echo NET ADDR`: the echo peer of the round trip in a process of its own, as
/// in the harness: binds `ADDR` (a socket path, or `127.0.0.1:0`), says `ready <address>`,
/// serves one connection until end of stream.
pub(crate) fn echo_child(args: &[String]) -> BenchResult<()> {
    let [net, addr] = args else {
        return Err("usage: __ceiling_echo NET ADDR".to_owned());
    };
    let listener = Listener::bind(Net::parse(net)?, addr)?;
    say(&format!("ready {}", listener.address()?));
    let s = listener.accept()?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    echo(s)
}

/// Broadcast throughput: messages/s delivered to every one of `subs` subscribers. The
/// subscribers are processes, as in the harness; the end is when the last of them has said
/// that its n-th message came (the harness's `wait_done`).
pub(crate) fn throughput(net: Net, payload: usize, subs: usize, n: u64) -> BenchResult<f64> {
    let (listener, addr, _dir) = listen(net)?;
    let mut kids = Children::spawn("ceiling subscriber", "__ceiling_sub", subs, |idx| {
        vec![net.name().to_owned(), addr.clone(), n.to_string(), payload.to_string(), idx.to_string()]
    })?;
    let mut conns = Vec::with_capacity(subs);
    for _ in 0..subs {
        let sc = listener.accept()?;
        // A stuck subscriber fails the cell instead of blocking the publisher for ever.
        sc.set_write_timeout(Some(IO_TIMEOUT))?;
        conns.push(BufWriter::with_capacity(BUF, sc));
    }
    kids.wait_all("ready")?;
    let bytes = payload_bytes(payload);
    let start = Instant::now();
    let published = (|| -> BenchResult<()> {
        for seq in 0..n {
            let body = encode(seq, &bytes)?;
            for c in &mut conns {
                write_frame(c, &body).map_err(ctx("publisher write"))?;
            }
        }
        for c in &mut conns {
            c.flush().map_err(ctx("publisher flush"))?;
        }
        Ok(())
    })();
    let done = published.and_then(|()| kids.wait_all("done"));
    // End of stream for every subscriber (also after a failure, so none waits for more).
    drop(conns);
    // A subscriber's own failure explains the publisher's broken pipe: it comes first.
    kids.finish()?;
    let lasts: Vec<Instant> = done?.into_iter().map(|(_, at)| at).collect();
    Ok(rate(n, start, &lasts))
}

/// The echo peer: decodes every frame fully, re-encodes it and sends it back.
fn echo(s: Stream) -> BenchResult<()> {
    let mut r = BufReader::with_capacity(BUF, s.try_clone()?);
    let mut w = BufWriter::with_capacity(BUF, s);
    let mut buf = Vec::new();
    while read_frame(&mut r, &mut buf)? {
        let out = rmp_serde::to_vec_named(&decode(&buf)?).map_err(ctx("echo encode"))?;
        write_frame(&mut w, &out).map_err(ctx("echo write"))?;
        w.flush().map_err(ctx("echo flush"))?;
    }
    Ok(())
}

/// Ping-pong: the client (here) encodes and sends, the echo peer (a child process,
/// `__ceiling_echo`) decodes, re-encodes and sends it back, the client decodes.
pub(crate) fn round_trip(net: Net, payload: usize, plan: RttPlan) -> BenchResult<Rtt> {
    let (bind, _dir) = fresh_address(net)?;
    let mut peer =
        Children::spawn("ceiling echo peer", "__ceiling_echo", 1, |_| vec![net.name().to_owned(), bind.clone()])?;
    let addr = peer.wait_all("ready")?.remove(0).0;
    let client = Stream::connect(net, &addr)?;
    let bytes = payload_bytes(payload);
    let result = (|| -> BenchResult<Vec<u64>> {
        let mut r = BufReader::with_capacity(BUF, client.try_clone()?);
        let mut w = BufWriter::with_capacity(BUF, client.try_clone()?);
        let mut buf = Vec::new();
        let mut run = plan.start();
        while let Some(seq) = run.begin() {
            let t = Instant::now();
            let body = encode(seq, &bytes)?;
            write_frame(&mut w, &body).map_err(ctx("client write"))?;
            w.flush().map_err(ctx("client flush"))?;
            if !read_frame(&mut r, &mut buf)? {
                return Err("the echo peer closed the connection".into());
            }
            let reply = decode(&buf)?;
            run.record(t);
            check(&reply, seq, payload)?;
        }
        Ok(run.samples())
    })();
    // End of stream for the echo peer.
    drop(client);
    // The peer's own failure explains the client's.
    peer.finish()?;
    rtt_stats(result?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_the_harness_message() {
        let b = encode(7, &payload_bytes(64)).unwrap();
        // A fixmap of 5 entries with named fields, 187 bytes for 64 B as the harness's frame_B.
        assert_eq!(b[0], 0x85);
        assert_eq!(b.len(), 187);
        let m = decode(&b).unwrap();
        check(&m, 7, 64).unwrap();
        assert!(check(&m, 8, 64).is_err());
        assert!(check(&m, 7, 65).is_err());
        let again = rmp_serde::to_vec_named(&m).unwrap();
        assert_eq!(again, b);
    }

    #[test]
    fn frames_round_trip_and_end_cleanly() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"abc").unwrap();
        assert_eq!(&wire[..4], &[0, 0, 0, 3]);
        let mut r = &wire[..];
        let mut buf = Vec::new();
        assert!(read_frame(&mut r, &mut buf).unwrap());
        assert_eq!(buf, b"abc");
        assert!(!read_frame(&mut r, &mut buf).unwrap());
    }
}
