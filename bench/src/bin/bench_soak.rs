//! Soak benchmark (not a CI test): a lobby of 8 peers in this process, each talking on
//! every tick (an unreliable 200-byte state and, 10 times a second, a reliable 100-byte
//! event to every connected peer) with voice on (a tone through Opus, decoded and mixed on
//! every other peer), 10 % of datagrams lost on every session both ways (handshakes
//! included), and churn: every few seconds one peer leaves and a new one joins. Runs 10
//! minutes by default.
//!
//! Every second it samples the process's RSS, open file descriptors and threads (the
//! matchmaker runs in this process too), and judges the trend: the mean of the last
//! quarter of the run against the second quarter. At the end it accounts for every
//! message: a reliable message is delivered, or it was in flight when its connection
//! ended; anything else (a gap, a duplicate, a message out of order, or a shortfall
//! between two peers that stayed connected) is counted as unaccounted.
//!
//! Prints progress every 30 s on stderr and one JSON object on stdout;
//! `--write-docs docs/performance.md` records the figures.
//!
//! Run: `cargo run --release -p squadlink-bench --bin bench_soak` (or
//! `scripts/bench.sh soak`); `-- --seconds 60` for a short run.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use squadlink::voice::{AudioInput, AudioOutput, Voice, VoiceConfig, VoiceMode};
use squadlink::{Channel, ChannelKind, Event, LobbyRef, PeerId, Session};
use squadlink_bench::{
    fd_count, heap_bytes, local_matchmaker, rss_bytes, thread_count, update_docs_section,
};
use squadlink_protocol::ErrorCode;

#[derive(Parser, Debug)]
#[command(about = "Squadlink soak benchmark: churn, voice and loss for minutes (prints JSON)")]
struct Args {
    /// How long the soak runs, in seconds.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Peers in the lobby.
    #[arg(long, default_value_t = 8)]
    peers: usize,
    /// Fraction of datagrams each session drops, sending and receiving.
    #[arg(long, default_value_t = 0.1)]
    loss: f64,
    /// Mean seconds between churn events (one leaves, one joins); each wait is drawn
    /// between half and one and a half of it.
    #[arg(long, default_value_t = 4.0)]
    churn_every: f64,
    /// Write the figures into this Markdown file.
    #[arg(long)]
    write_docs: Option<std::path::PathBuf>,
}

type Res<T> = Result<T, String>;

const KINDS: [ChannelKind; 2] = [ChannelKind::Unreliable, ChannelKind::ReliableOrdered];
const STATE: Channel = Channel(0);
const EVENTS: Channel = Channel(1);
/// One game tick; also one voice frame.
const TICK: Duration = Duration::from_millis(20);
/// A reliable event every this many ticks (10 Hz).
const EVENT_EVERY: u64 = 5;
/// After the churn and the sending stop: time for what is in flight to land.
const SETTLE: Duration = Duration::from_secs(10);

/// Who sent a message to whom, on which of the pair's connections (the sender counts its
/// `PeerConnected` events for that peer), and its number there on its channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    from: u64,
    to: u64,
    epoch: u32,
    seq: u32,
}

const HEADER: usize = 24;

impl Header {
    fn message(self, len: usize) -> Vec<u8> {
        let mut m = Vec::with_capacity(len);
        m.extend_from_slice(&self.from.to_be_bytes());
        m.extend_from_slice(&self.to.to_be_bytes());
        m.extend_from_slice(&self.epoch.to_be_bytes());
        m.extend_from_slice(&self.seq.to_be_bytes());
        m.resize(len.max(HEADER), 0x5a);
        m
    }

    fn parse(m: &[u8]) -> Option<Self> {
        Some(Self {
            from: u64::from_be_bytes(m.get(0..8)?.try_into().ok()?),
            to: u64::from_be_bytes(m.get(8..16)?.try_into().ok()?),
            epoch: u32::from_be_bytes(m.get(16..20)?.try_into().ok()?),
            seq: u32::from_be_bytes(m.get(20..24)?.try_into().ok()?),
        })
    }
}

