//! The bridge's library API against real `nats-server` processes (started on free ports,
//! each with its own temp directory, killed by PID when the test ends). Local hosts are
//! separate socket directories; every wait is for a message or an event, with a deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use socket_core::codec::encode_frame;
use socket_core::{Client, Config, Data, EventName, MessageType, SocketMessage, Transport};
use socket_nats::{Bridge, BridgeEvent, ErrorKind, Mode};
use socket_tests::nats_server::{NatsServer, NodeOptions};

mod builder;

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const DEADLINE: Duration = Duration::from_secs(10);

fn fail(s: impl Into<String>) -> Box<dyn std::error::Error + Send + Sync> {
    s.into().into()
}

/// One simulated host: a socket directory and its configuration.
struct Host {
    _dir: tempfile::TempDir,
    config: Config,
    transport: Arc<dyn Transport>,
}

impl Host {
    fn new() -> TestResult<Host> {
        let dir = tempfile::Builder::new().prefix("snats").tempdir()?;
        let mut config = Config::default();
        config.socket.socket_dir = dir.path().to_path_buf();
        let transport = socket_factory::transport(&socket_factory::default_registry(), "unix")?;
        Ok(Host { _dir: dir, config, transport })
    }

    fn bridge(&self, event: &EventName, url: &str, retain: bool) -> TestResult<Bridge> {
        let bridge = Bridge::builder(self.transport.clone(), self.config.clone())
            .event(event.clone())
            .urls([url])
            .retain(retain)
            .start()?;
        wait_event(&bridge, |e| matches!(e, BridgeEvent::NatsConnected { .. }))?;
        Ok(bridge)
    }

    fn client(&self, event: &EventName) -> TestResult<Client> {
        Ok(Client::connect(self.transport.clone(), event.clone(), &self.config)?)
    }
}

/// Polls `f` until it gives a value, within the deadline (a wait for a condition, not a
/// sleep that stands for one).
fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> TestResult<T> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(fail(format!("{what} did not happen within {DEADLINE:?}")));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wait_event(bridge: &Bridge, pred: impl Fn(&BridgeEvent) -> bool) -> TestResult<BridgeEvent> {
    let rx = bridge.events();
    poll("a bridge event", || loop {
        match rx.try_recv() {
            Ok(e) if pred(&e) => return Some(e),
            Ok(_) => {}
            Err(_) => return None,
        }
    })
}

fn msg(event: &EventName, kind: &str, n: u64) -> SocketMessage {
    SocketMessage::data(event.clone(), Data::new().with("kind", kind).with("n", n))
}

/// The next DATA message `client` receives, within the deadline.
fn next(client: &Client) -> TestResult<SocketMessage> {
    client.receive(Some(DEADLINE))?.ok_or_else(|| fail("no message within the deadline"))
}

/// Sends warm-ups through `from` until one reaches `to`; returns the later ones that
/// arrived meanwhile (none is left unread).
fn warm_up(event: &EventName, from: &Client, to: &Client) -> TestResult {
    for k in 0..60 {
        from.send(&msg(event, "warmup", k))?;
        if let Some(m) = to.receive(Some(Duration::from_millis(300)))? {
            if m.data.get_str("kind") == Some("warmup") {
                // Drain the warm-ups still in flight: they come before anything sent later.
                from.send(&msg(event, "warmup-end", 0))?;
                loop {
                    let m = next(to)?;
                    if m.data.get_str("kind") == Some("warmup-end") {
                        return Ok(());
                    }
                }
            }
        }
    }
    Err(fail("no warm-up crossed"))
}

#[test]
fn an_oversize_message_is_counted_and_the_bridge_keeps_serving() -> TestResult {
    let nats = NatsServer::start(&NodeOptions { max_payload: Some(2048), ..NodeOptions::default() })?;
    let event = EventName::new("big_ev")?;
    let (a, b) = (Host::new()?, Host::new()?);
    let (bridge_a, _bridge_b) = (a.bridge(&event, &nats.url(), false)?, b.bridge(&event, &nats.url(), false)?);
    let (ca, cb) = (a.client(&event)?, b.client(&event)?);
    warm_up(&event, &ca, &cb)?;
    let big = SocketMessage::data(event.clone(), Data::new().with("kind", "big").with("blob", "x".repeat(4096)));
    ca.send(&big)?;
    ca.send(&msg(&event, "after", 1))?;
    let got = next(&cb)?;
    assert_eq!(got.data.get_str("kind"), Some("after"), "the oversize message crossed or the next one did not");
    assert_eq!(bridge_a.stats().oversize, 1, "{:?}", bridge_a.stats());
    assert_eq!(bridge_a.stats().not_published(), 1);
    assert!(bridge_a.is_nats_connected(), "the bridge lost NATS over an oversize message");
    Ok(())
}

