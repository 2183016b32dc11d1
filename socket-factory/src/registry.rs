//! The compiled-in transports: [`default_registry`] and [`transport`], whose errors name the
//! feature to enable.

use std::sync::Arc;

use socket_core::{Error, ErrorKind, Result, Transport, TransportRegistry};

/// Transports this crate knows, each compiled in by the feature of the same name, and whether it is.
pub(crate) const BUILT_IN: [(&str, bool); 2] = [("unix", cfg!(feature = "unix")), ("tcp", cfg!(feature = "tcp"))];

/// A registry holding every transport compiled into this crate (see the feature table in the
/// [crate documentation](crate)).
///
/// # Examples
///
/// ```
/// let registry = socket_factory::default_registry();
/// assert_eq!(registry.contains("unix"), cfg!(feature = "unix"));
/// assert_eq!(registry.contains("tcp"), cfg!(feature = "tcp"));
/// ```
pub fn default_registry() -> TransportRegistry {
    let registry = TransportRegistry::new();
    #[cfg(feature = "unix")]
    socket_unix::register(&registry);
    #[cfg(feature = "tcp")]
    socket_tcp::register(&registry);
    registry
}

pub(crate) fn available(registry: &TransportRegistry) -> String {
    let schemes = registry.schemes();
    if schemes.is_empty() {
        "none".to_owned()
    } else {
        schemes.join(", ")
    }
}

/// The transport registered under `scheme` (case-insensitive).
///
/// # Errors
///
/// [`ErrorKind::Config`]: for `"unix"` or `"tcp"` when its feature is off, naming the feature to
/// enable; otherwise naming the unknown scheme. Both list the available schemes.
///
/// # Examples
///
/// ```
/// let registry = socket_factory::default_registry();
/// if !cfg!(feature = "tcp") {
///     let err = socket_factory::transport(&registry, "TCP").unwrap_err();
///     assert!(err.to_string().contains("enable the \"tcp\" feature of socket-factory"));
/// }
/// ```
pub fn transport(registry: &TransportRegistry, scheme: &str) -> Result<Arc<dyn Transport>> {
    if let Ok(transport) = registry.get(scheme) {
        return Ok(transport);
    }
    let lower = scheme.to_ascii_lowercase();
    let message = match BUILT_IN.iter().find(|(name, _)| *name == lower) {
        Some((name, false)) => format!(
            "transport {name:?} is not compiled in: enable the {name:?} feature of socket-factory (available: {})",
            available(registry)
        ),
        Some((name, _)) => format!(
            "transport {name:?} is not registered in this registry: start from socket_factory::default_registry() \
             (available: {})",
            available(registry)
        ),
        None => format!(
            "unknown transport {scheme:?}: register a plug-in transport under that scheme or set socket.transport \
             to one of the available ones (available: {})",
            available(registry)
        ),
    };
    Err(Error::new(ErrorKind::Config, message))
}
