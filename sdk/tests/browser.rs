//! A real browser in the lobby: headless Chromium running `testkit/web/peer.js` (a peer
//! written from `docs/wire.md`, with the browser's own WebSocket and RTCPeerConnection)
//! against native sessions and the real matchmaker, all on loopback.

// Test code: a failed expectation should panic, loudly.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use squadlink::{Channel, ChannelKind, Event, LobbyRef, PathKind, PeerId, Session};
use squadlink_testkit::browser::{Browser, BrowserOptions};
use support::ALL_KINDS;

const WAIT: Duration = Duration::from_secs(20);

/// The channel list of `kinds` as member data spells it.
fn list(kinds: &[ChannelKind]) -> String {
    kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")
}

/// The page's test pattern: byte i is (seed + 31 i) mod 251.
fn pattern(size: usize, seed: u32) -> Vec<u8> {
    (0..size)
        .map(|i| ((seed as usize + 31 * i) % 251) as u8)
        .collect()
}

/// FNV-1a, as the page reports received messages.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    u64::from(h)
}

struct Rig {
    rt: tokio::runtime::Runtime,
    mm: squadlink_matchmaker::Server,
}

impl Rig {
    fn new() -> Rig {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mm = rt.block_on(support::matchmaker());
        Rig { rt, mm }
    }

    fn url(&self) -> String {
        self.mm.url()
    }

    fn native(&self, lobby: LobbyRef, kinds: &[ChannelKind]) -> Session {
        self.rt
            .block_on(support::session(&self.url(), lobby, kinds))
    }
}