#[test]
fn bad_payloads_from_nats_are_dropped_counted_and_never_delivered() -> TestResult {
    let nats = NatsServer::start(&NodeOptions::default())?;
    let event = EventName::new("bad_ev")?;
    let host = Host::new()?;
    let bridge = host.bridge(&event, &nats.url(), false)?;
    assert_eq!(bridge.modes(), vec![(event.clone(), Mode::Host)]);
    let subject = bridge.subject(&event).ok_or("no subject")?.to_owned();
    let client = host.client(&event)?;
    let good = |kind: &str, n| encode_frame(&msg(&event, kind, n), usize::MAX).map(|f| f.body().to_vec());
    let other = encode_frame(&msg(&EventName::new("other_ev")?, "x", 0), usize::MAX)?.body().to_vec();
    let ping = SocketMessage::new(
        event.clone(),
        MessageType::Control,
        Data::new().with("control", "ping").with("nonce", 1u64),
    );
    let ping = encode_frame(&ping, usize::MAX)?.body().to_vec();
    let valid_msg = msg(&event, "valid", 7);
    let valid = encode_frame(&valid_msg, usize::MAX)?.body().to_vec();
    let truncated = valid[..valid.len() - 3].to_vec();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let nc = async_nats::connect(nats.url()).await?;
        // Warm-ups until the local client sees one: the bridge's subscription is in place.
        let mut warmed = false;
        for k in 0..60 {
            nc.publish(subject.clone(), good("warmup", k)?.into()).await?;
            nc.flush().await?;
            if let Some(m) = client.receive_async(Some(Duration::from_millis(300))).await? {
                warmed = m.data.get_str("kind") == Some("warmup");
                if warmed {
                    break;
                }
            }
        }
        if !warmed {
            return Err(fail("no warm-up arrived"));
        }
        nc.publish(subject.clone(), good("warmup-end", 0)?.into()).await?;
        for bad in [b"not msgpack at all".to_vec(), truncated, other, ping, Vec::new()] {
            nc.publish(subject.clone(), bad.into()).await?;
        }
        nc.publish(subject.clone(), valid.clone().into()).await?;
        nc.flush().await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })?;
    loop {
        let m = next(&client)?;
        match m.data.get_str("kind") {
            Some("warmup") => continue,
            Some("warmup-end") => break,
            other => return Err(fail(format!("unexpected {other:?}"))),
        }
    }
    let m = next(&client)?;
    assert_eq!(m, valid_msg, "only the valid message is delivered, unchanged");
    assert_eq!(bridge.stats().bad_payload, 5, "{:?}", bridge.stats());
    assert!(client.receive(Some(Duration::from_millis(200)))?.is_none(), "something half-valid was delivered");
    Ok(())
}

#[test]
fn retain_gives_a_host_that_joins_late_the_last_message_first() -> TestResult {
    let nats = NatsServer::start(&NodeOptions { jetstream: true, ..NodeOptions::default() })?;
    let event = EventName::new("retain_ev")?;
    let a = Host::new()?;
    let bridge_a = a.bridge(&event, &nats.url(), true)?;
    let ca = a.client(&event)?;
    for n in 1..=3 {
        ca.send(&msg(&event, "value", n))?;
    }
    poll("three messages published", || (bridge_a.stats().published >= 3).then_some(()))?;
    // Host b joins after the last message: its bridge, then a local client.
    let b = Host::new()?;
    let bridge_b = b.bridge(&event, &nats.url(), true)?;
    let cb = b.client(&event)?;
    let first = next(&cb)?;
    assert_eq!(first.data.get("n").and_then(|v| v.as_u64()), Some(3), "{first:?}");
    // The bridge counts a retained message after handing it to the local server, so the
    // client may see it a moment before the counter does.
    poll("the retained message counted", || (bridge_b.stats().retained >= 1).then_some(()))?;
    assert_eq!(bridge_b.stats().retained, 1, "{:?}", bridge_b.stats());
    Ok(())
}

