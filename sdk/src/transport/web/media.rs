//! What the browser's voice and video share with the browser's engines: the page's own
//! tracks to send, each connection's transceivers, the peers' tracks that arrive, and the
//! RTP statistics `getStats()` reports for them.
//!
//! One [`Hub`] per session. The page's objects (`MediaStreamTrack`, `RTCPeerConnection`)
//! are not `Send`, and a [`crate::Session`] is (a Bevy resource), so the hubs stay on the
//! page's one thread in a thread-local registry and the session, `Voice` and `Video` hold
//! only the session's key ([`register`], [`hub`]). The engine attaches each connection
//! ([`Hub::attach`]), gives it our tracks before each offer or answer ([`prepare`]) and
//! reports what arrives; voice and video set our tracks ([`Hub::set_local`]) and read the
//! peers' ([`Hub::remote`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use js_sys::{Array, Reflect};
use squadlink_protocol::PeerId;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    MediaStreamTrack, RtcPeerConnection, RtcRtpTransceiver, RtcRtpTransceiverDirection,
    RtcRtpTransceiverInit,
};
use web_time::Instant;

use super::js::describe;
use crate::media::Kind;

thread_local! {
    /// The page's hubs by session key.
    static HUBS: RefCell<HashMap<u64, Rc<RefCell<Hub>>>> = RefCell::new(HashMap::new());
}

/// The next session key (keys are never reused, so a stale key finds nothing).
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// A new session's key, with its hub registered.
pub(crate) fn register() -> u64 {
    let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
    HUBS.with(|hubs| {
        hubs.borrow_mut()
            .insert(key, Rc::new(RefCell::new(Hub::default())))
    });
    key
}

/// The hub of session `key`, while the session runs.
pub(crate) fn hub(key: u64) -> Option<Rc<RefCell<Hub>>> {
    HUBS.with(|hubs| hubs.borrow().get(&key).cloned())
}

/// Forgets session `key`'s hub (the session has ended).
pub(crate) fn unregister(key: u64) {
    HUBS.with(|hubs| hubs.borrow_mut().remove(&key));
}

/// The kind's name in the page's APIs.
pub(crate) fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Audio => "audio",
        Kind::Video => "video",
    }
}

/// A peer's track that arrived; `serial` tells a replacement (a new connection) apart.
#[derive(Clone)]
pub(crate) struct Arrived {
    pub(crate) serial: u64,
    pub(crate) track: MediaStreamTrack,
}

/// The numbers of one `getStats()` entry (`inbound-rtp`, `outbound-rtp` or
/// `media-source` of one kind), and when they were read.
#[derive(Debug, Clone)]
pub(crate) struct RtpNumbers {
    pub(crate) at: Instant,
    values: HashMap<String, f64>,
}

impl RtpNumbers {
    /// The numeric fields of stats entry `entry`.
    pub(crate) fn read(entry: &JsValue, at: Instant) -> Self {
        let mut values = HashMap::new();
        let object: &js_sys::Object = entry.unchecked_ref();
        for pair in js_sys::Object::entries(object).iter() {
            let pair: Array = pair.unchecked_into();
            if let (Some(key), Some(value)) = (pair.get(0).as_string(), pair.get(1).as_f64()) {
                values.insert(key, value);
            }
        }
        Self { at, values }
    }

    /// Field `key`, 0 when the browser does not report it.
    pub(crate) fn get(&self, key: &str) -> f64 {
        self.values.get(key).copied().unwrap_or(0.0)
    }

    /// Field `key` as a count.
    pub(crate) fn count(&self, key: &str) -> u64 {
        self.get(key).max(0.0) as u64
    }

    /// Field `key`'s change per second since `before`.
    pub(crate) fn rate(&self, before: Option<&RtpNumbers>, key: &str) -> f64 {
        let Some(before) = before else { return 0.0 };
        let seconds = self.at.saturating_duration_since(before.at).as_secs_f64();
        if seconds <= 0.0 {
            return 0.0;
        }
        (self.get(key) - before.get(key)).max(0.0) / seconds
    }
}

/// Which entry of a connection's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum RtpEntry {
    /// What arrives from the peer (`inbound-rtp`).
    In(Kind),
    /// What we send the peer (`outbound-rtp`).
    Out(Kind),
    /// Our capture (`media-source`).
    Source(Kind),
}

impl RtpEntry {
    /// The entry a `getStats()` record is, if it is one of ours.
    pub(crate) fn of(entry: &JsValue) -> Option<Self> {
        let text = |key: &str| {
            Reflect::get(entry, &JsValue::from_str(key))
                .ok()
                .and_then(|v| v.as_string())
        };
        let kind = match text("kind")?.as_str() {
            "audio" => Kind::Audio,
            "video" => Kind::Video,
            _ => return None,
        };
        match text("type")?.as_str() {
            "inbound-rtp" => Some(Self::In(kind)),
            "outbound-rtp" => Some(Self::Out(kind)),
            "media-source" => Some(Self::Source(kind)),
            _ => None,
        }
    }
}

