//! The harness of the reliability tests: fixtures per transport, raw byte-level peers, fake
//! servers, child processes, isolation of a test in its own process, heap and fd accounting.

use std::collections::HashMap;
use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use peak_alloc::PeakAlloc;
use socket_factory::codec::{decode_body, encode_frame, FrameDecoder, Limits};
use socket_factory::control::{Control, ErrorCode};
use socket_factory::{
    Client, ClientOptions, Config, Data, EventName, Server, ServerEvent, ServerOptions, SocketMessage,
    TransportRegistry,
};

/// Counts every heap byte of the process (all threads), for the heap-bound rows (Q4, F3, F4, F6).
#[global_allocator]
pub(crate) static HEAP: PeakAlloc = PeakAlloc;

pub(crate) type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Fails the test with a message (in a function returning [`TestResult`]).
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+).into());
        }
    };
}
pub(crate) use ensure;

/// One `#[test]` per compiled-in transport for a function `fn(Net) -> TestResult`, in a module
/// named after the scenario: `<module>::unix` and `<module>::tcp`. With one name, the module and
/// the function share it.
macro_rules! on_both {
    ($name:ident) => {
        $crate::reliability::harness::on_both!($name, $name);
    };
    ($name:ident, $f:ident) => {
        mod $name {
            #[cfg(feature = "unix")]
            #[test]
            fn unix() -> $crate::reliability::harness::TestResult {
                super::$f($crate::reliability::harness::Net::Unix, concat!(module_path!(), "::unix"))
            }
            #[cfg(feature = "tcp")]
            #[test]
            fn tcp() -> $crate::reliability::harness::TestResult {
                super::$f($crate::reliability::harness::Net::Tcp, concat!(module_path!(), "::tcp"))
            }
        }
    };
}
pub(crate) use on_both;

/// The transport under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Net {
    Unix,
    Tcp,
}

impl Net {
    pub(crate) fn scheme(self) -> &'static str {
        match self {
            Net::Unix => "unix",
            Net::Tcp => "tcp",
        }
    }

    fn parse(s: &str) -> Option<Net> {
        match s {
            "unix" => Some(Net::Unix),
            "tcp" => Some(Net::Tcp),
            _ => None,
        }
    }
}

pub(crate) use socket_tests::util::free_port;

/// The configuration of a test: its own socket dir or port, and short deadlines (frame 1 s,
/// write stall 1 s, reconnects from 50 ms to 500 ms) so scenarios stay fast.
pub(crate) fn test_config(net: Net, dir: &Path, port: u16) -> Config {
    let mut c = Config::default();
    c.socket.transport = net.scheme().to_owned();
    c.socket.socket_dir = dir.join("s");
    c.socket.tcp.port = Some(port);
    c.socket.default_timeout = 3.0;
    c.socket.frame_timeout = 1.0;
    c.socket.write_stall_timeout = 1.0;
    c.socket.reconnect_initial_delay = 0.05;
    c.socket.reconnect_max_delay = 0.5;
    c
}

/// A test's fixture: temp dir, port, configuration, registry and event.
pub(crate) struct Fx {
    pub(crate) net: Net,
    pub(crate) config: Config,
    pub(crate) registry: TransportRegistry,
    pub(crate) event: EventName,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) port: u16,
}

