#!/usr/bin/env bash
# Runs every check and test: set-up, formatting, lints (no unwrap/expect/panic in library
# code), the whole workspace's tests against real components, and the windowed arena
# example under a virtual display.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
source scripts/env.sh
source scripts/steps.sh

section() { printf '\n== %s\n' "$*"; }

# The browser builds (clippy for wasm32 on the SDK and its page peer, then the web arena,
# whose build lints its own crates: Bevy compiled once; about an hour cold on 2 cores
# beside the rest) run beside everything else at the lowest CPU priority, on the cores
# that builds and the (mostly waiting) network tests leave idle; their output is shown,
# and their result checked, where the run needs them. The toolchain and wasm-bindgen are installed
# first, so nothing beside them installs the same thing.
# Their step details go to a log of their own, shown if they fail; if this run ends early,
# they are stopped. They stay in this run's session: Linux groups a session's processes
# for scheduling (autogroup), and a nice value only counts within its group, so a build
# in a session of its own (setsid) would take half the CPU from the tests, not the rest.
scripts/web.sh tools
wasm_log=$(mktemp)
SQUADLINK_LOG="$(dirname "$SQUADLINK_LOG")/web-build.log" \
  nice -n 19 bash -c 'bash scripts/web.sh check && bash scripts/web.sh arena --no-serve' \
  </dev/null >"$wasm_log" 2>&1 &
wasm_pid=$!
wasm_done=0
wait_for_wasm() {
  wasm_done=1
  local start=$SECONDS status=0
  echo "(waiting for the browser builds started at the beginning)"
  wait "$wasm_pid" || status=$?
  cat "$wasm_log"
  echo "(waited $((SECONDS - start)) s)"
  return "$status"
}
log=$(mktemp)
kill_tree() {
  local child
  for child in $(pgrep -P "$1"); do kill_tree "$child"; done
  kill "$1" 2>/dev/null || true
}
stop_wasm() {
  if ((!wasm_done)); then kill_tree "$wasm_pid"; fi
  rm -f "$log" "$wasm_log"
}
trap stop_wasm EXIT

step "building the workspace's tests (the first build takes a while)" \
  cargo test --workspace --locked --no-run
# That build leaves the arena and the matchmaker in target/debug; the screenshot checks
# below use them instead of building them again by package (other features, Bevy again).
export SQUADLINK_WORKSPACE_BUILT=1
section "cargo fmt --check"
cargo fmt --all --check
section "cargo clippy (warnings are errors)"
cargo clippy -q --workspace --all-targets --locked -- -D warnings
cargo clippy -q -p squadlink --features webcam,fuzzing --all-targets --locked -- -D warnings
section "cargo test"
# (The workspace build unifies features: the examples turn on bevy_squadlink's `ggrs` and
# `replicon`, so its rollback and replication tests run here too.)
cargo test --workspace --locked 2>&1 | tee "$log"
section "cargo test: the matchmaker's service and bad-input tests again, against a cluster (Redis, three nodes, a round-robin front)"
SQUADLINK_TEST_CLUSTER=1 cargo test -p squadlink-matchmaker --locked --test service --test hardening 2>&1 | tee -a "$log"

section "cargo test: webcam formats through nokhwa (feature webcam, off by default)"
cargo test -p squadlink --features webcam --locked --lib video::camera 2>&1 | tee -a "$log"

section "cargo test: a hostile peer over real WebRTC (feature fuzzing: its raw sends)"
cargo test -p squadlink --features fuzzing --locked --test hostile 2>&1 | tee -a "$log"

section "fuzzing: every decoder's fuzzer for 10 s (docs/fuzzing.md)"
scripts/fuzz.sh 10

section "every crate on its own, with default features and without"
scripts/crates.sh

section "cluster: Redis, three matchmaker nodes, HAProxy and coturn from deploy/; the quickstart through them, and after a drain"
scripts/cluster.sh --debug

section "arena: two windowed players under Xvfb, screenshots checked"
scripts/arena_screenshot.sh

section "webcam: a real V4L2 capture (the vivid driver) in a small virtual machine"
scripts/camera_vm.sh

section "web: the wasm32 toolchain (Debian's rustc-web): clippy on the crates that build for it, and the web arena's build"
wait_for_wasm

section "web arena: the arena in headless Chromium (wasm32, WebGL2) and a native arena in one lobby, screenshots checked"
scripts/web_arena_screenshot.sh

# One closing line for the whole run, summed over every test binary.
# (+7 for the fuzzing run, the crates-alone check, the wasm32 check, the cluster script,
# the arena screenshot check, the web arena screenshot check and the camera VM, which failed
# the script above if they did not pass)
awk -v extra=7 '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { p += extra; printf "\nsquadlink: %d passed, %d failed, %d skipped\n", p, f, s; if (p == extra) exit 1 }' "$log"
