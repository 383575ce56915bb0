//! Who serves: the authority state machine every member runs, pure logic with time as an
//! input (no clock, no Bevy, no session inside), so the hand-over rules are tested here
//! alone.
//!
//! The rules, which every member applies to the same inputs and so reaches the same answer
//! without a vote:
//!
//! - At the start the lobby's host serves (epoch 0); the others wait to hear it.
//! - The server ranks its clients by the mean round trip each reports to the rest of the
//!   mesh (`Report`, once a second), in 10 ms buckets; a member keeps its place against
//!   others in its bucket (so jitter does not reshuffle the line), then the lower peer id
//!   goes first; a member that has not reported yet goes last. The line travels in
//!   `Serving` on the reliable channel whenever it changes, so every client holds the same
//!   line as soon as the server has sent it.
//! - When a member loses its server (the peer is gone or interrupted), it takes the first
//!   member of its line that it still reaches (itself included), then any other such member
//!   by lowest peer id, and bumps the epoch. If that is itself it serves at once; otherwise
//!   it waits for that member's `Serving`, and if none comes within the await timeout it
//!   treats the member as lost too.
//! - A server may hand over on purpose to the head of its line when that member's mesh
//!   round trip is a whole bucket better than its own (`Yield`): the way the best-placed
//!   member becomes the first server of a game. The chosen member serves at the next epoch
//!   and everyone, the old server included, follows its `Serving`.
//! - A `Serving` with a higher epoch always wins; at equal epochs the lower peer id wins
//!   (two members can only both claim when the old server died between sending a new line
//!   to one and to the other); a server that hears a winning claim steps down and follows.
//! - A partial split (the server cut off from some members only): those members elect a
//!   new server at the next epoch, and the old one hears nothing of it. So a member that
//!   follows a newer server tells its previous server so (`Superseded`) if it still reaches
//!   it, and answers any stale `Serving` the same way. A server told so stops serving and
//!   waits for the newer server, patiently: it does not elect anyone when the await
//!   timeout passes or a member is lost (that would claim a still higher epoch, the members
//!   in between would follow it, and the two sides would take turns), only when it reaches
//!   no member at all. The newer server's greeting ends the wait once the path heals.
//! - A wait for a member that is in reach ends when its claim arrives, and only its claim
//!   makes it a server to follow; but the claim travels on the reliable channel, which
//!   after an interruption lags the path's return by up to the interruption's length
//!   (SCTP's backed-off retransmission timer). So a server also sends a `Beacon` on the
//!   unreliable channel to each member it greets until that member connects, and a member
//!   waiting for that server at that epoch or a newer one starts its wait again: it gives
//!   a reached member up only when the member is silent about serving, not when its
//!   claim is merely late.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use squadlink::PeerId;

use super::wire::Control;

/// Width of one round-trip bucket of the line, milliseconds.
const BUCKET_MS: u32 = 10;

/// This member's part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Not serving and not following: waiting for `expect` (if known) to announce itself.
    /// `patient`: told that `expect` serves at a newer epoch (`Superseded`), so it waits
    /// without electing (see the module's rules).
    Waiting {
        expect: Option<PeerId>,
        since: Duration,
        patient: bool,
    },
    /// This member serves.
    Serving,
    /// This member is a client of that server.
    Following(PeerId),
}

/// What the member must do after an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Start serving (replicon's server runs; every connected peer becomes a client).
    Serve {
        epoch: u32,
        previous: Option<PeerId>,
    },
    /// Be a client of `server` (a new one: the replicon client connects to it afresh).
    Follow {
        server: PeerId,
        epoch: u32,
        previous: Option<PeerId>,
    },
    /// The server is lost; `successor` is expected to serve. Replicon's client waits.
    Await { successor: PeerId, lost: PeerId },
    /// Send this control message to one peer, or every peer (`None`).
    Send {
        to: Option<PeerId>,
        message: Control,
    },
}

/// The state machine.
#[derive(Debug, Clone)]
pub(crate) struct Authority {
    me: PeerId,
    epoch: u32,
    role: Role,
    line: Vec<PeerId>,
    reports: BTreeMap<PeerId, u32>,
    await_timeout: Duration,
    /// The last member that served as far as this one knows (itself included).
    last_server: Option<PeerId>,
}

