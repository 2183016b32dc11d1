//! What a case runs with: [`Ctx`] (fresh configuration, servers and clients in the mode of
//! the run), waiting helpers, and [`Raw`] connections that speak the wire protocol by hand.

use super::*;

/// The context of one running case: fresh configuration and API helpers
/// that drive the async or the blocking face according to the mode.
pub struct Ctx {
    pub(super) h: Harness,
    pub(super) config: Config,
    pub(super) _fixture: Fixture,
}

impl fmt::Debug for Ctx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx").field("harness", &self.h).finish_non_exhaustive()
    }
}

/// A generous bound for things that should happen "at once".
pub(super) const SOON: Duration = Duration::from_secs(5);
/// How long to watch for something that must not happen.
pub(super) const QUIET: Duration = Duration::from_millis(300);

impl Ctx {
    /// The mode of this run.
    pub fn mode(&self) -> Mode {
        self.h.mode
    }

    /// The event every case uses (the configuration keeps cases apart).
    pub fn event(&self) -> EventName {
        EventName::new("conformance").expect("valid event name")
    }

    /// The case's configuration.
    pub fn config(&self) -> Config {
        self.config.clone()
    }

    /// A DATA message with `data = {"n": n}`.
    pub fn data(&self, n: u64) -> SocketMessage {
        SocketMessage::data(self.event(), Data::new().with("n", n))
    }

    /// A server (not started) with options adjusted by `f`.
    ///
    /// # Errors
    ///
    /// If the server cannot be created.
    pub fn server(&self, f: impl FnOnce(&mut ServerOptions)) -> Result<Server, Failure> {
        let mut opts = ServerOptions::from_config(&self.config, self.h.transport.as_ref())?;
        f(&mut opts);
        Ok(Server::with_options(self.h.transport.clone(), self.event(), self.config.clone(), opts)?)
    }

    /// A started server with options adjusted by `f`.
    ///
    /// # Errors
    ///
    /// If the server cannot be created or started.
    pub async fn started(&self, f: impl FnOnce(&mut ServerOptions)) -> Result<Server, Failure> {
        let server = self.server(f)?;
        self.start(&server).await?;
        Ok(server)
    }

    /// Starts `server` through the API of the mode.
    ///
    /// # Errors
    ///
    /// As [`Server::start`].
    pub async fn start(&self, server: &Server) -> socket_core::Result<()> {
        match self.mode() {
            Mode::Async => server.start_async().await,
            Mode::Blocking => server.start(),
        }
    }

    /// Stops `server` through the API of the mode.
    ///
    /// # Errors
    ///
    /// As [`Server::stop`].
    pub async fn stop(&self, server: &Server) -> socket_core::Result<()> {
        match self.mode() {
            Mode::Async => server.stop_async().await,
            Mode::Blocking => server.stop(),
        }
    }

    /// Client options for this case: fast reconnects so cases stay short.
    ///
    /// # Errors
    ///
    /// If the configuration is invalid.
    pub fn client_options(&self) -> Result<ClientOptions, Failure> {
        let mut o = ClientOptions::from_config(&self.config)?;
        o.reconnect_initial_delay = Duration::from_millis(20);
        o.reconnect_max_delay = Duration::from_millis(200);
        Ok(o)
    }

    /// Connects a client with options adjusted by `f`, through the API of the mode.
    ///
    /// # Errors
    ///
    /// As [`Client::connect`].
    pub async fn connect_with(
        &self,
        f: impl FnOnce(&mut ClientOptions),
    ) -> Result<socket_core::Result<Client>, Failure> {
        let mut o = self.client_options()?;
        f(&mut o);
        let (t, e, c) = (self.h.transport.clone(), self.event(), self.config.clone());
        Ok(match self.mode() {
            Mode::Async => Client::connect_with_async(t, e, c, o).await,
            Mode::Blocking => Client::connect_with(t, e, c, o),
        })
    }

    /// Connects a client with the case's options.
    ///
    /// # Errors
    ///
    /// If connecting fails.
    pub async fn connect(&self) -> Result<Client, Failure> {
        Ok(self.connect_with(|_| {}).await??)
    }

    /// Sends through the API of the mode.
    ///
    /// # Errors
    ///
    /// As [`Client::send`].
    pub async fn send(&self, client: &Client, msg: &SocketMessage) -> socket_core::Result<()> {
        match self.mode() {
            Mode::Async => client.send_async(msg).await,
            Mode::Blocking => client.send(msg),
        }
    }

