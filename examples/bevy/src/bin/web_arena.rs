//! Web arena: the arena game (see `arena`) in the browser — Bevy on WebGL2, Squadlink in
//! wasm32 with the page's own WebRTC — in the same lobbies as native arenas and
//! `headless_bots`, with the same voice and video: hold V to talk (the page asks for the
//! microphone), peers are heard from where their squares are, and a peer's video plays in a
//! tile above its square.
//!
//! Build and serve it (Debian's rustc-web builds std for wasm32 from source):
//!   scripts/web.sh arena              # builds into target/web-arena, serves on 127.0.0.1:8080
//! then open `http://127.0.0.1:8080/?matchmaker=ws://127.0.0.1:7878/v1&lobby=CODE`.
//! Page parameters: `matchmaker` (default `ws://<page host>:7878/v1`), `lobby` (a code to
//! join; none creates a lobby), `autopilot` (any value: the square moves by itself),
//! `mic` (`open`: transmit without holding V; `off`: listen only), `video` (`pattern`: send
//! the test pattern; `camera`: send the page's camera; default: none).
//!
//! Networking runs on the page's event loop, not in Bevy's frames: a hidden tab, where the
//! browser stops drawing frames, still answers its peers' pings (the session's task is woken
//! by the page's network events and timers), and the game catches up when the tab is shown
//! again (`sdk/tests/browser.rs`, `the_sdk_in_a_hidden_tab_keeps_its_peer`: a tab opened in
//! front of the page, its timers throttled to once a second, for 10 s).

#[cfg(target_arch = "wasm32")]
fn main() {
    use bevy::prelude::*;
    use bevy_squadlink::prelude::*;
    use squadlink_bevy_examples::add_arena_networking;
    use squadlink_bevy_examples::arena::{ArenaPlugin, ArenaSettings, arena_plugins};
    use squadlink_bevy_examples::arena_media::ArenaMediaPlugin;

    let params = web_sys::window()
        .and_then(|w| w.location().search().ok())
        .and_then(|q| web_sys::UrlSearchParams::new_with_str(&q).ok());
    let param = |name: &str| params.as_ref().and_then(|p| p.get(name));
    let host = web_sys::window()
        .and_then(|w| w.location().hostname().ok())
        .unwrap_or_else(|| "127.0.0.1".into());
    let url = param("matchmaker").unwrap_or_else(|| format!("ws://{host}:7878/v1"));
    let lobby = param("lobby").map_or_else(|| LobbyRef::create(4), LobbyRef::Code);

    let mut app = App::new();
    app.add_plugins(arena_plugins(Some("#arena".into())));
    add_arena_networking(&mut app, url, lobby);
    let mic = param("mic");
    let (input, mode) = match mic.as_deref() {
        Some("off") => (AudioInput::None, VoiceMode::PushToTalk),
        Some("open") => (AudioInput::Default, VoiceMode::OpenMic),
        _ => (AudioInput::Default, VoiceMode::PushToTalk),
    };
    app.add_plugins(VoiceChatPlugin::each_session(move || {
        squadlink::voice::VoiceConfig::default()
            .mode(mode)
            .input(input.clone())
    }));
    let video = match param("video").as_deref() {
        Some("pattern") => VideoInput::TestPattern,
        Some("camera") => VideoInput::Camera,
        _ => VideoInput::None,
    };
    app.add_plugins(VideoChatPlugin::each_session(move || {
        VideoConfig::default().input(video.clone())
    }))
    .add_plugins(ArenaMediaPlugin);
    app.add_plugins(ArenaPlugin {
        settings: ArenaSettings {
            autopilot: param("autopilot").is_some(),
            join_hint: "?lobby=".into(),
        },
    })
    .add_systems(Update, milestones)
    .run();
}

/// Logs (to the console) how long after the page opened the arena drew its first frame,
/// entered its lobby and saw its first peer connected: the page's time to interactive
/// (`scripts/web_arena_screenshot.sh` reads these lines).
#[cfg(target_arch = "wasm32")]
fn milestones(
    lobby: Option<bevy::prelude::Res<bevy_squadlink::Lobby>>,
    peers: bevy::prelude::Query<(), bevy::prelude::With<bevy_squadlink::Peer>>,
    mut seen: bevy::prelude::Local<[bool; 3]>,
) {
    let now = || {
        web_sys::window()
            .and_then(|w| w.performance())
            .map_or(f64::NAN, |p| p.now())
    };
    let reached = [true, lobby.is_some(), !peers.is_empty()];
    let names = ["first frame", "in lobby", "first peer connected"];
    for ((done, reached), name) in seen.iter_mut().zip(reached).zip(names) {
        if reached && !*done {
            *done = true;
            bevy::log::info!("web_arena milestone: {name} at {:.0} ms", now());
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!(
        "web_arena is the browser build of the arena: build and serve it with scripts/web.sh arena \
         (or play natively: cargo run -p squadlink-bevy-examples --bin arena)"
    );
    std::process::exit(2);
}
