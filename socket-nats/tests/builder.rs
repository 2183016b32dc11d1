//! What `Bridge::builder(...).start()` refuses before it opens anything, what a bridge that
//! cannot reach NATS still does, and the accessors of a running bridge.

use std::time::Duration;

use socket_core::config::MAX_NATS_OUTBOUND_BUFFER;
use socket_core::{Data, EventName, SocketMessage};
use socket_nats::{Bridge, BridgeBuilder, BridgeEvent, BridgeStats, Error, ErrorKind, Mode, TOKEN_ENV};
use socket_nats::{PASSWORD_ENV, USER_ENV};
use socket_tests::nats_server::{NatsServer, NodeOptions};

use super::{fail, next, wait_event, Host, TestResult, DEADLINE};

/// The error of a start that must fail, with its kind and the parts of its message.
fn start_err(builder: BridgeBuilder) -> TestResult<Error> {
    match builder.start() {
        Ok(bridge) => Err(fail(format!("the bridge started: {:?}", bridge.modes()))),
        Err(e) => Ok(e),
    }
}

fn assert_bridge_err(builder: BridgeBuilder, kind: ErrorKind, needles: &[&str]) -> TestResult {
    let err = start_err(builder)?;
    assert_eq!(err.kind(), kind, "{err}");
    let text = err.to_string();
    for needle in needles {
        assert!(text.contains(needle), "{text:?} does not mention {needle:?}");
    }
    Ok(())
}

/// A URL on which nothing listens (a port just freed).
fn unreachable_url() -> TestResult<String> {
    Ok(format!("nats://127.0.0.1:{}", socket_tests::util::free_port()?))
}

#[test]
fn invalid_settings_are_refused_with_what_to_fix_before_the_local_side_opens() -> TestResult {
    let host = Host::new()?;
    let event = EventName::new("cfg_msg_ev")?;
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("missing");
    let garbage = dir.path().join("garbage.creds");
    std::fs::write(&garbage, "not a creds file\n")?;
    let empty = dir.path().join("empty-token");
    std::fs::write(&empty, "  \nsecond line is not the token\n")?;
    let huge = dir.path().join("huge-token");
    std::fs::write(&huge, "t".repeat((64 << 10) + 1))?;
    let base = || Bridge::builder(host.transport.clone(), host.config.clone()).event(event.clone());
    let url = "nats://127.0.0.1:4222";
    let too_big =
        format!("invalid outbound buffer {}: expected 1..={MAX_NATS_OUTBOUND_BUFFER}", MAX_NATS_OUTBOUND_BUFFER + 1);
    let cases: Vec<(BridgeBuilder, Vec<&str>)> = vec![
        (base().urls(Vec::<String>::new()), vec!["no NATS URL", "socket.nats.url"]),
        (base().urls(["http://x:1"]), vec!["invalid NATS URL \"http://x:1\""]),
        (base().urls([url, " nats://x:0 "]), vec!["invalid NATS URL \"nats://x:0\""]),
        (base().urls([url]).subject_prefix("a b"), vec!["invalid subject prefix \"a b\"", "'*' or '>'"]),
        (base().urls([url]).subject_prefix("socket.*"), vec!["invalid subject prefix \"socket.*\""]),
        (base().urls([url]).subject_prefix(""), vec!["invalid subject prefix \"\""]),
        (base().urls([url]).subject_prefix("x".repeat(129)), vec!["at most 128 bytes"]),
        (base().urls([url]).outbound_buffer(0), vec!["invalid outbound buffer 0: expected 1..="]),
        (base().urls([url]).outbound_buffer(MAX_NATS_OUTBOUND_BUFFER + 1), vec![too_big.as_str()]),
        (base().urls([url]).token_file(&missing), vec!["cannot read the NATS token file", "missing"]),
        (base().urls([url]).token_file(&empty), vec!["empty-token is empty", "first line must be the token"]),
        (base().urls([url]).token_file(&huge), vec!["huge-token is larger than 64 KiB"]),
        (base().urls([url]).token_file(dir.path()), vec!["cannot read the NATS token file"]),
        (base().urls([url]).credentials_file(&missing), vec!["cannot read the NATS credentials file", "missing"]),
        (base().urls([url]).tls_ca_file(&missing), vec!["cannot read the NATS TLS CA file", "missing"]),
    ];
    for (builder, needles) in cases {
        assert_bridge_err(builder, ErrorKind::Config, &needles)?;
    }
    let empty_builder = Bridge::builder(host.transport.clone(), host.config.clone()).urls([url]);
    assert_bridge_err(empty_builder, ErrorKind::Config, &["no event to bridge"])?;
    // A credentials file is parsed when the bridge connects: NATS need not be reachable.
    let unreachable = base().urls([unreachable_url()?]).credentials_file(&garbage);
    assert_bridge_err(unreachable, ErrorKind::Config, &["cannot use the NATS credentials file", "garbage.creds"])?;
    let left: Vec<_> = std::fs::read_dir(&host.config.socket.socket_dir)?.collect();
    assert!(left.is_empty(), "a refused start left files in the socket directory: {left:?}");
    Ok(())
}

