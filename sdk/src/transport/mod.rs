//! The session's transport: the core, which is the same on every target, and its shells.
//!
//! The core (`core.rs` and the components it owns) is pure logic with time as an input;
//! it drives a WebRTC engine behind the seam of `engine.rs`. Each target has its shell and
//! its engine:
//!
//! - native (`native.rs`, `rtc_engine.rs`): one thread with a current-thread tokio runtime,
//!   one UDP socket, webrtc-rs's `rtc` as the engine, our own STUN/TURN clients
//!   (`gather.rs`, `stream.rs`);
//! - the browser (`web/`, wasm32): the page's `RTCPeerConnection` as the engine (it gathers
//!   its own candidates and owns the network), the page's `WebSocket` to the matchmaker,
//!   and `setTimeout` for the core's deadlines;
//! - the in-memory network (`sim.rs`, native, for tests and `testing::TestNet`).

mod candidates;
mod commands;
pub(crate) mod control;
mod core;
pub(crate) mod engine;
mod link;
mod liveness;
mod membership;
pub(crate) mod net;
mod output;
pub(crate) mod peer;
mod peers;
pub(crate) mod relay;
mod retry;
mod routes;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod codecs;
#[cfg(not(target_arch = "wasm32"))]
mod direct;
#[cfg(not(target_arch = "wasm32"))]
mod dtls_repeats;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod gather;
#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(not(target_arch = "wasm32"))]
mod nominations;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod rtc_engine;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod sim;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod stream;
#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod tests;
#[cfg(not(target_arch = "wasm32"))]
mod udp;

// In the browser the engine gathers its own candidates: no STUN/TURN client of ours runs.
#[cfg(target_arch = "wasm32")]
#[path = "gather_none.rs"]
mod gather;
#[cfg(target_arch = "wasm32")]
pub(crate) mod web;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use native::{Driver, check_tls_roots};
