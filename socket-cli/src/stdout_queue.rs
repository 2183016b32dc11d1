//! A bounded, lossy queue of stdout lines, so that a stdout nobody reads never holds up the
//! thread that produces the lines (`serve`: the server's event stream).
//!
//! The producer never waits: when the queue is full (by line count or by bytes) the oldest
//! lines are dropped and counted. The printer thread writes the lines in order; before the
//! first line after a loss it writes `{"event":"events_dropped","count":N}`, so the loss is
//! never silent. Losses reported by the producer itself (the library's
//! `ServerEvent::EventsDropped`) are added to the same count.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use serde_json::json;

/// Lines kept for a stdout that does not move.
pub(crate) const MAX_LINES: usize = 1024;
/// Bytes kept for a stdout that does not move (one longer line is still kept alone).
pub(crate) const MAX_BYTES: usize = 8 << 20;

#[derive(Debug, Default)]
struct State {
    lines: VecDeque<String>,
    bytes: usize,
    /// Lines dropped and not yet reported.
    dropped: u64,
    /// No more lines will come.
    closed: bool,
}

/// See the module documentation. Cloning gives another handle to the same queue.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lines {
    inner: Arc<(Mutex<State>, Condvar)>,
}

/// What the printer takes next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// A line to print.
    Line(String),
    /// The queue is closed and empty.
    End,
}

impl Lines {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `line`, dropping the oldest lines over the bounds. Never waits.
    pub(crate) fn push(&self, line: String) {
        let mut st = self.lock();
        st.bytes += line.len();
        st.lines.push_back(line);
        while st.lines.len() > MAX_LINES || (st.bytes > MAX_BYTES && st.lines.len() > 1) {
            if let Some(old) = st.lines.pop_front() {
                st.bytes -= old.len();
                st.dropped += 1;
            }
        }
        drop(st);
        self.inner.1.notify_one();
    }

    /// Adds `count` lines that were lost before they reached this queue.
    pub(crate) fn lost(&self, count: u64) {
        self.lock().dropped += count;
        self.inner.1.notify_one();
    }

    /// No more lines: the printer ends once it printed what is queued.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.inner.1.notify_all();
    }

    /// The next line to print, waiting for one; the `events_dropped` report comes first.
    pub(crate) fn next(&self) -> Next {
        let mut st = self.lock();
        loop {
            if st.dropped > 0 {
                let count = std::mem::take(&mut st.dropped);
                return Next::Line(json!({"event": "events_dropped", "count": count}).to_string());
            }
            if let Some(line) = st.lines.pop_front() {
                st.bytes -= line.len();
                return Next::Line(line);
            }
            if st.closed {
                return Next::End;
            }
            st = self.inner.1.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take_all(lines: &Lines) -> Vec<String> {
        lines.close();
        let mut out = Vec::new();
        while let Next::Line(l) = lines.next() {
            out.push(l);
        }
        out
    }

    /// The count of an `events_dropped` line.
    fn report(line: &str) -> Option<u64> {
        let j: serde_json::Value = serde_json::from_str(line).ok()?;
        (j["event"] == "events_dropped").then(|| j["count"].as_u64()).flatten()
    }

    #[test]
    fn lines_come_out_in_order() {
        let lines = Lines::default();
        lines.push("a".into());
        lines.push("b".into());
        assert_eq!(take_all(&lines), ["a", "b"]);
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_reports_the_count_first() {
        let lines = Lines::default();
        for i in 0..MAX_LINES + 5 {
            lines.push(i.to_string());
        }
        let out = take_all(&lines);
        assert_eq!(report(&out[0]), Some(5));
        assert_eq!(out[1], "5");
        assert_eq!(out.len(), MAX_LINES + 1);
        assert_eq!(out.last().map(String::as_str), Some((MAX_LINES + 4).to_string().as_str()));
    }

    #[test]
    fn the_byte_bound_keeps_one_long_line_alone() {
        let lines = Lines::default();
        lines.push("x".repeat(MAX_BYTES / 2 + 1));
        lines.push("y".repeat(MAX_BYTES / 2 + 1));
        let out = take_all(&lines);
        assert_eq!(out.len(), 2, "the report and the newest line");
        assert_eq!(report(&out[0]), Some(1));
        assert!(out[1].starts_with('y'));
    }

    #[test]
    fn losses_reported_upstream_join_the_count() {
        let lines = Lines::default();
        lines.lost(3);
        lines.push("a".into());
        let out = take_all(&lines);
        assert_eq!(out.len(), 2);
        assert_eq!(report(&out[0]), Some(3));
        assert_eq!(out[1], "a");
    }
}
