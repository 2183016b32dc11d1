//! Socket paths, endpoints and settings validation (S1, S2).

use socket_core::config::ConfigError;
use socket_core::Config;
use socket_core::{ErrorKind, EventName, Transport};
use socket_unix::{check_permissions, parse_permissions, socket_path, UnixTransport, MAX_PATH_LEN, SETTINGS};

use crate::util::*;

#[test]
fn endpoint_is_the_socket_path_and_explicit() -> TestResult {
    let config = config_in(std::path::Path::new("/run/user/1000/sockets"));
    let endpoints = UnixTransport.endpoints(&event("wallpaper_change"), &config)?;
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0].address, "/run/user/1000/sockets/wallpaper_change.sock");
    assert!(endpoints[0].explicit);
    assert_eq!(UnixTransport.scheme(), "unix");
    Ok(())
}

/// S1: names that could escape the directory never become an `EventName`, the only way to reach
/// the transport; the longest valid name works end to end.
#[test]
fn invalid_event_names_cannot_reach_the_transport() -> TestResult {
    let bad = ["../x", "/abs", "a/b", "", ".hidden", "nul\0byte", "caf\u{e9}", &"x".repeat(65)];
    for name in bad {
        assert_err(EventName::new(name), ErrorKind::Validation, &["event name"])?;
    }
    let (tmp, config) = fresh()?;
    let longest = event(&"a".repeat(64));
    let listener = bind(&longest, &config)?;
    assert_eq!(entries(&tmp.path().join("sockets"))?, [format!("{longest}.lock"), format!("{longest}.sock")]);
    listener.close()?;
    Ok(())
}

/// S2: a path of 108 bytes is refused with its length, before any file system call; 107 bytes binds.
#[test]
fn socket_path_too_long_is_a_validation_error() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let ev = event("ev");
    // "{dir}/ev.sock": dir + 8 bytes.
    let base = tmp.path().as_os_str().len() + 1;
    let pad = |total: usize| tmp.path().join("d".repeat(total - 8 - base));

    let too_long = pad(MAX_PATH_LEN + 1);
    let config = config_in(&too_long);
    let expected = format!("{}/ev.sock", too_long.display());
    assert_eq!(expected.len(), 108);
    assert_err(socket_path(&config, &ev), ErrorKind::Validation, &[&expected, "108 bytes"])?;
    assert_err(UnixTransport.endpoints(&ev, &config), ErrorKind::Validation, &["108 bytes"])?;
    assert_err(bind(&ev, &config), ErrorKind::Validation, &[&expected, "108 bytes"])?;
    assert!(!too_long.exists(), "nothing is created for a path that is too long");

    let fits = pad(MAX_PATH_LEN);
    let listener = bind(&ev, &config_in(&fits))?;
    assert_eq!(listener.address().len(), 107);
    listener.close()?;
    Ok(())
}

#[test]
fn settings_are_validated() -> TestResult {
    let ok = config_in(std::path::Path::new("/tmp/sockets"));
    UnixTransport.validate(&ok)?;

    let relative = config_in(std::path::Path::new("sockets"));
    assert_err(UnixTransport.validate(&relative), ErrorKind::Config, &["socket.socket_dir", "absolute"])?;

    let long = config_in(&std::path::Path::new("/").join("x".repeat(101)));
    assert_err(UnixTransport.validate(&long), ErrorKind::Config, &["socket.socket_dir", "too long"])?;

    for (value, rule) in
        [("rw", "octal"), ("0800", "octal"), ("", "octal"), ("1600", "at most"), ("0400", "owner read and write")]
    {
        let mut config = ok.clone();
        config.socket.unix.socket_permissions = value.to_owned();
        assert_err(UnixTransport.validate(&config), ErrorKind::Config, &["socket.unix.socket_permissions", rule])?;
    }
    assert_eq!(parse_permissions("0600")?, 0o600);
    assert_eq!(parse_permissions("660")?, 0o660);
    assert_eq!(parse_permissions("0o666")?, 0o666);
    Ok(())
}

