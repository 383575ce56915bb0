//! Browser peers beside native ones, in the same run: connect time and 64-byte round trip
//! for native↔native, browser↔native and browser↔browser, on loopback through the real
//! matchmaker. The browser is headless Chromium running `testkit/web/peer.js` (a peer
//! written from docs/wire.md with the browser's own WebRTC) and, with `--wasm-peer DIR`,
//! Squadlink itself compiled to wasm32 (`testkit/web-peer`, built by `scripts/web.sh peer`)
//! against a native player: its round trip is echoed in the page by the SDK's own
//! `recv().await`, no page loop in between.
//!
//! The floor under every browser row, in the same run: Chrome alone, two connections in
//! one page handed each other's offer, answer and candidates directly (no matchmaker, no
//! WebSocket, no other process), connecting and then echoing 64-byte messages between
//! them (`floor` in `testkit/web/peer.js`). No browser peer can connect or answer faster
//! than Chrome's own steps do here.
//!
//! Connect: from the joining side's join to it connected — for a native player, a new
//! session (its WebSocket, join and connection) until both sides are connected; for a page,
//! on its own clock from taking the `join` command (then its WebSocket, join and
//! connection) to its peer connected. The JSON has both clocks (`connect_ms` is this
//! process's, which for a page adds the rig's handing of the command to it). Round trip: sequential 64-byte messages on an
//! unreliable channel, echoed by the other side; measured by the native side where there is
//! one, else by the page (cross-origin isolated by the rig, so its clock is fine-grained;
//! Chrome coarsens it to 100 µs otherwise).
//!
//! With `--wasm-peer`, also a heal: the SDK in the page and a native peer, connected, lose
//! every datagram between them for `--heal-cuts` seconds (the native session drops all it
//! sends and receives; the matchmaker's WebSocket stays up) while both send 8-byte game
//! state (every 20 and 50 ms, `--heal-state-every-ms`) and one reliable message each; then
//! the path is restored and the first state and the reliable message are timed each way,
//! with the page offering and with the native side offering. Arrivals in the page are
//! timed when its report reaches this process (about a millisecond later).
//!
//! Prints JSON on stdout and a table on stderr; `--write-docs docs/performance.md` puts the
//! table there; `--trace` prints each browser connection's timeline (offer, answer, ICE
//! and connection states). Needs Debian's `chromium` (scripts/setup.sh test installs it).
//!
//! Run: `cargo run --release -p squadlink-bench --bin bench_browser`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Serialize;
use serde_json::{Value, json};
use squadlink::{Channel, ChannelKind, Event, LobbyRef, PeerId, Session};
use squadlink_bench::{Percentiles, median, percentile, run_main, update_docs_section};
use squadlink_matchmaker::{Config, Server};
use squadlink_testkit::browser::{Browser, BrowserOptions, Page};

const KINDS: [ChannelKind; 2] = [ChannelKind::Unreliable, ChannelKind::ReliableOrdered];
const UNRELIABLE: Channel = Channel(0);
const WAIT: Duration = Duration::from_secs(20);

/// Browser peers beside native ones: connect time and round trip.
#[derive(Parser, Debug)]
struct Args {
    /// Connects measured per pairing.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Sequential 64-byte round trips per pairing.
    #[arg(long, default_value_t = 500)]
    pings: usize,
    /// Write the table into this Markdown file (between bench:browser markers).
    #[arg(long)]
    write_docs: Option<PathBuf>,
    /// Print each browser connection's timeline on the page's clock (offer, answer, ICE
    /// and connection states, first channel open) to stderr.
    #[arg(long)]
    trace: bool,
    /// Let Chromium announce its host addresses instead of mDNS names.
    #[arg(long)]
    no_mdns: bool,
    /// The SDK's page peer (wasm-bindgen output of `scripts/web.sh peer`): measure the SDK
    /// in the browser against a native player too.
    #[arg(long)]
    wasm_peer: Option<PathBuf>,
    /// Cut lengths, in seconds, for the heal between the SDK in the page and a native peer
    /// (needs `--wasm-peer`; empty: no heal).
    #[arg(long, value_delimiter = ',', default_value = "2,5,10")]
    heal_cuts: Vec<f64>,
    /// How often both sides send their state during and after the heal's cut, ms (each
    /// rate with every cut).
    #[arg(long, value_delimiter = ',', default_value = "20,50")]
    heal_state_every_ms: Vec<u64>,
}

