//! The configuration error type and the helpers that build its messages.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use snafu::Snafu;

use super::keys::rule_of;
use crate::error::{Error, ErrorKind};

/// Why a configuration could not be loaded or is invalid.
///
/// Reached through [`std::error::Error::source`] of an [`Error`] of kind
/// [`ErrorKind::Config`].
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum ConfigError {
    /// A key that does not exist.
    #[snafu(display("unknown key {key}{origin}: check its spelling against docs/configuration.md, or remove it"))]
    UnknownKey {
        /// The full dotted key.
        key: String,
        /// Where it was set, e.g. ` (from environment variable SOCKET__FOO)`.
        origin: String,
    },
    /// A value of the wrong type or outside its rule.
    #[snafu(display("invalid value {value} for key {key}{origin}: expected {rule}"))]
    InvalidValue {
        /// The full dotted key.
        key: String,
        /// The value as given.
        value: String,
        /// What a valid value is.
        rule: String,
        /// Where it was set.
        origin: String,
    },
    /// A configuration file that was asked for does not exist.
    #[snafu(display("configuration file {} does not exist{origin}: create it or point to another file", path.display()))]
    FileNotFound {
        /// The path.
        path: PathBuf,
        /// Who named it, e.g. ` (named by SOCKET_CONFIG)`.
        origin: String,
    },
    /// The file is not valid TOML (a key given twice included).
    #[snafu(display("cannot read configuration file {}: {source}", path.display()))]
    ReadFile {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: config::ConfigError,
    },
    /// The file could not be read (a directory, no permission, an I/O error).
    #[snafu(display("cannot read configuration file {}: {source}", path.display()))]
    ReadIo {
        /// The path, absolute.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is longer than [`MAX_CONFIG_FILE_LEN`](super::MAX_CONFIG_FILE_LEN).
    #[snafu(display(
        "cannot read configuration file {}: it is longer than {limit} bytes, the limit for a configuration file",
        path.display()
    ))]
    FileTooLarge {
        /// The path, absolute.
        path: PathBuf,
        /// The limit in bytes.
        limit: usize,
    },
    /// The layers could not be merged (e.g. an override key that is not a valid path).
    #[snafu(display("cannot build the configuration: {source}"))]
    Build {
        /// The underlying error.
        source: config::ConfigError,
    },
    /// The configuration could not be written as TOML.
    #[snafu(display("cannot write the configuration as TOML: {source}"))]
    Serialize {
        /// The underlying error.
        source: toml::ser::Error,
    },
}

impl ConfigError {
    /// The key this error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. } | ConfigError::InvalidValue { key, .. } => Some(key),
            _ => None,
        }
    }

    pub(super) fn with_origin(mut self, origins: &BTreeMap<String, String>) -> Self {
        if let ConfigError::InvalidValue { key, origin, .. } = &mut self {
            if origin.is_empty() {
                if let Some(o) = origins.get(key.as_str()) {
                    origin.clone_from(o);
                }
            }
        }
        self
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::new(ErrorKind::Config, "invalid configuration").with_source(e)
    }
}

pub(super) fn invalid(key: &str, value: impl fmt::Display) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_owned(),
        value: value.to_string(),
        rule: rule_of(key).to_owned(),
        origin: String::new(),
    }
}

/// `value` as written in a message: strings quoted.
pub(super) fn show_str(value: &str) -> String {
    format!("{value:?}")
}