/// One direction of one pair on one channel: what was sent and what arrived. Its size
/// is one bit a message (the benchmark's own memory must not look like a leak).
#[derive(Default)]
struct Ledger {
    sent: u32,
    /// Arrivals, duplicates included.
    received: u64,
    /// Which sequence numbers arrived: one bit each.
    seen: Vec<u64>,
    duplicates: u64,
    /// Arrivals whose number was not the one after the previous arrival's.
    out_of_order: u64,
    next: u32,
}

impl Ledger {
    fn record(&mut self, seq: u32) {
        self.received += 1;
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        if let Some(w) = self.seen.get_mut(word) {
            if *w & (1 << bit) != 0 {
                self.duplicates += 1;
            }
            *w |= 1 << bit;
        }
        if seq != self.next {
            self.out_of_order += 1;
        }
        self.next = seq.wrapping_add(1);
    }

    /// Distinct messages that arrived.
    fn distinct(&self) -> u64 {
        self.seen.iter().map(|w| u64::from(w.count_ones())).sum()
    }
}

/// A peer of the soak: its session, its voice, and the pairs' counters it keeps.
struct Player {
    session: Session,
    voice: Voice,
    id: PeerId,
    /// Per peer: its connection's epoch (our `PeerConnected` events for it) and the next
    /// sequence number on each channel there.
    next: HashMap<PeerId, (u32, [u32; 2])>,
    /// Where the tone is.
    sample: usize,
}

/// What the whole run counted.
#[derive(Default)]
struct Tally {
    /// (from, to, channel, epoch) → ledger.
    pairs: HashMap<(u64, u64, usize, u32), Ledger>,
    /// Pairs whose connection ended at some point (a leave, or a disconnect event on
    /// either side).
    ended: HashSet<(u64, u64)>,
    /// Voice packets per (from, to) pair, as the sender's session counted them and as the
    /// receiver's voice counted them: the latest sample of each.
    voice: HashMap<(u64, u64), (u64, u64)>,
    /// Pairs (from, to) whose sender still had bytes queued for the receiver when the run
    /// stopped: SCTP was still retransmitting (its timer backs off to a minute).
    queued_at_end: HashSet<(u64, u64)>,
    joins: u64,
    leaves: u64,
    connects: u64,
    connect_ms: Vec<f64>,
    disconnects: HashMap<String, u64>,
    errors: HashMap<String, u64>,
    malformed: u64,
    dropped_unread: u64,
    dropped_congested: u64,
    refused: u64,
}

impl Tally {
    fn end_pair(&mut self, a: PeerId, b: PeerId) {
        self.ended.insert((a.0, b.0));
        self.ended.insert((b.0, a.0));
    }
}

/// Joins `lobby` as a new player. A leave reaches the matchmaker on its own connection, so
/// the join that replaces it can arrive first and find the lobby full: that is retried
/// (5 times, 200 ms apart).
async fn join(url: &str, lobby: LobbyRef, loss: f64) -> Res<Player> {
    let mut attempt = 0;
    let session = loop {
        let mut b = Session::builder(url)
            .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .simulated_loss(loss)
            .join(lobby.clone());
        for k in KINDS {
            b = b.channel(k);
        }
        match b.start_async().await {
            Ok(session) => break session,
            Err(squadlink::Error::Matchmaker {
                code: ErrorCode::LobbyFull,
                ..
            }) if attempt < 5 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(format!("join: {e}")),
        }
    };
    let id = session.id().ok_or("no peer id after joining")?;
    let voice = Voice::start(
        &session,
        VoiceConfig::default()
            .mode(VoiceMode::OpenMic)
            .input(AudioInput::Manual)
            .output(AudioOutput::Manual),
    )
    .map_err(|e| format!("voice: {e}"))?;
    Ok(Player {
        session,
        voice,
        id,
        next: HashMap::new(),
        sample: 0,
    })
}

