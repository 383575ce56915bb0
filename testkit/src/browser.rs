//! A real browser peer for tests: headless Chromium (Debian's `chromium`) running
//! `testkit/web/peer.js`, a Squadlink peer written from `docs/wire.md` with nothing but the
//! browser's own `WebSocket` and `RTCPeerConnection`.
//!
//! The test talks to the page through a small HTTP server on loopback that this rig runs:
//! the page long-polls `GET /poll` for commands ([`Browser::command`]) and posts what happens
//! to `POST /event` ([`Browser::wait_event`]). Chromium's console goes to its log
//! ([`Browser::log`]), which a failing test prints. Every response carries COOP and COEP
//! headers, so the page is cross-origin isolated and `performance.now()` is not coarsened
//! to 100 µs (the pages' round-trip timings).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

const PAGE: &str = include_str!("../web/peer.html");
const SCRIPT: &str = include_str!("../web/peer.js");
const RIG: &str = include_str!("../web/rig.js");
const WASM_PAGE: &str = include_str!("../web/wasm.html");
const WASM_SCRIPT: &str = include_str!("../web/wasm-peer.js");

/// Which peer the page runs.
#[derive(Clone, Debug, Default)]
pub enum Page {
    /// The JavaScript reference peer written from `docs/wire.md` (`web/peer.js`).
    #[default]
    Reference,
    /// The Squadlink SDK compiled to wasm32 (`web/wasm-peer.js` driving `testkit/web-peer`),
    /// from the wasm-bindgen output in this folder (`scripts/web.sh peer` builds it).
    Wasm(PathBuf),
}

/// How long the page's long poll waits for a command before asking again.
const POLL_WAIT: Duration = Duration::from_secs(5);

/// Options for the browser.
#[derive(Clone, Debug)]
pub struct BrowserOptions {
    /// Chrome hides its host addresses behind mDNS names (`….local`), which peers on
    /// loopback cannot resolve: its checks reach them from 127.0.0.1 and the path is found
    /// peer-reflexive. `true` (the default) keeps that. `false` makes Chrome announce its
    /// interface addresses (it gathers none on loopback), and the native side then sends
    /// checks to this machine's own interface addresses too.
    pub mdns: bool,
    /// Extra Chromium switches (fake media devices, say).
    pub flags: Vec<String>,
    /// The peer the page runs.
    pub page: Page,
    /// Let Chromium throttle the page as it does any page nobody looks at (timers at most
    /// once a second when hidden: see [`Browser::hide`]). Off by default: the tests' pages
    /// run at full rate.
    pub throttled: bool,
}

impl Default for BrowserOptions {
    fn default() -> Self {
        Self {
            mdns: true,
            flags: Vec::new(),
            page: Page::Reference,
            throttled: false,
        }
    }
}

#[derive(Default)]
struct Mailbox {
    commands: VecDeque<Value>,
    events: VecDeque<Value>,
}

struct Shared {
    /// The wasm-bindgen output served under `/pkg/` (the wasm page).
    pkg: Option<PathBuf>,
    mailbox: Mutex<Mailbox>,
    changed: Condvar,
    stop: AtomicBool,
}

/// Headless Chromium with the test peer page open; killed on drop.
pub struct Browser {
    child: Child,
    shared: Arc<Shared>,
    dir: PathBuf,
    port: u16,
    /// Every event taken so far, for the failure message.
    seen: Vec<Value>,
}

