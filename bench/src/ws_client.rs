//! A bare protocol-v1 client for the matchmaker benchmarks: connect, send, wait for a reply,
//! and timestamped signals. Small WebSocket buffers, so that thousands of them fit.

use std::time::{Duration, Instant};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt as _, StreamExt as _};
use squadlink_protocol::{ClientMessage, PeerId, ServerMessage, Signal};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// One client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
/// Its sending half.
pub type Sink = SplitSink<Ws, Message>;

/// Opens a WebSocket to `url` (20 s at most).
pub async fn connect(url: &str) -> Result<Ws, String> {
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let fut = tokio_tungstenite::connect_async_with_config(url, Some(config), true);
    match tokio::time::timeout(Duration::from_secs(20), fut).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(format!("connect: {e}")),
        Err(_) => Err("connect timed out".into()),
    }
}

/// Sends one message.
pub async fn send(ws: &mut Ws, msg: &ClientMessage) -> Result<(), String> {
    let text = msg.to_json().map_err(|e| e.to_string())?;
    ws.send(Message::text(text))
        .await
        .map_err(|e| format!("send: {e}"))
}

/// Waits (20 s at most) for the first message `want` picks, skipping others.
pub async fn wait_for<T>(
    ws: &mut Ws,
    mut want: impl FnMut(ServerMessage) -> Option<Result<T, String>>,
) -> Result<T, String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| "no reply in 20 s".to_string())?
            .ok_or("server closed")?
            .map_err(|e| format!("read: {e}"))?;
        if let Message::Text(t) = frame {
            let msg = ServerMessage::from_json(t.as_str()).map_err(|e| e.to_string())?;
            if let Some(result) = want(msg) {
                return result;
            }
        }
    }
}

/// `hello` (dev mode, naming `player` if given); returns the peer id.
pub async fn hello(ws: &mut Ws, player: Option<String>) -> Result<PeerId, String> {
    let hello = ClientMessage::Hello {
        rid: None,
        token: None,
        player_id: player,
    };
    send(ws, &hello).await?;
    wait_for(ws, |m| match m {
        ServerMessage::Welcome { peer_id, .. } => Some(Ok(peer_id)),
        ServerMessage::Error { message, .. } => Some(Err(message)),
        _ => None,
    })
    .await
}

/// A signal to `to` whose payload is `kind:idx:sent_ns` (nanoseconds since `t0`).
pub fn signal_text(to: PeerId, kind: &str, idx: usize, t0: Instant) -> Result<String, String> {
    let sent = t0.elapsed().as_nanos();
    ClientMessage::Signal {
        to,
        data: Signal::Opaque {
            payload: format!("{kind}:{idx}:{sent}"),
        },
    }
    .to_json()
    .map_err(|e| e.to_string())
}

/// Waits for sender tasks and puts their sinks back in place.
pub async fn give_back(
    senders: &mut tokio::task::JoinSet<(usize, Sink)>,
    sinks: &mut [Option<Sink>],
) {
    while let Some(res) = senders.join_next().await {
        if let Ok((idx, sink)) = res
            && let Some(slot) = sinks.get_mut(idx)
        {
            *slot = Some(sink);
        }
    }
}

/// `v` rounded to one decimal.
pub fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}
