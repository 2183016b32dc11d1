//! The effective configuration of one `socketctl` run.
//!
//! Layers, lowest first: defaults < TOML file < environment (`SOCKET__A__B`) < command line.
//! The command line is the library's "values set in code" layer.
//!
//! [`load_config`] is the one entry point. It layers the sources itself (see
//! [`layer`]); when the library loader is available it is the place to switch to it.

use std::path::{Path, PathBuf};

use socket_core::config::Config;
use toml::{Table, Value};

use crate::args::GlobalArgs;
use crate::exit::CliError;

/// Environment variable naming the configuration file.
pub(crate) const CONFIG_ENV: &str = "SOCKET_CONFIG";
/// Prefix of environment variables that set configuration keys.
pub(crate) const ENV_PREFIX: &str = "SOCKET__";

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

/// Where the layers come from; [`Sources::from_process`] reads the real process state,
/// tests build one by hand instead of changing the environment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sources {
    /// `--config FILE`.
    pub(crate) explicit_file: Option<PathBuf>,
    /// The process environment (all variables; only `SOCKET_CONFIG`, `SOCKET__*`,
    /// `XDG_CONFIG_HOME` and `HOME` are read).
    pub(crate) env: Vec<(String, String)>,
}

impl Sources {
    /// The sources of this process.
    pub(crate) fn from_process(global: &GlobalArgs) -> Self {
        Sources {
            explicit_file: global.config.clone(),
            env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    /// The configuration file to read, and whether it must exist.
    pub(crate) fn config_file(&self) -> Option<(PathBuf, bool)> {
        if let Some(path) = &self.explicit_file {
            return Some((path.clone(), true));
        }
        if let Some(path) = self.var(CONFIG_ENV) {
            return Some((PathBuf::from(path), true));
        }
        let base = match self.var("XDG_CONFIG_HOME") {
            Some(xdg) => PathBuf::from(xdg),
            None => PathBuf::from(self.var("HOME")?).join(".config"),
        };
        Some((base.join("socket").join("settings.toml"), false))
    }
}

/// The effective configuration for this run: defaults < file < environment < `overrides`.
///
/// # Errors
///
/// Exit 2 with a message naming the file, key or value when the file cannot be read or
/// parsed, a key is unknown, or a value is invalid.
pub(crate) fn load_config(global: &GlobalArgs, overrides: &Overrides) -> Result<Config, CliError> {
    let mut all = Overrides::from_global(global);
    all.0.extend(overrides.0.iter().cloned());
    layer(&Sources::from_process(global), &all)
}

/// Layers the sources and validates the result.
///
/// # Errors
///
/// See [`load_config`].
pub(crate) fn layer(sources: &Sources, overrides: &Overrides) -> Result<Config, CliError> {
    let defaults = Value::try_from(Config::default())
        .map_err(|e| CliError::runtime(format!("cannot represent the default configuration: {e}")))?;
    let Value::Table(defaults) = defaults else {
        return Err(CliError::runtime("the default configuration is not a table"));
    };
    let mut table = defaults.clone();

    if let Some((path, required)) = sources.config_file() {
        if let Some(file) = read_file(&path, required)? {
            merge(&mut table, file);
        }
    }

    let mut env: Vec<_> = sources.env.iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
    env.sort();
    for (name, text) in env {
        let rest = &name[ENV_PREFIX.len()..];
        let mut path = vec!["socket".to_owned()];
        path.extend(rest.split("__").map(str::to_ascii_lowercase));
        if path.iter().any(String::is_empty) {
            return Err(CliError::usage(format!(
                "invalid environment variable {name}: expected SOCKET__KEY or SOCKET__TABLE__KEY, e.g. SOCKET__UNIX__MAX_CONNECTIONS"
            )));
        }
        let key = path.join(".");
        let value = coerce(lookup(&defaults, &path), text)
            .map_err(|rule| CliError::usage(format!("invalid value {text:?} for key {key} (from {name}): {rule}")))?;
        set_path(&mut table, &path, value);
    }

    for (key, value) in &overrides.0 {
        let path: Vec<String> = key.split('.').map(str::to_owned).collect();
        set_path(&mut table, &path, value.clone());
    }

    let config: Config = Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| CliError::usage(format!("invalid configuration: {}", e.message())))?;
    validate(&config)?;
    Ok(config)
}

fn read_file(path: &Path, required: bool) -> Result<Option<Table>, CliError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CliError::usage(format!("cannot read configuration file {}: {e}", path.display())));
        }
    };
    text.parse::<Table>()
        .map(Some)
        .map_err(|e| CliError::usage(format!("invalid configuration file {}: {}", path.display(), e.message())))
}

/// Merges `over` into `base`, table by table.
fn merge(base: &mut Table, over: Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn lookup<'a>(table: &'a Table, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let value = table.get(first)?;
    if rest.is_empty() {
        return Some(value);
    }
    match value {
        Value::Table(t) => lookup(t, rest),
        _ => None,
    }
}

