//! Real `nats-server` processes for the tests of the NATS bridge.
//!
//! Each [`NatsServer`] runs the `nats-server` binary (the Debian package of
//! that name) on free loopback ports, with its own temp directory (config
//! file and JetStream store). Its log (stderr) is read by a thread, so a test
//! waits for a log line with a deadline instead of sleeping. The process is
//! killed by its PID when the value is dropped, also when a test fails.
//! A [`Cluster`] is two or three routed nodes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::util::free_port;

/// Error type of the helpers.
pub type NatsError = Box<dyn std::error::Error + Send + Sync>;

/// How long a node may take to be ready, or a route to come up.
pub const NATS_DEADLINE: Duration = Duration::from_secs(15);

/// True if the `nats-server` binary is on `PATH`.
pub fn nats_server_available() -> bool {
    Command::new("nats-server").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// How to start one node.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// Enable JetStream (store in the node's temp directory).
    pub jetstream: bool,
    /// `max_payload` in bytes (default: the server's, 1 MiB).
    pub max_payload: Option<usize>,
    /// Extra lines for the config file (`authorization { ... }`, `tls { ... }`).
    pub extra: String,
    /// The client port (default: a free one).
    pub port: Option<u16>,
}

#[derive(Debug, Default)]
struct Log {
    lines: Vec<String>,
    ended: bool,
}

/// One running (or killed) `nats-server`.
#[derive(Debug)]
pub struct NatsServer {
    name: String,
    port: u16,
    cluster_port: Option<u16>,
    dir: TempDir,
    config: PathBuf,
    child: Option<Child>,
    log: Arc<(Mutex<Log>, Condvar)>,
}

impl NatsServer {
    /// Starts a single node (no cluster) and waits until it is ready.
    ///
    /// # Errors
    ///
    /// If it cannot be started or is not ready within [`NATS_DEADLINE`].
    pub fn start(options: &NodeOptions) -> Result<NatsServer, NatsError> {
        Self::start_node("n1", options, None, &[])
    }

    fn start_node(
        name: &str,
        options: &NodeOptions,
        cluster: Option<(u16, &str)>,
        routes: &[u16],
    ) -> Result<NatsServer, NatsError> {
        let dir = TempDir::new()?;
        let port = match options.port {
            Some(p) => p,
            None => free_port()?,
        };
        let store = dir.path().join("jetstream");
        let mut text = format!("server_name: {name}\nlisten: \"127.0.0.1:{port}\"\n");
        if options.jetstream {
            text.push_str(&format!("jetstream {{ store_dir: {:?} }}\n", store.display().to_string()));
        }
        if let Some(n) = options.max_payload {
            text.push_str(&format!("max_payload: {n}\n"));
        }
        if let Some((cport, cname)) = cluster {
            let routes: Vec<String> = routes.iter().map(|p| format!("\"nats://127.0.0.1:{p}\"")).collect();
            text.push_str(&format!(
                "cluster {{\n  name: {cname}\n  listen: \"127.0.0.1:{cport}\"\n  routes: [{}]\n}}\n",
                routes.join(", ")
            ));
        }
        text.push_str(&options.extra);
        let config = dir.path().join("nats.conf");
        std::fs::write(&config, text)?;
        let mut server = NatsServer {
            name: name.to_owned(),
            port,
            cluster_port: cluster.map(|(p, _)| p),
            dir,
            config,
            child: None,
            log: Arc::new((Mutex::new(Log::default()), Condvar::new())),
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), NatsError> {
        self.log = Arc::new((Mutex::new(Log::default()), Condvar::new()));
        let mut child = Command::new("nats-server")
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start nats-server (apt-get install nats-server): {e}"))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        self.child = Some(child);
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let (lock, cv) = &*log;
                lock.lock().unwrap_or_else(|p| p.into_inner()).lines.push(line);
                cv.notify_all();
            }
            let (lock, cv) = &*log;
            lock.lock().unwrap_or_else(|p| p.into_inner()).ended = true;
            cv.notify_all();
        });
        self.wait_log("Server is ready", 1)
    }

    /// Waits until at least `count` log lines contain `needle`.
    ///
    /// # Errors
    ///
    /// If that does not happen within [`NATS_DEADLINE`] (the log is in the message).
    pub fn wait_log(&self, needle: &str, count: usize) -> Result<(), NatsError> {
        let deadline = Instant::now() + NATS_DEADLINE;
        let (lock, cv) = &*self.log;
        let mut log = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if log.lines.iter().filter(|l| l.contains(needle)).count() >= count {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || log.ended {
                return Err(format!(
                    "nats-server {}: no {count} log lines with {needle:?} (ended: {}); log: {:?}",
                    self.name, log.ended, log.lines
                )
                .into());
            }
            log = cv.wait_timeout(log, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// How many log lines so far contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        let (lock, _) = &*self.log;
        lock.lock().unwrap_or_else(|p| p.into_inner()).lines.iter().filter(|l| l.contains(needle)).count()
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The node's temp directory (for certificates, tokens and the like).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The PID of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process (SIGKILL, by its PID) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the node again on the same ports with the same config.
    ///
    /// # Errors
    ///
    /// See [`NatsServer::start`].
    pub fn restart(&mut self) -> Result<(), NatsError> {
        self.kill();
        self.spawn()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A directory under the system temp directory, removed on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!("nats-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir(&path)?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Two or three routed nodes on loopback, without JetStream.
#[derive(Debug)]
pub struct Cluster {
    /// The nodes.
    pub nodes: Vec<NatsServer>,
}

impl Cluster {
    /// Starts `n` routed nodes and waits until each has a route to every other one.
    ///
    /// # Errors
    ///
    /// If a node does not start, or the routes are not up within [`NATS_DEADLINE`].
    pub fn start(n: usize) -> Result<Cluster, NatsError> {
        let cluster_ports: Vec<u16> = (0..n).map(|_| free_port()).collect::<Result<_, _>>()?;
        let cname = format!("c{}", cluster_ports[0]);
        let mut nodes = Vec::new();
        for i in 0..n {
            let routes: Vec<u16> = cluster_ports.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, p)| *p).collect();
            nodes.push(NatsServer::start_node(
                &format!("n{}", i + 1),
                &NodeOptions::default(),
                Some((cluster_ports[i], &cname)),
                &routes,
            )?);
        }
        let cluster = Cluster { nodes };
        cluster.wait_routes()?;
        Ok(cluster)
    }

    /// Waits until every live node logs a route to each other live node.
    ///
    /// # Errors
    ///
    /// If the routes are not up within [`NATS_DEADLINE`].
    pub fn wait_routes(&self) -> Result<(), NatsError> {
        let live = self.nodes.iter().filter(|n| n.child.is_some()).count();
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            node.wait_log("Route connection created", live - 1)?;
        }
        Ok(())
    }

    /// The client URLs of every node, comma-separated.
    pub fn urls(&self) -> String {
        self.nodes.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
    }

    /// The cluster port of node `i`.
    pub fn cluster_port(&self, i: usize) -> Option<u16> {
        self.nodes[i].cluster_port
    }
}
