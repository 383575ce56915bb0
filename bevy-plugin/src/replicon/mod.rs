//! bevy_replicon over Squadlink (cargo feature `replicon`): a messaging backend in which one
//! member of the lobby serves (a listen server) and the others are its clients, over the
//! peer-to-peer links they already have — and when the serving member goes, another takes
//! over from the world it holds, without reconnecting anyone.
//!
//! ```no_run
//! use bevy::{prelude::*, state::app::StatesPlugin};
//! use bevy_squadlink::prelude::*;
//! use bevy_squadlink::replicon::{SquadlinkRepliconPlugin, bevy_replicon::prelude::*};
//!
//! App::new()
//!     .add_plugins((MinimalPlugins, StatesPlugin))
//!     .add_plugins(SquadlinkPlugin::new(
//!         SessionBuilder::new("ws://127.0.0.1:7878/v1")
//!             .channel(ChannelKind::ReliableOrdered) // channel 0: replicon's reliable traffic
//!             .channel(ChannelKind::Unreliable) // channel 1: its mutations
//!             .join(LobbyRef::create(4)),
//!     ))
//!     .add_plugins(RepliconPlugins)
//!     .add_plugins(SquadlinkRepliconPlugin::new(Channel(0), Channel(1)))
//!     .run();
//! ```
//!
//! # How it maps
//!
//! - **Who serves**: the lobby's host at first; after a hand-over, the member the rules
//!   below choose. [`RepliconAuthority`] says who serves now; [`AuthorityChanged`] is
//!   triggered once every time that changes, on every member.
//! - **Channels**: replicon's channels, both directions, travel over two Squadlink channels
//!   the game declares: its `Unreliable` channels over an [`ChannelKind::Unreliable`] one,
//!   its `Ordered` and `Unordered` channels over a [`ChannelKind::ReliableOrdered`] one
//!   (unordered delivered in order: a stronger guarantee). One tag byte in front of each
//!   message names replicon's channel (up to 127 per direction).
//! - **Clients**: on the serving member each connected peer is an entity with replicon's
//!   `ConnectedClient` and `NetworkId` (the peer id); a peer whose link drops
//!   ([`crate::Reconnecting`]) stops being a client until it is back. A
//!   `DisconnectRequest` closes that peer's link for the rest of the session
//!   ([`squadlink::Session::disconnect`]).
//! - **Statistics**: `ClientStats` (on a client, its link to the server) and
//!   `ConnectedClientStats` (on the server, per client) come from the session's own peer
//!   statistics: round trip, loss, and bytes per second.
//!
//! # Hand-over
//!
//! When a client loses the serving member (it leaves, its link drops, or nothing is heard
//! from it for [`SquadlinkRepliconPlugin::silence`]: a killed process), the first member
//! of the *line of succession* that it still reaches takes over; the line ranks members by
//! the mean round trip each measures to the rest of the mesh (reported to the server once a
//! second, in 10 ms buckets so jitter does not reshuffle it, ties to the lower peer id) and
//! travels with every change from the server to all clients, so all of them hold the same
//! line and reach the same answer without a vote. The member chosen starts replicon's server
//! from the world it already holds (replicon's `Remote` entities become `Replicated`); the
//! others become its clients over their existing links. A higher hand-over epoch always
//! wins; at equal epochs the lower peer id wins and the other steps down.
//!
//! **The first server** is the lobby's host unless
//! [`SquadlinkRepliconPlugin::best_first_server`] is set: then, once every member has
//! reported, the host hands over on purpose to the head of the line when that member is
//! better placed than the host itself (the same ranking; [`ChooseServer`] asks for it at
//! any time).
//!
//! **Identity**: give every replicated entity a [`NetId`] (from [`NetIds::allocate`] on the
//! serving member). The backend keeps a replicon `Signature` made from it on every entity,
//! so when the clients meet the new server, replicon maps each of the new server's entities
//! onto the one the client already has: same `Entity`, no respawn, no duplicate. Entities
//! without a `NetId` are sent again as new ones. After the new server's first update, a
//! client despawns the replicated entities the new server no longer has (they were despawned
//! on the old server after the new one last heard from it).
//!
//! **What can be lost**: whatever the old server changed after its last update reached the
//! new server. Nothing the new server holds is lost or duplicated.

mod authority;
mod link;
mod wire;

use std::time::Duration;

use bevy::prelude::*;
use serde::{Deserialize, Serialize};
use squadlink::{Channel, PeerId};

pub use bevy_replicon;

/// The replicon backend: see the [module docs](self).
#[derive(Debug, Clone)]
pub struct SquadlinkRepliconPlugin {
    reliable: Channel,
    unreliable: Channel,
    await_timeout: Duration,
    silence: Duration,
    best_first_server: bool,
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

impl Plugin for SquadlinkRepliconPlugin {
    fn build(&self, app: &mut App) {
        link::build(app, self);
    }

    fn finish(&self, app: &mut App) {
        link::finish(app);
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
    me: Option<PeerId>,
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
