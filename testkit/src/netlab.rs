//! A NAT lab in network namespaces: a "public" segment with the matchmaker and coturn (two
//! addresses, so it also answers RFC 5780 NAT-discovery tests), and sites behind NAT routers
//! made with iptables. Everything lives in namespaces this lab creates and deletes; nothing
//! touches the machine's own network. Needs root, `ip` (iproute2), `iptables` and coturn.
//!
//! ```text
//!  public ns:  br0 203.0.113.1 (matchmaker :7878, coturn :3478/:5349) + 203.0.113.2 (coturn)
//!     │ veth
//!  router ns:  wan 203.0.113.(10+i)  ── NAT rules ──  lan 10.i.0.1 (a bridge)
//!     │ veth
//!  player ns:  eth0 10.i.0.(2+j), default route via 10.i.0.1
//! ```

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The kinds of network a site can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// Endpoint-independent mapping, address-and-port-dependent filtering (Linux
    /// MASQUERADE keeps the source port): a "port-restricted cone", the common home router.
    Cone,
    /// Endpoint-independent mapping and filtering ("full cone"): MASQUERADE plus a DNAT of
    /// every inbound UDP port to the player.
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering ("restricted cone"):
    /// inbound UDP from any port of an IP the player has sent to is let in (iptables
    /// `recent` remembers the IPs; a DNAT forwards).
    RestrictedCone,
    /// A new random port per destination (MASQUERADE --random-fully): "symmetric", as on
    /// corporate networks and some mobile carriers.
    Symmetric,
    /// All outbound UDP dropped; TCP allowed (MASQUERADE).
    UdpBlocked,
    /// UDP dropped and TCP allowed only to the matchmaker and to TLS port 5349: TURN over
    /// TLS is the only way out.
    TlsOnly,
}

impl Nat {
    /// Every kind, in table order.
    pub const ALL: [Nat; 6] = [
        Nat::Cone,
        Nat::FullCone,
        Nat::RestrictedCone,
        Nat::Symmetric,
        Nat::UdpBlocked,
        Nat::TlsOnly,
    ];

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Nat::Cone => "cone",
            Nat::FullCone => "full-cone",
            Nat::RestrictedCone => "restricted-cone",
            Nat::Symmetric => "symmetric",
            Nat::UdpBlocked => "udp-blocked",
            Nat::TlsOnly => "tls-only",
        }
    }
}

/// The primary public address (matchmaker, coturn, STUN).
pub const SERVER_IP: &str = "203.0.113.1";
/// coturn's second address (RFC 5780 CHANGE-REQUEST answers come from here).
pub const ALT_IP: &str = "203.0.113.2";
/// The matchmaker's port.
pub const MATCHMAKER_PORT: u16 = 7878;
/// The TURN shared secret in the lab.
pub const TURN_SECRET: &str = "lab-secret";

/// One player host in a site.
#[derive(Debug, Clone)]
pub struct Player {
    /// Its network namespace.
    pub ns: String,
    /// Its private address.
    pub ip: String,
    /// The site's kind.
    pub nat: Nat,
    /// The router's namespace.
    pub router: String,
}

/// The lab; dropping it stops its servers and deletes its namespaces.
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    dir: PathBuf,
    sites: usize,
    runs: std::cell::Cell<u32>,
}

/// Runs a command line (words split on whitespace; none of ours contain spaces); the
/// error says which command failed and why.
fn run(line: &str) -> Result<(), String> {
    let args: Vec<&str> = line.split_whitespace().collect();
    sh(&args)
}

