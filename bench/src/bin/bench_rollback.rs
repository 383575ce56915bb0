//! GGRS rollback over Squadlink beside the same game over matchbox's GGRS socket (what
//! `bevy_matchbox` hands GGRS), in one run (issue 17).
//!
//! Two players per library, in this process, each a GGRS `P2PSession` driven at 60 frames
//! a second for `--frames` frames on the same made-up inputs (they change every few frames,
//! so predictions miss as in play). Squadlink's players use `bevy_squadlink::rollback`'s
//! `SquadlinkGgrsSocket` over an unreliable channel; matchbox's use its `WebRtcChannel` on an
//! unreliable channel. The same added delay goes on both, at the GGRS socket: half of the
//! added round trip (0, 50, 150 ms) on each message each way, so the libraries' own transport
//! is what differs.
//!
//! Figures per library, added round trip and load (`--busy`: threads spinning beside the
//! game, as its rendering and simulation keep a player's cores busy): the match start (from
//! the first player starting to connect to both GGRS sessions running), frames rolled back
//! per 100 frames played, and the confirmed-frame lag (frames between the frame played and
//! the newest frame with every input confirmed; mean and 99th percentile).
//!
//! Run: `cargo run --release -p squadlink-bench --features matchbox --bin bench_rollback`
//! (scripts/bench.sh rollback); `--write-docs docs/performance.md` records the figures.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bevy_squadlink::rollback::{RollbackPlayers, SquadlinkGgrsSocket};
use clap::Parser;
use ggrs::{
    Config, DesyncDetection, GgrsError, GgrsRequest, Message, NonBlockingSocket, P2PSession,
    PlayerType, SessionState,
};
use serde::Serialize;
use squadlink_bench::{percentile, update_docs_section};

#[derive(Parser, Debug)]
#[command(about = "GGRS over Squadlink beside GGRS over matchbox")]
struct Args {
    /// Frames each player plays per setting (60 a second).
    #[arg(long, default_value_t = 600)]
    frames: i32,
    /// Added round trips, milliseconds.
    #[arg(long, value_delimiter = ',', default_values_t = [0u64, 50, 150])]
    rtts: Vec<u64>,
    /// GGRS input delay, frames (0: every late input is a rollback, so the transport shows).
    #[arg(long, default_value_t = 0)]
    input_delay: usize,
    /// Busy threads beside the game (a game's rendering and simulation keep the cores busy):
    /// every added round trip is measured once per number given.
    #[arg(long, value_delimiter = ',', default_values_t = [0usize, 2])]
    busy: Vec<usize>,
    /// Record the figures in this Markdown file.
    #[arg(long)]
    write_docs: Option<std::path::PathBuf>,
}

struct OverSquadlink;
impl Config for OverSquadlink {
    type Input = u8;
    type State = u64;
    type Address = squadlink::PeerId;
    type InputPredictor = ggrs::PredictRepeatLast;
}

struct OverMatchbox;
impl Config for OverMatchbox {
    type Input = u8;
    type State = u64;
    type Address = matchbox_socket::PeerId;
    type InputPredictor = ggrs::PredictRepeatLast;
}

/// A GGRS socket whose messages wait `delay` before they are sent.
struct Delayed<S, A> {
    inner: S,
    delay: Duration,
    queue: VecDeque<(Instant, A, Message)>,
}

impl<S: NonBlockingSocket<A>, A: Clone + PartialEq + Eq + std::hash::Hash + Send + Sync>
    NonBlockingSocket<A> for Delayed<S, A>
{
    fn send_to(&mut self, msg: &Message, addr: &A) {
        if self.delay.is_zero() {
            self.inner.send_to(msg, addr);
        } else {
            self.queue
                .push_back((Instant::now() + self.delay, addr.clone(), msg.clone()));
        }
    }

    fn receive_all_messages(&mut self) -> Vec<(A, Message)> {
        let now = Instant::now();
        while self.queue.front().is_some_and(|(due, _, _)| *due <= now) {
            if let Some((_, addr, msg)) = self.queue.pop_front() {
                self.inner.send_to(&msg, &addr);
            }
        }
        self.inner.receive_all_messages()
    }
}

