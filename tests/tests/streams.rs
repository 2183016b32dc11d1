//! `Server::events()` and `Client::stream()` are `Stream + Unpin`: a user writes
//! `while let Some(e) = events.next().await` with `futures-lite` (or `futures`) and it
//! compiles without pinning, under tokio and under smol alike.

use std::sync::Arc;
use std::time::Duration;

use futures_lite::{Stream, StreamExt};
use socket_core::{Client, Data, ErrorKind, EventName, Server, ServerEvent, SocketMessage};
use socket_tests::memory::MemoryTransport;

/// The next item of any `Stream + Unpin`, by `next()` alone (no `pin!`, no `Box::pin`).
async fn next_of<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    stream.next().await
}

fn n(message: &SocketMessage) -> Option<u64> {
    message.data.get("n").and_then(|v| v.as_u64())
}

/// A server and a client exchanging messages, every wait written as `while let Some(..) =
/// stream.next().await` on the two streams.
async fn exchange_over_streams(event: &str) -> Result<(), socket_core::Error> {
    let transport = Arc::new(MemoryTransport::new());
    let config = crate::suite::memory_config();
    let event = EventName::new(event)?;
    let server = Server::new(transport.clone(), event.clone(), &config)?;
    server.start_async().await?;
    let mut events = server.events();
    let client = Client::connect_async(transport, event.clone(), &config).await?;

    let mut connected = None;
    while let Some(e) = events.next().await {
        if let ServerEvent::Connected(info) = e {
            connected = Some(info.id);
            break;
        }
    }
    let id = connected.expect("the server's event stream ended before the client connected");

    client.send_async(&SocketMessage::data(event.clone(), Data::new().with("n", 1))).await?;
    let mut from_client = None;
    while let Some(e) = events.next().await {
        if let ServerEvent::Message { from, message } = e {
            from_client = Some((from, n(&message)));
            break;
        }
    }
    assert_eq!(from_client, Some((id, Some(1))), "the client's message, from the client");

    let mut messages = client.stream();
    for k in [2, 3] {
        server.broadcast(&SocketMessage::data(event.clone(), Data::new().with("n", k)))?;
    }
    let mut got = Vec::new();
    while let Some(m) = messages.next().await {
        got.push(n(&m?));
        if got.len() == 2 {
            break;
        }
    }
    assert_eq!(got, [Some(2), Some(3)], "broadcasts in order");

    // The same streams through a generic `Stream + Unpin` bound.
    server.broadcast(&SocketMessage::data(event.clone(), Data::new().with("n", 4)))?;
    let fourth = next_of(&mut messages).await.expect("stream ended early")?;
    assert_eq!(n(&fourth), Some(4));

    // The client's stream ends with one Closed error, then None.
    client.disconnect_async().await;
    match next_of(&mut messages).await {
        Some(Err(e)) => assert_eq!(e.kind(), ErrorKind::Closed, "{e}"),
        other => panic!("expected the Closed error, got {other:?}"),
    }
    assert!(next_of(&mut messages).await.is_none(), "nothing after the end");
    let mut left = None;
    while let Some(e) = next_of(&mut events).await {
        if let ServerEvent::Disconnected { id: gone, .. } = e {
            left = Some(gone);
            break;
        }
    }
    assert_eq!(left, Some(id), "the server saw the client leave");
    server.stop_async().await?;
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn streams_are_unpin_under_tokio() -> Result<(), socket_core::Error> {
    tokio::time::timeout(Duration::from_secs(30), exchange_over_streams("streams_tokio"))
        .await
        .expect("watchdog: the stream exchange under tokio hangs")
}

#[test]
fn streams_are_unpin_under_smol() -> Result<(), socket_core::Error> {
    smol::block_on(async {
        // The exchange runs as a task of smol's executor, under a watchdog of smol's timer.
        let task = smol::spawn(exchange_over_streams("streams_smol"));
        futures_lite::future::or(task, async {
            smol::Timer::after(Duration::from_secs(30)).await;
            panic!("watchdog: the stream exchange under smol hangs")
        })
        .await
    })
}