#[test]
fn retain_without_jetstream_warns_and_the_bridge_goes_on_without_it() -> TestResult {
    let nats = NatsServer::start(&NodeOptions { jetstream: false, ..NodeOptions::default() })?;
    let event = EventName::new("nojs_ev")?;
    let (a, b) = (Host::new()?, Host::new()?);
    let bridge_a = a.bridge(&event, &nats.url(), true)?;
    let bridge_b = b.bridge(&event, &nats.url(), true)?;
    // Each says that --retain does not work, and why, as a warning (not an error, no exit).
    for bridge in [&bridge_a, &bridge_b] {
        let warning = wait_event(
            bridge,
            |e| matches!(e, BridgeEvent::Warning { message } if message.starts_with("--retain does not work")),
        )?;
        let BridgeEvent::Warning { message } = warning else { unreachable!() };
        assert!(message.contains("JetStream"), "{message}");
        assert!(bridge.is_running() && bridge.is_nats_connected());
    }
    // Plain cross-host flow goes on, both ways, complete and in order.
    let (ca, cb) = (a.client(&event)?, b.client(&event)?);
    // A second client on a: what ca sends goes to it, not to the offline queue of the
    // hosted server (which a late client would receive first, before the retained message).
    let watcher = a.client(&event)?;
    warm_up(&event, &ca, &cb)?;
    warm_up(&event, &cb, &ca)?;
    for (from, to) in [(&ca, &cb), (&cb, &ca)] {
        for n in 0..20 {
            from.send(&msg(&event, "data", n))?;
        }
        for n in 0..20 {
            let m = next(to)?;
            assert_eq!((m.data.get_str("kind"), m.data.get("n").and_then(|v| v.as_u64())), (Some("data"), Some(n)));
        }
    }
    // Local retain (the hosted server's retain_last) does not need JetStream: a local
    // client that connects later gets the last local message first.
    ca.send(&msg(&event, "last", 7))?;
    while next(&watcher)?.data.get_str("kind") != Some("last") {} // the server has broadcast it
    let late = a.client(&event)?;
    let first = next(&late)?;
    assert_eq!((first.data.get_str("kind"), first.data.get("n").and_then(|v| v.as_u64())), (Some("last"), Some(7)));
    // A bridge that starts later has nothing retained across hosts to deliver.
    let c = Host::new()?;
    let bridge_c = c.bridge(&event, &nats.url(), true)?;
    wait_event(&bridge_c, |e| matches!(e, BridgeEvent::Warning { message } if message.starts_with("--retain")))?;
    let cc = c.client(&event)?;
    assert!(cc.receive(Some(Duration::from_millis(300)))?.is_none(), "something was retained without JetStream");
    for bridge in [&bridge_a, &bridge_b, &bridge_c] {
        let s = bridge.stats();
        assert_eq!((s.retained, s.bad_payload, s.not_published()), (0, 0, 0), "{s:?}");
    }
    Ok(())
}

#[test]
fn invalid_settings_are_config_errors() -> TestResult {
    let host = Host::new()?;
    let event = EventName::new("cfg_ev")?;
    for url in ["http://x:1", "nats://x:0"] {
        let err = Bridge::builder(host.transport.clone(), host.config.clone()).event(event.clone()).urls([url]).start();
        assert_eq!(err.map(|_| ()).unwrap_err().kind(), ErrorKind::Config, "{url}");
    }
    let err = Bridge::builder(host.transport.clone(), host.config.clone()).start();
    assert_eq!(err.map(|_| ()).unwrap_err().kind(), ErrorKind::Config);
    Ok(())
}

