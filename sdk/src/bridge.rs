//! The bridge between the game's threads and the network thread. Down: [`Command`]s, from
//! the session (through [`Commands`]) and from the media pipelines (through [`MediaLink`]),
//! and — for game data, when the shell offers it — a [`DirectSend`] that sends on the
//! game's own thread. Up: [`Shared`], the event queue, one inbox per channel (bounded in
//! bytes), the stats and lobby snapshots, and the wake-ups for async readers; the network
//! thread fills it and [`crate::Session`] drains it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;
use squadlink_protocol::{PeerId, PlayerId};

use crate::channel::ChannelKind;
use crate::conditioner::NetworkConditions;
use crate::event::{Event, LobbyInfo};
#[cfg(feature = "fuzzing")]
use crate::media::Kind;
use crate::media::{MediaFrame, MediaIn};
use crate::settings::Settings;
use crate::stats::PeerStats;

/// What the network thread shares with the game.
pub(crate) struct Shared {
    pub(crate) events: crossbeam_channel::Sender<Event>,
    pub(crate) inbox: Vec<crossbeam_channel::Sender<(PeerId, Bytes)>>,
    /// Bytes waiting in each channel's inbox for the game to read.
    pub(crate) inbox_bytes: Vec<AtomicUsize>,
    /// Most bytes one channel's inbox holds ([`crate::SessionBuilder::inbox_limit`]).
    pub(crate) inbox_limit: usize,
    pub(crate) stats: RwLock<HashMap<PeerId, PeerStats>>,
    pub(crate) lobby: RwLock<Option<LobbyInfo>>,
    pub(crate) event_wake: tokio::sync::Notify,
    pub(crate) inbox_wake: Vec<tokio::sync::Notify>,
    /// Channels with a delivery whose reader is not woken yet: a shell with a direct path
    /// wakes async readers itself, after it lets go of the core ([`Shared::wake_readers`]),
    /// since a reader woken while the core is still held would find it busy when it
    /// answers. Without one, a delivery wakes its reader at once.
    unwoken: Vec<AtomicBool>,
    /// The session has ended (its `Closed` event is out): nothing more will arrive, so
    /// an `await` on an empty queue returns `None` instead of waiting forever.
    pub(crate) ended: std::sync::atomic::AtomicBool,
    /// Commands the game queued that order its data ([`Command::orders_data`]) and the
    /// core has not applied yet. Data goes the direct way only when this is 0, so that it
    /// never overtakes a `disconnect` or an earlier send still in the queue.
    pub(crate) queued: AtomicUsize,
    /// The shell's way of sending game data on the caller's thread, once it runs (native;
    /// see [`DirectSend`]).
    pub(crate) direct: OnceLock<Box<dyn DirectSend>>,
}

/// Sends game data on the calling thread instead of handing it to the network thread: the
/// native shell's core sits behind a lock both threads take, and a send that finds it free
/// goes through the engine and out of the socket at once. This saves the wake-up of the
/// network thread on every message (loopback round trip p50 −18 %, docs/performance.md).
pub(crate) trait DirectSend: Send + Sync {
    /// Sends `payload` on `channel` to `to` (every connected peer when `None`) if it can
    /// now without waiting: the core is not busy, nothing the game queued earlier waits
    /// (`queued` is 0) and no simulated loss is set. Otherwise the payload comes back, for
    /// the command queue.
    fn try_send(
        &self,
        queued: &AtomicUsize,
        to: Option<PeerId>,
        channel: usize,
        payload: Bytes,
    ) -> Option<Bytes>;
}

/// The game's ends of [`Shared`]: the event queue and one inbox per channel.
pub(crate) struct GameEnds {
    pub(crate) events: crossbeam_channel::Receiver<Event>,
    pub(crate) inbox: Vec<crossbeam_channel::Receiver<(PeerId, Bytes)>>,
}

impl Shared {
    /// A bridge for `channels` channels whose inboxes hold up to `inbox_limit` bytes each;
    /// the game keeps the other ends.
    pub(crate) fn new(channels: usize, inbox_limit: usize) -> (Self, GameEnds) {
        let (events_tx, events) = crossbeam_channel::unbounded();
        let (inbox_tx, inbox): (Vec<_>, Vec<_>) = (0..channels)
            .map(|_| crossbeam_channel::unbounded())
            .unzip();
        let shared = Self {
            events: events_tx,
            inbox: inbox_tx,
            inbox_bytes: (0..channels).map(|_| AtomicUsize::new(0)).collect(),
            inbox_limit,
            stats: RwLock::new(HashMap::new()),
            lobby: RwLock::new(None),
            event_wake: tokio::sync::Notify::new(),
            inbox_wake: (0..channels).map(|_| tokio::sync::Notify::new()).collect(),
            unwoken: (0..channels).map(|_| AtomicBool::new(false)).collect(),
            ended: std::sync::atomic::AtomicBool::new(false),
            queued: AtomicUsize::new(0),
            direct: OnceLock::new(),
        };
        (shared, GameEnds { events, inbox })
    }

