//! `socket-bench`: the benchmark behind `cargo xtask bench` (SPEC §7).
//!
//! In one process tree and one run, one contender after another (never
//! concurrently), it measures
//!
//! * the **ceiling**: "raw-std" as the independent harness defines it: blocking
//!   std sockets behind 64 KiB `BufWriter`/`BufReader`s, the same 4-byte
//!   framing, one publisher thread writing each encoded frame to every
//!   subscriber in turn, subscribers decoding fully with `rmp_serde`;
//! * **libzmq** PUB/SUB (throughput) and REQ/REP (round trip) through the
//!   `zmq` crate, with high-water marks 0 (nothing lost);
//! * **socket**, this library, through its async and its blocking API,
//!
//! over Unix sockets and TCP, and prints one markdown table with every
//! contender's numbers and its ratio to the ceiling, plus the machine. As in
//! the independent harness, every contender's throughput subscribers and its
//! round-trip echo peer are child processes (this binary run again in a hidden
//! mode, dispatched in [`main`]; `child.rs`), while the publisher and the
//! pinging side run here. No contender is paced by a window. Every cell runs
//! `--repeat` times (default 5), the contenders interleaved run by run, and the
//! median is reported; one line per cell says whether SPEC §7's target is met.
//!
//! Usage: `socket-bench [--quick] [--write-docs] [--only throughput|rtt|memory]...
//! [--contender ceiling|zmq|async|blocking]...`

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[path = "socket-bench/ceiling.rs"]
mod ceiling;
#[path = "socket-bench/child.rs"]
mod child;
#[path = "socket-bench/common.rs"]
mod common;
#[path = "socket-bench/lib_bench.rs"]
mod lib_bench;
#[path = "socket-bench/memory.rs"]
mod memory;
#[path = "socket-bench/report.rs"]
mod report;
#[path = "socket-bench/serve.rs"]
mod serve;
#[path = "socket-bench/zmq_bench.rs"]
mod zmq_bench;

use common::{BenchResult, Net, RttPlan};
use lib_bench::Api;

/// The things measured side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Contender {
    /// Plain std sockets.
    Ceiling,
    /// libzmq through the `zmq` crate.
    Zmq,
    /// This library, async API.
    LibAsync,
    /// This library, blocking API.
    LibBlocking,
}

impl Contender {
    /// Every contender, in table order.
    pub(crate) const ALL: [Contender; 4] =
        [Contender::Ceiling, Contender::Zmq, Contender::LibAsync, Contender::LibBlocking];

    /// Command-line key.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Contender::Ceiling => "ceiling",
            Contender::Zmq => "zmq",
            Contender::LibAsync => "async",
            Contender::LibBlocking => "blocking",
        }
    }

    /// Column title.
    pub(crate) fn title(self) -> &'static str {
        match self {
            Contender::Ceiling => "ceiling (std)",
            Contender::Zmq => "libzmq",
            Contender::LibAsync => "socket async",
            Contender::LibBlocking => "socket blocking",
        }
    }

    /// Position in [`Contender::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    fn parse(s: &str) -> BenchResult<Contender> {
        Contender::ALL
            .into_iter()
            .find(|c| c.key() == s)
            .ok_or_else(|| format!("unknown contender {s:?}: expected one of ceiling, zmq, async, blocking"))
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Smoke run: a few thousand messages per cell.
    pub(crate) quick: bool,
    /// Also write `docs/benchmarks.md`.
    pub(crate) write_docs: bool,
    sections: Vec<String>,
    contenders: Vec<Contender>,
    nets: Vec<Net>,
    payloads: Vec<usize>,
    subs: Vec<usize>,
    /// Runs of every throughput and round-trip cell, contenders interleaved; the median counts.
    pub(crate) repeat: u32,
    /// The command line, for the docs.
    pub(crate) command: String,
}

impl Options {
    fn section(&self, name: &str) -> bool {
        self.sections.is_empty() || self.sections.iter().any(|s| s == name)
    }

