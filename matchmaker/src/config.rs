//! Server settings: every one is a command-line flag and an environment variable.

use std::net::SocketAddr;
use std::time::Duration;

/// Default listen address: loopback only, so dev mode is safe by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";
/// Default TURN credential lifetime (1 hour).
pub const DEFAULT_TURN_TTL_SECS: u64 = 3600;
/// Longest TURN credential lifetime accepted (24 hours).
pub const MAX_TURN_TTL_SECS: u64 = 86_400;

/// One TURN server of a fleet and the region it serves (`--turn-server REGION=URL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionalTurn {
    /// The region, e.g. `eu` (1-32 of a-z 0-9 `-` `_`).
    pub region: String,
    /// Its `turn:` or `turns:` URL.
    pub url: String,
}

fn parse_regional(text: &str) -> Result<RegionalTurn, String> {
    let (region, url) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not REGION=URL (e.g. eu=turn:eu1.example.com:3478)"))?;
    if !crate::auth::valid_region(region) {
        return Err(format!(
            "region {region:?} must be 1-32 of a-z 0-9 - _ (e.g. eu, us-east)"
        ));
    }
    Ok(RegionalTurn {
        region: region.to_owned(),
        url: url.to_owned(),
    })
}

/// Whether players may connect without a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DevMode {
    /// On while listening on a loopback address with no `--auth-secret`; off otherwise (a
    /// server with an auth secret behind a local TLS proxy requires tokens).
    Auto,
    /// Always accept anonymous players. Never use on a public address. Together with
    /// `--auth-secret` it is refused unless `--allow-anonymous-with-auth-secret` is given.
    On,
    /// Always require a token signed with the auth secret.
    Off,
}

