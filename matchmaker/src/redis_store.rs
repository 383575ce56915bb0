//! The shared lobby store of a cluster: lobby records in Redis, changed by compare-and-set
//! scripts that also publish each change's messages to the nodes of their recipients.
//!
//! Keys (all under the configured prefix `P`, default `squadlink:`):
//! - `P lobby:<code>` hash `rev`, `rec` (the [`Record`] as JSON)
//! - `P lobbies`, `P public` sorted sets of codes by creation time (the lobby limit, listing)
//! - `P member:<peer>` `"<code> <node>"`: which lobby a peer is in and where it is connected
//! - `P graces` sorted set of `"<code> <peer>"` by the end of its rejoin grace (unix ms)
//! - `P nodes` sorted set of node ids by their last heartbeat; `P node:<id>:places` the
//!   places held through each node
//! - `P instance` the cluster's instance id (what `welcome` says)
//!
//! Every key expires (`key lifetime`: twice the rejoin grace, at least a minute) unless a
//! live node keeps it: a crashed cluster leaves nothing behind for long.
//!
//! Each node subscribes to its channel `P node:<id>`. A message there is an envelope:
//! `D <peer>,<peer>…\n<message>\n<message>…` (deliver these protocol messages, in order, to
//! these peers), `R\n<peer> <message>\n<peer> <message>…` (relayed signals, each to its
//! peer, from `redis_relay.rs`) or `S <peer>` (the connection holding `peer` here was
//! superseded). Redis runs
//! scripts one at a time and delivers one publisher's messages in order, so messages reach
//! each client in commit order, whichever node made the change.
//!
//! Not for Redis Cluster: the scripts touch keys they compute (one Redis server, or a
//! primary with replicas behind Sentinel, reached at one URL).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use futures_util::StreamExt as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands as _, Client, Script};
use squadlink_protocol::{LobbySummary, PeerId, PlayerId, Properties};
use tokio::sync::watch;

use crate::config::Config;
use crate::hub::Hub;
use crate::lobby::Record;
use crate::metrics::Metrics;
use crate::redis_relay::Relayer;
use crate::store::{
    BoxFuture, Commit, Identity, LobbyStore, Notice, Orphans, Outcome, RelayAnswer, StoreError,
    detached, random_id, unix_ms,
};

/// How long connecting to Redis may take at start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one Redis command may take.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Heartbeats between refreshes of this node's lobby key lifetimes.
const REFRESH_EVERY: u64 = 10;
/// Longest wait between attempts to subscribe again after the event stream broke.
const MAX_RESUBSCRIBE_DELAY: Duration = Duration::from_secs(2);
/// Most lobbies read for one public listing.
const LIST_SCAN: isize = 1000;
/// Most ended graces handled per caretaker tick.
const GRACES_PER_TICK: isize = 512;

fn unavailable(err: &redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("Redis: {err}"))
}

/// The connection to Redis, timing every call for the metrics.
#[derive(Clone)]
struct Metered {
    inner: ConnectionManager,
    metrics: Arc<Metrics>,
}

