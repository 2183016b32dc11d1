//! The command line, as clap derive types (SPEC §6).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use socket_factory::config::{MAX_CONNECTIONS, MAX_QUEUE_LEN, MAX_SECONDS};

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
///
/// Their help says the configuration key each one sets, its default and its environment
/// variable (`SOCKET__A__B`, read by the configuration loader, not by clap: the command
/// line is the layer above the environment).
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Global options")]
pub(crate) struct GlobalArgs {
    /// Configuration file; it must exist [default: $XDG_CONFIG_HOME/socket/settings.toml (else ~/.config/socket/settings.toml) when it exists] [env: SOCKET_CONFIG]
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// More log output on stderr (-v debug, -vv trace) [default: warnings] [env: RUST_LOG, which overrides -v and -q]
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub(crate) verbose: u8,
    /// Log errors only [env: RUST_LOG, which overrides -v and -q]
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
    /// Transport (socket.transport) [default: unix] [env: SOCKET__TRANSPORT]
    #[arg(long, global = true, value_enum)]
    pub(crate) transport: Option<TransportArg>,
    /// Directory of Unix socket files (socket.socket_dir) [default: /tmp/sockets] [env: SOCKET__SOCKET_DIR]
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) socket_dir: Option<PathBuf>,
    /// TCP host to bind or connect to (socket.tcp.host) [default: 127.0.0.1] [env: SOCKET__TCP__HOST]
    #[arg(long, global = true, value_name = "H")]
    pub(crate) host: Option<String>,
    /// Fixed TCP port, 1024 to 65535 (socket.tcp.port) [default: discovered from the event name in 9000..=9100] [env: SOCKET__TCP__PORT]
    #[arg(long, global = true, value_name = "P", value_parser = clap::value_parser!(u16).range(1024..))]
    pub(crate) port: Option<u16>,
    /// The server is a legacy (Python-origin) server: no hello/welcome handshake (socket.legacy_server) [default: off] [env: SOCKET__LEGACY_SERVER=true]
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
    /// Print each message of one or more events as one JSON line.
    Listen(ListenArgs),
    /// Send one message (--data) or one per stdin line to the server of EVENT.
    Send(SendArgs),
    /// List the Unix sockets in the socket directory, live or stale.
    List(ListArgs),
    /// Print the effective configuration.
    Config(ConfigArgs),
    /// Print a shell completion script to stdout.
    Completions(CompletionsArgs),
    /// Bridge EVENTs to other hosts over NATS until SIGINT/SIGTERM (host or attach to the local server).
    #[cfg(feature = "nats")]
    Bridge(BridgeArgs),
}

/// `bridge` options. Secrets never go on the command line: the token comes from
/// --token-file or SOCKET_NATS_TOKEN, user and password from SOCKET_NATS_USER and
/// SOCKET_NATS_PASSWORD, NKey/JWT from --creds.
#[cfg(feature = "nats")]
#[derive(Debug, Args)]
pub(crate) struct BridgeArgs {
    /// Event names to bridge.
    #[arg(required = true, value_name = "EVENT")]
    pub(crate) events: Vec<String>,
    /// NATS server URLs, comma-separated: nats://host:port, tls://host:port (socket.nats.url).
    #[arg(long, value_name = "URL[,URL...]")]
    pub(crate) nats: Option<String>,
    /// Subjects are PREFIX.EVENT (socket.nats.subject_prefix, default socket).
    #[arg(long, value_name = "P")]
    pub(crate) subject_prefix: Option<String>,
    /// NATS .creds file: user JWT and NKey seed (socket.nats.credentials_file).
    #[arg(long, value_name = "FILE")]
    pub(crate) creds: Option<PathBuf>,
    /// File whose first line is the NATS token (socket.nats.token_file).
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// PEM file of the CA that signs the NATS servers' certificates; requires TLS (socket.nats.tls_ca_file).
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// Keep the last message of each event in JetStream for late joiners (socket.nats.retain).
    #[arg(long)]
    pub(crate) retain: bool,
}

/// `serve` options.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Event name: 1 to 64 characters from a-z, A-Z, 0-9, '_' and '-'.
    pub(crate) event: String,
    /// Re-broadcast messages from clients to the other clients (socket.relay) [default: off] [env: SOCKET__RELAY=true]
    #[arg(long)]
    pub(crate) relay: bool,
    /// New clients first receive the last broadcast (socket.retain_last) [default: off] [env: SOCKET__RETAIN_LAST=true]
    #[arg(long)]
    pub(crate) retain_last: bool,
    /// Refuse messages from clients (socket.allow_client_send = false) [default: clients may send] [env: SOCKET__ALLOW_CLIENT_SEND=false]
    #[arg(long)]
    pub(crate) no_client_send: bool,
    /// Clients served at once, 1 to 65536 (max_connections of the transport's table) [default: 10] [env: SOCKET__UNIX__MAX_CONNECTIONS, SOCKET__TCP__MAX_CONNECTIONS]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_CONNECTIONS as i64))]
    pub(crate) max_connections: Option<u32>,
    /// Broadcasts kept while no client is connected, 1 to 1000000 (socket.message_queue_size) [default: 100] [env: SOCKET__MESSAGE_QUEUE_SIZE]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_QUEUE_LEN as i64))]
    pub(crate) queue_size: Option<u32>,
}

