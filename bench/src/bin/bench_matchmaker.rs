//! Matchmaker load benchmark: opens N WebSocket connections in lobbies of 2–8, measures the
//! server's RSS per idle connection, relayed signals per second, relay latency at a paced
//! rate, and checks that no spoofed or cross-lobby signal is ever delivered. The physical
//! baseline (raw UDP round trip on loopback) is measured in the same run.
//!
//! The server is the real matchmaker library, run in a child process (this same binary with
//! `--serve-child`) so its memory is measured alone. Prints one JSON object on stdout and a
//! table on stderr; `--write-docs docs/performance.md` records the figures there.
//!
//! Run: `cargo run --release -p squadlink-bench --bin bench_matchmaker`
//! (or `scripts/bench.sh matchmaker`).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use squadlink_bench::matchmaker_child::{self, MatchmakerChild};
use squadlink_bench::relay_load::{RelayCounters, blast, paced};
use squadlink_bench::ws_client::{Sink, Ws, connect, round1, send, wait_for};
use squadlink_bench::{udp_baseline, update_docs_section};
use squadlink_protocol::{ClientMessage, ErrorCode, PeerId, ServerMessage, Signal};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser, Debug)]
#[command(about = "Matchmaker load benchmark (prints JSON)")]
struct Args {
    /// Connections to open (all stay open, in lobbies of 2-8).
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Sender/receiver pairs for the relay-throughput blast (both directions send).
    #[arg(long, default_value_t = 256)]
    relay_pairs: usize,
    /// Seconds of relay blast.
    #[arg(long, default_value_t = 5.0)]
    relay_seconds: f64,
    /// Signals in flight per sender during the blast.
    #[arg(long, default_value_t = 32)]
    window: u64,
    /// Total signals per second during the latency phase.
    #[arg(long, default_value_t = 2_000)]
    latency_rate: u32,
    /// Seconds of the latency phase.
    #[arg(long, default_value_t = 5.0)]
    latency_seconds: f64,
    /// Connections that try to signal into other lobbies with a forged sender.
    #[arg(long, default_value_t = 200)]
    spoofers: usize,
    /// Concurrent connection attempts while setting up.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Write the figures into this Markdown file (between bench markers).
    #[arg(long)]
    write_docs: Option<std::path::PathBuf>,
    /// Internal: run the matchmaker and print its address.
    #[arg(long, hide = true)]
    serve_child: bool,
}

/// What the readers observe, shared by all connections.
#[derive(Default)]
struct Observed {
    relay: Arc<RelayCounters>,
    spoofed_delivered: AtomicU64,
    spoof_rejected: AtomicU64,
    other_errors: AtomicU64,
    /// peer id and lobby of every connection index.
    roster: OnceLock<Roster>,
}

struct Roster {
    peer_of: Vec<PeerId>,
    lobby_of: Vec<usize>,
    index_of: HashMap<PeerId, usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start tokio: {err}");
            return ExitCode::FAILURE;
        }
    };
    if args.serve_child {
        return runtime.block_on(serve_child());
    }
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The server under test: the matchmaker library with a raised per-connection rate limit
/// (the benchmark measures capacity, not the policy) and room for the connections.
async fn serve_child() -> ExitCode {
    let config = squadlink_matchmaker::Config {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        messages_per_second: 1_000_000,
        message_burst: 1_000_000,
        max_connections: 19_000,
        max_lobbies: 19_000,
        // Every simulated client comes from 127.0.0.1 and they connect many at a time, as
        // clients behind one reverse proxy would: no per-address cap below the global one.
        max_pending_per_address: 512,
        ..squadlink_matchmaker::Config::default()
    };
    matchmaker_child::serve(config).await
}