impl redis::aio::ConnectionLike for Metered {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        Box::pin(async move {
            let started = Instant::now();
            let res = self.inner.req_packed_command(cmd).await;
            self.metrics.redis_call(started.elapsed(), res.is_err());
            res
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        Box::pin(async move {
            let started = Instant::now();
            let res = self
                .inner
                .req_packed_commands(pipeline, offset, count)
                .await;
            self.metrics.redis_call(started.elapsed(), res.is_err());
            res
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

/// The Redis store of one node.
pub(crate) struct RedisStore {
    redis: Metered,
    metrics: Arc<Metrics>,
    prefix: String,
    node: String,
    instance: RwLock<String>,
    max_lobbies: u32,
    key_ttl_ms: u64,
    node_timeout_ms: u64,
    hub: Arc<Hub>,
    beats: AtomicU64,
    /// Whether this node's event stream is up (and, after a break, clients were told to
    /// reconnect): a node without it cannot deliver lobby changes and is not ready.
    events_up: Arc<AtomicBool>,
    commit_script: Script,
    relayer: Relayer,
    heartbeat_script: Script,
    forget_script: Script,
    admit_script: Script,
}

impl RedisStore {
    /// Connects to `url`, joins the cluster as a new node and starts listening for its
    /// events (delivered through `hub`) until `shutdown`.
    pub(crate) async fn connect(
        url: &str,
        config: &Config,
        (hub, metrics): (Arc<Hub>, Arc<Metrics>),
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Self>, StoreError> {
        let client = Client::open(url).map_err(|e| {
            StoreError::Backend(format!(
                "--redis-url {url:?} is not a Redis URL ({e}); use redis://host:port/db"
            ))
        })?;
        let settings = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            // Fail fast while Redis is down (requests get a clear error at once); the
            // next request tries to connect again.
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let redis = tokio::time::timeout(
            CONNECT_TIMEOUT,
            ConnectionManager::new_with_config(client.clone(), settings),
        )
        .await
        .map_err(|_| StoreError::Unavailable(format!("Redis at {url} did not answer within 5 s")))?
        .map_err(|e| StoreError::Unavailable(format!("cannot connect to Redis at {url}: {e}")))?;
        let grace_ms = config.rejoin_grace_ms();
        let redis = Metered {
            inner: redis,
            metrics: Arc::clone(&metrics),
        };
        let store = Arc::new(Self {
            relayer: Relayer::start(
                redis.clone(),
                config.redis_prefix.clone(),
                Arc::clone(&metrics),
            ),
            redis,
            metrics,
            prefix: config.redis_prefix.clone(),
            node: random_id(),
            instance: RwLock::new(String::new()),
            max_lobbies: config.max_lobbies,
            key_ttl_ms: grace_ms.saturating_mul(2).max(60_000),
            node_timeout_ms: u64::from(config.node_timeout_ms),
            hub,
            beats: AtomicU64::new(0),
            events_up: Arc::new(AtomicBool::new(true)),
            commit_script: Script::new(include_str!("redis/commit.lua")),
            heartbeat_script: Script::new(include_str!("redis/heartbeat.lua")),
            forget_script: Script::new(include_str!("redis/forget.lua")),
            admit_script: Script::new(include_str!("redis/admit.lua")),
        });
        // The first beat sets (or learns) the instance and announces this node.
        store.beat(unix_ms()).await?;
        let channel = store.channel(&store.node);
        let events = subscribe(&client, &channel).await?;
        tokio::spawn(listen(
            client,
            channel,
            events,
            (
                Arc::clone(&store.hub),
                Arc::clone(&store.events_up),
                Arc::clone(&store.metrics),
            ),
            shutdown,
        ));
        Ok(store)
    }

    fn channel(&self, node: &str) -> String {
        format!("{}node:{node}", self.prefix)
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    async fn load_now(&self, code: &str) -> Result<Option<Record>, StoreError> {
        let mut redis = self.redis.clone();
        let text: Option<String> = redis
            .hget(self.key(&format!("lobby:{code}")), "rec")
            .await
            .map_err(|e| unavailable(&e))?;
        text.map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| StoreError::Backend(format!("lobby {code} is unreadable: {e}")))
        })
        .transpose()
    }

    async fn commit_now(&self, commit: Commit) -> Result<Outcome, StoreError> {
        let mut call = self.commit_script.prepare_invoke();
        call.arg(&self.prefix)
            .arg(&commit.code)
            .arg(
                commit
                    .before
                    .as_ref()
                    .map(|r| r.rev.to_string())
                    .unwrap_or_default(),
            )
            .arg(self.max_lobbies)
            .arg(self.key_ttl_ms);
        for op in operations(&commit)? {
            if op.first().is_some_and(|o| o == "pub") {
                let bytes = op.get(2).map_or(0, String::len);
                self.metrics.node_message("sent", bytes);
            }
            for part in op {
                call.arg(part);
            }
        }
        let mut redis = self.redis.clone();
        let answer: String = call
            .invoke_async(&mut redis)
            .await
            .map_err(|e| unavailable(&e))?;
        match answer.as_str() {
            "ok" => Ok(Outcome::Applied),
            "conflict" => Ok(Outcome::Conflict),
            "limit" => Ok(Outcome::LobbyLimit),
            other => Err(StoreError::Backend(format!(
                "unexpected commit answer {other:?}"
            ))),
        }
    }

    async fn list_now(
        &self,
        filter: &Properties,
        limit: usize,
    ) -> Result<Vec<LobbySummary>, StoreError> {
        let mut redis = self.redis.clone();
        let codes: Vec<String> = redis
            .zrevrange(self.key("public"), 0, LIST_SCAN - 1)
            .await
            .map_err(|e| unavailable(&e))?;
        if codes.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for code in &codes {
            pipe.hget(self.key(&format!("lobby:{code}")), "rec");
        }
        let records: Vec<Option<String>> = pipe
            .query_async(&mut redis)
            .await
            .map_err(|e| unavailable(&e))?;
        let mut found = Vec::new();
        let mut vanished = Vec::new();
        for (code, text) in codes.iter().zip(records) {
            match text.and_then(|t| serde_json::from_str::<Record>(&t).ok()) {
                Some(record) if record.listed_for(filter) => found.push(record.summary()),
                Some(_) => {}
                None => vanished.push(code.clone()),
            }
            if found.len() >= limit {
                break;
            }
        }
        if !vanished.is_empty() {
            // Lobbies whose keys expired (their nodes died): tidy the indexes.
            let _: Result<(), _> = redis
                .zrem(self.key("public"), &vanished)
                .await
                .map_err(|e| tracing::debug!(%e, "could not tidy the public lobby index"));
            let _: Result<(), _> = redis
                .zrem(self.key("lobbies"), &vanished)
                .await
                .map_err(|e| tracing::debug!(%e, "could not tidy the lobby index"));
        }
        Ok(found)
    }

    async fn due_now(&self, now: u64) -> Result<Vec<(String, PeerId)>, StoreError> {
        let mut redis = self.redis.clone();
        let due: Vec<String> = redis
            .zrangebyscore_limit(self.key("graces"), "-inf", now, 0, GRACES_PER_TICK)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(due.iter().filter_map(|p| parse_place(p)).collect())
    }

    /// One heartbeat: returns the dead nodes and their places (`code peer`).
    async fn beat(&self, now: u64) -> Result<Vec<(String, Vec<(String, PeerId)>)>, StoreError> {
        let beat = self.beats.fetch_add(1, Ordering::Relaxed);
        let refresh = if beat.is_multiple_of(REFRESH_EVERY) {
            "1"
        } else {
            "0"
        };
        let mut redis = self.redis.clone();
        let reply: Vec<String> = self
            .heartbeat_script
            .arg(&self.prefix)
            .arg(&self.node)
            .arg(now)
            .arg(self.node_timeout_ms)
            .arg(self.key_ttl_ms)
            .arg(random_id())
            .arg(refresh)
            .invoke_async(&mut redis)
            .await
            .map_err(|e| unavailable(&e))?;
        let mut reply = reply.into_iter();
        let instance = reply.next().unwrap_or_default();
        self.learn_instance(instance);
        let mut dead = Vec::new();
        while let Some(node) = reply.next() {
            let count: usize = reply.next().and_then(|c| c.parse().ok()).unwrap_or(0);
            let places = reply
                .by_ref()
                .take(count)
                .filter_map(|p| parse_place(&p))
                .collect();
            if node != self.node {
                dead.push((node, places));
            }
        }
        Ok(dead)
    }

    /// Takes note of the cluster's instance id; a changed one means Redis lost its data
    /// (restarted without persistence, flushed): this node's clients are told to reconnect,
    /// and then see the new instance (a restart, protocol §9).
    fn learn_instance(&self, instance: String) {
        let Ok(mut current) = self.instance.write() else {
            return;
        };
        if *current == instance || instance.is_empty() {
            return;
        }
        if !current.is_empty() {
            let told = self.hub.reconnect_all();
            tracing::warn!(
                old = %current,
                new = %instance,
                told,
                "the cluster's lobby state is gone (Redis lost its data): every client here reconnects"
            );
        }
        *current = instance;
    }

    async fn heartbeat_now(&self, now: u64) -> Result<Orphans, StoreError> {
        let dead = self.beat(now).await?;
        let mut orphans = Orphans::default();
        for (node, places) in dead {
            for (code, peer) in places {
                let Some(record) = self.load_now(&code).await? else {
                    continue;
                };
                if let Some(place) = record.place(peer)
                    && place.holder.node == node
                {
                    orphans.places.push((code, peer, place.holder.clone()));
                }
            }
            orphans.nodes.push(node);
        }
        Ok(orphans)
    }

    async fn forget_now(&self, nodes: &[String]) -> Result<(), StoreError> {
        let mut call = self.forget_script.prepare_invoke();
        call.arg(&self.prefix)
            .arg(unix_ms())
            .arg(self.node_timeout_ms);
        for node in nodes {
            call.arg(node);
        }
        let mut redis = self.redis.clone();
        let _: String = call
            .invoke_async(&mut redis)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(())
    }
}

impl LobbyStore for RedisStore {
    fn instance(&self) -> String {
        self.instance.read().map(|i| i.clone()).unwrap_or_default()
    }

    fn node(&self) -> &str {
        &self.node
    }

    fn load<'a>(&'a self, code: &'a str) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        Box::pin(self.load_now(code))
    }

    fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<Outcome, StoreError>> {
        Box::pin(self.commit_now(commit))
    }

    fn relay<'a>(
        &'a self,
        code: &'a str,
        from: PeerId,
        to: PeerId,
        text: Utf8Bytes,
    ) -> BoxFuture<'a, Result<RelayAnswer, StoreError>> {
        Box::pin(self.relayer.relay(code, from, to, text))
    }

    fn list_public<'a>(
        &'a self,
        filter: &'a Properties,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<LobbySummary>, StoreError>> {
        Box::pin(self.list_now(filter, limit))
    }