/// `listen` options.
#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    /// Event names (one or more); each line's event_name says which one it came from.
    #[arg(required = true, num_args = 1.., value_name = "EVENT")]
    pub(crate) events: Vec<String>,
    /// Exit 0 after N messages, counted over all events [default: no limit]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
    /// Total time allowed, in seconds (more than 0, at most 31536000, one year); running out exits 5 [default: no limit]
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub(crate) timeout: Option<Secs>,
    /// Wait for the servers to appear instead of failing with exit 3 (socket.wait_for_server) [default: off] [env: SOCKET__WAIT_FOR_SERVER=true]
    #[arg(long)]
    pub(crate) wait: bool,
    /// Do not reconnect: exit 0 once every server has shut down, 1 when a connection is lost (socket.auto_reconnect = false) [default: reconnect] [env: SOCKET__AUTO_RECONNECT=false]
    #[arg(long)]
    pub(crate) no_reconnect: bool,
    /// Output: the whole message (json) or only its data object (data)
    #[arg(long, value_enum, default_value_t = FormatArg::Json)]
    pub(crate) format: FormatArg,
}

/// `listen --format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FormatArg {
    /// One JSON line per message with the five wire keys.
    Json,
    /// One JSON line per message: only its `data` object (for waybar and eww).
    Data,
}

/// `send` options.
#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// Event name.
    pub(crate) event: String,
    /// Message type.
    #[arg(long = "type", value_enum, default_value_t = TypeArg::Data)]
    pub(crate) message_type: TypeArg,
    /// The message data, a JSON object [default: one message per stdin line]
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

/// `completions` options.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
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
            &["socketctl", "listen", "e", "--format", "xml"],
            &["socketctl", "completions", "tcsh"],
            &["socketctl", "completions"],
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
    fn subcommand_help_lists_its_options_then_the_global_ones() {
        let mut cli = Cli::command();
        cli.build();
        for sub in cli.get_subcommands_mut().filter(|c| c.get_name() != "help") {
            let name = sub.get_name().to_owned();
            let help = sub.render_long_help().to_string();
            let global = help.find("Global options:").unwrap_or_else(|| panic!("{name}: no global options\n{help}"));
            let own = help.find("Options:").unwrap_or_else(|| panic!("{name}: no options\n{help}"));
            assert!(own < global, "{name}: its own options come first\n{help}");
            for env in
                ["SOCKET_CONFIG", "SOCKET__TRANSPORT", "SOCKET__SOCKET_DIR", "SOCKET__TCP__HOST", "SOCKET__TCP__PORT"]
            {
                assert!(help[global..].contains(&format!("[env: {env}]")), "{name}: {env} missing\n{help}");
            }
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

    #[test]
    fn defaults_in_the_help_are_the_configuration_defaults() {
        use socket_factory::config::Config;
        let d = Config::default().socket;
        let mut cli = Cli::command();
        cli.build();
        let top = cli.render_long_help().to_string();
        for text in [
            format!("[default: {}] [env: SOCKET__TRANSPORT]", d.transport),
            format!("[default: {}] [env: SOCKET__SOCKET_DIR]", d.socket_dir.display()),
            format!("[default: {}] [env: SOCKET__TCP__HOST]", d.tcp.host),
            format!("in {}..={}] [env: SOCKET__TCP__PORT]", d.tcp.port_range_start, d.tcp.port_range_end),
        ] {
            assert!(top.contains(&text), "{text:?} missing\n{top}");
        }
        assert_eq!(d.unix.max_connections, d.tcp.max_connections);
        let serve = cli.find_subcommand_mut("serve").map(|c| c.render_long_help().to_string()).unwrap_or_default();
        for text in [
            format!("[default: {}] [env: SOCKET__UNIX__MAX_CONNECTIONS", d.unix.max_connections),
            format!("[default: {}] [env: SOCKET__MESSAGE_QUEUE_SIZE]", d.message_queue_size),
        ] {
            assert!(serve.contains(&text), "{text:?} missing\n{serve}");
        }
        assert!(!d.relay && !d.retain_last && d.allow_client_send && d.auto_reconnect && !d.wait_for_server);
        assert!(!d.legacy_server);
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
