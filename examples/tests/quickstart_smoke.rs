//! Runs the quickstart (embedded matchmaker, real WebRTC on loopback) and checks what it
//! reports about correctness, never its timings: everyone connected to everyone, over host
//! paths, and every reliable event arrived at every other player.

// Test code: a failed expectation should panic, loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

#[test]
fn quickstart_connects_everyone_and_delivers_every_event() {
    let (json, _) = support::run_json(
        env!("CARGO_BIN_EXE_quickstart"),
        &["--json", "--peers", "3", "--duration", "1"],
    );
    assert_eq!(json["peers"], 3);
    assert_eq!(json["all_connected"], true);
    assert_eq!(
        json["paths"]["host"], 6,
        "3 peers × 2 connections each, all direct"
    );
    let events_sent = json["events_sent"].as_u64().unwrap();
    assert!(events_sent >= 3);
    assert_eq!(
        json["events_received"].as_u64(),
        Some(events_sent * 2),
        "reliable: every event reaches both others"
    );
    assert!(json["state_received"].as_u64().unwrap() > 0);
    assert!(json["state_received"].as_u64() <= Some(json["state_sent"].as_u64().unwrap() * 2));
}
