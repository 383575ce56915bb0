//! One client connection: authentication, requests, relaying, limits, closing.
//!
//! Each connection is one task that selects over its socket, its outbound queue, a ticker
//! (pings, idle check), its kick signal (slow consumer) and server shutdown. Whatever a client
//! sends, the worst outcome is that this one connection is closed with a reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt as _;
use squadlink_protocol::{
    ClientMessage, ErrorCode, IceServer, LeaveReason, Member, PROTOCOL_VERSION, PeerId, PlayerId,
    Properties, ReportedPath, ServerMessage, Signal,
};

use crate::auth::valid_region;
use crate::close::{Close, close_code, read_error, replaced, slow_consumer};
use crate::deadlines::{Deadlines, Due};
use crate::hello::{Refused, hello_with_malformed_token, identify, unix_now};
use crate::lobbies::{self, Guard, Joined, Reply, STORE_TIMEOUT, store_call, unix_ms};
use crate::lobby::Holder;
use crate::mailbox::{Kick, Mailbox};
use crate::metrics::Kind;
use crate::rate::{RateLimit, Verdict};
use crate::shared::{Shared, encode};
use crate::store::{
    Identity, MAX_PROPERTIES, MAX_PROPERTY_KEY, MAX_PROPERTY_VALUE, NewLobby, RelayAnswer, Relayed,
    Seat, StoreError,
};
use crate::turn::ice_servers_in;
use crate::unanswered::Unanswered;

/// How long one write (a batch of frames, a ping, a close) may take before the client is
/// considered gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the goodbye (error + close frame) may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Most queued frames written before one flush.
const MAX_BATCH: usize = 64;
/// Most peer-connection reports counted per connection (a lobby's worth, with reconnects).
const MAX_REPORTS: u32 = 64;
/// Longest lobby code accepted in `join_lobby`.
const MAX_CODE_LEN: usize = 16;

fn validate_properties(what: &str, props: &Properties) -> Result<(), Reply> {
    if props.len() > usize::from(MAX_PROPERTIES) {
        return Err((
            ErrorCode::InvalidField,
            format!(
                "{what} has {} entries; at most {MAX_PROPERTIES} are allowed",
                props.len()
            ),
        ));
    }
    for (k, v) in props {
        if k.is_empty() || k.len() > MAX_PROPERTY_KEY || v.len() > MAX_PROPERTY_VALUE {
            return Err((
                ErrorCode::InvalidField,
                format!(
                    "{what}: keys must be 1-{MAX_PROPERTY_KEY} bytes and values at most {MAX_PROPERTY_VALUE} bytes (key {k:?})"
                ),
            ));
        }
    }
    Ok(())
}

struct Conn {
    ws: WebSocket,
    shared: Arc<Shared>,
    peer_id: PeerId,
    remote: SocketAddr,
    player: Option<PlayerId>,
    /// How `player` was proved (meaningful once `player` is set).
    identity: Identity,
    query_token: Option<String>,
    /// Which TURN servers this player gets (`?region=`, or the token's claim).
    region: Option<String>,
    lobby: Option<String>,
    /// Messages for this client, and the word that ends it (shared through the hub).
    mailbox: Arc<Mailbox>,
    /// Signals handed to the store whose answers have not come yet.
    unanswered: Unanswered,
    /// This connection's random id, recorded in its lobby place (see `Holder`).
    conn_id: u64,
    /// Peer-connection reports counted so far.
    reports: u32,
    rate: RateLimit,
    last_inbound: Instant,
}

