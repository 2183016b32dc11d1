//! Builder errors: event names first, transports and their settings next, nothing touched before.

use async_trait::async_trait;
use socket_factory::{
    create_client, create_client_for, create_server, create_server_for, default_registry, validate_config, Config,
    Connection, Endpoint, Error, ErrorKind, EventName, Listener, Result, Transport, TransportRegistry,
};

use crate::util::*;

/// A plug-in transport that only validates its own table `[socket.pigeon]`.
#[derive(Debug)]
struct Pigeon;

#[async_trait]
impl Transport for Pigeon {
    fn scheme(&self) -> &str {
        "pigeon"
    }

    fn validate(&self, config: &Config) -> Result<()> {
        let speed = config.socket.plugins.get("pigeon").and_then(|t| t.get("speed")).and_then(toml::Value::as_integer);
        match speed {
            Some(n) if n > 0 => Ok(()),
            _ => Err(Error::new(
                ErrorKind::Config,
                "invalid value for key socket.pigeon.speed: must be a positive integer",
            )),
        }
    }

    async fn bind(&self, _event: &EventName, _config: &Config) -> Result<Box<dyn Listener>> {
        Err(Error::new(ErrorKind::Connection, "pigeons do not bind"))
    }

    fn endpoints(&self, _event: &EventName, _config: &Config) -> Result<Vec<Endpoint>> {
        Err(Error::new(ErrorKind::Connection, "pigeons have no endpoints"))
    }

    async fn connect(&self, _endpoint: &Endpoint, _config: &Config) -> Result<Connection> {
        Err(Error::new(ErrorKind::Connection, "pigeons do not connect"))
    }
}

fn with_pigeon() -> TransportRegistry {
    let registry = default_registry();
    registry.register(Pigeon);
    registry
}

fn pigeon_table(speed: i64) -> toml::Table {
    let mut table = toml::Table::new();
    table.insert("speed".to_owned(), toml::Value::Integer(speed));
    table
}

/// S1 at the facade: invalid event names are validation errors before the transport is even
/// looked up, and nothing is created on disk.
#[test]
fn invalid_event_names_rejected_first() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let mut config = Config::default();
    config.socket.socket_dir = tmp.path().join("sockets");
    let registry = default_registry();
    for name in ["../x", "/abs", "a/b", "", ".hidden", "nul\0", "caf\u{e9}", &"x".repeat(65)] {
        assert_err(create_server(&registry, &config, name), ErrorKind::Validation, &["event name"])?;
        assert_err(create_client(&registry, &config, name), ErrorKind::Validation, &["event name"])?;
        assert_err(create_server_for(&registry, "carrier-pigeon", name, &config), ErrorKind::Validation, &[])?;
    }
    assert!(!config.socket.socket_dir.exists(), "the socket dir was created");
    assert_eq!(std::fs::read_dir(tmp.path())?.count(), 0);
    Ok(())
}

#[test]
fn unknown_or_missing_transport_from_config() -> TestResult {
    let registry = default_registry();
    let mut config = Config::default();
    config.socket.transport = "carrier-pigeon".to_owned();
    assert_err(create_server(&registry, &config, "ev"), ErrorKind::Config, &["unknown transport \"carrier-pigeon\""])?;
    assert_err(create_client(&registry, &config, "ev"), ErrorKind::Config, &["available:"])?;
    let future = socket_factory::create_client_async(&registry, &config, "ev");
    assert_err(async_io::block_on(future), ErrorKind::Config, &["unknown transport"])?;
    for scheme in ["unix", "tcp"] {
        if !registry.contains(scheme) {
            let needle = format!("enable the \"{scheme}\" feature");
            assert_err(create_server_for(&registry, scheme, "ev", &config), ErrorKind::Config, &[&needle])?;
            assert_err(create_client_for(&registry, scheme, "ev", &config), ErrorKind::Config, &[&needle])?;
        }
    }
    Ok(())
}

/// `[socket.<scheme>]` tables must belong to a registered transport, which validates them.
#[test]
fn plugin_tables_are_checked_against_the_registry() -> TestResult {
    let mut config = Config::default();
    config.socket.plugins.insert("nowhere".to_owned(), toml::Table::new());
    let available = default_registry().schemes().join(", ");
    let available = if available.is_empty() { "none".to_owned() } else { available };
    assert_err(
        validate_config(&default_registry(), &config),
        ErrorKind::Config,
        &["unknown table [socket.nowhere]", &format!("(available: {available})")],
    )?;
    assert_err(create_server(&default_registry(), &config, "ev"), ErrorKind::Config, &["[socket.nowhere]"])?;

    let registry = with_pigeon();
    let mut config = Config::default();
    config.socket.transport = "PIGEON".to_owned();
    config.socket.plugins.insert("pigeon".to_owned(), pigeon_table(0));
    assert_err(validate_config(&registry, &config), ErrorKind::Config, &["socket.pigeon.speed"])?;
    assert_err(create_server(&registry, &config, "ev"), ErrorKind::Config, &["socket.pigeon.speed"])?;
    config.socket.plugins.insert("pigeon".to_owned(), pigeon_table(3));
    validate_config(&registry, &config)?;
    Ok(())
}

/// The chosen built-in transport validates its settings before anything is built.
#[test]
fn built_in_settings_are_validated() -> TestResult {
    let registry = default_registry();
    if registry.contains("unix") {
        let mut config = Config::default();
        config.socket.unix.socket_permissions = "rw-------".to_owned();
        assert_err(create_server(&registry, &config, "ev"), ErrorKind::Config, &["socket.unix.socket_permissions"])?;
        config.socket.unix.socket_permissions = "0600".to_owned();
        config.socket.socket_dir = "relative/dir".into();
        assert_err(create_client(&registry, &config, "ev"), ErrorKind::Config, &["socket.socket_dir"])?;
    }
    if registry.contains("tcp") {
        let mut config = Config::default();
        config.socket.transport = "tcp".to_owned();
        config.socket.tcp.port_range_start = 9200;
        config.socket.tcp.port_range_end = 9100;
        assert_err(create_server(&registry, &config, "ev"), ErrorKind::Config, &["socket.tcp.port_range_start"])?;
        // Only the chosen transport's settings matter.
        config.socket.transport = "unix".to_owned();
        if registry.contains("unix") {
            validate_config(&registry, &config)?;
        }
    }
    Ok(())
}
