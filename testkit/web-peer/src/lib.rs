//! The Squadlink SDK itself, compiled to wasm32, as the peer of a test page: the browser
//! tests (`sdk/tests/browser.rs`) drive it through `testkit/web/wasm-peer.js` with the same
//! commands and events as the JavaScript reference peer (`testkit/web/peer.js`), so both
//! peers are checked against the same native sessions.
//!
//! Build: `scripts/web.sh peer` (wasm32 with Debian's rustc-web, then `wasm-bindgen
//! --target web`). On native targets this crate is empty.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Promise, Uint8Array};
use serde_json::{Value, json};
use squadlink::video::{Video, VideoConfig, VideoInput};
use squadlink::voice::{AudioInput, AudioOutput, Listener, Voice, VoiceConfig, VoiceMode};
use squadlink::{Channel, ChannelKind, Event, IcePolicy, LobbyRef, PeerId, Session};
use wasm_bindgen::prelude::*;

/// One Squadlink session in the page, shared by the page's loops (events, each channel's
/// messages, an echo) through `Rc`.
#[wasm_bindgen]
pub struct WebPeer {
    session: Rc<Session>,
    voice: RefCell<Option<Voice>>,
    video: RefCell<Option<Video>>,
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
            voice: RefCell::new(None),
            video: RefCell::new(None),
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
                "ice_restarts": s.ice_restarts,
                "silent_ms": s.silent_for.as_secs_f64() * 1e3,
                "dropped_silent": s.dropped_silent,
            })
            .to_string(),
            None => "null".into(),
        }
    }

    /// Starts the SDK's voice: the microphone (when `mic`) unprocessed (the tests compare
    /// what was captured with what was heard) in `mode` (`open`, `ptt` or `vad`), the mix
    /// to the speakers.
    pub fn voice(&self, mic: bool, mode: &str) -> Result<(), JsValue> {
        let mode = match mode {
            "open" => VoiceMode::OpenMic,
            "ptt" => VoiceMode::PushToTalk,
            "vad" => VoiceMode::VoiceActivity,
            other => return Err(JsValue::from_str(&format!("unknown voice mode {other:?}"))),
        };
        let config = VoiceConfig::default()
            .mode(mode)
            .input(if mic {
                AudioInput::Default
            } else {
                AudioInput::None
            })
            .output(AudioOutput::Default)
            .noise_suppression(false)
            .echo_cancellation(false)
            .auto_gain(false);
        let voice =
            Voice::start(&self.session, config).map_err(|e| JsValue::from_str(&e.to_string()))?;
        *self.voice.borrow_mut() = Some(voice);
        Ok(())
    }

    /// The voice's events since the last call, as a JSON array of `{"event": "voice", "what"}`.
    pub fn voice_events(&self) -> String {
        let events = self
            .voice
            .borrow()
            .as_ref()
            .map(Voice::poll_events)
            .unwrap_or_default();
        Value::Array(
            events
                .iter()
                .map(|e| json!({"event": "voice", "what": format!("{e:?}")}))
                .collect(),
        )
        .to_string()
    }

    /// The voice mix as a Web Audio node (`null` without voice).
    pub fn voice_output(&self) -> JsValue {
        self.voice
            .borrow()
            .as_ref()
            .and_then(Voice::output)
            .map_or(JsValue::NULL, Into::into)
    }

    /// Places `peer`'s voice at (x, y, z); we listen from the origin, facing +y (right is +x).
    pub fn voice_position(&self, peer: f64, x: f32, y: f32, z: f32) {
        if let Some(voice) = self.voice.borrow().as_ref() {
            voice.set_listener(Listener::default(), squadlink::voice::Falloff::default());
            voice.set_peer_position(PeerId(peer as u64), Some([x, y, z]));
        }
    }

    /// What the voice receives from `peer` and sends, as JSON text.
    pub fn voice_stats(&self, peer: f64) -> String {
        let voice = self.voice.borrow();
        let Some(voice) = voice.as_ref() else {
            return "null".into();
        };
        let sent = voice.send_stats();
        let got = voice.stats(PeerId(peer as u64));
        json!({
            "received": got.as_ref().map(|s| json!({
                "packets_received": s.packets_received,
                "decoded": s.decoded,
                "lost": s.lost,
                "concealed": s.concealed,
                "jitter_ms": s.jitter.as_secs_f64() * 1e3,
                "kbps": s.kbps,
            })),
            "sent": {"packets_sent": sent.packets_sent, "bytes_sent": sent.bytes_sent, "frames_captured": sent.frames_captured},
        })
        .to_string()
    }

    /// Starts the SDK's video sending `input`: `camera`, `pattern` (the test pattern) or
    /// `none` (receive only).
    pub fn video(&self, input: &str) -> Result<(), JsValue> {
        let input = match input {
            "camera" => VideoInput::Camera,
            "pattern" => VideoInput::TestPattern,
            "none" => VideoInput::None,
            other => return Err(JsValue::from_str(&format!("unknown video input {other:?}"))),
        };
        let config = VideoConfig::default().input(input);
        let video =
            Video::start(&self.session, config).map_err(|e| JsValue::from_str(&e.to_string()))?;
        *self.video.borrow_mut() = Some(video);
        Ok(())
    }

    /// The video's events since the last call, as a JSON array of `{"event": "video", "what"}`.
    pub fn video_events(&self) -> String {
        let events = self
            .video
            .borrow()
            .as_ref()
            .map(Video::poll_events)
            .unwrap_or_default();
        Value::Array(
            events
                .iter()
                .map(|e| json!({"event": "video", "what": format!("{e:?}")}))
                .collect(),
        )
        .to_string()
    }

    /// `peer`'s newest picture not taken yet, as `{width, height, frame_id, rgba}`, or `null`.
    pub fn video_frame(&self, peer: f64) -> JsValue {
        let video = self.video.borrow();
        let Some(frame) = video
            .as_ref()
            .and_then(|v| v.take_frame(PeerId(peer as u64)))
        else {
            return JsValue::NULL;
        };
        let out = js_sys::Object::new();
        let set = |k: &str, v: &JsValue| {
            let _ = js_sys::Reflect::set(&out, &JsValue::from_str(k), v);
        };
        set("width", &JsValue::from(frame.width));
        set("height", &JsValue::from(frame.height));
        set("frame_id", &JsValue::from_f64(frame.frame_id as f64));
        set("rgba", &Uint8Array::from(frame.rgba.as_slice()).into());
        out.into()
    }

    /// What the video receives from `peer` and sends, as JSON text.
    pub fn video_stats(&self, peer: f64) -> String {
        let video = self.video.borrow();
        let Some(video) = video.as_ref() else {
            return "null".into();
        };
        let sent = video.send_stats();
        json!({
            "received": video.stats(PeerId(peer as u64)).map(|s| json!({
                "frames_decoded": s.frames_decoded, "fps": s.fps, "width": s.width, "height": s.height, "kbps": s.kbps,
            })),
            "sent": {"frames_sent": sent.frames_sent, "packets_sent": sent.packets_sent, "kbps": sent.kbps},
        })
        .to_string()
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
