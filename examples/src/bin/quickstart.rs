//! Quickstart: the whole Squadlink flow in one program. It starts a matchmaker (or uses
//! `--matchmaker URL`), spawns `--peers N` players that meet in one lobby and connect to
//! each other over WebRTC, and has each send 60 Hz state on a sequenced channel and events
//! on a reliable channel for `--duration S` seconds. Then it prints a summary per peer:
//! path, round-trip time, loss, messages per second.
//!
//! Run: `cargo run --release -p squadlink-examples --bin quickstart`
//!      (add `-- --json` for one JSON object on stdout, `-- --help` for options;
//!      `-- --relay-only --turn-url turn:HOST:PORT --turn-secret S` goes through coturn)

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use squadlink::{Channel, ChannelKind, Event, IcePolicy, LobbyRef, PathKind, PeerId, Session};

/// Squadlink quickstart: N players in one lobby, 60 Hz state and reliable events.
#[derive(Parser, Debug, Clone)]
struct Args {
    /// Players to spawn (each is a full session with its own UDP socket).
    #[arg(long, default_value_t = 4)]
    peers: usize,
    /// Seconds of play after everyone is connected.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Use this matchmaker instead of starting one (e.g. ws://127.0.0.1:7878/v1).
    #[arg(long)]
    matchmaker: Option<String>,
    /// Print exactly one JSON object on stdout (the human summary goes to stderr).
    #[arg(long)]
    json: bool,
    /// Connect only through a TURN relay (hides players' addresses from each other).
    #[arg(long)]
    relay_only: bool,
    /// TURN server for the embedded matchmaker to hand out, e.g. turn:127.0.0.1:3478.
    #[arg(long, requires = "turn_secret")]
    turn_url: Option<String>,
    /// The TURN server's static-auth-secret (coturn use-auth-secret).
    #[arg(long, requires = "turn_url")]
    turn_secret: Option<String>,
}

const STATE: Channel = Channel(0);
const EVENTS: Channel = Channel(1);
const TICK: Duration = Duration::from_micros(16_667);

#[derive(Default)]
struct Report {
    me: Option<PeerId>,
    connected: usize,
    connect_ms: Vec<f64>,
    paths: Vec<PathKind>,
    rtt_ns: Vec<u64>,
    loss: Vec<f64>,
    state_sent: u64,
    state_received: u64,
    events_sent: u64,
    events_received: u64,
    /// Peers lost while playing (none is expected).
    disconnections: u64,
    /// Times this player's matchmaker link came back (a node draining or dying in a
    /// cluster moves players; their peers stay up).
    matchmaker_returns: u64,
    errors: Vec<String>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    squadlink_examples::init_logging();
    if args.peers < 2 || args.peers > 16 {
        eprintln!("error: --peers must be between 2 and 16");
        return std::process::ExitCode::FAILURE;
    }
    match run(&args) {
        Ok(all_connected) if all_connected => std::process::ExitCode::SUCCESS,
        Ok(_) => std::process::ExitCode::from(2),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<bool, String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("tokio: {e}"))?;
    // An embedded matchmaker: the same library code as the squadlink-matchmaker binary.
    let server = match &args.matchmaker {
        Some(_) => None,
        None => Some(
            runtime
                .block_on(squadlink_matchmaker::Server::bind(
                    squadlink_matchmaker::Config {
                        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                        // A handful of local players: no need for a service's 20,000
                        // connections (nor for the file limit they would take).
                        max_connections: 256,
                        turn_urls: args.turn_url.iter().cloned().collect(),
                        turn_secrets: args.turn_secret.iter().cloned().collect(),
                        ..squadlink_matchmaker::Config::default()
                    },
                ))
                .map_err(|e| e.to_string())?,
        ),
    };
    let url = match (&args.matchmaker, &server) {
        (Some(u), _) => u.clone(),
        (None, Some(s)) => s.url(),
        (None, None) => return Err("no matchmaker".into()),
    };
    eprintln!("matchmaker: {url}");
    if args.relay_only && args.turn_url.is_none() && args.matchmaker.is_none() {
        return Err("--relay-only needs --turn-url and --turn-secret (or a --matchmaker that hands out TURN servers)".into());
    }
    let policy = if args.relay_only {
        IcePolicy::RelayOnly
    } else {
        IcePolicy::All
    };

