//! GGRS rollback over Squadlink (`bevy_squadlink::rollback`, feature `ggrs`): real sessions
//! through the real matchmaker, real WebRTC on loopback with simulated latency and loss,
//! GGRS's P2P sessions driven frame by frame with a small deterministic game.
//!
//! Run: `cargo test -p bevy_squadlink --features ggrs --test rollback` (scripts/test.sh does).
#![cfg(feature = "ggrs")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bevy_squadlink::rollback::ggrs::{self, GgrsEvent, GgrsRequest, P2PSession, SessionState};
use bevy_squadlink::rollback::{RollbackPlayers, RollbackSettings, start_p2p};
use squadlink::{Channel, ChannelKind, LobbyRef, NetworkConditions, PeerId, Session};

/// The test game: one number per session, stepped by every player's input.
struct Cfg;
impl ggrs::Config for Cfg {
    type Input = u8;
    type State = u64;
    type Address = PeerId;
    type InputPredictor = ggrs::PredictRepeatLast;
}

const GGRS: Channel = Channel(0);

/// `n` sessions in one lobby, all connected to each other, on links with `conditions`.
fn lobby(url: &str, n: usize, conditions: NetworkConditions) -> Vec<Session> {
    let builder = |lobby| {
        Session::builder(url)
            .bind("127.0.0.1:0".parse().unwrap())
            .channel(ChannelKind::Unreliable)
            .simulated_network(conditions)
            .join(lobby)
    };
    let first = builder(LobbyRef::create(u8::try_from(n).unwrap()))
        .start()
        .unwrap();
    let code = first.lobby().unwrap().code;
    let mut all = vec![first];
    for _ in 1..n {
        all.push(builder(LobbyRef::Code(code.clone())).start().unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while all
        .iter()
        .any(|s| s.connected_peers().len() < n - 1 || s.lobby().unwrap().members.len() < n)
    {
        assert!(Instant::now() < deadline, "the lobby did not connect");
        for s in &all {
            s.poll_events().for_each(drop);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    all
}

/// One member's game: its GGRS session, the number it steps, and what it saw.
struct Player {
    ggrs: P2PSession<Cfg>,
    players: RollbackPlayers,
    state: u64,
    /// The frame `state` is at.
    frame: i32,
    /// The state at each frame, as last simulated (a rollback overwrites).
    history: BTreeMap<i32, u64>,
    rollbacks: usize,
    desyncs: Vec<String>,
    disconnects: Vec<PeerId>,
    /// Added to every step: a game that differs from the others' (0: the same game).
    twist: u64,
}

/// The input player `handle` gives on `frame`: the same in every run.
fn input(handle: usize, frame: i32) -> u8 {
    (frame as u32)
        .wrapping_mul(2_654_435_761)
        .wrapping_add(handle as u32 * 97) as u8
        >> 3
}

fn step(state: u64, inputs: &[(u8, ggrs::InputStatus)]) -> u64 {
    inputs.iter().enumerate().fold(state, |s, (i, (input, _))| {
        s.wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(u64::from(*input) + i as u64)
    })
}

impl Player {
    fn tick(&mut self) {
        self.ggrs.poll_remote_clients();
        for event in self.ggrs.events() {
            match event {
                GgrsEvent::DesyncDetected { frame, addr, .. } => {
                    self.desyncs.push(format!("frame {frame} with {addr}"));
                }
                GgrsEvent::Disconnected { addr } => self.disconnects.push(addr),
                _ => {}
            }
        }
        if self.ggrs.current_state() != SessionState::Running {
            return;
        }
        let handle = self.players.local_handle().unwrap();
        let frame = self.ggrs.current_frame();
        self.ggrs
            .add_local_input(handle, input(handle, frame))
            .unwrap();
        let requests = match self.ggrs.advance_frame() {
            Ok(r) => r,
            // Too far ahead of the peers: wait for them this tick.
            Err(ggrs::GgrsError::PredictionThreshold) => return,
            Err(e) => panic!("advance_frame: {e}"),
        };
        for request in requests {
            match request {
                GgrsRequest::SaveGameState { cell, frame } => {
                    assert_eq!(frame, self.frame, "GGRS saves the frame we are at");
                    cell.save(frame, Some(self.state), Some(u128::from(self.state)));
                }
                GgrsRequest::LoadGameState { cell, frame } => {
                    self.state = cell.load().unwrap();
                    self.frame = frame;
                    self.rollbacks += 1;
                }
                GgrsRequest::AdvanceFrame { inputs } => {
                    self.state = step(self.state, &inputs).wrapping_add(self.twist);
                    self.frame += 1;
                    self.history.insert(self.frame, self.state);
                }
            }
        }
    }
}

/// `n` players over 30 ms each way with 5 % loss each way play 600 frames at 60 fps with
/// desync detection on (every 10 frames): nobody desyncs or disconnects, everyone reaches
/// frame 600, and every frame all of them confirmed has the same state on every player.
fn rollback_over_loss(n: usize) {
    let mm = squadlink_matchmaker::Embedded::start().unwrap();
    let url = mm.url();
    let conditions = NetworkConditions::latency(Duration::from_millis(30)).with_loss(0.05);
    let sessions = lobby(&url, n, conditions);
    let mut players = players(&sessions, &[]);
    run(&mut players, &sessions, |players| {
        players.iter().all(|p| p.ggrs.current_frame() >= 600)
    });
    let confirmed = players
        .iter()
        .map(|p| p.ggrs.confirmed_frame())
        .min()
        .unwrap();
    let mut compared = 0;
    for f in 1..=confirmed {
        let states: Vec<Option<&u64>> = players.iter().map(|p| p.history.get(&f)).collect();
        if states.iter().all(Option::is_some) {
            assert!(
                states.windows(2).all(|w| w[0] == w[1]),
                "frame {f}: {states:?}"
            );
            compared += 1;
        }
    }
    for (i, p) in players.iter().enumerate() {
        eprintln!(
            "player {i}: frame {}, confirmed {}, {} rollbacks",
            p.ggrs.current_frame(),
            p.ggrs.confirmed_frame(),
            p.rollbacks
        );
        assert!(p.desyncs.is_empty(), "player {i} desynced: {:?}", p.desyncs);
        assert!(
            p.disconnects.is_empty(),
            "player {i} lost {:?}",
            p.disconnects
        );
    }
    assert!(compared >= 500, "only {compared} confirmed frames compared");
}

/// Each session's GGRS player (those at the indices in `twisted` play a different game).
fn players(sessions: &[Session], twisted: &[usize]) -> Vec<Player> {
    sessions
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (ggrs, players) = start_p2p::<Cfg>(s, GGRS, &RollbackSettings::default()).unwrap();
            Player {
                ggrs,
                players,
                state: 0,
                frame: 0,
                history: BTreeMap::new(),
                rollbacks: 0,
                desyncs: Vec::new(),
                disconnects: Vec::new(),
                twist: if twisted.contains(&i) { 1 } else { 0 },
            }
        })
        .collect()
}

/// Plays at 60 frames a second until `done` (at most 40 s).
fn run(players: &mut [Player], sessions: &[Session], mut done: impl FnMut(&[Player]) -> bool) {
    // Everyone agrees on the order without a message.
    for p in players.iter() {
        assert_eq!(p.players.players, players[0].players.players);
    }
    let frame = Duration::from_secs_f64(1.0 / 60.0);
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut next = Instant::now();
    while !done(players) {
        assert!(
            Instant::now() < deadline,
            "not done in time: frames {:?}",
            players
                .iter()
                .map(|p| p.ggrs.current_frame())
                .collect::<Vec<_>>()
        );
        for p in players.iter_mut() {
            p.tick();
            for s in sessions {
                s.poll_events().for_each(drop);
            }
        }
        next += frame;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

/// The check is live: a player whose game steps differently is caught by GGRS's desync
/// detection, its checksums carried over the same socket.
#[test]
fn a_player_whose_game_differs_is_caught_as_a_desync() {
    let mm = squadlink_matchmaker::Embedded::start().unwrap();
    let url = mm.url();
    let sessions = lobby(&url, 2, NetworkConditions::default());
    let mut players = players(&sessions, &[1]);
    run(&mut players, &sessions, |players| {
        players.iter().all(|p| !p.desyncs.is_empty())
    });
}

#[test]
fn two_players_roll_back_600_frames_over_loss_without_a_desync() {
    rollback_over_loss(2);
}

#[test]
fn three_players_roll_back_600_frames_over_loss_without_a_desync() {
    rollback_over_loss(3);
}

/// The handle order comes from the lobby alone, and a spectator (named by the game, or
/// marked in the lobby by itself) is no player.
#[test]
fn every_member_derives_the_same_players_from_the_lobby() {
    let lobby = squadlink::LobbyInfo {
        code: "ABCDE".into(),
        host: PeerId(9),
        members: vec![
            (PeerId(9), squadlink::PlayerId("a".into())),
            (PeerId(3), squadlink::PlayerId("b".into())),
            (PeerId(5), squadlink::PlayerId("c".into())),
            (PeerId(7), squadlink::PlayerId("d".into())),
        ],
        // PeerId(7) marked itself a spectator (`rollback::spectate`).
        member_data: vec![(
            PeerId(7),
            [(
                bevy_squadlink::rollback::ROLE_KEY.to_string(),
                bevy_squadlink::rollback::SPECTATOR.to_string(),
            )]
            .into(),
        )],
    };
    let seen_by = |me| RollbackPlayers::from_lobby(&lobby, me, &[PeerId(5)]);
    assert_eq!(seen_by(PeerId(9)).players, vec![PeerId(3), PeerId(9)]);
    assert_eq!(seen_by(PeerId(3)).players, seen_by(PeerId(9)).players);
    assert_eq!(seen_by(PeerId(9)).local_handle(), Some(1));
    assert_eq!(seen_by(PeerId(5)).local_handle(), None);
    assert_eq!(seen_by(PeerId(5)).spectators, vec![PeerId(5), PeerId(7)]);
    assert_eq!(seen_by(PeerId(7)).local_handle(), None);
}

/// A member that joined marked with `rollback::spectate` starts its own spectator session,
/// follows the players' game from the lowest-id player and computes the same state for
/// every frame it advances.
#[test]
fn a_spectator_follows_the_players_game_frame_for_frame() {
    use bevy_squadlink::rollback::{spectate, start_spectator};
    let mm = squadlink_matchmaker::Embedded::start().unwrap();
    let url = mm.url();
    let builder = |lobby| {
        Session::builder(&url)
            .bind("127.0.0.1:0".parse().unwrap())
            .channel(ChannelKind::Unreliable)
            .join(lobby)
    };
    let first = builder(LobbyRef::create(3)).start().unwrap();
    let code = first.lobby().unwrap().code;
    let second = builder(LobbyRef::Code(code.clone())).start().unwrap();
    let watcher = spectate(builder(LobbyRef::Code(code))).start().unwrap();
    let sessions = [first, second, watcher];
    let deadline = Instant::now() + Duration::from_secs(20);
    while sessions
        .iter()
        .any(|s| s.connected_peers().len() < 2 || s.lobby().unwrap().members.len() < 3)
    {
        assert!(Instant::now() < deadline, "the lobby did not connect");
        for s in &sessions {
            s.poll_events().for_each(drop);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // The spectator is no player, and start_p2p says so.
    assert!(start_p2p::<Cfg>(&sessions[2], GGRS, &RollbackSettings::default()).is_err());
    let mut players = players(&sessions[..2], &[]);
    assert_eq!(players[0].players.players.len(), 2);
    assert_eq!(
        players[0].players.spectators,
        vec![sessions[2].id().unwrap()]
    );
    let (mut spectator, watched) =
        start_spectator::<Cfg>(&sessions[2], GGRS, &RollbackSettings::default()).unwrap();
    assert_eq!(watched.players, players[0].players.players);
    let (mut state, mut frame, mut seen) = (0u64, 0i32, BTreeMap::new());
    let tick = Duration::from_secs_f64(1.0 / 60.0);
    let deadline = Instant::now() + Duration::from_secs(40);
    while frame < 300 {
        assert!(
            Instant::now() < deadline,
            "the spectator reached frame {frame} ({:?}); the players {:?}",
            spectator.current_state(),
            players
                .iter()
                .map(|p| p.ggrs.current_frame())
                .collect::<Vec<_>>()
        );
        for p in players.iter_mut() {
            p.tick();
        }
        spectator.poll_remote_clients();
        if spectator.current_state() == SessionState::Running
            && let Ok(requests) = spectator.advance_frame()
        {
            for request in requests {
                if let GgrsRequest::AdvanceFrame { inputs } = request {
                    state = step(state, &inputs);
                    frame += 1;
                    seen.insert(frame, state);
                }
            }
        }
        for s in &sessions {
            s.poll_events().for_each(drop);
        }
        std::thread::sleep(tick);
    }
    let compared = seen
        .iter()
        .filter(|(f, s)| {
            let theirs = players[0].history.get(f);
            if let Some(theirs) = theirs {
                assert_eq!(theirs, *s, "frame {f}");
            }
            theirs.is_some()
        })
        .count();
    assert!(compared >= 250, "only {compared} frames compared");
}
