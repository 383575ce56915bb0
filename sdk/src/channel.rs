//! Channel kinds and the framing each one adds on top of its data channel.
//!
//! Every peer declares the same ordered list of channels. Channel `i` is a pre-negotiated
//! WebRTC data channel with id `i` (no in-band handshake, so no extra round trip). Framing:
//!
//! | kind | SCTP | framing |
//! |---|---|---|
//! | unreliable | unordered, timed (see below) | none |
//! | unreliable sequenced | unordered, timed (see below) | `u32` sequence number; older than the newest seen is dropped |
//! | reliable ordered / unordered | reliable | 1-byte tag; messages above 16 KiB are split into fragments |
//!
//! Unreliable kinds are timed (SCTP partial reliability, `maxPacketLifeTime`): a message is
//! sent at once, retransmitted if lost while it is younger than the lifetime
//! ([`crate::SessionBuilder::unreliable_lifetime`], 500 ms by default), and dropped unsent
//! once older. Under loss SCTP's congestion window can stall for a retransmission timeout
//! (1 s or more); without a lifetime the state sent meanwhile would queue and arrive seconds
//! late, all at once.

use std::collections::{HashMap, VecDeque};

use bytes::{BufMut, Bytes, BytesMut};

/// How a channel delivers messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// Fire-and-forget: may be lost, duplicated never, reordered possibly. For inputs.
    Unreliable,
    /// Like unreliable, but a message older than the newest one received is dropped. For
    /// state snapshots, where only the latest matters.
    UnreliableSequenced,
    /// Every message arrives, in the order sent. For events and chat.
    ReliableOrdered,
    /// Every message arrives, in any order. For independent events.
    ReliableUnordered,
}

impl ChannelKind {
    /// The kind's stable name, as used in channel-list comparisons and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unreliable => "unreliable",
            Self::UnreliableSequenced => "unreliable_sequenced",
            Self::ReliableOrdered => "reliable_ordered",
            Self::ReliableUnordered => "reliable_unordered",
        }
    }

    /// Whether every message is delivered.
    pub fn is_reliable(self) -> bool {
        matches!(self, Self::ReliableOrdered | Self::ReliableUnordered)
    }

    pub(crate) fn ordered(self) -> bool {
        matches!(self, Self::ReliableOrdered)
    }

    /// The SCTP lifetime of this kind's messages in milliseconds (`None`: reliable), for a
    /// session whose unreliable lifetime is `lifetime` (clamped to 1..=65,535 ms).
    pub(crate) fn lifetime_ms(self, lifetime: std::time::Duration) -> Option<u16> {
        let ms = u16::try_from(lifetime.as_millis())
            .unwrap_or(u16::MAX)
            .max(1);
        (!self.is_reliable()).then_some(ms)
    }
}

impl std::fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A channel, by its index in the list given to the session builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Channel(pub usize);

/// The channel list as text, e.g. `unreliable_sequenced,reliable_ordered`. Peers compare
/// these at join; a mismatch is reported naming both lists.
pub(crate) fn describe(kinds: &[ChannelKind]) -> String {
    kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")
}

/// Payloads above this are sent as several fragments on reliable channels.
pub(crate) const FRAGMENT_SIZE: usize = 16 * 1024;
const TAG_WHOLE: u8 = 0;
const TAG_FRAGMENT: u8 = 1;
const FRAGMENT_HEADER: usize = 1 + 4 + 2 + 2;
/// The largest frame the wire contract has on any channel: a fragment's header and a full
/// body (a whole message's tag and body, or a sequence number and a 16 KiB payload, are
/// smaller). Advertised as the SCTP `max-message-size`, so a browser refuses a larger
/// message at `send` instead of sending what the contract does not take.
pub(crate) const MAX_FRAME: usize = FRAGMENT_HEADER + FRAGMENT_SIZE;
/// Partly received messages kept per channel at once; the oldest is dropped past this.
pub(crate) const MAX_PARTIALS: usize = 8;

