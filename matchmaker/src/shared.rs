//! What every connection task shares: the settings, the lobby store, the hub that reaches
//! each live connection, and the counts behind the caps. The server builds it; connections
//! read and change it. It imports neither of them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, RwLock};

use axum::extract::ws::Utf8Bytes;
use squadlink_protocol::{Limits, PeerId, PlayerId, ServerMessage};
use tokio::sync::{Notify, mpsc, watch};

use crate::config::Config;
use crate::store::{Identity, LobbyStore};

/// Peer ids are below 2^53 so JavaScript numbers hold them exactly.
const PEER_ID_BOUND: u64 = 1 << 53;

/// What every connection task shares.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) dev_mode: bool,
    pub(crate) limits: Limits,
    pub(crate) store: Arc<dyn LobbyStore>,
    pub(crate) hub: RwLock<HashMap<PeerId, PeerHandle>>,
    /// Serializes lobby mutations with their fan-out, so every member sees changes in the
    /// same order and a joiner's `lobby_joined` precedes any signal to it.
    pub(crate) lobby_ops: tokio::sync::Mutex<()>,
    /// Live connections per player (and way of authenticating), for the per-player cap.
    pub(crate) players: std::sync::Mutex<HashMap<(PlayerId, Identity), u32>>,
    /// Members whose connection dropped, kept for the rejoin grace: peer id → the detach's
    /// serial number (a later detach of the same id must not be ended by an older timer).
    pub(crate) detached: std::sync::Mutex<HashMap<PeerId, u64>>,
    pub(crate) next_detach: AtomicU64,
    pub(crate) connections: AtomicUsize,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// How other tasks reach one connection.
pub(crate) struct PeerHandle {
    pub(crate) tx: mpsc::Sender<Utf8Bytes>,
    pub(crate) kick: Arc<Notify>,
    /// Set (then `kick`) when a newer connection of the same player took this one's lobby
    /// membership over: the old connection then ends without leaving the lobby.
    pub(crate) superseded: Arc<std::sync::atomic::AtomicBool>,
}

impl Shared {
    /// Registers a new connection under a fresh random peer id (below 2^53, not in use).
    pub(crate) fn register(&self, handle: PeerHandle) -> Option<PeerId> {
        let mut hub = self.hub.write().ok()?;
        for _ in 0..16 {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).ok()?;
            let id = u64::from_le_bytes(bytes) % PEER_ID_BOUND;
            let id = PeerId(id);
            if id.0 != 0 && !hub.contains_key(&id) {
                hub.insert(id, handle);
                return Some(id);
            }
        }
        None
    }

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

    /// Queues an already-encoded message for `to`. A full queue marks the target as a slow
    /// consumer (its task then closes it); nobody else waits.
    pub(crate) fn deliver(&self, to: PeerId, text: Utf8Bytes) {
        let Ok(hub) = self.hub.read() else { return };
        if let Some(handle) = hub.get(&to)
            && let Err(mpsc::error::TrySendError::Full(_)) = handle.tx.try_send(text)
        {
            handle.kick.notify_one();
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
