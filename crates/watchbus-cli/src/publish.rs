//! `watchbus publish KEY [DATA]`: publishes events, prints their ids.
//!
//! With DATA, one event. With `-` or no DATA, standard input, one event per
//! line (lines of only white space are skipped, and a UTF-8 byte order
//! mark before the first line is not part of it). Lines that are already
//! waiting are sent together as one array body of up to [`MAX_BATCH`]
//! events and about [`MAX_BATCH_BYTES`], which the server accepts all or
//! nothing, in order;
//! a slow producer (`tail -f`) still gets each line published as soon as
//! it is read. An array over the server's body limit (`413`, nothing
//! stored) is sent again in halves, down to one line, so every line the
//! server would take alone is published whatever the limit. A refused
//! array is reported by the line at fault, and from which line on nothing
//! was stored, so the input can be mended and resumed there.
//!
//! With `--idempotency-key KEY`, standard input goes one line per request,
//! line N under the key `KEY.N`: batches form as lines arrive, so a second
//! run would batch differently, but line numbers are the input's own. Run
//! again, the command replays what was stored and stores the rest, once.

use std::io::{BufRead as _, Write as _};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::client::{self, ClientArgs};

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's limit on an array body.
const MAX_BATCH: usize = 1000;

/// About the most bytes of lines one array body carries: half the server's
/// default body limit, leaving room for each event's key and quoting.
const MAX_BATCH_BYTES: usize = 512 << 10;

/// Publishes one event, or one per line of standard input, and prints each id.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Examples:
    watchbus publish orders/42 '{\"status\":\"paid\"}' --type order.paid
    watchbus publish --prefix orders/ 'maintenance at noon'
    tail -f app.log | watchbus publish logs/app
    watchbus publish orders/42 - --idempotency-key import-7 < events.jsonl

Prints the id of each event, one per line. On an error the server's message is printed and the exit status is 1; events whose ids were printed are stored, and so are those an error says were stored (when standard output cannot take their ids). Reading standard input, lines of only white space are skipped, and a refusal names the line at fault and the line from which nothing was stored. With --idempotency-key, running the same command again within the server's idempotency window prints the same ids and stores only what was not stored before.")]
pub(crate) struct PublishArgs {
    /// The key to publish to (with --prefix: the key prefix to broadcast to)
    #[arg(value_name = "KEY")]
    key: String,

    /// The data: JSON when it parses as JSON, else text. `-` or none reads standard input, one event per line
    #[arg(value_name = "DATA")]
    data: Option<String>,

    /// The event type, e.g. `user.created`
    #[arg(long = "type", value_name = "T")]
    event_type: Option<String>,

    /// Broadcast to every subscriber of a key starting with KEY
    #[arg(long)]
    prefix: bool,

    /// How long to wait for the server's answer to each request; one that does not come may still have been stored
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::settings::parse_positive_duration)]
    timeout: Duration,

    /// Names this publish, so that running the same command again within the server's idempotency window stores nothing and prints the same id. Reading standard input, line N goes under KEY.N, one request per line: a run again stores only the lines not stored before
    #[arg(long, value_name = "KEY", value_parser = parse_idempotency_key)]
    idempotency_key: Option<watchbus::IdempotencyKey>,

    #[command(flatten)]
    client: ClientArgs,
}

/// One event of a publish body.
#[derive(Debug, Serialize)]
struct Outgoing<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    event_type: Option<&'a str>,
    data: Box<RawValue>,
}

/// The server's answer for one accepted event.
#[derive(Debug, Deserialize)]
struct Accepted {
    id: String,
}

/// DATA as the event's data: JSON when the text parses as JSON, sent as it
/// is written (digits, key order and all: the server stores it so), else
/// the text itself (a JSON string).
pub(crate) fn parse_data(text: &str) -> Box<RawValue> {
    match serde_json::from_str::<&RawValue>(text) {
        Ok(json) => json.to_owned(),
        // Serializing a string cannot fail.
        Err(_) => {
            serde_json::value::to_raw_value(text).unwrap_or_else(|_| RawValue::NULL.to_owned())
        }
    }
}

