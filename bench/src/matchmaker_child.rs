//! A matchmaker under test in a child process (the benchmark binary itself, started with
//! its hidden `--serve-child` flag), so its memory is measured alone.

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::rss_bytes_of;

/// The child's side: serves `config`, prints `LISTENING <url>`, and runs until the parent
/// closes its stdin.
pub async fn serve(config: squadlink_matchmaker::Config) -> ExitCode {
    let server = match squadlink_matchmaker::Server::bind(config).await {
        Ok(s) => s,
        Err(err) => {
            eprintln!("child: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!("LISTENING {}", server.url());
    let _ = std::io::stdout().flush();
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        while std::io::stdin()
            .read_line(&mut line)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            line.clear();
        }
    })
    .await;
    let _ = server.shutdown().await;
    ExitCode::SUCCESS
}

/// The parent's side: a running child matchmaker.
pub struct MatchmakerChild {
    child: Child,
    /// Where players connect.
    pub url: String,
}

impl MatchmakerChild {
    /// Starts this binary again with `args` (which include its `--serve-child` flag) and
    /// reads the address it listens on.
    pub fn start(args: &[&str]) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the server child: {e}"))?;
        let stdout = child.stdout.take().ok_or("child has no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("reading the child's address: {e}"))?;
        let url = line
            .trim()
            .strip_prefix("LISTENING ")
            .ok_or_else(|| format!("unexpected child output {line:?}"))?
            .to_owned();
        Ok(Self { child, url })
    }

    /// Its resident memory.
    pub fn rss_bytes(&self) -> Result<u64, String> {
        let pid = self.child.id();
        rss_bytes_of(pid).ok_or_else(|| format!("cannot read VmRSS in /proc/{pid}/status"))
    }

    /// SIGKILL: the server vanishes without a word.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for MatchmakerChild {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(8);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
