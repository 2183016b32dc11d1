//! Delivery: one frame to every client (`fan_out`, the offline queue when nobody takes
//! it), one frame to one client (`unicast`), and cutting off a slow consumer.

use std::sync::atomic::Ordering;

use super::outlet::Direct;
use super::registry::{Closing, Entry, Unicast};
use super::{ClientId, Inner};
use crate::codec::{encode_frame, Frame};
use crate::control::ErrorCode;
use crate::error::{Error, ErrorKind, Result};

impl Inner {
    /// Pushes `frame` to every client except `except`, or to the offline
    /// queue when there is no such client (see [`Registry::fan_out`]).
    pub(super) fn fan_out(&self, frame: &[u8], except: Option<u64>) {
        let out = self.registry.fan_out(frame, except);
        if out.offline {
            self.counters.queued.fetch_add(1, Ordering::Relaxed);
            self.count_offline_drops(out.dropped);
        }
        for (c, why) in out.slow {
            self.drop_slow(c, why);
        }
        // A complete chunk goes out from this thread when the writer task is idle.
        for shared in out.full {
            if let Some((frames, bytes)) = shared.outlet.try_flush(&shared) {
                self.counters.messages_sent.fetch_add(frames as u64, Ordering::Relaxed);
                self.counters.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
            }
        }
    }

    pub(super) fn count_offline_drops(&self, n: u64) {
        if n == 0 {
            return;
        }
        let before = self.counters.dropped.fetch_add(n, Ordering::Relaxed);
        // Logged at 1, 2, 4, 8 … drops.
        if (before + 1..=before + n).any(u64::is_power_of_two) {
            tracing::warn!(
                event = %self.event,
                dropped = before + n,
                "offline queue full: dropped the oldest message (message_queue_size / message_queue_bytes)"
            );
        }
    }

    /// Disconnects a client removed from the registry as a slow consumer.
    pub(super) fn drop_slow(&self, c: Entry, why: &str) {
        self.counters.slow_consumers.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(event = %self.event, client = %c.info.id, reason = why, "disconnecting slow consumer");
        let text = format!("client {} did not read fast enough ({why}): disconnected", c.info.id);
        let closing = match self.error_frame(ErrorCode::SlowConsumer, &text) {
            Some(f) => Closing::SlowConsumer(f),
            None => Closing::Shutdown,
        };
        c.shared.close(closing);
    }

    pub(super) fn unicast(&self, id: ClientId, frame: Frame) -> Result<()> {
        // An idle connection gets the frame from this thread, without waking the engine.
        if let Some(shared) = self.registry.get(id.0) {
            if shared.outlet.try_direct(frame.as_bytes(), || shared.is_idle()) == Direct::Written {
                self.counters.messages_sent.fetch_add(1, Ordering::Relaxed);
                self.counters.bytes_sent.fetch_add(frame.len() as u64, Ordering::Relaxed);
                return Ok(());
            }
        }
        match self.registry.unicast(id.0, &frame) {
            Ok(()) => Ok(()),
            Err(Unicast::NoClient) => Err(Error::new(
                ErrorKind::Validation,
                format!("no client {id} is connected to event {}: check clients() for valid ids", self.event),
            )),
            Err(Unicast::Slow(c, why)) => {
                self.drop_slow(c, why);
                Err(Error::new(
                    ErrorKind::Connection,
                    format!("client {id} was disconnected as a slow consumer ({why})"),
                ))
            }
        }
    }

    /// An ERROR frame with `code` and `text`, stamped now.
    pub(super) fn error_frame(&self, code: ErrorCode, text: &str) -> Option<Frame> {
        let msg = code.to_message(&self.event, text, &self.opts.timezone);
        match encode_frame(&msg, self.opts.limits.max_frame_len.max(4096)) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode an error frame");
                None
            }
        }
    }
}
