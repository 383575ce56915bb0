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
//!
//! Without an async runtime (a game's tests, whose Bevy Apps run on the test's thread),
//! [`Embedded::start`] runs one on a runtime of its own.

mod admission;
pub mod auth;
mod close;
pub mod config;
mod connection;
mod deadlines;
mod embedded;
mod hello;
mod hub;
mod lobbies;
mod lobby;
mod mailbox;
mod metrics;
mod rate;
mod redis_relay;
mod redis_store;
mod server;
mod shared;
pub mod store;
pub mod turn;
mod unanswered;

pub use config::{Config, ConfigError, DevMode};
pub use embedded::Embedded;
pub use server::{Error, Server, StopSignals};

/// For examples and local play: makes sure a matchmaker listens on `127.0.0.1:port`,
/// starting one on a background thread (with its own runtime) unless one is already there.
/// Returns its URL and whether this call started it.
pub fn ensure_local(port: u16) -> Result<(String, bool), String> {
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let url = format!("ws://{listen}/v1");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("squadlink-matchmaker".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Runtime::new() else {
                let _ = tx.send(Err("cannot start a tokio runtime".to_string()));
                return;
            };
            rt.block_on(async {
                // Local play: a few players, not a service's 20,000 connections (and no
                // warning about the file limit they would need).
                let config = Config {
                    listen,
                    max_connections: 256,
                    ..Config::default()
                };
                match Server::bind(config).await {
                    Ok(server) => {
                        let _ = tx.send(Ok(true));
                        let _ = server.run_until_signal().await;
                    }
                    // The port is taken: most likely by a matchmaker started earlier.
                    Err(_) => {
                        let _ = tx.send(Ok(false));
                    }
                }
            });
        })
        .map_err(|e| format!("cannot start the matchmaker thread: {e}"))?;
    match rx.recv_timeout(std::time::Duration::from_secs(5)) {
        Ok(Ok(started)) => Ok((url, started)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("the matchmaker did not start within 5 s".into()),
    }
}
