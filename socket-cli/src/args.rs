//! The command line, as clap derive types (SPEC §6).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    #[arg(long, global = true, value_name = "P")]
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
    /// Re-broadcast messages from clients to the other clients (socket.relay).
    #[arg(long)]
    pub(crate) relay: bool,
    /// New clients first receive the last broadcast (socket.retain_last).
    #[arg(long)]
    pub(crate) retain_last: bool,
    /// Refuse messages from clients (socket.allow_client_send = false).
    #[arg(long)]
    pub(crate) no_client_send: bool,
    /// Clients served at once (max_connections of the transport's table).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_connections: Option<u32>,
    /// Broadcasts kept while no client is connected (socket.message_queue_size).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
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
    /// Total time allowed, in seconds; running out exits 5.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub(crate) timeout: Option<f64>,
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

/// A positive, finite number of seconds.
fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
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
    fn send_defaults_to_data() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from(["socketctl", "send", "ev"])?;
        let Command::Send(send) = cli.command else { panic!("expected send") };
        assert_eq!(send.message_type, TypeArg::Data);
        assert!(send.data.is_none());
        Ok(())
    }
}
