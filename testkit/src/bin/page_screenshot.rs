//! Takes a screenshot of a web page after it has run for a while, in headless Chromium with
//! software WebGL2 (SwiftShader), through the DevTools protocol: Chromium's own
//! `--screenshot` captures at load, before a game has connected or drawn anything.
//!
//!   page_screenshot URL OUT.png [--wait SECONDS] [--hold SECONDS] [--size WxH]
//!                   [--chromium-flag FLAG]...
//!
//! `--hold` keeps the page open that long after the screenshot (another player may still
//! be taking its own with this one in it). `--chromium-flag` passes a flag to Chromium
//! (fake media devices, the autoplay policy).
//!
//! Chromium's log (the page's console included) goes to OUT.png's name with `.log`. Used by
//! `scripts/web_arena_screenshot.sh`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

fn main() {
    if let Err(e) = run() {
        eprintln!("page_screenshot: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: page_screenshot URL OUT.png [--wait SECONDS] [--hold SECONDS] [--size WxH] [--chromium-flag FLAG]...";
    let url = args.next().ok_or(usage)?;
    let out = std::path::PathBuf::from(args.next().ok_or(usage)?);
    let (mut wait, mut hold, mut size) = (10.0f64, 0.0f64, "800,600".to_string());
    let mut extra = Vec::new();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(usage)?;
        match flag.as_str() {
            "--wait" => wait = value.parse().map_err(|_| usage)?,
            "--hold" => hold = value.parse().map_err(|_| usage)?,
            "--size" => size = value.replace('x', ","),
            "--chromium-flag" => extra.push(value),
            _ => return Err(usage.into()),
        }
    }
    let profile = std::env::temp_dir().join(format!("squadlink-shot-{}", std::process::id()));
    let log_path = out.with_extension("log");
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-quic",
            // WebGL2 without a GPU: ANGLE on SwiftShader.
            "--use-angle=swiftshader",
            "--enable-unsafe-swiftshader",
            "--allow-loopback-in-peer-connection",
            "--enable-logging=stderr",
            "--v=0",
            "--remote-debugging-port=0",
        ])
        .args(&extra)
        .arg(format!("--window-size={size}"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start chromium (scripts/setup.sh test installs it): {e}"))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let log_file = log_path.clone();
    std::thread::spawn(move || {
        let mut log = std::fs::File::create(&log_file).ok();
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(log) = log.as_mut() {
                let _ = writeln!(log, "{line}");
            }
            if !sent && let Some(ws) = line.split("DevTools listening on ").nth(1) {
                let _ = tx.send(ws.trim().to_string());
                sent = true;
            }
        }
    });
    let result = (|| {
        let browser_ws = rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "chromium did not open its DevTools port within 30 s")?;
        let port = browser_ws
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or(format!("unexpected DevTools address {browser_ws}"))?;
        std::thread::sleep(Duration::from_secs_f64(wait));
        let page_ws = page_socket(port)?;
        let png = capture(&page_ws)?;
        std::fs::write(&out, png).map_err(|e| format!("writing {}: {e}", out.display()))?;
        std::thread::sleep(Duration::from_secs_f64(hold));
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&profile);
    result
}

/// The DevTools WebSocket of the first page target (GET /json/list).
fn page_socket(port: u16) -> Result<String, String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("DevTools port: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET /json/list HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    // The DevTools server keeps the connection open: read the headers, then the body's
    // Content-Length.
    let mut reader = BufReader::new(stream);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader
            .read_line(&mut line)
            .map_err(|e| format!("DevTools list: {e}"))?
            == 0
            || line.trim().is_empty()
        {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    reader
        .read_exact(&mut body)
        .map_err(|e| format!("DevTools list: {e}"))?;
    let body = String::from_utf8_lossy(&body);
    let targets: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    targets
        .as_array()
        .and_then(|t| t.iter().find(|t| t.get("type") == Some(&json!("page"))))
        .and_then(|t| t.get("webSocketDebuggerUrl"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("no page among the DevTools targets: {body}"))
}

/// A PNG of the page, from `Page.captureScreenshot`.
fn capture(page_ws: &str) -> Result<Vec<u8>, String> {
    let (mut socket, _) =
        tungstenite::connect(page_ws).map_err(|e| format!("DevTools socket: {e}"))?;
    let request = json!({"id": 1, "method": "Page.captureScreenshot", "params": {"format": "png"}});
    socket
        .send(tungstenite::Message::text(request.to_string()))
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let msg = socket.read().map_err(|e| format!("DevTools socket: {e}"))?;
        let Ok(text) = msg.into_text() else { continue };
        let Ok(reply) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        if reply.get("id") != Some(&json!(1)) {
            continue;
        }
        let data = reply
            .pointer("/result/data")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("no screenshot: {reply}"))?;
        return base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| e.to_string());
    }
    Err("no screenshot within 30 s".into())
}
