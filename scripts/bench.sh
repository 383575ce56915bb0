#!/usr/bin/env bash
# Runs the benchmark binaries in release mode and records their figures in
# docs/performance.md. Usage: scripts/bench.sh [matchmaker|transport]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
which=${1:-all}
if [[ $which == all || $which == matchmaker ]]; then
  cargo run --release --locked -p squadlink-examples --bin bench_matchmaker -- --write-docs docs/performance.md
fi
if [[ $which == all || $which == transport ]]; then
  cargo run --release --locked -p squadlink-examples --bin bench_transport -- --write-docs docs/performance.md
fi
