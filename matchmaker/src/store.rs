//! Lobby and membership state, behind [`LobbyStore`].
//!
//! The server keeps no lobby state of its own: it asks a store. [`MemoryStore`] is the
//! embedded default. A shared store (Redis, a database) implements the same trait so several
//! matchmaker nodes can share lobbies; the methods return boxed futures so such a store can
//! do I/O. The server serializes lobby mutations on one node and wraps every call in a
//! timeout.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};

use squadlink_protocol::{Lobby, LobbySummary, Member, PeerId, Properties};

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
}

/// What a new lobby looks like.
#[derive(Debug, Clone)]
pub struct NewLobby {
    /// Member limit.
    pub max_members: u8,
    /// Listed publicly.
    pub public: bool,
    /// Properties.
    pub properties: Properties,
}

/// Lobby and membership state. Every method is one atomic step.
pub trait LobbyStore: Send + Sync + 'static {
    /// Creates a lobby with a fresh join code and `host` as its only member.
    fn create(&self, lobby: NewLobby, host: Member) -> BoxFuture<'_, Result<Lobby, StoreError>>;
    /// Adds `member` to the lobby `code` and returns the new state.
    fn join<'a>(
        &'a self,
        code: &'a str,
        member: Member,
    ) -> BoxFuture<'a, Result<Lobby, StoreError>>;
    /// Removes `peer` from lobby `code`; returns the remaining state, or `None` when the
    /// lobby is now empty and gone (or the peer was not in it).
    fn leave<'a>(
        &'a self,
        code: &'a str,
        peer: PeerId,
    ) -> BoxFuture<'a, Result<Option<Lobby>, StoreError>>;
    /// The lobby `code` as it is now, if it exists.
    fn get<'a>(&'a self, code: &'a str) -> BoxFuture<'a, Result<Option<Lobby>, StoreError>>;
    /// Whether `peer` is a member of lobby `code`.
    fn is_member<'a>(
        &'a self,
        code: &'a str,
        peer: PeerId,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Public lobbies with room whose properties contain all of `filter`, newest first.
    fn list_public<'a>(
        &'a self,
        filter: &'a Properties,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<LobbySummary>, StoreError>>;
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

struct Entry {
    lobby: Lobby,
    created: u64,
}

#[derive(Default)]
struct Inner {
    lobbies: HashMap<String, Entry>,
    peer_lobby: HashMap<PeerId, String>,
    created: u64,
}

/// The in-memory store: one process, state lost on restart.
pub struct MemoryStore {
    inner: Mutex<Inner>,
    max_lobbies: u32,
}

impl MemoryStore {
    /// A store that admits at most `max_lobbies` lobbies at once.
    pub fn new(max_lobbies: u32) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            max_lobbies,
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        // A poisoned lock means a previous holder panicked mid-update; we refuse rather than
        // serve possibly half-updated state.
        self.inner
            .lock()
            .map_err(|_| StoreError::Backend("memory store lock poisoned".into()))
    }

    fn create_now(&self, new: NewLobby, host: Member) -> Result<Lobby, StoreError> {
        let mut inner = self.lock()?;
        if let Some(code) = inner.peer_lobby.get(&host.peer_id) {
            return Err(StoreError::AlreadyInLobby(code.clone()));
        }
        if inner.lobbies.len() >= self.max_lobbies as usize {
            return Err(StoreError::TooManyLobbies(self.max_lobbies));
        }
        let mut code = random_code()?;
        let mut tries = 0;
        while inner.lobbies.contains_key(&code) {
            tries += 1;
            if tries > 32 {
                return Err(StoreError::Backend(
                    "could not find a free join code".into(),
                ));
            }
            code = random_code()?;
        }
        let lobby = Lobby {
            code: code.clone(),
            version: 1,
            host: host.peer_id,
            max_members: new.max_members,
            public: new.public,
            properties: new.properties,
            members: vec![host],
        };
        inner.created += 1;
        let created = inner.created;
        for m in &lobby.members {
            inner.peer_lobby.insert(m.peer_id, code.clone());
        }
        inner.lobbies.insert(
            code,
            Entry {
                lobby: lobby.clone(),
                created,
            },
        );
        Ok(lobby)
    }

    fn join_now(&self, code: &str, member: Member) -> Result<Lobby, StoreError> {
        let mut inner = self.lock()?;
        if let Some(current) = inner.peer_lobby.get(&member.peer_id) {
            return Err(StoreError::AlreadyInLobby(current.clone()));
        }
        let peer = member.peer_id;
        let entry = inner
            .lobbies
            .get_mut(code)
            .ok_or_else(|| StoreError::NotFound(code.to_owned()))?;
        let lobby = &mut entry.lobby;
        if lobby.members.len() >= usize::from(lobby.max_members) {
            return Err(StoreError::Full {
                code: code.to_owned(),
                max: lobby.max_members,
            });
        }
        lobby.members.push(member);
        lobby.version += 1;
        let snapshot = lobby.clone();
        inner.peer_lobby.insert(peer, code.to_owned());
        Ok(snapshot)
    }

    fn leave_now(&self, code: &str, peer: PeerId) -> Result<Option<Lobby>, StoreError> {
        let mut inner = self.lock()?;
        if inner.peer_lobby.get(&peer).map(String::as_str) == Some(code) {
            inner.peer_lobby.remove(&peer);
        }
        let Some(entry) = inner.lobbies.get_mut(code) else {
            return Ok(None);
        };
        let lobby = &mut entry.lobby;
        let before = lobby.members.len();
        lobby.members.retain(|m| m.peer_id != peer);
        if lobby.members.len() == before {
            return Ok(None);
        }
        let Some(first) = lobby.members.first() else {
            inner.lobbies.remove(code);
            return Ok(None);
        };
        if lobby.host == peer {
            lobby.host = first.peer_id;
        }
        lobby.version += 1;
        Ok(Some(lobby.clone()))
    }

    fn get_now(&self, code: &str) -> Result<Option<Lobby>, StoreError> {
        let inner = self.lock()?;
        Ok(inner.lobbies.get(code).map(|e| e.lobby.clone()))
    }

    fn is_member_now(&self, code: &str, peer: PeerId) -> Result<bool, StoreError> {
        let inner = self.lock()?;
        Ok(inner
            .lobbies
            .get(code)
            .is_some_and(|e| e.lobby.members.iter().any(|m| m.peer_id == peer)))
    }

    fn list_now(&self, filter: &Properties, limit: usize) -> Result<Vec<LobbySummary>, StoreError> {
        let inner = self.lock()?;
        let mut found: Vec<&Entry> = inner
            .lobbies
            .values()
            .filter(|e| {
                let l = &e.lobby;
                l.public
                    && l.members.len() < usize::from(l.max_members)
                    && filter.iter().all(|(k, v)| l.properties.get(k) == Some(v))
            })
            .collect();
        found.sort_unstable_by_key(|e| std::cmp::Reverse(e.created));
        Ok(found
            .into_iter()
            .take(limit)
            .map(|e| LobbySummary {
                code: e.lobby.code.clone(),
                members: u8::try_from(e.lobby.members.len()).unwrap_or(u8::MAX),
                max_members: e.lobby.max_members,
                properties: e.lobby.properties.clone(),
            })
            .collect())
    }
}

