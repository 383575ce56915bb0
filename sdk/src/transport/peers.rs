//! The peer table: every peer connection, which peer a datagram is for, and the drive of
//! one connection's engine (what comes out of it goes to the game, the media pipelines or
//! the wire through [`Out`]).
//!
//! It owns the peers and the routes; time comes in as an argument. What to do about a
//! peer (connect, restart, disconnect) is the session core's decision: this table tells it
//! what happened ([`Pumped`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use web_time::Instant;

use bytes::Bytes;
use squadlink_protocol::{PeerId, Signal};

use super::candidates::Candidates;
use super::engine::{EngineEvent, Sent};
use super::liveness::{self, Timeouts, Verdict};
use super::net::{self, CandidateLine, parse_candidate};
use super::output::Out;
use super::peer::{Inbound, Peer};
use super::routes::{Route, Routes};
use crate::channel::ChannelKind;
use crate::conditioner::{Conditioner, NetworkConditions};
use crate::error::Error;
use crate::event::CandidateKind;
use crate::event::{DisconnectReason, Event, PathKind};
use crate::media::{self, MediaFrame, MediaIn};

/// The longest an ending session waits for its peers to close their data channels (one
/// round trip, normally; a peer that ignores the goodbye is waited for this long) before
/// it aborts the connections anyway.
pub(crate) const CLOSE_WAIT: Duration = Duration::from_millis(500);
/// A remote candidate as signaled: its `candidate:` line, `sdpMid`, `sdpMLineIndex` and
/// username fragment.
pub(crate) type RemoteCandidate = (String, Option<String>, Option<u16>, Option<String>);

/// Most engine steps in one pump (each step drains what it can; this only bounds a
/// pathological engine).
const MAX_STEPS: usize = 1_000;
/// Unreliable messages are dropped when this much is already queued for the peer.
const UNRELIABLE_QUEUE_LIMIT: usize = 256 * 1024;
/// Reliable sends fail with `SendBufferFull` past this.
const RELIABLE_QUEUE_LIMIT: usize = 16 * 1024 * 1024;
/// A connected peer whose remote address is only peer-reflexive is announced after this.
const ANNOUNCE_GRACE: Duration = Duration::from_millis(300);

/// What one pump of a peer's engine found that the core must act on.
#[derive(Debug, Default)]
pub(crate) struct Pumped {
    /// Both ends' channels opened just now.
    pub(crate) connected: bool,
    /// The connection ended (failed, or the peer closed it).
    pub(crate) end: Option<DisconnectReason>,
}

/// The peers and the routes to them.
pub(crate) struct Peers {
    map: HashMap<PeerId, Peer>,
    /// Which peer each datagram on the socket is for.
    routes: Routes,
    /// The engine events of the peer being pumped (kept for its capacity).
    events: Vec<EngineEvent>,
    /// Ping timestamps count from here.
    epoch: Instant,
    /// Connections announced since the core last took them: path and connect time.
    announced: Vec<(PathKind, Duration)>,
    /// Simulated paths from single peers (testing; by peer id, so that a path outlives the
    /// connection and applies to the next one too): a datagram from that peer goes through
    /// it before its engine sees it.
    paths: HashMap<PeerId, Conditioner<(Bytes, SocketAddr, SocketAddr)>>,
    /// Adversarial testing: read nothing but ICE checks (a peer that never reads).
    #[cfg(feature = "fuzzing")]
    pub(crate) deaf: bool,
}

impl Peers {
    pub(crate) fn new(epoch: Instant) -> Self {
        Self {
            map: HashMap::new(),
            routes: Routes::default(),
            events: Vec::new(),
            epoch,
            announced: Vec::new(),
            paths: HashMap::new(),
            #[cfg(feature = "fuzzing")]
            deaf: false,
        }
    }

    /// The connections announced since the last call: path and connect time.
    pub(crate) fn take_announced(&mut self) -> Vec<(PathKind, Duration)> {
        std::mem::take(&mut self.announced)
    }

    pub(crate) fn get(&self, id: PeerId) -> Option<&Peer> {
        self.map.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: PeerId) -> Option<&mut Peer> {
        self.map.get_mut(&id)
    }

    pub(crate) fn contains(&self, id: PeerId) -> bool {
        self.map.contains_key(&id)
    }

    pub(crate) fn insert(&mut self, peer: Peer) {
        self.map.insert(peer.id, peer);
    }

    /// Every peer's id.
    pub(crate) fn ids(&self) -> Vec<PeerId> {
        self.map.keys().copied().collect()
    }