/// One connection's last two reports (the one before gives rates).
#[derive(Debug, Clone, Default)]
pub(crate) struct RtpReport {
    pub(crate) now: HashMap<RtpEntry, RtpNumbers>,
    pub(crate) before: HashMap<RtpEntry, RtpNumbers>,
}

impl RtpReport {
    /// Entry `entry` now, and the one before it.
    pub(crate) fn entry(&self, entry: RtpEntry) -> Option<(&RtpNumbers, Option<&RtpNumbers>)> {
        Some((self.now.get(&entry)?, self.before.get(&entry)))
    }
}

/// One connection, by the engine that made it.
struct Connection {
    generation: u64,
    pc: RtcPeerConnection,
    /// The kinds whose bitrate cap its sender has taken.
    capped: Vec<Kind>,
}

/// A session's media in the page.
#[derive(Default)]
pub(crate) struct Hub {
    /// Our tracks: the microphone's and the camera's.
    local: HashMap<Kind, MediaStreamTrack>,
    connections: HashMap<PeerId, Connection>,
    remote: HashMap<(PeerId, Kind), Arrived>,
    reports: HashMap<PeerId, RtpReport>,
    /// Bitrate caps (bits per second) by kind.
    bitrates: HashMap<Kind, u32>,
    next: u64,
}

impl Hub {
    /// A new connection to `peer` (replacing any before it); its generation.
    pub(crate) fn attach(&mut self, peer: PeerId, pc: &RtcPeerConnection) -> u64 {
        self.next += 1;
        let generation = self.next;
        self.connections.insert(
            peer,
            Connection {
                generation,
                pc: pc.clone(),
                capped: Vec::new(),
            },
        );
        self.remote.retain(|(p, _), _| *p != peer);
        self.reports.remove(&peer);
        generation
    }

    /// Whether connection `generation` is `peer`'s current one.
    fn is_current(&self, peer: PeerId, generation: u64) -> bool {
        self.connections
            .get(&peer)
            .is_some_and(|c| c.generation == generation)
    }

    /// Connection `generation` to `peer` is gone (a newer one stays).
    pub(crate) fn detach(&mut self, peer: PeerId, generation: u64) {
        if self.is_current(peer, generation) {
            self.connections.remove(&peer);
            self.remote.retain(|(p, _), _| *p != peer);
            self.reports.remove(&peer);
        }
    }

    /// A track of `peer`'s arrived on connection `generation`.
    pub(crate) fn arrived(&mut self, peer: PeerId, generation: u64, track: MediaStreamTrack) {
        let kind = match track.kind().as_str() {
            "audio" => Kind::Audio,
            "video" => Kind::Video,
            _ => return,
        };
        if !self.is_current(peer, generation) {
            return;
        }
        self.next += 1;
        let serial = self.next;
        self.remote.insert((peer, kind), Arrived { serial, track });
    }

    /// The peers' tracks of `kind`.
    pub(crate) fn remote(&self, kind: Kind) -> Vec<(PeerId, Arrived)> {
        self.remote
            .iter()
            .filter(|((_, k), _)| *k == kind)
            .map(|((peer, _), arrived)| (*peer, arrived.clone()))
            .collect()
    }

    /// Our track of `kind`.
    pub(crate) fn local(&self, kind: Kind) -> Option<MediaStreamTrack> {
        self.local.get(&kind).cloned()
    }

    /// Sends `track` (or nothing) as our `kind` on every connection, now and from now on.
    pub(crate) fn set_local(&mut self, kind: Kind, track: Option<MediaStreamTrack>) {
        match &track {
            Some(t) => self.local.insert(kind, t.clone()),
            None => self.local.remove(&kind),
        };
        for connection in self.connections.values() {
            if let Some(transceiver) = transceiver(&connection.pc, kind) {
                wasm_bindgen_futures::spawn_local(replace(transceiver, track.clone()));
            }
        }
    }

    /// Connection `generation` to `peer` read its statistics.
    pub(crate) fn reported(
        &mut self,
        peer: PeerId,
        generation: u64,
        now: HashMap<RtpEntry, RtpNumbers>,
    ) {
        if !self.is_current(peer, generation) {
            return;
        }
        let report = self.reports.entry(peer).or_default();
        report.before = std::mem::replace(&mut report.now, now);
        // Once connected the senders have their encodings: caps not taken yet go on now.
        if let Some(connection) = self.connections.get_mut(&peer) {
            for (kind, bps) in &self.bitrates {
                if !connection.capped.contains(kind)
                    && transceiver(&connection.pc, *kind).is_some_and(|t| cap(&t, *bps))
                {
                    connection.capped.push(*kind);
                }
            }
        }
    }

