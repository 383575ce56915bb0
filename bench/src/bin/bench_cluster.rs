//! Matchmaker cluster benchmark: one node, then three nodes sharing lobbies through one
//! Redis, under the same load in the same run on this machine's cores. For each: idle
//! connections held and RSS per connection, connect and join latency, relayed signals per
//! second (in the cluster every lobby spans nodes, so every signal crosses between nodes),
//! relay latency at a paced 2,000 signals/s; for the cluster also the failover of a killed
//! node: its players (SIGKILL, ≥ 1,000 of them) reconnect to the other nodes and resume their
//! places, timed from the moment each noticed its connection drop. The physical baseline
//! (raw UDP round trip on loopback) is measured in the same run.
//!
//! Nodes are the real matchmaker library in child processes (this binary with
//! `--serve-child`), so their memory is measured alone; Redis is Debian's `redis-server`.
//! Prints one JSON object on stdout and a table on stderr; `--write-docs docs/performance.md`
//! records the figures there.
//!
//! Run: `cargo run --release -p squadlink-bench --bin bench_cluster`
//! (or `scripts/bench.sh cluster`).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use serde_json::{Value, json};
use squadlink_bench::matchmaker_child::{self, MatchmakerChild};
use squadlink_bench::relay_load::{RelayCounters, blast, paced};
use squadlink_bench::ws_client::{Sink, Ws, connect, hello, round1, send, wait_for};
use squadlink_bench::{Percentiles, rss_bytes_of, udp_baseline, update_docs_section};
use squadlink_protocol::{ClientMessage, PeerId, ServerMessage, Signal};
use squadlink_testkit::redis::Redis;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser, Debug)]
#[command(about = "Matchmaker cluster benchmark (prints JSON)")]
struct Args {
    /// Connections to open in each setup (all stay open, in lobbies of 2-8).
    #[arg(long, default_value_t = 6_000)]
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
    /// Lobbies set up at once.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Write the figures into this Markdown file (between bench markers).
    #[arg(long)]
    write_docs: Option<std::path::PathBuf>,
    /// Internal: run one matchmaker node and print its address.
    #[arg(long, hide = true)]
    serve_child: bool,
    /// Internal: the child's Redis (a cluster node); none for the single node.
    #[arg(long, hide = true)]
    redis_url: Option<String>,
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
        return runtime.block_on(serve_child(args.redis_url));
    }
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// One node under test: the matchmaker library with a raised per-connection rate limit (the
/// benchmark measures capacity, not the policy) and room for the connections.
async fn serve_child(redis_url: Option<String>) -> ExitCode {
    let config = squadlink_matchmaker::Config {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        messages_per_second: 1_000_000,
        message_burst: 1_000_000,
        max_connections: 19_000,
        max_lobbies: 19_000,
        // Every simulated client comes from 127.0.0.1 (as behind one load balancer) and a
        // failover brings a thousand back at once.
        max_pending_per_address: 4_096,
        max_pending_upgrades: 4_096,
        rejoin_grace_secs: 60,
        redis_url,
        ..squadlink_matchmaker::Config::default()
    };
    matchmaker_child::serve(config).await
}

/// A node in a child process.
struct Node(MatchmakerChild);

impl Node {
    fn start(redis_url: Option<&str>) -> Result<Self, String> {
        let mut args = vec!["--serve-child"];
        if let Some(url) = redis_url {
            args.extend(["--redis-url", url]);
        }
        MatchmakerChild::start(&args).map(Self)
    }

    fn url(&self) -> &str {
        &self.0.url
    }

    fn rss_bytes(&self) -> u64 {
        self.0.rss_bytes().unwrap_or(0)
    }

    fn kill(&mut self) {
        self.0.kill();
    }
}

/// One connected player.
struct Player {
    peer: PeerId,
    player: String,
    lobby: usize,
    code: String,
    node: usize,
}

