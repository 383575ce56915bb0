//! The browser shell around the session core (wasm32): the page's event loop instead of a
//! thread, the page's `WebSocket` to the matchmaker ([`link`]), `setTimeout` for the core's
//! deadlines ([`timer`]) and the page's `RTCPeerConnection` as the engine ([`engine`]).
//!
//! Like the native shell it only waits for the next input — a game command, a matchmaker
//! message, an engine's wake-up, a deadline, a reconnection's outcome — hands it to the
//! core with the time, and carries out what the core asked for. The browser gathers
//! candidates and owns the network, so there is no socket, no DNS and no datagram here.

mod engine;
mod js;
mod link;
pub(crate) mod media;
mod timer;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use squadlink_protocol::{PeerId, PlayerId};
use web_time::Instant;

use self::engine::WebEngine;
use self::link::Link;
use self::timer::Alarm;
use super::commands::{self, ForShell};
use super::core::Core;
use super::engine::{Engine, PeerSettings};
use super::membership::{Entered, Membership};
use super::output::{Out, Request};
use super::peers::CLOSE_WAIT;
use crate::bridge::{Command, Shared};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::lobby::{Joined, LobbyRef};
use crate::settings::Settings;

pub(crate) use self::js::describe;
pub(crate) use self::timer::sleep;

/// Signaling messages kept for the matchmaker while its connection is down.
const OUTBOX_LIMIT: usize = 512;

/// How long the shell sleeps when the core has no deadline.
const IDLE_WAIT: Duration = Duration::from_secs(3600);

/// A reconnection to the matchmaker under way.
type Attempt = Pin<Box<dyn Future<Output = Result<(Link, Joined)>>>>;

/// The browser shell: the matchmaker link and the wake-ups around one [`Core`].
struct Shell {
    core: Core,
    link: Option<Link>,
    attempt: Option<Attempt>,
    /// The page's timer for the core's next deadline.
    alarm: Alarm,
}

/// The session's whole life in the page: join, then serve until closed.
pub(crate) async fn run(
    cfg: Settings,
    (shared, media): (Arc<Shared>, u64),
    mut commands: tokio::sync::mpsc::UnboundedReceiver<Command>,
    ready: crossbeam_channel::Sender<Result<()>>,
    ident: crossbeam_channel::Sender<(PeerId, PlayerId)>,
) {
    let member_data =
        Membership::member_data(&crate::channel::describe(&cfg.channels), &cfg.member_data);
    // The first matchmaker URL that answers; a matchmaker's own answer is final.
    let mut joined = Err(Error::Config("no matchmaker URL".into()));
    for i in 0..cfg.matchmaker_urls() {
        joined = Link::connect_and_join(
            cfg.matchmaker_url(i),
            (cfg.token.clone(), cfg.player_id.clone()),
            &cfg.lobby,
            member_data.clone(),
            None,
        )
        .await;
        match &joined {
            Err(Error::Signaling { .. } | Error::Timeout { .. })
                if i + 1 < cfg.matchmaker_urls() => {}
            _ => break,
        }
    }
    let ((link, joined), hub) = match (joined, media::hub(media)) {
        (Ok(j), Some(hub)) => (j, hub),
        (Err(e), _) => {
            media::unregister(media);
            let _ = ready.send(Err(e));
            return;
        }
        (Ok(_), None) => {
            let _ = ready.send(Err(Error::Config(
                "the session's media hub is gone (was the session moved off the page's thread?)"
                    .into(),
            )));
            return;
        }
    };
    let _ = ident.send((joined.me, joined.player.clone()));
    let (wake, mut wakes) = tokio::sync::mpsc::unbounded_channel::<PeerId>();
    let entered = Entered::from_joined(&joined);
    let make = move |peer: PeerId,
                     settings: &PeerSettings<'_>,
                     _now: Instant|
          -> std::result::Result<Box<dyn Engine>, String> {
        WebEngine::make(peer, settings, &wake, &hub)
    };
    let out = Out::new(shared, ident);
    // No socket: the browser's engine has the addresses (none for the core to know).
    let unbound = SocketAddr::from(([0, 0, 0, 0], 0));
    let core = Core::new(
        cfg,
        entered,
        (unbound, Vec::new()),
        (Box::new(make), out),
        Instant::now(),
    );
    let mut shell = Shell {
        core,
        link: Some(link),
        attempt: None,
        alarm: Alarm::new(),
    };
    let _ = ready.send(Ok(()));
    let end = shell.serve(&mut commands, &mut wakes).await;
    // From here a send fails with `Error::Closed` (see the native shell).
    commands.close();
    shell.core.begin_shutdown(Instant::now());
    shell.close_channels(&mut wakes).await;
    shell.core.shutdown(Instant::now());
    shell.carry_out();
    if let Some(link) = shell.link.take() {
        link.close();
    }
    media::unregister(media);
    shell.core.out().emit(Event::Closed(end));
}

