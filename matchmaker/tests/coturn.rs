//! coturn from Debian, started on loopback, against credentials our matchmaker issues: a
//! fresh one allocates a relay that really carries data; an expired one and one signed with
//! another secret are refused. Asserts on coturn's own answers, not on a tool's exit code.

// Test code: a failed expectation should panic, loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::net::UdpSocket;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use squadlink_matchmaker::{Config, turn};
use squadlink_protocol::{PlayerId, ServerMessage};
use squadlink_testkit::Coturn;
use support::turn::{Allocation, TurnClient};
use support::{Client, config, create_request, start};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Credentials as a player receives them on lobby join from the real matchmaker.
async fn credentials_from_matchmaker(turn_url: String, secrets: Vec<String>) -> (String, String) {
    let server = start(Config {
        turn_urls: vec![turn_url],
        turn_secrets: secrets,
        ..config()
    })
    .await;
    let (mut a, _) = Client::hello(&server.url(), "relay-player").await;
    a.send(&create_request(None, 2)).await;
    let ServerMessage::LobbyJoined { ice_servers, .. } = a.recv().await else {
        panic!("expected lobby_joined")
    };
    server.shutdown().await.unwrap();
    let turn = ice_servers
        .into_iter()
        .find(|s| s.urls.iter().any(|u| u.starts_with("turn:")))
        .unwrap();
    (turn.username.unwrap(), turn.credential.unwrap())
}

#[tokio::test]
async fn coturn_relays_with_issued_credentials_and_refuses_bad_ones() {
    let coturn = Coturn::start(&["current-secret", "previous-secret"]);
    let url = format!("turn:{}?transport=udp", coturn.addr);

    // 1. A credential issued by the matchmaker: allocation succeeds and data is relayed.
    let (username, password) =
        credentials_from_matchmaker(url.clone(), vec!["current-secret".into()]).await;
    let mut client = TurnClient::new(coturn.addr, &username);
    let relayed = match client.allocate(&password) {
        Allocation::Relayed(addr) => addr,
        Allocation::Refused(code) => panic!(
            "coturn refused a fresh credential: {code}\n{}",
            coturn.log()
        ),
    };
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let peer_addr = peer.local_addr().unwrap();
    assert!(client.permit(peer_addr), "CreatePermission accepted");
    client.send_to_peer(peer_addr, b"through the relay");
    let mut buf = [0u8; 256];
    let (n, from) = peer
        .recv_from(&mut buf)
        .expect("the peer receives relayed data");
    assert_eq!(&buf[..n], b"through the relay");
    assert_eq!(from, relayed, "data arrives from the relayed address");
    peer.send_to(b"and back", relayed).unwrap();
    let (src, data) = client
        .recv_from_peer()
        .expect("a Data indication comes back");
    assert_eq!((src, data.as_slice()), (peer_addr, &b"and back"[..]));

    // 2. Signed with the second (rotating-out) secret: still accepted by coturn.
    let (u2, p2) = credentials_from_matchmaker(url.clone(), vec!["previous-secret".into()]).await;
    assert!(matches!(
        TurnClient::new(coturn.addr, &u2).allocate(&p2),
        Allocation::Relayed(_)
    ));

    // 3. Expired: refused with 401.
    let player = PlayerId::parse("relay-player").unwrap();
    let expired = turn::issue_credential(b"current-secret", &player, now() - 5);
    let refused = TurnClient::new(coturn.addr, &expired.username).allocate(&expired.password);
    assert_eq!(refused, Allocation::Refused(401), "expired credential");

    // 4. Signed with a secret coturn does not know: refused with 401.
    let (u3, p3) = credentials_from_matchmaker(url, vec!["unknown-secret".into()]).await;
    assert_eq!(
        TurnClient::new(coturn.addr, &u3).allocate(&p3),
        Allocation::Refused(401),
        "wrong secret"
    );
}

/// The TURN URLs and credential a player of `region` (by query parameter, or by its
/// token's claim when `token` is given) gets on joining.
async fn fleet_servers(
    url: &str,
    query_region: Option<&str>,
    token: Option<&str>,
) -> (Vec<String>, String, String) {
    let mut full = url.to_string();
    let mut sep = '?';
    if let Some(region) = query_region {
        full.push_str(&format!("{sep}region={region}"));
        sep = '&';
    }
    if let Some(token) = token {
        full.push_str(&format!("{sep}token={token}"));
    }
    let mut c = Client::connect(&full).await;
    c.send(&squadlink_protocol::ClientMessage::Hello {
        rid: Some(1),
        token: None,
        player_id: token.is_none().then(|| "roamer".to_string()),
    })
    .await;
    assert!(matches!(c.recv().await, ServerMessage::Welcome { .. }));
    c.send(&create_request(None, 2)).await;
    let ServerMessage::LobbyJoined { ice_servers, .. } = c.recv().await else {
        panic!("expected lobby_joined")
    };
    let turn = ice_servers
        .into_iter()
        .find(|s| s.urls.iter().any(|u| u.starts_with("turn:")))
        .unwrap();
    (turn.urls, turn.username.unwrap(), turn.credential.unwrap())
}

#[tokio::test]
async fn a_turn_fleet_hands_each_player_its_regions_servers_and_each_accepts_them() {
    let eu = Coturn::start(&["fleet-secret"]);
    let us = Coturn::start(&["fleet-secret"]);
    let (eu_url, us_url) = (
        format!("turn:{}?transport=udp", eu.addr),
        format!("turn:{}?transport=udp", us.addr),
    );
    let server = start(Config {
        turn_servers: vec![
            squadlink_matchmaker::config::RegionalTurn {
                region: "eu".into(),
                url: eu_url.clone(),
            },
            squadlink_matchmaker::config::RegionalTurn {
                region: "us".into(),
                url: us_url.clone(),
            },
        ],
        turn_secrets: vec!["fleet-secret".into()],
        auth_secret: Some("auth".into()),
        dev_mode: squadlink_matchmaker::DevMode::On,
        allow_anonymous_with_auth_secret: true,
        ..config()
    })
    .await;
    let url = server.url();
    // By query parameter: only that region's server, and it relays with the credential.
    for (region, want, coturn) in [("eu", &eu_url, &eu), ("us", &us_url, &us)] {
        let (urls, user, pass) = fleet_servers(&url, Some(region), None).await;
        assert_eq!(
            urls.as_slice(),
            std::slice::from_ref(want),
            "region {region}"
        );
        assert!(
            matches!(
                TurnClient::new(coturn.addr, &user).allocate(&pass),
                Allocation::Relayed(_)
            ),
            "{region}'s coturn accepts the credential\n{}",
            coturn.log()
        );
    }
    // By token claim, which wins over the query parameter.
    let player = PlayerId::parse("roamer").unwrap();
    let token = squadlink_matchmaker::auth::mint_token_in_region(
        b"auth",
        &player,
        now() + 600,
        Default::default(),
        "us",
    );
    let (urls, ..) = fleet_servers(&url, Some("eu"), Some(&token)).await;
    assert_eq!(urls.as_slice(), std::slice::from_ref(&us_url));
    // No region, or one without servers: the whole fleet (no region-less --turn-url set).
    let (urls, ..) = fleet_servers(&url, None, None).await;
    assert_eq!(urls, [eu_url.clone(), us_url.clone()]);
    let (urls, ..) = fleet_servers(&url, Some("mars"), None).await;
    assert_eq!(urls, [eu_url, us_url]);
    server.shutdown().await.unwrap();
}
