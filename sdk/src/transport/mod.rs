//! Our event loop over webrtc-rs's sans-IO core (`rtc`).
//!
//! One thread, one current-thread tokio runtime, one UDP socket for every peer connection of
//! the session. The rule that makes connecting fast: after *every* input (a datagram, a
//! signal, a send, a timer) the loop drains the peer connection's events, reads and writes
//! until nothing more comes out, and calls `handle_timeout(now)` whenever an event came out
//! (the core moves some handshake output, such as the DTLS ClientHello, to its write queue
//! only on a timeout). Nothing waits for a timer tick: loopback connects in about 2 ms.
//!
//! Datagrams of different peer connections share the socket. A Binding request names its
//! target in USERNAME (`<our ufrag>:<their ufrag>`); everything else is routed by the
//! sender's address, learned from remote candidates and from those requests.

pub(crate) mod codecs;
pub(crate) mod control;
pub(crate) mod engine;
pub(crate) mod gather;
mod link;
pub(crate) mod net;
pub(crate) mod peer;
mod retry;
mod routes;
pub(crate) mod rtc_engine;
pub(crate) mod stream;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use squadlink_protocol::{
    ClientMessage, IceServer, Lobby, PeerId, PlayerId, Properties, ServerMessage, Signal,
};
use tokio::net::UdpSocket;

use self::control::{Control, PING_EVERY};
use self::engine::{EngineEvent, PeerSettings, Sent, sdp_attribute};
use self::gather::{GatherContext, Gathered, Gatherer};
use self::link::LinkState;
use self::net::{CandidateType, LossStage, host_addresses, local_for, parse_candidate};
use self::peer::Peer;
use self::retry::Retries;
use self::routes::{Route, Routes};
use self::stream::StreamEvent;
use crate::bridge::{Command, Shared};
use crate::channel::{self, Received};
use crate::conditioner::Conditioner;
use crate::error::{Error, Result};
use crate::event::{DisconnectReason, Event, IcePolicy, LobbyInfo};
use crate::media::{self, MediaFrame, MediaIn};
use crate::settings::Settings;
use crate::signaling::{Joined, LobbyRef, Signaling, SignalingReader, SignalingWriter};

/// Member-data key carrying a member's channel list.
const CHANNELS_KEY: &str = "squadlink.channels";
/// Unreliable messages are dropped when this much is already queued for the peer.
const UNRELIABLE_QUEUE_LIMIT: usize = 256 * 1024;
/// A connected peer silent this long gets an ICE restart (from the side that offered).
const RESTART_AFTER: Duration = Duration::from_millis(1200);
/// Restart again at most this often while the peer stays silent.
const RESTART_EVERY: Duration = Duration::from_secs(4);
/// While a restart is under way the silence timeout waits this long instead.
const RESTART_WINDOW: Duration = Duration::from_secs(15);
/// How often the host addresses are checked for a network change. Well under the offerer's
/// 1.2 s of silence before an ICE restart: the moved side must be back at the matchmaker
/// before that restart's offer is relayed, or the offer goes to its old connection.
const ADDRESS_CHECK_EVERY: Duration = Duration::from_millis(500);
/// Signaling messages kept for the matchmaker while its connection is down.
const OUTBOX_LIMIT: usize = 512;
/// Reliable sends fail with `SendBufferFull` past this.
const RELIABLE_QUEUE_LIMIT: usize = 16 * 1024 * 1024;
/// Datagrams read per wake-up before the loop looks at its other inputs.
const READ_BATCH: usize = 64;
const MAX_DATAGRAM: usize = 2048;

/// Whether `pem` root certificates are usable for TURN over TLS (a settings check).
pub(crate) fn check_tls_roots(pem: &[Vec<u8>]) -> std::result::Result<(), String> {
    stream::tls_config(pem).map(|_| ())
}

struct Net {
    socket: UdpSocket,
    /// The socket's bound address.
    bound: SocketAddr,
    hosts: Vec<SocketAddr>,
    loss: LossStage,
    /// Our relayed addresses (one per TURN allocation).
    relays: Vec<SocketAddr>,
    /// Our server-reflexive addresses that differ from the host ones.
    reflexive: Vec<SocketAddr>,
    gatherers: Vec<Gatherer>,
}

impl Net {
    /// Sends one datagram now, directly or through the TURN allocation it belongs to, or
    /// drops it (UDP semantics: ICE and SCTP retransmit what matters).
    fn send(&mut self, peer: &mut Peer, data: &[u8], from: SocketAddr, to: SocketAddr) {
        // DTLS, SCTP and media go only over the selected pair; STUN (first byte 0–3) also
        // checks the others, so it does not tell which pair is in use.
        if data.first().is_some_and(|b| *b > 3) {
            peer.last_pair = Some((from, to));
        }
        peer.stats.packets_sent += 1;
        peer.stats.bytes_sent += data.len() as u64;
        if let Some(i) = self.gatherers.iter().position(|g| g.relayed == Some(from)) {
            if let Some(g) = self.gatherers.get_mut(i) {
                g.relay_send(Instant::now(), data, to);
            }
            self.flush_gatherer(i);
            return;
        }
        self.send_raw(data, to);
    }

    /// Sends everything the peer connection has queued; whether there was anything.
    fn drain_writes(&mut self, peer: &mut Peer) -> bool {
        let mut any = false;
        while let Some((data, from, to)) = peer.poll_transmit() {
            any = true;
            self.send(peer, &data, from, to);
        }
        any
    }

    /// The host address STUN/TURN clients use as theirs.
    fn primary_host(&self) -> SocketAddr {
        self.hosts.first().copied().unwrap_or(self.bound)
    }

    /// How the TURN allocation with relayed address `relayed` reaches its server.
    fn relay_transport(&self, relayed: SocketAddr) -> Option<stream::TurnTransport> {
        self.gatherers
            .iter()
            .find(|g| g.relayed == Some(relayed))
            .map(|g| g.transport)
    }

    fn send_raw(&mut self, data: &[u8], to: SocketAddr) {
        if self.loss.drop_next() {
            return;
        }
        if let Err(err) = self.socket.try_send_to(data, to) {
            tracing::trace!(%err, %to, "datagram dropped on send");
        }
    }

    /// Sends whatever gatherer `i` has queued for its server.
    fn flush_gatherer(&mut self, i: usize) {
        loop {
            let Some(g) = self.gatherers.get_mut(i) else {
                return;
            };
            let server = g.server;
            let Some(out) = g.poll_write() else { return };
            match g.link() {
                Some(link) => link.send(out),
                None => self.send_raw(&out, server),
            }
        }
    }
}

/// The matchmaker connection, when up.
struct Link {
    reader: SignalingReader,
    writer: SignalingWriter,
}

/// A reconnection attempt under way.
type Attempt = tokio::task::JoinHandle<Result<(Signaling, Joined)>>;
/// A lookup of the ICE servers' addresses under way: what resolved, and the problems.
type Lookup = tokio::task::JoinHandle<(Vec<gather::Resolved>, Vec<String>)>;

