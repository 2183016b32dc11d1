//! The command line, as clap derive types (SPEC §6).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use socket_core::config::{MAX_CONNECTIONS, MAX_QUEUE_LEN, MAX_SECONDS};

/// Serve, listen to and send socket events from shells and status bars.
///
/// Global options may stand before or after the command. They are layered over
/// the configuration file and the environment (SOCKET__A__B variables).
#[derive(Debug, Parser)]
#[command(name = "socketctl", version, propagate_version = true, max_term_width = 100)]
pub(crate) struct Cli {
    /// Global options.
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command accepts, before or after the command name.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct GlobalArgs {
    /// Configuration file (default: $SOCKET_CONFIG, else $XDG_CONFIG_HOME/socket/settings.toml if it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// More log output on stderr (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub(crate) verbose: u8,
    /// Log errors only.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
    /// Transport (socket.transport).
    #[arg(long, global = true, value_enum)]
    pub(crate) transport: Option<TransportArg>,
    /// Directory of Unix socket files (socket.socket_dir).
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) socket_dir: Option<PathBuf>,
    /// TCP host to bind or connect to (socket.tcp.host).
    #[arg(long, global = true, value_name = "H")]
    pub(crate) host: Option<String>,
    /// Fixed TCP port; without it the port is discovered from the event name (socket.tcp.port).
    #[arg(long, global = true, value_name = "P", value_parser = clap::value_parser!(u16).range(1024..))]
    pub(crate) port: Option<u16>,
    /// The server is a legacy (Python-origin) server: no hello/welcome handshake (socket.legacy_server).
    #[arg(long, global = true)]
    pub(crate) legacy: bool,
}

/// A transport compiled into `socketctl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TransportArg {
    /// Unix domain sockets in the socket directory.
    Unix,
    /// TCP on host and port.
    Tcp,
}

impl TransportArg {
    /// The scheme name in the registry and in `socket.transport`.
    pub(crate) fn scheme(self) -> &'static str {
        match self {
            TransportArg::Unix => "unix",
            TransportArg::Tcp => "tcp",
        }
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a server for EVENT until SIGINT/SIGTERM; broadcast each stdin line (a JSON object).
    Serve(ServeArgs),
    /// Print each message of EVENT as one JSON line.
    Listen(ListenArgs),
    /// Send one message (--data) or one per stdin line to the server of EVENT.
    Send(SendArgs),
    /// List the Unix sockets in the socket directory, live or stale.
    List(ListArgs),
    /// Print the effective configuration.
    Config(ConfigArgs),
}

/// `serve` options.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Event name: 1 to 64 characters from a-z, A-Z, 0-9, '_' and '-'.
    pub(crate) event: String,
    /// Re-broadcast messages from clients to the other clients (socket.relay).
    #[arg(long)]
    pub(crate) relay: bool,
    /// New clients first receive the last broadcast (socket.retain_last).
    #[arg(long)]
    pub(crate) retain_last: bool,
    /// Refuse messages from clients (socket.allow_client_send = false).
    #[arg(long)]
    pub(crate) no_client_send: bool,
    /// Clients served at once (max_connections of the transport's table), 1 to 65536.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_CONNECTIONS as i64))]
    pub(crate) max_connections: Option<u32>,
    /// Broadcasts kept while no client is connected (socket.message_queue_size), 1 to 1000000.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_QUEUE_LEN as i64))]
    pub(crate) queue_size: Option<u32>,
}

/// `listen` options.
#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    /// Event name.
    pub(crate) event: String,
    /// Exit 0 after N messages.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
    /// Total time allowed, in seconds (more than 0, at most 31536000, one year); running out exits 5.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub(crate) timeout: Option<Secs>,
    /// Wait for the server to appear instead of failing with exit 3.
    #[arg(long)]
    pub(crate) wait: bool,
    /// Do not reconnect: exit 0 when the server shuts down, 1 when the connection is lost.
    #[arg(long)]
    pub(crate) no_reconnect: bool,
}