impl Authority {
    /// A member that knows only itself.
    pub(crate) fn new(me: PeerId, await_timeout: Duration, now: Duration) -> Self {
        Self {
            me,
            epoch: 0,
            role: Role::Waiting {
                expect: None,
                since: now,
                patient: false,
            },
            line: Vec::new(),
            reports: BTreeMap::new(),
            await_timeout,
            last_server: None,
        }
    }

    /// This member.
    pub(crate) fn me(&self) -> PeerId {
        self.me
    }

    /// Its part now.
    pub(crate) fn role(&self) -> Role {
        self.role
    }

    /// The line of succession it holds, best first.
    pub(crate) fn line(&self) -> &[PeerId] {
        &self.line
    }

    /// The hand-over epoch this member is at.
    pub(crate) fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Who serves, as far as this member knows.
    pub(crate) fn server(&self) -> Option<PeerId> {
        match self.role {
            Role::Serving => Some(self.me),
            Role::Following(server) => Some(server),
            Role::Waiting { .. } => None,
        }
    }

    /// The game starts with `host` as the lobby's host.
    pub(crate) fn start(&mut self, host: PeerId, now: Duration) -> Vec<Action> {
        if host == self.me {
            self.serve()
        } else {
            self.role = Role::Waiting {
                expect: Some(host),
                since: now,
                patient: false,
            };
            Vec::new()
        }
    }

    /// `from` says it serves at `epoch` with `line`.
    pub(crate) fn on_serving(
        &mut self,
        from: PeerId,
        epoch: u32,
        line: Vec<PeerId>,
    ) -> Vec<Action> {
        let adopt = match self.role {
            Role::Serving => epoch > self.epoch || (epoch == self.epoch && from < self.me),
            Role::Following(server) => {
                epoch > self.epoch || (epoch == self.epoch && from <= server)
            }
            Role::Waiting { expect, .. } => epoch >= self.epoch || expect == Some(from),
        };
        if !adopt {
            // A stale claim: tell its sender who serves now (a server cut off from part of
            // the mesh learns so from the members it still reaches).
            return match self.server() {
                Some(server) if epoch < self.epoch && from != server => vec![Action::Send {
                    to: Some(from),
                    message: Control::Superseded {
                        epoch: self.epoch,
                        server,
                    },
                }],
                _ => Vec::new(),
            };
        }
        self.line = line;
        if self.role == Role::Following(from) && epoch == self.epoch {
            return Vec::new(); // the same server with a new line
        }
        let previous = self.last_server;
        let newer = epoch > self.epoch;
        self.epoch = self.epoch.max(epoch);
        self.role = Role::Following(from);
        self.last_server = Some(from);
        self.reports.clear();
        let mut actions = vec![Action::Follow {
            server: from,
            epoch: self.epoch,
            previous,
        }];
        // The previous server may not know it was replaced (a partial split): tell it. (If
        // it is gone, the message goes nowhere.)
        if let Some(old) = previous.filter(|old| newer && *old != from && *old != self.me) {
            actions.push(Action::Send {
                to: Some(old),
                message: Control::Superseded {
                    epoch: self.epoch,
                    server: from,
                },
            });
        }
        actions
    }

    /// A member says `server` serves at `epoch`. If that is newer than what this member
    /// knows, it stops serving (or following) and waits for `server`, patiently (see the
    /// module's rules). Only for a `server` this member knows (a peer of its session: in
    /// a partial split, one it has a connection to that has gone quiet); a notice naming
    /// anyone else is ignored, so a wrong one cannot leave it waiting for no one.
    pub(crate) fn on_superseded(
        &mut self,
        epoch: u32,
        server: PeerId,
        known: bool,
        now: Duration,
    ) -> Vec<Action> {
        if epoch <= self.epoch || server == self.me || !known {
            return Vec::new();
        }
        let lost = match self.role {
            Role::Serving => self.me,
            Role::Following(old) => old,
            Role::Waiting { expect, .. } => expect.unwrap_or(server),
        };
        self.epoch = epoch;
        self.role = Role::Waiting {
            expect: Some(server),
            since: now,
            patient: true,
        };
        vec![Action::Await {
            successor: server,
            lost,
        }]
    }