    fn runs(&self, c: Contender) -> bool {
        self.contenders.is_empty() || self.contenders.contains(&c)
    }

    fn nets(&self) -> Vec<Net> {
        if self.nets.is_empty() {
            vec![Net::Unix, Net::Tcp]
        } else {
            self.nets.clone()
        }
    }

    fn payloads(&self) -> Vec<usize> {
        if self.payloads.is_empty() {
            vec![64, 4096]
        } else {
            self.payloads.clone()
        }
    }

    fn subs(&self) -> Vec<usize> {
        if self.subs.is_empty() {
            vec![1, 4, 64]
        } else {
            self.subs.clone()
        }
    }
}

/// Runs per cell unless `--repeat` or `--quick` says otherwise (SPEC §7: at least 5).
const DEFAULT_REPEAT: u32 = 5;

const USAGE: &str = "usage: socket-bench [--quick] [--write-docs] [--repeat K] [--only throughput|rtt|memory]... \
[--contender ceiling|zmq|async|blocking]... [--net unix|tcp]... [--payload BYTES]... [--subs N]...";

fn parse_args(args: &[String]) -> BenchResult<Options> {
    let mut o = Options {
        quick: false,
        write_docs: false,
        sections: Vec::new(),
        contenders: Vec::new(),
        nets: Vec::new(),
        payloads: Vec::new(),
        subs: Vec::new(),
        repeat: 0,
        command: String::from("cargo xtask bench"),
    };
    let num = |v: Option<&String>, what: &str| -> BenchResult<usize> {
        let v = v.ok_or_else(|| format!("{what} needs a number"))?;
        v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| format!("{what} {v:?}: expected a positive number"))
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--write-docs" => o.write_docs = true,
            "--only" => {
                let s = it.next().ok_or("--only needs a section")?;
                if !["throughput", "rtt", "memory"].contains(&s.as_str()) {
                    return Err(format!("unknown section {s:?}: expected throughput, rtt or memory"));
                }
                o.sections.push(s.clone());
            }
            "--contender" => o.contenders.push(Contender::parse(it.next().ok_or("--contender needs a name")?)?),
            "--net" => o.nets.push(Net::parse(it.next().ok_or("--net needs unix or tcp")?)?),
            "--payload" => o.payloads.push(num(it.next(), "--payload")?),
            "--subs" => o.subs.push(num(it.next(), "--subs")?),
            "--repeat" => o.repeat = u32::try_from(num(it.next(), "--repeat")?).unwrap_or(u32::MAX),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if o.repeat == 0 {
        o.repeat = if o.quick { 1 } else { DEFAULT_REPEAT };
    }
    if !args.is_empty() {
        o.command = format!("cargo xtask bench {}", args.join(" "));
    }
    Ok(o)
}

/// One throughput cell.
#[derive(Debug)]
pub(crate) struct TputRow {
    pub(crate) net: Net,
    pub(crate) payload: usize,
    pub(crate) subs: usize,
    pub(crate) n: u64,
    /// Median over the runs of each contender (a failed run fails the cell).
    pub(crate) cells: [Option<BenchResult<f64>>; 4],
    /// Runs counted in each median.
    pub(crate) runs: [usize; 4],
}

/// One round-trip cell.
#[derive(Debug)]
pub(crate) struct RttRow {
    pub(crate) net: Net,
    pub(crate) payload: usize,
    pub(crate) pinned: bool,
    /// Median p50 and median p99 over the runs of each contender (a failed run fails the cell).
    pub(crate) cells: [Option<BenchResult<common::Rtt>>; 4],
    /// Runs counted in each median.
    pub(crate) runs: [usize; 4],
}

/// Idle-server memory of one transport.
#[derive(Debug)]
pub(crate) struct MemRow {
    pub(crate) net: Net,
    pub(crate) cells: [Option<BenchResult<memory::MemCurve>>; 4],
}