/// The local side fails: its error keeps the local kind, and the events already opened are
/// closed again (the first event's hosted server is gone when `start` returns).
#[test]
fn a_local_side_that_cannot_open_is_a_local_error_and_nothing_stays_open() -> TestResult {
    let host = Host::new()?;
    let (good, bad) = (EventName::new("local_ok")?, EventName::new("local_bad")?);
    let sockets = host.config.socket.socket_dir.clone();
    // A directory where the lock file of `bad` goes: its server cannot be bound.
    std::fs::create_dir(sockets.join("local_bad.lock"))?;
    let builder = Bridge::builder(host.transport.clone(), host.config.clone())
        .events([good.clone(), bad])
        .urls([unreachable_url()?]);
    let err = start_err(builder)?;
    let ErrorKind::Local(kind) = err.kind() else { return Err(fail(format!("not a local error: {err:?}"))) };
    assert_eq!(kind, socket_core::ErrorKind::Connection, "{err}");
    assert!(err.to_string().contains("local_bad.lock"), "{err}");
    let source = std::error::Error::source(&err).ok_or("a local error without its source")?;
    assert!(source.downcast_ref::<socket_core::Error>().is_some(), "{source:?}");
    assert!(!sockets.join("local_ok.sock").exists(), "the hosted server of the first event is still up");
    assert!(!sockets.join("local_ok.lock").exists(), "the first event's lock is still held");
    Ok(())
}

#[test]
fn without_nats_the_bridge_starts_hosts_locally_and_says_why_it_waits() -> TestResult {
    let host = Host::new()?;
    let event = EventName::new("offline_ev")?;
    let other = EventName::new("not_bridged")?;
    let url = unreachable_url()?;
    let bridge = Bridge::builder(host.transport.clone(), host.config.clone())
        .events([event.clone(), event.clone()])
        .event(event.clone())
        .urls([url.clone()])
        .subject_prefix("desk.one")
        .bridge_id("bridge-under-test")
        .start()?;
    assert_eq!(bridge.id(), "bridge-under-test");
    assert_eq!(bridge.modes(), vec![(event.clone(), Mode::Host)], "an event named twice is bridged once");
    assert_eq!(bridge.subject(&event), Some("desk.one.offline_ev"));
    assert_eq!(bridge.subject(&other), None);
    let bridging = wait_event(&bridge, |e| matches!(e, BridgeEvent::Bridging { .. }))?;
    assert_eq!(
        bridging,
        BridgeEvent::Bridging { event: event.clone(), mode: Mode::Host, subject: "desk.one.offline_ev".to_owned() }
    );
    let BridgeEvent::NatsDisconnected { reason } =
        wait_event(&bridge, |e| matches!(e, BridgeEvent::NatsDisconnected { .. }))?
    else {
        unreachable!()
    };
    assert!(reason.contains(&url) && reason.contains("unreachable"), "{reason}");
    assert!(reason.contains("local delivery goes on"), "{reason}");
    assert!(bridge.is_running());
    assert!(!bridge.is_nats_connected());

    // The hosted server relays between local clients meanwhile.
    let (a, b) = (host.client(&event)?, host.client(&event)?);
    let sent = SocketMessage::data(event.clone(), Data::new().with("kind", "local").with("n", 1u64));
    a.send(&sent)?;
    assert_eq!(next(&b)?, sent);
    assert_eq!(bridge.stats().published, 0, "{:?}", bridge.stats());

    // Another handle waits for the stop.
    let waiter = bridge.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        futures_lite::future::block_on(waiter.wait_stopped());
        let _ = tx.send(waiter.is_running());
    });
    bridge.stop();
    assert!(!bridge.is_running());
    assert!(!rx.recv_timeout(DEADLINE)?, "wait_stopped returned while the bridge was running");
    let BridgeEvent::Stopped { stats } = wait_event(&bridge, |e| matches!(e, BridgeEvent::Stopped { .. }))? else {
        unreachable!()
    };
    assert_eq!(stats, bridge.stats());
    assert_eq!(stats.published, 0, "{stats:?}");
    bridge.stop(); // idempotent
    assert!(!host.config.socket.socket_dir.join("offline_ev.sock").exists(), "the hosted server outlived the bridge");
    Ok(())
}

