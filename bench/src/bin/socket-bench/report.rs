//! The markdown table, the target checks, the machine description and `docs/benchmarks.md`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use crate::common::BenchResult;
use crate::{Contender, MemRow, Options, Results, RttRow, TputRow};

/// What the numbers were measured on.
#[derive(Debug, Clone)]
pub(crate) struct Machine {
    cpu: String,
    cores: usize,
    kernel: String,
    rustc: String,
    memory: String,
    zmq: String,
    load_start: String,
    /// One thread wake-up, free and pinned ([`crate::common::wake_up_us`]).
    wake_up: String,
}

/// The 1, 5 and 15 minute load averages (other processes share the machine).
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

impl Machine {
    /// Reads `/proc` and asks `rustc -V`.
    pub(crate) fn describe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim()))
            .unwrap_or("unknown")
            .to_owned();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".into(), |s| s.trim().to_owned());
        let rustc = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
            .arg("-V")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map_or_else(|| "unknown".into(), |s| s.trim().to_owned());
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or_else(|| "unknown".into(), |kib| format!("{:.1} GiB", kib as f64 / (1024.0 * 1024.0)));
        let (a, b, c) = zmq::version();
        let us = |pinned| {
            crate::common::wake_up_us(pinned).map_or_else(|e| format!("failed: {e}"), |v| format!("{v:.1} us"))
        };
        let wake_up = format!("free {}, pinned {}", us(false), us(true));
        Machine { cpu, cores, kernel, rustc, memory, zmq: format!("{a}.{b}.{c}"), load_start: load_average(), wake_up }
    }

    /// One line for the progress output.
    pub(crate) fn line(&self) -> String {
        format!(
            "machine: {}, {} cores, {} RAM, Linux {}, {}, libzmq {}, load average at start {}, thread wake-up p50 {}",
            self.cpu, self.cores, self.memory, self.kernel, self.rustc, self.zmq, self.load_start, self.wake_up
        )
    }

    fn markdown(&self, load_end: &str) -> String {
        format!(
            "| | |\n|---|---|\n| CPU | {} |\n| cores | {} |\n| memory | {} |\n| kernel | Linux {} |\n| rustc | {} |\n| libzmq | {} (built by the `zmq` crate) |\n| load average (1, 5, 15 min) | {} at start, {} at end |\n| one thread wake-up, p50 (`park`/`unpark` hand-off between two threads) | {} |\n",
            self.cpu, self.cores, self.memory, self.kernel, self.rustc, self.zmq, self.load_start, load_end, self.wake_up
        )
    }
}

fn net_label(n: crate::common::Net) -> &'static str {
    match n {
        crate::common::Net::Unix => "Unix",
        crate::common::Net::Tcp => "TCP",
    }
}

fn payload_label(p: usize) -> String {
    if p >= 1024 {
        format!("{} KiB", p / 1024)
    } else {
        format!("{p} B")
    }
}

/// Row label of a throughput cell.
pub(crate) fn tput_label(r: &TputRow) -> String {
    format!(
        "{} {} x{} sub{}, N={}",
        net_label(r.net),
        payload_label(r.payload),
        r.subs,
        if r.subs == 1 { "" } else { "s" },
        count_text(r.n)
    )
}

/// Row label of a round-trip cell.
pub(crate) fn rtt_label(r: &RttRow) -> String {
    format!("{} {} {}", net_label(r.net), payload_label(r.payload), if r.pinned { "pinned" } else { "free" })
}

