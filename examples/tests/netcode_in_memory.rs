//! How a game tests its netcode under a bad network, in a unit test: two players' sessions
//! on `squadlink::testing::TestNet` (150 ms round trip, 20 ms jitter, 5 % loss), no
//! matchmaker, no sockets, simulated time — ten seconds of play run in well under a second,
//! and the seed makes a failure repeat. Then one bad link in a mesh of three
//! (`Session::set_simulated_network_from`): only the player behind it waits. Copy it and put
//! your own game logic where `World` is.
//!
//! Run: `cargo test -p squadlink-examples --test netcode_in_memory`

// Test code: a failed expectation should panic, loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use serde::{Deserialize, Serialize};
use squadlink::testing::TestNet;
use squadlink::{Channel, ChannelKind, NetworkConditions, Session};

/// Positions, 50 times a second: only the newest matters.
const STATE: Channel = Channel(0);
/// Shots: every one must arrive, in order.
const EVENTS: Channel = Channel(1);

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
struct Position {
    tick: u32,
    x: f32,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Shot {
    tick: u32,
}

/// The game's view of the other player.
#[derive(Default)]
struct World {
    remote: Option<Position>,
    shots: Vec<u32>,
}

impl World {
    fn receive(&mut self, session: &Session) {
        for (_, pos) in session.receive_typed::<Position>(STATE) {
            let pos = pos.unwrap();
            // Unreliable messages may arrive out of order: keep the newest.
            if self.remote.is_none_or(|r| r.tick < pos.tick) {
                self.remote = Some(pos);
            }
        }
        for (_, shot) in session.receive_typed::<Shot>(EVENTS) {
            self.shots.push(shot.unwrap().tick);
        }
    }
}

fn player(net: &TestNet) -> Session {
    net.join(
        Session::builder("ws://unused")
            .channel(ChannelKind::Unreliable)
            .channel(ChannelKind::ReliableOrdered),
    )
    .unwrap()
}

#[test]
fn the_other_player_sees_every_shot_and_our_latest_position() {
    let bad_network = NetworkConditions::latency(Duration::from_millis(75))
        .with_jitter(Duration::from_millis(20))
        .with_loss(0.05);
    let net = TestNet::seeded(bad_network, 42);
    let (alice, bob) = (player(&net), player(&net));
    assert!(net.run_until(Duration::from_secs(10), || {
        !alice.connected_peers().is_empty() && !bob.connected_peers().is_empty()
    }));

    let mut bobs_world = World::default();
    let frame = Duration::from_millis(20);
    for tick in 0..500 {
        let pos = Position {
            tick,
            x: tick as f32 * 0.1,
        };
        alice.broadcast_typed(STATE, &pos).unwrap();
        if tick % 25 == 0 {
            alice.broadcast_typed(EVENTS, &Shot { tick }).unwrap();
        }
        net.advance(frame);
        bobs_world.receive(&bob);
    }
    // Let the last messages land.
    net.advance(Duration::from_secs(2));
    bobs_world.receive(&bob);

    let shots: Vec<u32> = (0..500).step_by(25).collect();
    assert_eq!(bobs_world.shots, shots);
    assert_eq!(bobs_world.remote.map(|p| p.tick), Some(499));
}

#[test]
fn a_bad_link_to_one_player_slows_only_that_player() {
    let net = TestNet::seeded(NetworkConditions::latency(Duration::from_millis(10)), 7);
    let (alice, bob, carol) = (player(&net), player(&net), player(&net));
    assert!(net.run_until(Duration::from_secs(10), || {
        [&alice, &bob, &carol]
            .iter()
            .all(|s| s.connected_peers().len() == 2)
    }));
    // Carol's link to Alice, both ways: 300 ms more and 10 % lost. Bob's paths stay clean.
    let bad_link = NetworkConditions::latency(Duration::from_millis(300)).with_loss(0.1);
    let (a, c) = (alice.id().unwrap(), carol.id().unwrap());
    alice.set_simulated_network_from(c, bad_link);
    carol.set_simulated_network_from(a, bad_link);

    let (mut bobs_world, mut carols_world) = (World::default(), World::default());
    alice.broadcast_typed(EVENTS, &Shot { tick: 1 }).unwrap();
    net.advance(Duration::from_millis(100));
    bobs_world.receive(&bob);
    carols_world.receive(&carol);
    assert_eq!(bobs_world.shots, [1], "Bob's path is clean");
    assert!(
        carols_world.shots.is_empty(),
        "Carol's shot is still on its way"
    );

    assert!(net.run_until(Duration::from_secs(5), || {
        carols_world.receive(&carol);
        !carols_world.shots.is_empty()
    }));
    assert_eq!(carols_world.shots, [1], "late, but it arrives");
}