/// `send` options.
#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// Event name.
    pub(crate) event: String,
    /// Message type.
    #[arg(long = "type", value_enum, default_value_t = TypeArg::Data)]
    pub(crate) message_type: TypeArg,
    /// The message data, a JSON object; without it one message is sent per stdin line.
    #[arg(long, value_name = "JSON")]
    pub(crate) data: Option<String>,
}

/// `--type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TypeArg {
    /// A DATA message.
    Data,
    /// An ERROR message.
    Error,
    /// An application CONTROL message (`data` must not have a `control` key).
    Control,
}

/// `list` options.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// One JSON object per line: {"event_name", "path", "state"}.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `config` options.
#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    /// Print JSON nested like the TOML instead of TOML.
    #[arg(long)]
    pub(crate) json: bool,
}

/// A number of seconds from the command line: finite, more than 0 and at most
/// [`MAX_SECONDS`], so that it always fits a [`Duration`] and a deadline from now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Secs {
    /// As written (for messages).
    pub(crate) value: f64,
    /// As a duration.
    pub(crate) duration: Duration,
}

impl Secs {
    /// The instant `self` after `start`; `None` only if the clock cannot represent it.
    pub(crate) fn after(self, start: Instant) -> Option<Instant> {
        start.checked_add(self.duration)
    }
}

