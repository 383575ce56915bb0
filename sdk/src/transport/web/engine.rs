//! The browser's engine: the page's own `RTCPeerConnection` behind the engine seam.
//!
//! What differs from the native engine, and how the seam carries it:
//! - offers and answers are promises, so [`WebEngine::offer`] and
//!   [`WebEngine::accept_offer`] answer "later": the description comes as
//!   [`EngineEvent::Described`]. Every negotiation step (descriptions, the peer's
//!   candidates) runs in the order it was asked for, one after the other, on the page's
//!   event loop ([`Negotiation`]);
//! - the browser does its own ICE: it gathers from the ICE servers it is given, resolves
//!   mDNS names and owns the network, so there are no datagrams here; our candidates come
//!   as [`EngineEvent::Candidate`] and the path from the selected pair;
//! - the page's callbacks (messages, channels opening and closing, candidates, failure)
//!   land in an inbox, and a wake-up tells the shell which peer to pump: the core reads
//!   the inbox in [`WebEngine::step`], as it reads the native engine.
//!
//! - voice and video ride the browser's own tracks: every offer and answer has an audio
//!   and a video transceiver that send and receive, with the page's tracks on them, and the
//!   tracks that arrive go to the session's media hub (`media.rs`) for `Voice` and `Video`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use js_sys::{Array, Function, Reflect, Uint8Array};
use squadlink_protocol::{PeerId, Signal};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    MessageEvent, RtcConfiguration, RtcDataChannel, RtcDataChannelInit, RtcDataChannelState,
    RtcDataChannelType, RtcIceCandidateInit, RtcIceServer, RtcIceTransportPolicy, RtcOfferOptions,
    RtcPeerConnection, RtcPeerConnectionIceEvent, RtcPeerConnectionState, RtcSdpType,
    RtcSessionDescriptionInit, RtcTrackEvent,
};
use web_time::Instant;

use super::super::engine::{Engine, EngineEvent, PeerSettings, Sent, WireCounts, sdp_attribute};
use super::js::describe;
use super::media::{self, Hub, RtpEntry, RtpNumbers};
use crate::event::CandidateKind;
use crate::media::{Kind, MediaFrame};

/// Tells the shell that peer `PeerId`'s engine has something for the core.
pub(crate) type Wake = tokio::sync::mpsc::UnboundedSender<PeerId>;

/// What the page's callbacks and the negotiation leave for the core, and the wake-up.
struct Inbox {
    peer: PeerId,
    events: RefCell<VecDeque<EngineEvent>>,
    /// A wake-up is on its way and not yet served by a step (one is enough).
    woken: Cell<bool>,
    wake: Wake,
    /// Channels open so far; `AllOpen` when it reaches them all.
    open: Cell<usize>,
    channels: usize,
    /// The transport's counts from the last `getStats()`, and whether one is running.
    counts: Cell<Option<WireCounts>>,
    counting: Cell<bool>,
}

impl Inbox {
    fn push(&self, event: EngineEvent) {
        self.events.borrow_mut().push_back(event);
        if !self.woken.replace(true) {
            let _ = self.wake.send(self.peer);
        }
    }
}

/// One negotiation step, run after the ones before it.
enum Op {
    /// Create an offer (an ICE restart's when `restart`) and set it as ours.
    Offer { restart: bool },
    /// Set the peer's offer and answer it.
    Answer(String),
    /// Set the peer's answer to our offer.
    Remote(String),
    /// Add one of the peer's candidates.
    Candidate(RtcIceCandidateInit),
}

/// The negotiation steps waiting, and whether a task is running them.
struct Negotiation {
    pc: RtcPeerConnection,
    inbox: Rc<Inbox>,
    /// The session's media: our tracks go on each offer and answer.
    hub: Rc<RefCell<Hub>>,
    queue: RefCell<VecDeque<Op>>,
    running: Cell<bool>,
}

impl Negotiation {
    /// Queues `op`, and starts the task that runs the queue unless it runs already.
    fn queue(self: &Rc<Self>, op: Op) {
        self.queue.borrow_mut().push_back(op);
        if !self.running.replace(true) {
            wasm_bindgen_futures::spawn_local(Rc::clone(self).run());
        }
    }