impl Fx {
    pub(crate) fn new(net: Net) -> TestResult<Fx> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        Ok(Fx {
            net,
            config: test_config(net, dir.path(), port),
            registry: socket_factory::default_registry(),
            event: EventName::new("rel_event")?,
            dir,
            port,
        })
    }

    pub(crate) fn transport(&self) -> TestResult<Arc<dyn socket_factory::Transport>> {
        Ok(socket_factory::transport(&self.registry, self.net.scheme())?)
    }

    pub(crate) fn options(&self) -> TestResult<ServerOptions> {
        Ok(ServerOptions::from_config(&self.config, self.transport()?.as_ref())?)
    }

    /// A started server with options adjusted by `f`.
    pub(crate) fn server_with(&self, f: impl FnOnce(&mut ServerOptions)) -> TestResult<Server> {
        let mut o = self.options()?;
        f(&mut o);
        let server = Server::with_options(self.transport()?, self.event.clone(), self.config.clone(), o)?;
        server.start()?;
        Ok(server)
    }

    pub(crate) fn server(&self) -> TestResult<Server> {
        self.server_with(|_| {})
    }

    /// Connects a client with options adjusted by `f`.
    pub(crate) fn client_with(&self, f: impl FnOnce(&mut ClientOptions)) -> socket_factory::Result<Client> {
        let mut o = ClientOptions::from_config(&self.config)?;
        f(&mut o);
        let transport = socket_factory::transport(&self.registry, self.net.scheme())?;
        Client::connect_with(transport, self.event.clone(), self.config.clone(), o)
    }

    pub(crate) fn client(&self) -> socket_factory::Result<Client> {
        self.client_with(|_| {})
    }

    /// Where the server listens, for raw peers and child processes.
    pub(crate) fn addr(&self) -> Addr {
        match self.net {
            Net::Unix => Addr::Unix(self.config.socket.socket_dir.join(format!("{}.sock", self.event))),
            Net::Tcp => Addr::Tcp(format!("127.0.0.1:{}", self.port)),
        }
    }

    pub(crate) fn raw(&self) -> io::Result<Raw> {
        Raw::connect(&self.addr(), self.event.clone())
    }

    /// A DATA message `{"seq": seq}` (plus `pad` bytes of padding when non-zero).
    pub(crate) fn data(&self, seq: u64, pad: usize) -> SocketMessage {
        let mut d = Data::new().with("seq", seq);
        if pad > 0 {
            d = d.with("pad", "x".repeat(pad));
        }
        SocketMessage::data(self.event.clone(), d)
    }
}

/// `data.seq` of a message.
pub(crate) fn seq(m: &SocketMessage) -> Option<u64> {
    m.data.get("seq").and_then(|v| v.as_u64())
}

/// A server address as raw peers and child processes see it.
#[derive(Debug, Clone)]
pub(crate) enum Addr {
    Unix(PathBuf),
    Tcp(String),
}

impl Addr {
    fn encode(&self) -> String {
        match self {
            Addr::Unix(p) => format!("unix:{}", p.display()),
            Addr::Tcp(a) => format!("tcp:{a}"),
        }
    }

    fn decode(s: &str) -> Option<Addr> {
        let (kind, rest) = s.split_once(':')?;
        match kind {
            "unix" => Some(Addr::Unix(PathBuf::from(rest))),
            "tcp" => Some(Addr::Tcp(rest.to_owned())),
            _ => None,
        }
    }
}

