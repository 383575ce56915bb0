//! Voice lobby: join a lobby and talk. Uses the default microphone and speakers, or the
//! devices you name, or WAV files (`--input FILE.wav --output FILE.wav`) on machines without
//! sound devices. Prints who is speaking, and each peer's voice statistics at the end.
//!
//! Run two of them:
//!   `cargo run --release -p squadlink-examples --bin voice_lobby`          (prints LOBBY code)
//!   `cargo run --release -p squadlink-examples --bin voice_lobby -- --lobby CODE`
//! The first one also starts a matchmaker on 127.0.0.1:7878 unless `--matchmaker URL`.
//! Modes: `--mode vad` (default: talk and it sends), `--mode ptt` (press Enter to start or
//! stop talking), `--mode open`. `--list-devices` shows device names.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use serde_json::json;
use squadlink::voice::{
    AudioInput, AudioOutput, Direction, Voice, VoiceConfig, VoiceEvent, VoiceMode, WavSource,
    device_names,
};
use squadlink::{Event, LobbyRef, Session};

#[derive(ValueEnum, Debug, Clone, Copy)]
enum Mode {
    /// Voice activity: sends while you speak.
    Vad,
    /// Push to talk: Enter toggles talking.
    Ptt,
    /// Open mic.
    Open,
}

/// Squadlink voice lobby: join a lobby and talk.
#[derive(Parser, Debug)]
struct Args {
    /// Join this lobby code (otherwise create a lobby and print its code).
    #[arg(long)]
    lobby: Option<String>,
    /// Matchmaker URL (default: the one on 127.0.0.1:7878, started here if none runs).
    #[arg(long)]
    matchmaker: Option<String>,
    /// How the microphone opens.
    #[arg(long, value_enum, default_value_t = Mode::Vad)]
    mode: Mode,
    /// Read the microphone from this WAV file instead of a device (then silence).
    #[arg(long, conflicts_with = "input_device")]
    input: Option<PathBuf>,
    /// Write what you hear to this WAV file instead of a device.
    #[arg(long, conflicts_with = "output_device")]
    output: Option<PathBuf>,
    /// Microphone by name (see --list-devices).
    #[arg(long)]
    input_device: Option<String>,
    /// Output device by name (see --list-devices).
    #[arg(long)]
    output_device: Option<String>,
    /// Turn noise suppression off.
    #[arg(long)]
    no_noise_suppression: bool,
    /// Quit after this many seconds (default: run until Ctrl-C or end of input).
    #[arg(long)]
    seconds: Option<f64>,
    /// With --input: quit this long after the file has been played.
    #[arg(long, default_value_t = 2.0)]
    linger: f64,
    /// Wait for this many peers before the microphone opens.
    #[arg(long, default_value_t = 0)]
    wait_for: usize,
    /// Print one JSON summary on stdout at the end.
    #[arg(long)]
    json: bool,
    /// List audio devices and quit.
    #[arg(long)]
    list_devices: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("voice_lobby: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    if args.list_devices {
        for direction in [Direction::Input, Direction::Output] {
            match device_names(direction) {
                Ok(names) => println!("{direction}: {}", names.join(" | ")),
                Err(e) => println!("{direction}: {e}"),
            }
        }
        return Ok(());
    }
    let url = match args.matchmaker.clone() {
        Some(url) => url,
        None => {
            let (url, started) = squadlink_matchmaker::ensure_local(7878)?;
            if started {
                eprintln!("voice_lobby: started a matchmaker at {url}");
            }
            url
        }
    };
    let lobby = match &args.lobby {
        Some(code) => LobbyRef::Code(code.clone()),
        None => LobbyRef::create(8),
    };
    let session = Session::builder(url)
        .join(lobby)
        .start()
        .map_err(|e| e.to_string())?;
    let code = session.lobby().map(|l| l.code).unwrap_or_default();
    // Scripts read this line to send a second player to the same lobby.
    println!("LOBBY {code}");
    let me = session.id().map(|p| p.to_string()).unwrap_or_default();
    eprintln!("voice_lobby: in lobby {code} as {me}");