    /// `peer` is gone or unreachable; `live` are the peers this member still reaches.
    pub(crate) fn on_lost(
        &mut self,
        peer: PeerId,
        live: &BTreeSet<PeerId>,
        now: Duration,
    ) -> Vec<Action> {
        self.reports.remove(&peer);
        let lost_ours = match self.role {
            Role::Following(server) => server == peer,
            // A patient member elects only when it reaches no one (see the module's rules).
            Role::Waiting { patient: true, .. } => live.is_empty(),
            Role::Waiting { expect, .. } => expect == Some(peer),
            Role::Serving => false,
        };
        if !lost_ours {
            return Vec::new();
        }
        self.epoch = self.epoch.saturating_add(1);
        let successor = self.successor(peer, live);
        if successor == self.me {
            return self.serve();
        }
        self.role = Role::Waiting {
            expect: Some(successor),
            since: now,
            patient: false,
        };
        vec![Action::Await {
            successor,
            lost: peer,
        }]
    }

    /// `peer` connected: a server tells it who serves.
    pub(crate) fn on_connected(&mut self, peer: PeerId) -> Vec<Action> {
        if self.role == Role::Serving {
            vec![Action::Send {
                to: Some(peer),
                message: self.serving_message(),
            }]
        } else {
            Vec::new()
        }
    }

    /// A client's report of its mean round trip to the mesh.
    pub(crate) fn on_report(&mut self, from: PeerId, mesh_rtt_ms: u32) {
        if self.role == Role::Serving {
            self.reports.insert(from, mesh_rtt_ms);
        }
    }

    /// The member this server should hand over to, if one is a whole bucket better placed
    /// than itself (`own_ms`: its own mean round trip to the mesh).
    pub(crate) fn better_server(&self, own_ms: u32) -> Option<PeerId> {
        if self.role != Role::Serving {
            return None;
        }
        let head = *self.line.first()?;
        let theirs = *self.reports.get(&head)?;
        (theirs / BUCKET_MS < own_ms / BUCKET_MS).then_some(head)
    }

    /// Whether every one of `live` has reported its round trip to this server.
    pub(crate) fn all_reported(&self, live: &BTreeSet<PeerId>) -> bool {
        live.iter().all(|p| self.reports.contains_key(p))
    }

    /// A planned hand-over from this server to `to`.
    pub(crate) fn yield_to(&mut self, to: PeerId) -> Vec<Action> {
        if self.role != Role::Serving || to == self.me {
            return Vec::new();
        }
        vec![Action::Send {
            to: Some(to),
            message: Control::Yield {
                epoch: self.epoch.saturating_add(1),
            },
        }]
    }

    /// Our server hands over to us.
    pub(crate) fn on_yield(&mut self, from: PeerId, epoch: u32) -> Vec<Action> {
        if self.role != Role::Following(from) || epoch <= self.epoch {
            return Vec::new();
        }
        self.epoch = epoch;
        self.serve()
    }

    /// `from` says on the unreliable channel that it serves at `epoch` (its claim may lag
    /// behind on the reliable one: see the module's rules). A member waiting for it, at
    /// that epoch or an older one, waits on: its wait starts again.
    pub(crate) fn on_beacon(&mut self, from: PeerId, epoch: u32, now: Duration) {
        let current = self.epoch;
        if let Role::Waiting {
            expect: Some(expected),
            since,
            ..
        } = &mut self.role
            && *expected == from
            && epoch >= current
        {
            *since = now;
        }
    }

    /// A serving member's beacon (`None` while not serving).
    pub(crate) fn beacon(&self) -> Option<Control> {
        (self.role == Role::Serving).then_some(Control::Beacon { epoch: self.epoch })
    }

    /// Time passes: an awaited successor that stays silent is treated as lost; a server
    /// re-ranks its line and announces it if it changed.
    pub(crate) fn tick(&mut self, now: Duration, live: &BTreeSet<PeerId>) -> Vec<Action> {
        match self.role {
            Role::Waiting {
                expect: Some(successor),
                since,
                patient: true,
            } => {
                if live.is_empty() {
                    return self.on_lost(successor, live, now);
                }
                // While the awaited server is out of reach, the wait for its announcement
                // has not begun: it begins when the path heals.
                if !live.contains(&successor) {
                    self.role = Role::Waiting {
                        expect: Some(successor),
                        since: now,
                        patient: true,
                    };
                    return Vec::new();
                }
                if now.saturating_sub(since) < self.await_timeout {
                    return Vec::new();
                }
                // Reached but silent: the notice was wrong (or it is gone since); wait no
                // longer than for any successor.
                self.role = Role::Waiting {
                    expect: Some(successor),
                    since,
                    patient: false,
                };
                self.on_lost(successor, live, now)
            }
            Role::Waiting {
                expect: Some(successor),
                since,
                ..
            } if now.saturating_sub(since) >= self.await_timeout => {
                self.on_lost(successor, live, now)
            }
            Role::Serving => {
                let line = self.rank(live);
                if line == self.line {
                    return Vec::new();
                }
                self.line = line;
                vec![Action::Send {
                    to: None,
                    message: self.serving_message(),
                }]
            }
            _ => Vec::new(),
        }
    }

