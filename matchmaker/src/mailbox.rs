//! One connection's mailbox: the messages queued for its client and the word that ends it.
//! Its connection task empties it; every other task (a request of another connection, the
//! lobby store, the cluster's event stream) reaches the client through it. A leaf.
//!
//! Bounded like a channel, but costs nothing while empty (an idle connection holds one of
//! these for its whole life; a tokio channel costs about 1.5 KB).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::Notify;

/// Capacity kept after the queue empties; a burst's larger buffer is given back.
const KEEP_CAPACITY: usize = 8;

/// Why a connection was told to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kick {
    /// A newer connection of the same player took its lobby place over: it ends without
    /// leaving the lobby.
    Superseded,
    /// It must go and come back (the node lost the cluster's event stream, or is
    /// draining): it ends keeping its lobby place.
    Reconnect,
    /// Its queue overflowed: the client does not read fast enough.
    SlowConsumer,
}

/// The messages waiting for one client, and whether it must end.
pub(crate) struct Mailbox {
    queue: Mutex<VecDeque<Utf8Bytes>>,
    cap: usize,
    posted: Notify,
    kicked: Notify,
    superseded: AtomicBool,
    reconnect: AtomicBool,
}

impl Mailbox {
    /// An empty mailbox that holds at most `cap` messages.
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            cap: cap.max(1),
            posted: Notify::new(),
            kicked: Notify::new(),
            superseded: AtomicBool::new(false),
            reconnect: AtomicBool::new(false),
        }
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<Utf8Bytes>> {
        // A panic elsewhere while holding the lock leaves a valid queue: keep using it.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `text`. A full mailbox marks the client a slow consumer (its task then
    /// closes it) and drops `text`: nobody else waits.
    pub(crate) fn post(&self, text: Utf8Bytes) {
        let mut queue = self.queue();
        if queue.len() >= self.cap {
            drop(queue);
            self.kick(Kick::SlowConsumer);
            return;
        }
        queue.push_back(text);
        drop(queue);
        self.posted.notify_one();
    }

    /// The next queued message, if any.
    pub(crate) fn take(&self) -> Option<Utf8Bytes> {
        let mut queue = self.queue();
        let next = queue.pop_front();
        if queue.is_empty() && queue.capacity() > KEEP_CAPACITY {
            queue.shrink_to(KEEP_CAPACITY);
        }
        next
    }

    /// Waits for the next message. Cancel-safe: a message is taken only when returned.
    pub(crate) async fn next(&self) -> Utf8Bytes {
        loop {
            if let Some(text) = self.take() {
                return text;
            }
            // A post between `take` and here left a permit: this returns at once.
            self.posted.notified().await;
        }
    }

    /// Tells the connection to end, for `why`.
    pub(crate) fn kick(&self, why: Kick) {
        match why {
            Kick::Superseded => self.superseded.store(true, Ordering::SeqCst),
            Kick::Reconnect => self.reconnect.store(true, Ordering::SeqCst),
            Kick::SlowConsumer => {}
        }
        self.kicked.notify_one();
    }

    /// Waits until the connection is told to end, and says why.
    pub(crate) async fn kicked(&self) -> Kick {
        self.kicked.notified().await;
        self.kick_reason()
    }

    /// Why the connection was told to end (a slow consumer unless told otherwise).
    pub(crate) fn kick_reason(&self) -> Kick {
        if self.superseded.load(Ordering::SeqCst) {
            Kick::Superseded
        } else if self.reconnect.load(Ordering::SeqCst) {
            Kick::Reconnect
        } else {
            Kick::SlowConsumer
        }
    }

    /// Whether a newer connection took this one's place.
    pub(crate) fn is_superseded(&self) -> bool {
        self.superseded.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn messages_come_out_in_order_and_an_overflow_kicks_a_slow_consumer() {
        let mailbox = Mailbox::new(2);
        mailbox.post(Utf8Bytes::from("a"));
        mailbox.post(Utf8Bytes::from("b"));
        mailbox.post(Utf8Bytes::from("dropped"));
        assert_eq!(mailbox.take().as_deref(), Some("a"));
        assert_eq!(mailbox.take().as_deref(), Some("b"));
        assert_eq!(mailbox.take(), None);
        assert_eq!(mailbox.kick_reason(), Kick::SlowConsumer);
    }

    #[test]
    fn a_burst_gives_its_memory_back_once_drained() {
        let mailbox = Mailbox::new(1000);
        for _ in 0..500 {
            mailbox.post(Utf8Bytes::from("x"));
        }
        while mailbox.take().is_some() {}
        assert!(mailbox.queue().capacity() <= KEEP_CAPACITY);
    }

    #[test]
    fn supersession_outranks_reconnect_and_reconnect_outranks_overflow() {
        let mailbox = Mailbox::new(1);
        mailbox.kick(Kick::SlowConsumer);
        mailbox.kick(Kick::Reconnect);
        assert_eq!(mailbox.kick_reason(), Kick::Reconnect);
        mailbox.kick(Kick::Superseded);
        assert_eq!(mailbox.kick_reason(), Kick::Superseded);
        assert!(mailbox.is_superseded());
    }

    #[tokio::test]
    async fn a_waiting_reader_wakes_for_a_post_and_a_kick_made_before_it_waited() {
        let mailbox = Arc::new(Mailbox::new(4));
        let reader = {
            let mailbox = Arc::clone(&mailbox);
            tokio::spawn(async move { mailbox.next().await })
        };
        tokio::task::yield_now().await;
        mailbox.post(Utf8Bytes::from("hello"));
        let got = tokio::time::timeout(Duration::from_secs(5), reader).await;
        assert!(
            matches!(got, Ok(Ok(ref t)) if t.as_str() == "hello"),
            "{got:?}"
        );

        mailbox.kick(Kick::Reconnect);
        let why = tokio::time::timeout(Duration::from_secs(5), mailbox.kicked()).await;
        assert_eq!(why.ok(), Some(Kick::Reconnect));
    }
}
