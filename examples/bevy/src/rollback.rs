//! The `rollback` example's game, shared by its binary and its tests: 2–4 squares moved by
//! GGRS inputs in whole fixed-point steps (deterministic on every machine), and a coin whose
//! places come from one seed every member derives from the lobby's code. bevy_ggrs rolls
//! back everything the simulation touches (positions, scores, the coin) and checks it
//! (checksums compared with the peers every 10 frames).
//!
//! The session starts once the lobby holds `players` members, all connected: each member
//! derives the same player order from the lobby (`bevy_squadlink::rollback`), so no
//! message is needed to agree on who is who.

use bevy::prelude::*;
use bevy_squadlink::rollback::bevy_ggrs::prelude::*;
use bevy_squadlink::rollback::bevy_ggrs::{LocalInputs, LocalPlayers, RollbackFrameCount};
use bevy_squadlink::rollback::ggrs::GgrsEvent;
use bevy_squadlink::rollback::{RollbackPlayers, RollbackSettings, start_p2p};
use bevy_squadlink::{Channel, ChannelKind, LobbyRef, PeerId, SessionBuilder, SquadlinkSession};

/// GGRS's types for this game: one byte of buttons per player per frame, peers by id.
pub type RollbackConfig = GgrsConfig<u8, PeerId>;

/// The channel GGRS uses (declared [`ChannelKind::Unreliable`] by [`rollback_session`]).
pub const GGRS_CHANNEL: Channel = Channel(0);

/// Buttons in a player's input byte.
pub const UP: u8 = 1;
/// See [`UP`].
pub const DOWN: u8 = 2;
/// See [`UP`].
pub const LEFT: u8 = 4;
/// See [`UP`].
pub const RIGHT: u8 = 8;

/// Fixed-point positions: 1/256 of a world unit.
const ONE: i32 = 256;
/// A square moves this far a frame (3 units).
const SPEED: i32 = 3 * ONE;
/// The arena's half width and height.
const HALF: i32 = 300 * ONE;
/// A square and the coin touch within this distance on each axis.
const REACH: i32 = 40 * ONE;

/// A player's square; `handle` is its GGRS player handle.
#[derive(Component, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Square {
    /// The GGRS handle.
    pub handle: usize,
}

/// A square's position (fixed point, 1/256 unit), rolled back.
#[derive(Component, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Pos {
    /// Horizontal.
    pub x: i32,
    /// Vertical.
    pub y: i32,
}

/// Coins a player has taken, rolled back.
#[derive(Component, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Score(pub u32);

/// The coin: where it is, how many were taken, and the shared seed its places come from.
#[derive(Resource, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Coin {
    /// Position (fixed point).
    pub pos: Pos,
    /// Coins taken so far.
    pub taken: u32,
    /// The lobby's seed.
    pub seed: u64,
}

/// How the game runs.
#[derive(Resource, Clone, Debug)]
pub struct RollbackGame {
    /// Players to wait for before starting (2–4).
    pub players: usize,
    /// Inputs made up (the same each run) instead of read from the keyboard.
    pub autopilot: bool,
    /// GGRS's settings.
    pub settings: RollbackSettings,
}

/// What GGRS reported, for the game's overlay and the tests.
#[derive(Resource, Clone, Debug, Default)]
pub struct RollbackStatus {
    /// The order of play, once started.
    pub players: Option<RollbackPlayers>,
    /// Desyncs GGRS detected (frame, peer).
    pub desyncs: Vec<(i32, PeerId)>,
    /// Peers GGRS disconnected.
    pub disconnected: Vec<PeerId>,
    /// Why the session could not start, if it could not.
    pub problem: Option<String>,
}

/// The session settings a rollback player needs: GGRS's unreliable channel, in `lobby`.
pub fn rollback_session(url: impl Into<String>, lobby: LobbyRef) -> SessionBuilder {
    SessionBuilder::new(url)
        .channel(ChannelKind::Unreliable)
        .join(lobby)
}

impl Plugin for RollbackGame {
    fn build(&self, app: &mut App) {
        app.add_plugins(GgrsPlugin::<RollbackConfig>::default())
            .insert_resource(RollbackFrameRate(60))
            .rollback_component_with_copy::<Pos>()
            .rollback_component_with_copy::<Score>()
            .rollback_resource_with_copy::<Coin>()
            .checksum_component_with_hash::<Pos>()
            .checksum_component_with_hash::<Score>()
            .checksum_resource_with_hash::<Coin>()
            .insert_resource(self.clone())
            .init_resource::<Coin>()
            .init_resource::<RollbackStatus>()
            .add_systems(ReadInputs, read_inputs)
            .add_systems(GgrsSchedule, (move_squares, take_coin).chain())
            .add_systems(Update, (start_when_all_here, watch_ggrs));
    }
}

