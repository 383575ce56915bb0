//! Squadlink's benchmarks and hardware checks (`src/bin/`), kept apart from `examples/` so
//! that the examples hold only what a game developer copies from. Each binary's header says
//! what it measures and how to run it; `scripts/bench.sh` runs them and records the figures in
//! `docs/performance.md`.
//!
//! This library holds what every benchmark uses: the physical baseline (raw UDP round trip
//! on loopback), percentiles, and recording figures in `docs/performance.md`.

pub mod matchmaker_child;
pub mod relay_load;
pub mod ws_client;

use std::path::Path;
use std::time::{Duration, Instant};

pub use squadlink_examples::init_logging;

/// Summary of a latency sample, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Percentiles {
    /// Number of samples.
    pub count: usize,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest.
    pub max_us: f64,
}

/// The nearest-rank `q` quantile (0–1) of `sorted`, `None` when it is empty.
pub fn percentile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
    sorted.get(i).copied()
}

/// The median of `v` (the upper one of an even count), `None` when it is empty.
pub fn median(v: &[f64]) -> Option<f64> {
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied()
}

impl Percentiles {
    /// Summarizes samples given in nanoseconds (nearest-rank percentiles).
    pub fn of_nanos(samples: &[u64]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let rank = |q: f64| percentile(&sorted, q).unwrap_or(0) as f64 / 1_000.0;
        Self {
            count: sorted.len(),
            p50_us: rank(0.50),
            p99_us: rank(0.99),
            max_us: sorted.last().copied().unwrap_or(0) as f64 / 1_000.0,
        }
    }
}

/// Measures `rounds` sequential UDP round trips between two sockets on 127.0.0.1 through
/// tokio: the floor any networked figure of the same run stands on.
pub async fn udp_loopback_rtt(rounds: usize) -> std::io::Result<Percentiles> {
    let a = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let b = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let b_addr = b.local_addr()?;
    let echo = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        while let Ok(Ok((n, from))) =
            tokio::time::timeout(Duration::from_secs(2), b.recv_from(&mut buf)).await
        {
            let reply = buf.get(..n).unwrap_or(&[]);
            if b.send_to(reply, from).await.is_err() {
                break;
            }
        }
    });
    let mut samples = Vec::with_capacity(rounds);
    let mut buf = [0u8; 64];
    for i in 0..rounds {
        let payload = (i as u64).to_le_bytes();
        let t = Instant::now();
        a.send_to(&payload, b_addr).await?;
        let got = tokio::time::timeout(Duration::from_secs(1), a.recv_from(&mut buf)).await;
        match got {
            Ok(Ok((_, from))) if from == b_addr => {
                samples.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
            }
            Ok(Ok(_)) | Err(_) => continue,
            Ok(Err(e)) => return Err(e),
        }
    }
    echo.abort();
    Ok(Percentiles::of_nanos(&samples))
}

/// One end of [`udp_handoff_rtt`]: a UDP socket served by a network thread of its own (a
/// tokio current-thread runtime, as Squadlink's shell is), which sends what the
/// application's task hands it and hands it back what arrives, through channels.
struct HandoffEnd {
    send: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
    received: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
    thread: std::thread::JoinHandle<()>,
}

impl HandoffEnd {
    /// Serves `socket` (sending to `to`) until the sending side of the end is dropped.
    fn start(socket: std::net::UdpSocket, to: std::net::SocketAddr) -> std::io::Result<Self> {
        socket.set_nonblocking(true)?;
        let (send, mut outgoing) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        let (deliver, received) = tokio::sync::mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("handoff-net".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(socket) = tokio::net::UdpSocket::from_std(socket) else {
                        return;
                    };
                    let mut buf = [0u8; 2048];
                    loop {
                        tokio::select! {
                            out = outgoing.recv() => match out {
                                Some(data) => {
                                    let _ = socket.send_to(&data, to).await;
                                }
                                None => return,
                            },
                            got = socket.recv_from(&mut buf) => {
                                if let Ok((n, _)) = got {
                                    let _ = deliver.send(buf.get(..n).unwrap_or(&[]).to_vec());
                                }
                            }
                        }
                    }
                });
            })?;
        Ok(Self {
            send,
            received,
            thread,
        })
    }

    fn stop(self) {
        drop(self.send);
        let _ = self.thread.join();
    }
}

