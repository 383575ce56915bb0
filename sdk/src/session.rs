//! [`Session`]: the handle a game holds. A sync API for game loops, an async one for tokio.
//!
//! The session owns one network thread running the transport loop (WebRTC for every peer,
//! one UDP socket, the matchmaker connection). The game talks to it through channels and
//! never blocks on the network.

use std::sync::Arc;
#[cfg(not(target_arch = "wasm32"))]
use std::thread::JoinHandle;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use squadlink_protocol::{PeerId, PlayerId};

use crate::bridge::{Command, Commands, NetworkSide, Shared};
use crate::channel::{Channel, ChannelKind};
use crate::conditioner::NetworkConditions;
use crate::endpoint::{ChannelEndpoint, size_limit};
use crate::error::{Error, Result};
use crate::event::{Event, LobbyInfo};
#[cfg(not(target_arch = "wasm32"))]
use crate::join::{STOP_WAIT, join_within};
use crate::settings::Settings;

use crate::stats::PeerStats;

/// A player's connection to a lobby and its peers.
///
/// ```no_run
/// use squadlink::{Channel, ChannelKind, Event, LobbyRef, Session};
///
/// let session = Session::builder("ws://127.0.0.1:7878/v1")
///     .channel(ChannelKind::UnreliableSequenced) // channel 0: state
///     .channel(ChannelKind::ReliableOrdered)     // channel 1: events
///     .join(LobbyRef::Code("K7QXZ".into()))
///     .start()?;
/// loop {
///     for event in session.poll_events() {
///         if let Event::PeerConnected { peer, path, .. } = event {
///             println!("{peer} connected via {}", path.name());
///         }
///     }
///     session.broadcast(Channel(0), b"my position")?;
///     for (peer, bytes) in session.receive(Channel(0)) {
///         println!("{peer}: {} bytes", bytes.len());
///     }
///     # break;
/// }
/// # Ok::<(), squadlink::Error>(())
/// ```
pub struct Session {
    channels: Vec<ChannelKind>,
    max_message_size: usize,
    cmd: Commands,
    shared: Arc<Shared>,
    events: crossbeam_channel::Receiver<Event>,
    inbox: Vec<crossbeam_channel::Receiver<(PeerId, Bytes)>>,
    ident: crossbeam_channel::Receiver<(PeerId, PlayerId)>,
    me: std::sync::Mutex<Option<(PeerId, PlayerId)>>,
    /// The network thread (native; in the browser the network side is a task that ends
    /// when told to close).
    #[cfg(not(target_arch = "wasm32"))]
    thread: Option<JoinHandle<()>>,
    /// The key of the session's media hub in the page (`transport::web::media`): the
    /// page's tracks are not `Send`, so voice and video find them by it.
    #[cfg(target_arch = "wasm32")]
    media: u64,
}

impl Session {
    /// The key of the session's media hub in the page.
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn media_key(&self) -> u64 {
        self.media
    }

    /// The game's handle to a session with `settings` (with no network thread yet), and the
    /// side a shell drives.
    pub(crate) fn split(settings: Settings) -> (Session, NetworkSide) {
        let n = settings.channels.len();
        let (shared, ends) = Shared::new(n, settings.inbox_limit);
        let shared = Arc::new(shared);
        let (cmd_tx, cmd_rx) = tokio::sync::mpsc::unbounded_channel();
        // The identity: once when the lobby is entered, again if a reconnection had to
        // rejoin as a new member.
        let (ident_tx, ident_rx) = crossbeam_channel::unbounded();
        let session = Session {
            channels: settings.channels.clone(),
            max_message_size: settings.max_message_size,
            cmd: Commands::new(cmd_tx, Arc::clone(&shared)),
            shared: Arc::clone(&shared),
            events: ends.events,
            inbox: ends.inbox,
            ident: ident_rx,
            me: std::sync::Mutex::new(None),
            #[cfg(not(target_arch = "wasm32"))]
            thread: None,
            #[cfg(target_arch = "wasm32")]
            media: crate::transport::web::media::register(),
        };
        let net = NetworkSide {
            settings,
            shared,
            commands: cmd_rx,
            ident: ident_tx,
        };
        (session, net)
    }

