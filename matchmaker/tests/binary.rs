//! The `squadlink-matchmaker` binary itself: it serves, mints tokens that it then accepts,
//! and on SIGTERM closes every client with `server_shutdown` and exits cleanly.

// Test code: a failed expectation should panic, loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use squadlink_protocol::{ClientMessage, ErrorCode, ServerMessage};
use squadlink_testkit::free_port;
use support::Client;

#[tokio::test]
async fn binary_accepts_its_own_tokens_and_shuts_down_on_sigterm() {
    let exe = env!("CARGO_BIN_EXE_squadlink-matchmaker");
    let minted = Command::new(exe)
        .args(["mint-token", "--player", "dana", "--ttl", "60"])
        .env("SQUADLINK_AUTH_SECRET", "bin-secret")
        .output()
        .unwrap();
    assert!(minted.status.success());
    let token = String::from_utf8(minted.stdout).unwrap().trim().to_string();

    let port = free_port();
    let mut child = Command::new(exe)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--dev-mode",
            "off",
        ])
        .env("SQUADLINK_AUTH_SECRET", "bin-secret")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the "listening" log line.
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "the matchmaker did not start");
        match lines.next() {
            Some(Ok(line)) if line.contains("matchmaker listening") => break,
            Some(Ok(_)) => continue,
            _ => panic!("matchmaker exited early"),
        }
    }

    let url = format!("ws://127.0.0.1:{port}/v1?token={token}");
    let mut c = Client::connect(&url).await;
    c.send(&ClientMessage::Hello {
        rid: None,
        token: None,
        player_id: None,
    })
    .await;
    assert!(
        matches!(c.recv().await, ServerMessage::Welcome { player_id, .. } if player_id.as_str() == "dana")
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let closed = c.expect_closed().await;
    assert_eq!(closed.error, Some(ErrorCode::ServerShutdown));
    assert_eq!(
        closed.frame.map(|f| f.reason.to_string()).as_deref(),
        Some("server_shutdown")
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the matchmaker did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "clean exit, got {status}");
}

/// Starts the binary through `sh` (so `ulimit` can be set first) and collects its log lines
/// up to "matchmaker listening". `None` when it exits first: then the lines say why.
fn start_logged(ulimit: &str, args: &[&str]) -> (Option<std::process::Child>, Vec<String>) {
    let exe = env!("CARGO_BIN_EXE_squadlink-matchmaker");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("{ulimit} exec \"$0\" \"$@\""))
        .arg(exe)
        .args(["--listen", &listen])
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("SQUADLINK_AUTH_SECRET")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        let listening = line.contains("matchmaker listening");
        seen.push(line);
        if listening {
            return (Some(child), seen);
        }
    }
    let _ = child.wait();
    (None, seen)
}

fn stop(child: Option<std::process::Child>) {
    if let Some(mut child) = child {
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn start_up_checks_the_file_limit_and_refuses_anonymous_beside_tokens_unless_allowed() {
    // Soft and hard limit 256, room for 1000 connections wanted: a warning with the numbers.
    let (child, lines) = start_logged(
        "ulimit -Sn 256 && ulimit -Hn 256 &&",
        &["--max-connections", "1000"],
    );
    let warning = lines.iter().find(|l| l.contains("RLIMIT_NOFILE"));
    assert!(
        warning.is_some_and(|l| l.contains("WARN") && l.contains("256") && l.contains("1576")),
        "{lines:#?}"
    );
    stop(child);

    // A low soft limit under a higher hard one is raised.
    let (child, lines) = start_logged("ulimit -Sn 256 &&", &["--max-connections", "1000"]);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("raised the soft file limit") && l.contains("1576")),
        "{lines:#?}"
    );
    stop(child);

    // Dev mode on beside an auth secret: refused, naming the flag that allows it.
    let (child, lines) = start_logged("", &["--dev-mode", "on", "--auth-secret", "s"]);
    assert!(child.is_none(), "it must not start");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("--allow-anonymous-with-auth-secret")),
        "{lines:#?}"
    );
    // Allowed explicitly: it starts, and warns.
    let (child, lines) = start_logged(
        "",
        &[
            "--dev-mode",
            "on",
            "--auth-secret",
            "s",
            "--allow-anonymous-with-auth-secret",
        ],
    );
    assert!(child.is_some(), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("anonymous players can connect")),
        "{lines:#?}"
    );
    stop(child);
}
