//! Video between peers over real WebRTC: a test pattern coded as VP8 on one side, decoded
//! frames compared with what was sent on the other (PSNR from the frame counter drawn in the
//! picture), a late joiner served a keyframe, and lost packets healed through RTCP PLI.
#![cfg(feature = "video")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::{Duration, Instant};

use squadlink::video::measure::{capture_log, psnr_rgba};
use squadlink::video::{TestPattern, Video, VideoConfig, VideoEvent, VideoInput};
use squadlink::{LobbyRef, PeerId, Session, SessionBuilder};
use support::{code, connected, matchmaker};

const W: u32 = 320;
const H: u32 = 240;

async fn join(url: &str, lobby: LobbyRef) -> Session {
    SessionBuilder::new(url)
        .bind("127.0.0.1:0".parse().unwrap())
        .join(lobby)
        .start_async()
        .await
        .unwrap()
}

/// What a receiver saw of one sender.
#[derive(Debug, Default)]
struct Seen {
    frame_ids: Vec<u64>,
    counters: Vec<u64>,
    psnr: Vec<f64>,
    latency_ms: Vec<f64>,
}

/// Takes `sender`'s frames from `video` until `n` arrived or `within` passed, checking each
/// against the test pattern frame its counter names.
async fn watch(
    video: &Video,
    sender: PeerId,
    log: &squadlink::video::measure::CaptureLog,
    n: usize,
    within: Duration,
) -> Seen {
    let reference = TestPattern::new(W, H, 15).unwrap();
    let mut seen = Seen::default();
    let deadline = Instant::now() + within;
    while seen.frame_ids.len() < n && Instant::now() < deadline {
        if let Some(frame) = video.take_frame(sender) {
            assert_eq!((frame.width, frame.height), (W, H));
            let counter = TestPattern::read_counter(W, H, &frame.rgba)
                .expect("the frame counter is readable in every decoded frame");
            let sent = reference.draw(counter).to_rgba();
            seen.psnr.push(psnr_rgba(&sent, &frame.rgba).unwrap());
            if let Some(at) = log.captured_at(counter) {
                seen.latency_ms
                    .push(frame.decoded_at.duration_since(at).as_secs_f64() * 1000.0);
            }
            seen.frame_ids.push(frame.frame_id);
            seen.counters.push(counter);
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    seen
}

/// Starts video in `session` sending the test pattern; returns it with the pattern's
/// capture times.
fn send_pattern(session: &Session) -> (Video, squadlink::video::measure::CaptureLog) {
    let pattern = TestPattern::new(W, H, 15).unwrap();
    let log = capture_log(&pattern);
    let video = Video::start(
        session,
        VideoConfig::default().input(VideoInput::Source(Box::new(pattern))),
    )
    .unwrap();
    (video, log)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_pattern_arrives_decoded_and_in_order() {
    let server = matchmaker().await;
    let url = server.url();
    let a = join(&url, LobbyRef::create(2)).await;
    let b = join(&url, LobbyRef::Code(code(&a))).await;
    let a_id = connected(&b, 1).await[0];
    let b_id = connected(&a, 1).await[0];

    let (sender, log) = send_pattern(&a);
    // b sends no video: a peer without video is fine on both sides.
    let receiver = Video::start(&b, VideoConfig::default()).unwrap();

    let seen = watch(&receiver, a_id, &log, 45, Duration::from_secs(20)).await;
    eprintln!(
        "{} frames; PSNR median {:.1} dB, min {:.1} dB; glass-to-glass median {:.1} ms",
        seen.frame_ids.len(),
        median(&seen.psnr),
        min(&seen.psnr),
        median(&seen.latency_ms)
    );
    assert!(
        seen.frame_ids.len() >= 45,
        "only {} frames arrived",
        seen.frame_ids.len()
    );
    assert!(
        seen.frame_ids.windows(2).all(|w| w[1] > w[0]),
        "frame ids increase: {:?}",
        seen.frame_ids
    );
    // The picture ID counts encoded frames: it moves exactly as the drawn counter does.
    for (ids, counters) in seen.frame_ids.windows(2).zip(seen.counters.windows(2)) {
        assert_eq!(ids[1] - ids[0], counters[1] - counters[0]);
    }
    assert!(min(&seen.psnr) >= 30.0, "PSNR per frame: {:?}", seen.psnr);
    assert_eq!(
        seen.latency_ms.len(),
        seen.frame_ids.len(),
        "every frame's capture time is known"
    );

    let stats = receiver.stats(a_id).unwrap();
    assert!(
        stats.frames_decoded >= 45 && stats.decode_errors == 0,
        "{stats:?}"
    );
    let sent = sender.send_stats();
    assert!(
        sent.frames_sent >= 45 && sent.keyframes_sent >= 1,
        "{sent:?}"
    );
    assert!(a.stats(b_id).unwrap().video_packets_sent > 0);
    assert!(receiver.stats(PeerId(999)).is_none());
    assert!(matches!(
        sender.poll_events().first(),
        Some(VideoEvent::SourceStarted { .. })
    ));
    // Nothing came from b.
    assert!(sender.take_frame(b_id).is_none());

    // Stopping the source stops the frames; the session goes on.
    sender.stop_input().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = receiver.take_frame(a_id);
    let decoded = receiver.stats(a_id).unwrap().frames_decoded;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        receiver.stats(a_id).unwrap().frames_decoded,
        decoded,
        "frames after stop"
    );
    assert!(receiver.take_frame(a_id).is_none());

    // A source that fails (an unplugged camera) is an event; video and the session go on,
    // and another source can take over.
    sender
        .set_input(VideoInput::Source(Box::new(Broken)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let ended = loop {
        let events = sender.poll_events();
        if let Some(reason) = events.iter().find_map(|e| match e {
            VideoEvent::SourceEnded { reason } => Some(reason.clone()),
            _ => None,
        }) {
            break reason;
        }
        assert!(Instant::now() < deadline, "no SourceEnded event");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(ended.contains("unplugged"), "{ended}");
    sender.set_input(VideoInput::TestPattern).unwrap();
    let again = watch(&receiver, a_id, &log, 5, Duration::from_secs(10)).await;
    assert!(
        !again.frame_ids.is_empty(),
        "video resumed after a failed source"
    );
    assert!(a.connected_peers().contains(&b_id));
    sender.stop();
    receiver.stop();
}

/// A source whose device goes away at once.
struct Broken;

impl squadlink::video::VideoSource for Broken {
    fn next_frame(
        &mut self,
        _timeout: Duration,
    ) -> Result<Option<squadlink::video::I420Frame>, squadlink::video::VideoError> {
        Err(squadlink::video::VideoError::Source(
            "camera unplugged".into(),
        ))
    }

    fn describe(&self) -> String {
        "a broken camera".into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_gets_a_keyframe_and_loss_is_healed_by_pli() {
    let server = matchmaker().await;
    let url = server.url();
    let a = join(&url, LobbyRef::create(3)).await;
    let (sender, log) = send_pattern(&a);
    // The stream is well under way before anyone joins.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let keyframes_before = sender.send_stats().keyframes_sent;

    let b = join(&url, LobbyRef::Code(code(&a))).await;
    let a_id = connected(&b, 1).await[0];
    connected(&a, 1).await;
    let receiver = Video::start(&b, VideoConfig::default()).unwrap();
    // From now on every datagram the sender sends or receives has a 3 % chance of being
    // lost: VP8 frames of several packets lose one now and then, and the receiver must ask
    // for a keyframe (RTCP PLI).
    a.set_simulated_loss(0.03);
    let seen = watch(&receiver, a_id, &log, 120, Duration::from_secs(40)).await;
    let stats = receiver.stats(a_id).unwrap();
    let sent = sender.send_stats();
    eprintln!(
        "{} frames; PSNR min {:.1} dB; receiver {stats:?}; sender {sent:?}",
        seen.frame_ids.len(),
        min(&seen.psnr)
    );
    assert!(
        seen.frame_ids.len() >= 60,
        "only {} frames arrived",
        seen.frame_ids.len()
    );
    // The first frame it decoded came after it joined, so a keyframe was made for it.
    assert!(sent.keyframes_sent > keyframes_before, "{sent:?}");
    // Frames were lost, asked for and healed: no corrupted picture was ever shown.
    assert!(
        stats.frames_dropped > 0 && stats.keyframes_requested > 0,
        "{stats:?}"
    );
    assert!(min(&seen.psnr) >= 30.0, "PSNR per frame: {:?}", seen.psnr);
    assert!(seen.frame_ids.windows(2).all(|w| w[1] > w[0]));
    sender.stop();
    receiver.stop();
}
