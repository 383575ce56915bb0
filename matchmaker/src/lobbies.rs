//! Lobby operations: read a record, apply a rule of `lobby.rs`, commit the new record with
//! the messages that go with it, and read again when another request (on this node or
//! another) changed the lobby first. Connections call these for their requests; the
//! caretaker ([`run_caretaker`]) calls them to end rejoin graces and to keep the places of
//! players whose node died.
//!
//! Every message a lobby change causes — including the reply to the member who asked — is a
//! notice of its commit, so all of them reach the members in commit order (protocol §6).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use squadlink_protocol::{ErrorCode, LeaveReason, Lobby, PeerId, ServerMessage, Signal};

use crate::lobby::{Holder, NotMember, Record};
use crate::shared::{Shared, encode};
pub(crate) use crate::store::unix_ms;
use crate::store::{
    BoxFuture, Commit, Identity, NewLobby, Notice, Outcome, RelayAnswer, Relayed, Seat, StoreError,
    random_code,
};

/// How long a lobby store call may take.
pub(crate) const STORE_TIMEOUT: Duration = Duration::from_secs(5);
/// Reads and commits of one change before giving up on a lobby that keeps changing.
const MAX_TRIES: usize = 16;
/// How often the caretaker looks for ended graces.
const GRACE_TICK: Duration = Duration::from_millis(250);
/// How often the caretaker marks this node alive and looks for dead ones.
const HEARTBEAT_TICK: Duration = Duration::from_millis(500);

/// An error reply to a request: `(code, message)`.
pub(crate) type Reply = (ErrorCode, String);

/// The error reply for a store failure.
pub(crate) fn store_reply(err: StoreError) -> Reply {
    let code = match &err {
        StoreError::NotFound(_) => ErrorCode::LobbyNotFound,
        StoreError::Full { .. } => ErrorCode::LobbyFull,
        StoreError::AlreadyInLobby(_) => ErrorCode::AlreadyInLobby,
        StoreError::TooManyLobbies(_) => ErrorCode::TooManyLobbies,
        StoreError::Backend(_) | StoreError::Unavailable(_) | StoreError::Busy(_) => {
            ErrorCode::Internal
        }
    };
    if code == ErrorCode::Internal {
        tracing::warn!(%err, "lobby store failed");
    }
    (code, err.to_string())
}

/// A store call with the store timeout.
pub(crate) async fn store_call<T>(fut: BoxFuture<'_, Result<T, StoreError>>) -> Result<T, Reply> {
    match tokio::time::timeout(STORE_TIMEOUT, fut).await {
        Ok(res) => res.map_err(store_reply),
        Err(_) => Err((
            ErrorCode::Internal,
            "the lobby store did not answer within 5 s (unreachable or overloaded); try again"
                .into(),
        )),
    }
}

fn busy(code: &str) -> Reply {
    store_reply(StoreError::Busy(code.to_owned()))
}

fn texts<const N: usize>(messages: [&ServerMessage; N]) -> Vec<Utf8Bytes> {
    messages.into_iter().filter_map(encode).collect()
}

/// Every member of `record` but `except`, with its node.
fn members_but(record: &Record, except: PeerId) -> Vec<(PeerId, String)> {
    record
        .nodes()
        .filter(|(p, _)| *p != except)
        .map(|(p, n)| (p, n.to_owned()))
        .collect()
}

/// Creates a lobby with `host` as its only member; `joined` makes the host's reply.
pub(crate) async fn create(
    shared: &Shared,
    new: NewLobby,
    host: Seat,
    at: Holder,
    joined: impl Fn(Lobby) -> ServerMessage,
) -> Result<Lobby, Reply> {
    let peer = host.member.peer_id;
    for _ in 0..MAX_TRIES {
        let code = random_code().map_err(store_reply)?;
        let record = Record::create(
            code.clone(),
            new.clone(),
            host.clone(),
            at.clone(),
            unix_ms(),
        );
        let lobby = record.lobby.clone();
        let notices = vec![Notice::Deliver {
            to: vec![(peer, at.node.clone())],
            texts: texts([&joined(lobby.clone())]),
        }];
        let commit = Commit {
            code,
            before: None,
            after: Some(record),
            notices,
        };
        match store_call(shared.store.commit(commit)).await? {
            Outcome::Applied => return Ok(lobby),
            // The code was taken meanwhile: draw another.
            Outcome::Conflict => {}
            Outcome::LobbyLimit => {
                return Err(store_reply(StoreError::TooManyLobbies(
                    shared.config.max_lobbies,
                )));
            }
        }
    }
    Err(store_reply(StoreError::Backend(
        "could not find a free join code".into(),
    )))
}

/// How a join ended.
pub(crate) enum Joined {
    /// A new member.
    New(Lobby),
    /// The player had a place already and took it over, with its peer id.
    Resumed(Lobby, PeerId),
}

