//! Our own side of ICE for the native engine: the addresses we can be reached at (host,
//! server-reflexive, relayed) and the STUN/TURN clients that find the last two.
//!
//! It owns the clients and what they found, takes time and their input as arguments, and
//! says what it found as [`Found`] values (polled); datagrams for the servers and for peers through
//! a relay go into [`Out`]. The browser engine gathers by itself and needs none of this.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use web_time::Instant;

use bytes::BytesMut;

use super::gather::{Gathered, Gatherer};
use super::net::local_for;
use super::output::{Out, Via};
use super::relay::StreamEvent;
use crate::error::Error;
use crate::event::Event;
use crate::event::{CandidateKind, RelayTransport};

/// What the clients found that concerns the peers.
#[derive(Debug)]
pub(crate) enum Found {
    /// A new local candidate of ours, from client `gatherer`.
    Local {
        kind: CandidateKind,
        addr: SocketAddr,
        gatherer: usize,
    },
    /// A datagram a peer sent to our relayed address.
    Data {
        relayed: SocketAddr,
        from: SocketAddr,
        data: BytesMut,
    },
}

/// Our addresses and the clients that find them.
pub(crate) struct Candidates {
    /// The socket's bound address.
    bound: SocketAddr,
    hosts: Vec<SocketAddr>,
    /// Our server-reflexive addresses that differ from the host ones.
    reflexive: Vec<SocketAddr>,
    /// Our relayed addresses (one per TURN allocation).
    relays: Vec<SocketAddr>,
    gatherers: Vec<Gatherer>,
    /// Why TURN servers failed, until one works or all have failed.
    turn_failures: Vec<String>,
    /// Only relayed candidates are offered (`IcePolicy::RelayOnly`).
    relay_only: bool,
    /// What the clients found, for [`Candidates::poll_found`] (kept for its capacity: a
    /// relayed datagram passes through here).
    found: VecDeque<Found>,
}

impl Candidates {
    pub(crate) fn new(bound: SocketAddr, hosts: Vec<SocketAddr>, relay_only: bool) -> Self {
        Self {
            bound,
            hosts,
            reflexive: Vec::new(),
            relays: Vec::new(),
            gatherers: Vec::new(),
            turn_failures: Vec::new(),
            relay_only,
            found: VecDeque::new(),
        }
    }

    /// The host addresses.
    pub(crate) fn hosts(&self) -> &[SocketAddr] {
        &self.hosts
    }

    /// Our relayed addresses.
    pub(crate) fn relays(&self) -> &[SocketAddr] {
        &self.relays
    }

    /// The host address STUN/TURN clients use as theirs.
    pub(crate) fn primary_host(&self) -> SocketAddr {
        self.hosts.first().copied().unwrap_or(self.bound)
    }

    /// Every candidate known so far, in the order they are offered.
    pub(crate) fn known(&self) -> Vec<(CandidateKind, SocketAddr)> {
        let mut known = Vec::new();
        if !self.relay_only {
            known.extend(self.hosts.iter().map(|h| (CandidateKind::Host, *h)));
            known.extend(self.reflexive.iter().map(|r| (CandidateKind::Srflx, *r)));
        }
        known.extend(self.relays.iter().map(|r| (CandidateKind::Relay, *r)));
        known
    }

    /// The ICE priority offset for a candidate: relays reached over UDP before TCP before
    /// TLS; others by rtc's usual formula (0).
    pub(crate) fn priority(&self, kind: CandidateKind, addr: SocketAddr) -> u32 {
        match kind {
            CandidateKind::Relay => self
                .relay_transport(addr)
                .map_or(0, RelayTransport::relay_priority),
            _ => 0,
        }
    }

    /// How the TURN allocation with relayed address `relayed` reaches its server.
    pub(crate) fn relay_transport(&self, relayed: SocketAddr) -> Option<RelayTransport> {
        self.gatherers
            .iter()
            .find(|g| g.relayed() == Some(relayed))
            .map(|g| g.transport())
    }

