//! Architecture invariants of `docs/architecture.md`, checked on the source tree.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn offenders(dir: &str, needles: &[&str]) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&root().join(dir), &mut files);
    assert!(!files.is_empty(), "no Rust files found under {dir}: the check would be vacuous");
    let mut hits = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).expect("readable source file");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if needles.iter().any(|needle| code.contains(needle)) {
                hits.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    hits
}

/// Architecture invariant: socket-core is platform-neutral. Platform code lives in transports.
#[test]
fn socket_core_has_no_platform_specific_code() {
    let hits =
        offenders("socket-core/src", &["cfg(unix)", "cfg(windows)", "target_os", "std::os::unix", "std::os::fd"]);
    assert!(hits.is_empty(), "platform-specific code in socket-core:\n{}", hits.join("\n"));
}

/// Architecture invariant: library crates never print; they emit `tracing` events.
#[test]
fn library_crates_never_print() {
    for dir in ["socket-core/src", "socket-unix/src", "socket-tcp/src", "socket-factory/src", "socket-nats/src"] {
        let hits = offenders(dir, &["println!", "eprintln!", "print!(", "eprint!(", "dbg!("]);
        assert!(hits.is_empty(), "printing in a library crate:\n{}", hits.join("\n"));
    }
}

/// Architecture invariant: transports only bind, accept and connect; framing is written once in socket-core.
#[test]
fn transports_do_not_frame_or_encode() {
    for dir in ["socket-unix/src", "socket-tcp/src"] {
        let hits = offenders(dir, &["rmp", "encode_frame", "decode_body", "FrameDecoder"]);
        assert!(hits.is_empty(), "protocol code in a transport crate:\n{}", hits.join("\n"));
    }
}

/// Architecture invariant: only the server's registry and the read slot of the engines'
/// read-side hand-off take their primitives from `crate::sync`, the facade that loom and
/// shuttle swap (a loom or shuttle primitive panics outside a model), and the models that
/// run them.
#[test]
fn only_the_modelled_code_uses_the_sync_facade() {
    const USERS: [&str; 2] = ["server/registry.rs", "handoff.rs"];
    const MODELS: [&str; 2] = ["server/models.rs", "client/models.rs"];
    let hits: Vec<String> = offenders("socket-core/src", &["crate::sync", "super::sync"])
        .into_iter()
        .filter(|hit| !USERS.iter().chain(&MODELS).any(|file| hit.contains(&format!("{file}:"))))
        .collect();
    assert!(hits.is_empty(), "crate::sync used outside {USERS:?} and the models:\n{}", hits.join("\n"));
    for file in USERS {
        let text = fs::read_to_string(root().join("socket-core/src").join(file)).expect("a facade user");
        assert!(text.contains("use crate::sync::"), "{file} no longer uses the sync facade");
    }
}

/// Docs rule (STYLE.md): every public item of the facade has an `# Examples` section with code,
/// its own for re-exports too (rustdoc shows a re-export's documentation on the item's page).
#[test]
fn every_public_item_of_socket_factory_has_an_example() {
    let dir = root().join("socket-factory/src");
    let mut items = 0;
    let mut missing = Vec::new();
    let mut files: Vec<_> = fs::read_dir(&dir).expect("socket-factory/src").flatten().map(|e| e.path()).collect();
    files.sort();
    for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "rs")) {
        let text = fs::read_to_string(file).expect("readable socket-factory source");
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let is_item =
                ["pub use ", "pub fn ", "pub async fn ", "pub struct ", "pub enum ", "pub trait ", "pub const "]
                    .iter()
                    .any(|start| line.starts_with(start));
            if !is_item {
                continue;
            }
            // The crate's own functions are re-exported from its modules by lib.rs; each is
            // checked where it is defined.
            if ["pub use build::", "pub use registry::", "pub use settings::"].iter().any(|own| line.starts_with(own)) {
                continue;
            }
            items += 1;
            assert!(
                !line.contains('{') || !line.starts_with("pub use "),
                "{line}: one item per `pub use`, each with its example"
            );
            // The doc comment above the item (attributes may stand between).
            let doc: Vec<&str> = lines[..n]
                .iter()
                .rev()
                .take_while(|l| l.starts_with("///") || l.starts_with("#["))
                .filter(|l| l.starts_with("///"))
                .copied()
                .collect();
            let examples = doc.iter().position(|l| l.trim() == "/// # Examples");
            // `doc` is in reverse order: the code fence comes after the heading, so before it here.
            let has_code = examples.is_some_and(|at| doc[..at].iter().any(|l| l.trim() == "/// ```"));
            if !has_code {
                missing.push(format!("{}:{}: {line}", file.display(), n + 1));
            }
        }
    }
    assert!(items >= 30, "only {items} public items found: the check would be vacuous");
    assert!(missing.is_empty(), "public items of socket-factory without an example:\n{}", missing.join("\n"));
}

/// Architecture invariant: the NATS bridge is written on the public API of socket-core only
/// (no transport crate, no factory among its normal dependencies).
#[test]
fn the_nats_bridge_depends_on_socket_core_only() {
    let manifest = std::fs::read_to_string(root().join("socket-nats/Cargo.toml")).expect("socket-nats/Cargo.toml");
    let deps = manifest.split("[dependencies]").nth(1).and_then(|rest| rest.split("\n[").next()).unwrap_or("");
    assert!(deps.contains("socket-core"), "socket-nats does not depend on socket-core");
    for other in ["socket-unix", "socket-tcp", "socket-factory", "socket-cli"] {
        assert!(!deps.contains(other), "socket-nats depends on {other}: it must use socket-core's public API only");
    }
}

/// Architecture invariant: `socketctl` builds everything through socket-factory, like every
/// user (no direct dependency on socket-core or a transport crate, no engine built by hand).
#[test]
fn socketctl_builds_everything_through_the_factory() {
    let manifest = std::fs::read_to_string(root().join("socket-cli/Cargo.toml")).expect("socket-cli/Cargo.toml");
    let deps = manifest.split("[dependencies]").nth(1).and_then(|rest| rest.split("\n[").next()).unwrap_or("");
    assert!(deps.contains("socket-factory"), "socket-cli does not depend on socket-factory");
    for other in ["socket-core", "socket-unix", "socket-tcp"] {
        assert!(!deps.contains(other), "socket-cli depends on {other}: it must go through socket-factory");
    }
    let hits = offenders("socket-cli/src", &["Server::new(", "Server::with_options(", "Client::connect("]);
    assert!(
        hits.is_empty(),
        "socket-cli builds an engine by hand instead of through socket-factory:\n{}",
        hits.join("\n")
    );
}
