//! Test a game's netcode without a network: [`TestNet`] connects [`Session`]s in memory, in
//! simulated time, over links with the latency, jitter, loss, duplication, reordering and
//! bandwidth you set.
//!
//! The sessions are the real thing above the wire — the same session core, WebRTC engine
//! (ICE, DTLS, SCTP), channels, framing, liveness and statistics as over UDP — with the
//! datagrams carried by a simulated network instead of a socket, and the matchmaker played
//! by a stand-in that relays signals. No matchmaker to start, no ports, no threads, and no
//! waiting: time moves only when the test calls [`TestNet::advance`] or
//! [`TestNet::run_until`], and jumps from one event to the next, so ten seconds of play
//! under 150 ms of latency take a fraction of a second to run. A seed fixes the randomness,
//! so a failing test fails the same way again.
//!
//! ```
//! use std::time::Duration;
//! use squadlink::testing::TestNet;
//! use squadlink::{Channel, ChannelKind, NetworkConditions, Session};
//!
//! // 150 ms round trip, 5 % loss each way.
//! let net = TestNet::new(NetworkConditions::latency(Duration::from_millis(75)).with_loss(0.05));
//! let builder = || Session::builder("ws://unused").channel(ChannelKind::ReliableOrdered);
//! let alice = net.join(builder())?;
//! let bob = net.join(builder())?;
//! assert!(net.run_until(Duration::from_secs(10), || {
//!     alice.connected_peers().len() == 1 && bob.connected_peers().len() == 1
//! }));
//!
//! alice.broadcast(Channel(0), b"fire")?;
//! net.advance(Duration::from_secs(1));
//! let got: Vec<_> = bob.receive(Channel(0)).collect();
//! assert_eq!(got.len(), 1);
//! # Ok::<(), squadlink::Error>(())
//! ```
//!
//! One `TestNet` is one lobby: every session joined to it is a member (the builder's lobby
//! and matchmaker URL are not used), the first one is the host, and a session that closes
//! leaves it (the others see [`crate::Event::PeerDisconnected`] with
//! [`crate::DisconnectReason::Left`], and a new host if it was the host). The Bevy plugin
//! takes such sessions too (`bevy_squadlink`'s `Squadlink::use_session`), so whole game Apps
//! can be stepped together. Voice and video work over it as well, but their threads run in
//! real time.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::builder::SessionBuilder;
use crate::conditioner::NetworkConditions;
use crate::error::Result;
use crate::session::Session;
use crate::transport::sim::SimNet;

/// Sessions connected in memory, in simulated time. See the [module](self) for an example.
///
/// Cheap to clone: the clones are the same network.
#[derive(Clone)]
pub struct TestNet {
    sim: Arc<Mutex<SimNet>>,
}

impl TestNet {
    /// A network whose every link (each direction) has `conditions`, with seed 1.
    pub fn new(conditions: NetworkConditions) -> Self {
        Self::seeded(conditions, 1)
    }

    /// [`TestNet::new`] with the seed of the links' randomness (loss, jitter, duplication).
    pub fn seeded(conditions: NetworkConditions, seed: u64) -> Self {
        Self {
            sim: Arc::new(Mutex::new(SimNet::new(conditions, seed))),
        }
    }

    fn sim(&self) -> MutexGuard<'_, SimNet> {
        // A panic elsewhere (a failed assertion in a test) leaves the network usable.
        self.sim.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A session with `builder`'s settings joins the lobby now: it is in the lobby at once
    /// and connects to the members already there as time runs. The builder's matchmaker
    /// URL, lobby, bind address and ICE servers are not used; its channels, limits and
    /// timeouts are. Fails as [`SessionBuilder::start`] would on invalid settings.
    pub fn join(&self, builder: SessionBuilder) -> Result<Session> {
        let (session, side) = builder.in_memory()?;
        let mut sim = self.sim();
        sim.join_session(side);
        sim.settle();
        Ok(session)
    }

    /// Runs the network for `by` of simulated time: everything the sessions were asked to
    /// do is done, and everything due by then arrives.
    pub fn advance(&self, by: Duration) {
        let mut sim = self.sim();
        let end = sim.now + by;
        loop {
            sim.settle();
            if !sim.step_towards(end) {
                break;
            }
        }
        sim.settle();
    }

    /// Runs the network until `done` returns `true` (then `true`), or for at most `limit`
    /// of simulated time (then `false`). `done` is asked after every event, so it may look
    /// at the sessions (not at this network: that would wait for itself).
    pub fn run_until(&self, limit: Duration, mut done: impl FnMut() -> bool) -> bool {
        let end = self.sim().now + limit;
        loop {
            self.sim().settle();
            if done() {
                return true;
            }
            if !self.sim().step_towards(end) {
                self.sim().settle();
                return done();
            }
        }
    }

    /// Simulated time since the network was made.
    pub fn elapsed(&self) -> Duration {
        self.sim().elapsed()
    }

    /// Every link's conditions from now on (datagrams already on their way keep theirs).
    pub fn set_conditions(&self, conditions: NetworkConditions) {
        self.sim().set_conditions(conditions);
    }
}

impl std::fmt::Debug for TestNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNet")
            .field("elapsed", &self.elapsed())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    /// A `TestNet` can live in a game's resources (Bevy's need `Send + Sync`).
    #[test]
    fn a_test_net_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<super::TestNet>();
    }
}
