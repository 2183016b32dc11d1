//! Socket paths, endpoints and settings validation (S1, S2).

use socket_core::{ErrorKind, EventName, Transport};
use socket_unix::{parse_permissions, socket_path, UnixTransport, MAX_PATH_LEN};

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
fn invalid_names_cannot_reach_the_transport() -> TestResult {
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
fn path_too_long_is_a_validation_error() -> TestResult {
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
        let validates = config.validate().is_ok();
        let binds = parse_permissions(&value);
        assert_eq!(validates, binds.is_ok(), "{value:?}: validate {validates}, bind {binds:?}");
        if let Ok(mode) = binds {
            assert_eq!(config.socket.unix.socket_mode().ok(), Some(mode), "{value:?}");
            assert_eq!(mode & 0o600, 0o600, "{value:?}: the owner reads and writes");
        }
    }
}
