//! Writes that must make progress: a client that takes none of the bytes
//! written to it for the write timeout is cut off
//! ([`crate::HttpConfig::write_timeout`]).
//!
//! The timer is armed only when a write has to wait, so a connection whose
//! writes go straight into the socket, as nearly all do, never touches it,
//! and an idle one holds none.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Sleep;

/// The error of a write that waited longer than `limit`.
pub(super) fn timed_out(limit: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("the client took nothing written to it for {limit:?}"),
    )
}

/// Waits until `stream` takes more bytes, for at most `limit`.
///
/// # Errors
/// The wait passed `limit`, or the connection failed.
pub(super) async fn writable_within(stream: &TcpStream, limit: Duration) -> io::Result<()> {
    match tokio::time::timeout(limit, stream.writable()).await {
        Ok(ready) => ready,
        Err(_) => Err(timed_out(limit)),
    }
}

/// The write timeout of a connection whose writes are polled (hyper's).
#[derive(Debug)]
pub(super) struct Stall {
    limit: Duration,
    /// Allocated at the first write that waits, and reused after.
    timer: Option<Pin<Box<Sleep>>>,
    /// A write is waiting, since the timer was last set.
    waiting: bool,
}

impl Stall {
    pub(super) fn new(limit: Duration) -> Self {
        Self {
            limit,
            timer: None,
            waiting: false,
        }
    }

    /// Passes on `polled`, a write's progress; a write still waiting
    /// `limit` after it began to wait fails with [`timed_out`].
    pub(super) fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.waiting = false;
            return polled;
        }
        let timer = match &mut self.timer {
            Some(timer) => {
                if !self.waiting {
                    timer.as_mut().reset(crate::deadline::after(self.limit));
                }
                timer
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep(self.limit))),
        };
        self.waiting = true;
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.waiting = false;
                Poll::Ready(Err(timed_out(self.limit)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
