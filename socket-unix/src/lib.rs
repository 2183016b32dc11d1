//! Unix domain socket transport for `socket`.
//!
//! Register it under the scheme `"unix"` with [`register`]; the `socket-factory` crate does so when
//! its `unix` feature is on.
//!
//! # Addresses
//!
//! The server of event `E` listens on `{socket_dir}/E.sock` (`socket.socket_dir`, default
//! `/tmp/sockets`). A path longer than the 107 bytes a Linux socket address holds is a
//! [`ErrorKind::Validation`] error naming the path and its length.
//!
//! # Security
//!
//! * **Socket directory.** A missing directory is created with mode 0700 (missing parents too). An
//!   existing one is never changed; it must be a real directory, not a symlink, owned by the
//!   effective user and not writable by group or others, else binding fails with an
//!   [`ErrorKind::Config`] error that says how to fix it. Only the last path component is checked.
//! * **Binding.** The server takes an exclusive `flock` on `{socket_dir}/E.lock`; a held lock
//!   means another server of the event runs ([`ErrorKind::AddrInUse`]). Then it inspects the
//!   socket path with `lstat`: nothing there is fine; a socket that answers a connect is a live
//!   server ([`ErrorKind::AddrInUse`], also for servers that take no lock, such as the Python
//!   origin); a socket that refuses is stale and is removed; anything else (file, directory, FIFO,
//!   symlink) is refused and left untouched ([`ErrorKind::Config`]).
//! * **Permissions** (`socket.unix.socket_permissions`, default `"0600"`) are in force from the
//!   file's creation: the mode is set on the socket before `bind` (Linux creates the file with it)
//!   and again on the path before `listen`, so nothing can connect earlier.
//! * **Stopping** removes the socket file (with `socket.unix.auto_remove_socket`) only if it is
//!   still the file this server created (same device and inode), then the lock file. Dropping the
//!   listener without closing it does the same.
//! * **Peer credentials** (`SO_PEERCRED`): a server serves only its own user and root, plus
//!   `socket.unix.allowed_uids`, unless the socket mode grants group or others write access, in
//!   which case the file mode decides. Refused peers are closed and logged, never handed to the
//!   engine. A client talks only to a server running as its own user, root, or an allowed uid, so
//!   another user cannot squat the path.
//!
//! # Connections
//!
//! An accepted connection's [`PeerInfo`] has the socket path as `address` and the peer's pid and
//! uid. After [`Listener::close`] (idempotent), `accept` fails with [`ErrorKind::Closed`], also an
//! `accept` that was already waiting, and new connects are refused at once.
//!
//! # Platform-specific behavior
//!
//! Written for Linux. Peer credentials are read on Linux and Android only; elsewhere the file
//! mode is the only guard and [`PeerInfo`] has no pid or uid.
//!
//! # Examples
//!
//! ```
//! use socket_core::{Config, EventName, Transport, TransportRegistry};
//!
//! let registry = TransportRegistry::new();
//! socket_unix::register(&registry);
//! let unix = registry.get("unix")?;
//!
//! let mut config = Config::default();
//! config.socket.socket_dir = "/run/user/1000/sockets".into();
//! let endpoints = unix.endpoints(&EventName::new("wallpaper_change")?, &config)?;
//! assert_eq!(endpoints[0].address, "/run/user/1000/sockets/wallpaper_change.sock");
//! # Ok::<(), socket_core::Error>(())
//! ```
//!
//! A server and a client over this transport, with `socket-core` alone (applications usually go
//! through `socket-factory`, which does the same from `socket.transport = "unix"`):
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use socket_core::{Client, Config, Data, EventName, Server, SocketMessage};
//!
//! let dir = tempfile::tempdir()?;
//! let mut config = Config::default();
//! config.socket.socket_dir = dir.path().join("sockets"); // created with mode 0700
//! let event = EventName::new("wallpaper_change")?;
//! let unix = Arc::new(socket_unix::UnixTransport::new());
//!
//! let server = Server::new(unix.clone(), event.clone(), &config)?;
//! server.start()?;
//! assert!(dir.path().join("sockets/wallpaper_change.sock").exists());
//!
//! let client = Client::connect(unix, event.clone(), &config)?;
//! server.broadcast(&SocketMessage::data(event, Data::new().with("path", "/tmp/wall.png")))?;
//! let message = client.receive(Some(Duration::from_secs(5)))?.ok_or("no message")?;
//! assert_eq!(message.data.get_str("path"), Some("/tmp/wall.png"));
//! let peer = &server.clients()[0]; // SO_PEERCRED: the client is this process
//! assert_eq!(peer.pid, cfg!(target_os = "linux").then(std::process::id));
//!
//! server.stop()?; // removes the socket file
//! assert!(!dir.path().join("sockets/wallpaper_change.sock").exists());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod blocking;
mod dir;
mod listener;
mod lock;
mod peer;

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use socket_core::config::{
    check_transport_table, ConfigError, KeySpec, ValueType, MAX_CONNECTIONS, SEND_BUFFER_DOC, SEND_BUFFER_RANGE,
    SEND_BUFFER_RULE,
};
use socket_core::{
    BlockingRead, Config, Connection, Endpoint, Error, ErrorKind, EventName, Listener, PeerInfo, Result, Transport,
};

