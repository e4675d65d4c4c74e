//! Subscribers: one lightweight task per connection, SSE on a raw TCP stream
//! (hand-written HTTP/1.1 GET, chunked decoding, one-pass SSE parsing) or
//! WebSocket.

use super::Shared;
use super::http::{BodyKind, ChunkedDecoder, Target, parse_response_head, write_request};
use super::payload::scan;
use super::sse::SseParser;
use super::stats::{Counters, LocalBatch};
use super::tracker::{Seen, SeqTracker};
use anyhow::{Context, bail};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_BUF: usize = 4096;

/// How a subscriber's connection went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Connection {
    /// Connected and still connected when the bench stopped it.
    Held,
    /// Never connected.
    Failed(String),
    /// Connected, then the stream ended or broke before the bench stopped it.
    Dropped(String),
}

/// The per-subscriber accounting, returned when its task ends.
#[derive(Debug)]
pub(crate) struct SubState {
    pub(crate) key: u32,
    /// One tracker per publisher id.
    pub(crate) trackers: Vec<SeqTracker>,
    /// Bench events of another run (e.g. replayed from a server's buffer).
    pub(crate) stale: u64,
    /// Bench events for another key or from an unknown publisher.
    pub(crate) foreign: u64,
    /// Events without a bench stamp.
    pub(crate) other: u64,
    batch: LocalBatch,
    pending_delivered: u64,
    pending_measured: u64,
}

impl SubState {
    pub(crate) fn new(index: u32, key: u32, publishers: u32) -> Self {
        Self {
            key,
            trackers: vec![SeqTracker::default(); usize::try_from(publishers).unwrap_or_default()],
            stale: 0,
            foreign: 0,
            other: 0,
            batch: LocalBatch::new(usize::try_from(index).unwrap_or_default()),
            pending_delivered: 0,
            pending_measured: 0,
        }
    }

    /// Accounts for one event's data received at `now_ns` (unix nanoseconds).
    pub(crate) fn on_data(&mut self, data: &[u8], now_ns: u64, shared: &Shared) {
        let Some(stamp) = scan(data) else {
            self.other += 1;
            return;
        };
        if stamp.run != shared.run {
            self.stale += 1;
            return;
        }
        if stamp.key != self.key {
            self.foreign += 1;
            return;
        }
        let Some(tracker) = self
            .trackers
            .get_mut(usize::try_from(stamp.publisher).unwrap_or(usize::MAX))
        else {
            self.foreign += 1;
            return;
        };
        if tracker.observe(stamp.seq) == Seen::Duplicate {
            return;
        }
        self.pending_delivered += 1;
        if !stamp.warmup {
            self.pending_measured += 1;
            self.batch
                .push(&shared.latency, now_ns.saturating_sub(stamp.sent_ns) / 1000);
        }
    }