    pub(crate) fn emit(&self, event: Event) {
        let last = matches!(event, Event::Closed(_));
        let _ = self.events.send(event);
        self.event_wake.notify_one();
        if last {
            // Whoever awaits a message or an event is told there will be none.
            self.ended.store(true, Ordering::Release);
            for wake in std::iter::once(&self.event_wake).chain(&self.inbox_wake) {
                wake.notify_waiters();
                wake.notify_one();
            }
        }
    }

    /// Whether the session has ended (see [`Shared::ended`]).
    pub(crate) fn has_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Hands a message to the game; `false` (and the message dropped) when the channel's
    /// inbox already holds its limit because the game does not read it.
    pub(crate) fn deliver(&self, channel: usize, peer: PeerId, data: Bytes) -> bool {
        let (Some(tx), Some(queued)) = (self.inbox.get(channel), self.inbox_bytes.get(channel))
        else {
            return false;
        };
        let len = data.len();
        let admitted = queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                // One message is always let in, however large: the limit bounds a backlog.
                (q == 0 || q.saturating_add(len) <= self.inbox_limit).then(|| q.saturating_add(len))
            })
            .is_ok();
        if !admitted {
            return false;
        }
        if tx.send((peer, data)).is_err() {
            queued.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        if self.direct.get().is_some() {
            if let Some(unwoken) = self.unwoken.get(channel) {
                unwoken.store(true, Ordering::Release);
            }
        } else if let Some(wake) = self.inbox_wake.get(channel) {
            wake.notify_one();
        }
        true
    }

    /// Wakes the async readers of the channels that had deliveries since the last call
    /// (see [`Shared::unwoken`]).
    pub(crate) fn wake_readers(&self) {
        for (unwoken, wake) in self.unwoken.iter().zip(&self.inbox_wake) {
            if unwoken.swap(false, Ordering::AcqRel) {
                wake.notify_one();
            }
        }
    }

    /// The core applied `cmd` (see [`Shared::queued`]).
    pub(crate) fn applied(&self, cmd: &Command) {
        if cmd.orders_data() {
            let _ = self
                .queued
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                    Some(q.saturating_sub(1))
                });
        }
    }

    /// The game took a message of `len` bytes from `channel`'s inbox.
    pub(crate) fn taken(&self, channel: usize, len: usize) {
        if let Some(queued) = self.inbox_bytes.get(channel) {
            let _ = queued.fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                Some(q.saturating_sub(len))
            });
        }
    }
}

/// The network's side of a new session: what a shell (the native network thread, or the
/// in-memory network of `testing::TestNet`) drives.
pub(crate) struct NetworkSide {
    pub(crate) settings: Settings,
    /// The game's side of the bridge, which the core writes.
    pub(crate) shared: Arc<Shared>,
    /// The game's commands.
    pub(crate) commands: tokio::sync::mpsc::UnboundedReceiver<Command>,
    /// Where the session's identity goes once it is known.
    pub(crate) ident: crossbeam_channel::Sender<(PeerId, PlayerId)>,
}