fn count_text(n: u64) -> String {
    if n >= 1_000_000 && n % 100_000 == 0 {
        format!("{:.1}M", n as f64 / 1e6)
    } else if n >= 1000 && n % 1000 == 0 {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// A rate as text: `4.51 M` or `812 k`.
pub(crate) fn rate_text(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e5 {
        format!("{:.0} k", v / 1e3)
    } else if v >= 1e4 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{:.2} k", v / 1e3)
    }
}

fn kib_text(kib: u64) -> String {
    format!("{:.2} MiB", kib as f64 / 1024.0)
}

fn ratio(v: f64, base: Option<f64>) -> String {
    match base {
        Some(b) if b > 0.0 => format!(" ({:.2}x)", v / b),
        _ => String::new(),
    }
}

/// `" (0.65x, n=5)"`, or `" (n=5)"` without a base: the ratio and the runs in the median.
fn ratio_runs(v: f64, base: Option<f64>, runs: usize) -> String {
    match base {
        Some(b) if b > 0.0 => format!(" ({:.2}x, n={runs})", v / b),
        _ => format!(" (n={runs})"),
    }
}

fn fail_text(e: &str) -> String {
    let short: String = e.chars().take(60).collect();
    format!("FAIL: {}", short.replace('|', "/"))
}

fn ok<T: Clone>(c: &Option<BenchResult<T>>) -> Option<T> {
    c.as_ref().and_then(|r| r.as_ref().ok()).cloned()
}

fn cell<T: Clone>(c: &Option<BenchResult<T>>, show: impl Fn(T) -> String) -> String {
    match c {
        None => "-".to_owned(),
        Some(Err(e)) => fail_text(e),
        Some(Ok(v)) => show(v.clone()),
    }
}

/// Per-connection cost in KiB between the first and the last client count.
fn per_conn(m: &crate::memory::MemCurve, steps: &[usize]) -> Option<f64> {
    let (first, last) = (*steps.first()?, *steps.last()?);
    m.slope(first, last)
}

/// Slope of the second half over slope of the first half (1.0 = perfectly linear).
fn linearity(m: &crate::memory::MemCurve, steps: &[usize]) -> Option<f64> {
    if steps.len() < 3 {
        return None;
    }
    let (a, b, c) = (steps[0], steps[steps.len() / 2], steps[steps.len() - 1]);
    let (s1, s2) = (m.slope(a, b)?, m.slope(b, c)?);
    (s1 > 0.0).then(|| s2 / s1)
}

/// The main table.
pub(crate) fn table(res: &Results) -> String {
    let mut t = String::new();
    let _ = write!(t, "| scenario |");
    for c in Contender::ALL {
        let _ = write!(t, " {} |", c.title());
    }
    t.push_str("\n|---|");
    for _ in Contender::ALL {
        t.push_str("---:|");
    }
    t.push('\n');
    if !res.tput.is_empty() {
        t.push_str("| **throughput**, msg/s delivered to every subscriber, median (x ceiling, n = runs) | | | | |\n");
    }
    for r in &res.tput {
        let base = ok(&r.cells[0]);
        let _ = write!(t, "| {} |", tput_label(r));
        for c in Contender::ALL {
            let runs = r.runs[c.index()];
            let s = cell(&r.cells[c.index()], |v| {
                let b = if c == Contender::Ceiling { None } else { base };
                format!("{}{}", rate_text(v), ratio_runs(v, b, runs))
            });
            let _ = write!(t, " {s} |");
        }
        t.push('\n');
    }
    if !res.rtt.is_empty() {
        t.push_str("| **round trip** p50 / p99 in us, medians (p50 x ceiling, n = runs) | | | | |\n");
    }
    for r in &res.rtt {
        let base = ok(&r.cells[0]).map(|v| v.p50);
        let _ = write!(t, "| {} |", rtt_label(r));
        for c in Contender::ALL {
            let runs = r.runs[c.index()];
            let s = cell(&r.cells[c.index()], |v| {
                let b = if c == Contender::Ceiling { None } else { base };
                format!("{:.1} / {:.1}{}", v.p50, v.p99, ratio_runs(v.p50, b, runs))
            });
            let _ = write!(t, " {s} |");
        }
        t.push('\n');
    }
    if !res.mem.is_empty() {
        t.push_str("| **idle server RSS** (x ceiling) | | | | |\n");
    }
    for r in &res.mem {
        mem_rows(&mut t, r, &res.mem_steps);
    }
    t
}

fn mem_rows(t: &mut String, r: &MemRow, steps: &[usize]) {
    let mut counts = vec![0usize];
    counts.extend_from_slice(steps);
    for n in counts {
        let base = ok(&r.cells[0]).and_then(|m| m.at(n));
        let _ = write!(t, "| {} {n} client{} |", net_label(r.net), if n == 1 { "" } else { "s" });
        for c in Contender::ALL {
            let s = cell(&r.cells[c.index()], |m| match m.at(n) {
                Some(kib) => {
                    let b = if c == Contender::Ceiling { None } else { base.map(|b| b as f64) };
                    format!("{}{}", kib_text(kib), ratio(kib as f64, b))
                }
                None => "-".into(),
            });
            let _ = write!(t, " {s} |");
        }
        t.push('\n');
    }
    let base = ok(&r.cells[0]).and_then(|m| per_conn(&m, steps));
    let (first, last) = (steps.first().copied().unwrap_or(0), steps.last().copied().unwrap_or(0));
    let _ = write!(t, "| {} KiB per connection ({first} to {last}) |", net_label(r.net));
    for c in Contender::ALL {
        let s = cell(&r.cells[c.index()], |m| match per_conn(&m, steps) {
            Some(k) => format!("{k:.1}{}", ratio(k, if c == Contender::Ceiling { None } else { base })),
            None => "-".into(),
        });
        let _ = write!(t, " {s} |");
    }
    t.push('\n');
    if steps.len() >= 3 {
        let _ = write!(t, "| {} linearity (slope 2nd half / 1st half) |", net_label(r.net));
        for c in Contender::ALL {
            let s = cell(&r.cells[c.index()], |m| linearity(&m, steps).map_or("-".into(), |l| format!("{l:.2}")));
            let _ = write!(t, " {s} |");
        }
        t.push('\n');
    }
}

/// SPEC §7's throughput target: at least this times the ceiling ...
const MIN_X_CEILING: f64 = 0.8;
/// ... and at least this times libzmq, in every cell.
const MIN_X_ZMQ: f64 = 1.5;
/// SPEC §7's round-trip target: p50 at most this times the ceiling's, both ends free ...
const MAX_RTT_X_CEILING_FREE: f64 = 1.3;
/// ... at most this times, both ends pinned to one core ...
const MAX_RTT_X_CEILING_PINNED: f64 = 1.5;
/// ... and below libzmq's.
const MAX_RTT_X_ZMQ: f64 = 1.0;

/// The cells SPEC §7 names (and the independent harness measures): 64 B and
/// 4 KiB with 1 and 4 subscribers, and the 64 B round trip. The others get a
/// verdict too, marked as beyond the spec, and are left out of the counts.
fn spec_tput_cell(r: &TputRow) -> bool {
    matches!(r.payload, 64 | 4096) && matches!(r.subs, 1 | 4)
}

fn spec_rtt_cell(r: &RttRow) -> bool {
    r.payload == 64
}

/// A cell's numbers as the target check sees them: `None` when not run,
/// `Some(None)` when a run failed, `Some(Some(v))` the median.
fn checked<T: Clone>(c: &Option<BenchResult<T>>) -> Option<Option<T>> {
    c.as_ref().map(|r| r.as_ref().ok().cloned())
}

/// One cell's verdict, with the wording of the harness's `ratio.rs`: `met`, or
/// `MISSED (why, ...)`, followed by the two ratios. `None`: not checked.
fn cell_verdict(
    lib: Option<Option<f64>>,
    ceiling: Option<Option<f64>>,
    zmq: Option<Option<f64>>,
    good_c: (&dyn Fn(f64) -> bool, String),
    good_z: (&dyn Fn(f64) -> bool, String),
) -> Option<(bool, String)> {
    let (lib, ceiling, zmq) = (lib?, ceiling?, zmq?);
    let x = |base: Option<f64>| match (lib, base) {
        (Some(l), Some(b)) if b > 0.0 => Some(l / b),
        _ => None,
    };
    let (pc, pz) = (x(ceiling), x(zmq));
    let mut why = Vec::new();
    if !pc.is_some_and(good_c.0) {
        why.push(good_c.1);
    }
    if !pz.is_some_and(good_z.0) {
        why.push(good_z.1);
    }
    let shown =
        |r: Option<f64>, what: &str| r.map_or(format!("no valid ratio to {what}"), |r| format!("{r:.2}x {what}"));
    let ratios = format!("{}, {}", shown(pc, "ceiling"), shown(pz, "libzmq"));
    Some(if why.is_empty() {
        (true, format!("met ({ratios})"))
    } else {
        (false, format!("MISSED ({}) ({ratios})", why.join(", ")))
    })
}

/// The SPEC §7 targets: one line per throughput and round-trip cell for each
/// API of the library (the targets and wording of the independent harness's
/// `ratio.rs`), a summary line per kind, then the memory targets.
pub(crate) fn targets(res: &Results) -> String {
    let mut t = String::new();
    t.push_str("| target (SPEC §7) | socket async | socket blocking |\n|---|---|---|\n");
    let apis = [Contender::LibAsync, Contender::LibBlocking];
    // (met, counted) per API, SPEC cells only.
    let mut tput_n = [(0usize, 0usize); 2];
    let mut rtt_n = [(0usize, 0usize); 2];
    for r in &res.tput {
        let spec = spec_tput_cell(r);
        let mut cols = Vec::new();
        for (i, c) in apis.into_iter().enumerate() {
            let v = cell_verdict(
                checked(&r.cells[c.index()]),
                checked(&r.cells[Contender::Ceiling.index()]),
                checked(&r.cells[Contender::Zmq.index()]),
                (&|x| x >= MIN_X_CEILING, format!("< {MIN_X_CEILING}x ceiling")),
                (&|x| x >= MIN_X_ZMQ, format!("< {MIN_X_ZMQ}x libzmq")),
            );
            if let (true, Some((met, _))) = (spec, &v) {
                tput_n[i].1 += 1;
                tput_n[i].0 += usize::from(*met);
            }
            cols.push(v.map_or_else(|| "not checked (a contender was not run)".to_owned(), |v| v.1));
        }
        let beyond = if spec { "" } else { " (beyond SPEC §7's cells)" };
        let _ = writeln!(t, "| throughput {}{beyond} | {} | {} |", tput_label(r), cols[0], cols[1]);
    }
    for r in &res.rtt {
        let spec = spec_rtt_cell(r);
        let max_c = if r.pinned { MAX_RTT_X_CEILING_PINNED } else { MAX_RTT_X_CEILING_FREE };
        let p50 = |c: Contender| checked(&r.cells[c.index()]).map(|v| v.map(|v| v.p50));
        let mut cols = Vec::new();
        for (i, c) in apis.into_iter().enumerate() {
            let v = cell_verdict(
                p50(c),
                p50(Contender::Ceiling),
                p50(Contender::Zmq),
                (&|x| x <= max_c, format!("> {max_c}x ceiling")),
                (&|x| x < MAX_RTT_X_ZMQ, "not below libzmq".to_owned()),
            );
            if let (true, Some((met, _))) = (spec, &v) {
                rtt_n[i].1 += 1;
                rtt_n[i].0 += usize::from(*met);
            }
            cols.push(v.map_or_else(|| "not checked (a contender was not run)".to_owned(), |v| v.1));
        }
        let beyond = if spec { "" } else { " (beyond SPEC §7's cells)" };
        let _ = writeln!(t, "| round trip p50 {}{beyond} | {} | {} |", rtt_label(r), cols[0], cols[1]);
    }
    let count = |(met, n): (usize, usize)| if n == 0 { "not checked".to_owned() } else { format!("{met}/{n} met") };
    if !res.tput.is_empty() {
        let _ = writeln!(
            t,
            "| throughput >= {MIN_X_CEILING}x ceiling and >= {MIN_X_ZMQ}x libzmq in every cell | {} | {} |",
            count(tput_n[0]),
            count(tput_n[1])
        );
    }
    if !res.rtt.is_empty() {
        let _ = writeln!(
            t,
            "| round-trip p50 <= {MAX_RTT_X_CEILING_FREE}x ceiling free, <= {MAX_RTT_X_CEILING_PINNED}x pinned, below libzmq | {} | {} |",
            count(rtt_n[0]),
            count(rtt_n[1])
        );
    }
    let mut line = |name: &str, f: &dyn Fn(Contender) -> String| {
        let _ = writeln!(t, "| {name} | {} | {} |", f(apis[0]), f(apis[1]));
    };
    line("idle server with 10 clients < 4 MiB RSS", &|c| {
        let v: Vec<f64> =
            res.mem.iter().filter_map(|r| ok(&r.cells[c.index()])?.at(10).map(|k| k as f64 / 1024.0)).collect();
        verdict(&v, |m| m < 4.0, |w| format!("largest {w:.2} MiB"), false)
    });
    line("1,000 clients, cost linear in clients", &|c| {
        let v: Vec<f64> = res.mem.iter().filter_map(|r| linearity(&ok(&r.cells[c.index()])?, &res.mem_steps)).collect();
        // Linear: the second half of the clients costs what the first half did, within 35 %.
        let worst = v.iter().copied().fold(None, |acc: Option<f64>, x| match acc {
            Some(a) if (a - 1.0).abs() >= (x - 1.0).abs() => Some(a),
            _ => Some(x),
        });
        match worst {
            None => "not measured".into(),
            Some(w) => {
                let met = v.iter().all(|x| (0.65..=1.35).contains(x));
                format!("{} (slope ratio {w:.2})", if met { "met" } else { "MISSED" })
            }
        }
    });
    t
}

/// "met (n/n, worst ...)" or "MISSED (k/n, worst ...)".
fn verdict(values: &[f64], good: impl Fn(f64) -> bool, show: impl Fn(f64) -> String, higher_is_better: bool) -> String {
    if values.is_empty() {
        return "not measured".into();
    }
    let met = values.iter().filter(|v| good(**v)).count();
    let worst =
        values.iter().copied().fold(if higher_is_better { f64::INFINITY } else { f64::NEG_INFINITY }, |a, b| {
            if higher_is_better {
                a.min(b)
            } else {
                a.max(b)
            }
        });
    let word = if met == values.len() { "met" } else { "MISSED" };
    format!("{word} ({met}/{} cells, {})", values.len(), show(worst))
}

/// Everything printed to stdout.
pub(crate) fn render(o: &Options, m: &Machine, res: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## socket benchmark{}\n",
        if o.quick {
            " (quick smoke run: numbers are not meaningful)"
        } else if o.repeat < 5 {
            " (fewer than the 5 runs per cell SPEC §7 asks for)"
        } else {
            ""
        }
    );
    let _ = writeln!(s, "runs per cell: {} (contenders interleaved; medians, never a best-of)\n", o.repeat);
    let _ = writeln!(s, "{}\n", m.line());
    s.push_str(&table(res));
    s.push('\n');
    s.push_str(&targets(res));
    let _ = writeln!(s, "\nwhole run: {:.0} s", res.elapsed.as_secs_f64());
    s
}