impl Browser {
    /// Serves the peer page and opens it in headless Chromium.
    pub fn start(options: BrowserOptions) -> Browser {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the page server");
        let port = listener.local_addr().expect("local addr").port();
        let pkg = match &options.page {
            Page::Reference => None,
            Page::Wasm(dir) => Some(dir.clone()),
        };
        let page = if pkg.is_some() {
            "wasm.html"
        } else {
            "peer.html"
        };
        let shared = Arc::new(Shared {
            pkg,
            mailbox: Mutex::new(Mailbox::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let server = shared.clone();
        std::thread::Builder::new()
            .name("browser-page-server".into())
            .spawn(move || serve(listener, server))
            .expect("page server thread");

        let mut tag = [0u8; 8];
        getrandom::fill(&mut tag).expect("random");
        let dir = std::env::temp_dir().join(format!(
            "squadlink-chromium-{}",
            tag.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ));
        std::fs::create_dir_all(&dir).expect("browser profile dir");
        let log = std::fs::File::create(dir.join("chromium.log")).expect("browser log");
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            // DevTools on a free port (Browser::hide opens a tab in front of the page).
            "--remote-debugging-port=0",
            // Peer connections on loopback only (the tests never use another address).
            "--allow-loopback-in-peer-connection",
            "--enable-logging=stderr",
            "--v=0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if !options.throttled {
            // Keep timers running at full rate in a page nobody looks at.
            args.push("--disable-background-timer-throttling".into());
            args.push("--disable-renderer-backgrounding".into());
        }
        if !options.mdns {
            args.push("--disable-features=WebRtcHideLocalIpsWithMdns".into());
        }
        args.extend(options.flags.iter().cloned());
        args.push(format!("--user-data-dir={}", dir.join("profile").display()));
        args.push(format!("http://127.0.0.1:{port}/{page}"));
        let child = Command::new("chromium")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start chromium (scripts/setup.sh test installs Debian's chromium)");
        let mut browser = Browser {
            child,
            shared,
            dir,
            port,
            seen: Vec::new(),
        };
        browser.wait_event("page loaded", Duration::from_secs(30), |e| {
            e["event"] == "ready"
        });
        browser
    }

    /// Where the page is served.
    pub fn page_url(&self) -> String {
        let page = if self.shared.pkg.is_some() {
            "wasm.html"
        } else {
            "peer.html"
        };
        format!("http://127.0.0.1:{}/{page}", self.port)
    }

    /// Hands the page a command (see `peer.js` for the list).
    pub fn command(&self, command: Value) {
        let mut mailbox = self.shared.mailbox.lock().expect("mailbox");
        mailbox.commands.push_back(command);
        self.shared.changed.notify_all();
    }

    /// The next event `pick` accepts, waiting at most `timeout`; the events before it are
    /// dropped (but kept for the failure message). Panics with the events seen and the
    /// browser's log when none comes, or when the page reports an exception.
    pub fn wait_event(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pick: impl FnMut(&Value) -> bool,
    ) -> Value {
        match self.try_wait_event(timeout, &mut pick) {
            Some(e) => e,
            None => panic!(
                "the browser did not report {what} within {timeout:?}\nevents seen: {}\nbrowser log (tail):\n{}",
                self.seen
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n  "),
                tail(&self.log(), 60)
            ),
        }
    }

    /// The first event seen so far that `pick` accepts, or else the next one (as
    /// [`Browser::wait_event`]). The page's reports may arrive out of order (each is its
    /// own request), so an event a test waits for may already have gone by.
    pub fn seen_or_wait(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pick: impl FnMut(&Value) -> bool,
    ) -> Value {
        if let Some(e) = self.seen.iter().find(|e| pick(e)) {
            return e.clone();
        }
        self.wait_event(what, timeout, pick)
    }

    /// As [`Browser::wait_event`], but `None` at the timeout.
    pub fn try_wait_event(
        &mut self,
        timeout: Duration,
        pick: &mut impl FnMut(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        let mut mailbox = self.shared.mailbox.lock().expect("mailbox");
        loop {
            while let Some(e) = mailbox.events.pop_front() {
                self.seen.push(e.clone());
                if e["event"] == "exception" {
                    let log = self.log();
                    panic!(
                        "the browser page failed: {e}\nbrowser log (tail):\n{}",
                        tail(&log, 60)
                    );
                }
                if pick(&e) {
                    return Some(e);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            mailbox = self
                .shared
                .changed
                .wait_timeout(mailbox, deadline - now)
                .expect("mailbox")
                .0;
        }
    }

    /// Every event taken so far.
    pub fn seen(&self) -> &[Value] {
        &self.seen
    }

    /// Chromium's log so far (the page's console included).
    /// Hides the page as a player does by switching tabs: a new tab opens in front of it
    /// (through DevTools), so the page's `document.visibilityState` becomes `hidden` (it
    /// reports `visibility` events) and, with [`BrowserOptions::throttled`], Chromium
    /// throttles its timers as in any background tab.
    pub fn hide(&self) {
        let log = self.log();
        let devtools = log
            .lines()
            .find_map(|l| l.trim().strip_prefix("DevTools listening on "))
            .expect("Chromium's DevTools address in its log")
            .to_string();
        let (mut socket, _) = tungstenite::connect(devtools.as_str()).expect("DevTools socket");
        let request = serde_json::json!({
            "id": 1,
            "method": "Target.createTarget",
            "params": {"url": "about:blank", "newWindow": false, "background": false},
        });
        socket
            .send(tungstenite::Message::text(request.to_string()))
            .expect("DevTools request");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let reply = socket.read().expect("DevTools reply");
            let Ok(text) = reply.into_text() else {
                continue;
            };
            let Ok(reply) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            if reply["id"] == 1 {
                assert!(reply.get("result").is_some(), "no new tab: {reply}");
                return;
            }
        }
        panic!("DevTools did not open a tab within 10 s");
    }

    /// Chromium's log (the page's console included).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("chromium.log")).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.changed.notify_all();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The last `lines` lines of Chromium's log that say something about the page (its
/// complaints about the missing D-Bus are left out).
/// The samples of a page's `recorded` event (16-bit PCM, base64, mono) as f32, and their
/// rate.
pub fn recorded_pcm(event: &Value) -> (Vec<f32>, u32) {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(event["pcm"].as_str().expect("a recording"))
        .expect("base64 PCM");
    let samples = bytes
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect();
    let rate = event["rate"].as_u64().expect("a rate") as u32;
    (samples, rate)
}

/// The bytes of an event's base64 field `key` (a picture's `rgba`, for one).
pub fn base64_field(event: &Value, key: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(event[key].as_str().expect("a base64 field"))
        .expect("base64")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("dbus") && !l.contains("D-Bus") && !l.contains("bluez"))
        .collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A file of the wasm-bindgen output (`/pkg/<name>`, no subfolders), with its type.
fn package_file(shared: &Shared, path: &str) -> Option<(&'static str, &'static str, Vec<u8>)> {
    let name = path.strip_prefix("/pkg/")?;
    if name.contains('/') || name.contains("..") {
        return None;
    }
    let bytes = std::fs::read(shared.pkg.as_ref()?.join(name)).ok()?;
    let kind = if name.ends_with(".wasm") {
        "application/wasm"
    } else {
        "text/javascript"
    };
    Some(("200 OK", kind, bytes))
}

fn serve(listener: TcpListener, shared: Arc<Shared>) {
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    while !shared.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let shared = shared.clone();
                let _ = std::thread::Builder::new()
                    .name("browser-page-request".into())
                    .spawn(move || {
                        let _ = handle(stream, &shared);
                    });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn handle(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, kind, reply): (&str, &str, Vec<u8>) = match (method, path) {
        ("GET", "/peer.html") => ("200 OK", "text/html", PAGE.as_bytes().to_vec()),
        ("GET", "/peer.js") => ("200 OK", "text/javascript", SCRIPT.as_bytes().to_vec()),
        ("GET", "/rig.js") => ("200 OK", "text/javascript", RIG.as_bytes().to_vec()),
        ("GET", "/wasm.html") => ("200 OK", "text/html", WASM_PAGE.as_bytes().to_vec()),
        ("GET", "/wasm-peer.js") => ("200 OK", "text/javascript", WASM_SCRIPT.as_bytes().to_vec()),
        ("GET", file) if file.starts_with("/pkg/") => match package_file(shared, file) {
            Some(reply) => reply,
            None => ("404 Not Found", "text/plain", b"not found".to_vec()),
        },
        ("GET", "/poll") => {
            let deadline = Instant::now() + POLL_WAIT;
            let mut mailbox = shared.mailbox.lock().expect("mailbox");
            while mailbox.commands.is_empty()
                && Instant::now() < deadline
                && !shared.stop.load(Ordering::Relaxed)
            {
                mailbox = shared
                    .changed
                    .wait_timeout(mailbox, deadline.saturating_duration_since(Instant::now()))
                    .expect("mailbox")
                    .0;
            }
            let commands: Vec<Value> = mailbox.commands.drain(..).collect();
            (
                "200 OK",
                "application/json",
                Value::Array(commands).to_string().into_bytes(),
            )
        }
        ("POST", "/event") => {
            let event: Value = serde_json::from_slice(&body).unwrap_or_else(
                |e| serde_json::json!({"event": "bad_event", "error": e.to_string()}),
            );
            let mut mailbox = shared.mailbox.lock().expect("mailbox");
            mailbox.events.push_back(event);
            shared.changed.notify_all();
            ("204 No Content", "text/plain", Vec::new())
        }
        _ => ("404 Not Found", "text/plain", b"not found".to_vec()),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nCross-Origin-Opener-Policy: same-origin\r\nCross-Origin-Embedder-Policy: require-corp\r\nConnection: close\r\n\r\n",
        reply.len()
    )?;
    stream.write_all(&reply)?;
    stream.flush()
}