pub(crate) struct Driver {
    cfg: Settings,
    /// The matchmaker connection; `None` while it is down.
    link: Option<Link>,
    /// Its liveness and reconnection schedule.
    link_state: LinkState,
    /// The reconnection attempt under way, if any.
    attempt: Option<Attempt>,
    /// The lookup of the ICE servers' addresses under way, if any.
    resolving: Option<Lookup>,
    /// The engine events of the peer being pumped (kept for its capacity).
    engine_events: Vec<EngineEvent>,
    /// The simulated network what we receive goes through (testing; a perfect path
    /// otherwise, which the datagrams skip).
    inbound: Conditioner<(Bytes, SocketAddr)>,
    /// The matchmaker instance we joined through: a reconnection to another one (a
    /// restart) must not rejoin by the old lobby code.
    instance: Option<String>,
    /// The matchmaker closed our link with `replaced`: another connection of this player
    /// holds the lobby place now, so we do not reconnect (the two would take turns).
    replaced: bool,
    player: PlayerId,
    lobby_code: String,
    member_data: Properties,
    /// Every lobby member's data (their channel lists), as last heard.
    lobby_members: HashMap<PeerId, Properties>,
    /// Tells the game's side our identity when it changes.
    ident: crossbeam_channel::Sender<(PeerId, PlayerId)>,
    last_address_check: Instant,
    shared: Arc<Shared>,
    net: Net,
    me: PeerId,
    channel_list: String,
    peers: HashMap<PeerId, Peer>,
    /// Which peer each datagram on the socket is for.
    routes: Routes,
    outbox: Vec<ClientMessage>,
    epoch: Instant,
    ice_servers: Vec<IceServer>,
    /// The voice pipeline's inbox, once voice is started.
    media: Option<crossbeam_channel::Sender<MediaIn>>,
    /// The video pipeline's inbox, once video is started.
    video: Option<crossbeam_channel::Sender<MediaIn>>,
    /// What TURN-over-TCP/TLS streams read, tagged with their gatherer's id.
    streams: tokio::sync::mpsc::UnboundedReceiver<(u64, StreamEvent)>,
    streams_tx: tokio::sync::mpsc::UnboundedSender<(u64, StreamEvent)>,
    /// Why TURN servers failed, until one works or all have failed.
    turn_failures: Vec<String>,
    /// Peers the game disconnected ([`Session::disconnect`](crate::Session::disconnect)):
    /// never connected again, by peer id or by player id.
    shunned: HashSet<PeerId>,
    shunned_players: HashSet<PlayerId>,
    /// Peers we offered to whose connection attempt timed out, offered to again later.
    retries: Retries,
    /// Adversarial testing: read nothing but ICE checks (a peer that never reads).
    #[cfg(feature = "fuzzing")]
    deaf: bool,
}

