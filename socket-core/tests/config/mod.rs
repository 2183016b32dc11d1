//! Configuration: layers, discovery, environment parsing, unknown keys,
//! plug-in tables, one test per validation rule, serialisation.

use std::collections::BTreeSet;
use std::path::Path;

use socket_core::config::{key_info, ConfigError, ConfigLoader, KEYS};
use socket_core::{Config, Error, ErrorKind};

const SEED: &str = r#"[socket]
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
"#;

/// A loader that sees only `env` (never the process environment) and no
/// user configuration directory.
fn loader(env: &[(&str, &str)]) -> ConfigLoader {
    ConfigLoader::new().env(env.iter().map(|(k, v)| (k.to_string(), v.to_string()))).no_file_discovery()
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write test file");
    path
}

fn config_error(err: &Error) -> &ConfigError {
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    std::error::Error::source(err).and_then(|s| s.downcast_ref::<ConfigError>()).expect("a ConfigError source")
}

/// Loads `toml` from a file and returns the error.
fn file_error(toml: &str) -> Error {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "settings.toml", toml);
    loader(&[]).file(&path).load().expect_err("the file must be rejected")
}

#[test]
fn defaults_are_valid_and_match_the_origin() {
    let c = Config::default();
    c.validate().expect("defaults are valid");
    let s = &c.socket;
    assert_eq!(s.socket_dir, Path::new("/tmp/sockets"));
    assert_eq!((s.default_timeout, s.buffer_size, s.timezone.as_str()), (5.0, 4096, "UTC"));
    assert_eq!((s.message_queue_size, s.blocking_mode, s.allow_client_send), (100, false, true));
    assert_eq!(
        (s.unix.max_connections, s.unix.socket_permissions.as_str(), s.unix.auto_remove_socket),
        (10, "0600", true)
    );
    assert_eq!((s.tcp.host.as_str(), s.tcp.port_range_start, s.tcp.port_range_end), ("127.0.0.1", 9000, 9100));
    assert_eq!(s.tcp.max_connections, 10);
    assert_eq!(loader(&[]).load().unwrap(), c, "no file, no environment: the defaults");
}

#[test]
fn the_seed_toml_loads_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "settings.toml", SEED);
    let c = loader(&[]).file(&path).load().expect("the seed configuration loads");
    assert_eq!(c, Config::default());
}

#[test]
fn layers_file_then_environment_then_code() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "s.toml",
        "[socket]\nbuffer_size = 1\nmessage_queue_size = 2\nrelay = true\n[socket.tcp]\nport = 9001\nhost = \"::1\"\n",
    );
    let c = loader(&[("SOCKET__MESSAGE_QUEUE_SIZE", "20"), ("SOCKET__TCP__PORT", "9002")])
        .file(&path)
        .set("socket.tcp.port", 9003)
        .load()
        .unwrap();
    assert_eq!(c.socket.buffer_size, 1, "from the file");
    assert!(c.socket.relay, "from the file");
    assert_eq!(c.socket.tcp.host, "::1", "from the file");
    assert_eq!(c.socket.message_queue_size, 20, "environment over file");
    assert_eq!(c.socket.tcp.port, Some(9003), "code over environment");
    assert_eq!(c.socket.tcp.port_range_start, 9000, "default kept");
}

#[test]
fn environment_values_are_parsed_to_their_types() {
    let c = loader(&[
        ("SOCKET__SOCKET_DIR", "/run/user/1000/sockets"),
        ("SOCKET__UNIX__MAX_CONNECTIONS", "20"),
        ("SOCKET__UNIX__SOCKET_PERMISSIONS", "0660"),
        ("SOCKET__UNIX__ALLOWED_UIDS", "1000, 1001"),
        ("SOCKET__TCP__PORT", "9001"),
        ("SOCKET__TCP__ALLOW_REMOTE", "TRUE"),
        ("SOCKET__BLOCKING_MODE", "1"),
        ("SOCKET__DEFAULT_TIMEOUT", "2.5"),
        ("SOCKET__HELLO_GRACE", "1"),
        ("SOCKET__RECONNECT_MAX_RETRIES", "3"),
        ("SOCKET__TIMEZONE", "Europe/Berlin"),
        ("SOCKET__TRANSPORT", "tcp"),
        ("SOCKET__RETAIN_LAST", ""), // empty: unset
        ("OTHER_VARIABLE", "ignored"),
        ("SOCKET_CONFIG_NOT_A_KEY", "ignored"),
    ])
    .load()
    .unwrap();
    let s = &c.socket;
    assert_eq!(s.socket_dir, Path::new("/run/user/1000/sockets"));
    assert_eq!(s.unix.max_connections, 20);
    assert_eq!(s.unix.socket_permissions, "0660", "kept as a string, leading zero included");
    assert_eq!(s.unix.allowed_uids, vec![1000, 1001]);
    assert_eq!(s.tcp.port, Some(9001));
    assert!(s.tcp.allow_remote);
    assert!(s.blocking_mode);
    assert_eq!(s.default_timeout, 2.5);
    assert_eq!(s.hello_grace, 1.0);
    assert_eq!(s.reconnect_max_retries, Some(3));
    assert_eq!(s.timezone, "Europe/Berlin");
    assert_eq!(s.transport, "tcp");
    assert!(!s.retain_last);
}

