//! Runs the example binaries small and checks what they report about correctness, never
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

/// Runs the quickstart (embedded matchmaker, real WebRTC on loopback) and checks what it
/// reports about correctness, never its timings: everyone connected to everyone, over host
/// paths, and every reliable event arrived at every other player.
#[test]
fn quickstart_connects_everyone_and_delivers_every_event() {
    let _serial = serial();
    let (json, _) = squadlink_testkit::run_json(
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

/// Real clocked audio devices: a PulseAudio daemon of the test's own with null sinks. Two
/// `voice_lobby` players use them through cpal's PulseAudio host: speech played into A's
/// virtual microphone (a null sink's monitor) is recorded from B's speaker (another null
/// sink's monitor) and compared with what was played.
#[test]
fn voice_lobby_talks_through_pulseaudio_devices() {
    use squadlink_testkit::audio::{PulseAudio, envelope_match, read_mono, speech_fixture};
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let _serial = serial();
    let dir = std::env::temp_dir().join(format!("squadlink-voice-devices-{}", std::process::id()));
    let speech = speech_fixture(&dir);
    let pulse = PulseAudio::start(&["mic_a", "spk_a", "mic_b", "spk_b"]);
    let port = squadlink_testkit::free_port();
    let (url, started) = squadlink_matchmaker::ensure_local(port).unwrap();
    assert!(started);
    let bin = env!("CARGO_BIN_EXE_voice_lobby");
    let player = |name: &str, extra: &[&str], input: &str, output: &str| {
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let mut cmd = pulse.command(bin);
        cmd.args([
            "--matchmaker",
            &url,
            "--input-device",
            input,
            "--output-device",
            output,
        ])
        .args(["--mode", "open", "--seconds", "25", "--json"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
        cmd.spawn().expect("voice_lobby runs")
    };
    let mut a = player("a", &["--wait-for", "1"], "Monitor of mic_a", "spk_a");
    let mut a_out = BufReader::new(a.stdout.take().unwrap());
    let mut line = String::new();
    a_out.read_line(&mut line).unwrap();
    let code = line
        .trim()
        .strip_prefix("LOBBY ")
        .expect("a LOBBY line")
        .to_string();
    let mut b = player(
        "b",
        &["--lobby", &code, "--wait-for", "1"],
        "Monitor of mic_b",
        "spk_b",
    );

    // Record B's speaker, then speak into A's microphone once both are in.
    std::thread::sleep(Duration::from_secs(3));
    let heard = dir.join("heard.raw");
    let mut rec = pulse
        .command("parecord")
        .args([
            "-d",
            "spk_b.monitor",
            "--raw",
            "--format=s16le",
            "--rate=48000",
            "--channels=1",
        ])
        .arg(&heard)
        .spawn()
        .expect("parecord runs (pulseaudio-utils)");
    // Let the recording start before the speech does.
    std::thread::sleep(Duration::from_secs(1));
    let played = pulse
        .command("paplay")
        .args(["-d", "mic_a"])
        .arg(&speech)
        .status()
        .expect("paplay runs");
    assert!(played.success());
    std::thread::sleep(Duration::from_secs(2));
    let _ = Command::new("kill")
        .args(["-INT", &rec.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while rec.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = rec.kill();
    for p in [&mut a, &mut b] {
        let _ = Command::new("kill")
            .args(["-TERM", &p.id().to_string()])
            .status();
        let _ = p.kill();
        let _ = p.wait();
    }

    let (input, rate) = read_mono(&speech);
    let output: Vec<f32> = std::fs::read(&heard)
        .unwrap()
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect();
    assert!(
        output.len() > 48_000 * 5,
        "recorded only {} samples",
        output.len()
    );
    let (correlation, delay) = envelope_match(&input, &output, rate, Duration::from_secs(4));
    eprintln!("devices: correlation {correlation:.3}, delay {delay:?}");
    assert!(
        correlation > 0.8,
        "what B played does not match what A heard (r = {correlation});\nA: {}\nB: {}\npulse log:\n{}",
        std::fs::read_to_string(dir.join("a.log")).unwrap_or_default(),
        std::fs::read_to_string(dir.join("b.log")).unwrap_or_default(),
        pulse.log()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// No sound system at all (PULSE_SERVER points nowhere, no ALSA card): voice reports both
/// devices unavailable, and the player still joins the lobby and connects.
#[test]
fn voice_lobby_without_sound_devices_still_connects() {
    let _serial = serial();
    let port = squadlink_testkit::free_port();
    let (url, _) = squadlink_matchmaker::ensure_local(port).unwrap();
    let bin = env!("CARGO_BIN_EXE_voice_lobby");
    let mut host = std::process::Command::new(bin)
        .args([
            "--matchmaker",
            &url,
            "--seconds",
            "8",
            "--wait-for",
            "1",
            "--json",
        ])
        .env("PULSE_SERVER", "unix:/nonexistent/squadlink-test")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(host.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let code = line.trim().strip_prefix("LOBBY ").unwrap().to_string();
    let (json, stderr) = squadlink_testkit::run_json_env(
        bin,
        &[
            "--matchmaker",
            &url,
            "--lobby",
            &code,
            "--seconds",
            "3",
            "--json",
        ],
        &[("PULSE_SERVER", "unix:/nonexistent/squadlink-test")],
    );
    let _ = host.kill();
    let _ = host.wait();
    assert_eq!(json["peers"], 1, "{stderr}");
    let devices = json["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2, "{json}");
    for d in devices {
        assert!(d["error"].as_str().is_some_and(|e| !e.is_empty()), "{json}");
    }
}