#[derive(Serialize, Debug, Default)]
struct Pairing {
    connect_ms: Vec<f64>,
    /// The joining page's own clock, from taking the `join` command to its peer connected
    /// (its WebSocket, join and connection): what a player's join costs, without the
    /// rig's handing of the command to the page.
    page_connect_ms: Vec<f64>,
    rtt_us: Option<Percentiles>,
    lost_pings: usize,
}

/// Chrome alone (the floor row), with each side's time in its own description calls.
#[derive(Serialize, Debug, Default)]
struct Floor {
    #[serde(flatten)]
    pairing: Pairing,
    /// The offering connection's `setLocalDescription` and `setRemoteDescription`.
    offer_side_ms: Vec<f64>,
    /// The answering connection's `setRemoteDescription` and `setLocalDescription`.
    answer_side_ms: Vec<f64>,
    /// The page was cross-origin isolated, so its clock is not coarsened to 100 µs (the
    /// other pages are served the same way).
    fine_page_clock: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    run_main(run(args))
}

async fn run(args: Args) -> Result<(), String> {
    let mm = Server::bind(Config {
        listen: ([127, 0, 0, 1], 0).into(),
        ..Config::default()
    })
    .await
    .map_err(|e| format!("matchmaker: {e}"))?;
    let url = mm.url();
    eprintln!("native ↔ native …");
    let native = native_native(&url, &args).await?;
    eprintln!("browser ↔ native …");
    let url2 = url.clone();
    let (rounds, pings, trace, mdns) = (args.rounds, args.pings, args.trace, !args.no_mdns);
    let page_native = tokio::task::spawn_blocking(move || {
        browser_native(
            &url2,
            rounds,
            pings,
            trace,
            BrowserOptions {
                mdns,
                ..BrowserOptions::default()
            },
        )
    })
    .await
    .map_err(|e| e.to_string())??;
    let sdk_native = match args.wasm_peer.clone() {
        Some(pkg) => {
            eprintln!("the SDK in the browser (wasm32) ↔ native …");
            let url2 = url.clone();
            let options = BrowserOptions {
                mdns,
                page: Page::Wasm(pkg),
                ..BrowserOptions::default()
            };
            Some(
                tokio::task::spawn_blocking(move || {
                    browser_native(&url2, rounds, pings, trace, options)
                })
                .await
                .map_err(|e| e.to_string())??,
            )
        }
        None => None,
    };
    eprintln!("Chrome alone (two connections in one page) …");
    let chrome = tokio::task::spawn_blocking(move || {
        Ok::<_, String>((
            chrome_alone(rounds, pings, mdns, true)?,
            chrome_alone(rounds, pings, mdns, false)?,
        ))
    })
    .await
    .map_err(|e| e.to_string())??;
    eprintln!("browser ↔ browser …");
    let url3 = url.clone();
    let browser_browser =
        tokio::task::spawn_blocking(move || browser_browser(&url3, rounds, pings, trace, mdns))
            .await
            .map_err(|e| e.to_string())??;
    let heals = match args.wasm_peer.clone() {
        Some(pkg) if !args.heal_cuts.is_empty() => {
            eprintln!("heal: the SDK in the browser ↔ native, the path cut and restored …");
            let (url2, cuts) = (url.clone(), args.heal_cuts.clone());
            let rates: Vec<Duration> = (args.heal_state_every_ms.iter())
                .map(|&ms| Duration::from_millis(ms))
                .collect();
            tokio::task::spawn_blocking(move || heals(&url2, pkg, &cuts, &rates))
                .await
                .map_err(|e| e.to_string())??
        }
        _ => Vec::new(),
    };
    let report = json!({
        "native_native": native,
        "browser_native": page_native,
        "browser_browser": browser_browser,
        "sdk_browser_native": sdk_native,
        "chrome_alone": chrome.0,
        "chrome_alone_data_only": chrome.1,
        "heal": heals,
    });
    println!("{report}");
    let mut table = table(
        &native,
        &page_native,
        &browser_browser,
        sdk_native.as_ref(),
        (&chrome.0, &chrome.1),
    );
    table.push_str(&heal_table(&heals));
    eprintln!("{table}");
    if let Some(path) = &args.write_docs {
        update_docs_section(path, "browser", &table).map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn session(url: &str, lobby: LobbyRef) -> Result<Session, String> {
    let mut b = Session::builder(url)
        .bind(([127, 0, 0, 1], 0).into())
        .join(lobby);
    for k in KINDS {
        b = b.channel(k);
    }
    b.start_async().await.map_err(|e| e.to_string())
}

/// Waits (bounded) until `s` reports a peer connected; returns it.
fn connected(s: &Session) -> Result<PeerId, String> {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        for e in s.poll_events() {
            if let Event::PeerConnected { peer, .. } = e {
                return Ok(peer);
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Err(format!("no peer connected within {WAIT:?}"))
}

async fn native_native(url: &str, args: &Args) -> Result<Pairing, String> {
    let mut out = Pairing::default();
    for round in 0..args.rounds {
        let a = session(url, LobbyRef::create(2)).await?;
        let code = a.lobby().map(|l| l.code).ok_or("no lobby code")?;
        let t0 = Instant::now();
        let b = session(url, LobbyRef::Code(code)).await?;
        let a_peer = tokio::task::block_in_place(|| {
            let a_peer = connected(&a)?;
            connected(&b)?;
            Ok::<_, String>(a_peer)
        })?;
        out.connect_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        if round + 1 == args.rounds {
            let (samples, lost) = tokio::task::block_in_place(|| {
                let stop = std::sync::atomic::AtomicBool::new(false);
                std::thread::scope(|scope| {
                    scope.spawn(|| echo(&b, &stop));
                    let measured = native_rtt(&a, a_peer, args.pings);
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    measured
                })
            });
            out.rtt_us = Some(Percentiles::of_nanos(&samples));
            out.lost_pings = lost;
        }
    }
    Ok(out)
}

/// Sends back whatever arrives on the unreliable channel until `stop`.
fn echo(s: &Session, stop: &std::sync::atomic::AtomicBool) {
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let mut any = false;
        for (from, m) in s.receive(UNRELIABLE) {
            let _ = s.send(from, UNRELIABLE, &m);
            any = true;
        }
        if !any {
            std::hint::spin_loop();
        }
    }
}

/// `pings` sequential 64-byte round trips from `s` to `peer`, which echoes; (samples in
/// ns, lost).
fn native_rtt(s: &Session, peer: PeerId, pings: usize) -> (Vec<u64>, usize) {
    let ping = [7u8; 64];
    let (mut samples, mut lost) = (Vec::with_capacity(pings), 0);
    for _ in 0..pings {
        let t0 = Instant::now();
        if s.send(peer, UNRELIABLE, &ping).is_err() {
            lost += 1;
            continue;
        }
        let deadline = t0 + Duration::from_secs(1);
        loop {
            if s.receive(UNRELIABLE).next().is_some() {
                samples.push(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX));
                break;
            }
            if Instant::now() > deadline {
                lost += 1;
                break;
            }
            std::hint::spin_loop();
        }
    }
    (samples, lost)
}

impl Pairing {
    /// A page connected (`done`) after a join that began at `t0`: both clocks' connect
    /// times, and the page's timeline when `trace`.
    fn record_page_connect(&mut self, t0: Instant, page: &Browser, done: &Value, trace: bool) {
        self.connect_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        let events = latest_join(page);
        let start = events.first().and_then(|e| field(e, "t").as_f64());
        if let (Some(start), Some(end)) = (start, field(done, "t").as_f64()) {
            self.page_connect_ms.push(end - start);
        }
        if trace {
            print_timeline(events, done);
        }
    }
}

/// The page's events from its latest `joining` on (the page has one connection at a time).
fn latest_join(page: &Browser) -> &[Value] {
    let seen = page.seen();
    let start = seen.iter().rposition(|e| is(e, "joining")).unwrap_or(0);
    seen.get(start..).unwrap_or(&[])
}

/// A page's `events` up to `done` (connected), on its clock.
fn print_timeline(events: &[Value], done: &Value) {
    eprintln!("  page timeline (ms):");
    for e in events {
        if !is(e, "local_candidate") {
            eprintln!(
                "    {:>8} {} {}",
                field(e, "t"),
                field(e, "event"),
                field(e, "state")
            );
        }
        if e == done {
            break;
        }
    }
}

/// A page's round-trip samples (its `samples`, in microseconds) in nanoseconds.
fn page_samples_ns(e: &Value) -> Vec<u64> {
    field(e, "samples")
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_u64)
                .map(|us| us * 1000)
                .collect()
        })
        .unwrap_or_default()
}

