//! `watchbus watch`: tails a subscription over SSE, one event per line.
//!
//! Each event's `data:` payload (in the default envelope format, the JSON
//! envelope on one line) is printed and flushed as it arrives. When the
//! connection drops or the server ends the stream, `watch` reconnects with
//! `Last-Event-ID` set to the last id seen, bookmarks included (the one a
//! live stream opens with, so nothing is lost even before the first event,
//! and those sent with keep-alives), after an exponential backoff (100 ms
//! doubling to 5 s, reset once a connection is accepted). The first
//! connection must succeed: an unreachable server at start is an error, not
//! a retry loop.
//!
//! A connection that goes silent, with not even a keep-alive comment for
//! `--idle-timeout` (45 s: three of the server's default keep-alives), is
//! taken for dead and replaced: a half-open TCP connection (a NAT that
//! forgot it, a server host that vanished) would otherwise hang forever.

use std::io::Write as _;
use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};

use crate::client::{self, ClientArgs};
use crate::exit::GoneError;
use crate::sse::{SseEvent, SseParser};

/// First reconnection delay.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest reconnection delay.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Tails a subscription: one event per line on stdout, reconnecting with `Last-Event-ID`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Examples:
    watchbus watch --key orders/42
    watchbus watch --prefix orders/ --type order.paid --from-timestamp 2026-01-01T00:00:00Z

With no --key and no --prefix, every key matches. Reconnects are logged to stderr.
Exit status: 0 on SIGINT/SIGTERM or when stdout's reader goes away (a closed pipe); 3 when the resume point is gone (HTTP 410: events after it were evicted); 1 on other errors.")]
pub(crate) struct WatchArgs {
    /// Exact key to follow (repeatable)
    #[arg(long, value_name = "KEY")]
    key: Vec<String>,

    /// Key prefix to follow (repeatable)
    #[arg(long, value_name = "PREFIX")]
    prefix: Vec<String>,

    /// Only events of this type (repeatable)
    #[arg(long = "type", value_name = "T")]
    event_type: Vec<String>,

    /// Start after this event id (exclusive)
    #[arg(long, value_name = "ID")]
    from: Option<String>,

    /// Start at this time, RFC 3339 (inclusive), e.g. 2026-01-01T00:00:00Z
    #[arg(long, value_name = "TIME")]
    from_timestamp: Option<String>,

    /// Reconnect when nothing, not even a keep-alive, arrives for this long: keep it above the server's --keep-alive (0: never)
    #[arg(long, value_name = "DURATION", default_value = "45s", value_parser = parse_idle_timeout)]
    idle_timeout: Duration,

    /// What is printed of each event: the JSON envelope, one line each; or only its data (a text with line breaks spans several lines)
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = Format::Envelope)]
    format: Format,

    #[command(flatten)]
    client: ClientArgs,
}

/// The `format` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// `{"id","key","type","time","data"}` on one line
    Envelope,
    /// only the data: text as is, other JSON compactly
    Raw,
}

fn parse_idle_timeout(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|err| format!("invalid duration `{text}`: {err} (e.g. 45s, 2m, or 0 for never)"))
}

impl WatchArgs {
    /// The subscription's query string, the same on every reconnect (the
    /// `Last-Event-ID` header, when set, takes precedence over `from`).
    fn query(&self) -> Vec<(&'static str, &str)> {
        let mut query = Vec::new();
        query.extend(self.key.iter().map(|key| ("key", key.as_str())));
        query.extend(self.prefix.iter().map(|prefix| ("prefix", prefix.as_str())));
        query.extend(self.event_type.iter().map(|t| ("event_type", t.as_str())));
        query.extend(self.from.as_deref().map(|from| ("from", from)));
        query.extend(
            self.from_timestamp
                .as_deref()
                .map(|time| ("from_timestamp", time)),
        );
        if self.format == Format::Raw {
            query.push(("format", "raw"));
        }
        query
    }
}

/// Runs `watchbus watch` until interrupted, stdout closes, or a fatal error.
pub(crate) async fn run(args: WatchArgs) -> anyhow::Result<()> {
    tokio::select! {
        result = follow(&args) => result,
        () = interrupted() => Ok(()),
        () = reader_gone() => Ok(()),
    }
}

