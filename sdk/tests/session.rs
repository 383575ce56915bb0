//! Sessions through the real matchmaker and real WebRTC on loopback: a full mesh of four,
//! large and oversized messages, typed messages, channel-list mismatch, packet loss on the
//! real code path, and peers that freeze or are killed mid-session (a real child process).

// Test code: a failed expectation should panic, loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::collections::BTreeSet;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use squadlink::{
    Channel, ChannelKind, DisconnectReason, Error, Event, LobbyRef, NetworkConditions, Session,
};
use support::{ALL_KINDS, code, collect, connected, matchmaker, num, numbers, session, wait_for};

const GAME: [ChannelKind; 2] = [
    ChannelKind::UnreliableSequenced,
    ChannelKind::ReliableOrdered,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_peers_form_a_full_mesh_and_talk_on_every_channel_kind() {
    let mm = matchmaker().await;
    let first = session(&mm.url(), LobbyRef::create(4), &ALL_KINDS).await;
    let lobby = LobbyRef::Code(code(&first));
    let mut all = vec![first];
    for _ in 0..3 {
        all.push(session(&mm.url(), lobby.clone(), &ALL_KINDS).await);
    }
    for s in &all {
        assert_eq!(connected(s, 3).await.len(), 3);
    }
    // Every peer sends 20 numbered messages on every channel, paced like game ticks.
    for i in 0..20u32 {
        for s in &all {
            for ch in 0..4 {
                s.broadcast(Channel(ch), &i.to_be_bytes()).unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for s in &all {
        let others: BTreeSet<_> = all
            .iter()
            .filter_map(|o| o.id())
            .filter(|p| Some(*p) != s.id())
            .collect();
        for ch in [2, 3] {
            let got = collect(s, Channel(ch), 60, Duration::from_secs(10)).await;
            for peer in &others {
                let mut from: Vec<u32> = got
                    .iter()
                    .filter(|(p, _)| p == peer)
                    .map(|(_, m)| num(m))
                    .collect();
                if ch == 3 {
                    from.sort_unstable();
                }
                assert_eq!(
                    from,
                    (0..20).collect::<Vec<_>>(),
                    "reliable channel {ch} from {peer}"
                );
            }
        }
        let sequenced: Vec<_> = s.receive(Channel(1)).collect();
        for peer in &others {
            let from: Vec<u32> = sequenced
                .iter()
                .filter(|(p, _)| p == peer)
                .map(|(_, m)| num(m))
                .collect();
            assert!(
                !from.is_empty() && from.windows(2).all(|w| w[0] < w[1]),
                "sequenced from {peer}: {from:?}"
            );
        }
        let unreliable: Vec<_> = s.receive(Channel(0)).collect();
        for peer in &others {
            assert!(
                unreliable.iter().filter(|(p, _)| p == peer).count() >= 15,
                "unreliable from {peer}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_mebibyte_message_arrives_intact_and_larger_is_an_error() {
    let mm = matchmaker().await;
    let kinds = [
        ChannelKind::Unreliable,
        ChannelKind::ReliableOrdered,
        ChannelKind::ReliableUnordered,
    ];
    let a = session(&mm.url(), LobbyRef::create(2), &kinds).await;
    let b = session(&mm.url(), LobbyRef::Code(code(&a)), &kinds).await;
    let bid = connected(&a, 1).await[0];
    connected(&b, 1).await;
    let big: Vec<u8> = (0..(1usize << 20)).map(|i| (i * 31 % 251) as u8).collect();
    for ch in [1, 2] {
        a.send(bid, Channel(ch), &big).unwrap();
        let got = collect(&b, Channel(ch), 1, Duration::from_secs(20)).await;
        assert_eq!(got.len(), 1);
        assert!(
            got[0].1 == big,
            "1 MiB arrives byte for byte on channel {ch}"
        );
    }
    let too_big = vec![0u8; (1 << 20) + 1];
    assert!(
        matches!(a.send(bid, Channel(1), &too_big), Err(Error::MessageTooLarge { size, limit, .. }) if size == limit + 1)
    );
    assert!(matches!(
        a.send(bid, Channel(0), &[0u8; 16 * 1024 + 1]),
        Err(Error::MessageTooLarge { .. })
    ));
    assert!(matches!(
        a.broadcast(Channel(7), b"x"),
        Err(Error::UnknownChannel(Channel(7)))
    ));
}

/// What a member tells the others about itself (`SessionBuilder::member_data`) reaches
/// every member's copy of the lobby through the real matchmaker, without Squadlink's own
/// entries; a key of Squadlink's, or too many entries, is refused before anything starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_data_reaches_every_members_lobby() {
    let mm = matchmaker().await;
    let a = session(
        &mm.url(),
        LobbyRef::create(2),
        &[ChannelKind::ReliableOrdered],
    )
    .await;
    let b = Session::builder(mm.url())
        .bind("127.0.0.1:0".parse().unwrap())
        .channel(ChannelKind::ReliableOrdered)
        .member_data("team", "blue")
        .join(LobbyRef::Code(code(&a)))
        .start_async()
        .await
        .unwrap();
    let b_id = b.id().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(lobby) = a.lobby()
            && lobby.member_value(b_id, "team") == Some("blue")
        {
            assert_eq!(lobby.member_data.len(), 1, "{:?}", lobby.member_data);
            assert_eq!(lobby.member_data[0].1.len(), 1, "only the game's entries");
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", a.lobby());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(b.lobby().unwrap().member_value(b_id, "team"), Some("blue"));
    let refused = Session::builder(mm.url())
        .member_data("squadlink.channels", "x")
        .start_background();
    assert!(matches!(refused, Err(Error::Config(_))));
    let mut many = Session::builder(mm.url());
    for i in 0..15 {
        many = many.member_data(format!("k{i}"), "v");
    }
    assert!(matches!(many.start_background(), Err(Error::Config(_))));
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct Snapshot {
    tick: u32,
    positions: Vec<(f32, f32)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_messages_round_trip_and_garbage_is_an_error_value() {
    let mm = matchmaker().await;
    let a = session(&mm.url(), LobbyRef::create(2), &GAME).await;
    let b = session(&mm.url(), LobbyRef::Code(code(&a)), &GAME).await;
    let bid = connected(&a, 1).await[0];
    connected(&b, 1).await;
    let snap = Snapshot {
        tick: 7,
        positions: vec![(1.0, 2.0), (3.5, -4.0)],
    };
    a.send_typed(bid, Channel(1), &snap).unwrap();
    a.send(bid, Channel(1), &[0xFF, 0xFF, 0xFF]).unwrap();
    let got = collect(&b, Channel(1), 2, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 2);
    let decoded: Vec<Result<Snapshot, Error>> = got
        .iter()
        .map(|(_, m)| squadlink::codec::decode(m))
        .collect();
    assert_eq!(decoded[0].as_ref().unwrap(), &snap);
    assert!(matches!(decoded[1], Err(Error::Codec(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_list_mismatch_is_a_clear_error_on_both_sides() {
    let mm = matchmaker().await;
    let a = session(&mm.url(), LobbyRef::create(2), &GAME).await;
    let b = session(
        &mm.url(),
        LobbyRef::Code(code(&a)),
        &[ChannelKind::ReliableOrdered],
    )
    .await;
    for (s, ours, theirs) in [
        (
            &a,
            "unreliable_sequenced,reliable_ordered",
            "reliable_ordered",
        ),
        (
            &b,
            "reliable_ordered",
            "unreliable_sequenced,reliable_ordered",
        ),
    ] {
        let err = wait_for(s, |e| match e {
            Event::Error(err @ Error::ChannelMismatch { .. }) => Some(err.clone()),
            _ => None,
        })
        .await;
        let Error::ChannelMismatch {
            ours: o, theirs: t, ..
        } = &err
        else {
            panic!("matched above")
        };
        assert_eq!((o.as_str(), t.as_str()), (ours, theirs));
        assert!(err.to_string().contains(ours) && err.to_string().contains(theirs));
    }
    assert!(a.connected_peers().is_empty() && b.connected_peers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_ten_percent_loss_unreliable_keeps_flowing_and_reliable_loses_nothing() {
    let mm = matchmaker().await;
    let kinds = [
        ChannelKind::Unreliable,
        ChannelKind::ReliableOrdered,
        ChannelKind::ReliableUnordered,
    ];
    let a = session(&mm.url(), LobbyRef::create(2), &kinds).await;
    let b = session(&mm.url(), LobbyRef::Code(code(&a)), &kinds).await;
    let bid = connected(&a, 1).await[0];
    connected(&b, 1).await;
    // Once connected, 10 % of every datagram A sends and receives is dropped: the real
    // send/receive path. (Connecting under that loss is a test of the handshake: rtc's DTLS
    // retransmits only once a second, so it can take more than the 10 s connect timeout.)
    a.set_simulated_loss(0.10);
    const N: u32 = 500;
    for i in 0..N {
        for ch in 0..3 {
            a.send(bid, Channel(ch), &i.to_be_bytes()).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let ordered = numbers(&b, Channel(1), N as usize).await;
    assert_eq!(
        ordered,
        (0..N).collect::<Vec<_>>(),
        "reliable ordered: everything, in order"
    );
    let unordered: BTreeSet<u32> = numbers(&b, Channel(2), N as usize)
        .await
        .into_iter()
        .collect();
    assert_eq!(
        unordered.len(),
        N as usize,
        "reliable unordered: everything"
    );
    let unreliable = b.receive(Channel(0)).count() as f64 / f64::from(N);
    assert!(
        (0.80..0.98).contains(&unreliable),
        "about 90 % of unreliable messages arrive: {unreliable}"
    );
    assert!(
        b.connected_peers().contains(&a.id().unwrap()),
        "the connection stays up"
    );
}

/// The first peer `s` reports connected, waiting up to 90 s (connecting under loss can take
/// a retry or two).
async fn first_connected(s: &Session) -> squadlink::PeerId {
    tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            match s.next_event().await {
                Some(Event::PeerConnected { peer, .. }) => return peer,
                Some(_) => {}
                None => panic!("session ended"),
            }
        }
    })
    .await
    .expect("connected within 90 s")
}

/// Waits for the first peer `s` connects to, then sends it 10 numbered reliable messages.
async fn send_on_connect(s: &Session) {
    let peer = first_connected(s).await;
    for i in 0..10u32 {
        s.send(peer, Channel(1), &i.to_be_bytes()).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_loss_from_the_start_peers_connect_and_their_first_reliable_messages_arrive() {
    // 10 % of datagrams lost at each end from the first one on: handshakes retransmit,
    // attempts may time out and be made again, and a side may see its channels open
    // before the other end can take data. Messages sent the moment a peer is reported
    // connected must all arrive.
    let mm = matchmaker().await;
    let lossy = |lobby: LobbyRef| {
        Session::builder(mm.url())
            .bind("127.0.0.1:0".parse().unwrap())
            .channel(GAME[0])
            .channel(GAME[1])
            .simulated_loss(0.10)
            .join(lobby)
            .start_async()
    };
    for _ in 0..4 {
        let a = lossy(LobbyRef::create(2)).await.unwrap();
        let b = lossy(LobbyRef::Code(code(&a))).await.unwrap();
        // Each side sends the moment it sees the other connected.
        tokio::join!(send_on_connect(&a), send_on_connect(&b));
        assert_eq!(
            numbers(&b, Channel(1), 10).await,
            (0..10).collect::<Vec<_>>()
        );
        assert_eq!(
            numbers(&a, Channel(1), 10).await,
            (0..10).collect::<Vec<_>>()
        );
    }
}

/// Runs as the child process for the tests below (ignored in normal runs).
#[test]
#[ignore = "helper: run by other tests as a separate process"]
fn child_peer_process() {
    let (Ok(url), Ok(code)) = (
        std::env::var("SQUADLINK_CHILD_URL"),
        std::env::var("SQUADLINK_CHILD_CODE"),
    ) else {
        return;
    };
    let mut builder = Session::builder(url)
        .bind("127.0.0.1:0".parse().unwrap())
        .channel(GAME[0])
        .channel(GAME[1])
        .join(LobbyRef::Code(code));
    if let Ok(player) = std::env::var("SQUADLINK_CHILD_PLAYER") {
        builder = builder.player_id(player);
    }
    let s = builder.start().unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        for _ in s.poll_events() {}
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn spawn_child(url: &str, code: &str) -> Child {
    spawn_child_as(url, code, None)
}

/// A child session in lobby `code`, as dev-mode player `player` if given.
fn spawn_child_as(url: &str, code: &str, player: Option<&str>) -> Child {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--ignored", "--exact", "child_peer_process", "--nocapture"])
        .env("SQUADLINK_CHILD_URL", url)
        .env("SQUADLINK_CHILD_CODE", code);
    if let Some(player) = player {
        c.env("SQUADLINK_CHILD_PLAYER", player);
    }
    c.spawn().unwrap()
}

fn signal(child: &Child, sig: &str) {
    assert!(
        Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
}

async fn gone(s: &Session, who: squadlink::PeerId) -> DisconnectReason {
    wait_for(s, |e| match e {
        Event::PeerDisconnected { peer, reason } if *peer == who => Some(reason.clone()),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_and_killed_peers_are_reported_and_the_rest_keep_talking() {
    let mm = matchmaker().await;
    let a = session(&mm.url(), LobbyRef::create(4), &GAME).await;
    let b = session(&mm.url(), LobbyRef::Code(code(&a)), &GAME).await;
    let mut frozen = spawn_child(&mm.url(), &code(&a));
    let a_peers = connected(&a, 2).await;
    connected(&b, 2).await;
    let child_id = a_peers.into_iter().find(|p| Some(*p) != b.id()).unwrap();

    // SIGSTOP: the process is frozen but its sockets stay open, so only silence tells.
    signal(&frozen, "-STOP");
    let t = Instant::now();
    assert_eq!(gone(&a, child_id).await, DisconnectReason::Silent);
    assert_eq!(gone(&b, child_id).await, DisconnectReason::Silent);
    eprintln!("frozen peer detected after {:?}", t.elapsed());
    a.send(b.id().unwrap(), Channel(1), b"still here").unwrap();
    assert_eq!(
        collect(&b, Channel(1), 1, Duration::from_secs(5))
            .await
            .len(),
        1
    );
    signal(&frozen, "-KILL");
    let _ = frozen.wait();

    // SIGKILL: the process dies; the others hear of it and carry on.
    let mut killed = spawn_child(&mm.url(), &code(&a));
    let victim = connected(&a, 1).await[0];
    connected(&b, 1).await;
    signal(&killed, "-KILL");
    let _ = killed.wait();
    let t = Instant::now();
    let reason = gone(&a, victim).await;
    assert!(
        matches!(reason, DisconnectReason::Left | DisconnectReason::Silent),
        "{reason:?}"
    );
    gone(&b, victim).await;
    eprintln!("killed peer reported after {:?} ({reason:?})", t.elapsed());
    b.send(a.id().unwrap(), Channel(1), b"and still here")
        .unwrap();
    assert_eq!(
        collect(&a, Channel(1), 1, Duration::from_secs(5))
            .await
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_cannot_connect_is_reported_after_the_connect_timeout_and_tried_again() {
    let mm = matchmaker().await;
    let a = Session::builder(mm.url())
        .bind("127.0.0.1:0".parse().unwrap())
        .channel(GAME[0])
        .channel(GAME[1])
        .connect_timeout(Duration::from_secs(1))
        .join(LobbyRef::create(2))
        .start_async()
        .await
        .unwrap();
    // Every datagram B sends or receives is lost: signaling works, WebRTC cannot.
    let b = Session::builder(mm.url())
        .bind("127.0.0.1:0".parse().unwrap())
        .channel(GAME[0])
        .channel(GAME[1])
        .simulated_loss(1.0)
        .connect_timeout(Duration::from_secs(1))
        .join(LobbyRef::Code(code(&a)))
        .start_async()
        .await
        .unwrap();
    let (aid, bid) = (a.id().unwrap(), b.id().unwrap());
    assert_eq!(gone(&a, bid).await, DisconnectReason::ConnectTimeout);
    assert_eq!(gone(&b, aid).await, DisconnectReason::ConnectTimeout);
    // The path heals: B (which offered) tries again, and both ends connect and talk.
    b.set_simulated_loss(0.0);
    assert_eq!(connected(&a, 1).await, vec![bid]);
    assert_eq!(connected(&b, 1).await, vec![aid]);
    b.send(aid, Channel(1), b"late but here").unwrap();
    let got = collect(&a, Channel(1), 1, Duration::from_secs(5)).await;
    assert_eq!(
        got.first().map(|(_, m)| &m[..]),
        Some(&b"late but here"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_that_rejoins_within_the_grace_gets_its_peer_id_back() {
    let mm = matchmaker().await;
    let a = session(&mm.url(), LobbyRef::create(4), &GAME).await;
    let b = session(&mm.url(), LobbyRef::Code(code(&a)), &GAME).await;
    connected(&a, 1).await;
    let mut first = spawn_child_as(&mm.url(), &code(&a), Some("phoenix"));
    let phoenix = connected(&a, 1).await[0];
    assert!(connected(&b, 2).await.contains(&phoenix));

    // The game crashes and is started again, well within the matchmaker's 20 s grace.
    signal(&first, "-KILL");
    let _ = first.wait();
    let mut second = spawn_child_as(&mm.url(), &code(&a), Some("phoenix"));
    for s in [&a, &b] {
        let back = wait_for(s, |e| match e {
            Event::PeerJoined { peer, .. } if *peer != phoenix => Some(Err(*peer)),
            Event::PeerConnected { peer, .. } if *peer == phoenix => Some(Ok(())),
            _ => None,
        })
        .await;
        assert_eq!(back, Ok(()), "the rejoined player came back under a new id");
    }
    // Same player, same peer id, and the lobby has no second membership for it.
    let lobby = a.lobby().unwrap();
    assert_eq!(lobby.members.len(), 3, "{lobby:?}");
    assert!(
        lobby
            .members
            .contains(&(phoenix, squadlink::PlayerId("phoenix".into())))
    );
    signal(&second, "-KILL");
    let _ = second.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_simulated_bad_path_the_round_trip_grows_and_reliable_messages_still_arrive_in_order()
 {
    let mm = matchmaker().await;
    // Each side receives through 75 ms ± 10 ms, 2 % duplicates, 5 % reordered; 5 % loss
    // is added once connected (a lost handshake packet waits out DTLS's and SCTP's 1 s
    // timers, which would make the connect slow, not wrong).
    let bad = NetworkConditions::latency(Duration::from_millis(75))
        .with_jitter(Duration::from_millis(10))
        .with_duplicate(0.02)
        .with_reorder(0.05);
    let start = |lobby: LobbyRef| {
        Session::builder(mm.url())
            .bind("127.0.0.1:0".parse().unwrap())
            .channel(GAME[0])
            .channel(GAME[1])
            .simulated_network(bad)
            .join(lobby)
            .start_async()
    };
    let a = start(LobbyRef::create(2)).await.unwrap();
    let b = start(LobbyRef::Code(code(&a))).await.unwrap();
    let bid = connected(&a, 1).await[0];
    connected(&b, 1).await;
    a.set_simulated_network(bad.with_loss(0.05));
    b.set_simulated_network(bad.with_loss(0.05));
    for i in 0..50u32 {
        a.send(bid, Channel(1), &i.to_be_bytes()).unwrap();
    }
    let got = collect(&b, Channel(1), 50, Duration::from_secs(20)).await;
    let order: Vec<u32> = got.iter().map(|(_, m)| num(m)).collect();
    assert_eq!(order, (0..50).collect::<Vec<_>>());
    // Pings cross the path twice: at least 2 × (75 − 10) ms. (A lower bound only: a busy
    // machine can add to it, never take from it.)
    let deadline = Instant::now() + Duration::from_secs(10);
    let rtt = loop {
        if let Some(rtt) = a.stats(bid).and_then(|s| s.rtt) {
            break rtt;
        }
        assert!(Instant::now() < deadline, "no round trip measured");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(rtt >= Duration::from_millis(130), "{rtt:?}");
}

/// A partial split: the path between A and B is cut (`set_simulated_network_from` with
/// all datagrams lost, on both)
/// while both still reach C. A and B fall silent to each other and only to each other,
/// both keep talking with C, and once the path is restored A and B talk again over the
/// same connection (an ICE restart, no disconnect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_cut_between_two_peers_silences_only_that_link_and_heals_when_restored() {
    let mm = matchmaker().await;
    let a = session(&mm.url(), LobbyRef::create(3), &GAME).await;
    let b = session(&mm.url(), LobbyRef::Code(code(&a)), &GAME).await;
    let c = session(&mm.url(), LobbyRef::Code(code(&a)), &GAME).await;
    for s in [&a, &b, &c] {
        connected(s, 2).await;
    }
    let (aid, bid, cid) = (a.id().unwrap(), b.id().unwrap(), c.id().unwrap());
    a.set_simulated_network_from(bid, NetworkConditions::default().with_loss(1.0));
    b.set_simulated_network_from(aid, NetworkConditions::default().with_loss(1.0));
    let silent = |s: &Session, peer| s.stats(peer).map(|st| st.silent_for);
    let deadline = Instant::now() + Duration::from_secs(10);
    while silent(&a, bid).is_none_or(|d| d < Duration::from_millis(1500)) {
        assert!(Instant::now() < deadline, "A never fell silent to B");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Only that link: A and B still hear C, and C hears both.
    for (s, peer) in [(&a, cid), (&b, cid), (&c, aid), (&c, bid)] {
        let quiet = silent(s, peer).unwrap();
        assert!(
            quiet < Duration::from_millis(1000),
            "{peer} silent for {quiet:?}"
        );
    }
    a.send(cid, Channel(1), &1u32.to_be_bytes()).unwrap();
    b.send(cid, Channel(1), &2u32.to_be_bytes()).unwrap();
    let mut from: Vec<_> = collect(&c, Channel(1), 2, Duration::from_secs(10))
        .await
        .into_iter()
        .map(|(p, m)| (p, num(&m)))
        .collect();
    from.sort();
    let mut want = vec![(aid, 1), (bid, 2)];
    want.sort();
    assert_eq!(from, want, "C hears both sides of the split");
    // Nothing crosses the cut.
    a.send(bid, Channel(1), &3u32.to_be_bytes()).unwrap();
    assert!(
        collect(&b, Channel(1), 1, Duration::from_millis(500))
            .await
            .is_empty(),
        "a message crossed the cut"
    );
    // Restored: the same connection carries messages again (reliable: the one sent during
    // the cut arrives too), and neither side saw the other disconnect.
    a.set_simulated_network_from(bid, NetworkConditions::default());
    b.set_simulated_network_from(aid, NetworkConditions::default());
    a.send(bid, Channel(1), &4u32.to_be_bytes()).unwrap();
    let got = collect(&b, Channel(1), 2, Duration::from_secs(15)).await;
    let order: Vec<u32> = got.iter().map(|(_, m)| num(m)).collect();
    assert_eq!(order, [3, 4], "reliable messages across the healed link");
    for (s, peer) in [(&a, bid), (&b, aid)] {
        assert!(
            !s.poll_events()
                .any(|e| matches!(e, Event::PeerDisconnected { peer: p, .. } if p == peer)),
            "the link healed without a disconnect"
        );
    }
}

/// A session shared by tasks (`Arc<Session>`): `leave` through the shared reference ends
/// it, and the tasks awaiting a message or an event are told there will be none (they
/// return `None` instead of waiting forever); sending afterwards is an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_a_shared_session_ends_its_waiters() {
    let mm = matchmaker().await;
    let session = std::sync::Arc::new(
        session(
            &mm.url(),
            LobbyRef::create(2),
            &[ChannelKind::ReliableOrdered],
        )
        .await,
    );
    let waiting = {
        let s = session.clone();
        tokio::spawn(async move { s.recv(Channel(0)).await })
    };
    let events = {
        let s = session.clone();
        tokio::spawn(async move {
            let mut closed = false;
            while let Some(e) = s.next_event().await {
                closed |= matches!(e, Event::Closed(_));
            }
            closed
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    session.leave();
    let got = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("recv returns once the session has ended")
        .unwrap();
    assert!(got.is_none());
    let closed = tokio::time::timeout(Duration::from_secs(5), events)
        .await
        .expect("next_event returns None once the session has ended")
        .unwrap();
    assert!(closed, "the Closed event came before the end");
    assert!(matches!(
        session.broadcast(Channel(0), b"late"),
        Err(Error::Closed)
    ));
}