/// A field of a page event (`Null` when it has none).
fn field<'a>(e: &'a Value, name: &str) -> &'a Value {
    e.get(name).unwrap_or(&Value::Null)
}

fn is(e: &Value, event: &str) -> bool {
    field(e, "event") == event
}

/// A page's `join`; with `echo`, the page echoes what arrives on channel 0 (the SDK's page
/// peer starts echoing as it joins; the reference peer takes `echo` apart).
fn join_cmd(url: &str, code: Option<&str>, player: &str, echo: bool) -> Value {
    json!({
        "do": "join",
        "url": url,
        "player": player,
        "channels": KINDS.map(|k| k.name()).join(","),
        "media": true,
        "max_members": 2,
        "code": code,
        "echo": echo.then(|| json!({"channel": 0})),
    })
}

/// A page (`options` say which peer it runs) joining native players' lobbies.
fn browser_native(
    url: &str,
    rounds: usize,
    pings: usize,
    trace: bool,
    options: BrowserOptions,
) -> Result<Pairing, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let reference = matches!(options.page, Page::Reference);
    let mut browser = Browser::start(options);
    if reference {
        browser.command(json!({"do": "echo", "on": true}));
    }
    let mut out = Pairing::default();
    for round in 0..rounds {
        let a = rt.block_on(session(url, LobbyRef::create(2)))?;
        let code = a.lobby().map(|l| l.code).ok_or("no lobby code")?;
        let t0 = Instant::now();
        browser.command(join_cmd(
            url,
            Some(&code),
            &format!("browser-{round}"),
            true,
        ));
        let peer = connected(&a)?;
        let done = browser.wait_event("the browser connected", WAIT, |e| is(e, "connected"));
        out.record_page_connect(t0, &browser, &done, trace);
        if round + 1 == rounds {
            let (samples, lost) = native_rtt(&a, peer, pings);
            out.rtt_us = Some(Percentiles::of_nanos(&samples));
            out.lost_pings = lost;
        }
        browser.command(json!({"do": "leave"}));
        browser.wait_event("left", WAIT, |e| is(e, "left"));
        drop(a);
    }
    Ok(out)
}

