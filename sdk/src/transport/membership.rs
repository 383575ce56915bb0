//! Our place in the lobby: who we are, what we told the others about us, what they told us
//! about them, and whom the game disconnected for good.
//!
//! Pure state with no clock and no I/O; the session core asks it whether to connect to a
//! member and what to rejoin with after losing the matchmaker.

use std::collections::{HashMap, HashSet};

use squadlink_protocol::{IceServer, Lobby, PeerId, PlayerId, Properties};

use super::output::Request;
use crate::error::Error;
use crate::event::LobbyInfo;

/// Member-data key carrying a member's channel list.
pub(crate) const CHANNELS_KEY: &str = "squadlink.channels";
/// Member-data key carrying the version of the peer wire contract a member speaks.
pub(crate) const WIRE_KEY: &str = "squadlink.wire";
/// The version of the peer wire contract (`docs/wire.md`) this SDK speaks. A member
/// without [`WIRE_KEY`] predates the key and speaks version 1.
pub(crate) const WIRE_VERSION: &str = "1";

/// Whether to connect to a member.
#[derive(Debug, PartialEq)]
pub(crate) enum Admission {
    /// Connect.
    Connect,
    /// The game disconnected this peer (or its player) for good.
    Shunned,
    /// Its channel list or wire version differs from ours: no connection can carry both
    /// ([`Error::ChannelMismatch`] or [`Error::WireVersion`] says how).
    Mismatch(Error),
}

/// Who we are in the lobby just entered.
pub(crate) struct Entered<'a> {
    pub(crate) me: PeerId,
    pub(crate) player: PlayerId,
    pub(crate) lobby: &'a Lobby,
    /// The matchmaker instance that said `welcome`.
    pub(crate) instance: Option<String>,
    /// The ICE servers the matchmaker handed out (the game's own are added).
    pub(crate) ice_servers: Vec<IceServer>,
}

impl<'a> Entered<'a> {
    /// What a shell's link reported on entering the lobby.
    pub(crate) fn from_joined(joined: &'a crate::lobby::Joined) -> Self {
        Self {
            me: joined.me,
            player: joined.player.clone(),
            lobby: &joined.lobby,
            instance: joined.instance.clone(),
            ice_servers: joined.ice_servers.clone(),
        }
    }
}

/// Our lobby membership.
#[derive(Debug)]
pub(crate) struct Membership {
    me: PeerId,
    player: PlayerId,
    code: String,
    /// What we tell the others about us (our channel list).
    data: Properties,
    channel_list: String,
    /// Every member's player id and data (their channel lists), as last heard.
    members: HashMap<PeerId, (PlayerId, Properties)>,
    /// The matchmaker instance we joined through: a reconnection to another one (a
    /// restart) must not rejoin by the old lobby code.
    instance: Option<String>,
    /// The matchmaker closed our link with `replaced`: another connection of this player
    /// holds the lobby place now, so we do not reconnect (the two would take turns).
    replaced: bool,
    /// Peers the game disconnected, by peer id and by player id: never connected again.
    shunned: HashSet<PeerId>,
    shunned_players: HashSet<PlayerId>,
}

impl Membership {
    /// The member data we join with for `channel_list`, with the game's own (`game`).
    pub(crate) fn member_data(channel_list: &str, game: &Properties) -> Properties {
        let mut data = game.clone();
        data.insert(CHANNELS_KEY.to_string(), channel_list.to_string());
        data.insert(WIRE_KEY.to_string(), WIRE_VERSION.to_string());
        data
    }

    pub(crate) fn new(
        me: PeerId,
        player: PlayerId,
        code: String,
        (channel_list, game): (String, &Properties),
        instance: Option<String>,
    ) -> Self {
        Self {
            me,
            player,
            code,
            data: Self::member_data(&channel_list, game),
            channel_list,
            members: HashMap::new(),
            instance,
            replaced: false,
            shunned: HashSet::new(),
            shunned_players: HashSet::new(),
        }
    }

    pub(crate) fn me(&self) -> PeerId {
        self.me
    }

    pub(crate) fn code(&self) -> &str {
        &self.code
    }

    /// Our membership expired while we were away: we joined again as a new member.
    pub(crate) fn joined_again(&mut self, me: PeerId, player: PlayerId, code: String) {
        self.me = me;
        self.player = player;
        self.code = code;
    }