impl Player {
    /// One tick: events drained, voice in and out, messages to every connected peer,
    /// everything received counted.
    fn tick(&mut self, tick: u64, tally: &mut Tally, sending: bool, mix: &mut [f32]) {
        for event in self.session.poll_events() {
            match event {
                Event::PeerConnected {
                    peer, connect_time, ..
                } => {
                    tally.connects += 1;
                    tally.connect_ms.push(connect_time.as_secs_f64() * 1e3);
                    let next = self.next.entry(peer).or_default();
                    *next = (next.0 + 1, [0, 0]);
                }
                Event::PeerDisconnected { peer, reason } => {
                    *tally.disconnects.entry(format!("{reason:?}")).or_default() += 1;
                    tally.end_pair(self.id, peer);
                }
                Event::Error(e) => {
                    let kind = format!("{e:?}");
                    let kind = kind.split([' ', '(', '{']).next().unwrap_or("").to_string();
                    *tally.errors.entry(kind).or_default() += 1;
                }
                _ => {}
            }
        }
        if sending {
            let tone: Vec<f32> = (self.sample..self.sample + 960)
                .map(|i| (i as f32 * 330.0 * std::f32::consts::TAU / 48_000.0).sin() * 0.2)
                .collect();
            self.sample += 960;
            self.voice.push_capture(&tone);
        }
        self.voice.pull_playback(mix);
        if sending {
            for peer in self.session.connected_peers() {
                let (epoch, seqs) = self.next.entry(peer).or_default();
                let channels: &[(usize, Channel, usize)] = if tick.is_multiple_of(EVENT_EVERY) {
                    &[(0, STATE, 200), (1, EVENTS, 100)]
                } else {
                    &[(0, STATE, 200)]
                };
                for &(i, channel, len) in channels {
                    let Some(seq) = seqs.get_mut(i) else { continue };
                    let header = Header {
                        from: self.id.0,
                        to: peer.0,
                        epoch: *epoch,
                        seq: *seq,
                    };
                    if self
                        .session
                        .send(peer, channel, &header.message(len))
                        .is_ok()
                    {
                        *seq += 1;
                        tally
                            .pairs
                            .entry((self.id.0, peer.0, i, *epoch))
                            .or_default()
                            .sent += 1;
                    }
                }
            }
        }
        for (i, channel) in [(0, STATE), (1, EVENTS)] {
            for (from, m) in self.session.receive(channel) {
                match Header::parse(&m) {
                    Some(h) if h.from == from.0 && h.to == self.id.0 => {
                        tally
                            .pairs
                            .entry((h.from, h.to, i, h.epoch))
                            .or_default()
                            .record(h.seq);
                    }
                    _ => tally.malformed += 1,
                }
            }
        }
    }

    /// Samples the voice counters of every pair this player is in (as sender and as
    /// receiver).
    fn sample_voice(&self, tally: &mut Tally) {
        for peer in self.next.keys() {
            if let Some(s) = self.session.stats(*peer) {
                let entry = tally.voice.entry((self.id.0, peer.0)).or_default();
                entry.0 = entry.0.max(s.voice_packets_sent);
            }
            if let Some(s) = self.voice.stats(*peer) {
                let entry = tally.voice.entry((peer.0, self.id.0)).or_default();
                entry.1 = entry.1.max(s.packets_received);
            }
        }
    }

    /// Leaves the lobby; its final counters go to the tally.
    fn leave(self, tally: &mut Tally) {
        self.sample_voice(tally);
        for peer in self.next.keys() {
            if let Some(s) = self.session.stats(*peer) {
                tally.dropped_unread += s.dropped_unread;
                tally.dropped_congested += s.dropped_congested;
                tally.refused += s.refused_send_buffer_full;
            }
        }
        self.voice.stop();
        self.session.close();
    }
}

/// One second's sample of the process.
#[derive(Clone, Copy)]
struct Sample {
    at: f64,
    rss_mib: f64,
    /// The allocator's live heap (glibc `mallinfo2`; 0 elsewhere).
    heap_mib: f64,
    /// What the allocator holds from the system, live or free.
    heap_held_mib: f64,
    fds: f64,
    threads: f64,
    /// Bytes every session has queued for its peers and not yet acknowledged, in all.
    queued_kib: f64,
    peers: usize,
}