impl Driver {
    /// The network thread's whole life: join, then serve until closed.
    pub(crate) async fn run(
        cfg: Settings,
        shared: Arc<Shared>,
        mut commands: tokio::sync::mpsc::UnboundedReceiver<Command>,
        ready: crossbeam_channel::Sender<Result<()>>,
        ident: crossbeam_channel::Sender<(PeerId, PlayerId)>,
    ) {
        let socket = match net::bind_udp(cfg.bind) {
            Ok(s) => s,
            Err(e) => {
                let _ = ready.send(Err(Error::Io(format!("cannot bind UDP {}: {e}", cfg.bind))));
                return;
            }
        };
        let bound = match socket.local_addr() {
            Ok(a) => a,
            Err(e) => {
                let _ = ready.send(Err(Error::Io(format!("UDP local address: {e}"))));
                return;
            }
        };
        let channel_list = channel::describe(&cfg.channels);
        let member_data: Properties = [(CHANNELS_KEY.to_string(), channel_list.clone())].into();
        let joined = Signaling::connect_and_join(
            &cfg.url,
            cfg.token.clone(),
            cfg.player_id.clone(),
            &cfg.lobby,
            member_data.clone(),
            None,
        )
        .await;
        let (signaling, joined) = match joined {
            Ok(j) => j,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ident.send((joined.me, joined.player.clone()));
        let mut ice_servers = joined.ice_servers.clone();
        ice_servers.extend(cfg.extra_ice_servers.iter().cloned());
        let (streams_tx, streams) = tokio::sync::mpsc::unbounded_channel();
        let link_state = LinkState::new(Instant::now(), cfg.reconnect_window);
        let seed =
            u64::from(crate::media::random_u32()) << 32 | u64::from(crate::media::random_u32());
        let inbound = Conditioner::new(cfg.simulated_network, seed);
        let mut driver = Driver {
            net: Net {
                socket,
                bound,
                hosts: host_addresses(bound),
                loss: LossStage::new(cfg.simulated_loss),
                relays: Vec::new(),
                reflexive: Vec::new(),
                gatherers: Vec::new(),
            },
            cfg,
            link: None,
            link_state,
            attempt: None,
            resolving: None,
            inbound,
            engine_events: Vec::new(),
            instance: joined.instance.clone(),
            replaced: false,
            player: joined.player.clone(),
            lobby_code: joined.lobby.code.clone(),
            member_data,
            lobby_members: HashMap::new(),
            ident,
            last_address_check: Instant::now(),
            shared,
            me: joined.me,
            channel_list,
            peers: HashMap::new(),
            routes: Routes::default(),
            outbox: Vec::new(),
            epoch: Instant::now(),
            ice_servers,
            media: None,
            video: None,
            streams,
            streams_tx,
            turn_failures: Vec::new(),
            shunned: HashSet::new(),
            shunned_players: HashSet::new(),
            retries: Retries::default(),
            #[cfg(feature = "fuzzing")]
            deaf: false,
        };
        tracing::debug!(me = %driver.me, code = %joined.lobby.code, hosts = ?driver.net.hosts, "lobby entered");
        driver.start_gathering();
        driver.on_lobby_entered(&joined.lobby);
        let _ = ready.send(Ok(()));
        driver.attach_link(signaling);
        let end = driver.serve(&mut commands).await;
        driver.shutdown();
        driver.flush_outbox();
        if let Some(link) = driver.link.take() {
            link.writer.close().await;
        }
        if let Some(task) = driver.attempt.take() {
            task.abort();
        }
        if let Some(task) = driver.resolving.take() {
            task.abort();
        }
        driver.shared.emit(Event::Closed(end));
    }

    fn attach_link(&mut self, signaling: Signaling) {
        let (reader, writer) = signaling.split();
        self.link_state.restored(Instant::now());
        self.link = Some(Link { reader, writer });
    }

    async fn serve(
        &mut self,
        commands: &mut tokio::sync::mpsc::UnboundedReceiver<Command>,
    ) -> Option<Error> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut tick = tokio::time::interval(PING_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.flush_outbox();
            let deadline = self.next_deadline();
            tokio::select! {
                biased;
                cmd = commands.recv() => match cmd {
                    Some(Command::Send { to, channel, payload }) => self.on_send(to, channel, &payload),
                    Some(Command::Media(frame)) => self.on_media(&frame),
                    Some(Command::AttachMedia(sink)) => self.media = Some(sink),
                    Some(Command::Video { packets, to }) => self.on_video(&packets, to),
                    Some(Command::AttachVideo(sink)) => self.attach_video(sink),
                    Some(Command::KeyframeRequest { peer }) => self.on_keyframe_request(peer),
                    Some(Command::SimulatedLoss(fraction)) => self.net.loss = net::LossStage::new(fraction),
                    Some(Command::SimulatedNetwork(conditions)) => self.inbound.set_conditions(conditions),
                    Some(Command::VoiceLoss { peer, percent }) => self.on_voice_loss(peer, percent),
                    #[cfg(feature = "fuzzing")]
                    Some(Command::Raw { to, index, payload }) => self.on_raw(to, index, payload),
                    #[cfg(feature = "fuzzing")]
                    Some(Command::RawRtp { to, kind, payload_type, frame }) => self.on_raw_rtp(to, kind, payload_type, &frame),
                    #[cfg(feature = "fuzzing")]
                    Some(Command::Deaf(deaf)) => self.deaf = deaf,
                    Some(Command::Disconnect { peer }) => self.shun(peer),
                    Some(Command::Close) | None => return None,
                },
                received = self.net.socket.recv_from(&mut buf) => {
                    if let Ok((n, from)) = received {
                        self.received(buf.get(..n).unwrap_or(&[]), from);
                        for _ in 1..READ_BATCH {
                            match self.net.socket.try_recv_from(&mut buf) {
                                Ok((n, from)) => self.received(buf.get(..n).unwrap_or(&[]), from),
                                Err(_) => break,
                            }
                        }
                        self.release_inbound(Instant::now());
                    }
                }
                Some((id, event)) = self.streams.recv() => self.on_stream_event(id, event),
                msg = recv_link(&mut self.link) => match msg {
                    Ok(msg) => {
                        self.link_state.heard(Instant::now());
                        self.on_server_message(msg);
                    }
                    Err(err) => self.signaling_lost(err),
                },
                (resolved, problems) = lookup_result(&mut self.resolving) => self.on_resolved(resolved, problems),
                joined = reconnect_result(&mut self.attempt) => {
                    if let Some(end) = self.on_reconnect_result(joined) {
                        return Some(end);
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    self.check_addresses(now);
                    self.housekeeping(now);
                    // A fresh clock: a network change just now made a reconnection due at
                    // once, and it must not wait for the next tick.
                    if let Some(end) = self.signaling_housekeeping(Instant::now()) {
                        return Some(end);
                    }
                }
                () = tokio::time::sleep_until(deadline.into()) => {
                    let now = Instant::now();
                    self.release_inbound(now);
                    self.on_timeouts(now);
                    self.retry_due(now);
                    if let Some(end) = self.signaling_housekeeping(now) {
                        return Some(end);
                    }
                }
            }
        }
    }

    fn next_deadline(&mut self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let peers = self.peers.values_mut().filter_map(|p| p.poll_timeout());
        let servers = self
            .net
            .gatherers
            .iter_mut()
            .filter_map(Gatherer::poll_timeout);
        peers
            .chain(servers)
            .chain(self.link_state.next_deadline())
            .chain(self.inbound.next_release())
            // Offers go out only while the matchmaker link is up.
            .chain(
                self.link_state
                    .is_up()
                    .then(|| self.retries.next_deadline())
                    .flatten(),
            )
            .min()
            .unwrap_or(far)
    }

    /// Hands queued signaling messages to the writer task (never waits for the network).
    /// While the matchmaker is unreachable they wait, up to a bound.
    fn flush_outbox(&mut self) {
        match &self.link {
            Some(link) => {
                for msg in std::mem::take(&mut self.outbox) {
                    link.writer.send(msg);
                }
            }
            None => {
                let excess = self.outbox.len().saturating_sub(OUTBOX_LIMIT);
                self.outbox.drain(..excess);
            }
        }
    }

    /// The matchmaker connection failed: keep the peers, start reconnecting.
    fn signaling_lost(&mut self, err: Error) {
        let link = self.link.take();
        if link.is_none() && !self.link_state.is_up() {
            return;
        }
        if let Some(link) = link {
            link.writer.abandon();
        }
        self.link_state.lost(Instant::now(), !self.replaced);
        if self.replaced {
            tracing::warn!(%err, "another connection of this player took our lobby place; not reconnecting");
        } else {
            tracing::info!(%err, "matchmaker connection lost; reconnecting");
        }
        self.shared.emit(Event::MatchmakerLost(err));
    }

    /// Pings the matchmaker, notices a silent connection, and starts reconnection
    /// attempts when due. `Some` ends the session.
    fn signaling_housekeeping(&mut self, now: Instant) -> Option<Error> {
        while let Some(due) = self.link_state.poll(now) {
            match due {
                link::Due::Ping => {
                    if let Some(link) = &self.link {
                        link.writer.send(ClientMessage::Ping { nonce: None });
                    }
                }
                link::Due::Silent => self.signaling_lost(Error::Timeout {
                    what: "waiting for the matchmaker (nothing heard)",
                    secs: link::SILENCE.as_secs(),
                }),
                link::Due::Attempt { attempt } => {
                    let (url, token) = (self.cfg.url.clone(), self.cfg.token.clone());
                    // With a token the server takes the player id from it; in dev mode we
                    // name it.
                    let player = token.is_none().then(|| self.player.0.clone());
                    let lobby = LobbyRef::Code(self.lobby_code.clone());
                    let data = self.member_data.clone();
                    let instance = self.instance.clone();
                    tracing::debug!(attempt, "reconnecting to the matchmaker");
                    self.attempt = Some(tokio::spawn(async move {
                        Signaling::connect_and_join(
                            &url,
                            token,
                            player,
                            &lobby,
                            data,
                            instance.as_deref(),
                        )
                        .await
                    }));
                }
                link::Due::GiveUp => {
                    return Some(Error::Signaling {
                        url: self.cfg.url.clone(),
                        reason: format!(
                            "could not reconnect within {} s (SessionBuilder::reconnect_window)",
                            self.cfg.reconnect_window.as_secs()
                        ),
                    });
                }
            }
        }
        None
    }

    /// A reconnection attempt finished. `Some` ends the session.
    fn on_reconnect_result(&mut self, result: Result<(Signaling, Joined)>) -> Option<Error> {
        let now = Instant::now();
        let (signaling, joined) = match result {
            Ok(ok) => ok,
            Err(err) => {
                // The lobby is gone (say the matchmaker restarted and lost it): the peers
                // we have keep working, but there is nothing to go back to.
                let lobby_gone = matches!(&err, Error::MatchmakerRestarted { .. })
                    || matches!(&err, Error::Matchmaker { code, .. }
                        if *code == squadlink_protocol::ErrorCode::LobbyNotFound);
                if lobby_gone {
                    tracing::warn!(%err, "the lobby no longer exists; staying with the peers we have");
                    self.link_state.stop();
                    self.shared.emit(Event::Error(err));
                    return None;
                }
                tracing::debug!(%err, "reconnection attempt failed");
                self.link_state.attempt_failed(now);
                return None;
            }
        };
        self.attach_link(signaling);
        let resumed = joined.resumed && joined.me == self.me;
        tracing::info!(resumed, me = %joined.me, "back in the lobby");
        if resumed {
            self.publish_lobby(&joined.lobby);
            // Members who left while we were away are gone; members who joined meanwhile
            // offered to us into the void: offer to them ourselves.
            let members: Vec<PeerId> = joined.lobby.members.iter().map(|m| m.peer_id).collect();
            let gone: Vec<PeerId> = self
                .peers
                .keys()
                .filter(|p| !members.contains(p))
                .copied()
                .collect();
            for p in gone {
                self.disconnect(p, DisconnectReason::Left);
            }
            for m in &joined.lobby.members {
                if m.peer_id != self.me && !self.peers.contains_key(&m.peer_id) {
                    self.on_member(m.peer_id, m.player_id.clone(), &m.data, true);
                }
            }
        } else {
            // Our place had expired: we are a new member with a new id. Start over.
            self.outbox.clear();
            let ids: Vec<PeerId> = self.peers.keys().copied().collect();
            for p in ids {
                self.disconnect(p, DisconnectReason::Left);
            }
            self.me = joined.me;
            let _ = self.ident.send((joined.me, joined.player.clone()));
            self.lobby_code = joined.lobby.code.clone();
            self.on_lobby_entered(&joined.lobby);
        }
        self.shared.emit(Event::MatchmakerRestored { resumed });
        None
    }

    fn publish_lobby(&mut self, lobby: &Lobby) {
        self.lobby_members = lobby
            .members
            .iter()
            .map(|m| (m.peer_id, m.data.clone()))
            .collect();
        let info = LobbyInfo {
            code: lobby.code.clone(),
            host: lobby.host,
            members: lobby
                .members
                .iter()
                .map(|m| (m.peer_id, m.player_id.clone()))
                .collect(),
        };
        if let Ok(mut slot) = self.shared.lobby.write() {
            *slot = Some(info.clone());
        }
        self.shared.emit(Event::LobbyChanged(info));
    }

    /// We just joined: everyone already there joined earlier, so we offer to each.
    fn on_lobby_entered(&mut self, lobby: &Lobby) {
        self.publish_lobby(lobby);
        for m in &lobby.members {
            if m.peer_id != self.me {
                self.on_member(m.peer_id, m.player_id.clone(), &m.data, true);
            }
        }
    }

    /// A member to connect to. `offer`: we joined later, so we send the offer.
    fn on_member(&mut self, peer: PeerId, player: PlayerId, data: &Properties, offer: bool) {
        self.lobby_members.insert(peer, data.clone());
        if self.shunned_players.contains(&player) || self.shunned.contains(&peer) {
            tracing::debug!(%peer, "a disconnected player is in the lobby again: not connected");
            self.shunned.insert(peer);
            return;
        }
        self.shared.emit(Event::PeerJoined { peer, player });
        self.connect_to(peer, data, offer);
    }

    /// Starts a peer connection to lobby member `peer` (as offerer or answerer).
    fn connect_to(&mut self, peer: PeerId, data: &Properties, offer: bool) {
        let theirs = data.get(CHANNELS_KEY).cloned().unwrap_or_default();
        if theirs != self.channel_list {
            self.shared.emit(Event::Error(Error::ChannelMismatch {
                peer,
                ours: self.channel_list.clone(),
                theirs,
            }));
            self.shared.emit(Event::PeerDisconnected {
                peer,
                reason: DisconnectReason::ChannelMismatch,
            });
            return;
        }
        let now = Instant::now();
        let settings = PeerSettings {
            channels: &self.cfg.channels,
            max_message: self.cfg.max_message_size,
            relay_only: self.cfg.ice_policy == IcePolicy::RelayOnly,
            relay_wait: self.cfg.relay_wait,
            unreliable_lifetime: self.cfg.unreliable_lifetime,
        };
        let mut p = match Peer::new(peer, &settings, now) {
            Ok(p) => p,
            Err(e) => return self.fail(peer, e.to_string()),
        };
        if offer {
            p.offerer = true;
            match p.offer(now) {
                Ok(sdp) => self.outbox.push(ClientMessage::Signal {
                    to: peer,
                    data: Signal::Offer { sdp },
                }),
                Err(e) => return self.fail(peer, e),
            }
            self.register_ufrag(&mut p);
            self.add_local_candidates(&mut p);
        }
        self.peers.insert(peer, p);
        self.pump(peer, now);
    }

    /// Adds every candidate known so far to a peer whose local description is set, and
    /// trickles them to it. Candidates found later are added by `add_candidate_to_all`.
    fn add_local_candidates(&mut self, p: &mut Peer) {
        let relay_only = self.cfg.ice_policy == IcePolicy::RelayOnly;
        let mut known: Vec<(CandidateType, SocketAddr)> = Vec::new();
        if !relay_only {
            known.extend(self.net.hosts.iter().map(|h| (CandidateType::Host, *h)));
            known.extend(
                self.net
                    .reflexive
                    .iter()
                    .map(|r| (CandidateType::Srflx, *r)),
            );
        }
        known.extend(self.net.relays.iter().map(|r| (CandidateType::Relay, *r)));
        for (kind, addr) in known {
            self.add_candidate(p, kind, addr);
        }
    }

    fn add_candidate_to_all(&mut self, kind: CandidateType, addr: SocketAddr) {
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            if let Some(mut p) = self.peers.remove(&id) {
                if p.has_local_description() {
                    self.add_candidate(&mut p, kind, addr);
                }
                self.peers.insert(id, p);
                self.pump(id, Instant::now());
            }
        }
    }