/// A blocking byte stream over either transport.
#[derive(Debug)]
pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    pub(crate) fn connect(addr: &Addr) -> io::Result<Stream> {
        Ok(match addr {
            Addr::Unix(p) => Stream::Unix(UnixStream::connect(p)?),
            Addr::Tcp(a) => {
                let s = TcpStream::connect(a.as_str())?;
                s.set_nodelay(true)?;
                Stream::Tcp(s)
            }
        })
    }

    pub(crate) fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tcp(s) => s.set_read_timeout(t),
        }
    }

    pub(crate) fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_nonblocking(on),
            Stream::Tcp(s) => s.set_nonblocking(on),
        }
    }

    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.shutdown(how),
            Stream::Tcp(s) => s.shutdown(how),
        }
    }

    pub(crate) fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
        })
    }

    /// Makes the next close send a TCP RST instead of a FIN (no-op on Unix sockets).
    pub(crate) fn linger_zero(&self) -> io::Result<()> {
        match self {
            Stream::Unix(_) => Ok(()),
            Stream::Tcp(s) => Ok(rustix::net::sockopt::set_socket_linger(s, Some(Duration::ZERO))?),
        }
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

/// What a [`Raw`] peer read.
#[derive(Debug)]
pub(crate) enum RawEvent {
    Msg(SocketMessage),
    Eof,
    Timeout,
}

/// A raw peer: writes bytes as they are, reads frames strictly (any undecodable frame fails).
#[derive(Debug)]
pub(crate) struct Raw {
    pub(crate) s: Stream,
    dec: FrameDecoder,
    event: EventName,
}

/// The frame of `msg`.
pub(crate) fn frame_of(msg: &SocketMessage) -> Vec<u8> {
    encode_frame(msg, usize::MAX).map(|f| f.as_bytes().to_vec()).unwrap_or_default()
}

/// A `hello` frame for `event` with protocol `protocol`.
pub(crate) fn hello_frame(event: &EventName, protocol: u64, name: Option<&str>) -> Vec<u8> {
    let msg =
        Control::Hello { protocol, client_name: name.map(str::to_owned) }.to_message(event, &jiff::tz::TimeZone::UTC);
    frame_of(&msg)
}

impl Raw {
    pub(crate) fn connect(addr: &Addr, event: EventName) -> io::Result<Raw> {
        Ok(Raw::from_stream(Stream::connect(addr)?, event))
    }

    pub(crate) fn from_stream(s: Stream, event: EventName) -> Raw {
        Raw { s, dec: FrameDecoder::new(Limits::default()), event }
    }

    pub(crate) fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.s.write_all(bytes)
    }

    /// Sends `hello` and expects `welcome` first; returns the client id.
    pub(crate) fn hello(&mut self, name: Option<&str>) -> TestResult<String> {
        let f = hello_frame(&self.event, 1, name);
        self.send(&f)?;
        match self.next(Duration::from_secs(5))? {
            RawEvent::Msg(m) => match Control::parse(&m) {
                Some(Ok(Control::Welcome { client_id, .. })) => Ok(client_id),
                _ => Err(format!("expected welcome first, got {m:?}").into()),
            },
            other => Err(format!("expected welcome, got {other:?}").into()),
        }
    }

    /// The next message, end-of-stream (also a reset) or timeout.
    pub(crate) fn next(&mut self, timeout: Duration) -> TestResult<RawEvent> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 16 * 1024];
        loop {
            if let Some(body) = self.dec.next_frame().map_err(|e| format!("bad frame from the server: {e}"))? {
                let msg = decode_body(body, &Limits::default()).map_err(|e| format!("undecodable frame: {e}"))?;
                return Ok(RawEvent::Msg(msg));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(RawEvent::Timeout);
            }
            self.s.set_read_timeout(Some(left))?;
            match self.s.read(&mut buf) {
                Ok(0) => {
                    ensure!(!self.dec.in_frame(), "the server closed the stream inside a frame");
                    return Ok(RawEvent::Eof);
                }
                Ok(n) => self.dec.feed(&buf[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) => {
                    return Ok(RawEvent::Eof)
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The next message, or an error naming `what`.
    pub(crate) fn expect_msg(&mut self, timeout: Duration, what: &str) -> TestResult<SocketMessage> {
        match self.next(timeout)? {
            RawEvent::Msg(m) => Ok(m),
            other => Err(format!("expected {what}, got {other:?}").into()),
        }
    }

    /// Expects an ERROR message with `code` (skipping nothing).
    pub(crate) fn expect_error(&mut self, code: ErrorCode, timeout: Duration) -> TestResult<String> {
        let m = self.expect_msg(timeout, &format!("an ERROR {code}"))?;
        match ErrorCode::parse(&m) {
            Some((c, text)) if c == code => Ok(text),
            _ => Err(format!("expected ERROR {code}, got {m:?}").into()),
        }
    }

    /// Expects end-of-stream within `timeout` (no message before it); returns how long it took.
    pub(crate) fn expect_eof(&mut self, timeout: Duration) -> TestResult<Duration> {
        let t = Instant::now();
        match self.next(timeout)? {
            RawEvent::Eof => Ok(t.elapsed()),
            other => Err(format!("expected end-of-stream within {timeout:?}, got {other:?}").into()),
        }
    }
}

/// Runs `f` on its own thread; fails if it does not finish within `secs` seconds or panics.
pub(crate) fn watchdog<T: Send + 'static>(
    secs: u64,
    f: impl FnOnce() -> TestResult<T> + Send + 'static,
) -> TestResult<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(r) => r,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            Err(format!("watchdog: the test did not finish within {secs} s").into())
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => Err("the test thread panicked".into()),
    }
}