    fn due_graces(&self, now: u64) -> BoxFuture<'_, Result<Vec<(String, PeerId)>, StoreError>> {
        Box::pin(self.due_now(now))
    }

    fn heartbeat(&self, now: u64) -> BoxFuture<'_, Result<Orphans, StoreError>> {
        Box::pin(self.heartbeat_now(now))
    }

    fn forget_nodes<'a>(&'a self, nodes: &'a [String]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.forget_now(nodes))
    }

    fn counts(&self) -> BoxFuture<'_, Result<(u64, u64), StoreError>> {
        Box::pin(async move {
            let mut redis = self.redis.clone();
            let (lobbies, members): (u64, u64) = redis::pipe()
                .zcard(self.key("lobbies"))
                .scard(self.key(&format!("node:{}:places", self.node)))
                .query_async(&mut redis)
                .await
                .map_err(|e| unavailable(&e))?;
            Ok((lobbies, members))
        })
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if !self.events_up.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable(
                    "this node's cluster event stream (Redis pub/sub) is down".into(),
                ));
            }
            let mut redis = self.redis.clone();
            let instance: Option<String> = redis
                .get(self.key("instance"))
                .await
                .map_err(|e| unavailable(&e))?;
            if instance.as_deref() != Some(self.instance().as_str()) {
                return Err(StoreError::Unavailable(
                    "the cluster's lobby state was lost (Redis restarted empty); this node is catching up".into(),
                ));
            }
            Ok(())
        })
    }

    fn shared(&self) -> bool {
        true
    }

    fn admit<'a>(
        &'a self,
        player: &'a PlayerId,
        identity: Identity,
        conn: u64,
        max: u32,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let cutoff = unix_ms().saturating_sub(self.node_timeout_ms);
            let mut redis = self.redis.clone();
            let admitted: i64 = self
                .admit_script
                .arg(&self.prefix)
                .arg(player_key(player, identity))
                .arg(format!("{} {conn}", self.node))
                .arg(max)
                .arg(cutoff)
                .arg(PLAYER_KEY_TTL_MS)
                .invoke_async(&mut redis)
                .await
                .map_err(|e| unavailable(&e))?;
            Ok(admitted == 1)
        })
    }

    fn release<'a>(
        &'a self,
        player: &'a PlayerId,
        identity: Identity,
        conn: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut redis = self.redis.clone();
            let key = self.key(&format!("player:{}", player_key(player, identity)));
            let _: i64 = redis
                .hdel(key, format!("{} {conn}", self.node))
                .await
                .map_err(|e| unavailable(&e))?;
            Ok(())
        })
    }
}

