//! nat_check: what kind of network is this player on, and how does it reach other players?
//!
//! 1. With `--stun HOST:PORT` (a STUN server with two addresses, such as coturn listening on
//!    two IPs), it runs the RFC 5780 tests and prints the NAT's mapping and filtering
//!    behaviour, or that outbound UDP is blocked.
//! 2. With `--matchmaker URL`, it creates a lobby (`--create N`) or joins one (`--join CODE`),
//!    waits for `--peers` others to connect, and prints for each the path ICE chose (host,
//!    srflx or relay), the candidate types, how a relay reaches its TURN server (udp, tcp or
//!    tls) and the connect time; then it checks that reliable and unreliable messages flow
//!    both ways.
//!
//! Run: `cargo run -p squadlink-bench --bin nat_check -- --stun stun.example.com:3478`
//!      `cargo run -p squadlink-bench --bin nat_check -- --matchmaker ws://HOST:7878/v1 --create 2`
//!      (then the other player: `--join CODE`). `--json` prints one JSON object per line;
//!      `--relay-only` connects only through TURN; `--stay S` keeps talking for S more
//!      seconds (ten reliable messages a second) and reports gaps, reconnections and ICE
//!      restarts: change networks meanwhile to watch the session recover. Exit status 0
//!      when every expected peer connected and exchanged messages (and, with `--stay`,
//!      was heard again before the end).

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};
use squadlink::nat::{self, ProbeSettings};
use squadlink::{
    Channel, ChannelKind, Event, IcePolicy, LobbyRef, PeerId, RelayTransport, Session,
};

/// Reports the local NAT's behaviour and the path chosen to each peer.
#[derive(Parser, Debug)]
struct Args {
    /// STUN server with RFC 5780 support (two addresses) for the NAT tests.
    #[arg(long)]
    stun: Option<String>,
    /// Matchmaker to meet peers through, e.g. ws://127.0.0.1:7878/v1.
    #[arg(long)]
    matchmaker: Option<String>,
    /// Create a lobby for this many players (prints its code).
    #[arg(long, conflicts_with = "join")]
    create: Option<u8>,
    /// Join the lobby with this code.
    #[arg(long)]
    join: Option<String>,
    /// Peers to wait for (default: the lobby's size minus one, or 1 when joining).
    #[arg(long)]
    peers: Option<usize>,
    /// Connect only through TURN relays.
    #[arg(long)]
    relay_only: bool,
    /// Extra trusted root certificate (PEM file) for a `turns:` server.
    #[arg(long)]
    tls_root: Option<std::path::PathBuf>,
    /// Seconds to wait for the peers to connect and talk.
    #[arg(long, default_value_t = 20.0)]
    timeout: f64,
    /// After that, keep talking for this many seconds and report how it went.
    #[arg(long, default_value_t = 0.0)]
    stay: f64,
    /// One JSON object per line on stdout.
    #[arg(long)]
    json: bool,
}

fn main() {
    squadlink_bench::init_logging();
    let args = Args::parse();
    let out = Out { json: args.json };
    let mut ok = true;
    if let Some(server) = &args.stun {
        ok &= probe(server, &out);
    }
    if let Some(url) = &args.matchmaker {
        ok &= match meet(url, &args, &out) {
            Ok(all) => all,
            Err(e) => {
                out.line(json!({ "error": e }), &format!("error: {e}"));
                false
            }
        };
    }
    if args.stun.is_none() && args.matchmaker.is_none() {
        eprintln!("nothing to do: give --stun HOST:PORT and/or --matchmaker URL (see --help)");
        ok = false;
    }
    std::process::exit(if ok { 0 } else { 1 });
}

/// Prints JSON lines or human lines, flushing each (a lab script reads them live).
struct Out {
    json: bool,
}

impl Out {
    fn line(&self, value: Value, human: &str) {
        let mut stdout = std::io::stdout().lock();
        let text = if self.json {
            value.to_string()
        } else {
            human.to_string()
        };
        let _ = writeln!(stdout, "{text}");
        let _ = stdout.flush();
    }
}

