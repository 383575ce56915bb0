//! The rollback game (`squadlink_bevy_examples::rollback`) in headless Bevy Apps with
//! bevy_ggrs: two and three Apps in one P2P session over real WebRTC through the real
//! matchmaker, with 30 ms each way and 5 % loss, play 600 frames with desync detection on;
//! and GGRS's SyncTest (every frame rolled back and resimulated, checksums compared) on the
//! same game.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_squadlink::rollback::RollbackSettings;
use bevy_squadlink::rollback::bevy_ggrs::RollbackFrameCount;
use bevy_squadlink::rollback::bevy_ggrs::prelude::*;
use bevy_squadlink::{LobbyRef, SquadlinkPlugin};
use squadlink::NetworkConditions;
use squadlink_bevy_examples::rollback::{
    Coin, Pos, RollbackConfig, RollbackGame, RollbackStatus, Score, Square, rollback_session,
};

fn game(players: usize) -> RollbackGame {
    RollbackGame {
        players,
        autopilot: true,
        settings: RollbackSettings::default(),
    }
}

fn app(url: &str, lobby: LobbyRef, players: usize) -> App {
    let conditions = NetworkConditions::latency(Duration::from_millis(30)).with_loss(0.05);
    let builder = rollback_session(url, lobby)
        .bind("127.0.0.1:0".parse().unwrap())
        .simulated_network(conditions);
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .add_plugins(SquadlinkPlugin::new(builder))
        .add_plugins(game(players));
    app
}

fn frame(app: &App) -> i32 {
    app.world().resource::<RollbackFrameCount>().0
}

/// What the game looks like in `app`: each square's position and score, by handle, and the
/// coin.
fn world_of(app: &mut App) -> (Vec<(usize, Pos, Score)>, Coin) {
    let mut squares: Vec<(usize, Pos, Score)> = app
        .world_mut()
        .query::<(&Square, &Pos, &Score)>()
        .iter(app.world())
        .map(|(s, p, sc)| (s.handle, *p, *sc))
        .collect();
    squares.sort_by_key(|(h, _, _)| *h);
    (squares, *app.world().resource::<Coin>())
}

fn rollback_apps(n: usize) {
    let mm = squadlink_matchmaker::Embedded::start().unwrap();
    let url = mm.url();
    let mut apps = vec![app(&url, LobbyRef::create(u8::try_from(n).unwrap()), n)];
    // The others join once the first is in its lobby.
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        apps[0].update();
        if let Some(lobby) = apps[0].world().get_resource::<bevy_squadlink::Lobby>() {
            break lobby.code.clone();
        }
        assert!(Instant::now() < deadline, "no lobby");
        std::thread::sleep(Duration::from_millis(5));
    };
    for _ in 1..n {
        apps.push(app(&url, LobbyRef::Code(code.clone()), n));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while apps.iter().any(|a| frame(a) < 600) {
        assert!(
            Instant::now() < deadline,
            "600 frames not reached: {:?}",
            apps.iter().map(frame).collect::<Vec<_>>()
        );
        for a in &mut apps {
            a.update();
        }
        std::thread::sleep(Duration::from_millis(4));
    }
    for (i, a) in apps.iter_mut().enumerate() {
        let status = a.world().resource::<RollbackStatus>().clone();
        let (squares, coin) = world_of(a);
        eprintln!(
            "app {i}: frame {}, coins taken {}, scores {:?}",
            frame(a),
            coin.taken,
            squares.iter().map(|(_, _, s)| s.0).collect::<Vec<_>>()
        );
        assert!(status.problem.is_none(), "app {i}: {:?}", status.problem);
        assert!(
            status.desyncs.is_empty(),
            "app {i} desynced: {:?}",
            status.desyncs
        );
        assert!(
            status.disconnected.is_empty(),
            "app {i} lost {:?}",
            status.disconnected
        );
        assert_eq!(squares.len(), n, "app {i}: one square a player");
    }
    // The squares moved: the game was played, not stalled.
    let (squares, _) = world_of(&mut apps[0]);
    assert!(
        squares.iter().any(|(_, p, _)| *p != Pos::default()),
        "{squares:?}"
    );
}

#[test]
fn two_headless_apps_play_600_rollback_frames_over_loss_without_a_desync() {
    rollback_apps(2);
}

#[test]
fn three_headless_apps_play_600_rollback_frames_over_loss_without_a_desync() {
    rollback_apps(3);
}

/// GGRS's SyncTest on the game: every frame is rolled back 2 frames and resimulated, and
/// the checksums of the rolled-back state (positions, scores, the coin) must match.
#[test]
fn the_game_is_deterministic_under_synctest() {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins).add_plugins(game(2));
    let mismatches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = mismatches.clone();
    app.add_observer(move |_: On<SyncTestMismatch>| {
        seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    let sync = SessionBuilder::<RollbackConfig>::new()
        .with_num_players(2)
        .unwrap()
        .with_check_distance(2)
        .start_synctest_session()
        .unwrap();
    app.insert_resource(Session::SyncTest(sync));
    app.world_mut().insert_resource(Coin {
        pos: Pos { x: 0, y: 0 },
        taken: 0,
        seed: 7,
    });
    for handle in 0..2 {
        app.world_mut()
            .spawn((Square { handle }, Pos::default(), Score(0), Rollback));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while frame(&app) < 300 {
        assert!(Instant::now() < deadline, "300 frames not reached");
        app.update();
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(mismatches.load(std::sync::atomic::Ordering::Relaxed), 0);
    let (squares, coin) = world_of(&mut app);
    assert!(coin.taken > 0 || squares.iter().any(|(_, p, _)| *p != Pos::default()));
}

/// The `rollback` example itself, headless: two processes meet through the matchmaker,
/// play 300 frames on made-up inputs and each reports no desync (exit code 0).
#[test]
fn two_headless_rollback_processes_play_without_a_desync() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let mm = squadlink_matchmaker::Embedded::start().unwrap();
    let url = mm.url();
    let spawn = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rollback"))
            .args([
                "--headless",
                "--players",
                "2",
                "--frames",
                "300",
                "--matchmaker",
                &url,
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first = spawn(&[]);
    let mut out = BufReader::new(first.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let code = line
        .trim()
        .strip_prefix("LOBBY ")
        .expect("LOBBY CODE")
        .to_string();
    let mut second = spawn(&["--lobby", &code]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut results = Vec::new();
    let second_out = BufReader::new(second.stdout.take().unwrap());
    for (child, mut out) in [(&mut first, out), (&mut second, second_out)] {
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("a rollback process did not finish in time");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        let result = rest
            .lines()
            .find(|l| l.starts_with("RESULT"))
            .unwrap_or_default()
            .to_string();
        eprintln!("{result}");
        assert!(status.success(), "{status}: {rest}");
        results.push(result);
    }
    for r in &results {
        assert!(r.contains("desyncs=0 disconnected=0"), "{r}");
    }
}
