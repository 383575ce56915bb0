//! Runs the transport benchmark small and checks what it reports about correctness (never
//! its timings): every measurement ran, paced unreliable traffic lost nothing on loopback,
//! every unreliable blast message was delivered or counted as dropped at the sender, and the
//! relay (coturn) path carried the echo.

// Test code: a failed expectation should panic, loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

#[test]
fn transport_bench_runs_small_and_accounts_for_every_message() {
    let (j, stderr) = support::run_json(
        env!("CARGO_BIN_EXE_bench_transport"),
        &[
            "--connect-runs-2",
            "1",
            "--connect-runs-8",
            "1",
            "--pings",
            "50",
            "--throughput-runs",
            "1",
            "--throughput-seconds",
            "0.3",
            "--paced-seconds",
            "0.3",
            "--blast",
            "2000",
        ],
    );
    assert_eq!(j["connect_ms"]["peers_2"]["pairs"], 2);
    assert_eq!(j["connect_ms"]["peers_8"]["pairs"], 56);
    assert!(j["reliable_1kib_mib_per_s"]["median"].as_f64().unwrap() > 0.0);
    assert_eq!(
        j["unreliable_paced"]["received"],
        j["unreliable_paced"]["sent"]
    );
    let blast = &j["unreliable_blast"];
    let accounted = blast["received"].as_u64().unwrap()
        + blast["dropped_at_sender_buffer_full"].as_u64().unwrap();
    assert_eq!(Some(accounted), blast["sent"].as_u64());
    assert_eq!(
        j["relay"]["lost"], 0,
        "coturn is installed by scripts/setup.sh: {stderr}"
    );
    assert!(j["relay"]["rtt_us"]["p50"].as_f64().unwrap() > 0.0);
}