/// The RFC 5780 tests; whether they could run.
fn probe(server: &str, out: &Out) -> bool {
    let addr = server
        .trim_start_matches("stun:")
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.find(SocketAddr::is_ipv4));
    let Some(addr) = addr else {
        out.line(
            json!({ "nat_error": format!("cannot resolve {server}") }),
            &format!("cannot resolve {server}"),
        );
        return false;
    };
    match nat::probe(addr, ProbeSettings::default()) {
        Ok(r) => {
            let human = format!(
                "NAT: mapping {:?}, filtering {:?}; local {} seen as {}{}",
                r.mapping,
                r.filtering,
                r.local,
                r.mapped,
                if r.direct_friendly() {
                    " (direct connections should work)"
                } else {
                    " (expect a TURN relay to most peers)"
                }
            );
            out.line(json!({ "nat": r }), &human);
            true
        }
        Err(nat::NatError::NoUdp { .. }) => {
            out.line(
                json!({ "nat": { "udp_blocked": true } }),
                "NAT: no UDP answer: outbound UDP is blocked here; only TURN over TCP/TLS can connect",
            );
            true
        }
        Err(e) => {
            out.line(
                json!({ "nat_error": e.to_string() }),
                &format!("NAT probe: {e}"),
            );
            false
        }
    }
}

const RELIABLE: Channel = Channel(0);
const UNRELIABLE: Channel = Channel(1);

