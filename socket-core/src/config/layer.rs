//! Layering: the merged tree of every layer checked key by key against the
//! key table and turned into a [`Config`].

use std::collections::BTreeMap;

use super::error::invalid;
use super::keys::{key_info, KeyInfo, ValueType, CORE_TABLES};
use super::load::OVERRIDE_ORIGIN;
use super::{Config, ConfigError, Origins};

/// Where a value came from, for messages.
fn origin_of(key: &str, value: &config::Value) -> String {
    // Tables made by merging have no origin of their own: use a leaf's.
    if let (None, config::ValueKind::Table(t)) = (value.origin(), &value.kind) {
        if let Some((name, child)) = t.iter().min_by(|a, b| a.0.cmp(b.0)) {
            return origin_of(&format!("{key}.{name}"), child);
        }
    }
    match value.origin() {
        Some("the environment") => {
            let var = key.split('.').map(str::to_ascii_uppercase).collect::<Vec<_>>().join("__");
            format!(" (from environment variable {var})")
        }
        Some(file) => format!(" (from {file})"),
        None => OVERRIDE_ORIGIN.to_owned(),
    }
}

/// A config value as shown in a message.
fn show(value: &config::Value) -> String {
    use config::ValueKind;
    match &value.kind {
        ValueKind::Nil => "nothing".to_owned(),
        ValueKind::Boolean(b) => b.to_string(),
        ValueKind::I64(n) => n.to_string(),
        ValueKind::I128(n) => n.to_string(),
        ValueKind::U64(n) => n.to_string(),
        ValueKind::U128(n) => n.to_string(),
        ValueKind::Float(f) => f.to_string(),
        ValueKind::String(s) => format!("{s:?}"),
        ValueKind::Table(_) => "a table".to_owned(),
        ValueKind::Array(_) => "an array".to_owned(),
    }
}

