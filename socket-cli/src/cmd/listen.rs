//! `socketctl listen EVENT...`: print every message of one or more events as one JSON line.
//!
//! Each event has its own client (its own connection, its own reconnecting); their
//! messages are merged into one output stream, taking from the events in turn so that a
//! busy event cannot starve a quiet one.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::Stream;
use socket_factory::client::MessageStream;
use socket_factory::config::Config;
use socket_factory::control::Control;
use socket_factory::{Client, ErrorKind, EventName, SocketMessage, TransportRegistry};

use crate::args::{FormatArg, GlobalArgs, ListenArgs};
use crate::exit::{describe, CliError, Exit};
use crate::json::{data_to_json, message_to_json};
use crate::output::print_json;
use crate::settings::{load_config, Overrides};
use crate::transports::{connect_client, event_name, registry, transport_for};

/// Pause between connection attempts while `--wait`ing for a server.
const WAIT_RETRY: Duration = Duration::from_millis(100);

/// Runs `listen`.
///
/// # Errors
///
/// Exit 2 (invalid event name or configuration), 3 (no server for one of the events,
/// without `--wait`), 4 (a server is full), 5 (`--timeout` reached), 1 (a connection lost
/// with `--no-reconnect`, or stdout closed).
pub(crate) fn run(global: &GlobalArgs, args: &ListenArgs) -> Result<Exit, CliError> {
    let started = Instant::now();
    let events = event_names(&args.events)?;
    let mut o = Overrides::new();
    if args.no_reconnect {
        o.set("socket.auto_reconnect", false);
    }
    if args.wait {
        o.set("socket.wait_for_server", true);
    }
    let config = load_config(global, &o)?;
    // Unknown transport or invalid settings: exit 2 before connecting.
    transport_for(&config)?;
    let registry = registry();
    // `Secs` is at most a year, so the deadline always exists; `None` would mean "no deadline".
    let deadline = args.timeout.and_then(|t| t.after(started));
    socket_factory::runtime::block_on(listen(&registry, &events, &config, args, deadline))
}

/// The event names, validated, each once, in the order given.
fn event_names(names: &[String]) -> Result<Vec<EventName>, CliError> {
    let mut events: Vec<EventName> = Vec::with_capacity(names.len());
    for name in names {
        let event = event_name(name)?;
        if !events.contains(&event) {
            events.push(event);
        }
    }
    Ok(events)
}

/// The listen loop over every event, until `--count`, `--timeout`, an error, or (with
/// `--no-reconnect`) every server has shut down.
async fn listen(
    registry: &TransportRegistry,
    events: &[EventName],
    config: &Config,
    args: &ListenArgs,
    deadline: Option<Instant>,
) -> Result<Exit, CliError> {
    let timed_out = |printed: u64| {
        let wanted = args.count.map_or_else(String::new, |c| format!(" of {c}"));
        CliError::new(
            Exit::Timeout,
            format!(
                "timed out after {} s with {printed}{wanted} messages received",
                args.timeout.map_or(0.0, |t| t.value)
            ),
        )
    };
    let mut merged = Merged {
        sources: events
            .iter()
            .map(|event| {
                let connecting: Connecting<'_> = Box::pin(connect(registry, event.clone(), config, args.wait));
                Source::Connecting(connecting)
            })
            .collect(),
        next: 0,
        no_reconnect: args.no_reconnect,
    };

    let mut printed = 0u64;
    let result = loop {
        if args.count.is_some_and(|count| printed >= count) {
            break Ok(Exit::Ok);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break Err(timed_out(printed));
        }
        let step = futures_lite::future::poll_fn(|cx| merged.poll_step(cx));
        let step = match deadline {
            None => step.await,
            Some(deadline) => {
                futures_lite::future::or(step, async {
                    async_io::Timer::at(deadline).await;
                    Step::TimedOut
                })
                .await
            }
        };
        match step {
            Step::Message(msg) => {
                let line = match args.format {
                    FormatArg::Json => message_to_json(&msg),
                    FormatArg::Data => data_to_json(&msg.data),
                };
                if let Err(e) = print_json(&line) {
                    break Err(e);
                }
                printed += 1;
            }
            Step::TimedOut => break Err(timed_out(printed)),
            Step::Failed(e) => break Err(e),
            Step::AllShutDown => break Ok(Exit::Ok),
        }
    };
    for source in &merged.sources {
        if let Source::Open { client, .. } = source {
            client.disconnect_async().await;
        }
    }
    result
}

/// A connection attempt in progress (with `--wait`, retried until a server appears).
type Connecting<'a> = Pin<Box<dyn Future<Output = Result<Client, CliError>> + 'a>>;

