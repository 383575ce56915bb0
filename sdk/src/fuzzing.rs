//! Entry points for the fuzzers in `fuzz/` (feature `fuzzing`; not a stable API).
//!
//! Each function takes arbitrary bytes and drives one decoder the way bytes from a network,
//! a peer or a file reach it, checking what must always hold (bounded memory, sizes within
//! the limits). A failed check panics, which is what a fuzzer looks for. The unit tests
//! below run every file under `fuzz/regressions/<target>/` through the same functions, so
//! an input a fuzzer once broke stays fixed.

#[cfg(feature = "voice")]
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::channel::{self, Reassembler, SequenceFilter};
use crate::transport::{control, engine, gather, net, stream};

/// Cuts `data` into records: a length byte, then that many bytes (the last may be short).
/// Lets one input describe a sequence of frames or packets.
pub fn records(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    cut(data, false)
}

/// Like [`records`] with a two-byte (big-endian) length: for codec frames over 255 bytes.
pub fn records16(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    cut(data, true)
}

/// Records with a one-byte length, or a two-byte one when `wide`.
fn cut(data: &[u8], wide: bool) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (len, tail) = if wide {
            let (len, tail) = rest.split_first_chunk::<2>()?;
            (usize::from(u16::from_be_bytes(*len)), tail)
        } else {
            let (&len, tail) = rest.split_first()?;
            (usize::from(len), tail)
        };
        let (record, next) = tail.split_at(len.min(tail.len()));
        rest = next;
        Some(record)
    })
}

/// Joins records the way [`records`] (`wide` false) or [`records16`] cut them.
pub fn join_records<'a>(parts: impl IntoIterator<Item = &'a [u8]>, wide: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        if wide {
            let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(part.get(..usize::from(len)).unwrap_or(part));
        } else {
            let len = u8::try_from(part.len()).unwrap_or(u8::MAX);
            out.push(len);
            out.extend_from_slice(part.get(..usize::from(len)).unwrap_or(part));
        }
    }
    out
}

/// Reliable channel frames (whole messages and fragments) into one reassembler: every
/// message out is within the limit, and the partial messages held stay bounded.
pub fn reliable_frames(data: &[u8]) {
    const LIMIT: usize = 64 * 1024;
    let mut r = Reassembler::new(LIMIT);
    for frame in records(data) {
        // Stretch short records into big fragments now and then, so that whole messages can
        // complete (a fragment body is up to 16 KiB).
        let frame = match frame.split_first() {
            Some((&0xff, rest)) => {
                let mut big = rest.to_vec();
                big.resize(rest.len() + channel::FRAGMENT_SIZE, 0xab);
                Bytes::from(big)
            }
            _ => Bytes::copy_from_slice(frame),
        };
        if let Ok(Some(message)) = r.push(frame) {
            assert!(message.len() <= LIMIT, "a message over the limit");
        }
        let (partials, bytes) = r.held();
        assert!(
            partials <= channel::MAX_PARTIALS,
            "{partials} partial messages held"
        );
        assert!(
            bytes <= channel::MAX_PARTIALS * LIMIT,
            "{bytes} bytes of partial messages held"
        );
    }
}

/// Sequenced channel frames: the sequence header and the newest-only filter.
pub fn sequenced(data: &[u8]) {
    let mut filter = SequenceFilter::default();
    let mut newest: Option<u32> = None;
    for frame in records(data) {
        if let Some((seq, payload)) = channel::decode_sequenced(frame) {
            assert_eq!(payload.len() + 4, frame.len());
            if filter.accept(seq) {
                if let Some(n) = newest {
                    assert!((seq.wrapping_sub(n) as i32) > 0, "an older message passed");
                }
                newest = Some(seq);
            }
        }
    }
}

/// Control channel frames: ping/pong and voice loss reports.
pub fn control(data: &[u8]) {
    for frame in records(data) {
        if let Some(control::Control::VoiceLoss(percent)) = control::parse(frame) {
            assert!(percent <= 100);
        }
    }
}

/// Our own text parsing of signaling: candidate lines, SDP attributes, ICE server URLs.
pub fn signaling_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        let _ = net::parse_candidate(line);
        let _ = gather::parse_url(line);
    }
    let _ = engine::sdp_attribute(&text, "fingerprint");
    let _ = engine::sdp_attribute(&text, "ice-ufrag");
}

