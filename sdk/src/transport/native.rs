//! The native shell around the session core: one thread, one current-thread tokio
//! runtime, one UDP socket for every peer connection of the session, the matchmaker's
//! WebSocket, the TURN-over-TCP/TLS streams, DNS beside the loop, and the clock.
//!
//! The logic lives in [`core::Core`], which takes time and inputs as arguments; this loop
//! only waits for the next input, hands it in with `Instant::now()`, and carries out what
//! the core put in its [`output::Out`]: datagrams to the socket or a stream, messages to
//! the matchmaker, lookups and reconnections started as tasks.
//!
//! The rule that makes connecting fast holds inside the core: after *every* input the
//! peer connection it concerns is drained until nothing more comes out (the engine moves
//! some handshake output, such as the DTLS ClientHello, to its write queue only on a
//! timeout). Nothing waits for a timer tick: loopback connects in about 2 ms.
//!
//! Datagrams of different peer connections share the socket. A Binding request names its
//! target in USERNAME (`<our ufrag>:<their ufrag>`); everything else is routed by the
//! sender's address, learned from remote candidates and from those requests
//! (`routes.rs`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use web_time::Instant;

use bytes::Bytes;
use tokio::sync::Notify;

use super::commands::{self, ForShell};
use super::core::Core;
use super::direct::{CoreLock, Direct, Held};
use super::gather::{self, GatherContext, Gatherer};
use super::membership::{Entered, Membership};
use super::net::{self, LossStage, host_addresses};
use super::output::{self, Request, Via};
use super::peers::CLOSE_WAIT;
use super::relay::StreamEvent;
use super::rtc_engine::RtcEngine;
use super::stream::{self, StreamLink};
use super::udp::UdpSocket;
use crate::bridge::{Command, Shared};
use crate::conditioner::Conditioner;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::lobby::{Joined, LobbyRef};
use crate::settings::Settings;
use crate::signaling::{Signaling, SignalingReader, SignalingWriter};

/// How often the host addresses are checked for a network change. Well under the offerer's
/// 1.2 s of silence before an ICE restart: the moved side must be back at the matchmaker
/// before that restart's offer is relayed, or the offer goes to its old connection.
const ADDRESS_CHECK_EVERY: Duration = Duration::from_millis(500);
/// Signaling messages kept for the matchmaker while its connection is down.
const OUTBOX_LIMIT: usize = 512;
/// Datagrams read per wake-up before the loop looks at its other inputs.
const READ_BATCH: usize = 64;
const MAX_DATAGRAM: usize = 2048;

/// Whether `pem` root certificates are usable for TURN over TLS (a settings check).
pub(crate) fn check_tls_roots(pem: &[Vec<u8>]) -> std::result::Result<(), String> {
    stream::tls_config(pem).map(|_| ())
}

/// The matchmaker connection, when up.
struct Link {
    reader: SignalingReader,
    writer: SignalingWriter,
}

impl Link {
    fn new(signaling: Signaling) -> Self {
        let (reader, writer) = signaling.split();
        Self { reader, writer }
    }
}

/// A reconnection attempt under way.
type Attempt = tokio::task::JoinHandle<Result<(Signaling, Joined)>>;
/// A lookup of the ICE servers' addresses under way: what resolved, and the problems.
type Lookup = tokio::task::JoinHandle<(Vec<gather::Resolved>, Vec<String>)>;

/// The native shell: the socket, the tasks and the clock around one [`Core`].
///
/// The core is [`Held`] behind a lock that game threads take too, to send their data
/// themselves (`direct.rs`); this thread holds it while it serves one input and carries
/// out what came of it, never across an `await`.
pub(crate) struct Driver {
    held: Arc<CoreLock>,
    socket: Arc<UdpSocket>,
    /// Woken by a game thread's direct send that left work for this thread.
    wake: Arc<Notify>,
    /// The game's side of the bridge: its async readers are woken once the core is let go.
    shared: Arc<Shared>,
    /// The socket's bound address.
    bound: SocketAddr,
    /// Simulated loss on everything sent and received (`SessionBuilder::simulated_loss`).
    loss: LossStage,
    /// The simulated network what we receive goes through (testing; a perfect path
    /// otherwise, which the datagrams skip).
    inbound: Conditioner<(Bytes, SocketAddr)>,
    /// The matchmaker connection; `None` while it is down.
    link: Option<Link>,
    /// The reconnection attempt under way, if any.
    attempt: Option<Attempt>,
    /// The lookup of the ICE servers' addresses under way, if any.
    resolving: Option<Lookup>,
    /// The TURN clients' TCP/TLS streams, by client id.
    stream_links: HashMap<u64, StreamLink>,
    /// What those streams read, tagged with their client's id.
    streams: tokio::sync::mpsc::UnboundedReceiver<(u64, StreamEvent)>,
    streams_tx: tokio::sync::mpsc::UnboundedSender<(u64, StreamEvent)>,
}

