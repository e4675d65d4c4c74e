//! A minimal keep-alive HTTP/1.1 client on a raw TCP stream: one request at a
//! time, buffers reused between requests. Used by publishers and for
//! `/v1/stats`.

use super::http::{BodyKind, ChunkedDecoder, Target, parse_response_head, write_request};
use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug)]
pub(crate) struct RawClient {
    target: Target,
    stream: Option<TcpStream>,
    wbuf: Vec<u8>,
    rbuf: Vec<u8>,
    /// Body of the last response (kept for small bodies such as stats).
    body: Vec<u8>,
}

/// A response's status and whether the connection is still usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Status(pub(crate) u16);

impl RawClient {
    pub(crate) fn new(target: Target) -> Self {
        Self {
            target,
            stream: None,
            wbuf: Vec::with_capacity(1024),
            rbuf: Vec::with_capacity(4096),
            body: Vec::new(),
        }
    }

    /// The body of the last response.
    pub(crate) fn body(&self) -> &[u8] {
        &self.body
    }

    /// Sends one request and reads the whole response. Retries once on a fresh
    /// connection when a reused keep-alive connection turns out closed before
    /// any response byte arrived.
    pub(crate) async fn request(
        &mut self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> anyhow::Result<Status> {
        write_request(
            &mut self.wbuf,
            method,
            &self.target,
            path_and_query,
            headers,
            body,
        );
        let reused = self.stream.is_some();
        match self.exchange().await {
            Ok(s) => Ok(s),
            Err(Exchange::ClosedBeforeResponse) if reused => {
                self.stream = None;
                self.exchange().await.map_err(Exchange::into_error)
            }
            Err(e) => {
                self.stream = None;
                Err(e.into_error())
            }
        }
    }

    async fn exchange(&mut self) -> Result<Status, Exchange> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.target.addr)
                .await
                .with_context(|| format!("cannot connect to {}", self.target.addr))?;
            s.set_nodelay(true).context("set_nodelay")?;
            self.stream = Some(s);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(Exchange::Other(anyhow::anyhow!("no connection")));
        };
        if let Err(e) = stream.write_all(&self.wbuf).await {
            return Err(
                if e.kind() == std::io::ErrorKind::BrokenPipe
                    || e.kind() == std::io::ErrorKind::ConnectionReset
                {
                    Exchange::ClosedBeforeResponse
                } else {
                    Exchange::Other(e.into())
                },
            );
        }
        self.rbuf.clear();
        self.body.clear();
        let head = loop {
            if let Some(head) = parse_response_head(&self.rbuf)? {
                break head;
            }
            self.rbuf.reserve(4096);
            let n = match stream.read_buf(&mut self.rbuf).await {
                Ok(n) => n,
                Err(e)
                    if self.rbuf.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset =>
                {
                    return Err(Exchange::ClosedBeforeResponse);
                }
                Err(e) => return Err(Exchange::Other(e.into())),
            };
            if n == 0 {
                return Err(if self.rbuf.is_empty() {
                    Exchange::ClosedBeforeResponse
                } else {
                    Exchange::Other(anyhow::anyhow!("connection closed inside a response head"))
                });
            }
        };
        let mut pending = self.rbuf.get(head.head_len..).unwrap_or_default().to_vec();
        let keep = |body: &mut Vec<u8>, d: &[u8]| {
            if body.len() < 64 * 1024 {
                body.extend_from_slice(d);
            }
        };
        let mut buf = [0u8; 4096];
        match head.body {
            BodyKind::Length(mut left) => loop {
                let take = usize::try_from(left).map_or(pending.len(), |l| l.min(pending.len()));
                keep(&mut self.body, pending.get(..take).unwrap_or_default());
                left -= take as u64;
                if left == 0 {
                    break;
                }
                let n = stream.read(&mut buf).await.map_err(anyhow::Error::from)?;
                if n == 0 {
                    return Err(Exchange::Other(anyhow::anyhow!(
                        "connection closed inside a response body"
                    )));
                }
                pending.clear();
                pending.extend_from_slice(buf.get(..n).unwrap_or_default());
            },
            BodyKind::Chunked => {
                let mut dec = ChunkedDecoder::new();
                loop {
                    let body = &mut self.body;
                    dec.feed(&pending, |d| keep(body, d))?;
                    if dec.is_done() {
                        break;
                    }
                    let n = stream.read(&mut buf).await.map_err(anyhow::Error::from)?;
                    if n == 0 {
                        return Err(Exchange::Other(anyhow::anyhow!(
                            "connection closed inside a chunked body"
                        )));
                    }
                    pending.clear();
                    pending.extend_from_slice(buf.get(..n).unwrap_or_default());
                }
            }
            BodyKind::UntilClose => {
                keep(&mut self.body, &pending);
                loop {
                    let n = stream.read(&mut buf).await.map_err(anyhow::Error::from)?;
                    if n == 0 {
                        break;
                    }
                    keep(&mut self.body, buf.get(..n).unwrap_or_default());
                }
                self.stream = None;
            }
        }
        if head.close {
            self.stream = None;
        }
        Ok(Status(head.status))
    }
}