    fn serve(&mut self) -> Vec<Action> {
        let previous = self.last_server;
        self.role = Role::Serving;
        self.last_server = Some(self.me);
        self.reports.clear();
        self.line.retain(|p| *p != self.me);
        vec![
            Action::Serve {
                epoch: self.epoch,
                previous,
            },
            Action::Send {
                to: None,
                message: self.serving_message(),
            },
        ]
    }

    /// A serving member's welcome to the member it made its client numbered `client`
    /// (`None` while not serving).
    pub(crate) fn welcome(&self, client: u64) -> Option<Control> {
        (self.role == Role::Serving).then(|| Control::Welcome {
            epoch: self.epoch,
            line: self.line.clone(),
            client,
        })
    }

    fn serving_message(&self) -> Control {
        Control::Serving {
            epoch: self.epoch,
            line: self.line.clone(),
        }
    }

    /// The member to take over from `lost`: the first of the line still reached (this
    /// member included), then the others by lowest peer id.
    fn successor(&self, lost: PeerId, live: &BTreeSet<PeerId>) -> PeerId {
        let candidate = |p: &PeerId| *p != lost && (*p == self.me || live.contains(p));
        self.line
            .iter()
            .copied()
            .find(candidate)
            .or_else(|| {
                live.iter()
                    .copied()
                    .chain(std::iter::once(self.me))
                    .filter(candidate)
                    .min()
            })
            .unwrap_or(self.me)
    }