/// Runs `ip`/`iptables`/`sysctl` style commands; the error says which failed and why.
fn sh(args: &[&str]) -> Result<(), String> {
    let (program, rest) = args.split_first().ok_or("empty command")?;
    let out = Command::new(program)
        .args(rest)
        .output()
        .map_err(|e| format!("{program} not runnable ({e}): run scripts/setup.sh"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Lab {
    /// Builds the public segment and starts coturn and the matchmaker (`matchmaker` is the
    /// `squadlink-matchmaker` binary) in it.
    pub fn new(matchmaker: &Path) -> Result<Lab, String> {
        if !matchmaker.exists() {
            return Err(format!(
                "{} not found: build it with `cargo build -p squadlink-matchmaker`",
                matchmaker.display()
            ));
        }
        static LABS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = LABS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let prefix = format!("sl{}{n}", std::process::id() % 100_000);
        let dir = std::env::temp_dir().join(format!("{prefix}-natlab"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("temp dir: {e}"))?;
        let mut lab = Lab {
            prefix,
            namespaces: Vec::new(),
            children: Vec::new(),
            dir,
            sites: 0,
            runs: std::cell::Cell::new(0),
        };
        lab.build_public()?;
        lab.start_servers(matchmaker)?;
        Ok(lab)
    }

    /// The public namespace.
    pub fn public_ns(&self) -> String {
        format!("{}-pub", self.prefix)
    }

    /// `ws://203.0.113.1:7878/v1`
    pub fn matchmaker_url(&self) -> String {
        format!("ws://{SERVER_IP}:{MATCHMAKER_PORT}/v1")
    }

    /// coturn's STUN address for NAT discovery.
    pub fn stun_addr(&self) -> String {
        format!("{SERVER_IP}:3478")
    }

    /// The PEM file of coturn's self-signed TLS certificate.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    /// Files the lab writes (server logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn add_ns(&mut self, name: &str) -> Result<(), String> {
        run(&format!("ip netns add {name}"))?;
        self.namespaces.push(name.to_string());
        run(&format!("ip -n {name} link set lo up"))
    }

    fn build_public(&mut self) -> Result<(), String> {
        let p = self.public_ns();
        self.add_ns(&p)?;
        run(&format!("ip -n {p} link add br0 type bridge"))?;
        run(&format!("ip -n {p} addr add {SERVER_IP}/24 dev br0"))?;
        run(&format!("ip -n {p} addr add {ALT_IP}/24 dev br0"))?;
        run(&format!("ip -n {p} link set br0 up"))?;
        // A default route into a dead-end link, as the internet has for private addresses:
        // packets to players' host candidates (10.x) vanish instead of failing at once.
        // With no route, coturn's sendto fails (ENETUNREACH) and coturn tears down the
        // whole allocation ("reason: general"): no relayed path could ever connect.
        run(&format!(
            "ip -n {p} link add nowhere type veth peer name nowhere2"
        ))?;
        run(&format!("ip -n {p} link set nowhere up"))?;
        run(&format!("ip -n {p} link set nowhere2 up"))?;
        run(&format!("ip -n {p} route add default dev nowhere"))
    }

    /// Runs `program args` inside namespace `ns`.
    pub fn command(&self, ns: &str, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).arg(program);
        c
    }

    fn start_servers(&mut self, matchmaker: &Path) -> Result<(), String> {
        let public = self.public_ns();
        let (cert, key) = crate::self_signed_cert(&self.dir, SERVER_IP);
        let turnserver = ["/usr/bin/turnserver", "/usr/sbin/turnserver"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or("coturn is not installed: run scripts/setup.sh")?;
        let log = |name: &str| -> Result<(Stdio, Stdio), String> {
            let f = std::fs::File::create(self.dir.join(name)).map_err(|e| e.to_string())?;
            let g = f.try_clone().map_err(|e| e.to_string())?;
            Ok((Stdio::from(f), Stdio::from(g)))
        };
        let (out, err) = log("coturn.log")?;
        let coturn = self
            .command(&public, Path::new(turnserver))
            .args([
                "-n",
                "--no-cli",
                "--no-dtls",
                "--simple-log",
                "--log-file=stdout",
            ])
            .arg(format!("--listening-ip={SERVER_IP}"))
            .arg(format!("--listening-ip={ALT_IP}"))
            .arg(format!("--relay-ip={SERVER_IP}"))
            .args(["--listening-port=3478", "--tls-listening-port=5349"])
            .args(["--use-auth-secret", "--realm=lab.squadlink.test"])
            .arg(format!("--static-auth-secret={TURN_SECRET}"))
            .arg(format!("--cert={}", cert.display()))
            .arg(format!("--pkey={}", key.display()))
            .arg(format!(
                "--pidfile={}",
                self.dir.join("turnserver.pid").display()
            ))
            .arg(format!("--userdb={}", self.dir.join("turndb").display()))
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("coturn did not start: {e}"))?;
        self.children.push(coturn);

        let (out, err) = log("matchmaker.log")?;
        let turn_urls = [
            format!("turn:{SERVER_IP}:3478?transport=udp"),
            format!("turn:{SERVER_IP}:3478?transport=tcp"),
            format!("turns:{SERVER_IP}:5349?transport=tcp"),
        ]
        .join(",");
        let mm = self
            .command(&public, matchmaker)
            .arg("--listen")
            .arg(format!("{SERVER_IP}:{MATCHMAKER_PORT}"))
            .args(["--dev-mode", "on"])
            .arg(format!("--stun-url=stun:{SERVER_IP}:3478"))
            .arg(format!("--turn-url={turn_urls}"))
            .arg(format!("--turn-secret={TURN_SECRET}"))
            .env("RUST_LOG", "info")
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("matchmaker did not start: {e}"))?;
        self.children.push(mm);
        for port in [MATCHMAKER_PORT, 3478, 5349] {
            self.wait_tcp(&public, SERVER_IP, port)?;
        }
        Ok(())
    }

    /// Waits until something listens on `ip:port` in `ns` (bash's /dev/tcp, 10 s at most).
    fn wait_tcp(&self, ns: &str, ip: &str, port: u16) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let ok = Command::new("ip")
                .args(["netns", "exec", ns, "timeout", "1", "bash", "-c"])
                .arg(format!("exec 3<>/dev/tcp/{ip}/{port}"))
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "nothing listens on {ip}:{port} in the lab after 10 s; logs in {}",
            self.dir.display()
        ))
    }

    /// Adds a site of kind `nat` with `players` hosts on one LAN behind one router.
    pub fn add_site(&mut self, nat: Nat, players: usize) -> Result<Vec<Player>, String> {
        self.sites += 1;
        let i = self.sites;
        let r = format!("{}-r{i}", self.prefix);
        self.add_ns(&r)?;
        let public = self.public_ns();
        run(&format!(
            "ip link add wan netns {r} type veth peer name r{i} netns {public}"
        ))?;
        run(&format!("ip -n {public} link set r{i} master br0 up"))?;
        run(&format!(
            "ip -n {r} addr add 203.0.113.{}/24 dev wan",
            10 + i
        ))?;
        run(&format!("ip -n {r} link set wan up"))?;
        run(&format!("ip -n {r} link add lan type bridge"))?;
        run(&format!("ip -n {r} addr add 10.{i}.0.1/24 dev lan"))?;
        run(&format!("ip -n {r} link set lan up"))?;
        run(&format!(
            "ip netns exec {r} sysctl -qw net.ipv4.ip_forward=1"
        ))?;

        let mut out = Vec::new();
        for j in 0..players {
            let ns = format!("{}-p{i}{}", self.prefix, char::from(b'a' + (j % 26) as u8));
            self.add_ns(&ns)?;
            let ip = format!("10.{i}.0.{}", 2 + j);
            run(&format!(
                "ip link add eth0 netns {ns} type veth peer name l{j} netns {r}"
            ))?;
            run(&format!("ip -n {r} link set l{j} master lan up"))?;
            run(&format!("ip -n {ns} addr add {ip}/24 dev eth0"))?;
            run(&format!("ip -n {ns} link set eth0 up"))?;
            run(&format!("ip -n {ns} route add default via 10.{i}.0.1"))?;
            out.push(Player {
                ns,
                ip,
                nat,
                router: r.clone(),
            });
        }

        let ipt = |rule: &str| run(&format!("ip netns exec {r} iptables {rule}"));
        // Like any home router, it answers nothing unsolicited from the internet. This also
        // matters for hole punching: a packet to the router itself that were accepted would
        // leave a conntrack entry on the very port a player's outgoing flow then needs, and
        // MASQUERADE would pick another port (a cone NAT acting symmetric).
        ipt("-A INPUT -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT")?;
        ipt("-A INPUT -i wan -j DROP")?;
        let masquerade = "-t nat -A POSTROUTING -o wan -j MASQUERADE";
        match nat {
            Nat::Cone => ipt(masquerade)?,
            Nat::FullCone => {
                ipt(masquerade)?;
                let first = out.first().ok_or("a full-cone site needs a player")?;
                ipt(&format!(
                    "-t nat -A PREROUTING -i wan -p udp -j DNAT --to-destination {}",
                    first.ip
                ))?;
            }
            Nat::RestrictedCone => {
                ipt(masquerade)?;
                let first = out.first().ok_or("a restricted-cone site needs a player")?;
                ipt("-A FORWARD -i lan -o wan -p udp -m recent --name sent --rdest --set")?;
                ipt(&format!(
                    "-t nat -A PREROUTING -i wan -p udp -m recent --name sent --rsource --rcheck -j DNAT --to-destination {}",
                    first.ip
                ))?;
            }
            Nat::Symmetric => ipt(&format!("{masquerade} --random-fully"))?,
            Nat::UdpBlocked => {
                ipt(masquerade)?;
                ipt("-A FORWARD -i lan -p udp -j DROP")?;
            }
            Nat::TlsOnly => {
                ipt(masquerade)?;
                ipt("-A FORWARD -i lan -p udp -j DROP")?;
                ipt(&format!(
                    "-A FORWARD -i lan -p tcp --dport {MATCHMAKER_PORT} -j ACCEPT"
                ))?;
                ipt("-A FORWARD -i lan -p tcp --dport 5349 -j ACCEPT")?;
                ipt("-A FORWARD -i lan -p tcp -j DROP")?;
            }
        }
        Ok(out)
    }

    /// Drops `probability` (0–1) of the packets the router forwards, each way
    /// (iptables `statistic`; these kernels have no netem).
    pub fn set_loss(&self, player: &Player, probability: f64) -> Result<(), String> {
        let r = &player.router;
        let ipt = |rule: &str| run(&format!("ip netns exec {r} iptables {rule}"));
        if ipt("-F LABLOSS").is_err() {
            ipt("-N LABLOSS")?;
            ipt("-I FORWARD 1 -j LABLOSS")?;
        }
        if probability > 0.0 {
            ipt(&format!(
                "-A LABLOSS -m statistic --mode random --probability {probability:.4} -j DROP"
            ))?;
        }
        Ok(())
    }

    /// Starts counting, in `player`'s namespace, the UDP packets it sends anywhere but to
    /// `allowed` (an IP). Read with [`Lab::udp_leaks`].
    pub fn count_udp_leaks(&self, player: &Player, allowed: &str) -> Result<(), String> {
        run(&format!(
            "ip netns exec {} iptables -A OUTPUT -p udp ! -d {allowed} -m comment --comment lab-leak -j ACCEPT",
            player.ns
        ))
    }

    /// Packets counted by [`Lab::count_udp_leaks`] so far.
    pub fn udp_leaks(&self, player: &Player) -> Result<u64, String> {
        let out = Command::new("ip")
            .args([
                "netns", "exec", &player.ns, "iptables", "-L", "OUTPUT", "-v", "-x", "-n",
            ])
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.contains("lab-leak"))
            .ok_or("leak counter not installed")?;
        line.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("cannot read the counter: {line}"))
    }

    /// Gives `player` a new address on its LAN (`10.i.0.HOST`), dropping the old one: a
    /// laptop moving to another access point, a phone getting a new lease. Its open TCP
    /// connections and NAT mappings die with the old address. Returns the moved player.
    pub fn move_player(&self, player: &Player, host: u8) -> Result<Player, String> {
        let ns = &player.ns;
        let (net, _) = player
            .ip
            .rsplit_once('.')
            .ok_or_else(|| format!("odd player address {}", player.ip))?;
        let ip = format!("{net}.{host}");
        // (The old address goes first: removing a primary address takes the secondary
        // ones, and the default route, with it.)
        run(&format!("ip -n {ns} addr del {}/24 dev eth0", player.ip))?;
        run(&format!("ip -n {ns} addr add {ip}/24 dev eth0"))?;
        run(&format!("ip -n {ns} route replace default via {net}.1"))?;
        Ok(Player {
            ip,
            ..player.clone()
        })
    }

    /// Forgets every NAT mapping the routers hold, and whom their players have sent to
    /// (the restricted cone's memory), so runs do not see each other's.
    pub fn flush_conntrack(&self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip")
                .args(["netns", "exec", ns, "conntrack", "-F"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = Command::new("ip")
                .args(["netns", "exec", ns, "sh", "-c"])
                .arg("[ -e /proc/net/xt_recent/sent ] && echo / > /proc/net/xt_recent/sent")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Connects `a` (creates a lobby) and `b` (joins it) with the `nat_check` binary and
    /// returns what each printed. `extra_a` are more arguments for `a` (`--relay-only`).
    pub fn pair(
        &self,
        nat_check: &Path,
        a: &Player,
        b: &Player,
        extra_a: &[&str],
    ) -> Result<PairOutcome, String> {
        self.pair_with(nat_check, (a, extra_a), (b, &[]), None)
    }

    /// Like [`Lab::pair`] with extra arguments for each side; `during` runs once `a` has
    /// exchanged messages with `b` (both then keep going if given `--stay`).
    pub fn pair_with(
        &self,
        nat_check: &Path,
        (a, extra_a): (&Player, &[&str]),
        (b, extra_b): (&Player, &[&str]),
        during: Option<Box<dyn FnOnce() -> Result<(), String> + '_>>,
    ) -> Result<PairOutcome, String> {
        let cert = self.cert_path();
        let runs = self.runs.get() + 1;
        self.runs.set(runs);
        let log_a = self.dir.join(format!("run{runs}-a.log"));
        let log_b = self.dir.join(format!("run{runs}-b.log"));
        let log_to = |path: &Path| -> Result<Stdio, String> {
            std::fs::File::create(path)
                .map(Stdio::from)
                .map_err(|e| format!("{}: {e}", path.display()))
        };
        let common = |c: &mut Command| {
            c.arg("--matchmaker")
                .arg(self.matchmaker_url())
                .arg("--stun")
                .arg(self.stun_addr())
                .arg("--tls-root")
                .arg(&cert)
                .args(["--json", "--timeout", "25"])
                .env(
                    "RUST_LOG",
                    std::env::var("SQUADLINK_LAB_LOG").unwrap_or_else(|_| "squadlink=debug".into()),
                )
                .stdout(Stdio::piped());
        };
        let mut ca = self.command(&a.ns, nat_check);
        common(&mut ca);
        ca.args(["--create", "2"])
            .args(extra_a)
            .stderr(log_to(&log_a)?);
        let mut child_a = ca.spawn().map_err(|e| format!("nat_check: {e}"))?;
        let (tx_a, rx_a) = mpsc::channel();
        spawn_reader(&mut child_a, tx_a);
        let mut lines_a = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let code = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx_a.recv_timeout(left) {
                Ok(v) => {
                    let code = v.get("lobby").and_then(Value::as_str).map(str::to_string);
                    lines_a.push(v);
                    if let Some(code) = code {
                        break code;
                    }
                }
                Err(_) => {
                    let _ = child_a.kill();
                    return Err(format!("{} printed no lobby code: {lines_a:?}", a.ns));
                }
            }
        };
        let mut cb = self.command(&b.ns, nat_check);
        common(&mut cb);
        cb.args(["--join", &code])
            .args(extra_b)
            .stderr(log_to(&log_b)?);
        let mut child_b = cb.spawn().map_err(|e| format!("nat_check: {e}"))?;
        let (tx_b, rx_b) = mpsc::channel();
        spawn_reader(&mut child_b, tx_b);
        if let Some(during) = during {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx_a.recv_timeout(left) {
                    Ok(v) => {
                        let talking = v.get("messages").is_some();
                        lines_a.push(v);
                        if talking {
                            break;
                        }
                    }
                    Err(_) => {
                        let _ = child_a.kill();
                        let _ = child_b.kill();
                        return Err(format!("{} never talked to {}: {lines_a:?}", a.ns, b.ns));
                    }
                }
            }
            during()?;
        }
        let limit = Duration::from_secs(70);
        let status_b = wait_child(&mut child_b, limit);
        let status_a = wait_child(&mut child_a, limit);
        lines_a.extend(rx_a.try_iter());
        let lines_b: Vec<Value> = rx_b.try_iter().collect();
        Ok(PairOutcome {
            a: PeerRun::from_lines(lines_a, status_a, log_tail(&log_a)),
            b: PeerRun::from_lines(lines_b, status_b, log_tail(&log_b)),
        })
    }
}