/// Connects one lobby's worth of players: the first creates, the others join.
async fn setup_lobby(url: String, size: usize) -> Result<Vec<(Ws, PeerId)>, String> {
    let mut members = Vec::with_capacity(size);
    let mut code = String::new();
    for i in 0..size {
        let mut ws = connect(&url).await?;
        send(
            &mut ws,
            &ClientMessage::Hello {
                rid: None,
                token: None,
                player_id: None,
            },
        )
        .await?;
        let peer = wait_for(&mut ws, |m| match m {
            ServerMessage::Welcome { peer_id, .. } => Some(Ok(peer_id)),
            ServerMessage::Error { message, .. } => Some(Err(message)),
            _ => None,
        })
        .await?;
        let request = if i == 0 {
            ClientMessage::CreateLobby {
                rid: None,
                max_members: 8,
                public: false,
                properties: Default::default(),
                member_data: Default::default(),
            }
        } else {
            ClientMessage::JoinLobby {
                rid: None,
                code: code.clone(),
                member_data: Default::default(),
            }
        };
        send(&mut ws, &request).await?;
        let joined = wait_for(&mut ws, |m| match m {
            ServerMessage::LobbyJoined { lobby, .. } => Some(Ok(lobby.code)),
            ServerMessage::Error { message, .. } => Some(Err(message)),
            _ => None,
        })
        .await?;
        code = joined;
        members.push((ws, peer));
    }
    Ok(members)
}

