//! End to end through the facade: a server and a client over each compiled-in transport, and a
//! broadcast that arrives. These need the engine (socket-core's server and client).

#![cfg_attr(not(any(feature = "unix", feature = "tcp")), allow(dead_code, unused_imports))]

use std::time::Duration;

use socket_factory::{Config, Data, EventName, SocketMessage};

use crate::util::*;

/// Starts a server of `event`, connects a client, broadcasts one message and checks it arrives.
fn broadcast_arrives(config: Config, event: &'static str, async_client: bool) -> TestResult {
    with_watchdog(move || {
        let registry = socket_factory::default_registry();
        let server = socket_factory::create_server(&registry, &config, event)?;
        server.start()?;
        assert!(server.is_running());
        let client = if async_client {
            async_io::block_on(socket_factory::create_client_async(&registry, &config, event))?
        } else {
            socket_factory::create_client(&registry, &config, event)?
        };
        assert!(client.is_connected());
        let message = SocketMessage::data(EventName::new(event)?, Data::new().with("n", 42).with("text", "hello"));
        server.broadcast(&message)?;
        let received = client.receive(Some(Duration::from_secs(5)))?.ok_or("no message within 5 s")?;
        assert_eq!(received.event_name.as_str(), event);
        assert_eq!(received.data.get_str("text"), Some("hello"));
        assert!(received == message, "the message changed on the way");
        client.disconnect();
        server.stop()?;
        assert!(!server.is_running());
        Ok(())
    })
}

#[cfg(feature = "unix")]
mod unix {
    use super::*;

    fn config(dir: &std::path::Path) -> Config {
        let mut config = Config::default();
        config.socket.transport = "unix".to_owned();
        config.socket.socket_dir = dir.join("sockets");
        config
    }

    #[test]
    fn unix_broadcast_arrives() -> TestResult {
        let tmp = tempfile::tempdir()?;
        broadcast_arrives(config(tmp.path()), "e2e_unix", false)?;
        let left: Vec<_> = std::fs::read_dir(tmp.path().join("sockets"))?.collect();
        assert!(left.is_empty(), "stop leaves no socket or lock file: {left:?}");
        Ok(())
    }

    #[test]
    fn unix_broadcast_arrives_async_client() -> TestResult {
        let tmp = tempfile::tempdir()?;
        broadcast_arrives(config(tmp.path()), "e2e_unix_async", true)
    }
}

#[cfg(feature = "tcp")]
mod tcp {
    use super::*;

    use socket_tests::util::free_port;

    #[test]
    fn tcp_explicit_port_broadcast_arrives() -> TestResult {
        let mut config = Config::default();
        config.socket.transport = "tcp".to_owned();
        config.socket.tcp.port = Some(free_port()?);
        broadcast_arrives(config, "e2e_tcp", false)
    }

    /// Discovery: the server takes the first free port of the event's sequence and the client,
    /// given only the event name, finds it.
    #[test]
    fn tcp_discovery_broadcast_arrives_async_client() -> TestResult {
        let port = free_port()?;
        let mut config = Config::default();
        config.socket.transport = "TCP".to_owned();
        config.socket.tcp.port_range_start = port;
        config.socket.tcp.port_range_end = port;
        broadcast_arrives(config, "e2e_tcp_discovery", true)
    }
}