/// Polls `cond` every 5 ms until it holds; fails after `timeout` naming `what`.
pub(crate) fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) -> TestResult<Duration> {
    let t = Instant::now();
    loop {
        if cond() {
            return Ok(t.elapsed());
        }
        if t.elapsed() > timeout {
            return Err(format!("timed out after {timeout:?} waiting for {what}").into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for a server event matching `pred`, skipping others.
pub(crate) fn expect_event(
    events: &async_channel::Receiver<ServerEvent>,
    timeout: Duration,
    what: &str,
    mut pred: impl FnMut(&ServerEvent) -> bool,
) -> TestResult<ServerEvent> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = socket_factory::runtime::block_on(async { futures_lite_or(events.recv(), left).await });
        match ev {
            Some(Ok(ev)) if pred(&ev) => return Ok(ev),
            Some(Ok(_)) => {}
            Some(Err(_)) => return Err(format!("the event stream ended while waiting for {what}").into()),
            None => return Err(format!("no {what} within {timeout:?}").into()),
        }
    }
}

/// The next item of `rx` within `timeout`; `None` when the time runs out or `rx` is closed.
pub(crate) fn recv_within<T>(rx: &async_channel::Receiver<T>, timeout: Duration) -> Option<T> {
    socket_factory::runtime::block_on(futures_lite_or(rx.recv(), timeout)).and_then(Result::ok)
}

/// `fut` or `None` after `t`.
async fn futures_lite_or<T>(fut: impl std::future::Future<Output = T>, t: Duration) -> Option<T> {
    let timer = async {
        async_io::Timer::after(t).await;
        None
    };
    let fut = async { Some(fut.await) };
    race(fut, timer).await
}

/// The first of two futures to finish (`a` is polled first).
pub(crate) async fn race<T>(a: impl std::future::Future<Output = T>, b: impl std::future::Future<Output = T>) -> T {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(v) = a.as_mut().poll(cx) {
            return std::task::Poll::Ready(v);
        }
        b.as_mut().poll(cx)
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Process-level accounting

/// Open file descriptors of this process.
pub(crate) fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// Threads of this process.
pub(crate) fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

/// CPU time (user + system) this process used so far.
pub(crate) fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return Duration::ZERO };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 overall, 12 and 13 here (0-based: 11, 12).
    let ticks: u64 = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // The kernel's USER_HZ is 100 on every Linux configuration we run on.
    Duration::from_millis(ticks * 10)
}

/// TCP sockets in CLOSE_WAIT whose local or remote port is `port`.
pub(crate) fn close_wait_on(port: u16) -> usize {
    let mut n = 0;
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 || f[3] != "08" {
                continue;
            }
            let port_of = |a: &str| a.rsplit_once(':').and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if port_of(f[1]) == Some(port) || port_of(f[2]) == Some(port) {
                n += 1;
            }
        }
    }
    n
}

/// Heap bytes in use by the whole process now.
pub(crate) fn heap_now() -> usize {
    HEAP.current_usage()
}

// ---------------------------------------------------------------------------------------------
// Isolation: run a test body in a fresh process of this test binary

const ISOLATED: &str = "SOCKET_TEST_ISOLATED";
const ROLE: &str = "SOCKET_TEST_ROLE";

/// The libtest name of a test from its `module_path!()`-based name (`index::a::b` → `a::b`).
pub(crate) fn test_name(full: &str) -> &str {
    full.split_once("::").map_or(full, |(_, rest)| rest)
}