/// Connects one lobby's members, member `i` to node `(lobby + i) % nodes` (so every lobby
/// of two or more spans nodes when there are several); returns them with each joiner's
/// join latency (request sent → `lobby_joined`).
async fn setup_lobby(
    urls: Arc<Vec<String>>,
    lobby: usize,
    size: usize,
) -> Result<Vec<(Ws, Player, Option<u64>)>, String> {
    let mut members = Vec::with_capacity(size);
    let mut code = String::new();
    for i in 0..size {
        let node = (lobby + i) % urls.len();
        let url = urls.get(node).ok_or("no node")?;
        let mut ws = connect(url).await?;
        let player = format!("p{lobby}-{i}");
        let peer = hello(&mut ws, Some(player.clone())).await?;
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
        let asked = Instant::now();
        send(&mut ws, &request).await?;
        code = wait_for(&mut ws, |m| match m {
            ServerMessage::LobbyJoined { lobby, .. } => Some(Ok(lobby.code)),
            ServerMessage::Error { message, .. } => Some(Err(message)),
            _ => None,
        })
        .await?;
        let took = (i > 0).then(|| u64::try_from(asked.elapsed().as_nanos()).unwrap_or(0));
        members.push((
            ws,
            Player {
                peer,
                player,
                lobby,
                code: code.clone(),
                node,
            },
            took,
        ));
    }
    Ok(members)
}

/// Reads one connection until it closes, counting what arrives; tells `ended` when.
async fn reader(
    mut stream: SplitStream<Ws>,
    obs: Arc<RelayCounters>,
    t0: Instant,
    ended: oneshot::Sender<Instant>,
) {
    while let Some(Ok(frame)) = stream.next().await {
        let Message::Text(text) = frame else { continue };
        let Ok(ServerMessage::Signal {
            data: Signal::Opaque { payload },
            ..
        }) = ServerMessage::from_json(text.as_str())
        else {
            continue;
        };
        let mut parts = payload.split(':');
        let (Some(kind), Some(idx), Some(sent)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(idx), Ok(sent)) = (idx.parse::<usize>(), sent.parse::<u64>()) else {
            continue;
        };
        obs.record(kind, idx, sent, t0);
    }
    let _ = ended.send(Instant::now());
}

/// Lobby sizes cycling 2..=8 until `connections` are placed.
fn lobby_sizes(connections: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut left = connections;
    let mut next = 2;
    while left > 0 {
        let size = next.min(left).max(1);
        sizes.push(size);
        left -= size;
        next = if next >= 8 { 2 } else { next + 1 };
    }
    sizes
}