/// Joins lobby `code`, or takes over the player's place there if it has one (same peer id).
/// `reply` makes the joiner's `lobby_joined` (with the resumed peer id if any).
pub(crate) async fn join(
    shared: &Shared,
    code: &str,
    seat: Seat,
    at: Holder,
    reply: impl Fn(Lobby, Option<PeerId>) -> ServerMessage,
) -> Result<Joined, Reply> {
    let me = seat.member.peer_id;
    for _ in 0..MAX_TRIES {
        let Some(record) = store_call(shared.store.load(code)).await? else {
            return Err(store_reply(StoreError::NotFound(code.to_owned())));
        };
        if let Some((member, identity)) = record.find_player(&seat.member.player_id) {
            if identity != seat.identity {
                return Err(identity_mismatch(code, &seat, identity));
            }
            let old = member.peer_id;
            let previous = record.place(old).map(|p| p.holder.node.clone());
            let after = record.resumed(old, at.clone());
            let mut notices = Vec::new();
            if let Some(node) = previous.filter(|n| *n != at.node) {
                notices.push(Notice::Supersede { peer: old, node });
            }
            notices.push(Notice::Deliver {
                to: vec![(old, at.node.clone())],
                texts: texts([&reply(after.lobby.clone(), Some(old))]),
            });
            let lobby = after.lobby.clone();
            // From here this connection answers to `old` (the reply is addressed so); a
            // connection that still held it here is superseded.
            shared.hub.rebind(me, old);
            let commit = Commit {
                code: code.to_owned(),
                before: Some(record),
                after: Some(after),
                notices,
            };
            match store_call(shared.store.commit(commit)).await {
                Ok(Outcome::Applied) => return Ok(Joined::Resumed(lobby, old)),
                Ok(_) => shared.hub.rebind(old, me),
                Err(reply) => {
                    shared.hub.rebind(old, me);
                    return Err(reply);
                }
            }
            continue;
        }
        let after = record.joined(seat.clone(), at.clone()).map_err(|full| {
            store_reply(StoreError::Full {
                code: code.to_owned(),
                max: full.max,
            })
        })?;
        let lobby = after.lobby.clone();
        // The joiner hears first, so nothing another member sends it can overtake this.
        let notices = vec![
            Notice::Deliver {
                to: vec![(me, at.node.clone())],
                texts: texts([&reply(lobby.clone(), None)]),
            },
            Notice::Deliver {
                to: members_but(&record, me),
                texts: texts([
                    &ServerMessage::PeerJoined {
                        code: lobby.code.clone(),
                        peer: seat.member.clone(),
                    },
                    &ServerMessage::LobbyState {
                        lobby: lobby.clone(),
                    },
                ]),
            },
        ];
        let commit = Commit {
            code: code.to_owned(),
            before: Some(record),
            after: Some(after),
            notices,
        };
        if store_call(shared.store.commit(commit)).await? == Outcome::Applied {
            return Ok(Joined::New(lobby));
        }
    }
    Err(busy(code))
}

fn identity_mismatch(code: &str, seat: &Seat, found: Identity) -> Reply {
    (
        ErrorCode::IdentityMismatch,
        format!(
            "lobby {code} has a member with player id {} who proved it {}; this connection did {}, so it cannot take that place: connect with that player's token, or use another player id",
            seat.member.player_id,
            identity_name(found),
            identity_name(seat.identity)
        ),
    )
}

fn identity_name(identity: Identity) -> &'static str {
    match identity {
        Identity::Token => "with a token",
        Identity::Anonymous => "without a token (dev mode)",
    }
}

/// Which places a leave may end.
pub(crate) enum Guard<'a> {
    /// The place of this connection (not one a newer connection took over).
    HeldBy(&'a Holder),
    /// A detached place whose grace ended at or before this time (unix ms).
    GraceEnded(u64),
}

/// Removes `peer` from lobby `code` if `guard` allows, telling the others (and `peer`
/// itself `farewell`, if given). `Ok(false)` when there was nothing to leave.
pub(crate) async fn leave(
    shared: &Shared,
    code: &str,
    peer: PeerId,
    reason: LeaveReason,
    guard: Guard<'_>,
    farewell: Option<&ServerMessage>,
) -> Result<bool, Reply> {
    for _ in 0..MAX_TRIES {
        let Some(record) = store_call(shared.store.load(code)).await? else {
            return Ok(false);
        };
        let Some(place) = record.place(peer) else {
            return Ok(false);
        };
        let allowed = match &guard {
            Guard::HeldBy(holder) => &place.holder == *holder,
            Guard::GraceEnded(now) => place.detached_until.is_some_and(|t| t <= *now),
        };
        if !allowed {
            return Ok(false);
        }
        let mut notices = Vec::new();
        if let Some(farewell) = farewell {
            notices.push(Notice::Deliver {
                to: vec![(peer, place.holder.node.clone())],
                texts: texts([farewell]),
            });
        }
        let after = match record.without(peer) {
            Ok(after) => after,
            Err(NotMember) => return Ok(false),
        };
        if let Some(after) = &after {
            notices.push(Notice::Deliver {
                to: members_but(after, peer),
                texts: texts([
                    &ServerMessage::PeerLeft {
                        code: code.to_owned(),
                        peer_id: peer,
                        reason,
                    },
                    &ServerMessage::LobbyState {
                        lobby: after.lobby.clone(),
                    },
                ]),
            });
        }
        let commit = Commit {
            code: code.to_owned(),
            before: Some(record),
            after,
            notices,
        };
        if store_call(shared.store.commit(commit)).await? == Outcome::Applied {
            return Ok(true);
        }
    }
    Err(busy(code))
}