/// Joins, waits for peers, checks messages flow; whether every expected peer made it.
fn meet(url: &str, args: &Args, out: &Out) -> Result<bool, String> {
    let lobby = match (&args.join, args.create) {
        (Some(code), _) => LobbyRef::Code(code.clone()),
        (None, size) => LobbyRef::create(size.unwrap_or(2)),
    };
    let expected = args.peers.unwrap_or(match (&args.join, args.create) {
        (None, size) => usize::from(size.unwrap_or(2)).saturating_sub(1).max(1),
        (Some(_), _) => 1,
    });
    let mut builder = Session::builder(url)
        .channel(ChannelKind::ReliableOrdered)
        .channel(ChannelKind::Unreliable)
        .join(lobby);
    if args.relay_only {
        builder = builder.ice_policy(IcePolicy::RelayOnly);
    }
    if let Some(path) = &args.tls_root {
        let pem =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        builder = builder.tls_root_certificates(pem);
    }
    let started = Instant::now();
    let session = builder.start().map_err(|e| e.to_string())?;
    let me = session.id();
    if let Some(lobby) = session.lobby() {
        out.line(
            json!({ "lobby": lobby.code, "me": me.map(|p| p.to_string()) }),
            &format!(
                "lobby {} (share this code; join with --join {})",
                lobby.code, lobby.code
            ),
        );
    }

    let deadline = started + Duration::from_secs_f64(args.timeout);
    let mut connected: Vec<PeerId> = Vec::new();
    let mut heard_reliable: Vec<PeerId> = Vec::new();
    let mut heard_unreliable: Vec<PeerId> = Vec::new();
    let mut reported: Vec<PeerId> = Vec::new();
    // Peers that told us they are done (see `DONE`).
    let mut finished: Vec<PeerId> = Vec::new();
    let hello = format!(
        "hello from {}",
        me.map(|p| p.to_string()).unwrap_or_default()
    );
    let mut last_ping = Instant::now();
    while Instant::now() < deadline {
        for event in session.poll_events() {
            match event {
                Event::PeerConnected {
                    peer,
                    path,
                    connect_time,
                } => {
                    connected.push(peer);
                    let _ = session.send(peer, RELIABLE, hello.as_bytes());
                    let stats = session.stats(peer).unwrap_or_default();
                    out.line(
                        json!({
                            "peer": peer.to_string(),
                            "path": path.name(),
                            "connect_ms": connect_time.as_secs_f64() * 1000.0,
                            "pair": stats.selected_pair.map(|(l, r)| [l.to_string(), r.to_string()]),
                            "pair_types": stats.selected_pair_types.map(|(l, r)| [l.name(), r.name()]),
                            "relay_transport": stats.relay_transport.map(RelayTransport::name),
                            "remote_candidate_types": stats
                                .remote_candidate_types
                                .iter()
                                .map(|k| k.name())
                                .collect::<Vec<_>>(),
                        }),
                        &format!(
                            "peer {peer}: {} in {:.0} ms, pair {:?} {:?}{}",
                            path.name(),
                            connect_time.as_secs_f64() * 1000.0,
                            stats.selected_pair_types,
                            stats.selected_pair,
                            stats
                                .relay_transport
                                .map(|t| format!(", relay over {}", t.name()))
                                .unwrap_or_default()
                        ),
                    );
                }
                Event::PeerDisconnected { peer, reason } => out.line(
                    json!({ "peer": peer.to_string(), "disconnected": format!("{reason:?}") }),
                    &format!("peer {peer} disconnected: {reason:?}"),
                ),
                Event::Error(e) => {
                    out.line(
                        json!({ "warning": e.to_string() }),
                        &format!("warning: {e}"),
                    );
                }
                Event::Closed(reason) => {
                    return Err(format!("session closed: {reason:?}"));
                }
                _ => {}
            }
        }
        if last_ping.elapsed() >= Duration::from_millis(50) {
            last_ping = Instant::now();
            let _ = session.broadcast(UNRELIABLE, b"ping");
        }
        for (peer, bytes) in session.receive(RELIABLE) {
            note_done(&mut finished, peer, &bytes);
            if !heard_reliable.contains(&peer) {
                heard_reliable.push(peer);
            }
        }
        for (peer, _) in session.receive(UNRELIABLE) {
            if !heard_unreliable.contains(&peer) {
                heard_unreliable.push(peer);
            }
        }
        for peer in &connected {
            if !reported.contains(peer)
                && heard_reliable.contains(peer)
                && heard_unreliable.contains(peer)
            {
                reported.push(*peer);
                out.line(
                    json!({ "peer": peer.to_string(), "messages": "both ways" }),
                    &format!("peer {peer}: reliable and unreliable messages arrive"),
                );
            }
        }
        if reported.len() >= expected {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut all = reported.len() >= expected;
    if all && args.stay > 0.0 {
        all &= stay(
            &session,
            Duration::from_secs_f64(args.stay),
            &mut finished,
            out,
        );
    }
    // Stay until every peer we heard is done too (or `LINGER_MAX`): leaving as soon as we
    // are done could cut off a peer whose side of the handshake finished later, before our
    // reliable message reached it (with loss, DTLS and SCTP retransmit on 1 s timers), or
    // whose `--stay` started later than ours.
    for peer in &reported {
        let _ = session.send(*peer, RELIABLE, DONE);
    }
    let linger = Instant::now() + LINGER_MAX;
    while Instant::now() < linger && !reported.iter().all(|p| finished.contains(p)) {
        let _ = session.broadcast(UNRELIABLE, b"ping");
        for (peer, bytes) in session.receive(RELIABLE) {
            note_done(&mut finished, peer, &bytes);
        }
        session.receive(UNRELIABLE).for_each(drop);
        session.poll_events().for_each(drop);
        std::thread::sleep(Duration::from_millis(20));
    }
    out.line(
        json!({ "done": all, "connected": connected.len(), "talking": reported.len(), "expected": expected }),
        &format!(
            "{} of {expected} peers connected and talking",
            reported.len()
        ),
    );
    session.close();
    Ok(all)
}

/// Sent on the reliable channel to every peer heard on both channels once we are done (and
/// have stayed, with `--stay`); we leave once every such peer has sent it too.
const DONE: &[u8] = b"done, bye";

/// How long to wait, once done, for the peers' [`DONE`] at most.
const LINGER_MAX: Duration = Duration::from_secs(10);

/// Notes that `peer` is done if `bytes` is [`DONE`].
fn note_done(finished: &mut Vec<PeerId>, peer: PeerId, bytes: &[u8]) {
    if bytes == DONE && !finished.contains(&peer) {
        finished.push(peer);
    }
}

/// Keeps sending ten reliable messages a second to every peer for `how_long`, printing
/// disconnections, reconnections and gaps as they happen; whether every peer was heard in
/// the last two seconds.
fn stay(session: &Session, how_long: Duration, finished: &mut Vec<PeerId>, out: &Out) -> bool {
    let start = Instant::now();
    let mut last_heard: std::collections::HashMap<PeerId, Instant> = session
        .connected_peers()
        .into_iter()
        .map(|p| (p, start))
        .collect();
    let mut max_gap = Duration::ZERO;
    let mut disconnects = 0u32;
    let mut last_send = start;
    let mut n = 0u64;
    while start.elapsed() < how_long {
        let now = Instant::now();
        if now.duration_since(last_send) >= Duration::from_millis(100) {
            last_send = now;
            n += 1;
            let _ = session.broadcast(RELIABLE, &n.to_be_bytes());
            // (The other side may still be waiting to hear the unreliable channel.)
            let _ = session.broadcast(UNRELIABLE, b"ping");
        }
        for (peer, bytes) in session.receive(RELIABLE) {
            note_done(finished, peer, &bytes);
            let prev = last_heard.insert(peer, now).unwrap_or(now);
            let gap = now.saturating_duration_since(prev);
            if gap > Duration::from_millis(500) {
                out.line(
                    json!({ "peer": peer.to_string(), "heard_again_after_ms": gap.as_secs_f64() * 1000.0 }),
                    &format!("peer {peer}: heard again after {:.0} ms", gap.as_secs_f64() * 1000.0),
                );
            }
            max_gap = max_gap.max(gap);
        }
        session.receive(UNRELIABLE).for_each(drop);
        for event in session.poll_events() {
            let line = match &event {
                Event::PeerDisconnected { peer, reason } => {
                    disconnects += 1;
                    Some(json!({ "peer": peer.to_string(), "disconnected": format!("{reason:?}") }))
                }
                Event::PeerConnected { peer, path, .. } => {
                    Some(json!({ "peer": peer.to_string(), "reconnected": path.name() }))
                }
                Event::MatchmakerLost(e) => Some(json!({ "matchmaker_lost": e.to_string() })),
                Event::MatchmakerRestored { resumed } => {
                    Some(json!({ "matchmaker_restored": { "resumed": resumed } }))
                }
                _ => None,
            };
            if let Some(line) = line {
                out.line(line.clone(), &line.to_string());
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let now = Instant::now();
    let peers: Vec<Value> = last_heard
        .iter()
        .map(|(peer, at)| {
            let stats = session.stats(*peer).unwrap_or_default();
            json!({
                "peer": peer.to_string(),
                "silent_at_end_ms": now.saturating_duration_since(*at).as_secs_f64() * 1000.0,
                "path": stats.path.map(|p| p.name()),
                "ice_restarts": stats.ice_restarts,
            })
        })
        .collect();
    let healthy = last_heard
        .values()
        .all(|at| now.saturating_duration_since(*at) < Duration::from_secs(2));
    out.line(
        json!({ "stay": { "max_gap_ms": max_gap.as_secs_f64() * 1000.0, "disconnects": disconnects, "peers": peers, "healthy": healthy } }),
        &format!(
            "stayed {:.0} s: longest gap {:.0} ms, {disconnects} disconnections, {}",
            how_long.as_secs_f64(),
            max_gap.as_secs_f64() * 1000.0,
            if healthy { "all peers heard at the end" } else { "some peer silent at the end" }
        ),
    );
    healthy
}
