//! The network loop over real WebRTC and the real matchmaker, for what only the loop can
//! show.

use std::time::Duration;

use squadlink_matchmaker::{Config, Server};
use squadlink_protocol::IceServer;

use crate::{Channel, ChannelKind, Event, LobbyRef, Session, SessionBuilder};

const WAIT: Duration = Duration::from_secs(20);

/// A session whose ICE server lookups take `delay`.
fn slow_dns(url: &str, lobby: LobbyRef, delay: Duration) -> SessionBuilder {
    Session::builder(url)
        .bind("127.0.0.1:0".parse().unwrap())
        .channel(ChannelKind::ReliableOrdered)
        .join(lobby)
        .ice_server(IceServer {
            urls: vec!["stun:127.0.0.1:3478".into()],
            username: None,
            credential: None,
            expires_at: None,
        })
        .resolve_delay(delay)
}

async fn connected(s: &Session) {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(Event::PeerConnected { .. }) = s.next_event().await {
                return;
            }
        }
    })
    .await
    .expect("the peer connects");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_ice_server_lookup_holds_up_neither_datagrams_nor_commands() {
    let server = Server::bind(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    })
    .await
    .unwrap();
    // Each lookup takes ten minutes: longer than this test may run (every wait below is at
    // most 20 s), so whatever happens here happens while both lookups are still running.
    let lookup = Duration::from_secs(600);
    let a = slow_dns(&server.url(), LobbyRef::create(2), lookup)
        .start_async()
        .await
        .expect("the lobby is entered without waiting for the lookup");
    let code = a.lobby().unwrap().code;
    let b = slow_dns(&server.url(), LobbyRef::Code(code), lookup)
        .start_async()
        .await
        .expect("the lobby is entered without waiting for the lookup");
    // Both peers connect over their host candidates (datagrams served), and a message sent
    // (a command) arrives.
    connected(&a).await;
    connected(&b).await;
    a.broadcast(Channel(0), b"served").unwrap();
    let got = tokio::time::timeout(WAIT, b.recv(Channel(0)))
        .await
        .expect("the message arrives");
    assert_eq!(got.map(|(_, m)| m.to_vec()), Some(b"served".to_vec()));
    a.close();
    b.close();
    server.shutdown().await.unwrap();
}