/// Keeps `peer`'s place in lobby `code` until `until` (unix ms) for its player to come back,
/// if `holder` still holds it. Members see nothing.
pub(crate) async fn detach(
    shared: &Shared,
    code: &str,
    peer: PeerId,
    holder: &Holder,
    until: u64,
) -> Result<(), Reply> {
    for _ in 0..MAX_TRIES {
        let Some(record) = store_call(shared.store.load(code)).await? else {
            return Ok(());
        };
        let Some(after) = record.detached(peer, holder, until) else {
            return Ok(());
        };
        let commit = Commit {
            code: code.to_owned(),
            before: Some(record),
            after: Some(after),
            notices: Vec::new(),
        };
        if store_call(shared.store.commit(commit)).await? == Outcome::Applied {
            return Ok(());
        }
    }
    Err(busy(code))
}

/// Hands a signal from `from` to `to` (both members of lobby `code`, to be checked) to the
/// store. Its answer may come later: see [`relay_outcome`].
pub(crate) async fn relay(
    shared: &Shared,
    code: &str,
    from: PeerId,
    to: PeerId,
    data: Signal,
) -> Result<RelayAnswer, Reply> {
    let Some(text) = encode(&ServerMessage::Signal { from, data }) else {
        return Err((ErrorCode::Internal, "could not encode the signal".into()));
    };
    store_call(shared.store.relay(code, from, to, text)).await
}

/// What a signal's answer means to its sender (who sent it to `to` in lobby `code`).
pub(crate) fn relay_outcome(
    code: &str,
    to: PeerId,
    answer: Result<Relayed, StoreError>,
) -> Result<(), Reply> {
    match answer.map_err(store_reply)? {
        Relayed::Sent => Ok(()),
        Relayed::NotMember => Err((
            ErrorCode::PeerNotInLobby,
            format!(
                "peer {} is not in your lobby {code}; nothing was delivered",
                to.0
            ),
        )),
        Relayed::SenderGone => Err((
            ErrorCode::NotInLobby,
            format!("you are no longer a member of lobby {code}; join it again"),
        )),
    }
}

/// Ends rejoin graces that ran out and keeps the places of players whose node died, until
/// the server shuts down.
pub(crate) async fn run_caretaker(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    let mut graces = tokio::time::interval(GRACE_TICK);
    let mut heartbeat = tokio::time::interval(HEARTBEAT_TICK);
    graces.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = graces.tick() => end_graces(&shared).await,
            _ = heartbeat.tick() => {
                update_gauges(&shared).await;
                adopt_orphans(&shared).await;
            }
        }
    }
}

async fn end_graces(shared: &Shared) {
    let now = unix_ms();
    let due = match store_call(shared.store.due_graces(now)).await {
        Ok(due) => due,
        Err((_, message)) => {
            tracing::debug!(%message, "could not read ended rejoin graces");
            return;
        }
    };
    for (code, peer) in due {
        let guard = Guard::GraceEnded(now);
        match leave(shared, &code, peer, LeaveReason::Disconnected, guard, None).await {
            Ok(true) => tracing::debug!(%peer, %code, "rejoin grace ended"),
            Ok(false) => {}
            Err((_, message)) => {
                tracing::warn!(%peer, %code, %message, "could not end a rejoin grace");
            }
        }
    }
}

/// Brings the lobby and member gauges up to date.
async fn update_gauges(shared: &Shared) {
    if let Ok((lobbies, members)) = store_call(shared.store.counts()).await {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        shared.metrics.lobbies.set(gauge(lobbies));
        shared.metrics.members.set(gauge(members));
    }
}

async fn adopt_orphans(shared: &Shared) {
    let now = unix_ms();
    let orphans = match store_call(shared.store.heartbeat(now)).await {
        Ok(orphans) => orphans,
        Err((_, message)) => {
            tracing::debug!(%message, "could not mark this node alive");
            return;
        }
    };
    if orphans.nodes.is_empty() {
        return;
    }
    let until = now.saturating_add(shared.config.rejoin_grace_ms());
    let mut done = true;
    for (code, peer, holder) in &orphans.places {
        if let Err((_, message)) = detach(shared, code, *peer, holder, until).await {
            tracing::warn!(%peer, %code, %message, "could not keep the place of a dead node's player");
            done = false;
        }
    }
    tracing::info!(
        nodes = ?orphans.nodes,
        places = orphans.places.len(),
        "nodes stopped; their players keep their places for the rejoin grace"
    );
    if done && let Err((_, message)) = store_call(shared.store.forget_nodes(&orphans.nodes)).await {
        tracing::warn!(%message, "could not forget dead nodes");
    }
}