#[test]
fn code_overrides_accept_strings_like_the_command_line() {
    let c = loader(&[])
        .set("socket.tcp.port", "9005")
        .set("socket.socket_dir", "/tmp/x")
        .set("socket.relay", true)
        .set("socket.default_timeout", 1)
        .load()
        .unwrap();
    assert_eq!(c.socket.tcp.port, Some(9005));
    assert_eq!(c.socket.socket_dir, Path::new("/tmp/x"));
    assert!(c.socket.relay);
    assert_eq!(c.socket.default_timeout, 1.0);
}

#[test]
fn an_invalid_environment_value_names_the_variable() {
    let err = loader(&[("SOCKET__TCP__PORT", "abc")]).load().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "invalid configuration: invalid value \"abc\" for key socket.tcp.port (from environment variable SOCKET__TCP__PORT): expected {}",
            key_info("socket.tcp.port").unwrap().rule
        )
    );
    assert_eq!(config_error(&err).key(), Some("socket.tcp.port"));
    // A rule violation found by validation still says where the value came from.
    let err = loader(&[("SOCKET__BUFFER_SIZE", "0")]).load().unwrap_err();
    assert!(err.to_string().contains("(from environment variable SOCKET__BUFFER_SIZE)"), "{err}");
    let err = loader(&[]).set("socket.buffer_size", 0).load().unwrap_err();
    assert!(err.to_string().contains("(set in code or on the command line)"), "{err}");
}

// ---- file discovery ----

#[test]
fn socket_config_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "mine.toml", "[socket]\nbuffer_size = 77\n");
    let l = loader(&[("SOCKET_CONFIG", path.to_str().unwrap())]);
    assert_eq!(l.config_file(), Some((path.clone(), "named by SOCKET_CONFIG")));
    assert_eq!(l.load().unwrap().socket.buffer_size, 77);
    // An explicit file wins over SOCKET_CONFIG.
    let other = write(dir.path(), "other.toml", "[socket]\nbuffer_size = 88\n");
    assert_eq!(l.file(&other).load().unwrap().socket.buffer_size, 88);
}

#[test]
fn xdg_config_home_then_home() {
    let dir = tempfile::tempdir().unwrap();
    let xdg = dir.path().join("xdg");
    let home = dir.path().join("home");
    std::fs::create_dir_all(xdg.join("socket")).unwrap();
    std::fs::create_dir_all(home.join(".config/socket")).unwrap();
    write(&xdg.join("socket"), "settings.toml", "[socket]\nbuffer_size = 1\n");
    write(&home.join(".config/socket"), "settings.toml", "[socket]\nbuffer_size = 2\n");
    let env = |pairs: &[(&str, &Path)]| {
        ConfigLoader::new().env(pairs.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string())))
    };
    let c = env(&[("XDG_CONFIG_HOME", &xdg), ("HOME", &home)]).load().unwrap();
    assert_eq!(c.socket.buffer_size, 1, "XDG_CONFIG_HOME first");
    let c = env(&[("HOME", &home)]).load().unwrap();
    assert_eq!(c.socket.buffer_size, 2, "then ~/.config");
    // A missing discovered file is fine: the defaults.
    let empty = dir.path().join("empty");
    let c = env(&[("XDG_CONFIG_HOME", &empty), ("HOME", &empty)]).load().unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(env(&[("HOME", &empty)]).config_file(), None);
    // Discovery can be turned off.
    let c = env(&[("HOME", &home)]).no_file_discovery().load().unwrap();
    assert_eq!(c.socket.buffer_size, 4096);
}

