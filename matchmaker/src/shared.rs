//! What every connection task shares: the settings, the lobby store, the hub that reaches
//! each live connection, and the counts behind the caps. The server builds it; connections
//! and lobby operations read and change it. It imports none of them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use axum::extract::ws::Utf8Bytes;
use squadlink_protocol::{Limits, PlayerId, ServerMessage};
use tokio::sync::watch;

use crate::config::Config;
use crate::hub::Hub;
use crate::store::{Identity, LobbyStore};

/// What every connection task shares.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) dev_mode: bool,
    pub(crate) limits: Limits,
    pub(crate) store: Arc<dyn LobbyStore>,
    pub(crate) hub: Arc<Hub>,
    /// Live connections per player (and way of authenticating), for the per-player cap.
    pub(crate) players: std::sync::Mutex<HashMap<(PlayerId, Identity), u32>>,
    pub(crate) connections: AtomicUsize,
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl Shared {
    /// Counts a live connection of `player`; `false` when it already has the most allowed.
    pub(crate) fn add_player_connection(&self, player: &PlayerId, identity: Identity) -> bool {
        let Ok(mut players) = self.players.lock() else {
            return false;
        };
        let count = players.entry((player.clone(), identity)).or_insert(0);
        if *count >= self.config.max_connections_per_player {
            return false;
        }
        *count += 1;
        true
    }

    /// Forgets one live connection of `player`.
    pub(crate) fn remove_player_connection(&self, player: &PlayerId, identity: Identity) {
        if let Ok(mut players) = self.players.lock() {
            let key = (player.clone(), identity);
            match players.get_mut(&key) {
                Some(n) if *n > 1 => *n -= 1,
                _ => {
                    players.remove(&key);
                }
            }
        }
    }
}

/// Serializes a server message once, for one or many recipients.
pub(crate) fn encode(msg: &ServerMessage) -> Option<Utf8Bytes> {
    match msg.to_json() {
        Ok(text) => Some(Utf8Bytes::from(text)),
        Err(err) => {
            tracing::error!(%err, "could not encode a server message");
            None
        }
    }
}
