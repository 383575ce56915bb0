//! A lobby as the store keeps it, and its changes as pure functions: no I/O, no clock (times
//! are arguments), so the single node and the cluster apply exactly the same rules.
//!
//! A [`Record`] is the lobby the members see ([`Lobby`]) plus, per member, where its
//! connection lives ([`Place`]: node, connection, rejoin-grace deadline). Every change makes
//! a new record with a higher `rev`; stores commit it only if the stored `rev` is still the
//! one it was made from (compare-and-set), so concurrent changes from several nodes never
//! overwrite each other: the loser reads again and retries.

use serde::{Deserialize, Serialize};
use squadlink_protocol::{Lobby, LobbySummary, Member, PeerId, PlayerId, Properties};

/// What a new lobby looks like.
#[derive(Debug, Clone)]
pub(crate) struct NewLobby {
    /// Member limit.
    pub(crate) max_members: u8,
    /// Listed publicly.
    pub(crate) public: bool,
    /// Properties.
    pub(crate) properties: Properties,
}

/// How a member proved who it is. A membership can only be resumed by a connection that
/// proved its player id the same way: an anonymous (dev-mode) client never takes over a
/// token-authenticated player's place, nor the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Identity {
    /// A token signed with the auth secret named the player.
    Token,
    /// A dev-mode client chose (or was given) its player id.
    Anonymous,
}

/// A lobby place: the member as the others see it, and how it proved its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seat {
    /// The member.
    pub(crate) member: Member,
    /// How it authenticated.
    pub(crate) identity: Identity,
}

/// The lobby has reached its member limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full {
    /// Its member limit.
    pub(crate) max: u8,
}

/// Where a connection lives: its node and, on that node, which connection it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Holder {
    /// The node's id (see `LobbyStore::node`).
    pub(crate) node: String,
    /// The connection's random id on that node: a connection that has been superseded by a
    /// newer one of the same player must not leave or detach the place it no longer holds.
    pub(crate) conn: u64,
}

/// What the store keeps per member beside what the members see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Place {
    pub(crate) peer: PeerId,
    pub(crate) identity: Identity,
    pub(crate) holder: Holder,
    /// Unix milliseconds at which the place ends unless its player comes back; `None` while
    /// connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) detached_until: Option<u64>,
}

/// One lobby in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// Store revision: grows on every change, including ones the members do not see.
    pub(crate) rev: u64,
    /// Unix milliseconds of creation (public lists are newest first).
    pub(crate) created: u64,
    pub(crate) lobby: Lobby,
    pub(crate) places: Vec<Place>,
}

impl Record {
    /// A new lobby `code` with `host` as its only member.
    pub(crate) fn create(code: String, new: NewLobby, host: Seat, at: Holder, now: u64) -> Self {
        let Seat { member, identity } = host;
        let place = Place {
            peer: member.peer_id,
            identity,
            holder: at,
            detached_until: None,
        };
        Self {
            rev: 1,
            created: now,
            lobby: Lobby {
                code,
                version: 1,
                host: member.peer_id,
                max_members: new.max_members,
                public: new.public,
                properties: new.properties,
                members: vec![member],
            },
            places: vec![place],
        }
    }

    /// The lobby with `seat` added.
    pub(crate) fn joined(&self, seat: Seat, at: Holder) -> Result<Self, Full> {
        if self.lobby.members.len() >= usize::from(self.lobby.max_members) {
            return Err(Full {
                max: self.lobby.max_members,
            });
        }
        let Seat { member, identity } = seat;
        let mut next = self.clone();
        next.rev += 1;
        next.lobby.version += 1;
        next.places.retain(|p| p.peer != member.peer_id);
        next.places.push(Place {
            peer: member.peer_id,
            identity,
            holder: at,
            detached_until: None,
        });
        next.lobby.members.push(member);
        Ok(next)
    }

    /// The member with player id `player` and its place, if it has one here.
    pub(crate) fn find_player(&self, player: &PlayerId) -> Option<(&Member, Identity)> {
        let member = self.lobby.members.iter().find(|m| &m.player_id == player)?;
        // A member without a recorded place is treated as the stricter kind.
        let identity = self
            .place(member.peer_id)
            .map_or(Identity::Token, |p| p.identity);
        Some((member, identity))
    }

    /// `peer`'s place.
    pub(crate) fn place(&self, peer: PeerId) -> Option<&Place> {
        self.places.iter().find(|p| p.peer == peer)
    }

    /// Whether `peer` is a member.
    pub(crate) fn has_member(&self, peer: PeerId) -> bool {
        self.lobby.members.iter().any(|m| m.peer_id == peer)
    }

    /// The lobby with `peer`'s place taken over by the connection `at` (the same player,
    /// reconnected): connected again, same peer id. Members see no change.
    pub(crate) fn resumed(&self, peer: PeerId, at: Holder) -> Self {
        let mut next = self.clone();
        next.rev += 1;
        if let Some(place) = next.places.iter_mut().find(|p| p.peer == peer) {
            place.holder = at;
            place.detached_until = None;
        }
        next
    }

    /// The lobby without `peer` (the host passes to the longest-present member); `None` when
    /// the lobby is now empty and ends. `Err` when `peer` is not a member.
    pub(crate) fn without(&self, peer: PeerId) -> Result<Option<Self>, NotMember> {
        if !self.has_member(peer) {
            return Err(NotMember);
        }
        let mut next = self.clone();
        next.rev += 1;
        next.lobby.version += 1;
        next.lobby.members.retain(|m| m.peer_id != peer);
        next.places.retain(|p| p.peer != peer);
        let Some(first) = next.lobby.members.first() else {
            return Ok(None);
        };
        if next.lobby.host == peer {
            next.lobby.host = first.peer_id;
        }
        Ok(Some(next))
    }