/// Reads a child's stdout JSON lines into `tx`.
fn spawn_reader(child: &mut Child, tx: mpsc::Sender<Value>) {
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && tx.send(v).is_err()
                {
                    return;
                }
            }
        });
    }
}

/// Waits for a child at most `limit` (then kills it); whether it exited with status 0.
fn wait_child(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            // Let the reader thread drain the last lines.
            std::thread::sleep(Duration::from_millis(50));
            return status.success();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// The last few KB of a log file.
fn log_tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let mut keep = s.len().saturating_sub(6000);
    while !s.is_char_boundary(keep) {
        keep += 1;
    }
    s.get(keep..).unwrap_or_default().to_string()
}

/// What one `nat_check` run printed.
#[derive(Debug, Clone)]
pub struct PeerRun {
    /// Exit status 0.
    pub ok: bool,
    /// The NAT report (`{"mapping":…}` or `{"udp_blocked":true}`).
    pub nat: Option<Value>,
    /// The path to the other peer (`host`, `srflx`, `relay`).
    pub path: Option<String>,
    /// Connect time in ms.
    pub connect_ms: Option<f64>,
    /// How the relay reached its TURN server, if relayed through ours.
    pub relay_transport: Option<String>,
    /// Candidate types the other peer signaled.
    pub remote_candidate_types: Vec<String>,
    /// Every JSON line.
    pub lines: Vec<Value>,
    /// The end of its log.
    pub stderr: String,
}

