//! The session core: the logic of one session as a state machine with time as an input.
//!
//! It takes what happens — datagrams, matchmaker messages, the game's commands, resolved
//! ICE servers, the clock — as method arguments and answers through [`Out`]: datagrams to
//! send, messages for the matchmaker, requests for slow work ([`Request`]), and the
//! events, messages and stats the game reads. It has no socket, no task, no DNS and reads
//! no clock; the native shell (`transport/mod.rs`) feeds it and carries out what it asks.
//!
//! Its state lives in components that own it: our lobby place ([`Membership`]), our ICE
//! candidates and the STUN/TURN clients ([`Candidates`]), the peer table ([`Peers`]), the
//! matchmaker link's liveness ([`LinkState`]) and the offers made again ([`Retries`]).
//! What is left here is the decisions between them: whom to connect to, who offers, ICE
//! restarts, liveness, and what follows the matchmaker's loss and return. What the media
//! pipelines ask of it (frames to send, sinks, keyframes, loss reports) is in `core/media.rs`.

use std::net::SocketAddr;
use web_time::Instant;

use squadlink_protocol::{
    ClientMessage, ErrorCode, IceServer, Lobby, PeerId, PlayerId, ServerMessage, Signal,
};

use super::candidates::{Candidates, Found};
use super::engine::{MakeEngine, PeerSettings, sdp_attribute};
use super::gather::Gatherer;
use super::link::{self, LinkState};
use super::liveness::{ROUND, Timeouts, Verdict};
use super::membership::{Admission, Entered, Membership};
use super::output::{Out, Request};
use super::peer::Peer;
use super::peers::Peers;
use super::relay::StreamEvent;
use super::retry::Retries;
use crate::channel;
use crate::conditioner::NetworkConditions;
use crate::error::Error;
use crate::event::CandidateKind;
use crate::event::{DisconnectReason, Event, IcePolicy};
use crate::settings::Settings;

mod media;

/// One session's logic.
pub(crate) struct Core {
    cfg: Settings,
    membership: Membership,
    cands: Candidates,
    peers: Peers,
    /// The matchmaker link's liveness and reconnection schedule.
    link: LinkState,
    /// Peers we offered to whose connection attempt timed out, offered to again later.
    retries: Retries,
    ice_servers: Vec<IceServer>,
    /// The shell's WebRTC engine, made for each new peer connection.
    make_engine: Box<dyn MakeEngine>,
    out: Out,
    /// When the next periodic round ([`Core::round`]) is due.
    next_round: Instant,
    /// The session is ending ([`Core::begin_shutdown`]): timers only drive the engines.
    closing: bool,
}

impl Core {
    /// The core of a session that just entered a lobby through a link that is up, with
    /// its socket bound at `bound` (host addresses `hosts`), its peer connections carried
    /// by engines `make_engine` makes. It asks for the ICE servers to be looked up and
    /// offers to every member already there.
    pub(crate) fn new(
        cfg: Settings,
        entered: Entered<'_>,
        (bound, hosts): (SocketAddr, Vec<SocketAddr>),
        (make_engine, out): (Box<dyn MakeEngine>, Out),
        now: Instant,
    ) -> Self {
        let mut ice_servers = entered.ice_servers;
        ice_servers.extend(cfg.extra_ice_servers.iter().cloned());
        let relay_only = cfg.ice_policy == IcePolicy::RelayOnly;
        let membership = Membership::new(
            entered.me,
            entered.player,
            entered.lobby.code.clone(),
            (channel::describe(&cfg.channels), &cfg.member_data),
            entered.instance,
        );
        let link = LinkState::new(now, cfg.reconnect_window);
        let mut core = Self {
            membership,
            cands: Candidates::new(bound, hosts, relay_only),
            peers: Peers::new(now),
            link,
            retries: Retries::default(),
            ice_servers,
            make_engine,
            out,
            cfg,
            next_round: now + ROUND,
            closing: false,
        };
        tracing::debug!(me = %core.membership.me(), code = %core.membership.code(), hosts = ?core.cands.hosts(), "lobby entered");
        core.start_gathering();
        core.lobby_entered(entered.lobby, now);
        core
    }

