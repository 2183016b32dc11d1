//! Memory of an idle server: the server runs in a child process, the clients
//! in the parent, and the parent reads the child's `VmRSS` from
//! `/proc/<pid>/status` (protocol in `serve.rs`).
//!
//! The ceiling's and the library's servers run in the lean
//! `socket-bench-server` binary (std and the library only), built on demand;
//! the libzmq server runs in this binary, re-executed with the hidden
//! `__serve zmq` subcommand.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::ceiling::Stream;
use crate::common::{ctx, free_port, rss_kib, sock_path, temp_dir, BenchResult, Net};
use crate::Contender;

/// RSS of the server process after each number of connected clients.
#[derive(Debug, Clone)]
pub(crate) struct MemCurve {
    /// `(clients, RSS in KiB)`, starting with 0 clients.
    pub(crate) points: Vec<(usize, u64)>,
}

impl MemCurve {
    /// RSS in KiB with `clients` clients, if measured.
    pub(crate) fn at(&self, clients: usize) -> Option<u64> {
        self.points.iter().find(|p| p.0 == clients).map(|p| p.1)
    }

    /// KiB per connection between two measured points.
    pub(crate) fn slope(&self, from: usize, to: usize) -> Option<f64> {
        let (a, b) = (self.at(from)?, self.at(to)?);
        Some((b as f64 - a as f64) / (to - from) as f64)
    }
}

/// Clients held open by the parent.
enum Clients {
    Plain(Vec<Stream>),
    Zmq(Vec<zmq::Context>, Vec<zmq::Socket>),
    Lib(Vec<socket_core::Client>),
}

impl Clients {
    fn len(&self) -> usize {
        match self {
            Clients::Plain(v) => v.len(),
            Clients::Zmq(_, v) => v.len(),
            Clients::Lib(v) => v.len(),
        }
    }
}

struct ChildServer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl ChildServer {
    fn line(&mut self) -> BenchResult<String> {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).map_err(ctx("reading the server child's output"))?;
        if n == 0 {
            return Err("the server child exited early".into());
        }
        Ok(line.trim().to_owned())
    }

    fn wait_for(&mut self, n: usize) -> BenchResult<()> {
        let stdin = self.stdin.as_mut().ok_or("child stdin closed")?;
        writeln!(stdin, "WAIT {n}").map_err(ctx("writing to the server child"))?;
        stdin.flush().map_err(ctx("writing to the server child"))?;
        let line = self.line()?;
        if line == format!("OK {n}") {
            Ok(())
        } else {
            Err(format!("server child: {line}"))
        }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return;
                }
                Ok(None) => thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