/// Everything measured.
#[derive(Debug, Default)]
pub(crate) struct Results {
    pub(crate) tput: Vec<TputRow>,
    pub(crate) rtt: Vec<RttRow>,
    pub(crate) mem: Vec<MemRow>,
    /// Client counts of the memory test.
    pub(crate) mem_steps: Vec<usize>,
    /// Wall time of the whole run.
    pub(crate) elapsed: Duration,
}

impl Results {
    /// Every failure, as `(where, why)`.
    pub(crate) fn failures(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for r in &self.tput {
            for c in Contender::ALL {
                if let Some(Err(e)) = &r.cells[c.index()] {
                    out.push((format!("{} throughput {}", c.title(), report::tput_label(r)), e.clone()));
                }
            }
        }
        for r in &self.rtt {
            for c in Contender::ALL {
                if let Some(Err(e)) = &r.cells[c.index()] {
                    out.push((format!("{} round trip {}", c.title(), report::rtt_label(r)), e.clone()));
                }
            }
        }
        for r in &self.mem {
            for c in Contender::ALL {
                if let Some(Err(e)) = &r.cells[c.index()] {
                    out.push((format!("{} memory {}", c.title(), r.net.name()), e.clone()));
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// Every run of one contender in one cell.
#[derive(Debug)]
struct Runs<T> {
    ok: Vec<T>,
    failed: Vec<String>,
}

impl<T> Default for Runs<T> {
    fn default() -> Self {
        Runs { ok: Vec::new(), failed: Vec::new() }
    }
}

impl<T> Runs<T> {
    fn push(&mut self, r: BenchResult<T>) {
        match r {
            Ok(v) => self.ok.push(v),
            Err(e) => self.failed.push(e),
        }
    }

    /// Once a run failed the cell has failed: no more runs of this contender.
    fn failed(&self) -> bool {
        !self.failed.is_empty()
    }

    /// The cell: `None` if never run, a failure if any run failed (a loss is an
    /// error, not a number), else `median` of the runs; and the runs counted.
    fn finish(self, median: impl Fn(Vec<T>) -> T) -> (Option<BenchResult<T>>, usize) {
        let fine = self.ok.len();
        match self.failed.into_iter().next() {
            Some(e) => (Some(Err(format!("{e} (failed in run {} of the cell)", fine + 1))), 0),
            None if self.ok.is_empty() => (None, 0),
            None => {
                let n = self.ok.len();
                (Some(Ok(median(self.ok))), n)
            }
        }
    }
}

/// The median; of an even count, the mean of the middle two.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// The contenders of run `run`: [`Contender::ALL`] rotated left by `run`, so no
/// contender always runs first (right after the previous cell) or last.
fn run_order(o: &Options, run: u32) -> Vec<Contender> {
    let all = Contender::ALL;
    let r = run as usize % all.len();
    (0..all.len()).map(|i| all[(i + r) % all.len()]).filter(|c| o.runs(*c)).collect()
}

/// Runs one cell, turning a panic into a failure.
fn guarded<T>(f: impl FnOnce() -> BenchResult<T>) -> BenchResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(format!("panicked: {msg}"))
        }
    }
}

fn messages_per_cell(quick: bool, payload: usize, subs: usize) -> u64 {
    if quick {
        return if subs >= 64 { 1_000 } else { 3_000 };
    }
    // SPEC §7's cells (1 and 4 subscribers) send what the shared harness sends
    // (`ratio-check.sh`: N=200000, N_4K=50000), so that a backlog of the same size builds.
    if subs <= 4 {
        return if payload <= 64 { 200_000 } else { 50_000 };
    }
    // The other cells: about 0.3-1 s for the ceiling on a 2-core VM.
    let deliveries: u64 = if payload <= 64 { 600_000 } else { 150_000 };
    (deliveries / subs as u64).max(2_000)
}

fn rtt_plan(quick: bool) -> RttPlan {
    if quick {
        RttPlan { warmup: 50, count: 1_000, budget: Duration::from_millis(200), min_count: 200 }
    } else {
        RttPlan { warmup: 500, count: 100_000, budget: Duration::from_millis(700), min_count: 2_000 }
    }
}

fn progress(what: &str, c: Contender, r: &BenchResult<String>, t: Instant) {
    match r {
        Ok(v) => eprintln!("  {what:<28} {:<16} {v:>20}   ({:.1} s)", c.title(), t.elapsed().as_secs_f64()),
        Err(e) => eprintln!("  {what:<28} {:<16} FAILED: {e}", c.title()),
    }
}

fn run(o: &Options) -> Results {
    let started = Instant::now();
    let mut res = Results::default();
    let nets = o.nets();
    let payloads = o.payloads();
    if o.section("throughput") {
        eprintln!("throughput (messages/s delivered to every subscriber)");
        for &net in &nets {
            for &payload in &payloads {
                for subs in o.subs() {
                    let n = messages_per_cell(o.quick, payload, subs);
                    let mut row = TputRow { net, payload, subs, n, cells: [None, None, None, None], runs: [0; 4] };
                    let label = report::tput_label(&row);
                    let mut runs: [Runs<f64>; 4] = Default::default();
                    // Runs interleave the contenders, so a disturbance hits them alike; the median counts.
                    for run in 0..o.repeat {
                        for c in run_order(o, run) {
                            if runs[c.index()].failed() {
                                continue;
                            }
                            let t = Instant::now();
                            let r = guarded(|| match c {
                                Contender::Ceiling => ceiling::throughput(net, payload, subs, n),
                                Contender::Zmq => zmq_bench::throughput(net, payload, subs, n),
                                Contender::LibAsync => lib_bench::throughput(Api::Async, net, payload, subs, n),
                                Contender::LibBlocking => lib_bench::throughput(Api::Blocking, net, payload, subs, n),
                            });
                            progress(&label, c, &r.as_ref().map(|v| report::rate_text(*v)).map_err(Clone::clone), t);
                            runs[c.index()].push(r);
                        }
                    }
                    for (i, r) in runs.into_iter().enumerate() {
                        (row.cells[i], row.runs[i]) = r.finish(median);
                    }
                    res.tput.push(row);
                }
            }
        }
    }
    if o.section("rtt") {
        eprintln!("round trip p50 / p99 (us)");
        let plan = rtt_plan(o.quick);
        for &net in &nets {
            for &payload in &payloads {
                for pinned in [false, true] {
                    let mut row = RttRow { net, payload, pinned, cells: [None, None, None, None], runs: [0; 4] };
                    let label = report::rtt_label(&row);
                    let mut runs: [Runs<common::Rtt>; 4] = Default::default();
                    for c in (0..o.repeat).flat_map(|run| run_order(o, run)) {
                        if runs[c.index()].failed() {
                            continue;
                        }
                        let t = Instant::now();
                        let r = guarded(|| {
                            if pinned {
                                common::pin_process(Some(common::first_cpu()))?;
                            }
                            let r = match c {
                                Contender::Ceiling => ceiling::round_trip(net, payload, plan),
                                Contender::Zmq => zmq_bench::round_trip(net, payload, plan),
                                Contender::LibAsync => lib_bench::round_trip(Api::Async, net, payload, plan),
                                Contender::LibBlocking => lib_bench::round_trip(Api::Blocking, net, payload, plan),
                            };
                            if pinned {
                                common::pin_process(None)?;
                            }
                            r
                        });
                        if pinned {
                            // Also after a panic.
                            let _ = common::pin_process(None);
                        }
                        let text = r.as_ref().map(|v| format!("{:.1} / {:.1} us", v.p50, v.p99)).map_err(Clone::clone);
                        progress(&label, c, &text, t);
                        runs[c.index()].push(r);
                    }
                    for (i, r) in runs.into_iter().enumerate() {
                        (row.cells[i], row.runs[i]) = r.finish(|v| common::Rtt {
                            p50: median(v.iter().map(|r| r.p50).collect()),
                            p99: median(v.iter().map(|r| r.p99).collect()),
                        });
                    }
                    res.rtt.push(row);
                }
            }
        }
    }
    if o.section("memory") {
        eprintln!("idle server RSS (server in a child process, clients here)");
        res.mem_steps = if o.quick { vec![10, 100] } else { vec![10, 500, 1000] };
        for &net in &nets {
            let mut row = MemRow { net, cells: [None, None, None, None] };
            for c in [Contender::Ceiling, Contender::Zmq, Contender::LibBlocking] {
                let lib_wanted = o.runs(Contender::LibAsync) || o.runs(Contender::LibBlocking);
                let wanted = if c == Contender::LibBlocking { lib_wanted } else { o.runs(c) };
                if !wanted {
                    continue;
                }
                let t = Instant::now();
                let r = guarded(|| memory::measure(c, net, &res.mem_steps));
                let text = r
                    .as_ref()
                    .map(|m| m.points.iter().map(|(n, kib)| format!("{n}:{kib}K")).collect::<Vec<_>>().join(" "))
                    .map_err(Clone::clone);
                progress(&format!("{} idle", net.name()), c, &text, t);
                if c == Contender::LibBlocking {
                    // One server engine behind both APIs: the same measurement in both columns.
                    row.cells[Contender::LibAsync.index()] = Some(r.clone());
                }
                row.cells[c.index()] = Some(r);
            }
            res.mem.push(row);
        }
    }
    res.elapsed = started.elapsed();
    res
}

/// What this binary runs as a child process of a cell (`__ceiling_sub`, `__serve`, ...).
type ChildMain = fn(&[String]) -> BenchResult<()>;

/// The main of each child mode.
fn child_mode(mode: &str) -> Option<ChildMain> {
    Some(match mode {
        "__ceiling_sub" => ceiling::subscriber_child,
        "__ceiling_echo" => ceiling::echo_child,
        "__zmq_sub" => zmq_bench::subscriber_child,
        "__zmq_echo" => zmq_bench::echo_child,
        "__lib_sub" => lib_bench::subscriber_child,
        "__lib_echo" => lib_bench::echo_child,
        "__serve" => memory::serve_zmq,
        _ => return None,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // This binary run again as a child process of a cell: a failure is its last line
    // to the parent, which reports it (child.rs), and its exit status.
    if let Some(run_child) = args.first().and_then(|m| child_mode(m)) {
        child::die_with_parent();
        return match run_child(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                child::say(&format!("failed {e}"));
                ExitCode::FAILURE
            }
        };
    }
    let opts = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    common::remember_affinity();
    let machine = report::Machine::describe();
    eprintln!("{}", machine.line());
    let results = run(&opts);
    let text = report::render(&opts, &machine, &results);
    println!("{text}");
    if opts.write_docs {
        match report::write_docs(&opts, &machine, &results) {
            Ok(path) => eprintln!("wrote {path}"),
            Err(e) => {
                eprintln!("cannot write docs/benchmarks.md: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let failures = results.failures();
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("{} cell(s) failed:", failures.len());
        for (w, e) in failures {
            eprintln!("  {w}: {e}");
        }
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_counts_and_a_failed_run_fails_the_cell() {
        assert_eq!(median(vec![5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        let mut runs = Runs::default();
        runs.push(Ok(2.0));
        runs.push(Ok(9.0));
        runs.push(Ok(1.0));
        let (cell, n) = runs.finish(median);
        assert_eq!((cell, n), (Some(Ok(2.0)), 3));
        let mut runs = Runs::default();
        runs.push(Ok(2.0));
        runs.push(Err("lost seq 7".to_owned()));
        assert!(runs.failed());
        let (cell, n) = runs.finish(median);
        assert!(matches!(cell, Some(Err(e)) if e.contains("lost seq 7")));
        assert_eq!(n, 0);
    }
}