/// A seed from the lobby's code (FNV-1a): the same on every member.
pub fn seed_of(code: &str) -> u64 {
    code.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A number from `seed` and `n` (splitmix64): the same on every machine.
fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The coin's `n`th place.
fn coin_place(seed: u64, n: u32) -> Pos {
    let r = mix(seed, u64::from(n));
    let span = (2 * HALF / ONE) as u64 - 80;
    let at = |bits: u64| ((bits % span) as i32 - (span / 2) as i32) * ONE;
    Pos {
        x: at(r & 0xffff_ffff),
        y: at(r >> 32),
    }
}

/// The autopilot's buttons for player `handle` on `frame`: it wanders, the same way in
/// every run.
pub fn autopilot_input(handle: usize, frame: i32) -> u8 {
    let phase = mix(handle as u64 + 1, (frame / 40) as u64);
    const WAYS: [u8; 8] = [
        UP,
        DOWN,
        LEFT,
        RIGHT,
        UP | LEFT,
        DOWN | RIGHT,
        UP | RIGHT,
        DOWN | LEFT,
    ];
    WAYS.get((phase % 8) as usize).copied().unwrap_or(0)
}

fn start_when_all_here(
    mut commands: Commands,
    game: Res<RollbackGame>,
    session: Option<Res<SquadlinkSession>>,
    running: Option<Res<Session<RollbackConfig>>>,
    mut status: ResMut<RollbackStatus>,
) {
    let (Some(session), None) = (session, running) else {
        return;
    };
    let Some(lobby) = session.lobby() else { return };
    if lobby.members.len() < game.players
        || session.connected_peers().len() + 1 < game.players
        || status.problem.is_some()
    {
        return;
    }
    match start_p2p::<RollbackConfig>(&session, GGRS_CHANNEL, &game.settings) {
        Ok((p2p, players)) => {
            info!(
                "rollback: {} players, we are player {:?}",
                players.players.len(),
                players.local_handle()
            );
            let seed = seed_of(&lobby.code);
            commands.insert_resource(Coin {
                pos: coin_place(seed, 0),
                taken: 0,
                seed,
            });
            let n = players.players.len() as i32;
            for handle in 0..players.players.len() {
                let x = (handle as i32 * 2 - (n - 1)) * 100 * ONE;
                commands.spawn((Square { handle }, Pos { x, y: 0 }, Score(0), Rollback));
            }
            status.players = Some(players);
            commands.insert_resource(Session::P2P(p2p));
        }
        Err(e) => {
            error!("rollback: could not start: {e}");
            status.problem = Some(e.to_string());
        }
    }
}

fn read_inputs(
    mut commands: Commands,
    game: Res<RollbackGame>,
    local: Res<LocalPlayers>,
    frame: Res<RollbackFrameCount>,
    keys: Option<Res<ButtonInput<KeyCode>>>,
) {
    let mut inputs = bevy::platform::collections::HashMap::default();
    for handle in &local.0 {
        let input = if game.autopilot {
            autopilot_input(*handle, frame.0)
        } else {
            keys.as_ref().map_or(0, |keys| {
                let held = |a: KeyCode, b: KeyCode| keys.pressed(a) || keys.pressed(b);
                let mut input = 0;
                if held(KeyCode::ArrowUp, KeyCode::KeyW) {
                    input |= UP;
                }
                if held(KeyCode::ArrowDown, KeyCode::KeyS) {
                    input |= DOWN;
                }
                if held(KeyCode::ArrowLeft, KeyCode::KeyA) {
                    input |= LEFT;
                }
                if held(KeyCode::ArrowRight, KeyCode::KeyD) {
                    input |= RIGHT;
                }
                input
            })
        };
        inputs.insert(*handle, input);
    }
    commands.insert_resource(LocalInputs::<RollbackConfig>(inputs));
}

fn move_squares(
    inputs: Res<PlayerInputs<RollbackConfig>>,
    mut squares: Query<(&Square, &mut Pos)>,
) {
    for (square, mut pos) in &mut squares {
        let Some((input, _)) = inputs.get(square.handle) else {
            continue;
        };
        let axis = |minus: u8, plus: u8| {
            i32::from(input & plus != 0) * SPEED - i32::from(input & minus != 0) * SPEED
        };
        pos.x = (pos.x + axis(LEFT, RIGHT)).clamp(-HALF, HALF);
        pos.y = (pos.y + axis(DOWN, UP)).clamp(-HALF, HALF);
    }
}

fn take_coin(mut coin: ResMut<Coin>, mut squares: Query<(&Square, &Pos, &mut Score)>) {
    // In handle order, so every member gives a coin both reach to the same player.
    let mut all: Vec<_> = squares.iter_mut().collect();
    all.sort_by_key(|(square, _, _)| square.handle);
    for (_, pos, mut score) in all {
        if (pos.x - coin.pos.x).abs() < REACH && (pos.y - coin.pos.y).abs() < REACH {
            score.0 += 1;
            coin.taken += 1;
            coin.pos = coin_place(coin.seed, coin.taken);
        }
    }
}

fn watch_ggrs(
    session: Option<ResMut<Session<RollbackConfig>>>,
    mut status: ResMut<RollbackStatus>,
) {
    let Some(mut session) = session else { return };
    let Session::P2P(p2p) = session.as_mut() else {
        return;
    };
    for event in p2p.events() {
        match event {
            GgrsEvent::DesyncDetected { frame, addr, .. } => {
                error!("rollback: desync with {addr} at frame {frame}");
                status.desyncs.push((frame, addr));
            }
            GgrsEvent::Disconnected { addr } => {
                warn!("rollback: {addr} disconnected");
                status.disconnected.push(addr);
            }
            _ => {}
        }
    }
}
