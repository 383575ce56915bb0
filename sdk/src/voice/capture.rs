//! The sending side's processing of each 20 ms frame: noise suppression, gain, and the gate
//! (push-to-talk, voice activity or open mic) with hangover.

use nnnoiseless::DenoiseState;

use super::format::{FRAME, SAMPLE_RATE};
use super::mode::VoiceMode;

/// What the gate needs to know about this frame.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct GateInput {
    pub(crate) mode: VoiceMode,
    pub(crate) push_to_talk: bool,
    pub(crate) self_muted: bool,
}

/// The transmit gate with hangover: stays open `hangover` frames after the last frame that
/// opened it, so word endings are not clipped.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    pub(crate) threshold: f32,
    pub(crate) hangover: u32,
    left: u32,
}

impl Gate {
    pub(crate) fn new(threshold: f32, hangover: u32) -> Self {
        Self {
            threshold,
            hangover,
            left: 0,
        }
    }

    /// Whether the gate stays shut whatever the frame holds: muted, or push-to-talk with the
    /// key up and no hangover left. Such frames need no processing at all.
    pub(crate) fn shut(&self, input: GateInput) -> bool {
        input.self_muted
            || (input.mode == VoiceMode::PushToTalk && !input.push_to_talk && self.left == 0)
    }

    /// Whether this frame is sent, given its voice probability (0–1).
    pub(crate) fn decide(&mut self, input: GateInput, voice_probability: f32) -> bool {
        if input.self_muted {
            self.left = 0;
            return false;
        }
        let wants = match input.mode {
            VoiceMode::OpenMic => true,
            VoiceMode::PushToTalk => input.push_to_talk,
            VoiceMode::VoiceActivity => voice_probability >= self.threshold,
        };
        if wants {
            self.left = self.hangover;
            return true;
        }
        if self.left > 0 {
            self.left -= 1;
            return true;
        }
        false
    }
}

/// Noise suppression (RNNoise, through nnnoiseless), gain and a voice probability per frame.
pub(crate) struct Processor {
    denoise: Option<Box<DenoiseState<'static>>>,
    scratch_in: Vec<f32>,
    scratch_out: Vec<f32>,
    pub(crate) gain: f32,
}

impl Processor {
    pub(crate) fn new(noise_suppression: bool, gain: f32) -> Self {
        Self {
            denoise: noise_suppression.then(DenoiseState::new),
            scratch_in: vec![0.0; DenoiseState::FRAME_SIZE],
            scratch_out: vec![0.0; DenoiseState::FRAME_SIZE],
            gain,
        }
    }

    /// Forgets past audio (after a pause in processing): RNNoise's delay line and state
    /// start empty.
    pub(crate) fn reset(&mut self) {
        if let Some(denoise) = self.denoise.as_mut() {
            *denoise = DenoiseState::new();
        }
    }

    /// Processes one 20 ms frame in place; returns its voice probability (0–1).
    pub(crate) fn process(&mut self, frame: &mut [f32]) -> f32 {
        let mut probability: f32 = 0.0;
        if let Some(denoise) = self.denoise.as_mut() {
            for half in frame.chunks_mut(DenoiseState::FRAME_SIZE) {
                if half.len() != DenoiseState::FRAME_SIZE {
                    continue;
                }
                for (dst, src) in self.scratch_in.iter_mut().zip(half.iter()) {
                    *dst = src * 32767.0;
                }
                let p = denoise.process_frame(&mut self.scratch_out, &self.scratch_in);
                probability = probability.max(p);
                for (dst, src) in half.iter_mut().zip(self.scratch_out.iter()) {
                    *dst = src / 32767.0;
                }
            }
        } else {
            probability = energy_probability(frame);
        }
        if (self.gain - 1.0).abs() > f32::EPSILON {
            for s in frame.iter_mut() {
                *s = (*s * self.gain).clamp(-1.0, 1.0);
            }
        }
        probability
    }
}

/// A voice probability from loudness alone (used without noise suppression): 0 below
/// -50 dBFS, 1 above -30 dBFS.
pub(crate) fn energy_probability(frame: &[f32]) -> f32 {
    let db = rms_dbfs(frame);
    ((db + 50.0) / 20.0).clamp(0.0, 1.0)
}

