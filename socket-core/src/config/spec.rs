//! Settings declared by transports: the keys of a table `[socket.<scheme>]`,
//! checked with the same [`ConfigError`] and the same wording as the core keys.
//!
//! A transport lists its keys in [`Transport::settings`](crate::Transport::settings);
//! the default [`Transport::validate`](crate::Transport::validate) checks its table
//! against them with [`check_transport_table`].

use std::collections::BTreeMap;

use super::error::show_str;
use super::keys::ValueType;
use super::{Config, ConfigError};

/// An extra rule of one key beyond its type and bounds: `Err` says why the value breaks it.
pub type KeyCheck = fn(&toml::Value) -> Result<(), String>;

/// One key of a transport's table `[socket.<scheme>]`: its name, type, default,
/// bounds, rule and help text.
///
/// # Examples
///
/// ```
/// use socket_core::config::{KeySpec, ValueType};
///
/// const CAPACITY: KeySpec =
///     KeySpec::new("capacity", ValueType::Integer, "an integer in 1..=1024", "Slots per connection.")
///         .with_default("16")
///         .with_bounds(1, 1024);
/// assert_eq!(CAPACITY.key("memory"), "socket.memory.capacity");
/// assert_eq!(CAPACITY.env_var("memory"), "SOCKET__MEMORY__CAPACITY");
/// assert_eq!(CAPACITY.default_value(), Some(toml::Value::Integer(16)));
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct KeySpec {
    /// The key within the table, e.g. `"max_connections"`.
    pub name: &'static str,
    /// Type of the value.
    pub ty: ValueType,
    /// The default, written as TOML (`"10"`, `"\"0600\""`); `None` when absent by default.
    pub default: Option<&'static str>,
    /// Smallest integer allowed (integer and port types).
    pub min: Option<i64>,
    /// Largest integer allowed (integer and port types).
    pub max: Option<i64>,
    /// What a valid value is; quoted by every error about this key.
    pub rule: &'static str,
    /// What the key does.
    pub description: &'static str,
    /// A rule beyond the type and bounds.
    pub check: Option<KeyCheck>,
}

impl KeySpec {
    /// A key with no default, bounds or extra rule.
    pub const fn new(name: &'static str, ty: ValueType, rule: &'static str, description: &'static str) -> KeySpec {
        KeySpec { name, ty, default: None, min: None, max: None, rule, description, check: None }
    }

    /// The same key with a default, written as TOML.
    #[must_use]
    pub const fn with_default(mut self, toml: &'static str) -> KeySpec {
        self.default = Some(toml);
        self
    }

    /// The same key with inclusive integer bounds.
    #[must_use]
    pub const fn with_bounds(mut self, min: i64, max: i64) -> KeySpec {
        self.min = Some(min);
        self.max = Some(max);
        self
    }

    /// The same key with an extra rule.
    #[must_use]
    pub const fn with_check(mut self, check: KeyCheck) -> KeySpec {
        self.check = Some(check);
        self
    }

    /// The full dotted key in the table of `scheme`: `socket.{scheme}.{name}`.
    pub fn key(&self, scheme: &str) -> String {
        format!("socket.{scheme}.{}", self.name)
    }

    /// The environment variable of this key: `SOCKET__{SCHEME}__{NAME}`.
    pub fn env_var(&self, scheme: &str) -> String {
        self.key(scheme).split('.').map(str::to_ascii_uppercase).collect::<Vec<_>>().join("__")
    }

    /// The default as a TOML value (`None` when absent by default or not valid TOML).
    pub fn default_value(&self) -> Option<toml::Value> {
        let text = self.default?;
        let mut table: toml::Table = toml::from_str(&format!("v = {text}")).ok()?;
        table.remove("v")
    }