use crate::peer::{peer_creds, PeerPolicy};

/// The scheme this transport registers under.
pub const SCHEME: &str = "unix";

/// Longest socket path in bytes (`sun_path` holds 108 bytes on Linux, 104 on the BSDs and macOS,
/// including the terminating NUL).
pub const MAX_PATH_LEN: usize = if cfg!(any(target_os = "linux", target_os = "android")) { 107 } else { 103 };

/// The Unix domain socket transport (scheme `"unix"`).
///
/// # Examples
///
/// See the [crate documentation](crate).
#[derive(Debug, Clone, Copy, Default)]
pub struct UnixTransport;

impl UnixTransport {
    /// The transport.
    pub fn new() -> Self {
        UnixTransport
    }
}

/// Registers [`UnixTransport`] in `registry` under `"unix"`.
pub fn register(registry: &socket_core::TransportRegistry) {
    registry.register(UnixTransport);
}

/// The socket path of `event`: `{socket_dir}/{event}.sock`.
///
/// # Errors
///
/// [`ErrorKind::Config`] for an invalid `socket.socket_dir`; [`ErrorKind::Validation`] when the
/// path is longer than [`MAX_PATH_LEN`] bytes.
pub fn socket_path(config: &Config, event: &EventName) -> Result<PathBuf> {
    Settings::from_config(config)?.socket_path(event)
}

/// What is at a socket path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SocketState {
    /// Nothing.
    Missing,
    /// A socket a server listens on.
    Live,
    /// A socket nobody listens on (its server died without removing it).
    Stale,
    /// Something that is not a socket (file, directory, FIFO, symlink).
    NotASocket,
}

/// Inspects `path` without following symlinks and, for a socket, probes it with a non-blocking
/// connect: refused means stale, anything else that connects (or a full backlog) means live.
///
/// # Errors
///
/// The I/O error of `lstat` or of the probe (other than "refused" and "not found").
pub fn socket_state(path: &Path) -> io::Result<SocketState> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => socket_state_of(path, &meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(SocketState::Missing),
        Err(e) => Err(e),
    }
}

pub(crate) fn socket_state_of(path: &Path, meta: &Metadata) -> io::Result<SocketState> {
    use rustix::io::Errno;
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

    if !meta.file_type().is_socket() {
        return Ok(SocketState::NotASocket);
    }
    let fd = rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    rustix::io::ioctl_fionbio(&fd, true)?;
    let addr = SocketAddrUnix::new(path)?;
    match rustix::net::connect(&fd, &addr) {
        Ok(()) | Err(Errno::AGAIN | Errno::INPROGRESS) => Ok(SocketState::Live),
        Err(Errno::CONNREFUSED) => Ok(SocketState::Stale),
        Err(Errno::NOENT) => Ok(SocketState::Missing),
        Err(e) => Err(e.into()),
    }
}