/// What the game asks of the network thread.
// Voice and video each use their own variants.
#[cfg_attr(not(all(feature = "voice", feature = "video")), allow(dead_code))]
pub(crate) enum Command {
    Send {
        to: Option<PeerId>,
        channel: usize,
        payload: Bytes,
    },
    /// An encoded voice frame for every connected peer.
    Media(MediaFrame),
    /// Where incoming audio goes from now on (replaces an earlier sink).
    AttachMedia(crossbeam_channel::Sender<MediaIn>),
    /// The RTP packets of one video frame, for every connected peer or for one.
    Video {
        packets: Vec<MediaFrame>,
        to: Option<PeerId>,
    },
    /// Where incoming video goes from now on (replaces an earlier sink).
    AttachVideo(crossbeam_channel::Sender<MediaIn>),
    /// Ask a peer for a video keyframe.
    KeyframeRequest {
        peer: PeerId,
    },
    /// Drop this fraction of datagrams from now on (testing).
    SimulatedLoss(f64),
    /// Put what is received from one peer through this simulated path from now on
    /// (testing).
    SimulatedNetworkFrom {
        peer: PeerId,
        conditions: NetworkConditions,
    },
    /// Put what is received through this simulated path from now on (testing).
    SimulatedNetwork(NetworkConditions),
    /// Tell `peer` how much of its audio we lose.
    VoiceLoss {
        peer: PeerId,
        percent: u8,
    },
    /// Close the connection to a peer and refuse it from now on.
    Disconnect {
        peer: PeerId,
    },
    /// An RTP packet as given on the audio or video track (adversarial testing).
    #[cfg(feature = "fuzzing")]
    RawRtp {
        to: PeerId,
        kind: Kind,
        payload_type: Option<u8>,
        frame: MediaFrame,
    },
    /// Read nothing but ICE checks from now on, or read again (adversarial testing).
    #[cfg(feature = "fuzzing")]
    Deaf(bool),
    /// Unframed bytes on data channel `index` (adversarial testing).
    #[cfg(feature = "fuzzing")]
    Raw {
        to: PeerId,
        index: usize,
        payload: Bytes,
    },
    Close,
}

impl Command {
    /// Whether game data sent after this command must reach the core after it: every
    /// command of the session itself (a send, a disconnect, simulated loss…); not the
    /// media pipelines' frames, which have tracks of their own.
    pub(crate) fn orders_data(&self) -> bool {
        !matches!(
            self,
            Command::Media(_)
                | Command::Video { .. }
                | Command::KeyframeRequest { .. }
                | Command::VoiceLoss { .. }
        )
    }
}

/// The game's way down to the core: the command queue, and the direct path for data.
#[derive(Clone)]
pub(crate) struct Commands {
    tx: tokio::sync::mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
}

impl Commands {
    pub(crate) fn new(
        tx: tokio::sync::mpsc::UnboundedSender<Command>,
        shared: Arc<Shared>,
    ) -> Self {
        Self { tx, shared }
    }

    /// Queues `cmd` for the network thread; false once the session is closed.
    pub(crate) fn send(&self, cmd: Command) -> bool {
        let counted = cmd.orders_data();
        if counted {
            self.shared.queued.fetch_add(1, Ordering::AcqRel);
        }
        let sent = self.tx.send(cmd).is_ok();
        if !sent && counted {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
        }
        sent
    }

    /// Sends game data on `channel` of `kind`: an unreliable kind's on this thread when
    /// the shell can take it now (see [`DirectSend`]), everything else through the queue;
    /// false once the session is closed.
    ///
    /// Reliable data always takes the queue: a burst of reliable sends is where the
    /// network thread does best, sending them beside the acknowledgements they cause
    /// (sent directly, reliable 1 KiB throughput across processes fell by 5–13 % in
    /// `bench_vs_matchbox`), while an unreliable message — one per tick, where only
    /// latency counts — gains a thread hand-off.
    pub(crate) fn send_data(
        &self,
        to: Option<PeerId>,
        (channel, kind): (usize, ChannelKind),
        payload: Bytes,
    ) -> bool {
        let direct = self.shared.direct.get().filter(|_| !kind.is_reliable());
        let payload = match direct {
            Some(direct) => match direct.try_send(&self.shared.queued, to, channel, payload) {
                None => return true,
                Some(back) => back,
            },
            None => payload,
        };
        self.send(Command::Send {
            to,
            channel,
            payload,
        })
    }

    /// The queue alone, for a media pipeline (its frames are not ordered with data).
    pub(crate) fn media_sender(&self) -> tokio::sync::mpsc::UnboundedSender<Command> {
        self.tx.clone()
    }
}

/// A media pipeline's two ends of the network thread.
#[cfg_attr(not(any(feature = "voice", feature = "video")), allow(dead_code))]
pub(crate) struct MediaLink {
    pub(crate) cmd: tokio::sync::mpsc::UnboundedSender<Command>,
    pub(crate) incoming: crossbeam_channel::Receiver<MediaIn>,
}

// Voice and video each use their own methods.
#[cfg_attr(not(all(feature = "voice", feature = "video")), allow(dead_code))]
impl MediaLink {
    /// Queues an audio frame for every connected peer; false once the session is closed.
    pub(crate) fn send(&self, frame: MediaFrame) -> bool {
        self.cmd.send(Command::Media(frame)).is_ok()
    }