    /// The request for a reconnection attempt: back into our lobby by its code,
    /// as ourselves. `named`: no token, so we name our player id (dev mode); with a token
    /// the server takes it from there.
    pub(crate) fn rejoin(&self, named: bool, url: String) -> Request {
        Request::Reconnect {
            url,
            player: named.then(|| self.player.clone()),
            code: self.code.clone(),
            data: self.data.clone(),
            instance: self.instance.clone(),
        }
    }

    /// The matchmaker said another connection of this player took our place.
    pub(crate) fn set_replaced(&mut self) {
        self.replaced = true;
    }

    pub(crate) fn is_replaced(&self) -> bool {
        self.replaced
    }

    /// The lobby as the matchmaker sent it: remembered, and turned into what the game sees.
    pub(crate) fn update(&mut self, lobby: &Lobby) -> LobbyInfo {
        self.members = lobby
            .members
            .iter()
            .map(|m| (m.peer_id, (m.player_id.clone(), m.data.clone())))
            .collect();
        LobbyInfo {
            code: lobby.code.clone(),
            host: lobby.host,
            members: lobby
                .members
                .iter()
                .map(|m| (m.peer_id, m.player_id.clone()))
                .collect(),
            member_data: lobby
                .members
                .iter()
                .map(|m| {
                    let game: Properties = m
                        .data
                        .iter()
                        .filter(|(k, _)| !k.starts_with("squadlink."))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    (m.peer_id, game)
                })
                .filter(|(_, game)| !game.is_empty())
                .collect(),
        }
    }

    /// A member is in the lobby with `data`: whether to connect to it.
    pub(crate) fn admit(
        &mut self,
        peer: PeerId,
        player: &PlayerId,
        data: &Properties,
    ) -> Admission {
        self.members.insert(peer, (player.clone(), data.clone()));
        if self.shunned_players.contains(player) || self.shunned.contains(&peer) {
            // A new peer id of a player the game disconnected stays disconnected.
            self.shunned.insert(peer);
            return Admission::Shunned;
        }
        self.check_compatible(peer, data)
    }

    /// Whether `data`'s wire version and channel list match ours.
    pub(crate) fn check_compatible(&self, peer: PeerId, data: &Properties) -> Admission {
        let wire = data.get(WIRE_KEY).map_or(WIRE_VERSION, String::as_str);
        if wire != WIRE_VERSION {
            return Admission::Mismatch(Error::WireVersion {
                peer,
                ours: WIRE_VERSION.to_string(),
                theirs: wire.to_string(),
            });
        }
        let theirs = data.get(CHANNELS_KEY).cloned().unwrap_or_default();
        if theirs == self.channel_list {
            Admission::Connect
        } else {
            Admission::Mismatch(Error::ChannelMismatch {
                peer,
                ours: self.channel_list.clone(),
                theirs,
            })
        }
    }

    /// Whether `peer` is a member we cannot connect to (and so refused ourselves).
    pub(crate) fn incompatible(&self, peer: PeerId) -> bool {
        self.member(peer)
            .is_some_and(|data| self.check_compatible(peer, data) != Admission::Connect)
    }

    /// The member data `peer` last announced, while it is in the lobby.
    pub(crate) fn member(&self, peer: PeerId) -> Option<&Properties> {
        self.members.get(&peer).map(|(_, data)| data)
    }

    /// The game disconnects `peer` (and its player, while it is a member) for good.
    pub(crate) fn shun(&mut self, peer: PeerId) {
        self.shunned.insert(peer);
        if let Some((player, _)) = self.members.get(&peer) {
            self.shunned_players.insert(player.clone());
        }
    }

    pub(crate) fn is_shunned(&self, peer: PeerId) -> bool {
        self.shunned.contains(&peer)
    }
}

#[cfg(test)]
mod tests {
    use squadlink_protocol::Member;

    use super::*;

    fn membership() -> Membership {
        Membership::new(
            PeerId(1),
            PlayerId("me".into()),
            "ABCD".into(),
            ("reliable,unreliable".into(), &Properties::new()),
            None,
        )
    }

    fn data(channels: &str) -> Properties {
        Membership::member_data(channels, &Properties::new())
    }