/// Serves one upgraded WebSocket until it ends, then cleans up.
pub(crate) async fn run(
    ws: WebSocket,
    shared: Arc<Shared>,
    (query_token, region): (Option<String>, Option<String>),
    remote: SocketAddr,
) {
    let open = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
    shared.metrics.connections.inc();
    let mailbox = Arc::new(Mailbox::new(shared.config.outbound_queue as usize));
    let registered = shared.hub.register(&mailbox);
    // Without a registered id the connection is refused below; PeerId(0) is never handed
    // out, so nothing can be addressed to it.
    let peer_id = registered.unwrap_or(PeerId(0));
    let rate = RateLimit::new(
        shared.config.messages_per_second,
        shared.config.message_burst,
        Instant::now(),
    );
    let mut conn = Conn {
        ws,
        shared: Arc::clone(&shared),
        peer_id,
        remote,
        player: None,
        identity: Identity::Anonymous,
        query_token,
        region: region.filter(|r| valid_region(r)),
        lobby: None,
        mailbox,
        unanswered: Unanswered::default(),
        conn_id: random_conn_id(),
        reports: 0,
        rate,
        last_inbound: Instant::now(),
    };
    tracing::debug!(%peer_id, %remote, "connected");
    let close = if registered.is_none() {
        Close::new(
            ErrorCode::Internal,
            "the server could not assign a peer id; try again",
        )
    } else if open > shared.config.max_connections as usize {
        Close::new(
            ErrorCode::ServerFull,
            format!(
                "the server is at its limit of {} connections; try again later",
                shared.config.max_connections
            ),
        )
    } else {
        conn.serve().await
    };
    // Boxed: the goodbye is the largest state of this task, and an idle connection would
    // otherwise carry room for it for its whole life (about 0.6 KB each).
    Box::pin(conn.finish(close)).await;
    shared.connections.fetch_sub(1, Ordering::SeqCst);
    shared.metrics.connections.dec();
}