fn set_path(table: &mut Table, path: &[String], value: Value) {
    let Some((first, rest)) = path.split_first() else { return };
    if rest.is_empty() {
        table.insert(first.clone(), value);
        return;
    }
    let entry = table.entry(first.clone()).or_insert_with(|| Value::Table(Table::new()));
    if !entry.is_table() {
        *entry = Value::Table(Table::new());
    }
    if let Value::Table(t) = entry {
        set_path(t, rest, value);
    }
}

/// Reads an environment value as the type of the default at the same key; keys without a
/// default (optional keys, unknown keys) take a TOML scalar when the text is one, else a string.
fn coerce(default: Option<&Value>, text: &str) -> Result<Value, String> {
    let text = text.trim();
    match default {
        Some(Value::String(_)) => Ok(Value::String(text.to_owned())),
        Some(Value::Integer(_)) => text.parse::<i64>().map(Value::Integer).map_err(|_| "must be an integer".to_owned()),
        Some(Value::Float(_)) => text.parse::<f64>().map(Value::Float).map_err(|_| "must be a number".to_owned()),
        Some(Value::Boolean(_)) => match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Boolean(false)),
            _ => Err("must be true or false".to_owned()),
        },
        Some(Value::Array(_)) => parse_toml_value(text)
            .filter(Value::is_array)
            .ok_or_else(|| "must be a TOML array, e.g. [1000, 1001]".to_owned()),
        _ => Ok(parse_toml_value(text)
            .filter(|v| !v.is_table() && !v.is_array())
            .unwrap_or_else(|| Value::String(text.to_owned()))),
    }
}

fn parse_toml_value(text: &str) -> Option<Value> {
    let table: Table = format!("v = {text}").parse().ok()?;
    table.get("v").cloned()
}

