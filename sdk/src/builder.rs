//! [`SessionBuilder`]: a session's settings, checked, and its start (blocking, async or in
//! the background, [`PendingSession`]); what it starts is a [`Session`].

use std::net::SocketAddr;
use std::time::Duration;

use squadlink_protocol::IceServer;

use crate::bridge::NetworkSide;
use crate::channel::{ChannelKind, FRAGMENT_SIZE};
use crate::conditioner::NetworkConditions;
use crate::error::{Error, Result};
use crate::event::IcePolicy;
use crate::lobby::LobbyRef;
use crate::session::Session;
use crate::settings::{LOBBY_ENTRY_WAIT, MAX_CHANNELS, Settings};
#[cfg(not(target_arch = "wasm32"))]
use crate::transport::Driver;

/// Most member-data entries a game may add (the matchmaker keeps 16, two are ours).
const MAX_GAME_MEMBER_DATA: usize = 14;

impl Session {
    /// Starts configuring a session for the matchmaker at `url`.
    pub fn builder(url: impl Into<String>) -> SessionBuilder {
        SessionBuilder::new(url)
    }
}

/// Configures and starts a [`Session`].
#[derive(Debug, Clone)]
pub struct SessionBuilder {
    settings: Settings,
}

impl SessionBuilder {
    /// Starts a builder for the matchmaker at `url` (e.g. `ws://127.0.0.1:7878/v1`).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            settings: Settings::new(url.into()),
        }
    }

    /// Declares the next channel (channel 0, then 1, …). Every peer must declare the same
    /// list in the same order. A session with no channels is fine for voice only.
    pub fn channel(mut self, kind: ChannelKind) -> Self {
        self.settings.channels.push(kind);
        self
    }

    /// Tells the other members `key` = `value` about us (every member's copy of the lobby
    /// shows it: [`LobbyInfo::member_data`]), e.g. a team, a colour, or that we only watch.
    /// Up to 14 entries, keys of 1–64 bytes not starting with `squadlink.` (ours), values
    /// up to 256 bytes (checked when the session starts).
    pub fn member_data(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.member_data.insert(key.into(), value.into());
        self
    }

    /// Which lobby to enter (default: create a private lobby for 8).
    pub fn join(mut self, lobby: LobbyRef) -> Self {
        self.settings.lobby = lobby;
        self
    }

    /// The player token from your backend (see the matchmaker docs).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.settings.token = Some(token.into());
        self
    }

    /// Dev-mode servers only: the player id to use without a token.
    pub fn player_id(mut self, id: impl Into<String>) -> Self {
        self.settings.player_id = Some(id.into());
        self
    }

    /// The local UDP address to bind (default `0.0.0.0:0`: every interface, a free port).
    /// Bind a concrete address such as `127.0.0.1:0` to use only that one.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.settings.bind = addr;
        self
    }

    /// Direct paths allowed, or relay only.
    pub fn ice_policy(mut self, policy: IcePolicy) -> Self {
        self.settings.ice_policy = policy;
        self
    }

    /// ICE servers to use besides the ones the matchmaker hands out.
    pub fn ice_server(mut self, server: IceServer) -> Self {
        self.settings.extra_ice_servers.push(server);
        self
    }

    /// Largest reliable message (default 1 MiB). Unreliable messages are limited to
    /// 16 KiB (they are never fragmented).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.settings.max_message_size = bytes;
        self
    }

    /// How many bytes of received messages one channel holds until the game reads them
    /// (default [`DEFAULT_INBOX_LIMIT`], 32 MiB). Past it, new messages on that channel are
    /// dropped, counted in [`PeerStats::dropped_unread`] and reported once a second as
    /// [`Error::InboxFull`]: a game that stops reading a channel (or a peer that floods
    /// one) costs bounded memory. A game that reads every frame never reaches it.
    pub fn inbox_limit(mut self, bytes: usize) -> Self {
        self.settings.inbox_limit = bytes;
        self
    }

    /// How long a message on an unreliable channel stays worth sending (default
    /// [`DEFAULT_UNRELIABLE_LIFETIME`], 500 ms; 1 ms to 65.535 s). Within it a lost message
    /// is retransmitted; past it, a message still waiting (behind congestion after a loss,
    /// say) is dropped unsent rather than delivered late. Game state sent 50 times a second
    /// is stale long before 500 ms: lower it for fast games, raise it for rare unreliable
    /// messages that are still useful late. Applies to the messages this session sends.
    pub fn unreliable_lifetime(mut self, lifetime: Duration) -> Self {
        self.settings.unreliable_lifetime = lifetime;
        self
    }

    /// How long a peer may take to connect before it is reported disconnected (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// How long a connected peer may stay silent before it is reported disconnected
    /// (default 4 s; both ends ping each other twice a second, so each hears from the
    /// other about 4 times a second).
    pub fn silence_timeout(mut self, timeout: Duration) -> Self {
        self.settings.silence_timeout = timeout;
        self
    }

    /// For testing how a game copes with a bad network: drops this fraction (0.0–1.0) of
    /// the datagrams this session sends and receives, at random. Default 0.
    pub fn simulated_loss(mut self, fraction: f64) -> Self {
        self.settings.simulated_loss = fraction;
        self
    }

    /// For testing how a game copes with a bad network: every datagram this session
    /// receives goes through a simulated path first (latency, jitter, loss, duplication,
    /// reordering, a bandwidth cap; see [`NetworkConditions`]). Two sessions with 75 ms
    /// each see a 150 ms round trip between them. Datagrams of TURN over TCP or TLS are not
    /// delayed. Default: a perfect path.
    pub fn simulated_network(mut self, conditions: NetworkConditions) -> Self {
        self.settings.simulated_network = conditions;
        self
    }

    /// How long a working relayed path waits for a direct one before ICE settles on it
    /// (default 500 ms). Direct paths are nominated the moment they work, so this only
    /// delays players who need a relay; shorter connects them sooner but may settle on the
    /// relay while a hole is still being punched over a slow link (a relay costs latency and
    /// TURN bandwidth for the whole session). Ignored with [`IcePolicy::RelayOnly`].
    pub fn relay_wait(mut self, wait: Duration) -> Self {
        self.settings.relay_wait = wait;
        self
    }

    /// Another matchmaker URL: a further node of the same cluster (`--redis-url`). The
    /// session starts with the first URL that answers, in order; after its matchmaker
    /// connection drops (a node killed, restarted or draining), each reconnection attempt
    /// moves on to the next URL, so it resumes its lobby place (same peer id, peers still
    /// connected) on another node. One URL behind a load balancer works as well.
    pub fn fallback_url(mut self, url: impl Into<String>) -> Self {
        self.settings.fallback_urls.push(url.into());
        self
    }

    /// Opt in to telling the matchmaker, once per peer connection, the kind of path it got
    /// (host, srflx or relay) and how long it took to connect — no addresses, nothing
    /// else. The matchmaker only counts them (its `/metrics`: how many players need the
    /// relay, connect times). Off by default. Needs a matchmaker of this release or newer
    /// (an older one answers `unknown_type`, an [`Event::Error`]).
    pub fn report_connections(mut self, on: bool) -> Self {
        self.settings.report_connections = on;
        self
    }

    /// How long to keep trying to reach the matchmaker again after its connection dropped
    /// (default 60 s; attempts back off from 250 ms to 8 s). Peers stay connected meanwhile;
    /// when the window ends without success the session closes. The matchmaker keeps a
    /// dropped player's lobby place for its `--rejoin-grace-secs` (default 20 s): reconnect
    /// within that to keep the same peer id.
    pub fn reconnect_window(mut self, window: Duration) -> Self {
        self.settings.reconnect_window = window;
        self
    }

    /// Trusts the certificate(s) in `pem` for `turns:` (TURN over TLS) servers, besides the
    /// usual public roots (Mozilla's list, built in). For a TURN server with a self-signed
    /// or private-CA certificate; may be called more than once.
    pub fn tls_root_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.settings.tls_roots.push(pem.into());
        self
    }

    /// Tests: holds each lookup of the ICE servers' addresses back for `delay` (a slow
    /// resolver).
    #[cfg(test)]
    pub(crate) fn resolve_delay(mut self, delay: Duration) -> Self {
        self.settings.resolve_delay = delay;
        self
    }

    fn validate(&self) -> Result<()> {
        for url in std::iter::once(&self.settings.url).chain(&self.settings.fallback_urls) {
            if !url.starts_with("ws://") && !url.starts_with("wss://") {
                return Err(Error::Config(format!(
                    "matchmaker URL {url:?} must start with ws:// or wss://"
                )));
            }
        }
        self.validate_settings()
    }

    /// Everything but the matchmaker URL.
    fn validate_settings(&self) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        if !self.settings.tls_roots.is_empty() {
            crate::transport::check_tls_roots(&self.settings.tls_roots).map_err(Error::Config)?;
        }
        if self.settings.channels.len() > MAX_CHANNELS {
            return Err(Error::Config(format!("at most {MAX_CHANNELS} channels")));
        }
        if !self.settings.simulated_network.is_valid() {
            return Err(Error::Config(format!(
                "simulated_network: every fraction must be between 0 and 1 and a bandwidth above 0 ({:?})",
                self.settings.simulated_network
            )));
        }
        if !(0.0..=1.0).contains(&self.settings.simulated_loss) {
            return Err(Error::Config(
                "simulated_loss must be between 0 and 1".into(),
            ));
        }
        if self.settings.member_data.len() > MAX_GAME_MEMBER_DATA {
            return Err(Error::Config(format!(
                "member_data: at most {MAX_GAME_MEMBER_DATA} entries (the matchmaker keeps 16 a member, two of them Squadlink's)"
            )));
        }
        for (key, value) in &self.settings.member_data {
            if key.is_empty()
                || key.len() > 64
                || value.len() > 256
                || key.starts_with("squadlink.")
            {
                return Err(Error::Config(format!(
                    "member_data {key:?}: keys are 1-64 bytes and not `squadlink.…` (Squadlink's own), values at most 256 bytes"
                )));
            }
        }
        if self.settings.max_message_size < FRAGMENT_SIZE {
            return Err(Error::Config(format!(
                "max_message_size must be at least {FRAGMENT_SIZE}"
            )));
        }
        Ok(())
    }

    /// Connects to the matchmaker, enters the lobby and starts connecting to its members.
    /// Blocks until the lobby is entered (at most 25 s); peers connect afterwards and
    /// are announced by [`Event::PeerConnected`]. Not in the browser, where nothing may
    /// block: use [`SessionBuilder::start_async`] or [`SessionBuilder::start_background`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn start(self) -> Result<Session> {
        let (session, ready) = self.spawn()?;
        match ready.recv_timeout(LOBBY_ENTRY_WAIT) {
            Ok(Ok(())) => Ok(session),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Timeout {
                what: "entering the lobby",
                secs: LOBBY_ENTRY_WAIT.as_secs(),
            }),
        }
    }

    /// Like [`SessionBuilder::start`], without blocking the async runtime.
    #[cfg(not(target_arch = "wasm32"))]
    pub async fn start_async(self) -> Result<Session> {
        let (session, ready) = self.spawn()?;
        let waited =
            tokio::task::spawn_blocking(move || ready.recv_timeout(LOBBY_ENTRY_WAIT)).await;
        match waited {
            Ok(Ok(Ok(()))) => Ok(session),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) | Err(_) => Err(Error::Timeout {
                what: "entering the lobby",
                secs: LOBBY_ENTRY_WAIT.as_secs(),
            }),
        }
    }

    /// Connects to the matchmaker and enters the lobby, awaiting it on the page's event
    /// loop (at most 25 s); peers connect afterwards and are announced by
    /// [`Event::PeerConnected`].
    #[cfg(target_arch = "wasm32")]
    pub async fn start_async(self) -> Result<Session> {
        let mut pending = self.start_background()?;
        loop {
            if let Some(result) = pending.poll() {
                return result;
            }
            crate::transport::web::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Starts without waiting: returns at once, and [`PendingSession::poll`] says when the
    /// lobby has been entered. For loops that must never block, such as Bevy systems.
    pub fn start_background(self) -> Result<PendingSession> {
        let (session, ready) = self.spawn()?;
        Ok(PendingSession {
            session: Some(session),
            ready,
            deadline: web_time::Instant::now() + LOBBY_ENTRY_WAIT,
        })
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn spawn(self) -> Result<(Session, crossbeam_channel::Receiver<Result<()>>)> {
        self.validate()?;
        let (mut session, net) = Session::split(self.settings);
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let thread = std::thread::Builder::new()
            .name("squadlink-net".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(Error::Io(format!("tokio runtime: {e}"))));
                        return;
                    }
                };
                runtime.block_on(Driver::run(
                    net.settings,
                    net.shared,
                    net.commands,
                    ready_tx,
                    net.ident,
                ));
                drop(runtime);
                // The session's state is gone: give its pages back (see `memory`).
                crate::memory::give_back();
            })
            .map_err(|e| Error::Io(format!("cannot start the network thread: {e}")))?;
        session.attach_thread(thread);
        Ok((session, ready_rx))
    }

    /// The session's network side runs as a task on the page's event loop.
    #[cfg(target_arch = "wasm32")]
    fn spawn(self) -> Result<(Session, crossbeam_channel::Receiver<Result<()>>)> {
        self.validate()?;
        let (session, net) = Session::split(self.settings);
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        wasm_bindgen_futures::spawn_local(crate::transport::web::run(
            net.settings,
            (net.shared, session.media_key()),
            net.commands,
            ready_tx,
            net.ident,
        ));
        Ok((session, ready_rx))
    }

    /// Checks the settings for a session on the in-memory network (`testing::TestNet`; the matchmaker URL
    /// is not used there) and splits it.
    pub(crate) fn in_memory(self) -> Result<(Session, NetworkSide)> {
        self.validate_settings()?;
        Ok(Session::split(self.settings))
    }
}

/// A session that is still entering its lobby; see [`SessionBuilder::start_background`].
pub struct PendingSession {
    session: Option<Session>,
    ready: crossbeam_channel::Receiver<Result<()>>,
    deadline: web_time::Instant,
}

impl PendingSession {
    /// `None` while still connecting; then the session, or why it could not start. Never
    /// blocks. After it has returned `Some`, it returns `Some(Err(Error::Closed))`.
    pub fn poll(&mut self) -> Option<Result<Session>> {
        let outcome = match self.ready.try_recv() {
            Ok(result) => result,
            Err(crossbeam_channel::TryRecvError::Empty)
                if web_time::Instant::now() < self.deadline =>
            {
                return None;
            }
            Err(crossbeam_channel::TryRecvError::Empty) => Err(Error::Timeout {
                what: "entering the lobby",
                secs: LOBBY_ENTRY_WAIT.as_secs(),
            }),
            Err(crossbeam_channel::TryRecvError::Disconnected) => Err(Error::Closed),
        };
        let session = self.session.take();
        Some(match (outcome, session) {
            (Ok(()), Some(s)) => Ok(s),
            (Err(e), _) => Err(e),
            (Ok(()), None) => Err(Error::Closed),
        })
    }
}
