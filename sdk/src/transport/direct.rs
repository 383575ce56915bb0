//! Unreliable game data sent on the game's own thread (native shell).
//!
//! The native shell's [`Core`] sits behind a lock ([`Held`]) that its network thread takes
//! for each input it serves, and that a game thread's send takes when it is free within
//! 25 µs ([`Direct`], the shell's [`DirectSend`]). Such a send runs through the engine and
//! leaves the socket on the game's thread: the network thread is not woken for it, which
//! saves one of the four thread hand-offs of a round trip between two games (loopback
//! p50 −18 %, docs/performance.md). A send that finds the core busy, or commands of the
//! game still queued before it, or simulated loss set, goes through the command queue as
//! before, so the game never waits longer and the order of what it asked for holds.
//! Reliable data always takes the queue (`bridge::Commands::send_data` says why).
//!
//! The network thread goes first: while it waits for the lock, game threads take the queue
//! ([`CoreLock`]), so a game thread that sends without pause cannot starve it.
//!
//! What the send leaves for the network thread — a datagram for a TURN stream, a
//! matchmaker message, a timer earlier than the one it sleeps on — wakes it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError, Weak};
use std::time::Duration;

use bytes::Bytes;
use squadlink_protocol::PeerId;
use tokio::sync::Notify;
use web_time::Instant;

use super::core::Core;
use super::udp::UdpSocket;
use crate::bridge::DirectSend;

/// The core and what a game thread must know of the network thread to send beside it.
pub(crate) struct Held {
    pub(crate) core: Core,
    /// When the network thread wakes next by itself (before its first sleep: when it
    /// started); a send that makes the core's next deadline earlier wakes it sooner.
    pub(crate) sleeps_until: Instant,
    /// Whether data may go the direct way: no simulated loss (the shell's loss stage is
    /// the network thread's), and the session is not ending.
    pub(crate) open: bool,
}

/// The lock around [`Held`], with the network thread first in line: while it waits for
/// the lock, game threads leave it alone and use the queue, so a game thread sending
/// without pause cannot keep it from its inputs.
pub(crate) struct CoreLock {
    held: Mutex<Held>,
    /// The network thread waits for the lock.
    wanted: AtomicBool,
}

impl CoreLock {
    pub(crate) fn new(held: Held) -> Self {
        Self {
            held: Mutex::new(held),
            wanted: AtomicBool::new(false),
        }
    }

    /// The network thread's hold: waits for the lock, whatever an earlier holder did (the
    /// state is left consistent between inputs; the lints deny the panics that could
    /// poison it).
    pub(crate) fn hold(&self) -> MutexGuard<'_, Held> {
        self.wanted.store(true, Ordering::Release);
        let guard = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        self.wanted.store(false, Ordering::Release);
        guard
    }

    /// A game thread's hold: the lock if it is free now or within [`WAIT_AT_MOST`], and
    /// the network thread does not want it.
    fn take_soon(&self) -> Option<MutexGuard<'_, Held>> {
        let mut since = None;
        loop {
            if self.wanted.load(Ordering::Acquire) {
                return None;
            }
            match self.held.try_lock() {
                Ok(guard) => return Some(guard),
                Err(TryLockError::Poisoned(_)) => return None,
                Err(TryLockError::WouldBlock) => {
                    let since = *since.get_or_insert_with(Instant::now);
                    if since.elapsed() > WAIT_AT_MOST {
                        return None;
                    }
                    std::hint::spin_loop();
                }
            }
        }
    }
}

/// The direct path of one native session. It holds the core weakly: once the network
/// thread has ended, sends go to the (closed) queue.
pub(crate) struct Direct {
    pub(crate) held: Weak<CoreLock>,
    /// Weak too: a session handle kept after its end must not keep the port bound.
    pub(crate) socket: Weak<UdpSocket>,
    /// Wakes the network thread.
    pub(crate) wake: Arc<Notify>,
}

/// How long a send waits for the network thread to finish the input it serves before
/// the data goes to the queue instead. The thread holds the core for one input at a time
/// (microseconds), so a short wait usually saves the hand-off, and the game never waits
/// longer.
const WAIT_AT_MOST: Duration = Duration::from_micros(25);

impl DirectSend for Direct {
    fn try_send(
        &self,
        queued: &AtomicUsize,
        to: Option<PeerId>,
        channel: usize,
        payload: Bytes,
    ) -> Option<Bytes> {
        if queued.load(Ordering::Acquire) != 0 {
            // Not worth waiting for the lock: the queue's way it is.
            return Some(payload);
        }
        let (Some(held), Some(socket)) = (self.held.upgrade(), self.socket.upgrade()) else {
            return Some(payload);
        };
        let Some(mut guard) = held.take_soon() else {
            return Some(payload);
        };
        // Counted down under this lock (`commands::apply`): 0 now means all of it applied.
        if !guard.open || queued.load(Ordering::Acquire) != 0 {
            return Some(payload);
        }
        let held = &mut *guard;
        held.core.send(Instant::now(), to, channel, &payload);
        while let Some((data, to)) = held.core.out().poll_udp_transmit() {
            socket.send_or_drop(&data, to);
        }
        let sleeps_until = held.sleeps_until;
        let wake = held
            .core
            .poll_timeout()
            .is_some_and(|due| due < sleeps_until)
            || held.core.out().wants_shell();
        drop(guard);
        if wake {
            self.wake.notify_one();
        }
        None
    }
}
