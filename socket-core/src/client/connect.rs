//! Connecting: resolving the transport's endpoints, probing each in turn,
//! and the `hello` / `welcome` handshake.

use std::collections::VecDeque;
use std::future::pending;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::receive::Incoming;
use super::Inner;
use crate::codec::{decode_body, encode_frame};
use crate::control::{Control, ErrorCode};
use crate::error::{Error, ErrorKind, Result};
use crate::message::SocketMessage;
use crate::runtime;
use crate::transport::{BlockingRead, BoxRead, BoxWrite, Endpoint};
use crate::wire::{write_all, Fill, FrameReader, StallTimer};
use crate::PROTOCOL_VERSION;

/// A connection that completed its handshake.
pub(super) struct Established {
    pub(super) reader: BoxRead,
    pub(super) writer: BoxWrite,
    pub(super) fr: FrameReader,
    /// Messages the server sent before `welcome`, delivered first.
    pub(super) early: VecDeque<Incoming>,
    pub(super) welcome: Option<(String, bool, bool)>,
    pub(super) address: String,
    /// The transport's blocking view of the stream, if it gives one.
    pub(super) blocking: Option<Arc<dyn BlockingRead>>,
}

/// How long a discovered endpoint (one port of a range) has to connect and answer `welcome`
/// before the client moves on to the next port (SPEC §5, TCP transport).
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// The outcome of one endpoint in [`Inner::establish`].
pub(super) enum Attempt {
    /// Connected (boxed: the connection state is large), or an error that ends the connect.
    Done(Result<Box<Established>>),
    /// Not our server (nothing there, another event, another protocol): try the next one.
    Next(Error),
    /// Silent until the probe deadline: try the next one, and this one again at the end.
    Silent(Error),
}

/// How one endpoint's handshake failed.
pub(super) enum HsError {
    /// Try the next endpoint.
    Next(Error),
    /// Give up.
    Fatal(Error),
}

