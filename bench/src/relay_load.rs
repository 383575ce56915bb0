//! The matchmaker benchmarks' relay phases: a windowed blast of signals between pairs of
//! lobby members, and a paced stream for latency. Signals carry `kind:sender:sent_ns`
//! (see `ws_client::signal_text`); the benchmark's readers count what arrives in a
//! [`RelayCounters`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::SinkExt as _;
use squadlink_protocol::PeerId;
use tokio_tungstenite::tungstenite::Message;

use crate::Percentiles;
use crate::ws_client::{Sink, give_back, signal_text};

/// What the readers count of the relay phases.
#[derive(Default)]
pub struct RelayCounters {
    /// Blast signals received.
    pub blast_received: AtomicU64,
    /// Paced signals received.
    pub latency_received: AtomicU64,
    /// Their delays, in nanoseconds.
    pub latencies_ns: Mutex<Vec<u64>>,
    /// Per sender index: signals received from it (the blast's window accounting).
    pub acked: OnceLock<Vec<AtomicU64>>,
}

impl RelayCounters {
    /// Counts one received signal with payload `kind:idx:sent_ns`; `false` if it is not
    /// one of ours.
    pub fn record(&self, kind: &str, idx: usize, sent_ns: u64, t0: Instant) -> bool {
        match kind {
            "b" => {
                self.blast_received.fetch_add(1, Ordering::Relaxed);
                if let Some(a) = self.acked.get().and_then(|v| v.get(idx)) {
                    a.fetch_add(1, Ordering::Release);
                }
                true
            }
            "l" => {
                let now = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
                self.latency_received.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut l) = self.latencies_ns.lock() {
                    l.push(now.saturating_sub(sent_ns));
                }
                true
            }
            _ => false,
        }
    }
}

/// What a blast achieved.
pub struct Blast {
    /// Signals delivered during it.
    pub delivered: u64,
    /// Signals sent.
    pub sent: u64,
    /// Its length in seconds.
    pub seconds: f64,
}

/// Both members of each pair send to each other for `seconds`, each keeping at most
/// `window` signals in flight (counted from what the other received).
pub async fn blast(
    pairs: &[(usize, usize)],
    sinks: &mut [Option<Sink>],
    peer_of: &[PeerId],
    counters: &Arc<RelayCounters>,
    (window, seconds): (u64, f64),
    t0: Instant,
) -> Result<Blast, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let sent_total = Arc::new(AtomicU64::new(0));
    let mut senders = tokio::task::JoinSet::new();
    for &(a, b) in pairs {
        for (from, to) in [(a, b), (b, a)] {
            let Some(mut sink) = sinks.get_mut(from).and_then(Option::take) else {
                continue;
            };
            let to_peer = *peer_of.get(to).ok_or("bad index")?;
            let counters = Arc::clone(counters);
            let (stop, sent_total) = (Arc::clone(&stop), Arc::clone(&sent_total));
            senders.spawn(async move {
                let mut sent_n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let acked = counters
                        .acked
                        .get()
                        .and_then(|v| v.get(from))
                        .map_or(0, |a| a.load(Ordering::Acquire));
                    let room = window.saturating_sub(sent_n - acked.min(sent_n));
                    if room == 0 {
                        tokio::time::sleep(Duration::from_micros(200)).await;
                        continue;
                    }
                    for _ in 0..room {
                        let Ok(text) = signal_text(to_peer, "b", from, t0) else {
                            break;
                        };
                        if sink.feed(Message::text(text)).await.is_err() {
                            return (from, sink);
                        }
                        sent_n += 1;
                        sent_total.fetch_add(1, Ordering::Relaxed);
                    }
                    if sink.flush().await.is_err() {
                        return (from, sink);
                    }
                }
                (from, sink)
            });
        }
    }
    let before = counters.blast_received.load(Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let delivered = counters.blast_received.load(Ordering::Relaxed) - before;
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    give_back(&mut senders, sinks).await;
    Ok(Blast {
        delivered,
        sent: sent_total.load(Ordering::Relaxed),
        seconds,
    })
}

/// The first member of each pair sends to the second, all together `rate` signals per
/// second for `seconds`, evenly staggered; waits (5 s at most) for every one to arrive.
/// Returns how many were sent and the delays.
pub async fn paced(
    pairs: &[(usize, usize)],
    sinks: &mut [Option<Sink>],
    peer_of: &[PeerId],
    counters: &Arc<RelayCounters>,
    (rate, seconds): (u32, f64),
    t0: Instant,
) -> Result<(u64, Percentiles), String> {
    let per_sender = f64::from(rate) / pairs.len().max(1) as f64;
    let period = Duration::from_secs_f64(1.0 / per_sender.max(0.001));
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let sent = Arc::new(AtomicU64::new(0));
    let mut senders = tokio::task::JoinSet::new();
    for (k, &(a, b)) in pairs.iter().enumerate() {
        let Some(mut sink) = sinks.get_mut(a).and_then(Option::take) else {
            continue;
        };
        let to_peer = *peer_of.get(b).ok_or("bad index")?;
        let sent = Arc::clone(&sent);
        let offset = period.mul_f64(k as f64 / pairs.len().max(1) as f64);
        senders.spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            while Instant::now() < end {
                tick.tick().await;
                let Ok(text) = signal_text(to_peer, "l", a, t0) else {
                    break;
                };
                if sink.send(Message::text(text)).await.is_err() {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            (a, sink)
        });
    }
    give_back(&mut senders, sinks).await;
    // Signals travel over TCP: wait (bounded) until every one sent has arrived.
    let sent = sent.load(Ordering::Relaxed);
    let drain_end = Instant::now() + Duration::from_secs(5);
    while counters.latency_received.load(Ordering::Relaxed) < sent && Instant::now() < drain_end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delays = counters
        .latencies_ns
        .lock()
        .map(|l| Percentiles::of_nanos(&l))
        .map_err(|_| "latency lock poisoned")?;
    Ok((sent, delays))
}
