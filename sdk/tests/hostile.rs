//! Hostile peers over real WebRTC: each connects like any player, then misbehaves while the
//! victim keeps working with an honest peer and nothing panics.
//! - Garbage on every channel and on the hidden control channel (random bytes, fragments with
//!   count 0, an index past the count, huge counts, clashing message ids, a flood of
//!   messages it never finishes, truncated control frames): dropped and counted, partial
//!   messages bounded (the oldest dropped and counted), the peer reported.
//! - Garbage RTP on the audio and video tracks: the honest voice and video keep playing.
//! - A peer that never reads: the victim's send buffer to it is bounded, the refusals are
//!   reported, and the game disconnects it for good (by peer id and by player id).
//! - A game that does not read a channel: its inbox holds a bounded number of bytes and
//!   every message is kept or counted as dropped.
//! - Unreliable messages sent while a peer hears nothing: dropped once older than their
//!   lifetime, not queued and delivered seconds late.
//!
//! Needs the `fuzzing` feature for the hostile peer's raw sends.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;

use squadlink::{Channel, Event, LobbyRef, PeerId, Session};
use support::{ALL_KINDS, code, collect, connected, matchmaker, session, wait_for};

fn fragment(id: u32, index: u16, count: u16, body: &[u8]) -> Vec<u8> {
    let mut f = vec![0x01]; // the fragment tag
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&index.to_be_bytes());
    f.extend_from_slice(&count.to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// A small deterministic generator for "random bytes" (xorshift).
fn noise(seed: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed >> 24) as u8
        })
        .collect()
}

/// A victim, an honest peer and a hostile one in one lobby, all connected to each other.
struct Trio {
    victim: Session,
    honest: Session,
    hostile: Session,
    /// Their peer ids.
    vid: PeerId,
    hid: PeerId,
    bad: PeerId,
}

