#!/usr/bin/env bash
# The main demo: four players meet in a lobby through an embedded matchmaker, connect to each
# other over WebRTC on this machine, and exchange 60 Hz state and reliable events for five
# seconds; then a summary per player. Extra arguments go to the quickstart
# (e.g. scripts/quickstart.sh --peers 8 --json; --help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh demo
source scripts/env.sh
source scripts/steps.sh
step "building the quickstart (release; the first build takes a few minutes)" \
  cargo build --release --locked -p squadlink-examples --bin quickstart
exec "$CARGO_TARGET_DIR/release/quickstart" "$@"
