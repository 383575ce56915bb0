//! The holes an outside client found, closed: each test drives the real matchmaker on a free
//! loopback port the way the finding describes, and asserts the fixed behaviour.

// Test code: a failed expectation should panic, loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use squadlink_matchmaker::{Config, ConfigError, DevMode, Error, Server, auth};
use squadlink_protocol::{ClientMessage, ErrorCode, PeerId, PlayerId, ServerMessage, Signal};
use support::{Client, config, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const SECRET: &str = "backend-secret";

fn token(player: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    auth::mint_token(SECRET.as_bytes(), &PlayerId::parse(player).unwrap(), exp)
}

/// Connects with a token in the URL and says hello.
async fn hello_with_token(url: &str, player: &str) -> (Client, PeerId) {
    let mut c = Client::connect(&format!("{url}?token={}", token(player))).await;
    c.send(&ClientMessage::Hello {
        rid: Some(1),
        token: None,
        player_id: None,
    })
    .await;
    match c.recv().await {
        ServerMessage::Welcome { peer_id, .. } => (c, peer_id),
        other => panic!("expected welcome, got {other:?}"),
    }
}

/// Says hello without a token, naming the player; returns whatever the server answered.
async fn anonymous_hello(url: &str, player: &str) -> (Client, ServerMessage) {
    Client::hello_reply(url, player).await
}

fn assert_identity_mismatch(reply: &ServerMessage) {
    assert!(
        matches!(
            reply,
            ServerMessage::Error {
                code: ErrorCode::IdentityMismatch,
                ..
            }
        ),
        "{reply:?}"
    );
}

fn offer() -> Signal {
    Signal::Offer {
        sdp: "v=0 for bob".into(),
    }
}

#[tokio::test]
async fn a_tokenless_client_cannot_take_an_authenticated_players_place() {
    // Exactly the finding's set-up: an auth secret on a loopback listener (behind a TLS
    // proxy), dev mode left at auto.
    let server = start(Config {
        auth_secret: Some(SECRET.into()),
        ..config()
    })
    .await;
    let url = server.url();
    let (mut alice, _) = hello_with_token(&url, "alice").await;
    let lobby = alice.create(4, false).await;
    let (mut bob, bob_id) = hello_with_token(&url, "bob").await;
    assert!(matches!(
        bob.join(&lobby.code).await,
        ServerMessage::LobbyJoined { .. }
    ));
    alice.recv().await; // peer_joined
    alice.recv().await; // lobby_state

    // The impostor says hello as bob without a token: auto dev mode is off with a secret.
    let (mut impostor, reply) = anonymous_hello(&url, "bob").await;
    match reply {
        ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::AuthRequired),
        other => panic!("expected auth_required, got {other:?}"),
    }
    impostor.expect_closed().await;

    // Bob is still there and still gets what is meant for him.
    alice
        .send(&ClientMessage::Signal {
            to: bob_id,
            data: offer(),
        })
        .await;
    assert_eq!(
        bob.recv().await,
        ServerMessage::Signal {
            from: lobby.host,
            data: offer()
        }
    );
    alice.assert_alive_and_idle().await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn anonymous_and_token_identities_never_take_each_others_places() {
    // Anonymous players beside token ones, explicitly allowed.
    let server = start(Config {
        auth_secret: Some(SECRET.into()),
        dev_mode: DevMode::On,
        allow_anonymous_with_auth_secret: true,
        ..config()
    })
    .await;
    let url = server.url();
    let (mut alice, _) = hello_with_token(&url, "alice").await;
    let lobby = alice.create(4, false).await;
    let (mut bob, bob_id) = hello_with_token(&url, "bob").await;
    bob.join(&lobby.code).await;
    alice.recv().await;
    alice.recv().await;

    let (mut impostor, reply) = anonymous_hello(&url, "bob").await;
    assert!(
        matches!(reply, ServerMessage::Welcome { dev_mode: true, .. }),
        "{reply:?}"
    );
    let refused = impostor.join(&lobby.code).await;
    assert_identity_mismatch(&refused);
    // Nobody was told anything, bob keeps his place and his signals.
    alice.assert_alive_and_idle().await;
    alice
        .send(&ClientMessage::Signal {
            to: bob_id,
            data: offer(),
        })
        .await;
    assert!(matches!(bob.recv().await, ServerMessage::Signal { .. }));
    impostor.assert_alive_and_idle().await;

    // The other way round: an anonymous carol's place is not taken by a token for carol.
    let (mut carol, _) = anonymous_hello(&url, "carol").await;
    carol.join(&lobby.code).await;
    alice.recv().await;
    alice.recv().await;
    let (mut token_carol, _) = hello_with_token(&url, "carol").await;
    let refused = token_carol.join(&lobby.code).await;
    assert_identity_mismatch(&refused);
    carol.assert_alive_and_idle().await;

    // The same identity still resumes its own place.
    let (mut bob_again, _) = hello_with_token(&url, "bob").await;
    match bob_again.join(&lobby.code).await {
        ServerMessage::LobbyJoined {
            resumed_peer_id, ..
        } => assert_eq!(resumed_peer_id, Some(bob_id)),
        other => panic!("expected a resumed lobby_joined, got {other:?}"),
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn dev_mode_on_beside_an_auth_secret_needs_the_explicit_flag() {
    let both = Config {
        auth_secret: Some(SECRET.into()),
        dev_mode: DevMode::On,
        ..config()
    };
    assert_eq!(both.validate(), Err(ConfigError::AnonymousBesideTokens));
    assert!(matches!(
        Server::bind(both.clone()).await,
        Err(Error::Config(ConfigError::AnonymousBesideTokens))
    ));
    let allowed = Config {
        allow_anonymous_with_auth_secret: true,
        ..both
    };
    assert_eq!(allowed.validate(), Ok(()));
    // Auto means: dev mode only without a secret.
    let auto_with_secret = Config {
        auth_secret: Some(SECRET.into()),
        ..config()
    };
    assert!(!auto_with_secret.dev_mode_enabled());
    assert!(config().dev_mode_enabled());
}

/// A TCP connection to `server` from the loopback address `from`.
async fn tcp_from(from: [u8; 4], server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(server).await.unwrap()
}

/// Reads until the server closes the socket (EOF or reset); how long that took, or `None`
/// if it stayed open for `within`.
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout_at((start + within).into(), tcp.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn silent_and_trickling_sockets_are_closed_at_the_upgrade_deadline() {
    let server = start(Config {
        upgrade_timeout_secs: 1,
        ..config()
    })
    .await;
    let addr = server.local_addr();
    let mut silent = tcp_from([127, 0, 0, 1], addr).await;
    let mut half = tcp_from([127, 0, 0, 1], addr).await;
    half.write_all(b"GET /v1 HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut trickle = tcp_from([127, 0, 0, 1], addr).await;
    trickle.write_all(b"GET /v1 HTTP/1.1\r\n").await.unwrap();
    let trickling = tokio::spawn(async move {
        // A header byte every 100 ms: never a complete request, never silent.
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(8) {
            if trickle.write_all(b"X").await.is_err() {
                return Some(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    });
    assert!(
        closed_within(&mut silent, Duration::from_secs(8))
            .await
            .is_some(),
        "a silent socket is closed"
    );
    assert!(
        closed_within(&mut half, Duration::from_secs(8))
            .await
            .is_some(),
        "a half-sent request is closed"
    );
    assert!(
        trickling.await.unwrap().is_some(),
        "trickled headers are cut off"
    );
    assert_eq!(server.pending_upgrades(), 0);
    // The server is fine for normal clients.
    let (mut c, _) = Client::hello(&server.url(), "after").await;
    c.assert_alive_and_idle().await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn pending_sockets_are_capped_per_address_and_in_all() {
    let server = start(Config {
        upgrade_timeout_secs: 60,
        max_pending_upgrades: 6,
        max_pending_per_address: 3,
        ..config()
    })
    .await;
    let addr = server.local_addr();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tcp_from([127, 0, 0, 2], addr).await);
    }
    // The fourth from the same address is closed at once, without waiting for the deadline.
    let mut extra = tcp_from([127, 0, 0, 2], addr).await;
    assert!(
        closed_within(&mut extra, Duration::from_secs(5))
            .await
            .is_some(),
        "over the per-address cap"
    );
    // Another address still gets through, and a WebSocket client from 127.0.0.1 works.
    let (mut c, _) = Client::hello(&server.url(), "normal").await;
    c.assert_alive_and_idle().await;
    for _ in 0..3 {
        held.push(tcp_from([127, 0, 0, 3], addr).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.pending_upgrades(), 6);
    let mut over = tcp_from([127, 0, 0, 4], addr).await;
    assert!(
        closed_within(&mut over, Duration::from_secs(5))
            .await
            .is_some(),
        "over the global cap"
    );
    assert_eq!(server.refused_sockets(), 2);
    // The held sockets are still open: only the ones over a cap were closed.
    for tcp in &mut held {
        let mut buf = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(50), tcp.read(&mut buf))
                .await
                .is_err()
        );
    }
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server.pending_upgrades(),
        0,
        "closed sockets give their place back"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_ping_flood_is_rate_limited_and_closed() {
    let server = start(config()).await;
    let url = server.url();
    let (flooder, _) = Client::hello(&url, "flooder").await;
    let (mut bystander, _) = Client::hello(&url, "bystander").await;
    let (mut sink, mut stream) = flooder.ws.split();
    let sender = tokio::spawn(async move {
        for _ in 0..20_000 {
            if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                break;
            }
        }
    });
    let mut error = None;
    let mut frame = None;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                if let Ok(ServerMessage::Error { code, .. }) = ServerMessage::from_json(t.as_str())
                {
                    error = Some(code);
                }
            }
            Ok(Some(Ok(Message::Close(f)))) => {
                frame = f;
                break;
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => break,
            Err(_) => panic!("the ping flood was not stopped within 10 s"),
        }
    }
    sender.abort();
    assert_eq!(error, Some(ErrorCode::RateLimited));
    // The close frame can be lost to a reset: the flooder's pings were still arriving.
    if let Some(frame) = frame {
        assert_eq!(frame.reason.as_str(), "rate_limited");
    }
    bystander.assert_alive_and_idle().await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn one_player_id_has_a_bounded_number_of_live_connections() {
    let server = start(Config {
        max_connections_per_player: 4,
        ..config()
    })
    .await;
    let url = server.url();
    let mut live = Vec::new();
    for _ in 0..4 {
        live.push(Client::hello(&url, "twin").await.0);
    }
    let (mut fifth, reply) = anonymous_hello(&url, "twin").await;
    match reply {
        ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::TooManyConnections),
        other => panic!("expected too_many_connections, got {other:?}"),
    }
    fifth.expect_closed().await;
    // Another player is not affected; closing one frees a place.
    let (mut other, _) = Client::hello(&url, "other").await;
    other.assert_alive_and_idle().await;
    let mut first = live.remove(0);
    first.ws.close(None).await.unwrap();
    first.expect_closed().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut again, _) = Client::hello(&url, "twin").await;
    again.assert_alive_and_idle().await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn token_audience_and_issuer_are_enforced_when_configured() {
    let server = start(Config {
        auth_secret: Some(SECRET.into()),
        token_audience: Some("squadlink".into()),
        token_issuer: Some("login".into()),
        ..config()
    })
    .await;
    let url = server.url();
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let dana = PlayerId::parse("dana").unwrap();
    let plain = auth::mint_token(SECRET.as_bytes(), &dana, exp);
    let mut c = Client::connect(&format!("{url}?token={plain}")).await;
    c.send(&ClientMessage::Hello {
        rid: Some(1),
        token: None,
        player_id: None,
    })
    .await;
    assert_eq!(c.expect_closed().await.error, Some(ErrorCode::TokenInvalid));
    let rules = auth::TokenRules {
        audience: Some("squadlink"),
        issuer: Some("login"),
    };
    let good = auth::mint_token_with(SECRET.as_bytes(), &dana, exp, rules);
    let mut c = Client::connect(&format!("{url}?token={good}")).await;
    c.send(&ClientMessage::Hello {
        rid: Some(1),
        token: None,
        player_id: None,
    })
    .await;
    assert!(matches!(c.recv().await, ServerMessage::Welcome { .. }));
    server.shutdown().await.unwrap();
}

/// Says hello and returns the welcome's peer id and instance.
async fn welcome_of(url: &str, player: &str) -> (Client, PeerId, String) {
    let (mut c, reply) = anonymous_hello(url, player).await;
    let ServerMessage::Welcome {
        peer_id, instance, ..
    } = reply
    else {
        panic!("expected welcome, got {reply:?}")
    };
    c.assert_alive_and_idle().await;
    (c, peer_id, instance.expect("welcome names the instance"))
}

#[tokio::test]
async fn peer_ids_are_unguessable_and_a_restart_is_a_new_instance() {
    let first = start(config()).await;
    let (_a, a, instance_1) = welcome_of(&first.url(), "a").await;
    let (_b, b, same) = welcome_of(&first.url(), "b").await;
    assert_eq!(instance_1, same);
    assert_eq!(first.instance(), instance_1);
    first.shutdown().await.unwrap();
    // "Restart": a new server process state on another port.
    let second = start(config()).await;
    let (_c, c, instance_2) = welcome_of(&second.url(), "c").await;
    assert_ne!(instance_1, instance_2, "a restart is told apart");
    let ids = [a.0, b.0, c.0];
    assert!(ids.iter().all(|id| *id > 0 && *id < (1 << 53)), "{ids:?}");
    assert!(
        ids.iter().all(|id| *id > 1 << 20),
        "not small counters: {ids:?}"
    );
    assert!(a != b && b != c && a != c);
    assert!(b.0.abs_diff(a.0) > 1, "not sequential: {ids:?}");
    second.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_replaced_connection_is_told_why() {
    let server = start(config()).await;
    let url = server.url();
    let (mut host, _) = Client::hello(&url, "host").await;
    let lobby = host.create(4, false).await;
    let (mut old, _) = Client::hello(&url, "phone").await;
    old.join(&lobby.code).await;
    let (mut new, _) = Client::hello(&url, "phone").await;
    assert!(matches!(
        new.join(&lobby.code).await,
        ServerMessage::LobbyJoined {
            resumed_peer_id: Some(_),
            ..
        }
    ));
    let closed = old.expect_closed().await;
    assert_eq!(closed.error, Some(ErrorCode::Replaced));
    let frame = closed.frame.expect("a close frame");
    assert_eq!(frame.reason.as_str(), "replaced");
    assert_eq!(frame.code, CloseCode::Normal);
    new.assert_alive_and_idle().await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_idle_timeout_is_honoured_between_pings() {
    // Pings every 4 s, idle after 5 s: checked only on pings, a silent client used to be
    // cut at the second ping (8 s).
    let server = start(Config {
        ping_interval_secs: 4,
        idle_timeout_secs: 5,
        ..config()
    })
    .await;
    let (mut idle, _) = Client::hello(&server.url(), "idle").await;
    // Not reading means not answering the 4 s ping. At 6.5 s the close must already be
    // waiting in the socket (reading then would answer the ping and look alive).
    tokio::time::sleep(Duration::from_millis(6_500)).await;
    let closed = idle.expect_closed_within(Duration::from_secs(1)).await;
    assert_eq!(closed.error, Some(ErrorCode::IdleTimeout));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn contradictory_keepalive_settings_are_refused_at_start() {
    let bad = Config {
        ping_interval_secs: 30,
        idle_timeout_secs: 20,
        ..config()
    };
    assert!(matches!(
        bad.validate(),
        Err(ConfigError::IdleNotAbovePing { idle: 20, ping: 30 })
    ));
    assert!(Server::bind(bad).await.is_err());
}

/// A masked client frame (mask key 0, so the payload is sent as is).
fn masked_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut f = vec![first_byte, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    f.extend_from_slice(payload);
    f
}

#[tokio::test]
async fn broken_websocket_frames_get_the_standard_close_codes() {
    let server = start(config()).await;
    let url = server.url();
    let (mut bystander, _) = Client::hello(&url, "bystander").await;

    // Invalid UTF-8 in a text frame: 1007.
    let (mut c, _) = Client::hello(&url, "utf8").await;
    let raw = masked_frame(0x81, &[0x7b, 0xff, 0xfe, 0x7d]);
    raw_write(&mut c, &raw).await;
    let closed = c.expect_closed().await;
    assert_eq!(closed.error, Some(ErrorCode::InvalidUtf8));
    assert_eq!(closed.frame.map(|f| f.code), Some(CloseCode::Invalid));

    // A frame with a reserved opcode: a protocol error, 1002.
    let (mut c, _) = Client::hello(&url, "opcode").await;
    raw_write(&mut c, &masked_frame(0x83, b"x")).await;
    let closed = c.expect_closed().await;
    assert_eq!(closed.error, Some(ErrorCode::ProtocolError));
    assert_eq!(closed.frame.map(|f| f.code), Some(CloseCode::Protocol));

    bystander.assert_alive_and_idle().await;
    server.shutdown().await.unwrap();
}

async fn raw_write(c: &mut Client, bytes: &[u8]) {
    use tokio_tungstenite::MaybeTlsStream;
    let MaybeTlsStream::Plain(tcp) = c.ws.get_mut() else {
        panic!("plain TCP expected")
    };
    tcp.write_all(bytes).await.unwrap();
}

#[tokio::test]
async fn a_token_of_the_wrong_type_is_token_invalid_and_closes() {
    let server = start(Config {
        auth_secret: Some(SECRET.into()),
        ..config()
    })
    .await;
    let mut c = Client::connect(&server.url()).await;
    c.send_raw(r#"{"type":"hello","rid":7,"token":12345}"#)
        .await;
    let closed = c.expect_closed().await;
    assert_eq!(closed.error, Some(ErrorCode::TokenInvalid));
    server.shutdown().await.unwrap();
}