    /// What the core wants done; the shell drains it after every input.
    pub(crate) fn out(&mut self) -> &mut Out {
        &mut self.out
    }

    /// The settings the session was built with.
    pub(crate) fn settings(&self) -> &Settings {
        &self.cfg
    }

    /// Our host addresses as last known.
    pub(crate) fn hosts(&self) -> &[SocketAddr] {
        self.cands.hosts()
    }

    /// The host address STUN/TURN clients use as theirs.
    pub(crate) fn primary_host(&self) -> SocketAddr {
        self.cands.primary_host()
    }

    /// When the core next needs [`Core::handle_timeout`] (or [`Core::poll_link`]).
    pub(crate) fn poll_timeout(&mut self) -> Option<Instant> {
        let engines = [self.peers.poll_timeout(), self.cands.poll_timeout()];
        // While closing only the engines and STUN/TURN clients run (see `begin_shutdown`);
        // offers go out only while the matchmaker link is up.
        let session = (!self.closing).then(|| {
            let retry = self.link.is_up().then(|| self.retries.next_deadline());
            [
                self.link.next_deadline(),
                retry.flatten(),
                Some(self.next_round),
            ]
        });
        engines
            .into_iter()
            .chain(session.into_iter().flatten())
            .flatten()
            .min()
    }