    async fn run(self: Rc<Self>) {
        loop {
            let next = self.queue.borrow_mut().pop_front();
            let Some(op) = next else {
                self.running.set(false);
                return;
            };
            if let Err(reason) = self.perform(op).await {
                self.inbox.push(EngineEvent::Failed(reason));
            }
        }
    }

    async fn perform(&self, op: Op) -> Result<(), String> {
        match op {
            Op::Offer { restart } => {
                let options = RtcOfferOptions::new();
                options.set_ice_restart(restart);
                media::prepare(&self.pc, &self.hub, true).await;
                let offer = settle(self.pc.create_offer_with_rtc_offer_options(&options))
                    .await
                    .map_err(|e| format!("createOffer: {e}"))?;
                let sdp = self.set_local(RtcSdpType::Offer, &offer).await?;
                self.inbox.push(EngineEvent::Described { offer: true, sdp });
            }
            Op::Answer(offer) => {
                self.set_remote(RtcSdpType::Offer, &offer).await?;
                media::prepare(&self.pc, &self.hub, false).await;
                let answer = settle(self.pc.create_answer())
                    .await
                    .map_err(|e| format!("createAnswer: {e}"))?;
                let sdp = self.set_local(RtcSdpType::Answer, &answer).await?;
                self.inbox
                    .push(EngineEvent::Described { offer: false, sdp });
            }
            Op::Remote(answer) => self.set_remote(RtcSdpType::Answer, &answer).await?,
            Op::Candidate(init) => {
                // One candidate the browser cannot use is no reason to fail the others.
                if let Err(e) = settle(
                    self.pc
                        .add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init)),
                )
                .await
                {
                    tracing::debug!(peer = %self.inbox.peer, %e, "the browser refused a candidate");
                }
            }
        }
        Ok(())
    }

    /// Sets the description `created` (of `kind`) as ours; its SDP.
    async fn set_local(&self, kind: RtcSdpType, created: &JsValue) -> Result<String, String> {
        let sdp = Reflect::get(created, &JsValue::from_str("sdp"))
            .ok()
            .and_then(|v| v.as_string())
            .ok_or("the browser's description has no SDP")?;
        let init = RtcSessionDescriptionInit::new(kind);
        init.set_sdp(&sdp);
        settle(self.pc.set_local_description(&init))
            .await
            .map_err(|e| format!("setLocalDescription: {e}"))?;
        Ok(sdp)
    }

    async fn set_remote(&self, kind: RtcSdpType, sdp: &str) -> Result<(), String> {
        let init = RtcSessionDescriptionInit::new(kind);
        init.set_sdp(sdp);
        settle(self.pc.set_remote_description(&init))
            .await
            .map(|_| ())
            .map_err(|e| format!("setRemoteDescription: {e}"))
    }
}

/// A promise's value, or its rejection as text.
async fn settle(promise: js_sys::Promise) -> Result<JsValue, String> {
    JsFuture::from(promise).await.map_err(|e| describe(&e))
}

/// A callback the page holds; kept alive as long as the engine.
type Callback = Closure<dyn FnMut(JsValue)>;

/// One peer connection carried by the page's `RTCPeerConnection`.
pub(crate) struct WebEngine {
    pc: RtcPeerConnection,
    /// The session's channels in order, then the control channel.
    dcs: Vec<RtcDataChannel>,
    inbox: Rc<Inbox>,
    negotiation: Rc<Negotiation>,
    /// A local description was asked for (its steps run in order, so from the core's side
    /// it is set).
    local_set: bool,
    /// The peer's description was handed in.
    remote_set: bool,
    /// The next offer restarts ICE.
    restart: bool,
    /// When the wire counts are next read (`getStats()`).
    next_count: Option<Instant>,
    /// The session's media, and this connection's generation in it.
    hub: Rc<RefCell<Hub>>,
    generation: u64,
    _callbacks: Vec<Callback>,
}

