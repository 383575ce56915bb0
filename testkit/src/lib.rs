//! Test rigs for Squadlink's tests: real servers started on free loopback ports and stopped
//! when dropped. Test-only; a failure to start panics with what to install.
#![allow(
    clippy::panic,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing
)]

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod audio;

/// A port free on loopback for both UDP and TCP right now.
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
        let port = udp.local_addr().expect("local addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// coturn (Debian's `turnserver`) on loopback with `use-auth-secret`; killed on drop.
pub struct Coturn {
    child: Child,
    /// Where it listens (UDP and TCP).
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Coturn {
    /// Starts coturn accepting REST-API credentials signed with any of `secrets`.
    /// `--allow-loopback-peers` is set because the tests' peers live on loopback; never
    /// ship that flag.
    pub fn start(secrets: &[&str]) -> Coturn {
        let bin = ["/usr/bin/turnserver", "/usr/sbin/turnserver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("coturn is not installed: run scripts/setup.sh (apt-get install coturn)");
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("squadlink-coturn-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut cmd = Command::new(bin);
        cmd.args([
            "-n",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            &format!("--listening-port={port}"),
            "--use-auth-secret",
            "--realm=squadlink.test",
            "--allow-loopback-peers",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--simple-log",
            "--log-file=stdout",
            &format!("--pidfile={}", dir.join("turnserver.pid").display()),
            &format!("--userdb={}", dir.join("turndb").display()),
        ]);
        for s in secrets {
            cmd.arg(format!("--static-auth-secret={s}"));
        }
        let log = std::fs::File::create(dir.join("coturn.log")).expect("log file");
        cmd.stdout(Stdio::from(log.try_clone().expect("log fd")))
            .stderr(Stdio::from(log));
        let child = cmd.spawn().expect("turnserver starts");
        let coturn = Coturn {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        coturn.wait_ready();
        coturn
    }

    /// `turn:127.0.0.1:PORT?transport=udp`
    pub fn turn_url(&self) -> String {
        format!("turn:{}?transport=udp", self.addr)
    }

    /// Waits until coturn answers a STUN Binding request.
    fn wait_ready(&self) {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 512];
        while Instant::now() < deadline {
            let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
            let mut tid = [0u8; 12];
            getrandom::fill(&mut tid).expect("random");
            req.extend_from_slice(&tid);
            sock.send_to(&req, self.addr).expect("send");
            if let Ok((n, _)) = sock.recv_from(&mut buf)
                && n >= 20
                && buf[..2] == [0x01, 0x01]
                && buf[8..20] == tid
            {
                return;
            }
        }
        panic!(
            "coturn did not answer on {} (log: {})",
            self.addr,
            self.log()
        );
    }

    /// coturn's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("coturn.log")).unwrap_or_default()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
