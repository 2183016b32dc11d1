//! Running `socketctl` as a subprocess under a watchdog.
//!
//! Every wait has a deadline: stdout and stderr are read by threads that forward lines
//! over channels (`recv_timeout`), the exit status comes from a waiter thread, and a
//! process that is still running when its [`Proc`] is dropped is killed. Nothing sleeps.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

/// Error type of the tests.
pub(crate) type TestError = Box<dyn std::error::Error + Send + Sync>;
/// Result type of the tests.
pub(crate) type TestResult<T = ()> = Result<T, TestError>;

/// How long any single expected event may take.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// Builds a test error from a message.
pub(crate) fn fail(message: impl Into<String>) -> TestError {
    message.into().into()
}

/// A temp directory for one test: the socket directory, and a config home with no file.
pub(crate) struct TestEnv {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl TestEnv {
    /// A fresh environment.
    pub(crate) fn new() -> TestResult<Self> {
        let dir = tempfile::Builder::new().prefix("sctl").tempdir()?;
        std::fs::create_dir(dir.path().join("config"))?;
        Ok(TestEnv { dir, env: Vec::new() })
    }

    /// The socket directory passed as `--socket-dir`.
    pub(crate) fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The socket file of `event`.
    pub(crate) fn socket_path(&self, event: &str) -> PathBuf {
        self.dir.path().join(format!("{event}.sock"))
    }

    /// A path inside the temp directory (for config files and the like).
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join("config").join(name)
    }

    /// Sets an environment variable on every process spawned from now on.
    pub(crate) fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Runs `socketctl ARGS --socket-dir DIR`.
    pub(crate) fn spawn(&self, args: &[&str]) -> TestResult<Proc> {
        let mut all: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        all.push("--socket-dir".to_owned());
        all.push(self.socket_dir().to_string_lossy().into_owned());
        self.spawn_raw(&all)
    }

    /// Runs `socketctl ARGS` exactly as given (no `--socket-dir`).
    pub(crate) fn spawn_raw<S: AsRef<str>>(&self, args: &[S]) -> TestResult<Proc> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_socketctl"));
        cmd.args(args.iter().map(AsRef::as_ref));
        // Hermetic: no configuration from the developer's environment.
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.starts_with("SOCKET_") || k == "RUST_LOG") {
                cmd.env_remove(key);
            }
        }
        cmd.env("XDG_CONFIG_HOME", self.dir.path().join("config"));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let name = args.iter().map(AsRef::as_ref).take(2).collect::<Vec<_>>().join(" ");
        Proc::spawn(cmd, name)
    }

    /// Runs a shell command line (`sh -c`) as a user's configuration would: the built
    /// `socketctl` first on `PATH`, the socket directory given by `SOCKET__SOCKET_DIR`
    /// (the command line itself names none), otherwise as hermetic as [`spawn_raw`](Self::spawn_raw).
    /// `exec` replaces the shell, so the process (and its pid) is the command's own.
    pub(crate) fn spawn_shell(&self, line: &str) -> TestResult<Proc> {
        let bin = Path::new(env!("CARGO_BIN_EXE_socketctl")).parent().ok_or("no bin dir")?.to_path_buf();
        let path = std::env::var_os("PATH").unwrap_or_default();
        let path = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&path)))?;
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!("exec {line}"));
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.starts_with("SOCKET_") || k == "RUST_LOG") {
                cmd.env_remove(key);
            }
        }
        cmd.env("PATH", path)
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("SOCKET__SOCKET_DIR", self.socket_dir());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        Proc::spawn(cmd, format!("sh -c {line:?}"))
    }

    /// Runs `socketctl ARGS --socket-dir DIR` to completion: (exit code, stdout lines, stderr lines).
    pub(crate) fn run(&self, args: &[&str]) -> TestResult<Output> {
        self.spawn(args)?.finish()
    }

    /// Like [`run`](Self::run) without `--socket-dir`.
    pub(crate) fn run_raw(&self, args: &[&str]) -> TestResult<Output> {
        self.spawn_raw(args)?.finish()
    }
}

/// What a finished process printed.
#[derive(Debug)]
pub(crate) struct Output {
    /// Exit code.
    pub(crate) code: i32,
    /// Stdout lines.
    pub(crate) stdout: Vec<String>,
    /// Stderr lines.
    pub(crate) stderr: Vec<String>,
}

