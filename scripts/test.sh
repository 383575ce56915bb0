#!/usr/bin/env bash
# Runs every check and test: set-up, formatting, lints (no unwrap/expect/panic in library
# code), the whole workspace's tests against real components, and the windowed arena
# example under a virtual display.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh

step() { printf '\n== %s\n' "$*"; }
step "cargo fmt --check"
cargo fmt --all --check
step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p squadlink --features webcam --all-targets --locked -- -D warnings
step "cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
step "cargo test: webcam formats through nokhwa (feature webcam, off by default)"
cargo test -p squadlink --features webcam --locked --lib video::camera 2>&1 | tee -a "$log"

step "arena: two windowed players under Xvfb, screenshots checked"
scripts/arena_screenshot.sh

step "webcam: a real V4L2 capture (the vivid driver) in a small virtual machine"
scripts/camera_vm.sh

# One closing line for the whole run, summed over every test binary.
# (+2 for the arena screenshot check and the camera VM, which failed the script above if
# they did not pass)
awk -v extra=2 '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { p += extra; printf "\nsquadlink: %d passed, %d failed, %d skipped\n", p, f, s; if (p == extra) exit 1 }' "$log"
