//! Loading: the settings file, the environment and values set in code, merged in layers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::layer::from_root;
use super::{Config, ConfigError};
use crate::error::{Error, Result};

/// Builds a [`Config`] from the layers: defaults < TOML file < environment <
/// values set with [`set`](Self::set).
///
/// Tests pass an environment map with [`env`](Self::env) instead of changing
/// the process environment.
#[derive(Debug, Clone, Default)]
pub struct ConfigLoader {
    file: Option<PathBuf>,
    env: Option<BTreeMap<String, String>>,
    overrides: Vec<(String, toml::Value)>,
    no_discovery: bool,
}

impl ConfigLoader {
    /// A loader reading the process environment and discovering the file.
    pub fn new() -> Self {
        ConfigLoader::default()
    }

    /// Reads this TOML file (it must exist), instead of `SOCKET_CONFIG` or the discovered one.
    #[must_use]
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// Uses these variables instead of the process environment (for
    /// `SOCKET__*`, `SOCKET_CONFIG`, `XDG_CONFIG_HOME` and `HOME`).
    #[must_use]
    pub fn env<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env = Some(vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect());
        self
    }

    /// Does not look for `settings.toml` in the user's configuration
    /// directory (an explicit file or `SOCKET_CONFIG` is still read).
    #[must_use]
    pub fn no_file_discovery(mut self) -> Self {
        self.no_discovery = true;
        self
    }

    /// Sets `key` (e.g. `"socket.tcp.port"`) to `value`, above every other
    /// layer. Strings are parsed to the key's type, like environment values.
    #[must_use]
    pub fn set(mut self, key: impl Into<String>, value: impl Into<toml::Value>) -> Self {
        self.overrides.push((key.into(), value.into()));
        self
    }

    fn var(&self, name: &str) -> Option<String> {
        let value = match &self.env {
            Some(env) => env.get(name).cloned(),
            None => std::env::var(name).ok(),
        };
        value.filter(|v| !v.is_empty())
    }

    /// The file this loader reads, and who named it (`None` when no file is
    /// named and none is found).
    pub fn config_file(&self) -> Option<(PathBuf, &'static str)> {
        if let Some(path) = &self.file {
            return Some((path.clone(), "given explicitly"));
        }
        if let Some(path) = self.var("SOCKET_CONFIG") {
            return Some((PathBuf::from(path), "named by SOCKET_CONFIG"));
        }
        if self.no_discovery {
            return None;
        }
        let base = match self.var("XDG_CONFIG_HOME").map(PathBuf::from).filter(|p| p.is_absolute()) {
            Some(dir) => dir,
            None => PathBuf::from(self.var("HOME")?).join(".config"),
        };
        let path = base.join("socket").join("settings.toml");
        path.is_file().then_some((path, "found"))
    }

    /// Merges the layers, checks every key and value, and returns the configuration.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config): a named file that does not exist or is not
    /// valid TOML, an unknown key, a value of the wrong type or outside its
    /// rule; the message names the key, the value, the rule and where the
    /// value came from.
    pub fn load(&self) -> Result<Config> {
        self.load_inner().map_err(Error::from)
    }

    fn load_inner(&self) -> std::result::Result<Config, ConfigError> {
        let mut builder = config::Config::builder();
        let file = self.config_file().map(|(path, why)| (std::path::absolute(&path).unwrap_or(path), why));
        if let Some((path, why)) = &file {
            tracing::debug!(path = %path.display(), why, "reading configuration file");
            builder = builder.add_source(read_file(path, why)?);
        }
        let env: config::Map<String, String> = match &self.env {
            Some(env) => env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            None => std::env::vars().collect(),
        };
        builder = builder.add_source(SocketEnv(
            config::Environment::with_prefix("SOCKET")
                .prefix_separator("__")
                .separator("__")
                .ignore_empty(true)
                .source(Some(env)),
        ));
        for (key, value) in &self.overrides {
            builder = builder
                .set_override(key.as_str(), to_config_value(value))
                .map_err(|_| ConfigError::UnknownKey { key: key.clone(), origin: OVERRIDE_ORIGIN.to_owned() })?;
        }
        let merged = builder.build().map_err(|source| match &file {
            Some((path, _)) => ConfigError::ReadFile { path: path.clone(), source },
            None => ConfigError::Build { source },
        })?;
        let root = config::Source::collect(&merged).map_err(|source| ConfigError::Build { source })?;
        let mut origins = BTreeMap::new();
        let config = from_root(root, &mut origins)?;
        config.check().map_err(|e| e.with_origin(&origins))?;
        Ok(config)
    }
}