fn docs_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("docs").join("benchmarks.md")
}

/// Writes `docs/benchmarks.md`; returns its path.
pub(crate) fn write_docs(o: &Options, m: &Machine, res: &Results) -> BenchResult<String> {
    let date = jiff::Zoned::now().strftime("%Y-%m-%d %H:%M %Z").to_string();
    let mut s = String::new();
    s.push_str("# Benchmarks\n\n");
    s.push_str(
        "Measured by `cargo xtask bench` (the `socket-bench` binary of the unpublished `socket-bench` crate in `bench/`, built with the `measure` profile: release with one codegen unit and thin LTO, as the shared harness builds its contenders). \
All contenders run in one process tree and one run, one after another, never concurrently. \
Only numbers measured side by side in one run are comparable. This file is generated by \
`cargo xtask bench --write-docs`; edit the generator (`bench/src/bin/socket-bench/report.rs`), not this file, \
except below the notes marker at the end, which is hand-written and kept.\n\n",
    );
    let _ = writeln!(s, "- command: `{}`", o.command);
    let _ = writeln!(s, "- date: {date}");
    let _ = writeln!(s, "- runs per cell: {} (contenders interleaved; the median counts)", o.repeat);
    let _ = writeln!(s, "- whole run: {:.0} s\n", res.elapsed.as_secs_f64());
    s.push_str("## Machine\n\n");
    s.push_str(&m.markdown(&load_average()));
    s.push_str("\n## Results\n\n");
    s.push_str(&table(res));
    s.push_str("\n## Targets\n\n");
    s.push_str(&targets(res));
    s.push_str(METHOD);
    let path = docs_path();
    // Hand-written notes after the marker survive regeneration.
    if let Some(notes) =
        std::fs::read_to_string(&path).ok().and_then(|old| old.find(NOTES_MARKER).map(|i| old[i..].to_owned()))
    {
        s.push('\n');
        s.push_str(&notes);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    std::fs::write(&path, s).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path.display().to_string())
}