fn parse_idempotency_key(text: &str) -> Result<watchbus::IdempotencyKey, String> {
    watchbus::IdempotencyKey::new(text).map_err(|err| err.to_string())
}

/// The key of line `number` of standard input under `key`.
fn line_key(key: &watchbus::IdempotencyKey, number: usize) -> anyhow::Result<String> {
    let line_key = format!("{key}.{number}");
    if line_key.len() > watchbus::IdempotencyKey::MAX_LEN {
        anyhow::bail!(
            "line {number}: the idempotency key {line_key:?} is longer than {} characters; \
             nothing from line {number} on was stored",
            watchbus::IdempotencyKey::MAX_LEN
        );
    }
    Ok(line_key)
}

/// Runs `watchbus publish`.
pub(crate) async fn run(args: PublishArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT.min(args.timeout))
        .timeout(args.timeout)
        .build()?;
    match args.data.as_deref() {
        Some(data) if data != "-" => {
            let body = args.outgoing(parse_data(data));
            let key = args.idempotency_key.as_ref().map(|key| key.as_str());
            let accepted: Accepted = args.post(&http, &body, key).await.map_err(for_one)?;
            print_ids(&[accepted.id])
        }
        _ => publish_lines(&args, &http).await,
    }
}

impl PublishArgs {
    fn outgoing(&self, data: Box<RawValue>) -> Outgoing<'_> {
        let target = Some(self.key.as_str());
        Outgoing {
            key: if self.prefix { None } else { target },
            prefix: if self.prefix { target } else { None },
            event_type: self.event_type.as_deref(),
            data,
        }
    }

    /// POSTs a JSON body to `/v1/events`, under the idempotency key
    /// `key` if given; an error carries the server's message, as a
    /// [`Refused`] when the server answered (so stored nothing of the
    /// body).
    async fn post<B, R>(
        &self,
        http: &reqwest::Client,
        body: &B,
        key: Option<&str>,
    ) -> anyhow::Result<R>
    where
        B: Serialize + ?Sized,
        R: serde::de::DeserializeOwned,
    {
        let url = self.client.endpoint("/v1/events");
        let mut request = self.client.authorize(http.post(url.clone()).json(body));
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await.map_err(|err| {
            // Not connected, nothing was sent; anything later (a timeout, a
            // reset) may have come after the store stored.
            let maybe_stored = !err.is_connect();
            let message = if err.is_timeout() && maybe_stored {
                format!(
                    "no answer from {url} within {}",
                    humantime::format_duration(self.timeout)
                )
            } else {
                format!("cannot reach {url}: {}", client::root_cause(&err))
            };
            Unanswered {
                message,
                maybe_stored,
            }
        })?;
        if !response.status().is_success() {
            let status = response.status();
            let message = client::error_message(response).await;
            return Err(Refused { status, message }.into());
        }
        // A success whose receipts cannot be read: stored, ids unknown.
        response.json().await.map_err(|err| {
            anyhow::Error::new(Unanswered {
                message: format!("unexpected answer from {url}: {}", client::root_cause(&err)),
                maybe_stored: true,
            })
        })
    }
}

/// A publish whose answer did not come (or could not be read): with
/// `maybe_stored`, the request was sent, and the server may have stored
/// it.
#[derive(Debug)]
struct Unanswered {
    message: String,
    maybe_stored: bool,
}

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Unanswered {}

/// Whether `error` of a publish leaves its events maybe stored: sent with
/// no answer, or answered with a server error (a store that timed out
/// after storing).
fn maybe_stored(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<Unanswered>()
        .is_some_and(|unanswered| unanswered.maybe_stored)
        || error
            .downcast_ref::<Refused>()
            .is_some_and(|refused| refused.status.is_server_error())
}

/// `error` of a one-event publish, saying when the event may have been
/// stored all the same.
fn for_one(error: anyhow::Error) -> anyhow::Error {
    if maybe_stored(&error) {
        anyhow::anyhow!(
            "{error}; the event may or may not have been stored (look before sending it again, \
             or publish with --idempotency-key)"
        )
    } else {
        error
    }
}