/// Runs `f` in a new process of this test binary that runs only test `name`, so process-wide
/// measurements (heap, fds, threads, CPU) see nothing of the other tests. In that process
/// (marked by an environment variable) `f` runs directly.
pub(crate) fn isolated(name: &str, secs: u64, f: impl FnOnce() -> TestResult) -> TestResult {
    let name = test_name(name);
    if std::env::var(ISOLATED).as_deref() == Ok(name) {
        return f();
    }
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args([name, "--exact", "--test-threads=1", "--nocapture"]).env(ISOLATED, name).env_remove(ROLE);
    let out = run_with_deadline(cmd, Duration::from_secs(secs))?;
    ensure!(
        out.success && out.stdout.contains("1 passed"),
        "isolated run of {name} failed:\n--- stdout\n{}\n--- stderr\n{}",
        out.stdout,
        out.stderr
    );
    // Show the child's measurements in the parent's output.
    for line in out.stdout.lines().filter(|l| l.starts_with("measured:")) {
        println!("{line}");
    }
    Ok(())
}

struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

fn run_with_deadline(mut cmd: Command, deadline: Duration) -> TestResult<Output> {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let mut so = child.stdout.take().ok_or("no stdout")?;
    let mut se = child.stderr.take().ok_or("no stderr")?;
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    match status {
        Some(s) => Ok(Output { success: s.success(), stdout, stderr }),
        None => Err(format!("child process killed after {deadline:?}:\n{stdout}\n{stderr}").into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes with a role (a server or client to SIGKILL / SIGSTOP)

/// A role a child process plays, passed in the environment.
#[derive(Debug, Clone)]
pub(crate) enum Role {
    /// Serves `event` on `net` (config from `dir`, `port`); with `publish_ms` > 0 broadcasts
    /// `{"seq": n}` every `publish_ms` ms.
    Server { net: Net, dir: PathBuf, port: u16, publish_ms: u64 },
    /// A client (engine) named `name` that reads everything and prints its state changes.
    Client { net: Net, dir: PathBuf, port: u16, name: String },
    /// A raw peer that says hello, then writes half a frame and waits.
    HalfFrame { addr: String },
}

impl Role {
    fn encode(&self) -> String {
        match self {
            Role::Server { net, dir, port, publish_ms } => {
                format!("server|{}|{}|{port}|{publish_ms}", net.scheme(), dir.display())
            }
            Role::Client { net, dir, port, name } => format!("client|{}|{}|{port}|{name}", net.scheme(), dir.display()),
            Role::HalfFrame { addr } => format!("half|{addr}"),
        }
    }

    fn decode(s: &str) -> Option<Role> {
        let parts: Vec<&str> = s.split('|').collect();
        match parts.as_slice() {
            ["server", net, dir, port, ms] => Some(Role::Server {
                net: Net::parse(net)?,
                dir: PathBuf::from(dir),
                port: port.parse().ok()?,
                publish_ms: ms.parse().ok()?,
            }),
            ["client", net, dir, port, name] => Some(Role::Client {
                net: Net::parse(net)?,
                dir: PathBuf::from(dir),
                port: port.parse().ok()?,
                name: (*name).to_owned(),
            }),
            ["half", addr] => Some(Role::HalfFrame { addr: (*addr).to_owned() }),
            _ => None,
        }
    }
}

impl Fx {
    pub(crate) fn server_role(&self, publish_ms: u64) -> Role {
        Role::Server { net: self.net, dir: self.dir.path().to_owned(), port: self.port, publish_ms }
    }
    pub(crate) fn client_role(&self, name: &str) -> Role {
        Role::Client { net: self.net, dir: self.dir.path().to_owned(), port: self.port, name: name.to_owned() }
    }
    pub(crate) fn half_frame_role(&self) -> Role {
        Role::HalfFrame { addr: self.addr().encode() }
    }
}

/// If this process is a child started with a role for test `name`, plays it and returns its
/// result; the test function then returns that instead of running the scenario.
pub(crate) fn play_role(name: &str) -> Option<TestResult> {
    let name = test_name(name);
    let role = std::env::var(ROLE).ok()?;
    let (for_test, role) = role.split_once('#')?;
    if for_test != name {
        return None;
    }
    let role = Role::decode(role)?;
    Some(run_role(role))
}

/// Exits this process when the parent closes our stdin (the parent died or is done).
fn exit_with_parent() {
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = io::stdin().read_to_end(&mut sink);
        std::process::exit(0);
    });
}

fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "@@{line}");
    let _ = out.flush();
}