/// How long a player's connection count lives without a change (connections of dead nodes
/// are dropped from it whenever the player connects again).
const PLAYER_KEY_TTL_MS: u64 = 24 * 3600 * 1000;

/// `<identity>:<player>`: the per-player connection count's key suffix.
fn player_key(player: &PlayerId, identity: Identity) -> String {
    let kind = match identity {
        Identity::Token => "t",
        Identity::Anonymous => "a",
    };
    format!("{kind}:{player}")
}

/// `"<code> <peer>"` → its parts.
fn parse_place(place: &str) -> Option<(String, PeerId)> {
    let (code, peer) = place.split_once(' ')?;
    Some((code.to_owned(), PeerId(peer.parse().ok()?)))
}

/// The script operations of a commit (see `redis/commit.lua`).
fn operations(commit: &Commit) -> Result<Vec<Vec<String>>, StoreError> {
    let mut ops = Vec::new();
    match &commit.after {
        Some(after) => {
            let text = serde_json::to_string(after)
                .map_err(|e| StoreError::Backend(format!("cannot encode a lobby: {e}")))?;
            let public = if after.lobby.public { "1" } else { "0" };
            ops.push(vec![
                "put".into(),
                after.rev.to_string(),
                text,
                after.created.to_string(),
                public.into(),
            ]);
        }
        None => ops.push(vec!["end".into()]),
    }
    let before = commit.before.as_ref();
    let after = commit.after.as_ref();
    let node_in = |r: Option<&Record>, peer: PeerId| {
        r.and_then(|r| r.place(peer)).map(|p| p.holder.node.clone())
    };
    for place in after.map(|r| r.places.as_slice()).unwrap_or_default() {
        let old = node_in(before, place.peer);
        if old.as_deref() != Some(place.holder.node.as_str()) {
            ops.push(vec![
                "seat".into(),
                place.peer.0.to_string(),
                place.holder.node.clone(),
                old.unwrap_or_default(),
            ]);
        }
    }
    for place in before.map(|r| r.places.as_slice()).unwrap_or_default() {
        if after.and_then(|r| r.place(place.peer)).is_none() {
            ops.push(vec![
                "unseat".into(),
                place.peer.0.to_string(),
                place.holder.node.clone(),
            ]);
        }
    }
    let graces = |r: Option<&Record>| -> BTreeMap<PeerId, u64> {
        r.map(|r| detached(r).collect()).unwrap_or_default()
    };
    let (was, now) = (graces(before), graces(after));
    for peer in was.keys() {
        if !now.contains_key(peer) {
            ops.push(vec!["grace".into(), peer.0.to_string(), String::new()]);
        }
    }
    for (peer, until) in &now {
        if was.get(peer) != Some(until) {
            ops.push(vec!["grace".into(), peer.0.to_string(), until.to_string()]);
        }
    }
    for notice in &commit.notices {
        match notice {
            Notice::Deliver { to, texts } => {
                let mut by_node: BTreeMap<&str, Vec<PeerId>> = BTreeMap::new();
                for (peer, node) in to {
                    by_node.entry(node.as_str()).or_default().push(*peer);
                }
                for (node, peers) in by_node {
                    ops.push(vec![
                        "pub".into(),
                        node.to_owned(),
                        deliver_envelope(&peers, texts),
                    ]);
                }
            }
            Notice::Supersede { peer, node } => {
                ops.push(vec!["pub".into(), node.clone(), format!("S {}", peer.0)]);
            }
        }
    }
    Ok(ops)
}

