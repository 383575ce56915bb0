//! Arena: a small playable Bevy game over Squadlink. Each player moves a coloured square
//! with the arrow keys or WASD. Positions travel on an unreliable sequenced channel. Space
//! sends a "ping" event on the reliable channel, and every other square flashes. Hold V to
//! talk (voice chat, positional: a square on your left sounds from the left); a yellow frame
//! around a square shows who is speaking. An overlay lists the peers with their path
//! (direct or relayed), round-trip time and loss. With `--test-pattern` a player sends a
//! synthetic video feed (VP8), which the others see in a tile above that player's square;
//! built with `--features webcam`, `--camera [NAME]` sends a webcam's picture instead.
//!
//! Run two of them:
//!   cargo run -p squadlink-bevy-examples --bin arena                 # creates a lobby, shows its code
//!   cargo run -p squadlink-bevy-examples --bin arena -- --lobby CODE # joins it
//! The first instance on a machine also runs the matchmaker (127.0.0.1:7878); later ones use
//! it. `--autopilot` moves the square by itself; `--screenshot FILE --exit-after S` saves a
//! screenshot and quits (used by scripts/arena_screenshot.sh under Xvfb).

use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, save_to_disk};
use bevy_squadlink::prelude::*;
use clap::Parser;
use squadlink_bevy_examples::add_arena_networking;
use squadlink_bevy_examples::arena::{ArenaPlugin, ArenaSettings, arena_plugins};
use squadlink_bevy_examples::arena_media::ArenaMediaPlugin;

#[derive(Parser, Debug, Clone, Resource)]
#[command(about = "Arena: move a square, see your friends' squares (Squadlink + Bevy)")]
struct Args {
    /// Join this lobby instead of creating one.
    #[arg(long)]
    lobby: Option<String>,
    /// Matchmaker URL (default: the one on 127.0.0.1:7878, started here if none runs).
    #[arg(long)]
    matchmaker: Option<String>,
    /// Move by itself in a circle (for demos and unattended runs).
    #[arg(long)]
    autopilot: bool,
    /// Save a screenshot to this PNG file (at --exit-after, then quit).
    #[arg(long)]
    screenshot: Option<std::path::PathBuf>,
    /// Quit this many seconds after the first peer connected.
    #[arg(long)]
    exit_after: Option<f64>,
    /// Microphone from this WAV file (then silence) instead of the default device.
    #[arg(long)]
    voice_input: Option<std::path::PathBuf>,
    /// Transmit without holding V (open mic).
    #[arg(long)]
    open_mic: bool,
    /// Send the synthetic test pattern as this player's video (others see it above the
    /// square).
    #[arg(long)]
    test_pattern: bool,
    /// Send a webcam's picture: the first camera, or one whose name contains this text
    /// (build with `--features webcam`).
    #[cfg(feature = "webcam")]
    #[arg(long, num_args = 0..=1, default_missing_value = "")]
    camera: Option<String>,
}

fn main() -> AppExit {
    let args = Args::parse();
    let url = match args.matchmaker.clone() {
        Some(url) => url,
        None => match local_matchmaker() {
            Ok(url) => url,
            Err(e) => {
                eprintln!("error: {e}");
                return AppExit::error();
            }
        },
    };
    let lobby = args
        .lobby
        .clone()
        .map_or_else(|| LobbyRef::create(4), LobbyRef::Code);
    let mut app = App::new();
    app.add_plugins(arena_plugins(None));
    add_arena_networking(&mut app, url, lobby);
    let input = match &args.voice_input {
        Some(path) => AudioInput::Wav(path.clone()),
        None => AudioInput::Default,
    };
    let mode = if args.open_mic {
        VoiceMode::OpenMic
    } else {
        VoiceMode::PushToTalk
    };
    app.add_plugins(VoiceChatPlugin::new(
        squadlink::voice::VoiceConfig::default()
            .mode(mode)
            .input(input),
    ));
    let video = video_input(&args);
    app.add_plugins(VideoChatPlugin::new(VideoConfig::default().input(video)));
    app.add_plugins(ArenaPlugin {
        settings: ArenaSettings {
            autopilot: args.autopilot,
            join_hint: "--lobby ".into(),
        },
    })
    .insert_resource(args)
    .add_plugins(ArenaMediaPlugin)
    .add_systems(Update, (announce_lobby, unattended_exit))
    .run()
}

/// What this player sends as video: a webcam (`--camera`), the test pattern, or nothing.
fn video_input(args: &Args) -> VideoInput {
    #[cfg(feature = "webcam")]
    if let Some(name) = &args.camera {
        use squadlink::video::CameraChoice;
        return VideoInput::Camera(if name.is_empty() {
            CameraChoice::First
        } else {
            CameraChoice::Name(name.clone())
        });
    }
    if args.test_pattern {
        VideoInput::TestPattern
    } else {
        VideoInput::None
    }
}

/// The matchmaker to use without `--matchmaker`: start one on 127.0.0.1:7878 in a
/// background thread, or use the one already there.
fn local_matchmaker() -> Result<String, String> {
    let (url, started) = squadlink_matchmaker::ensure_local(7878)?;
    if started {
        eprintln!("arena: started a matchmaker at {url}");
    } else {
        eprintln!("arena: using the matchmaker already at {url}");
    }
    Ok(url)
}

/// Prints `LOBBY <code>` once on stdout, for scripts that start a second player.
fn announce_lobby(lobby: Option<Res<Lobby>>, mut done: Local<bool>) {
    if let (false, Some(lobby)) = (*done, lobby) {
        println!("LOBBY {}", lobby.code);
        *done = true;
    }
}

/// `--screenshot` / `--exit-after S`: S seconds after the first peer connected (or after
/// 30 s alone, so a run that never connects still ends), capture the window, then quit.
fn unattended_exit(
    mut commands: Commands,
    time: Res<Time>,
    args: Res<Args>,
    peers: Query<(), With<Peer>>,
    mut clock: Local<(Option<f32>, Option<f32>)>,
    mut exit: MessageWriter<AppExit>,
) {
    let Some(after) = args.exit_after else { return };
    let now = time.elapsed_secs();
    let (first_peer, taken) = &mut *clock;
    if first_peer.is_none() && !peers.is_empty() {
        *first_peer = Some(now);
    }
    let due = match *first_peer {
        Some(t) => f64::from(now - t) >= after,
        None => now >= 30.0,
    };
    match *taken {
        None if due => {
            if let Some(path) = args.screenshot.clone() {
                commands
                    .spawn(Screenshot::primary_window())
                    .observe(save_to_disk(path));
            }
            *taken = Some(now);
        }
        // Give the screenshot time to be read back and written.
        Some(at) if now - at > 2.0 => {
            exit.write(AppExit::Success);
        }
        _ => {}
    }
}