#[test]
fn a_named_file_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let err = loader(&[]).file(&missing).load().unwrap_err();
    assert!(matches!(config_error(&err), ConfigError::FileNotFound { .. }));
    assert!(err.to_string().contains(&missing.display().to_string()), "{err}");
    assert!(err.to_string().contains("given explicitly"), "{err}");
    let err = loader(&[("SOCKET_CONFIG", missing.to_str().unwrap())]).load().unwrap_err();
    assert!(err.to_string().contains("named by SOCKET_CONFIG"), "{err}");
}

#[test]
fn invalid_toml_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "bad.toml", "[socket\nbuffer_size = ");
    let err = loader(&[]).file(&path).load().unwrap_err();
    assert!(matches!(config_error(&err), ConfigError::ReadFile { .. }));
    assert!(err.to_string().starts_with("invalid configuration: cannot read configuration file"), "{err}");
    assert!(err.to_string().contains("bad.toml"), "{err}");
}

// ---- unknown keys and plug-in tables ----

#[test]
fn unknown_keys_are_rejected_by_name() {
    for (toml, key) in [
        ("[socket]\nbuffer_sise = 1\n", "socket.buffer_sise"),
        ("[socket.unix]\nmax_conections = 1\n", "socket.unix.max_conections"),
        ("[socket.tcp]\nports = 1\n", "socket.tcp.ports"),
        ("[other]\nx = 1\n", "other"),
        ("top = 1\n", "top"),
    ] {
        let err = file_error(toml);
        assert!(matches!(config_error(&err), ConfigError::UnknownKey { .. }), "{err}");
        assert_eq!(config_error(&err).key(), Some(key));
        assert!(err.to_string().contains(&format!("unknown key {key} (from ")), "{err}");
    }
    let err = loader(&[("SOCKET__FOO", "1")]).load().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration: unknown key socket.foo (from environment variable SOCKET__FOO): check its spelling against docs/configuration.md, or remove it"
    );
    let err = loader(&[]).set("socket.unix.nope", 1).load().unwrap_err();
    assert_eq!(config_error(&err).key(), Some("socket.unix.nope"));
}

#[test]
fn plugin_tables_are_kept_raw() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "s.toml",
        "[socket.memory]\nmax_connections = 3\nname = \"x\"\n[socket.memory.inner]\na = [1, 2]\n",
    );
    let c = loader(&[
        ("SOCKET__QUIC__MAX_CONNECTIONS", "4"),
        ("SOCKET__QUIC__RATE", "1.5"),
        ("SOCKET__QUIC__SECURE", "true"),
        ("SOCKET__QUIC__PEER", "host-1"),
    ])
    .file(&path)
    .load()
    .unwrap();
    let memory = &c.socket.plugins["memory"];
    assert_eq!(memory["max_connections"].as_integer(), Some(3));
    assert_eq!(memory["name"].as_str(), Some("x"));
    assert_eq!(memory["inner"]["a"].as_array().map(Vec::len), Some(2));
    assert_eq!(c.max_connections("memory"), 3);
    // From the environment: text that spells a TOML scalar takes its type, as it would in a file.
    let quic = &c.socket.plugins["quic"];
    assert_eq!(quic["max_connections"].as_integer(), Some(4));
    assert_eq!(quic["rate"].as_float(), Some(1.5));
    assert_eq!(quic["secure"].as_bool(), Some(true));
    assert_eq!(quic["peer"].as_str(), Some("host-1"));
    assert_eq!(c.max_connections("quic"), 4);
    assert_eq!(c.max_connections("unknown"), 10);
    assert_eq!(c.max_connections("unix"), 10);
    // Written out beside unix and tcp.
    let table = c.to_table().unwrap();
    assert_eq!(table["socket"]["memory"]["name"].as_str(), Some("x"));
}

#[test]
fn plugin_table_names_must_be_schemes() {
    let err = file_error("[socket.Bad_Name]\nx = 1\n");
    assert_eq!(config_error(&err).key(), Some("socket.Bad_Name"));
}

#[test]
fn core_tables_must_be_tables() {
    let err = file_error("[socket]\nunix = 3\n");
    assert_eq!(config_error(&err).key(), Some("socket.unix"));
    assert!(err.to_string().contains("expected a table of settings ([socket.unix])"), "{err}");
}

