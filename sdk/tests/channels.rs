//! Real WebRTC between native peers on loopback, through the real matchmaker: the four
//! channel kinds keep their delivery and ordering promises, between 2 and between 4 peers.

// Test code: a failed expectation should panic, loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use squadlink::{Channel, LobbyRef, PathKind};
use support::{ALL_KINDS, code, collect, connected, matchmaker, num, numbers, session};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peers_exchange_on_every_channel_kind() {
    let mm = matchmaker().await;
    let a = session(&mm.url(), LobbyRef::create(2), &ALL_KINDS).await;
    let b = session(&mm.url(), LobbyRef::Code(code(&a)), &ALL_KINDS).await;
    let (a_peers, b_peers) = (connected(&a, 1).await, connected(&b, 1).await);
    assert_eq!(a_peers, [b.id().unwrap()]);
    assert_eq!(b_peers, [a.id().unwrap()]);
    let stats = a
        .stats(b_peers[0].max(a_peers[0]))
        .or_else(|| a.stats(a_peers[0]))
        .unwrap();
    assert_eq!(stats.path, Some(PathKind::Host));

    const N: u32 = 200;
    // Reliable channels take a burst; unreliable ones are paced like game ticks (1 ms).
    for i in 0..N {
        for ch in 0..4 {
            a.broadcast(Channel(ch), &i.to_be_bytes()).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let ordered = numbers(&b, Channel(2), N as usize).await;
    assert_eq!(
        ordered,
        (0..N).collect::<Vec<_>>(),
        "reliable ordered: all, in order"
    );
    let unordered: BTreeSet<u32> = numbers(&b, Channel(3), N as usize)
        .await
        .into_iter()
        .collect();
    assert_eq!(unordered, (0..N).collect(), "reliable unordered: all");
    let sequenced: Vec<u32> = b.receive(Channel(1)).map(|(_, m)| num(&m)).collect();
    assert!(
        sequenced.windows(2).all(|w| w[0] < w[1]),
        "sequenced never goes backwards"
    );
    assert!(!sequenced.is_empty());
    let unreliable: Vec<u32> = b.receive(Channel(0)).map(|(_, m)| num(&m)).collect();
    assert!(
        unreliable.len() as u32 > N * 9 / 10,
        "loopback delivers almost all: {}",
        unreliable.len()
    );

    // And the other way, with the sender identified.
    b.send(a.id().unwrap(), Channel(2), b"pong").unwrap();
    let back = collect(&a, Channel(2), 1, Duration::from_secs(5)).await;
    assert_eq!(
        back,
        [(b.id().unwrap(), bytes::Bytes::from_static(b"pong"))]
    );
}

/// Unreliable data goes out on the game's own thread when the network thread is free,
/// through the command queue when it is busy (`transport/direct.rs`); senders on four
/// threads at once meet both cases, and no sender's messages overtake each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreliable_messages_from_four_threads_at_once_keep_each_senders_order() {
    const THREADS: u32 = 4;
    const EACH: u32 = 500;
    let (_mm, a, b) = support::connected_pair(&ALL_KINDS).await;
    let to = b.id().unwrap();
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let endpoint = a.endpoint(Channel(0)).unwrap();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    endpoint.send(to, &(t << 16 | i).to_be_bytes()).unwrap();
                    if i % 50 == 49 {
                        // Bursts of 50, as a busy game's threads would send.
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let got = numbers(&b, Channel(0), (THREADS * EACH) as usize).await;
    assert!(
        got.len() as u32 > THREADS * EACH * 9 / 10,
        "loopback delivers almost all: {}",
        got.len()
    );
    for t in 0..THREADS {
        let theirs: Vec<u32> = got
            .iter()
            .filter(|n| *n >> 16 == t)
            .map(|n| n & 0xffff)
            .collect();
        assert!(
            theirs.windows(2).all(|w| w[0] < w[1]),
            "thread {t}'s messages overtook each other: {theirs:?}"
        );
    }
}

/// An unreliable send right after `disconnect` must not overtake it, though the
/// disconnect waits in the command queue and the send could go out on the game's thread
/// at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_after_disconnect_never_arrives() {
    let (_mm, a, b) = support::connected_pair(&ALL_KINDS).await;
    let to = b.id().unwrap();
    // The way is open: a message sent now arrives.
    a.send(to, Channel(0), &0u32.to_be_bytes()).unwrap();
    assert_eq!(numbers(&b, Channel(0), 1).await, [0]);
    a.disconnect(to);
    a.send(to, Channel(0), &1u32.to_be_bytes()).unwrap();
    support::wait_for(&b, |e| {
        matches!(e, squadlink::Event::PeerDisconnected { .. }).then_some(())
    })
    .await;
    let late: Vec<u32> = b.receive(Channel(0)).map(|(_, m)| num(&m)).collect();
    assert!(
        late.is_empty(),
        "sent after the disconnect, yet arrived: {late:?}"
    );
}
