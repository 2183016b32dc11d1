//! A third-party transport, defined here, registered in a registry and used through the factory.
//!
//! `InProcTransport` (scheme `"inproc"`) connects servers and clients of one process without a
//! file or a port: servers register in a shared hub under `inproc://{namespace}/{event}`, and each
//! connection is an anonymous socket pair. It is written against the `socket-core` API alone (here
//! through its re-export in `socket-factory`), like any plug-in crate: it only binds, accepts and
//! connects; framing, handshake, queues and reconnect come from the engines.
//!
//! Its settings live in its own table, validated by the transport:
//!
//! ```toml
//! [socket]
//! transport = "inproc"
//!
//! [socket.inproc]
//! namespace = "example"   # servers of the same event in different namespaces do not meet
//! max_connections = 10    # read by the engine through Transport::max_connections
//! ```
//!
//! The example ends by running the `socket-tests` conformance suite against the transport, as its
//! own integration test would (see docs/transport-plugins.md).
//!
//! ```sh
//! cargo run -p socket-factory --example plugin_transport
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_channel::{Receiver, Sender};
use async_trait::async_trait;
use socket_factory::{
    Config, Connection, Data, Endpoint, Error, ErrorKind, EventName, Listener, PeerInfo, SocketMessage, Transport,
};

type Result<T = (), E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------------------------
// The plug-in: what a third-party crate would export.
// ---------------------------------------------------------------------------------------------

/// Connections waiting to be accepted before `connect` is refused (like `listen(2)`'s backlog).
const BACKLOG: usize = 128;

/// The in-process transport. Clones share one hub of listeners.
#[derive(Debug, Clone, Default)]
struct InProcTransport {
    hub: Arc<Mutex<HashMap<String, Sender<Connection>>>>,
}

impl InProcTransport {
    const SCHEME: &'static str = "inproc";

    /// The `[socket.inproc]` table, if the configuration has one.
    fn table(config: &Config) -> Option<&toml::Table> {
        config.socket.plugins.get(Self::SCHEME)
    }

    /// `inproc://{namespace}/{event}`.
    fn address(event: &EventName, config: &Config) -> String {
        let namespace = Self::table(config).and_then(|t| t.get("namespace")).and_then(|v| v.as_str());
        format!("inproc://{}/{event}", namespace.unwrap_or("default"))
    }

    fn hub(&self) -> std::sync::MutexGuard<'_, HashMap<String, Sender<Connection>>> {
        self.hub.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Transport for InProcTransport {
    fn scheme(&self) -> &str {
        Self::SCHEME
    }

    /// Unknown keys and bad values are errors naming the key, the value and the rule.
    fn validate(&self, config: &Config) -> socket_factory::Result<()> {
        for (key, value) in Self::table(config).into_iter().flatten() {
            let rule = match key.as_str() {
                "namespace" if value.as_str().is_some_and(|s| !s.is_empty()) => continue,
                "max_connections" if value.as_integer().is_some_and(|n| n > 0) => continue,
                "namespace" => "a non-empty string",
                "max_connections" => "a positive integer",
                _ => {
                    return Err(Error::new(
                        ErrorKind::Config,
                        format!(
                            "unknown key socket.inproc.{key}: the inproc transport knows namespace and max_connections"
                        ),
                    ))
                }
            };
            return Err(Error::new(
                ErrorKind::Config,
                format!("invalid value {value} for key socket.inproc.{key}: it must be {rule}"),
            ));
        }
        Ok(())
    }

    async fn bind(&self, event: &EventName, config: &Config) -> socket_factory::Result<Box<dyn Listener>> {
        self.validate(config)?;
        let address = Self::address(event, config);
        let mut hub = self.hub();
        if hub.get(&address).is_some_and(|live| !live.is_closed()) {
            return Err(Error::new(
                ErrorKind::AddrInUse,
                format!("{address} is in use by a live server: stop it first or use another namespace"),
            ));
        }
        let (tx, rx) = async_channel::bounded(BACKLOG);
        hub.insert(address.clone(), tx.clone());
        Ok(Box::new(InProcListener { hub: self.hub.clone(), address, tx, rx }))
    }

    /// One explicit endpoint: nothing to discover, the address is known from the event.
    fn endpoints(&self, event: &EventName, config: &Config) -> socket_factory::Result<Vec<Endpoint>> {
        self.validate(config)?;
        Ok(vec![Endpoint { address: Self::address(event, config), explicit: true }])
    }

    async fn connect(&self, endpoint: &Endpoint, _config: &Config) -> socket_factory::Result<Connection> {
        let refused =
            || Error::new(ErrorKind::Connection, format!("no server listens at {}: start one first", endpoint.address));
        let listener = self.hub().get(&endpoint.address).cloned().ok_or_else(refused)?;
        let (ours, theirs) = async_net::unix::UnixStream::pair()
            .map_err(|e| Error::new(ErrorKind::Connection, "cannot create a socket pair").with_source(e))?;
        let pid = Some(std::process::id()); // same process at both ends
        let server_side = Connection {
            reader: Box::new(theirs.clone()),
            writer: Box::new(theirs),
            peer: PeerInfo { address: "inproc client".to_owned(), pid, uid: None },
        };
        listener.try_send(server_side).map_err(|_| refused())?;
        Ok(Connection {
            reader: Box::new(ours.clone()),
            writer: Box::new(ours),
            peer: PeerInfo { address: endpoint.address.clone(), pid, uid: None },
        })
    }
}

/// A bound `inproc://` address: a queue of connections waiting to be accepted.
#[derive(Debug)]
struct InProcListener {
    hub: Arc<Mutex<HashMap<String, Sender<Connection>>>>,
    address: String,
    tx: Sender<Connection>,
    rx: Receiver<Connection>,
}

#[async_trait]
impl Listener for InProcListener {
    fn address(&self) -> String {
        self.address.clone()
    }