#[test]
fn mode_names_and_outbound_only() {
    assert_eq!(Mode::Host.as_str(), "host");
    assert_eq!(Mode::Attach { relay: true }.as_str(), "attach");
    assert_eq!(Mode::Attach { relay: false }.as_str(), "attach");
    assert!(!Mode::Host.outbound_only());
    assert!(!Mode::Attach { relay: true }.outbound_only());
    assert!(Mode::Attach { relay: false }.outbound_only());
    assert_eq!(BridgeStats::default().not_published(), 0);
}

#[test]
fn errors_keep_their_kind_message_and_source() {
    let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
    let err = Error::new(ErrorKind::Runtime, "cannot start").with_source(io);
    assert_eq!((err.kind(), err.to_string()), (ErrorKind::Runtime, "cannot start".to_owned()));
    let source = std::error::Error::source(&err).map(ToString::to_string);
    assert_eq!(source.as_deref(), Some("no such file"));
    assert!(std::error::Error::source(&Error::new(ErrorKind::Tls, "x")).is_none());

    let local = socket_core::Error::new(socket_core::ErrorKind::Timeout, "too slow");
    let shown = local.to_string();
    let err = Error::from(local);
    assert_eq!(err.kind(), ErrorKind::Local(socket_core::ErrorKind::Timeout));
    assert_eq!(err.to_string(), shown);
}

