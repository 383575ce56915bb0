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
pub mod browser;
pub mod cluster;
pub mod netlab;
pub mod redis;
pub mod run;

pub use run::{run_json, run_json_env};

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
    /// Where it listens for TLS, if started with [`Coturn::start_tls`].
    pub tls_addr: Option<SocketAddr>,
    dir: PathBuf,
}

/// A self-signed certificate for `ip` (and its key), made with openssl in `dir`:
/// `(cert.pem, key.pem)`.
pub fn self_signed_cert(dir: &std::path::Path, ip: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=squadlink-test-turn"])
        .arg("-addext")
        .arg(format!("subjectAltName=IP:{ip}"))
        // An end-entity certificate (webpki refuses a CA certificate as a server's).
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

impl Coturn {
    /// Starts coturn accepting REST-API credentials signed with any of `secrets`.
    /// `--allow-loopback-peers` is set because the tests' peers live on loopback; never
    /// ship that flag.
    pub fn start(secrets: &[&str]) -> Coturn {
        Self::launch(secrets, false)
    }

    /// Like [`Coturn::start`], plus a TLS listener with a self-signed certificate for
    /// 127.0.0.1 (see [`Coturn::cert_pem`]).
    pub fn start_tls(secrets: &[&str]) -> Coturn {
        Self::launch(secrets, true)
    }

    fn launch(secrets: &[&str], tls: bool) -> Coturn {
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
        let mut tls_addr = None;
        if tls {
            let (cert, key) = self_signed_cert(&dir, "127.0.0.1");
            let tls_port = free_port();
            cmd.arg(format!("--tls-listening-port={tls_port}"))
                .arg(format!("--cert={}", cert.display()))
                .arg(format!("--pkey={}", key.display()));
            tls_addr = Some(SocketAddr::from(([127, 0, 0, 1], tls_port)));
        } else {
            cmd.arg("--no-tls");
        }
        let log = std::fs::File::create(dir.join("coturn.log")).expect("log file");
        cmd.stdout(Stdio::from(log.try_clone().expect("log fd")))
            .stderr(Stdio::from(log));
        let child = cmd.spawn().expect("turnserver starts");
        let coturn = Coturn {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            tls_addr,
            dir,
        };
        coturn.wait_ready();
        coturn
    }

    /// `turn:127.0.0.1:PORT?transport=udp`
    pub fn turn_url(&self) -> String {
        format!("turn:{}?transport=udp", self.addr)
    }

    /// `turn:127.0.0.1:PORT?transport=tcp`
    pub fn turn_tcp_url(&self) -> String {
        format!("turn:{}?transport=tcp", self.addr)
    }

    /// `turns:127.0.0.1:PORT?transport=tcp` (started with [`Coturn::start_tls`]).
    pub fn turns_url(&self) -> String {
        format!(
            "turns:{}?transport=tcp",
            self.tls_addr.expect("coturn was started without TLS")
        )
    }

    /// The TLS certificate (PEM), for `SessionBuilder::tls_root_certificates`.
    pub fn cert_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("cert.pem")).expect("coturn was started with TLS")
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
