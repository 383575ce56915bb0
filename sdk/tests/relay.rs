//! Through a TURN relay: coturn from Debian on loopback, credentials issued by our
//! matchmaker. Relay-only peers connect over the relay and talk both ways; with the default
//! policy, the same setup still picks the direct path.

// Test code: a failed expectation should panic, loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;

use squadlink::{
    CandidateKind, Channel, ChannelKind, Event, IcePolicy, LobbyRef, PathKind, Session,
};
use squadlink_matchmaker::{Config, Server};
use squadlink_testkit::Coturn;
use support::{code, collect, wait_for};

const KINDS: [ChannelKind; 2] = [ChannelKind::Unreliable, ChannelKind::ReliableOrdered];

async fn matchmaker_with(coturn: &Coturn) -> Server {
    Server::bind(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        stun_urls: vec![format!("stun:{}", coturn.addr)],
        turn_urls: vec![coturn.turn_url()],
        turn_secrets: vec!["relay-secret".into()],
        ..Config::default()
    })
    .await
    .unwrap()
}

async fn start(url: &str, lobby: LobbyRef, policy: IcePolicy) -> Session {
    Session::builder(url)
        .bind("127.0.0.1:0".parse().unwrap())
        .channel(KINDS[0])
        .channel(KINDS[1])
        .ice_policy(policy)
        .join(lobby)
        .start_async()
        .await
        .unwrap()
}

/// Both sessions connect to each other through the relay.
async fn both_relayed(a: &Session, b: &Session, coturn: &Coturn) {
    assert_eq!(
        connected_path(a).await,
        PathKind::Relay,
        "coturn log:\n{}",
        coturn.log()
    );
    assert_eq!(connected_path(b).await, PathKind::Relay);
}