impl Output {
    /// Checks the exit code, that stdout is empty, and that stderr is exactly one line
    /// `socketctl: ...` containing `needle`.
    pub(crate) fn expect_error(&self, code: i32, needle: &str) -> TestResult {
        if self.code != code {
            return Err(fail(format!("expected exit {code}, got {self:?}")));
        }
        if !self.stdout.is_empty() {
            return Err(fail(format!("expected no stdout on error, got {self:?}")));
        }
        match self.stderr.as_slice() {
            [line] if line.starts_with("socketctl: ") && line.contains(needle) => Ok(()),
            _ => Err(fail(format!("expected one stderr line containing {needle:?}, got {self:?}"))),
        }
    }
}

enum Line {
    Text(String),
    Eof,
}

/// A running `socketctl` process.
pub(crate) struct Proc {
    name: String,
    pid: u32,
    stdin: Option<ChildStdin>,
    stdout: Receiver<Line>,
    stderr: Receiver<Line>,
    exit: Receiver<ExitStatus>,
    exited: Arc<AtomicBool>,
    status: Option<ExitStatus>,
    pushed_back: VecDeque<String>,
    stderr_lines: Vec<String>,
    stderr_done: bool,
}

fn forward(reader: impl std::io::Read + Send + 'static, tx: mpsc::Sender<Line>) {
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            match line {
                Ok(l) => {
                    if tx.send(Line::Text(l)).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = tx.send(Line::Eof);
    });
}