#[test]
fn wrong_types_in_the_file_name_key_value_and_rule() {
    for (toml, key, value) in [
        ("[socket]\nbuffer_size = \"big\"\n", "socket.buffer_size", "\"big\""),
        ("[socket]\nbuffer_size = -1\n", "socket.buffer_size", "-1"),
        ("[socket]\nbuffer_size = 1.5\n", "socket.buffer_size", "1.5"),
        ("[socket]\nblocking_mode = 3\n", "socket.blocking_mode", "3"),
        ("[socket]\ndefault_timeout = \"soon\"\n", "socket.default_timeout", "\"soon\""),
        ("[socket]\ntimezone = 1\n", "socket.timezone", "1"),
        ("[socket.tcp]\nport = 70000\n", "socket.tcp.port", "70000"),
        ("[socket.tcp]\nport_range_end = \"x\"\n", "socket.tcp.port_range_end", "\"x\""),
        ("[socket.unix]\nallowed_uids = [-1]\n", "socket.unix.allowed_uids", "an array"),
        ("[socket]\nreconnect_max_retries = 5000000000\n", "socket.reconnect_max_retries", "5000000000"),
    ] {
        let err = file_error(toml);
        let rule = key_info(key).unwrap().rule;
        let text = err.to_string();
        assert!(
            text.contains(&format!("invalid value {value} for key {key} (from "))
                && text.ends_with(&format!("expected {rule}")),
            "{toml}: {text}"
        );
    }
}

// ---- one test per validation rule ----

/// Sets one bad value, validates, and checks the message names the key,
/// shows the value and quotes the rule of the key table.
fn assert_rule(mutate: impl FnOnce(&mut Config), key: &str, shown: &str) {
    let mut c = Config::default();
    mutate(&mut c);
    let err = c.validate().expect_err("invalid value");
    let e = config_error(&err);
    assert_eq!(e.key(), Some(key));
    let rule = key_info(key).map(|k| k.rule).unwrap_or("a plug-in transport table");
    assert!(
        err.to_string()
            .starts_with(&format!("invalid configuration: invalid value {shown} for key {key}: expected {rule}")),
        "{err}"
    );
}

#[test]
fn rule_transport_name() {
    assert_rule(|c| c.socket.transport = String::new(), "socket.transport", "\"\"");
    assert_rule(|c| c.socket.transport = "Unix".into(), "socket.transport", "\"Unix\"");
    assert_rule(|c| c.socket.transport = "a b".into(), "socket.transport", "\"a b\"");
    let mut c = Config::default();
    c.socket.transport = "my-transport_2".into();
    c.validate().unwrap();
}

#[test]
fn rule_socket_dir_not_empty() {
    assert_rule(|c| c.socket.socket_dir = "".into(), "socket.socket_dir", "\"\"");
}

#[test]
fn rule_timeouts_positive() {
    assert_rule(|c| c.socket.default_timeout = 0.0, "socket.default_timeout", "0");
    assert_rule(|c| c.socket.default_timeout = -1.0, "socket.default_timeout", "-1");
    assert_rule(|c| c.socket.default_timeout = f64::NAN, "socket.default_timeout", "NaN");
    assert_rule(|c| c.socket.hello_grace = 0.0, "socket.hello_grace", "0");
    assert_rule(|c| c.socket.frame_timeout = -0.5, "socket.frame_timeout", "-0.5");
    assert_rule(|c| c.socket.write_stall_timeout = 0.0, "socket.write_stall_timeout", "0");
    assert_rule(|c| c.socket.reconnect_initial_delay = 0.0, "socket.reconnect_initial_delay", "0");
    assert_rule(|c| c.socket.reconnect_max_delay = f64::INFINITY, "socket.reconnect_max_delay", "inf");
}

#[test]
fn rule_sizes_positive() {
    assert_rule(|c| c.socket.buffer_size = 0, "socket.buffer_size", "0");
    assert_rule(|c| c.socket.message_queue_size = 0, "socket.message_queue_size", "0");
    assert_rule(|c| c.socket.message_queue_bytes = 0, "socket.message_queue_bytes", "0");
    assert_rule(|c| c.socket.outbound_queue_size = 0, "socket.outbound_queue_size", "0");
    assert_rule(|c| c.socket.outbound_queue_bytes = 0, "socket.outbound_queue_bytes", "0");
    assert_rule(|c| c.socket.receive_buffer_size = 0, "socket.receive_buffer_size", "0");
    assert_rule(|c| c.socket.inbound_queue_size = 0, "socket.inbound_queue_size", "0");
    assert_rule(|c| c.socket.unix.max_connections = 0, "socket.unix.max_connections", "0");
    assert_rule(|c| c.socket.tcp.max_connections = 0, "socket.tcp.max_connections", "0");
}

