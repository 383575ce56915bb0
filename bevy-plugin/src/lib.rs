//! # bevy_squadlink
//!
//! Squadlink for Bevy 0.19: players meet in a lobby and connect peer-to-peer over WebRTC;
//! every connected peer is an entity, and typed messages come and go through Bevy's
//! `MessageReader` / `MessageWriter`.
//!
//! ```no_run
//! use bevy::prelude::*;
//! use bevy_squadlink::prelude::*;
//!
//! #[derive(serde::Serialize, serde::Deserialize, Clone)]
//! struct Position(f32, f32);
//!
//! fn main() {
//!     App::new()
//!         .add_plugins(MinimalPlugins)
//!         .add_plugins(SquadlinkPlugin::new(
//!             SessionBuilder::new("ws://127.0.0.1:7878/v1")
//!                 .channel(ChannelKind::UnreliableSequenced) // channel 0
//!                 .join(LobbyRef::create(4)),
//!         ))
//!         .add_squadlink_message::<Position>(Channel(0))
//!         .add_observer(|on: On<PeerConnected>| info!("{} joined via {:?}", on.peer, on.path))
//!         .add_systems(Update, (send, receive).run_if(in_lobby))
//!         .run();
//! }
//!
//! fn send(mut out: MessageWriter<Outgoing<Position>>) {
//!     out.write(Outgoing::to_all(Position(1.0, 2.0)));
//! }
//!
//! fn receive(mut inbox: MessageReader<Received<Position>>, peers: Query<&Peer>) {
//!     for msg in inbox.read() {
//!         let Ok(peer) = peers.get(msg.from) else { continue };
//!         info!("{} is at {}, {}", peer.player, msg.message.0, msg.message.1);
//!     }
//! }
//! ```
//!
//! The session runs its own network thread; the plugin's systems only poll it, so none of
//! them ever blocks a frame. The [`Squadlink`] resource joins, leaves and switches lobbies
//! at run time; [`Squadlink::use_session`] takes a session started elsewhere, such as one on
//! `squadlink::testing::TestNet`, so whole Apps can be tested together in memory.
//!
//! Voice chat (cargo feature `voice`, on by default) is [`voice::VoiceChatPlugin`]: a
//! [`voice::VoiceChat`] resource, and `Speaking`, `VoiceVolume` and `Muted` components on
//! peer entities.
//!
//! Game state: [`rollback`] (cargo feature `ggrs`) runs GGRS rollback over a channel, and
//! [`replicon`] (cargo feature `replicon`) is a bevy_replicon backend in which one member
//! serves and another takes over, without reconnecting anyone, when it leaves or dies. The
//! repository's `docs/game-state.md` says which fits which game.
//!
//! Video (cargo feature `video`, on by default) is [`video::VideoChatPlugin`]: each peer
//! that sends video gets a [`video::PeerVideo`] component whose `Image` shows its newest
//! frame.

mod messages;
mod plugin;
#[cfg(feature = "replicon")]
pub mod replicon;
#[cfg(feature = "ggrs")]
pub mod rollback;
#[cfg(feature = "video")]
pub mod video;
#[cfg(feature = "voice")]
pub mod voice;

pub use messages::{Outgoing, Received, SquadlinkAppExt, Target};
pub use plugin::{
    Lobby, Peer, PeerConnected, PeerDisconnected, PeerInterrupted, PeerMisbehaved, PeerPath,
    PeerStats, Reconnecting, Squadlink, SquadlinkError, SquadlinkLobbyChanged, SquadlinkPlugin,
    SquadlinkSession, SquadlinkSet, SquadlinkStatus, in_lobby,
};
pub use squadlink::{
    Channel, ChannelKind, DisconnectReason, IcePolicy, LobbyRef, PathKind, PeerId, PlayerId,
    SessionBuilder,
};

/// Everything a game usually needs, in one `use`.
pub mod prelude {
    #[cfg(feature = "video")]
    pub use crate::video::{
        PeerVideo, PeerVideoStats, VideoChat, VideoChatPlugin, VideoConfig, VideoInput,
    };
    #[cfg(feature = "voice")]
    pub use crate::voice::{
        AudioInput, AudioOutput, Muted, PeerVoiceStats, Speaking, SpeakingChanged, VoiceChat,
        VoiceChatPlugin, VoiceListener, VoiceMode, VoiceVolume,
    };
    pub use crate::{
        Channel, ChannelKind, DisconnectReason, Lobby, LobbyRef, Outgoing, PathKind, Peer,
        PeerConnected, PeerDisconnected, PeerInterrupted, PeerMisbehaved, PeerPath, PeerStats,
        Received, Reconnecting, SessionBuilder, Squadlink, SquadlinkAppExt, SquadlinkError,
        SquadlinkLobbyChanged, SquadlinkPlugin, SquadlinkSession, SquadlinkSet, SquadlinkStatus,
        Target, in_lobby,
    };
}
