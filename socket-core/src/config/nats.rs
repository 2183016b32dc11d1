//! The `[socket.nats]` table of the NATS bridge and the checks of its values.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The `[socket.nats]` table: settings of the NATS bridge (`socket-nats`,
/// `socketctl bridge`). Secrets are never values here: the token and the
/// credentials live in files named by these keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// NATS server URLs (`nats://host:port`, `tls://host:port`, or `host:port`).
    pub url: Vec<String>,
    /// First part of every subject: `{subject_prefix}.{event_name}`.
    pub subject_prefix: String,
    /// A `.creds` file (NKey seed and user JWT).
    pub credentials_file: Option<PathBuf>,
    /// A file holding the authentication token.
    pub token_file: Option<PathBuf>,
    /// A PEM file of CA certificates that sign the NATS servers' certificates.
    pub tls_ca_file: Option<PathBuf>,
    /// Keep the last message of each subject in JetStream and deliver it first to late joiners.
    pub retain: bool,
    /// Outbound messages kept while NATS is unreachable; the oldest are dropped beyond it.
    pub outbound_buffer: usize,
}

impl Default for NatsSettings {
    fn default() -> Self {
        NatsSettings {
            url: vec!["nats://127.0.0.1:4222".to_owned()],
            subject_prefix: "socket".to_owned(),
            credentials_file: None,
            token_file: None,
            tls_ca_file: None,
            retain: false,
            outbound_buffer: 1024,
        }
    }
}

/// Largest `socket.nats.outbound_buffer`.
pub const MAX_NATS_OUTBOUND_BUFFER: usize = 1 << 20;

/// Checks one NATS server URL: `nats://`, `tls://` (also `ws://`, `wss://`)
/// or no scheme, a non-empty host, an optional port in `1..=65535`, nothing
/// after the port but an optional `/`.
///
/// Returns what is wrong, in words.
///
/// # Examples
///
/// ```
/// use socket_core::config::check_nats_url;
///
/// assert!(check_nats_url("nats://127.0.0.1:4222").is_ok());
/// assert!(check_nats_url("tls://nats.example.org").is_ok());
/// assert!(check_nats_url("http://x:1").is_err());
/// assert!(check_nats_url("nats://host:99999").is_err());
/// ```
pub fn check_nats_url(url: &str) -> std::result::Result<(), String> {
    let url = url.trim();
    let rest = match url.split_once("://") {
        Some((scheme, rest)) => {
            if !["nats", "tls", "ws", "wss"].contains(&scheme.to_ascii_lowercase().as_str()) {
                return Err(format!("unknown scheme {scheme:?}: use nats://, tls://, ws:// or wss://"));
            }
            rest
        }
        None => url,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    if hostport.is_empty() || hostport.contains(['/', '?', '#', ' ']) {
        return Err("expected host[:port] after the scheme".to_owned());
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, "")) => (h, None),
            Some((h, p)) => (h, Some(p.strip_prefix(':').ok_or("expected :port after ]")?)),
            None => return Err("unclosed [ in an IPv6 address".to_owned()),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("empty host".to_owned());
    }
    if let Some(p) = port {
        if !p.parse::<u16>().is_ok_and(|p| p > 0) {
            return Err(format!("invalid port {p:?}: expected 1..=65535"));
        }
    }
    Ok(())
}

/// Checks a NATS subject prefix: dot-separated tokens of printable
/// characters without spaces, `*` or `>`, at most 128 bytes.
///
/// # Examples
///
/// ```
/// use socket_core::config::is_valid_subject_prefix;
///
/// assert!(is_valid_subject_prefix("socket"));
/// assert!(is_valid_subject_prefix("home.desk"));
/// assert!(!is_valid_subject_prefix("a..b"));
/// assert!(!is_valid_subject_prefix("a.>"));
/// ```
pub fn is_valid_subject_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= 128
        && prefix.split('.').all(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_graphic() && c != '*' && c != '>'))
}
