//! Squadlink matchmaker: the service players connect to first.
//!
//! It authenticates players, runs lobbies (create with a short join code, join, leave, list
//! public ones), relays WebRTC signaling between members of one lobby (stamping the sender),
//! and hands every lobby member STUN URLs and time-limited TURN credentials that coturn
//! accepts. The wire protocol is `squadlink_protocol` / `docs/protocol.md`.
//!
//! The binary `squadlink-matchmaker` wraps this library; games and tests can embed it:
//!
//! ```no_run
//! # async fn demo() -> Result<(), squadlink_matchmaker::Error> {
//! use squadlink_matchmaker::{Config, Server};
//!
//! let config = Config { listen: "127.0.0.1:0".parse().unwrap_or(Config::default().listen), ..Config::default() };
//! let server = Server::bind(config).await?;
//! println!("players connect to {}", server.url());
//! server.shutdown().await?;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod config;
mod connection;
mod server;
pub mod store;
pub mod turn;

pub use config::{Config, ConfigError, DevMode};
pub use server::{Error, Server};