    /// Checks one value against the type, the bounds and the extra rule; `Err` is the rule
    /// as an error quotes it.
    fn check_value(&self, value: &toml::Value) -> Result<(), String> {
        let int_in = |lo: i64, hi: i64| {
            value.as_integer().is_some_and(|n| {
                (lo..=hi).contains(&n) && self.min.is_none_or(|m| n >= m) && self.max.is_none_or(|m| n <= m)
            })
        };
        let typed = match self.ty {
            ValueType::Boolean => value.is_bool(),
            ValueType::Integer => int_in(0, i64::MAX),
            ValueType::OptionalInteger => int_in(0, i64::from(u32::MAX)),
            ValueType::Port | ValueType::OptionalPort => int_in(0, i64::from(u16::MAX)),
            ValueType::Seconds => value
                .as_float()
                .or_else(|| value.as_integer().map(|n| n as f64))
                .is_some_and(|f| f.is_finite() && f > 0.0),
            ValueType::String | ValueType::Path | ValueType::OptionalPath => value.is_str(),
            ValueType::IntegerList => value.as_array().is_some_and(|items| {
                items.iter().all(|v| v.as_integer().is_some_and(|n| (0..=i64::from(u32::MAX)).contains(&n)))
            }),
            ValueType::StringList => value.as_array().is_some_and(|items| items.iter().all(toml::Value::is_str)),
        };
        if !typed {
            return Err(self.rule.to_owned());
        }
        match self.check {
            Some(check) => check(value).map_err(|why| format!("{} ({why})", self.rule)),
            None => Ok(()),
        }
    }
}

/// Where each value of a plug-in table came from (` (from environment variable ...)`,
/// ` (from /path/settings.toml)`), keyed by the full dotted key, so that an error about a
/// transport's key names its origin like an error about a core key. Filled by the loader;
/// not serialized and ignored by equality (it is provenance, not a setting).
#[derive(Debug, Clone, Default)]
pub struct Origins(BTreeMap<String, String>);

impl Origins {
    /// The origin of `key` as an error message writes it, or `""` when unknown (set in code).
    pub fn get(&self, key: &str) -> &str {
        self.0.get(key).map_or("", String::as_str)
    }

    pub(super) fn insert(&mut self, key: String, origin: String) {
        self.0.insert(key, origin);
    }
}

impl PartialEq for Origins {
    fn eq(&self, _: &Origins) -> bool {
        true
    }
}

/// A TOML value as written in a message: strings quoted like the core does.
fn show_toml(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => show_str(s),
        toml::Value::Array(_) => "an array".to_owned(),
        toml::Value::Table(_) => "a table".to_owned(),
        other => other.to_string(),
    }
}

/// Checks `table`, the table `[socket.<scheme>]`, against `specs`: every key must be
/// declared and its value must have the key's type, lie in its bounds and keep its extra rule.
/// `origins` names where the values came from.
///
/// # Errors
///
/// [`ConfigError::UnknownKey`] or [`ConfigError::InvalidValue`], worded like the errors about
/// core keys.
pub fn check_table(scheme: &str, specs: &[KeySpec], table: &toml::Table, origins: &Origins) -> Result<(), ConfigError> {
    for (name, value) in table {
        let key = format!("socket.{scheme}.{name}");
        let origin = origins.get(&key).to_owned();
        let Some(spec) = specs.iter().find(|s| s.name == name) else {
            return Err(ConfigError::UnknownKey { key, origin });
        };
        spec.check_value(value).map_err(|rule| ConfigError::InvalidValue {
            value: show_toml(value),
            key,
            rule,
            origin,
        })?;
    }
    Ok(())
}

/// Checks the table `[socket.<scheme>]` of `config` against the keys the transport declares
/// (see [`check_table`]). A transport that declares no keys checks its table itself: then
/// this accepts any table.
///
/// # Errors
///
/// As [`check_table`]; [`ConfigError::Serialize`] if a built-in table cannot be written as TOML.
pub fn check_transport_table(scheme: &str, specs: &[KeySpec], config: &Config) -> Result<(), ConfigError> {
    if specs.is_empty() {
        return Ok(());
    }
    match config.transport_table(scheme)? {
        Some(table) => check_table(scheme, specs, &table, &config.socket.plugin_origins),
        None => Ok(()),
    }
}

impl Config {
    /// The table `[socket.<scheme>]` as TOML: the built-in `unix` and `tcp` tables as
    /// their settings hold them, a plug-in's as written; `None` for a plug-in without one.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Serialize`] if a built-in table cannot be written as TOML.
    pub fn transport_table(&self, scheme: &str) -> Result<Option<toml::Table>, ConfigError> {
        let table = match scheme {
            "unix" => toml::Table::try_from(&self.socket.unix),
            "tcp" => toml::Table::try_from(&self.socket.tcp),
            other => return Ok(self.socket.plugins.get(other).cloned()),
        };
        table.map(Some).map_err(|source| ConfigError::Serialize { source })
    }
}