/// A TCP relay in front of a NATS node: the network path of one host, which the test
/// can cut (every connection closed, new ones refused) and restore. NATS itself stays up.
struct Path {
    port: u16,
    blocked: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Path {
    fn to(target: u16) -> TestResult<Path> {
        use std::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let blocked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns: Arc<std::sync::Mutex<Vec<TcpStream>>> = Arc::default();
        let (b, c) = (blocked.clone(), conns.clone());
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { continue };
                if b.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: the connection is closed at once
                }
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                let pairs = [(inbound.try_clone(), outbound.try_clone()), (outbound.try_clone(), inbound.try_clone())];
                for (from, to) in pairs {
                    if let (Ok(mut from), Ok(mut to)) = (from, to) {
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut from, &mut to);
                            let _ = to.shutdown(std::net::Shutdown::Both);
                        });
                    }
                }
                let mut list = c.lock().unwrap_or_else(|p| p.into_inner());
                list.push(inbound);
                list.push(outbound);
            }
        });
        Ok(Path { port, blocked, conns })
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn cut(&self) {
        self.blocked.store(true, std::sync::atomic::Ordering::SeqCst);
        for s in self.conns.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.blocked.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn during_an_outage_the_oldest_are_dropped_and_the_count_is_exactly_what_did_not_cross() -> TestResult {
    let nats = NatsServer::start(&NodeOptions::default())?;
    let path = Path::to(nats.port())?;
    let event = EventName::new("outage_ev")?;
    let (a, b) = (Host::new()?, Host::new()?);
    let bridge_a = Bridge::builder(a.transport.clone(), a.config.clone())
        .event(event.clone())
        .urls([path.url()])
        .outbound_buffer(10)
        .start()?;
    wait_event(&bridge_a, |e| matches!(e, BridgeEvent::NatsConnected { .. }))?;
    let _bridge_b = b.bridge(&event, &nats.url(), false)?;
    let (ca, cb) = (a.client(&event)?, b.client(&event)?);
    let watcher = a.client(&event)?; // a second local client on host a
    warm_up(&event, &ca, &cb)?;
    while watcher.try_receive()?.is_some() {}

    path.cut();
    wait_event(&bridge_a, |e| matches!(e, BridgeEvent::NatsDisconnected { .. }))?;
    assert!(!bridge_a.is_nats_connected());
    const HELD: u64 = 30;
    for n in 0..HELD {
        ca.send(&msg(&event, "held", n))?;
    }
    // Local delivery is untouched by the outage.
    for n in 0..HELD {
        assert_eq!(next(&watcher)?.data.get("n").and_then(|v| v.as_u64()), Some(n));
    }
    poll("20 dropped", || (bridge_a.stats().dropped == HELD - 10).then_some(()))?;

    path.restore();
    wait_event(&bridge_a, |e| matches!(e, BridgeEvent::NatsConnected { .. }))?;
    ca.send(&msg(&event, "after", 0))?;
    let mut crossed = Vec::new();
    loop {
        let m = next(&cb)?;
        match m.data.get_str("kind") {
            Some("held") => crossed.push(m.data.get("n").and_then(|v| v.as_u64()).unwrap_or(u64::MAX)),
            Some("after") => break,
            other => return Err(fail(format!("unexpected {other:?}"))),
        }
    }
    assert_eq!(crossed, (HELD - 10..HELD).collect::<Vec<_>>(), "the newest 10 cross, in order");
    let stats = bridge_a.stats();
    assert_eq!(stats.dropped, HELD - crossed.len() as u64, "{stats:?}");
    assert_eq!(stats.not_published(), stats.dropped, "{stats:?}");
    Ok(())
}

/// Two hosts whose local queues hold a whole burst: a local client that falls behind is
/// never disconnected as a slow consumer (what is tested is the bridge, not them).
fn burst_hosts() -> TestResult<(Host, Host)> {
    let (mut a, mut b) = (Host::new()?, Host::new()?);
    for h in [&mut a, &mut b] {
        h.config.socket.outbound_queue_size = 65_536;
        h.config.socket.outbound_queue_bytes = 256 << 20;
        h.config.socket.receive_buffer_size = 65_536;
    }
    Ok((a, b))
}

/// Sends `n` messages of kind `burst` from `from` on a thread while `to` reads them: the
/// sequence numbers `to` received, in arrival order, up to the `burst-end` sentinel.
fn burst_across(event: &EventName, from: Client, to: &Client, n: u64) -> TestResult<Vec<u64>> {
    let sender = {
        let event = event.clone();
        std::thread::spawn(move || -> TestResult {
            for k in 0..n {
                from.send(&msg(&event, "burst", k))?;
            }
            from.send(&msg(&event, "burst-end", n))?;
            Ok(())
        })
    };
    let mut got = Vec::new();
    loop {
        let m = next(to)?;
        match m.data.get_str("kind") {
            Some("burst") => got.push(m.data.get("n").and_then(|v| v.as_u64()).unwrap_or(u64::MAX)),
            Some("burst-end") => break,
            other => return Err(fail(format!("unexpected {other:?}"))),
        }
    }
    sender.join().map_err(|_| fail("the sender panicked"))??;
    Ok(got)
}

/// The publisher takes the outbound buffer in batches and the local readers fill it in
/// batches: a burst many batches long, through a buffer smaller than one batch, crosses
/// whole and in order while NATS is connected (readers wait for room, nothing is dropped).
#[test]
fn a_burst_larger_than_the_outbound_buffer_crosses_whole_and_in_order_while_connected() -> TestResult {
    let nats = NatsServer::start(&NodeOptions::default())?;
    let event = EventName::new("burst_ev")?;
    let (a, b) = burst_hosts()?;
    let bridge_a = Bridge::builder(a.transport.clone(), a.config.clone())
        .event(event.clone())
        .urls([nats.url()])
        .outbound_buffer(16)
        .start()?;
    wait_event(&bridge_a, |e| matches!(e, BridgeEvent::NatsConnected { .. }))?;
    let bridge_b = b.bridge(&event, &nats.url(), false)?;
    let (ca, cb) = (a.client(&event)?, b.client(&event)?);
    warm_up(&event, &ca, &cb)?;
    // A bridge counts a message just after handing it on: wait until the counts of the
    // warm-ups have settled (everything published was received).
    let settled = || {
        let (sa, sb) = (bridge_a.stats(), bridge_b.stats());
        (sa.published == sb.received).then_some((sa.published, sb.received))
    };
    let before = poll("the warm-ups counted", settled)?;

    const N: u64 = 5000;
    let got = burst_across(&event, ca, &cb, N)?;
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "all of them, in order, once");
    let after = poll("the burst counted", || settled().filter(|&(p, _)| p > before.0 + N))?;
    assert_eq!(after, (before.0 + N + 1, before.1 + N + 1), "the burst and its sentinel, each once");
    assert_eq!(bridge_a.stats().dropped, 0, "{:?}", bridge_a.stats());
    Ok(())
}