    /// Receives through the API of the mode.
    ///
    /// # Errors
    ///
    /// As [`Client::receive`].
    pub async fn receive(&self, client: &Client, timeout: Duration) -> socket_core::Result<Option<SocketMessage>> {
        match self.mode() {
            Mode::Async => client.receive_async(Some(timeout)).await,
            Mode::Blocking => client.receive(Some(timeout)),
        }
    }

    /// Receives one message or fails after 5 s.
    ///
    /// # Errors
    ///
    /// If nothing arrives in time or the client closed.
    pub async fn expect_message(&self, client: &Client, what: &str) -> Result<SocketMessage, Failure> {
        match self.receive(client, SOON).await {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(Failure::new(format!("no message within {SOON:?} ({what})"))),
            Err(e) => Err(Failure::new(format!("receive failed ({what}): {e}"))),
        }
    }

    /// Receives the DATA message `{"n": n}` or fails.
    ///
    /// # Errors
    ///
    /// If another message, none, or an error comes.
    pub async fn expect_n(&self, client: &Client, n: u64) -> CaseResult {
        let m = self.expect_message(client, &format!("waiting for n = {n}")).await?;
        ensure!(num(&m) == Some(n), "expected the message n = {n}, got n = {:?} ({:?})", num(&m), m);
        Ok(())
    }

    /// Checks that no message arrives for a short while.
    ///
    /// # Errors
    ///
    /// If a message arrives.
    pub async fn expect_nothing(&self, client: &Client, what: &str) -> CaseResult {
        match self.receive(client, QUIET).await {
            Ok(None) => Ok(()),
            Ok(Some(m)) => Err(Failure::new(format!("unexpected message ({what}): n = {:?} {m:?}", num(&m)))),
            Err(e) => Err(Failure::new(format!("unexpected error ({what}): {e}"))),
        }
    }

    /// Disconnects through the API of the mode.
    pub async fn disconnect(&self, client: &Client) {
        match self.mode() {
            Mode::Async => client.disconnect_async().await,
            Mode::Blocking => client.disconnect(),
        }
    }

    /// A raw byte-stream connection to the server, speaking no protocol by itself.
    ///
    /// # Errors
    ///
    /// If the transport cannot connect.
    pub async fn raw(&self) -> Result<Raw, Failure> {
        let endpoints = self.h.transport.endpoints(&self.event(), &self.config)?;
        let ep = endpoints.first().ok_or_else(|| Failure::new("the transport gave no endpoint"))?;
        let conn = self.h.transport.connect(ep, &self.config).await?;
        Ok(Raw {
            reader: conn.reader,
            writer: conn.writer,
            dec: FrameDecoder::new(Limits::default()),
            event: self.event(),
        })
    }
}

/// `data.n` of a message.
pub fn num(m: &SocketMessage) -> Option<u64> {
    m.data.get("n").and_then(|v| v.as_u64())
}

/// Waits for a server event matching `pred`, skipping others.
///
/// # Errors
///
/// If none comes within `timeout`.
pub async fn expect_event(
    events: &Receiver<ServerEvent>,
    timeout: Duration,
    what: &str,
    mut pred: impl FnMut(&ServerEvent) -> bool,
) -> Result<ServerEvent, Failure> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = future::or(async { events.recv().await.ok() }, async {
            async_io::Timer::after(left).await;
            None
        })
        .await
        .ok_or_else(|| Failure::new(format!("no server event within {timeout:?}: {what}")))?;
        if pred(&ev) {
            return Ok(ev);
        }
    }
}

/// Waits until `client` reaches `state`.
///
/// # Errors
///
/// If it does not within `timeout`.
pub async fn expect_state(
    changes: &Receiver<ConnectionState>,
    state: ConnectionState,
    timeout: Duration,
) -> Result<(), Failure> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let got = future::or(async { changes.recv().await.ok() }, async {
            async_io::Timer::after(left).await;
            None
        })
        .await;
        match got {
            Some(s) if s == state => return Ok(()),
            Some(_) => {}
            None => return Err(Failure::new(format!("client did not reach state {state:?} within {timeout:?}"))),
        }
    }
}

/// What a [`Raw`] connection read.
#[derive(Debug)]
pub enum RawEvent {
    /// A decoded message.
    Message(SocketMessage),
    /// The server closed the connection.
    Eof,
    /// Nothing within the timeout.
    Timeout,
}

/// A raw connection for protocol-level cases (legacy clients, bad frames).
pub struct Raw {
    reader: BoxRead,
    writer: BoxWrite,
    dec: FrameDecoder,
    event: EventName,
}