    async fn accept(&self) -> socket_factory::Result<Connection> {
        let closed = || Error::new(ErrorKind::Closed, format!("listener {} is closed", self.address));
        self.rx.recv().await.map_err(|_| closed())
    }

    /// Releases the address (only if it is still ours) and refuses what waits: idempotent.
    fn close(&self) -> socket_factory::Result<()> {
        let mut hub = self.hub.lock().unwrap_or_else(|e| e.into_inner());
        if hub.get(&self.address).is_some_and(|tx| tx.same_channel(&self.tx)) {
            hub.remove(&self.address);
        }
        drop(hub);
        self.rx.close(); // a waiting accept() ends; connects are refused
        while self.rx.try_recv().is_ok() {} // connections never accepted see end-of-stream
        Ok(())
    }
}

impl Drop for InProcListener {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Sets `[socket.inproc] key = value`.
fn set_option(config: &mut Config, key: &str, value: impl Into<toml::Value>) {
    config.socket.plugins.entry(InProcTransport::SCHEME.to_owned()).or_default().insert(key.to_owned(), value.into());
}

// ---------------------------------------------------------------------------------------------
// The application: register the plug-in and use it through the factory.
// ---------------------------------------------------------------------------------------------

const SETTINGS: &str = r#"
[socket]
transport = "inproc"

[socket.inproc]
namespace = "example"
max_connections = 2
"#;

fn main() -> Result {
    let registry = socket_factory::default_registry();
    registry.register(InProcTransport::default());
    println!("registered transports: {}", registry.schemes().join(", "));

    // The plug-in's table in a settings file, and one value from the environment on top.
    let dir = tempfile::tempdir()?;
    let settings = dir.path().join("settings.toml");
    std::fs::write(&settings, SETTINGS)?;
    let config = Config::loader()
        .file(&settings)
        .env([("SOCKET__INPROC__MAX_CONNECTIONS", "5")]) // instead of the process environment
        .load()?;
    socket_factory::validate_config(&registry, &config)?;
    let inproc = socket_factory::transport(&registry, &config.socket.transport)?;
    let table = config.socket.plugins.get("inproc").cloned().unwrap_or_default();
    let keys: Vec<String> = table.iter().map(|(key, value)| format!("{key} = {value}")).collect();
    println!("settings: transport = {:?}; [socket.inproc] {}", config.socket.transport, keys.join(", "));
    // From the environment the limit arrives as text, and is read as the integer 5.
    println!("connection limit of the inproc server: {}", inproc.max_connections(&config));

    let event = EventName::new("plugin_demo")?;
    let server = socket_factory::create_server(&registry, &config, &event)?;
    server.start()?;
    println!("server: listening on {}", server.address().unwrap_or_default());

    let client = socket_factory::create_client(&registry, &config, &event)?;
    let info = server.clients().into_iter().next().ok_or("the server has no client")?;
    println!("server: client {} connected from {:?} (pid {:?})", info.id, info.address, info.pid);

    server.broadcast(&SocketMessage::data(event.clone(), Data::new().with("via", "inproc")))?;
    let message = client.receive(Some(Duration::from_secs(5)))?.ok_or("no message within 5 s")?;
    println!("client: received a message via {}", message.data.get_str("via").unwrap_or("?"));
    client.disconnect();
    server.stop()?;

    // The transport checks its own table; the factory checks that every table has a transport.
    let mut bad = config.clone();
    set_option(&mut bad, "colour", "blue");
    let err = socket_factory::validate_config(&registry, &bad).err().ok_or("colour was accepted")?;
    println!("a bad [socket.inproc] table: {err}");
    let mut stray = config.clone();
    stray.socket.plugins.insert("carrier-pigeon".to_owned(), toml::Table::new());
    let err = socket_factory::validate_config(&registry, &stray).err().ok_or("the stray table was accepted")?;
    println!("a table without a transport: {err}");

    // The conformance suite, as the plug-in crate's integration test would run it.
    let harness = socket_tests::conformance::Harness::new(Arc::new(InProcTransport::default()), || {
        let mut config = Config::default();
        config.socket.transport = "inproc".to_owned();
        set_option(&mut config, "namespace", socket_tests::conformance::unique_name("case"));
        config
    })
    .case_timeout(Duration::from_secs(20));
    let report = socket_tests::conformance::run_all(&harness)?;
    // (`conformance::run_suite` runs the cases through the blocking API as well, in twice the time.)
    println!("conformance suite, async API: {} cases passed in {:.1?}", report.passed.len(), report.elapsed);
    Ok(())
}