#[derive(Debug)]
enum Exchange {
    /// The server closed the connection before answering: the request was not
    /// processed, it is safe to send it again.
    ClosedBeforeResponse,
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Exchange {
    fn from(e: anyhow::Error) -> Self {
        Self::Other(e)
    }
}

impl Exchange {
    fn into_error(self) -> anyhow::Error {
        match self {
            Self::ClosedBeforeResponse => anyhow::anyhow!("connection closed before a response"),
            Self::Other(e) => e,
        }
    }
}

/// Reads `subscribers.active` from a watchbus `/v1/stats` body.
pub(crate) fn active_subscribers(body: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("subscribers")?.get("active")?.as_u64()
}

/// GETs watchbus `/v1/stats` and returns `subscribers.active`.
pub(crate) async fn fetch_active(
    client: &mut RawClient,
    headers: &[(&str, &str)],
) -> anyhow::Result<u64> {
    let status = client.request("GET", "/v1/stats", headers, None).await?;
    if status.0 != 200 {
        bail!("/v1/stats answered {}", status.0);
    }
    active_subscribers(client.body()).context("/v1/stats has no subscribers.active")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers each request on a connection with the next canned
    /// response, then closes after the last.
    async fn canned(responses: Vec<&'static [u8]>) -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            for r in responses {
                let mut got = Vec::new();
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    got.extend_from_slice(&buf[..n]);
                    if let Some(end) = memchr::memmem::find(&got, b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                // Write in two pieces to exercise reassembly.
                let (a, b) = r.split_at(r.len() / 2);
                s.write_all(a).await.unwrap();
                s.flush().await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                s.write_all(b).await.unwrap();
            }
        });
        Target {
            addr,
            host_header: addr.to_string(),
            path_and_query: "/".to_owned(),
        }
    }

    #[tokio::test]
    async fn keep_alive_requests_with_each_body_kind() {
        let target = canned(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{\"id\":\"0001\"}",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"sub\r\n1d\r\nscribers\":{\"active\":7,\"x\":1}}\r\n0\r\n\r\n",
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}",
        ])
        .await;
        let mut c = RawClient::new(target);
        let h = [("Content-Type", "application/json")];
        assert_eq!(
            c.request("POST", "/v1/events?key=a", &h, Some(b"{}"))
                .await
                .unwrap(),
            Status(200)
        );
        assert_eq!(c.body(), b"{\"id\":\"0001\"}");
        assert_eq!(fetch_active(&mut c, &[]).await.unwrap(), 7);
        assert_eq!(
            c.request("POST", "/v1/events?key=a", &h, Some(b"{}"))
                .await
                .unwrap(),
            Status(503)
        );
        // The server has closed: the next request fails (a retry finds nobody listening
        // on a fresh connection only if the listener is gone; here it is).
        assert!(
            c.request("POST", "/v1/events?key=a", &h, Some(b"{}"))
                .await
                .is_err()
        );
    }
}
