//! Runs one of this crate's binaries and parses the one JSON object it prints.
#![allow(dead_code, missing_docs, clippy::expect_used, clippy::panic)]

use std::process::Command;

/// Runs `bin` with `args`; panics with its stderr if it fails; returns its JSON output
/// and its stderr.
pub fn run_json(bin: &str, args: &[&str]) -> (serde_json::Value, String) {
    let out = Command::new(bin)
        .args(args)
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{bin} failed:\n{stderr}");
    let json = serde_json::from_slice(&out.stdout).expect("exactly one JSON object on stdout");
    (json, stderr)
}
