//! Test helpers: the real matchmaker on a free loopback port, sessions bound to loopback,
//! and bounded waits for events.
#![allow(dead_code, missing_docs)]

use std::time::Duration;

use squadlink::{ChannelKind, Event, LobbyRef, PeerId, Session};
use squadlink_matchmaker::{Config, Server};

pub const WAIT: Duration = Duration::from_secs(10);

/// Every channel kind, in a fixed order (channel i has kind ALL_KINDS[i]).
pub const ALL_KINDS: [ChannelKind; 4] = [
    ChannelKind::Unreliable,
    ChannelKind::UnreliableSequenced,
    ChannelKind::ReliableOrdered,
    ChannelKind::ReliableUnordered,
];

/// The big-endian u32 a test message starts with.
pub fn num(m: &bytes::Bytes) -> u32 {
    u32::from_be_bytes(m[..4].try_into().expect("a numbered message"))
}

/// Collects up to `n` numbered messages on `channel` (bounded wait) as their numbers.
pub async fn numbers(s: &Session, channel: squadlink::Channel, n: usize) -> Vec<u32> {
    collect(s, channel, n, Duration::from_secs(30))
        .await
        .iter()
        .map(|(_, m)| num(m))
        .collect()
}

pub async fn matchmaker() -> Server {
    Server::bind(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    })
    .await
    .expect("matchmaker starts")
}

pub async fn session(url: &str, lobby: LobbyRef, channels: &[ChannelKind]) -> Session {
    let mut b = Session::builder(url)
        .bind("127.0.0.1:0".parse().unwrap())
        .join(lobby);
    for c in channels {
        b = b.channel(*c);
    }
    b.start_async().await.expect("session starts")
}

/// Waits (bounded) for an event matching `pick`; other events are dropped.
pub async fn wait_for<T>(s: &Session, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    let found = tokio::time::timeout(WAIT, async {
        loop {
            match s.next_event().await {
                Some(e) => {
                    if let Some(v) = pick(&e) {
                        return v;
                    }
                }
                None => panic!("session ended while waiting"),
            }
        }
    })
    .await;
    found.expect("the event arrives in time")
}

/// Waits until `s` has `n` connected peers; returns them.
pub async fn connected(s: &Session, n: usize) -> Vec<PeerId> {
    let mut peers = Vec::new();
    while peers.len() < n {
        let p = wait_for(s, |e| match e {
            Event::PeerConnected { peer, .. } => Some(*peer),
            _ => None,
        })
        .await;
        peers.push(p);
    }
    peers.sort();
    peers
}

/// A matchmaker and two sessions in one lobby, connected to each other (keep the server
/// alive as long as the sessions).
pub async fn connected_pair(channels: &[ChannelKind]) -> (Server, Session, Session) {
    let mm = matchmaker().await;
    let a = session(&mm.url(), LobbyRef::create(2), channels).await;
    let b = session(&mm.url(), LobbyRef::Code(code(&a)), channels).await;
    connected(&a, 1).await;
    connected(&b, 1).await;
    (mm, a, b)
}

pub fn code(s: &Session) -> String {
    s.lobby().expect("in a lobby").code
}

/// Collects messages on `channel` until `n` arrived or `within` passed.
pub async fn collect(
    s: &Session,
    channel: squadlink::Channel,
    n: usize,
    within: Duration,
) -> Vec<(PeerId, bytes::Bytes)> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while got.len() < n && tokio::time::Instant::now() < deadline {
        got.extend(s.receive(channel));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    got
}

/// A TCP proxy on a free loopback port in front of `target`; [`TcpProxy::cut`] breaks every
/// connection through it (as a network outage would), and new ones are accepted after.
pub struct TcpProxy {
    pub addr: std::net::SocketAddr,
    cut: tokio::sync::watch::Sender<u64>,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: std::net::SocketAddr) -> TcpProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let is_down = std::sync::Arc::clone(&down);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if is_down.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                let mut cuts = cuts.clone();
                cuts.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        // Both sockets close when dropped here.
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        TcpProxy {
            addr,
            cut,
            down,
            task,
        }
    }

    /// `ws://ADDR/v1` through the proxy.
    pub fn url(&self) -> String {
        format!("ws://{}/v1", self.addr)
    }

    /// While down, new connections are closed as soon as they are accepted.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// Breaks every connection open through the proxy now.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