/// Starts a [`Trio`] through `mm`; `hostile` configures the hostile peer further.
async fn trio(
    mm: &squadlink_matchmaker::Server,
    hostile: impl FnOnce(squadlink::SessionBuilder) -> squadlink::SessionBuilder,
) -> Trio {
    let victim = session(&mm.url(), LobbyRef::create(4), &ALL_KINDS).await;
    let honest = session(&mm.url(), LobbyRef::Code(code(&victim)), &ALL_KINDS).await;
    let hostile = session_with(&mm.url(), LobbyRef::Code(code(&victim)), hostile).await;
    for s in [&victim, &honest, &hostile] {
        connected(s, 2).await;
    }
    Trio {
        vid: victim.id().unwrap(),
        hid: honest.id().unwrap(),
        bad: hostile.id().unwrap(),
        victim,
        honest,
        hostile,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_every_channel_is_dropped_counted_and_reported_and_nothing_else_breaks() {
    let mm = matchmaker().await;
    let Trio {
        victim,
        honest,
        hostile,
        vid,
        hid,
        bad,
    } = trio(&mm, |b| b).await;

    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let control = ALL_KINDS.len();
    for round in 0..20u32 {
        for index in 0..=control {
            let len = 1 + (round as usize * 37) % 600;
            hostile.hostile_send_raw(vid, index, &noise(&mut seed, len));
        }
        for reliable in [2, 3] {
            for frame in [
                fragment(round, 0, 0, b"count zero"),
                fragment(round, 5, 2, b"index past the count"),
                fragment(round, 0, u16::MAX, b"a huge count"),
                fragment(7, 0, 3, b"id 7 with three parts"),
                fragment(7, 1, 2, b"id 7 again with two"),
                vec![0x01, 0, 0],
                vec![0x77, 1, 2, 3],
                vec![],
            ] {
                hostile.hostile_send_raw(vid, reliable, &frame);
            }
            // A flood of messages that are started and never finished.
            for id in 0..50 {
                hostile.hostile_send_raw(
                    vid,
                    reliable,
                    &fragment(1000 + round * 50 + id, 0, 4, &[1; 900]),
                );
            }
        }
        hostile.hostile_send_raw(vid, 1, &[1, 2]); // a sequenced frame without its header
        hostile.hostile_send_raw(vid, control, &[1, 0, 0]); // a truncated ping
        hostile.hostile_send_raw(vid, control, &[9; 13]); // no such control frame
        // The honest peer talks the whole time.
        honest.send(vid, Channel(2), &round.to_be_bytes()).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The victim hears every honest message, in order (beside whatever of the hostile
    // peer's noise happened to be a valid frame).
    let got: Vec<u32> = collect(&victim, Channel(2), usize::MAX, Duration::from_secs(5))
        .await
        .into_iter()
        .filter(|(from, _)| *from == hid)
        .map(|(_, m)| u32::from_be_bytes(m[..4].try_into().unwrap()))
        .collect();
    assert_eq!(got, (0..20).collect::<Vec<_>>());

    // It was told who misbehaves, and counted it.
    let reported = wait_for(&victim, |e| match e {
        Event::PeerMisbehaved { peer, frame_errors } => Some((*peer, *frame_errors)),
        _ => None,
    })
    .await;
    assert_eq!(reported.0, bad);
    assert!(reported.1 >= 1);
    let stats = victim.stats(bad).expect("the hostile peer is still known");
    assert!(stats.frame_errors >= 20 * 6, "{stats:?}");
    assert!(
        stats.partials_dropped >= 20 * 2 * 20,
        "unfinished messages dropped and counted: {stats:?}"
    );
    let honest_stats = victim.stats(hid).unwrap();
    assert_eq!(honest_stats.frame_errors, 0);
    assert_eq!(honest_stats.partials_dropped, 0);

    // Everything still works both ways, the hostile peer included (it is only reported).
    honest.send(vid, Channel(3), b"after").unwrap();
    victim.send(hid, Channel(3), b"back").unwrap();
    let after = collect(&victim, Channel(3), usize::MAX, Duration::from_secs(3)).await;
    assert!(
        after
            .iter()
            .any(|(from, m)| *from == hid && &m[..] == b"after")
    );
    assert_eq!(
        collect(&honest, Channel(3), 1, Duration::from_secs(5))
            .await
            .len(),
        1
    );
    assert!(victim.connected_peers().contains(&bad));
}

/// A session in `lobby` with every channel kind, configured further by `more`.
async fn session_with(
    url: &str,
    lobby: LobbyRef,
    more: impl FnOnce(squadlink::SessionBuilder) -> squadlink::SessionBuilder,
) -> squadlink::Session {
    let mut b = squadlink::Session::builder(url)
        .bind("127.0.0.1:0".parse().unwrap())
        .join(lobby);
    for c in ALL_KINDS {
        b = b.channel(c);
    }
    more(b).start_async().await.expect("session starts")
}

/// Whether `s` reports `peer` connected within `within` (other events are dropped).
async fn connects_within(
    s: &squadlink::Session,
    peer: squadlink::PeerId,
    within: Duration,
) -> bool {
    tokio::time::timeout(within, async {
        loop {
            match s.next_event().await {
                Some(Event::PeerConnected { peer: p, .. }) if p == peer => return,
                Some(_) => {}
                None => std::future::pending::<()>().await,
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_fills_only_its_own_send_buffer_and_can_be_disconnected_for_good() {
    let mm = matchmaker().await;
    let Trio {
        victim,
        honest,
        hostile,
        vid,
        hid,
        bad,
    } = trio(&mm, |b| b.player_id("mallory")).await;

    // The hostile peer stays reachable (it answers ICE checks) but reads nothing more: no
    // acknowledgement comes back, so everything sent to it stays queued.
    hostile.hostile_deaf(true);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let chunk = vec![7u8; 64 * 1024];
    for _ in 0..400 {
        victim.send(bad, Channel(2), &chunk).unwrap(); // 25 MiB in all
    }
    let refused = wait_for(&victim, |e| match e {
        Event::Error(squadlink::Error::SendBufferFull { peer, .. }) => Some(*peer),
        _ => None,
    })
    .await;
    assert_eq!(refused, bad);

    // The honest peer is served the whole time, both ways.
    for i in 0..10u32 {
        honest.send(vid, Channel(2), &i.to_be_bytes()).unwrap();
        victim.send(hid, Channel(2), &i.to_be_bytes()).unwrap();
    }
    let heard = collect(&victim, Channel(2), 10, Duration::from_secs(5)).await;
    assert_eq!(heard.iter().filter(|(f, _)| *f == hid).count(), 10);
    assert_eq!(
        collect(&honest, Channel(2), 10, Duration::from_secs(5))
            .await
            .len(),
        10
    );

    // What waits for the hostile peer is bounded (16 MiB a channel, then refused and
    // counted), and the refusals were reported once, not once per message.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let stats = victim.stats(bad).expect("still connected");
    assert!(stats.send_queue_bytes <= 17 << 20, "{stats:?}");
    assert!(stats.refused_send_buffer_full >= 100, "{stats:?}");
    let told = victim
        .poll_events()
        .filter(|e| matches!(e, Event::Error(squadlink::Error::SendBufferFull { .. })))
        .count();
    assert!(told <= 1, "told {told} more times within a second");

    // The game disconnects it: for good.
    victim.disconnect(bad);
    let reason = wait_for(&victim, |e| match e {
        Event::PeerDisconnected { peer, reason } if *peer == bad => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason, squadlink::DisconnectReason::ClosedHere);
    assert!(victim.stats(bad).is_none());
    assert_eq!(victim.connected_peers(), vec![hid]);
    // It hears again and tries to come back (an ICE restart, or a new offer): refused.
    hostile.hostile_deaf(false);
    assert!(!connects_within(&victim, bad, Duration::from_secs(6)).await);

    // The same player in a new session (a new peer id) is refused too, while the honest
    // peer connects to it as usual.
    drop(hostile);
    let again = session_with(&mm.url(), LobbyRef::Code(code(&victim)), |b| {
        b.player_id("mallory")
    })
    .await;
    let again_id = again.id().unwrap();
    assert!(connects_within(&honest, again_id, Duration::from_secs(10)).await);
    assert!(!connects_within(&victim, again_id, Duration::from_secs(3)).await);
    assert_eq!(victim.connected_peers(), vec![hid]);
    honest.send(vid, Channel(3), b"still here").unwrap();
    assert_eq!(
        collect(&victim, Channel(3), 1, Duration::from_secs(5))
            .await
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_the_game_does_not_read_holds_its_limit_and_every_message_is_accounted_for() {
    const LIMIT: usize = 64 * 1024;
    let mm = matchmaker().await;
    let reader = session_with(&mm.url(), LobbyRef::create(2), |b| b.inbox_limit(LIMIT)).await;
    let sender = session(&mm.url(), LobbyRef::Code(code(&reader)), &ALL_KINDS).await;
    let (rid, sid) = (reader.id().unwrap(), sender.id().unwrap());
    connected(&reader, 1).await;
    connected(&sender, 1).await;

    // 200 KiB on a reliable channel that the game does not read.
    let body = vec![3u8; 1024];
    for i in 0..200u32 {
        let mut m = i.to_be_bytes().to_vec();
        m.extend_from_slice(&body);
        sender.send(rid, Channel(2), &m).unwrap();
    }
    let full = wait_for(&reader, |e| match e {
        Event::Error(squadlink::Error::InboxFull {
            peer,
            channel,
            limit,
        }) => Some((*peer, *channel, *limit)),
        _ => None,
    })
    .await;
    assert_eq!(full, (sid, Channel(2), LIMIT));
    // Every message arrived, and was either kept or dropped and counted.
    let mut stats = reader.stats(sid).unwrap();
    for _ in 0..50 {
        if stats.messages_received == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        stats = reader.stats(sid).unwrap();
    }
    assert_eq!(stats.messages_received, 200, "{stats:?}");
    let kept: Vec<u32> = reader
        .receive(Channel(2))
        .map(|(_, m)| u32::from_be_bytes(m[..4].try_into().unwrap()))
        .collect();
    let held: usize = kept.len() * (body.len() + 4);
    assert!(held <= LIMIT, "{held} bytes held");
    assert!(kept.len() >= 50, "{} kept", kept.len());
    assert_eq!(
        kept,
        (0..kept.len() as u32).collect::<Vec<_>>(),
        "the oldest are kept"
    );
    let stats = reader.stats(sid).unwrap();
    assert_eq!(kept.len() as u64 + stats.dropped_unread, 200, "{stats:?}");
    // Read, the channel takes messages again; other channels were never affected.
    sender.send(rid, Channel(2), b"after").unwrap();
    sender.send(rid, Channel(3), b"other").unwrap();
    let after = collect(&reader, Channel(2), 1, Duration::from_secs(5)).await;
    assert_eq!(&after[0].1[..], b"after");
    assert_eq!(
        collect(&reader, Channel(3), 1, Duration::from_secs(5))
            .await
            .len(),
        1
    );
}

#[cfg(all(feature = "voice", feature = "video"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_rtp_on_the_audio_and_video_tracks_leaves_the_honest_streams_playing() {
    use squadlink::video::{TestPattern, Video, VideoConfig, VideoInput};
    use squadlink::voice::{AudioInput, AudioOutput, Voice, VoiceConfig, VoiceMode};
    use std::time::Instant;

    let mm = matchmaker().await;
    let Trio {
        victim,
        honest,
        hostile,
        vid,
        hid,
        bad,
    } = trio(&mm, |b| b).await;

    let heard = std::env::temp_dir().join(format!("squadlink-hostile-{}.wav", std::process::id()));
    let listener = Voice::start(
        &victim,
        VoiceConfig::default()
            .input(AudioInput::None)
            .output(AudioOutput::Wav(heard.clone())),
    )
    .unwrap();
    let watcher = Video::start(&victim, VideoConfig::default()).unwrap();
    let talker = Voice::start(
        &honest,
        VoiceConfig::default()
            .mode(VoiceMode::OpenMic)
            .input(AudioInput::Manual)
            .output(AudioOutput::None),
    )
    .unwrap();
    let _camera = Video::start(
        &honest,
        VideoConfig::default().input(VideoInput::Source(Box::new(
            TestPattern::new(320, 240, 15).unwrap(),
        ))),
    )
    .unwrap();

    let tone = |from: usize| -> Vec<f32> {
        (from..from + 960)
            .map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / 48_000.0).sin() * 0.3)
            .collect()
    };
    // The honest streams are flowing before the attack.
    let mut sample = 0;
    let warm = Instant::now();
    let mut frames_before = 0;
    while warm.elapsed() < Duration::from_secs(2) {
        talker.push_capture(&tone(sample));
        sample += 960;
        while watcher.take_frame(hid).is_some() {
            frames_before += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(frames_before > 0, "no honest video before the attack");
    let decoded_before = listener.stats(hid).map_or(0, |s| s.decoded);

    // Four seconds of garbage RTP on both tracks. Most packets have plausible headers (the
    // track's payload type, the next sequence number, a timestamp that moves on) around
    // random payloads (empty to 1300 bytes; some start like a VP8 frame), so they pass
    // SRTP and reach our depacketizers and decoders; the rest have wild headers: sequence
    // numbers that jump, random timestamps and markers, payload types swapped between
    // the tracks or unknown.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut seqs = [0u16; 2];
    let mut frames_during = 0;
    let attack = Instant::now();
    let mut k = 0usize;
    while attack.elapsed() < Duration::from_secs(4) {
        talker.push_capture(&tone(sample));
        sample += 960;
        for _ in 0..10 {
            k += 1;
            let video = k.is_multiple_of(2);
            let mut payload = noise(&mut seed, (k * 97) % 1301);
            if k.is_multiple_of(4)
                && let Some(first) = payload.first_mut()
            {
                *first = 0x90; // a VP8 descriptor that starts a frame
            }
            let wild = k.is_multiple_of(5);
            let seq = &mut seqs[usize::from(video)];
            *seq = seq.wrapping_add(if wild && k.is_multiple_of(3) {
                30_000
            } else {
                1
            });
            let timestamp = if wild {
                u32::from_be_bytes(noise(&mut seed, 4).try_into().unwrap())
            } else {
                (k as u32) * 960
            };
            let payload_type = if wild {
                [Some(96), Some(97), Some(111), Some(0), Some(127)][k % 5]
            } else {
                None
            };
            hostile.hostile_send_rtp(vid, video, payload_type, *seq, timestamp, wild, &payload);
        }
        while watcher.take_frame(hid).is_some() {
            frames_during += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let decoded_during = listener.stats(hid).map_or(0, |s| s.decoded) - decoded_before;
    let from_bad = victim.stats(bad).expect("the hostile peer is connected");
    eprintln!(
        "during the attack: {frames_during} honest video frames, {decoded_during} honest voice \
         frames decoded; from the hostile peer {} voice and {} video packets arrived",
        from_bad.voice_packets_received, from_bad.video_packets_received
    );
    assert!(
        from_bad.voice_packets_received > 300 && from_bad.video_packets_received > 300,
        "the garbage reached the victim: {from_bad:?}"
    );
    // 15 fps and 50 voice frames a second for 4 s; half is plenty on a busy machine.
    assert!(frames_during >= 30, "{frames_during} honest video frames");
    assert!(
        decoded_during >= 100,
        "{decoded_during} honest voice frames"
    );
    eprintln!(
        "the hostile peer's voice: {:?}; video: {:?}",
        listener.stats(bad),
        watcher.stats(bad)
    );
    // It reached our own pipelines (not only the WebRTC stack), which dropped it.
    let (bad_voice, bad_video) = (listener.stats(bad).unwrap(), watcher.stats(bad).unwrap());
    assert!(bad_voice.packets_received > 300, "{bad_voice:?}");
    assert!(
        bad_video.frames_dropped + bad_video.decode_errors > 0 && bad_video.frames_decoded == 0,
        "{bad_video:?}"
    );
    let video_from_honest = watcher.stats(hid).unwrap();
    assert_eq!(video_from_honest.decode_errors, 0, "{video_from_honest:?}");

    // The data channels were never disturbed, and the offender can be dropped while the
    // media pipelines run.
    honest.send(vid, Channel(2), b"data").unwrap();
    assert_eq!(
        collect(&victim, Channel(2), 1, Duration::from_secs(5))
            .await
            .len(),
        1
    );
    victim.disconnect(bad);
    wait_for(&victim, |e| match e {
        Event::PeerDisconnected { peer, .. } if *peer == bad => Some(()),
        _ => None,
    })
    .await;
    let before = listener.stats(hid).map_or(0, |s| s.decoded);
    let after_drop = Instant::now();
    while after_drop.elapsed() < Duration::from_secs(1) {
        talker.push_capture(&tone(sample));
        sample += 960;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(listener.stats(hid).map_or(0, |s| s.decoded) > before);
    listener.stop();
    let _ = std::fs::remove_file(&heard);
}

/// What a sender's unreliable messages do while their receiver hears nothing: with a
/// lifetime of `lifetime`, how many of 300 sent during a 1.5 s deaf spell the receiver
/// gets once it hears again, and the sender's queue to it after the spell.
async fn late_unreliable_after_deaf_spell(lifetime: Option<Duration>) -> (usize, usize) {
    let mm = matchmaker().await;
    let sender = session_with(&mm.url(), LobbyRef::create(2), |b| match lifetime {
        Some(l) => b.unreliable_lifetime(l),
        None => b,
    })
    .await;
    let receiver = session_with(&mm.url(), LobbyRef::Code(code(&sender)), |b| b).await;
    connected(&sender, 1).await;
    connected(&receiver, 1).await;
    let rid = receiver.id().unwrap();

    receiver.hostile_deaf(true);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..300u32 {
        let mut msg = i.to_be_bytes().to_vec();
        msg.resize(100, 0);
        sender.send(rid, Channel(0), &msg).unwrap();
        if i % 30 == 29 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    receiver.hostile_deaf(false);
    let late = collect(&receiver, Channel(0), 300, Duration::from_secs(4)).await;
    let queued = sender.stats(rid).map_or(0, |s| s.send_queue_bytes);
    (late.len(), queued)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreliable_messages_older_than_their_lifetime_are_dropped_unsent_not_delivered_late() {
    // The default lifetime (500 ms): what could not be sent in time is dropped, and nothing
    // of it stays queued.
    let (late, queued) = late_unreliable_after_deaf_spell(None).await;
    assert!(late < 30, "{late} of 300 stale messages delivered late");
    assert!(queued < 4096, "{queued} bytes still queued");
    // The same spell with a lifetime longer than it: the messages wait and all arrive late.
    // (This is what a send-once channel without a lifetime did, and shows the test can fail.)
    let (late, _) = late_unreliable_after_deaf_spell(Some(Duration::from_secs(60))).await;
    assert!(
        late > 250,
        "only {late} of 300 delivered with a 60 s lifetime"
    );
}