/// STUN from the network: the Binding request's USERNAME (which peer a check is for), the
/// NAT probe's Binding response, and the TURN-over-TCP stream framer fed in pieces.
pub fn stun(data: &[u8]) {
    if let Some(ufrag) = net::stun_request_ufrag(data) {
        assert!(ufrag.len() < data.len());
    }
    let tid = data.get(8..20).and_then(|t| <[u8; 12]>::try_from(t).ok());
    let _ = crate::nat::parse_response(data, &tid.unwrap_or([0; 12]));
    let mut framer = stream::Framer::default();
    for piece in records(data) {
        framer.buf.extend_from_slice(piece);
        loop {
            match framer.next() {
                Ok(Some(message)) => assert!(message.len() >= 4),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// VP8 RTP packets (RFC 7741 payload descriptor) into the frame assembler. Each record is
/// `seq (2) timestamp (4) marker (1)` then the payload.
#[cfg(feature = "video")]
pub fn vp8_rtp(data: &[u8]) {
    use crate::video::rtp::{Assembler, Outcome, parse_descriptor};
    let mut assembler = Assembler::default();
    for record in records(data) {
        let Some((head, payload)) = record.split_first_chunk::<7>() else {
            continue;
        };
        let [s0, s1, t0, t1, t2, t3, marker] = *head;
        if let Some(d) = parse_descriptor(payload) {
            assert!(d.len <= payload.len());
        }
        let out = assembler.push(
            u16::from_be_bytes([s0, s1]),
            u32::from_be_bytes([t0, t1, t2, t3]),
            marker & 1 == 1,
            Bytes::copy_from_slice(payload),
        );
        if let Outcome::Frame(frame) = out {
            assert!(frame.data.len() <= crate::video::rtp::MAX_PENDING * usize::from(u8::MAX));
        }
        assert!(assembler.held() <= crate::video::rtp::MAX_PENDING);
    }
}

/// VP8 frames straight into libvpx through our decoder (a peer controls every byte). The
/// frames are [`records16`].
#[cfg(feature = "video")]
pub fn vp8_decode(data: &[u8]) {
    let Ok(mut decoder) = crate::video::measure::Vp8Decoder::new() else {
        return;
    };
    for frame in records16(data) {
        if let Ok(Some(picture)) = decoder.decode(frame) {
            assert!(picture.width() <= 16_384 && picture.height() <= 16_384);
        }
    }
}

/// Opus packets into our decoder (libopus), with FEC and concealment in between.
#[cfg(feature = "voice")]
pub fn opus_decode(data: &[u8]) {
    let Ok(mut decoder) = crate::voice::measure::VoiceDecoder::with_rate(16_000) else {
        return;
    };
    let mut out = [0f32; 320];
    for (i, packet) in records(data).enumerate() {
        let packet = (!packet.is_empty()).then_some(packet);
        let _ = decoder.decode(packet, i % 5 == 4, &mut out);
        assert!(out.iter().all(|s| s.is_finite()));
        let _ = crate::voice::opus::codes_above_wideband(packet.unwrap_or(&[]));
    }
}

/// Arbitrary voice packets into the jitter buffer, played out as a renderer would. Each
/// record is `timestamp (4) arrival ms step (1) marker (1)` then the payload; a record of one
/// byte advances the clock and plays.
#[cfg(feature = "voice")]
pub fn jitter(data: &[u8]) {
    use crate::voice::jitter::{JitterBuffer, JitterConfig};
    let mut buffer = JitterBuffer::new(JitterConfig::default());
    let start = Instant::now();
    let mut now = start;
    for record in records(data) {
        match record.split_first_chunk::<6>() {
            Some((&[t0, t1, t2, t3, step, marker], payload)) => {
                now += Duration::from_millis(u64::from(step));
                buffer.insert(
                    u32::from_be_bytes([t0, t1, t2, t3]),
                    marker & 1 == 1,
                    Bytes::copy_from_slice(payload),
                    now,
                );
            }
            _ => {
                now += Duration::from_millis(5);
                let queued = usize::from(record.first().copied().unwrap_or(0));
                let _ = buffer.next(now, queued, 240);
            }
        }
        assert!(buffer.held() <= crate::voice::jitter::CAPACITY);
        assert!(buffer.target() <= Duration::from_secs(2));
        buffer.take_spent().for_each(drop);
    }
}

/// A game message of the usual shape: numbers, a string, vectors, an option.
#[derive(serde::Serialize, serde::Deserialize)]
struct TypedProbe {
    id: u32,
    name: String,
    inputs: Vec<(i16, i16)>,
    target: Option<u64>,
    blob: Vec<u8>,
}

/// Typed messages: bincode with the decode size limit, into a message with strings,
/// vectors and options.
pub fn typed(data: &[u8]) {
    if let Ok(m) = crate::codec::decode::<TypedProbe>(data) {
        let again = crate::codec::encode(&m);
        assert!(again.is_ok_and(|b| b.len() <= data.len()));
    }
    let _ = crate::codec::decode::<Vec<String>>(data);
}

/// A Y4M file.
#[cfg(feature = "video")]
pub fn y4m(data: &[u8]) {
    if let Ok(source) = crate::video::Y4mSource::from_reader("fuzz.y4m", data) {
        let (w, h) = source.size();
        assert!(w > 0 && h > 0 && w <= 4096 && h <= 4096);
    }
}

/// A WAV file.
#[cfg(feature = "voice")]
pub fn wav(data: &[u8]) {
    if let Ok(samples) =
        crate::voice::io::read_wav_mono_48k_from(std::path::Path::new("fuzz.wav"), data)
    {
        assert!(samples.len() <= 48_000 * 2 * 600 * 6);
    }
}

/// Every target, by the name of its directory under `fuzz/regressions/`.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    let f: fn(&[u8]) = match name {
        "reliable_frames" => reliable_frames,
        "sequenced" => sequenced,
        "control" => control,
        "signaling_text" => signaling_text,
        "stun" => stun,
        "typed" => typed,
        #[cfg(feature = "video")]
        "vp8_rtp" => vp8_rtp,
        #[cfg(feature = "video")]
        "vp8_decode" => vp8_decode,
        #[cfg(feature = "video")]
        "y4m" => y4m,
        #[cfg(feature = "voice")]
        "opus_decode" => opus_decode,
        #[cfg(feature = "voice")]
        "jitter" => jitter,
        #[cfg(feature = "voice")]
        "wav" => wav,
        _ => return None,
    };
    Some(f)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// Every input a fuzzer once broke (fuzz/regressions/TARGET/*) now passes.
    #[test]
    fn every_recorded_fuzzer_crash_stays_fixed() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
        let mut ran = 0;
        for dir in std::fs::read_dir(&root).unwrap() {
            let dir = dir.unwrap().path();
            let name = dir.file_name().unwrap().to_string_lossy().to_string();
            let Some(f) = target(&name) else {
                continue; // a protocol/token target (tested in their crates) or a feature off
            };
            for input in std::fs::read_dir(&dir).unwrap() {
                let path = input.unwrap().path();
                f(&std::fs::read(&path).unwrap());
                ran += 1;
            }
        }
        assert!(ran > 0, "no regression inputs under {}", root.display());
    }

    /// Writes seed inputs for every target into `$SQUADLINK_FUZZ_SEEDS/<target>/`, made by
    /// the real encoders: our framers and packetizers, libopus, libvpx, hound, the token
    /// minter, and the matchmaker transcript in docs/protocol.md. Run by scripts/fuzz.sh.
    #[test]
    #[ignore = "writes files; run by scripts/fuzz.sh"]
    #[cfg(all(feature = "voice", feature = "video"))]
    fn write_seeds() {
        let root = std::path::PathBuf::from(std::env::var("SQUADLINK_FUZZ_SEEDS").unwrap());
        let put = |target: &str, name: &str, bytes: &[u8]| {
            let dir = root.join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), bytes).unwrap();
        };
        let join = |parts: &[&[u8]]| join_records(parts.iter().copied(), false);
        let join16 = |parts: &[Vec<u8>]| join_records(parts.iter().map(Vec::as_slice), true);

        // Reliable frames: whole messages, and fragments whose bodies the 0xff prefix grows.
        let whole = channel::encode_reliable(7, b"a reliable event");
        let big = vec![0x5au8; 40_000];
        let fragments = channel::encode_reliable(9, &big);
        let headers: Vec<Vec<u8>> = fragments
            .iter()
            .map(|f| {
                let mut r = vec![0xff];
                r.extend_from_slice(f.get(..9).unwrap());
                r
            })
            .collect();
        put("reliable_frames", "whole", &join(&[&whole[0]]));
        put(
            "reliable_frames",
            "fragments",
            &join(&headers.iter().map(Vec::as_slice).collect::<Vec<_>>()),
        );
        put(
            "sequenced",
            "three",
            &join(&[
                &channel::encode_sequenced(1, b"state 1"),
                &channel::encode_sequenced(3, b"state 3"),
                &channel::encode_sequenced(2, b"late"),
            ]),
        );
        let ping = [&[1u8][..], &7u32.to_be_bytes(), &99u64.to_be_bytes()].concat();
        let pong = [&[2u8][..], &7u32.to_be_bytes(), &99u64.to_be_bytes()].concat();
        put(
            "control",
            "ping_pong_loss",
            &join(&[&ping, &pong, &control::voice_loss(12)]),
        );
        let sdp = "v=0\r\no=- 4611 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:Xq3B\r\na=ice-pwd:5HxO2kq3x9yLw7o1\r\na=fingerprint:sha-256 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB:4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF\r\na=setup:actpass\r\na=mid:0\r\na=sctp-port:5000\r\na=max-message-size:65536\r\na=candidate:1 1 udp 2130706431 192.0.2.10 50000 typ host\r\na=candidate:2 1 udp 1694498815 203.0.113.7 61000 typ srflx raddr 0.0.0.0 rport 0\r\n";
        put("signaling_text", "offer", sdp.as_bytes());
        put(
            "signaling_text",
            "urls",
            b"stun:127.0.0.1:3478\nturn:turn.example.com:3478?transport=tcp\nturns:turn.example.com:5349\ncandidate:3 1 udp 41885439 198.51.100.4 49152 typ relay raddr 203.0.113.7 rport 61000",
        );

        // STUN: the NAT probe's request and a response to it, and an ICE check's shape.
        let tid = [3u8; 12];
        let mut check = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
        check.extend_from_slice(&tid);
        let attr = |kind: u16, value: &[u8]| {
            let mut a = kind.to_be_bytes().to_vec();
            a.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
            a.extend_from_slice(value);
            a.resize(a.len().next_multiple_of(4), 0);
            a
        };
        let attrs = [
            attr(0x0006, b"Xq3B:Lk9p"),
            attr(0x0024, &1_845_501_695u32.to_be_bytes()),
            attr(0x802A, &[0x11; 8]),
            attr(0x0025, &[]),
            attr(0x0008, &[0x22; 20]),
            attr(0x8028, &[0x33; 4]),
        ]
        .concat();
        check.splice(2..4, u16::try_from(attrs.len()).unwrap().to_be_bytes());
        check.extend_from_slice(&attrs);
        put("stun", "ice_check", &check);
        put(
            "stun",
            "probe_request",
            &crate::nat::binding_request(&tid, 6),
        );
        let mut response = vec![0x01, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xA4, 0x42];
        response.extend_from_slice(&tid);
        response.extend_from_slice(&attr(
            0x0020,
            &[
                0,
                1,
                0xe1 ^ 0x21,
                0x46 ^ 0x12,
                0x5e ^ 0x21,
                0x12 ^ 0x12,
                0xa4 ^ 0xa4,
                0x42 ^ 0x42,
            ],
        ));
        put("stun", "probe_response", &response);

        let typed = crate::codec::encode(&TypedProbe {
            id: 3,
            name: "dunes".into(),
            inputs: vec![(1, -1), (0, 2)],
            target: Some(9),
            blob: vec![1, 2, 3],
        })
        .unwrap();
        put("typed", "message", &typed);

        // VP8: real frames from libvpx, and their RTP packets.
        let settings = crate::video::measure::Vp8Settings {
            width: 64,
            height: 48,
            fps: 15,
            bitrate_kbps: 100,
        };
        let mut encoder = crate::video::measure::Vp8Encoder::new(settings).unwrap();
        let pattern = crate::video::TestPattern::new(64, 48, 15).unwrap();
        let mut frames = Vec::new();
        for n in 0..4 {
            if let Some(f) = encoder.encode(&pattern.draw(n), n == 0).unwrap() {
                frames.push(f.data);
            }
        }
        put("vp8_decode", "four_frames", &join16(&frames));
        let mut packets = Vec::new();
        let mut seq = 100u16;
        for (n, frame) in frames.iter().enumerate() {
            for p in crate::video::rtp::packetize(frame, u16::try_from(n).unwrap()) {
                for chunk in p.payload.chunks(200) {
                    let mut r = seq.to_be_bytes().to_vec();
                    r.extend_from_slice(&(u32::try_from(n).unwrap() * 6000).to_be_bytes());
                    r.push(u8::from(p.marker));
                    r.extend_from_slice(chunk);
                    packets.push(r);
                    seq = seq.wrapping_add(1);
                }
            }
        }
        put(
            "vp8_rtp",
            "frames",
            &join(&packets.iter().map(Vec::as_slice).collect::<Vec<_>>()),
        );
        let mut y4m = Vec::new();
        let path = root.join("tmp.y4m");
        crate::video::Y4mSource::write(&path, 15, &[pattern.draw(0), pattern.draw(1)]).unwrap();
        y4m.extend(std::fs::read(&path).unwrap());
        std::fs::remove_file(&path).unwrap();
        put("y4m", "two_frames", &y4m);

        // Opus: real packets from libopus (a tone), and the same with timestamps.
        let mut encoder = crate::voice::measure::VoiceEncoder::new(
            24_000,
            crate::voice::VoiceBandwidth::Wideband,
        )
        .unwrap();
        let mut opus = Vec::new();
        for n in 0..6 {
            let frame: Vec<f32> = (0..960)
                .map(|i| ((n * 960 + i) as f32 * 0.05).sin() * 0.3)
                .collect();
            opus.push(encoder.encode(&frame).unwrap().to_vec());
        }
        put(
            "opus_decode",
            "tone",
            &join(&opus.iter().map(Vec::as_slice).collect::<Vec<_>>()),
        );
        let timed: Vec<Vec<u8>> = opus
            .iter()
            .enumerate()
            .map(|(n, p)| {
                let mut r = (u32::try_from(n).unwrap() * 960).to_be_bytes().to_vec();
                r.extend_from_slice(&[20, u8::from(n == 0)]);
                r.extend_from_slice(p);
                r
            })
            .chain([vec![1], vec![1], vec![1]])
            .collect();
        put(
            "jitter",
            "spurt",
            &join(&timed.iter().map(Vec::as_slice).collect::<Vec<_>>()),
        );
        let wav_path = root.join("tmp.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&wav_path, spec).unwrap();
        for i in 0..64i16 {
            w.write_sample(i * 300).unwrap();
            w.write_sample(-i * 300).unwrap();
        }
        w.finalize().unwrap();
        put("wav", "stereo16k", &std::fs::read(&wav_path).unwrap());
        std::fs::remove_file(&wav_path).unwrap();

        // The matchmaker protocol: every frame of the transcript in docs/protocol.md.
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.md"),
        )
        .unwrap();
        for (n, line) in doc.lines().enumerate() {
            if let Some(json) = line.split_once(" → ").map(|(_, j)| j) {
                put("protocol_client", &format!("line{n}"), json.as_bytes());
            }
            if let Some(json) = line.split_once(" ← ").map(|(_, j)| j) {
                put("protocol_server", &format!("line{n}"), json.as_bytes());
            }
        }
        let player = squadlink_protocol::PlayerId::parse("alice").unwrap();
        put(
            "token",
            "plain",
            squadlink_matchmaker::auth::mint_token(b"fuzz-secret", &player, 99).as_bytes(),
        );
        put(
            "token",
            "claims",
            squadlink_matchmaker::auth::mint_token_with(
                b"fuzz-secret",
                &player,
                99,
                squadlink_matchmaker::auth::TokenRules {
                    audience: Some("squadlink"),
                    issuer: Some("login"),
                },
            )
            .as_bytes(),
        );
    }

    #[test]
    fn records_cut_lengths_and_keep_a_short_tail() {
        let got: Vec<&[u8]> = records(&[2, 1, 2, 0, 3, 9]).collect();
        assert_eq!(got, [&[1u8, 2][..], &[][..], &[9][..]]);
    }
}
