//! The HTTP/WebSocket service: binding, routing, delivery between connections, shutdown.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use serde::Deserialize;
use squadlink_protocol::{ENDPOINT_PATH, ServerMessage};
use tokio::sync::watch;

use crate::admission::{Admission, ClientInfo, GuardedListener, fit_file_limit};
use crate::config::{Config, ConfigError};
use crate::connection;
use crate::hub::Hub;
use crate::lobbies;
use crate::metrics::Metrics;
use crate::redis_store::RedisStore;
use crate::shared::{Shared, encode};
use crate::store::{LobbyStore, MemoryStore, StoreError};

/// Bytes of outgoing frames tungstenite gathers before writing; the connection flushes after
/// each batch it drains from its queue, so this only batches, never delays.
pub(crate) const WRITE_BATCH_BYTES: usize = 8 * 1024;
/// How long `/readyz` waits for the lobby store.
const READY_TIMEOUT: Duration = Duration::from_secs(1);
/// How long `shutdown` waits for connections to say goodbye.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Descriptors kept free beside the connections (listener, logs, the runtime, a store).
const SPARE_DESCRIPTORS: u64 = 64;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The settings cannot work.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The listen address could not be bound.
    #[error(
        "cannot listen on {addr}: {source} (is another matchmaker running there? pick another port with --listen, or port 0 for a free one)"
    )]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The accept loop failed.
    #[error("the server stopped with an error: {0}")]
    Serve(io::Error),
    /// The shared lobby store (Redis) could not be reached or used.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// SIGINT/SIGTERM handlers could not be installed.
    #[error("cannot install the shutdown signal handler: {0}")]
    Signal(io::Error),
    /// The runtime of an [`Embedded`](crate::Embedded) matchmaker could not be started.
    #[error("cannot start the embedded matchmaker's runtime (threads or timers): {0}")]
    Runtime(io::Error),
}

/// A running matchmaker. Dropping it stops the server too; [`Server::shutdown`] does so
/// gracefully.
pub struct Server {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<io::Result<()>>,
    shared: Arc<Shared>,
    admission: Arc<Admission>,
}

#[derive(Deserialize)]
struct WsQuery {
    token: Option<String>,
    /// The player's region (which TURN servers it gets), unless its token names one.
    region: Option<String>,
}

impl Server {
    /// Binds the listen address and starts serving: with the in-memory lobby store, or as
    /// one node of a cluster sharing lobbies through Redis when `config.redis_url` is set.
    /// Must be called inside a tokio runtime.
    pub async fn bind(config: Config) -> Result<Self, Error> {
        config.validate()?;
        let hub = Arc::new(Hub::default());
        let metrics = Arc::new(Metrics::default());
        let (stop, stop_rx) = watch::channel(false);
        let store: Arc<dyn LobbyStore> = match &config.redis_url {
            Some(url) => {
                let parts = (Arc::clone(&hub), Arc::clone(&metrics));
                RedisStore::connect(url, &config, parts, stop_rx.clone()).await?
            }
            None => Arc::new(MemoryStore::new(config.max_lobbies, Arc::clone(&hub))),
        };
        Self::serve(config, (store, hub, metrics), stop, stop_rx).await
    }