    fn add_candidate(&mut self, p: &mut Peer, kind: CandidateType, addr: SocketAddr) {
        let base = self.net.hosts.first().copied().unwrap_or(addr);
        // Relays reached over UDP before TCP before TLS; others by rtc's usual formula.
        let priority = match kind {
            CandidateType::Relay => self
                .net
                .relay_transport(addr)
                .map_or(0, stream::TurnTransport::relay_priority),
            _ => 0,
        };
        if let Some(candidate) = p.add_local_candidate(kind, addr, base, priority) {
            self.outbox.push(ClientMessage::Signal {
                to: p.id,
                data: candidate,
            });
        }
    }

    /// Looks up the ICE servers' addresses beside the loop (DNS can take seconds); the
    /// clients start when the answer comes ([`Driver::on_resolved`]). A lookup still running
    /// from before (the network changed again) is dropped.
    fn start_gathering(&mut self) {
        if let Some(old) = self.resolving.take() {
            old.abort();
        }
        let relay_only = self.cfg.ice_policy == IcePolicy::RelayOnly;
        let ipv4 = self.net.primary_host().is_ipv4();
        let servers = self.ice_servers.clone();
        let delay = self.cfg.resolve_delay;
        self.resolving = Some(tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            gather::resolve(servers, relay_only, ipv4).await
        }));
    }

    /// The ICE servers' addresses are known: start a STUN or TURN client for each.
    fn on_resolved(&mut self, resolved: Vec<gather::Resolved>, mut problems: Vec<String>) {
        let relay_only = self.cfg.ice_policy == IcePolicy::RelayOnly;
        let ctx = GatherContext {
            local: self.net.primary_host(),
            tls_roots: &self.cfg.tls_roots,
            streams: self.streams_tx.clone(),
        };
        let (gatherers, more) = Gatherer::from_resolved(resolved, &ctx, Instant::now());
        problems.extend(more);
        for problem in problems {
            self.shared.emit(Event::Error(Error::IceServer(problem)));
        }
        if relay_only && !gatherers.iter().any(|g| g.is_turn()) {
            self.shared.emit(Event::Error(Error::IceServer(
                "relay-only mode needs a TURN server (give the matchmaker --turn-url and --turn-secret, or add one with SessionBuilder::ice_server); no peer can connect".into(),
            )));
        }
        self.net.gatherers = gatherers;
        for i in 0..self.net.gatherers.len() {
            self.net.flush_gatherer(i);
        }
    }

    /// Acts on what the STUN/TURN clients found: new candidates, relayed data, failures.
    fn process_gathered(&mut self, now: Instant) {
        let relay_only = self.cfg.ice_policy == IcePolicy::RelayOnly;
        for i in 0..self.net.gatherers.len() {
            loop {
                let Some(found) = self
                    .net
                    .gatherers
                    .get_mut(i)
                    .and_then(Gatherer::poll_gathered)
                else {
                    break;
                };
                match found {
                    Gathered::Reflexive(addr) => {
                        let known =
                            self.net.hosts.contains(&addr) || self.net.reflexive.contains(&addr);
                        if !relay_only && !known {
                            self.net.reflexive.push(addr);
                            self.add_candidate_to_all(CandidateType::Srflx, addr);
                        }
                    }
                    Gathered::Relayed(addr) => {
                        tracing::debug!(%addr, "TURN allocation ready");
                        self.net.relays.push(addr);
                        let remotes: Vec<SocketAddr> = self
                            .peers
                            .values()
                            .flat_map(|p| p.remote_types.keys().copied())
                            .collect();
                        if let Some(g) = self.net.gatherers.get_mut(i) {
                            for r in remotes {
                                g.permit(now, r);
                            }
                        }
                        self.add_candidate_to_all(CandidateType::Relay, addr);
                    }
                    Gathered::Data {
                        relayed,
                        from,
                        data,
                    } => {
                        self.deliver_datagram(&data, from, relayed, now);
                    }
                    Gathered::Failed(reason) => self.turn_failed(i, reason),
                }
            }
            self.net.flush_gatherer(i);
        }
    }

    /// A TURN server could not be used. Each failure is logged; the game hears of it only
    /// when no TURN server is left (UDP TURN failing is expected where UDP is blocked, and
    /// TCP or TLS then carries the relay).
    fn turn_failed(&mut self, i: usize, reason: String) {
        let Some(g) = self.net.gatherers.get_mut(i) else {
            return;
        };
        if g.failed {
            return;
        }
        if g.relayed.is_some() {
            tracing::warn!(%reason, "TURN allocation lost");
            return;
        }
        g.failed = true;
        tracing::info!(%reason, "TURN server unusable");
        self.turn_failures.push(reason);
        let turn = self.net.gatherers.iter().filter(|g| g.is_turn());
        let all_failed = turn.clone().all(|g| g.failed);
        if all_failed && turn.count() > 0 {
            let reasons = std::mem::take(&mut self.turn_failures).join("; ");
            self.shared.emit(Event::Error(Error::IceServer(format!(
                "no TURN relay could be allocated, so peers behind strict NATs cannot connect: {reasons}"
            ))));
        }
    }

    /// Bytes (or the end) from a TURN-over-TCP/TLS stream.
    fn on_stream_event(&mut self, id: u64, event: StreamEvent) {
        let Some(i) = self.net.gatherers.iter().position(|g| g.id == id) else {
            return;
        };
        let now = Instant::now();
        match event {
            StreamEvent::Frame(frame) => {
                if self.net.loss.drop_next() {
                    return;
                }
                let local = self.net.primary_host();
                if let Some(g) = self.net.gatherers.get_mut(i) {
                    g.handle_read(&frame, local, now);
                }
                self.net.flush_gatherer(i);
                self.process_gathered(now);
            }
            StreamEvent::Closed(reason) => {
                let url = self
                    .net
                    .gatherers
                    .get(i)
                    .map(Gatherer::url)
                    .unwrap_or_default();
                self.turn_failed(i, format!("{url}: {reason}"));
            }
        }
    }

    fn on_server_message(&mut self, msg: ServerMessage) {
        match msg {
            ServerMessage::PeerJoined { peer, .. } => {
                self.on_member(peer.peer_id, peer.player_id, &peer.data, false);
            }
            ServerMessage::PeerLeft { peer_id, .. } => {
                self.disconnect(peer_id, DisconnectReason::Left);
            }
            ServerMessage::LobbyState { lobby } => self.publish_lobby(&lobby),
            ServerMessage::Signal { from, data } => self.on_signal(from, data),
            ServerMessage::Error { code, message, .. } => {
                if code == squadlink_protocol::ErrorCode::Replaced {
                    self.replaced = true;
                }
                self.shared
                    .emit(Event::Error(Error::Matchmaker { code, message }));
            }
            _ => {}
        }
    }

    fn on_signal(&mut self, from: PeerId, data: Signal) {
        if self.shunned.contains(&from) {
            tracing::trace!(%from, "signal from a disconnected peer ignored");
            return;
        }
        let now = Instant::now();
        let relay_only = self.cfg.ice_policy == IcePolicy::RelayOnly;
        let fingerprint = match &data {
            Signal::Offer { sdp } | Signal::Answer { sdp } => sdp_attribute(sdp, "fingerprint"),
            _ => None,
        };
        if matches!(data, Signal::Offer { .. }) {
            self.prepare_for_offer(from, fingerprint.as_deref());
        }
        let Some(mut p) = self.peers.remove(&from) else {
            tracing::debug!(%from, "signal from a peer we do not connect to");
            return;
        };
        let result: std::result::Result<(), String> = match data {
            Signal::Offer { sdp } => match p.accept_offer(sdp, fingerprint, now) {
                Ok(answer) => {
                    self.outbox.push(ClientMessage::Signal {
                        to: from,
                        data: Signal::Answer { sdp: answer },
                    });
                    self.register_ufrag(&mut p);
                    self.add_local_candidates(&mut p);
                    p.remote_description_applied(now)
                }
                Err(e) => Err(e),
            },
            Signal::Answer { sdp } => p
                .accept_answer(sdp, fingerprint, now)
                .and_then(|()| p.remote_description_applied(now)),
            Signal::Candidate {
                candidate,
                sdp_mid,
                sdp_mline_index,
                username_fragment,
            } => {
                match parse_candidate(&candidate) {
                    Some((addr, kind)) if !relay_only || kind == net::CandidateType::Relay => {
                        p.remote_types.insert(addr, kind);
                        if !p.stats.remote_candidate_types.contains(&kind.name()) {
                            p.stats.remote_candidate_types.push(kind.name());
                        }
                        self.routes.expect(addr, from);
                        for i in 0..self.net.gatherers.len() {
                            if let Some(g) = self.net.gatherers.get_mut(i) {
                                g.permit(now, addr);
                            }
                            self.net.flush_gatherer(i);
                        }
                        p.add_remote_candidate(
                            candidate,
                            sdp_mid,
                            sdp_mline_index,
                            username_fragment,
                        )
                    }
                    // Unusable here (TCP, unparsable, or direct while relay-only): skip.
                    _ => Ok(()),
                }
            }
            Signal::EndOfCandidates | Signal::Opaque { .. } => Ok(()),
        };
        self.peers.insert(from, p);
        match result {
            Ok(()) => self.pump(from, now),
            Err(reason) => self.fail(from, reason),
        }
    }

    /// Routes STUN requests for our (new) ICE username fragment to this peer.
    fn register_ufrag(&mut self, p: &mut Peer) {
        let Some(ufrag) = p.local_ufrag() else {
            return;
        };
        if ufrag != p.ufrag {
            self.routes.set_ufrag(&p.ufrag, &ufrag, p.id);
            p.ufrag = ufrag;
        }
    }

    /// Restarts ICE with `id` (we offered first, so we offer again): new credentials, the
    /// candidates of our current network, the same DTLS and SCTP sessions.
    fn ice_restart(&mut self, id: PeerId, now: Instant) {
        let Some(mut p) = self.peers.remove(&id) else {
            return;
        };
        p.restart_ice(now);
        match p.offer(now) {
            Ok(sdp) => {
                tracing::debug!(peer = %id, "ICE restart");
                p.stats.ice_restarts += 1;
                self.outbox.push(ClientMessage::Signal {
                    to: id,
                    data: Signal::Offer { sdp },
                });
                self.register_ufrag(&mut p);
                self.add_local_candidates(&mut p);
            }
            Err(e) => tracing::debug!(%e, peer = %id, "ICE restart offer failed"),
        }
        self.peers.insert(id, p);
        self.pump(id, now);
    }

    /// Looks for a network change once every [`ADDRESS_CHECK_EVERY`].
    fn check_addresses(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_address_check) < ADDRESS_CHECK_EVERY {
            return;
        }
        self.last_address_check = now;
        let hosts = host_addresses(self.net.bound);
        if !hosts.is_empty() && hosts != self.net.hosts {
            self.on_network_change(hosts);
        }
    }

    /// Our addresses changed (another network, a new lease): gather candidates again,
    /// reconnect to the matchmaker from the new address, and restart ICE with every peer.
    fn on_network_change(&mut self, hosts: Vec<SocketAddr>) {
        tracing::info!(old = ?self.net.hosts, new = ?hosts, "network changed");
        self.net.hosts = hosts;
        self.net.reflexive.clear();
        self.net.relays.clear();
        self.net.gatherers.clear();
        self.turn_failures.clear();
        self.start_gathering();
        // The matchmaker connection was made from the old address: replace it now rather
        // than wait for it to fall silent.
        if self.link.is_some() {
            self.signaling_lost(Error::Io("the network changed".into()));
            self.link_state.reconnect_now(Instant::now());
        }
        let now = Instant::now();
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            if !p.is_connected() {
                continue;
            }
            if p.offerer {
                self.ice_restart(id, now);
            } else {
                // The offerer restarts once it notices; we give it the time.
                p.restart_at = Some(now);
            }
        }
    }

    /// An offer from `from` starts a new connection when it is not the one we were waiting
    /// for: the member rejoined (a new process under its old peer id, within the
    /// matchmaker's rejoin grace), or it came back to the lobby after we had given it up,
    /// or it offers after we resumed our own membership. The old connection gives way.
    fn prepare_for_offer(&mut self, from: PeerId, fingerprint: Option<&str>) {
        let keep = self.peers.get(&from).is_some_and(|p| {
            let fresh_answerer = p.awaits_first_offer();
            // The same DTLS identity: an ICE restart of this very connection.
            let restart = p.has_remote_description()
                && fingerprint.is_some()
                && p.remote_fingerprint.as_deref() == fingerprint;
            fresh_answerer || restart
        });
        if keep {
            return;
        }
        if self.peers.contains_key(&from) {
            tracing::debug!(peer = %from, "a new offer replaces the connection");
            self.retire(from, DisconnectReason::Rejoined);
        }
        if let Some(data) = self.lobby_members.get(&from).cloned() {
            self.connect_to(from, &data, false);
        }
    }

    /// A datagram from the socket: handled now, or after its trip through the simulated
    /// network when one is set.
    fn received(&mut self, data: &[u8], from: SocketAddr) {
        if self.inbound.is_idle_and_perfect() {
            self.on_datagram(data, from);
        } else {
            self.inbound.push(
                Instant::now(),
                data.len(),
                (Bytes::copy_from_slice(data), from),
            );
        }
    }

    /// Handles the datagrams whose simulated trip is over.
    fn release_inbound(&mut self, now: Instant) {
        while let Some((data, from)) = self.inbound.pop_due(now) {
            self.on_datagram(&data, from);
        }
    }

    fn on_datagram(&mut self, data: &[u8], from: SocketAddr) {
        if let Some(i) = self
            .net
            .gatherers
            .iter()
            .position(|g| g.owns_udp_from(from))
        {
            if self.net.loss.drop_next() {
                return;
            }
            let now = Instant::now();
            let local = local_for(&self.net.hosts, from).unwrap_or(from);
            if let Some(g) = self.net.gatherers.get_mut(i) {
                g.handle_read(data, local, now);
            }
            self.net.flush_gatherer(i);
            self.process_gathered(now);
            return;
        }
        if self.net.loss.drop_next() {
            return;
        }
        let Some(local) = local_for(&self.net.hosts, from) else {
            return;
        };
        self.deliver_datagram(data, from, local, Instant::now());
    }

    /// Hands a datagram that arrived on `local` (a host or relayed address) to its peer.
    fn deliver_datagram(&mut self, data: &[u8], from: SocketAddr, local: SocketAddr, now: Instant) {
        // STUN starts with two zero bits; DTLS (and the SCTP in it) and SRTP do not.
        #[cfg(feature = "fuzzing")]
        if self.deaf && data.first().is_some_and(|b| *b > 3) {
            return;
        }
        let id = match self.routes.route(data, from) {
            Route::Check(id) => {
                if self.relay_in_disguise(id, from) {
                    tracing::debug!(%from, peer = %id, "check from an unannounced relay address dropped");
                    return;
                }
                self.routes.confirm(from, id);
                id
            }
            Route::Known(id) => id,
            Route::Unknown => {
                tracing::trace!(%from, len = data.len(), "datagram for no peer");
                return;
            }
        };
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if p.handle_datagram(now, local, from, data) {
            self.pump(id, now);
        }
    }

    /// Whether a connectivity check from `from` for `id` comes from a TURN relay whose
    /// candidate has not arrived yet (see [`net::relay_in_disguise`]).
    fn relay_in_disguise(&self, id: PeerId, from: SocketAddr) -> bool {
        let Some(p) = self.peers.get(&id) else {
            return false;
        };
        let turn_servers = self
            .net
            .gatherers
            .iter()
            .filter(|g| g.is_turn())
            .map(|g| g.server.ip());
        let announced_relays = self.peers.values().flat_map(|q| {
            q.remote_types
                .iter()
                .filter(|(_, t)| **t == CandidateType::Relay)
                .map(|(a, _)| a.ip())
        });
        net::relay_in_disguise(
            from,
            &p.remote_types,
            &self.net.hosts,
            turn_servers.chain(announced_relays),
        )
    }

    fn on_timeouts(&mut self, now: Instant) {
        for i in 0..self.net.gatherers.len() {
            if let Some(g) = self.net.gatherers.get_mut(i)
                && g.poll_timeout().is_some_and(|t| t <= now)
            {
                g.handle_timeout(now);
                self.net.flush_gatherer(i);
            }
        }
        self.process_gathered(now);
        let due: Vec<PeerId> = self
            .peers
            .iter_mut()
            .filter_map(|(id, p)| p.poll_timeout().is_some_and(|t| t <= now).then_some(*id))
            .collect();
        for id in due {
            if let Some(p) = self.peers.get_mut(&id) {
                p.handle_timeout(now);
            }
            self.pump(id, now);
        }
    }

    /// Drains one peer connection until it has nothing more to say.
    fn pump(&mut self, id: PeerId, now: Instant) {
        let mut failed: Option<String> = None;
        let mut closed = false;
        // One buffer for the engine's events, reused from pump to pump.
        let mut out = std::mem::take(&mut self.engine_events);
        let Some(p) = self.peers.get_mut(&id) else {
            self.engine_events = out;
            return;
        };
        for _ in 0..1_000 {
            let mut progressed = p.step(now, &mut out);
            for event in out.drain(..) {
                match event {
                    EngineEvent::Message { index, data } => {
                        on_message(p, &self.shared, self.media.as_ref(), index, data, now);
                    }
                    EngineEvent::Rtp { kind, frame } => {
                        p.heard_rtp(kind, now);
                        let sink = match kind {
                            media::Kind::Video => self.video.as_ref(),
                            media::Kind::Audio => self.media.as_ref(),
                        };
                        if let Some(sink) = sink {
                            let _ = sink.try_send(MediaIn::Rtp {
                                peer: id,
                                frame,
                                arrival: Instant::now(),
                            });
                        }
                    }
                    EngineEvent::KeyframeRequest => {
                        if let Some(video) = &self.video {
                            let _ = video.try_send(MediaIn::KeyframeRequest { peer: id });
                        }
                    }
                    EngineEvent::Failed(reason) => failed = Some(reason),
                    EngineEvent::Closed => closed |= p.is_connected(),
                    // Tell the peer at once; it counts us connected when it hears this.
                    EngineEvent::AllOpen => p.ping(now, self.epoch),
                }
            }
            progressed |= self.net.drain_writes(p);
            if !progressed {
                break;
            }
        }
        self.engine_events = out;
        if p.ready() {
            p.on_connected(now);
            self.retries.forget(id);
            if let Some(video) = &self.video {
                let _ = video.try_send(MediaIn::PeerConnected { peer: id });
            }
        }
        self.announce(id, now);
        if let Some(reason) = failed {
            self.disconnect(id, DisconnectReason::Failed(reason));
        } else if closed {
            self.disconnect(id, DisconnectReason::Left);
        }
    }

    /// Announces a connected peer once its path is known (or after a short grace, when the
    /// remote address is only peer-reflexive). Sending works from the moment it connected.
    fn announce(&mut self, id: PeerId, now: Instant) {
        const GRACE: Duration = Duration::from_millis(300);
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(opened) = p.unannounced_since() else {
            return;
        };
        let path = match p.path(&self.net.relays) {
            Some(path) => path,
            None if now.saturating_duration_since(opened) >= GRACE => crate::PathKind::Srflx,
            None => return,
        };
        p.announced();
        p.stats.connected = true;
        p.stats.path = Some(path);
        p.stats.selected_pair = p.last_pair.map(|(l, r)| (l.to_string(), r.to_string()));
        p.stats.selected_pair_types = p.pair_types(&self.net.relays);
        p.stats.relay_transport = p
            .last_pair
            .and_then(|(local, _)| self.net.relay_transport(local))
            .map(stream::TurnTransport::name);
        let connect_time = opened.saturating_duration_since(p.created);
        tracing::debug!(peer = %id, ?connect_time, path = path.name(), "connected");
        self.publish_stats(id);
        self.shared.emit(Event::PeerConnected {
            peer: id,
            path,
            connect_time,
        });
    }

    fn on_send(&mut self, to: Option<PeerId>, channel: usize, payload: &[u8]) {
        let Some(kind) = self.cfg.channels.get(channel).copied() else {
            return;
        };
        let targets: Vec<PeerId> = match to {
            Some(p) => vec![p],
            None => self
                .peers
                .iter()
                .filter(|(_, p)| p.is_connected())
                .map(|(id, _)| *id)
                .collect(),
        };
        let now = Instant::now();
        for id in targets {
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            if !p.is_connected() {
                continue;
            }
            let limit = if kind.is_reliable() {
                RELIABLE_QUEUE_LIMIT
            } else {
                UNRELIABLE_QUEUE_LIMIT
            };
            match p.send_message(channel, payload, limit, now) {
                Sent::Yes => p.stats.messages_sent += 1,
                Sent::QueueFull if kind.is_reliable() => {
                    p.stats.refused_send_buffer_full += 1;
                    if p.told_send_full.due(now) {
                        self.shared.emit(Event::Error(Error::SendBufferFull {
                            peer: id,
                            channel: crate::Channel(channel),
                        }));
                    }
                    continue;
                }
                Sent::QueueFull => {
                    p.stats.dropped_congested += 1;
                    continue;
                }
                Sent::No => {}
            }
            self.pump(id, now);
        }
    }

    /// The connected peers, or just `to` if it is one of them.
    fn connected_ids(&self, to: Option<PeerId>) -> Vec<PeerId> {
        self.peers
            .iter()
            .filter(|(id, p)| p.is_connected() && to.is_none_or(|t| t == **id))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Sends a voice frame to every connected peer.
    fn on_media(&mut self, frame: &MediaFrame) {
        let now = Instant::now();
        for id in self.connected_ids(None) {
            if let Some(p) = self.peers.get_mut(&id) {
                p.send_rtp(media::Kind::Audio, frame, now);
            }
            self.pump(id, now);
        }
    }

    /// Sends a video frame's packets to every connected peer (or to `to`).
    fn on_video(&mut self, packets: &[MediaFrame], to: Option<PeerId>) {
        let now = Instant::now();
        for id in self.connected_ids(to) {
            if let Some(p) = self.peers.get_mut(&id) {
                for packet in packets {
                    p.send_rtp(media::Kind::Video, packet, now);
                }
            }
            self.pump(id, now);
        }
    }

    /// A video pipeline attached: it hears of the peers already connected (each needs a
    /// keyframe).
    fn attach_video(&mut self, sink: crossbeam_channel::Sender<MediaIn>) {
        for id in self.connected_ids(None) {
            let _ = sink.try_send(MediaIn::PeerConnected { peer: id });
        }
        self.video = Some(sink);
    }

    /// Asks a peer for a keyframe (RTCP PLI).
    fn on_keyframe_request(&mut self, id: PeerId) {
        let now = Instant::now();
        if let Some(p) = self.peers.get_mut(&id) {
            p.send_pli(now);
            self.pump(id, now);
        }
    }

    /// Unframed bytes on data channel `index` (adversarial testing).
    #[cfg(feature = "fuzzing")]
    fn on_raw(&mut self, id: PeerId, index: usize, payload: Bytes) {
        let now = Instant::now();
        if let Some(p) = self.peers.get_mut(&id) {
            p.send_frame(index, bytes::BytesMut::from(payload.as_ref()), now);
        }
        self.pump(id, now);
    }

    /// One RTP packet as given, on our audio or video track (adversarial testing).
    #[cfg(feature = "fuzzing")]
    fn on_raw_rtp(
        &mut self,
        id: PeerId,
        kind: media::Kind,
        payload_type: Option<u8>,
        frame: &MediaFrame,
    ) {
        let now = Instant::now();
        if let Some(p) = self.peers.get_mut(&id) {
            p.send_rtp_as(kind, frame, payload_type, now);
        }
        self.pump(id, now);
    }

    /// Tells one peer how much of its audio we lose, on the control channel.
    fn on_voice_loss(&mut self, id: PeerId, percent: u8) {
        let now = Instant::now();
        if let Some(p) = self.peers.get_mut(&id) {
            p.send_frame(p.control(), control::voice_loss(percent), now);
        }
        self.pump(id, now);
    }

    fn housekeeping(&mut self, now: Instant) {
        self.retry_due(now);
        // Who goes, why, and whether we offer again (a connection we offered timed out).
        let mut gone = Vec::new();
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            match p.is_connected() {
                false if now.saturating_duration_since(p.created) > self.cfg.connect_timeout => {
                    gone.push((id, DisconnectReason::ConnectTimeout, p.offerer));
                    continue;
                }
                true if now.saturating_duration_since(p.last_heard) > self.cfg.silence_timeout
                    && p.restart_at
                        .is_none_or(|t| now.saturating_duration_since(t) >= RESTART_WINDOW) =>
                {
                    gone.push((id, DisconnectReason::Silent, false));
                    continue;
                }
                false => {
                    // Our channels are open, the peer's not known to be: keep telling it.
                    if p.all_open() {
                        p.ping(now, self.epoch);
                        self.pump(id, now);
                    }
                    continue;
                }
                true => {}
            }
            if p.unannounced_since().is_some() {
                self.announce(id, now);
            }
            let restart_due = self.peers.get(&id).is_some_and(|p| {
                p.offerer
                    && now.saturating_duration_since(p.last_heard) >= RESTART_AFTER
                    && p.restart_at
                        .is_none_or(|t| now.saturating_duration_since(t) >= RESTART_EVERY)
            });
            if restart_due && self.link_state.is_up() {
                self.ice_restart(id, now);
            }
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            p.ping(now, self.epoch);
            p.update_loss(now);
            p.stats.send_queue_bytes = p.queued_bytes();
            self.pump(id, now);
            self.publish_stats(id);
        }
        for (id, reason, offer_again) in gone {
            self.disconnect(id, reason);
            if offer_again {
                self.schedule_retry(id, now);
            }
        }
    }

    /// A connection we offered timed out: while the peer is in the lobby (and not
    /// disconnected by the game), offer again later (see `retry.rs`).
    fn schedule_retry(&mut self, id: PeerId, now: Instant) {
        if !self.lobby_members.contains_key(&id) || self.shunned.contains(&id) {
            self.retries.forget(id);
            return;
        }
        let wait = self.retries.failed(id, now);
        tracing::debug!(peer = %id, ?wait, "connection attempt timed out; offering again");
    }

    /// Offers again to the peers whose retry is due (once the matchmaker can carry it).
    fn retry_due(&mut self, now: Instant) {
        if !self.link_state.is_up() {
            return;
        }
        for id in self.retries.due(now) {
            match self.lobby_members.get(&id).cloned() {
                Some(data) if !self.peers.contains_key(&id) => self.connect_to(id, &data, true),
                Some(_) => {}
                None => self.retries.forget(id),
            }
        }
    }

    fn publish_stats(&self, id: PeerId) {
        if let Some(p) = self.peers.get(&id)
            && let Ok(mut stats) = self.shared.stats.write()
        {
            stats.insert(id, p.stats.clone());
        }
    }

    fn fail(&mut self, peer: PeerId, reason: String) {
        self.shared.emit(Event::Error(Error::WebRtc {
            peer,
            reason: reason.clone(),
        }));
        self.disconnect(peer, DisconnectReason::Failed(reason));
    }

    /// Closes a peer's connection for a new one: announced only if it was connected.
    fn retire(&mut self, id: PeerId, reason: DisconnectReason) {
        let was_connected = self.peers.get(&id).is_some_and(Peer::is_connected);
        if was_connected {
            self.disconnect(id, reason);
        } else {
            self.close_peer(id);
        }
    }

    /// Closes a peer's connection and forgets how to route to it; whether there was one.
    fn close_peer(&mut self, id: PeerId) -> bool {
        let Some(mut p) = self.peers.remove(&id) else {
            return false;
        };
        p.close();
        let _ = self.net.drain_writes(&mut p);
        self.routes.forget(id, &p.ufrag);
        true
    }

    /// The game disconnects `id` for good (and its player, if the lobby names it).
    fn shun(&mut self, id: PeerId) {
        self.shunned.insert(id);
        let player = self.shared.lobby.read().ok().and_then(|lobby| {
            lobby.as_ref().and_then(|l| {
                l.members
                    .iter()
                    .find(|(peer, _)| *peer == id)
                    .map(|(_, player)| player.clone())
            })
        });
        if let Some(player) = player {
            self.shunned_players.insert(player);
        }
        self.disconnect(id, DisconnectReason::ClosedHere);
    }

    /// Forgets a peer, closing its connection; announces it once.
    fn disconnect(&mut self, id: PeerId, reason: DisconnectReason) {
        // A timed-out attempt keeps its count of failures for the next offer's wait.
        if reason != DisconnectReason::ConnectTimeout {
            self.retries.forget(id);
        }
        if !self.close_peer(id) {
            return;
        }
        if let Ok(mut stats) = self.shared.stats.write() {
            stats.remove(&id);
        }
        for sink in [&self.media, &self.video].into_iter().flatten() {
            let _ = sink.try_send(MediaIn::PeerGone { peer: id });
        }
        tracing::debug!(peer = %id, ?reason, "disconnected");
        self.shared
            .emit(Event::PeerDisconnected { peer: id, reason });
    }

    fn shutdown(&mut self) {
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            if let Some(mut p) = self.peers.remove(&id) {
                p.close();
                let _ = self.net.drain_writes(&mut p);
            }
        }
    }
}

