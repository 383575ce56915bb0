//! The `replicated_arena` game: server-authoritative over bevy_replicon. Whoever serves (the
//! lobby's host at first, then whoever takes over) owns the world — a square per member and
//! a frame counter — and replicates it; every member, the server included, sends its moves
//! as replicon client messages. When the serving member goes, another serves on from the
//! world it holds (`bevy_squadlink::replicon`).

use bevy::prelude::*;
use bevy_squadlink::prelude::*;
use bevy_squadlink::replicon::bevy_replicon::prelude::{
    AppRuleExt, Channel as RepliconChannel, ClientId, ClientMessageAppExt, FromClient, Replicated,
    RepliconPlugins, ServerPlugin, ServerState,
};
use bevy_squadlink::replicon::bevy_replicon::shared::backend::connected_client::NetworkId;
use bevy_squadlink::replicon::{NetId, NetIds, SquadlinkRepliconPlugin};
use serde::{Deserialize, Serialize};

/// Channel 0: replicon's reliable traffic.
pub const RELIABLE: Channel = Channel(0);
/// Channel 1: replicon's mutations.
pub const UNRELIABLE: Channel = Channel(1);

/// The session every `replicated_arena` member uses.
pub fn replicated_session(url: impl Into<String>, lobby: LobbyRef) -> SessionBuilder {
    SessionBuilder::new(url)
        .channel(ChannelKind::ReliableOrdered)
        .channel(ChannelKind::Unreliable)
        .join(lobby)
}

/// A member's square (replicated).
#[derive(Component, Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Player {
    /// The member's peer id.
    pub owner: u64,
    /// Its colour, by arrival.
    pub colour: usize,
}

/// Where a square is, world units (replicated).
#[derive(Component, Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Pos {
    /// Horizontal.
    pub x: f32,
    /// Vertical.
    pub y: f32,
}

/// Frames the world has run, counted by whoever serves (replicated): it goes on across a
/// hand-over, never back to zero.
#[derive(Component, Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Ticks(pub u64);

/// A member's move this frame (a replicon client message).
#[derive(Message, Serialize, Deserialize, Clone, Copy, Debug)]
pub struct Move {
    /// Horizontal step.
    pub dx: f32,
    /// Vertical step.
    pub dy: f32,
}

/// Half the arena's width and height.
pub const BOUNDS: f32 = 300.0;

/// The game: replicon with the Squadlink backend, the replicated components, and the
/// server's rules. Add it after `SquadlinkPlugin` (and `StatesPlugin` when headless).
pub struct ReplicatedGame;

impl Plugin for ReplicatedGame {
    fn build(&self, app: &mut App) {
        app.add_plugins(RepliconPlugins.set(ServerPlugin::new(PostUpdate)))
            .add_plugins(SquadlinkRepliconPlugin::new(RELIABLE, UNRELIABLE))
            .replicate::<Player>()
            .replicate::<Pos>()
            .replicate::<Ticks>()
            .add_client_message::<Move>(RepliconChannel::Unreliable)
            .add_systems(
                Update,
                (seat_members, count, apply_moves).run_if(in_state(ServerState::Running)),
            );
    }
}

/// The server keeps one square per member present (itself and its clients) and one
/// counter.
fn seat_members(
    mut commands: Commands,
    lobby: Option<Res<Lobby>>,
    clients: Query<&NetworkId>,
    players: Query<(Entity, &Player)>,
    ticks: Query<(), With<Ticks>>,
    mut ids: ResMut<NetIds>,
) {
    let Some(lobby) = lobby else { return };
    let present: Vec<u64> = std::iter::once(lobby.me.0)
        .chain(clients.iter().map(NetworkId::get))
        .collect();
    for (entity, player) in &players {
        if !present.contains(&player.owner) {
            commands.entity(entity).despawn();
        }
    }
    let mut colour = players.iter().map(|(_, p)| p.colour + 1).max().unwrap_or(0);
    for owner in present {
        if !players.iter().any(|(_, p)| p.owner == owner) {
            commands.spawn((
                Replicated,
                ids.allocate(),
                Player { owner, colour },
                Pos {
                    x: -150.0 + 100.0 * (colour % 4) as f32,
                    y: 0.0,
                },
            ));
            colour += 1;
        }
    }
    if ticks.is_empty() {
        commands.spawn((Replicated, ids.allocate(), Ticks(0)));
    }
}

fn count(mut ticks: Query<&mut Ticks>) {
    for mut t in &mut ticks {
        t.0 += 1;
    }
}

fn apply_moves(
    mut moves: MessageReader<FromClient<Move>>,
    clients: Query<&NetworkId>,
    lobby: Option<Res<Lobby>>,
    mut players: Query<(&Player, &mut Pos)>,
) {
    let Some(lobby) = lobby else { return };
    for m in moves.read() {
        let owner = match m.client_id {
            ClientId::Server => lobby.me.0,
            ClientId::Client(entity) => match clients.get(entity) {
                Ok(id) => id.get(),
                Err(_) => continue,
            },
        };
        // The server is the authority: a step is clamped, whatever the client sent.
        let (dx, dy) = (m.message.dx.clamp(-8.0, 8.0), m.message.dy.clamp(-8.0, 8.0));
        for (player, mut pos) in &mut players {
            if player.owner == owner {
                pos.x = (pos.x + dx).clamp(-BOUNDS, BOUNDS);
                pos.y = (pos.y + dy).clamp(-BOUNDS, BOUNDS);
            }
        }
    }
}

/// The entity identities of the squares, for a status line: `origin:serial` each.
pub fn identities<'a>(ids: impl Iterator<Item = &'a NetId>) -> Vec<String> {
    let mut v: Vec<String> = ids
        .map(|id| format!("{}:{}", id.origin, id.serial))
        .collect();
    v.sort();
    v
}