/// Why a received frame was discarded. Counted in stats; never fatal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("frame too short for its header")]
    Truncated,
    #[error("unknown frame tag {0}")]
    UnknownTag(u8),
    #[error("fragment {index} of {count} is out of range")]
    BadFragment { index: u16, count: u16 },
    #[error("message would exceed the {0}-byte limit")]
    TooLarge(usize),
}

/// Frames a sequenced message.
pub(crate) fn encode_sequenced(seq: u32, payload: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(4 + payload.len());
    out.put_u32(seq);
    out.put_slice(payload);
    out
}

/// Splits a sequenced frame; `None` if it is too short.
pub(crate) fn decode_sequenced(frame: &[u8]) -> Option<(u32, &[u8])> {
    let (head, payload) = frame.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*head), payload))
}

/// Frames a reliable message: one frame, or fragments of at most [`FRAGMENT_SIZE`] bytes.
pub(crate) fn encode_reliable(msg_id: u32, payload: &[u8]) -> Vec<BytesMut> {
    if payload.len() <= FRAGMENT_SIZE {
        let mut out = BytesMut::with_capacity(1 + payload.len());
        out.put_u8(TAG_WHOLE);
        out.put_slice(payload);
        return vec![out];
    }
    let chunks: Vec<&[u8]> = payload.chunks(FRAGMENT_SIZE).collect();
    let count = u16::try_from(chunks.len()).unwrap_or(u16::MAX);
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut out = BytesMut::with_capacity(FRAGMENT_HEADER + chunk.len());
            out.put_u8(TAG_FRAGMENT);
            out.put_u32(msg_id);
            out.put_u16(u16::try_from(i).unwrap_or(u16::MAX));
            out.put_u16(count);
            out.put_slice(chunk);
            out
        })
        .collect()
}

/// Drops sequenced messages older than the newest one seen (with wrap-around).
#[derive(Debug, Default)]
pub(crate) struct SequenceFilter {
    newest: Option<u32>,
}

impl SequenceFilter {
    /// Whether a message with `seq` is newer than everything seen so far.
    pub(crate) fn accept(&mut self, seq: u32) -> bool {
        let newer = match self.newest {
            None => true,
            // Serial-number arithmetic: newer if ahead by less than half the space.
            Some(newest) => (seq.wrapping_sub(newest) as i32) > 0,
        };
        if newer {
            self.newest = Some(seq);
        }
        newer
    }
}

struct Partial {
    parts: Vec<Option<Bytes>>,
    received: usize,
    bytes: usize,
}

/// Reassembles reliable messages from frames, with bounded memory.
pub(crate) struct Reassembler {
    max_message: usize,
    partials: HashMap<u32, Partial>,
    order: VecDeque<u32>,
    /// Partial messages dropped to make room (oldest first), not yet counted by the caller.
    evicted: u64,
}

impl Reassembler {
    pub(crate) fn new(max_message: usize) -> Self {
        Self {
            max_message,
            partials: HashMap::new(),
            order: VecDeque::new(),
            evicted: 0,
        }
    }

    /// How many unfinished messages were dropped to make room since the last call.
    pub(crate) fn take_evicted(&mut self) -> u64 {
        std::mem::take(&mut self.evicted)
    }