    /// The server's line: its live clients by reported round trip in buckets, keeping the
    /// old order within a bucket, then by peer id; unreported last.
    fn rank(&self, live: &BTreeSet<PeerId>) -> Vec<PeerId> {
        let mut line: Vec<PeerId> = live.iter().copied().filter(|p| *p != self.me).collect();
        line.sort_by_key(|p| {
            let bucket = self.reports.get(p).map_or(u32::MAX, |ms| ms / BUCKET_MS);
            let before = self.line.iter().position(|q| q == p).unwrap_or(usize::MAX);
            (bucket, before, *p)
        });
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    fn live(peers: &[u64]) -> BTreeSet<PeerId> {
        peers.iter().map(|p| PeerId(*p)).collect()
    }

    fn serving(epoch: u32, line: &[u64]) -> Control {
        Control::Serving {
            epoch,
            line: line.iter().map(|p| PeerId(*p)).collect(),
        }
    }

    fn at(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn the_lobby_host_serves_first_and_the_others_wait_for_it() {
        let mut host = Authority::new(PeerId(1), T, at(0));
        let actions = host.start(PeerId(1), at(0));
        assert_eq!(
            actions,
            vec![
                Action::Serve {
                    epoch: 0,
                    previous: None
                },
                Action::Send {
                    to: None,
                    message: serving(0, &[])
                }
            ]
        );
        let mut member = Authority::new(PeerId(2), T, at(0));
        assert!(member.start(PeerId(1), at(0)).is_empty());
        assert_eq!(member.server(), None);
        let actions = member.on_serving(PeerId(1), 0, vec![PeerId(2)]);
        assert_eq!(
            actions,
            vec![Action::Follow {
                server: PeerId(1),
                epoch: 0,
                previous: None
            }]
        );
        assert_eq!(member.server(), Some(PeerId(1)));
    }

    #[test]
    fn the_line_ranks_by_reported_round_trip_then_peer_id() {
        let mut host = Authority::new(PeerId(1), T, at(0));
        host.start(PeerId(1), at(0));
        host.on_report(PeerId(4), 25);
        host.on_report(PeerId(3), 80);
        // 2 has not reported: last.
        let actions = host.tick(at(1), &live(&[2, 3, 4]));
        assert_eq!(
            actions,
            vec![Action::Send {
                to: None,
                message: serving(0, &[4, 3, 2])
            }]
        );
        // Unchanged: nothing sent.
        assert!(host.tick(at(2), &live(&[2, 3, 4])).is_empty());
    }

    #[test]
    fn jitter_within_a_bucket_does_not_reshuffle_the_line() {
        let mut host = Authority::new(PeerId(1), T, at(0));
        host.start(PeerId(1), at(0));
        host.on_report(PeerId(3), 21);
        host.on_report(PeerId(2), 29);
        host.tick(at(1), &live(&[2, 3]));
        assert_eq!(host.line(), [PeerId(2), PeerId(3)]); // same bucket: peer id
        host.on_report(PeerId(3), 20);
        host.on_report(PeerId(2), 28);
        assert!(host.tick(at(2), &live(&[2, 3])).is_empty());
        host.on_report(PeerId(2), 45); // a whole bucket worse: moves
        host.tick(at(3), &live(&[2, 3]));
        assert_eq!(host.line(), [PeerId(3), PeerId(2)]);
    }

    #[test]
    fn the_first_live_member_of_the_line_takes_over_and_the_others_await_it() {
        let line = vec![PeerId(3), PeerId(2)];
        let mut two = Authority::new(PeerId(2), T, at(0));
        let mut three = Authority::new(PeerId(3), T, at(0));
        for member in [&mut two, &mut three] {
            member.start(PeerId(1), at(0));
            member.on_serving(PeerId(1), 0, line.clone());
        }
        let actions = three.on_lost(PeerId(1), &live(&[2]), at(10));
        assert_eq!(
            actions.first(),
            Some(&Action::Serve {
                epoch: 1,
                previous: Some(PeerId(1))
            })
        );
        let actions = two.on_lost(PeerId(1), &live(&[3]), at(10));
        assert_eq!(
            actions,
            vec![Action::Await {
                successor: PeerId(3),
                lost: PeerId(1)
            }]
        );
        let actions = two.on_serving(PeerId(3), 1, vec![PeerId(2)]);
        assert_eq!(
            actions,
            vec![Action::Follow {
                server: PeerId(3),
                epoch: 1,
                previous: Some(PeerId(1))
            }]
        );
    }

    #[test]
    fn a_successor_that_heard_first_is_followed_before_the_loss_is_seen() {
        let mut two = Authority::new(PeerId(2), T, at(0));
        two.start(PeerId(1), at(0));
        two.on_serving(PeerId(1), 0, vec![PeerId(3), PeerId(2)]);
        let actions = two.on_serving(PeerId(3), 1, vec![PeerId(2)]);
        assert_eq!(
            actions,
            vec![
                Action::Follow {
                    server: PeerId(3),
                    epoch: 1,
                    previous: Some(PeerId(1))
                },
                // In case 1 is not gone but cut off from 3 only (it goes nowhere if gone).
                Action::Send {
                    to: Some(PeerId(1)),
                    message: Control::Superseded {
                        epoch: 1,
                        server: PeerId(3)
                    }
                }
            ]
        );
        // The loss, seen later, is no longer ours.
        assert!(two.on_lost(PeerId(1), &live(&[3]), at(5)).is_empty());
        assert_eq!(two.server(), Some(PeerId(3)));
    }

    #[test]
    fn a_successor_this_member_no_longer_reaches_is_skipped() {
        let mut two = Authority::new(PeerId(2), T, at(0));
        two.start(PeerId(1), at(0));
        two.on_serving(PeerId(1), 0, vec![PeerId(3), PeerId(2)]);
        let actions = two.on_lost(PeerId(1), &live(&[]), at(10));
        assert_eq!(
            actions.first(),
            Some(&Action::Serve {
                epoch: 1,
                previous: Some(PeerId(1))
            })
        );
    }

    #[test]
    fn a_silent_successor_is_given_up_after_the_await_timeout() {
        let mut two = Authority::new(PeerId(2), T, at(0));
        two.start(PeerId(1), at(0));
        two.on_serving(PeerId(1), 0, vec![PeerId(3), PeerId(2)]);
        two.on_lost(PeerId(1), &live(&[3]), at(10));
        assert!(two.tick(at(14), &live(&[3])).is_empty());
        let actions = two.tick(at(15), &live(&[3]));
        assert_eq!(
            actions.first(),
            Some(&Action::Serve {
                epoch: 2,
                previous: Some(PeerId(1))
            })
        );
    }

    #[test]
    fn of_two_claims_at_one_epoch_the_lower_peer_id_wins_and_the_other_steps_down() {
        let mut three = Authority::new(PeerId(3), T, at(0));
        three.start(PeerId(1), at(0));
        three.on_serving(PeerId(1), 0, vec![PeerId(3), PeerId(2)]);
        three.on_lost(PeerId(1), &live(&[2]), at(10));
        assert_eq!(three.server(), Some(PeerId(3)));
        let actions = three.on_serving(PeerId(2), 1, vec![]);
        assert_eq!(
            actions,
            vec![Action::Follow {
                server: PeerId(2),
                epoch: 1,
                previous: Some(PeerId(3))
            }]
        );
        // And the higher id's claim does not move the lower one.
        let mut two = Authority::new(PeerId(2), T, at(0));
        two.start(PeerId(2), at(0));
        assert!(two.on_serving(PeerId(3), 0, vec![]).is_empty());
    }

    #[test]
    fn a_stale_server_that_comes_back_is_told_and_steps_down() {
        let mut one = Authority::new(PeerId(1), T, at(0));
        one.start(PeerId(1), at(0));
        // 1 was cut off; 3 took over at epoch 1 and tells 1 when it reconnects.
        let actions = one.on_serving(PeerId(3), 1, vec![PeerId(2)]);
        assert_eq!(
            actions,
            vec![Action::Follow {
                server: PeerId(3),
                epoch: 1,
                previous: Some(PeerId(1))
            }]
        );
        // A claim from an older epoch is not followed; its sender is told who serves.
        let mut two = Authority::new(PeerId(2), T, at(0));
        two.start(PeerId(3), at(0));
        two.on_serving(PeerId(3), 1, vec![]);
        assert_eq!(
            two.on_serving(PeerId(1), 0, vec![]),
            vec![Action::Send {
                to: Some(PeerId(1)),
                message: Control::Superseded {
                    epoch: 1,
                    server: PeerId(3)
                }
            }]
        );
        assert_eq!(two.server(), Some(PeerId(3)));
    }

    #[test]
    fn a_server_hands_over_on_purpose_only_to_a_member_a_whole_bucket_better_placed() {
        let mut host = Authority::new(PeerId(1), T, at(0));
        host.start(PeerId(1), at(0));
        host.on_report(PeerId(2), 62);
        host.on_report(PeerId(3), 64);
        host.tick(at(1), &live(&[2, 3]));
        assert!(host.all_reported(&live(&[2, 3])));
        assert_eq!(host.better_server(65), None, "same bucket: stay");
        assert_eq!(host.better_server(120), Some(PeerId(2)));
        assert_eq!(
            host.yield_to(PeerId(2)),
            vec![Action::Send {
                to: Some(PeerId(2)),
                message: Control::Yield { epoch: 1 }
            }]
        );
        // The chosen member serves at the next epoch; the old server follows it.
        let mut two = Authority::new(PeerId(2), T, at(0));
        two.start(PeerId(1), at(0));
        two.on_serving(PeerId(1), 0, vec![PeerId(2), PeerId(3)]);
        assert!(
            two.on_yield(PeerId(3), 1).is_empty(),
            "only our server can yield"
        );
        let actions = two.on_yield(PeerId(1), 1);
        assert_eq!(
            actions.first(),
            Some(&Action::Serve {
                epoch: 1,
                previous: Some(PeerId(1))
            })
        );
        let actions = host.on_serving(PeerId(2), 1, vec![PeerId(3), PeerId(1)]);
        assert_eq!(
            actions,
            vec![Action::Follow {
                server: PeerId(2),
                epoch: 1,
                previous: Some(PeerId(1))
            }]
        );
    }

    /// The `Serving` claims among `actions`, as (epoch, line).
    fn claims(actions: &[Action]) -> Vec<(u32, Vec<PeerId>)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send {
                    message: Control::Serving { epoch, line },
                    ..
                } => Some((*epoch, line.clone())),
                _ => None,
            })
            .collect()
    }

    /// A partial split: the host (1) loses its link to one member (2) only; 1 and 3, and 2
    /// and 3, still reach each other. The cut-off member takes over for those it reaches,
    /// the third follows the higher epoch, tells the old host so and answers its stale
    /// claims the same way; the old host stops serving and waits for the new server
    /// without electing anyone (the next test: until the link heals, or it is alone).
    #[test]
    fn a_host_cut_off_from_one_member_only_is_told_it_was_replaced_and_waits_for_the_new_server() {
        let (one, two, three) = (PeerId(1), PeerId(2), PeerId(3));
        let mut host = Authority::new(one, T, at(0));
        let mut b = Authority::new(two, T, at(0));
        let mut c = Authority::new(three, T, at(0));
        host.start(one, at(0));
        b.start(one, at(0));
        c.start(one, at(0));
        b.on_serving(one, 0, vec![two, three]);
        c.on_serving(one, 0, vec![two, three]);

        // The link 1–2 breaks; each end sees the other lost.
        let from_b = b.on_lost(one, &live(&[3]), at(10));
        assert_eq!(b.role(), Role::Serving, "2 heads the line and reaches 3");
        assert!(host.on_lost(two, &live(&[3]), at(10)).is_empty());
        assert_eq!(host.role(), Role::Serving, "1 has not heard of it yet");

        // 3 hears 2's claim at epoch 1, follows it, and tells 1, which it still reaches.
        let [(epoch, line)] = claims(&from_b).try_into().unwrap();
        assert_eq!(epoch, 1);
        let actions = c.on_serving(two, epoch, line);
        let notice = Control::Superseded {
            epoch: 1,
            server: two,
        };
        assert_eq!(
            actions,
            vec![
                Action::Follow {
                    server: two,
                    epoch: 1,
                    previous: Some(one)
                },
                Action::Send {
                    to: Some(one),
                    message: notice.clone()
                }
            ]
        );
        // A stale claim of 1's (its line re-ranked without 2) gets the same answer.
        let stale = claims(&host.tick(at(11), &live(&[3])));
        assert_eq!(stale, vec![(0, vec![three])]);
        assert_eq!(
            c.on_serving(one, 0, vec![three]),
            vec![Action::Send {
                to: Some(one),
                message: notice
            }]
        );
        assert_eq!(c.server(), Some(two));

        // 1 stops serving and waits for 2, patiently: no election when the await timeout
        // passes or 3 goes quiet, so no epoch 2 for 3 to follow and the sides to trade.
        assert_eq!(
            host.on_superseded(1, two, true, at(11)),
            vec![Action::Await {
                successor: two,
                lost: one
            }]
        );
        assert_eq!(host.server(), None);
        assert!(host.tick(at(11) + T * 3, &live(&[3])).is_empty());
        assert!(host.on_lost(three, &live(&[2]), at(40)).is_empty());
        assert_eq!(host.server(), None, "still waiting for 2");
    }

    #[test]
    fn a_patient_member_follows_the_new_server_when_the_link_heals_and_elects_only_when_alone() {
        let (one, two, three) = (PeerId(1), PeerId(2), PeerId(3));
        let mut host = Authority::new(one, T, at(0));
        let mut b = Authority::new(two, T, at(0));
        host.start(one, at(0));
        b.start(one, at(0));
        b.on_serving(one, 0, vec![two, three]);
        b.on_lost(one, &live(&[3]), at(10));
        host.on_superseded(1, two, true, at(11));
        // An older or equal notice changes nothing.
        assert!(host.on_superseded(1, three, true, at(12)).is_empty());
        assert!(host.on_superseded(0, two, true, at(12)).is_empty());
        // The link heals: 2 greets 1 with its claim, and 1 follows.
        let [(epoch, line)] = claims(&b.on_connected(one)).try_into().unwrap();
        assert_eq!(
            host.on_serving(two, epoch, line),
            vec![Action::Follow {
                server: two,
                epoch: 1,
                previous: Some(one)
            }]
        );
        assert_eq!([host.server(), b.server()], [Some(two), Some(two)]);

        // A notice naming a peer this member does not know is ignored.
        let mut wary = Authority::new(one, T, at(0));
        wary.start(one, at(0));
        assert!(wary.on_superseded(1, PeerId(9), false, at(1)).is_empty());
        assert_eq!(wary.role(), Role::Serving);
        // One naming a reached member that never announces itself is given up after the
        // await timeout, as any successor is.
        let mut told = Authority::new(one, T, at(0));
        told.start(one, at(0));
        told.on_superseded(1, two, true, at(1));
        assert!(told.tick(at(2), &live(&[2, 3])).is_empty());
        let actions = told.tick(at(1) + T, &live(&[2, 3]));
        assert!(
            matches!(actions.first(), Some(Action::Serve { epoch: 2, .. })),
            "{actions:?}"
        );

        // A long split: the awaited server comes back into reach after far longer than the
        // await timeout. The wait for its greeting starts then, not when the notice came.
        let mut long = Authority::new(one, T, at(0));
        long.start(one, at(0));
        long.on_superseded(1, two, true, at(1));
        assert!(long.tick(at(60), &live(&[3])).is_empty());
        assert!(
            long.tick(at(61), &live(&[2, 3])).is_empty(),
            "2 just came back"
        );
        assert_eq!(long.server(), None);
        assert_eq!(
            long.on_serving(two, 1, vec![one, three]),
            vec![Action::Follow {
                server: two,
                epoch: 1,
                previous: Some(one)
            }]
        );

        // Alone instead (every other member gone while it waited): it serves.
        let mut lone = Authority::new(one, T, at(0));
        lone.start(one, at(0));
        lone.on_superseded(1, two, true, at(1));
        assert!(lone.tick(at(2), &live(&[3])).is_empty(), "3 still reached");
        let actions = lone.tick(at(3), &live(&[]));
        assert_eq!(lone.role(), Role::Serving);
        assert!(matches!(
            actions.first(),
            Some(Action::Serve { epoch: 2, .. })
        ));
    }

    /// The CI failure of the three-App partial split: the path heals, but the new
    /// server's claim waits on the reliable channel behind SCTP's backed-off timer for
    /// longer than the await timeout. Its beacons (unreliable, at once) keep the old host
    /// waiting, so it follows when the claim arrives instead of electing itself at a
    /// higher epoch and pulling everyone over to its own world.
    #[test]
    fn a_reached_server_whose_claim_lags_is_awaited_while_it_beacons() {
        let (one, two, three) = (PeerId(1), PeerId(2), PeerId(3));
        let mut host = Authority::new(one, T, at(0));
        host.start(one, at(0));
        host.on_superseded(1, two, true, at(1));
        assert!(host.tick(at(9), &live(&[3])).is_empty(), "2 out of reach");
        assert!(host.tick(at(10), &live(&[2, 3])).is_empty(), "2 came back");
        let mut server = Authority::new(two, T, at(0));
        server.start(one, at(0));
        server.on_serving(one, 0, vec![two, three]);
        server.on_lost(one, &live(&[3]), at(1));
        let Some(Control::Beacon { epoch }) = server.beacon() else {
            panic!("a serving member beacons");
        };
        assert_eq!(epoch, 1);
        // Beacons at the awaited epoch, for twice the await timeout: no election.
        for second in 11..=30 {
            host.on_beacon(two, epoch, at(second));
            assert!(host.tick(at(second), &live(&[2, 3])).is_empty());
        }
        assert_eq!(host.server(), None);
        // The claim arrives at last, and it follows.
        assert!(matches!(
            host.on_serving(two, 1, vec![one, three]).first(),
            Some(Action::Follow { epoch: 1, .. })
        ));

        // A stale beacon (an older epoch), or one from a member it does not wait for,
        // does not hold a wait open: the silent successor is given up as before.
        let mut told = Authority::new(one, T, at(0));
        told.start(one, at(0));
        told.on_superseded(2, two, true, at(1));
        told.tick(at(1), &live(&[2, 3]));
        told.on_beacon(two, 1, at(5));
        told.on_beacon(three, 2, at(5));
        assert!(matches!(
            told.tick(at(1) + T, &live(&[2, 3])).first(),
            Some(Action::Serve { epoch: 3, .. })
        ));
        // A member that is not serving sends none.
        assert_eq!(host.beacon(), None);
    }

    #[test]
    fn a_server_greets_each_peer_that_connects() {
        let mut host = Authority::new(PeerId(1), T, at(0));
        host.start(PeerId(1), at(0));
        assert_eq!(
            host.on_connected(PeerId(5)),
            vec![Action::Send {
                to: Some(PeerId(5)),
                message: serving(0, &[])
            }]
        );
        let mut member = Authority::new(PeerId(2), T, at(0));
        member.start(PeerId(1), at(0));
        assert!(member.on_connected(PeerId(5)).is_empty());
    }

    #[test]
    fn only_a_serving_member_welcomes_and_its_welcome_carries_its_claim() {
        let mut host = Authority::new(PeerId(1), T, at(0));
        host.start(PeerId(1), at(0));
        host.tick(at(1), &live(&[2, 3]));
        assert_eq!(
            host.welcome(7),
            Some(Control::Welcome {
                epoch: 0,
                line: vec![PeerId(2), PeerId(3)],
                client: 7
            })
        );
        let mut member = Authority::new(PeerId(2), T, at(0));
        member.start(PeerId(1), at(0));
        assert_eq!(member.welcome(7), None);
    }
}