    /// The addresses of our TURN servers.
    pub(crate) fn turn_servers(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.gatherers
            .iter()
            .filter(|g| g.is_turn())
            .map(|g| g.server().ip())
    }

    /// The local address a datagram from `from` arrived on, if it is one of ours.
    pub(crate) fn local_for(&self, from: SocketAddr) -> Option<SocketAddr> {
        local_for(&self.hosts, from)
    }

    /// Sends `data` from our address `from` to `to`: through the TURN allocation `from`
    /// belongs to, or straight out of the socket.
    pub(crate) fn send(
        &mut self,
        now: Instant,
        data: BytesMut,
        from: SocketAddr,
        to: SocketAddr,
        out: &mut Out,
    ) {
        match self
            .gatherers
            .iter()
            .position(|g| g.relayed() == Some(from))
        {
            Some(i) => {
                if let Some(g) = self.gatherers.get_mut(i) {
                    g.relay_send(now, &data, to);
                }
                self.flush(i, out);
            }
            None => out.transmit(Via::Udp(to), data),
        }
    }

    /// The servers' addresses were looked up and a client started for each.
    pub(crate) fn gatherers_ready(
        &mut self,
        gatherers: Vec<Gatherer>,
        problems: Vec<String>,
        out: &mut Out,
    ) {
        for problem in problems {
            out.emit(Event::Error(Error::IceServer(problem)));
        }
        if self.relay_only && !gatherers.iter().any(Gatherer::is_turn) {
            out.emit(Event::Error(Error::IceServer(
                "relay-only mode needs a TURN server (give the matchmaker --turn-url and --turn-secret, or add one with SessionBuilder::ice_server); no peer can connect".into(),
            )));
        }
        self.gatherers = gatherers;
        for i in 0..self.gatherers.len() {
            self.flush(i, out);
        }
    }

    /// Our host addresses changed: everything found from the old ones is forgotten (the
    /// caller asks for the servers to be looked up again).
    pub(crate) fn network_changed(&mut self, hosts: Vec<SocketAddr>) {
        self.hosts = hosts;
        self.reflexive.clear();
        self.relays.clear();
        self.gatherers.clear();
        self.turn_failures.clear();
    }

    /// A datagram on the socket from one of our STUN/TURN servers (what it brought is
    /// then ready in [`Candidates::poll_found`]); `false` when it is not from one (it is a
    /// peer's).
    pub(crate) fn handle_udp(
        &mut self,
        now: Instant,
        data: &[u8],
        from: SocketAddr,
        out: &mut Out,
    ) -> bool {
        let Some(i) = self.gatherers.iter().position(|g| g.owns_udp_from(from)) else {
            return false;
        };
        let local = self.local_for(from).unwrap_or(from);
        if let Some(g) = self.gatherers.get_mut(i) {
            g.handle_read(data, local, now);
        }
        self.flush(i, out);
        self.collect_found(out);
        true
    }

    /// Bytes (or the end) from the TURN-over-TCP/TLS stream of client `id`.
    pub(crate) fn handle_stream(
        &mut self,
        now: Instant,
        id: u64,
        event: StreamEvent,
        out: &mut Out,
    ) {
        let Some(i) = self.gatherers.iter().position(|g| g.id() == id) else {
            return;
        };
        match event {
            StreamEvent::Frame(frame) => {
                let local = self.primary_host();
                if let Some(g) = self.gatherers.get_mut(i) {
                    g.handle_read(&frame, local, now);
                }
                self.flush(i, out);
                self.collect_found(out);
            }
            StreamEvent::Closed(reason) => {
                let url = self.gatherers.get(i).map(Gatherer::url).unwrap_or_default();
                self.turn_failed(i, format!("{url}: {reason}"), out);
            }
        }
    }

    /// When a client next needs [`Candidates::handle_timeout`].
    pub(crate) fn poll_timeout(&mut self) -> Option<Instant> {
        self.gatherers
            .iter_mut()
            .filter_map(Gatherer::poll_timeout)
            .min()
    }

