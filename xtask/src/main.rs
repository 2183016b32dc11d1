//! Project automation: `cargo xtask <command>`.
//!
//! One binary, no dependencies, cargo called through `$CARGO`. CI runs the
//! same commands a developer runs (`.ci/run` is `cargo xtask ci`).

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

type Result<T = ()> = std::result::Result<T, String>;

const COMMANDS: &[(&str, &str)] = &[
    ("ci", "everything CI checks: fmt, clippy, tests, model checks, docs, feature builds, codegen and man page checks, examples"),
    ("lint", "cargo fmt --check and clippy with warnings denied on all targets"),
    ("test", "the whole test suite (installs the Python msgpack module the interop tests need)"),
    ("loom", "loom model checks of the server registry (C1, C2) and the engines' read-side hand-off: --cfg socket_loom, 2 preemptions, target/loom"),
    ("shuttle", "shuttle model checks of the server registry (C3) and the client's read-side hand-off: --cfg shuttle, fixed seeds, target/shuttle"),
    ("rustdoc", "rustdoc for the workspace with warnings denied"),
    ("features", "build socket-factory alone with no features, unix, tcp, and both"),
    ("doc", "regenerate docs/configuration.md from the core keys and the transports' declared keys (--check: fail if stale)"),
    ("codegen", "the same as doc (its former name)"),
    ("man", "regenerate docs/man/socketctl.1 from socketctl's clap definition (--check: fail if stale)"),
    ("examples", "build and run every example of socket-factory"),
    ("demo", "run the product demo (server, clients, broadcast, unicast, queue, limits, reconnect)"),
    ("bench", "benchmarks (the measure profile) against a plain-socket ceiling and libzmq, then the cross-host NATS cell (--only nats: that cell alone); prints tables"),
    ("fuzz", "run each cargo-fuzz target for --seconds N (default 60; needs nightly and cargo-fuzz)"),
    ("soak", "long-running soak test: --minutes N (default 10), --restart-secs N (120), --rate N (500), --transport unix|tcp|both; reports RSS, fds and sequence accounting"),
];

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        usage();
        return ExitCode::SUCCESS;
    };
    let rest = &args[1..];
    let started = Instant::now();
    let result = match cmd.as_str() {
        "ci" => ci(),
        "lint" => lint(),
        "test" => test(rest),
        "loom" => loom(),
        "shuttle" => shuttle(),
        "rustdoc" => rustdoc(),
        "features" => features(),
        "doc" | "codegen" => config_doc(rest.iter().any(|a| a == "--check")),
        "man" => man(rest.iter().any(|a| a == "--check")),
        "examples" => examples(),
        "demo" => demo(),
        "bench" => bench(rest),
        "fuzz" => fuzz(rest),
        "soak" => soak(rest),
        "help" | "--help" | "-h" => {
            usage();
            Ok(())
        }
        other => Err(format!("unknown command {other:?}; run `cargo xtask` for the list")),
    };
    match result {
        Ok(()) => {
            eprintln!("xtask {cmd}: ok in {:.0?}", started.elapsed());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xtask {cmd}: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() {
    eprintln!("usage: cargo xtask <command> [options]\n\ncommands:");
    for (name, what) in COMMANDS {
        eprintln!("  {name:<10} {what}");
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace root").to_path_buf()
}

fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn run(mut cmd: Command) -> Result {
    eprintln!("$ {}", show(&cmd));
    let status = cmd.status().map_err(|e| format!("cannot run {}: {e}", show(&cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", show(&cmd)))
    }
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn cargo_with(args: &[&str]) -> Command {
    let mut cmd = cargo();
    cmd.args(args);
    cmd
}

fn ci() -> Result {
    lint()?;
    test(&[])?;
    loom()?;
    shuttle()?;
    rustdoc()?;
    features()?;
    config_doc(true)?;
    man(true)?;
    examples()?;
    Ok(())
}

fn lint() -> Result {
    run(cargo_with(&["fmt", "--all", "--", "--check"]))?;
    run(cargo_with(&["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]))
}

/// The interop tests decode our frames with Python's `msgpack`; install it when missing.
fn ensure_python_msgpack() -> Result {
    let ok = Command::new("python3").args(["-c", "import msgpack"]).status().map(|s| s.success()).unwrap_or(false);
    if ok {
        return Ok(());
    }
    eprintln!("python3 module msgpack missing: installing it with pip");
    let mut pip = Command::new("python3");
    pip.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "msgpack>=1,<2"]);
    run(pip)
}

fn test(extra: &[String]) -> Result {
    ensure_python_msgpack()?;
    let mut cmd = cargo_with(&["test", "--workspace", "--locked"]);
    cmd.args(extra);
    run(cmd)
}

/// Runs the model checks of `socket-core/src/server/models.rs` in a release
/// build with `--cfg <cfg>`, in its own target directory so the normal build
/// stays valid.
fn models(cfg: &str, envs: &[(&str, &str)]) -> Result {
    let target = root().join("target").join(cfg.trim_start_matches("socket_"));
    let mut cmd = cargo_with(&["test", "-p", "socket-core", "--release", "--locked", "--lib", "--target-dir"]);
    cmd.arg(&target).args(["--", "server::models", "client::models"]);
    let mut flags = env::var("RUSTFLAGS").unwrap_or_default();
    flags.push_str(&format!(" --cfg {cfg}"));
    cmd.env("RUSTFLAGS", flags.trim());
    for (k, v) in envs {
        if env::var_os(k).is_none() {
            cmd.env(k, v);
        }
    }
    run(cmd)
}

/// Loom: every interleaving of the C1 and C2 models and the client's hand-off models within
/// 2 preemptions.
fn loom() -> Result {
    models("socket_loom", &[("LOOM_MAX_PREEMPTIONS", "2")])
}

/// Shuttle: the C3 model and the client's hand-off model, 1,000 random and 1,000 PCT schedules
/// each from fixed seeds.
fn shuttle() -> Result {
    models("shuttle", &[])
}

fn rustdoc() -> Result {
    let mut cmd = cargo_with(&["doc", "--workspace", "--no-deps", "--locked"]);
    cmd.env("RUSTDOCFLAGS", "-D warnings");
    run(cmd)
}

fn features() -> Result {
    for features in ["", "unix", "tcp", "unix,tcp"] {
        let mut cmd = cargo_with(&["clippy", "-p", "socket-factory", "--no-default-features", "--locked"]);
        if !features.is_empty() {
            cmd.args(["--features", features]);
        }
        cmd.args(["--", "-D", "warnings"]);
        run(cmd)?;
    }
    Ok(())
}

/// `docs/configuration.md`, generated by an example of socket-factory from the core keys and
/// the keys each transport of the default registry declares (both transports compiled in).
fn config_doc(check: bool) -> Result {
    generated(
        "docs/configuration.md",
        &["-p", "socket-factory", "--features", "unix,tcp", "--example", "gen_config_docs"],
        "config docs generator",
        "cargo xtask doc",
        check,
    )
}

/// The man page is generated from the clap definition by an example of socket-cli, so
/// that the xtask itself needs no dependency (clap_mangen is socket-cli's dev-dependency).
fn man(check: bool) -> Result {
    generated(
        "docs/man/socketctl.1",
        &["-p", "socket-cli", "--example", "gen_man"],
        "man page generator",
        "cargo xtask man",
        check,
    )
}

/// Runs the generator `cargo run <generator>` and writes its stdout to `file` (relative
/// to the root), or with `check` fails when `file` differs from it.
fn generated(file: &str, generator: &[&str], what: &str, fix: &str, check: bool) -> Result {
    let path = root().join(file);
    let out = cargo_with(&["run", "--quiet", "--locked"])
        .args(generator)
        .output()
        .map_err(|e| format!("cannot run the {what}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{what} failed:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    let current = std::fs::read(&path).unwrap_or_default();
    if check {
        if current != out.stdout {
            return Err(format!("{file} is stale: run `{fix}`"));
        }
        eprintln!("{file} is current");
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(&path, &out.stdout).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("wrote {file}");
    Ok(())
}

/// Examples of socket-factory: each must run to completion by itself (exit 0).
fn examples() -> Result {
    let dir = root().join("socket-factory/examples");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("no examples yet");
        return Ok(());
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            let stem = p.file_stem()?.to_string_lossy().into_owned();
            (p.extension()? == "rs").then_some(stem)
        })
        .collect();
    names.sort();
    for name in names {
        run(cargo_with(&[
            "run",
            "--quiet",
            "--locked",
            "-p",
            "socket-factory",
            "--features",
            "unix,tcp",
            "--example",
            &name,
        ]))?;
    }
    Ok(())
}

fn demo() -> Result {
    run(cargo_with(&[
        "run",
        "--quiet",
        "--locked",
        "-p",
        "socket-factory",
        "--features",
        "unix,tcp",
        "--example",
        "demo",
    ]))
}

/// `cargo xtask bench [ARGS]`: the single-host cells (socket-bench), then the cross-host
/// cell of the NATS bridge (socket-bench-nats; `--quick` passes through). `--only nats
/// [--quick] [--runs K] [--messages N] [--rss-seconds S]` runs only the cross-host cell.
fn bench(extra: &[String]) -> Result {
    let only_nats = extra.windows(2).any(|w| w[0] == "--only" && w[1] == "nats");
    if only_nats {
        let mut rest = Vec::new();
        let mut it = extra.iter();
        while let Some(a) = it.next() {
            if a == "--only" {
                let _ = it.next();
            } else {
                rest.push(a.clone());
            }
        }
        return bench_nats(&rest);
    }
    let mut cmd =
        cargo_with(&["run", "--profile", "measure", "--locked", "-p", "socket-bench", "--bin", "socket-bench", "--"]);
    cmd.args(extra);
    run(cmd)?;
    if extra.iter().any(|a| a == "--only") {
        return Ok(());
    }
    let quick: Vec<String> = extra.iter().filter(|a| *a == "--quick").cloned().collect();
    bench_nats(&quick)
}

fn bench_nats(extra: &[String]) -> Result {
    let mut cmd = cargo_with(&[
        "run",
        "--profile",
        "measure",
        "--locked",
        "-p",
        "socket-bench",
        "--bin",
        "socket-bench-nats",
        "--",
    ]);
    cmd.args(extra);
    run(cmd)
}

fn fuzz(extra: &[String]) -> Result {
    let seconds = option(extra, "--seconds").unwrap_or_else(|| "60".to_owned());
    let list = Command::new("cargo")
        .args(["+nightly", "fuzz", "list"])
        .current_dir(root())
        .output()
        .map_err(|e| format!("cannot run cargo +nightly fuzz (install with `cargo install cargo-fuzz`): {e}"))?;
    if !list.status.success() {
        return Err(format!("cargo +nightly fuzz list failed: {}", String::from_utf8_lossy(&list.stderr)));
    }
    for target in String::from_utf8_lossy(&list.stdout).lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(root()).args([
            "+nightly",
            "fuzz",
            "run",
            target,
            "--",
            &format!("-max_total_time={seconds}"),
            "-rss_limit_mb=256",
        ]);
        run(cmd)?;
    }
    Ok(())
}

fn soak(extra: &[String]) -> Result {
    let mut cmd = cargo_with(&["run", "--release", "--locked", "-p", "socket-bench", "--bin", "socket-soak", "--"]);
    // Every option goes to socket-soak, which rejects what it does not know.
    if option(extra, "--minutes").is_none() {
        cmd.args(["--minutes", "10"]);
    }
    cmd.args(extra);
    run(cmd)
}

fn option(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}