/// A token (from a file's first line, the environment or the builder) and a user and password
/// (from the environment or the builder) are what NATS is given; a wrong one is an Auth error.
#[test]
fn tokens_and_passwords_authenticate_and_wrong_ones_are_refused() -> TestResult {
    let token_nats = NatsServer::start(&NodeOptions {
        extra: "authorization { token: \"s3cret-token\" }\n".to_owned(),
        ..NodeOptions::default()
    })?;
    let user_nats = NatsServer::start(&NodeOptions {
        extra: "authorization { user: desk, password: \"pa55word\" }\n".to_owned(),
        ..NodeOptions::default()
    })?;
    let event = EventName::new("auth_ev")?;
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "  s3cret-token  \nnot part of it\n")?;
    let start =
        |configure: &dyn Fn(BridgeBuilder) -> BridgeBuilder, url: String| -> TestResult<Result<Bridge, Error>> {
            let host = Host::new()?;
            let builder = Bridge::builder(host.transport.clone(), host.config.clone()).event(event.clone()).urls([url]);
            let result = configure(builder).start();
            if let Ok(bridge) = &result {
                wait_event(bridge, |e| matches!(e, BridgeEvent::NatsConnected { .. }))?;
                bridge.stop();
            }
            Ok(result)
        };
    let accepted: [&dyn Fn(BridgeBuilder) -> BridgeBuilder; 3] = [
        &|b| b.token_file(&token_file),
        // The file wins over a token given directly.
        &|b| b.token("wrong").token_file(&token_file),
        &|b| b.secrets_from_env([(TOKEN_ENV, "s3cret-token"), ("HOME", "/elsewhere")]),
    ];
    for configure in accepted {
        start(configure, token_nats.url())?.map_err(|e| fail(format!("refused: {e}")))?;
    }
    let accepted: [&dyn Fn(BridgeBuilder) -> BridgeBuilder; 2] = [
        &|b| b.user_and_password("desk", "pa55word"),
        // An empty value counts as unset: the password given before stays.
        &|b| b.secrets_from_env([(USER_ENV, "desk"), (PASSWORD_ENV, "pa55word"), (TOKEN_ENV, "")]),
    ];
    for configure in accepted {
        start(configure, user_nats.url())?.map_err(|e| fail(format!("refused: {e}")))?;
    }
    let refused: [(&dyn Fn(BridgeBuilder) -> BridgeBuilder, String); 4] = [
        (&|b| b.token("not-the-token"), token_nats.url()),
        (&|b| b, token_nats.url()),
        (&|b| b.user_and_password("desk", "guess"), user_nats.url()),
        // A user without a password in the environment is no credential at all.
        (&|b| b.secrets_from_env([(USER_ENV, "desk"), (PASSWORD_ENV, "")]), user_nats.url()),
    ];
    for (configure, url) in refused {
        let err = match start(configure, url.clone())? {
            Ok(_) => return Err(fail(format!("NATS at {url} let in a bridge with wrong credentials"))),
            Err(e) => e,
        };
        assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
        assert!(err.to_string().contains("refused the authentication"), "{err}");
        assert!(err.to_string().contains(&url), "{err}");
    }
    Ok(())
}

/// Attached to an application's server that does not relay client messages, the bridge is
/// outbound only: what that server broadcasts still reaches the other hosts.
#[test]
fn attached_to_a_server_without_relay_the_bridge_is_outbound_only() -> TestResult {
    let nats = NatsServer::start(&NodeOptions::default())?;
    let event = EventName::new("outbound_ev")?;
    let (a, b) = (Host::new()?, Host::new()?);
    let app = socket_core::Server::new(a.transport.clone(), event.clone(), &a.config)?;
    app.start()?;
    let bridge_a =
        Bridge::builder(a.transport.clone(), a.config.clone()).event(event.clone()).urls([nats.url()]).start()?;
    assert_eq!(bridge_a.modes(), vec![(event.clone(), Mode::Attach { relay: false })]);
    let bridging = wait_event(&bridge_a, |e| matches!(e, BridgeEvent::Bridging { .. }))?;
    assert!(matches!(bridging, BridgeEvent::Bridging { mode: Mode::Attach { relay: false }, .. }), "{bridging:?}");
    wait_event(&bridge_a, |e| matches!(e, BridgeEvent::NatsConnected { .. }))?;
    let bridge_b = b.bridge(&event, &nats.url(), false)?;
    let cb = b.client(&event)?;
    // Broadcasts until one crosses: b's subscription is then in place.
    let deadline = std::time::Instant::now() + DEADLINE;
    let mut n = 0u64;
    let got = loop {
        n += 1;
        app.broadcast(&SocketMessage::data(event.clone(), Data::new().with("kind", "status").with("n", n)))?;
        if let Some(m) = cb.receive(Some(Duration::from_millis(300)))? {
            break m;
        }
        if std::time::Instant::now() > deadline {
            return Err(fail("no broadcast of the application's server crossed"));
        }
    };
    assert_eq!(got.data.get_str("kind"), Some("status"));
    assert!(bridge_a.stats().published >= 1, "{:?}", bridge_a.stats());
    bridge_a.stop();
    drop(bridge_b);
    app.stop()?;
    Ok(())
}