#[test]
fn rule_unix_send_buffer_range() {
    assert_rule(|c| c.socket.unix.send_buffer_bytes = 4095, "socket.unix.send_buffer_bytes", "4095");
    assert_rule(|c| c.socket.unix.send_buffer_bytes = (16 << 20) + 1, "socket.unix.send_buffer_bytes", "16777217");
    for ok in [4096, 1 << 20, 16 << 20] {
        let mut c = Config::default();
        c.socket.unix.send_buffer_bytes = ok;
        c.validate().map_err(|e| format!("{ok} refused: {e}")).unwrap();
    }
    let c = loader(&[("SOCKET__UNIX__SEND_BUFFER_BYTES", "65536")]).load().unwrap();
    assert_eq!(c.socket.unix.send_buffer_bytes, 65536);
}

#[test]
fn rule_timezone_is_iana() {
    assert_rule(|c| c.socket.timezone = "Mars/Olympus".into(), "socket.timezone", "\"Mars/Olympus\"");
    assert_rule(|c| c.socket.timezone = String::new(), "socket.timezone", "\"\"");
    let err = {
        let mut c = Config::default();
        c.socket.timezone = "Nowhere".into();
        c.time_zone().unwrap_err()
    };
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("socket.timezone"), "{err}");
    for ok in ["UTC", "Europe/Berlin", "Asia/Kolkata", "America/New_York"] {
        let mut c = Config::default();
        c.socket.timezone = ok.into();
        c.validate().unwrap();
        c.time_zone().unwrap();
    }
}

#[test]
fn rule_max_message_size_range() {
    assert_rule(|c| c.socket.max_message_size = 63, "socket.max_message_size", "63");
    assert_rule(|c| c.socket.max_message_size = (64 << 20) + 1, "socket.max_message_size", "67108865");
    for ok in [64, 64 << 20] {
        let mut c = Config::default();
        c.socket.max_message_size = ok;
        c.validate().unwrap();
    }
}

#[test]
fn rule_max_nesting_depth_range() {
    assert_rule(|c| c.socket.max_nesting_depth = 1, "socket.max_nesting_depth", "1");
    // One limit for the encoder and the decoder (SPEC §4): at most 64.
    assert_rule(|c| c.socket.max_nesting_depth = 65, "socket.max_nesting_depth", "65");
    assert_rule(|c| c.socket.max_nesting_depth = 129, "socket.max_nesting_depth", "129");
    let mut c = Config::default();
    c.socket.max_nesting_depth = 64;
    c.validate().unwrap();
    assert_eq!(c.limits().max_depth, 64);
}

#[test]
fn rule_sizes_and_counts_have_upper_bounds() {
    use socket_core::config::{MAX_BUFFER_SIZE, MAX_CONNECTIONS, MAX_QUEUE_BYTES, MAX_QUEUE_LEN};
    type Set = fn(&mut Config, usize);
    let keys: [(&str, usize, Set); 9] = [
        ("socket.buffer_size", MAX_BUFFER_SIZE, |c, v| c.socket.buffer_size = v),
        ("socket.message_queue_size", MAX_QUEUE_LEN, |c, v| c.socket.message_queue_size = v),
        ("socket.message_queue_bytes", MAX_QUEUE_BYTES, |c, v| c.socket.message_queue_bytes = v),
        ("socket.outbound_queue_size", MAX_QUEUE_LEN, |c, v| c.socket.outbound_queue_size = v),
        ("socket.outbound_queue_bytes", MAX_QUEUE_BYTES, |c, v| c.socket.outbound_queue_bytes = v),
        ("socket.receive_buffer_size", MAX_QUEUE_LEN, |c, v| c.socket.receive_buffer_size = v),
        ("socket.inbound_queue_size", MAX_QUEUE_LEN, |c, v| c.socket.inbound_queue_size = v),
        ("socket.unix.max_connections", MAX_CONNECTIONS, |c, v| c.socket.unix.max_connections = v),
        ("socket.tcp.max_connections", MAX_CONNECTIONS, |c, v| c.socket.tcp.max_connections = v),
    ];
    for (key, max, set) in keys {
        let mut c = Config::default();
        set(&mut c, max);
        c.validate().unwrap_or_else(|e| panic!("{key} = {max} is the bound, valid: {e}"));
        for over in [max + 1, max * 1000, usize::MAX] {
            assert_rule(|c| set(c, over), key, &over.to_string());
        }
        let rule = key_info(key).map(|k| k.rule).unwrap_or_default();
        assert!(rule.contains(&max.to_string()), "the rule of {key} documents its bound: {rule}");
    }
}