    /// Caps what each connection's encoder of `kind` sends, bits per second.
    pub(crate) fn set_bitrate(&mut self, kind: Kind, bps: u32) {
        self.bitrates.insert(kind, bps);
        for connection in self.connections.values_mut() {
            connection.capped.retain(|k| *k != kind);
        }
    }

    /// `peer`'s last RTP statistics.
    pub(crate) fn report(&self, peer: PeerId) -> Option<&RtpReport> {
        self.reports.get(&peer)
    }

    /// Every connection's last RTP statistics.
    pub(crate) fn reports(&self) -> impl Iterator<Item = &RtpReport> {
        self.reports.values()
    }
}

/// The connection's transceiver of `kind` (the first, which carries it), if it has one.
fn transceiver(pc: &RtcPeerConnection, kind: Kind) -> Option<RtcRtpTransceiver> {
    pc.get_transceivers()
        .iter()
        .filter_map(|t| t.dyn_into::<RtcRtpTransceiver>().ok())
        .find(|t| !t.stopped() && t.receiver().track().kind() == kind_name(kind))
}

/// Sets the first encoding's `maxBitrate` of the transceiver's sender; false when it has no
/// encodings yet (before negotiation).
fn cap(transceiver: &RtcRtpTransceiver, bps: u32) -> bool {
    let sender = transceiver.sender();
    let get = |target: &JsValue, key: &str| Reflect::get(target, &JsValue::from_str(key)).ok();
    let Some(params) = get(&sender, "getParameters")
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .and_then(|f| f.call0(&sender).ok())
    else {
        return false;
    };
    let Some(first) = get(&params, "encodings")
        .and_then(|e| e.dyn_into::<Array>().ok())
        .map(|e| e.get(0))
        .filter(|first| first.is_object())
    else {
        return false;
    };
    if Reflect::set(
        &first,
        &JsValue::from_str("maxBitrate"),
        &JsValue::from(bps),
    )
    .is_err()
    {
        return false;
    }
    let Some(promise) = get(&sender, "setParameters")
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .and_then(|f| f.call1(&sender, &params).ok())
        .and_then(|p| p.dyn_into::<js_sys::Promise>().ok())
    else {
        return false;
    };
    wasm_bindgen_futures::spawn_local(async move {
        if let Err(e) = JsFuture::from(promise).await {
            tracing::debug!(e = %describe(&e), "the browser refused a bitrate cap");
        }
    });
    true
}

/// `getUserMedia(constraints)`: the page's microphone or camera.
pub(crate) async fn user_media(
    constraints: &web_sys::MediaStreamConstraints,
) -> Result<web_sys::MediaStream, String> {
    let window = web_sys::window().ok_or("no window (a worker has no microphone or camera)")?;
    let devices = window
        .navigator()
        .media_devices()
        .map_err(|e| format!("the page has no media devices: {}", describe(&e)))?;
    let promise = devices
        .get_user_media_with_constraints(constraints)
        .map_err(|e| describe(&e))?;
    JsFuture::from(promise)
        .await
        .map_err(|e| describe(&e))?
        .dyn_into::<web_sys::MediaStream>()
        .map_err(|_| "getUserMedia gave no stream".to_string())
}

/// Stops every track of `stream` (the browser's recording light goes off).
pub(crate) fn stop_tracks(stream: &web_sys::MediaStream) {
    for track in stream.get_tracks().iter() {
        if let Ok(track) = track.dyn_into::<MediaStreamTrack>() {
            track.stop();
        }
    }
}

/// Puts `track` on the transceiver's sender.
async fn replace(transceiver: RtcRtpTransceiver, track: Option<MediaStreamTrack>) {
    if let Err(e) = JsFuture::from(transceiver.sender().replace_track(track.as_ref())).await {
        tracing::debug!(e = %describe(&e), "the browser refused our track");
    }
}

/// Before an offer (`offering`) or an answer: one audio and one video transceiver that send
/// and receive — added when we offer, the offer's own turned to send when we answer — with
/// our tracks on them. So media is negotiated whichever side offers, as native peers do.
pub(crate) async fn prepare(pc: &RtcPeerConnection, hub: &Rc<RefCell<Hub>>, offering: bool) {
    for kind in [Kind::Audio, Kind::Video] {
        let existing = transceiver(pc, kind);
        let transceiver = match existing {
            Some(t) => {
                if t.direction() != RtcRtpTransceiverDirection::Sendrecv {
                    t.set_direction(RtcRtpTransceiverDirection::Sendrecv);
                }
                t
            }
            None if offering => {
                let init = RtcRtpTransceiverInit::new();
                init.set_direction(RtcRtpTransceiverDirection::Sendrecv);
                pc.add_transceiver_with_str_and_init(kind_name(kind), &init)
            }
            None => continue,
        };
        let track = hub.try_borrow().ok().and_then(|h| h.local(kind));
        if track.is_some() {
            replace(transceiver, track).await;
        }
    }
}