fn browser_browser(
    url: &str,
    rounds: usize,
    pings: usize,
    trace: bool,
    mdns: bool,
) -> Result<Pairing, String> {
    let options = BrowserOptions {
        mdns,
        ..BrowserOptions::default()
    };
    let mut first = Browser::start(options.clone());
    let mut second = Browser::start(options);
    second.command(json!({"do": "echo", "on": true}));
    let mut out = Pairing::default();
    for round in 0..rounds {
        first.command(join_cmd(url, None, &format!("first-{round}"), true));
        let joined = first.wait_event("a lobby", WAIT, |e| is(e, "joined"));
        let code = field(&joined, "code")
            .as_str()
            .ok_or("no lobby code")?
            .to_string();
        let t0 = Instant::now();
        second.command(join_cmd(url, Some(&code), &format!("second-{round}"), true));
        let to_second = first.wait_event("connected", WAIT, |e| is(e, "connected"));
        let done = second.wait_event("connected", WAIT, |e| is(e, "connected"));
        out.record_page_connect(t0, &second, &done, trace);
        if round + 1 == rounds {
            first.command(
                json!({"do": "rtt", "peer": field(&to_second, "peer"), "channel": 0, "count": pings}),
            );
            let r = first.wait_event("round trips", WAIT * 3, |e| is(e, "rtt"));
            out.rtt_us = Some(Percentiles::of_nanos(&page_samples_ns(&r)));
            out.lost_pings = field(&r, "lost").as_u64().unwrap_or(0) as usize;
        }
        for b in [&mut first, &mut second] {
            b.command(json!({"do": "leave"}));
            b.wait_event("left", WAIT, |e| is(e, "left"));
        }
    }
    Ok(out)
}