/// Everything from this line on in `docs/benchmarks.md` is kept by `--write-docs`.
const NOTES_MARKER: &str = "<!-- notes below are hand-written and kept by --write-docs -->";

const METHOD: &str = "
## Method

**Contenders.**

- *ceiling (std)*: *raw-std* exactly as the independent harness (`bench-peers`, `src/raw_std.rs`) defines it:
  blocking `std::os::unix::net` / `std::net` sockets with `TCP_NODELAY`, each end in a `BufWriter` / `BufReader`
  of 64 KiB, a 4-byte big-endian length prefix. The message is a typed struct (`event_name`, `timestamp_ms`,
  `timestamp_iso`, `message_type`, `data = {seq, payload}`) encoded with `rmp_serde::to_vec_named`. One publisher
  thread encodes each message once and writes the same bytes to every subscriber connection in turn (no window,
  no writer threads, one flush at the end; a full socket blocks it in `write`). Each subscriber reads frames with
  `read_exact` and decodes every one fully into an owned typed struct (strings and payload allocated).
- *libzmq*: the `zmq` crate (libzmq built from source by `zmq-sys`), `ipc://` for Unix and `tcp://` for TCP.
  Throughput uses PUB/SUB with `ZMQ_SNDHWM` = `ZMQ_RCVHWM` = 0 (unlimited, nothing is dropped); each zmq message
  is the MessagePack body made by `encode_frame` (zmq frames messages itself), decoded with `decode_body`.
  The round trip uses **REQ/REP**: the REP side decodes, re-encodes and replies.
