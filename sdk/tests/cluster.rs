//! Sessions on a matchmaker cluster: three nodes sharing lobbies through a real Redis.
//! Players of one lobby on three different nodes meet and play over real WebRTC; a node
//! killed with SIGKILL (a real process) or drained with SIGTERM loses none of its players'
//! peer connections: they resume their places, under the same peer ids, on another node
//! (`SessionBuilder::fallback_url`), and newcomers still reach them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::{Duration, Instant};

use squadlink::{Channel, ChannelKind, Event, LobbyRef, PeerId, Session};
use squadlink_testkit::cluster::{NodeProcess, http_get};
use squadlink_testkit::redis::Redis;
use support::{code, collect, connected, wait_for};

const GAME: [ChannelKind; 2] = [ChannelKind::Unreliable, ChannelKind::ReliableOrdered];

/// A session on `urls[0]`, falling back to the others in order.
async fn session(urls: &[String], lobby: LobbyRef) -> Session {
    let mut b = Session::builder(&urls[0])
        .bind("127.0.0.1:0".parse().unwrap())
        .channel(GAME[0])
        .channel(GAME[1])
        .join(lobby);
    for url in &urls[1..] {
        b = b.fallback_url(url);
    }
    b.start_async().await.unwrap()
}

/// Three node processes on one Redis.
fn cluster(extra: &[&str]) -> (Redis, Vec<NodeProcess>) {
    let redis = Redis::start();
    let nodes = (0..3)
        .map(|_| NodeProcess::start(&redis.url(), extra))
        .collect();
    (redis, nodes)
}

/// Each player sends every other one a reliable message; each gets all of them.
async fn everyone_talks(players: &[&Session]) {
    for from in players {
        for to in players {
            if from.id() != to.id() {
                from.send(to.id().unwrap(), Channel(1), b"hello").unwrap();
            }
        }
    }
    for p in players {
        let got = collect(p, Channel(1), players.len() - 1, Duration::from_secs(10)).await;
        assert_eq!(got.len(), players.len() - 1, "{:?} heard {got:?}", p.id());
    }
}

/// Fails if `s` has lost any peer so far (drains its events).
fn no_peer_lost(s: &Session, who: &str) {
    for e in s.poll_events() {
        if let Event::PeerDisconnected { peer, reason } = &e {
            panic!("{who} lost {peer:?}: {reason:?}");
        }
    }
}