    #[test]
    fn the_games_member_data_goes_out_with_ours_and_comes_back_without_ours() {
        let game: Properties = [("team".to_string(), "red".to_string())].into();
        let ours = Membership::member_data("reliable", &game);
        assert_eq!(ours.get("team").map(String::as_str), Some("red"));
        assert_eq!(ours.get(CHANNELS_KEY).map(String::as_str), Some("reliable"));
        let mut m = membership();
        let lobby = Lobby {
            code: "ABCD".into(),
            version: 1,
            host: PeerId(1),
            max_members: 4,
            public: false,
            properties: Properties::new(),
            members: vec![
                Member {
                    peer_id: PeerId(1),
                    player_id: PlayerId("me".into()),
                    data: data("reliable,unreliable"),
                },
                Member {
                    peer_id: PeerId(2),
                    player_id: PlayerId("b".into()),
                    data: ours,
                },
            ],
        };
        let info = m.update(&lobby);
        assert_eq!(info.member_data, vec![(PeerId(2), game)]);
        assert_eq!(info.member_value(PeerId(2), "team"), Some("red"));
        assert_eq!(info.member_value(PeerId(1), "team"), None);
    }

    #[test]
    fn a_member_with_our_channels_is_connected_to() {
        let mut m = membership();
        let admitted = m.admit(
            PeerId(2),
            &PlayerId("b".into()),
            &data("reliable,unreliable"),
        );
        assert_eq!(admitted, Admission::Connect);
        assert_eq!(m.member(PeerId(2)), Some(&data("reliable,unreliable")));
    }

    #[test]
    fn a_member_with_other_channels_is_a_mismatch_naming_both_lists() {
        let mut m = membership();
        let Admission::Mismatch(Error::ChannelMismatch { peer, ours, theirs }) =
            m.admit(PeerId(2), &PlayerId("b".into()), &data("reliable"))
        else {
            panic!("expected a mismatch");
        };
        assert_eq!(peer, PeerId(2));
        assert_eq!(ours, "reliable,unreliable");
        assert_eq!(theirs, "reliable");
    }

    #[test]
    fn a_member_speaking_another_wire_version_is_a_mismatch_naming_both_versions() {
        let mut m = membership();
        let mut theirs = data("reliable,unreliable");
        theirs.insert(WIRE_KEY.into(), "2".into());
        let admitted = m.admit(PeerId(2), &PlayerId("b".into()), &theirs);
        assert_eq!(
            admitted,
            Admission::Mismatch(Error::WireVersion {
                peer: PeerId(2),
                ours: WIRE_VERSION.into(),
                theirs: "2".into()
            })
        );
    }

    #[test]
    fn a_member_without_a_wire_version_speaks_version_1() {
        let mut m = membership();
        let mut theirs = data("reliable,unreliable");
        theirs.remove(WIRE_KEY);
        let admitted = m.admit(PeerId(2), &PlayerId("b".into()), &theirs);
        assert_eq!(admitted, Admission::Connect);
        assert_eq!(
            Membership::member_data("x", &Properties::new())
                .get(WIRE_KEY)
                .map(String::as_str),
            Some("1")
        );
    }

    #[test]
    fn a_shunned_player_stays_shunned_under_a_new_peer_id() {
        let mut m = membership();
        let b = PlayerId("b".into());
        m.admit(PeerId(2), &b, &data("reliable,unreliable"));
        m.shun(PeerId(2));
        let admitted = m.admit(PeerId(7), &b, &data("reliable,unreliable"));
        assert_eq!(admitted, Admission::Shunned);
        assert!(m.is_shunned(PeerId(7)));
        // Its signals are ignored from now on, but it is still a lobby member.
        assert!(m.member(PeerId(7)).is_some());
    }

    #[test]
    fn a_lobby_update_replaces_the_members_and_names_the_host() {
        let mut m = membership();
        m.admit(PeerId(9), &PlayerId("gone".into()), &data("x"));
        let lobby = Lobby {
            code: "ABCD".into(),
            host: PeerId(1),
            max_members: 4,
            public: false,
            properties: Properties::new(),
            members: vec![Member {
                peer_id: PeerId(3),
                player_id: PlayerId("c".into()),
                data: data("reliable,unreliable"),
            }],
            version: 1,
        };
        let info = m.update(&lobby);
        assert_eq!(info.host, PeerId(1));
        assert_eq!(info.members, vec![(PeerId(3), PlayerId("c".into()))]);
        assert!(m.member(PeerId(9)).is_none());
        assert!(m.member(PeerId(3)).is_some());
    }
}
