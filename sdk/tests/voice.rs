//! Voice between two peers over real WebRTC: a speech WAV in on one side, a WAV out on the
//! other, compared by their level envelopes (Opus keeps what is heard, not the exact wave).
#![cfg(feature = "voice")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use squadlink::voice::{
    AudioInput, AudioOutput, Voice, VoiceConfig, VoiceEvent, VoiceMode, WavSource,
};
use squadlink::{LobbyRef, Session, SessionBuilder};
use squadlink_testkit::audio::{envelope_match, fine_delay, read_mono, speech_fixture};
use support::{code, connected, matchmaker};

fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("squadlink-voice-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn pair(url: &str, sender_loss: f64) -> (Session, Session) {
    let a = SessionBuilder::new(url)
        .bind("127.0.0.1:0".parse().unwrap())
        .join(LobbyRef::create(2))
        .start_async()
        .await
        .unwrap();
    let b = SessionBuilder::new(url)
        .bind("127.0.0.1:0".parse().unwrap())
        .join(LobbyRef::Code(code(&a)))
        .start_async()
        .await
        .unwrap();
    connected(&a, 1).await;
    connected(&b, 1).await;
    // Loss from now on: what it does to voice, not to the handshake.
    a.set_simulated_loss(sender_loss);
    (a, b)
}

struct Outcome {
    correlation: f32,
    delay: Duration,
    listener_events: Vec<VoiceEvent>,
    stats: squadlink::voice::VoiceStats,
    fec_tuned_for: u8,
}