/// Everything measured on one setup.
async fn measure(args: &Args, nodes: &mut [Node], redis: Option<&Redis>) -> Result<Value, String> {
    let urls = Arc::new(nodes.iter().map(|n| n.url().to_owned()).collect::<Vec<_>>());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_base: u64 = nodes.iter().map(Node::rss_bytes).sum();
    let redis_base = redis.and_then(|r| rss_bytes_of(r.pid())).unwrap_or(0);
    let sizes = lobby_sizes(args.connections);
    let lobbies = sizes.len();
    let sem = Arc::new(tokio::sync::Semaphore::new(args.connect_concurrency.max(1)));
    let t_connect = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (lobby, size) in sizes.iter().copied().enumerate() {
        let urls = Arc::clone(&urls);
        let sem = Arc::clone(&sem);
        set.spawn(async move {
            let _permit = sem.acquire().await.map_err(|e| e.to_string())?;
            setup_lobby(urls, lobby, size).await
        });
    }
    let mut all = Vec::with_capacity(args.connections);
    while let Some(res) = set.join_next().await {
        let before = all.len();
        all.extend(res.map_err(|e| e.to_string())??);
        if all.len() / 2_000 != before / 2_000 {
            eprintln!("  {} connected", all.len());
        }
    }
    let connect_secs = t_connect.elapsed().as_secs_f64();
    all.sort_by_key(|(_, p, _)| (p.lobby, p.player.clone()));
    let joins: Vec<u64> = all.iter().filter_map(|(_, _, j)| *j).collect();
    let join = Percentiles::of_nanos(&joins);

    let t0 = Instant::now();
    let obs = Arc::new(RelayCounters::default());
    let mut sinks: Vec<Option<Sink>> = Vec::with_capacity(all.len());
    let mut ended = Vec::with_capacity(all.len());
    let mut players = Vec::with_capacity(all.len());
    for (ws, player, _) in all {
        let (sink, stream) = ws.split();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(reader(stream, Arc::clone(&obs), t0, tx));
        sinks.push(Some(sink));
        ended.push(Some(rx));
        players.push(player);
    }
    let n = players.len();
    let _ = obs.acked.set((0..n).map(|_| AtomicU64::new(0)).collect());

    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_loaded: u64 = nodes.iter().map(Node::rss_bytes).sum();
    let per_conn = rss_loaded.saturating_sub(rss_base) as f64 / n.max(1) as f64;
    let redis_loaded = redis.and_then(|r| rss_bytes_of(r.pid())).unwrap_or(0);
    let redis_per_conn = redis_loaded.saturating_sub(redis_base) as f64 / n.max(1) as f64;
    eprintln!(
        "{n} connections in {lobbies} lobbies on {} node(s): {:.1} KB per connection on the nodes{}",
        nodes.len(),
        per_conn / 1000.0,
        if redis.is_some() {
            format!(", {:.2} KB in Redis", redis_per_conn / 1000.0)
        } else {
            String::new()
        }
    );

    // Pairs: the first two members of each lobby (on two different nodes in a cluster).
    let pairs: Vec<(usize, usize)> = (0..n.saturating_sub(1))
        .filter(|&i| {
            players.get(i).map(|p| p.lobby) == players.get(i + 1).map(|p| p.lobby)
                && (i == 0
                    || players.get(i - 1).map(|p| p.lobby) != players.get(i).map(|p| p.lobby))
        })
        .map(|i| (i, i + 1))
        .collect();
    let crossing = pairs
        .iter()
        .filter(|(a, b)| players.get(*a).map(|p| p.node) != players.get(*b).map(|p| p.node))
        .count();

    let peer_of: Vec<PeerId> = players.iter().map(|p| p.peer).collect();
    // Phase 1: relay blast, both directions, a window of signals in flight per sender.
    let blast_pairs: Vec<(usize, usize)> = pairs.iter().copied().take(args.relay_pairs).collect();
    let blasted = blast(
        &blast_pairs,
        &mut sinks,
        &peer_of,
        &obs,
        (args.window, args.relay_seconds),
        t0,
    )
    .await?;
    let (delivered, blast_secs) = (blasted.delivered, blasted.seconds);
    let relay_rate = delivered as f64 / blast_secs;
    eprintln!("relay blast: {delivered} signals in {blast_secs:.2} s = {relay_rate:.0}/s");
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Phase 2: paced latency on 100 other pairs, senders evenly staggered.
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
        &obs,
        (args.latency_rate, args.latency_seconds),
        t0,
    )
    .await?;
    eprintln!(
        "latency at {} signals/s: p50 {:.0} µs, p99 {:.0} µs",
        args.latency_rate, lat.p50_us, lat.p99_us
    );

    let mut out = json!({
        "nodes": nodes.len(),
        "connections": n,
        "lobbies": lobbies,
        "connect_seconds": round1(connect_secs),
        "connect_rate_per_s": round1(n as f64 / connect_secs.max(1e-9)),
        "join_latency_us": { "count": join.count, "p50": round1(join.p50_us), "p99": round1(join.p99_us), "max": round1(join.max_us) },
        "nodes_rss_baseline_kb": rss_base / 1024,
        "nodes_rss_loaded_kb": rss_loaded / 1024,
        "rss_per_idle_connection_kb": round1(per_conn / 1000.0),
        "relay": {
            "pairs": blast_pairs.len(),
            "pairs_crossing_nodes": blast_pairs.iter().filter(|(a, b)| players.get(*a).map(|p| p.node) != players.get(*b).map(|p| p.node)).count(),
            "senders": blast_pairs.len() * 2,
            "window": args.window,
            "seconds": round1(blast_secs),
            "sent": blasted.sent,
            "delivered": delivered,
            "signals_per_s": relay_rate.round(),
        },
        "latency": {
            "target_rate_per_s": args.latency_rate,
            "pairs_crossing_nodes": crossing.min(lat_pairs.len()),
            "sent": lat_sent,
            "received": obs.latency_received.load(Ordering::Relaxed),
            "p50_us": round1(lat.p50_us),
            "p99_us": round1(lat.p99_us),
            "max_us": round1(lat.max_us),
        },
    });
    if redis.is_some()
        && let Some(fields) = out.as_object_mut()
    {
        fields.insert(
            "redis_rss_per_connection_kb".into(),
            json!((redis_per_conn / 10.0).round() / 100.0),
        );
        fields.insert(
            "failover".into(),
            failover(nodes, &players, &mut ended).await?,
        );
    }
    // Close every client before the next setup.
    drop(sinks);
    Ok(out)
}

