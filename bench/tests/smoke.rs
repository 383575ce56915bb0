//! Runs the benchmark binaries small and checks what they report about correctness, never
//! their timings.

// Test code: a failed expectation should panic, loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

/// The binaries measure things; running two at once on a 2-core machine would only make
/// each slower (and could push an echo past its timeout). One at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs the cluster benchmark small, and checks what it reports about correctness (never
/// its timings): both setups held every connection, relayed signals arrived, every paced
/// one arrived, the cluster's pairs crossed nodes, and every player of the killed node
/// resumed its place under its peer id.
#[test]
fn cluster_bench_runs_small_and_every_killed_nodes_player_resumes() {
    let _serial = serial();
    let (json, _) = squadlink_testkit::run_json(
        env!("CARGO_BIN_EXE_bench_cluster"),
        &[
            "--connections",
            "120",
            "--relay-pairs",
            "10",
            "--relay-seconds",
            "0.5",
            "--latency-rate",
            "200",
            "--latency-seconds",
            "0.5",
        ],
    );
    for setup in ["single", "cluster"] {
        let s = &json[setup];
        assert_eq!(s["connections"], 120, "{setup}");
        assert!(s["relay"]["delivered"].as_u64().unwrap() > 0, "{setup}");
        let sent = s["latency"]["sent"].as_u64().unwrap();
        assert!(sent > 0, "{setup}");
        assert_eq!(s["latency"]["received"].as_u64(), Some(sent), "{setup}");
        assert!(
            s["join_latency_us"]["count"].as_u64().unwrap() > 0,
            "{setup}"
        );
    }
    let c = &json["cluster"];
    assert_eq!(c["relay"]["pairs_crossing_nodes"], c["relay"]["pairs"]);
    let players = c["failover"]["players"].as_u64().unwrap();
    assert!(players > 0);
    assert_eq!(
        c["failover"]["resumed_same_peer_id"].as_u64(),
        Some(players)
    );
    assert_eq!(c["failover"]["failed"], 0);
}

/// Runs the matchmaker benchmark binary small, and checks what it reports about correctness
/// (never its timings): every connection made it into a lobby, every paced signal arrived,
/// every spoof attempt was rejected and none was delivered.
#[test]
fn matchmaker_bench_runs_small_and_no_spoof_gets_through() {
    let _serial = serial();
    let (json, _) = squadlink_testkit::run_json(
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

/// Runs the transport benchmark small and checks what it reports about correctness (never
/// its timings): every measurement ran, paced unreliable traffic lost nothing on loopback,
/// every unreliable blast message was delivered or counted as dropped at the sender, and the
/// relay (coturn) path carried the echo.
#[test]
fn transport_bench_runs_small_and_accounts_for_every_message() {
    let _serial = serial();
    let (j, stderr) = squadlink_testkit::run_json(
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

/// Runs the connect-in-round-trips benchmark with one seed and checks its rows: every
/// configuration connected, and without loss the count is the one the session core's unit
/// test pins (round trips of simulated time do not depend on the machine).
#[test]
fn connect_rtt_bench_connects_every_row() {
    let _serial = serial();
    let (j, _) =
        squadlink_testkit::run_json(env!("CARGO_BIN_EXE_bench_connect_rtt"), &["--seeds", "1"]);
    let rows = j["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8);
    for row in rows {
        let median = row["median"].as_f64().unwrap();
        assert!(median.is_finite() && median > 0.0, "{row}");
        if row["loss"].as_f64() == Some(0.0) && row["rtt_ms"].as_u64() != Some(20) {
            assert_eq!(median, 9.5, "{row}");
        }
    }
}
