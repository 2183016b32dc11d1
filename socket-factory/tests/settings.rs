//! Settings against a registry: plug-in tables checked with the core's rules, the
//! configuration reference in its order, the declared defaults of plug-ins filled in; and the
//! client built with explicit options.

use socket_factory::config::{KeySpec, ValueType};
use socket_factory::{
    check_settings, default_registry, reference_markdown, with_declared_defaults, Config, Connection, Endpoint, Error,
    ErrorKind, EventName, Listener, Result, Transport,
};

use crate::util::*;

/// A plug-in that declares settings and sorts before the built-in schemes.
#[derive(Debug)]
struct Abacus;

static ABACUS: &[KeySpec] =
    &[KeySpec::new("beads", ValueType::Integer, "an integer in 1..=100", "Beads per rod.").with_bounds(1, 100)];

#[async_trait::async_trait]
impl Transport for Abacus {
    fn scheme(&self) -> &str {
        "abacus"
    }

    fn settings(&self) -> &'static [KeySpec] {
        ABACUS
    }

    async fn bind(&self, _: &EventName, _: &Config) -> Result<Box<dyn Listener>> {
        Err(Error::new(ErrorKind::Connection, "an abacus does not bind"))
    }

    fn endpoints(&self, _: &EventName, _: &Config) -> Result<Vec<Endpoint>> {
        Ok(Vec::new())
    }

    async fn connect(&self, _: &Endpoint, _: &Config) -> Result<Connection> {
        Err(Error::new(ErrorKind::Connection, "an abacus does not connect"))
    }
}

fn position(text: &str, needle: &str) -> TestResult<usize> {
    text.find(needle).ok_or_else(|| format!("the reference has no {needle:?}").into())
}

/// Built-in transports come first (unix, tcp), then the plug-ins sorted by scheme.
#[cfg(all(feature = "unix", feature = "tcp"))]
#[test]
fn reference_lists_built_in_tables_first_then_plug_ins_sorted() -> TestResult {
    let registry = default_registry();
    socket_tests::memory::register(&registry);
    registry.register(Abacus);
    let md = reference_markdown(&registry);
    let order = [
        position(&md, "## `[socket.unix]`")?,
        position(&md, "## `[socket.tcp]`")?,
        position(&md, "## `[socket.abacus]`")?,
        position(&md, "## `[socket.memory]`")?,
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "sections out of order: {order:?}");
    assert!(md.contains("| [`beads`](#socketabacusbeads) | integer | absent | `SOCKET__ABACUS__BEADS` |"), "{md}");
    assert!(md.contains("`SOCKET__MEMORY__MAX_CONNECTIONS`"));
    assert!(!reference_markdown(&default_registry()).contains("[socket.abacus]"));
    Ok(())
}

/// The declared defaults fill a plug-in's table where it is silent; what the table sets stays,
/// and a plug-in without defaults gets no table.
#[test]
fn declared_defaults_fill_plug_in_tables_without_overriding_them() -> TestResult {
    let registry = default_registry();
    socket_tests::memory::register(&registry);
    registry.register(Abacus);
    let mut config = Config::default();
    let mut memory = toml::Table::new();
    memory.insert("max_connections".to_owned(), toml::Value::Integer(3));
    config.socket.plugins.insert("memory".to_owned(), memory);
    let shown = with_declared_defaults(&registry, &config);
    let table = &shown.socket.plugins["memory"];
    assert_eq!(table["max_connections"].as_integer(), Some(3), "a set value was replaced");
    assert_eq!(table["pipe_capacity"].as_integer(), Some(65536));
    assert_eq!(table["namespace"].as_str(), Some("default"));
    assert!(!shown.socket.plugins.contains_key("abacus"), "a table without defaults was added");
    assert!(!shown.socket.plugins.contains_key("unix") && !shown.socket.plugins.contains_key("tcp"));
    assert_eq!((shown.socket.unix, shown.socket.tcp), (config.socket.unix.clone(), config.socket.tcp.clone()));
    Ok(())
}

/// Every registered transport's table is checked against its declared keys, whichever
/// transport is chosen.
#[test]
fn plug_in_settings_are_checked_with_their_bounds() -> TestResult {
    let registry = default_registry();
    registry.register(Abacus);
    let mut config = Config::default();
    check_settings(&registry, &config)?;
    for (value, ok) in [(0, false), (1, true), (100, true), (101, false)] {
        let mut table = toml::Table::new();
        table.insert("beads".to_owned(), toml::Value::Integer(value));
        config.socket.plugins.insert("abacus".to_owned(), table);
        let result = check_settings(&registry, &config);
        if ok {
            result?;
        } else {
            assert_err(result, ErrorKind::Config, &["socket.abacus.beads", &value.to_string(), "1..=100"])?;
        }
    }
    Ok(())
}

/// `create_client_with` uses the options it is given: a receive-only client cannot send, and
/// the server sees the client's name.
#[cfg(feature = "unix")]
#[test]
fn create_client_with_uses_the_given_options() -> TestResult {
    use socket_factory::ClientOptions;

    with_watchdog(|| {
        let registry = default_registry();
        let tmp = tempfile::tempdir()?;
        let mut config = Config::default();
        config.socket.socket_dir = tmp.path().join("sockets");
        let server = socket_factory::create_server(&registry, &config, "status_ev")?;
        server.start()?;
        let mut options = ClientOptions::from_config(&config)?;
        options.client_name = Some("status-bar".to_owned());
        options.receive_only = true;
        let client = socket_factory::create_client_with(&registry, &config, "status_ev", options)?;
        assert!(client.is_connected());
        let message = socket_factory::SocketMessage::data(EventName::new("status_ev")?, Default::default());
        assert_err(client.send(&message), ErrorKind::SendNotAllowed, &[])?;
        let named = || server.clients().iter().any(|c| c.client_name.as_deref() == Some("status-bar"));
        let deadline = std::time::Instant::now() + WATCHDOG;
        while !named() {
            if std::time::Instant::now() > deadline {
                return Err(format!("the server never saw the client's name: {:?}", server.clients()).into());
            }
            std::thread::yield_now();
        }
        assert_err(
            socket_factory::create_client_with(&registry, &config, "bad/name", ClientOptions::from_config(&config)?),
            ErrorKind::Validation,
            &["event name"],
        )?;
        server.stop()?;
        Ok(())
    })
}