/// Kills node 0 (SIGKILL); each of its players, once it notices its connection gone,
/// reconnects to another node at once and joins its lobby again, which must resume its
/// place under the same peer id. Times are from each player's notice, and from the kill.
async fn failover(
    nodes: &mut [Node],
    players: &[Player],
    ended: &mut [Option<oneshot::Receiver<Instant>>],
) -> Result<Value, String> {
    let survivors: Vec<String> = nodes.iter().skip(1).map(|n| n.url().to_owned()).collect();
    let victims: Vec<usize> = (0..players.len())
        .filter(|&i| players.get(i).is_some_and(|p| p.node == 0))
        .collect();
    eprintln!("failover: killing node 0 with {} players", victims.len());
    let node0 = nodes.first_mut().ok_or("no node 0")?;
    let killed = Instant::now();
    node0.kill();
    let mut tasks = tokio::task::JoinSet::new();
    for (k, &i) in victims.iter().enumerate() {
        let (Some(p), Some(rx)) = (players.get(i), ended.get_mut(i).and_then(Option::take)) else {
            continue;
        };
        let url = survivors
            .get(k % survivors.len().max(1))
            .cloned()
            .ok_or("no surviving node")?;
        let (player, code, old) = (p.player.clone(), p.code.clone(), p.peer);
        tasks.spawn(async move {
            let noticed = tokio::time::timeout(Duration::from_secs(10), rx)
                .await
                .map_err(|_| "a player never noticed the kill".to_string())?
                .map_err(|_| "reader gone".to_string())?;
            let mut ws = connect(&url).await?;
            hello(&mut ws, Some(player)).await?;
            send(
                &mut ws,
                &ClientMessage::JoinLobby {
                    rid: None,
                    code,
                    member_data: Default::default(),
                },
            )
            .await?;
            let resumed = wait_for(&mut ws, |m| match m {
                ServerMessage::LobbyJoined {
                    resumed_peer_id, ..
                } => Some(Ok(resumed_peer_id)),
                ServerMessage::Error { message, .. } => Some(Err(message)),
                _ => None,
            })
            .await?;
            let at = Instant::now();
            Ok::<_, String>((noticed, at, resumed == Some(old), ws))
        });
    }
    let mut since_notice = Vec::new();
    let mut since_kill = Vec::new();
    let mut last_notice = Duration::ZERO;
    let mut same_id = 0usize;
    let mut failed = 0usize;
    let mut keep = Vec::new();
    while let Some(res) = tasks.join_next().await {
        match res.map_err(|e| e.to_string())? {
            Ok((noticed, at, same, ws)) => {
                since_notice.push(
                    u64::try_from(at.saturating_duration_since(noticed).as_nanos()).unwrap_or(0),
                );
                since_kill.push(
                    u64::try_from(at.saturating_duration_since(killed).as_nanos()).unwrap_or(0),
                );
                last_notice = last_notice.max(noticed.saturating_duration_since(killed));
                same_id += usize::from(same);
                keep.push(ws);
            }
            Err(err) => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("failover: a player did not resume: {err}");
                }
            }
        }
    }
    let after_notice = Percentiles::of_nanos(&since_notice);
    let after_kill = Percentiles::of_nanos(&since_kill);
    eprintln!(
        "failover: {same_id} of {} resumed with their peer ids; all within {:.0} ms of noticing (p50 {:.0} ms), {:.0} ms of the kill",
        victims.len(),
        after_notice.max_us / 1000.0,
        after_notice.p50_us / 1000.0,
        after_kill.max_us / 1000.0
    );
    drop(keep);
    Ok(json!({
        "players": victims.len(),
        "resumed_same_peer_id": same_id,
        "failed": failed,
        "last_noticed_after_kill_ms": round1(last_notice.as_secs_f64() * 1000.0),
        "resumed_after_notice_ms": { "p50": round1(after_notice.p50_us / 1000.0), "p99": round1(after_notice.p99_us / 1000.0), "max": round1(after_notice.max_us / 1000.0) },
        "resumed_after_kill_ms": { "p50": round1(after_kill.p50_us / 1000.0), "max": round1(after_kill.max_us / 1000.0) },
    }))
}