#[test]
fn socket_permissions_that_validate_are_the_ones_bind_accepts() {
    // Every 1-4 digit octal string and a few others: configuration validation and the
    // transport's parser (used at bind) agree on each, mode included.
    let mut values: Vec<String> = (0..=0o7777u32).map(|m| format!("{m:04o}")).collect();
    values.extend((0..=0o777u32).map(|m| format!("{m:o}")));
    values.extend(["0o600", "0o400", "", "rw", "0800", " 0600", "0600 "].map(str::to_owned));
    for value in values {
        let mut config = socket_core::Config::default();
        config.socket.unix.socket_permissions = value.clone();
        let validates = UnixTransport.validate(&config).is_ok();
        let binds = parse_permissions(&value);
        assert_eq!(validates, binds.is_ok(), "{value:?}: validate {validates}, bind {binds:?}");
        if let Ok(mode) = binds {
            assert_eq!(check_permissions(&value), Ok(mode), "{value:?}");
            assert_eq!(mode & 0o600, 0o600, "{value:?}: the owner reads and writes");
        }
    }
}

/// Validation of `socket_permissions` through the Unix transport's key declaration: the value,
/// the key and the declared rule, worded like a core key's error.
fn assert_permissions_refused(value: &str) {
    let mut c = Config::default();
    c.socket.unix.socket_permissions = value.into();
    let err = UnixTransport.validate(&c).expect_err("invalid value");
    let e = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<ConfigError>()).expect("a ConfigError");
    assert_eq!(e.key(), Some("socket.unix.socket_permissions"));
    let rule = SETTINGS.iter().find(|k| k.name == "socket_permissions").map(|k| k.rule).unwrap_or_default();
    let shown = format!("{value:?}");
    assert!(
        err.to_string().starts_with(&format!(
            "invalid configuration: invalid value {shown} for key socket.unix.socket_permissions: expected {rule}"
        )),
        "{err}"
    );
}

#[test]
fn socket_permissions_must_be_octal_and_let_the_owner_read_and_write() {
    for bad in ["0999", "rw", "", "01777"] {
        assert_permissions_refused(bad);
    }
    // The owner must be able to read and write its socket: the rule bind applies too.
    for bad in ["0", "0400", "0200", "0066", "\"0600\""] {
        assert_permissions_refused(bad);
        assert_eq!(check_permissions(bad).ok(), None, "{bad}");
    }
    for (ok, mode) in
        [("0600", 0o600), ("600", 0o600), ("0660", 0o660), ("0o644", 0o644), ("0700", 0o700), ("0777", 0o777)]
    {
        assert_eq!(check_permissions(ok), Ok(mode), "{ok}");
        let mut c = Config::default();
        c.socket.unix.socket_permissions = ok.into();
        c.validate().unwrap();
        UnixTransport.validate(&c).unwrap();
        assert_eq!(parse_permissions(&c.socket.unix.socket_permissions).unwrap(), mode);
    }
}

#[test]
fn declared_keys_match_the_core_key_table() {
    // Until the core stops typing [socket.unix] itself, its key table and the transport's
    // declaration describe the same keys: same type, rule, help text and default.
    let core: Vec<_> = socket_core::config::KEYS.iter().filter(|k| k.key.starts_with("socket.unix.")).collect();
    assert_eq!(core.len(), SETTINGS.len());
    for spec in SETTINGS {
        let key = spec.key("unix");
        let info = socket_core::config::key_info(&key).unwrap_or_else(|| panic!("{key} not in KEYS"));
        assert_eq!((info.ty, info.rule, info.description), (spec.ty, spec.rule, spec.description), "{key}");
        assert_eq!(info.default_toml(), spec.default_value().map(|v| v.to_string()), "{key}");
        assert_eq!(info.env_var(), spec.env_var("unix"));
    }
}