/// Bytes in MiB.
fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.iter().sum::<f64>() / v.len() as f64
}

/// Least-squares slope of `y` over `x`, per minute.
fn slope_per_minute(x: &[f64], y: &[f64]) -> f64 {
    let (mx, my) = (mean(x), mean(y));
    let num: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let den: f64 = x.iter().map(|a| (a - mx) * (a - mx)).sum();
    if den == 0.0 { 0.0 } else { num / den * 60.0 }
}

/// The trend of one sampled quantity (rounded as reported): the second quarter of the run
/// against the last one, and the slope after the first quarter.
struct Trend {
    first: f64,
    second_quarter_mean: f64,
    last_quarter_mean: f64,
    max: f64,
    slope_per_minute: f64,
}

impl Trend {
    fn of(samples: &[Sample], pick: impl Fn(&Sample) -> f64) -> Self {
        let n = samples.len();
        let quarter_mean = |q: usize| -> f64 {
            let v: Vec<f64> = samples
                .get(q * n / 4..(q + 1) * n / 4)
                .unwrap_or(&[])
                .iter()
                .map(&pick)
                .collect();
            mean(&v)
        };
        let after_warmup = samples.get(n / 4..).unwrap_or(&[]);
        let x: Vec<f64> = after_warmup.iter().map(|s| s.at).collect();
        let y: Vec<f64> = after_warmup.iter().map(&pick).collect();
        Self {
            first: r1(samples.first().map_or(0.0, &pick)),
            second_quarter_mean: r1(quarter_mean(1)),
            last_quarter_mean: r1(quarter_mean(3)),
            max: r1(samples.iter().map(&pick).fold(0.0, f64::max)),
            slope_per_minute: r2(slope_per_minute(&x, &y)),
        }
    }

    /// The last quarter's mean is above the second quarter's by more than `allowance`
    /// (a fraction of the second quarter's mean; no absolute slack).
    fn grew(&self, allowance: f64) -> bool {
        self.last_quarter_mean > self.second_quarter_mean * (1.0 + allowance)
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "first": self.first,
            "second_quarter_mean": self.second_quarter_mean,
            "last_quarter_mean": self.last_quarter_mean,
            "max": self.max,
            "slope_per_minute_after_warmup": self.slope_per_minute,
        })
    }

    /// Its row in the docs table.
    fn row(&self, name: &str, unit: &str) -> String {
        format!(
            "| {name} | {:?} | {:?} | {:?} | {:?} | {:?}{unit}/min |\n",
            self.first,
            self.second_quarter_mean,
            self.last_quarter_mean,
            self.max,
            self.slope_per_minute
        )
    }
}

fn r1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn r2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// A small deterministic generator (xorshift) for the churn.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The reliable channel's accounting of one pair: (delivered, in flight when the
/// connection ended or the run stopped, unaccounted).
fn account_reliable(ledger: &Ledger, ended: bool) -> (u64, u64, u64) {
    let in_order = ledger.out_of_order == 0 && ledger.duplicates == 0;
    let delivered = ledger.received;
    let shortfall = u64::from(ledger.sent).saturating_sub(delivered);
    if !in_order || delivered > u64::from(ledger.sent) {
        // A gap, a duplicate or a reordering: none of it is accounted for.
        return (0, 0, u64::from(ledger.sent).max(delivered));
    }
    if ended {
        (delivered, shortfall, 0)
    } else {
        (delivered, 0, shortfall)
    }
}