/// Root-mean-square level in dBFS (-120 for digital silence).
pub(crate) fn rms_dbfs(frame: &[f32]) -> f32 {
    if frame.is_empty() {
        return -120.0;
    }
    let sum: f32 = frame.iter().map(|s| s * s).sum();
    let rms = (sum / frame.len() as f32).sqrt();
    if rms <= 1e-6 {
        -120.0
    } else {
        20.0 * rms.log10()
    }
}

/// Frames of hangover for a duration.
pub(crate) fn frames_for(duration: std::time::Duration) -> u32 {
    let frame_ms = (FRAME as u64 * 1000) / u64::from(SAMPLE_RATE);
    u32::try_from(duration.as_millis() as u64 / frame_ms.max(1)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(mode: VoiceMode) -> GateInput {
        GateInput {
            mode,
            push_to_talk: false,
            self_muted: false,
        }
    }

    #[test]
    fn voice_activity_opens_and_holds_for_the_hangover() {
        let mut gate = Gate::new(0.5, 3);
        let i = input(VoiceMode::VoiceActivity);
        assert!(!gate.decide(i, 0.1));
        assert!(gate.decide(i, 0.9));
        // Three frames of hangover, then closed.
        assert!(gate.decide(i, 0.0));
        assert!(gate.decide(i, 0.0));
        assert!(gate.decide(i, 0.0));
        assert!(!gate.decide(i, 0.0));
        // Speech again re-arms it.
        assert!(gate.decide(i, 0.7));
        assert!(gate.decide(i, 0.2));
    }

    #[test]
    fn the_gate_is_shut_when_muted_or_the_key_is_up_after_the_hangover() {
        let mut gate = Gate::new(0.5, 2);
        let mut ptt = input(VoiceMode::PushToTalk);
        assert!(gate.shut(ptt));
        ptt.push_to_talk = true;
        assert!(!gate.shut(ptt));
        assert!(gate.decide(ptt, 0.0));
        // Released: the hangover still sends two frames, then the gate is shut.
        ptt.push_to_talk = false;
        assert!(!gate.shut(ptt));
        assert!(gate.decide(ptt, 0.0));
        assert!(gate.decide(ptt, 0.0));
        assert!(gate.shut(ptt));
        // Voice activity needs every frame's probability; muted, nothing does.
        let mut vad = input(VoiceMode::VoiceActivity);
        assert!(!gate.shut(vad));
        vad.self_muted = true;
        assert!(gate.shut(vad));
    }

    #[test]
    fn push_to_talk_ignores_voice_and_self_mute_wins() {
        let mut gate = Gate::new(0.5, 0);
        let mut i = input(VoiceMode::PushToTalk);
        assert!(!gate.decide(i, 1.0));
        i.push_to_talk = true;
        assert!(gate.decide(i, 0.0));
        i.self_muted = true;
        assert!(!gate.decide(i, 1.0));
        let mut open = input(VoiceMode::OpenMic);
        assert!(gate.decide(open, 0.0));
        open.self_muted = true;
        assert!(!gate.decide(open, 0.0));
    }

    #[test]
    fn silence_has_low_probability_and_a_tone_high() {
        assert_eq!(energy_probability(&[0.0; FRAME]), 0.0);
        let tone: Vec<f32> = (0..FRAME).map(|i| 0.3 * (i as f32 * 0.05).sin()).collect();
        assert_eq!(energy_probability(&tone), 1.0);
        assert!(
            (rms_dbfs(&tone) - (-13.5)).abs() < 0.5,
            "{}",
            rms_dbfs(&tone)
        );
    }

    #[test]
    fn noise_suppression_keeps_length_and_quiets_noise() {
        let mut p = Processor::new(true, 1.0);
        // Low-passed noise (fan or road rumble), about -40 dBFS.
        let mut seed = 1u32;
        let mut lowpass = 0.0f32;
        let mut noise = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            lowpass = 0.95 * lowpass + ((seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.02;
            lowpass
        };
        let mut last = 0.0;
        for _ in 0..50 {
            let mut frame: Vec<f32> = (0..FRAME).map(|_| noise()).collect();
            let before = rms_dbfs(&frame);
            p.process(&mut frame);
            last = before - rms_dbfs(&frame);
        }
        assert!(last > 20.0, "noise reduced by only {last} dB");
    }

    #[test]
    fn hangover_frames() {
        assert_eq!(frames_for(std::time::Duration::from_millis(300)), 15);
    }
}