fn run_role(role: Role) -> TestResult {
    exit_with_parent();
    match role {
        Role::Server { net, dir, port, publish_ms } => {
            let config = test_config(net, &dir, port);
            let registry = socket_factory::default_registry();
            let server = socket_factory::create_server(&registry, &config, "rel_event")?;
            server.start()?;
            say("READY");
            let event = EventName::new("rel_event")?;
            let mut n = 0u64;
            loop {
                if publish_ms > 0 {
                    server.broadcast(&SocketMessage::data(event.clone(), Data::new().with("seq", n)))?;
                    n += 1;
                    std::thread::sleep(Duration::from_millis(publish_ms));
                } else {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        Role::Client { net, dir, port, name } => {
            let config = test_config(net, &dir, port);
            let registry = socket_factory::default_registry();
            let transport = socket_factory::transport(&registry, net.scheme())?;
            let mut o = ClientOptions::from_config(&config)?;
            o.client_name = Some(name);
            let client = Client::connect_with(transport, EventName::new("rel_event")?, config, o)?;
            let states = client.state_changes();
            std::thread::spawn(move || {
                while let Ok(s) = states.recv_blocking() {
                    say(&format!("STATE {s:?}"));
                }
            });
            say(&format!("READY {}", client.client_id().unwrap_or_default()));
            loop {
                match client.receive(Some(Duration::from_secs(1))) {
                    Ok(Some(m)) => {
                        if let Some((code, _)) = ErrorCode::parse(&m) {
                            say(&format!("ERROR {code}"));
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        say(&format!("CLOSED {e}"));
                        return Ok(());
                    }
                }
            }
        }
        Role::HalfFrame { addr } => {
            let addr = Addr::decode(&addr).ok_or("bad address")?;
            let mut raw = Raw::connect(&addr, EventName::new("rel_event")?)?;
            let id = raw.hello(Some("half-frame"))?;
            let msg = SocketMessage::data(EventName::new("rel_event")?, Data::new().with("seq", 1u64));
            let frame = frame_of(&msg);
            raw.send(&frame[..frame.len() / 2])?;
            say(&format!("READY {id}"));
            loop {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// A running child process playing a role; killed when dropped.
pub(crate) struct Peer {
    child: Child,
    lines: mpsc::Receiver<String>,
    _stdin: Option<std::process::ChildStdin>,
}

impl Peer {
    /// Starts this test binary running test `name` as `role`, and waits for its `READY` line.
    pub(crate) fn start(name: &str, role: &Role) -> TestResult<(Peer, String)> {
        let name = test_name(name);
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args([name, "--exact", "--test-threads=1", "--nocapture"])
            .env(ROLE, format!("{name}#{}", role.encode()))
            .env_remove(ISOLATED)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest may have printed "test <name> ... " on the same line.
                if let Some(l) = line.find("@@").map(|i| &line[i + 2..]) {
                    if tx.send(l.to_owned()).is_err() {
                        break;
                    }
                }
            }
        });
        let mut peer = Peer { child, lines: rx, _stdin: stdin };
        let ready = peer.expect_line(Duration::from_secs(15), |l| l.starts_with("READY"))?;
        let arg = ready.strip_prefix("READY").unwrap_or("").trim().to_owned();
        Ok((peer, arg))
    }

    /// Waits for an output line matching `pred`.
    pub(crate) fn expect_line(&mut self, timeout: Duration, mut pred: impl FnMut(&str) -> bool) -> TestResult<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if pred(&l) => return Ok(l),
                Ok(_) => {}
                Err(_) => return Err(format!("the child did not print the expected line within {timeout:?}").into()),
            }
        }
    }

    pub(crate) fn pid(&self) -> rustix::process::Pid {
        rustix::process::Pid::from_child(&self.child)
    }

    pub(crate) fn signal(&self, sig: rustix::process::Signal) -> TestResult {
        Ok(rustix::process::kill_process(self.pid(), sig)?)
    }

    /// SIGKILL, then reap.
    pub(crate) fn kill(&mut self) -> TestResult {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Fake servers: std listeners that misbehave on purpose

/// What a [`FakeServer`] does with each connection.
#[derive(Debug, Clone)]
pub(crate) enum Fake {
    /// Sends a `max_connections` ERROR and closes.
    Refuse,
    /// Reads `hello` (recording the client name), then closes without answering.
    CloseAfterHello,
    /// Echoes every byte back (a self-connected socket reads what it writes).
    Echo,
    /// Answers `hello` with a `welcome` carrying `protocol` and `event`, then keeps the connection.
    Welcome { protocol: u64, event: String },
    /// Answers `welcome`, then shuts its write half down and keeps reading.
    WelcomeThenShutWrite,
    /// Reads everything, answers nothing, and keeps the connection open after the client's
    /// end-of-stream until the fake server stops (a server that never closes).
    NeverClose,
    /// The first connection of each client name gets `welcome` and is held until
    /// [`FakeServer::release`]; later ones (recorded as attempts) are closed after `hello`.
    WelcomeFirst,
}

/// One connection a [`FakeServer`] saw.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    pub(crate) at: Instant,
    pub(crate) client_name: Option<String>,
}

/// A misbehaving server on the address of a fixture.
pub(crate) struct FakeServer {
    stop: Arc<AtomicBool>,
    release: Arc<AtomicBool>,
    seen: Arc<Mutex<std::collections::HashSet<String>>>,
    pub(crate) attempts: Arc<Mutex<Vec<Attempt>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    path: Option<PathBuf>,
}

enum AnyListener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl FakeServer {
    pub(crate) fn start(addr: &Addr, event: EventName, behaviour: Fake) -> TestResult<FakeServer> {
        let (listener, path) = match addr {
            Addr::Unix(p) => {
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir)?;
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
                }
                let _ = std::fs::remove_file(p);
                (AnyListener::Unix(UnixListener::bind(p)?), Some(p.clone()))
            }
            Addr::Tcp(a) => (AnyListener::Tcp(TcpListener::bind(a.as_str())?), None),
        };
        match &listener {
            AnyListener::Unix(l) => l.set_nonblocking(true)?,
            AnyListener::Tcp(l) => l.set_nonblocking(true)?,
        }
        let stop = Arc::new(AtomicBool::new(false));
        let release = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let (s2, a2, r2, seen2) = (stop.clone(), attempts.clone(), release.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            let mut conns: Vec<std::thread::JoinHandle<()>> = Vec::new();
            while !s2.load(Ordering::Acquire) {
                let accepted = match &listener {
                    AnyListener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
                    AnyListener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
                };
                match accepted {
                    Ok(s) => {
                        let at = Instant::now();
                        let _ = s.set_nonblocking(false);
                        let ctx = FakeCtx {
                            at,
                            behaviour: behaviour.clone(),
                            attempts: a2.clone(),
                            event: event.clone(),
                            stop: s2.clone(),
                            release: r2.clone(),
                            seen: seen2.clone(),
                        };
                        conns.push(std::thread::spawn(move || fake_conn(s, ctx)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        Ok(FakeServer { stop, release, seen, attempts, thread: Some(thread), path })
    }

    /// Closes the held first connections ([`Fake::WelcomeFirst`]) now; returns the instant.
    pub(crate) fn release(&self) -> Instant {
        let t = Instant::now();
        self.release.store(true, Ordering::Release);
        t
    }

    /// Client names that got their first `welcome` ([`Fake::WelcomeFirst`]).
    pub(crate) fn welcomed(&self) -> usize {
        self.seen.lock().map(|s| s.len()).unwrap_or(0)
    }

    pub(crate) fn attempts(&self) -> Vec<Attempt> {
        self.attempts.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// Attempt times per client name.
    pub(crate) fn by_client(&self) -> HashMap<String, Vec<Instant>> {
        let mut m: HashMap<String, Vec<Instant>> = HashMap::new();
        for a in self.attempts() {
            m.entry(a.client_name.unwrap_or_default()).or_default().push(a.at);
        }
        m
    }

    pub(crate) fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct FakeCtx {
    at: Instant,
    behaviour: Fake,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    event: EventName,
    stop: Arc<AtomicBool>,
    release: Arc<AtomicBool>,
    seen: Arc<Mutex<std::collections::HashSet<String>>>,
}

fn fake_conn(mut s: Stream, ctx: FakeCtx) {
    let FakeCtx { at, behaviour, attempts, event, stop, release, seen } = ctx;
    let tz = jiff::tz::TimeZone::UTC;
    let record = |name: Option<String>| {
        if let Ok(mut a) = attempts.lock() {
            a.push(Attempt { at, client_name: name });
        }
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    // Reads the first frame (hello), if one comes within a second.
    let read_hello = |s: &mut Stream| -> Option<Option<String>> {
        let mut dec = FrameDecoder::new(Limits::default());
        let mut buf = [0u8; 4096];
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(1) && !stop.load(Ordering::Acquire) {
            if let Ok(Some(body)) = dec.next_frame() {
                let msg = decode_body(body, &Limits::default()).ok()?;
                return Some(match Control::parse(&msg) {
                    Some(Ok(Control::Hello { client_name, .. })) => client_name,
                    _ => None,
                });
            }
            match s.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => dec.feed(&buf[..n]),
                Err(_) => {}
            }
        }
        None
    };
    match behaviour {
        Fake::Refuse => {
            let name = read_hello(&mut s).flatten();
            record(name);
            let msg = ErrorCode::MaxConnections.to_message(&event, "full (fake server)", &tz);
            let _ = s.write_all(&frame_of(&msg));
            let _ = s.shutdown(Shutdown::Write);
            // Drain until the client closes, so the close cannot reset the ERROR away.
            let mut buf = [0u8; 512];
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(1) {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
            }
        }
        Fake::CloseAfterHello => {
            let name = read_hello(&mut s).flatten();
            record(name);
        }
        Fake::NeverClose => {
            record(None);
            hold(&mut s, &stop);
            // End-of-stream read: keep the socket open anyway.
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Fake::Echo => {
            record(None);
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::Acquire) {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
            }
        }
        Fake::Welcome { protocol, event: named } => {
            let name = read_hello(&mut s).flatten();
            record(name);
            let msg = Control::Welcome {
                protocol,
                client_id: "c1".to_owned(),
                allow_client_send: true,
                event_name: named,
                server: "fake".to_owned(),
                relay: false,
            }
            .to_message(&event, &tz);
            let _ = s.write_all(&frame_of(&msg));
            hold(&mut s, &stop);
        }
        Fake::WelcomeFirst => {
            let name = read_hello(&mut s).flatten().unwrap_or_default();
            let first = seen.lock().map(|mut seen| seen.insert(name.clone())).unwrap_or(false);
            if !first {
                record(Some(name));
                return;
            }
            let msg = Control::Welcome {
                protocol: 1,
                client_id: format!("c-{name}"),
                allow_client_send: true,
                event_name: event.to_string(),
                server: "fake".to_owned(),
                relay: false,
            }
            .to_message(&event, &tz);
            let _ = s.write_all(&frame_of(&msg));
            while !release.load(Ordering::Acquire) && !stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Fake::WelcomeThenShutWrite => {
            let name = read_hello(&mut s).flatten();
            record(name);
            let msg = Control::Welcome {
                protocol: 1,
                client_id: "c1".to_owned(),
                allow_client_send: true,
                event_name: event.to_string(),
                server: "fake".to_owned(),
                relay: false,
            }
            .to_message(&event, &tz);
            let _ = s.write_all(&frame_of(&msg));
            let _ = s.shutdown(Shutdown::Write);
            hold(&mut s, &stop);
        }
    }
}

/// Reads (and discards) until the peer closes or the fake server stops.
fn hold(s: &mut Stream, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Acquire) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
}

/// Prints a measurement line (collected by [`isolated`] into the parent's output).
pub(crate) fn measured(what: &str) {
    println!("measured: {what}");
}
