//! The backend's public vocabulary and settings: a leaf the systems (`link.rs`) and the
//! facade (`mod.rs`) both read.
use std::time::Duration;

use bevy::prelude::*;
use serde::{Deserialize, Serialize};
use squadlink::{Channel, PeerId};

/// The replicon backend: see the [module docs](super).
#[derive(Debug, Clone)]
pub struct SquadlinkRepliconPlugin {
    pub(super) reliable: Channel,
    pub(super) unreliable: Channel,
    pub(super) await_timeout: Duration,
    pub(super) silence: Duration,
    pub(super) best_first_server: bool,
}

impl SquadlinkRepliconPlugin {
    /// The backend over the session's `reliable` channel (declared
    /// [`squadlink::ChannelKind::ReliableOrdered`]) and `unreliable` channel (declared
    /// [`squadlink::ChannelKind::Unreliable`]). Both are the backend's own: do not send on
    /// them yourself.
    pub fn new(reliable: Channel, unreliable: Channel) -> Self {
        Self {
            reliable,
            unreliable,
            await_timeout: Duration::from_secs(5),
            silence: Duration::from_millis(1500),
            best_first_server: false,
        }
    }

    /// Let the best-placed member be the first server: once every member has reported its
    /// mesh round trip (a second or two after they connect), the lobby's host hands over
    /// to the head of the line if that member is a whole 10 ms bucket better placed than
    /// the host itself. Off by default (the lobby's host serves). A game can also ask for
    /// this at any time with [`ChooseServer`].
    pub fn best_first_server(mut self) -> Self {
        self.best_first_server = true;
        self
    }

    /// How long a peer may stay unheard (see [`squadlink::PeerStats::silent_for`]) before
    /// this member counts it gone: a serving member silent this long is handed over from
    /// (default 1.5 s: three missed pings of the session's two a second). Shorter hands over
    /// sooner after a crash, and also after a network hiccup (the old server then steps
    /// down when it hears the new one).
    pub fn silence(mut self, silence: Duration) -> Self {
        self.silence = silence;
        self
    }

    /// How long a client waits for the member it expects to take over before it gives that
    /// member up too (default 5 s).
    pub fn await_timeout(mut self, timeout: Duration) -> Self {
        self.await_timeout = timeout;
        self
    }
}

/// Who serves, as this member knows it.
#[derive(Resource, Debug, Clone, Default, PartialEq, Eq)]
pub struct RepliconAuthority {
    /// The serving member (`None` before the first one is heard from, and while a
    /// hand-over is under way).
    pub server: Option<PeerId>,
    /// Whether it is this member.
    pub local: bool,
    /// Bumped at every hand-over.
    pub epoch: u32,
    /// The line of succession, best first (the serving member not in it).
    pub line: Vec<PeerId>,
    /// The last hand-over this member took part in.
    pub last_hand_over: Option<HandOver>,
}

/// One hand-over as this member lived it, on the app's real clock
/// (`Time<Real>::elapsed()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandOver {
    /// The member that stopped serving.
    pub lost: PeerId,
    /// When this member found it lost.
    pub detected_at: Duration,
    /// When the new server served (on the new server) or was followed (on a client).
    pub served_at: Option<Duration>,
}

impl HandOver {
    /// From the loss being detected to serving again (`None` while under way).
    pub fn gap(&self) -> Option<Duration> {
        self.served_at
            .map(|served| served.saturating_sub(self.detected_at))
    }
}

/// Triggered on every member whenever the serving member changes (the first one heard
/// included).
#[derive(Event, Debug, Clone, PartialEq, Eq)]
pub struct AuthorityChanged {
    /// The member that serves now.
    pub server: PeerId,
    /// The one that served before, as far as this member knew (`None`: the first).
    pub previous: Option<PeerId>,
    /// The hand-over epoch.
    pub epoch: u32,
    /// Whether this member now serves.
    pub local: bool,
}

/// Write this on the serving member to hand over, now, to the best-placed member of the
/// line if one is a whole 10 ms bucket better placed than the server itself (nothing
/// happens otherwise, or on a member that does not serve). Everyone follows the new server
/// without reconnecting, as after a loss.
#[derive(Message, Debug, Clone, Copy, Default)]
pub struct ChooseServer;

/// A replicated entity's identity that outlives a hand-over: the member that spawned it and
/// a serial number of that member's. Register it for replication
/// (`app.replicate::<NetId>()`, which [`SquadlinkRepliconPlugin`] does) and insert it on
/// every replicated entity; allocate it with [`NetIds`].
#[derive(
    Component, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct NetId {
    /// The member that allocated it.
    pub origin: u64,
    /// Its serial number on that member.
    pub serial: u64,
}

/// Allocates [`NetId`]s: unique across members (each member numbers its own).
#[derive(Resource, Debug, Default)]
pub struct NetIds {
    pub(super) me: Option<PeerId>,
    next: u64,
}

impl NetIds {
    /// A fresh identity. Call it on the serving member (or anywhere once the session is in
    /// its lobby: before that this member's peer id is not known and the origin is 0).
    pub fn allocate(&mut self) -> NetId {
        self.next += 1;
        NetId {
            origin: self.me.map_or(0, |p| p.0),
            serial: self.next,
        }
    }
}