impl Inner {
    pub(super) async fn first_connect(&self) -> Result<Established> {
        let started = Instant::now();
        let mut delay = self.opts.reconnect_initial_delay;
        loop {
            match self.establish().await {
                Ok(est) => return Ok(est),
                Err(e)
                    if self.opts.wait_for_server && matches!(e.kind(), ErrorKind::Connection | ErrorKind::Timeout) =>
                {
                    let wait = self.backoff(delay);
                    if let Some(limit) = self.opts.wait_timeout {
                        if started.elapsed() + wait > limit {
                            return Err(Error::new(
                                ErrorKind::Timeout,
                                format!(
                                    "no server for event {} appeared within {limit:?} (wait_timeout): last error: {}",
                                    self.event,
                                    e.message()
                                ),
                            ));
                        }
                    }
                    tracing::debug!(event = %self.event, error = %e, ?wait, "waiting for a server");
                    runtime::sleep(wait).await;
                    delay = self.next_delay(delay);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Tries every endpoint in order; the first completed handshake wins.
    ///
    /// The endpoints are resolved once. A discovered endpoint (one of a port range) gets
    /// [`PROBE_TIMEOUT`] to connect and answer `welcome`: a port held by something else (a
    /// silent listener, another protocol) costs that much, not the whole `default_timeout`.
    /// Endpoints that were silent for the probe are tried once more, in order, with what is
    /// left of `default_timeout` (a real server slower than the probe is still found). The
    /// whole connect stays within `default_timeout`.
    pub(super) async fn establish(&self) -> Result<Established> {
        let deadline = runtime::deadline_after(self.opts.connect_timeout);
        let endpoints =
            match runtime::until(deadline, self.transport.resolve_endpoints(&self.event, &self.config)).await {
                Some(endpoints) => endpoints?,
                None => {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "resolving the address of the server for event {} timed out after {:?}",
                            self.event, self.opts.connect_timeout
                        ),
                    ))
                }
            };
        let mut last: Option<Error> = None;
        let mut silent: Vec<&Endpoint> = Vec::new();
        for ep in &endpoints {
            let probe = if ep.explicit { deadline } else { runtime::deadline_after(PROBE_TIMEOUT) };
            let probe = match (probe, deadline) {
                (Some(p), Some(d)) => Some(p.min(d)),
                (p, d) => p.or(d),
            };
            match self.attempt(ep, probe, deadline).await {
                Attempt::Done(result) => return result.map(|est| *est),
                Attempt::Next(e) => last = Some(e),
                Attempt::Silent(e) => {
                    last = Some(e);
                    silent.push(ep);
                }
            }
        }
        for ep in silent {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            match self.attempt(ep, deadline, deadline).await {
                Attempt::Done(result) => return result.map(|est| *est),
                Attempt::Next(e) | Attempt::Silent(e) => last = Some(e),
            }
        }
        if let Some(e) = last.as_ref().filter(|e| e.kind() == ErrorKind::Timeout) {
            // Every candidate was silent until the end: the connect timed out.
            return Err(Error::new(ErrorKind::Timeout, e.message().to_owned()));
        }
        self.no_server(&endpoints, last)
    }

    /// One connect and handshake at `ep`, the probe bounded by `probe` (at most `deadline`).
    pub(super) async fn attempt(&self, ep: &Endpoint, probe: Option<Instant>, deadline: Option<Instant>) -> Attempt {
        let timed_out = |ep: &Endpoint| {
            Error::new(
                ErrorKind::Timeout,
                format!(
                    "connecting to the server for event {} at {} timed out after {:?}",
                    self.event, ep.address, self.opts.connect_timeout
                ),
            )
        };
        let (conn, blocking) = match runtime::until(probe, self.transport.connect_blocking(ep, &self.config)).await {
            None if probe == deadline || ep.explicit => return Attempt::Done(Err(timed_out(ep))),
            None => return Attempt::Silent(timed_out(ep)),
            Some(Ok((conn, blocking))) => (conn, blocking),
            Some(Err(e)) if e.kind() == ErrorKind::Connection => return Attempt::Next(e),
            Some(Err(e)) => return Attempt::Done(Err(e)),
        };
        let fr = FrameReader::new(self.opts.buffer_size, self.opts.limits);
        if self.opts.legacy_server {
            return Attempt::Done(Ok(Box::new(Established {
                reader: conn.reader,
                writer: conn.writer,
                fr,
                early: VecDeque::new(),
                welcome: None,
                address: ep.address.clone(),
                blocking,
            })));
        }
        match self.handshake(conn.reader, conn.writer, fr, ep, probe).await {
            Ok(est) => Attempt::Done(Ok(Box::new(Established { blocking, ..est }))),
            Err(HsError::Next(e)) if e.kind() == ErrorKind::Timeout && probe != deadline => Attempt::Silent(e),
            Err(HsError::Next(e)) => Attempt::Next(e),
            Err(HsError::Fatal(e)) => Attempt::Done(Err(e)),
        }
    }

    /// The error when no endpoint had our server.
    pub(super) fn no_server(&self, endpoints: &[Endpoint], last: Option<Error>) -> Result<Established> {
        let addresses = match endpoints {
            [] => "no address".to_owned(),
            [one] => one.address.clone(),
            [first, .., end] if endpoints.len() > 3 => {
                format!("{} .. {} ({} addresses)", first.address, end.address, endpoints.len())
            }
            all => all.iter().map(|e| e.address.as_str()).collect::<Vec<_>>().join(", "),
        };
        let err = Error::new(
            ErrorKind::Connection,
            format!(
                "no server for event {event} at {addresses}: start one with `socketctl serve {event}`",
                event = self.event
            ),
        );
        Err(match last {
            Some(source) => err.with_source(source),
            None => err,
        })
    }

    /// Sends `hello` and reads up to the server's answer: `welcome` (the connection is
    /// established), an `error` (refused), or anything else (not our server).
    pub(super) async fn handshake(
        &self,
        mut reader: BoxRead,
        mut writer: BoxWrite,
        mut fr: FrameReader,
        ep: &Endpoint,
        deadline: Option<Instant>,
    ) -> std::result::Result<Established, HsError> {
        let at = Peer { ep, event: self.event.as_str() };
        let write_err = self.send_hello(&mut writer, deadline).await?;
        let (msg, early) = self.read_to_answer(&mut reader, &mut fr, &at, deadline, write_err).await?;
        let welcome = self.accept_answer(&msg, &at)?;
        Ok(Established {
            reader,
            writer,
            fr,
            early,
            welcome: Some(welcome),
            address: ep.address.clone(),
            blocking: None,
        })
    }

    /// Writes `hello`. A refusing server may have closed already: its `error` frame can still
    /// be read, so a failed write is only remembered (`Ok(Some(why))`).
    async fn send_hello(
        &self,
        writer: &mut BoxWrite,
        deadline: Option<Instant>,
    ) -> std::result::Result<Option<String>, HsError> {
        let hello = Control::Hello { protocol: PROTOCOL_VERSION, client_name: self.opts.client_name.clone() }
            .to_message(&self.event, &self.opts.timezone);
        let frame = encode_frame(&hello, usize::MAX).map_err(HsError::Fatal)?;
        let mut st = StallTimer::new();
        let write = write_all(writer, frame.as_bytes(), self.opts.connect_timeout, &mut st, pending());
        Ok(match runtime::until(deadline, write).await {
            Some(Ok(())) => None,
            Some(Err(e)) => Some(e.to_string()),
            None => Some("timed out".to_owned()),
        })
    }

    /// Reads frames until the first control or error message, the server's answer to
    /// `hello`.
    ///
    /// Messages that come before it are kept, in order, at most `receive_buffer_size` of
    /// them: a server that got our `hello` after its `hello_grace` served us as a legacy
    /// client until then (offline replay, broadcasts) and answers `welcome` behind them.
    async fn read_to_answer(
        &self,
        reader: &mut BoxRead,
        fr: &mut FrameReader,
        at: &Peer<'_>,
        deadline: Option<Instant>,
        write_err: Option<String>,
    ) -> std::result::Result<(SocketMessage, VecDeque<Incoming>), HsError> {
        let addr = &at.ep.address;
        let mut early: VecDeque<Incoming> = VecDeque::new();
        loop {
            let body = match fr.next_frame() {
                Ok(Some(body)) => body,
                Ok(None) => {
                    let until = deadline.into_iter().chain(fr.frame_deadline(self.opts.frame_timeout)).min();
                    match fr.fill(reader, until).await {
                        Ok(Fill::Data) => continue,
                        // A server that sent messages but no `welcome` is a legacy server.
                        Ok(Fill::Deadline) if !early.is_empty() => return Err(at.no_welcome()),
                        Ok(Fill::Deadline) => return Err(at.silent(self.opts.connect_timeout)),
                        Ok(Fill::Eof) | Err(_) => {
                            let why = write_err.unwrap_or_else(|| "no answer".to_owned());
                            let text =
                                format!("the server at {addr} closed the connection during the handshake ({why})");
                            return Err(HsError::Next(Error::new(ErrorKind::Connection, text)));
                        }
                    }
                }
                Err(e) => {
                    let text = format!("the server at {addr} sent an invalid frame during the handshake");
                    return Err(HsError::Next(Error::new(ErrorKind::Connection, text).with_source(e)));
                }
            };
            let msg = decode_body(body, &self.opts.limits).map_err(|e| {
                let text = format!("the server at {addr} answered hello with a malformed frame");
                HsError::Next(Error::new(ErrorKind::Connection, text).with_source(e))
            })?;
            if Control::parse(&msg).is_some() || ErrorCode::parse(&msg).is_some() {
                return Ok((msg, early));
            }
            if msg.event_name != self.event {
                return Err(at.wrong_event(msg.event_name.as_str()));
            }
            if early.len() >= self.opts.receive_buffer_size.max(1) {
                return Err(at.no_welcome());
            }
            early.push_back(Incoming::Decoded(msg));
        }
    }

    /// What the server's answer to `hello` means: `welcome` of our event and protocol
    /// gives the client id, whether it may send and whether the server relays.
    fn accept_answer(&self, msg: &SocketMessage, at: &Peer<'_>) -> std::result::Result<(String, bool, bool), HsError> {
        let (event, addr) = (&self.event, &at.ep.address);
        if let Some(Ok(Control::Welcome { protocol, client_id, allow_client_send, event_name, relay, .. })) =
            Control::parse(msg)
        {
            if event_name != event.as_str() {
                return Err(at.wrong_event(&event_name));
            }
            if protocol != PROTOCOL_VERSION {
                let text =
                    format!("the server at {addr} speaks protocol {protocol}, this client speaks {PROTOCOL_VERSION}");
                return Err(HsError::Fatal(Error::new(ErrorKind::Connection, text).with_source(ProtocolMismatch)));
            }
            return Ok((client_id, allow_client_send, relay));
        }
        if let Some((code, text)) = ErrorCode::parse(msg) {
            if msg.event_name != *event {
                return Err(at.wrong_event(msg.event_name.as_str()));
            }
            let kind =
                if code == ErrorCode::MaxConnections { ErrorKind::MaxConnections } else { ErrorKind::Connection };
            return Err(HsError::Fatal(Error::new(
                kind,
                format!("the server for event {event} at {addr} refused the connection ({code}): {text}"),
            )));
        }
        Err(at.no_welcome())
    }
}

/// The endpoint of a handshake, for its errors: at an explicit address a wrong or silent
/// server ends the connect ([`HsError::Fatal`]); a discovered endpoint (one port of a range)
/// may belong to something else, so the client tries the next one ([`HsError::Next`]).
struct Peer<'a> {
    ep: &'a Endpoint,
    event: &'a str,
}

