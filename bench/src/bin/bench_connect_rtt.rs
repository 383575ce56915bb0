//! Connecting, counted in round trips: sessions on `squadlink::testing::TestNet` (the real
//! session core and WebRTC engine, datagrams carried in memory, simulated time), from the
//! moment the last member joins to every member connected to every other, divided by the
//! path's round trip. A count of round trips does not depend on the machine, so this
//! figure is exact and repeatable; a browser pair needs about 6 (signaling, ICE, two for
//! DTLS, two for SCTP), and each one we add shows here. Rows: 2 peers and an 8-peer mesh at
//! several round trips without loss (the count is the same whatever the latency), and with
//! 5 % loss (the median over seeds: a lost handshake datagram waits for its
//! retransmission timer, which the count then shows).
//!
//! Prints JSON on stdout and a table on stderr; `--write-docs docs/performance.md` puts
//! the table there.
//!
//! Run: `cargo run --release -p squadlink-bench --bin bench_connect_rtt`

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Serialize;
use serde_json::json;
use squadlink::testing::TestNet;
use squadlink::{ChannelKind, NetworkConditions, Session};
use squadlink_bench::{median, update_docs_section};

/// Counts the round trips from joining to connected, in memory.
#[derive(Parser, Debug)]
struct Args {
    /// Seeds per lossy row (median reported).
    #[arg(long, default_value_t = 9)]
    seeds: u64,
    /// Write the table into this Markdown file (between bench:connect-rtt markers).
    #[arg(long)]
    write_docs: Option<PathBuf>,
}

#[derive(Serialize, Debug)]
struct Row {
    peers: usize,
    rtt_ms: u64,
    loss: f64,
    /// Join of the last member → all connected, in round trips, one per seed.
    round_trips: Vec<f64>,
    median: f64,
    worst: f64,
}

/// `peers` sessions on a path of `rtt` with `loss`: the round trips from the last join to
/// everyone connected, or `None` when they did not connect within 60 s of simulated time.
fn connect(peers: usize, rtt: Duration, loss: f64, seed: u64) -> Result<Option<f64>, String> {
    let net = TestNet::seeded(NetworkConditions::latency(rtt / 2).with_loss(loss), seed);
    let sessions = (0..peers)
        .map(|_| {
            net.join(
                Session::builder("ws://in-memory")
                    .channel(ChannelKind::ReliableOrdered)
                    .channel(ChannelKind::Unreliable),
            )
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let joined = net.elapsed();
    let connected = net.run_until(Duration::from_secs(60), || {
        sessions
            .iter()
            .all(|s| s.connected_peers().len() == peers - 1)
    });
    let took = net.elapsed().saturating_sub(joined);
    Ok(connected.then(|| took.as_secs_f64() / rtt.as_secs_f64()))
}

fn row(peers: usize, rtt_ms: u64, loss: f64, seeds: u64) -> Result<Row, String> {
    let mut round_trips = Vec::new();
    for seed in 1..=seeds {
        let rtts = connect(peers, Duration::from_millis(rtt_ms), loss, seed)?.ok_or_else(|| {
            format!("{peers} peers, {rtt_ms} ms, loss {loss}, seed {seed}: not connected in 60 s")
        })?;
        round_trips.push((rtts * 100.0).round() / 100.0);
    }
    Ok(Row {
        peers,
        rtt_ms,
        loss,
        median: median(&round_trips).unwrap_or(f64::NAN),
        worst: round_trips.iter().copied().fold(0.0, f64::max),
        round_trips,
    })
}

fn run(args: &Args) -> Result<(), String> {
    let mut rows = Vec::new();
    for peers in [2, 8] {
        for rtt_ms in [20, 50, 150] {
            rows.push(row(peers, rtt_ms, 0.0, 1)?);
        }
        rows.push(row(peers, 50, 0.05, args.seeds)?);
    }
    let mut table = String::from(
        "| peers | round trip | loss | join → all connected, round trips (median) | worst seed |\n|---|---|---|---|---|\n",
    );
    for r in &rows {
        table.push_str(&format!(
            "| {} | {} ms | {:.0} % | {:.2} | {:.2} |\n",
            r.peers,
            r.rtt_ms,
            r.loss * 100.0,
            r.median,
            r.worst
        ));
    }
    let seeds = args.seeds;
    let body = format!(
        "Sessions on `squadlink::testing::TestNet` (real core and WebRTC engine, datagrams in \
         memory, simulated time), `bench_connect_rtt`: from the last member's join to every \
         member connected to every other, in round trips of the path. Without loss, one \
         seed; with loss, the median of {seeds} seeds.\n\n{table}"
    );
    eprint!("{body}");
    if let Some(path) = &args.write_docs {
        update_docs_section(path, "connect-rtt", &body).map_err(|e| e.to_string())?;
    }
    println!("{}", json!({ "rows": rows }));
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run(&Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
