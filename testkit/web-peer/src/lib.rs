//! The Squadlink SDK itself, compiled to wasm32, as the peer of a test page: the browser
//! tests (`sdk/tests/browser.rs`) drive it through `testkit/web/wasm-peer.js` with the same
//! commands and events as the JavaScript reference peer (`testkit/web/peer.js`), so both
//! peers are checked against the same native sessions.
//!
//! Build: `scripts/web.sh peer` (wasm32 with Debian's rustc-web, then `wasm-bindgen
//! --target web`). On native targets this crate is empty.
#![cfg(target_arch = "wasm32")]

use js_sys::{Array, Uint8Array};
use serde_json::{Value, json};
use squadlink::{Channel, ChannelKind, Event, LobbyRef, PeerId, Session};
use wasm_bindgen::prelude::*;

/// One Squadlink session in the page.
#[wasm_bindgen]
pub struct WebPeer {
    session: Session,
    channels: usize,
}

/// A channel kind by its wire name (`reliable_ordered`, …).
fn kind(name: &str) -> Result<ChannelKind, JsValue> {
    match name {
        "unreliable" => Ok(ChannelKind::Unreliable),
        "unreliable_sequenced" => Ok(ChannelKind::UnreliableSequenced),
        "reliable_ordered" => Ok(ChannelKind::ReliableOrdered),
        "reliable_unordered" => Ok(ChannelKind::ReliableUnordered),
        other => Err(JsValue::from_str(&format!(
            "unknown channel kind {other:?}"
        ))),
    }
}

fn error(e: squadlink::Error) -> JsValue {
    JsValue::from_str(&e.to_string())
}

#[wasm_bindgen]
impl WebPeer {
    /// Enters the lobby `code` (or creates one for `max_members` when `code` is empty) at
    /// the matchmaker `url` as dev-mode player `player`, with `channels` (comma-joined
    /// kind names).
    pub async fn join(
        url: String,
        player: String,
        code: String,
        max_members: u8,
        channels: String,
    ) -> Result<WebPeer, JsValue> {
        let lobby = if code.is_empty() {
            LobbyRef::create(max_members)
        } else {
            LobbyRef::Code(code)
        };
        let mut builder = Session::builder(url).player_id(player).join(lobby);
        let mut n = 0;
        for name in channels.split(',').filter(|s| !s.is_empty()) {
            builder = builder.channel(kind(name)?);
            n += 1;
        }
        let session = builder.start_async().await.map_err(error)?;
        Ok(WebPeer {
            session,
            channels: n,
        })
    }

    /// Our peer id (a number).
    pub fn id(&self) -> f64 {
        self.session.id().map_or(-1.0, |id| id.0 as f64)
    }

    /// The lobby's code.
    pub fn code(&self) -> String {
        self.session.lobby().map(|l| l.code).unwrap_or_default()
    }

    /// The session's events since the last call, as JSON texts (`{"event": …}`).
    pub fn events(&self) -> Array {
        let out = Array::new();
        for event in self.session.poll_events() {
            out.push(&JsValue::from_str(&describe(&event).to_string()));
        }
        out
    }

    /// Sends `data` to `peer` (or to every connected peer when `peer` is negative) on
    /// channel `channel`.
    pub fn send(&self, peer: f64, channel: usize, data: &[u8]) -> Result<(), JsValue> {
        if peer < 0.0 {
            self.session
                .broadcast(Channel(channel), data)
                .map_err(error)
        } else {
            let peer = PeerId(peer as u64);
            self.session
                .send(peer, Channel(channel), data)
                .map_err(error)
        }
    }

    /// The messages that arrived on every channel: `[peer, channel, bytes]` each.
    pub fn receive(&self) -> Array {
        let out = Array::new();
        for channel in 0..self.channels {
            for (peer, bytes) in self.session.receive(Channel(channel)) {
                let item = Array::new();
                item.push(&JsValue::from_f64(peer.0 as f64));
                item.push(&JsValue::from_f64(channel as f64));
                item.push(&Uint8Array::from(bytes.as_ref()));
                out.push(&item);
            }
        }
        out
    }

    /// The peers connected now.
    pub fn connected(&self) -> Array {
        self.session
            .connected_peers()
            .into_iter()
            .map(|p| JsValue::from_f64(p.0 as f64))
            .collect()
    }

    /// The stats of `peer` as JSON text (`null` when not connected).
    pub fn stats(&self, peer: f64) -> String {
        match self.session.stats(PeerId(peer as u64)) {
            Some(s) => json!({
                "connected": s.connected,
                "path": s.path.map(|p| p.name()),
                "pair_types": s.selected_pair_types.map(|(l, r)| [format!("{l:?}"), format!("{r:?}")]),
                "remote_candidate_types": s.remote_candidate_types.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>(),
                "rtt_ms": s.rtt.map(|d| d.as_secs_f64() * 1e3),
                "bytes_sent": s.bytes_sent,
                "bytes_received": s.bytes_received,
            })
            .to_string(),
            None => "null".into(),
        }
    }

    /// Leaves the lobby and closes every connection.
    pub fn close(self) {
        self.session.close();
    }
}

/// An event as the test page reports it.
fn describe(event: &Event) -> Value {
    match event {
        Event::PeerJoined { peer, .. } => json!({"event": "peer_joined", "peer": peer.0}),
        Event::PeerConnected {
            peer,
            path,
            connect_time,
        } => json!({
            "event": "connected",
            "peer": peer.0,
            "path": path.name(),
            "connect_ms": connect_time.as_secs_f64() * 1e3,
        }),
        Event::PeerDisconnected { peer, reason, .. } => json!({
            "event": "peer_left",
            "peer": peer.0,
            "reason": format!("{reason:?}"),
        }),
        Event::Closed(reason) => json!({
            "event": "closed",
            "reason": reason.as_ref().map(ToString::to_string),
        }),
        Event::Error(e) => json!({"event": "error", "message": e.to_string()}),
        other => json!({"event": "other", "debug": format!("{other:?}")}),
    }
}