pub(super) const OVERRIDE_ORIGIN: &str = " (set in code or on the command line)";

/// The environment source with keys nested under `socket`: `SOCKET__A__B`
/// becomes `socket.a.b`.
#[derive(Debug, Clone)]
struct SocketEnv(config::Environment);

impl config::Source for SocketEnv {
    fn clone_into_box(&self) -> Box<dyn config::Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> std::result::Result<config::Map<String, config::Value>, config::ConfigError> {
        Ok(self.0.collect()?.into_iter().map(|(k, v)| (format!("socket.{k}"), v)).collect())
    }
}

/// Largest configuration file read, in bytes (1 MiB).
pub const MAX_CONFIG_FILE_LEN: usize = 1 << 20;

/// Reads and parses the TOML file at `path` (absolute): any readable file, a FIFO or
/// `/dev/stdin` included (`--config <(generate)`), read once, at most
/// [`MAX_CONFIG_FILE_LEN`] bytes. A key given twice is a TOML error. Every value remembers
/// the path, so that an error about it names the file.
fn read_file(path: &Path, why: &str) -> std::result::Result<FileSource, ConfigError> {
    use std::io::Read;
    let io = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ConfigError::FileNotFound { path: path.to_owned(), origin: format!(" ({why})") }
        } else {
            ConfigError::ReadIo { path: path.to_owned(), source }
        }
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_FILE_LEN as u64 + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() > MAX_CONFIG_FILE_LEN {
        return Err(ConfigError::FileTooLarge { path: path.to_owned(), limit: MAX_CONFIG_FILE_LEN });
    }
    let text = String::from_utf8(bytes).map_err(|e| ConfigError::ReadIo {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not UTF-8 text: {e}")),
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::ReadFile {
        path: path.to_owned(),
        source: config::ConfigError::FileParse { uri: None, cause: Box::new(e) },
    })?;
    Ok(FileSource { table, origin: path.display().to_string() })
}

/// A parsed configuration file as a layer of the loader.
#[derive(Debug, Clone)]
struct FileSource {
    table: toml::Table,
    origin: String,
}

impl config::Source for FileSource {
    fn clone_into_box(&self) -> Box<dyn config::Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> std::result::Result<config::Map<String, config::Value>, config::ConfigError> {
        Ok(self.table.iter().map(|(k, v)| (k.clone(), config_value_from(v, Some(&self.origin)))).collect())
    }
}

fn to_config_value(value: &toml::Value) -> config::Value {
    config_value_from(value, None)
}

fn config_value_from(value: &toml::Value, origin: Option<&String>) -> config::Value {
    use config::ValueKind;
    let kind = match value {
        toml::Value::String(s) => ValueKind::String(s.clone()),
        toml::Value::Integer(i) => ValueKind::I64(*i),
        toml::Value::Float(f) => ValueKind::Float(*f),
        toml::Value::Boolean(b) => ValueKind::Boolean(*b),
        toml::Value::Datetime(d) => ValueKind::String(d.to_string()),
        toml::Value::Array(items) => ValueKind::Array(items.iter().map(|v| config_value_from(v, origin)).collect()),
        toml::Value::Table(t) => {
            ValueKind::Table(t.iter().map(|(k, v)| (k.clone(), config_value_from(v, origin))).collect())
        }
    };
    config::Value::new(origin, kind)
}
