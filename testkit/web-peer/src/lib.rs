//! The Squadlink SDK itself, compiled to wasm32, as the peer of a test page: the browser
//! tests (`sdk/tests/browser.rs`) drive it through `testkit/web/wasm-peer.js` with the same
//! commands and events as the JavaScript reference peer (`testkit/web/peer.js`), so both
//! peers are checked against the same native sessions.
//!
//! Build: `scripts/web.sh peer` (wasm32 with Debian's rustc-web, then `wasm-bindgen
//! --target web`). On native targets this crate is empty.
#![cfg(target_arch = "wasm32")]

use std::rc::Rc;

use js_sys::{Array, Promise, Uint8Array};
use serde_json::{Value, json};
use squadlink::{Channel, ChannelKind, Event, IcePolicy, LobbyRef, PeerId, Session};
use wasm_bindgen::prelude::*;

/// One Squadlink session in the page, shared by the page's loops (events, each channel's
/// messages, an echo) through `Rc`.
#[wasm_bindgen]
pub struct WebPeer {
    session: Rc<Session>,
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
    /// kind names), relayed only when `relay_only`.
    pub async fn join(
        url: String,
        player: String,
        code: String,
        max_members: u8,
        channels: String,
        relay_only: bool,
    ) -> Result<WebPeer, JsValue> {
        let lobby = if code.is_empty() {
            LobbyRef::create(max_members)
        } else {
            LobbyRef::Code(code)
        };
        let mut builder = Session::builder(url).player_id(player).join(lobby);
        if relay_only {
            builder = builder.ice_policy(IcePolicy::RelayOnly);
        }
        for name in channels.split(',').filter(|s| !s.is_empty()) {
            builder = builder.channel(kind(name)?);
        }
        let session = builder.start_async().await.map_err(error)?;
        Ok(WebPeer {
            session: Rc::new(session),
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

    /// The next event as JSON text (`{"event": …}`), or `null` once the session has ended
    /// (the session's own `next_event().await`: no polling).
    pub fn next_event(&self) -> Promise {
        let session = Rc::clone(&self.session);
        wasm_bindgen_futures::future_to_promise(async move {
            Ok(match session.next_event().await {
                Some(event) => JsValue::from_str(&describe(&event).to_string()),
                None => JsValue::NULL,
            })
        })
    }

    /// The next message on `channel` as `[peer, bytes]`, or `null` once the session has
    /// ended (`recv().await`).
    pub fn recv(&self, channel: usize) -> Promise {
        let session = Rc::clone(&self.session);
        wasm_bindgen_futures::future_to_promise(async move {
            Ok(match session.recv(Channel(channel)).await {
                Some((peer, bytes)) => {
                    let item = Array::new();
                    item.push(&JsValue::from_f64(peer.0 as f64));
                    item.push(&Uint8Array::from(bytes.as_ref()));
                    item.into()
                }
                None => JsValue::NULL,
            })
        })
    }

    /// Sends back whatever arrives on `channel`, at once, until the session ends (for
    /// round-trip measurements: no page loop in between).
    pub fn echo(&self, channel: usize) {
        let session = Rc::clone(&self.session);
        wasm_bindgen_futures::spawn_local(async move {
            while let Some((peer, bytes)) = session.recv(Channel(channel)).await {
                let _ = session.send(peer, Channel(channel), &bytes);
            }
        });
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

    /// Leaves the lobby and closes every connection (the loops then end).
    pub fn leave(&self) {
        self.session.leave();
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