/// One event's client.
enum Source<'a> {
    /// Not connected yet.
    Connecting(Connecting<'a>),
    /// Connected (the client reconnects by itself unless `--no-reconnect`).
    Open {
        /// The client, kept to disconnect it at the end.
        client: Client,
        /// Its messages.
        messages: MessageStream,
        /// A `shutdown` control message arrived (for `--no-reconnect`).
        saw_shutdown: bool,
    },
    /// The server shut down and `--no-reconnect` is set: nothing more comes.
    ShutDown,
}

/// What the merged stream of every event produced.
enum Step {
    /// A message to print (never protocol control).
    Message(SocketMessage),
    /// An error that ends `listen`.
    Failed(CliError),
    /// With `--no-reconnect`: every server has shut down.
    AllShutDown,
    /// `--timeout` ran out.
    TimedOut,
}

/// Every event's client, polled in turn.
struct Merged<'a> {
    sources: Vec<Source<'a>>,
    /// The source polled first next time (the one after the last that produced a message).
    next: usize,
    no_reconnect: bool,
}

impl Merged<'_> {
    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Step> {
        let n = self.sources.len();
        let mut all_shut_down = true;
        for k in 0..n {
            let i = (self.next + k) % n;
            loop {
                match &mut self.sources[i] {
                    Source::Connecting(connecting) => match connecting.as_mut().poll(cx) {
                        Poll::Ready(Ok(client)) => {
                            let messages = client.stream();
                            self.sources[i] = Source::Open { client, messages, saw_shutdown: false };
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Step::Failed(e)),
                        Poll::Pending => {
                            all_shut_down = false;
                            break;
                        }
                    },
                    Source::Open { messages, saw_shutdown, .. } => match Pin::new(messages).poll_next(cx) {
                        Poll::Ready(Some(Ok(msg))) => {
                            if let Some(control) = Control::parse(&msg) {
                                // Protocol control is never printed; note a shutdown for --no-reconnect.
                                *saw_shutdown |= matches!(control, Ok(Control::Shutdown { .. }));
                                continue;
                            }
                            self.next = (i + 1) % n;
                            return Poll::Ready(Step::Message(msg));
                        }
                        // The client closed for good. With --no-reconnect a server shutdown ends
                        // this event (listen goes on with the others), a lost connection ends
                        // listen with 1; giving up reconnecting (reconnect_max_retries) is always 1.
                        Poll::Ready(Some(Err(e))) if self.no_reconnect && (*saw_shutdown || is_shutdown(&e)) => {
                            self.sources[i] = Source::ShutDown;
                        }
                        Poll::Ready(Some(Err(e))) => return Poll::Ready(Step::Failed(lost(&e))),
                        // The stream ends only after yielding its error, handled above.
                        Poll::Ready(None) => self.sources[i] = Source::ShutDown,
                        Poll::Pending => {
                            all_shut_down = false;
                            break;
                        }
                    },
                    Source::ShutDown => break,
                }
            }
        }
        if all_shut_down {
            Poll::Ready(Step::AllShutDown)
        } else {
            Poll::Pending
        }
    }
}

/// The error for a client that closed without a server shutdown.
fn lost(err: &socket_factory::Error) -> CliError {
    match err.kind() {
        ErrorKind::Closed | ErrorKind::Connection => CliError::runtime(format!("connection lost: {}", describe(err))),
        _ => CliError::from_core(err, crate::exit::Phase::Other),
    }
}

/// True when the client closed because the server sent `shutdown`.
///
/// The error kind (`Closed`) does not say whether the server shut down cleanly or the
/// connection was lost, so this matches the engine's message: it names the shutdown.
fn is_shutdown(err: &socket_factory::Error) -> bool {
    let text = err.to_string();
    err.kind() == ErrorKind::Closed && (text.contains("shutdown") || text.contains("shut down"))
}

/// Connects to the server of `event`; with `wait`, retries while there is no server.
async fn connect(
    registry: &TransportRegistry,
    event: EventName,
    config: &Config,
    wait: bool,
) -> Result<Client, CliError> {
    loop {
        match connect_client(registry, &event, config, "socketctl listen", true).await {
            Ok(client) => return Ok(client),
            Err(e) if wait && matches!(e.kind(), ErrorKind::Connection | ErrorKind::Timeout) => {
                tracing::debug!("no server for {event} yet, retrying: {e}");
                async_io::Timer::after(WAIT_RETRY).await;
            }
            Err(e) => return Err(CliError::connect(&e)),
        }
    }
}
