//! Per-peer statistics, refreshed by the network thread several times a second.

use std::net::SocketAddr;
use std::time::Duration;

use crate::event::{CandidateKind, PathKind, RelayTransport};

/// What the session knows about its connection to one peer.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct PeerStats {
    /// All channels are open.
    pub connected: bool,
    /// How the peer is reached, once connected.
    pub path: Option<PathKind>,
    /// Round-trip time, smoothed (from the session's own pings, 2 per second).
    pub rtt: Option<Duration>,
    /// The latest round-trip sample.
    pub rtt_last: Option<Duration>,
    /// Pings sent, and answered, since connecting: their difference is loss (both ways).
    pub pings_sent: u64,
    /// Pings answered.
    pub pongs_received: u64,
    /// Fraction of the last 20 pings (10 s) not answered.
    pub loss: f64,
    /// Datagrams sent to and received from this peer (all protocols: ICE, DTLS, SCTP).
    pub packets_sent: u64,
    /// Datagrams received from this peer.
    pub packets_received: u64,
    /// Bytes sent to this peer, UDP payload.
    pub bytes_sent: u64,
    /// Bytes received from this peer, UDP payload.
    pub bytes_received: u64,
    /// Application messages sent.
    pub messages_sent: u64,
    /// Application messages received (after reassembly and sequencing).
    pub messages_received: u64,
    /// Unreliable messages dropped because the send buffer was full.
    pub dropped_congested: u64,
    /// Unreliable messages dropped because nothing had been heard from this peer for
    /// 750 ms (its path looks cut): sent into a cut, they would hold the path back once it
    /// heals, behind SCTP's retransmission timer. Sending resumes when the peer is heard.
    pub dropped_silent: u64,
    /// Sequenced messages dropped on arrival because a newer one had arrived.
    pub dropped_stale: u64,
    /// Frames that could not be decoded (a misbehaving peer): bad reliable fragments,
    /// sequenced frames without their header, control frames of no known kind.
    pub frame_errors: u64,
    /// Unfinished reliable messages dropped, oldest first, because the peer had more in
    /// flight than a channel holds (8): a peer that starts messages and never ends them.
    pub partials_dropped: u64,
    /// Messages from this peer dropped on arrival because the channel's inbox was full: the
    /// game did not read it (see [`crate::SessionBuilder::inbox_limit`]).
    pub dropped_unread: u64,
    /// Reliable messages not sent because this peer's send buffer was full
    /// ([`crate::Error::SendBufferFull`]).
    pub refused_send_buffer_full: u64,
    /// Bytes queued for this peer and not yet acknowledged (all channels).
    pub send_queue_bytes: usize,
    /// The selected local and remote candidate addresses.
    pub selected_pair: Option<(SocketAddr, SocketAddr)>,
    /// The selected pair's candidate kinds, local and remote.
    pub selected_pair_types: Option<(CandidateKind, CandidateKind)>,
    /// How our end of a relayed path reaches its TURN server (`None` when the selected pair
    /// does not use our relay).
    pub relay_transport: Option<RelayTransport>,
    /// The candidate kinds this peer signaled to us, each once, in arrival order: from a
    /// relay-only peer, only [`CandidateKind::Relay`] (its own addresses never reach us).
    pub remote_candidate_types: Vec<CandidateKind>,
    /// Voice RTP packets sent to this peer.
    pub voice_packets_sent: u64,
    /// Voice RTP packets received from this peer.
    pub voice_packets_received: u64,
    /// Video RTP packets sent to this peer.
    pub video_packets_sent: u64,
    /// Video RTP packets received from this peer.
    pub video_packets_received: u64,
    /// ICE restarts we started with this peer (after it fell silent, or our network
    /// changed).
    pub ice_restarts: u64,
    /// How long nothing has been heard from the peer on its channels (messages or the
    /// session's pings, twice a second), as of the latest refresh (every 250 ms). Normally
    /// under half a second; a peer whose process died grows it from then on, long before
    /// the silence timeout and ICE restarts give it up. Layers that must react fast to a
    /// lost peer (the replicon backend's hand-over) read it.
    pub silent_for: Duration,
}