impl Conn {
    async fn serve(&mut self) -> Close {
        let mut shutdown = self.shared.shutdown.clone();
        if *shutdown.borrow_and_update() {
            return Close::new(ErrorCode::ServerShutdown, "the server is shutting down");
        }
        let idle_timeout = self.shared.config.idle_timeout();
        let mut deadlines = Deadlines::new(
            Instant::now(),
            self.shared.config.ping_interval(),
            idle_timeout,
            self.shared.config.hello_timeout(),
        );
        let wake = tokio::time::sleep_until(tokio::time::Instant::from_std(
            deadlines.next_wake(self.last_inbound, false),
        ));
        tokio::pin!(wake);
        let mailbox = Arc::clone(&self.mailbox);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    return Close::new(ErrorCode::ServerShutdown, "the server is shutting down; reconnect later");
                }
                why = mailbox.kicked() => return self.kicked(why),
                () = &mut wake => {
                    let said_hello = self.player.is_some();
                    match deadlines.due(Instant::now(), self.last_inbound, said_hello) {
                        Some(Due::Idle) => {
                            return Close::new(
                                ErrorCode::IdleTimeout,
                                format!("nothing received for {} s; answer pings or send ping messages", idle_timeout.as_secs()),
                            );
                        }
                        Some(Due::Hello) => {
                            return Close::new(ErrorCode::HelloTimeout, "no hello was received in time: send hello first");
                        }
                        Some(Due::Ping) => {
                            let ping = tokio::time::timeout(WRITE_TIMEOUT, self.ws.send(Message::Ping(Bytes::new())));
                            if !matches!(ping.await, Ok(Ok(()))) {
                                return Close::gone("ping could not be written");
                            }
                        }
                        None => {}
                    }
                    let at = deadlines.next_wake(self.last_inbound, said_hello);
                    wake.as_mut().reset(tokio::time::Instant::from_std(at));
                }
                first = mailbox.next() => {
                    // Boxed, like `on_frame`: an idle connection carries no room for it.
                    if let Err(close) = Box::pin(self.write_batch(first)).await {
                        return close;
                    }
                }
                // After the mailbox: an error answer is written before the next answer is
                // taken, so a burst of refused signals cannot overflow the client's queue.
                Some((to, answer)) = self.unanswered.next(), if !self.unanswered.is_empty() => {
                    self.answered(to, answer);
                }
                inbound = self.ws.recv() => {
                    let msg = match inbound {
                        None => return Close::gone("client closed the connection"),
                        Some(Err(err)) => return read_error(err),
                        Some(Ok(msg)) => msg,
                    };
                    // Boxed: handling a message (a join, a relay through the store…) is the
                    // largest state of this task, and an idle connection would otherwise
                    // carry room for it for its whole life (about 2 KB each).
                    if let Some(close) = Box::pin(self.on_frame(msg)).await {
                        return close;
                    }
                }
            }
        }
    }

    /// Writes `first` and whatever else is queued (up to a batch), then flushes once.
    async fn write_batch(&mut self, first: Utf8Bytes) -> Result<(), Close> {
        let ws = &mut self.ws;
        let mailbox = &self.mailbox;
        let write = async move {
            ws.feed(Message::Text(first)).await?;
            for _ in 1..MAX_BATCH {
                match mailbox.take() {
                    Some(next) => ws.feed(Message::Text(next)).await?,
                    None => break,
                }
            }
            ws.flush().await
        };
        // A client that stops reading blocks this write; meanwhile its queue overflows and
        // the kick must still end the connection promptly.
        tokio::select! {
            res = tokio::time::timeout(WRITE_TIMEOUT, write) => match res {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => Err(Close::gone(format!("write failed: {err}"))),
                Err(_) => Err(Close::gone("write timed out")),
            },
            why = self.mailbox.kicked() => Err(self.kicked(why)),
        }
    }

    /// Why another task kicked this connection.
    fn kicked(&self, why: Kick) -> Close {
        match why {
            Kick::Superseded => replaced(),
            Kick::Reconnect => Close::new(
                ErrorCode::ServerShutdown,
                "this matchmaker node is going away or lost the cluster's events: reconnect (to any node) to resume your lobby place",
            ),
            Kick::SlowConsumer => slow_consumer(self.shared.config.outbound_queue),
        }
    }

    /// Where this connection lives, as recorded in its lobby place.
    fn holder(&self) -> Holder {
        Holder {
            node: self.shared.store.node().to_owned(),
            conn: self.conn_id,
        }
    }

    /// Queues a reply to this client. If its own queue is full it is a slow consumer.
    fn reply(&self, msg: &ServerMessage) {
        if let Some(text) = encode(msg) {
            self.mailbox.post(text);
        }
    }

    fn reply_error(&self, rid: Option<u32>, (code, message): Reply) {
        self.shared.metrics.rejected(code.as_str());
        self.reply(&ServerMessage::error(rid, code, message));
    }

    async fn on_frame(&mut self, msg: Message) -> Option<Close> {
        let now = Instant::now();
        self.last_inbound = now;
        let (text, control) = match msg {
            // Control frames cost a write (tungstenite answers pings) and count like
            // messages: a ping flood is rate limited like any other.
            Message::Ping(_) | Message::Pong(_) => (None, true),
            Message::Close(_) => {
                let mut close = Close::gone("client sent close");
                close.deliberate = true;
                return Some(close);
            }
            Message::Text(text) => (Some(text), false),
            Message::Binary(_) => (None, false),
        };
        match self.rate.check(now) {
            Verdict::Pass => {}
            Verdict::Drop(tell) => {
                self.shared.metrics.rate_limited.inc();
                if let Some(message) = tell {
                    self.reply_error(None, (ErrorCode::RateLimited, message));
                }
                return None;
            }
            Verdict::Close(message) => {
                self.shared.metrics.rate_limited.inc();
                return Some(Close::new(ErrorCode::RateLimited, message));
            }
        }
        if control {
            return None;
        }
        let Some(text) = text else {
            self.reply_error(
                None,
                (
                    ErrorCode::BinaryFrame,
                    "protocol v1 uses JSON text frames only; send this message as text".into(),
                ),
            );
            return None;
        };
        let msg = match ClientMessage::from_json(text.as_str()) {
            Ok(msg) => msg,
            Err(err) => {
                if self.player.is_none() && hello_with_malformed_token(text.as_str()) {
                    return Some(
                        Close::new(
                            ErrorCode::TokenInvalid,
                            "malformed token: \"token\" must be a string",
                        )
                        .with_rid(err.rid),
                    );
                }
                self.reply_error(err.rid, (err.code, err.detail));
                return None;
            }
        };
        let rid = msg.rid();
        self.shared
            .metrics
            .messages
            .get_or_create(&Kind { kind: msg.kind() })
            .inc();
        let Some(player) = self.player.clone() else {
            return self.on_hello(msg).await;
        };
        // Signals go out without waiting for their answers; anything else waits for them.
        let signal = matches!(msg, ClientMessage::Signal { .. });
        if (!signal || self.unanswered.is_full())
            && let Err(close) = self.settle(!signal).await
        {
            return Some(close);
        }
        let result = match msg {
            ClientMessage::Hello { .. } => Err((
                ErrorCode::AlreadyAuthenticated,
                "this connection already said hello".into(),
            )),
            ClientMessage::CreateLobby {
                max_members,
                public,
                properties,
                member_data,
                ..
            } => {
                let new = NewLobby {
                    max_members,
                    public,
                    properties,
                };
                self.create_lobby(rid, player, new, member_data).await
            }
            ClientMessage::JoinLobby {
                code, member_data, ..
            } => self.join_lobby(rid, player, &code, member_data).await,
            ClientMessage::LeaveLobby { .. } => {
                let farewell = self
                    .lobby
                    .clone()
                    .map(|code| ServerMessage::LobbyLeft { rid, code });
                match self.leave_lobby(LeaveReason::Left, farewell.as_ref()).await {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err((ErrorCode::NotInLobby, "you are not in a lobby".into())),
                    Err(reply) => Err(reply),
                }
            }
            ClientMessage::ListLobbies { filter, limit, .. } => {
                let limit = usize::from(limit.unwrap_or(50).min(100));
                store_call(self.shared.store.list_public(&filter, limit))
                    .await
                    .map(|lobbies| self.reply(&ServerMessage::LobbyList { rid, lobbies }))
            }
            ClientMessage::Signal { to, data } => self.relay(to, data).await,
            ClientMessage::RequestIceServers { .. } => {
                if self.lobby.is_some() {
                    let ice_servers = self.ice_servers(&player);
                    self.reply(&ServerMessage::IceServers { rid, ice_servers });
                    Ok(())
                } else {
                    Err((
                        ErrorCode::NotInLobby,
                        "ICE servers are handed out to lobby members: join a lobby first".into(),
                    ))
                }
            }
            ClientMessage::Ping { nonce } => {
                self.reply(&ServerMessage::Pong { nonce });
                Ok(())
            }
            ClientMessage::Report { path, connect_ms } => {
                self.report(path, connect_ms);
                Ok(())
            }
        };
        if let Err(reply) = result {
            self.reply_error(rid, reply);
        }
        None
    }

    /// Counts a player's (opt-in) report of a peer connection: a few per connection at
    /// most, so one client cannot skew the figures.
    fn report(&mut self, path: ReportedPath, connect_ms: u32) {
        if self.reports >= MAX_REPORTS {
            return;
        }
        self.reports += 1;
        let metrics = &self.shared.metrics;
        metrics
            .peer_paths
            .get_or_create(&Kind {
                kind: path.as_str(),
            })
            .inc();
        metrics
            .peer_connect_seconds
            .observe(f64::from(connect_ms) / 1000.0);
    }

    /// ICE servers for `player`, counting the TURN credentials handed out.
    fn ice_servers(&self, player: &PlayerId) -> Vec<IceServer> {
        let region = self.region.as_deref();
        let servers = ice_servers_in(&self.shared.config, player, unix_now(), region);
        let turn = servers.iter().filter(|s| s.credential.is_some()).count();
        self.shared
            .metrics
            .turn_credentials
            .inc_by(u64::try_from(turn).unwrap_or(0));
        servers
    }

    async fn on_hello(&mut self, msg: ClientMessage) -> Option<Close> {
        if let ClientMessage::Ping { nonce } = msg {
            self.reply(&ServerMessage::Pong { nonce });
            return None;
        }
        let ClientMessage::Hello {
            rid,
            token,
            player_id,
        } = msg
        else {
            self.reply_error(
                msg.rid(),
                (
                    ErrorCode::NotAuthenticated,
                    "send hello first (with a token, or without one on a dev-mode server)".into(),
                ),
            );
            return None;
        };
        let token = token.or_else(|| self.query_token.take());
        let hello = match identify(&self.shared.config, self.shared.dev_mode, token, player_id) {
            Ok(hello) => hello,
            Err(Refused::Close(close)) => return Some(close.with_rid(rid)),
            Err(Refused::Reply(reply)) => {
                self.reply_error(rid, reply);
                return None;
            }
        };
        let (player, identity) = (hello.player, hello.identity);
        if hello.region.is_some() {
            self.region = hello.region;
        }
        let admitted = store_call(self.shared.store.admit(
            &player,
            identity,
            self.conn_id,
            self.shared.config.max_connections_per_player,
        ))
        .await;
        if let Err((code, message)) = admitted {
            return Some(Close::new(code, message).with_rid(rid));
        }
        if admitted == Ok(false) {
            return Some(
                Close::new(
                    ErrorCode::TooManyConnections,
                    format!(
                        "player {player} already has {} live connections, the most this server allows; close one first",
                        self.shared.config.max_connections_per_player
                    ),
                )
                .with_rid(rid),
            );
        }
        tracing::debug!(peer_id = %self.peer_id, %player, ?identity, "hello");
        self.reply(&ServerMessage::Welcome {
            rid,
            peer_id: self.peer_id,
            player_id: player.clone(),
            protocol: PROTOCOL_VERSION,
            server: concat!("squadlink-matchmaker/", env!("CARGO_PKG_VERSION")).into(),
            dev_mode: self.shared.dev_mode,
            limits: self.shared.limits.clone(),
            instance: Some(self.shared.store.instance()),
        });
        self.player = Some(player);
        self.identity = identity;
        None
    }

    fn seat(&self, player: PlayerId, data: Properties) -> Seat {
        Seat {
            member: Member {
                peer_id: self.peer_id,
                player_id: player,
                data,
            },
            identity: self.identity,
        }
    }

    fn check_not_in_lobby(&self) -> Result<(), Reply> {
        match &self.lobby {
            Some(code) => Err((
                ErrorCode::AlreadyInLobby,
                format!("already in lobby {code}; leave it first"),
            )),
            None => Ok(()),
        }
    }

    async fn create_lobby(
        &mut self,
        rid: Option<u32>,
        player: PlayerId,
        new: NewLobby,
        member_data: Properties,
    ) -> Result<(), Reply> {
        self.check_not_in_lobby()?;
        let cap = self.shared.config.max_members;
        if !(2..=cap).contains(&new.max_members) {
            return Err((
                ErrorCode::InvalidField,
                format!(
                    "max_members must be between 2 and {cap}, got {}",
                    new.max_members
                ),
            ));
        }
        validate_properties("properties", &new.properties)?;
        validate_properties("member_data", &member_data)?;
        let seat = self.seat(player.clone(), member_data);
        let ice_servers = self.ice_servers(&player);
        let lobby = lobbies::create(&self.shared, new, seat, self.holder(), |lobby| {
            ServerMessage::LobbyJoined {
                rid,
                lobby,
                ice_servers: ice_servers.clone(),
                resumed_peer_id: None,
            }
        })
        .await?;
        self.lobby = Some(lobby.code);
        Ok(())
    }

    async fn join_lobby(
        &mut self,
        rid: Option<u32>,
        player: PlayerId,
        code: &str,
        member_data: Properties,
    ) -> Result<(), Reply> {
        self.check_not_in_lobby()?;
        if code.is_empty() || code.len() > MAX_CODE_LEN {
            return Err((
                ErrorCode::LobbyNotFound,
                format!("{code:?} is not a lobby code"),
            ));
        }
        validate_properties("member_data", &member_data)?;
        let code = code.to_ascii_uppercase();
        let seat = self.seat(player.clone(), member_data);
        let ice_servers = self.ice_servers(&player);
        let joined = lobbies::join(
            &self.shared,
            &code,
            seat,
            self.holder(),
            |lobby, resumed| ServerMessage::LobbyJoined {
                rid,
                lobby,
                ice_servers: ice_servers.clone(),
                resumed_peer_id: resumed,
            },
        )
        .await?;
        match joined {
            Joined::New(lobby) => self.lobby = Some(lobby.code),
            Joined::Resumed(lobby, old) => {
                self.shared.metrics.rejoins.inc();
                tracing::debug!(temporary = %self.peer_id, resumed = %old, code = %lobby.code, "membership resumed");
                self.peer_id = old;
                self.lobby = Some(lobby.code);
            }
        }
        Ok(())
    }

    /// Leaves the current lobby, telling the others (and this client `farewell`, if
    /// given). `Ok(None)` when not in one.
    async fn leave_lobby(
        &mut self,
        reason: LeaveReason,
        farewell: Option<&ServerMessage>,
    ) -> Result<Option<String>, Reply> {
        let Some(code) = self.lobby.take() else {
            return Ok(None);
        };
        let holder = self.holder();
        let guard = Guard::HeldBy(&holder);
        let left =
            lobbies::leave(&self.shared, &code, self.peer_id, reason, guard, farewell).await?;
        Ok(left.then_some(code))
    }

    /// The connection dropped without leaving: keep the membership for the rejoin grace
    /// (the caretaker ends it unless the player comes back, on this node or another).
    async fn detach(&mut self) {
        let Some(code) = self.lobby.take() else {
            return;
        };
        let grace = self.shared.config.rejoin_grace_ms();
        let until = unix_ms().saturating_add(grace);
        let holder = self.holder();
        match lobbies::detach(&self.shared, &code, self.peer_id, &holder, until).await {
            Ok(()) => {
                tracing::debug!(peer = %self.peer_id, %code, grace_ms = grace, "connection lost; membership kept for the rejoin grace");
            }
            Err((_, message)) => {
                tracing::warn!(peer = %self.peer_id, %code, %message, "could not keep a lost connection's place");
            }
        }
    }

    async fn relay(&mut self, to: PeerId, data: Signal) -> Result<(), Reply> {
        let Some(code) = &self.lobby else {
            return Err((
                ErrorCode::NotInLobby,
                "signals go to members of your lobby: join a lobby first".into(),
            ));
        };
        match lobbies::relay(&self.shared, code, self.peer_id, to, data).await? {
            // Answered at once (one node) with nothing older waiting: settle it now.
            RelayAnswer::Ready(answer) if self.unanswered.is_empty() => {
                self.answered(to, answer);
            }
            answer => self.unanswered.push(to, answer),
        }
        Ok(())
    }

    /// Waits for the answers of this connection's signals: all of them, or (`all` false)
    /// the oldest one. Each error reply is written before the next answer is taken (as the
    /// main loop does), so a burst of refused signals cannot overflow the client's queue.
    async fn settle(&mut self, all: bool) -> Result<(), Close> {
        loop {
            match tokio::time::timeout(STORE_TIMEOUT, self.unanswered.next()).await {
                Ok(Some((to, answer))) => {
                    if self.answered(to, answer)
                        && let Some(first) = self.mailbox.take()
                    {
                        Box::pin(self.write_batch(first)).await?;
                    }
                }
                Ok(None) => return Ok(()),
                Err(_) => {
                    self.reply_error(
                        None,
                        (
                            ErrorCode::Internal,
                            "the lobby store did not answer a signal within 5 s (unreachable or overloaded); it may not have been delivered".into(),
                        ),
                    );
                    self.unanswered = Unanswered::default();
                    return Ok(());
                }
            }
            if !all {
                return Ok(());
            }
        }
    }

    /// A signal's answer came: count it, or tell the sender what went wrong (`true`: an
    /// error reply was queued).
    fn answered(&self, to: PeerId, answer: Result<Relayed, StoreError>) -> bool {
        let code = self.lobby.as_deref().unwrap_or_default();
        match lobbies::relay_outcome(code, to, answer) {
            Ok(()) => {
                self.shared.metrics.signals.inc();
                false
            }
            Err(reply) => {
                self.reply_error(None, reply);
                true
            }
        }
    }

    /// Leaves the lobby (or keeps the membership for the rejoin grace), unregisters, and
    /// tells the client why (unless it is gone).
    async fn finish(mut self, close: Close) {
        // Signals the client sent before it went still go out before it leaves (a failed
        // write of a refusal only means the client is gone).
        let _ = self.settle(true).await;
        let superseded = self.mailbox.is_superseded();
        if superseded {
            // The membership and the hub entry belong to the newer connection now.
            self.lobby = None;
        } else {
            // The server (or this node) going away, or a connection that vanished, keeps
            // the place for the rejoin grace: nobody is told a peer left (peers stay
            // connected; the SDK reconnects and resumes, or tells a restart apart).
            let shutdown = close.code == Some(ErrorCode::ServerShutdown);
            if shutdown || (close.may_return() && !self.shared.config.rejoin_grace().is_zero()) {
                self.detach().await;
            }
            if let Err((code, message)) = self.leave_lobby(LeaveReason::Disconnected, None).await {
                tracing::warn!(peer_id = %self.peer_id, %code, %message, "could not leave lobby on disconnect");
            }
            self.shared.hub.remove(self.peer_id, &self.mailbox);
        }
        if let Some(player) = &self.player {
            let release = self
                .shared
                .store
                .release(player, self.identity, self.conn_id);
            if let Err((code, message)) = store_call(release).await {
                tracing::warn!(%player, %code, %message, "could not release a player's connection count");
            }
        }
        tracing::debug!(
            peer_id = %self.peer_id,
            remote = %self.remote,
            code = close.code.map(ErrorCode::as_str).unwrap_or("gone"),
            reason = %close.message,
            "connection closed"
        );
        let Some(code) = close.code else { return };
        self.shared.metrics.rejected(code.as_str());
        let ws = &mut self.ws;
        let goodbye = async move {
            let error = ServerMessage::error(close.rid, code, close.message);
            if let Some(text) = encode(&error) {
                ws.send(Message::Text(text)).await?;
            }
            ws.send(Message::Close(Some(CloseFrame {
                code: close_code(code),
                reason: Utf8Bytes::from_static(code.as_str()),
            })))
            .await
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, goodbye).await;
    }
}

/// A random connection id (see `Holder::conn`); without randomness, a clock-based one.
fn random_conn_id() -> u64 {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => unix_ms() ^ std::process::id() as u64,
    }
}
