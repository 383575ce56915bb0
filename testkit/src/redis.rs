//! Redis (Debian's `redis-server`) on a free loopback port, without persistence; killed on
//! drop. For the matchmaker's cluster tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// A running `redis-server`.
pub struct Redis {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Redis {
    /// Starts `redis-server` on a free loopback port and waits until it answers PING.
    pub fn start() -> Redis {
        Self::start_on(free_port())
    }

    /// Starts `redis-server` on `port` (for restarting one on the same address).
    pub fn start_on(port: u16) -> Redis {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .args(["--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server starts (install it: scripts/setup.sh test)");
        let redis = Redis { child, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if redis.ping() {
                return redis;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on {addr} did not answer PING within 10 s");
    }

    /// The URL the matchmaker takes (`--redis-url`).
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// Whether it answers PING now.
    pub fn ping(&self) -> bool {
        self.command("PING").is_some_and(|r| r.starts_with("+PONG"))
    }

    /// Sends one inline command and returns the first reply line (`None` if unreachable).
    pub fn command(&self, line: &str) -> Option<String> {
        let mut tcp = TcpStream::connect_timeout(&self.addr, Duration::from_millis(500)).ok()?;
        tcp.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        tcp.write_all(format!("{line}\r\n").as_bytes()).ok()?;
        let mut buf = [0u8; 512];
        let n = tcp.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// The server's process id (to read its memory use).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server at once (SIGKILL).
    pub fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.addr.port()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
