//! The live connections of this node, by peer id: how anything (a request of another
//! connection, the lobby store, the cluster's event stream) reaches one client. A leaf: it
//! imports only the mailbox (another leaf).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::extract::ws::Utf8Bytes;
use squadlink_protocol::PeerId;

use crate::mailbox::{Kick, Mailbox};

/// Peer ids are below 2^53 so JavaScript numbers hold them exactly.
const PEER_ID_BOUND: u64 = 1 << 53;

/// The live connections of this node.
#[derive(Default)]
pub(crate) struct Hub {
    peers: RwLock<HashMap<PeerId, Arc<Mailbox>>>,
}

impl Hub {
    /// Registers a new connection under a fresh random peer id (below 2^53, not in use
    /// here). Nodes of a cluster draw independently: with 53 random bits, a clash between
    /// two nodes' live ids is about (connections² / 2^54), one in 10^6 at 10^5 connections.
    pub(crate) fn register(&self, mailbox: &Arc<Mailbox>) -> Option<PeerId> {
        let mut peers = self.peers.write().ok()?;
        for _ in 0..16 {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).ok()?;
            let id = PeerId(u64::from_le_bytes(bytes) % PEER_ID_BOUND);
            if id.0 != 0 && !peers.contains_key(&id) {
                peers.insert(id, Arc::clone(mailbox));
                return Some(id);
            }
        }
        None
    }

    /// Queues an already-encoded message for `to`, if it is connected here. A full queue
    /// marks the target as a slow consumer (its task then closes it); nobody else waits.
    pub(crate) fn deliver(&self, to: PeerId, text: Utf8Bytes) {
        let Ok(peers) = self.peers.read() else { return };
        if let Some(mailbox) = peers.get(&to) {
            mailbox.post(text);
        }
    }

    /// Ends the connection that holds `peer` here, if any, as superseded: a newer
    /// connection of the same player took its place. It leaves nothing.
    pub(crate) fn supersede(&self, peer: PeerId) {
        let Ok(mut peers) = self.peers.write() else {
            return;
        };
        if let Some(stale) = peers.remove(&peer) {
            stale.kick(Kick::Superseded);
        }
    }

    /// The connection registered as `from` answers to `to` from now on (it resumed `to`'s
    /// lobby place); a connection that still held `to` here is superseded.
    pub(crate) fn rebind(&self, from: PeerId, to: PeerId) {
        let Ok(mut peers) = self.peers.write() else {
            return;
        };
        let Some(mailbox) = peers.remove(&from) else {
            return;
        };
        if let Some(stale) = peers.insert(to, Arc::clone(&mailbox))
            && !Arc::ptr_eq(&stale, &mailbox)
        {
            stale.kick(Kick::Superseded);
        }
    }

    /// Forgets `peer`'s connection, if `mailbox` is its (a newer one under the same id
    /// stays).
    pub(crate) fn remove(&self, peer: PeerId, mailbox: &Arc<Mailbox>) {
        if let Ok(mut peers) = self.peers.write()
            && peers.get(&peer).is_some_and(|m| Arc::ptr_eq(m, mailbox))
        {
            peers.remove(&peer);
        }
    }

    /// Queues `text` for every connection here (a slow consumer is kicked as usual).
    pub(crate) fn broadcast(&self, text: &Utf8Bytes) -> usize {
        let Ok(peers) = self.peers.read() else {
            return 0;
        };
        for mailbox in peers.values() {
            mailbox.post(text.clone());
        }
        peers.len()
    }

    /// Tells every connection here to end and come back (keeping its lobby place): the
    /// node lost events it should have delivered, or is going away.
    pub(crate) fn reconnect_all(&self) -> usize {
        let Ok(peers) = self.peers.read() else {
            return 0;
        };
        for mailbox in peers.values() {
            mailbox.kick(Kick::Reconnect);
        }
        peers.len()
    }
}