/// Waits for `pick` among `s`'s events (bounded).
fn wait_native<T>(s: &Session, what: &str, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        for e in s.poll_events() {
            if let Some(v) = pick(&e) {
                return v;
            }
            seen.push(format!("{e:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("the native session did not see {what} within {WAIT:?}; it saw: {seen:#?}");
}

/// Waits until `s` holds a message on `channel` (bounded).
fn recv_native(s: &Session, channel: Channel) -> (PeerId, bytes::Bytes) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(m) = s.receive(channel).next() {
            return m;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("no message on {channel:?} within {WAIT:?}");
}

fn join_cmd(url: &str, code: Option<&str>, kinds: &[ChannelKind]) -> Value {
    let mut cmd = json!({
        "do": "join",
        "url": url,
        "player": "browser",
        "channels": list(kinds),
        "media": true,
    });
    if let Some(code) = code {
        cmd["code"] = json!(code);
    }
    cmd
}

fn peer_of(e: &Value) -> PeerId {
    PeerId(e["peer"].as_u64().expect("a peer id"))
}

/// A browser joins a native player's lobby; every channel kind carries messages both ways,
/// a 1 MiB reliable message crosses each way, and the browser leaves and joins again.
#[test]
fn a_browser_peer_and_a_native_peer_exchange_every_channel_kind_both_ways() {
    let rig = Rig::new();
    let native = rig.native(LobbyRef::create(4), &ALL_KINDS);
    let code = support::code(&native);
    let mut browser = Browser::start(BrowserOptions::default());

    for round in 0..2 {
        browser.command(join_cmd(&rig.url(), Some(&code), &ALL_KINDS));
        let joined = browser.wait_event("joining the lobby", WAIT, |e| e["event"] == "joined");
        let browser_id = PeerId(joined["me"].as_u64().unwrap());
        let connected = browser.wait_event("a connection", WAIT, |e| e["event"] == "connected");
        let native_id = peer_of(&connected);
        assert_eq!(Some(native_id), native.id());
        wait_native(&native, "the browser connected", |e| match e {
            Event::PeerConnected { peer, .. } if *peer == browser_id => Some(()),
            _ => None,
        });

        // Native → browser: every kind (reliable ones with a 1 MiB message on the first
        // round), each arriving whole.
        for (i, kind) in ALL_KINDS.iter().enumerate() {
            let size = if kind.is_reliable() && round == 0 {
                1 << 20
            } else {
                1000 + i
            };
            let data = pattern(size, i as u32);
            // Unreliable kinds may lose a datagram even on loopback: send a few.
            let copies = if kind.is_reliable() { 1 } else { 5 };
            for _ in 0..copies {
                native.send(browser_id, Channel(i), &data).unwrap();
            }
            let got = browser.wait_event("a message from the native peer", WAIT, |e| {
                e["event"] == "message" && e["channel"] == i
            });
            assert_eq!(got["len"], size, "{kind:?}");
            assert_eq!(
                got["sum"],
                fnv1a(&data),
                "{kind:?}: the bytes arrived intact"
            );
        }

        // Browser → native likewise.
        for (i, kind) in ALL_KINDS.iter().enumerate() {
            let size = if kind.is_reliable() && round == 0 {
                1 << 20
            } else {
                2000 + i
            };
            let copies = if kind.is_reliable() { 1 } else { 5 };
            for _ in 0..copies {
                browser.command(json!({"do": "send", "peer": native_id.0, "channel": i, "size": size, "seed": 7 + i}));
            }
            let (from, got) = recv_native(&native, Channel(i));
            assert_eq!(from, browser_id);
            assert_eq!(got.len(), size, "{kind:?}");
            assert_eq!(&got[..], &pattern(size, 7 + i as u32)[..], "{kind:?}");
        }

        // The browser leaves; the native side hears of it. Then round two joins again.
        browser.command(json!({"do": "leave"}));
        wait_native(&native, "the browser leaving", |e| match e {
            Event::PeerDisconnected { peer, .. } if *peer == browser_id => Some(()),
            _ => None,
        });
        while native.receive(Channel(0)).next().is_some() {}
        while native.receive(Channel(1)).next().is_some() {}
    }
}

/// Chrome hides its host addresses behind mDNS names (`….local`) by default (and the rig
/// keeps that). The native side still finds the direct path, and reports it as what it is:
/// a host path, not srflx.
#[test]
fn a_browsers_mdns_host_candidate_gives_a_host_path() {
    let rig = Rig::new();
    let native = rig.native(LobbyRef::create(2), &ALL_KINDS);
    let mut browser = Browser::start(BrowserOptions::default());
    browser.command(join_cmd(
        &rig.url(),
        Some(&support::code(&native)),
        &ALL_KINDS,
    ));
    let browser_id = PeerId(
        browser.wait_event("joining", WAIT, |e| e["event"] == "joined")["me"]
            .as_u64()
            .unwrap(),
    );
    browser.wait_event("a connection", WAIT, |e| e["event"] == "connected");
    wait_native(&native, "the browser connected", |e| match e {
        Event::PeerConnected { peer, path, .. } if *peer == browser_id => Some(*path),
        _ => None,
    });
    let stats = native.stats(browser_id).expect("stats of the browser peer");
    assert_eq!(stats.path, Some(PathKind::Host), "{stats:?}");
    // The browser really hid its host address (or the test shows nothing).
    let hidden = browser.seen().iter().any(|e| {
        e["event"] == "local_candidate"
            && e["candidate"]
                .as_str()
                .is_some_and(|c| c.contains(".local") && c.contains("typ host"))
    });
    assert!(
        hidden,
        "the browser announced no mDNS host candidate: {:?}",
        browser.seen()
    );
}

/// A browser that offers with data channels only (no audio or video transceivers) still
/// gets both media lines: the native side renegotiates them in.
#[test]
fn a_browser_offer_without_media_gets_audio_and_video_by_renegotiation() {
    let rig = Rig::new();
    let native = rig.native(LobbyRef::create(2), &ALL_KINDS);
    let mut browser = Browser::start(BrowserOptions::default());
    let mut join = join_cmd(&rig.url(), Some(&support::code(&native)), &ALL_KINDS);
    join["media"] = json!(false);
    browser.command(join);
    let connected = browser.wait_event("a connection", WAIT, |e| e["event"] == "connected");
    let native_id = peer_of(&connected);
    // The native side's later offer carries audio and video.
    let offer = browser.seen_or_wait("an offer from the native side", WAIT, |e| {
        e["event"] == "offer"
    });
    let mlines: Vec<&str> = offer["mlines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    assert!(
        mlines.contains(&"audio") && mlines.contains(&"video") && mlines.contains(&"application"),
        "{mlines:?}"
    );
    // Once answered, the browser's connection holds both media kinds.
    let deadline = Instant::now() + WAIT;
    loop {
        browser.command(json!({"do": "describe", "peer": native_id.0}));
        let d = browser.wait_event("a description", WAIT, |e| e["event"] == "described");
        let kinds: Vec<String> = d["transceivers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["current"].is_string())
            .map(|t| t["kind"].as_str().unwrap_or("").to_string())
            .collect();
        if kinds.iter().any(|k| k == "audio") && kinds.iter().any(|k| k == "video") {
            break;
        }
        assert!(Instant::now() < deadline, "no negotiated media: {d}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // And the data channels still work after the renegotiation.
    native
        .send(browser_id_of(&browser), Channel(2), b"after")
        .unwrap();
    browser.wait_event("a message after renegotiation", WAIT, |e| {
        e["event"] == "message" && e["channel"] == 2
    });
}

fn browser_id_of(browser: &Browser) -> PeerId {
    let joined = browser
        .seen()
        .iter()
        .find(|e| e["event"] == "joined")
        .expect("the browser joined");
    PeerId(joined["me"].as_u64().unwrap())
}

/// A browser whose channel list differs is told so by a `refused` signal, whichever side
/// joined first; the native side reports the mismatch too.
#[test]
fn a_channel_list_mismatch_is_signaled_to_the_browser() {
    let rig = Rig::new();
    for browser_first in [false, true] {
        let mut browser = Browser::start(BrowserOptions::default());
        let kinds = [ChannelKind::ReliableOrdered];
        let native = if browser_first {
            let mut create = join_cmd(&rig.url(), None, &kinds);
            create["max_members"] = json!(2);
            browser.command(create);
            let joined = browser.wait_event("creating a lobby", WAIT, |e| e["event"] == "joined");
            let code = joined["code"].as_str().unwrap().to_string();
            rig.native(LobbyRef::Code(code), &ALL_KINDS)
        } else {
            let native = rig.native(LobbyRef::create(2), &ALL_KINDS);
            browser.command(join_cmd(&rig.url(), Some(&support::code(&native)), &kinds));
            native
        };
        let refused = browser.wait_event("a refusal", WAIT, |e| e["event"] == "refused");
        assert_eq!(Some(peer_of(&refused)), native.id());
        assert_eq!(refused["reason"], "channel_mismatch", "{refused}");
        let message = refused["message"].as_str().unwrap_or("");
        assert!(
            message.contains("reliable_ordered") && message.contains("unreliable_sequenced"),
            "{message}"
        );
        wait_native(&native, "the mismatch", |e| match e {
            Event::Error(squadlink::Error::ChannelMismatch { .. }) => Some(()),
            _ => None,
        });
    }
}

/// A browser announcing another wire version is refused with `wire_version`, and the
/// native side reports the versions.
#[test]
fn a_browser_speaking_another_wire_version_is_refused() {
    let rig = Rig::new();
    let native = rig.native(LobbyRef::create(2), &ALL_KINDS);
    let mut browser = Browser::start(BrowserOptions::default());
    let mut join = join_cmd(&rig.url(), Some(&support::code(&native)), &ALL_KINDS);
    join["wire"] = json!("2");
    browser.command(join);
    let refused = browser.wait_event("a refusal", WAIT, |e| e["event"] == "refused");
    assert_eq!(refused["reason"], "wire_version", "{refused}");
    let (ours, theirs) = wait_native(&native, "the version mismatch", |e| match e {
        Event::Error(squadlink::Error::WireVersion { ours, theirs, .. }) => {
            Some((ours.clone(), theirs.clone()))
        }
        _ => None,
    });
    assert_eq!((ours.as_str(), theirs.as_str()), ("1", "2"));
}

/// A peer may refuse on its own grounds: the native side ends the connection and says
/// what the peer said.
#[test]
fn a_refusal_from_a_connected_browser_ends_the_connection_with_its_words() {
    let rig = Rig::new();
    let native = rig.native(LobbyRef::create(2), &ALL_KINDS);
    let mut browser = Browser::start(BrowserOptions::default());
    browser.command(join_cmd(
        &rig.url(),
        Some(&support::code(&native)),
        &ALL_KINDS,
    ));
    let native_id =
        peer_of(&browser.wait_event("a connection", WAIT, |e| e["event"] == "connected"));
    let browser_id = browser_id_of(&browser);
    wait_native(&native, "the browser connected", |e| match e {
        Event::PeerConnected { peer, .. } if *peer == browser_id => Some(()),
        _ => None,
    });
    browser.command(json!({"do": "refuse", "peer": native_id.0, "reason": "busy", "message": "the game is full"}));
    let message = wait_native(&native, "the refusal", |e| match e {
        Event::Error(squadlink::Error::PeerRefused {
            peer,
            reason,
            message,
        }) if *peer == browser_id && reason == "busy" => Some(message.clone()),
        _ => None,
    });
    assert_eq!(message, "the game is full");
    wait_native(&native, "the disconnection", |e| match e {
        Event::PeerDisconnected { peer, .. } if *peer == browser_id => Some(()),
        _ => None,
    });
    assert!(native.connected_peers().is_empty());
}

/// A native session that ends closes its channels the polite way: the browser sees each
/// channel close, and no channel raises `error` (an SCTP ABORT would raise "User-Initiated
/// Abort" on every one).
#[test]
fn a_native_peer_that_closes_closes_the_browsers_channels_without_errors() {
    let rig = Rig::new();
    let native = rig.native(LobbyRef::create(2), &ALL_KINDS);
    let mut browser = Browser::start(BrowserOptions::default());
    browser.command(join_cmd(
        &rig.url(),
        Some(&support::code(&native)),
        &ALL_KINDS,
    ));
    browser.wait_event("a connection", WAIT, |e| e["event"] == "connected");
    native.close();
    // Every channel closes, none fails, and the matchmaker's peer_left comes too (before,
    // between or after the closes).
    let mut closed = std::collections::BTreeSet::new();
    let mut left = false;
    while closed.len() < ALL_KINDS.len() + 1 || !left {
        let e = browser.wait_event("the channels closing and peer_left", WAIT, |e| {
            ["channel_close", "channel_error", "peer_left"]
                .contains(&e["event"].as_str().unwrap_or(""))
        });
        assert_ne!(
            e["event"],
            "channel_error",
            "a channel raised an error: {e}\nevents: {:?}",
            browser.seen()
        );
        if e["event"] == "peer_left" {
            left = true;
        } else {
            closed.insert(e["channel"].as_u64().unwrap());
        }
    }
    // The native side asked first (a BYE on the control channel).
    assert!(browser.seen().iter().any(|e| e["event"] == "bye"));
}

/// The SCTP message size the SDK advertises is the largest frame its contract sends or
/// takes (a 16 KiB body and the fragment header), so a browser refuses a larger
/// unreliable message at `send` instead of having it dropped.
#[test]
fn the_advertised_sctp_message_size_is_the_contracts_largest_frame() {
    let rig = Rig::new();
    let native = rig.native(LobbyRef::create(2), &ALL_KINDS);
    let mut browser = Browser::start(BrowserOptions::default());
    browser.command(join_cmd(
        &rig.url(),
        Some(&support::code(&native)),
        &ALL_KINDS,
    ));
    let native_id =
        peer_of(&browser.wait_event("a connection", WAIT, |e| e["event"] == "connected"));
    browser.command(json!({"do": "describe", "peer": native_id.0}));
    let d = browser.wait_event("a description", WAIT, |e| e["event"] == "described");
    assert_eq!(d["max_message_size"], 16_384 + 9, "{d}");
}