impl Shell {
    async fn serve(
        &mut self,
        commands: &mut tokio::sync::mpsc::UnboundedReceiver<Command>,
        wakes: &mut tokio::sync::mpsc::UnboundedReceiver<PeerId>,
    ) -> Option<Error> {
        loop {
            self.carry_out();
            self.set_alarm(None);
            tokio::select! {
                biased;
                cmd = commands.recv() => match cmd {
                    Some(Command::Close) | None => return None,
                    Some(cmd) => self.on_command(cmd),
                },
                Some(id) = wakes.recv() => self.core.engine_woke(Instant::now(), id),
                msg = recv_link(&mut self.link) => match msg {
                    Ok(msg) => self.core.handle_server_message(Instant::now(), msg),
                    Err(err) => {
                        if let Some(link) = self.link.take() {
                            link.abandon();
                        }
                        self.core.link_lost(Instant::now(), err);
                    }
                },
                joined = reconnect_result(&mut self.attempt) => self.on_reconnect_result(joined),
                () = self.alarm.rung() => {
                    let now = Instant::now();
                    self.core.handle_timeout(now);
                    if let Some(end) = self.core.poll_link(now) {
                        return Some(end);
                    }
                }
            }
        }
    }

    /// Serves the engines while the peers close the data channels (the session is
    /// ending), for at most [`CLOSE_WAIT`].
    async fn close_channels(&mut self, wakes: &mut tokio::sync::mpsc::UnboundedReceiver<PeerId>) {
        let give_up = Instant::now() + CLOSE_WAIT;
        loop {
            self.carry_out();
            if self.core.channels_closed() {
                return;
            }
            let now = Instant::now();
            if now >= give_up {
                tracing::debug!("a peer did not close its channels in time");
                return;
            }
            self.set_alarm(Some(give_up));
            tokio::select! {
                biased;
                Some(id) = wakes.recv() => self.core.engine_woke(Instant::now(), id),
                () = self.alarm.rung() => self.core.handle_timeout(Instant::now()),
            }
        }
    }

    /// Sets the alarm for the core's next deadline, or `limit` if that comes first (an
    /// hour from now when there is neither).
    fn set_alarm(&mut self, limit: Option<Instant>) {
        let now = Instant::now();
        let at = [self.core.poll_timeout(), limit]
            .into_iter()
            .flatten()
            .min();
        self.alarm.set(at.unwrap_or(now + IDLE_WAIT), now);
    }

    fn on_command(&mut self, cmd: Command) {
        match commands::apply(&mut self.core, Instant::now(), cmd) {
            Some(ForShell::SimulatedLoss(_) | ForShell::SimulatedNetwork(_)) => {
                tracing::warn!("simulated network conditions are not available in the browser");
            }
            Some(ForShell::Close) | None => {}
        }
    }

    /// Carries out what the core asked for: matchmaker messages and reconnections.
    fn carry_out(&mut self) {
        while let Some(request) = self.core.out().poll_request() {
            match request {
                // The browser's engine looks up and uses the ICE servers itself.
                Request::Resolve { .. } => {}
                Request::Reconnect {
                    url,
                    player,
                    code,
                    data,
                    instance,
                } => {
                    let token = self.core.settings().token.clone();
                    self.attempt = Some(Box::pin(async move {
                        Link::connect_and_join(
                            &url,
                            (token, player.map(|p| p.0)),
                            &LobbyRef::Code(code),
                            data,
                            instance.as_deref(),
                        )
                        .await
                    }));
                }
                Request::AbandonLink => {
                    if let Some(link) = self.link.take() {
                        link.abandon();
                    }
                }
            }
        }
        // The browser's engine sends its own datagrams; the core queues none here.
        while self.core.out().poll_transmit().is_some() {}
        match &self.link {
            Some(link) => {
                let mut failed = None;
                for msg in self.core.out().drain_signals() {
                    if let Err(err) = link.send(&msg) {
                        failed = Some(err);
                    }
                }
                if let Some(err) = failed {
                    tracing::warn!(%err, "could not send to the matchmaker");
                }
            }
            None => self.core.out().trim_signals(OUTBOX_LIMIT),
        }
    }

    /// A reconnection attempt finished.
    fn on_reconnect_result(&mut self, result: Result<(Link, Joined)>) {
        let now = Instant::now();
        match result {
            Ok((link, joined)) => {
                self.link = Some(link);
                self.core.rejoined(
                    now,
                    (joined.me, joined.player.clone()),
                    joined.resumed,
                    &joined.lobby,
                );
            }
            Err(err) => self.core.rejoin_failed(now, err),
        }
    }
}

/// The next message from the matchmaker, or never while its connection is down.
async fn recv_link(link: &mut Option<Link>) -> Result<squadlink_protocol::ServerMessage> {
    match link {
        Some(link) => link.recv().await,
        None => std::future::pending().await,
    }
}

/// The running reconnection attempt's result, or never when none runs.
async fn reconnect_result(attempt: &mut Option<Attempt>) -> Result<(Link, Joined)> {
    let Some(task) = attempt.as_mut() else {
        return std::future::pending().await;
    };
    let result = task.await;
    *attempt = None;
    result
}