impl WebEngine {
    /// The browser engine for a new connection to `peer`, whose callbacks wake the shell
    /// through `wake`, carrying the session's media (`hub`).
    pub(crate) fn make(
        peer: PeerId,
        settings: &PeerSettings<'_>,
        wake: &Wake,
        hub: &Rc<RefCell<Hub>>,
    ) -> Result<Box<dyn Engine>, String> {
        let config = RtcConfiguration::new();
        let servers = Array::new();
        for server in settings.ice_servers {
            let s = RtcIceServer::new();
            let urls = Array::new();
            for url in &server.urls {
                urls.push(&JsValue::from_str(url));
            }
            s.set_urls(&urls);
            if let Some(user) = &server.username {
                s.set_username(user);
            }
            if let Some(credential) = &server.credential {
                s.set_credential(credential);
            }
            servers.push(&s);
        }
        config.set_ice_servers(&servers);
        if settings.relay_only {
            config.set_ice_transport_policy(RtcIceTransportPolicy::Relay);
        }
        let pc = RtcPeerConnection::new_with_configuration(&config).map_err(|e| {
            format!(
                "the browser could not make a peer connection: {}",
                describe(&e)
            )
        })?;
        let n = settings.channels.len();
        let inbox = Rc::new(Inbox {
            peer,
            events: RefCell::new(VecDeque::new()),
            woken: Cell::new(false),
            wake: wake.clone(),
            open: Cell::new(0),
            channels: n + 1,
            counts: Cell::new(None),
            counting: Cell::new(false),
        });
        let mut callbacks = Vec::new();
        let mut dcs = Vec::with_capacity(n + 1);
        let lifetime =
            crate::channel::ChannelKind::Unreliable.lifetime_ms(settings.unreliable_lifetime);
        for i in 0..=n {
            let kind = settings.channels.get(i);
            let init = RtcDataChannelInit::new();
            init.set_negotiated(true);
            init.set_id(u16::try_from(i).map_err(|_| "too many channels".to_string())?);
            // The control channel (last) is unordered with the unreliable lifetime.
            init.set_ordered(kind.is_some_and(|k| k.ordered()));
            let life = kind.map_or(lifetime, |k| k.lifetime_ms(settings.unreliable_lifetime));
            if let Some(ms) = life {
                init.set_max_packet_life_time(ms);
            }
            let label = if i == n {
                "squadlink-control".to_string()
            } else {
                format!("squadlink-{i}")
            };
            let dc = pc.create_data_channel_with_data_channel_dict(&label, &init);
            dc.set_binary_type(RtcDataChannelType::Arraybuffer);
            callbacks.extend(channel_callbacks(&dc, i, &inbox));
            dcs.push(dc);
        }
        callbacks.extend(connection_callbacks(&pc, &inbox));
        let generation = hub
            .try_borrow_mut()
            .map_err(|_| "the session's media is busy".to_string())?
            .attach(peer, &pc);
        callbacks.push(track_callback(&pc, peer, generation, hub));
        let negotiation = Rc::new(Negotiation {
            pc: pc.clone(),
            inbox: Rc::clone(&inbox),
            hub: Rc::clone(hub),
            queue: RefCell::new(VecDeque::new()),
            running: Cell::new(false),
        });
        Ok(Box::new(Self {
            pc,
            dcs,
            inbox,
            negotiation,
            local_set: false,
            remote_set: false,
            restart: false,
            next_count: None,
            hub: Rc::clone(hub),
            generation,
            _callbacks: callbacks,
        }))
    }

    fn is_open(dc: &RtcDataChannel) -> bool {
        dc.ready_state() == RtcDataChannelState::Open
    }
}

/// The callbacks of data channel `index`: messages, opening, closing.
fn channel_callbacks(dc: &RtcDataChannel, index: usize, inbox: &Rc<Inbox>) -> Vec<Callback> {
    let on_message = {
        let inbox = Rc::clone(inbox);
        Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
            let Ok(event) = event.dyn_into::<MessageEvent>() else {
                return;
            };
            let data = event.data();
            // Binary only (`binaryType` is arraybuffer); a text frame is not ours.
            if !data.is_instance_of::<js_sys::ArrayBuffer>() {
                tracing::debug!(peer = %inbox.peer, index, "a text message on a data channel ignored");
                return;
            }
            let bytes = Uint8Array::new(&data).to_vec();
            inbox.push(EngineEvent::Message {
                index,
                data: Bytes::from(bytes),
            });
        })
    };
    let on_open = {
        let inbox = Rc::clone(inbox);
        Closure::<dyn FnMut(JsValue)>::new(move |_| {
            let open = inbox.open.get() + 1;
            inbox.open.set(open);
            if open == inbox.channels {
                inbox.push(EngineEvent::AllOpen);
            }
        })
    };
    let on_close = {
        let inbox = Rc::clone(inbox);
        Closure::<dyn FnMut(JsValue)>::new(move |_| inbox.push(EngineEvent::Closed))
    };
    dc.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    dc.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    dc.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    vec![on_message, on_open, on_close]
}