/// Chrome alone: `rounds` connects between two connections in one page and `pings` round
/// trips over the last, on the page's clock (`floor` in `testkit/web/peer.js`); with
/// `media`, they negotiate the audio and video m-lines the other rows do.
fn chrome_alone(rounds: usize, pings: usize, mdns: bool, media: bool) -> Result<Floor, String> {
    let mut browser = Browser::start(BrowserOptions {
        mdns,
        ..BrowserOptions::default()
    });
    browser.command(json!({"do": "floor", "connects": rounds, "pings": pings, "media": media}));
    let r = browser.wait_event("Chrome alone", WAIT * 3, |e| is(e, "floor"));
    let fine_page_clock = field(&r, "isolated") == &Value::Bool(true);
    if !fine_page_clock {
        eprintln!("  (the page is not cross-origin isolated: its clock is coarsened to 100 µs)");
    }
    let list = |name: &str| -> Vec<f64> {
        field(&r, name)
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    let connect_ms = list("connect_ms");
    if connect_ms.len() != rounds {
        return Err(format!(
            "Chrome alone: {} of {rounds} connects reported",
            connect_ms.len()
        ));
    }
    Ok(Floor {
        pairing: Pairing {
            connect_ms: connect_ms.clone(),
            page_connect_ms: connect_ms,
            rtt_us: Some(Percentiles::of_nanos(&page_samples_ns(&r))),
            lost_pings: field(&r, "lost").as_u64().unwrap_or(0) as usize,
        },
        offer_side_ms: list("offer_side_ms"),
        answer_side_ms: list("answer_side_ms"),
        fine_page_clock,
    })
}

/// One heal between the SDK in the page and a native peer (times from the restore, ms).
#[derive(Serialize, Debug)]
struct Heal {
    cut_s: f64,
    /// How often both sides sent their state, ms.
    state_every_ms: f64,
    /// The page offered (so it restarts ICE); else the native side did.
    page_offers: bool,
    state_to_native_ms: Option<f64>,
    state_to_page_ms: Option<f64>,
    reliable_to_native_ms: Option<f64>,
    reliable_to_page_ms: Option<f64>,
    /// ICE restarts by the offering side.
    ice_restarts: u64,
    /// Either side lost the other (it should not: the cut is shorter than its patience).
    disconnected: bool,
}

/// A heal for every state rate in `rates` and cut in `cuts`, the page offering and then
/// the native side.
fn heals(url: &str, pkg: PathBuf, cuts: &[f64], rates: &[Duration]) -> Result<Vec<Heal>, String> {
    let mut out = Vec::new();
    for &every in rates {
        for &cut in cuts {
            for page_offers in [true, false] {
                let cut = Duration::from_secs_f64(cut);
                let heal = heal(url, pkg.clone(), (cut, every), page_offers)?;
                eprintln!("  {heal:?}");
                out.push(heal);
            }
        }
    }
    Ok(out)
}

/// A heal (see the header): a fresh page and native session, connected, cut for `cut`,
/// both sending state `every`.
fn heal(
    url: &str,
    pkg: PathBuf,
    (cut, every): (Duration, Duration),
    page_offers: bool,
) -> Result<Heal, String> {
    const RELIABLE: Channel = Channel(1);
    // The same size as the page's state (`send` with size 8).
    const STATE: [u8; 8] = [7; 8];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut browser = Browser::start(BrowserOptions {
        page: Page::Wasm(pkg),
        ..BrowserOptions::default()
    });
    // The page reports what arrives (no echo).
    let join = |code: Option<&str>| join_cmd(url, code, "healing", false);
    let native = if page_offers {
        let native = rt.block_on(session(url, LobbyRef::create(2)))?;
        let code = native.lobby().map(|l| l.code).ok_or("no lobby code")?;
        browser.command(join(Some(&code)));
        native
    } else {
        browser.command(join(None));
        let joined = browser.wait_event("a lobby", WAIT, |e| is(e, "joined"));
        let code = field(&joined, "code").as_str().ok_or("no lobby code")?;
        rt.block_on(session(url, LobbyRef::Code(code.to_string())))?
    };
    let page = connected(&native)?;
    browser.wait_event("the page connected", WAIT, |e| is(e, "connected"));
    let send_from_page = |browser: &Browser, channel: usize, size: usize| {
        browser.command(
            json!({"do": "send", "peer": -1, "channel": channel, "size": size, "seed": 3}),
        );
    };

    native.set_simulated_loss(1.0);
    native
        .send(page, RELIABLE, b"sent into the cut")
        .map_err(|e| e.to_string())?;
    send_from_page(&browser, 1, 100);
    let cut_at = Instant::now();
    while cut_at.elapsed() < cut {
        let _ = native.send(page, UNRELIABLE, &STATE);
        send_from_page(&browser, 0, 8);
        std::thread::sleep(every);
    }
    // What crossed before the cut took hold is not a heal.
    let _ = native.receive(UNRELIABLE).count();
    let _ = browser.try_wait_event(Duration::from_millis(50), &mut |_| false);
    let page_seen = browser.seen().len();

    native.set_simulated_loss(0.0);
    let healed = Instant::now();
    let ms = |at: Instant| at.duration_since(healed).as_secs_f64() * 1e3;
    let (mut to_native, mut to_page, mut rel_native, mut rel_page) = (None, None, None, None);
    let mut next_send = healed;
    let mut disconnected = false;
    while [to_native, to_page, rel_native, rel_page].contains(&None) && healed.elapsed() < WAIT {
        let now = Instant::now();
        if now >= next_send {
            let _ = native.send(page, UNRELIABLE, &STATE);
            send_from_page(&browser, 0, 8);
            next_send = now + every;
        }
        // A `peer_left` goes by into `seen`, looked at after the loop.
        while let Some(e) =
            browser.try_wait_event(Duration::from_millis(1), &mut |e| is(e, "message"))
        {
            let at = Some(ms(Instant::now()));
            match field(&e, "channel").as_u64() {
                Some(0) => to_page = to_page.or(at),
                Some(1) => rel_page = rel_page.or(at),
                _ => {}
            }
        }
        let at = Some(ms(Instant::now()));
        if native.receive(UNRELIABLE).count() > 0 {
            to_native = to_native.or(at);
        }
        if native.receive(RELIABLE).count() > 0 {
            rel_native = rel_native.or(at);
        }
        disconnected |= native
            .poll_events()
            .any(|e| matches!(e, Event::PeerDisconnected { .. }));
    }
    let ice_restarts = if page_offers {
        browser.command(json!({"do": "stats", "peer": native.id().map_or(0, |p| p.0)}));
        let stats = browser.wait_event("stats", WAIT, |e| is(e, "stats"));
        field(field(&stats, "stats"), "ice_restarts")
            .as_u64()
            .unwrap_or(0)
    } else {
        native.stats(page).map_or(0, |s| s.ice_restarts)
    };
    disconnected |= browser
        .seen()
        .get(page_seen..)
        .is_some_and(|seen| seen.iter().any(|e| is(e, "peer_left")));
    Ok(Heal {
        cut_s: cut.as_secs_f64(),
        state_every_ms: every.as_secs_f64() * 1e3,
        page_offers,
        state_to_native_ms: to_native,
        state_to_page_ms: to_page,
        reliable_to_native_ms: rel_native,
        reliable_to_page_ms: rel_page,
        ice_restarts,
        disconnected,
    })
}

/// The heals as a Markdown table (empty without any).
fn heal_table(heals: &[Heal]) -> String {
    if heals.is_empty() {
        return String::new();
    }
    let cell =
        |v: Option<f64>| v.map_or("none in 20 s".to_string(), |ms| format!("{:.2}", ms / 1e3));
    let mut t = String::from(
        "\nHeal between the SDK in the browser and a native peer (`--heal-cuts`): every datagram between them dropped for the cut while both send 8-byte state at the rate in the table and one reliable message each, then restored; seconds from the restore to the first state and to the reliable message, each way:\n\n| cut | state every | offerer | state → native | state → page | reliable → native | reliable → page | ICE restarts | lost the peer |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for h in heals {
        t.push_str(&format!(
            "| {:.0} s | {:.0} ms | {} | {} | {} | {} | {} | {} | {} |\n",
            h.cut_s,
            h.state_every_ms,
            if h.page_offers { "page" } else { "native" },
            cell(h.state_to_native_ms),
            cell(h.state_to_page_ms),
            cell(h.reliable_to_native_ms),
            cell(h.reliable_to_page_ms),
            h.ice_restarts,
            if h.disconnected { "yes" } else { "no" },
        ));
    }
    t
}

fn p(v: &[f64], q: f64) -> f64 {
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, q).unwrap_or(f64::NAN)
}