/// `D <peer>,<peer>…\n<message>\n<message>…`: protocol messages (compact JSON: no raw
/// newlines) for peers of one node.
fn deliver_envelope(peers: &[PeerId], texts: &[Utf8Bytes]) -> String {
    let ids: Vec<String> = peers.iter().map(|p| p.0.to_string()).collect();
    let mut out = format!("D {}", ids.join(","));
    for text in texts {
        out.push('\n');
        out.push_str(text.as_str());
    }
    out
}

/// What an envelope asks of this node.
#[derive(Debug, PartialEq, Eq)]
enum Envelope<'a> {
    Deliver(Vec<PeerId>, Vec<&'a str>),
    Relayed(Vec<(PeerId, &'a str)>),
    Supersede(PeerId),
}

fn parse_envelope(payload: &str) -> Option<Envelope<'_>> {
    let (head, body) = payload.split_once('\n').unwrap_or((payload, ""));
    if let Some(ids) = head.strip_prefix("D ") {
        let peers = ids
            .split(',')
            .map(|id| id.parse().ok().map(PeerId))
            .collect::<Option<Vec<_>>>()?;
        let texts = body.split('\n').filter(|t| !t.is_empty()).collect();
        return Some(Envelope::Deliver(peers, texts));
    }
    if head == "R" {
        let signals = body
            .split('\n')
            .map(|line| {
                let (peer, text) = line.split_once(' ')?;
                Some((PeerId(peer.parse().ok()?), text))
            })
            .collect::<Option<Vec<_>>>()?;
        return Some(Envelope::Relayed(signals));
    }
    let peer = head.strip_prefix("S ")?.parse().ok()?;
    Some(Envelope::Supersede(PeerId(peer)))
}

fn dispatch(hub: &Hub, payload: &[u8]) {
    let envelope = std::str::from_utf8(payload).ok().and_then(parse_envelope);
    match envelope {
        Some(Envelope::Deliver(peers, texts)) => {
            for text in texts {
                let text = Utf8Bytes::from(text);
                for peer in &peers {
                    hub.deliver(*peer, text.clone());
                }
            }
        }
        Some(Envelope::Relayed(signals)) => {
            for (peer, text) in signals {
                hub.deliver(peer, Utf8Bytes::from(text));
            }
        }
        Some(Envelope::Supersede(peer)) => hub.supersede(peer),
        None => tracing::warn!(bytes = payload.len(), "ignored a malformed cluster event"),
    }
}

async fn subscribe(client: &Client, channel: &str) -> Result<redis::aio::PubSubStream, StoreError> {
    let connect = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub.into_on_message())
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| {
            StoreError::Unavailable("Redis did not accept the subscription in time".into())
        })?
        .map_err(|e| unavailable(&e))
}