/// Waits for `s` to be back in its lobby; returns whether it kept its place.
async fn restored(s: &Session) -> bool {
    wait_for(s, |e| match e {
        Event::MatchmakerRestored { resumed } => Some(*resumed),
        Event::PeerDisconnected { peer, reason } => panic!("lost {peer:?}: {reason:?}"),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lobby_spread_over_three_nodes_connects_and_plays() {
    let (_redis, nodes) = cluster(&[]);
    let urls: Vec<String> = nodes.iter().map(NodeProcess::url).collect();
    let a = session(&urls[0..1], LobbyRef::create(4)).await;
    let lobby = LobbyRef::Code(code(&a));
    let b = session(&urls[1..2], lobby.clone()).await;
    let c = session(&urls[2..3], lobby).await;
    for s in [&a, &b, &c] {
        connected(s, 2).await;
    }
    everyone_talks(&[&a, &b, &c]).await;
    // Everyone sees the same lobby.
    let members = |s: &Session| {
        let mut m: Vec<PeerId> = s.lobby().unwrap().members.iter().map(|m| m.0).collect();
        m.sort_unstable();
        m
    };
    assert_eq!(members(&a), members(&b));
    assert_eq!(members(&b), members(&c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_players_resume_elsewhere_with_their_peers_up() {
    let (_redis, mut nodes) = cluster(&[]);
    let urls: Vec<String> = nodes.iter().map(NodeProcess::url).collect();
    // a and b live on node 0 (falling back to 1, then 2); c on node 2.
    let a = session(&urls, LobbyRef::create(4)).await;
    let lobby = LobbyRef::Code(code(&a));
    let b = session(&urls, lobby.clone()).await;
    let c = session(&urls[2..3], lobby.clone()).await;
    let ids = [a.id().unwrap(), b.id().unwrap(), c.id().unwrap()];
    for s in [&a, &b, &c] {
        connected(s, 2).await;
    }

    let killed = Instant::now();
    nodes[0].kill();
    assert!(restored(&a).await, "a kept its place");
    assert!(restored(&b).await, "b kept its place");
    let resumed_in = killed.elapsed();
    assert_eq!([a.id().unwrap(), b.id().unwrap()], [ids[0], ids[1]]);
    no_peer_lost(&a, "a");
    no_peer_lost(&b, "b");
    no_peer_lost(&c, "c");
    everyone_talks(&[&a, &b, &c]).await;
    eprintln!("both players of the killed node resumed within {resumed_in:?}");

    // Signaling reaches them on their new node: a newcomer connects to all three.
    let d = session(&urls[2..3], lobby).await;
    let peers = connected(&d, 3).await;
    for id in ids {
        assert!(peers.contains(&id), "{peers:?} lacks {id:?}");
    }
    everyone_talks(&[&a, &b, &c, &d]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_a_node_moves_its_players_without_a_peer_disconnection() {
    let (_redis, mut nodes) = cluster(&["--drain-secs", "10"]);
    let urls: Vec<String> = nodes.iter().map(NodeProcess::url).collect();
    let a = session(&urls, LobbyRef::create(4)).await;
    let lobby = LobbyRef::Code(code(&a));
    let b = session(&urls[1..], lobby.clone()).await;
    let ids = [a.id().unwrap(), b.id().unwrap()];
    connected(&a, 1).await;
    connected(&b, 1).await;

    // SIGTERM: node 0 tells a to move; a goes at once, so the node exits well before its
    // 10 s drain deadline.
    let asked = Instant::now();
    let term = std::thread::spawn(move || {
        let exited = nodes[0].terminate(Duration::from_secs(15));
        (exited, nodes)
    });
    assert!(restored(&a).await, "a kept its place");
    let moved_in = asked.elapsed();
    let (exited, _nodes) = tokio::task::spawn_blocking(move || term.join().unwrap())
        .await
        .unwrap();
    assert!(exited, "the drained node exited");
    assert_eq!(a.id(), Some(ids[0]));
    no_peer_lost(&a, "a");
    no_peer_lost(&b, "b");
    everyone_talks(&[&a, &b]).await;
    eprintln!("the drained node's player moved within {moved_in:?}");

    let c = session(&urls[1..], lobby).await;
    let peers = connected(&c, 2).await;
    assert!(
        peers.contains(&ids[0]) && peers.contains(&ids[1]),
        "{peers:?}"
    );
}

/// The value of the sample `name` (with its labels) in OpenMetrics text, if present.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_players_paths_and_the_traffic_between_nodes() {
    let redis = Redis::start();
    let metrics_ports = [
        squadlink_testkit::free_port(),
        squadlink_testkit::free_port(),
    ];
    let nodes: Vec<NodeProcess> = metrics_ports
        .iter()
        .map(|port| {
            let listen = format!("127.0.0.1:{port}");
            NodeProcess::start(&redis.url(), &["--metrics-listen", &listen])
        })
        .collect();
    let report = |url: &String, lobby: LobbyRef| {
        Session::builder(url)
            .bind("127.0.0.1:0".parse().unwrap())
            .channel(GAME[0])
            .report_connections(true)
            .join(lobby)
            .start_async()
    };
    let a = report(&nodes[0].url(), LobbyRef::create(2)).await.unwrap();
    let b = report(&nodes[1].url(), LobbyRef::Code(code(&a)))
        .await
        .unwrap();
    connected(&a, 1).await;
    connected(&b, 1).await;

    let scrape = |port: u16| {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let reply = http_get(addr, "/metrics").unwrap_or_default();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        reply
    };
    // The gauges follow within a heartbeat; the reports arrive once connected.
    let deadline = Instant::now() + Duration::from_secs(10);
    let texts = loop {
        let texts = metrics_ports.map(scrape);
        let settled = texts.iter().all(|t| {
            sample(t, "squadlink_members") == Some(1.0)
                && sample(t, "squadlink_peer_paths_total{kind=\"host\"}") == Some(1.0)
        });
        if settled {
            break texts;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never settled:\n{}",
            texts[0]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for text in &texts {
        assert_eq!(sample(text, "squadlink_connections"), Some(1.0), "{text}");
        assert_eq!(sample(text, "squadlink_lobbies"), Some(1.0), "{text}");
        assert_eq!(
            sample(text, "squadlink_peer_connect_seconds_count"),
            Some(1.0)
        );
        assert!(
            sample(text, "squadlink_signals_relayed_total") >= Some(1.0),
            "{text}"
        );
        assert!(
            sample(text, "squadlink_redis_seconds_count") >= Some(1.0),
            "{text}"
        );
        for direction in ["sent", "received"] {
            let name = format!("squadlink_node_messages_total{{kind=\"{direction}\"}}");
            assert!(sample(text, &name) >= Some(1.0), "{name} in {text}");
        }
        assert!(!text.contains("127.0.0.1"), "no addresses in the metrics");
    }
    let messages =
        |t: &str, kind: &str| sample(t, &format!("squadlink_messages_total{{kind=\"{kind}\"}}"));
    assert_eq!(messages(&texts[0], "create_lobby"), Some(1.0));
    assert_eq!(messages(&texts[1], "join_lobby"), Some(1.0));
}
