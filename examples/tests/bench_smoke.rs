//! Runs the matchmaker benchmark binary small, and checks what it reports about correctness
//! (never its timings): every connection made it into a lobby, every paced signal arrived,
//! every spoof attempt was rejected and none was delivered.

// Test code: a failed expectation should panic, loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

#[test]
fn matchmaker_bench_runs_small_and_no_spoof_gets_through() {
    let (json, _) = support::run_json(
        env!("CARGO_BIN_EXE_bench_matchmaker"),
        &[
            "--connections",
            "300",
            "--relay-pairs",
            "20",
            "--relay-seconds",
            "0.5",
            "--latency-rate",
            "200",
            "--latency-seconds",
            "0.5",
            "--spoofers",
            "60",
        ],
    );
    assert_eq!(json["connections"], 300);
    assert!(json["relay"]["delivered"].as_u64().unwrap() > 0);
    assert!(json["relay"]["delivered"].as_u64() <= json["relay"]["sent"].as_u64());
    let sent = json["latency"]["sent"].as_u64().unwrap();
    assert!(sent > 0);
    assert_eq!(
        json["latency"]["received"].as_u64(),
        Some(sent),
        "every relayed signal arrives"
    );
    let attempts = json["spoof"]["attempts"].as_u64().unwrap();
    assert!(attempts > 0);
    assert_eq!(json["spoof"]["rejected"].as_u64(), Some(attempts));
    assert_eq!(json["spoof"]["delivered"], 0);
    assert_eq!(json["other_errors"], 0);
}
