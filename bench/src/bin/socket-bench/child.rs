//! Child processes of a cell, the one helper every contender uses: this binary
//! run again in a hidden mode (`__ceiling_sub`, `__lib_echo`, ...; the one
//! dispatch is in `socket-bench.rs`), as the independent harness runs its
//! throughput subscribers and its round-trip echo peer (`bench-peers`,
//! `src/ctl.rs`).
//!
//! A child talks to its parent in lines on its stdout: `ready` (or
//! `ready <address>`) once it can receive or serve, `done` when its n-th message
//! came, and `failed <why>` when it fails, then it exits non-zero. A thread per child
//! stamps each line as it arrives, so the end of a throughput cell is when the
//! last `done` came, however late the parent looks (the harness's
//! `wait_done`). Every wait gives up after [`IO_TIMEOUT`], and a child that
//! fails, ends early or says anything unexpected fails the cell.
//!
//! A child is spawned by the thread that runs the cells and inherits its CPU
//! affinity: spawned after [`crate::common::pin_process`], it runs on the
//! pinned CPU too, as the harness's echo child inherits `taskset -c 0`
//! ([`Children::spawn`] checks it).

use std::io::{self, BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{check_same_cpus, ctx, BenchResult, IO_TIMEOUT};

/// A line of child `idx` (`None`: its stdout closed) and when it came.
type Line = (usize, Option<String>, Instant);

/// The child processes of one cell and the lines they say.
#[derive(Debug)]
pub(crate) struct Children {
    /// What a child is, for messages ("ceiling subscriber").
    what: &'static str,
    procs: Vec<std::process::Child>,
    lines: Receiver<Line>,
    /// The children whose stdout has closed.
    closed: Vec<bool>,
    /// The first `failed` line any child said.
    failure: Option<String>,
}

impl Children {
    /// Starts `k` children in `mode`, child `idx` with the arguments `args(idx)`.
    pub(crate) fn spawn(
        what: &'static str,
        mode: &str,
        k: usize,
        args: impl Fn(usize) -> Vec<String>,
    ) -> BenchResult<Children> {
        let exe = std::env::current_exe().map_err(ctx("current_exe"))?;
        let (tx, lines) = mpsc::channel();
        let mut kids = Children { what, procs: Vec::with_capacity(k), lines, closed: vec![false; k], failure: None };
        for idx in 0..k {
            let mut proc = Command::new(&exe)
                .arg(mode)
                .args(args(idx))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("spawn {}: {e}", kids.name(idx)))?;
            let stdout = proc.stdout.take();
            let pid = proc.id();
            // Owned from here on: an error below kills it (Drop).
            kids.procs.push(proc);
            let stdout = stdout.ok_or_else(|| format!("{}: no stdout", kids.name(idx)))?;
            check_same_cpus(pid).map_err(|e| format!("{}: {e}", kids.name(idx)))?;
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if tx.send((idx, Some(line), Instant::now())).is_err() {
                        return;
                    }
                }
                let _ = tx.send((idx, None, Instant::now()));
            });
        }
        Ok(kids)
    }

    fn name(&self, idx: usize) -> String {
        if self.closed.len() == 1 {
            self.what.to_owned()
        } else {
            format!("{} {idx}", self.what)
        }
    }

    /// Waits until every child has said `word`; returns what followed it on each
    /// child's line and when the line came.
    pub(crate) fn wait_all(&mut self, word: &str) -> BenchResult<Vec<(String, Instant)>> {
        self.wait_all_ticking(word, IO_TIMEOUT, || Ok(()))
    }

    /// [`Children::wait_all`], calling `tick` at once and then every `every`
    /// while waiting (libzmq's subscribers say `ready` when a probe reaches them).
    pub(crate) fn wait_all_ticking(
        &mut self,
        word: &str,
        every: Duration,
        mut tick: impl FnMut() -> BenchResult<()>,
    ) -> BenchResult<Vec<(String, Instant)>> {
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut heard: Vec<Option<(String, Instant)>> = vec![None; self.procs.len()];
        let mut next_tick = Instant::now();
        while let Some(missing) = heard.iter().position(Option::is_none) {
            let now = Instant::now();
            if now >= deadline {
                return Err(format!("{}: no {word:?} within {IO_TIMEOUT:?}", self.name(missing)));
            }
            if now >= next_tick {
                tick()?;
                next_tick = now + every;
            }
            let (idx, line, at) = match self.lines.recv_timeout(next_tick.min(deadline).saturating_duration_since(now))
            {
                Ok(l) => l,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Err(format!("{}: no output", self.what)),
            };
            let Some(line) = line else {
                // A child may end as soon as it has said its word (a subscriber after `done`).
                self.closed[idx] = true;
                if heard[idx].is_some() {
                    continue;
                }
                return Err(self.ended_early(idx, word));
            };
            let Some(rest) = said(&line, word) else {
                return Err(self.unexpected(idx, &line, word));
            };
            if heard[idx].replace((rest.to_owned(), at)).is_some() {
                return Err(format!("{} said {word:?} twice", self.name(idx)));
            }
        }
        Ok(heard.into_iter().flatten().collect())
    }

    /// The error for `line` where `word` was expected; a `failed` line is the child's own error.
    fn unexpected(&mut self, idx: usize, line: &str, word: &str) -> String {
        let e = match line.strip_prefix("failed ") {
            Some(why) => format!("{}: {why}", self.name(idx)),
            None => format!("{} said {line:?}, expected {word:?}", self.name(idx)),
        };
        self.failure.get_or_insert(e).clone()
    }

    /// The error for child `idx` whose stdout closed before it said `word`.
    fn ended_early(&mut self, idx: usize, word: &str) -> String {
        let status = self.procs[idx].wait().map_or_else(|e| e.to_string(), |s| s.to_string());
        format!("{} ended before saying {word:?} ({status}; see its stderr)", self.name(idx))
    }

    /// Waits until every child has ended (at most [`IO_TIMEOUT`]), each without
    /// another line and with success. A child's own `failed` line, also one seen
    /// earlier, is the error: it explains whatever failed on the parent's side.
    pub(crate) fn finish(mut self) -> BenchResult<()> {
        let deadline = Instant::now() + IO_TIMEOUT;
        while let Some(open) = self.closed.iter().position(|c| !c) {
            if let Some(e) = &self.failure {
                return Err(e.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((idx, Some(line), _)) => {
                    let e = self.unexpected(idx, &line, "nothing more");
                    return Err(e);
                }
                Ok((idx, None, _)) => self.closed[idx] = true,
                Err(_) => return Err(format!("{} did not end within {IO_TIMEOUT:?}", self.name(open))),
            }
        }
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        for idx in 0..self.procs.len() {
            let status = self.procs[idx].wait().map_err(|e| format!("wait for {}: {e}", self.name(idx)))?;
            if !status.success() {
                return Err(format!("{} failed ({status}; see its stderr)", self.name(idx)));
            }
        }
        Ok(())
    }

    /// Stops the children of a cell whose parent side failed with `e`; returns the
    /// failure a child has said by now (it explains the parent's), else `e`.
    pub(crate) fn stop(mut self, e: String) -> String {
        while let Ok((idx, line, _)) = self.lines.try_recv() {
            match line {
                Some(line) if line.starts_with("failed ") => {
                    self.unexpected(idx, &line, "");
                }
                _ => {}
            }
        }
        self.failure.take().unwrap_or(e)
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for p in &mut self.procs {
            if matches!(p.try_wait(), Ok(None)) {
                let _ = p.kill();
                let _ = p.wait();
            }
        }
    }
}

/// What follows `word` on `line` if the line is `word` or `word <rest>`.
fn said<'a>(line: &'a str, word: &str) -> Option<&'a str> {
    match line.strip_prefix(word)? {
        "" => Some(""),
        rest => rest.strip_prefix(' '),
    }
}

/// Child side: one line to the parent.
pub(crate) fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Child side: the first thing a child does; it is killed when the thread that
/// spawned it (the parent's main thread) ends, so no child outlives a killed parent.
pub(crate) fn die_with_parent() {
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
}

/// Child side: parses argument `what` of a child mode.
pub(crate) fn arg<T: FromStr>(v: &str, what: &str) -> BenchResult<T>
where
    T::Err: std::fmt::Display,
{
    v.parse().map_err(|e| format!("{what} {v:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::said;

    #[test]
    fn a_word_is_a_whole_word() {
        assert_eq!(said("ready", "ready"), Some(""));
        assert_eq!(said("ready 127.0.0.1:9000", "ready"), Some("127.0.0.1:9000"));
        assert_eq!(said("readyish", "ready"), None);
        assert_eq!(said("failed out of order", "done"), None);
    }
}
