//! The cluster's signal relay: signals from this node's connections, sent to Redis in
//! batches. A connection hands its signals over without waiting for their answers (it
//! waits for them before any other request: see `connection.rs`); whatever is queued while
//! a batch is in Redis goes out together in the next one — one script call for the batch,
//! one publish per receiving node (`redis/relay.lua`). Under light load a batch is one
//! signal; under heavy load the batches grow and Redis does less per signal. One batch is
//! in Redis at a time, so signals reach Redis in the order they were queued.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use redis::Script;
use redis::aio::ConnectionLike;
use squadlink_protocol::PeerId;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::store::{RelayAnswer, Relayed, StoreError};

/// Most signals in one batch (one script call).
const MAX_BATCH: usize = 512;
/// Signals that may wait for a batch before senders wait to queue.
const QUEUE: usize = 4096;

/// One queued signal and where its answer goes.
struct Pending {
    code: String,
    from: PeerId,
    to: PeerId,
    text: Utf8Bytes,
    answer: oneshot::Sender<Result<Relayed, StoreError>>,
}

/// The handle connections relay through; the batching task ends when it is dropped.
pub(crate) struct Relayer {
    queue: mpsc::Sender<Pending>,
}

impl Relayer {
    /// Starts the batching task on `conn`, with keys under `prefix`.
    pub(crate) fn start<C>(conn: C, prefix: String, metrics: Arc<Metrics>) -> Self
    where
        C: ConnectionLike + Send + 'static,
    {
        let (queue, pending) = mpsc::channel(QUEUE);
        tokio::spawn(run(conn, prefix, metrics, pending));
        Self { queue }
    }

    /// Queues `text` (a `signal` message) from `from` to `to` in lobby `code`; it goes out
    /// once both are members (checked in Redis, in the same step as the publish). Waits
    /// only while the queue is full.
    pub(crate) async fn relay(
        &self,
        code: &str,
        from: PeerId,
        to: PeerId,
        text: Utf8Bytes,
    ) -> Result<RelayAnswer, StoreError> {
        let (answer, answered) = oneshot::channel();
        let pending = Pending {
            code: code.to_owned(),
            from,
            to,
            text,
            answer,
        };
        self.queue.send(pending).await.map_err(|_| stopped())?;
        Ok(RelayAnswer::Queued(answered))
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the relay to Redis has stopped (the node is shutting down)".into())
}

async fn run<C>(
    mut conn: C,
    prefix: String,
    metrics: Arc<Metrics>,
    mut pending: mpsc::Receiver<Pending>,
) where
    C: ConnectionLike + Send,
{
    let script = Script::new(include_str!("redis/relay.lua"));
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // One batch at a time: batches reach Redis in queue order, so each connection's
    // signals keep theirs (two in flight could be reordered by a reload of the script).
    while pending.recv_many(&mut batch, MAX_BATCH).await > 0 {
        send(&mut conn, &script, &prefix, &metrics, &mut batch).await;
    }
}

/// Sends one batch and hands each signal its answer (the batch is left empty).
async fn send<C: ConnectionLike>(
    conn: &mut C,
    script: &Script,
    prefix: &str,
    metrics: &Metrics,
    batch: &mut Vec<Pending>,
) {
    let mut call = script.prepare_invoke();
    call.arg(prefix);
    let mut bytes = 0;
    for p in batch.iter() {
        bytes += p.text.len();
        call.arg(&p.code)
            .arg(p.from.0)
            .arg(p.to.0)
            .arg(p.text.as_bytes());
    }
    let answered: Result<(u64, String), _> = call.invoke_async(conn).await;
    match answered {
        Ok((publishes, letters)) => {
            metrics.node_messages_of("sent", publishes, bytes);
            let mut letters = letters.bytes();
            for p in batch.drain(..) {
                let answer = match letters.next() {
                    Some(b's') => Ok(Relayed::Sent),
                    Some(b'n') => Ok(Relayed::NotMember),
                    Some(b'g') => Ok(Relayed::SenderGone),
                    other => Err(StoreError::Backend(format!(
                        "unexpected relay answer {other:?}"
                    ))),
                };
                let _ = p.answer.send(answer);
            }
        }
        Err(err) => {
            let err = StoreError::Unavailable(format!("Redis: {err}"));
            for p in batch.drain(..) {
                let _ = p.answer.send(Err(err.clone()));
            }
        }
    }
}
