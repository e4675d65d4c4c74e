//! What `publish` and `watch` share: the server to talk to, the token, and
//! reading the server's error envelope.

use reqwest::{RequestBuilder, Response, Url};
use serde::Deserialize;

/// Default `--server`.
const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// `--server` and `--token`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ClientArgs {
    /// Base URL of the watchbus server
    #[arg(
        long,
        value_name = "URL",
        env = "WATCHBUS_SERVER",
        // Else help shows `[env: WATCHBUS_SERVER=]` when it is unset.
        hide_env_values = true,
        default_value = DEFAULT_SERVER,
        value_parser = parse_server
    )]
    pub(crate) server: Url,

    /// Bearer token, sent as `Authorization: Bearer T`
    #[arg(
        long,
        value_name = "T",
        env = "WATCHBUS_TOKEN",
        hide_env_values = true,
        value_parser = parse_token
    )]
    pub(crate) token: Option<String>,
}

impl ClientArgs {
    /// The URL of `path` (which starts with `/`) on the server, keeping any
    /// path the server URL has (`http://host/watchbus` + `/v1/events`).
    pub(crate) fn endpoint(&self, path: &str) -> Url {
        let mut url = self.server.clone();
        let joined = format!("{}{path}", url.path().trim_end_matches('/'));
        url.set_path(&joined);
        url
    }

    /// Adds the token, if any: an empty one (`WATCHBUS_TOKEN=`) is none,
    /// as an empty variable is for `serve`.
    pub(crate) fn authorize(&self, request: RequestBuilder) -> RequestBuilder {
        match self.token.as_deref().filter(|token| !token.is_empty()) {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }
}

/// A token without the white space around it (the line ending of a token
/// kept in a file or a secret, say), which no server's token has. Nothing
/// is refused here: clap would show the value it refuses.
fn parse_token(text: &str) -> Result<String, std::convert::Infallible> {
    Ok(text.trim().to_owned())
}

/// An `http://` or `https://` URL. A bare `host:port` (which parses as
/// a relative URL, or as a URL of the scheme `host`) is refused with the
/// URL it probably meant.
pub(crate) fn parse_server(text: &str) -> Result<Url, String> {
    // An empty `WATCHBUS_SERVER=` is no variable, as for `serve`.
    let text = match text.trim() {
        "" => DEFAULT_SERVER,
        text => text,
    };
    let hint = || {
        let bare = !text.contains("://");
        let meant = format!("http://{text}");
        match Url::parse(&meant) {
            Ok(_) if bare => format!(" (did you mean {meant}?)"),
            _ => String::new(),
        }
    };
    let url = Url::parse(text).map_err(|err| format!("invalid URL `{text}`: {err}{}", hint()))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!(
            "invalid URL `{text}`: the scheme must be http or https, not {other}{}",
            hint()
        )),
    }
}

/// The innermost cause of an error: for a failed request, the useful
/// part ("Connection refused (os error 111)") without reqwest's wrapping.
pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// The body of every error response: `{"error": {"code", "message"}}`.
#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
}

/// The person-readable message of an error response: the envelope's
/// message and code, or the status and raw body when there is no envelope.
pub(crate) async fn error_message(response: Response) -> String {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    describe_error(status, &body)
}

fn describe_error(status: reqwest::StatusCode, body: &str) -> String {
    match serde_json::from_str::<ErrorEnvelope>(body) {
        Ok(envelope) => format!(
            "{} ({}, HTTP {})",
            envelope.error.message,
            envelope.error.code,
            status.as_u16()
        ),
        Err(_) if body.trim().is_empty() => format!("the server answered HTTP {status}"),
        Err(_) => format!(
            "the server answered HTTP {status}: {}",
            body.trim().chars().take(500).collect::<String>()
        ),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use reqwest::StatusCode;

    use super::*;

    #[test]
    fn a_token_is_taken_without_the_white_space_around_it() {
        assert_eq!(parse_token(" s3cret\r\n"), Ok("s3cret".to_owned()));
        assert_eq!(parse_token("\n"), Ok(String::new()));
    }

    #[test]
    fn a_bare_host_and_port_is_refused_with_the_url_it_meant() {
        assert_eq!(
            parse_server("127.0.0.1:8080").unwrap_err(),
            "invalid URL `127.0.0.1:8080`: relative URL without a base \
             (did you mean http://127.0.0.1:8080?)"
        );
        assert_eq!(
            parse_server("localhost:8080").unwrap_err(),
            "invalid URL `localhost:8080`: the scheme must be http or https, not localhost \
             (did you mean http://localhost:8080?)"
        );
        assert_eq!(
            parse_server("ftp://hub").unwrap_err(),
            "invalid URL `ftp://hub`: the scheme must be http or https, not ftp"
        );
        assert!(parse_server(" https://hub.example ").is_ok());
        assert_eq!(parse_server("").unwrap().as_str(), "http://127.0.0.1:8080/");
    }

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        client: ClientArgs,
    }

    fn endpoint(server: &str) -> String {
        let cli = Cli::try_parse_from(["x", "--server", server]).unwrap();
        cli.client.endpoint("/v1/events").to_string()
    }

    #[test]
    fn endpoints_keep_the_server_path() {
        assert_eq!(endpoint("http://h:1"), "http://h:1/v1/events");
        assert_eq!(endpoint("http://h:1/"), "http://h:1/v1/events");
        assert_eq!(endpoint("http://h/bus/"), "http://h/bus/v1/events");
    }

    #[test]
    fn only_http_urls_are_servers() {
        assert!(Cli::try_parse_from(["x", "--server", "ftp://h"]).is_err());
        assert!(Cli::try_parse_from(["x", "--server", "h:8080"]).is_err());
    }

    #[test]
    fn the_error_envelope_gives_the_message() {
        let body = r#"{"error":{"code":"invalid_key","message":"key is empty"}}"#;
        assert_eq!(
            describe_error(StatusCode::BAD_REQUEST, body),
            "key is empty (invalid_key, HTTP 400)"
        );
        assert_eq!(
            describe_error(StatusCode::BAD_GATEWAY, "upstream down"),
            "the server answered HTTP 502 Bad Gateway: upstream down"
        );
    }
}
