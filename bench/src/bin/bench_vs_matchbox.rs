//! Squadlink and matchbox side by side, one harness, each player its own process: connect
//! (2 peers, and an 8-peer mesh), 64-byte unreliable round trip, reliable 1 KiB throughput
//! with the receiver acknowledging, and RSS and CPU of an idle 8-peer mesh, with the raw
//! UDP round trip of the same run as the floor. matchbox (`matchbox_socket` and its
//! signaling server 0.15, the Bevy community's WebRTC library) runs on webrtc-rs's async
//! `webrtc` 0.21, over the same `rtc` core as Squadlink.
//!
//! The coordinator (this binary without `player`) runs both signaling servers in its own
//! process (Squadlink's matchmaker, matchbox's full-mesh server) and starts each player as
//! `bench_vs_matchbox player …`, which prints one JSON object per line. Connect time is
//! from the last player's start (it prints the wall clock just before it makes its socket)
//! to the moment the last player is connected to every other one.
//!
//! Needs the `matchbox` feature (its crates are built only for this):
//! `cargo run --release -p squadlink-bench --features matchbox --bin bench_vs_matchbox`
//! (`scripts/bench.sh matchbox`; `--write-docs docs/performance.md` records the table).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use serde_json::json;
use squadlink_bench::{Percentiles, median, update_docs_section};