/// Everything the matchmaker can be told. Build it from the command line with
/// `clap::Parser` (see the binary), or start from [`Config::default`] when embedding.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address and port to listen on. Use port 0 to pick a free port.
    #[arg(long, env = "SQUADLINK_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Public STUN URL handed to players (repeat the flag or separate with commas),
    /// e.g. stun:turn.example.com:3478.
    #[arg(long = "stun-url", env = "SQUADLINK_STUN_URLS", value_delimiter = ',')]
    pub stun_urls: Vec<String>,

    /// TURN URL handed to players with time-limited credentials (repeat or comma-separate),
    /// e.g. turn:turn.example.com:3478?transport=udp. Needs --turn-secret.
    #[arg(long = "turn-url", env = "SQUADLINK_TURN_URLS", value_delimiter = ',')]
    pub turn_urls: Vec<String>,

    /// A TURN server of the fleet, with its region: REGION=URL (repeat or comma-separate),
    /// e.g. eu=turn:eu1.example.com:3478?transport=udp. A player whose region (the token's
    /// `region` claim, or `?region=` on the WebSocket URL) has servers gets those; others
    /// get the --turn-url servers, or, without any, every region's. All share --turn-secret.
    #[arg(long = "turn-server", env = "SQUADLINK_TURN_SERVERS", value_delimiter = ',',
          value_parser = parse_regional)]
    pub turn_servers: Vec<RegionalTurn>,

    /// Shared secret(s) with coturn's static-auth-secret. The first one signs; list the old
    /// one second while rotating (coturn accepts several static-auth-secret lines).
    #[arg(
        long = "turn-secret",
        env = "SQUADLINK_TURN_SECRETS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub turn_secrets: Vec<String>,

    /// Lifetime of issued TURN credentials in seconds (60 to 86400, i.e. capped at 24 h).
    #[arg(
        long,
        env = "SQUADLINK_TURN_TTL_SECS",
        default_value_t = DEFAULT_TURN_TTL_SECS,
        value_parser = clap::value_parser!(u64).range(60..=MAX_TURN_TTL_SECS)
    )]
    pub turn_ttl_secs: u64,

    /// Secret that signs player tokens (HS256); mint them with `squadlink-matchmaker
    /// mint-token` or `squadlink_matchmaker::auth::mint_token`.
    #[arg(long, env = "SQUADLINK_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,

    /// Accept players without a token: auto = only while listening on loopback and no
    /// --auth-secret is set.
    #[arg(long, env = "SQUADLINK_DEV_MODE", value_enum, default_value_t = DevMode::Auto)]
    pub dev_mode: DevMode,

    /// Let `--dev-mode on` accept anonymous players beside token-authenticated ones (refused
    /// without this flag). Anonymous players can never take over a token-authenticated
    /// player's lobby place, but they can pick any free player id. A warning is logged at
    /// every start.
    #[arg(long, env = "SQUADLINK_ALLOW_ANONYMOUS_WITH_AUTH_SECRET")]
    pub allow_anonymous_with_auth_secret: bool,

    /// When set, a token's `aud` claim must be (or contain) this value.
    #[arg(long, env = "SQUADLINK_TOKEN_AUDIENCE")]
    pub token_audience: Option<String>,

    /// When set, a token's `iss` claim must equal this value.
    #[arg(long, env = "SQUADLINK_TOKEN_ISSUER")]
    pub token_issuer: Option<String>,

    /// Largest text frame accepted from a client, in bytes.
    #[arg(long, env = "SQUADLINK_MAX_FRAME_BYTES", default_value_t = 16 * 1024,
          value_parser = clap::value_parser!(u32).range(1024..=1_048_576))]
    pub max_frame_bytes: u32,

    /// Sustained messages per second per connection.
    #[arg(long, env = "SQUADLINK_MESSAGES_PER_SECOND", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub messages_per_second: u32,

    /// Messages a connection may send in a burst above the sustained rate.
    #[arg(long, env = "SQUADLINK_MESSAGE_BURST", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub message_burst: u32,

    /// Most simultaneous connections; further ones are closed with server_full.
    #[arg(long, env = "SQUADLINK_MAX_CONNECTIONS", default_value_t = 20_000)]
    pub max_connections: u32,

    /// Most live connections of one player (by player id and way of authenticating);
    /// further ones are closed with too_many_connections. A rejoin briefly needs two.
    #[arg(long, env = "SQUADLINK_MAX_CONNECTIONS_PER_PLAYER", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(2..))]
    pub max_connections_per_player: u32,

    /// Seconds from accepting a TCP connection to its WebSocket upgrade (the whole HTTP
    /// request); a slower or silent socket is closed.
    #[arg(long, env = "SQUADLINK_UPGRADE_TIMEOUT_SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=120))]
    pub upgrade_timeout_secs: u32,

    /// Most accepted sockets still before their upgrade; further ones are closed at once.
    #[arg(long, env = "SQUADLINK_MAX_PENDING_UPGRADES", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_pending_upgrades: u32,

    /// Most sockets before their upgrade from one IP address. Behind a reverse proxy every
    /// connection comes from the proxy's address: raise this to --max-pending-upgrades.
    #[arg(long, env = "SQUADLINK_MAX_PENDING_PER_ADDRESS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_pending_per_address: u32,

    /// Most lobbies at once; further create_lobby requests get too_many_lobbies.
    #[arg(long, env = "SQUADLINK_MAX_LOBBIES", default_value_t = 10_000)]
    pub max_lobbies: u32,

    /// Largest max_members a lobby may ask for (2 to 64).
    #[arg(long, env = "SQUADLINK_MAX_MEMBERS", default_value_t = 16,
          value_parser = clap::value_parser!(u8).range(2..=64))]
    pub max_members: u8,

    /// Server→client messages that may wait for one client; overflow disconnects it.
    #[arg(long, env = "SQUADLINK_OUTBOUND_QUEUE", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(8..=65_536))]
    pub outbound_queue: u32,

    /// Seconds between WebSocket pings the server sends.
    #[arg(long, env = "SQUADLINK_PING_INTERVAL_SECS", default_value_t = 15,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub ping_interval_secs: u32,

    /// Seconds without any frame from a client before it is closed (idle_timeout). Must be
    /// longer than --ping-interval-secs, or clients that answer every ping are cut off.
    #[arg(long, env = "SQUADLINK_IDLE_TIMEOUT_SECS", default_value_t = 45,
          value_parser = clap::value_parser!(u32).range(2..))]
    pub idle_timeout_secs: u32,

    /// Seconds a new connection has to send its hello.
    #[arg(long, env = "SQUADLINK_HELLO_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub hello_timeout_secs: u32,

    /// WebSocket read buffer per connection, in bytes. Small keeps idle connections cheap
    /// (the library default of 128 KiB costs ~137 KB per connection).
    #[arg(long, env = "SQUADLINK_READ_BUFFER_BYTES", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(512..=1_048_576))]
    pub read_buffer_bytes: u32,

    /// Seconds a player whose connection dropped (without leaving) stays in its lobby. If
    /// it reconnects within them and joins the same lobby, it gets its peer id back and the
    /// others notice nothing; otherwise they then hear it left. 0 = leave at once.
    #[arg(long, env = "SQUADLINK_REJOIN_GRACE_SECS", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(0..=600))]
    pub rejoin_grace_secs: u32,

    /// Share lobbies with other matchmaker nodes through this Redis server
    /// (redis://host:port/db, or redis+unix:///path). Without it the node keeps lobbies in
    /// memory on its own (the default). Players of one lobby may then connect to any node.
    #[arg(long, env = "SQUADLINK_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key and channel this cluster uses, so several clusters can
    /// share one Redis server.
    #[arg(long, env = "SQUADLINK_REDIS_PREFIX", default_value = "squadlink:")]
    pub redis_prefix: String,

    /// Milliseconds without a heartbeat after which the other nodes treat a node as dead
    /// and keep its players' places for the rejoin grace. Nodes beat every 500 ms.
    #[arg(long, env = "SQUADLINK_NODE_TIMEOUT_MS", default_value_t = 3000,
          value_parser = clap::value_parser!(u32).range(1000..=60_000))]
    pub node_timeout_ms: u32,

    /// On SIGTERM, a cluster node drains first: it stops accepting players, tells each
    /// connected one to move to another node (`moving`), and waits up to this many seconds
    /// for them to go before closing the rest. 0 = close at once. A single node (no
    /// --redis-url) has nowhere to send players and closes at once.
    #[arg(long, env = "SQUADLINK_DRAIN_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(0..=300))]
    pub drain_secs: u32,

    /// Serve Prometheus metrics (`GET /metrics`, OpenMetrics text) on this separate
    /// address, e.g. 127.0.0.1:9100. Off by default; keep it off the public internet.
    #[arg(long, env = "SQUADLINK_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            stun_urls: Vec::new(),
            turn_urls: Vec::new(),
            turn_servers: Vec::new(),
            turn_secrets: Vec::new(),
            turn_ttl_secs: DEFAULT_TURN_TTL_SECS,
            auth_secret: None,
            dev_mode: DevMode::Auto,
            allow_anonymous_with_auth_secret: false,
            token_audience: None,
            token_issuer: None,
            max_frame_bytes: 16 * 1024,
            messages_per_second: 50,
            message_burst: 100,
            max_connections: 20_000,
            max_connections_per_player: 4,
            upgrade_timeout_secs: 5,
            max_pending_upgrades: 512,
            max_pending_per_address: 16,
            max_lobbies: 10_000,
            max_members: 16,
            outbound_queue: 256,
            ping_interval_secs: 15,
            idle_timeout_secs: 45,
            hello_timeout_secs: 10,
            read_buffer_bytes: 4096,
            rejoin_grace_secs: 20,
            redis_url: None,
            redis_prefix: "squadlink:".into(),
            node_timeout_ms: 3000,
            drain_secs: 10,
            metrics_listen: None,
        }
    }
}