/// The checks the CLI needs before it uses a configuration. The full rules (SPEC §5
/// "Configuration") belong to the library's loader.
fn validate(config: &Config) -> Result<(), CliError> {
    let s = &config.socket;
    config.time_zone().map_err(|e| CliError::usage(e.to_string()))?;
    let tcp = &s.tcp;
    if tcp.port_range_start < 1024 || tcp.port_range_start > tcp.port_range_end {
        return Err(CliError::usage(format!(
            "invalid port range {}..={} (socket.tcp.port_range_start, socket.tcp.port_range_end): ports must be in 1024..=65535 with start <= end",
            tcp.port_range_start, tcp.port_range_end
        )));
    }
    for (key, value) in [
        ("socket.default_timeout", s.default_timeout),
        ("socket.hello_grace", s.hello_grace),
        ("socket.frame_timeout", s.frame_timeout),
        ("socket.write_stall_timeout", s.write_stall_timeout),
        ("socket.reconnect_initial_delay", s.reconnect_initial_delay),
        ("socket.reconnect_max_delay", s.reconnect_max_delay),
    ] {
        if !(value.is_finite() && value > 0.0) {
            return Err(CliError::usage(format!("invalid value {value} for key {key}: must be a positive number")));
        }
    }
    for (key, value) in [
        ("socket.message_queue_size", s.message_queue_size),
        ("socket.max_message_size", s.max_message_size),
        ("socket.unix.max_connections", s.unix.max_connections),
        ("socket.tcp.max_connections", s.tcp.max_connections),
    ] {
        if value == 0 {
            return Err(CliError::usage(format!("invalid value 0 for key {key}: must be positive")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::Exit;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn no_file() -> Sources {
        // HOME points nowhere, so no file is found.
        Sources { explicit_file: None, env: env(&[("HOME", "/nonexistent-socketctl-home")]) }
    }

    #[test]
    fn defaults_when_nothing_is_set() -> Result<(), CliError> {
        let config = layer(&no_file(), &Overrides::new())?;
        assert_eq!(config, Config::default());
        Ok(())
    }

    #[test]
    fn layers_apply_in_order() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("settings.toml");
        std::fs::write(
            &file,
            "[socket]\nsocket_dir = \"/from/file\"\ntimezone = \"Europe/Berlin\"\n[socket.unix]\nmax_connections = 3\n[socket.tcp]\nport_range_start = 9500\nport_range_end = 9600\n",
        )?;
        let sources = Sources {
            explicit_file: Some(file),
            env: env(&[
                ("SOCKET__UNIX__MAX_CONNECTIONS", "7"),
                ("SOCKET__TCP__PORT_RANGE_END", "9700"),
                ("SOCKET__RELAY", "true"),
                ("SOCKET__DEFAULT_TIMEOUT", "2"),
                ("SOCKET__TCP__PORT", "9555"),
                ("UNRELATED", "x"),
            ]),
        };
        let mut o = Overrides::new();
        o.set("socket.socket_dir", "/from/cli");
        o.set("socket.tcp.port_range_end", 9800);
        let config = layer(&sources, &o)?;
        let s = &config.socket;
        assert_eq!(s.socket_dir, PathBuf::from("/from/cli"), "cli beats file");
        assert_eq!(s.timezone, "Europe/Berlin", "file beats defaults");
        assert_eq!(s.unix.max_connections, 7, "env beats file");
        assert_eq!(s.tcp.port_range_start, 9500);
        assert_eq!(s.tcp.port_range_end, 9800, "cli beats env");
        assert!(s.relay);
        assert!((s.default_timeout - 2.0).abs() < f64::EPSILON, "an integer is a valid float");
        assert_eq!(s.tcp.port, Some(9555), "an optional key takes a number");
        assert_eq!(s.unix.socket_permissions, "0600", "defaults stay");
        Ok(())
    }

    #[test]
    fn the_original_toml_loads_as_it_is() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("settings.toml");
        std::fs::write(
            &file,
            r#"[socket]
socket_dir = "/tmp/sockets"
default_timeout = 5
buffer_size = 4096
timezone = "UTC"
message_queue_size = 100
blocking_mode = false
allow_client_send = true

[socket.unix]
max_connections = 10
socket_permissions = "0600"
auto_remove_socket = true

[socket.tcp]
host = "127.0.0.1"
port_range_start = 9000
port_range_end = 9100
max_connections = 10
"#,
        )?;
        let config = layer(&Sources { explicit_file: Some(file), env: Vec::new() }, &Overrides::new())?;
        assert_eq!(config, Config::default());
        Ok(())
    }

    #[test]
    fn socket_config_env_names_the_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("x.toml");
        std::fs::write(&file, "[socket]\nrelay = true\n")?;
        let sources = Sources { explicit_file: None, env: env(&[(CONFIG_ENV, &file.to_string_lossy())]) };
        assert!(layer(&sources, &Overrides::new())?.socket.relay);
        Ok(())
    }

    #[test]
    fn xdg_file_is_used_when_it_exists() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let sources = Sources { explicit_file: None, env: env(&[("XDG_CONFIG_HOME", &dir.path().to_string_lossy())]) };
        assert!(!layer(&sources, &Overrides::new())?.socket.relay, "a missing default file is fine");
        std::fs::create_dir(dir.path().join("socket"))?;
        std::fs::write(dir.path().join("socket/settings.toml"), "[socket]\nrelay = true\n")?;
        assert!(layer(&sources, &Overrides::new())?.socket.relay);
        Ok(())
    }

    fn usage_error(sources: &Sources) -> String {
        match layer(sources, &Overrides::new()) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => {
                assert_eq!(e.exit, Exit::Usage, "{e}");
                e.message
            }
        }
    }

    #[test]
    fn invalid_sources_are_usage_errors_naming_the_key() -> Result<(), Box<dyn std::error::Error>> {
        let msg = usage_error(&Sources { explicit_file: None, env: env(&[("SOCKET__UNIX__MAX_CONNECTIONS", "many")]) });
        assert_eq!(msg, "invalid value \"many\" for key socket.unix.max_connections (from SOCKET__UNIX__MAX_CONNECTIONS): must be an integer");

        let msg = usage_error(&Sources { explicit_file: None, env: env(&[("SOCKET__NO_SUCH_KEY", "1")]) });
        assert!(msg.contains("no_such_key"), "{msg}");

        let msg = usage_error(&Sources { explicit_file: None, env: env(&[("SOCKET__TIMEZONE", "Mars/Olympus")]) });
        assert!(msg.contains("socket.timezone"), "{msg}");

        let msg = usage_error(&Sources { explicit_file: Some("/nonexistent/socket.toml".into()), env: Vec::new() });
        assert!(msg.starts_with("cannot read configuration file /nonexistent/socket.toml"), "{msg}");

        let dir = tempfile::tempdir()?;
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[socket]\nunknown_key = 1\n")?;
        let msg = usage_error(&Sources { explicit_file: Some(file.clone()), env: Vec::new() });
        assert!(msg.contains("unknown_key"), "{msg}");
        std::fs::write(&file, "[socket\n")?;
        let msg = usage_error(&Sources { explicit_file: Some(file.clone()), env: Vec::new() });
        assert!(msg.starts_with("invalid configuration file"), "{msg}");
        std::fs::write(&file, "[socket.tcp]\nport_range_start = 9200\nport_range_end = 9100\n")?;
        let msg = usage_error(&Sources { explicit_file: Some(file), env: Vec::new() });
        assert!(msg.contains("port_range_start"), "{msg}");
        Ok(())
    }

    #[test]
    fn coerce_follows_the_default_type() {
        assert_eq!(coerce(Some(&Value::String(String::new())), "0600"), Ok(Value::String("0600".into())));
        assert_eq!(coerce(Some(&Value::Boolean(false)), "on"), Ok(Value::Boolean(true)));
        assert!(coerce(Some(&Value::Boolean(false)), "maybe").is_err());
        assert_eq!(coerce(Some(&Value::Float(0.0)), "0.5"), Ok(Value::Float(0.5)));
        assert_eq!(
            coerce(Some(&Value::Array(Vec::new())), "[1000, 1001]"),
            Ok(Value::Array(vec![Value::Integer(1000), Value::Integer(1001)]))
        );
        assert_eq!(coerce(None, "12"), Ok(Value::Integer(12)));
        assert_eq!(coerce(None, "plain text"), Ok(Value::String("plain text".into())));
    }
}