/// Squadlink against matchbox, players in processes of their own.
#[derive(Parser, Debug)]
struct Args {
    #[command(subcommand)]
    player: Option<PlayerCommand>,
    /// Rounds of connecting 2 peers (per library).
    #[arg(long, default_value_t = 7)]
    pair_rounds: usize,
    /// Rounds of connecting an 8-peer mesh (per library).
    #[arg(long, default_value_t = 5)]
    mesh_rounds: usize,
    /// Sequential 64-byte round trips (0: skip).
    #[arg(long, default_value_t = 2000)]
    pings: usize,
    /// Seconds of reliable throughput (0: skip).
    #[arg(long, default_value_t = 3.0)]
    throughput_seconds: f64,
    /// Seconds the idle mesh is measured (0: skip).
    #[arg(long, default_value_t = 5.0)]
    idle_seconds: f64,
    /// Measure only this library (no table): for looking into one figure.
    #[arg(long, value_enum)]
    only: Option<Lib>,
    /// Write the table into this Markdown file (between bench:vs-matchbox markers).
    #[arg(long)]
    write_docs: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum PlayerCommand {
    /// One player (started by the coordinator).
    Player(PlayerArgs),
}

#[derive(Parser, Debug, Clone)]
struct PlayerArgs {
    #[arg(long, value_enum)]
    lib: Lib,
    /// Squadlink: the matchmaker URL; matchbox: the room URL.
    #[arg(long)]
    url: String,
    /// Squadlink: the lobby code to join (none: create one for `peers`).
    #[arg(long)]
    code: Option<String>,
    /// Players in the room, this one included.
    #[arg(long)]
    peers: usize,
    #[arg(long, value_enum)]
    task: Task,
    /// Seconds the task runs (throughput, idle), or round trips (ping).
    #[arg(long, default_value_t = 0.0)]
    amount: f64,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Lib {
    Squadlink,
    Matchbox,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Task {
    /// Connect, report, then answer (echo pings, acknowledge messages) until told to stop.
    Serve,
    /// Connect and report, then leave.
    Connect,
    /// Sequential unreliable round trips with the one other player.
    Ping,
    /// Reliable 1 KiB messages to the one other player, as fast as it acknowledges.
    Send,
    /// Connect, then stay idle and report CPU and RSS.
    Idle,
}

/// Unreliable channel 0, reliable channel 1 (both libraries).
const UNRELIABLE: usize = 0;
const RELIABLE: usize = 1;
/// Messages in flight the sender allows before an acknowledgement (256 KiB).
const WINDOW: u64 = 256;
/// The receiver acknowledges every this many messages.
const ACK_EVERY: u64 = 32;
const MESSAGE: usize = 1024;
/// A message on the reliable channel that ends a serving player.
const STOP: &[u8] = b"stop";

/// What a player prints.
#[derive(Serialize, Deserialize, Debug, Default)]
struct Report {
    /// Wall clock (µs since the Unix epoch) just before the socket was made.
    started_us: Option<u64>,
    /// Wall clock when connected to every other player.
    connected_us: Option<u64>,
    /// CPU time of the process (all threads) at `started_us` and at `connected_us`, ns.
    started_cpu_ns: Option<u64>,
    connected_cpu_ns: Option<u64>,
    code: Option<String>,
    rtt_ns: Option<Vec<u64>>,
    mib_per_s: Option<f64>,
    cpu_percent: Option<f64>,
    rss_kib: Option<u64>,
    rss_anon_kib: Option<u64>,
    error: Option<String>,
}

fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn say(report: &Report) {
    use std::io::Write;
    if let Ok(line) = serde_json::to_string(report) {
        // The coordinator may have stopped reading (it failed): nothing to do then.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// CPU time of this process's threads so far, in nanoseconds: the first field of each
/// thread's `/proc/self/task/*/schedstat` (clock ticks of `/proc/self/stat` are 10 ms,
/// too coarse for an idle process).
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn rss_kib() -> u64 {
    squadlink_bench::rss_bytes() / 1024
}

// ----- the players -----------------------------------------------------------------------

/// What both libraries offer the tasks.
trait Net {
    fn connected(&mut self) -> usize;
    /// Waits until connected to `others` players. By default it asks every 0.5 ms (what
    /// matchbox's socket allows: its peer changes come from `update_peers`, with nothing to
    /// await); a library with an event to await overrides it, so that its players do not
    /// spend the connect polling (8 players asking 1,000 times a second compete for the
    /// same 2 cores as the handshakes they wait for).
    async fn wait_connected(&mut self, others: usize, deadline: Instant) -> Result<(), String> {
        while self.connected() < others {
            if Instant::now() > deadline {
                return Err(format!(
                    "not connected to every player within {CONNECT_WITHIN:?}"
                ));
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        Ok(())
    }
    fn first_peer(&mut self) -> Option<Peer>;
    fn send(&mut self, peer: &Peer, channel: usize, data: &[u8]) -> Result<(), String>;
    async fn recv(&mut self, channel: usize) -> Option<(Peer, Vec<u8>)>;
    /// The next message on either channel, with its channel.
    async fn recv_any(&mut self) -> Option<(usize, Peer, Vec<u8>)>;
    fn try_recv(&mut self, channel: usize) -> Option<(Peer, Vec<u8>)>;
}

#[derive(Clone, Debug)]
enum Peer {
    Squadlink(squadlink::PeerId),
    Matchbox(matchbox_socket::PeerId),
}

struct SquadlinkNet {
    session: squadlink::Session,
}

impl Net for SquadlinkNet {
    fn connected(&mut self) -> usize {
        for _ in self.session.poll_events() {}
        self.session.connected_peers().len()
    }
    async fn wait_connected(&mut self, others: usize, deadline: Instant) -> Result<(), String> {
        while self.session.connected_peers().len() < others {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.session.next_event()).await {
                Ok(Some(_)) => {}
                Ok(None) => return Err("the session ended while connecting".into()),
                Err(_) => {
                    return Err(format!(
                        "not connected to every player within {CONNECT_WITHIN:?}"
                    ));
                }
            }
        }
        Ok(())
    }
    fn first_peer(&mut self) -> Option<Peer> {
        self.session
            .connected_peers()
            .first()
            .map(|p| Peer::Squadlink(*p))
    }
    fn send(&mut self, peer: &Peer, channel: usize, data: &[u8]) -> Result<(), String> {
        let Peer::Squadlink(p) = peer else {
            return Err("not a Squadlink peer".into());
        };
        self.session
            .send(*p, squadlink::Channel(channel), data)
            .map_err(|e| e.to_string())
    }
    async fn recv(&mut self, channel: usize) -> Option<(Peer, Vec<u8>)> {
        let (p, b) = self.session.recv(squadlink::Channel(channel)).await?;
        Some((Peer::Squadlink(p), b.to_vec()))
    }
    async fn recv_any(&mut self) -> Option<(usize, Peer, Vec<u8>)> {
        let s = &self.session;
        let (channel, (p, b)) = tokio::select! {
            m = s.recv(squadlink::Channel(UNRELIABLE)) => (UNRELIABLE, m?),
            m = s.recv(squadlink::Channel(RELIABLE)) => (RELIABLE, m?),
        };
        Some((channel, Peer::Squadlink(p), b.to_vec()))
    }
    fn try_recv(&mut self, channel: usize) -> Option<(Peer, Vec<u8>)> {
        let (p, b) = self.session.receive(squadlink::Channel(channel)).next()?;
        Some((Peer::Squadlink(p), b.to_vec()))
    }
}

struct MatchboxNet {
    socket: matchbox_socket::WebRtcSocket,
    senders: Vec<futures_channel::mpsc::UnboundedSender<(matchbox_socket::PeerId, bytes::Bytes)>>,
    receivers:
        Vec<futures_channel::mpsc::UnboundedReceiver<(matchbox_socket::PeerId, bytes::Bytes)>>,
}

impl Net for MatchboxNet {
    fn connected(&mut self) -> usize {
        let _ = self.socket.try_update_peers();
        self.socket.connected_peers().count()
    }
    fn first_peer(&mut self) -> Option<Peer> {
        self.socket.connected_peers().next().map(Peer::Matchbox)
    }
    fn send(&mut self, peer: &Peer, channel: usize, data: &[u8]) -> Result<(), String> {
        let Peer::Matchbox(p) = peer else {
            return Err("not a matchbox peer".into());
        };
        let tx = self.senders.get(channel).ok_or("no such channel")?;
        tx.unbounded_send((*p, bytes::Bytes::copy_from_slice(data)))
            .map_err(|e| e.to_string())
    }
    async fn recv(&mut self, channel: usize) -> Option<(Peer, Vec<u8>)> {
        use futures_util::StreamExt;
        let rx = self.receivers.get_mut(channel)?;
        let (p, b) = rx.next().await?;
        Some((Peer::Matchbox(p), b.to_vec()))
    }
    async fn recv_any(&mut self) -> Option<(usize, Peer, Vec<u8>)> {
        use futures_util::StreamExt;
        let (first, rest) = self.receivers.split_at_mut(1);
        let (unreliable, reliable) = (first.first_mut()?, rest.first_mut()?);
        let (channel, (p, b)) = tokio::select! {
            m = unreliable.next() => (UNRELIABLE, m?),
            m = reliable.next() => (RELIABLE, m?),
        };
        Some((channel, Peer::Matchbox(p), b.to_vec()))
    }
    fn try_recv(&mut self, channel: usize) -> Option<(Peer, Vec<u8>)> {
        let rx = self.receivers.get_mut(channel)?;
        let (p, b) = rx.try_recv().ok()?;
        Some((Peer::Matchbox(p), b.to_vec()))
    }
}

async fn open_squadlink(args: &PlayerArgs, report: &mut Report) -> Result<SquadlinkNet, String> {
    use squadlink::{ChannelKind, LobbyRef, SessionBuilder};
    let lobby = match &args.code {
        Some(code) => LobbyRef::Code(code.clone()),
        None => LobbyRef::create(u8::try_from(args.peers).map_err(|_| "at most 255 players")?),
    };
    report.started_us = Some(wall_us());
    report.started_cpu_ns = Some(cpu_ns());
    let session = SessionBuilder::new(&args.url)
        .bind(([127, 0, 0, 1], 0).into())
        .channel(ChannelKind::Unreliable)
        .channel(ChannelKind::ReliableOrdered)
        .join(lobby)
        .start_async()
        .await
        .map_err(|e| e.to_string())?;
    if args.code.is_none() {
        let code = session.lobby().map(|l| l.code).ok_or("no lobby code")?;
        say(&Report {
            code: Some(code),
            ..Report::default()
        });
    }
    Ok(SquadlinkNet { session })
}

fn open_matchbox(args: &PlayerArgs, report: &mut Report) -> MatchboxNet {
    report.started_us = Some(wall_us());
    report.started_cpu_ns = Some(cpu_ns());
    // No ICE server: matchbox's default is Google's STUN servers, and a benchmark on
    // loopback reaches no other address (Squadlink's matchmaker here hands out none either).
    let no_servers = matchbox_socket::RtcIceServerConfig {
        urls: Vec::new(),
        username: None,
        credential: None,
    };
    let (mut socket, message_loop) = matchbox_socket::WebRtcSocket::builder(&args.url)
        .ice_server(no_servers)
        .add_unreliable_channel()
        .add_reliable_channel()
        .build();
    tokio::spawn(message_loop);
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for i in [UNRELIABLE, RELIABLE] {
        if let Ok(channel) = socket.take_channel(i) {
            let (tx, rx) = channel.split();
            senders.push(tx);
            receivers.push(rx);
        }
    }
    MatchboxNet {
        socket,
        senders,
        receivers,
    }
}

/// How long a player waits to be connected to every other one.
const CONNECT_WITHIN: Duration = Duration::from_secs(30);

async fn play(net: &mut impl Net, args: &PlayerArgs, report: &mut Report) -> Result<(), String> {
    net.wait_connected(
        args.peers.saturating_sub(1),
        Instant::now() + CONNECT_WITHIN,
    )
    .await?;
    report.connected_us = Some(wall_us());
    report.connected_cpu_ns = Some(cpu_ns());
    match args.task {
        // Stay a moment, so that the others see this one connected before it leaves.
        Task::Connect => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(())
        }
        Task::Idle => {
            let (cpu, start) = (cpu_ns(), Instant::now());
            tokio::time::sleep(Duration::from_secs_f64(args.amount)).await;
            let wall = start.elapsed().as_nanos() as f64;
            report.cpu_percent = Some(cpu_ns().saturating_sub(cpu) as f64 / wall * 100.0);
            report.rss_kib = Some(rss_kib());
            report.rss_anon_kib = Some(squadlink_bench::rss_anon_bytes() / 1024);
            Ok(())
        }
        Task::Ping => {
            let peer = net.first_peer().ok_or("no peer")?;
            let mut rtts = Vec::with_capacity(args.amount as usize);
            let mut buf = [0u8; 64];
            for i in 0..args.amount as u64 {
                if let Some(head) = buf.get_mut(..8) {
                    head.copy_from_slice(&i.to_be_bytes());
                }
                let sent = Instant::now();
                net.send(&peer, UNRELIABLE, &buf)?;
                let echo = tokio::time::timeout(Duration::from_millis(500), async {
                    loop {
                        match net.recv(UNRELIABLE).await {
                            Some((_, b)) if b.get(..8) == buf.get(..8) => return true,
                            Some(_) => {}
                            None => return false,
                        }
                    }
                })
                .await;
                if matches!(echo, Ok(true)) {
                    rtts.push(sent.elapsed().as_nanos() as u64);
                }
            }
            net.send(&peer, RELIABLE, STOP)?;
            report.rtt_ns = Some(rtts);
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(())
        }
        Task::Send => {
            let peer = net.first_peer().ok_or("no peer")?;
            let data = vec![7u8; MESSAGE];
            let (mut sent, mut acked) = (0u64, 0u64);
            let until = Instant::now() + Duration::from_secs_f64(args.amount);
            let start = Instant::now();
            while Instant::now() < until {
                while sent - acked < WINDOW && net.send(&peer, RELIABLE, &data).is_ok() {
                    sent += 1;
                }
                if let Ok(Some((_, b))) =
                    tokio::time::timeout(Duration::from_millis(100), net.recv(RELIABLE)).await
                    && let Ok(head) = <[u8; 8]>::try_from(b.get(..8).unwrap_or(&[]))
                {
                    acked = acked.max(u64::from_be_bytes(head));
                }
                while let Some((_, b)) = net.try_recv(RELIABLE) {
                    if let Ok(head) = <[u8; 8]>::try_from(b.get(..8).unwrap_or(&[])) {
                        acked = acked.max(u64::from_be_bytes(head));
                    }
                }
            }
            let secs = start.elapsed().as_secs_f64();
            report.mib_per_s = Some(acked as f64 * MESSAGE as f64 / secs / (1024.0 * 1024.0));
            net.send(&peer, RELIABLE, STOP)?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(())
        }
        Task::Serve => {
            let mut received = 0u64;
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                if Instant::now() > deadline {
                    return Err("never told to stop".into());
                }
                let Ok(message) =
                    tokio::time::timeout(Duration::from_secs(1), net.recv_any()).await
                else {
                    continue;
                };
                match message {
                    Some((UNRELIABLE, from, ping)) => net.send(&from, UNRELIABLE, &ping)?,
                    Some((_, _, b)) if b == STOP => return Ok(()),
                    Some((_, from, _)) => {
                        received += 1;
                        if received.is_multiple_of(ACK_EVERY) {
                            net.send(&from, RELIABLE, &received.to_be_bytes())?;
                        }
                    }
                    None => return Ok(()),
                }
            }
        }
    }
}

fn player(args: &PlayerArgs) -> std::process::ExitCode {
    squadlink_bench::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut report = Report::default();
    let outcome = runtime.block_on(async {
        match args.lib {
            Lib::Squadlink => {
                let mut net = open_squadlink(args, &mut report).await?;
                play(&mut net, args, &mut report).await
            }
            Lib::Matchbox => {
                let mut net = open_matchbox(args, &mut report);
                play(&mut net, args, &mut report).await
            }
        }
    });
    if let Err(e) = outcome {
        report.error = Some(e);
    }
    say(&report);
    runtime.shutdown_timeout(Duration::from_secs(1));
    std::process::ExitCode::SUCCESS
}

// ----- the coordinator -------------------------------------------------------------------

/// Servers for both libraries, on free loopback ports, on the coordinator's runtime.
struct Servers {
    squadlink: squadlink_matchmaker::Server,
    matchbox: std::net::SocketAddr,
    /// Rooms handed out so far (a fresh matchbox room per round).
    rooms: usize,
}

impl Servers {
    fn url(&mut self, lib: Lib) -> String {
        match lib {
            Lib::Squadlink => self.squadlink.url(),
            Lib::Matchbox => {
                self.rooms += 1;
                format!("ws://{}/bench{}", self.matchbox, self.rooms)
            }
        }
    }
}

struct Running {
    child: Child,
    lines: std::io::Lines<BufReader<ChildStdout>>,
}

fn spawn(args: &[String]) -> Result<Running, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .arg("player")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting a player: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    Ok(Running {
        child,
        lines: BufReader::new(stdout).lines(),
    })
}

impl Running {
    fn next_report(&mut self) -> Result<Report, String> {
        let line = self
            .lines
            .next()
            .ok_or("a player ended without a report")?
            .map_err(|e| e.to_string())?;
        serde_json::from_str(&line).map_err(|e| format!("{e}: {line}"))
    }

    fn finish(mut self) -> Result<Report, String> {
        let report = self.next_report()?;
        let _ = self.child.wait();
        match &report.error {
            Some(e) => Err(format!("player: {e}")),
            None => Ok(report),
        }
    }
}

/// Starts `peers` players of `lib`, the first with `first_task` and the rest with `task`;
/// their final reports, in order.
fn round(
    servers: &mut Servers,
    lib: Lib,
    peers: usize,
    (first_task, task): (&str, &str),
    amount: f64,
) -> Result<Vec<Report>, String> {
    let url = servers.url(lib);
    eprintln!("{lib:?}: {peers} players, {first_task}/{task}");
    let lib_name = match lib {
        Lib::Squadlink => "squadlink",
        Lib::Matchbox => "matchbox",
    };
    let base = |task: &str| {
        vec![
            "--lib".to_string(),
            lib_name.into(),
            "--url".into(),
            url.clone(),
            "--peers".into(),
            peers.to_string(),
            "--task".into(),
            task.into(),
            "--amount".into(),
            amount.to_string(),
        ]
    };
    let mut first = spawn(&base(first_task))?;
    let mut code = None;
    if lib == Lib::Squadlink {
        code = first.next_report()?.code;
    }
    let mut running = vec![first];
    for _ in 1..peers {
        let mut args = base(task);
        if let Some(code) = &code {
            args.extend(["--code".to_string(), code.clone()]);
        }
        running.push(spawn(&args)?);
    }
    running.into_iter().map(Running::finish).collect()
}

/// CPU time all players spent from their start to being connected, in ms.
fn connect_cpu_ms(reports: &[Report]) -> f64 {
    reports
        .iter()
        .filter_map(|r| Some(r.connected_cpu_ns?.saturating_sub(r.started_cpu_ns?)))
        .sum::<u64>() as f64
        / 1e6
}

/// From the last player's start to the last one connected, in ms.
fn connect_ms(reports: &[Report]) -> Option<f64> {
    let last_start = reports.iter().filter_map(|r| r.started_us).max()?;
    let last_connected = reports.iter().filter_map(|r| r.connected_us).max()?;
    Some(last_connected.saturating_sub(last_start) as f64 / 1000.0)
}

#[derive(Serialize, Debug, Default)]
struct Side {
    connect_2_ms: Vec<f64>,
    connect_8_ms: Vec<f64>,
    /// CPU time all 8 players spent connecting, per mesh round (ms).
    connect_8_cpu_ms: Vec<f64>,
    rtt_us: Percentiles,
    reliable_mib_per_s: f64,
    idle_cpu_percent_per_player: f64,
    idle_rss_kib_per_player: f64,
    /// The anonymous part of it (heap and stacks; the rest is the executable's pages).
    idle_anon_kib_per_player: f64,
    /// Rounds in which some player did not connect within 30 s (left out of the figures).
    failed_rounds: usize,
}

fn measure(servers: &mut Servers, lib: Lib, args: &Args) -> Result<Side, String> {
    let mut side = Side::default();
    let mut failed = 0;
    let mut tally = |outcome: Result<Vec<Report>, String>, into: &mut Vec<f64>| match outcome {
        Ok(r) => {
            into.extend(connect_ms(&r));
            Some(connect_cpu_ms(&r))
        }
        Err(e) => {
            eprintln!("{lib:?}: a round failed: {e}");
            failed += 1;
            None
        }
    };
    for _ in 0..args.pair_rounds {
        tally(
            round(servers, lib, 2, ("connect", "connect"), 0.0),
            &mut side.connect_2_ms,
        );
    }
    for _ in 0..args.mesh_rounds {
        let cpu = tally(
            round(servers, lib, 8, ("connect", "connect"), 0.0),
            &mut side.connect_8_ms,
        );
        side.connect_8_cpu_ms.extend(cpu);
    }
    side.failed_rounds = failed;
    if args.pings > 0 {
        let r = retried(
            servers,
            lib,
            ("ping", "serve"),
            args.pings as f64,
            &mut side,
        )?;
        let rtts = r.first().and_then(|r| r.rtt_ns.clone()).unwrap_or_default();
        side.rtt_us = Percentiles::of_nanos(&rtts);
    }
    if args.throughput_seconds > 0.0 {
        let r = retried(
            servers,
            lib,
            ("send", "serve"),
            args.throughput_seconds,
            &mut side,
        )?;
        side.reliable_mib_per_s = r.first().and_then(|r| r.mib_per_s).unwrap_or(0.0);
    }
    if args.idle_seconds <= 0.0 {
        return Ok(side);
    }
    let r = match round(servers, lib, 8, ("idle", "idle"), args.idle_seconds) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{lib:?}: the idle mesh failed: {e}");
            side.failed_rounds += 1;
            return Ok(side);
        }
    };
    let cpu: Vec<f64> = r.iter().filter_map(|r| r.cpu_percent).collect();
    let rss: Vec<f64> = r
        .iter()
        .filter_map(|r| r.rss_kib)
        .map(|k| k as f64)
        .collect();
    side.idle_cpu_percent_per_player = median(&cpu).unwrap_or(f64::NAN);
    side.idle_rss_kib_per_player = median(&rss).unwrap_or(f64::NAN);
    let anon: Vec<f64> = r
        .iter()
        .filter_map(|r| r.rss_anon_kib)
        .map(|k| k as f64)
        .collect();
    side.idle_anon_kib_per_player = median(&anon).unwrap_or(f64::NAN);
    eprintln!("{lib:?}: {side:?}");
    Ok(side)
}

/// A two-player task round, tried up to three times: a pair that does not connect within
/// 30 s (matchbox's did, now and then) is counted as a failed round and started again
/// rather than ending the whole run.
fn retried(
    servers: &mut Servers,
    lib: Lib,
    tasks: (&str, &str),
    amount: f64,
    side: &mut Side,
) -> Result<Vec<Report>, String> {
    let mut last = String::new();
    for _ in 0..3 {
        match round(servers, lib, 2, tasks, amount) {
            Ok(r) => return Ok(r),
            Err(e) => {
                eprintln!("{lib:?}: the {} round failed: {e}", tasks.0);
                side.failed_rounds += 1;
                last = e;
            }
        }
    }
    Err(format!(
        "{lib:?}: the {} round failed three times: {last}",
        tasks.0
    ))
}

async fn start_servers() -> Result<Servers, String> {
    let squadlink = squadlink_bench::local_matchmaker().await?;
    let mut server = matchbox_signaling::SignalingServer::full_mesh_builder(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .build();
    let matchbox = server.bind().map_err(|e| e.to_string())?;
    tokio::spawn(server.serve());
    Ok(Servers {
        squadlink,
        matchbox,
        rooms: 0,
    })
}

fn p(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    squadlink_bench::percentile(&s, q).unwrap_or(f64::NAN)
}

fn coordinator(args: &Args) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut servers = runtime.block_on(start_servers())?;
    let udp = runtime.block_on(squadlink_bench::udp_baseline())?;
    let handoff = runtime
        .block_on(squadlink_bench::udp_handoff_rtt(2_000))
        .map_err(|e| format!("UDP with hand-offs: {e}"))?;
    eprintln!(
        "UDP through a network thread at each end, RTT p50 {:.1} µs",
        handoff.p50_us
    );
    // The coordinator's runtime serves the signaling while the players run.
    let _guard = runtime.enter();
    if let Some(lib) = args.only {
        let side = measure(&mut servers, lib, args)?;
        println!(
            "{}",
            json!({ "udp_rtt_us": udp, "udp_handoff_rtt_us": handoff, "side": side })
        );
        return Ok(());
    }
    let ours = measure(&mut servers, Lib::Squadlink, args)?;
    let theirs = measure(&mut servers, Lib::Matchbox, args)?;
    let row = |name: &str, a: f64, b: f64, unit: &str, better_low: bool| {
        let ratio = if better_low { b / a } else { a / b };
        format!("| {name} | {a:.1} {unit} | {b:.1} {unit} | {ratio:.2}× |\n")
    };
    let mut table = String::from(
        "| measure | Squadlink | matchbox | Squadlink's advantage |\n|---|---|---|---|\n",
    );
    table += &row(
        "connect 2 peers, p50",
        p(&ours.connect_2_ms, 0.5),
        p(&theirs.connect_2_ms, 0.5),
        "ms",
        true,
    );
    table += &row(
        "connect 2 peers, worst",
        p(&ours.connect_2_ms, 1.0),
        p(&theirs.connect_2_ms, 1.0),
        "ms",
        true,
    );
    table += &row(
        "connect 8-peer mesh, p50",
        p(&ours.connect_8_ms, 0.5),
        p(&theirs.connect_8_ms, 0.5),
        "ms",
        true,
    );
    table += &row(
        "connect 8-peer mesh, worst",
        p(&ours.connect_8_ms, 1.0),
        p(&theirs.connect_8_ms, 1.0),
        "ms",
        true,
    );
    table += &row(
        "connect 8-peer mesh, CPU of all 8 players, p50",
        p(&ours.connect_8_cpu_ms, 0.5),
        p(&theirs.connect_8_cpu_ms, 0.5),
        "ms",
        true,
    );
    table += &row(
        "64 B unreliable round trip, p50",
        ours.rtt_us.p50_us,
        theirs.rtt_us.p50_us,
        "µs",
        true,
    );
    table += &row(
        "64 B unreliable round trip, p99",
        ours.rtt_us.p99_us,
        theirs.rtt_us.p99_us,
        "µs",
        true,
    );
    table += &row(
        "reliable 1 KiB, acknowledged",
        ours.reliable_mib_per_s,
        theirs.reliable_mib_per_s,
        "MiB/s",
        false,
    );
    table += &row(
        "idle 8-peer mesh, CPU per player",
        ours.idle_cpu_percent_per_player,
        theirs.idle_cpu_percent_per_player,
        "% of a core",
        true,
    );
    table += &format!(
        "| rounds with a player not connected within 30 s (left out) | {} | {} | |\n",
        ours.failed_rounds, theirs.failed_rounds
    );
    table += &row(
        "idle 8-peer mesh, RSS per player",
        ours.idle_rss_kib_per_player / 1024.0,
        theirs.idle_rss_kib_per_player / 1024.0,
        "MiB",
        true,
    );
    table += &row(
        "idle 8-peer mesh, of it heap and stacks (RssAnon)",
        ours.idle_anon_kib_per_player / 1024.0,
        theirs.idle_anon_kib_per_player / 1024.0,
        "MiB",
        true,
    );
    let body = format!(
        "`bench_vs_matchbox`, each player its own process, signaling servers in the \
         coordinator; raw UDP round trip in the same run: p50 {:.1} µs, and {:.1} µs \
         through a network thread at each end (four thread hand-offs, no WebRTC: the \
         floor of a library with a network thread). Connect: {} pair rounds and {} mesh \
         rounds per library, from the last player's start to the last one connected; the \
         CPU row sums what the 8 players' processes spent from their start to connected \
         (2 cores here). Both libraries' players are the same executable, so most of their \
         RSS is its pages they touched; the heap-and-stacks row is the memory each \
         library allocated. Advantage above 1 means Squadlink is better.\n\n{table}",
        udp.p50_us, handoff.p50_us, args.pair_rounds, args.mesh_rounds
    );
    eprint!("{body}");
    if let Some(path) = &args.write_docs {
        update_docs_section(path, "vs-matchbox", &body).map_err(|e| e.to_string())?;
    }
    println!(
        "{}",
        json!({ "udp_rtt_us": udp, "udp_handoff_rtt_us": handoff, "squadlink": ours, "matchbox": theirs })
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(PlayerCommand::Player(player_args)) = &args.player {
        return player(player_args);
    }
    match coordinator(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
