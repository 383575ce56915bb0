//! One connection's signals that were handed to the store and are not answered yet.
//!
//! A connection does not wait for each signal's answer before reading the next message:
//! in a cluster the answer takes a Redis round trip, and a client's burst of candidates
//! would otherwise pay it once per signal. The store checks and sends the signals in the
//! order they were handed over; the answers come back in that order, and an error answer
//! becomes an error reply then. Any request other than a signal first waits for all of
//! them (so a signal sent before a `leave` still reaches its peer before `peer_left`).

use std::collections::VecDeque;

use squadlink_protocol::PeerId;

use crate::store::{RelayAnswer, Relayed, StoreError};

/// Signals one connection may have unanswered; the next waits for the oldest answer.
const MAX_UNANSWERED: usize = 64;
/// Capacity kept once all are answered; a burst's larger buffer is given back.
const KEEP_CAPACITY: usize = 4;

/// Signals handed over and not answered yet, oldest first, with their receivers.
#[derive(Debug, Default)]
pub(crate) struct Unanswered {
    queue: VecDeque<(PeerId, RelayAnswer)>,
}

impl Unanswered {
    /// Remembers a signal to `to` whose answer is `answer`.
    pub(crate) fn push(&mut self, to: PeerId, answer: RelayAnswer) {
        self.queue.push_back((to, answer));
    }

    /// Whether nothing is waiting for an answer.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether the next signal must wait for the oldest answer first.
    pub(crate) fn is_full(&self) -> bool {
        self.queue.len() >= MAX_UNANSWERED
    }

    /// Waits for the oldest answer (`None` if nothing waits). Cancel-safe: an answer is
    /// removed only when returned.
    pub(crate) async fn next(&mut self) -> Option<(PeerId, Result<Relayed, StoreError>)> {
        let (_, answer) = self.queue.front_mut()?;
        let answer = answer.get().await;
        let (to, _) = self.queue.pop_front()?;
        if self.queue.is_empty() && self.queue.capacity() > KEEP_CAPACITY {
            self.queue.shrink_to(KEEP_CAPACITY);
        }
        Some((to, answer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn answers_come_oldest_first_and_wait_for_their_store() {
        let mut unanswered = Unanswered::default();
        assert!(unanswered.is_empty());
        let (tell, told) = oneshot::channel();
        unanswered.push(PeerId(1), RelayAnswer::Queued(told));
        unanswered.push(PeerId(2), RelayAnswer::Ready(Ok(Relayed::NotMember)));
        // The oldest is not answered yet: nothing comes (and nothing is lost by waiting).
        let early = tokio::time::timeout(std::time::Duration::from_millis(20), unanswered.next());
        assert!(early.await.is_err());
        assert!(tell.send(Ok(Relayed::Sent)).is_ok());
        assert_eq!(
            unanswered.next().await,
            Some((PeerId(1), Ok(Relayed::Sent)))
        );
        assert_eq!(
            unanswered.next().await,
            Some((PeerId(2), Ok(Relayed::NotMember)))
        );
        assert_eq!(unanswered.next().await, None);
    }

    #[tokio::test]
    async fn a_store_that_goes_away_answers_with_an_error_and_a_burst_gives_memory_back() {
        let mut unanswered = Unanswered::default();
        for _ in 0..MAX_UNANSWERED {
            let (_gone, told) = oneshot::channel();
            unanswered.push(PeerId(3), RelayAnswer::Queued(told));
        }
        assert!(unanswered.is_full());
        while let Some((_, answer)) = unanswered.next().await {
            assert!(
                matches!(answer, Err(StoreError::Unavailable(_))),
                "{answer:?}"
            );
        }
        assert!(unanswered.queue.capacity() <= KEEP_CAPACITY);
    }
}