    /// The lobby with `peer`'s place kept until `until` (unix ms) for its player to come
    /// back; `None` when the connection `holder` no longer holds the place (it was taken
    /// over) or it is already detached.
    pub(crate) fn detached(&self, peer: PeerId, holder: &Holder, until: u64) -> Option<Self> {
        let place = self.place(peer)?;
        if &place.holder != holder || place.detached_until.is_some() {
            return None;
        }
        let mut next = self.clone();
        next.rev += 1;
        if let Some(place) = next.places.iter_mut().find(|p| p.peer == peer) {
            place.detached_until = Some(until);
        }
        Some(next)
    }

    /// Whether the lobby is listed for `filter` (public, room left, every property matches).
    pub(crate) fn listed_for(&self, filter: &Properties) -> bool {
        let l = &self.lobby;
        l.public
            && l.members.len() < usize::from(l.max_members)
            && filter.iter().all(|(k, v)| l.properties.get(k) == Some(v))
    }

    /// The lobby as `list_lobbies` shows it.
    pub(crate) fn summary(&self) -> LobbySummary {
        LobbySummary {
            code: self.lobby.code.clone(),
            members: u8::try_from(self.lobby.members.len()).unwrap_or(u8::MAX),
            max_members: self.lobby.max_members,
            properties: self.lobby.properties.clone(),
        }
    }

    /// Members and the node each one's connection lives on (detached ones included: a
    /// message to them is dropped where they were).
    pub(crate) fn nodes(&self) -> impl Iterator<Item = (PeerId, &str)> + '_ {
        self.places.iter().map(|p| (p.peer, p.holder.node.as_str()))
    }
}

/// The peer was not a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotMember;

#[cfg(test)]
mod tests {
    use super::*;

    fn seat(n: u64) -> Seat {
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

    fn at(node: &str, conn: u64) -> Holder {
        Holder {
            node: node.into(),
            conn,
        }
    }

    fn lobby(max: u8) -> Record {
        let new = NewLobby {
            max_members: max,
            public: true,
            properties: [("mode".to_string(), "ctf".to_string())].into(),
        };
        Record::create("ABCDE".into(), new, seat(1), at("a", 1), 100)
    }

    #[test]
    fn every_change_raises_the_revision_and_visible_ones_the_version() {
        let r = lobby(3);
        let j = r.joined(seat(2), at("b", 2)).unwrap();
        assert_eq!((j.rev, j.lobby.version), (2, 2));
        let d = j.detached(PeerId(2), &at("b", 2), 500).unwrap();
        assert_eq!((d.rev, d.lobby.version), (3, 2), "a detach is not visible");
        let back = d.resumed(PeerId(2), at("c", 9));
        assert_eq!((back.rev, back.lobby.version), (4, 2));
        assert_eq!(back.place(PeerId(2)).unwrap().holder, at("c", 9));
        assert_eq!(back.place(PeerId(2)).unwrap().detached_until, None);
    }

    #[test]
    fn a_full_lobby_refuses_and_the_host_passes_to_the_longest_present() {
        let r = lobby(2).joined(seat(2), at("a", 2)).unwrap();
        assert!(matches!(
            r.joined(seat(3), at("a", 3)),
            Err(Full { max: 2 })
        ));
        let left = r.without(PeerId(1)).unwrap().unwrap();
        assert_eq!(left.lobby.host, PeerId(2));
        assert_eq!(left.places.len(), 1);
        assert_eq!(
            left.without(PeerId(2)),
            Ok(None),
            "the last one out ends it"
        );
        assert_eq!(left.without(PeerId(7)), Err(NotMember));
    }

    #[test]
    fn only_the_connection_that_holds_a_place_can_detach_it() {
        let r = lobby(3).joined(seat(2), at("a", 2)).unwrap();
        let taken = r.resumed(PeerId(2), at("b", 5));
        assert_eq!(taken.detached(PeerId(2), &at("a", 2), 9), None);
        let d = taken.detached(PeerId(2), &at("b", 5), 9).unwrap();
        assert_eq!(d.detached(PeerId(2), &at("b", 5), 20), None, "once");
        assert_eq!(d.place(PeerId(2)).unwrap().detached_until, Some(9));
    }

    #[test]
    fn players_are_found_with_how_they_proved_who_they_are() {
        let r = lobby(3).joined(seat(2), at("a", 2)).unwrap();
        let p2 = PlayerId::parse("p2").unwrap();
        let (m, identity) = r.find_player(&p2).unwrap();
        assert_eq!((m.peer_id, identity), (PeerId(2), Identity::Token));
        let p1 = PlayerId::parse("p1").unwrap();
        assert_eq!(r.find_player(&p1).unwrap().1, Identity::Anonymous);
        assert!(r.find_player(&PlayerId::parse("p9").unwrap()).is_none());
    }

    #[test]
    fn listing_needs_public_room_and_matching_properties() {
        let r = lobby(2);
        let ctf: Properties = [("mode".to_string(), "ctf".to_string())].into();
        let dm: Properties = [("mode".to_string(), "dm".to_string())].into();
        assert!(r.listed_for(&ctf) && r.listed_for(&Properties::new()));
        assert!(!r.listed_for(&dm));
        assert!(!r.joined(seat(2), at("a", 2)).unwrap().listed_for(&ctf));
        assert_eq!(r.summary().members, 1);
    }

    #[test]
    fn records_survive_json_unchanged() {
        let r = lobby(3)
            .joined(seat(2), at("b", u64::MAX))
            .unwrap()
            .detached(PeerId(2), &at("b", u64::MAX), 1 << 60)
            .unwrap();
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), r);
    }
}
