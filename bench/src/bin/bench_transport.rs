//! Transport benchmark, all in one run on loopback: the raw UDP round trip (the physical
//! baseline), data-channel RTT for 64-byte messages (through the public Session API, game
//! thread to game thread), lobby join → all channels open for 2 and 8 peers, reliable 1 KiB
//! throughput, unreliable delivery paced (60 Hz × 32 peers' worth of 200-byte states) and
//! as a blast, RTT through a coturn relay next to the direct one, and RSS per connected peer.
//!
//! Prints one JSON object on stdout and a table on stderr; `--write-docs docs/performance.md`
//! records the figures. Needs coturn for the relay figures (scripts/setup.sh installs it).
//!
//! Run: `cargo run --release -p squadlink-bench --bin bench_transport`

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use squadlink::{Channel, ChannelKind, Event, IcePolicy, LobbyRef, PeerId, Session};
use squadlink_bench::{Percentiles, rss_bytes, udp_baseline, update_docs_section};

#[derive(Parser, Debug)]
#[command(about = "Squadlink transport benchmark (prints JSON)")]
struct Args {
    /// Repetitions of the 2-peer connect measurement.
    #[arg(long, default_value_t = 10)]
    connect_runs_2: usize,
    /// Repetitions of the 8-peer full-mesh connect measurement.
    #[arg(long, default_value_t = 4)]
    connect_runs_8: usize,
    /// Round trips per RTT measurement.
    #[arg(long, default_value_t = 2_000)]
    pings: usize,
    /// Runs of the reliable throughput measurement.
    #[arg(long, default_value_t = 5)]
    throughput_runs: usize,
    /// Seconds per throughput run.
    #[arg(long, default_value_t = 2.0)]
    throughput_seconds: f64,
    /// Seconds of paced unreliable traffic.
    #[arg(long, default_value_t = 3.0)]
    paced_seconds: f64,
    /// Messages in the unreliable blast.
    #[arg(long, default_value_t = 20_000)]
    blast: usize,
    /// Write the figures into this Markdown file.
    #[arg(long)]
    write_docs: Option<std::path::PathBuf>,
}

const KINDS: [ChannelKind; 2] = [ChannelKind::Unreliable, ChannelKind::ReliableOrdered];
const UNRELIABLE: Channel = Channel(0);
const RELIABLE: Channel = Channel(1);
const WAIT: Duration = Duration::from_secs(15);

type Res<T> = Result<T, String>;

async fn start(url: &str, lobby: LobbyRef, policy: IcePolicy) -> Res<Session> {
    let mut b = Session::builder(url)
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .ice_policy(policy)
        .join(lobby);
    for k in KINDS {
        b = b.channel(k);
    }
    b.start_async().await.map_err(|e| e.to_string())
}

/// Waits until `s` is connected to `n` peers; returns each connect time in ms.
async fn connected(s: &Session, n: usize) -> Res<Vec<f64>> {
    let mut times = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while times.len() < n {
        match tokio::time::timeout_at(deadline, s.next_event()).await {
            Ok(Some(Event::PeerConnected { connect_time, .. })) => {
                times.push(connect_time.as_secs_f64() * 1e3);
            }
            Ok(Some(Event::PeerDisconnected { peer, reason })) => {
                return Err(format!("{peer} disconnected: {reason:?}"));
            }
            Ok(Some(_)) => {}
            Ok(None) => return Err("session ended".into()),
            Err(_) => {
                return Err(format!(
                    "only {} of {n} peers connected in time",
                    times.len()
                ));
            }
        }
    }
    Ok(times)
}

/// A lobby of `n` sessions, all connected; returns them and every pair's connect time.
async fn mesh(url: &str, n: usize, policy: IcePolicy) -> Res<(Vec<Arc<Session>>, Vec<f64>)> {
    let max = u8::try_from(n).map_err(|_| "too many")?;
    let first = start(url, LobbyRef::create(max), policy).await?;
    let code = first.lobby().map(|l| l.code).ok_or("no lobby")?;
    let mut all = vec![Arc::new(first)];
    for _ in 1..n {
        all.push(Arc::new(
            start(url, LobbyRef::Code(code.clone()), policy).await?,
        ));
    }
    let mut times = Vec::new();
    for s in &all {
        times.extend(connected(s, n - 1).await?);
    }
    Ok((all, times))
}

fn peer_of(s: &Session) -> Res<PeerId> {
    s.id().ok_or_else(|| "no id".to_string())
}

