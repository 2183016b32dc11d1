//! The async API driven from tokio: the engine does not depend on smol.

use std::sync::Arc;
use std::time::Duration;

use socket_core::{Client, Data, EventName, Server, SocketMessage};
use socket_tests::memory::MemoryTransport;

#[tokio::test(flavor = "current_thread")]
async fn async_api_under_tokio() -> Result<(), socket_core::Error> {
    let fut = async {
        let transport = Arc::new(MemoryTransport::new());
        let config = crate::suite::memory_config();
        let event = EventName::new("tokio")?;
        let server = Server::new(transport.clone(), event.clone(), &config)?;
        server.start_async().await?;
        let events = server.events();
        let client = Client::connect_async(transport, event.clone(), &config).await?;
        server.broadcast(&SocketMessage::data(event.clone(), Data::new().with("n", 1)))?;
        let got = client.receive_async(Some(Duration::from_secs(5))).await?;
        assert_eq!(got.and_then(|m| m.data.get("n").and_then(|v| v.as_u64())), Some(1));
        client.send_async(&SocketMessage::data(event, Data::new().with("n", 2))).await?;
        loop {
            match events.recv().await {
                Ok(socket_core::ServerEvent::Message { message, .. }) => {
                    assert_eq!(message.data.get("n").and_then(|v| v.as_u64()), Some(2));
                    break;
                }
                Ok(_) => {}
                Err(_) => panic!("event stream ended"),
            }
        }
        // A timeout from tokio's own timer around our receive.
        let idle = tokio::time::timeout(Duration::from_millis(100), client.receive_async(None)).await;
        assert!(idle.is_err(), "nothing was sent, receive must still be waiting");
        client.disconnect_async().await;
        server.stop_async().await?;
        Ok::<_, socket_core::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(30), fut).await.expect("watchdog: the tokio test hangs")
}