async fn connected_path(s: &Session) -> PathKind {
    wait_for(s, |e| match e {
        Event::PeerConnected { path, .. } => Some(*path),
        Event::Error(err) => panic!("unexpected error: {err}"),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_peers_connect_through_coturn_and_talk_both_ways() {
    let coturn = Coturn::start(&["relay-secret"]);
    let mm = matchmaker_with(&coturn).await;
    let a = start(&mm.url(), LobbyRef::create(2), IcePolicy::RelayOnly).await;
    let b = start(&mm.url(), LobbyRef::Code(code(&a)), IcePolicy::RelayOnly).await;
    both_relayed(&a, &b, &coturn).await;
    let (aid, bid) = (a.id().unwrap(), b.id().unwrap());

    // The selected pair really goes through coturn's relayed addresses.
    let pair = a.stats(bid).unwrap().selected_pair.unwrap();
    assert_ne!(pair.0.port(), 0);
    assert_eq!(pair.1.ip(), std::net::Ipv4Addr::LOCALHOST);
    assert_eq!(
        a.stats(bid).unwrap().selected_pair_types,
        Some((CandidateKind::Relay, CandidateKind::Relay))
    );

    for i in 0..50u32 {
        a.send(bid, Channel(1), &i.to_be_bytes()).unwrap();
        b.send(aid, Channel(1), &i.to_be_bytes()).unwrap();
        a.send(bid, Channel(0), b"unreliable").unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let at_b = collect(&b, Channel(1), 50, Duration::from_secs(10)).await;
    let at_a = collect(&a, Channel(1), 50, Duration::from_secs(10)).await;
    let nums = |v: &[(squadlink::PeerId, bytes::Bytes)]| -> Vec<u32> {
        v.iter()
            .map(|(_, m)| u32::from_be_bytes(m[..4].try_into().unwrap()))
            .collect()
    };
    assert_eq!(nums(&at_b), (0..50).collect::<Vec<_>>());
    assert_eq!(nums(&at_a), (0..50).collect::<Vec<_>>());
    assert!(b.receive(Channel(0)).count() > 40);
    // Pings over the relay give an RTT.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(a.stats(bid).unwrap().rtt.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_relay_available_the_default_policy_still_goes_direct() {
    let coturn = Coturn::start(&["relay-secret"]);
    let mm = matchmaker_with(&coturn).await;
    let a = start(&mm.url(), LobbyRef::create(2), IcePolicy::All).await;
    let b = start(&mm.url(), LobbyRef::Code(code(&a)), IcePolicy::All).await;
    assert_eq!(connected_path(&a).await, PathKind::Host);
    assert_eq!(connected_path(&b).await, PathKind::Host);
    // The TURN allocation still happened, beside the STUN client for the same server (the
    // two once shared one 5-tuple and the STUN client ate the TURN client's responses).
    let aid = a.id().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let types = b
            .stats(aid)
            .map(|s| s.remote_candidate_types)
            .unwrap_or_default();
        if types.contains(&CandidateKind::Relay) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no relay candidate from a default-policy peer: {types:?}\n{}",
            coturn.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A matchmaker that hands out only `turn_url` (besides no STUN at all).
async fn matchmaker_only(turn_url: String) -> Server {
    Server::bind(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        turn_urls: vec![turn_url],
        turn_secrets: vec!["relay-secret".into()],
        ..Config::default()
    })
    .await
    .unwrap()
}

async fn start_trusting(url: &str, lobby: LobbyRef, pem: Option<Vec<u8>>) -> Session {
    let mut b = Session::builder(url)
        .bind("127.0.0.1:0".parse().unwrap())
        .channel(KINDS[0])
        .channel(KINDS[1])
        .ice_policy(IcePolicy::RelayOnly)
        .join(lobby);
    if let Some(pem) = pem {
        b = b.tls_root_certificates(pem);
    }
    b.start_async().await.unwrap()
}

/// Relay-only peers whose only TURN server is reached over a stream (`tcp` or `tls`)
/// connect, say so in their stats, and carry reliable messages both ways.
async fn connect_over_stream(coturn: &Coturn, url: String, transport: &str) {
    let mm = matchmaker_only(url).await;
    let pem = Some(coturn.cert_pem());
    let a = start_trusting(&mm.url(), LobbyRef::create(2), pem.clone()).await;
    let b = start_trusting(&mm.url(), LobbyRef::Code(code(&a)), pem).await;
    both_relayed(&a, &b, coturn).await;
    let (aid, bid) = (a.id().unwrap(), b.id().unwrap());
    let transport_of = |s: &Session, peer| s.stats(peer).unwrap().relay_transport.map(|t| t.name());
    assert_eq!(transport_of(&a, bid), Some(transport));
    assert_eq!(transport_of(&b, aid), Some(transport));
    assert_eq!(
        b.stats(aid).unwrap().remote_candidate_types,
        vec![CandidateKind::Relay]
    );
    for i in 0..30u32 {
        a.send(bid, Channel(1), &i.to_be_bytes()).unwrap();
        b.send(aid, Channel(1), &i.to_be_bytes()).unwrap();
    }
    assert_eq!(
        collect(&b, Channel(1), 30, Duration::from_secs(10))
            .await
            .len(),
        30
    );
    assert_eq!(
        collect(&a, Channel(1), 30, Duration::from_secs(10))
            .await
            .len(),
        30
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_over_tcp_carries_a_relay_only_pair() {
    let coturn = Coturn::start_tls(&["relay-secret"]);
    connect_over_stream(&coturn, coturn.turn_tcp_url(), "tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_over_tls_carries_a_relay_only_pair() {
    let coturn = Coturn::start_tls(&["relay-secret"]);
    connect_over_stream(&coturn, coturn.turns_url(), "tls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_tls_certificate_is_a_clear_error() {
    let coturn = Coturn::start_tls(&["relay-secret"]);
    let mm = matchmaker_only(coturn.turns_url()).await;
    let a = start_trusting(&mm.url(), LobbyRef::create(2), None).await;
    let err = wait_for(&a, |e| match e {
        Event::Error(err) => Some(err.to_string()),
        _ => None,
    })
    .await;
    assert!(err.contains("no TURN relay could be allocated"), "{err}");
    assert!(err.contains("TLS handshake"), "{err}");
    assert!(err.contains("tls_root_certificates"), "{err}");
}

#[test]
fn a_bad_tls_root_is_a_settings_error() {
    let err = Session::builder("ws://127.0.0.1:1/v1")
        .tls_root_certificates("not a certificate")
        .start()
        .err()
        .unwrap();
    assert!(matches!(err, squadlink::Error::Config(_)), "{err}");
}