/// A store answer that is already known, as a boxed future.
fn ready<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

impl LobbyStore for MemoryStore {
    fn create(&self, lobby: NewLobby, host: Member) -> BoxFuture<'_, Result<Lobby, StoreError>> {
        ready(self.create_now(lobby, host))
    }

    fn join<'a>(
        &'a self,
        code: &'a str,
        member: Member,
    ) -> BoxFuture<'a, Result<Lobby, StoreError>> {
        ready(self.join_now(code, member))
    }

    fn leave<'a>(
        &'a self,
        code: &'a str,
        peer: PeerId,
    ) -> BoxFuture<'a, Result<Option<Lobby>, StoreError>> {
        ready(self.leave_now(code, peer))
    }

    fn get<'a>(&'a self, code: &'a str) -> BoxFuture<'a, Result<Option<Lobby>, StoreError>> {
        ready(self.get_now(code))
    }

    fn is_member<'a>(
        &'a self,
        code: &'a str,
        peer: PeerId,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        ready(self.is_member_now(code, peer))
    }

    fn list_public<'a>(
        &'a self,
        filter: &'a Properties,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<LobbySummary>, StoreError>> {
        ready(self.list_now(filter, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use squadlink_protocol::PlayerId;

    fn member(n: u64) -> Member {
        Member {
            peer_id: PeerId(n),
            player_id: PlayerId::parse(&format!("p{n}")).unwrap(),
            data: Properties::new(),
        }
    }

    fn new_lobby(max: u8, public: bool, mode: &str) -> NewLobby {
        NewLobby {
            max_members: max,
            public,
            properties: [("mode".to_string(), mode.to_string())].into(),
        }
    }

    #[test]
    fn host_hands_over_and_empty_lobbies_vanish() {
        let s = MemoryStore::new(10);
        let l = s.create_now(new_lobby(3, false, "ffa"), member(1)).unwrap();
        assert_eq!(l.code.len(), CODE_LEN);
        s.join_now(&l.code, member(2)).unwrap();
        let full = s.join_now(&l.code, member(3)).unwrap();
        assert_eq!(full.version, 3);
        assert!(matches!(
            s.join_now(&l.code, member(4)),
            Err(StoreError::Full { .. })
        ));
        assert!(matches!(
            s.join_now(&l.code, member(2)),
            Err(StoreError::AlreadyInLobby(_))
        ));
        let after = s.leave_now(&l.code, PeerId(1)).unwrap().unwrap();
        assert_eq!(after.host, PeerId(2));
        assert_eq!(after.members.len(), 2);
        assert!(s.is_member_now(&l.code, PeerId(3)).unwrap());
        assert!(!s.is_member_now(&l.code, PeerId(1)).unwrap());
        s.leave_now(&l.code, PeerId(2)).unwrap();
        assert_eq!(s.leave_now(&l.code, PeerId(3)).unwrap(), None);
        assert!(matches!(
            s.join_now(&l.code, member(5)),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn listing_filters_hides_private_and_full() {
        let s = MemoryStore::new(2);
        let a = s.create_now(new_lobby(2, true, "ctf"), member(1)).unwrap();
        s.create_now(new_lobby(2, false, "ctf"), member(2)).unwrap();
        assert!(matches!(
            s.create_now(new_lobby(2, true, "ctf"), member(3)),
            Err(StoreError::TooManyLobbies(2))
        ));
        let ctf: Properties = [("mode".to_string(), "ctf".to_string())].into();
        let listed = s.list_now(&ctf, 10).unwrap();
        assert_eq!(
            listed.iter().map(|l| l.code.as_str()).collect::<Vec<_>>(),
            [a.code.as_str()]
        );
        let dm: Properties = [("mode".to_string(), "dm".to_string())].into();
        assert!(s.list_now(&dm, 10).unwrap().is_empty());
        s.join_now(&a.code, member(4)).unwrap();
        assert!(s.list_now(&ctf, 10).unwrap().is_empty());
    }
}