    /// The connected peers, or just `to` if it is one of them.
    pub(crate) fn connected_ids(&self, to: Option<PeerId>) -> Vec<PeerId> {
        self.map
            .iter()
            .filter(|(id, p)| p.is_connected() && to.is_none_or(|t| t == **id))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Every address the peers announced candidates at.
    pub(crate) fn remote_addresses(&self) -> Vec<SocketAddr> {
        self.map
            .values()
            .flat_map(|p| p.remote_candidates().keys().copied())
            .collect()
    }

    /// The periodic round's judgement of every peer (see `liveness.rs`), with the upkeep
    /// that needs no one else done: a peer ready to connect is pinged (it counts us
    /// connected when it hears us); a live one is announced once its path is known,
    /// pinged when due, and its loss and stats are brought up to date. The core acts on
    /// the rest (timeouts, silence, ICE restarts) and pumps the peers.
    pub(crate) fn round(
        &mut self,
        now: Instant,
        timeouts: Timeouts,
        cands: &Candidates,
        out: &Out,
    ) -> Vec<(PeerId, Verdict)> {
        let mut verdicts = Vec::with_capacity(self.map.len());
        for id in self.ids() {
            let Some(p) = self.map.get_mut(&id) else {
                continue;
            };
            let verdict = liveness::judge(&p.facts(), now, timeouts);
            match verdict {
                Verdict::TellReady => p.ping(now, self.epoch),
                Verdict::Alive { .. } => {
                    self.announce(id, now, cands, out);
                    if let Some(p) = self.map.get_mut(&id) {
                        p.ping_if_due(now, self.epoch);
                        p.refresh_stats(now);
                    }
                    self.publish_stats(id, out);
                }
                _ => {}
            }
            verdicts.push((id, verdict));
        }
        verdicts
    }

    /// How soon the next round is due: `round`, or sooner while a peer is pinged more
    /// often than that ([`liveness::ping_period`]).
    pub(crate) fn round_every(&self, now: Instant, round: Duration) -> Duration {
        self.map
            .values()
            .map(|p| liveness::ping_period(&p.facts(), now, round))
            .fold(round, Duration::min)
    }

    /// Queues a message on `channel` (of `kind`) for `to`, or for every connected peer;
    /// the peers whose engine took it (pump each). A full queue drops an unreliable
    /// message and refuses a reliable one (the game is told, at most once a second).
    pub(crate) fn send(
        &mut self,
        now: Instant,
        to: Option<PeerId>,
        (channel, kind): (usize, ChannelKind),
        payload: &[u8],
        out: &Out,
    ) -> Vec<PeerId> {
        let limit = if kind.is_reliable() {
            RELIABLE_QUEUE_LIMIT
        } else {
            UNRELIABLE_QUEUE_LIMIT
        };
        let mut took = self.connected_ids(to);
        took.retain(|id| {
            let Some(p) = self.map.get_mut(id) else {
                return false;
            };
            let sent = if !kind.is_reliable() && p.holds_unreliable(now) {
                Sent::Held
            } else {
                p.send_message(channel, payload, limit, now)
            };
            if p.count_send(sent, kind.is_reliable(), now) {
                out.emit(Event::Error(Error::SendBufferFull {
                    peer: *id,
                    channel: crate::channel::Channel(channel),
                }));
            }
            !matches!(sent, Sent::QueueFull | Sent::Held)
        });
        took
    }

    /// Sends RTP packets on our track of `kind` to `to`, or to every connected peer; the
    /// peers sent to (pump each).
    pub(crate) fn send_rtp(
        &mut self,
        now: Instant,
        kind: media::Kind,
        packets: &[MediaFrame],
        to: Option<PeerId>,
    ) -> Vec<PeerId> {
        let ids = self.connected_ids(to);
        for id in &ids {
            if let Some(p) = self.map.get_mut(id) {
                for packet in packets {
                    p.send_rtp(kind, packet, now);
                }
            }
        }
        ids
    }

    /// `id` has a new local description (an offer or answer of ours, `description`): it is
    /// signaled, STUN requests for its ICE username fragment are routed to it, and every
    /// candidate we know is added to it and trickled to the peer.
    pub(crate) fn described(
        &mut self,
        id: PeerId,
        description: Signal,
        cands: &Candidates,
        out: &mut Out,
    ) {
        let Some(p) = self.map.get_mut(&id) else {
            return;
        };
        out.signal(id, description);
        if let Some(ufrag) = p.local_ufrag()
            && ufrag != p.routed_ufrag()
        {
            self.routes.set_ufrag(p.routed_ufrag(), &ufrag, id);
            p.set_routed_ufrag(ufrag);
        }
        for candidate in cands.known() {
            self.add_candidate(id, candidate, cands, out);
        }
    }

    /// Adds our candidate to `id` once its local description is set, and trickles it.
    pub(crate) fn add_candidate(
        &mut self,
        id: PeerId,
        (kind, addr): (CandidateKind, SocketAddr),
        cands: &Candidates,
        out: &mut Out,
    ) {
        let Some(p) = self.map.get_mut(&id) else {
            return;
        };
        if !p.has_local_description() {
            return;
        }
        let base = cands.hosts().first().copied().unwrap_or(addr);
        let priority = cands.priority(kind, addr);
        if let Some(candidate) = p.add_local_candidate(kind, addr, base, priority) {
            out.signal(id, candidate);
        }
    }

    /// `id` announced a candidate (its `candidate` line, mid, m-line index and ufrag): the
    /// connection gets it if it is usable here, and our TURN relays let its address in;
    /// an error when the engine refused it.
    pub(crate) fn remote_candidate(
        &mut self,
        id: PeerId,
        (candidate, sdp_mid, sdp_mline_index, username_fragment): RemoteCandidate,
        relay_only: bool,
        now: Instant,
        (cands, out): (&mut Candidates, &mut Out),
    ) -> Result<(), String> {
        let Some(p) = self.map.get_mut(&id) else {
            return Ok(());
        };
        match parse_candidate(&candidate) {
            Some(CandidateLine::Udp(addr, kind)) if !relay_only || kind == CandidateKind::Relay => {
                p.remote_candidate(addr, kind);
                self.routes.expect(addr, id);
                p.add_remote_candidate(candidate, sdp_mid, sdp_mline_index, username_fragment)?;
                // Our TURN allocations let the peer's address in.
                cands.permit(now, addr, out);
                Ok(())
            }
            // An engine that does its own ICE takes every line (it resolves mDNS names).
            Some(CandidateLine::Hidden { .. } | CandidateLine::Tcp) if p.own_ice() => {
                p.add_remote_candidate(candidate, sdp_mid, sdp_mline_index, username_fragment)
            }
            Some(CandidateLine::Hidden { name, port }) if !relay_only => {
                // We cannot resolve mDNS names (multicast on the LAN); the address comes in
                // the peer's own checks, and the port tells the path is this host one.
                tracing::debug!(peer = %id, %name, port, "mDNS host candidate: its address is learned from the peer's checks");
                p.hidden_host_candidate(port);
                Ok(())
            }
            Some(CandidateLine::Tcp) => {
                tracing::debug!(peer = %id, "TCP candidate skipped: the SDK's ICE is UDP (TCP-only networks use TURN over TCP or TLS)");
                Ok(())
            }
            // Direct while relay-only, or not a candidate line: skipped.
            _ => {
                tracing::debug!(peer = %id, %candidate, relay_only, "candidate skipped");
                Ok(())
            }
        }
    }

    /// Hands a datagram that arrived on our address `local` to its peer; the peer's id when
    /// it took it (then pump it).
    pub(crate) fn handle_datagram(
        &mut self,
        now: Instant,
        data: &[u8],
        from: SocketAddr,
        local: SocketAddr,
        cands: &Candidates,
    ) -> Option<PeerId> {
        // STUN starts with two zero bits; DTLS (and the SCTP in it) and SRTP do not.
        #[cfg(feature = "fuzzing")]
        if self.deaf && data.first().is_some_and(|b| *b > 3) {
            return None;
        }
        let id = match self.routes.route(data, from) {
            Route::Check(id) => {
                if self.relay_in_disguise(id, from, cands) {
                    tracing::debug!(%from, peer = %id, "check from an unannounced relay address dropped");
                    return None;
                }
                self.routes.confirm(from, id);
                id
            }
            Route::Known(id) => id,
            Route::Unknown => {
                tracing::trace!(%from, len = data.len(), "datagram for no peer");
                return None;
            }
        };
        let p = self.map.get_mut(&id)?;
        match self.paths.get_mut(&id) {
            Some(path) if !path.is_idle_and_perfect() => {
                path.push(now, data.len(), (Bytes::copy_from_slice(data), from, local));
                release_due(path, p, now).then_some(id)
            }
            _ => p.handle_datagram(now, local, from, data).then_some(id),
        }
    }

    /// Puts what arrives from `id` through a simulated path with `conditions` from now on
    /// (testing; datagrams already on it keep theirs; a perfect path once they are through
    /// is the same as none).
    pub(crate) fn simulate_path_from(&mut self, id: PeerId, conditions: NetworkConditions) {
        match self.paths.get_mut(&id) {
            Some(path) => path.set_conditions(conditions),
            None if conditions.is_perfect() => {}
            None => {
                // Seeded by the peer, so a run in simulated time repeats.
                let path = Conditioner::new(conditions, 0x5157_5ead ^ id.0);
                self.paths.insert(id, path);
            }
        }
    }

    /// Whether a connectivity check from `from` for `id` comes from a TURN relay whose
    /// candidate has not arrived yet (see [`net::relay_in_disguise`]).
    fn relay_in_disguise(&self, id: PeerId, from: SocketAddr, cands: &Candidates) -> bool {
        let Some(p) = self.map.get(&id) else {
            return false;
        };
        let announced_relays = self.map.values().flat_map(|q| {
            q.remote_candidates()
                .iter()
                .filter(|(_, t)| **t == CandidateKind::Relay)
                .map(|(a, _)| a.ip())
        });
        net::relay_in_disguise(
            from,
            p.remote_candidates(),
            cands.hosts(),
            cands.turn_servers().chain(announced_relays),
        )
    }

    /// When the earliest engine needs [`Peers::handle_timeout`].
    pub(crate) fn poll_timeout(&mut self) -> Option<Instant> {
        let paths = self.paths.values().filter_map(Conditioner::next_release);
        let engines = self.map.values_mut().filter_map(Peer::poll_timeout);
        engines.chain(paths).min()
    }

    /// Serves the engines whose timers are due, and hands them what their simulated paths
    /// release; their ids (pump each).
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Vec<PeerId> {
        let mut due = Vec::new();
        for (id, path) in &mut self.paths {
            let Some(p) = self.map.get_mut(id) else {
                // No connection to hand them to: what was on the way is lost.
                while path.pop_due(now).is_some() {}
                continue;
            };
            if release_due(path, p, now) {
                due.push(*id);
            }
        }
        for (id, p) in &mut self.map {
            if p.poll_timeout().is_some_and(|t| t <= now) {
                p.handle_timeout(now);
                due.push(*id);
            }
        }
        due
    }

    /// Drains one peer's engine until it has nothing more to say: messages to the game,
    /// media to the pipelines, datagrams to the wire.
    pub(crate) fn pump(
        &mut self,
        id: PeerId,
        now: Instant,
        cands: &mut Candidates,
        out: &mut Out,
    ) -> Pumped {
        let mut pumped = Pumped::default();
        let Some(p) = self.map.get_mut(&id) else {
            return pumped;
        };
        let events = &mut self.events;
        let mut descriptions = Vec::new();
        for _ in 0..MAX_STEPS {
            let mut progressed = p.step(now, events);
            for event in events.drain(..) {
                match event {
                    EngineEvent::Message { index, data } => on_message(p, out, index, data, now),
                    EngineEvent::Rtp { kind, frame } => {
                        p.heard_rtp(kind, now);
                        let msg = MediaIn::Rtp {
                            peer: id,
                            frame,
                            arrival: now,
                        };
                        match kind {
                            media::Kind::Video => out.give_video(msg),
                            media::Kind::Audio => out.give_voice(msg),
                        }
                    }
                    EngineEvent::KeyframeRequest => {
                        out.give_video(MediaIn::KeyframeRequest { peer: id });
                    }
                    EngineEvent::Failed(reason) => {
                        pumped.end = Some(DisconnectReason::Failed(reason));
                    }
                    EngineEvent::Closed
                        if p.is_connected() && !p.closing_channels() && pumped.end.is_none() =>
                    {
                        pumped.end = Some(DisconnectReason::Left);
                    }
                    EngineEvent::Closed => {}
                    // Tell the peer at once; it counts us connected when it hears this.
                    EngineEvent::AllOpen => p.ping(now, self.epoch),
                    EngineEvent::Described { offer: true, sdp } => {
                        descriptions.push(Signal::Offer { sdp });
                    }
                    EngineEvent::Described { offer: false, sdp } => {
                        descriptions.push(Signal::Answer { sdp });
                    }
                    EngineEvent::Candidate(signal) => out.signal(id, signal),
                }
            }
            progressed |= drain_writes(p, now, cands, out);
            if !progressed {
                break;
            }
        }
        if p.ready() {
            p.on_connected(now);
            pumped.connected = true;
            out.give_video(MediaIn::PeerConnected { peer: id });
        }
        for description in descriptions {
            self.described(id, description, cands, out);
        }
        self.announce(id, now, cands, out);
        pumped
    }

    /// Announces a connected peer once its path is known (or after a short grace, when the
    /// remote address is only peer-reflexive). Sending works from the moment it connected.
    pub(crate) fn announce(&mut self, id: PeerId, now: Instant, cands: &Candidates, out: &Out) {
        let Some(p) = self.map.get_mut(&id) else {
            return;
        };
        let Some(opened) = p.unannounced_since() else {
            return;
        };
        let path = match p.path(cands.relays()) {
            Some(path) => path,
            None if now.saturating_duration_since(opened) >= ANNOUNCE_GRACE => PathKind::Srflx,
            None => return,
        };
        let connect_time = p.connected_over(
            path,
            cands.relays(),
            |local| cands.relay_transport(local),
            opened,
        );
        tracing::debug!(peer = %id, ?connect_time, path = path.name(), "connected");
        self.publish_stats(id, out);
        self.announced.push((path, connect_time));
        out.emit(Event::PeerConnected {
            peer: id,
            path,
            connect_time,
        });
    }

    /// Puts `id`'s stats where the game reads them.
    pub(crate) fn publish_stats(&self, id: PeerId, out: &Out) {
        if let Some(p) = self.map.get(&id)
            && let Ok(mut stats) = out.shared.stats.write()
        {
            stats.insert(id, p.stats().clone());
        }
    }

    /// Our address changed: every connected peer needs an ICE restart. The ones we offered
    /// to, we restart (returned); the others will, once they notice, and are given the time
    /// (their restart window starts now).
    pub(crate) fn await_restarts(&mut self, now: Instant) -> Vec<PeerId> {
        let mut ours = Vec::new();
        for (id, p) in self.map.iter_mut().filter(|(_, p)| p.is_connected()) {
            if p.is_offerer() {
                ours.push(*id);
            } else {
                p.restart_began(now);
            }
        }
        ours
    }

    /// Our session is ending: asks every peer with open channels to close them (a BYE on
    /// the control channel; the peer resets each channel, and so both ends see them close
    /// rather than fail on the abort that closing the connection sends).
    pub(crate) fn say_goodbye(&mut self, now: Instant) {
        // Channels may be open on a peer not yet counted connected (it has not heard us).
        for p in self.map.values_mut().filter(|p| p.channels_open()) {
            p.say_goodbye(now);
        }
    }

    /// Whether every peer we said goodbye to has closed its channels.
    pub(crate) fn channels_closed(&self) -> bool {
        self.map
            .values()
            .filter(|p| p.closing_channels())
            .all(Peer::channels_closed)
    }

    /// Closes a peer's connection and forgets how to route to it; whether there was one.
    pub(crate) fn remove(
        &mut self,
        id: PeerId,
        now: Instant,
        cands: &mut Candidates,
        out: &mut Out,
    ) -> bool {
        let Some(mut p) = self.map.remove(&id) else {
            return false;
        };
        p.close();
        drain_writes(&mut p, now, cands, out);
        self.routes.forget(id, p.routed_ufrag());
        true
    }
}

/// Hands `p`'s engine what its simulated path releases at `now`; whether the engine took
/// any of it (and so should be pumped).
fn release_due(
    path: &mut Conditioner<(Bytes, SocketAddr, SocketAddr)>,
    p: &mut Peer,
    now: Instant,
) -> bool {
    let mut taken = false;
    while let Some((data, from, local)) = path.pop_due(now) {
        taken |= p.handle_datagram(now, local, from, &data);
    }
    taken
}

/// Sends everything the peer's engine has queued; whether there was anything.
fn drain_writes(p: &mut Peer, now: Instant, cands: &mut Candidates, out: &mut Out) -> bool {
    let mut any = false;
    while let Some((data, from, to)) = p.poll_transmit() {
        any = true;
        p.transmitted(&data, from, to);
        cands.send(now, data, from, to, out);
    }
    any
}

/// One data-channel message from `p`, to the game (or to the voice pipeline).
fn on_message(p: &mut Peer, out: &Out, index: usize, data: Bytes, now: Instant) {
    let shared = &out.shared;
    match p.on_message(index, data, now) {
        Inbound::Message(channel, message) => {
            if !shared.deliver(channel, p.id, message) && p.dropped_unread(now) {
                shared.emit(Event::Error(Error::InboxFull {
                    peer: p.id,
                    channel: crate::channel::Channel(channel),
                    limit: shared.inbox_limit,
                }));
            }
        }
        Inbound::VoiceLoss(percent) => out.give_voice(MediaIn::LossReport {
            peer: p.id,
            percent,
        }),
        Inbound::Misbehaved(Some(frame_errors)) => shared.emit(Event::PeerMisbehaved {
            peer: p.id,
            frame_errors,
        }),
        Inbound::Misbehaved(None) | Inbound::Nothing => {}
    }
}