/// Measures the idle server of `who` over `net` with 0 clients, then each of `steps` clients.
pub(crate) fn measure(who: Contender, net: Net, steps: &[usize]) -> BenchResult<MemCurve> {
    let dir = temp_dir()?;
    let addr = match (net, who) {
        (Net::Unix, Contender::LibAsync | Contender::LibBlocking) => dir.path().display().to_string(),
        (Net::Unix, _) => sock_path(&dir, "mem.sock").display().to_string(),
        (Net::Tcp, Contender::Zmq) => "127.0.0.1:*".to_owned(),
        (Net::Tcp, Contender::Ceiling) => "127.0.0.1:0".to_owned(),
        (Net::Tcp, _) => free_port()?.to_string(),
    };
    let max = steps.iter().copied().max().unwrap_or(0);
    let (exe, first) = match who {
        Contender::Zmq => (std::env::current_exe().map_err(ctx("finding the bench executable"))?, "__serve"),
        _ => (server_binary()?, ""),
    };
    let kind = match who {
        Contender::Ceiling => "ceiling",
        Contender::Zmq => "zmq",
        Contender::LibAsync | Contender::LibBlocking => "lib",
    };
    let mut child = Command::new(exe)
        .args([first, kind, net.name(), &addr, &max.to_string()].into_iter().filter(|a| !a.is_empty()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(ctx("starting the server child"))?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().ok_or("no child stdout")?;
    let mut server = ChildServer { child, stdin, stdout: BufReader::new(stdout) };
    let ready = server.line()?;
    let address = ready.strip_prefix("READY ").ok_or_else(|| format!("server child: {ready}"))?.to_owned();
    let pid = server.child.id();
    settle();
    let mut points = vec![(0, rss_kib(pid)?)];
    let mut clients = match who {
        Contender::Ceiling => Clients::Plain(Vec::new()),
        Contender::Zmq => Clients::Zmq(Vec::new(), Vec::new()),
        Contender::LibAsync | Contender::LibBlocking => Clients::Lib(Vec::new()),
    };
    for &target in steps {
        while clients.len() < target {
            connect_one(&mut clients, net, &address)?;
        }
        server.wait_for(target)?;
        settle();
        points.push((target, rss_kib(pid)?));
    }
    if let Clients::Lib(v) = &clients {
        for c in v {
            c.disconnect();
        }
    }
    drop(clients);
    drop(server);
    Ok(MemCurve { points })
}

/// Lets the child finish whatever the last connections started.
fn settle() {
    thread::sleep(Duration::from_millis(200));
}

fn connect_one(clients: &mut Clients, net: Net, address: &str) -> BenchResult<()> {
    match clients {
        Clients::Plain(v) => v.push(Stream::connect(net, address)?),
        Clients::Zmq(ctxs, socks) => {
            // A zmq context holds at most 1023 sockets by default.
            if socks.len() % 500 == 0 {
                ctxs.push(zmq::Context::new());
            }
            let zctx = ctxs.last().ok_or("no zmq context")?;
            socks.push(crate::zmq_bench::subscriber_socket(zctx, address)?);
        }
        Clients::Lib(v) => v.push(crate::lib_bench::idle_client(net, address)?),
    }
    Ok(())
}

/// The lean `socket-bench-server` binary next to this one, built (once per run)
/// with the same profile when it is missing or older than this binary.
pub(crate) fn server_binary() -> BenchResult<PathBuf> {
    static BIN: OnceLock<BenchResult<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        let me = std::env::current_exe().map_err(ctx("finding the bench executable"))?;
        let bin = me.with_file_name("socket-bench-server");
        let mtime = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        if matches!((mtime(&bin), mtime(&me)), (Some(b), Some(m)) if b >= m) {
            return Ok(bin);
        }
        // The profile is the name of the binary's directory (`debug`, `release`, `measure`).
        let profile = me.parent().and_then(|d| d.file_name()).and_then(|n| n.to_str()).unwrap_or("debug").to_owned();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut cmd = Command::new(cargo);
        cmd.current_dir(root).args(["build", "--locked", "-p", "socket-bench"]);
        if profile != "debug" {
            cmd.args(["--profile", &profile]);
        }
        cmd.args(["--bin", "socket-bench-server"]).stdout(Stdio::null());
        eprintln!("building socket-bench-server (the lean server of the memory test)");
        let status = cmd.status().map_err(ctx("running cargo build"))?;
        if !status.success() || !bin.exists() {
            return Err(format!("cargo build of socket-bench-server failed ({status})"));
        }
        Ok(bin)
    })
    .clone()
}

/// The hidden `__serve zmq <net> <addr> <max>` subcommand: the idle libzmq server.
pub(crate) fn serve_zmq(args: &[String]) -> BenchResult<()> {
    let [who, net, addr, _max] = args else {
        return Err("usage: socket-bench __serve zmq <unix|tcp> <addr> <max-clients>".into());
    };
    if who != "zmq" {
        // The other servers live in serve.rs (also reachable from here as a fallback).
        return crate::serve::run(args);
    }
    let (address, _zctx, _publ, count) = crate::zmq_bench::serve_idle(Net::parse(net)?, addr)?;
    crate::serve::serve_loop(&address, &count)
}
