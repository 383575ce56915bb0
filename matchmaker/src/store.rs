//! Lobby state behind one seam: where lobby records live and how the messages that go
//! with a change reach the members.
//!
//! The server keeps no lobby state of its own: it reads a [`crate::lobby::Record`], makes
//! the changed one (pure rules in `lobby.rs`) and commits it with its messages through a
//! `LobbyStore`. A commit applies only if the record is still the one read (compare and
//! set), and its messages go out in commit order, so every member sees lobby changes in
//! the same order on one node or many. Two stores implement the seam: `MemoryStore` (the
//! embedded default: one process) and `crate::redis_store::RedisStore` (several nodes
//! sharing lobbies through Redis). Their methods return boxed futures so a store can do
//! I/O; the server wraps every call in a timeout.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::Utf8Bytes;
use squadlink_protocol::{LobbySummary, PeerId, PlayerId, Properties};
use tokio::sync::oneshot;

use crate::hub::Hub;
use crate::lobby::{Holder, Record};
pub(crate) use crate::lobby::{Identity, NewLobby, Seat};

/// Most entries in lobby properties or member data.
pub const MAX_PROPERTIES: u8 = 16;
/// Longest property key, in bytes.
pub const MAX_PROPERTY_KEY: usize = 64;
/// Longest property value, in bytes.
pub const MAX_PROPERTY_VALUE: usize = 256;
/// Length of a join code.
pub const CODE_LEN: usize = 5;
/// Characters of join codes: no 0/O or 1/I to misread.
const CODE_ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";

/// A boxed, sendable future, as returned by [`LobbyStore`] methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No lobby has that code.
    #[error("no lobby has code {0:?}; check the code or list public lobbies")]
    NotFound(String),
    /// The lobby has reached its member limit.
    #[error("lobby {code} is full ({max} members)")]
    Full {
        /// The lobby's code.
        code: String,
        /// Its member limit.
        max: u8,
    },
    /// The peer is already a member of a lobby.
    #[error("already in lobby {0}; leave it first")]
    AlreadyInLobby(String),
    /// The lobby limit is reached.
    #[error("the server's lobby limit ({0}) is reached; try again later")]
    TooManyLobbies(u32),
    /// The backend failed (I/O, poisoned state…).
    #[error("lobby store failed: {0}")]
    Backend(String),
    /// The shared store (Redis) did not answer: the cluster cannot change lobbies now.
    #[error("the lobby store is unreachable ({0}); try again in a few seconds")]
    Unavailable(String),
    /// The lobby kept changing under this request (many members joining at once).
    #[error("lobby {0} is changing too fast; try again")]
    Busy(String),
}

/// What the server does with a change besides storing it, in order.
#[derive(Debug, Clone)]
pub(crate) enum Notice {
    /// Send `texts` to each of `to` (a peer and the node its connection lives on).
    Deliver {
        to: Vec<(PeerId, String)>,
        texts: Vec<Utf8Bytes>,
    },
    /// End the connection that holds `peer` on `node` without leaving: a newer connection
    /// of the same player took its place.
    Supersede { peer: PeerId, node: String },
}

/// One change to one lobby, with its messages.
#[derive(Debug, Clone)]
pub(crate) struct Commit {
    pub(crate) code: String,
    /// The record it was made from; `None` to create the lobby (its code must be free).
    pub(crate) before: Option<Record>,
    /// The record to store; `None` to end the lobby.
    pub(crate) after: Option<Record>,
    pub(crate) notices: Vec<Notice>,
}

/// What became of a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Stored; its notices are on their way.
    Applied,
    /// The record changed since it was read (or the code was taken): read again and retry.
    Conflict,
    /// Creating it would exceed the lobby limit.
    LobbyLimit,
}

/// What became of a relayed signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Relayed {
    /// On its way to the receiver's node.
    Sent,
    /// The sender is no longer a member of that lobby.
    SenderGone,
    /// The receiver is not a member of that lobby.
    NotMember,
}