    /// Publishes what was gathered since the last flush to the shared state.
    pub(crate) fn flush(&mut self, shared: &Shared) {
        self.batch.flush(&shared.latency);
        if self.pending_delivered > 0 {
            let c = &shared.counters;
            Counters::add(&c.delivered, self.pending_delivered);
            Counters::add(&c.delivered_measured, self.pending_measured);
            let since = u64::try_from(shared.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
            c.last_delivery_ns.fetch_max(since, Ordering::Relaxed);
            self.pending_delivered = 0;
            self.pending_measured = 0;
        }
    }
}

fn failed(shared: &Shared, state: SubState, why: String) -> (SubState, Connection) {
    Counters::add(&shared.counters.connect_failed, 1);
    let mut first = match shared.first_connect_error.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if first.is_none() {
        *first = Some(why.clone());
    }
    drop(first);
    (state, Connection::Failed(why))
}

fn dropped(shared: &Shared, mut state: SubState, why: String) -> (SubState, Connection) {
    state.flush(shared);
    Counters::add(&shared.counters.dropped, 1);
    (state, Connection::Dropped(why))
}

/// Opens an SSE stream and reads the response head. Returns the stream and
/// the bytes read past the head.
async fn open_sse(
    shared: &Shared,
    target: &Target,
) -> anyhow::Result<(TcpStream, BodyKind, Vec<u8>)> {
    let mut stream = TcpStream::connect(target.addr).await.context("connect")?;
    stream.set_nodelay(true).context("set_nodelay")?;
    let mut headers = vec![
        ("Accept", "text/event-stream"),
        ("Cache-Control", "no-cache"),
    ];
    if let Some(a) = shared.auth_header.as_deref() {
        headers.push(("Authorization", a));
    }
    let mut req = Vec::with_capacity(256);
    write_request(
        &mut req,
        "GET",
        target,
        &target.path_and_query,
        &headers,
        None,
    );
    stream.write_all(&req).await.context("send request")?;
    let mut head = Vec::with_capacity(1024);
    loop {
        if let Some(h) = parse_response_head(&head)? {
            if h.status != 200 {
                bail!("HTTP {}", h.status);
            }
            let rest = head.get(h.head_len..).unwrap_or_default().to_vec();
            return Ok((stream, h.body, rest));
        }
        head.reserve(1024);
        if stream
            .read_buf(&mut head)
            .await
            .context("read response head")?
            == 0
        {
            bail!("connection closed before the response head");
        }
    }
}

enum Body {
    Chunked(ChunkedDecoder),
    Length(u64),
    UntilClose,
}

/// Feeds body bytes through the transfer decoding and the SSE parser.
/// Returns `Ok(true)` when the body ended.
fn process(
    body: &mut Body,
    parser: &mut SseParser,
    state: &mut SubState,
    shared: &Shared,
    bytes: &[u8],
) -> anyhow::Result<bool> {
    let now = super::unix_now_ns();
    let mut on_event = |_ev: &[u8], data: &[u8]| state.on_data(data, now, shared);
    let ended = match body {
        Body::Chunked(dec) => {
            dec.feed(bytes, |d| parser.feed(d, &mut on_event))?;
            dec.is_done()
        }
        Body::Length(left) => {
            let take = usize::try_from(*left).map_or(bytes.len(), |l| l.min(bytes.len()));
            parser.feed(bytes.get(..take).unwrap_or_default(), &mut on_event);
            *left -= take as u64;
            *left == 0
        }
        Body::UntilClose => {
            parser.feed(bytes, &mut on_event);
            false
        }
    };
    state.flush(shared);
    Ok(ended)
}

/// One SSE subscriber, until `stop` is signalled.
pub(crate) async fn run_sse(
    shared: Arc<Shared>,
    target: Target,
    mut state: SubState,
    mut stop: watch::Receiver<bool>,
) -> (SubState, Connection) {
    let opened = tokio::select! {
        r = tokio::time::timeout(CONNECT_TIMEOUT, open_sse(&shared, &target)) => r,
        _ = stop.changed() => return failed(&shared, state, "stopped while connecting".to_owned()),
    };
    let (mut stream, kind, rest) = match opened {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return failed(&shared, state, format!("{e:#}")),
        Err(_) => return failed(&shared, state, "connect timed out".to_owned()),
    };
    Counters::add(&shared.counters.connected, 1);
    let mut body = match kind {
        BodyKind::Chunked => Body::Chunked(ChunkedDecoder::new()),
        BodyKind::Length(n) => Body::Length(n),
        BodyKind::UntilClose => Body::UntilClose,
    };
    let mut parser = SseParser::new();
    match process(&mut body, &mut parser, &mut state, &shared, &rest) {
        Ok(false) => {}
        Ok(true) => return dropped(&shared, state, "stream ended".to_owned()),
        Err(e) => return dropped(&shared, state, format!("{e:#}")),
    }
    drop(rest);
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let read = tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = stream.read(&mut buf) => r,
        };
        let n = match read {
            Ok(0) => return dropped(&shared, state, "server closed the stream".to_owned()),
            Ok(n) => n,
            Err(e) => return dropped(&shared, state, format!("read: {e}")),
        };
        match process(
            &mut body,
            &mut parser,
            &mut state,
            &shared,
            buf.get(..n).unwrap_or_default(),
        ) {
            Ok(false) => {}
            Ok(true) => return dropped(&shared, state, "stream ended".to_owned()),
            Err(e) => return dropped(&shared, state, format!("{e:#}")),
        }
    }
    state.flush(&shared);
    (state, Connection::Held)
}

