//! VP8 in RTP (RFC 7741): splitting a frame into packets with the payload descriptor, and
//! putting frames back together on the receiving side, with loss detection.
//!
//! We send a 4-byte descriptor: X=1, S on a frame's first packet, PID 0, then I=1 with a
//! 15-bit picture ID (the frame counter). The receiver reads any valid descriptor (L, T, K
//! and 7-bit picture IDs too), as a browser might send them.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};

/// RTP payload bytes per packet at most (descriptor included): well under a 1200-byte MTU
/// with the RTP and SRTP overhead.
pub(crate) const MAX_PAYLOAD: usize = 1100;

/// One packet's share of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Packet {
    pub(crate) payload: Bytes,
    /// Last packet of the frame (the RTP marker bit).
    pub(crate) marker: bool,
}

/// Splits one VP8 frame into RTP payloads, each with a descriptor carrying `picture_id`
/// (15 bits used).
pub(crate) fn packetize(frame: &[u8], picture_id: u16) -> Vec<Packet> {
    const DESCRIPTOR: usize = 4;
    let chunk = MAX_PAYLOAD - DESCRIPTOR;
    let count = frame.len().div_ceil(chunk).max(1);
    let pid = picture_id & 0x7fff;
    let mut out = Vec::with_capacity(count);
    for (i, part) in frame.chunks(chunk).enumerate() {
        let mut payload = BytesMut::with_capacity(DESCRIPTOR + part.len());
        // X (extension present), S (start of partition 0) on the first packet, PID 0.
        payload.put_u8(0x80 | if i == 0 { 0x10 } else { 0 });
        // I: a picture ID follows.
        payload.put_u8(0x80);
        // M: 15-bit picture ID.
        payload.put_u16(0x8000 | pid);
        payload.put_slice(part);
        out.push(Packet {
            payload: payload.freeze(),
            marker: i + 1 == count,
        });
    }
    out
}

/// A parsed payload descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Descriptor {
    /// Start of a VP8 partition.
    pub(crate) start: bool,
    /// Partition index.
    pub(crate) partition: u8,
    /// Picture ID, when present (7 or 15 bits).
    pub(crate) picture_id: Option<u16>,
    /// Bytes taken by the descriptor.
    pub(crate) len: usize,
}

/// Reads the payload descriptor at the front of a VP8 RTP payload.
pub(crate) fn parse_descriptor(payload: &[u8]) -> Option<Descriptor> {
    let first = *payload.first()?;
    let mut at = 1;
    let mut picture_id = None;
    if first & 0x80 != 0 {
        let ext = *payload.get(at)?;
        at += 1;
        if ext & 0x80 != 0 {
            let b = *payload.get(at)?;
            at += 1;
            if b & 0x80 != 0 {
                let lo = *payload.get(at)?;
                at += 1;
                picture_id = Some((u16::from(b & 0x7f) << 8) | u16::from(lo));
            } else {
                picture_id = Some(u16::from(b));
            }
        }
        if ext & 0x40 != 0 {
            // TL0PICIDX.
            payload.get(at)?;
            at += 1;
        }
        if ext & 0x30 != 0 {
            // TID / Y / KEYIDX.
            payload.get(at)?;
            at += 1;
        }
    }
    if at >= payload.len() {
        return None;
    }
    Some(Descriptor {
        start: first & 0x10 != 0,
        partition: first & 0x0f,
        picture_id,
        len: at,
    })
}

/// Whether a VP8 frame (its first bytes) is a keyframe: bit 0 of the frame tag is 0.
pub(crate) fn is_keyframe(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 0x01 == 0)
}

/// A frame put back together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assembled {
    pub(crate) data: Vec<u8>,
    pub(crate) timestamp: u32,
    /// Picture ID, extended past its wrap-around (the sender's frame counter).
    pub(crate) picture_id: Option<u64>,
    pub(crate) keyframe: bool,
}