/// Dropping the last handle stops the bridge: the state stream ends with `Stopped` and the
/// hosted server is gone. `start_async` and `stop_async` are the same bridge without blocking.
#[test]
fn dropping_the_last_handle_stops_the_bridge() -> TestResult {
    let host = Host::new()?;
    let event = EventName::new("dropped_ev")?;
    let builder =
        Bridge::builder(host.transport.clone(), host.config.clone()).event(event.clone()).urls([unreachable_url()?]);
    let bridge = futures_lite::future::block_on(builder.start_async())?;
    let socket = host.config.socket.socket_dir.join("dropped_ev.sock");
    assert!(socket.exists(), "the bridge does not host the event");
    let events = bridge.events();
    drop(bridge);
    super::poll("the Stopped event", || loop {
        match events.try_recv() {
            Ok(BridgeEvent::Stopped { .. }) => return Some(()),
            Ok(_) => {}
            Err(_) => return None,
        }
    })?;
    super::poll("the hosted server's socket removed", || (!socket.exists()).then_some(()))?;

    let builder =
        Bridge::builder(host.transport.clone(), host.config.clone()).event(event.clone()).urls([unreachable_url()?]);
    let bridge = futures_lite::future::block_on(builder.start_async())?;
    futures_lite::future::block_on(bridge.stop_async());
    assert!(!bridge.is_running() && !socket.exists());
    Ok(())
}

/// The builder's `Debug` shows its settings but never a token or a password.
#[test]
fn debug_output_never_shows_secrets() -> TestResult {
    let host = Host::new()?;
    let builder = Bridge::builder(host.transport.clone(), host.config.clone())
        .token("tok-3f9a")
        .user_and_password("desk-user", "pw-77c1")
        .subject_prefix("shown.prefix");
    let shown = format!("{builder:?}");
    assert!(shown.contains("shown.prefix") && shown.contains("desk-user"), "{shown}");
    assert!(shown.contains("<secret>"), "{shown}");
    assert!(!shown.contains("tok-3f9a") && !shown.contains("pw-77c1"), "a secret is shown: {shown}");
    Ok(())
}

/// A TLS CA file makes TLS required: against a server without TLS the start fails as a TLS
/// error that points at the CA setting, and nothing is sent in plain text.
#[test]
fn a_tls_ca_file_requires_tls_and_a_plain_server_is_a_tls_error() -> TestResult {
    let nats = NatsServer::start(&NodeOptions::default())?;
    let host = Host::new()?;
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "")?;
    let builder = Bridge::builder(host.transport.clone(), host.config.clone())
        .event(EventName::new("tls_ev")?)
        .urls([nats.url()])
        .tls_ca_file(&ca);
    assert_bridge_err(builder, ErrorKind::Tls, &["TLS with NATS at", &nats.url(), "socket.nats.tls_ca_file"])?;
    assert!(!host.config.socket.socket_dir.join("tls_ev.sock").exists(), "the hosted server outlived the failed start");
    Ok(())
}

/// A user that may not publish on the bridge's subject: the server's refusal reaches the
/// state stream as a warning, and the bridge keeps running.
#[test]
fn a_server_error_is_a_warning_and_the_bridge_goes_on() -> TestResult {
    let nats = NatsServer::start(&NodeOptions {
        extra: "authorization { users: [ { user: reader, password: \"pw\", permissions: { publish: { deny: \"socket.>\" } } } ] }\n"
            .to_owned(),
        ..NodeOptions::default()
    })?;
    let host = Host::new()?;
    let event = EventName::new("denied_ev")?;
    let bridge = Bridge::builder(host.transport.clone(), host.config.clone())
        .event(event.clone())
        .urls([nats.url()])
        .user_and_password("reader", "pw")
        .start()?;
    wait_event(&bridge, |e| matches!(e, BridgeEvent::NatsConnected { .. }))?;
    let client = host.client(&event)?;
    client.send(&SocketMessage::data(event.clone(), Data::new().with("kind", "denied")))?;
    let BridgeEvent::Warning { message } = wait_event(&bridge, |e| matches!(e, BridgeEvent::Warning { .. }))? else {
        unreachable!()
    };
    assert!(message.starts_with("NATS server error"), "{message}");
    assert!(message.to_lowercase().contains("permissions violation"), "{message}");
    assert!(message.contains("socket.denied_ev"), "{message}");
    assert!(bridge.is_running());
    Ok(())
}