/// A relayed signal's answer: known at once (one node), or once the store has checked it
/// (a cluster relays in batches). Signals are checked in the order they were handed over.
#[derive(Debug)]
pub(crate) enum RelayAnswer {
    /// Checked already.
    Ready(Result<Relayed, StoreError>),
    /// Queued; the answer comes when its batch has been through the store.
    Queued(oneshot::Receiver<Result<Relayed, StoreError>>),
}

impl RelayAnswer {
    /// The answer, waiting for it if needed. Cancel-safe.
    pub(crate) async fn get(&mut self) -> Result<Relayed, StoreError> {
        match self {
            Self::Ready(answer) => answer.clone(),
            Self::Queued(answered) => answered.await.unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "the relay stopped before answering (the node is shutting down)".into(),
                ))
            }),
        }
    }
}

/// Places whose node stopped: their connections are gone without anyone detaching them.
#[derive(Debug, Default)]
pub(crate) struct Orphans {
    /// `(lobby code, peer, the holder that is gone)`.
    pub(crate) places: Vec<(String, PeerId, Holder)>,
    /// The dead nodes those places were on.
    pub(crate) nodes: Vec<String>,
}

/// Lobby records and the delivery of their changes. Every method is one atomic step.
pub(crate) trait LobbyStore: Send + Sync + 'static {
    /// Which lobby state this is: random, new whenever the state starts empty (a restart of
    /// an in-memory store, a Redis that lost its data). Clients use it to tell a restart
    /// from a reconnect.
    fn instance(&self) -> String;
    /// This node's id, as recorded in the places of its connections.
    fn node(&self) -> &str;
    /// The lobby `code`, if it exists.
    fn load<'a>(&'a self, code: &'a str) -> BoxFuture<'a, Result<Option<Record>, StoreError>>;
    /// Stores a change if the record is still `commit.before`, then sends its notices.
    fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<Outcome, StoreError>>;
    /// Sends `text` to `to` if both it and `from` are members of lobby `code`. Returns
    /// once the signal is handed over (in order: a caller's signals are checked and sent
    /// in the order of its calls); the answer may come later.
    fn relay<'a>(
        &'a self,
        code: &'a str,
        from: PeerId,
        to: PeerId,
        text: Utf8Bytes,
    ) -> BoxFuture<'a, Result<RelayAnswer, StoreError>>;
    /// Public lobbies with room whose properties contain all of `filter`, newest first.
    fn list_public<'a>(
        &'a self,
        filter: &'a Properties,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<LobbySummary>, StoreError>>;
    /// Places whose rejoin grace ended at or before `now` (unix ms): `(code, peer)`.
    fn due_graces(&self, now: u64) -> BoxFuture<'_, Result<Vec<(String, PeerId)>, StoreError>>;
    /// Marks this node alive and finds the places of nodes that stopped doing so.
    fn heartbeat(&self, now: u64) -> BoxFuture<'_, Result<Orphans, StoreError>>;
    /// Forgets dead nodes whose places have all been detached.
    fn forget_nodes<'a>(&'a self, nodes: &'a [String]) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Lobbies in the store, and places held through this node (for the metrics).
    fn counts(&self) -> BoxFuture<'_, Result<(u64, u64), StoreError>>;
    /// Whether the store can serve now (for `/readyz`); `Err` says why not.
    fn ready(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Whether lobbies are shared with other nodes (so draining players can move).
    fn shared(&self) -> bool;
    /// Counts connection `conn` of `player` (proved as `identity`) unless the player already
    /// has `max` live connections (on any node): then `false`.
    fn admit<'a>(
        &'a self,
        player: &'a PlayerId,
        identity: Identity,
        conn: u64,
        max: u32,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Stops counting connection `conn` of `player`.
    fn release<'a>(
        &'a self,
        player: &'a PlayerId,
        identity: Identity,
        conn: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// Unix time in milliseconds: the clock of grace deadlines and heartbeats, which every
/// node of a cluster shares.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A random identifier of `bytes` random bytes, in hex.
pub fn random_hex(bytes: usize) -> Result<String, StoreError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| StoreError::Backend(format!("no randomness: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Generates a random join code.
pub fn random_code() -> Result<String, StoreError> {
    let mut bytes = [0u8; CODE_LEN];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Backend(format!("no randomness: {e}")))?;
    Ok(bytes
        .iter()
        .map(|b| {
            char::from(
                CODE_ALPHABET
                    .get(usize::from(*b & 31))
                    .copied()
                    .unwrap_or(b'Z'),
            )
        })
        .collect())
}

/// A random instance or node id; without randomness only less unique (the clock).
pub(crate) fn random_id() -> String {
    random_hex(8).unwrap_or_else(|_| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        format!("{nanos:016x}")
    })
}

#[derive(Default)]
struct Inner {
    lobbies: HashMap<String, Record>,
    /// `(deadline, code, peer)` of detached places.
    graces: BTreeSet<(u64, String, PeerId)>,
}

/// The in-memory store: one process, state lost on restart. Notices are delivered to this
/// process's connections while the change is applied, so they go out in commit order.
pub(crate) struct MemoryStore {
    inner: Mutex<Inner>,
    /// Live connections per player (and way of authenticating), for the per-player cap.
    players: Mutex<HashMap<(PlayerId, Identity), u32>>,
    max_lobbies: u32,
    instance: String,
    hub: Arc<Hub>,
}

/// The node id of the single-node store.
const LOCAL_NODE: &str = "local";

impl MemoryStore {
    /// A store that admits at most `max_lobbies` lobbies at once and delivers through `hub`.
    pub(crate) fn new(max_lobbies: u32, hub: Arc<Hub>) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            players: Mutex::new(HashMap::new()),
            max_lobbies,
            instance: random_id(),
            hub,
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        // A poisoned lock means a previous holder panicked mid-update; we refuse rather than
        // serve possibly half-updated state.
        self.inner
            .lock()
            .map_err(|_| StoreError::Backend("memory store lock poisoned".into()))
    }

    fn commit_now(&self, commit: Commit) -> Result<Outcome, StoreError> {
        let mut inner = self.lock()?;
        let current = inner.lobbies.get(&commit.code);
        match (&commit.before, current) {
            (None, Some(_)) => return Ok(Outcome::Conflict),
            (None, None) if inner.lobbies.len() >= self.max_lobbies as usize => {
                return Ok(Outcome::LobbyLimit);
            }
            (Some(before), Some(now)) if before.rev != now.rev => return Ok(Outcome::Conflict),
            (Some(_), None) => return Ok(Outcome::Conflict),
            _ => {}
        }
        if let Some(before) = &commit.before {
            for (peer, until) in detached(before) {
                inner.graces.remove(&(until, commit.code.clone(), peer));
            }
        }
        match commit.after {
            Some(after) => {
                for (peer, until) in detached(&after) {
                    inner.graces.insert((until, commit.code.clone(), peer));
                }
                inner.lobbies.insert(commit.code, after);
            }
            None => {
                inner.lobbies.remove(&commit.code);
            }
        }
        // Delivered under the lock: the next change's messages cannot overtake these.
        for notice in commit.notices {
            match notice {
                Notice::Deliver { to, texts } => {
                    for text in texts {
                        for (peer, _) in &to {
                            self.hub.deliver(*peer, text.clone());
                        }
                    }
                }
                Notice::Supersede { peer, .. } => self.hub.supersede(peer),
            }
        }
        Ok(Outcome::Applied)
    }

    fn relay_now(
        &self,
        code: &str,
        from: PeerId,
        to: PeerId,
        text: Utf8Bytes,
    ) -> Result<Relayed, StoreError> {
        let inner = self.lock()?;
        let Some(record) = inner.lobbies.get(code) else {
            return Ok(Relayed::SenderGone);
        };
        if !record.has_member(from) {
            return Ok(Relayed::SenderGone);
        }
        if !record.has_member(to) {
            return Ok(Relayed::NotMember);
        }
        self.hub.deliver(to, text);
        Ok(Relayed::Sent)
    }

    fn list_now(&self, filter: &Properties, limit: usize) -> Result<Vec<LobbySummary>, StoreError> {
        let inner = self.lock()?;
        let mut found: Vec<&Record> = inner
            .lobbies
            .values()
            .filter(|r| r.listed_for(filter))
            .collect();
        found.sort_unstable_by_key(|r| std::cmp::Reverse(r.created));
        Ok(found.into_iter().take(limit).map(Record::summary).collect())
    }

    fn due_now(&self, now: u64) -> Result<Vec<(String, PeerId)>, StoreError> {
        let inner = self.lock()?;
        Ok(inner
            .graces
            .iter()
            .take_while(|(until, _, _)| *until <= now)
            .map(|(_, code, peer)| (code.clone(), *peer))
            .collect())
    }
}