/// The same in attach mode: the bridge's client takes every relayed message already
/// buffered at once.
#[test]
fn in_attach_mode_a_burst_crosses_whole_and_in_order() -> TestResult {
    let nats = NatsServer::start(&NodeOptions::default())?;
    let event = EventName::new("burst_attach_ev")?;
    let (a, b) = burst_hosts()?;
    let mut relay = a.config.clone();
    relay.socket.relay = true;
    let app = socket_core::Server::new(a.transport.clone(), event.clone(), &relay)?;
    app.start()?;
    let bridge_a = Bridge::builder(a.transport.clone(), a.config.clone())
        .event(event.clone())
        .urls([nats.url()])
        .outbound_buffer(16)
        .start()?;
    assert!(matches!(bridge_a.modes()[0].1, Mode::Attach { relay: true }), "{:?}", bridge_a.modes());
    wait_event(&bridge_a, |e| matches!(e, BridgeEvent::NatsConnected { .. }))?;
    let bridge_b = b.bridge(&event, &nats.url(), false)?;
    let (ca, cb) = (a.client(&event)?, b.client(&event)?);
    warm_up(&event, &ca, &cb)?;
    // A bridge counts a message just after handing it on: wait until the counts of the
    // warm-ups have settled (everything published was received).
    let settled = || {
        let (sa, sb) = (bridge_a.stats(), bridge_b.stats());
        (sa.published == sb.received).then_some(sa.published)
    };
    let before = poll("the warm-ups counted", settled)?;

    const N: u64 = 3000;
    let got = burst_across(&event, ca, &cb, N)?;
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "all of them, in order, once");
    let after = poll("the burst counted", || settled().filter(|&p| p > before + N))?;
    assert_eq!(after, before + N + 1, "the burst and its sentinel, each once");
    assert_eq!(bridge_a.stats().dropped, 0, "{:?}", bridge_a.stats());
    drop(bridge_b);
    app.stop()?;
    Ok(())
}

/// NATS decentralized auth, made here: an operator, an account and users as NKeys, and the
/// JWTs that sign them (`ed25519-nkey`, what `nsc` writes).
mod creds {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use nkeys::KeyPair;
    use serde_json::{json, Value};