impl Driver {
    /// The network thread's whole life: join, then serve until closed.
    pub(crate) async fn run(
        cfg: Settings,
        shared: Arc<Shared>,
        mut commands: tokio::sync::mpsc::UnboundedReceiver<Command>,
        ready: crossbeam_channel::Sender<Result<()>>,
        ident: crossbeam_channel::Sender<(
            squadlink_protocol::PeerId,
            squadlink_protocol::PlayerId,
        )>,
    ) {
        let socket = match net::bind_udp(cfg.bind).and_then(UdpSocket::new) {
            Ok(s) => s,
            Err(e) => {
                let _ = ready.send(Err(Error::Io(format!("cannot bind UDP {}: {e}", cfg.bind))));
                return;
            }
        };
        let bound = match socket.local_addr() {
            Ok(a) => a,
            Err(e) => {
                let _ = ready.send(Err(Error::Io(format!("UDP local address: {e}"))));
                return;
            }
        };
        let member_data =
            Membership::member_data(&crate::channel::describe(&cfg.channels), &cfg.member_data);
        // The first matchmaker URL that answers; a matchmaker's own answer (a refused
        // token, an unknown lobby) is final.
        let mut joined = Err(Error::Config("no matchmaker URL".into()));
        for i in 0..cfg.matchmaker_urls() {
            joined = Signaling::connect_and_join(
                cfg.matchmaker_url(i),
                cfg.token.clone(),
                cfg.player_id.clone(),
                &cfg.lobby,
                member_data.clone(),
                None,
            )
            .await;
            match &joined {
                Err(e @ (Error::Signaling { .. } | Error::Timeout { .. }))
                    if i + 1 < cfg.matchmaker_urls() =>
                {
                    tracing::info!(%e, "matchmaker unreachable; trying the next URL");
                }
                _ => break,
            }
        }
        let (signaling, joined) = match joined {
            Ok(j) => j,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ident.send((joined.me, joined.player.clone()));
        let (streams_tx, streams) = tokio::sync::mpsc::unbounded_channel();
        let seed =
            u64::from(crate::media::random_u32()) << 32 | u64::from(crate::media::random_u32());
        let now = Instant::now();
        let loss = LossStage::new(cfg.simulated_loss);
        let open = loss.is_lossless();
        let inbound = Conditioner::new(cfg.simulated_network, seed);
        let entered = Entered::from_joined(&joined);
        let out = output::Out::new(Arc::clone(&shared), ident);
        let core = Core::new(
            cfg,
            entered,
            (bound, host_addresses(bound)),
            (Box::new(RtcEngine::make), out),
            now,
        );
        let socket = Arc::new(socket);
        let held = Arc::new(CoreLock::new(Held {
            core,
            sleeps_until: now,
            open,
        }));
        let wake = Arc::new(Notify::new());
        let _ = shared.direct.set(Box::new(Direct {
            held: Arc::downgrade(&held),
            socket: Arc::downgrade(&socket),
            wake: Arc::clone(&wake),
        }));
        let mut driver = Driver {
            held,
            socket,
            wake,
            shared,
            bound,
            loss,
            inbound,
            link: Some(Link::new(signaling)),
            attempt: None,
            resolving: None,
            stream_links: HashMap::new(),
            streams,
            streams_tx,
        };
        let _ = ready.send(Ok(()));
        driver.with_core(Driver::carry_out);
        let end = driver.serve(&mut commands).await;
        // From here a send fails with `Error::Closed`: the session is ending, and a
        // message queued now would be dropped unsent.
        commands.close();
        driver.with_held(|d, held| {
            held.open = false;
            held.core.begin_shutdown(Instant::now());
            d.carry_out(&mut held.core);
        });
        driver.close_channels().await;
        driver.with_core(|d, core| {
            core.shutdown(Instant::now());
            d.carry_out(core);
        });
        if let Some(link) = driver.link.take() {
            link.writer.close().await;
        }
        if let Some(task) = driver.attempt.take() {
            task.abort();
        }
        if let Some(task) = driver.resolving.take() {
            task.abort();
        }
        driver.shared.wake_readers();
        driver.with_core(|_, core| core.out().emit(Event::Closed(end)));
    }

    /// Runs `f` with the core held (see [`Held`]).
    fn with_held<R>(&mut self, f: impl FnOnce(&mut Self, &mut Held) -> R) -> R {
        let held = Arc::clone(&self.held);
        let mut guard = held.hold();
        f(self, &mut guard)
    }

    /// Runs `f` with the core held.
    fn with_core<R>(&mut self, f: impl FnOnce(&mut Self, &mut Core) -> R) -> R {
        self.with_held(|d, held| f(d, &mut held.core))
    }

    async fn serve(
        &mut self,
        commands: &mut tokio::sync::mpsc::UnboundedReceiver<Command>,
    ) -> Option<Error> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut address_check = tokio::time::interval(ADDRESS_CHECK_EVERY);
        address_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.with_held(|d, held| {
                d.carry_out(&mut held.core);
                let deadline = d.next_deadline(&mut held.core);
                held.sleeps_until = deadline;
                deadline
            });
            // Now that the core is free, a reader that answers at once sends directly.
            self.shared.wake_readers();
            tokio::select! {
                biased;
                cmd = commands.recv() => match cmd {
                    Some(Command::Close) | None => return None,
                    Some(cmd) => self.with_held(|d, held| d.on_command(held, cmd)),
                },
                // A game thread's direct send left work here: the loop's top carries it out.
                () = self.wake.notified() => {}
                received = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, from)) = received {
                        let socket = Arc::clone(&self.socket);
                        self.with_core(|d, core| {
                            d.received(core, buf.get(..n).unwrap_or(&[]), from);
                            for _ in 1..READ_BATCH {
                                match socket.try_recv_from(&mut buf) {
                                    Ok((n, from)) => d.received(core, buf.get(..n).unwrap_or(&[]), from),
                                    Err(_) => break,
                                }
                            }
                            d.release_inbound(core, Instant::now());
                        });
                    }
                }
                Some((id, event)) = self.streams.recv() => {
                    if matches!(event, StreamEvent::Frame(_)) && self.loss.drop_next() {
                        continue;
                    }
                    self.with_core(|_, core| core.handle_stream(Instant::now(), id, event));
                }
                msg = recv_link(&mut self.link) => match msg {
                    Ok(msg) => self.with_core(|_, core| core.handle_server_message(Instant::now(), msg)),
                    Err(err) => {
                        if let Some(link) = self.link.take() {
                            link.writer.abandon();
                        }
                        self.with_core(|_, core| core.link_lost(Instant::now(), err));
                    }
                },
                (resolved, problems) = lookup_result(&mut self.resolving) => {
                    self.with_core(|d, core| d.on_resolved(core, resolved, problems));
                }
                joined = reconnect_result(&mut self.attempt) => {
                    self.with_core(|d, core| d.on_reconnect_result(core, joined));
                }
                _ = address_check.tick() => {
                    let end = self.with_core(|d, core| {
                        d.check_addresses(core, Instant::now());
                        // A fresh clock: a network change just now made a reconnection due
                        // at once, and it must not wait for the next check.
                        core.poll_link(Instant::now())
                    });
                    if let Some(end) = end {
                        return Some(end);
                    }
                }
                () = tokio::time::sleep_until(deadline.into()) => {
                    let end = self.with_core(|d, core| {
                        let now = Instant::now();
                        d.release_inbound(core, now);
                        core.handle_timeout(now);
                        core.poll_link(now)
                    });
                    if let Some(end) = end {
                        return Some(end);
                    }
                }
            }
        }
    }

    /// Serves datagrams and timers while the peers close the data channels (the session
    /// is ending; see [`Core::begin_shutdown`]), for at most [`CLOSE_WAIT`]; commands and
    /// the matchmaker wait.
    async fn close_channels(&mut self) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let give_up = Instant::now() + CLOSE_WAIT;
        loop {
            let (closed, deadline) = self.with_core(|d, core| {
                d.carry_out(core);
                (core.channels_closed(), d.next_deadline(core).min(give_up))
            });
            self.shared.wake_readers();
            if closed {
                return;
            }
            if Instant::now() >= give_up {
                tracing::debug!("a peer did not close its channels in time; aborting");
                return;
            }
            tokio::select! {
                received = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, from)) = received {
                        self.with_core(|d, core| {
                            d.received(core, buf.get(..n).unwrap_or(&[]), from);
                            d.release_inbound(core, Instant::now());
                        });
                    }
                }
                () = tokio::time::sleep_until(deadline.into()) => {
                    self.with_core(|d, core| {
                        let now = Instant::now();
                        d.release_inbound(core, now);
                        core.handle_timeout(now);
                    });
                }
            }
        }
    }

    fn on_command(&mut self, held: &mut Held, cmd: Command) {
        match commands::apply(&mut held.core, Instant::now(), cmd) {
            Some(ForShell::SimulatedLoss(fraction)) => {
                // The loss stage is this thread's: with loss set, data goes the queue's way.
                self.loss = LossStage::new(fraction);
                held.open = self.loss.is_lossless();
            }
            Some(ForShell::SimulatedNetwork(conditions)) => self.inbound.set_conditions(conditions),
            // Handled by the loop, before this.
            Some(ForShell::Close) | None => {}
        }
    }

    /// Carries out what the core asked for: datagrams, matchmaker messages, requests.
    fn carry_out(&mut self, core: &mut Core) {
        while let Some(request) = core.out().poll_request() {
            match request {
                Request::Resolve {
                    servers,
                    relay_only,
                    ipv4,
                } => self.resolve(core, servers, relay_only, ipv4),
                Request::Reconnect {
                    url,
                    player,
                    code,
                    data,
                    instance,
                } => {
                    let token = core.settings().token.clone();
                    self.attempt = Some(tokio::spawn(async move {
                        Signaling::connect_and_join(
                            &url,
                            token,
                            player.map(|p| p.0),
                            &LobbyRef::Code(code),
                            data,
                            instance.as_deref(),
                        )
                        .await
                    }));
                }
                Request::AbandonLink => {
                    if let Some(link) = self.link.take() {
                        link.writer.abandon();
                    }
                }
            }
        }
        self.send_datagrams(core);
        match &self.link {
            Some(link) => {
                for msg in core.out().drain_signals() {
                    link.writer.send(msg);
                }
            }
            None => core.out().trim_signals(OUTBOX_LIMIT),
        }
    }

    /// Sends the datagrams the core has queued (with the simulated-loss stage). Called
    /// after every datagram read as well, so that what it caused (acknowledgements, the
    /// next handshake flight) leaves at once rather than after the rest of the batch.
    fn send_datagrams(&mut self, core: &mut Core) {
        while let Some(transmit) = core.out().poll_transmit() {
            match transmit.via {
                Via::Udp(to) => {
                    if self.loss.drop_next() {
                        continue;
                    }
                    self.socket.send_or_drop(&transmit.data, to);
                }
                Via::Stream(id) => {
                    if self.loss.drop_next() {
                        continue;
                    }
                    if let Some(link) = self.stream_links.get(&id) {
                        link.send(transmit.data);
                    }
                }
            }
        }
    }

    fn next_deadline(&mut self, core: &mut Core) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        core.poll_timeout()
            .into_iter()
            .chain(self.inbound.next_release())
            .min()
            .unwrap_or(far)
    }

    /// Looks up the ICE servers' addresses beside the loop (DNS can take seconds); the
    /// clients start when the answer comes. A lookup still running from before (the
    /// network changed again) is dropped.
    fn resolve(
        &mut self,
        core: &Core,
        servers: Vec<squadlink_protocol::IceServer>,
        relay_only: bool,
        ipv4: bool,
    ) {
        if let Some(old) = self.resolving.take() {
            old.abort();
        }
        let delay = core.settings().resolve_delay;
        let task = tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            gather::resolve(servers, relay_only, ipv4).await
        });
        self.resolving = Some(task);
    }

    /// The ICE servers' addresses are known: start a STUN or TURN client for each (the
    /// streams of TCP and TLS ones stay here) and hand them to the core.
    fn on_resolved(
        &mut self,
        core: &mut Core,
        resolved: Vec<gather::Resolved>,
        problems: Vec<String>,
    ) {
        let ctx = GatherContext {
            local: core.primary_host(),
            tls_roots: &core.settings().tls_roots,
            streams: self.streams_tx.clone(),
        };
        let (mut gatherers, more) = Gatherer::from_resolved(resolved, &ctx, Instant::now());
        self.stream_links = gatherers
            .iter_mut()
            .filter_map(|g| g.take_link().map(|link| (g.id, link)))
            .collect();
        let mut problems = problems;
        problems.extend(more);
        core.gatherers_ready(gatherers, problems);
    }

    /// A reconnection attempt finished.
    fn on_reconnect_result(&mut self, core: &mut Core, result: Result<(Signaling, Joined)>) {
        let now = Instant::now();
        match result {
            Ok((signaling, joined)) => {
                self.link = Some(Link::new(signaling));
                core.rejoined(
                    now,
                    (joined.me, joined.player.clone()),
                    joined.resumed,
                    &joined.lobby,
                );
            }
            Err(err) => core.rejoin_failed(now, err),
        }
    }

    /// Looks for a network change (every [`ADDRESS_CHECK_EVERY`]).
    fn check_addresses(&mut self, core: &mut Core, now: Instant) {
        let hosts = host_addresses(self.bound);
        if !hosts.is_empty() && hosts != core.hosts() {
            // The old TURN streams were made from the old address.
            self.stream_links.clear();
            core.network_changed(now, hosts);
        }
    }

    /// A datagram from the socket: handled now, or after its trip through the simulated
    /// network when one is set.
    fn received(&mut self, core: &mut Core, data: &[u8], from: SocketAddr) {
        if self.loss.drop_next() {
            return;
        }
        if self.inbound.is_idle_and_perfect() {
            core.handle_datagram(Instant::now(), data, from);
            self.send_datagrams(core);
        } else {
            self.inbound.push(
                Instant::now(),
                data.len(),
                (Bytes::copy_from_slice(data), from),
            );
        }
    }

    /// Handles the datagrams whose simulated trip is over.
    fn release_inbound(&mut self, core: &mut Core, now: Instant) {
        while let Some((data, from)) = self.inbound.pop_due(now) {
            core.handle_datagram(now, &data, from);
            self.send_datagrams(core);
        }
    }
}

/// The next message from the matchmaker, or never while its connection is down.
async fn recv_link(link: &mut Option<Link>) -> Result<squadlink_protocol::ServerMessage> {
    match link {
        Some(link) => link.reader.recv().await,
        None => std::future::pending().await,
    }
}

/// The running lookup's result, or never when none runs.
async fn lookup_result(lookup: &mut Option<Lookup>) -> (Vec<gather::Resolved>, Vec<String>) {
    let Some(task) = lookup.as_mut() else {
        return std::future::pending().await;
    };
    let result = task.await;
    *lookup = None;
    result.unwrap_or_else(|e| {
        (
            Vec::new(),
            vec![format!("the ICE server lookup failed: {e}")],
        )
    })
}

/// The running reconnection attempt's result, or never when none runs.
async fn reconnect_result(attempt: &mut Option<Attempt>) -> Result<(Signaling, Joined)> {
    let Some(task) = attempt.as_mut() else {
        return std::future::pending().await;
    };
    let result = task.await;
    *attempt = None;
    result.unwrap_or_else(|e| Err(Error::Io(format!("the reconnection task failed: {e}"))))
}