/// What came of a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Nothing complete yet.
    Pending,
    /// A frame is complete (and decodable: after a loss, only from the next keyframe on).
    Frame(Assembled),
    /// Packets were lost: frames are skipped until a keyframe; ask the sender for one.
    NeedKeyframe,
}

/// Packets of frames in flight held at most.
pub(crate) const MAX_PENDING: usize = 512;

/// Reassembles one peer's VP8 frames from RTP packets (reordering within a frame allowed).
#[derive(Debug, Default)]
pub(crate) struct Assembler {
    /// Packets by extended sequence number: (timestamp, marker, payload).
    pending: BTreeMap<i64, (u32, bool, Bytes)>,
    /// The last sequence number seen, and its extended value.
    last_seq: Option<(u16, i64)>,
    /// Extended sequence number of the last packet of the last frame handed out (or skipped).
    done_through: Option<i64>,
    /// After a loss: nothing is handed out until a keyframe starts.
    need_keyframe: bool,
    /// Picture ID extension.
    last_pid: Option<(u16, u64)>,
    /// Frames given up for lost packets.
    pub(crate) frames_lost: u64,
}

impl Assembler {
    /// Packets held now (at most [`MAX_PENDING`]).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn held(&self) -> usize {
        self.pending.len()
    }

    fn extend_seq(&mut self, seq: u16) -> i64 {
        match self.last_seq {
            None => {
                self.last_seq = Some((seq, i64::from(seq)));
                i64::from(seq)
            }
            Some((last, ext)) => {
                let value = ext + i64::from(seq.wrapping_sub(last) as i16);
                if value > ext {
                    self.last_seq = Some((seq, value));
                }
                value
            }
        }
    }

    fn extend_pid(&mut self, pid: u16) -> u64 {
        match self.last_pid {
            None => {
                self.last_pid = Some((pid, u64::from(pid)));
                u64::from(pid)
            }
            Some((last, ext)) => {
                // 15-bit wrap-around.
                let delta = i64::from(pid.wrapping_sub(last) & 0x7fff);
                let delta = if delta >= 0x4000 {
                    delta - 0x8000
                } else {
                    delta
                };
                let value = (ext as i64 + delta).max(0) as u64;
                if delta > 0 {
                    self.last_pid = Some((pid, value));
                }
                value
            }
        }
    }

    /// Takes in one packet; returns what became of it.
    pub(crate) fn push(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: Bytes,
    ) -> Outcome {
        let ext = self.extend_seq(seq);
        if self.done_through.is_some_and(|d| ext <= d) {
            return Outcome::Pending; // late or repeated
        }
        self.pending.insert(ext, (timestamp, marker, payload));
        while self.pending.len() > MAX_PENDING {
            self.pending.pop_first();
        }
        self.try_complete()
    }

    /// The last sequence number of the frame whose first packet is `first`, if that frame
    /// is complete: it starts a frame (S bit, partition 0), and its packets are consecutive,
    /// share a timestamp and end in a marker.
    fn complete_from(&self, first: i64) -> Option<i64> {
        let (ts, _, payload) = self.pending.get(&first)?;
        if !parse_descriptor(payload).is_some_and(|d| d.start && d.partition == 0) {
            return None;
        }
        for (expected, (&s, (t, marker, _))) in (first..).zip(self.pending.range(first..)) {
            if s != expected || t != ts {
                return None;
            }
            if *marker {
                return Some(s);
            }
        }
        None
    }

    /// Whether a frame newer than the one with timestamp `ts` is complete (then that one,
    /// still incomplete, never will be).
    fn newer_frame_complete(&self, ts: u32) -> bool {
        self.pending
            .iter()
            .filter(|(_, (t, _, _))| *t != ts)
            .any(|(&s, _)| self.complete_from(s).is_some())
    }

    fn try_complete(&mut self) -> Outcome {
        let mut lost = false;
        while let Some((&first, (ts, _, _))) = self.pending.first_key_value() {
            let ts = *ts;
            if let Some(last) = self.complete_from(first) {
                let gap_before = self.done_through.is_some_and(|d| first != d + 1);
                let Some(frame) = self.take(first, last) else {
                    lost = true;
                    continue;
                };
                if gap_before {
                    self.need_keyframe = true;
                }
                if self.need_keyframe && !frame.keyframe {
                    // Decoding it would show garbage: it refers to a frame we lost.
                    self.frames_lost += 1;
                    lost = true;
                    continue;
                }
                self.need_keyframe = false;
                return Outcome::Frame(frame);
            }
            if !self.newer_frame_complete(ts) {
                break; // its missing packets may still come
            }
            self.drop_frame(ts);
            self.frames_lost += 1;
            self.need_keyframe = true;
            lost = true;
        }
        if lost {
            Outcome::NeedKeyframe
        } else {
            Outcome::Pending
        }
    }

    /// Removes packets `first..=last` and joins their VP8 data.
    fn take(&mut self, first: i64, last: i64) -> Option<Assembled> {
        let mut data = Vec::new();
        let mut picture_id = None;
        let mut timestamp = 0;
        let mut ok = true;
        for s in first..=last {
            let Some((ts, _, payload)) = self.pending.remove(&s) else {
                ok = false;
                continue;
            };
            timestamp = ts;
            match parse_descriptor(&payload) {
                Some(d) => {
                    if s == first {
                        picture_id = d.picture_id;
                    }
                    data.extend_from_slice(payload.get(d.len..).unwrap_or(&[]));
                }
                None => ok = false,
            }
        }
        self.done_through = Some(last);
        if !ok || data.is_empty() {
            self.frames_lost += 1;
            self.need_keyframe = true;
            return None;
        }
        let picture_id = picture_id.map(|p| self.extend_pid(p));
        Some(Assembled {
            keyframe: is_keyframe(&data),
            data,
            timestamp,
            picture_id,
        })
    }

    /// Drops the oldest pending packets while they belong to the frame with this timestamp.
    fn drop_frame(&mut self, ts: u32) {
        while let Some((&s, (t, _, _))) = self.pending.first_key_value() {
            if *t != ts {
                break;
            }
            self.done_through = Some(s);
            self.pending.pop_first();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake VP8 frame: the first byte is the frame tag (bit 0 clear = keyframe).
    fn frame(len: usize, key: bool, fill: u8) -> Vec<u8> {
        let mut f = vec![fill; len];
        if let Some(b) = f.first_mut() {
            *b = if key { 0x10 } else { 0x11 };
        }
        f
    }

    fn feed(asm: &mut Assembler, seq0: u16, ts: u32, pid: u16, data: &[u8]) -> Vec<Outcome> {
        packetize(data, pid)
            .into_iter()
            .enumerate()
            .map(|(i, p)| asm.push(seq0.wrapping_add(i as u16), ts, p.marker, p.payload))
            .collect()
    }

    #[test]
    fn a_frame_splits_and_reassembles() {
        let data = frame(3000, true, 7);
        let packets = packetize(&data, 300);
        assert_eq!(packets.len(), 3);
        assert!(packets.iter().all(|p| p.payload.len() <= MAX_PAYLOAD));
        assert_eq!(
            packets.iter().map(|p| p.marker).collect::<Vec<_>>(),
            [false, false, true]
        );
        let d = parse_descriptor(&packets[0].payload).unwrap();
        assert!(d.start);
        assert_eq!(d.picture_id, Some(300));
        assert!(!parse_descriptor(&packets[1].payload).unwrap().start);
        let mut asm = Assembler::default();
        let out = feed(&mut asm, 10, 1000, 300, &data);
        assert_eq!(out[..2], [Outcome::Pending, Outcome::Pending]);
        let Outcome::Frame(a) = &out[2] else {
            panic!("{out:?}")
        };
        assert_eq!(a.data, data);
        assert!(a.keyframe);
        assert_eq!(a.picture_id, Some(300));
        assert_eq!(a.timestamp, 1000);
    }

    #[test]
    fn reordered_packets_within_a_frame_still_complete() {
        let data = frame(2500, true, 1);
        let packets = packetize(&data, 1);
        let mut asm = Assembler::default();
        assert_eq!(
            asm.push(2, 5, packets[2].marker, packets[2].payload.clone()),
            Outcome::Pending
        );
        assert_eq!(
            asm.push(0, 5, packets[0].marker, packets[0].payload.clone()),
            Outcome::Pending
        );
        let out = asm.push(1, 5, packets[1].marker, packets[1].payload.clone());
        assert!(
            matches!(out, Outcome::Frame(ref a) if a.data == data),
            "{out:?}"
        );
    }

    #[test]
    fn a_lost_packet_skips_frames_until_a_keyframe() {
        let mut asm = Assembler::default();
        let key = frame(2000, true, 1);
        assert!(matches!(
            feed(&mut asm, 0, 0, 0, &key).last(),
            Some(Outcome::Frame(_))
        ));
        // Frame 2 loses its second packet (seq 3).
        let delta = frame(2000, false, 2);
        let p = packetize(&delta, 1);
        assert_eq!(
            asm.push(2, 90, false, p[0].payload.clone()),
            Outcome::Pending
        );
        // Frame 3 arrives whole: frame 2 is given up, and frame 3 (a delta) is not decodable.
        let outs = feed(&mut asm, 4, 180, 2, &frame(500, false, 3));
        assert!(outs.contains(&Outcome::NeedKeyframe), "{outs:?}");
        assert!(!outs.iter().any(|o| matches!(o, Outcome::Frame(_))));
        // A keyframe heals it.
        let outs = feed(&mut asm, 5, 270, 3, &frame(700, true, 4));
        assert!(
            matches!(outs.last(), Some(Outcome::Frame(a)) if a.keyframe && a.picture_id == Some(3))
        );
        assert!(asm.frames_lost >= 2);
    }

    #[test]
    fn a_lost_first_packet_is_noticed() {
        let mut asm = Assembler::default();
        assert!(matches!(
            feed(&mut asm, 0, 0, 0, &frame(100, true, 1)).last(),
            Some(Outcome::Frame(_))
        ));
        // Frame at seq 1..=2 loses seq 1 (its start); seq 2 is its marker. It may yet come,
        // until the next frame is complete.
        let p = packetize(&frame(1500, false, 2), 1);
        assert_eq!(p.len(), 2);
        assert_eq!(
            asm.push(2, 90, true, p[1].payload.clone()),
            Outcome::Pending
        );
        let outs = feed(&mut asm, 3, 180, 2, &frame(100, false, 3));
        assert_eq!(outs, [Outcome::NeedKeyframe]);
    }

    #[test]
    fn sequence_numbers_and_picture_ids_wrap() {
        let mut asm = Assembler::default();
        let mut seq = 65_530u16;
        let mut pid = 0x7ffd_u16;
        let mut ids = Vec::new();
        for i in 0..8u32 {
            let data = frame(1500, i == 0, i as u8);
            for o in feed(&mut asm, seq, i * 6000, pid, &data) {
                if let Outcome::Frame(a) = o {
                    ids.push(a.picture_id.unwrap());
                }
            }
            seq = seq.wrapping_add(2);
            pid = (pid + 1) & 0x7fff;
        }
        assert_eq!(ids.len(), 8);
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    }

    #[test]
    fn garbage_does_not_panic() {
        let mut asm = Assembler::default();
        for (i, junk) in [&[][..], &[0x80], &[0x90, 0x80], &[0xff; 3], &[0x10]]
            .iter()
            .enumerate()
        {
            let _ = asm.push(i as u16, 0, true, Bytes::copy_from_slice(junk));
        }
        assert_eq!(parse_descriptor(&[0x80, 0x80, 0x80]), None);
        assert_eq!(parse_descriptor(&[0x10]), None);
    }
}