impl Peer<'_> {
    fn fail(&self, e: Error) -> HsError {
        if self.ep.explicit {
            HsError::Fatal(e)
        } else {
            HsError::Next(e)
        }
    }

    /// No answer to `hello` within `waited`.
    fn silent(&self, waited: Duration) -> HsError {
        self.fail(Error::new(
            ErrorKind::Timeout,
            format!(
                "the server at {} did not answer hello within {waited:?}: if it is a legacy server, set socket.legacy_server = true (--legacy)",
                self.ep.address
            ),
        ))
    }

    /// Messages, but no `welcome`.
    fn no_welcome(&self) -> HsError {
        self.fail(Error::new(
            ErrorKind::Connection,
            format!(
                "the server at {} did not answer hello with welcome: if it is a legacy server, set socket.legacy_server = true (--legacy)",
                self.ep.address
            ),
        ))
    }

    /// The server of another event; its messages are never delivered.
    fn wrong_event(&self, other: &str) -> HsError {
        self.fail(Error::new(
            ErrorKind::Connection,
            format!("the server at {} serves event {other}, not {}", self.ep.address, self.event),
        ))
    }
}

/// The cause attached to a handshake error when the server speaks another
/// protocol version: a reconnect then closes the client instead of retrying.
#[derive(Debug)]
pub(super) struct ProtocolMismatch;

impl ProtocolMismatch {
    pub(super) fn is_cause_of(e: &Error) -> bool {
        std::error::Error::source(e).is_some_and(|s| s.is::<ProtocolMismatch>())
    }
}

impl std::fmt::Display for ProtocolMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("upgrade the client or the server so both speak the same version")
    }
}

impl std::error::Error for ProtocolMismatch {}