async fn run(args: Args) -> Res<()> {
    if args.peers < 2 {
        return Err("--peers must be at least 2".into());
    }
    let started = Instant::now();
    let server = local_matchmaker().await?;
    let url = server.url();
    let capacity = u8::try_from(args.peers).map_err(|_| "--peers must be at most 255")?;
    let mut tally = Tally::default();
    let mut players = vec![join(&url, LobbyRef::create(capacity), args.loss).await?];
    let code = players
        .first()
        .and_then(|p| p.session.lobby())
        .map(|l| l.code)
        .ok_or("no lobby code")?;
    for _ in 1..args.peers {
        players.push(join(&url, LobbyRef::Code(code.clone()), args.loss).await?);
    }
    tally.joins = players.len() as u64;
    eprintln!(
        "soak: {} peers in lobby {code}, {:.0} % loss, churn every ~{:.1} s, {} s",
        args.peers,
        args.loss * 100.0,
        args.churn_every,
        args.seconds
    );

    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
    let run_for = Duration::from_secs(args.seconds);
    let mut next_churn = started + Duration::from_secs_f64(args.churn_every);
    let mut samples: Vec<Sample> = Vec::new();
    let mut next_sample = Instant::now();
    let mut next_progress = Instant::now() + Duration::from_secs(30);
    let mut mix = vec![0f32; 1920];
    let mut tick: u64 = 0;
    let mut clock = tokio::time::interval(TICK);
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let soak_start = Instant::now();
    let mut settle_until: Option<Instant> = None;
    loop {
        clock.tick().await;
        tick += 1;
        let now = Instant::now();
        let sending = settle_until.is_none();
        if sending && now.duration_since(soak_start) >= run_for {
            settle_until = Some(now + SETTLE);
        }
        if settle_until.is_some_and(|t| now >= t) {
            break;
        }
        for p in &mut players {
            p.tick(tick, &mut tally, sending, &mut mix);
        }
        if sending && now >= next_churn && !players.is_empty() {
            let i = (dice.next() % players.len() as u64) as usize;
            if i < players.len() {
                let gone = players.swap_remove(i);
                for other in &players {
                    tally.end_pair(gone.id, other.id);
                }
                gone.leave(&mut tally);
                tally.leaves += 1;
                match join(&url, LobbyRef::Code(code.clone()), args.loss).await {
                    Ok(p) => {
                        players.push(p);
                        tally.joins += 1;
                    }
                    Err(e) => *tally.errors.entry(format!("join: {e}")).or_default() += 1,
                }
            }
            let wait = args.churn_every * (0.5 + dice.unit());
            next_churn = Instant::now() + Duration::from_secs_f64(wait);
        }
        if now >= next_sample {
            next_sample += Duration::from_secs(1);
            for p in &players {
                p.sample_voice(&mut tally);
            }
            let (heap, held) = heap_bytes().unwrap_or((0, 0));
            samples.push(Sample {
                at: now.duration_since(soak_start).as_secs_f64(),
                rss_mib: mib(rss_bytes()),
                heap_mib: mib(heap),
                heap_held_mib: mib(held),
                fds: fd_count() as f64,
                threads: thread_count() as f64,
                queued_kib: players
                    .iter()
                    .flat_map(|p| {
                        p.session
                            .connected_peers()
                            .into_iter()
                            .filter_map(|peer| p.session.stats(peer))
                    })
                    .map(|s| s.send_queue_bytes as f64 / 1024.0)
                    .sum(),
                peers: players.len(),
            });
        }
        if now >= next_progress {
            next_progress += Duration::from_secs(30);
            if let Some(s) = samples.last() {
                let connected: usize = players
                    .iter()
                    .map(|p| p.session.connected_peers().len())
                    .sum();
                eprintln!(
                    "soak {:>4.0}/{} s: RSS {:.1} MiB (heap {:.1} live, {:.1} held), {} fds, {} threads, {:.0} KiB queued; {} peers, {} of {} links up; {} joins, {} leaves",
                    s.at,
                    args.seconds,
                    s.rss_mib,
                    s.heap_mib,
                    s.heap_held_mib,
                    s.fds,
                    s.threads,
                    s.queued_kib,
                    s.peers,
                    connected,
                    players.len() * players.len().saturating_sub(1),
                    tally.joins,
                    tally.leaves
                );
            }
        }
    }
    // The final drain: anything that landed during the settle's last tick. Pairs still
    // connected now are not "ended": whatever one sent the other must have arrived.
    for p in &mut players {
        p.tick(tick + 1, &mut tally, false, &mut mix);
    }
    for p in &players {
        for peer in p.session.connected_peers() {
            if p.session
                .stats(peer)
                .is_some_and(|s| s.send_queue_bytes > 0)
            {
                tally.queued_at_end.insert((p.id.0, peer.0));
            }
        }
    }
    for p in players {
        p.leave(&mut tally);
    }
    let _ = server.shutdown().await;

    // Accounting.
    let (mut r_sent, mut r_delivered, mut r_in_flight, mut r_unaccounted) = (0u64, 0, 0, 0);
    let mut r_queued = 0u64;
    let (mut u_sent, mut u_delivered, mut u_duplicates) = (0u64, 0u64, 0u64);
    let mut last_epoch: HashMap<(u64, u64), u32> = HashMap::new();
    for (from, to, _, epoch) in tally.pairs.keys() {
        let e = last_epoch.entry((*from, *to)).or_default();
        *e = (*e).max(*epoch);
    }
    for ((from, to, channel, epoch), ledger) in &tally.pairs {
        if *channel == 1 {
            let still_queued = tally.queued_at_end.contains(&(*from, *to));
            let ended = tally.ended.contains(&(*from, *to))
                || last_epoch
                    .get(&(*from, *to))
                    .is_some_and(|last| epoch < last);
            let (d, f, u) = account_reliable(ledger, ended || still_queued);
            r_sent += u64::from(ledger.sent);
            r_delivered += d;
            r_unaccounted += u;
            if ended {
                r_in_flight += f;
            } else {
                r_queued += f;
            }
            if u > 0 && std::env::var_os("SOAK_DEBUG").is_some() {
                eprintln!(
                    "unaccounted {from}->{to} epoch {epoch}: sent {}, received {} ({} out of order, {} duplicates, next {}), ended {ended}",
                    ledger.sent,
                    ledger.received,
                    ledger.out_of_order,
                    ledger.duplicates,
                    ledger.next
                );
            }
        } else {
            u_sent += u64::from(ledger.sent);
            u_delivered += ledger.distinct();
            u_duplicates += ledger.duplicates;
        }
    }
    let voice_sent: u64 = tally.voice.values().map(|v| v.0).sum();
    let voice_received: u64 = tally.voice.values().map(|v| v.1).sum();
    let soaked = samples.len();
    let rss = Trend::of(&samples, |s| s.rss_mib);
    let heap = Trend::of(&samples, |s| s.heap_mib);
    let heap_held = Trend::of(&samples, |s| s.heap_held_mib);
    let fds = Trend::of(&samples, |s| s.fds);
    let threads = Trend::of(&samples, |s| s.threads);
    let queued = Trend::of(&samples, |s| s.queued_kib);
    // Growth: more than 10 % (RSS) or 5 % (descriptors, threads).
    let no_growth = !rss.grew(0.10) && !fds.grew(0.05) && !threads.grew(0.05);
    let mut connect_ms = tally.connect_ms.clone();
    connect_ms.sort_by(f64::total_cmp);
    let connect_p50 = squadlink_bench::percentile(&connect_ms, 0.5).unwrap_or(0.0);
    let connect_max = connect_ms.last().copied().unwrap_or(0.0);
    let result = json!({
        "benchmark": "soak",
        "seconds": args.seconds,
        "peers": args.peers,
        "loss": args.loss,
        "samples": soaked,
        "joins": tally.joins,
        "leaves": tally.leaves,
        "peer_connections": tally.connects,
        "connect_ms": {"p50": r1(connect_p50), "max": r1(connect_max)},
        "disconnects": tally.disconnects,
        "errors": tally.errors,
        "reliable": {
            "sent": r_sent, "delivered": r_delivered,
            "in_flight_when_connection_ended": r_in_flight,
            "still_queued_at_sender_when_run_stopped": r_queued, "unaccounted": r_unaccounted,
        },
        "unreliable": {
            "sent": u_sent, "delivered": u_delivered, "duplicates": u_duplicates,
            "delivered_fraction": r2(if u_sent == 0 { 0.0 } else { u_delivered as f64 / u_sent as f64 }),
        },
        "malformed": tally.malformed,
        "dropped_unread": tally.dropped_unread,
        "dropped_congested": tally.dropped_congested,
        "refused_send_buffer_full": tally.refused,
        "voice_packets": {"sent": voice_sent, "received": voice_received,
            "received_fraction": r2(if voice_sent == 0 { 0.0 } else { voice_received as f64 / voice_sent as f64 })},
        "rss_mib": rss.json(),
        "heap_live_mib": heap.json(),
        "heap_held_mib": heap_held.json(),
        "fds": fds.json(),
        "threads": threads.json(),
        "send_queues_kib": queued.json(),
        "no_growth": no_growth,
        "every_message_accounted_for": r_unaccounted == 0 && tally.malformed == 0 && u_duplicates == 0,
        "settle_seconds": SETTLE.as_secs(),
        "total_seconds": r1(started.elapsed().as_secs_f64()),
    });
    println!("{result}");
    eprintln!(
        "soak: reliable {r_delivered} of {r_sent} delivered, {r_in_flight} in flight when their connection ended, {r_queued} still queued at the end, {r_unaccounted} unaccounted; \
         unreliable {u_delivered} of {u_sent}; no growth: {no_growth}"
    );
    if let Some(path) = &args.write_docs {
        let mut memory_rows = rss.row("RSS (MiB)", " MiB");
        if heap.max > 0.0 {
            memory_rows += &heap.row("live heap (MiB, glibc `mallinfo2`)", " MiB");
            memory_rows += &heap_held.row("heap held by the allocator, live or free (MiB)", " MiB");
        }
        let body = format!(
            "{} peers, {:.0} % loss on every session both ways, voice on, one leave and one join every {:.1} s on average, {} s ({} samples, one a second); matchmaker in the same process.\n\n\
             | sampled | first | mean, 2nd quarter | mean, last quarter | max | trend after the first quarter |\n|---|---|---|---|---|---|\n\
             {}{}{}\n\
             No growth trend (last quarter's mean within 10 % of the second's for RSS, 5 % for descriptors and threads, no absolute slack): **{}**.\n\n\
             | accounted | figure |\n|---|---|\n\
             | joins / leaves / peer connections | {} / {} / {} (connect p50 {:.1} ms, max {:.1} ms) |\n\
             | reliable messages delivered / sent | {} / {} |\n\
             | reliable, in flight when their connection ended | {} |\n\
             | reliable, still queued at the sender {} s after sending stopped (SCTP retransmission backing off) | {} |\n\
             | reliable, unaccounted (gap, duplicate, reorder, or lost between peers that stayed connected) | {} |\n\
             | unreliable delivered / sent (two 10 % loss stages: about 81 % expected) | {} / {} ({:.0} %) |\n\
             | voice packets received / sent, summed over pairs (sampled each second) | {} / {} ({:.0} %) |\n\
             | dropped unread / dropped congested / refused at a full buffer | {} / {} / {} |\n\
             \nRaw output of the run:\n\n```json\n{result:#}\n```\n",
            args.peers,
            args.loss * 100.0,
            args.churn_every,
            args.seconds,
            soaked,
            memory_rows,
            fds.row("open file descriptors", ""),
            threads.row("threads", ""),
            if no_growth { "yes" } else { "no" },
            tally.joins,
            tally.leaves,
            tally.connects,
            connect_p50,
            connect_max,
            r_delivered,
            r_sent,
            r_in_flight,
            SETTLE.as_secs(),
            r_queued,
            r_unaccounted,
            u_delivered,
            u_sent,
            if u_sent == 0 {
                0.0
            } else {
                u_delivered as f64 * 100.0 / u_sent as f64
            },
            voice_received,
            voice_sent,
            if voice_sent == 0 {
                0.0
            } else {
                voice_received as f64 * 100.0 / voice_sent as f64
            },
            tally.dropped_unread,
            tally.dropped_congested,
            tally.refused,
        );
        update_docs_section(path, "soak", &body)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("wrote figures to {}", path.display());
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    squadlink_bench::run_main(run(Args::parse()))
}
