//! WebSocket client to the matchmaker (protocol v1, `squadlink-protocol`).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use squadlink_protocol::{ClientMessage, Properties, ServerMessage};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::{Error, Result};
use crate::lobby::{Handshake, Joined, LobbyRef, SIGNALING_TIMEOUT, Step};

/// The read buffer of the matchmaker WebSocket. tungstenite zeroes this much of its buffer
/// each time the stream is polled, and the network thread polls it on every wake-up: at
/// the default 128 KiB that memset was the largest single cost of an idle session (5 % of
/// the network thread's CPU in an idle 8-peer mesh, `perf`). A frame larger than this is
/// still read whole (tungstenite reserves a frame's length once it has its header); the
/// matchmaker reads with 4 KiB too (`Config::read_buffer_bytes`).
const READ_BUFFER_BYTES: usize = 4096;

fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
}

pub(crate) struct Signaling {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    url: String,
}

impl Signaling {
    /// Connects, says hello (with `token` if given), enters the lobby. With `known_instance`
    /// (a reconnection), a server that names another instance has restarted and lost the
    /// lobby: the join is not sent (the old code may name a stranger's lobby by now) and
    /// the result is [`Error::MatchmakerRestarted`].
    pub(crate) async fn connect_and_join(
        url: &str,
        token: Option<String>,
        player_id: Option<String>,
        lobby: &LobbyRef,
        member_data: Properties,
        known_instance: Option<&str>,
    ) -> Result<(Self, Joined)> {
        let fail = |reason: String| Error::Signaling {
            url: url.to_owned(),
            reason,
        };
        let connect = tokio_tungstenite::connect_async_with_config(url, Some(ws_config()), false);
        let (ws, _) = tokio::time::timeout(SIGNALING_TIMEOUT, connect)
            .await
            .map_err(|_| Error::Timeout {
                what: "connecting to the matchmaker",
                secs: SIGNALING_TIMEOUT.as_secs(),
            })?
            .map_err(|e| fail(e.to_string()))?;
        let mut this = Self {
            ws,
            url: url.to_owned(),
        };
        let (mut handshake, hello) =
            Handshake::start((token, player_id), lobby, member_data, known_instance);
        this.send(&hello).await?;
        let mut deadline = tokio::time::Instant::now() + SIGNALING_TIMEOUT;
        loop {
            let msg = tokio::time::timeout_at(deadline, this.recv())
                .await
                .map_err(|_| Error::Timeout {
                    what: "the matchmaker's reply",
                    secs: SIGNALING_TIMEOUT.as_secs(),
                })??;
            match handshake.handle(msg)? {
                Step::Send(request) => {
                    this.send(&request).await?;
                    deadline = tokio::time::Instant::now() + SIGNALING_TIMEOUT;
                }
                Step::Wait => {}
                Step::Done(joined) => return Ok((this, joined)),
            }
        }
    }

    pub(crate) async fn send(&mut self, msg: &ClientMessage) -> Result<()> {
        let text = msg.to_json().map_err(|e| Error::Codec(e.to_string()))?;
        let url = &self.url;
        tokio::time::timeout(SIGNALING_TIMEOUT, self.ws.send(Message::text(text)))
            .await
            .map_err(|_| Error::Timeout {
                what: "sending to the matchmaker",
                secs: SIGNALING_TIMEOUT.as_secs(),
            })?
            .map_err(|e| Error::Signaling {
                url: url.clone(),
                reason: e.to_string(),
            })
    }

    /// The next protocol message. Frames that are not valid messages are skipped (logged).
    pub(crate) async fn recv(&mut self) -> Result<ServerMessage> {
        next_message(&mut self.ws, &self.url).await
    }

    /// Splits into a reader for the network loop and a writer that runs as its own task, so
    /// a slow or stuck matchmaker connection never stalls peer traffic.
    pub(crate) fn split(self) -> (SignalingReader, SignalingWriter) {
        let (mut sink, stream) = self.ws.split();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ClientMessage>();
        let url = self.url.clone();
        let task = tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                let Ok(text) = msg.to_json() else { continue };
                match tokio::time::timeout(SIGNALING_TIMEOUT, sink.send(Message::text(text))).await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => {
                        tracing::warn!(%err, %url, "could not send to the matchmaker");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(%url, "sending to the matchmaker timed out");
                        return;
                    }
                }
            }
            // The session is closing: leave politely, bounded.
            let goodbye = async {
                if let Ok(text) = (ClientMessage::LeaveLobby { rid: None }).to_json() {
                    let _ = sink.send(Message::text(text)).await;
                }
                let _ = sink.close().await;
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), goodbye).await;
        });
        (
            SignalingReader {
                stream,
                url: self.url,
            },
            SignalingWriter { tx, task },
        )
    }
}

/// The matchmaker's messages, read by the network loop.
pub(crate) struct SignalingReader {
    stream: futures_util::stream::SplitStream<WebSocketStream<MaybeTlsStream<TcpStream>>>,
    url: String,
}

impl SignalingReader {
    /// The next protocol message (cancel-safe: a frame is consumed whole or not at all).
    pub(crate) async fn recv(&mut self) -> Result<ServerMessage> {
        next_message(&mut self.stream, &self.url).await
    }
}

/// Queues messages for the writer task; never blocks.
pub(crate) struct SignalingWriter {
    tx: tokio::sync::mpsc::UnboundedSender<ClientMessage>,
    task: tokio::task::JoinHandle<()>,
}

impl SignalingWriter {
    pub(crate) fn send(&self, msg: ClientMessage) {
        let _ = self.tx.send(msg);
    }

    /// Drops the connection without a goodbye: the matchmaker must keep our lobby place
    /// for the reconnection (a "leave" sent down an old connection that still works one way,
    /// after a network change, would give it up).
    pub(crate) fn abandon(self) {
        self.task.abort();
    }

    /// Sends what is queued, leaves the lobby and closes (bounded).
    pub(crate) async fn close(self) {
        drop(self.tx);
        let _ = tokio::time::timeout(Duration::from_secs(3), self.task).await;
    }
}

async fn next_message<S>(stream: &mut S, url: &str) -> Result<ServerMessage>
where
    S: futures_util::Stream<
            Item = std::result::Result<Message, tokio_tungstenite::tungstenite::Error>,
        > + Unpin,
{
    let fail = |reason: String| Error::Signaling {
        url: url.to_owned(),
        reason,
    };
    loop {
        let text = match stream.next().await {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(frame))) => {
                return Err(fail(frame.map_or_else(
                    || "closed".to_string(),
                    |f| format!("closed: {} {}", u16::from(f.code), f.reason),
                )));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(fail(e.to_string())),
            None => return Err(fail("connection closed".into())),
        };
        match ServerMessage::from_json(text.as_str()) {
            Ok(msg) => return Ok(msg),
            Err(err) => tracing::warn!(%err, "ignoring a frame from the matchmaker"),
        }
    }
}
