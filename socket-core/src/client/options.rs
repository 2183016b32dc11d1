//! Client settings: [`ClientOptions`], usually taken from a [`Config`].

use std::time::Duration;

use crate::codec::Limits;
use crate::config::{secs, Config};
use crate::error::Result;

/// Client settings, usually taken from a [`Config`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Time allowed to connect and receive `welcome`.
    pub connect_timeout: Duration,
    /// Reconnect after a lost connection.
    pub auto_reconnect: bool,
    /// First reconnect delay.
    pub reconnect_initial_delay: Duration,
    /// Largest reconnect delay.
    pub reconnect_max_delay: Duration,
    /// Attempts before giving up; `None` is unlimited.
    pub reconnect_max_retries: Option<u32>,
    /// Received messages buffered before the client stops reading.
    pub receive_buffer_size: usize,
    /// Wait for a server that is not up yet.
    pub wait_for_server: bool,
    /// Talk to a legacy server: no `hello`, no `welcome`.
    pub legacy_server: bool,
    /// Name sent in `hello`.
    pub client_name: Option<String>,
    /// Read buffer size.
    pub buffer_size: usize,
    /// Frame and nesting limits.
    pub limits: Limits,
    /// Time allowed from a frame's first byte to its last.
    pub frame_timeout: Duration,
    /// Zone of `timestamp_iso` in messages the client creates.
    pub timezone: jiff::tz::TimeZone,
    /// With `wait_for_server`: how long `connect` waits for a server (`None`: no limit).
    pub wait_timeout: Option<Duration>,
    /// Never send: `send` fails at once with [`crate::ErrorKind::SendNotAllowed`].
    pub receive_only: bool,
    /// Time a `send` may make no progress before it fails (the connection is then reset).
    pub send_timeout: Duration,
}

impl ClientOptions {
    /// Options from `config`.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] if the time zone is unknown.
    pub fn from_config(config: &Config) -> Result<Self> {
        let s = &config.socket;
        Ok(ClientOptions {
            connect_timeout: secs(s.default_timeout),
            auto_reconnect: s.auto_reconnect,
            reconnect_initial_delay: secs(s.reconnect_initial_delay),
            reconnect_max_delay: secs(s.reconnect_max_delay),
            reconnect_max_retries: s.reconnect_max_retries,
            receive_buffer_size: s.receive_buffer_size,
            wait_for_server: s.wait_for_server,
            legacy_server: s.legacy_server,
            client_name: None,
            buffer_size: s.buffer_size,
            limits: Limits { max_frame_len: s.max_message_size, max_depth: s.max_nesting_depth },
            frame_timeout: secs(s.frame_timeout),
            timezone: config.time_zone()?,
            wait_timeout: None,
            receive_only: false,
            send_timeout: secs(s.write_stall_timeout),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_from_config() -> Result<()> {
        let o = ClientOptions::from_config(&Config::default())?;
        assert_eq!(o.connect_timeout, Duration::from_secs(5));
        assert_eq!(o.reconnect_initial_delay, Duration::from_millis(100));
        assert_eq!(o.reconnect_max_delay, Duration::from_secs(5));
        assert_eq!(o.receive_buffer_size, 1024);
        assert!(o.auto_reconnect && !o.receive_only && o.wait_timeout.is_none());
        Ok(())
    }
}