/// Reads one connection until it closes, recording what arrives.
async fn reader(me: usize, mut stream: SplitStream<Ws>, obs: Arc<Observed>, t0: Instant) {
    while let Some(Ok(frame)) = stream.next().await {
        let Message::Text(text) = frame else { continue };
        match ServerMessage::from_json(text.as_str()) {
            Ok(ServerMessage::Signal {
                from,
                data: Signal::Opaque { payload },
            }) => {
                record_signal(me, from, &payload, &obs, t0);
            }
            Ok(ServerMessage::Error {
                code: ErrorCode::PeerNotInLobby,
                ..
            }) => {
                obs.spoof_rejected.fetch_add(1, Ordering::Relaxed);
            }
            Ok(ServerMessage::Error { .. }) => {
                obs.other_errors.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// Payload: `kind:sender_index:sent_ns`. A delivery is spoofed if the stamped sender is not
/// the real one, or is not in the receiver's lobby, or if it is a spoof probe at all.
fn record_signal(me: usize, from: PeerId, payload: &str, obs: &Observed, t0: Instant) {
    let mut parts = payload.split(':');
    let (Some(kind), Some(idx), Some(sent)) = (parts.next(), parts.next(), parts.next()) else {
        obs.spoofed_delivered.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let (Ok(idx), Ok(sent)) = (idx.parse::<usize>(), sent.parse::<u64>()) else {
        obs.spoofed_delivered.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let genuine = obs.roster.get().is_some_and(|r| {
        r.peer_of.get(idx) == Some(&from)
            && r.index_of.get(&from).and_then(|i| r.lobby_of.get(*i)) == r.lobby_of.get(me)
    });
    if !genuine || kind == "s" {
        obs.spoofed_delivered.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if !obs.relay.record(kind, idx, sent, t0) {
        obs.spoofed_delivered.fetch_add(1, Ordering::Relaxed);
    }
}

async fn run(args: Args) -> Result<(), String> {
    let started = Instant::now();
    let udp = udp_baseline().await?;
    let server = MatchmakerChild::start(&["--serve-child"])?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_base = server.rss_bytes()?;
    eprintln!(
        "server at {} (RSS {} KiB); opening {} connections…",
        server.url,
        rss_base / 1024,
        args.connections
    );

    // Lobby sizes cycle 2..=8 until the connection count is reached.
    let mut sizes = Vec::new();
    let mut left = args.connections;
    let mut next = 2;
    while left > 0 {
        let size = next.min(left).max(1);
        sizes.push(size);
        left -= size;
        next = if next >= 8 { 2 } else { next + 1 };
    }
    let lobbies = sizes.len();
    let sem = Arc::new(tokio::sync::Semaphore::new(
        args.connect_concurrency.max(8) / 4 + 1,
    ));
    let t_connect = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (lobby, size) in sizes.iter().copied().enumerate() {
        let url = server.url.clone();
        let sem = Arc::clone(&sem);
        set.spawn(async move {
            let _permit = sem.acquire().await.map_err(|e| e.to_string())?;
            setup_lobby(url, size).await.map(|m| (lobby, m))
        });
    }
    let mut by_lobby: Vec<Vec<(Ws, PeerId)>> = (0..lobbies).map(|_| Vec::new()).collect();
    let mut done = 0usize;
    while let Some(res) = set.join_next().await {
        let (lobby, members) = res.map_err(|e| e.to_string())??;
        let members_len = members.len();
        done += members_len;
        if let Some(slot) = by_lobby.get_mut(lobby) {
            *slot = members;
        }
        if done / 2_000 != (done - members_len) / 2_000 {
            eprintln!("  {done} connected");
        }
    }
    let connect_secs = t_connect.elapsed().as_secs_f64();

    // Flatten: connection index -> (sink, peer, lobby); start a reader for each.
    let t0 = Instant::now();
    let obs = Arc::new(Observed::default());
    let mut sinks: Vec<Option<Sink>> = Vec::with_capacity(args.connections);
    let mut peer_of = Vec::with_capacity(args.connections);
    let mut lobby_of = Vec::with_capacity(args.connections);
    let mut first_of_lobby = Vec::with_capacity(lobbies);
    for (lobby, members) in by_lobby.into_iter().enumerate() {
        first_of_lobby.push(peer_of.len());
        for (ws, peer) in members {
            let (sink, stream) = ws.split();
            let idx = peer_of.len();
            tokio::spawn(reader(idx, stream, Arc::clone(&obs), t0));
            sinks.push(Some(sink));
            peer_of.push(peer);
            lobby_of.push(lobby);
        }
    }
    let n = peer_of.len();
    let index_of = peer_of.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    let _ = obs
        .relay
        .acked
        .set((0..n).map(|_| AtomicU64::new(0)).collect());
    let _ = obs.roster.set(Roster {
        peer_of: peer_of.clone(),
        lobby_of: lobby_of.clone(),
        index_of,
    });

    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_loaded = server.rss_bytes()?;
    let per_conn = rss_loaded.saturating_sub(rss_base) as f64 / n.max(1) as f64;
    eprintln!(
        "{n} connections in {lobbies} lobbies; server RSS {} KiB ({per_conn:.0} B per connection)",
        rss_loaded / 1024
    );

    // Pairs: the first two members of lobbies, both directions.
    let pairs: Vec<(usize, usize)> = first_of_lobby
        .iter()
        .filter(|&&f| lobby_of.get(f + 1) == lobby_of.get(f))
        .map(|&f| (f, f + 1))
        .collect();

    // Phase 1: relay blast.
    let blast_pairs: Vec<(usize, usize)> = pairs.iter().copied().take(args.relay_pairs).collect();
    let blasted = blast(
        &blast_pairs,
        &mut sinks,
        &peer_of,
        &obs.relay,
        (args.window, args.relay_seconds),
        t0,
    )
    .await?;
    let (delivered, blast_secs) = (blasted.delivered, blasted.seconds);
    let relay_rate = delivered as f64 / blast_secs;
    eprintln!("relay blast: {delivered} signals in {blast_secs:.2} s = {relay_rate:.0}/s");
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Phase 2: paced latency on 100 other pairs.
    let lat_pairs: Vec<(usize, usize)> = pairs
        .iter()
        .copied()
        .skip(args.relay_pairs)
        .take(100)
        .collect();
    let lat_pairs = if lat_pairs.is_empty() {
        blast_pairs.clone()
    } else {
        lat_pairs
    };
    let (lat_sent, lat) = paced(
        &lat_pairs,
        &mut sinks,
        &peer_of,
        &obs.relay,
        (args.latency_rate, args.latency_seconds),
        t0,
    )
    .await?;
    eprintln!(
        "latency at {} signals/s: p50 {:.0} µs, p99 {:.0} µs",
        args.latency_rate, lat.p50_us, lat.p99_us
    );

    // Phase 3: spoofing. Signal into another lobby with a forged sender field.
    let mut attempts = 0u64;
    for k in 0..args.spoofers.min(n.saturating_sub(1)) {
        let from = (k * 7919) % n;
        let victim = (from + 9) % n;
        if lobby_of.get(victim) == lobby_of.get(from) {
            continue;
        }
        let (Some(Some(sink)), Some(victim_peer)) = (sinks.get_mut(from), peer_of.get(victim))
        else {
            continue;
        };
        let forged = peer_of
            .get(
                first_of_lobby
                    .get(lobby_of.get(victim).copied().unwrap_or(0))
                    .copied()
                    .unwrap_or(0),
            )
            .copied()
            .unwrap_or(PeerId(0));
        let text = format!(
            r#"{{"type":"signal","from":{},"to":{},"data":{{"kind":"opaque","payload":"s:{from}:0"}}}}"#,
            forged.0, victim_peer.0
        );
        if sink.send(Message::text(text)).await.is_ok() {
            attempts += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let spoofed = obs.spoofed_delivered.load(Ordering::Relaxed);
    let rejected = obs.spoof_rejected.load(Ordering::Relaxed);

    let rss_per_conn_kb = per_conn / 1000.0;
    let result = json!({
        "bench": "matchmaker",
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "baseline_udp_rtt_us": { "p50": round1(udp.p50_us), "p99": round1(udp.p99_us) },
        "connections": n,
        "lobbies": lobbies,
        "connect_seconds": round1(connect_secs),
        "connect_rate_per_s": round1(n as f64 / connect_secs.max(1e-9)),
        "server_rss_baseline_kb": rss_base / 1024,
        "server_rss_loaded_kb": rss_loaded / 1024,
        "rss_per_idle_connection_kb": round1(rss_per_conn_kb),
        "relay": {
            "pairs": blast_pairs.len(),
            "senders": blast_pairs.len() * 2,
            "window": args.window,
            "seconds": round1(blast_secs),
            "sent": blasted.sent,
            "delivered": delivered,
            "signals_per_s": relay_rate.round(),
        },
        "latency": {
            "target_rate_per_s": args.latency_rate,
            "sent": lat_sent,
            "received": obs.relay.latency_received.load(Ordering::Relaxed),
            "p50_us": round1(lat.p50_us),
            "p99_us": round1(lat.p99_us),
            "max_us": round1(lat.max_us),
        },
        "spoof": { "attempts": attempts, "rejected": rejected, "delivered": spoofed },
        "other_errors": obs.other_errors.load(Ordering::Relaxed),
        "targets": {
            "rss_per_idle_connection_kb_max": 12.0,
            "rss_ok": rss_per_conn_kb <= 12.0 && n >= 10_000,
            "relay_signals_per_s_min": 40_000,
            "relay_ok": relay_rate >= 40_000.0,
            "latency_p99_us_max": 5_000,
            "latency_ok": lat.p99_us <= 5_000.0 && args.latency_rate >= 2_000,
            "spoofed_delivered_must_be": 0,
            "spoof_ok": spoofed == 0,
        },
        "total_seconds": round1(started.elapsed().as_secs_f64()),
    });
    println!("{result}");
    if let Some(path) = &args.write_docs {
        let table = format!(
            "| figure | measured | target |\n|---|---|---|\n\
             | raw UDP round trip on loopback (baseline), p50 / p99 | {:.1} / {:.1} µs | — |\n\
             | connections held open (lobbies of 2–8) | {} in {} lobbies | 10,000 |\n\
             | connect + hello + create/join rate | {:.0} /s | — |\n\
             | server RSS per idle connection | {:.1} KB | ≤ 12 KB |\n\
             | relayed signals/s ({} senders, window {}) | {:.0} /s | ≥ 40,000 /s |\n\
             | relay latency at {} signals/s, p50 / p99 / max | {:.0} / {:.0} / {:.0} µs | p99 ≤ 5,000 µs |\n\
             | spoofed or cross-lobby signals delivered ({} attempts, {} rejected) | {} | 0 |\n",
            udp.p50_us,
            udp.p99_us,
            n,
            lobbies,
            n as f64 / connect_secs.max(1e-9),
            rss_per_conn_kb,
            blast_pairs.len() * 2,
            args.window,
            relay_rate,
            args.latency_rate,
            lat.p50_us,
            lat.p99_us,
            lat.max_us,
            attempts,
            rejected,
            spoofed,
        );
        let body = format!("{table}\nRaw output of the run:\n\n```json\n{result:#}\n```\n");
        update_docs_section(path, "matchmaker", &body)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("wrote figures to {}", path.display());
    }
    drop(server);
    Ok(())
}
