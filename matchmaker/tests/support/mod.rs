//! Shared helpers for the matchmaker's integration tests: start the real server on a free
//! loopback port, and a small WebSocket client that speaks protocol v1.
#![allow(dead_code, missing_docs)]

pub mod turn;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use squadlink_matchmaker::{Config, Server};
use squadlink_protocol::{ClientMessage, ErrorCode, Lobby, PeerId, ServerMessage};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(5);

pub fn config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    }
}

pub async fn start(config: Config) -> Server {
    Server::bind(config).await.expect("matchmaker starts")
}

/// A private `create_lobby` request without properties.
pub fn create_request(rid: Option<u32>, max_members: u8) -> ClientMessage {
    ClientMessage::CreateLobby {
        rid,
        max_members,
        public: false,
        properties: Default::default(),
        member_data: Default::default(),
    }
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the server said last before closing.
#[derive(Debug)]
pub struct Closed {
    pub error: Option<ErrorCode>,
    pub frame: Option<CloseFrame>,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")
            .expect("connect");
        Client { ws }
    }

    /// Connects and says hello without a token as `player`; returns the server's answer.
    pub async fn hello_reply(url: &str, player: &str) -> (Client, ServerMessage) {
        let mut c = Client::connect(url).await;
        c.send(&ClientMessage::Hello {
            rid: Some(1),
            token: None,
            player_id: Some(player.into()),
        })
        .await;
        let reply = c.recv().await;
        (c, reply)
    }

    /// Connects and says hello in dev mode as `player`.
    pub async fn hello(url: &str, player: &str) -> (Client, PeerId) {
        let (c, reply) = Client::hello_reply(url, player).await;
        match reply {
            ServerMessage::Welcome { peer_id, rid, .. } => {
                assert_eq!(rid, Some(1));
                (c, peer_id)
            }
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    pub async fn send(&mut self, msg: &ClientMessage) {
        self.send_raw(&msg.to_json().unwrap()).await;
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// The next protocol message (pings are answered by tungstenite and skipped).
    pub async fn recv(&mut self) -> ServerMessage {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a message in time")
                .expect("stream open")
                .expect("frame");
            match frame {
                Message::Text(t) => return ServerMessage::from_json(t.as_str()).expect("valid"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// The next message must be an error with this code.
    pub async fn expect_error(&mut self, code: ErrorCode) -> ServerMessage {
        let msg = self.recv().await;
        match &msg {
            ServerMessage::Error { code: c, .. } if *c == code => msg,
            other => panic!("expected error {code}, got {other:?}"),
        }
    }

    /// Reads until the server closes; returns the last error code and the close frame.
    pub async fn expect_closed(&mut self) -> Closed {
        self.expect_closed_within(WAIT).await
    }

    /// Like [`Client::expect_closed`], waiting at most `within` in all.
    pub async fn expect_closed_within(&mut self, within: Duration) -> Closed {
        let deadline = tokio::time::Instant::now() + within;
        let mut error = None;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("the server closes in time");
            match next {
                Some(Ok(Message::Text(t))) => {
                    if let Ok(ServerMessage::Error { code, .. }) =
                        ServerMessage::from_json(t.as_str())
                    {
                        error = Some(code);
                    }
                }
                Some(Ok(Message::Close(frame))) => return Closed { error, frame },
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Closed { error, frame: None },
            }
        }
    }

    /// Round-trips a ping: proves the connection still works and that nothing else was
    /// queued for it before the pong.
    pub async fn assert_alive_and_idle(&mut self) {
        self.send(&ClientMessage::Ping { nonce: Some(42) }).await;
        match self.recv().await {
            ServerMessage::Pong { nonce: Some(42) } => {}
            other => panic!("expected only a pong, got {other:?}"),
        }
    }

    /// Round-trips a ping, reading past whatever lobby news came before the pong.
    pub async fn assert_alive_and_idle_after_lobby_news(&mut self) {
        self.send(&ClientMessage::Ping { nonce: Some(43) }).await;
        loop {
            match self.recv().await {
                ServerMessage::Pong { nonce: Some(43) } => return,
                ServerMessage::PeerJoined { .. } | ServerMessage::LobbyState { .. } => {}
                other => panic!("expected lobby news then a pong, got {other:?}"),
            }
        }
    }

    pub async fn create(&mut self, max: u8, public: bool) -> Lobby {
        self.send(&ClientMessage::CreateLobby {
            rid: Some(2),
            max_members: max,
            public,
            properties: [("mode".to_string(), "ctf".to_string())].into(),
            member_data: Default::default(),
        })
        .await;
        match self.recv().await {
            ServerMessage::LobbyJoined { lobby, .. } => lobby,
            other => panic!("expected lobby_joined, got {other:?}"),
        }
    }

    pub async fn join(&mut self, code: &str) -> ServerMessage {
        self.send(&ClientMessage::JoinLobby {
            rid: Some(3),
            code: code.into(),
            member_data: Default::default(),
        })
        .await;
        self.recv().await
    }
}