/// The connection's callbacks: our candidates, and failure.
fn connection_callbacks(pc: &RtcPeerConnection, inbox: &Rc<Inbox>) -> Vec<Callback> {
    let on_candidate = {
        let inbox = Rc::clone(inbox);
        Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
            let Ok(event) = event.dyn_into::<RtcPeerConnectionIceEvent>() else {
                return;
            };
            // `null` ends gathering; an empty line is the end-of-candidates marker.
            let Some(candidate) = event.candidate() else {
                return;
            };
            let line = candidate.candidate();
            if line.is_empty() {
                return;
            }
            let username_fragment =
                Reflect::get(&candidate, &JsValue::from_str("usernameFragment"))
                    .ok()
                    .and_then(|v| v.as_string());
            inbox.push(EngineEvent::Candidate(Signal::Candidate {
                candidate: line,
                sdp_mid: candidate.sdp_mid(),
                sdp_mline_index: candidate.sdp_m_line_index(),
                username_fragment,
            }));
        })
    };
    let on_state = {
        let inbox = Rc::clone(inbox);
        let pc = pc.clone();
        Closure::<dyn FnMut(JsValue)>::new(move |_| {
            if pc.connection_state() == RtcPeerConnectionState::Failed {
                inbox.push(EngineEvent::Failed(
                    "the browser's connection failed (ICE or DTLS)".into(),
                ));
            }
        })
    };
    pc.set_onicecandidate(Some(on_candidate.as_ref().unchecked_ref()));
    pc.set_onconnectionstatechange(Some(on_state.as_ref().unchecked_ref()));
    vec![on_candidate, on_state]
}

/// The peer's tracks, as they arrive, to the session's media.
fn track_callback(
    pc: &RtcPeerConnection,
    peer: PeerId,
    generation: u64,
    hub: &Rc<RefCell<Hub>>,
) -> Callback {
    let hub = Rc::downgrade(hub);
    let on_track = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
        let Ok(event) = event.dyn_into::<RtcTrackEvent>() else {
            return;
        };
        if let Some(hub) = hub.upgrade()
            && let Ok(mut hub) = hub.try_borrow_mut()
        {
            hub.arrived(peer, generation, event.track());
        }
    });
    pc.set_ontrack(Some(on_track.as_ref().unchecked_ref()));
    on_track
}

impl Drop for WebEngine {
    fn drop(&mut self) {
        // The page must not call callbacks that are gone.
        for dc in &self.dcs {
            dc.set_onmessage(None);
            dc.set_onopen(None);
            dc.set_onclose(None);
        }
        self.pc.set_onicecandidate(None);
        self.pc.set_onconnectionstatechange(None);
        self.pc.set_ontrack(None);
        if let Ok(mut hub) = self.hub.try_borrow_mut() {
            hub.detach(self.inbox.peer, self.generation);
        }
        self.pc.close();
    }
}

impl Engine for WebEngine {
    fn all_open(&self) -> bool {
        self.dcs.iter().all(Self::is_open)
    }

    fn has_local_description(&self) -> bool {
        self.local_set
    }

    fn awaits_first_offer(&self) -> bool {
        !self.local_set && !self.remote_set
    }

    fn has_remote_description(&self) -> bool {
        self.remote_set
    }

    fn offer(&mut self, _now: Instant) -> Result<Option<String>, String> {
        let restart = std::mem::take(&mut self.restart);
        self.negotiation.queue(Op::Offer { restart });
        self.local_set = true;
        Ok(None)
    }

    fn accept_offer(&mut self, sdp: String, _now: Instant) -> Result<Option<String>, String> {
        self.negotiation.queue(Op::Answer(sdp));
        self.remote_set = true;
        self.local_set = true;
        Ok(None)
    }

    fn accept_answer(&mut self, sdp: String, _now: Instant) -> Result<(), String> {
        self.negotiation.queue(Op::Remote(sdp));
        self.remote_set = true;
        Ok(())
    }