- *socket async / blocking*: this library's public API, `socket_core::{Server, Client}` over the transports of
  `socket_factory::default_registry()` with its default configuration, except `max_connections` raised for the
  64-subscriber and memory rows and, in the throughput rows, the server's per-client outbound queue
  (`socket.outbound_queue_size` / `_bytes`) raised to hold the whole run, as the harness's `project.rs` does
  (the counterpart of libzmq's high-water marks 0: `broadcast` never blocks, and an overflowing client would be
  disconnected as a slow consumer). The publisher calls `Server::broadcast`. Async: `start_async`,
  `connect_async`, and each subscriber calling `receive_async` under `futures_lite::future::block_on`. Blocking:
  `start`, `connect`, each subscriber calling `receive`. Round trip: the client sends with `send`/`send_async`,
  the server application reads `ServerEvent::Message` from `Server::events()` and answers with `send_to`
  (unicast), the client waits in `receive`/`receive_async`.

**Processes.** As in the harness (`bench-peers`, `src/ctl.rs`), every throughput subscriber and every round-trip
echo peer (the ceiling's echo, the REP side, the library's echo server) is a process of its own: the bench binary
run again in a hidden mode (`__ceiling_sub`, `__ceiling_echo`, `__zmq_sub`, `__zmq_echo`, `__lib_sub`,
`__lib_echo`); the publisher and the pinging client stay in the bench process. A child says `ready` on its stdout
once it can receive (a libzmq subscriber when the publisher's first probe reaches it; the library's server must
also have seen every subscriber connect before the first broadcast), `done` at its N-th message, and `failed` with
the reason before it exits non-zero; a failed, stuck (20 s) or early-ending child fails the cell. With the
subscribers as threads of the publisher's process the library's figures had read 10-50 % above the harness's in
most cells and the ceiling's 7-23 % below (see the dated notes below).

