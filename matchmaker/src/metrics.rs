//! What an operator graphs and alerts on, served as Prometheus/OpenMetrics text on the
//! separate `--metrics-listen` address (`GET /metrics`). A leaf: counters are bumped where
//! things happen; nothing here reads the server's state.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// One label: what kind (a message type, an error code, a path, a direction).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Kind {
    pub(crate) kind: &'static str,
}

/// The node's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) connections: Gauge,
    pub(crate) lobbies: Gauge,
    pub(crate) members: Gauge,
    pub(crate) draining: Gauge,
    pub(crate) messages: Family<Kind, Counter>,
    pub(crate) rejections: Family<Kind, Counter>,
    pub(crate) rate_limited: Counter,
    pub(crate) signals: Counter,
    pub(crate) turn_credentials: Counter,
    pub(crate) rejoins: Counter,
    pub(crate) node_messages: Family<Kind, Counter>,
    pub(crate) node_bytes: Family<Kind, Counter>,
    pub(crate) redis_seconds: Histogram,
    pub(crate) redis_errors: Counter,
    pub(crate) peer_paths: Family<Kind, Counter>,
    pub(crate) peer_connect_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("squadlink");
        let m = Self {
            connections: Gauge::default(),
            lobbies: Gauge::default(),
            members: Gauge::default(),
            draining: Gauge::default(),
            messages: Family::default(),
            rejections: Family::default(),
            rate_limited: Counter::default(),
            signals: Counter::default(),
            turn_credentials: Counter::default(),
            rejoins: Counter::default(),
            node_messages: Family::default(),
            node_bytes: Family::default(),
            // 50 µs … ~1.6 s
            redis_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            redis_errors: Counter::default(),
            peer_paths: Family::default(),
            // 10 ms … ~20 s
            peer_connect_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 12)),
            registry: Registry::default(),
        };
        r.register(
            "connections",
            "Open WebSocket connections on this node",
            m.connections.clone(),
        );
        r.register(
            "lobbies",
            "Lobbies in the store (the whole cluster's, as every node sees them: take the max)",
            m.lobbies.clone(),
        );
        r.register(
            "members",
            "Lobby places held through this node",
            m.members.clone(),
        );
        r.register("draining", "1 while this node drains", m.draining.clone());
        r.register(
            "messages",
            "Client messages received, by type",
            m.messages.clone(),
        );
        r.register(
            "rejections",
            "Errors sent to clients, by error code (closing ones included)",
            m.rejections.clone(),
        );
        r.register(
            "rate_limited",
            "Messages dropped by the rate limit",
            m.rate_limited.clone(),
        );
        r.register(
            "signals_relayed",
            "Signals relayed to a lobby member",
            m.signals.clone(),
        );
        r.register(
            "turn_credentials",
            "TURN credentials handed out",
            m.turn_credentials.clone(),
        );
        r.register(
            "rejoins",
            "Lobby places resumed by a reconnected player (same peer id)",
            m.rejoins.clone(),
        );
        r.register(
            "node_messages",
            "Messages between nodes through Redis pub/sub, by direction (sent, received)",
            m.node_messages.clone(),
        );
        r.register(
            "node_bytes",
            "Bytes of those messages, by direction",
            m.node_bytes.clone(),
        );
        r.register(
            "redis_seconds",
            "Latency of Redis calls",
            m.redis_seconds.clone(),
        );
        r.register(
            "redis_errors",
            "Redis calls that failed",
            m.redis_errors.clone(),
        );
        r.register(
            "peer_paths",
            "Peer connections reported by players (opt-in), by path: host, srflx, relay",
            m.peer_paths.clone(),
        );
        r.register(
            "peer_connect_seconds",
            "Connect times reported by players (opt-in): learning of a peer to all channels open",
            m.peer_connect_seconds.clone(),
        );
        Self { registry: r, ..m }
    }
}

impl Metrics {
    /// The OpenMetrics text of every metric.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(%err, "could not encode the metrics");
        }
        out
    }

    /// Counts one error sent to a client, by its code.
    pub(crate) fn rejected(&self, code: &'static str) {
        self.rejections.get_or_create(&Kind { kind: code }).inc();
    }

    /// Counts one message between nodes of `bytes` bytes.
    pub(crate) fn node_message(&self, direction: &'static str, bytes: usize) {
        self.node_messages_of(direction, 1, bytes);
    }

    /// Records `messages` node-to-node messages of `bytes` in all.
    pub(crate) fn node_messages_of(&self, direction: &'static str, messages: u64, bytes: usize) {
        let kind = Kind { kind: direction };
        self.node_messages.get_or_create(&kind).inc_by(messages);
        self.node_bytes
            .get_or_create(&kind)
            .inc_by(u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    /// Records one Redis call that took `took` (and whether it failed).
    pub(crate) fn redis_call(&self, took: Duration, failed: bool) {
        self.redis_seconds.observe(took.as_secs_f64());
        if failed {
            self.redis_errors.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_every_family_with_its_counts() {
        let m = Metrics::default();
        m.connections.set(3);
        m.messages.get_or_create(&Kind { kind: "signal" }).inc_by(5);
        m.node_message("sent", 120);
        m.redis_call(Duration::from_millis(1), true);
        let text = m.render();
        for line in [
            "squadlink_connections 3",
            "squadlink_messages_total{kind=\"signal\"} 5",
            "squadlink_node_bytes_total{kind=\"sent\"} 120",
            "squadlink_redis_errors_total 1",
            "squadlink_redis_seconds_count 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
