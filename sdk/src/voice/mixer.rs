//! Mixing remote voices into one stereo signal: per-peer gain, pan and distance falloff.

/// Where the listener is: a position and the direction of its right ear (any length).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Listener {
    /// The listener's position, in the game's units.
    pub position: [f32; 3],
    /// Which way is right for the listener (e.g. the camera's right vector).
    pub right: [f32; 3],
}

impl Default for Listener {
    fn default() -> Self {
        Self {
            position: [0.0; 3],
            right: [1.0, 0.0, 0.0],
        }
    }
}

/// How loudness falls with distance (inverse distance, clamped).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Falloff {
    /// Within this distance a voice is at full volume.
    pub reference: f32,
    /// Beyond this distance a voice is silent.
    pub max: f32,
}

impl Default for Falloff {
    fn default() -> Self {
        Self {
            reference: 100.0,
            max: 2000.0,
        }
    }
}

/// Left and right gains for a voice at `source` (or centred, unattenuated, without one).
///
/// Equal-power panning scaled so a centred voice has gain 1 on both sides; the distance
/// gain is `reference / distance` beyond the reference distance, fading to 0 at `max`.
pub(crate) fn spatial_gains(
    source: Option<[f32; 3]>,
    listener: &Listener,
    falloff: &Falloff,
) -> (f32, f32) {
    let Some(source) = source else {
        return (1.0, 1.0);
    };
    let d = [
        source[0] - listener.position[0],
        source[1] - listener.position[1],
        source[2] - listener.position[2],
    ];
    let dist = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
    if dist >= falloff.max {
        return (0.0, 0.0);
    }
    let reference = falloff.reference.max(f32::EPSILON);
    let mut gain = if dist <= reference {
        1.0
    } else {
        reference / dist
    };
    // Fade the last 10 % before `max` to zero, so there is no step at the edge.
    let fade_start = falloff.max * 0.9;
    if dist > fade_start {
        gain *= (falloff.max - dist) / (falloff.max - fade_start);
    }
    let r = listener.right;
    let r_len = (r[0] * r[0] + r[1] * r[1] + r[2] * r[2]).sqrt();
    let pan = if dist > f32::EPSILON && r_len > f32::EPSILON {
        ((d[0] * r[0] + d[1] * r[1] + d[2] * r[2]) / (dist * r_len)).clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let theta = (pan + 1.0) * std::f32::consts::FRAC_PI_4;
    let scale = std::f32::consts::SQRT_2;
    (gain * scale * theta.cos(), gain * scale * theta.sin())
}

/// Adds `mono` into the interleaved stereo `out`, with gains ramping linearly from `from`
/// to `to` across the block (no clicks when a gain changes).
pub(crate) fn mix_into(out: &mut [f32], mono: &[f32], from: (f32, f32), to: (f32, f32)) {
    let n = mono.len().min(out.len() / 2);
    if n == 0 {
        return;
    }
    let step = 1.0 / n as f32;
    for (i, (frame, s)) in out.chunks_exact_mut(2).zip(mono).enumerate() {
        let t = i as f32 * step;
        let l = from.0 + (to.0 - from.0) * t;
        let r = from.1 + (to.1 - from.1) * t;
        if let [left, right] = frame {
            *left += s * l;
            *right += s * r;
        }
    }
}

/// Keeps the mix within [-1, 1]: linear below 0.9, a soft knee above.
pub(crate) fn limit(out: &mut [f32]) {
    for s in out {
        let a = s.abs();
        if a > 0.9 {
            let over = a - 0.9;
            let soft = 0.9 + 0.1 * (over / (over + 0.1));
            *s = soft.copysign(*s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn near(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-4
    }

    #[test]
    fn no_position_is_centred_at_unity() {
        assert_eq!(
            spatial_gains(None, &Listener::default(), &Falloff::default()),
            (1.0, 1.0)
        );
    }

    #[test]
    fn centred_source_has_unity_gain_both_sides() {
        let l = Listener::default();
        let (a, b) = spatial_gains(Some([0.0, 0.0, -50.0]), &l, &Falloff::default());
        assert!(near(a, 1.0) && near(b, 1.0), "{a} {b}");
    }

    #[test]
    fn right_and_left_pan_hard() {
        let l = Listener::default();
        let f = Falloff::default();
        let (a, b) = spatial_gains(Some([50.0, 0.0, 0.0]), &l, &f);
        assert!(near(a, 0.0) && near(b, std::f32::consts::SQRT_2), "{a} {b}");
        let (a, b) = spatial_gains(Some([-50.0, 0.0, 0.0]), &l, &f);
        assert!(near(b, 0.0) && a > 1.4, "{a} {b}");
        // Equal power: l² + r² is the same wherever the voice is at one distance.
        for x in [-50.0f32, -20.0, 0.0, 30.0] {
            let z = (2500.0 - x * x).sqrt();
            let (a, b) = spatial_gains(Some([x, 0.0, z]), &l, &f);
            assert!(near(a * a + b * b, 2.0), "{x}: {}", a * a + b * b);
        }
    }

    #[test]
    fn distance_attenuates_and_cuts_off() {
        let l = Listener::default();
        let f = Falloff {
            reference: 10.0,
            max: 100.0,
        };
        let g = |d: f32| spatial_gains(Some([0.0, d, 0.0]), &l, &f).0;
        assert!(near(g(5.0), 1.0));
        assert!(near(g(20.0), 0.5));
        assert!(near(g(40.0), 0.25));
        assert!(g(95.0) < 10.0 / 95.0);
        assert_eq!(g(100.0), 0.0);
        assert_eq!(g(500.0), 0.0);
    }

    #[test]
    fn listener_orientation_matters() {
        // Facing the other way (right is -x), a voice at +x is on the left.
        let l = Listener {
            position: [0.0; 3],
            right: [-1.0, 0.0, 0.0],
        };
        let (a, b) = spatial_gains(Some([50.0, 0.0, 0.0]), &l, &Falloff::default());
        assert!(a > 1.4 && near(b, 0.0));
    }

    #[test]
    fn mixing_adds_with_ramped_gains() {
        let mut out = vec![0.5f32; 8];
        mix_into(&mut out, &[1.0; 4], (1.0, 0.0), (1.0, 0.0));
        assert_eq!(out, vec![1.5, 0.5, 1.5, 0.5, 1.5, 0.5, 1.5, 0.5]);
        let mut out = vec![0.0f32; 8];
        mix_into(&mut out, &[1.0; 4], (0.0, 0.0), (1.0, 1.0));
        assert_eq!(out[0], 0.0);
        assert!(out[6] > out[4] && out[4] > out[2]);
    }

    #[test]
    fn limiter_keeps_within_range_and_leaves_quiet_audio_alone() {
        let mut x = vec![0.5, -0.5, 3.0, -7.0, 0.95];
        limit(&mut x);
        assert_eq!(&x[..2], &[0.5, -0.5]);
        assert!(x.iter().all(|s| s.abs() <= 1.0));
        assert!(x[2] > 0.9 && x[3] < -0.9 && x[4] > 0.9);
    }
}
