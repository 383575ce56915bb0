//! Squadlink matchmaker protocol, version 1.
//!
//! The matchmaker speaks JSON text frames over one WebSocket endpoint (`/v1`). Every frame is
//! one object with a `"type"` field; this crate holds those objects as Rust types so the SDK
//! and the matchmaker cannot drift apart. The wire format is specified for other languages in
//! `docs/protocol.md`; this crate is its reference implementation.
//!
//! ```
//! use squadlink_protocol::{ClientMessage, ServerMessage};
//!
//! let hello = ClientMessage::Hello { rid: None, token: None, player_id: None };
//! assert_eq!(hello.to_json()?, r#"{"type":"hello"}"#);
//!
//! let pong = ServerMessage::from_json(r#"{"type":"pong","nonce":7}"#)?;
//! assert_eq!(pong, ServerMessage::Pong { nonce: Some(7) });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod errors;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzz;
mod messages;

pub use errors::{DecodeError, ErrorCode};
pub use messages::*;

/// The protocol version this crate implements. The matchmaker serves it at path `/v1` and
/// announces it in [`ServerMessage::Welcome`].
pub const PROTOCOL_VERSION: u32 = 1;

/// The URL path of the protocol v1 WebSocket endpoint.
pub const ENDPOINT_PATH: &str = "/v1";