    let builder = |lobby: LobbyRef| {
        Session::builder(url.clone())
            .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .channel(ChannelKind::UnreliableSequenced)
            .channel(ChannelKind::ReliableOrdered)
            .ice_policy(policy)
            .join(lobby)
    };
    let max = u8::try_from(args.peers).map_err(|_| "too many peers")?;
    let host = builder(LobbyRef::create(max))
        .start()
        .map_err(|e| e.to_string())?;
    let code = host.lobby().map(|l| l.code).ok_or("no lobby code")?;
    eprintln!("lobby {code}: {} players joining", args.peers);
    let mut sessions = vec![host];
    for _ in 1..args.peers {
        sessions.push(
            builder(LobbyRef::Code(code.clone()))
                .start()
                .map_err(|e| e.to_string())?,
        );
    }

    let barrier = Arc::new(Barrier::new(args.peers));
    let handles: Vec<_> = sessions
        .into_iter()
        .map(|s| {
            let barrier = Arc::clone(&barrier);
            let (n, duration) = (args.peers, args.duration);
            std::thread::spawn(move || play(&s, n, duration, &barrier))
        })
        .collect();
    let reports: Vec<Report> = handles.into_iter().filter_map(|h| h.join().ok()).collect();
    drop(server);
    Ok(summarize(args, &reports))
}

