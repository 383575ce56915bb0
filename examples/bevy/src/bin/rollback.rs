//! Rollback: a 2–4 player game on GGRS rollback netcode over Squadlink. Each player moves a
//! square (arrows or WASD); a coin appears at places every player derives from the lobby's
//! code (one shared seed, no message), and touching it scores. Inputs travel on an
//! unreliable channel; GGRS predicts the others' inputs, and when the real ones arrive it
//! rolls the game back and replays it, so everyone sees the same game (checksums are
//! compared every 10 frames).
//!
//! Run two (the first starts a matchmaker on 127.0.0.1:7878 if none runs):
//!   cargo run -p squadlink-bevy-examples --bin rollback -- --players 2               # prints LOBBY CODE
//!   cargo run -p squadlink-bevy-examples --bin rollback -- --players 2 --lobby CODE
//! `--headless` runs without a window on made-up inputs (the same each run), prints
//! `RESULT frame=N desyncs=K disconnected=K scores=[..]` after `--frames N` and quits
//! (exit code 1 on a desync).

use bevy::prelude::*;
use bevy_squadlink::prelude::*;
use bevy_squadlink::rollback::RollbackSettings;
use bevy_squadlink::rollback::bevy_ggrs::RollbackFrameCount;
use clap::Parser;
use squadlink_bevy_examples::arena::{PALETTE, SIZE, arena_plugins};
use squadlink_bevy_examples::rollback::{
    Coin, Pos, RollbackGame, RollbackStatus, Score, Square, rollback_session,
};

#[derive(Parser, Debug, Clone, Resource)]
#[command(about = "Rollback: a 2–4 player GGRS game over Squadlink")]
struct Args {
    /// Players to wait for before the game starts (2–4).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=4))]
    players: u8,
    /// Join this lobby instead of creating one.
    #[arg(long)]
    lobby: Option<String>,
    /// Matchmaker URL (default: the one on 127.0.0.1:7878, started here if none runs).
    #[arg(long)]
    matchmaker: Option<String>,
    /// No window: made-up inputs, a result line, and quit after --frames.
    #[arg(long)]
    headless: bool,
    /// Headless: quit after this many rollback frames (default 600, ten seconds).
    #[arg(long, default_value_t = 600)]
    frames: i32,
    /// Frames of input delay (GGRS).
    #[arg(long, default_value_t = 2)]
    input_delay: usize,
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
        .map_or_else(|| LobbyRef::create(args.players), LobbyRef::Code);
    let mut app = App::new();
    if args.headless {
        app.add_plugins(
            MinimalPlugins.set(bevy::app::ScheduleRunnerPlugin::run_loop(
                std::time::Duration::from_secs_f64(1.0 / 120.0),
            )),
        )
        .add_plugins(bevy::log::LogPlugin::default())
        .add_systems(Update, finish_headless);
    } else {
        app.add_plugins(arena_plugins(None))
            .add_systems(Startup, |mut commands: Commands| {
                commands.spawn(Camera2d);
            })
            .add_systems(Update, (draw_squares, draw_coin));
    }
    app.add_plugins(SquadlinkPlugin::new(rollback_session(url, lobby)))
        .add_plugins(RollbackGame {
            players: usize::from(args.players),
            autopilot: args.headless,
            settings: RollbackSettings {
                input_delay: args.input_delay,
                ..RollbackSettings::default()
            },
        })
        .insert_resource(args)
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

/// Headless: after `--frames`, the result line and the exit.
fn finish_headless(
    args: Res<Args>,
    frame: Option<Res<RollbackFrameCount>>,
    status: Res<RollbackStatus>,
    scores: Query<(&Square, &Score)>,
    mut exit: MessageWriter<AppExit>,
) {
    let frame = frame.map_or(0, |f| f.0);
    if frame < args.frames && status.problem.is_none() {
        return;
    }
    let mut scores: Vec<(usize, u32)> = scores.iter().map(|(s, sc)| (s.handle, sc.0)).collect();
    scores.sort_unstable();
    println!(
        "RESULT frame={frame} desyncs={} disconnected={} scores={:?}",
        status.desyncs.len(),
        status.disconnected.len(),
        scores.iter().map(|(_, s)| s).collect::<Vec<_>>()
    );
    exit.write(if status.desyncs.is_empty() && status.problem.is_none() {
        AppExit::Success
    } else {
        AppExit::error()
    });
}

/// Squares where the simulation has them (a sprite each, coloured by handle).
fn draw_squares(
    mut commands: Commands,
    mut squares: Query<(Entity, &Square, &Pos, Option<&mut Transform>)>,
) {
    for (entity, square, pos, transform) in &mut squares {
        let at = Vec3::new(pos.x as f32 / 256.0, pos.y as f32 / 256.0, 0.0);
        match transform {
            Some(mut t) => t.translation = at,
            None => {
                let colour = PALETTE
                    .get(square.handle % PALETTE.len())
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

/// The coin marker.
#[derive(Component)]
struct CoinMarker;

fn draw_coin(
    mut commands: Commands,
    coin: Res<Coin>,
    mut marker: Query<&mut Transform, With<CoinMarker>>,
) {
    let at = Vec3::new(coin.pos.x as f32 / 256.0, coin.pos.y as f32 / 256.0, -0.5);
    match marker.single_mut() {
        Ok(mut t) => t.translation = at,
        Err(_) => {
            commands.spawn((
                CoinMarker,
                Sprite::from_color(Color::srgb(1.0, 0.85, 0.2), Vec2::splat(24.0)),
                Transform::from_translation(at),
            ));
        }
    }
}
