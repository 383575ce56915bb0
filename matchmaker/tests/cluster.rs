//! What only a cluster has: nodes that die (a real process, SIGKILL), the ordering
//! guarantees of protocol §6 across nodes, and Redis going away and coming back. (The
//! single node's service and bad-input tests also run against a cluster: see
//! `support::start` and `SQUADLINK_TEST_CLUSTER`.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::{Duration, Instant};

use squadlink_matchmaker::{Config, Server};
use squadlink_protocol::{ClientMessage, ErrorCode, LeaveReason, PeerId, ServerMessage, Signal};
use squadlink_testkit::cluster::{NodeProcess, http_get};
use squadlink_testkit::redis::Redis;
use support::{Client, config};

async fn node(redis: &Redis, tweak: impl FnOnce(&mut Config)) -> Server {
    let mut c = Config {
        redis_url: Some(redis.url()),
        ..config()
    };
    tweak(&mut c);
    Server::bind(c).await.expect("node starts")
}

fn signal(n: usize) -> Signal {
    Signal::Candidate {
        candidate: format!("candidate:{n} 1 udp 1 127.0.0.1 9 typ host"),
        sdp_mid: Some("0".into()),
        sdp_mline_index: Some(0),
        username_fragment: None,
    }
}

/// Sends `signal(n)` from `c` to `to`.
async fn send_signal(c: &mut Client, to: PeerId, n: usize) {
    c.send(&ClientMessage::Signal {
        to,
        data: signal(n),
    })
    .await;
}