/// The effective user id of this process.
pub(crate) fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Identity of a file: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    pub(crate) fn of(meta: &Metadata) -> FileId {
        FileId { dev: meta.dev(), ino: meta.ino() }
    }
}

/// The settings of this transport, checked.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) dir: PathBuf,
    pub(crate) permissions: u32,
    pub(crate) auto_remove: bool,
    pub(crate) allowed_uids: Vec<u32>,
    /// `SO_SNDBUF` of every accepted connection.
    pub(crate) send_buffer: usize,
}

impl Settings {
    pub(crate) fn from_config(config: &Config) -> Result<Settings> {
        let dir = config.socket.socket_dir.clone();
        let shown = dir.display();
        if !dir.is_absolute() {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "invalid value {:?} for key socket.socket_dir: must be an absolute path, so that servers and \
                     clients started anywhere meet",
                    shown.to_string()
                ),
            ));
        }
        if dir.to_str().is_none() {
            return Err(Error::new(
                ErrorKind::Config,
                format!("invalid value {:?} for key socket.socket_dir: must be valid UTF-8", shown.to_string()),
            ));
        }
        // The shortest socket path: "{dir}/x.sock".
        let shortest = dir.as_os_str().len() + "/x.sock".len();
        if shortest > MAX_PATH_LEN {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "invalid value {:?} for key socket.socket_dir: too long for socket paths, which hold at most \
                     {MAX_PATH_LEN} bytes; choose a shorter directory",
                    shown.to_string()
                ),
            ));
        }
        let unix = &config.socket.unix;
        Ok(Settings {
            dir,
            permissions: parse_permissions(&unix.socket_permissions)?,
            auto_remove: unix.auto_remove_socket,
            allowed_uids: unix.allowed_uids.clone(),
            send_buffer: unix.send_buffer_bytes,
        })
    }

    pub(crate) fn socket_path(&self, event: &EventName) -> Result<PathBuf> {
        let path = self.dir.join(format!("{event}.sock"));
        let len = path.as_os_str().len();
        if len > MAX_PATH_LEN {
            return Err(Error::new(
                ErrorKind::Validation,
                format!(
                    "socket path {} is {len} bytes long, more than the {MAX_PATH_LEN} bytes a unix socket address \
                     holds: choose a shorter socket.socket_dir or event name",
                    path.display()
                ),
            ));
        }
        Ok(path)
    }

    pub(crate) fn lock_path(&self, event: &EventName) -> PathBuf {
        self.dir.join(format!("{event}.lock"))
    }

    fn client_policy(&self) -> PeerPolicy {
        PeerPolicy { own: euid(), open: false, allowed: self.allowed_uids.clone() }
    }
}

/// Parses an octal mode such as `"0600"`, `"600"` or `"0o600"` with [`check_permissions`], the
/// one rule that the key declaration of `socket_permissions` ([`SETTINGS`]) applies too: a value
/// that validates also binds.
///
/// # Errors
///
/// [`ErrorKind::Config`] naming `socket.unix.socket_permissions` if the value is not octal, has
/// bits above `0777`, or does not let the owner read and write.
pub fn parse_permissions(value: &str) -> Result<u32> {
    check_permissions(value).map_err(|why| {
        Error::from(ConfigError::InvalidValue {
            key: "socket.unix.socket_permissions".to_owned(),
            value: format!("{value:?}"),
            rule: format!("{PERMISSIONS_RULE} ({why})"),
            origin: String::new(),
        })
    })
}