async fn run(args: Args) -> Result<(), String> {
    let started = Instant::now();
    let udp = udp_baseline().await?;

    eprintln!("== one node (in-memory store)");
    let mut single_nodes = vec![Node::start(None)?];
    let single = measure(&args, &mut single_nodes, None).await?;
    drop(single_nodes);

    eprintln!("== three nodes on one Redis");
    let redis = tokio::task::spawn_blocking(Redis::start)
        .await
        .map_err(|e| format!("redis: {e}"))?;
    let mut cluster_nodes = Vec::new();
    for _ in 0..3 {
        cluster_nodes.push(Node::start(Some(&redis.url()))?);
    }
    let cluster = measure(&args, &mut cluster_nodes, Some(&redis)).await?;
    drop(cluster_nodes);
    drop(redis);

    let num = |v: &Value, path: &[&str]| {
        path.iter()
            .try_fold(v, |v, k| v.get(k))
            .and_then(Value::as_f64)
            .unwrap_or(f64::NAN)
    };
    let rss_ok = num(&cluster, &["rss_per_idle_connection_kb"]) <= 12.0;
    let relay_ok = num(&cluster, &["relay", "signals_per_s"]) >= 50_000.0;
    let latency_ok = num(&cluster, &["latency", "p99_us"]) <= 5_000.0;
    let failover_ok = num(&cluster, &["failover", "resumed_after_notice_ms", "max"]) <= 3_000.0
        && num(&cluster, &["failover", "players"]) >= 1_000.0
        && num(&cluster, &["failover", "failed"]) == 0.0;
    let (single_copy, cluster_copy) = (single.clone(), cluster.clone());
    let result = json!({
        "bench": "cluster",
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "baseline_udp_rtt_us": { "p50": round1(udp.p50_us), "p99": round1(udp.p99_us) },
        "single": single,
        "cluster": cluster,
        "targets": {
            "rss_per_idle_connection_kb_max": 12.0, "rss_ok": rss_ok,
            "relay_signals_per_s_min": 50_000, "relay_ok": relay_ok,
            "latency_p99_us_max": 5_000, "latency_ok": latency_ok,
            "failover_all_resumed_within_ms_of_notice": 3_000, "failover_ok": failover_ok,
        },
        "total_seconds": round1(started.elapsed().as_secs_f64()),
    });
    println!("{result}");
    if let Some(path) = &args.write_docs {
        let (s, c) = (&single_copy, &cluster_copy);
        let table = format!(
            "| figure | one node | three nodes + Redis | target (cluster) |\n|---|---|---|---|\n\
             | raw UDP round trip on loopback (baseline), p50 / p99 | {:.1} / {:.1} µs | (same run) | — |\n\
             | idle connections held (lobbies of 2–8) | {} | {} | — |\n\
             | RSS per idle connection, matchmaker processes | {:.1} KB | {:.1} KB (+ {:.2} KB in Redis) | ≤ 12 KB |\n\
             | connect + hello + create/join rate | {:.0} /s | {:.0} /s | — |\n\
             | join latency p50 / p99 | {:.0} / {:.0} µs | {:.0} / {:.0} µs | — |\n\
             | relayed signals/s ({} senders, window {}; cluster: every pair across nodes) | {:.0} /s | {:.0} /s | ≥ 50,000 /s |\n\
             | relay latency at {} signals/s, p50 / p99 / max | {:.0} / {:.0} / {:.0} µs | {:.0} / {:.0} / {:.0} µs | p99 ≤ 5,000 µs |\n\
             | failover: players of a SIGKILLed node resumed (same peer id) | — | {} of {} | all |\n\
             | failover: resumed after each noticed the drop, p50 / max | — | {:.0} / {:.0} ms | max ≤ 3,000 ms |\n\
             | failover: last resumed after the kill | — | {:.0} ms | — |\n",
            udp.p50_us,
            udp.p99_us,
            num(s, &["connections"]),
            num(c, &["connections"]),
            num(s, &["rss_per_idle_connection_kb"]),
            num(c, &["rss_per_idle_connection_kb"]),
            num(c, &["redis_rss_per_connection_kb"]),
            num(s, &["connect_rate_per_s"]),
            num(c, &["connect_rate_per_s"]),
            num(s, &["join_latency_us", "p50"]),
            num(s, &["join_latency_us", "p99"]),
            num(c, &["join_latency_us", "p50"]),
            num(c, &["join_latency_us", "p99"]),
            num(c, &["relay", "senders"]),
            args.window,
            num(s, &["relay", "signals_per_s"]),
            num(c, &["relay", "signals_per_s"]),
            args.latency_rate,
            num(s, &["latency", "p50_us"]),
            num(s, &["latency", "p99_us"]),
            num(s, &["latency", "max_us"]),
            num(c, &["latency", "p50_us"]),
            num(c, &["latency", "p99_us"]),
            num(c, &["latency", "max_us"]),
            num(c, &["failover", "resumed_same_peer_id"]),
            num(c, &["failover", "players"]),
            num(c, &["failover", "resumed_after_notice_ms", "p50"]),
            num(c, &["failover", "resumed_after_notice_ms", "max"]),
            num(c, &["failover", "resumed_after_kill_ms", "max"]),
        );
        let body = format!("{table}\nRaw output of the run:\n\n```json\n{result:#}\n```\n");
        update_docs_section(path, "cluster", &body)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("wrote figures to {}", path.display());
    }
    Ok(())
}