/// The next message from the matchmaker, or never while its connection is down.
async fn recv_link(link: &mut Option<Link>) -> Result<ServerMessage> {
    match link {
        Some(link) => link.reader.recv().await,
        None => std::future::pending().await,
    }
}

/// The running lookup's result, or never when none runs.
async fn lookup_result(lookup: &mut Option<Lookup>) -> (Vec<gather::Resolved>, Vec<String>) {
    let Some(task) = lookup.as_mut() else {
        return std::future::pending().await;
    };
    let result = task.await;
    *lookup = None;
    result.unwrap_or_else(|e| {
        (
            Vec::new(),
            vec![format!("the ICE server lookup failed: {e}")],
        )
    })
}

/// The running reconnection attempt's result, or never when none runs.
async fn reconnect_result(attempt: &mut Option<Attempt>) -> Result<(Signaling, Joined)> {
    let Some(task) = attempt.as_mut() else {
        return std::future::pending().await;
    };
    let result = task.await;
    *attempt = None;
    result.unwrap_or_else(|e| Err(Error::Io(format!("the reconnection task failed: {e}"))))
}

/// Counts an undecodable frame from `p`, and tells the game on the first one and then at
/// most once a second.
fn misbehaved(p: &mut Peer, shared: &Shared, now: Instant) {
    p.stats.frame_errors += 1;
    if p.told_misbehaviour.due(now) {
        shared.emit(Event::PeerMisbehaved {
            peer: p.id,
            frame_errors: p.stats.frame_errors,
        });
    }
}