/// The one rule for `socket.unix.socket_permissions`, applied by the key's declaration
/// ([`SETTINGS`], so by validation) and when the transport binds: 1 to 4 octal digits
/// (`"0600"`, `"600"`, `"0o600"`), at most `0777`, letting the owner read and write (a
/// server must be able to use its own socket). The mode, or why the value breaks the rule.
///
/// # Errors
///
/// The rule the value breaks: not octal, above `0777`, or not letting the owner read and write.
///
/// # Examples
///
/// ```
/// use socket_unix::check_permissions;
/// assert_eq!(check_permissions("0660"), Ok(0o660));
/// assert!(check_permissions("0400").unwrap_err().contains("owner read and write"));
/// ```
pub fn check_permissions(s: &str) -> std::result::Result<u32, &'static str> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err("must be an octal mode such as \"0600\"");
    }
    let mode = u32::from_str_radix(digits, 8).map_err(|_| "must be an octal mode such as \"0600\"")?;
    if mode > 0o777 {
        return Err("must be at most \"0777\" (no setuid, setgid or sticky bits)");
    }
    if mode & 0o600 != 0o600 {
        return Err("must let the owner read and write, e.g. \"0600\"");
    }
    Ok(mode)
}

fn check_permissions_value(value: &toml::Value) -> std::result::Result<(), String> {
    let text = value.as_str().unwrap_or_default();
    check_permissions(text).map(drop).map_err(str::to_owned)
}

const PERMISSIONS_RULE: &str =
    "an octal file mode such as \"0600\" (1 to 4 digits 0-7, at most 0777) that lets the owner read and write (0600 to 0777)";

/// The keys of `[socket.unix]`, as [`UnixTransport`] declares them
/// ([`Transport::settings`]).
pub static SETTINGS: &[KeySpec] = &[
    KeySpec::new(
        "max_connections",
        ValueType::Integer,
        "an integer in 1..=65536",
        "Clients a Unix-socket server serves at once; one more receives a `max_connections` error and is closed.",
    )
    .with_default("10")
    .with_bounds(1, MAX_CONNECTIONS as i64),
    KeySpec::new(
        "socket_permissions",
        ValueType::String,
        PERMISSIONS_RULE,
        "Mode of the socket file, applied before `listen()`. Granting group or others access also lets other users connect.",
    )
    .with_default("\"0600\"")
    .with_check(check_permissions_value),
    KeySpec::new("auto_remove_socket", ValueType::Boolean, "true or false", "Remove the socket file when the server stops.")
        .with_default("true"),
    KeySpec::new(
        "allowed_uids",
        ValueType::IntegerList,
        "a list of user ids (integers in 0..=4294967295)",
        "Extra user ids allowed to connect, besides the server's own user and root.",
    )
    .with_default("[]"),
    KeySpec::new("send_buffer_bytes", ValueType::Integer, SEND_BUFFER_RULE, SEND_BUFFER_DOC)
        .with_default("1048576")
        .with_bounds(*SEND_BUFFER_RANGE.start() as i64, *SEND_BUFFER_RANGE.end() as i64),
];

#[async_trait]
impl Transport for UnixTransport {
    fn scheme(&self) -> &str {
        SCHEME
    }

    fn settings(&self) -> &'static [KeySpec] {
        SETTINGS
    }

    fn validate(&self, config: &Config) -> Result<()> {
        check_transport_table(SCHEME, SETTINGS, config)?;
        Settings::from_config(config).map(drop)
    }

    async fn bind(&self, event: &EventName, config: &Config) -> Result<Box<dyn Listener>> {
        let settings = Settings::from_config(config)?;
        Ok(Box::new(listener::bind(event, &settings)?))
    }

    fn endpoints(&self, event: &EventName, config: &Config) -> Result<Vec<Endpoint>> {
        let path = socket_path(config, event)?;
        Ok(vec![Endpoint { address: path.display().to_string(), explicit: true }])
    }

    async fn connect(&self, endpoint: &Endpoint, config: &Config) -> Result<Connection> {
        let (stream, peer) = open(endpoint, config).await?;
        Ok(Connection::shared(stream, peer))
    }

    async fn connect_blocking(
        &self,
        endpoint: &Endpoint,
        config: &Config,
    ) -> Result<(Connection, Option<Arc<dyn BlockingRead>>)> {
        let (stream, peer) = open(endpoint, config).await?;
        Ok(blocking::viewed(stream, peer))
    }
}

