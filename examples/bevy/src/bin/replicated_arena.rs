//! Replicated arena: the arena's squares on bevy_replicon over Squadlink. The lobby's host
//! serves the world (a square per member, a frame counter); every member sends its moves
//! (arrows or WASD) as replicon client messages and sees the world the server replicates.
//! Close the host's window — or kill it — and another member serves on from the world it
//! holds, chosen by measured round trip; nobody reconnects.
//!
//! Run three (the first starts a matchmaker on 127.0.0.1:7878 if none runs):
//!   cargo run -p squadlink-bevy-examples --bin replicated_arena                # prints LOBBY CODE
//!   cargo run -p squadlink-bevy-examples --bin replicated_arena -- --lobby CODE
//! `--headless` runs without a window, moving in a circle, and prints a `STATUS` line every
//! quarter second and a `HANDOVER` line after each hand-over (`--seconds N` to quit).

use std::time::Duration;

use bevy::prelude::*;
use bevy::state::app::StatesPlugin;
use bevy_squadlink::prelude::*;
use bevy_squadlink::replicon::{AuthorityChanged, NetId, RepliconAuthority};
use clap::Parser;
use squadlink_bevy_examples::arena::{PALETTE, SIZE, arena_plugins};
use squadlink_bevy_examples::replicated::{
    Move, Player, Pos, ReplicatedGame, Ticks, identities, replicated_session,
};

#[derive(Parser, Debug, Clone, Resource)]
#[command(about = "Replicated arena: bevy_replicon over Squadlink, with authority hand-over")]
struct Args {
    /// Join this lobby instead of creating one.
    #[arg(long)]
    lobby: Option<String>,
    /// Matchmaker URL (default: the one on 127.0.0.1:7878, started here if none runs).
    #[arg(long)]
    matchmaker: Option<String>,
    /// No window: move in a circle and print status lines.
    #[arg(long)]
    headless: bool,
    /// Headless: quit after this many seconds (default: run until stopped).
    #[arg(long)]
    seconds: Option<f64>,
}

fn main() -> AppExit {
    let args = Args::parse();
    let url = match args.matchmaker.clone() {
        Some(url) => url,
        None => match squadlink_matchmaker::ensure_local(7878) {
            Ok((url, _)) => url,
            Err(e) => {
                eprintln!("error: {e}");
                return AppExit::error();
            }
        },
    };
    let lobby = args
        .lobby
        .clone()
        .map_or_else(|| LobbyRef::create(8), LobbyRef::Code);
    let mut app = App::new();
    if args.headless {
        app.add_plugins(
            MinimalPlugins.set(bevy::app::ScheduleRunnerPlugin::run_loop(
                Duration::from_secs_f64(1.0 / 60.0),
            )),
        )
        .add_plugins((StatesPlugin, bevy::log::LogPlugin::default()))
        .add_systems(Update, (circle, status, quit_after));
    } else {
        app.add_plugins(arena_plugins(None))
            .add_systems(Startup, |mut commands: Commands| {
                commands.spawn(Camera2d);
            })
            .add_systems(Update, (keyboard, draw));
    }
    app.add_plugins(SquadlinkPlugin::new(replicated_session(url, lobby)))
        .add_plugins(ReplicatedGame)
        .insert_resource(args)
        .add_observer(|on: On<AuthorityChanged>| {
            let e = on.event();
            println!(
                "AUTHORITY server={} previous={:?} epoch={} local={}",
                e.server,
                e.previous.map(|p| p.0),
                e.epoch,
                e.local
            );
        })
        .add_observer(|on: On<PeerInterrupted>| {
            println!("PEER_INTERRUPTED peer={}", on.peer.0);
        })
        .add_systems(Update, announce_lobby)
        .run()
}

/// Prints `LOBBY <code>` once, for scripts that start the other players.
fn announce_lobby(lobby: Option<Res<Lobby>>, mut done: Local<bool>) {
    if let (false, Some(lobby)) = (*done, lobby) {
        println!("LOBBY {}", lobby.code);
        *done = true;
    }
}

fn keyboard(keys: Res<ButtonInput<KeyCode>>, mut moves: MessageWriter<Move>) {
    let held = |a: KeyCode, b: KeyCode| keys.pressed(a) || keys.pressed(b);
    let dx = f32::from(u8::from(held(KeyCode::ArrowRight, KeyCode::KeyD)))
        - f32::from(u8::from(held(KeyCode::ArrowLeft, KeyCode::KeyA)));
    let dy = f32::from(u8::from(held(KeyCode::ArrowUp, KeyCode::KeyW)))
        - f32::from(u8::from(held(KeyCode::ArrowDown, KeyCode::KeyS)));
    if dx != 0.0 || dy != 0.0 {
        moves.write(Move {
            dx: dx * 4.0,
            dy: dy * 4.0,
        });
    }
}

/// Headless: a slow circle.
fn circle(time: Res<Time>, mut moves: MessageWriter<Move>) {
    let t = time.elapsed_secs();
    moves.write(Move {
        dx: 2.0 * t.cos(),
        dy: 2.0 * t.sin(),
    });
}

/// Headless: a status line every quarter second, a hand-over line after each hand-over.
fn status(
    time: Res<Time<Real>>,
    lobby: Option<Res<Lobby>>,
    authority: Res<RepliconAuthority>,
    ticks: Query<&Ticks>,
    squares: Query<&NetId, With<Player>>,
    mut printed: Local<(f64, Option<Duration>)>,
) {
    let now = time.elapsed_secs_f64();
    let (last, reported) = &mut *printed;
    if let Some(h) = &authority.last_hand_over
        && let Some(gap) = h.gap()
        && *reported != h.served_at
    {
        *reported = h.served_at;
        println!(
            "HANDOVER lost={} gap_ms={:.1}",
            h.lost,
            gap.as_secs_f64() * 1000.0
        );
    }
    if now - *last >= 0.25 {
        *last = now;
        let me = lobby.map_or(0, |l| l.me.0);
        println!(
            "STATUS me={me} server={} local={} epoch={} ticks={} squares={}",
            authority.server.map_or(0, |p| p.0),
            authority.local,
            authority.epoch,
            ticks.iter().next().map_or(0, |t| t.0),
            identities(squares.iter()).join(","),
        );
    }
}

fn quit_after(args: Res<Args>, time: Res<Time<Real>>, mut exit: MessageWriter<AppExit>) {
    if args.seconds.is_some_and(|s| time.elapsed_secs_f64() >= s) {
        exit.write(AppExit::Success);
    }
}

fn draw(
    mut commands: Commands,
    mut squares: Query<(Entity, &Player, &Pos, Option<&mut Transform>)>,
) {
    for (entity, player, pos, transform) in &mut squares {
        let at = Vec3::new(pos.x, pos.y, 0.0);
        match transform {
            Some(mut t) => t.translation = at,
            None => {
                let colour = PALETTE
                    .get(player.colour % PALETTE.len())
                    .copied()
                    .unwrap_or(Color::WHITE);
                commands.entity(entity).insert((
                    Sprite::from_color(colour, Vec2::splat(SIZE)),
                    Transform::from_translation(at),
                ));
            }
        }
    }
}
