//! Authority hand-over (issue 17): how long a replicated game goes without a server when
//! its host's process is killed. Three `replicated_arena --headless` processes (bevy_replicon
//! over Squadlink) meet through a matchmaker on loopback; once the world replicates, the
//! host is killed (SIGKILL, no goodbye) and the survivors' `AUTHORITY` and `HANDOVER` lines
//! are timed as they arrive.
//!
//! Figures per run: kill → the new server serves, kill → the third member follows it, and
//! the gap each survivor reports from its own detection of the loss to serving or following
//! (the goal: under 1 s). The baseline beside them, measured in the same run: when
//! the session itself gives the killed host up (`PeerInterrupted`, after its ICE restarts),
//! which a game without the backend's own silence detection would wait for.
//!
//! Run: `cargo build --release -p squadlink-bevy-examples --bin replicated_arena` then
//! `cargo run --release -p squadlink-bench --bin bench_handover` (scripts/bench.sh handover
//! does both); `--write-docs docs/performance.md` records the figures.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Serialize;
use squadlink_bench::{median, update_docs_section};

#[derive(Parser, Debug)]
#[command(about = "Authority hand-over after the host's process is killed")]
struct Args {
    /// Kills to time.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// The replicated_arena binary (default: beside this one).
    #[arg(long)]
    arena: Option<PathBuf>,
    /// Record the figures in this Markdown file.
    #[arg(long)]
    write_docs: Option<PathBuf>,
}

/// A member process and its stdout lines with their arrival times.
struct Member {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Member {
    fn start(arena: &PathBuf, url: &str, lobby: Option<&str>) -> Result<Self, String> {
        let mut cmd = Command::new(arena);
        cmd.args(["--headless", "--seconds", "90", "--matchmaker", url]);
        if let Some(code) = lobby {
            cmd.args(["--lobby", code]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", arena.display()))?;
        let out = child
            .stdout
            .take()
            .ok_or_else(|| "no stdout from replicated_arena".to_string())?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(mut v) = sink.lock() {
                    v.push((Instant::now(), line));
                }
            }
        });
        Ok(Self { child, lines })
    }

