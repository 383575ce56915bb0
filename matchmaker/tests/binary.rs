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
