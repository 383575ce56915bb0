//! Runs one of a crate's binaries and parses the one JSON object it prints (the example
//! and benchmark binaries report that way with `--json`).

use std::process::Command;

/// Runs `bin` with `args`; panics with its stderr if it fails; returns its JSON output
/// and its stderr.
pub fn run_json(bin: &str, args: &[&str]) -> (serde_json::Value, String) {
    run_json_env(bin, args, &[])
}

/// [`run_json`] with extra environment variables.
pub fn run_json_env(bin: &str, args: &[&str], env: &[(&str, &str)]) -> (serde_json::Value, String) {
    let out = Command::new(bin)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{bin} failed:\n{stderr}");
    // The JSON object is the last line (a binary may print other lines first, such as
    // `LOBBY CODE`).
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let json = serde_json::from_str(last).expect("a JSON object on the last line of stdout");
    (json, stderr)
}