/// The server answered a publish with this error status and message: for a
/// `4xx`, nothing of its body was stored; for a `5xx` (the store timed out,
/// say), some of it may have been.
#[derive(Debug)]
struct Refused {
    status: reqwest::StatusCode,
    message: String,
}

impl Refused {
    /// Whether `error` is a refusal of a body over the server's limit.
    fn too_large(error: &anyhow::Error) -> bool {
        error
            .downcast_ref::<Self>()
            .is_some_and(|refused| refused.status == reqwest::StatusCode::PAYLOAD_TOO_LARGE)
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refused {}

/// A non-blank line of standard input.
#[derive(Debug)]
struct Line {
    /// From 1, blank lines counted.
    number: usize,
    text: String,
}

/// `error` of the array body sent for `batch`, told in lines: the server's
/// "event N of the array" becomes the line it was read from, and a refusal
/// says from which line on nothing was stored.
fn in_lines(error: anyhow::Error, batch: &[Line]) -> anyhow::Error {
    let first = batch.first().map_or(0, |line| line.number);
    let last = batch.last().map_or(first, |line| line.number);
    let maybe = if first == last {
        format!(
            "line {first} may or may not have been stored (look before sending it again, or \
             publish with --idempotency-key), and nothing after it was"
        )
    } else {
        format!(
            "lines {first} to {last} may or may not have been stored (look before sending them \
             again, or publish with --idempotency-key), and nothing after line {last} was"
        )
    };
    let Some(Refused { message, status }) = error.downcast_ref::<Refused>() else {
        return match error.downcast_ref::<Unanswered>() {
            Some(unanswered) if unanswered.maybe_stored => anyhow::anyhow!("{error}; {maybe}"),
            Some(_) => anyhow::anyhow!("{error}; nothing from line {first} on was stored"),
            None => error,
        };
    };
    let of_event = message.strip_prefix("event ").and_then(|rest| {
        let (at, rest) = rest.split_once(" of the array: ")?;
        let line = batch.get(at.parse::<usize>().ok()?)?;
        Some(format!("line {}: {rest}", line.number))
    });
    let at_fault = match (of_event, batch) {
        (Some(at_fault), _) => Some(at_fault),
        // One line: whatever was refused (its size, say), it was that line.
        (None, [line]) => Some(format!("line {}: {message}", line.number)),
        (None, _) => None,
    };
    let stored = if status.is_server_error() {
        maybe
    } else {
        format!("nothing from line {first} on was stored")
    };
    anyhow::anyhow!("{}; {stored}", at_fault.as_deref().unwrap_or(message))
}

async fn publish_lines(args: &PublishArgs, http: &reqwest::Client) -> anyhow::Result<()> {
    // With a key, a batch is one line, named by its number: batches formed
    // as lines arrive would differ between two runs of the same input.
    let most = if args.idempotency_key.is_some() {
        1
    } else {
        MAX_BATCH
    };
    let mut lines = read_stdin_lines();
    while let Some(first) = lines.recv().await {
        let mut batch = vec![first?];
        let mut bytes = batch.iter().map(|line| line.text.len()).sum::<usize>();
        // A line that cannot be read ends the input, after the lines read
        // before it are published.
        let mut unreadable = None;
        while batch.len() < most && bytes < MAX_BATCH_BYTES {
            match lines.try_recv() {
                Ok(Ok(line)) => {
                    bytes += line.text.len();
                    batch.push(line);
                }
                Ok(Err(error)) => {
                    unreadable = Some(error);
                    break;
                }
                Err(_) => break,
            }
        }
        publish_batch(args, http, &batch).await?;
        if let Some(error) = unreadable {
            return Err(error);
        }
    }
    Ok(())
}

/// Publishes `batch` in order and prints the ids; in halves, then
/// quarters..., while the server finds the body too large.
async fn publish_batch(
    args: &PublishArgs,
    http: &reqwest::Client,
    batch: &[Line],
) -> anyhow::Result<()> {
    let mut rest = batch;
    let mut most = batch.len();
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at_checked(most).unwrap_or((rest, &[]));
        let body: Vec<Outgoing<'_>> = chunk
            .iter()
            .map(|line| args.outgoing(parse_data(&line.text)))
            .collect();
        let key = match (&args.idempotency_key, chunk) {
            (Some(key), [line]) => Some(line_key(key, line.number)?),
            _ => None,
        };
        let accepted: Vec<Accepted> = match args.post(http, &body, key.as_deref()).await {
            Ok(accepted) => accepted,
            Err(error) if Refused::too_large(&error) && chunk.len() > 1 => {
                most = chunk.len().div_ceil(2);
                continue;
            }
            Err(error) => return Err(in_lines(error, chunk)),
        };
        if accepted.len() != body.len() {
            anyhow::bail!(
                "the server accepted {} events but was sent {}",
                accepted.len(),
                body.len()
            );
        }
        let ids: Vec<String> = accepted.into_iter().map(|accepted| accepted.id).collect();
        print_ids(&ids)?;
        rest = after;
    }
    Ok(())
}

/// Reads standard input on a thread of its own (it blocks), one
/// non-blank line at a time, without its line ending (LF or CRLF). The
/// first line that is not UTF-8, or a read error, is the last item.
fn read_stdin_lines() -> mpsc::Receiver<anyhow::Result<Line>> {
    let (sender, receiver) = mpsc::channel(4 * MAX_BATCH);
    std::thread::spawn(move || {
        for (at, line) in std::io::stdin().lock().split(b'\n').enumerate() {
            let number = at + 1;
            let line = line
                .context("cannot read standard input")
                .and_then(|bytes| line_text(bytes, number))
                .map(|text| Line { number, text });
            let failed = line.is_err();
            let blank = line.as_ref().is_ok_and(|line| line.text.trim().is_empty());
            if !blank && sender.blocking_send(line).is_err() {
                return;
            }
            if failed {
                return;
            }
        }
    });
    receiver
}

/// The text of line `number`, without a CR before its LF, nor the byte
/// order mark that some Windows editors put before the first line.
fn line_text(mut bytes: Vec<u8>, number: usize) -> anyhow::Result<String> {
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    if number == 1 && bytes.starts_with(BYTE_ORDER_MARK) {
        bytes.drain(..BYTE_ORDER_MARK.len());
    }
    String::from_utf8(bytes).map_err(|err| {
        anyhow::anyhow!(
            "line {number}: not UTF-8 (byte {} of the line); nothing from line {number} on was stored",
            err.utf8_error().valid_up_to() + 1
        )
    })
}

/// U+FEFF in UTF-8.
const BYTE_ORDER_MARK: &[u8] = b"\xEF\xBB\xBF";

/// Prints the ids of stored events, one per line. When standard output
/// cannot take them (a full disk, a closed pipe), the error says that the
/// events were stored all the same, so that a script does not send them
/// again.
fn print_ids(ids: &[String]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    ids.iter()
        .try_for_each(|id| writeln!(stdout, "{id}"))
        .and_then(|()| stdout.flush())
        .map_err(|err| unprinted(ids, &err))
}

/// The error of ids that were stored but could not be printed.
fn unprinted(ids: &[String], err: &std::io::Error) -> anyhow::Error {
    let stored = match ids {
        [id] => format!("the event was stored as {id}"),
        [first, .., last] => format!("{} events were stored, {first} to {last}", ids.len()),
        [] => "nothing was stored".to_owned(),
    };
    anyhow::anyhow!("{stored}, but standard output could not take the ids: {err}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn lines(numbers: &[usize]) -> Vec<Line> {
        numbers
            .iter()
            .map(|&number| Line {
                number,
                text: String::new(),
            })
            .collect()
    }

    #[test]
    fn a_refused_array_is_told_by_its_lines() {
        // How the refusal `message` of a batch of lines `numbers` is told.
        let told = |numbers: &[usize], message: &str| {
            let refused = Refused {
                status: reqwest::StatusCode::UNPROCESSABLE_ENTITY,
                message: message.to_owned(),
            };
            in_lines(anyhow::Error::new(refused), &lines(numbers)).to_string()
        };
        let batch = [3, 4, 6];
        assert_eq!(
            told(
                &batch,
                "event 2 of the array: the data does not match (schema_mismatch, HTTP 422)"
            ),
            "line 6: the data does not match (schema_mismatch, HTTP 422); \
             nothing from line 3 on was stored"
        );
        // Not of an event, or of none sent: the message as it is.
        assert_eq!(
            told(&batch, "the key is bad (invalid_key, HTTP 400)"),
            "the key is bad (invalid_key, HTTP 400); nothing from line 3 on was stored"
        );
        // A server error may come after the store stored: no claim of nothing.
        let unavailable = Refused {
            status: reqwest::StatusCode::SERVICE_UNAVAILABLE,
            message: "the store is unavailable (store_unavailable, HTTP 503)".into(),
        };
        assert_eq!(
            in_lines(anyhow::Error::new(unavailable), &lines(&batch)).to_string(),
            "the store is unavailable (store_unavailable, HTTP 503); lines 3 to 6 may or may \
             not have been stored (look before sending them again, or publish with \
             --idempotency-key), and nothing after line 6 was"
        );
        let unavailable = Refused {
            status: reqwest::StatusCode::SERVICE_UNAVAILABLE,
            message: "the store is unavailable (store_unavailable, HTTP 503)".into(),
        };
        assert_eq!(
            in_lines(anyhow::Error::new(unavailable), &lines(&[9])).to_string(),
            "line 9: the store is unavailable (store_unavailable, HTTP 503); line 9 may or may \
             not have been stored (look before sending it again, or publish with \
             --idempotency-key), and nothing after it was"
        );
        assert_eq!(
            told(&batch, "event 3 of the array: x"),
            "event 3 of the array: x; nothing from line 3 on was stored"
        );
        // A batch of one line: that line, whatever the refusal.
        assert_eq!(
            told(&[9], "too large"),
            "line 9: too large; nothing from line 9 on was stored"
        );
        assert_eq!(
            told(&[9], "event 0 of the array: bad"),
            "line 9: bad; nothing from line 9 on was stored"
        );
        // The server was not reached: nothing was sent.
        let unreachable = Unanswered {
            message: "cannot reach http://x".into(),
            maybe_stored: false,
        };
        assert_eq!(
            in_lines(anyhow::Error::new(unreachable), &lines(&batch)).to_string(),
            "cannot reach http://x; nothing from line 3 on was stored"
        );
        // Sent, and no answer: the lines may be stored.
        let unanswered = Unanswered {
            message: "no answer from http://x within 30s".into(),
            maybe_stored: true,
        };
        assert_eq!(
            in_lines(anyhow::Error::new(unanswered), &lines(&batch)).to_string(),
            "no answer from http://x within 30s; lines 3 to 6 may or may not have been stored \
             (look before sending them again, or publish with --idempotency-key), and nothing \
             after line 6 was"
        );
        // Anything else (the input, say) makes no claim.
        let other = in_lines(anyhow::anyhow!("line 7: not UTF-8"), &lines(&batch));
        assert_eq!(other.to_string(), "line 7: not UTF-8");
    }

    #[test]
    fn a_line_is_utf8_text_without_its_line_ending() {
        assert_eq!(line_text(b"a b\r".to_vec(), 1).unwrap(), "a b");
        assert_eq!(line_text(b"a\rb".to_vec(), 1).unwrap(), "a\rb");
        assert_eq!(
            line_text(b"ok\xff".to_vec(), 3).unwrap_err().to_string(),
            "line 3: not UTF-8 (byte 3 of the line); nothing from line 3 on was stored"
        );
    }

    #[test]
    fn a_byte_order_mark_before_the_first_line_is_not_its_text() {
        let marked = |line: &str| [BYTE_ORDER_MARK, line.as_bytes()].concat();
        assert_eq!(line_text(marked("{\"a\":1}\r"), 1).unwrap(), "{\"a\":1}");
        // Only the file's mark: within the input it is a character.
        assert_eq!(line_text(marked("x"), 2).unwrap(), "\u{feff}x");
    }

    #[test]
    fn ids_that_cannot_be_printed_are_said_to_be_stored() {
        let err = std::io::Error::from_raw_os_error(28);
        let ids = |ids: &[&str]| ids.iter().map(|id| id.to_string()).collect::<Vec<_>>();
        assert_eq!(
            unprinted(&ids(&["1-7"]), &err).to_string(),
            format!(
                "the event was stored as 1-7, but standard output could not take the ids: {err}"
            )
        );
        assert_eq!(
            unprinted(&ids(&["1-7", "1-8", "1-9"]), &err).to_string(),
            format!(
                "3 events were stored, 1-7 to 1-9, but standard output could not take the ids: {err}"
            )
        );
    }

    #[test]
    fn each_line_has_a_key_of_its_own_within_the_longest_key() {
        let key = |text: &str| watchbus::IdempotencyKey::new(text).unwrap();
        assert_eq!(line_key(&key("import-1"), 7).unwrap(), "import-1.7");
        let long = key(&"k".repeat(251));
        assert_eq!(line_key(&long, 999).unwrap().len(), 255);
        assert_eq!(
            line_key(&long, 1000).unwrap_err().to_string(),
            format!(
                "line 1000: the idempotency key \"{}.1000\" is longer than 255 characters; \
                 nothing from line 1000 on was stored",
                "k".repeat(251)
            )
        );
    }

    #[test]
    fn data_that_parses_as_json_is_sent_as_written() {
        for (text, sent) in [
            ("{\"a\": 1}", "{\"a\": 1}"),
            ("[1,2]", "[1,2]"),
            ("42", "42"),
            ("-1.5", "-1.5"),
            ("true", "true"),
            ("null", "null"),
            ("\"quoted\"", "\"quoted\""),
            // No float round trip, no sorting, no dropped duplicate.
            ("12345678901234567890123", "12345678901234567890123"),
            ("1E2", "1E2"),
            ("-0", "-0"),
            ("1e400", "1e400"),
            ("{\"z\":1,\"a\":2,\"a\":3}", "{\"z\":1,\"a\":2,\"a\":3}"),
        ] {
            assert_eq!(parse_data(text).get(), sent, "{text}");
        }
        assert_eq!(parse_data(" 7 ").get(), "7");
        let deep = format!("{}{}", "[".repeat(130), "]".repeat(130));
        assert_eq!(parse_data(&deep).get(), deep);
    }

    #[test]
    fn anything_else_is_text() {
        for (text, sent) in [
            ("hello", "\"hello\""),
            ("hello world", "\"hello world\""),
            ("", "\"\""),
            ("{not json", "\"{not json\""),
            ("1 2", "\"1 2\""),
            ("True", "\"True\""),
            ("say \"hi\"", "\"say \\\"hi\\\"\""),
        ] {
            assert_eq!(parse_data(text).get(), sent, "{text}");
        }
    }

    fn args(argv: &[&str]) -> PublishArgs {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            publish: PublishArgs,
        }
        Cli::try_parse_from(std::iter::once("publish").chain(argv.iter().copied()))
            .unwrap()
            .publish
    }

    #[test]
    fn bodies_carry_key_or_prefix_and_type() {
        let keyed = args(&["orders/1", "--type", "order.paid"]);
        assert_eq!(
            serde_json::to_value(keyed.outgoing(parse_data(r#"{"x": 1}"#))).unwrap(),
            json!({"key": "orders/1", "type": "order.paid", "data": {"x": 1}})
        );
        let broadcast = args(&["orders/", "--prefix"]);
        assert_eq!(
            serde_json::to_value(broadcast.outgoing(parse_data("hi"))).unwrap(),
            json!({"prefix": "orders/", "data": "hi"})
        );
    }
}
