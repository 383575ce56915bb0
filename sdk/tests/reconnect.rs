//! Losing the matchmaker connection: live peer connections carry on, the session
//! reconnects with backoff and resumes its lobby under the same peer id, and the lobby
//! keeps working for new members afterwards. The outage is a real TCP proxy between the
//! session and the real matchmaker, cut on command.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;

use squadlink::{Channel, ChannelKind, Event, LobbyRef, Session};
use support::{TcpProxy, code, collect, connected, matchmaker, wait_for};

const GAME: [ChannelKind; 2] = [ChannelKind::Unreliable, ChannelKind::ReliableOrdered];

async fn session(url: &str, lobby: LobbyRef) -> Session {
    Session::builder(url)
        .bind("127.0.0.1:0".parse().unwrap())
        .channel(GAME[0])
        .channel(GAME[1])
        .join(lobby)
        .start_async()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_matchmaker_keeps_peers_and_resumes_the_lobby() {
    let mm = matchmaker().await;
    let proxy = TcpProxy::start(mm.local_addr()).await;
    let a = session(&proxy.url(), LobbyRef::create(4)).await;
    let b = session(&mm.url(), LobbyRef::Code(code(&a))).await;
    let (aid, bid) = (a.id().unwrap(), b.id().unwrap());
    connected(&a, 1).await;
    connected(&b, 1).await;

    proxy.cut();
    wait_for(&a, |e| matches!(e, Event::MatchmakerLost(_)).then_some(())).await;
    // The peer connection does not depend on the matchmaker.
    a.send(bid, Channel(1), b"during the outage").unwrap();
    b.send(aid, Channel(1), b"still here").unwrap();
    assert_eq!(
        collect(&b, Channel(1), 1, Duration::from_secs(5))
            .await
            .len(),
        1
    );
    assert_eq!(
        collect(&a, Channel(1), 1, Duration::from_secs(5))
            .await
            .len(),
        1
    );

    let resumed = wait_for(&a, |e| match e {
        Event::MatchmakerRestored { resumed } => Some(*resumed),
        Event::PeerDisconnected { peer, reason } if *peer == bid => {
            panic!("the peer was dropped: {reason:?}")
        }
        _ => None,
    })
    .await;
    assert!(resumed, "the lobby place was not kept");
    assert_eq!(a.id(), Some(aid));
    // b never heard that a left or came back.
    for e in b.poll_events() {
        assert!(
            !matches!(
                &e,
                Event::PeerDisconnected { .. } | Event::PeerJoined { .. }
            ),
            "b saw {e:?}"
        );
    }

    // Signaling works again: a newcomer connects to both, a included.
    let c = session(&mm.url(), LobbyRef::Code(code(&a))).await;
    let cs = connected(&c, 2).await;
    assert!(cs.contains(&aid) && cs.contains(&bid), "{cs:?}");
    a.send(c.id().unwrap(), Channel(1), b"welcome").unwrap();
    assert_eq!(
        collect(&c, Channel(1), 1, Duration::from_secs(5))
            .await
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matchmaker_that_stays_away_ends_the_session_after_the_window() {
    let mm = matchmaker().await;
    let proxy = TcpProxy::start(mm.local_addr()).await;
    let a = Session::builder(proxy.url())
        .bind("127.0.0.1:0".parse().unwrap())
        .channel(GAME[0])
        .reconnect_window(Duration::from_secs(2))
        .join(LobbyRef::create(2))
        .start_async()
        .await
        .unwrap();
    let url = proxy.url();
    drop(proxy); // the "network" is gone for good
    // Dropping the proxy stops accepting but leaves open links; shut the matchmaker too.
    mm.shutdown().await.unwrap();
    wait_for(&a, |e| matches!(e, Event::MatchmakerLost(_)).then_some(())).await;
    let end = wait_for(&a, |e| match e {
        Event::Closed(reason) => Some(reason.clone()),
        _ => None,
    })
    .await;
    let reason = end.expect("a reason").to_string();
    assert!(reason.contains("reconnect_window"), "{reason} (via {url})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn away_longer_than_the_grace_rejoins_as_a_new_member() {
    let mm = squadlink_matchmaker::Server::bind(squadlink_matchmaker::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        rejoin_grace_secs: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let proxy = TcpProxy::start(mm.local_addr()).await;
    let a = session(&proxy.url(), LobbyRef::create(4)).await;
    let b = session(&mm.url(), LobbyRef::Code(code(&a))).await;
    let old = a.id().unwrap();
    connected(&a, 1).await;
    connected(&b, 1).await;

    // The matchmaker is unreachable for longer than its 1 s grace.
    proxy.set_down(true);
    proxy.cut();
    wait_for(&a, |e| matches!(e, Event::MatchmakerLost(_)).then_some(())).await;
    wait_for(&b, |e| match e {
        Event::PeerDisconnected { peer, .. } if *peer == old => Some(()),
        _ => None,
    })
    .await;
    proxy.set_down(false);

    let resumed = wait_for(&a, |e| match e {
        Event::MatchmakerRestored { resumed } => Some(*resumed),
        _ => None,
    })
    .await;
    assert!(!resumed, "the place should have expired");
    let new = a.id().unwrap();
    assert_ne!(new, old, "a new member has a new peer id");
    // b meets the new member and they connect again.
    let joined = wait_for(&b, |e| match e {
        Event::PeerConnected { peer, .. } => Some(*peer),
        _ => None,
    })
    .await;
    assert_eq!(joined, new);
    b.send(new, Channel(1), b"welcome back").unwrap();
    assert_eq!(
        collect(&a, Channel(1), 1, Duration::from_secs(5))
            .await
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_matchmaker_is_told_apart_and_its_reused_codes_are_not_rejoined() {
    let mm = matchmaker().await;
    let listen = mm.local_addr();
    let a = session(&mm.url(), LobbyRef::create(4)).await;
    let b = session(&mm.url(), LobbyRef::Code(code(&a))).await;
    let bid = b.id().unwrap();
    connected(&a, 1).await;
    connected(&b, 1).await;

    // The matchmaker restarts on the same address with empty lobby state (a new instance).
    let first_instance = mm.instance().to_owned();
    mm.shutdown().await.unwrap();
    wait_for(&a, |e| matches!(e, Event::MatchmakerLost(_)).then_some(())).await;
    let restarted = squadlink_matchmaker::Server::bind(squadlink_matchmaker::Config {
        listen,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_ne!(restarted.instance(), first_instance);

    // The session sees the new instance in `welcome` and does not send the old code.
    let told = wait_for(&a, |e| match e {
        Event::Error(squadlink::Error::MatchmakerRestarted { lobby }) => Some(lobby.clone()),
        Event::MatchmakerRestored { .. } => panic!("rejoined a lobby on a restarted server"),
        Event::PeerDisconnected { peer, reason } if *peer == bid => {
            panic!("the peer was dropped: {reason:?}")
        }
        _ => None,
    })
    .await;
    assert_eq!(told, code(&a));
    // The peers carry on without the matchmaker.
    a.send(bid, Channel(1), b"still here").unwrap();
    assert_eq!(
        collect(&b, Channel(1), 1, Duration::from_secs(5))
            .await
            .len(),
        1
    );
    restarted.shutdown().await.unwrap();
}