/// One player's game: a number stepped by both players' inputs.
struct Player<C: Config<Input = u8, State = u64>> {
    ggrs: P2PSession<C>,
    handle: usize,
    state: u64,
    rolled_back: u64,
    lags: Vec<i32>,
    played: i32,
}

fn input(handle: usize, frame: i32) -> u8 {
    // Changes every 6 frames or so, differently per player.
    let step = u32::try_from(frame.max(0) / 6).unwrap_or(0);
    (step.wrapping_mul(2_654_435_761) ^ u32::try_from(handle).unwrap_or(0).wrapping_mul(97)) as u8
        & 7
}

impl<C: Config<Input = u8, State = u64>> Player<C> {
    fn frame(&mut self) -> Result<(), String> {
        if self.ggrs.current_state() != SessionState::Running {
            return Ok(());
        }
        let frame = self.ggrs.current_frame();
        self.ggrs
            .add_local_input(self.handle, input(self.handle, frame))
            .map_err(|e| e.to_string())?;
        let requests = match self.ggrs.advance_frame() {
            Ok(r) => r,
            Err(GgrsError::PredictionThreshold) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        for request in requests {
            match request {
                GgrsRequest::SaveGameState { cell, frame } => {
                    cell.save(frame, Some(self.state), None);
                }
                GgrsRequest::LoadGameState { cell, frame } => {
                    self.state = cell.load().unwrap_or(0);
                    self.rolled_back +=
                        u64::try_from(self.ggrs.current_frame() - frame).unwrap_or(0);
                }
                GgrsRequest::AdvanceFrame { inputs } => {
                    self.state = inputs.iter().fold(self.state, |s, (i, _)| {
                        s.wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(u64::from(*i))
                    });
                }
            }
        }
        self.played += 1;
        self.lags
            .push(self.ggrs.current_frame() - self.ggrs.confirmed_frame());
        Ok(())
    }
}

fn build<C: Config<Input = u8, State = u64>>(
    input_delay: usize,
    players: &[PlayerType<C::Address>],
    socket: impl NonBlockingSocket<C::Address> + 'static,
) -> Result<P2PSession<C>, String> {
    let e = |e: GgrsError| e.to_string();
    let mut builder = ggrs::SessionBuilder::<C>::new()
        .with_num_players(players.len())
        .map_err(e)?
        .with_input_delay(input_delay)
        .with_max_prediction_window(8)
        .with_fps(60)
        .map_err(e)?
        .with_desync_detection_mode(DesyncDetection::Off);
    for (handle, p) in players.iter().enumerate() {
        builder = builder.add_player(p.clone(), handle).map_err(e)?;
    }
    builder.start_p2p_session(socket).map_err(e)
}

/// Plays both players for `frames` frames at 60 a second; the figures of the pair (the
/// match start counted from `t0`, when the first player began to connect).
async fn play<C: Config<Input = u8, State = u64>>(
    mut players: Vec<Player<C>>,
    (frames, t0): (i32, Instant),
    mut pump: impl FnMut(),
) -> Result<Figures, String> {
    let mut started: Option<Instant> = None;
    let step = Duration::from_secs_f64(1.0 / 60.0);
    let mut next = Instant::now();
    let deadline =
        Instant::now() + Duration::from_secs(60) + step * u32::try_from(frames).unwrap_or(0);
    while players.iter().any(|p| p.played < frames) {
        if Instant::now() > deadline {
            return Err("the GGRS sessions did not finish in time".into());
        }
        pump();
        for p in &mut players {
            p.ggrs.poll_remote_clients();
        }
        if started.is_none()
            && players
                .iter()
                .all(|p| p.ggrs.current_state() == SessionState::Running)
        {
            started = Some(Instant::now());
        }
        if Instant::now() >= next {
            next += step;
            for p in &mut players {
                if p.played < frames {
                    p.frame()?;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut lags: Vec<i32> = players
        .iter()
        .flat_map(|p| p.lags.iter().copied())
        .collect();
    lags.sort_unstable();
    let played: i32 = players.iter().map(|p| p.played).sum();
    let rolled: u64 = players.iter().map(|p| p.rolled_back).sum();
    Ok(Figures {
        match_start_ms: started.map_or(f64::NAN, |at| at.duration_since(t0).as_secs_f64() * 1000.0),
        rolled_back_per_100: rolled as f64 * 100.0 / f64::from(played.max(1)),
        lag_mean: f64::from(lags.iter().sum::<i32>()) / lags.len().max(1) as f64,
        lag_p99: percentile(&lags, 0.99).map_or(0.0, f64::from),
    })
}

#[derive(Debug, Clone, Serialize)]
struct Row {
    added_rtt_ms: u64,
    busy_threads: usize,
    squadlink: Figures,
    matchbox: Figures,
}

#[derive(Debug, Clone, Serialize)]
struct Figures {
    /// From the first player starting to connect to both GGRS sessions running.
    match_start_ms: f64,
    rolled_back_per_100: f64,
    lag_mean: f64,
    lag_p99: f64,
}

async fn squadlink_pair(url: &str, delay: Duration, args: &Args) -> Result<Figures, String> {
    use squadlink::{Channel, ChannelKind, LobbyRef, SessionBuilder};
    let builder = |lobby| {
        SessionBuilder::new(url)
            .bind(([127, 0, 0, 1], 0).into())
            .channel(ChannelKind::Unreliable)
            .join(lobby)
    };
    let t0 = Instant::now();
    let a = builder(LobbyRef::create(2))
        .start_async()
        .await
        .map_err(|e| e.to_string())?;
    let code = a.lobby().map(|l| l.code).ok_or("no lobby")?;
    let b = builder(LobbyRef::Code(code))
        .start_async()
        .await
        .map_err(|e| e.to_string())?;
    let until = Instant::now() + Duration::from_secs(20);
    while a.connected_peers().is_empty() || b.connected_peers().is_empty() {
        if Instant::now() > until {
            return Err("squadlink: the pair did not connect".into());
        }
        a.poll_events().for_each(drop);
        b.poll_events().for_each(drop);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut players = Vec::new();
    for s in [&a, &b] {
        let lobby = s.lobby().ok_or("no lobby")?;
        let me = s.id().ok_or("no id")?;
        let order = RollbackPlayers::from_lobby(&lobby, me, &[]);
        let types: Vec<PlayerType<squadlink::PeerId>> = order
            .players
            .iter()
            .map(|p| {
                if *p == me {
                    PlayerType::Local
                } else {
                    PlayerType::Remote(*p)
                }
            })
            .collect();
        let socket = SquadlinkGgrsSocket::new(s.endpoint(Channel(0)).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let ggrs = build::<OverSquadlink>(
            args.input_delay,
            &types,
            Delayed {
                inner: socket,
                delay,
                queue: VecDeque::new(),
            },
        )?;
        players.push(Player {
            ggrs,
            handle: order.local_handle().ok_or("no handle")?,
            state: 0,
            rolled_back: 0,
            lags: Vec::new(),
            played: 0,
        });
    }
    let figures = play(players, (args.frames, t0), || {
        a.poll_events().for_each(drop);
        b.poll_events().for_each(drop);
    })
    .await;
    a.close();
    b.close();
    figures
}

async fn matchbox_pair(url: &str, delay: Duration, args: &Args) -> Result<Figures, String> {
    let open = || {
        let no_servers = matchbox_socket::RtcIceServerConfig {
            urls: Vec::new(),
            username: None,
            credential: None,
        };
        let (socket, message_loop) = matchbox_socket::WebRtcSocket::builder(url)
            .ice_server(no_servers)
            .add_unreliable_channel()
            .build();
        tokio::spawn(message_loop);
        socket
    };
    let t0 = Instant::now();
    let mut sockets = [open(), open()];
    let until = Instant::now() + Duration::from_secs(20);
    while sockets.iter_mut().any(|s| {
        let _ = s.try_update_peers();
        s.connected_peers().count() < 1
    }) {
        if Instant::now() > until {
            return Err("matchbox: the pair did not connect".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut players = Vec::new();
    for s in &mut sockets {
        let types = s.players();
        let handle = types
            .iter()
            .position(|t| matches!(t, PlayerType::Local))
            .ok_or("no local player")?;
        let channel = s.take_channel(0).map_err(|e| e.to_string())?;
        let ggrs = build::<OverMatchbox>(
            args.input_delay,
            &types,
            Delayed {
                inner: channel,
                delay,
                queue: VecDeque::new(),
            },
        )?;
        players.push(Player {
            ggrs,
            handle,
            state: 0,
            rolled_back: 0,
            lags: Vec::new(),
            played: 0,
        });
    }
    let [mut s0, mut s1] = sockets;
    play(players, (args.frames, t0), || {
        let _ = s0.try_update_peers();
        let _ = s1.try_update_peers();
    })
    .await
}

async fn run(args: Args) -> Result<(), String> {
    let squadlink = squadlink_bench::local_matchmaker().await?;
    let squadlink_url = squadlink.url();
    let mut server = matchbox_signaling::SignalingServer::full_mesh_builder(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .build();
    let addr = server.bind().map_err(|e| e.to_string())?;
    let serving = tokio::spawn(server.serve());
    let mut rows = Vec::new();
    let mut round = 0;
    for &busy in &args.busy {
        let load = Busy::start(busy);
        for &rtt in &args.rtts {
            let delay = Duration::from_millis(rtt) / 2;
            let ours = squadlink_pair(&squadlink_url, delay, &args).await?;
            // A room of its own per round: the last round's sockets may still be saying
            // goodbye.
            round += 1;
            let theirs = matchbox_pair(&format!("ws://{addr}/round{round}"), delay, &args).await?;
            eprintln!(
                "bench_rollback: +{rtt} ms, {busy} busy threads: squadlink start {:.0} ms, {:.1} rolled back/100 frames, lag {:.2} (p99 {}); matchbox start {:.0} ms, {:.1}, lag {:.2} (p99 {})",
                ours.match_start_ms,
                ours.rolled_back_per_100,
                ours.lag_mean,
                ours.lag_p99,
                theirs.match_start_ms,
                theirs.rolled_back_per_100,
                theirs.lag_mean,
                theirs.lag_p99
            );
            rows.push(Row {
                added_rtt_ms: rtt,
                busy_threads: busy,
                squadlink: ours,
                matchbox: theirs,
            });
        }
        drop(load);
    }
    serving.abort();
    println!(
        "{}",
        serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?
    );
    if let Some(path) = &args.write_docs {
        let mut body = format!(
            "Measured by `bench_rollback` (two players per library in one process, {} frames \
             at 60 fps each, input delay {}, prediction window 8, {} build):\n\n\
             | added round trip | busy threads | match start, ms: Squadlink | matchbox | rolled back / 100 frames: Squadlink | matchbox | confirmed-frame lag, mean (p99): Squadlink | matchbox |\n\
             |---|---|---|---|---|---|---|---|\n",
            args.frames,
            args.input_delay,
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
        );
        for r in &rows {
            body.push_str(&format!(
                "| {} ms | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.2} ({:.0}) | {:.2} ({:.0}) |\n",
                r.added_rtt_ms,
                r.busy_threads,
                r.squadlink.match_start_ms,
                r.matchbox.match_start_ms,
                r.squadlink.rolled_back_per_100,
                r.matchbox.rolled_back_per_100,
                r.squadlink.lag_mean,
                r.squadlink.lag_p99,
                r.matchbox.lag_mean,
                r.matchbox.lag_p99,
            ));
        }
        body.push('\n');
        update_docs_section(path, "rollback", &body).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Threads that keep the cores busy until dropped (each spins at normal priority, as a
/// game's render and simulation threads compete with its networking).
struct Busy {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Busy {
    fn start(n: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for i in 0..100_000u64 {
                            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                        }
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn main() -> std::process::ExitCode {
    squadlink_bench::run_main(run(Args::parse()))
}