    /// Serves the engines and STUN/TURN clients whose timers are due, offers again where
    /// a retry is due, and runs the periodic round when it is due.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.cands.handle_timeout(now, &mut self.out);
        self.on_found(now);
        for id in self.peers.handle_timeout(now) {
            self.pump(id, now);
        }
        if self.closing {
            return;
        }
        self.retry_due(now);
        if now >= self.next_round {
            self.round(now);
            // Sooner while a peer's path is quiet: its pings probe for the path's return.
            self.next_round = now + self.peers.round_every(now, ROUND);
        }
    }

    /// Tells the matchmaker the path and connect time of connections just announced, if
    /// the game opted in (`SessionBuilder::report_connections`); forgets them otherwise.
    fn report_announced(&mut self) {
        for (path, took) in self.peers.take_announced() {
            if self.cfg.report_connections {
                self.out.report_connection(path, took);
            }
        }
    }

    // ----- the matchmaker link -------------------------------------------------------

    /// The matchmaker connection failed (the shell has dropped it): keep the peers, start
    /// reconnecting.
    pub(crate) fn link_lost(&mut self, now: Instant, err: Error) {
        if !self.link.is_up() {
            return;
        }
        let replaced = self.membership.is_replaced();
        self.link.lost(now, !replaced);
        if replaced {
            tracing::warn!(%err, "another connection of this player took our lobby place; not reconnecting");
        } else {
            tracing::info!(%err, "matchmaker connection lost; reconnecting");
        }
        self.out.emit(Event::MatchmakerLost(err));
    }

    /// The link fell silent or must be replaced: the shell drops it.
    fn abandon_link(&mut self, now: Instant, err: Error) {
        if self.link.is_up() {
            self.out.request(Request::AbandonLink);
        }
        self.link_lost(now, err);
    }

    /// Pings the matchmaker, notices a silent connection, and asks for reconnection
    /// attempts when due. `Some` ends the session.
    pub(crate) fn poll_link(&mut self, now: Instant) -> Option<Error> {
        while let Some(due) = self.link.poll(now) {
            match due {
                link::Due::Ping => {
                    if self.link.is_up() {
                        self.out
                            .tell_matchmaker(ClientMessage::Ping { nonce: None });
                    }
                }
                link::Due::Silent => self.abandon_link(now, link::silence_error()),
                link::Due::Attempt { attempt } => {
                    tracing::debug!(attempt, "reconnecting to the matchmaker");
                    let url = self.cfg.matchmaker_url(self.link.next_url());
                    let rejoin = self
                        .membership
                        .rejoin(self.cfg.token.is_none(), url.to_owned());
                    self.out.request(rejoin);
                }
                link::Due::GiveUp => {
                    return Some(link::gave_up_error(
                        &self.cfg.url,
                        self.cfg.reconnect_window,
                    ));
                }
            }
        }
        None
    }

    /// A message from the matchmaker.
    pub(crate) fn handle_server_message(&mut self, now: Instant, msg: ServerMessage) {
        self.link.heard(now);
        match msg {
            ServerMessage::PeerJoined { peer, .. } => {
                self.on_member(peer.peer_id, &peer.player_id, &peer.data, false, now);
            }
            ServerMessage::PeerLeft { peer_id, .. } => {
                self.disconnect(peer_id, DisconnectReason::Left, now);
            }
            ServerMessage::LobbyState { lobby } => self.publish_lobby(&lobby),
            ServerMessage::Signal { from, data } => self.on_signal(from, data, now),
            ServerMessage::Moving { within_ms } => {
                // The node is draining: go now (to the next URL, if we have several) and
                // resume our place there; peers stay connected.
                tracing::info!(within_ms, "the matchmaker node is draining; moving");
                self.abandon_link(now, link::moving_error(within_ms));
                self.link.reconnect_now(now);
            }
            ServerMessage::Error { code, message, .. } => {
                if code == ErrorCode::Replaced {
                    self.membership.set_replaced();
                }
                self.out
                    .emit(Event::Error(Error::Matchmaker { code, message }));
            }
            _ => {}
        }
    }

    /// A reconnection attempt failed.
    pub(crate) fn rejoin_failed(&mut self, now: Instant, err: Error) {
        // The lobby is gone (say the matchmaker restarted and lost it): the peers we have
        // keep working, but there is nothing to go back to.
        if err.means_lobby_gone() {
            tracing::warn!(%err, "the lobby no longer exists; staying with the peers we have");
            self.link.stop();
            self.out.emit(Event::Error(err));
            return;
        }
        tracing::debug!(%err, "reconnection attempt failed");
        self.link.attempt_failed(now);
    }

    /// A reconnection attempt got us back into the lobby (the shell attached the link) as
    /// `me`; `resumed`: under our old place.
    pub(crate) fn rejoined(
        &mut self,
        now: Instant,
        (me, player): (PeerId, PlayerId),
        resumed: bool,
        lobby: &Lobby,
    ) {
        self.link.restored(now);
        let resumed = resumed && me == self.membership.me();
        tracing::info!(resumed, %me, "back in the lobby");
        if resumed {
            self.publish_lobby(lobby);
            // Members who left while we were away are gone; members who joined meanwhile
            // offered to us into the void: offer to them ourselves.
            for p in self.peers.ids() {
                if !lobby.members.iter().any(|m| m.peer_id == p) {
                    self.disconnect(p, DisconnectReason::Left, now);
                }
            }
            for m in &lobby.members {
                if m.peer_id != me && !self.peers.contains(m.peer_id) {
                    self.on_member(m.peer_id, &m.player_id, &m.data, true, now);
                }
            }
        } else {
            // Our place had expired: we are a new member with a new id. Start over.
            self.out.clear_signals();
            for p in self.peers.ids() {
                self.disconnect(p, DisconnectReason::Left, now);
            }
            self.out.identity(me, player.clone());
            self.membership.joined_again(me, player, lobby.code.clone());
            self.lobby_entered(lobby, now);
        }
        self.out.emit(Event::MatchmakerRestored { resumed });
    }

    fn publish_lobby(&mut self, lobby: &Lobby) {
        self.out.publish_lobby(self.membership.update(lobby));
    }

    /// We just joined: everyone already there joined earlier, so we offer to each.
    fn lobby_entered(&mut self, lobby: &Lobby, now: Instant) {
        self.publish_lobby(lobby);
        let me = self.membership.me();
        for m in &lobby.members {
            if m.peer_id != me {
                self.on_member(m.peer_id, &m.player_id, &m.data, true, now);
            }
        }
    }

    /// A member to connect to. `offer`: we joined later, so we send the offer.
    fn on_member(
        &mut self,
        peer: PeerId,
        player: &PlayerId,
        data: &squadlink_protocol::Properties,
        offer: bool,
        now: Instant,
    ) {
        match self.membership.admit(peer, player, data) {
            Admission::Shunned => {
                tracing::debug!(%peer, "a disconnected player is in the lobby again: not connected");
            }
            Admission::Mismatch(err) => {
                self.out.emit(Event::PeerJoined {
                    peer,
                    player: player.clone(),
                });
                self.out.incompatible(peer, err);
            }
            Admission::Connect => {
                self.out.emit(Event::PeerJoined {
                    peer,
                    player: player.clone(),
                });
                self.connect_to(peer, offer, now);
            }
        }
    }

    // ----- negotiation ---------------------------------------------------------------

    /// Starts a peer connection to lobby member `peer` (as offerer or answerer).
    fn connect_to(&mut self, peer: PeerId, offer: bool, now: Instant) {
        let settings = PeerSettings::of(&self.cfg, &self.ice_servers);
        let mut p = match self.make_engine.make(peer, &settings, now) {
            Ok(engine) => Peer::new(peer, engine, &settings, now),
            Err(e) => return self.fail(peer, e, now),
        };
        let offered = if offer {
            p.make_offerer();
            match p.offer(now) {
                Ok(sdp) => sdp,
                Err(e) => return self.fail(peer, e, now),
            }
        } else {
            None
        };
        self.peers.insert(p);
        self.offered(peer, offered);
        self.pump(peer, now);
    }

    /// Our offer to `id`, when the engine made it at once (else it comes as
    /// `EngineEvent::Described`, which `Peers::pump` signals the same way).
    fn offered(&mut self, id: PeerId, sdp: Option<String>) {
        if let Some(sdp) = sdp {
            self.peers
                .described(id, Signal::Offer { sdp }, &self.cands, &mut self.out);
        }
    }

    /// A candidate of ours found after the peers' descriptions were set: to every peer.
    fn add_candidate_to_all(&mut self, kind: CandidateKind, addr: SocketAddr, now: Instant) {
        for id in self.peers.ids() {
            self.peers
                .add_candidate(id, (kind, addr), &self.cands, &mut self.out);
            self.pump(id, now);
        }
    }

    /// Asks for the ICE servers' addresses (DNS can take seconds, so it happens beside
    /// the loop); the clients come back through [`Core::gatherers_ready`].
    fn start_gathering(&mut self) {
        self.out.request(Request::Resolve {
            servers: self.ice_servers.clone(),
            relay_only: self.cfg.ice_policy == IcePolicy::RelayOnly,
            ipv4: self.cands.primary_host().is_ipv4(),
        });
    }

    /// The ICE servers' addresses are known and a STUN or TURN client started for each.
    pub(crate) fn gatherers_ready(&mut self, gatherers: Vec<Gatherer>, problems: Vec<String>) {
        self.cands
            .gatherers_ready(gatherers, problems, &mut self.out);
    }

    /// Bytes (or the end) from the TURN-over-TCP/TLS stream of client `id`.
    pub(crate) fn handle_stream(&mut self, now: Instant, id: u64, event: StreamEvent) {
        self.cands.handle_stream(now, id, event, &mut self.out);
        self.on_found(now);
    }

    /// Acts on what the STUN/TURN clients found: new candidates, relayed data.
    fn on_found(&mut self, now: Instant) {
        while let Some(found) = self.cands.poll_found() {
            match found {
                Found::Local {
                    kind,
                    addr,
                    gatherer,
                } => {
                    if kind == CandidateKind::Relay {
                        let remotes = self.peers.remote_addresses();
                        self.cands
                            .permit_on(gatherer, now, remotes.into_iter(), &mut self.out);
                    }
                    self.add_candidate_to_all(kind, addr, now);
                }
                Found::Data {
                    relayed,
                    from,
                    data,
                } => self.deliver(&data, from, relayed, now),
            }
        }
    }

    fn on_signal(&mut self, from: PeerId, data: Signal, now: Instant) {
        if self.membership.is_shunned(from) {
            tracing::trace!(%from, "signal from a disconnected peer ignored");
            return;
        }
        if let Signal::Refused { reason, message } = data {
            self.on_refused(from, reason, message, now);
            return;
        }
        let relay_only = self.cfg.ice_policy == IcePolicy::RelayOnly;
        let fingerprint = match &data {
            Signal::Offer { sdp } | Signal::Answer { sdp } => sdp_attribute(sdp, "fingerprint"),
            _ => None,
        };
        if matches!(data, Signal::Offer { .. }) {
            self.prepare_for_offer(from, fingerprint.as_deref(), now);
        }
        if !self.peers.contains(from) {
            tracing::debug!(%from, "signal from a peer we do not connect to");
            return;
        }
        let result = match data {
            Signal::Offer { sdp } => self.answer(from, sdp, fingerprint, now),
            Signal::Answer { sdp } => self.peers.get_mut(from).map_or(Ok(()), |p| {
                p.accept_answer(sdp, fingerprint, now)
                    .and_then(|()| p.remote_description_applied(now))
            }),
            Signal::Candidate {
                candidate,
                sdp_mid,
                sdp_mline_index,
                username_fragment,
            } => {
                let init = (candidate, sdp_mid, sdp_mline_index, username_fragment);
                let via = (&mut self.cands, &mut self.out);
                self.peers
                    .remote_candidate(from, init, relay_only, now, via)
            }
            Signal::EndOfCandidates | Signal::Opaque { .. } | Signal::Refused { .. } => Ok(()),
        };
        match result {
            Ok(()) => self.pump(from, now),
            Err(reason) => self.fail(from, reason, now),
        }
    }

    /// `from` will not connect to us. Unless we refused it first (then the game knows),
    /// the game is told what it said, and any connection to it ends.
    fn on_refused(&mut self, from: PeerId, reason: String, message: String, now: Instant) {
        if self.membership.incompatible(from) {
            tracing::debug!(%from, %reason, "the peer refused us too");
            return;
        }
        let connected = self.peers.get(from).is_some_and(Peer::is_connected);
        self.peers.remove(from, now, &mut self.cands, &mut self.out);
        self.retries.forget(from);
        self.out.refused(from, reason, message, connected);
    }

    /// Answers an offer from `from`.
    fn answer(
        &mut self,
        from: PeerId,
        sdp: String,
        fingerprint: Option<String>,
        now: Instant,
    ) -> Result<(), String> {
        let Some(p) = self.peers.get_mut(from) else {
            return Ok(());
        };
        if let Some(sdp) = p.accept_offer(sdp, fingerprint, now)? {
            self.peers
                .described(from, Signal::Answer { sdp }, &self.cands, &mut self.out);
        }
        self.peers
            .get_mut(from)
            .map_or(Ok(()), |p| p.remote_description_applied(now))
    }

    /// An offer from `from` starts a new connection when it is not the one we were waiting
    /// for: the member rejoined (a new process under its old peer id, within the
    /// matchmaker's rejoin grace), or it came back to the lobby after we had given it up,
    /// or it offers after we resumed our own membership. The old connection gives way.
    fn prepare_for_offer(&mut self, from: PeerId, fingerprint: Option<&str>, now: Instant) {
        let keep = self.peers.get(from).is_some_and(|p| {
            let fresh_answerer = p.awaits_first_offer();
            // The same DTLS identity: an ICE restart of this very connection.
            let restart = p.has_remote_description() && p.same_identity(fingerprint);
            fresh_answerer || restart
        });
        if keep {
            return;
        }
        if self.peers.contains(from) {
            tracing::debug!(peer = %from, "a new offer replaces the connection");
            self.retire(from, DisconnectReason::Rejoined, now);
        }
        if let Some(data) = self.membership.member(from).cloned() {
            match self.membership.check_compatible(from, &data) {
                Admission::Connect => self.connect_to(from, false, now),
                Admission::Mismatch(err) => self.out.incompatible(from, err),
                Admission::Shunned => {}
            }
        }
    }

    /// Restarts ICE with `id` (we offered first, so we offer again): new credentials, the
    /// candidates of our current network, the same DTLS and SCTP sessions.
    fn ice_restart(&mut self, id: PeerId, now: Instant) {
        let Some(p) = self.peers.get_mut(id) else {
            return;
        };
        p.restart_ice(now);
        match p.offer(now) {
            Ok(sdp) => {
                tracing::debug!(peer = %id, "ICE restart");
                p.count_ice_restart();
                self.offered(id, sdp);
            }
            Err(e) => tracing::debug!(%e, peer = %id, "ICE restart offer failed"),
        }
        self.pump(id, now);
    }

    /// Our addresses changed (another network, a new lease): gather candidates again,
    /// reconnect to the matchmaker from the new address, and restart ICE with every peer.
    pub(crate) fn network_changed(&mut self, now: Instant, hosts: Vec<SocketAddr>) {
        tracing::info!(old = ?self.cands.hosts(), new = ?hosts, "network changed");
        self.cands.network_changed(hosts);
        self.start_gathering();
        // The matchmaker connection was made from the old address: replace it now rather
        // than wait for it to fall silent.
        if self.link.is_up() {
            self.abandon_link(now, Error::Io("the network changed".into()));
            self.link.reconnect_now(now);
        }
        for id in self.peers.await_restarts(now) {
            self.ice_restart(id, now);
        }
    }

    // ----- datagrams -----------------------------------------------------------------

    /// A datagram on the socket.
    pub(crate) fn handle_datagram(&mut self, now: Instant, data: &[u8], from: SocketAddr) {
        if self.cands.handle_udp(now, data, from, &mut self.out) {
            self.on_found(now);
            return;
        }
        let Some(local) = self.cands.local_for(from) else {
            return;
        };
        self.deliver(data, from, local, now);
    }

    /// Hands a datagram that arrived on `local` (a host or relayed address) to its peer.
    fn deliver(&mut self, data: &[u8], from: SocketAddr, local: SocketAddr, now: Instant) {
        if let Some(id) = self
            .peers
            .handle_datagram(now, data, from, local, &self.cands)
        {
            self.pump(id, now);
        }
    }

    /// Peer `id`'s engine has something for us (an engine driven by the page's callbacks,
    /// whose shell is woken by them).
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn engine_woke(&mut self, now: Instant, id: PeerId) {
        self.pump(id, now);
    }

    /// Drains one peer connection until it has nothing more to say, and acts on what it
    /// said.
    fn pump(&mut self, id: PeerId, now: Instant) {
        let pumped = self.peers.pump(id, now, &mut self.cands, &mut self.out);
        self.report_announced();
        if pumped.connected {
            self.retries.forget(id);
            let sdp = self
                .peers
                .get_mut(id)
                .and_then(|p| p.offer_missing_media(now));
            self.offered(id, sdp.flatten());
        }
        if let Some(reason) = pumped.end {
            self.disconnect(id, reason, now);
        }
    }

    // ----- the game's commands -------------------------------------------------------

    /// Sends a message on `channel` to `to`, or to every connected peer.
    pub(crate) fn send(
        &mut self,
        now: Instant,
        to: Option<PeerId>,
        channel: usize,
        payload: &[u8],
    ) {
        let Some(kind) = self.cfg.channels.get(channel).copied() else {
            return;
        };
        for id in self
            .peers
            .send(now, to, (channel, kind), payload, &self.out)
        {
            self.pump(id, now);
        }
    }

    /// Adversarial testing: does `act` to peer `id`'s connection (unframed bytes, RTP as
    /// given) and drains it.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn tamper(&mut self, now: Instant, id: PeerId, act: impl FnOnce(&mut Peer)) {
        if let Some(p) = self.peers.get_mut(id) {
            act(p);
        }
        self.pump(id, now);
    }

    /// Adversarial testing: read nothing but ICE checks (a peer that never reads).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn set_deaf(&mut self, deaf: bool) {
        self.peers.deaf = deaf;
    }

    /// See [`crate::Session::set_simulated_network_from`].
    pub(crate) fn simulate_path_from(&mut self, id: PeerId, conditions: NetworkConditions) {
        self.peers.simulate_path_from(id, conditions);
    }

    /// The game disconnects `id` for good (and its player, if the lobby names it).
    pub(crate) fn shun(&mut self, now: Instant, id: PeerId) {
        self.membership.shun(id);
        self.disconnect(id, DisconnectReason::ClosedHere, now);
    }

    // ----- liveness ------------------------------------------------------------------

    /// The periodic round, every [`ROUND`] (after [`Core::retry_due`]): timeouts, ICE
    /// restarts, pings (when due), loss and stats.
    fn round(&mut self, now: Instant) {
        let timeouts = Timeouts {
            connect: self.cfg.connect_timeout,
            silence: self.cfg.silence_timeout,
        };
        // Who goes, why, and whether we offer again (a connection we offered timed out).
        let mut gone = Vec::new();
        let verdicts = self.peers.round(now, timeouts, &self.cands, &self.out);
        self.report_announced();
        for (id, verdict) in verdicts {
            match verdict {
                Verdict::Wait => continue,
                Verdict::ConnectTimeout { offer_again } => {
                    gone.push((id, DisconnectReason::ConnectTimeout, offer_again));
                }
                Verdict::Silent => gone.push((id, DisconnectReason::Silent, false)),
                Verdict::TellReady => self.pump(id, now),
                Verdict::Alive { restart } => {
                    if restart && self.link.is_up() {
                        self.ice_restart(id, now);
                    }
                    self.pump(id, now);
                }
            }
        }
        for (id, reason, offer_again) in gone {
            self.disconnect(id, reason, now);
            if offer_again {
                self.schedule_retry(id, now);
            }
        }
    }

    /// A connection we offered timed out: while the peer is in the lobby (and not
    /// disconnected by the game), offer again later (see `retry.rs`).
    fn schedule_retry(&mut self, id: PeerId, now: Instant) {
        if self.membership.member(id).is_none() || self.membership.is_shunned(id) {
            self.retries.forget(id);
            return;
        }
        let wait = self.retries.failed(id, now);
        tracing::debug!(peer = %id, ?wait, "connection attempt timed out; offering again");
    }

    /// Offers again to the peers whose retry is due (once the matchmaker can carry it).
    fn retry_due(&mut self, now: Instant) {
        if !self.link.is_up() {
            return;
        }
        for id in self.retries.due(now) {
            match self.membership.member(id) {
                Some(_) if !self.peers.contains(id) => self.connect_to(id, true, now),
                Some(_) => {}
                None => self.retries.forget(id),
            }
        }
    }

    fn fail(&mut self, peer: PeerId, reason: String, now: Instant) {
        self.out.emit(Event::Error(Error::WebRtc {
            peer,
            reason: reason.clone(),
        }));
        self.disconnect(peer, DisconnectReason::Failed(reason), now);
    }

    /// Closes a peer's connection for a new one: announced only if it was connected.
    fn retire(&mut self, id: PeerId, reason: DisconnectReason, now: Instant) {
        if self.peers.get(id).is_some_and(Peer::is_connected) {
            self.disconnect(id, reason, now);
        } else {
            self.peers.remove(id, now, &mut self.cands, &mut self.out);
        }
    }

    /// Forgets a peer, closing its connection; announces it once.
    fn disconnect(&mut self, id: PeerId, reason: DisconnectReason, now: Instant) {
        // A timed-out attempt keeps its count of failures for the next offer's wait.
        if reason != DisconnectReason::ConnectTimeout {
            self.retries.forget(id);
        }
        if !self.peers.remove(id, now, &mut self.cands, &mut self.out) {
            return;
        }
        tracing::debug!(peer = %id, ?reason, "disconnected");
        self.out.peer_gone(id, reason);
    }

    /// The session is ending: every peer is asked to close the data channels
    /// ([`Peers::say_goodbye`]); from now on timers only drive the engines. The shell
    /// serves datagrams and timers until [`Core::channels_closed`] (or a short wait is
    /// over), then calls [`Core::shutdown`].
    pub(crate) fn begin_shutdown(&mut self, now: Instant) {
        self.closing = true;
        self.peers.say_goodbye(now);
        for id in self.peers.ids() {
            self.pump(id, now);
        }
    }

    /// Whether every peer asked has closed its data channels.
    pub(crate) fn channels_closed(&self) -> bool {
        self.peers.channels_closed()
    }

    /// The session ends: every peer connection is closed (their goodbyes go out).
    pub(crate) fn shutdown(&mut self, now: Instant) {
        for id in self.peers.ids() {
            self.peers.remove(id, now, &mut self.cands, &mut self.out);
        }
    }
}