/// Sends the speech fixture from a to b; returns how well b's recording matches it.
async fn talk(name: &str, sender_loss: f64) -> Outcome {
    let dir = workdir(name);
    let speech = speech_fixture(&dir);
    let out = dir.join("heard.wav");
    let server = matchmaker().await;
    let (a, b) = pair(&server.url(), sender_loss).await;

    let listener = Voice::start(
        &b,
        VoiceConfig::default()
            .input(AudioInput::None)
            .output(AudioOutput::Wav(out.clone())),
    )
    .unwrap();
    let source = WavSource::open(&speech).unwrap();
    let finished = source.finished_flag();
    let talker = Voice::start(
        &a,
        VoiceConfig::default()
            .mode(VoiceMode::VoiceActivity)
            .input(AudioInput::Source(Box::new(source)))
            .output(AudioOutput::None),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut fec_tuned_for = 0;
    while !finished.load(Ordering::Relaxed) {
        assert!(
            Instant::now() < deadline,
            "the speech never finished playing"
        );
        fec_tuned_for = fec_tuned_for.max(talker.send_stats().fec_loss_percent);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let peer_a = a.id().unwrap();
    let stats = listener.stats(peer_a).expect("voice stats for the talker");
    let sent = talker.send_stats();
    assert!(sent.packets_sent > 100, "{sent:?}");
    let listener_events = listener.poll_events();
    talker.stop();
    listener.stop();

    let (input, rate) = read_mono(&speech);
    let (output, out_rate) = read_mono(&out);
    assert_eq!(out_rate, 48_000);
    assert!(output.len() > input.len() / 2, "the recording is too short");
    let (correlation, coarse) = envelope_match(&input, &output, rate, Duration::from_secs(2));
    let delay = fine_delay(&input, &output, rate, coarse);
    let _ = std::fs::remove_dir_all(&dir);
    drop((a, b));
    server.shutdown().await.unwrap();
    Outcome {
        correlation,
        delay,
        listener_events,
        stats,
        fec_tuned_for,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_crosses_over_webrtc() {
    let o = talk("clean", 0.0).await;
    eprintln!(
        "clean: correlation {:.3}, delay {:?}, stats {:?}",
        o.correlation, o.delay, o.stats
    );
    assert!(o.correlation > 0.85, "correlation {}", o.correlation);
    // The recording lags the source by the pipeline, the network and the start-up of the
    // two voices (about 260 ms here), not by seconds. A sanity bound, not a latency
    // measurement (bench_voice measures that): 300 ms was hit by a busy machine.
    assert!(o.delay >= Duration::from_millis(20), "delay {:?}", o.delay);
    assert!(o.delay <= Duration::from_secs(1), "delay {:?}", o.delay);
    assert!(o.stats.late <= 5, "{:?}", o.stats);
    assert!(o.stats.decoded > 200, "{:?}", o.stats);
    assert!(
        o.listener_events
            .iter()
            .any(|e| matches!(e, VoiceEvent::SpeakingStarted { .. }))
    );
    assert!(
        o.listener_events
            .iter()
            .any(|e| matches!(e, VoiceEvent::SpeakingStopped { .. }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_survives_five_percent_loss() {
    let o = talk("loss", 0.05).await;
    eprintln!(
        "5% loss: correlation {:.3}, delay {:?}, stats {:?}, FEC tuned for {}%",
        o.correlation, o.delay, o.stats, o.fec_tuned_for
    );
    assert!(o.correlation > 0.75, "correlation {}", o.correlation);
    assert!(o.stats.lost > 0, "no loss seen: {:?}", o.stats);
    // The receiver reported the loss, the sender turned FEC on, and frames were rebuilt.
    assert!(
        o.fec_tuned_for >= 2,
        "FEC tuned for {}% loss",
        o.fec_tuned_for
    );
    assert!(o.stats.fec_recovered > 0, "{:?}", o.stats);
}

/// Speech through `Voice::loopback` on emulated sound cards with 5 ms periods, the speaker's
/// offset from the microphone's as two cards' would be: the SDK's device code
/// (`DeviceSource`, `DeviceSink` with its just-in-time rendering) and the whole pipeline.
/// With push-to-talk, the key is held only from `key_down` on (the speech starts 1 s after
/// that, so the paused noise suppression and encoder must restart cleanly). Returns the
/// envelope correlation, the packets sent while the key was up, and the speaker's
/// callbacks.
fn through_emulated_cards(push_to_talk: bool) -> (f32, u64, u64) {
    use squadlink::voice::measure::{emulated_microphone, emulated_speaker};
    use std::sync::{Arc, Mutex};

    let dir = workdir(if push_to_talk {
        "emulated-ptt"
    } else {
        "emulated"
    });
    let speech = speech_fixture(&dir);
    let (input, rate) = read_mono(&speech);
    let mut samples = squadlink::voice::measure::read_wav_mono_48k(&speech).unwrap();
    let lead_in = if push_to_talk { 96_000 } else { 0 };
    samples.splice(0..0, std::iter::repeat_n(0.0, lead_in));
    let seconds = samples.len() as f64 / 48_000.0;
    let start = Instant::now() + Duration::from_millis(100);
    let mut pos = 0;
    let mic = emulated_microphone(240, start, move |_, buf| {
        for s in buf.iter_mut() {
            *s = samples.get(pos).copied().unwrap_or(0.0);
            pos += 1;
        }
    })
    .unwrap();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let ear = Arc::clone(&heard);
    let speaker = emulated_speaker(240, start + Duration::from_micros(1700), move |_, b| {
        let mut heard = ear.lock().unwrap();
        heard.extend(b.chunks_exact(2).map(|f| 0.5 * (f[0] + f[1])));
    })
    .unwrap();
    let counters = speaker.counters();
    let mode = if push_to_talk {
        VoiceMode::PushToTalk
    } else {
        VoiceMode::OpenMic
    };
    let voice = Voice::loopback(
        VoiceConfig::default()
            .mode(mode)
            .input(AudioInput::Source(Box::new(mic)))
            .output(AudioOutput::Sink(Box::new(speaker))),
        1,
    )
    .unwrap();
    let mut sent_with_key_up = 0;
    if push_to_talk {
        std::thread::sleep(Duration::from_secs(1) + Duration::from_millis(100));
        sent_with_key_up = voice.send_stats().packets_sent;
        voice.set_push_to_talk(true);
        std::thread::sleep(Duration::from_secs_f64(seconds - 1.0));
    } else {
        std::thread::sleep(Duration::from_secs_f64(seconds + 1.0));
    }
    voice.stop();
    let output = heard.lock().unwrap().clone();
    let (correlation, delay) = envelope_match(&input, &output, rate, Duration::from_secs(3));
    let callbacks = counters.callbacks.load(Ordering::Relaxed);
    eprintln!(
        "emulated cards, push-to-talk {push_to_talk}: correlation {correlation:.3}, delay \
         {delay:?}, {callbacks} callbacks, {} short",
        counters.short_callbacks.load(Ordering::Relaxed)
    );
    let _ = std::fs::remove_dir_all(&dir);
    (correlation, sent_with_key_up, callbacks)
}

#[test]
fn speech_crosses_emulated_sound_cards() {
    let (correlation, _, callbacks) = through_emulated_cards(false);
    assert!(correlation > 0.85, "correlation {correlation}");
    // 5 ms periods for several seconds.
    assert!(callbacks > 1000, "{callbacks} callbacks");
}

/// Push-to-talk with the key up sends nothing (and does no processing); held down after a
/// rest, it sends the speech cleanly.
#[test]
fn push_to_talk_after_a_rest_sends_clean_speech() {
    let (correlation, sent_with_key_up, _) = through_emulated_cards(true);
    assert_eq!(sent_with_key_up, 0);
    assert!(correlation > 0.85, "correlation {correlation}");
}