/// One data-channel message: unframe it and hand it to the game (or answer a ping).
fn on_message(
    p: &mut Peer,
    shared: &Shared,
    media: Option<&crossbeam_channel::Sender<MediaIn>>,
    index: usize,
    data: Bytes,
    now: Instant,
) {
    p.last_heard = now;
    if index == p.control() {
        match control::parse(&data) {
            Some(Control::VoiceLoss(percent)) => {
                if let Some(media) = media {
                    let _ = media.try_send(MediaIn::LossReport {
                        peer: p.id,
                        percent,
                    });
                }
            }
            Some(other) => {
                if let Some(reply) = p.on_control(other, now) {
                    p.send_frame(p.control(), reply, now);
                }
            }
            None => misbehaved(p, shared, now),
        }
        return;
    }
    let (received, evicted) = p.framing.receive(index, data);
    p.stats.partials_dropped += evicted;
    let message = match received {
        Received::Message(message) => Some(message),
        Received::Incomplete | Received::NoChannel => None,
        Received::Stale => {
            p.stats.dropped_stale += 1;
            None
        }
        Received::Malformed(e) => {
            tracing::debug!(%e, peer = %p.id, "bad frame");
            misbehaved(p, shared, now);
            None
        }
    };
    if let Some(message) = message {
        p.stats.messages_received += 1;
        if !shared.deliver(index, p.id, message) {
            p.stats.dropped_unread += 1;
            if p.told_unread.due(now) {
                shared.emit(Event::Error(Error::InboxFull {
                    peer: p.id,
                    channel: crate::Channel(index),
                    limit: shared.inbox_limit,
                }));
            }
        }
    }
}
