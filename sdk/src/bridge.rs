//! The bridge between the game's threads and the network thread. Down: [`Command`]s, from
//! the session and from the media pipelines (through [`MediaLink`]). Up: [`Shared`], the
//! event queue, one inbox per channel (bounded in bytes), the stats and lobby snapshots,
//! and the wake-ups for async readers; the network thread fills it and [`crate::Session`]
//! drains it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use squadlink_protocol::{PeerId, PlayerId};

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
    /// The session has ended (its `Closed` event is out): nothing more will arrive, so
    /// an `await` on an empty queue returns `None` instead of waiting forever.
    pub(crate) ended: std::sync::atomic::AtomicBool,
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
            ended: std::sync::atomic::AtomicBool::new(false),
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
        if let Some(wake) = self.inbox_wake.get(channel) {
            wake.notify_one();
        }
        true
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
