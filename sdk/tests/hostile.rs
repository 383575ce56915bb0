//! A hostile peer over real WebRTC: it connects like any player, then sends garbage on every
//! channel and on the hidden control channel (random bytes, fragments with count 0, an index
//! past the count, huge counts, clashing message ids, a flood of messages it never finishes,
//! truncated control frames). The victim keeps working with an honest peer, nothing panics,
//! the held partial messages stay bounded (the oldest dropped and counted), and the victim
//! is told which peer misbehaves. Needs the `fuzzing` feature for the raw sends.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;

use squadlink::{Channel, Event, LobbyRef};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_every_channel_is_dropped_counted_and_reported_and_nothing_else_breaks() {
    let mm = matchmaker().await;
    let victim = session(&mm.url(), LobbyRef::create(4), &ALL_KINDS).await;
    let honest = session(&mm.url(), LobbyRef::Code(code(&victim)), &ALL_KINDS).await;
    let hostile = session(&mm.url(), LobbyRef::Code(code(&victim)), &ALL_KINDS).await;
    let (vid, hid, bad) = (
        victim.id().unwrap(),
        honest.id().unwrap(),
        hostile.id().unwrap(),
    );
    connected(&victim, 2).await;
    connected(&honest, 2).await;
    connected(&hostile, 2).await;

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