/// Resolves when standard output is a pipe or terminal whose other end
/// went away (`watch | head -1`, once `head` has its line): a quiet
/// stream writes nothing that would fail, so `watch` would otherwise wait
/// for the next event to learn it. Never resolves for a file, which has no
/// other end.
async fn reader_gone() {
    #[cfg(unix)]
    {
        let (gone, went) = tokio::sync::oneshot::channel();
        // poll(2) blocks: a thread of its own, which ends with the process.
        let watching = std::thread::Builder::new()
            .name("stdout-reader".into())
            .spawn(move || {
                use rustix::event::{PollFd, PollFlags, poll};
                let stdout = std::io::stdout();
                // No events asked: poll reports only an error (the read
                // end closed), a hang-up, or a descriptor that is not open.
                let mut fds = [PollFd::new(&stdout, PollFlags::empty())];
                loop {
                    let polled = poll(&mut fds, None);
                    let revents = fds.first().map_or(PollFlags::NVAL, PollFd::revents);
                    match polled {
                        Ok(_) if revents.intersects(PollFlags::ERR | PollFlags::HUP) => {
                            let _ = gone.send(());
                            return;
                        }
                        Ok(_) if revents.contains(PollFlags::NVAL) => return,
                        Ok(_) | Err(rustix::io::Errno::INTR) => {}
                        Err(_) => return,
                    }
                }
            });
        if watching.is_ok() && went.await.is_ok() {
            return;
        }
    }
    std::future::pending::<()>().await;
}

/// Resolves on SIGINT or SIGTERM.
async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Why one connection's stream ended.
#[derive(Debug)]
enum Ended {
    /// The connection dropped or the server closed the stream: reconnect.
    Dropped(String),
    /// Whoever reads our stdout went away: stop quietly.
    StdoutClosed,
    /// Stdout failed otherwise (a full disk): the events are not where the
    /// user asked, so stop and say so.
    StdoutFailed(std::io::Error),
}

async fn follow(args: &WatchArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let url = args.client.endpoint("/v1/events");
    let query = args.query();
    let mut last_id: Option<String> = None;
    let mut backoff = Backoff::default();
    let mut connected = false;
    loop {
        let mut request = http
            .get(url.clone())
            .query(&query)
            .header(ACCEPT, "text/event-stream");
        request = args.client.authorize(request);
        if let Some(id) = &last_id {
            let value = HeaderValue::from_str(id)
                .map_err(|_| anyhow::anyhow!("the server sent an unusable event id {id:?}"))?;
            request = request.header("Last-Event-ID", value);
        }
        // A server that accepts the connection but never answers is
        // replaced as a silent stream is.
        let sent = if args.idle_timeout.is_zero() {
            Ok(request.send().await)
        } else {
            tokio::time::timeout(args.idle_timeout, request.send()).await
        };
        let Ok(sent) = sent else {
            let reason = format!(
                "no answer for {}",
                humantime::format_duration(args.idle_timeout)
            );
            if !connected {
                anyhow::bail!("cannot connect to {url}: {reason}");
            }
            let delay = backoff.next_delay();
            eprintln!("watchbus watch: {reason}; reconnecting in {delay:?}");
            tokio::time::sleep(delay).await;
            continue;
        };
        let reason = match sent {
            Err(err) if !connected => {
                anyhow::bail!("cannot connect to {url}: {}", client::root_cause(&err));
            }
            Err(err) => format!("cannot connect: {}", client::root_cause(&err)),
            Ok(response) => match response.status() {
                status if status.is_success() && !is_event_stream(&response) => {
                    let what = format!(
                        "{url} answered {status} with {}, not an event stream",
                        media_type(&response).unwrap_or("no Content-Type")
                    );
                    if !connected {
                        anyhow::bail!("{what}: is it a watchbus server?");
                    }
                    what
                }
                status if status.is_success() => {
                    connected = true;
                    backoff.reset();
                    match read_stream(response, &mut last_id, &mut backoff, args.idle_timeout).await
                    {
                        Ended::Dropped(reason) => reason,
                        Ended::StdoutClosed => return Ok(()),
                        Ended::StdoutFailed(err) => {
                            return Err(anyhow::anyhow!("cannot write to standard output: {err}"));
                        }
                    }
                }
                StatusCode::GONE => {
                    let message = client::error_message(response).await;
                    return Err(GoneError(format!("the resume point is gone: {message}")).into());
                }
                status if status.is_client_error() => {
                    anyhow::bail!("{}", client::error_message(response).await);
                }
                _ => client::error_message(response).await,
            },
        };
        let delay = backoff.next_delay();
        let from = match &last_id {
            Some(id) => format!(" after id {id}"),
            None => String::new(),
        };
        eprintln!("watchbus watch: {reason}; reconnecting in {delay:?}{from}");
        tokio::time::sleep(delay).await;
    }
}

/// The media type of `response`'s `Content-Type`, without parameters.
fn media_type(response: &reqwest::Response) -> Option<&str> {
    let value = response.headers().get(CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or(value).trim())
}