fn signal_number(data: &Signal) -> usize {
    match data {
        Signal::Candidate { candidate, .. } => candidate
            .trim_start_matches("candidate:")
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap(),
        other => panic!("unexpected signal {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_players_keep_their_places_for_the_grace_then_leave() {
    let redis = tokio::task::spawn_blocking(Redis::start).await.unwrap();
    let url = redis.url();
    let mut doomed = tokio::task::spawn_blocking(move || {
        NodeProcess::start(
            &url,
            &["--rejoin-grace-secs", "2", "--node-timeout-ms", "1000"],
        )
    })
    .await
    .unwrap();
    let live = node(&redis, |c| {
        c.rejoin_grace_secs = 2;
        c.node_timeout_ms = 1000;
    })
    .await;
    let (mut host, _) = Client::hello(&live.url(), "host").await;
    let lobby = host.create(4, false).await;
    let (mut back, back_id) = Client::hello(&doomed.url(), "comes-back").await;
    back.join(&lobby.code).await;
    let (mut gone, gone_id) = Client::hello(&doomed.url(), "stays-away").await;
    gone.join(&lobby.code).await;
    host.assert_alive_and_idle_after_lobby_news().await;

    doomed.kill();
    let killed = Instant::now();
    drop((back, gone));
    // One player comes back through the live node within the grace: same peer id.
    let (mut again, _) = Client::hello(&live.url(), "comes-back").await;
    match again.join(&lobby.code).await {
        ServerMessage::LobbyJoined {
            resumed_peer_id, ..
        } => assert_eq!(resumed_peer_id, Some(back_id)),
        other => panic!("expected lobby_joined, got {other:?}"),
    }
    // The other one is noticed dead (node timeout), kept for the grace, then leaves.
    match host.recv_within(Duration::from_secs(8)).await {
        ServerMessage::PeerLeft {
            peer_id, reason, ..
        } => assert_eq!((peer_id, reason), (gone_id, LeaveReason::Disconnected)),
        other => panic!("expected peer_left, got {other:?}"),
    }
    let after = killed.elapsed();
    assert!(
        after >= Duration::from_secs(2),
        "the place was kept for the 2 s grace, not dropped at once ({after:?})"
    );
    match host.recv().await {
        ServerMessage::LobbyState { lobby } => {
            let ids: Vec<PeerId> = lobby.members.iter().map(|m| m.peer_id).collect();
            assert_eq!(ids.len(), 2);
            assert!(ids.contains(&back_id) && !ids.contains(&gone_id), "{ids:?}");
        }
        other => panic!("expected lobby_state, got {other:?}"),
    }
    // The resumed player is reachable on its new node.
    send_signal(&mut host, back_id, 1).await;
    loop {
        match again.recv().await {
            ServerMessage::Signal { .. } => break,
            ServerMessage::PeerLeft { .. } | ServerMessage::LobbyState { .. } => {}
            other => panic!("expected the signal, got {other:?}"),
        }
    }
    live.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_sees_one_order_of_changes_and_signals_keep_theirs_across_nodes() {
    let redis = tokio::task::spawn_blocking(Redis::start).await.unwrap();
    // Room in the rate limit for the signal bursts below.
    let roomy = |c: &mut Config| c.message_burst = 1_000;
    let nodes = [
        node(&redis, roomy).await,
        node(&redis, roomy).await,
        node(&redis, roomy).await,
    ];
    let (mut host, host_id) = Client::hello(&nodes[0].url(), "host").await;
    let lobby = host.create(12, false).await;
    // Eleven players join at once through the three nodes.
    let mut joins = Vec::new();
    for n in 0..11 {
        let url = nodes[n % 3].url();
        let code = lobby.code.clone();
        joins.push(tokio::spawn(async move {
            let (mut c, id) = Client::hello(&url, &format!("p{n}")).await;
            match c.join(&code).await {
                ServerMessage::LobbyJoined { lobby, .. } => (c, id, lobby.version),
                other => panic!("the joiner hears lobby_joined first, not {other:?}"),
            }
        }));
    }
    let mut players = Vec::new();
    for j in joins {
        players.push(j.await.unwrap());
    }
    // Every member's view: versions only grow, and all end on the same final state.
    let final_version = lobby.version + 11;
    let mut everyone: Vec<(Client, u64)> = players.into_iter().map(|(c, _, v)| (c, v)).collect();
    everyone.push((host, lobby.version));
    for (c, start) in &mut everyone {
        let mut last = *start;
        while last < final_version {
            match c.recv().await {
                ServerMessage::LobbyState { lobby } => {
                    assert!(
                        lobby.version > last,
                        "version went {last} → {}",
                        lobby.version
                    );
                    last = lobby.version;
                }
                ServerMessage::PeerJoined { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(last, final_version);
    }
    // 90 signals from a player on one node to the host on
    // another arrive in order.
    let (mut host, _) = everyone.pop().unwrap();
    let (sender, _) = &mut everyone[1];
    for n in 0..90 {
        send_signal(sender, host_id, n).await;
    }
    for n in 0..90 {
        match host.recv().await {
            ServerMessage::Signal { data, .. } => assert_eq!(signal_number(&data), n),
            other => panic!("expected signal {n}, got {other:?}"),
        }
    }
    // All eleven send at once (so each node relays them in shared batches), one of them
    // also to a peer outside the lobby: each sender's signals still arrive in its order,
    // and only the stray one is refused, to its sender.
    let mut ids = std::collections::HashMap::new();
    for round in 0..30 {
        for (i, (c, _)) in everyone.iter_mut().enumerate() {
            send_signal(c, host_id, round).await;
            if i == 4 && round == 10 {
                send_signal(c, PeerId(1), 999).await;
            }
        }
    }
    for _ in 0..30 * everyone.len() {
        match host.recv().await {
            ServerMessage::Signal { from, data } => {
                let next = ids.entry(from).or_insert(0);
                assert_eq!(signal_number(&data), *next, "from {from}");
                *next += 1;
            }
            other => panic!("expected a signal, got {other:?}"),
        }
    }
    assert_eq!(ids.len(), everyone.len());
    everyone[4].0.expect_error(ErrorCode::PeerNotInLobby).await;
    for (c, _) in &mut everyone {
        c.assert_alive_and_idle().await;
    }
    // Signals sent just before a leave reach the host before it hears of the leave, also
    // when they queue in the node's relay behind a batch that a paused Redis holds.
    assert_eq!(
        redis.command("CLIENT PAUSE 300 ALL").as_deref(),
        Some("+OK\r\n")
    );
    send_signal(&mut everyone[5].0, host_id, 30).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (leaver, _) = &mut everyone[2];
    for n in 0..5 {
        send_signal(leaver, host_id, n).await;
    }
    leaver.send(&ClientMessage::LeaveLobby { rid: None }).await;
    let mut before_leave = Vec::new();
    loop {
        match host.recv().await {
            ServerMessage::Signal { data, .. } if signal_number(&data) == 30 => {}
            ServerMessage::Signal { data, .. } => before_leave.push(signal_number(&data)),
            ServerMessage::PeerLeft { .. } => break,
            ServerMessage::LobbyState { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(before_leave, [0, 1, 2, 3, 4]);
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_behind_unanswered_signals_waits_for_them_and_their_refusals_all_arrive() {
    let redis = tokio::task::spawn_blocking(Redis::start).await.unwrap();
    // A small queue: the refusals must be written as their answers come, not pile up.
    let node = node(&redis, |c| c.outbound_queue = 8).await;
    let (mut sender, _) = Client::hello(&node.url(), "sender").await;
    sender.create(2, false).await;
    // Redis holds the first batch, so the strays and the ping reach the node before any
    // answer: the ping must wait for all thirty, which then come back at once.
    assert_eq!(
        redis.command("CLIENT PAUSE 300 ALL").as_deref(),
        Some("+OK\r\n")
    );
    for n in 0..30 {
        send_signal(&mut sender, PeerId(1), n).await;
    }
    sender.send(&ClientMessage::Ping { nonce: Some(7) }).await;
    for _ in 0..30 {
        sender.expect_error(ErrorCode::PeerNotInLobby).await;
    }
    match sender.recv().await {
        ServerMessage::Pong { nonce: Some(7) } => {}
        other => panic!("expected the pong after the refusals, got {other:?}"),
    }
    sender.assert_alive_and_idle().await;
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_gives_clear_errors_and_the_cluster_recovers() {
    let redis = tokio::task::spawn_blocking(Redis::start).await.unwrap();
    let a = node(&redis, |_| {}).await;
    let b = node(&redis, |_| {}).await;
    let (mut host, _) = Client::hello(&a.url(), "host").await;
    host.create(4, false).await;
    let ready = |s: &Server| http_get(s.local_addr(), "/readyz").unwrap_or_default();
    assert!(ready(&a).starts_with("HTTP/1.1 200"), "{}", ready(&a));

    let (mut c, _) = Client::hello(&b.url(), "c").await;
    let port = tokio::task::spawn_blocking(move || redis.kill())
        .await
        .unwrap();
    // Requests fail with a clear error; the connection and the node stay up.
    c.send(&support::create_request(Some(9), 2)).await;
    match c.recv_within(Duration::from_secs(8)).await {
        ServerMessage::Error { code, message, rid } => {
            assert_eq!((code, rid), (ErrorCode::Internal, Some(9)));
            assert!(
                message.contains("unreachable") || message.contains("did not answer"),
                "{message}"
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
    c.assert_alive_and_idle().await;
    let not_ready = ready(&b);
    assert!(not_ready.starts_with("HTTP/1.1 503"), "{not_ready}");
    // A newcomer cannot be admitted (its per-player count lives in Redis) and is told why.
    let (mut late, reply) = Client::hello_reply(&a.url(), "late").await;
    match reply {
        ServerMessage::Error { code, message, .. } => {
            assert_eq!(code, ErrorCode::Internal);
            assert!(message.contains("unreachable"), "{message}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    late.expect_closed().await;

    // Redis comes back empty (no persistence): a new instance. The nodes notice, tell their
    // clients to reconnect (they then see the restart), and serve again.
    let redis = tokio::task::spawn_blocking(move || Redis::start_on(port))
        .await
        .unwrap();
    let closed = host.expect_closed_within(Duration::from_secs(10)).await;
    assert_eq!(closed.error, Some(ErrorCode::ServerShutdown));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready(&b).starts_with("HTTP/1.1 200") {
        assert!(Instant::now() < deadline, "node b never became ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mut d, _) = Client::hello(&a.url(), "d").await;
    let lobby = d.create(2, false).await;
    let (mut e, _) = Client::hello(&b.url(), "e").await;
    assert!(matches!(
        e.join(&lobby.code).await,
        ServerMessage::LobbyJoined { .. }
    ));
    drop(redis);
    for node in [a, b] {
        node.shutdown().await.unwrap();
    }
}
