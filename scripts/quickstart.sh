#!/usr/bin/env bash
# The main demo. For now: builds and runs the matchmaker on 127.0.0.1:7878 (Ctrl-C stops it).
# Extra arguments go to the matchmaker, e.g. scripts/quickstart.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
exec cargo run --release --locked -p squadlink-matchmaker -- "$@"
