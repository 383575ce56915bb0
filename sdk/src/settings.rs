//! A session's settings: what [`crate::SessionBuilder`] fills and the network thread reads.
//! One struct, so a new setting is one field here and one builder method, and nothing is
//! copied between them.

use std::net::SocketAddr;
use std::time::Duration;

use squadlink_protocol::IceServer;

use crate::channel::ChannelKind;
use crate::conditioner::NetworkConditions;
use crate::event::IcePolicy;
use crate::lobby::LobbyRef;

/// How long an unreliable message may wait to be sent by default: see
/// [`crate::SessionBuilder::unreliable_lifetime`].
pub const DEFAULT_UNRELIABLE_LIFETIME: Duration = Duration::from_millis(500);

/// Bytes one channel's inbox holds by default: see [`crate::SessionBuilder::inbox_limit`].
pub const DEFAULT_INBOX_LIMIT: usize = 32 << 20;

/// Most channels a session may declare.
pub const MAX_CHANNELS: usize = 64;

/// How long [`crate::SessionBuilder::start`] waits for the lobby to be entered: the matchmaker
/// connection (its own timeouts: TCP, TLS, WebSocket and `hello`), the join, and the
/// network thread's start.
pub(crate) const LOBBY_ENTRY_WAIT: Duration = Duration::from_secs(25);

/// Every setting of a session (see each [`crate::SessionBuilder`] method for its meaning).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) url: String,
    /// Further matchmaker URLs (nodes of one cluster), tried in order after `url`.
    pub(crate) fallback_urls: Vec<String>,
    /// Tell the matchmaker each connection's path kind and connect time (opt-in).
    pub(crate) report_connections: bool,
    pub(crate) channels: Vec<ChannelKind>,
    pub(crate) lobby: LobbyRef,
    pub(crate) token: Option<String>,
    pub(crate) player_id: Option<String>,
    /// The game's own member data (`SessionBuilder::member_data`), beside ours.
    pub(crate) member_data: squadlink_protocol::Properties,
    pub(crate) bind: SocketAddr,
    pub(crate) ice_policy: IcePolicy,
    pub(crate) extra_ice_servers: Vec<IceServer>,
    pub(crate) max_message_size: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) silence_timeout: Duration,
    pub(crate) simulated_loss: f64,
    pub(crate) simulated_network: NetworkConditions,
    pub(crate) tls_roots: Vec<Vec<u8>>,
    pub(crate) reconnect_window: Duration,
    pub(crate) relay_wait: Duration,
    pub(crate) inbox_limit: usize,
    pub(crate) unreliable_lifetime: Duration,
    /// Tests only: how long each lookup of the ICE servers' addresses is held back (a slow
    /// resolver). Zero otherwise.
    pub(crate) resolve_delay: Duration,
}

impl Settings {
    /// The matchmaker URL number `i`, wrapping around `url` and its fallbacks.
    pub(crate) fn matchmaker_url(&self, i: usize) -> &str {
        let count = 1 + self.fallback_urls.len();
        match i % count {
            0 => &self.url,
            n => self
                .fallback_urls
                .get(n - 1)
                .map_or(self.url.as_str(), String::as_str),
        }
    }

    /// How many matchmaker URLs the session may use.
    pub(crate) fn matchmaker_urls(&self) -> usize {
        1 + self.fallback_urls.len()
    }

    /// The defaults, for the matchmaker at `url`.
    pub(crate) fn new(url: String) -> Self {
        Self {
            url,
            fallback_urls: Vec::new(),
            report_connections: false,
            channels: Vec::new(),
            lobby: LobbyRef::create(8),
            token: None,
            player_id: None,
            member_data: squadlink_protocol::Properties::new(),
            bind: SocketAddr::from(([0, 0, 0, 0], 0)),
            ice_policy: IcePolicy::All,
            extra_ice_servers: Vec::new(),
            max_message_size: 1 << 20,
            connect_timeout: Duration::from_secs(10),
            silence_timeout: Duration::from_secs(4),
            simulated_loss: 0.0,
            simulated_network: NetworkConditions::default(),
            tls_roots: Vec::new(),
            reconnect_window: Duration::from_secs(60),
            relay_wait: Duration::from_millis(500),
            inbox_limit: DEFAULT_INBOX_LIMIT,
            unreliable_lifetime: DEFAULT_UNRELIABLE_LIFETIME,
            resolve_delay: Duration::ZERO,
        }
    }
}
