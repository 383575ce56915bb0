//! Squadlink's Bevy examples (`arena`, `web_arena`, `headless_bots`, `rollback`,
//! `replicated_arena`) and what their players
//! say to each other: the channel list and the message types, shared so a bot can join a
//! windowed player's lobby; the arena's game and its voice and video, shared by the native
//! and the browser arena.

pub mod arena;
pub mod arena_media;
#[cfg(not(target_arch = "wasm32"))]
pub mod replicated;
#[cfg(not(target_arch = "wasm32"))]
pub mod rollback;

use bevy::prelude::App;
use bevy_squadlink::prelude::*;

/// Channel 0: positions, 60 times a second (only the newest matters).
pub const POSITIONS: Channel = Channel(0);
/// Channel 1: ping events (every one matters).
pub const PINGS: Channel = Channel(1);

/// A player's square, in world units.
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Position {
    /// Horizontal.
    pub x: f32,
    /// Vertical.
    pub y: f32,
}

/// "Look at me": the receivers flash the sender's square.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
pub struct Ping;

/// The plugin with the arena's channels, and the arena's message types registered.
pub fn add_arena_networking(app: &mut App, url: String, lobby: LobbyRef) {
    let builder = SessionBuilder::new(url)
        .channel(ChannelKind::UnreliableSequenced)
        .channel(ChannelKind::ReliableOrdered)
        .join(lobby);
    app.add_plugins(SquadlinkPlugin::new(builder))
        .add_squadlink_message::<Position>(POSITIONS)
        .add_squadlink_message::<Ping>(PINGS);
}
