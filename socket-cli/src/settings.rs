//! The effective configuration of one `socketctl` run.
//!
//! Layers, lowest first: defaults < TOML file < environment (`SOCKET__A__B`) < command line.
//! The layering and validation are the library's ([`socket_factory::config::ConfigLoader`]);
//! the command line is its top layer, "values set in code".

use socket_factory::config::{Config, ConfigLoader};
use toml::Value;

use crate::args::GlobalArgs;
use crate::exit::{describe, CliError};

/// Configuration values set on the command line: dotted keys (`socket.tcp.port`) and values.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides(Vec<(String, Value)>);

impl Overrides {
    /// No overrides.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Sets dotted `key` to `value`.
    pub(crate) fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.0.push((key.to_owned(), value.into()));
    }

    /// The overrides from the global options.
    pub(crate) fn from_global(global: &GlobalArgs) -> Self {
        let mut o = Overrides::new();
        if let Some(t) = global.transport {
            o.set("socket.transport", t.scheme());
        }
        if let Some(dir) = &global.socket_dir {
            o.set("socket.socket_dir", dir.to_string_lossy().into_owned());
        }
        if let Some(host) = &global.host {
            o.set("socket.tcp.host", host.as_str());
        }
        if let Some(port) = global.port {
            o.set("socket.tcp.port", i64::from(port));
        }
        if global.legacy {
            o.set("socket.legacy_server", true);
        }
        o
    }
}

/// The effective configuration for this run: defaults < file (`--config`, else
/// `SOCKET_CONFIG`, else the user's `settings.toml`) < environment < global options <
/// `overrides` (the command's own options).
///
/// # Errors
///
/// Exit 2 with the library's message naming the file, key, value and rule.
pub(crate) fn load_config(global: &GlobalArgs, overrides: &Overrides) -> Result<Config, CliError> {
    load_with(Config::loader(), global, overrides)
}

/// [`load_config`] over a given loader (tests pass one with an injected environment).
pub(crate) fn load_with(
    mut loader: ConfigLoader,
    global: &GlobalArgs,
    overrides: &Overrides,
) -> Result<Config, CliError> {
    if let Some(file) = &global.config {
        loader = loader.file(file);
    }
    for (key, value) in Overrides::from_global(global).0.into_iter().chain(overrides.0.iter().cloned()) {
        loader = loader.set(key, value);
    }
    loader.load().map_err(|e| CliError::usage(describe(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::TransportArg;
    use crate::exit::Exit;
    use std::path::PathBuf;

    fn loader(env: &[(&str, &str)]) -> ConfigLoader {
        Config::loader().no_file_discovery().env(env.iter().map(|(k, v)| (*k, *v)))
    }

    #[test]
    fn defaults_when_nothing_is_set() -> Result<(), CliError> {
        let config = load_with(loader(&[]), &GlobalArgs::default(), &Overrides::new())?;
        assert_eq!(config, Config::default());
        Ok(())
    }

    #[test]
    fn command_line_is_the_top_layer() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("settings.toml");
        std::fs::write(
            &file,
            "[socket]\nsocket_dir = \"/from/file\"\ntimezone = \"Europe/Berlin\"\n[socket.unix]\nmax_connections = 3\n",
        )?;
        let global = GlobalArgs {
            config: Some(file),
            transport: Some(TransportArg::Tcp),
            socket_dir: Some(PathBuf::from("/from/cli")),
            host: Some("::1".to_owned()),
            port: Some(9050),
            legacy: true,
            ..GlobalArgs::default()
        };
        let mut o = Overrides::new();
        o.set("socket.relay", true);
        o.set("socket.unix.max_connections", 2);
        let env =
            [("SOCKET__UNIX__MAX_CONNECTIONS", "7"), ("SOCKET__RELAY", "false"), ("SOCKET__DEFAULT_TIMEOUT", "2")];
        let config = load_with(loader(&env), &global, &o)?;
        let s = &config.socket;
        assert_eq!(s.transport, "tcp");
        assert_eq!(s.socket_dir, PathBuf::from("/from/cli"), "command line beats the file");
        assert_eq!(s.timezone, "Europe/Berlin", "the file beats the defaults");
        assert!((s.default_timeout - 2.0).abs() < f64::EPSILON, "the environment beats the defaults");
        assert_eq!(s.unix.max_connections, 2, "a command option beats the environment and the file");
        assert!(s.relay, "a command option beats the environment");
        assert_eq!((s.tcp.host.as_str(), s.tcp.port), ("::1", Some(9050)));
        assert!(s.legacy_server);
        Ok(())
    }

    #[test]
    fn invalid_configuration_is_a_usage_error_naming_the_key() {
        let err =
            load_with(loader(&[("SOCKET__UNIX__MAX_CONNECTIONS", "many")]), &GlobalArgs::default(), &Overrides::new())
                .map(drop)
                .unwrap_err();
        assert_eq!(err.exit, Exit::Usage);
        assert!(err.message.contains("socket.unix.max_connections"), "{err}");

        let global = GlobalArgs { config: Some("/nonexistent/socketctl.toml".into()), ..GlobalArgs::default() };
        let err = load_with(loader(&[]), &global, &Overrides::new()).map(drop).unwrap_err();
        assert_eq!(err.exit, Exit::Usage);
        assert!(err.message.contains("/nonexistent/socketctl.toml"), "{err}");
    }

    // The argument parser's numeric options, followed through to the configuration they set.

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
            let Ok(cli) = <crate::args::Cli as clap::Parser>::try_parse_from(argv) else { return Ok(()) };
            let overrides = match &cli.command {
                crate::args::Command::Listen(listen) => {
                    if let Some(timeout) = listen.timeout {
                        proptest::prop_assert!(timeout.after(std::time::Instant::now()).is_some(), "{value}");
                        proptest::prop_assert!(timeout.value > 0.0 && timeout.value <= socket_factory::config::MAX_SECONDS);
                    }
                    Overrides::new()
                }
                crate::args::Command::Serve(serve) => crate::cmd::serve::overrides(serve),
                _ => Overrides::new(),
            };
            let loader = socket_factory::config::Config::loader().no_file_discovery().env(std::iter::empty::<(String, String)>());
            // Whatever parsed is a valid configuration value too.
            let loaded = load_with(loader, &cli.global, &overrides);
            proptest::prop_assert!(loaded.is_ok(), "{value}: {:?}", loaded.err());
        }
    }
}