impl Proc {
    /// Runs `cmd` under the watchdog; `name` appears in failure messages.
    pub(crate) fn spawn(mut cmd: Command, name: String) -> TestResult<Proc> {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let pid = child.id();
        let stdin = child.stdin.take();
        let (out_tx, stdout) = mpsc::channel();
        let (err_tx, stderr) = mpsc::channel();
        forward(child.stdout.take().ok_or("no stdout")?, out_tx);
        forward(child.stderr.take().ok_or("no stderr")?, err_tx);
        let (exit_tx, exit) = mpsc::channel();
        let exited = Arc::new(AtomicBool::new(false));
        let flag = exited.clone();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                flag.store(true, Ordering::SeqCst);
                let _ = exit_tx.send(status);
            }
        });
        Ok(Proc {
            name,
            pid,
            stdin,
            stdout,
            stderr,
            exit,
            exited,
            status: None,
            pushed_back: VecDeque::new(),
            stderr_lines: Vec::new(),
            stderr_done: false,
        })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The next stdout line, waiting at most `timeout`.
    pub(crate) fn line_within(&mut self, timeout: Duration) -> TestResult<String> {
        if let Some(line) = self.pushed_back.pop_front() {
            return Ok(line);
        }
        match self.stdout.recv_timeout(timeout) {
            Ok(Line::Text(l)) => Ok(l),
            Ok(Line::Eof) | Err(RecvTimeoutError::Disconnected) => {
                let stderr = self.stderr_now();
                Err(fail(format!("{}: stdout ended; stderr: {stderr:?}", self.name)))
            }
            Err(RecvTimeoutError::Timeout) => {
                let stderr = self.stderr_now();
                Err(fail(format!("{}: no stdout line within {timeout:?}; stderr: {stderr:?}", self.name)))
            }
        }
    }

    /// Every stdout line that comes within `period` (a wait for something that must not
    /// happen: the period always runs out). An end of stdout is an error.
    pub(crate) fn lines_for(&mut self, period: Duration) -> TestResult<Vec<String>> {
        let until = Instant::now() + period;
        let mut lines: Vec<String> = self.pushed_back.drain(..).collect();
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.stdout.recv_timeout(left) {
                Ok(Line::Text(l)) => lines.push(l),
                Ok(Line::Eof) | Err(RecvTimeoutError::Disconnected) => {
                    let stderr = self.stderr_now();
                    return Err(fail(format!("{}: stdout ended; stderr: {stderr:?}", self.name)));
                }
                Err(RecvTimeoutError::Timeout) => break,
            }
        }
        Ok(lines)
    }

    /// The next stdout line, within [`DEADLINE`].
    pub(crate) fn line(&mut self) -> TestResult<String> {
        self.line_within(DEADLINE)
    }

    /// The next stdout line parsed as JSON.
    pub(crate) fn json(&mut self) -> TestResult<Json> {
        let line = self.line()?;
        serde_json::from_str(&line).map_err(|e| fail(format!("{}: stdout line {line:?} is not JSON: {e}", self.name)))
    }

    /// Reads stdout lines until one is a JSON object with `"event": event`; returns it.
    /// Lines skipped on the way are returned by later reads in order.
    pub(crate) fn expect_event(&mut self, event: &str) -> TestResult<Json> {
        self.expect_match(&format!("event {event:?}"), |j| j["event"] == event)
    }

    /// Waits for the `connected` event of the client process `pid` (Unix peer credentials).
    pub(crate) fn expect_connected(&mut self, pid: u32) -> TestResult<Json> {
        self.expect_match(&format!("connected event of pid {pid}"), |j| j["event"] == "connected" && j["pid"] == pid)
    }

    /// Reads stdout lines until one is JSON matching `pred`; returns it. Lines skipped on
    /// the way are returned by later reads in order.
    pub(crate) fn expect_match(&mut self, what: &str, pred: impl Fn(&Json) -> bool) -> TestResult<Json> {
        let deadline = Instant::now() + DEADLINE;
        let mut skipped = Vec::new();
        let found = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.line_within(left) {
                Ok(line) => line,
                Err(e) => {
                    return Err(fail(format!("{e}; waiting for {what}, skipped {skipped:?}")));
                }
            };
            match serde_json::from_str::<Json>(&line) {
                Ok(j) if pred(&j) => break j,
                _ => skipped.push(line),
            }
        };
        for (i, line) in skipped.into_iter().enumerate() {
            self.pushed_back.insert(i, line);
        }
        Ok(found)
    }

    /// Writes one line to stdin.
    pub(crate) fn write_line(&mut self, line: &str) -> TestResult {
        let stdin = self.stdin.as_mut().ok_or("stdin already closed")?;
        stdin.write_all(line.as_bytes())?;
        stdin.write_all(b"\n")?;
        stdin.flush()?;
        Ok(())
    }

    /// Closes stdin (end of input).
    pub(crate) fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends `signal` to the process, unless it has exited.
    pub(crate) fn signal(&self, signal: rustix::process::Signal) -> TestResult {
        if self.exited.load(Ordering::SeqCst) {
            return Err(fail(format!("{}: cannot signal, already exited", self.name)));
        }
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.pid)?).ok_or("pid 0")?;
        rustix::process::kill_process(pid, signal)?;
        Ok(())
    }

    /// Waits for the exit code, within [`DEADLINE`]; a signal death is an error.
    pub(crate) fn wait(&mut self) -> TestResult<i32> {
        self.wait_within(DEADLINE)
    }

    /// Waits for the exit code, at most `timeout`.
    pub(crate) fn wait_within(&mut self, timeout: Duration) -> TestResult<i32> {
        let status = match self.status {
            Some(s) => s,
            None => match self.exit.recv_timeout(timeout) {
                Ok(s) => {
                    self.status = Some(s);
                    s
                }
                Err(_) => {
                    let stderr = self.stderr_now();
                    return Err(fail(format!("{}: still running after {timeout:?}; stderr: {stderr:?}", self.name)));
                }
            },
        };
        status.code().ok_or_else(|| fail(format!("{}: killed by a signal ({status})", self.name)))
    }

    /// True if the process has not exited within `timeout` (used where time itself is
    /// what the test checks: "keeps running").
    pub(crate) fn still_running_after(&mut self, timeout: Duration) -> bool {
        match self.exit.recv_timeout(timeout) {
            Ok(s) => {
                self.status = Some(s);
                false
            }
            Err(_) => true,
        }
    }

    /// Stderr lines received so far, without waiting.
    pub(crate) fn stderr_now(&mut self) -> Vec<String> {
        while let Ok(line) = self.stderr.try_recv() {
            match line {
                Line::Text(l) => self.stderr_lines.push(l),
                Line::Eof => self.stderr_done = true,
            }
        }
        self.stderr_lines.clone()
    }

    /// Reads stderr lines until one starts with `prefix` (log lines on the way are skipped).
    pub(crate) fn expect_stderr(&mut self, prefix: &str) -> TestResult<String> {
        self.expect_stderr_where(&format!("starting with {prefix:?}"), |l| l.starts_with(prefix))
    }

    /// Reads stderr lines until one contains `needle` (a log line, whatever its prefix).
    pub(crate) fn expect_stderr_containing(&mut self, needle: &str) -> TestResult<String> {
        self.expect_stderr_where(&format!("containing {needle:?}"), |l| l.contains(needle))
    }

    fn expect_stderr_where(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> TestResult<String> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.stderr.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Line::Text(l)) => {
                    self.stderr_lines.push(l.clone());
                    if pred(&l) {
                        return Ok(l);
                    }
                }
                _ => return Err(fail(format!("{}: no stderr line {what}; got {:?}", self.name, self.stderr_lines))),
            }
        }
    }

    /// All stderr, waiting for its end (within [`DEADLINE`]).
    pub(crate) fn stderr_all(&mut self) -> TestResult<Vec<String>> {
        let deadline = Instant::now() + DEADLINE;
        while !self.stderr_done {
            match self.stderr.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Line::Text(l)) => self.stderr_lines.push(l),
                Ok(Line::Eof) | Err(RecvTimeoutError::Disconnected) => self.stderr_done = true,
                Err(RecvTimeoutError::Timeout) => return Err(fail(format!("{}: stderr did not end", self.name))),
            }
        }
        Ok(self.stderr_lines.clone())
    }

    /// All remaining stdout lines, waiting for its end (within [`DEADLINE`]).
    pub(crate) fn stdout_all(&mut self) -> TestResult<Vec<String>> {
        let deadline = Instant::now() + DEADLINE;
        let mut lines: Vec<String> = self.pushed_back.drain(..).collect();
        loop {
            match self.stdout.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Line::Text(l)) => lines.push(l),
                Ok(Line::Eof) | Err(RecvTimeoutError::Disconnected) => return Ok(lines),
                Err(RecvTimeoutError::Timeout) => return Err(fail(format!("{}: stdout did not end", self.name))),
            }
        }
    }

    /// Closes stdin, waits for the exit and collects all output.
    pub(crate) fn finish(mut self) -> TestResult<Output> {
        self.close_stdin();
        let code = self.wait()?;
        let stdout = self.stdout_all()?;
        let stderr = self.stderr_all()?;
        Ok(Output { code, stdout, stderr })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.exited.load(Ordering::SeqCst) {
            let _ = self.signal(rustix::process::Signal::KILL);
        }
    }
}