/// Connects to the server socket at `endpoint` and checks who runs it (the peer policy).
async fn open(endpoint: &Endpoint, config: &Config) -> Result<(async_net::unix::UnixStream, PeerInfo)> {
    let settings = Settings::from_config(config)?;
    let path = Path::new(&endpoint.address);
    let event = path.file_stem().map_or_else(|| endpoint.address.clone(), |s| s.to_string_lossy().into_owned());
    let stream = async_net::unix::UnixStream::connect(path).await.map_err(|e| connect_error(e, path, &event))?;
    let creds = peer_creds(&stream).map_err(|e| {
        Error::new(ErrorKind::Connection, format!("cannot read the credentials of the server at {}", path.display()))
            .with_source(e)
    })?;
    if let Some(creds) = creds {
        let policy = settings.client_policy();
        if !policy.allows(creds.uid) {
            tracing::warn!(uid = creds.uid, path = %path.display(), "server runs as another user; refusing it");
            return Err(Error::new(
                ErrorKind::Connection,
                format!(
                    "refusing the server at {}: it runs as uid {}, not as you (uid {}) or root, so another user \
                         may have taken the path; if this is intended, add {} to socket.unix.allowed_uids",
                    path.display(),
                    creds.uid,
                    policy.own,
                    creds.uid
                ),
            ));
        }
    }
    let peer =
        PeerInfo { address: endpoint.address.clone(), pid: creds.and_then(|c| c.pid), uid: creds.map(|c| c.uid) };
    Ok((stream, peer))
}

/// True when `e` says the socket directory cannot be used at all: not writable or not
/// searchable, on a read-only file system, or not a directory (a part of the path is a file).
pub(crate) fn dir_unusable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::NotADirectory
    )
}

fn connect_error(e: io::Error, path: &Path, event: &str) -> Error {
    let shown = path.display();
    if e.kind() == io::ErrorKind::NotADirectory {
        // The socket directory is not a directory: the configuration is wrong, as `serve`
        // reports for the same directory.
        let dir = path.parent().unwrap_or(path).display();
        return Error::new(
            ErrorKind::Config,
            format!(
                "socket directory {dir} is not a directory (or a part of its path is a file): check socket.socket_dir"
            ),
        )
        .with_source(e);
    }
    let message = match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => format!(
            "no server for event {event:?} at {shown}: start one first (for example `socketctl serve {event}`), \
             or check socket.socket_dir"
        ),
        io::ErrorKind::PermissionDenied => format!(
            "permission denied connecting to {shown}: the server's socket.unix.socket_permissions do not let \
             your user in"
        ),
        _ => format!("cannot connect to {shown}"),
    };
    Error::new(ErrorKind::Connection, message).with_source(e)
}

#[cfg(test)]
mod dir_tests {
    use super::*;

    #[test]
    fn the_errors_that_make_a_socket_directory_unusable() {
        for kind in [io::ErrorKind::PermissionDenied, io::ErrorKind::ReadOnlyFilesystem, io::ErrorKind::NotADirectory] {
            assert!(dir_unusable(&io::Error::from(kind)), "{kind:?}");
        }
        for kind in [io::ErrorKind::NotFound, io::ErrorKind::AddrInUse, io::ErrorKind::ConnectionRefused] {
            assert!(!dir_unusable(&io::Error::from(kind)), "{kind:?}");
        }
    }
}