    /// Serves the clients whose timers are due.
    pub(crate) fn handle_timeout(&mut self, now: Instant, out: &mut Out) {
        for i in 0..self.gatherers.len() {
            if let Some(g) = self.gatherers.get_mut(i)
                && g.poll_timeout().is_some_and(|t| t <= now)
            {
                g.handle_timeout(now);
                self.flush(i, out);
            }
        }
        self.collect_found(out);
    }

    /// The next thing the clients found that concerns the peers.
    pub(crate) fn poll_found(&mut self) -> Option<Found> {
        self.found.pop_front()
    }

    /// Lets `peer` reach our relayed addresses (a TURN permission on every allocation).
    pub(crate) fn permit(&mut self, now: Instant, peer: SocketAddr, out: &mut Out) {
        for i in 0..self.gatherers.len() {
            if let Some(g) = self.gatherers.get_mut(i) {
                g.permit(now, peer);
            }
            self.flush(i, out);
        }
    }

    /// Lets `peers` reach the allocation of client `i` (just made).
    pub(crate) fn permit_on(
        &mut self,
        i: usize,
        now: Instant,
        peers: impl Iterator<Item = SocketAddr>,
        out: &mut Out,
    ) {
        if let Some(g) = self.gatherers.get_mut(i) {
            for peer in peers {
                g.permit(now, peer);
            }
        }
        self.flush(i, out);
    }

    /// Queues what every client found since the last call; new addresses are recorded
    /// here.
    fn collect_found(&mut self, out: &mut Out) {
        for i in 0..self.gatherers.len() {
            while let Some(gathered) = self.gatherers.get_mut(i).and_then(Gatherer::poll_gathered) {
                match gathered {
                    Gathered::Reflexive(addr) => {
                        let known = self.hosts.contains(&addr) || self.reflexive.contains(&addr);
                        if !self.relay_only && !known {
                            self.reflexive.push(addr);
                            self.found.push_back(Found::Local {
                                kind: CandidateKind::Srflx,
                                addr,
                                gatherer: i,
                            });
                        }
                    }
                    Gathered::Relayed(addr) => {
                        tracing::debug!(%addr, "TURN allocation ready");
                        self.relays.push(addr);
                        self.found.push_back(Found::Local {
                            kind: CandidateKind::Relay,
                            addr,
                            gatherer: i,
                        });
                    }
                    Gathered::Data {
                        relayed,
                        from,
                        data,
                    } => self.found.push_back(Found::Data {
                        relayed,
                        from,
                        data,
                    }),
                    Gathered::Failed(reason) => self.turn_failed(i, reason, out),
                }
            }
            self.flush(i, out);
        }
    }

    /// A TURN server could not be used. Each failure is logged; the game hears of it only
    /// when no TURN server is left (UDP TURN failing is expected where UDP is blocked, and
    /// TCP or TLS then carries the relay).
    fn turn_failed(&mut self, i: usize, reason: String, out: &Out) {
        let Some(g) = self.gatherers.get_mut(i) else {
            return;
        };
        if g.failed() {
            return;
        }
        if g.relayed().is_some() {
            tracing::warn!(%reason, "TURN allocation lost");
            return;
        }
        g.mark_failed();
        tracing::info!(%reason, "TURN server unusable");
        self.turn_failures.push(reason);
        let turn = self.gatherers.iter().filter(|g| g.is_turn());
        let all_failed = turn.clone().all(|g| g.failed());
        if all_failed && turn.count() > 0 {
            let reasons = std::mem::take(&mut self.turn_failures).join("; ");
            out.emit(Event::Error(Error::IceServer(format!(
                "no TURN relay could be allocated, so peers behind strict NATs cannot connect: {reasons}"
            ))));
        }
    }

    /// Sends whatever client `i` has queued for its server.
    fn flush(&mut self, i: usize, out: &mut Out) {
        let Some(g) = self.gatherers.get_mut(i) else {
            return;
        };
        let via = match g.transport() {
            RelayTransport::Udp => Via::Udp(g.server()),
            RelayTransport::Tcp | RelayTransport::Tls => Via::Stream(g.id()),
        };
        while let Some(data) = g.poll_write() {
            out.transmit(via, data);
        }
    }
}
