//! # Squadlink
//!
//! Peer-to-peer networking for multiplayer games: players meet in a lobby through the
//! Squadlink matchmaker, then connect to each other over WebRTC (directly where possible,
//! through a TURN relay where not) and exchange messages on the channels they declared.
//!
//! ```no_run
//! use squadlink::{Channel, ChannelKind, Event, LobbyRef, Session};
//!
//! let session = Session::builder("ws://127.0.0.1:7878/v1")
//!     .channel(ChannelKind::UnreliableSequenced) // channel 0: state, 60 times a second
//!     .channel(ChannelKind::ReliableOrdered)     // channel 1: events
//!     .join(LobbyRef::create(4))
//!     .start()?;
//! println!("lobby code: {:?}", session.lobby().map(|l| l.code));
//! for event in session.poll_events() {
//!     if let Event::PeerConnected { peer, path, connect_time } = event {
//!         println!("{peer} connected via {} in {connect_time:?}", path.name());
//!     }
//! }
//! session.broadcast(Channel(1), b"hello")?;
//! # Ok::<(), squadlink::Error>(())
//! ```
//!
//! The session runs its network thread itself: a game loop calls the non-blocking methods
//! ([`Session::poll_events`], [`Session::send`], [`Session::receive`]) once a frame; tokio
//! users can `.await` [`Session::next_event`] and [`Session::recv`] instead.
//!
//! Real networks: TURN is used over UDP, TCP or TLS (`turns:`), whichever gets through. A
//! lost matchmaker connection does not drop peers ([`Event::MatchmakerLost`], then
//! [`Event::MatchmakerRestored`]); a changed address is followed by an ICE restart; a player
//! that restarts its game within the matchmaker's rejoin grace comes back under its peer id.
//! [`nat::probe`] tells what kind of NAT the player is behind. The repository's
//! `docs/networking.md` has the NAT matrix with measured connect times.

// The browser build drives the same core without the native shell's inputs (datagrams,
// our STUN/TURN clients, simulated paths, the in-memory network): those parts are compiled
// but unused there. The native build keeps every dead-code warning.
#![cfg_attr(target_arch = "wasm32", allow(dead_code))]

mod bridge;
mod builder;
mod channel;
pub mod codec;
pub mod conditioner;
mod endpoint;
mod error;
mod event;
#[cfg(any(test, feature = "fuzzing"))]
#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(not(target_arch = "wasm32"))]
mod join;
mod lobby;
mod media;
mod memory;
#[cfg(not(target_arch = "wasm32"))]
pub mod nat;
mod session;
mod settings;
#[cfg(not(target_arch = "wasm32"))]
mod signaling;
mod stats;
mod stun;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
mod transport;
// Natively, voice and video are our own media stack (libopus, libvpx, cpal); in the
// browser, the page's own capture, codecs and playback on the browser engine's tracks.
#[cfg(feature = "video")]
pub mod video;
#[cfg(feature = "voice")]
pub mod voice;

/// Log filter directives that hide the WebRTC engine's own warnings and notices (about ICE
/// checks before candidates arrive, DTLS server names and the like): a game can do nothing
/// about them, and Squadlink reports what matters as [`Event`]s and its own `squadlink` logs.
/// Append them to a `tracing` filter, e.g.
/// `EnvFilter::new(format!("warn,{}", squadlink::LOG_FILTER))`, or in Bevy to
/// `LogPlugin::filter` after `bevy::log::DEFAULT_FILTER`.
pub const LOG_FILTER: &str = "rtc=error";

pub use builder::{PendingSession, SessionBuilder};
pub use channel::{Channel, ChannelKind};
pub use conditioner::NetworkConditions;
pub use endpoint::ChannelEndpoint;
pub use error::{Error, Result};
pub use event::{
    CandidateKind, DisconnectReason, Event, IcePolicy, LobbyInfo, PathKind, RelayTransport,
};
pub use lobby::LobbyRef;
pub use session::Session;
pub use settings::{DEFAULT_INBOX_LIMIT, DEFAULT_UNRELIABLE_LIFETIME, MAX_CHANNELS};
pub use squadlink_protocol::{IceServer, PeerId, PlayerId};
pub use stats::PeerStats;