/// One player's game loop: wait until connected to everyone, then play for `duration`.
fn play(s: &Session, n: usize, duration: f64, barrier: &Barrier) -> Report {
    let mut r = Report {
        me: s.id(),
        ..Report::default()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while r.connected < n - 1 && Instant::now() < deadline {
        for e in s.poll_events() {
            match e {
                Event::PeerConnected {
                    path, connect_time, ..
                } => {
                    r.connected += 1;
                    r.connect_ms.push(connect_time.as_secs_f64() * 1e3);
                    r.paths.push(path);
                }
                Event::Error(e) => r.errors.push(e.to_string()),
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    barrier.wait();
    let end = Instant::now() + Duration::from_secs_f64(duration);
    let mut next = Instant::now();
    let mut tick: u32 = 0;
    while Instant::now() < end {
        for e in s.poll_events() {
            match e {
                Event::Error(e) => r.errors.push(e.to_string()),
                Event::PeerDisconnected { peer, reason } => {
                    r.disconnections += 1;
                    r.errors.push(format!("lost {peer}: {reason:?}"));
                }
                Event::MatchmakerRestored { .. } => r.matchmaker_returns += 1,
                _ => {}
            }
        }
        let mut state = [0u8; 32];
        state[..4].copy_from_slice(&tick.to_be_bytes());
        if s.broadcast(STATE, &state).is_ok() {
            r.state_sent += 1;
        }
        if tick.is_multiple_of(30)
            && s.broadcast(EVENTS, format!("event {tick}").as_bytes())
                .is_ok()
        {
            r.events_sent += 1;
        }
        r.state_received += s.receive(STATE).count() as u64;
        r.events_received += s.receive(EVENTS).count() as u64;
        if tick.is_multiple_of(15) {
            for p in s.connected_peers() {
                if let Some(rtt) = s.stats(p).and_then(|st| st.rtt_last) {
                    r.rtt_ns
                        .push(u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX));
                }
            }
        }
        tick = tick.wrapping_add(1);
        next += TICK;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    // Let the last messages land.
    std::thread::sleep(Duration::from_millis(200));
    r.state_received += s.receive(STATE).count() as u64;
    r.events_received += s.receive(EVENTS).count() as u64;
    for p in s.connected_peers() {
        if let Some(st) = s.stats(p) {
            r.loss.push(st.loss);
        }
    }
    r
}

fn summarize(args: &Args, reports: &[Report]) -> bool {
    let n = args.peers;
    let all_connected = reports.len() == n
        && reports
            .iter()
            .all(|r| r.connected == n - 1 && r.disconnections == 0);
    let connect: Vec<u64> = reports
        .iter()
        .flat_map(|r| r.connect_ms.iter().map(|ms| (ms * 1e6) as u64))
        .collect();
    let connect = Summary::of_nanos(connect);
    let rtts: Vec<u64> = reports
        .iter()
        .flat_map(|r| r.rtt_ns.iter().copied())
        .collect();
    let rtt = Summary::of_nanos(rtts);
    let count = |k: PathKind| {
        reports
            .iter()
            .flat_map(|r| &r.paths)
            .filter(|p| **p == k)
            .count()
    };
    let sum = |f: fn(&Report) -> u64| reports.iter().map(f).sum::<u64>();

    let ids: Vec<String> = reports
        .iter()
        .map(|r| r.me.map_or("?".into(), |p| p.to_string()))
        .collect();
    let width = ids.iter().map(String::len).max().unwrap_or(4).max(4);
    eprintln!(
        "\n{:<width$} path   rtt p50   loss   state msg/s in   events in",
        "peer"
    );
    for (r, id) in reports.iter().zip(&ids) {
        let mine = Summary::of_nanos(r.rtt_ns.clone());
        let loss = r.loss.iter().copied().fold(0.0, f64::max);
        let path = r.paths.first().map_or("-", |p| p.name());
        eprintln!(
            "{:<width$} {:<6} {:>6.0} µs {:>5.1}% {:>14.0} {:>11}",
            id,
            path,
            mine.p50_us,
            loss * 100.0,
            r.state_received as f64 / args.duration,
            r.events_received
        );
        for e in &r.errors {
            eprintln!("  error: {e}");
        }
    }
    eprintln!(
        "\n{} of {} peers connected to everyone; connect p50 {:.1} ms, max {:.1} ms; rtt p50 {:.0} µs, p99 {:.0} µs",
        reports.iter().filter(|r| r.connected == n - 1).count(),
        n,
        connect.p50_us / 1e3,
        connect.max_us / 1e3,
        rtt.p50_us,
        rtt.p99_us
    );
    let lost = sum(|r| r.disconnections);
    let returns = sum(|r| r.matchmaker_returns);
    if lost > 0 || returns > 0 {
        eprintln!(
            "while playing: {lost} peer connections lost; {returns} matchmaker reconnections"
        );
    }
    let out = json!({
        "peers": n,
        "all_connected": all_connected,
        "connect_ms": { "p50": round2(connect.p50_us / 1e3), "max": round2(connect.max_us / 1e3) },
        "rtt_us": { "p50": round2(rtt.p50_us), "p99": round2(rtt.p99_us) },
        "state_sent": sum(|r| r.state_sent),
        "state_received": sum(|r| r.state_received),
        "events_sent": sum(|r| r.events_sent),
        "events_received": sum(|r| r.events_received),
        "paths": { "host": count(PathKind::Host), "srflx": count(PathKind::Srflx), "relay": count(PathKind::Relay) },
        "disconnections": sum(|r| r.disconnections),
        "matchmaker_returns": sum(|r| r.matchmaker_returns),
        "duration_s": args.duration,
    });
    if args.json {
        println!("{out}");
    }
    all_connected
}

/// The median, 99th percentile (nearest rank) and largest of samples in nanoseconds, in µs.
struct Summary {
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
}

impl Summary {
    fn of_nanos(mut samples: Vec<u64>) -> Self {
        samples.sort_unstable();
        let rank = |q: f64| {
            let i = ((q * samples.len() as f64).ceil() as usize).max(1) - 1;
            samples.get(i).copied().unwrap_or(0) as f64 / 1e3
        };
        Self {
            p50_us: rank(0.5),
            p99_us: rank(0.99),
            max_us: samples.last().copied().unwrap_or(0) as f64 / 1e3,
        }
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