    /// Queues the RTP packets of one video frame for every connected peer, or for one
    /// peer only (`to`: a keyframe for a peer that asked); false once the session is closed.
    pub(crate) fn send_video(&self, packets: Vec<MediaFrame>, to: Option<PeerId>) -> bool {
        self.cmd.send(Command::Video { packets, to }).is_ok()
    }

    /// Asks `peer` for a keyframe (RTCP PLI); false once the session is closed.
    pub(crate) fn request_keyframe(&self, peer: PeerId) -> bool {
        self.cmd.send(Command::KeyframeRequest { peer }).is_ok()
    }

    /// A second handle on the same link (for the other voice thread).
    pub(crate) fn clone_sender(&self) -> MediaLink {
        MediaLink {
            cmd: self.cmd.clone(),
            incoming: self.incoming.clone(),
        }
    }

    /// Tells `peer` how much of its audio we lose.
    pub(crate) fn report_loss(&self, peer: PeerId, percent: u8) -> bool {
        self.cmd.send(Command::VoiceLoss { peer, percent }).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commands() -> (
        Commands,
        Arc<Shared>,
        tokio::sync::mpsc::UnboundedReceiver<Command>,
    ) {
        let (shared, _ends) = Shared::new(1, 1 << 20);
        let shared = Arc::new(shared);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Commands::new(tx, Arc::clone(&shared)), shared, rx)
    }

    const UNRELIABLE: (usize, ChannelKind) = (0, ChannelKind::Unreliable);

    fn queued(shared: &Shared) -> usize {
        shared.queued.load(Ordering::Acquire)
    }

    /// A direct path that takes everything, as a free core with nothing queued would.
    struct TakesAll;
    impl DirectSend for TakesAll {
        fn try_send(
            &self,
            queued: &AtomicUsize,
            _: Option<PeerId>,
            _: usize,
            payload: Bytes,
        ) -> Option<Bytes> {
            (queued.load(Ordering::Acquire) != 0).then_some(payload)
        }
    }

    #[test]
    fn the_session_s_commands_are_counted_until_applied_and_media_frames_are_not() {
        let (cmd, shared, mut rx) = commands();
        assert!(cmd.send(Command::Disconnect { peer: PeerId(7) }));
        assert!(cmd.send(Command::VoiceLoss {
            peer: PeerId(7),
            percent: 3
        }));
        assert_eq!(queued(&shared), 1, "the disconnect, not the loss report");
        while let Ok(applied) = rx.try_recv() {
            shared.applied(&applied);
        }
        assert_eq!(queued(&shared), 0);
    }

    #[test]
    fn data_goes_direct_only_when_nothing_the_game_queued_waits() {
        let (cmd, shared, mut rx) = commands();
        assert!(shared.direct.set(Box::new(TakesAll)).is_ok());
        assert!(cmd.send_data(None, UNRELIABLE, Bytes::from_static(b"first")));
        assert!(rx.try_recv().is_err(), "sent directly, not queued");

        assert!(cmd.send(Command::Disconnect { peer: PeerId(7) }));
        assert!(cmd.send_data(None, UNRELIABLE, Bytes::from_static(b"after")));
        assert_eq!(queued(&shared), 2, "queued behind the disconnect");
        let order: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|c| match c {
                Command::Disconnect { .. } => "disconnect",
                Command::Send { .. } => "send",
                _ => "other",
            })
            .collect();
        assert_eq!(order, ["disconnect", "send"]);
    }

    #[test]
    fn reliable_data_always_takes_the_queue() {
        let (cmd, shared, mut rx) = commands();
        assert!(shared.direct.set(Box::new(TakesAll)).is_ok());
        for kind in [ChannelKind::ReliableOrdered, ChannelKind::ReliableUnordered] {
            assert!(cmd.send_data(None, (0, kind), Bytes::from_static(b"event")));
            let queued = rx.try_recv();
            assert!(matches!(queued, Ok(Command::Send { .. })), "{kind:?}");
            if let Ok(applied) = queued {
                shared.applied(&applied);
            }
        }
        assert!(cmd.send_data(
            None,
            (0, ChannelKind::UnreliableSequenced),
            Bytes::from_static(b"state")
        ));
        assert!(rx.try_recv().is_err(), "sequenced is sent directly");
    }

    #[test]
    fn a_closed_queue_takes_nothing_and_counts_nothing() {
        let (cmd, shared, rx) = commands();
        drop(rx);
        assert!(!cmd.send(Command::Disconnect { peer: PeerId(7) }));
        assert!(!cmd.send_data(None, UNRELIABLE, Bytes::from_static(b"x")));
        assert_eq!(queued(&shared), 0);
    }
}
