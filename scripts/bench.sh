#!/usr/bin/env bash
# Runs the benchmark binaries in release mode and records their figures in
# docs/performance.md (the NAT matrix: docs/networking.md).
# Usage: scripts/bench.sh [matchmaker|cluster|transport|connect|matchbox|browser|voice|video|soak|rollback|handover|heal|nat]; nat
# needs root; matchbox builds matchbox's crates (feature `matchbox` of squadlink-bench).
# soak takes 10 minutes (bench_soak --seconds N for another length).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh bench
source scripts/env.sh
which=${1:-all}
if [[ $which == all || $which == matchmaker ]]; then
  cargo run --release --locked -p squadlink-bench --bin bench_matchmaker -- --write-docs docs/performance.md
fi
if [[ $which == all || $which == cluster ]]; then
  # One node beside three nodes on one Redis (redis-server from setup.sh), in one run.
  cargo run --release --locked -p squadlink-bench --bin bench_cluster -- --write-docs docs/performance.md
fi
if [[ $which == all || $which == transport ]]; then
  cargo run --release --locked -p squadlink-bench --bin bench_transport -- --write-docs docs/performance.md
fi
if [[ $which == all || $which == connect ]]; then
  cargo run --release --locked -p squadlink-bench --bin bench_connect_rtt -- --write-docs docs/performance.md
fi
if [[ $which == all || $which == matchbox ]]; then
  cargo run --release --locked -p squadlink-bench --features matchbox --bin bench_vs_matchbox -- --write-docs docs/performance.md
fi
if [[ $which == all || $which == browser ]]; then
  # Headless Chromium (Debian's chromium, installed by setup.sh) as the browser peer.
  # The SDK in wasm32 as a page peer too (scripts/web.sh peer prints where it built it).
  wasm_peer=$(bash scripts/web.sh peer | sed -n 's/^web: the page peer is in //p')
  cargo run --release --locked -p squadlink-bench --bin bench_browser -- --write-docs docs/performance.md --wasm-peer "$wasm_peer"
fi
if [[ $which == all || $which == voice ]]; then
  # PESQ-WB (ITU-T P.862.2) comes from the PyPI package `pesq`, in a virtualenv of our own.
  venv=$HOME/.cache/squadlink/pesq-venv
  if [ ! -x "$venv/bin/python3" ] || ! "$venv/bin/python3" -c 'import pesq, numpy' 2>/dev/null; then
    echo "bench: installing the pesq package into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q pesq numpy
  fi
  SQUADLINK_PESQ_PYTHON="$venv/bin/python3" \
    cargo run --release --locked -p squadlink-bench --bin bench_voice -- --write-docs docs/performance.md
fi
if [[ $which == all || $which == video ]]; then
  cargo run --release --locked -p squadlink-bench --bin bench_video -- --write-docs docs/performance.md
fi
if [[ $which == all || $which == soak ]]; then
  cargo run --release --locked -p squadlink-bench --bin bench_soak -- --write-docs docs/performance.md
fi
if [[ $which == all || $which == rollback ]]; then
  # GGRS over Squadlink's socket beside matchbox's GGRS socket (feature `matchbox`).
  cargo run --release --locked -p squadlink-bench --features matchbox --bin bench_rollback -- --write-docs docs/performance.md
fi
if [[ $which == all || $which == handover ]]; then
  # Three replicated_arena processes; the host is killed and the survivors timed.
  cargo build --release --locked -p squadlink-bevy-examples --bin replicated_arena
  cargo run --release --locked -p squadlink-bench --bin bench_handover -- --write-docs docs/performance.md
fi
if [[ $which == all || $which == heal ]]; then
  # Two sessions; the path between them cut for 2-14 s and restored.
  cargo run --release --locked -p squadlink-bench --bin bench_heal -- --write-docs docs/performance.md
fi
if [[ $which == all || $which == nat ]]; then
  # The NAT lab runs nat_check and the matchmaker inside network namespaces.
  cargo build --release --locked -p squadlink-matchmaker
  cargo build --release --locked -p squadlink-bench --bin nat_check --bin bench_nat
  "$CARGO_TARGET_DIR/release/bench_nat" --write-docs docs/networking.md
fi
