//! The sending side: the thread that reads the microphone, cleans the audio, gates it
//! (push-to-talk, voice activity, open mic), encodes Opus frames and hands them on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use squadlink_protocol::PeerId;

use super::capture;
use super::controls::Controls;
use super::error::Direction;
use super::events::VoiceEvent;
use super::format::FRAME;
use super::io::AudioSource;
use super::opus::VoiceEncoder;
use crate::bridge::MediaLink;
use crate::media::{MediaFrame, MediaIn};

/// Where encoded frames go.
pub(crate) enum FrameOut {
    /// To every connected peer of the session.
    Session(MediaLink),
    /// Straight back to our own receiver, as these peers.
    Loopback {
        tx: crossbeam_channel::Sender<MediaIn>,
        peers: Vec<PeerId>,
    },
}

impl FrameOut {
    fn send(&self, frame: MediaFrame) {
        match self {
            Self::Session(link) => {
                link.send(frame);
            }
            Self::Loopback { tx, peers } => {
                let arrival = Instant::now();
                for peer in peers {
                    let _ = tx.try_send(MediaIn::Rtp {
                        peer: *peer,
                        frame: frame.clone(),
                        arrival,
                    });
                }
            }
        }
    }
}

/// Frames sent ahead of the one that opened the voice-activity gate (20 ms): word onsets
/// the detector needed a moment to notice. The receiver sheds the extra delay in the next
/// pause.
const PRE_ROLL: usize = 1;

/// The sending thread's state.
pub(crate) struct Transmitter {
    pub(crate) source: Box<dyn AudioSource>,
    pub(crate) processor: capture::Processor,
    pub(crate) gate: capture::Gate,
    pub(crate) encoder: VoiceEncoder,
    pub(crate) out: FrameOut,
    pub(crate) controls: Arc<Controls>,
    pub(crate) events: crossbeam_channel::Sender<VoiceEvent>,
    pub(crate) stop: Arc<AtomicBool>,
}

impl Transmitter {
    pub(crate) fn run(mut self) {
        let mut frame = vec![0.0f32; FRAME];
        let mut timestamp = crate::media::random_u32();
        let mut seq = u16::try_from(crate::media::random_u32() >> 16).unwrap_or(0);
        let mut sending = false;
        let mut open = false;
        // Noise suppression and the encoder are paused while the gate is shut.
        let mut resting = false;
        let mut previous: std::collections::VecDeque<(u32, Bytes)> =
            std::collections::VecDeque::with_capacity(PRE_ROLL + 1);
        while !self.stop.load(Ordering::Relaxed) {
            match self.source.read(&mut frame, Duration::from_millis(100)) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(%e, "microphone lost: voice runs listen-only");
                    let _ = self.events.try_send(VoiceEvent::DeviceUnavailable {
                        direction: Direction::Input,
                        reason: e.to_string(),
                    });
                    break;
                }
            }
            self.controls.count_captured();
            let input = self.controls.gate_input();
            if self.gate.shut(input) {
                // Nothing can be sent (muted, or push-to-talk released and its hangover over):
                // skip noise suppression and encoding, most of the sending cost, and start
                // both afresh when the gate can open again (no stale audio in their delay
                // lines then).
                self.gate.decide(input, 0.0);
                if open {
                    open = false;
                    self.controls.set_transmitting(false);
                    let _ = self.events.try_send(VoiceEvent::TransmitStopped);
                }
                resting = true;
                previous.clear();
                sending = false;
                timestamp = timestamp.wrapping_add(FRAME as u32);
                continue;
            }
            if resting {
                resting = false;
                self.processor.reset();
                if let Err(e) = self.encoder.reset() {
                    tracing::debug!(%e, "encoder reset refused");
                }
            }
            let probability = self.processor.process(&mut frame);
            let now_open = self.gate.decide(input, probability);
            if now_open != open {
                open = now_open;
                self.controls.set_transmitting(open);
                let _ = self.events.try_send(if open {
                    VoiceEvent::TransmitStarted
                } else {
                    VoiceEvent::TransmitStopped
                });
            }
            let loss = self.controls.reported_loss();
            if let Err(e) = self.encoder.set_expected_loss(loss) {
                tracing::debug!(%e, "FEC setting refused");
            }
            // Every frame is encoded, sent or not: the encoder's state stays continuous, so
            // the first frame after the gate opens is clean, and the frame before it can go
            // out as a pre-roll (word onsets the voice detector needed a frame to notice).
            let encoded = self.encoder.encode(&frame).map(Bytes::copy_from_slice);
            let packet = match encoded {
                // In DTX (silence) nothing is sent, not even comfort-noise updates: a silent
                // open mic costs nothing, and receivers play silence.
                Ok(p) if p.len() > 2 && !self.encoder.in_dtx() => Some(p),
                Ok(_) => None,
                Err(e) => {
                    tracing::debug!(%e, "frame not encoded");
                    None
                }
            };
            match (open, packet) {
                (true, Some(payload)) => {
                    let mut marker = !sending;
                    if !sending {
                        for (ts, pre) in previous.drain(..) {
                            self.send(&mut seq, ts, marker, pre);
                            marker = false;
                        }
                    }
                    self.send(&mut seq, timestamp, marker, payload);
                    sending = true;
                }
                (false, Some(payload)) => {
                    // Keep the last PRE_ROLL frames, consecutive ones only.
                    let expected = previous.back().map(|(ts, _)| ts.wrapping_add(FRAME as u32));
                    if expected.is_some_and(|e| e != timestamp) {
                        previous.clear();
                    }
                    previous.push_back((timestamp, payload));
                    while previous.len() > PRE_ROLL {
                        previous.pop_front();
                    }
                    sending = false;
                }
                (_, None) => {
                    previous.clear();
                    sending = false;
                }
            }
            timestamp = timestamp.wrapping_add(FRAME as u32);
        }
        self.controls.set_transmitting(false);
    }

    fn send(&self, seq: &mut u16, timestamp: u32, marker: bool, payload: Bytes) {
        self.controls.count_sent(payload.len());
        self.out.send(MediaFrame {
            seq: *seq,
            timestamp,
            marker,
            payload,
        });
        *seq = seq.wrapping_add(1);
    }
}
