//! Peer credentials (`SO_PEERCRED`) and who may talk to whom.

use std::os::fd::AsFd;

/// Credentials of the process at the other end, when the platform reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Creds {
    pub(crate) pid: Option<u32>,
    pub(crate) uid: u32,
}

/// Reads the peer's credentials as the kernel recorded them at `connect()` / `listen()` time.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn peer_creds(fd: impl AsFd) -> std::io::Result<Option<Creds>> {
    let cred = rustix::net::sockopt::socket_peercred(fd)?;
    let pid = u32::try_from(cred.pid.as_raw_nonzero().get()).ok();
    Ok(Some(Creds { pid, uid: cred.uid.as_raw() }))
}

/// Reads the peer's credentials; not available on this platform.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn peer_creds(fd: impl AsFd) -> std::io::Result<Option<Creds>> {
    let _ = fd;
    Ok(None)
}

/// Which uids a server serves, or a client trusts as its server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerPolicy {
    /// Our effective uid.
    pub(crate) own: u32,
    /// Serve everyone the kernel lets connect (the socket mode grants group or others write access).
    pub(crate) open: bool,
    /// Extra uids, from `socket.unix.allowed_uids`.
    pub(crate) allowed: Vec<u32>,
}

impl PeerPolicy {
    /// True if a peer running as `uid` may be talked to: our own user, root, an allowed uid, or
    /// anyone when the policy is open.
    pub(crate) fn allows(&self, uid: u32) -> bool {
        self.open || uid == self.own || uid == 0 || self.allowed.contains(&uid)
    }
}
