//! Headless bots: N arena players without a window (for servers, load and CI). Each bot is
//! a Bevy app with MinimalPlugins and the Squadlink plugin, on its own thread. It circles
//! around, sends its position 60 times a second and a ping every second, and counts what it
//! receives. Bots can join a windowed arena's lobby with `--lobby CODE`.
//!
//! Run: `cargo run -p squadlink-bevy-examples --bin headless_bots -- --bots 3 --duration 10`
//! (add `--matchmaker URL --lobby CODE` to join a running arena)

use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_squadlink::prelude::*;
use clap::Parser;
use squadlink_bevy_examples::{Ping, Position, add_arena_networking};

#[derive(Parser, Debug, Clone)]
#[command(about = "Headless arena bots (Squadlink + Bevy, no window)")]
struct Args {
    /// How many bots.
    #[arg(long, default_value_t = 3)]
    bots: usize,
    /// Seconds to play.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Matchmaker URL (default: start one in this process).
    #[arg(long)]
    matchmaker: Option<String>,
    /// Join this lobby (default: the first bot creates one).
    #[arg(long)]
    lobby: Option<String>,
}

#[derive(Resource, Default, Debug, Clone)]
struct Tally {
    positions: u64,
    pings: u64,
    peers_seen: usize,
}

#[derive(Resource)]
struct Phase(f32);

fn bot_app(url: String, lobby: LobbyRef, phase: f32) -> App {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins);
    add_arena_networking(&mut app, url, lobby);
    app.init_resource::<Tally>()
        .insert_resource(Phase(phase))
        .add_observer(|_: On<PeerConnected>, mut t: ResMut<Tally>| t.peers_seen += 1)
        .add_systems(Update, (play.run_if(in_lobby), count));
    app
}

fn play(
    time: Res<Time>,
    phase: Res<Phase>,
    mut last_ping: Local<f32>,
    mut pos: MessageWriter<Outgoing<Position>>,
    mut ping: MessageWriter<Outgoing<Ping>>,
) {
    let a = time.elapsed_secs() + phase.0;
    pos.write(Outgoing::to_all(Position {
        x: 200.0 * a.cos(),
        y: 150.0 * a.sin(),
    }));
    if time.elapsed_secs() - *last_ping >= 1.0 {
        *last_ping = time.elapsed_secs();
        ping.write(Outgoing::to_all(Ping));
    }
}

fn count(
    mut t: ResMut<Tally>,
    mut pos: MessageReader<Received<Position>>,
    mut ping: MessageReader<Received<Ping>>,
) {
    t.positions += pos.read().count() as u64;
    t.pings += ping.read().count() as u64;
}

/// Runs `app` at 60 Hz until `until`; returns its tally and lobby code.
fn run_bot(mut app: App, until: Instant) -> (Tally, Option<String>) {
    let tick = Duration::from_micros(16_667);
    let mut next = Instant::now();
    while Instant::now() < until {
        app.update();
        next += tick;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let code = app.world().get_resource::<Lobby>().map(|l| l.code.clone());
    (app.world().resource::<Tally>().clone(), code)
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let server = match &args.matchmaker {
        Some(_) => None,
        None => match runtime.block_on(squadlink_matchmaker::Server::bind(
            squadlink_matchmaker::Config {
                listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                ..squadlink_matchmaker::Config::default()
            },
        )) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::FAILURE;
            }
        },
    };
    let url = args
        .matchmaker
        .clone()
        .or_else(|| server.as_ref().map(|s| s.url()))
        .unwrap_or_default();
    let n = args.bots.clamp(1, 16);
    let max = u8::try_from(n.max(2)).unwrap_or(16);

    // The first bot creates (or joins) the lobby; the others join once its code is known.
    let first_lobby = args
        .lobby
        .clone()
        .map_or_else(|| LobbyRef::create(max), LobbyRef::Code);
    let mut first = bot_app(url.clone(), first_lobby, 0.0);
    let deadline = Instant::now() + Duration::from_secs(15);
    let code = loop {
        first.update();
        if let Some(l) = first.world().get_resource::<Lobby>() {
            break l.code.clone();
        }
        if let SquadlinkStatus::Failed(why) = first.world().resource::<SquadlinkStatus>() {
            eprintln!("error: {why}");
            return std::process::ExitCode::FAILURE;
        }
        if Instant::now() > deadline {
            eprintln!("error: the first bot could not enter a lobby in time");
            return std::process::ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    eprintln!("bots in lobby {code} (join it with: arena --lobby {code})");
    let until = Instant::now() + Duration::from_secs_f64(args.duration);
    let others: Vec<_> = (1..n)
        .map(|i| {
            let (url, code) = (url.clone(), code.clone());
            // An App is not Send: each bot builds its own on its thread.
            std::thread::spawn(move || run_bot(bot_app(url, LobbyRef::Code(code), i as f32), until))
        })
        .collect();
    let mut tallies = vec![run_bot(first, until).0];
    tallies.extend(
        others
            .into_iter()
            .filter_map(|h| h.join().ok())
            .map(|(t, _)| t),
    );
    println!("bot  peers  positions/s  pings");
    for (i, t) in tallies.iter().enumerate() {
        println!(
            "{i:>3}  {:>5}  {:>11.0}  {:>5}",
            t.peers_seen,
            t.positions as f64 / args.duration,
            t.pings
        );
    }
    let everyone = args.lobby.is_some() || tallies.iter().all(|t| t.peers_seen + 1 >= n);
    drop(server);
    if everyone {
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!("not every bot connected to every other");
        std::process::ExitCode::from(2)
    }
}