    /// Partial messages held, and their bytes so far.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn held(&self) -> (usize, usize) {
        (
            self.partials.len(),
            self.partials.values().map(|p| p.bytes).sum(),
        )
    }

    /// Takes one frame; returns a complete message when one is finished.
    pub(crate) fn push(&mut self, frame: Bytes) -> Result<Option<Bytes>, FrameError> {
        let Some((&tag, _)) = frame.split_first() else {
            return Err(FrameError::Truncated);
        };
        match tag {
            TAG_WHOLE => Ok(Some(frame.slice(1..))),
            TAG_FRAGMENT => self.push_fragment(frame),
            other => Err(FrameError::UnknownTag(other)),
        }
    }

    fn push_fragment(&mut self, frame: Bytes) -> Result<Option<Bytes>, FrameError> {
        let header = frame.get(1..FRAGMENT_HEADER).ok_or(FrameError::Truncated)?;
        let (id, rest) = header
            .split_first_chunk::<4>()
            .ok_or(FrameError::Truncated)?;
        let (index, rest) = rest.split_first_chunk::<2>().ok_or(FrameError::Truncated)?;
        let count = rest.first_chunk::<2>().ok_or(FrameError::Truncated)?;
        let (id, index, count) = (
            u32::from_be_bytes(*id),
            u16::from_be_bytes(*index),
            u16::from_be_bytes(*count),
        );
        let max_count = self.max_message.div_ceil(FRAGMENT_SIZE).max(1);
        if count < 2 || index >= count || usize::from(count) > max_count {
            return Err(FrameError::BadFragment { index, count });
        }
        let body = frame.slice(FRAGMENT_HEADER..);
        if !self.partials.contains_key(&id) {
            if self.order.len() >= MAX_PARTIALS
                && let Some(oldest) = self.order.pop_front()
            {
                self.partials.remove(&oldest);
                self.evicted += 1;
            }
            self.order.push_back(id);
            self.partials.insert(
                id,
                Partial {
                    parts: vec![None; usize::from(count)],
                    received: 0,
                    bytes: 0,
                },
            );
        }
        let max_message = self.max_message;
        let Some(partial) = self.partials.get_mut(&id) else {
            return Ok(None);
        };
        if partial.parts.len() != usize::from(count) {
            return Err(FrameError::BadFragment { index, count });
        }
        if let Some(slot) = partial.parts.get_mut(usize::from(index))
            && slot.is_none()
        {
            partial.bytes += body.len();
            partial.received += 1;
            *slot = Some(body);
        }
        if partial.bytes > max_message {
            self.forget(id);
            return Err(FrameError::TooLarge(max_message));
        }
        if partial.received < partial.parts.len() {
            return Ok(None);
        }
        let Some(done) = self.forget(id) else {
            return Ok(None);
        };
        let mut out = BytesMut::with_capacity(done.bytes);
        for part in done.parts.into_iter().flatten() {
            out.put_slice(&part);
        }
        Ok(Some(out.freeze()))
    }

    fn forget(&mut self, id: u32) -> Option<Partial> {
        self.order.retain(|x| *x != id);
        self.partials.remove(&id)
    }
}

/// What became of a received frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Received {
    /// A whole message, for the game.
    Message(Bytes),
    /// A part of a reliable message; more is to come.
    Incomplete,
    /// A sequenced message older than the newest one already delivered: dropped.
    Stale,
    /// A frame that cannot be decoded: dropped, and counted as the peer's misbehaviour.
    Malformed(FrameError),
    /// No such channel.
    NoChannel,
}

/// One peer's framing for every channel of a session, as a component with its own state:
/// what goes out (sequence numbers, reliable message ids) and what comes in (the stale
/// filter of each sequenced channel, the reassembly of each reliable one).
pub(crate) struct Framing {
    kinds: Vec<ChannelKind>,
    seq_out: Vec<u32>,
    next_msg_id: u32,
    filters: Vec<SequenceFilter>,
    reassembly: Vec<Reassembler>,
}

impl Framing {
    /// Framing for channels of `kinds`, reliable messages up to `max_message` bytes.
    pub(crate) fn new(kinds: &[ChannelKind], max_message: usize) -> Self {
        let n = kinds.len();
        Self {
            kinds: kinds.to_vec(),
            seq_out: vec![0; n],
            next_msg_id: 0,
            filters: (0..n).map(|_| SequenceFilter::default()).collect(),
            reassembly: (0..n).map(|_| Reassembler::new(max_message)).collect(),
        }
    }

