//! After an interruption: how long the reliable channel lags the path's return. Two
//! sessions on loopback through a matchmaker of their own; the path between them is cut
//! (`Session::set_simulated_network_from`, everything lost, at both ends) for a set time
//! while one side keeps sending as a game does — an unreliable message every 20 ms and a
//! reliable one every 200 ms, of each size asked for — then restored. Timed from the
//! restore: the first unreliable message to arrive and the first reliable one (SCTP
//! retransmits what it holds when its retransmission timer next fires; the timer doubled
//! at every expiry during the cut, from 1 s up to 60 s).
//!
//! Why it matters: a game's reliable events lag a healed link by up to about the length
//! of the cut. Its unreliable state resumes at once only while little reliable data was in
//! flight: after the timer's expiry SCTP's congestion window is one packet, and while more
//! than that is outstanding nothing new leaves, unreliable data included (the second size
//! shows it). The replicon backend's `Beacon` exists because of the first (docs/game-state.md).
//!
//! Run: `cargo run --release -p squadlink-bench --bin bench_heal` (scripts/bench.sh heal);
//! `--write-docs docs/performance.md` records the figures.

use std::time::{Duration, Instant};

use clap::Parser;
use serde::Serialize;
use squadlink::{Channel, ChannelKind, LobbyRef, NetworkConditions, Session, SessionBuilder};
use squadlink_bench::{first_peer, local_matchmaker, update_docs_section};

const RELIABLE: Channel = Channel(0);
const UNRELIABLE: Channel = Channel(1);

#[derive(Parser, Debug)]
#[command(about = "How long the reliable channel lags a healed path")]
struct Args {
    /// Cut lengths to measure, seconds (up to 14: past the session's 15 s limit for a
    /// silent peer in ICE restarts it is given up, and nothing heals).
    #[arg(long, value_delimiter = ',', default_value = "2,4,6,8,10,12,14")]
    cuts: Vec<u64>,
    /// Sizes of the reliable messages sent during the cut, bytes (one row per size and
    /// cut).
    #[arg(long, value_delimiter = ',', default_value = "4,1000")]
    sizes: Vec<usize>,
    /// Longest wait after the restore, seconds.
    #[arg(long, default_value_t = 70)]
    wait: u64,
    /// Record the figures in this Markdown file.
    #[arg(long)]
    write_docs: Option<std::path::PathBuf>,
}

#[derive(Serialize)]
struct Row {
    cut_s: u64,
    reliable_bytes: usize,
    reliable_sent_during_cut: u32,
    /// Restore → first unreliable message received (ms).
    unreliable_ms: Option<f64>,
    /// Restore → first reliable message received (ms).
    reliable_ms: Option<f64>,
    /// Restore → every reliable message sent during the cut received (ms).
    all_reliable_ms: Option<f64>,
}

async fn session(url: &str, lobby: LobbyRef) -> Result<Session, String> {
    SessionBuilder::new(url)
        .bind(([127, 0, 0, 1], 0).into())
        .channel(ChannelKind::ReliableOrdered)
        .channel(ChannelKind::Unreliable)
        .join(lobby)
        .start_async()
        .await
        .map_err(|e| e.to_string())
}

async fn measure(cut: u64, size: usize, wait: Duration) -> Result<Row, String> {
    let server = local_matchmaker().await?;
    let url = server.url();
    let a = session(&url, LobbyRef::create(2)).await?;
    let code = a.lobby().map(|l| l.code).ok_or("no lobby code")?;
    let b = session(&url, LobbyRef::Code(code)).await?;
    let (bid, aid) = (first_peer(&a).await?, first_peer(&b).await?);
    let lost = NetworkConditions::default().with_loss(1.0);
    a.set_simulated_network_from(bid, lost);
    b.set_simulated_network_from(aid, lost);
    let start = Instant::now();
    let mut sent = 0u32;
    let mut tick = 0u32;
    while start.elapsed() < Duration::from_secs(cut) {
        if tick.is_multiple_of(10) {
            a.send(bid, RELIABLE, &vec![sent as u8; size.max(1)])
                .map_err(|e| format!("sending during the cut: {e}"))?;
            sent += 1;
        }
        let _ = a.send(bid, UNRELIABLE, b"state");
        tick += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.set_simulated_network_from(bid, NetworkConditions::default());
    b.set_simulated_network_from(aid, NetworkConditions::default());
    let healed = Instant::now();
    let ms = || healed.elapsed().as_secs_f64() * 1e3;
    let (mut unreliable, mut reliable, mut all) = (None, None, None);
    let mut received = 0u32;
    while healed.elapsed() < wait && (all.is_none() || unreliable.is_none()) {
        // Unreliable traffic as a game's state would be: every 20 ms.
        let _ = a.send(bid, UNRELIABLE, b"state");
        if b.receive(UNRELIABLE).count() > 0 && unreliable.is_none() {
            unreliable = Some(ms());
        }
        for _ in b.receive(RELIABLE) {
            received += 1;
            reliable = reliable.or(Some(ms()));
            if received == sent {
                all = Some(ms());
            }
        }
        for _ in a.poll_events().chain(b.poll_events()) {}
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop((a, b));
    let _ = server.shutdown().await;
    Ok(Row {
        cut_s: cut,
        reliable_bytes: size,
        reliable_sent_during_cut: sent,
        unreliable_ms: unreliable,
        reliable_ms: reliable,
        all_reliable_ms: all,
    })
}

fn cell(v: Option<f64>) -> String {
    v.map_or("not within the wait".into(), |ms| {
        format!("{:.2} s", ms / 1e3)
    })
}

async fn run(args: Args) -> Result<(), String> {
    let wait = Duration::from_secs(args.wait);
    let mut rows = Vec::new();
    for &size in &args.sizes {
        for &cut in &args.cuts {
            eprintln!("bench_heal: a {cut} s cut, {size}-byte reliable messages ...");
            let row = measure(cut, size, wait).await?;
            eprintln!(
                "bench_heal: {cut} s cut, {size} B: unreliable {}, reliable {}",
                cell(row.unreliable_ms),
                cell(row.reliable_ms)
            );
            rows.push(row);
        }
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?
    );
    if let Some(path) = &args.write_docs {
        let mut body = String::from(
            "| reliable message size | cut | reliable messages sent during it | restore → first unreliable | restore → first reliable | restore → all reliable |\n|---|---|---|---|---|---|\n",
        );
        for r in &rows {
            body.push_str(&format!(
                "| {} B | {} s | {} | {} | {} | {} |\n",
                r.reliable_bytes,
                r.cut_s,
                r.reliable_sent_during_cut,
                cell(r.unreliable_ms),
                cell(r.reliable_ms),
                cell(r.all_reliable_ms)
            ));
        }
        update_docs_section(path, "heal", &body).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    squadlink_bench::run_main(run(Args::parse()))
}