    /// A JWT for `sub`, issued (signed) by `issuer`, with `nats` claims.
    pub(super) fn jwt(issuer: &KeyPair, sub: &str, name: &str, nats: Value) -> super::TestResult<String> {
        let header = URL_SAFE_NO_PAD.encode(json!({ "typ": "JWT", "alg": "ed25519-nkey" }).to_string());
        let iat = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
        let claims = json!({
            "jti": format!("{:032X}", fastrand::u128(..)),
            "iat": iat,
            "iss": issuer.public_key(),
            "sub": sub,
            "name": name,
            "nats": nats,
        });
        let signed = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = issuer.sign(signed.as_bytes()).map_err(|e| super::fail(e.to_string()))?;
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    pub(super) fn unlimited_account() -> Value {
        json!({
            "limits": { "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                        "wildcards": true, "conn": -1, "leaf": -1 },
            "type": "account",
            "version": 2
        })
    }

    pub(super) fn user() -> Value {
        json!({ "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2 })
    }

    /// The text of a `.creds` file.
    pub(super) fn file(user_jwt: &str, seed: &str) -> String {
        format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\
             NKEYs are sensitive and should be treated as secrets.\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
             *************************************************************\n"
        )
    }
}

/// `.creds` files (NKey/JWT) against a nats-server in operator mode that knows one account:
/// two bridges with users of that account exchange messages; a user of an account the
/// server does not know, or no credentials at all, is refused at start (Auth).
#[test]
fn creds_files_authenticate_and_an_unknown_account_is_refused() -> TestResult {
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let stranger = nkeys::KeyPair::new_account();
    let op_jwt =
        creds::jwt(&operator, &operator.public_key(), "op", serde_json::json!({ "type": "operator", "version": 2 }))?;
    let acc_jwt = creds::jwt(&operator, &account.public_key(), "acc", creds::unlimited_account())?;
    let nats = NatsServer::start(&NodeOptions {
        extra: format!(
            "operator: {op_jwt}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {acc_jwt}\n}}\n",
            account.public_key()
        ),
        ..NodeOptions::default()
    })?;
    let dir = tempfile::tempdir()?;
    let write_creds = |name: &str, issuer: &nkeys::KeyPair| -> TestResult<std::path::PathBuf> {
        let user = nkeys::KeyPair::new_user();
        let jwt = creds::jwt(issuer, &user.public_key(), name, creds::user())?;
        let path = dir.path().join(format!("{name}.creds"));
        std::fs::write(&path, creds::file(&jwt, &user.seed().map_err(|e| fail(e.to_string()))?))?;
        Ok(path)
    };
    let (creds_a, creds_b, creds_x) =
        (write_creds("a", &account)?, write_creds("b", &account)?, write_creds("x", &stranger)?);

    let event = EventName::new("creds_ev")?;
    let (a, b) = (Host::new()?, Host::new()?);
    let start = |host: &Host, creds: &std::path::Path| {
        Bridge::builder(host.transport.clone(), host.config.clone())
            .event(event.clone())
            .urls([nats.url()])
            .credentials_file(creds)
            .start()
    };
    let bridge_a = start(&a, &creds_a)?;
    wait_event(&bridge_a, |e| matches!(e, BridgeEvent::NatsConnected { .. }))?;
    let bridge_b = start(&b, &creds_b)?;
    wait_event(&bridge_b, |e| matches!(e, BridgeEvent::NatsConnected { .. }))?;
    let (ca, cb) = (a.client(&event)?, b.client(&event)?);
    warm_up(&event, &ca, &cb)?;
    ca.send(&msg(&event, "signed", 7))?;
    let m = next(&cb)?;
    assert_eq!((m.data.get_str("kind"), m.data.get("n").and_then(|v| v.as_u64())), (Some("signed"), Some(7)));

    let x = Host::new()?;
    let refused = start(&x, &creds_x).err().ok_or_else(|| fail("a user of an unknown account was let in"))?;
    assert_eq!(refused.kind(), ErrorKind::Auth, "{refused}");
    let anonymous =
        Bridge::builder(x.transport.clone(), x.config.clone()).event(event.clone()).urls([nats.url()]).start();
    let refused = anonymous.err().ok_or_else(|| fail("a bridge without credentials was let in"))?;
    assert_eq!(refused.kind(), ErrorKind::Auth, "{refused}");
    Ok(())
}
