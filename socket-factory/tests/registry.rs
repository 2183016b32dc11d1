//! The default registry holds exactly the compiled-in transports; lookups explain what is missing.

use socket_factory::{default_registry, transport, ErrorKind};

use crate::util::*;

#[test]
fn default_registry_has_exactly_the_enabled_features() {
    let mut expected = Vec::new();
    if cfg!(feature = "tcp") {
        expected.push("tcp");
    }
    if cfg!(feature = "unix") {
        expected.push("unix");
    }
    assert_eq!(default_registry().schemes(), expected);
}

#[test]
fn lookup_is_case_insensitive() -> TestResult {
    let registry = default_registry();
    for (scheme, enabled) in [("unix", cfg!(feature = "unix")), ("tcp", cfg!(feature = "tcp"))] {
        for spelling in [scheme.to_owned(), scheme.to_ascii_uppercase()] {
            match transport(&registry, &spelling) {
                Ok(found) => {
                    assert!(enabled, "{spelling} found without its feature");
                    assert_eq!(found.scheme(), scheme);
                }
                Err(e) => {
                    assert!(!enabled, "{spelling} not found although its feature is on: {e}");
                    assert_eq!(e.kind(), ErrorKind::Config);
                }
            }
        }
    }
    Ok(())
}

/// A built-in transport whose feature is off names the feature and lists what is available.
#[test]
fn missing_feature_is_named() -> TestResult {
    let registry = default_registry();
    let available = match registry.schemes().join(", ") {
        s if s.is_empty() => "none".to_owned(),
        s => s,
    };
    for scheme in ["unix", "tcp"] {
        if registry.contains(scheme) {
            continue;
        }
        let expected = format!(
            "transport \"{scheme}\" is not compiled in: enable the \"{scheme}\" feature of socket-factory (available: {available})"
        );
        assert_err(transport(&registry, scheme), ErrorKind::Config, &[&expected])?;
    }
    Ok(())
}

#[test]
fn unknown_scheme_lists_available() -> TestResult {
    let registry = default_registry();
    let available = registry.schemes().join(", ");
    let available = if available.is_empty() { "none".to_owned() } else { available };
    assert_err(
        transport(&registry, "carrier-pigeon"),
        ErrorKind::Config,
        &["unknown transport \"carrier-pigeon\"", &format!("(available: {available})")],
    )
}

/// A built-in scheme missing from a hand-made registry (feature on) says how to get it.
#[test]
fn built_in_missing_from_custom_registry() -> TestResult {
    let empty = socket_factory::TransportRegistry::new();
    for scheme in ["unix", "tcp"] {
        let needle =
            if default_registry().contains(scheme) { "default_registry()" } else { "feature of socket-factory" };
        assert_err(transport(&empty, scheme), ErrorKind::Config, &[needle, "(available: none)"])?;
    }
    Ok(())
}