/// Measures `rounds` sequential round trips of a 64-byte UDP datagram between two ends on
/// 127.0.0.1 that each keep their socket on a network thread of their own and hand every
/// datagram to and from the application's task through channels: four thread hand-offs
/// per round trip, as in any library with a network thread (Squadlink's and matchbox's
/// players alike), and no WebRTC. The floor such a library's round trip stands on; the
/// rest is the library's own work (DTLS, SCTP, framing).
pub async fn udp_handoff_rtt(rounds: usize) -> std::io::Result<Percentiles> {
    let a = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let b = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let (a_addr, b_addr) = (a.local_addr()?, b.local_addr()?);
    let mut a = HandoffEnd::start(a, b_addr)?;
    let HandoffEnd {
        send: echo_send,
        received: mut echo_received,
        thread: echo_thread,
    } = HandoffEnd::start(b, a_addr)?;
    let wait = Duration::from_secs(1);
    // Ended by abort, which drops its sender and so ends its network thread.
    let echo = tokio::spawn(async move {
        while let Some(data) = echo_received.recv().await {
            if echo_send.send(data).is_err() {
                break;
            }
        }
    });
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let mut payload = vec![0u8; 64];
        if let Some(head) = payload.get_mut(..8) {
            head.copy_from_slice(&(i as u64).to_le_bytes());
        }
        let t = Instant::now();
        if a.send.send(payload.clone()).is_err() {
            break;
        }
        loop {
            match tokio::time::timeout(wait, a.received.recv()).await {
                Ok(Some(got)) if got == payload => {
                    samples.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
                    break;
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
    a.stop();
    echo.abort();
    let _ = echo.await;
    let _ = echo_thread.join();
    Ok(Percentiles::of_nanos(&samples))
}

/// Runs a benchmark's async body on a 2-worker tokio runtime; prints an error and fails
/// the process if it returns one.
pub fn run_main<F>(body: F) -> std::process::ExitCode
where
    F: std::future::Future<Output = Result<(), String>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(body) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Replaces the section of `path` between `<!-- bench:NAME:begin -->` and
/// `<!-- bench:NAME:end -->` with `body` (appending the section if it is not there yet).
pub fn update_docs_section(path: &Path, name: &str, body: &str) -> std::io::Result<()> {
    let begin = format!("<!-- bench:{name}:begin -->");
    let end = format!("<!-- bench:{name}:end -->");
    let old = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "# Performance\n".to_string(),
        Err(e) => return Err(e),
    };
    let section = format!("{begin}\n{body}{end}");
    let new = match (old.find(&begin), old.find(&end)) {
        (Some(b), Some(e)) if e > b => {
            let tail = old.get(e + end.len()..).unwrap_or("");
            format!("{}{section}{tail}", old.get(..b).unwrap_or(""))
        }
        _ => format!("{}\n{section}\n", old.trim_end()),
    };
    std::fs::write(path, new)
}

/// What glibc's allocator holds for this process, summed over every arena: `(in_use, held)`
/// in bytes, where `in_use` is the live heap (blocks handed out and not yet freed) and
/// `held` what the allocator has taken from the system for it (arenas and large mapped
/// blocks). RSS far above `held` is not the heap; `held` far above `in_use` is free memory
/// the allocator keeps (fragmentation). `None` off glibc.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn heap_bytes() -> Option<(u64, u64)> {
    // SAFETY: `mallinfo2` takes no arguments, reads the allocator's own counters under its
    // own locks and returns a plain struct by value.
    let info = unsafe { libc::mallinfo2() };
    let mapped = info.hblkhd as u64;
    Some((info.uordblks as u64 + mapped, info.arena as u64 + mapped))
}

/// What glibc's allocator holds for this process: `None` off glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn heap_bytes() -> Option<(u64, u64)> {
    None
}

/// This process's resident memory in bytes (`VmRSS`), 0 when it cannot be read.
pub fn rss_bytes() -> u64 {
    status_field("/proc/self/status", "VmRSS:").map_or(0, |kb| kb * 1024)
}

/// This process's resident anonymous memory in bytes (`RssAnon`: heap, stacks, what it
/// allocated; `VmRSS` also counts the pages of the executable and libraries it touched),
/// 0 when it cannot be read.
pub fn rss_anon_bytes() -> u64 {
    status_field("/proc/self/status", "RssAnon:").map_or(0, |kb| kb * 1024)
}

/// Another process's resident memory in bytes (`VmRSS`), if it can be read.
pub fn rss_bytes_of(pid: u32) -> Option<u64> {
    status_field(&format!("/proc/{pid}/status"), "VmRSS:").map(|kb| kb * 1024)
}