/// A setting that cannot work, with what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// TURN URLs were given without a secret to sign credentials.
    #[error(
        "--turn-url was given but no --turn-secret: set the secret from coturn's static-auth-secret"
    )]
    TurnWithoutSecret,
    /// An empty secret.
    #[error("{0} must not be empty")]
    EmptySecret(&'static str),
    /// Dev mode off without any way to authenticate.
    #[error(
        "dev mode is off and no --auth-secret is set, so no player could ever log in: set --auth-secret (or --dev-mode on for local testing)"
    )]
    NoWayToAuthenticate,
    /// TTL outside the allowed range (when built in code rather than by the CLI).
    #[error("turn_ttl_secs must be between 60 and {MAX_TURN_TTL_SECS}, got {0}")]
    TtlOutOfRange(u64),
    /// A malformed ICE URL.
    #[error("{0:?} is not a {1} URL (it must start with {1}:)")]
    BadUrl(String, &'static str),
    /// `--dev-mode on` with an auth secret, without the flag that allows it.
    #[error(
        "--dev-mode on together with --auth-secret would let anyone connect without a token beside your authenticated players: drop --dev-mode on (tokens only), or add --allow-anonymous-with-auth-secret if that is really what you want"
    )]
    AnonymousBesideTokens,
    /// An idle timeout that clients answering every ping cannot meet.
    #[error(
        "--idle-timeout-secs ({idle}) must be longer than --ping-interval-secs ({ping}): a client that answers every ping would still be cut off; use at least {}", ping.saturating_mul(2)
    )]
    IdleNotAbovePing {
        /// The idle timeout asked for.
        idle: u32,
        /// The ping interval asked for.
        ping: u32,
    },
    /// A limit of zero, or a per-player limit below two.
    #[error("{0}")]
    BadLimit(&'static str),
    /// An empty audience or issuer.
    #[error("{0} must not be empty when given")]
    EmptyClaim(&'static str),
}

impl Config {
    /// Checks that the settings can work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if (!self.turn_urls.is_empty() || !self.turn_servers.is_empty())
            && self.turn_secrets.is_empty()
        {
            return Err(ConfigError::TurnWithoutSecret);
        }
        if self.turn_secrets.iter().any(String::is_empty) {
            return Err(ConfigError::EmptySecret("--turn-secret"));
        }
        if self.auth_secret.as_deref() == Some("") {
            return Err(ConfigError::EmptySecret("--auth-secret"));
        }
        if !self.dev_mode_enabled() && self.auth_secret.is_none() {
            return Err(ConfigError::NoWayToAuthenticate);
        }
        if self.dev_mode == DevMode::On
            && self.auth_secret.is_some()
            && !self.allow_anonymous_with_auth_secret
        {
            return Err(ConfigError::AnonymousBesideTokens);
        }
        if self.idle_timeout_secs <= self.ping_interval_secs {
            return Err(ConfigError::IdleNotAbovePing {
                idle: self.idle_timeout_secs,
                ping: self.ping_interval_secs,
            });
        }
        if self.max_connections_per_player < 2 {
            return Err(ConfigError::BadLimit(
                "max_connections_per_player must be at least 2 (a rejoin briefly needs two)",
            ));
        }
        if self.upgrade_timeout_secs == 0
            || self.max_pending_upgrades == 0
            || self.max_pending_per_address == 0
        {
            return Err(ConfigError::BadLimit(
                "upgrade_timeout_secs, max_pending_upgrades and max_pending_per_address must be at least 1",
            ));
        }
        if self.token_audience.as_deref() == Some("") {
            return Err(ConfigError::EmptyClaim("--token-audience"));
        }
        if self.token_issuer.as_deref() == Some("") {
            return Err(ConfigError::EmptyClaim("--token-issuer"));
        }
        if !(60..=MAX_TURN_TTL_SECS).contains(&self.turn_ttl_secs) {
            return Err(ConfigError::TtlOutOfRange(self.turn_ttl_secs));
        }
        for url in &self.stun_urls {
            if !url.starts_with("stun:") && !url.starts_with("stuns:") {
                return Err(ConfigError::BadUrl(url.clone(), "stun"));
            }
        }
        for url in self
            .turn_urls
            .iter()
            .chain(self.turn_servers.iter().map(|s| &s.url))
        {
            if !url.starts_with("turn:") && !url.starts_with("turns:") {
                return Err(ConfigError::BadUrl(url.clone(), "turn"));
            }
        }
        Ok(())
    }

    /// Whether anonymous players are accepted, resolving [`DevMode::Auto`]: on for a
    /// loopback listener without an auth secret.
    pub fn dev_mode_enabled(&self) -> bool {
        match self.dev_mode {
            DevMode::On => true,
            DevMode::Off => false,
            DevMode::Auto => self.listen.ip().is_loopback() && self.auth_secret.is_none(),
        }
    }

    /// What tokens must say besides a valid signature and expiry.
    pub fn token_rules(&self) -> crate::auth::TokenRules<'_> {
        crate::auth::TokenRules {
            audience: self.token_audience.as_deref(),
            issuer: self.token_issuer.as_deref(),
        }
    }

    /// The limits as announced to clients.
    pub fn limits(&self) -> squadlink_protocol::Limits {
        squadlink_protocol::Limits {
            max_frame_bytes: self.max_frame_bytes,
            messages_per_second: self.messages_per_second,
            message_burst: self.message_burst,
            max_members_per_lobby: self.max_members,
            max_properties: crate::store::MAX_PROPERTIES,
            outbound_queue: self.outbound_queue,
            idle_timeout_secs: self.idle_timeout_secs,
        }
    }

    pub(crate) fn ping_interval(&self) -> Duration {
        Duration::from_secs(u64::from(self.ping_interval_secs))
    }

    /// The rejoin grace in milliseconds (grace deadlines are unix milliseconds).
    pub(crate) fn rejoin_grace_ms(&self) -> u64 {
        u64::from(self.rejoin_grace_secs) * 1000
    }

    pub(crate) fn rejoin_grace(&self) -> Duration {
        Duration::from_secs(u64::from(self.rejoin_grace_secs))
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.idle_timeout_secs))
    }

    pub(crate) fn upgrade_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.upgrade_timeout_secs))
    }

    pub(crate) fn hello_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.hello_timeout_secs))
    }
}