    /// The frames that carry `payload` on channel `index` (several for a large reliable
    /// message); `None` for no such channel.
    pub(crate) fn frame(&mut self, index: usize, payload: &[u8]) -> Option<Vec<BytesMut>> {
        match self.kinds.get(index)? {
            ChannelKind::Unreliable => Some(vec![BytesMut::from(payload)]),
            ChannelKind::UnreliableSequenced => {
                let seq = self.seq_out.get_mut(index)?;
                *seq = seq.wrapping_add(1);
                Some(vec![encode_sequenced(*seq, payload)])
            }
            ChannelKind::ReliableOrdered | ChannelKind::ReliableUnordered => {
                self.next_msg_id = self.next_msg_id.wrapping_add(1);
                Some(encode_reliable(self.next_msg_id, payload))
            }
        }
    }

    /// Takes a frame received on channel `index`. Also returns how many unfinished reliable
    /// messages were dropped to make room (oldest first, at most [`MAX_PARTIALS`] kept).
    pub(crate) fn receive(&mut self, index: usize, frame: Bytes) -> (Received, u64) {
        let Some(kind) = self.kinds.get(index) else {
            return (Received::NoChannel, 0);
        };
        match kind {
            ChannelKind::Unreliable => (Received::Message(frame), 0),
            ChannelKind::UnreliableSequenced => {
                let Some((seq, _)) = decode_sequenced(&frame) else {
                    return (Received::Malformed(FrameError::Truncated), 0);
                };
                let fresh = self.filters.get_mut(index).is_some_and(|f| f.accept(seq));
                if fresh {
                    (Received::Message(frame.slice(4..)), 0)
                } else {
                    (Received::Stale, 0)
                }
            }
            ChannelKind::ReliableOrdered | ChannelKind::ReliableUnordered => {
                let Some(r) = self.reassembly.get_mut(index) else {
                    return (Received::NoChannel, 0);
                };
                let result = r.push(frame);
                let evicted = r.take_evicted();
                let received = match result {
                    Ok(Some(message)) => Received::Message(message),
                    Ok(None) => Received::Incomplete,
                    Err(e) => Received::Malformed(e),
                };
                (received, evicted)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds() -> Vec<ChannelKind> {
        vec![
            ChannelKind::Unreliable,
            ChannelKind::UnreliableSequenced,
            ChannelKind::ReliableOrdered,
        ]
    }

    /// Sends `payload` on `index` from one framing into another; what came out.
    fn relay(from: &mut Framing, to: &mut Framing, index: usize, payload: &[u8]) -> Vec<Received> {
        from.frame(index, payload)
            .unwrap()
            .into_iter()
            .map(|f| to.receive(index, f.freeze()).0)
            .collect()
    }

    #[test]
    fn framing_carries_each_kind_across_and_refuses_unknown_channels() {
        let (mut a, mut b) = (
            Framing::new(&kinds(), 1 << 20),
            Framing::new(&kinds(), 1 << 20),
        );
        for index in 0..3 {
            let got = relay(&mut a, &mut b, index, b"state");
            assert_eq!(got, vec![Received::Message(Bytes::from_static(b"state"))]);
        }
        assert!(a.frame(3, b"x").is_none());
        assert_eq!(
            b.receive(3, Bytes::from_static(b"x")).0,
            Received::NoChannel
        );
    }

    #[test]
    fn framing_drops_a_sequenced_message_older_than_the_newest() {
        let (mut a, mut b) = (
            Framing::new(&kinds(), 1 << 20),
            Framing::new(&kinds(), 1 << 20),
        );
        let old = a.frame(1, b"old").unwrap().remove(0).freeze();
        let new = a.frame(1, b"new").unwrap().remove(0).freeze();
        assert_eq!(
            b.receive(1, new).0,
            Received::Message(Bytes::from_static(b"new"))
        );
        assert_eq!(b.receive(1, old).0, Received::Stale);
        assert!(matches!(
            b.receive(1, Bytes::from_static(b"ab")).0,
            Received::Malformed(_)
        ));
    }

    #[test]
    fn framing_splits_a_large_reliable_message_and_puts_it_back_together() {
        let (mut a, mut b) = (
            Framing::new(&kinds(), 1 << 20),
            Framing::new(&kinds(), 1 << 20),
        );
        let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let got = relay(&mut a, &mut b, 2, &big);
        assert_eq!(got.len(), big.len().div_ceil(FRAGMENT_SIZE));
        assert!(
            got[..got.len() - 1]
                .iter()
                .all(|r| *r == Received::Incomplete)
        );
        assert_eq!(got.last(), Some(&Received::Message(Bytes::from(big))));
    }

    #[test]
    fn framing_counts_unfinished_reliable_messages_it_drops() {
        let (mut a, mut b) = (
            Framing::new(&kinds(), 1 << 20),
            Framing::new(&kinds(), 1 << 20),
        );
        let big = vec![7u8; 3 * FRAGMENT_SIZE];
        let mut dropped = 0;
        for _ in 0..MAX_PARTIALS + 3 {
            // Only the first fragment of each message arrives.
            let first = a.frame(2, &big).unwrap().remove(0).freeze();
            let (got, evicted) = b.receive(2, first);
            assert_eq!(got, Received::Incomplete);
            dropped += evicted;
        }
        assert_eq!(dropped, 3);
    }

    #[test]
    fn sequence_filter_drops_stale_and_survives_wraparound() {
        let mut f = SequenceFilter::default();
        assert!(f.accept(10));
        assert!(!f.accept(9));
        assert!(!f.accept(10));
        assert!(f.accept(12));
        assert!(!f.accept(11));
        let mut w = SequenceFilter::default();
        assert!(w.accept(u32::MAX - 1));
        assert!(w.accept(u32::MAX));
        assert!(w.accept(0));
        assert!(w.accept(1));
        assert!(!w.accept(u32::MAX));
    }

    #[test]
    fn reliable_fragments_reassemble_in_any_order() {
        let payload: Vec<u8> = (0..(FRAGMENT_SIZE * 3 + 100))
            .map(|i| (i % 251) as u8)
            .collect();
        let frames = encode_reliable(7, &payload);
        assert_eq!(frames.len(), 4);
        let mut r = Reassembler::new(1 << 20);
        let order = [2usize, 0, 3, 1];
        let mut out = None;
        for (n, i) in order.iter().enumerate() {
            let got = r.push(frames[*i].clone().freeze()).unwrap();
            if n < 3 {
                assert!(got.is_none());
            } else {
                out = got;
            }
        }
        assert_eq!(out.as_deref(), Some(payload.as_slice()));
        // A small message is one frame.
        let small = encode_reliable(8, b"hi");
        assert_eq!(small.len(), 1);
        assert_eq!(
            r.push(small[0].clone().freeze()).unwrap().as_deref(),
            Some(&b"hi"[..])
        );
    }

    #[test]
    fn hostile_frames_are_errors_not_panics() {
        let mut r = Reassembler::new(64 * 1024);
        assert_eq!(r.push(Bytes::new()), Err(FrameError::Truncated));
        assert_eq!(
            r.push(Bytes::from_static(&[9, 1, 2])),
            Err(FrameError::UnknownTag(9))
        );
        assert_eq!(
            r.push(Bytes::from_static(&[1, 0, 0])),
            Err(FrameError::Truncated)
        );
        // index >= count, count of 1, and more fragments than the size limit allows.
        for (index, count) in [(3u16, 2u16), (0, 1), (0, 500)] {
            let mut f = vec![1u8, 0, 0, 0, 1];
            f.extend_from_slice(&index.to_be_bytes());
            f.extend_from_slice(&count.to_be_bytes());
            f.push(0);
            assert!(matches!(
                r.push(Bytes::from(f)),
                Err(FrameError::BadFragment { .. })
            ));
        }
        // Partials are bounded: many unfinished messages never grow memory without limit.
        for id in 0..100u32 {
            let frames = encode_reliable(id, &vec![0u8; FRAGMENT_SIZE + 1]);
            assert!(r.push(frames[0].clone().freeze()).unwrap().is_none());
        }
        assert!(r.partials.len() <= MAX_PARTIALS);
        assert_eq!(decode_sequenced(&[1, 2]), None);
    }
}