/// This process's threads (`Threads` in `/proc/self/status`), 0 when it cannot be read.
pub fn thread_count() -> u64 {
    status_field("/proc/self/status", "Threads:").unwrap_or(0)
}

/// This process's open file descriptors (entries of `/proc/self/fd`), 0 when unreadable.
pub fn fd_count() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// The number a line of a `/proc/…/status` file that starts with `field` holds.
fn status_field(path: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
}

/// The run's physical baseline: 2000 raw UDP round trips on loopback, its p50 printed.
pub async fn udp_baseline() -> Result<Percentiles, String> {
    let udp = udp_loopback_rtt(2_000)
        .await
        .map_err(|e| format!("UDP baseline: {e}"))?;
    eprintln!("raw UDP RTT p50 {:.1} µs", udp.p50_us);
    Ok(udp)
}

/// Two sessions in one lobby through a matchmaker of their own on a free loopback port,
/// connected to each other: what the networked benchmarks measure between.
pub struct LobbyPair {
    /// The matchmaker (shut down by [`LobbyPair::close`]).
    pub server: squadlink_matchmaker::Server,
    /// The session that created the lobby.
    pub a: squadlink::Session,
    /// The session that joined it.
    pub b: squadlink::Session,
    /// `a` as `b` knows it.
    pub a_id: squadlink::PeerId,
    /// `b` as `a` knows it.
    pub b_id: squadlink::PeerId,
}

/// The first connected peer of `s`, waiting at most 20 s.
pub async fn first_peer(s: &squadlink::Session) -> Result<squadlink::PeerId, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(p) = s.connected_peers().first() {
            return Ok(*p);
        }
        if Instant::now() > deadline {
            return Err("peers did not connect within 20 s".into());
        }
        for _ in s.poll_events() {}
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A matchmaker in this process on a free loopback port, with the default settings.
pub async fn local_matchmaker() -> Result<squadlink_matchmaker::Server, String> {
    squadlink_matchmaker::Server::bind(squadlink_matchmaker::Config {
        listen: ([127, 0, 0, 1], 0).into(),
        ..squadlink_matchmaker::Config::default()
    })
    .await
    .map_err(|e| format!("matchmaker: {e}"))
}

/// Starts a matchmaker and two connected sessions on loopback.
pub async fn lobby_pair() -> Result<LobbyPair, String> {
    use squadlink::{LobbyRef, SessionBuilder};
    let server = local_matchmaker().await?;
    let url = server.url();
    let a = SessionBuilder::new(&url)
        .bind(([127, 0, 0, 1], 0).into())
        .join(LobbyRef::create(2))
        .start_async()
        .await
        .map_err(|e| e.to_string())?;
    let code = a.lobby().map(|l| l.code).ok_or("no lobby code")?;
    let b = SessionBuilder::new(&url)
        .bind(([127, 0, 0, 1], 0).into())
        .join(LobbyRef::Code(code))
        .start_async()
        .await
        .map_err(|e| e.to_string())?;
    let b_id = first_peer(&a).await?;
    let a_id = first_peer(&b).await?;
    Ok(LobbyPair {
        server,
        a,
        b,
        a_id,
        b_id,
    })
}

impl LobbyPair {
    /// Closes both sessions and the matchmaker.
    pub async fn close(self) {
        drop((self.a, self.b));
        let _ = self.server.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let s: Vec<u64> = (1..=100).map(|v| v * 1_000).collect();
        let p = Percentiles::of_nanos(&s);
        assert_eq!(
            (p.count, p.p50_us, p.p99_us, p.max_us),
            (100, 50.0, 99.0, 100.0)
        );
        assert_eq!(Percentiles::of_nanos(&[]), Percentiles::default());
        assert_eq!(percentile::<f64>(&[], 0.5), None);
        assert_eq!(median(&[3.0, 1.0, 2.0, 4.0]), Some(3.0));
    }

    #[test]
    fn docs_sections_are_replaced_in_place() {
        let dir = std::env::temp_dir().join(format!("squadlink-docs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("perf.md");
        std::fs::write(&path, "# P\n\nintro\n").unwrap();
        update_docs_section(&path, "x", "one\n").unwrap();
        update_docs_section(&path, "y", "why\n").unwrap();
        update_docs_section(&path, "x", "two\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("intro") && text.contains("two") && text.contains("why"));
        assert!(!text.contains("one"));
        assert_eq!(text.matches("bench:x:begin").count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
