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
//!   ([`crate::Reconnecting`]) stops being a client until it is back. The server welcomes
//!   each client entity it makes (a numbered `Welcome`, repeated until replicon accepts the
//!   client), and a member's replicon client connects on that welcome, afresh when the
//!   number is new, so it always connects to the client entity the server holds for it.
//!   All members run the same `bevy_squadlink` version. A
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
mod stats;
mod vocab;
mod wire;

use bevy::prelude::*;

pub use bevy_replicon;
pub use vocab::{
    AuthorityChanged, ChooseServer, HandOver, NetId, NetIds, RepliconAuthority,
    SquadlinkRepliconPlugin,
};

impl Plugin for SquadlinkRepliconPlugin {
    fn build(&self, app: &mut App) {
        link::build(app, self);
    }

    fn finish(&self, app: &mut App) {
        link::finish(app);
    }
}