/// Delivers this node's events until shutdown. When the stream breaks (Redis restarted or
/// unreachable), events may have been lost: after subscribing again, every client here is
/// told to reconnect, which resumes its place with the lobby as it is now.
async fn listen(
    client: Client,
    channel: String,
    mut events: redis::aio::PubSubStream,
    (hub, up, metrics): (Arc<Hub>, Arc<AtomicBool>, Arc<Metrics>),
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            event = events.next() => match event {
                Some(msg) => {
                    metrics.node_message("received", msg.get_payload_bytes().len());
                    dispatch(&hub, msg.get_payload_bytes());
                    continue;
                }
                None => {
                    up.store(false, Ordering::SeqCst);
                    tracing::warn!("lost the cluster's event stream (Redis); subscribing again");
                }
            },
        }
        let mut delay = Duration::from_millis(100);
        events = loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(delay) => {}
            }
            match subscribe(&client, &channel).await {
                Ok(events) => break events,
                Err(err) => {
                    tracing::warn!(%err, "cannot subscribe to the cluster's events yet");
                    delay = (delay * 2).min(MAX_RESUBSCRIBE_DELAY);
                }
            }
        };
        let told = hub.reconnect_all();
        up.store(true, Ordering::SeqCst);
        tracing::info!(
            told,
            "cluster events resumed; clients here reconnect to resync"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_reject_garbage() {
        let texts = [
            Utf8Bytes::from("{\"a\":1}"),
            Utf8Bytes::from("{\"b\":\"x\\ny\"}"),
        ];
        let payload = deliver_envelope(&[PeerId(1), PeerId(9_007_199_254_740_991)], &texts);
        assert_eq!(
            parse_envelope(&payload),
            Some(Envelope::Deliver(
                vec![PeerId(1), PeerId(9_007_199_254_740_991)],
                vec!["{\"a\":1}", "{\"b\":\"x\\ny\"}"]
            ))
        );
        assert_eq!(
            parse_envelope("S 42"),
            Some(Envelope::Supersede(PeerId(42)))
        );
        assert_eq!(
            parse_envelope("R\n7 {\"a\":1}\n8 {\"b\":\"c d\"}"),
            Some(Envelope::Relayed(vec![
                (PeerId(7), "{\"a\":1}"),
                (PeerId(8), "{\"b\":\"c d\"}")
            ]))
        );
        for bad in [
            "",
            "D ",
            "D 1,x\n{}",
            "S",
            "S -1",
            "X 1",
            "D 1,,2",
            "R",
            "R\n7",
            "R\nx {}",
        ] {
            assert_eq!(parse_envelope(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn places_parse_or_are_skipped() {
        assert_eq!(parse_place("ABCDE 7"), Some(("ABCDE".into(), PeerId(7))));
        assert_eq!(parse_place("ABCDE"), None);
        assert_eq!(parse_place("ABCDE x"), None);
    }
}
