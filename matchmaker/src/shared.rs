//! What every connection task shares: the settings, the lobby store, the hub that reaches
//! each live connection, and the counts behind the caps. The server builds it; connections
//! and lobby operations read and change it. It imports none of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};

use axum::extract::ws::Utf8Bytes;
use squadlink_protocol::{Limits, ServerMessage};
use tokio::sync::watch;

use crate::config::Config;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::store::LobbyStore;

/// What every connection task shares.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) dev_mode: bool,
    pub(crate) limits: Limits,
    pub(crate) store: Arc<dyn LobbyStore>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) connections: AtomicUsize,
    /// Set while draining: no new players; `/readyz` says so.
    pub(crate) draining: AtomicBool,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// Serializes a server message once, for one or many recipients.
pub(crate) fn encode(msg: &ServerMessage) -> Option<Utf8Bytes> {
    match msg.to_json() {
        Ok(text) => Some(Utf8Bytes::from(text)),
        Err(err) => {
            tracing::error!(%err, "could not encode a server message");
            None
        }
    }
}