/// Detached places of a record: `(peer, deadline)`.
pub(crate) fn detached(record: &Record) -> impl Iterator<Item = (PeerId, u64)> + '_ {
    record
        .places
        .iter()
        .filter_map(|p| p.detached_until.map(|t| (p.peer, t)))
}

/// A store answer that is already known, as a boxed future.
fn ready<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

impl LobbyStore for MemoryStore {
    fn instance(&self) -> String {
        self.instance.clone()
    }

    fn node(&self) -> &str {
        LOCAL_NODE
    }

    fn load<'a>(&'a self, code: &'a str) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        ready(self.lock().map(|inner| inner.lobbies.get(code).cloned()))
    }

    fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<Outcome, StoreError>> {
        ready(self.commit_now(commit))
    }

    fn relay<'a>(
        &'a self,
        code: &'a str,
        from: PeerId,
        to: PeerId,
        text: Utf8Bytes,
    ) -> BoxFuture<'a, Result<RelayAnswer, StoreError>> {
        ready(Ok(RelayAnswer::Ready(self.relay_now(code, from, to, text))))
    }

    fn list_public<'a>(
        &'a self,
        filter: &'a Properties,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<LobbySummary>, StoreError>> {
        ready(self.list_now(filter, limit))
    }

    fn due_graces(&self, now: u64) -> BoxFuture<'_, Result<Vec<(String, PeerId)>, StoreError>> {
        ready(self.due_now(now))
    }

    fn heartbeat(&self, _now: u64) -> BoxFuture<'_, Result<Orphans, StoreError>> {
        // One process: if this node stopped, so did its lobbies.
        ready(Ok(Orphans::default()))
    }

    fn forget_nodes<'a>(&'a self, _nodes: &'a [String]) -> BoxFuture<'a, Result<(), StoreError>> {
        ready(Ok(()))
    }

    fn counts(&self) -> BoxFuture<'_, Result<(u64, u64), StoreError>> {
        ready(self.lock().map(|inner| {
            let members: usize = inner.lobbies.values().map(|r| r.places.len()).sum();
            (
                u64::try_from(inner.lobbies.len()).unwrap_or(u64::MAX),
                u64::try_from(members).unwrap_or(u64::MAX),
            )
        }))
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        ready(self.lock().map(|_| ()))
    }

    fn shared(&self) -> bool {
        false
    }

    fn admit<'a>(
        &'a self,
        player: &'a PlayerId,
        identity: Identity,
        _conn: u64,
        max: u32,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let admitted = self.players.lock().map(|mut players| {
            let count = players.entry((player.clone(), identity)).or_insert(0);
            if *count >= max {
                return false;
            }
            *count += 1;
            true
        });
        ready(admitted.map_err(|_| StoreError::Backend("player count lock poisoned".into())))
    }

    fn release<'a>(
        &'a self,
        player: &'a PlayerId,
        identity: Identity,
        _conn: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        if let Ok(mut players) = self.players.lock() {
            let key = (player.clone(), identity);
            match players.get_mut(&key) {
                Some(n) if *n > 1 => *n -= 1,
                _ => {
                    players.remove(&key);
                }
            }
        }
        ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lobby::Holder;
    use squadlink_protocol::{Member, PlayerId};

    fn seat(n: u64) -> Seat {
        Seat {
            member: Member {
                peer_id: PeerId(n),
                player_id: PlayerId::parse(&format!("p{n}")).unwrap(),
                data: Properties::new(),
            },
            identity: Identity::Anonymous,
        }
    }

    fn new_lobby(max: u8, public: bool) -> NewLobby {
        NewLobby {
            max_members: max,
            public,
            properties: Properties::new(),
        }
    }

    fn here(conn: u64) -> Holder {
        Holder {
            node: LOCAL_NODE.into(),
            conn,
        }
    }

    fn create(s: &MemoryStore, code: &str, public: bool, host: u64) -> (Outcome, Record) {
        let r = Record::create(
            code.into(),
            new_lobby(3, public),
            seat(host),
            here(host),
            host,
        );
        let commit = Commit {
            code: code.into(),
            before: None,
            after: Some(r.clone()),
            notices: Vec::new(),
        };
        (s.commit_now(commit).unwrap(), r)
    }

    #[test]
    fn a_commit_applies_only_to_the_record_it_was_made_from() {
        let s = MemoryStore::new(10, Arc::new(Hub::default()));
        let (first, r) = create(&s, "AAAAA", false, 1);
        assert_eq!(first, Outcome::Applied);
        assert_eq!(
            create(&s, "AAAAA", false, 2).0,
            Outcome::Conflict,
            "code taken"
        );
        let joined = r.joined(seat(2), here(2)).unwrap();
        let commit = |before: &Record, after: Record| Commit {
            code: "AAAAA".into(),
            before: Some(before.clone()),
            after: Some(after),
            notices: Vec::new(),
        };
        assert_eq!(
            s.commit_now(commit(&r, joined.clone())).unwrap(),
            Outcome::Applied
        );
        let stale = r.joined(seat(3), here(3)).unwrap();
        assert_eq!(s.commit_now(commit(&r, stale)).unwrap(), Outcome::Conflict);
        assert_eq!(s.load_now("AAAAA"), Some(joined));
    }

    #[test]
    fn graces_come_due_in_deadline_order_and_go_with_the_place() {
        let s = MemoryStore::new(10, Arc::new(Hub::default()));
        let (_, r) = create(&s, "BBBBB", false, 1);
        let d = r.detached(PeerId(1), &here(1), 50).unwrap();
        let commit = Commit {
            code: "BBBBB".into(),
            before: Some(r),
            after: Some(d.clone()),
            notices: Vec::new(),
        };
        s.commit_now(commit).unwrap();
        assert!(s.due_now(49).unwrap().is_empty());
        assert_eq!(s.due_now(50).unwrap(), [("BBBBB".to_string(), PeerId(1))]);
        let commit = Commit {
            code: "BBBBB".into(),
            before: Some(d),
            after: None,
            notices: Vec::new(),
        };
        s.commit_now(commit).unwrap();
        assert!(s.due_now(u64::MAX).unwrap().is_empty());
    }

    #[test]
    fn listing_and_the_lobby_limit() {
        let s = MemoryStore::new(2, Arc::new(Hub::default()));
        create(&s, "CCCCC", true, 1);
        create(&s, "DDDDD", false, 2);
        assert_eq!(create(&s, "EEEEE", true, 3).0, Outcome::LobbyLimit);
        let listed = s.list_now(&Properties::new(), 10).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].code, "CCCCC");
    }

    impl MemoryStore {
        fn load_now(&self, code: &str) -> Option<Record> {
            self.lock().unwrap().lobbies.get(code).cloned()
        }
    }
}
