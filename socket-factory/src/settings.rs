//! Settings against a registry: every transport's table checked against the keys it declares,
//! the configuration reference rendered from those declarations, and the declared defaults.

use std::sync::Arc;

use socket_core::{config, Config, Error, ErrorKind, Result, Transport, TransportRegistry};

use crate::registry::{available, transport, BUILT_IN};

/// Checks `config` against `registry`: every plug-in table `[socket.<scheme>]` must belong to a
/// registered transport, and the transport of `socket.transport` and those of the plug-in
/// tables validate their own settings.
///
/// # Errors
///
/// [`ErrorKind::Config`] naming the offending table, key or transport.
///
/// # Examples
///
/// ```
/// let registry = socket_factory::default_registry();
/// let mut config = socket_factory::Config::default();
/// config.socket.plugins.insert("carrier-pigeon".to_owned(), Default::default());
/// let err = socket_factory::validate_config(&registry, &config).unwrap_err();
/// assert!(err.to_string().contains("unknown table [socket.carrier-pigeon]"));
/// ```
pub fn validate_config(registry: &TransportRegistry, config: &Config) -> Result<()> {
    validate_for(registry, &config.socket.transport, config).map(drop)
}

/// Checks the table `[socket.<scheme>]` of every transport in `registry` against the keys that
/// transport declares ([`Transport::settings`]), with the errors and wording of the core keys.
/// This is the part of [`validate_config`] that looks at values only (no file system, no
/// choice of transport): `socketctl config` runs it on the configuration it prints.
///
/// # Errors
///
/// [`ErrorKind::Config`] naming the first invalid key, its value and its rule.
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "unix")] {
/// let registry = socket_factory::default_registry();
/// let mut config = socket_factory::Config::default();
/// config.socket.unix.socket_permissions = "0400".to_owned();
/// let err = socket_factory::check_settings(&registry, &config).unwrap_err();
/// assert!(err.to_string().contains("socket.unix.socket_permissions"));
/// # }
/// ```
pub fn check_settings(registry: &TransportRegistry, config: &Config) -> Result<()> {
    for scheme in registry.schemes() {
        let transport = registry.get(&scheme)?;
        socket_core::config::check_transport_table(&scheme, transport.settings(), config)?;
    }
    Ok(())
}

/// The schemes of `registry` in the order of the configuration reference: the built-in
/// transports first (`unix`, `tcp`), then the others sorted.
fn reference_order(registry: &TransportRegistry) -> Vec<String> {
    let mut schemes = registry.schemes();
    schemes.sort_by_key(|s| (BUILT_IN.iter().position(|(name, _)| name == s).unwrap_or(BUILT_IN.len()), s.clone()));
    schemes
}

/// The configuration reference `docs/configuration.md`: the core keys and the keys every
/// transport of `registry` declares ([`Transport::settings`]), built-in and plug-in alike
/// (`cargo xtask doc` writes it from [`default_registry`](crate::default_registry) with both transports compiled in).
///
/// # Examples
///
/// ```
/// use socket_factory::config::{KeySpec, ValueType};
/// use socket_factory::{Config, Connection, Endpoint, EventName, Listener, Result, Transport};
///
/// #[derive(Debug)]
/// struct Pigeon;
///
/// static PIGEON: &[KeySpec] =
///     &[KeySpec::new("speed", ValueType::Integer, "an integer in 1..=120", "Birds per minute.").with_bounds(1, 120)];
///
/// #[async_trait::async_trait]
/// impl Transport for Pigeon {
///     fn scheme(&self) -> &str { "pigeon" }
///     fn settings(&self) -> &'static [KeySpec] { PIGEON }
///     async fn bind(&self, _: &EventName, _: &Config) -> Result<Box<dyn Listener>> { Err(no_pigeon()) }
///     fn endpoints(&self, _: &EventName, _: &Config) -> Result<Vec<Endpoint>> { Ok(Vec::new()) }
///     async fn connect(&self, _: &Endpoint, _: &Config) -> Result<Connection> { Err(no_pigeon()) }
/// }
///
/// // Only the settings matter here: the transport itself never carries a message.
/// fn no_pigeon() -> socket_factory::Error {
///     socket_factory::Error::new(socket_factory::ErrorKind::Connection, "no pigeon available")
/// }
///
/// let registry = socket_factory::default_registry();
/// registry.register(Pigeon);
/// let md = socket_factory::reference_markdown(&registry);
/// assert!(md.contains("## `[socket.pigeon]`"));
/// assert!(md.contains("| [`speed`](#socketpigeonspeed) | integer | absent | `SOCKET__PIGEON__SPEED` | an integer in 1..=120 |"));
/// ```
pub fn reference_markdown(registry: &TransportRegistry) -> String {
    let transports: Vec<(String, &'static [config::KeySpec])> = reference_order(registry)
        .into_iter()
        .filter_map(|scheme| {
            let settings = registry.get(&scheme).ok()?.settings();
            Some((scheme, settings))
        })
        .collect();
    let sections: Vec<(&str, &[config::KeySpec])> = transports.iter().map(|(s, k)| (s.as_str(), *k)).collect();
    config::reference_markdown_with(&sections)
}

/// `config` with the declared defaults ([`Transport::settings`]) of every plug-in transport of
/// `registry` written into its table `[socket.<scheme>]`, where the table does not set them:
/// the effective settings, as `socketctl config` prints them. The built-in tables are full
/// already.
///
/// # Examples
///
/// ```
/// let registry = socket_factory::default_registry();
/// let config = socket_factory::Config::default();
/// assert_eq!(socket_factory::with_declared_defaults(&registry, &config), config);
///
/// // A plug-in's keys are shown with their defaults, like the built-in tables'.
/// socket_tests::memory::register(&registry);
/// let shown = socket_factory::with_declared_defaults(&registry, &config);
/// assert_eq!(shown.socket.plugins["memory"]["max_connections"].as_integer(), Some(10));
/// assert!(shown.to_toml_string()?.contains("[socket.memory]"));
/// # Ok::<(), socket_factory::Error>(())
/// ```
pub fn with_declared_defaults(registry: &TransportRegistry, config: &Config) -> Config {
    let mut config = config.clone();
    for scheme in registry.schemes() {
        if BUILT_IN.iter().any(|(name, _)| *name == scheme) {
            continue;
        }
        let Ok(transport) = registry.get(&scheme) else { continue };
        let defaults: Vec<_> =
            transport.settings().iter().filter_map(|k| Some((k.name.to_owned(), k.default_value()?))).collect();
        if defaults.is_empty() {
            continue;
        }
        let table = config.socket.plugins.entry(scheme).or_default();
        for (name, value) in defaults {
            table.entry(name).or_insert(value);
        }
    }
    config
}

pub(crate) fn validate_for(registry: &TransportRegistry, scheme: &str, config: &Config) -> Result<Arc<dyn Transport>> {
    check_settings(registry, config)?;
    for table in config.socket.plugins.keys() {
        let lower = table.to_ascii_lowercase();
        if BUILT_IN.iter().any(|(name, _)| *name == lower) {
            continue;
        }
        match registry.get(table) {
            Ok(plugin) => plugin.validate(config)?,
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "unknown table [socket.{table}]: no transport {table:?} is registered (available: {}); \
                         remove the table or register its transport",
                        available(registry)
                    ),
                ))
            }
        }
    }
    let chosen = transport(registry, scheme)?;
    chosen.validate(config)?;
    Ok(chosen)
}