impl fmt::Debug for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Raw").finish_non_exhaustive()
    }
}

impl Raw {
    /// Writes bytes as they are.
    ///
    /// # Errors
    ///
    /// On a write failure.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await?;
        self.writer.flush().await
    }

    /// Writes one message frame.
    ///
    /// # Errors
    ///
    /// On an encoding or write failure.
    pub async fn send_msg(&mut self, msg: &SocketMessage) -> CaseResult {
        let frame = encode_frame(msg, 1 << 20)?;
        Ok(self.send_bytes(frame.as_bytes()).await?)
    }

    /// Sends `hello` and expects `welcome`; returns the client id.
    ///
    /// # Errors
    ///
    /// If no `welcome` comes first.
    pub async fn hello(&mut self) -> Result<String, Failure> {
        let hello = control(&self.event, &Control::Hello { protocol: 1, client_name: Some("raw".to_owned()) });
        self.send_msg(&hello).await?;
        match self.next(SOON).await? {
            RawEvent::Message(m) => match Control::parse(&m) {
                Some(Ok(Control::Welcome { client_id, .. })) => Ok(client_id),
                _ => Err(Failure::new(format!("first frame after hello is not welcome: {m:?}"))),
            },
            other => Err(Failure::new(format!("no welcome after hello: {other:?}"))),
        }
    }

    /// The next message, end-of-stream, or timeout.
    ///
    /// # Errors
    ///
    /// On a read error other than a reset, or an undecodable frame.
    pub async fn next(&mut self, timeout: Duration) -> Result<RawEvent, Failure> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.dec.next_frame() {
                Ok(Some(body)) => {
                    let m = decode_body(body, &Limits::default())
                        .map_err(|e| Failure::new(format!("server sent a malformed frame: {e}")))?;
                    return Ok(RawEvent::Message(m));
                }
                Ok(None) => {}
                Err(e) => return Err(Failure::new(format!("server sent a bad frame header: {e}"))),
            }
            let mut buf = [0u8; 4096];
            let left = deadline.saturating_duration_since(Instant::now());
            let read = future::or(async { Some(self.reader.read(&mut buf).await) }, async {
                async_io::Timer::after(left).await;
                None
            })
            .await;
            match read {
                None => return Ok(RawEvent::Timeout),
                Some(Ok(0)) => return Ok(RawEvent::Eof),
                Some(Ok(n)) => self.dec.feed(&buf[..n]),
                Some(Err(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::BrokenPipe
                            | std::io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    return Ok(RawEvent::Eof)
                }
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Expects an ERROR message with `code`.
    ///
    /// # Errors
    ///
    /// If anything else comes.
    pub async fn expect_error(&mut self, code: ErrorCode) -> CaseResult {
        match self.next(SOON).await? {
            RawEvent::Message(m) => {
                let got = ErrorCode::parse(&m);
                ensure!(got.as_ref().map(|g| g.0) == Some(code), "expected ERROR {code}, got {m:?} ({got:?})");
                Ok(())
            }
            other => Err(Failure::new(format!("expected ERROR {code}, got {other:?}"))),
        }
    }

    /// Expects end-of-stream, skipping nothing.
    ///
    /// # Errors
    ///
    /// If a message comes or the stream stays open.
    pub async fn expect_eof(&mut self, what: &str) -> CaseResult {
        match self.next(SOON).await? {
            RawEvent::Eof => Ok(()),
            other => Err(Failure::new(format!("expected end-of-stream ({what}), got {other:?}"))),
        }
    }
}

/// A protocol control message for `event` (stamped now, UTC).
pub fn control(event: &EventName, c: &Control) -> SocketMessage {
    SocketMessage::new(event.clone(), MessageType::Control, c.to_data())
}

/// Records what a reading client receives (on a task or a thread, per mode).
pub(super) fn collector(cx: &Ctx, client: Client) -> Receiver<u64> {
    let (tx, rx) = async_channel::unbounded();
    match cx.mode() {
        Mode::Async => socket_core::runtime::spawn(async move {
            while let Ok(Some(m)) = client.receive_async(None).await {
                if tx.send(num(&m).unwrap_or(u64::MAX)).await.is_err() {
                    break;
                }
            }
        })
        .detach(),
        Mode::Blocking => {
            std::thread::spawn(move || {
                while let Ok(Some(m)) = client.receive(None) {
                    if tx.send_blocking(num(&m).unwrap_or(u64::MAX)).is_err() {
                        break;
                    }
                }
            });
        }
    }
    rx
}
