//! Arbitrary bytes as a client's first frames to a running server (RELIABILITY.md Z3).
//!
//! One server (in-memory transport, so every connection is a pair of
//! in-process pipes) lives for the whole fuzzing process; each input opens a
//! new connection and writes its bytes.
//!
//! Input layout: byte 0 = mode, then the stream. Mode bit 0 clear: the
//! client closes its write half after the stream (fast path: the server must
//! end the connection at once). Bit 0 set: the connection stays open and the
//! server must settle by itself: answer `hello` with `welcome`, treat the
//! client as legacy after the grace period, or close it (protocol error, or a
//! frame not completed within `frame_timeout`).
//!
//! Invariants: no panic; everything the server writes is a sequence of valid
//! frames holding valid messages; `welcome` comes only as the first frame and
//! only once; every ERROR carries a known code; the connection ends (or
//! settles) within its deadline; a stream ending inside a frame is closed at
//! the frame deadline.

#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_lite::{future, AsyncReadExt};
use libfuzzer_sys::fuzz_target;
use socket_core::codec::{decode_body, FrameDecoder, Limits};
use socket_core::control::{Control, ErrorCode};
use socket_core::runtime::block_on;
use socket_core::{Config, EventName, MessageType, Server, ServerOptions, Transport};
use socket_tests::memory::{self, MemoryTransport};

const HELLO_GRACE: Duration = Duration::from_millis(5);
const FRAME_TIMEOUT: Duration = Duration::from_millis(25);
/// Wall-clock bound for anything the server must do by itself.
const DEADLINE: Duration = Duration::from_secs(3);

struct Fixture {
    transport: Arc<dyn Transport>,
    config: Config,
    event: EventName,
    _server: Server,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let transport: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
        let mut config = Config::default();
        memory::set_option(&mut config, "namespace", "fuzz");
        memory::set_option(&mut config, "max_connections", 100_000);
        let event = EventName::new("fuzz_handshake").expect("a valid event name");
        let mut options = ServerOptions::from_config(&config, transport.as_ref()).expect("default options");
        options.max_connections = 100_000;
        options.hello_grace = HELLO_GRACE;
        options.frame_timeout = FRAME_TIMEOUT;
        options.write_stall_timeout = Duration::from_secs(1);
        let server = Server::with_options(transport.clone(), event.clone(), config.clone(), options)
            .expect("a server over the memory transport");
        server.start().expect("the server starts");
        Fixture { transport, config, event, _server: server }
    })
}

/// True if `stream` ends inside a frame whose header is acceptable.
fn ends_mid_frame(stream: &[u8]) -> bool {
    let mut dec = FrameDecoder::new(Limits::default());
    dec.feed(stream);
    loop {
        match dec.next_frame() {
            Ok(Some(_)) => {}
            Ok(None) => return dec.in_frame(),
            Err(_) => return false,
        }
    }
}

/// Checks one server frame; returns true if it was `welcome`.
fn check_frame(body: &[u8], index: usize, event: &EventName) -> bool {
    let msg = decode_body(body, &Limits::default()).expect("the server writes only valid messages");
    assert_eq!(&msg.event_name, event, "the server writes its own event name");
    match msg.message_type {
        MessageType::Error => {
            let (code, _) = ErrorCode::parse(&msg).expect("every ERROR carries a known code");
            assert!(ErrorCode::ALL.contains(&code));
            false
        }
        MessageType::Control => match Control::parse(&msg) {
            Some(Ok(Control::Welcome { event_name, .. })) => {
                assert_eq!(index, 0, "welcome must be the first frame");
                assert_eq!(event_name, event.as_str());
                true
            }
            Some(Ok(Control::Pong { .. })) => false,
            other => panic!("unexpected control frame from the server: {other:?}"),
        },
        MessageType::Data => panic!("the server sent DATA although nothing was broadcast"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, stream)) = data.split_first() else { return };
    let keep_open = mode & 1 == 1;
    let fx = fixture();
    block_on(async {
        let endpoints = fx.transport.endpoints(&fx.event, &fx.config).expect("endpoints");
        let conn = fx.transport.connect(&endpoints[0], &fx.config).await.expect("connect");
        let (mut reader, mut writer) = (conn.reader, conn.writer);
        // Pipes are bounded: write while reading, so a server answer cannot block us.
        let mid_frame = ends_mid_frame(stream);
        let started = Instant::now();
        let write = async {
            let _ = futures_lite::AsyncWriteExt::write_all(&mut writer, stream).await;
            if !keep_open {
                drop(writer);
                return None;
            }
            Some(writer)
        };
        let read = async {
            let mut dec = FrameDecoder::new(Limits { max_frame_len: 1 << 20, ..Limits::default() });
            let mut buf = vec![0u8; 8192];
            let mut frames = 0usize;
            let mut welcomes = 0usize;
            let mut eof = false;
            // After the stream is written: settle time for an open connection.
            let settle = if mid_frame { FRAME_TIMEOUT + Duration::from_secs(1) } else { HELLO_GRACE * 4 };
            loop {
                let limit = if keep_open { settle.max(Duration::from_millis(1)) } else { DEADLINE };
                let n = future::or(async { Some(reader.read(&mut buf).await) }, async {
                    async_io::Timer::after(limit).await;
                    None
                })
                .await;
                match n {
                    None => break,
                    Some(Ok(0)) | Some(Err(_)) => {
                        eof = true;
                        break;
                    }
                    Some(Ok(n)) => {
                        dec.feed(&buf[..n]);
                        while let Some(body) = dec.next_frame().expect("the server frames correctly") {
                            if check_frame(body, frames, &fx.event) {
                                welcomes += 1;
                            }
                            frames += 1;
                        }
                        if keep_open && welcomes > 0 && !mid_frame {
                            // Accepted.
                            break;
                        }
                    }
                }
            }
            assert!(welcomes <= 1, "more than one welcome");
            assert!(!dec.in_frame() || !eof, "the server closed inside one of its own frames");
            (eof, welcomes)
        };
        let (writer, (eof, _welcomes)) = future::zip(write, read).await;
        let elapsed = started.elapsed();
        if !keep_open {
            assert!(eof, "the server did not end a half-closed connection within {DEADLINE:?}");
        } else if mid_frame {
            assert!(eof, "a frame left unfinished was not closed at the frame deadline ({elapsed:?})");
        }
        assert!(elapsed < DEADLINE + FRAME_TIMEOUT * 2, "the exchange took {elapsed:?}");
        drop(writer);
    });
});
