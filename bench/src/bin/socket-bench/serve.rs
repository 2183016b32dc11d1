//! The idle servers of the memory test and their line protocol with the parent.
//!
//! Compiled into the lean `socket-bench-server` binary (std and the library
//! only: no libzmq, no libstdc++, so its RSS is what a small server process
//! costs) and into `socket-bench` itself, whose hidden `__serve` subcommand
//! also hosts the libzmq server.
//!
//! Protocol (lines): the server prints `READY <address>`; the parent writes
//! `WAIT <n>` and the server answers `OK <n>` once it has accepted `n`
//! connections (or `ERR ...`); end of stdin stops the server.

use std::io::{BufRead, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use socket_core::server::ServerEvent;
use socket_core::{Config, EventName, Server, TransportRegistry};

/// A failure, in words.
type ServeResult<T> = std::result::Result<T, String>;

/// Time allowed for the server to see the clients the parent connected.
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the server named by `args` = `[contender, net, addr, max]` until stdin closes.
///
/// `contender` is `ceiling` (std sockets, one blocking thread per connection)
/// or `lib` (this library's `Server`). `addr` is a socket path (ceiling/unix),
/// `host:port` (ceiling/tcp), a socket directory (lib/unix) or a port (lib/tcp).
pub(crate) fn run(args: &[String]) -> ServeResult<()> {
    let [who, net, addr, max] = args else {
        return Err("usage: <ceiling|lib> <unix|tcp> <addr> <max-clients>".into());
    };
    let max: usize = max.parse().map_err(|e| format!("max-clients {max:?}: {e}"))?;
    match who.as_str() {
        "ceiling" => {
            let (address, count) = ceiling_idle(net, addr)?;
            serve_loop(&address, &count)
        }
        "lib" => {
            let (address, server, count) = lib_idle(net, addr, max)?;
            let r = serve_loop(&address, &count);
            let _ = server.stop();
            r
        }
        other => Err(format!("unknown server {other:?}: expected ceiling or lib")),
    }
}

/// Prints `READY`, then answers `WAIT <n>` lines until stdin closes.
pub(crate) fn serve_loop(address: &str, count: &AtomicUsize) -> ServeResult<()> {
    let out = std::io::stdout();
    let say = |line: &str| -> ServeResult<()> {
        let mut o = out.lock();
        writeln!(o, "{line}").and_then(|()| o.flush()).map_err(|e| format!("stdout: {e}"))
    };
    say(&format!("READY {address}"))?;
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("stdin: {e}"))?;
        let Some(n) = line.strip_prefix("WAIT ").and_then(|n| n.parse::<usize>().ok()) else {
            break;
        };
        let deadline = Instant::now() + WAIT_TIMEOUT;
        let reply = loop {
            let have = count.load(Ordering::Acquire);
            if have >= n {
                break format!("OK {n}");
            }
            if Instant::now() >= deadline {
                break format!("ERR only {have} of {n} clients accepted");
            }
            thread::sleep(Duration::from_millis(2));
        };
        say(&reply)?;
    }
    Ok(())
}

/// The transports under test: the facade's registry with features `unix` and `tcp`.
pub(crate) fn registry() -> TransportRegistry {
    socket_factory::default_registry()
}

/// The ceiling's idle server: one blocking thread per connection, each parked in `read`.
fn ceiling_idle(net: &str, addr: &str) -> ServeResult<(String, Arc<AtomicUsize>)> {
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    fn idle<S: Read + Send + 'static>(mut s: S) {
        thread::spawn(move || {
            let mut buf = [0u8; 512];
            while matches!(s.read(&mut buf), Ok(k) if k > 0) {}
        });
    }
    let address = match net {
        "unix" => {
            let l = UnixListener::bind(addr).map_err(|e| format!("unix bind {addr}: {e}"))?;
            thread::spawn(move || {
                while let Ok((s, _)) = l.accept() {
                    count.fetch_add(1, Ordering::AcqRel);
                    idle(s);
                }
            });
            addr.to_owned()
        }
        "tcp" => {
            let l = TcpListener::bind(addr).map_err(|e| format!("tcp bind {addr}: {e}"))?;
            let a = l.local_addr().map_err(|e| format!("local_addr: {e}"))?.to_string();
            thread::spawn(move || {
                while let Ok((s, _)) = l.accept() {
                    let _ = s.set_nodelay(true);
                    count.fetch_add(1, Ordering::AcqRel);
                    idle(s);
                }
            });
            a
        }
        other => return Err(format!("unknown transport {other:?}")),
    };
    Ok((address, accepted))
}

/// The library's idle server: `socket_core::Server` with `max_connections`
/// raised to fit `max` clients, the event stream drained (counting connections).
fn lib_idle(net: &str, addr: &str, max: usize) -> ServeResult<(String, Server, Arc<AtomicUsize>)> {
    let mut cfg = Config::default();
    cfg.socket.transport = net.to_owned();
    cfg.socket.unix.max_connections = max + 8;
    cfg.socket.tcp.max_connections = max + 8;
    match net {
        "unix" => cfg.socket.socket_dir = addr.into(),
        "tcp" => cfg.socket.tcp.port = Some(addr.parse().map_err(|e| format!("port {addr:?}: {e}"))?),
        other => return Err(format!("unknown transport {other:?}")),
    }
    let transport = registry().get(net).map_err(|e| format!("transport: {e}"))?;
    let event = EventName::new("bench").map_err(|e| e.to_string())?;
    let server = Server::new(transport, event, &cfg).map_err(|e| format!("server: {e}"))?;
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
    server.start().map_err(|e| format!("server start: {e}"))?;
    let address = server.address().ok_or("server has no address")?;
    Ok((address, server, connected))
}