#[test]
fn rule_durations_have_an_upper_bound() {
    use socket_core::config::MAX_SECONDS;
    type Set = fn(&mut Config, f64);
    let keys: [(&str, Set); 6] = [
        ("socket.default_timeout", |c, v| c.socket.default_timeout = v),
        ("socket.hello_grace", |c, v| c.socket.hello_grace = v),
        ("socket.frame_timeout", |c, v| c.socket.frame_timeout = v),
        ("socket.write_stall_timeout", |c, v| c.socket.write_stall_timeout = v),
        ("socket.reconnect_max_delay", |c, v| c.socket.reconnect_max_delay = v),
        ("socket.reconnect_initial_delay", |c, v| {
            c.socket.reconnect_initial_delay = v;
        }),
    ];
    for (key, set) in keys {
        let mut c = Config::default();
        c.socket.reconnect_max_delay = MAX_SECONDS;
        set(&mut c, MAX_SECONDS);
        c.validate().unwrap_or_else(|e| panic!("{key} = {MAX_SECONDS} is the bound, valid: {e}"));
        for over in [MAX_SECONDS + 1.0, 1e30, f64::MAX] {
            let mut c = Config::default();
            c.socket.reconnect_max_delay = MAX_SECONDS;
            set(&mut c, over);
            let err = c.validate().expect_err("over the bound");
            assert!(err.to_string().contains(key), "{key} = {over}: {err}");
            assert!(err.to_string().contains("31536000"), "{key} = {over}: {err}");
        }
    }
}

#[test]
fn absurd_capacity_from_a_file_is_a_validation_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.toml");
    std::fs::write(&path, "[socket]\ninbound_queue_size = 1000000000\n").unwrap();
    let err = Config::loader().no_file_discovery().env([("X", "")]).file(&path).load().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let text = err.to_string();
    assert!(text.contains("invalid value 1000000000 for key socket.inbound_queue_size"), "{text}");
    assert!(text.contains("expected an integer in 1..=1000000"), "{text}");
}

#[test]
fn rule_reconnect_delays_ordered() {
    assert_rule(
        |c| {
            c.socket.reconnect_initial_delay = 6.0;
            c.socket.reconnect_max_delay = 5.0;
        },
        "socket.reconnect_initial_delay",
        "6 (socket.reconnect_max_delay is 5)",
    );
}

#[test]
fn rule_host_not_empty() {
    assert_rule(|c| c.socket.tcp.host = " ".into(), "socket.tcp.host", "\" \"");
}

#[test]
fn rule_ports() {
    assert_rule(|c| c.socket.tcp.port = Some(80), "socket.tcp.port", "80");
    assert_rule(|c| c.socket.tcp.port_range_start = 1023, "socket.tcp.port_range_start", "1023");
    assert_rule(|c| c.socket.tcp.port_range_end = 0, "socket.tcp.port_range_end", "0");
    assert_rule(
        |c| {
            c.socket.tcp.port_range_start = 9100;
            c.socket.tcp.port_range_end = 9000;
        },
        "socket.tcp.port_range_start",
        "9100 (socket.tcp.port_range_end is 9000)",
    );
    let mut c = Config::default();
    c.socket.tcp.port = Some(65535);
    c.socket.tcp.port_range_start = 1024;
    c.socket.tcp.port_range_end = 1024;
    c.validate().unwrap();
}

#[test]
fn rule_plugin_table_name() {
    let mut c = Config::default();
    c.socket.plugins.insert("Bad".into(), toml::Table::new());
    let err = c.validate().unwrap_err();
    assert_eq!(config_error(&err).key(), Some("socket.Bad"));
    assert!(err.to_string().contains("a plug-in transport table named by its scheme"), "{err}");
}