/// Parses `--timeout`-like values: not finite, not positive, above [`MAX_SECONDS`] or not a
/// number at all is a usage error (exit 2), never a panic.
fn parse_secs(s: &str) -> Result<Secs, String> {
    let Ok(value) = s.trim().parse::<f64>() else {
        return Err(format!("{s:?} is not a number of seconds"));
    };
    if !value.is_finite() {
        return Err(format!("{s:?} is not a finite number of seconds"));
    }
    if value <= 0.0 {
        return Err(format!("{s:?} is not a positive number of seconds"));
    }
    if value > MAX_SECONDS {
        return Err(format!("{s:?} seconds is too long: at most {MAX_SECONDS} (one year)"));
    }
    match Duration::try_from_secs_f64(value) {
        // Below a nanosecond rounds to zero: that is not a positive duration.
        Ok(duration) if !duration.is_zero() => Ok(Secs { value, duration }),
        _ => Err(format!("{s:?} is not a positive number of seconds (it rounds to zero)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_before_or_after_the_command() -> Result<(), clap::Error> {
        let before = Cli::try_parse_from(["socketctl", "--transport", "tcp", "--port", "9001", "-vv", "listen", "ev"])?;
        let after = Cli::try_parse_from(["socketctl", "listen", "ev", "--transport", "tcp", "--port", "9001", "-vv"])?;
        for cli in [before, after] {
            assert_eq!(cli.global.transport, Some(TransportArg::Tcp));
            assert_eq!(cli.global.port, Some(9001));
            assert_eq!(cli.global.verbose, 2);
        }
        Ok(())
    }

    #[test]
    fn bad_usage_is_rejected() {
        for args in [
            &["socketctl"][..],
            &["socketctl", "listen"],
            &["socketctl", "listen", "e", "--timeout", "0"],
            &["socketctl", "listen", "e", "--timeout", "soon"],
            &["socketctl", "listen", "e", "--count", "0"],
            &["socketctl", "send", "e", "--type", "ping"],
            &["socketctl", "serve", "e", "--max-connections", "0"],
            &["socketctl", "-v", "-q", "list"],
            &["socketctl", "--transport", "carrier-pigeon", "list"],
            &["socketctl", "list", "--bogus"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?} should be rejected");
        }
    }

    #[test]
    fn numeric_options_refuse_what_does_not_fit() {
        for (option, value) in [
            ("--timeout", "1e30"),
            ("--timeout", "inf"),
            ("--timeout", "NaN"),
            ("--timeout", "-1"),
            ("--timeout", "1e-10"),
            ("--timeout", "31536001"),
            ("--count", "-1"),
            ("--count", "18446744073709551616"),
            ("--count", "1.5"),
        ] {
            let args = ["socketctl", "listen", "e", option, value];
            assert!(Cli::try_parse_from(args).is_err(), "{args:?} should be rejected");
        }
        for (option, value) in [("--max-connections", "65537"), ("--queue-size", "1000001"), ("--queue-size", "-3")] {
            let args = ["socketctl", "serve", "e", option, value];
            assert!(Cli::try_parse_from(args).is_err(), "{args:?} should be rejected");
        }
        for value in ["0", "1023", "65536", "-1", "9e3"] {
            let args = ["socketctl", "--port", value, "list"];
            assert!(Cli::try_parse_from(args).is_err(), "{args:?} should be rejected");
        }
        let cli = Cli::try_parse_from(["socketctl", "listen", "e", "--timeout", "31536000"]);
        let Ok(Cli { command: Command::Listen(listen), .. }) = cli else { panic!("a year is accepted: {cli:?}") };
        let timeout = listen.timeout.unwrap_or_else(|| panic!("--timeout was given"));
        assert_eq!(timeout.duration, Duration::from_secs(31_536_000));
        assert!(timeout.after(Instant::now()).is_some());
    }

    /// Text that looks more or less like a number: every shape a user or a script might
    /// pass to a numeric option.
    fn numeric_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            any::<f64>().prop_map(|f| f.to_string()),
            any::<f64>().prop_map(|f| format!("{f:e}")),
            any::<i128>().prop_map(|i| i.to_string()),
            any::<u64>().prop_map(|u| u.to_string()),
            (any::<u32>(), 0u32..400).prop_map(|(m, e)| format!("{m}e{e}")),
            "[-+]?[0-9]{0,25}([.][0-9]{0,10})?([eE][-+]?[0-9]{1,4})?",
            "[-+0-9.eEinfatyNI_x ]{0,24}",
            Just("NaN".to_owned()),
            Just("-inf".to_owned()),
            Just("1e30".to_owned()),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(512))]

        /// No value of any numeric option can make `socketctl` panic: it is refused by the
        /// parser (exit 2), or it survives everything `main` does with it before doing I/O
        /// (the `--timeout` deadline, the configuration overrides and their validation).
        #[test]
        fn no_numeric_value_of_any_option_panics(value in numeric_text(), which in 0usize..5) {
            let argv: Vec<String> = match which {
                0 => vec!["listen".into(), "e".into(), "--timeout".into(), value.clone()],
                1 => vec!["listen".into(), "e".into(), "--count".into(), value.clone()],
                2 => vec!["serve".into(), "e".into(), "--max-connections".into(), value.clone()],
                3 => vec!["serve".into(), "e".into(), "--queue-size".into(), value.clone()],
                _ => vec!["--port".into(), value.clone(), "list".into()],
            };
            let argv = std::iter::once("socketctl".to_owned()).chain(argv);
            let Ok(cli) = Cli::try_parse_from(argv) else { return Ok(()) };
            let overrides = match &cli.command {
                Command::Listen(listen) => {
                    if let Some(timeout) = listen.timeout {
                        proptest::prop_assert!(timeout.after(Instant::now()).is_some(), "{value}");
                        proptest::prop_assert!(timeout.value > 0.0 && timeout.value <= MAX_SECONDS);
                    }
                    crate::settings::Overrides::new()
                }
                Command::Serve(serve) => crate::cmd::serve::overrides(serve),
                _ => crate::settings::Overrides::new(),
            };
            let loader = socket_core::config::Config::loader().no_file_discovery().env(std::iter::empty::<(String, String)>());
            // Whatever parsed is a valid configuration value too.
            let loaded = crate::settings::load_with(loader, &cli.global, &overrides);
            proptest::prop_assert!(loaded.is_ok(), "{value}: {:?}", loaded.err());
        }
    }

    #[test]
    fn send_defaults_to_data() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from(["socketctl", "send", "ev"])?;
        let Command::Send(send) = cli.command else { panic!("expected send") };
        assert_eq!(send.message_type, TypeArg::Data);
        assert!(send.data.is_none());
        Ok(())
    }
}