    async fn serve(
        config: Config,
        (store, hub, metrics): (Arc<dyn LobbyStore>, Arc<Hub>, Arc<Metrics>),
        stop: watch::Sender<bool>,
        stop_rx: watch::Receiver<bool>,
    ) -> Result<Self, Error> {
        let metrics_addr = match config.metrics_listen {
            Some(addr) => Some(serve_metrics(addr, Arc::clone(&metrics), stop_rx.clone()).await?),
            None => None,
        };
        let addr = config.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        let dev_mode = config.dev_mode_enabled();
        if dev_mode && !local_addr.ip().is_loopback() {
            tracing::warn!(
                %local_addr,
                "dev mode is on while listening on a non-loopback address: anyone can connect without a token"
            );
        }
        if dev_mode && config.auth_secret.is_some() {
            tracing::warn!(
                "dev mode is on beside --auth-secret (--allow-anonymous-with-auth-secret): anonymous players can connect next to token-authenticated ones"
            );
        }
        let needed = u64::from(config.max_connections)
            .saturating_add(u64::from(config.max_pending_upgrades))
            .saturating_add(SPARE_DESCRIPTORS);
        match fit_file_limit(needed) {
            Ok(Some(raised)) => {
                tracing::info!(raised, needed, "raised the soft file limit (RLIMIT_NOFILE)");
            }
            Ok(None) => {}
            Err(warning) => tracing::warn!("{warning}"),
        }
        let admission = Admission::new(
            config.max_pending_upgrades,
            config.max_pending_per_address,
            config.upgrade_timeout(),
        );
        let shared = Arc::new(Shared {
            limits: config.limits(),
            config,
            dev_mode,
            store,
            hub,
            metrics,
            connections: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            shutdown: stop_rx.clone(),
        });
        tokio::spawn(lobbies::run_caretaker(Arc::clone(&shared)));
        let app = Router::new()
            .route(ENDPOINT_PATH, get(ws_handler))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .with_state(Arc::clone(&shared));
        let listener = GuardedListener::new(listener, Arc::clone(&admission));
        let mut graceful = stop_rx;
        let task = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<ClientInfo>(),
            )
            .with_graceful_shutdown(async move {
                // Either a shutdown request or the Server handle being dropped.
                let _ = graceful.wait_for(|stop| *stop).await;
            })
            .await
        });
        tracing::info!(
            url = %format!("ws://{local_addr}{ENDPOINT_PATH}"),
            instance = %shared.store.instance(),
            node = shared.store.node(),
            dev_mode,
            stun_urls = shared.config.stun_urls.len(),
            turn_urls = shared.config.turn_urls.len() + shared.config.turn_servers.len(),
            "matchmaker listening"
        );
        Ok(Self {
            metrics_addr,
            local_addr,
            stop,
            task,
            shared,
            admission,
        })
    }

    /// Accepted sockets that have not finished their WebSocket upgrade yet.
    pub fn pending_upgrades(&self) -> usize {
        self.admission.pending()
    }

    /// Sockets closed at accept because `--max-pending-upgrades` or
    /// `--max-pending-per-address` was reached.
    pub fn refused_sockets(&self) -> usize {
        self.admission.refused()
    }

    /// This server's instance id, as sent in `welcome` (see [`LobbyStore::instance`]).
    pub fn instance(&self) -> String {
        self.shared.store.instance()
    }

    /// Where `/metrics` is served (`--metrics-listen`), if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The WebSocket URL clients connect to, e.g. `ws://127.0.0.1:7878/v1`.
    pub fn url(&self) -> String {
        format!("ws://{}{}", self.local_addr, ENDPOINT_PATH)
    }

    /// Open WebSocket connections right now.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Stops accepting, closes every connection with `server_shutdown`, and waits (up to a
    /// few seconds) for them to finish.
    pub async fn shutdown(self) -> Result<(), Error> {
        let _ = self.stop.send(true);
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while self.shared.connections.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        match tokio::time::timeout(SHUTDOWN_GRACE, self.task).await {
            Ok(Ok(Ok(()))) | Err(_) => Ok(()),
            Ok(Ok(Err(err))) => Err(Error::Serve(err)),
            Ok(Err(join)) => Err(Error::Serve(io::Error::other(join.to_string()))),
        }
    }

    /// Drains, then shuts down: stops accepting players (`/readyz` answers 503), tells every
    /// connected one to move to another node (`moving`), waits up to `within` for them to
    /// go, and closes the rest with `server_shutdown` (their places are kept for the rejoin
    /// grace, so they can still resume elsewhere).
    pub async fn drain(self, within: Duration) -> Result<(), Error> {
        self.shared.draining.store(true, Ordering::SeqCst);
        self.shared.metrics.draining.set(1);
        let within_ms = u32::try_from(within.as_millis()).unwrap_or(u32::MAX);
        if let Some(text) = encode(&ServerMessage::Moving { within_ms }) {
            let told = self.shared.hub.broadcast(&text);
            tracing::info!(told, within_ms, "draining: players told to move");
        }
        let deadline = Instant::now() + within;
        while self.connections() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(left = self.connections(), "drained; closing the rest");
        self.shutdown().await
    }

    /// Whether this node is draining (see [`Server::drain`]).
    pub fn is_draining(&self) -> bool {
        self.shared.draining.load(Ordering::SeqCst)
    }

    /// Serves until SIGINT or SIGTERM, then shuts down gracefully: a cluster node drains
    /// first (`--drain-secs`), a single node closes at once. The signals are caught from
    /// this call on; a process that must not die of one while it starts installs
    /// [`StopSignals`] before [`Server::bind`] and calls [`Server::run_until`].
    pub async fn run_until_signal(self) -> Result<(), Error> {
        let signals = StopSignals::install()?;
        self.run_until(signals).await
    }

    /// As [`Server::run_until_signal`], with signals caught since `signals` was made.
    pub async fn run_until(self, mut signals: StopSignals) -> Result<(), Error> {
        signals.recv().await;
        let drain = Duration::from_secs(u64::from(self.shared.config.drain_secs));
        if self.shared.store.shared() && !drain.is_zero() {
            tracing::info!(
                connections = self.connections(),
                ?drain,
                "draining: players move to other nodes"
            );
            return self.drain(drain).await;
        }
        tracing::info!(
            connections = self.connections(),
            "shutting down: closing connections with server_shutdown"
        );
        self.shutdown().await
    }
}

