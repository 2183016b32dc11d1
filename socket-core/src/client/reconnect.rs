//! The supervisor: runs the live connection's reader, and on its end
//! reconnects with backoff (see the [module docs](super) for the policy) or
//! closes the client.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future;

use super::connect::ProtocolMismatch;
use super::receive::{drain, LinkReader, ReadEnd, WRITE_FAILED};
use super::{ConnectionState, Inner};
use crate::runtime;

impl Inner {
    /// Reads one connection until it ends, handing the read side to blocking receivers and
    /// taking it back (`lead.rs`) as they come and go; returns why it ended, with the side.
    async fn serve_link(&self, mut link: LinkReader) -> (String, LinkReader) {
        let switch = link.link.clone();
        loop {
            let end = future::or(self.read_frames(&mut link), async {
                switch.dead().await;
                ReadEnd::Ended(WRITE_FAILED.to_owned())
            })
            .await;
            match end {
                ReadEnd::Ended(reason) => return (reason, link),
                ReadEnd::Handover => {
                    self.hand_over(link);
                    match self.take_back(&switch).await {
                        Ok(back) => link = back,
                        Err(ended) => return ended,
                    }
                }
            }
        }
    }

    /// Runs connections and reconnects until closed.
    pub(super) async fn supervise(self: Arc<Self>, mut link: LinkReader) {
        loop {
            let (reason, back) = self.serve_link(link).await;
            link = back;
            self.connected.store(false, Ordering::Release);
            link.link.kill();
            // Receipts of this connection can no longer come: their waiters fail.
            self.lock().receipts.clear();
            if self.lingering.load(Ordering::Acquire) {
                let drained = drain(&mut link.reader).await;
                self.lock().drained = Some(drained);
                return;
            }
            if let Some(s) = self.writer.lock().await.take() {
                drop(s);
            }
            let reason = match self.lock().shutdown_reason.take() {
                Some(r) if r.is_empty() => "the server shut down".to_owned(),
                Some(r) => format!("the server shut down: {r}"),
                None => reason,
            };
            if !self.opts.auto_reconnect {
                self.close(format!("connection to the server for event {} ended: {reason}", self.event));
                return;
            }
            tracing::info!(event = %self.event, %reason, "connection lost, reconnecting");
            {
                let mut sh = self.lock();
                if sh.state == ConnectionState::Closed {
                    return;
                }
                self.set_state(&mut sh, ConnectionState::Reconnecting);
            }
            let mut delay = self.opts.reconnect_initial_delay;
            let mut attempts: u32 = 0;
            let mut last = reason;
            link = loop {
                if self.opts.reconnect_max_retries.is_some_and(|max| attempts >= max) {
                    self.close(format!(
                        "gave up reconnecting to the server for event {} after {attempts} attempts: {last}",
                        self.event
                    ));
                    return;
                }
                runtime::sleep(self.backoff(delay)).await;
                attempts += 1;
                match self.establish().await {
                    Ok(est) => match self.install(est).await {
                        Ok(l) => break l,
                        Err(_) => return,
                    },
                    Err(e) if ProtocolMismatch::is_cause_of(&e) => {
                        // Retrying cannot help: the server speaks another protocol version.
                        self.close(format!("reconnecting to the server for event {} failed: {e}", self.event));
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(event = %self.event, error = %e, attempts, "reconnect attempt failed");
                        last = e.to_string();
                        delay = self.next_delay(delay);
                    }
                }
            };
        }
    }

    pub(super) fn backoff(&self, cur: Duration) -> Duration {
        backoff_delay(self.opts.reconnect_initial_delay, cur)
    }

    pub(super) fn next_delay(&self, cur: Duration) -> Duration {
        cur.saturating_mul(2).min(self.opts.reconnect_max_delay.max(self.opts.reconnect_initial_delay))
    }
}

/// A random delay in `[initial / 2, cur]` (full jitter above the floor `initial / 2`).
fn backoff_delay(initial: Duration, cur: Duration) -> Duration {
    let floor = (initial / 2).min(cur);
    floor + (cur - floor).mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn backoff_stays_between_floor_and_cap_and_spreads() {
        let initial = Duration::from_millis(100);
        let cap = Duration::from_secs(5);
        let mut cur = initial;
        for _ in 0..10 {
            cur = cur.saturating_mul(2).min(cap);
        }
        assert_eq!(cur, cap);
        let samples: Vec<Duration> = (0..1000).map(|_| backoff_delay(initial, cur)).collect();
        assert!(samples.iter().all(|d| *d >= initial / 2 && *d <= cap));
        let mean = samples.iter().sum::<Duration>() / 1000;
        // Full jitter: the mean sits near the middle, far from the cap (no synchronized spikes).
        assert!(mean > Duration::from_millis(2000) && mean < Duration::from_millis(3100), "mean {mean:?}");
        // The first delay is jittered too, in [initial / 2, initial].
        let first: Vec<Duration> = (0..1000).map(|_| backoff_delay(initial, initial)).collect();
        assert!(first.iter().all(|d| *d >= initial / 2 && *d <= initial));
        let spread = first.iter().max().copied().unwrap_or_default() - first.iter().min().copied().unwrap_or_default();
        assert!(spread > initial / 4, "first delays spread over {spread:?} only");
    }
}