fn table(
    native: &Pairing,
    bn: &Pairing,
    bb: &Pairing,
    sdk: Option<&Pairing>,
    (floor, data_only): (&Floor, &Floor),
) -> String {
    let chrome = &floor.pairing;
    // A page's own clock where there is one (see the header).
    let connect_of = |x: &Pairing| {
        if x.page_connect_ms.is_empty() {
            x.connect_ms.clone()
        } else {
            x.page_connect_ms.clone()
        }
    };
    let base_connect = median(&connect_of(native)).unwrap_or(f64::NAN);
    let base_rtt = native.rtt_us.as_ref().map_or(f64::NAN, |r| r.p50_us);
    let row = |name: &str, x: &Pairing| {
        let connects = connect_of(x);
        let connect = median(&connects).unwrap_or(f64::NAN);
        let rtt = x.rtt_us.as_ref().map_or(f64::NAN, |r| r.p50_us);
        let rtt99 = x.rtt_us.as_ref().map_or(f64::NAN, |r| r.p99_us);
        format!(
            "| {name} | {connect:.1} | {:.1} | {:.2}× | {rtt:.0} | {rtt99:.0} | {:.2}× | {} |\n",
            p(&connects, 1.0),
            connect / base_connect,
            rtt / base_rtt,
            x.lost_pings,
        )
    };
    let mut t = String::from(
        "| pairing | connect p50 (ms) | connect worst (ms) | connect vs native | RTT p50 (µs) | RTT p99 (µs) | RTT vs native | pings lost |\n|---|---|---|---|---|---|---|---|\n",
    );
    t.push_str(&row("native ↔ native", native));
    t.push_str(&row("browser ↔ native", bn));
    t.push_str(&row("browser ↔ browser", bb));
    if let Some(sdk) = sdk {
        t.push_str(&row("Squadlink in the browser (wasm32) ↔ native", sdk));
    }
    t.push_str(&row(
        "floor: Chrome alone, two connections in one page (audio, video and data m-lines)",
        chrome,
    ));
    t.push_str(&row(
        "floor: the same, data m-line only",
        &data_only.pairing,
    ));
    t.push_str(&format!(
        "\n{} connects and {} sequential 64-byte round trips per pairing on loopback, one run; the browser is headless Chromium running `testkit/web/peer.js` (the wire contract in plain JavaScript) or, in the wasm32 row, Squadlink itself compiled to wasm32 (`testkit/web-peer`, echoing with its own `recv().await`). Connect: a new session's start, or the joining page's `join` (its own clock), to connected, WebSocket and join included. The floor rows are Chrome with nothing of ours: two `RTCPeerConnection`s in one page handed each other's offer, answer and candidates directly (no matchmaker, no WebSocket), from creating them to both channels open, then round trips between them; the first negotiates the same m-lines as the other rows (whose peers join with media), the second a data channel only. Round trips without a native side are timed by the page ({}).\n",
        native.connect_ms.len(),
        native.rtt_us.as_ref().map_or(0, |r| r.count),
        if floor.fine_page_clock {
            "cross-origin isolated, 5 µs clock"
        } else {
            "100 µs clock"
        },
    ));
    // One browser end's share of the floor (with the m-lines the other rows negotiate):
    // what a browser peer facing a native one cannot get under, beside the native row.
    let offer = median(&floor.offer_side_ms).unwrap_or(f64::NAN);
    let answer = median(&floor.answer_side_ms).unwrap_or(f64::NAN);
    let turnaround = chrome.rtt_us.as_ref().map_or(f64::NAN, |r| r.p50_us) / 2.0;
    t.push_str(&format!(
        "\nOne Chrome end's share of the floor (p50): its own description calls {offer:.1} ms as the offerer, {answer:.1} ms as the answerer ({:.2}× and {:.2}× native's whole connect, before ICE, DTLS and SCTP begin); half the floor's round trip, one Chrome end receiving and sending, {turnaround:.0} µs ({:.2}× native's whole round trip).\n",
        offer / base_connect,
        answer / base_connect,
        turnaround / base_rtt,
    ));
    t
}