**Message.** A DATA message for event `bench` whose `data` is `{\"seq\": n, \"payload\": <binary of 64 B or
4 KiB>}`. The library and libzmq contenders stamp it once and only rewrite `seq` before each send; the ceiling
encodes its typed struct afresh for every message, as the harness does. Every subscriber checks that it got
exactly N messages, in order, with the right payload size, message type and event name, and that nothing more
arrives; a cell that loses, duplicates or reorders a message, or in which the library's server counts a slow
consumer or a dropped message, fails the run.

**Repeats.** Every throughput and round-trip cell runs 5 times (`--repeat`; `--quick` runs once), the
contenders interleaved run by run (run 1: ceiling, libzmq, async, blocking; each later run rotates that order by
one), and the table shows the **median** with `n=` the runs counted (for the round trip, the median p50 and the
median p99). A failed run fails the cell: it is reported as a failure, never left out.

**Throughput** is N divided by the time from the first send to the last receipt at the slowest subscriber: the
arrival of the last subscriber process's `done` line, stamped as it comes in (the harness's `wait_done`).
No contender is paced: the publisher sends as fast as its API takes the messages (the ceiling blocks when a
socket is full, libzmq queues without limit, the library queues the whole run).
N is what the shared harness sends in SPEC §7's cells (`ratio-check.sh`: 200,000 messages of 64 B and
50,000 of 4 KiB, to each of 1 or 4 subscribers), so that the same backlog builds; the 64-subscriber cells
share 600,000 deliveries (64 B) or 150,000 (4 KiB) among the subscribers (at least 2,000 messages).

