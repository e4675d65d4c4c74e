//! Command-line arguments of `watchbus bench`.

use std::time::Duration;

/// Load-generate against a running watchbus, or any SSE server through URL
/// templates, and report deliveries, latency, loss, duplicates and reorders.
///
/// Each key's events carry a sequence number per publisher. A publish
/// refused with a 4xx was not stored, and its number is used again; one
/// that failed in transit or with a 5xx may have been stored, so its
/// number is spent and its event counts as neither expected, lost nor
/// duplicated.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Examples:\n  watchbus bench --subscribers 1000 --rate 1000 --duration 10s --payload 128\n  watchbus bench --keys 10000 --subscribers 10000 --rate 5000 --key-order random --pid $(pgrep -n watchbus)\n  watchbus bench --idle --subscribers 10000 --pid $SERVER_PID\n  watchbus bench --publish-only --publishers 8 --rate 0\n  watchbus bench --sub-url 'http://127.0.0.1:8081/sub?id={key}' --pub-url 'http://127.0.0.1:8081/pub?id={key}'\n\nLoss accounting: each key's events carry a sequence number per publisher. A publish refused with a 4xx was not stored and its number is used again; one that failed in transit or with a 5xx may have been stored, so its event counts as neither expected, lost nor duplicated.\n\nCtrl-C while publishing stops the publishers early: what was sent is drained and reported as a run of that length (the report says so; `interrupted_after_s` in --json). Ctrl-C again quits at once."
)]
pub(crate) struct BenchArgs {
    /// Base URL of the watchbus server.
    #[arg(
        long,
        env = "WATCHBUS_SERVER",
        hide_env_values = true,
        default_value = "http://127.0.0.1:8080",
        value_parser = parse_server
    )]
    pub(crate) server: String,

    /// Bearer token sent on every request (subscribe, publish, stats).
    #[arg(long, env = "WATCHBUS_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,

    /// Subscribe URL template for any SSE server; `{key}` is replaced by the
    /// key (e.g. `http://host/sub?id={key}`). Default: `{server}/v1/events?key={key}`
    /// (`/v1/ws?key={key}` with `--transport ws`).
    #[arg(long, value_name = "URL")]
    pub(crate) sub_url: Option<String>,

    /// Publish URL template; the event's payload is POSTed as the body
    /// (nchan style). Default: `{server}/v1/events?key={key}`.
    #[arg(long, value_name = "URL")]
    pub(crate) pub_url: Option<String>,

    /// Content-Type of published bodies.
    #[arg(long, default_value = "application/json", value_name = "TYPE")]
    pub(crate) pub_content_type: String,

    /// Number of subscriber connections.
    #[arg(long, short = 's', default_value_t = 100)]
    pub(crate) subscribers: u32,

    /// Number of keys (`{key-prefix}0` ..); subscribers are spread over them round-robin.
    #[arg(long, short = 'k', default_value_t = 1)]
    pub(crate) keys: u32,

    /// Prefix of the key names.
    #[arg(long, default_value = "bench-", value_name = "PREFIX")]
    pub(crate) key_prefix: String,

    /// How publishers pick the key of each event.
    #[arg(long, value_enum, default_value_t = KeyOrder::RoundRobin)]
    pub(crate) key_order: KeyOrder,

    /// Total publish rate in events per second, paced; 0 publishes as fast as
    /// the publisher connections allow.
    #[arg(
        long,
        short = 'r',
        default_value_t = 1000,
        value_name = "EVENTS_PER_SEC"
    )]
    pub(crate) rate: u64,

    /// Concurrent publisher connections (each sends one request at a time).
    #[arg(long, short = 'p', default_value_t = 4)]
    pub(crate) publishers: u32,

    /// Length of the measured publish window.
    #[arg(long, short = 'd', default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) duration: Duration,

    /// Publish for this long before the measured window; those events are
    /// checked for loss but not counted in latency and rates.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub(crate) warmup: Duration,

    /// Approximate size of each event's data, in bytes (padding is added), at most 16 MiB.
    #[arg(long, default_value_t = 128, value_name = "BYTES", value_parser = parse_payload)]
    pub(crate) payload: usize,

    /// How many subscriber connections to open per second.
    #[arg(long, default_value_t = 2000, value_name = "CONN_PER_SEC")]
    pub(crate) connect_rate: u64,

    /// Subscriber transport.
    #[arg(long, short = 't', value_enum, default_value_t = Transport::Sse)]
    pub(crate) transport: Transport,

    /// Pid of the server process, to sample its RSS and CPU time; its child
    /// processes count too (nginx: pass the master's pid).
    #[arg(long)]
    pub(crate) pid: Option<u32>,

    /// After publishing ends, wait up to this long for in-flight deliveries.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub(crate) drain: Duration,

    /// Wait this long after all subscribers connected before publishing,
    /// when the server cannot say that they are registered (watchbus says so
    /// in /v1/stats, and then no delay is waited).
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub(crate) settle: Duration,

    /// Only open the subscriber connections, hold them for `--duration`, and
    /// report the server's RSS growth per connection (which needs `--pid`).
    #[arg(long, conflicts_with = "publish_only")]
    pub(crate) idle: bool,

    /// No subscribers: measure publish requests per second and latency.
    #[arg(long)]
    pub(crate) publish_only: bool,

    /// Exit with an error when any event was lost, duplicated or reordered,
    /// a subscriber failed to connect or was disconnected, a publish was
    /// refused or failed, or nothing was published.
    #[arg(long)]
    pub(crate) fail_on_loss: bool,

    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Transport {
    /// Server-Sent Events over HTTP/1.1.
    Sse,
    /// WebSocket.
    Ws,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum KeyOrder {
    /// Keys in turn.
    RoundRobin,
    /// A uniformly random key for each event.
    Random,
}

/// A plain `http://` server URL, refused at once (exit 2) otherwise: the
/// bench measures plain HTTP.
fn parse_server(text: &str) -> Result<String, String> {
    let url = crate::client::parse_server(text)?;
    if url.scheme() != "http" {
        return Err(format!(
            "`{text}`: the bench measures plain http:// servers only"
        ));
    }
    Ok(text.trim().to_owned())
}

/// The most data a bench event carries: each publisher holds a buffer of
/// it, and larger events measure the network, not the hub.
const MAX_PAYLOAD: usize = 16 << 20;

fn parse_payload(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(bytes) if bytes <= MAX_PAYLOAD => Ok(bytes),
        Ok(_) => Err(format!("at most {MAX_PAYLOAD} bytes (16 MiB)")),
        Err(err) => Err(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_is_at_most_16_mib() {
        assert_eq!(parse_payload("0"), Ok(0));
        assert_eq!(parse_payload("16777216"), Ok(16 << 20));
        assert_eq!(
            parse_payload("16777217"),
            Err("at most 16777216 bytes (16 MiB)".to_owned())
        );
        assert!(parse_payload("18446744073709551615").is_err());
        assert!(parse_payload("-1").is_err());
    }

    #[test]
    fn the_server_is_a_plain_http_url() {
        assert_eq!(
            parse_server("http://127.0.0.1:8080/"),
            Ok("http://127.0.0.1:8080/".to_owned())
        );
        assert_eq!(
            parse_server("https://hub"),
            Err("`https://hub`: the bench measures plain http:// servers only".to_owned())
        );
        assert!(parse_server("127.0.0.1:8080").is_err_and(|err| err.contains("did you mean")));
    }
}
