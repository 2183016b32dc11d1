//! `socketctl completions SHELL`: a completion script generated from the clap definition.

use clap::CommandFactory;

use crate::args::{Cli, CompletionsArgs};
use crate::exit::{CliError, Exit};

/// Writes the completion script for `args.shell` to stdout.
///
/// # Errors
///
/// A runtime error (exit 1) when stdout is closed.
pub(crate) fn run(args: &CompletionsArgs) -> Result<Exit, CliError> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "socketctl", &mut script);
    let mut out = std::io::stdout().lock();
    std::io::Write::write_all(&mut out, &script)
        .and_then(|()| std::io::Write::flush(&mut out))
        .map_err(|e| CliError::runtime(format!("cannot write to stdout: {e}")))?;
    Ok(Exit::Ok)
}