    /// The network thread (native): joined when the session closes.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn attach_thread(&mut self, thread: JoinHandle<()>) {
        self.thread = Some(thread);
    }

    fn ident(&self) -> Option<(PeerId, PlayerId)> {
        let mut me = self.me.lock().ok()?;
        for latest in self.ident.try_iter() {
            *me = Some(latest);
        }
        me.clone()
    }

    /// This session's peer id in the lobby. It stays the same across matchmaker
    /// reconnections, unless [`Event::MatchmakerRestored`] says `resumed: false`.
    pub fn id(&self) -> Option<PeerId> {
        self.ident().map(|(p, _)| p)
    }

    /// This player's id.
    pub fn player_id(&self) -> Option<PlayerId> {
        self.ident().map(|(_, p)| p)
    }

    /// The lobby as last heard from the matchmaker.
    pub fn lobby(&self) -> Option<LobbyInfo> {
        self.shared.lobby.read().ok().and_then(|l| l.clone())
    }

    /// Events since the last call, oldest first. Never blocks.
    pub fn poll_events(&self) -> impl Iterator<Item = Event> + '_ {
        self.events.try_iter()
    }

    /// Waits for the next event (async API). `None` once the session has ended.
    pub async fn next_event(&self) -> Option<Event> {
        loop {
            match self.events.try_recv() {
                Ok(e) => return Some(e),
                Err(crossbeam_channel::TryRecvError::Disconnected) => return None,
                Err(crossbeam_channel::TryRecvError::Empty) if self.shared.has_ended() => {
                    return None;
                }
                Err(crossbeam_channel::TryRecvError::Empty) => {
                    self.shared.event_wake.notified().await;
                }
            }
        }
    }

    fn check(&self, channel: Channel, size: usize) -> Result<ChannelKind> {
        let kind = *self
            .channels
            .get(channel.0)
            .ok_or(Error::UnknownChannel(channel))?;
        let limit = size_limit(kind, self.max_message_size);
        if size > limit {
            return Err(Error::MessageTooLarge {
                channel,
                size,
                limit,
            });
        }
        Ok(kind)
    }

    fn queue(&self, to: Option<PeerId>, channel: Channel, payload: Bytes) -> Result<()> {
        let kind = self.check(channel, payload.len())?;
        if self.cmd.send_data(to, (channel.0, kind), payload) {
            Ok(())
        } else {
            Err(Error::Closed)
        }
    }

    /// Sends `data` to one peer. Never blocks; an unreliable message that does not fit the
    /// peer's send buffer is dropped and counted in [`PeerStats::dropped_congested`], and
    /// one sent while nothing has been heard from the peer for 750 ms (its path looks cut)
    /// is dropped and counted in [`PeerStats::dropped_silent`]: sent into a cut, it would
    /// hold the path back once it heals (docs/wire.md, "After a link heals").
    ///
    /// Natively, an unreliable message is encrypted and sent on the calling thread when
    /// the network thread is free (waiting at most 25 µs for it), which saves a thread
    /// hand-off; otherwise, and for reliable channels, the network thread sends it. Either
    /// way messages keep the order they were sent in, and none overtakes an earlier
    /// [`Session::disconnect`].
    pub fn send(&self, peer: PeerId, channel: Channel, data: &[u8]) -> Result<()> {
        self.queue(Some(peer), channel, Bytes::copy_from_slice(data))
    }

    /// Sends `data` to every connected peer.
    pub fn broadcast(&self, channel: Channel, data: &[u8]) -> Result<()> {
        self.queue(None, channel, Bytes::copy_from_slice(data))
    }

    /// `channel` as a handle of its own (`Send`, `Sync`, `Clone`), for a layer that owns its
    /// transport — a GGRS socket, a replication backend — while the game keeps the session.
    pub fn endpoint(&self, channel: Channel) -> Result<ChannelEndpoint> {
        let kind = *self
            .channels
            .get(channel.0)
            .ok_or(Error::UnknownChannel(channel))?;
        let inbox = self
            .inbox
            .get(channel.0)
            .ok_or(Error::UnknownChannel(channel))?;
        Ok(ChannelEndpoint::new(
            (channel, kind, size_limit(kind, self.max_message_size)),
            self.cmd.clone(),
            inbox.clone(),
            Arc::clone(&self.shared),
        ))
    }

    /// Messages received on `channel` since the last call, oldest first. Never blocks.
    pub fn receive(&self, channel: Channel) -> impl Iterator<Item = (PeerId, Bytes)> + '_ {
        self.inbox
            .get(channel.0)
            .into_iter()
            .flat_map(|rx| rx.try_iter())
            .inspect(move |(_, m)| self.shared.taken(channel.0, m.len()))
    }

    /// Waits for the next message on `channel` (async API). `None` once the session ended
    /// or if the channel was not declared.
    pub async fn recv(&self, channel: Channel) -> Option<(PeerId, Bytes)> {
        let rx = self.inbox.get(channel.0)?;
        let wake = self.shared.inbox_wake.get(channel.0)?;
        loop {
            match rx.try_recv() {
                Ok(m) => {
                    self.shared.taken(channel.0, m.1.len());
                    return Some(m);
                }
                Err(crossbeam_channel::TryRecvError::Disconnected) => return None,
                Err(crossbeam_channel::TryRecvError::Empty) if self.shared.has_ended() => {
                    return None;
                }
                Err(crossbeam_channel::TryRecvError::Empty) => wake.notified().await,
            }
        }
    }

    /// Serializes `value` with bincode and sends it to one peer.
    pub fn send_typed<T: Serialize>(
        &self,
        peer: PeerId,
        channel: Channel,
        value: &T,
    ) -> Result<()> {
        self.queue(Some(peer), channel, crate::codec::encode(value)?)
    }

    /// Serializes `value` with bincode and sends it to every connected peer.
    pub fn broadcast_typed<T: Serialize>(&self, channel: Channel, value: &T) -> Result<()> {
        self.queue(None, channel, crate::codec::encode(value)?)
    }

    /// Messages received on `channel`, decoded as `T` (with a size limit). A message that
    /// does not decode comes out as an error value; the others are unaffected.
    pub fn receive_typed<T: DeserializeOwned>(
        &self,
        channel: Channel,
    ) -> impl Iterator<Item = (PeerId, Result<T>)> + '_ {
        self.receive(channel)
            .map(|(peer, bytes)| (peer, crate::codec::decode(&bytes)))
    }

    /// Peers whose channels are all open right now.
    pub fn connected_peers(&self) -> Vec<PeerId> {
        self.shared
            .stats
            .read()
            .map(|s| {
                let mut v: Vec<PeerId> = s
                    .iter()
                    .filter(|(_, st)| st.connected)
                    .map(|(p, _)| *p)
                    .collect();
                v.sort();
                v
            })
            .unwrap_or_default()
    }

    /// The latest statistics for one peer.
    pub fn stats(&self, peer: PeerId) -> Option<PeerStats> {
        self.shared.stats.read().ok()?.get(&peer).cloned()
    }

    /// For testing how a game copes with a bad network, from now on: drops this fraction
    /// (0.0–1.0) of the datagrams this session sends and receives, at random (0 stops it).
    /// Set after peers connected, it tests what a lossy path does to traffic without also
    /// testing the handshake under loss.
    pub fn set_simulated_loss(&self, fraction: f64) {
        let _ = self.cmd.send(Command::SimulatedLoss(fraction));
    }

    /// For testing how a game copes when one link of the mesh is slow, lossy or down while
    /// the others hold (a partial network split: the host cut off from one player only):
    /// from now on, what this session receives from `peer` goes through a simulated path
    /// with `conditions`, after the session's own
    /// ([`set_simulated_network`](Session::set_simulated_network)); datagrams already on
    /// it keep theirs. `NetworkConditions::default().with_loss(1.0)` cuts the path from
    /// that peer, `NetworkConditions::default()` restores it. Set it on both sessions for
    /// a link that behaves so both ways. It holds for the connection to `peer` and any
    /// later one (an ICE restart, a reconnection), in real sessions and on
    /// [`crate::testing::TestNet`]. In the browser (whose own engine carries the
    /// datagrams) it is ignored with a warning, as `set_simulated_network` is. Invalid
    /// conditions are ignored with a warning.
    pub fn set_simulated_network_from(&self, peer: PeerId, conditions: NetworkConditions) {
        if !conditions.is_valid() {
            tracing::warn!(%peer, ?conditions, "invalid simulated network conditions ignored");
            return;
        }
        // The browser's engine carries its own datagrams: the core never sees them there.
        #[cfg(target_arch = "wasm32")]
        tracing::warn!(%peer, "simulated network conditions are not available in the browser");
        let _ = self
            .cmd
            .send(Command::SimulatedNetworkFrom { peer, conditions });
    }

    /// Changes the simulated path of what this session receives from now on (see
    /// [`SessionBuilder::simulated_network`](crate::SessionBuilder::simulated_network));
    /// datagrams already on their way keep theirs. Invalid conditions (a fraction outside
    /// 0–1) are ignored with a warning.
    pub fn set_simulated_network(&self, conditions: NetworkConditions) {
        if !conditions.is_valid() {
            tracing::warn!(?conditions, "invalid simulated network conditions ignored");
            return;
        }
        let _ = self.cmd.send(Command::SimulatedNetwork(conditions));
    }

    /// Closes the connection to `peer` and refuses it for the rest of this session: its
    /// signals are ignored, and it is not connected again, under this peer id or (if it
    /// rejoins the lobby) under its player id. For a peer that misbehaves
    /// ([`Event::PeerMisbehaved`]) or that the game will not play with.
    /// [`Event::PeerDisconnected`] follows with [`DisconnectReason::ClosedHere`]. The peer
    /// stays in the lobby (the matchmaker knows nothing of it); on its side the connection
    /// ends as if we had left.
    pub fn disconnect(&self, peer: PeerId) {
        let _ = self.cmd.send(Command::Disconnect { peer });
    }

    /// Adversarial testing (feature `fuzzing`; not a stable API): sends `bytes` as they are
    /// on data channel `index` to `peer`, with no framing. Index = the number of channels is
    /// the hidden control channel.
    #[cfg(feature = "fuzzing")]
    #[doc(hidden)]
    pub fn hostile_send_raw(&self, peer: PeerId, index: usize, bytes: &[u8]) {
        let _ = self.cmd.send(Command::Raw {
            to: peer,
            index,
            payload: Bytes::copy_from_slice(bytes),
        });
    }

    /// Adversarial testing (feature `fuzzing`; not a stable API): sends one RTP packet to
    /// `peer` on our video track (`video`) or audio track, with these header fields and
    /// `payload` as it is, under the track's payload type or `payload_type`.
    #[cfg(feature = "fuzzing")]
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    pub fn hostile_send_rtp(
        &self,
        peer: PeerId,
        video: bool,
        payload_type: Option<u8>,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) {
        use crate::media::{Kind, MediaFrame};
        let _ = self.cmd.send(Command::RawRtp {
            to: peer,
            kind: if video { Kind::Video } else { Kind::Audio },
            payload_type,
            frame: MediaFrame {
                seq,
                timestamp,
                marker,
                payload: Bytes::copy_from_slice(payload),
            },
        });
    }

    /// Adversarial testing (feature `fuzzing`; not a stable API): from now on (`true`) the
    /// network thread reads nothing but ICE checks: a peer that stays reachable and never
    /// reads (no acknowledgements, so the other side's send buffers fill).
    #[cfg(feature = "fuzzing")]
    #[doc(hidden)]
    pub fn hostile_deaf(&self, deaf: bool) {
        let _ = self.cmd.send(Command::Deaf(deaf));
    }

    /// Connects a voice pipeline to this session's audio tracks: encoded frames sent on
    /// `MediaLink::send` go to every connected peer, and what peers send arrives on the
    /// returned receiver. A later call replaces the earlier link.
    #[cfg_attr(not(feature = "voice"), allow(dead_code))]
    pub(crate) fn media_link(&self) -> crate::bridge::MediaLink {
        let (tx, rx) = crossbeam_channel::bounded(crate::media::MEDIA_QUEUE);
        let _ = self.cmd.send(Command::AttachMedia(tx));
        crate::bridge::MediaLink {
            cmd: self.cmd.media_sender(),
            incoming: rx,
        }
    }

    /// Connects a video pipeline to this session's video tracks: packets sent on
    /// `MediaLink::send_video` go to connected peers, and what peers send (with keyframe
    /// requests and connects) arrives on the returned receiver. A later call replaces the
    /// earlier link.
    #[cfg_attr(not(feature = "video"), allow(dead_code))]
    pub(crate) fn video_link(&self) -> crate::bridge::MediaLink {
        let (tx, rx) = crossbeam_channel::bounded(crate::media::MEDIA_QUEUE);
        let _ = self.cmd.send(Command::AttachVideo(tx));
        crate::bridge::MediaLink {
            cmd: self.cmd.media_sender(),
            incoming: rx,
        }
    }

    /// Leaves the lobby and closes every peer connection without waiting, through a shared
    /// reference (a session held by several tasks, in an `Arc` or, in the browser, an
    /// `Rc`): the session then reports [`Event::Closed`], [`Session::next_event`] and
    /// [`Session::recv`] return `None` (waiters included), and sends fail with
    /// [`Error::Closed`]. Dropping the session afterwards waits for its network thread as
    /// [`Session::close`] does.
    pub fn leave(&self) {
        let _ = self.cmd.send(Command::Close);
    }

    /// Leaves the lobby, closes every peer connection and stops the network thread
    /// (waits at most a couple of seconds). Dropping the session does the same.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.cmd.send(Command::Close);
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(thread) = self.thread.take() {
            join_within(thread, STOP_WAIT);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shutdown();
    }
}