    fn remote_description_applied(&mut self, _now: Instant) -> Result<(), String> {
        // Candidates queued after the description are added after it: nothing waits.
        Ok(())
    }

    fn add_remote_candidate(
        &mut self,
        candidate: String,
        sdp_mid: Option<String>,
        sdp_mline_index: Option<u16>,
        username_fragment: Option<String>,
    ) -> Result<(), String> {
        let init = RtcIceCandidateInit::new(&candidate);
        match (
            sdp_mid.as_deref().filter(|m| !m.is_empty()),
            sdp_mline_index,
        ) {
            (None, None) => init.set_sdp_m_line_index(Some(0)),
            (mid, index) => {
                init.set_sdp_mid(mid);
                init.set_sdp_m_line_index(index);
            }
        }
        if let Some(ufrag) = username_fragment {
            let _ = Reflect::set(
                &init,
                &JsValue::from_str("usernameFragment"),
                &JsValue::from_str(&ufrag),
            );
        }
        self.negotiation.queue(Op::Candidate(init));
        Ok(())
    }

    fn add_local_candidate(
        &mut self,
        _kind: CandidateKind,
        _addr: SocketAddr,
        _base: SocketAddr,
        _priority: u32,
    ) -> Option<Signal> {
        // The browser gathers its own (`EngineEvent::Candidate`).
        None
    }

    fn handle_datagram(
        &mut self,
        _now: Instant,
        _local: SocketAddr,
        _from: SocketAddr,
        _data: &[u8],
    ) -> bool {
        false
    }

    fn poll_transmit(&mut self) -> Option<(BytesMut, SocketAddr, SocketAddr)> {
        None
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.next_count
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.next_count.is_some_and(|at| at <= now) {
            self.next_count = Some(now + COUNT_EVERY);
            if !self.inbox.counting.replace(true) {
                wasm_bindgen_futures::spawn_local(count(
                    self.pc.clone(),
                    Rc::clone(&self.inbox),
                    (Rc::clone(&self.hub), self.generation),
                ));
            }
        }
    }

    fn restart_ice(&mut self) {
        self.restart = true;
    }

    fn send(&mut self, index: usize, frames: Vec<BytesMut>, limit: usize, _now: Instant) -> Sent {
        let Some(dc) = self.dcs.get(index).filter(|dc| Self::is_open(dc)) else {
            return Sent::No;
        };
        if usize::try_from(dc.buffered_amount()).unwrap_or(usize::MAX) > limit {
            return Sent::QueueFull;
        }
        for frame in &frames {
            if let Err(e) = dc.send_with_u8_array(frame) {
                tracing::debug!(peer = %self.inbox.peer, index, e = %describe(&e), "send failed");
                return Sent::No;
            }
        }
        Sent::Yes
    }

    fn send_frame(&mut self, index: usize, frame: BytesMut, _now: Instant) {
        if let Some(dc) = self.dcs.get(index).filter(|dc| Self::is_open(dc)) {
            let _ = dc.send_with_u8_array(&frame);
        }
    }

    fn queued_bytes(&mut self) -> usize {
        self.dcs
            .iter()
            .map(|dc| usize::try_from(dc.buffered_amount()).unwrap_or(0))
            .sum()
    }

    fn close(&mut self) {
        self.pc.close();
    }

    fn close_channels(&mut self) {
        for dc in &self.dcs {
            dc.close();
        }
    }

    fn channels_closed(&self) -> bool {
        self.dcs.iter().all(|dc| {
            !matches!(
                dc.ready_state(),
                RtcDataChannelState::Open | RtcDataChannelState::Closing
            )
        })
    }

    fn step(&mut self, now: Instant, out: &mut Vec<EngineEvent>) -> bool {
        self.inbox.woken.set(false);
        // The wire counts are read once the connection is up, and every second after.
        if self.next_count.is_none() && self.all_open() {
            self.next_count = Some(now);
        }
        let mut events = self.inbox.events.borrow_mut();
        let any = !events.is_empty();
        out.extend(events.drain(..));
        any
    }

    fn local_ufrag(&self) -> Option<String> {
        let sdp = self.pc.local_description()?.sdp();
        sdp_attribute(&sdp, "ice-ufrag")
    }