/// Serves `GET /metrics` on its own listener until shutdown.
async fn serve_metrics(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> Result<SocketAddr, Error> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| Error::Bind { addr, source })?;
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let text = metrics.render();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    text,
                )
            }
        }),
    );
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stop| *stop).await;
            })
            .await;
        if let Err(err) = served {
            tracing::warn!(%err, "the metrics listener stopped");
        }
    });
    tracing::info!(url = %format!("http://{bound}/metrics"), "metrics listening");
    Ok(bound)
}

/// Ready for players: not draining, and the lobby store answers.
async fn readyz(State(shared): State<Arc<Shared>>) -> (StatusCode, String) {
    if shared.draining.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n".into());
    }
    match tokio::time::timeout(READY_TIMEOUT, shared.store.ready()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n".into()),
        Ok(Err(err)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{err}\n")),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the lobby store did not answer within 1 s\n".into(),
        ),
    }
}

async fn ws_handler(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(client): ConnectInfo<ClientInfo>,
    Query(query): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    if shared.draining.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "this matchmaker node is draining: connect to another one",
        )
            .into_response();
    }
    let max = shared.config.max_frame_bytes as usize;
    let remote = client.remote;
    ws.read_buffer_size(shared.config.read_buffer_bytes as usize)
        .write_buffer_size(WRITE_BATCH_BYTES)
        .max_message_size(max)
        .max_frame_size(max)
        .on_failed_upgrade(move |err| tracing::debug!(%remote, %err, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| {
            // From here the WebSocket limits (hello, idle, max connections) take over.
            if let Some(ticket) = &client.ticket {
                ticket.upgraded();
            }
            connection::run(socket, shared, (query.token, query.region), remote)
        })
}

/// SIGINT and SIGTERM, caught from the moment this is made: until then a signal has its
/// default effect and ends the process at once, without the goodbye (`server_shutdown`)
/// each player is owed. The binary makes it before it binds, so that a SIGTERM that comes
/// while the server starts (a deployment that stops it at once) is a graceful one.
pub struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Starts catching SIGINT and SIGTERM. Must be called inside a tokio runtime.
    pub fn install() -> Result<Self, Error> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).map_err(Error::Signal)?,
            int: signal(SignalKind::interrupt()).map_err(Error::Signal)?,
        })
    }

    /// Waits for either signal.
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