fn as_int(value: &config::Value) -> Option<i128> {
    use config::ValueKind;
    match &value.kind {
        ValueKind::I64(n) => Some(i128::from(*n)),
        ValueKind::I128(n) => Some(*n),
        ValueKind::U64(n) => Some(i128::from(*n)),
        ValueKind::U128(n) => i128::try_from(*n).ok(),
        ValueKind::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Converts `value` to the TOML form of `info`'s type (strings from the
/// environment parsed), or fails naming the key, value and rule.
/// `Ok(None)` leaves an optional key absent.
fn coerce(info: &KeyInfo, value: &config::Value) -> std::result::Result<Option<toml::Value>, ConfigError> {
    use config::ValueKind;
    let bad = || {
        let mut e = invalid(info.key, show(value));
        if let ConfigError::InvalidValue { origin, .. } = &mut e {
            *origin = origin_of(info.key, value);
        }
        e
    };
    let int_in = |max: i128| as_int(value).filter(|n| (0..=max).contains(n)).map(|n| toml::Value::Integer(n as i64));
    let is_blank = matches!(&value.kind, ValueKind::String(s) if s.trim().is_empty()) || value.kind == ValueKind::Nil;
    Ok(Some(match info.ty {
        ValueType::Boolean => match &value.kind {
            ValueKind::Boolean(b) => toml::Value::Boolean(*b),
            ValueKind::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => toml::Value::Boolean(true),
                "false" | "0" => toml::Value::Boolean(false),
                _ => return Err(bad()),
            },
            _ => return Err(bad()),
        },
        ValueType::Integer => int_in(i128::from(i64::MAX).min(usize::MAX as i128)).ok_or_else(bad)?,
        ValueType::OptionalInteger if is_blank => return Ok(None),
        ValueType::OptionalInteger => int_in(i128::from(u32::MAX)).ok_or_else(bad)?,
        ValueType::Port => int_in(i128::from(u16::MAX)).ok_or_else(bad)?,
        ValueType::OptionalPort if is_blank => return Ok(None),
        ValueType::OptionalPort => int_in(i128::from(u16::MAX)).ok_or_else(bad)?,
        ValueType::Seconds => {
            let f = match &value.kind {
                ValueKind::Float(f) => Some(*f),
                ValueKind::String(s) => s.trim().parse::<f64>().ok(),
                _ => as_int(value).map(|n| n as f64),
            };
            toml::Value::Float(f.filter(|f| f.is_finite()).ok_or_else(bad)?)
        }
        ValueType::OptionalPath if is_blank => return Ok(None),
        ValueType::String | ValueType::Path | ValueType::OptionalPath => match &value.kind {
            ValueKind::String(s) => toml::Value::String(s.clone()),
            _ => return Err(bad()),
        },
        ValueType::IntegerList => {
            let items: Vec<i128> = match &value.kind {
                ValueKind::Array(items) => items.iter().map(as_int).collect::<Option<_>>().ok_or_else(bad)?,
                ValueKind::String(s) if s.trim().is_empty() => Vec::new(),
                ValueKind::String(s) => {
                    s.split(',').map(|p| p.trim().parse().ok()).collect::<Option<_>>().ok_or_else(bad)?
                }
                _ => return Err(bad()),
            };
            if items.iter().any(|n| !(0..=i128::from(u32::MAX)).contains(n)) {
                return Err(bad());
            }
            toml::Value::Array(items.into_iter().map(|n| toml::Value::Integer(n as i64)).collect())
        }
        ValueType::StringList => {
            let items: Vec<String> = match &value.kind {
                ValueKind::Array(items) => items
                    .iter()
                    .map(|v| match &v.kind {
                        ValueKind::String(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect::<Option<_>>()
                    .ok_or_else(bad)?,
                ValueKind::String(s) if s.trim().is_empty() => Vec::new(),
                ValueKind::String(s) => s.split(',').map(|p| p.trim().to_owned()).collect(),
                _ => return Err(bad()),
            };
            toml::Value::Array(items.into_iter().map(toml::Value::String).collect())
        }
    }))
}

/// Plug-in tables are kept as they are (converted to TOML values).
fn to_toml(value: config::Value) -> Option<toml::Value> {
    use config::ValueKind;
    let from_env = value.origin() == Some("the environment");
    Some(match value.kind {
        ValueKind::Nil => return None,
        ValueKind::Boolean(b) => toml::Value::Boolean(b),
        ValueKind::I64(n) => toml::Value::Integer(n),
        ValueKind::I128(n) => i64::try_from(n).map_or(toml::Value::Float(n as f64), toml::Value::Integer),
        ValueKind::U64(n) => i64::try_from(n).map_or(toml::Value::Float(n as f64), toml::Value::Integer),
        ValueKind::U128(n) => i64::try_from(n).map_or(toml::Value::Float(n as f64), toml::Value::Integer),
        ValueKind::Float(f) => toml::Value::Float(f),
        // Environment variables are text: a plug-in table has no schema here, so a value from the
        // environment that reads as a TOML integer, float or boolean takes that type (as it would in a file).
        ValueKind::String(s) if from_env => env_scalar(s),
        ValueKind::String(s) => toml::Value::String(s),
        ValueKind::Table(t) => toml::Value::Table(t.into_iter().filter_map(|(k, v)| Some((k, to_toml(v)?))).collect()),
        ValueKind::Array(items) => toml::Value::Array(items.into_iter().filter_map(to_toml).collect()),
    })
}

/// An environment string as the TOML scalar it spells (`20`, `1.5`, `true`), else as a string.
fn env_scalar(s: String) -> toml::Value {
    if let Ok(n) = s.parse::<i64>() {
        toml::Value::Integer(n)
    } else if let Ok(f) = s.parse::<f64>().map_err(|_| ()).and_then(|f| if f.is_finite() { Ok(f) } else { Err(()) }) {
        toml::Value::Float(f)
    } else if let Ok(b) = s.parse::<bool>() {
        toml::Value::Boolean(b)
    } else {
        toml::Value::String(s)
    }
}

/// Walks the merged tree: every key must be in [`KEYS`] (or be a plug-in
/// table); values are converted to their type; then serde builds the structs.
pub(super) fn from_root(
    root: config::Map<String, config::Value>,
    origins: &mut BTreeMap<String, String>,
) -> std::result::Result<Config, ConfigError> {
    let mut socket_out = toml::Table::new();
    let mut plugins = BTreeMap::new();
    let mut plugin_origins = Origins::default();
    // Sorted, so that the first error reported does not depend on hash order.
    let root: BTreeMap<_, _> = root.into_iter().collect();
    for (name, value) in root {
        if name != "socket" {
            return Err(ConfigError::UnknownKey { origin: origin_of(&name, &value), key: name });
        }
        let config::ValueKind::Table(table) = value.kind else {
            return Err(ConfigError::InvalidValue {
                origin: origin_of("socket", &value),
                key: "socket".to_owned(),
                value: show(&value),
                rule: "a table of settings".to_owned(),
            });
        };
        let table: BTreeMap<_, _> = table.into_iter().collect();
        for (name, value) in table {
            let full = format!("socket.{name}");
            if CORE_TABLES.contains(&name.as_str()) {
                let config::ValueKind::Table(sub) = value.kind else {
                    return Err(ConfigError::InvalidValue {
                        origin: origin_of(&full, &value),
                        value: show(&value),
                        rule: format!("a table of settings ([{full}])"),
                        key: full,
                    });
                };
                let mut sub_out = toml::Table::new();
                let sub: BTreeMap<_, _> = sub.into_iter().collect();
                for (name, value) in sub {
                    let full = format!("{full}.{name}");
                    put(&full, &name, value, &mut sub_out, origins)?;
                }
                socket_out.insert(name, toml::Value::Table(sub_out));
            } else if key_info(&full).is_some() {
                put(&full, &name, value, &mut socket_out, origins)?;
            } else if let config::ValueKind::Table(_) = &value.kind {
                record_origins(&full, &value, &mut plugin_origins);
                if let Some(toml::Value::Table(t)) = to_toml(value) {
                    plugins.insert(name, t);
                }
            } else {
                return Err(ConfigError::UnknownKey { origin: origin_of(&full, &value), key: full });
            }
        }
    }
    let mut top = toml::Table::new();
    top.insert("socket".to_owned(), toml::Value::Table(socket_out));
    let mut config: Config =
        toml::Value::Table(top).try_into().map_err(|e: toml::de::Error| ConfigError::InvalidValue {
            key: "socket".to_owned(),
            value: "(the merged configuration)".to_owned(),
            rule: e.message().to_owned(),
            origin: String::new(),
        })?;
    config.socket.plugins = plugins;
    config.socket.plugin_origins = plugin_origins;
    Ok(config)
}

fn put(
    full: &str,
    name: &str,
    value: config::Value,
    out: &mut toml::Table,
    origins: &mut BTreeMap<String, String>,
) -> std::result::Result<(), ConfigError> {
    let Some(info) = key_info(full) else {
        return Err(ConfigError::UnknownKey { origin: origin_of(full, &value), key: full.to_owned() });
    };
    origins.insert(full.to_owned(), origin_of(full, &value));
    if let Some(v) = coerce(info, &value)? {
        out.insert(name.to_owned(), v);
    }
    Ok(())
}

/// Remembers where every leaf of the plug-in table `value` (at `key`) came from, so that the
/// transport's check of its table names the file or variable like the core does.
fn record_origins(key: &str, value: &config::Value, origins: &mut Origins) {
    match &value.kind {
        config::ValueKind::Table(t) => {
            for (name, child) in t {
                record_origins(&format!("{key}.{name}"), child, origins);
            }
        }
        _ => origins.insert(key.to_owned(), origin_of(key, value)),
    }
}
