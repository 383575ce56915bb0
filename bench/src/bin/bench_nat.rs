//! NAT matrix benchmark: builds the NAT lab (network namespaces; needs root), connects a
//! player of every network kind to one of every other kind `--runs` times with the
//! `nat_check` example, and reports per pair the path ICE chose and the connect time
//! (median over the runs, the slower side of each run). Prints JSON on stdout and a table
//! on stderr; `--write-docs docs/networking.md` puts the table there.
//!
//! Run: `scripts/bench.sh nat` (builds nat_check and the matchmaker in release mode first).

use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Serialize;
use squadlink_bench::{median, run_main, udp_baseline, update_docs_section};
use squadlink_testkit::netlab::{Matrix, Nat, PairOutcome, cheapest_path, pairs};

/// Connects every pair of network kinds in the NAT lab and times it.
#[derive(Parser, Debug)]
struct Args {
    /// Connections per pair.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Write the table into this Markdown file (between bench:nat-matrix markers).
    #[arg(long)]
    write_docs: Option<PathBuf>,
}

#[derive(Serialize, Debug)]
struct Cell {
    a: &'static str,
    b: &'static str,
    expected_path: &'static str,
    paths: Vec<String>,
    relay_transports: Vec<String>,
    connect_ms: Vec<f64>,
    connect_ms_median: Option<f64>,
    connected: usize,
    runs: usize,
}

impl Cell {
    fn new(a: &'static str, b: &'static str, expected_path: &'static str, runs: usize) -> Cell {
        Cell {
            a,
            b,
            expected_path,
            paths: Vec::new(),
            relay_transports: Vec::new(),
            connect_ms: Vec::new(),
            connect_ms_median: None,
            connected: 0,
            runs,
        }
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    run_main(run(args))
}

/// `nat_check` and `squadlink-matchmaker`, next to this binary.
fn binaries() -> Result<(PathBuf, PathBuf), String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let nat_check = me.with_file_name("nat_check");
    let matchmaker = me.with_file_name("squadlink-matchmaker");
    for b in [&nat_check, &matchmaker] {
        if !b.exists() {
            return Err(format!(
                "{} is missing: build it first (scripts/bench.sh nat does)",
                b.display()
            ));
        }
    }
    Ok((nat_check, matchmaker))
}

fn record(cell: &mut Cell, out: &PairOutcome) {
    let ok = out.a.ok && out.b.ok;
    if ok {
        cell.connected += 1;
    }
    let path = match (&out.a.path, &out.b.path) {
        (Some(a), Some(b)) if a == b => a.clone(),
        (a, b) => format!(
            "{}/{}",
            a.as_deref().unwrap_or("-"),
            b.as_deref().unwrap_or("-")
        ),
    };
    cell.paths.push(path);
    let transports: Vec<&str> = [&out.a.relay_transport, &out.b.relay_transport]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    cell.relay_transports.push(transports.join("+"));
    if let (Some(a), Some(b)) = (out.a.connect_ms, out.b.connect_ms) {
        cell.connect_ms.push(a.max(b));
    }
}

async fn run(args: Args) -> Result<(), String> {
    let udp = udp_baseline().await?;
    let (nat_check, matchmaker) = binaries()?;
    eprintln!("building the NAT lab…");
    let m = Matrix::build(&matchmaker)?;
    let mut cells = Vec::new();
    for (a, b) in pairs() {
        let mut cell = Cell::new(a.name(), b.name(), cheapest_path(a, b), args.runs);
        for run in 0..args.runs {
            eprint!("{} ↔ {} run {}… ", a.name(), b.name(), run + 1);
            let out = m.run(&nat_check, a, b)?;
            record(&mut cell, &out);
            eprintln!(
                "{:?} {:?}",
                cell.paths.last(),
                cell.connect_ms.last().map(|ms| format!("{ms:.0} ms"))
            );
        }
        cell.connect_ms_median = median(&cell.connect_ms);
        cells.push(cell);
    }
    let mut lan = Cell::new("same-lan", "same-lan", "host", args.runs);
    for _ in 0..args.runs {
        m.lab.flush_conntrack();
        let out = m.lab.pair(&nat_check, &m.lan.0, &m.lan.1, &[])?;
        record(&mut lan, &out);
    }
    lan.connect_ms_median = median(&lan.connect_ms);

    let table = table(&cells, &lan, udp.p50_us, args.runs);
    eprintln!("\n{table}");
    let json = serde_json::json!({
        "udp_rtt_loopback_p50_us": udp.p50_us,
        "runs_per_pair": args.runs,
        "pairs": cells,
        "same_lan": lan,
    });
    println!("{json}");
    if let Some(path) = &args.write_docs {
        write_docs(path, &table)?;
    }
    let all = cells
        .iter()
        .chain([&lan])
        .all(|c| c.connected == c.runs && c.paths.iter().all(|p| p == c.expected_path));
    if all {
        Ok(())
    } else {
        Err("some pair did not connect, or not on its cheapest path (see the table)".into())
    }
}

fn table(cells: &[Cell], lan: &Cell, udp_p50_us: f64, runs: usize) -> String {
    let mut t = String::new();
    t.push_str(&format!(
        "Median connect time (ms, the slower side, from learning of the peer to all channels \
         open) and path, over {runs} runs per pair. Raw UDP round trip on loopback in the same \
         run: {udp_p50_us:.0} µs.\n\n"
    ));
    t.push_str("| | ");
    t.push_str(
        &Nat::ALL
            .iter()
            .map(|n| n.name())
            .collect::<Vec<_>>()
            .join(" | "),
    );
    t.push_str(" |\n|---|");
    t.push_str(&"---|".repeat(Nat::ALL.len()));
    t.push('\n');
    for row in Nat::ALL {
        t.push_str(&format!("| **{}** |", row.name()));
        for col in Nat::ALL {
            let cell = cells.iter().find(|c| {
                (c.a == row.name() && c.b == col.name()) || (c.a == col.name() && c.b == row.name())
            });
            t.push_str(&format!(" {} |", cell.map(describe).unwrap_or_default()));
        }
        t.push('\n');
    }
    t.push_str(&format!(
        "\nSame LAN (two players behind one cone router): {}.\n",
        describe(lan)
    ));
    t
}

fn describe(c: &Cell) -> String {
    let mut paths = c.paths.clone();
    paths.dedup();
    let path = paths.join(", ");
    let mut transports: Vec<String> = c
        .relay_transports
        .iter()
        .filter(|s| !s.is_empty())
        .cloned()
        .collect();
    transports.sort();
    transports.dedup();
    let via = if transports.is_empty() {
        String::new()
    } else {
        format!(" ({})", transports.join(", "))
    };
    let ms = c
        .connect_ms_median
        .map(|m| format!(" {m:.0} ms"))
        .unwrap_or_default();
    let failed = if c.connected < c.runs {
        format!(" **{}/{} connected**", c.connected, c.runs)
    } else {
        String::new()
    };
    format!("{path}{via}{ms}{failed}")
}

fn write_docs(path: &Path, table: &str) -> Result<(), String> {
    update_docs_section(path, "nat-matrix", table).map_err(|e| format!("{}: {e}", path.display()))
}
