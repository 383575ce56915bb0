//! The real matchmaker on a free loopback port, driven over WebSocket: lobbies, relay,
//! isolation, authentication, every kind of bad input, limits and shutdown.

// Test code: a failed expectation should panic, loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use squadlink_matchmaker::{Config, DevMode, auth, turn};
use squadlink_protocol::{
    ClientMessage, ErrorCode, LeaveReason, PeerId, PlayerId, ServerMessage, Signal,
};
use support::{Client, cluster_mode, config, create_request, start};
use tokio_tungstenite::tungstenite::Message;

fn offer(sdp: &str) -> Signal {
    Signal::Offer { sdp: sdp.into() }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn two_players_create_join_see_each_other_and_relay_both_ways() {
    let server = start(Config {
        stun_urls: vec!["stun:127.0.0.1:3478".into()],
        turn_urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
        turn_secrets: vec!["north".into(), "old-north".into()],
        ..config()
    })
    .await;
    let url = server.url();
    let (mut a, a_id) = Client::hello(&url, "alice").await;
    let (mut b, b_id) = Client::hello(&url, "bob").await;
    assert_ne!(a_id, b_id);

    let lobby = a.create(4, true).await;
    assert_eq!(lobby.host, a_id);
    assert_eq!(lobby.members.len(), 1);

    // Join codes are case-insensitive.
    let joined = b.join(&lobby.code.to_lowercase()).await;
    let ServerMessage::LobbyJoined {
        rid,
        lobby: seen,
        ice_servers,
        resumed_peer_id: None,
    } = joined
    else {
        panic!("expected lobby_joined, got {joined:?}")
    };
    assert_eq!(rid, Some(3));
    assert_eq!(
        seen.members.iter().map(|m| m.peer_id).collect::<Vec<_>>(),
        [a_id, b_id]
    );
    assert_eq!(ice_servers.len(), 2, "STUN entry and TURN entry");
    let turn_entry = &ice_servers[1];
    let username = turn_entry.username.clone().unwrap();
    let (expiry, player) = username.split_once(':').unwrap();
    assert_eq!(player, "bob");
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        expiry > now() + 3500 && expiry <= now() + 3600,
        "1 h default TTL"
    );
    let expected = turn::issue_credential(b"north", &PlayerId::parse("bob").unwrap(), expiry);
    assert_eq!(
        turn_entry.credential.as_deref(),
        Some(expected.password.as_str())
    );

    // The host hears of the join first, then the new state.
    match a.recv().await {
        ServerMessage::PeerJoined { peer, .. } => assert_eq!(peer.peer_id, b_id),
        other => panic!("expected peer_joined, got {other:?}"),
    }
    match a.recv().await {
        ServerMessage::LobbyState { lobby: l } => assert_eq!(l.members.len(), 2),
        other => panic!("expected lobby_state, got {other:?}"),
    }

    // Offer, answer and candidates, both ways, sender stamped by the server.
    a.send(&ClientMessage::Signal {
        to: b_id,
        data: offer("v=0 offer"),
    })
    .await;
    assert_eq!(
        b.recv().await,
        ServerMessage::Signal {
            from: a_id,
            data: offer("v=0 offer")
        }
    );
    let answer = Signal::Answer {
        sdp: "v=0 answer".into(),
    };
    b.send(&ClientMessage::Signal {
        to: a_id,
        data: answer.clone(),
    })
    .await;
    assert_eq!(
        a.recv().await,
        ServerMessage::Signal {
            from: b_id,
            data: answer
        }
    );
    for i in 0..5 {
        let cand = Signal::Candidate {
            candidate: format!(
                "candidate:{i} 1 udp 2122260223 127.0.0.1 {} typ host",
                5000 + i
            ),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
            username_fragment: None,
        };
        b.send(&ClientMessage::Signal {
            to: a_id,
            data: cand.clone(),
        })
        .await;
        assert_eq!(
            a.recv().await,
            ServerMessage::Signal {
                from: b_id,
                data: cand
            }
        );
    }

    // A forged "from" is ignored: the server stamps the real sender.
    b.send_raw(&format!(
        r#"{{"type":"signal","from":{},"to":{},"data":{{"kind":"opaque","payload":"hi"}}}}"#,
        a_id.0, a_id.0
    ))
    .await;
    assert_eq!(
        a.recv().await,
        ServerMessage::Signal {
            from: b_id,
            data: Signal::Opaque {
                payload: "hi".into()
            }
        }
    );

    // Fresh ICE servers on request.
    b.send(&ClientMessage::RequestIceServers { rid: Some(9) })
        .await;
    assert!(
        matches!(b.recv().await, ServerMessage::IceServers { rid: Some(9), ice_servers } if ice_servers.len() == 2)
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn signals_never_cross_lobbies() {
    let server = start(config()).await;
    let url = server.url();
    let (mut a, a_id) = Client::hello(&url, "a").await;
    let (mut b, _) = Client::hello(&url, "b").await;
    let (mut c, c_id) = Client::hello(&url, "c").await;
    let (mut lonely, _) = Client::hello(&url, "lonely").await;
    let first = a.create(2, false).await;
    assert!(matches!(
        b.join(&first.code).await,
        ServerMessage::LobbyJoined { .. }
    ));
    let _ = a.recv().await; // peer_joined
    let _ = a.recv().await; // lobby_state
    c.create(2, false).await;

    // From another lobby, from no lobby, to a nonexistent peer: an error, nothing delivered.
    c.send(&ClientMessage::Signal {
        to: a_id,
        data: offer("intrusion"),
    })
    .await;
    c.expect_error(ErrorCode::PeerNotInLobby).await;
    lonely
        .send(&ClientMessage::Signal {
            to: a_id,
            data: offer("intrusion"),
        })
        .await;
    lonely.expect_error(ErrorCode::NotInLobby).await;
    b.send(&ClientMessage::Signal {
        to: PeerId(999_999),
        data: offer("nobody"),
    })
    .await;
    b.expect_error(ErrorCode::PeerNotInLobby).await;
    b.send(&ClientMessage::Signal {
        to: c_id,
        data: offer("outward"),
    })
    .await;
    b.expect_error(ErrorCode::PeerNotInLobby).await;
    a.assert_alive_and_idle().await;
    c.assert_alive_and_idle().await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn host_hands_over_and_leaving_or_dropping_is_announced() {
    // No rejoin grace: a dropped connection leaves at once.
    let server = start(Config {
        rejoin_grace_secs: 0,
        ..config()
    })
    .await;
    let url = server.url();
    let (mut a, a_id) = Client::hello(&url, "a").await;
    let (mut b, b_id) = Client::hello(&url, "b").await;
    let (mut c, c_id) = Client::hello(&url, "c").await;
    let lobby = a.create(3, false).await;
    b.join(&lobby.code).await;
    c.join(&lobby.code).await;
    for _ in 0..4 {
        a.recv().await;
    }
    for _ in 0..2 {
        b.recv().await;
    }

    a.send(&ClientMessage::LeaveLobby { rid: Some(7) }).await;
    assert_eq!(
        a.recv().await,
        ServerMessage::LobbyLeft {
            rid: Some(7),
            code: lobby.code.clone()
        }
    );
    for who in [&mut b, &mut c] {
        assert!(matches!(
            who.recv().await,
            ServerMessage::PeerLeft { peer_id, reason: LeaveReason::Left, .. } if peer_id == a_id
        ));
        match who.recv().await {
            ServerMessage::LobbyState { lobby: l } => {
                assert_eq!(l.host, b_id, "the longest-present member becomes host");
                assert_eq!(l.members.len(), 2);
            }
            other => panic!("expected lobby_state, got {other:?}"),
        }
    }
    // A second leave is an error; the lobby can be rejoined.
    a.send(&ClientMessage::LeaveLobby { rid: Some(8) }).await;
    a.expect_error(ErrorCode::NotInLobby).await;

    drop(b);
    assert!(matches!(
        c.recv().await,
        ServerMessage::PeerLeft { peer_id, reason: LeaveReason::Disconnected, .. } if peer_id == b_id
    ));
    match c.recv().await {
        ServerMessage::LobbyState { lobby: l } => assert_eq!((l.host, l.members.len()), (c_id, 1)),
        other => panic!("expected lobby_state, got {other:?}"),
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn public_lobbies_are_listed_by_property() {
    let server = start(config()).await;
    let url = server.url();
    let (mut a, _) = Client::hello(&url, "a").await;
    let (mut b, _) = Client::hello(&url, "b").await;
    let (mut seeker, _) = Client::hello(&url, "seeker").await;
    let public = a.create(4, true).await;
    b.create(4, false).await;
    seeker
        .send(&ClientMessage::ListLobbies {
            rid: Some(5),
            filter: [("mode".to_string(), "ctf".to_string())].into(),
            limit: None,
        })
        .await;
    match seeker.recv().await {
        ServerMessage::LobbyList { rid, lobbies } => {
            assert_eq!(rid, Some(5));
            assert_eq!(lobbies.len(), 1);
            assert_eq!(lobbies[0].code, public.code);
            assert_eq!((lobbies[0].members, lobbies[0].max_members), (1, 4));
        }
        other => panic!("expected lobby_list, got {other:?}"),
    }
    seeker
        .send(&ClientMessage::ListLobbies {
            rid: None,
            filter: [("mode".to_string(), "race".to_string())].into(),
            limit: Some(10),
        })
        .await;
    assert!(
        matches!(seeker.recv().await, ServerMessage::LobbyList { lobbies, .. } if lobbies.is_empty())
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_input_gets_typed_errors_and_never_touches_others() {
    let server = start(Config {
        max_members: 4,
        ..config()
    })
    .await;
    let url = server.url();
    let (mut bystander, _) = Client::hello(&url, "bystander").await;

    // Before hello.
    let mut early = Client::connect(&url).await;
    early.send(&create_request(Some(1), 2)).await;
    early.expect_error(ErrorCode::NotAuthenticated).await;

    let (mut bad, _) = Client::hello(&url, "mallory").await;
    bad.send_raw("{this is not json").await;
    bad.expect_error(ErrorCode::BadJson).await;
    bad.send_raw(r#"{"type":"teleport","rid":4}"#).await;
    assert!(matches!(
        bad.expect_error(ErrorCode::UnknownType).await,
        ServerMessage::Error { rid: Some(4), .. }
    ));
    bad.send_raw(r#"{"type":"join_lobby","code":12345}"#).await;
    bad.expect_error(ErrorCode::InvalidField).await;
    bad.send_raw(r#"{"type":"signal","to":"everyone","data":{}}"#)
        .await;
    bad.expect_error(ErrorCode::InvalidField).await;
    bad.send_raw(r#""just a string""#).await;
    bad.expect_error(ErrorCode::InvalidField).await;
    bad.ws
        .send(Message::binary(vec![0u8, 159, 146, 150]))
        .await
        .unwrap();
    bad.expect_error(ErrorCode::BinaryFrame).await;
    bad.send(&ClientMessage::Hello {
        rid: None,
        token: None,
        player_id: None,
    })
    .await;
    bad.expect_error(ErrorCode::AlreadyAuthenticated).await;
    bad.send(&ClientMessage::JoinLobby {
        rid: None,
        code: "Q".repeat(300),
        member_data: Default::default(),
    })
    .await;
    bad.expect_error(ErrorCode::LobbyNotFound).await;
    for max in [0u8, 1, 5, 255] {
        bad.send(&create_request(None, max)).await;
        bad.expect_error(ErrorCode::InvalidField).await;
    }
    let too_many: std::collections::BTreeMap<String, String> = (0..40)
        .map(|i| (format!("k{i}"), "v".to_string()))
        .collect();
    bad.send(&ClientMessage::CreateLobby {
        rid: None,
        max_members: 2,
        public: true,
        properties: too_many,
        member_data: Default::default(),
    })
    .await;
    bad.expect_error(ErrorCode::InvalidField).await;

    // Full lobby and double join.
    let lobby = bystander.create(2, false).await;
    let (mut second, _) = Client::hello(&url, "second").await;
    assert!(matches!(
        second.join(&lobby.code).await,
        ServerMessage::LobbyJoined { .. }
    ));
    assert!(matches!(
        bad.join(&lobby.code).await,
        ServerMessage::Error {
            code: ErrorCode::LobbyFull,
            rid: Some(3),
            ..
        }
    ));
    assert!(matches!(
        second.join(&lobby.code).await,
        ServerMessage::Error {
            code: ErrorCode::AlreadyInLobby,
            ..
        }
    ));
    second.send(&create_request(None, 2)).await;
    second.expect_error(ErrorCode::AlreadyInLobby).await;

    // An oversized frame closes only that connection, with a reason.
    let mut huge = Client::hello(&url, "huge").await.0;
    huge.send_raw(&format!(
        r#"{{"type":"ping","pad":"{}"}}"#,
        "x".repeat(20_000)
    ))
    .await;
    let closed = huge.expect_closed().await;
    let frame = closed.frame.expect("a close frame");
    assert_eq!(
        (u16::from(frame.code), frame.reason.as_str()),
        (1009, "frame_too_large")
    );

    // Everyone else is still served, and nothing leaked to them.
    let _ = bystander.recv().await; // peer_joined (second)
    let _ = bystander.recv().await; // lobby_state
    bystander.assert_alive_and_idle().await;
    bad.assert_alive_and_idle().await;
    early.assert_alive_and_idle().await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_lobby_codes_are_lobby_not_found() {
    let server = start(config()).await;
    let (mut a, _) = Client::hello(&server.url(), "a").await;
    assert!(matches!(
        a.join("ZZZZZ").await,
        ServerMessage::Error {
            code: ErrorCode::LobbyNotFound,
            rid: Some(3),
            ..
        }
    ));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_flood_is_rate_limited_then_disconnected() {
    let server = start(Config {
        messages_per_second: 20,
        message_burst: 10,
        ..config()
    })
    .await;
    let url = server.url();
    let (mut calm, _) = Client::hello(&url, "calm").await;
    let (mut flood, _) = Client::hello(&url, "flood").await;
    for i in 0..200u64 {
        // The socket may already be closed near the end; that is the point.
        let text = ClientMessage::Ping { nonce: Some(i) }.to_json().unwrap();
        if flood.ws.send(Message::text(text)).await.is_err() {
            break;
        }
    }
    let closed = flood.expect_closed().await;
    assert_eq!(closed.error, Some(ErrorCode::RateLimited));
    assert_eq!(
        closed.frame.map(|f| f.reason.to_string()).as_deref(),
        Some("rate_limited")
    );
    calm.assert_alive_and_idle().await;
    server.shutdown().await.unwrap();
}

/// No rate limit, and room for only 8 messages waiting for each client.
fn unlimited_with_small_queue() -> Config {
    Config {
        messages_per_second: 1_000_000,
        message_burst: 1_000_000,
        outbound_queue: 8,
        ..config()
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_not_buffered() {
    let server = start(unlimited_with_small_queue()).await;
    let url = server.url();
    let (mut sender, _) = Client::hello(&url, "sender").await;
    let (mut sleeper, sleeper_id) = Client::hello(&url, "sleeper").await;
    let lobby = sender.create(2, false).await;
    sleeper.join(&lobby.code).await;
    sender.recv().await;
    sender.recv().await;
    // The sleeper never reads again. Fill its socket buffers, then its queue.
    let payload = "p".repeat(8_000);
    let signal = ClientMessage::Signal {
        to: sleeper_id,
        data: Signal::Opaque { payload },
    }
    .to_json()
    .unwrap();
    let writer = async {
        for _ in 0..5_000 {
            if sender.ws.send(Message::text(signal.clone())).await.is_err() {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .unwrap();
    // The sender hears that the sleeper was disconnected.
    let left = loop {
        match sender.recv().await {
            ServerMessage::PeerLeft {
                peer_id, reason, ..
            } => break (peer_id, reason),
            _ => continue,
        }
    };
    assert_eq!(left, (sleeper_id, LeaveReason::Disconnected));
    drop(sleeper);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_burst_of_refused_signals_is_answered_in_full_and_the_sender_stays() {
    // A small queue: the refusals must be written as they come, not pile up (in a cluster
    // the answers of a burst arrive together).
    let server = start(unlimited_with_small_queue()).await;
    let (mut sender, _) = Client::hello(&server.url(), "sender").await;
    sender.create(2, false).await;
    let stray = ClientMessage::Signal {
        to: PeerId(1),
        data: Signal::Opaque {
            payload: "x".into(),
        },
    }
    .to_json()
    .unwrap();
    for _ in 0..200 {
        sender.send_raw(&stray).await;
    }
    for _ in 0..200 {
        sender.expect_error(ErrorCode::PeerNotInLobby).await;
    }
    sender.assert_alive_and_idle().await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn silent_and_mute_connections_time_out() {
    let server = start(Config {
        ping_interval_secs: 1,
        idle_timeout_secs: 2,
        hello_timeout_secs: 1,
        ..config()
    })
    .await;
    let url = server.url();
    let mut mute = Client::connect(&url).await;
    let closed = mute.expect_closed().await;
    assert_eq!(closed.error, Some(ErrorCode::HelloTimeout));

    let (mut idle, _) = Client::hello(&url, "idle").await;
    // Not reading means not answering the server's pings.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let closed = idle.expect_closed().await;
    assert_eq!(closed.error, Some(ErrorCode::IdleTimeout));

    // A client that reads (and so answers pings) stays.
    let (mut alive, _) = Client::hello(&url, "alive").await;
    let quiet = tokio::time::timeout(Duration::from_millis(3_500), alive.recv()).await;
    assert!(
        quiet.is_err(),
        "no message, and no close, while answering pings"
    );
    alive.assert_alive_and_idle().await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn tokens_authenticate_players_and_bad_ones_are_refused() {
    let server = start(Config {
        auth_secret: Some("backend-secret".into()),
        dev_mode: DevMode::Off,
        ..config()
    })
    .await;
    let url = server.url();
    let carol = PlayerId::parse("carol").unwrap();
    let good = auth::mint_token(b"backend-secret", &carol, now() + 60);

    // Token in the query string (browsers cannot set headers).
    let mut c = Client::connect(&format!("{url}?token={good}")).await;
    c.send(&ClientMessage::Hello {
        rid: None,
        token: None,
        player_id: None,
    })
    .await;
    let first_peer = match c.recv().await {
        ServerMessage::Welcome {
            player_id,
            peer_id,
            dev_mode,
            ..
        } => {
            assert_eq!(player_id, carol);
            assert!(!dev_mode);
            peer_id
        }
        other => panic!("expected welcome, got {other:?}"),
    };
    drop(c);
    // Token in hello; a reconnect keeps the player id and gets a new peer id.
    let mut c = Client::connect(&url).await;
    c.send(&ClientMessage::Hello {
        rid: None,
        token: Some(good.clone()),
        player_id: None,
    })
    .await;
    match c.recv().await {
        ServerMessage::Welcome {
            player_id, peer_id, ..
        } => {
            assert_eq!(player_id, carol);
            assert_ne!(peer_id, first_peer);
        }
        other => panic!("expected welcome, got {other:?}"),
    }

    let cases = [
        (None, ErrorCode::AuthRequired),
        (
            Some(auth::mint_token(b"backend-secret", &carol, now() - 1)),
            ErrorCode::TokenExpired,
        ),
        (
            Some(auth::mint_token(b"forged-secret", &carol, now() + 60)),
            ErrorCode::TokenInvalid,
        ),
        (Some("garbage".to_string()), ErrorCode::TokenInvalid),
    ];
    for (token, code) in cases {
        let mut bad = Client::connect(&url).await;
        bad.send(&ClientMessage::Hello {
            rid: Some(1),
            token,
            player_id: Some("carol".into()),
        })
        .await;
        let closed = bad.expect_closed().await;
        assert_eq!(closed.error, Some(code));
        assert_eq!(
            closed.frame.map(|f| f.reason.to_string()),
            Some(code.as_str().to_string())
        );
    }
    c.assert_alive_and_idle().await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn dev_mode_defaults_follow_the_listen_address() {
    let loopback = Config::default();
    assert!(loopback.dev_mode_enabled());
    let public = Config {
        listen: "0.0.0.0:7878".parse().unwrap(),
        ..Config::default()
    };
    assert!(!public.dev_mode_enabled());
    assert!(
        public.validate().is_err(),
        "no auth secret and no dev mode cannot work"
    );
    let bad_turn = Config {
        turn_urls: vec!["turn:x".into()],
        ..Config::default()
    };
    assert!(bad_turn.validate().is_err());
}

#[tokio::test]
async fn server_limits_refuse_with_clear_codes() {
    // The lobby limit is the whole cluster's; the connection limit each node's own (in
    // cluster mode a, b and c land on three nodes, d on a's node again).
    let server = start(Config {
        max_lobbies: 1,
        max_connections: if cluster_mode() { 1 } else { 3 },
        ..config()
    })
    .await;
    let url = server.url();
    let (mut a, _) = Client::hello(&url, "a").await;
    let (mut b, _) = Client::hello(&url, "b").await;
    a.create(2, false).await;
    b.send(&create_request(Some(6), 2)).await;
    assert!(matches!(
        b.recv().await,
        ServerMessage::Error {
            code: ErrorCode::TooManyLobbies,
            rid: Some(6),
            ..
        }
    ));
    let (_c, _) = Client::hello(&url, "c").await;
    let mut d = Client::connect(&url).await;
    let closed = d.expect_closed().await;
    assert_eq!(closed.error, Some(ErrorCode::ServerFull));
    a.assert_alive_and_idle().await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_tells_clients_why_and_no_one_hears_a_peer_leave() {
    let server = start(config()).await;
    let (mut a, _) = Client::hello(&server.url(), "a").await;
    let lobby = a.create(8, false).await;
    let mut members = Vec::new();
    for n in 0..6 {
        let (mut c, _) = Client::hello(&server.url(), &format!("m{n}")).await;
        c.join(&lobby.code).await;
        members.push(c);
    }
    // Everything up to here (joins) is read; from now on only the goodbye may come.
    for c in members.iter_mut().chain(std::iter::once(&mut a)) {
        c.assert_alive_and_idle_after_lobby_news().await;
    }
    let waiters: Vec<_> = members
        .into_iter()
        .chain(std::iter::once(a))
        .map(|mut c| {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                loop {
                    match tokio::time::timeout(Duration::from_secs(5), c.ws.next()).await {
                        Ok(Some(Ok(Message::Text(t)))) => {
                            seen.push(ServerMessage::from_json(t.as_str()).unwrap());
                        }
                        Ok(Some(Ok(Message::Close(frame)))) => return (seen, frame),
                        Ok(Some(Ok(_))) => {}
                        other => panic!("no close frame: {other:?}"),
                    }
                }
            })
        })
        .collect();
    server.shutdown().await.unwrap();
    for w in waiters {
        let (seen, frame) = w.await.unwrap();
        assert!(
            matches!(
                seen.as_slice(),
                [ServerMessage::Error {
                    code: ErrorCode::ServerShutdown,
                    ..
                }]
            ),
            "only the shutdown error, no peer_left: {seen:?}"
        );
        let frame = frame.expect("close frame");
        assert_eq!(
            (u16::from(frame.code), frame.reason.as_str()),
            (1001, "server_shutdown")
        );
    }
}

#[tokio::test]
async fn a_dropped_player_keeps_its_place_for_the_grace_and_gets_its_peer_id_back() {
    let server = start(Config {
        rejoin_grace_secs: 1,
        ..config()
    })
    .await;
    let url = server.url();
    let (mut a, a_id) = Client::hello(&url, "a").await;
    let lobby = a.create(4, false).await;
    let (mut b, b_id) = Client::hello(&url, "b").await;
    b.join(&lobby.code).await;
    a.recv().await; // peer_joined
    a.recv().await; // lobby_state

    // b's connection vanishes without a goodbye; it comes back as a new connection.
    drop(b);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (mut b2, temporary) = Client::hello(&url, "b").await;
    assert_ne!(temporary, b_id);
    match b2.join(&lobby.code).await {
        ServerMessage::LobbyJoined {
            resumed_peer_id,
            lobby: seen,
            ..
        } => {
            assert_eq!(resumed_peer_id, Some(b_id), "{seen:?}");
            assert_eq!(seen.members.len(), 2, "no second membership: {seen:?}");
        }
        other => panic!("expected lobby_joined, got {other:?}"),
    }
    // The others noticed nothing, and signals to b's old id reach the new connection.
    a.assert_alive_and_idle().await;
    a.send(&ClientMessage::Signal {
        to: b_id,
        data: offer("after the drop"),
    })
    .await;
    match b2.recv().await {
        ServerMessage::Signal { from, .. } => assert_eq!(from, a_id),
        other => panic!("expected the signal, got {other:?}"),
    }
    // Past the grace, a connection that does not come back has left.
    drop(b2);
    match a.recv().await {
        ServerMessage::PeerLeft {
            peer_id, reason, ..
        } => assert_eq!((peer_id, reason), (b_id, LeaveReason::Disconnected)),
        other => panic!("expected peer_left, got {other:?}"),
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_newer_connection_of_the_same_player_takes_a_half_open_ones_place() {
    let server = start(config()).await;
    let url = server.url();
    let (mut a, _) = Client::hello(&url, "a").await;
    let lobby = a.create(4, false).await;
    let (mut old, old_id) = Client::hello(&url, "phone").await;
    old.join(&lobby.code).await;
    a.recv().await;
    a.recv().await;
    // The old connection is still open (the server cannot tell it is dead); the player
    // reconnects from elsewhere and joins again.
    let (mut new, _) = Client::hello(&url, "phone").await;
    match new.join(&lobby.code).await {
        ServerMessage::LobbyJoined {
            resumed_peer_id, ..
        } => assert_eq!(resumed_peer_id, Some(old_id)),
        other => panic!("expected lobby_joined, got {other:?}"),
    }
    old.expect_closed().await;
    // Ending the old connection did not take the membership with it.
    a.assert_alive_and_idle().await;
    new.assert_alive_and_idle().await;
    // A goodbye (close frame) leaves at once, grace or not.
    new.ws.close(None).await.unwrap();
    match a.recv().await {
        ServerMessage::PeerLeft { peer_id, .. } => assert_eq!(peer_id, old_id),
        other => panic!("expected peer_left, got {other:?}"),
    }
    server.shutdown().await.unwrap();
}