/// Game-thread-to-game-thread RTT: A sends 64 bytes, B's task echoes them, A measures.
async fn echo_rtt(a: &Arc<Session>, b: &Arc<Session>, pings: usize) -> Res<(Percentiles, usize)> {
    let echo_side = Arc::clone(b);
    let echo = tokio::spawn(async move {
        while let Some((from, msg)) = echo_side.recv(UNRELIABLE).await {
            if echo_side.send(from, UNRELIABLE, &msg).is_err() {
                break;
            }
        }
    });
    let bid = peer_of(b)?;
    let mut samples = Vec::with_capacity(pings);
    let mut lost = 0;
    let mut payload = [0u8; 64];
    for i in 0..pings {
        payload[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let t = Instant::now();
        a.send(bid, UNRELIABLE, &payload)
            .map_err(|e| e.to_string())?;
        loop {
            match tokio::time::timeout(Duration::from_millis(200), a.recv(UNRELIABLE)).await {
                Ok(Some((_, m))) if m.get(..8) == Some(&payload[..8]) => {
                    samples.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
                    break;
                }
                Ok(Some(_)) => continue,
                Ok(None) => return Err("session ended".into()),
                Err(_) => {
                    lost += 1;
                    break;
                }
            }
        }
    }
    echo.abort();
    Ok((Percentiles::of_nanos(&samples), lost))
}

/// Reliable 1 KiB messages as fast as the connection takes them, for `secs`.
async fn throughput(a: &Session, b: &Session, secs: f64) -> Res<f64> {
    let bid = peer_of(b)?;
    let msg = vec![7u8; 1024];
    let window = 4096u64; // messages in flight (4 MiB)
    let (mut sent, mut received) = (0u64, 0u64);
    let t = Instant::now();
    let end = t + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        while sent - received < window {
            a.send(bid, RELIABLE, &msg).map_err(|e| e.to_string())?;
            sent += 1;
        }
        received += b.receive(RELIABLE).count() as u64;
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let elapsed = t.elapsed().as_secs_f64();
    // Drain what is in flight so the next run starts clean.
    let drain_end = Instant::now() + Duration::from_secs(10);
    let mut tail = 0;
    while received + tail < sent && Instant::now() < drain_end {
        tail += b.receive(RELIABLE).count() as u64;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(received as f64 * 1024.0 / elapsed)
}

/// 60 Hz × 32 peers' worth of 200-byte states, for `secs`: fraction delivered.
async fn paced_unreliable(a: &Session, b: &Session, secs: f64) -> Res<(u64, u64)> {
    let bid = peer_of(b)?;
    let msg = [1u8; 200];
    let per_tick = 32;
    let tick = Duration::from_micros(16_667);
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut next = Instant::now();
    let (mut sent, mut received) = (0u64, 0u64);
    while Instant::now() < end {
        for _ in 0..per_tick {
            a.send(bid, UNRELIABLE, &msg).map_err(|e| e.to_string())?;
            sent += 1;
        }
        received += b.receive(UNRELIABLE).count() as u64;
        next += tick;
        tokio::time::sleep(next.saturating_duration_since(Instant::now())).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    received += b.receive(UNRELIABLE).count() as u64;
    Ok((sent, received))
}

async fn blast_unreliable(a: &Session, b: &Session, n: usize) -> Res<(u64, u64)> {
    let bid = peer_of(b)?;
    let msg = [2u8; 200];
    for _ in 0..n {
        a.send(bid, UNRELIABLE, &msg).map_err(|e| e.to_string())?;
    }
    let mut received = 0u64;
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        received += b.receive(UNRELIABLE).count() as u64;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok((n as u64, received))
}

fn main() -> std::process::ExitCode {
    squadlink_bench::run_main(run(Args::parse()))
}

async fn run(args: Args) -> Res<()> {
    let started = Instant::now();
    let udp = udp_baseline().await?;
    let coturn =
        std::panic::catch_unwind(|| squadlink_testkit::Coturn::start(&["bench-secret"])).ok();
    let server = squadlink_matchmaker::Server::bind(squadlink_matchmaker::Config {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        turn_urls: coturn.iter().map(|c| c.turn_url()).collect(),
        turn_secrets: coturn.iter().map(|_| "bench-secret".to_string()).collect(),
        ..squadlink_matchmaker::Config::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let url = server.url();

    // Connect times.
    let mut c2 = Vec::new();
    for _ in 0..args.connect_runs_2 {
        let (sessions, times) = mesh(&url, 2, IcePolicy::All).await?;
        c2.extend(times);
        drop(sessions);
    }
    let mut c8 = Vec::new();
    for _ in 0..args.connect_runs_8 {
        let (sessions, times) = mesh(&url, 8, IcePolicy::All).await?;
        c8.extend(times);
        drop(sessions);
    }
    let ms =
        |v: &[f64]| Percentiles::of_nanos(&v.iter().map(|x| (x * 1e6) as u64).collect::<Vec<_>>());
    let (c2p, c8p) = (ms(&c2), ms(&c8));
    eprintln!(
        "connect: 2 peers p50 {:.1} ms, 8 peers p50 {:.1} ms",
        c2p.p50_us / 1e3,
        c8p.p50_us / 1e3
    );

    // RSS per connected peer: 8 sessions in a full mesh = 56 peer connections.
    let rss_before = rss_bytes();
    let (mesh8, _) = mesh(&url, 8, IcePolicy::All).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_bytes();
    let connections = 8 * 7;
    let rss_per_conn = rss_after.saturating_sub(rss_before) as f64 / connections as f64;
    drop(mesh8);
    eprintln!("RSS: {:.0} KB per connected peer", rss_per_conn / 1e3);

    // Direct pair: RTT, throughput, unreliable.
    let (pair, _) = mesh(&url, 2, IcePolicy::All).await?;
    let (a, b) = (pair.first().ok_or("pair")?, pair.get(1).ok_or("pair")?);
    let (direct, direct_lost) = echo_rtt(a, b, args.pings).await?;
    eprintln!(
        "data-channel RTT (64 B): p50 {:.1} µs, p99 {:.1} µs",
        direct.p50_us, direct.p99_us
    );
    let mut tp = Vec::new();
    for _ in 0..args.throughput_runs {
        tp.push(throughput(a, b, args.throughput_seconds).await?);
    }
    let tp_runs: Vec<f64> = tp.iter().map(|v| (v / 104_857.6).round() / 10.0).collect();
    eprintln!("reliable 1 KiB runs (MiB/s, in order): {tp_runs:?}");
    tp.sort_by(f64::total_cmp);
    let mib = |v: f64| v / (1024.0 * 1024.0);
    let median = tp.get(tp.len() / 2).copied().unwrap_or(0.0);
    eprintln!("reliable 1 KiB: median {:.1} MiB/s", mib(median));
    let (paced_sent, paced_recv) = paced_unreliable(a, b, args.paced_seconds).await?;
    let dropped_before = a.stats(peer_of(b)?).map_or(0, |s| s.dropped_congested);
    let (blast_sent, blast_recv) = blast_unreliable(a, b, args.blast).await?;
    let blast_dropped = a.stats(peer_of(b)?).map_or(0, |s| s.dropped_congested) - dropped_before;
    eprintln!("unreliable paced {paced_recv}/{paced_sent}, blast {blast_recv}/{blast_sent}");
    drop(pair);

    // Relay pair through coturn.
    let relay = match &coturn {
        Some(_) => {
            let (pair, times) = mesh(&url, 2, IcePolicy::RelayOnly).await?;
            let (a, b) = (pair.first().ok_or("pair")?, pair.get(1).ok_or("pair")?);
            let (rtt, lost) = echo_rtt(a, b, args.pings).await?;
            eprintln!(
                "relayed RTT (64 B): p50 {:.1} µs, p99 {:.1} µs",
                rtt.p50_us, rtt.p99_us
            );
            Some((rtt, lost, ms(&times)))
        }
        None => {
            eprintln!("coturn not installed: relay figures skipped (scripts/setup.sh installs it)");
            None
        }
    };
    let _ = server.shutdown().await;

    let r1 = |v: f64| (v * 10.0).round() / 10.0;
    let relay_json = relay.as_ref().map(|(rtt, lost, connect)| {
        json!({ "rtt_us": { "p50": r1(rtt.p50_us), "p99": r1(rtt.p99_us) }, "lost": lost, "connect_ms_p50": r1(connect.p50_us / 1e3) })
    });
    let relay_ok = relay
        .as_ref()
        .map(|(rtt, _, _)| rtt.p50_us <= direct.p50_us + 1000.0);
    let paced_loss = 1.0 - paced_recv as f64 / paced_sent.max(1) as f64;
    let result = json!({
        "bench": "transport",
        "baseline_udp_rtt_us": { "p50": r1(udp.p50_us), "p99": r1(udp.p99_us) },
        "connect_ms": {
            "peers_2": { "runs": args.connect_runs_2, "pairs": c2p.count, "p50": r1(c2p.p50_us / 1e3), "max": r1(c2p.max_us / 1e3) },
            "peers_8": { "runs": args.connect_runs_8, "pairs": c8p.count, "p50": r1(c8p.p50_us / 1e3), "max": r1(c8p.max_us / 1e3) },
        },
        "datachannel_rtt_64b_us": { "p50": r1(direct.p50_us), "p99": r1(direct.p99_us), "lost": direct_lost },
        "reliable_1kib_mib_per_s": { "runs": tp_runs, "min": r1(mib(tp.first().copied().unwrap_or(0.0))), "median": r1(mib(median)), "max": r1(mib(tp.last().copied().unwrap_or(0.0))) },
        "unreliable_paced": { "rate_per_s": 60 * 32, "bytes": 200, "sent": paced_sent, "received": paced_recv, "loss": paced_loss },
        "unreliable_blast": { "sent": blast_sent, "received": blast_recv, "dropped_at_sender_buffer_full": blast_dropped },
        "relay": relay_json,
        "rss_per_connected_peer_kb": r1(rss_per_conn / 1e3),
        "targets": {
            "connect_2_p50_ms_max": 100, "connect_2_ok": c2p.p50_us / 1e3 <= 100.0,
            "connect_8_p50_ms_max": 300, "connect_8_ok": c8p.p50_us / 1e3 <= 300.0,
            "rtt_p50_max_x_udp": 3, "rtt_ok": direct.p50_us <= 3.0 * udp.p50_us,
            "relay_rtt_max_over_direct_us": 1000, "relay_ok": relay_ok,
            "paced_loss_max": 0, "paced_ok": paced_recv == paced_sent,
            "rss_per_peer_kb_max": 2000, "rss_ok": rss_per_conn <= 2e6,
        },
        "total_seconds": r1(started.elapsed().as_secs_f64()),
    });
    println!("{result}");
    if let Some(path) = &args.write_docs {
        let relay_row = relay.as_ref().map_or("| RTT through coturn relay (64 B) | not measured (no coturn) | ≤ direct + 1 ms |\n".to_string(), |(rtt, _, connect)| {
            format!("| RTT through coturn relay (64 B), p50 / p99 | {:.0} / {:.0} µs (connect p50 {:.1} ms) | ≤ direct + 1,000 µs |\n", rtt.p50_us, rtt.p99_us, connect.p50_us / 1e3)
        });
        let table = format!(
            "| figure | measured | target |\n|---|---|---|\n\
             | raw UDP round trip on loopback (baseline), p50 / p99 | {:.0} / {:.0} µs | — |\n\
             | data-channel RTT, 64 B, game thread to game thread, p50 / p99 | {:.0} / {:.0} µs | p50 ≤ 3× UDP = {:.0} µs |\n\
             | lobby join → all channels open, 2 peers, p50 / max | {:.1} / {:.1} ms | p50 ≤ 100 ms |\n\
             | lobby join → all channels open, 8 peers (full mesh), p50 / max | {:.1} / {:.1} ms | p50 ≤ 300 ms |\n\
             | reliable 1 KiB throughput, min / median / max of {} runs | {:.1} / {:.1} / {:.1} MiB/s | — |\n\
             | unreliable paced, 60 Hz × 32 × 200 B | {} of {} delivered | loss 0 |\n\
             | unreliable blast, 200 B | {} of {} delivered ({} dropped at the full send buffer) | — |\n\
             {relay_row}\
             | RSS per connected peer (8-player mesh) | {:.0} KB | ≤ 2,000 KB |\n",
            udp.p50_us,
            udp.p99_us,
            direct.p50_us,
            direct.p99_us,
            3.0 * udp.p50_us,
            c2p.p50_us / 1e3,
            c2p.max_us / 1e3,
            c8p.p50_us / 1e3,
            c8p.max_us / 1e3,
            tp.len(),
            mib(tp.first().copied().unwrap_or(0.0)),
            mib(median),
            mib(tp.last().copied().unwrap_or(0.0)),
            paced_recv,
            paced_sent,
            blast_recv,
            blast_sent,
            blast_dropped,
            rss_per_conn / 1e3,
        );
        let body = format!("{table}\nRaw output of the run:\n\n```json\n{result:#}\n```\n");
        update_docs_section(path, "transport", &body)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("wrote figures to {}", path.display());
    }
    Ok(())
}
