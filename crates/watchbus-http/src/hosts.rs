//! Which host names the server answers to, against DNS rebinding.
//!
//! A page of `evil.example` whose name its owner makes resolve to
//! `127.0.0.1` is, to the browser, of the server's own origin: neither CORS
//! nor the `Origin` check ([`crate::cors`]) keeps it from reading streams,
//! publishing or resetting a hub that listens on loopback. What the page
//! cannot change is the `Host` header, which still names `evil.example`.
//! A server that answers only to the names it is reached by keeps it out.

use std::net::Ipv6Addr;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

use crate::AppState;
use crate::error::ApiError;

/// The host names a server answers to: IP addresses, `localhost` and its
/// subdomains always (a rebinding page has a name of its own), and the
/// names given. A request with another `Host` is refused `403` before
/// anything is done; one without `Host` (HTTP/1.0; browsers always send
/// it) passes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllowedHosts {
    /// Lowercase, without a trailing dot; `.example.com` also allows every
    /// subdomain of `example.com`.
    names: Vec<String>,
}

impl AllowedHosts {
    /// IP addresses and `localhost` only: what a server that listens on
    /// loopback is reached by, unless a proxy in front keeps the name the
    /// client asked for.
    pub fn local() -> Self {
        Self::default()
    }

    /// IP addresses, `localhost`, and `names` besides: a name allows that
    /// host, a name that starts with a dot (`.example.com`) that domain and
    /// its subdomains. Case does not matter.
    pub fn with_names<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self {
            names: names
                .into_iter()
                .map(|name| normal(name.as_ref()))
                .collect(),
        }
    }

    /// Whether a request whose `Host` is `host` (`name[:port]`) is for
    /// this server.
    pub fn allows(&self, host: &str) -> bool {
        self.allows_bytes(host.as_bytes())
    }

    /// [`Self::allows`], on the header's bytes as sent. A publish passes
    /// here: it reads the bytes in place, allocates nothing, and parses no
    /// address in the common case.
    fn allows_bytes(&self, host: &[u8]) -> bool {
        let name = host_name(host.trim_ascii());
        if let Some(inner) = name.strip_prefix(b"[") {
            // A bracketed host is an IPv6 address or nothing a browser sends.
            return std::str::from_utf8(inner).is_ok_and(|inner| inner.parse::<Ipv6Addr>().is_ok());
        }
        // A browser reads a name of digits and dots as an IPv4 address
        // (the URL standard's host parser), never as a name to look up.
        if !name.is_empty() && name.iter().all(|&b| b.is_ascii_digit() || b == b'.') {
            return true;
        }
        let name = name.strip_suffix(b".").unwrap_or(name);
        if name.eq_ignore_ascii_case(b"localhost") || is_subdomain(name, b"localhost") {
            return true;
        }
        self.names.iter().any(|allowed| {
            let allowed = allowed.as_bytes();
            match allowed.strip_prefix(b".") {
                Some(domain) => name.eq_ignore_ascii_case(domain) || is_subdomain(name, domain),
                None => name.eq_ignore_ascii_case(allowed),
            }
        })
    }
}

/// Whether `name` is a subdomain of `domain`, case aside.
fn is_subdomain(name: &[u8], domain: &[u8]) -> bool {
    name.len()
        .checked_sub(domain.len() + 1)
        .and_then(|dot| name.get(dot..))
        .and_then(|tail| tail.split_first())
        .is_some_and(|(&dot, rest)| dot == b'.' && rest.eq_ignore_ascii_case(domain))
}

/// `name` as names are kept: lowercase, without a trailing dot.
fn normal(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The name of a `Host` value, without its port. An IPv6 address keeps its
/// opening bracket.
fn host_name(host: &[u8]) -> &[u8] {
    let end = if host.starts_with(b"[") {
        host.iter().position(|&b| b == b']')
    } else {
        host.iter().rposition(|&b| b == b':')
    };
    end.and_then(|end| host.get(..end)).unwrap_or(host)
}

/// Refuses a request whose `Host` (the first, as sent) is not one that
/// `allowed` lets in; with no `allowed`, every host passes.
pub(crate) fn check_host(
    allowed: Option<&AllowedHosts>,
    host: Option<&[u8]>,
) -> Result<(), ApiError> {
    let (Some(allowed), Some(host)) = (allowed, host) else {
        return Ok(());
    };
    if allowed.allows_bytes(host) {
        return Ok(());
    }
    Err(ApiError::HostNotAllowed(
        String::from_utf8_lossy(host).into_owned(),
    ))
}

/// The router's layer: refuses a request for another host before any route
/// sees it.
pub(crate) async fn refuse_other_hosts(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    // A target in absolute form names the host, and `Host` is ignored
    // (RFC 9112 §3.2.2).
    let uri = request.uri();
    let host = match uri.authority().filter(|_| uri.scheme().is_some()) {
        Some(authority) => Some(authority.as_str().as_bytes()),
        None => request
            .headers()
            .get(header::HOST)
            .map(HeaderValue::as_bytes),
    };
    match check_host(state.config.allowed_hosts.as_ref(), host) {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_localhost_are_always_allowed() {
        let local = AllowedHosts::local();
        for host in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "10.1.2.3:80",
            "[::1]:8080",
            "[::1]",
            "localhost:8080",
            "LocalHost",
            "localhost.",
            "app.localhost:3000",
        ] {
            assert!(local.allows(host), "{host}");
        }
    }

    #[test]
    fn other_names_need_listing() {
        let local = AllowedHosts::local();
        for host in [
            "evil.example:8080",
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "[evil.example]",
            "",
        ] {
            assert!(!local.allows(host), "{host}");
        }
        let listed = AllowedHosts::with_names(["Hub.Example", ".corp.example"]);
        for host in [
            "hub.example:443",
            "HUB.example.",
            "corp.example",
            "a.corp.example:8080",
            "a.b.corp.example",
        ] {
            assert!(listed.allows(host), "{host}");
        }
        for host in [
            "evil.example",
            "hub.example.evil",
            "xcorp.example",
            "corp.example.evil",
        ] {
            assert!(!listed.allows(host), "{host}");
        }
    }

    #[test]
    fn a_refusal_names_the_host() {
        let local = AllowedHosts::local();
        assert!(check_host(None, Some(b"evil.example")).is_ok());
        assert!(check_host(Some(&local), None).is_ok());
        assert!(check_host(Some(&local), Some(b"127.0.0.1:1")).is_ok());
        for (host, shown) in [
            (&b"evil.example:8080"[..], "evil.example:8080"),
            (b"caf\xc3\xa9", "caf\u{e9}"),
        ] {
            let err = check_host(Some(&local), Some(host)).expect_err("refused");
            assert_eq!(
                err.to_string(),
                format!(
                    "this server does not answer to the host {shown:?} \
                     (a page of a name made to resolve to it?): \
                     serve --allowed-host (HttpConfig::allowed_hosts) lists the names it may be reached by"
                )
            );
        }
    }
}
