//! Shared helpers for the matchmaker's integration tests: start the real server on a free
//! loopback port, and a small WebSocket client that speaks protocol v1.
//!
//! With `SQUADLINK_TEST_CLUSTER=1` every test that starts its server through [`start`] runs
//! against a cluster instead: its own `redis-server`, three matchmaker nodes sharing it, and
//! a round-robin TCP front (a load balancer) so that consecutive clients land on different
//! nodes. `scripts/test.sh` runs the service and hardening tests both ways.
#![allow(dead_code, missing_docs)]

pub mod turn;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use squadlink_matchmaker::{Config, Error, Server};
use squadlink_protocol::{ClientMessage, ErrorCode, Lobby, PeerId, ServerMessage};
use squadlink_testkit::redis::Redis;
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

/// Whether this test run is against a cluster (`SQUADLINK_TEST_CLUSTER=1`).
pub fn cluster_mode() -> bool {
    std::env::var("SQUADLINK_TEST_CLUSTER").is_ok_and(|v| v == "1")
}

/// The matchmaker under test: one node, or three nodes on one Redis behind a front.
pub struct TestServer {
    pub nodes: Vec<Server>,
    front: Option<(SocketAddr, tokio::task::JoinHandle<()>)>,
    pub redis: Option<Redis>,
}

impl TestServer {
    /// Where clients connect: the node, or the cluster's round-robin front.
    pub fn url(&self) -> String {
        match &self.front {
            Some((addr, _)) => format!("ws://{addr}/v1"),
            None => self.nodes[0].url(),
        }
    }

    /// The first node's own address (for raw-socket tests of one node's admission).
    pub fn local_addr(&self) -> SocketAddr {
        self.nodes[0].local_addr()
    }

    pub fn pending_upgrades(&self) -> usize {
        self.nodes[0].pending_upgrades()
    }

    pub fn refused_sockets(&self) -> usize {
        self.nodes[0].refused_sockets()
    }

    pub fn instance(&self) -> String {
        self.nodes[0].instance()
    }

    /// The URL of node `i` itself (not through the front).
    pub fn node_url(&self, i: usize) -> String {
        self.nodes[i].url()
    }

    /// Shuts every node down (their clients hear why), then the front.
    pub async fn shutdown(self) -> Result<(), Error> {
        for node in self.nodes {
            node.shutdown().await?;
        }
        if let Some((_, task)) = &self.front {
            task.abort();
        }
        Ok(())
    }
}

pub async fn start(config: Config) -> TestServer {
    if !cluster_mode() {
        let node = Server::bind(config).await.expect("matchmaker starts");
        return TestServer {
            nodes: vec![node],
            front: None,
            redis: None,
        };
    }
    let redis = tokio::task::spawn_blocking(Redis::start).await.unwrap();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let mut node = config.clone();
        node.redis_url = Some(redis.url());
        nodes.push(Server::bind(node).await.expect("matchmaker node starts"));
    }
    let addrs: Vec<SocketAddr> = nodes.iter().map(Server::local_addr).collect();
    let front = round_robin_front(addrs).await;
    TestServer {
        nodes,
        front: Some(front),
        redis: Some(redis),
    }
}

/// A TCP front that hands each new connection to the next node in turn (a load balancer).
pub async fn round_robin_front(
    nodes: Vec<SocketAddr>,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((mut inbound, _)) = listener.accept().await {
            let node = nodes[next.fetch_add(1, Ordering::Relaxed) % nodes.len()];
            conns.spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(node).await {
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, task)
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
        self.recv_within(WAIT).await
    }

    /// Like [`Client::recv`], waiting up to `within` for each frame.
    pub async fn recv_within(&mut self, within: Duration) -> ServerMessage {
        loop {
            let frame = tokio::time::timeout(within, self.ws.next())
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