**Round trip** is the time from before encoding/sending a message to after the decoded reply is in hand, one
message in flight; p50 and p99 over up to 100,000 round trips (at most 0.7 s per cell after 500 warm-up round
trips). The machine is shared, so p99 includes preemption by other processes; compare p50. *free*: threads float over all cores. *pinned*: every thread of the bench process (the client and the
library's runtime threads) pinned to one CPU (the first one allowed) with `sched_setaffinity` before the echo peer
is spawned, so the peer process and every thread it starts inherit that CPU, as the harness's client and echo
child inherit `taskset -c 0` (the bench checks that each child may run on exactly the CPUs of the thread that
spawned it).
The machine table's *thread wake-up* is the floor under every round trip: two threads hand a token back
and forth with `std::thread::park`/`unpark` (20,000 times, p50 of one hand-off, free and pinned). The
ceiling's round trip wakes two threads, the library's four (see *Why the missed targets are missed* below).

**Memory** is `VmRSS` of a server process, read from `/proc/<pid>/status` after it has accepted 0, then 10,
500 and 1,000 idle clients that live in the parent. The ceiling's and the library's servers run in
`socket-bench-server`, a lean binary of the same crate that links only std and the library (the bench binary
itself links libzmq and so libstdc++, about 1.2 MiB of extra RSS that is no server's cost); the libzmq server
runs in the bench binary re-executed with a hidden subcommand. The library's server is `Server::start` with
`max_connections` raised to fit the clients. *per connection* is the RSS growth from 10 to 1,000 clients divided by 990; *linearity* compares the
per-connection growth of the second half (500 to 1,000) with the first half (10 to 500).
";
