//! The committed man page `docs/man/socketctl.1` is the one the clap definition generates
//! (`cargo xtask man`; `cargo xtask ci` checks the same with `man --check`).

use std::path::PathBuf;

use crate::util::{fail, TestResult};

// The generator itself (socket-cli/examples/gen_man.rs), whose `main` the test does not use.
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/gen_man.rs"]
mod gen_man;

#[test]
fn man_page_is_generated_from_the_clap_definition_and_current() -> TestResult {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/man/socketctl.1");
    let committed = std::fs::read_to_string(&path)?;
    let generated = gen_man::page()?;
    if committed != generated {
        return Err(fail("docs/man/socketctl.1 is stale: run `cargo xtask man`"));
    }
    for text in [".TH socketctl 1", "COMMAND: LISTEN", "COMMAND: COMPLETIONS", "\\-\\-format", "EXIT STATUS"] {
        assert!(generated.contains(text), "{text:?} missing from the man page");
    }
    Ok(())
}