    fn control(&self) -> usize {
        self.dcs.len().saturating_sub(1)
    }

    fn send_rtp_as(
        &mut self,
        _kind: Kind,
        _frame: &MediaFrame,
        _payload_type: Option<u8>,
        _now: Instant,
    ) -> bool {
        false
    }

    fn send_pli(&mut self, _now: Instant) {}

    fn own_ice(&self) -> bool {
        true
    }

    fn selected_pair(&self) -> Option<(CandidateKind, SocketAddr, CandidateKind)> {
        selected_pair(&self.pc)
    }

    fn wire_counts(&self) -> Option<WireCounts> {
        self.inbox.counts.get()
    }
}

/// How often the wire counts are read from `getStats()`.
const COUNT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads the transport's packet and byte counts (`getStats()`, the `transport` entry) into
/// the inbox, and the media's RTP statistics into the hub (connection `generation`).
async fn count(
    pc: RtcPeerConnection,
    inbox: Rc<Inbox>,
    (hub, generation): (Rc<RefCell<Hub>>, u64),
) {
    let report = settle(pc.get_stats()).await;
    inbox.counting.set(false);
    let Ok(report) = report else { return };
    let found = Rc::new(Cell::new(None));
    let rtp = Rc::new(RefCell::new(std::collections::HashMap::new()));
    let at = Instant::now();
    let each = {
        let found = Rc::clone(&found);
        let rtp = Rc::clone(&rtp);
        Closure::<dyn FnMut(JsValue)>::new(move |entry: JsValue| {
            if let Some(which) = RtpEntry::of(&entry) {
                rtp.borrow_mut().insert(which, RtpNumbers::read(&entry, at));
                return;
            }
            let get = |key: &str| {
                Reflect::get(&entry, &JsValue::from_str(key))
                    .ok()
                    .and_then(|v| v.as_f64())
                    .map_or(0, |v| v as u64)
            };
            let kind = Reflect::get(&entry, &JsValue::from_str("type"))
                .ok()
                .and_then(|v| v.as_string());
            if kind.as_deref() == Some("transport") {
                found.set(Some(WireCounts {
                    packets_sent: get("packetsSent"),
                    packets_received: get("packetsReceived"),
                    bytes_sent: get("bytesSent"),
                    bytes_received: get("bytesReceived"),
                }));
            }
        })
    };
    if let Some(for_each) = Reflect::get(&report, &JsValue::from_str("forEach"))
        .ok()
        .and_then(|f| f.dyn_into::<Function>().ok())
    {
        let _ = for_each.call1(&report, each.as_ref());
    }
    if let Some(counts) = found.get() {
        inbox.counts.set(Some(counts));
    }
    let rtp = rtp.take();
    if let Ok(mut hub) = hub.try_borrow_mut() {
        hub.reported(inbox.peer, generation, rtp);
    }
}

/// The selected pair (our candidate's type; the peer's address and type), from
/// `pc.sctp.transport.iceTransport.getSelectedCandidatePair()`.
fn selected_pair(pc: &RtcPeerConnection) -> Option<(CandidateKind, SocketAddr, CandidateKind)> {
    let get = |v: &JsValue, key: &str| Reflect::get(v, &JsValue::from_str(key)).ok();
    let sctp = get(pc, "sctp")?;
    let ice = get(&get(&sctp, "transport")?, "iceTransport")?;
    let pick = get(&ice, "getSelectedCandidatePair")?
        .dyn_into::<Function>()
        .ok()?;
    let pair = pick.call0(&ice).ok()?;
    let kind = |candidate: &JsValue| match get(candidate, "type")?.as_string()?.as_str() {
        "host" => Some(CandidateKind::Host),
        "srflx" => Some(CandidateKind::Srflx),
        "prflx" => Some(CandidateKind::Prflx),
        "relay" => Some(CandidateKind::Relay),
        _ => None,
    };
    let local = get(&pair, "local")?;
    let remote = get(&pair, "remote")?;
    let ip: std::net::IpAddr = get(&remote, "address")?.as_string()?.parse().ok()?;
    let port = u16::try_from(get(&remote, "port")?.as_f64()? as u32).ok()?;
    Some((kind(&local)?, SocketAddr::new(ip, port), kind(&remote)?))
}
