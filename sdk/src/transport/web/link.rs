//! The matchmaker connection in the browser: the page's `WebSocket`, its callbacks turned
//! into a queue the shell awaits, and the join handshake ([`crate::lobby::Handshake`])
//! driven over it with a deadline for each reply.

use squadlink_protocol::{ClientMessage, Properties, ServerMessage};
use tokio::sync::mpsc;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{CloseEvent, MessageEvent, WebSocket};

use super::js::describe;
use super::timer::within;
use crate::error::{Error, Result};
use crate::lobby::{Handshake, Joined, LobbyRef, SIGNALING_TIMEOUT, Step};

/// What the socket's callbacks report.
enum Incoming {
    Open,
    Text(String),
    Closed(String),
}

type Callback = Closure<dyn FnMut(JsValue)>;

/// One WebSocket connection to the matchmaker.
pub(crate) struct Link {
    ws: WebSocket,
    url: String,
    incoming: mpsc::UnboundedReceiver<Incoming>,
    _callbacks: Vec<Callback>,
}

impl Link {
    /// Opens a connection to `url` (bounded by [`SIGNALING_TIMEOUT`]).
    async fn open(url: &str) -> Result<Self> {
        let fail = |reason: String| Error::Signaling {
            url: url.to_owned(),
            reason,
        };
        let ws = WebSocket::new(url).map_err(|e| fail(describe(&e)))?;
        let (tx, incoming) = mpsc::unbounded_channel();
        let on_open = {
            let tx = tx.clone();
            Closure::<dyn FnMut(JsValue)>::new(move |_| {
                let _ = tx.send(Incoming::Open);
            })
        };
        let on_message = {
            let tx = tx.clone();
            Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
                if let Some(text) = event
                    .dyn_into::<MessageEvent>()
                    .ok()
                    .and_then(|e| e.data().as_string())
                {
                    let _ = tx.send(Incoming::Text(text));
                }
            })
        };
        let on_close = {
            let tx = tx.clone();
            Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
                let reason = event.dyn_into::<CloseEvent>().map_or_else(
                    |_| "closed".to_string(),
                    |e| format!("closed: {} {}", e.code(), e.reason()),
                );
                let _ = tx.send(Incoming::Closed(reason));
            })
        };
        // An error is followed by a close, which says more.
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        let mut link = Self {
            ws,
            url: url.to_owned(),
            incoming,
            _callbacks: vec![on_open, on_message, on_close],
        };
        let opened = within(SIGNALING_TIMEOUT, link.incoming.recv())
            .await
            .ok_or(Error::Timeout {
                what: "connecting to the matchmaker",
                secs: SIGNALING_TIMEOUT.as_secs(),
            })?;
        match opened {
            Some(Incoming::Open) => Ok(link),
            Some(Incoming::Closed(reason)) => Err(fail(reason)),
            Some(Incoming::Text(_)) | None => Err(fail("no connection".into())),
        }
    }

    /// Connects, says hello and enters `lobby` (see [`Handshake`]).
    pub(crate) async fn connect_and_join(
        url: &str,
        hello: (Option<String>, Option<String>),
        lobby: &LobbyRef,
        member_data: Properties,
        known_instance: Option<&str>,
    ) -> Result<(Self, Joined)> {
        let mut link = Self::open(url).await?;
        let (mut handshake, first) = Handshake::start(hello, lobby, member_data, known_instance);
        link.send(&first)?;
        loop {
            let msg = within(SIGNALING_TIMEOUT, link.recv())
                .await
                .ok_or(Error::Timeout {
                    what: "the matchmaker's reply",
                    secs: SIGNALING_TIMEOUT.as_secs(),
                })??;
            match handshake.handle(msg)? {
                Step::Send(request) => link.send(&request)?,
                Step::Wait => {}
                Step::Done(joined) => return Ok((link, joined)),
            }
        }
    }

    /// Sends one message (the browser queues it; it never blocks).
    pub(crate) fn send(&self, msg: &ClientMessage) -> Result<()> {
        let text = msg.to_json().map_err(|e| Error::Codec(e.to_string()))?;
        self.ws.send_with_str(&text).map_err(|e| Error::Signaling {
            url: self.url.clone(),
            reason: describe(&e),
        })
    }

    /// The next protocol message. Frames that are not valid messages are skipped (logged).
    pub(crate) async fn recv(&mut self) -> Result<ServerMessage> {
        loop {
            let fail = |reason: String| Error::Signaling {
                url: self.url.clone(),
                reason,
            };
            match self.incoming.recv().await {
                Some(Incoming::Text(text)) => match ServerMessage::from_json(&text) {
                    Ok(msg) => return Ok(msg),
                    Err(err) => tracing::warn!(%err, "ignoring a frame from the matchmaker"),
                },
                Some(Incoming::Open) => {}
                Some(Incoming::Closed(reason)) => return Err(fail(reason)),
                None => return Err(fail("connection closed".into())),
            }
        }
    }

    /// Drops the connection without a goodbye (the matchmaker keeps our place for a
    /// reconnection).
    pub(crate) fn abandon(self) {
        let _ = self.ws.close();
    }

    /// Leaves the lobby and closes.
    pub(crate) fn close(self) {
        let _ = self.send(&ClientMessage::LeaveLobby { rid: None });
        let _ = self.ws.close();
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
    }
}
