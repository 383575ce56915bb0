//! The live connections of this node, by peer id: how anything (a request of another
//! connection, the lobby store, the cluster's event stream) reaches one client. A leaf: it
//! imports nothing of the server's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::ws::Utf8Bytes;
use squadlink_protocol::PeerId;
use tokio::sync::{Notify, mpsc};

/// Peer ids are below 2^53 so JavaScript numbers hold them exactly.
const PEER_ID_BOUND: u64 = 1 << 53;

/// How other tasks reach one connection.
#[derive(Clone)]
pub(crate) struct PeerHandle {
    pub(crate) tx: mpsc::Sender<Utf8Bytes>,
    pub(crate) kick: Arc<Notify>,
    /// Set (then `kick`) when a newer connection of the same player took this one's lobby
    /// membership over: the old connection then ends without leaving the lobby.
    pub(crate) superseded: Arc<AtomicBool>,
    /// Set (then `kick`) when the connection must go and come back (this node lost the
    /// cluster's event stream, or is draining): it ends keeping its lobby place.
    pub(crate) reconnect: Arc<AtomicBool>,
}

/// The live connections of this node.
#[derive(Default)]
pub(crate) struct Hub {
    peers: RwLock<HashMap<PeerId, PeerHandle>>,
}

impl Hub {
    /// Registers a new connection under a fresh random peer id (below 2^53, not in use
    /// here). Nodes of a cluster draw independently: with 53 random bits, a clash between
    /// two nodes' live ids is about (connections² / 2^54), one in 10^6 at 10^5 connections.
    pub(crate) fn register(&self, handle: PeerHandle) -> Option<PeerId> {
        let mut peers = self.peers.write().ok()?;
        for _ in 0..16 {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).ok()?;
            let id = PeerId(u64::from_le_bytes(bytes) % PEER_ID_BOUND);
            if id.0 != 0 && !peers.contains_key(&id) {
                peers.insert(id, handle);
                return Some(id);
            }
        }
        None
    }

    /// Queues an already-encoded message for `to`, if it is connected here. A full queue
    /// marks the target as a slow consumer (its task then closes it); nobody else waits.
    pub(crate) fn deliver(&self, to: PeerId, text: Utf8Bytes) {
        let Ok(peers) = self.peers.read() else { return };
        if let Some(handle) = peers.get(&to)
            && let Err(mpsc::error::TrySendError::Full(_)) = handle.tx.try_send(text)
        {
            handle.kick.notify_one();
        }
    }

    /// Ends the connection that holds `peer` here, if any, as superseded: a newer
    /// connection of the same player took its place. It leaves nothing.
    pub(crate) fn supersede(&self, peer: PeerId) {
        let Ok(mut peers) = self.peers.write() else {
            return;
        };
        if let Some(stale) = peers.remove(&peer) {
            stale.superseded.store(true, Ordering::SeqCst);
            stale.kick.notify_one();
        }
    }

    /// The connection registered as `from` answers to `to` from now on (it resumed `to`'s
    /// lobby place); a connection that still held `to` here is superseded.
    pub(crate) fn rebind(&self, from: PeerId, to: PeerId) {
        let Ok(mut peers) = self.peers.write() else {
            return;
        };
        let Some(handle) = peers.remove(&from) else {
            return;
        };
        let kick = Arc::clone(&handle.kick);
        if let Some(stale) = peers.insert(to, handle)
            && !Arc::ptr_eq(&stale.kick, &kick)
        {
            stale.superseded.store(true, Ordering::SeqCst);
            stale.kick.notify_one();
        }
    }

    /// Forgets `peer`'s connection, if `kick` identifies it (a newer one under the same
    /// id stays).
    pub(crate) fn remove(&self, peer: PeerId, kick: &Arc<Notify>) {
        if let Ok(mut peers) = self.peers.write()
            && peers.get(&peer).is_some_and(|h| Arc::ptr_eq(&h.kick, kick))
        {
            peers.remove(&peer);
        }
    }

    /// Queues `text` for every connection here (a slow consumer is kicked as usual).
    pub(crate) fn broadcast(&self, text: &Utf8Bytes) -> usize {
        let Ok(peers) = self.peers.read() else {
            return 0;
        };
        for handle in peers.values() {
            if let Err(mpsc::error::TrySendError::Full(_)) = handle.tx.try_send(text.clone()) {
                handle.kick.notify_one();
            }
        }
        peers.len()
    }

    /// Tells every connection here to end and come back (keeping its lobby place): the
    /// node lost events it should have delivered, or is going away.
    pub(crate) fn reconnect_all(&self) -> usize {
        let Ok(peers) = self.peers.read() else {
            return 0;
        };
        for handle in peers.values() {
            handle.reconnect.store(true, Ordering::SeqCst);
            handle.kick.notify_one();
        }
        peers.len()
    }
}
