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

use squadlink_protocol::{Lobby, LobbySummary, Member, PeerId, PlayerId, Properties};

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

/// How a member proved who it is. A membership can only be resumed by a connection that
/// proved its player id the same way: an anonymous (dev-mode) client never takes over a
/// token-authenticated player's place, nor the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A token signed with the auth secret named the player.
    Token,
    /// A dev-mode client chose (or was given) its player id.
    Anonymous,
}

/// A lobby place: the member as the others see it, and how it proved its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    /// The member.
    pub member: Member,
    /// How it authenticated.
    pub identity: Identity,
}

/// A player's place found in a lobby: the lobby as it is, and the place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The lobby now.
    pub lobby: Lobby,
    /// The peer id that holds the place.
    pub peer_id: PeerId,
    /// How that member authenticated.
    pub identity: Identity,
}

/// Lobby and membership state. Every method is one atomic step.
pub trait LobbyStore: Send + Sync + 'static {
    /// Which lobby state this is: random, new whenever the state starts empty (a restart of
    /// an in-memory store). Clients use it to tell a server restart from a reconnect.
    fn instance(&self) -> &str;
    /// Creates a lobby with a fresh join code and `host` as its only member.
    fn create(&self, lobby: NewLobby, host: Seat) -> BoxFuture<'_, Result<Lobby, StoreError>>;
    /// Adds `seat` to the lobby `code` and returns the new state.
    fn join<'a>(&'a self, code: &'a str, seat: Seat) -> BoxFuture<'a, Result<Lobby, StoreError>>;
    /// The place of `player` in lobby `code`, if the lobby exists and has one.
    fn find_player<'a>(
        &'a self,
        code: &'a str,
        player: &'a PlayerId,
    ) -> BoxFuture<'a, Result<Option<Found>, StoreError>>;
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

struct Entry {
    lobby: Lobby,
    /// How each member authenticated (a few members per lobby: a list, not a map).
    identities: Vec<(PeerId, Identity)>,
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
    instance: String,
}

impl MemoryStore {
    /// A store that admits at most `max_lobbies` lobbies at once.
    pub fn new(max_lobbies: u32) -> Self {
        // Without randomness the instance is only less unique; the store still works.
        let instance = random_hex(8).unwrap_or_else(|_| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            format!("{nanos:016x}")
        });
        Self {
            inner: Mutex::new(Inner::default()),
            max_lobbies,
            instance,
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        // A poisoned lock means a previous holder panicked mid-update; we refuse rather than
        // serve possibly half-updated state.
        self.inner
            .lock()
            .map_err(|_| StoreError::Backend("memory store lock poisoned".into()))
    }

    fn create_now(&self, new: NewLobby, host: Seat) -> Result<Lobby, StoreError> {
        let Seat {
            member: host,
            identity,
        } = host;
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
                identities: vec![(lobby.host, identity)],
                lobby: lobby.clone(),
                created,
            },
        );
        Ok(lobby)
    }

    fn join_now(&self, code: &str, seat: Seat) -> Result<Lobby, StoreError> {
        let Seat { member, identity } = seat;
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
        entry.identities.retain(|(id, _)| *id != peer);
        entry.identities.push((peer, identity));
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
        entry.identities.retain(|(id, _)| *id != peer);
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

    fn find_player_now(&self, code: &str, player: &PlayerId) -> Result<Option<Found>, StoreError> {
        let inner = self.lock()?;
        let Some(entry) = inner.lobbies.get(code) else {
            return Ok(None);
        };
        let Some(member) = entry.lobby.members.iter().find(|m| &m.player_id == player) else {
            return Ok(None);
        };
        Ok(Some(Found {
            lobby: entry.lobby.clone(),
            peer_id: member.peer_id,
            // A place created without a recorded identity is treated as the stricter kind.
            identity: entry
                .identities
                .iter()
                .find(|(id, _)| *id == member.peer_id)
                .map_or(Identity::Token, |(_, identity)| *identity),
        }))
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
    fn instance(&self) -> &str {
        &self.instance
    }

    fn create(&self, lobby: NewLobby, host: Seat) -> BoxFuture<'_, Result<Lobby, StoreError>> {
        ready(self.create_now(lobby, host))
    }

    fn join<'a>(&'a self, code: &'a str, seat: Seat) -> BoxFuture<'a, Result<Lobby, StoreError>> {
        ready(self.join_now(code, seat))
    }

    fn find_player<'a>(
        &'a self,
        code: &'a str,
        player: &'a PlayerId,
    ) -> BoxFuture<'a, Result<Option<Found>, StoreError>> {
        ready(self.find_player_now(code, player))
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

    fn member(n: u64) -> Seat {
        Seat {
            member: Member {
                peer_id: PeerId(n),
                player_id: PlayerId::parse(&format!("p{n}")).unwrap(),
                data: Properties::new(),
            },
            identity: if n.is_multiple_of(2) {
                Identity::Token
            } else {
                Identity::Anonymous
            },
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
        let p2 = PlayerId::parse("p2").unwrap();
        let found = s.find_player_now(&l.code, &p2).unwrap().unwrap();
        assert_eq!(
            (found.peer_id, found.identity),
            (PeerId(2), Identity::Token)
        );
        let p3 = PlayerId::parse("p3").unwrap();
        let found = s.find_player_now(&l.code, &p3).unwrap().unwrap();
        assert_eq!(found.identity, Identity::Anonymous);
        let after = s.leave_now(&l.code, PeerId(1)).unwrap().unwrap();
        assert_eq!(after.host, PeerId(2));
        assert_eq!(after.members.len(), 2);
        assert!(s.is_member_now(&l.code, PeerId(3)).unwrap());
        assert!(!s.is_member_now(&l.code, PeerId(1)).unwrap());
        s.leave_now(&l.code, PeerId(2)).unwrap();
        assert_eq!(s.find_player_now(&l.code, &p2).unwrap(), None);
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