/// A data map from a JSON message line.
pub(crate) fn data(message: &Json) -> &Json {
    &message["data"]
}

/// Checks that `msg` has exactly the five wire keys, with sane types.
pub(crate) fn check_wire_keys(msg: &Json, event: &str, message_type: &str) -> TestResult {
    let obj = msg.as_object().ok_or_else(|| fail(format!("not an object: {msg}")))?;
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    if keys != ["event_name", "timestamp_ms", "timestamp_iso", "message_type", "data"] {
        return Err(fail(format!("unexpected keys {keys:?} in {msg}")));
    }
    let iso = msg["timestamp_iso"].as_str().unwrap_or_default();
    let ok = msg["event_name"] == event
        && msg["message_type"] == message_type
        && msg["timestamp_ms"].as_u64().is_some_and(|ms| ms > 1_600_000_000_000)
        && iso.len() == "2026-11-27T03:10:10.123456+00:00".len()
        && iso.ends_with("+00:00")
        && msg["data"].is_object();
    if ok {
        Ok(())
    } else {
        Err(fail(format!("unexpected message {msg}, wanted event {event} type {message_type}")))
    }
}

/// Finds `n` consecutive free TCP ports on 127.0.0.1 below the usual ephemeral range and
/// returns the first; each test uses its own range ([`socket_tests::util::free_ports`]).
pub(crate) fn free_port_range(n: u16) -> TestResult<u16> {
    Ok(socket_tests::util::free_ports(n)?.0)
}

impl Proc {
    /// Writes `text` to stdin as it is, in one write (for large inputs).
    pub(crate) fn write_all(&mut self, text: &str) -> TestResult {
        let stdin = self.stdin.as_mut().ok_or("stdin already closed")?;
        stdin.write_all(text.as_bytes())?;
        stdin.flush()?;
        Ok(())
    }
}
