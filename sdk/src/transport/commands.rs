//! The game's commands, handed to the core: one dispatch for every shell (the native loop
//! and the in-memory network). What only a shell can do — its simulated path, closing —
//! comes back as a [`ForShell`].

use web_time::Instant;

use super::core::Core;
use crate::bridge::Command;
use crate::conditioner::NetworkConditions;

/// A command the core does not handle: the shell's own.
pub(crate) enum ForShell {
    /// Drop this fraction of datagrams, both ways, from now on.
    SimulatedLoss(f64),
    /// Put what is received through this simulated path from now on.
    SimulatedNetwork(NetworkConditions),
    /// Close the session.
    Close,
}

/// Hands `cmd` to `core` at `now`; the shell's part, if it is one.
pub(crate) fn apply(core: &mut Core, now: Instant, cmd: Command) -> Option<ForShell> {
    // Counted down before it takes effect, but under the same hold of the core: a direct
    // send (`bridge::DirectSend`) sees both or neither.
    core.out().shared.applied(&cmd);
    match cmd {
        Command::Send {
            to,
            channel,
            payload,
        } => core.send(now, to, channel, &payload),
        Command::Media(frame) => core.send_voice(now, &frame),
        Command::AttachMedia(sink) => core.attach_voice(sink),
        Command::Video { packets, to } => core.send_video(now, &packets, to),
        Command::AttachVideo(sink) => core.attach_video(sink),
        Command::KeyframeRequest { peer } => core.request_keyframe(now, peer),
        Command::VoiceLoss { peer, percent } => core.report_voice_loss(now, peer, percent),
        #[cfg(feature = "fuzzing")]
        Command::Raw { to, index, payload } => core.tamper(now, to, |p| {
            p.send_frame(index, bytes::BytesMut::from(payload.as_ref()), now);
        }),
        #[cfg(feature = "fuzzing")]
        Command::RawRtp {
            to,
            kind,
            payload_type,
            frame,
        } => core.tamper(now, to, |p| p.send_rtp_as(kind, &frame, payload_type, now)),
        #[cfg(feature = "fuzzing")]
        Command::Deaf(deaf) => core.set_deaf(deaf),
        Command::Disconnect { peer } => core.shun(now, peer),
        Command::SimulatedNetworkFrom { peer, conditions } => {
            core.simulate_path_from(peer, conditions);
        }
        Command::SimulatedLoss(fraction) => return Some(ForShell::SimulatedLoss(fraction)),
        Command::SimulatedNetwork(conditions) => {
            return Some(ForShell::SimulatedNetwork(conditions));
        }
        Command::Close => return Some(ForShell::Close),
    }
    None
}