impl PeerRun {
    fn from_lines(lines: Vec<Value>, ok: bool, stderr: String) -> PeerRun {
        let connected = lines.iter().find(|v| v.get("path").is_some());
        let str_of = |v: Option<&Value>, k: &str| {
            v.and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        PeerRun {
            ok,
            nat: lines.iter().find_map(|v| v.get("nat").cloned()),
            path: str_of(connected, "path"),
            connect_ms: connected
                .and_then(|v| v.get("connect_ms"))
                .and_then(Value::as_f64),
            relay_transport: str_of(connected, "relay_transport"),
            remote_candidate_types: connected
                .and_then(|v| v.get("remote_candidate_types"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            lines,
            stderr,
        }
    }
}

/// Both ends of one pairing.
#[derive(Debug, Clone)]
pub struct PairOutcome {
    /// The creator.
    pub a: PeerRun,
    /// The joiner.
    pub b: PeerRun,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        // Logs stay for a failed test to be looked at.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The cheapest path two sites of these kinds can use (what ICE should choose):
/// `host` on one LAN, `srflx` when a hole can be punched, `relay` otherwise.
pub fn cheapest_path(a: Nat, b: Nat) -> &'static str {
    use Nat::*;
    match (a, b) {
        (UdpBlocked | TlsOnly, _) | (_, UdpBlocked | TlsOnly) => "relay",
        // A full cone accepts the symmetric side's fresh mapping (peer-reflexive), and so
        // does a restricted cone (the new port comes from an IP it has sent to).
        (Symmetric, FullCone | RestrictedCone) | (FullCone | RestrictedCone, Symmetric) => "srflx",
        (Symmetric, _) | (_, Symmetric) => "relay",
        _ => "srflx",
    }
}

/// What `nat_check`'s NAT probe should report for a site of kind `nat`:
/// `(mapping, filtering)`, or `None` where UDP is blocked.
pub fn expected_behaviour(nat: Nat) -> Option<(&'static str, &'static str)> {
    match nat {
        Nat::Cone => Some(("endpoint_independent", "address_and_port_dependent")),
        Nat::FullCone => Some(("endpoint_independent", "endpoint_independent")),
        Nat::RestrictedCone => Some(("endpoint_independent", "address_dependent")),
        Nat::Symmetric => Some(("address_and_port_dependent", "address_and_port_dependent")),
        Nat::UdpBlocked | Nat::TlsOnly => None,
    }
}

/// Every unordered pair of kinds, each once (`a` ≤ `b` in [`Nat::ALL`] order).
pub fn pairs() -> Vec<(Nat, Nat)> {
    let mut out = Vec::new();
    for (i, a) in Nat::ALL.iter().enumerate() {
        for b in Nat::ALL.iter().skip(i) {
            out.push((*a, *b));
        }
    }
    out
}

/// The lab with two one-player sites of every kind (`.0` and `.1` of each entry) and one
/// cone site with two players on the same LAN.
pub struct Matrix {
    /// The lab.
    pub lab: Lab,
    /// Two single-player sites per kind.
    pub sites: Vec<(Nat, Player, Player)>,
    /// Two players behind one cone router.
    pub lan: (Player, Player),
}

impl Matrix {
    /// Builds it.
    pub fn build(matchmaker: &Path) -> Result<Matrix, String> {
        let mut lab = Lab::new(matchmaker)?;
        let mut sites = Vec::new();
        for nat in Nat::ALL {
            let one = lab
                .add_site(nat, 1)?
                .into_iter()
                .next()
                .ok_or("no player")?;
            let two = lab
                .add_site(nat, 1)?
                .into_iter()
                .next()
                .ok_or("no player")?;
            sites.push((nat, one, two));
        }
        let mut lan = lab.add_site(Nat::Cone, 2)?.into_iter();
        let (Some(x), Some(y)) = (lan.next(), lan.next()) else {
            return Err("LAN site without two players".into());
        };
        Ok(Matrix {
            lab,
            sites,
            lan: (x, y),
        })
    }

    /// The two players of kind `nat`.
    pub fn players(&self, nat: Nat) -> Option<(&Player, &Player)> {
        self.sites
            .iter()
            .find(|(n, _, _)| *n == nat)
            .map(|(_, a, b)| (a, b))
    }

    /// Connects a player of kind `a` with one of kind `b` (different sites).
    pub fn run(&self, nat_check: &Path, a: Nat, b: Nat) -> Result<PairOutcome, String> {
        let (pa, _) = self.players(a).ok_or("no such site")?;
        let (_, pb) = self.players(b).ok_or("no such site")?;
        self.lab.flush_conntrack();
        self.lab.pair(nat_check, pa, pb, &[])
    }
}
