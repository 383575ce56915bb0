//! Matchmaker nodes as real processes (the `squadlink-matchmaker` binary), for tests that
//! kill one (SIGKILL) or stop one with SIGTERM (draining). Killed on drop.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// The `squadlink-matchmaker` binary beside the running test, brought up to date once per
/// test process (`cargo test -p <crate>` alone does not build other crates' binaries, and
/// an old one would test old code).
pub fn matchmaker_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("current exe");
            // target/<profile>/deps/<test> → target/<profile>/squadlink-matchmaker
            let profile_dir = exe
                .parent()
                .and_then(|deps| deps.parent())
                .expect("a test binary lives in target/<profile>/deps");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = Command::new(cargo);
            build.args(["build", "--quiet", "--locked", "-p", "squadlink-matchmaker"]);
            build.args(["--bin", "squadlink-matchmaker"]);
            if profile_dir.file_name().is_some_and(|p| p == "release") {
                build.arg("--release");
            }
            let status = build.status().expect("cargo runs");
            assert!(status.success(), "building squadlink-matchmaker failed");
            profile_dir.join("squadlink-matchmaker")
        })
        .clone()
}

/// One matchmaker node process on a free loopback port.
pub struct NodeProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl NodeProcess {
    /// Starts a node sharing lobbies through `redis_url`, in dev mode, with `extra` flags,
    /// and waits until it answers `/healthz`.
    pub fn start(redis_url: &str, extra: &[&str]) -> NodeProcess {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new(matchmaker_binary())
            .args(["--listen", &addr.to_string(), "--redis-url", redis_url])
            .args(["--dev-mode", "on", "--max-connections", "4096"])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("squadlink-matchmaker starts");
        let node = NodeProcess { child, addr };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if http_get(addr, "/healthz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
                return node;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("matchmaker node on {addr} did not answer /healthz within 15 s");
    }

    /// The WebSocket URL players use.
    pub fn url(&self) -> String {
        format!("ws://{}/v1", self.addr)
    }

    /// SIGKILL: the node vanishes without a word.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: the node drains (a cluster node) and exits; waits up to `within`.
    pub fn terminate(&mut self, within: Duration) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET on loopback: the status line and body, or `None`.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    tcp.read_to_string(&mut out).ok()?;
    Some(out)
}