/// Whether `response` is an SSE stream: anything else (a web page, a
/// proxy's error page answered `200`) would be read as a stream that ends
/// at once, again and again.
fn is_event_stream(response: &reqwest::Response) -> bool {
    media_type(response).is_some_and(|media| media.eq_ignore_ascii_case("text/event-stream"))
}

/// Prints events until the stream ends; keeps `last_id` at the last id
/// whose frame was complete and whose event, if any, was printed.
async fn read_stream(
    response: reqwest::Response,
    last_id: &mut Option<String>,
    backoff: &mut Backoff,
    idle_timeout: Duration,
) -> Ended {
    let mut parser = SseParser::new(last_id.clone());
    let mut body = response.bytes_stream();
    let mut events = Vec::new();
    loop {
        let next = if idle_timeout.is_zero() {
            body.next().await
        } else {
            match tokio::time::timeout(idle_timeout, body.next()).await {
                Ok(next) => next,
                Err(_) => {
                    return Ended::Dropped(format!(
                        "nothing received for {}, not even a keep-alive",
                        humantime::format_duration(idle_timeout)
                    ));
                }
            }
        };
        match next {
            Some(Ok(chunk)) => {
                parser.feed(&chunk, &mut events);
                if let Err(err) = print(&events) {
                    return if err.kind() == std::io::ErrorKind::BrokenPipe {
                        Ended::StdoutClosed
                    } else {
                        Ended::StdoutFailed(err)
                    };
                }
                events.clear();
                *last_id = parser
                    .last_event_id()
                    .filter(|id| !id.is_empty())
                    .map(str::to_owned);
                if let Some(retry) = parser.retry() {
                    backoff.start_at(retry);
                }
            }
            Some(Err(err)) => {
                return Ended::Dropped(format!("connection lost: {}", client::root_cause(&err)));
            }
            None => return Ended::Dropped("the server ended the stream".to_owned()),
        }
    }
}

fn print(events: &[SseEvent]) -> std::io::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut stdout = std::io::stdout().lock();
    for event in events {
        stdout.write_all(event.data.as_bytes())?;
        stdout.write_all(b"\n")?;
        stdout.flush()?;
    }
    Ok(())
}

/// Reconnection delays: from [`BACKOFF_START`] (or the server's `retry:`),
/// doubling up to [`BACKOFF_MAX`].
#[derive(Debug)]
struct Backoff {
    start: Duration,
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            start: BACKOFF_START,
            next: BACKOFF_START,
        }
    }
}

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (delay * 2).min(BACKOFF_MAX.max(self.start));
        delay
    }

    fn reset(&mut self) {
        self.next = self.start;
    }

    /// The server's `retry:` becomes the first delay.
    fn start_at(&mut self, start: Duration) {
        if self.start != start {
            self.start = start;
            self.next = start;
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn args(argv: &[&str]) -> WatchArgs {
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            watch: WatchArgs,
        }
        Cli::try_parse_from(std::iter::once("watch").chain(argv.iter().copied()))
            .unwrap()
            .watch
    }

    #[test]
    fn backoff_doubles_to_five_seconds_and_resets() {
        let mut backoff = Backoff::default();
        let delays: Vec<u64> = (0..9)
            .map(|_| backoff.next_delay().as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn the_servers_retry_is_the_first_delay() {
        let mut backoff = Backoff::default();
        backoff.start_at(Duration::from_secs(1));
        assert_eq!(backoff.next_delay(), Duration::from_secs(1));
        assert_eq!(backoff.next_delay(), Duration::from_secs(2));
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn filters_become_repeated_query_parameters() {
        let args = args(&[
            "--key", "a", "--key", "b", "--prefix", "p/", "--type", "t1", "--type", "t2", "--from",
            "42", "--format", "raw",
        ]);
        assert_eq!(
            args.query(),
            [
                ("key", "a"),
                ("key", "b"),
                ("prefix", "p/"),
                ("event_type", "t1"),
                ("event_type", "t2"),
                ("from", "42"),
                ("format", "raw"),
            ]
        );
    }

    #[test]
    fn idle_timeout_defaults_to_45_seconds_and_0_turns_it_off() {
        assert_eq!(args(&[]).idle_timeout, Duration::from_secs(45));
        assert_eq!(
            args(&["--idle-timeout", "2m"]).idle_timeout,
            Duration::from_secs(120)
        );
        assert_eq!(args(&["--idle-timeout", "0"]).idle_timeout, Duration::ZERO);
    }

    #[test]
    fn no_filters_means_an_empty_query() {
        assert!(args(&[]).query().is_empty());
    }
}