    fn lines(&self) -> Vec<(Instant, String)> {
        self.lines.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The first line after `since` that starts with `prefix` and contains `needle`.
    fn first(&self, since: Instant, prefix: &str, needle: &str) -> Option<(Instant, String)> {
        self.lines()
            .into_iter()
            .find(|(at, l)| *at >= since && l.starts_with(prefix) && l.contains(needle))
    }

    fn field(&self, prefix: &str, name: &str) -> Option<String> {
        self.lines().iter().rev().find_map(|(_, l)| {
            l.strip_prefix(prefix)?
                .split(' ')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=').map(str::to_string))
        })
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return Err(format!("not reached in {limit:?}: {what}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct Run {
    kill_to_serving_ms: f64,
    kill_to_following_ms: f64,
    gap_new_server_ms: f64,
    gap_follower_ms: f64,
    /// The baseline: kill → the session itself gives the host up (PeerInterrupted).
    kill_to_session_verdict_ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn one_run(arena: &PathBuf, url: &str) -> Result<Run, String> {
    let mut host = Member::start(arena, url, None)?;
    let mut code = None;
    wait("the host's lobby", Duration::from_secs(60), || {
        code = host
            .lines()
            .iter()
            .find_map(|(_, l)| l.strip_prefix("LOBBY ").map(str::to_string));
        code.is_some()
    })?;
    let code = code.unwrap_or_default();
    let b = Member::start(arena, url, Some(&code))?;
    let c = Member::start(arena, url, Some(&code))?;
    wait("the world replicates", Duration::from_secs(60), || {
        [&host, &b, &c].iter().all(|m| {
            m.field("STATUS ", "squares")
                .is_some_and(|s| s.split(',').count() == 3)
                && m.field("STATUS ", "ticks")
                    .and_then(|t| t.parse::<u64>().ok())
                    .is_some_and(|t| t > 180)
        })
    })?;
    let killed = Instant::now();
    host.child.kill().map_err(|e| format!("kill: {e}"))?;
    let _ = host.child.wait();
    let mut serving = None;
    let mut following = None;
    wait(
        "a new server and its client",
        Duration::from_secs(20),
        || {
            for m in [&b, &c] {
                if let Some((at, _)) = m.first(killed, "AUTHORITY", "epoch=1 local=true") {
                    serving = Some((at, m.field("HANDOVER ", "gap_ms")));
                }
                if let Some((at, _)) = m.first(killed, "AUTHORITY", "epoch=1 local=false") {
                    following = Some((at, m.field("HANDOVER ", "gap_ms")));
                }
            }
            serving.as_ref().is_some_and(|s| s.1.is_some())
                && following.as_ref().is_some_and(|f| f.1.is_some())
        },
    )?;
    let (Some((served_at, Some(gap_new))), Some((followed_at, Some(gap_follower)))) =
        (serving, following)
    else {
        return Err("hand-over lines missing".into());
    };
    // The baseline: what a game that waited for the session's own verdict would wait.
    let host_id = b.field("AUTHORITY ", "previous").unwrap_or_default();
    let host_id = host_id
        .trim_start_matches("Some(")
        .trim_end_matches(')')
        .to_string();
    let mut verdict = None;
    wait(
        "the session's own verdict on the host",
        Duration::from_secs(40),
        || {
            verdict = b.first(killed, "PEER_INTERRUPTED", &format!("peer={host_id}"));
            verdict.is_some()
        },
    )?;
    let verdict_at = verdict.map_or(killed, |(at, _)| at);
    let parse = |s: &str| s.parse::<f64>().map_err(|e| format!("gap_ms={s}: {e}"));
    Ok(Run {
        kill_to_session_verdict_ms: ms(verdict_at.saturating_duration_since(killed)),
        kill_to_serving_ms: ms(served_at.saturating_duration_since(killed)),
        kill_to_following_ms: ms(followed_at.saturating_duration_since(killed)),
        gap_new_server_ms: parse(&gap_new)?,
        gap_follower_ms: parse(&gap_follower)?,
    })
}

async fn run(args: Args) -> Result<(), String> {
    let arena = match args.arena {
        Some(p) => p,
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("replicated_arena"),
    };
    if !arena.exists() {
        return Err(format!(
            "{} not found: build it first (cargo build --release -p squadlink-bevy-examples \
             --bin replicated_arena), or pass --arena",
            arena.display()
        ));
    }
    let server = squadlink_matchmaker::Server::bind(squadlink_matchmaker::Config {
        listen: "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let url = server.url();
    let mut runs = Vec::new();
    for i in 0..args.runs {
        let arena = arena.clone();
        let url = url.clone();
        let r = tokio::task::spawn_blocking(move || one_run(&arena, &url))
            .await
            .map_err(|e| e.to_string())??;
        eprintln!(
            "bench_handover: run {}/{}: kill→serving {:.0} ms, kill→following {:.0} ms, gaps after detection {:.1} / {:.1} ms",
            i + 1,
            args.runs,
            r.kill_to_serving_ms,
            r.kill_to_following_ms,
            r.gap_new_server_ms,
            r.gap_follower_ms
        );
        runs.push(r);
    }
    let med = |f: fn(&Run) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0);
    let worst = |f: fn(&Run) -> f64| runs.iter().map(f).fold(0.0, f64::max);
    let summary = serde_json::json!({
        "runs": runs,
        "median": {
            "kill_to_serving_ms": med(|r| r.kill_to_serving_ms),
            "kill_to_following_ms": med(|r| r.kill_to_following_ms),
            "gap_new_server_ms": med(|r| r.gap_new_server_ms),
            "gap_follower_ms": med(|r| r.gap_follower_ms),
            "kill_to_session_verdict_ms": med(|r| r.kill_to_session_verdict_ms),
        },
        "worst_gap_ms": worst(|r| r.gap_new_server_ms).max(worst(|r| r.gap_follower_ms)),
        "detection_threshold_ms": 1500.0,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?
    );
    if let Some(path) = &args.write_docs {
        let body = format!(
            "Measured by `bench_handover` ({} kills of a 3-member `replicated_arena`, {} build, \
             loopback; the hand-over's own work is one frame of the 60 Hz headless loop):\n\n\
             | figure | median | worst |\n|---|---|---|\n\
             | kill → the new server serves | {:.0} ms | {:.0} ms |\n\
             | kill → the third member follows it | {:.0} ms | {:.0} ms |\n\
             | detection → serving (new server) | {:.1} ms | {:.1} ms |\n\
             | detection → following (third member) | {:.1} ms | {:.1} ms |\n\
             | baseline: kill → the session's own verdict on the host | {:.0} ms | {:.0} ms |\n\n\
             A detection gap of 0 ms means the member served or followed in the frame it \
             found the loss, or heard the new server before it found the loss itself. \
             Detection is the backend's silence threshold, 1,500 ms (three missed pings of \
             the session's two a second). The baseline is what a game would wait for without \
             it: the session's own verdict (`PeerInterrupted`), which first tries ICE \
             restarts for its 15 s window.\n\n",
            runs.len(),
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            med(|r| r.kill_to_serving_ms),
            worst(|r| r.kill_to_serving_ms),
            med(|r| r.kill_to_following_ms),
            worst(|r| r.kill_to_following_ms),
            med(|r| r.gap_new_server_ms),
            worst(|r| r.gap_new_server_ms),
            med(|r| r.gap_follower_ms),
            worst(|r| r.gap_follower_ms),
            med(|r| r.kill_to_session_verdict_ms),
            worst(|r| r.kill_to_session_verdict_ms),
        );
        update_docs_section(path, "handover", &body).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    squadlink_bench::run_main(run(Args::parse()))
}