// ---- the key table and serialisation ----

fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeSet<String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            _ => {
                out.insert(key);
            }
        }
    }
}

#[test]
fn the_key_table_covers_every_field() {
    let mut c = Config::default();
    c.socket.tcp.port = Some(9000);
    c.socket.reconnect_max_retries = Some(1);
    c.socket.nats.credentials_file = Some("user.creds".into());
    c.socket.nats.token_file = Some("token".into());
    c.socket.nats.tls_ca_file = Some("ca.pem".into());
    let mut serialized = BTreeSet::new();
    flatten("", &c.to_table().unwrap(), &mut serialized);
    let listed: BTreeSet<String> = KEYS.iter().map(|k| k.key.to_owned()).collect();
    assert_eq!(serialized, listed, "KEYS in config.rs and the settings structs differ");
    for k in KEYS {
        assert!(k.env_var().starts_with("SOCKET__"), "{}", k.key);
        assert!(!k.rule.is_empty() && !k.description.is_empty(), "{}", k.key);
    }
    assert_eq!(key_info("socket.unix.max_connections").unwrap().env_var(), "SOCKET__UNIX__MAX_CONNECTIONS");
    assert_eq!(key_info("socket.socket_dir").unwrap().env_var(), "SOCKET__SOCKET_DIR");
}

#[test]
fn every_key_can_be_set_from_the_environment() {
    // Each default, written as an environment variable, loads back to the default.
    let defaults = Config::default();
    let table = defaults.to_table().unwrap();
    let mut env = Vec::new();
    for k in KEYS {
        let mut v = &toml::Value::Table(table.clone());
        let mut found = true;
        for part in k.key.split('.') {
            match v.get(part) {
                Some(x) => v = x,
                None => found = false,
            }
        }
        if !found {
            continue;
        }
        let text = match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Array(a) => a
                .iter()
                .map(|item| match item {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        env.push((k.env_var(), text));
    }
    let loaded = ConfigLoader::new().env(env).no_file_discovery().load().unwrap();
    assert_eq!(loaded, defaults);
}

#[test]
fn toml_output_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    c.socket.tcp.port = Some(9050);
    c.socket.unix.allowed_uids = vec![1, 2];
    c.socket.reconnect_max_retries = Some(7);
    c.socket.plugins.insert("memory".into(), toml::toml! { max_connections = 2 });
    let text = c.to_toml_string().unwrap();
    assert!(
        text.contains("[socket.unix]") && text.contains("[socket.tcp]") && text.contains("[socket.memory]"),
        "{text}"
    );
    let path = write(dir.path(), "out.toml", &text);
    assert_eq!(loader(&[]).file(&path).load().unwrap(), c);
}

#[test]
fn json_is_nested_like_the_toml() {
    let json = serde_json::to_value(Config::default()).unwrap();
    let socket = json.get("socket").and_then(|s| s.as_object()).expect("a socket object");
    assert_eq!(socket["unix"]["socket_permissions"], "0600");
    assert_eq!(socket["tcp"]["port_range_start"], 9000);
    assert_eq!(socket["socket_dir"], "/tmp/sockets");
    assert!(socket["tcp"]["port"].is_null());
    assert_eq!(json.as_object().unwrap().len(), 1);
}

#[test]
fn nats_table_loads_and_each_key_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "nats.toml",
        "[socket.nats]\nurl = [\"nats://a:4222\", \"tls://b\"]\nsubject_prefix = \"home.desk\"\nretain = true\noutbound_buffer = 10\ntoken_file = \"tok\"\n",
    );
    let c = loader(&[]).file(&path).load().unwrap();
    assert_eq!(c.socket.nats.url, ["nats://a:4222", "tls://b"]);
    assert_eq!(c.socket.nats.subject_prefix, "home.desk");
    assert!(c.socket.nats.retain);
    assert_eq!(c.socket.nats.outbound_buffer, 10);
    assert_eq!(c.socket.nats.token_file.as_deref(), Some(std::path::Path::new("tok")));
    let c = loader(&[("SOCKET__NATS__URL", "nats://x:1, nats://y:2")]).load().unwrap();
    assert_eq!(c.socket.nats.url, ["nats://x:1", "nats://y:2"]);
    for (var, value, needle) in [
        ("SOCKET__NATS__URL", "http://x:1", "socket.nats.url"),
        ("SOCKET__NATS__URL", "nats://x:99999", "socket.nats.url"),
        ("SOCKET__NATS__SUBJECT_PREFIX", "a.>", "socket.nats.subject_prefix"),
        ("SOCKET__NATS__OUTBOUND_BUFFER", "0", "socket.nats.outbound_buffer"),
        ("SOCKET__NATS__OUTBOUND_BUFFER", "1000000000", "socket.nats.outbound_buffer"),
        ("SOCKET__NATS__RETAIN", "maybe", "socket.nats.retain"),
    ] {
        let err = loader(&[(var, value)]).load().unwrap_err();
        let text = format!("{err}: {:?}", std::error::Error::source(&err));
        assert!(text.contains(needle), "{var}={value}: {text}");
    }
    let path = write(dir.path(), "typo.toml", "[socket.nats]\nurls = [\"nats://a\"]\n");
    let err = loader(&[]).file(&path).load().unwrap_err();
    assert!(format!("{:?}", std::error::Error::source(&err)).contains("socket.nats.urls"), "{err:?}");
}

