//! Validation: every value of a loaded or hand-built [`Config`] against its rule.

use std::fmt;

use super::error::{invalid, show_str};
use super::keys::{
    rule_of, MAX_BUFFER_SIZE, MAX_CONNECTIONS, MAX_QUEUE_BYTES, MAX_QUEUE_LEN, MAX_SECONDS, SEND_BUFFER_RANGE,
};
use super::nats::{check_nats_url, is_valid_subject_prefix, MAX_NATS_OUTBOUND_BUFFER};
use super::{Config, ConfigError};
use crate::codec::{MAX_DEPTH_CEILING, MAX_FRAME_LEN_CEILING};

fn ensure(ok: bool, key: &str, value: impl fmt::Display) -> std::result::Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(invalid(key, value))
    }
}

fn positive_secs(key: &str, v: f64) -> std::result::Result<(), ConfigError> {
    ensure(v.is_finite() && v > 0.0 && v <= MAX_SECONDS, key, v)
}

fn in_range(key: &str, v: usize, max: usize) -> std::result::Result<(), ConfigError> {
    ensure((1..=max).contains(&v), key, v)
}

fn port_ok(p: u16) -> bool {
    p >= 1024
}

/// True for a valid transport scheme: 1 to 32 characters from `[a-z0-9_-]`.
pub fn is_valid_scheme(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl Config {
    pub(super) fn check(&self) -> std::result::Result<(), ConfigError> {
        self.check_core()?;
        self.check_unix_and_tcp()?;
        self.check_nats()?;
        self.check_plugin_tables()
    }

    /// The keys of `[socket]` itself.
    fn check_core(&self) -> std::result::Result<(), ConfigError> {
        let s = &self.socket;
        ensure(is_valid_scheme(&s.transport), "socket.transport", show_str(&s.transport))?;
        ensure(!s.socket_dir.as_os_str().is_empty(), "socket.socket_dir", show_str(&s.socket_dir.to_string_lossy()))?;
        positive_secs("socket.default_timeout", s.default_timeout)?;
        in_range("socket.buffer_size", s.buffer_size, MAX_BUFFER_SIZE)?;
        ensure(jiff::tz::TimeZone::get(&s.timezone).is_ok(), "socket.timezone", show_str(&s.timezone))?;
        in_range("socket.message_queue_size", s.message_queue_size, MAX_QUEUE_LEN)?;
        in_range("socket.message_queue_bytes", s.message_queue_bytes, MAX_QUEUE_BYTES)?;
        ensure(
            (64..=MAX_FRAME_LEN_CEILING).contains(&s.max_message_size),
            "socket.max_message_size",
            s.max_message_size,
        )?;
        ensure(
            (2..=MAX_DEPTH_CEILING).contains(&s.max_nesting_depth),
            "socket.max_nesting_depth",
            s.max_nesting_depth,
        )?;
        positive_secs("socket.hello_grace", s.hello_grace)?;
        positive_secs("socket.frame_timeout", s.frame_timeout)?;
        positive_secs("socket.write_stall_timeout", s.write_stall_timeout)?;
        in_range("socket.outbound_queue_size", s.outbound_queue_size, MAX_QUEUE_LEN)?;
        in_range("socket.outbound_queue_bytes", s.outbound_queue_bytes, MAX_QUEUE_BYTES)?;
        in_range("socket.receive_buffer_size", s.receive_buffer_size, MAX_QUEUE_LEN)?;
        in_range("socket.inbound_queue_size", s.inbound_queue_size, MAX_QUEUE_LEN)?;
        positive_secs("socket.reconnect_initial_delay", s.reconnect_initial_delay)?;
        positive_secs("socket.reconnect_max_delay", s.reconnect_max_delay)?;
        ensure(
            s.reconnect_initial_delay <= s.reconnect_max_delay,
            "socket.reconnect_initial_delay",
            format_args!("{} (socket.reconnect_max_delay is {})", s.reconnect_initial_delay, s.reconnect_max_delay),
        )?;
        Ok(())
    }

    /// The `[socket.unix]` and `[socket.tcp]` tables.
    fn check_unix_and_tcp(&self) -> std::result::Result<(), ConfigError> {
        let s = &self.socket;
        let u = &s.unix;
        in_range("socket.unix.max_connections", u.max_connections, MAX_CONNECTIONS)?;
        ensure(SEND_BUFFER_RANGE.contains(&u.send_buffer_bytes), "socket.unix.send_buffer_bytes", u.send_buffer_bytes)?;
        let t = &s.tcp;
        ensure(!t.host.trim().is_empty(), "socket.tcp.host", show_str(&t.host))?;
        if let Some(port) = t.port {
            ensure(port_ok(port), "socket.tcp.port", port)?;
        }
        ensure(port_ok(t.port_range_start), "socket.tcp.port_range_start", t.port_range_start)?;
        ensure(port_ok(t.port_range_end), "socket.tcp.port_range_end", t.port_range_end)?;
        ensure(
            t.port_range_start <= t.port_range_end,
            "socket.tcp.port_range_start",
            format_args!("{} (socket.tcp.port_range_end is {})", t.port_range_start, t.port_range_end),
        )?;
        in_range("socket.tcp.max_connections", t.max_connections, MAX_CONNECTIONS)?;
        Ok(())
    }

    /// The `[socket.nats]` table.
    fn check_nats(&self) -> std::result::Result<(), ConfigError> {
        let s = &self.socket;
        let n = &s.nats;
        ensure(!n.url.is_empty(), "socket.nats.url", "[]")?;
        for url in &n.url {
            if let Err(why) = check_nats_url(url) {
                return Err(ConfigError::InvalidValue {
                    key: "socket.nats.url".to_owned(),
                    value: show_str(url),
                    rule: format!("{} ({why})", rule_of("socket.nats.url")),
                    origin: String::new(),
                });
            }
        }
        ensure(is_valid_subject_prefix(&n.subject_prefix), "socket.nats.subject_prefix", show_str(&n.subject_prefix))?;
        for (k, p) in [
            ("socket.nats.credentials_file", &n.credentials_file),
            ("socket.nats.token_file", &n.token_file),
            ("socket.nats.tls_ca_file", &n.tls_ca_file),
        ] {
            if let Some(p) = p {
                ensure(!p.as_os_str().is_empty(), k, "\"\"")?;
            }
        }
        ensure(
            (1..=MAX_NATS_OUTBOUND_BUFFER).contains(&n.outbound_buffer),
            "socket.nats.outbound_buffer",
            n.outbound_buffer,
        )?;
        Ok(())
    }

    /// The names of the plug-in tables (their contents are their transport's to check).
    fn check_plugin_tables(&self) -> std::result::Result<(), ConfigError> {
        let s = &self.socket;
        for name in s.plugins.keys() {
            ensure(is_valid_scheme(name), &format!("socket.{name}"), "(a table)").map_err(|_| {
                ConfigError::InvalidValue {
                    key: format!("socket.{name}"),
                    value: "(a table)".to_owned(),
                    rule:
                        "a plug-in transport table named by its scheme: 1 to 32 characters from a-z, 0-9, '_' and '-'"
                            .to_owned(),
                    origin: String::new(),
                }
            })?;
        }
        Ok(())
    }
}
