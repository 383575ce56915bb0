//! The `replicated_arena` example, headless, as three processes through the real matchmaker
//! over real WebRTC: the host serves a replicated world; it is killed (SIGKILL, no goodbye);
//! the first of the line of succession serves on from the world it holds and the third
//! member follows it, over the links they already had. The server's frame counter goes on
//! without a reset, and the squares keep their identities.
//!
//! Run: `cargo test -p squadlink-bevy-examples --test replicated` (scripts/test.sh does).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One `STATUS` line.
#[derive(Debug, Clone, PartialEq)]
struct Status {
    me: u64,
    server: u64,
    local: bool,
    epoch: u32,
    ticks: u64,
    squares: Vec<String>,
}

fn parse(line: &str) -> Option<Status> {
    let rest = line.strip_prefix("STATUS ")?;
    let field = |name: &str| {
        rest.split(' ')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_string)
    };
    Some(Status {
        me: field("me")?.parse().ok()?,
        server: field("server")?.parse().ok()?,
        local: field("local")? == "true",
        epoch: field("epoch")?.parse().ok()?,
        ticks: field("ticks")?.parse().ok()?,
        squares: field("squares")?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

/// A member process and everything it printed.
struct Member {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Member {
    fn start(url: &str, lobby: Option<&str>) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_replicated_arena"));
        cmd.args(["--headless", "--seconds", "120", "--matchmaker", url]);
        if let Some(code) = lobby {
            cmd.args(["--lobby", code]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn last(&self) -> Option<Status> {
        self.lines().iter().rev().find_map(|l| parse(l))
    }

    fn statuses(&self) -> Vec<Status> {
        self.lines().iter().filter_map(|l| parse(l)).collect()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "not reached in {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

#[test]
fn when_the_host_process_is_killed_another_member_serves_on_and_the_third_follows() {
    let mm = squadlink_matchmaker::Embedded::start().unwrap();
    let url = mm.url();
    let mut host = Member::start(&url, None);
    let mut code = None;
    wait("the host's lobby", Duration::from_secs(60), || {
        code = host
            .lines()
            .iter()
            .find_map(|l| l.strip_prefix("LOBBY ").map(str::to_string));
        code.is_some()
    });
    let code = code.unwrap();
    let b = Member::start(&url, Some(&code));
    let c = Member::start(&url, Some(&code));
    let host_id = {
        let mut id = 0;
        wait("the host serves", Duration::from_secs(30), || {
            id = host.last().filter(|s| s.local).map_or(0, |s| s.me);
            id != 0
        });
        id
    };
    wait(
        "three squares everywhere, and a line",
        Duration::from_secs(60),
        || {
            [&host, &b, &c].iter().all(|m| {
                m.last()
                    .is_some_and(|s| s.server == host_id && s.squares.len() == 3 && s.ticks > 120)
            })
        },
    );
    let before: Vec<Status> = [&b, &c].iter().map(|m| m.last().unwrap()).collect();
    let squares_before = before[0].squares.clone();

    host.child.kill().unwrap(); // SIGKILL: no goodbye to anyone
    host.child.wait().unwrap();
    let taken = wait(
        "one serves, the other follows",
        Duration::from_secs(15),
        || {
            let (Some(sb), Some(sc)) = (b.last(), c.last()) else {
                return false;
            };
            sb.epoch == 1
                && sc.epoch == 1
                && sb.server == sc.server
                && sb.server != host_id
                && (sb.local ^ sc.local)
        },
    );
    eprintln!("hand-over done {taken:?} after the kill");

    // The counter goes on from where it was on every survivor: never back to zero.
    wait("the counter moves on", Duration::from_secs(10), || {
        [&b, &c]
            .iter()
            .zip(&before)
            .all(|(m, was)| m.last().is_some_and(|s| s.ticks > was.ticks + 60))
    });
    for (m, was) in [&b, &c].iter().zip(&before) {
        let after: Vec<u64> = m
            .statuses()
            .iter()
            .filter(|s| s.epoch == 1)
            .map(|s| s.ticks)
            .collect();
        assert!(
            after.iter().all(|t| *t + 5 >= was.ticks),
            "the counter went back: {} then {after:?}",
            was.ticks
        );
    }
    // The host's square went with it; the others' kept their identities, none duplicated.
    wait("two squares", Duration::from_secs(10), || {
        [&b, &c]
            .iter()
            .all(|m| m.last().is_some_and(|s| s.squares.len() == 2))
    });
    for m in [&b, &c] {
        let now = m.last().unwrap().squares;
        assert!(
            now.iter().all(|id| squares_before.contains(id)),
            "{now:?} are not among {squares_before:?}"
        );
    }
    // Each survivor saw one hand-over, each under a second from its detection.
    for m in [&b, &c] {
        let gaps: Vec<f64> = m
            .lines()
            .iter()
            .filter_map(|l| l.strip_prefix("HANDOVER "))
            .filter_map(|l| l.split("gap_ms=").nth(1)?.parse().ok())
            .collect();
        assert_eq!(gaps.len(), 1, "one hand-over: {gaps:?}");
        eprintln!("hand-over gap after detection: {gaps:?} ms");
        assert!(gaps[0] < 1000.0, "{gaps:?}");
    }
}