/// One WebSocket subscriber, until `stop` is signalled. `url` is the full
/// `ws://` URL.
pub(crate) async fn run_ws(
    shared: Arc<Shared>,
    target: Target,
    url: String,
    mut state: SubState,
    mut stop: watch::Receiver<bool>,
) -> (SubState, Connection) {
    use futures_util::FutureExt as _;
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

    let open = async {
        let mut req = url
            .as_str()
            .into_client_request()
            .context("bad WebSocket URL")?;
        if let Some(a) = shared.auth_header.as_deref() {
            req.headers_mut()
                .insert("Authorization", a.parse().context("bad token")?);
        }
        let stream = TcpStream::connect(target.addr).await.context("connect")?;
        stream.set_nodelay(true).context("set_nodelay")?;
        let (ws, _resp) =
            tokio_tungstenite::client_async(req, stream)
                .await
                .map_err(|e| match e {
                    tokio_tungstenite::tungstenite::Error::Http(resp) => {
                        anyhow::anyhow!("HTTP {}", resp.status().as_u16())
                    }
                    other => anyhow::Error::from(other),
                })?;
        anyhow::Ok(ws)
    };
    let opened = tokio::select! {
        r = tokio::time::timeout(CONNECT_TIMEOUT, open) => r,
        _ = stop.changed() => return failed(&shared, state, "stopped while connecting".to_owned()),
    };
    let mut ws = match opened {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return failed(&shared, state, format!("{e:#}")),
        Err(_) => return failed(&shared, state, "connect timed out".to_owned()),
    };
    Counters::add(&shared.counters.connected, 1);
    loop {
        let msg = tokio::select! {
            biased;
            _ = stop.changed() => break,
            m = ws.next() => m,
        };
        // Take the messages already buffered too, then publish the batch.
        let mut next = msg;
        let mut handled = 0;
        loop {
            match next {
                Some(Ok(Message::Text(t))) => {
                    state.on_data(t.as_bytes(), super::unix_now_ns(), &shared);
                }
                Some(Ok(Message::Binary(b))) => state.on_data(&b, super::unix_now_ns(), &shared),
                Some(Ok(Message::Close(frame))) => {
                    let why = frame.map_or_else(
                        || "closed".to_owned(),
                        |f| format!("closed {} {}", f.code, f.reason),
                    );
                    return dropped(&shared, state, why);
                }
                Some(Ok(_)) => {} // ping/pong: tungstenite answers pings itself
                Some(Err(e)) => return dropped(&shared, state, format!("{e}")),
                None => return dropped(&shared, state, "stream ended".to_owned()),
            }
            handled += 1;
            if handled >= 64 {
                break;
            }
            match ws.next().now_or_never() {
                Some(m) => next = m,
                None => break,
            }
        }
        state.flush(&shared);
    }
    state.flush(&shared);
    (state, Connection::Held)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::payload::{Stamp, build};

    fn frame(run: u64, seq: u64, publisher: u32, key: u32, warmup: bool) -> Vec<u8> {
        let mut data = Vec::new();
        let now = crate::bench::unix_now_ns();
        build(
            &mut data,
            &Stamp {
                run,
                sent_ns: now - 1_500_000,
                seq,
                publisher,
                key,
                warmup,
            },
            64,
        );
        let mut f = b"id: x\ndata: ".to_vec();
        f.extend_from_slice(&data);
        f.extend_from_slice(b"\n\n");
        f
    }

    #[test]
    fn accounts_through_chunked_sse() {
        let shared = Shared::for_tests(9);
        let mut state = SubState::new(0, 2, 2);
        let mut stream = Vec::new();
        for (seq, p, warm) in [
            (0, 0, true),
            (1, 0, false),
            (0, 1, false),
            (1, 0, false),
            (3, 0, false),
            (2, 0, false),
        ] {
            stream.extend(frame(9, seq, p, 2, warm));
        }
        stream.extend(frame(8, 0, 0, 2, false)); // stale
        stream.extend(frame(9, 0, 0, 1, false)); // other key
        stream.extend(frame(9, 0, 5, 2, false)); // unknown publisher
        stream.extend_from_slice(b": keep-alive\n\nid: 7\n\ndata: {\"bookmark\":1}\n\n");
        // Chunk it in odd sizes, then split the chunked bytes across reads.
        let mut chunked = Vec::new();
        for c in stream.chunks(37) {
            chunked.extend(format!("{:x}\r\n", c.len()).as_bytes());
            chunked.extend_from_slice(c);
            chunked.extend_from_slice(b"\r\n");
        }
        let mut body = Body::Chunked(ChunkedDecoder::new());
        let mut parser = SseParser::new();
        for part in chunked.chunks(11) {
            assert!(!process(&mut body, &mut parser, &mut state, &shared, part).unwrap());
        }
        assert!(process(&mut body, &mut parser, &mut state, &shared, b"0\r\n\r\n").unwrap());
        let t0 = &state.trackers[0];
        assert_eq!(
            (t0.unique(), t0.duplicates(), t0.reordered(), t0.lost(4)),
            (4, 1, 1, 0)
        );
        assert_eq!(state.trackers[1].unique(), 1);
        assert_eq!((state.stale, state.foreign, state.other), (1, 2, 1));
        assert_eq!(Counters::get(&shared.counters.delivered), 5);
        assert_eq!(Counters::get(&shared.counters.delivered_measured), 4);
        let lat = crate::bench::stats::Percentiles::of(&shared.latency.merged());
        assert_eq!(lat.count, 4);
        assert!(lat.min >= 1_500, "{lat:?}");
    }
}
