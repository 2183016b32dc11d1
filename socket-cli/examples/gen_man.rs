//! Writes the `socketctl.1` man page to stdout, generated from the clap definition of
//! `socketctl` (`src/args.rs`, the same definition the binary parses with).
//!
//! Run through `cargo xtask man` (which writes `docs/man/socketctl.1`) and checked in CI
//! with `cargo xtask man --check`. The page is one file: the global options, then one
//! section per command with its synopsis and options, then the exit status.

use std::io::Write;

use clap::CommandFactory;
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

// The binary's own argument definitions; the example uses the parser types, not every helper.
#[allow(dead_code, unreachable_pub)]
#[path = "../src/args.rs"]
mod args;

/// The exit codes, as in `docs/cli.md`.
const EXIT_CODES: &[(&str, &str)] = &[
    ("0", "success"),
    ("1", "other runtime error: a lost connection, an I/O failure, another server already runs for the event, stdout closed"),
    ("2", "usage or validation error: bad arguments, invalid event name, invalid JSON, invalid configuration"),
    ("3", "no server for the event"),
    ("4", "refused by the server: sending not allowed, connection limit reached"),
    ("5", "timeout"),
];

/// The preamble clap_mangen writes before every section it renders; the page needs it once.
const PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";

fn main() -> std::io::Result<()> {
    std::io::stdout().lock().write_all(page()?.as_bytes())
}

/// The whole man page (also compared with the committed one by `socket-cli/tests/man.rs`).
pub(crate) fn page() -> std::io::Result<String> {
    let mut page = Vec::new();
    render(&mut page)?;
    let page = String::from_utf8_lossy(&page);
    Ok(format!("{PREAMBLE}{}", page.replace(PREAMBLE, "")))
}

fn render(out: &mut Vec<u8>) -> std::io::Result<()> {
    let cli = args::Cli::command();
    let man = Man::new(cli.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;

    // One section per command: its synopsis and its own options (the global ones are above).
    for sub in cli.get_subcommands() {
        let name = sub.get_name();
        let sub = sub.clone().bin_name(format!("socketctl {name}"));
        let mut heading = Roff::new();
        heading.control("SH", [format!("COMMAND: {}", name.to_uppercase()).as_str()]);
        heading.to_writer(out)?;
        let man = Man::new(sub);
        let mut section = Vec::new();
        man.render_synopsis_section(&mut section)?;
        man.render_description_section(&mut section)?;
        man.render_options_section(&mut section)?;
        // Sections of the command page become subsections of this one.
        let text = String::from_utf8_lossy(&section).replace("\n.SH ", "\n.SS ");
        let text = text.strip_prefix(".SH ").map_or(text.clone(), |rest| format!(".SS {rest}"));
        out.extend_from_slice(text.as_bytes());
    }

    let mut tail = Roff::new();
    tail.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in EXIT_CODES {
        tail.control("TP", []);
        tail.text([bold(*code)]);
        tail.text([roman(*meaning)]);
    }
    tail.control("SH", ["SEE ALSO"]);
    tail.text([roman("docs/cli.md and docs/configuration.md in the socket repository.")]);
    tail.to_writer(out)?;
    man.render_version_section(out)
}
