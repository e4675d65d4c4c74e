//! How the server tells its connections that it is closing.
//!
//! A keep-alive connection waits for its next request and, at the same
//! time, for the server to close. A `CancellationToken` can do that, but
//! each wait on it takes two locks that every connection shares (the
//! token's, and its `Notify`'s waiter list), and a busy connection waits
//! once per request: two cache lines passed between the cores on every
//! request. Here a connection registers once, when it opens. A wait is then
//! a load of a flag that nobody writes until the close, and a register on
//! the connection's own waker slot.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;

use futures_util::task::AtomicWaker;

/// The server's side: closes once, for every connection, present or future.
#[derive(Debug, Default)]
pub(super) struct Closing {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    closed: AtomicBool,
    next_id: AtomicU64,
    /// The waker slot of each open connection.
    listeners: Mutex<HashMap<u64, Arc<AtomicWaker>>>,
}

impl Shared {
    fn listeners(&self) -> MutexGuard<'_, HashMap<u64, Arc<AtomicWaker>>> {
        // The map stays whole whatever panicked while holding it.
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection's side: learns of the close. Dropping it unregisters.
#[derive(Debug)]
pub(super) struct Listener {
    shared: Arc<Shared>,
    id: u64,
    waker: Arc<AtomicWaker>,
}

impl Closing {
    /// A listener for one connection.
    pub(super) fn listener(&self) -> Listener {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let waker = Arc::new(AtomicWaker::new());
        self.shared.listeners().insert(id, Arc::clone(&waker));
        Listener {
            shared: Arc::clone(&self.shared),
            id,
            waker,
        }
    }

    /// Closes: every listener's [`Listener::closed`] resolves, now or when
    /// next polled, including those of connections still to register.
    pub(super) fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        let wakers: Vec<_> = self.shared.listeners().values().cloned().collect();
        for waker in wakers {
            waker.wake();
        }
    }
}

impl Listener {
    /// The server has closed.
    pub(super) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Resolves once the server has closed. Cancel safe.
    pub(super) async fn closed(&self) {
        poll_fn(|cx| {
            if self.is_closed() {
                return Poll::Ready(());
            }
            // Registered first, then checked again: a close in between is
            // seen by the check, a later one wakes the registered waker.
            self.waker.register(cx.waker());
            if self.is_closed() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shared.listeners().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_waiting_listener_wakes_on_close() {
        let closing = Closing::default();
        let listener = closing.listener();
        let waiting = tokio::spawn(async move {
            listener.closed().await;
            listener.is_closed()
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        closing.close();
        let closed = tokio::time::timeout(WAIT, waiting).await;
        assert!(matches!(closed, Ok(Ok(true))), "{closed:?}");
    }

    #[tokio::test]
    async fn a_listener_made_or_polled_after_the_close_sees_it() {
        let closing = Closing::default();
        let before = closing.listener();
        closing.close();
        let after = closing.listener();
        assert!(before.is_closed() && after.is_closed());
        assert!(tokio::time::timeout(WAIT, before.closed()).await.is_ok());
        assert!(tokio::time::timeout(WAIT, after.closed()).await.is_ok());
    }

    #[tokio::test]
    async fn an_open_server_keeps_its_listeners_waiting() {
        let closing = Closing::default();
        let listener = closing.listener();
        assert!(!listener.is_closed());
        let waited = tokio::time::timeout(Duration::from_millis(20), listener.closed()).await;
        assert!(waited.is_err(), "closed() resolved on an open server");
    }

    #[test]
    fn a_dropped_listener_unregisters() {
        let closing = Closing::default();
        let first = closing.listener();
        let second = closing.listener();
        assert_eq!(closing.shared.listeners().len(), 2);
        drop(first);
        let ids: Vec<u64> = closing.shared.listeners().keys().copied().collect();
        assert_eq!(ids, [second.id]);
        drop(second);
        assert!(closing.shared.listeners().is_empty());
    }
}
