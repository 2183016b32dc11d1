//! `socketctl`: serve, listen to and send socket events from shells and status bars.
//!
//! The command contract (commands, options, output lines, exit codes) is documented in
//! `docs/cli.md`. Stdout carries only data (JSON lines, or the text of `list` and
//! `config`); logs and errors go to stderr, errors as one line each.

mod args;
mod cmd;
mod exit;
mod json;
mod lines;
mod output;
mod settings;
mod stdout_queue;
mod transports;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::args::{Cli, Command, GlobalArgs};
use crate::exit::{CliError, Exit};
use crate::output::print_error;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(&e),
    };
    init_logging(&cli.global);
    let result = match &cli.command {
        Command::Serve(args) => cmd::serve::run(&cli.global, args),
        Command::Listen(args) => cmd::listen::run(&cli.global, args),
        Command::Send(args) => cmd::send::run(&cli.global, args),
        Command::List(args) => cmd::list::run(&cli.global, args),
        Command::Config(args) => cmd::config::run(&cli.global, args),
        Command::Completions(args) => cmd::completions::run(args),
        #[cfg(feature = "nats")]
        Command::Bridge(args) => cmd::bridge::run(&cli.global, args),
    };
    let exit = match result {
        Ok(exit) => exit,
        Err(e) => report(&e),
    };
    ExitCode::from(exit.code())
}

fn report(err: &CliError) -> Exit {
    print_error(&err.one_line());
    err.exit
}

/// Help and version go to stdout with exit 0; usage errors are one stderr line, exit 2.
fn clap_exit(err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = err.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
            report(&CliError::usage(
                "a command is required: serve, listen, send, list, config, completions or bridge (see socketctl --help)",
            ));
            ExitCode::from(Exit::Usage.code())
        }
        _ => {
            // clap's first paragraph says what is wrong; the rest is usage and hints.
            let rendered = err.render().to_string();
            let paragraph: Vec<&str> =
                rendered.lines().map(str::trim).skip_while(|l| l.is_empty()).take_while(|l| !l.is_empty()).collect();
            let text = paragraph.join(" ");
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            let text = if text.is_empty() { "invalid arguments" } else { text };
            report(&CliError::usage(format!("{text} (see socketctl --help)")));
            ExitCode::from(Exit::Usage.code())
        }
    }
}

/// Logs to stderr: warnings by default, `-v` debug, `-vv` trace, `-q` errors only, for
/// socketctl and the socket crates (dependencies stay at warn). `RUST_LOG` overrides all.
fn init_logging(global: &GlobalArgs) {
    let level = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let base = if global.quiet { "error" } else { "warn" };
        EnvFilter::new(format!(
            "{base},socketctl={level},socket_core={level},socket_unix={level},socket_tcp={level},socket_factory={level},socket_nats={level}"
        ))
    });
    // A second subscriber cannot be installed; ignore that (it never happens in main).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
