//! What a server tells about its clients and itself: [`ClientId`], [`ClientInfo`],
//! [`ServerStats`].

use crate::error::Result;

/// A client id, unique for the server's lifetime, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "c{}", self.0)
    }
}

impl std::str::FromStr for ClientId {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        s.strip_prefix('c').and_then(|n| n.parse().ok()).map(ClientId).ok_or_else(|| {
            crate::Error::new(
                crate::ErrorKind::Validation,
                format!("invalid client id {s:?}: expected c<number>, e.g. c1"),
            )
        })
    }
}

/// What the server knows about a connected client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client's id.
    pub id: ClientId,
    /// When it connected, Unix epoch milliseconds.
    pub connected_at_ms: u64,
    /// Peer address as the transport prints it.
    pub address: String,
    /// Peer process id, where the transport knows it.
    pub pid: Option<u32>,
    /// Peer user id, where the transport knows it.
    pub uid: Option<u32>,
    /// `client_name` from `hello`, if any.
    pub client_name: Option<String>,
    /// True once the client sent `hello` (false for legacy clients).
    pub handshaken: bool,
}

impl ClientInfo {
    /// A client `id` with nothing else known, for the registry's tests and models.
    #[cfg(test)]
    pub(super) fn bare(id: u64) -> ClientInfo {
        ClientInfo {
            id: ClientId(id),
            connected_at_ms: 0,
            address: String::new(),
            pid: None,
            uid: None,
            client_name: None,
            handshaken: false,
        }
    }
}

/// Counters of a server since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Message deliveries written to clients (a broadcast to 3 clients counts 3).
    pub messages_sent: u64,
    /// Bytes written to clients.
    pub bytes_sent: u64,
    /// Messages received from clients.
    pub messages_received: u64,
    /// Broadcasts put in the offline queue.
    pub queued: u64,
    /// Broadcasts dropped from the offline queue on overflow.
    pub dropped: u64,
    /// Malformed frames received and dropped.
    pub malformed: u64,
    /// Connections refused (connection limit, peer credentials).
    pub rejected: u64,
    /// Clients disconnected as slow consumers.
    pub slow_consumers: u64,
    /// Replies to one client (ERROR `malformed` or `send_not_allowed`, `pong`, the `welcome` to a
    /// late `hello`) dropped because that client's outbound queue was full.
    pub replies_dropped: u64,
    /// Server events dropped because the application did not take them from
    /// [`Server::events`](super::Server::events) in time (relay mode; see [`ServerEvent::EventsDropped`](super::ServerEvent::EventsDropped)).
    pub events_dropped: u64,
    /// Frames from clients that an application thread waiting in
    /// [`ServerEvents::recv_blocking`](super::ServerEvents::recv_blocking) read and took apart
    /// itself (caller-driven reads, while the server has one connection) instead of the
    /// engine's thread. A share of all frames read, not a count of its own.
    pub frames_read_by_callers: u64,
}