#[test]
fn limits_come_from_the_config() {
    let mut c = Config::default();
    c.socket.max_message_size = 4096;
    assert_eq!(c.limits().max_frame_len, 4096);
    assert_eq!(c.limits().max_depth, 64);
}

#[test]
fn transport_key_declarations_are_checked_with_the_core_wording() {
    use socket_core::config::{check_transport_table, KeySpec, ValueType};

    fn no_x(value: &toml::Value) -> Result<(), String> {
        match value.as_str() {
            Some(s) if s.contains('x') => Err("no x".to_owned()),
            _ => Ok(()),
        }
    }
    static SPECS: &[KeySpec] = &[
        KeySpec::new("speed", ValueType::Integer, "an integer in 1..=120", "Birds per minute.")
            .with_default("10")
            .with_bounds(1, 120),
        KeySpec::new("name", ValueType::String, "a name without x", "The flock.").with_check(no_x),
        KeySpec::new("fast", ValueType::Boolean, "true or false", "Hurry."),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "settings.toml", "[socket.pigeon]\nspeed = 121\n");
    let config = loader(&[]).file(&path).load().unwrap();
    let err = Error::from(check_transport_table("pigeon", SPECS, &config).unwrap_err());
    assert_eq!(config_error(&err).key(), Some("socket.pigeon.speed"));
    let shown = std::path::absolute(&path).unwrap().display().to_string();
    assert_eq!(
        err.to_string(),
        format!(
            "invalid configuration: invalid value 121 for key socket.pigeon.speed (from {shown}): expected an integer in 1..=120"
        )
    );

    let config = loader(&[("SOCKET__PIGEON__FAST", "maybe")]).load().unwrap();
    let err = Error::from(check_transport_table("pigeon", SPECS, &config).unwrap_err());
    assert_eq!(
        err.to_string(),
        "invalid configuration: invalid value \"maybe\" for key socket.pigeon.fast (from environment variable SOCKET__PIGEON__FAST): expected true or false"
    );

    let config = loader(&[("SOCKET__PIGEON__NAME", "xena")]).load().unwrap();
    let err = Error::from(check_transport_table("pigeon", SPECS, &config).unwrap_err());
    assert!(err.to_string().ends_with("expected a name without x (no x)"), "{err}");

    let config = loader(&[("SOCKET__PIGEON__COLOUR", "grey")]).load().unwrap();
    let err = Error::from(check_transport_table("pigeon", SPECS, &config).unwrap_err());
    assert!(matches!(config_error(&err), ConfigError::UnknownKey { .. }), "{err}");
    assert!(
        err.to_string().contains("unknown key socket.pigeon.colour (from environment variable SOCKET__PIGEON__COLOUR)"),
        "{err}"
    );

    let config = loader(&[
        ("SOCKET__PIGEON__SPEED", "120"),
        ("SOCKET__PIGEON__NAME", "flock"),
        ("SOCKET__PIGEON__FAST", "true"),
    ])
    .load()
    .unwrap();
    check_transport_table("pigeon", SPECS, &config).unwrap();
    // No declarations: the transport checks its table itself.
    check_transport_table("pigeon", &[], &loader(&[("SOCKET__PIGEON__COLOUR", "grey")]).load().unwrap()).unwrap();
    assert_eq!(SPECS[0].default_value(), Some(toml::Value::Integer(10)));
}