    let deadline = args
        .seconds
        .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let mut peers = Vec::new();
    while peers.len() < args.wait_for {
        for event in session.poll_events() {
            note_session_event(&event, &mut peers);
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            return Err(format!(
                "only {} of {} peers came",
                peers.len(),
                args.wait_for
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }

    let mut finished = None;
    let input = match (&args.input, &args.input_device) {
        (Some(path), _) => {
            let source = WavSource::open(path).map_err(|e| e.to_string())?;
            finished = Some(source.finished_flag());
            AudioInput::Source(Box::new(source))
        }
        (None, Some(name)) => AudioInput::Device(name.clone()),
        (None, None) => AudioInput::Default,
    };
    let output = match (&args.output, &args.output_device) {
        (Some(path), _) => AudioOutput::Wav(path.clone()),
        (None, Some(name)) => AudioOutput::Device(name.clone()),
        (None, None) => AudioOutput::Default,
    };
    let mode = match args.mode {
        Mode::Vad => VoiceMode::VoiceActivity,
        Mode::Ptt => VoiceMode::PushToTalk,
        Mode::Open => VoiceMode::OpenMic,
    };
    let voice = Voice::start(
        &session,
        VoiceConfig::default()
            .mode(mode)
            .noise_suppression(!args.no_noise_suppression)
            .input(input)
            .output(output),
    )
    .map_err(|e| e.to_string())?;
    if matches!(args.mode, Mode::Ptt) {
        eprintln!("voice_lobby: push to talk: press Enter to start talking, Enter again to stop");
        spawn_enter_toggle();
    }

    let mut devices = Vec::new();
    let mut speaking_events = 0u64;
    let mut ptt = false;
    let mut input_done_at: Option<Instant> = None;
    loop {
        for event in session.poll_events() {
            note_session_event(&event, &mut peers);
            if matches!(event, Event::Closed(_)) {
                return Err("the session closed".into());
            }
        }
        for event in voice.poll_events() {
            match &event {
                VoiceEvent::SpeakingStarted { peer } => {
                    speaking_events += 1;
                    eprintln!("voice_lobby: {peer} is speaking");
                }
                VoiceEvent::SpeakingStopped { peer } => eprintln!("voice_lobby: {peer} stopped"),
                VoiceEvent::TransmitStarted => eprintln!("voice_lobby: you are on air"),
                VoiceEvent::TransmitStopped => eprintln!("voice_lobby: you are off air"),
                VoiceEvent::DeviceStarted { direction, name } => {
                    eprintln!("voice_lobby: {direction} device: {name}");
                    devices.push(json!({"direction": direction.to_string(), "name": name}));
                }
                VoiceEvent::DeviceUnavailable { direction, reason } => {
                    eprintln!("voice_lobby: no {direction} device: {reason}");
                    devices.push(json!({"direction": direction.to_string(), "error": reason}));
                }
                other => eprintln!("voice_lobby: {other:?}"),
            }
        }
        if ENTER_PRESSES.swap(0, std::sync::atomic::Ordering::Relaxed) % 2 == 1 {
            ptt = !ptt;
            voice.set_push_to_talk(ptt);
        }
        if let Some(flag) = &finished
            && flag.load(std::sync::atomic::Ordering::Relaxed)
            && input_done_at.is_none()
        {
            input_done_at = Some(Instant::now());
        }
        let linger_over = input_done_at
            .is_some_and(|t| t.elapsed() > Duration::from_secs_f64(args.linger.max(0.0)));
        if linger_over || deadline.is_some_and(|d| Instant::now() > d) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let sent = voice.send_stats();
    let mut per_peer = Vec::new();
    for peer in &peers {
        if let Some(s) = voice.stats(*peer) {
            eprintln!(
                "voice_lobby: {peer}: {} packets, {} lost ({} rebuilt by FEC), {} late, jitter buffer {:.1} ms",
                s.packets_received,
                s.lost,
                s.fec_recovered,
                s.late,
                s.jitter_buffer_delay.as_secs_f64() * 1000.0
            );
            per_peer.push(json!({
                "peer": peer.to_string(),
                "packets_received": s.packets_received,
                "lost": s.lost,
                "fec_recovered": s.fec_recovered,
                "late": s.late,
                "jitter_buffer_ms": s.jitter_buffer_delay.as_secs_f64() * 1000.0,
            }));
        }
    }
    voice.stop();
    if args.json {
        println!(
            "{}",
            json!({
                "lobby": code,
                "peers": peers.len(),
                "devices": devices,
                "packets_sent": sent.packets_sent,
                "speaking_events": speaking_events,
                "received": per_peer,
            })
        );
    }
    session.close();
    Ok(())
}

fn note_session_event(event: &Event, peers: &mut Vec<squadlink::PeerId>) {
    match event {
        Event::PeerConnected { peer, path, .. } => {
            eprintln!("voice_lobby: {peer} connected ({})", path.name());
            peers.push(*peer);
        }
        Event::PeerDisconnected { peer, reason } => {
            eprintln!("voice_lobby: {peer} left ({reason:?})");
            peers.retain(|p| p != peer);
        }
        Event::Error(e) => eprintln!("voice_lobby: {e}"),
        _ => {}
    }
}

static ENTER_PRESSES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Counts Enter presses on stdin (push to talk in a terminal).
fn spawn_enter_toggle() {
    std::thread::spawn(|| {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            if line.is_err() {
                break;
            }
            ENTER_PRESSES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
}
